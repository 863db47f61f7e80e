//! The request driver: a request's headers, a callout's answer and a
//! stream's end move the request's [`Flow`] on; its lookups are answered
//! from the shared cache ([`super::shared_cache`]) or sent to the token
//! service (coalesced, deferred to the root context when the request's own
//! context cannot send), and its results published ([`super::sink`]).

use log::{debug, warn};

use super::{
    budget, call_response, Action, RateLimit, Stream, Worker, DEFERRED_TICK_MS, NOT_CONFIGURED,
};
use crate::config::{FilterConfig, HeaderReads};
use crate::flow::{Event, Flow, FlowOutcome, Pending};
use crate::host::Host;
use crate::metrics;
use crate::protocol;
use crate::request::{header_text, ip_from_address, is_form_urlencoded, Headers, RequestInfo};

/// The pauses before a call no token service answered is sent again: at
/// once, then growing; never past the call's timeout counted from its first
/// send (docs/decisions.md#the-token-service-protocol).
const RETRY_PAUSES_MS: [i64; 8] = [0, 5, 10, 20, 40, 80, 160, 320];

/// The pause before the call is sent again (its `retries`-th repeat, the
/// first sent `elapsed_ms` ago), or `None`: no more.
fn retry_pause(retries: u8, elapsed_ms: i64, config: &FilterConfig) -> Option<i64> {
    let pause = *RETRY_PAUSES_MS.get(usize::from(retries))?;
    (elapsed_ms + pause < i64::from(config.token_service.timeout_ms)).then_some(pause)
}

impl Worker {
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
        // A call that no token service answered (the connection was
        // refused or reset before any answer: Envoy's own 503, or no status
        // at all) is sent again, at once and then after growing pauses,
        // while its timeout (counted from the first send) lasts: Envoy
        // retries no Wasm callout, and a replica that just died takes Envoy
        // up to a health-check interval to leave the rotation
        // (docs/deploying.md, docs/decisions.md#the-token-service-protocol).
        if protocol::never_answered(status, &body) {
            let elapsed = now - stream.first_sent_ms;
            if let Some(pause) = retry_pause(stream.retries, elapsed, &config) {
                stream.retries += 1;
                if pause > 0 {
                    debug!("oauthv2info: token service call failed before any answer: sent again in {pause} ms");
                    self.retrying.push((id, now + pause));
                    self.streams.insert(id, stream);
                    host.set_tick_period_ms(DEFERRED_TICK_MS);
                    host.set_effective_context(active);
                    return;
                }
                match self.dispatch(host, &config, &mut stream) {
                    Ok(token) => {
                        debug!(
                            "oauthv2info: token service call failed before any answer: sent again"
                        );
                        self.callouts.insert(token, id);
                        self.streams.insert(id, stream);
                        host.set_effective_context(active);
                        return;
                    }
                    Err(reason) => debug!("oauthv2info: could not send the call again: {reason}"),
                }
            }
        }
        self.finish(host, active, stream, status, &body);
    }

    /// Sends again the calls whose pause is over (the root's tick); one that
    /// cannot be sent ends as no answer.
    pub(super) fn send_retries(&mut self, host: &mut impl Host) {
        if self.retrying.is_empty() {
            return;
        }
        let now = host.now_ms();
        let mut due = Vec::new();
        self.retrying.retain(|&(id, at)| {
            if at <= now {
                due.push(id);
            }
            at > now
        });
        for id in due {
            let Some(mut stream) = self.streams.remove(&id) else {
                continue;
            };
            let Some(config) = stream.config.clone() else {
                continue;
            };
            stream.flow.now_ms = now;
            // Sent as the stream's own (a host whose callouts belong to a
            // stream sends it on this one's: the Wasm host's go to the root).
            host.set_effective_context(id);
            match self.dispatch(host, &config, &mut stream) {
                Ok(token) => {
                    self.callouts.insert(token, id);
                    self.streams.insert(id, stream);
                }
                Err(reason) => {
                    debug!("oauthv2info: could not send the call again: {reason}");
                    let root = self.root_id;
                    self.finish(host, root, stream, None, &[]);
                }
            }
        }
        host.set_effective_context(self.root_id);
    }

    /// A callout's final answer (`active`: the context the host delivered
    /// it to; the stream's own is the effective one): the request and those
    /// that waited on its lookup go on with it.
    fn finish(
        &mut self,
        host: &mut impl Host,
        active: u32,
        mut stream: Box<Stream>,
        status: Option<u16>,
        body: &[u8],
    ) {
        let Some(config) = stream.config.clone() else {
            return;
        };
        let (id, now) = (stream.id, stream.flow.now_ms);
        read_call(host, &config, &mut stream.request, true);
        let learned = stream
            .flow
            .on_response(&config, &stream.request, status, body);
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
            read_call(host, &config, &mut other.request, true);
            other
                .flow
                .on_response(&config, &other.request, status, body);
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

    pub(super) fn defer(&mut self, host: &mut impl Host, id: u32) {
        if !self.deferred.contains(&id) {
            self.deferred.push(id);
        }
        host.set_tick_period_ms(DEFERRED_TICK_MS);
    }

    pub(super) fn recycle(&mut self, mut stream: Box<Stream>) {
        stream.config = None;
        stream.leads = None;
        if self.spare.is_none() {
            self.spare = Some(stream);
        }
    }

    /// Drives a stream's flow until it waits for a callout or ends.
    /// `can_send`: the active context may send this stream's callout (it is
    /// the stream's own, or the root's); else it is deferred to the root.
    pub(super) fn run(
        &mut self,
        host: &mut impl Host,
        mut stream: Box<Stream>,
        can_send: bool,
    ) -> Action {
        let Some(config) = stream.config.clone() else {
            return Action::Continue;
        };
        loop {
            let outcome = stream.flow.advance(&config, &stream.request);
            self.drain_events(&config, &mut stream.flow);
            match outcome {
                FlowOutcome::Wait => {
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
                FlowOutcome::Continue => {
                    self.publish(host, &config, &stream, None);
                    self.set_request_headers(host, &config, &stream);
                    self.recycle(stream);
                    return Action::Continue;
                }
                FlowOutcome::Reply(fault) => {
                    self.publish(host, &config, &stream, Some(fault));
                    self.recycle(stream);
                    return Action::Pause;
                }
            }
        }
    }

    pub(super) fn drain_events(&mut self, config: &FilterConfig, flow: &mut Flow) {
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
                    self.service_failure(config, flow.now_ms, policy, &reason);
                }
            }
        }
    }

    /// A policy's token-service failure: logged and counted. Out of line:
    /// not the warm path.
    #[inline(never)]
    fn service_failure(&mut self, config: &FilterConfig, now_ms: i64, policy: usize, reason: &str) {
        let name = config.policies.get(policy).map_or("?", |p| p.name.as_str());
        if reason == budget::REFUSED {
            // A flood is refused here: counted, and logged at most once a
            // minute.
            self.metrics.count(metrics::LOOKUPS_REFUSED);
            self.budget_warnings.warn(now_ms, || {
                format!("policy {name:?}: token service unavailable: {reason}")
            });
        } else {
            warn!("oauthv2info: policy {name:?}: token service unavailable: {reason}");
            self.metrics.count(metrics::CALLOUT_FAILURES);
        }
    }

    /// Sends the pending callout of `stream` (see [`Worker::send`]).
    pub(super) fn dispatch(
        &mut self,
        host: &mut impl Host,
        config: &FilterConfig,
        stream: &mut Stream,
    ) -> Result<u32, String> {
        let Some((path, content_type, body)) = protocol::request(&stream.flow, config) else {
            return Err("nothing to send".to_string());
        };
        let service = &config.token_service;
        let headers = protocol::headers(service, "POST", path, Some(content_type));
        self.metrics.count(metrics::CALLOUTS);
        stream.callout_started_ms = stream.flow.now_ms;
        host.dispatch(&service.cluster, &headers, &body, service.timeout_ms)
    }

    /// Sends (or joins, or defers) the pending callout. Out of line: a hit
    /// does not come here.
    #[inline(never)]
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
        // A lookup of a token this Envoy has not seen valid takes one from
        // the budget; none left: it fails at once, without a call.
        if key.is_some()
            && !stream.seen
            && !self
                .budget
                .take(&config.token_service.lookup_budget, stream.flow.now_ms)
        {
            stream
                .flow
                .on_dispatch_failure(config, budget::REFUSED.to_string());
            return Sent::Failed;
        }
        stream.retries = 0;
        stream.first_sent_ms = stream.flow.now_ms;
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
}

enum Sent {
    Waiting,
    /// Not sent; the flow took the failure and can go on.
    Failed,
}

/// Reads `:path` and `:method` for the API-product check of a lookup that
/// carries products, when the configuration did not read them already
/// (docs/decisions.md#api-products): a token service without products
/// costs no host call. The stream's own context must be the effective one.
pub(super) fn read_call(
    host: &mut impl Host,
    config: &FilterConfig,
    request: &mut RequestInfo,
    verb: bool,
) {
    if !config.checks_products {
        return;
    }
    if !request.path_read {
        request.path_read = true;
        request.path = host.request_header(":path").unwrap_or_default();
    }
    if verb && !request.method_read {
        request.method_read = true;
        request.method = host.request_header(":method").unwrap_or_default();
    }
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
        request.path_read = true;
    }
    if config.needs_method {
        request.method = host.request_header(":method").unwrap_or_default();
        request.method_read = true;
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
            crate::request::lossy(&why)
        ),
        None => warnings.warn(now_ms, || {
            "a policy reads request.formparam.* but no form body was handed over: put the oauthv2info-form filter that `oauthv2info envoy-filters` prints before this filter".to_string()
        }),
    }
    None
}
