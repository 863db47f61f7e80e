use crate::common::*;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

fn merge_adds_updates_and_leaves_others() {
    let s = Server::start();
    s.std_app("m");
    s.import_access("AT-m-1", "cid-m", json!({"a": "1", "b": "2"}));
    let r = s.merge("AT-m-1", &[("b", "3"), ("c", "4"), ("c", "5")]);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json["profile"]["attributes"],
        json!({"a": "1", "b": "3", "c": "5"})
    );
    assert_eq!(r.json["active"], true);
    // The answer is the introspection of the token after the write.
    assert_eq!(
        without_clock(r.json.clone()),
        without_clock(s.introspect("AT-m-1", Some("access_token")))
    );
    // Values may be empty, names may carry dots.
    let r = s.merge("AT-m-1", &[("department.id", ""), ("a", "x")]);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        s.attributes("AT-m-1"),
        json!({"a": "x", "b": "3", "c": "5", "department.id": ""})
    );
    // Unknown fields in this (service) body are ignored.
    let r = s.json(
        "/v1/accesstokens/attributes",
        Some(&svc()),
        &json!({"token": "AT-m-1", "attributes": [{"name": "d", "value": "1"}], "extra": 1}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
}

fn refused_merges_write_nothing() {
    let s = Server::start();
    s.std_app("e");
    let now = now_ms();
    s.import_access("AT-e-ok", "cid-e", json!({"keep": "1"}));
    s.import(json!({
        "type": "access_token", "token": "AT-e-revoked", "client_id": "cid-e",
        "status": "revoked", "issued_at": now, "expires_in": 3600, "attributes": {"keep": "1"},
    }));
    s.import(json!({
        "type": "access_token", "token": "AT-e-expired", "client_id": "cid-e",
        "status": "approved", "issued_at": now - 10_000, "expires_in": 5, "attributes": {"keep": "1"},
    }));
    let url = "/v1/accesstokens/attributes";
    let new = [("new", "v")];

    let r = s.merge("AT-e-unknown", &new);
    assert_eq!(r.status, 404);
    assert_eq!(r.json["error"], "invalid_access_token");
    let r = s.merge("AT-e-revoked", &new);
    assert_eq!(r.status, 409);
    assert_eq!(r.json["error"], "invalid_access_token");
    let r = s.merge("AT-e-expired", &new);
    assert_eq!(r.status, 409);
    assert_eq!(r.json["error"], "access_token_expired");

    for name in [
        "scope",
        "Status",
        "developer.email",
        "refresh_token_status",
        "access_token",
    ] {
        let r = s.merge("AT-e-ok", &[("new", "v"), (name, "x")]);
        assert_eq!(r.status, 400, "{name}: {}", r.text);
        assert_eq!(r.json["error"], "protected_attribute");
        assert_eq!(r.json["attribute"], name);
    }
    let long_name = "n".repeat(256);
    let long_value = "v".repeat(2049);
    for (attrs, what) in [
        (vec![("", "v")], "empty name"),
        (vec![("new", "v"), (long_name.as_str(), "v")], "long name"),
        (vec![("new", long_value.as_str())], "long value"),
    ] {
        s.merge("AT-e-ok", &attrs)
            .assert_error(400, "invalid_request");
        let _ = what;
    }
    for body in [
        json!({"token": "AT-e-ok", "attributes": []}),
        json!({"token": "AT-e-ok"}),
        json!({"attributes": [{"name": "new", "value": "v"}]}),
        json!({"token": "", "attributes": [{"name": "new", "value": "v"}]}),
        json!({"token": "AT-e-ok", "attributes": [{"name": "new", "value": 5}]}),
        json!({"token": "AT-e-ok", "attributes": [{"name": "new"}]}),
        json!({"token": "AT-e-ok", "attributes": [{"name": "new", "value": "v", "x": 1}]}),
        json!({"token": "AT-e-ok", "attributes": {"new": "v"}}),
        json!(["AT-e-ok"]),
    ] {
        s.json(url, Some(&svc()), &body)
            .assert_error(400, "invalid_request");
    }
    s.raw(
        "POST",
        url,
        Some(&svc()),
        "application/json",
        b"{\"token\": ",
    )
    .assert_error(400, "invalid_request");
    let body = json!({"token": "AT-e-ok", "attributes": [{"name": "new", "value": "v"}]});
    s.json(url, None, &body).assert_error(401, "unauthorized");
    s.json(url, Some(&adm()), &body)
        .assert_error(401, "unauthorized");

    // Nothing was written anywhere.
    for t in ["AT-e-ok", "AT-e-revoked", "AT-e-expired"] {
        assert_eq!(s.attributes(t), json!({"keep": "1"}), "{t}");
    }
    assert_eq!(s.introspect("AT-e-unknown", None), json!({"active": false}));
}

fn attribute_limit_counts_the_merged_set() {
    let s = Server::start();
    s.std_app("l");
    let attrs: serde_json::Map<String, Value> =
        (0..62).map(|i| (format!("k{i:02}"), json!("v"))).collect();
    s.import_access("AT-l-1", "cid-l", Value::Object(attrs));
    // 62 + 3 new = 65 > 64: refused, nothing written.
    s.merge(
        "AT-l-1",
        &[("k00", "w"), ("x1", "v"), ("x2", "v"), ("x3", "v")],
    )
    .assert_error(400, "invalid_request");
    let now = s.attributes("AT-l-1");
    assert_eq!(now.as_object().unwrap().len(), 62);
    assert_eq!(now["k00"], "v");
    // Updating existing names does not count; 62 + 2 = 64 is allowed.
    let r = s.merge("AT-l-1", &[("k00", "w"), ("x1", "v"), ("x2", "v")]);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(s.attributes("AT-l-1").as_object().unwrap().len(), 64);
    s.merge("AT-l-1", &[("x3", "v")])
        .assert_error(400, "invalid_request");
}

/// 200 concurrent merges of distinct names on one token all survive
/// (the per-token limit is raised for this test).
fn concurrent_merges_of_distinct_names_all_survive() {
    let s = Arc::new(Server::start_with(&["--max-attributes", "256"]));
    s.std_app("cc");
    s.import_access("AT-cc-1", "cid-cc", json!({"base": "0"}));
    let next = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let (s, next) = (Arc::clone(&s), Arc::clone(&next));
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= 200 {
                    break;
                }
                let (name, value) = (format!("attr{i:03}"), format!("value-{i}"));
                let r = s.merge("AT-cc-1", &[(&name, &value)]);
                assert_eq!(r.status, 200, "{}", r.text);
                assert_eq!(r.json["profile"]["attributes"][&name], value.as_str());
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let attrs = s.attributes("AT-cc-1");
    let attrs = attrs.as_object().unwrap();
    assert_eq!(attrs.len(), 201);
    assert_eq!(attrs["base"], "0");
    for i in 0..200 {
        assert_eq!(attrs[&format!("attr{i:03}")], format!("value-{i}"));
    }
}

both_stores!(
    merge_adds_updates_and_leaves_others,
    refused_merges_write_nothing,
    attribute_limit_counts_the_merged_set,
    concurrent_merges_of_distinct_names_all_survive,
);
