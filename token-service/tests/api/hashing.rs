//! Tokens hashed at rest (`--hash-tokens`, docs/token-service.md): a plain
//! store hashed in place keeps working (lookups, merges, grants,
//! revocation, import, the change feed's fingerprints), the store then
//! holds no token value, and a hashed store refuses a start without the
//! flag. (The whole suite also runs with `TS_HASH_TOKENS=1`.)

use crate::common::*;
use crate::pg;
use crate::schema::{one_error_line, refused_start};
use oauthv2info_names::{token_hash_hex, TokenKind};
use serde_json::json;

both_stores!(a_plain_store_hashed_in_place_keeps_working_and_holds_no_token);

const AT1: &str = "AT-hp-plain-value-0001";
const RT1: &str = "RT-hp-plain-value-0001";
const AT2: &str = "AT-hp-plain-value-0002";
const CODE: &str = "CODE-hp-plain-value-0001";

/// Everything the store keeps, as text: the SQLite file and its WAL, or
/// every row of every table on PostgreSQL.
fn store_contents(db: &str) -> String {
    match backend() {
        Backend::Sqlite => {
            let mut out = Vec::new();
            for f in [db.to_owned(), format!("{db}-wal")] {
                out.extend(std::fs::read(&f).unwrap_or_default());
            }
            String::from_utf8_lossy(&out).into_owned()
        }
        Backend::Postgres => {
            let name = db.rsplit('/').next().unwrap();
            let c = pg::shared();
            let mut out = String::new();
            for t in [
                "apps",
                "access_tokens",
                "token_attributes",
                "authorization_codes",
                "code_attributes",
                "changes",
                "store_settings",
            ] {
                out.push_str(&c.psql(name, &format!("SELECT t::text FROM {t} t")));
                out.push('\n');
            }
            out
        }
    }
}

fn feed_since(s: &Server, after: i64) -> Vec<(String, String, String)> {
    s.all_changes(after, 500)
        .0
        .iter()
        .map(|c| {
            (
                c["kind"].as_str().unwrap().to_owned(),
                c["hash"].as_str().unwrap().to_owned(),
                c["op"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn fp(kind: TokenKind, v: &str) -> String {
    token_hash_hex(kind, v.as_bytes())
}

fn a_plain_store_hashed_in_place_keeps_working_and_holds_no_token() {
    let keep = tempfile::tempdir().unwrap();
    let db = fresh_db(keep.path());
    let plain = [(PLAIN_STORE_ENV, "1")];
    let mut s = Server::start_on(tempfile::tempdir().unwrap(), db.clone(), &[], &plain);
    s.std_app("hp");
    s.import(
        json!({"type": "access_token", "token": AT1, "client_id": "cid-hp",
        "scope": "READ", "status": "approved", "issued_at": now_ms(), "expires_in": 3600,
        "refresh_token": RT1, "attributes": {"a": "1"}}),
    );
    s.import_access(AT2, "cid-hp", json!({}));
    s.import(
        json!({"type": "authorization_code", "token": CODE, "client_id": "cid-hp",
        "issued_at": now_ms(), "expires_in": 600, "attributes": {"nonce": "n1"}}),
    );
    assert!(
        store_contents(&db).contains(AT1),
        "the plain store keeps values"
    );
    s.kill9();
    drop(s);

    // Hashed in place at the start with --hash-tokens.
    let s = Server::start_on(
        tempfile::tempdir().unwrap(),
        db.clone(),
        &["--hash-tokens"],
        &[],
    );
    let log = s.log();
    assert!(
        log.contains("tokens hashed in place") && log.contains("access_tokens=2"),
        "{log}"
    );
    assert!(log.contains("hash_tokens=true"), "{log}");
    let head = s.changes(0, 1)["head"].as_i64().unwrap();

    // Lookups: the presented value is shown, the other token's is not kept.
    let v = s.introspect(AT1, None);
    assert_eq!(v["active"], true, "{v}");
    assert_eq!(v["profile"]["access_token"], AT1);
    assert_eq!(v["profile"]["refresh_token"], "");
    assert_eq!(v["profile"]["refresh_token_status"], "approved");
    assert_eq!(v["profile"]["attributes"], json!({"a": "1"}));
    let v = s.introspect(RT1, None);
    assert_eq!(v["active"], true, "{v}");
    assert_eq!(v["profile"]["refresh_token"], RT1);
    assert_eq!(v["profile"]["access_token"], "");
    let v = s.introspect(CODE, Some("authorization_code"));
    assert_eq!(v["active"], true, "{v}");
    assert_eq!(v["profile"]["code"], CODE);
    assert_eq!(v["profile"]["attributes"], json!({"nonce": "n1"}));

    // A merge, a revocation, a code exchange, a refresh: the feed names
    // each value by the fingerprint the filter computes from it.
    let r = s.merge(AT1, &[("x", "2")]);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["profile"]["access_token"], AT1);
    assert_eq!(r.json["profile"]["attributes"], json!({"a": "1", "x": "2"}));
    let r = s.form("/oauth2/revoke", Some(&adm()), &[("token", AT2)]);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(s.introspect(AT2, None)["profile"]["status"], "revoked");
    let r = s.form(
        "/oauth2/token",
        Some(&basic("cid-hp", "secret-hp")),
        &[("grant_type", "authorization_code"), ("code", CODE)],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let issued: Vec<String> = ["access_token", "refresh_token"]
        .iter()
        .map(|k| r.json[*k].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(s.introspect(&issued[0], None)["active"], true);
    assert_eq!(s.introspect(&issued[1], None)["active"], true);
    let r = s.form(
        "/oauth2/token",
        Some(&basic("cid-hp", "secret-hp")),
        &[("grant_type", "refresh_token"), ("refresh_token", RT1)],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let refreshed = r.json["access_token"].as_str().unwrap().to_owned();
    let v = s.introspect(&refreshed, None);
    assert_eq!(v["profile"]["refresh_count"], "1");
    assert_eq!(v["profile"]["attributes"], json!({"a": "1", "x": "2"}));
    assert_eq!(s.introspect(AT1, None)["active"], false);
    let (at, rt, cd) = (
        TokenKind::AccessToken,
        TokenKind::RefreshToken,
        TokenKind::AuthorizationCode,
    );
    let want = [
        (at, AT1, "merge"),
        (rt, RT1, "merge"),
        (at, AT2, "revoke"),
        (cd, CODE, "exchange"),
        (at, AT1, "refresh"),
        (rt, RT1, "refresh"),
    ];
    let want: Vec<(String, String, String)> = want
        .iter()
        .map(|(k, v, op)| (k.hint().to_owned(), fp(*k, v), (*op).to_owned()))
        .collect();
    assert_eq!(feed_since(&s, head), want);

    // An import of a value in use (kept hashed) is refused; a new one works.
    s.json(
        "/v1/tokens",
        Some(&adm()),
        &json!({"type": "access_token", "token": RT1, "client_id": "cid-hp",
                "status": "approved", "issued_at": now_ms(), "expires_in": 60}),
    )
    .assert_error(409, "token_exists");
    s.import_access("AT-hp-new-value-0003", "cid-hp", json!({}));
    assert_eq!(
        s.introspect("AT-hp-new-value-0003", Some("access_token"))["active"],
        true
    );

    // The store holds no token value, old or new.
    let contents = store_contents(&db);
    let mut values: Vec<String> = [AT1, RT1, AT2, CODE, "AT-hp-new-value-0003"]
        .iter()
        .map(|v| (*v).to_owned())
        .collect();
    values.extend(issued);
    values.push(refreshed);
    for v in &values {
        assert!(!contents.contains(v.as_str()), "the store holds {v}");
    }
    assert!(contents.contains("sha256:"), "no hashes in the store?");
    drop(s);

    // A hashed store refuses a start without --hash-tokens.
    let (code, text) = refused_start(&db);
    assert_eq!(code, Some(1), "{text}");
    let line = one_error_line(&text);
    assert!(
        line.contains("start every replica with --hash-tokens"),
        "{line}"
    );
}
