//! The shared cache, over shared data: a lookup answered from the token's
//! slots, an answer stored (or not) by the rules of [`cache::plan_store`].

use log::debug;
use oauthv2info_names::{token_hash, TokenKind};

use super::{Stream, Worker};
use crate::cache::{self, EntryHead, SlotRead};
use crate::config::FilterConfig;
use crate::feed::FeedState;
use crate::flow::{Learned, Pending};
use crate::host::{Host, SharedWrite};
use crate::metrics;
use crate::protocol::Answer;

/// The one slot probe: the entry of each distinct slot `fingerprint` may
/// be in (two, or one when they are the same), until `each` takes one.
/// `each` gets the host, the slot's key and the entry's bytes.
pub(super) fn probe<H: Host, T>(
    host: &mut H,
    config: &FilterConfig,
    key: &mut String,
    fingerprint: u64,
    mut each: impl FnMut(&mut H, &str, Vec<u8>) -> Option<T>,
) -> Option<T> {
    let slots = cache::slots(config.cache_seed, fingerprint, config.cache.max_entries);
    let count = if slots[0] == slots[1] { 1 } else { 2 };
    for slot in &slots[..count] {
        cache::slot_key(key, &config.cache_prefix, *slot);
        let (Some(data), _) = host.shared_data(key) else {
            continue;
        };
        if let Some(taken) = each(host, key, data) {
            return Some(taken);
        }
    }
    None
}

impl Worker {
    /// Answers the pending lookup from the shared cache; true on a hit.
    pub(super) fn cache_answer(
        &mut self,
        host: &mut impl Host,
        config: &FilterConfig,
        stream: &mut Stream,
    ) -> bool {
        let Some(Pending::Lookup { kind, token }) = stream.flow.pending() else {
            return false;
        };
        if !config.cache.enabled {
            stream.seen = false;
            return false;
        }
        let (kind, token) = (*kind, stream.flow.text(token).as_bytes());
        let now = stream.flow.now_ms;
        let fingerprint = token_hash(kind, token);
        let (feed, counts) = (&self.feed, &mut self.metrics);
        let found = probe(
            host,
            config,
            &mut self.buffers.key,
            fingerprint,
            |_, _, data| {
                let at = match EntryHead::parse(&data) {
                    Some(head) if head.answers(kind, token, now) => {
                        if let Some(inv) = &config.cache.invalidation {
                            if !feed.view.serves(now, inv.max_stale_ms, head.stored_ms) {
                                // The feed is behind (or the cache was dropped):
                                // ask the token service.
                                counts.count(metrics::CACHE_STALE);
                                return None;
                            }
                        }
                        head.body_at()
                    }
                    _ => return None,
                };
                Some((data, at))
            },
        );
        let Some((data, at)) = found else {
            self.metrics.count(metrics::CACHE_MISSES);
            stream.seen = config.token_service.lookup_budget.per_second > 0
                && self.seen(host, config, kind, token, fingerprint);
            return false;
        };
        let negative = data.get(at) == Some(&0);
        if config.checks_products {
            if let Some(verb) = products_call(&data, at) {
                super::driver::read_call(host, config, &mut stream.request, verb);
            }
        }
        // The memo serves the worker's current configuration only.
        let current = match (&stream.config, &self.config) {
            (Some(a), Some(b)) => std::rc::Rc::ptr_eq(a, b),
            _ => false,
        };
        let memo = current.then_some(&mut self.decisions);
        if !stream
            .flow
            .on_cached(config, &stream.request, data, at, memo)
        {
            self.metrics.count(metrics::CACHE_MISSES);
            stream.seen = false;
            return false;
        }
        self.metrics.count(if negative {
            metrics::CACHE_NEGATIVE_HITS
        } else {
            metrics::CACHE_HITS
        });
        true
    }

    /// The cache holds `token`'s known profile, expired or stale: the Envoy
    /// has seen it valid, and the lookup budget does not charge its lookup
    /// (docs/configuration.md#the-lookup-budget). Asked on a miss only, by a
    /// second probe, so that the warm hit does not pay for it.
    #[inline(never)]
    fn seen(
        &mut self,
        host: &mut impl Host,
        config: &FilterConfig,
        kind: TokenKind,
        token: &[u8],
        fingerprint: u64,
    ) -> bool {
        probe(
            host,
            config,
            &mut self.buffers.key,
            fingerprint,
            |_, _, data| {
                EntryHead::parse(&data)
                    .is_some_and(|head| head.is_known(kind, token))
                    .then_some(())
            },
        )
        .is_some()
    }

    /// Stores what the token service said (see [`cache::plan_store`]).
    pub(super) fn store(
        &mut self,
        host: &mut impl Host,
        config: &FilterConfig,
        learned: &Learned,
        now: i64,
        started: i64,
    ) {
        if !config.cache.enabled {
            return;
        }
        let Some(deadline) =
            cache::deadline(&config.cache, learned.kind, learned.answer.lookup(), now)
        else {
            return;
        };
        let token = learned.token.as_bytes();
        let slots = cache::slots(
            config.cache_seed,
            token_hash(learned.kind, token),
            config.cache.max_entries,
        );
        let keys: Vec<String> = slots
            .iter()
            .map(|s| {
                let mut key = String::new();
                cache::slot_key(&mut key, &config.cache_prefix, *s);
                key
            })
            .collect();
        let first = host.shared_data(&keys[0]);
        let second = if slots[0] == slots[1] {
            first.clone()
        } else {
            host.shared_data(&keys[1])
        };
        fn read(r: &(Option<Vec<u8>>, Option<u32>)) -> SlotRead<'_> {
            SlotRead {
                head: r.0.as_deref().and_then(EntryHead::parse),
                cas: r.1,
            }
        }
        let plan = cache::plan_store(
            [read(&first), read(&second)],
            learned.kind,
            token,
            now,
            started,
            learned.from_update,
        );
        let Some(plan) = plan else {
            return;
        };
        if plan.evicts {
            self.metrics.count(metrics::CACHE_EVICTIONS);
        }
        let profile = match &learned.answer {
            Answer::Known(p) => Some(p),
            Answer::Unknown => None,
        };
        // The entry is dated when its callout started: what it says held
        // then.
        let entry = cache::encode(learned.kind, token, deadline, started, profile);
        // A concurrent writer (CAS mismatch) wins: its answer is as fresh.
        match host.set_shared_data(&keys[plan.slot], &entry, plan.cas) {
            SharedWrite::Ok => {}
            SharedWrite::CasMismatch => return,
            SharedWrite::Failed => {
                debug!("oauthv2info: could not write a cache entry");
                return;
            }
        }
        // With invalidation on, the feed record is read after the write: a
        // change applied after this callout started, whose poller read the
        // slot before this write, is found here, and the entry is taken
        // back (a poller that records the change after this read finds the
        // entry in the slot itself).
        if config.cache.invalidation.is_some() {
            let state = host
                .shared_data(&self.feed.key)
                .0
                .as_deref()
                .and_then(FeedState::decode)
                .unwrap_or_default();
            if !state.may_store(learned.kind, token_hash(learned.kind, token), started) {
                // Dated as the answer it takes back: a later lookup's
                // answer replaces it.
                let tombstone = cache::encode(learned.kind, token, now, started, None);
                host.set_shared_data(&keys[plan.slot], &tombstone, None);
            }
        }
    }
}

/// When a cache entry (its lookup at `at`) is a known profile that
/// carries the app's API products, the product check will read the call:
/// `Some(true)` when it compares the verb too (an operation of the
/// products lists verbs).
fn products_call(data: &[u8], at: usize) -> Option<bool> {
    match data.get(at..).and_then(|b| b.split_first()) {
        Some((1, profile)) => crate::profile::ProfileRef::parse(profile)
            .filter(|p| p.has_products())
            .map(|p| p.checks_verbs()),
        _ => None,
    }
}
