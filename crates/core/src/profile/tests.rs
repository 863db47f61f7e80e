use super::*;
use crate::protocol::{parse_introspection, parse_set_response, Answer};
use oauthv2info_names::variables::{Suffix, SET};
use serde_json::json;

pub(super) const NOW: i64 = 1_700_000_000_000;

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

pub(super) fn access_answer(status: &str, expires_at: i64) -> serde_json::Value {
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

pub(super) fn answer(v: serde_json::Value, kind: TokenKind, token: &str) -> Answer {
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
