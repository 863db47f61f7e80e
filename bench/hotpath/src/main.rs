//! One warm cache hit, natively, through the very code the filter runs in
//! Envoy: `oauthv2info_core::Worker::on_request_headers`, over the
//! core's fake host (`host::fake`, feature `test-host`), which answers the
//! way Envoy's does (the request's headers, the clock, the shared cache
//! entry) and, with `RECORD` off, keeps nothing of what the filter writes. What it measures is the
//! filter's own work per warm request (docs/performance.md#the-warm-path).
//!
//!   hotpath [N] [CONFIG]   N warm hits (default 200000) of one of the
//!                          benchmark's configurations: `default` (as
//!                          shipped: every variable published, metadata
//!                          bridge `auto`, which is the Lua bridge here),
//!                          `h2m` (the same through header_to_metadata),
//!                          `narrow` (3 variables published, 3 mapped
//!                          request headers; `auto` picks header_to_metadata),
//!                          `miss` (as default with the cache off: each
//!                          request a callout, its answer parsed and
//!                          published; the host's side of the callout is
//!                          not in the count), `verify` (OAuthV2
//!                          VerifyAccessToken instead, the token in
//!                          `Authorization: Bearer`, every variable
//!                          published: bench/bench.py's setup 2v),
//!                          `verify-products` (verify with `proxy_name`,
//!                          the token's app subscribed to three API
//!                          products, the second of which allows the
//!                          call through an operation group: the product
//!                          check on a warm hit), `verify-resources` (the
//!                          same, the second product allowing the call by
//!                          its resources: no operation lists verbs, so
//!                          `:method` is not read), `apikey` (VerifyAPIKey,
//!                          the key in `?apikey=`, the same products),
//!                          `condition` (default plus a SetOAuthV2Info step
//!                          whose condition, `request.verb = "POST"`, is
//!                          false for these GETs: setup 2c), `faults`
//!                          (default plus fault rules, which these
//!                          requests, raising no fault, never run)
//!
//! For instruction counts, run it twice under callgrind and take the
//! difference (docs/performance.md#tools):
//!   valgrind --tool=callgrind --callgrind-out-file=/dev/null hotpath 1000
//!   valgrind --tool=callgrind --callgrind-out-file=/dev/null hotpath 3000

use std::hint::black_box;
use std::time::Instant;

use oauthv2info_core::host::fake::{FakeHost, FakeRequest};
use oauthv2info_core::{Action, Worker};

const TOKEN: &str = "BT00042a1b2c3d4e5f6";
const NOW: i64 = 1_795_356_400_000;

/// The plugin configuration of `make bench`'s warm setups (bench/bench.py).
fn plugin(mode: &str) -> String {
    let policy = r#"<GetOAuthV2Info name=\"GetTokenAttributes\"><AccessToken ref=\"request.queryparam.access_token\"/></GetOAuthV2Info>"#;
    if mode == "verify-products" || mode == "verify-resources" {
        return r#"{"token_service": {"cluster": "token_service", "credentials": "Bearer k"},
                "policies": ["<OAuthV2 name=\"VerifyAccessToken\"><Operation>VerifyAccessToken</Operation></OAuthV2>"],
                "basepath": "/v1", "proxy_name": "shop", "environment": "prod",
                "metadata_bridge": "auto", "cache": {"max_entries": 1000000}}"#
            .to_string();
    }
    if mode == "apikey" {
        return r#"{"token_service": {"cluster": "token_service", "credentials": "Bearer k"},
                "policies": ["<VerifyAPIKey name=\"VerifyKey\"><APIKey ref=\"request.queryparam.apikey\"/></VerifyAPIKey>"],
                "basepath": "/v1", "proxy_name": "shop", "environment": "prod",
                "metadata_bridge": "auto", "cache": {"max_entries": 1000000}}"#
            .to_string();
    }
    if mode == "verify" {
        return r#"{"token_service": {"cluster": "token_service", "credentials": "Bearer k"},
                "policies": ["<OAuthV2 name=\"VerifyAccessToken\"><Operation>VerifyAccessToken</Operation></OAuthV2>"],
                "metadata_bridge": "auto", "cache": {"max_entries": 1000000}}"#
            .to_string();
    }
    if mode == "condition" {
        // bench/bench.py's SET_POLICY, in a step of its own (setup 2c).
        let set = r#"<SetOAuthV2Info name=\"SetDept\"><AccessToken ref=\"request.queryparam.access_token\"/><Attributes><Attribute name=\"department.id\" ref=\"request.queryparam.dept\"/></Attributes></SetOAuthV2Info>"#;
        return format!(
            r#"{{"token_service": {{"cluster": "token_service", "credentials": "Bearer k"}},
                "policies": ["{policy}", {{"policy": "{set}", "condition": "request.verb = \"POST\""}}],
                "metadata_bridge": "auto", "cache": {{"max_entries": 1000000}}}}"#
        );
    }
    if mode == "faults" {
        // default plus fault handling (a rule, a DefaultFaultRule with
        // AlwaysEnforce), which a request that raises no fault never runs.
        return format!(
            r#"{{"token_service": {{"cluster": "token_service", "credentials": "Bearer k"}},
                "policies": ["{policy}"], "metadata_bridge": "auto", "cache": {{"max_entries": 1000000}},
                "fault_handling": {{"policies": ["<AssignMessage name=\"AM-401\"><Set><Payload contentType=\"application/json\">{{\"fault\":\"{{fault.name}}\"}}</Payload><StatusCode>401</StatusCode></Set></AssignMessage>"],
                    "fault_rules": "<FaultRules><FaultRule name=\"t\"><Condition>fault.name = \"invalid_access_token\"</Condition><Step><Name>AM-401</Name></Step></FaultRule></FaultRules>",
                    "default_fault_rule": "<DefaultFaultRule><AlwaysEnforce>true</AlwaysEnforce><Step><Name>AM-401</Name></Step></DefaultFaultRule>"}}}}"#
        );
    }
    if mode == "h2m" {
        return format!(
            r#"{{"token_service": {{"cluster": "token_service", "credentials": "Bearer k"}},
                "policies": ["{policy}"], "metadata_bridge": "header_to_metadata", "cache": {{"max_entries": 1000000}}}}"#
        );
    }
    if mode == "miss" {
        return format!(
            r#"{{"token_service": {{"cluster": "token_service", "credentials": "Bearer k"}},
                "policies": ["{policy}"], "metadata_bridge": "auto", "cache": {{"enabled": false}}}}"#
        );
    }
    if mode == "narrow" {
        format!(
            r#"{{"token_service": {{"cluster": "token_service", "credentials": "Bearer k"}},
                "policies": ["{policy}"], "metadata_bridge": "auto",
                "publish": ["oauthv2accesstoken.*.client_id", "oauthv2accesstoken.*.scope", "oauthv2accesstoken.*.developer.email"],
                "request_headers": {{"x-client-id": "oauthv2accesstoken.GetTokenAttributes.client_id",
                                     "x-scope": "oauthv2accesstoken.GetTokenAttributes.scope",
                                     "x-developer-email": "oauthv2accesstoken.GetTokenAttributes.developer.email"}},
                "cache": {{"max_entries": 1000000}}}}"#
        )
    } else {
        format!(
            r#"{{"token_service": {{"cluster": "token_service", "credentials": "Bearer k"}},
                "policies": ["{policy}"], "metadata_bridge": "auto", "cache": {{"max_entries": 1000000}}}}"#
        )
    }
}

/// A benchmark request's `:path`.
fn path(token: &str) -> Vec<u8> {
    format!("/get?access_token={token}").into_bytes()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let iterations: u32 = args.first().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let mode = args.get(1).map_or("default", String::as_str);
    if ![
        "default",
        "h2m",
        "narrow",
        "miss",
        "verify",
        "verify-products",
        "verify-resources",
        "apikey",
        "condition",
        "faults",
    ]
    .contains(&mode)
    {
        eprintln!(
            "hotpath: unknown configuration {mode:?} (default, h2m, narrow, miss, verify, verify-products, verify-resources, apikey, condition, faults)"
        );
        std::process::exit(2);
    }
    // What the token service answers for a benchmark token (bench/bench.py
    // seeds tokens like this one).
    let mut body = format!(
        r#"{{"active":true,"client_id":"cid-bench","exp":1795442766,"iat":1795356366,"profile":{{"access_token":"{TOKEN}","api_product_list":"[FreeProduct, Premium]","attributes":{{"department.id":"42","plan":"premium","region":"eu-west"}},"client_id":"cid-bench","developer.app.id":"f4891d6f-66cc-4dfc-8487-3ecfff8dc263","developer.app.name":"bench-app","developer.email":"bench@example.com","developer.id":"dev-bench","expires_at":"1795442766330","expires_in":"86399","issued_at":"1795356366330","organization_name":"local","refresh_count":"1","refresh_token":"{TOKEN}-refresh","refresh_token_expires_at":"1795529166330","refresh_token_expires_in":"172799","refresh_token_issued_at":"1795356366330","refresh_token_status":"approved","scope":"READ WRITE","status":"approved","token_type":"BearerToken"}},"scope":"READ WRITE","token_type":"Bearer"}}"#
    );
    // Three API products (docs/token-service.md "API products"): the
    // second allows GET /items/* of proxy shop through an operation group.
    let products = r#""api_products":[{"name":"legacy","proxies":["shop"],"resources":["/orders/**"],"environments":["prod"],"attributes":{"tier":"gold"}},{"name":"viewer","operation_configs":[{"api_source":"shop","operations":[{"resource":"/items/*","methods":["GET","HEAD"]}],"attributes":{"quota":"10"}}],"attributes":{"tier":"bronze"}},{"name":"news","proxies":["news"],"resources":["/"]}]"#;
    // The same three, the second allowing GET /items/* by its resources.
    let resources = r#""api_products":[{"name":"legacy","proxies":["shop"],"resources":["/orders/**"],"environments":["prod"],"attributes":{"tier":"gold"}},{"name":"viewer","proxies":["shop"],"resources":["/items/*"],"attributes":{"tier":"bronze"}},{"name":"news","proxies":["news"],"resources":["/"]}]"#;
    if mode == "verify-products" {
        body = body.replacen(r#""active":true,"#, &format!(r#""active":true,{products},"#), 1);
    }
    if mode == "verify-resources" {
        body = body.replacen(r#""active":true,"#, &format!(r#""active":true,{resources},"#), 1);
    }
    if mode == "apikey" {
        // What the token service answers for a key (token_type_hint=client_id).
        body = format!(
            r#"{{"active":true,"client_id":"{TOKEN}",{products},"profile":{{"client_id":"{TOKEN}","client_secret":"s3cret","redirection_uris":"https://app.example.com/cb","developer.email":"bench@example.com","developer.id":"dev-bench","developer.app.name":"bench-app","developer.app.id":"f4891d6f-66cc-4dfc-8487-3ecfff8dc263","api_product_list":"[legacy, viewer, news]","status":"approved","key_status":"approved","developer.status":"active","attributes":{{"region":"eu-west"}}}}}}"#
        );
    }
    // The host side of a warm hit: the core's fake host with `RECORD`
    // off copies out what a real host copies out (into buffers the filter
    // then owns, as proxy-wasm does), and keeps nothing of what the filter
    // writes but the shared data (the cache).
    let mut host = FakeHost::<false> {
        now: NOW,
        active: 1,
        response: Some((Some(200), body.into_bytes())),
        ..FakeHost::default()
    };
    let headers = match mode {
        // bench/bench.py's "bearer" requests (setup 2v): the token in the
        // header only, and the method, which a request always has.
        "verify" => vec![
            (":path".to_string(), b"/get".to_vec()),
            (":method".to_string(), b"GET".to_vec()),
            (
                "authorization".to_string(),
                format!("Bearer {TOKEN}").into_bytes(),
            ),
        ],
        "verify-products" | "verify-resources" => vec![
            (":path".to_string(), b"/v1/items/42".to_vec()),
            (":method".to_string(), b"GET".to_vec()),
            (
                "authorization".to_string(),
                format!("Bearer {TOKEN}").into_bytes(),
            ),
        ],
        "apikey" => vec![
            (
                ":path".to_string(),
                format!("/v1/items/42?apikey={TOKEN}").into_bytes(),
            ),
            (":method".to_string(), b"GET".to_vec()),
        ],
        // The step's condition reads the method (setup 2c).
        "condition" => vec![
            (":path".to_string(), path(TOKEN)),
            (":method".to_string(), b"GET".to_vec()),
        ],
        _ => vec![(":path".to_string(), path(TOKEN))],
    };
    // The measured requests (4 and 5) first: the fake host finds them at
    // once.
    for id in [4, 5, 2, 3] {
        host.requests
            .insert(id, FakeRequest::with_headers(headers.clone()));
    }
    let mut worker = Worker::new(1);
    if !worker.configure(&mut host, plugin(mode).as_bytes()) {
        eprintln!("hotpath: the benchmark configuration was refused");
        std::process::exit(1);
    }
    let miss = mode == "miss";
    let body_len = host.response.as_ref().map_or(0, |r| r.1.len());
    // A miss fills the cache, then one warm hit warms the worker's buffers
    // (with the cache off: two requests, each with its callout).
    for id in [2, 3] {
        host.active = id;
        let action = worker.on_request_headers(&mut host, id, true);
        if miss || id == 2 {
            if action != Action::Pause {
                eprintln!("hotpath: request {id} should wait for its lookup");
                std::process::exit(1);
            }
            let token = host.next_token;
            worker.on_call_response(&mut host, id, token, body_len);
        } else if action != Action::Continue {
            eprintln!("hotpath: the second request should be a cache hit");
            std::process::exit(1);
        }
    }
    let (calls, writes) = (host.call_count, host.written);
    let started = Instant::now();
    for i in 0..iterations {
        let id = black_box(4 + (i & 1));
        host.active = id;
        let action = worker.on_request_headers(&mut host, id, true);
        if miss {
            let token = host.next_token;
            worker.on_call_response(&mut host, id, token, body_len);
        }
        black_box(action);
    }
    let elapsed = started.elapsed();
    let per_call = (host.call_count - calls) as f64 / f64::from(iterations.max(1));
    let per_bytes = (host.written - writes) as f64 / f64::from(iterations.max(1));
    println!(
        "{} ({mode} configuration), native, {iterations} iterations: {:.0} ns per request, {per_call:.0} host calls, {per_bytes:.0} bytes written",
        if miss { "callout and answer" } else { "warm hit" },
        elapsed.as_nanos() as f64 / f64::from(iterations.max(1)),
    );
}
