//! segwatch: a passive network sensor.
//!
//! The pipeline is usable as a library: [`capture`] reads frames, [`decode`]
//! summarises them, [`dispatch`] batches them to workers by a symmetric flow
//! hash, [`worker`] tracks flows, and [`pipeline`] wires it all together.

pub mod decode;
pub mod flow;
