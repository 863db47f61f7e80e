//! `GET /v1/changes`: what each write lists, paging, errors, retention and
//! 410, and no skipped change under concurrent writers (on PostgreSQL across
//! two replicas).

use crate::common::*;
use oauthv2info_names::{token_hash_hex, TokenKind};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn h(kind: TokenKind, token: &str) -> String {
    token_hash_hex(kind, token.as_bytes())
}

/// The (kind, hash, op) of each listed change.
fn triples(rows: &[Value]) -> Vec<(String, String, String)> {
    rows.iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap().to_owned(),
                r["hash"].as_str().unwrap().to_owned(),
                r["op"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn t(kind: TokenKind, token: &str, op: &str) -> (String, String, String) {
    (kind.hint().to_owned(), h(kind, token), op.to_owned())
}

fn cursors(rows: &[Value]) -> Vec<i64> {
    rows.iter().map(|r| r["cursor"].as_i64().unwrap()).collect()
}

fn strictly_increasing(c: &[i64]) -> bool {
    c.windows(2).all(|w| w[0] < w[1])
}

/// Each kind of write lists the profiles it changed, by hash, in order;
/// writes that change no existing profile, and refused writes, list
/// nothing.
fn every_profile_change_is_listed() {
    use TokenKind::*;
    let s = Server::start();
    let empty = s.changes(0, 500);
    assert_eq!(
        empty,
        json!({"changes": [], "next": 0, "oldest": 1, "head": 0})
    );

    s.std_app("fd");
    let now = now_ms();
    s.import(json!({
        "type": "access_token", "token": "AT-fd-1", "client_id": "cid-fd", "status": "approved",
        "issued_at": now, "expires_in": 3600, "refresh_token": "RT-fd-1",
    }));
    assert_eq!(s.merge("AT-fd-1", &[("a", "1")]).status, 200);
    // Refused writes list nothing.
    assert_eq!(s.merge("AT-fd-unknown", &[("a", "1")]).status, 404);
    let r = s.json(
        "/v1/apps",
        Some(&adm()),
        &json!({"name": "x", "developer_email": "e",
        "client_id": "cid-fd"}),
    );
    assert_eq!(r.status, 409);
    // A new token changes no existing profile: not listed.
    let r = s.form(
        "/oauth2/token",
        Some(&basic("cid-fd", "secret-fd")),
        &[("grant_type", "client_credentials")],
    );
    assert_eq!(r.status, 200);
    let cc = r.json["access_token"].as_str().unwrap().to_owned();
    // A refresh revokes the old access and refresh tokens.
    let r = s.form(
        "/oauth2/token",
        Some(&basic("cid-fd", "secret-fd")),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", "RT-fd-1"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let at2 = r.json["access_token"].as_str().unwrap().to_owned();
    let rt2 = r.json["refresh_token"].as_str().unwrap().to_owned();
    s.import(json!({
        "type": "authorization_code", "token": "CODE-fd-1", "client_id": "cid-fd",
        "issued_at": now, "expires_in": 600,
    }));
    let r = s.form(
        "/oauth2/token",
        Some(&basic("cid-fd", "secret-fd")),
        &[("grant_type", "authorization_code"), ("code", "CODE-fd-1")],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    // Revoking an access token lists its refresh token too.
    assert_eq!(
        s.form("/oauth2/revoke", Some(&adm()), &[("token", &at2)])
            .status,
        200
    );
    assert_eq!(
        s.form("/oauth2/revoke", Some(&adm()), &[("token", &cc)])
            .status,
        200
    );
    // An unknown token: nothing to list.
    assert_eq!(
        s.form("/oauth2/revoke", Some(&adm()), &[("token", "nope")])
            .status,
        200
    );

    let (rows, next) = s.all_changes(0, 500);
    assert_eq!(
        triples(&rows),
        vec![
            t(ClientId, "cid-fd", "create"),
            t(AccessToken, "AT-fd-1", "import"),
            t(RefreshToken, "RT-fd-1", "import"),
            t(AccessToken, "AT-fd-1", "merge"),
            t(RefreshToken, "RT-fd-1", "merge"),
            t(AccessToken, "AT-fd-1", "refresh"),
            t(RefreshToken, "RT-fd-1", "refresh"),
            t(AuthorizationCode, "CODE-fd-1", "import"),
            t(AuthorizationCode, "CODE-fd-1", "exchange"),
            t(AccessToken, &at2, "revoke"),
            t(RefreshToken, &rt2, "revoke"),
            t(AccessToken, &cc, "revoke"),
        ]
    );
    let c = cursors(&rows);
    assert!(strictly_increasing(&c), "{c:?}");
    assert_eq!(next, *c.last().unwrap());
    // The same list, 3 at a time; `next` is the last listed cursor.
    let (paged, _) = s.all_changes(0, 3);
    assert_eq!(paged, rows);
    let page = s.changes(c[1], 2);
    assert_eq!(cursors(page["changes"].as_array().unwrap()), c[2..4]);
    assert_eq!(page["next"], c[3]);
    assert_eq!(page["oldest"], 1);
    // `head` is the newest committed cursor, whatever the page shows.
    assert_eq!(page["head"], next);
    // Past the end: nothing, and `next` stays.
    let page = s.changes(next, 10);
    assert_eq!(
        page,
        json!({"changes": [], "next": next, "oldest": 1, "head": next})
    );
    // Tokens never travel in the feed.
    let text = s.get_auth("/v1/changes?after=0&limit=5000", &svc()).text;
    for secret in [
        "AT-fd-1",
        "RT-fd-1",
        "CODE-fd-1",
        &cc,
        &at2,
        &rt2,
        "secret-fd",
    ] {
        assert!(!text.contains(secret), "{secret} in the feed");
    }
    // Every row has exactly the documented members.
    for r in &rows {
        let keys: BTreeSet<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, BTreeSet::from(["cursor", "kind", "hash", "op"]));
    }
    // And the page has exactly its documented members.
    let keys: BTreeSet<String> = s
        .changes(0, 5)
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["changes", "next", "oldest", "head"].map(String::from))
    );
}

fn bad_feed_requests_are_refused() {
    let s = Server::start();
    s.std_app("fq");
    for q in [
        "after=-1",
        "after=x",
        "after=1.5",
        "limit=0",
        "limit=5001",
        "limit=-3",
        "limit=ten",
        "after=1&after=2",
        "limit=1&limit=2",
    ] {
        s.get_auth(&format!("/v1/changes?{q}"), &svc())
            .assert_error(400, "invalid_request");
    }
    s.get("/v1/changes").assert_error(401, "unauthorized");
    s.get_auth("/v1/changes", &adm())
        .assert_error(401, "unauthorized");
    // Defaults: after=0, limit=500; and the largest limit.
    let r = s.get_auth("/v1/changes", &svc());
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["changes"].as_array().unwrap().len(), 1);
    assert_eq!(s.get_auth("/v1/changes?limit=5000", &svc()).status, 200);
    // A cursor this database never handed out: the caller's cache is not
    // from here.
    let r = s.get_auth("/v1/changes?after=999999", &svc());
    r.assert_error(410, "cursor_expired");
    assert_eq!(r.json["oldest"], 1);
    s.raw(
        "POST",
        "/v1/changes",
        Some(&svc()),
        "application/json",
        b"{}",
    )
    .assert_error(405, "method_not_allowed");
}

/// Old changes are pruned; a cursor before them gets 410 with the oldest
/// retained cursor, and `after=0` starts again from there.
fn retention_prunes_and_old_cursors_get_410() {
    let s = Server::start_with(&["--change-retention-secs", "1"]);
    s.std_app("fr");
    for i in 0..3 {
        s.import_access(&format!("AT-fr-{i}"), "cid-fr", json!({}));
    }
    let (rows, _) = s.all_changes(0, 500);
    assert_eq!(rows.len(), 4);
    let first = cursors(&rows)[0];
    let last = *cursors(&rows).last().unwrap();
    // Wait (bounded) for the pruner.
    let deadline = Instant::now() + Duration::from_secs(30);
    let page = loop {
        let page = s.changes(0, 500);
        if page["oldest"].as_i64().unwrap() > last {
            break page;
        }
        assert!(Instant::now() < deadline, "never pruned: {page}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(page["changes"], json!([]));
    let oldest = page["oldest"].as_i64().unwrap();
    // after=0 means oldest - 1: the next poll from there is valid.
    assert_eq!(page["next"], oldest - 1);
    let r = s.get_auth(&format!("/v1/changes?after={first}"), &svc());
    r.assert_error(410, "cursor_expired");
    assert_eq!(r.json["oldest"], oldest);
    assert_eq!(s.changes(oldest - 1, 10)["changes"], json!([]));
    // New changes come after the pruned ones.
    s.import_access("AT-fr-new", "cid-fr", json!({}));
    let page = s.changes(oldest - 1, 10);
    let rows = page["changes"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{page}");
    assert!(rows[0]["cursor"].as_i64().unwrap() > last);
    assert_eq!(rows[0]["hash"], h(TokenKind::AccessToken, "AT-fr-new"));
}

/// Writers on every replica (two on PostgreSQL, one on SQLite) while a
/// poller pages with a small limit: the poller sees every change exactly
/// once, in cursor order, and the same list as a read after the writes.
fn concurrent_writers_never_make_a_poller_skip() {
    let first = Arc::new(Server::start_with(&["--max-attributes", "2000"]));
    let servers: Vec<Arc<Server>> = match backend() {
        Backend::Sqlite => vec![Arc::clone(&first)],
        Backend::Postgres => vec![Arc::clone(&first), Arc::new(first.replica())],
    };
    first.std_app("fc");
    for i in 0..4 {
        first.import_access(&format!("AT-fc-{i}"), "cid-fc", json!({}));
    }
    let (setup, start) = first.all_changes(0, 500);
    assert_eq!(setup.len(), 5);

    const WRITES: usize = 400;
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let poller = {
        let (s, done) = (Arc::clone(&first), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut seen: Vec<Value> = Vec::new();
            let mut cursor = start;
            let mut finished_at = None;
            for _ in 0..100_000 {
                let page = s.changes(cursor, 7);
                let rows = page["changes"].as_array().unwrap();
                cursor = page["next"].as_i64().unwrap();
                seen.extend(rows.iter().cloned());
                if rows.is_empty() {
                    // One more empty page after the writers finish.
                    if finished_at.is_some() {
                        return seen;
                    }
                    if done.load(Ordering::SeqCst) {
                        finished_at = Some(cursor);
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            panic!("the poller did not finish");
        })
    };
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let s = Arc::clone(&servers[w % servers.len()]);
            let next = Arc::clone(&next);
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= WRITES {
                    break;
                }
                let token = format!("AT-fc-{}", i % 4);
                let r = s.merge(&token, &[(&format!("n{i}"), "v")]);
                assert_eq!(r.status, 200, "{}", r.text);
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let seen = poller.join().unwrap();
    let c = cursors(&seen);
    assert!(strictly_increasing(&c), "out of order or repeated");
    assert_eq!(
        seen.len(),
        WRITES,
        "one change per merge (no refresh tokens)"
    );
    let (after, _) = first.all_changes(start, 5000);
    assert_eq!(
        cursors(&after),
        c,
        "the poller missed changes that a later read lists"
    );
    // Every replica answers the same list.
    for s in &servers {
        assert_eq!(cursors(&s.all_changes(start, 1000).0), c);
    }
}

both_stores!(
    every_profile_change_is_listed,
    bad_feed_requests_are_refused,
    retention_prunes_and_old_cursors_get_410,
    concurrent_writers_never_make_a_poller_skip,
);
