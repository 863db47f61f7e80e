//! SetOAuthV2Info through Envoy: updates seen in the request and later,
//! refused updates that change nothing, continueOnError and enabled.

use serde_json::{json, Value};

use crate::support::*;

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

// ------------------------------------------------ IgnoreUnresolvedVariables

/// The two shipped examples, in one Envoy: `true` skips the attribute whose
/// ref resolves to nothing; `false` makes it the UnresolvedVariable fault,
/// without a call, and nothing is written.
#[test]
fn ignore_unresolved_variables_true_skips_and_false_faults() {
    let read = |f: &str| std::fs::read_to_string(repo_root().join("policies").join(f)).unwrap();
    for (file, strict) in [
        ("set-ignore-unresolved-variables.xml", false),
        ("set-unresolved-is-a-fault.xml", true),
    ] {
        let stack = Stack::start_with(plugin(&[&read(file)], json!({})), |spec| {
            spec.access_log = vec![
                ("fault", "%FILTER_STATE(wasm.fault.name:PLAIN)%".into()),
                ("md_fault", "%DYNAMIC_METADATA(apigee:fault.name)%".into()),
            ];
        });
        stack.service.create_app("iuv", json!({}));
        stack.service.import_access_token(
            "iuv",
            "tok-iuv",
            "approved",
            3600,
            json!({"keep": "me"}),
        );
        // Resolved: written either way.
        let r = stack.envoy.get("/?access_token=tok-iuv&department_id=5");
        assert_eq!(r.status, 200, "{file}: {}", r.text());
        let v = stack.service.introspect("tok-iuv", "access_token");
        assert_eq!(v["profile"]["attributes"]["department.id"], "5", "{file}");

        let callouts = stack.envoy.stat("wasmcustom.oauthv2info.callouts");
        let r = stack.envoy.get("/?access_token=tok-iuv");
        let log = stack.envoy.access_log(2);
        if strict {
            assert_eq!(r.status, 500, "{file}: {}", r.text());
            assert_eq!(
                r.text(),
                r#"{"fault":{"faultstring":"Unable to resolve variable","detail":{"errorcode":"steps.oauth.v2.UnresolvedVariable"}}}"#
            );
            assert_eq!(log[1]["fault"], "UnresolvedVariable");
            assert_eq!(log[1]["md_fault"], "UnresolvedVariable", "{}", log[1]);
            assert_eq!(
                stack.envoy.stat("wasmcustom.oauthv2info.callouts"),
                callouts,
                "no call"
            );
            assert_eq!(
                stack
                    .envoy
                    .stat("wasmcustom.oauthv2info.faults.UnresolvedVariable"),
                1
            );
        } else {
            // Nothing to write but the token is checked: the request goes on.
            assert_eq!(r.status, 200, "{file}: {}", r.text());
            assert!(log[1]["fault"].is_null(), "{file}: {}", log[1]);
        }
        let v = stack.service.introspect("tok-iuv", "access_token");
        assert_eq!(
            v["profile"]["attributes"]["department.id"], "5",
            "{file}: unchanged"
        );
        assert_eq!(v["profile"]["attributes"]["keep"], "me");
    }
}
