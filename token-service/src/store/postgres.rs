//! The shared store: one PostgreSQL database that any number of
//! token-service replicas use at once, through `tokio-postgres` and a
//! `deadpool-postgres` pool per replica.
//!
//! - **Bounded waits.** Every store call has one deadline (`--db-timeout-ms`)
//!   covering the wait for a pooled connection, a new connection and every
//!   statement; the server also gets `statement_timeout` and `lock_timeout`.
//!   A call past its deadline answers 503 `store_unavailable` and its
//!   connection is closed, never put back in the pool.
//! - **Recovery.** A connection that broke is dropped by the pool; the next
//!   call opens a new one, so the service recovers without a restart.
//! - **Writes** are one transaction each (READ COMMITTED). Rows a write
//!   decides on are locked first (`SELECT ... FOR UPDATE`), so a check
//!   ("approved and unexpired") holds at the moment of the write on every
//!   replica. Imports lock the token values they check (transaction-level
//!   advisory locks keyed by the value's hash).
//! - **The change feed.** The feed rows of a write are its transaction's last
//!   statement, after `pg_advisory_xact_lock(FEED_LOCK)`: the cursor (a
//!   sequence) is taken while holding a lock that is only released at commit,
//!   so cursor order is commit order on every replica, and a poller that has
//!   seen cursor N has seen (or will never see) every cursor below N.

use super::{
    access_changes, app_changes, check_exchange, check_mergeable, check_refresh, check_revoker,
    client_changes, client_exists, code_changes, issued, merged, new_access, revoke_order,
    token_exists, unknown_client, Caller, Change, ChangeRow, FeedRead, Issued, Kind, Lifetimes,
    Lookup, Op, Revoked, Statuses, FRESH_VALUE_TRIES, SCHEMA_VERSION,
};
use super::{Hashing, HASHING_SETTING};
use crate::error::{Error, Result};
use crate::products::{unknown_product, ApiProduct, SubscriptionStatus};
use crate::util::{now_ms, random_alnum};
use crate::views::{self, AccessToken, App, Attributes, AuthCode, RefreshToken};
use deadpool_postgres::{
    GenericClient, Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{timeout_at, Instant};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::error::SqlState;
use tokio_postgres::{NoTls, Row};
use tracing::{info, warn};

/// The advisory lock (one bigint key) that orders the change feed.
const FEED_LOCK: i64 = 0x6f61_7574_6866_6565; // "oauthfee"
/// The advisory lock that serializes schema migrations.
const MIGRATION_LOCK: i64 = 0x6f61_7574_686d_6967; // "oauthmig"
/// The first key of the two-key advisory locks on token values (imports).
const VALUE_LOCK_SPACE: i32 = 0x6f61_7476; // "oatv"

/// `MIGRATIONS[i]` makes schema version `i + 1` (the same versions as the
/// SQLite store's).
const MIGRATIONS: [&str; 4] = [SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4];

const SCHEMA_V1: &str = "
CREATE TABLE apps (
    app_id          TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    developer_email TEXT NOT NULL,
    developer_id    TEXT NOT NULL,
    api_products    TEXT NOT NULL DEFAULT '[]',
    attributes      TEXT NOT NULL DEFAULT '{}',
    redirect_uris   TEXT NOT NULL DEFAULT '[]',
    client_id       TEXT NOT NULL UNIQUE,
    client_secret   TEXT NOT NULL,
    created_at      BIGINT NOT NULL
);
CREATE TABLE access_tokens (
    token                    TEXT PRIMARY KEY,
    client_id                TEXT NOT NULL REFERENCES apps(client_id),
    scope                    TEXT NOT NULL,
    status                   TEXT NOT NULL CHECK (status IN ('approved', 'revoked')),
    issued_at                BIGINT NOT NULL,
    expires_at               BIGINT NOT NULL,
    refresh_token            TEXT UNIQUE,
    refresh_token_status     TEXT CHECK (refresh_token_status IN ('approved', 'revoked')),
    refresh_token_issued_at  BIGINT,
    refresh_token_expires_at BIGINT,
    refresh_count            BIGINT NOT NULL DEFAULT 0,
    CHECK ((refresh_token IS NULL) = (refresh_token_status IS NULL)
       AND (refresh_token IS NULL) = (refresh_token_issued_at IS NULL)
       AND (refresh_token IS NULL) = (refresh_token_expires_at IS NULL))
);
CREATE TABLE token_attributes (
    token TEXT NOT NULL REFERENCES access_tokens(token),
    name  TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (token, name)
);
CREATE TABLE authorization_codes (
    code         TEXT PRIMARY KEY,
    client_id    TEXT NOT NULL REFERENCES apps(client_id),
    redirect_uri TEXT,
    scope        TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('approved', 'revoked')),
    issued_at    BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE TABLE code_attributes (
    code  TEXT NOT NULL REFERENCES authorization_codes(code),
    name  TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (code, name)
);
";

/// The change feed. `at_ms` is the database's clock, so that pruning does
/// not depend on the replicas' clocks agreeing.
const SCHEMA_V2: &str = "
CREATE SEQUENCE change_cursor;
CREATE TABLE changes (
    id    BIGINT PRIMARY KEY DEFAULT nextval('change_cursor'),
    kind  TEXT NOT NULL,
    hash  TEXT NOT NULL,
    op    TEXT NOT NULL,
    at_ms BIGINT NOT NULL DEFAULT (extract(epoch FROM clock_timestamp()) * 1000)::bigint
);
ALTER SEQUENCE change_cursor OWNED BY changes.id;
CREATE INDEX changes_at ON changes (at_ms);
CREATE TABLE change_horizon (
    one            INT PRIMARY KEY CHECK (one = 1),
    pruned_through BIGINT NOT NULL
);
INSERT INTO change_horizon (one, pruned_through) VALUES (1, 0);
";

/// Tokens hashed at rest (`--hash-tokens`): the feed fingerprints kept
/// beside the hashes, and the store's settings (`token_hashing`).
const SCHEMA_V3: &str = "
ALTER TABLE access_tokens ADD COLUMN token_fp TEXT;
ALTER TABLE access_tokens ADD COLUMN refresh_token_fp TEXT;
ALTER TABLE authorization_codes ADD COLUMN code_fp TEXT;
CREATE TABLE store_settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

/// API products and the apps' subscriptions (as the SQLite store's
/// version 4).
const SCHEMA_V4: &str = "
CREATE TABLE api_products (
    name       TEXT PRIMARY KEY,
    definition TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE app_products (
    client_id TEXT NOT NULL REFERENCES apps(client_id),
    product   TEXT NOT NULL,
    status    TEXT NOT NULL CHECK (status IN ('approved', 'pending', 'revoked')),
    position  BIGINT NOT NULL,
    PRIMARY KEY (client_id, product)
);
CREATE INDEX app_products_product ON app_products (product);
CREATE INDEX access_tokens_client ON access_tokens (client_id);
ALTER TABLE apps ADD COLUMN status TEXT NOT NULL DEFAULT 'approved'
    CHECK (status IN ('approved', 'revoked'));
ALTER TABLE apps ADD COLUMN key_status TEXT NOT NULL DEFAULT 'approved'
    CHECK (key_status IN ('approved', 'revoked'));
ALTER TABLE apps ADD COLUMN developer_status TEXT NOT NULL DEFAULT 'active'
    CHECK (developer_status IN ('active', 'inactive'));
INSERT INTO app_products (client_id, product, status, position)
    SELECT a.client_id, j.value, 'approved', j.n - 1
    FROM apps a, jsonb_array_elements_text(a.api_products::jsonb) WITH ORDINALITY AS j(value, n)
    ON CONFLICT DO NOTHING;
";

const ACCESS_COLS: &str = "t.token, t.client_id, t.scope, t.status, t.issued_at, t.expires_at, \
     t.refresh_token, t.refresh_token_status, t.refresh_token_issued_at, \
     t.refresh_token_expires_at, t.refresh_count, t.token_fp, t.refresh_token_fp";
/// An app, with its approved subscriptions (their names, and the
/// definitions of those that have one), in its order.
const APP_COLS: &str = "a.app_id, a.name, a.developer_email, a.developer_id, \
     (SELECT COALESCE(json_agg(s.product ORDER BY s.position), '[]')::text FROM app_products s \
      WHERE s.client_id = a.client_id AND s.status = 'approved'), \
     a.attributes, a.redirect_uris, a.client_id, a.client_secret, \
     (SELECT COALESCE(json_agg(p.definition::json ORDER BY s.position), '[]')::text \
      FROM app_products s JOIN api_products p ON p.name = s.product \
      WHERE s.client_id = a.client_id AND s.status = 'approved'), \
     a.status, a.key_status, a.developer_status";
const CODE_COLS: &str =
    "c.code, c.client_id, c.redirect_uri, c.scope, c.status, c.issued_at, c.expires_at, c.code_fp";
const N_ACCESS: usize = 13;
const N_APP: usize = 13;
const N_CODE: usize = 8;

/// How to reach the database and how long to wait for it.
#[derive(Debug, Clone)]
pub struct Options {
    pub pool_size: usize,
    /// The deadline of one store call.
    pub timeout: Duration,
    /// How long the start waits for the database before giving up.
    pub start_wait: Duration,
    /// `--hash-tokens`: keep tokens hashed (hashing a plain store in place).
    pub hash_tokens: bool,
}

pub struct Postgres {
    pool: Pool,
    timeout: Duration,
    display: String,
    hashing: Hashing,
}

/// A URL for a log line: user, hosts, ports, database and sslmode, never the
/// password (`:***` says that one is set).
pub fn describe(cfg: &tokio_postgres::Config) -> String {
    let ports = cfg.get_ports();
    let hosts: Vec<String> = cfg
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match h {
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(path) => format!("[{}]:{port}", path.display()),
            }
        })
        .collect();
    let user = cfg.get_user().unwrap_or("");
    let password = if cfg.get_password().is_some() {
        ":***"
    } else {
        ""
    };
    let at = if user.is_empty() && password.is_empty() {
        ""
    } else {
        "@"
    };
    let ssl = match cfg.get_ssl_mode() {
        SslMode::Require => "?sslmode=require",
        SslMode::Disable => "?sslmode=disable",
        _ => "",
    };
    format!(
        "postgres://{user}{password}{at}{}/{}{ssl}",
        hosts.join(","),
        cfg.get_dbname().unwrap_or("")
    )
}

/// Parses the URL and applies the service's settings: the password from
/// `PGPASSWORD` when the URL has none, timeouts, keepalives, and the
/// server-side statement and lock timeouts.
pub fn config(url: &str, timeout: Duration) -> std::result::Result<tokio_postgres::Config, String> {
    // tokio-postgres' parse errors name the bad option, never its value.
    let mut cfg: tokio_postgres::Config = url
        .parse()
        .map_err(|e| format!("invalid PostgreSQL URL: {e}"))?;
    if cfg.get_password().is_none() {
        if let Some(pw) = std::env::var_os("PGPASSWORD").filter(|p| !p.is_empty()) {
            cfg.password(pw.as_encoded_bytes());
        }
    }
    if cfg.get_user().is_none() {
        return Err("the PostgreSQL URL names no user (postgres://USER@HOST:PORT/DB)".into());
    }
    if cfg.get_hosts().is_empty() {
        return Err("the PostgreSQL URL names no host".into());
    }
    let ms = timeout.as_millis().max(1);
    let mut options = cfg.get_options().unwrap_or("").to_owned();
    options.push_str(&format!(
        " -c statement_timeout={ms} -c lock_timeout={ms} \
         -c idle_in_transaction_session_timeout={}",
        ms.saturating_mul(2)
    ));
    cfg.options(options.trim_start());
    if cfg.get_application_name().is_none() {
        cfg.application_name("token-service");
    }
    cfg.connect_timeout(timeout)
        .tcp_user_timeout(timeout.max(Duration::from_secs(1)))
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30))
        .keepalives_interval(Duration::from_secs(5))
        .keepalives_retries(3);
    Ok(cfg)
}

/// The TLS connector for `sslmode=require`: rustls with the CA certificates
/// of `PGSSLROOTCERT` (a PEM file), else the system's. The server's
/// certificate and host name are always verified.
fn tls(
    cfg: &tokio_postgres::Config,
) -> std::result::Result<Option<tokio_postgres_rustls::MakeRustlsConnect>, String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    if cfg.get_ssl_mode() != SslMode::Require {
        return Ok(None);
    }
    let mut roots = rustls::RootCertStore::empty();
    match std::env::var_os("PGSSLROOTCERT").filter(|p| !p.is_empty()) {
        Some(path) => {
            let shown = std::path::Path::new(&path).display().to_string();
            for cert in CertificateDer::pem_file_iter(&path)
                .map_err(|e| format!("PGSSLROOTCERT {shown}: {e}"))?
            {
                let cert = cert.map_err(|e| format!("PGSSLROOTCERT {shown}: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("PGSSLROOTCERT {shown}: {e}"))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                // A system certificate rustls cannot use is skipped.
                let _ = roots.add(cert);
            }
        }
    }
    if roots.is_empty() {
        return Err(
            "sslmode=require: no CA certificate to verify the server with (set PGSSLROOTCERT)"
                .into(),
        );
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(tokio_postgres_rustls::MakeRustlsConnect::new(client)))
}

/// Is this database error worth retrying later (the database is down,
/// starting, shutting down, overloaded, or too slow) rather than a bug?
fn transient_state(code: &SqlState) -> bool {
    let c = code.code();
    c.starts_with("08") // connection exception
        || c.starts_with("53") // insufficient resources (too many connections)
        || c.starts_with("58") // system error (I/O)
        || matches!(
            c,
            "57P01" // admin_shutdown
                | "57P02" // crash_shutdown
                | "57P03" // cannot_connect_now (starting up)
                | "57014" // query_canceled (statement_timeout)
                | "55P03" // lock_not_available (lock_timeout)
                | "25006" // read_only_sql_transaction (a standby)
                | "40001" // serialization_failure
                | "40P01" // deadlock_detected
        )
}

/// An error for a log line: a server error's severity, message and
/// SQLSTATE (never its detail, which may quote row values such as a
/// token), else the error and its causes.
fn pg_text(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {} ({})", db.severity(), db.message(), db.code().code());
    }
    let mut out = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// A tokio-postgres error as the service's error: 503 when the database is
/// unreachable or cannot answer now, 500 otherwise.
fn pg_error(e: &tokio_postgres::Error) -> Error {
    let text = pg_text(e);
    match e.code() {
        Some(code) if transient_state(code) => Error::unavailable(format_args!("postgres: {text}")),
        Some(_) => Error::internal(format_args!("postgres: {text}")),
        // No SQLSTATE: the connection broke, timed out or could not be made.
        None => Error::unavailable(format_args!("postgres: {text}")),
    }
}

/// A pool error for a log line.
fn pool_text(e: &PoolError) -> String {
    match e {
        PoolError::Backend(e) => pg_text(e),
        other => other.to_string(),
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        pg_error(&e)
    }
}

fn pool_error(e: PoolError) -> Error {
    match e {
        PoolError::Backend(e) => pg_error(&e),
        PoolError::Timeout(t) => Error::unavailable(format_args!(
            "postgres: timed out waiting for a connection ({t:?})"
        )),
        other => Error::unavailable(format_args!("postgres pool: {}", pool_text(&other))),
    }
}

fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// Errors a start should not wait out: a wrong password, an unknown role or
/// database, a bad option.
fn fatal_at_start(e: &PoolError) -> bool {
    let PoolError::Backend(e) = e else {
        return false;
    };
    match e.code() {
        Some(c) => {
            let c = c.code();
            c.starts_with("28") || c == "3D000" || c.starts_with("42") || c == "22023"
        }
        // tokio-postgres' own refusals: a password the server asks for and
        // the URL lacks, a failed SCRAM exchange, a bad option.
        None => {
            let text = e.to_string();
            [
                "invalid configuration",
                "authentication error",
                "invalid connection string",
            ]
            .iter()
            .any(|p| text.starts_with(p))
        }
    }
}

impl Postgres {
    /// Connects (waiting up to `start_wait` for the database), applies the
    /// missing migrations and answers the store.
    pub async fn open(url: &str, opts: &Options) -> std::result::Result<Self, String> {
        let cfg = config(url, opts.timeout)?;
        let display = describe(&cfg);
        let mgr_cfg = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let mgr = match tls(&cfg)? {
            Some(t) => Manager::from_config(cfg, t, mgr_cfg),
            None => Manager::from_config(cfg, NoTls, mgr_cfg),
        };
        let pool = Pool::builder(mgr)
            .max_size(opts.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(opts.timeout))
            .create_timeout(Some(opts.timeout))
            .recycle_timeout(Some(opts.timeout))
            .build()
            .map_err(|e| format!("cannot build the connection pool: {e}"))?;
        let mut store = Postgres {
            pool,
            timeout: opts.timeout,
            display,
            hashing: Hashing::Plain,
        };
        let give_up = Instant::now() + opts.start_wait;
        let mut tries = 0u32;
        loop {
            tries += 1;
            let err = match store.pool.get().await {
                Ok(mut c) => {
                    let migrated = timeout_at(
                        Instant::now() + opts.timeout * 4,
                        migrate(&mut c, opts.hash_tokens),
                    )
                    .await;
                    if let Ok(Ok((_, hashing))) = &migrated {
                        store.hashing = *hashing;
                    }
                    match migrated.map(|r| r.map(|(schema, _)| schema)) {
                        Ok(Ok(Schema::Ready)) => {
                            info!(db = %store.display, schema_version = SCHEMA_VERSION, "schema ready");
                            return Ok(store);
                        }
                        Ok(Ok(Schema::ReadOnly)) => {
                            warn!(
                                db = %store.display,
                                schema_version = SCHEMA_VERSION,
                                "the database is read-only (a standby?): serving reads; writes \
                                 answer 503 store_unavailable until it accepts writes"
                            );
                            return Ok(store);
                        }
                        Ok(Err(e)) => return Err(format!("schema migration failed: {e}")),
                        Err(_) => {
                            let _ = Object::take(c);
                            "the schema migration timed out".to_owned()
                        }
                    }
                }
                Err(e) if fatal_at_start(&e) => {
                    return Err(format!(
                        "cannot connect to {}: {}",
                        store.display,
                        pool_text(&e)
                    ))
                }
                Err(e) => pool_text(&e),
            };
            if Instant::now() >= give_up {
                return Err(format!(
                    "cannot reach {} (tried {tries} times): {err}",
                    store.display
                ));
            }
            if tries == 1 || tries % 10 == 0 {
                warn!(db = %store.display, error = %err, "database not reachable yet; retrying");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    pub fn hashing(&self) -> Hashing {
        self.hashing
    }

    pub fn display(&self) -> &str {
        &self.display
    }

    /// A pooled connection, within the call's deadline.
    async fn conn(&self, deadline: Instant) -> Result<Object> {
        match timeout_at(deadline, self.pool.get()).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(pool_error(e)),
            Err(_) => Err(Error::unavailable(
                "postgres: timed out waiting for a connection",
            )),
        }
    }

    /// The end of a call: a connection whose call timed out or failed for
    /// want of the database is closed, not reused.
    fn finish<T>(
        &self,
        c: Object,
        r: std::result::Result<Result<T>, tokio::time::error::Elapsed>,
    ) -> Result<T> {
        match r {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                if e.is_unavailable() {
                    drop(Object::take(c));
                }
                Err(e)
            }
            Err(_) => {
                drop(Object::take(c));
                Err(Error::unavailable(format_args!(
                    "postgres: no answer within {} ms",
                    self.timeout.as_millis()
                )))
            }
        }
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.timeout
    }

    pub async fn health(&self) -> Result<()> {
        let d = self.deadline();
        let c = self.conn(d).await?;
        let r = timeout_at(d, async {
            let one: i32 = c.query_one("SELECT 1", &[]).await?.try_get(0)?;
            if one == 1 {
                Ok(())
            } else {
                Err(Error::internal("SELECT 1 returned something else"))
            }
        })
        .await;
        self.finish(c, r)
    }

    pub async fn introspect(&self, value: &str, lookup: Lookup, org: &str) -> Result<Value> {
        let d = self.deadline();
        let c = self.conn(d).await?;
        let r = timeout_at(d, async {
            let now = now_ms();
            let found = match lookup {
                Lookup::Token(Kind::Access) => access_view(&c, value, false, org, now).await?,
                Lookup::Token(Kind::Refresh) => access_view(&c, value, true, org, now).await?,
                Lookup::Token(Kind::Code) => code_view(&c, value, now).await?,
                Lookup::Client => app_by_client(&c, value)
                    .await?
                    .map(|a| views::client_introspection(&a)),
                Lookup::Any => match access_view(&c, value, false, org, now).await? {
                    Some(v) => Some(v),
                    None => access_view(&c, value, true, org, now).await?,
                },
            };
            Ok(found.unwrap_or_else(views::inactive))
        })
        .await;
        self.finish(c, r)
    }

    pub async fn app_by_client(&self, client_id: &str) -> Result<Option<App>> {
        let d = self.deadline();
        let c = self.conn(d).await?;
        let r = timeout_at(d, app_by_client(&c, client_id)).await;
        self.finish(c, r)
    }

    /// The feed rows after `after`, then the horizon and the head (two
    /// statements, in that order; see `feed_answer`).
    pub async fn changes(&self, after: i64, limit: i64) -> Result<FeedRead> {
        let d = self.deadline();
        let c = self.conn(d).await?;
        let r = timeout_at(d, async {
            let st = c
                .prepare_cached(
                    "SELECT id, kind, hash, op FROM changes WHERE id > $1 ORDER BY id LIMIT $2",
                )
                .await?;
            let rows = c
                .query(&st, &[&after, &limit])
                .await?
                .iter()
                .map(|r| {
                    Ok(ChangeRow {
                        cursor: r.try_get(0)?,
                        kind: r.try_get(1)?,
                        hash: r.try_get(2)?,
                        op: r.try_get(3)?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let st = c
                .prepare_cached(
                    "SELECT h.pruned_through, \
                     (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM change_cursor), \
                     (SELECT COALESCE(MAX(id), 0) FROM changes) \
                     FROM change_horizon h",
                )
                .await?;
            let row = c.query_one(&st, &[]).await?;
            Ok(FeedRead {
                rows,
                pruned_through: row.try_get(0)?,
                head: row.try_get(1)?,
                committed: row.try_get(2)?,
            })
        })
        .await;
        self.finish(c, r)
    }

    /// Deletes the prefix of the feed older than `retention_ms` by the
    /// database's clock.
    pub async fn prune_changes(&self, retention_ms: i64) -> Result<u64> {
        let d = self.deadline();
        let mut c = self.conn(d).await?;
        let r = timeout_at(d, async {
            let tx = c.transaction().await?;
            let last: Option<i64> = tx
                .query_one(
                    "SELECT max(id) FROM changes WHERE at_ms < \
                     (extract(epoch FROM clock_timestamp()) * 1000)::bigint - $1",
                    &[&retention_ms],
                )
                .await?
                .try_get(0)?;
            let Some(last) = last else {
                return Ok(0);
            };
            let n = tx
                .execute("DELETE FROM changes WHERE id <= $1", &[&last])
                .await?;
            tx.execute(
                "UPDATE change_horizon SET pruned_through = GREATEST(pruned_through, $1)",
                &[&last],
            )
            .await?;
            tx.commit().await?;
            Ok(n)
        })
        .await;
        self.finish(c, r)
    }

    pub async fn create_app(&self, app: &App, subs: &[(String, SubscriptionStatus)]) -> Result<()> {
        let d = self.deadline();
        let mut c = self.conn(d).await?;
        let r = timeout_at(d, async {
            let tx = c.transaction().await?;
            if app_by_client(&tx, &app.client_id).await?.is_some() {
                return Err(client_exists());
            }
            let inserted = tx
                .execute(
                    "INSERT INTO apps (app_id, name, developer_email, developer_id, api_products, \
                     attributes, redirect_uris, client_id, client_secret, created_at, status, \
                     key_status, developer_status) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                    &[
                        &app.app_id,
                        &app.name,
                        &app.developer_email,
                        &app.developer_id,
                        &to_json(&app.api_products)?,
                        &to_json(&app.attributes)?,
                        &to_json(&app.redirect_uris)?,
                        &app.client_id,
                        &app.client_secret,
                        &now_ms(),
                        &app.status,
                        &app.key_status,
                        &app.developer_status,
                    ],
                )
                .await;
            match inserted {
                // Another replica created the same client_id meanwhile.
                Err(e) if is_unique_violation(&e) => return Err(client_exists()),
                other => other?,
            };
            for (p, status) in subs {
                put_subscription(&tx, &app.client_id, p, *status).await?;
            }
            insert_changes(&tx, &client_changes(&app.client_id, Op::Create)).await?;
            tx.commit().await?;
            Ok(())
        })
        .await;
        self.finish(c, r)
    }

    pub async fn put_product(&self, p: &ApiProduct) -> Result<bool> {
        let d = self.deadline();
        let mut c = self.conn(d).await?;
        let r = timeout_at(d, async {
            let tx = c.transaction().await?;
            let st = tx
                .prepare_cached(
                    "INSERT INTO api_products (name, definition, updated_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO UPDATE SET definition = excluded.definition, \
                     updated_at = excluded.updated_at RETURNING (xmax = 0)",
                )
                .await?;
            let new: bool = tx
                .query_one(&st, &[&p.name, &to_json(p)?, &now_ms()])
                .await?
                .try_get(0)?;
            let clients = tx
                .query(
                    "SELECT client_id FROM app_products WHERE product = $1 ORDER BY client_id",
                    &[&p.name],
                )
                .await?;
            let mut changes = Vec::new();
            for row in clients {
                let client: String = row.try_get(0)?;
                changes.extend(app_changes(
                    &client,
                    &live_tokens(&tx, &client).await?,
                    Op::Product,
                ));
            }
            insert_changes(&tx, &changes).await?;
            tx.commit().await?;
            Ok(new)
        })
        .await;
        self.finish(c, r)
    }

    pub async fn product(&self, name: &str) -> Result<Option<ApiProduct>> {
        let d = self.deadline();
        let c = self.conn(d).await?;
        let r = timeout_at(d, product_in(&c, name)).await;
        self.finish(c, r)
    }

    pub async fn subscribe(
        &self,
        client_id: &str,
        product: &str,
        status: SubscriptionStatus,
    ) -> Result<()> {
        let d = self.deadline();
        let mut c = self.conn(d).await?;
        let r = timeout_at(d, async {
            let tx = c.transaction().await?;
            require_client(&tx, client_id).await?;
            // A subscription to a name no product has yet (an app's
            // `api_products`) may change status; a new one needs the product.
            let subscribed: bool = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM app_products WHERE client_id = $1 AND product = $2)",
                    &[&client_id, &product],
                )
                .await?
                .try_get(0)?;
            if !subscribed && product_in(&tx, product).await?.is_none() {
                return Err(unknown_product());
            }
            put_subscription(&tx, client_id, product, status).await?;
            let live = live_tokens(&tx, client_id).await?;
            insert_changes(&tx, &app_changes(client_id, &live, Op::Subscription)).await?;
            tx.commit().await?;
            Ok(())
        })
        .await;
        self.finish(c, r)
    }

    pub async fn set_statuses(&self, client_id: &str, st: &Statuses) -> Result<bool> {
        let d = self.deadline();
        let mut c = self.conn(d).await?;
        let r = timeout_at(d, async {
            let tx = c.transaction().await?;
            let n = tx
                .execute(
                    "UPDATE apps SET status = COALESCE($2, status), \
                     key_status = COALESCE($3, key_status), \
                     developer_status = COALESCE($4, developer_status) WHERE client_id = $1",
                    &[&client_id, &st.status, &st.key_status, &st.developer_status],
                )
                .await?;
            if n == 0 {
                return Ok(false);
            }
            let live = live_tokens(&tx, client_id).await?;
            insert_changes(&tx, &app_changes(client_id, &live, Op::Status)).await?;
            tx.commit().await?;
            Ok(true)
        })
        .await;
        self.finish(c, r)
    }

    pub async fn subscriptions(
        &self,
        client_id: &str,
    ) -> Result<Option<Vec<(String, SubscriptionStatus)>>> {
        let d = self.deadline();
        let c = self.conn(d).await?;
        let r = timeout_at(d, async {
            if app_by_client(&c, client_id).await?.is_none() {
                return Ok(None);
            }
            let rows = c
                .query(
                    "SELECT product, status FROM app_products WHERE client_id = $1 \
                     ORDER BY position, product",
                    &[&client_id],
                )
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let status: String = r.try_get(1)?;
                let status = SubscriptionStatus::parse(&status).ok_or_else(|| {
                    Error::internal("a stored subscription has an unknown status")
                })?;
                out.push((r.try_get(0)?, status));
            }
            Ok(Some(out))
        })
        .await;
        self.finish(c, r)
    }

    pub async fn import_access(&self, t: &AccessToken, attrs: &Attributes) -> Result<()> {
        let d = self.deadline();
        let mut c = self.conn(d).await?;
        let r = timeout_at(d, async {
            let tx = c.transaction().await?;
            require_client(&tx, &t.client_id).await?;
            let mut values = vec![t.token.as_str()];
            if let Some(r) = &t.refresh {
                values.push(r.token.as_str());
            }
            lock_values(&tx, &values).await?;
            for v in &values {
                if value_in_use(&tx, v).await? {
                    return Err(token_exists());
                }
            }
            match insert_access(&tx, t).await {
                Err(e) if is_unique_violation(&e) => return Err(token_exists()),
                other => other?,
            };
            put_attributes(&tx, false, &t.token, attrs).await?;
            insert_changes(&tx, &access_changes(t, Op::Import)).await?;
            tx.commit().await?;
            Ok(())
        })
        .await;
        self.finish(c, r)
    }

    pub async fn import_code(&self, code: &AuthCode, attrs: &Attributes) -> Result<()> {
        let d = self.deadline();
        let mut c = self.conn(d).await?;
        let r = timeout_at(d, async {
            let tx = c.transaction().await?;
            require_client(&tx, &code.client_id).await?;
            lock_values(&tx, &[code.code.as_str()]).await?;
            if value_in_use(&tx, &code.code).await? {
                return Err(token_exists());
            }
            let inserted = tx
                .execute(
                    "INSERT INTO authorization_codes (code, client_id, redirect_uri, scope, \
                     status, issued_at, expires_at, code_fp) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    &[
                        &code.code,
                        &code.client_id,
                        &code.redirect_uri,
                        &code.scope,
                        &code.status,
                        &code.issued_at,
                        &code.expires_at,
                        &code.fp,
                    ],
                )
                .await;
            match inserted {
                Err(e) if is_unique_violation(&e) => return Err(token_exists()),
                other => other?,
            };
            put_attributes(&tx, true, &code.code, attrs).await?;
            insert_changes(&tx, &code_changes(code, Op::Import)).await?;
            tx.commit().await?;
            Ok(())
        })
        .await;
        self.finish(c, r)
    }

    /// One transaction: lock the token's row, check it is approved and
    /// unexpired, upsert the attributes, write the feed rows, commit.
    /// Merges of one token from any replica queue on the row lock, so each
    /// sees the others' names (all survive; the count limit is exact).
    pub async fn merge_attributes(
        &self,
        token: &str,
        attrs: &Attributes,
        max_attributes: usize,
        org: &str,
    ) -> Result<Value> {
        let d = self.deadline();
        let mut c = self.conn(d).await?;
        let r = timeout_at(d, async {
            let tx = c.transaction().await?;
            let found = access_by(&tx, "t.token", token, true).await?;
            let now = now_ms();
            let t = check_mergeable(found, now)?;
            let all = merged(attributes(&tx, false, token).await?, attrs, max_attributes)?;
            put_attributes(&tx, false, token, attrs).await?;
            let app = app_by_client(&tx, &t.client_id)
                .await?
                .ok_or_else(super::missing_app)?;
            insert_changes(&tx, &access_changes(&t, Op::Merge)).await?;
            tx.commit().await?;
            Ok(views::access_introspection(&t, &app, &all, org, now))
        })
        .await;
        self.finish(c, r)
    }

    pub async fn client_credentials(
        &self,
        client_id: &str,
        scope: &str,
        lifetimes: Lifetimes,
    ) -> Result<Issued> {
        let d = self.deadline();
        let mut c = self.conn(d).await?;
        let r = timeout_at(d, async {
            let tx = c.transaction().await?;
            let out = issue(
                &tx,
                self.hashing,
                client_id,
                scope,
                lifetimes,
                None,
                0,
                &Attributes::new(),
            )
            .await?;
            tx.commit().await?;
            Ok(out)
        })
        .await;
        self.finish(c, r)
    }

    pub async fn exchange_code(
        &self,
        client_id: &str,
        code: &str,
        redirect_uri: Option<&str>,
        lifetimes: Lifetimes,
    ) -> Result<Issued> {
        let d = self.deadline();
        let mut c = self.conn(d).await?;
        let r = timeout_at(d, async {
            let tx = c.transaction().await?;
            let found = code_by_code(&tx, code, true).await?;
            let cd = check_exchange(found, client_id, redirect_uri, now_ms())?;
            tx.execute(
                "UPDATE authorization_codes SET status = 'revoked' WHERE code = $1",
                &[&code],
            )
            .await?;
            let attrs = attributes(&tx, true, code).await?;
            let out = issue(
                &tx,
                self.hashing,
                client_id,
                &cd.scope,
                lifetimes,
                Some(lifetimes.refresh),
                0,
                &attrs,
            )
            .await?;
            insert_changes(&tx, &code_changes(&cd, Op::Exchange)).await?;
            tx.commit().await?;
            Ok(out)
        })
        .await;
        self.finish(c, r)
    }

    pub async fn refresh(
        &self,
        client_id: &str,
        refresh_token: &str,
        lifetimes: Lifetimes,
    ) -> Result<Issued> {
        let d = self.deadline();
        let mut c = self.conn(d).await?;
        let r = timeout_at(d, async {
            let tx = c.transaction().await?;
            let found = access_by(&tx, "t.refresh_token", refresh_token, true).await?;
            let old = check_refresh(found, client_id, now_ms())?;
            tx.execute(
                "UPDATE access_tokens SET status = 'revoked', refresh_token_status = 'revoked' \
                 WHERE token = $1",
                &[&old.token],
            )
            .await?;
            let attrs = attributes(&tx, false, &old.token).await?;
            let out = issue(
                &tx,
                self.hashing,
                client_id,
                &old.scope,
                lifetimes,
                Some(lifetimes.refresh),
                old.refresh_count.saturating_add(1),
                &attrs,
            )
            .await?;
            insert_changes(&tx, &access_changes(&old, Op::Refresh)).await?;
            tx.commit().await?;
            Ok(out)
        })
        .await;
        self.finish(c, r)
    }

    pub async fn revoke(
        &self,
        value: &str,
        hint: Option<Kind>,
        caller: &Caller,
    ) -> Result<Revoked> {
        let d = self.deadline();
        let mut c = self.conn(d).await?;
        let r = timeout_at(d, async {
            let tx = c.transaction().await?;
            for kind in revoke_order(hint) {
                let (found, sql) = match kind {
                    Kind::Access => (
                        access_by(&tx, "t.token", value, true)
                            .await?
                            .map(|t| (t.client_id.clone(), access_changes(&t, Op::Revoke))),
                        "UPDATE access_tokens SET status = 'revoked' WHERE token = $1",
                    ),
                    Kind::Refresh => (
                        access_by(&tx, "t.refresh_token", value, true)
                            .await?
                            .map(|t| (t.client_id.clone(), access_changes(&t, Op::Revoke))),
                        "UPDATE access_tokens SET status = 'revoked', \
                         refresh_token_status = 'revoked' WHERE refresh_token = $1",
                    ),
                    Kind::Code => (
                        code_by_code(&tx, value, true)
                            .await?
                            .map(|cd| (cd.client_id.clone(), code_changes(&cd, Op::Revoke))),
                        "UPDATE authorization_codes SET status = 'revoked' WHERE code = $1",
                    ),
                };
                let Some((owner, changes)) = found else {
                    continue;
                };
                check_revoker(caller, &owner)?;
                tx.execute(sql, &[&value]).await?;
                insert_changes(&tx, &changes).await?;
                tx.commit().await?;
                return Ok(Revoked::Token {
                    kind,
                    client_id: owner,
                });
            }
            Ok(Revoked::NotFound)
        })
        .await;
        self.finish(c, r)
    }
}

/// What the start found the database to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Schema {
    /// Migrated (or already current) and writable.
    Ready,
    /// Read-only (a hot standby, or `default_transaction_read_only`) with
    /// the current schema: reads are served, writes answer 503.
    ReadOnly,
}

/// A migration step's error for the start's one line: the server's
/// message and SQLSTATE (`pg_text`), never tokio-postgres' bare "db error".
fn step(what: &'static str) -> impl Fn(tokio_postgres::Error) -> String {
    move |err| format!("{what}: {}", pg_text(&err))
}

/// Applies the missing migrations in one transaction under an advisory
/// lock, so replicas starting together migrate once. A read-only database
/// is not written: it is accepted when its schema is current, and refused
/// otherwise (docs/token-service.md, "Schema migrations").
async fn migrate(
    c: &mut Object,
    hash_tokens: bool,
) -> std::result::Result<(Schema, Hashing), String> {
    let read_only: bool = c
        .query_one(
            "SELECT pg_is_in_recovery() OR current_setting('transaction_read_only') = 'on'",
            &[],
        )
        .await
        .and_then(|r| r.try_get(0))
        .map_err(step("read whether the database is read-only"))?;
    if read_only {
        // Two statements: a query naming a missing table fails to plan.
        let has_table: bool = c
            .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
            .await
            .and_then(|r| r.try_get(0))
            .map_err(step("read schema_migrations"))?;
        let version: i64 = if has_table {
            c.query_one(
                "SELECT COALESCE(max(version), 0)::bigint FROM schema_migrations",
                &[],
            )
            .await
            .and_then(|r| r.try_get(0))
            .map_err(step("read schema_migrations"))?
        } else {
            0
        };
        return if version == SCHEMA_VERSION {
            let setting = hashing_setting(&*c).await?;
            match (setting.as_deref(), hash_tokens) {
                (None, false) => Ok((Schema::ReadOnly, Hashing::Plain)),
                (Some("sha256"), true) => Ok((Schema::ReadOnly, Hashing::Sha256)),
                (Some(_), false) => Err(super::hashed_store_needs_the_flag()),
                (_, true) => Err(
                    "--hash-tokens: the database is read-only, so its tokens cannot be hashed in \
                     place; start on the writable primary first"
                        .to_owned(),
                ),
            }
        } else {
            Err(format!(
                "the database is read-only (a standby, or default_transaction_read_only) and its \
                 schema version is {version}, not {SCHEMA_VERSION}: it cannot be migrated; start \
                 this version on the writable primary first"
            ))
        };
    }
    let tx = c.transaction().await.map_err(step("begin"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(step("migration lock"))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    BIGINT PRIMARY KEY,
             applied_at BIGINT NOT NULL
         );",
    )
    .await
    .map_err(step("create schema_migrations"))?;
    let version: i64 = tx
        .query_one(
            "SELECT COALESCE(max(version), 0)::bigint FROM schema_migrations",
            &[],
        )
        .await
        .and_then(|r| r.try_get(0))
        .map_err(step("read schema_migrations"))?;
    if version > SCHEMA_VERSION {
        return Err(format!(
            "the database has schema version {version}; this token-service knows up to {SCHEMA_VERSION}"
        ));
    }
    for (v, sql) in (1i64..).zip(MIGRATIONS) {
        if v <= version {
            continue;
        }
        tx.batch_execute(sql)
            .await
            .map_err(|err| format!("migration {v}: {}", pg_text(&err)))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
            &[&v, &now_ms()],
        )
        .await
        .map_err(step("record the schema version"))?;
    }
    let setting = hashing_setting(&tx).await?;
    let hashing = match (setting.as_deref(), hash_tokens) {
        (None, false) => Hashing::Plain,
        (Some("sha256"), true) => Hashing::Sha256,
        (Some(_), false) => return Err(super::hashed_store_needs_the_flag()),
        (Some(other), true) => {
            return Err(format!("unknown token hashing {other:?} in store_settings"))
        }
        (None, true) => {
            let (tokens, codes) = hash_in_place(&tx)
                .await
                .map_err(step("hash the tokens in place"))?;
            tx.execute(
                "INSERT INTO store_settings (name, value) VALUES ($1, 'sha256')",
                &[&HASHING_SETTING],
            )
            .await
            .map_err(step("record the token hashing"))?;
            info!(
                access_tokens = tokens,
                codes, "tokens hashed in place (--hash-tokens)"
            );
            Hashing::Sha256
        }
    };
    tx.commit().await.map_err(step("commit the schema"))?;
    Ok((Schema::Ready, hashing))
}

/// The store's `token_hashing` setting (None: plain).
async fn hashing_setting<C: GenericClient>(c: &C) -> std::result::Result<Option<String>, String> {
    c.query_opt(
        "SELECT value FROM store_settings WHERE name = $1",
        &[&HASHING_SETTING],
    )
    .await
    .and_then(|r| r.map(|r| r.try_get(0)).transpose())
    .map_err(step("read store_settings"))
}

/// Rewrites every access token (with its refresh token and attributes) and
/// every code (with its attributes) under its key: a copy under the key,
/// the attributes moved to it, the old row deleted (the foreign keys hold
/// at every step). Answers the counts.
async fn hash_in_place<C: GenericClient>(
    c: &C,
) -> std::result::Result<(usize, usize), tokio_postgres::Error> {
    use oauthv2info_names::TokenKind;
    let h = Hashing::Sha256;
    let rows = c
        .query("SELECT token, refresh_token FROM access_tokens", &[])
        .await?;
    for r in &rows {
        let token: String = r.try_get(0)?;
        let refresh: Option<String> = r.try_get(1)?;
        let key = h.key(&token);
        c.execute(
            "INSERT INTO access_tokens (token, client_id, scope, status, issued_at, expires_at, \
             refresh_token, refresh_token_status, refresh_token_issued_at, \
             refresh_token_expires_at, refresh_count, token_fp, refresh_token_fp) \
             SELECT $1, client_id, scope, status, issued_at, expires_at, $2, \
             refresh_token_status, refresh_token_issued_at, refresh_token_expires_at, \
             refresh_count, $3, $4 FROM access_tokens WHERE token = $5",
            &[
                &key,
                &refresh.as_deref().map(|r| h.key(r)),
                &h.fingerprint(TokenKind::AccessToken, &token),
                &refresh
                    .as_deref()
                    .and_then(|r| h.fingerprint(TokenKind::RefreshToken, r)),
                &token,
            ],
        )
        .await?;
        c.execute(
            "UPDATE token_attributes SET token = $1 WHERE token = $2",
            &[&key, &token],
        )
        .await?;
        c.execute("DELETE FROM access_tokens WHERE token = $1", &[&token])
            .await?;
    }
    let codes = c.query("SELECT code FROM authorization_codes", &[]).await?;
    for r in &codes {
        let code: String = r.try_get(0)?;
        let key = h.key(&code);
        c.execute(
            "INSERT INTO authorization_codes (code, client_id, redirect_uri, scope, status, \
             issued_at, expires_at, code_fp) SELECT $1, client_id, redirect_uri, scope, status, \
             issued_at, expires_at, $2 FROM authorization_codes WHERE code = $3",
            &[
                &key,
                &h.fingerprint(TokenKind::AuthorizationCode, &code),
                &code,
            ],
        )
        .await?;
        c.execute(
            "UPDATE code_attributes SET code = $1 WHERE code = $2",
            &[&key, &code],
        )
        .await?;
        c.execute("DELETE FROM authorization_codes WHERE code = $1", &[&code])
            .await?;
    }
    Ok((rows.len(), codes.len()))
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(Error::internal)
}

fn json_col<T: serde::de::DeserializeOwned>(r: &Row, i: usize) -> Result<T> {
    let s: String = r.try_get(i)?;
    serde_json::from_str(&s).map_err(|e| Error::internal(format_args!("column {i}: {e}")))
}

fn app_row(r: &Row, at: usize) -> Result<App> {
    Ok(App {
        app_id: r.try_get(at)?,
        name: r.try_get(at + 1)?,
        developer_email: r.try_get(at + 2)?,
        developer_id: r.try_get(at + 3)?,
        api_products: json_col(r, at + 4)?,
        attributes: json_col(r, at + 5)?,
        redirect_uris: json_col(r, at + 6)?,
        client_id: r.try_get(at + 7)?,
        client_secret: r.try_get(at + 8)?,
        products: json_col(r, at + 9)?,
        status: r.try_get(at + 10)?,
        key_status: r.try_get(at + 11)?,
        developer_status: r.try_get(at + 12)?,
    })
}

fn access_row(r: &Row) -> Result<AccessToken> {
    let refresh = match r.try_get::<_, Option<String>>(6)? {
        Some(token) => Some(RefreshToken {
            token,
            fp: r.try_get(12)?,
            status: r.try_get(7)?,
            issued_at: r.try_get(8)?,
            expires_at: r.try_get(9)?,
        }),
        None => None,
    };
    Ok(AccessToken {
        token: r.try_get(0)?,
        token_fp: r.try_get(11)?,
        client_id: r.try_get(1)?,
        scope: r.try_get(2)?,
        status: r.try_get(3)?,
        issued_at: r.try_get(4)?,
        expires_at: r.try_get(5)?,
        refresh,
        refresh_count: r.try_get(10)?,
    })
}

fn code_row(r: &Row) -> Result<AuthCode> {
    Ok(AuthCode {
        code: r.try_get(0)?,
        fp: r.try_get(7)?,
        client_id: r.try_get(1)?,
        redirect_uri: r.try_get(2)?,
        scope: r.try_get(3)?,
        status: r.try_get(4)?,
        issued_at: r.try_get(5)?,
        expires_at: r.try_get(6)?,
    })
}

fn attrs_col(r: &Row, i: usize) -> Result<Attributes> {
    let s: Option<String> = r.try_get(i)?;
    match s {
        Some(s) => {
            serde_json::from_str(&s).map_err(|e| Error::internal(format_args!("attributes: {e}")))
        }
        None => Ok(Attributes::new()),
    }
}

async fn app_by_client<C: GenericClient>(c: &C, client_id: &str) -> Result<Option<App>> {
    let st = c
        .prepare_cached(&format!(
            "SELECT {APP_COLS} FROM apps a WHERE a.client_id = $1"
        ))
        .await?;
    c.query_opt(&st, &[&client_id])
        .await?
        .map(|r| app_row(&r, 0))
        .transpose()
}

async fn product_in<C: GenericClient>(c: &C, name: &str) -> Result<Option<ApiProduct>> {
    let st = c
        .prepare_cached("SELECT definition FROM api_products WHERE name = $1")
        .await?;
    c.query_opt(&st, &[&name])
        .await?
        .map(|r| json_col(&r, 0))
        .transpose()
}

/// Adds a subscription at the end of the app's list, or changes its status.
async fn put_subscription<C: GenericClient>(
    c: &C,
    client_id: &str,
    product: &str,
    status: SubscriptionStatus,
) -> Result<()> {
    let st = c
        .prepare_cached(
            "INSERT INTO app_products (client_id, product, status, position) \
             VALUES ($1, $2, $3, (SELECT COALESCE(max(position) + 1, 0) FROM app_products \
             WHERE client_id = $1)) \
             ON CONFLICT (client_id, product) DO UPDATE SET status = excluded.status",
        )
        .await?;
    c.execute(&st, &[&client_id, &product, &status.as_str()])
        .await?;
    Ok(())
}

/// An app's approved, unexpired access tokens (for the feed).
async fn live_tokens<C: GenericClient>(c: &C, client_id: &str) -> Result<Vec<AccessToken>> {
    let st = c
        .prepare_cached(&format!(
            "SELECT {ACCESS_COLS} FROM access_tokens t WHERE t.client_id = $1 \
             AND t.status = 'approved' AND (t.expires_at = -1 OR t.expires_at > $2)"
        ))
        .await?;
    c.query(&st, &[&client_id, &now_ms()])
        .await?
        .iter()
        .map(access_row)
        .collect()
}

async fn require_client<C: GenericClient>(c: &C, client_id: &str) -> Result<()> {
    if app_by_client(c, client_id).await?.is_none() {
        return Err(unknown_client());
    }
    Ok(())
}

/// The access token whose `column` (`t.token` or `t.refresh_token`) is
/// `value`, its row locked for the transaction when `lock`.
async fn access_by<C: GenericClient>(
    c: &C,
    column: &str,
    value: &str,
    lock: bool,
) -> Result<Option<AccessToken>> {
    let sql = format!(
        "SELECT {ACCESS_COLS} FROM access_tokens t WHERE {column} = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let st = c.prepare_cached(&sql).await?;
    c.query_opt(&st, &[&value])
        .await?
        .map(|r| access_row(&r))
        .transpose()
}

async fn code_by_code<C: GenericClient>(c: &C, code: &str, lock: bool) -> Result<Option<AuthCode>> {
    let sql = format!(
        "SELECT {CODE_COLS} FROM authorization_codes c WHERE c.code = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let st = c.prepare_cached(&sql).await?;
    c.query_opt(&st, &[&code])
        .await?
        .map(|r| code_row(&r))
        .transpose()
}

fn attr_table(code: bool) -> (&'static str, &'static str) {
    if code {
        ("code_attributes", "code")
    } else {
        ("token_attributes", "token")
    }
}

async fn attributes<C: GenericClient>(c: &C, code: bool, key: &str) -> Result<Attributes> {
    let (table, col) = attr_table(code);
    let st = c
        .prepare_cached(&format!("SELECT name, value FROM {table} WHERE {col} = $1"))
        .await?;
    let mut out = Attributes::new();
    for r in c.query(&st, &[&key]).await? {
        out.insert(r.try_get(0)?, r.try_get(1)?);
    }
    Ok(out)
}

/// Upserts `attrs` in one statement.
async fn put_attributes<C: GenericClient>(
    c: &C,
    code: bool,
    key: &str,
    attrs: &Attributes,
) -> Result<()> {
    if attrs.is_empty() {
        return Ok(());
    }
    let (table, col) = attr_table(code);
    let names: Vec<&str> = attrs.keys().map(String::as_str).collect();
    let values: Vec<&str> = attrs.values().map(String::as_str).collect();
    let st = c
        .prepare_cached(&format!(
            "INSERT INTO {table} ({col}, name, value) \
             SELECT $1, n, v FROM unnest($2::text[], $3::text[]) AS u(n, v) \
             ON CONFLICT ({col}, name) DO UPDATE SET value = excluded.value"
        ))
        .await?;
    c.execute(&st, &[&key, &names, &values]).await?;
    Ok(())
}

/// Locks token values for the transaction (imports check that a value is
/// unused as any kind of token, which no single unique index can say).
async fn lock_values<C: GenericClient>(c: &C, values: &[&str]) -> Result<()> {
    let mut keys: Vec<i32> = values
        .iter()
        .map(|v| {
            // The low 32 bits of the feed's fingerprint (any stable hash will do).
            let h = oauthv2info_names::token_hash(
                oauthv2info_names::TokenKind::AccessToken,
                v.as_bytes(),
            );
            i32::from_ne_bytes((h as u32).to_ne_bytes())
        })
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let st = c
        .prepare_cached("SELECT pg_advisory_xact_lock($1, $2)")
        .await?;
    for k in keys {
        c.execute(&st, &[&VALUE_LOCK_SPACE, &k]).await?;
    }
    Ok(())
}

async fn value_in_use<C: GenericClient>(c: &C, value: &str) -> Result<bool> {
    let st = c
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM access_tokens WHERE token = $1) \
             OR EXISTS (SELECT 1 FROM access_tokens WHERE refresh_token = $1) \
             OR EXISTS (SELECT 1 FROM authorization_codes WHERE code = $1)",
        )
        .await?;
    Ok(c.query_one(&st, &[&value]).await?.try_get(0)?)
}

async fn insert_access<C: GenericClient>(
    c: &C,
    t: &AccessToken,
) -> std::result::Result<u64, tokio_postgres::Error> {
    let r = t.refresh.as_ref();
    let st = c
        .prepare_cached(
            "INSERT INTO access_tokens (token, client_id, scope, status, issued_at, expires_at, \
             refresh_token, refresh_token_status, refresh_token_issued_at, \
             refresh_token_expires_at, refresh_count, token_fp, refresh_token_fp) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .await?;
    c.execute(
        &st,
        &[
            &t.token,
            &t.client_id,
            &t.scope,
            &t.status,
            &t.issued_at,
            &t.expires_at,
            &r.map(|r| r.token.as_str()),
            &r.map(|r| r.status.as_str()),
            &r.map(|r| r.issued_at),
            &r.map(|r| r.expires_at),
            &t.refresh_count,
            &t.token_fp,
            &r.and_then(|r| r.fp.as_deref()),
        ],
    )
    .await
}

async fn fresh_value<C: GenericClient>(c: &C, h: Hashing) -> Result<String> {
    for _ in 0..FRESH_VALUE_TRIES {
        let v = random_alnum(32);
        if !value_in_use(c, &h.key(&v)).await? {
            return Ok(v);
        }
    }
    Err(Error::internal("could not generate an unused token value"))
}

#[allow(clippy::too_many_arguments)]
async fn issue<C: GenericClient>(
    c: &C,
    h: Hashing,
    client_id: &str,
    scope: &str,
    lifetimes: Lifetimes,
    refresh_lifetime: Option<i64>,
    refresh_count: i64,
    attrs: &Attributes,
) -> Result<Issued> {
    let now = now_ms();
    let token = fresh_value(c, h).await?;
    let refresh = match refresh_lifetime {
        Some(l) => Some((fresh_value(c, h).await?, l)),
        None => None,
    };
    let t = new_access(
        client_id,
        scope,
        lifetimes,
        token,
        refresh,
        refresh_count,
        now,
    )?;
    let stored = h.access(t.clone());
    insert_access(c, &stored).await?;
    put_attributes(c, false, &stored.token, attrs).await?;
    Ok(issued(t, lifetimes))
}

/// Writes the feed rows of a change: the last statements of its
/// transaction. The advisory lock is held until commit, and the cursors are
/// drawn after it is taken, so cursor order is commit order (see the module
/// doc). No other lock is taken after it, so it cannot deadlock.
async fn insert_changes<C: GenericClient>(c: &C, changes: &[Change]) -> Result<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let lock = c.prepare_cached("SELECT pg_advisory_xact_lock($1)").await?;
    c.execute(&lock, &[&FEED_LOCK]).await?;
    let kinds: Vec<&str> = changes.iter().map(|ch| ch.kind.hint()).collect();
    let hashes: Vec<&str> = changes.iter().map(|ch| ch.hash.as_str()).collect();
    let ops: Vec<&str> = changes.iter().map(|ch| ch.op.as_str()).collect();
    let st = c
        .prepare_cached(
            "INSERT INTO changes (kind, hash, op) \
             SELECT k, h, o FROM unnest($1::text[], $2::text[], $3::text[]) \
             WITH ORDINALITY AS u(k, h, o, n) ORDER BY n",
        )
        .await?;
    c.execute(&st, &[&kinds, &hashes, &ops]).await?;
    Ok(())
}

/// The introspection of an access token (`by_refresh`: of the refresh token
/// with this value) in one statement: token, app and attributes.
async fn access_view<C: GenericClient>(
    c: &C,
    value: &str,
    by_refresh: bool,
    org: &str,
    now: i64,
) -> Result<Option<Value>> {
    let sql = format!(
        "SELECT {ACCESS_COLS}, {APP_COLS}, \
         (SELECT json_object_agg(name, value)::text FROM token_attributes \
          WHERE token = t.token) \
         FROM access_tokens t JOIN apps a ON a.client_id = t.client_id \
         WHERE t.{} = $1",
        if by_refresh { "refresh_token" } else { "token" }
    );
    let st = c.prepare_cached(&sql).await?;
    let Some(r) = c.query_opt(&st, &[&value]).await? else {
        return Ok(None);
    };
    let t = access_row(&r)?;
    let app = app_row(&r, N_ACCESS)?;
    let attrs = attrs_col(&r, N_ACCESS + N_APP)?;
    if by_refresh {
        let Some(rt) = &t.refresh else {
            return Ok(None);
        };
        Ok(Some(views::refresh_introspection(
            &t, rt, &app, &attrs, org, now,
        )))
    } else {
        Ok(Some(views::access_introspection(
            &t, &app, &attrs, org, now,
        )))
    }
}

async fn code_view<C: GenericClient>(c: &C, code: &str, now: i64) -> Result<Option<Value>> {
    let sql = format!(
        "SELECT {CODE_COLS}, {APP_COLS}, \
         (SELECT json_object_agg(name, value)::text FROM code_attributes WHERE code = c.code) \
         FROM authorization_codes c JOIN apps a ON a.client_id = c.client_id \
         WHERE c.code = $1"
    );
    let st = c.prepare_cached(&sql).await?;
    let Some(r) = c.query_opt(&st, &[&code]).await? else {
        return Ok(None);
    };
    let cd = code_row(&r)?;
    let app = app_row(&r, N_CODE)?;
    let attrs = attrs_col(&r, N_CODE + N_APP)?;
    Ok(Some(views::code_introspection(&cd, &app, &attrs, now)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn describe_never_shows_the_password() {
        let cfg = config(
            "postgres://ts:s3cret-pw@db.example:6543/tokens?sslmode=require",
            Duration::from_secs(1),
        )
        .unwrap();
        let d = describe(&cfg);
        assert_eq!(
            d,
            "postgres://ts:***@db.example:6543/tokens?sslmode=require"
        );
        let cfg = config("postgresql://ts@127.0.0.1/tokens", Duration::from_secs(1)).unwrap();
        assert_eq!(describe(&cfg), "postgres://ts@127.0.0.1:5432/tokens");
        let cfg = config(
            "postgres://ts@h1:1,h2:2/db?options=-c%20search_path%3Dts",
            Duration::from_millis(1500),
        )
        .unwrap();
        assert_eq!(describe(&cfg), "postgres://ts@h1:1,h2:2/db");
        let o = cfg.get_options().unwrap();
        assert!(o.starts_with("-c search_path=ts "), "{o}");
        assert!(o.contains("statement_timeout=1500"), "{o}");
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_them() {
        for url in [
            "postgres://ts:pw-x1@h/db?colour=red",
            "postgres://ts:pw-x1@h/db?sslmode=sometimes",
        ] {
            let e = config(url, Duration::from_secs(1)).unwrap_err();
            assert!(!e.contains("pw-x1"), "{e}");
        }
        let e = config("postgres://h/db", Duration::from_secs(1));
        // Without a user in the URL, PGUSER is not read: refused.
        assert!(e.is_err());
    }

    #[test]
    fn transient_states() {
        assert!(transient_state(&SqlState::ADMIN_SHUTDOWN));
        assert!(transient_state(&SqlState::QUERY_CANCELED));
        assert!(transient_state(&SqlState::CONNECTION_FAILURE));
        assert!(transient_state(&SqlState::TOO_MANY_CONNECTIONS));
        assert!(!transient_state(&SqlState::UNIQUE_VIOLATION));
        assert!(!transient_state(&SqlState::SYNTAX_ERROR));
    }
}
