//! The profile cache's pure part: which slot a token lives in, how long an
//! entry may live, and the entry's binary encoding. The adapter keeps the
//! entries in proxy-wasm shared data, so every worker of one Envoy shares
//! them.
//!
//! A token may live in one of two slots (two hashes of (cluster, kind,
//! token) modulo `max_entries`), so memory is bounded by `max_entries`
//! entries; a new entry evicts, if it must, the entry that expires first. An
//! entry carries the token itself, so a slot holding another token is a
//! miss, never a wrong answer.

use crate::config::CacheConfig;
use crate::policy::TokenKind;
use crate::profile::{Lookup, Profile};

const MAGIC: &[u8; 2] = b"C1";

/// The shared-data keys of the two slots (kind, token) may live in. `scope`
/// names the token service (its cluster): plugins that share a VM but call
/// different token services never share entries. Two choices instead of one
/// keep two live tokens that hash alike from evicting each other on every
/// request (with 1,000 tokens in 10,000 direct-mapped slots, about one token
/// in ten shares its slot).
pub fn slot_keys(scope: &str, kind: TokenKind, token: &str, max_entries: usize) -> [String; 2] {
    let slots = max_entries.max(1) as u64;
    let hash = |seed: u64| {
        let mut h: u64 = seed;
        let input = scope
            .bytes()
            .chain([0u8])
            .chain(kind.hint().bytes())
            .chain([0u8]);
        for b in input.chain(token.bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h % slots
    };
    [
        format!("oauthv2info.cache.{scope}.{}", hash(0xcbf2_9ce4_8422_2325)),
        format!("oauthv2info.cache.{scope}.{}", hash(0x8422_2325_cbf2_9ce4)),
    ]
}

/// Which of a token's two slots a new entry goes to: the one already
/// holding this token, else an empty or unreadable one, else one whose entry
/// has expired, else the one whose entry expires first. The flag says
/// whether a live entry of another token is evicted.
pub fn choose_slot(
    slots: [Option<&Entry>; 2],
    kind: TokenKind,
    token: &str,
    now_ms: i64,
) -> (usize, bool) {
    let holds = |i: usize| slots[i].is_some_and(|e| e.kind == kind && e.token == token);
    let free = |i: usize| slots[i].is_none_or(|e| e.deadline_ms <= now_ms);
    if let Some(i) = (0..2).find(|&i| holds(i)) {
        return (i, false);
    }
    if let Some(i) = (0..2).find(|&i| free(i)) {
        return (i, false);
    }
    let deadline = |i: usize| slots[i].map_or(i64::MIN, |e| e.deadline_ms);
    (if deadline(1) < deadline(0) { 1 } else { 0 }, true)
}

/// Until when (epoch ms) an answer may be served from the cache; `None`
/// when it must not be cached at all.
///
/// - unknown tokens: `negative_ttl_ms` (0 turns negative caching off);
/// - known tokens: `ttl_ms`, but never past the token's own expiry;
/// - tokens already past their expiry: `negative_ttl_ms`, like unknown
///   ones (an expiry does not move back).
pub fn deadline(
    config: &CacheConfig,
    kind: TokenKind,
    lookup: &Lookup,
    now_ms: i64,
) -> Option<i64> {
    let negative = (config.negative_ttl_ms > 0).then(|| now_ms + config.negative_ttl_ms);
    let profile = match lookup {
        Lookup::Unknown => return negative,
        Lookup::Known(p) => p,
    };
    let expiry_field = match kind {
        TokenKind::RefreshToken => Some("refresh_token_expires_at"),
        TokenKind::ClientId => None,
        _ => Some("expires_at"),
    };
    let expiry = expiry_field
        .and_then(|f| profile.field(f))
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|e| *e != -1);
    let ttl_end = now_ms + config.ttl_ms;
    match expiry {
        Some(e) if e <= now_ms => negative,
        Some(e) => Some(ttl_end.min(e)),
        None => Some(ttl_end),
    }
}

/// A decoded cache entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: TokenKind,
    pub token: String,
    /// Served until this instant (epoch ms).
    pub deadline_ms: i64,
    /// When it was written (epoch ms): an introspection answer is stored
    /// only over entries older than the moment its callout started, so a
    /// slow answer cannot overwrite a SetOAuthV2Info's newer profile.
    pub stored_ms: i64,
    pub lookup: Lookup,
}

impl Entry {
    /// The lookup, when this entry answers (kind, token) at `now_ms`.
    pub fn answer(&self, kind: TokenKind, token: &str, now_ms: i64) -> Option<&Lookup> {
        (self.kind == kind && self.token == token && now_ms < self.deadline_ms)
            .then_some(&self.lookup)
    }
}

pub fn encode(entry: &Entry) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(MAGIC);
    out.push(kind_byte(entry.kind));
    out.extend_from_slice(&entry.deadline_ms.to_le_bytes());
    out.extend_from_slice(&entry.stored_ms.to_le_bytes());
    put_str(&mut out, &entry.token);
    match &entry.lookup {
        Lookup::Unknown => out.push(0),
        Lookup::Known(p) => {
            out.push(1);
            out.push(u8::from(p.active));
            out.push(u8::from(p.plain));
            put_pairs(&mut out, p.fields());
            put_pairs(&mut out, p.attributes());
        }
    }
    out
}

pub fn decode(data: &[u8]) -> Option<Entry> {
    let mut r = Reader { data, pos: 0 };
    if r.take(2)? != MAGIC {
        return None;
    }
    let kind = kind_from_byte(r.byte()?)?;
    let deadline_ms = r.i64()?;
    let stored_ms = r.i64()?;
    let token = r.string()?;
    let lookup = match r.byte()? {
        0 => Lookup::Unknown,
        1 => {
            let active = r.byte()? != 0;
            let plain = r.byte()? != 0;
            let mut profile = Profile::new(active, plain);
            profile.reserve(data.len(), 24);
            r.pairs(|k, v| profile.push_field(k, v))?;
            r.pairs(|k, v| profile.push_attribute(k, v))?;
            Lookup::Known(profile)
        }
        _ => return None,
    };
    (r.pos == data.len()).then_some(Entry {
        kind,
        token,
        deadline_ms,
        stored_ms,
        lookup,
    })
}

fn kind_byte(kind: TokenKind) -> u8 {
    match kind {
        TokenKind::AccessToken => 1,
        TokenKind::RefreshToken => 2,
        TokenKind::AuthorizationCode => 3,
        TokenKind::ClientId => 4,
    }
}

fn kind_from_byte(b: u8) -> Option<TokenKind> {
    TokenKind::ALL.into_iter().find(|k| kind_byte(*k) == b)
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_pairs<'a>(out: &mut Vec<u8>, pairs: impl Iterator<Item = (&'a str, &'a str)>) {
    let count_at = out.len();
    out.extend_from_slice(&0u32.to_le_bytes());
    let mut count: u32 = 0;
    for (k, v) in pairs {
        put_str(out, k);
        put_str(out, v);
        count += 1;
    }
    out[count_at..count_at + 4].copy_from_slice(&count.to_le_bytes());
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let slice = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(slice)
    }

    fn byte(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)?.try_into().ok().map(u32::from_le_bytes)
    }

    fn i64(&mut self) -> Option<i64> {
        self.take(8)?.try_into().ok().map(i64::from_le_bytes)
    }

    fn str(&mut self) -> Option<&'a str> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?).ok()
    }

    fn string(&mut self) -> Option<String> {
        self.str().map(String::from)
    }

    /// Reads a counted list of pairs, handing each to `each`.
    fn pairs(&mut self, mut each: impl FnMut(&str, &str)) -> Option<()> {
        let n = self.u32()? as usize;
        // Each pair takes at least 8 bytes: refuse counts the data cannot hold.
        if n > self.data.len().saturating_sub(self.pos) / 8 {
            return None;
        }
        for _ in 0..n {
            let (k, v) = (self.str()?, self.str()?);
            each(k, v);
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn profile(expires_at: i64) -> Lookup {
        let mut p = Profile::new(true, false);
        p.push_field("expires_at", &expires_at.to_string());
        p.push_field("refresh_token_expires_at", &(NOW + 5_000).to_string());
        p.push_field("scope", "READ é");
        p.push_attribute("dept", "");
        Lookup::Known(p)
    }

    #[test]
    fn entries_round_trip() {
        for lookup in [Lookup::Unknown, profile(NOW + 1)] {
            let entry = Entry {
                kind: TokenKind::RefreshToken,
                token: "tok\u{0}en".into(),
                deadline_ms: NOW + 10,
                stored_ms: NOW,
                lookup,
            };
            assert_eq!(decode(&encode(&entry)), Some(entry));
        }
    }

    #[test]
    fn corrupt_entries_are_refused() {
        let entry = Entry {
            kind: TokenKind::AccessToken,
            token: "t".into(),
            deadline_ms: NOW,
            stored_ms: NOW,
            lookup: profile(NOW),
        };
        let bytes = encode(&entry);
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut]), None, "prefix of {cut} bytes");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert_eq!(decode(&extra), None);
        let mut huge = bytes[..2 + 1 + 16].to_vec();
        huge.extend_from_slice(&1u32.to_le_bytes());
        huge.push(b't');
        huge.push(1);
        huge.extend_from_slice(&[1, 0]);
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&huge), None);
        assert_eq!(decode(b"XX"), None);
    }

    #[test]
    fn answers_only_its_own_token_kind_and_time() {
        let entry = Entry {
            kind: TokenKind::AccessToken,
            token: "t".into(),
            deadline_ms: NOW + 100,
            stored_ms: NOW,
            lookup: Lookup::Unknown,
        };
        assert!(entry
            .answer(TokenKind::AccessToken, "t", NOW + 99)
            .is_some());
        assert!(entry
            .answer(TokenKind::AccessToken, "t", NOW + 100)
            .is_none());
        assert!(entry.answer(TokenKind::RefreshToken, "t", NOW).is_none());
        assert!(entry.answer(TokenKind::AccessToken, "u", NOW).is_none());
    }

    #[test]
    fn deadlines() {
        let c = CacheConfig {
            enabled: true,
            ttl_ms: 30_000,
            negative_ttl_ms: 2_000,
            max_entries: 10,
        };
        assert_eq!(
            deadline(&c, TokenKind::AccessToken, &Lookup::Unknown, NOW),
            Some(NOW + 2_000)
        );
        assert_eq!(
            deadline(&c, TokenKind::AccessToken, &profile(NOW + 60_000), NOW),
            Some(NOW + 30_000)
        );
        // Never past the token's own expiry.
        assert_eq!(
            deadline(&c, TokenKind::AccessToken, &profile(NOW + 1_000), NOW),
            Some(NOW + 1_000)
        );
        assert_eq!(
            deadline(&c, TokenKind::RefreshToken, &profile(NOW + 60_000), NOW),
            Some(NOW + 5_000)
        );
        assert_eq!(
            deadline(&c, TokenKind::AccessToken, &profile(-1), NOW),
            Some(NOW + 30_000)
        );
        assert_eq!(
            deadline(&c, TokenKind::ClientId, &profile(NOW - 1), NOW),
            Some(NOW + 30_000)
        );
        // Already expired: the short negative lifetime.
        assert_eq!(
            deadline(&c, TokenKind::AccessToken, &profile(NOW - 1), NOW),
            Some(NOW + 2_000)
        );
        let no_negative = CacheConfig {
            negative_ttl_ms: 0,
            ..c
        };
        assert_eq!(
            deadline(&no_negative, TokenKind::AccessToken, &Lookup::Unknown, NOW),
            None
        );
    }

    #[test]
    fn slots_are_bounded_and_spread() {
        let slot = |key: &str| key.rsplit('.').next().unwrap().parse::<usize>().unwrap();
        let mut seen = std::collections::HashSet::new();
        let mut same = 0;
        for i in 0..1000 {
            let [a, b] = slot_keys("ts", TokenKind::AccessToken, &format!("token-{i}"), 64);
            assert!(slot(&a) < 64 && slot(&b) < 64);
            seen.insert(slot(&a));
            same += usize::from(a == b);
        }
        assert!(
            seen.len() > 56,
            "1000 tokens should use most of 64 slots: {}",
            seen.len()
        );
        assert!(
            same < 40,
            "the two choices are independent: {same} of 1000 coincide"
        );
        assert_ne!(
            slot_keys("ts", TokenKind::AccessToken, "same", 1 << 20),
            slot_keys("ts", TokenKind::RefreshToken, "same", 1 << 20)
        );
        let [a, b] = slot_keys("other", TokenKind::AccessToken, "same", 1);
        assert_eq!(a, "oauthv2info.cache.other.0");
        assert_eq!(a, b);
    }

    #[test]
    fn choosing_a_slot() {
        let entry = |token: &str, deadline_ms: i64| Entry {
            kind: TokenKind::AccessToken,
            token: token.into(),
            deadline_ms,
            stored_ms: NOW,
            lookup: Lookup::Unknown,
        };
        let (mine, other, older, stale) = (
            entry("t", NOW + 5),
            entry("u", NOW + 9),
            entry("v", NOW + 3),
            entry("w", NOW),
        );
        let choose = |a: Option<&Entry>, b: Option<&Entry>| {
            choose_slot([a, b], TokenKind::AccessToken, "t", NOW)
        };
        assert_eq!(
            choose(Some(&other), Some(&mine)),
            (1, false),
            "the slot holding the token"
        );
        assert_eq!(choose(Some(&other), None), (1, false), "an empty slot");
        assert_eq!(
            choose(Some(&stale), Some(&other)),
            (0, false),
            "an expired entry"
        );
        assert_eq!(
            choose(Some(&other), Some(&older)),
            (1, true),
            "the entry expiring first is evicted"
        );
        assert_eq!(choose(Some(&older), Some(&other)), (0, true));
        let refresh = Entry {
            kind: TokenKind::RefreshToken,
            ..mine.clone()
        };
        assert_eq!(
            choose(Some(&refresh), Some(&other)),
            (0, true),
            "another kind is another token"
        );
    }
}
