//! The token service stopped, slow, broken or absent, and plain RFC 7662
//! servers: the documented 503 fault, never a pass-through.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

// ------------------------------------------------------ token service down

#[test]
fn token_service_stopped_then_back() {
    let mut stack = Stack::start(plugin(
        &[r#"<GetOAuthV2Info name="G"><AccessToken ref="request.queryparam.t"/></GetOAuthV2Info>"#],
        json!({"cache": {"enabled": false}}),
    ));
    stack.service.create_app("c1", json!({}));
    stack
        .service
        .import_access_token("c1", "good", "approved", 3600, json!({}));
    assert_eq!(stack.envoy.get("/?t=good").status, 200);

    let service = std::mem::replace(&mut stack.service, TokenService::start());
    let (dir, port) = service.stop();
    for _ in 0..3 {
        assert_fault(
            &stack.envoy.get("/?t=good"),
            503,
            "Token service unavailable",
            "token_service_unavailable",
        );
    }
    assert!(stack.envoy.stat("wasmcustom.oauthv2info.callout_failures") >= 3);
    assert!(stack.envoy.log_text().contains("token service unavailable"));

    // Back on the same port and store: the filter recovers (no trapped VM).
    let _restarted = TokenService::start_in(dir, port);
    assert_eq!(stack.envoy.get("/?t=good").status, 200);
}

fn failing_service_case(fake: &FakeService, timeout_ms: u64) -> Response {
    let upstream = Upstream::start();
    let mut p = plugin(
        &[r#"<GetOAuthV2Info name="G"><AccessToken ref="request.queryparam.t"/></GetOAuthV2Info>"#],
        json!({}),
    );
    p["token_service"]["timeout_ms"] = json!(timeout_ms);
    let envoy = Envoy::start(&EnvoySpec::new(p, Some(fake.port), upstream.port));
    let r = envoy.get("/?t=anything");
    // The VM still serves after the failure.
    let again = envoy.get("/?t=anything");
    assert_eq!(again.status, r.status);
    r
}

#[test]
fn token_service_slow_garbage_truncated_5xx_all_give_503() {
    let slow = FakeService::respond(Duration::from_secs(3), 200, r#"{"active":true}"#);
    assert_fault(
        &failing_service_case(&slow, 200),
        503,
        "Token service unavailable",
        "token_service_unavailable",
    );

    for (status, body) in [
        (200, "this is not json"),
        (200, r#"{"active":"yes"}"#),
        (500, "{}"),
        (502, ""),
        (401, r#"{"error":"unauthorized"}"#),
    ] {
        let fake = FakeService::respond(Duration::ZERO, status, body);
        assert_fault(
            &failing_service_case(&fake, 1000),
            503,
            "Token service unavailable",
            "token_service_unavailable",
        );
    }
    // Content-Length promises more than is sent, then the connection closes.
    let truncated = FakeService::start(Duration::ZERO, |_| {
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n{\"active\":tr".to_vec()
    });
    assert_fault(
        &failing_service_case(&truncated, 1000),
        503,
        "Token service unavailable",
        "token_service_unavailable",
    );
}

#[test]
fn no_healthy_host_gives_503_at_once() {
    let upstream = Upstream::start();
    let envoy = Envoy::start(&EnvoySpec::new(
        plugin(
            &[r#"<GetOAuthV2Info name="G"><AccessToken>t</AccessToken></GetOAuthV2Info>"#],
            json!({}),
        ),
        None,
        upstream.port,
    ));
    assert_fault(
        &envoy.get("/"),
        503,
        "Token service unavailable",
        "token_service_unavailable",
    );
    let envoy_log = envoy.log_text();
    assert!(envoy_log.contains("could not call cluster"), "{envoy_log}");
}

#[test]
fn plain_rfc7662_server_without_profile() {
    let exp = now_ms() / 1000 + 120;
    let fake = FakeService::start(Duration::ZERO, move |request| {
        let body = if request.contains("token=known") {
            format!(
                r#"{{"active":true,"client_id":"rfc-client","scope":"openid email","token_type":"Bearer","exp":{exp},"iat":{}}}"#,
                exp - 3600
            )
        } else {
            r#"{"active":false}"#.to_string()
        };
        format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).into_bytes()
    });
    let upstream = Upstream::start();
    let envoy = Envoy::start(&EnvoySpec::new(
        plugin(
            &[
                r#"<GetOAuthV2Info name="G"><AccessToken ref="request.queryparam.t"/></GetOAuthV2Info>"#,
            ],
            json!({"request_headers": {"x-client": "oauthv2accesstoken.G.client_id", "x-scope": "oauthv2accesstoken.G.scope",
                                       "x-expires-in": "oauthv2accesstoken.G.expires_in", "x-email": "oauthv2accesstoken.G.developer.email"}}),
        ),
        Some(fake.port),
        upstream.port,
    ));
    let r = envoy.get("/?t=known");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.upstream_header("x-client").as_deref(), Some("rfc-client"));
    assert_eq!(
        r.upstream_header("x-scope").as_deref(),
        Some("openid email")
    );
    let expires_in: i64 = r.upstream_header("x-expires-in").unwrap().parse().unwrap();
    assert!((100..=120).contains(&expires_in), "{expires_in}");
    assert_eq!(
        r.upstream_header("x-email"),
        None,
        "a plain server gives no developer"
    );
    assert_fault(
        &envoy.get("/?t=other"),
        500,
        "Invalid Access Token",
        "invalid_access_token",
    );
}
