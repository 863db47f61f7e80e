//! The filter's per-worker driver: it takes the host's callbacks (a request's
//! headers, a callout's answer, a stream's end, the root's tick) and moves
//! each request's [`Flow`] through them, over the [`Host`] trait. Every
//! decision lives here, as pure code the tests drive with a fake host, one
//! job a module: [`driver`] (a request: what to read of it, coalescing of
//! concurrent lookups, deferral of callouts a request cannot send itself),
//! [`shared_cache`] (which slot, may this answer overwrite that entry),
//! [`poller`] (the change feed), [`sink`] (what to publish and how); this
//! module holds the worker's state, its configuration and its tick.
//!
//! One [`Worker`] per Wasm VM (Envoy runs one VM per worker thread).
//!
//! The warm path (every lookup a cache hit) runs inside the request's
//! headers callback and allocates nothing beyond the buffers the host
//! hands over: it reuses one [`Stream`] and its buffers from request to
//! request, reads each cache entry in place, and publishes from it
//! directly (docs/performance.md#the-warm-path).

use hashbrown::DefaultHashBuilder;
use hashbrown::HashMap;
use std::hash::BuildHasher;
use std::rc::Rc;

use log::{debug, error, info, warn};

use crate::config::{parse_config, FilterConfig};
use crate::feed;
use crate::flow::Flow;
use crate::host::Host;
use crate::metrics::Metrics;
use crate::profile::products::Decisions;
use crate::request::RequestInfo;

mod budget;
mod driver;
mod poller;
mod shared_cache;
mod sink;

use poller::{poller_id, FeedWorker};

/// What the host should do with the request after a headers callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    Pause,
}

/// How often the root context's tick runs: metrics are handed over then.
pub(crate) const TICK_MS: u32 = 1000;
/// The tick while requests wait for the root context to send their callout.
const DEFERRED_TICK_MS: u32 = 1;

/// The callout answer being delivered: its status and its body.
fn call_response(host: &mut impl Host, body_size: usize) -> (Option<u16>, Vec<u8>) {
    let status = host.call_response_status();
    let body = if body_size > 0 {
        host.call_response_body(body_size)
    } else {
        Vec::new()
    };
    (status, body)
}

const NOT_CONFIGURED: &[u8] = br#"{"fault":{"faultstring":"Filter not configured","detail":{"errorcode":"keymanagement.service.not_configured"}}}"#;

/// One request the filter is running.
#[derive(Debug, Default)]
pub(crate) struct Stream {
    id: u32,
    config: Option<Rc<FilterConfig>>,
    request: RequestInfo,
    flow: Flow,
    /// When the in-flight callout was sent (epoch ms).
    callout_started_ms: i64,
    /// The coalescing key of the introspection this request sent.
    leads: Option<String>,
    /// How many times its callout was sent again after no token service
    /// answered it, and when it was first sent (epoch ms).
    retries: u8,
    first_sent_ms: i64,
    /// The pending lookup missed the cache, but the cache holds this
    /// token's known profile (expired or stale): not charged to the lookup
    /// budget.
    seen: bool,
}

/// Scratch buffers reused by every request of the worker.
#[derive(Debug, Default)]
struct Buffers {
    key: String,
    name: Vec<u8>,
    blob: Vec<u8>,
    text: String,
}

/// Log lines a client can cause at will are warnings at most once a minute.
#[derive(Debug, Default)]
struct RateLimit {
    next_ms: i64,
    suppressed: u64,
}

impl RateLimit {
    fn warn(&mut self, now_ms: i64, message: impl FnOnce() -> String) {
        if now_ms >= self.next_ms {
            self.emit(now_ms, message());
        } else {
            self.suppressed += 1;
            debug!("oauthv2info: {}", message());
        }
    }

    /// The warning itself: one copy in the `.wasm`, not one per caller's
    /// message (docs/performance.md#module-size).
    #[inline(never)]
    fn emit(&mut self, now_ms: i64, text: String) {
        if self.suppressed > 0 {
            warn!(
                "oauthv2info: {text} ({} more like it in the last minute, at debug level)",
                self.suppressed
            );
        } else {
            warn!("oauthv2info: {text}");
        }
        self.next_ms = now_ms + 60_000;
        self.suppressed = 0;
    }
}

/// SipHash-2-4 under keys the host drew at random: the hasher of the map
/// whose keys a client chooses (its tokens). The standard library's
/// `RandomState` cannot be given keys, and on the filter's Wasm target it
/// takes them from addresses (docs/decisions.md#the-wasm-target).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Keyed(pub [u64; 2]);

impl BuildHasher for Keyed {
    // Deprecated only in favour of `DefaultHasher`, which takes no keys.
    #[allow(deprecated)]
    type Hasher = std::hash::SipHasher;

    #[allow(deprecated)]
    fn build_hasher(&self) -> Self::Hasher {
        std::hash::SipHasher::new_with_keys(self.0[0], self.0[1])
    }
}

/// The per-VM state.
#[derive(Debug, Default)]
pub struct Worker {
    root_id: u32,
    config: Option<Rc<FilterConfig>>,
    metrics: Metrics,
    /// Requests paused on a callout, by context id.
    streams: HashMap<u32, Box<Stream>, DefaultHashBuilder>,
    /// A stream kept for the next request (the warm path allocates none).
    spare: Option<Box<Stream>>,
    /// Introspections in flight, by (cluster, kind, token): the requests
    /// waiting on the one callout (its sender is not listed).
    /// Keyed by the host's random keys once a configuration loads.
    inflight: HashMap<String, Vec<u32>, Keyed>,
    /// Requests whose callout the root context must send (see `can_send`).
    deferred: Vec<u32>,
    /// Requests whose call no token service answered, paused until it is
    /// sent again: (context id, when; epoch ms).
    retrying: Vec<(u32, i64)>,
    /// Callouts in flight: callout token → request context id.
    callouts: HashMap<u32, u32, DefaultHashBuilder>,
    buffers: Buffers,
    header_warnings: RateLimit,
    form_warnings: RateLimit,
    /// The lookup budget's bucket (docs/configuration.md#the-lookup-budget).
    budget: budget::Bucket,
    /// Refused lookups are logged at most once a minute.
    budget_warnings: RateLimit,
    /// The tick period when nothing is deferred.
    tick_ms: u32,
    feed: FeedWorker,
    /// The API-product decisions of the current configuration's requests
    /// (`profile::products::Decisions`).
    decisions: Decisions,
}

impl Worker {
    pub fn new(root_id: u32) -> Worker {
        Worker {
            root_id,
            ..Worker::default()
        }
    }

    pub fn config(&self) -> Option<&Rc<FilterConfig>> {
        self.config.as_ref()
    }

    /// Requests paused on a callout.
    #[cfg(test)]
    pub(crate) fn paused(&self) -> usize {
        self.streams.len()
    }

    /// The keys of the map of introspections in flight.
    #[cfg(test)]
    pub(crate) fn inflight_keys(&self) -> [u64; 2] {
        self.inflight.hasher().0
    }

    /// Loads the plugin configuration; false refuses it (with one log line
    /// naming the policy, the element and the problem). Requests in flight
    /// keep the configuration they started with.
    pub fn configure(&mut self, host: &mut impl Host, bytes: &[u8]) -> bool {
        if *self.inflight.hasher() == Keyed::default() {
            self.inflight = HashMap::with_hasher(Keyed(host.random_keys()));
        }
        match parse_config(bytes) {
            Ok(config) => {
                for warning in &config.warnings {
                    warn!("oauthv2info: {warning}");
                }
                info!(
                    "oauthv2info {}: configured {} polic{} ({}), token service cluster {:?}, metadata bridge {}",
                    env!("CARGO_PKG_VERSION"),
                    config.policies.len(),
                    if config.policies.len() == 1 { "y" } else { "ies" },
                    config
                        .policies
                        .iter()
                        .map(|p| format!("{} {:?}", p.type_name(), p.name))
                        .collect::<Vec<_>>()
                        .join(", "),
                    config.token_service.cluster,
                    config.metadata.bridge.name(),
                );
                self.metrics = Metrics::define(host, &config);
                self.tick_ms = TICK_MS;
                if let Some(inv) = &config.cache.invalidation {
                    self.tick_ms = TICK_MS.min(inv.poll_ms);
                    self.feed.key =
                        feed::feed_key(&config.token_service.cluster, config.cache.max_entries);
                    if self.feed.me == 0 {
                        self.feed.me = poller_id(host, self.root_id);
                    }
                    info!(
                        "oauthv2info: cache invalidation on: the change feed {:?} of cluster {:?}, read every {} ms; no hit when it is more than {} ms behind",
                        inv.path, config.token_service.cluster, inv.poll_ms, inv.max_stale_ms
                    );
                }
                self.config = Some(Rc::new(config));
                // Decided under the former proxy name and environment.
                self.decisions.clear();
                host.set_tick_period_ms(self.tick_ms);
                true
            }
            Err(e) => {
                error!("oauthv2info: configuration refused: {e}");
                false
            }
        }
    }

    /// When the root's tick next has timed work (the earliest retry; epoch
    /// ms), for a host whose tick is no timer (the native module).
    pub fn next_due_ms(&self) -> Option<i64> {
        self.retrying.iter().map(|&(_, at)| at).min()
    }

    /// The root context's tick: sends deferred callouts, hands counts over.
    pub fn on_tick(&mut self, host: &mut impl Host) {
        let ids = std::mem::take(&mut self.deferred);
        for id in ids {
            let Some(stream) = self.streams.remove(&id) else {
                continue;
            };
            // The root is the active context: the stream may send now.
            if self.run(host, stream, true) == Action::Continue {
                host.set_effective_context(id);
                host.resume_request();
            }
        }
        host.set_effective_context(self.root_id);
        self.send_retries(host);
        if self.deferred.is_empty() && self.retrying.is_empty() {
            host.set_tick_period_ms(self.tick_ms.max(DEFERRED_TICK_MS));
        }
        self.feed_tick(host);
        self.metrics.flush(host);
    }
}

#[cfg(test)]
mod tests;
