//! Dynamic metadata through the filter chain `oauthv2info envoy-filters`
//! prints: with `metadata_bridge: "header_to_metadata"` (what the project
//! ships) and with the Lua bridge, every published variable reaches filter
//! state and dynamic metadata alike, on requests that go upstream and on
//! fault replies; empty values and values a header could not carry as they
//! are survive; no client or upstream copy of an internal header becomes
//! metadata or reaches the upstream.

use serde_json::{json, Value};

use crate::support::*;

const GET: &str =
    r#"<GetOAuthV2Info name="G"><AccessToken ref="request.queryparam.t"/></GetOAuthV2Info>"#;
const SET: &str = r#"<SetOAuthV2Info name="S"><AccessToken ref="request.queryparam.t"/><Attributes><Attribute name="dept" ref="request.queryparam.dept"/></Attributes></SetOAuthV2Info>"#;

/// Access-log fields reading one variable both ways.
fn both(name: &'static str, variable: &str) -> [(&'static str, String); 2] {
    [
        (
            leak(format!("fs.{name}")),
            format!("%FILTER_STATE(wasm.{variable}:PLAIN)%"),
        ),
        (
            leak(format!("md.{name}")),
            format!("%DYNAMIC_METADATA(apigee:{variable})%"),
        ),
    ]
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// The internal headers a client could send that header_to_metadata reads
/// on the request path (what the generated strip filter removes; none with
/// the Lua bridge).
fn request_rule_headers(stack: &Stack) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plugin.json");
    std::fs::write(&file, stack.plugin.to_string()).unwrap();
    let out = std::process::Command::new(checker_bin())
        .args(["envoy-filters", "--json", "--part", "http_filters"])
        .arg(&file)
        .output()
        .unwrap();
    let filters: Value = serde_json::from_slice(&out.stdout).unwrap();
    filters
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["name"] == "oauthv2info-metadata")
        .flat_map(|f| {
            f["typed_config"]["request_rules"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|r| r["header"].as_str().unwrap().to_string())
        .collect()
}

fn stack(bridge: &str, extra: Value) -> Stack {
    let mut plugin = plugin(&[GET, SET], extra);
    plugin["metadata_bridge"] = json!(bridge);
    Stack::start_with(plugin, |spec| {
        for (k, v) in [
            both("scope", "oauthv2accesstoken.G.scope"),
            both("org", "oauthv2accesstoken.G.organization_name"),
            both("dept", "oauthv2accesstoken.G.accesstoken.dept"),
            both("note", "oauthv2accesstoken.G.accesstoken.note"),
            both("failed", "oauthV2.G.failed"),
            both("set_failed", "oauthV2.S.failed"),
            both("fault", "fault.name"),
            both("cause", "oauthV2.S.fault.cause"),
        ]
        .into_iter()
        .flatten()
        {
            spec.access_log.push((k, v));
        }
    })
}

/// Seeds a token whose profile has an empty field, a value with spaces
/// and a custom attribute whose name the configuration does not know.
fn seed(stack: &Stack, token: &str) {
    stack.service.create_app(&format!("app-{token}"), json!({}));
    stack.service.import_access_token(
        &format!("app-{token}"),
        token,
        "approved",
        3600,
        json!({"dept": " R&D  dept ", "note": ""}),
    );
}

fn check_success(bridge: &str) {
    let stack = stack(bridge, json!({}));
    seed(&stack, "tok");
    let read = request_rule_headers(&stack);
    assert!(
        bridge == "lua" || read.len() > 20,
        "{bridge}: {} request rules",
        read.len()
    );
    let forged: Vec<(String, Vec<u8>)> = (0..40)
        .flat_map(|i| {
            [
                (format!("x-oauthv2info-md-{i}"), b"forged".to_vec()),
                (format!("x-oauthv2info-md-{i}-e"), b"GgA".to_vec()),
            ]
        })
        .collect();
    let headers: Vec<(&str, &[u8])> = forged
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    let r = stack.envoy.request("GET", "/x?t=tok", &headers, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    // No internal header reached the upstream, the client's copies
    // included (with the Lua bridge they are not internal headers at all).
    let seen = r.json();
    let upstream = seen["headers"].as_object().unwrap();
    for name in &read {
        assert!(
            !upstream.contains_key(name),
            "{bridge}: {name} reached the upstream"
        );
    }
    let log = &stack.envoy.access_log(1)[0];
    let v = |k: &str| log.get(k).and_then(Value::as_str).map(String::from);
    for name in ["scope", "dept", "failed", "set_failed"] {
        assert_eq!(
            v(&format!("fs.{name}")),
            v(&format!("md.{name}")),
            "{bridge}: {name} {log}"
        );
    }
    assert_eq!(
        v("md.scope").as_deref(),
        Some("READ WRITE"),
        "{bridge}: {log}"
    );
    assert_eq!(
        v("md.dept").as_deref(),
        Some(" R&D  dept "),
        "{bridge}: {log}"
    );
    assert_eq!(v("md.failed").as_deref(), Some("false"), "{bridge}: {log}");
    // An empty value is an empty string in both, not a missing one.
    assert_eq!(v("fs.note").as_deref(), Some(""), "{bridge}: {log}");
    assert_eq!(v("md.note").as_deref(), Some(""), "{bridge}: {log}");
    // Nothing a client sent became metadata.
    assert_eq!(v("md.fault"), None, "{bridge}: {log}");
    assert!(!log.to_string().contains("forged"), "{bridge}: {log}");
}

#[test]
fn header_to_metadata_publishes_every_variable_and_stops_forgeries() {
    check_success("header_to_metadata");
}

#[test]
fn the_lua_bridge_publishes_the_same() {
    check_success("lua");
}

fn check_fault(bridge: &str) {
    let stack = stack(bridge, json!({}));
    seed(&stack, "tok");
    // The Get succeeds from the cache, the Set is refused by the token
    // service (revoked after the Get's answer was cached): a fault reply
    // after a success.
    assert_eq!(stack.envoy.get("/x?t=tok").status, 200);
    stack.service.revoke("tok");
    let r = stack.envoy.get("/x?t=tok&dept=new");
    assert_fault(&r, 500, "Invalid Access Token", "invalid_access_token");
    assert!(
        r.headers
            .iter()
            .all(|(k, _)| !k.starts_with("x-oauthv2info")),
        "{bridge}: {:?}",
        r.headers
    );
    let log = &stack.envoy.access_log(2)[1];
    let v = |k: &str| log.get(k).and_then(Value::as_str).map(String::from);
    assert_eq!(
        v("md.fault").as_deref(),
        Some("invalid_access_token"),
        "{bridge}: {log}"
    );
    assert_eq!(
        v("md.cause").as_deref(),
        Some("Invalid Access Token"),
        "{bridge}: {log}"
    );
    assert_eq!(
        v("md.set_failed").as_deref(),
        Some("true"),
        "{bridge}: {log}"
    );
    // The earlier policy's variables, custom attributes included.
    assert_eq!(
        v("md.scope").as_deref(),
        Some("READ WRITE"),
        "{bridge}: {log}"
    );
    assert_eq!(
        v("md.dept").as_deref(),
        Some(" R&D  dept "),
        "{bridge}: {log}"
    );
    for name in ["fault", "cause", "set_failed", "scope", "dept"] {
        assert_eq!(
            v(&format!("fs.{name}")),
            v(&format!("md.{name}")),
            "{bridge}: {name} {log}"
        );
    }
}

#[test]
fn header_to_metadata_publishes_the_variables_of_fault_replies() {
    check_fault("header_to_metadata");
}

#[test]
fn the_lua_bridge_publishes_the_variables_of_fault_replies() {
    check_fault("lua");
}

#[test]
fn an_upstream_cannot_forge_metadata_through_internal_response_headers() {
    let stack = stack("header_to_metadata", json!({}));
    seed(&stack, "tok");
    // The echo upstream answers with the response headers it is asked for.
    let r = stack
        .envoy
        .get("/x?t=tok&echo-header=x-oauthv2info-md-0:forged&echo-header=x-oauthv2info-md-2-e:GgA");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.headers
            .iter()
            .all(|(k, _)| !k.starts_with("x-oauthv2info")),
        "{:?}",
        r.headers
    );
    let log = &stack.envoy.access_log(1)[0];
    assert!(!log.to_string().contains("forged"), "{log}");
    assert_eq!(log["md.scope"], "READ WRITE", "{log}");
}
