//! The one fake host: [`Host`] the way Envoy's proxy-wasm host behaves,
//! for the unit tests (`crate::filter`'s whole requests, with every call
//! recorded) and for `bench/hotpath` (the `test-host` feature; with
//! `RECORD` off it keeps nothing of what the filter writes but the shared
//! data, so that its own work stays small in the instruction count:
//! docs/performance.md#the-warm-path).

use std::collections::HashMap;

use super::{Host, MetricKind, SharedWrite};

/// A local reply: status, headers, body.
pub type Reply = (u32, Vec<(String, Vec<u8>)>, Vec<u8>);

/// What the fake host's `random_keys` draws.
pub const FAKE_KEYS: [u64; 2] = [0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210];

/// One request's side of the host: its headers and properties, what the
/// filter wrote, whether it went on or was answered.
#[derive(Debug, Default, Clone)]
pub struct FakeRequest {
    pub headers: Vec<(String, Vec<u8>)>,
    pub properties: HashMap<String, Vec<u8>>,
    pub filter_state: Vec<(String, Vec<u8>)>,
    pub resumed: u32,
    pub reply: Option<Reply>,
}

impl FakeRequest {
    /// A request with these headers.
    pub fn with_headers(headers: Vec<(String, Vec<u8>)>) -> FakeRequest {
        FakeRequest {
            headers,
            ..FakeRequest::default()
        }
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    /// The last value written to filter state `key`.
    pub fn state(&self, key: &str) -> Option<String> {
        self.filter_state
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

/// A callout the filter sent.
#[derive(Debug, Clone)]
pub struct FakeCallout {
    pub token: u32,
    /// The effective context when it was sent.
    pub context: u32,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The requests, by context id: a list, as the few a test or the
/// benchmark has are found at next to no cost.
#[derive(Debug, Default, Clone)]
pub struct Requests(Vec<(u32, FakeRequest)>);

impl Requests {
    /// Sets request `id` (replacing one of that id).
    pub fn insert(&mut self, id: u32, request: FakeRequest) {
        match self.get_mut(&id) {
            Some(r) => *r = request,
            None => self.0.push((id, request)),
        }
    }

    #[inline]
    pub fn get(&self, id: &u32) -> Option<&FakeRequest> {
        self.0.iter().find(|(i, _)| i == id).map(|(_, r)| r)
    }

    pub fn get_mut(&mut self, id: &u32) -> Option<&mut FakeRequest> {
        self.0.iter_mut().find(|(i, _)| i == id).map(|(_, r)| r)
    }

    /// Request `id`, created empty when there is none.
    pub fn entry(&mut self, id: u32) -> &mut FakeRequest {
        let at = match self.0.iter().position(|(i, _)| *i == id) {
            Some(at) => at,
            None => {
                self.0.push((id, FakeRequest::default()));
                self.0.len() - 1
            }
        };
        &mut self.0[at].1
    }
}

/// `RECORD`: keep what the filter writes (headers, filter state, replies,
/// callouts, metrics, the name of each call), as the unit tests do; off
/// (`FakeHost<false>`, the benchmark), only the shared data is kept, and
/// the calls and bytes written are counted. A type parameter, so that the
/// benchmark's host pays nothing for it.
pub struct FakeHost<const RECORD: bool = true> {
    pub now: i64,
    /// The effective context.
    pub active: u32,
    pub requests: Requests,
    /// Shared data: key, value, CAS. A list: the few keys a test or the
    /// benchmark uses are found at next to no cost.
    pub shared: Vec<(String, Vec<u8>, u32)>,
    pub next_cas: u32,
    pub callouts: Vec<FakeCallout>,
    pub next_token: u32,
    /// The answer `call_response_status` and `call_response_body` give.
    pub response: Option<(Option<u16>, Vec<u8>)>,
    /// Set: every dispatch fails with it.
    pub dispatch_error: Option<String>,
    pub metric_names: Vec<String>,
    pub metrics: HashMap<u32, i64>,
    pub tick_ms: u32,
    /// Every host call, by name, since the last `calls.clear()` (`RECORD`).
    pub calls: Vec<&'static str>,
    /// How many host calls, and how many bytes the filter wrote through
    /// them (headers, filter state).
    pub call_count: usize,
    pub written: usize,
}

impl<const RECORD: bool> Default for FakeHost<RECORD> {
    fn default() -> FakeHost<RECORD> {
        FakeHost {
            now: 0,
            active: 0,
            requests: Requests::default(),
            shared: Vec::new(),
            next_cas: 0,
            callouts: Vec::new(),
            next_token: 0,
            response: None,
            dispatch_error: None,
            metric_names: Vec::new(),
            metrics: HashMap::new(),
            tick_ms: 0,
            calls: Vec::new(),
            call_count: 0,
            written: 0,
        }
    }
}

impl<const RECORD: bool> FakeHost<RECORD> {
    /// The effective context's request (created empty when the tests gave
    /// none).
    pub fn req(&mut self) -> &mut FakeRequest {
        self.requests.entry(self.active)
    }

    /// A metric's value by its name (without the `oauthv2info.` prefix).
    pub fn metric(&self, name: &str) -> i64 {
        self.metric_names
            .iter()
            .position(|n| n == &format!("oauthv2info.{name}"))
            .and_then(|i| u32::try_from(i + 1).ok())
            .and_then(|i| self.metrics.get(&i))
            .copied()
            .unwrap_or(0)
    }

    /// How many times `call` was made (`RECORD`).
    pub fn count(&self, call: &str) -> usize {
        self.calls.iter().filter(|c| **c == call).count()
    }

    #[inline]
    fn log(&mut self, call: &'static str) {
        self.call_count += 1;
        if RECORD {
            self.log_name(call);
        }
    }

    // What `RECORD` keeps, out of line (and cold), so that with `RECORD`
    // off the host's side of a call stays a few instructions.

    #[cold]
    #[inline(never)]
    fn log_name(&mut self, call: &'static str) {
        host_side(|| self.calls.push(call));
    }

    #[cold]
    #[inline(never)]
    fn keep_header(&mut self, name: &str, value: &[u8], replace: bool) {
        host_side(|| {
            let r = self.req();
            if replace {
                r.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
            }
            r.headers.push((name.to_string(), value.to_vec()));
        });
    }

    #[cold]
    #[inline(never)]
    fn keep_filter_state(&mut self, key: &[u8], value: &[u8]) {
        host_side(|| {
            let key = String::from_utf8_lossy(key).into_owned();
            self.req().filter_state.push((key, value.to_vec()))
        });
    }
}

impl<const RECORD: bool> Host for FakeHost<RECORD> {
    #[inline]
    fn now_ms(&mut self) -> i64 {
        self.log("now_ms");
        self.now
    }
    fn random_keys(&mut self) -> [u64; 2] {
        self.log("random_keys");
        FAKE_KEYS
    }
    #[inline]
    fn request_header(&mut self, name: &str) -> Option<Vec<u8>> {
        self.log("request_header");
        let active = self.active;
        host_side(|| {
            self.requests
                .get(&active)?
                .headers
                .iter()
                // Names are mostly given as asked: that compare first.
                .find(|(k, _)| k == name || k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        })
    }
    fn request_headers(&mut self) -> Vec<(String, Vec<u8>)> {
        self.log("request_headers");
        host_side(|| self.req().headers.clone())
    }
    #[inline]
    fn set_request_header(&mut self, name: &str, value: &[u8]) -> bool {
        self.log("set_request_header");
        self.written += value.len();
        if RECORD {
            self.keep_header(name, value, true);
        }
        true
    }
    #[inline]
    fn add_request_header(&mut self, name: &str, value: &[u8]) -> bool {
        self.log("add_request_header");
        self.written += value.len();
        if RECORD {
            self.keep_header(name, value, false);
        }
        true
    }
    fn remove_request_header(&mut self, name: &str) {
        self.log("remove_request_header");
        if RECORD {
            host_side(|| {
                self.req()
                    .headers
                    .retain(|(k, _)| !k.eq_ignore_ascii_case(name))
            });
        }
    }
    fn property(&mut self, path: &[&str]) -> Option<Vec<u8>> {
        self.log("property");
        let active = self.active;
        host_side(|| {
            self.requests
                .get(&active)?
                .properties
                .get(&path.join("."))
                .cloned()
        })
    }
    #[inline]
    fn set_filter_state(&mut self, key: &[u8], value: &[u8]) -> bool {
        self.log("set_filter_state");
        self.written += key.len() + value.len();
        if RECORD {
            self.keep_filter_state(key, value);
        }
        true
    }
    #[inline]
    fn shared_data(&mut self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        self.log("shared_data");
        host_side(|| match self.shared.iter().find(|(k, _, _)| k == key) {
            Some((_, v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        })
    }
    fn set_shared_data(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> SharedWrite {
        self.log("set_shared_data");
        host_side(|| {
            let at = self.shared.iter().position(|(k, _, _)| k == key);
            if let (Some(cas), Some(at)) = (cas, at) {
                if cas != self.shared[at].2 {
                    return SharedWrite::CasMismatch;
                }
            }
            self.next_cas += 1;
            let entry = (key.to_string(), value.to_vec(), self.next_cas);
            match at {
                Some(at) => self.shared[at] = entry,
                None => self.shared.push(entry),
            }
            SharedWrite::Ok
        })
    }
    fn dispatch(
        &mut self,
        _cluster: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        _timeout_ms: u32,
    ) -> Result<u32, String> {
        self.log("dispatch");
        host_side(|| {
            if let Some(e) = self.dispatch_error.clone() {
                return Err(e);
            }
            self.next_token += 1;
            if RECORD {
                self.callouts.push(FakeCallout {
                    token: self.next_token,
                    context: self.active,
                    headers: headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    body: body.to_vec(),
                });
            }
            Ok(self.next_token)
        })
    }
    fn call_response_status(&mut self) -> Option<u16> {
        self.log("call_response_status");
        self.response.as_ref().and_then(|r| r.0)
    }
    fn call_response_body(&mut self, _size: usize) -> Vec<u8> {
        self.log("call_response_body");
        host_side(|| {
            self.response
                .as_ref()
                .map(|r| r.1.clone())
                .unwrap_or_default()
        })
    }
    fn send_local_response(&mut self, status: u32, headers: &[(&str, &[u8])], body: &[u8]) -> bool {
        self.log("send_local_response");
        if RECORD {
            host_side(|| {
                let headers = headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_vec()))
                    .collect();
                self.req().reply = Some((status, headers, body.to_vec()));
            });
        }
        true
    }
    fn resume_request(&mut self) {
        self.log("resume_request");
        if RECORD {
            self.req().resumed += 1;
        }
    }
    fn set_effective_context(&mut self, context: u32) {
        self.log("set_effective_context");
        self.active = context;
    }
    fn set_tick_period_ms(&mut self, ms: u32) {
        self.log("set_tick_period_ms");
        self.tick_ms = ms;
    }
    fn define_metric(&mut self, _kind: MetricKind, name: &str) -> Option<u32> {
        self.metric_names.push(name.to_string());
        u32::try_from(self.metric_names.len()).ok()
    }
    fn increment_metric(&mut self, id: u32, delta: i64) {
        self.log("increment_metric");
        if RECORD {
            *self.metrics.entry(id).or_default() += delta;
        }
    }
    fn record_metric(&mut self, _id: u32, _value: u64) {
        self.log("record_metric");
    }
}

/// Runs `f` with the unit tests' allocation counting paused: the buffers a
/// real host hands over are allocated by the host ABI, not the filter.
#[cfg(test)]
pub(crate) fn host_side<T>(f: impl FnOnce() -> T) -> T {
    let was = counting::COUNTING.with(|c| c.replace(false));
    let out = f();
    counting::COUNTING.with(|c| c.set(was));
    out
}

#[cfg(not(test))]
#[inline(always)]
fn host_side<T>(f: impl FnOnce() -> T) -> T {
    f()
}

/// The unit tests' allocation counting (the counting allocator is in
/// `crate::filter`'s tests).
#[cfg(test)]
pub(crate) mod counting {
    use std::cell::Cell;

    thread_local! {
        pub(crate) static COUNTING: Cell<bool> = const { Cell::new(false) };
        pub(crate) static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
    }
}
