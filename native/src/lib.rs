//! oauthv2info as a native Envoy dynamic module (Envoy 1.40, ABI `v0.2.0`):
//! the same core as the Wasm filter in `src/`, over the dynamic-module ABI
//! (docs/native.md). [`abi`] holds every `unsafe` line: the ABI's
//! declarations, each wrapped once, and the event hooks Envoy calls;
//! [`hooks`] is the adapter (the core's `Host` and `Worker`); [`store`] the
//! cache shared by the worker threads.
//!
//! No panic crosses the ABI: every hook runs inside [`guard`] or
//! [`guard_stream`] (a panic there would take Envoy down).

#![deny(unsafe_code)]

mod abi;
mod hooks;
mod store;

use std::panic::{catch_unwind, AssertUnwindSafe};

pub use abi::ABI_VERSION;

/// Runs a hook's body; a panic gives `fallback` (and is logged by the panic
/// hook set at load).
fn guard<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

/// Runs a stream's hook body; after a panic the stream (and every stream
/// its worker held) gets the documented 503 (docs/faults.md), and the
/// answer is "pause" (the reply is sent).
fn guard_stream(
    filter: abi::Filter,
    m: &hooks::FilterModule,
    f: impl FnOnce(&hooks::FilterModule) -> bool,
) -> bool {
    match catch_unwind(AssertUnwindSafe(|| f(m))) {
        Ok(pause) => pause,
        Err(_) => {
            guard((), || hooks::recover(m, filter));
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::guard;

    #[test]
    fn a_panic_in_a_hook_gives_its_fallback() {
        // Silence the default hook's report of the panic this test causes.
        std::panic::set_hook(Box::new(|_| {}));
        let out = guard(7, || -> i32 { panic!("a bug") });
        let _ = std::panic::take_hook();
        assert_eq!(out, 7);
        assert_eq!(guard(7, || 3), 3);
    }
}
