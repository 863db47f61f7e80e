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
    // (create_app) subscribes to FreeProduct (undefined) and Premium.
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
    assert_eq!(answer["api_products"][0]["name"], "Premium", "{answer}");

    let call = || {
        stack
            .envoy
            .request("GET", "/", &[("authorization", b"Bearer tok")], b"")
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
