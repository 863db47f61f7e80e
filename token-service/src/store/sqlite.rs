//! The embedded store: one SQLite file in WAL mode with `synchronous=FULL`,
//! one writer connection behind a mutex (every write is one `BEGIN IMMEDIATE`
//! transaction, committed and fsynced before it is acknowledged) and a small
//! pool of read-only connections. All methods block: writes (which wait for
//! fsync) run on `spawn_blocking`; short reads may run on the executor (see
//! `Store` in store.rs).

use super::{
    access_changes, app_changes, check_exchange, check_mergeable, check_refresh, check_revoker,
    client_changes, client_exists, code_changes, issued, merged, missing_app, new_access,
    revoke_order, token_exists, unknown_client, Caller, Change, ChangeRow, FeedRead, Hashing,
    Issued, Kind, Lifetimes, Lookup, Op, Revoked, Statuses, FRESH_VALUE_TRIES, HASHING_SETTING,
    SCHEMA_VERSION,
};
use crate::error::{Error, Result};
use crate::products::{unknown_product, ApiProduct, SubscriptionStatus};
use crate::util::{now_ms, random_alnum};
use crate::views::{self, AccessToken, App, Attributes, AuthCode, RefreshToken};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// The migrations, in order: `MIGRATIONS[i]` makes version `i + 1`. A file
/// made before `schema_migrations` existed has `PRAGMA user_version = 1`
/// and no such table: it is adopted as version 1.
const MIGRATIONS: [&str; 4] = [SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4];

pub(crate) const SCHEMA_V1: &str = "
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

/// The change feed: `id` is the cursor (AUTOINCREMENT: never reused, and in
/// commit order since the one writer serializes the transactions);
/// `change_horizon` remembers the highest pruned cursor.
const SCHEMA_V2: &str = "
CREATE TABLE changes (
    id    INTEGER PRIMARY KEY AUTOINCREMENT,
    kind  TEXT NOT NULL,
    hash  TEXT NOT NULL,
    op    TEXT NOT NULL,
    at_ms INTEGER NOT NULL
);
CREATE INDEX changes_at ON changes (at_ms);
CREATE TABLE change_horizon (
    one            INTEGER PRIMARY KEY CHECK (one = 1),
    pruned_through INTEGER NOT NULL
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

/// API products (Apigee's JSON as given) and the apps' subscriptions, in
/// the order they were made (`position`); the apps' `api_products` become
/// approved subscriptions.
const SCHEMA_V4: &str = "
CREATE TABLE api_products (
    name       TEXT PRIMARY KEY,
    definition TEXT NOT NULL,   -- JSON, Apigee's apiproducts shape
    updated_at INTEGER NOT NULL -- epoch ms
);
CREATE TABLE app_products (
    client_id TEXT NOT NULL REFERENCES apps(client_id),
    product   TEXT NOT NULL,
    status    TEXT NOT NULL CHECK (status IN ('approved', 'pending', 'revoked')),
    position  INTEGER NOT NULL,
    PRIMARY KEY (client_id, product)
) WITHOUT ROWID;
CREATE INDEX app_products_product ON app_products (product);
CREATE INDEX access_tokens_client ON access_tokens (client_id);
ALTER TABLE apps ADD COLUMN status TEXT NOT NULL DEFAULT 'approved'
    CHECK (status IN ('approved', 'revoked'));
ALTER TABLE apps ADD COLUMN key_status TEXT NOT NULL DEFAULT 'approved'
    CHECK (key_status IN ('approved', 'revoked'));
ALTER TABLE apps ADD COLUMN developer_status TEXT NOT NULL DEFAULT 'active'
    CHECK (developer_status IN ('active', 'inactive'));
INSERT OR IGNORE INTO app_products (client_id, product, status, position)
    SELECT a.client_id, j.value, 'approved', j.key FROM apps a, json_each(a.api_products) j;
";

/// An app, with its approved subscriptions (their names, and the
/// definitions of those that have one), in its order.
const APP_BY_CLIENT: &str = "SELECT a.app_id, a.name, a.developer_email, a.developer_id, \
     (SELECT json_group_array(product) FROM (SELECT s.product FROM app_products s \
      WHERE s.client_id = a.client_id AND s.status = 'approved' ORDER BY s.position)), \
     a.attributes, a.redirect_uris, a.client_id, a.client_secret, \
     (SELECT json_group_array(json(definition)) FROM (SELECT p.definition FROM app_products s \
      JOIN api_products p ON p.name = s.product \
      WHERE s.client_id = a.client_id AND s.status = 'approved' ORDER BY s.position)) \
     , a.status, a.key_status, a.developer_status \
     FROM apps a WHERE a.client_id = ?1";
const ACCESS_BY_TOKEN: &str = "SELECT token, client_id, scope, status, issued_at, expires_at, \
     refresh_token, refresh_token_status, refresh_token_issued_at, refresh_token_expires_at, \
     refresh_count, token_fp, refresh_token_fp FROM access_tokens WHERE token = ?1";
const ACCESS_BY_REFRESH: &str = "SELECT token, client_id, scope, status, issued_at, expires_at, \
     refresh_token, refresh_token_status, refresh_token_issued_at, refresh_token_expires_at, \
     refresh_count, token_fp, refresh_token_fp FROM access_tokens WHERE refresh_token = ?1";
const LIVE_BY_CLIENT: &str = "SELECT token, client_id, scope, status, issued_at, expires_at, \
     refresh_token, refresh_token_status, refresh_token_issued_at, refresh_token_expires_at, \
     refresh_count, token_fp, refresh_token_fp FROM access_tokens WHERE client_id = ?1 \
     AND status = 'approved' AND (expires_at = -1 OR expires_at > ?2)";
const CODE_BY_CODE: &str = "SELECT code, client_id, redirect_uri, scope, status, issued_at, \
     expires_at, code_fp FROM authorization_codes WHERE code = ?1";
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

pub struct Sqlite {
    path: PathBuf,
    hashing: Hashing,
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

impl Sqlite {
    /// Opens (creating if missing) the database at `path`, migrates the
    /// schema and opens `readers` read connections; tokens as they are.
    pub fn open(path: &Path, readers: usize) -> std::result::Result<Self, String> {
        Self::open_with(path, readers, false)
    }

    /// `open`, with tokens hashed at rest when `hash_tokens` (a plain store
    /// is hashed in place; a hashed store needs it).
    pub fn open_with(
        path: &Path,
        readers: usize,
        hash_tokens: bool,
    ) -> std::result::Result<Self, String> {
        // Read what the file is before anything writes to it (the WAL
        // switch below rewrites its header).
        if path.exists() {
            let c = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(err("cannot open the database"))?;
            check_ours(&c, path)?;
        }
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
        let hashing = hashing_mode(&mut writer, hash_tokens)?;

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
            hashing,
            writer: Mutex::new(writer),
            readers: Mutex::new(pool),
            reader_free: Condvar::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn hashing(&self) -> Hashing {
        self.hashing
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

    pub fn create_app(&self, app: &App, subs: &[(String, SubscriptionStatus)]) -> Result<()> {
        self.write(|c| {
            if app_by_client(c, &app.client_id)?.is_some() {
                return Err(client_exists());
            }
            c.prepare_cached(
                "INSERT INTO apps (app_id, name, developer_email, developer_id, api_products, \
                 attributes, redirect_uris, client_id, client_secret, created_at, status, \
                 key_status, developer_status) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
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
                app.status,
                app.key_status,
                app.developer_status,
            ])?;
            for (p, status) in subs {
                put_subscription(c, &app.client_id, p, *status)?;
            }
            insert_changes(c, &client_changes(&app.client_id, Op::Create))
        })
    }

    pub fn put_product(&self, p: &ApiProduct) -> Result<bool> {
        self.write(|c| {
            let new = self.product_in(c, &p.name)?.is_none();
            c.prepare_cached(
                "INSERT INTO api_products (name, definition, updated_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (name) DO UPDATE SET definition = excluded.definition, \
                 updated_at = excluded.updated_at",
            )?
            .execute(rusqlite::params![p.name, to_json(p)?, now_ms()])?;
            let clients: Vec<String> = c
                .prepare_cached("SELECT client_id FROM app_products WHERE product = ?1")?
                .query_map([&p.name], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            for client in clients {
                insert_changes(
                    c,
                    &app_changes(&client, &live_tokens(c, &client)?, Op::Product),
                )?;
            }
            Ok(new)
        })
    }

    pub fn product(&self, name: &str) -> Result<Option<ApiProduct>> {
        self.read(|c| self.product_in(c, name))
    }

    fn product_in(&self, c: &Connection, name: &str) -> Result<Option<ApiProduct>> {
        Ok(
            c.prepare_cached("SELECT definition FROM api_products WHERE name = ?1")?
                .query_row([name], |r| json_col(r, 0))
                .optional()?,
        )
    }

    pub fn subscribe(
        &self,
        client_id: &str,
        product: &str,
        status: SubscriptionStatus,
    ) -> Result<()> {
        self.write(|c| {
            require_client(c, client_id)?;
            // A subscription to a name no product has yet (an app's
            // `api_products`) may change status; a new one needs the product.
            let subscribed: bool = c
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM app_products WHERE client_id = ?1 AND product = ?2)",
                )?
                .query_row([client_id, product], |r| r.get(0))?;
            if !subscribed && self.product_in(c, product)?.is_none() {
                return Err(unknown_product());
            }
            put_subscription(c, client_id, product, status)?;
            insert_changes(
                c,
                &app_changes(client_id, &live_tokens(c, client_id)?, Op::Subscription),
            )
        })
    }

    pub fn set_statuses(&self, client_id: &str, st: &Statuses) -> Result<bool> {
        self.write(|c| {
            let n = c
                .prepare_cached(
                    "UPDATE apps SET status = COALESCE(?2, status), \
                     key_status = COALESCE(?3, key_status), \
                     developer_status = COALESCE(?4, developer_status) WHERE client_id = ?1",
                )?
                .execute(rusqlite::params![
                    client_id,
                    st.status,
                    st.key_status,
                    st.developer_status
                ])?;
            if n == 0 {
                return Ok(false);
            }
            insert_changes(
                c,
                &app_changes(client_id, &live_tokens(c, client_id)?, Op::Status),
            )?;
            Ok(true)
        })
    }

    pub fn subscriptions(
        &self,
        client_id: &str,
    ) -> Result<Option<Vec<(String, SubscriptionStatus)>>> {
        self.read(|c| {
            if app_by_client(c, client_id)?.is_none() {
                return Ok(None);
            }
            let rows: Vec<(String, String)> = c
                .prepare_cached(
                    "SELECT product, status FROM app_products WHERE client_id = ?1 \
                     ORDER BY position, product",
                )?
                .query_map([client_id], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            rows.into_iter()
                .map(|(p, s)| {
                    SubscriptionStatus::parse(&s)
                        .map(|s| (p, s))
                        .ok_or_else(|| {
                            Error::internal("a stored subscription has an unknown status")
                        })
                })
                .collect::<Result<Vec<_>>>()
                .map(Some)
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
            put_attributes(c, PUT_TOKEN_ATTR, &t.token, attrs)?;
            insert_changes(c, &access_changes(t, Op::Import))
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
            put_attributes(c, PUT_CODE_ATTR, &code.code, attrs)?;
            insert_changes(c, &code_changes(code, Op::Import))
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
            let t = check_mergeable(access_by_token(c, token)?, now)?;
            let all = merged(attributes(c, TOKEN_ATTRS, token)?, attrs, max_attributes)?;
            put_attributes(c, PUT_TOKEN_ATTR, token, attrs)?;
            let app = app_of(c, &t.client_id)?;
            insert_changes(c, &access_changes(&t, Op::Merge))?;
            Ok(views::access_introspection(&t, &app, &all, org, now))
        })
    }

    /// `client_credentials` grant: a new access token, no refresh token.
    pub fn client_credentials(
        &self,
        client_id: &str,
        scope: &str,
        lifetimes: Lifetimes,
    ) -> Result<Issued> {
        self.write(|c| {
            issue(
                c,
                self.hashing,
                client_id,
                scope,
                lifetimes,
                None,
                0,
                &Attributes::new(),
            )
        })
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
            let cd = check_exchange(code_by_code(c, code)?, client_id, redirect_uri, now)?;
            c.prepare_cached("UPDATE authorization_codes SET status = 'revoked' WHERE code = ?1")?
                .execute([code])?;
            let attrs = attributes(c, CODE_ATTRS, code)?;
            let out = issue(
                c,
                self.hashing,
                client_id,
                &cd.scope,
                lifetimes,
                Some(lifetimes.refresh),
                0,
                &attrs,
            )?;
            insert_changes(c, &code_changes(&cd, Op::Exchange))?;
            Ok(out)
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
            let old = check_refresh(access_by_refresh(c, refresh_token)?, client_id, now)?;
            c.prepare_cached(
                "UPDATE access_tokens SET status = 'revoked', refresh_token_status = 'revoked' \
                 WHERE token = ?1",
            )?
            .execute([&old.token])?;
            let attrs = attributes(c, TOKEN_ATTRS, &old.token)?;
            let out = issue(
                c,
                self.hashing,
                client_id,
                &old.scope,
                lifetimes,
                Some(lifetimes.refresh),
                old.refresh_count.saturating_add(1),
                &attrs,
            )?;
            insert_changes(c, &access_changes(&old, Op::Refresh))?;
            Ok(out)
        })
    }

    /// RFC 7009 revocation. `hint` is looked at first, then the other kinds.
    pub fn revoke(&self, value: &str, hint: Option<Kind>, caller: &Caller) -> Result<Revoked> {
        self.write(|c| {
            for kind in revoke_order(hint) {
                let (found, sql) = match kind {
                    Kind::Access => (
                        access_by_token(c, value)?
                            .map(|t| (t.client_id.clone(), access_changes(&t, Op::Revoke))),
                        "UPDATE access_tokens SET status = 'revoked' WHERE token = ?1",
                    ),
                    Kind::Refresh => (
                        access_by_refresh(c, value)?
                            .map(|t| (t.client_id.clone(), access_changes(&t, Op::Revoke))),
                        "UPDATE access_tokens SET status = 'revoked', \
                         refresh_token_status = 'revoked' WHERE refresh_token = ?1",
                    ),
                    Kind::Code => (
                        code_by_code(c, value)?
                            .map(|cd| (cd.client_id.clone(), code_changes(&cd, Op::Revoke))),
                        "UPDATE authorization_codes SET status = 'revoked' WHERE code = ?1",
                    ),
                };
                let Some((owner, changes)) = found else {
                    continue;
                };
                check_revoker(caller, &owner)?;
                c.prepare_cached(sql)?.execute([value])?;
                insert_changes(c, &changes)?;
                return Ok(Revoked::Token {
                    kind,
                    client_id: owner,
                });
            }
            Ok(Revoked::NotFound)
        })
    }

    /// The feed rows after `after` (0: all retained), then the horizon and
    /// the head, in one read transaction.
    pub fn changes(&self, after: i64, limit: i64) -> Result<FeedRead> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT id, kind, hash, op FROM changes WHERE id > ?1 ORDER BY id LIMIT ?2",
            )?;
            let rows = st
                .query_map([after, limit], |r| {
                    Ok(ChangeRow {
                        cursor: r.get(0)?,
                        kind: r.get(1)?,
                        hash: r.get(2)?,
                        op: r.get(3)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let (pruned_through, head, committed) = c
                .prepare_cached(
                    "SELECT pruned_through, \
                     COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'changes'), 0), \
                     COALESCE((SELECT MAX(id) FROM changes), 0) \
                     FROM change_horizon",
                )?
                .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            Ok(FeedRead {
                rows,
                pruned_through,
                head,
                committed,
            })
        })
    }

    /// Deletes the prefix of the feed older than `retention_ms`.
    pub fn prune_changes(&self, retention_ms: i64) -> Result<u64> {
        let cutoff = now_ms().saturating_sub(retention_ms);
        self.write(|c| {
            let last: Option<i64> = c
                .prepare_cached("SELECT max(id) FROM changes WHERE at_ms < ?1")?
                .query_row([cutoff], |r| r.get(0))?;
            let Some(last) = last else { return Ok(0) };
            let n = c
                .prepare_cached("DELETE FROM changes WHERE id <= ?1")?
                .execute([last])?;
            c.prepare_cached("UPDATE change_horizon SET pruned_through = max(pruned_through, ?1)")?
                .execute([last])?;
            Ok(u64::try_from(n).unwrap_or(u64::MAX))
        })
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(Error::internal)
}

/// Every table and index the service's schema versions create.
const OWN_OBJECTS: [&str; 13] = [
    "apps",
    "access_tokens",
    "token_attributes",
    "authorization_codes",
    "code_attributes",
    "changes",
    "changes_at",
    "change_horizon",
    "schema_migrations",
    "api_products",
    "app_products",
    "app_products_product",
    "access_tokens_client",
];

/// A SQLite error on one line: the message without the SQL it quotes.
fn sqlite_text(e: &rusqlite::Error) -> String {
    match e {
        rusqlite::Error::SqlInputError { msg, .. } => msg.clone(),
        rusqlite::Error::SqliteFailure(_, Some(msg)) => msg.clone(),
        other => other.to_string(),
    }
    .split_whitespace()
    .collect::<Vec<_>>()
    .join(" ")
}

/// Refuses a file that is neither empty nor the service's own: one made
/// by another application must not be adopted (or changed). The service's
/// own has `apps`, `access_tokens` and `schema_migrations` (or, made before
/// that table, `PRAGMA user_version` 1 and only the service's tables).
fn check_ours(c: &Connection, path: &Path) -> std::result::Result<(), String> {
    let unreadable = |e: rusqlite::Error| {
        format!(
            "cannot read {} as a SQLite database: {}",
            path.display(),
            sqlite_text(&e)
        )
    };
    let names: Vec<String> = c
        .prepare(
            "SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
             ORDER BY name",
        )
        .and_then(|mut st| {
            st.query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(unreadable)?;
    if names.is_empty() {
        return Ok(());
    }
    let has = |n: &str| names.iter().any(|x| x == n);
    let user_version: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(unreadable)?;
    let ours = has("apps")
        && has("access_tokens")
        && (has("schema_migrations")
            || (user_version == 1 && names.iter().all(|n| OWN_OBJECTS.contains(&n.as_str()))));
    if ours {
        return Ok(());
    }
    let mut shown: Vec<&str> = names.iter().take(5).map(String::as_str).collect();
    if names.len() > 5 {
        shown.push("…");
    }
    Err(format!(
        "{} is not a token-service database (it holds {}): refusing to use or change it; \
         give --db a new file or the service's own",
        path.display(),
        shown.join(", ")
    ))
}

/// The schema version of an open database: `schema_migrations`' highest
/// version, else `PRAGMA user_version` (a file made before the table).
fn schema_version(c: &Connection) -> std::result::Result<i64, String> {
    let has_table: bool = c
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' \
             AND name = 'schema_migrations')",
            [],
            |r| r.get(0),
        )
        .map_err(err("cannot read the schema"))?;
    if has_table {
        c.query_row(
            "SELECT COALESCE(max(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )
        .map_err(err("cannot read schema_migrations"))
    } else {
        c.query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(err("cannot read the schema version"))
    }
}

/// Applies the missing migrations in one `BEGIN IMMEDIATE` transaction.
pub(crate) fn migrate(conn: &mut Connection) -> std::result::Result<(), String> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err("cannot begin the schema migration"))?;
    let version = schema_version(&tx)?;
    if !(0..=SCHEMA_VERSION).contains(&version) {
        return Err(format!(
            "the database has schema version {version}; this token-service knows up to {SCHEMA_VERSION}"
        ));
    }
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER PRIMARY KEY,
             applied_at INTEGER NOT NULL  -- epoch ms
         );",
    )
    .map_err(err("cannot create schema_migrations"))?;
    let now = now_ms();
    // A file from before schema_migrations: record the versions it has.
    for v in 1..=version {
        tx.execute(
            "INSERT OR IGNORE INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            [v, now],
        )
        .map_err(err("cannot record the schema version"))?;
    }
    for (v, sql) in (1..).zip(MIGRATIONS) {
        if v <= version {
            continue;
        }
        tx.execute_batch(sql)
            .map_err(|e| format!("cannot apply schema migration {v}: {}", sqlite_text(&e)))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            [v, now],
        )
        .map_err(err("cannot record the schema version"))?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(err("cannot set the schema version"))?;
    tx.commit().map_err(err("cannot commit the schema"))
}

/// The store's hashing mode (`store_settings`), after hashing a plain
/// store in place when `want` (one `BEGIN IMMEDIATE` transaction: every
/// token, refresh token and code becomes its key, its fingerprints kept).
/// A hashed store started without `want` is refused: it cannot go back.
fn hashing_mode(conn: &mut Connection, want: bool) -> std::result::Result<Hashing, String> {
    if want {
        // What the in-place hashing deletes is overwritten, not left in
        // free pages.
        conn.execute_batch("PRAGMA secure_delete = ON")
            .map_err(err("cannot set secure_delete"))?;
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err("cannot begin reading the store's settings"))?;
    let setting: Option<String> = tx
        .query_row(
            "SELECT value FROM store_settings WHERE name = ?1",
            [HASHING_SETTING],
            |r| r.get(0),
        )
        .optional()
        .map_err(err("cannot read store_settings"))?;
    match (setting.as_deref(), want) {
        (None, false) => Ok(Hashing::Plain),
        (Some("sha256"), true) => Ok(Hashing::Sha256),
        (Some(_), false) => Err(super::hashed_store_needs_the_flag()),
        (Some(other), true) => Err(format!("unknown token hashing {other:?} in store_settings")),
        (None, true) => {
            let (tokens, codes) = hash_in_place(&tx)
                .map_err(|e| format!("cannot hash the tokens in place: {}", e.description))?;
            tx.execute(
                "INSERT INTO store_settings (name, value) VALUES (?1, 'sha256')",
                [HASHING_SETTING],
            )
            .map_err(err("cannot record the token hashing"))?;
            tx.commit()
                .map_err(err("cannot commit the token hashing"))?;
            // Copy the rewritten pages into the file and empty the WAL, so
            // that neither holds a page with the old values.
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .map_err(err("cannot checkpoint the hashed store"))?;
            tracing::info!(
                access_tokens = tokens,
                codes,
                "tokens hashed in place (--hash-tokens)"
            );
            Ok(Hashing::Sha256)
        }
    }
}

/// Rewrites every access token (with its refresh token and attributes) and
/// every code (with its attributes) under its key: a copy under the key,
/// the attributes moved to it, the old row deleted. Answers the counts.
fn hash_in_place(c: &Connection) -> Result<(usize, usize)> {
    let h = Hashing::Sha256;
    let rows: Vec<(String, Option<String>)> = c
        .prepare("SELECT token, refresh_token FROM access_tokens")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (token, refresh) in &rows {
        c.execute(
            "INSERT INTO access_tokens (token, client_id, scope, status, issued_at, expires_at, \
             refresh_token, refresh_token_status, refresh_token_issued_at, \
             refresh_token_expires_at, refresh_count, token_fp, refresh_token_fp) \
             SELECT ?1, client_id, scope, status, issued_at, expires_at, ?2, \
             refresh_token_status, refresh_token_issued_at, refresh_token_expires_at, \
             refresh_count, ?3, ?4 FROM access_tokens WHERE token = ?5",
            rusqlite::params![
                h.key(token),
                refresh.as_deref().map(|r| h.key(r)),
                h.fingerprint(oauthv2info_names::TokenKind::AccessToken, token),
                refresh
                    .as_deref()
                    .and_then(|r| h.fingerprint(oauthv2info_names::TokenKind::RefreshToken, r)),
                token,
            ],
        )?;
        c.execute(
            "UPDATE token_attributes SET token = ?1 WHERE token = ?2",
            [h.key(token).as_str(), token.as_str()],
        )?;
        c.execute("DELETE FROM access_tokens WHERE token = ?1", [token])?;
    }
    let codes: Vec<String> = c
        .prepare("SELECT code FROM authorization_codes")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for code in &codes {
        c.execute(
            "INSERT INTO authorization_codes (code, client_id, redirect_uri, scope, status, \
             issued_at, expires_at, code_fp) SELECT ?1, client_id, redirect_uri, scope, status, \
             issued_at, expires_at, ?2 FROM authorization_codes WHERE code = ?3",
            rusqlite::params![
                h.key(code),
                h.fingerprint(oauthv2info_names::TokenKind::AuthorizationCode, code),
                code,
            ],
        )?;
        c.execute(
            "UPDATE code_attributes SET code = ?1 WHERE code = ?2",
            [h.key(code).as_str(), code.as_str()],
        )?;
        c.execute("DELETE FROM authorization_codes WHERE code = ?1", [code])?;
    }
    Ok((rows.len(), codes.len()))
}

/// Writes the feed rows of a change, in the change's transaction.
fn insert_changes(c: &Connection, changes: &[Change]) -> Result<()> {
    let mut st =
        c.prepare_cached("INSERT INTO changes (kind, hash, op, at_ms) VALUES (?1, ?2, ?3, ?4)")?;
    let now = now_ms();
    for ch in changes {
        st.execute(rusqlite::params![
            ch.kind.hint(),
            ch.hash,
            ch.op.as_str(),
            now
        ])?;
    }
    Ok(())
}

/// Adds a subscription at the end of the app's list, or changes its status.
fn put_subscription(
    c: &Connection,
    client_id: &str,
    product: &str,
    status: SubscriptionStatus,
) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO app_products (client_id, product, status, position) \
         VALUES (?1, ?2, ?3, (SELECT COALESCE(max(position) + 1, 0) FROM app_products \
         WHERE client_id = ?1)) \
         ON CONFLICT (client_id, product) DO UPDATE SET status = excluded.status",
    )?
    .execute(rusqlite::params![client_id, product, status.as_str()])?;
    Ok(())
}

/// An app's approved, unexpired access tokens (for the feed).
fn live_tokens(c: &Connection, client_id: &str) -> Result<Vec<AccessToken>> {
    let rows = c
        .prepare_cached(LIVE_BY_CLIENT)?
        .query_map(rusqlite::params![client_id, now_ms()], access_row)?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

fn require_client(c: &Connection, client_id: &str) -> Result<()> {
    if app_by_client(c, client_id)?.is_none() {
        return Err(unknown_client());
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
                products: json_col(r, 9)?,
                status: r.get(10)?,
                key_status: r.get(11)?,
                developer_status: r.get(12)?,
            })
        })
        .optional()?;
    Ok(app)
}

fn app_of(c: &Connection, client_id: &str) -> Result<App> {
    app_by_client(c, client_id)?.ok_or_else(missing_app)
}

fn access_row(r: &Row) -> rusqlite::Result<AccessToken> {
    let refresh = match r.get::<_, Option<String>>(6)? {
        Some(token) => Some(RefreshToken {
            token,
            fp: r.get(12)?,
            status: r.get(7)?,
            issued_at: r.get(8)?,
            expires_at: r.get(9)?,
        }),
        None => None,
    };
    Ok(AccessToken {
        token: r.get(0)?,
        token_fp: r.get(11)?,
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
                fp: r.get(7)?,
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
         refresh_count, token_fp, refresh_token_fp) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
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
        t.token_fp,
        r.and_then(|r| r.fp.as_deref()),
    ])?;
    Ok(())
}

fn insert_code(c: &Connection, code: &AuthCode) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO authorization_codes (code, client_id, redirect_uri, scope, status, \
         issued_at, expires_at, code_fp) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(rusqlite::params![
        code.code,
        code.client_id,
        code.redirect_uri,
        code.scope,
        code.status,
        code.issued_at,
        code.expires_at,
        code.fp,
    ])?;
    Ok(())
}

/// A fresh random token value not used by any token, refresh token or code.
fn fresh_value(c: &Connection, h: Hashing) -> Result<String> {
    for _ in 0..FRESH_VALUE_TRIES {
        let v = random_alnum(32);
        if !value_in_use(c, &h.key(&v))? {
            return Ok(v);
        }
    }
    Err(Error::internal("could not generate an unused token value"))
}

/// Inserts a new access token (and refresh token when `refresh_lifetime`
/// is given) with `attrs` copied onto it.
#[allow(clippy::too_many_arguments)]
fn issue(
    c: &Connection,
    h: Hashing,
    client_id: &str,
    scope: &str,
    lifetimes: Lifetimes,
    refresh_lifetime: Option<i64>,
    refresh_count: i64,
    attrs: &Attributes,
) -> Result<Issued> {
    let now = now_ms();
    let token = fresh_value(c, h)?;
    let refresh = match refresh_lifetime {
        Some(l) => Some((fresh_value(c, h)?, l)),
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
    insert_access(c, &stored)?;
    put_attributes(c, PUT_TOKEN_ATTR, &stored.token, attrs)?;
    Ok(issued(t, lifetimes))
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// A file made by the token service before schema_migrations (schema 1
    /// in `PRAGMA user_version`) is adopted as version 1, migrated to the
    /// latest, and keeps its tokens.
    #[test]
    fn a_version_1_file_is_migrated_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(SCHEMA_V1).unwrap();
            c.pragma_update(None, "user_version", 1).unwrap();
            c.execute_batch(
                "INSERT INTO apps VALUES ('app-1', 'old', 'o@example.com', 'dev-1', '[\"P1\",\"P0\"]', '{}', \
                 '[]', 'cid-old', 'secret', 0);
                 INSERT INTO access_tokens (token, client_id, scope, status, issued_at, expires_at) \
                 VALUES ('AT-old', 'cid-old', 'READ', 'approved', 0, -1);
                 INSERT INTO token_attributes VALUES ('AT-old', 'a', '1');",
            )
            .unwrap();
        }
        for _ in 0..2 {
            let s = Sqlite::open(&path, 1).unwrap();
            let v = s.introspect("AT-old", Lookup::Any, "o").unwrap();
            assert_eq!(v["active"], true);
            assert_eq!(v["profile"]["attributes"]["a"], "1");
            let read = s.changes(0, 10).unwrap();
            assert!(read.rows.is_empty());
        }
        let c = Connection::open(&path).unwrap();
        let versions: Vec<i64> = c
            .prepare("SELECT version FROM schema_migrations ORDER BY version")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(versions, vec![1, 2, 3, 4]);
        // Version 4: the app's products became approved subscriptions, in
        // its order.
        let s = Sqlite::open(&path, 1).unwrap();
        let subs = s.subscriptions("cid-old").unwrap().unwrap();
        assert_eq!(
            subs,
            [
                ("P1".to_string(), SubscriptionStatus::Approved),
                ("P0".to_string(), SubscriptionStatus::Approved)
            ]
        );
        let uv: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(uv, SCHEMA_VERSION);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.db");
        drop(Sqlite::open(&path, 1).unwrap());
        let c = Connection::open(&path).unwrap();
        c.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (99, 0)",
            [],
        )
        .unwrap();
        drop(c);
        let e = Sqlite::open(&path, 1).err().unwrap();
        assert!(e.contains("schema version 99"), "{e}");
    }
}
