//! End-to-end tests of the token service: each test starts the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod admin;
mod bench;
mod common;
mod introspect;
mod lifecycle;
mod merge;
mod oauth;
