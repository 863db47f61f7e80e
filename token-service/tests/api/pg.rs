//! A real PostgreSQL server for the tests, started and stopped by them: the
//! Debian/Ubuntu server binaries (`/usr/lib/postgresql/<version>/bin`, or
//! `PG_BIN`), `initdb` into a temp dir, a free port on 127.0.0.1, trust
//! authentication on 127.0.0.1 except for the role `ts_pw`, which needs its
//! password (scram-sha-256). The server refuses to run as root: as root, it
//! runs as the `postgres` user.
//!
//! One cluster is shared by the whole test binary ([`shared`], one database
//! per test); tests that stop or freeze the server start their own
//! ([`Cluster::start`]). A watcher process stops each cluster and removes
//! its directory when the test binary exits, however it exits.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The role that needs a password, and its password.
pub const PW_ROLE: &str = "ts_pw";
pub const PW_SECRET: &str = "pw-Zq8vK3mT1xR7";

static SHARED: OnceLock<Cluster> = OnceLock::new();
static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

/// The cluster every test of this binary shares.
pub fn shared() -> &'static Cluster {
    SHARED.get_or_init(Cluster::start)
}

pub struct Cluster {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
    child: Mutex<Option<Child>>,
}

fn pg_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("PG_BIN") {
        return PathBuf::from(p);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "no PostgreSQL server in /usr/lib/postgresql/*/bin: run `make setup` \
             (it runs token-service/tests/pg-setup.sh, which installs it) or set PG_BIN"
        ),
    }
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// The (uid, gid) the server runs as: `postgres` when we are root.
fn server_user() -> Option<(u32, u32)> {
    if !is_root() {
        return None;
    }
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "running as root needs a `postgres` user for the PostgreSQL server"
        );
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    Some((id("-u"), id("-g")))
}

fn as_server_user(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    if let Some((uid, gid)) = server_user() {
        cmd.uid(uid).gid(gid);
    }
    cmd.env("LC_ALL", "C").env_remove("PGPASSWORD")
}

/// A port for a PostgreSQL cluster: below the kernel's ephemeral range
/// (32768-60999), where no outgoing connection can take it between this
/// probe and the server's bind, and never the same one twice in this binary
/// (the e2e tests' `free_port` explains the race this avoids). This binary
/// walks 32,000-32,767, apart from the e2e tests' ports.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 32_000;
    const SPAN: u32 = 768;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7_919) % SPAN;
    for _ in 0..SPAN {
        let port = (LOW + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {LOW}..{}", LOW + SPAN)
}

impl Cluster {
    /// initdb, start, wait until it answers.
    pub fn start() -> Cluster {
        Self::start_with(false)
    }

    /// A cluster that only takes TLS connections on 127.0.0.1 (`hostssl`;
    /// `hostnossl` is rejected), with a server certificate for 127.0.0.1
    /// signed by a test CA; answers it and the CA's PEM file.
    pub fn start_tls() -> (Cluster, PathBuf) {
        let c = Self::start_with(true);
        let ca = c.dir.join("ca.pem");
        (c, ca)
    }

    fn start_with(tls: bool) -> Cluster {
        let bin = pg_bin();
        let dir = tempfile::Builder::new()
            .prefix("ts-pg-")
            .tempdir()
            .unwrap()
            .keep();
        let data = dir.join("data");
        std::fs::create_dir(dir.join("sock")).unwrap();
        if let Some((uid, gid)) = server_user() {
            for p in [&dir, &dir.join("sock")] {
                std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
            }
        }
        let out = as_server_user(&mut Command::new(bin.join("initdb")))
            .args(["-D"])
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let hba = if tls {
            make_certs(&dir, &data);
            "local all all trust\n\
             hostssl all all 127.0.0.1/32 trust\n\
             hostnossl all all 127.0.0.1/32 reject\n"
                .to_owned()
        } else {
            format!(
                "local all all trust\n\
                 host all {PW_ROLE} 127.0.0.1/32 scram-sha-256\n\
                 host all all 127.0.0.1/32 trust\n"
            )
        };
        std::fs::write(data.join("pg_hba.conf"), hba).unwrap();
        let c = Cluster {
            port: free_port(),
            dir,
            bin,
            child: Mutex::new(None),
        };
        c.watch_for_exit();
        c.start_server();
        c.psql(
            "postgres",
            &format!("CREATE ROLE {PW_ROLE} LOGIN PASSWORD '{PW_SECRET}' CREATEDB"),
        );
        c
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// A shell that outlives this process: once the test binary is gone it
    /// stops the server (SIGQUIT: immediate) and removes the directory.
    fn watch_for_exit(&self) {
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; \
             f='{data}/postmaster.pid'; [ -f \"$f\" ] && kill -QUIT \"$(head -n 1 \"$f\")\" 2>/dev/null; \
             sleep 2; rm -rf '{dir}'",
            pid = std::process::id(),
            data = self.data().display(),
            dir = self.dir.display()
        );
        // Never waited for on purpose: it must outlive this process.
        #[allow(clippy::zombie_processes)]
        let _watcher = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
    }

    /// Starts the server (again) on the same port and waits for it.
    pub fn start_server(&self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .unwrap();
        if let Some((uid, gid)) = server_user() {
            std::os::unix::fs::chown(self.dir.join("server.log"), Some(uid), Some(gid)).unwrap();
        }
        let child = as_server_user(&mut Command::new(self.bin.join("postgres")))
            .arg("-D")
            .arg(self.data())
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(self.dir.join("sock"))
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                // Test data: durability against an OS crash is not tested here.
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=300",
                "-c",
                "shared_buffers=32MB",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        *self.child.lock().unwrap() = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .unwrap()
                .success();
            if ok {
                return;
            }
            if let Some(st) = self
                .child
                .lock()
                .unwrap()
                .as_mut()
                .unwrap()
                .try_wait()
                .unwrap()
            {
                panic!("postgres exited ({st}):\n{}", self.server_log());
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not start:\n{}",
                self.server_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// Fast shutdown (SIGINT), waiting for the server to exit.
    pub fn stop_server(&self) {
        let mut guard = self.child.lock().unwrap();
        if let Some(mut child) = guard.take() {
            signal(&[child.id()], "INT");
            child.wait().unwrap();
        }
    }

    /// The server's processes: the postmaster and its children.
    fn processes(&self) -> Vec<u32> {
        let guard = self.child.lock().unwrap();
        let Some(pm) = guard.as_ref().map(Child::id) else {
            return Vec::new();
        };
        let mut out = vec![pm];
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            // pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if ppid == Some(pm) {
                out.push(pid);
            }
        }
        out
    }

    /// Freezes every server process (SIGSTOP): connections and queries are
    /// accepted by the kernel and never answered, a black-holed database.
    pub fn freeze(&self) {
        signal(&self.processes(), "STOP");
    }

    pub fn thaw(&self) {
        signal(&self.processes(), "CONT");
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// A fresh, empty database.
    pub fn create_db(&self) -> String {
        let name = format!("t{}", NEXT_DB.fetch_add(1, Ordering::SeqCst));
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.psql(
            &name,
            &format!(
                "GRANT ALL ON SCHEMA public TO {PW_ROLE}; ALTER DATABASE {name} OWNER TO {PW_ROLE}"
            ),
        );
        name
    }

    /// Runs SQL as the superuser; answers psql's unaligned output.
    #[track_caller]
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", db, "-c", sql])
            .env_remove("PGPASSWORD")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (the command) is needed for the TLS test");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test CA (`ca.pem` in `dir`) and a server certificate for 127.0.0.1
/// signed by it, installed in the data directory with `ssl = on`.
fn make_certs(dir: &std::path::Path, data: &std::path::Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut args = vec![
        "req",
        "-x509",
        "-days",
        "2",
        "-subj",
        "/CN=token-service test CA",
    ];
    args.extend(ec);
    args.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    openssl(dir, &args);
    let mut args = vec!["req", "-subj", "/CN=127.0.0.1"];
    args.extend(ec);
    args.extend(["-keyout", "server.key", "-out", "server.csr"]);
    openssl(dir, &args);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ],
    );
    for f in ["server.crt", "server.key"] {
        std::fs::copy(dir.join(f), data.join(f)).unwrap();
        if let Some((uid, gid)) = server_user() {
            std::os::unix::fs::chown(data.join(f), Some(uid), Some(gid)).unwrap();
        }
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        data.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let mut conf = std::fs::OpenOptions::new()
        .append(true)
        .open(data.join("postgresql.conf"))
        .unwrap();
    use std::io::Write;
    writeln!(
        conf,
        "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'"
    )
    .unwrap();
}

fn signal(pids: &[u32], sig: &str) {
    if pids.is_empty() {
        return;
    }
    let mut cmd = Command::new("kill");
    cmd.arg(format!("-{sig}"));
    for p in pids {
        cmd.arg(p.to_string());
    }
    // A child that just exited is not an error.
    let _ = cmd.stderr(Stdio::null()).status();
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // A server left frozen must be thawed to stop.
        self.thaw();
        if let Some(mut child) = self.child.lock().unwrap().take() {
            signal(&[child.id()], "QUIT");
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
