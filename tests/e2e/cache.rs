//! The shared profile cache, in the real Envoy: hits, the TTL bound on
//! revocation staleness, negative entries, read-your-writes after
//! SetOAuthV2Info, the size bound, and coalesced lookups.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::support::*;

const GET: &str =
    r#"<GetOAuthV2Info name="G"><AccessToken ref="request.queryparam.t"/></GetOAuthV2Info>"#;

fn stats(envoy: &Envoy) -> [u64; 5] {
    [
        "callouts",
        "cache.hits",
        "cache.misses",
        "cache.negative_hits",
        "cache.evictions",
    ]
    .map(|s| envoy.stat(&format!("wasmcustom.oauthv2info.{s}")))
}

#[test]
fn hits_and_the_ttl_bound_on_revocation() {
    // Long enough for the counter reads (each waits for the filter's
    // once-a-second hand-over of its counts) before the entry expires.
    const TTL: Duration = Duration::from_millis(6000);
    let stack = Stack::start_with(
        plugin(&[GET], json!({"cache": {"ttl_ms": TTL.as_millis() as u64}})),
        |s| s.concurrency = 1,
    );
    stack.service.create_app("c1", json!({}));
    stack
        .service
        .import_access_token("c1", "tok", "approved", 3600, json!({}));

    let stored = std::time::Instant::now();
    assert_eq!(stack.envoy.get("/?t=tok").status, 200);
    assert_eq!(stats(&stack.envoy)[..3], [1, 0, 1]);
    assert_eq!(stack.envoy.get("/?t=tok").status, 200);
    assert_eq!(
        stats(&stack.envoy)[..3],
        [1, 1, 1],
        "the second lookup is a hit"
    );

    // Revoked at the token service: served from the cache until the entry's
    // TTL runs out, then refused.
    stack.service.revoke("tok");
    assert_eq!(
        stack.service.introspect("tok", "access_token")["active"],
        false
    );
    assert_eq!(
        stack.envoy.get("/?t=tok").status,
        200,
        "stale within ttl_ms"
    );
    std::thread::sleep(
        (stored + TTL + Duration::from_millis(200))
            .saturating_duration_since(std::time::Instant::now()),
    );
    let r = stack.envoy.get("/?t=tok");
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(stats(&stack.envoy)[0], 2, "a new callout after the TTL");
}

#[test]
fn negative_entries_absorb_floods_of_unknown_tokens() {
    let stack = Stack::start_with(
        plugin(&[GET], json!({"cache": {"negative_ttl_ms": 4000}})),
        |s| s.concurrency = 1,
    );
    stack.service.create_app("c1", json!({}));
    let stored = std::time::Instant::now();
    for _ in 0..5 {
        assert_eq!(stack.envoy.get("/?t=later").status, 500);
    }
    let [callouts, _, _, negative_hits, _] = stats(&stack.envoy);
    assert_eq!((callouts, negative_hits), (1, 4));
    stack
        .service
        .import_access_token("c1", "later", "approved", 3600, json!({}));
    assert_eq!(
        stack.envoy.get("/?t=later").status,
        500,
        "still the negative entry"
    );
    std::thread::sleep(
        (stored + Duration::from_millis(4200)).saturating_duration_since(std::time::Instant::now()),
    );
    assert_eq!(stack.envoy.get("/?t=later").status, 200);
}

#[test]
fn set_updates_the_cached_profile() {
    let stack = Stack::start_with(
        plugin(
            &[
                GET,
                r#"<SetOAuthV2Info name="S"><AccessToken ref="request.queryparam.t"/><Attributes><Attribute name="dept" ref="request.queryparam.dept"/></Attributes></SetOAuthV2Info>"#,
            ],
            json!({"request_headers": {"x-dept": "oauthv2accesstoken.G.accesstoken.dept"}}),
        ),
        |s| s.concurrency = 1,
    );
    stack.service.create_app("c1", json!({}));
    stack
        .service
        .import_access_token("c1", "tok", "approved", 3600, json!({"dept": "1"}));

    let r = stack.envoy.get("/?t=tok");
    assert_eq!(r.upstream_header("x-dept").as_deref(), Some("1"));
    assert_eq!(
        stats(&stack.envoy)[0],
        1,
        "the Set with nothing to write was answered by the cache"
    );
    let r = stack.envoy.get("/?t=tok&dept=9");
    assert_eq!(
        r.upstream_header("x-dept").as_deref(),
        Some("1"),
        "G ran before S"
    );
    assert_eq!(stats(&stack.envoy)[0], 2, "one attribute update");
    let r = stack.envoy.get("/?t=tok");
    assert_eq!(
        r.upstream_header("x-dept").as_deref(),
        Some("9"),
        "read-your-writes"
    );
    assert_eq!(
        stats(&stack.envoy)[0],
        2,
        "served from the updated cache entry"
    );
}

#[test]
fn the_cache_is_bounded() {
    let stack = Stack::start_with(plugin(&[GET], json!({"cache": {"max_entries": 1}})), |s| {
        s.concurrency = 1
    });
    stack.service.create_app("c1", json!({}));
    for t in ["a", "b"] {
        stack
            .service
            .import_access_token("c1", t, "approved", 3600, json!({}));
    }
    for t in ["a", "b", "a", "b"] {
        assert_eq!(stack.envoy.get(&format!("/?t={t}")).status, 200);
    }
    let [callouts, hits, misses, _, evictions] = stats(&stack.envoy);
    assert_eq!(
        (callouts, hits, misses),
        (4, 0, 4),
        "one slot: each token evicts the other"
    );
    assert_eq!(evictions, 3);
    assert_eq!(stack.envoy.get("/?t=b").status, 200);
    assert_eq!(stats(&stack.envoy)[1], 1, "the last token stays cached");
}

/// A slow plain RFC 7662 service that counts the calls it gets.
fn counting_service(delay: Duration) -> (FakeService, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let fake = FakeService::start(delay, move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
        let body = r#"{"active":true,"client_id":"c","scope":"s"}"#;
        format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
            .into_bytes()
    });
    (fake, calls)
}

#[test]
fn concurrent_lookups_of_one_token_share_one_callout() {
    let (fake, calls) = counting_service(Duration::from_millis(400));
    let upstream = Upstream::start();
    let mut spec = EnvoySpec::new(plugin(&[GET], json!({})), Some(fake.port), upstream.port);
    spec.concurrency = 1;
    let envoy = Envoy::start(&spec);
    let port = envoy.port;
    let clients: Vec<_> = (0..8)
        .map(|_| std::thread::spawn(move || get(port, "/?t=shared").status))
        .collect();
    let statuses: Vec<u16> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    assert_eq!(statuses, vec![200; 8]);
    envoy.unsettle();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "8 concurrent lookups, one callout"
    );
    assert_eq!(envoy.stat("wasmcustom.oauthv2info.callouts"), 1);
}

#[test]
fn a_waiter_outlives_the_request_it_waited_on() {
    let (fake, calls) = counting_service(Duration::from_millis(500));
    let upstream = Upstream::start();
    let mut spec = EnvoySpec::new(plugin(&[GET], json!({})), Some(fake.port), upstream.port);
    spec.concurrency = 1;
    let envoy = Envoy::start(&spec);
    // The first request sends the lookup, then its client goes away.
    let mut first = std::net::TcpStream::connect(("127.0.0.1", envoy.port)).unwrap();
    std::io::Write::write_all(&mut first, b"GET /?t=orphan HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let port = envoy.port;
    let second = std::thread::spawn(move || get(port, "/?t=orphan"));
    std::thread::sleep(Duration::from_millis(100));
    drop(first);
    let r = second.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the waiter sent its own lookup"
    );
}
