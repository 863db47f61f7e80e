//! The built filter, `dist/oauthv2info.wasm`, run in an interpreter behind
//! an emulated proxy-wasm host that checks every host call (emulator/):
//! the tier between the core's unit tests (a fake `Host`, natively) and the
//! real Envoy (tests/e2e/). It is what tests `src/` itself: the raw host
//! calls of `src/abi.rs` and the callbacks of `src/lib.rs`
//! (docs/testing.md#the-built-wasm-in-a-host-emulator).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod emulator;
mod failures;
mod lifecycle;
mod requests;
mod tick;

use serde_json::json;

/// A GetOAuthV2Info on the access token in the query.
pub const GET: &str = r#"<GetOAuthV2Info name="G"><AccessToken ref="request.queryparam.access_token"/></GetOAuthV2Info>"#;

/// GetOAuthV2Info, and the developer's e-mail as a request header.
pub fn get_config() -> String {
    json!({"policies": [GET], "request_headers": {"x-developer-email": "oauthv2accesstoken.G.developer.email"}})
        .to_string()
}

/// The emulator's clock at start, epoch milliseconds.
pub const NOW_MS: i64 = 1_796_083_200_000;

/// The token service's introspection answer for an active token.
pub fn profile(token: &str) -> String {
    json!({"active": true, "client_id": "app", "profile": {
        "access_token": token, "client_id": "app", "scope": "READ WRITE", "status": "approved",
        "expires_at": (NOW_MS + 3_600_000).to_string(), "issued_at": NOW_MS.to_string(),
        "developer.email": "dev@example.com", "attributes": {"dept": "42"}}})
    .to_string()
}

/// Apigee's fault body for an unknown access token (docs/faults.md).
pub const INVALID_ACCESS_TOKEN: &str = r#"{"fault":{"faultstring":"Invalid Access Token","detail":{"errorcode":"keymanagement.service.invalid_access_token"}}}"#;
/// The fault when no token service answers (docs/faults.md).
pub const UNAVAILABLE: &str = r#"{"fault":{"faultstring":"Token service unavailable","detail":{"errorcode":"keymanagement.service.token_service_unavailable"}}}"#;
