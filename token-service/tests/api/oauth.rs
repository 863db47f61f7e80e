use crate::common::*;
use serde_json::{json, Value};

fn alnum32(v: &Value) -> &str {
    let s = v.as_str().unwrap();
    assert_eq!(s.len(), 32, "{s}");
    assert!(s.chars().all(|c| c.is_ascii_alphanumeric()), "{s}");
    s
}

fn client_credentials_grant() {
    let s = Server::start();
    s.std_app("cc");
    let before = now_ms();
    let r = s.form(
        "/oauth2/token",
        Some(&basic("cid-cc", "secret-cc")),
        &[
            ("grant_type", "client_credentials"),
            ("scope", "READ WRITE"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("pragma"), Some("no-cache"));
    let b = &r.json;
    assert_eq!(b.as_object().unwrap().len(), 5, "{b}");
    let at = alnum32(&b["access_token"]).to_owned();
    assert_eq!(b["token_type"], "Bearer");
    assert_eq!(b["expires_in"], 3600);
    assert_eq!(b["scope"], "READ WRITE");
    let issued: i64 = b["issued_at"].as_str().unwrap().parse().unwrap();
    assert!(issued >= before && issued <= now_ms(), "{issued}");
    let v = s.introspect(&at, None);
    assert_eq!(v["active"], true);
    assert_eq!(v["client_id"], "cid-cc");
    assert_eq!(v["scope"], "READ WRITE");
    assert_eq!(v["exp"], (issued + 3_600_000) / 1000);
    assert_eq!(v["profile"]["issued_at"], issued.to_string());
    assert_eq!(v["profile"]["refresh_token"], "");
    assert_eq!(v["profile"]["attributes"], json!({}));

    // Form authentication, no scope; the lifetime option applies.
    let s2 = Server::start_with(&["--access-token-lifetime", "120"]);
    s2.std_app("f");
    let r = s2.form(
        "/oauth2/token",
        None,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "cid-f"),
            ("client_secret", "secret-f"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["scope"], "");
    assert_eq!(r.json["expires_in"], 120);
    let at = alnum32(&r.json["access_token"]);
    let p = &s2.introspect(at, None)["profile"];
    let ein: i64 = p["expires_in"].as_str().unwrap().parse().unwrap();
    assert!((115..=119).contains(&ein), "{ein}");
}

fn client_authentication_and_grant_errors() {
    let s = Server::start();
    s.std_app("a");
    s.std_app("b");
    let url = "/oauth2/token";
    let cc = ("grant_type", "client_credentials");
    for auth in [
        basic("cid-a", "secret-b"),
        basic("cid-zzz", "secret-a"),
        "Basic !!notbase64".to_owned(),
    ] {
        let r = s.form(url, Some(&auth), &[cc]);
        r.assert_error(401, "invalid_client");
        assert!(r.header("www-authenticate").unwrap().starts_with("Basic"));
    }
    s.form(url, None, &[cc]).assert_error(401, "invalid_client");
    s.form(url, None, &[cc, ("client_id", "cid-a")])
        .assert_error(401, "invalid_client");
    s.form(
        url,
        None,
        &[cc, ("client_id", "cid-a"), ("client_secret", "nope")],
    )
    .assert_error(401, "invalid_client");
    // A Bearer key is not client authentication.
    s.form(url, Some(&adm()), &[cc])
        .assert_error(401, "invalid_client");
    s.form(
        url,
        Some(&basic("cid-a", "secret-a")),
        &[cc, ("client_secret", "secret-a")],
    )
    .assert_error(400, "invalid_request");
    s.form(
        url,
        Some(&basic("cid-a", "secret-a")),
        &[cc, ("client_id", "cid-b")],
    )
    .assert_error(400, "invalid_request");
    let a = basic("cid-a", "secret-a");
    s.form(url, Some(&a), &[])
        .assert_error(400, "invalid_request");
    s.form(url, Some(&a), &[("grant_type", "password")])
        .assert_error(400, "unsupported_grant_type");
    s.form(url, Some(&a), &[("grant_type", "authorization_code")])
        .assert_error(400, "invalid_request");
    s.form(url, Some(&a), &[("grant_type", "refresh_token")])
        .assert_error(400, "invalid_request");
    s.form(url, Some(&a), &[cc, ("grant_type", "client_credentials")])
        .assert_error(400, "invalid_request");
    // A matching client_id in the form beside HTTP Basic is fine.
    let r = s.form(url, Some(&a), &[cc, ("client_id", "cid-a")]);
    assert_eq!(r.status, 200, "{}", r.text);
}

fn authorization_code_grant() {
    let s = Server::start();
    s.std_app("ac");
    s.std_app("other");
    let now = now_ms();
    s.import(json!({
        "type": "authorization_code", "token": "CODE-ac-1", "client_id": "cid-ac",
        "redirect_uri": "https://app.example.com/cb", "scope": "READ",
        "issued_at": now, "expires_in": 300, "attributes": {"nonce": "n1", "user": "u1"},
    }));
    s.import(json!({
        "type": "authorization_code", "token": "CODE-ac-old", "client_id": "cid-ac",
        "issued_at": now - 600_000, "expires_in": 60,
    }));
    s.import(json!({
        "type": "authorization_code", "token": "CODE-ac-nouri", "client_id": "cid-ac",
        "issued_at": now, "expires_in": 60,
    }));
    let url = "/oauth2/token";
    let ac = basic("cid-ac", "secret-ac");
    let grant = |auth: &str, code: &str, uri: Option<&str>| {
        let mut f = vec![("grant_type", "authorization_code"), ("code", code)];
        if let Some(u) = uri {
            f.push(("redirect_uri", u));
        }
        s.form(url, Some(auth), &f)
    };
    let uri = Some("https://app.example.com/cb");
    grant(&ac, "CODE-ac-1", Some("https://evil.example.com/cb")).assert_error(400, "invalid_grant");
    grant(&ac, "CODE-ac-1", None).assert_error(400, "invalid_grant");
    grant(&basic("cid-other", "secret-other"), "CODE-ac-1", uri).assert_error(400, "invalid_grant");
    grant(&ac, "CODE-ac-unknown", uri).assert_error(400, "invalid_grant");
    grant(&ac, "CODE-ac-old", None).assert_error(400, "invalid_grant");
    // Refused exchanges leave the code usable.
    let c = s.introspect("CODE-ac-1", Some("authorization_code"));
    assert_eq!(c["active"], true);

    let r = grant(&ac, "CODE-ac-1", uri);
    assert_eq!(r.status, 200, "{}", r.text);
    let b = &r.json;
    assert_eq!(b.as_object().unwrap().len(), 6, "{b}");
    let at = alnum32(&b["access_token"]).to_owned();
    let rt = alnum32(&b["refresh_token"]).to_owned();
    assert_eq!(b["scope"], "READ");
    assert_eq!(b["token_type"], "Bearer");
    let c = s.introspect("CODE-ac-1", Some("authorization_code"));
    assert_eq!(c["active"], false);
    assert_eq!(c["profile"]["status"], "revoked");
    let v = s.introspect(&at, Some("access_token"));
    assert_eq!(v["active"], true);
    assert_eq!(v["scope"], "READ");
    assert_eq!(
        v["profile"]["attributes"],
        json!({"nonce": "n1", "user": "u1"})
    );
    assert_eq!(v["profile"]["refresh_token"], kept(&rt));
    assert_eq!(v["profile"]["refresh_token_status"], "approved");
    assert_eq!(
        v["profile"]["refresh_token_issued_at"],
        v["profile"]["issued_at"]
    );
    let rin: i64 = v["profile"]["refresh_token_expires_in"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((86390..=86400).contains(&rin), "{rin}");
    // A code is good once.
    grant(&ac, "CODE-ac-1", uri).assert_error(400, "invalid_grant");
    // A code issued without redirect_uri takes any (or none).
    let r = grant(&ac, "CODE-ac-nouri", None);
    assert_eq!(r.status, 200, "{}", r.text);
}

fn refresh_token_grant() {
    let s = Server::start();
    s.std_app("rf");
    s.std_app("other");
    let now = now_ms();
    s.import(json!({
        "type": "access_token", "token": "AT-rf-1", "client_id": "cid-rf", "scope": "A B",
        "status": "approved", "issued_at": now, "expires_in": 60,
        "refresh_token": "RT-rf-1", "refresh_count": 4, "attributes": {"k": "v"},
    }));
    s.import(json!({
        "type": "access_token", "token": "AT-rf-old", "client_id": "cid-rf",
        "status": "approved", "issued_at": now - 100_000, "expires_in": 10,
        "refresh_token": "RT-rf-old", "refresh_token_expires_in": 20,
    }));
    let url = "/oauth2/token";
    let rf = basic("cid-rf", "secret-rf");
    let grant = |auth: &str, rt: &str| {
        s.form(
            url,
            Some(auth),
            &[("grant_type", "refresh_token"), ("refresh_token", rt)],
        )
    };
    grant(&basic("cid-other", "secret-other"), "RT-rf-1").assert_error(400, "invalid_grant");
    grant(&rf, "RT-rf-old").assert_error(400, "invalid_grant");
    grant(&rf, "RT-rf-unknown").assert_error(400, "invalid_grant");
    grant(&rf, "AT-rf-1").assert_error(400, "invalid_grant");
    assert_eq!(s.introspect("AT-rf-1", None)["active"], true);

    let r = grant(&rf, "RT-rf-1");
    assert_eq!(r.status, 200, "{}", r.text);
    let at = alnum32(&r.json["access_token"]).to_owned();
    let rt = alnum32(&r.json["refresh_token"]).to_owned();
    assert_eq!(r.json["scope"], "A B");
    let v = s.introspect(&at, None);
    assert_eq!(v["active"], true);
    assert_eq!(v["scope"], "A B");
    assert_eq!(v["profile"]["refresh_count"], "5");
    assert_eq!(v["profile"]["attributes"], json!({"k": "v"}));
    assert_eq!(v["profile"]["refresh_token"], kept(&rt));
    // The old access and refresh tokens are revoked.
    let old = s.introspect("AT-rf-1", Some("access_token"));
    assert_eq!(old["active"], false);
    assert_eq!(old["profile"]["status"], "revoked");
    assert_eq!(old["profile"]["refresh_token_status"], "revoked");
    let old_rt = s.introspect("RT-rf-1", Some("refresh_token"));
    assert_eq!(old_rt["active"], false);
    assert_eq!(old_rt["profile"]["refresh_token_status"], "revoked");
    grant(&rf, "RT-rf-1").assert_error(400, "invalid_grant");
    // The new refresh token works in turn.
    let r = grant(&rf, &rt);
    assert_eq!(r.status, 200, "{}", r.text);
    let at3 = r.json["access_token"].as_str().unwrap();
    assert_eq!(s.introspect(at3, None)["profile"]["refresh_count"], "6");
}

fn revocation() {
    let s = Server::start();
    s.std_app("rv");
    s.std_app("other");
    let now = now_ms();
    for i in 1..=4 {
        s.import(json!({
            "type": "access_token", "token": format!("AT-rv-{i}"), "client_id": "cid-rv",
            "status": "approved", "issued_at": now, "expires_in": 600,
            "refresh_token": format!("RT-rv-{i}"),
        }));
    }
    s.import(json!({
        "type": "authorization_code", "token": "CODE-rv-1", "client_id": "cid-rv",
        "issued_at": now, "expires_in": 60,
    }));
    let url = "/oauth2/revoke";
    let rv = basic("cid-rv", "secret-rv");

    // Access token by the owning client.
    let r = s.form(
        url,
        Some(&rv),
        &[("token", "AT-rv-1"), ("token_type_hint", "access_token")],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let v = s.introspect("AT-rv-1", None);
    assert_eq!(v["active"], false);
    assert_eq!(v["profile"]["status"], "revoked");
    // Revoking the access token leaves its refresh token alone.
    assert_eq!(
        s.introspect("RT-rv-1", Some("refresh_token"))["active"],
        true
    );

    // Refresh token (no hint): it and its access token are revoked.
    let r = s.form(url, Some(&rv), &[("token", "RT-rv-2")]);
    assert_eq!(r.status, 200, "{}", r.text);
    let v = s.introspect("AT-rv-2", None);
    assert_eq!(v["active"], false);
    assert_eq!(v["profile"]["status"], "revoked");
    assert_eq!(v["profile"]["refresh_token_status"], "revoked");
    assert_eq!(
        s.introspect("RT-rv-2", Some("refresh_token"))["active"],
        false
    );

    // Another client may not; nothing changes.
    let other = basic("cid-other", "secret-other");
    s.form(url, Some(&other), &[("token", "AT-rv-3")])
        .assert_error(400, "unauthorized_client");
    assert_eq!(s.introspect("AT-rv-3", None)["active"], true);
    // The admin key may revoke any token, with a wrong hint too.
    let r = s.form(
        url,
        Some(&adm()),
        &[("token", "AT-rv-3"), ("token_type_hint", "refresh_token")],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        s.introspect("AT-rv-3", None)["profile"]["status"],
        "revoked"
    );
    // Codes too.
    let r = s.form(
        url,
        Some(&rv),
        &[
            ("token", "CODE-rv-1"),
            ("token_type_hint", "authorization_code"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let c = s.introspect("CODE-rv-1", Some("authorization_code"));
    assert_eq!(c["profile"]["status"], "revoked");
    // Unknown tokens: 200 (RFC 7009), again and again.
    for _ in 0..2 {
        let r = s.form(url, Some(&rv), &[("token", "no-such-token")]);
        assert_eq!(r.status, 200, "{}", r.text);
    }
    // A revoked refresh token cannot be used.
    s.form(
        "/oauth2/token",
        Some(&rv),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", "RT-rv-2"),
        ],
    )
    .assert_error(400, "invalid_grant");

    // Errors.
    let r = s.form(url, Some(&svc()), &[("token", "AT-rv-4")]);
    r.assert_error(401, "unauthorized");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    s.form(url, Some("Bearer nope"), &[("token", "AT-rv-4")])
        .assert_error(401, "unauthorized");
    s.form(url, Some(&basic("cid-rv", "bad")), &[("token", "AT-rv-4")])
        .assert_error(401, "invalid_client");
    s.form(url, None, &[("token", "AT-rv-4")])
        .assert_error(401, "invalid_client");
    s.form(url, Some(&rv), &[])
        .assert_error(400, "invalid_request");
    s.form(
        url,
        Some(&rv),
        &[("token", "AT-rv-4"), ("token_type_hint", "bogus")],
    )
    .assert_error(400, "invalid_request");
    s.form(
        url,
        Some(&rv),
        &[("token", "AT-rv-4"), ("token_type_hint", "client_id")],
    )
    .assert_error(400, "unsupported_token_type");
    assert_eq!(s.introspect("AT-rv-4", None)["active"], true);
    // Form client authentication works too.
    let r = s.form(
        url,
        None,
        &[
            ("token", "AT-rv-4"),
            ("client_id", "cid-rv"),
            ("client_secret", "secret-rv"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        s.introspect("AT-rv-4", None)["profile"]["status"],
        "revoked"
    );
}

both_stores!(
    client_credentials_grant,
    client_authentication_and_grant_errors,
    authorization_code_grant,
    refresh_token_grant,
    revocation,
);
