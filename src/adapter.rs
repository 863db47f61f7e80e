//! The only code that talks to the host (Envoy, through proxy-wasm).
//!
//! Host calls that the SDK would turn into a panic on an unexpected status
//! (`set_property`, `get_property`, `send_http_response`, `define_metric`)
//! go through [`host`], which returns the status instead.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use log::{debug, error, info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType};

use crate::cache;
use crate::config::{parse_config, FilterConfig, HeaderReads};
use crate::engine::{Callout, Event, Flow, Learned, Step};
use crate::fault::Fault;
use crate::publish::{encode_bridge, published, METADATA_BRIDGE_KEY};
use crate::vars::{
    header_text, ip_from_address, is_form_urlencoded, is_valid_header_value, RequestInfo,
};

const VERSION: &str = env!("CARGO_PKG_VERSION");

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    std::panic::set_hook(Box::new(|panic_info| {
        host::log_critical(&format!("oauthv2info: panic: {panic_info}"));
    }));
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// Counters, defined once per VM when the configuration loads. Envoy shows
/// them in `/stats` as `wasmcustom.oauthv2info.*`.
struct Metrics {
    executions: u32,
    callouts: u32,
    callout_failures: u32,
    callout_latency_ms: u32,
    cache_hits: u32,
    cache_negative_hits: u32,
    cache_misses: u32,
    cache_evictions: u32,
    faults: Vec<(Fault, u32)>,
    /// Per policy: (executions, faults).
    policies: Vec<(u32, u32)>,
}

impl Metrics {
    fn define(config: &FilterConfig) -> Metrics {
        let counter = |name: &str| host::define_counter(&format!("oauthv2info.{name}"));
        Metrics {
            executions: counter("policy_executions"),
            callouts: counter("callouts"),
            callout_failures: counter("callout_failures"),
            callout_latency_ms: host::define_histogram("oauthv2info.callout_latency_ms"),
            cache_hits: counter("cache.hits"),
            cache_negative_hits: counter("cache.negative_hits"),
            cache_misses: counter("cache.misses"),
            cache_evictions: counter("cache.evictions"),
            faults: Fault::ALL
                .iter()
                .map(|f| (*f, counter(&format!("faults.{}", f.name()))))
                .collect(),
            policies: config
                .policies
                .iter()
                .map(|p| {
                    let name = stat_name(&p.name);
                    (
                        counter(&format!("policy.{name}.executions")),
                        counter(&format!("policy.{name}.faults")),
                    )
                })
                .collect(),
        }
    }

    fn fault(&self, fault: Fault) -> u32 {
        self.faults
            .iter()
            .find(|(f, _)| *f == fault)
            .map_or(0, |(_, id)| *id)
    }
}

/// Policy names may hold spaces and periods; stat names keep `[A-Za-z0-9_-]`.
fn stat_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[derive(Default)]
struct Root {
    config: Option<Rc<FilterConfig>>,
    metrics: Option<Rc<Metrics>>,
}

impl Context for Root {
    /// The answer to a callout the root sent for a deferred request.
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Some(id) = worker::ROOT_CALLOUTS.with(|c| c.borrow_mut().remove(&token_id)) else {
            return;
        };
        let (status, body) = call_response(body_size);
        let Some(stream) = worker::stream(id) else {
            return;
        };
        let Ok(mut inner) = stream.try_borrow_mut() else {
            return;
        };
        let _ = hostcalls::set_effective_context(id);
        let waiters = inner.deliver(status, &body, true, false);
        drop(inner);
        for waiter in waiters {
            worker::defer(waiter);
        }
    }
}

impl RootContext for Root {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        info!("oauthv2info {VERSION}: VM started");
        true
    }

    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        let bytes = hostcalls::get_buffer(
            BufferType::PluginConfiguration,
            0,
            plugin_configuration_size,
        )
        .ok()
        .flatten()
        .unwrap_or_default();
        match parse_config(&bytes) {
            Ok(config) => {
                for warning in &config.warnings {
                    warn!("oauthv2info: {warning}");
                }
                info!(
                    "oauthv2info {VERSION}: configured {} polic{} ({}), token service cluster {:?}",
                    config.policies.len(),
                    if config.policies.len() == 1 {
                        "y"
                    } else {
                        "ies"
                    },
                    config
                        .policies
                        .iter()
                        .map(|p| format!("{} {:?}", p.type_name(), p.name))
                        .collect::<Vec<_>>()
                        .join(", "),
                    config.token_service.cluster
                );
                self.metrics = Some(Rc::new(Metrics::define(&config)));
                self.config = Some(Rc::new(config));
                true
            }
            Err(e) => {
                error!("oauthv2info: configuration refused: {e}");
                false
            }
        }
    }

    fn on_tick(&mut self) {
        self.send_deferred();
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let inner = Rc::new(RefCell::new(Inner {
            id: context_id,
            config: self.config.clone(),
            metrics: self.metrics.clone(),
            request: RequestInfo::default(),
            flow: Flow::new(),
            state: State::Start,
            callout_started_ms: 0,
            coalesce_key: None,
        }));
        worker::STREAMS.with(|s| s.borrow_mut().insert(context_id, inner.clone()));
        Some(Box::new(Filter {
            id: context_id,
            inner,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Start,
    /// A token-service callout (its own, a coalesced one, or one the root
    /// context sends for it) is in flight; the request is paused.
    WaitingCallout,
    Done,
}

/// Per-worker bookkeeping (one VM per worker thread).
mod worker {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::rc::Rc;

    use super::Inner;

    thread_local! {
        /// Every live request of this worker, by context id.
        pub static STREAMS: RefCell<HashMap<u32, Rc<RefCell<Inner>>>> = RefCell::new(HashMap::new());
        /// Introspections in flight, by (hint, token): the requests waiting
        /// on the one callout (the request that sent it is not listed).
        pub static INFLIGHT: RefCell<HashMap<String, Vec<u32>>> = RefCell::new(HashMap::new());
        /// Requests whose pending callout the root context must send: only
        /// the active context can send a callout and get its answer, so a
        /// request resumed from another request's callback, or orphaned by
        /// the end of the request it waited on, is handed to the root.
        pub static DEFERRED: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
        /// Callouts the root sent: callout token → request context id.
        pub static ROOT_CALLOUTS: RefCell<HashMap<u32, u32>> = RefCell::new(HashMap::new());
    }

    pub fn stream(id: u32) -> Option<Rc<RefCell<Inner>>> {
        STREAMS.with(|s| s.borrow().get(&id).cloned())
    }

    pub fn defer(id: u32) {
        DEFERRED.with(|d| d.borrow_mut().push(id));
        // The root's next tick sends it (1 ms is Envoy's finest tick).
        let _ = proxy_wasm::hostcalls::set_tick_period(std::time::Duration::from_millis(1));
    }
}

fn now_ms() -> i64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Sends a callout to the token service; the SDK routes the answer to the
/// context that is active now.
fn send(config: &FilterConfig, callout: &Callout) -> Result<u32, String> {
    let service = &config.token_service;
    let (path, content_type, body) = callout.http_request(config);
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
    hostcalls::dispatch_http_call(
        &service.cluster,
        headers,
        Some(&body),
        vec![],
        Duration::from_millis(u64::from(service.timeout_ms)),
    )
    .map_err(|status| {
        format!(
            "could not call cluster {:?} ({status:?}: unknown cluster or no healthy host)",
            service.cluster
        )
    })
}

/// The answer to the callout the current callback is about.
fn call_response(body_size: usize) -> (Option<u16>, Vec<u8>) {
    let headers = hostcalls::get_map_bytes(MapType::HttpCallResponseHeaders).unwrap_or_default();
    let status = headers
        .iter()
        .find(|(k, _)| k == ":status")
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
        .and_then(|s| s.parse::<u16>().ok());
    let body = if body_size > 0 {
        hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    (status, body)
}

impl Root {
    /// Sends the callouts of deferred requests (see `worker::DEFERRED`).
    fn send_deferred(&self) {
        let ids = worker::DEFERRED.with(|d| std::mem::take(&mut *d.borrow_mut()));
        for id in ids {
            let Some(stream) = worker::stream(id) else {
                continue;
            };
            let Ok(mut inner) = stream.try_borrow_mut() else {
                continue;
            };
            let Some(callout) = inner.flow.pending().cloned() else {
                continue;
            };
            let Some(config) = inner.config.clone() else {
                continue;
            };
            inner.count(|m| m.callouts);
            inner.callout_started_ms = now_ms();
            match send(&config, &callout) {
                Ok(token) => {
                    worker::ROOT_CALLOUTS.with(|c| c.borrow_mut().insert(token, id));
                }
                Err(reason) => {
                    let _ = hostcalls::set_effective_context(id);
                    inner.flow.on_dispatch_failure(&config, reason);
                    if inner.run(&config, false) == Action::Continue {
                        host::resume_request();
                    }
                }
            }
        }
        if worker::DEFERRED.with(|d| d.borrow().is_empty()) {
            let _ = hostcalls::set_tick_period(Duration::ZERO);
        }
    }
}

struct Filter {
    id: u32,
    inner: Rc<RefCell<Inner>>,
}

/// One request's state; shared through `worker::STREAMS` so that another
/// request's callback can resume it (coalesced lookups).
struct Inner {
    id: u32,
    config: Option<Rc<FilterConfig>>,
    metrics: Option<Rc<Metrics>>,
    request: RequestInfo,
    flow: Flow,
    state: State,
    /// When the in-flight callout was sent (epoch ms).
    callout_started_ms: i64,
    /// The `worker::INFLIGHT` key of the introspection this request sent.
    coalesce_key: Option<String>,
}

impl Context for Filter {
    fn on_http_call_response(
        &mut self,
        _token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let (status, body) = call_response(body_size);
        let Ok(mut inner) = self.inner.try_borrow_mut() else {
            return;
        };
        let waiters = inner.deliver(status, &body, true, true);
        drop(inner);
        if waiters.is_empty() {
            return;
        }
        // The requests that waited on this lookup get the same answer.
        for id in waiters {
            let Some(stream) = worker::stream(id) else {
                continue;
            };
            let Ok(mut waiter) = stream.try_borrow_mut() else {
                continue;
            };
            if waiter.state != State::WaitingCallout {
                continue;
            }
            let _ = hostcalls::set_effective_context(id);
            waiter.deliver(status, &body, false, false);
        }
        let _ = hostcalls::set_effective_context(self.id);
    }
}

impl Drop for Filter {
    fn drop(&mut self) {
        worker::STREAMS.with(|s| s.borrow_mut().remove(&self.id));
        worker::INFLIGHT.with(|f| {
            let mut inflight = f.borrow_mut();
            for waiters in inflight.values_mut() {
                waiters.retain(|w| *w != self.id);
            }
            // Ended while its lookup was in flight (the host cancels the
            // callout): the requests waiting on it send their own.
            let key = self
                .inner
                .try_borrow_mut()
                .ok()
                .and_then(|mut i| i.coalesce_key.take());
            if let Some(orphans) = key.and_then(|k| inflight.remove(&k)) {
                for id in orphans {
                    worker::defer(id);
                }
            }
        });
    }
}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Ok(mut inner) = self.inner.try_borrow_mut() else {
            return Action::Continue;
        };
        inner.on_request_headers()
    }
}

impl Inner {
    fn on_request_headers(&mut self) -> Action {
        let Some(config) = self.config.clone() else {
            host::send_local_response(
                500,
                br#"{"fault":{"faultstring":"Filter not configured","detail":{"errorcode":"keymanagement.service.not_configured"}}}"#,
            );
            return Action::Pause;
        };
        // Client copies of the headers the filter sets are never trusted:
        // removed before anything reads the request.
        for (header, _) in &config.request_headers {
            host::remove_request_header(header);
        }
        let header = |name: &str| {
            hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name)
                .ok()
                .flatten()
                .map(header_text)
        };
        let mut request = RequestInfo {
            method: header(":method").unwrap_or_default(),
            path: header(":path").unwrap_or_default(),
            ..RequestInfo::default()
        };
        request.headers = match &config.header_reads {
            HeaderReads::Named(names) => names
                .iter()
                .filter_map(|n| header(n).map(|v| (n.clone(), v)))
                .collect(),
            HeaderReads::All => hostcalls::get_map_bytes(MapType::HttpRequestHeaders)
                .unwrap_or_default()
                .into_iter()
                .filter(|(k, _)| !k.starts_with(':'))
                .map(|(mut k, v)| {
                    k.make_ascii_lowercase();
                    (k, header_text(v))
                })
                .collect(),
        };
        self.request = request;
        if config.needs_client_ip {
            self.request.client_ip = host::get_property(&["source", "address"])
                .map(|a| ip_from_address(&String::from_utf8_lossy(&a)));
        }
        if config.needs_form_body
            && self
                .request
                .header("content-type")
                .is_some_and(is_form_urlencoded)
        {
            self.request.form_body = self.form_body();
        }
        self.run(&config, true)
    }

    /// Takes the token service's answer to this request's pending callout,
    /// then runs on. `sent_here`: this request sent the callout (it records
    /// the latency and fills the cache). `can_send`: this request's context
    /// is the active one, so it may send its next callout itself. Returns the
    /// requests that waited on the same lookup.
    fn deliver(
        &mut self,
        status: Option<u16>,
        body: &[u8],
        sent_here: bool,
        can_send: bool,
    ) -> Vec<u32> {
        if self.state != State::WaitingCallout {
            return Vec::new();
        }
        let Some(config) = self.config.clone() else {
            return Vec::new();
        };
        let now = now_ms();
        if sent_here {
            self.record(|m| m.callout_latency_ms, now - self.callout_started_ms);
        }
        let learned = self.flow.on_response(&config, status, body, now);
        if let (true, Some(learned)) = (sent_here, learned) {
            self.cache_store(&config, learned, now);
        }
        let waiters = self
            .coalesce_key
            .take()
            .and_then(|key| worker::INFLIGHT.with(|f| f.borrow_mut().remove(&key)))
            .unwrap_or_default();
        if self.run(&config, can_send) == Action::Continue {
            // Nothing useful can be done if this fails: the stream is gone.
            host::resume_request();
        }
        waiters
    }

    /// Drives the flow until it waits on a callout or ends.
    fn run(&mut self, config: &Rc<FilterConfig>, can_send: bool) -> Action {
        loop {
            let step = self.flow.advance(config, &self.request);
            self.drain_events(config);
            match step {
                Step::Callout(callout) => {
                    if self.cache_answer(config, &callout) {
                        continue;
                    }
                    self.state = State::WaitingCallout;
                    let key = match &callout {
                        Callout::Introspect { kind, token } => Some(format!(
                            "{}\0{}\0{token}",
                            config.token_service.cluster,
                            kind.hint()
                        )),
                        Callout::SetAttributes { .. } => None,
                    };
                    if let Some(key) = &key {
                        let id = self.id;
                        let joined = worker::INFLIGHT.with(|f| match f.borrow_mut().get_mut(key) {
                            Some(waiters) => {
                                waiters.push(id);
                                true
                            }
                            None => false,
                        });
                        if joined {
                            return Action::Pause;
                        }
                    }
                    if !can_send {
                        worker::defer(self.id);
                        return Action::Pause;
                    }
                    self.count(|m| m.callouts);
                    self.callout_started_ms = now_ms();
                    match send(config, &callout) {
                        Ok(_) => {
                            if let Some(key) = key {
                                worker::INFLIGHT
                                    .with(|f| f.borrow_mut().insert(key.clone(), Vec::new()));
                                self.coalesce_key = Some(key);
                            }
                            return Action::Pause;
                        }
                        Err(reason) => self.flow.on_dispatch_failure(config, reason),
                    }
                }
                Step::Continue => {
                    self.state = State::Done;
                    self.publish(config);
                    self.set_request_headers(config);
                    return Action::Continue;
                }
                Step::Reply(fault) => {
                    self.state = State::Done;
                    self.publish(config);
                    host::send_local_response(fault.status(), fault.body().as_bytes());
                    return Action::Pause;
                }
            }
        }
    }

    /// Filter state (`wasm.<variable>`) and the metadata bridge's entry.
    fn publish(&self, config: &FilterConfig) {
        let mut any = false;
        for (name, value) in published(&self.flow.vars, &config.publish, config.export_secrets) {
            host::set_filter_state(name, value.as_bytes());
            any = true;
        }
        if any {
            let blob = encode_bridge(
                &config.metadata_namespace,
                published(&self.flow.vars, &config.publish, config.export_secrets),
            );
            host::set_filter_state(METADATA_BRIDGE_KEY, &blob);
        }
    }

    fn set_request_headers(&self, config: &FilterConfig) {
        for (header, variable) in &config.request_headers {
            let value = self
                .flow
                .vars
                .get(variable)
                .map(String::from)
                .or_else(|| self.request.resolve(variable));
            match value {
                Some(v) if is_valid_header_value(&v) && !host::add_request_header(header, &v) => {
                    warn!("oauthv2info: request header {header:?} could not be set");
                }
                Some(v) if is_valid_header_value(&v) => {}
                Some(_) => warn!(
                    "oauthv2info: request header {header:?} not set: the value of {variable:?} holds CR, LF or NUL"
                ),
                None => {}
            }
        }
    }

    fn drain_events(&mut self, config: &FilterConfig) {
        for event in std::mem::take(&mut self.flow.events) {
            let policy_name = |i: usize| config.policies.get(i).map_or("?", |p| p.name.as_str());
            match event {
                Event::Executed { policy } => {
                    self.count(|m| m.executions);
                    self.count(|m| m.policies.get(policy).map_or(0, |p| p.0));
                }
                Event::Fault { policy, fault } => {
                    debug!(
                        "oauthv2info: policy {:?}: fault {}",
                        policy_name(policy),
                        fault.name()
                    );
                    self.count(|m| m.fault(fault));
                    self.count(|m| m.policies.get(policy).map_or(0, |p| p.1));
                }
                Event::ServiceFailure { policy, reason } => {
                    warn!(
                        "oauthv2info: policy {:?}: token service unavailable: {reason}",
                        policy_name(policy)
                    );
                    self.count(|m| m.callout_failures);
                }
            }
        }
    }

    /// Answers a pending introspection from the shared cache; true on a hit.
    fn cache_answer(&mut self, config: &FilterConfig, callout: &Callout) -> bool {
        let Callout::Introspect { kind, token } = callout else {
            return false;
        };
        if !config.cache.enabled {
            return false;
        }
        let keys = cache::slot_keys(
            &config.token_service.cluster,
            *kind,
            token,
            config.cache.max_entries,
        );
        let now = now_ms();
        let slots = if keys[0] == keys[1] {
            &keys[..1]
        } else {
            &keys[..]
        };
        let entry = slots.iter().find_map(|key| {
            hostcalls::get_shared_data(key)
                .ok()
                .and_then(|(data, _)| data)
                .and_then(|data| cache::decode(&data))
                .filter(|e| e.answer(*kind, token, now).is_some())
        });
        let Some(lookup) = entry.as_ref().and_then(|e| e.answer(*kind, token, now)) else {
            self.count(|m| m.cache_misses);
            return false;
        };
        match lookup {
            crate::profile::Lookup::Unknown => self.count(|m| m.cache_negative_hits),
            crate::profile::Lookup::Known(_) => self.count(|m| m.cache_hits),
        }
        self.flow.on_cached(config, lookup, now);
        true
    }

    /// Stores what the token service said. An introspection answer does not
    /// overwrite an entry written after its callout started (a
    /// SetOAuthV2Info's newer profile); an attribute update always does.
    fn cache_store(&self, config: &FilterConfig, learned: Learned, now: i64) {
        if !config.cache.enabled {
            return;
        }
        let Some(deadline_ms) = cache::deadline(&config.cache, learned.kind, &learned.lookup, now)
        else {
            return;
        };
        let keys = cache::slot_keys(
            &config.token_service.cluster,
            learned.kind,
            &learned.token,
            config.cache.max_entries,
        );
        let read = |key: &String| {
            let (data, cas) = hostcalls::get_shared_data(key).unwrap_or((None, None));
            (data.as_deref().and_then(cache::decode), cas)
        };
        // With one slot (max_entries 1, or both hashes alike) it is both choices.
        let one_slot = keys[0] == keys[1];
        let first = read(&keys[0]);
        let second = if one_slot {
            (None, None)
        } else {
            read(&keys[1])
        };
        let current = [
            first.0.as_ref(),
            if one_slot {
                first.0.as_ref()
            } else {
                second.0.as_ref()
            },
        ];
        let (slot, evicts) = cache::choose_slot(current, learned.kind, &learned.token, now);
        if let Some(old) = current[slot] {
            let same = old.kind == learned.kind && old.token == learned.token;
            if same && !learned.from_update && old.stored_ms >= self.callout_started_ms {
                return;
            }
        }
        if evicts {
            self.count(|m| m.cache_evictions);
        }
        let cas = if slot == 0 || one_slot {
            first.1
        } else {
            second.1
        };
        let entry = cache::Entry {
            kind: learned.kind,
            token: learned.token,
            deadline_ms,
            stored_ms: now,
            lookup: learned.lookup,
        };
        // A concurrent writer (CAS mismatch) wins: its answer is as fresh.
        let _ = hostcalls::set_shared_data(&keys[slot], Some(&cache::encode(&entry)), cas);
    }

    fn record(&self, metric: impl Fn(&Metrics) -> u32, value: i64) {
        if let Some(metrics) = &self.metrics {
            let id = metric(metrics);
            if id != 0 {
                host::record(id, u64::try_from(value).unwrap_or(0));
            }
        }
    }

    fn count(&self, metric: impl Fn(&Metrics) -> u32) {
        if let Some(metrics) = &self.metrics {
            let id = metric(metrics);
            if id != 0 {
                host::increment(id);
            }
        }
    }

    /// The urlencoded body that envoy/oauthv2info-before.lua read (a Wasm
    /// filter cannot hold the headers while it reads the body itself).
    fn form_body(&self) -> Option<String> {
        let metadata =
            |key| host::get_property(&["metadata", "filter_metadata", "oauthv2info", key]);
        if let Some(body) = metadata("form_body") {
            return Some(String::from_utf8_lossy(&body).into_owned());
        }
        match metadata("form_body_skipped") {
            Some(why) => debug!(
                "oauthv2info: form body not read ({}): request.formparam.* are unset",
                String::from_utf8_lossy(&why)
            ),
            None => warn!(
                "oauthv2info: a policy reads request.formparam.* but no form body was handed over: put envoy/oauthv2info-before.lua before this filter"
            ),
        }
        None
    }
}

/// Raw host calls whose failures are returned (or ignored), never panics.
mod host {
    use std::ptr::{null, null_mut};

    const OK: u32 = 0;
    const REQUEST_HEADERS: u32 = 0;
    const HTTP_REQUEST_STREAM: u32 = 0;
    const COUNTER: u32 = 0;
    const HISTOGRAM: u32 = 2;
    const LOG_CRITICAL: u32 = 5;

    #[link(wasm_import_module = "env")]
    extern "C" {
        fn proxy_set_property(
            path: *const u8,
            path_len: usize,
            value: *const u8,
            value_len: usize,
        ) -> u32;
        fn proxy_get_property(
            path: *const u8,
            path_len: usize,
            value: *mut *mut u8,
            value_len: *mut usize,
        ) -> u32;
        fn proxy_send_local_response(
            status: u32,
            details: *const u8,
            details_len: usize,
            body: *const u8,
            body_len: usize,
            headers: *const u8,
            headers_len: usize,
            grpc_status: i32,
        ) -> u32;
        fn proxy_define_metric(kind: u32, name: *const u8, name_len: usize, id: *mut u32) -> u32;
        fn proxy_increment_metric(id: u32, offset: i64) -> u32;
        fn proxy_add_header_map_value(
            map: u32,
            key: *const u8,
            key_len: usize,
            value: *const u8,
            value_len: usize,
        ) -> u32;
        fn proxy_remove_header_map_value(map: u32, key: *const u8, key_len: usize) -> u32;
        fn proxy_continue_stream(stream: u32) -> u32;
        fn proxy_record_metric(id: u32, value: u64) -> u32;
        fn proxy_log(level: u32, message: *const u8, message_len: usize) -> u32;
    }

    /// Adds a request header; false when the host refuses.
    pub fn add_request_header(name: &str, value: &str) -> bool {
        // SAFETY: pointers and lengths describe live strings for the call.
        unsafe {
            proxy_add_header_map_value(
                REQUEST_HEADERS,
                name.as_ptr(),
                name.len(),
                value.as_ptr(),
                value.len(),
            ) == OK
        }
    }

    pub fn remove_request_header(name: &str) {
        // SAFETY: pointer and length describe a live string for the call.
        let _ =
            unsafe { proxy_remove_header_map_value(REQUEST_HEADERS, name.as_ptr(), name.len()) };
    }

    /// Resumes the paused request (of the effective context).
    pub fn resume_request() {
        // SAFETY: plain value.
        let _ = unsafe { proxy_continue_stream(HTTP_REQUEST_STREAM) };
    }

    fn path(parts: &[&str]) -> Vec<u8> {
        parts.join("\0").into_bytes()
    }

    /// Writes filter state `wasm.<key>`; a failure is logged, not fatal.
    pub fn set_filter_state(key: &str, value: &[u8]) {
        // SAFETY: pointers and lengths describe live slices for the call.
        let status =
            unsafe { proxy_set_property(key.as_ptr(), key.len(), value.as_ptr(), value.len()) };
        if status != OK {
            log::warn!("oauthv2info: could not write filter state {key:?} (status {status})");
        }
    }

    pub fn get_property(parts: &[&str]) -> Option<Vec<u8>> {
        let path = path(parts);
        let mut data: *mut u8 = null_mut();
        let mut len: usize = 0;
        // SAFETY: the host writes a buffer it allocated through this
        // module's allocator (proxy_on_memory_allocate); we take ownership.
        unsafe {
            if proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut len) != OK
                || data.is_null()
            {
                return None;
            }
            Some(Vec::from_raw_parts(data, len, len))
        }
    }

    /// Sends a JSON local reply; a failure is logged (the stream is gone).
    pub fn send_local_response(status: u32, body: &[u8]) {
        let headers = serialize_headers(&[("content-type", "application/json")]);
        // SAFETY: pointers and lengths describe live slices for the call.
        let result = unsafe {
            proxy_send_local_response(
                status,
                null(),
                0,
                body.as_ptr(),
                body.len(),
                headers.as_ptr(),
                headers.len(),
                -1,
            )
        };
        if result != OK {
            log::warn!("oauthv2info: could not send the local reply (status {result})");
        }
    }

    /// Defines a counter; 0 (never a valid id here) when the host refuses.
    pub fn define_counter(name: &str) -> u32 {
        define(COUNTER, name)
    }

    pub fn define_histogram(name: &str) -> u32 {
        define(HISTOGRAM, name)
    }

    fn define(kind: u32, name: &str) -> u32 {
        let mut id = 0;
        // SAFETY: pointers and lengths describe live data for the call.
        let status = unsafe { proxy_define_metric(kind, name.as_ptr(), name.len(), &mut id) };
        if status != OK {
            log::warn!("oauthv2info: could not define metric {name:?} (status {status})");
            return 0;
        }
        id
    }

    pub fn increment(id: u32) {
        // SAFETY: plain values.
        let _ = unsafe { proxy_increment_metric(id, 1) };
    }

    pub fn record(id: u32, value: u64) {
        // SAFETY: plain values.
        let _ = unsafe { proxy_record_metric(id, value) };
    }

    pub fn log_critical(message: &str) {
        // SAFETY: pointer and length describe a live string for the call.
        let _ = unsafe { proxy_log(LOG_CRITICAL, message.as_ptr(), message.len()) };
    }

    /// proxy-wasm's header map encoding: count, (key len, value len) pairs,
    /// then each key and value NUL-terminated.
    fn serialize_headers(headers: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(headers.len() as u32).to_le_bytes());
        for (k, v) in headers {
            out.extend_from_slice(&(k.len() as u32).to_le_bytes());
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        }
        for (k, v) in headers {
            out.extend_from_slice(k.as_bytes());
            out.push(0);
            out.extend_from_slice(v.as_bytes());
            out.push(0);
        }
        out
    }
}
