//! A profile's API products: kept with it, read back in place, checked
//! against the names crate's rules, and the worker's memo of decisions.

use super::tests::{access_answer, answer, NOW};
use super::*;
use crate::protocol::{parse_introspection, Answer};
use serde_json::json;

/// The products of a profile, read back into owned values.
fn read_products(p: ProfileRef<'_>) -> serde_json::Value {
    let t = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let strs = |s: products::Strs<'_>| s.map(t).collect::<Vec<_>>();
    let pairs = |s: products::Pairs<'_>| {
        s.map(|(k, v)| (t(k), json!(t(v))))
            .collect::<serde_json::Map<_, _>>()
    };
    p.products()
        .map(|product| {
            json!({
                "name": t(product.name),
                "proxies": strs(product.proxies),
                "resources": strs(product.resources),
                "environments": strs(product.environments),
                "operation_configs": product.operation_configs.map(|c| json!({
                    "api_source": t(c.api_source),
                    "operations": c.operations.map(|o| json!({
                        "resource": t(o.resource), "methods": strs(o.methods),
                    })).collect::<Vec<_>>(),
                    "attributes": pairs(c.attributes),
                })).collect::<Vec<_>>(),
                "attributes": pairs(product.attributes),
            })
        })
        .collect()
}

/// The answer's `api_products` are kept with the profile, in order, and
/// read back in place: what the product check reads on a cache hit.
#[test]
fn api_products_are_kept_with_the_profile() {
    let mut body = access_answer("approved", NOW + 60_000);
    let long = "r".repeat(300);
    body["api_products"] = json!([
        {"name": "Premium", "proxies": ["weather", "news"], "resources": ["/forecast/**", "/"],
         "environments": ["prod"], "attributes": {"tier": "gold", "quota": "1000"},
         "quota": {"limit": "1000", "interval": "1", "time_unit": "hour"}},
        {"name": "Ops", "operation_configs": [
            {"api_source": "weather", "operations": [
                {"resource": "/a", "methods": ["GET", "POST"]}, {"resource": long}],
             "attributes": {"op.tier": "x"}, "quota": {"limit": "5", "time_unit": null}},
            {"api_source": "other"}]},
        {"name": "Free"}
    ]);
    let a = answer(body, TokenKind::AccessToken, "tok-123");
    let Answer::Known(p) = &a else {
        panic!("unknown")
    };
    let v = p.view();
    assert!(v.has_products() && v.validate());
    let e = |l: &[&str]| json!(l);
    assert_eq!(
        read_products(v),
        json!([
            {"name": "Premium", "proxies": e(&["weather", "news"]),
             "resources": e(&["/forecast/**", "/"]), "environments": e(&["prod"]),
             "operation_configs": [], "attributes": {"tier": "gold", "quota": "1000"}},
            {"name": "Ops", "proxies": [], "resources": [], "environments": [],
             "operation_configs": [
                {"api_source": "weather", "operations": [
                    {"resource": "/a", "methods": e(&["GET", "POST"])},
                    {"resource": "r".repeat(300), "methods": []}],
                 "attributes": {"op.tier": "x"}},
                {"api_source": "other", "operations": [], "attributes": {}}],
             "attributes": {}},
            {"name": "Free", "proxies": [], "resources": [], "environments": [],
             "operation_configs": [], "attributes": {}}
        ])
    );
    // The standard fields and attributes are unchanged.
    assert_eq!(v.field(Field::Scope), Some(&b"READ WRITE"[..]));
    assert_eq!(v.attribute(b"department.id"), Some(&b"42"[..]));
    // The same bytes through a cache entry.
    let entry = crate::cache::encode(TokenKind::AccessToken, b"tok-123", NOW + 1, NOW, Some(p));
    let head = crate::cache::EntryHead::parse(&entry).expect("entry");
    let Some(Lookup::Known(cached)) = head.lookup() else {
        panic!("not known")
    };
    assert_eq!(read_products(cached), read_products(v));
    // Every cut of the bytes reads in bounds.
    for cut in 0..p.as_bytes().len() {
        if let Some(r) = ProfileRef::parse(&p.as_bytes()[..cut]) {
            let _ = read_products(r);
        }
    }
    // Arbitrary bytes as products read in bounds, never forever.
    for seed in 0u32..200 {
        let junk: Vec<u8> = (0..40u32)
            .map(|i| (seed.wrapping_mul(31).wrapping_add(i * 97) % 256) as u8)
            .collect();
        let _ = read_products_of(&junk);
    }
}

fn read_products_of(bytes: &[u8]) -> usize {
    products::read(bytes)
        .map(|p| {
            p.proxies.count()
                + p.operation_configs
                    .map(|c| c.operations.map(|o| o.methods.count()).sum::<usize>())
                    .sum::<usize>()
                + p.attributes.count()
        })
        .sum()
}

/// Without `api_products` (a plain server, or a token service without
/// products) the profile has none, and says so; `[]` is known and empty.
#[test]
fn api_products_absent_or_empty() {
    let a = answer(
        access_answer("approved", NOW + 60_000),
        TokenKind::AccessToken,
        "t",
    );
    let Answer::Known(p) = &a else { panic!() };
    assert!(!p.view().has_products());
    assert_eq!(p.view().products().count(), 0);
    let mut body = access_answer("approved", NOW + 60_000);
    body["api_products"] = json!([]);
    let a = answer(body, TokenKind::AccessToken, "t");
    let Answer::Known(p) = &a else { panic!() };
    assert!(p.view().has_products());
    assert_eq!(p.view().products().count(), 0);
}

/// The profile says whether its products' check compares the verb: only
/// when an operation lists methods. A profile without products, or one
/// written before the flag (its bit clear), reads the verb.
#[test]
fn a_profile_says_whether_its_products_list_verbs() {
    let verbs = |products: Option<serde_json::Value>| {
        let mut body = access_answer("approved", NOW + 60_000);
        if let Some(products) = products {
            body["api_products"] = products;
        }
        let Answer::Known(p) = answer(body, TokenKind::AccessToken, "t") else {
            panic!()
        };
        p.view().checks_verbs()
    };
    let op = |methods: serde_json::Value| {
        json!([{"name": "r", "resources": ["/a"]},
               {"name": "o", "operation_configs": [{"api_source": "p",
                   "operations": [{"resource": "/b", "methods": methods}]}]}])
    };
    assert!(verbs(None), "no products: the flag is not set");
    assert!(!verbs(Some(json!([]))));
    assert!(!verbs(Some(json!([{"name": "r", "resources": ["/a"]}]))));
    assert!(!verbs(Some(
        json!([{"name": "c", "operation_configs": [{"api_source": "p"}]}])
    )));
    assert!(!verbs(Some(op(json!([])))));
    assert!(verbs(Some(op(json!(["GET"])))));
    // An entry written before the flag: the verb is read.
    let mut body = access_answer("approved", NOW + 60_000);
    body["api_products"] = json!([{"name": "r", "resources": ["/a"]}]);
    let Answer::Known(p) = answer(body, TokenKind::AccessToken, "t") else {
        panic!()
    };
    let mut bytes = p.as_bytes().to_vec();
    bytes[0] &= !NO_VERBS;
    let older = ProfileRef::parse(&bytes).expect("a profile");
    assert!(older.has_products() && older.checks_verbs());
}

/// A malformed `api_products` is a service failure, not a pass.
#[test]
fn malformed_api_products_are_service_failures() {
    for bad in [
        json!({}),
        json!("Premium"),
        json!(["Premium"]),
        json!([{"proxies": ["p"]}]),
        json!([{"name": "P", "proxies": "p"}]),
        json!([{"name": "P", "proxies": [1]}]),
        json!([{"name": "P", "attributes": {"a": 1}}]),
        json!([{"name": "P", "operation_configs": [{"operations": []}]}]),
        json!([{"name": "P", "operation_configs": [{"api_source": "x", "operations": [{}]}]}]),
        json!([{"name": "P", "quota": "10"}]),
        json!([{"name": "P", "quota": {"limit": 10}}]),
        json!([{"name": "P", "operation_configs": [{"api_source": "x", "quota": {"interval": true}}]}]),
    ] {
        let mut body = access_answer("approved", NOW + 60_000);
        body["api_products"] = bad.clone();
        let raw = serde_json::to_vec(&body).expect("json");
        assert!(
            parse_introspection(Some(200), &raw, TokenKind::AccessToken, "t", NOW).is_err(),
            "{bad}"
        );
    }
}

/// The in-place product check reads the rules as the names crate does:
/// the same product and operation for every call, over a set of products
/// that exercises each rule (apiproduct-operations' three products among
/// them).
#[test]
fn the_in_place_product_check_agrees_with_the_names_crate() {
    use oauthv2info_names::product::{self as rules, Call, Operation, OperationConfig, Product};
    let op = |resource: &str, methods: &[&str]| Operation {
        resource: resource.into(),
        methods: methods.iter().map(|m| m.to_string()).collect(),
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let sample = "apiproduct-operations";
    let configs = |ops: Vec<Operation>| {
        vec![OperationConfig {
            api_source: sample.into(),
            operations: ops,
            attributes: vec![("op".into(), "1".into())],
        }]
    };
    let products = vec![
        Product {
            name: "env-only".into(),
            environments: s(&["test"]),
            resources: s(&["/env"]),
            ..Product::default()
        },
        Product {
            name: "viewer".into(),
            operations: configs(vec![op("/*", &["GET"])]),
            ..Product::default()
        },
        Product {
            name: "creator".into(),
            operations: configs(vec![op("/**", &["POST", "get"])]),
            ..Product::default()
        },
        Product {
            name: "admin".into(),
            operations: configs(vec![op("/**", &[])]),
            ..Product::default()
        },
        Product {
            name: "legacy".into(),
            proxies: s(&["weather"]),
            resources: s(&["/forecast/**", "/"]),
            attributes: vec![("tier".into(), "gold".into())],
            ..Product::default()
        },
        Product {
            name: "whole-proxy".into(),
            operations: vec![OperationConfig {
                api_source: "news".into(),
                ..OperationConfig::default()
            }],
            ..Product::default()
        },
    ];
    let wire: Vec<serde_json::Value> = products
        .iter()
        .map(|p| {
            json!({
                "name": p.name, "proxies": p.proxies, "resources": p.resources,
                "environments": p.environments,
                "operation_configs": p.operations.iter().map(|c| json!({
                    "api_source": c.api_source,
                    "operations": c.operations.iter().map(|o| json!({
                        "resource": o.resource, "methods": o.methods})).collect::<Vec<_>>(),
                    "attributes": c.attributes.iter().map(|(k, v)| (k.clone(), json!(v)))
                        .collect::<serde_json::Map<_, _>>(),
                })).collect::<Vec<_>>(),
                "attributes": p.attributes.iter().map(|(k, v)| (k.clone(), json!(v)))
                    .collect::<serde_json::Map<_, _>>(),
            })
        })
        .collect();
    let mut body = access_answer("approved", NOW + 60_000);
    body["api_products"] = json!(wire);
    let a = answer(body, TokenKind::AccessToken, "t");
    let Answer::Known(p) = &a else { panic!() };
    let view = p.view();
    let mut calls = 0;
    for proxy in [sample, "weather", "news", "other"] {
        for suffix in ["", "/", "/a", "/a/b", "/forecast", "/forecast/x", "/env"] {
            for verb in ["GET", "POST", "DELETE", "get"] {
                for environment in [None, Some("test"), Some("prod")] {
                    let call = Call {
                        proxy,
                        suffix,
                        verb,
                        environment,
                    };
                    let want = rules::find(&products, &call);
                    let got = products::find(view.products(), &call)
                        .and_then(|at| at.resolve(view.products()));
                    assert_eq!(
                        want.map(|m| (
                            m.product.name.as_bytes(),
                            m.operation
                                .map(|(c, o)| (c.api_source.as_bytes(), o.resource.as_bytes()))
                        )),
                        got.map(|m| (
                            m.product.name,
                            m.operation.map(|(c, o)| (c.name, o.resource))
                        )),
                        "{call:?}"
                    );
                    calls += usize::from(want.is_some());
                }
            }
        }
    }
    // The set is not trivial: some calls pass, some do not.
    assert!(calls > 20 && calls < 4 * 7 * 4 * 3, "{calls}");
    // The attributes come with the match.
    let call = Call {
        proxy: "weather",
        suffix: "/forecast/x",
        verb: "GET",
        environment: None,
    };
    let m = products::find(view.products(), &call)
        .and_then(|at| at.resolve(view.products()))
        .expect("legacy");
    assert_eq!(
        m.product.attributes.collect::<Vec<_>>(),
        [(&b"tier"[..], &b"gold"[..])]
    );
    let call = Call {
        proxy: sample,
        suffix: "/a",
        verb: "GET",
        environment: None,
    };
    let m = products::find(view.products(), &call)
        .and_then(|at| at.resolve(view.products()))
        .expect("viewer");
    assert_eq!(m.product.name, b"viewer");
    assert_eq!(
        m.operation.expect("op").0.attributes.collect::<Vec<_>>(),
        [(&b"op"[..], &b"1"[..])]
    );
    // No proxy name configured: a product's proxies and an operation's
    // apiSource are not compared.
    let call = Call {
        proxy: "",
        suffix: "/a",
        verb: "GET",
        environment: None,
    };
    assert!(products::find(view.products(), &call).is_some());
}

/// The worker's memo of product decisions answers what the matcher
/// answers, for every products span and call, in any order: a repeated
/// call is answered from the memo, another path, verb, span (a changed
/// product) or configuration ([`products::Decisions::clear`]) is decided
/// again; a path that is not UTF-8 is compared as text; more keys than
/// slots, or a span over the bound, still get the matcher's answer.
#[test]
fn product_decisions_are_the_matchers_own_and_keyed_by_every_input() {
    use products::{CallBytes, Decisions};
    let span = |products: serde_json::Value| products::encode(products).expect("encodes");
    let viewer = span(json!([
        {"name": "legacy", "proxies": ["shop"], "resources": ["/orders/**"]},
        {"name": "viewer", "operation_configs": [{"api_source": "shop",
            "operations": [{"resource": "/items/*", "methods": ["GET", "HEAD"]}]}]}]));
    // The same app after its operation changed to POST: one byte apart.
    let writer = span(json!([
        {"name": "legacy", "proxies": ["shop"], "resources": ["/orders/**"]},
        {"name": "viewer", "operation_configs": [{"api_source": "shop",
            "operations": [{"resource": "/items/*", "methods": ["PUT", "HEAD"]}]}]}]));
    let replaced = span(json!([{"name": "any", "resources": ["/\u{FFFD}"]}]));
    let none = span(json!([]));
    let spans = [&viewer, &writer, &replaced, &none];
    let suffixes: [&[u8]; 6] = [b"/items/1", b"/items/2", b"/orders/7", b"/", b"/\xff", b""];
    let verbs: [&[u8]; 4] = [b"GET", b"PUT", b"get", b""];
    let direct = |span: &[u8], call: &CallBytes<'_>| {
        let suffix = crate::request::lossy(call.suffix);
        let verb = crate::request::lossy(call.verb);
        products::find(
            products::read(span),
            &oauthv2info_names::product::Call {
                proxy: call.proxy,
                suffix: &suffix,
                verb: &verb,
                environment: call.environment,
            },
        )
    };
    let mut memo = Decisions::default();
    let mut allowed = 0;
    for pass in 0..2 {
        let misses = memo.misses;
        for span in spans {
            for suffix in suffixes {
                for verb in verbs {
                    let call = CallBytes {
                        proxy: "shop",
                        environment: None,
                        suffix,
                        verb,
                    };
                    let want = direct(span, &call);
                    assert_eq!(memo.decide(span, &call), want, "{call:?}");
                    allowed += usize::from(want.is_some() && pass == 0);
                }
            }
        }
        let decided = memo.misses - misses;
        if pass == 0 {
            // Every key decided once (96 keys in 32 slots: some evicted).
            assert_eq!(decided, 4 * 6 * 4);
        } else {
            assert!(decided < 4 * 6 * 4, "some decisions were kept");
        }
    }
    // Not trivial: the changed product, the verb and the path each
    // change the answer.
    assert!(allowed > 4 && allowed < 4 * 6 * 4 / 2, "{allowed}");
    let call = |suffix: &'static [u8], verb: &'static [u8]| CallBytes {
        proxy: "shop",
        environment: None,
        suffix,
        verb,
    };
    // A key asked again at once is answered from the memo, whatever came
    // before it.
    let keys: [(&[u8], CallBytes<'_>, bool); 7] = [
        (&viewer, call(b"/items/1", b"GET"), true),
        (&viewer, call(b"/items/1", b"PUT"), false),
        (&writer, call(b"/items/1", b"GET"), false),
        (&writer, call(b"/items/1", b"PUT"), true),
        (&replaced, call(b"/\xff", b"GET"), true),
        (&replaced, call(b"/\xfe", b"GET"), true),
        (&replaced, call(b"/x", b"GET"), false),
    ];
    for _ in 0..3 {
        for (span, call, allows) in &keys {
            assert_eq!(memo.decide(span, call).is_some(), *allows, "{call:?}");
            let misses = memo.misses;
            assert_eq!(memo.decide(span, call).is_some(), *allows, "{call:?}");
            assert_eq!(memo.misses, misses, "{call:?}: kept");
        }
    }
    // Another configuration: decided again.
    memo.clear();
    let misses = memo.misses;
    assert!(memo.decide(&viewer, &call(b"/items/1", b"GET")).is_some());
    assert_eq!(memo.misses - misses, 1);
    // A span over the bound is matched every time, without the memo.
    let long = "x".repeat(products::MAX_SPAN);
    let big = span(json!([{"name": "big", "resources": ["/items/*"], "attributes": {"a": long}}]));
    let misses = memo.misses;
    for _ in 0..2 {
        assert_eq!(
            memo.decide(&big, &call(b"/items/1", b"GET")),
            direct(&big, &call(b"/items/1", b"GET"))
        );
        assert!(memo.decide(&big, &call(b"/orders/1", b"GET")).is_none());
    }
    assert_eq!(memo.misses, misses);
}
