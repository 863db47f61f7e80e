//! Cache invalidation through the token service's change feed, the pure
//! part (docs/configuration.md#cache-invalidation).
//!
//! One poller per Envoy: every root context (one per worker VM) ticks, and
//! the one holding the lease in shared data polls `GET <path>?after=<cursor>`.
//! The lease, the cursor and what the other workers need to know live in
//! one shared-data record, [`FeedState`], written with CAS. For each change
//! the poller overwrites the token's cache entry, if one of its two slots
//! holds it, with a tombstone (shared data cannot delete); a `410` drops
//! the whole cache (every entry older than the 410 stops being served).
//!
//! Staleness is bounded both ways:
//!
//! - **hits**: a worker serves a hit only while the feed has been read up
//!   to date within `max_stale_ms` ([`FeedView::serves`]), so an entry is
//!   never served past a change older than that bound;
//! - **answers in flight**: a callout sent before a change was applied may
//!   carry the old profile. The record keeps the changes applied in the
//!   last few seconds ([`FeedState::recent`]); an answer about one of them,
//!   sent before it was applied, is used for its request but not cached
//!   ([`FeedState::may_store`]).

use oauthv2info_names::{parse_token_hash, TokenKind};

const MAGIC: &[u8; 2] = b"F1";
const HEAD: usize = 2 + 8 * 7 + 2;
const RECENT: usize = 8 + 1 + 8;

/// The most changes the record remembers for answers in flight; when more
/// arrive within [`FeedState::keep_ms`], the oldest go and
/// [`FeedState::horizon_ms`] moves past them.
pub(crate) const MAX_RECENT: usize = 256;

/// The shared-data key of the feed record of a cache (one per token-service
/// cluster and cache size: the slots of a token depend on both).
pub(crate) fn feed_key(cluster: &str, max_entries: usize) -> String {
    format!("oauthv2info.feed.{cluster}.{max_entries}")
}

/// The shared-data key of the counter that hands out poller ids.
pub(crate) const POLLER_IDS_KEY: &str = "oauthv2info.feed.ids";

/// A change the poller applied, remembered for answers in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recent {
    pub fingerprint: u64,
    pub kind: TokenKind,
    /// When it was applied (epoch ms).
    pub at_ms: i64,
}

/// The feed record in shared data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedState {
    /// The poller holding the lease (0: none yet).
    pub owner: u64,
    pub lease_until_ms: i64,
    /// The last change applied (`after` of the next poll; 0: from the
    /// oldest the feed retains).
    pub cursor: i64,
    /// Every change committed before this instant has been applied
    /// (`i64::MIN`: the feed was never read up to date).
    pub fresh_ms: i64,
    /// No entry whose data is older than this is served (a 410 dropped the
    /// cache).
    pub flush_before_ms: i64,
    /// No answer whose callout started before this is cached (changes were
    /// dropped from `recent`, or the cache was dropped).
    pub horizon_ms: i64,
    /// The changes applied lately, oldest first.
    pub recent: Vec<Recent>,
    /// The cursor follows the feed: false for a new record and after a
    /// 410, until the poller has started from the feed's head (or read it
    /// to the end).
    pub synced: bool,
}

impl Default for FeedState {
    fn default() -> Self {
        FeedState {
            owner: 0,
            lease_until_ms: i64::MIN,
            cursor: 0,
            fresh_ms: i64::MIN,
            flush_before_ms: i64::MIN,
            horizon_ms: i64::MIN,
            recent: Vec::new(),
            synced: false,
        }
    }
}

fn i64_at(b: &[u8], at: usize) -> Option<i64> {
    Some(i64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

impl FeedState {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEAD + self.recent.len() * RECENT);
        out.extend_from_slice(MAGIC);
        for n in [
            self.owner as i64,
            self.lease_until_ms,
            self.cursor,
            self.fresh_ms,
            self.flush_before_ms,
            self.horizon_ms,
            i64::from(self.synced),
        ] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        let count = self.recent.len().min(MAX_RECENT);
        out.extend_from_slice(&(count as u16).to_le_bytes());
        for r in &self.recent[self.recent.len() - count..] {
            out.extend_from_slice(&r.fingerprint.to_le_bytes());
            out.push(r.kind.code());
            out.extend_from_slice(&r.at_ms.to_le_bytes());
        }
        out
    }

    /// `None` for bytes that are not a record (a new one starts then).
    pub fn decode(b: &[u8]) -> Option<FeedState> {
        if b.get(..2)? != MAGIC {
            return None;
        }
        let n = |i: usize| i64_at(b, 2 + i * 8);
        let count = u16::from_le_bytes([*b.get(HEAD - 2)?, *b.get(HEAD - 1)?]) as usize;
        let mut recent = Vec::with_capacity(count);
        for i in 0..count {
            let at = HEAD + i * RECENT;
            recent.push(Recent {
                fingerprint: i64_at(b, at)? as u64,
                kind: TokenKind::from_code(*b.get(at + 8)?)?,
                at_ms: i64_at(b, at + 9)?,
            });
        }
        Some(FeedState {
            owner: n(0)? as u64,
            lease_until_ms: n(1)?,
            cursor: n(2)?,
            fresh_ms: n(3)?,
            flush_before_ms: n(4)?,
            horizon_ms: n(5)?,
            synced: n(6)? != 0,
            recent,
        })
    }

    /// May poller `me` poll at `now_ms`: it holds the lease, or the lease
    /// has lapsed (its holder stopped).
    pub(crate) fn may_poll(&self, me: u64, now_ms: i64) -> bool {
        self.owner == me || self.lease_until_ms <= now_ms
    }

    /// How long a change must be remembered for answers in flight: the
    /// longest a callout can take, and one more poll.
    pub(crate) fn keep_ms(timeout_ms: u32, poll_ms: u32) -> i64 {
        i64::from(timeout_ms) + i64::from(poll_ms) + 1_000
    }

    /// Records a page of changes applied at `now_ms`. `sent_ms`: when its
    /// poll was sent; `caught_up`: the page was not full (the feed has no
    /// more), so every change committed before `sent_ms` is now applied.
    pub(crate) fn applied(
        &mut self,
        changes: &[Change],
        next: i64,
        caught_up: bool,
        sent_ms: i64,
        now_ms: i64,
        keep_ms: i64,
    ) {
        self.cursor = next;
        if caught_up {
            self.fresh_ms = self.fresh_ms.max(sent_ms);
            self.synced = true;
        }
        self.recent.extend(changes.iter().map(|c| Recent {
            fingerprint: c.fingerprint,
            kind: c.kind,
            at_ms: now_ms,
        }));
        let old = now_ms.saturating_sub(keep_ms);
        self.recent.retain(|r| r.at_ms >= old);
        if self.recent.len() > MAX_RECENT {
            let drop = self.recent.len() - MAX_RECENT;
            // Answers sent before the dropped ones were applied are no
            // longer checked one by one: none of them is cached.
            if let Some(last) = self.recent.get(drop - 1) {
                self.horizon_ms = self.horizon_ms.max(last.at_ms.saturating_add(1));
            }
            self.recent.drain(..drop);
        }
    }

    /// The feed no longer has the changes after the cursor (410): drop the
    /// whole cache, start again.
    pub(crate) fn expired(&mut self, now_ms: i64) {
        self.cursor = 0;
        self.flush_before_ms = now_ms;
        self.horizon_ms = self.horizon_ms.max(now_ms);
        self.recent.clear();
        self.synced = false;
    }

    /// Starts following the feed at its head, skipping what came before:
    /// every entry older than this answer (`now_ms`, when it arrived) stops
    /// being served and no answer sent before it is cached, so no change
    /// up to the head can be missed. (Used when the cursor does not follow
    /// the feed yet: a first start, a 410.)
    pub(crate) fn start_at(&mut self, head: i64, sent_ms: i64, now_ms: i64) {
        self.cursor = head;
        self.flush_before_ms = self.flush_before_ms.max(now_ms);
        self.horizon_ms = self.horizon_ms.max(now_ms);
        self.fresh_ms = self.fresh_ms.max(sent_ms);
        self.recent.clear();
        self.synced = true;
    }

    /// May an answer about (kind, fingerprint), whose callout started at
    /// `started_ms`, be cached? Not when a change to it was applied after
    /// the callout started (the answer may predate the change).
    pub(crate) fn may_store(&self, kind: TokenKind, fingerprint: u64, started_ms: i64) -> bool {
        started_ms >= self.horizon_ms
            && started_ms >= self.flush_before_ms
            && !self
                .recent
                .iter()
                .any(|r| r.fingerprint == fingerprint && r.kind == kind && r.at_ms >= started_ms)
    }
}

/// What a worker knows of the feed between two ticks (from the record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FeedView {
    pub(crate) fresh_ms: i64,
    pub(crate) flush_before_ms: i64,
}

impl Default for FeedView {
    fn default() -> Self {
        FeedView {
            fresh_ms: i64::MIN,
            flush_before_ms: i64::MIN,
        }
    }
}

impl FeedView {
    pub(crate) fn of(state: &FeedState) -> FeedView {
        FeedView {
            fresh_ms: state.fresh_ms,
            flush_before_ms: state.flush_before_ms,
        }
    }

    /// Serves the feed's hits at `now_ms`: read up to date within
    /// `max_stale_ms`. (The view may lag the record by a tick: it then
    /// holds an older `fresh_ms`, which stops hits sooner, never later.)
    pub(crate) fn fresh(&self, now_ms: i64, max_stale_ms: i64) -> bool {
        now_ms < self.fresh_ms.saturating_add(max_stale_ms)
    }

    /// May an entry whose data dates from `as_of_ms` be served?
    pub(crate) fn serves(&self, now_ms: i64, max_stale_ms: i64, as_of_ms: i64) -> bool {
        self.fresh(now_ms, max_stale_ms) && as_of_ms >= self.flush_before_ms
    }
}

/// One listed change: which token's profile changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub(crate) kind: TokenKind,
    pub(crate) fingerprint: u64,
}

/// What a poll's answer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedAnswer {
    /// Changes after the cursor, in order, the next cursor, and the
    /// feed's committed head (absent from a feed that does not give it).
    Page {
        changes: Vec<Change>,
        next: i64,
        head: Option<i64>,
    },
    /// 410: the changes after the cursor are gone.
    Expired,
    /// Anything else: the poll failed (the reason for the log).
    Failure(String),
}

/// Reads the answer to `GET <path>?after=...` (docs/token-service.md, the
/// change feed). A change of a kind or with a hash this filter does not
/// know makes the whole answer a failure: applying the rest and moving the
/// cursor past it would lose it.
pub fn parse_feed(status: Option<u16>, body: &[u8]) -> FeedAnswer {
    match status {
        Some(200) => {}
        Some(410) => return FeedAnswer::Expired,
        Some(s) => {
            let s = u32::from(s);
            return FeedAnswer::Failure(format!("change feed answered HTTP {s}"));
        }
        None => return FeedAnswer::Failure("change feed call failed (no response status)".into()),
    }
    let value: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return FeedAnswer::Failure(format!("change feed answered malformed JSON: {e}")),
    };
    let (Some(list), Some(next)) = (
        value.get("changes").and_then(|c| c.as_array()),
        value.get("next").and_then(|n| n.as_i64()),
    ) else {
        return FeedAnswer::Failure(
            "change feed answer has no \"changes\" array or no integer \"next\"".into(),
        );
    };
    let mut changes = Vec::with_capacity(list.len());
    for c in list {
        let kind = c
            .get("kind")
            .and_then(|k| k.as_str())
            .and_then(TokenKind::from_hint);
        let fingerprint = c
            .get("hash")
            .and_then(|h| h.as_str())
            .and_then(parse_token_hash);
        match (kind, fingerprint) {
            (Some(kind), Some(fingerprint)) => changes.push(Change { kind, fingerprint }),
            _ => {
                let mut line = "change feed listed a change this filter cannot read: ".to_string();
                crate::template::write_json(c, &mut line);
                return FeedAnswer::Failure(line);
            }
        }
    }
    let head = value.get("head").and_then(|h| h.as_i64());
    FeedAnswer::Page {
        changes,
        next,
        head,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(fp: u64) -> Change {
        Change {
            kind: TokenKind::AccessToken,
            fingerprint: fp,
        }
    }

    #[test]
    fn the_record_round_trips_and_refuses_other_bytes() {
        let mut s = FeedState {
            owner: 7,
            lease_until_ms: 1_000,
            cursor: 42,
            ..FeedState::default()
        };
        s.applied(&[change(1), change(2)], 44, true, 900, 950, 5_000);
        let back = FeedState::decode(&s.encode()).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.fresh_ms, 900);
        assert_eq!(back.recent.len(), 2);
        assert_eq!(FeedState::decode(b"C2xxxx"), None);
        assert_eq!(FeedState::decode(&s.encode()[..HEAD + 3]), None);
        assert_eq!(FeedState::decode(b""), None);
    }

    #[test]
    fn the_lease_goes_to_one_poller_until_it_lapses() {
        let s = FeedState {
            owner: 7,
            lease_until_ms: 1_000,
            ..FeedState::default()
        };
        assert!(s.may_poll(7, 500));
        assert!(!s.may_poll(8, 999));
        assert!(s.may_poll(8, 1_000));
        assert!(FeedState::default().may_poll(8, 0));
    }

    #[test]
    fn up_to_date_only_when_a_page_was_not_full() {
        let mut s = FeedState::default();
        s.applied(&[change(1)], 10, false, 100, 110, 5_000);
        assert_eq!(s.fresh_ms, i64::MIN, "a full page: more to read");
        assert_eq!(s.cursor, 10);
        s.applied(&[], 10, true, 120, 130, 5_000);
        assert_eq!(s.fresh_ms, 120);
        // An older poll's answer never moves it back.
        s.applied(&[], 10, true, 90, 140, 5_000);
        assert_eq!(s.fresh_ms, 120);
    }

    #[test]
    fn answers_sent_before_a_change_was_applied_are_not_cached() {
        let mut s = FeedState::default();
        s.applied(&[change(1)], 1, true, 100, 200, 5_000);
        assert!(!s.may_store(TokenKind::AccessToken, 1, 150), "sent before");
        assert!(!s.may_store(TokenKind::AccessToken, 1, 200));
        assert!(s.may_store(TokenKind::AccessToken, 1, 201), "sent after");
        assert!(s.may_store(TokenKind::AccessToken, 2, 150), "another token");
        assert!(s.may_store(TokenKind::RefreshToken, 1, 150), "another kind");
        // Forgotten once no callout can still be in flight.
        s.applied(&[], 1, true, 6_000, 6_000, 5_000);
        assert!(s.recent.is_empty());
    }

    #[test]
    fn an_overflowing_list_moves_the_horizon_past_what_it_drops() {
        let mut s = FeedState::default();
        let many: Vec<Change> = (0..MAX_RECENT as u64).map(change).collect();
        s.applied(&many, 1, true, 100, 100, 60_000);
        s.applied(&[change(9_999)], 2, true, 200, 200, 60_000);
        assert_eq!(s.recent.len(), MAX_RECENT);
        assert_eq!(s.horizon_ms, 101);
        assert!(!s.may_store(TokenKind::AccessToken, 12_345, 100));
        assert!(s.may_store(TokenKind::AccessToken, 12_345, 101));
        assert!(!s.may_store(TokenKind::AccessToken, 9_999, 150));
    }

    #[test]
    fn a_410_drops_everything_older() {
        let mut s = FeedState {
            cursor: 77,
            fresh_ms: 50,
            ..FeedState::default()
        };
        s.applied(&[change(1)], 78, true, 60, 60, 5_000);
        s.expired(100);
        assert_eq!(s.cursor, 0);
        assert!(s.recent.is_empty());
        assert!(!s.may_store(TokenKind::AccessToken, 5, 99));
        let view = FeedView::of(&s);
        assert!(!view.serves(100, 5_000, 99), "data from before the 410");
        assert!(view.serves(100, 5_000, 100));
    }

    #[test]
    fn starting_at_the_head_drops_everything_older_than_the_answer() {
        let mut s = FeedState::default();
        assert!(!s.synced);
        s.start_at(5_000, 100, 120);
        assert!(s.synced);
        assert_eq!((s.cursor, s.fresh_ms), (5_000, 100));
        let view = FeedView::of(&s);
        assert!(
            !view.serves(130, 5_000, 119),
            "fetched before the answer arrived"
        );
        assert!(view.serves(130, 5_000, 120));
        assert!(!s.may_store(TokenKind::AccessToken, 1, 119));
        s.expired(200);
        assert!(!s.synced);
        // Read to the end instead (a feed without a head): synced then.
        let mut s = FeedState::default();
        s.applied(&[change(1)], 1, false, 10, 10, 5_000);
        assert!(!s.synced);
        s.applied(&[], 1, true, 20, 20, 5_000);
        assert!(s.synced);
    }

    #[test]
    fn hits_stop_once_the_feed_is_stale() {
        let view = FeedView {
            fresh_ms: 1_000,
            flush_before_ms: i64::MIN,
        };
        assert!(view.serves(5_999, 5_000, 0));
        assert!(!view.serves(6_000, 5_000, 0));
        assert!(!FeedView::default().fresh(0, 5_000), "never read");
    }

    #[test]
    fn feed_answers() {
        let fp = oauthv2info_names::token_hash_hex(TokenKind::RefreshToken, b"def");
        let body = format!(
            r#"{{"changes":[{{"cursor":42,"kind":"refresh_token","hash":"{fp}","op":"revoke"}}],"next":42,"oldest":7}}"#
        );
        assert_eq!(
            parse_feed(Some(200), body.as_bytes()),
            FeedAnswer::Page {
                changes: vec![Change {
                    kind: TokenKind::RefreshToken,
                    fingerprint: oauthv2info_names::token_hash(TokenKind::RefreshToken, b"def"),
                }],
                next: 42,
                head: None,
            }
        );
        assert_eq!(
            parse_feed(
                Some(200),
                br#"{"changes":[],"next":0,"oldest":1,"head":77}"#
            ),
            FeedAnswer::Page {
                changes: vec![],
                next: 0,
                head: Some(77),
            }
        );
        assert_eq!(parse_feed(Some(410), b"{}"), FeedAnswer::Expired);
        for (status, body) in [
            (Some(503), &br#"{"error":"store_unavailable"}"#[..]),
            (None, b""),
            (Some(200), b"{"),
            (Some(200), br#"{"changes":[]}"#),
            (
                Some(200),
                br#"{"changes":[{"kind":"session","hash":"00"}],"next":1}"#,
            ),
            (
                Some(200),
                br#"{"changes":[{"kind":"access_token","hash":"xyz"}],"next":1}"#,
            ),
        ] {
            assert!(
                matches!(parse_feed(status, body), FeedAnswer::Failure(_)),
                "{status:?} {}",
                String::from_utf8_lossy(body)
            );
        }
        // The change it cannot read, shown as the feed wrote it.
        assert_eq!(
            parse_feed(
                Some(200),
                br#"{"changes":[{"kind": "session", "hash": "\u0001", "n": [1.5]}],"next":1}"#
            ),
            FeedAnswer::Failure(
                r#"change feed listed a change this filter cannot read: {"kind":"session","hash":"\u0001","n":[1.5]}"#
                    .to_string()
            )
        );
    }
}
