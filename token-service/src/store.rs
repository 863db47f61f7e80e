//! The embedded store: one SQLite file in WAL mode with `synchronous=FULL`,
//! one writer connection behind a mutex (every write is one `BEGIN IMMEDIATE`
//! transaction, committed and fsynced before it is acknowledged) and a small
//! pool of read-only connections. All methods block: writes (which wait for
//! fsync) run on `spawn_blocking`; short reads may run on the executor (see
//! `http::read_now`).

use crate::error::{Error, Result};
use crate::util::{now_ms, random_alnum};
use crate::views::{self, AccessToken, App, Attributes, AuthCode, RefreshToken, APPROVED};
use axum::http::StatusCode;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// `PRAGMA user_version` of the schema below.
pub const SCHEMA_VERSION: i64 = 1;

const SCHEMA_V1: &str = "
CREATE TABLE apps (
    app_id          TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    developer_email TEXT NOT NULL,
    developer_id    TEXT NOT NULL,
    api_products    TEXT NOT NULL DEFAULT '[]',  -- JSON array of strings
    attributes      TEXT NOT NULL DEFAULT '{}',  -- JSON object of strings
    redirect_uris   TEXT NOT NULL DEFAULT '[]',  -- JSON array of strings
    client_id       TEXT NOT NULL UNIQUE,
    client_secret   TEXT NOT NULL,
    created_at      INTEGER NOT NULL             -- epoch ms
);
CREATE TABLE access_tokens (
    token                    TEXT PRIMARY KEY,
    client_id                TEXT NOT NULL REFERENCES apps(client_id),
    scope                    TEXT NOT NULL,
    status                   TEXT NOT NULL CHECK (status IN ('approved', 'revoked')),
    issued_at                INTEGER NOT NULL,   -- epoch ms
    expires_at               INTEGER NOT NULL,   -- epoch ms, -1 = never
    refresh_token            TEXT UNIQUE,
    refresh_token_status     TEXT CHECK (refresh_token_status IN ('approved', 'revoked')),
    refresh_token_issued_at  INTEGER,
    refresh_token_expires_at INTEGER,
    refresh_count            INTEGER NOT NULL DEFAULT 0,
    CHECK ((refresh_token IS NULL) = (refresh_token_status IS NULL)
       AND (refresh_token IS NULL) = (refresh_token_issued_at IS NULL)
       AND (refresh_token IS NULL) = (refresh_token_expires_at IS NULL))
);
CREATE TABLE token_attributes (
    token TEXT NOT NULL REFERENCES access_tokens(token),
    name  TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (token, name)
) WITHOUT ROWID;
CREATE TABLE authorization_codes (
    code         TEXT PRIMARY KEY,
    client_id    TEXT NOT NULL REFERENCES apps(client_id),
    redirect_uri TEXT,
    scope        TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('approved', 'revoked')),
    issued_at    INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);
CREATE TABLE code_attributes (
    code  TEXT NOT NULL REFERENCES authorization_codes(code),
    name  TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (code, name)
) WITHOUT ROWID;
";

const APP_BY_CLIENT: &str = "SELECT app_id, name, developer_email, developer_id, api_products, \
     attributes, redirect_uris, client_id, client_secret FROM apps WHERE client_id = ?1";
const ACCESS_BY_TOKEN: &str = "SELECT token, client_id, scope, status, issued_at, expires_at, \
     refresh_token, refresh_token_status, refresh_token_issued_at, refresh_token_expires_at, \
     refresh_count FROM access_tokens WHERE token = ?1";
const ACCESS_BY_REFRESH: &str = "SELECT token, client_id, scope, status, issued_at, expires_at, \
     refresh_token, refresh_token_status, refresh_token_issued_at, refresh_token_expires_at, \
     refresh_count FROM access_tokens WHERE refresh_token = ?1";
const CODE_BY_CODE: &str = "SELECT code, client_id, redirect_uri, scope, status, issued_at, \
     expires_at FROM authorization_codes WHERE code = ?1";
const TOKEN_ATTRS: &str = "SELECT name, value FROM token_attributes WHERE token = ?1";
const CODE_ATTRS: &str = "SELECT name, value FROM code_attributes WHERE code = ?1";
const PUT_TOKEN_ATTR: &str =
    "INSERT INTO token_attributes (token, name, value) VALUES (?1, ?2, ?3) \
     ON CONFLICT (token, name) DO UPDATE SET value = excluded.value";
const PUT_CODE_ATTR: &str = "INSERT INTO code_attributes (code, name, value) VALUES (?1, ?2, ?3) \
     ON CONFLICT (code, name) DO UPDATE SET value = excluded.value";
const VALUE_IN_USE: &str = "SELECT EXISTS (SELECT 1 FROM access_tokens WHERE token = ?1) \
     OR EXISTS (SELECT 1 FROM access_tokens WHERE refresh_token = ?1) \
     OR EXISTS (SELECT 1 FROM authorization_codes WHERE code = ?1)";

/// Which kind of token a value is looked up as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Access,
    Refresh,
    Code,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Access => "access_token",
            Kind::Refresh => "refresh_token",
            Kind::Code => "authorization_code",
        }
    }
}

/// What an introspection looks a value up as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// No hint: access token, then refresh token.
    Any,
    Token(Kind),
    Client,
}

/// Who asks for a revocation.
#[derive(Debug, Clone)]
pub enum Caller {
    Admin,
    Client(String),
}

#[derive(Debug)]
pub enum Revoked {
    Token { kind: Kind, client_id: String },
    NotFound,
}

/// Lifetimes (seconds, -1 = never) of the tokens the service issues.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    pub access: i64,
    pub refresh: i64,
}

/// Tokens issued by a grant.
#[derive(Debug)]
pub struct Issued {
    pub access_token: String,
    pub expires_in: i64,
    pub scope: String,
    pub refresh_token: Option<String>,
    pub issued_at: i64,
}

pub struct Store {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    reader_free: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock rolled its transaction back (the
    // Transaction is dropped during unwinding), so the connection is usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn err<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> String + '_ {
    move |e| format!("{what}: {e}")
}

impl Store {
    /// Opens (creating if missing) the database at `path`, migrates the
    /// schema and opens `readers` read connections.
    pub fn open(path: &Path, readers: usize) -> std::result::Result<Self, String> {
        let mut writer = Connection::open(path).map_err(err("cannot open the database"))?;
        writer
            .busy_timeout(Duration::from_secs(5))
            .map_err(err("busy_timeout"))?;
        let mode: String = writer
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(err("cannot switch to WAL"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(format!(
                "the database refused WAL mode (journal_mode={mode})"
            ));
        }
        writer
            .execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
            .map_err(err("pragmas"))?;
        writer.set_prepared_statement_cache_capacity(32);
        migrate(&mut writer)?;

        let mut pool = Vec::with_capacity(readers.max(1));
        for _ in 0..readers.max(1) {
            let c = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(err("cannot open a read connection"))?;
            c.busy_timeout(Duration::from_secs(5))
                .map_err(err("busy_timeout"))?;
            c.execute_batch("PRAGMA query_only = ON;")
                .map_err(err("pragmas"))?;
            c.set_prepared_statement_cache_capacity(32);
            pool.push(c);
        }
        Ok(Self {
            path: path.to_owned(),
            writer: Mutex::new(writer),
            readers: Mutex::new(pool),
            reader_free: Condvar::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in a read transaction (one consistent snapshot) on a pooled
    /// read connection.
    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let mut conn = {
            let mut pool = lock(&self.readers);
            loop {
                if let Some(c) = pool.pop() {
                    break c;
                }
                pool = self
                    .reader_free
                    .wait(pool)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        let out = (|| {
            let tx = conn.transaction()?;
            let v = f(&tx)?;
            tx.commit()?;
            Ok(v)
        })();
        lock(&self.readers).push(conn);
        self.reader_free.notify_one();
        out
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction on the writer; commits
    /// only when `f` succeeds, so a refused request writes nothing.
    fn write<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let v = f(&tx)?;
        tx.commit()?;
        Ok(v)
    }

    /// The store answers a query.
    pub fn health(&self) -> Result<()> {
        self.read(|c| {
            let one: i64 = c.query_row("SELECT 1", [], |r| r.get(0))?;
            if one == 1 {
                Ok(())
            } else {
                Err(Error::internal("SELECT 1 returned something else"))
            }
        })
    }

    pub fn introspect(&self, value: &str, lookup: Lookup, org: &str) -> Result<Value> {
        self.read(|c| {
            let now = now_ms();
            let found = match lookup {
                Lookup::Token(Kind::Access) => access_view(c, value, org, now)?,
                Lookup::Token(Kind::Refresh) => refresh_view(c, value, org, now)?,
                Lookup::Token(Kind::Code) => code_view(c, value, now)?,
                Lookup::Client => app_by_client(c, value)?.map(|a| views::client_introspection(&a)),
                Lookup::Any => match access_view(c, value, org, now)? {
                    Some(v) => Some(v),
                    None => refresh_view(c, value, org, now)?,
                },
            };
            Ok(found.unwrap_or_else(views::inactive))
        })
    }

    pub fn app_by_client(&self, client_id: &str) -> Result<Option<App>> {
        self.read(|c| app_by_client(c, client_id))
    }

    pub fn create_app(&self, app: &App) -> Result<()> {
        self.write(|c| {
            if app_by_client(c, &app.client_id)?.is_some() {
                return Err(Error::new(
                    StatusCode::CONFLICT,
                    "client_exists",
                    "an app with this client_id already exists",
                ));
            }
            c.prepare_cached(
                "INSERT INTO apps (app_id, name, developer_email, developer_id, api_products, \
                 attributes, redirect_uris, client_id, client_secret, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(rusqlite::params![
                app.app_id,
                app.name,
                app.developer_email,
                app.developer_id,
                to_json(&app.api_products)?,
                to_json(&app.attributes)?,
                to_json(&app.redirect_uris)?,
                app.client_id,
                app.client_secret,
                now_ms(),
            ])?;
            Ok(())
        })
    }

    /// Imports an access token (and its refresh token) as given.
    pub fn import_access(&self, t: &AccessToken, attrs: &Attributes) -> Result<()> {
        self.write(|c| {
            require_client(c, &t.client_id)?;
            let mut values = vec![t.token.as_str()];
            if let Some(r) = &t.refresh {
                values.push(r.token.as_str());
            }
            for v in values {
                if value_in_use(c, v)? {
                    return Err(token_exists());
                }
            }
            insert_access(c, t)?;
            put_attributes(c, PUT_TOKEN_ATTR, &t.token, attrs)
        })
    }

    /// Imports an authorization code as given.
    pub fn import_code(&self, code: &AuthCode, attrs: &Attributes) -> Result<()> {
        self.write(|c| {
            require_client(c, &code.client_id)?;
            if value_in_use(c, &code.code)? {
                return Err(token_exists());
            }
            insert_code(c, code)?;
            put_attributes(c, PUT_CODE_ATTR, &code.code, attrs)
        })
    }

    /// Atomically merges custom attributes into an approved, unexpired access
    /// token; answers the introspection of the token after the write.
    pub fn merge_attributes(
        &self,
        token: &str,
        attrs: &Attributes,
        max_attributes: usize,
        org: &str,
    ) -> Result<Value> {
        self.write(|c| {
            let now = now_ms();
            let t = access_by_token(c, token)?.ok_or_else(|| {
                Error::new(
                    StatusCode::NOT_FOUND,
                    "invalid_access_token",
                    "the access token is not known",
                )
            })?;
            if t.status != APPROVED {
                return Err(Error::new(
                    StatusCode::CONFLICT,
                    "invalid_access_token",
                    format!("the access token is {}", t.status),
                ));
            }
            if views::is_expired(t.expires_at, now) {
                return Err(Error::new(
                    StatusCode::CONFLICT,
                    "access_token_expired",
                    "the access token has expired",
                ));
            }
            let mut merged = attributes(c, TOKEN_ATTRS, token)?;
            for (k, v) in attrs {
                merged.insert(k.clone(), v.clone());
            }
            if merged.len() > max_attributes {
                return Err(Error::invalid_request(format!(
                    "the token would have {} custom attributes; the limit is {max_attributes}",
                    merged.len()
                )));
            }
            put_attributes(c, PUT_TOKEN_ATTR, token, attrs)?;
            let app = app_of(c, &t.client_id)?;
            Ok(views::access_introspection(&t, &app, &merged, org, now))
        })
    }

    /// `client_credentials` grant: a new access token, no refresh token.
    pub fn client_credentials(
        &self,
        client_id: &str,
        scope: &str,
        lifetimes: Lifetimes,
    ) -> Result<Issued> {
        self.write(|c| issue(c, client_id, scope, lifetimes, None, 0, &Attributes::new()))
    }

    /// `authorization_code` grant: the code becomes revoked; a new access and
    /// refresh token carry the code's scope and attributes.
    pub fn exchange_code(
        &self,
        client_id: &str,
        code: &str,
        redirect_uri: Option<&str>,
        lifetimes: Lifetimes,
    ) -> Result<Issued> {
        self.write(|c| {
            let now = now_ms();
            let cd = code_by_code(c, code)?
                .filter(|cd| cd.client_id == client_id)
                .ok_or_else(|| {
                    Error::invalid_grant("the authorization code is not valid for this client")
                })?;
            if cd.status != APPROVED {
                return Err(Error::invalid_grant(
                    "the authorization code was already used or revoked",
                ));
            }
            if views::is_expired(cd.expires_at, now) {
                return Err(Error::invalid_grant("the authorization code has expired"));
            }
            if let Some(expected) = &cd.redirect_uri {
                if redirect_uri != Some(expected.as_str()) {
                    return Err(Error::invalid_grant(
                        "redirect_uri does not match the one the authorization code was issued with",
                    ));
                }
            }
            c.prepare_cached("UPDATE authorization_codes SET status = 'revoked' WHERE code = ?1")?
                .execute([code])?;
            let attrs = attributes(c, CODE_ATTRS, code)?;
            issue(
                c,
                client_id,
                &cd.scope,
                lifetimes,
                Some(lifetimes.refresh),
                0,
                &attrs,
            )
        })
    }

    /// `refresh_token` grant: the old access and refresh tokens become
    /// revoked; new ones carry the scope, attributes and refresh_count + 1.
    pub fn refresh(
        &self,
        client_id: &str,
        refresh_token: &str,
        lifetimes: Lifetimes,
    ) -> Result<Issued> {
        self.write(|c| {
            let now = now_ms();
            let old = access_by_refresh(c, refresh_token)?
                .filter(|t| t.client_id == client_id)
                .ok_or_else(|| {
                    Error::invalid_grant("the refresh token is not valid for this client")
                })?;
            let r = old
                .refresh
                .as_ref()
                .ok_or_else(|| Error::internal("refresh lookup returned no refresh token"))?;
            if r.status != APPROVED {
                return Err(Error::invalid_grant(
                    "the refresh token was already used or revoked",
                ));
            }
            if views::is_expired(r.expires_at, now) {
                return Err(Error::invalid_grant("the refresh token has expired"));
            }
            c.prepare_cached(
                "UPDATE access_tokens SET status = 'revoked', refresh_token_status = 'revoked' \
                 WHERE token = ?1",
            )?
            .execute([&old.token])?;
            let attrs = attributes(c, TOKEN_ATTRS, &old.token)?;
            issue(
                c,
                client_id,
                &old.scope,
                lifetimes,
                Some(lifetimes.refresh),
                old.refresh_count.saturating_add(1),
                &attrs,
            )
        })
    }

    /// RFC 7009 revocation. `hint` is looked at first, then the other kinds.
    pub fn revoke(&self, value: &str, hint: Option<Kind>, caller: &Caller) -> Result<Revoked> {
        let order = match hint {
            None | Some(Kind::Access) => [Kind::Access, Kind::Refresh, Kind::Code],
            Some(Kind::Refresh) => [Kind::Refresh, Kind::Access, Kind::Code],
            Some(Kind::Code) => [Kind::Code, Kind::Access, Kind::Refresh],
        };
        self.write(|c| {
            for kind in order {
                let (owner, sql) = match kind {
                    Kind::Access => (
                        access_by_token(c, value)?.map(|t| t.client_id),
                        "UPDATE access_tokens SET status = 'revoked' WHERE token = ?1",
                    ),
                    Kind::Refresh => (
                        access_by_refresh(c, value)?.map(|t| t.client_id),
                        "UPDATE access_tokens SET status = 'revoked', \
                         refresh_token_status = 'revoked' WHERE refresh_token = ?1",
                    ),
                    Kind::Code => (
                        code_by_code(c, value)?.map(|cd| cd.client_id),
                        "UPDATE authorization_codes SET status = 'revoked' WHERE code = ?1",
                    ),
                };
                let Some(owner) = owner else { continue };
                if let Caller::Client(id) = caller {
                    if *id != owner {
                        return Err(Error::new(
                            StatusCode::BAD_REQUEST,
                            "unauthorized_client",
                            "the token was not issued to this client",
                        ));
                    }
                }
                c.prepare_cached(sql)?.execute([value])?;
                return Ok(Revoked::Token {
                    kind,
                    client_id: owner,
                });
            }
            Ok(Revoked::NotFound)
        })
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(Error::internal)
}

fn migrate(conn: &mut Connection) -> std::result::Result<(), String> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err("cannot begin the schema migration"))?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(err("cannot read the schema version"))?;
    match version {
        0 => {
            tx.execute_batch(SCHEMA_V1)
                .map_err(err("cannot create the schema"))?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                .map_err(err("cannot set the schema version"))?;
        }
        SCHEMA_VERSION => {}
        v => {
            return Err(format!(
            "the database has schema version {v}; this token-service knows up to {SCHEMA_VERSION}"
        ))
        }
    }
    tx.commit().map_err(err("cannot commit the schema"))
}

fn token_exists() -> Error {
    Error::new(
        StatusCode::CONFLICT,
        "token_exists",
        "a token with this value already exists",
    )
}

fn require_client(c: &Connection, client_id: &str) -> Result<()> {
    if app_by_client(c, client_id)?.is_none() {
        return Err(Error::new(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "no app has this client_id",
        ));
    }
    Ok(())
}

fn json_col<T: serde::de::DeserializeOwned>(r: &Row, i: usize) -> rusqlite::Result<T> {
    let s: String = r.get(i)?;
    serde_json::from_str(&s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn app_by_client(c: &Connection, client_id: &str) -> Result<Option<App>> {
    let mut st = c.prepare_cached(APP_BY_CLIENT)?;
    let app = st
        .query_row([client_id], |r| {
            Ok(App {
                app_id: r.get(0)?,
                name: r.get(1)?,
                developer_email: r.get(2)?,
                developer_id: r.get(3)?,
                api_products: json_col(r, 4)?,
                attributes: json_col(r, 5)?,
                redirect_uris: json_col(r, 6)?,
                client_id: r.get(7)?,
                client_secret: r.get(8)?,
            })
        })
        .optional()?;
    Ok(app)
}

fn app_of(c: &Connection, client_id: &str) -> Result<App> {
    app_by_client(c, client_id)?
        .ok_or_else(|| Error::internal("a stored token names a client_id with no app"))
}

fn access_row(r: &Row) -> rusqlite::Result<AccessToken> {
    let refresh = match r.get::<_, Option<String>>(6)? {
        Some(token) => Some(RefreshToken {
            token,
            status: r.get(7)?,
            issued_at: r.get(8)?,
            expires_at: r.get(9)?,
        }),
        None => None,
    };
    Ok(AccessToken {
        token: r.get(0)?,
        client_id: r.get(1)?,
        scope: r.get(2)?,
        status: r.get(3)?,
        issued_at: r.get(4)?,
        expires_at: r.get(5)?,
        refresh,
        refresh_count: r.get(10)?,
    })
}

fn access_by_token(c: &Connection, token: &str) -> Result<Option<AccessToken>> {
    Ok(c.prepare_cached(ACCESS_BY_TOKEN)?
        .query_row([token], access_row)
        .optional()?)
}

fn access_by_refresh(c: &Connection, token: &str) -> Result<Option<AccessToken>> {
    Ok(c.prepare_cached(ACCESS_BY_REFRESH)?
        .query_row([token], access_row)
        .optional()?)
}

fn code_by_code(c: &Connection, code: &str) -> Result<Option<AuthCode>> {
    Ok(c.prepare_cached(CODE_BY_CODE)?
        .query_row([code], |r| {
            Ok(AuthCode {
                code: r.get(0)?,
                client_id: r.get(1)?,
                redirect_uri: r.get(2)?,
                scope: r.get(3)?,
                status: r.get(4)?,
                issued_at: r.get(5)?,
                expires_at: r.get(6)?,
            })
        })
        .optional()?)
}

fn attributes(c: &Connection, sql: &str, key: &str) -> Result<Attributes> {
    let mut st = c.prepare_cached(sql)?;
    let rows = st.query_map([key], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let mut out = Attributes::new();
    for row in rows {
        let (k, v) = row?;
        out.insert(k, v);
    }
    Ok(out)
}

fn put_attributes(c: &Connection, sql: &str, key: &str, attrs: &Attributes) -> Result<()> {
    let mut st = c.prepare_cached(sql)?;
    for (name, value) in attrs {
        st.execute([key, name.as_str(), value.as_str()])?;
    }
    Ok(())
}

fn value_in_use(c: &Connection, value: &str) -> Result<bool> {
    Ok(c.prepare_cached(VALUE_IN_USE)?
        .query_row([value], |r| r.get(0))?)
}

fn insert_access(c: &Connection, t: &AccessToken) -> Result<()> {
    let r = t.refresh.as_ref();
    c.prepare_cached(
        "INSERT INTO access_tokens (token, client_id, scope, status, issued_at, expires_at, \
         refresh_token, refresh_token_status, refresh_token_issued_at, refresh_token_expires_at, \
         refresh_count) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(rusqlite::params![
        t.token,
        t.client_id,
        t.scope,
        t.status,
        t.issued_at,
        t.expires_at,
        r.map(|r| r.token.as_str()),
        r.map(|r| r.status.as_str()),
        r.map(|r| r.issued_at),
        r.map(|r| r.expires_at),
        t.refresh_count,
    ])?;
    Ok(())
}

fn insert_code(c: &Connection, code: &AuthCode) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO authorization_codes (code, client_id, redirect_uri, scope, status, \
         issued_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(rusqlite::params![
        code.code,
        code.client_id,
        code.redirect_uri,
        code.scope,
        code.status,
        code.issued_at,
        code.expires_at,
    ])?;
    Ok(())
}

/// A fresh random token value not used by any token, refresh token or code.
fn fresh_value(c: &Connection) -> Result<String> {
    for _ in 0..4 {
        let v = random_alnum(32);
        if !value_in_use(c, &v)? {
            return Ok(v);
        }
    }
    Err(Error::internal("could not generate an unused token value"))
}

/// Inserts a new access token (and refresh token when `refresh_lifetime`
/// is given) with `attrs` copied onto it.
fn issue(
    c: &Connection,
    client_id: &str,
    scope: &str,
    lifetimes: Lifetimes,
    refresh_lifetime: Option<i64>,
    refresh_count: i64,
    attrs: &Attributes,
) -> Result<Issued> {
    let now = now_ms();
    let lifetime_err = || Error::internal("token lifetime overflows");
    let token = fresh_value(c)?;
    let refresh = match refresh_lifetime {
        Some(l) => Some(RefreshToken {
            token: fresh_value(c)?,
            status: APPROVED.into(),
            issued_at: now,
            expires_at: views::expires_at(now, l).ok_or_else(lifetime_err)?,
        }),
        None => None,
    };
    let t = AccessToken {
        token,
        client_id: client_id.to_owned(),
        scope: scope.to_owned(),
        status: APPROVED.into(),
        issued_at: now,
        expires_at: views::expires_at(now, lifetimes.access).ok_or_else(lifetime_err)?,
        refresh,
        refresh_count,
    };
    insert_access(c, &t)?;
    put_attributes(c, PUT_TOKEN_ATTR, &t.token, attrs)?;
    Ok(Issued {
        expires_in: lifetimes.access,
        scope: t.scope,
        refresh_token: t.refresh.map(|r| r.token),
        issued_at: now,
        access_token: t.token,
    })
}

fn access_view(c: &Connection, token: &str, org: &str, now: i64) -> Result<Option<Value>> {
    let Some(t) = access_by_token(c, token)? else {
        return Ok(None);
    };
    let app = app_of(c, &t.client_id)?;
    let attrs = attributes(c, TOKEN_ATTRS, &t.token)?;
    Ok(Some(views::access_introspection(
        &t, &app, &attrs, org, now,
    )))
}

fn refresh_view(c: &Connection, token: &str, org: &str, now: i64) -> Result<Option<Value>> {
    let Some(t) = access_by_refresh(c, token)? else {
        return Ok(None);
    };
    let Some(r) = &t.refresh else {
        return Ok(None);
    };
    let app = app_of(c, &t.client_id)?;
    let attrs = attributes(c, TOKEN_ATTRS, &t.token)?;
    Ok(Some(views::refresh_introspection(
        &t, r, &app, &attrs, org, now,
    )))
}

fn code_view(c: &Connection, code: &str, now: i64) -> Result<Option<Value>> {
    let Some(cd) = code_by_code(c, code)? else {
        return Ok(None);
    };
    let app = app_of(c, &cd.client_id)?;
    let attrs = attributes(c, CODE_ATTRS, code)?;
    Ok(Some(views::code_introspection(&cd, &app, &attrs, now)))
}
