use crate::common::*;
use serde_json::{json, Value};

fn profile_values_are_strings(v: &Value) {
    for (k, val) in v["profile"].as_object().unwrap() {
        if k == "attributes" {
            assert!(val.is_object());
            assert!(val.as_object().unwrap().values().all(Value::is_string));
        } else {
            assert!(val.is_string(), "profile.{k} is not a string: {val}");
        }
    }
}

fn access_token_full_profile() {
    let s = Server::start();
    let app = s.std_app("shop");
    let issued = now_ms() - 10_000;
    s.import(json!({
        "type": "access_token", "token": "AT-full-0001", "client_id": "cid-shop",
        "scope": "READ WRITE", "status": "approved", "issued_at": issued, "expires_in": 3600,
        "refresh_token": "RT-full-0001", "attributes": {"department.id": "42"},
    }));
    let v = s.introspect("AT-full-0001", Some("access_token"));
    // Without a hint: the same answer.
    assert_eq!(
        without_clock(s.introspect("AT-full-0001", None)),
        without_clock(v.clone())
    );
    profile_values_are_strings(&v);
    assert_eq!(v["active"], true);
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["scope"], "READ WRITE");
    assert_eq!(v["client_id"], "cid-shop");
    assert_eq!(v["exp"], (issued + 3_600_000) / 1000);
    assert_eq!(v["iat"], issued / 1000);
    let p = &v["profile"];
    let expires_in: i64 = p["expires_in"].as_str().unwrap().parse().unwrap();
    assert!(
        (3580..=3589).contains(&expires_in),
        "expires_in {expires_in}"
    );
    let rt_in: i64 = p["refresh_token_expires_in"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (86380..=86389).contains(&rt_in),
        "refresh_token_expires_in {rt_in}"
    );
    let mut p = p.clone();
    p["expires_in"] = json!("");
    p["refresh_token_expires_in"] = json!("");
    assert_eq!(
        p,
        json!({
            "access_token": "AT-full-0001",
            "client_id": "cid-shop",
            "scope": "READ WRITE",
            "status": "approved",
            "token_type": "BearerToken",
            "issued_at": issued.to_string(),
            "expires_in": "",
            "expires_at": (issued + 3_600_000).to_string(),
            "organization_name": "local",
            "api_product_list": "[FreeProduct, Premium]",
            "developer.id": "dev-shop",
            "developer.email": "shop@example.com",
            "developer.app.name": "shop",
            "developer.app.id": app["app_id"],
            "refresh_token": kept("RT-full-0001"),
            "refresh_token_status": "approved",
            "refresh_token_issued_at": issued.to_string(),
            "refresh_token_expires_in": "",
            "refresh_token_expires_at": (issued + 86_400_000).to_string(),
            "refresh_count": "0",
            "attributes": {"department.id": "42"},
        })
    );
    // The app's products with a definition (none here).
    assert_eq!(v["api_products"], json!([]), "{v}");
    assert_eq!(v.as_object().unwrap().len(), 8, "{v}");
}

fn org_name_option_and_never_expiring_token_without_refresh() {
    let s = Server::start_with(&["--org-name", "acme-prod"]);
    s.create_app(
        json!({"name": "bare", "developer_email": "b@example.com", "client_id": "cid-bare"}),
    );
    s.import(json!({
        "type": "access_token", "token": "AT-never-01", "client_id": "cid-bare",
        "status": "approved", "issued_at": 1_000, "expires_in": -1,
    }));
    let v = s.introspect("AT-never-01", None);
    assert_eq!(v["active"], true);
    assert!(v.get("exp").is_none(), "{v}");
    assert_eq!(v["iat"], 1);
    assert_eq!(v["scope"], "");
    let p = &v["profile"];
    assert_eq!(p["organization_name"], "acme-prod");
    assert_eq!(p["expires_in"], "-1");
    assert_eq!(p["expires_at"], "-1");
    assert_eq!(p["api_product_list"], "[]");
    assert_eq!(p["attributes"], json!({}));
    for k in [
        "refresh_token",
        "refresh_token_status",
        "refresh_token_issued_at",
        "refresh_token_expires_in",
        "refresh_token_expires_at",
    ] {
        assert_eq!(p[k], "", "{k}");
    }
    assert_eq!(p["refresh_count"], "0");
    profile_values_are_strings(&v);
}

fn refresh_token_hint_describes_the_refresh_token() {
    let s = Server::start();
    s.std_app("r");
    let now = now_ms();
    // Access token expired long ago; its refresh token is valid.
    s.import(json!({
        "type": "access_token", "token": "AT-r-expired", "client_id": "cid-r", "scope": "S",
        "status": "approved", "issued_at": now - 7_200_000, "expires_in": 60,
        "refresh_token": "RT-r-valid", "refresh_token_issued_at": now - 1_000,
        "refresh_token_expires_in": 600, "refresh_count": 3,
    }));
    let v = s.introspect("RT-r-valid", Some("refresh_token"));
    assert_eq!(v["active"], true);
    assert_eq!(v["iat"], (now - 1_000) / 1000);
    assert_eq!(v["exp"], (now - 1_000 + 600_000) / 1000);
    assert_eq!(v["client_id"], "cid-r");
    assert_eq!(v["scope"], "S");
    let p = &v["profile"];
    assert_eq!(p["access_token"], kept("AT-r-expired"));
    assert_eq!(p["refresh_token"], "RT-r-valid");
    assert_eq!(p["expires_in"], "0");
    assert_eq!(p["refresh_count"], "3");
    assert_eq!(p["refresh_token_issued_at"], (now - 1_000).to_string());
    let rin: i64 = p["refresh_token_expires_in"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((590..=599).contains(&rin), "{rin}");
    // No hint: not an access token, found as a refresh token.
    assert_eq!(
        without_clock(s.introspect("RT-r-valid", None)),
        without_clock(v.clone())
    );
    // The access token itself is inactive (expired) but keeps its profile.
    let a = s.introspect("AT-r-expired", Some("access_token"));
    assert_eq!(a["active"], false);
    assert_eq!(a["profile"]["status"], "approved");
    // A refresh token is not an access token under the access hint.
    assert_eq!(
        s.introspect("RT-r-valid", Some("access_token")),
        json!({"active": false})
    );
}

fn authorization_code_hint() {
    let s = Server::start();
    s.std_app("c");
    let now = now_ms();
    s.import(json!({
        "type": "authorization_code", "token": "CODE-c-0001", "client_id": "cid-c",
        "redirect_uri": "https://app.example.com/cb", "scope": "READ",
        "issued_at": now, "expires_in": 300, "attributes": {"nonce": "n1"},
    }));
    let v = s.introspect("CODE-c-0001", Some("authorization_code"));
    assert_eq!(v["active"], true);
    assert_eq!(v["client_id"], "cid-c");
    assert_eq!(v["scope"], "READ");
    assert_eq!(v["exp"], (now + 300_000) / 1000);
    assert_eq!(v["iat"], now / 1000);
    profile_values_are_strings(&v);
    let mut p = v["profile"].clone();
    let ein: i64 = p["expires_in"].as_str().unwrap().parse().unwrap();
    assert!((290..=300).contains(&ein), "{ein}");
    p["expires_in"] = json!("");
    assert_eq!(
        p,
        json!({
            "code": "CODE-c-0001", "client_id": "cid-c", "scope": "READ",
            "redirect_uri": "https://app.example.com/cb", "status": "approved",
            "issued_at": now.to_string(), "expires_in": "",
            "expires_at": (now + 300_000).to_string(),
            "developer.email": "c@example.com", "developer.app.name": "c",
            "attributes": {"nonce": "n1"},
        })
    );
    // Codes are looked up only with their hint.
    assert_eq!(s.introspect("CODE-c-0001", None), json!({"active": false}));
    // Expired and revoked codes keep their profile.
    s.import(json!({
        "type": "authorization_code", "token": "CODE-c-old", "client_id": "cid-c",
        "issued_at": now - 600_000, "expires_in": 60,
    }));
    s.import(json!({
        "type": "authorization_code", "token": "CODE-c-rev", "client_id": "cid-c",
        "status": "revoked", "issued_at": now, "expires_in": 60,
    }));
    let old = s.introspect("CODE-c-old", Some("authorization_code"));
    assert_eq!(old["active"], false);
    assert_eq!(old["profile"]["status"], "approved");
    assert_eq!(old["profile"]["expires_in"], "0");
    assert_eq!(old["profile"]["redirect_uri"], "");
    let rev = s.introspect("CODE-c-rev", Some("authorization_code"));
    assert_eq!(rev["active"], false);
    assert_eq!(rev["profile"]["status"], "revoked");
}

fn client_id_hint() {
    let s = Server::start();
    let app = s.std_app("cl");
    let v = s.introspect("cid-cl", Some("client_id"));
    assert_eq!(
        v,
        json!({
            "active": true,
            "client_id": "cid-cl",
            "profile": {
                "client_id": "cid-cl",
                "client_secret": "secret-cl",
                "redirection_uris": "https://app.example.com/cb,https://alt.example.com/cb",
                "developer.email": "cl@example.com",
                "developer.id": "dev-cl",
                "developer.app.name": "cl",
                "developer.app.id": app["app_id"],
                "api_product_list": "[FreeProduct, Premium]",
                "status": "approved",
                "key_status": "approved",
                "developer.status": "active",
                "attributes": {"tier": "gold"},
            },
            "api_products": [],
        })
    );
    assert_eq!(
        s.introspect("cid-nope", Some("client_id")),
        json!({"active": false})
    );
    // A client id is not a token.
    assert_eq!(s.introspect("cid-cl", None), json!({"active": false}));
}

fn unknown_token_is_just_inactive() {
    let s = Server::start();
    for hint in [
        None,
        Some("access_token"),
        Some("refresh_token"),
        Some("authorization_code"),
        Some("client_id"),
    ] {
        let r = s.form(
            "/oauth2/introspect",
            Some(&svc()),
            &[("token", "no-such-token")]
                .into_iter()
                .chain(hint.map(|h| ("token_type_hint", h)))
                .collect::<Vec<_>>(),
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.text, r#"{"active":false}"#, "hint {hint:?}");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("cache-control"), Some("no-store"));
    }
}

fn expired_and_revoked_tokens_keep_their_profile() {
    let s = Server::start();
    s.std_app("x");
    let now = now_ms();
    s.import(json!({
        "type": "access_token", "token": "AT-x-expired", "client_id": "cid-x",
        "status": "approved", "issued_at": now - 7_200_000, "expires_in": 3600,
        "refresh_token": "RT-x-expired", "refresh_token_expires_in": 3600,
    }));
    s.import(json!({
        "type": "access_token", "token": "AT-x-revoked", "client_id": "cid-x",
        "status": "revoked", "issued_at": now, "expires_in": 3600,
        "refresh_token": "RT-x-revoked", "refresh_token_status": "revoked",
    }));
    let e = s.introspect("AT-x-expired", None);
    assert_eq!(e["active"], false);
    assert_eq!(e["exp"], (now - 3_600_000) / 1000);
    assert_eq!(e["profile"]["status"], "approved");
    assert_eq!(e["profile"]["expires_in"], "0");
    assert_eq!(e["profile"]["refresh_token_expires_in"], "0");
    let er = s.introspect("RT-x-expired", Some("refresh_token"));
    assert_eq!(er["active"], false);
    assert_eq!(er["profile"]["refresh_token_status"], "approved");

    let r = s.introspect("AT-x-revoked", Some("access_token"));
    assert_eq!(r["active"], false);
    assert_eq!(r["profile"]["status"], "revoked");
    let ein: i64 = r["profile"]["expires_in"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        ein > 3500,
        "a revoked token still reports its remaining time"
    );
    let rr = s.introspect("RT-x-revoked", Some("refresh_token"));
    assert_eq!(rr["active"], false);
    assert_eq!(rr["profile"]["refresh_token_status"], "revoked");
}

fn expires_in_counts_down_to_zero() {
    let s = Server::start();
    s.std_app("t");
    let now = now_ms();
    s.import(json!({
        "type": "access_token", "token": "AT-t-short", "client_id": "cid-t",
        "status": "approved", "issued_at": now, "expires_in": 1,
    }));
    s.import(json!({
        "type": "access_token", "token": "AT-t-half", "client_id": "cid-t",
        "status": "approved", "issued_at": now - 100_500, "expires_in": 200,
    }));
    let half = s.introspect("AT-t-half", None);
    let ein: i64 = half["profile"]["expires_in"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let expected = (now - 100_500 + 200_000 - now_ms()) / 1000;
    assert!(
        (expected - 1..=expected).contains(&ein),
        "{ein} vs {expected}"
    );
    let v = s.introspect("AT-t-short", None);
    assert_eq!(v["active"], true);
    assert_eq!(v["profile"]["expires_in"], "0"); // under one whole second left
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    let v = s.introspect("AT-t-short", None);
    assert_eq!(v["active"], false);
    assert_eq!(v["profile"]["expires_in"], "0");
    assert_eq!(v["profile"]["status"], "approved");
}

fn introspection_errors() {
    let s = Server::start();
    let url = "/oauth2/introspect";
    let form = [("token", "t")];
    for (auth, what) in [
        (None, "no header"),
        (Some("Bearer wrong-key".to_owned()), "wrong key"),
        (Some(adm()), "admin key"),
        (Some(format!("Basic {SK}")), "wrong scheme"),
        (Some("Bearer".to_owned()), "empty bearer"),
    ] {
        let r = s.form(url, auth.as_deref(), &form);
        r.assert_error(401, "unauthorized");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{what}");
    }
    // Scheme is case-insensitive.
    let r = s.form(url, Some(&format!("bearer {SK}")), &form);
    assert_eq!(r.status, 200, "{}", r.text);

    s.form(url, Some(&svc()), &[])
        .assert_error(400, "invalid_request");
    s.form(url, Some(&svc()), &[("token", "")])
        .assert_error(400, "invalid_request");
    s.form(
        url,
        Some(&svc()),
        &[("token", "a"), ("token_type_hint", "id_token")],
    )
    .assert_error(400, "invalid_request");
    s.form(url, Some(&svc()), &[("token", "a"), ("token", "b")])
        .assert_error(400, "invalid_request");
    // A JSON body is not a form: no token parameter.
    s.json(url, Some(&svc()), &json!({"token": "a"}))
        .assert_error(400, "invalid_request");
}

both_stores!(
    access_token_full_profile,
    org_name_option_and_never_expiring_token_without_refresh,
    refresh_token_hint_describes_the_refresh_token,
    authorization_code_hint,
    client_id_hint,
    unknown_token_is_just_inactive,
    expired_and_revoked_tokens_keep_their_profile,
    expires_in_counts_down_to_zero,
    introspection_errors,
);
