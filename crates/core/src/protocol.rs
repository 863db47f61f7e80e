//! The token-service protocol, as the filter speaks it
//! (docs/token-service.md): what is asked (an introspection, an attribute
//! update, a page of the change feed, each with the same headers) and what
//! a failed call's answer means. The answers' bodies are read by
//! [`crate::profile`] (a profile and its status rules) and [`crate::feed`]
//! (a page of changes).

use crate::config::{FilterConfig, TokenService};
use crate::flow::{Flow, Pending};
use crate::request::percent_encode_into;

/// True for an answer Envoy made up because no token service answered:
/// no status (a reset), or a 503 that is not the token service's JSON (a
/// refused or failed connection, no healthy host). A timeout (504) is not
/// one: the call may have reached the service, and another would double
/// the wait. Nor is the cluster's circuit breaker refusing the call
/// (Envoy's 503 "... reset reason: overflow"): another call would be
/// refused too, and during a flood it would triple the work.
pub(crate) fn never_answered(status: Option<u16>, body: &[u8]) -> bool {
    match status {
        None => true,
        Some(503) => {
            !body.trim_ascii_start().starts_with(b"{") && !body.windows(8).any(|w| w == b"overflow")
        }
        Some(_) => false,
    }
}

/// The one list of headers of every call to the token service: the
/// pseudo-headers, the body's content type (`None`: no body), JSON
/// accepted, and the configured credentials.
pub(crate) fn headers<'a>(
    service: &'a TokenService,
    method: &'static str,
    path: &'a str,
    content_type: Option<&'static str>,
) -> Vec<(&'a str, &'a str)> {
    let mut headers = Vec::with_capacity(6);
    headers.push((":method", method));
    headers.push((":path", path));
    headers.push((":authority", service.authority.as_str()));
    if let Some(content_type) = content_type {
        headers.push(("content-type", content_type));
    }
    headers.push(("accept", "application/json"));
    if let Some(credentials) = &service.credentials {
        headers.push(("authorization", credentials.as_str()));
    }
    headers
}

/// The call of the flow's pending lookup or update: path, content type and
/// body. A lookup is an RFC 7662 introspection (`token`,
/// `token_type_hint`); an update a JSON merge of attributes.
pub(crate) fn request<'c>(
    flow: &Flow,
    config: &'c FilterConfig,
) -> Option<(&'c str, &'static str, Vec<u8>)> {
    match flow.pending()? {
        Pending::Lookup { kind, token } => {
            let mut body = String::with_capacity(32 + token.len() * 3);
            body.push_str("token=");
            percent_encode_into(flow.text(token), &mut body);
            body.push_str("&token_type_hint=");
            body.push_str(kind.hint());
            Some((
                config.token_service.path.as_str(),
                "application/x-www-form-urlencoded",
                body.into_bytes(),
            ))
        }
        Pending::Update { token, attributes } => {
            let attributes: Vec<serde_json::Value> = attributes
                .iter()
                .map(|(name, value)| serde_json::json!({"name": name, "value": value}))
                .collect();
            let body = serde_json::json!({"token": flow.text(token), "attributes": attributes});
            Some((
                config.token_service.attributes_path.as_str(),
                "application/json",
                body.to_string().into_bytes(),
            ))
        }
    }
}

/// The path of a change-feed poll: the changes after `cursor`, at most
/// `limit` of them.
pub(crate) fn feed_path(path: &str, cursor: i64, limit: u32) -> String {
    format!("{path}?after={cursor}&limit={limit}")
}
