use oauthv2info_names::TokenKind;

use super::*;

fn get(xml: &str) -> Policy {
    parse_policy(xml, 0).unwrap()
}

fn error(xml: &str) -> ConfigError {
    parse_policy(xml, 0).unwrap_err()
}

#[test]
fn oauthv2_verify_access_token() {
    let p = get(
        r#"<OAuthV2 name="V" continueOnError="true"><DisplayName>Verify</DisplayName><Operation>VerifyAccessToken</Operation></OAuthV2>"#,
    );
    assert_eq!(p.type_name(), "OAuthV2");
    assert!(p.continue_on_error);
    assert_eq!(
        p.kind,
        PolicyKind::Verify(VerifyAccessToken {
            token: None,
            prefix: "Bearer".into(),
            scopes: vec![],
        })
    );
    assert!(p.ignored.is_empty());
    // What the Apigee UI's template carries, as a community policy shows.
    let p = get(
        r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation><AccessToken>request.header.x-token</AccessToken><AccessTokenPrefix></AccessTokenPrefix><Scope>READ  WRITE</Scope>
          <Attributes/><ExternalAuthorization>false</ExternalAuthorization><SupportedGrantTypes/><GenerateResponse enabled="true"/><Tokens/></OAuthV2>"#,
    );
    assert_eq!(
        p.kind,
        PolicyKind::Verify(VerifyAccessToken {
            token: Some("request.header.x-token".into()),
            prefix: "".into(),
            scopes: vec!["READ".into(), "WRITE".into()],
        })
    );
    let ignored: Vec<&str> = p.ignored.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(ignored, ["<ExternalAuthorization>", "<GenerateResponse>"]);
    for (xml, element, problem) in [
        (r#"<OAuthV2 name="V"/>"#, "<Operation>", "is required"),
        (
            r#"<OAuthV2 name="V"><Operation>GenerateAccessToken</Operation></OAuthV2>"#,
            "<Operation>",
            "the token service does that",
        ),
        (
            r#"<OAuthV2 name="V"><Operation>RefreshAccessToken</Operation></OAuthV2>"#,
            "<Operation>",
            "the token service does that",
        ),
        // The operation is named before its elements would be "unknown"
        // (6 of 25 real bundles).
        (
            r#"<OAuthV2 name="V"><Operation>RefreshAccessToken</Operation><RefreshToken>request.formparam.refresh_token</RefreshToken></OAuthV2>"#,
            "<Operation>",
            "RefreshAccessToken issues or changes tokens: the token service does that",
        ),
        (
            r#"<OAuthV2 name="V"><ExternalAuthorizationCode>x</ExternalAuthorizationCode><Operation>GenerateAccessToken</Operation></OAuthV2>"#,
            "<Operation>",
            "GenerateAccessToken issues or changes tokens",
        ),
        (
            r#"<OAuthV2 name="V"><Operation>GenerateJWTAccessToken</Operation><Algorithm>RS256</Algorithm></OAuthV2>"#,
            "<Operation>",
            "GenerateJWTAccessToken issues or changes tokens",
        ),
        (
            r#"<OAuthV2 name="V"><Operation>InvalidateToken</Operation><Tokens><Token type="accesstoken" cascade="true">x</Token></Tokens></OAuthV2>"#,
            "<Operation>",
            "InvalidateToken issues or changes tokens",
        ),
        (
            r#"<OAuthV2 name="V"><Operation>Fly</Operation></OAuthV2>"#,
            "<Operation>",
            "unknown operation \"Fly\"",
        ),
        (
            r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation><AccessToken ref="t"/></OAuthV2>"#,
            "<AccessToken>",
            "the element's text",
        ),
        (
            r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation><AccessToken> </AccessToken></OAuthV2>"#,
            "<AccessToken>",
            "is empty",
        ),
        (
            r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation><AccessToken>{t}</AccessToken></OAuthV2>"#,
            "<AccessToken>",
            "without braces",
        ),
        (
            r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation><AccessTokenPrefix>My Bearer</AccessTokenPrefix></OAuthV2>"#,
            "<AccessTokenPrefix>",
            "one word",
        ),
        (
            r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation><ExternalAuthorization>true</ExternalAuthorization></OAuthV2>"#,
            "<ExternalAuthorization>",
            "did not issue",
        ),
        (
            r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation><Scopes>A</Scopes></OAuthV2>"#,
            "<Scopes>",
            "unknown element",
        ),
        (
            r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation><Scope><A/></Scope></OAuthV2>"#,
            "<Scope>",
            "unexpected element",
        ),
    ] {
        let e = error(xml);
        assert_eq!(e.element, element, "{xml}: {e}");
        assert!(e.problem.contains(problem), "{xml}: {e}");
    }
    let e = error(r#"<Quota name="K"/>"#);
    assert!(e.problem.contains("<OAuthV2> (VerifyAccessToken)"), "{e}");
    assert!(e.problem.contains("<VerifyAPIKey>"), "{e}");
}

#[test]
fn parses_the_documented_get_sample() {
    let p = get(r#"<GetOAuthV2Info name="GetTokenAttributes">
          <AccessToken ref="request.queryparam.access_token"></AccessToken>
        </GetOAuthV2Info>"#);
    assert_eq!(p.name, "GetTokenAttributes");
    assert!(p.enabled);
    assert!(!p.continue_on_error);
    assert_eq!(
        p.kind,
        PolicyKind::Get(GetOAuthV2Info {
            kind: TokenKind::AccessToken,
            token: ValueSource {
                reference: Some("request.queryparam.access_token".into()),
                literal: None
            },
            ignore_access_token_status: false,
        })
    );
}

#[test]
fn parses_common_attributes_and_every_token_kind() {
    for kind in TokenKind::ALL {
        let xml = format!(
            r#"<GetOAuthV2Info async="false" continueOnError="true" enabled="false" name="P 1.x_y-z">
                 <DisplayName>Shown</DisplayName><{0}>literal-value</{0}></GetOAuthV2Info>"#,
            kind.element()
        );
        let p = get(&xml);
        assert!(p.continue_on_error);
        assert!(!p.enabled);
        assert_eq!(p.display_name.as_deref(), Some("Shown"));
        match p.kind {
            PolicyKind::Get(GetOAuthV2Info { kind: k, token, .. }) => {
                assert_eq!(k, kind);
                assert_eq!(token.literal.as_deref(), Some("literal-value"));
                assert_eq!(token.reference, None);
            }
            _ => panic!("not a Get"),
        }
    }
}

#[test]
fn ignore_access_token_status() {
    let p = get(
        r#"<GetOAuthV2Info name="G"><IgnoreAccessTokenStatus>true</IgnoreAccessTokenStatus><AccessToken ref="x"/></GetOAuthV2Info>"#,
    );
    assert!(matches!(
        p.kind,
        PolicyKind::Get(GetOAuthV2Info {
            ignore_access_token_status: true,
            ..
        })
    ));
    // Beside another kind (real bundles: apigee/devrel identity-facade,
    // consumer-data-standards-au oidc): loads, with no effect.
    for (element, value) in [
        ("RefreshToken", "true"),
        ("AuthorizationCode", "true"),
        ("ClientId", "false"),
    ] {
        let p = get(&format!(
            r#"<GetOAuthV2Info name="G"><{element} ref="x"/><IgnoreAccessTokenStatus>{value}</IgnoreAccessTokenStatus></GetOAuthV2Info>"#
        ));
        assert!(matches!(
            p.kind,
            PolicyKind::Get(GetOAuthV2Info {
                ignore_access_token_status: false,
                ..
            })
        ));
        // Nothing is lost (Apigee returns these kinds whatever their
        // status), so no warning.
        assert!(p.ignored.is_empty(), "{:?}", p.ignored);
    }
    // Still a boolean there.
    let e = error(
        r#"<GetOAuthV2Info name="G"><RefreshToken ref="x"/><IgnoreAccessTokenStatus>maybe</IgnoreAccessTokenStatus></GetOAuthV2Info>"#,
    );
    assert_eq!(e.element, "<IgnoreAccessTokenStatus>");
    assert!(e.problem.contains("true or false"), "{e}");
    let e = error(
        r#"<GetOAuthV2Info name="G"><AccessToken ref="x"/><IgnoreAccessTokenStatus>yes</IgnoreAccessTokenStatus></GetOAuthV2Info>"#,
    );
    assert!(e.problem.contains("true or false"), "{e}");
}

#[test]
fn parses_set_with_ref_literal_and_both() {
    let p = get(r#"<SetOAuthV2Info name="SetOAuthV2Info">
          <AccessToken ref="request.queryparam.access_token"></AccessToken>
          <Attributes>
            <Attribute name="department.id" ref="request.queryparam.department_id"></Attribute>
            <Attribute name="foo">bar</Attribute>
            <Attribute name="both" ref="request.header.x">  fallback  </Attribute>
            <Attribute name="edge" ref="">READ, WRITE</Attribute>
          </Attributes>
        </SetOAuthV2Info>"#);
    let PolicyKind::Set(SetOAuthV2Info { attributes, .. }) = p.kind else {
        panic!("not a Set")
    };
    assert_eq!(attributes.len(), 4);
    assert_eq!(attributes[1].value.literal.as_deref(), Some("bar"));
    assert_eq!(
        attributes[2].value.reference.as_deref(),
        Some("request.header.x")
    );
    assert_eq!(attributes[2].value.literal.as_deref(), Some("fallback"));
    assert_eq!(attributes[3].value.reference, None);
    assert_eq!(attributes[3].value.literal.as_deref(), Some("READ, WRITE"));
}

const SET_PREFIX: &str = "<SetOAuthV2Info name='S'><AccessToken ref='t'/><Attributes><Attribute name='a' ref='v'/></Attributes>";

fn set_with(extra: &str) -> String {
    format!("{SET_PREFIX}{extra}</SetOAuthV2Info>")
}

#[test]
fn ignore_unresolved_variables_in_set() {
    for (text, expected) in [
        ("true", Some(true)),
        (" false ", Some(false)),
        ("TRUE", Some(true)),
    ] {
        let p = get(&set_with(&format!(
            "<IgnoreUnresolvedVariables>{text}</IgnoreUnresolvedVariables>"
        )));
        let PolicyKind::Set(SetOAuthV2Info {
            ignore_unresolved_variables,
            ..
        }) = p.kind
        else {
            panic!("not a Set")
        };
        assert_eq!(ignore_unresolved_variables, expected, "{text:?}");
        assert!(p.ignored.is_empty());
    }
    let PolicyKind::Set(SetOAuthV2Info {
        ignore_unresolved_variables,
        ..
    }) = get(&set_with("")).kind
    else {
        panic!("not a Set")
    };
    assert_eq!(ignore_unresolved_variables, None);
    for (extra, problem) in [
        ("<IgnoreUnresolvedVariables>yes</IgnoreUnresolvedVariables>", "must be true or false, not \"yes\""),
        ("<IgnoreUnresolvedVariables/>", "must be true or false, not \"\""),
        ("<IgnoreUnresolvedVariables>true</IgnoreUnresolvedVariables><IgnoreUnresolvedVariables>false</IgnoreUnresolvedVariables>", "appears more than once"),
        ("<IgnoreUnresolvedVariables x='1'>true</IgnoreUnresolvedVariables>", "unknown attribute x"),
    ] {
        let e = error(&set_with(extra));
        assert_eq!(e.element, "<IgnoreUnresolvedVariables>", "{e}");
        assert!(e.problem.contains(problem), "{e}");
    }
    // The same leaf twice (real bundles have it): accepted, with a warning.
    let twice = get(&set_with(
        "<IgnoreUnresolvedVariables>true</IgnoreUnresolvedVariables><IgnoreUnresolvedVariables>true</IgnoreUnresolvedVariables>",
    ));
    assert_eq!(
        twice.ignored,
        vec![(
            "<IgnoreUnresolvedVariables>".to_string(),
            "a second copy with the same value".to_string()
        )]
    );
    let e = error(
        "<GetOAuthV2Info name='G'><AccessToken ref='a'/><IgnoreUnresolvedVariables>true</IgnoreUnresolvedVariables></GetOAuthV2Info>",
    );
    assert_eq!(e.element, "<IgnoreUnresolvedVariables>");
    assert!(
        e.problem.contains("applies to <SetOAuthV2Info> only"),
        "{e}"
    );
}

/// What Apigee's policy schema and UI allow besides the documented
/// elements (docs/decisions.md#elements-and-attributes-apigee-accepts):
/// accepted silently when it says nothing, accepted and reported when
/// it would have meant something, refused when accepting it would
/// mislead.
#[test]
fn schema_elements_and_attributes_apigee_accepts() {
    let get_with = |inner: &str| {
        format!("<GetOAuthV2Info name='G'><AccessToken ref='a'/>{inner}</GetOAuthV2Info>")
    };
    // Silent: UI residue that carries nothing.
    for doc in [
        get_with("<Properties/>"),
        get_with("<Description>Reads the token</Description>"),
        get_with("<FaultRules/>"),
        set_with("<Properties></Properties><Description/><FaultRules/>"),
    ] {
        assert_eq!(get(&doc).ignored, Vec::<(String, String)>::new(), "{doc}");
    }
    // Accepted, reported at load time.
    let reported = |doc: &str| {
        get(doc)
            .ignored
            .into_iter()
            .map(|(e, what)| format!("{e}: {what}"))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        reported(&get_with(
            "<Properties><Property name='p1'>x</Property><Property name='p2'/></Properties>"
        )),
        ["<Properties>: properties p1, p2 (no documented effect on this policy)"]
    );
    assert_eq!(
        reported(&get_with("<OAuthConfig>cfg</OAuthConfig>")),
        ["<OAuthConfig>: the element (no documented effect)"]
    );
    assert_eq!(
        reported("<GetOAuthV2Info name='G' version='1.0' isHybrid='false'><ClientId ref='c' type='string'/></GetOAuthV2Info>"),
        [
            "<GetOAuthV2Info>: attribute version=\"1.0\" (no documented effect)",
            "<GetOAuthV2Info>: attribute isHybrid=\"false\" (no documented effect)",
            "<ClientId>: attribute type=\"string\" (no documented effect on this policy)",
        ]
    );
    assert_eq!(
        reported("<SetOAuthV2Info name='S'><AccessToken ref='t' type='x'/><Attributes><Attribute name='a' ref='v' display='false'/></Attributes></SetOAuthV2Info>"),
        [
            "<AccessToken>: attribute type=\"x\" (no documented effect on this policy)",
            "<Attribute name=\"a\">: attribute display=\"false\" (no documented effect on this policy)",
        ]
    );
    // Refused, with the reason.
    for (doc, element, problem) in [
        (get_with("<FaultRules><FaultRule name='f'/></FaultRules>"), "<FaultRules>", "never run in Apigee"),
        (get_with("<Properties><Other/></Properties>"), "<Properties>", "only <Property>"),
        (get_with("<Properties><Property>x</Property></Properties>"), "<Properties>", "name attribute is required"),
        (set_with("<OAuthConfig>cfg</OAuthConfig>"), "<OAuthConfig>", "unknown element in <SetOAuthV2Info> (known: <DisplayName>, <AccessToken>, <Attributes>, <IgnoreUnresolvedVariables>, <Description>, <Properties>, <FaultRules>)"),
        (get_with("<Scope/>"), "<Scope>", "unknown element in <GetOAuthV2Info> (known: <DisplayName>, <AccessToken>, <RefreshToken>, <AuthorizationCode>, <ClientId>, <IgnoreAccessTokenStatus>, <Description>, <Properties>, <FaultRules>, <OAuthConfig>)"),
        ("<SetOAuthV2Info name='S'><AccessToken ref='t'/><Attributes><Attribute name='a' ref='v' type='x'/></Attributes></SetOAuthV2Info>".to_string(), "<Attribute name=\"a\">", "unknown attribute type"),
        ("<GetOAuthV2Info name='G'><AccessToken ref='a' display='x'/></GetOAuthV2Info>".to_string(), "<AccessToken>", "unknown attribute display"),
    ] {
        let e = error(&doc);
        assert_eq!(e.element, element, "{doc}: {e}");
        assert!(e.problem.contains(problem), "{doc}: {e}");
    }
}

#[test]
fn configuration_errors_name_policy_element_and_problem() {
    let cases: &[(&str, Option<&str>, &str, &str)] = &[
        ("<Foo name='x'/>", Some("#1"), "<Foo>", "unknown policy type"),
        ("<GetOAuthV2Info><AccessToken ref='a'/></GetOAuthV2Info>", Some("#1"), "<GetOAuthV2Info>", "name attribute is required"),
        ("<GetOAuthV2Info name='a/b'><AccessToken ref='a'/></GetOAuthV2Info>", Some("a/b"), "<GetOAuthV2Info>", "contains '/'"),
        ("<GetOAuthV2Info name='G' bogus='1'><AccessToken ref='a'/></GetOAuthV2Info>", Some("G"), "<GetOAuthV2Info>", "unknown attribute bogus"),
        ("<GetOAuthV2Info name='G' enabled='maybe'><AccessToken ref='a'/></GetOAuthV2Info>", Some("G"), "<GetOAuthV2Info>", "enabled must be true or false"),
        ("<GetOAuthV2Info name='G'/>", Some("G"), "<GetOAuthV2Info>", "found none"),
        ("<GetOAuthV2Info name='G'><AccessToken ref='a'/><ClientId ref='b'/></GetOAuthV2Info>", Some("G"), "<GetOAuthV2Info>", "found <AccessToken>, <ClientId>"),
        ("<GetOAuthV2Info name='G'><AccessToken ref='a'/><AccessToken ref='b'/></GetOAuthV2Info>", Some("G"), "<AccessToken>", "more than once"),
        ("<GetOAuthV2Info name='G'><AccessToken/></GetOAuthV2Info>", Some("G"), "<AccessToken>", "needs a ref"),
        ("<GetOAuthV2Info name='G'><AccessToken ref='{a}'/></GetOAuthV2Info>", Some("G"), "<AccessToken>", "without braces"),
        ("<GetOAuthV2Info name='G'><AccessToken ref='a' other='b'/></GetOAuthV2Info>", Some("G"), "<AccessToken>", "unknown attribute other"),
        ("<GetOAuthV2Info name='G'><AccessToken ref='a'><X/></AccessToken></GetOAuthV2Info>", Some("G"), "<AccessToken>", "unexpected element <X>"),
        ("<GetOAuthV2Info name='G'><AccessToken ref='a'/><Scope/></GetOAuthV2Info>", Some("G"), "<Scope>", "unknown element"),
        ("<SetOAuthV2Info name='S'><Attributes><Attribute name='a'>v</Attribute></Attributes></SetOAuthV2Info>", Some("S"), "<AccessToken>", "is required"),
        ("<SetOAuthV2Info name='S'><AccessToken ref='t'/></SetOAuthV2Info>", Some("S"), "<Attributes>", "is required"),
        ("<SetOAuthV2Info name='S'><AccessToken ref='t'/><Attributes/></SetOAuthV2Info>", Some("S"), "<Attributes>", "at least one"),
        ("<SetOAuthV2Info name='S'><AccessToken ref='t'/><Attributes><Attribute name='scope'>READ</Attribute></Attributes></SetOAuthV2Info>", Some("S"), "<Attribute name=\"scope\">", "standard token field"),
        ("<SetOAuthV2Info name='S'><AccessToken ref='t'/><Attributes><Attribute name='refresh_token_expires_in'>1</Attribute></Attributes></SetOAuthV2Info>", Some("S"), "<Attribute name=\"refresh_token_expires_in\">", "standard token field"),
        ("<SetOAuthV2Info name='S'><AccessToken ref='t'/><Attributes><Attribute>v</Attribute></Attributes></SetOAuthV2Info>", Some("S"), "<Attribute>", "name attribute is required"),
        ("<SetOAuthV2Info name='S'><AccessToken ref='t'/><Attributes><Attribute name='a'/></Attributes></SetOAuthV2Info>", Some("S"), "<Attribute name=\"a\">", "needs a ref"),
        ("<SetOAuthV2Info name='S'><AccessToken ref='t'/><Attributes><Attr name='a'>v</Attr></Attributes></SetOAuthV2Info>", Some("S"), "<Attr>", "only <Attribute>"),
        ("<SetOAuthV2Info name='S'><AccessToken ref='t'/><Attributes><Attribute name='a'>v</Attribute></Attributes><IgnoreAccessTokenStatus>true</IgnoreAccessTokenStatus></SetOAuthV2Info>", Some("S"), "<IgnoreAccessTokenStatus>", "unknown element"),
        ("<GetOAuthV2Info name='G'><AccessToken ref='a'/>", Some("#1"), "document", "malformed XML"),
    ];
    for (xml, policy, element, problem) in cases {
        let e = error(xml);
        assert_eq!(e.policy.as_deref(), *policy, "{xml}: {e}");
        assert_eq!(e.element, *element, "{xml}: {e}");
        assert!(e.problem.contains(problem), "{xml}: {e}");
    }
}

#[test]
fn long_names_are_refused() {
    let long = "a".repeat(256);
    let e = error(&format!(
        "<GetOAuthV2Info name='{long}'><AccessToken ref='a'/></GetOAuthV2Info>"
    ));
    assert!(e.problem.contains("longer than 255"));
    let ok = "a".repeat(255);
    assert_eq!(
        get(&format!(
            "<GetOAuthV2Info name='{ok}'><AccessToken ref='a'/></GetOAuthV2Info>"
        ))
        .name,
        ok
    );
}

#[test]
fn references_lists_every_ref() {
    let p = get(
        r#"<SetOAuthV2Info name="S"><AccessToken ref="t"/><Attributes>
        <Attribute name="a" ref="x"/><Attribute name="b">lit</Attribute></Attributes></SetOAuthV2Info>"#,
    );
    let refs: Vec<&str> = p.references().into_iter().map(|(_, r)| r).collect();
    assert_eq!(refs, vec!["t", "x"]);
}

#[test]
fn verify_api_key() {
    let p = get(
        r#"<VerifyAPIKey async="false" continueOnError="false" enabled="true" name="Verify-API-Key-1">
             <DisplayName>Verify API Key-1</DisplayName><Properties/>
             <APIKey ref="request.queryparam.apikey"/>
           </VerifyAPIKey>"#,
    );
    assert_eq!(p.type_name(), "VerifyAPIKey");
    assert_eq!(p.display_name.as_deref(), Some("Verify API Key-1"));
    assert_eq!(
        p.kind,
        PolicyKind::VerifyKey(VerifyApiKey {
            key: "request.queryparam.apikey".into()
        })
    );
    assert!(p.checks_products());
    assert!(
        p.describe().contains("request.queryparam.apikey"),
        "{}",
        p.describe()
    );
    let p = get(
        r#"<VerifyAPIKey name="K" enabled="false"><APIKey ref="request.header.x-apikey"/></VerifyAPIKey>"#,
    );
    assert!(!p.enabled);
    for (xml, element, problem) in [
        (r#"<VerifyAPIKey name="K"/>"#, "<APIKey>", "is required"),
        (
            r#"<VerifyAPIKey name="K"><APIKey/></VerifyAPIKey>"#,
            "<APIKey>",
            "needs a ref attribute",
        ),
        (
            r#"<VerifyAPIKey name="K"><APIKey ref=""/></VerifyAPIKey>"#,
            "<APIKey>",
            "needs a ref attribute",
        ),
        (
            r#"<VerifyAPIKey name="K"><APIKey>request.header.k</APIKey></VerifyAPIKey>"#,
            "<APIKey>",
            "not as text",
        ),
        (
            r#"<VerifyAPIKey name="K"><APIKey ref="{request.header.k}"/></VerifyAPIKey>"#,
            "<APIKey>",
            "",
        ),
        (
            r#"<VerifyAPIKey name="K"><APIKey ref="a" other="b"/></VerifyAPIKey>"#,
            "<APIKey>",
            "unknown attribute other",
        ),
        (
            r#"<VerifyAPIKey name="K"><APIKey ref="a"/><Scope>x</Scope></VerifyAPIKey>"#,
            "<Scope>",
            "unknown element",
        ),
    ] {
        let e = error(xml);
        assert_eq!(e.element, element, "{xml}: {e}");
        assert!(e.problem.contains(problem), "{xml}: {e}");
        assert_eq!(e.policy.as_deref(), Some("K"), "{xml}: {e}");
    }
}

/// The one builder of fault bodies gives each fault the body
/// docs/faults.md shows (`Fault::body`, checked against the docs).
#[test]
fn the_fault_body_builder_gives_each_faults_documented_body() {
    for f in oauthv2info_names::Fault::ALL {
        assert_eq!(
            super::fault_body(f.faultstring(), f.errorcode()),
            f.body(),
            "{f:?}"
        );
    }
    assert_eq!(
        super::fault_body("a \"b\"", "c"),
        r#"{"fault":{"faultstring":"a \"b\"","detail":{"errorcode":"c"}}}"#
    );
}
