//! The one error type of the service: every refusal is a JSON body with a
//! status, and every internal failure is logged here and answered as a 500.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

/// An HTTP error answer: `{"error": code, "error_description": ..., ...extra}`.
#[derive(Debug)]
pub struct Error {
    pub status: StatusCode,
    pub code: &'static str,
    pub description: String,
    /// Extra members of the body (e.g. `"attribute"` for `protected_attribute`).
    pub extra: Vec<(&'static str, Value)>,
    /// Value of a `WWW-Authenticate` header to send with a 401.
    pub www_authenticate: Option<&'static str>,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(status: StatusCode, code: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            code,
            description: description.into(),
            extra: Vec::new(),
            www_authenticate: None,
        }
    }

    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    /// Missing or wrong service/admin key.
    pub fn unauthorized(description: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::UNAUTHORIZED, "unauthorized", description);
        e.www_authenticate = Some("Bearer");
        e
    }

    /// Failed OAuth client authentication (RFC 6749 5.2).
    pub fn invalid_client(description: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::UNAUTHORIZED, "invalid_client", description);
        e.www_authenticate = Some("Basic realm=\"token-service\"");
        e
    }

    pub fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", description)
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            format!("the request body is larger than {limit} bytes"),
        )
    }

    pub fn protected_attribute(name: &str) -> Self {
        let mut e = Self::new(
            StatusCode::BAD_REQUEST,
            "protected_attribute",
            format!("attribute {name:?} is a standard profile field and cannot be set"),
        );
        e.extra.push(("attribute", Value::from(name)));
        e
    }

    /// The store (the database) cannot answer now: 503, logged here with
    /// the detail (which never holds a token, a password or a key).
    pub fn unavailable(detail: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %detail, "store unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the token store is unavailable; try again later",
        )
    }

    pub fn is_unavailable(&self) -> bool {
        self.status == StatusCode::SERVICE_UNAVAILABLE
    }

    /// An internal failure: logged in full here, answered without detail.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal error; see the token service log",
        )
    }

    pub fn body(&self) -> Value {
        let mut m = Map::new();
        m.insert("error".into(), Value::from(self.code));
        m.insert(
            "error_description".into(),
            Value::from(self.description.as_str()),
        );
        for (k, v) in &self.extra {
            m.insert((*k).into(), v.clone());
        }
        Value::Object(m)
    }
}

impl From<rusqlite::Error> for Error {
    /// Busy, locked, I/O, full or unopenable database: unavailable (503);
    /// anything else is a bug (500).
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode as C;
        match e.sqlite_error_code() {
            Some(
                C::DatabaseBusy
                | C::DatabaseLocked
                | C::SystemIoFailure
                | C::DiskFull
                | C::CannotOpen
                | C::ReadOnly,
            ) => Self::unavailable(format_args!("sqlite: {e}")),
            _ => Self::internal(format_args!("store: {e}")),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body())).into_response();
        if let Some(v) = self.www_authenticate {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(v));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}
