//! The proxy-wasm adapter: the only code that talks to Envoy. It turns
//! Envoy's callbacks (the exports below) into calls of the core's
//! [`Worker`] and implements the core's [`Host`] trait over the host calls
//! ([`abi`]). It decides nothing: every rule lives in `oauthv2info-core`
//! (crates/core), tested natively. The exports are written here rather
//! than taken from the proxy-wasm SDK, whose dispatcher, context traits and
//! their default methods were 30 KB of the `.wasm` for the five callbacks
//! the filter answers (docs/decisions.md#the-proxy-wasm-exports-without-the-sdk).
#![cfg(target_arch = "wasm32")]

mod abi;
mod memory;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::mem::MaybeUninit;

use oauthv2info_core::{Action, Host, MetricKind, SharedWrite, Worker};

/// A map keyed by the host's ids (context ids, callout tokens): small
/// integers the host hands out, not chosen by a client.
type IdMap = HashMap<u32, u32, BuildHasherDefault<IdHasher>>;

/// Fibonacci hashing of a u32 id (the map's keys only).
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u32(&mut self, id: u32) {
        self.0 = u64::from(id).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

thread_local! {
    /// One worker per plugin (root context) of this VM (Envoy runs one VM
    /// per worker thread, and several plugin configurations may share it),
    /// by root context id.
    static WORKERS: RefCell<Vec<(u32, Worker)>> = const { RefCell::new(Vec::new()) };
    /// The live root contexts.
    static ROOTS: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
    /// Each live HTTP context's root context.
    static STREAMS: RefCell<IdMap> = const { RefCell::new(IdMap::with_hasher(BuildHasherDefault::new())) };
    /// Each callout in flight: the context whose callback sent it, which
    /// Envoy's answer is delivered to (made the effective context first).
    static CALLOUTS: RefCell<IdMap> = const { RefCell::new(IdMap::with_hasher(BuildHasherDefault::new())) };
    /// The context of the callback running now.
    static ACTIVE: Cell<u32> = const { Cell::new(0) };
}

/// Runs `f` on the worker of root context `root`. A callback that arrives
/// while the workers are busy (the host calling back into the VM from
/// inside a host call) is not their business: it is left alone.
fn with_worker<T>(root: u32, f: impl FnOnce(&mut Worker, &mut EnvoyHost) -> T) -> Option<T> {
    WORKERS.with(|w| {
        let mut workers = w.try_borrow_mut().ok()?;
        let i = match workers.iter().position(|(id, _)| *id == root) {
            Some(i) => i,
            None => {
                workers.push((root, Worker::new(root)));
                workers.len() - 1
            }
        };
        let worker = &mut workers.get_mut(i)?.1;
        Some(f(worker, &mut EnvoyHost))
    })
}

fn is_root(context: u32) -> bool {
    ROOTS.with(|r| r.try_borrow().is_ok_and(|r| r.contains(&context)))
}

/// The root context of HTTP context `context`, if it is one.
fn root_of(context: u32) -> Option<u32> {
    STREAMS.with(|s| s.try_borrow().ok()?.get(&context).copied())
}

/// A root context's callback: `context` becomes the active one.
fn on_root<T>(context: u32, f: impl FnOnce(&mut Worker, &mut EnvoyHost) -> T) -> Option<T> {
    if !is_root(context) {
        return None;
    }
    ACTIVE.with(|a| a.set(context));
    with_worker(context, f)
}

/// The log crate's records to Envoy's log, at their level.
struct Logger;

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Trace => 0,
            log::Level::Debug => 1,
            log::Level::Info => 2,
            log::Level::Warn => 3,
            log::Level::Error => 4,
        };
        abi::log(level, &record.args().to_string());
    }

    fn flush(&self) {}
}

static LOGGER: Logger = Logger;

/// The module's start, before any callback.
#[no_mangle]
pub extern "C" fn _initialize() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Trace);
    }
    std::panic::set_hook(Box::new(|panic_info| {
        abi::log(
            abi::LOG_CRITICAL,
            &format!("oauthv2info: panic: {panic_info}"),
        );
    }));
}

#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// The host's buffers for this module (header maps, bodies, properties):
/// exactly `size` bytes, which `abi` takes back as a `Vec` of that length
/// and capacity.
#[export_name = "malloc"]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    let mut buffer: Vec<MaybeUninit<u8>> = Vec::with_capacity(size);
    // SAFETY: MaybeUninit needs no initialization.
    unsafe { buffer.set_len(size) };
    Box::into_raw(buffer.into_boxed_slice()).cast::<u8>()
}

/// A root context (`root_context_id` 0: a plugin) gets its worker; any
/// other context is an HTTP request of that plugin.
#[no_mangle]
pub extern "C" fn proxy_on_context_create(context_id: u32, root_context_id: u32) {
    if root_context_id == 0 {
        with_worker(context_id, |_, _| ());
        ROOTS.with(|r| {
            if let Ok(mut roots) = r.try_borrow_mut() {
                if !roots.contains(&context_id) {
                    roots.push(context_id);
                }
            }
        });
    } else if is_root(root_context_id) {
        STREAMS.with(|s| {
            if let Ok(mut streams) = s.try_borrow_mut() {
                streams.insert(context_id, root_context_id);
            }
        });
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(context_id: u32, _vm_configuration_size: usize) -> bool {
    on_root(context_id, |_, _| {
        log::info!("oauthv2info {}: VM started", env!("CARGO_PKG_VERSION"));
        true
    })
    .unwrap_or(false)
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(context_id: u32, plugin_configuration_size: usize) -> bool {
    if !is_root(context_id) {
        return false;
    }
    ACTIVE.with(|a| a.set(context_id));
    let bytes = abi::buffer(abi::PLUGIN_CONFIGURATION, plugin_configuration_size);
    with_worker(context_id, |w, h| w.configure(h, &bytes)).unwrap_or(false)
}

#[no_mangle]
pub extern "C" fn proxy_on_tick(context_id: u32) {
    on_root(context_id, |w, h| w.on_tick(h));
}

/// Continue (0) or Pause (1): the request waits for a callout's answer.
#[no_mangle]
pub extern "C" fn proxy_on_request_headers(
    context_id: u32,
    _num_headers: usize,
    end_of_stream: bool,
) -> u32 {
    let Some(root) = root_of(context_id) else {
        return 0;
    };
    ACTIVE.with(|a| a.set(context_id));
    match with_worker(root, |w, h| {
        w.on_request_headers(h, context_id, end_of_stream)
    }) {
        Some(Action::Pause) => 1,
        _ => 0,
    }
}

// The rest of the request and the response go on (Continue): the filter
// acts on the request headers only.
#[no_mangle]
pub extern "C" fn proxy_on_request_body(_: u32, _: usize, _: bool) -> u32 {
    0
}

#[no_mangle]
pub extern "C" fn proxy_on_request_trailers(_: u32, _: usize) -> u32 {
    0
}

#[no_mangle]
pub extern "C" fn proxy_on_response_headers(_: u32, _: usize, _: bool) -> u32 {
    0
}

#[no_mangle]
pub extern "C" fn proxy_on_response_body(_: u32, _: usize, _: bool) -> u32 {
    0
}

#[no_mangle]
pub extern "C" fn proxy_on_response_trailers(_: u32, _: usize) -> u32 {
    0
}

/// A callout's answer, to the context that sent it (made the effective
/// context first), if it still lives. An answer to no callout of this
/// module is left alone.
#[no_mangle]
pub extern "C" fn proxy_on_http_call_response(
    _context_id: u32,
    token: u32,
    _num_headers: usize,
    body_size: usize,
    _num_trailers: usize,
) {
    let Some(context) = CALLOUTS.with(|c| c.try_borrow_mut().ok()?.remove(&token)) else {
        return;
    };
    let root = match root_of(context) {
        Some(root) => root,
        None if is_root(context) => context,
        None => return,
    };
    ACTIVE.with(|a| a.set(context));
    abi::set_effective_context(context);
    with_worker(root, |w, h| {
        w.on_call_response(h, context, token, body_size)
    });
}

#[no_mangle]
pub extern "C" fn proxy_on_done(context_id: u32) -> bool {
    ACTIVE.with(|a| a.set(context_id));
    true
}

#[no_mangle]
pub extern "C" fn proxy_on_log(context_id: u32) {
    ACTIVE.with(|a| a.set(context_id));
}

/// The end of a context: a request's state goes.
#[no_mangle]
pub extern "C" fn proxy_on_delete(context_id: u32) {
    let root = STREAMS.with(|s| s.try_borrow_mut().ok()?.remove(&context_id));
    if let Some(root) = root {
        with_worker(root, |w, h| w.on_stream_end(h, context_id));
    } else {
        ROOTS.with(|r| {
            if let Ok(mut roots) = r.try_borrow_mut() {
                roots.retain(|id| *id != context_id);
            }
        });
    }
}

/// The host, over the raw ABI.
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

    /// The answer goes to the context whose callback sends the call.
    fn dispatch(
        &mut self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout_ms: u32,
    ) -> Result<u32, String> {
        let token = abi::http_call(cluster, headers, body, timeout_ms).map_err(|status| {
            format!(
                "could not call cluster {cluster:?} ({status}: unknown cluster or no healthy host)"
            )
        })?;
        let active = ACTIVE.with(Cell::get);
        CALLOUTS.with(|c| {
            if let Ok(mut callouts) = c.try_borrow_mut() {
                callouts.insert(token, active);
            }
        });
        Ok(token)
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
