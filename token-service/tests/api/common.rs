//! Harness: starts the real `token-service` binary on a free loopback port
//! with its store (a SQLite file in a temp dir, or a fresh database on the
//! test binary's PostgreSQL cluster, see pg.rs), and talks HTTP to it.
//!
//! Every store-using test runs against both stores: it is written once as
//! a plain function and listed in its module's `both_stores!`, which makes
//! `sqlite::<name>` and `postgres::<name>` tests of it. [`backend`] tells
//! the function which store it runs on.

use crate::pg;
use base64::Engine;
use serde_json::{json, Value};
use std::cell::Cell;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tempfile::TempDir;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

thread_local! {
    static BACKEND: Cell<Backend> = const { Cell::new(Backend::Sqlite) };
}

/// The store the running test uses (set per test thread by `both_stores!`).
pub fn backend() -> Backend {
    BACKEND.with(Cell::get)
}

pub fn with_backend(b: Backend, test: fn()) {
    BACKEND.with(|c| c.set(b));
    test();
}

/// A fresh `--db` value for the running test's store: a file in `dir`, or
/// the URL of a new database on the shared cluster.
pub fn fresh_db(dir: &std::path::Path) -> String {
    match backend() {
        Backend::Sqlite => dir.join("tokens.db").display().to_string(),
        Backend::Postgres => {
            let c = pg::shared();
            c.url(&c.create_db())
        }
    }
}

/// Whether this run starts every server with `--hash-tokens`
/// (`TS_HASH_TOKENS=1`; `make test` runs the suite both ways).
pub fn hashing() -> bool {
    std::env::var_os("TS_HASH_TOKENS").is_some_and(|v| v == "1")
}

/// What a profile shows for a token value the store keeps: the value, or
/// with hashing `""` (only the presented value can be shown).
pub fn kept(value: &str) -> &str {
    if hashing() {
        ""
    } else {
        value
    }
}

/// In a server's environment: start it without `--hash-tokens` even in
/// a hashed run (the in-place hashing test needs a plain store first).
pub const PLAIN_STORE_ENV: &str = "TS_PLAIN_STORE";

pub const SK: &str = "test-service-key-5f1c0a";
pub const AK: &str = "test-admin-key-9b27e4";
pub const BIN: &str = env!("CARGO_BIN_EXE_token-service");

pub fn svc() -> String {
    format!("Bearer {SK}")
}
pub fn adm() -> String {
    format!("Bearer {AK}")
}
pub fn basic(id: &str, secret: &str) -> String {
    let enc = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    format!("Basic {enc}")
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A token service process. Killed (SIGKILL) when dropped.
pub struct Server {
    child: Option<Child>,
    pub base: String,
    pub dir: TempDir,
    /// The `--db` value.
    pub db: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    starts: usize,
    agent: ureq::Agent,
}

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub text: String,
    /// The body parsed as JSON (`Null` when it is not JSON).
    pub json: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Asserts an error answer: status, `error` code, and a non-empty
    /// `error_description`.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "body: {}", self.text);
        assert_eq!(self.json["error"], code, "body: {}", self.text);
        assert!(
            self.json["error_description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "no error_description: {}",
            self.text
        );
    }
}

impl Server {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = fresh_db(dir.path());
        Self::start_on(dir, db, extra, &[])
    }

    /// A server on the given `--db` (logs in `dir`), with extra options
    /// and environment.
    pub fn start_on(dir: TempDir, db: String, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let args = extra.iter().map(|s| s.to_string()).collect();
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::spawn(dir, db, args, env, 0)
    }

    /// Another process on this server's database (PostgreSQL: a second
    /// replica), with the same options.
    pub fn replica(&self) -> Self {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        Self::start_on(tempfile::tempdir().unwrap(), self.db.clone(), &args, &env)
    }

    /// The command line of a start (without the listening address).
    fn command(db: &str, args: &[String], env: &[(String, String)]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args([
            "--listen",
            "127.0.0.1:0",
            "--log-level",
            "debug",
            "--db",
            db,
        ])
        .args(args)
        .args(
            (hashing() && !env.iter().any(|(k, _)| k == PLAIN_STORE_ENV))
                .then_some("--hash-tokens"),
        )
        .env("TOKEN_SERVICE_KEY", SK)
        .env("TOKEN_SERVICE_ADMIN_KEY", AK)
        .env_remove("TOKEN_SERVICE_DB")
        .env_remove("PGPASSWORD")
        .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    fn spawn(
        dir: TempDir,
        db: String,
        args: Vec<String>,
        env: Vec<(String, String)>,
        starts: usize,
    ) -> Self {
        let log_path = dir.path().join(format!("server-{starts}.log"));
        let log = File::create(&log_path).unwrap();
        let child = Self::command(&db, &args, &env)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let mut s = Server {
            child: Some(child),
            base: String::new(),
            dir,
            db,
            args,
            env,
            starts: starts + 1,
            agent,
        };
        s.base = format!("http://{}", s.wait_for_addr(&log_path));
        s.wait_healthy();
        s
    }

    fn wait_for_addr(&mut self, log_path: &PathBuf) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(log_path).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| l.contains("token service listening")) {
                let addr = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("addr="))
                    .unwrap();
                return addr.to_owned();
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("token-service exited ({status}) before listening:\n{text}");
            }
            assert!(Instant::now() < deadline, "no start line:\n{text}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = self.get("/healthz");
            if r.status == 200 {
                assert_eq!(r.json, json!({"status": "ok"}));
                return;
            }
            assert!(Instant::now() < deadline, "not healthy: {}", r.text);
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// The process id (to signal it).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGKILL, then start again on the same database.
    pub fn kill9_and_restart(mut self) -> Self {
        self.kill9();
        self.restart()
    }

    /// Starts the server killed by `kill9` again on the same database.
    pub fn start_again(self) -> Self {
        assert!(self.child.is_none(), "the server is still running");
        self.restart()
    }

    /// Starts the (stopped) server again on the same database.
    fn restart(mut self) -> Self {
        let (args, env, starts) = (
            std::mem::take(&mut self.args),
            std::mem::take(&mut self.env),
            self.starts,
        );
        let dir = self.take_dir();
        Self::spawn(dir, self.db.clone(), args, env, starts)
    }

    /// SIGTERM (graceful), wait for exit 0, then start again.
    pub fn stop_and_restart(mut self) -> Self {
        let mut child = self.child.take().unwrap();
        let st = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "log:\n{}", self.log());
        self.restart()
    }

    fn take_dir(&mut self) -> TempDir {
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    /// Everything every run of this server logged so far.
    pub fn log(&self) -> String {
        let mut out = String::new();
        for i in 0..self.starts {
            if let Ok(mut f) = OpenOptions::new()
                .read(true)
                .open(self.dir.path().join(format!("server-{i}.log")))
            {
                f.read_to_string(&mut out).unwrap();
            }
        }
        out
    }

    fn finish(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Resp {
        let mut r = r.unwrap();
        let status = r.status().as_u16();
        let headers = r
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        let text = r.body_mut().read_to_string().unwrap();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            text,
            json,
        }
    }

    pub fn get(&self, path: &str) -> Resp {
        Self::finish(self.agent.get(format!("{}{path}", self.base)).call())
    }

    /// GET with an Authorization header.
    pub fn get_auth(&self, path: &str, auth: &str) -> Resp {
        Self::finish(
            self.agent
                .get(format!("{}{path}", self.base))
                .header("Authorization", auth)
                .call(),
        )
    }

    /// GET with one header.
    pub fn get_with(&self, path: &str, name: &str, value: &str) -> Resp {
        Self::finish(
            self.agent
                .get(format!("{}{path}", self.base))
                .header(name, value)
                .call(),
        )
    }

    /// `GET /v1/changes` with the service key; asserts 200.
    #[track_caller]
    pub fn changes(&self, after: i64, limit: i64) -> Value {
        let r = self.get_auth(&format!("/v1/changes?after={after}&limit={limit}"), &svc());
        assert_eq!(r.status, 200, "{}", r.text);
        r.json
    }

    /// Every retained change after `after`, paging `limit` at a time;
    /// answers them and the last `next`.
    #[track_caller]
    pub fn all_changes(&self, after: i64, limit: i64) -> (Vec<Value>, i64) {
        let mut out = Vec::new();
        let mut cursor = after;
        for _ in 0..10_000 {
            let page = self.changes(cursor, limit);
            let rows = page["changes"].as_array().unwrap().clone();
            cursor = page["next"].as_i64().unwrap();
            if rows.is_empty() {
                return (out, cursor);
            }
            out.extend(rows);
        }
        panic!("the feed did not end within 10,000 pages");
    }

    /// The `host:port` the server listens on.
    pub fn addr(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    pub fn raw(
        &self,
        method: &str,
        path: &str,
        auth: Option<&str>,
        ctype: &str,
        body: &[u8],
    ) -> Resp {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "POST" => self.agent.post(&url),
            "PUT" => self.agent.put(&url),
            m => panic!("method {m}"),
        };
        let req = match auth {
            Some(a) => req.header("Authorization", a),
            None => req,
        };
        Self::finish(req.content_type(ctype).send(body))
    }

    /// Like `json`, but `None` when the request got no answer (the server
    /// is gone).
    pub fn try_json(&self, path: &str, auth: Option<&str>, body: &Value) -> Option<Resp> {
        let r = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Authorization", auth.unwrap_or(""))
            .content_type("application/json")
            .send(body.to_string().as_bytes());
        r.is_ok().then(|| Self::finish(r))
    }

    /// A merge that may get no answer.
    pub fn try_merge(&self, token: &str, attrs: &[(&str, &str)]) -> Option<Resp> {
        let attrs: Vec<Value> = attrs
            .iter()
            .map(|(n, v)| json!({"name": n, "value": v}))
            .collect();
        self.try_json(
            "/v1/accesstokens/attributes",
            Some(&svc()),
            &json!({"token": token, "attributes": attrs}),
        )
    }

    pub fn form(&self, path: &str, auth: Option<&str>, form: &[(&str, &str)]) -> Resp {
        let body = serde_urlencoded::to_string(form).unwrap();
        self.raw(
            "POST",
            path,
            auth,
            "application/x-www-form-urlencoded",
            body.as_bytes(),
        )
    }

    pub fn json(&self, path: &str, auth: Option<&str>, body: &Value) -> Resp {
        self.raw(
            "POST",
            path,
            auth,
            "application/json",
            body.to_string().as_bytes(),
        )
    }

    /// Introspection with the service key; asserts 200.
    #[track_caller]
    pub fn introspect(&self, token: &str, hint: Option<&str>) -> Value {
        let mut form = vec![("token", token)];
        if let Some(h) = hint {
            form.push(("token_type_hint", h));
        }
        let r = self.form("/oauth2/introspect", Some(&svc()), &form);
        assert_eq!(r.status, 200, "{}", r.text);
        r.json
    }

    /// Creates an app with the admin key; asserts 201 and returns the body.
    #[track_caller]
    pub fn create_app(&self, body: Value) -> Value {
        let r = self.json("/v1/apps", Some(&adm()), &body);
        assert_eq!(r.status, 201, "{}", r.text);
        r.json
    }

    /// The standard test app: client `cid-<name>`, secret `secret-<name>`.
    #[track_caller]
    pub fn std_app(&self, name: &str) -> Value {
        self.create_app(json!({
            "name": name,
            "developer_email": format!("{name}@example.com"),
            "developer_id": format!("dev-{name}"),
            "api_products": ["FreeProduct", "Premium"],
            "attributes": {"tier": "gold"},
            "redirect_uris": ["https://app.example.com/cb", "https://alt.example.com/cb"],
            "client_id": format!("cid-{name}"),
            "client_secret": format!("secret-{name}"),
        }))
    }

    /// Imports a token with the admin key; asserts 201.
    #[track_caller]
    pub fn import(&self, body: Value) {
        let r = self.json("/v1/tokens", Some(&adm()), &body);
        assert_eq!(r.status, 201, "{}", r.text);
        assert_eq!(r.json["type"], body["type"]);
        assert_eq!(r.json["client_id"], body["client_id"]);
        assert!(!r.text.contains(body["token"].as_str().unwrap()));
    }

    /// Imports an approved access token valid for an hour from now.
    #[track_caller]
    pub fn import_access(&self, token: &str, client_id: &str, attrs: Value) {
        self.import(json!({
            "type": "access_token", "token": token, "client_id": client_id,
            "scope": "READ", "status": "approved", "issued_at": now_ms(),
            "expires_in": 3600, "attributes": attrs,
        }));
    }

    /// Merge with the service key.
    pub fn merge(&self, token: &str, attrs: &[(&str, &str)]) -> Resp {
        let attrs: Vec<Value> = attrs
            .iter()
            .map(|(n, v)| json!({"name": n, "value": v}))
            .collect();
        self.json(
            "/v1/accesstokens/attributes",
            Some(&svc()),
            &json!({"token": token, "attributes": attrs}),
        )
    }

    pub fn attributes(&self, token: &str) -> Value {
        self.introspect(token, Some("access_token"))["profile"]["attributes"].clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Removes the fields that tick with the clock, to compare two answers.
pub fn without_clock(mut v: Value) -> Value {
    if let Some(p) = v.get_mut("profile").and_then(Value::as_object_mut) {
        p.remove("expires_in");
        p.remove("refresh_token_expires_in");
    }
    v
}
