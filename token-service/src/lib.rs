//! token-service as a library: the HTTP API ([`http::router`]) over the
//! store ([`store::Store`], SQLite or PostgreSQL). The binary (`main.rs`)
//! parses the command line, opens the store and serves the router; the
//! fuzz targets (`fuzz/`) drive the same router in-process. See
//! docs/token-service.md.

pub mod error;
pub mod http;
pub mod openapi;
pub mod products;
pub mod store;
pub mod util;
pub mod views;
