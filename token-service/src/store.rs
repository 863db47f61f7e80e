//! The store interface the HTTP layer talks to: [`Store`], one enum over
//! the two implementations (the embedded SQLite file, `sqlite`, and a
//! shared PostgreSQL database, `postgres`), with the same methods and the
//! same semantics. What both implementations must decide alike (the checks
//! of a merge, a grant or a revocation, the tokens a grant issues, the
//! change-feed rows a write adds, the feed's paging rules) is written once
//! here; the implementations only read and write rows.

pub mod postgres;
pub mod sqlite;

use crate::error::{Error, Result};
use crate::products::{ApiProduct, SubscriptionStatus};
use crate::views::{self, AccessToken, App, Attributes, AuthCode, RefreshToken, APPROVED};
use axum::http::StatusCode;
use oauthv2info_names::{token_hash_hex, TokenKind};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;

/// The newest schema version this build knows (`schema_migrations`):
/// 1 is the original schema, 2 adds the change feed, 3 the fingerprint
/// columns and `store_settings` of tokens hashed at rest, 4 the API
/// products and the apps' subscriptions to them.
pub const SCHEMA_VERSION: i64 = 4;

// ---------------------------------------------------------------- tokens hashed at rest

/// How the store keeps token values (access tokens, refresh tokens,
/// codes): as they are, or (`--hash-tokens`) only as a SHA-256 of the value
/// plus the change feed's fingerprint, so that the database holds no usable
/// token (docs/token-service.md, "Tokens hashed at rest").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hashing {
    Plain,
    Sha256,
}

/// The prefix of a hashed value in the database: `sha256:` and 64 hex digits.
pub const HASH_PREFIX: &str = "sha256:";
/// `store_settings` row that records the mode (absent: plain).
pub const HASHING_SETTING: &str = "token_hashing";

impl Hashing {
    /// What the store keeps for a token value, and looks it up by.
    pub fn key(self, value: &str) -> String {
        match self {
            Hashing::Plain => value.to_owned(),
            Hashing::Sha256 => sha256_key(value),
        }
    }

    /// The feed's fingerprint of a value, kept beside its hash (None: the
    /// value itself is kept, and the fingerprint is computed from it).
    pub fn fingerprint(self, kind: TokenKind, value: &str) -> Option<String> {
        match self {
            Hashing::Plain => None,
            Hashing::Sha256 => Some(token_hash_hex(kind, value.as_bytes())),
        }
    }

    /// An access token (and its refresh token) as the store keeps it.
    pub fn access(self, mut t: AccessToken) -> AccessToken {
        t.token_fp = self.fingerprint(TokenKind::AccessToken, &t.token);
        t.token = self.key(&t.token);
        if let Some(r) = t.refresh.as_mut() {
            r.fp = self.fingerprint(TokenKind::RefreshToken, &r.token);
            r.token = self.key(&r.token);
        }
        t
    }

    /// A code as the store keeps it.
    pub fn code(self, mut cd: AuthCode) -> AuthCode {
        cd.fp = self.fingerprint(TokenKind::AuthorizationCode, &cd.code);
        cd.code = self.key(&cd.code);
        cd
    }

    /// An introspection answer for the caller who presented `presented`:
    /// the profile's token members that hold a hash become the presented
    /// value (when it is that token) or `""` (the value is not kept).
    pub fn reveal(self, mut v: Value, presented: &str) -> Value {
        if self == Hashing::Plain {
            return v;
        }
        let key = self.key(presented);
        if let Some(profile) = v.get_mut("profile").and_then(Value::as_object_mut) {
            for member in ["access_token", "refresh_token", "code"] {
                if let Some(Value::String(s)) = profile.get_mut(member) {
                    if *s == key {
                        *s = presented.to_owned();
                    } else if s.starts_with(HASH_PREFIX) {
                        s.clear();
                    }
                }
            }
        }
        v
    }
}

fn sha256_key(value: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(value.as_bytes());
    let mut out = String::with_capacity(HASH_PREFIX.len() + 64);
    out.push_str(HASH_PREFIX);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The statuses `PUT /v1/apps/{client_id}/status` changes (None: kept).
#[derive(Debug, Clone, Default)]
pub struct Statuses {
    pub status: Option<&'static str>,
    pub key_status: Option<&'static str>,
    pub developer_status: Option<&'static str>,
}

/// Which kind of token a value is looked up as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Access,
    Refresh,
    Code,
}

impl Kind {
    pub fn name(self) -> &'static str {
        self.token_kind().hint()
    }

    pub fn token_kind(self) -> TokenKind {
        match self {
            Kind::Access => TokenKind::AccessToken,
            Kind::Refresh => TokenKind::RefreshToken,
            Kind::Code => TokenKind::AuthorizationCode,
        }
    }
}

/// What an introspection looks a value up as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Access token, then refresh token.
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

// ---------------------------------------------------------------- the change feed

/// Why a token's profile changed (the feed's `op`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `/oauth2/revoke` revoked it (or the token it belongs with).
    Revoke,
    /// `/v1/accesstokens/attributes` merged attributes into it.
    Merge,
    /// `/v1/tokens` imported it (it was unknown before: a cached "inactive"
    /// answer is stale).
    Import,
    /// A `refresh_token` grant used it: the old access and refresh tokens
    /// are revoked.
    Refresh,
    /// An `authorization_code` grant used the code: it is revoked.
    Exchange,
    /// `/v1/apps` created the app (the client id was unknown before).
    Create,
    /// `/v1/apiproducts` created or changed a product the app subscribes to.
    Product,
    /// `/v1/apps/{client_id}/apiproducts/{name}` changed a subscription.
    Subscription,
    /// `/v1/apps/{client_id}/status` changed the app's, its key's or its
    /// developer's status.
    Status,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Revoke => "revoke",
            Op::Merge => "merge",
            Op::Import => "import",
            Op::Refresh => "refresh",
            Op::Exchange => "exchange",
            Op::Create => "create",
            Op::Product => "product",
            Op::Subscription => "subscription",
            Op::Status => "status",
        }
    }
}

/// One change-feed row to write, in the transaction of the change itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: TokenKind,
    /// `token_hash_hex(kind, token)`: the token itself never enters the feed.
    pub hash: String,
    pub op: Op,
}

impl Change {
    /// The change of a stored value: its kept fingerprint (hashed store),
    /// else the fingerprint of the value itself.
    fn new(kind: TokenKind, value: &str, fp: Option<&str>, op: Op) -> Self {
        Change {
            kind,
            hash: fp.map_or_else(|| token_hash_hex(kind, value.as_bytes()), str::to_owned),
            op,
        }
    }
}

/// The changes to an access token's profile: the access token's, and its
/// refresh token's (a refresh token's introspection shows the same profile).
pub fn access_changes(t: &AccessToken, op: Op) -> Vec<Change> {
    let mut out = vec![Change::new(
        TokenKind::AccessToken,
        &t.token,
        t.token_fp.as_deref(),
        op,
    )];
    if let Some(r) = &t.refresh {
        out.push(Change::new(
            TokenKind::RefreshToken,
            &r.token,
            r.fp.as_deref(),
            op,
        ));
    }
    out
}

pub fn code_changes(cd: &AuthCode, op: Op) -> Vec<Change> {
    vec![Change::new(
        TokenKind::AuthorizationCode,
        &cd.code,
        cd.fp.as_deref(),
        op,
    )]
}

pub fn client_changes(client_id: &str, op: Op) -> Vec<Change> {
    vec![Change::new(TokenKind::ClientId, client_id, None, op)]
}

/// The changes of an app whose products changed: its client id's, and
/// those of its live access tokens (approved, unexpired: the others answer
/// inactive, without products). The feed names tokens, not products, so
/// that filters of every version read it (docs/token-service.md, "API
/// products").
pub fn app_changes(client_id: &str, live: &[AccessToken], op: Op) -> Vec<Change> {
    let mut out = client_changes(client_id, op);
    for t in live {
        out.extend(access_changes(t, op));
    }
    out
}

/// A stored change, as the feed lists it.
#[derive(Debug, Clone)]
pub struct ChangeRow {
    pub cursor: i64,
    pub kind: String,
    pub hash: String,
    pub op: String,
}

/// What the store read for one feed request (both stores read the same).
#[derive(Debug)]
pub struct FeedRead {
    /// Rows with a cursor above the effective `after`, in cursor order, at
    /// most `limit`.
    pub rows: Vec<ChangeRow>,
    /// Every change up to this cursor has been pruned (0: none yet).
    pub pruned_through: i64,
    /// The highest cursor this database ever handed out (0: none).
    pub head: i64,
    /// The highest cursor of a committed change, read in the same snapshot
    /// as `rows` (at least `pruned_through`): every change committed later
    /// has a higher cursor (cursor order is commit order).
    pub committed: i64,
}

/// One answer of `GET /v1/changes`.
#[derive(Debug)]
pub enum Feed {
    Page {
        rows: Vec<ChangeRow>,
        next: i64,
        oldest: i64,
        /// The highest committed cursor: a reader that has nothing cached
        /// may start from it without reading the rest.
        head: i64,
    },
    /// The cursor is older than the retention window, or was never handed
    /// out by this database: the caller must drop its whole cache.
    Expired { oldest: i64 },
}

/// The feed's rules, on what the store read (read the page first, then the
/// horizon: pruning only moves the horizon up, so a page that lost rows to
/// a concurrent prune is always answered as expired).
///
/// - `after = 0` means "from the oldest retained", the same as
///   `after = oldest - 1`;
/// - `oldest` is `pruned_through + 1`: every change from it on is retained;
/// - `after` below `oldest - 1` (changes after it were pruned) or above the
///   head (a cursor from another database) is expired;
/// - `next` is the last listed cursor, else the effective `after`.
pub fn feed_answer(after: i64, read: FeedRead) -> Feed {
    let oldest = read.pruned_through.saturating_add(1);
    if after != 0 && (after < read.pruned_through || after > read.head) {
        return Feed::Expired { oldest };
    }
    let effective = if after == 0 {
        read.pruned_through
    } else {
        after
    };
    let next = read.rows.last().map_or(effective, |r| r.cursor);
    Feed::Page {
        head: read.committed.max(next).max(read.pruned_through),
        rows: read.rows,
        next,
        oldest,
    }
}

// ---------------------------------------------------------------- shared rules

/// The refusal of a hashed store started without `--hash-tokens`.
pub fn hashed_store_needs_the_flag() -> String {
    "the store keeps its tokens hashed (it was started with --hash-tokens): start every replica \
     with --hash-tokens; hashing cannot be undone"
        .to_owned()
}

pub fn token_exists() -> Error {
    Error::new(
        StatusCode::CONFLICT,
        "token_exists",
        "a token with this value already exists",
    )
}

pub fn client_exists() -> Error {
    Error::new(
        StatusCode::CONFLICT,
        "client_exists",
        "an app with this client_id already exists",
    )
}

pub fn unknown_client() -> Error {
    Error::new(
        StatusCode::BAD_REQUEST,
        "invalid_client",
        "no app has this client_id",
    )
}

pub fn missing_app() -> Error {
    Error::internal("a stored token names a client_id with no app")
}

/// A merge needs a known, approved, unexpired access token.
pub fn check_mergeable(t: Option<AccessToken>, now: i64) -> Result<AccessToken> {
    let t = t.ok_or_else(|| {
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
    Ok(t)
}

/// The attribute set after a merge, refused when it would exceed `max`.
pub fn merged(mut existing: Attributes, new: &Attributes, max: usize) -> Result<Attributes> {
    for (k, v) in new {
        existing.insert(k.clone(), v.clone());
    }
    if existing.len() > max {
        return Err(Error::invalid_request(format!(
            "the token would have {} custom attributes; the limit is {max}",
            existing.len()
        )));
    }
    Ok(existing)
}

/// An `authorization_code` grant's checks on the stored code.
pub fn check_exchange(
    cd: Option<AuthCode>,
    client_id: &str,
    redirect_uri: Option<&str>,
    now: i64,
) -> Result<AuthCode> {
    let cd = cd.filter(|cd| cd.client_id == client_id).ok_or_else(|| {
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
    Ok(cd)
}

/// A `refresh_token` grant's checks on the stored token.
pub fn check_refresh(old: Option<AccessToken>, client_id: &str, now: i64) -> Result<AccessToken> {
    let old = old
        .filter(|t| t.client_id == client_id)
        .ok_or_else(|| Error::invalid_grant("the refresh token is not valid for this client"))?;
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
    Ok(old)
}

/// RFC 7009: the hinted kind first, then the others.
pub fn revoke_order(hint: Option<Kind>) -> [Kind; 3] {
    match hint {
        None | Some(Kind::Access) => [Kind::Access, Kind::Refresh, Kind::Code],
        Some(Kind::Refresh) => [Kind::Refresh, Kind::Access, Kind::Code],
        Some(Kind::Code) => [Kind::Code, Kind::Access, Kind::Refresh],
    }
}

/// A client may revoke only its own tokens.
pub fn check_revoker(caller: &Caller, owner: &str) -> Result<()> {
    if let Caller::Client(id) = caller {
        if id != owner {
            return Err(Error::new(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                "the token was not issued to this client",
            ));
        }
    }
    Ok(())
}

/// A new access token (with a refresh token when `refresh` holds its value
/// and lifetime), approved, issued `now`.
pub fn new_access(
    client_id: &str,
    scope: &str,
    lifetimes: Lifetimes,
    token: String,
    refresh: Option<(String, i64)>,
    refresh_count: i64,
    now: i64,
) -> Result<AccessToken> {
    let lifetime_err = || Error::internal("token lifetime overflows");
    let refresh = match refresh {
        Some((value, lifetime)) => Some(RefreshToken {
            token: value,
            fp: None,
            status: APPROVED.into(),
            issued_at: now,
            expires_at: views::expires_at(now, lifetime).ok_or_else(lifetime_err)?,
        }),
        None => None,
    };
    Ok(AccessToken {
        token,
        token_fp: None,
        client_id: client_id.to_owned(),
        scope: scope.to_owned(),
        status: APPROVED.into(),
        issued_at: now,
        expires_at: views::expires_at(now, lifetimes.access).ok_or_else(lifetime_err)?,
        refresh,
        refresh_count,
    })
}

pub fn issued(t: AccessToken, lifetimes: Lifetimes) -> Issued {
    Issued {
        expires_in: lifetimes.access,
        scope: t.scope,
        refresh_token: t.refresh.map(|r| r.token),
        issued_at: t.issued_at,
        access_token: t.token,
    }
}

/// Tries for a fresh random token value before giving up (a clash of 32
/// random alphanumerics is not expected to ever happen).
pub const FRESH_VALUE_TRIES: usize = 4;

// ---------------------------------------------------------------- the store

/// Where the tokens live, from `--db`.
#[derive(Debug, Clone)]
pub enum Target {
    Sqlite(PathBuf),
    /// A `postgres://` or `postgresql://` URL.
    Postgres(String),
}

impl Target {
    pub fn parse(db: &str) -> Self {
        let lower = db.get(..13).unwrap_or(db).to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            Target::Postgres(db.to_owned())
        } else {
            Target::Sqlite(PathBuf::from(db))
        }
    }
}

/// The store. The HTTP layer calls these methods and never learns which
/// implementation answers.
pub enum Store {
    Sqlite(Arc<sqlite::Sqlite>),
    Postgres(postgres::Postgres),
}

/// Runs a SQLite write on the blocking pool (a commit waits for fsync).
async fn blocking<T, F>(s: &Arc<sqlite::Sqlite>, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(&sqlite::Sqlite) -> Result<T> + Send + 'static,
{
    let s = Arc::clone(s);
    tokio::task::spawn_blocking(move || f(&s))
        .await
        .map_err(|e| Error::internal(format_args!("store task failed: {e}")))?
}

impl Store {
    /// How this store keeps token values.
    pub fn hashing(&self) -> Hashing {
        match self {
            Store::Sqlite(s) => s.hashing(),
            Store::Postgres(p) => p.hashing(),
        }
    }

    /// The database for the start log line (a PostgreSQL URL without its
    /// password) and the store's mode.
    pub fn describe(&self) -> (String, &'static str) {
        match self {
            Store::Sqlite(s) => (
                s.path().display().to_string(),
                "sqlite (WAL, synchronous=FULL)",
            ),
            Store::Postgres(p) => (p.display().to_owned(), "postgres"),
        }
    }

    /// The store answers a query.
    pub async fn health(&self) -> Result<()> {
        match self {
            Store::Sqlite(s) => blocking(s, |s| s.health()).await,
            Store::Postgres(p) => p.health().await,
        }
    }

    // SQLite reads run on the executor thread itself: they are short (an
    // introspection takes about 15 µs), never wait on the writer (WAL), and
    // never wait on a read connection (there are at least as many as
    // executor threads, and none is held across an await). Handing them to
    // the blocking pool would cost more than the read (a thread wake-up).

    pub async fn introspect(&self, value: &str, lookup: Lookup, org: &str) -> Result<Value> {
        let h = self.hashing();
        // A client id is kept as it is.
        let key = match lookup {
            Lookup::Client => value.to_owned(),
            _ => h.key(value),
        };
        let v = match self {
            Store::Sqlite(s) => s.introspect(&key, lookup, org)?,
            Store::Postgres(p) => p.introspect(&key, lookup, org).await?,
        };
        Ok(h.reveal(v, value))
    }

    pub async fn app_by_client(&self, client_id: &str) -> Result<Option<App>> {
        match self {
            Store::Sqlite(s) => s.app_by_client(client_id),
            Store::Postgres(p) => p.app_by_client(client_id).await,
        }
    }

    pub async fn changes(&self, after: i64, limit: i64) -> Result<Feed> {
        let read = match self {
            Store::Sqlite(s) => s.changes(after, limit)?,
            Store::Postgres(p) => p.changes(after, limit).await?,
        };
        Ok(feed_answer(after, read))
    }

    /// Deletes the changes older than `retention_ms`; answers how many.
    pub async fn prune_changes(&self, retention_ms: i64) -> Result<u64> {
        match self {
            Store::Sqlite(s) => blocking(s, move |s| s.prune_changes(retention_ms)).await,
            Store::Postgres(p) => p.prune_changes(retention_ms).await,
        }
    }

    /// Creates an app with its subscriptions (`subs`, in order; an app's
    /// `api_products` are its approved ones).
    pub async fn create_app(
        &self,
        app: App,
        subs: Vec<(String, SubscriptionStatus)>,
    ) -> Result<App> {
        match self {
            Store::Sqlite(s) => blocking(s, move |s| s.create_app(&app, &subs).map(|()| app)).await,
            Store::Postgres(p) => p.create_app(&app, &subs).await.map(|()| app),
        }
    }

    /// Creates or replaces an API product; answers whether it was new.
    pub async fn put_product(&self, p: ApiProduct) -> Result<bool> {
        match self {
            Store::Sqlite(s) => blocking(s, move |s| s.put_product(&p)).await,
            Store::Postgres(pg) => pg.put_product(&p).await,
        }
    }

    pub async fn product(&self, name: &str) -> Result<Option<ApiProduct>> {
        match self {
            Store::Sqlite(s) => s.product(name),
            Store::Postgres(p) => p.product(name).await,
        }
    }

    /// Subscribes an app to a product, or changes the subscription's status.
    pub async fn subscribe(
        &self,
        client_id: String,
        product: String,
        status: SubscriptionStatus,
    ) -> Result<()> {
        match self {
            Store::Sqlite(s) => {
                blocking(s, move |s| s.subscribe(&client_id, &product, status)).await
            }
            Store::Postgres(p) => p.subscribe(&client_id, &product, status).await,
        }
    }

    /// Changes the statuses given (app, key, developer); answers whether
    /// the app exists.
    pub async fn set_statuses(&self, client_id: String, st: Statuses) -> Result<bool> {
        match self {
            Store::Sqlite(s) => blocking(s, move |s| s.set_statuses(&client_id, &st)).await,
            Store::Postgres(p) => p.set_statuses(&client_id, &st).await,
        }
    }

    /// An app's subscriptions, in the order they were made.
    pub async fn subscriptions(
        &self,
        client_id: &str,
    ) -> Result<Option<Vec<(String, SubscriptionStatus)>>> {
        match self {
            Store::Sqlite(s) => s.subscriptions(client_id),
            Store::Postgres(p) => p.subscriptions(client_id).await,
        }
    }

    /// Imports an access token (and its refresh token) as given.
    pub async fn import_access(&self, t: AccessToken, attrs: Attributes) -> Result<()> {
        let t = self.hashing().access(t);
        match self {
            Store::Sqlite(s) => blocking(s, move |s| s.import_access(&t, &attrs)).await,
            Store::Postgres(p) => p.import_access(&t, &attrs).await,
        }
    }

    /// Imports an authorization code as given.
    pub async fn import_code(&self, code: AuthCode, attrs: Attributes) -> Result<()> {
        let code = self.hashing().code(code);
        match self {
            Store::Sqlite(s) => blocking(s, move |s| s.import_code(&code, &attrs)).await,
            Store::Postgres(p) => p.import_code(&code, &attrs).await,
        }
    }

    /// Atomically merges custom attributes into an approved, unexpired access
    /// token; answers the introspection of the token after the write.
    pub async fn merge_attributes(
        &self,
        token: String,
        attrs: Attributes,
        max_attributes: usize,
        org: String,
    ) -> Result<Value> {
        let h = self.hashing();
        let key = h.key(&token);
        let v = match self {
            Store::Sqlite(s) => {
                blocking(s, move |s| {
                    s.merge_attributes(&key, &attrs, max_attributes, &org)
                })
                .await?
            }
            Store::Postgres(p) => {
                p.merge_attributes(&key, &attrs, max_attributes, &org)
                    .await?
            }
        };
        Ok(h.reveal(v, &token))
    }

    /// `client_credentials` grant: a new access token, no refresh token.
    pub async fn client_credentials(
        &self,
        client_id: String,
        scope: String,
        lifetimes: Lifetimes,
    ) -> Result<Issued> {
        match self {
            Store::Sqlite(s) => {
                blocking(s, move |s| {
                    s.client_credentials(&client_id, &scope, lifetimes)
                })
                .await
            }
            Store::Postgres(p) => p.client_credentials(&client_id, &scope, lifetimes).await,
        }
    }

    /// `authorization_code` grant: the code becomes revoked; a new access and
    /// refresh token carry the code's scope and attributes.
    pub async fn exchange_code(
        &self,
        client_id: String,
        code: String,
        redirect_uri: Option<String>,
        lifetimes: Lifetimes,
    ) -> Result<Issued> {
        let code = self.hashing().key(&code);
        match self {
            Store::Sqlite(s) => {
                blocking(s, move |s| {
                    s.exchange_code(&client_id, &code, redirect_uri.as_deref(), lifetimes)
                })
                .await
            }
            Store::Postgres(p) => {
                p.exchange_code(&client_id, &code, redirect_uri.as_deref(), lifetimes)
                    .await
            }
        }
    }

    /// `refresh_token` grant: the old access and refresh tokens become
    /// revoked; new ones carry the scope, attributes and refresh_count + 1.
    pub async fn refresh(
        &self,
        client_id: String,
        refresh_token: String,
        lifetimes: Lifetimes,
    ) -> Result<Issued> {
        let refresh_token = self.hashing().key(&refresh_token);
        match self {
            Store::Sqlite(s) => {
                blocking(s, move |s| s.refresh(&client_id, &refresh_token, lifetimes)).await
            }
            Store::Postgres(p) => p.refresh(&client_id, &refresh_token, lifetimes).await,
        }
    }

    /// RFC 7009 revocation. `hint` is looked at first, then the other kinds.
    pub async fn revoke(
        &self,
        value: String,
        hint: Option<Kind>,
        caller: Caller,
    ) -> Result<Revoked> {
        let value = self.hashing().key(&value);
        match self {
            Store::Sqlite(s) => blocking(s, move |s| s.revoke(&value, hint, &caller)).await,
            Store::Postgres(p) => p.revoke(&value, hint, &caller).await,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn row(cursor: i64) -> ChangeRow {
        ChangeRow {
            cursor,
            kind: "access_token".into(),
            hash: "0".repeat(16),
            op: "revoke".into(),
        }
    }

    fn read(rows: &[i64], pruned_through: i64, head: i64) -> FeedRead {
        FeedRead {
            rows: rows.iter().copied().map(row).collect(),
            pruned_through,
            head,
            committed: head,
        }
    }

    fn page(f: Feed) -> (Vec<i64>, i64, i64) {
        match f {
            Feed::Page {
                rows, next, oldest, ..
            } => (rows.iter().map(|r| r.cursor).collect(), next, oldest),
            Feed::Expired { oldest } => panic!("expired (oldest {oldest})"),
        }
    }

    #[test]
    fn feed_paging_rules() {
        // A fresh database: nothing yet.
        assert_eq!(page(feed_answer(0, read(&[], 0, 0))), (vec![], 0, 1));
        // From the start, then from a cursor.
        assert_eq!(
            page(feed_answer(0, read(&[1, 2, 4], 0, 4))),
            (vec![1, 2, 4], 4, 1)
        );
        assert_eq!(page(feed_answer(4, read(&[], 0, 4))), (vec![], 4, 1));
        // After pruning through 10: 0 means "from oldest - 1".
        assert_eq!(page(feed_answer(0, read(&[], 10, 10))), (vec![], 10, 11));
        assert_eq!(
            page(feed_answer(10, read(&[12], 10, 12))),
            (vec![12], 12, 11)
        );
        // Older than the horizon, or newer than anything handed out.
        assert!(matches!(
            feed_answer(9, read(&[], 10, 12)),
            Feed::Expired { oldest: 11 }
        ));
        assert!(matches!(
            feed_answer(13, read(&[], 10, 12)),
            Feed::Expired { oldest: 11 }
        ));
    }

    #[test]
    fn the_committed_head_is_at_least_what_the_page_shows() {
        let head = |f: Feed| match f {
            Feed::Page { head, .. } => head,
            Feed::Expired { .. } => panic!("expired"),
        };
        // A change drawn but not committed (head 9) is not in it.
        let r = FeedRead {
            committed: 7,
            ..read(&[5, 7], 0, 9)
        };
        assert_eq!(head(feed_answer(0, r)), 7);
        // Everything pruned: the horizon.
        let r = FeedRead {
            committed: 0,
            ..read(&[], 10, 10)
        };
        assert_eq!(head(feed_answer(0, r)), 10);
    }

    #[test]
    fn changes_name_tokens_by_hash_only() {
        let t = new_access(
            "cid",
            "",
            Lifetimes {
                access: 60,
                refresh: 60,
            },
            "abc".into(),
            Some(("rt-value".into(), 60)),
            0,
            1_000,
        )
        .unwrap();
        let c = access_changes(&t, Op::Revoke);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].hash, "8b3bc9e4a0fa9185");
        assert_eq!(c[0].kind, TokenKind::AccessToken);
        assert_eq!(c[1].kind, TokenKind::RefreshToken);
        assert!(!format!("{c:?}").contains("rt-value"));
    }

    #[test]
    fn hashed_keys_are_the_sha256_of_the_value() {
        // FIPS 180-2's "abc" vector.
        assert_eq!(
            Hashing::Sha256.key("abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Hashing::Plain.key("abc"), "abc");
        // A hashed profile shows the presented value, never a hash.
        let h = Hashing::Sha256;
        let v = serde_json::json!({"active": true, "profile": {
            "access_token": h.key("at-1"), "refresh_token": h.key("rt-1"), "scope": "s"}});
        let shown = h.reveal(v, "at-1");
        assert_eq!(shown["profile"]["access_token"], "at-1");
        assert_eq!(shown["profile"]["refresh_token"], "");
        assert_eq!(shown["profile"]["scope"], "s");
    }

    #[test]
    fn targets() {
        assert!(matches!(
            Target::parse("postgres://u@h/db"),
            Target::Postgres(_)
        ));
        assert!(matches!(
            Target::parse("PostgreSQL://u@h/db"),
            Target::Postgres(_)
        ));
        assert!(matches!(Target::parse("tokens.db"), Target::Sqlite(_)));
        assert!(matches!(Target::parse("/var/p"), Target::Sqlite(_)));
    }
}
