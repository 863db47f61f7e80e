use crate::common::*;
use crate::pg;
use serde_json::{json, Value};
use std::process::{Command, Stdio};

/// Did anything create a schema in the store `db` names?
fn store_touched(db: &str) -> bool {
    match backend() {
        Backend::Sqlite => std::path::Path::new(db).exists(),
        Backend::Postgres => {
            let name = db.rsplit('/').next().unwrap();
            pg::shared().psql(
                name,
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
            ) != "0"
        }
    }
}

fn run_without(env: &[(&str, &str)], args: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_db(dir.path());
    let mut cmd = Command::new(BIN);
    cmd.args(["--listen", "127.0.0.1:0", "--db", &db])
        .args(args)
        .env_remove("TOKEN_SERVICE_KEY")
        .env_remove("TOKEN_SERVICE_ADMIN_KEY")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!store_touched(&db), "a refused start created the store");
    (out.status.code(), text)
}

fn refuses_to_start_without_keys() {
    for env in [
        vec![],
        vec![("TOKEN_SERVICE_KEY", "k1")],
        vec![("TOKEN_SERVICE_ADMIN_KEY", "k2")],
        vec![("TOKEN_SERVICE_KEY", ""), ("TOKEN_SERVICE_ADMIN_KEY", "k2")],
    ] {
        let (code, text) = run_without(&env, &[]);
        assert_eq!(code, Some(2), "{env:?}: {text}");
        assert!(text.contains("TOKEN_SERVICE_KEY"), "{text}");
        assert!(text.contains("TOKEN_SERVICE_ADMIN_KEY"), "{text}");
        assert!(text.contains("--dev"), "{text}");
    }
    let (code, text) = run_without(
        &[
            ("TOKEN_SERVICE_KEY", "same"),
            ("TOKEN_SERVICE_ADMIN_KEY", "same"),
        ],
        &[],
    );
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("must differ"), "{text}");
    let (code, _) = run_without(&[], &["--access-token-lifetime", "0", "--dev"]);
    assert_eq!(code, Some(2));
}

#[test]
fn help_documents_options_and_env() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for opt in [
        "--listen",
        "--db",
        "--org-name",
        "--dev",
        "--access-token-lifetime",
        "--refresh-token-lifetime",
        "--max-attributes",
        "--log-level",
        "--log-format",
        "TOKEN_SERVICE_KEY",
        "TOKEN_SERVICE_ADMIN_KEY",
        "--read-connections",
        "--db-pool-size",
        "--db-timeout-ms",
        "--db-start-wait-secs",
        "--change-retention-secs",
        "postgres://",
        "TOKEN_SERVICE_DB",
        "PGPASSWORD",
        "PGSSLROOTCERT",
    ] {
        assert!(help.contains(opt), "--help lacks {opt}");
    }
}

fn dev_mode_uses_dev_keys_and_warns() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let db = fresh_db(dir.path());
    let mut child = Command::new(BIN)
        .args(["--dev", "--listen", "127.0.0.1:0", "--db", &db])
        .env_remove("TOKEN_SERVICE_KEY")
        .env_remove("TOKEN_SERVICE_ADMIN_KEY")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let addr = loop {
        let text = std::fs::read_to_string(&log).unwrap();
        if let Some(l) = text.lines().find(|l| l.contains("token service listening")) {
            break l
                .split_whitespace()
                .find_map(|w| w.strip_prefix("addr="))
                .unwrap()
                .to_owned();
        }
        assert!(std::time::Instant::now() < deadline, "{text}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let status = |key: &str| {
        agent
            .post(format!("http://{addr}/oauth2/introspect"))
            .header("Authorization", format!("Bearer {key}"))
            .send_form([("token", "x")])
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(status("dev-service-key"), 200);
    assert_eq!(status("dev-admin-key"), 401);
    child.kill().unwrap();
    child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("WARN"), "{text}");
    assert!(text.contains("DEVELOPMENT MODE"), "{text}");
}

fn start_line_names_address_and_store() {
    let s = Server::start();
    let log = s.log();
    let line = log
        .lines()
        .find(|l| l.contains("token service listening"))
        .unwrap();
    assert!(line.contains(&format!("addr={}", s.base.trim_start_matches("http://"))));
    assert!(line.contains(&format!("db={}", s.db)), "{line}");
    assert!(store_touched(&s.db));
    match backend() {
        Backend::Sqlite => assert!(line.contains("store=\"sqlite"), "{line}"),
        Backend::Postgres => assert!(line.contains("store=\"postgres\""), "{line}"),
    }
    assert!(line.contains("schema_version=4"), "{line}");
    assert!(
        line.contains(&format!("hash_tokens={}", hashing())),
        "{line}"
    );
}

fn healthz_unknown_routes_and_methods() {
    let s = Server::start();
    let r = s.get("/healthz");
    assert_eq!(r.status, 200);
    assert_eq!(r.json, json!({"status": "ok"}));
    s.get("/v1/apps/cid-x").assert_error(404, "not_found");
    s.get("/oauth2/introspect")
        .assert_error(405, "method_not_allowed");
    s.raw("PUT", "/v1/apps", Some(&adm()), "application/json", b"{}")
        .assert_error(405, "method_not_allowed");
}

fn oversize_bodies_are_refused_with_413() {
    let s = Server::start();
    s.std_app("big");
    s.import_access("AT-big-1", "cid-big", json!({"keep": "1"}));
    let limit = 64 * 1024;
    // Exactly at the limit: accepted (and the token is simply unknown).
    let at_limit = format!("token={}", "a".repeat(limit - "token=".len()));
    assert_eq!(at_limit.len(), limit);
    let r = s.raw(
        "POST",
        "/oauth2/introspect",
        Some(&svc()),
        "application/x-www-form-urlencoded",
        at_limit.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json, json!({"active": false}));
    let over = format!("{at_limit}a");
    s.raw(
        "POST",
        "/oauth2/introspect",
        Some(&svc()),
        "application/x-www-form-urlencoded",
        over.as_bytes(),
    )
    .assert_error(413, "request_too_large");
    // A merge that is too large writes nothing.
    let big = json!({"token": "AT-big-1", "attributes": (0..40)
        .map(|i| json!({"name": format!("n{i}"), "value": "v".repeat(2000)}))
        .collect::<Vec<Value>>()});
    assert!(big.to_string().len() > limit);
    s.json("/v1/accesstokens/attributes", Some(&svc()), &big)
        .assert_error(413, "request_too_large");
    assert_eq!(s.attributes("AT-big-1"), json!({"keep": "1"}));
    let app = json!({"name": "n", "developer_email": "e", "client_id": "cid-huge",
                     "api_products": vec!["p".repeat(100); 700]});
    s.json("/v1/apps", Some(&adm()), &app)
        .assert_error(413, "request_too_large");
    assert_eq!(
        s.introspect("cid-huge", Some("client_id")),
        json!({"active": false})
    );
    s.form(
        "/oauth2/token",
        Some(&basic("cid-big", "secret-big")),
        &[
            ("grant_type", "client_credentials"),
            ("scope", &"s".repeat(limit)),
        ],
    )
    .assert_error(413, "request_too_large");
}

/// Everything that was acknowledged before a graceful stop is there after.
fn restart_keeps_acknowledged_writes() {
    let s = Server::start();
    s.std_app("rs");
    s.import_access("AT-rs-1", "cid-rs", json!({"a": "1"}));
    assert_eq!(s.merge("AT-rs-1", &[("b", "2")]).status, 200);
    let r = s.form(
        "/oauth2/token",
        Some(&basic("cid-rs", "secret-rs")),
        &[("grant_type", "client_credentials"), ("scope", "S")],
    );
    let issued = r.json["access_token"].as_str().unwrap().to_owned();
    s.import_access("AT-rs-2", "cid-rs", json!({}));
    let r = s.form("/oauth2/revoke", Some(&adm()), &[("token", "AT-rs-2")]);
    assert_eq!(r.status, 200);
    let before: Vec<Value> = ["AT-rs-1", &issued, "AT-rs-2"]
        .iter()
        .map(|t| without_clock(s.introspect(t, None)))
        .collect();
    let client = s.introspect("cid-rs", Some("client_id"));

    let s = s.stop_and_restart();
    let after: Vec<Value> = ["AT-rs-1", &issued, "AT-rs-2"]
        .iter()
        .map(|t| without_clock(s.introspect(t, None)))
        .collect();
    assert_eq!(before, after);
    assert_eq!(
        after[0]["profile"]["attributes"],
        json!({"a": "1", "b": "2"})
    );
    assert_eq!(after[1]["active"], true);
    assert_eq!(after[2]["profile"]["status"], "revoked");
    assert_eq!(s.introspect("cid-rs", Some("client_id")), client);
    // The schema is not recreated: a duplicate is still a duplicate.
    let r = s.json(
        "/v1/apps",
        Some(&adm()),
        &json!({"name": "x", "developer_email": "e", "client_id": "cid-rs"}),
    );
    r.assert_error(409, "client_exists");
}

/// SIGKILL right after acknowledged writes loses none of them.
fn kill_9_loses_no_acknowledged_write() {
    let s = Server::start();
    s.std_app("k9");
    s.import_access("AT-k9-1", "cid-k9", json!({}));
    let mut issued = Vec::new();
    for i in 0..40 {
        let name = format!("n{i}");
        let r = s.merge("AT-k9-1", &[(&name, &i.to_string())]);
        assert_eq!(r.status, 200);
        if i % 4 == 0 {
            let r = s.form(
                "/oauth2/token",
                Some(&basic("cid-k9", "secret-k9")),
                &[("grant_type", "client_credentials")],
            );
            assert_eq!(r.status, 200);
            issued.push(r.json["access_token"].as_str().unwrap().to_owned());
        }
    }
    let r = s.form("/oauth2/revoke", Some(&adm()), &[("token", &issued[0])]);
    assert_eq!(r.status, 200);
    let s = s.kill9_and_restart();
    let attrs = s.attributes("AT-k9-1");
    assert_eq!(attrs.as_object().unwrap().len(), 40, "{attrs}");
    for i in 0..40 {
        assert_eq!(attrs[format!("n{i}")], i.to_string());
    }
    for (i, t) in issued.iter().enumerate() {
        let v = s.introspect(t, None);
        assert_eq!(v["active"], i != 0, "token {i}: {v}");
        assert_eq!(
            v["profile"]["status"],
            if i == 0 { "revoked" } else { "approved" }
        );
    }
}

/// No full token, secret or key value in the log, at debug level, after
/// exercising every endpoint (errors included).
fn secrets_never_reach_the_log() {
    let s = Server::start();
    s.std_app("lg");
    let now = now_ms();
    s.import(json!({
        "type": "access_token", "token": "AT-lg-imported-9f8e7d", "client_id": "cid-lg",
        "status": "approved", "issued_at": now, "expires_in": 600,
        "refresh_token": "RT-lg-imported-1a2b3c", "attributes": {"x": "attr-value-77"},
    }));
    s.import(json!({
        "type": "authorization_code", "token": "CODE-lg-imported-4d5e6f", "client_id": "cid-lg",
        "issued_at": now, "expires_in": 600,
    }));
    let auth = basic("cid-lg", "secret-lg");
    let mut secrets: Vec<String> = vec![
        "AT-lg-imported-9f8e7d".into(),
        "RT-lg-imported-1a2b3c".into(),
        "CODE-lg-imported-4d5e6f".into(),
        "secret-lg".into(),
        "attr-value-77".into(),
        SK.into(),
        AK.into(),
    ];
    for t in &secrets[..3] {
        s.introspect(t, None);
    }
    assert_eq!(
        s.merge("AT-lg-imported-9f8e7d", &[("y", "attr-value-88")])
            .status,
        200
    );
    secrets.push("attr-value-88".into());
    let r = s.form(
        "/oauth2/token",
        Some(&auth),
        &[("grant_type", "client_credentials")],
    );
    secrets.push(r.json["access_token"].as_str().unwrap().to_owned());
    let r = s.form(
        "/oauth2/token",
        Some(&auth),
        &[
            ("grant_type", "authorization_code"),
            ("code", "CODE-lg-imported-4d5e6f"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    secrets.push(r.json["access_token"].as_str().unwrap().to_owned());
    let rt = r.json["refresh_token"].as_str().unwrap().to_owned();
    secrets.push(rt.clone());
    let r = s.form(
        "/oauth2/token",
        Some(&auth),
        &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    secrets.push(r.json["access_token"].as_str().unwrap().to_owned());
    secrets.push(r.json["refresh_token"].as_str().unwrap().to_owned());
    // Refusals that carry secrets.
    s.form(
        "/oauth2/token",
        Some(&auth),
        &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
    );
    s.merge("AT-lg-unknown-0a0b0c", &[("z", "1")]);
    s.form(
        "/oauth2/token",
        Some(&basic("cid-lg", "wrong-secret-xyz")),
        &[("grant_type", "client_credentials")],
    );
    s.form(
        "/oauth2/introspect",
        Some("Bearer wrong-key-qwerty"),
        &[("token", "AT-lg-imported-9f8e7d")],
    );
    s.get("/oauth2/introspect?token=AT-lg-in-a-url-112233");
    secrets.extend(
        [
            "AT-lg-unknown-0a0b0c",
            "wrong-secret-xyz",
            "wrong-key-qwerty",
            "AT-lg-in-a-url-112233",
        ]
        .map(String::from),
    );
    s.form(
        "/oauth2/revoke",
        Some(&auth),
        &[("token", "AT-lg-imported-9f8e7d")],
    );
    s.form(
        "/oauth2/revoke",
        Some(&adm()),
        &[("token", "RT-lg-imported-1a2b3c")],
    );

    let log = s.log();
    assert!(log.contains("token issued"), "{log}");
    assert!(log.contains("AT-l…"), "the log shows token prefixes: {log}");
    assert!(log.lines().count() > 20, "{log}");
    for secret in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "{secret} is in the log:\n{log}"
        );
    }
}

fn json_log_format() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let db = fresh_db(dir.path());
    let mut child = Command::new(BIN)
        .args([
            "--log-format",
            "json",
            "--listen",
            "127.0.0.1:0",
            "--db",
            &db,
        ])
        .env("TOKEN_SERVICE_KEY", SK)
        .env("TOKEN_SERVICE_ADMIN_KEY", AK)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let line: Value = loop {
        let text = std::fs::read_to_string(&log).unwrap();
        if let Some(l) = text.lines().find(|l| l.contains("token service listening")) {
            break serde_json::from_str(l).unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "{text}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["message"], "token service listening");
    assert!(line["addr"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(line["db"], db);
}

both_stores!(
    refuses_to_start_without_keys,
    dev_mode_uses_dev_keys_and_warns,
    start_line_names_address_and_store,
    healthz_unknown_routes_and_methods,
    oversize_bodies_are_refused_with_413,
    restart_keeps_acknowledged_writes,
    kill_9_loses_no_acknowledged_write,
    secrets_never_reach_the_log,
    json_log_format,
);
