//! The token service's request bodies (forms and JSON) through its real
//! router, in process, on a real SQLite store: every answer is a JSON
//! object, an error answer names its `error`, and no input is a 5xx (a
//! panic in a handler, or an error the service did not expect). Input: a
//! byte for the endpoint, a byte for the key, a byte for the content
//! type, then the body (the query, for the change feed).
#![no_main]

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{header, Request};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use token_service::http::{router, AppState, Config};
use token_service::store::{sqlite::Sqlite, Lifetimes, Store};
use tower::ServiceExt;

const SERVICE_KEY: &str = "fuzz-service-key";
const ADMIN_KEY: &str = "fuzz-admin-key";
/// `client:secret` of the app the store starts with, in base64.
const CLIENT_BASIC: &str = "Basic Y2lkLWZ1eno6c2VjcmV0LWZ1eno=";

const ENDPOINTS: [(&str, &str); 8] = [
    ("POST", "/oauth2/introspect"),
    ("POST", "/oauth2/token"),
    ("POST", "/oauth2/revoke"),
    ("POST", "/v1/accesstokens/attributes"),
    ("POST", "/v1/apps"),
    ("POST", "/v1/tokens"),
    ("GET", "/v1/changes"),
    ("PUT", "/v1/tokens"),
];
const KEYS: [Option<&str>; 4] = [
    Some("Bearer fuzz-service-key"),
    Some("Bearer fuzz-admin-key"),
    Some(CLIENT_BASIC),
    None,
];
const TYPES: [Option<&str>; 4] = [
    Some("application/x-www-form-urlencoded"),
    Some("application/json"),
    Some("text/plain"),
    None,
];

struct Service {
    rt: tokio::runtime::Runtime,
    router: axum::Router,
    _dir: tempfile::TempDir,
}

fn service() -> &'static Service {
    static SERVICE: OnceLock<Service> = OnceLock::new();
    SERVICE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Sqlite::open(&dir.path().join("fuzz.db"), 1).expect("the SQLite store opens");
        let state = Arc::new(AppState {
            store: Arc::new(Store::Sqlite(Arc::new(store))),
            cfg: Config {
                org: "fuzz-org".into(),
                lifetimes: Lifetimes {
                    access: 3600,
                    refresh: 86400,
                },
                max_attributes: 18,
                service_key: SERVICE_KEY.into(),
                admin_key: ADMIN_KEY.into(),
            },
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let service = Service {
            rt,
            router: router(state),
            _dir: dir,
        };
        // An app and a token for the bodies to find.
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        for (path, body) in [
            (
                "/v1/apps",
                &r#"{"name":"fuzz","developer_email":"f@example.com","client_id":"cid-fuzz","client_secret":"secret-fuzz"}"#.to_string(),
            ),
            (
                "/v1/tokens",
                &format!(
                    r#"{{"type":"access_token","token":"tok-fuzz","client_id":"cid-fuzz","status":"approved","issued_at":{now_ms},"expires_in":3600,"refresh_token":"rt-fuzz"}}"#
                ),
            ),
        ] {
            let (status, body) = service.call("POST", path, Some("Bearer fuzz-admin-key"), Some("application/json"), body.as_bytes());
            assert!(
                status < 300,
                "seeding {path}: {status} {}",
                String::from_utf8_lossy(&body)
            );
        }
        service
    })
}

impl Service {
    fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        content_type: Option<&str>,
        body: &[u8],
    ) -> (u16, Vec<u8>) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(key) = key {
            request = request.header(header::AUTHORIZATION, key);
        }
        if let Some(t) = content_type {
            request = request.header(header::CONTENT_TYPE, t);
        }
        let request = request
            .body(Body::from(body.to_vec()))
            .expect("a request from fixed parts");
        self.rt.block_on(async {
            let response = self
                .router
                .clone()
                .oneshot(request)
                .await
                .expect("the router is infallible");
            let status = response.status().as_u16();
            let bytes = response
                .into_body()
                .collect()
                .await
                .expect("a whole body")
                .to_bytes();
            (status, bytes.to_vec())
        })
    }
}

fuzz_target!(|data: &[u8]| {
    let [e, k, t, body @ ..] = data else {
        return;
    };
    let (method, path) = ENDPOINTS[usize::from(*e) % ENDPOINTS.len()];
    let key = KEYS[usize::from(*k) % KEYS.len()];
    let content_type = TYPES[usize::from(*t) % TYPES.len()];
    let service = service();
    let (status, answer) = if path == "/v1/changes" {
        // The body is the query string.
        let Ok(query) = std::str::from_utf8(body) else {
            return;
        };
        let uri = format!("{path}?{query}");
        if uri.parse::<axum::http::Uri>().is_err() {
            return; // not a request Envoy or hyper would hand over
        }
        service.call(method, &uri, key, content_type, b"")
    } else {
        service.call(method, path, key, content_type, body)
    };
    let text = String::from_utf8_lossy(&answer);
    assert!(status < 500, "HTTP {status} for {method} {path}: {text}");
    let json: serde_json::Value = serde_json::from_slice(&answer)
        .unwrap_or_else(|e| panic!("HTTP {status}, not JSON ({e}): {text}"));
    if status >= 400 {
        assert!(
            json["error"].is_string(),
            "HTTP {status} without an error: {text}"
        );
    }
});
