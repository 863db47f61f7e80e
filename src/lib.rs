//! Apigee GetOAuthV2Info / SetOAuthV2Info for Envoy (proxy-wasm).
//!
//! Everything but `adapter` (built for wasm32 only) is pure,
//! host-independent logic, tested natively with `cargo test`.

pub mod cache;
pub mod catalog;
pub mod config;
pub mod engine;
pub mod fault;
pub mod policy;
pub mod profile;
pub mod publish;
pub mod vars;
pub mod xml;

#[cfg(target_arch = "wasm32")]
mod adapter;
