//! The profile cache's pure part (docs/configuration.md#the-profile-cache):
//! which slots a token may live in, how long an entry may live, which slot
//! a new entry takes and whether it may overwrite what is there, and the
//! entry's binary form. The host keeps entries in proxy-wasm shared data,
//! so every worker of one Envoy shares them.
//!
//! A token may live in one of two slots (two hashes of its fingerprint,
//! modulo `max_entries`), so memory is bounded by `max_entries` entries; a
//! new entry evicts, if it must, the entry that expires first. An entry
//! carries the token itself, so a slot holding another token is a miss,
//! never a wrong answer. A hit reads the entry where it lies: the token,
//! the deadline and the profile are views into the bytes the host gave.

use oauthv2info_names::{token_hash, TokenKind};

use crate::profile::{Lookup, Profile, ProfileRef};

/// The profile cache (docs/configuration.md#the-profile-cache).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    pub enabled: bool,
    pub ttl_ms: i64,
    pub negative_ttl_ms: i64,
    pub max_entries: usize,
    /// Invalidation through the token service's change feed
    /// (docs/configuration.md#cache-invalidation); off by default.
    pub(crate) invalidation: Option<Invalidation>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            enabled: true,
            ttl_ms: 30_000,
            negative_ttl_ms: 2_000,
            max_entries: 10_000,
            invalidation: None,
        }
    }
}

/// `cache.invalidation`: where the change feed is and how often to read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalidation {
    /// The feed's path on the token service (`/v1/changes`).
    pub(crate) path: String,
    /// How often the Envoy's one poller asks for changes.
    pub(crate) poll_ms: u32,
    /// No hit is served when the feed has not been read up to date for
    /// this long.
    pub(crate) max_stale_ms: i64,
    /// Changes per answer.
    pub(crate) limit: u32,
}

impl Invalidation {
    pub(crate) const DEFAULT_PATH: &'static str = "/v1/changes";
    pub(crate) const DEFAULT_POLL_MS: u32 = 1_000;
    pub(crate) const DEFAULT_MAX_STALE_MS: i64 = 5_000;
    pub(crate) const DEFAULT_LIMIT: u32 = 500;
}

/// The format's version: "C5" since products carry their quotas, "C4"
/// since profiles carry the key's and developer's statuses (VerifyAPIKey),
/// "C3" the app's API products.
const MAGIC: &[u8; 2] = b"C5";
const HEAD: usize = 2 + 1 + 8 + 8 + 4;

/// Mixes a 64-bit value (the finalizer of MurmurHash3).
fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The seed that keeps two token services' entries apart (their clusters).
pub(crate) fn scope_seed(cluster: &str) -> u64 {
    token_hash(TokenKind::ClientId, cluster.as_bytes())
}

/// The two slots (numbers below `max_entries`) of a token, from its
/// fingerprint ([`token_hash`]): the change feed names tokens by
/// fingerprint only, and the same slots are found from it. Two choices
/// instead of one keep two live tokens that hash alike from evicting each
/// other on every request.
pub(crate) fn slots(seed: u64, fingerprint: u64, max_entries: usize) -> [u64; 2] {
    let n = max_entries.max(1) as u64;
    let h = fingerprint ^ seed;
    [
        mix(h ^ 0x9e37_79b9_7f4a_7c15) % n,
        mix(h ^ 0x5851_f42d_4c95_7f2d) % n,
    ]
}

/// Writes a slot's shared-data key (`prefix` is
/// the configuration's `cache_prefix`) into `out`.
pub(crate) fn slot_key(out: &mut String, prefix: &str, slot: u64) {
    out.clear();
    out.push_str(prefix);
    for &d in crate::number::NumberBuf::default().format_unsigned(slot) {
        // A digit: ASCII, so one byte each (the mask says so to the
        // compiler).
        out.push(char::from(d & 0x7f));
    }
}

/// Which of a token's two slots a new entry goes to: the one already
/// holding this token, else an empty or unreadable one, else one whose
/// entry has expired, else the one whose entry expires first. The flag says
/// whether a live entry of another token is evicted.
pub(crate) fn choose_slot(
    slots: [Option<&EntryHead<'_>>; 2],
    kind: TokenKind,
    token: &[u8],
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
    (usize::from(deadline(1) < deadline(0)), true)
}

/// Where and whether to store a new entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StorePlan {
    /// 0 or 1: which of the token's slots.
    pub(crate) slot: usize,
    /// The CAS of what the slot held when it was read: a writer that came
    /// in between wins (its answer is as fresh).
    pub(crate) cas: Option<u32>,
    /// A live entry of another token is evicted.
    pub(crate) evicts: bool,
}

/// What a slot held when it was read.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SlotRead<'a> {
    pub(crate) head: Option<EntryHead<'a>>,
    pub(crate) cas: Option<u32>,
}

/// Plans storing what the token service said of (kind, token). An
/// introspection answer does not overwrite an entry of the same token dated
/// as late as its callout or later (a SetOAuthV2Info's newer profile, a
/// change-feed tombstone); an attribute update always does. `None`: leave
/// the cache as it is.
pub(crate) fn plan_store(
    read: [SlotRead<'_>; 2],
    kind: TokenKind,
    token: &[u8],
    now_ms: i64,
    callout_started_ms: i64,
    from_update: bool,
) -> Option<StorePlan> {
    let (slot, evicts) = choose_slot(
        [read[0].head.as_ref(), read[1].head.as_ref()],
        kind,
        token,
        now_ms,
    );
    if let Some(old) = &read[slot].head {
        let same = old.kind == kind && old.token == token;
        if same && !from_update && old.stored_ms >= callout_started_ms {
            return None;
        }
    }
    Some(StorePlan {
        slot,
        cas: read[slot].cas,
        evicts,
    })
}

/// Until when (epoch ms) an answer may be served from the cache; `None`
/// when it must not be cached at all.
///
/// - unknown tokens: `negative_ttl_ms` (0 turns negative caching off);
/// - known tokens: `ttl_ms`, but never past the token's own expiry;
/// - tokens already past their expiry: `negative_ttl_ms`, like unknown
///   ones (an expiry does not move back).
pub(crate) fn deadline(
    config: &CacheConfig,
    kind: TokenKind,
    lookup: Lookup<'_>,
    now_ms: i64,
) -> Option<i64> {
    let negative = (config.negative_ttl_ms > 0).then(|| now_ms + config.negative_ttl_ms);
    let profile = match lookup {
        Lookup::Unknown => return negative,
        Lookup::Known(p) => p,
    };
    let expiry = kind
        .expiry_field()
        .and_then(|f| profile.field(f))
        .and_then(crate::profile::parse_i64)
        .filter(|e| *e != -1);
    let ttl_end = now_ms + config.ttl_ms;
    match expiry {
        Some(e) if e <= now_ms => negative,
        Some(e) => Some(ttl_end.min(e)),
        None => Some(ttl_end),
    }
}

/// An entry's header, read in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryHead<'a> {
    pub(crate) kind: TokenKind,
    pub(crate) token: &'a [u8],
    /// Served until this instant (epoch ms).
    pub(crate) deadline_ms: i64,
    /// The date of what it says (epoch ms): when the callout that fetched
    /// it started (a tombstone: when the change was applied); see
    /// [`plan_store`].
    pub(crate) stored_ms: i64,
    /// The rest: the lookup.
    body: &'a [u8],
    body_at: usize,
}

fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_le_bytes(a)
}

impl<'a> EntryHead<'a> {
    /// Reads an entry's header; `None` for bytes that are not an entry.
    pub fn parse(data: &'a [u8]) -> Option<EntryHead<'a>> {
        if data.len() < HEAD || &data[..2] != MAGIC {
            return None;
        }
        let kind = TokenKind::from_code(data[2])?;
        let token_len = u32::from_le_bytes([data[19], data[20], data[21], data[22]]) as usize;
        let token = data.get(HEAD..HEAD.checked_add(token_len)?)?;
        Some(EntryHead {
            kind,
            token,
            deadline_ms: i64_at(data, 3),
            stored_ms: i64_at(data, 11),
            body: &data[HEAD + token_len..],
            body_at: HEAD + token_len,
        })
    }

    /// Where the lookup starts in the entry's bytes.
    pub fn body_at(&self) -> usize {
        self.body_at
    }

    /// True when this entry answers (kind, token) at `now_ms`.
    pub fn answers(&self, kind: TokenKind, token: &[u8], now_ms: i64) -> bool {
        self.kind == kind && now_ms < self.deadline_ms && self.token == token
    }

    /// The entry is `token`'s known profile (whatever its age).
    pub fn is_known(&self, kind: TokenKind, token: &[u8]) -> bool {
        self.kind == kind && self.token == token && self.body.first() == Some(&1)
    }

    /// The cached lookup; `None` when the bytes are not one.
    pub fn lookup(&self) -> Option<Lookup<'a>> {
        match self.body.split_first()? {
            (0, []) => Some(Lookup::Unknown),
            (1, profile) => ProfileRef::parse(profile).map(Lookup::Known),
            _ => None,
        }
    }
}

/// Encodes an entry.
pub fn encode(
    kind: TokenKind,
    token: &[u8],
    deadline_ms: i64,
    stored_ms: i64,
    profile: Option<&Profile>,
) -> Vec<u8> {
    let body = profile.map_or(0, |p| p.as_bytes().len());
    let mut out = Vec::with_capacity(HEAD + token.len() + 1 + body);
    out.extend_from_slice(MAGIC);
    out.push(kind.code());
    out.extend_from_slice(&deadline_ms.to_le_bytes());
    out.extend_from_slice(&stored_ms.to_le_bytes());
    out.extend_from_slice(&u32::try_from(token.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(token);
    match profile {
        None => out.push(0),
        Some(p) => {
            out.push(1);
            out.extend_from_slice(p.as_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::ProfileBuilder;
    use oauthv2info_names::variables::Field;

    const NOW: i64 = 1_700_000_000_000;

    /// The fuzz target for cache entries starts from a real entry
    /// (fuzz/seeds/cache_entry/profile), which must stay one as the format
    /// moves: `UPDATE_SEEDS=1 cargo test -p oauthv2info-core fuzz_seed`
    /// rewrites it after a change of the format.
    #[test]
    fn the_fuzz_seed_is_a_real_entry() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/seeds/cache_entry/profile");
        let mut p = ProfileBuilder::new(true, false);
        p.field(Field::ClientId, "cid-fuzz");
        p.field(Field::Scope, "read write");
        p.field(Field::Status, "approved");
        p.field(Field::ExpiresAt, &(NOW + 3_600_000).to_string());
        p.field(Field::DeveloperEmail, "d@example.com");
        p.attribute("department.id", "5");
        p.attribute("note", "");
        let entry = encode(
            TokenKind::AccessToken,
            b"tok-fuzz",
            NOW + 1_000,
            NOW,
            Some(&p.finish()),
        );
        if std::env::var_os("UPDATE_SEEDS").is_some() {
            std::fs::write(&path, &entry).unwrap();
        }
        let seed = std::fs::read(&path).unwrap();
        assert_eq!(
            seed, entry,
            "fuzz seed out of date: run with UPDATE_SEEDS=1"
        );
        assert!(matches!(
            EntryHead::parse(&seed).and_then(|h| h.lookup()),
            Some(Lookup::Known(_))
        ));
    }

    fn profile(expires_at: i64) -> Profile {
        let mut p = ProfileBuilder::new(true, false);
        p.field(Field::ExpiresAt, &expires_at.to_string());
        p.field(Field::RefreshTokenExpiresAt, &(NOW + 5_000).to_string());
        p.field(Field::Scope, "READ é");
        p.attribute("dept", "");
        p.finish()
    }

    fn config() -> CacheConfig {
        CacheConfig {
            enabled: true,
            ttl_ms: 30_000,
            negative_ttl_ms: 2_000,
            max_entries: 10,
            invalidation: None,
        }
    }

    #[test]
    fn entries_round_trip() {
        let p = profile(NOW + 1);
        for body in [None, Some(&p)] {
            let bytes = encode(TokenKind::RefreshToken, b"tok\0en", NOW + 10, NOW, body);
            let head = EntryHead::parse(&bytes).unwrap();
            assert_eq!(head.kind, TokenKind::RefreshToken);
            assert_eq!(head.token, b"tok\0en");
            assert_eq!((head.deadline_ms, head.stored_ms), (NOW + 10, NOW));
            match (head.lookup().unwrap(), body) {
                (Lookup::Unknown, None) => {}
                (Lookup::Known(v), Some(p)) => assert_eq!(v, p.view()),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn corrupt_entries_are_refused() {
        let bytes = encode(TokenKind::AccessToken, b"t", NOW, NOW, Some(&profile(NOW)));
        for cut in 0..bytes.len() {
            let ok = EntryHead::parse(&bytes[..cut])
                .and_then(|h| h.lookup())
                .filter(|l| match l {
                    Lookup::Known(p) => p.validate(),
                    Lookup::Unknown => true,
                });
            assert_eq!(ok, None, "prefix of {cut} bytes");
        }
        // An unknown lookup is one byte; anything after it is corruption.
        let mut extra = encode(TokenKind::AccessToken, b"t", NOW, NOW, None);
        extra.push(0);
        assert!(EntryHead::parse(&extra).unwrap().lookup().is_none());
        let mut huge = bytes[..HEAD].to_vec();
        huge[19..23].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(EntryHead::parse(&huge).is_none());
        assert!(EntryHead::parse(b"XX").is_none());
        let mut bad_kind = bytes.clone();
        bad_kind[2] = 9;
        assert!(EntryHead::parse(&bad_kind).is_none());
    }

    #[test]
    fn answers_only_its_own_token_kind_and_time() {
        let bytes = encode(TokenKind::AccessToken, b"t", NOW + 100, NOW, None);
        let e = EntryHead::parse(&bytes).unwrap();
        assert!(e.answers(TokenKind::AccessToken, b"t", NOW + 99));
        assert!(!e.answers(TokenKind::AccessToken, b"t", NOW + 100));
        assert!(!e.answers(TokenKind::RefreshToken, b"t", NOW));
        assert!(!e.answers(TokenKind::AccessToken, b"u", NOW));
    }

    #[test]
    fn deadlines() {
        let c = config();
        let d = |kind, p: &Profile| deadline(&c, kind, Lookup::Known(p.view()), NOW);
        assert_eq!(
            deadline(&c, TokenKind::AccessToken, Lookup::Unknown, NOW),
            Some(NOW + 2_000)
        );
        assert_eq!(
            d(TokenKind::AccessToken, &profile(NOW + 60_000)),
            Some(NOW + 30_000)
        );
        // Never past the token's own expiry.
        assert_eq!(
            d(TokenKind::AccessToken, &profile(NOW + 1_000)),
            Some(NOW + 1_000)
        );
        assert_eq!(
            d(TokenKind::RefreshToken, &profile(NOW + 60_000)),
            Some(NOW + 5_000)
        );
        assert_eq!(d(TokenKind::AccessToken, &profile(-1)), Some(NOW + 30_000));
        assert_eq!(
            d(TokenKind::ClientId, &profile(NOW - 1)),
            Some(NOW + 30_000)
        );
        // Already expired: the short negative lifetime.
        assert_eq!(
            d(TokenKind::AccessToken, &profile(NOW - 1)),
            Some(NOW + 2_000)
        );
        let no_negative = CacheConfig {
            negative_ttl_ms: 0,
            ..config()
        };
        assert_eq!(
            deadline(&no_negative, TokenKind::AccessToken, Lookup::Unknown, NOW),
            None
        );
    }

    #[test]
    fn slots_are_bounded_spread_and_follow_the_fingerprint() {
        let seed = scope_seed("ts");
        let mut seen = std::collections::HashSet::new();
        let mut same = 0;
        for i in 0..1000 {
            let token = format!("token-{i}");
            let [a, b] = slots(
                seed,
                token_hash(TokenKind::AccessToken, token.as_bytes()),
                64,
            );
            assert!(a < 64 && b < 64);
            seen.insert(a);
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
        let fp = |k| token_hash(k, b"same");
        assert_ne!(
            slots(seed, fp(TokenKind::AccessToken), 1 << 20),
            slots(seed, fp(TokenKind::RefreshToken), 1 << 20)
        );
        assert_ne!(
            slots(seed, fp(TokenKind::AccessToken), 1 << 20),
            slots(scope_seed("other"), fp(TokenKind::AccessToken), 1 << 20)
        );
        assert_eq!(slots(seed, fp(TokenKind::AccessToken), 1), [0, 0]);
        let mut key = String::from("junk");
        slot_key(&mut key, "oauthv2info.cache.ts.", 42);
        assert_eq!(key, "oauthv2info.cache.ts.42");
    }

    #[test]
    fn choosing_a_slot_and_planning_a_store() {
        let bytes = |token: &[u8], deadline_ms: i64| {
            encode(TokenKind::AccessToken, token, deadline_ms, NOW, None)
        };
        let (mine, other, older, stale) = (
            bytes(b"t", NOW + 5),
            bytes(b"u", NOW + 9),
            bytes(b"v", NOW + 3),
            bytes(b"w", NOW),
        );
        fn h(b: &[u8]) -> EntryHead<'_> {
            EntryHead::parse(b).unwrap()
        }
        let choose = |a: Option<&EntryHead>, b: Option<&EntryHead>| {
            choose_slot([a, b], TokenKind::AccessToken, b"t", NOW)
        };
        assert_eq!(
            choose(Some(&h(&other)), Some(&h(&mine))),
            (1, false),
            "the slot holding the token"
        );
        assert_eq!(choose(Some(&h(&other)), None), (1, false), "an empty slot");
        assert_eq!(
            choose(Some(&h(&stale)), Some(&h(&other))),
            (0, false),
            "an expired entry"
        );
        assert_eq!(
            choose(Some(&h(&other)), Some(&h(&older))),
            (1, true),
            "the entry expiring first"
        );
        assert_eq!(choose(Some(&h(&older)), Some(&h(&other))), (0, true));
        let refresh = encode(TokenKind::RefreshToken, b"t", NOW + 5, NOW, None);
        assert_eq!(
            choose(Some(&h(&refresh)), Some(&h(&other))),
            (0, true),
            "another kind is another token"
        );

        // The stale-write rule: an introspection that started before the
        // entry was written does not overwrite it; an update always does.
        fn read(b: &[u8], cas: u32) -> [SlotRead<'_>; 2] {
            [
                SlotRead {
                    head: Some(h(b)),
                    cas: Some(cas),
                },
                SlotRead::default(),
            ]
        }
        assert_eq!(
            plan_store(
                read(&mine, 7),
                TokenKind::AccessToken,
                b"t",
                NOW,
                NOW,
                false
            ),
            None
        );
        assert_eq!(
            plan_store(
                read(&mine, 7),
                TokenKind::AccessToken,
                b"t",
                NOW,
                NOW + 1,
                false
            ),
            Some(StorePlan {
                slot: 0,
                cas: Some(7),
                evicts: false
            })
        );
        assert_eq!(
            plan_store(read(&mine, 7), TokenKind::AccessToken, b"t", NOW, NOW, true),
            Some(StorePlan {
                slot: 0,
                cas: Some(7),
                evicts: false
            })
        );
        assert_eq!(
            plan_store(
                read(&other, 3),
                TokenKind::AccessToken,
                b"t",
                NOW,
                NOW,
                false
            ),
            Some(StorePlan {
                slot: 1,
                cas: None,
                evicts: false
            })
        );
    }
}
