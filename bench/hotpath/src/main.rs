//! Times the filter's pure logic on a cache hit, roughly as the adapter runs it
//! (src/adapter.rs, minus the host calls): request info from the headers,
//! the flow up to the callout, the cache slot key, decoding the cached
//! entry, applying it, and walking the published variables twice (filter
//! state, then the metadata bridge's blob).
//!
//!   hotpath [iterations]   (default 200000; a small count for callgrind)

use std::hint::black_box;
use std::time::Instant;

use oauthv2info::cache::{self, Entry};
use oauthv2info::config::parse_config;
use oauthv2info::engine::{Callout, Flow, Step};
use oauthv2info::publish::{encode_bridge, published};
use oauthv2info::vars::RequestInfo;

const TOKEN: &str = "BT00042a1b2c3d4e5f6";

fn headers() -> Vec<(String, Vec<u8>)> {
    [
        (":authority", "127.0.0.1:10000"),
        (":path", "/get?access_token=BT00042a1b2c3d4e5f6"),
        (":method", "GET"),
        (":scheme", "http"),
        ("x-forwarded-proto", "http"),
        ("x-request-id", "0b7d5a7e-6f3c-4b8e-9a51-2f8f3c1d9e20"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
    .collect()
}

fn request() -> RequestInfo {
    let mut request = RequestInfo::default();
    let mut kept = Vec::new();
    for (name, value) in headers() {
        match name.as_str() {
            ":method" => request.method = String::from_utf8_lossy(&value).into_owned(),
            ":path" => request.path = String::from_utf8_lossy(&value).into_owned(),
            n if n.starts_with(':') => {}
            _ => kept.push((name, value)),
        }
    }
    request.with_header_bytes(kept)
}

fn main() {
    let iterations: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let config = parse_config(
        br#"{"token_service": {"cluster": "token_service", "credentials": "Bearer k"},
             "policies": ["<GetOAuthV2Info name=\"GetTokenAttributes\"><AccessToken ref=\"request.queryparam.access_token\"/></GetOAuthV2Info>"]}"#,
    )
    .expect("config");
    let now = 1_795_356_400_000_i64;
    // What the token service answers for a benchmark token.
    let body = format!(
        r#"{{"active":true,"client_id":"cid-bench","exp":1795442766,"iat":1795356366,"profile":{{"access_token":"{TOKEN}","api_product_list":"[FreeProduct, Premium]","attributes":{{"department.id":"42","plan":"premium","region":"eu-west"}},"client_id":"cid-bench","developer.app.id":"f4891d6f-66cc-4dfc-8487-3ecfff8dc263","developer.app.name":"bench-app","developer.email":"bench@example.com","developer.id":"dev-bench","expires_at":"1795442766330","expires_in":"86399","issued_at":"1795356366330","organization_name":"local","refresh_count":"1","refresh_token":"{TOKEN}-refresh","refresh_token_expires_at":"1795529166330","refresh_token_expires_in":"172799","refresh_token_issued_at":"1795356366330","refresh_token_status":"approved","scope":"READ WRITE","status":"approved","token_type":"BearerToken"}},"scope":"READ WRITE","token_type":"Bearer"}}"#
    );
    let mut flow = Flow::new();
    let req = request();
    assert!(matches!(flow.advance(&config, &req), Step::Callout(_)));
    let learned = flow
        .on_response(&config, Some(200), body.as_bytes(), now)
        .expect("learned");
    let stored = cache::encode(&Entry {
        kind: learned.kind,
        token: learned.token.clone(),
        deadline_ms: now + 30_000,
        stored_ms: now,
        lookup: learned.lookup.clone(),
    });

    let mut phases = [0u128; 5];
    let mut published_count = 0;
    let started = Instant::now();
    for _ in 0..iterations {
        let t0 = Instant::now();
        let req = request();
        let mut flow = Flow::new();
        let Step::Callout(Callout::Introspect { kind, token }) = flow.advance(&config, &req) else {
            panic!("no callout");
        };
        let key = cache::slot_key(
            &config.token_service.cluster,
            kind,
            &token,
            config.cache.max_entries,
        );
        let t1 = Instant::now();
        let entry = cache::decode(black_box(&stored)).expect("decode");
        let lookup = entry.answer(kind, &token, now).expect("hit").clone();
        let t2 = Instant::now();
        flow.on_cached(&config, &lookup, now);
        assert!(matches!(flow.advance(&config, &req), Step::Continue));
        let t3 = Instant::now();
        for (name, value) in published(&flow.vars, &config.publish, config.export_secrets) {
            black_box((name, value));
            published_count += 1;
        }
        let t4 = Instant::now();
        let blob = encode_bridge(
            &config.metadata_namespace,
            published(&flow.vars, &config.publish, config.export_secrets),
        );
        black_box((key, blob));
        let t5 = Instant::now();
        for (i, (a, b)) in [(t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5)]
            .iter()
            .enumerate()
        {
            phases[i] += b.duration_since(*a).as_nanos();
        }
    }
    let total = started.elapsed().as_nanos() as f64 / f64::from(iterations);
    let per = |i: usize| phases[i] as f64 / f64::from(iterations);
    println!(
        "cache-hit path, native, {iterations} iterations: {total:.0} ns per request \
         ({} variables published)",
        published_count / iterations as usize
    );
    for (i, name) in [
        "request info + flow to the callout + slot key",
        "decode the cached entry",
        "apply it (variables) + flow to the end",
        "walk the published variables (filter state)",
        "walk them again + encode the bridge blob",
    ]
    .iter()
    .enumerate()
    {
        println!("  {name:48} {:7.0} ns", per(i));
    }
}
