//! Faults: defined once in the names crate (docs/faults.md).
pub use oauthv2info_names::Fault;
