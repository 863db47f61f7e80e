//! Issue 23's "done when": GoogleCloudPlatform/apigee-samples
//! `apiproduct-operations` (../shared/apigee-bundles) imported by
//! `oauthv2info import` as it is, its three API products and an app per
//! product in the real token service, and each expectation of the sample's
//! own tests (its `apikey` and `token` features) through the real Envoy:
//! which verb on which path passes, and which gets which 401; then the
//! same bundle imported for another environment (`--environment`), where
//! the products (the `test` environment's) allow nothing.
//!
//! On Apigee a call that passes gets 200 from the sample's response-side
//! AssignMessage; the filter runs on the request, and the proxy's NoRoute
//! RouteRule is Envoy's 404, so a pass here is that 404 with the operation
//! that allowed it in the access log (the import publishes what the
//! untranslated response step reads). docs/migrating-from-apigee.md.

use serde_json::{json, Value};

use crate::import::{logged, run_imported};
use crate::support::*;

const BUNDLE: &str = "../shared/apigee-bundles/GoogleCloudPlatform__apigee-samples/apiproduct-operations/bundles/apiproduct-operations";
const BASE: &str = "/v1/samples/apiproduct-operations";
const PROXY: &str = "apiproduct-operations";

/// A product's operation groups: (resource, verbs), each config's
/// apiSource the proxy.
type Operations = &'static [(&'static str, &'static [&'static str])];

/// The sample's configuration data (operations-defn-*.json).
const PRODUCTS: &[(&str, Operations)] = &[
    (
        "viewer",
        &[("/*/users", &["GET"]), ("/*/users/*", &["GET"])],
    ),
    ("creator", &[("/*/users", &["POST"])]),
    (
        "admin",
        &[
            ("/*/users", &["GET", "POST"]),
            ("/*/users/*", &["DELETE", "GET", "PUT"]),
        ],
    ),
];

/// Creates the products and an app per product (its API key
/// `<role>-key`, as the sample's setup script does with apigeecli), and
/// gets a token per app by client_credentials, as the sample's tests do.
fn set_up(service: &TokenService) -> Vec<(&'static str, String)> {
    let mut tokens = Vec::new();
    for &(role, configs) in PRODUCTS {
        let product = format!("{PROXY}-{role}");
        let operation_configs: Vec<Value> = configs
            .iter()
            .map(|(resource, methods)| {
                json!({"apiSource": PROXY,
                       "operations": [{"resource": resource, "methods": methods}]})
            })
            .collect();
        let r = service.admin(
            "/v1/apiproducts",
            json!({"name": product, "displayName": product, "approvalType": "auto",
                   "environments": ["test"],
                   "operationGroup": {"operationConfigType": "proxy",
                                      "operationConfigs": operation_configs}}),
        );
        assert_eq!(r.status, 201, "{product}: {}", r.text());
        let r = service.admin(
            "/v1/apps",
            json!({"name": format!("{product}-app"),
                   "developer_email": format!("{PROXY}-apigeesamples@acme.com"),
                   "api_products": [product],
                   "client_id": format!("{role}-key"),
                   "client_secret": format!("{role}-secret")}),
        );
        assert_eq!(r.status, 201, "{role} app: {}", r.text());
        let body = format!(
            "grant_type=client_credentials&client_id={role}-key&client_secret={role}-secret"
        );
        let r = http(
            service.port,
            "POST",
            "/oauth2/token",
            &[("content-type", b"application/x-www-form-urlencoded")],
            body.as_bytes(),
        );
        assert_eq!(r.status, 200, "{role} token: {}", r.text());
        let token = r.json()["access_token"].as_str().unwrap().to_string();
        tokens.push((role, token));
    }
    tokens
}

/// What the sample's tests expect of a call.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Allowed, by the operation with this resource.
    Pass(&'static str),
    /// 401 with this errorcode.
    Refused(&'static str),
    /// RF-Unknown-Request's 400.
    Unknown,
}

#[test]
fn apiproduct_operations_expectations_hold_through_import_and_envoy() {
    if !repo_root().join(BUNDLE).is_dir() {
        eprintln!("../shared/apigee-bundles is absent: not run");
        return;
    }
    let service = TokenService::start();
    let upstream = Upstream::start();
    let tokens = set_up(&service);
    let token = |role: &str| {
        tokens
            .iter()
            .find(|(r, _)| *r == role)
            .map(|(_, t)| t.clone())
            .unwrap()
    };
    let (envoy, out) = run_imported(BUNDLE, &["--environment", "test"], &service, &upstream);
    // The import named the proxy and the environment, and translated both
    // checks (no access check left out: it exited 0 without
    // --allow-untranslated).
    let plugin: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("plugins/default.json")).unwrap())
            .unwrap();
    assert_eq!(plugin["proxy_name"], PROXY);
    assert_eq!(plugin["environment"], "test");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["untranslated_access_checks"], json!([]), "{report}");
    // apiproxy.name is the configuration's proxy_name now; the revision is
    // not in the filter (a warning, and empty at run time).
    let warnings = report["warnings"].to_string();
    assert!(!warnings.contains("\\\"apiproxy.name\\\""), "{warnings}");
    assert!(warnings.contains("\\\"apiproxy.revision\\\""), "{warnings}");

    use Expect::*;
    const NO_KEY_MATCH: &str = "oauth.v2.InvalidApiKeyForGivenResource";
    const NO_PRODUCT_MATCH: &str = "keymanagement.service.InvalidAPICallAsNoApiProductMatchFound";
    // (verb, path suffix, role or None, expected): the sample's
    // apiproduct-operations-apikey.feature, then -token.feature, in order.
    let key_cases: &[(&str, &str, Option<&str>, Expect)] = &[
        (
            "GET",
            "/apikey/users",
            None,
            Refused("steps.oauth.v2.FailedToResolveAPIKey"),
        ),
        ("GET", "/apikey/unknown-resource", Some("viewer"), Unknown),
        ("GET", "/apikey/users", Some("viewer"), Pass("/*/users")),
        (
            "GET",
            "/apikey/users",
            Some("creator"),
            Refused(NO_KEY_MATCH),
        ),
        (
            "GET",
            "/apikey/users/1234",
            Some("viewer"),
            Pass("/*/users/*"),
        ),
        (
            "GET",
            "/apikey/users/1234",
            Some("creator"),
            Refused(NO_KEY_MATCH),
        ),
        (
            "POST",
            "/apikey/users",
            Some("viewer"),
            Refused(NO_KEY_MATCH),
        ),
        ("POST", "/apikey/users", Some("creator"), Pass("/*/users")),
        (
            "DELETE",
            "/apikey/users/1234",
            Some("viewer"),
            Refused(NO_KEY_MATCH),
        ),
        (
            "DELETE",
            "/apikey/users/1234",
            Some("creator"),
            Refused(NO_KEY_MATCH),
        ),
        (
            "DELETE",
            "/apikey/users/1234",
            Some("admin"),
            Pass("/*/users/*"),
        ),
    ];
    let token_cases: &[(&str, &str, Option<&str>, Expect)] = &[
        (
            "GET",
            "/token/users",
            None,
            Refused("oauth.v2.InvalidAccessToken"),
        ),
        ("GET", "/token/unknown-resource", Some("viewer"), Unknown),
        ("GET", "/token/users", Some("viewer"), Pass("/*/users")),
        (
            "GET",
            "/token/users",
            Some("creator"),
            Refused(NO_PRODUCT_MATCH),
        ),
        (
            "GET",
            "/token/users/1234",
            Some("viewer"),
            Pass("/*/users/*"),
        ),
        (
            "GET",
            "/token/users/1234",
            Some("creator"),
            Refused(NO_PRODUCT_MATCH),
        ),
        (
            "POST",
            "/token/users",
            Some("viewer"),
            Refused(NO_PRODUCT_MATCH),
        ),
        ("POST", "/token/users", Some("creator"), Pass("/*/users")),
        (
            "DELETE",
            "/token/users/1234",
            Some("viewer"),
            Refused(NO_PRODUCT_MATCH),
        ),
        (
            "DELETE",
            "/token/users/1234",
            Some("creator"),
            Refused(NO_PRODUCT_MATCH),
        ),
        (
            "DELETE",
            "/token/users/1234",
            Some("admin"),
            Pass("/*/users/*"),
        ),
    ];
    let mut calls = 0;
    for (kind, cases) in [("key", key_cases), ("token", token_cases)] {
        for &(verb, suffix, role, expect) in cases {
            // The sample's proxy reads the key from `apikey`, the token
            // from `token` (request.header.token), not Authorization.
            let credential = role.map(|r| match kind {
                "key" => format!("{r}-key"),
                _ => token(r),
            });
            let mut headers: Vec<(&str, &[u8])> = Vec::new();
            let header = if kind == "key" { "apikey" } else { "token" };
            if let Some(c) = &credential {
                headers.push((header, c.as_bytes()));
            }
            let body: &[u8] = if verb == "POST" {
                b"does-not-matter"
            } else {
                b""
            };
            if verb == "POST" {
                headers.push(("content-type", b"text/plain"));
            }
            let path = format!("{BASE}{suffix}");
            let what = format!("{kind} {role:?} {verb} {suffix}");
            let r = envoy.request(verb, &path, &headers, body);
            calls += 1;
            match expect {
                Pass(resource) => {
                    // The checks passed: the NoRoute route's 404, and
                    // the operation that allowed it.
                    assert_eq!(r.status, 404, "{what}: {}", r.text());
                    assert_eq!(r.header("apiproxy"), None, "{what}");
                    let line = &logged(&envoy, calls)[calls - 1];
                    assert_eq!(line["path"], path.as_str(), "{what}: {line}");
                    let variables = &line["variables"];
                    let published = match kind {
                        "key" => "verifyapikey.VerifyApiKey-1.apiproduct.operation.resource",
                        _ => "apiproduct.operation.resource",
                    };
                    assert_eq!(variables[published], resource, "{what}: {line}");
                    // VerifyAccessToken's apiproduct.name (VerifyAPIKey's
                    // is under its prefix, which the sample does not read).
                    if kind == "token" {
                        assert_eq!(
                            variables["apiproduct.name"],
                            format!("{PROXY}-{}", role.unwrap()),
                            "{what}: {line}"
                        );
                    }
                }
                Refused(errorcode) => {
                    assert_eq!(r.status, 401, "{what}: {}", r.text());
                    assert_eq!(
                        r.json()["fault"]["detail"]["errorcode"],
                        errorcode,
                        "{what}: {}",
                        r.text()
                    );
                    // The DefaultFaultRule (AlwaysEnforce) ran: the
                    // proxy's name from proxy_name, no revision.
                    assert_eq!(
                        r.header("apiproxy"),
                        Some("apiproduct-operations r"),
                        "{what}"
                    );
                }
                Unknown => {
                    assert_eq!(r.status, 400, "{what}: {}", r.text());
                    assert_eq!(
                        r.json()["response"]["message"],
                        "that request was unknown",
                        "{what}: {}",
                        r.text()
                    );
                    assert_eq!(
                        r.header("apiproxy"),
                        Some("apiproduct-operations r"),
                        "{what}"
                    );
                }
            }
        }
    }

    // Beyond the sample's tests: a key no app has.
    let path = format!("{BASE}/apikey/users");
    let r = envoy.request("GET", &path, &[("apikey", b"no-such-key")], b"");
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(
        r.json()["fault"]["detail"]["errorcode"],
        "oauth.v2.InvalidApiKey",
        "{}",
        r.text()
    );
    drop(envoy);

    // The same bundle imported for another environment: the products are
    // the "test" environment's, so the viewer's key and token are refused.
    let (envoy, _out) = run_imported(BUNDLE, &["--environment", "prod"], &service, &upstream);
    let r = envoy.request("GET", &path, &[("apikey", b"viewer-key")], b"");
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["fault"]["detail"]["errorcode"], NO_KEY_MATCH);
    let viewer = token("viewer");
    let r = envoy.request(
        "GET",
        &format!("{BASE}/token/users"),
        &[("token", viewer.as_bytes())],
        b"",
    );
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["fault"]["detail"]["errorcode"], NO_PRODUCT_MATCH);
}

/// api-platform-samples `oauth-verify-accesstoken` imported as it is: its
/// untranslated Quota reads `apiproduct.developer.quota.*` after the
/// VerifyAccessToken, so the import publishes the three, which are standard
/// variables (names known at load time): `metadata_bridge: auto` picks
/// header_to_metadata (the .wasm), no Lua filter. The product's quota reaches the
/// access log, and its operation configuration's own when that one allows
/// the call (docs/variables.md#api-products).
#[test]
fn the_products_quota_reaches_the_metadata_of_an_imported_proxy() {
    const VERIFY_BUNDLE: &str = "../shared/apigee-bundles/apigee__api-platform-samples/sample-proxies/oauth-verify-accesstoken";
    const VERIFY_PROXY: &str = "OAuthVerifyTokenSample";
    if !repo_root().join(VERIFY_BUNDLE).is_dir() {
        eprintln!("../shared/apigee-bundles is absent: not run");
        return;
    }
    let service = TokenService::start();
    let upstream = Upstream::start();
    let r = service.admin(
        "/v1/apiproducts",
        json!({"name": "metered", "approvalType": "auto",
               "quota": "100", "quotaInterval": "1", "quotaTimeUnit": "hour",
               "operationGroup": {"operationConfigType": "proxy", "operationConfigs": [
                   {"apiSource": VERIFY_PROXY,
                    "operations": [{"resource": "/limited", "methods": ["GET"]}],
                    "quota": {"limit": "10", "interval": "30", "timeUnit": "minute"}},
                   {"apiSource": VERIFY_PROXY, "operations": [{"resource": "/**"}]}]}}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let r = service.admin(
        "/v1/apps",
        json!({"name": "metered-app", "developer_email": "dev@example.com",
               "api_products": ["metered"], "client_id": "metered-key",
               "client_secret": "metered-secret"}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let r = http(
        service.port,
        "POST",
        "/oauth2/token",
        &[("content-type", b"application/x-www-form-urlencoded")],
        b"grant_type=client_credentials&client_id=metered-key&client_secret=metered-secret",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let token = r.json()["access_token"].as_str().unwrap().to_string();

    let (envoy, out) = run_imported(
        VERIFY_BUNDLE,
        &["--allow-untranslated"],
        &service,
        &upstream,
    );
    let plugin: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("plugins/default.json")).unwrap())
            .unwrap();
    let publish = plugin["publish"].to_string();
    for name in ["limit", "interval", "timeunit"] {
        assert!(
            publish.contains(&format!("\"apiproduct.developer.quota.{name}\"")),
            "{publish}"
        );
    }
    // No Lua filter; the .wasm's variables go through header_to_metadata
    // (the native module writes dynamic metadata itself).
    let config = std::fs::read_to_string(out.join("envoy.yaml")).unwrap();
    assert!(!config.contains("lua.v3.Lua"), "{config}");
    assert_eq!(
        config.contains("header_to_metadata.v3.Config"),
        !native(),
        "{config}"
    );

    let bearer = format!("Bearer {token}");
    let mut calls = 0;
    for (path, want) in [
        ("/mocktarget/limited", ["10", "30", "minute"]),
        ("/mocktarget/get", ["100", "1", "hour"]),
    ] {
        let r = envoy.request("GET", path, &[("authorization", bearer.as_bytes())], b"");
        calls += 1;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let line = &logged(&envoy, calls)[calls - 1];
        // The access log shows the path as the target gets it.
        let suffix = path.trim_start_matches("/mocktarget");
        assert_eq!(line["path"], format!("/api{suffix}"), "{line}");
        let variables = &line["variables"];
        for (name, value) in ["limit", "interval", "timeunit"].iter().zip(want) {
            assert_eq!(
                variables[format!("apiproduct.developer.quota.{name}")],
                value,
                "{path} {name}: {line}"
            );
        }
    }
}
