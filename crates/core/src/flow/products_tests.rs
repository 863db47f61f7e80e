//! The API-product check of VerifyAccessToken and VerifyAPIKey, and
//! VerifyAPIKey's statuses and variables (docs/decisions.md#api-products,
//! docs/decisions.md#verifyapikey).

use super::*;
use crate::config::parse_config;
use crate::request::Headers;
use serde_json::{json, Value};

const NOW: i64 = 1_700_000_000_000;

fn config(extra: Value, policies: &[&str]) -> FilterConfig {
    let mut c = json!({ "policies": policies, "basepath": "/v1" });
    if let (Value::Object(c), Value::Object(extra)) = (&mut c, extra) {
        c.extend(extra);
    }
    parse_config(c.to_string().as_bytes()).unwrap()
}

fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> RequestInfo {
    RequestInfo {
        method: method.as_bytes().to_vec(),
        path: path.as_bytes().to_vec(),
        headers: Headers::All(
            headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
        ),
        ..RequestInfo::default()
    }
}

/// The products of the examples: `viewer` (operation group: GET on
/// `/items/*` of proxy `shop`, with attributes), `legacy` (proxy `shop`,
/// resources `/orders/**`, with a custom attribute), `elsewhere` (another
/// proxy).
fn products() -> Value {
    json!([
        {"name": "viewer", "operation_configs": [
            {"api_source": "shop", "operations": [{"resource": "/items/*", "methods": ["GET", "HEAD"]}],
             "attributes": {"quota": "10"}}],
         "attributes": {"tier": "bronze"}},
        {"name": "legacy", "proxies": ["shop"], "resources": ["/orders/**"], "environments": ["prod"],
         "attributes": {"tier": "gold"}},
        {"name": "elsewhere", "proxies": ["news"], "resources": ["/"]}
    ])
}

fn token_answer(products: Option<Value>, scope: &str) -> String {
    let mut a = json!({"active": true, "profile": {
        "access_token": "good", "client_id": "app", "scope": scope, "status": "approved",
        "expires_at": (NOW + 60_000).to_string(), "issued_at": NOW.to_string()}});
    if let Some(p) = products {
        a["api_products"] = p;
    }
    a.to_string()
}

fn key_answer(change: &[(&str, &str)], products: Value) -> String {
    let mut a = json!({"active": true, "client_id": "key1", "profile": {
        "client_id": "key1", "client_secret": "s3cret", "redirection_uris": "https://a/cb",
        "developer.email": "dev@example.com", "developer.id": "d1",
        "developer.app.name": "shop-app", "developer.app.id": "a1",
        "status": "approved", "key_status": "approved", "developer.status": "active",
        "attributes": {"region": "eu"}}, "api_products": products});
    for (k, v) in change {
        a["profile"][*k] = json!(v);
    }
    a.to_string()
}

/// Runs a flow to its end, each lookup answered with `answer`; the
/// lookups it made.
fn run(
    config: &FilterConfig,
    request: &RequestInfo,
    answer: &str,
) -> (FlowOutcome, Flow, Vec<(TokenKind, String)>) {
    let mut flow = Flow::new();
    flow.now_ms = NOW;
    let mut calls = Vec::new();
    loop {
        match flow.advance(config, request) {
            FlowOutcome::Wait => {
                if let Some(Pending::Lookup { kind, token }) = flow.pending() {
                    calls.push((*kind, flow.text(token).to_string()));
                }
                flow.on_response(config, request, Some(200), answer.as_bytes());
            }
            end => return (end, flow, calls),
        }
    }
}

const VERIFY: &str = r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation></OAuthV2>"#;
const KEY: &str =
    r#"<VerifyAPIKey name="K"><APIKey ref="request.queryparam.apikey"/></VerifyAPIKey>"#;

fn shop() -> Value {
    json!({"proxy_name": "shop", "environment": "prod"})
}

#[test]
fn a_token_of_a_product_that_allows_the_call_passes_and_sets_the_product_variables() {
    let c = config(shop(), &[VERIFY]);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let bearer = [("authorization", "Bearer good")];
    let (end, flow, _) = run(
        &c,
        &request("GET", "/v1/items/42?x=1", &bearer),
        &token_answer(Some(products()), "READ"),
    );
    assert_eq!(end, FlowOutcome::Continue);
    let v = |n: &str| flow.variable(&c, n);
    assert_eq!(v("apiproduct.name").as_deref(), Some("viewer"));
    assert_eq!(v("apiproduct.tier").as_deref(), Some("bronze"));
    assert_eq!(v("apiproduct.operation").as_deref(), Some("/items/*"));
    assert_eq!(
        v("apiproduct.operation.resource").as_deref(),
        Some("/items/*")
    );
    assert_eq!(
        v("apiproduct.operation.methods").as_deref(),
        Some("GET,HEAD")
    );
    assert_eq!(
        v("apiproduct.operation.attributes.quota").as_deref(),
        Some("10")
    );
    assert_eq!(v("client_id").as_deref(), Some("app"));

    // The second product, without operation groups: no operation
    // variables, its own attribute.
    let (end, flow, _) = run(
        &c,
        &request("DELETE", "/v1/orders/7/lines", &bearer),
        &token_answer(Some(products()), "READ"),
    );
    assert_eq!(end, FlowOutcome::Continue);
    assert_eq!(
        flow.variable(&c, "apiproduct.name").as_deref(),
        Some("legacy")
    );
    assert_eq!(
        flow.variable(&c, "apiproduct.tier").as_deref(),
        Some("gold")
    );
    assert_eq!(flow.variable(&c, "apiproduct.operation"), None);
}

#[test]
fn no_product_allowing_the_call_is_a_401_with_apigees_body() {
    let c = config(shop(), &[VERIFY]);
    let bearer = [("authorization", "Bearer good")];
    for (method, path, why) in [
        ("GET", "/v1/news", "no product has this path"),
        (
            "POST",
            "/v1/items/42",
            "the operation allows GET and HEAD only",
        ),
        ("GET", "/v1/items/42/sub", "/* is one level"),
    ] {
        let (end, flow, _) = run(
            &c,
            &request(method, path, &bearer),
            &token_answer(Some(products()), "READ"),
        );
        assert_eq!(end, FlowOutcome::Reply(Fault::NoApiProductMatch), "{why}");
        assert_eq!(
            flow.variable(&c, "fault.name").as_deref(),
            Some("InvalidAPICallAsNoApiProductMatchFound")
        );
        assert_eq!(flow.variable(&c, "apiproduct.name"), None);
    }
    assert_eq!(Fault::NoApiProductMatch.status(), 401);
    assert_eq!(
        c.plans[0].fault_body(Fault::NoApiProductMatch),
        r#"{"fault":{"faultstring":"Invalid API call as no apiproduct match found","detail":{"errorcode":"keymanagement.service.InvalidAPICallAsNoApiProductMatchFound"}}}"#
    );
    // Another environment: `legacy` is for prod only.
    let c = config(
        json!({"proxy_name": "shop", "environment": "test"}),
        &[VERIFY],
    );
    let (end, _, _) = run(
        &c,
        &request("GET", "/v1/orders/1", &bearer),
        &token_answer(Some(products()), "READ"),
    );
    assert_eq!(end, FlowOutcome::Reply(Fault::NoApiProductMatch));
    // Another proxy: only `elsewhere` names `news`.
    let c = config(json!({"proxy_name": "news"}), &[VERIFY]);
    let (end, flow, _) = run(
        &c,
        &request("GET", "/v1/orders/1", &bearer),
        &token_answer(Some(products()), "READ"),
    );
    assert_eq!(end, FlowOutcome::Continue);
    assert_eq!(
        flow.variable(&c, "apiproduct.name").as_deref(),
        Some("elsewhere")
    );
}

#[test]
fn an_empty_product_list_refuses_and_an_absent_one_is_not_checked() {
    let c = config(shop(), &[VERIFY]);
    let r = request("GET", "/v1/items/1", &[("authorization", "Bearer good")]);
    let (end, _, _) = run(&c, &r, &token_answer(Some(json!([])), "READ"));
    assert_eq!(end, FlowOutcome::Reply(Fault::NoApiProductMatch));
    // A plain RFC 7662 server: no `api_products` member, no check.
    let (end, flow, _) = run(&c, &r, &token_answer(None, "READ"));
    assert_eq!(end, FlowOutcome::Continue);
    assert_eq!(flow.variable(&c, "apiproduct.name"), None);
}

/// The key-management checks of the token (its products) come before the
/// policy's scope check.
#[test]
fn the_product_check_comes_before_the_scope_check() {
    let scoped = r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation><Scope>WRITE</Scope></OAuthV2>"#;
    let c = config(shop(), &[scoped]);
    let bearer = [("authorization", "Bearer good")];
    let (end, _, _) = run(
        &c,
        &request("GET", "/v1/news", &bearer),
        &token_answer(Some(products()), "READ"),
    );
    assert_eq!(end, FlowOutcome::Reply(Fault::NoApiProductMatch));
    let (end, _, _) = run(
        &c,
        &request("GET", "/v1/items/1", &bearer),
        &token_answer(Some(products()), "READ"),
    );
    assert_eq!(end, FlowOutcome::Reply(Fault::InsufficientScope));
}

/// Without `proxy_name`, products' proxies and operations' apiSource are
/// not compared; resources and verbs are.
#[test]
fn without_a_proxy_name_proxies_are_not_compared() {
    let c = config(json!({}), &[VERIFY]);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let bearer = [("authorization", "Bearer good")];
    let (end, flow, _) = run(
        &c,
        &request("POST", "/v1/anything", &bearer),
        &token_answer(Some(products()), "READ"),
    );
    // `elsewhere` (proxy news, resource /) allows it now.
    assert_eq!(end, FlowOutcome::Continue);
    assert_eq!(
        flow.variable(&c, "apiproduct.name").as_deref(),
        Some("elsewhere")
    );
}

/// `apiproxy.name` and `environment.name` read the configuration (unset
/// without it), in a step condition as in a ref.
#[test]
fn apiproxy_name_and_environment_name_are_variables() {
    let get =
        r#"<GetOAuthV2Info name="G"><AccessToken ref="request.queryparam.t"/></GetOAuthV2Info>"#;
    let step = json!({"policy": get,
        "condition": "apiproxy.name = \"shop\" and environment.name = \"prod\""});
    let answer = token_answer(None, "READ");
    let r = request("GET", "/v1/x?t=good", &[]);
    for (extra, runs) in [
        (shop(), true),
        (json!({"proxy_name": "shop"}), false),
        (json!({}), false),
    ] {
        let mut c = json!({"policies": [step.clone()]});
        if let (Value::Object(c), Value::Object(extra)) = (&mut c, extra) {
            c.extend(extra);
        }
        let c = parse_config(c.to_string().as_bytes()).unwrap();
        let (_, _, calls) = run(&c, &r, &answer);
        assert_eq!(calls.len(), usize::from(runs), "{:?}", c.proxy_name);
    }
}

#[test]
fn verify_api_key_passes_a_good_key_and_sets_its_variables() {
    let c = config(shop(), &[KEY]);
    let (end, flow, calls) = run(
        &c,
        &request("GET", "/v1/items/3?apikey=key1", &[]),
        &key_answer(&[], products()),
    );
    assert_eq!(end, FlowOutcome::Continue);
    assert_eq!(calls, [(TokenKind::ClientId, "key1".to_string())]);
    let v = |n: &str| flow.variable(&c, n);
    assert_eq!(v("verifyapikey.K.client_id").as_deref(), Some("key1"));
    assert_eq!(v("verifyapikey.K.client_secret").as_deref(), Some("s3cret"));
    assert_eq!(
        v("verifyapikey.K.developer.email").as_deref(),
        Some("dev@example.com")
    );
    assert_eq!(
        v("verifyapikey.K.developer.app.name").as_deref(),
        Some("shop-app")
    );
    assert_eq!(v("verifyapikey.K.app.name").as_deref(), Some("shop-app"));
    assert_eq!(v("verifyapikey.K.app.region").as_deref(), Some("eu"));
    assert_eq!(
        v("verifyapikey.K.apiproduct.name").as_deref(),
        Some("viewer")
    );
    assert_eq!(
        v("verifyapikey.K.apiproduct.tier").as_deref(),
        Some("bronze")
    );
    assert_eq!(
        v("verifyapikey.K.apiproduct.operation.resource").as_deref(),
        Some("/items/*")
    );
    assert_eq!(
        v("verifyapikey.K.apiproduct.operation.attributes.quota").as_deref(),
        Some("10")
    );
    assert_eq!(v("oauthV2.K.failed").as_deref(), Some("false"));
    // The secret is not published by default (export_secrets).
    let mut published = Vec::new();
    flow.visit_published(&c, &mut Vec::new(), |p| {
        published.push(String::from_utf8_lossy(p.name).into_owned())
    });
    assert!(
        published.iter().any(|n| n == "verifyapikey.K.client_id"),
        "{published:?}"
    );
    assert!(
        published
            .iter()
            .any(|n| n == "verifyapikey.K.apiproduct.tier"),
        "{published:?}"
    );
    assert!(
        !published.iter().any(|n| n.contains("client_secret")),
        "{published:?}"
    );
    let exported = config(
        json!({"proxy_name": "shop", "export_secrets": true}),
        &[KEY],
    );
    let (_, flow, _) = run(
        &exported,
        &request("GET", "/v1/items/3?apikey=key1", &[]),
        &key_answer(&[], products()),
    );
    let mut published = Vec::new();
    flow.visit_published(&exported, &mut Vec::new(), |p| {
        published.push(String::from_utf8_lossy(p.name).into_owned())
    });
    assert!(
        published
            .iter()
            .any(|n| n == "verifyapikey.K.client_secret"),
        "{published:?}"
    );
}

/// Apigee's analytics variables: a valid key also sets `client_id`,
/// `developer.app.name`, `developer.id` and `apiproduct.name` without a
/// prefix (published by default); a refused key sets none of them.
#[test]
fn verify_api_key_sets_the_bare_analytics_variables() {
    let c = config(shop(), &[KEY]);
    let bare = [
        ("client_id", "key1"),
        ("developer.app.name", "shop-app"),
        ("developer.id", "d1"),
        ("apiproduct.name", "viewer"),
    ];
    let (end, flow, _) = run(
        &c,
        &request("GET", "/v1/items/3?apikey=key1", &[]),
        &key_answer(&[], products()),
    );
    assert_eq!(end, FlowOutcome::Continue);
    let mut published = Vec::new();
    flow.visit_published(&c, &mut Vec::new(), |p| {
        published.push((
            String::from_utf8_lossy(p.name).into_owned(),
            String::from_utf8_lossy(p.value).into_owned(),
        ))
    });
    let r = request("GET", "/v1/items/3?apikey=key1", &[]);
    for (name, value) in bare {
        assert_eq!(flow.variable(&c, name).as_deref(), Some(value), "{name}");
        // A later policy's ref (`{apiproduct.name}`) reads it too.
        let var = crate::plan::VarRef::resolve(name, &c.plans);
        let mut out = String::new();
        assert!(flow.read(&c, &var, &r, &mut out), "{name}: {var:?}");
        assert_eq!(out, value);
        assert!(
            published.contains(&(name.to_string(), value.to_string())),
            "{name}: {published:?}"
        );
    }
    // No product allows a POST: the fault, and none of them.
    let (end, flow, _) = run(
        &c,
        &request("POST", "/v1/items/3?apikey=key1", &[]),
        &key_answer(&[], products()),
    );
    assert_ne!(end, FlowOutcome::Continue);
    for (name, _) in bare {
        assert_eq!(flow.variable(&c, name), None, "{name}");
    }
}

/// A path that is not UTF-8 is compared as text (U+FFFD for what is
/// not), as it is read in place when it is: `/items/\xff` is one segment
/// under `/items/*`, `/other/\xff` is no product's.
#[test]
fn a_path_that_is_not_utf8_is_checked_as_text() {
    let c = config(shop(), &[KEY]);
    for (path, passes) in [
        (&b"/v1/items/\xff?apikey=key1"[..], true),
        (&b"/v1/items/ok?apikey=key1"[..], true),
        (&b"/v1/other/\xff?apikey=key1"[..], false),
    ] {
        let mut r = request("GET", "/", &[]);
        r.path = path.to_vec();
        let (end, flow, _) = run(&c, &r, &key_answer(&[], products()));
        assert_eq!(end == FlowOutcome::Continue, passes, "{path:?}");
        assert_eq!(
            flow.variable(&c, "apiproduct.name").is_some(),
            passes,
            "{path:?}"
        );
    }
}

#[test]
fn verify_api_key_faults() {
    let c = config(shop(), &[KEY]);
    let good = "/v1/items/3?apikey=key1";
    for (path, answer, fault, name) in [
        (
            "/v1/items/3",
            key_answer(&[], products()),
            Fault::FailedToResolveApiKey,
            "FailedToResolveAPIKey",
        ),
        (
            "/v1/items/3?apikey=",
            key_answer(&[], products()),
            Fault::FailedToResolveApiKey,
            "FailedToResolveAPIKey",
        ),
        (
            good,
            r#"{"active": false}"#.to_string(),
            Fault::InvalidApiKey,
            "InvalidApiKey",
        ),
        (
            good,
            key_answer(&[("key_status", "revoked")], products()),
            Fault::ApiKeyNotApproved,
            "ApiKeyNotApproved",
        ),
        (
            good,
            key_answer(&[("status", "revoked")], products()),
            Fault::AppNotApproved,
            "invalid_client-app_not_approved",
        ),
        (
            good,
            key_answer(&[("developer.status", "inactive")], products()),
            Fault::DeveloperStatusNotActive,
            "DeveloperStatusNotActive",
        ),
        (
            "/v1/news?apikey=key1",
            key_answer(&[], products()),
            Fault::InvalidApiKeyForGivenResource,
            "InvalidApiKeyForGivenResource",
        ),
        (
            good,
            key_answer(&[], json!([])),
            Fault::InvalidApiKeyForGivenResource,
            "InvalidApiKeyForGivenResource",
        ),
    ] {
        let (end, flow, _) = run(&c, &request("GET", path, &[]), &answer);
        assert_eq!(end, FlowOutcome::Reply(fault), "{path} {answer}");
        assert_eq!(fault.status(), 401);
        assert_eq!(flow.variable(&c, "fault.name").as_deref(), Some(name));
        assert_eq!(
            flow.variable(&c, "oauthV2.K.failed").as_deref(),
            Some("true")
        );
    }
    assert_eq!(
        c.plans[0].fault_body(Fault::FailedToResolveApiKey),
        r#"{"fault":{"faultstring":"Failed to resolve API Key variable request.queryparam.apikey","detail":{"errorcode":"steps.oauth.v2.FailedToResolveAPIKey"}}}"#
    );
    assert_eq!(
        c.plans[0].fault_body(Fault::InvalidApiKey),
        r#"{"fault":{"faultstring":"Invalid ApiKey","detail":{"errorcode":"oauth.v2.InvalidApiKey"}}}"#
    );
    assert_eq!(
        c.plans[0].fault_body(Fault::InvalidApiKeyForGivenResource),
        r#"{"fault":{"faultstring":"Invalid ApiKey for given resource","detail":{"errorcode":"oauth.v2.InvalidApiKeyForGivenResource"}}}"#
    );
}

/// A later policy reads the app's attribute with or without its `app.`
/// segment (the Apigee samples use both).
#[test]
fn an_app_attribute_reads_with_or_without_its_segment() {
    let get = |r: &str| {
        format!(
            r#"<GetOAuthV2Info name="G-{}"><ClientId ref="{r}"/></GetOAuthV2Info>"#,
            r.len()
        )
    };
    let c = config(
        shop(),
        &[
            KEY,
            &get("verifyapikey.K.app.region"),
            &get("verifyapikey.K.region"),
        ],
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let (end, flow, calls) = run(
        &c,
        &request("GET", "/v1/items/3?apikey=key1", &[]),
        &key_answer(&[], products()),
    );
    // An unresolved ref would be the kind's fault, without a lookup.
    assert_eq!(end, FlowOutcome::Continue);
    assert_eq!(calls[1], (TokenKind::ClientId, "eu".to_string()));
    for policy in ["G-25", "G-21"] {
        let failed = flow.variable(&c, &format!("oauthV2.{policy}.failed"));
        assert_eq!(failed.as_deref(), Some("false"), "{policy}");
    }
}

/// The key in a header; continueOnError lets the request go on.
#[test]
fn verify_api_key_reads_a_header_and_continues_on_error() {
    let key = r#"<VerifyAPIKey name="K" continueOnError="true"><APIKey ref="request.header.x-apikey"/></VerifyAPIKey>"#;
    let c = config(shop(), &[key]);
    let (end, flow, calls) = run(
        &c,
        &request("GET", "/v1/items/3", &[("x-apikey", "nope")]),
        r#"{"active": false}"#,
    );
    assert_eq!(end, FlowOutcome::Continue);
    assert_eq!(calls, [(TokenKind::ClientId, "nope".to_string())]);
    assert_eq!(
        flow.variable(&c, "fault.name").as_deref(),
        Some("InvalidApiKey")
    );
}

/// Products with quota settings: `viewer`'s operation configuration for
/// `/items/*` has its own quota, the one for `/free/**` none; `legacy`
/// has only a limit (and an attribute named as the standard variable).
fn quota_products() -> Value {
    json!([
        {"name": "viewer", "operation_configs": [
            {"api_source": "shop", "operations": [{"resource": "/items/*", "methods": ["GET"]}],
             "quota": {"limit": "10", "interval": "1", "time_unit": "second"}},
            {"api_source": "shop", "operations": [{"resource": "/free/**"}]}],
         "quota": {"limit": "100", "interval": "2", "time_unit": "minute"}},
        {"name": "legacy", "proxies": ["shop"], "resources": ["/orders/**"],
         "attributes": {"developer.quota.limit": "999", "tier": "gold"},
         "quota": {"limit": "5"}},
        {"name": "plain", "proxies": ["shop"], "resources": ["/plain"]}
    ])
}

const QUOTA: [&str; 3] = ["limit", "interval", "timeunit"];

/// The three quota variables of `prefix` (`apiproduct.developer.quota.`).
fn quota_of(c: &FilterConfig, flow: &Flow, prefix: &str) -> [Option<String>; 3] {
    QUOTA.map(|n| flow.variable(c, &format!("{prefix}{n}")))
}

fn some3(a: &str, b: &str, c: &str) -> [Option<String>; 3] {
    [Some(a.into()), Some(b.into()), Some(c.into())]
}

/// `apiproduct.developer.quota.*`: the matching operation configuration's
/// quota when it has one, else the product's; unset when neither has one
/// (docs/variables.md#api-products).
#[test]
fn the_quota_variables_are_the_operations_else_the_products() {
    let c = config(shop(), &[VERIFY]);
    let bearer = [("authorization", "Bearer good")];
    let answer = token_answer(Some(quota_products()), "READ");
    let cases = [
        ("GET", "/v1/items/1", some3("10", "1", "second")),
        ("POST", "/v1/free/x", some3("100", "2", "minute")),
        ("GET", "/v1/orders/7", [Some("5".into()), None, None]),
        ("GET", "/v1/plain", [None, None, None]),
    ];
    for (method, path, want) in cases {
        let (end, flow, _) = run(&c, &request(method, path, &bearer), &answer);
        assert_eq!(end, FlowOutcome::Continue, "{path}");
        assert_eq!(
            quota_of(&c, &flow, "apiproduct.developer.quota."),
            want,
            "{path}"
        );
    }
    // A product attribute of the standard name does not override it.
    let (_, flow, _) = run(&c, &request("GET", "/v1/orders/7", &bearer), &answer);
    assert_eq!(
        flow.variable(&c, "apiproduct.developer.quota.limit")
            .as_deref(),
        Some("5")
    );
    assert_eq!(
        flow.variable(&c, "apiproduct.tier").as_deref(),
        Some("gold")
    );
}

/// Published like the product's other standard variables (by default and
/// through `publish`), set values only; a product attribute of the same
/// name is not published even when every product attribute is.
#[test]
fn the_quota_variables_are_published_as_standard_variables() {
    let bearer = [("authorization", "Bearer good")];
    let answer = token_answer(Some(quota_products()), "READ");
    let published = |c: &FilterConfig, path: &str| {
        let (_, flow, _) = run(c, &request("GET", path, &bearer), &answer);
        let mut out = Vec::new();
        flow.visit_published(c, &mut Vec::new(), |p| {
            out.push((
                String::from_utf8_lossy(p.name).into_owned(),
                String::from_utf8_lossy(p.value).into_owned(),
            ))
        });
        out
    };
    let quota = |out: &[(String, String)]| {
        out.iter()
            .filter(|(n, _)| n.contains("quota"))
            .cloned()
            .collect::<Vec<_>>()
    };
    let pair = |n: &str, v: &str| (format!("apiproduct.developer.quota.{n}"), v.to_string());
    let c = config(shop(), &[VERIFY]);
    assert_eq!(
        quota(&published(&c, "/v1/items/1")),
        [
            pair("limit", "10"),
            pair("interval", "1"),
            pair("timeunit", "second")
        ]
    );
    assert_eq!(quota(&published(&c, "/v1/orders/7")), [pair("limit", "5")]);
    let every = config(
        json!({"proxy_name": "shop", "publish": ["apiproduct.**"]}),
        &[VERIFY],
    );
    let out = published(&every, "/v1/orders/7");
    assert_eq!(quota(&out), [pair("limit", "5")]);
    assert!(
        out.contains(&("apiproduct.tier".into(), "gold".into())),
        "{out:?}"
    );
}

/// VerifyAPIKey sets them after its prefix only (Apigee's VerifyAPIKey
/// page lists `verifyapikey.{policy}.apiproduct.developer.quota.*`).
#[test]
fn verify_api_key_sets_the_prefixed_quota_variables() {
    let c = config(shop(), &[KEY]);
    let (end, flow, _) = run(
        &c,
        &request("GET", "/v1/items/3?apikey=key1", &[]),
        &key_answer(&[], quota_products()),
    );
    assert_eq!(end, FlowOutcome::Continue);
    assert_eq!(
        quota_of(&c, &flow, "verifyapikey.K.apiproduct.developer.quota."),
        some3("10", "1", "second")
    );
    assert_eq!(
        quota_of(&c, &flow, "apiproduct.developer.quota."),
        [None, None, None]
    );
}

/// A later policy's `ref` reads them (a Quota policy's `countRef` here
/// stands as a GetOAuthV2Info's `ref`).
#[test]
fn a_ref_reads_the_quota_variables() {
    let get = r#"<GetOAuthV2Info name="G"><ClientId ref="apiproduct.developer.quota.timeunit"/></GetOAuthV2Info>"#;
    let c = config(shop(), &[VERIFY, get]);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let (_, _, calls) = run(
        &c,
        &request("GET", "/v1/items/1", &[("authorization", "Bearer good")]),
        &token_answer(Some(quota_products()), "READ"),
    );
    assert_eq!(calls[1], (TokenKind::ClientId, "second".to_string()));
}

/// An operation configuration without operations allows every resource
/// of its proxy: its own quota applies to what it allows, as one with
/// operations.
#[test]
fn a_configuration_without_operations_gives_its_own_quota() {
    let c = config(shop(), &[VERIFY]);
    let products = json!([
        {"name": "open", "operation_configs": [
            {"api_source": "news", "quota": {"limit": "1"}},
            {"api_source": "shop", "quota": {"limit": "7", "time_unit": "day"}}],
         "quota": {"limit": "100", "interval": "2", "time_unit": "minute"}}
    ]);
    let (end, flow, _) = run(
        &c,
        &request(
            "PUT",
            "/v1/anything/at/all",
            &[("authorization", "Bearer good")],
        ),
        &token_answer(Some(products), "READ"),
    );
    assert_eq!(end, FlowOutcome::Continue);
    assert_eq!(
        quota_of(&c, &flow, "apiproduct.developer.quota."),
        [Some("7".into()), None, Some("day".into())]
    );
    assert_eq!(flow.variable(&c, "apiproduct.operation"), None);
}
