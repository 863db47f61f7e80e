//! API products through the real Envoy and the real token service: the
//! products of a token's app arrive with the lookup (`api_products`), are
//! read by the filter (not a service failure) and kept with the cached
//! profile (a warm hit makes no second call). docs/decisions.md#api-products.

use serde_json::json;

use crate::support::*;

const VERIFY: &str = r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation></OAuthV2>"#;

#[test]
fn a_lookup_with_products_is_read_and_cached_with_the_profile() {
    let stack = Stack::start_with(
        plugin(
            &[VERIFY],
            json!({"request_headers": {"x-products": "api_product_list", "x-fault": "fault.name"}}),
        ),
        |s| s.concurrency = 1,
    );
    // Premium with every kind of definition the lookup carries; the app
    // (create_app) subscribes to FreeProduct (defined without limits by the
    // harness) and Premium.
    let r = stack.service.admin(
        "/v1/apiproducts",
        json!({"name": "Premium", "proxies": ["weather"], "apiResources": ["/forecast/**", "/"],
               "environments": ["test"], "attributes": [{"name": "tier", "value": "gold"}],
               "operationGroup": {"operationConfigs": [{"apiSource": "weather",
                   "operations": [{"resource": "/a/*", "methods": ["GET"]}],
                   "attributes": [{"name": "op", "value": "read"}]}]}}),
    );
    assert!(r.status == 200 || r.status == 201, "{}", r.text());
    stack.service.create_app("c1", json!({}));
    stack
        .service
        .import_access_token("c1", "tok", "approved", 3600, json!({}));
    // The lookup really carries the definitions the filter reads.
    let answer = stack.service.introspect("tok", "access_token");
    assert_eq!(answer["api_products"][1]["name"], "Premium", "{answer}");

    // FreeProduct (defined without limits by the harness) allows it.
    let call = || {
        stack
            .envoy
            .request("GET", "/a/x", &[("authorization", b"Bearer tok")], b"")
    };
    let callouts = || stack.envoy.stat("wasmcustom.oauthv2info.callouts");
    let r = call();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.upstream_header("x-products").as_deref(),
        Some("[FreeProduct, Premium]")
    );
    assert_eq!(r.upstream_header("x-fault"), None);
    assert_eq!(callouts(), 1);
    // Warm: from the cached entry (products and all), no second call.
    let r = call();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.upstream_header("x-products").as_deref(),
        Some("[FreeProduct, Premium]")
    );
    assert_eq!(callouts(), 1, "the second request is a cache hit");
}

const NO_PRODUCT: &str = r#"{"fault":{"faultstring":"Invalid API call as no apiproduct match found","detail":{"errorcode":"keymanagement.service.InvalidAPICallAsNoApiProductMatchFound"}}}"#;

/// A product, in the management API's shape.
fn product(stack: &Stack, body: serde_json::Value) {
    let r = stack.service.admin("/v1/apiproducts", body);
    assert!(r.status == 200 || r.status == 201, "{}", r.text());
}

/// `PUT /v1/apps/{client_id}/{what}` with the admin key; asserts a 200.
fn put(stack: &Stack, path: &str, body: serde_json::Value) {
    let auth = format!("Bearer {ADMIN_KEY}");
    let r = http(
        stack.service.port,
        "PUT",
        path,
        &[
            ("authorization", auth.as_bytes()),
            ("content-type", b"application/json"),
        ],
        body.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{path}: {}", r.text());
}

/// Two products: `shop-read` allows GET /items/** of proxy shop (an
/// operation group), `news` every path of proxy news. App `c1`
/// subscribes to shop-read, `c2` to news.
fn shop(stack: &Stack) {
    product(
        stack,
        json!({"name": "shop-read", "attributes": [{"name": "tier", "value": "gold"}],
               "operationGroup": {"operationConfigs": [{"apiSource": "shop",
                   "operations": [{"resource": "/items/**", "methods": ["GET"]}]}]}}),
    );
    product(
        stack,
        json!({"name": "news", "proxies": ["news"], "apiResources": ["/"]}),
    );
    for (app, subscribed) in [("c1", "shop-read"), ("c2", "news")] {
        create_app(stack, app, subscribed);
    }
}

/// An app subscribed to one product only (not to `create_app`'s
/// FreeProduct and Premium, which allow everything).
fn create_app(stack: &Stack, app: &str, subscribed: &str) {
    let r = stack.service.admin(
        "/v1/apps",
        json!({"name": format!("app-{app}"), "developer_email": format!("{app}@example.com"),
               "developer_id": format!("dev-{app}"), "api_products": [subscribed],
               "attributes": {"region": "eu"}, "client_id": app, "client_secret": format!("secret-{app}")}),
    );
    assert_eq!(r.status, 201, "create app: {}", r.text());
}

/// A token of a product that allows the call passes (with its product's
/// variables); of another product, or with the wrong verb, gets Apigee's
/// 401; once its subscription is revoked, the change feed drops the cached
/// answer and the token is refused.
#[test]
fn verify_access_token_checks_the_tokens_products() {
    let stack = Stack::start_with(
        plugin(
            &[VERIFY],
            json!({"basepath": "/v1", "proxy_name": "shop", "environment": "test",
                   "request_headers": {"x-product": "apiproduct.name", "x-tier": "apiproduct.tier",
                                       "x-resource": "apiproduct.operation.resource"},
                   "cache": {"ttl_ms": 300000, "invalidation": {"poll_ms": 200, "max_stale_ms": 5000}}}),
        ),
        |s| s.concurrency = 1,
    );
    shop(&stack);
    for (app, token) in [("c1", "tok1"), ("c2", "tok2")] {
        stack
            .service
            .import_access_token(app, token, "approved", 3600, json!({}));
    }
    let call = |method: &str, path: &str, token: &str| {
        let auth = format!("Bearer {token}");
        stack
            .envoy
            .request(method, path, &[("authorization", auth.as_bytes())], b"")
    };
    let r = call("GET", "/v1/items/42?x=1", "tok1");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.upstream_header("x-product").as_deref(), Some("shop-read"));
    assert_eq!(r.upstream_header("x-tier").as_deref(), Some("gold"));
    assert_eq!(
        r.upstream_header("x-resource").as_deref(),
        Some("/items/**")
    );
    // Warm, the same.
    assert_eq!(call("GET", "/v1/items/43", "tok1").status, 200);
    for (method, path, token) in [
        ("GET", "/v1/items/42", "tok2"),
        ("POST", "/v1/items/42", "tok1"),
        ("GET", "/v1/orders", "tok1"),
    ] {
        let r = call(method, path, token);
        assert_eq!(r.status, 401, "{method} {path} {token}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.text(), NO_PRODUCT, "{method} {path} {token}");
    }
    // The subscription revoked: refused once the change feed dropped the
    // cached answer.
    put(
        &stack,
        "/v1/apps/c1/apiproducts/shop-read",
        json!({"status": "revoked"}),
    );
    wait_until(
        "the revoked subscription refuses",
        std::time::Duration::from_secs(10),
        || call("GET", "/v1/items/42", "tok1").status == 401,
    );
    assert_eq!(call("GET", "/v1/items/44", "tok1").text(), NO_PRODUCT);
}

const KEY: &str =
    r#"<VerifyAPIKey name="K"><APIKey ref="request.queryparam.apikey"/></VerifyAPIKey>"#;

/// VerifyAPIKey with a valid key, an unknown one, one of a revoked app,
/// one of another product, and none: the statuses and bodies of Apigee's
/// VerifyAPIKey page; a cached key whose app is revoked is refused once
/// the change feed drops it.
#[test]
fn verify_api_key_through_envoy() {
    let stack = Stack::start_with(
        plugin(
            &[KEY],
            json!({"basepath": "/v1", "proxy_name": "shop",
                   "request_headers": {"x-product": "verifyapikey.K.apiproduct.name",
                                       "x-app": "verifyapikey.K.developer.app.name",
                                       "x-region": "verifyapikey.K.app.region",
                                       "x-bare-product": "apiproduct.name",
                                       "x-bare-app": "developer.app.name",
                                       "x-fault": "fault.name"},
                   "cache": {"ttl_ms": 300000, "invalidation": {"poll_ms": 200, "max_stale_ms": 5000}}}),
        ),
        |s| s.concurrency = 1,
    );
    shop(&stack);
    create_app(&stack, "c3", "shop-read");
    put(&stack, "/v1/apps/c3/status", json!({"status": "revoked"}));
    let call = |path: &str| stack.envoy.request("GET", path, &[], b"");
    let r = call("/v1/items/1?apikey=c1");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.upstream_header("x-product").as_deref(), Some("shop-read"));
    assert_eq!(r.upstream_header("x-app").as_deref(), Some("app-c1"));
    assert_eq!(r.upstream_header("x-region").as_deref(), Some("eu"));
    // Apigee's analytics variables, without a prefix.
    assert_eq!(
        r.upstream_header("x-bare-product").as_deref(),
        Some("shop-read")
    );
    assert_eq!(r.upstream_header("x-bare-app").as_deref(), Some("app-c1"));
    assert_eq!(r.upstream_header("x-fault"), None);
    for (path, body) in [
        (
            "/v1/items/1?apikey=nope",
            r#"{"fault":{"faultstring":"Invalid ApiKey","detail":{"errorcode":"oauth.v2.InvalidApiKey"}}}"#,
        ),
        (
            "/v1/items/1?apikey=c3",
            r#"{"fault":{"faultstring":"App not Approved","detail":{"errorcode":"keymanagement.service.invalid_client-app_not_approved"}}}"#,
        ),
        (
            "/v1/items/1?apikey=c2",
            r#"{"fault":{"faultstring":"Invalid ApiKey for given resource","detail":{"errorcode":"oauth.v2.InvalidApiKeyForGivenResource"}}}"#,
        ),
        (
            "/v1/items/1",
            r#"{"fault":{"faultstring":"Failed to resolve API Key variable request.queryparam.apikey","detail":{"errorcode":"steps.oauth.v2.FailedToResolveAPIKey"}}}"#,
        ),
    ] {
        let r = call(path);
        assert_eq!(r.status, 401, "{path}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.text(), body, "{path}");
    }
    // The valid key again: a warm hit.
    assert_eq!(call("/v1/items/2?apikey=c1").status, 200);
    // Its app revoked: refused once the change feed dropped the cached key.
    put(&stack, "/v1/apps/c1/status", json!({"status": "revoked"}));
    wait_until(
        "the revoked app's key refuses",
        std::time::Duration::from_secs(10),
        || call("/v1/items/3?apikey=c1").status == 401,
    );
    assert_eq!(
        call("/v1/items/4?apikey=c1").text(),
        r#"{"fault":{"faultstring":"App not Approved","detail":{"errorcode":"keymanagement.service.invalid_client-app_not_approved"}}}"#
    );
}
