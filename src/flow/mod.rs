//! Flow tracking: the canonical key, per-flow state and outcome rules, the
//! per-worker table with packet-time timeouts and a hard cap, and the records
//! finished flows become.

pub mod index;
pub mod key;
pub mod record;
pub mod state;
pub mod table;

pub use key::{Endpoint, FlowKey, Side};
pub use record::{EndReason, FlowRecord};
pub use state::{Flow, Outcome, PacketFacts};
pub use table::{FlowTable, TableStats, Timeouts};
