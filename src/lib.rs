//! segwatch: a passive network sensor.
//!
//! The pipeline is usable as a library: [`capture`] reads frames, [`decode`]
//! summarises them, [`dispatch`] batches them to workers by a symmetric flow
//! hash, [`worker`] tracks flows in a per-thread [`flow::FlowTable`],
//! [`analysis`] judges finished flows against the [`policy`] (zones in
//! [`zones`], violations in [`segmentation`]) and writes them through
//! [`sink`], [`report`] builds the PCI evidence report, [`metrics`] exports
//! Prometheus metrics, and [`pipeline`] wires it all together. [`privileges`]
//! drops root once a live capture is open. [`synth`]
//! builds capture files with known contents for tests, benchmarks and the
//! bundled sample.

pub mod analysis;
pub mod baseline;
pub mod capture;
pub mod config;
pub mod decode;
pub mod detect;
pub mod dispatch;
pub mod flow;
pub mod memory;
pub mod metrics;
pub mod pipeline;
pub mod policy;
pub mod privileges;
pub mod reload;
pub mod report;
pub mod segmentation;
pub mod sink;
pub mod summary;
pub mod synth;
pub mod worker;
pub mod zones;
