//! The adapter: Envoy's dynamic-module events turned into calls of the
//! core's [`Worker`], and the core's [`Host`] over the module ABI
//! ([`abi`]). It decides nothing the Wasm adapter does not: every rule
//! lives in `oauthv2info-core`. What is native (docs/native.md):
//!
//! - one [`Worker`] per filter configuration and worker thread (as the Wasm
//!   build has one per VM), made on the thread's first request;
//! - published variables go to dynamic metadata in one batch call per
//!   request (namespace `metadata_namespace`), and to filter state
//!   (`wasm.<name>`, the Wasm build's names) only with `filter_state: true`;
//! - the profile cache is one store shared by the worker threads
//!   ([`crate::store`]);
//! - the root context's tick runs after each event (there is no per-worker
//!   timer in the ABI): counts reach Envoy at once, and a callout the core
//!   defers goes out at the end of the event that deferred it; when the
//!   core has timed work (a retry after a pause), a thread of the module's
//!   own wakes a waiting filter of that worker thread when it is due
//!   (its scheduler), and that event runs the tick.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use log::{error, info};
use oauthv2info_core::host::{Host, MetricKind, SharedWrite};
use oauthv2info_core::{Action, Worker};
use serde_json::Value;

use crate::abi::{self, Filter, Metric};
use crate::store::Store;

/// The root context's id in the core's terms (streams count from 2).
const ROOT: u32 = 1;

/// The filter-state entry the core writes for the Lua bridge (never on
/// native: the module writes metadata itself).
const BRIDGE_KEY: &[u8] = b"oauthv2info.metadata";

static STORE: LazyLock<Store> = LazyLock::new(Store::default);
static NEXT_CONFIG: AtomicU64 = AtomicU64::new(1);

/// One filter configuration, shared by its filters on every thread.
#[derive(Debug)]
pub struct SharedConfig {
    id: u64,
    envoy: abi::Config,
    /// The JSON the core reads (the native options taken out).
    bytes: Vec<u8>,
    namespace: String,
    filter_state: bool,
    /// The metrics defined on the configuration, by the core's id - 1.
    metrics: Vec<(String, Metric, usize)>,
    /// With cache invalidation: the change feed's record, which only the
    /// main thread's poller writes (docs/native.md#the-change-feed).
    feed_key: Option<String>,
    /// The poller's ticker: a thread of the module's own that commits the
    /// configuration's scheduler every tick.
    ticker: Option<Ticker>,
}

/// The change feed's ticker thread and what it commits (`None` once the
/// configuration is destroyed, which wakes the thread: it ends).
#[derive(Debug)]
struct Ticker {
    scheduler: Arc<(Mutex<Option<abi::ConfigScheduler>>, Condvar)>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// The module's object of one stream's filter.
#[derive(Debug)]
pub struct FilterModule {
    config: Arc<SharedConfig>,
    id: u32,
    /// The request waits for the filter (a callout): its body and trailers
    /// wait too (read by those hooks without the slot).
    paused: Rc<Cell<bool>>,
    /// The wake-up this filter carries for its thread's worker (its token;
    /// 0: none): cancelled when the filter ends.
    wake: Rc<Cell<u64>>,
}

impl FilterModule {
    pub fn paused(&self) -> bool {
        self.paused.get()
    }
}

/// A callout's answer, as Envoy delivered it.
#[derive(Debug)]
pub struct CallAnswer {
    pub status: Option<u16>,
    pub body: Vec<u8>,
}

thread_local! {
    /// This thread's slots, one per configuration: each borrowed on its
    /// own, as a resumed request runs the next filter, which can be this
    /// module's filter of another configuration.
    /// By configuration id: a busy slot is still found (and reported busy),
    /// never made twice.
    static SLOTS: RefCell<Vec<(u64, Rc<RefCell<Slot>>)>> = const { RefCell::new(Vec::new()) };
    /// Filters Envoy destroyed while the slots were busy (a local reply or
    /// a resumed request can end a stream inside a call into Envoy): the
    /// host no longer calls them, and the slot forgets them when it is done.
    static ENDED: RefCell<Vec<(u64, u32)>> = const { RefCell::new(Vec::new()) };
    static NEXT_ID: Cell<u32> = const { Cell::new(ROOT + 1) };
    /// The main thread's change-feed pollers, by configuration id.
    static POLLERS: RefCell<Vec<(u64, Worker, HostState)>> = const { RefCell::new(Vec::new()) };
}

fn ended(id: u32) -> bool {
    ENDED.with(|e| {
        e.try_borrow()
            .map_or(true, |e| e.iter().any(|(_, x)| *x == id))
    })
}

// ------------------------------------------------------------- program

struct EnvoyLog;

impl log::Log for EnvoyLog {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        abi::log_enabled(level(metadata.level()))
    }

    fn log(&self, record: &log::Record<'_>) {
        let level = level(record.level());
        if abi::log_enabled(level) {
            abi::log(level, &record.args().to_string());
        }
    }

    fn flush(&self) {}
}

fn level(l: log::Level) -> u32 {
    match l {
        log::Level::Error => abi::LOG_ERROR,
        log::Level::Warn => abi::LOG_WARN,
        log::Level::Info => abi::LOG_INFO,
        log::Level::Debug => abi::LOG_DEBUG,
        log::Level::Trace => abi::LOG_TRACE,
    }
}

static LOGGER: EnvoyLog = EnvoyLog;

pub fn program_init() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Trace);
    }
    std::panic::set_hook(Box::new(|panic| {
        abi::log(abi::LOG_CRITICAL, &format!("oauthv2info: panic: {panic}"));
    }));
}

// ------------------------------------------------------- configuration

/// Takes the native options out of the JSON configuration: `filter_state`
/// (a bool), and `metadata_bridge`, which the module does not need (it
/// writes dynamic metadata itself).
fn native_options(bytes: &[u8]) -> Result<(Vec<u8>, bool), String> {
    // Not a JSON object: the core refuses it, in its own words.
    let Ok(Value::Object(mut object)) = serde_json::from_slice::<Value>(bytes) else {
        return Ok((bytes.to_vec(), false));
    };
    let filter_state = match object.remove("filter_state") {
        None => false,
        Some(Value::Bool(b)) => b,
        Some(_) => {
            return Err("configuration field \"filter_state\": must be true or false".to_string())
        }
    };
    if let Some(bridge) = object.insert("metadata_bridge".into(), Value::from("none")) {
        if bridge != "none" {
            info!("oauthv2info: metadata_bridge {bridge} is not needed by the native module, which writes dynamic metadata itself");
        }
    }
    let bytes = serde_json::to_vec(&object).map_err(|e| e.to_string())?;
    Ok((bytes, filter_state))
}

/// A new filter configuration (main thread): refused (None) with one log
/// line naming the policy, the element and the problem.
pub fn config_new(envoy: abi::Config, _name: &[u8], bytes: &[u8]) -> Option<Arc<SharedConfig>> {
    let (bytes, filter_state) = match native_options(bytes) {
        Ok(v) => v,
        Err(e) => {
            error!("oauthv2info: configuration refused: {e}");
            return None;
        }
    };
    // What the adapter needs of the configuration (the worker below refuses
    // a bad one, with its one line).
    let mut namespace = String::new();
    let mut feed = None;
    if let Ok(config) = oauthv2info_core::parse_config(&bytes) {
        feed = config
            .feed_poll()
            .map(|(key, poll_ms)| (key, TICK_MS.min(poll_ms).max(1)));
        namespace = config.metadata_namespace;
    }
    // The core checks the configuration and defines the metrics, once.
    let mut host = HostState::new(envoy, Arc::new(Vec::new()), String::new(), false);
    host.defining = Some(Vec::new());
    let mut worker = Worker::new(ROOT);
    if !worker.configure(&mut host, &bytes) {
        return None;
    }
    let metrics = host.defining.take().unwrap_or_default();
    let id = NEXT_CONFIG.fetch_add(1, Ordering::Relaxed);
    let mut ticker = None;
    if let (Some(_), false) = (&feed, abi::is_validation_mode()) {
        ticker = start_poller(
            envoy,
            id,
            &bytes,
            &metrics,
            &namespace,
            feed.as_ref().map_or(TICK_MS, |f| f.1),
        );
    }
    Some(Arc::new(SharedConfig {
        id,
        envoy,
        bytes,
        namespace,
        filter_state,
        metrics,
        feed_key: feed.map(|f| f.0),
        ticker,
    }))
}

/// How often the poller's tick runs, at most (the Wasm build's root tick).
const TICK_MS: u32 = 1000;

/// The change-feed poller of a configuration (main thread): a worker of its
/// own, the only writer of the feed's record (so the only holder of its
/// lease), ticked every `min(1 s, poll_ms)`, polling through the
/// configuration's callouts.
fn start_poller(
    envoy: abi::Config,
    id: u64,
    bytes: &[u8],
    metrics: &[(String, Metric, usize)],
    namespace: &str,
    period_ms: u32,
) -> Option<Ticker> {
    let mut host = HostState::new(
        envoy,
        Arc::new(metrics.to_vec()),
        namespace.to_string(),
        false,
    );
    host.via_config = true;
    host.effective = Effective::Root;
    let mut worker = Worker::new(ROOT);
    if !worker.configure(&mut host, bytes) {
        return None;
    }
    POLLERS.with(|p| p.borrow_mut().push((id, worker, host)));
    let scheduler = Arc::new((Mutex::new(Some(envoy.scheduler()?)), Condvar::new()));
    let ticks = scheduler.clone();
    let period = Duration::from_millis(u64::from(period_ms));
    let spawned = std::thread::Builder::new()
        .name("oauthv2info-feed".into())
        .spawn(move || {
            let (lock, wake) = &*ticks;
            let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                s = wake
                    .wait_timeout(s, period)
                    .map_or_else(|e| e.into_inner().0, |(s, _)| s);
                match s.as_ref() {
                    Some(scheduler) => scheduler.commit(0),
                    None => break,
                }
            }
        });
    let thread = match spawned {
        Ok(t) => Some(t),
        Err(e) => {
            error!("oauthv2info: the change feed's ticker did not start: {e}");
            None
        }
    };
    Some(Ticker {
        scheduler,
        thread: Mutex::new(thread),
    })
}

/// The configuration's tick (main thread): the poller's.
pub fn config_scheduled(config: &SharedConfig) {
    POLLERS.with(|p| {
        let Ok(mut p) = p.try_borrow_mut() else {
            return;
        };
        if let Some((_, worker, host)) = p.iter_mut().find(|(id, _, _)| *id == config.id) {
            host.effective = Effective::Root;
            worker.on_tick(host);
        }
    });
}

/// A poll's answer (main thread).
pub fn config_callout_done(config: &SharedConfig, envoy_id: u64, answer: CallAnswer) {
    POLLERS.with(|p| {
        let Ok(mut p) = p.try_borrow_mut() else {
            return;
        };
        if let Some((_, worker, host)) = p.iter_mut().find(|(id, _, _)| *id == config.id) {
            let Some(token) = host.callouts.remove(&(0, envoy_id)) else {
                return;
            };
            let size = answer.body.len();
            host.answer = Some(answer);
            host.effective = Effective::Root;
            worker.on_call_response(host, ROOT, token, size);
            host.answer = None;
        }
    });
}

/// Envoy drops the configuration (main thread): its ticker stops (joined),
/// its poller goes.
pub fn config_destroy(config: &SharedConfig) {
    if let Some(ticker) = &config.ticker {
        let (lock, wake) = &*ticker.scheduler;
        let scheduler = lock.lock().unwrap_or_else(|e| e.into_inner()).take();
        wake.notify_all();
        if let Some(s) = scheduler {
            s.delete();
        }
        // Joined at once (woken above): nothing of the module runs on after
        // Envoy may unload it.
        let thread = ticker
            .thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
    POLLERS.with(|p| {
        if let Ok(mut p) = p.try_borrow_mut() {
            p.retain(|(id, _, _)| *id != config.id);
        }
    });
    stop_wakes();
}

pub fn filter_new(config: Arc<SharedConfig>, _filter: Filter) -> FilterModule {
    let id = NEXT_ID.with(|n| {
        let id = n.get();
        n.set(if id == u32::MAX { ROOT + 1 } else { id + 1 });
        id
    });
    FilterModule {
        config,
        id,
        paused: Rc::new(Cell::new(false)),
        wake: Rc::new(Cell::new(0)),
    }
}

// ------------------------------------------------------------ the slot

/// One configuration's worker on this thread, and the host state around it.
struct Slot {
    config_id: u64,
    config: Weak<SharedConfig>,
    worker: Worker,
    host: HostState,
    /// The wake-up armed for the worker's timed work: (the filter carrying
    /// it, its token, when; epoch ms).
    wake: Option<(u32, u64, i64)>,
}

/// The slot of `config` on this thread (made and configured on first use).
fn slot_of(config: &Arc<SharedConfig>) -> Option<Rc<RefCell<Slot>>> {
    SLOTS.with(|slots| {
        let mut slots = slots.try_borrow_mut().ok()?;
        if let Some((_, slot)) = slots.iter().find(|(id, _)| *id == config.id) {
            return Some(slot.clone());
        }
        slots.retain(|(_, s)| s.try_borrow().map_or(true, |s| s.config.strong_count() > 0));
        let mut host = HostState::new(
            config.envoy,
            Arc::new(config.metrics.clone()),
            config.namespace.clone(),
            config.filter_state,
        );
        host.feed_key.clone_from(&config.feed_key);
        let mut worker = Worker::new(ROOT);
        worker.configure(&mut host, &config.bytes);
        let slot = Rc::new(RefCell::new(Slot {
            config_id: config.id,
            config: Arc::downgrade(config),
            worker,
            host,
            wake: None,
        }));
        slots.push((config.id, slot.clone()));
        Some(slot)
    })
}

/// Runs `f` on the slot of `config` on this thread; `None` when that slot
/// is busy (a call from inside one of its own calls).
fn with_slot<T>(config: &Arc<SharedConfig>, f: impl FnOnce(&mut Slot) -> T) -> Option<T> {
    let slot = slot_of(config)?;
    let mut slot = slot.try_borrow_mut().ok()?;
    let out = f(&mut slot);
    slot.finish();
    Some(out)
}

impl Slot {
    /// After each event: forgets the filters Envoy ended meanwhile, runs
    /// the root context's tick, writes the metadata still pending.
    fn finish(&mut self) {
        loop {
            let gone: Vec<u32> = ENDED.with(|e| {
                let mut e = e.borrow_mut();
                let (mine, others): (Vec<_>, Vec<_>) =
                    e.drain(..).partition(|(c, _)| *c == self.config_id);
                *e = others;
                mine.into_iter().map(|(_, id)| id).collect()
            });
            if gone.is_empty() {
                break;
            }
            for id in gone {
                self.host.forget(id);
                self.worker.on_stream_end(&mut self.host, id);
            }
        }
        self.host.flush_metadata();
        self.host.effective = Effective::Root;
        self.worker.on_tick(&mut self.host);
        self.host.flush_metadata();
        if let Some(at) = self.worker.next_due_ms() {
            self.arm(at);
        }
        self.host.current = None;
        self.host.effective = Effective::Current;
    }

    /// Makes sure a wake-up comes by `at` (epoch ms): the one armed if it
    /// is as early and its filter lives, else a new one on a filter of this
    /// thread that waits (any: its event runs the worker's tick).
    fn arm(&mut self, at: i64) {
        if let Some((id, token, armed_at)) = self.wake.take() {
            let carried = self.host.filters.get(&id).filter(|l| l.wake.get() == token);
            if carried.is_some() && armed_at <= at && !ended(id) {
                self.wake = Some((id, token, armed_at));
                return;
            }
            if let Some(l) = carried {
                l.wake.set(0);
            }
            cancel_wake(token);
        }
        let now = self.host.now_ms();
        let waiting = self
            .host
            .filters
            .iter()
            .filter(|(id, l)| l.paused.get() && !ended(**id))
            .max_by_key(|(id, _)| **id);
        let Some((id, live)) = waiting else {
            return;
        };
        let Some(scheduler) = live.filter.scheduler() else {
            return;
        };
        let delay = Duration::from_millis(u64::try_from(at - now).unwrap_or(0));
        let Some(token) = wake_at(delay, scheduler) else {
            return;
        };
        live.wake.set(token);
        self.wake = Some((*id, token, at));
    }
}

// ------------------------------------------------------------ wake-ups

/// The wake-ups armed (docs/native.md#ticks): a thread of the module's own
/// commits each filter's scheduler when its time comes (the event runs on
/// the filter's worker thread), and ends when none is left.
struct Wakes {
    state: Mutex<Pending>,
    changed: Condvar,
}

#[derive(Default)]
struct Pending {
    /// (when, token, the scheduler of the filter that carries it). A
    /// filter's entry is removed (under the lock) before the filter ends:
    /// nothing is committed for a filter Envoy has destroyed.
    due: Vec<(Instant, u64, abi::FilterScheduler)>,
    running: bool,
    thread: Option<std::thread::JoinHandle<()>>,
}

static WAKES: LazyLock<Wakes> = LazyLock::new(|| Wakes {
    state: Mutex::new(Pending::default()),
    changed: Condvar::new(),
});
static NEXT_WAKE: AtomicU64 = AtomicU64::new(1);

fn wakes() -> std::sync::MutexGuard<'static, Pending> {
    WAKES.state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Commits `scheduler` (event: the token returned) after `delay`.
fn wake_at(delay: Duration, scheduler: abi::FilterScheduler) -> Option<u64> {
    let at = Instant::now().checked_add(delay)?;
    let token = NEXT_WAKE.fetch_add(1, Ordering::Relaxed);
    let mut p = wakes();
    p.due.push((at, token, scheduler));
    if p.running {
        drop(p);
        WAKES.changed.notify_all();
        return Some(token);
    }
    let spawned = std::thread::Builder::new()
        .name("oauthv2info-wake".into())
        .spawn(run_wakes);
    match spawned {
        Ok(t) => {
            p.running = true;
            let ended = p.thread.replace(t);
            drop(p);
            // The previous thread has ended (it was not running).
            if let Some(t) = ended {
                let _ = t.join();
            }
            Some(token)
        }
        Err(e) => {
            p.due.retain(|(_, t, _)| *t != token);
            error!("oauthv2info: the wake-up thread did not start: {e}");
            None
        }
    }
}

fn run_wakes() {
    let mut p = wakes();
    loop {
        let now = Instant::now();
        // A due entry is committed and its scheduler deleted (dropped).
        p.due.retain(|(at, token, scheduler)| {
            if *at <= now {
                scheduler.commit(*token);
            }
            *at > now
        });
        let Some(next) = p.due.iter().map(|(at, _, _)| *at).min() else {
            p.running = false;
            return;
        };
        p = WAKES
            .changed
            .wait_timeout(p, next.saturating_duration_since(now))
            .map_or_else(|e| e.into_inner().0, |(p, _)| p);
    }
}

/// Cancels a wake-up (its scheduler deleted); nothing if it went already.
fn cancel_wake(token: u64) {
    let mut p = wakes();
    p.due.retain(|(_, t, _)| *t != token);
    let idle = p.due.is_empty();
    drop(p);
    if idle {
        WAKES.changed.notify_all();
    }
}

/// A configuration goes: the wake-up thread, when idle, is joined (nothing
/// of the module runs on after Envoy may unload it).
fn stop_wakes() {
    let thread = {
        let mut p = wakes();
        if p.due.is_empty() {
            p.thread.take()
        } else {
            None
        }
    };
    WAKES.changed.notify_all();
    if let Some(t) = thread {
        let _ = t.join();
    }
}

/// A wake-up this filter carried (its thread's worker has timed work):
/// the event runs the worker's tick (at the end, as every event does).
pub fn filter_scheduled(m: &FilterModule, filter: Filter, event: u64) {
    if m.wake.get() == event {
        m.wake.set(0);
    }
    with_slot(&m.config, |slot| {
        if slot.wake.is_some_and(|(_, t, _)| t == event) {
            slot.wake = None;
        }
        slot.host.begin(m, filter);
    });
}

/// A request's headers: true pauses the request.
pub fn request_headers(m: &FilterModule, filter: Filter, end_of_stream: bool) -> bool {
    with_slot(&m.config, |slot| {
        slot.host.begin(m, filter);
        if slot.host.feed_key.is_some() {
            // The change feed's view, as the poller last wrote it, before
            // the lookup (a thread idle for a while holds an old one).
            slot.host.effective = Effective::Root;
            slot.worker.on_tick(&mut slot.host);
            slot.host.effective = Effective::Current;
        }
        let action = slot
            .worker
            .on_request_headers(&mut slot.host, m.id, end_of_stream);
        slot.host.flush_metadata();
        let pause = action == Action::Pause;
        if let Some(live) = slot.host.filters.get(&m.id) {
            live.paused.set(pause && !live.replied);
        }
        pause
    })
    .unwrap_or_else(|| {
        // Never a silent pass-through: a request the worker cannot take
        // (its slot busy, which Envoy gives no reason for) is refused.
        error!("oauthv2info: a request arrived while this thread's worker was busy: answered 503");
        internal_error(filter);
        true
    })
}

pub fn callout_done(m: &FilterModule, filter: Filter, envoy_id: u64, answer: CallAnswer) {
    with_slot(&m.config, |slot| {
        slot.host.begin(m, filter);
        let Some(token) = slot.host.callouts.remove(&(m.id, envoy_id)) else {
            return;
        };
        let size = answer.body.len();
        slot.host.answer = Some(answer);
        slot.worker
            .on_call_response(&mut slot.host, m.id, token, size);
        slot.host.answer = None;
    });
}

pub fn filter_destroy(m: &FilterModule) {
    // Its wake-up first: nothing is committed for it once it is gone (the
    // slot arms another at the end of this event if one is still needed).
    let token = m.wake.replace(0);
    if token != 0 {
        cancel_wake(token);
    }
    let done = with_slot(&m.config, |slot| {
        slot.host.forget(m.id);
        slot.worker.on_stream_end(&mut slot.host, m.id);
    });
    if done.is_none() {
        ENDED.with(|e| {
            if let Ok(mut e) = e.try_borrow_mut() {
                e.push((m.config.id, m.id));
            }
        });
    }
}

/// After a panic inside an event of `m`: the slot is dropped (the next
/// request makes a new one) and every stream it held paused is answered
/// 503, as is `filter` unless it was answered already.
pub fn recover(m: &FilterModule, filter: Filter) {
    let mut answered = false;
    let mut paused = Vec::new();
    let slot = SLOTS.with(|slots| {
        let mut slots = slots.try_borrow_mut().ok()?;
        let i = slots.iter().position(|(id, _)| *id == m.config.id)?;
        Some(slots.remove(i).1)
    });
    if let Some(slot) = slot {
        if let Ok(slot) = slot.try_borrow() {
            answered = slot.host.filters.get(&m.id).is_some_and(|l| l.replied);
            paused = slot
                .host
                .filters
                .iter()
                .filter(|(id, l)| **id != m.id && l.paused.get() && !ended(**id))
                .map(|(_, l)| l.filter)
                .collect();
        }
    }
    if !answered && !ended(m.id) {
        internal_error(filter);
    }
    for f in paused {
        internal_error(f);
    }
}

fn internal_error(filter: Filter) {
    filter.send_response(
        503,
        &[("content-type", b"application/json")],
        INTERNAL_ERROR,
        "oauthv2info_internal_error",
    );
}

/// The documented 503 of a filter that failed inside (docs/faults.md).
pub const INTERNAL_ERROR: &[u8] = br#"{"fault":{"faultstring":"Internal error in the oauthv2info filter","detail":{"errorcode":"keymanagement.service.internal_error"}}}"#;

// ------------------------------------------------------------- the host

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effective {
    /// The filter whose event is running.
    Current,
    /// The root context: a callout it sends rides on a paused filter.
    Root,
    Stream(u32),
    /// A stream that is gone: every call is dropped.
    Gone,
}

#[derive(Debug)]
struct Live {
    filter: Filter,
    paused: Rc<Cell<bool>>,
    wake: Rc<Cell<u64>>,
    /// A local reply was sent.
    replied: bool,
}

/// The hasher of the host's maps keyed by the module's own stream ids and
/// Envoy's callout ids (numbers no client chooses): a multiply-and-rotate
/// mix instead of SipHash, which cost about 850 instructions a request
/// (docs/performance.md#the-native-module). The cache's store, keyed by
/// what clients send, keeps SipHash.
#[derive(Clone, Copy, Default)]
struct Ids;

#[derive(Default)]
struct IdHasher(u64);

impl BuildHasher for Ids {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher(0)
    }
}

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// The core's host on one thread, for one configuration.
struct HostState {
    envoy: abi::Config,
    metrics: Arc<Vec<(String, Metric, usize)>>,
    /// While the configuration loads: the metrics being defined.
    defining: Option<Vec<(String, Metric, usize)>>,
    namespace: String,
    filter_state: bool,
    filters: HashMap<u32, Live, Ids>,
    current: Option<(u32, Filter)>,
    effective: Effective,
    /// Callouts in flight: (filter, Envoy's callout id) → the core's token.
    callouts: HashMap<(u32, u64), u32, Ids>,
    next_token: u32,
    answer: Option<CallAnswer>,
    /// Metadata not written yet: the filter, then keys and values in one
    /// buffer (by their ends).
    pending_for: Option<(u32, Filter)>,
    pending: Vec<u8>,
    pending_ends: Vec<(usize, usize)>,
    state_key: Vec<u8>,
    /// The poller's host: callouts are the configuration's.
    via_config: bool,
    /// A worker thread's host: the change feed's record is read, never
    /// written (the main thread's poller holds its lease).
    feed_key: Option<String>,
}

impl HostState {
    fn new(
        envoy: abi::Config,
        metrics: Arc<Vec<(String, Metric, usize)>>,
        namespace: String,
        filter_state: bool,
    ) -> HostState {
        HostState {
            envoy,
            metrics,
            defining: None,
            namespace,
            filter_state,
            filters: HashMap::default(),
            current: None,
            effective: Effective::Current,
            callouts: HashMap::default(),
            next_token: 1,
            answer: None,
            pending_for: None,
            pending: Vec::new(),
            pending_ends: Vec::new(),
            state_key: Vec::new(),
            via_config: false,
            feed_key: None,
        }
    }

    fn begin(&mut self, m: &FilterModule, filter: Filter) {
        let id = m.id;
        self.filters.entry(id).or_insert_with(|| Live {
            filter,
            paused: m.paused.clone(),
            wake: m.wake.clone(),
            replied: false,
        });
        self.current = Some((id, filter));
        self.effective = Effective::Current;
    }

    fn forget(&mut self, id: u32) {
        self.filters.remove(&id);
        self.callouts.retain(|(f, _), _| *f != id);
        if self.current.is_some_and(|(c, _)| c == id) {
            self.current = None;
        }
        if self.pending_for.is_some_and(|(p, _)| p == id) {
            self.pending_for = None;
            self.pending.clear();
            self.pending_ends.clear();
        }
    }

    /// The filter host calls act on, if it is still there.
    fn target(&self) -> Option<(u32, Filter)> {
        let t = match self.effective {
            Effective::Current | Effective::Root => self.current,
            Effective::Stream(id) => self.filters.get(&id).map(|l| (id, l.filter)),
            Effective::Gone => None,
        }?;
        (!ended(t.0)).then_some(t)
    }

    /// Where a callout goes: the effective stream's own filter; for the
    /// root context, the running filter if it waits, else the last filter
    /// that waits (the request the core deferred).
    fn callout_target(&self) -> Option<(u32, Filter)> {
        if self.effective != Effective::Root {
            return self.target();
        }
        let waiting =
            |id: &u32| self.filters.get(id).is_some_and(|l| l.paused.get()) && !ended(*id);
        if let Some(c) = self.current.filter(|(id, _)| waiting(id)) {
            return Some(c);
        }
        self.filters
            .iter()
            .filter(|(id, _)| waiting(id))
            .max_by_key(|(id, _)| **id)
            .map(|(id, l)| (*id, l.filter))
            .or_else(|| self.target())
    }

    fn flush_metadata(&mut self) {
        let Some((id, filter)) = self.pending_for.take() else {
            return;
        };
        if !self.pending_ends.is_empty() && self.filters.contains_key(&id) && !ended(id) {
            let mut entries: Vec<(&[u8], &[u8])> = Vec::with_capacity(self.pending_ends.len());
            let mut start = 0;
            for (key_end, value_end) in &self.pending_ends {
                let key = self.pending.get(start..*key_end).unwrap_or_default();
                let value = self.pending.get(*key_end..*value_end).unwrap_or_default();
                entries.push((key, value));
                start = *value_end;
            }
            filter.set_metadata_strings(&self.namespace, &entries);
        }
        self.pending.clear();
        self.pending_ends.clear();
    }

    fn metric(&self, id: u32) -> Option<(Metric, usize)> {
        let i = usize::try_from(id).ok()?.checked_sub(1)?;
        self.metrics.get(i).map(|(_, kind, envoy)| (*kind, *envoy))
    }
}

impl Host for HostState {
    fn now_ms(&mut self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }

    fn random_keys(&mut self) -> [u64; 2] {
        // The standard library seeds each RandomState from the OS.
        let draw = || {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(0x9e37_79b9_7f4a_7c15);
            h.finish()
        };
        [draw(), draw()]
    }

    fn request_header(&mut self, name: &str) -> Option<Vec<u8>> {
        self.target()?.1.request_header(name)
    }

    fn request_headers(&mut self) -> Vec<(String, Vec<u8>)> {
        self.target()
            .map(|(_, f)| f.request_headers())
            .unwrap_or_default()
    }

    fn set_request_header(&mut self, name: &str, value: &[u8]) -> bool {
        self.target()
            .is_some_and(|(_, f)| f.set_request_header(name, Some(value)))
    }

    fn add_request_header(&mut self, name: &str, value: &[u8]) -> bool {
        self.target()
            .is_some_and(|(_, f)| f.add_request_header(name, value))
    }

    fn remove_request_header(&mut self, name: &str) {
        if let Some((_, f)) = self.target() {
            f.set_request_header(name, None);
        }
    }

    fn property(&mut self, path: &[&str]) -> Option<Vec<u8>> {
        let (_, f) = self.target()?;
        match path {
            ["source", "address"] => f.attribute_string(abi::ATTRIBUTE_SOURCE_ADDRESS),
            ["metadata", "filter_metadata", ns, key] => f.metadata_string(ns, key),
            _ => None,
        }
    }

    /// A published variable: to the metadata batch of its stream, and to
    /// filter state when the configuration asks.
    fn set_filter_state(&mut self, key: &[u8], value: &[u8]) -> bool {
        if key == BRIDGE_KEY {
            return true;
        }
        let Some(target) = self.target() else {
            return false;
        };
        if self.pending_for.is_some_and(|(id, _)| id != target.0) {
            self.flush_metadata();
        }
        self.pending_for = Some(target);
        self.pending.extend_from_slice(key);
        let key_end = self.pending.len();
        self.pending.extend_from_slice(value);
        self.pending_ends.push((key_end, self.pending.len()));
        if self.filter_state {
            self.state_key.clear();
            self.state_key.extend_from_slice(b"wasm.");
            self.state_key.extend_from_slice(key);
            return target.1.set_filter_state(&self.state_key, value);
        }
        true
    }

    fn shared_data(&mut self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        STORE.get(key)
    }

    fn set_shared_data(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> SharedWrite {
        if self.feed_key.as_deref() == Some(key) {
            return SharedWrite::Failed;
        }
        STORE.set(key, value, cas)
    }

    fn dispatch(
        &mut self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout_ms: u32,
    ) -> Result<u32, String> {
        let sent = if self.via_config {
            self.envoy
                .http_callout(cluster, headers, body, u64::from(timeout_ms))
                .map(|envoy_id| (0, envoy_id))
        } else {
            let Some((id, filter)) = self.callout_target() else {
                return Err("the request is gone".to_string());
            };
            filter
                .http_callout(cluster, headers, body, u64::from(timeout_ms))
                .map(|envoy_id| (id, envoy_id))
        };
        match sent {
            Ok(key) => {
                let token = self.next_token;
                self.next_token = self.next_token.wrapping_add(1).max(1);
                self.callouts.insert(key, token);
                Ok(token)
            }
            Err(code) => Err(format!(
                "could not call cluster {cluster:?} (callout refused: {}: unknown cluster or no healthy host)",
                match code {
                    1 => "missing required headers",
                    2 => "cluster not found",
                    3 => "duplicate callout id",
                    _ => "cannot create request",
                }
            )),
        }
    }

    fn call_response_status(&mut self) -> Option<u16> {
        self.answer.as_ref()?.status
    }

    fn call_response_body(&mut self, _size: usize) -> Vec<u8> {
        self.answer
            .as_ref()
            .map(|a| a.body.clone())
            .unwrap_or_default()
    }

    fn send_local_response(&mut self, status: u32, headers: &[(&str, &[u8])], body: &[u8]) -> bool {
        self.flush_metadata();
        let Some((id, filter)) = self.target() else {
            return false;
        };
        if let Some(live) = self.filters.get_mut(&id) {
            live.replied = true;
            live.paused.set(false);
        }
        filter.send_response(status, headers, body, "oauthv2info");
        true
    }

    fn resume_request(&mut self) {
        self.flush_metadata();
        let Some((id, filter)) = self.target() else {
            return;
        };
        let waiting = self
            .filters
            .get(&id)
            .is_some_and(|l| l.paused.replace(false));
        // Only a request this filter paused (a continue on a running
        // request is not ours to give).
        if waiting {
            filter.continue_decoding();
        }
    }

    fn set_effective_context(&mut self, context: u32) {
        let next = if context == ROOT {
            Effective::Root
        } else if self.current.is_some_and(|(id, _)| id == context) {
            Effective::Current
        } else if self.filters.contains_key(&context) {
            Effective::Stream(context)
        } else {
            Effective::Gone
        };
        if next != self.effective {
            self.flush_metadata();
        }
        self.effective = next;
    }

    /// The root context's tick runs after every event, and when the core's
    /// timed work is due (docs/native.md#ticks).
    fn set_tick_period_ms(&mut self, _ms: u32) {}

    fn define_metric(&mut self, kind: MetricKind, name: &str) -> Option<u32> {
        let kind = match kind {
            MetricKind::Counter => Metric::Counter,
            MetricKind::Gauge => Metric::Gauge,
            MetricKind::Histogram => Metric::Histogram,
        };
        if let Some(defining) = &mut self.defining {
            let envoy = self.envoy.define(kind, name)?;
            defining.push((name.to_string(), kind, envoy));
            return u32::try_from(defining.len()).ok();
        }
        let i = self
            .metrics
            .iter()
            .position(|(n, k, _)| n == name && *k == kind)?;
        u32::try_from(i + 1).ok()
    }

    fn increment_metric(&mut self, id: u32, delta: i64) {
        if let (Some((kind, envoy)), Ok(delta)) = (self.metric(id), u64::try_from(delta)) {
            self.envoy.increment(kind, envoy, delta);
        }
    }

    fn record_metric(&mut self, id: u32, value: u64) {
        if let Some((kind, envoy)) = self.metric(id) {
            self.envoy.record(kind, envoy, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_options_are_taken_out_and_the_bridge_is_none() {
        let (bytes, fs) =
            native_options(br#"{"policies": [], "filter_state": true, "metadata_bridge": "lua"}"#)
                .unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert!(fs);
        assert_eq!(v["metadata_bridge"], "none");
        assert!(v.get("filter_state").is_none());
        let (_, fs) = native_options(br#"{"policies": []}"#).unwrap();
        assert!(!fs);
        assert!(native_options(br#"{"filter_state": 1}"#)
            .unwrap_err()
            .contains("\"filter_state\""));
        // The core refuses these itself.
        assert_eq!(native_options(b"[]").unwrap().0, b"[]");
        assert_eq!(native_options(b"{").unwrap().0, b"{");
    }
}
