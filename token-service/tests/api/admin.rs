use crate::common::*;
use serde_json::json;

fn alnum32(v: &serde_json::Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == 32 && s.chars().all(|c| c.is_ascii_alphanumeric()))
}

fn create_app_generates_what_is_missing() {
    let s = Server::start();
    let r = s.json(
        "/v1/apps",
        Some(&adm()),
        &json!({"name": "minimal", "developer_email": "min@example.com"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let a = &r.json;
    assert_eq!(a.as_object().unwrap().len(), 6, "{a}");
    assert_eq!(a["name"], "minimal");
    assert_eq!(a["developer_email"], "min@example.com");
    assert!(
        alnum32(&a["client_id"]) && alnum32(&a["client_secret"]),
        "{a}"
    );
    assert_ne!(a["client_id"], a["client_secret"]);
    assert_eq!(a["app_id"].as_str().unwrap().len(), 36);
    assert_eq!(a["developer_id"].as_str().unwrap().len(), 36);
    assert_ne!(a["app_id"], a["developer_id"]);
    let v = s.introspect(a["client_id"].as_str().unwrap(), Some("client_id"));
    let p = &v["profile"];
    assert_eq!(p["client_secret"], a["client_secret"]);
    assert_eq!(p["developer.app.id"], a["app_id"]);
    assert_eq!(p["developer.id"], a["developer_id"]);
    assert_eq!(p["redirection_uris"], "");
    assert_eq!(p["api_product_list"], "[]");
    assert_eq!(p["attributes"], json!({}));

    let given = s.std_app("given");
    assert_eq!(given["client_id"], "cid-given");
    assert_eq!(given["client_secret"], "secret-given");
    assert_eq!(given["developer_id"], "dev-given");
}

fn create_app_errors_write_nothing() {
    let s = Server::start();
    s.std_app("dup");
    let r = s.json(
        "/v1/apps",
        Some(&adm()),
        &json!({"name": "other", "developer_email": "o@example.com",
                "client_id": "cid-dup", "client_secret": "other-secret"}),
    );
    r.assert_error(409, "client_exists");
    let v = s.introspect("cid-dup", Some("client_id"));
    assert_eq!(v["profile"]["client_secret"], "secret-dup");
    assert_eq!(v["profile"]["developer.app.name"], "dup");

    for body in [
        json!({"name": "n", "developer_email": "e", "client_id": "cid-bad", "color": "red"}),
        json!({"developer_email": "e", "client_id": "cid-bad"}),
        json!({"name": "n", "client_id": "cid-bad"}),
        json!({"name": "", "developer_email": "e", "client_id": "cid-bad"}),
        json!({"name": "n", "developer_email": "e", "client_id": ""}),
        json!({"name": "n", "developer_email": "e", "client_id": "cid-bad", "api_products": "P"}),
        json!({"name": "n", "developer_email": "e", "client_id": "cid-bad", "attributes": {"a": 1}}),
        json!({"name": "n", "developer_email": "e", "client_id": "cid-bad", "redirect_uris": [1]}),
        json!({"name": 5, "developer_email": "e", "client_id": "cid-bad"}),
    ] {
        s.json("/v1/apps", Some(&adm()), &body)
            .assert_error(400, "invalid_request");
    }
    s.raw(
        "POST",
        "/v1/apps",
        Some(&adm()),
        "application/json",
        b"{nope",
    )
    .assert_error(400, "invalid_request");
    let ok = json!({"name": "n", "developer_email": "e", "client_id": "cid-bad"});
    s.json("/v1/apps", None, &ok)
        .assert_error(401, "unauthorized");
    let r = s.json("/v1/apps", Some(&svc()), &ok);
    r.assert_error(401, "unauthorized");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert_eq!(
        s.introspect("cid-bad", Some("client_id")),
        json!({"active": false})
    );
}

fn import_access_token_defaults() {
    let s = Server::start_with(&["--refresh-token-lifetime", "1000"]);
    s.std_app("i");
    let issued = now_ms() - 5_000;
    let r = s.json(
        "/v1/tokens",
        Some(&adm()),
        &json!({
            "type": "access_token", "token": "AT-i-secret-value", "client_id": "cid-i",
            "status": "approved", "issued_at": issued, "expires_in": 60,
            "refresh_token": "RT-i-secret-value",
        }),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        r.json,
        json!({"type": "access_token", "client_id": "cid-i"})
    );
    let p = s.introspect("AT-i-secret-value", None)["profile"].clone();
    assert_eq!(p["scope"], "");
    assert_eq!(p["refresh_token_status"], "approved");
    assert_eq!(p["refresh_token_issued_at"], issued.to_string());
    assert_eq!(
        p["refresh_token_expires_at"],
        (issued + 1_000_000).to_string()
    );
    assert_eq!(p["refresh_count"], "0");
    assert_eq!(p["attributes"], json!({}));

    let r = s.json(
        "/v1/tokens",
        Some(&adm()),
        &json!({
            "type": "authorization_code", "token": "CODE-i-1", "client_id": "cid-i",
            "issued_at": issued, "expires_in": 60,
        }),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        r.json,
        json!({"type": "authorization_code", "client_id": "cid-i"})
    );
    let c = s.introspect("CODE-i-1", Some("authorization_code"));
    assert_eq!(c["profile"]["status"], "approved");
    assert_eq!(c["profile"]["scope"], "");
}

fn import_errors_write_nothing() {
    let s = Server::start();
    s.std_app("ie");
    let now = now_ms();
    s.import(json!({
        "type": "access_token", "token": "AT-ie-1", "client_id": "cid-ie",
        "status": "approved", "issued_at": now, "expires_in": 60, "refresh_token": "RT-ie-1",
    }));
    s.import(json!({
        "type": "authorization_code", "token": "CODE-ie-1", "client_id": "cid-ie",
        "issued_at": now, "expires_in": 60,
    }));
    let at = |extra: serde_json::Value| {
        let mut b = json!({
            "type": "access_token", "token": "AT-ie-new", "client_id": "cid-ie",
            "status": "approved", "issued_at": now, "expires_in": 60,
        });
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                b.as_object_mut().unwrap().remove(k);
            } else {
                b[k] = v.clone();
            }
        }
        b
    };
    let post = |b: &serde_json::Value| s.json("/v1/tokens", Some(&adm()), b);

    post(&at(json!({"client_id": "cid-unknown"}))).assert_error(400, "invalid_client");
    post(&at(json!({"token": "AT-ie-1"}))).assert_error(409, "token_exists");
    post(&at(json!({"token": "RT-ie-1"}))).assert_error(409, "token_exists");
    post(&at(json!({"token": "CODE-ie-1"}))).assert_error(409, "token_exists");
    post(&at(json!({"refresh_token": "AT-ie-1"}))).assert_error(409, "token_exists");
    post(&at(json!({"refresh_token": "RT-ie-1"}))).assert_error(409, "token_exists");
    let r = post(&at(json!({"attributes": {"ok": "1", "scope": "x"}})));
    assert_eq!(r.status, 400);
    assert_eq!(r.json["error"], "protected_attribute");
    assert_eq!(r.json["attribute"], "scope");
    for extra in [
        json!({"colour": "red"}),
        json!({"status": null}),
        json!({"status": "expired"}),
        json!({"issued_at": null}),
        json!({"issued_at": "1700000000000"}),
        json!({"issued_at": -5}),
        json!({"expires_in": -2}),
        json!({"expires_in": 1.5}),
        json!({"token": ""}),
        json!({"type": "id_token"}),
        json!({"type": null}),
        json!({"refresh_token_status": "approved"}),
        json!({"refresh_token": "AT-ie-new"}),
        json!({"refresh_token": "RT-ie-new", "refresh_count": -1}),
        json!({"attributes": {"": "x"}}),
        json!({"attributes": {"a": 1}}),
        json!({"attributes": {"a": "v".repeat(2049)}}),
    ] {
        post(&at(extra.clone())).assert_error(400, "invalid_request");
    }
    let too_many: serde_json::Map<String, serde_json::Value> =
        (0..65).map(|i| (format!("a{i}"), json!("v"))).collect();
    post(&at(json!({"attributes": too_many}))).assert_error(400, "invalid_request");
    post(&json!({
        "type": "authorization_code", "token": "CODE-ie-1", "client_id": "cid-ie",
        "issued_at": now, "expires_in": 60,
    }))
    .assert_error(409, "token_exists");
    post(&json!({
        "type": "authorization_code", "token": "CODE-ie-new", "client_id": "cid-ie",
        "issued_at": now, "expires_in": 60, "refresh_token": "x",
    }))
    .assert_error(400, "invalid_request");
    post(&json!("AT")).assert_error(400, "invalid_request");
    s.json("/v1/tokens", Some(&svc()), &at(json!({})))
        .assert_error(401, "unauthorized");
    s.json("/v1/tokens", None, &at(json!({})))
        .assert_error(401, "unauthorized");

    for t in ["AT-ie-new", "RT-ie-new"] {
        assert_eq!(s.introspect(t, None), json!({"active": false}));
    }
    assert_eq!(
        s.introspect("CODE-ie-new", Some("authorization_code")),
        json!({"active": false})
    );
    // The existing token kept its refresh token and status.
    let p = s.introspect("AT-ie-1", None)["profile"].clone();
    assert_eq!(p["refresh_token"], kept("RT-ie-1"));
    assert_eq!(p["refresh_token_status"], "approved");
    assert_eq!(p["status"], "approved");
}

both_stores!(
    create_app_generates_what_is_missing,
    create_app_errors_write_nothing,
    import_access_token_defaults,
    import_errors_write_nothing,
);
