use super::*;
use crate::config::parse_config;
use crate::request::Headers;
use serde_json::json;

pub(super) const NOW: i64 = 1_700_000_000_000;

pub(super) fn config(policies: &[&str]) -> FilterConfig {
    parse_config(json!({ "policies": policies }).to_string().as_bytes()).unwrap()
}

pub(super) fn request(path: &str) -> RequestInfo {
    RequestInfo {
        method: b"GET".to_vec(),
        path: path.as_bytes().to_vec(),
        ..RequestInfo::default()
    }
}

pub(super) fn with_headers(mut r: RequestInfo, headers: &[(&str, &str)]) -> RequestInfo {
    r.headers = Headers::All(
        headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect(),
    );
    r
}

pub(super) fn profile(attributes: serde_json::Value) -> serde_json::Value {
    json!({"active": true, "profile": {
        "access_token": "good", "client_id": "app", "scope": "READ", "status": "approved",
        "expires_at": (NOW + 60_000).to_string(), "issued_at": NOW.to_string(),
        "refresh_token": "r1", "attributes": attributes}})
}

/// A callout as the tests see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Call {
    Lookup(TokenKind, String),
    Update(String, Vec<(String, String)>),
}

/// Drives a flow to its end, answering with `service`.
pub(super) fn run(
    config: &FilterConfig,
    request: &RequestInfo,
    mut service: impl FnMut(&Call) -> (Option<u16>, String),
) -> (FlowOutcome, Flow, Vec<Call>) {
    let mut flow = Flow::new();
    flow.now_ms = NOW;
    let mut calls = Vec::new();
    loop {
        match flow.advance(config, request) {
            FlowOutcome::Wait => {
                let call = match flow.pending().unwrap() {
                    Pending::Lookup { kind, token } => {
                        Call::Lookup(*kind, flow.text(token).to_string())
                    }
                    Pending::Update { token, attributes } => {
                        Call::Update(flow.text(token).to_string(), attributes.clone())
                    }
                };
                let (status, body) = service(&call);
                calls.push(call);
                flow.on_response(config, request, status, body.as_bytes());
            }
            end => return (end, flow, calls),
        }
    }
}

pub(super) fn var(config: &FilterConfig, flow: &Flow, name: &str) -> Option<String> {
    flow.variable(config, name)
}

pub(super) const GET: &str = r#"<GetOAuthV2Info name="G"><AccessToken ref="request.queryparam.access_token"/></GetOAuthV2Info>"#;

#[test]
fn success_sets_variables_and_failed_false() {
    let c = config(&[GET]);
    let (end, flow, calls) = run(&c, &request("/?access_token=good"), |_| {
        (Some(200), profile(json!({"dept": "7"})).to_string())
    });
    assert_eq!(end, FlowOutcome::Continue);
    assert_eq!(
        calls,
        vec![Call::Lookup(TokenKind::AccessToken, "good".into())]
    );
    assert_eq!(
        var(&c, &flow, "oauthv2accesstoken.G.scope").as_deref(),
        Some("READ")
    );
    assert_eq!(
        var(&c, &flow, "oauthv2accesstoken.G.accesstoken.dept").as_deref(),
        Some("7")
    );
    assert_eq!(
        var(&c, &flow, "oauthv2accesstoken.G.expires_in").as_deref(),
        Some("60")
    );
    assert_eq!(var(&c, &flow, "oauthV2.G.failed").as_deref(), Some("false"));
    assert_eq!(var(&c, &flow, "fault.name"), None);
}

#[test]
fn fault_sets_fault_variables_and_replies() {
    let c = config(&[
        GET,
        r#"<GetOAuthV2Info name="Never"><ClientId>x</ClientId></GetOAuthV2Info>"#,
    ]);
    let (end, flow, calls) = run(&c, &request("/?access_token=bad"), |_| {
        (Some(200), r#"{"active":false}"#.into())
    });
    assert_eq!(end, FlowOutcome::Reply(Fault::InvalidAccessToken));
    assert_eq!(calls.len(), 1, "the second policy must not run");
    assert_eq!(
        var(&c, &flow, "fault.name").as_deref(),
        Some("invalid_access_token")
    );
    assert_eq!(var(&c, &flow, "oauthV2.G.failed").as_deref(), Some("true"));
    assert_eq!(
        var(&c, &flow, "oauthV2.G.fault.name").as_deref(),
        Some("invalid_access_token")
    );
    assert_eq!(
        var(&c, &flow, "oauthV2.G.fault.cause").as_deref(),
        Some("Invalid Access Token")
    );
    assert_eq!(var(&c, &flow, "oauthv2accesstoken.G.scope"), None);
}

#[test]
fn unresolved_token_faults_without_a_callout() {
    let c = config(&[GET]);
    let (end, _, calls) = run(&c, &request("/"), |_| unreachable!());
    assert_eq!(end, FlowOutcome::Reply(Fault::InvalidAccessToken));
    assert!(calls.is_empty());
    // Set to "" counts as set, and an empty token is invalid.
    let (end, _, calls) = run(&c, &request("/?access_token="), |_| unreachable!());
    assert_eq!(end, FlowOutcome::Reply(Fault::InvalidAccessToken));
    assert!(calls.is_empty());
    for (xml, fault) in [
        (
            r#"<GetOAuthV2Info name="R"><RefreshToken ref="nothing"/></GetOAuthV2Info>"#,
            Fault::InvalidRefreshToken,
        ),
        (
            r#"<GetOAuthV2Info name="C"><AuthorizationCode ref="nothing"/></GetOAuthV2Info>"#,
            Fault::InvalidAuthorizationCode,
        ),
        (
            r#"<GetOAuthV2Info name="I"><ClientId ref="nothing"/></GetOAuthV2Info>"#,
            Fault::InvalidClientId,
        ),
    ] {
        let (end, _, _) = run(&config(&[xml]), &request("/"), |_| unreachable!());
        assert_eq!(end, FlowOutcome::Reply(fault));
    }
}

#[test]
fn ref_wins_over_literal_and_literal_is_the_fallback() {
    let c = config(&[
        r#"<GetOAuthV2Info name="G"><AccessToken ref="request.header.x-token">fallback</AccessToken></GetOAuthV2Info>"#,
    ]);
    let with_header = with_headers(request("/"), &[("x-token", "from-header")]);
    let inactive = |_: &Call| (Some(200), r#"{"active":false}"#.to_string());
    let (_, _, calls) = run(&c, &with_header, inactive);
    assert_eq!(
        calls[0],
        Call::Lookup(TokenKind::AccessToken, "from-header".into())
    );
    let (_, _, calls) = run(&c, &request("/"), inactive);
    assert_eq!(
        calls[0],
        Call::Lookup(TokenKind::AccessToken, "fallback".into())
    );
    // Text is never a template.
    let c = config(&[
        r#"<GetOAuthV2Info name="G"><AccessToken>{request.header.x-token}</AccessToken></GetOAuthV2Info>"#,
    ]);
    let (_, _, calls) = run(&c, &with_header, inactive);
    assert_eq!(
        calls[0],
        Call::Lookup(TokenKind::AccessToken, "{request.header.x-token}".into())
    );
}

/// A step whose condition is false is skipped like a disabled policy;
/// conditions read request variables, `proxy.pathsuffix` and what
/// earlier policies set.
#[test]
fn step_conditions_decide_which_policies_run() {
    let c = parse_config(
        json!({
            "basepath": "/v1/orders",
            "policies": [
                {"policy": GET, "condition": "request.header.x-skip != \"yes\""},
                {"policy": r#"<SetOAuthV2Info name="S"><AccessToken ref="request.queryparam.access_token"/><Attributes><Attribute name="seen">1</Attribute></Attributes></SetOAuthV2Info>"#,
                 "condition": "(request.verb = \"POST\" or request.verb = \"PUT\") and proxy.pathsuffix MatchesPath \"/*/items\" and oauthv2accesstoken.G.scope = \"READ\""},
            ]
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let answer = |call: &Call| match call {
        Call::Lookup(..) => (Some(200), profile(json!({})).to_string()),
        Call::Update(..) => (Some(200), profile(json!({"seen": "1"})).to_string()),
    };
    let at = |method: &str, path: &str, headers: &[(&str, &str)]| {
        let mut r = with_headers(request(path), headers);
        r.method = method.as_bytes().to_vec();
        r
    };
    let calls = |r: &RequestInfo| run(&c, r, answer).2;
    let update = Call::Update("good".into(), vec![("seen".into(), "1".into())]);
    let lookup = Call::Lookup(TokenKind::AccessToken, "good".into());
    assert_eq!(
        calls(&at("POST", "/v1/orders/7/items?access_token=good", &[])),
        vec![lookup.clone(), update.clone()]
    );
    assert_eq!(
        calls(&at("PUT", "/v1/orders/8/items?access_token=good", &[])),
        vec![lookup.clone(), update]
    );
    assert_eq!(
        calls(&at("GET", "/v1/orders/7/items?access_token=good", &[])),
        vec![lookup.clone()],
        "the verb is not POST or PUT"
    );
    assert_eq!(
        calls(&at("POST", "/v1/orders/7?access_token=good", &[])),
        vec![lookup],
        "the path suffix does not match"
    );
    // G skipped: its scope is unset, so S's condition is false too.
    let (end, flow, calls) = run(
        &c,
        &at(
            "POST",
            "/v1/orders/7/items?access_token=good",
            &[("x-skip", "yes")],
        ),
        answer,
    );
    assert_eq!((end, calls), (FlowOutcome::Continue, vec![]));
    assert_eq!(
        var(&c, &flow, "oauthV2.G.failed"),
        None,
        "a skipped policy sets nothing"
    );
    assert_eq!(var(&c, &flow, "oauthV2.S.failed"), None);
}

/// A condition that reads `fault.name` runs a policy only after an
/// earlier one failed with `continueOnError`.
#[test]
fn a_condition_can_read_an_earlier_fault() {
    let c = parse_config(
        json!({"policies": [
            r#"<GetOAuthV2Info name="Soft" continueOnError="true"><AccessToken ref="request.queryparam.t"/></GetOAuthV2Info>"#,
            {"policy": r#"<GetOAuthV2Info name="Fallback"><AccessToken>good</AccessToken></GetOAuthV2Info>"#,
             "condition": "oauthV2.Soft.failed = true and fault.name = \"invalid_access_token\""},
        ]})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    let answer = |call: &Call| match call {
        Call::Lookup(_, t) if t == "good" => (Some(200), profile(json!({})).to_string()),
        _ => (Some(200), r#"{"active":false}"#.into()),
    };
    let (_, _, calls) = run(&c, &request("/?t=bad"), answer);
    assert_eq!(
        calls,
        vec![
            Call::Lookup(TokenKind::AccessToken, "bad".into()),
            Call::Lookup(TokenKind::AccessToken, "good".into())
        ]
    );
    let (_, _, calls) = run(&c, &request("/?t=good"), answer);
    assert_eq!(
        calls,
        vec![Call::Lookup(TokenKind::AccessToken, "good".into())]
    );
}

#[test]
fn continue_on_error_and_enabled() {
    let c = config(&[
        r#"<GetOAuthV2Info name="Off" enabled="false"><AccessToken>x</AccessToken></GetOAuthV2Info>"#,
        r#"<GetOAuthV2Info name="Soft" continueOnError="true"><AccessToken>bad</AccessToken></GetOAuthV2Info>"#,
        r#"<GetOAuthV2Info name="Ok"><AccessToken>good</AccessToken></GetOAuthV2Info>"#,
    ]);
    let (end, flow, calls) = run(&c, &request("/"), |call| match call {
        Call::Lookup(_, t) if t == "good" => (Some(200), profile(json!({})).to_string()),
        _ => (Some(200), r#"{"active":false}"#.into()),
    });
    assert_eq!(end, FlowOutcome::Continue);
    assert_eq!(calls.len(), 2);
    let mut names = Vec::new();
    flow.visit_all(&c, &mut Vec::new(), |k, _| {
        names.push(String::from_utf8_lossy(k).into_owned())
    });
    assert!(
        names.iter().all(|n| !n.contains(".Off.")),
        "a disabled policy sets nothing"
    );
    assert_eq!(
        var(&c, &flow, "oauthV2.Soft.failed").as_deref(),
        Some("true")
    );
    assert_eq!(
        var(&c, &flow, "oauthV2.Ok.failed").as_deref(),
        Some("false")
    );
    // fault.name keeps its value after a later success.
    assert_eq!(
        var(&c, &flow, "fault.name").as_deref(),
        Some("invalid_access_token")
    );
}

#[test]
fn service_failures_are_token_service_unavailable() {
    let c = config(&[GET]);
    for (status, body) in [
        (None, ""),
        (Some(503), ""),
        (Some(504), "upstream request timeout"),
        (Some(200), "garbage"),
        (Some(200), "{\"active\":tr"),
    ] {
        let (end, flow, _) = run(&c, &request("/?access_token=t"), |_| {
            (status, body.to_string())
        });
        assert_eq!(
            end,
            FlowOutcome::Reply(Fault::TokenServiceUnavailable),
            "{status:?} {body}"
        );
        assert_eq!(
            var(&c, &flow, "fault.name").as_deref(),
            Some("token_service_unavailable")
        );
    }
    let mut flow = Flow::new();
    let req = request("/?access_token=t");
    assert_eq!(flow.advance(&c, &req), FlowOutcome::Wait);
    flow.on_dispatch_failure(&c, "no healthy upstream".into());
    assert!(flow
        .events
        .iter()
        .any(|e| matches!(e, Event::ServiceFailure { .. })));
    assert_eq!(
        flow.advance(&c, &req),
        FlowOutcome::Reply(Fault::TokenServiceUnavailable)
    );
}

/// `<IgnoreUnresolvedVariables>`: absent or true, an attribute whose
/// ref resolves to nothing is skipped; false, the policy faults with
/// UnresolvedVariable before any call (an empty value is resolved).
#[test]
fn ignore_unresolved_variables_decides_what_an_unresolved_ref_does() {
    let set = |ignore: &str| {
        config(&[&format!(
            r#"<SetOAuthV2Info name="S"><AccessToken ref="request.queryparam.t"/><Attributes>
                 <Attribute name="dept" ref="request.queryparam.dept"/>
                 <Attribute name="fixed">7</Attribute>
               </Attributes>{ignore}</SetOAuthV2Info>"#
        )])
    };
    let ok = |_: &Call| (Some(200), profile(json!({})).to_string());
    for ignore in [
        "",
        "<IgnoreUnresolvedVariables>true</IgnoreUnresolvedVariables>",
    ] {
        let c = set(ignore);
        let (end, _, calls) = run(&c, &request("/?t=tok"), ok);
        assert_eq!(end, FlowOutcome::Continue, "{ignore}");
        assert_eq!(
            calls,
            [Call::Update(
                "tok".into(),
                vec![("fixed".into(), "7".into())]
            )],
            "{ignore}: dept skipped"
        );
        // An unresolved token is no token, whatever the element says.
        let (end, _, calls) = run(&c, &request("/"), ok);
        assert_eq!(end, FlowOutcome::Reply(Fault::InvalidAccessToken));
        assert!(calls.is_empty());
    }
    let c = set("<IgnoreUnresolvedVariables>false</IgnoreUnresolvedVariables>");
    for path in ["/?t=tok", "/?dept=1"] {
        let (end, flow, calls) = run(&c, &request(path), ok);
        assert_eq!(end, FlowOutcome::Reply(Fault::UnresolvedVariable), "{path}");
        assert!(calls.is_empty(), "{path}: no call");
        assert_eq!(
            var(&c, &flow, "fault.name").as_deref(),
            Some("UnresolvedVariable")
        );
        assert_eq!(var(&c, &flow, "oauthV2.S.failed").as_deref(), Some("true"));
        assert_eq!(
            var(&c, &flow, "oauthV2.S.fault.cause").as_deref(),
            Some("Unable to resolve variable")
        );
    }
    // Set, even to "", is resolved; an empty token is still no token.
    let (end, _, calls) = run(&c, &request("/?t=tok&dept="), ok);
    assert_eq!(end, FlowOutcome::Continue);
    assert_eq!(
        calls,
        [Call::Update(
            "tok".into(),
            vec![("dept".into(), "".into()), ("fixed".into(), "7".into())]
        )]
    );
    let (end, _, _) = run(&c, &request("/?t=&dept=1"), ok);
    assert_eq!(end, FlowOutcome::Reply(Fault::InvalidAccessToken));
}

#[test]
fn chained_get_set_get_in_one_request() {
    let c = config(&[
        r#"<GetOAuthV2Info name="Before"><AccessToken ref="request.header.authorization"/></GetOAuthV2Info>"#,
        r#"<SetOAuthV2Info name="Set"><AccessToken ref="oauthv2accesstoken.Before.access_token"/><Attributes>
             <Attribute name="dept" ref="request.queryparam.dept"/>
             <Attribute name="dept">overridden-by-the-last</Attribute>
             <Attribute name="skipped" ref="request.queryparam.none"/>
             <Attribute name="empty" ref="request.queryparam.empty"/>
           </Attributes></SetOAuthV2Info>"#,
        r#"<GetOAuthV2Info name="After"><AccessToken ref="oauthv2accesstoken.Before.access_token"/></GetOAuthV2Info>"#,
    ]);
    let req = with_headers(request("/?dept=7&empty="), &[("authorization", "good")]);
    let mut stored = json!({"old": "1"});
    let (end, flow, calls) = run(&c, &req, |call| match call {
        Call::Lookup(..) => (Some(200), profile(stored.clone()).to_string()),
        Call::Update(_, attributes) => {
            for (k, v) in attributes {
                stored[k] = json!(v);
            }
            (Some(200), profile(stored.clone()).to_string())
        }
    });
    assert_eq!(end, FlowOutcome::Continue);
    assert_eq!(
        calls[1],
        Call::Update(
            "good".into(),
            vec![
                ("dept".into(), "overridden-by-the-last".into()),
                ("empty".into(), "".into())
            ]
        )
    );
    assert_eq!(
        var(&c, &flow, "oauthv2accesstoken.Before.accesstoken.dept"),
        None
    );
    assert_eq!(
        var(&c, &flow, "oauthv2accesstoken.Set.dept").as_deref(),
        Some("overridden-by-the-last")
    );
    assert_eq!(
        var(&c, &flow, "oauthv2accesstoken.Set.old").as_deref(),
        Some("1")
    );
    assert_eq!(
        var(&c, &flow, "oauthv2accesstoken.After.accesstoken.dept").as_deref(),
        Some("overridden-by-the-last")
    );
    assert_eq!(
        var(&c, &flow, "oauthV2.Set.failed").as_deref(),
        Some("false")
    );
}

#[test]
fn a_ref_to_an_earlier_own_field_falls_back_to_the_looked_up_value() {
    // The profile omits access_token: the variable is the looked-up token.
    let c = config(&[
        GET,
        r#"<GetOAuthV2Info name="Again"><AccessToken ref="oauthv2accesstoken.G.access_token"/></GetOAuthV2Info>"#,
    ]);
    let answer =
        json!({"active": true, "profile": {"status": "approved", "expires_at": "-1"}}).to_string();
    let (end, flow, calls) = run(&c, &request("/?access_token=tok%2B1"), |_| {
        (Some(200), answer.clone())
    });
    assert_eq!(end, FlowOutcome::Continue);
    // The second policy's value is the looked-up token, which the
    // first one already found: no second lookup.
    assert_eq!(
        calls,
        [Call::Lookup(TokenKind::AccessToken, "tok+1".into())]
    );
    assert_eq!(
        var(&c, &flow, "oauthv2accesstoken.Again.access_token").as_deref(),
        Some("tok+1")
    );
}

#[test]
fn set_faults_and_set_without_resolved_attributes() {
    let c = config(&[
        r#"<SetOAuthV2Info name="S"><AccessToken ref="request.queryparam.t"/><Attributes>
        <Attribute name="a" ref="request.queryparam.a"/></Attributes></SetOAuthV2Info>"#,
    ]);
    for (status, body, fault) in [
        (
            404,
            r#"{"error":"invalid_access_token"}"#,
            Fault::InvalidAccessToken,
        ),
        (
            409,
            r#"{"error":"invalid_access_token"}"#,
            Fault::InvalidAccessToken,
        ),
        (
            409,
            r#"{"error":"access_token_expired"}"#,
            Fault::AccessTokenExpired,
        ),
        (
            400,
            r#"{"error":"invalid_request"}"#,
            Fault::TokenServiceUnavailable,
        ),
        (500, "", Fault::TokenServiceUnavailable),
    ] {
        let (end, flow, _) = run(&c, &request("/?t=x&a=1"), |_| {
            (Some(status), body.to_string())
        });
        assert_eq!(end, FlowOutcome::Reply(fault), "{status} {body}");
        assert_eq!(
            var(&c, &flow, "oauthV2.S.fault.name").as_deref(),
            Some(fault.name())
        );
    }
    // No attribute resolved: the token is checked by introspection.
    let (end, flow, calls) = run(&c, &request("/?t=good"), |_| {
        (Some(200), profile(json!({"k": "v"})).to_string())
    });
    assert_eq!(end, FlowOutcome::Continue);
    assert!(matches!(calls[0], Call::Lookup(TokenKind::AccessToken, _)));
    assert_eq!(
        var(&c, &flow, "oauthv2accesstoken.S.k").as_deref(),
        Some("v")
    );
    let (end, _, _) = run(&c, &request("/?t=bad"), |_| {
        (Some(200), r#"{"active":false}"#.into())
    });
    assert_eq!(end, FlowOutcome::Reply(Fault::InvalidAccessToken));
}

#[test]
fn callout_requests_are_well_formed() {
    let c = config(&[
        r#"<GetOAuthV2Info name="R"><RefreshToken>a b&amp;c=d</RefreshToken></GetOAuthV2Info>"#,
    ]);
    let mut flow = Flow::new();
    assert_eq!(flow.advance(&c, &request("/")), FlowOutcome::Wait);
    let (path, content_type, body) = crate::protocol::request(&flow, &c).unwrap();
    assert_eq!(path, "/oauth2/introspect");
    assert_eq!(content_type, "application/x-www-form-urlencoded");
    assert_eq!(body, b"token=a%20b%26c%3Dd&token_type_hint=refresh_token");
    let c = config(&[
        r#"<SetOAuthV2Info name="S"><AccessToken>t"</AccessToken><Attributes><Attribute name="n">v&#1;</Attribute><Attribute name="b\">é&#9;&#xa;&#127;/</Attribute></Attributes></SetOAuthV2Info>"#,
    ]);
    let mut flow = Flow::new();
    assert_eq!(flow.advance(&c, &request("/")), FlowOutcome::Wait);
    let (path, content_type, body) = crate::protocol::request(&flow, &c).unwrap();
    assert_eq!(path, "/v1/accesstokens/attributes");
    assert_eq!(content_type, "application/json");
    let expected = json!({"token": "t\"", "attributes": [
        {"name": "n", "value": "v\u{1}"},
        {"name": "b\\", "value": "é\t\n\u{7f}/"},
    ]});
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v, expected);
    // Byte for byte serde_json's compact form (the body is written
    // without it: docs/performance.md#module-size).
    assert_eq!(String::from_utf8(body).unwrap(), expected.to_string());
}

#[test]
fn learned_profiles_replay_from_a_cache_entry() {
    let c = config(&[GET]);
    let req = request("/?access_token=good");
    let mut flow = Flow::new();
    flow.now_ms = NOW;
    assert_eq!(flow.advance(&c, &req), FlowOutcome::Wait);
    let learned = flow
        .on_response(
            &c,
            &RequestInfo::default(),
            Some(200),
            profile(json!({})).to_string().as_bytes(),
        )
        .unwrap();
    assert_eq!(learned.token, "good");
    let Answer::Known(p) = &learned.answer else {
        panic!("unknown")
    };
    let entry = crate::cache::encode(TokenKind::AccessToken, b"good", NOW + 60_000, NOW, Some(p));
    let at = crate::cache::EntryHead::parse(&entry).unwrap().body_at();
    let mut again = Flow::new();
    again.now_ms = NOW + 30_000;
    assert_eq!(again.advance(&c, &req), FlowOutcome::Wait);
    assert!(again.on_cached(&c, &RequestInfo::default(), entry, at, None));
    assert_eq!(again.advance(&c, &req), FlowOutcome::Continue);
    assert_eq!(
        var(&c, &again, "oauthv2accesstoken.G.expires_in").as_deref(),
        Some("30")
    );
    // A corrupt entry is refused and the flow still waits.
    let mut third = Flow::new();
    assert_eq!(third.advance(&c, &req), FlowOutcome::Wait);
    assert!(!third.on_cached(&c, &RequestInfo::default(), vec![1, 2, 3], 1, None));
    assert!(third.pending().is_some());
}

#[test]
fn published_variables_follow_publish_and_secrets() {
    let c = parse_config(json!({"policies": [GET], "publish": ["oauthv2accesstoken.*.scope", "oauthv2accesstoken.*.access_token", "oauthv2accesstoken.G.accesstoken.a*", "oauthV2.**"]}).to_string().as_bytes());
    assert!(c.is_err(), "a* is not a whole segment");
    let c = parse_config(json!({"policies": [GET], "publish": ["oauthv2accesstoken.*.scope", "oauthv2accesstoken.*.access_token", "oauthv2accesstoken.G.accesstoken.a", "oauthV2.**"]}).to_string().as_bytes()).unwrap();
    let (_, flow, _) = run(&c, &request("/?access_token=good"), |_| {
        (Some(200), profile(json!({"a": "1", "b": "2"})).to_string())
    });
    let mut published = Vec::new();
    flow.visit_published(&c, &mut Vec::new(), |p| {
        published.push((
            String::from_utf8_lossy(p.name).into_owned(),
            String::from_utf8_lossy(p.value).into_owned(),
            p.header,
        ))
    });
    assert_eq!(
        published,
        [
            (
                "oauthv2accesstoken.G.scope".to_string(),
                "READ".to_string(),
                None
            ),
            (
                "oauthv2accesstoken.G.accesstoken.a".to_string(),
                "1".to_string(),
                None
            ),
            ("oauthV2.G.failed".to_string(), "false".to_string(), None),
        ]
    );
}
