use super::*;
use crate::protocol::{parse_introspection, parse_set_response, Answer};
use oauthv2info_names::variables::{Suffix, SET};
use serde_json::json;

const NOW: i64 = 1_700_000_000_000;

/// (suffix, value) of every standard variable a kind's list yields,
/// then the custom attributes with `attribute_prefix`.
fn vars(
    kind: TokenKind,
    list: &[Suffix],
    prefix: &str,
    p: ProfileRef<'_>,
    token: &str,
    now: i64,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut buf = NumberBuf::default();
    for s in list {
        if let Some(v) = p.value(s.source, (kind.own_field(), token.as_bytes()), now) {
            out.push((
                s.name.to_string(),
                String::from_utf8_lossy(v.bytes(&mut buf)).into_owned(),
            ));
        }
    }
    for (k, v) in p.attributes() {
        out.push((
            format!("{prefix}{}", String::from_utf8_lossy(k)),
            String::from_utf8_lossy(v).into_owned(),
        ));
    }
    out
}

fn get_vars(
    kind: TokenKind,
    ignore: bool,
    answer: &Answer,
    token: &str,
    now: i64,
) -> Result<Vec<(String, String)>, Fault> {
    let p = check_get(kind, ignore, answer.lookup(), now)?;
    Ok(vars(
        kind,
        kind.suffixes(),
        kind.attribute_prefix(),
        p,
        token,
        now,
    ))
}

fn get<'a>(v: &'a [(String, String)], suffix: &str) -> Option<&'a str> {
    v.iter().find(|(k, _)| k == suffix).map(|(_, v)| v.as_str())
}

fn access_answer(status: &str, expires_at: i64) -> serde_json::Value {
    json!({
        "active": status == "approved" && (expires_at == -1 || expires_at > NOW),
        "token_type": "Bearer", "scope": "READ", "client_id": "app-1",
        "profile": {
            "access_token": "tok-123", "client_id": "app-1", "scope": "READ WRITE",
            "status": status, "token_type": "BearerToken",
            "issued_at": (NOW - 600_000).to_string(), "expires_in": "999",
            "expires_at": expires_at.to_string(), "organization_name": "org",
            "api_product_list": "[FreeProduct, Premium]",
            "developer.id": "dev-1", "developer.email": "joe@example.com",
            "developer.app.name": "weather", "developer.app.id": "app-uuid",
            "refresh_token": "ref-456", "refresh_token_status": "approved",
            "refresh_token_issued_at": (NOW - 600_000).to_string(),
            "refresh_token_expires_in": "1", "refresh_token_expires_at": (NOW + 86_400_000).to_string(),
            "refresh_count": "2",
            "attributes": {"department.id": "42", "n": 7}
        }
    })
}

fn answer(v: serde_json::Value, kind: TokenKind, token: &str) -> Answer {
    parse_introspection(Some(200), v.to_string().as_bytes(), kind, token, NOW).unwrap()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn builder_and_view_agree() {
    let mut b = ProfileBuilder::new(true, false);
    b.field(Field::Scope, "READ é");
    b.field(Field::Scope, "WRITE");
    b.attribute("dept", "");
    b.attribute("x.y", "1");
    b.named_field("not-a-field", "dropped");
    let p = b.finish();
    let v = p.view();
    assert!(v.active() && !v.plain());
    assert_eq!(v.field(Field::Scope), Some(&b"WRITE"[..]));
    assert_eq!(v.field(Field::Code), None);
    assert_eq!(v.attribute(b"dept"), Some(&b""[..]));
    assert_eq!(v.attribute(b"x.y"), Some(&b"1"[..]));
    assert_eq!(v.attribute_count(), 2);
    assert!(v.validate());
    // Every cut of the bytes is refused, or fails validation, and reads
    // stay in bounds.
    for cut in 0..p.as_bytes().len() {
        if let Some(r) = ProfileRef::parse(&p.as_bytes()[..cut]) {
            assert!(!r.validate(), "cut at {cut}");
            let _ = (
                r.attributes().count(),
                r.field(Field::Scope),
                r.is_past(Field::ExpiresAt, 0),
            );
        }
    }
}

#[test]
fn attributes_come_out_in_name_order_a_repeat_replacing_the_value() {
    let mut b = ProfileBuilder::new(true, false);
    for (name, value) in [
        ("m", "1"),
        ("b", "2"),
        ("z", "3"),
        ("b", "4"),
        ("a", "5"),
        ("é", "6"),
        ("m", "7"),
    ] {
        b.attribute(name, value);
    }
    let p = b.finish();
    let got: Vec<(&[u8], &[u8])> = p.view().attributes().collect();
    let expected: [(&[u8], &[u8]); 5] = [
        (b"a", b"5"),
        (b"b", b"4"),
        (b"m", b"7"),
        (b"z", b"3"),
        ("é".as_bytes(), b"6"),
    ];
    assert_eq!(got, expected);
    assert!(p.view().validate());
}

#[test]
fn numbers_parse_like_str_parse() {
    for text in [
        "0",
        "-1",
        "+7",
        " 42 ",
        "1795442766330",
        "-9223372036854775808",
        "9223372036854775807",
    ] {
        assert_eq!(
            parse_i64(text.as_bytes()),
            text.trim().parse().ok(),
            "{text:?}"
        );
    }
    for text in [
        "",
        " ",
        "-",
        "1.5",
        "12a",
        "9223372036854775808",
        "--1",
        "1 2",
    ] {
        assert_eq!(parse_i64(text.as_bytes()), None, "{text:?}");
    }
}

#[test]
fn numbers_format() {
    let mut b = NumberBuf::default();
    for n in [0i64, 7, -1, 3599, i64::MAX, i64::MIN] {
        assert_eq!(b.format(n), n.to_string().as_bytes());
    }
}

#[test]
fn access_token_maps_every_variable_with_remaining_expiry() {
    let a = answer(
        access_answer("approved", NOW + 3_599_500),
        TokenKind::AccessToken,
        "tok-123",
    );
    let v = get_vars(TokenKind::AccessToken, false, &a, "tok-123", NOW).unwrap();
    assert_eq!(
        v,
        pairs(&[
            ("access_token", "tok-123"),
            ("client_id", "app-1"),
            ("scope", "READ WRITE"),
            ("status", "approved"),
            ("expires_in", "3599"),
            ("issued_at", "1699999400000"),
            ("token_type", "BearerToken"),
            ("organization_name", "org"),
            ("api_product_list", "[FreeProduct, Premium]"),
            ("developer.id", "dev-1"),
            ("developer.email", "joe@example.com"),
            ("developer.app.name", "weather"),
            ("developer.app.id", "app-uuid"),
            ("refresh_token", "ref-456"),
            ("refresh_token_status", "approved"),
            ("refresh_token_expires_in", "86400"),
            ("refresh_token_issued_at", "1699999400000"),
            ("refresh_count", "2"),
            ("accesstoken.department.id", "42"),
            ("accesstoken.n", "7"),
        ])
    );
    // The same cached profile, evaluated later, counts down.
    let later = get_vars(
        TokenKind::AccessToken,
        false,
        &a,
        "tok-123",
        NOW + 1_000_000,
    )
    .unwrap();
    assert_eq!(get(&later, "expires_in"), Some("2599"));
}

#[test]
fn access_token_status_rules() {
    let unknown = answer(json!({"active": false}), TokenKind::AccessToken, "x");
    assert_eq!(unknown, Answer::Unknown);
    for ignore in [false, true] {
        assert_eq!(
            get_vars(TokenKind::AccessToken, ignore, &unknown, "x", NOW),
            Err(Fault::InvalidAccessToken)
        );
    }
    let revoked = answer(
        access_answer("revoked", NOW + 1000),
        TokenKind::AccessToken,
        "x",
    );
    assert_eq!(
        get_vars(TokenKind::AccessToken, false, &revoked, "x", NOW),
        Err(Fault::InvalidAccessToken)
    );
    let v = get_vars(TokenKind::AccessToken, true, &revoked, "x", NOW).unwrap();
    assert_eq!(get(&v, "status"), Some("revoked"));

    let expired = answer(
        access_answer("approved", NOW - 1),
        TokenKind::AccessToken,
        "x",
    );
    assert_eq!(
        get_vars(TokenKind::AccessToken, false, &expired, "x", NOW),
        Err(Fault::AccessTokenExpired)
    );
    let v = get_vars(TokenKind::AccessToken, true, &expired, "x", NOW).unwrap();
    assert_eq!(get(&v, "status"), Some("expired"));
    assert_eq!(get(&v, "expires_in"), Some("0"));

    // Exactly at the expiry instant the token is expired.
    let edge = answer(access_answer("approved", NOW), TokenKind::AccessToken, "x");
    assert_eq!(
        get_vars(TokenKind::AccessToken, false, &edge, "x", NOW),
        Err(Fault::AccessTokenExpired)
    );
    // Revoked and expired: invalid (status is checked first).
    let both = answer(
        access_answer("revoked", NOW - 1),
        TokenKind::AccessToken,
        "x",
    );
    assert_eq!(
        get_vars(TokenKind::AccessToken, false, &both, "x", NOW),
        Err(Fault::InvalidAccessToken)
    );
    let never = answer(access_answer("approved", -1), TokenKind::AccessToken, "x");
    let v = get_vars(
        TokenKind::AccessToken,
        false,
        &never,
        "x",
        NOW + 10i64.pow(12),
    )
    .unwrap();
    assert_eq!(get(&v, "expires_in"), Some("-1"));
}

#[test]
fn refresh_token_kind() {
    let mut a = access_answer("revoked", NOW - 5);
    let l = answer(a.clone(), TokenKind::RefreshToken, "ref-456");
    // The access token being revoked or expired does not matter.
    let v = get_vars(TokenKind::RefreshToken, false, &l, "ref-456", NOW).unwrap();
    assert_eq!(get(&v, "refresh_token"), Some("ref-456"));
    assert_eq!(get(&v, "refresh_token_expires_in"), Some("86400"));
    assert_eq!(get(&v, "accesstoken.department.id"), Some("42"));

    a["profile"]["refresh_token_status"] = json!("revoked");
    let l = answer(a.clone(), TokenKind::RefreshToken, "ref-456");
    let v = get_vars(TokenKind::RefreshToken, false, &l, "ref-456", NOW).unwrap();
    assert_eq!(get(&v, "refresh_token_status"), Some("revoked"));

    a["profile"]["refresh_token_expires_at"] = json!((NOW - 1).to_string());
    let l = answer(a, TokenKind::RefreshToken, "ref-456");
    assert_eq!(
        get_vars(TokenKind::RefreshToken, false, &l, "r", NOW),
        Err(Fault::RefreshTokenExpired)
    );
    assert_eq!(
        get_vars(TokenKind::RefreshToken, false, &Answer::Unknown, "r", NOW),
        Err(Fault::InvalidRefreshToken)
    );
}

#[test]
fn authorization_code_kind() {
    let code = |status: &str, expires_at: i64| {
        json!({"active": true, "client_id": "app-1", "profile": {
            "code": "code-1", "client_id": "app-1", "scope": "READ", "redirect_uri": "https://cb",
            "status": status, "issued_at": NOW.to_string(), "expires_in": "60",
            "expires_at": expires_at.to_string(), "developer.email": "joe@example.com",
            "attributes": {"state": "s1"}}})
    };
    let l = answer(
        code("approved", NOW + 60_000),
        TokenKind::AuthorizationCode,
        "code-1",
    );
    let v = get_vars(TokenKind::AuthorizationCode, false, &l, "code-1", NOW).unwrap();
    assert_eq!(
        v,
        pairs(&[
            ("code", "code-1"),
            ("client_id", "app-1"),
            ("scope", "READ"),
            ("redirect_uri", "https://cb"),
            ("status", "approved"),
            ("issued_at", "1700000000000"),
            ("expires_in", "60"),
            ("state", "s1"),
        ])
    );
    let l = answer(
        code("revoked", NOW + 60_000),
        TokenKind::AuthorizationCode,
        "code-1",
    );
    let v = get_vars(TokenKind::AuthorizationCode, false, &l, "code-1", NOW).unwrap();
    assert_eq!(get(&v, "status"), Some("revoked"));
    let l = answer(
        code("approved", NOW - 60_000),
        TokenKind::AuthorizationCode,
        "code-1",
    );
    assert_eq!(
        get_vars(TokenKind::AuthorizationCode, false, &l, "c", NOW),
        Err(Fault::AuthorizationCodeExpired)
    );
    assert_eq!(
        get_vars(
            TokenKind::AuthorizationCode,
            false,
            &Answer::Unknown,
            "c",
            NOW
        ),
        Err(Fault::InvalidAuthorizationCode)
    );
}

#[test]
fn client_id_kind() {
    let l = answer(
        json!({"active": true, "client_id": "app-1", "profile": {
            "client_id": "app-1", "client_secret": "s3cret", "redirection_uris": "https://a,https://b",
            "developer.email": "joe@example.com", "developer.id": "dev-1", "developer.app.name": "weather",
            "developer.app.id": "uuid", "api_product_list": "[P]", "status": "approved",
            "attributes": {"tier": "gold"}}}),
        TokenKind::ClientId,
        "app-1",
    );
    let v = get_vars(TokenKind::ClientId, false, &l, "app-1", NOW).unwrap();
    assert_eq!(
        v,
        pairs(&[
            ("client_id", "app-1"),
            ("client_secret", "s3cret"),
            ("redirection_uris", "https://a,https://b"),
            ("developer.email", "joe@example.com"),
            ("developer.id", "dev-1"),
            ("developer.app.name", "weather"),
            ("tier", "gold"),
        ])
    );
    let inactive = answer(
        json!({"active": false, "profile": {"client_id": "app-1"}}),
        TokenKind::ClientId,
        "app-1",
    );
    assert_eq!(
        get_vars(TokenKind::ClientId, false, &inactive, "x", NOW),
        Err(Fault::InvalidClientId)
    );
    assert_eq!(
        get_vars(TokenKind::ClientId, false, &Answer::Unknown, "x", NOW),
        Err(Fault::InvalidClientId)
    );
}

#[test]
fn plain_rfc7662_server() {
    let l = answer(
        json!({"active": true, "client_id": "c", "scope": "a b", "token_type": "Bearer", "exp": NOW / 1000 + 100, "iat": NOW / 1000 - 5, "username": "u"}),
        TokenKind::AccessToken,
        "tok",
    );
    assert!(matches!(&l, Answer::Known(p) if p.view().plain()));
    let v = get_vars(TokenKind::AccessToken, false, &l, "tok", NOW).unwrap();
    assert_eq!(
        v,
        pairs(&[
            ("access_token", "tok"),
            ("client_id", "c"),
            ("scope", "a b"),
            ("status", "approved"),
            ("expires_in", "100"),
            ("issued_at", "1699999995000"),
            ("token_type", "Bearer"),
        ])
    );
    // Inactive with a past exp: expired; without: invalid.
    let expired = answer(
        json!({"active": false, "exp": NOW / 1000 - 1}),
        TokenKind::AccessToken,
        "tok",
    );
    assert_eq!(
        get_vars(TokenKind::AccessToken, false, &expired, "tok", NOW),
        Err(Fault::AccessTokenExpired)
    );
    let inactive = answer(
        json!({"active": false, "exp": NOW / 1000 + 100}),
        TokenKind::AccessToken,
        "tok",
    );
    assert_eq!(inactive, Answer::Unknown);
    // A plain server that introspects a refresh token.
    let r = answer(
        json!({"active": true, "exp": NOW / 1000 + 10}),
        TokenKind::RefreshToken,
        "r",
    );
    let v = get_vars(TokenKind::RefreshToken, false, &r, "r", NOW).unwrap();
    assert_eq!(get(&v, "refresh_token"), Some("r"));
    assert_eq!(get(&v, "refresh_token_expires_in"), Some("10"));
    assert_eq!(get(&v, "access_token"), None);
}

#[test]
fn malformed_answers_are_service_failures() {
    let bad: &[(Option<u16>, &[u8])] = &[
        (None, b""),
        (Some(503), b"{\"active\":true}"),
        (Some(500), b""),
        (Some(401), b"{\"error\":\"unauthorized\"}"),
        (Some(404), b""),
        (Some(200), b""),
        (Some(200), b"{\"active\":tr"),
        (Some(200), b"[]"),
        (Some(200), b"{\"active\":\"yes\"}"),
        (Some(200), b"{}"),
        (Some(200), b"{\"active\":true,\"profile\":[]}"),
        (
            Some(200),
            b"{\"active\":true,\"profile\":{\"attributes\":[]}}",
        ),
        (Some(200), b"\xff\xfe"),
    ];
    for (status, body) in bad {
        assert!(
            parse_introspection(*status, body, TokenKind::AccessToken, "t", NOW).is_err(),
            "{status:?} {:?}",
            String::from_utf8_lossy(body)
        );
    }
}

/// The answer is read in one pass, as a JSON object map would read it:
/// the last of a repeated member wins, members come in any order,
/// escapes are decoded, numbers and booleans become their JSON text,
/// arrays, objects and nulls are ignored; custom attributes are kept in
/// name order.
#[test]
fn answers_read_in_one_pass_mean_what_the_json_says() {
    let body = br#"{"profile":{"client_id":"first","client_id":"c\u00e9\n","scope":"READ",
        "refresh_count":3,"expires_in":1.5,"token_type":true,"status":null,
        "developer.email":["x"],"organization_name":{"a":1},
        "attributes":{"zeta":"z","alpha":"a","zeta":"z2","n":-7,"nested":{"x":1},"list":[1]}},
        "ignored":[{"deep":[1,2,{"x":null}]}],"active":true}"#;
    let Answer::Known(p) =
        parse_introspection(Some(200), body, TokenKind::AccessToken, "t", NOW).unwrap()
    else {
        panic!("a known token");
    };
    let p = p.view();
    assert!(p.active(), "active came after the profile");
    assert!(!p.plain());
    assert_eq!(p.field(Field::ClientId), Some("c\u{e9}\n".as_bytes()));
    assert_eq!(p.field(Field::Scope), Some(&b"READ"[..]));
    assert_eq!(p.field(Field::RefreshCount), Some(&b"3"[..]));
    assert_eq!(p.field(Field::TokenType), Some(&b"true"[..]));
    assert_eq!(p.field(Field::Status), None, "null is no value");
    assert_eq!(p.field(Field::DeveloperEmail), None);
    assert_eq!(p.field(Field::OrganizationName), None);
    let attributes: Vec<(&[u8], &[u8])> = p.attributes().collect();
    assert_eq!(
        attributes,
        [
            (&b"alpha"[..], &b"a"[..]),
            (&b"n"[..], &b"-7"[..]),
            (&b"zeta"[..], &b"z2"[..])
        ]
    );
    // The float as JSON writes it.
    let body = br#"{"active":true,"profile":{"issued_at":1.5}}"#;
    let Answer::Known(p) =
        parse_introspection(Some(200), body, TokenKind::AccessToken, "t", NOW).unwrap()
    else {
        panic!("a known token");
    };
    assert_eq!(p.view().field(Field::IssuedAt), Some(&b"1.5"[..]));
    // A repeated "attributes" member: the last one.
    let body = br#"{"active":true,"profile":{"attributes":{"a":"1"},"attributes":{"b":"2"}}}"#;
    let Answer::Known(p) =
        parse_introspection(Some(200), body, TokenKind::AccessToken, "t", NOW).unwrap()
    else {
        panic!("a known token");
    };
    assert_eq!(p.view().attributes().count(), 1);
    assert_eq!(p.view().attribute(b"b"), Some(&b"2"[..]));
    // Trailing bytes, and a profile that is null, are refused.
    for body in [
        &br#"{"active":true} x"#[..],
        br#"{"active":true,"profile":null}"#,
    ] {
        assert!(parse_introspection(Some(200), body, TokenKind::AccessToken, "t", NOW).is_err());
    }
}

#[test]
fn set_response_mapping() {
    let body = access_answer("approved", NOW + 10_000).to_string();
    let profile = parse_set_response(Some(200), body.as_bytes(), "tok-123", NOW)
        .unwrap()
        .unwrap();
    assert_eq!(
        vars(
            TokenKind::AccessToken,
            SET,
            "",
            profile.view(),
            "tok-123",
            NOW
        ),
        pairs(&[
            ("access_token", "tok-123"),
            ("client_id", "app-1"),
            ("refresh_count", "2"),
            ("organization_name", "org"),
            ("expires_in", "10"),
            ("refresh_token_expires_in", "86400"),
            ("issued_at", "1699999400000"),
            ("status", "approved"),
            ("api_product_list", "[FreeProduct, Premium]"),
            ("token_type", "BearerToken"),
            ("department.id", "42"),
            ("n", "7"),
        ])
    );
    let set = |status: u16, body: &[u8]| parse_set_response(Some(status), body, "t", NOW);
    assert_eq!(
        set(404, b"{\"error\":\"invalid_access_token\"}"),
        Ok(Err(Fault::InvalidAccessToken))
    );
    assert_eq!(
        set(409, b"{\"error\":\"access_token_expired\"}"),
        Ok(Err(Fault::AccessTokenExpired))
    );
    assert_eq!(
        set(409, b"{\"error\":\"invalid_access_token\"}"),
        Ok(Err(Fault::InvalidAccessToken))
    );
    assert!(set(409, b"{\"error\":\"other\"}").is_err());
    assert!(set(404, b"<html>not found</html>").is_err());
    assert!(set(404, b"{\"error\":\"access_token_expired\"}").is_err());
    assert!(set(
        400,
        b"{\"error\":\"protected_attribute\",\"attribute\":\"scope\"}"
    )
    .is_err());
    assert!(set(401, b"").is_err());
    assert!(set(500, b"").is_err());
    assert!(parse_set_response(None, b"", "t", NOW).is_err());
    assert!(set(200, b"{\"active\":true}").is_err());
    assert!(set(200, b"{\"active\":tr").is_err());
}

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

#[test]
fn the_one_word_approved_test_is_eq_ignore_ascii_case() {
    // Every byte in every place of "approved" in three cases, and other
    // lengths.
    for base in [*b"approved", *b"APPROVED", *b"ApPrOvEd"] {
        for at in 0..8 {
            for b in 0..=255u8 {
                let mut status = base;
                status[at] = b;
                assert_eq!(
                    is_approved(&status),
                    status.eq_ignore_ascii_case(b"approved"),
                    "{status:?}"
                );
            }
        }
    }
    for status in [
        &b""[..],
        b"approve",
        b"approvedd",
        b" approved",
        b"approved ",
    ] {
        assert!(!is_approved(status), "{status:?}");
    }
    assert!(is_approved(b"Approved"));
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
