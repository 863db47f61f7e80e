//! Whole requests through the worker, natively, over a fake host that
//! implements [`Host`] the way Envoy's proxy-wasm host behaves
//! (docs/performance.md#host-calls-per-request counts its calls).

use std::alloc::{GlobalAlloc, Layout, System};

use serde_json::{json, Value};

use super::*;
use crate::host::fake::counting::{ALLOCATIONS, COUNTING};
use crate::host::fake::{FakeCallout, FakeHost, FakeRequest, FAKE_KEYS};
use crate::publish::METADATA_BRIDGE_KEY;
use oauthv2info_names::TokenKind;

// ------------------------------------------------ counting allocator

struct Counting;
static TRACE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Counts an allocation made while counting is on (and, with
/// `ALLOC_TRACE` set, writes where it was made to /tmp/alloc-trace.txt).
fn note_allocation() {
    let _ = COUNTING.try_with(|c| {
        if c.get() {
            let _ = ALLOCATIONS.try_with(|a| a.set(a.get() + 1));
            if TRACE.load(std::sync::atomic::Ordering::Relaxed) {
                c.set(false);
                let bt = std::backtrace::Backtrace::force_capture().to_string();
                let _ = std::fs::write("/tmp/alloc-trace.txt", bt);
                c.set(true);
            }
        }
    });
}

// SAFETY: delegates to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: the caller's layout is passed on as it is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr came from System.alloc with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Counts the allocations `f` makes on this thread, outside the fake host.
fn allocations(f: impl FnOnce()) -> usize {
    ALLOCATIONS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(|a| a.get())
}

// ------------------------------------------------ the fake host

/// The tests' reading of a local reply.
trait ReplyJson {
    fn reply_json(&self) -> Value;
}

impl ReplyJson for FakeRequest {
    fn reply_json(&self) -> Value {
        let (_, _, body) = self.reply.as_ref().expect("a local reply");
        serde_json::from_slice(body).expect("a JSON reply")
    }
}

// ------------------------------------------------ the harness

const ROOT: u32 = 1;
const NOW: i64 = 1_700_000_000_000;
const GET: &str = r#"<GetOAuthV2Info name="G"><AccessToken ref="request.queryparam.access_token"/></GetOAuthV2Info>"#;

struct Harness {
    worker: Worker,
    host: FakeHost,
}

impl Harness {
    fn new(plugin: Value) -> Harness {
        let mut host = FakeHost {
            now: NOW,
            active: ROOT,
            ..FakeHost::default()
        };
        let mut worker = Worker::new(ROOT);
        assert!(worker.configure(&mut host, plugin.to_string().as_bytes()));
        Harness { worker, host }
    }

    fn get(policies: &[&str]) -> Harness {
        Harness::new(json!({"policies": policies}))
    }

    /// A request's headers arrive on context `id`.
    fn request(&mut self, id: u32, path: &str, headers: &[(&str, &str)]) -> Action {
        let mut all: Vec<(String, Vec<u8>)> = vec![
            (":method".into(), b"GET".to_vec()),
            (":path".into(), path.as_bytes().to_vec()),
            (":authority".into(), b"example.com".to_vec()),
        ];
        all.extend(
            headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())),
        );
        self.host.requests.insert(
            id,
            FakeRequest {
                headers: all,
                ..FakeRequest::default()
            },
        );
        self.host.active = id;
        self.worker.on_request_headers(&mut self.host, id, true)
    }

    /// The callout with `token` is answered; delivered to the context it
    /// was sent from (as the proxy-wasm SDK does).
    fn respond(&mut self, token: u32, status: Option<u16>, body: &str) {
        let context = self
            .host
            .callouts
            .iter()
            .find(|c| c.token == token)
            .map(|c| c.context)
            .expect("a callout with that token");
        self.host.response = Some((status, body.as_bytes().to_vec()));
        self.host.active = context;
        self.worker
            .on_call_response(&mut self.host, context, token, body.len());
    }

    fn tick(&mut self) {
        self.host.active = ROOT;
        self.worker.on_tick(&mut self.host);
    }

    fn end(&mut self, id: u32) {
        self.host.active = id;
        self.worker.on_stream_end(&mut self.host, id);
    }

    fn req(&self, id: u32) -> &FakeRequest {
        self.host.requests.get(&id).expect("a request")
    }

    fn last_callout(&self) -> &FakeCallout {
        self.host.callouts.last().expect("a callout")
    }

    /// Answers the last callout with `status` and `body`, then lets the
    /// clock run (1 ms a tick, at most 10 s) until the call is sent again
    /// (true) or it is not (false: the request got its answer).
    fn fail_once(&mut self, id: u32, status: Option<u16>, body: &str) -> bool {
        let sent = self.host.callouts.len();
        let token = self.last_callout().token;
        self.respond(token, status, body);
        for _ in 0..10_000 {
            if self.host.callouts.len() > sent {
                return true;
            }
            if self.req(id).reply.is_some() || self.req(id).resumed > 0 {
                return false;
            }
            self.host.now += 1;
            self.tick();
        }
        panic!("request {id}: neither sent again nor answered within 10 s");
    }
}

fn profile(token: &str, attributes: Value) -> String {
    json!({"active": true, "client_id": "app", "profile": {
        "access_token": token, "client_id": "app", "scope": "READ WRITE", "status": "approved",
        "expires_at": (NOW + 3_600_000).to_string(), "issued_at": NOW.to_string(),
        "developer.email": "dev@example.com", "refresh_token": format!("{token}-r"),
        "refresh_token_status": "approved", "refresh_token_expires_at": (NOW + 7_200_000).to_string(),
        "attributes": attributes}})
    .to_string()
}

const UNKNOWN: &str = r#"{"active":false}"#;

// ------------------------------------------------ whole requests

#[test]
fn a_miss_calls_out_publishes_and_resumes_then_a_hit_does_not_call_out() {
    let mut h = Harness::get(&[GET]);
    assert_eq!(h.request(10, "/x?access_token=tok", &[]), Action::Pause);
    let callout = h.last_callout().clone();
    assert_eq!(callout.context, 10);
    assert!(callout
        .headers
        .contains(&(":path".into(), "/oauth2/introspect".into())));
    assert_eq!(callout.body, b"token=tok&token_type_hint=access_token");
    assert_eq!(h.worker.paused(), 1);
    h.respond(
        callout.token,
        Some(200),
        &profile("tok", json!({"dept": "42"})),
    );
    let r = h.req(10);
    assert_eq!(r.resumed, 1);
    assert_eq!(
        r.state("oauthv2accesstoken.G.scope").as_deref(),
        Some("READ WRITE")
    );
    assert_eq!(
        r.state("oauthv2accesstoken.G.accesstoken.dept").as_deref(),
        Some("42")
    );
    assert_eq!(
        r.state("oauthv2accesstoken.G.expires_in").as_deref(),
        Some("3600")
    );
    assert_eq!(r.state("oauthV2.G.failed").as_deref(), Some("false"));
    assert_eq!(
        r.state("oauthv2accesstoken.G.access_token"),
        None,
        "secrets are not published"
    );
    // The Lua bridge's entry holds the same variables.
    let blob = r.state(METADATA_BRIDGE_KEY).expect("the bridge entry");
    let (ns, pairs) = crate::publish::decode_bridge(blob.as_bytes()).unwrap();
    assert_eq!(ns, "apigee");
    assert!(pairs.contains(&(
        "oauthv2accesstoken.G.developer.email".into(),
        "dev@example.com".into()
    )));
    assert_eq!(h.worker.paused(), 0);

    // A second request with the same token: a hit, no callout, continues.
    h.host.now = NOW + 1_000;
    let before = h.host.callouts.len();
    assert_eq!(h.request(11, "/x?access_token=tok", &[]), Action::Continue);
    assert_eq!(h.host.callouts.len(), before);
    assert_eq!(
        h.req(11)
            .state("oauthv2accesstoken.G.expires_in")
            .as_deref(),
        Some("3599")
    );
    assert_eq!(
        h.req(11).resumed,
        0,
        "a request that never paused is not resumed"
    );
    h.tick();
    assert_eq!(h.host.metric("cache.hits"), 1);
    assert_eq!(h.host.metric("cache.misses"), 1);
    assert_eq!(h.host.metric("callouts"), 1);
    assert_eq!(h.host.metric("policy.G.executions"), 2);
}

#[test]
fn faults_reply_with_their_body_and_variables() {
    let mut h = Harness::get(&[GET]);
    assert_eq!(h.request(10, "/x?access_token=nope", &[]), Action::Pause);
    let token = h.last_callout().token;
    h.respond(token, Some(200), UNKNOWN);
    let r = h.req(10);
    let (status, headers, _) = r.reply.as_ref().unwrap();
    assert_eq!(*status, 500);
    assert!(headers.contains(&("content-type".into(), b"application/json".to_vec())));
    assert_eq!(
        r.reply_json()["fault"]["detail"]["errorcode"],
        "keymanagement.service.invalid_access_token"
    );
    assert_eq!(r.resumed, 0);
    assert_eq!(
        r.state("fault.name").as_deref(),
        Some("invalid_access_token")
    );
    assert_eq!(
        r.state("oauthV2.G.fault.cause").as_deref(),
        Some("Invalid Access Token")
    );
    // The negative answer is cached: the next request faults at once.
    assert_eq!(h.request(11, "/x?access_token=nope", &[]), Action::Pause);
    assert!(h.req(11).reply.is_some());
    assert_eq!(h.host.callouts.len(), 1);
    // No token at all: the fault without a callout.
    assert_eq!(h.request(12, "/x", &[]), Action::Pause);
    assert_eq!(h.req(12).reply.as_ref().unwrap().0, 500);
    assert_eq!(h.host.callouts.len(), 1);
}

/// VerifyAccessToken's faults reply with their own statuses, a
/// `WWW-Authenticate` challenge and, for a missing scope, a body naming
/// the policy's scopes; a valid Bearer token resumes the request.
#[test]
fn verify_access_token_replies_401_and_403() {
    let mut h = Harness::get(&[
        r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation><Scope>ADMIN WRITE</Scope></OAuthV2>"#,
    ]);
    assert_eq!(
        h.request(10, "/x", &[("authorization", "Bearer tok")]),
        Action::Pause
    );
    let token = h.last_callout().token;
    h.respond(token, Some(200), &profile("tok", json!({"tier": "gold"})));
    let r = h.req(10);
    assert_eq!((r.resumed, r.reply.is_none()), (1, true));
    assert_eq!(r.state("client_id").as_deref(), Some("app"));
    assert_eq!(r.state("accesstoken.tier").as_deref(), Some("gold"));
    assert_eq!(r.state("access_token"), None, "a secret");

    assert_eq!(
        h.request(11, "/x", &[("authorization", "Basic abc")]),
        Action::Pause
    );
    let (status, headers, _) = h.req(11).reply.clone().unwrap();
    assert_eq!(status, 401);
    let challenge = headers
        .iter()
        .find(|(k, _)| k == "www-authenticate")
        .unwrap();
    assert!(String::from_utf8_lossy(&challenge.1)
        .starts_with("Bearer realm=\"null\",error=\"invalid_token\""));
    assert_eq!(
        h.req(11).reply_json(),
        json!({"fault": {"faultstring": "Invalid access token", "detail": {"errorcode": "oauth.v2.InvalidAccessToken"}}})
    );
    assert_eq!(
        h.req(11).state("fault.name").as_deref(),
        Some("InvalidAccessToken")
    );

    assert_eq!(
        h.request(12, "/x", &[("authorization", "Bearer nope")]),
        Action::Pause
    );
    let token = h.last_callout().token;
    h.respond(token, Some(200), UNKNOWN);
    assert_eq!(h.req(12).reply.as_ref().unwrap().0, 401);
    assert_eq!(
        h.req(12).reply_json()["fault"]["detail"]["errorcode"],
        "keymanagement.service.invalid_access_token"
    );

    let mut h = Harness::get(&[
        r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation><Scope>ADMIN</Scope></OAuthV2>"#,
    ]);
    assert_eq!(
        h.request(13, "/x", &[("authorization", "Bearer tok")]),
        Action::Pause
    );
    let token = h.last_callout().token;
    h.respond(token, Some(200), &profile("tok", json!({})));
    let (status, _, body) = h.req(13).reply.clone().unwrap();
    assert_eq!(status, 403);
    assert_eq!(
        String::from_utf8_lossy(&body),
        r#"{"fault":{"faultstring":"Required scope(s): ADMIN","detail":{"errorcode":"steps.oauth.v2.InsufficientScope"}}}"#
    );
    assert_eq!(
        h.req(13).state("oauthV2.V.fault.cause").as_deref(),
        Some("Required scope(s): ADMIN")
    );
}

#[test]
fn every_failure_the_host_can_report_is_token_service_unavailable() {
    for (status, body) in [
        (None, ""),
        (Some(503), "upstream connect error"),
        (Some(504), ""),
        (Some(200), "{garbage"),
    ] {
        let mut h = Harness::get(&[GET]);
        h.request(10, "/x?access_token=t", &[]);
        // No token service answered: the call is sent again, and fails
        // again, until the filter gives up.
        while h.fail_once(10, status, body) {}
        let sent = h.host.callouts.len();
        let r = h.req(10);
        assert_eq!(
            r.reply.as_ref().map(|r| r.0),
            Some(503),
            "{status:?} {body}"
        );
        assert_eq!(
            r.state("fault.name").as_deref(),
            Some("token_service_unavailable")
        );
        // A failure is not cached: the next request calls out again.
        h.request(11, "/x?access_token=t", &[]);
        assert_eq!(h.host.callouts.len(), sent + 1);
    }
    // The callout cannot even be sent (no healthy host, unknown cluster).
    let mut h = Harness::get(&[GET]);
    h.host.dispatch_error = Some("no healthy host".into());
    assert_eq!(h.request(10, "/x?access_token=t", &[]), Action::Pause);
    assert_eq!(h.req(10).reply.as_ref().map(|r| r.0), Some(503));
    assert_eq!(h.worker.paused(), 0);
    h.tick();
    assert_eq!(h.host.metric("callout_failures"), 1);
}

#[test]
fn concurrent_lookups_of_one_token_share_one_callout() {
    let mut h = Harness::get(&[GET]);
    for id in 10..18 {
        assert_eq!(h.request(id, "/x?access_token=same", &[]), Action::Pause);
    }
    assert_eq!(h.host.callouts.len(), 1, "eight requests, one callout");
    assert_eq!(h.worker.paused(), 8);
    let token = h.last_callout().token;
    h.respond(token, Some(200), &profile("same", json!({})));
    for id in 10..18 {
        assert_eq!(h.req(id).resumed, 1, "request {id}");
        assert_eq!(
            h.req(id).state("oauthv2accesstoken.G.client_id").as_deref(),
            Some("app")
        );
    }
    assert_eq!(h.worker.paused(), 0);
    assert_eq!(
        h.host.active, 10,
        "the callback's own context is active again"
    );
}

/// The map that coalesces lookups is keyed by what the host drew once, at
/// the first configuration, and keeps those keys on a reload (its
/// entries stay findable).
#[test]
fn the_coalescing_map_is_keyed_by_the_hosts_random_keys_drawn_once() {
    let mut h = Harness::get(&[GET]);
    assert_eq!(h.worker.inflight_keys(), FAKE_KEYS);
    assert_eq!(h.host.count("random_keys"), 1);
    assert_eq!(h.request(10, "/x?access_token=same", &[]), Action::Pause);
    let config = json!({"policies": [GET]}).to_string();
    assert!(h.worker.configure(&mut h.host, config.as_bytes()));
    assert_eq!(h.host.count("random_keys"), 1, "not drawn again");
    assert_eq!(h.request(11, "/x?access_token=same", &[]), Action::Pause);
    assert_eq!(
        h.host.callouts.len(),
        1,
        "the second request waits on the first's callout"
    );
}

#[test]
fn the_waiters_of_a_cancelled_leader_send_their_own_lookup_through_the_root() {
    let mut h = Harness::get(&[GET]);
    h.request(10, "/x?access_token=same", &[]);
    h.request(11, "/x?access_token=same", &[]);
    h.request(12, "/x?access_token=same", &[]);
    assert_eq!(h.host.callouts.len(), 1);
    // The leader's client goes away: the host cancels its callout.
    h.end(10);
    assert_eq!(h.host.tick_ms, 1, "the root's tick is hurried");
    h.tick();
    assert_eq!(h.host.callouts.len(), 2, "one new callout for both waiters");
    let resend = h.last_callout().clone();
    assert_eq!(resend.context, ROOT, "sent by the root context");
    assert_eq!(h.host.tick_ms, TICK_MS);
    h.respond(resend.token, Some(200), &profile("same", json!({})));
    assert_eq!(h.req(11).resumed, 1);
    assert_eq!(h.req(12).resumed, 1);
    assert_eq!(
        h.req(12).state("oauthV2.G.failed").as_deref(),
        Some("false")
    );
    assert_eq!(h.worker.paused(), 0);
    // An answer for a request that ended is dropped quietly.
    h.request(20, "/x?access_token=other", &[]);
    let token = h.last_callout().token;
    h.end(20);
    h.respond(token, Some(200), &profile("other", json!({})));
    assert_eq!(h.req(20).resumed, 0);
}

#[test]
fn a_waiter_that_needs_a_second_callout_defers_it_to_the_root() {
    let second = r#"<GetOAuthV2Info name="C"><ClientId ref="oauthv2accesstoken.G.client_id"/></GetOAuthV2Info>"#;
    let mut h = Harness::get(&[GET, second]);
    h.request(10, "/x?access_token=t", &[]);
    h.request(11, "/x?access_token=t", &[]);
    let token = h.last_callout().token;
    h.respond(token, Some(200), &profile("t", json!({})));
    // The leader sends its client lookup itself; the waiter, resumed in
    // the leader's callback, joins it (same client id).
    assert_eq!(h.host.callouts.len(), 2);
    assert_eq!(h.last_callout().context, 10);
    assert_eq!(
        h.last_callout().body,
        b"token=app&token_type_hint=client_id"
    );
    let client =
        json!({"active": true, "profile": {"client_id": "app", "developer.app.name": "weather"}})
            .to_string();
    let token = h.last_callout().token;
    h.respond(token, Some(200), &client);
    for id in [10, 11] {
        assert_eq!(h.req(id).resumed, 1);
        assert_eq!(
            h.req(id)
                .state("oauthv2client.C.developer.app.name")
                .as_deref(),
            Some("weather")
        );
    }
}

#[test]
fn set_then_get_sees_the_update_and_a_slow_introspection_cannot_overwrite_it() {
    let set = r#"<SetOAuthV2Info name="S"><AccessToken ref="request.queryparam.access_token"/><Attributes><Attribute name="dept" ref="request.queryparam.dept"/></Attributes></SetOAuthV2Info>"#;
    let mut h = Harness::get(&[GET, set]);
    // A first request starts an introspection that will answer late.
    h.request(10, "/x?access_token=t", &[]);
    let slow = h.last_callout().token;
    // Meanwhile another request on another token warms nothing; a third
    // one (coalesced waiters aside) updates t through the attribute API.
    h.host.now = NOW + 10;
    let mut other = Harness::get(&[GET, set]);
    std::mem::swap(&mut other.host.shared, &mut h.host.shared);
    other.request(20, "/x?access_token=t&dept=7", &[]);
    let t = other.last_callout().token;
    other.respond(t, Some(200), &profile("t", json!({})));
    let update = other.last_callout().clone();
    assert!(update
        .headers
        .contains(&(":path".into(), "/v1/accesstokens/attributes".into())));
    assert_eq!(
        serde_json::from_slice::<Value>(&update.body).unwrap(),
        json!({"token": "t", "attributes": [{"name": "dept", "value": "7"}]})
    );
    other.respond(update.token, Some(200), &profile("t", json!({"dept": "7"})));
    assert_eq!(other.req(20).resumed, 1);
    assert_eq!(
        other.req(20).state("oauthv2accesstoken.S.dept").as_deref(),
        Some("7")
    );
    std::mem::swap(&mut other.host.shared, &mut h.host.shared);
    // The slow answer (without dept) arrives now: it must not overwrite.
    h.host.now = NOW + 20;
    h.respond(slow, Some(200), &profile("t", json!({})));
    h.host.now = NOW + 30;
    h.request(11, "/x?access_token=t", &[]);
    assert_eq!(
        h.req(11)
            .state("oauthv2accesstoken.G.accesstoken.dept")
            .as_deref(),
        Some("7")
    );
}

#[test]
fn request_headers_are_set_and_client_copies_never_reach_the_upstream() {
    let mut h = Harness::new(json!({"policies": [GET], "request_headers": {
        "x-email": "oauthv2accesstoken.G.developer.email",
        "x-dept": "oauthv2accesstoken.G.accesstoken.dept",
        "x-value": "request.queryparam.v"}}));
    // Hit path after a warm-up.
    h.request(9, "/x?access_token=t", &[]);
    let token = h.last_callout().token;
    h.respond(token, Some(200), &profile("t", json!({})));
    h.request(
        10,
        "/x?access_token=t&v=%04bad",
        &[
            ("x-email", "forged"),
            ("X-Dept", "forged"),
            ("x-value", "forged"),
        ],
    );
    let r = h.req(10);
    assert_eq!(r.header("x-email").as_deref(), Some("dev@example.com"));
    assert_eq!(
        r.header("x-dept"),
        None,
        "no such attribute: the client's copy is removed"
    );
    assert_eq!(
        r.header("x-value"),
        None,
        "a control character: not set, and the copy removed"
    );
    assert_eq!(
        r.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("x-email"))
            .count(),
        1
    );
    h.tick();
    assert_eq!(h.host.metric("request_headers_refused"), 1);
    // A policy never reads the client's copy of a mapped header.
    let reads =
        r#"<GetOAuthV2Info name="R"><AccessToken ref="request.header.x-email"/></GetOAuthV2Info>"#;
    let mut h = Harness::new(
        json!({"policies": [reads], "request_headers": {"x-email": "oauthv2accesstoken.R.developer.email"}}),
    );
    assert_eq!(
        h.request(10, "/x", &[("x-email", "forged-token")]),
        Action::Pause
    );
    assert!(h.host.callouts.is_empty());
    assert_eq!(h.req(10).reply.as_ref().map(|r| r.0), Some(500));
}

#[test]
fn header_to_metadata_mode_adds_internal_headers_with_raw_values() {
    let mut h = Harness::new(
        json!({"policies": [GET], "metadata_bridge": "header_to_metadata",
        "publish": ["oauthv2accesstoken.*.scope", "oauthv2accesstoken.*.organization_name",
                    "oauthv2accesstoken.*.accesstoken.**", "oauthV2.**", "fault.name"]}),
    );
    let headers = h.worker.config().unwrap().metadata.headers.clone();
    let meta = |suffix: &str| {
        headers
            .iter()
            .find(|m| m.key.ends_with(suffix))
            .unwrap()
            .clone()
    };
    let (scope, org, failed) = (meta(".scope"), meta(".organization_name"), meta(".failed"));
    h.request(9, "/x?access_token=t", &[]);
    let token = h.last_callout().token;
    let mut answer: Value = serde_json::from_str(&profile("t", json!({"dept": "42"}))).unwrap();
    answer["profile"]["scope"] = json!(" READ\u{1} ");
    answer["profile"]["organization_name"] = json!("");
    h.respond(token, Some(200), &answer.to_string());
    h.request(10, "/x?access_token=t", &[]);
    let r = h.req(10);
    // Values as they are (header_to_metadata reads them raw), even with
    // spaces and control characters; an empty one through its companion.
    assert_eq!(r.header(&scope.header).as_deref(), Some(" READ\u{1} "));
    // An empty value: this chain has the Lua bridge (custom attributes are
    // published), so it carries it (header_to_metadata sets no empty string).
    assert_eq!(r.header(&org.header), None);
    assert_eq!(r.header(&org.empty_header), None);
    assert_eq!(r.header(&failed.header).as_deref(), Some("false"));
    // Internal headers only a fault reply carries are not request rules,
    // and none is set for them.
    assert!(!meta("fault.cause").on_request);
    assert_eq!(r.header(&meta("fault.cause").header), None);
    // The custom attribute's name was not known at load time: Lua bridge.
    let (_, pairs) =
        crate::publish::decode_bridge(r.state(METADATA_BRIDGE_KEY).unwrap().as_bytes()).unwrap();
    assert_eq!(
        pairs,
        [
            (
                "oauthv2accesstoken.G.organization_name".to_string(),
                String::new()
            ),
            (
                "oauthv2accesstoken.G.accesstoken.dept".to_string(),
                "42".to_string()
            )
        ]
    );
    // A fault reply carries the fault variables as internal response headers.
    h.request(11, "/x?access_token=nope", &[]);
    let token = h.last_callout().token;
    h.respond(token, Some(200), UNKNOWN);
    let (_, reply_headers, _) = h.req(11).reply.clone().unwrap();
    let reply: std::collections::HashMap<String, String> = reply_headers
        .iter()
        .filter_map(|(k, v)| {
            let key = headers.iter().find(|m| m.header == *k)?.key.clone();
            Some((key, String::from_utf8(v.clone()).ok()?))
        })
        .collect();
    assert_eq!(
        reply.get("fault.name").map(String::as_str),
        Some("invalid_access_token")
    );
    assert_eq!(
        reply.get("oauthV2.G.fault.cause").map(String::as_str),
        Some("Invalid Access Token")
    );
    assert_eq!(
        reply.get("oauthV2.G.failed").map(String::as_str),
        Some("true")
    );
}

#[test]
fn without_the_lua_bridge_an_empty_value_goes_through_its_companion_header() {
    let mut h = Harness::new(
        json!({"policies": [GET], "metadata_bridge": "header_to_metadata",
        "publish": ["oauthv2accesstoken.*.organization_name"]}),
    );
    let config = h.worker.config().unwrap().clone();
    assert!(config.metadata.empty_companions && !config.metadata.needs_lua);
    let org = config.metadata.headers[0].clone();
    h.request(9, "/x?access_token=t", &[]);
    let token = h.last_callout().token;
    let mut answer: Value = serde_json::from_str(&profile("t", json!({}))).unwrap();
    answer["profile"]["organization_name"] = json!("");
    h.respond(token, Some(200), &answer.to_string());
    let r = h.req(9);
    assert_eq!(r.header(&org.header), None);
    assert_eq!(r.header(&org.empty_header).as_deref(), Some("GgA"));
    assert_eq!(r.state(METADATA_BRIDGE_KEY), None, "no Lua bridge entry");
}

#[test]
fn form_parameters_come_from_the_before_filter_and_an_empty_body_is_an_empty_form() {
    let form =
        r#"<GetOAuthV2Info name="F"><AccessToken ref="request.formparam.t"/></GetOAuthV2Info>"#;
    let mut h = Harness::get(&[form]);
    h.host.requests.insert(
        10,
        FakeRequest {
            headers: vec![
                (":path".into(), b"/".to_vec()),
                (
                    "content-type".into(),
                    b"application/x-www-form-urlencoded".to_vec(),
                ),
            ],
            properties: [(
                "metadata.filter_metadata.oauthv2info.form_body".to_string(),
                b"t=formtok".to_vec(),
            )]
            .into(),
            ..FakeRequest::default()
        },
    );
    h.host.active = 10;
    assert_eq!(
        h.worker.on_request_headers(&mut h.host, 10, false),
        Action::Pause
    );
    assert_eq!(
        h.last_callout().body,
        b"token=formtok&token_type_hint=access_token"
    );
    // No body at all: the form is empty; no property is read.
    h.host.requests.insert(
        11,
        FakeRequest {
            headers: vec![
                (":path".into(), b"/".to_vec()),
                (
                    "content-type".into(),
                    b"application/x-www-form-urlencoded".to_vec(),
                ),
            ],
            ..FakeRequest::default()
        },
    );
    h.host.active = 11;
    h.host.calls.clear();
    assert_eq!(
        h.worker.on_request_headers(&mut h.host, 11, true),
        Action::Pause
    );
    assert_eq!(h.host.count("property"), 0);
    assert_eq!(h.req(11).reply.as_ref().map(|r| r.0), Some(500));
}

#[test]
fn the_filter_answers_500_until_it_is_configured() {
    let mut host: FakeHost = FakeHost {
        active: 10,
        ..FakeHost::default()
    };
    let mut worker = Worker::new(ROOT);
    assert!(!worker.configure(&mut host, b"{\"policies\": []}"));
    assert_eq!(
        worker.on_request_headers(&mut host, 10, true),
        Action::Pause
    );
    assert_eq!(
        host.requests
            .get(&10)
            .expect("a request")
            .reply
            .as_ref()
            .map(|r| r.0),
        Some(500)
    );
}

// ------------------------------------------------ the warm path's cost

/// Warms the cache for `token` and returns the harness.
fn warm(plugin: Value, token: &str) -> Harness {
    let mut h = Harness::new(plugin);
    h.request(9, &format!("/x?access_token={token}"), &[]);
    let t = h.last_callout().token;
    h.respond(
        t,
        Some(200),
        &profile(
            token,
            json!({"department.id": "42", "region": "eu-west", "plan": "premium"}),
        ),
    );
    h.request(8, &format!("/x?access_token={token}"), &[]);
    h
}

#[test]
fn a_warm_hit_makes_these_host_calls_and_no_more() {
    let mut h = warm(json!({"policies": [GET]}), "tok");
    h.host.calls.clear();
    assert_eq!(h.request(10, "/x?access_token=tok", &[]), Action::Continue);
    let published = h.req(10).filter_state.len();
    let mut calls: Vec<(&str, usize)> = Vec::new();
    for c in &h.host.calls {
        match calls.iter_mut().find(|(n, _)| n == c) {
            Some(e) => e.1 += 1,
            None => calls.push((c, 1)),
        }
    }
    // The clock, :path, one cache slot; one filter-state write per published
    // variable (the 8 standard ones this profile has and are not secrets,
    // 3 custom attributes, failed) and the bridge entry.
    assert_eq!(
        calls,
        [
            ("now_ms", 1),
            ("request_header", 1),
            ("shared_data", 1),
            ("set_filter_state", published)
        ]
    );
    assert_eq!(published, 8 + 3 + 1 + 1);

    // Narrowed: three variables, to filter state and header_to_metadata,
    // and three request headers.
    let narrow = json!({"policies": [GET], "metadata_bridge": "header_to_metadata",
        "publish": ["oauthv2accesstoken.*.client_id", "oauthv2accesstoken.*.scope", "oauthv2accesstoken.*.developer.email"],
        "request_headers": {"x-a": "oauthv2accesstoken.G.client_id", "x-b": "oauthv2accesstoken.G.scope", "x-c": "oauthv2accesstoken.G.developer.email"}});
    let mut h = warm(narrow, "tok");
    h.host.calls.clear();
    assert_eq!(h.request(10, "/x?access_token=tok", &[]), Action::Continue);
    assert_eq!(h.host.count("set_filter_state"), 3);
    assert_eq!(
        h.host.count("add_request_header"),
        3,
        "three metadata headers"
    );
    assert_eq!(
        h.host.count("set_request_header"),
        3,
        "three mapped headers"
    );
    assert_eq!(h.host.count("remove_request_header"), 0);
    assert_eq!(h.host.calls.len(), 3 + 3 + 3 + 3);
}

#[test]
fn a_warm_hit_allocates_nothing_beyond_the_host_buffers() {
    for plugin in [
        json!({"policies": [GET]}),
        json!({"policies": [GET], "metadata_bridge": "header_to_metadata"}),
        json!({"policies": [GET], "metadata_bridge": "header_to_metadata",
               "publish": ["oauthv2accesstoken.*.scope"],
               "request_headers": {"x-a": "oauthv2accesstoken.G.client_id"}}),
        // Step conditions, a true one (a regex, a path pattern, an earlier
        // policy's variable) and a false one, evaluate without allocating.
        json!({"policies": [
            {"policy": GET, "condition": "request.queryparam.access_token ~~ \"[a-z]+\" and request.path MatchesPath \"/*\""},
            {"policy": "<SetOAuthV2Info name='S'><AccessToken ref='request.queryparam.access_token'/><Attributes><Attribute name='a'>b</Attribute></Attributes></SetOAuthV2Info>",
             "condition": "oauthv2accesstoken.G.scope != \"READ WRITE\" or request.queryparam.dept = \"never\""}]}),
    ] {
        let mut h = warm(plugin.clone(), "tok");
        // Warm the buffers with one more request, then count.
        h.request(10, "/x?access_token=tok", &[]);
        h.host.requests.insert(
            11,
            FakeRequest {
                headers: vec![(":path".into(), b"/x?access_token=tok".to_vec())],
                ..FakeRequest::default()
            },
        );
        h.host.active = 11;
        let (worker, host) = (&mut h.worker, &mut h.host);
        TRACE.store(
            std::env::var_os("ALLOC_TRACE").is_some(),
            std::sync::atomic::Ordering::Relaxed,
        );
        let n = allocations(|| {
            assert_eq!(worker.on_request_headers(host, 11, true), Action::Continue);
        });
        assert_eq!(n, 0, "{plugin}");
        assert!(!h.req(11).filter_state.is_empty());
    }
}

mod budget;
mod feed;
mod products;
