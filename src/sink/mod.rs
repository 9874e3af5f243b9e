//! Where results leave segwatch: JSON lines (flow records, events), the
//! violation event sink, and the PCI scope report.

pub mod events;
pub mod jsonl;
