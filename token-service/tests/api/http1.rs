//! HTTP/1.1 keep-alive after early answers, and the one JSON rule
//! (duplicate keys are refused) on every JSON endpoint.

use crate::common::*;
use serde_json::json;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One HTTP/1.1 response read off a raw connection.
struct RawResp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl RawResp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response (Content-Length bodies only: the service sends
/// nothing else), or `None` when the server closed the connection first.
fn read_response(r: &mut BufReader<TcpStream>) -> Option<RawResp> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let status = line.split_whitespace().nth(1)?.parse().ok()?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(RawResp {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Sends `first` on a fresh connection, then (unless the answer said
/// `Connection: close`) a second request on the same connection, which must
/// be answered. Answers the first response.
fn then_healthz(addr: &str, first: &[u8]) -> RawResp {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    // The body may be refused before it is all sent: a write error then is
    // the server closing, which the answer must have announced.
    let _ = w.write_all(first);
    let resp = read_response(&mut r).expect("no answer to the first request");
    if resp
        .header("connection")
        .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    {
        // Announced: the server closes, and nothing more comes.
        let mut rest = Vec::new();
        let _ = r.read_to_end(&mut rest);
        return resp;
    }
    let second = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    w.write_all(second.as_bytes())
        .expect("the server closed a kept-alive connection without Connection: close");
    let next = read_response(&mut r).unwrap_or_else(|| {
        panic!(
            "no answer to a second request on a kept-alive connection after a {} \
             (the server closed it without Connection: close)",
            resp.status
        )
    });
    assert_eq!(next.status, 200, "{}", next.body);
    assert_eq!(next.body, r#"{"status":"ok"}"#);
    resp
}

fn post(addr: &str, path: &str, auth: Option<&str>, body: &str) -> Vec<u8> {
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Answers given before the body was read (401 for a missing key, 405,
/// 404, 413) leave the connection usable, or close it with
/// `Connection: close`; either way a keep-alive client is never left with a
/// silently closed connection.
#[test]
fn early_answers_keep_the_connection_usable_or_say_close() {
    let s = Server::start();
    let addr = s.addr().to_owned();
    let body = format!("token={}", "a".repeat(60 * 1024));

    let r = then_healthz(&addr, &post(&addr, "/oauth2/introspect", None, &body));
    assert_eq!(r.status, 401, "{}", r.body);
    let r = then_healthz(
        &addr,
        &post(&addr, "/v1/apps", Some("Bearer wrong"), "{\"name\": \"x\"}"),
    );
    assert_eq!(r.status, 401, "{}", r.body);
    let r = then_healthz(
        &addr,
        format!(
            "PUT /v1/apps HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 405, "{}", r.body);
    let r = then_healthz(&addr, &post(&addr, "/v1/nothing-here", None, &body));
    assert_eq!(r.status, 404, "{}", r.body);
    // Chunked, refused for its key.
    let r = then_healthz(
        &addr,
        format!(
            "POST /v1/accesstokens/attributes HTTP/1.1\r\nHost: {addr}\r\n\
             Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 401, "{}", r.body);
    // Over the limit: refused, and the connection is closed as announced.
    let big = format!("token={}", "a".repeat(70 * 1024));
    let r = then_healthz(
        &addr,
        &post(&addr, "/oauth2/introspect", Some(&svc()), &big),
    );
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(r.header("connection"), Some("close"));
    // A success keeps the connection too.
    let r = then_healthz(
        &addr,
        &post(&addr, "/oauth2/introspect", Some(&svc()), "token=x"),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, r#"{"active":false}"#);
}

/// One rule for every JSON endpoint: a key named twice in any object is a
/// 400 naming the key, and nothing is written.
fn duplicate_json_keys_are_refused_everywhere() {
    let s = Server::start();
    s.std_app("dk");
    s.import_access("AT-dk-1", "cid-dk", json!({"keep": "1"}));
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "/v1/tokens",
            r#"{"type":"access_token","token":"AT-dk-a","token":"AT-dk-b","client_id":"cid-dk",
                "status":"approved","issued_at":1,"expires_in":-1}"#
                .into(),
            "token",
            "admin",
        ),
        (
            "/v1/tokens",
            r#"{"type":"access_token","type":"authorization_code","token":"AT-dk-c",
                "client_id":"cid-dk","status":"approved","issued_at":1,"expires_in":-1}"#
                .into(),
            "type",
            "admin",
        ),
        (
            "/v1/tokens",
            r#"{"type":"access_token","token":"AT-dk-d","client_id":"cid-dk","status":"approved",
                "issued_at":1,"expires_in":-1,"attributes":{"a":"1","a":"2"}}"#
                .into(),
            "a",
            "admin",
        ),
        (
            "/v1/apps",
            r#"{"name":"n","developer_email":"e","client_id":"cid-dk2","client_id":"cid-dk3"}"#
                .into(),
            "client_id",
            "admin",
        ),
        (
            "/v1/apps",
            r#"{"name":"n","developer_email":"e","client_id":"cid-dk4","attributes":{"t":"1","t":"2"}}"#
                .into(),
            "t",
            "admin",
        ),
        (
            "/v1/accesstokens/attributes",
            r#"{"token":"AT-dk-1","token":"AT-dk-1","attributes":[{"name":"n","value":"v"}]}"#
                .into(),
            "token",
            "service",
        ),
        (
            "/v1/accesstokens/attributes",
            r#"{"token":"AT-dk-1","attributes":[{"name":"n","name":"m","value":"v"}]}"#.into(),
            "name",
            "service",
        ),
        // An escaped spelling of the same key is the same key.
        (
            "/v1/accesstokens/attributes",
            r#"{"token":"AT-dk-1","tok\u0065n":"AT-dk-2","attributes":[{"name":"n","value":"v"}]}"#
                .into(),
            "token",
            "service",
        ),
    ];
    for (path, body, key, who) in &cases {
        let auth = if *who == "admin" { adm() } else { svc() };
        let r = s.raw(
            "POST",
            path,
            Some(&auth),
            "application/json",
            body.as_bytes(),
        );
        r.assert_error(400, "invalid_request");
        assert_eq!(
            r.json["error_description"],
            format!("duplicate key {key:?}"),
            "{path}: {}",
            r.text
        );
    }
    // Nothing was written.
    for t in ["AT-dk-a", "AT-dk-b", "AT-dk-c", "AT-dk-d"] {
        assert_eq!(s.introspect(t, None), json!({"active": false}), "{t}");
    }
    for c in ["cid-dk2", "cid-dk3", "cid-dk4"] {
        assert_eq!(
            s.introspect(c, Some("client_id")),
            json!({"active": false}),
            "{c}"
        );
    }
    assert_eq!(s.attributes("AT-dk-1"), json!({"keep": "1"}));
    // The same key in different objects is fine.
    let r = s.raw(
        "POST",
        "/v1/accesstokens/attributes",
        Some(&svc()),
        "application/json",
        br#"{"token":"AT-dk-1","attributes":[{"name":"n","value":"v"},{"name":"m","value":"w"}]}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text);
}

both_stores!(duplicate_json_keys_are_refused_everywhere);
