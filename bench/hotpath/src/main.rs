//! One warm cache hit, natively, through the very code the filter runs in
//! Envoy: `oauthv2info_core::filter::Worker::on_request_headers`, over a
//! host that answers the way Envoy's does (the request's `:path`, the clock,
//! the shared cache entry) and records nothing. What it measures is the
//! filter's own work per warm request (docs/performance.md#the-warm-path).
//!
//!   hotpath [N] [CONFIG]   N warm hits (default 200000) of one of the
//!                          benchmark's configurations: `default` (as
//!                          shipped: every variable published, metadata
//!                          bridge `auto`, which is the Lua bridge here),
//!                          `h2m` (the same through header_to_metadata),
//!                          `narrow` (3 variables published, 3 mapped
//!                          request headers; `auto` picks header_to_metadata),
//!                          `miss` (as default with the cache off: each
//!                          request a callout, its answer parsed and
//!                          published; the host's side of the callout is
//!                          not in the count), `verify` (OAuthV2
//!                          VerifyAccessToken instead, the token in
//!                          `Authorization: Bearer`, every variable
//!                          published: bench/bench.py's setup 2v),
//!                          `condition` (default plus a SetOAuthV2Info step
//!                          whose condition, `request.verb = "POST"`, is
//!                          false for these GETs: setup 2c)
//!
//! For instruction counts, run it twice under callgrind and take the
//! difference (docs/performance.md#tools):
//!   valgrind --tool=callgrind --callgrind-out-file=/dev/null hotpath 1000
//!   valgrind --tool=callgrind --callgrind-out-file=/dev/null hotpath 3000

use std::hint::black_box;
use std::time::Instant;

use oauthv2info_core::filter::{Action, Worker};
use oauthv2info_core::host::{Host, MetricKind, SharedWrite};

const TOKEN: &str = "BT00042a1b2c3d4e5f6";
const NOW: i64 = 1_795_356_400_000;

/// The host side of a warm hit: copies out what a real host copies out
/// (into buffers the filter then owns, as proxy-wasm does), and keeps
/// nothing of what the filter writes.
#[derive(Default)]
struct BenchHost {
    path: Vec<u8>,
    /// The shared data (one entry in this benchmark): a list, so that the
    /// host's own lookup costs next to nothing in the count.
    shared: Vec<(String, Vec<u8>)>,
    callout_body: Vec<u8>,
    writes: usize,
    calls: usize,
    /// The request's headers other than `:path`: none but in `verify`
    /// and `condition`, which read `authorization` and `:method`.
    headers: Vec<(String, Vec<u8>)>,
}

impl BenchHost {
    /// A header other than `:path`: out of line (and cold), so that the
    /// configurations reading only `:path` keep their instruction counts.
    #[cold]
    #[inline(never)]
    fn other_header(&self, name: &str) -> Option<Vec<u8>> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

impl Host for BenchHost {
    fn now_ms(&mut self) -> i64 {
        self.calls += 1;
        NOW
    }
    fn random_keys(&mut self) -> [u64; 2] {
        [1, 2]
    }
    fn request_header(&mut self, name: &str) -> Option<Vec<u8>> {
        self.calls += 1;
        if name == ":path" {
            return Some(self.path.clone());
        }
        self.other_header(name)
    }
    fn request_headers(&mut self) -> Vec<(String, Vec<u8>)> {
        self.calls += 1;
        let mut all = vec![(":path".to_string(), self.path.clone())];
        all.extend(self.headers.iter().cloned());
        all
    }
    fn set_request_header(&mut self, _name: &str, value: &[u8]) -> bool {
        self.calls += 1;
        self.writes += value.len();
        true
    }
    fn add_request_header(&mut self, _name: &str, value: &[u8]) -> bool {
        self.calls += 1;
        self.writes += value.len();
        true
    }
    fn remove_request_header(&mut self, _name: &str) {
        self.calls += 1;
    }
    fn property(&mut self, _path: &[&str]) -> Option<Vec<u8>> {
        self.calls += 1;
        None
    }
    fn set_filter_state(&mut self, key: &[u8], value: &[u8]) -> bool {
        self.calls += 1;
        self.writes += key.len() + value.len();
        true
    }
    fn shared_data(&mut self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        self.calls += 1;
        match self.shared.iter().find(|(k, _)| k == key) {
            Some((_, v)) => (Some(v.clone()), Some(1)),
            None => (None, None),
        }
    }
    fn set_shared_data(&mut self, key: &str, value: &[u8], _cas: Option<u32>) -> SharedWrite {
        self.calls += 1;
        self.shared.retain(|(k, _)| k != key);
        self.shared.push((key.to_string(), value.to_vec()));
        SharedWrite::Ok
    }
    fn dispatch(
        &mut self,
        _c: &str,
        _h: &[(&str, &str)],
        _b: &[u8],
        _t: u32,
    ) -> Result<u32, String> {
        self.calls += 1;
        Ok(1)
    }
    fn call_response_status(&mut self) -> Option<u16> {
        Some(200)
    }
    fn call_response_body(&mut self, _size: usize) -> Vec<u8> {
        self.callout_body.clone()
    }
    fn send_local_response(&mut self, _s: u32, _h: &[(&str, &[u8])], _b: &[u8]) -> bool {
        self.calls += 1;
        true
    }
    fn resume_request(&mut self) {
        self.calls += 1;
    }
    fn set_effective_context(&mut self, _context: u32) {}
    fn set_tick_period_ms(&mut self, _ms: u32) {}
    fn define_metric(&mut self, _kind: MetricKind, _name: &str) -> Option<u32> {
        Some(1)
    }
    fn increment_metric(&mut self, _id: u32, _delta: i64) {}
    fn record_metric(&mut self, _id: u32, _value: u64) {}
}

/// The plugin configuration of `make bench`'s warm setups (bench/bench.py).
fn plugin(mode: &str) -> String {
    let policy = r#"<GetOAuthV2Info name=\"GetTokenAttributes\"><AccessToken ref=\"request.queryparam.access_token\"/></GetOAuthV2Info>"#;
    if mode == "verify" {
        return r#"{"token_service": {"cluster": "token_service", "credentials": "Bearer k"},
                "policies": ["<OAuthV2 name=\"VerifyAccessToken\"><Operation>VerifyAccessToken</Operation></OAuthV2>"],
                "metadata_bridge": "auto", "cache": {"max_entries": 1000000}}"#
            .to_string();
    }
    if mode == "condition" {
        // bench/bench.py's SET_POLICY, in a step of its own (setup 2c).
        let set = r#"<SetOAuthV2Info name=\"SetDept\"><AccessToken ref=\"request.queryparam.access_token\"/><Attributes><Attribute name=\"department.id\" ref=\"request.queryparam.dept\"/></Attributes></SetOAuthV2Info>"#;
        return format!(
            r#"{{"token_service": {{"cluster": "token_service", "credentials": "Bearer k"}},
                "policies": ["{policy}", {{"policy": "{set}", "condition": "request.verb = \"POST\""}}],
                "metadata_bridge": "auto", "cache": {{"max_entries": 1000000}}}}"#
        );
    }
    if mode == "h2m" {
        return format!(
            r#"{{"token_service": {{"cluster": "token_service", "credentials": "Bearer k"}},
                "policies": ["{policy}"], "metadata_bridge": "header_to_metadata", "cache": {{"max_entries": 1000000}}}}"#
        );
    }
    if mode == "miss" {
        return format!(
            r#"{{"token_service": {{"cluster": "token_service", "credentials": "Bearer k"}},
                "policies": ["{policy}"], "metadata_bridge": "auto", "cache": {{"enabled": false}}}}"#
        );
    }
    if mode == "narrow" {
        format!(
            r#"{{"token_service": {{"cluster": "token_service", "credentials": "Bearer k"}},
                "policies": ["{policy}"], "metadata_bridge": "auto",
                "publish": ["oauthv2accesstoken.*.client_id", "oauthv2accesstoken.*.scope", "oauthv2accesstoken.*.developer.email"],
                "request_headers": {{"x-client-id": "oauthv2accesstoken.GetTokenAttributes.client_id",
                                     "x-scope": "oauthv2accesstoken.GetTokenAttributes.scope",
                                     "x-developer-email": "oauthv2accesstoken.GetTokenAttributes.developer.email"}},
                "cache": {{"max_entries": 1000000}}}}"#
        )
    } else {
        format!(
            r#"{{"token_service": {{"cluster": "token_service", "credentials": "Bearer k"}},
                "policies": ["{policy}"], "metadata_bridge": "auto", "cache": {{"max_entries": 1000000}}}}"#
        )
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let iterations: u32 = args.first().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let mode = args.get(1).map_or("default", String::as_str);
    if !["default", "h2m", "narrow", "miss", "verify", "condition"].contains(&mode) {
        eprintln!(
            "hotpath: unknown configuration {mode:?} (default, h2m, narrow, miss, verify, condition)"
        );
        std::process::exit(2);
    }
    // What the token service answers for a benchmark token (bench/bench.py
    // seeds tokens like this one).
    let body = format!(
        r#"{{"active":true,"client_id":"cid-bench","exp":1795442766,"iat":1795356366,"profile":{{"access_token":"{TOKEN}","api_product_list":"[FreeProduct, Premium]","attributes":{{"department.id":"42","plan":"premium","region":"eu-west"}},"client_id":"cid-bench","developer.app.id":"f4891d6f-66cc-4dfc-8487-3ecfff8dc263","developer.app.name":"bench-app","developer.email":"bench@example.com","developer.id":"dev-bench","expires_at":"1795442766330","expires_in":"86399","issued_at":"1795356366330","organization_name":"local","refresh_count":"1","refresh_token":"{TOKEN}-refresh","refresh_token_expires_at":"1795529166330","refresh_token_expires_in":"172799","refresh_token_issued_at":"1795356366330","refresh_token_status":"approved","scope":"READ WRITE","status":"approved","token_type":"BearerToken"}},"scope":"READ WRITE","token_type":"Bearer"}}"#
    );
    let mut host = BenchHost {
        path: format!("/get?access_token={TOKEN}").into_bytes(),
        callout_body: body.into_bytes(),
        ..BenchHost::default()
    };
    match mode {
        // bench/bench.py's "bearer" requests (setup 2v): the token in the
        // header only, and the method, which a request always has.
        "verify" => {
            host.path = b"/get".to_vec();
            host.headers = vec![
                (":method".to_string(), b"GET".to_vec()),
                (
                    "authorization".to_string(),
                    format!("Bearer {TOKEN}").into_bytes(),
                ),
            ];
        }
        // The step's condition reads the method (setup 2c).
        "condition" => host.headers = vec![(":method".to_string(), b"GET".to_vec())],
        _ => {}
    }
    let mut worker = Worker::new(1);
    if !worker.configure(&mut host, plugin(mode).as_bytes()) {
        eprintln!("hotpath: the benchmark configuration was refused");
        std::process::exit(1);
    }
    let miss = mode == "miss";
    let body_len = host.callout_body.len();
    // A miss fills the cache, then one warm hit warms the worker's buffers
    // (with the cache off: two requests, each with its callout).
    for id in [2, 3] {
        let action = worker.on_request_headers(&mut host, id, true);
        if miss || id == 2 {
            if action != Action::Pause {
                eprintln!("hotpath: request {id} should wait for its lookup");
                std::process::exit(1);
            }
            worker.on_call_response(&mut host, id, 1, body_len);
        } else if action != Action::Continue {
            eprintln!("hotpath: the second request should be a cache hit");
            std::process::exit(1);
        }
    }
    let (calls, writes) = (host.calls, host.writes);
    let started = Instant::now();
    for i in 0..iterations {
        let id = black_box(4 + (i & 1));
        let action = worker.on_request_headers(&mut host, id, true);
        if miss {
            worker.on_call_response(&mut host, id, 1, body_len);
        }
        black_box(action);
    }
    let elapsed = started.elapsed();
    let per_call = (host.calls - calls) as f64 / f64::from(iterations.max(1));
    let per_bytes = (host.writes - writes) as f64 / f64::from(iterations.max(1));
    println!(
        "{} ({mode} configuration), native, {iterations} iterations: {:.0} ns per request, {per_call:.0} host calls, {per_bytes:.0} bytes written",
        if miss { "callout and answer" } else { "warm hit" },
        elapsed.as_nanos() as f64 / f64::from(iterations.max(1)),
    );
}
