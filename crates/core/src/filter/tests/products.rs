//! The API-product check through the worker
//! (docs/decisions.md#api-products).

use super::*;
/// The API-product check through the worker: the warm hit reads `:path`
/// only when the cached lookup carries products (a token service without
/// products costs no host call), and `:method` only when an operation of
/// those products lists verbs; it refuses a call no product allows with
/// Apigee's 401.
#[test]
fn the_product_check_reads_the_call_only_for_a_lookup_with_products() {
    const VERIFY: &str = r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation></OAuthV2>"#;
    let plugin = json!({"policies": [VERIFY], "basepath": "/v1", "proxy_name": "shop"});
    let resources = json!([{"name": "viewer", "proxies": ["shop"], "resources": ["/items/*"]}]);
    let operations = json!([{"name": "viewer", "operation_configs": [{"api_source": "shop",
        "operations": [{"resource": "/items/*", "methods": ["GET"]}]}]}]);
    let header_reads = |h: &Harness| {
        h.host
            .calls
            .iter()
            .filter(|c| **c == "request_header")
            .count()
    };
    // The authorization header, then :path when the lookup has products,
    // and :method when they list verbs.
    for (products, want) in [(None, 1), (Some(&resources), 2), (Some(&operations), 3)] {
        let mut h = Harness::new(plugin.clone());
        let mut answer: Value = serde_json::from_str(&profile("tok", json!({}))).unwrap();
        if let Some(products) = products {
            answer["api_products"] = products.clone();
        }
        let bearer = [("authorization", "Bearer tok")];
        assert_eq!(h.request(2, "/v1/items/1", &bearer), Action::Pause);
        let token = h.last_callout().token;
        h.respond(token, Some(200), &answer.to_string());
        assert_eq!(h.req(2).resumed, 1, "{products:?}");
        // Warm hits: the allowed path passes; with products, another is
        // refused.
        let before = header_reads(&h);
        assert_eq!(h.request(3, "/v1/items/2", &bearer), Action::Continue);
        let reads = header_reads(&h) - before;
        let refused = h.request(4, "/v1/orders/2", &bearer);
        if products.is_some() {
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
        assert_eq!(reads, want, "{products:?}");
    }
}

/// The verb a check does not read is no verb it needs: products without
/// verbs allow every verb, and a later policy of the same request whose
/// lookup lists verbs reads `:method` then (a token reused from an
/// earlier policy is checked with the call it needs).
#[test]
fn the_verb_is_read_when_a_lookup_lists_verbs() {
    const VERIFY: &str = r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation></OAuthV2>"#;
    let key = r#"<VerifyAPIKey name="K"><APIKey ref="request.header.x-key"/></VerifyAPIKey>"#;
    let mut h =
        Harness::new(json!({"policies": [VERIFY, key], "basepath": "/v1", "proxy_name": "shop"}));
    let resources = json!([{"name": "any", "proxies": ["shop"], "resources": ["/items/*"]}]);
    let put_only = json!([{"name": "writer", "operation_configs": [{"api_source": "shop",
        "operations": [{"resource": "/items/*", "methods": ["PUT"]}]}]}]);
    let mut token: Value = serde_json::from_str(&profile("tok-a1", json!({}))).unwrap();
    token["api_products"] = resources;
    let key_answer = json!({"active": true, "client_id": "key-b2", "api_products": put_only,
        "profile": {"client_id": "key-b2", "status": "approved", "key_status": "approved",
                    "developer.status": "active"}});
    let send = |h: &mut Harness, id: u32, method: &str| {
        h.host.requests.insert(
            id,
            FakeRequest::with_headers(vec![
                (":method".into(), method.as_bytes().to_vec()),
                (":path".into(), b"/v1/items/1".to_vec()),
                ("authorization".into(), b"Bearer tok-a1".to_vec()),
                ("x-key".into(), b"key-b2".to_vec()),
            ]),
        );
        h.host.active = id;
        let mut action = h.worker.on_request_headers(&mut h.host, id, true);
        while action == Action::Pause && h.req(id).reply.is_none() && h.req(id).resumed == 0 {
            let callout = h.last_callout();
            let body = if callout.body.windows(6).any(|w| w == b"key-b2") {
                key_answer.to_string()
            } else {
                token.to_string()
            };
            let t = callout.token;
            h.respond(t, Some(200), &body);
            if h.req(id).resumed == 1 {
                action = Action::Continue;
            }
        }
        action
    };
    for round in 0..2 {
        // The token's products allow every verb; the key's only PUT.
        assert_eq!(send(&mut h, 10 + round, "PUT"), Action::Continue, "{round}");
        let refused = send(&mut h, 20 + round, "GET");
        assert_eq!(refused, Action::Pause, "{round}");
        assert_eq!(
            h.req(20 + round).reply_json()["fault"]["detail"]["errorcode"],
            "oauth.v2.InvalidApiKeyForGivenResource",
            "{round}"
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

/// `method path` with `Bearer token` on context `id`, answered with
/// `products` if it calls out: the name of the product that allowed it
/// (`apiproduct.name`), or the status of its reply.
fn product_of(
    h: &mut Harness,
    id: u32,
    (method, path): (&str, &str),
    token: &str,
    products: &Value,
) -> Result<String, u32> {
    h.host.requests.insert(
        id,
        FakeRequest::with_headers(vec![
            (":method".into(), method.as_bytes().to_vec()),
            (":path".into(), path.as_bytes().to_vec()),
            (
                "authorization".into(),
                format!("Bearer {token}").into_bytes(),
            ),
        ]),
    );
    h.host.active = id;
    let callouts = h.host.callouts.len();
    let mut action = h.worker.on_request_headers(&mut h.host, id, true);
    if h.host.callouts.len() > callouts {
        let mut answer: Value = serde_json::from_str(&profile(token, json!({}))).unwrap();
        answer["api_products"] = products.clone();
        let t = h.last_callout().token;
        h.respond(t, Some(200), &answer.to_string());
        action = if h.req(id).resumed == 1 {
            Action::Continue
        } else {
            Action::Pause
        };
    }
    let req = h.req(id);
    match action {
        Action::Continue => Ok(req
            .filter_state
            .iter()
            .find(|(k, _)| k.ends_with("apiproduct.name"))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()),
        Action::Pause => Err(req.reply.as_ref().map_or(0, |r| r.0)),
    }
}

/// The worker keeps its product decisions (docs/performance.md#the-warm-path),
/// and a decision is used only for the same products, path and verb: a
/// warm hit with another path, verb or token's products is decided
/// anew, and asking again gives the same answer.
#[test]
fn each_path_verb_and_app_gets_its_own_product_decision() {
    const VERIFY: &str = r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation></OAuthV2>"#;
    let mut h =
        Harness::new(json!({"policies": [VERIFY], "basepath": "/v1", "proxy_name": "shop"}));
    let viewer = json!([{"name": "viewer", "operation_configs": [{"api_source": "shop",
        "operations": [{"resource": "/items/*", "methods": ["GET"]}]}]},
        {"name": "orders", "proxies": ["shop"], "resources": ["/orders/**"]}]);
    let writer = json!([{"name": "writer", "operation_configs": [{"api_source": "shop",
        "operations": [{"resource": "/items/*", "methods": ["PUT"]}]}]}]);
    let ok = |name: &str| Ok(name.to_string());
    let mut id = 10;
    for round in 0..3 {
        for (call, token, want) in [
            (("GET", "/v1/items/1"), "tok-a", ok("viewer")),
            (("PUT", "/v1/items/1"), "tok-a", Err(401)),
            (("GET", "/v1/orders/1/x"), "tok-a", ok("orders")),
            (("GET", "/v1/other"), "tok-a", Err(401)),
            (("GET", "/v1/items/1"), "tok-b", Err(401)),
            (("PUT", "/v1/items/1"), "tok-b", ok("writer")),
            (("PUT", "/v1/items/2"), "tok-b", ok("writer")),
            (("PUT", "/v1/orders/1"), "tok-b", Err(401)),
        ] {
            let products = if token == "tok-a" { &viewer } else { &writer };
            id += 1;
            assert_eq!(
                product_of(&mut h, id, call, token, products),
                want,
                "round {round}: {call:?} {token}"
            );
        }
    }
    // Two lookups, the rest warm hits.
    assert_eq!(h.host.callouts.len(), 2);
}

/// A changed product is seen at once: when the change feed drops the
/// token's entry, the next lookup's products are checked, not the
/// decision made for the former ones.
#[test]
fn a_changed_product_is_checked_after_the_feed_drops_the_entry() {
    const VERIFY: &str = r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation></OAuthV2>"#;
    let mut h = Harness::new(
        json!({"policies": [VERIFY], "basepath": "/v1", "proxy_name": "shop",
        "token_service": {"cluster": "ts", "credentials": "Bearer k", "timeout_ms": 500},
        "cache": {"ttl_ms": 300_000, "invalidation": {"poll_ms": 200, "max_stale_ms": 1_000}}}),
    );
    let feed = |changes: Vec<Value>, next: i64| {
        json!({"changes": changes, "next": next, "oldest": 1}).to_string()
    };
    let poll = |h: &mut Harness, body: &str| {
        h.tick();
        let t = h.last_callout().token;
        h.respond(t, Some(200), body);
    };
    poll(&mut h, &feed(vec![], 0));
    let before = json!([{"name": "viewer", "proxies": ["shop"], "resources": ["/items/*"]}]);
    let after = json!([{"name": "viewer", "proxies": ["shop"], "resources": ["/orders/*"]}]);
    let get = ("GET", "/v1/items/1");
    assert_eq!(
        product_of(&mut h, 10, get, "tok", &before),
        Ok("viewer".into())
    );
    assert_eq!(
        product_of(&mut h, 11, get, "tok", &after),
        Ok("viewer".into()),
        "warm"
    );
    let lookups = h.host.callouts.len();
    h.host.now += 200;
    let hash = oauthv2info_names::token_hash_hex(TokenKind::AccessToken, b"tok");
    poll(
        &mut h,
        &feed(
            vec![json!({"cursor": 1, "kind": "access_token", "hash": hash, "op": "revoke"})],
            1,
        ),
    );
    h.host.now += 1;
    // Looked up again: the changed product no longer allows the path.
    assert_eq!(product_of(&mut h, 12, get, "tok", &after), Err(401));
    assert_eq!(product_of(&mut h, 13, get, "tok", &after), Err(401), "warm");
    let orders = ("GET", "/v1/orders/1");
    assert_eq!(
        product_of(&mut h, 14, orders, "tok", &after),
        Ok("viewer".into())
    );
    assert_eq!(h.host.callouts.len() - lookups, 2, "a poll and a lookup");
}

/// A new configuration forgets the decisions made under the former one
/// (its proxy name and environment): the cached entry is checked again.
#[test]
fn a_new_configuration_decides_again() {
    const VERIFY: &str = r#"<OAuthV2 name="V"><Operation>VerifyAccessToken</Operation></OAuthV2>"#;
    let products = json!([{"name": "viewer", "proxies": ["shop"], "resources": ["/items/*"]}]);
    let plugin =
        |proxy: &str| json!({"policies": [VERIFY], "basepath": "/v1", "proxy_name": proxy});
    let mut h = Harness::new(plugin("shop"));
    let get = ("GET", "/v1/items/1");
    assert_eq!(
        product_of(&mut h, 10, get, "tok", &products),
        Ok("viewer".into())
    );
    assert_eq!(
        product_of(&mut h, 11, get, "tok", &products),
        Ok("viewer".into())
    );
    let lookups = h.host.callouts.len();
    assert!(h
        .worker
        .configure(&mut h.host, plugin("news").to_string().as_bytes()));
    assert_eq!(product_of(&mut h, 12, get, "tok", &products), Err(401));
    assert_eq!(h.host.callouts.len(), lookups, "a warm hit");
    assert!(h
        .worker
        .configure(&mut h.host, plugin("shop").to_string().as_bytes()));
    assert_eq!(
        product_of(&mut h, 13, get, "tok", &products),
        Ok("viewer".into())
    );
}
