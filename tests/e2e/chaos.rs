//! Under load, with things going wrong, in the real Envoy (both workers):
//! hundreds of tokens with cold and warm lookups interleaved never cross;
//! a token service killed and restarted loses no acknowledged write; a
//! black-holed one gives the 503 fault, never a hang or a pass-through; a
//! plugin configuration changed under load (file-based LDS) fails no
//! request. Every load is bounded in count; the tests assert what
//! happened, never how long it took.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::support::*;

const GET_DEPT: &str = r#"<GetOAuthV2Info name="G"><AccessToken ref="request.queryparam.access_token"/></GetOAuthV2Info>"#;

/// 300 tokens of 30 apps, 2,400 requests on 12 threads through both
/// workers, each token asked for 8 times in a shuffled order (so its first
/// lookups race each other, cold, and later ones hit): every answer
/// carries its own token's profile.
#[test]
fn hundreds_of_tokens_cold_and_warm_never_cross() {
    let stack = Stack::start(plugin(
        &[GET_DEPT],
        json!({"request_headers": {
            "x-dept": "oauthv2accesstoken.G.accesstoken.dept",
            "x-client": "oauthv2accesstoken.G.client_id",
        }}),
    ));
    const TOKENS: usize = 300;
    for app in 0..30 {
        stack.service.create_app(&format!("app-{app}"), json!({}));
    }
    for i in 0..TOKENS {
        stack.service.import_access_token(
            &format!("app-{}", i % 30),
            &format!("ct-{i}"),
            "approved",
            3600,
            json!({"dept": format!("d-{i}")}),
        );
    }
    // A fixed shuffle: token (k * 7919) mod 300, repeated 8 times.
    let order: Vec<usize> = (0..TOKENS * 8).map(|k| (k * 7919) % TOKENS).collect();
    let order = Arc::new(order);
    let port = stack.envoy.port;
    stack.envoy.unsettle();
    let wrong = spread(12, TOKENS * 8, move |k| {
        let i = order[k];
        let r = get(port, &format!("/x?access_token=ct-{i}"));
        let got = (
            r.status,
            r.upstream_header("x-dept"),
            r.upstream_header("x-client"),
        );
        let want = (200, Some(format!("d-{i}")), Some(format!("app-{}", i % 30)));
        (got != want).then(|| format!("ct-{i}: got {got:?}, want {want:?}"))
    });
    let wrong: Vec<String> = wrong.into_iter().flatten().collect();
    assert!(
        wrong.is_empty(),
        "{} wrong answers: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    // Most were hits (each token's first lookups may race one another).
    let hits = stack.envoy.stat("wasmcustom.oauthv2info.cache.hits");
    assert!(hits >= (TOKENS * 6) as u64, "{hits} hits");
}

/// (token, write number, status, while the token service was down).
type Outcome = (usize, usize, u16, bool);

const SET_DEPT: &str = r#"<SetOAuthV2Info name="W"><AccessToken ref="request.queryparam.access_token"/><Attributes><Attribute name="dept" ref="request.queryparam.dept"/></Attributes></SetOAuthV2Info>"#;

/// SetOAuthV2Info on 8 threads while the only token service is killed
/// (-9) and started again on its store, the load going on until every
/// thread has had 10 writes acknowledged after the restart: every write
/// Envoy acknowledged is in the store (the last one of each token), the
/// others got the 503 fault, and only while it was down. (A write that
/// failed may still have been committed: the service can die between its
/// commit and its answer; a later acknowledged write then replaces it.)
#[test]
fn writes_through_a_kill_and_restart_lose_nothing_acknowledged() {
    let mut stack = Stack::start(plugin(&[SET_DEPT], json!({"metadata_bridge": "none"})));
    stack.service.create_app("kr", json!({}));
    const TOKENS: usize = 40;
    for i in 0..TOKENS {
        stack
            .service
            .import_access_token("kr", &format!("kr-{i}"), "approved", 3600, json!({}));
    }
    let port = stack.envoy.port;
    let down = Arc::new(AtomicBool::new(false));
    let back = Arc::new(AtomicBool::new(false));
    let outcomes: Arc<Mutex<Vec<Outcome>>> = Arc::default();
    let sent = Arc::new(AtomicUsize::new(0));
    // Bounded: at most 1,000 writes per thread.
    const CAP: usize = 1_000;
    let load: Vec<_> = (0..8)
        .map(|t| {
            let (down, back, outcomes, sent) =
                (down.clone(), back.clone(), outcomes.clone(), sent.clone());
            std::thread::spawn(move || {
                let mut acked_after = 0;
                for k in 0..CAP {
                    if acked_after >= 10 {
                        return true;
                    }
                    let n = sent.fetch_add(1, Ordering::SeqCst);
                    // Each thread writes its own 5 tokens, in order.
                    let token = t * 5 + k % 5;
                    let during = down.load(Ordering::SeqCst);
                    let after = back.load(Ordering::SeqCst);
                    let r = get(port, &format!("/x?access_token=kr-{token}&dept=n{n}"));
                    if r.status != 200 {
                        assert_fault(
                            &r,
                            503,
                            "Token service unavailable",
                            "token_service_unavailable",
                        );
                    } else if after {
                        acked_after += 1;
                    }
                    let during = during || down.load(Ordering::SeqCst);
                    outcomes.lock().unwrap().push((token, n, r.status, during));
                }
                false
            })
        })
        .collect();
    while sent.load(Ordering::SeqCst) < 200 {
        std::thread::sleep(Duration::from_millis(2));
    }
    down.store(true, Ordering::SeqCst);
    let service = std::mem::replace(&mut stack.service, TokenService::start());
    let (dir, service_port) = service.stop();
    // Down longer than timeout_ms (1 s): the filter sends a call no
    // service answered again while that lasts, so a shorter outage fails
    // no write at all.
    std::thread::sleep(Duration::from_millis(1_500));
    stack.service = TokenService::start_in(dir, service_port);
    down.store(false, Ordering::SeqCst);
    back.store(true, Ordering::SeqCst);
    stack.envoy.unsettle();
    for t in load {
        assert!(
            t.join().unwrap(),
            "writes were acknowledged again after the restart"
        );
    }
    let outcomes = outcomes.lock().unwrap();
    let failed: Vec<_> = outcomes.iter().filter(|o| o.2 != 200).collect();
    assert!(
        failed.iter().all(|o| o.3),
        "a write failed while the token service was up: {:?}",
        failed.iter().find(|o| !o.3)
    );
    assert!(!failed.is_empty(), "the kill was seen by some write");
    // Per token, the last write was acknowledged after the restart, and it
    // is what the store holds.
    let mut last: HashMap<usize, (usize, u16)> = HashMap::new();
    for (token, n, status, _) in outcomes.iter() {
        last.insert(*token, (*n, *status));
    }
    assert_eq!(last.len(), TOKENS);
    for (token, (n, status)) in &last {
        assert_eq!(*status, 200, "kr-{token}: its last write was acknowledged");
        let v = stack
            .service
            .introspect(&format!("kr-{token}"), "access_token");
        assert_eq!(
            v["profile"]["attributes"]["dept"],
            format!("n{n}"),
            "kr-{token}: an acknowledged write is missing"
        );
    }
}

/// A token service that accepts connections and never answers (frozen
/// with SIGSTOP), under 60 concurrent requests: every one gets the 503
/// fault; none hangs, none reaches the upstream. Thawed, it answers again.
#[test]
fn a_black_holed_token_service_gives_the_fault_to_every_request() {
    let mut p = plugin(&[GET_DEPT], json!({"cache": {"enabled": false}}));
    p["token_service"]["timeout_ms"] = json!(300);
    let stack = Stack::start(p);
    stack.service.create_app("bh", json!({}));
    stack
        .service
        .import_access_token("bh", "tok-bh", "approved", 3600, json!({}));
    assert_eq!(stack.envoy.get("/x?access_token=tok-bh").status, 200);
    stack.service.signal("STOP");
    let port = stack.envoy.port;
    stack.envoy.unsettle();
    let answers = spread(12, 60, move |_| get(port, "/x?access_token=tok-bh"));
    stack.service.signal("CONT");
    for r in &answers {
        assert_fault(
            r,
            503,
            "Token service unavailable",
            "token_service_unavailable",
        );
    }
    assert!(stack.envoy.stat("wasmcustom.oauthv2info.callout_failures") >= 60);
    assert_eq!(stack.envoy.get("/x?access_token=tok-bh").status, 200);
}

/// The plugin configuration changed under load through Envoy's file-based
/// LDS (a new policy name, a new header mapping): no request fails (a GET
/// whose connection Envoy closed unanswered as the old filter chain began
/// to drain is sent again, as clients do; at most a couple per client);
/// each request ran one version whole; once a client's request shows the
/// new version, every later one does.
#[test]
fn a_configuration_change_under_load_fails_no_request() {
    let version = |n: u32| {
        plugin(
            &[&format!(
                r#"<GetOAuthV2Info name="G{n}"><AccessToken ref="request.queryparam.access_token"/></GetOAuthV2Info>"#
            )],
            json!({"request_headers": {
                "x-dept": format!("oauthv2accesstoken.G{n}.accesstoken.dept"),
                format!("x-v{n}"): format!("oauthv2accesstoken.G{n}.client_id"),
            }}),
        )
    };
    let service = TokenService::start();
    let upstream = Upstream::start();
    service.create_app("hr", json!({}));
    service.import_access_token("hr", "tok-hr", "approved", 3600, json!({"dept": "5"}));
    let mut spec = EnvoySpec::new(version(1), Some(service.port), upstream.port);
    let envoy = Arc::new(Envoy::start_lds(&spec));
    let which = |r: &Response| -> Option<u32> {
        match (
            r.status,
            r.upstream_header("x-dept").as_deref(),
            r.upstream_header("x-v1"),
            r.upstream_header("x-v2"),
        ) {
            (200, Some("5"), Some(a), None) if a == "hr" => Some(1),
            (200, Some("5"), None, Some(b)) if b == "hr" => Some(2),
            _ => None,
        }
    };
    assert_eq!(which(&envoy.get("/x?access_token=tok-hr")), Some(1));

    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (envoy, stop) = (envoy.clone(), stop.clone());
            std::thread::spawn(move || {
                let (mut seen, mut resets) = (Vec::new(), 0);
                // Bounded: at most 3,000 requests per thread.
                for _ in 0..3_000 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    // Now and then (about one run in three) Envoy closes a
                    // connection unanswered as the old filter chain starts
                    // to drain: a client sends such a GET again.
                    let r = match try_get(envoy.port, "/x?access_token=tok-hr") {
                        Ok(r) => r,
                        Err(_) => {
                            resets += 1;
                            envoy.get("/x?access_token=tok-hr")
                        }
                    };
                    seen.push(which(&r).ok_or_else(|| format!("HTTP {}: {}", r.status, r.text())));
                }
                (seen, resets)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    spec.plugin = version(2);
    envoy.reload(&spec);
    wait_until("the new configuration", Duration::from_secs(20), || {
        which(&envoy.get("/x?access_token=tok-hr")) == Some(2)
    });
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    envoy.unsettle();
    for t in load {
        let (seen, resets) = t.join().unwrap();
        assert!(resets <= 2, "{resets} connections closed unanswered");
        let versions: Vec<u32> = seen
            .into_iter()
            .map(|v| v.unwrap_or_else(|e| panic!("a request failed over the change: {e}")))
            .collect();
        assert!(
            versions.first() == Some(&1) && versions.last() == Some(&2),
            "{versions:?}"
        );
        let switches = versions.windows(2).filter(|w| w[0] != w[1]).count();
        assert_eq!(switches, 1, "back to the old version after the new one");
    }
    assert!(!envoy.log_text().contains("panic"));
}
