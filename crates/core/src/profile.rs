//! Token profiles: what the token service (or a plain RFC 7662 server) said
//! of a token, in the binary form the cache stores and a cache hit reads
//! without copying; the status rules of GetOAuthV2Info; and the value of
//! each standard variable (docs/variables.md).
//!
//! A profile is one byte buffer: a flag byte, the expiry instants already
//! parsed, a fixed table with one span per standard [`Field`] (so a
//! variable's value is found by index, not by name), the custom attributes'
//! spans, then the bytes themselves. Times are kept absolute (epoch ms), so
//! a cached profile yields the right remaining `expires_in` whenever it is
//! read.

use oauthv2info_names::variables::{Field, Source};
use oauthv2info_names::{Fault, TokenKind};

const FIELDS: usize = Field::ALL.len();
const ABSENT: u32 = u32::MAX;
const ACTIVE: u8 = 1;
const PLAIN: u8 = 2;
/// The fields that hold instants the clock is compared with on every
/// request: kept parsed, so that a hit parses no number.
const TIMED: [Field; 2] = [Field::ExpiresAt, Field::RefreshTokenExpiresAt];
const TIMES_AT: usize = 1;
const TABLE_AT: usize = TIMES_AT + TIMED.len() * 9;
const COUNT_AT: usize = TABLE_AT + FIELDS * 8;
const ATTRS_AT: usize = COUNT_AT + 4;

/// An owned profile (see the module docs for its layout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile(Vec<u8>);

impl Profile {
    /// The encoded bytes (what a cache entry carries).
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn view(&self) -> ProfileRef<'_> {
        // Built by ProfileBuilder: always well-formed.
        ProfileRef::parse(&self.0).unwrap_or(ProfileRef::EMPTY)
    }
}

/// Builds a [`Profile`].
#[derive(Debug, Default)]
pub struct ProfileBuilder {
    flags: u8,
    fields: [Option<(u32, u32)>; FIELDS],
    attributes: Vec<[u32; 4]>,
    data: Vec<u8>,
}

fn offset(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(ABSENT - 1)
}

impl ProfileBuilder {
    pub fn new(active: bool, plain: bool) -> Self {
        ProfileBuilder {
            flags: if active { ACTIVE } else { 0 } | if plain { PLAIN } else { 0 },
            ..ProfileBuilder::default()
        }
    }

    /// Marks the profile active (the answer's `active` came after it).
    pub(crate) fn mark_active(&mut self) {
        self.flags |= ACTIVE;
    }

    fn store(&mut self, bytes: &[u8]) -> (u32, u32) {
        let start = offset(self.data.len());
        self.data.extend_from_slice(bytes);
        (start, offset(bytes.len()))
    }

    /// Sets a standard field (a later value replaces an earlier one).
    pub fn field(&mut self, field: Field, value: &str) {
        let span = self.store(value.as_bytes());
        self.fields[field.index()] = Some(span);
    }

    /// Sets the field named `name`, when it is a standard field; other
    /// members of a profile are not kept.
    pub(crate) fn named_field(&mut self, name: &str, value: &str) {
        if let Some(field) = Field::from_name(name) {
            self.field(field, value);
        }
    }

    /// Adds a custom attribute (a later value of the same name replaces an
    /// earlier one).
    pub fn attribute(&mut self, name: &str, value: &str) {
        let (vs, vl) = self.store(value.as_bytes());
        let data = &self.data;
        let same =
            |a: &[u32; 4]| data.get(a[0] as usize..(a[0] + a[1]) as usize) == Some(name.as_bytes());
        if let Some(a) = self.attributes.iter_mut().find(|a| same(a)) {
            a[2] = vs;
            a[3] = vl;
            return;
        }
        let (ks, kl) = self.store(name.as_bytes());
        self.attributes.push([ks, kl, vs, vl]);
    }

    /// Drops the custom attributes added so far.
    pub(crate) fn clear_attributes(&mut self) {
        self.attributes.clear();
    }

    /// The binary profile; custom attributes in name order.
    pub fn finish(mut self) -> Profile {
        let data = &self.data;
        let name = |a: &[u32; 4]| {
            data.get(a[0] as usize..(a[0] + a[1]) as usize)
                .unwrap_or_default()
        };
        // Names are unique (`attribute` replaces a repeated one): an
        // unstable sort gives the one order, in less code than a stable one.
        self.attributes
            .sort_unstable_by(|a, b| name(a).cmp(name(b)));
        let mut out = Vec::with_capacity(ATTRS_AT + self.attributes.len() * 16 + self.data.len());
        out.push(self.flags);
        for field in TIMED {
            let raw = self.fields[field.index()]
                .and_then(|(start, len)| self.data.get(start as usize..(start + len) as usize));
            let (tag, at) = match raw.map(parse_i64) {
                None => (0u8, 0i64),
                Some(None) => (1, 0),
                Some(Some(at)) => (2, at),
            };
            out.push(tag);
            out.extend_from_slice(&at.to_le_bytes());
        }
        for field in &self.fields {
            let (start, len) = field.unwrap_or((ABSENT, 0));
            out.extend_from_slice(&start.to_le_bytes());
            out.extend_from_slice(&len.to_le_bytes());
        }
        out.extend_from_slice(&offset(self.attributes.len()).to_le_bytes());
        for span in &self.attributes {
            for n in span {
                out.extend_from_slice(&n.to_le_bytes());
            }
        }
        out.extend_from_slice(&self.data);
        Profile(out)
    }
}

/// A profile read in place (from a cache entry or a [`Profile`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProfileRef<'a> {
    bytes: &'a [u8],
    attribute_count: usize,
    data_at: usize,
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

impl<'a> ProfileRef<'a> {
    const EMPTY: ProfileRef<'static> = ProfileRef {
        bytes: &[],
        attribute_count: 0,
        data_at: 0,
    };

    /// Reads a profile's layout; `None` for bytes too short to be one. The
    /// spans are not checked one by one here: every read is bounds-checked
    /// ([`ProfileRef::validate`] checks them all, for tests).
    pub fn parse(bytes: &'a [u8]) -> Option<ProfileRef<'a>> {
        let count = u32_at(bytes, COUNT_AT)? as usize;
        let data_at = ATTRS_AT.checked_add(count.checked_mul(16)?)?;
        (data_at <= bytes.len()).then_some(ProfileRef {
            bytes,
            attribute_count: count,
            data_at,
        })
    }

    /// True when every span lies inside the data.
    pub fn validate(&self) -> bool {
        let data_len = self.bytes.len() - self.data_at;
        let fits = |start: Option<u32>, len: Option<u32>| match (start, len) {
            (Some(ABSENT), Some(_)) => true,
            (Some(start), Some(len)) => (start as usize)
                .checked_add(len as usize)
                .is_some_and(|end| end <= data_len),
            _ => false,
        };
        let field = |i: usize| {
            fits(
                u32_at(self.bytes, TABLE_AT + i * 8),
                u32_at(self.bytes, TABLE_AT + i * 8 + 4),
            )
        };
        let attribute = |i: usize| {
            let n = |k: usize| u32_at(self.bytes, ATTRS_AT + i * 16 + k * 4);
            n(0) != Some(ABSENT) && n(2) != Some(ABSENT) && fits(n(0), n(1)) && fits(n(2), n(3))
        };
        (0..FIELDS).all(field) && (0..self.attribute_count).all(attribute)
    }

    /// The instant (epoch ms) a field holds: parsed when the profile was
    /// built for the expiry fields, else now.
    #[inline]
    fn instant(&self, field: Field) -> Instant {
        if let Some(i) = TIMED.iter().position(|f| *f == field) {
            let at = TIMES_AT + i * 9;
            return match self.bytes.get(at) {
                Some(2) => self
                    .bytes
                    .get(at + 1..at + 9)
                    .and_then(|b| b.try_into().ok())
                    .map_or(Instant::Unparsable, |b| Instant::At(i64::from_le_bytes(b))),
                Some(1) => Instant::Unparsable,
                _ => Instant::Absent,
            };
        }
        match self.field(field).map(parse_i64) {
            None => Instant::Absent,
            Some(None) => Instant::Unparsable,
            Some(Some(at)) => Instant::At(at),
        }
    }

    /// Where the profile's parts lie, to rebuild this view later over the
    /// same bytes without checking them again ([`ProfileRef::rebuild`]).
    pub(crate) fn layout(&self) -> Layout {
        Layout {
            attribute_count: self.attribute_count,
            data_at: self.data_at,
        }
    }

    /// A view over bytes that [`ProfileRef::parse`] accepted with this
    /// layout. (Every read stays bounds-checked: wrong bytes give wrong
    /// values, never a panic.)
    pub(crate) fn rebuild(bytes: &'a [u8], layout: Layout) -> ProfileRef<'a> {
        ProfileRef {
            bytes,
            attribute_count: layout.attribute_count,
            data_at: layout.data_at,
        }
    }

    #[inline]
    fn span(&self, start: u32, len: u32) -> &'a [u8] {
        // u32 + u32 + a buffer's length fit in u64 (usize may be 32 bits).
        let from = self.data_at as u64 + u64::from(start);
        let to = from + u64::from(len);
        match (usize::try_from(from), usize::try_from(to)) {
            (Ok(from), Ok(to)) => self.bytes.get(from..to).unwrap_or_default(),
            _ => &[],
        }
    }

    pub fn active(&self) -> bool {
        self.bytes.first().is_some_and(|f| f & ACTIVE != 0)
    }

    /// True when the server sent no `profile` member: only the RFC 7662
    /// members are known (docs/variables.md).
    pub fn plain(&self) -> bool {
        self.bytes.first().is_some_and(|f| f & PLAIN != 0)
    }

    #[inline]
    pub fn field(&self, field: Field) -> Option<&'a [u8]> {
        let at = TABLE_AT + field.index() * 8;
        let entry: &[u8; 8] = self.bytes.get(at..at + 8)?.try_into().ok()?;
        let start = u32::from_le_bytes([entry[0], entry[1], entry[2], entry[3]]);
        if start == ABSENT {
            return None;
        }
        let len = u32::from_le_bytes([entry[4], entry[5], entry[6], entry[7]]);
        Some(self.span(start, len))
    }

    /// The custom attributes, names and values, in name order.
    pub fn attributes(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        let this = *self;
        (0..self.attribute_count).map(move |i| {
            let at = ATTRS_AT + i * 16;
            let n = |k: usize| u32_at(this.bytes, at + k * 4).unwrap_or(0);
            (this.span(n(0), n(1)), this.span(n(2), n(3)))
        })
    }

    pub fn attribute(&self, name: &[u8]) -> Option<&'a [u8]> {
        self.attributes().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    pub fn attribute_count(&self) -> usize {
        self.attribute_count
    }

    /// True when the field holds an instant (epoch ms) at or before `now`
    /// (`-1` never expires).
    #[inline]
    pub fn is_past(&self, field: Field, now_ms: i64) -> bool {
        matches!(self.instant(field), Instant::At(at) if at != -1 && at <= now_ms)
    }

    /// The value of a standard variable. `own` is the kind's own field and
    /// the looked-up value, shown when the profile omits the field.
    #[inline]
    pub(crate) fn value(
        &self,
        source: Source,
        own: (Field, &'a [u8]),
        now_ms: i64,
    ) -> Option<Value<'a>> {
        match source {
            Source::Field(field) => match self.field(field) {
                Some(v) => Some(Value::Bytes(v)),
                None if field == own.0 => Some(Value::Bytes(own.1)),
                None => None,
            },
            Source::Remaining(field) => Some(match self.instant(field) {
                Instant::Absent => return None,
                Instant::At(-1) => Value::Number(-1),
                Instant::At(at) if at <= now_ms => Value::Number(0),
                Instant::At(at) => Value::Number((at - now_ms) / 1000),
                Instant::Unparsable => Value::Bytes(b""),
            }),
            Source::Status(status, expiry) => {
                let stored = self.field(status)?;
                Some(
                    if stored.eq_ignore_ascii_case(b"approved") && self.is_past(expiry, now_ms) {
                        Value::Bytes(b"expired")
                    } else {
                        Value::Bytes(stored)
                    },
                )
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Instant {
    Absent,
    Unparsable,
    At(i64),
}

/// See [`ProfileRef::layout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    attribute_count: usize,
    data_at: usize,
}

/// A variable's value: bytes of the profile (or a constant), or a number
/// computed from the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Value<'a> {
    Bytes(&'a [u8]),
    Number(i64),
}

impl<'a> Value<'a> {
    /// The value as bytes; numbers are written into `buf`.
    #[inline]
    pub(crate) fn bytes<'b>(&self, buf: &'b mut NumberBuf) -> &'b [u8]
    where
        'a: 'b,
    {
        match *self {
            Value::Bytes(b) => b,
            Value::Number(n) => buf.format(n),
        }
    }
}

pub(crate) use crate::number::NumberBuf;

/// A decimal integer (ASCII white space around it allowed), as
/// `str::parse` reads it, without going through a `str`.
pub(crate) fn parse_i64(raw: &[u8]) -> Option<i64> {
    let start = raw.iter().position(|b| !b.is_ascii_whitespace())?;
    let end = raw.iter().rposition(|b| !b.is_ascii_whitespace())? + 1;
    let (negative, digits) = match &raw[start..end] {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        all => (false, all),
    };
    if digits.is_empty() {
        return None;
    }
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let d = i64::from(d - b'0');
        n = n.checked_mul(10)?;
        n = if negative {
            n.checked_sub(d)?
        } else {
            n.checked_add(d)?
        };
    }
    Some(n)
}

/// The answer to one lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// The server does not know the value (`{"active": false}`).
    Unknown,
    Known(ProfileRef<'a>),
}

/// Applies GetOAuthV2Info's status rules (docs/variables.md#access-token-accesstoken):
/// the profile to map, or the fault to raise.
pub(crate) fn check_get<'a>(
    kind: TokenKind,
    ignore_access_token_status: bool,
    lookup: Lookup<'a>,
    now_ms: i64,
) -> Result<ProfileRef<'a>, Fault> {
    let Lookup::Known(profile) = lookup else {
        return Err(kind.invalid_fault());
    };
    match kind {
        TokenKind::AccessToken if !ignore_access_token_status => {
            if !profile
                .field(Field::Status)
                .is_some_and(|s| s.eq_ignore_ascii_case(b"approved"))
            {
                return Err(Fault::InvalidAccessToken);
            }
            if profile.is_past(Field::ExpiresAt, now_ms) {
                return Err(Fault::AccessTokenExpired);
            }
        }
        TokenKind::AccessToken => {}
        TokenKind::RefreshToken | TokenKind::AuthorizationCode => {
            if let (Some(field), Some(fault)) = (kind.expiry_field(), kind.expired_fault()) {
                if profile.is_past(field, now_ms) {
                    return Err(fault);
                }
            }
        }
        TokenKind::ClientId if !profile.active() => return Err(Fault::InvalidClientId),
        TokenKind::ClientId => {}
    }
    Ok(profile)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{parse_introspection, parse_set_response, Answer};
    use oauthv2info_names::variables::{Suffix, SET};
    use serde_json::json;

    const NOW: i64 = 1_700_000_000_000;

    /// (suffix, value) of every standard variable a kind's list yields,
    /// then the custom attributes with `attribute_prefix`.
    fn vars(
        kind: TokenKind,
        list: &[Suffix],
        prefix: &str,
        p: ProfileRef<'_>,
        token: &str,
        now: i64,
    ) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut buf = NumberBuf::default();
        for s in list {
            if let Some(v) = p.value(s.source, (kind.own_field(), token.as_bytes()), now) {
                out.push((
                    s.name.to_string(),
                    String::from_utf8_lossy(v.bytes(&mut buf)).into_owned(),
                ));
            }
        }
        for (k, v) in p.attributes() {
            out.push((
                format!("{prefix}{}", String::from_utf8_lossy(k)),
                String::from_utf8_lossy(v).into_owned(),
            ));
        }
        out
    }

    fn get_vars(
        kind: TokenKind,
        ignore: bool,
        answer: &Answer,
        token: &str,
        now: i64,
    ) -> Result<Vec<(String, String)>, Fault> {
        let p = check_get(kind, ignore, answer.lookup(), now)?;
        Ok(vars(
            kind,
            kind.suffixes(),
            kind.attribute_prefix(),
            p,
            token,
            now,
        ))
    }

    fn get<'a>(v: &'a [(String, String)], suffix: &str) -> Option<&'a str> {
        v.iter().find(|(k, _)| k == suffix).map(|(_, v)| v.as_str())
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

    fn answer(v: serde_json::Value, kind: TokenKind, token: &str) -> Answer {
        parse_introspection(Some(200), v.to_string().as_bytes(), kind, token, NOW).unwrap()
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn builder_and_view_agree() {
        let mut b = ProfileBuilder::new(true, false);
        b.field(Field::Scope, "READ é");
        b.field(Field::Scope, "WRITE");
        b.attribute("dept", "");
        b.attribute("x.y", "1");
        b.named_field("not-a-field", "dropped");
        let p = b.finish();
        let v = p.view();
        assert!(v.active() && !v.plain());
        assert_eq!(v.field(Field::Scope), Some(&b"WRITE"[..]));
        assert_eq!(v.field(Field::Code), None);
        assert_eq!(v.attribute(b"dept"), Some(&b""[..]));
        assert_eq!(v.attribute(b"x.y"), Some(&b"1"[..]));
        assert_eq!(v.attribute_count(), 2);
        assert!(v.validate());
        // Every cut of the bytes is refused, or fails validation, and reads
        // stay in bounds.
        for cut in 0..p.as_bytes().len() {
            if let Some(r) = ProfileRef::parse(&p.as_bytes()[..cut]) {
                assert!(!r.validate(), "cut at {cut}");
                let _ = (
                    r.attributes().count(),
                    r.field(Field::Scope),
                    r.is_past(Field::ExpiresAt, 0),
                );
            }
        }
    }

    #[test]
    fn numbers_parse_like_str_parse() {
        for text in [
            "0",
            "-1",
            "+7",
            " 42 ",
            "1795442766330",
            "-9223372036854775808",
            "9223372036854775807",
        ] {
            assert_eq!(
                parse_i64(text.as_bytes()),
                text.trim().parse().ok(),
                "{text:?}"
            );
        }
        for text in [
            "",
            " ",
            "-",
            "1.5",
            "12a",
            "9223372036854775808",
            "--1",
            "1 2",
        ] {
            assert_eq!(parse_i64(text.as_bytes()), None, "{text:?}");
        }
    }

    #[test]
    fn numbers_format() {
        let mut b = NumberBuf::default();
        for n in [0i64, 7, -1, 3599, i64::MAX, i64::MIN] {
            assert_eq!(b.format(n), n.to_string().as_bytes());
        }
    }

    #[test]
    fn access_token_maps_every_variable_with_remaining_expiry() {
        let a = answer(
            access_answer("approved", NOW + 3_599_500),
            TokenKind::AccessToken,
            "tok-123",
        );
        let v = get_vars(TokenKind::AccessToken, false, &a, "tok-123", NOW).unwrap();
        assert_eq!(
            v,
            pairs(&[
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
            ])
        );
        // The same cached profile, evaluated later, counts down.
        let later = get_vars(
            TokenKind::AccessToken,
            false,
            &a,
            "tok-123",
            NOW + 1_000_000,
        )
        .unwrap();
        assert_eq!(get(&later, "expires_in"), Some("2599"));
    }

    #[test]
    fn access_token_status_rules() {
        let unknown = answer(json!({"active": false}), TokenKind::AccessToken, "x");
        assert_eq!(unknown, Answer::Unknown);
        for ignore in [false, true] {
            assert_eq!(
                get_vars(TokenKind::AccessToken, ignore, &unknown, "x", NOW),
                Err(Fault::InvalidAccessToken)
            );
        }
        let revoked = answer(
            access_answer("revoked", NOW + 1000),
            TokenKind::AccessToken,
            "x",
        );
        assert_eq!(
            get_vars(TokenKind::AccessToken, false, &revoked, "x", NOW),
            Err(Fault::InvalidAccessToken)
        );
        let v = get_vars(TokenKind::AccessToken, true, &revoked, "x", NOW).unwrap();
        assert_eq!(get(&v, "status"), Some("revoked"));

        let expired = answer(
            access_answer("approved", NOW - 1),
            TokenKind::AccessToken,
            "x",
        );
        assert_eq!(
            get_vars(TokenKind::AccessToken, false, &expired, "x", NOW),
            Err(Fault::AccessTokenExpired)
        );
        let v = get_vars(TokenKind::AccessToken, true, &expired, "x", NOW).unwrap();
        assert_eq!(get(&v, "status"), Some("expired"));
        assert_eq!(get(&v, "expires_in"), Some("0"));

        // Exactly at the expiry instant the token is expired.
        let edge = answer(access_answer("approved", NOW), TokenKind::AccessToken, "x");
        assert_eq!(
            get_vars(TokenKind::AccessToken, false, &edge, "x", NOW),
            Err(Fault::AccessTokenExpired)
        );
        // Revoked and expired: invalid (status is checked first).
        let both = answer(
            access_answer("revoked", NOW - 1),
            TokenKind::AccessToken,
            "x",
        );
        assert_eq!(
            get_vars(TokenKind::AccessToken, false, &both, "x", NOW),
            Err(Fault::InvalidAccessToken)
        );
        let never = answer(access_answer("approved", -1), TokenKind::AccessToken, "x");
        let v = get_vars(
            TokenKind::AccessToken,
            false,
            &never,
            "x",
            NOW + 10i64.pow(12),
        )
        .unwrap();
        assert_eq!(get(&v, "expires_in"), Some("-1"));
    }

    #[test]
    fn refresh_token_kind() {
        let mut a = access_answer("revoked", NOW - 5);
        let l = answer(a.clone(), TokenKind::RefreshToken, "ref-456");
        // The access token being revoked or expired does not matter.
        let v = get_vars(TokenKind::RefreshToken, false, &l, "ref-456", NOW).unwrap();
        assert_eq!(get(&v, "refresh_token"), Some("ref-456"));
        assert_eq!(get(&v, "refresh_token_expires_in"), Some("86400"));
        assert_eq!(get(&v, "accesstoken.department.id"), Some("42"));

        a["profile"]["refresh_token_status"] = json!("revoked");
        let l = answer(a.clone(), TokenKind::RefreshToken, "ref-456");
        let v = get_vars(TokenKind::RefreshToken, false, &l, "ref-456", NOW).unwrap();
        assert_eq!(get(&v, "refresh_token_status"), Some("revoked"));

        a["profile"]["refresh_token_expires_at"] = json!((NOW - 1).to_string());
        let l = answer(a, TokenKind::RefreshToken, "ref-456");
        assert_eq!(
            get_vars(TokenKind::RefreshToken, false, &l, "r", NOW),
            Err(Fault::RefreshTokenExpired)
        );
        assert_eq!(
            get_vars(TokenKind::RefreshToken, false, &Answer::Unknown, "r", NOW),
            Err(Fault::InvalidRefreshToken)
        );
    }

    #[test]
    fn authorization_code_kind() {
        let code = |status: &str, expires_at: i64| {
            json!({"active": true, "client_id": "app-1", "profile": {
                "code": "code-1", "client_id": "app-1", "scope": "READ", "redirect_uri": "https://cb",
                "status": status, "issued_at": NOW.to_string(), "expires_in": "60",
                "expires_at": expires_at.to_string(), "developer.email": "joe@example.com",
                "attributes": {"state": "s1"}}})
        };
        let l = answer(
            code("approved", NOW + 60_000),
            TokenKind::AuthorizationCode,
            "code-1",
        );
        let v = get_vars(TokenKind::AuthorizationCode, false, &l, "code-1", NOW).unwrap();
        assert_eq!(
            v,
            pairs(&[
                ("code", "code-1"),
                ("client_id", "app-1"),
                ("scope", "READ"),
                ("redirect_uri", "https://cb"),
                ("status", "approved"),
                ("issued_at", "1700000000000"),
                ("expires_in", "60"),
                ("state", "s1"),
            ])
        );
        let l = answer(
            code("revoked", NOW + 60_000),
            TokenKind::AuthorizationCode,
            "code-1",
        );
        let v = get_vars(TokenKind::AuthorizationCode, false, &l, "code-1", NOW).unwrap();
        assert_eq!(get(&v, "status"), Some("revoked"));
        let l = answer(
            code("approved", NOW - 60_000),
            TokenKind::AuthorizationCode,
            "code-1",
        );
        assert_eq!(
            get_vars(TokenKind::AuthorizationCode, false, &l, "c", NOW),
            Err(Fault::AuthorizationCodeExpired)
        );
        assert_eq!(
            get_vars(
                TokenKind::AuthorizationCode,
                false,
                &Answer::Unknown,
                "c",
                NOW
            ),
            Err(Fault::InvalidAuthorizationCode)
        );
    }

    #[test]
    fn client_id_kind() {
        let l = answer(
            json!({"active": true, "client_id": "app-1", "profile": {
                "client_id": "app-1", "client_secret": "s3cret", "redirection_uris": "https://a,https://b",
                "developer.email": "joe@example.com", "developer.id": "dev-1", "developer.app.name": "weather",
                "developer.app.id": "uuid", "api_product_list": "[P]", "status": "approved",
                "attributes": {"tier": "gold"}}}),
            TokenKind::ClientId,
            "app-1",
        );
        let v = get_vars(TokenKind::ClientId, false, &l, "app-1", NOW).unwrap();
        assert_eq!(
            v,
            pairs(&[
                ("client_id", "app-1"),
                ("client_secret", "s3cret"),
                ("redirection_uris", "https://a,https://b"),
                ("developer.email", "joe@example.com"),
                ("developer.id", "dev-1"),
                ("developer.app.name", "weather"),
                ("tier", "gold"),
            ])
        );
        let inactive = answer(
            json!({"active": false, "profile": {"client_id": "app-1"}}),
            TokenKind::ClientId,
            "app-1",
        );
        assert_eq!(
            get_vars(TokenKind::ClientId, false, &inactive, "x", NOW),
            Err(Fault::InvalidClientId)
        );
        assert_eq!(
            get_vars(TokenKind::ClientId, false, &Answer::Unknown, "x", NOW),
            Err(Fault::InvalidClientId)
        );
    }

    #[test]
    fn plain_rfc7662_server() {
        let l = answer(
            json!({"active": true, "client_id": "c", "scope": "a b", "token_type": "Bearer", "exp": NOW / 1000 + 100, "iat": NOW / 1000 - 5, "username": "u"}),
            TokenKind::AccessToken,
            "tok",
        );
        assert!(matches!(&l, Answer::Known(p) if p.view().plain()));
        let v = get_vars(TokenKind::AccessToken, false, &l, "tok", NOW).unwrap();
        assert_eq!(
            v,
            pairs(&[
                ("access_token", "tok"),
                ("client_id", "c"),
                ("scope", "a b"),
                ("status", "approved"),
                ("expires_in", "100"),
                ("issued_at", "1699999995000"),
                ("token_type", "Bearer"),
            ])
        );
        // Inactive with a past exp: expired; without: invalid.
        let expired = answer(
            json!({"active": false, "exp": NOW / 1000 - 1}),
            TokenKind::AccessToken,
            "tok",
        );
        assert_eq!(
            get_vars(TokenKind::AccessToken, false, &expired, "tok", NOW),
            Err(Fault::AccessTokenExpired)
        );
        let inactive = answer(
            json!({"active": false, "exp": NOW / 1000 + 100}),
            TokenKind::AccessToken,
            "tok",
        );
        assert_eq!(inactive, Answer::Unknown);
        // A plain server that introspects a refresh token.
        let r = answer(
            json!({"active": true, "exp": NOW / 1000 + 10}),
            TokenKind::RefreshToken,
            "r",
        );
        let v = get_vars(TokenKind::RefreshToken, false, &r, "r", NOW).unwrap();
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

    /// The answer is read in one pass, as a JSON object map would read it:
    /// the last of a repeated member wins, members come in any order,
    /// escapes are decoded, numbers and booleans become their JSON text,
    /// arrays, objects and nulls are ignored; custom attributes are kept in
    /// name order.
    #[test]
    fn answers_read_in_one_pass_mean_what_the_json_says() {
        let body = br#"{"profile":{"client_id":"first","client_id":"c\u00e9\n","scope":"READ",
            "refresh_count":3,"expires_in":1.5,"token_type":true,"status":null,
            "developer.email":["x"],"organization_name":{"a":1},
            "attributes":{"zeta":"z","alpha":"a","zeta":"z2","n":-7,"nested":{"x":1},"list":[1]}},
            "ignored":[{"deep":[1,2,{"x":null}]}],"active":true}"#;
        let Answer::Known(p) =
            parse_introspection(Some(200), body, TokenKind::AccessToken, "t", NOW).unwrap()
        else {
            panic!("a known token");
        };
        let p = p.view();
        assert!(p.active(), "active came after the profile");
        assert!(!p.plain());
        assert_eq!(p.field(Field::ClientId), Some("c\u{e9}\n".as_bytes()));
        assert_eq!(p.field(Field::Scope), Some(&b"READ"[..]));
        assert_eq!(p.field(Field::RefreshCount), Some(&b"3"[..]));
        assert_eq!(p.field(Field::TokenType), Some(&b"true"[..]));
        assert_eq!(p.field(Field::Status), None, "null is no value");
        assert_eq!(p.field(Field::DeveloperEmail), None);
        assert_eq!(p.field(Field::OrganizationName), None);
        let attributes: Vec<(&[u8], &[u8])> = p.attributes().collect();
        assert_eq!(
            attributes,
            [
                (&b"alpha"[..], &b"a"[..]),
                (&b"n"[..], &b"-7"[..]),
                (&b"zeta"[..], &b"z2"[..])
            ]
        );
        // The float as JSON writes it.
        let body = br#"{"active":true,"profile":{"issued_at":1.5}}"#;
        let Answer::Known(p) =
            parse_introspection(Some(200), body, TokenKind::AccessToken, "t", NOW).unwrap()
        else {
            panic!("a known token");
        };
        assert_eq!(p.view().field(Field::IssuedAt), Some(&b"1.5"[..]));
        // A repeated "attributes" member: the last one.
        let body = br#"{"active":true,"profile":{"attributes":{"a":"1"},"attributes":{"b":"2"}}}"#;
        let Answer::Known(p) =
            parse_introspection(Some(200), body, TokenKind::AccessToken, "t", NOW).unwrap()
        else {
            panic!("a known token");
        };
        assert_eq!(p.view().attributes().count(), 1);
        assert_eq!(p.view().attribute(b"b"), Some(&b"2"[..]));
        // Trailing bytes, and a profile that is null, are refused.
        for body in [
            &br#"{"active":true} x"#[..],
            br#"{"active":true,"profile":null}"#,
        ] {
            assert!(
                parse_introspection(Some(200), body, TokenKind::AccessToken, "t", NOW).is_err()
            );
        }
    }

    #[test]
    fn set_response_mapping() {
        let body = access_answer("approved", NOW + 10_000).to_string();
        let profile = parse_set_response(Some(200), body.as_bytes(), "tok-123", NOW)
            .unwrap()
            .unwrap();
        assert_eq!(
            vars(
                TokenKind::AccessToken,
                SET,
                "",
                profile.view(),
                "tok-123",
                NOW
            ),
            pairs(&[
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
            ])
        );
        let set = |status: u16, body: &[u8]| parse_set_response(Some(status), body, "t", NOW);
        assert_eq!(
            set(404, b"{\"error\":\"invalid_access_token\"}"),
            Ok(Err(Fault::InvalidAccessToken))
        );
        assert_eq!(
            set(409, b"{\"error\":\"access_token_expired\"}"),
            Ok(Err(Fault::AccessTokenExpired))
        );
        assert_eq!(
            set(409, b"{\"error\":\"invalid_access_token\"}"),
            Ok(Err(Fault::InvalidAccessToken))
        );
        assert!(set(409, b"{\"error\":\"other\"}").is_err());
        assert!(set(404, b"<html>not found</html>").is_err());
        assert!(set(404, b"{\"error\":\"access_token_expired\"}").is_err());
        assert!(set(
            400,
            b"{\"error\":\"protected_attribute\",\"attribute\":\"scope\"}"
        )
        .is_err());
        assert!(set(401, b"").is_err());
        assert!(set(500, b"").is_err());
        assert!(parse_set_response(None, b"", "t", NOW).is_err());
        assert!(set(200, b"{\"active\":true}").is_err());
        assert!(set(200, b"{\"active\":tr").is_err());
    }
}
