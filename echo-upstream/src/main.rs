//! echo-upstream: answers every request with a JSON description of it, so
//! the end-to-end tests and the local harness can see what Envoy forwarded.

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use clap::Parser;
use serde_json::{json, Map, Value};
use std::net::SocketAddr;
use std::process::ExitCode;
use tracing::{error, info};

/// Largest request body echoed back (larger ones get 413).
const BODY_LIMIT: usize = 8 * 1024 * 1024;

/// Echo server: answers any method and path with 200 and a JSON
/// `{"method", "path", "query", "headers", "body"}` describing the request;
/// each `echo-header=name:value` query parameter adds that response header.
#[derive(Debug, Parser)]
#[command(name = "echo-upstream", version)]
struct Args {
    /// Address and port to listen on (port 0 picks a free port; the start
    /// log line tells which)
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
}

/// The JSON description of a request. Header names are lowercase (as HTTP/1
/// parsing leaves them); repeated headers are joined with ", " in order.
fn describe(
    method: &str,
    uri: &axum::http::Uri,
    headers: &axum::http::HeaderMap,
    body: &[u8],
) -> Value {
    let mut hs: Map<String, Value> = Map::new();
    for name in headers.keys() {
        let joined = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join(", ");
        hs.insert(name.as_str().to_owned(), Value::String(joined));
    }
    json!({
        "method": method,
        "path": uri.path(),
        "query": uri.query().unwrap_or(""),
        "headers": hs,
        "body": String::from_utf8_lossy(body),
    })
}

async fn echo(req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let bytes: Bytes = match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(b) => b,
        Err(e) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                axum::Json(
                    json!({"error": "request_too_large", "error_description": e.to_string()}),
                ),
            )
                .into_response()
        }
    };
    let v = describe(parts.method.as_str(), &parts.uri, &parts.headers, &bytes);
    let mut response = (StatusCode::OK, axum::Json(v)).into_response();
    // `echo-header=name:value` (repeatable): a response header to send back,
    // so tests can see what happens to headers an upstream sends.
    for pair in parts.uri.query().unwrap_or("").split('&') {
        let Some(spec) = pair.strip_prefix("echo-header=") else {
            continue;
        };
        let spec = percent_decode(spec);
        let Some((name, value)) = spec.split_once(':') else {
            continue;
        };
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::try_from(name),
            axum::http::HeaderValue::try_from(value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .init();
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            error!(listen = %args.listen, error = %e, "cannot listen");
            return ExitCode::from(1);
        }
    };
    let addr = listener.local_addr().unwrap_or(args.listen);
    info!(addr = %addr, "echo upstream listening");
    let app = Router::new().fallback(echo);
    let shutdown = async {
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term => {},
        }
    };
    match axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "server failed");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use axum::http::{HeaderMap, HeaderValue, Uri};

    #[test]
    fn describes_the_request() {
        let mut h = HeaderMap::new();
        h.append("x-a", HeaderValue::from_static("1"));
        h.append("x-a", HeaderValue::from_static("2"));
        h.append("host", HeaderValue::from_static("up"));
        let uri: Uri = "/p/q?a=1&b=%20".parse().unwrap();
        let v = describe("POST", &uri, &h, b"hi \xff");
        assert_eq!(v["method"], "POST");
        assert_eq!(v["path"], "/p/q");
        assert_eq!(v["query"], "a=1&b=%20");
        assert_eq!(v["headers"]["x-a"], "1, 2");
        assert_eq!(v["headers"]["host"], "up");
        assert_eq!(v["body"], "hi \u{fffd}");
        let v = describe("GET", &"/".parse().unwrap(), &HeaderMap::new(), b"");
        assert_eq!(v["query"], "");
        assert_eq!(v["body"], "");
    }
}
