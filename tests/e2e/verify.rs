//! OAuthV2 VerifyAccessToken through Envoy: the bearer token read from
//! `Authorization`, its unprefixed variables, the 401/403 replies with
//! their challenge; SetOAuthV2Info on the token it found; step conditions
//! (`{"policy", "condition"}` entries, `basepath`) that skip or run a
//! policy, and a malformed condition refused at load time.

use serde_json::{json, Value};

use crate::support::*;

const VERIFY: &str = r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation></OAuthV2>"#;

/// A GET with an `Authorization` header (none for `None`).
fn with_auth(envoy: &Envoy, path: &str, authorization: Option<&str>) -> Response {
    let headers: Vec<(&str, &[u8])> = authorization
        .map(|a| ("authorization", a.as_bytes()))
        .into_iter()
        .collect();
    envoy.request("GET", path, &headers, b"")
}

fn callouts(envoy: &Envoy) -> u64 {
    envoy.stat("wasmcustom.oauthv2info.callouts")
}

/// The `www-authenticate` header of a reply, or a panic naming the reply.
fn challenge(r: &Response) -> &str {
    r.header("www-authenticate")
        .unwrap_or_else(|| panic!("no www-authenticate on HTTP {}: {:?}", r.status, r.headers))
}

// --------------------------------------------------------- the bearer token

#[test]
fn verify_access_token_reads_the_bearer_header_and_sets_unprefixed_variables() {
    // Any of the scopes: the token has READ WRITE.
    let stack = Stack::start_with(
        plugin(
            &[
                r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation><Scope>ADMIN READ</Scope></OAuthV2>"#,
            ],
            json!({"request_headers": {
                "x-client-id": "client_id",
                "x-scope": "scope",
                "x-status": "status",
                "x-expires-in": "expires_in",
                "x-issued-at": "issued_at",
                "x-token-type": "token_type",
                "x-org": "organization_name",
                "x-products": "api_product_list",
                "x-dev-id": "developer.id",
                "x-dev-email": "developer.email",
                "x-app-name": "developer.app.name",
                "x-app-id": "developer.app.id",
                "x-tier": "accesstoken.tier",
                "x-dept": "accesstoken.department.id",
                "x-failed": "oauthV2.V.failed",
                "x-fault": "fault.name",
                "x-prefixed": "oauthv2accesstoken.V.client_id"
            }}),
        ),
        |spec| {
            spec.concurrency = 1;
            spec.access_log = vec![
                (
                    "fs_client_id",
                    "%FILTER_STATE(wasm.client_id:PLAIN)%".into(),
                ),
                ("md_scope", "%DYNAMIC_METADATA(apigee:scope)%".into()),
                (
                    "fs_access_token",
                    "%FILTER_STATE(wasm.access_token:PLAIN)%".into(),
                ),
                (
                    "md_access_token",
                    "%DYNAMIC_METADATA(apigee:access_token)%".into(),
                ),
                (
                    "fs_failed",
                    "%FILTER_STATE(wasm.oauthV2.V.failed:PLAIN)%".into(),
                ),
            ];
        },
    );
    let app = stack.service.create_app("c1", json!({}));
    stack.service.import_access_token(
        "c1",
        "tok-verify-secret",
        "approved",
        3600,
        json!({"tier": "gold", "department.id": "42"}),
    );

    // A client copy of a mapped header is replaced.
    let r = stack.envoy.request(
        "GET",
        "/orders",
        &[
            ("authorization", b"Bearer tok-verify-secret"),
            ("x-client-id", b"spoofed"),
        ],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let h = |name: &str| r.upstream_header(name);
    assert_eq!(h("x-client-id").as_deref(), Some("c1"));
    assert_eq!(h("x-scope").as_deref(), Some("READ WRITE"));
    assert_eq!(h("x-status").as_deref(), Some("approved"));
    let expires_in: i64 = h("x-expires-in").unwrap().parse().unwrap();
    assert!(
        (3590..=3600).contains(&expires_in),
        "expires_in {expires_in}"
    );
    let issued_at: i64 = h("x-issued-at").unwrap().parse().unwrap();
    assert!(
        (now_ms() - issued_at).abs() < 60_000,
        "issued_at {issued_at}"
    );
    assert_eq!(h("x-token-type").as_deref(), Some("BearerToken"));
    assert_eq!(h("x-org").as_deref(), Some("local"));
    assert_eq!(h("x-products").as_deref(), Some("[FreeProduct, Premium]"));
    assert_eq!(h("x-dev-id").as_deref(), Some("dev-c1"));
    assert_eq!(h("x-dev-email").as_deref(), Some("c1@example.com"));
    assert_eq!(h("x-app-name").as_deref(), Some("app-c1"));
    assert_eq!(h("x-app-id").as_deref(), app["app_id"].as_str());
    assert_eq!(h("x-tier").as_deref(), Some("gold"));
    assert_eq!(h("x-dept").as_deref(), Some("42"));
    assert_eq!(h("x-failed").as_deref(), Some("false"));
    assert_eq!(h("x-fault"), None, "no fault");
    assert_eq!(
        h("x-prefixed"),
        None,
        "VerifyAccessToken's variables carry no prefix"
    );
    // The bearer header itself goes on to the upstream, untouched.
    assert_eq!(
        h("authorization").as_deref(),
        Some("Bearer tok-verify-secret")
    );

    // The scheme in any case, spaces after it.
    for auth in ["bearer tok-verify-secret", "BEARER   tok-verify-secret"] {
        let r = with_auth(&stack.envoy, "/orders", Some(auth));
        assert_eq!(r.status, 200, "{auth:?}: {}", r.text());
        assert_eq!(r.upstream_header("x-client-id").as_deref(), Some("c1"));
        assert_eq!(r.upstream_header("x-failed").as_deref(), Some("false"));
    }

    // Published to filter state and metadata, the token value excepted.
    let log = stack.envoy.access_log(3);
    for entry in &log {
        assert_eq!(entry["status"], 200, "{entry}");
        assert_eq!(entry["fs_client_id"], "c1", "{entry}");
        assert_eq!(entry["md_scope"], "READ WRITE", "{entry}");
        assert_eq!(entry["fs_failed"], "false", "{entry}");
        assert_eq!(
            entry["fs_access_token"],
            Value::Null,
            "access_token is a secret: {entry}"
        );
        assert_eq!(
            entry["md_access_token"],
            Value::Null,
            "access_token is a secret: {entry}"
        );
    }
    assert!(
        !stack.envoy.log_text().contains("tok-verify-secret"),
        "the token value appears in Envoy's log"
    );
    // One lookup, then the cache.
    assert_eq!(callouts(&stack.envoy), 1);
    assert_eq!(
        stack
            .envoy
            .stat("wasmcustom.oauthv2info.policy.V.executions"),
        3
    );
}

/// Each 401 of VerifyAccessToken: status, exact body, challenge, fault
/// name; a missing or foreign-scheme token costs no callout.
#[test]
fn verify_access_token_faults_reply_401_with_a_bearer_challenge() {
    let stack = Stack::start_with(
        plugin(
            &[VERIFY],
            json!({"request_headers": {"x-client-id": "client_id"}}),
        ),
        |spec| {
            spec.concurrency = 1;
            spec.access_log = vec![
                ("fault", "%FILTER_STATE(wasm.fault.name:PLAIN)%".into()),
                ("md_fault", "%DYNAMIC_METADATA(apigee:fault.name)%".into()),
                (
                    "failed",
                    "%FILTER_STATE(wasm.oauthV2.V.failed:PLAIN)%".into(),
                ),
                (
                    "cause",
                    "%FILTER_STATE(wasm.oauthV2.V.fault.cause:PLAIN)%".into(),
                ),
                ("client_id", "%FILTER_STATE(wasm.client_id:PLAIN)%".into()),
            ];
        },
    );
    stack.service.create_app("c1", json!({}));
    stack
        .service
        .import_access_token("c1", "good", "approved", 3600, json!({}));
    stack
        .service
        .import_access_token("c1", "revoked", "revoked", 3600, json!({}));
    stack
        .service
        .import_access_token("c1", "expired", "approved", 0, json!({}));

    const MISSING: &str = r#"{"fault":{"faultstring":"Invalid access token","detail":{"errorcode":"oauth.v2.InvalidAccessToken"}}}"#;
    const EXPIRED: &str = r#"{"fault":{"faultstring":"Access Token expired","detail":{"errorcode":"keymanagement.service.access_token_expired"}}}"#;
    // Revoked: Apigee's own fault (docs/decisions.md#verifyaccesstoken).
    const NOT_APPROVED: &str = r#"{"fault":{"faultstring":"Access Token not approved","detail":{"errorcode":"keymanagement.service.access_token_not_approved"}}}"#;
    let check = |r: &Response, what: &str, body: &str| {
        assert_eq!(r.status, 401, "{what}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"), "{what}");
        assert_eq!(r.text(), body, "{what}");
        let c = challenge(r);
        assert!(
            c.starts_with(r#"Bearer realm="null",error="invalid_token""#),
            "{what}: {c}"
        );
    };

    // No token to look up: no callout.
    let missing: [Option<&str>; 6] = [
        None,
        Some("Basic dXNlcjpwYXNz"),
        Some("Token good"),
        Some("Bearer"),
        Some("Bearergood"),
        Some("good"),
    ];
    for auth in missing {
        let r = with_auth(&stack.envoy, "/", auth);
        check(&r, &format!("{auth:?}"), MISSING);
        assert!(
            challenge(&r).contains("oauth.v2.InvalidAccessToken"),
            "{auth:?}"
        );
    }
    assert_eq!(callouts(&stack.envoy), 0, "a missing token is no lookup");

    // Tokens the service refuses.
    let refused = [
        (
            "Bearer unknown",
            FAULT_INVALID_ACCESS,
            "invalid_access_token",
        ),
        ("Bearer revoked", NOT_APPROVED, "access_token_not_approved"),
        ("Bearer expired", EXPIRED, "access_token_expired"),
    ];
    for (auth, body, name) in refused {
        let r = with_auth(&stack.envoy, "/", Some(auth));
        check(&r, auth, body);
        assert!(
            challenge(&r).contains(&format!("keymanagement.service.{name}")),
            "{auth}: {}",
            challenge(&r)
        );
    }
    assert_eq!(callouts(&stack.envoy), 3);

    let log = stack.envoy.access_log(missing.len() + refused.len());
    for (i, entry) in log.iter().enumerate() {
        let name = if i < missing.len() {
            "InvalidAccessToken"
        } else {
            refused[i - missing.len()].2
        };
        assert_eq!(entry["status"], 401, "{i}: {entry}");
        assert_eq!(entry["fault"], name, "{i}: {entry}");
        assert_eq!(entry["md_fault"], name, "{i}: {entry}");
        assert_eq!(entry["failed"], "true", "{i}: {entry}");
        assert_eq!(entry["client_id"], Value::Null, "{i}: {entry}");
    }
    assert_eq!(log[0]["cause"], "Invalid access token");
    assert_eq!(log[missing.len()]["cause"], "Invalid Access Token");
    assert_eq!(log[missing.len() + 1]["cause"], "Access Token not approved");
    assert_eq!(log[missing.len() + 2]["cause"], "Access Token expired");

    // The fault counters: the missing token has its own name; the
    // service's refusals count under the Get/Set faults' names.
    let stat = |n: &str| stack.envoy.stat(&format!("wasmcustom.oauthv2info.{n}"));
    assert_eq!(stat("faults.InvalidAccessToken"), missing.len() as u64);
    assert_eq!(stat("faults.invalid_access_token"), 1);
    assert_eq!(stat("faults.access_token_not_approved"), 1);
    assert_eq!(stat("faults.access_token_expired"), 1);
    assert_eq!(
        stat("policy.V.faults"),
        (missing.len() + refused.len()) as u64
    );

    // The good token still goes through.
    let r = with_auth(&stack.envoy, "/", Some("Bearer good"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("www-authenticate"), None);
    assert_eq!(r.upstream_header("x-client-id").as_deref(), Some("c1"));
}

/// Real policies as Apigee loads them: a VerifyAccessToken that names a
/// variable without `<AccessTokenPrefix>` reads the bare token there
/// (apigee-samples apiproduct-operations), and a GetOAuthV2Info with
/// `<IgnoreAccessTokenStatus>` beside `<RefreshToken>` (apigee/devrel
/// identity-facade) loads and returns the refresh token's variables.
#[test]
fn a_bare_token_in_a_named_variable_and_ignore_status_beside_a_refresh_token() {
    let stack = Stack::start(plugin(
        &[
            r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation><AccessToken>request.header.token</AccessToken></OAuthV2>"#,
            r#"<GetOAuthV2Info name="R"><RefreshToken ref="request.header.rt"/><IgnoreAccessTokenStatus>false</IgnoreAccessTokenStatus></GetOAuthV2Info>"#,
        ],
        json!({"request_headers": {
            "x-client-id": "client_id",
            "x-refresh-status": "oauthv2refreshtoken.R.refresh_token_status"
        }}),
    ));
    stack.service.create_app("c1", json!({}));
    stack
        .service
        .import_access_token("c1", "good", "approved", 3600, json!({}));
    let get = |headers: &[(&str, &[u8])]| stack.envoy.request("GET", "/", headers, b"");

    // The bare token, and the refresh token of the same grant.
    let r = get(&[("token", b"good"), ("rt", b"good-refresh")]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.upstream_header("x-client-id").as_deref(), Some("c1"));
    assert_eq!(
        r.upstream_header("x-refresh-status").as_deref(),
        Some("approved")
    );
    // `Bearer` in that variable is part of the value: looked up whole,
    // unknown.
    let r = get(&[("token", b"Bearer good"), ("rt", b"good-refresh")]);
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.text(), FAULT_INVALID_ACCESS);
    // The Authorization header is not read when a variable is named.
    let r = get(&[("authorization", b"Bearer good"), ("rt", b"good-refresh")]);
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(
        r.text().contains("oauth.v2.InvalidAccessToken"),
        "{}",
        r.text()
    );
}

/// Two Flows, each with its VerifyAccessToken, then a step that reads the
/// unprefixed `access_token`: it reads the VerifyAccessToken that ran, as
/// on Apigee, not the last one in the list.
#[test]
fn a_later_step_reads_the_verify_access_token_that_ran() {
    let mut config = plugin(
        &[],
        json!({"request_headers": {
            "x-client-id": "client_id",
            "x-g-scope": "oauthv2accesstoken.G.scope"
        }}),
    );
    config["policies"] = json!([
        {"policy": r#"<OAuthV2 name="V1"><Operation>VerifyAccessToken</Operation></OAuthV2>"#,
         "condition": "request.header.flow = \"one\""},
        {"policy": r#"<OAuthV2 name="V2"><Operation>VerifyAccessToken</Operation><Scope>ADMIN</Scope></OAuthV2>"#,
         "condition": "request.header.flow = \"two\""},
        {"policy": r#"<GetOAuthV2Info name="G"><AccessToken ref="access_token"/></GetOAuthV2Info>"#},
    ]);
    let stack = Stack::start(config);
    stack.service.create_app("c1", json!({}));
    stack
        .service
        .import_access_token("c1", "good", "approved", 3600, json!({}));
    let get = |flow: &[u8]| {
        stack.envoy.request(
            "GET",
            "/",
            &[("flow", flow), ("authorization", b"Bearer good")],
            b"",
        )
    };
    // Flow one: V1 runs, V2 is skipped; G reads V1's access_token.
    let r = get(b"one");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.upstream_header("x-client-id").as_deref(), Some("c1"));
    assert_eq!(
        r.upstream_header("x-g-scope").as_deref(),
        Some("READ WRITE")
    );
    // Flow two: V2 runs and wants a scope the token lacks.
    let r = get(b"two");
    assert_eq!(r.status, 403, "{}", r.text());
}

#[test]
fn verify_access_token_without_a_required_scope_replies_403() {
    let stack = Stack::start_with(
        plugin(
            &[
                r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation><Scope>ADMIN</Scope></OAuthV2>"#,
            ],
            json!({}),
        ),
        |spec| {
            spec.access_log = vec![
                ("fault", "%FILTER_STATE(wasm.fault.name:PLAIN)%".into()),
                (
                    "cause",
                    "%FILTER_STATE(wasm.oauthV2.V.fault.cause:PLAIN)%".into(),
                ),
            ];
        },
    );
    stack.service.create_app("c1", json!({}));
    stack
        .service
        .import_access_token("c1", "rw", "approved", 3600, json!({}));

    let r = with_auth(&stack.envoy, "/", Some("Bearer rw"));
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.text(),
        r#"{"fault":{"faultstring":"Required scope(s): ADMIN","detail":{"errorcode":"steps.oauth.v2.InsufficientScope"}}}"#
    );
    let c = challenge(&r);
    assert!(
        c.starts_with(r#"Bearer realm="null",error="insufficient_scope""#),
        "{c}"
    );
    let log = stack.envoy.access_log(1);
    assert_eq!(log[0]["status"], 403);
    assert_eq!(log[0]["fault"], "InsufficientScope");
    assert_eq!(log[0]["cause"], "Required scope(s): ADMIN");
    assert_eq!(
        stack
            .envoy
            .stat("wasmcustom.oauthv2info.faults.InsufficientScope"),
        1
    );
    // An unknown token is a 401 before any scope is checked.
    let r = with_auth(&stack.envoy, "/", Some("Bearer nope"));
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.text(), FAULT_INVALID_ACCESS);
}

// ------------------------------------------ SetOAuthV2Info on access_token

/// VerifyAccessToken, GetOAuthV2Info and SetOAuthV2Info on the token
/// VerifyAccessToken found: one lookup serves both reads (the cache off,
/// so every lookup is a callout), the write is seen by a later request.
#[test]
fn verify_then_set_on_access_token_writes_what_later_requests_see() {
    let stack = Stack::start_with(
        plugin(
            &[
                VERIFY,
                r#"<GetOAuthV2Info name="G"><AccessToken ref="access_token"/></GetOAuthV2Info>"#,
                r#"<SetOAuthV2Info name="S"><AccessToken ref="access_token"/><Attributes>
                     <Attribute name="note" ref="request.header.x-note-in"/>
                     <Attribute name="app" ref="client_id"/>
                   </Attributes></SetOAuthV2Info>"#,
            ],
            json!({
                "cache": {"enabled": false},
                "request_headers": {
                    "x-note": "accesstoken.note",
                    "x-get-note": "oauthv2accesstoken.G.accesstoken.note",
                    "x-set-note": "oauthv2accesstoken.S.note",
                    "x-set-app": "oauthv2accesstoken.S.app",
                    "x-set-failed": "oauthV2.S.failed"
                }
            }),
        ),
        |spec| spec.concurrency = 1,
    );
    stack.service.create_app("c1", json!({}));
    stack
        .service
        .import_access_token("c1", "tok", "approved", 3600, json!({"keep": "me"}));

    let r = stack.envoy.request(
        "GET",
        "/",
        &[("authorization", b"Bearer tok"), ("x-note-in", b"first")],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.upstream_header("x-note"), None, "not yet written");
    assert_eq!(r.upstream_header("x-get-note"), None);
    assert_eq!(r.upstream_header("x-set-failed").as_deref(), Some("false"));
    assert_eq!(r.upstream_header("x-set-note").as_deref(), Some("first"));
    assert_eq!(r.upstream_header("x-set-app").as_deref(), Some("c1"));
    assert_eq!(
        callouts(&stack.envoy),
        2,
        "one lookup for VerifyAccessToken and GetOAuthV2Info, one update"
    );
    let p = stack.service.introspect("tok", "access_token");
    assert_eq!(p["profile"]["attributes"]["note"], "first", "{p}");
    assert_eq!(p["profile"]["attributes"]["app"], "c1", "{p}");
    assert_eq!(p["profile"]["attributes"]["keep"], "me", "{p}");

    // A later request: VerifyAccessToken sees the attribute; the note
    // header absent, that attribute is skipped, not cleared.
    let r = with_auth(&stack.envoy, "/", Some("Bearer tok"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.upstream_header("x-note").as_deref(), Some("first"));
    assert_eq!(r.upstream_header("x-get-note").as_deref(), Some("first"));
    assert_eq!(r.upstream_header("x-set-note").as_deref(), Some("first"));
    let p = stack.service.introspect("tok", "access_token");
    assert_eq!(p["profile"]["attributes"]["note"], "first", "{p}");
    assert_eq!(
        callouts(&stack.envoy),
        4,
        "one lookup, one update (app again)"
    );

    // VerifyAccessToken failing ends the request: no policy after it runs.
    let r = stack.envoy.request(
        "GET",
        "/",
        &[("authorization", b"Bearer unknown"), ("x-note-in", b"x")],
        b"",
    );
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.text(), FAULT_INVALID_ACCESS);
    assert_eq!(callouts(&stack.envoy), 5, "the lookup alone");
}

/// The same with the profile cache on: the write is read back from the
/// cache by the next request (read-your-writes).
#[test]
fn verify_then_set_with_the_cache_reads_its_own_write() {
    let stack = Stack::start_with(
        plugin(
            &[
                VERIFY,
                r#"<SetOAuthV2Info name="S"><AccessToken ref="access_token"/><Attributes>
                     <Attribute name="note" ref="request.header.x-note-in"/>
                   </Attributes></SetOAuthV2Info>"#,
            ],
            json!({"request_headers": {"x-note": "accesstoken.note"}}),
        ),
        |spec| spec.concurrency = 1,
    );
    stack.service.create_app("c1", json!({}));
    stack
        .service
        .import_access_token("c1", "tok", "approved", 3600, json!({}));
    for (i, note) in ["one", "two", "three"].iter().enumerate() {
        let r = stack.envoy.request(
            "GET",
            "/",
            &[
                ("authorization", b"Bearer tok"),
                ("x-note-in", note.as_bytes()),
            ],
            b"",
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let before = ["one", "two", "three"][..i].last().copied();
        assert_eq!(
            r.upstream_header("x-note").as_deref(),
            before,
            "request {i} sees the previous write"
        );
    }
    let r = with_auth(&stack.envoy, "/", Some("Bearer tok"));
    assert_eq!(r.upstream_header("x-note").as_deref(), Some("three"));
}

// --------------------------------------------------------- step conditions

#[test]
fn step_conditions_skip_or_run_policies() {
    let stack = Stack::start_with(
        plugin(
            &[],
            json!({
                "basepath": "/v1/orders",
                "policies": [
                    {"policy": r#"<GetOAuthV2Info name="G"><AccessToken ref="request.queryparam.t"/></GetOAuthV2Info>"#,
                     "condition": "proxy.pathsuffix MatchesPath \"/items/**\""},
                    {"policy": r#"<SetOAuthV2Info name="S"><AccessToken ref="request.queryparam.t"/><Attributes><Attribute name="seen" ref="request.queryparam.v"/></Attributes></SetOAuthV2Info>"#,
                     "condition": "request.verb = \"POST\""},
                ],
                "request_headers": {
                    "x-suffix": "proxy.pathsuffix",
                    "x-basepath": "proxy.basepath",
                    "x-g-failed": "oauthV2.G.failed",
                    "x-g-scope": "oauthv2accesstoken.G.scope",
                    "x-g-seen": "oauthv2accesstoken.G.accesstoken.seen",
                    "x-s-failed": "oauthV2.S.failed",
                    "x-s-seen": "oauthv2accesstoken.S.seen"
                }
            }),
        ),
        |spec| spec.concurrency = 1,
    );
    stack.service.create_app("c1", json!({}));
    stack
        .service
        .import_access_token("c1", "tok", "approved", 3600, json!({}));
    let seen =
        || stack.service.introspect("tok", "access_token")["profile"]["attributes"]["seen"].clone();

    // Under /items, a GET: G runs, S is skipped.
    let r = stack.envoy.get("/v1/orders/items/7?t=tok&v=1");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.upstream_header("x-suffix").as_deref(), Some("/items/7"));
    assert_eq!(
        r.upstream_header("x-basepath").as_deref(),
        Some("/v1/orders")
    );
    assert_eq!(r.upstream_header("x-g-failed").as_deref(), Some("false"));
    assert_eq!(
        r.upstream_header("x-g-scope").as_deref(),
        Some("READ WRITE")
    );
    assert_eq!(
        r.upstream_header("x-s-failed"),
        None,
        "a skipped policy sets nothing"
    );
    assert_eq!(r.upstream_header("x-s-seen"), None);
    assert_eq!(seen(), Value::Null, "a GET writes nothing");
    assert_eq!(callouts(&stack.envoy), 1);

    // Neither condition holds: a token that would fault is never looked up.
    let r = stack.envoy.get("/v1/orders/7?t=bogus&v=1");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.upstream_header("x-suffix").as_deref(), Some("/7"));
    assert_eq!(r.upstream_header("x-g-failed"), None);
    assert_eq!(r.upstream_header("x-s-failed"), None);
    assert_eq!(callouts(&stack.envoy), 1, "no callout for skipped policies");
    assert_eq!(
        stack
            .envoy
            .stat("wasmcustom.oauthv2info.policy.G.executions"),
        1
    );

    // A POST outside /items: S writes, G is skipped.
    let r = stack
        .envoy
        .request("POST", "/v1/orders/7?t=tok&v=2", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.upstream_header("x-g-failed"), None);
    assert_eq!(r.upstream_header("x-s-failed").as_deref(), Some("false"));
    assert_eq!(r.upstream_header("x-s-seen").as_deref(), Some("2"));
    assert_eq!(seen(), "2");

    // A GET under /items sees it, and writes nothing.
    let r = stack.envoy.get("/v1/orders/items/9/parts?t=tok&v=3");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.upstream_header("x-suffix").as_deref(),
        Some("/items/9/parts")
    );
    assert_eq!(r.upstream_header("x-g-seen").as_deref(), Some("2"));
    assert_eq!(r.upstream_header("x-s-seen"), None);
    assert_eq!(seen(), "2");

    // "/items/**" needs a segment after /items (Apigee's MatchesPath).
    let r = stack.envoy.get("/v1/orders/items?t=bogus");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.upstream_header("x-suffix").as_deref(), Some("/items"));
    assert_eq!(r.upstream_header("x-g-failed"), None);

    // Outside the basepath there is no suffix: the condition is false.
    let r = stack.envoy.get("/other/items/7?t=bogus");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.upstream_header("x-suffix"), None);
    assert_eq!(r.upstream_header("x-g-failed"), None);

    // A policy whose condition holds runs, and faults.
    let r = stack
        .envoy
        .request("POST", "/v1/orders/7?t=bogus&v=4", &[], b"");
    assert_fault(&r, 500, "Invalid Access Token", "invalid_access_token");
    let r = stack.envoy.get("/v1/orders/items/1?t=bogus");
    assert_fault(&r, 500, "Invalid Access Token", "invalid_access_token");
    assert_eq!(seen(), "2");
}

/// VerifyAccessToken under a condition: only the paths that need a
/// token ask for one.
#[test]
fn a_condition_guards_verify_access_token() {
    let stack = Stack::start(plugin(
        &[],
        json!({
            "basepath": "/api",
            "policies": [{"policy": VERIFY, "condition": "not (proxy.pathsuffix MatchesPath \"/public/**\")"}],
            "request_headers": {"x-client-id": "client_id"}
        }),
    ));
    stack.service.create_app("c1", json!({}));
    stack
        .service
        .import_access_token("c1", "tok", "approved", 3600, json!({}));
    let r = stack.envoy.get("/api/public/docs");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.upstream_header("x-client-id"), None);
    let r = stack.envoy.get("/api/private");
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.header("www-authenticate").is_some());
    let r = with_auth(&stack.envoy, "/api/private", Some("Bearer tok"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.upstream_header("x-client-id").as_deref(), Some("c1"));
}

// ------------------------------------------------------- load-time refusal

#[test]
fn envoy_validate_refuses_a_malformed_condition_naming_policy_and_element() {
    let set = r#"<SetOAuthV2Info name="S"><AccessToken ref="request.queryparam.t"/><Attributes><Attribute name="a">b</Attribute></Attributes></SetOAuthV2Info>"#;
    let with = |condition: &str| {
        plugin(
            &[],
            json!({"basepath": "/v1", "policies": [VERIFY, {"policy": set, "condition": condition}]}),
        )
    };
    let (ok, out) = validate(with(
        "request.verb = \"POST\" and proxy.pathsuffix MatchesPath \"/a/**\"",
    ));
    assert!(ok, "a good condition is accepted:\n{out}");
    for (condition, position) in [
        ("request.verb = \"POST", "at character 16"),
        ("request.verb = = \"POST\"", "at character 16"),
        ("(request.verb = \"POST\"", "at character 1: "),
    ] {
        let (ok, out) = validate(with(condition));
        assert!(!ok, "accepted {condition:?}");
        let line = out
            .lines()
            .find(|l| l.contains("configuration refused"))
            .unwrap_or_else(|| panic!("no refusal line for {condition:?}:\n{out}"));
        let expected = format!("policy \"S\", element <Condition>: {position}");
        assert!(
            line.contains(&expected),
            "{condition:?}: expected {expected:?} in\n{line}"
        );
        assert_eq!(
            out.matches("configuration refused").count(),
            1,
            "one line, once:\n{out}"
        );
    }
}

// ------------------------------------------------------- a migrated proxy

/// policies/migrated-proxy.json, as shipped (only the service key
/// changed): VerifyAccessToken, then GetOAuthV2Info on the verified
/// token's client for GETs under the base path, SetOAuthV2Info on
/// `access_token` for POST and PUT.
#[test]
fn the_shipped_migrated_proxy_runs_its_steps_under_their_conditions() {
    let text = std::fs::read_to_string(repo_root().join("policies/migrated-proxy.json")).unwrap();
    let mut config: Value = serde_json::from_str(&text).unwrap();
    config["token_service"]["credentials"] = json!(format!("Bearer {SERVICE_KEY}"));
    let stack = Stack::start(config);
    stack.service.create_app("shop", json!({}));
    stack
        .service
        .import_access_token("shop", "tok-shop", "approved", 3600, json!({}));
    let bearer = Some("Bearer tok-shop");

    // GET under the base path: VerifyAccessToken and GetApp; no write.
    let r = with_auth(&stack.envoy, "/v1/orders/7", bearer);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.upstream_header("x-client-id").as_deref(), Some("shop"));
    assert_eq!(
        r.upstream_header("x-developer-email").as_deref(),
        Some("shop@example.com")
    );
    assert_eq!(
        r.upstream_header("x-redirect-uris").as_deref(),
        Some("https://example.com/cb")
    );
    assert_eq!(r.upstream_header("x-last-order"), None);

    // POST: SetLastOrder writes the path suffix; GetApp does not run.
    let auth = [("authorization", &b"Bearer tok-shop"[..])];
    let r = stack.envoy.request("POST", "/v1/orders/42", &auth, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.upstream_header("x-last-order").as_deref(), Some("/42"));
    assert_eq!(r.upstream_header("x-redirect-uris"), None);
    let stored = stack.service.introspect("tok-shop", "access_token");
    assert_eq!(
        stored["profile"]["attributes"]["last.order"], "/42",
        "{stored}"
    );

    // Outside the base path, GetApp's condition is false (no suffix).
    let r = with_auth(&stack.envoy, "/v2/other", bearer);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.upstream_header("x-client-id").as_deref(), Some("shop"));
    assert_eq!(r.upstream_header("x-redirect-uris"), None);

    // No token: VerifyAccessToken's 401, whatever the method.
    for method in ["GET", "POST"] {
        let r = stack.envoy.request(method, "/v1/orders/7", &[], b"");
        assert_eq!(r.status, 401, "{method}: {}", r.text());
        assert!(
            r.text().contains("oauth.v2.InvalidAccessToken"),
            "{}",
            r.text()
        );
    }
}
