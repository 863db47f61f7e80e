//! Token profiles and the names SetOAuthV2Info may not change.

pub use oauthv2info_names::attributes::{is_protected_attribute, PROTECTED_ATTRIBUTES};

use std::borrow::Cow;

use crate::catalog::{kind_suffixes, SET_SUFFIXES};
use crate::fault::Fault;
use crate::policy::TokenKind;

/// A token or client profile, as the token service (or a plain RFC 7662
/// server) described it. Times are kept absolute so that a cached profile
/// yields the right remaining `expires_in` whenever it is evaluated.
///
/// Every key and value lives in one string buffer: a profile is rebuilt
/// from the cache on every request, and one allocation beats forty.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Profile {
    /// RFC 7662 `active`, as the server said it.
    pub active: bool,
    /// True when the server sent no `profile` member: only the RFC 7662
    /// members are known (see docs/variables.md).
    pub plain: bool,
    data: String,
    /// Standard profile fields (every value a string).
    fields: Vec<Span>,
    /// Custom attributes (of the token, code or app).
    attributes: Vec<Span>,
}

/// Where a key and its value lie in `Profile::data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    key_start: u32,
    value_start: u32,
    value_end: u32,
}

impl Profile {
    pub fn new(active: bool, plain: bool) -> Self {
        Profile {
            active,
            plain,
            ..Profile::default()
        }
    }

    /// Reserves room for `bytes` of keys and values and `entries` pairs.
    pub fn reserve(&mut self, bytes: usize, entries: usize) {
        self.data.reserve(bytes);
        self.fields.reserve(entries);
    }

    pub fn push_field(&mut self, key: &str, value: &str) {
        let span = self.store(key, value);
        self.fields.push(span);
    }

    pub fn push_attribute(&mut self, key: &str, value: &str) {
        let span = self.store(key, value);
        self.attributes.push(span);
    }

    fn store(&mut self, key: &str, value: &str) -> Span {
        let offset = |len: usize| u32::try_from(len).unwrap_or(u32::MAX);
        let key_start = offset(self.data.len());
        self.data.push_str(key);
        let value_start = offset(self.data.len());
        self.data.push_str(value);
        Span {
            key_start,
            value_start,
            value_end: offset(self.data.len()),
        }
    }

    fn pair(&self, span: &Span) -> (&str, &str) {
        let at = |from: u32, to: u32| {
            self.data
                .get(from as usize..to as usize)
                .unwrap_or_default()
        };
        (
            at(span.key_start, span.value_start),
            at(span.value_start, span.value_end),
        )
    }

    pub fn field(&self, name: &str) -> Option<&str> {
        // Compares lengths, then bytes: no string slicing until a match.
        let bytes = self.data.as_bytes();
        let span = self.fields.iter().find(|s| {
            let (start, end) = (s.key_start as usize, s.value_start as usize);
            end - start == name.len() && bytes.get(start..end) == Some(name.as_bytes())
        })?;
        Some(self.pair(span).1)
    }

    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.fields.iter().map(|s| self.pair(s))
    }

    pub fn attributes(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.attributes.iter().map(|s| self.pair(s))
    }

    pub fn attribute_count(&self) -> usize {
        self.attributes.len()
    }
}

/// The answer to one lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The server does not know the token (`{"active": false}`).
    Unknown,
    Known(Profile),
}

/// Why a token-service answer could not be used: always reported as
/// `token_service_unavailable`, with this text in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceFailure(pub String);

/// Parses an RFC 7662 introspection answer (SPEC 6). `now_ms` only decides
/// whether a plain server's inactive token with a past `exp` is expired.
pub fn parse_introspection(
    status: Option<u16>,
    body: &[u8],
    kind: TokenKind,
    token: &str,
    now_ms: i64,
) -> Result<Lookup, ServiceFailure> {
    match status {
        Some(200) => {}
        Some(401) | Some(403) => {
            return Err(ServiceFailure(format!(
                "token service refused the filter's credentials (HTTP {})",
                status.unwrap_or_default()
            )))
        }
        Some(s) => return Err(ServiceFailure(format!("token service answered HTTP {s}"))),
        None => {
            return Err(ServiceFailure(
                "token service call failed (no response status)".to_string(),
            ))
        }
    }
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ServiceFailure(format!("token service answered malformed JSON: {e}")))?;
    parse_introspection_value(&value, kind, token, now_ms)
}

fn parse_introspection_value(
    value: &serde_json::Value,
    kind: TokenKind,
    token: &str,
    now_ms: i64,
) -> Result<Lookup, ServiceFailure> {
    let object = value
        .as_object()
        .ok_or_else(|| ServiceFailure("token service answer is not a JSON object".to_string()))?;
    let active = object
        .get("active")
        .and_then(serde_json::Value::as_bool)
        .ok_or_else(|| {
            ServiceFailure("token service answer has no boolean \"active\" member".to_string())
        })?;
    if let Some(profile) = object.get("profile") {
        let profile = profile.as_object().ok_or_else(|| {
            ServiceFailure("token service answer: \"profile\" is not an object".to_string())
        })?;
        let mut out = Profile::new(active, false);
        for (key, v) in profile {
            if key == "attributes" {
                let map = v.as_object().ok_or_else(|| {
                    ServiceFailure(
                        "token service answer: \"profile.attributes\" is not an object".to_string(),
                    )
                })?;
                for (name, v) in map {
                    if let Some(s) = scalar(v) {
                        out.push_attribute(name, &s);
                    }
                }
            } else if let Some(s) = scalar(v) {
                out.push_field(key, &s);
            }
        }
        return Ok(Lookup::Known(out));
    }

    // A plain RFC 7662 server: map the standard members.
    let exp_ms = object
        .get("exp")
        .and_then(serde_json::Value::as_i64)
        .map(|s| s.saturating_mul(1000));
    if !active && exp_ms.is_none_or(|e| e > now_ms) {
        return Ok(Lookup::Unknown);
    }
    let mut out = Profile::new(active, true);
    let mut put = |k: &str, v: String| out.push_field(k, &v);
    for member in ["client_id", "scope"] {
        if let Some(s) = object.get(member).and_then(scalar) {
            put(member, s);
        }
    }
    if let Some(s) = object.get("token_type").and_then(scalar) {
        put("token_type", s);
    }
    let iat_ms = object
        .get("iat")
        .and_then(serde_json::Value::as_i64)
        .map(|s| s.saturating_mul(1000).to_string());
    let exp_ms = exp_ms.map_or_else(|| "-1".to_string(), |e| e.to_string());
    match kind {
        TokenKind::RefreshToken => {
            put("refresh_token", token.to_string());
            put("refresh_token_status", "approved".to_string());
            put("refresh_token_expires_at", exp_ms);
            if let Some(iat) = iat_ms {
                put("refresh_token_issued_at", iat);
            }
        }
        _ => {
            let own = match kind {
                TokenKind::AuthorizationCode => "code",
                TokenKind::ClientId => "client_id",
                _ => "access_token",
            };
            put(own, token.to_string());
            put("status", "approved".to_string());
            put("expires_at", exp_ms);
            if let Some(iat) = iat_ms {
                put("issued_at", iat);
            }
        }
    }
    Ok(Lookup::Known(out))
}

fn scalar(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Parses the answer to `POST /v1/accesstokens/attributes` (SPEC 6): the
/// updated profile, or the fault the token service's error names.
pub fn parse_set_response(
    status: Option<u16>,
    body: &[u8],
    token: &str,
    now_ms: i64,
) -> Result<Result<Profile, Fault>, ServiceFailure> {
    let error_code = || {
        serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
            .unwrap_or_default()
    };
    match status {
        // Only the token service's own refusals are faults: a 404 or 409
        // without its error code (a wrong attributes_path, a server without
        // this endpoint) is a service failure.
        Some(s @ (404 | 409)) => match (s, Fault::from_name(&error_code())) {
            (404, Some(Fault::InvalidAccessToken)) => Ok(Err(Fault::InvalidAccessToken)),
            (409, Some(f @ (Fault::InvalidAccessToken | Fault::AccessTokenExpired))) => Ok(Err(f)),
            _ => Err(ServiceFailure(format!(
                "token service refused the attribute update (HTTP {s}, error {:?})",
                error_code()
            ))),
        },
        Some(s @ (400 | 402..=403 | 405..=408 | 410..=499)) => Err(ServiceFailure(format!(
            "token service refused the attribute update (HTTP {s}, error {:?})",
            error_code()
        ))),
        // 200, or a status parse_introspection reports as a failure.
        _ => match parse_introspection(status, body, TokenKind::AccessToken, token, now_ms)? {
            Lookup::Known(profile) if !profile.plain => Ok(Ok(profile)),
            _ => Err(ServiceFailure(
                "token service answered an attribute update without a profile".to_string(),
            )),
        },
    }
}

/// One variable a profile yields: the suffix after `prefix.Policy.`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileVar {
    /// Standard suffixes are static; custom attributes' are built.
    pub suffix: Cow<'static, str>,
    pub value: String,
    pub secret: bool,
}

/// Whole seconds left until `expires_at_ms` ("-1" never expires); `None`
/// when the field is absent, "" when it is empty.
fn remaining(expires_at_ms: Option<&str>, now_ms: i64) -> Option<String> {
    let raw = expires_at_ms?;
    Some(match raw.trim().parse::<i64>() {
        Ok(-1) => "-1".to_string(),
        Ok(at) if at <= now_ms => "0".to_string(),
        Ok(at) => ((at - now_ms) / 1000).to_string(),
        Err(_) => String::new(),
    })
}

fn is_past(expires_at_ms: Option<&str>, now_ms: i64) -> bool {
    matches!(expires_at_ms.map(|s| s.trim().parse::<i64>()), Some(Ok(at)) if at != -1 && at <= now_ms)
}

/// The status a variable shows: the stored one, or "expired" for an
/// approved token past its expiry (docs/variables.md).
fn shown_status(stored: Option<&str>, expired: bool) -> Option<String> {
    let stored = stored?;
    Some(if expired && stored.eq_ignore_ascii_case("approved") {
        "expired".to_string()
    } else {
        stored.to_string()
    })
}

fn is_approved(status: Option<&str>) -> bool {
    status.is_some_and(|s| s.eq_ignore_ascii_case("approved"))
}

/// Applies GetOAuthV2Info's status rules (SPEC 3.3) and maps the profile to
/// variables (suffixes after `prefix.Policy.`).
pub fn evaluate_get(
    kind: TokenKind,
    ignore_access_token_status: bool,
    token: &str,
    lookup: &Lookup,
    now_ms: i64,
) -> Result<Vec<ProfileVar>, Fault> {
    let profile = match (lookup, kind) {
        (Lookup::Known(p), _) => p,
        (Lookup::Unknown, TokenKind::AccessToken) => return Err(Fault::InvalidAccessToken),
        (Lookup::Unknown, TokenKind::RefreshToken) => return Err(Fault::InvalidRefreshToken),
        (Lookup::Unknown, TokenKind::AuthorizationCode) => {
            return Err(Fault::InvalidAuthorizationCode)
        }
        (Lookup::Unknown, TokenKind::ClientId) => return Err(Fault::InvalidClientId),
    };
    let past = |field| is_past(profile.field(field), now_ms);
    match kind {
        TokenKind::AccessToken if !ignore_access_token_status => {
            if !is_approved(profile.field("status")) {
                return Err(Fault::InvalidAccessToken);
            }
            if past("expires_at") {
                return Err(Fault::AccessTokenExpired);
            }
        }
        TokenKind::AccessToken => {}
        TokenKind::RefreshToken if past("refresh_token_expires_at") => {
            return Err(Fault::RefreshTokenExpired)
        }
        TokenKind::RefreshToken => {}
        TokenKind::AuthorizationCode if past("expires_at") => {
            return Err(Fault::AuthorizationCodeExpired)
        }
        TokenKind::AuthorizationCode => {}
        TokenKind::ClientId if !profile.active => return Err(Fault::InvalidClientId),
        TokenKind::ClientId => {}
    }
    let (suffixes, attribute_prefix) = kind_suffixes(kind);
    Ok(profile_vars(
        profile,
        kind,
        token,
        now_ms,
        suffixes,
        attribute_prefix,
    ))
}

/// The variables SetOAuthV2Info sets from the updated profile (SPEC 3.4).
pub fn set_vars(profile: &Profile, token: &str, now_ms: i64) -> Vec<ProfileVar> {
    profile_vars(
        profile,
        TokenKind::AccessToken,
        token,
        now_ms,
        SET_SUFFIXES,
        "",
    )
}

/// Maps a profile to the standard variables `suffixes` lists (absent
/// fields set nothing), then one per custom attribute.
fn profile_vars(
    profile: &Profile,
    kind: TokenKind,
    token: &str,
    now_ms: i64,
    suffixes: &'static [(&'static str, bool)],
    attribute_prefix: &str,
) -> Vec<ProfileVar> {
    let mut out = Vec::with_capacity(suffixes.len() + profile.attribute_count());
    for (suffix, secret) in suffixes {
        if let Some(value) = standard_value(profile, kind, token, suffix, now_ms) {
            out.push(ProfileVar {
                suffix: Cow::Borrowed(suffix),
                value,
                secret: *secret,
            });
        }
    }
    push_attributes(&mut out, profile, attribute_prefix);
    out
}

/// One standard variable: the profile field of that name, except the ones
/// computed at evaluation time (remaining lifetimes, status of an expired
/// token), and the looked-up token itself when the profile omits it.
fn standard_value(
    profile: &Profile,
    kind: TokenKind,
    token: &str,
    suffix: &str,
    now_ms: i64,
) -> Option<String> {
    let field = |name| profile.field(name);
    match suffix {
        "status" => shown_status(field("status"), is_past(field("expires_at"), now_ms)),
        "expires_in" => remaining(field("expires_at"), now_ms),
        "refresh_token_status" => shown_status(
            field("refresh_token_status"),
            is_past(field("refresh_token_expires_at"), now_ms),
        ),
        "refresh_token_expires_in" => remaining(field("refresh_token_expires_at"), now_ms),
        _ => field(suffix)
            .map(String::from)
            .or_else(|| (suffix == own_field(kind)).then(|| token.to_string())),
    }
}

/// The profile field holding the looked-up value itself.
fn own_field(kind: TokenKind) -> &'static str {
    match kind {
        TokenKind::AccessToken => "access_token",
        TokenKind::RefreshToken => "refresh_token",
        TokenKind::AuthorizationCode => "code",
        TokenKind::ClientId => "client_id",
    }
}

/// Adds `{prefix}{name}` for each custom attribute; one whose name collides
/// with a standard variable already set is skipped (the standard one wins).
fn push_attributes(out: &mut Vec<ProfileVar>, profile: &Profile, prefix: &str) {
    for (name, value) in profile.attributes() {
        let mut suffix = String::with_capacity(prefix.len() + name.len());
        suffix.push_str(prefix);
        suffix.push_str(name);
        if out.iter().any(|v| v.suffix == suffix) {
            continue;
        }
        out.push(ProfileVar {
            suffix: Cow::Owned(suffix),
            value: value.to_string(),
            secret: false,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_700_000_000_000;

    fn vars(v: &[ProfileVar]) -> Vec<(&str, &str)> {
        v.iter()
            .map(|p| (p.suffix.as_ref(), p.value.as_str()))
            .collect()
    }

    fn get<'a>(v: &'a [ProfileVar], suffix: &str) -> Option<&'a str> {
        v.iter()
            .find(|p| p.suffix == suffix)
            .map(|p| p.value.as_str())
    }

    fn access_answer(status: &str, expires_at: i64) -> serde_json::Value {
        json!({
            "active": status == "approved" && (expires_at == -1 || expires_at > NOW),
            "token_type": "Bearer", "scope": "READ", "client_id": "app-1",
            "profile": {
                "access_token": "tok-123", "client_id": "app-1", "scope": "READ WRITE",
                "status": status, "token_type": "BearerToken",
                "issued_at": (NOW - 600_000).to_string(), "expires_in": "999",
                "expires_at": expires_at.to_string(), "organization_name": "org",
                "api_product_list": "[FreeProduct, Premium]",
                "developer.id": "dev-1", "developer.email": "joe@example.com",
                "developer.app.name": "weather", "developer.app.id": "app-uuid",
                "refresh_token": "ref-456", "refresh_token_status": "approved",
                "refresh_token_issued_at": (NOW - 600_000).to_string(),
                "refresh_token_expires_in": "1", "refresh_token_expires_at": (NOW + 86_400_000).to_string(),
                "refresh_count": "2",
                "attributes": {"department.id": "42", "n": 7}
            }
        })
    }

    fn lookup(v: serde_json::Value, kind: TokenKind, token: &str) -> Lookup {
        parse_introspection(Some(200), v.to_string().as_bytes(), kind, token, NOW).unwrap()
    }

    #[test]
    fn access_token_maps_every_variable_with_remaining_expiry() {
        let l = lookup(
            access_answer("approved", NOW + 3_599_500),
            TokenKind::AccessToken,
            "tok-123",
        );
        let v = evaluate_get(TokenKind::AccessToken, false, "tok-123", &l, NOW).unwrap();
        assert_eq!(
            vars(&v),
            vec![
                ("access_token", "tok-123"),
                ("client_id", "app-1"),
                ("scope", "READ WRITE"),
                ("status", "approved"),
                ("expires_in", "3599"),
                ("issued_at", "1699999400000"),
                ("token_type", "BearerToken"),
                ("organization_name", "org"),
                ("api_product_list", "[FreeProduct, Premium]"),
                ("developer.id", "dev-1"),
                ("developer.email", "joe@example.com"),
                ("developer.app.name", "weather"),
                ("developer.app.id", "app-uuid"),
                ("refresh_token", "ref-456"),
                ("refresh_token_status", "approved"),
                ("refresh_token_expires_in", "86400"),
                ("refresh_token_issued_at", "1699999400000"),
                ("refresh_count", "2"),
                ("accesstoken.department.id", "42"),
                ("accesstoken.n", "7"),
            ]
        );
        let secrets: Vec<&str> = v
            .iter()
            .filter(|p| p.secret)
            .map(|p| p.suffix.as_ref())
            .collect();
        assert_eq!(secrets, ["access_token", "refresh_token"]);
        // The same cached profile, evaluated later, counts down.
        let later = evaluate_get(
            TokenKind::AccessToken,
            false,
            "tok-123",
            &l,
            NOW + 1_000_000,
        )
        .unwrap();
        assert_eq!(get(&later, "expires_in"), Some("2599"));
    }

    #[test]
    fn access_token_status_rules() {
        let unknown = lookup(json!({"active": false}), TokenKind::AccessToken, "x");
        assert_eq!(unknown, Lookup::Unknown);
        assert_eq!(
            evaluate_get(TokenKind::AccessToken, false, "x", &unknown, NOW),
            Err(Fault::InvalidAccessToken)
        );
        assert_eq!(
            evaluate_get(TokenKind::AccessToken, true, "x", &unknown, NOW),
            Err(Fault::InvalidAccessToken)
        );

        let revoked = lookup(
            access_answer("revoked", NOW + 1000),
            TokenKind::AccessToken,
            "x",
        );
        assert_eq!(
            evaluate_get(TokenKind::AccessToken, false, "x", &revoked, NOW),
            Err(Fault::InvalidAccessToken)
        );
        let v = evaluate_get(TokenKind::AccessToken, true, "x", &revoked, NOW).unwrap();
        assert_eq!(get(&v, "status"), Some("revoked"));

        let expired = lookup(
            access_answer("approved", NOW - 1),
            TokenKind::AccessToken,
            "x",
        );
        assert_eq!(
            evaluate_get(TokenKind::AccessToken, false, "x", &expired, NOW),
            Err(Fault::AccessTokenExpired)
        );
        let v = evaluate_get(TokenKind::AccessToken, true, "x", &expired, NOW).unwrap();
        assert_eq!(get(&v, "status"), Some("expired"));
        assert_eq!(get(&v, "expires_in"), Some("0"));

        // Exactly at the expiry instant the token is expired.
        let edge = lookup(access_answer("approved", NOW), TokenKind::AccessToken, "x");
        assert_eq!(
            evaluate_get(TokenKind::AccessToken, false, "x", &edge, NOW),
            Err(Fault::AccessTokenExpired)
        );

        // Revoked and expired: invalid (status is checked first).
        let both = lookup(
            access_answer("revoked", NOW - 1),
            TokenKind::AccessToken,
            "x",
        );
        assert_eq!(
            evaluate_get(TokenKind::AccessToken, false, "x", &both, NOW),
            Err(Fault::InvalidAccessToken)
        );

        let never = lookup(access_answer("approved", -1), TokenKind::AccessToken, "x");
        let v = evaluate_get(
            TokenKind::AccessToken,
            false,
            "x",
            &never,
            NOW + 10i64.pow(12),
        )
        .unwrap();
        assert_eq!(get(&v, "expires_in"), Some("-1"));
    }

    #[test]
    fn refresh_token_kind() {
        let mut answer = access_answer("revoked", NOW - 5);
        let l = lookup(answer.clone(), TokenKind::RefreshToken, "ref-456");
        // The access token being revoked or expired does not matter.
        let v = evaluate_get(TokenKind::RefreshToken, false, "ref-456", &l, NOW).unwrap();
        assert_eq!(get(&v, "refresh_token"), Some("ref-456"));
        assert_eq!(get(&v, "refresh_token_expires_in"), Some("86400"));
        assert_eq!(get(&v, "accesstoken.department.id"), Some("42"));

        answer["profile"]["refresh_token_status"] = json!("revoked");
        let l = lookup(answer.clone(), TokenKind::RefreshToken, "ref-456");
        let v = evaluate_get(TokenKind::RefreshToken, false, "ref-456", &l, NOW).unwrap();
        assert_eq!(get(&v, "refresh_token_status"), Some("revoked"));

        answer["profile"]["refresh_token_expires_at"] = json!((NOW - 1).to_string());
        let l = lookup(answer, TokenKind::RefreshToken, "ref-456");
        assert_eq!(
            evaluate_get(TokenKind::RefreshToken, false, "r", &l, NOW),
            Err(Fault::RefreshTokenExpired)
        );
        assert_eq!(
            evaluate_get(TokenKind::RefreshToken, false, "r", &Lookup::Unknown, NOW),
            Err(Fault::InvalidRefreshToken)
        );
    }

    #[test]
    fn authorization_code_kind() {
        let answer = |status: &str, expires_at: i64| {
            json!({"active": true, "client_id": "app-1", "profile": {
                "code": "code-1", "client_id": "app-1", "scope": "READ", "redirect_uri": "https://cb",
                "status": status, "issued_at": NOW.to_string(), "expires_in": "60",
                "expires_at": expires_at.to_string(), "developer.email": "joe@example.com",
                "attributes": {"state": "s1", "code": "ignored-collision"}}})
        };
        let l = lookup(
            answer("approved", NOW + 60_000),
            TokenKind::AuthorizationCode,
            "code-1",
        );
        let v = evaluate_get(TokenKind::AuthorizationCode, false, "code-1", &l, NOW).unwrap();
        assert_eq!(
            vars(&v),
            vec![
                ("code", "code-1"),
                ("client_id", "app-1"),
                ("scope", "READ"),
                ("redirect_uri", "https://cb"),
                ("status", "approved"),
                ("issued_at", "1700000000000"),
                ("expires_in", "60"),
                ("state", "s1"),
            ]
        );
        assert!(v[0].secret);
        let l = lookup(
            answer("revoked", NOW + 60_000),
            TokenKind::AuthorizationCode,
            "code-1",
        );
        let v = evaluate_get(TokenKind::AuthorizationCode, false, "code-1", &l, NOW).unwrap();
        assert_eq!(get(&v, "status"), Some("revoked"));
        let l = lookup(
            answer("approved", NOW - 60_000),
            TokenKind::AuthorizationCode,
            "code-1",
        );
        assert_eq!(
            evaluate_get(TokenKind::AuthorizationCode, false, "c", &l, NOW),
            Err(Fault::AuthorizationCodeExpired)
        );
        assert_eq!(
            evaluate_get(
                TokenKind::AuthorizationCode,
                false,
                "c",
                &Lookup::Unknown,
                NOW
            ),
            Err(Fault::InvalidAuthorizationCode)
        );
    }

    #[test]
    fn client_id_kind() {
        let l = lookup(
            json!({"active": true, "client_id": "app-1", "profile": {
                "client_id": "app-1", "client_secret": "s3cret", "redirection_uris": "https://a,https://b",
                "developer.email": "joe@example.com", "developer.id": "dev-1", "developer.app.name": "weather",
                "developer.app.id": "uuid", "api_product_list": "[P]", "status": "approved",
                "attributes": {"tier": "gold"}}}),
            TokenKind::ClientId,
            "app-1",
        );
        let v = evaluate_get(TokenKind::ClientId, false, "app-1", &l, NOW).unwrap();
        assert_eq!(
            vars(&v),
            vec![
                ("client_id", "app-1"),
                ("client_secret", "s3cret"),
                ("redirection_uris", "https://a,https://b"),
                ("developer.email", "joe@example.com"),
                ("developer.id", "dev-1"),
                ("developer.app.name", "weather"),
                ("tier", "gold"),
            ]
        );
        assert!(v[1].secret && !v[0].secret);
        assert_eq!(
            evaluate_get(TokenKind::ClientId, false, "x", &Lookup::Unknown, NOW),
            Err(Fault::InvalidClientId)
        );
    }

    #[test]
    fn plain_rfc7662_server() {
        let l = lookup(
            json!({"active": true, "client_id": "c", "scope": "a b", "token_type": "Bearer", "exp": NOW / 1000 + 100, "iat": NOW / 1000 - 5, "username": "u"}),
            TokenKind::AccessToken,
            "tok",
        );
        let Lookup::Known(p) = &l else {
            panic!("unknown")
        };
        assert!(p.plain);
        let v = evaluate_get(TokenKind::AccessToken, false, "tok", &l, NOW).unwrap();
        assert_eq!(
            vars(&v),
            vec![
                ("access_token", "tok"),
                ("client_id", "c"),
                ("scope", "a b"),
                ("status", "approved"),
                ("expires_in", "100"),
                ("issued_at", "1699999995000"),
                ("token_type", "Bearer"),
            ]
        );
        // Inactive with a past exp: expired; without: invalid.
        let expired = lookup(
            json!({"active": false, "exp": NOW / 1000 - 1}),
            TokenKind::AccessToken,
            "tok",
        );
        assert_eq!(
            evaluate_get(TokenKind::AccessToken, false, "tok", &expired, NOW),
            Err(Fault::AccessTokenExpired)
        );
        let inactive = lookup(
            json!({"active": false, "exp": NOW / 1000 + 100}),
            TokenKind::AccessToken,
            "tok",
        );
        assert_eq!(inactive, Lookup::Unknown);
        // A plain server that introspects a refresh token.
        let r = lookup(
            json!({"active": true, "exp": NOW / 1000 + 10}),
            TokenKind::RefreshToken,
            "r",
        );
        let v = evaluate_get(TokenKind::RefreshToken, false, "r", &r, NOW).unwrap();
        assert_eq!(get(&v, "refresh_token"), Some("r"));
        assert_eq!(get(&v, "refresh_token_expires_in"), Some("10"));
        assert_eq!(get(&v, "access_token"), None);
    }

    #[test]
    fn malformed_answers_are_service_failures() {
        let bad: &[(Option<u16>, &[u8])] = &[
            (None, b""),
            (Some(503), b"{\"active\":true}"),
            (Some(500), b""),
            (Some(401), b"{\"error\":\"unauthorized\"}"),
            (Some(404), b""),
            (Some(200), b""),
            (Some(200), b"{\"active\":tr"),
            (Some(200), b"[]"),
            (Some(200), b"{\"active\":\"yes\"}"),
            (Some(200), b"{}"),
            (Some(200), b"{\"active\":true,\"profile\":[]}"),
            (
                Some(200),
                b"{\"active\":true,\"profile\":{\"attributes\":[]}}",
            ),
            (Some(200), b"\xff\xfe"),
        ];
        for (status, body) in bad {
            assert!(
                parse_introspection(*status, body, TokenKind::AccessToken, "t", NOW).is_err(),
                "{status:?} {:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn set_response_mapping() {
        let body = access_answer("approved", NOW + 10_000).to_string();
        let profile = parse_set_response(Some(200), body.as_bytes(), "tok-123", NOW)
            .unwrap()
            .unwrap();
        let v = set_vars(&profile, "tok-123", NOW);
        assert_eq!(
            vars(&v),
            vec![
                ("access_token", "tok-123"),
                ("client_id", "app-1"),
                ("refresh_count", "2"),
                ("organization_name", "org"),
                ("expires_in", "10"),
                ("refresh_token_expires_in", "86400"),
                ("issued_at", "1699999400000"),
                ("status", "approved"),
                ("api_product_list", "[FreeProduct, Premium]"),
                ("token_type", "BearerToken"),
                ("department.id", "42"),
                ("n", "7"),
            ]
        );
        assert_eq!(
            parse_set_response(Some(404), b"{\"error\":\"invalid_access_token\"}", "t", NOW),
            Ok(Err(Fault::InvalidAccessToken))
        );
        assert_eq!(
            parse_set_response(Some(409), b"{\"error\":\"access_token_expired\"}", "t", NOW),
            Ok(Err(Fault::AccessTokenExpired))
        );
        assert_eq!(
            parse_set_response(Some(409), b"{\"error\":\"invalid_access_token\"}", "t", NOW),
            Ok(Err(Fault::InvalidAccessToken))
        );
        assert!(parse_set_response(Some(409), b"{\"error\":\"other\"}", "t", NOW).is_err());
        assert!(parse_set_response(Some(404), b"<html>not found</html>", "t", NOW).is_err());
        assert!(
            parse_set_response(Some(404), b"{\"error\":\"access_token_expired\"}", "t", NOW)
                .is_err()
        );
        assert!(parse_set_response(
            Some(400),
            b"{\"error\":\"protected_attribute\",\"attribute\":\"scope\"}",
            "t",
            NOW
        )
        .is_err());
        assert!(parse_set_response(Some(401), b"", "t", NOW).is_err());
        assert!(parse_set_response(Some(500), b"", "t", NOW).is_err());
        assert!(parse_set_response(None, b"", "t", NOW).is_err());
        assert!(parse_set_response(Some(200), b"{\"active\":true}", "t", NOW).is_err());
        assert!(parse_set_response(Some(200), b"{\"active\":tr", "t", NOW).is_err());
    }

    #[test]
    fn protected_names() {
        for n in [
            "scope",
            "SCOPE",
            "developer.email",
            "refresh_token_expires_in",
            "refresh_token_anything",
            "grant_type",
        ] {
            assert!(is_protected_attribute(n), "{n}");
        }
        for n in ["department.id", "scopes", "refresh_tokens", "foo"] {
            assert!(!is_protected_attribute(n), "{n}");
        }
    }
}
