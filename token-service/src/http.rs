//! HTTP surface: routes, key checks, body parsing and validation. The
//! store is behind `Store`: this layer does not know which one it has.

use crate::error::{Error, Result};
use crate::products::{approval, unknown_product, ApiProduct, ApigeeApp, SubscriptionStatus};
use crate::store::{Caller, Feed, Issued, Kind, Lifetimes, Lookup, Revoked, Store};
use crate::util::{random_alnum, random_id, redact};
use crate::views::{self, AccessToken, App, Attributes, AuthCode, RefreshToken};
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use base64::Engine;
use serde::de::{DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;
use subtle::ConstantTimeEq;
use tracing::{debug, info};

#[path = "ext_authz.rs"]
pub(crate) mod ext_authz;

use crate::openapi::{
    AppCreated, AppStatuses, ErrorBody, FeedPage, Health, Imported, IntrospectForm, Introspection,
    RevokeForm, Subscriptions, TokenForm, TokenIssued,
};
pub use ext_authz::KEY_HEADER as EXT_AUTHZ_KEY_HEADER;
use utoipa::ToSchema;

/// Largest accepted request body.
pub const BODY_LIMIT: usize = 64 * 1024;
/// Longest custom attribute name, in characters.
pub const MAX_NAME_CHARS: usize = 255;
/// Longest custom attribute value, in bytes.
pub const MAX_VALUE_BYTES: usize = 2048;
/// `limit` of `GET /v1/changes`: default and most.
pub const FEED_LIMIT_DEFAULT: i64 = 500;
pub const FEED_LIMIT_MAX: i64 = 5000;

pub struct Config {
    pub org: String,
    pub lifetimes: Lifetimes,
    pub max_attributes: usize,
    pub service_key: String,
    pub admin_key: String,
}

pub struct AppState {
    pub store: Arc<Store>,
    pub cfg: Config,
}

type St = State<Arc<AppState>>;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/oauth2/introspect", post(introspect))
        .route("/oauth2/token", post(token))
        .route("/oauth2/revoke", post(revoke))
        .route("/v1/accesstokens/attributes", post(merge_attributes))
        .route("/v1/apps", post(create_app))
        .route("/v1/apigee/apps", post(import_apigee_app))
        .route("/v1/apiproducts", post(put_product))
        .route("/v1/apiproducts/{name}", get(get_product))
        .route("/v1/apps/{client_id}/apiproducts", get(get_subscriptions))
        .route(
            "/v1/apps/{client_id}/status",
            axum::routing::put(set_statuses),
        )
        .route(
            "/v1/apps/{client_id}/apiproducts/{name}",
            axum::routing::put(subscribe),
        )
        .route("/v1/tokens", post(import_token))
        .route("/v1/changes", get(changes))
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(openapi_json))
        .route("/v1/ext_authz/", any(ext_authz::check))
        .route("/v1/ext_authz/{*path}", any(ext_authz::check))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(read_whole_body))
        .layer(middleware::from_fn(log_and_headers))
        .with_state(state)
}

/// The error code of a refused request, for the request log line.
#[derive(Clone, Copy)]
struct ErrorCode(&'static str);

/// One log line per request (debug; refusals at info with their error
/// code), and `Cache-Control: no-store` on every answer. Only the matched
/// route is logged, never the raw path or query, so a token that a client
/// put into a URL by mistake does not reach the log.
async fn log_and_headers(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "<no route>".to_owned());
    let mut resp = next.run(req).await;
    resp.headers_mut()
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    let status = resp.status().as_u16();
    let micros = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
    match resp.extensions().get::<ErrorCode>() {
        Some(ErrorCode(code)) => {
            info!(%method, %route, status, error = code, micros, "request refused")
        }
        None => debug!(%method, %route, status, micros, "request"),
    }
    resp
}

/// Reads every request body (up to the limit) before routing, so that no
/// answer leaves an unread body on a kept-alive HTTP/1.1 connection (a 401,
/// 404 or 405 is decided before a handler would read it). A body over the
/// limit cannot be drained cheaply: its 413 closes the connection
/// (`Connection: close`), and so does an unreadable one.
async fn read_whole_body(req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(e) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                || parts
                    .headers
                    .get(header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
                    .is_some_and(|n| n > BODY_LIMIT);
            let mut resp = refuse(if too_large {
                Error::too_large(BODY_LIMIT)
            } else {
                Error::invalid_request("could not read the request body")
            });
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            resp
        }
    }
}

fn respond(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

fn refuse(e: Error) -> Response {
    let code = e.code;
    let mut resp = e.into_response();
    resp.extensions_mut().insert(ErrorCode(code));
    resp
}

/// Turns a handler result into a response, tagging refusals for the log.
fn answer(r: Result<Response>) -> Response {
    r.unwrap_or_else(refuse)
}

async fn not_found() -> Response {
    refuse(Error::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint; see docs/token-service.md",
    ))
}

async fn method_not_allowed() -> Response {
    refuse(Error::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method",
    ))
}

// ---------------------------------------------------------------- keys

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Service,
    Admin,
}

impl KeyKind {
    fn name(self) -> &'static str {
        match self {
            KeyKind::Service => "service",
            KeyKind::Admin => "admin",
        }
    }
}

/// `(scheme, credentials)` of the Authorization header, if any.
fn authorization(headers: &HeaderMap) -> Option<(&[u8], &[u8])> {
    let v = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = match v.iter().position(|b| *b == b' ') {
        Some(i) => (&v[..i], &v[i + 1..]),
        None => (v, &v[v.len()..]),
    };
    Some((scheme, rest.trim_ascii()))
}

fn is_bearer(headers: &HeaderMap) -> bool {
    authorization(headers).is_some_and(|(s, _)| s.eq_ignore_ascii_case(b"bearer"))
}

impl AppState {
    /// Which key was presented, compared in constant time against both.
    fn key_kind(&self, presented: &[u8]) -> Option<KeyKind> {
        let service: bool = presented.ct_eq(self.cfg.service_key.as_bytes()).into();
        let admin: bool = presented.ct_eq(self.cfg.admin_key.as_bytes()).into();
        match (service, admin) {
            (true, _) => Some(KeyKind::Service),
            (_, true) => Some(KeyKind::Admin),
            _ => None,
        }
    }

    fn require_key(&self, headers: &HeaderMap, want: KeyKind) -> Result<()> {
        let need = || {
            format!(
                "this endpoint needs the header Authorization: Bearer <{} key>",
                want.name()
            )
        };
        let Some((scheme, key)) = authorization(headers) else {
            return Err(Error::unauthorized(need()));
        };
        if !scheme.eq_ignore_ascii_case(b"bearer") || key.is_empty() {
            return Err(Error::unauthorized(need()));
        }
        match self.key_kind(key) {
            Some(k) if k == want => Ok(()),
            Some(k) => Err(Error::unauthorized(format!(
                "this endpoint takes the {} key, not the {} key",
                want.name(),
                k.name()
            ))),
            None => Err(Error::unauthorized(format!(
                "the {} key is not valid",
                want.name()
            ))),
        }
    }
}

/// HTTP Basic client credentials (RFC 6749 2.3.1: each part is
/// form-urlencoded before base64). `None` when the header is absent or
/// another scheme.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>> {
    let Some((scheme, creds)) = authorization(headers) else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return Ok(None);
    }
    let malformed = || Error::invalid_client("malformed HTTP Basic credentials");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(creds)
        .map_err(|_| malformed())?;
    let text = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (id, secret) = text.split_once(':').ok_or_else(malformed)?;
    let unescape = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| malformed())
    };
    Ok(Some((unescape(id)?, unescape(secret)?)))
}

/// Authenticates the OAuth client by HTTP Basic or by `client_id` and
/// `client_secret` in the form (one method only).
async fn authenticate_client(st: &AppState, headers: &HeaderMap, form: &Form) -> Result<App> {
    let (id, secret) = match basic_credentials(headers)? {
        Some((id, secret)) => {
            if form.get("client_secret")?.is_some() {
                return Err(Error::invalid_request(
                    "use one client authentication method: HTTP Basic or client_secret in the body, not both",
                ));
            }
            if form.get("client_id")?.is_some_and(|f| f != id) {
                return Err(Error::invalid_request(
                    "client_id in the body differs from the HTTP Basic client",
                ));
            }
            (id, secret)
        }
        None => match (form.get("client_id")?, form.get("client_secret")?) {
            (Some(i), Some(s)) => (i.to_owned(), s.to_owned()),
            _ => {
                return Err(Error::invalid_client(
                    "client authentication required: HTTP Basic, or client_id and client_secret in the body",
                ))
            }
        },
    };
    let app = st.store.app_by_client(&id).await?;
    match app {
        Some(app) if bool::from(app.client_secret.as_bytes().ct_eq(secret.as_bytes())) => Ok(app),
        _ => Err(Error::invalid_client("client authentication failed")),
    }
}

// ---------------------------------------------------------------- bodies

async fn read_body(req: Request) -> Result<Bytes> {
    Bytes::from_request(req, &()).await.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::too_large(BODY_LIMIT)
        } else {
            Error::invalid_request("could not read the request body")
        }
    })
}

/// An `application/x-www-form-urlencoded` body. Empty values count as
/// absent (RFC 6749 3.1); a repeated parameter is an error.
struct Form(Vec<(String, String)>);

impl Form {
    fn parse(body: &[u8]) -> Result<Self> {
        serde_urlencoded::from_bytes(body).map(Form).map_err(|e| {
            Error::invalid_request(format!(
                "the body is not an application/x-www-form-urlencoded form: {e}"
            ))
        })
    }

    fn get(&self, name: &str) -> Result<Option<&str>> {
        let mut found = None;
        for (k, v) in &self.0 {
            if k == name && !v.is_empty() {
                if found.is_some() {
                    return Err(Error::invalid_request(format!(
                        "parameter {name} is given more than once"
                    )));
                }
                found = Some(v.as_str());
            }
        }
        Ok(found)
    }

    fn require(&self, name: &str) -> Result<&str> {
        self.get(name)?
            .ok_or_else(|| Error::invalid_request(format!("missing parameter {name}")))
    }
}

/// Walks a JSON document and stops at the first object that names a key
/// twice, keeping that key.
struct NoDuplicateKeys<'a>(&'a RefCell<Option<String>>);

impl<'de> DeserializeSeed<'de> for NoDuplicateKeys<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NoDuplicateKeys<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        while seq.next_element_seed(NoDuplicateKeys(self.0))?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if seen.contains(&key) {
                *self.0.borrow_mut() = Some(key);
                return Err(serde::de::Error::custom("duplicate key"));
            }
            map.next_value_seed(NoDuplicateKeys(self.0))?;
            seen.insert(key);
        }
        Ok(())
    }
}

/// A JSON body: every JSON endpoint refuses a key given twice in any object
/// (`duplicate key "token"`), then parses the body as `T`.
fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    let dup = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(body);
    let walked = NoDuplicateKeys(&dup).deserialize(&mut de);
    if let Some(key) = dup.into_inner() {
        return Err(Error::invalid_request(format!("duplicate key {key:?}")));
    }
    if let Err(e) = walked {
        return Err(Error::invalid_request(format!("invalid JSON body: {e}")));
    }
    serde_json::from_slice(body)
        .map_err(|e| Error::invalid_request(format!("invalid JSON body: {e}")))
}

fn non_empty(field: &str, v: &str) -> Result<()> {
    if v.is_empty() {
        return Err(Error::invalid_request(format!("{field} must not be empty")));
    }
    Ok(())
}

/// Rules for one custom attribute (merge and import alike).
pub fn check_attribute(name: &str, value: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid_request("an attribute name is empty"));
    }
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(Error::invalid_request(format!(
            "an attribute name has {chars} characters; the limit is {MAX_NAME_CHARS}"
        )));
    }
    if oauthv2info_names::is_protected_attribute(name) {
        return Err(Error::protected_attribute(name));
    }
    if value.len() > MAX_VALUE_BYTES {
        return Err(Error::invalid_request(format!(
            "the value of attribute {name:?} has {} bytes; the limit is {MAX_VALUE_BYTES}",
            value.len()
        )));
    }
    Ok(())
}

fn check_attributes(attrs: &Attributes, max: usize) -> Result<()> {
    for (k, v) in attrs {
        check_attribute(k, v)?;
    }
    if attrs.len() > max {
        return Err(Error::invalid_request(format!(
            "{} custom attributes; the limit is {max}",
            attrs.len()
        )));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Status {
    Approved,
    Revoked,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Approved => views::APPROVED,
            Status::Revoked => views::REVOKED,
        }
    }
}

fn expiry(issued_at: i64, lifetime: i64, field: &str) -> Result<i64> {
    views::expires_at(issued_at, lifetime).ok_or_else(|| {
        Error::invalid_request(format!(
            "{field} must be -1 (never expires) or a number of seconds >= 0"
        ))
    })
}

fn non_negative(field: &str, v: i64) -> Result<i64> {
    if v < 0 {
        return Err(Error::invalid_request(format!("{field} must be >= 0")));
    }
    Ok(v)
}

// ---------------------------------------------------------------- service endpoints

/// RFC 7662 introspection with the Apigee profile.
#[utoipa::path(post, path = "/oauth2/introspect",
    request_body(content = IntrospectForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "the profile, or `{\"active\": false}` for an unknown value", body = Introspection),
        (status = 400, description = "invalid_request", body = ErrorBody),
        (status = 401, description = "unauthorized: not the service key", body = ErrorBody),
        (status = 413, description = "request_too_large", body = ErrorBody),
        (status = 503, description = "store_unavailable", body = ErrorBody),
    ),
    security(("service_key" = [])))]
pub(crate) async fn introspect(State(st): St, req: Request) -> Response {
    answer(introspect_inner(&st, req).await)
}

async fn introspect_inner(st: &Arc<AppState>, req: Request) -> Result<Response> {
    st.require_key(req.headers(), KeyKind::Service)?;
    let form = Form::parse(&read_body(req).await?)?;
    let token = form.require("token")?.to_owned();
    let lookup = match form.get("token_type_hint")? {
        None => Lookup::Any,
        Some("access_token") => Lookup::Token(Kind::Access),
        Some("refresh_token") => Lookup::Token(Kind::Refresh),
        Some("authorization_code") => Lookup::Token(Kind::Code),
        Some("client_id") => Lookup::Client,
        Some(_) => {
            return Err(Error::invalid_request(
                "unknown token_type_hint; expected access_token, refresh_token, authorization_code or client_id",
            ))
        }
    };
    let org = st.cfg.org.clone();
    let v = st.store.introspect(&token, lookup, &org).await?;
    Ok(respond(StatusCode::OK, v))
}

/// The SetOAuthV2Info write: attributes merged into an access token.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"token": "AT-example-0001",
    "attributes": [{"name": "department.id", "value": "43"}]}))]
pub(crate) struct MergeBody {
    #[schema(min_length = 1)]
    token: String,
    #[schema(min_items = 1)]
    attributes: Vec<AttributeIn>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AttributeIn {
    #[schema(min_length = 1, max_length = 255)]
    name: String,
    value: String,
}

/// Merges custom attributes into an access token (one atomic write).
#[utoipa::path(post, path = "/v1/accesstokens/attributes",
    request_body(content = MergeBody, content_type = "application/json"),
    responses(
        (status = 200, description = "the introspection of the token after the write", body = Introspection),
        (status = 400, description = "invalid_request or protected_attribute", body = ErrorBody),
        (status = 401, description = "unauthorized: not the service key", body = ErrorBody),
        (status = 404, description = "invalid_access_token: unknown token", body = ErrorBody),
        (status = 409, description = "invalid_access_token (revoked) or access_token_expired", body = ErrorBody),
        (status = 413, description = "request_too_large", body = ErrorBody),
        (status = 503, description = "store_unavailable", body = ErrorBody),
    ),
    security(("service_key" = [])))]
pub(crate) async fn merge_attributes(State(st): St, req: Request) -> Response {
    answer(merge_inner(&st, req).await)
}

async fn merge_inner(st: &Arc<AppState>, req: Request) -> Result<Response> {
    st.require_key(req.headers(), KeyKind::Service)?;
    let body: MergeBody = parse_json(&read_body(req).await?)?;
    non_empty("token", &body.token)?;
    if body.attributes.is_empty() {
        return Err(Error::invalid_request(
            "attributes must hold at least one attribute",
        ));
    }
    let mut attrs = Attributes::new();
    for a in body.attributes {
        check_attribute(&a.name, &a.value)?;
        attrs.insert(a.name, a.value); // a later duplicate wins
    }
    let (token, org, max) = (body.token, st.cfg.org.clone(), st.cfg.max_attributes);
    let prefix = redact(&token);
    let count = attrs.len();
    let v = st.store.merge_attributes(token, attrs, max, org).await?;
    info!(token = %prefix, attributes = count, "attributes merged");
    Ok(respond(StatusCode::OK, v))
}

// ---------------------------------------------------------------- admin endpoints

/// A developer app (OAuth client) to create.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewApp {
    #[schema(min_length = 1)]
    name: String,
    #[schema(min_length = 1)]
    developer_email: String,
    developer_id: Option<String>,
    #[serde(default)]
    api_products: Vec<String>,
    #[serde(default)]
    attributes: Attributes,
    #[serde(default)]
    redirect_uris: Vec<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// Creates a developer app (OAuth client).
#[utoipa::path(post, path = "/v1/apps",
    request_body(content = NewApp, content_type = "application/json"),
    responses(
        (status = 201, description = "the app", body = AppCreated),
        (status = 400, description = "invalid_request", body = ErrorBody),
        (status = 401, description = "unauthorized: not the admin key", body = ErrorBody),
        (status = 409, description = "client_exists", body = ErrorBody),
        (status = 413, description = "request_too_large", body = ErrorBody),
        (status = 503, description = "store_unavailable", body = ErrorBody),
    ),
    security(("admin_key" = [])))]
pub(crate) async fn create_app(State(st): St, req: Request) -> Response {
    answer(create_app_inner(&st, req).await)
}

async fn create_app_inner(st: &Arc<AppState>, req: Request) -> Result<Response> {
    st.require_key(req.headers(), KeyKind::Admin)?;
    let b: NewApp = parse_json(&read_body(req).await?)?;
    non_empty("name", &b.name)?;
    non_empty("developer_email", &b.developer_email)?;
    for (field, v) in [
        ("developer_id", &b.developer_id),
        ("client_id", &b.client_id),
        ("client_secret", &b.client_secret),
    ] {
        if let Some(v) = v {
            non_empty(field, v)?;
        }
    }
    let app = App {
        app_id: random_id(),
        name: b.name,
        developer_email: b.developer_email,
        developer_id: b.developer_id.unwrap_or_else(random_id),
        api_products: b.api_products,
        attributes: b.attributes,
        redirect_uris: b.redirect_uris,
        client_id: b.client_id.unwrap_or_else(|| random_alnum(32)),
        client_secret: b.client_secret.unwrap_or_else(|| random_alnum(32)),
        products: Vec::new(),
        status: views::APPROVED.into(),
        key_status: views::APPROVED.into(),
        developer_status: "active".into(),
    };
    let subs = app
        .api_products
        .iter()
        .map(|p| (p.clone(), SubscriptionStatus::Approved))
        .collect();
    let app = st.store.create_app(app, subs).await?;
    info!(app_id = %app.app_id, client_id = %app.client_id, "app created");
    Ok(respond(
        StatusCode::CREATED,
        json!({
            "app_id": app.app_id,
            "client_id": app.client_id,
            "client_secret": app.client_secret,
            "name": app.name,
            "developer_email": app.developer_email,
            "developer_id": app.developer_id,
        }),
    ))
}

// ---------------------------------------------------------------- API products

/// The percent-decoded path segment `i` (0 is the segment after the leading
/// `/`): a name in a product or subscription path.
fn path_segment(req: &Request, i: usize) -> Result<String> {
    let raw = req
        .uri()
        .path()
        .split('/')
        .nth(i + 1)
        .ok_or_else(|| Error::invalid_request("the path is incomplete"))?;
    let s = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| Error::invalid_request("a name in the path is not UTF-8"))?;
    non_empty("name", &s)?;
    Ok(s.into_owned())
}

/// Creates or replaces an API product (Apigee's `apiproducts` JSON).
#[utoipa::path(post, path = "/v1/apiproducts",
    request_body(content = ApiProduct, content_type = "application/json"),
    responses(
        (status = 201, description = "created: the product as stored", body = ApiProduct),
        (status = 200, description = "replaced: the product as stored", body = ApiProduct),
        (status = 400, description = "invalid_request", body = ErrorBody),
        (status = 401, description = "unauthorized: not the admin key", body = ErrorBody),
        (status = 413, description = "request_too_large", body = ErrorBody),
        (status = 503, description = "store_unavailable", body = ErrorBody),
    ),
    security(("admin_key" = [])))]
pub(crate) async fn put_product(State(st): St, req: Request) -> Response {
    answer(put_product_inner(&st, req).await)
}

async fn put_product_inner(st: &Arc<AppState>, req: Request) -> Result<Response> {
    st.require_key(req.headers(), KeyKind::Admin)?;
    let p: ApiProduct = parse_json(&read_body(req).await?)?;
    p.check()?;
    let new = st.store.put_product(p.clone()).await?;
    info!(product = %p.name, new, "API product stored");
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(p)).into_response())
}

/// One API product.
#[utoipa::path(get, path = "/v1/apiproducts/{name}",
    params(("name" = String, Path, description = "the product's name")),
    responses(
        (status = 200, description = "the product", body = ApiProduct),
        (status = 401, description = "unauthorized: not the admin key", body = ErrorBody),
        (status = 404, description = "unknown_api_product", body = ErrorBody),
        (status = 503, description = "store_unavailable", body = ErrorBody),
    ),
    security(("admin_key" = [])))]
pub(crate) async fn get_product(State(st): St, req: Request) -> Response {
    answer(get_product_inner(&st, req).await)
}

async fn get_product_inner(st: &Arc<AppState>, req: Request) -> Result<Response> {
    st.require_key(req.headers(), KeyKind::Admin)?;
    let name = path_segment(&req, 2)?;
    let p = st.store.product(&name).await?.ok_or_else(unknown_product)?;
    Ok((StatusCode::OK, Json(p)).into_response())
}

/// A subscription's new status.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewSubscription {
    status: SubscriptionStatus,
}

/// Subscribes an app to an API product, or changes the subscription's
/// status (only `approved` lets the product allow calls).
#[utoipa::path(put, path = "/v1/apps/{client_id}/apiproducts/{name}",
    params(
        ("client_id" = String, Path, description = "the app's client id"),
        ("name" = String, Path, description = "the product's name"),
    ),
    request_body(content = NewSubscription, content_type = "application/json"),
    responses(
        (status = 200, description = "the app's subscriptions after the change", body = Subscriptions),
        (status = 400, description = "invalid_request, invalid_client (no app has this client_id)", body = ErrorBody),
        (status = 401, description = "unauthorized: not the admin key", body = ErrorBody),
        (status = 404, description = "unknown_api_product", body = ErrorBody),
        (status = 413, description = "request_too_large", body = ErrorBody),
        (status = 503, description = "store_unavailable", body = ErrorBody),
    ),
    security(("admin_key" = [])))]
pub(crate) async fn subscribe(State(st): St, req: Request) -> Response {
    answer(subscribe_inner(&st, req).await)
}

async fn subscribe_inner(st: &Arc<AppState>, req: Request) -> Result<Response> {
    st.require_key(req.headers(), KeyKind::Admin)?;
    let client_id = path_segment(&req, 2)?;
    let product = path_segment(&req, 4)?;
    let b: NewSubscription = parse_json(&read_body(req).await?)?;
    st.store
        .subscribe(client_id.clone(), product.clone(), b.status)
        .await?;
    info!(client_id = %client_id, product = %product, status = b.status.as_str(), "subscription stored");
    subscriptions_of(st, &client_id).await
}

/// An app's subscriptions, in its order.
#[utoipa::path(get, path = "/v1/apps/{client_id}/apiproducts",
    params(("client_id" = String, Path, description = "the app's client id")),
    responses(
        (status = 200, description = "the app's subscriptions", body = Subscriptions),
        (status = 401, description = "unauthorized: not the admin key", body = ErrorBody),
        (status = 404, description = "unknown_client: no app has this client_id", body = ErrorBody),
        (status = 503, description = "store_unavailable", body = ErrorBody),
    ),
    security(("admin_key" = [])))]
pub(crate) async fn get_subscriptions(State(st): St, req: Request) -> Response {
    answer(get_subscriptions_inner(&st, req).await)
}

async fn get_subscriptions_inner(st: &Arc<AppState>, req: Request) -> Result<Response> {
    st.require_key(req.headers(), KeyKind::Admin)?;
    let client_id = path_segment(&req, 2)?;
    subscriptions_of(st, &client_id).await
}

async fn subscriptions_of(st: &Arc<AppState>, client_id: &str) -> Result<Response> {
    let subs = st.store.subscriptions(client_id).await?.ok_or_else(|| {
        Error::new(
            StatusCode::NOT_FOUND,
            "unknown_client",
            "no app has this client_id",
        )
    })?;
    let list: Vec<Value> = subs
        .into_iter()
        .map(|(p, s)| json!({"apiproduct": p, "status": s.as_str()}))
        .collect();
    Ok(respond(
        StatusCode::OK,
        json!({"client_id": client_id, "apiProducts": list}),
    ))
}

/// The statuses to change (at least one; the others are kept).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewStatuses {
    /// The app's status (Apigee's `?action=approve|revoke` of an app).
    #[schema(nullable = false)]
    status: Option<ApprovalStatus>,
    /// The API key's status (the client id as a key: Apigee's
    /// `?action=approve|revoke` of a key).
    #[schema(nullable = false)]
    key_status: Option<ApprovalStatus>,
    /// The developer's status (Apigee's `?action=active|inactive`).
    #[schema(nullable = false)]
    developer_status: Option<DeveloperStatus>,
}

#[derive(Deserialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ApprovalStatus {
    Approved,
    Revoked,
}

#[derive(Deserialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DeveloperStatus {
    Active,
    Inactive,
}

/// Approves or revokes an app or its key, or (de)activates its developer:
/// what VerifyAPIKey checks (docs/token-service.md, "API keys").
#[utoipa::path(put, path = "/v1/apps/{client_id}/status",
    params(("client_id" = String, Path, description = "the app's client id")),
    request_body(content = NewStatuses, content_type = "application/json"),
    responses(
        (status = 200, description = "the app's statuses after the change", body = AppStatuses),
        (status = 400, description = "invalid_request (no status given, or an unknown one)", body = ErrorBody),
        (status = 401, description = "unauthorized: not the admin key", body = ErrorBody),
        (status = 404, description = "unknown_client: no app has this client_id", body = ErrorBody),
        (status = 413, description = "request_too_large", body = ErrorBody),
        (status = 503, description = "store_unavailable", body = ErrorBody),
    ),
    security(("admin_key" = [])))]
pub(crate) async fn set_statuses(State(st): St, req: Request) -> Response {
    answer(set_statuses_inner(&st, req).await)
}

async fn set_statuses_inner(st: &Arc<AppState>, req: Request) -> Result<Response> {
    st.require_key(req.headers(), KeyKind::Admin)?;
    let client_id = path_segment(&req, 2)?;
    let b: NewStatuses = parse_json(&read_body(req).await?)?;
    let approval = |s: ApprovalStatus| match s {
        ApprovalStatus::Approved => "approved",
        ApprovalStatus::Revoked => "revoked",
    };
    let change = crate::store::Statuses {
        status: b.status.map(approval),
        key_status: b.key_status.map(approval),
        developer_status: b.developer_status.map(|d| match d {
            DeveloperStatus::Active => "active",
            DeveloperStatus::Inactive => "inactive",
        }),
    };
    if change.status.is_none() && change.key_status.is_none() && change.developer_status.is_none() {
        return Err(Error::invalid_request(
            "give status, key_status or developer_status",
        ));
    }
    let unknown = || {
        Error::new(
            StatusCode::NOT_FOUND,
            "unknown_client",
            "no app has this client_id",
        )
    };
    if !st.store.set_statuses(client_id.clone(), change).await? {
        return Err(unknown());
    }
    let app = st
        .store
        .app_by_client(&client_id)
        .await?
        .ok_or_else(unknown)?;
    info!(client_id = %client_id, status = %app.status, key_status = %app.key_status,
        developer_status = %app.developer_status, "app statuses stored");
    Ok(respond(
        StatusCode::OK,
        json!({"client_id": client_id, "status": app.status, "key_status": app.key_status,
               "developer_status": app.developer_status}),
    ))
}

/// Imports a developer app as Apigee's management API exports it: its one
/// credential's key and secret become the client id and secret, its
/// products the app's subscriptions with their statuses, and the app's and
/// the key's statuses are kept (docs/token-service.md).
#[utoipa::path(post, path = "/v1/apigee/apps",
    request_body(content = ApigeeApp, content_type = "application/json"),
    responses(
        (status = 201, description = "the app", body = AppCreated),
        (status = 400, description = "invalid_request", body = ErrorBody),
        (status = 401, description = "unauthorized: not the admin key", body = ErrorBody),
        (status = 409, description = "client_exists", body = ErrorBody),
        (status = 413, description = "request_too_large", body = ErrorBody),
        (status = 503, description = "store_unavailable", body = ErrorBody),
    ),
    security(("admin_key" = [])))]
pub(crate) async fn import_apigee_app(State(st): St, req: Request) -> Response {
    answer(import_apigee_app_inner(&st, req).await)
}

async fn import_apigee_app_inner(st: &Arc<AppState>, req: Request) -> Result<Response> {
    st.require_key(req.headers(), KeyKind::Admin)?;
    let b: ApigeeApp = parse_json(&read_body(req).await?)?;
    non_empty("name", &b.name)?;
    let email = b.developer_email.as_deref().unwrap_or_default();
    if email.is_empty() {
        return Err(Error::invalid_request(
            "developerEmail is required (Apigee X exports it; add it to an Edge export)",
        ));
    }
    let [cred] = b.credentials.as_slice() else {
        return Err(Error::invalid_request(format!(
            "the app has {} credentials; import one app per credential (its key is the client id)",
            b.credentials.len()
        )));
    };
    non_empty("consumerKey", &cred.consumer_key)?;
    non_empty("consumerSecret", &cred.consumer_secret)?;
    let mut attributes = Attributes::new();
    for a in &b.attributes {
        non_empty("attributes name", &a.name)?;
        attributes.insert(a.name.clone(), a.value.clone());
    }
    let mut subs: Vec<(String, SubscriptionStatus)> = Vec::new();
    for p in &cred.api_products {
        non_empty("apiproduct", &p.apiproduct)?;
        if subs.iter().any(|(n, _)| *n == p.apiproduct) {
            return Err(Error::invalid_request(format!(
                "the credential lists the product {:?} twice",
                p.apiproduct
            )));
        }
        subs.push((p.apiproduct.clone(), p.status));
    }
    for (field, v) in [("appId", &b.app_id), ("developerId", &b.developer_id)] {
        if let Some(v) = v {
            non_empty(field, v)?;
        }
    }
    let app = App {
        app_id: b.app_id.clone().unwrap_or_else(random_id),
        name: b.name.clone(),
        developer_email: email.to_owned(),
        developer_id: b.developer_id.clone().unwrap_or_else(random_id),
        api_products: subs.iter().map(|(n, _)| n.clone()).collect(),
        attributes,
        redirect_uris: b
            .callback_url
            .iter()
            .filter(|u| !u.is_empty())
            .cloned()
            .collect(),
        client_id: cred.consumer_key.clone(),
        client_secret: cred.consumer_secret.clone(),
        products: Vec::new(),
        status: approval("status", b.status.as_deref())?.to_owned(),
        key_status: approval("credentials status", cred.status.as_deref())?.to_owned(),
        developer_status: "active".into(),
    };
    let app = st.store.create_app(app, subs).await?;
    info!(app_id = %app.app_id, client_id = %app.client_id, "app imported");
    Ok(respond(
        StatusCode::CREATED,
        json!({
            "app_id": app.app_id,
            "client_id": app.client_id,
            "client_secret": app.client_secret,
            "name": app.name,
            "developer_email": app.developer_email,
            "developer_id": app.developer_id,
        }),
    ))
}

/// An access token to import (with `"type": "access_token"`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ImportAccess {
    #[schema(min_length = 1)]
    token: String,
    #[schema(min_length = 1)]
    client_id: String,
    #[serde(default)]
    scope: String,
    status: Status,
    issued_at: i64,
    expires_in: i64,
    refresh_token: Option<String>,
    refresh_token_expires_in: Option<i64>,
    refresh_token_issued_at: Option<i64>,
    refresh_token_status: Option<Status>,
    refresh_count: Option<i64>,
    #[serde(default)]
    attributes: Attributes,
}

/// An authorization code to import (with `"type": "authorization_code"`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ImportCode {
    #[schema(min_length = 1)]
    token: String,
    #[schema(min_length = 1)]
    client_id: String,
    redirect_uri: Option<String>,
    #[serde(default)]
    scope: String,
    status: Option<Status>,
    issued_at: i64,
    expires_in: i64,
    #[serde(default)]
    attributes: Attributes,
}

/// Imports an access token (with its refresh token) or an authorization
/// code exactly as given.
#[utoipa::path(post, path = "/v1/tokens",
    request_body(content_type = "application/json",
        content = inline(crate::openapi::ImportRequest)),
    responses(
        (status = 201, description = "imported (the value is not echoed)", body = Imported),
        (status = 400, description = "invalid_request, invalid_client or protected_attribute", body = ErrorBody),
        (status = 401, description = "unauthorized: not the admin key", body = ErrorBody),
        (status = 409, description = "token_exists", body = ErrorBody),
        (status = 413, description = "request_too_large", body = ErrorBody),
        (status = 503, description = "store_unavailable", body = ErrorBody),
    ),
    security(("admin_key" = [])))]
pub(crate) async fn import_token(State(st): St, req: Request) -> Response {
    answer(import_inner(&st, req).await)
}

async fn import_inner(st: &Arc<AppState>, req: Request) -> Result<Response> {
    st.require_key(req.headers(), KeyKind::Admin)?;
    let mut v: Value = parse_json(&read_body(req).await?)?;
    let obj = v
        .as_object_mut()
        .ok_or_else(|| Error::invalid_request("the body must be a JSON object"))?;
    let kind = match obj.remove("type") {
        Some(Value::String(t)) if t == "access_token" => Kind::Access,
        Some(Value::String(t)) if t == "authorization_code" => Kind::Code,
        Some(_) => {
            return Err(Error::invalid_request(
                "type must be \"access_token\" or \"authorization_code\"",
            ))
        }
        None => return Err(Error::invalid_request("missing field `type`")),
    };
    let bad = |e: serde_json::Error| Error::invalid_request(format!("invalid JSON body: {e}"));
    let max = st.cfg.max_attributes;
    let (client_id, prefix) = match kind {
        Kind::Access => {
            let b: ImportAccess = serde_json::from_value(v).map_err(bad)?;
            let (t, attrs) = access_from_import(b, st.cfg.lifetimes.refresh)?;
            check_attributes(&attrs, max)?;
            let out = (t.client_id.clone(), redact(&t.token));
            st.store.import_access(t, attrs).await?;
            out
        }
        Kind::Code | Kind::Refresh => {
            let b: ImportCode = serde_json::from_value(v).map_err(bad)?;
            non_empty("token", &b.token)?;
            non_empty("client_id", &b.client_id)?;
            let issued_at = non_negative("issued_at", b.issued_at)?;
            let code = AuthCode {
                fp: None,
                expires_at: expiry(issued_at, b.expires_in, "expires_in")?,
                code: b.token,
                client_id: b.client_id,
                redirect_uri: b.redirect_uri,
                scope: b.scope,
                status: b.status.unwrap_or(Status::Approved).as_str().to_owned(),
                issued_at,
            };
            let attrs = b.attributes;
            check_attributes(&attrs, max)?;
            let out = (code.client_id.clone(), redact(&code.code));
            st.store.import_code(code, attrs).await?;
            out
        }
    };
    info!(kind = kind.name(), token = %prefix, client_id = %client_id, "token imported");
    Ok(respond(
        StatusCode::CREATED,
        json!({"type": kind.name(), "client_id": client_id}),
    ))
}

fn access_from_import(b: ImportAccess, default_refresh: i64) -> Result<(AccessToken, Attributes)> {
    non_empty("token", &b.token)?;
    non_empty("client_id", &b.client_id)?;
    let issued_at = non_negative("issued_at", b.issued_at)?;
    let refresh = match b.refresh_token {
        Some(rt) => {
            non_empty("refresh_token", &rt)?;
            if rt == b.token {
                return Err(Error::invalid_request(
                    "refresh_token must differ from token",
                ));
            }
            let r_issued = non_negative(
                "refresh_token_issued_at",
                b.refresh_token_issued_at.unwrap_or(issued_at),
            )?;
            Some(RefreshToken {
                token: rt,
                fp: None,
                status: b
                    .refresh_token_status
                    .unwrap_or(Status::Approved)
                    .as_str()
                    .to_owned(),
                issued_at: r_issued,
                expires_at: expiry(
                    r_issued,
                    b.refresh_token_expires_in.unwrap_or(default_refresh),
                    "refresh_token_expires_in",
                )?,
            })
        }
        None => {
            if b.refresh_token_expires_in.is_some()
                || b.refresh_token_issued_at.is_some()
                || b.refresh_token_status.is_some()
            {
                return Err(Error::invalid_request(
                    "refresh_token_* fields need a refresh_token",
                ));
            }
            None
        }
    };
    let t = AccessToken {
        token_fp: None,
        expires_at: expiry(issued_at, b.expires_in, "expires_in")?,
        token: b.token,
        client_id: b.client_id,
        scope: b.scope,
        status: b.status.as_str().to_owned(),
        issued_at,
        refresh,
        refresh_count: non_negative("refresh_count", b.refresh_count.unwrap_or(0))?,
    };
    Ok((t, b.attributes))
}

// ---------------------------------------------------------------- OAuth endpoints

/// The OAuth 2.0 token endpoint (RFC 6749).
#[utoipa::path(post, path = "/oauth2/token",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "the issued tokens", body = TokenIssued),
        (status = 400, description = "invalid_request, invalid_grant or unsupported_grant_type", body = ErrorBody),
        (status = 401, description = "invalid_client", body = ErrorBody),
        (status = 413, description = "request_too_large", body = ErrorBody),
        (status = 503, description = "store_unavailable", body = ErrorBody),
    ),
    security(("client" = []), ()))]
pub(crate) async fn token(State(st): St, req: Request) -> Response {
    answer(token_inner(&st, req).await)
}

async fn token_inner(st: &Arc<AppState>, req: Request) -> Result<Response> {
    let headers = auth_headers(req.headers());
    let form = Form::parse(&read_body(req).await?)?;
    let app = authenticate_client(st, &headers, &form).await?;
    let client_id = app.client_id;
    let lifetimes = st.cfg.lifetimes;
    let grant = form.require("grant_type")?;
    let issued: Issued = match grant {
        "client_credentials" => {
            let scope = form.get("scope")?.unwrap_or("").to_owned();
            st.store
                .client_credentials(client_id.clone(), scope, lifetimes)
                .await?
        }
        "authorization_code" => {
            let code = form.require("code")?.to_owned();
            let redirect_uri = form.get("redirect_uri")?.map(str::to_owned);
            st.store
                .exchange_code(client_id.clone(), code, redirect_uri, lifetimes)
                .await?
        }
        "refresh_token" => {
            let rt = form.require("refresh_token")?.to_owned();
            st.store.refresh(client_id.clone(), rt, lifetimes).await?
        }
        _ => {
            return Err(Error::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "grant_type must be client_credentials, authorization_code or refresh_token",
            ))
        }
    };
    info!(
        grant,
        client_id = %client_id,
        token = %redact(&issued.access_token),
        refresh_token = %issued.refresh_token.as_deref().map(redact).unwrap_or_default(),
        "token issued"
    );
    let mut body = json!({
        "access_token": issued.access_token,
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
        "scope": issued.scope,
        "issued_at": issued.issued_at.to_string(),
    });
    if let Some(rt) = issued.refresh_token {
        body["refresh_token"] = Value::from(rt);
    }
    let mut resp = respond(StatusCode::OK, body);
    resp.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(resp)
}

/// Only the Authorization header is needed once the body is read.
fn auth_headers(h: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    if let Some(v) = h.get(header::AUTHORIZATION) {
        out.insert(header::AUTHORIZATION, v.clone());
    }
    out
}

/// Token revocation (RFC 7009), by the owning client or the admin key.
#[utoipa::path(post, path = "/oauth2/revoke",
    request_body(content = RevokeForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "revoked, or unknown", body = crate::openapi::Empty),
        (status = 400, description = "invalid_request, unauthorized_client or unsupported_token_type", body = ErrorBody),
        (status = 401, description = "invalid_client or unauthorized", body = ErrorBody),
        (status = 413, description = "request_too_large", body = ErrorBody),
        (status = 503, description = "store_unavailable", body = ErrorBody),
    ),
    security(("client" = []), ("admin_key" = []), ()))]
pub(crate) async fn revoke(State(st): St, req: Request) -> Response {
    answer(revoke_inner(&st, req).await)
}

async fn revoke_inner(st: &Arc<AppState>, req: Request) -> Result<Response> {
    let headers = auth_headers(req.headers());
    let admin = is_bearer(&headers);
    if admin {
        st.require_key(&headers, KeyKind::Admin)?;
    }
    let form = Form::parse(&read_body(req).await?)?;
    let caller = if admin {
        Caller::Admin
    } else {
        Caller::Client(authenticate_client(st, &headers, &form).await?.client_id)
    };
    let token = form.require("token")?.to_owned();
    let hint = match form.get("token_type_hint")? {
        None => None,
        Some("access_token") => Some(Kind::Access),
        Some("refresh_token") => Some(Kind::Refresh),
        Some("authorization_code") => Some(Kind::Code),
        Some("client_id") => {
            return Err(Error::new(
                StatusCode::BAD_REQUEST,
                "unsupported_token_type",
                "client ids cannot be revoked here",
            ))
        }
        Some(_) => return Err(Error::invalid_request(
            "unknown token_type_hint; expected access_token, refresh_token or authorization_code",
        )),
    };
    let prefix = redact(&token);
    let by = match &caller {
        Caller::Admin => "admin".to_owned(),
        Caller::Client(id) => id.clone(),
    };
    let out = st.store.revoke(token, hint, caller).await?;
    match out {
        Revoked::Token { kind, client_id } => info!(
            kind = kind.name(),
            token = %prefix,
            client_id = %client_id,
            by = %by,
            "token revoked"
        ),
        Revoked::NotFound => info!(token = %prefix, by = %by, "revocation of an unknown token"),
    }
    Ok(respond(StatusCode::OK, json!({})))
}

/// Readiness: a query on the store.
#[utoipa::path(get, path = "/healthz",
    responses(
        (status = 200, description = "the store answers", body = Health),
        (status = 503, description = "the store does not answer", body = Health),
    ))]
pub(crate) async fn healthz(State(st): St) -> Response {
    match st.store.health().await {
        Ok(()) => respond(StatusCode::OK, json!({"status": "ok"})),
        Err(_) => {
            let mut resp = respond(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"status": "unavailable", "error": "store_unavailable",
                       "error_description": "the store does not answer"}),
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            resp.extensions_mut().insert(ErrorCode("store_unavailable"));
            resp
        }
    }
}

/// This description (OpenAPI 3.1), generated from the code.
#[utoipa::path(get, path = "/openapi.json",
    responses((status = 200, description = "the OpenAPI description of this API",
        content_type = "application/json", body = Object)))]
pub(crate) async fn openapi_json() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        crate::openapi::json(),
    )
        .into_response()
}

// ---------------------------------------------------------------- the change feed

/// `after` and `limit` of `GET /v1/changes`, checked.
fn feed_query(query: Option<&str>) -> Result<(i64, i64)> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|_| Error::invalid_request("the query string is not urlencoded"))?;
    let one = |name: &str| -> Result<Option<&str>> {
        let mut found = None;
        for (k, v) in &pairs {
            if k == name {
                if found.is_some() {
                    return Err(Error::invalid_request(format!(
                        "parameter {name} is given more than once"
                    )));
                }
                found = Some(v.as_str());
            }
        }
        Ok(found)
    };
    let after = match one("after")? {
        None | Some("") => 0,
        Some(v) => v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            Error::invalid_request("after must be a cursor: an integer >= 0 (0: from the oldest)")
        })?,
    };
    let limit = match one("limit")? {
        None | Some("") => FEED_LIMIT_DEFAULT,
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=FEED_LIMIT_MAX).contains(n))
            .ok_or_else(|| {
                Error::invalid_request(format!(
                    "limit must be an integer from 1 to {FEED_LIMIT_MAX}"
                ))
            })?,
    };
    Ok((after, limit))
}

/// The change feed: which cached profiles changed.
#[utoipa::path(get, path = "/v1/changes",
    params(
        ("after" = Option<i64>, Query, minimum = 0, description = "a cursor: changes after it (0 or absent: from the oldest retained)"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 5000, description = "the most changes in one answer (default 500)"),
    ),
    responses(
        (status = 200, description = "a page", body = FeedPage),
        (status = 400, description = "invalid_request", body = ErrorBody),
        (status = 401, description = "unauthorized: not the service key", body = ErrorBody),
        (status = 410, description = "cursor_expired (with `oldest`)", body = ErrorBody),
        (status = 503, description = "store_unavailable", body = ErrorBody),
    ),
    security(("service_key" = [])))]
pub(crate) async fn changes(State(st): St, req: Request) -> Response {
    answer(changes_inner(&st, req).await)
}

async fn changes_inner(st: &Arc<AppState>, req: Request) -> Result<Response> {
    st.require_key(req.headers(), KeyKind::Service)?;
    let (after, limit) = feed_query(req.uri().query())?;
    match st.store.changes(after, limit).await? {
        Feed::Page {
            rows,
            next,
            oldest,
            head,
        } => {
            let changes: Vec<Value> = rows
                .into_iter()
                .map(|r| json!({"cursor": r.cursor, "kind": r.kind, "hash": r.hash, "op": r.op}))
                .collect();
            Ok(respond(
                StatusCode::OK,
                json!({"changes": changes, "next": next, "oldest": oldest, "head": head}),
            ))
        }
        Feed::Expired { oldest } => {
            let mut e = Error::new(
                StatusCode::GONE,
                "cursor_expired",
                "changes after this cursor are no longer retained (or the cursor is not from \
                 this database): drop every cached profile and start again from after=0",
            );
            e.extra.push(("oldest", Value::from(oldest)));
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn attribute_rules() {
        assert!(check_attribute("department.id", "42").is_ok());
        assert_eq!(
            check_attribute("", "x").unwrap_err().code,
            "invalid_request"
        );
        assert_eq!(
            check_attribute(&"a".repeat(256), "x").unwrap_err().code,
            "invalid_request"
        );
        assert!(check_attribute(&"é".repeat(255), "x").is_ok());
        assert_eq!(
            check_attribute("Scope", "x").unwrap_err().code,
            "protected_attribute"
        );
        assert_eq!(
            check_attribute("refresh_token_foo", "x").unwrap_err().code,
            "protected_attribute"
        );
        assert!(check_attribute("a", &"v".repeat(2048)).is_ok());
        assert_eq!(
            check_attribute("a", &"v".repeat(2049)).unwrap_err().code,
            "invalid_request"
        );
    }

    #[test]
    fn form_rules() {
        let f = Form::parse(b"token=a%2Bb&empty=&x=1&x=2").unwrap();
        assert_eq!(f.get("token").unwrap(), Some("a+b"));
        assert_eq!(f.get("empty").unwrap(), None);
        assert!(f.get("x").is_err());
        assert!(f.require("missing").is_err());
    }

    #[test]
    fn basic_credentials_are_decoded() {
        let mut h = HeaderMap::new();
        let enc = base64::engine::general_purpose::STANDARD.encode("my%20id:s3cr%3At");
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {enc}")).unwrap(),
        );
        let (id, secret) = basic_credentials(&h).unwrap().unwrap();
        assert_eq!((id.as_str(), secret.as_str()), ("my id", "s3cr:t"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert!(basic_credentials(&h).is_err());
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert!(basic_credentials(&h).unwrap().is_none());
    }
}
