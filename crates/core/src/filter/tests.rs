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

// SAFETY: delegates to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
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
        // SAFETY: the caller's layout is passed on as it is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr came from System.alloc with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
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
    let reply: HashMap<String, String> = reply_headers
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

// ------------------------------------------------ cache invalidation

const FEED_POLL_MS: u32 = 200;

fn invalidating() -> Value {
    json!({"policies": [GET],
           "token_service": {"cluster": "ts", "credentials": "Bearer k", "timeout_ms": 500},
           "cache": {"ttl_ms": 300_000,
                     "invalidation": {"poll_ms": FEED_POLL_MS, "max_stale_ms": 1_000}}})
}

fn feed_page(changes: &[(&str, &str)], next: i64) -> String {
    let list: Vec<Value> = changes
        .iter()
        .enumerate()
        .map(|(i, (kind, token))| {
            let kind = oauthv2info_names::TokenKind::from_hint(kind).unwrap();
            json!({"cursor": next - (changes.len() - 1 - i) as i64, "kind": kind.hint(),
                   "hash": oauthv2info_names::token_hash_hex(kind, token.as_bytes()), "op": "revoke"})
        })
        .collect();
    json!({"changes": list, "next": next, "oldest": 1}).to_string()
}

impl Harness {
    /// The last callout's `:path`.
    fn last_path(&self) -> String {
        self.last_callout()
            .headers
            .iter()
            .find(|(k, _)| k == ":path")
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    /// A tick whose poll (the harness's poller holds the lease) gets `body`.
    fn poll_answered(&mut self, status: u16, body: &str) {
        let before = self.host.callouts.len();
        self.tick();
        assert_eq!(self.host.callouts.len(), before + 1, "the tick polls");
        assert!(
            self.last_path().starts_with("/v1/changes?after="),
            "{}",
            self.last_path()
        );
        let token = self.last_callout().token;
        self.respond(token, Some(status), body);
    }

    /// A request for `token` that is answered by the fake token service
    /// (when it calls out): true when it was a hit.
    fn lookup(&mut self, id: u32, token: &str) -> bool {
        let before = self.host.callouts.len();
        let action = self.request(id, &format!("/x?access_token={token}"), &[]);
        if action == Action::Continue && self.host.callouts.len() == before {
            return true;
        }
        let t = self.last_callout().token;
        self.respond(t, Some(200), &profile(token, json!({})));
        false
    }
}

#[test]
fn one_poller_per_envoy_reads_the_feed_from_its_cursor() {
    let mut h = Harness::new(invalidating());
    assert_eq!(
        h.host.tick_ms, FEED_POLL_MS,
        "the tick runs at the poll period"
    );
    h.poll_answered(200, &feed_page(&[], 0));
    let callout = h.host.callouts.last().unwrap().clone();
    let header = |n: &str| {
        callout
            .headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header(":method").as_deref(), Some("GET"));
    assert_eq!(
        header(":path").as_deref(),
        Some("/v1/changes?after=0&limit=500")
    );
    assert_eq!(header("authorization").as_deref(), Some("Bearer k"));

    // A second VM (another worker) on the same Envoy: the lease is taken,
    // it does not poll; it learns the feed's state from the record.
    let mut other = Worker::new(ROOT);
    assert!(other.configure(&mut h.host, invalidating().to_string().as_bytes()));
    let before = h.host.callouts.len();
    other.on_tick(&mut h.host);
    assert_eq!(h.host.callouts.len(), before, "one poller per Envoy");
    assert_ne!(other.feed.me, h.worker.feed.me);
    assert_eq!(
        other.feed.view.fresh_ms, NOW,
        "up to date as of the first poll"
    );

    // Every poll_ms, from the cursor the feed gave.
    h.host.now += i64::from(FEED_POLL_MS);
    h.poll_answered(200, &feed_page(&[("access_token", "x")], 41));
    assert!(h.last_path().ends_with("after=0&limit=500"));
    let polls = h.host.callouts.len();
    h.tick();
    assert_eq!(h.host.callouts.len(), polls, "poll_ms not yet passed");
    h.host.now += i64::from(FEED_POLL_MS);
    h.poll_answered(200, &feed_page(&[], 41));
    assert_eq!(h.last_path(), "/v1/changes?after=41&limit=500");

    // The poller stops (its VM is gone): once its lease lapses, the other
    // takes over, from the same cursor.
    h.host.now += 10_000;
    other.on_tick(&mut h.host);
    assert_eq!(h.last_path(), "/v1/changes?after=41&limit=500");
    assert_eq!(h.last_callout().context, ROOT);
}

/// Polls keep to `poll_ms` from one send to the next, whatever the delay
/// of the answer (150 ms here), and a tick that fires a little early still polls (a 1 s
/// poll on a 1 s tick ran every other tick when the period counted from
/// the answer: revocations took up to 2 s instead of poll_ms + a call).
#[test]
fn polls_keep_their_period_from_send_to_send() {
    let mut h = Harness::new(invalidating());
    h.poll_answered(200, &feed_page(&[], 0));
    let mut sent = h.host.now;
    for _ in 0..3 {
        h.host.now = sent + i64::from(FEED_POLL_MS) - 3;
        let before = h.host.callouts.len();
        h.tick();
        assert_eq!(h.host.callouts.len(), before + 1, "the tick polls");
        sent = h.host.now;
        let token = h.last_callout().token;
        h.host.now = sent + 150;
        h.respond(token, Some(200), &feed_page(&[], 0));
    }
    // Not long before it is due.
    h.host.now = sent + i64::from(FEED_POLL_MS) / 4;
    let before = h.host.callouts.len();
    h.tick();
    assert_eq!(h.host.callouts.len(), before, "poll_ms has not passed");
}

#[test]
fn a_changed_token_is_looked_up_again_and_others_stay_cached() {
    let mut h = Harness::new(invalidating());
    h.poll_answered(200, &feed_page(&[], 0));
    assert!(!h.lookup(10, "tok-a"));
    assert!(!h.lookup(11, "tok-b"));
    assert!(h.lookup(12, "tok-a"), "cached");
    h.host.now += i64::from(FEED_POLL_MS);
    h.poll_answered(200, &feed_page(&[("access_token", "tok-a")], 5));
    h.tick();
    assert_eq!(h.host.metric("feed.invalidations"), 1);
    // (A callout sent in the millisecond a change was applied may have
    // been sent before it: its answer is not cached. The clock moves on.)
    h.host.now += 1;
    assert!(!h.lookup(13, "tok-a"), "dropped: a callout");
    assert!(h.lookup(14, "tok-a"), "cached again");
    assert!(h.lookup(15, "tok-b"), "another token stays");
    // A change to a token this Envoy never cached writes nothing.
    let writes = h.host.count("set_shared_data");
    h.host.now += i64::from(FEED_POLL_MS);
    h.poll_answered(200, &feed_page(&[("access_token", "never-seen")], 6));
    assert_eq!(
        h.host.count("set_shared_data") - writes,
        2,
        "the lease and the record, no tombstone"
    );
}

#[test]
fn no_hit_is_served_once_the_feed_is_stale_and_hits_resume_with_it() {
    let mut h = Harness::new(invalidating());
    assert!(!h.lookup(10, "tok"), "the feed never read: no hit");
    assert!(!h.lookup(11, "tok"), "still no hit before the first poll");
    h.poll_answered(200, &feed_page(&[], 0));
    assert!(h.lookup(12, "tok"));
    // The token service stops answering the feed.
    for _ in 0..5 {
        h.host.now += i64::from(FEED_POLL_MS);
        h.poll_answered(503, r#"{"error":"store_unavailable"}"#);
    }
    assert_eq!(h.host.now, NOW + 1_000);
    h.tick();
    assert!(h.host.metric("feed.errors") >= 5);
    assert!(!h.lookup(13, "tok"), "max_stale_ms passed: a callout");
    h.tick();
    assert!(h.host.metric("cache.stale") >= 1);
    // The feed answers again: hits resume.
    h.host.now += i64::from(FEED_POLL_MS);
    h.poll_answered(200, &feed_page(&[], 0));
    assert!(h.lookup(14, "tok"));
}

#[test]
fn a_full_page_is_followed_at_once_and_hits_wait_until_the_end() {
    let mut plugin = invalidating();
    plugin["cache"]["invalidation"]["limit"] = json!(2);
    let mut h = Harness::new(plugin);
    h.poll_answered(
        200,
        &feed_page(&[("access_token", "a"), ("access_token", "b")], 2),
    );
    // A full page: the next one is asked for at once, not on the tick.
    assert_eq!(h.last_path(), "/v1/changes?after=2&limit=2");
    assert_eq!(h.worker.feed.view.fresh_ms, i64::MIN, "not up to date yet");
    let token = h.last_callout().token;
    h.respond(token, Some(200), &feed_page(&[("access_token", "c")], 3));
    assert_eq!(h.worker.feed.view.fresh_ms, NOW);
}

#[test]
fn a_410_drops_the_whole_cache_and_reads_the_feed_again() {
    let mut h = Harness::new(invalidating());
    h.poll_answered(200, &feed_page(&[], 7));
    assert!(!h.lookup(10, "tok"));
    assert!(h.lookup(11, "tok"));
    h.host.now += i64::from(FEED_POLL_MS);
    h.poll_answered(410, r#"{"error":"cursor_expired","oldest":100}"#);
    assert_eq!(h.host.metric("feed.resets"), 0, "counted on the tick");
    assert_eq!(
        h.last_path(),
        "/v1/changes?after=0&limit=500",
        "from the start, at once"
    );
    let token = h.last_callout().token;
    h.respond(token, Some(200), &feed_page(&[], 120));
    h.tick();
    assert_eq!(h.host.metric("feed.resets"), 1);
    assert!(!h.lookup(12, "tok"), "older than the 410: not served");
    assert!(h.lookup(13, "tok"), "cached again after it");
}

#[test]
fn an_answer_sent_before_a_change_was_applied_is_not_cached() {
    let mut h = Harness::new(invalidating());
    h.poll_answered(200, &feed_page(&[], 0));
    // A lookup goes out; the token is revoked; the poller applies the
    // change (the slot is empty: nothing to drop); then the old answer
    // arrives: it answers its request but is not cached.
    assert_eq!(h.request(10, "/x?access_token=tok", &[]), Action::Pause);
    let lookup = h.last_callout().token;
    h.host.now += i64::from(FEED_POLL_MS);
    h.poll_answered(200, &feed_page(&[("access_token", "tok")], 1));
    h.host.now += 5;
    h.respond(lookup, Some(200), &profile("tok", json!({})));
    assert_eq!(h.req(10).resumed, 1, "the request goes on");
    assert!(!h.lookup(11, "tok"), "but the next one asks again");
    assert!(h.lookup(12, "tok"));
}

#[test]
fn feed_configuration_errors_name_the_field() {
    for (invalidation, field) in [
        (json!({"poll_ms": 50}), "cache.invalidation.poll_ms"),
        (
            json!({"poll_ms": 1000, "max_stale_ms": 1500}),
            "cache.invalidation.max_stale_ms",
        ),
        (json!({"path": "v1/changes"}), "cache.invalidation.path"),
        (
            json!({"path": "/v1/changes?x=1"}),
            "cache.invalidation.path",
        ),
        (json!({"limit": 0}), "cache.invalidation.limit"),
        (json!({"every": 1}), "cache.invalidation.every"),
        (json!(true), "cache.invalidation"),
    ] {
        let e = parse_config(
            json!({"policies": [GET], "cache": {"invalidation": invalidation}})
                .to_string()
                .as_bytes(),
        )
        .unwrap_err();
        assert_eq!(e.element, field, "{e}");
    }
    let e = parse_config(
        json!({"policies": [GET], "cache": {"enabled": false, "invalidation": {}}})
            .to_string()
            .as_bytes(),
    )
    .unwrap_err();
    assert_eq!(e.element, "cache.invalidation");
    let c = parse_config(
        json!({"policies": [GET], "cache": {"invalidation": {}}})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    let inv = c.cache.invalidation.unwrap();
    assert_eq!(
        (inv.path.as_str(), inv.poll_ms, inv.max_stale_ms, inv.limit),
        ("/v1/changes", 1000, 5000, 500)
    );
}

#[test]
fn a_call_no_token_service_answered_is_sent_again_within_its_timeout() {
    let mut h = Harness::get(&[GET]);
    assert_eq!(h.request(10, "/x?access_token=tok", &[]), Action::Pause);
    let first = h.last_callout().clone();
    // Envoy's own 503 (the connection to that host failed): sent again at
    // once, from the request's context.
    h.respond(
        first.token,
        Some(503),
        "upstream connect error or disconnect/reset before headers. reset reason: connection failure",
    );
    assert_eq!(h.host.callouts.len(), 2, "sent again");
    let second = h.last_callout().clone();
    assert_eq!(second.body, first.body);
    assert_eq!(second.context, 10);
    // A reset after the call was sent (the replica died holding it): sent
    // again after a pause, by the root's tick.
    h.respond(
        second.token,
        Some(503),
        "upstream connect error or disconnect/reset before headers. reset reason: connection termination",
    );
    assert_eq!(h.host.callouts.len(), 2, "not at once");
    h.tick();
    assert_eq!(h.host.callouts.len(), 2, "not before the pause");
    h.host.now += 5;
    h.tick();
    assert_eq!(h.host.callouts.len(), 3, "after it");
    assert_eq!(h.last_callout().body, first.body);
    h.respond(
        h.last_callout().token,
        Some(200),
        &profile("tok", json!({})),
    );
    assert_eq!(h.req(10).resumed, 1);
    assert_eq!(
        h.req(10).state("oauthv2accesstoken.G.scope").as_deref(),
        Some("READ WRITE")
    );

    // A replica that refuses every call: sent again while the timeout (500
    // ms by default, from the first send) lasts, at most 8 times; then the
    // request fails. A reset (no status) counts too.
    let start = h.host.now;
    assert_eq!(h.request(11, "/x?access_token=other", &[]), Action::Pause);
    let n = h.host.callouts.len();
    let mut again = 0;
    while h.fail_once(11, None, "") {
        again += 1;
    }
    // Pauses 0+5+10+20+40+80+160 ms; the next (320) would pass 500 ms.
    assert_eq!(again, 7);
    assert_eq!(h.host.callouts.len(), n + 7);
    assert!(h.host.now - start < 500);
    assert_eq!(
        h.req(11).reply_json()["fault"]["detail"]["errorcode"],
        "keymanagement.service.token_service_unavailable"
    );
    // A request that ends while its call waits to be sent again: never sent.
    assert_eq!(h.request(12, "/x?access_token=third", &[]), Action::Pause);
    h.respond(h.last_callout().token, None, "");
    h.respond(h.last_callout().token, None, "");
    let n = h.host.callouts.len();
    h.end(12);
    h.host.now += 1_000;
    h.tick();
    assert_eq!(h.host.callouts.len(), n);
    assert_eq!(h.worker.paused(), 0);

    // The token service's own 503, a timeout, and the cluster's circuit
    // breaker refusing the call (another would be refused too) are not
    // sent again.
    for (status, body) in [
        (Some(503), r#"{"error":"store_unavailable"}"#),
        (Some(504), "upstream request timeout"),
        (
            Some(503),
            "upstream connect error or disconnect/reset before headers. reset reason: overflow",
        ),
    ] {
        let n = h.host.callouts.len();
        let id = 20 + n as u32;
        assert_eq!(
            h.request(id, &format!("/x?access_token=t{n}"), &[]),
            Action::Pause
        );
        assert!(!h.fail_once(id, status, body), "{status:?}: not sent again");
        assert_eq!(h.host.callouts.len(), n + 1);
        assert!(h.req(id).reply.is_some());
    }
}

#[test]
fn a_first_start_begins_at_the_feeds_head() {
    let mut h = Harness::new(invalidating());
    // A lookup before the first poll: cached, but not served (and older
    // than the poll's answer, so dropped with everything before the head).
    assert!(!h.lookup(10, "tok"));
    h.host.now += 5;
    let body = json!({"changes": [
            {"cursor": 1, "kind": "access_token", "hash": oauthv2info_names::token_hash_hex(TokenKind::AccessToken, b"tok"), "op": "import"}],
        "next": 1, "oldest": 1, "head": 9_000}).to_string();
    h.poll_answered(200, &body);
    assert_eq!(
        h.host.metric("feed.invalidations"),
        0,
        "the backlog is not read"
    );
    h.host.now += i64::from(FEED_POLL_MS);
    h.poll_answered(200, &feed_page(&[], 9_000));
    assert_eq!(
        h.last_path(),
        "/v1/changes?after=9000&limit=500",
        "from the head on"
    );
    h.host.now += 1;
    assert!(
        !h.lookup(11, "tok"),
        "the entry from before the start is not served"
    );
    h.host.now += 1;
    assert!(h.lookup(12, "tok"));
}

// ------------------------------------------------ the lookup budget

/// A budget of 2 lookups, refilled at 10 a second.
fn budgeted() -> Harness {
    Harness::new(json!({"policies": [GET],
        "token_service": {"lookup_budget": {"per_second": 10, "burst": 2}}}))
}

fn refused(h: &Harness, id: u32) -> bool {
    h.req(id).reply.as_ref().is_some_and(|r| r.0 == 503)
        && h.req(id).state("fault.name").as_deref() == Some("token_service_unavailable")
}

#[test]
fn unseen_tokens_past_the_budget_fail_at_once_without_a_call() {
    let mut h = budgeted();
    assert_eq!(h.request(10, "/x?access_token=a", &[]), Action::Pause);
    assert_eq!(h.request(11, "/x?access_token=b", &[]), Action::Pause);
    assert_eq!(h.host.callouts.len(), 2);
    // The third unseen token: the budget is spent.
    assert_eq!(h.request(12, "/x?access_token=c", &[]), Action::Pause);
    assert_eq!(h.host.callouts.len(), 2, "no call");
    assert!(refused(&h, 12));
    assert_eq!(h.worker.paused(), 2);
    h.tick();
    assert_eq!(h.host.metric("lookups_refused"), 1);
    assert_eq!(h.host.metric("callout_failures"), 0);
    assert_eq!(h.host.metric("faults.token_service_unavailable"), 1);
    // A tenth of a second later, one more.
    h.host.now += 100;
    assert_eq!(h.request(13, "/x?access_token=d", &[]), Action::Pause);
    assert_eq!(h.host.callouts.len(), 3);
    assert_eq!(h.request(14, "/x?access_token=e", &[]), Action::Pause);
    assert!(refused(&h, 14));
}

#[test]
fn a_cached_or_once_seen_valid_token_is_never_refused() {
    let mut h = budgeted();
    h.request(10, "/x?access_token=good", &[]);
    h.respond(
        h.last_callout().token,
        Some(200),
        &profile("good", json!({})),
    );
    assert_eq!(h.req(10).resumed, 1);
    h.request(11, "/x?access_token=x1", &[]);
    h.request(12, "/x?access_token=x2", &[]);
    assert!(refused(&h, 12), "spent");
    // Cached: a hit.
    assert_eq!(h.request(13, "/x?access_token=good", &[]), Action::Continue);
    // Its entry expired (the TTL, 30 s by default), the budget spent:
    // looked up all the same, since this Envoy saw it valid.
    h.host.now += 30_001;
    for (id, token) in [(14, "y1"), (15, "y2")] {
        h.request(id, &format!("/x?access_token={token}"), &[]);
    }
    h.request(16, "/x?access_token=y3", &[]);
    assert!(refused(&h, 16), "spent again");
    let n = h.host.callouts.len();
    assert_eq!(h.request(17, "/x?access_token=good", &[]), Action::Pause);
    assert_eq!(h.host.callouts.len(), n + 1, "a lookup, not refused");
    // An unknown token's negative entry does not count as seen.
    h.request(18, "/x?access_token=nope", &[]);
    assert!(refused(&h, 18));
}

#[test]
fn coalesced_lookups_of_one_token_count_once() {
    let mut h = budgeted();
    for id in 10..15 {
        assert_eq!(h.request(id, "/x?access_token=same", &[]), Action::Pause);
    }
    assert_eq!(h.host.callouts.len(), 1, "one lookup");
    assert_eq!(h.request(15, "/x?access_token=other", &[]), Action::Pause);
    assert_eq!(h.host.callouts.len(), 2, "the budget's second");
    h.respond(h.host.callouts[0].token, Some(200), UNKNOWN);
    for id in 10..15 {
        assert!(!refused(&h, id), "{id}: the token's own answer");
        assert_eq!(
            h.req(id).state("fault.name").as_deref(),
            Some("invalid_access_token")
        );
    }
    // A call sent again after no answer is still the one lookup.
    h.respond(h.host.callouts[1].token, None, "");
    assert_eq!(h.host.callouts.len(), 3, "sent again, not refused");
}

#[test]
fn per_second_0_turns_the_budget_off() {
    let mut h = Harness::new(json!({"policies": [GET],
        "token_service": {"lookup_budget": {"per_second": 0}}}));
    for id in 10..2_010 {
        h.request(id, &format!("/x?access_token=t{id}"), &[]);
    }
    assert_eq!(h.host.callouts.len(), 2_000);
}

/// The API-product check through the worker: the warm hit reads `:path`
/// and `:method` only when the cached lookup carries products (a token
/// service without products costs no host call), and refuses a call no
/// product allows with Apigee's 401.
#[test]
fn the_product_check_reads_the_call_only_for_a_lookup_with_products() {
    const VERIFY: &str = r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation></OAuthV2>"#;
    let plugin = json!({"policies": [VERIFY], "basepath": "/v1", "proxy_name": "shop"});
    let products = json!([{"name": "viewer", "proxies": ["shop"], "resources": ["/items/*"]}]);
    let header_reads = |h: &Harness| {
        h.host
            .calls
            .iter()
            .filter(|c| **c == "request_header")
            .count()
    };
    for with_products in [false, true] {
        let mut h = Harness::new(plugin.clone());
        let mut answer: Value = serde_json::from_str(&profile("tok", json!({}))).unwrap();
        if with_products {
            answer["api_products"] = products.clone();
        }
        let bearer = [("authorization", "Bearer tok")];
        assert_eq!(h.request(2, "/v1/items/1", &bearer), Action::Pause);
        let token = h.last_callout().token;
        h.respond(token, Some(200), &answer.to_string());
        assert_eq!(h.req(2).resumed, 1, "with products: {with_products}");
        // Warm hits: the allowed path passes; with products, another is
        // refused.
        let before = header_reads(&h);
        assert_eq!(h.request(3, "/v1/items/2", &bearer), Action::Continue);
        let reads = header_reads(&h) - before;
        let refused = h.request(4, "/v1/orders/2", &bearer);
        if with_products {
            assert_eq!(refused, Action::Pause);
            let reply = h.req(4).reply.as_ref().expect("a reply");
            assert_eq!(reply.0, 401);
            assert_eq!(
                h.req(4).reply_json()["fault"]["detail"]["errorcode"],
                "keymanagement.service.InvalidAPICallAsNoApiProductMatchFound"
            );
        } else {
            assert_eq!(refused, Action::Continue);
        }
        // The authorization header, then :path and :method when the
        // lookup has products.
        assert_eq!(
            reads,
            if with_products { 3 } else { 1 },
            "with products: {with_products}"
        );
    }
}

/// A warm hit with the API-product check (the match read in place from
/// the cached profile, its variables and attributes published, the verbs
/// joined) allocates nothing beyond the host's buffers, for
/// VerifyAccessToken and VerifyAPIKey alike.
#[test]
fn a_warm_hit_with_the_product_check_allocates_nothing_beyond_the_host_buffers() {
    let products = json!([
        {"name": "legacy", "proxies": ["shop"], "resources": ["/orders/**"]},
        {"name": "viewer", "operation_configs": [{"api_source": "shop",
            "operations": [{"resource": "/items/*", "methods": ["GET", "HEAD"]}],
            "attributes": {"quota": "10"}}], "attributes": {"tier": "bronze"}}]);
    let verify = r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation></OAuthV2>"#;
    let key = r#"<VerifyAPIKey name="K"><APIKey ref="request.queryparam.apikey"/></VerifyAPIKey>"#;
    let mut token: Value = serde_json::from_str(&profile("tok", json!({"a": "1"}))).unwrap();
    token["api_products"] = products.clone();
    let key_answer = json!({"active": true, "client_id": "tok", "api_products": products,
        "profile": {"client_id": "tok", "client_secret": "s", "developer.app.name": "app",
                    "status": "approved", "key_status": "approved", "developer.status": "active",
                    "attributes": {"region": "eu"}}});
    for (policy, answer) in [(verify, token), (key, key_answer)] {
        let plugin = json!({"policies": [policy], "basepath": "/v1", "proxy_name": "shop"});
        let mut h = Harness::new(plugin);
        let headers = [("authorization", "Bearer tok")];
        let path = "/v1/items/1?apikey=tok";
        assert_eq!(h.request(2, path, &headers), Action::Pause);
        let t = h.last_callout().token;
        h.respond(t, Some(200), &answer.to_string());
        // Warm the buffers, then count.
        for id in [3, 4] {
            assert_eq!(h.request(id, path, &headers), Action::Continue, "{policy}");
        }
        let all: Vec<(String, Vec<u8>)> = vec![
            (":method".into(), b"GET".to_vec()),
            (":path".into(), path.as_bytes().to_vec()),
            ("authorization".into(), b"Bearer tok".to_vec()),
        ];
        h.host.requests.insert(
            5,
            FakeRequest {
                headers: all,
                ..FakeRequest::default()
            },
        );
        h.host.active = 5;
        let (worker, host) = (&mut h.worker, &mut h.host);
        let n = allocations(|| {
            assert_eq!(worker.on_request_headers(host, 5, true), Action::Continue);
        });
        assert_eq!(n, 0, "{policy}");
        let state = &h.req(5).filter_state;
        assert!(
            state.iter().any(|(k, _)| k.contains("apiproduct.name")),
            "{policy}: {state:?}"
        );
    }
}
