//! The proxy-wasm adapter: the only code that talks to Envoy. It turns
//! Envoy's callbacks into calls of the core's [`Worker`] and implements the
//! core's [`Host`] trait over the host calls ([`abi`]). It decides nothing:
//! every rule lives in `oauthv2info-core` (crates/core), tested natively.
#![cfg(target_arch = "wasm32")]

mod abi;
mod memory;

use std::cell::RefCell;
use std::time::Duration;

use oauthv2info_core::{Action, Host, MetricKind, SharedWrite, Worker};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{self, ContextType, LogLevel};

thread_local! {
    /// One worker per plugin (root context) of this VM (Envoy runs one VM
    /// per worker thread, and several plugin configurations may share it),
    /// by root context id.
    static WORKERS: RefCell<Vec<(u32, Worker)>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on the worker of root context `root`. A callback that arrives
/// while the workers are busy (the host calling back into the VM from
/// inside a host call) is not their business: it is left alone.
fn with_worker<T>(root: u32, f: impl FnOnce(&mut Worker, &mut EnvoyHost) -> T) -> Option<T> {
    WORKERS.with(|w| {
        let mut workers = w.try_borrow_mut().ok()?;
        let worker = worker_of(&mut workers, root)?;
        Some(f(worker, &mut EnvoyHost))
    })
}

/// The worker of root context `root`, made on first use: one copy in the
/// `.wasm`, not one per callback (docs/performance.md#module-size).
#[inline(never)]
fn worker_of(workers: &mut Vec<(u32, Worker)>, root: u32) -> Option<&mut Worker> {
    let i = match workers.iter().position(|(id, _)| *id == root) {
        Some(i) => i,
        None => {
            workers.push((root, Worker::new(root)));
            workers.len() - 1
        }
    };
    Some(&mut workers.get_mut(i)?.1)
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    std::panic::set_hook(Box::new(|panic_info| {
        abi::log(abi::LOG_CRITICAL, &format!("oauthv2info: panic: {panic_info}"));
    }));
    proxy_wasm::set_root_context(|root_id| -> Box<dyn RootContext> {
        with_worker(root_id, |_, _| ());
        Box::new(Root { id: root_id })
    });
}}

struct Root {
    id: u32,
}

impl Context for Root {
    /// The answer to a callout the root context sent for a request.
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let id = self.id;
        with_worker(id, |w, h| w.on_call_response(h, id, token, body_size));
    }
}

impl RootContext for Root {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        log::info!("oauthv2info {}: VM started", env!("CARGO_PKG_VERSION"));
        true
    }

    fn on_configure(&mut self, size: usize) -> bool {
        let bytes = abi::buffer(abi::PLUGIN_CONFIGURATION, size);
        with_worker(self.id, |w, h| w.configure(h, &bytes)).unwrap_or(false)
    }

    fn on_tick(&mut self) {
        with_worker(self.id, |w, h| w.on_tick(h));
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Filter {
            id: context_id,
            root: self.id,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Filter {
    id: u32,
    /// The root context (the plugin) this request belongs to.
    root: u32,
}

impl Context for Filter {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let id = self.id;
        with_worker(self.root, |w, h| {
            w.on_call_response(h, id, token, body_size)
        });
    }
}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> types::Action {
        let id = self.id;
        match with_worker(self.root, |w, h| w.on_request_headers(h, id, end_of_stream)) {
            Some(Action::Pause) => types::Action::Pause,
            _ => types::Action::Continue,
        }
    }
}

impl Drop for Filter {
    fn drop(&mut self) {
        let id = self.id;
        with_worker(self.root, |w, h| w.on_stream_end(h, id));
    }
}

/// The host, over the raw ABI (and the SDK for callouts).
struct EnvoyHost;

impl Host for EnvoyHost {
    fn now_ms(&mut self) -> i64 {
        i64::try_from(abi::now_ns() / 1_000_000).unwrap_or(i64::MAX)
    }

    fn random_keys(&mut self) -> [u64; 2] {
        // A host without random bytes: the clock, which a client cannot
        // read to the nanosecond.
        abi::random_keys().unwrap_or_else(|| {
            let now = abi::now_ns();
            [now, now.rotate_left(32) ^ 0x9e37_79b9_7f4a_7c15]
        })
    }

    fn request_header(&mut self, name: &str) -> Option<Vec<u8>> {
        abi::header(abi::REQUEST_HEADERS, name)
    }

    fn request_headers(&mut self) -> Vec<(String, Vec<u8>)> {
        abi::headers(abi::REQUEST_HEADERS)
    }

    fn set_request_header(&mut self, name: &str, value: &[u8]) -> bool {
        abi::replace_header(abi::REQUEST_HEADERS, name, value)
    }

    fn add_request_header(&mut self, name: &str, value: &[u8]) -> bool {
        abi::add_header(abi::REQUEST_HEADERS, name, value)
    }

    fn remove_request_header(&mut self, name: &str) {
        abi::remove_header(abi::REQUEST_HEADERS, name)
    }

    fn property(&mut self, path: &[&str]) -> Option<Vec<u8>> {
        abi::property(path)
    }

    fn set_filter_state(&mut self, key: &[u8], value: &[u8]) -> bool {
        abi::set_property(key, value)
    }

    fn shared_data(&mut self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        abi::shared_data(key)
    }

    fn set_shared_data(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> SharedWrite {
        match abi::set_shared_data(key, value, cas) {
            Ok(true) => SharedWrite::Ok,
            Ok(false) => SharedWrite::CasMismatch,
            Err(()) => SharedWrite::Failed,
        }
    }

    /// Through the SDK: its dispatcher must know the callout's token to
    /// route the answer (an answer it does not know makes it panic).
    fn dispatch(
        &mut self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout_ms: u32,
    ) -> Result<u32, String> {
        proxy_wasm::hostcalls::dispatch_http_call(
            cluster,
            headers.to_vec(),
            Some(body),
            vec![],
            Duration::from_millis(u64::from(timeout_ms)),
        )
        .map_err(|status| format!("could not call cluster {cluster:?} ({status:?}: unknown cluster or no healthy host)"))
    }

    fn call_response_status(&mut self) -> Option<u16> {
        let status = abi::header(abi::CALL_RESPONSE_HEADERS, ":status")?;
        std::str::from_utf8(&status).ok()?.parse().ok()
    }

    fn call_response_body(&mut self, size: usize) -> Vec<u8> {
        abi::buffer(abi::CALL_RESPONSE_BODY, size)
    }

    fn send_local_response(&mut self, status: u32, headers: &[(&str, &[u8])], body: &[u8]) -> bool {
        abi::send_local_response(status, headers, body)
    }

    fn resume_request(&mut self) {
        abi::resume_request()
    }

    fn set_effective_context(&mut self, context: u32) {
        abi::set_effective_context(context)
    }

    fn set_tick_period_ms(&mut self, ms: u32) {
        abi::set_tick_period(ms)
    }

    fn define_metric(&mut self, kind: MetricKind, name: &str) -> Option<u32> {
        abi::define_metric(
            match kind {
                MetricKind::Counter => 0,
                MetricKind::Gauge => 1,
                MetricKind::Histogram => 2,
            },
            name,
        )
    }

    fn increment_metric(&mut self, id: u32, delta: i64) {
        abi::increment_metric(id, delta)
    }

    fn record_metric(&mut self, id: u32, value: u64) {
        abi::record_metric(id, value)
    }
}
