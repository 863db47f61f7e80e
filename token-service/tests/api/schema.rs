//! What the start does with the database it is pointed at: a read-only
//! PostgreSQL (a hot standby), a migration the server refuses, a SQLite
//! file that is not the service's own (docs/token-service.md, "Schema
//! migrations").

use crate::common::*;
use crate::pg;
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs the service on `db` until it exits (it must: the start is refused
/// within 30 s); answers its exit code and its output.
pub(crate) fn refused_start(db: &str) -> (Option<i32>, String) {
    let mut child = Command::new(BIN)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--db-start-wait-secs",
            "5",
            "--db",
            db,
        ])
        .env("TOKEN_SERVICE_KEY", SK)
        .env("TOKEN_SERVICE_ADMIN_KEY", AK)
        .env_remove("TOKEN_SERVICE_DB")
        .env_remove("PGPASSWORD")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "the start was not refused:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (out.status.code(), text)
}

/// The one error line of a refused start.
#[track_caller]
pub(crate) fn one_error_line(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected:\n{text}");
    assert!(lines[0].contains("cannot open the store"), "{text}");
    lines[0].to_owned()
}

/// A replica on a read-only PostgreSQL database whose schema is current
/// (a hot standby still at the primary's address; here
/// `default_transaction_read_only = on`): it starts, serves reads, and
/// answers every write with 503 store_unavailable, writing nothing.
#[test]
fn a_read_only_postgres_with_the_current_schema_serves_reads() {
    with_backend(Backend::Postgres, || {
        let c = pg::shared();
        let name = c.create_db();
        let db = c.url(&name);
        let s = Server::start_on(tempfile::tempdir().unwrap(), db.clone(), &[], &[]);
        s.std_app("ro");
        s.import_access("AT-ro-1", "cid-ro", json!({"a": "1"}));
        drop(s);
        c.psql(
            "postgres",
            &format!("ALTER DATABASE {name} SET default_transaction_read_only = on"),
        );
        let before = c.psql(&name, "SELECT count(*) FROM changes");

        let s = Server::start_on(tempfile::tempdir().unwrap(), db, &[], &[]);
        assert!(s.log().contains("read-only"), "{}", s.log());
        let v = s.introspect("AT-ro-1", None);
        assert_eq!(v["active"], true, "{v}");
        assert_eq!(v["profile"]["attributes"]["a"], "1");
        assert_eq!(s.introspect("cid-ro", Some("client_id"))["active"], true);
        assert_eq!(s.get_auth("/v1/changes", &svc()).status, 200);

        s.merge("AT-ro-1", &[("a", "2")])
            .assert_error(503, "store_unavailable");
        s.form("/oauth2/revoke", Some(&adm()), &[("token", "AT-ro-1")])
            .assert_error(503, "store_unavailable");
        s.form(
            "/oauth2/token",
            Some(&basic("cid-ro", "secret-ro")),
            &[("grant_type", "client_credentials")],
        )
        .assert_error(503, "store_unavailable");
        s.json(
            "/v1/apps",
            Some(&adm()),
            &json!({"name": "n", "developer_email": "e@example.com"}),
        )
        .assert_error(503, "store_unavailable");
        let r = s.json(
            "/v1/tokens",
            Some(&adm()),
            &json!({"type": "access_token", "token": "AT-ro-2", "client_id": "cid-ro",
                    "status": "approved", "issued_at": now_ms(), "expires_in": 60}),
        );
        r.assert_error(503, "store_unavailable");
        assert_eq!(r.header("retry-after"), Some("1"));

        // Nothing changed.
        let v = s.introspect("AT-ro-1", None);
        assert_eq!(v["active"], true, "{v}");
        assert_eq!(v["profile"]["attributes"]["a"], "1");
        assert_eq!(s.introspect("AT-ro-2", None)["active"], false);
        assert_eq!(c.psql(&name, "SELECT count(*) FROM apps"), "1");
        assert_eq!(c.psql(&name, "SELECT count(*) FROM access_tokens"), "1");
        assert_eq!(c.psql(&name, "SELECT count(*) FROM changes"), before);
    });
}

/// A read-only PostgreSQL database whose schema is not current cannot be
/// migrated: the start is refused (exit 1) with one line saying why, and
/// nothing is created.
#[test]
fn a_read_only_postgres_with_an_old_schema_is_refused() {
    with_backend(Backend::Postgres, || {
        let c = pg::shared();
        let name = c.create_db();
        c.psql(
            "postgres",
            &format!("ALTER DATABASE {name} SET default_transaction_read_only = on"),
        );
        let (code, text) = refused_start(&c.url(&name));
        assert_eq!(code, Some(1), "{text}");
        let line = one_error_line(&text);
        assert!(line.contains("read-only"), "{line}");
        assert!(line.contains("schema version is 0"), "{line}");
        assert_eq!(
            c.psql(
                &name,
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
            ),
            "0"
        );
    });
}

/// A migration the server refuses names the server's message and SQLSTATE
/// (here: a table of another application is in the way).
#[test]
fn a_failed_postgres_migration_gives_the_servers_message() {
    with_backend(Backend::Postgres, || {
        let c = pg::shared();
        let name = c.create_db();
        c.psql(&name, "CREATE TABLE changes (x int)");
        let (code, text) = refused_start(&c.url(&name));
        assert_eq!(code, Some(1), "{text}");
        let line = one_error_line(&text);
        assert!(line.contains("migration 2"), "{line}");
        assert!(
            line.contains(r#"relation \"changes\" already exists"#)
                || line.contains(r#"relation "changes" already exists"#),
            "{line}"
        );
        assert!(line.contains("42P07"), "{line}");
        // The failed migration rolled back: version 1 is not recorded.
        assert_eq!(
            c.psql(&name, "SELECT to_regclass('schema_migrations') IS NULL"),
            "t"
        );
    });
}

/// A SQLite file that is neither empty nor the service's own (another
/// application's database, or not a database at all) is refused with one
/// line and left byte for byte as it was: no WAL switch, no table, no
/// `-wal`/`-shm` file beside it.
#[test]
fn a_foreign_sqlite_file_is_refused_and_left_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other-app.db");
    {
        let c = rusqlite::Connection::open(&other).unwrap();
        c.execute_batch(
            "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);
             INSERT INTO users (name) VALUES ('ada'), ('grace');
             CREATE TABLE schema_migrations (version TEXT PRIMARY KEY);",
        )
        .unwrap();
    }
    let text_file = dir.path().join("notes.txt");
    std::fs::write(&text_file, "not a database\n".repeat(300)).unwrap();
    for (path, why) in [
        (&other, "is not a token-service database"),
        (&text_file, "cannot read"),
    ] {
        let before = std::fs::read(path).unwrap();
        let (code, text) = refused_start(&path.display().to_string());
        assert_eq!(code, Some(1), "{text}");
        let line = one_error_line(&text);
        assert!(line.contains(why), "{line}");
        assert!(!line.contains("CREATE TABLE"), "{line}");
        assert_eq!(
            std::fs::read(path).unwrap(),
            before,
            "{} changed",
            path.display()
        );
    }
    let mut files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["notes.txt", "other-app.db"]);
}

/// An empty file and the service's own file both start.
#[test]
fn an_empty_file_and_the_services_own_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.db");
    std::fs::write(&path, b"").unwrap();
    let s = Server::start_on(dir, path.display().to_string(), &[], &[]);
    s.std_app("own");
    let s = s.stop_and_restart();
    assert_eq!(s.introspect("cid-own", Some("client_id"))["active"], true);
}
