//! What the filter needs from its host (Envoy, through proxy-wasm): the one
//! interface between the pure core and the adapter in `src/`. Each method
//! is one host call; none can fail in a way that panics. A fake host
//! implements the same trait: `fake`, for the unit tests and, behind the
//! `test-host` feature, `bench/hotpath`.

#[cfg(any(test, feature = "test-host"))]
pub mod fake;

/// A metric kind, as proxy-wasm defines them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// How a shared-data write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedWrite {
    Ok,
    /// Another writer came first (the CAS did not match).
    CasMismatch,
    Failed,
}

/// The host, seen from the core. Calls act on the *effective* context (the
/// stream the host is calling the filter about, unless
/// [`Host::set_effective_context`] chose another).
pub trait Host {
    /// The clock (epoch milliseconds).
    fn now_ms(&mut self) -> i64;

    /// Two random keys, drawn once per worker, for the one hash map whose
    /// keys a client chooses (the introspections in flight, by token):
    /// on the filter's Wasm target the standard library's maps are keyed
    /// from addresses, not at random (docs/decisions.md#the-wasm-target).
    fn random_keys(&mut self) -> [u64; 2];

    /// One request header (or pseudo-header such as `:path`), as bytes;
    /// `None` when absent.
    fn request_header(&mut self, name: &str) -> Option<Vec<u8>>;
    /// Every request header, names as the host gives them.
    fn request_headers(&mut self) -> Vec<(String, Vec<u8>)>;
    /// Sets a request header, replacing every copy the client sent; false
    /// when the host refuses.
    fn set_request_header(&mut self, name: &str, value: &[u8]) -> bool;
    /// Adds a request header (beside any copy already there).
    fn add_request_header(&mut self, name: &str, value: &[u8]) -> bool;
    /// Removes every copy of a request header.
    fn remove_request_header(&mut self, name: &str);

    /// A property (`["source", "address"]`, dynamic metadata...); `None`
    /// when absent. A present empty value is `Some(vec![])`.
    fn property(&mut self, path: &[&str]) -> Option<Vec<u8>>;
    /// Writes filter state `wasm.<key>`; false when the host refuses.
    fn set_filter_state(&mut self, key: &[u8], value: &[u8]) -> bool;

    /// A shared-data value and its CAS.
    fn shared_data(&mut self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    fn set_shared_data(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> SharedWrite;

    /// Sends an HTTP callout; the callout's token, or why it could not be
    /// sent (unknown cluster, no healthy host...).
    fn dispatch(
        &mut self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout_ms: u32,
    ) -> Result<u32, String>;
    /// The `:status` of the callout response being delivered.
    fn call_response_status(&mut self) -> Option<u16>;
    /// Its body (`size` bytes, as the host announced).
    fn call_response_body(&mut self, size: usize) -> Vec<u8>;

    /// Ends the stream with a local reply; false when the host refuses.
    fn send_local_response(&mut self, status: u32, headers: &[(&str, &[u8])], body: &[u8]) -> bool;
    /// Lets the paused request go on.
    fn resume_request(&mut self);
    /// Makes `context` the effective context.
    fn set_effective_context(&mut self, context: u32);
    /// How often the root context's tick runs (0: never).
    fn set_tick_period_ms(&mut self, ms: u32);

    /// Defines a metric; `None` when the host refuses.
    fn define_metric(&mut self, kind: MetricKind, name: &str) -> Option<u32>;
    fn increment_metric(&mut self, id: u32, delta: i64);
    fn record_metric(&mut self, id: u32, value: u64);
}
