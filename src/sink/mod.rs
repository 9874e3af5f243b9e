//! Where results leave segwatch: flow records (JSON lines) for now; events,
//! metrics and reports join here as detectors arrive.

pub mod flows;
