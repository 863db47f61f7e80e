//! Every token kind's variables, the faults with their exact bodies and
//! statuses, IgnoreAccessTokenStatus, RBAC on published variables.

use serde_json::{json, Value};

use crate::support::*;

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

// ------------------------------------------------- plugins sharing a VM

/// Two plugin configurations on one `vm_id` (one VM per worker): each runs
/// its own policies with its own token, and neither answers for the other.
#[test]
fn two_plugins_sharing_a_vm_each_run_their_own_policies() {
    let first = plugin(
        &[
            r#"<GetOAuthV2Info name="First"><AccessToken ref="request.queryparam.access_token"/></GetOAuthV2Info>"#,
        ],
        json!({"metadata_bridge": "none"}),
    );
    let second = plugin(
        &[
            r#"<GetOAuthV2Info name="Second"><AccessToken ref="request.header.x-token"/></GetOAuthV2Info>"#,
        ],
        json!({"metadata_bridge": "none", "request_headers": {"x-second-client": "oauthv2accesstoken.Second.client_id"}}),
    );
    let stack = Stack::start_with(first, |spec| {
        spec.extra_filters = wasm_only_filter(&second.to_string()).replacen(
            "                name: oauthv2info\n",
            "                name: second\n",
            1,
        );
        spec.access_log = vec![
            (
                "first",
                "%FILTER_STATE(wasm.oauthv2accesstoken.First.client_id:PLAIN)%".into(),
            ),
            (
                "second",
                "%FILTER_STATE(wasm.oauthv2accesstoken.Second.client_id:PLAIN)%".into(),
            ),
        ];
    });
    stack.service.create_app("first-client", json!({}));
    stack.service.create_app("second-client", json!({}));
    stack
        .service
        .import_access_token("first-client", "tok-first", "approved", 3600, json!({}));
    stack
        .service
        .import_access_token("second-client", "tok-second", "approved", 3600, json!({}));

    let r = stack.envoy.request(
        "GET",
        "/x?access_token=tok-first",
        &[("x-token", b"tok-second")],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.upstream_header("x-second-client").as_deref(),
        Some("second-client")
    );
    let log = stack.envoy.access_log(1);
    assert_eq!(log[0]["first"], "first-client");
    assert_eq!(log[0]["second"], "second-client");

    // The second plugin's policy faults on its own: the first one's token
    // does not satisfy it.
    let r = stack
        .envoy
        .request("GET", "/x?access_token=tok-first", &[], b"");
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(r.text().contains("invalid_access_token"), "{}", r.text());
    let log = stack.envoy.access_log(2);
    assert_eq!(log[1]["first"], "first-client");
}
