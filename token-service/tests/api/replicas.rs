//! PostgreSQL only: several token-service processes on one database,
//! `kill -9` of one under load, passwords, and a database that is down,
//! stopped, or black-holed.

use crate::common::*;
use crate::pg::{self, Cluster, PW_ROLE, PW_SECRET};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn on_postgres(test: fn()) {
    with_backend(Backend::Postgres, test);
}

/// Three replicas starting at once on an empty database: one of them
/// applies the migrations, all serve.
#[test]
fn replicas_starting_together_migrate_once() {
    on_postgres(|| {
        let c = pg::shared();
        let db = c.url(&c.create_db());
        let starts: Vec<_> = (0..3)
            .map(|_| {
                let db = db.clone();
                std::thread::spawn(move || {
                    Server::start_on(tempfile::tempdir().unwrap(), db, &[], &[])
                })
            })
            .collect();
        let servers: Vec<Server> = starts.into_iter().map(|t| t.join().unwrap()).collect();
        let name = db.rsplit('/').next().unwrap();
        assert_eq!(
            c.psql(
                name,
                "SELECT version FROM schema_migrations ORDER BY version"
            ),
            "1\n2\n3\n4"
        );
        servers[0].std_app("mig");
        for s in &servers {
            assert_eq!(s.introspect("cid-mig", Some("client_id"))["active"], true);
        }
    });
}

/// 200 concurrent merges of distinct names on one token, split across two
/// replicas: all present after, on both.
#[test]
fn concurrent_merges_across_two_replicas_all_survive() {
    on_postgres(|| {
        let a = Arc::new(Server::start_with(&["--max-attributes", "256"]));
        let b = Arc::new(a.replica());
        a.std_app("rr");
        a.import_access("AT-rr-1", "cid-rr", json!({"base": "0"}));
        let next = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let s = Arc::clone(if t % 2 == 0 { &a } else { &b });
                let next = Arc::clone(&next);
                std::thread::spawn(move || loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= 200 {
                        break;
                    }
                    let (name, value) = (format!("attr{i:03}"), format!("value-{i}"));
                    let r = s.merge("AT-rr-1", &[(&name, &value)]);
                    assert_eq!(r.status, 200, "{}", r.text);
                    assert_eq!(r.json["profile"]["attributes"][&name], value.as_str());
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        for s in [&a, &b] {
            let attrs = s.attributes("AT-rr-1");
            let attrs = attrs.as_object().unwrap();
            assert_eq!(attrs.len(), 201);
            assert_eq!(attrs["base"], "0");
            for i in 0..200 {
                assert_eq!(attrs[&format!("attr{i:03}")], format!("value-{i}"));
            }
        }
        // For one name, the last write wins (here: sequential, alternating).
        for (i, s) in [&a, &b, &a, &b].iter().enumerate() {
            assert_eq!(s.merge("AT-rr-1", &[("same", &i.to_string())]).status, 200);
        }
        assert_eq!(b.attributes("AT-rr-1")["same"], "3");
        assert_eq!(a.attributes("AT-rr-1")["same"], "3");
    });
}

/// Writers send merges and grants straight to each of two replicas; one
/// replica is killed with SIGKILL mid-load. Every write that got its 200
/// (from either replica) is in the database after.
#[test]
fn kill_9_of_one_replica_under_write_load_loses_no_acknowledged_write() {
    on_postgres(|| {
        let mut a = Server::start_with(&["--max-attributes", "5000"]);
        a.std_app("kl");
        a.import_access("AT-kl-1", "cid-kl", json!({}));
        let b = Arc::new(a.replica());
        let a_base = a.base.clone();
        let acked: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
        let issued: Arc<Mutex<Vec<String>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        // Writers to A talk to A's address through their own agent.
        let writers: Vec<_> = (0..6)
            .map(|w| {
                let (acked, issued, stop) =
                    (Arc::clone(&acked), Arc::clone(&issued), Arc::clone(&stop));
                let target = if w % 2 == 0 {
                    Target::Base(a_base.clone())
                } else {
                    Target::Server(Arc::clone(&b))
                };
                std::thread::spawn(move || {
                    for i in 0..100_000 {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        let (name, value) = (format!("w{w}-{i}"), format!("v{i}"));
                        if let Some(r) = target.merge("AT-kl-1", &name, &value) {
                            if r.status == 200 {
                                acked.lock().unwrap().insert(name, value);
                            }
                        }
                        if i % 10 == 0 {
                            if let Some(t) = target.client_credentials("cid-kl", "secret-kl") {
                                issued.lock().unwrap().push(t);
                            }
                        }
                    }
                })
            })
            .collect();
        let wait_for = |n: usize| {
            let deadline = Instant::now() + Duration::from_secs(60);
            while acked.lock().unwrap().len() < n {
                assert!(
                    Instant::now() < deadline,
                    "writes are not being acknowledged"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        wait_for(150);
        a.kill9();
        let at_kill = acked.lock().unwrap().len();
        wait_for(at_kill + 100);
        stop.store(true, Ordering::SeqCst);
        for w in writers {
            w.join().unwrap();
        }
        let acked = acked.lock().unwrap().clone();
        let issued = issued.lock().unwrap().clone();
        assert!(
            acked.keys().any(|k| k.starts_with("w0-")),
            "A acknowledged nothing"
        );
        assert!(
            acked.keys().any(|k| k.starts_with("w1-")),
            "B acknowledged nothing"
        );
        // Through B, and through A started again.
        let a = Arc::new(a.start_again());
        for s in [&b, &a] {
            let attrs = s.attributes("AT-kl-1");
            let attrs = attrs.as_object().unwrap();
            for (k, v) in &acked {
                assert_eq!(attrs.get(k), Some(&Value::from(v.as_str())), "{k} lost");
            }
            for t in &issued {
                assert_eq!(s.introspect(t, None)["active"], true, "issued token lost");
            }
        }
    });
}

/// Where a writer sends: a base URL of its own (so that the killed
/// server's handle stays with the main thread), or a shared server.
enum Target {
    Base(String),
    Server(Arc<Server>),
}

impl Target {
    fn merge(&self, token: &str, name: &str, value: &str) -> Option<Resp> {
        match self {
            Target::Server(s) => s.try_merge(token, &[(name, value)]),
            Target::Base(base) => {
                let body = json!({"token": token, "attributes": [{"name": name, "value": value}]});
                raw_post(
                    base,
                    "/v1/accesstokens/attributes",
                    &svc(),
                    "application/json",
                    &body.to_string(),
                )
            }
        }
    }

    fn client_credentials(&self, id: &str, secret: &str) -> Option<String> {
        let body = "grant_type=client_credentials";
        let r = match self {
            Target::Server(s) => raw_post(
                &s.base,
                "/oauth2/token",
                &basic(id, secret),
                "application/x-www-form-urlencoded",
                body,
            ),
            Target::Base(base) => raw_post(
                base,
                "/oauth2/token",
                &basic(id, secret),
                "application/x-www-form-urlencoded",
                body,
            ),
        }?;
        (r.status == 200).then(|| r.json["access_token"].as_str().unwrap().to_owned())
    }
}

/// One POST with a short-lived agent; `None` when there is no answer.
fn raw_post(base: &str, path: &str, auth: &str, ctype: &str, body: &str) -> Option<Resp> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut r = agent
        .post(format!("{base}{path}"))
        .header("Authorization", auth)
        .content_type(ctype)
        .send(body.as_bytes())
        .ok()?;
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().ok()?;
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Some(Resp {
        status,
        headers: Vec::new(),
        text,
        json,
    })
}

/// Starts a process with `env` (and no keys in argv), waits for its start
/// line or its exit; answers (exit code if it exited, its output).
fn start_and_read(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let mut cmd = Command::new(BIN);
    cmd.args(["--listen", "127.0.0.1:0", "--log-level", "debug"])
        .args(args)
        .env("TOKEN_SERVICE_KEY", SK)
        .env("TOKEN_SERVICE_ADMIN_KEY", AK)
        .env_remove("TOKEN_SERVICE_DB")
        .env_remove("PGPASSWORD")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(dir.path().join("err")).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let read = || {
        std::fs::read_to_string(&log).unwrap_or_default()
            + &std::fs::read_to_string(dir.path().join("err")).unwrap_or_default()
    };
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return (st.code(), read());
        }
        let text = read();
        if let Some(line) = text.lines().find(|l| l.contains("token service listening")) {
            // Prove it serves: a write through the store.
            let addr = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("addr="))
                .unwrap()
                .to_owned();
            let r = raw_post(
                &format!("http://{addr}"),
                "/v1/apps",
                &adm(),
                "application/json",
                r#"{"name": "pw", "developer_email": "pw@example.com"}"#,
            )
            .unwrap();
            assert_eq!(r.status, 201, "{}", r.text);
            child.kill().unwrap();
            child.wait().unwrap();
            return (None, read());
        }
        assert!(Instant::now() < deadline, "no start line:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A password-protected role: the password in the URL, in PGPASSWORD, or
/// in TOKEN_SERVICE_DB works, and never shows in the log, in `--help`, or
/// in the refusal of a wrong one.
#[test]
fn a_database_password_never_reaches_the_log() {
    on_postgres(|| {
        let c = pg::shared();
        let name = c.create_db();
        let host = format!("127.0.0.1:{}", c.port);
        let with_pw = format!("postgres://{PW_ROLE}:{PW_SECRET}@{host}/{name}");
        let without = format!("postgres://{PW_ROLE}@{host}/{name}");

        let (code, log) = start_and_read(&["--db", &with_pw], &[]);
        assert_eq!(code, None, "{log}");
        assert!(
            log.contains(&format!("db=postgres://{PW_ROLE}:***@{host}/{name}")),
            "{log}"
        );
        let (code, log2) = start_and_read(&["--db", &without], &[("PGPASSWORD", PW_SECRET)]);
        assert_eq!(code, None, "{log2}");
        let (code, log3) = start_and_read(&[], &[("TOKEN_SERVICE_DB", &with_pw)]);
        assert_eq!(code, None, "{log3}");
        assert!(log3.contains(":***@"), "{log3}");
        // Without the password, or with a wrong one: exit 1.
        let (code, log4) = start_and_read(&["--db", &without, "--db-start-wait-secs", "3"], &[]);
        assert_eq!(code, Some(1), "{log4}");
        let wrong = format!("postgres://{PW_ROLE}:wrong-pw-4471@{host}/{name}");
        let (code, log5) = start_and_read(&["--db", &wrong], &[]);
        assert_eq!(code, Some(1), "{log5}");
        assert!(log5.contains("password authentication failed"), "{log5}");
        assert!(!log5.contains("wrong-pw-4471"), "{log5}");
        for l in [&log, &log2, &log3, &log4, &log5] {
            assert!(!l.contains(PW_SECRET), "the password is in the log:\n{l}");
        }
        // --help names the variable and hides its value.
        let out = Command::new(BIN)
            .arg("--help")
            .env("TOKEN_SERVICE_DB", &with_pw)
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains("TOKEN_SERVICE_DB"), "{help}");
        assert!(help.contains("PGPASSWORD"), "{help}");
        assert!(!help.contains(PW_SECRET), "{help}");
        let apps = c.psql(&name, "SELECT count(*) FROM apps");
        assert_eq!(apps, "3");
    });
}

/// A database nobody answers on: the start waits --db-start-wait-secs, then
/// exits with 1 saying so.
#[test]
fn an_unreachable_database_at_start_exits_1() {
    on_postgres(|| {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("postgres://postgres:pw-unused-93@127.0.0.1:{port}/x");
        let (code, log) = start_and_read(&["--db", &url, "--db-start-wait-secs", "1"], &[]);
        assert_eq!(code, Some(1), "{log}");
        assert!(log.contains("cannot open the store"), "{log}");
        assert!(log.contains("cannot reach"), "{log}");
        assert!(!log.contains("pw-unused-93"), "{log}");
    });
}

/// Every endpoint that needs the store, with what it needs.
fn store_endpoints(s: &Server) -> Vec<(&'static str, Resp)> {
    let merge = json!({"token": "AT-out-1", "attributes": [{"name": "x", "value": "1"}]});
    vec![
        (
            "introspect",
            s.form("/oauth2/introspect", Some(&svc()), &[("token", "AT-out-1")]),
        ),
        (
            "merge",
            s.json("/v1/accesstokens/attributes", Some(&svc()), &merge),
        ),
        (
            "token",
            s.form(
                "/oauth2/token",
                Some(&basic("cid-out", "secret-out")),
                &[("grant_type", "client_credentials")],
            ),
        ),
        (
            "revoke",
            s.form("/oauth2/revoke", Some(&adm()), &[("token", "AT-out-2")]),
        ),
        (
            "apps",
            s.json(
                "/v1/apps",
                Some(&adm()),
                &json!({"name": "n", "developer_email": "e"}),
            ),
        ),
        (
            "tokens",
            s.json(
                "/v1/tokens",
                Some(&adm()),
                &json!({"type": "access_token", "token": "AT-out-9", "client_id": "cid-out",
                        "status": "approved", "issued_at": now_ms(), "expires_in": 60}),
            ),
        ),
        ("changes", s.get_auth("/v1/changes", &svc())),
        (
            "ext_authz",
            s.get_with(
                "/v1/ext_authz/x?access_token=AT-out-1",
                "x-token-service-key",
                SK,
            ),
        ),
    ]
}

fn assert_unavailable(s: &Server, what: &str) {
    for (name, r) in store_endpoints(s) {
        assert_eq!(r.status, 503, "{what}: {name}: {}", r.text);
        assert_eq!(
            r.json["error"], "store_unavailable",
            "{what}: {name}: {}",
            r.text
        );
        assert_eq!(r.header("retry-after"), Some("1"), "{what}: {name}");
    }
    let h = s.get("/healthz");
    assert_eq!(h.status, 503, "{what}: healthz: {}", h.text);
    assert_eq!(h.json["status"], "unavailable", "{}", h.text);
    assert_eq!(h.json["error"], "store_unavailable", "{}", h.text);
}

/// Waits (bounded) for /healthz to say ready again, then checks the
/// service answers and writes.
fn assert_recovers(s: &Server, pid: u32, round: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let h = s.get("/healthz");
        if h.status == 200 {
            break;
        }
        assert_eq!(h.status, 503, "{}", h.text);
        assert!(Instant::now() < deadline, "never ready again:\n{}", s.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(s.pid(), pid, "the same process");
    assert_eq!(s.introspect("AT-out-1", None)["active"], true);
    let name = format!("after-{round}");
    let r = s.merge("AT-out-1", &[(&name, "1")]);
    assert_eq!(r.status, 200, "{}", r.text);
    let r = s.form("/oauth2/revoke", Some(&adm()), &[("token", "AT-out-2")]);
    assert_eq!(r.status, 200, "{}", r.text);
}

fn outage_server(cluster: &Cluster) -> Server {
    let name = cluster.create_db();
    let s = Server::start_on(
        tempfile::tempdir().unwrap(),
        cluster.url(&name),
        &["--db-timeout-ms", "1000", "--db-pool-size", "4"],
        &[],
    );
    s.std_app("out");
    s.import_access("AT-out-1", "cid-out", json!({}));
    s.import_access("AT-out-2", "cid-out", json!({}));
    // Fill the pool with idle connections that the outage will break.
    for _ in 0..8 {
        s.introspect("AT-out-1", None);
    }
    s
}

/// The database is stopped (fast shutdown): every endpoint that needs it
/// answers 503 store_unavailable and /healthz is not ready; started again,
/// the same process serves again. Twice.
#[test]
fn database_stopped_then_started_the_service_recovers_without_a_restart() {
    on_postgres(|| {
        let cluster = Cluster::start();
        let s = outage_server(&cluster);
        let pid = s.pid();
        for round in 0..2 {
            cluster.stop_server();
            assert_unavailable(&s, "stopped");
            cluster.start_server();
            assert_recovers(&s, pid, round);
        }
        let log = s.log();
        assert!(log.contains("store unavailable"), "{log}");
        assert_eq!(log.matches("token service listening").count(), 1);
    });
}

/// The database stops answering without closing anything (its processes
/// are frozen: packets are accepted, never answered): every call still
/// answers 503 within its deadline, never hangs; thawed, the service
/// serves again.
#[test]
fn a_black_holed_database_gives_503_not_a_hang() {
    on_postgres(|| {
        let cluster = Cluster::start();
        let s = outage_server(&cluster);
        let pid = s.pid();
        cluster.freeze();
        assert_unavailable(&s, "frozen");
        // Repeated: the broken connections were dropped, new ones time out.
        assert_unavailable(&s, "frozen again");
        cluster.thaw();
        assert_recovers(&s, pid, 0);
    });
}

/// `sslmode=require`: TLS to a server that refuses plaintext, its
/// certificate verified against PGSSLROOTCERT; refused when the
/// certificate cannot be verified, and plaintext is refused by the server.
#[test]
fn tls_to_the_database_with_sslmode_require() {
    on_postgres(|| {
        let (cluster, ca) = Cluster::start_tls();
        let name = cluster.create_db();
        let plain = cluster.url(&name);
        let tls = format!("{plain}?sslmode=require");
        let ca = ca.display().to_string();
        let (code, log) = start_and_read(&["--db", &tls], &[("PGSSLROOTCERT", &ca)]);
        assert_eq!(code, None, "{log}");
        assert!(log.contains("sslmode=require"), "{log}");
        assert_eq!(cluster.psql(&name, "SELECT count(*) FROM apps"), "1");
        // The server takes no plaintext: the start fails at once.
        let (code, log) = start_and_read(&["--db", &plain], &[]);
        assert_eq!(code, Some(1), "{log}");
        assert!(log.contains("no encryption"), "{log}");
        // The system's CAs did not sign the test certificate.
        let (code, log) = start_and_read(
            &["--db", &tls, "--db-start-wait-secs", "1"],
            &[("PGSSLROOTCERT", "")],
        );
        assert_eq!(code, Some(1), "{log}");
        assert!(log.to_lowercase().contains("certificate"), "{log}");
    });
}

/// Requests that race on two replicas for one thing get one decision: one
/// refresh of a refresh token succeeds, one app gets a client_id, one
/// import gets a value (as an access token or as a code, not both).
#[test]
fn racing_replicas_decide_once() {
    on_postgres(|| {
        let a = Arc::new(Server::start());
        let b = Arc::new(a.replica());
        a.std_app("race");
        let now = now_ms();
        for round in 0..5 {
            let rt = format!("RT-race-{round}");
            a.import(json!({
                "type": "access_token", "token": format!("AT-race-{round}"),
                "client_id": "cid-race", "status": "approved", "issued_at": now,
                "expires_in": 3600, "refresh_token": rt,
            }));
            let race = |f: Arc<dyn Fn(&Server) -> u16 + Send + Sync>| -> Vec<u16> {
                let threads: Vec<_> = (0..6)
                    .map(|i| {
                        let s = Arc::clone(if i % 2 == 0 { &a } else { &b });
                        let f = Arc::clone(&f);
                        std::thread::spawn(move || f(&s))
                    })
                    .collect();
                let mut out: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
                out.sort();
                out
            };
            let rt2 = rt.clone();
            let refreshes = race(Arc::new(move |s: &Server| {
                s.form(
                    "/oauth2/token",
                    Some(&basic("cid-race", "secret-race")),
                    &[("grant_type", "refresh_token"), ("refresh_token", &rt2)],
                )
                .status
            }));
            assert_eq!(refreshes, [200, 400, 400, 400, 400, 400], "round {round}");
            let cid = format!("cid-race-app-{round}");
            let apps = race(Arc::new(move |s: &Server| {
                s.json(
                    "/v1/apps",
                    Some(&adm()),
                    &json!({"name": "r", "developer_email": "e", "client_id": cid}),
                )
                .status
            }));
            assert_eq!(apps, [201, 409, 409, 409, 409, 409], "round {round}");
            let value = format!("VALUE-race-{round}");
            let imports = race(Arc::new(move |s: &Server| {
                static N: AtomicUsize = AtomicUsize::new(0);
                let kind = if N.fetch_add(1, Ordering::SeqCst) % 2 == 0 {
                    "access_token"
                } else {
                    "authorization_code"
                };
                s.json(
                    "/v1/tokens",
                    Some(&adm()),
                    &json!({"type": kind, "token": value, "client_id": "cid-race",
                            "status": "approved", "issued_at": now_ms(), "expires_in": 60}),
                )
                .status
            }));
            assert_eq!(imports, [201, 409, 409, 409, 409, 409], "round {round}");
        }
        // Each refresh issued exactly one new pair: 5 imports + 5 refreshes.
        let (rows, _) = a.all_changes(0, 5000);
        let refresh_rows = rows.iter().filter(|r| r["op"] == "refresh").count();
        assert_eq!(refresh_rows, 10, "one refresh (two rows) per round");
    });
}
