//! `/v1/ext_authz/{*path}`: an authorization endpoint for Envoy's
//! `ext_authz` filter (HTTP service mode), the architecture of Apigee's own
//! Envoy adapter: Envoy asks the service on every request. The benchmark
//! (docs/performance.md, setup 5) compares the filter against it.
//!
//! Envoy sends the original method, `path_prefix` + the original path and
//! query, and the original `Authorization` header. The caller proves it is
//! Envoy with the service key in `x-token-service-key` (added by
//! `authorization_request.headers_to_add`; a separate header because the
//! client's `Authorization` may carry its own token). The access token is the
//! original request's `access_token` query parameter, else its
//! `Authorization: Bearer` credentials. An active access token gets 200 and
//! `x-apigee-*` headers; anything else 401 (token) or 403 (service key).

use super::{AppState, KeyKind, St};
use crate::error::{Error, Result};
use crate::store::{Kind, Lookup};
use axum::extract::Request;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::sync::Arc;

/// Header carrying the service key.
pub const KEY_HEADER: &str = "x-token-service-key";

/// Profile members copied into the answer, as `x-apigee-<header>`.
const PROFILE_HEADERS: &[(&str, &str)] = &[
    ("client_id", "x-apigee-client-id"),
    ("scope", "x-apigee-scope"),
    ("developer.email", "x-apigee-developer-email"),
    ("developer.app.name", "x-apigee-developer-app-name"),
    ("api_product_list", "x-apigee-api-products"),
    ("expires_in", "x-apigee-expires-in"),
];

/// For Envoy's ext_authz (HTTP service): any method; described as GET.
#[utoipa::path(get, path = "/v1/ext_authz/{path}",
    params(
        ("path" = String, Path, description = "the original request's path"),
        ("access_token" = Option<String>, Query, description = "the access token (else Authorization: Bearer)"),
    ),
    responses(
        (status = 200, description = "an active access token: `x-apigee-*` headers, no body"),
        (status = 401, description = "unauthorized: no, or no active, access token", body = crate::openapi::ErrorBody),
        (status = 403, description = "forbidden: no service key in x-token-service-key", body = crate::openapi::ErrorBody),
        (status = 503, description = "store_unavailable", body = crate::openapi::ErrorBody),
    ),
    security(("ext_authz_key" = [])))]
pub async fn check(State(st): St, req: Request) -> Response {
    super::answer(check_inner(&st, req.headers(), req.uri().query()).await)
}

async fn check_inner(
    st: &Arc<AppState>,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Response> {
    let presented = headers.get(KEY_HEADER).map(HeaderValue::as_bytes);
    if presented.and_then(|k| st.key_kind(k)) != Some(KeyKind::Service) {
        return Err(Error::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this endpoint needs the header {KEY_HEADER}: <service key>"),
        ));
    }
    let Some(token) = token(headers, query) else {
        return Err(Error::unauthorized(
            "no access token: give access_token in the query or Authorization: Bearer",
        ));
    };
    let v = st
        .store
        .introspect(&token, Lookup::Token(Kind::Access), &st.cfg.org)
        .await?;
    if v["active"] != Value::Bool(true) {
        return Err(Error::unauthorized(
            "the access token is unknown, revoked or expired",
        ));
    }
    let mut resp = StatusCode::OK.into_response();
    for (member, name) in PROFILE_HEADERS {
        let value = match &v["profile"][*member] {
            Value::String(s) => HeaderValue::from_str(s).ok(),
            _ => None,
        };
        if let Some(value) = value {
            resp.headers_mut()
                .insert(HeaderName::from_static(name), value);
        }
    }
    Ok(resp)
}

/// The `access_token` query parameter (first non-empty one), else the
/// Bearer credentials of the original request.
fn token(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let from_query = query
        .and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
        .and_then(|pairs| {
            pairs
                .into_iter()
                .find(|(k, v)| k == "access_token" && !v.is_empty())
                .map(|(_, v)| v)
        });
    from_query.or_else(|| {
        let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let (scheme, rest) = v.split_once(' ')?;
        let token = rest.trim();
        (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn token_from_query_then_bearer() {
        let mut h = HeaderMap::new();
        assert_eq!(token(&h, None), None);
        assert_eq!(
            token(&h, Some("a=1&access_token=x%2By")).as_deref(),
            Some("x+y")
        );
        assert_eq!(token(&h, Some("access_token=")), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer  tok "),
        );
        assert_eq!(token(&h, Some("a=1")).as_deref(), Some("tok"));
        assert_eq!(token(&h, Some("access_token=q")).as_deref(), Some("q"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(token(&h, None), None);
    }
}
