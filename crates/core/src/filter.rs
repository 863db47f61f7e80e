//! The filter's per-worker driver: it takes the host's callbacks (a request's
//! headers, a callout's answer, a stream's end, the root's tick) and moves
//! each request's [`Flow`] through them, over the [`Host`] trait. Every
//! decision lives here, as pure code the tests drive with a fake host:
//! what to read from the request, the cache (which slot, may this answer
//! overwrite that entry), coalescing of concurrent lookups, deferral of
//! callouts a request cannot send itself, what to publish and how.
//!
//! One [`Worker`] per Wasm VM (Envoy runs one VM per worker thread).
//!
//! The warm path (every lookup a cache hit) runs inside the request's
//! headers callback and allocates nothing beyond the buffers the host
//! hands over: it reuses one [`Stream`] and its buffers from request to
//! request, reads each cache entry in place, and publishes from it
//! directly (docs/performance.md#the-warm-path).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::rc::Rc;

use log::{debug, error, info, warn};
use oauthv2info_names::{token_hash, Fault};

use crate::cache::{self, EntryHead, SlotRead};
use crate::config::{parse_config, FilterConfig, HeaderReads, Invalidation, MetadataBridge};
use crate::feed::{self, FeedAnswer, FeedState, FeedView};
use crate::flow::{Event, Flow, Learned, Pending, Step};
use crate::host::{Host, SharedWrite};
use crate::metrics::{self, Metrics};
use crate::profile::Answer;
use crate::publish::{push_netstring, EMPTY_METADATA_VALUE, METADATA_BRIDGE_KEY};
use crate::request::{
    header_text, ip_from_address, is_form_urlencoded, is_valid_header_value, Headers, RequestInfo,
};

/// True for an answer Envoy made up because no token service answered:
/// no status (a reset), or a 503 that is not the token service's JSON (a
/// refused or failed connection, no healthy host). A timeout (504) is not
/// one: the call may have reached the service, and another would double
/// the wait. Nor is the cluster's circuit breaker refusing the call
/// (Envoy's 503 "... reset reason: overflow"): another call would be
/// refused too, and during a flood it would triple the work.
fn never_answered(status: Option<u16>, body: &[u8]) -> bool {
    match status {
        None => true,
        Some(503) => {
            !body.trim_ascii_start().starts_with(b"{") && !body.windows(8).any(|w| w == b"overflow")
        }
        Some(_) => false,
    }
}

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

/// How long a poller's lease lasts: two polls and a callout's timeout, so
/// that a slow answer does not hand the feed to another poller.
fn lease_ms(config: &FilterConfig, inv: &Invalidation) -> i64 {
    2 * i64::from(inv.poll_ms) + i64::from(config.token_service.timeout_ms)
}

/// A poller id unique among the root contexts of this Envoy: a counter in
/// shared data, taken with CAS.
fn poller_id(host: &mut impl Host, root_id: u32) -> u64 {
    for _ in 0..16 {
        let (bytes, cas) = host.shared_data(feed::POLLER_IDS_KEY);
        let last = bytes
            .as_deref()
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_le_bytes);
        let id = last.wrapping_add(1).max(1);
        if host.set_shared_data(feed::POLLER_IDS_KEY, &id.to_le_bytes(), cas) == SharedWrite::Ok {
            return id;
        }
    }
    // Contended beyond reason: the clock and the root context's id.
    (host.now_ms() as u64) << 20 | u64::from(root_id & 0xf_ffff)
}

/// What the host should do with the request after a headers callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    Pause,
}

/// How often the root context's tick runs: metrics are handed over then.
pub const TICK_MS: u32 = 1000;
/// How many times a call no token service answered is sent again.
const MAX_RETRIES: u8 = 2;
/// The tick while requests wait for the root context to send their callout.
const DEFERRED_TICK_MS: u32 = 1;

/// How early a tick may come and still send a poll that is due.
const POLL_SLACK_MS: i64 = 100;

const NOT_CONFIGURED: &[u8] = br#"{"fault":{"faultstring":"Filter not configured","detail":{"errorcode":"keymanagement.service.not_configured"}}}"#;

/// One request the filter is running.
#[derive(Debug, Default)]
pub struct Stream {
    id: u32,
    config: Option<Rc<FilterConfig>>,
    request: RequestInfo,
    flow: Flow,
    /// When the in-flight callout was sent (epoch ms).
    callout_started_ms: i64,
    /// The coalescing key of the introspection this request sent.
    leads: Option<String>,
    /// How many times its callout was sent again after no token service
    /// answered it.
    retries: u8,
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
            let text = message();
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
        } else {
            self.suppressed += 1;
            debug!("oauthv2info: {}", message());
        }
    }
}

/// The change-feed side of a worker (cache invalidation on): its poller id,
/// what it knows of the feed, and its poll in flight.
#[derive(Debug, Default)]
struct FeedWorker {
    /// This root context's poller id (unique on this Envoy).
    me: u64,
    /// The feed record's shared-data key.
    key: String,
    view: FeedView,
    /// The poll in flight: its callout token and when it was sent.
    inflight: Option<(u32, i64)>,
    next_poll_ms: i64,
    warnings: RateLimit,
}

/// SipHash-2-4 under keys the host drew at random: the hasher of the map
/// whose keys a client chooses (its tokens). The standard library's
/// `RandomState` cannot be given keys, and on the filter's Wasm target it
/// takes them from addresses (docs/decisions.md#the-wasm-target).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Keyed(pub [u64; 2]);

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
    streams: HashMap<u32, Box<Stream>>,
    /// A stream kept for the next request (the warm path allocates none).
    spare: Option<Box<Stream>>,
    /// Introspections in flight, by (cluster, kind, token): the requests
    /// waiting on the one callout (its sender is not listed).
    /// Keyed by the host's random keys once a configuration loads.
    inflight: HashMap<String, Vec<u32>, Keyed>,
    /// Requests whose callout the root context must send (see `can_send`).
    deferred: Vec<u32>,
    /// Callouts in flight: callout token → request context id.
    callouts: HashMap<u32, u32>,
    buffers: Buffers,
    header_warnings: RateLimit,
    form_warnings: RateLimit,
    /// The tick period when nothing is deferred.
    tick_ms: u32,
    feed: FeedWorker,
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

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Requests paused on a callout (tests).
    pub fn paused(&self) -> usize {
        self.streams.len()
    }

    /// The keys of the map of introspections in flight (tests).
    pub fn inflight_keys(&self) -> [u64; 2] {
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
                host.set_tick_period_ms(self.tick_ms);
                true
            }
            Err(e) => {
                error!("oauthv2info: configuration refused: {e}");
                false
            }
        }
    }

    /// A request's headers (`id` is its context, the active one).
    pub fn on_request_headers(
        &mut self,
        host: &mut impl Host,
        id: u32,
        end_of_stream: bool,
    ) -> Action {
        let Some(config) = self.config.clone() else {
            host.send_local_response(
                500,
                &[("content-type", b"application/json")],
                NOT_CONFIGURED,
            );
            return Action::Pause;
        };
        let mut stream = self.spare.take().unwrap_or_default();
        stream.id = id;
        stream.request.clear();
        stream.flow.reset();
        stream.flow.now_ms = host.now_ms();
        capture(
            host,
            &config,
            &mut stream.request,
            end_of_stream,
            &mut self.form_warnings,
            stream.flow.now_ms,
        );
        stream.config = Some(config);
        self.run(host, stream, true)
    }

    /// A callout's answer, delivered to context `active`.
    pub fn on_call_response(
        &mut self,
        host: &mut impl Host,
        active: u32,
        token: u32,
        body_size: usize,
    ) {
        if self.feed.inflight.is_some_and(|(t, _)| t == token) {
            self.on_feed_answer(host, body_size);
            return;
        }
        let Some(id) = self.callouts.remove(&token) else {
            return;
        };
        let Some(mut stream) = self.streams.remove(&id) else {
            return;
        };
        let (status, body) = call_response(host, body_size);
        if active != id {
            host.set_effective_context(id);
        }
        let now = host.now_ms();
        stream.flow.now_ms = now;
        if let Some(latency) = self.metrics.latency {
            host.record_metric(
                latency,
                u64::try_from(now - stream.callout_started_ms).unwrap_or(0),
            );
        }
        let Some(config) = stream.config.clone() else {
            return;
        };
        // A call that never reached a token service (the connection was
        // refused or reset before any answer: Envoy's own 503, or no status
        // at all) is sent again, up to twice, to the cluster's next host:
        // Envoy does not retry a Wasm callout itself, both calls are
        // idempotent, and a replica that just died takes Envoy a moment to
        // eject (docs/deploying.md).
        if stream.retries < MAX_RETRIES && never_answered(status, &body) {
            stream.retries += 1;
            match self.dispatch(host, &config, &mut stream) {
                Ok(token) => {
                    debug!("oauthv2info: token service call failed before any answer: sent again");
                    self.callouts.insert(token, id);
                    self.streams.insert(id, stream);
                    host.set_effective_context(active);
                    return;
                }
                Err(reason) => debug!("oauthv2info: could not send the call again: {reason}"),
            }
        }
        let learned = stream.flow.on_response(&config, status, &body);
        if let Some(learned) = &learned {
            self.store(host, &config, learned, now, stream.callout_started_ms);
        }
        let waiters = stream
            .leads
            .take()
            .and_then(|key| self.inflight.remove(&key))
            .unwrap_or_default();
        let can_send = active == id || active == self.root_id;
        if self.run(host, stream, can_send) == Action::Continue {
            host.resume_request();
        }
        // The requests that waited on this lookup get the same answer.
        for waiter in waiters {
            let Some(mut other) = self.streams.remove(&waiter) else {
                continue;
            };
            let Some(config) = other.config.clone() else {
                continue;
            };
            host.set_effective_context(waiter);
            other.flow.now_ms = now;
            other.flow.on_response(&config, status, &body);
            if self.run(host, other, false) == Action::Continue {
                host.resume_request();
            }
        }
        host.set_effective_context(active);
    }

    /// A request ended (done or destroyed): forget it. The requests that
    /// waited on a lookup it had sent (the host cancels that callout) send
    /// their own, through the root context.
    pub fn on_stream_end(&mut self, host: &mut impl Host, id: u32) {
        let Some(mut stream) = self.streams.remove(&id) else {
            return;
        };
        self.callouts.retain(|_, s| *s != id);
        for waiters in self.inflight.values_mut() {
            waiters.retain(|w| *w != id);
        }
        if let Some(orphans) = stream.leads.take().and_then(|k| self.inflight.remove(&k)) {
            for orphan in orphans {
                self.defer(host, orphan);
            }
        }
        self.recycle(stream);
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
        if self.deferred.is_empty() {
            host.set_tick_period_ms(self.tick_ms.max(DEFERRED_TICK_MS));
        }
        self.feed_tick(host);
        self.metrics.flush(host);
    }

    /// Cache invalidation, on the tick: learns what the feed record says
    /// (the view the hits use), and polls when this root context holds the
    /// lease, or takes it when it has lapsed.
    fn feed_tick(&mut self, host: &mut impl Host) {
        let Some(config) = self.config.clone() else {
            return;
        };
        let Some(inv) = &config.cache.invalidation else {
            return;
        };
        let now = host.now_ms();
        let (bytes, cas) = host.shared_data(&self.feed.key);
        let mut state = bytes
            .as_deref()
            .and_then(FeedState::decode)
            .unwrap_or_default();
        self.feed.view = FeedView::of(&state);
        if let (Some(id), true) = (self.metrics.feed_lag, state.fresh_ms != i64::MIN) {
            host.record_metric(id, u64::try_from(now - state.fresh_ms).unwrap_or(0));
        }
        if let Some((_, sent)) = self.feed.inflight {
            if now - sent <= i64::from(config.token_service.timeout_ms) + i64::from(inv.poll_ms) {
                return;
            }
            // An answer that never came (the host lost it): poll again.
            self.feed.inflight = None;
        }
        let me = self.feed.me;
        // Polls are due `poll_ms` after the last one was sent; a tick that
        // fires a little early (timers jitter) still polls, or a 1 s poll
        // on a 1 s tick would run every other tick.
        let due = self.feed.next_poll_ms - POLL_SLACK_MS;
        if !state.may_poll(me, now) || (state.owner == me && now < due) {
            return;
        }
        state.owner = me;
        state.lease_until_ms = now + lease_ms(&config, inv);
        if host.set_shared_data(&self.feed.key, &state.encode(), cas) != SharedWrite::Ok {
            // Another poller took it first.
            return;
        }
        self.poll(host, &config, inv, state.cursor, now);
    }

    /// Sends `GET <path>?after=<cursor>&limit=<limit>`.
    fn poll(
        &mut self,
        host: &mut impl Host,
        config: &FilterConfig,
        inv: &Invalidation,
        cursor: i64,
        now: i64,
    ) {
        let service = &config.token_service;
        let path = format!("{}?after={cursor}&limit={}", inv.path, inv.limit);
        let mut headers = vec![
            (":method", "GET"),
            (":path", path.as_str()),
            (":authority", service.authority.as_str()),
            ("accept", "application/json"),
        ];
        if let Some(credentials) = &service.credentials {
            headers.push(("authorization", credentials.as_str()));
        }
        self.metrics.count(metrics::FEED_POLLS);
        match host.dispatch(&service.cluster, &headers, b"", service.timeout_ms) {
            Ok(token) => self.feed.inflight = Some((token, now)),
            Err(reason) => {
                self.metrics.count(metrics::FEED_ERRORS);
                self.feed.next_poll_ms = now + i64::from(inv.poll_ms);
                self.feed
                    .warnings
                    .warn(now, || format!("change feed not read: {reason}"));
            }
        }
    }

    /// The answer to this root context's poll: records the changes, then
    /// drops their cache entries (in that order: see [`Worker::store`]).
    fn on_feed_answer(&mut self, host: &mut impl Host, body_size: usize) {
        let Some((_, sent)) = self.feed.inflight.take() else {
            return;
        };
        let Some(config) = self.config.clone() else {
            return;
        };
        let Some(inv) = &config.cache.invalidation else {
            return;
        };
        let (status, body) = call_response(host, body_size);
        let now = host.now_ms();
        let keep = FeedState::keep_ms(config.token_service.timeout_ms, inv.poll_ms);
        let (changes, again) = match feed::parse_feed(status, &body) {
            FeedAnswer::Page {
                changes,
                next,
                head,
            } => {
                let caught_up = changes.len() < inv.limit as usize;
                let jumped = self.update_feed(host, &config, inv, now, |s| match head {
                    // Not following the feed yet (a first start, a 410):
                    // start at its head rather than read what came before.
                    Some(head) if !s.synced => {
                        s.start_at(head, sent, now);
                        true
                    }
                    _ => {
                        s.applied(&changes, next, caught_up, sent, now, keep);
                        false
                    }
                });
                match jumped {
                    // Another poller holds the lease now: it reads these again.
                    None => return,
                    // Everything before the head is dropped with the cache.
                    Some(true) => (Vec::new(), false),
                    Some(false) => (changes, !caught_up),
                }
            }
            FeedAnswer::Expired => {
                self.metrics.count(metrics::FEED_RESETS);
                warn!("oauthv2info: the change feed no longer has the changes after this Envoy's cursor (410): the whole cache is dropped");
                if self
                    .update_feed(host, &config, inv, now, |s| s.expired(now))
                    .is_none()
                {
                    return;
                }
                (Vec::new(), true)
            }
            FeedAnswer::Failure(reason) => {
                self.metrics.count(metrics::FEED_ERRORS);
                self.feed.next_poll_ms = sent + i64::from(inv.poll_ms);
                self.feed.warnings.warn(now, || reason);
                return;
            }
        };
        for change in &changes {
            self.invalidate(host, &config, *change, now);
        }
        if again {
            // More to read (a full page, or from the start after a 410).
            let cursor = host
                .shared_data(&self.feed.key)
                .0
                .as_deref()
                .and_then(FeedState::decode)
                .map_or(0, |s| s.cursor);
            self.poll(host, &config, inv, cursor, now);
        } else {
            self.feed.next_poll_ms = sent + i64::from(inv.poll_ms);
        }
    }

    /// Rewrites the feed record with `change` while this root context holds
    /// the lease, and answers what `change` did; `None` when another one
    /// holds it (or the record could not be written).
    fn update_feed<R>(
        &mut self,
        host: &mut impl Host,
        config: &FilterConfig,
        inv: &Invalidation,
        now: i64,
        mut change: impl FnMut(&mut FeedState) -> R,
    ) -> Option<R> {
        for _ in 0..4 {
            let (bytes, cas) = host.shared_data(&self.feed.key);
            let mut state = bytes
                .as_deref()
                .and_then(FeedState::decode)
                .unwrap_or_default();
            if !state.may_poll(self.feed.me, now) {
                self.feed.view = FeedView::of(&state);
                return None;
            }
            let did = change(&mut state);
            state.owner = self.feed.me;
            state.lease_until_ms = now + lease_ms(config, inv);
            match host.set_shared_data(&self.feed.key, &state.encode(), cas) {
                SharedWrite::Ok => {
                    self.feed.view = FeedView::of(&state);
                    return Some(did);
                }
                SharedWrite::CasMismatch => continue,
                SharedWrite::Failed => break,
            }
        }
        self.metrics.count(metrics::FEED_ERRORS);
        None
    }

    /// Drops the cache entry of a changed token: a tombstone in the slot
    /// that holds it (shared data cannot delete), dated `now`, which no
    /// lookup answers and no answer sent before it replaces.
    fn invalidate(
        &mut self,
        host: &mut impl Host,
        config: &FilterConfig,
        c: feed::Change,
        now: i64,
    ) {
        let slots = cache::slots(config.cache_seed, c.fingerprint, config.cache.max_entries);
        let count = if slots[0] == slots[1] { 1 } else { 2 };
        for slot in &slots[..count] {
            cache::slot_key(&mut self.buffers.key, &config.cache_prefix, *slot);
            let (Some(data), _) = host.shared_data(&self.buffers.key) else {
                continue;
            };
            let Some(head) = EntryHead::parse(&data) else {
                continue;
            };
            if head.kind != c.kind || token_hash(head.kind, head.token) != c.fingerprint {
                continue;
            }
            let tombstone = cache::encode(head.kind, head.token, now, now, None);
            if host.set_shared_data(&self.buffers.key, &tombstone, None) == SharedWrite::Ok {
                self.metrics.count(metrics::FEED_INVALIDATIONS);
            }
        }
    }

    fn defer(&mut self, host: &mut impl Host, id: u32) {
        if !self.deferred.contains(&id) {
            self.deferred.push(id);
        }
        host.set_tick_period_ms(DEFERRED_TICK_MS);
    }

    fn recycle(&mut self, mut stream: Box<Stream>) {
        stream.config = None;
        stream.leads = None;
        if self.spare.is_none() {
            self.spare = Some(stream);
        }
    }

    /// Drives a stream's flow until it waits for a callout or ends.
    /// `can_send`: the active context may send this stream's callout (it is
    /// the stream's own, or the root's); else it is deferred to the root.
    fn run(&mut self, host: &mut impl Host, mut stream: Box<Stream>, can_send: bool) -> Action {
        let Some(config) = stream.config.clone() else {
            return Action::Continue;
        };
        loop {
            let step = stream.flow.advance(&config, &stream.request);
            self.drain_events(&config, &mut stream.flow);
            match step {
                Step::Wait => {
                    if self.cache_answer(host, &config, &mut stream) {
                        continue;
                    }
                    match self.send(host, &config, &mut stream, can_send) {
                        Sent::Waiting => {
                            self.streams.insert(stream.id, stream);
                            return Action::Pause;
                        }
                        Sent::Failed => continue,
                    }
                }
                Step::Continue => {
                    self.publish(host, &config, &stream, None);
                    self.set_request_headers(host, &config, &stream);
                    self.recycle(stream);
                    return Action::Continue;
                }
                Step::Reply(fault) => {
                    self.publish(host, &config, &stream, Some(fault));
                    self.recycle(stream);
                    return Action::Pause;
                }
            }
        }
    }

    fn drain_events(&mut self, config: &FilterConfig, flow: &mut Flow) {
        for event in flow.events.drain(..) {
            match event {
                Event::Executed { policy } => {
                    self.metrics.count(metrics::EXECUTIONS);
                    self.metrics.policy(policy, false);
                }
                Event::Fault { policy, fault } => {
                    debug!(
                        "oauthv2info: policy {:?}: fault {}",
                        config.policies.get(policy).map_or("?", |p| p.name.as_str()),
                        fault.name()
                    );
                    self.metrics.fault(fault);
                    self.metrics.policy(policy, true);
                }
                Event::ServiceFailure { policy, reason } => {
                    warn!(
                        "oauthv2info: policy {:?}: token service unavailable: {reason}",
                        config.policies.get(policy).map_or("?", |p| p.name.as_str())
                    );
                    self.metrics.count(metrics::CALLOUT_FAILURES);
                }
            }
        }
    }

    /// Answers the pending lookup from the shared cache; true on a hit.
    fn cache_answer(
        &mut self,
        host: &mut impl Host,
        config: &FilterConfig,
        stream: &mut Stream,
    ) -> bool {
        let Some(Pending::Lookup { kind, token }) = stream.flow.pending() else {
            return false;
        };
        if !config.cache.enabled {
            return false;
        }
        let (kind, token) = (*kind, stream.flow.text(token).as_bytes());
        let now = stream.flow.now_ms;
        let fingerprint = token_hash(kind, token);
        let slots = cache::slots(config.cache_seed, fingerprint, config.cache.max_entries);
        let count = if slots[0] == slots[1] { 1 } else { 2 };
        let mut found = None;
        for slot in &slots[..count] {
            cache::slot_key(&mut self.buffers.key, &config.cache_prefix, *slot);
            let (Some(data), _) = host.shared_data(&self.buffers.key) else {
                continue;
            };
            let at = match EntryHead::parse(&data) {
                Some(head) if head.answers(kind, token, now) => {
                    if let Some(inv) = &config.cache.invalidation {
                        if !self.feed.view.serves(now, inv.max_stale_ms, head.stored_ms) {
                            // The feed is behind (or the cache was dropped):
                            // ask the token service.
                            self.metrics.count(metrics::CACHE_STALE);
                            continue;
                        }
                    }
                    head.body_at()
                }
                _ => continue,
            };
            found = Some((data, at));
            break;
        }
        let Some((data, at)) = found else {
            self.metrics.count(metrics::CACHE_MISSES);
            return false;
        };
        let negative = data.get(at) == Some(&0);
        if !stream.flow.on_cached(config, data, at) {
            self.metrics.count(metrics::CACHE_MISSES);
            return false;
        }
        self.metrics.count(if negative {
            metrics::CACHE_NEGATIVE_HITS
        } else {
            metrics::CACHE_HITS
        });
        true
    }

    /// Stores what the token service said (see [`cache::plan_store`]).
    fn store(
        &mut self,
        host: &mut impl Host,
        config: &FilterConfig,
        learned: &Learned,
        now: i64,
        started: i64,
    ) {
        if !config.cache.enabled {
            return;
        }
        let Some(deadline) =
            cache::deadline(&config.cache, learned.kind, learned.answer.lookup(), now)
        else {
            return;
        };
        let token = learned.token.as_bytes();
        let slots = cache::slots(
            config.cache_seed,
            token_hash(learned.kind, token),
            config.cache.max_entries,
        );
        let keys: Vec<String> = slots
            .iter()
            .map(|s| {
                let mut key = String::new();
                cache::slot_key(&mut key, &config.cache_prefix, *s);
                key
            })
            .collect();
        let first = host.shared_data(&keys[0]);
        let second = if slots[0] == slots[1] {
            first.clone()
        } else {
            host.shared_data(&keys[1])
        };
        fn read(r: &(Option<Vec<u8>>, Option<u32>)) -> SlotRead<'_> {
            SlotRead {
                head: r.0.as_deref().and_then(EntryHead::parse),
                cas: r.1,
            }
        }
        let plan = cache::plan_store(
            [read(&first), read(&second)],
            learned.kind,
            token,
            now,
            started,
            learned.from_update,
        );
        let Some(plan) = plan else {
            return;
        };
        if plan.evicts {
            self.metrics.count(metrics::CACHE_EVICTIONS);
        }
        let profile = match &learned.answer {
            Answer::Known(p) => Some(p),
            Answer::Unknown => None,
        };
        // The entry is dated when its callout started: what it says held
        // then.
        let entry = cache::encode(learned.kind, token, deadline, started, profile);
        // A concurrent writer (CAS mismatch) wins: its answer is as fresh.
        match host.set_shared_data(&keys[plan.slot], &entry, plan.cas) {
            SharedWrite::Ok => {}
            SharedWrite::CasMismatch => return,
            SharedWrite::Failed => {
                debug!("oauthv2info: could not write a cache entry");
                return;
            }
        }
        // With invalidation on, the feed record is read after the write: a
        // change applied after this callout started, whose poller read the
        // slot before this write, is found here, and the entry is taken
        // back (a poller that records the change after this read finds the
        // entry in the slot itself).
        if config.cache.invalidation.is_some() {
            let state = host
                .shared_data(&self.feed.key)
                .0
                .as_deref()
                .and_then(FeedState::decode)
                .unwrap_or_default();
            if !state.may_store(learned.kind, token_hash(learned.kind, token), started) {
                // Dated as the answer it takes back: a later lookup's
                // answer replaces it.
                let tombstone = cache::encode(learned.kind, token, now, started, None);
                host.set_shared_data(&keys[plan.slot], &tombstone, None);
            }
        }
    }

    /// Sends the pending callout of `stream` (see [`Worker::send`]).
    fn dispatch(
        &mut self,
        host: &mut impl Host,
        config: &FilterConfig,
        stream: &mut Stream,
    ) -> Result<u32, String> {
        let Some((path, content_type, body)) = stream.flow.request_body(config) else {
            return Err("nothing to send".to_string());
        };
        let service = &config.token_service;
        let mut headers = vec![
            (":method", "POST"),
            (":path", path),
            (":authority", service.authority.as_str()),
            ("content-type", content_type),
            ("accept", "application/json"),
        ];
        if let Some(credentials) = &service.credentials {
            headers.push(("authorization", credentials.as_str()));
        }
        self.metrics.count(metrics::CALLOUTS);
        stream.callout_started_ms = stream.flow.now_ms;
        host.dispatch(&service.cluster, &headers, &body, service.timeout_ms)
    }

    /// Sends (or joins, or defers) the pending callout.
    fn send(
        &mut self,
        host: &mut impl Host,
        config: &FilterConfig,
        stream: &mut Stream,
        can_send: bool,
    ) -> Sent {
        let key = match stream.flow.pending() {
            Some(Pending::Lookup { kind, token }) => Some(format!(
                "{}\0{}\0{}",
                config.token_service.cluster,
                kind.hint(),
                stream.flow.text(token)
            )),
            _ => None,
        };
        if let Some(waiters) = key.as_ref().and_then(|k| self.inflight.get_mut(k)) {
            waiters.push(stream.id);
            return Sent::Waiting;
        }
        if !can_send {
            self.defer(host, stream.id);
            return Sent::Waiting;
        }
        stream.retries = 0;
        match self.dispatch(host, config, stream) {
            Ok(token) => {
                self.callouts.insert(token, stream.id);
                if let Some(key) = key {
                    self.inflight.insert(key.clone(), Vec::new());
                    stream.leads = Some(key);
                }
                Sent::Waiting
            }
            Err(reason) => {
                stream.flow.on_dispatch_failure(config, reason);
                Sent::Failed
            }
        }
    }

    /// Filter state, dynamic metadata (by the configured bridge) and, for a
    /// fault, the local reply.
    fn publish(
        &mut self,
        host: &mut impl Host,
        config: &FilterConfig,
        stream: &Stream,
        fault: Option<Fault>,
    ) {
        let bridge = config.metadata.bridge;
        let mut b = std::mem::take(&mut self.buffers);
        b.blob.clear();
        push_netstring(&mut b.blob, config.metadata_namespace.as_bytes());
        let empty_blob = b.blob.len();
        // A fault reply carries the metadata headers itself (what it holds
        // is taken once, on this rare path).
        let mut reply_headers: Vec<(usize, bool, Vec<u8>)> = Vec::new();
        let Buffers { name, blob, .. } = &mut b;
        stream.flow.visit_published(config, name, |p| {
            let v = p.value;
            if !host.set_filter_state(p.name, v) {
                debug!(
                    "oauthv2info: could not write filter state {:?}",
                    String::from_utf8_lossy(p.name)
                );
            }
            // header_to_metadata carries the variables it has a header for,
            // the Lua bridge the others; an empty value goes through its
            // header's companion, or through the Lua bridge when the chain
            // has it anyway (header_to_metadata sets no empty string).
            let meta = match bridge {
                MetadataBridge::None => return,
                MetadataBridge::Lua => None,
                MetadataBridge::HeaderToMetadata => p
                    .header
                    .and_then(|h| config.metadata.headers.get(usize::from(h)))
                    .filter(|_| !v.is_empty() || config.metadata.empty_companions),
            };
            match meta {
                Some(meta) => {
                    // Client copies were stripped before the filter ran.
                    if fault.is_some() {
                        if meta.on_reply {
                            let h = usize::from(p.header.unwrap_or(0));
                            reply_headers.push((h, v.is_empty(), v.to_vec()));
                        }
                    } else if !meta.on_request {
                        // Not a request rule: never set on a request that goes on.
                    } else if v.is_empty() {
                        host.add_request_header(&meta.empty_header, EMPTY_METADATA_VALUE);
                    } else {
                        host.add_request_header(&meta.header, v);
                    }
                }
                None => {
                    match p.bridge_key {
                        Some(key) => blob.extend_from_slice(key),
                        None => push_netstring(blob, p.name),
                    }
                    push_netstring(blob, v);
                }
            }
        });
        if b.blob.len() > empty_blob
            && !host.set_filter_state(METADATA_BRIDGE_KEY.as_bytes(), &b.blob)
        {
            debug!("oauthv2info: could not write the metadata bridge's entry");
        }
        self.buffers = b;
        if let Some(fault) = fault {
            let mut headers: Vec<(&str, &[u8])> = Vec::with_capacity(reply_headers.len() + 2);
            headers.push(("content-type", b"application/json"));
            if let Some(challenge) = fault.www_authenticate() {
                headers.push(("www-authenticate", challenge.as_bytes()));
            }
            for (h, empty, v) in &reply_headers {
                if let Some(meta) = config.metadata.headers.get(*h) {
                    if *empty {
                        headers.push((meta.empty_header.as_str(), EMPTY_METADATA_VALUE));
                    } else {
                        headers.push((meta.header.as_str(), v.as_slice()));
                    }
                }
            }
            let body = stream
                .flow
                .reply_policy()
                .and_then(|i| config.plans.get(i))
                .map_or(fault.body(), |plan| plan.fault_body(fault));
            if !host.send_local_response(fault.status(), &headers, body.as_bytes()) {
                warn!("oauthv2info: could not send the local reply");
            }
        }
    }

    /// `request_headers`: each mapped header set from its variable, or
    /// removed (a client's copy never reaches the upstream).
    fn set_request_headers(
        &mut self,
        host: &mut impl Host,
        config: &FilterConfig,
        stream: &Stream,
    ) {
        for mapping in &config.request_headers {
            let text = &mut self.buffers.text;
            text.clear();
            if !stream
                .flow
                .read(config, &mapping.source, &stream.request, text)
            {
                host.remove_request_header(&mapping.header);
                continue;
            }
            if !is_valid_header_value(text.as_bytes()) {
                host.remove_request_header(&mapping.header);
                self.metrics.count(metrics::HEADERS_REFUSED);
                let (header, variable) = (&mapping.header, &mapping.variable);
                self.header_warnings.warn(stream.flow.now_ms, || {
                    format!("request header {header:?} not set: the value of {variable:?} holds a control character")
                });
                continue;
            }
            if !host.set_request_header(&mapping.header, text.as_bytes()) {
                self.metrics.count(metrics::HEADERS_REFUSED);
                let header = &mapping.header;
                self.header_warnings.warn(stream.flow.now_ms, || {
                    format!("request header {header:?} could not be set")
                });
            }
        }
    }
}

enum Sent {
    Waiting,
    /// Not sent; the flow took the failure and can go on.
    Failed,
}

/// Reads what the configuration needs of the request.
fn capture(
    host: &mut impl Host,
    config: &FilterConfig,
    request: &mut RequestInfo,
    end_of_stream: bool,
    warnings: &mut RateLimit,
    now_ms: i64,
) {
    if config.needs_path {
        request.path = host.request_header(":path").unwrap_or_default();
    }
    if config.needs_method {
        request.method = host.request_header(":method").unwrap_or_default();
    }
    // The client's copies of the headers the filter sets are never read.
    let mapped = |name: &str| config.request_headers.iter().any(|m| m.header == name);
    match &config.header_reads {
        HeaderReads::Named(names) => {
            let mut values = match std::mem::take(&mut request.headers) {
                Headers::Named(v) => v,
                Headers::All(_) => Vec::new(),
            };
            values.clear();
            for (i, name) in names.iter().enumerate() {
                let skip = config.header_reads_mapped.get(i).copied().unwrap_or(false);
                values.push(if skip {
                    None
                } else {
                    host.request_header(name)
                });
            }
            request.headers = Headers::Named(values);
        }
        HeaderReads::All => {
            request.headers = Headers::All(
                host.request_headers()
                    .into_iter()
                    .filter(|(k, _)| !k.starts_with(':'))
                    .map(|(mut k, v)| {
                        k.make_ascii_lowercase();
                        (k, v)
                    })
                    .filter(|(k, _)| !mapped(k))
                    .collect(),
            );
        }
    }
    if config.needs_client_ip {
        request.client_ip = host
            .property(&["source", "address"])
            .map(|a| ip_from_address(&header_text(a)));
    }
    if config.needs_form_body {
        let is_form = request
            .header("content-type", config.content_type_index())
            .is_some_and(is_form_urlencoded);
        if is_form {
            request.form_body = form_body(host, end_of_stream, warnings, now_ms);
        }
    }
}

/// The urlencoded body that the `oauthv2info-form` Lua filter read (a Wasm
/// filter cannot hold the headers while it reads the body itself). A
/// request without a body has an empty form.
fn form_body(
    host: &mut impl Host,
    end_of_stream: bool,
    warnings: &mut RateLimit,
    now_ms: i64,
) -> Option<Vec<u8>> {
    if end_of_stream {
        return Some(Vec::new());
    }
    let mut metadata = |key| host.property(&["metadata", "filter_metadata", "oauthv2info", key]);
    if let Some(body) = metadata("form_body") {
        return Some(body);
    }
    match metadata("form_body_skipped") {
        Some(why) => debug!(
            "oauthv2info: form body not read ({}): request.formparam.* are unset",
            String::from_utf8_lossy(&why)
        ),
        None => warnings.warn(now_ms, || {
            "a policy reads request.formparam.* but no form body was handed over: put the oauthv2info-form filter that `oauthv2info envoy-filters` prints before this filter".to_string()
        }),
    }
    None
}

#[cfg(test)]
#[path = "filter_tests.rs"]
mod tests;
