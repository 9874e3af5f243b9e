//! Baselines: what normal traffic looks like on one network, learned from
//! captures (`segwatch learn`) or live (`segwatch run --learn-for`), stored
//! as versioned JSON under `baselines/`, and compared with by the detectors
//! ([`crate::detect`]).

pub mod dist;
pub mod file;
pub mod learn;
pub mod model;
pub mod show;

pub use file::BaselineError;
pub use model::Baseline;
