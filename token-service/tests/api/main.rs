//! End-to-end tests of the token service: each test starts the real binary,
//! on SQLite and on a real PostgreSQL server (pg.rs).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// Makes `sqlite::<name>` and `postgres::<name>` tests of each listed
/// function (which is not itself a `#[test]`): the same test on both stores.
macro_rules! both_stores {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    $crate::common::with_backend($crate::common::Backend::Sqlite, super::$name)
                }
            )+
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    $crate::common::with_backend($crate::common::Backend::Postgres, super::$name)
                }
            )+
        }
    };
}

mod admin;
mod bench;
mod common;
mod deploy;
mod feed;
mod hashing;
mod http1;
mod introspect;
mod lifecycle;
mod merge;
mod oauth;
mod openapi;
mod pg;
mod products;
mod replicas;
mod schema;
