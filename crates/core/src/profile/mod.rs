//! Token profiles: what the token service (or a plain RFC 7662 server) said
//! of a token, in the binary form the cache stores and a cache hit reads
//! without copying; the status rules of GetOAuthV2Info; and the value of
//! each standard variable (docs/variables.md).
//!
//! A profile is one byte buffer: a flag byte, the expiry instants already
//! parsed, a fixed table with one span per standard [`Field`] (so a
//! variable's value is found by index, not by name), the custom attributes'
//! spans, then the bytes themselves. One more span holds the app's API
//! products when the answer had them ([`products`]). Times are kept absolute (epoch ms), so
//! a cached profile yields the right remaining `expires_in` whenever it is
//! read.

use oauthv2info_names::variables::{Field, Source};
use oauthv2info_names::{Fault, TokenKind};

pub(crate) mod products;

const FIELDS: usize = Field::ALL.len();
const ABSENT: u32 = u32::MAX;
const ACTIVE: u8 = 1;
const PLAIN: u8 = 2;
/// No operation of the app's products lists verbs: the product check
/// does not compare the request's verb (absent from entries written
/// before it: the verb is read, as for products that list verbs).
const NO_VERBS: u8 = 4;
/// The fields that hold instants the clock is compared with on every
/// request: kept parsed, so that a hit parses no number.
const TIMED: [Field; 2] = [Field::ExpiresAt, Field::RefreshTokenExpiresAt];
const TIMES_AT: usize = 1;
/// The span of the app's API products (absent: the answer had none).
const PRODUCTS_AT: usize = TIMES_AT + TIMED.len() * 9;
const TABLE_AT: usize = PRODUCTS_AT + 8;
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
    products: Option<(u32, u32)>,
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
    /// earlier one). The attributes are kept in name order as they come: a
    /// binary search finds the name or its place, and no sort is linked
    /// (2.6 KB of `.wasm`, docs/performance.md#module-size).
    pub fn attribute(&mut self, name: &str, value: &str) {
        let (vs, vl) = self.store(value.as_bytes());
        let data = &self.data;
        let found = self.attributes.binary_search_by(|a| {
            data.get(a[0] as usize..(a[0] + a[1]) as usize)
                .unwrap_or_default()
                .cmp(name.as_bytes())
        });
        match found {
            Ok(i) => {
                if let Some(a) = self.attributes.get_mut(i) {
                    a[2] = vs;
                    a[3] = vl;
                }
            }
            Err(i) => {
                let (ks, kl) = self.store(name.as_bytes());
                self.attributes.insert(i, [ks, kl, vs, vl]);
            }
        }
    }

    /// Sets the app's API products, encoded ([`products`]).
    pub(crate) fn products(&mut self, encoded: &[u8]) {
        if !products::lists_verbs(encoded) {
            self.flags |= NO_VERBS;
        }
        self.products = Some(self.store(encoded));
    }

    /// Drops the custom attributes added so far.
    pub(crate) fn clear_attributes(&mut self) {
        self.attributes.clear();
    }

    /// The binary profile; custom attributes in name order.
    pub fn finish(self) -> Profile {
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
        let (start, len) = self.products.unwrap_or((ABSENT, 0));
        out.extend_from_slice(&start.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
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
        fits(
            u32_at(self.bytes, PRODUCTS_AT),
            u32_at(self.bytes, PRODUCTS_AT + 4),
        ) && (0..FIELDS).all(field)
            && (0..self.attribute_count).all(attribute)
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

    /// False when the profile's products are known to list no verbs
    /// (no operation with methods): their check does not need the
    /// request's verb.
    #[inline]
    pub(crate) fn checks_verbs(&self) -> bool {
        self.bytes.first().is_none_or(|f| f & NO_VERBS == 0)
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

    /// True when the answer carried the app's API products
    /// (`api_products`, possibly empty); false for a plain RFC 7662 server
    /// or a token service without products.
    pub fn has_products(&self) -> bool {
        u32_at(self.bytes, PRODUCTS_AT).is_some_and(|start| start != ABSENT)
    }

    /// The app's API products, in the answer's order (none when
    /// [`ProfileRef::has_products`] is false).
    #[inline]
    pub fn products(&self) -> products::Products<'a> {
        products::read(self.products_span())
    }

    /// The app's API products as encoded ([`products`]; empty when
    /// [`ProfileRef::has_products`] is false).
    #[inline]
    pub(crate) fn products_span(&self) -> &'a [u8] {
        let entry = (
            u32_at(self.bytes, PRODUCTS_AT),
            u32_at(self.bytes, PRODUCTS_AT + 4),
        );
        match entry {
            (Some(start), Some(len)) if start != ABSENT => self.span(start, len),
            _ => &[],
        }
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
    /// the looked-up value, shown when the profile omits the field. A
    /// field's value (most variables) is read where this is called; the
    /// computed ones out of line.
    #[inline(always)]
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
            _ => self.computed_value(source, now_ms),
        }
    }

    /// The value of a variable computed from the clock or read through
    /// the status rule ([`ProfileRef::value`]).
    #[inline(never)]
    fn computed_value(&self, source: Source, now_ms: i64) -> Option<Value<'a>> {
        match source {
            Source::Remaining(field) => Some(match self.instant(field) {
                Instant::Absent => return None,
                Instant::At(-1) => Value::Number(-1),
                Instant::At(at) if at <= now_ms => Value::Number(0),
                Instant::At(at) => Value::Number((at - now_ms) / 1000),
                Instant::Unparsable => Value::Bytes(b""),
            }),
            Source::Status(status, expiry) => {
                let stored = self.field(status)?;
                Some(if is_approved(stored) && self.is_past(expiry, now_ms) {
                    Value::Bytes(b"expired")
                } else {
                    Value::Bytes(stored)
                })
            }
            // Read by `value`; the flow answers the product variables from
            // the product check's match.
            Source::Field(_) | Source::Product(_) => None,
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

/// A status of `approved`, in any case (`eq_ignore_ascii_case`), as one
/// word: every byte of `approved` is a letter, and a byte with bit 0x20
/// set is a lower-case letter only when it was that letter in either case.
#[inline]
fn is_approved(status: &[u8]) -> bool {
    <[u8; 8]>::try_from(status).is_ok_and(|b| {
        u64::from_le_bytes(b) | u64::from_le_bytes([0x20; 8]) == u64::from_le_bytes(*b"approved")
    })
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
            if !profile.field(Field::Status).is_some_and(is_approved) {
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
mod tests;

#[cfg(test)]
mod products_tests;
