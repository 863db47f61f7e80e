//! The API-product check through the worker
//! (docs/decisions.md#api-products).

use super::*;
/// The API-product check through the worker: the warm hit reads `:path`
/// and `:method` only when the cached lookup carries products (a token
/// service without products costs no host call), and refuses a call no
/// product allows with Apigee's 401.
#[test]
fn the_product_check_reads_the_call_only_for_a_lookup_with_products() {
    const VERIFY: &str = r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation></OAuthV2>"#;
    let plugin = json!({"policies": [VERIFY], "basepath": "/v1", "proxy_name": "shop"});
    let products = json!([{"name": "viewer", "proxies": ["shop"], "resources": ["/items/*"]}]);
    let header_reads = |h: &Harness| {
        h.host
            .calls
            .iter()
            .filter(|c| **c == "request_header")
            .count()
    };
    for with_products in [false, true] {
        let mut h = Harness::new(plugin.clone());
        let mut answer: Value = serde_json::from_str(&profile("tok", json!({}))).unwrap();
        if with_products {
            answer["api_products"] = products.clone();
        }
        let bearer = [("authorization", "Bearer tok")];
        assert_eq!(h.request(2, "/v1/items/1", &bearer), Action::Pause);
        let token = h.last_callout().token;
        h.respond(token, Some(200), &answer.to_string());
        assert_eq!(h.req(2).resumed, 1, "with products: {with_products}");
        // Warm hits: the allowed path passes; with products, another is
        // refused.
        let before = header_reads(&h);
        assert_eq!(h.request(3, "/v1/items/2", &bearer), Action::Continue);
        let reads = header_reads(&h) - before;
        let refused = h.request(4, "/v1/orders/2", &bearer);
        if with_products {
            assert_eq!(refused, Action::Pause);
            let reply = h.req(4).reply.as_ref().expect("a reply");
            assert_eq!(reply.0, 401);
            assert_eq!(
                h.req(4).reply_json()["fault"]["detail"]["errorcode"],
                "keymanagement.service.InvalidAPICallAsNoApiProductMatchFound"
            );
        } else {
            assert_eq!(refused, Action::Continue);
        }
        // The authorization header, then :path and :method when the
        // lookup has products.
        assert_eq!(
            reads,
            if with_products { 3 } else { 1 },
            "with products: {with_products}"
        );
    }
}

/// A warm hit with the API-product check (the match read in place from
/// the cached profile, its variables and attributes published, the verbs
/// joined) allocates nothing beyond the host's buffers, for
/// VerifyAccessToken and VerifyAPIKey alike.
#[test]
fn a_warm_hit_with_the_product_check_allocates_nothing_beyond_the_host_buffers() {
    let products = json!([
        {"name": "legacy", "proxies": ["shop"], "resources": ["/orders/**"]},
        {"name": "viewer", "operation_configs": [{"api_source": "shop",
            "operations": [{"resource": "/items/*", "methods": ["GET", "HEAD"]}],
            "attributes": {"quota": "10"}}], "attributes": {"tier": "bronze"}}]);
    let verify = r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation></OAuthV2>"#;
    let key = r#"<VerifyAPIKey name="K"><APIKey ref="request.queryparam.apikey"/></VerifyAPIKey>"#;
    let mut token: Value = serde_json::from_str(&profile("tok", json!({"a": "1"}))).unwrap();
    token["api_products"] = products.clone();
    let key_answer = json!({"active": true, "client_id": "tok", "api_products": products,
        "profile": {"client_id": "tok", "client_secret": "s", "developer.app.name": "app",
                    "status": "approved", "key_status": "approved", "developer.status": "active",
                    "attributes": {"region": "eu"}}});
    for (policy, answer) in [(verify, token), (key, key_answer)] {
        let plugin = json!({"policies": [policy], "basepath": "/v1", "proxy_name": "shop"});
        let mut h = Harness::new(plugin);
        let headers = [("authorization", "Bearer tok")];
        let path = "/v1/items/1?apikey=tok";
        assert_eq!(h.request(2, path, &headers), Action::Pause);
        let t = h.last_callout().token;
        h.respond(t, Some(200), &answer.to_string());
        // Warm the buffers, then count.
        for id in [3, 4] {
            assert_eq!(h.request(id, path, &headers), Action::Continue, "{policy}");
        }
        let all: Vec<(String, Vec<u8>)> = vec![
            (":method".into(), b"GET".to_vec()),
            (":path".into(), path.as_bytes().to_vec()),
            ("authorization".into(), b"Bearer tok".to_vec()),
        ];
        h.host.requests.insert(
            5,
            FakeRequest {
                headers: all,
                ..FakeRequest::default()
            },
        );
        h.host.active = 5;
        let (worker, host) = (&mut h.worker, &mut h.host);
        let n = allocations(|| {
            assert_eq!(worker.on_request_headers(host, 5, true), Action::Continue);
        });
        assert_eq!(n, 0, "{policy}");
        let state = &h.req(5).filter_state;
        assert!(
            state.iter().any(|(k, _)| k.contains("apiproduct.name")),
            "{policy}: {state:?}"
        );
    }
}
