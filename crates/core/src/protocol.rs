//! The token-service protocol, as the filter speaks it
//! (docs/token-service.md): what is asked (an introspection, an attribute
//! update, a page of the change feed, each with the same headers) and what
//! the answers mean (an introspection or an update's answer read into a
//! [`Profile`] in one pass, or why it cannot be used; a failed call that
//! no token service answered). A page of the change feed is read by
//! [`crate::feed`].

use std::borrow::Cow;

use oauthv2info_names::variables::Field;
use oauthv2info_names::{Fault, TokenKind};
use serde::de::{
    Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
};

use crate::config::{FilterConfig, TokenService};
use crate::flow::{Flow, Pending};
use crate::profile::{Lookup, Profile, ProfileBuilder};
use crate::request::percent_encode_into;
use crate::template::escape_json;

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
            // serde_json's compact form, written with the fault bodies'
            // escaping: no JSON serializer in the `.wasm` for this one body
            // (docs/performance.md#module-size).
            let mut body = String::with_capacity(48 + token.len());
            body.push_str("{\"token\":\"");
            escape_json(flow.text(token), &mut body);
            body.push_str("\",\"attributes\":[");
            for (i, (name, value)) in attributes.iter().enumerate() {
                if i > 0 {
                    body.push(',');
                }
                body.push_str("{\"name\":\"");
                escape_json(name, &mut body);
                body.push_str("\",\"value\":\"");
                escape_json(value, &mut body);
                body.push_str("\"}");
            }
            body.push_str("]}");
            Some((
                config.token_service.attributes_path.as_str(),
                "application/json",
                body.into_bytes(),
            ))
        }
    }
}

/// The path of a change-feed poll: the changes after `cursor`, at most
/// `limit` of them.
pub(crate) fn feed_path(path: &str, cursor: i64, limit: u32) -> String {
    format!("{path}?after={cursor}&limit={limit}")
}

/// Why a token-service answer could not be used: always reported as
/// `token_service_unavailable`, with this text in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceFailure(pub String);

/// A parsed lookup answer, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Unknown,
    Known(Profile),
}

impl Answer {
    pub(crate) fn lookup(&self) -> Lookup<'_> {
        match self {
            Answer::Unknown => Lookup::Unknown,
            Answer::Known(p) => Lookup::Known(p.view()),
        }
    }
}

/// Parses an RFC 7662 introspection answer (docs/token-service.md).
/// `now_ms` only decides whether a plain server's inactive token with a
/// past `exp` is expired.
pub fn parse_introspection(
    status: Option<u16>,
    body: &[u8],
    kind: TokenKind,
    token: &str,
    now_ms: i64,
) -> Result<Answer, ServiceFailure> {
    match status {
        Some(200) => {}
        Some(s @ (401 | 403)) => {
            return Err(ServiceFailure(format!(
                "token service refused the filter's credentials (HTTP {})",
                u32::from(s)
            )))
        }
        // As u32: one integer formatter in the `.wasm` (docs/performance.md#module-size).
        Some(s) => {
            return Err(ServiceFailure(format!(
                "token service answered HTTP {}",
                u32::from(s)
            )))
        }
        None => {
            return Err(ServiceFailure(
                "token service call failed (no response status)".to_string(),
            ))
        }
    }
    let wire: Wire<'_> = serde_json::from_slice(body)
        .map_err(|e| ServiceFailure(format!("token service answered malformed JSON: {e}")))?;
    wire.answer(kind, token, now_ms)
}

/// A JSON member's value as a profile keeps it: a scalar (as text), or
/// something else (ignored).
enum Json<'a> {
    Str(Cow<'a, str>),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
    Other,
}

impl Json<'_> {
    /// A scalar as text: strings as they are, numbers and booleans as JSON
    /// writes them.
    fn text(&self) -> Option<Cow<'_, str>> {
        Some(match self {
            Json::Str(s) => Cow::Borrowed(s.as_ref()),
            Json::I64(n) => Cow::Owned(n.to_string()),
            Json::U64(n) => Cow::Owned(n.to_string()),
            Json::F64(f) => Cow::Owned(serde_json::Number::from_f64(*f)?.to_string()),
            Json::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
            Json::Other => return None,
        })
    }

    fn as_i64(&self) -> Option<i64> {
        match self {
            Json::I64(n) => Some(*n),
            Json::U64(n) => i64::try_from(*n).ok(),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Json<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Json<'de>, E> {
                Ok(Json::Str(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Json<'de>, E> {
                Ok(Json::Str(Cow::Owned(s.to_string())))
            }
            fn visit_string<E>(self, s: String) -> Result<Json<'de>, E> {
                Ok(Json::Str(Cow::Owned(s)))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Json<'de>, E> {
                Ok(Json::I64(n))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Json<'de>, E> {
                Ok(Json::U64(n))
            }
            fn visit_f64<E>(self, f: f64) -> Result<Json<'de>, E> {
                Ok(Json::F64(f))
            }
            fn visit_bool<E>(self, b: bool) -> Result<Json<'de>, E> {
                Ok(Json::Bool(b))
            }
            fn visit_unit<E>(self) -> Result<Json<'de>, E> {
                Ok(Json::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Json::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Json::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// A member name, borrowed from the body when it has no escapes (serde's
/// own `Cow<str>` always copies).
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_string())))
            }
            fn visit_string<E>(self, s: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

/// What an introspection answer's `profile` member was.
enum WireProfile {
    NotObject,
    AttributesNotObject,
    Object(Box<ProfileBuilder>),
}

/// An introspection answer read in one pass, without a JSON tree: the
/// profile goes straight into its binary form. A member given twice counts
/// once, its last value (as a JSON object map would keep it).
struct Wire<'a> {
    /// `None`: not a JSON object.
    object: Option<WireObject<'a>>,
}

#[derive(Default)]
struct WireObject<'a> {
    active: Option<Json<'a>>,
    profile: Option<WireProfile>,
    client_id: Option<Json<'a>>,
    scope: Option<Json<'a>>,
    token_type: Option<Json<'a>>,
    exp: Option<Json<'a>>,
    iat: Option<Json<'a>>,
    /// The app's API products (docs/token-service.md): a tree, read on a
    /// miss only.
    api_products: Option<serde_json::Value>,
}

impl<'de> Deserialize<'de> for Wire<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Wire<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Wire<'de>, A::Error> {
                let mut o = WireObject::default();
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    match key.0.as_ref() {
                        "active" => o.active = Some(map.next_value()?),
                        "profile" => o.profile = Some(map.next_value_seed(ProfileSeed)?),
                        "client_id" => o.client_id = Some(map.next_value()?),
                        "scope" => o.scope = Some(map.next_value()?),
                        "token_type" => o.token_type = Some(map.next_value()?),
                        "exp" => o.exp = Some(map.next_value()?),
                        "iat" => o.iat = Some(map.next_value()?),
                        "api_products" => o.api_products = Some(map.next_value()?),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(Wire { object: Some(o) })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Wire<'de>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Wire { object: None })
            }
            fn visit_str<E>(self, _: &str) -> Result<Wire<'de>, E> {
                Ok(Wire { object: None })
            }
            fn visit_i64<E>(self, _: i64) -> Result<Wire<'de>, E> {
                Ok(Wire { object: None })
            }
            fn visit_u64<E>(self, _: u64) -> Result<Wire<'de>, E> {
                Ok(Wire { object: None })
            }
            fn visit_f64<E>(self, _: f64) -> Result<Wire<'de>, E> {
                Ok(Wire { object: None })
            }
            fn visit_bool<E>(self, _: bool) -> Result<Wire<'de>, E> {
                Ok(Wire { object: None })
            }
            fn visit_unit<E>(self) -> Result<Wire<'de>, E> {
                Ok(Wire { object: None })
            }
        }
        d.deserialize_any(V)
    }
}

/// The `profile` member, straight into a [`ProfileBuilder`].
struct ProfileSeed;

impl<'de> DeserializeSeed<'de> for ProfileSeed {
    type Value = WireProfile;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<WireProfile, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = WireProfile;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<WireProfile, A::Error> {
                // `active` may come later: the flag is set in `answer`.
                let mut out = ProfileBuilder::new(false, false);
                let mut attributes_ok = true;
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    if key.0 == "attributes" {
                        out.clear_attributes();
                        attributes_ok = map.next_value_seed(AttributesSeed(&mut out))?;
                    } else if let Some(text) = map.next_value::<Json<'de>>()?.text() {
                        out.named_field(&key.0, &text);
                    }
                }
                Ok(if attributes_ok {
                    WireProfile::Object(Box::new(out))
                } else {
                    WireProfile::AttributesNotObject
                })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<WireProfile, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(WireProfile::NotObject)
            }
            fn visit_str<E>(self, _: &str) -> Result<WireProfile, E> {
                Ok(WireProfile::NotObject)
            }
            fn visit_i64<E>(self, _: i64) -> Result<WireProfile, E> {
                Ok(WireProfile::NotObject)
            }
            fn visit_u64<E>(self, _: u64) -> Result<WireProfile, E> {
                Ok(WireProfile::NotObject)
            }
            fn visit_f64<E>(self, _: f64) -> Result<WireProfile, E> {
                Ok(WireProfile::NotObject)
            }
            fn visit_bool<E>(self, _: bool) -> Result<WireProfile, E> {
                Ok(WireProfile::NotObject)
            }
            fn visit_unit<E>(self) -> Result<WireProfile, E> {
                Ok(WireProfile::NotObject)
            }
        }
        d.deserialize_any(V)
    }
}

/// `profile.attributes`: each scalar member a custom attribute; `false`
/// when it is not an object.
struct AttributesSeed<'b>(&'b mut ProfileBuilder);

impl<'de> DeserializeSeed<'de> for AttributesSeed<'_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        struct V<'b>(&'b mut ProfileBuilder);
        impl<'de> Visitor<'de> for V<'_> {
            type Value = bool;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
                while let Some(name) = map.next_key::<Key<'de>>()? {
                    if let Some(text) = map.next_value::<Json<'de>>()?.text() {
                        self.0.attribute(&name.0, &text);
                    }
                }
                Ok(true)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(false)
            }
            fn visit_str<E>(self, _: &str) -> Result<bool, E> {
                Ok(false)
            }
            fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
                Ok(false)
            }
            fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
                Ok(false)
            }
            fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
                Ok(false)
            }
            fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
                Ok(false)
            }
            fn visit_unit<E>(self) -> Result<bool, E> {
                Ok(false)
            }
        }
        d.deserialize_any(V(self.0))
    }
}

impl Wire<'_> {
    fn answer(self, kind: TokenKind, token: &str, now_ms: i64) -> Result<Answer, ServiceFailure> {
        let object = self.object.ok_or_else(|| {
            ServiceFailure("token service answer is not a JSON object".to_string())
        })?;
        let active = match object.active {
            Some(Json::Bool(b)) => b,
            _ => {
                return Err(ServiceFailure(
                    "token service answer has no boolean \"active\" member".to_string(),
                ))
            }
        };
        match object.profile {
            None => {}
            Some(WireProfile::NotObject) => {
                return Err(ServiceFailure(
                    "token service answer: \"profile\" is not an object".to_string(),
                ))
            }
            Some(WireProfile::AttributesNotObject) => {
                return Err(ServiceFailure(
                    "token service answer: \"profile.attributes\" is not an object".to_string(),
                ))
            }
            Some(WireProfile::Object(mut out)) => {
                if active {
                    out.mark_active();
                }
                if let Some(products) = object.api_products {
                    let encoded =
                        crate::profile::products::encode(products).map_err(|(member, not)| {
                            ServiceFailure(format!(
                                "token service answer: in \"api_products\", \"{member}\" is not {not}"
                            ))
                        })?;
                    out.products(&encoded);
                }
                return Ok(Answer::Known(out.finish()));
            }
        }

        // A plain RFC 7662 server: map the standard members.
        let exp_ms = object
            .exp
            .as_ref()
            .and_then(Json::as_i64)
            .map(|s| s.saturating_mul(1000));
        if !active && exp_ms.is_none_or(|e| e > now_ms) {
            return Ok(Answer::Unknown);
        }
        let mut out = ProfileBuilder::new(active, true);
        for (member, field) in [
            (&object.client_id, Field::ClientId),
            (&object.scope, Field::Scope),
            (&object.token_type, Field::TokenType),
        ] {
            if let Some(s) = member.as_ref().and_then(Json::text) {
                out.field(field, &s);
            }
        }
        let iat_ms = object
            .iat
            .as_ref()
            .and_then(Json::as_i64)
            .map(|s| s.saturating_mul(1000).to_string());
        let exp_ms = exp_ms.map_or_else(|| "-1".to_string(), |e| e.to_string());
        let (status, expires, issued) = match kind {
            TokenKind::RefreshToken => (
                Field::RefreshTokenStatus,
                Field::RefreshTokenExpiresAt,
                Field::RefreshTokenIssuedAt,
            ),
            _ => (Field::Status, Field::ExpiresAt, Field::IssuedAt),
        };
        out.field(kind.own_field(), token);
        out.field(status, "approved");
        out.field(expires, &exp_ms);
        if let Some(iat) = iat_ms {
            out.field(issued, &iat);
        }
        Ok(Answer::Known(out.finish()))
    }
}

/// Parses the answer to the attribute merge (docs/token-service.md): the
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
                "token service refused the attribute update (HTTP {}, error {:?})",
                u32::from(s),
                error_code()
            ))),
        },
        Some(s @ (400 | 402..=403 | 405..=408 | 410..=499)) => Err(ServiceFailure(format!(
            "token service refused the attribute update (HTTP {}, error {:?})",
            u32::from(s),
            error_code()
        ))),
        // 200, or a status parse_introspection reports as a failure.
        _ => match parse_introspection(status, body, TokenKind::AccessToken, token, now_ms)? {
            Answer::Known(profile) if !profile.view().plain() => Ok(Ok(profile)),
            _ => Err(ServiceFailure(
                "token service answered an attribute update without a profile".to_string(),
            )),
        },
    }
}
