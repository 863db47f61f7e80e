//! VerifyAccessToken through the flow: the bearer token, its faults and
//! statuses, scopes and prefixes, `continueOnError`, and its unprefixed
//! variables (docs/decisions.md#verifyaccesstoken).

use super::tests::{config, profile, request, run, var, with_headers, Call, NOW};
use super::*;
use crate::config::parse_config;
use serde_json::json;

const VERIFY: &str = r#"<OAuthV2 name="Verify"><Operation>VerifyAccessToken</Operation></OAuthV2>"#;

fn bearer(authorization: &str) -> RequestInfo {
    with_headers(request("/"), &[("authorization", authorization)])
}

/// Tokens the tests' service knows: `good` (scope READ), `old`
/// (expired), `gone` (revoked).
fn verify_service(call: &Call) -> (Option<u16>, String) {
    match call {
        Call::Lookup(_, t) if t == "good" => {
            (Some(200), profile(json!({"tier": "gold"})).to_string())
        }
        Call::Lookup(_, t) if t == "old" => {
            let mut p = profile(json!({}));
            p["profile"]["expires_at"] = json!((NOW - 1).to_string());
            (Some(200), p.to_string())
        }
        Call::Lookup(_, t) if t == "gone" => {
            let mut p = profile(json!({}));
            p["profile"]["status"] = json!("revoked");
            (Some(200), p.to_string())
        }
        Call::Update(t, _) if t == "good" => (
            Some(200),
            profile(json!({"tier": "gold", "seen": "1"})).to_string(),
        ),
        _ => (Some(200), r#"{"active":false}"#.into()),
    }
}

/// VerifyAccessToken reads `Authorization: Bearer <token>` (the scheme
/// in any case, then spaces) and sets its variables without a prefix.
#[test]
fn verify_access_token_reads_the_bearer_token() {
    let c = config(&[VERIFY]);
    for header in [
        "Bearer good",
        "bearer good",
        "BEARER   good ",
        "Bearer\tgood",
    ] {
        let (end, flow, calls) = run(&c, &bearer(header), verify_service);
        assert_eq!(end, FlowOutcome::Continue, "{header:?}");
        assert_eq!(
            calls,
            vec![Call::Lookup(TokenKind::AccessToken, "good".into())]
        );
        assert_eq!(var(&c, &flow, "client_id").as_deref(), Some("app"));
        assert_eq!(var(&c, &flow, "scope").as_deref(), Some("READ"));
        assert_eq!(var(&c, &flow, "status").as_deref(), Some("approved"));
        assert_eq!(var(&c, &flow, "expires_in").as_deref(), Some("60"));
        assert_eq!(var(&c, &flow, "accesstoken.tier").as_deref(), Some("gold"));
        assert_eq!(var(&c, &flow, "access_token").as_deref(), Some("good"));
        assert_eq!(
            var(&c, &flow, "oauthV2.Verify.failed").as_deref(),
            Some("false")
        );
    }
    // The token value is a secret: not published by default.
    let (_, flow, _) = run(&c, &bearer("Bearer good"), verify_service);
    let mut published = Vec::new();
    flow.visit_published(&c, &mut Vec::new(), |p| published.push(p.name.to_vec()));
    assert!(published.iter().any(|n| n == b"client_id"));
    assert!(published.iter().all(|n| n != b"access_token"));
}

#[test]
fn verify_access_token_faults_have_their_statuses() {
    let c = config(&[VERIFY]);
    for (header, fault) in [
        (None, Fault::MissingAccessToken),
        (Some("good"), Fault::MissingAccessToken),
        (Some("Bearergood"), Fault::MissingAccessToken),
        (Some("Bearer"), Fault::MissingAccessToken),
        (Some("Bearer   "), Fault::MissingAccessToken),
        (Some("Basic dXNlcjpwYXNz"), Fault::MissingAccessToken),
        (Some("Bearer nope"), Fault::VerifyInvalidAccessToken),
        // Revoked: Apigee's own fault for it.
        (Some("Bearer gone"), Fault::AccessTokenNotApproved),
        (Some("Bearer old"), Fault::VerifyAccessTokenExpired),
    ] {
        let r = match header {
            Some(h) => bearer(h),
            None => request("/"),
        };
        let (end, flow, calls) = run(&c, &r, verify_service);
        assert_eq!(end, FlowOutcome::Reply(fault), "{header:?}");
        assert_eq!(
            calls.is_empty(),
            fault == Fault::MissingAccessToken,
            "{header:?}"
        );
        assert_eq!(var(&c, &flow, "fault.name").as_deref(), Some(fault.name()));
        assert_eq!(
            var(&c, &flow, "oauthV2.Verify.failed").as_deref(),
            Some("true")
        );
        assert_eq!(var(&c, &flow, "client_id"), None);
        assert_eq!(flow.reply_policy(), Some(0));
    }
    assert_eq!(Fault::MissingAccessToken.status(), 401);
    assert_eq!(Fault::VerifyAccessTokenExpired.status(), 401);
}

#[test]
fn verify_access_token_scopes_prefix_and_variable() {
    let scoped = |scope: &str| {
        config(&[&format!(
            r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation><Scope>{scope}</Scope></OAuthV2>"#
        )])
    };
    let c = scoped("WRITE  READ");
    assert_eq!(
        run(&c, &bearer("Bearer good"), verify_service).0,
        FlowOutcome::Continue
    );
    let c = scoped("WRITE ADMIN");
    let (end, flow, _) = run(&c, &bearer("Bearer good"), verify_service);
    assert_eq!(end, FlowOutcome::Reply(Fault::InsufficientScope));
    assert_eq!(
        var(&c, &flow, "oauthV2.V.fault.cause").as_deref(),
        Some("Required scope(s): WRITE ADMIN")
    );
    assert_eq!(
        c.plans[0].fault_body(Fault::InsufficientScope),
        r#"{"fault":{"faultstring":"Required scope(s): WRITE ADMIN","detail":{"errorcode":"steps.oauth.v2.InsufficientScope"}}}"#
    );
    assert_eq!(Fault::InsufficientScope.status(), 403);
    // Scopes compare exactly.
    let c = scoped("read");
    assert_eq!(
        run(&c, &bearer("Bearer good"), verify_service).0,
        FlowOutcome::Reply(Fault::InsufficientScope)
    );
    // A token from a variable, with and without a prefix.
    let c = config(&[
        r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation><AccessToken>request.header.x-token</AccessToken><AccessTokenPrefix/></OAuthV2>"#,
    ]);
    let r = with_headers(
        request("/"),
        &[("x-token", "good"), ("authorization", "Bearer nope")],
    );
    assert_eq!(run(&c, &r, verify_service).0, FlowOutcome::Continue);
    // A variable named without <AccessTokenPrefix> holds the bare token
    // (apigee-samples apiproduct-operations sends it in `token`).
    let c = config(&[
        r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation><AccessToken>request.header.token</AccessToken></OAuthV2>"#,
    ]);
    let (end, _, calls) = run(
        &c,
        &with_headers(request("/"), &[("token", "good")]),
        verify_service,
    );
    assert_eq!(end, FlowOutcome::Continue);
    assert_eq!(
        calls,
        vec![Call::Lookup(TokenKind::AccessToken, "good".into())]
    );
    // ... so "Bearer good" there is looked up whole, and is invalid.
    let (end, _, calls) = run(
        &c,
        &with_headers(request("/"), &[("token", "Bearer good")]),
        verify_service,
    );
    assert_eq!(end, FlowOutcome::Reply(Fault::VerifyInvalidAccessToken));
    assert_eq!(
        calls,
        vec![Call::Lookup(TokenKind::AccessToken, "Bearer good".into())]
    );
    // The Authorization header named keeps the default: Bearer stripped,
    // in any case.
    let c = config(&[
        r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation><AccessToken>request.header.Authorization</AccessToken></OAuthV2>"#,
    ]);
    assert_eq!(
        run(&c, &bearer("bEaReR good"), verify_service).0,
        FlowOutcome::Continue
    );
    assert_eq!(
        run(&c, &bearer("good"), verify_service).0,
        FlowOutcome::Reply(Fault::MissingAccessToken)
    );
    let c = config(&[
        r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation><AccessToken>request.queryparam.t</AccessToken><AccessTokenPrefix>Token</AccessTokenPrefix></OAuthV2>"#,
    ]);
    assert_eq!(
        run(&c, &request("/?t=Token%20good"), verify_service).0,
        FlowOutcome::Continue
    );
    assert_eq!(
        run(&c, &request("/?t=good"), verify_service).0,
        FlowOutcome::Reply(Fault::MissingAccessToken)
    );
}

/// `continueOnError` lets the request go on after a VerifyAccessToken
/// fault, with the fault variables set; `enabled="false"` skips it.
#[test]
fn verify_access_token_continue_on_error_and_enabled() {
    let c = config(&[
        r#"<OAuthV2 name="Soft" continueOnError="true"><Operation>VerifyAccessToken</Operation></OAuthV2>"#,
        r#"<OAuthV2 name="Off" enabled="false"><Operation>VerifyAccessToken</Operation></OAuthV2>"#,
    ]);
    let (end, flow, calls) = run(&c, &request("/"), verify_service);
    assert_eq!((end, calls.len()), (FlowOutcome::Continue, 0));
    assert_eq!(
        var(&c, &flow, "oauthV2.Soft.failed").as_deref(),
        Some("true")
    );
    assert_eq!(
        var(&c, &flow, "fault.name").as_deref(),
        Some("InvalidAccessToken")
    );
    assert_eq!(
        var(&c, &flow, "oauthV2.Soft.fault.cause").as_deref(),
        Some("Invalid access token")
    );
    assert_eq!(var(&c, &flow, "oauthV2.Off.failed"), None);
    assert_eq!(flow.reply_policy(), None);
}

/// VerifyAccessToken, then GetOAuthV2Info and SetOAuthV2Info on
/// `access_token`: one lookup serves both reads.
#[test]
fn verify_then_get_and_set_on_access_token() {
    let c = config(&[
        VERIFY,
        r#"<GetOAuthV2Info name="G"><AccessToken ref="access_token"/></GetOAuthV2Info>"#,
        r#"<SetOAuthV2Info name="S"><AccessToken ref="access_token"/><Attributes><Attribute name="seen">1</Attribute><Attribute name="app" ref="client_id"/></Attributes></SetOAuthV2Info>"#,
    ]);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let (end, flow, calls) = run(&c, &bearer("Bearer good"), verify_service);
    assert_eq!(end, FlowOutcome::Continue);
    assert_eq!(
        calls,
        vec![
            Call::Lookup(TokenKind::AccessToken, "good".into()),
            Call::Update(
                "good".into(),
                vec![("seen".into(), "1".into()), ("app".into(), "app".into())]
            ),
        ]
    );
    assert_eq!(
        var(&c, &flow, "oauthv2accesstoken.G.accesstoken.tier").as_deref(),
        Some("gold")
    );
    // The lookup served to G is checked by G's own rules: a revoked
    // token fails Verify, and G never runs.
    let (end, _, calls) = run(&c, &bearer("Bearer gone"), verify_service);
    assert_eq!(
        (end, calls.len()),
        (FlowOutcome::Reply(Fault::AccessTokenNotApproved), 1)
    );
}

/// VerifyAccessToken's unprefixed variables are those of the
/// VerifyAccessToken that ran, as on Apigee: a later `ref="access_token"`
/// reads it even when another VerifyAccessToken, skipped by its condition
/// (another Flow) or failed under `continueOnError`, lies between them in
/// the list.
#[test]
fn unprefixed_verify_variables_are_the_ones_of_the_verify_that_ran() {
    let c = parse_config(
        json!({
            "policies": [
                {"policy": r#"<OAuthV2 name="V1"><Operation>VerifyAccessToken</Operation><AccessToken>request.header.x-a</AccessToken></OAuthV2>"#,
                 "condition": "request.header.flow = \"one\""},
                {"policy": r#"<OAuthV2 name="V2" continueOnError="true"><Operation>VerifyAccessToken</Operation><AccessToken>request.header.x-b</AccessToken></OAuthV2>"#,
                 "condition": "request.header.flow != \"none\""},
                {"policy": r#"<GetOAuthV2Info name="G"><AccessToken ref="access_token"/></GetOAuthV2Info>"#,
                 "condition": "client_id = \"app\""},
            ],
            "request_headers": {"x-tier": "accesstoken.tier"}
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    // V1 runs and succeeds; V2 runs (no x-b: fails, continueOnError); G
    // reads V1's access_token and client_id, and reuses V1's lookup.
    let r = with_headers(request("/"), &[("flow", "one"), ("x-a", "good")]);
    let (end, flow, calls) = run(&c, &r, verify_service);
    assert_eq!(end, FlowOutcome::Continue);
    assert_eq!(
        calls,
        vec![Call::Lookup(TokenKind::AccessToken, "good".into())]
    );
    assert_eq!(var(&c, &flow, "oauthV2.V2.failed").as_deref(), Some("true"));
    assert_eq!(
        var(&c, &flow, "oauthv2accesstoken.G.access_token").as_deref(),
        Some("good")
    );
    let mut tier = String::new();
    assert!(flow.read(&c, &c.request_headers[0].source, &r, &mut tier));
    assert_eq!(tier, "gold");
    // V1 skipped (another Flow), V2 succeeds: G reads V2's.
    let r = with_headers(request("/"), &[("flow", "two"), ("x-b", "good")]);
    let (end, flow, _) = run(&c, &r, verify_service);
    assert_eq!(end, FlowOutcome::Continue);
    assert_eq!(var(&c, &flow, "oauthV2.V1.failed"), None);
    assert_eq!(
        var(&c, &flow, "oauthv2accesstoken.G.access_token").as_deref(),
        Some("good")
    );
    // No VerifyAccessToken succeeded: the variables are unset, G's
    // condition is false and G does not run.
    let r = with_headers(request("/"), &[("flow", "two")]);
    let (end, flow, calls) = run(&c, &r, verify_service);
    assert_eq!((end, calls.len()), (FlowOutcome::Continue, 0));
    assert_eq!(var(&c, &flow, "oauthV2.G.failed"), None);
}
