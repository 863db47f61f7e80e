use super::*;

const GET: &str = r#"<GetOAuthV2Info name="GetTokenAttributes"><AccessToken ref="request.queryparam.access_token"/></GetOAuthV2Info>"#;

fn config(json: serde_json::Value) -> Result<FilterConfig, ConfigError> {
    parse_config(json.to_string().as_bytes())
}

/// A step condition is checked when the configuration loads: a
/// malformed one is refused with the policy and the position, a
/// response variable is refused, an unknown variable is a warning.
#[test]
fn step_conditions_are_checked_at_load_time() {
    let with = |condition: &str| {
        config(serde_json::json!({"policies": [{"policy": GET, "condition": condition}]}))
    };
    let e = with("request.verb = \"GET").unwrap_err();
    assert_eq!(e.policy.as_deref(), Some("GetTokenAttributes"));
    assert_eq!(e.element, "<Condition>");
    assert!(e.problem.starts_with("at character 16: "), "{e}");
    let line = e.to_string();
    assert!(
        line.starts_with("policy \"GetTokenAttributes\", element <Condition>: at character 16: "),
        "{line}"
    );
    let e = with("request.verb = = \"GET\"").unwrap_err();
    assert!(e.problem.starts_with("at character 16"), "{e}");
    let e = with("response.status.code = 200").unwrap_err();
    assert!(e.problem.contains("\"response.status.code\""), "{e}");
    let c = with("request.verb = \"GET\" and nobody.sets = 1 or x.y").unwrap();
    assert_eq!(c.warnings.len(), 3, "{:?}", c.warnings);
    assert!(c
        .warnings
        .iter()
        .any(|w| w.contains("\"nobody.sets\" is neither")));
    assert!(
        c.warnings.iter().any(|w| w.contains("parentheses")),
        "{:?}",
        c.warnings
    );
    // A condition's reads are the request's reads.
    let c = with("request.header.X-Mode = \"a\" and proxy.pathsuffix = \"/\"").unwrap();
    assert!(c.needs_path);
    assert!(
        matches!(&c.header_reads, HeaderReads::Named(n) if n.contains(&"x-mode".to_string())),
        "{:?}",
        c.header_reads
    );
    let reads = &c.conditions[0].as_ref().unwrap().reads;
    assert_eq!(
        reads[1],
        VarRef::Request(RequestVar::PathSuffix {
            basepath: "/".into()
        })
    );
}

#[test]
fn defaults() {
    let c = config(serde_json::json!({ "policies": [GET] })).unwrap();
    assert_eq!(c.token_service.cluster, "token_service");
    assert_eq!(c.token_service.authority, "token_service");
    assert_eq!(c.token_service.path, "/oauth2/introspect");
    assert_eq!(
        c.token_service.attributes_path,
        "/v1/accesstokens/attributes"
    );
    assert_eq!(c.token_service.timeout_ms, 500);
    assert_eq!(c.token_service.credentials, None);
    assert_eq!(c.metadata_namespace, "apigee");
    assert!(!c.export_secrets);
    assert!(c.publish.matches("anything.at.all"));
    assert!(c.request_headers.is_empty());
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert!(c.cache.enabled);
    assert!(!c.needs_form_body);
    assert_eq!(c.header_reads, HeaderReads::Named(vec![]));
    assert_eq!(c.metadata.bridge, MetadataBridge::Lua);
}

#[test]
fn full_envelope() {
    let c = config(serde_json::json!({
        "token_service": {"cluster": "ts", "authority": "token-service", "path": "/i", "attributes_path": "/a",
                          "timeout_ms": 250, "credentials": "Bearer k"},
        "policies": [GET, "<SetOAuthV2Info name='S'><AccessToken ref='request.formparam.t'/><Attributes><Attribute name='a'>b</Attribute></Attributes></SetOAuthV2Info>"],
        "metadata_namespace": "ns",
        "request_headers": {"X-Developer-Email": "oauthv2accesstoken.GetTokenAttributes.developer.email"},
        "publish": ["oauthv2accesstoken.*.scope", "fault.name"],
        "export_secrets": true,
        "cache": {"enabled": false, "ttl_ms": 1000, "negative_ttl_ms": 0, "max_entries": 5}
    }))
    .unwrap();
    assert_eq!(c.token_service.authority, "token-service");
    assert_eq!(c.token_service.timeout_ms, 250);
    assert_eq!(c.token_service.credentials.as_deref(), Some("Bearer k"));
    assert_eq!(c.policies.len(), 2);
    assert_eq!(c.request_headers.len(), 1);
    assert_eq!(c.request_headers[0].header, "x-developer-email");
    assert_eq!(
        c.request_headers[0].variable,
        "oauthv2accesstoken.GetTokenAttributes.developer.email"
    );
    assert_eq!(
        c.request_headers[0].source,
        VarRef::Output {
            policy: 0,
            output: 10,
            or_attribute: None
        }
    );
    assert!(c.publish.matches("oauthv2accesstoken.P.scope"));
    assert!(!c.publish.matches("oauthv2accesstoken.P.client_id"));
    assert!(c.export_secrets);
    assert!(c.needs_form_body);
    assert_eq!(
        c.header_reads,
        HeaderReads::Named(vec!["content-type".into()])
    );
    assert!(!c.cache.enabled);
    assert_eq!(c.cache.max_entries, 5);
}

#[test]
fn the_lookup_budget_has_a_default_and_can_be_set_or_turned_off() {
    let budget = |v: serde_json::Value| {
        config(serde_json::json!({"policies": [GET], "token_service": {"lookup_budget": v}}))
            .unwrap()
            .token_service
            .lookup_budget
    };
    let default = config(serde_json::json!({"policies": [GET]}))
        .unwrap()
        .token_service
        .lookup_budget;
    assert_eq!((default.per_second, default.burst), (500, 1000));
    let b = budget(serde_json::json!({"per_second": 20, "burst": 5}));
    assert_eq!((b.per_second, b.burst), (20, 5));
    let b = budget(serde_json::json!({"per_second": 5000}));
    assert_eq!((b.per_second, b.burst), (5000, 5000), "a second's worth");
    let b = budget(serde_json::json!({"per_second": 0}));
    assert_eq!(b.per_second, 0, "off");
    // With the cache off: none unless it is set.
    let off = |ts: serde_json::Value| {
        config(serde_json::json!({"policies": [GET], "cache": {"enabled": false}, "token_service": ts}))
            .unwrap()
            .token_service
            .lookup_budget
            .per_second
    };
    assert_eq!(off(serde_json::json!({})), 0);
    assert_eq!(
        off(serde_json::json!({"lookup_budget": {"per_second": 7}})),
        7
    );
}

#[test]
fn bare_xml_is_one_policy_with_defaults() {
    let c = parse_config(format!("\n  {GET}\n").as_bytes()).unwrap();
    assert_eq!(c.policies.len(), 1);
    assert_eq!(c.policies[0].name, "GetTokenAttributes");
}

#[test]
fn envelope_errors_name_the_field() {
    let cases: Vec<(serde_json::Value, &str, &str)> = vec![
        (serde_json::json!({}), "policies", "is required"),
        (serde_json::json!({"policies": []}), "policies", "is empty"),
        (
            serde_json::json!({"policies": "x"}),
            "policies",
            "must be an array",
        ),
        (
            serde_json::json!({"policies": [1]}),
            "policies[0]",
            "must be a string",
        ),
        (
            serde_json::json!({"policies": [GET], "bogus": 1}),
            "bogus",
            "unknown field",
        ),
        (
            serde_json::json!({"policies": [GET], "token_service": {"clustr": "x"}}),
            "token_service.clustr",
            "unknown field",
        ),
        (
            serde_json::json!({"policies": [GET], "token_service": {"cluster": ""}}),
            "token_service.cluster",
            "non-empty",
        ),
        (
            serde_json::json!({"policies": [GET], "token_service": {"timeout_ms": 0}}),
            "token_service.timeout_ms",
            "from 1 to 60000",
        ),
        (
            serde_json::json!({"policies": [GET], "token_service": {"timeout_ms": "5"}}),
            "token_service.timeout_ms",
            "from 1 to 60000",
        ),
        (
            serde_json::json!({"policies": [GET], "token_service": {"path": "oauth"}}),
            "token_service.path",
            "starting with '/'",
        ),
        (
            serde_json::json!({"policies": [GET], "token_service": {"credentials": "a\nb"}}),
            "token_service.credentials",
            "one line",
        ),
        (
            serde_json::json!({"policies": [GET], "token_service": {"lookup_budget": 100}}),
            "token_service.lookup_budget",
            "must be a JSON object",
        ),
        (
            serde_json::json!({"policies": [GET], "token_service": {"lookup_budget": {"per_second": -1}}}),
            "token_service.lookup_budget.per_second",
            "must be an integer from 0 to 1000000",
        ),
        (
            serde_json::json!({"policies": [GET], "token_service": {"lookup_budget": {"burst": 0}}}),
            "token_service.lookup_budget.burst",
            "must be an integer from 1 to 1000000",
        ),
        (
            serde_json::json!({"policies": [GET], "token_service": {"lookup_budget": {"rate": 5}}}),
            "token_service.lookup_budget.rate",
            "unknown field (known: per_second, burst)",
        ),
        (
            serde_json::json!({"policies": [GET], "token_service": []}),
            "token_service",
            "JSON object",
        ),
        (
            serde_json::json!({"policies": [GET], "metadata_namespace": ""}),
            "metadata_namespace",
            "non-empty",
        ),
        (
            serde_json::json!({"policies": [GET], "export_secrets": "yes"}),
            "export_secrets",
            "true or false",
        ),
        (
            serde_json::json!({"policies": [GET], "publish": "**"}),
            "publish",
            "must be an array",
        ),
        (
            serde_json::json!({"policies": [GET], "publish": ["a.**.b"]}),
            "publish[0]",
            "last",
        ),
        (
            serde_json::json!({"policies": [GET], "publish": ["a..b"]}),
            "publish[0]",
            "empty segment",
        ),
        (
            serde_json::json!({"policies": [GET], "request_headers": {"bad header": "x"}}),
            "request_headers.bad header",
            "not a valid HTTP header name",
        ),
        (
            serde_json::json!({"policies": [GET], "request_headers": {"Host": "x"}}),
            "request_headers.Host",
            "may not be set",
        ),
        (
            serde_json::json!({"policies": [GET], "request_headers": {"x": 1}}),
            "request_headers.x",
            "variable name",
        ),
        (
            // The later one, as written, is the one mapped twice.
            serde_json::json!({"policies": [GET], "request_headers": {"x": "a", "X": "b"}}),
            "request_headers.X",
            "mapped twice",
        ),
        (
            serde_json::json!({"policies": [GET], "cache": {"ttl": 1}}),
            "cache.ttl",
            "unknown field",
        ),
        (
            serde_json::json!({"policies": [GET], "cache": {"max_entries": 0}}),
            "cache.max_entries",
            "from 1",
        ),
        (serde_json::json!([GET]), "configuration", "JSON object"),
        (
            serde_json::json!({"policies": [{"condition": "a = 1"}]}),
            "policies[0].policy",
            "is required",
        ),
        (
            serde_json::json!({"policies": [{"policy": GET, "conditon": "a = 1"}]}),
            "policies[0].conditon",
            "unknown field (known: policy, condition)",
        ),
        (
            serde_json::json!({"policies": [{"policy": GET, "condition": true}]}),
            "policies[0].condition",
            "must be a string",
        ),
        (
            serde_json::json!({"policies": [{"policy": 1}]}),
            "policies[0].policy",
            "must be a string",
        ),
        (
            serde_json::json!({"policies": [GET], "basepath": "v1"}),
            "basepath",
            "starting with",
        ),
        (
            serde_json::json!({"policies": [GET], "basepath": "/v1?x"}),
            "basepath",
            "without a query",
        ),
        (
            serde_json::json!({"policies": [GET], "proxy_name": ""}),
            "proxy_name",
            "non-empty name",
        ),
        (
            serde_json::json!({"policies": [GET], "proxy_name": "my proxy"}),
            "proxy_name",
            "without spaces",
        ),
        (
            serde_json::json!({"policies": [GET], "environment": 3}),
            "environment",
            "non-empty name",
        ),
    ];
    for (json, field, problem) in cases {
        let e = config(json.clone()).unwrap_err();
        assert_eq!(e.policy, None, "{json}: {e}");
        assert_eq!(e.element, field, "{json}: {e}");
        assert!(e.problem.contains(problem), "{json}: {e}");
    }
    let e = parse_config(b"{not json").unwrap_err();
    assert!(e.problem.contains("malformed JSON"), "{e}");
    let e = parse_config(b"  ").unwrap_err();
    assert!(e.problem.contains("is empty"), "{e}");
    let e = parse_config(&[0xff, 0xfe]).unwrap_err();
    assert!(e.problem.contains("UTF-8"), "{e}");
}

#[test]
fn header_reads_follow_the_refs() {
    let get = |r: &str| {
        format!(
            "<GetOAuthV2Info name='G{}'><AccessToken ref='{r}'/></GetOAuthV2Info>",
            r.len()
        )
    };
    let reads = |refs: &[&str], mapped: serde_json::Value| {
        let policies: Vec<String> = refs.iter().map(|r| get(r)).collect();
        config(serde_json::json!({"policies": policies, "request_headers": mapped}))
            .unwrap()
            .header_reads
    };
    assert_eq!(
        reads(
            &["request.header.Authorization", "request.header.x-a"],
            serde_json::json!({"x-b": "request.header.x-b"})
        ),
        HeaderReads::Named(vec!["authorization".into(), "x-a".into(), "x-b".into()])
    );
    assert_eq!(
        reads(&["request.header.x.2"], serde_json::json!({})),
        HeaderReads::All
    );
    assert_eq!(
        reads(&["request.header.x.values.string"], serde_json::json!({})),
        HeaderReads::All
    );
    assert_eq!(
        reads(
            &["request.queryparam.t"],
            serde_json::json!({"x-c": "request.header.y.values.count"})
        ),
        HeaderReads::All
    );
    let disabled = "<GetOAuthV2Info name='Off' enabled='false'><AccessToken ref='request.header.z'/></GetOAuthV2Info>";
    let c = config(serde_json::json!({"policies": [disabled]})).unwrap();
    assert_eq!(c.header_reads, HeaderReads::Named(vec![]));
}

#[test]
fn duplicate_policy_names_are_refused() {
    let e = config(serde_json::json!({"policies": [GET, GET]})).unwrap_err();
    assert_eq!(e.policy.as_deref(), Some("GetTokenAttributes"));
    assert!(e.problem.contains("unique"));
    assert_eq!(
        e.to_string(),
        "policy \"GetTokenAttributes\", element <GetOAuthV2Info>: two policies have this name: policy names must be unique"
    );
}

#[test]
fn policy_errors_carry_through_with_their_position() {
    let e =
        config(serde_json::json!({"policies": [GET, "<GetOAuthV2Info name='B'>"]})).unwrap_err();
    assert_eq!(e.policy.as_deref(), Some("#2"));
    assert!(
        e.to_string()
            .starts_with("policy \"#2\", element document: malformed XML"),
        "{e}"
    );
}

#[test]
fn warns_about_refs_nothing_sets() {
    let later = "<GetOAuthV2Info name='B'><RefreshToken ref='oauthv2accesstoken.A.refresh_token'/></GetOAuthV2Info>";
    let first = "<GetOAuthV2Info name='A'><AccessToken ref='request.header.x'/></GetOAuthV2Info>";
    let c = config(serde_json::json!({"policies": [first, later]})).unwrap();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    // The same ref before the policy that sets it: a warning.
    let c = config(serde_json::json!({"policies": [later, first]})).unwrap();
    assert_eq!(c.warnings.len(), 1);
    assert!(c.warnings[0].contains("policy \"B\""), "{:?}", c.warnings);
    let c = config(
        serde_json::json!({"policies": [first], "request_headers": {"x-a": "nothing.sets.this"}}),
    )
    .unwrap();
    assert_eq!(c.warnings.len(), 1);
}

#[test]
fn refs_resolve_to_what_sets_them() {
    let c = config(serde_json::json!({"policies": [GET, "<GetOAuthV2Info name='Code.x'><AuthorizationCode>c</AuthorizationCode></GetOAuthV2Info>"]})).unwrap();
    let r = |name: &str| VarRef::resolve(name, &c.plans);
    assert!(matches!(
        r("oauthv2accesstoken.GetTokenAttributes.scope"),
        VarRef::Output {
            policy: 0,
            output: 2,
            or_attribute: None
        }
    ));
    assert_eq!(
        r("oauthV2.GetTokenAttributes.failed"),
        VarRef::Failed { policy: 0 }
    );
    assert_eq!(
        r("oauthV2.GetTokenAttributes.fault.cause"),
        VarRef::FaultCause { policy: 0 }
    );
    assert_eq!(r("fault.name"), VarRef::LastFault);
    assert_eq!(r("oauthv2accesstoken.Other.scope"), VarRef::Unset);
    assert_eq!(
        r("oauthv2refreshtoken.GetTokenAttributes.scope"),
        VarRef::Unset
    );
    assert_eq!(r("oauthv2accesstoken.GetTokenAttributes."), VarRef::Unset);
    assert_eq!(
        r("oauthv2accesstoken.GetTokenAttributes.accesstoken.dept.id"),
        VarRef::Attribute {
            policy: 0,
            name: "dept.id".into()
        }
    );
    // No prefix segment: a standard name can also be an attribute's.
    assert!(
        matches!(r("oauthv2authcode.Code.x.code"), VarRef::Output { policy: 1, output: 0, or_attribute: Some(ref n) } if n == "code")
    );
    assert_eq!(
        r("oauthv2authcode.Code.x.state"),
        VarRef::Attribute {
            policy: 1,
            name: "state".into()
        }
    );
    assert!(matches!(r("request.header.X"), VarRef::Request(_)));
}

#[test]
fn auto_picks_the_cheaper_bridge() {
    let bridge = |publish: serde_json::Value| {
        config(
            serde_json::json!({"policies": [GET], "metadata_bridge": "auto", "publish": publish}),
        )
        .unwrap()
        .metadata
        .bridge
    };
    // Everything: custom attributes under a wildcard need the Lua filter anyway.
    assert_eq!(bridge(serde_json::json!(["**"])), MetadataBridge::Lua);
    let few = serde_json::json!([
        "oauthv2accesstoken.*.scope",
        "oauthv2accesstoken.*.client_id",
        "oauthV2.*.failed"
    ]);
    assert_eq!(bridge(few), MetadataBridge::HeaderToMetadata);
    let nine = serde_json::json!([
        "oauthv2accesstoken.*.scope",
        "oauthv2accesstoken.*.client_id",
        "oauthv2accesstoken.*.status",
        "oauthv2accesstoken.*.expires_in",
        "oauthv2accesstoken.*.issued_at",
        "oauthv2accesstoken.*.token_type",
        "oauthv2accesstoken.*.developer.email",
        "oauthv2accesstoken.*.developer.id",
        "oauthV2.*.failed"
    ]);
    assert_eq!(bridge(nine), MetadataBridge::Lua);
}

#[test]
fn metadata_headers_are_assigned_in_header_to_metadata_mode() {
    let c = config(
        serde_json::json!({"policies": [GET], "metadata_bridge": "header_to_metadata",
        "publish": ["oauthv2accesstoken.*.scope", "oauthV2.**", "fault.name"]}),
    )
    .unwrap();
    let keys: Vec<(&str, &str, bool, bool)> = c
        .metadata
        .headers
        .iter()
        .map(|h| (h.header.as_str(), h.key.as_str(), h.on_request, h.on_reply))
        .collect();
    // (header, key, on a request that goes on, on a fault reply): a lone
    // policy's success variables never reach a fault reply, its fault
    // variables never go upstream.
    assert_eq!(
        keys,
        [
            (
                "x-oauthv2info-md-0",
                "oauthv2accesstoken.GetTokenAttributes.scope",
                true,
                false
            ),
            (
                "x-oauthv2info-md-1",
                "oauthV2.GetTokenAttributes.failed",
                true,
                true
            ),
            (
                "x-oauthv2info-md-2",
                "oauthV2.GetTokenAttributes.fault.name",
                false,
                true
            ),
            (
                "x-oauthv2info-md-3",
                "oauthV2.GetTokenAttributes.fault.cause",
                false,
                true
            ),
            ("x-oauthv2info-md-4", "fault.name", false, true),
        ]
    );
    // A policy before another one that can fault: its success variables
    // can be on a fault reply too.
    let two = config(serde_json::json!({"policies": [GET, "<GetOAuthV2Info name='Later'><ClientId>c</ClientId></GetOAuthV2Info>"],
        "metadata_bridge": "header_to_metadata", "publish": ["oauthv2accesstoken.*.scope"]}))
    .unwrap();
    assert!(two.metadata.headers[0].on_reply && two.metadata.headers[0].on_request);
    assert_eq!(c.fault_name.header, Some(4));
    assert!(!c.metadata.needs_lua);
    let all =
        config(serde_json::json!({"policies": [GET], "metadata_bridge": "header_to_metadata"}))
            .unwrap();
    // Secrets are not published, so they have no header.
    assert!(all
        .metadata
        .headers
        .iter()
        .all(|h| !h.key.ends_with(".access_token") && !h.key.ends_with(".refresh_token")));
    assert!(
        all.metadata.needs_lua,
        "custom attributes under ** need the Lua bridge"
    );
    assert!(
        !all.metadata.empty_companions,
        "empty values go through the Lua bridge, which is there anyway"
    );
    assert!(c.metadata.empty_companions, "no Lua bridge: companions");
    let e =
        config(serde_json::json!({"policies": [GET], "metadata_bridge": "sidecar"})).unwrap_err();
    assert_eq!(e.element, "metadata_bridge");
    let e = config(serde_json::json!({"policies": [GET], "request_headers": {"x-oauthv2info-md-0": "request.verb"}})).unwrap_err();
    assert!(e.problem.contains("the filter's own"), "{e}");
}

/// `proxy_name` and `environment` (docs/configuration.md#proxy_name-and-environment):
/// kept; without them, no warning (products' proxies and environments are
/// then not compared: docs/decisions.md#api-products).
#[test]
fn proxy_name_and_environment() {
    let verify = r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation></OAuthV2>"#;
    let c = config(
        serde_json::json!({"policies": [verify], "proxy_name": "shop-v1", "environment": "prod"}),
    )
    .unwrap();
    assert_eq!(c.proxy_name.as_deref(), Some("shop-v1"));
    assert_eq!(c.environment.as_deref(), Some("prod"));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let c = config(serde_json::json!({"policies": [verify]})).unwrap();
    assert_eq!((c.proxy_name, c.environment), (None, None));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

/// The matching product's attributes have names known only at run time:
/// publishing them needs the Lua bridge, as custom attributes do.
#[test]
fn published_product_attributes_need_the_lua_bridge() {
    let verify = r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation></OAuthV2>"#;
    let with = |publish: serde_json::Value, bridge: &str| {
        config(serde_json::json!({"policies": [verify], "publish": publish, "metadata_bridge": bridge}))
            .unwrap()
            .metadata
    };
    let m = with(serde_json::json!(["apiproduct.*"]), "auto");
    assert_eq!(m.bridge, MetadataBridge::Lua);
    let m = with(
        serde_json::json!(["apiproduct.operation.attributes.*"]),
        "header_to_metadata",
    );
    assert!(m.needs_lua);
    // No product attribute published: a header does it.
    let m = with(serde_json::json!(["client_id", "scope"]), "auto");
    assert_eq!(m.bridge, MetadataBridge::HeaderToMetadata);
    assert!(!m.needs_lua);
}

/// The product's standard variables named exactly (`apiproduct.name`, the
/// quota's three, what an imported Quota policy reads) are not product
/// attributes: a header carries them, no Lua bridge.
#[test]
fn published_product_standard_variables_need_no_lua_bridge() {
    let verify = r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation></OAuthV2>"#;
    let key = r#"<VerifyAPIKey name="K"><APIKey ref="request.queryparam.apikey"/></VerifyAPIKey>"#;
    let with = |policy: &str, publish: serde_json::Value| {
        config(serde_json::json!({"policies": [policy], "publish": publish, "metadata_bridge": "auto"}))
            .unwrap()
            .metadata
    };
    let quota = serde_json::json!([
        "apiproduct.name",
        "apiproduct.developer.quota.limit",
        "apiproduct.developer.quota.interval",
        "apiproduct.developer.quota.timeunit"
    ]);
    let m = with(verify, quota);
    assert_eq!(m.bridge, MetadataBridge::HeaderToMetadata);
    assert!(!m.needs_lua);
    let m = with(
        key,
        serde_json::json!(["verifyapikey.K.apiproduct.developer.quota.limit"]),
    );
    assert_eq!(m.bridge, MetadataBridge::HeaderToMetadata);
    // Another exact name under `apiproduct.` is an attribute: Lua.
    let m = with(verify, serde_json::json!(["apiproduct.developer.tier"]));
    assert_eq!(m.bridge, MetadataBridge::Lua);
}
