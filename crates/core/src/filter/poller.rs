//! The change-feed poller (cache invalidation on): on the root context's
//! tick, one root context of the Envoy holds a lease on the feed record in
//! shared data, polls the token service's change feed and drops the cache
//! entries of changed tokens; every worker learns from the record how far
//! behind the feed is (docs/configuration.md#cache).

use log::warn;

use super::shared_cache::probe;
use super::{call_response, RateLimit, Worker};
use crate::cache::{self, EntryHead};
use crate::config::{FilterConfig, Invalidation};
use crate::feed::{self, FeedAnswer, FeedState, FeedView};
use crate::host::{Host, SharedWrite};
use crate::metrics;
use crate::protocol;
use oauthv2info_names::token_hash;

/// How early a tick may come and still send a poll that is due.
const POLL_SLACK_MS: i64 = 100;

/// How long a poller's lease lasts: two polls and a callout's timeout, so
/// that a slow answer does not hand the feed to another poller.
fn lease_ms(config: &FilterConfig, inv: &Invalidation) -> i64 {
    2 * i64::from(inv.poll_ms) + i64::from(config.token_service.timeout_ms)
}

/// A poller id unique among the root contexts of this Envoy: a counter in
/// shared data, taken with CAS.
pub(super) fn poller_id(host: &mut impl Host, root_id: u32) -> u64 {
    for _ in 0..16 {
        let (bytes, cas) = host.shared_data(feed::POLLER_IDS_KEY);
        let last = bytes
            .as_deref()
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_le_bytes);
        let id = last.wrapping_add(1).max(1);
        if host.set_shared_data(feed::POLLER_IDS_KEY, &id.to_le_bytes(), cas) == SharedWrite::Ok {
            return id;
        }
    }
    // Contended beyond reason: the clock and the root context's id.
    (host.now_ms() as u64) << 20 | u64::from(root_id & 0xf_ffff)
}

/// The change-feed side of a worker (cache invalidation on): its poller id,
/// what it knows of the feed, and its poll in flight.
#[derive(Debug, Default)]
pub(super) struct FeedWorker {
    /// This root context's poller id (unique on this Envoy).
    pub(super) me: u64,
    /// The feed record's shared-data key.
    pub(super) key: String,
    pub(super) view: FeedView,
    /// The poll in flight: its callout token and when it was sent.
    pub(super) inflight: Option<(u32, i64)>,
    pub(super) next_poll_ms: i64,
    pub(super) warnings: RateLimit,
}

impl Worker {
    /// Cache invalidation, on the tick: learns what the feed record says
    /// (the view the hits use), and polls when this root context holds the
    /// lease, or takes it when it has lapsed.
    pub(super) fn feed_tick(&mut self, host: &mut impl Host) {
        let Some(config) = self.config.clone() else {
            return;
        };
        let Some(inv) = &config.cache.invalidation else {
            return;
        };
        let now = host.now_ms();
        let (bytes, cas) = host.shared_data(&self.feed.key);
        let mut state = bytes
            .as_deref()
            .and_then(FeedState::decode)
            .unwrap_or_default();
        self.feed.view = FeedView::of(&state);
        if let (Some(id), true) = (self.metrics.feed_lag, state.fresh_ms != i64::MIN) {
            host.record_metric(id, u64::try_from(now - state.fresh_ms).unwrap_or(0));
        }
        if let Some((_, sent)) = self.feed.inflight {
            if now - sent <= i64::from(config.token_service.timeout_ms) + i64::from(inv.poll_ms) {
                return;
            }
            // An answer that never came (the host lost it): poll again.
            self.feed.inflight = None;
        }
        let me = self.feed.me;
        // Polls are due `poll_ms` after the last one was sent; a tick that
        // fires a little early (timers jitter) still polls, or a 1 s poll
        // on a 1 s tick would run every other tick.
        let due = self.feed.next_poll_ms - POLL_SLACK_MS;
        if !state.may_poll(me, now) || (state.owner == me && now < due) {
            return;
        }
        state.owner = me;
        state.lease_until_ms = now + lease_ms(&config, inv);
        if host.set_shared_data(&self.feed.key, &state.encode(), cas) != SharedWrite::Ok {
            // Another poller took it first.
            return;
        }
        self.poll(host, &config, inv, state.cursor, now);
    }

    /// Sends `GET <path>?after=<cursor>&limit=<limit>`.
    pub(super) fn poll(
        &mut self,
        host: &mut impl Host,
        config: &FilterConfig,
        inv: &Invalidation,
        cursor: i64,
        now: i64,
    ) {
        let service = &config.token_service;
        let path = protocol::feed_path(&inv.path, cursor, inv.limit);
        let headers = protocol::headers(service, "GET", &path, None);
        self.metrics.count(metrics::FEED_POLLS);
        match host.dispatch(&service.cluster, &headers, b"", service.timeout_ms) {
            Ok(token) => self.feed.inflight = Some((token, now)),
            Err(reason) => {
                self.metrics.count(metrics::FEED_ERRORS);
                self.feed.next_poll_ms = now + i64::from(inv.poll_ms);
                self.feed
                    .warnings
                    .warn(now, || format!("change feed not read: {reason}"));
            }
        }
    }

    /// The answer to this root context's poll: records the changes, then
    /// drops their cache entries (in that order: see [`Worker::store`]).
    pub(super) fn on_feed_answer(&mut self, host: &mut impl Host, body_size: usize) {
        let Some((_, sent)) = self.feed.inflight.take() else {
            return;
        };
        let Some(config) = self.config.clone() else {
            return;
        };
        let Some(inv) = &config.cache.invalidation else {
            return;
        };
        let (status, body) = call_response(host, body_size);
        let now = host.now_ms();
        let keep = FeedState::keep_ms(config.token_service.timeout_ms, inv.poll_ms);
        let (changes, again) = match feed::parse_feed(status, &body) {
            FeedAnswer::Page {
                changes,
                next,
                head,
            } => {
                let caught_up = changes.len() < inv.limit as usize;
                let jumped = self.update_feed(host, &config, inv, now, |s| match head {
                    // Not following the feed yet (a first start, a 410):
                    // start at its head rather than read what came before.
                    Some(head) if !s.synced => {
                        s.start_at(head, sent, now);
                        true
                    }
                    _ => {
                        s.applied(&changes, next, caught_up, sent, now, keep);
                        false
                    }
                });
                match jumped {
                    // Another poller holds the lease now: it reads these again.
                    None => return,
                    // Everything before the head is dropped with the cache.
                    Some(true) => (Vec::new(), false),
                    Some(false) => (changes, !caught_up),
                }
            }
            FeedAnswer::Expired => {
                self.metrics.count(metrics::FEED_RESETS);
                warn!("oauthv2info: the change feed no longer has the changes after this Envoy's cursor (410): the whole cache is dropped");
                if self
                    .update_feed(host, &config, inv, now, |s| s.expired(now))
                    .is_none()
                {
                    return;
                }
                (Vec::new(), true)
            }
            FeedAnswer::Failure(reason) => {
                self.metrics.count(metrics::FEED_ERRORS);
                self.feed.next_poll_ms = sent + i64::from(inv.poll_ms);
                self.feed.warnings.warn(now, || reason);
                return;
            }
        };
        for change in &changes {
            self.invalidate(host, &config, *change, now);
        }
        if again {
            // More to read (a full page, or from the start after a 410).
            let cursor = host
                .shared_data(&self.feed.key)
                .0
                .as_deref()
                .and_then(FeedState::decode)
                .map_or(0, |s| s.cursor);
            self.poll(host, &config, inv, cursor, now);
        } else {
            self.feed.next_poll_ms = sent + i64::from(inv.poll_ms);
        }
    }

    /// Rewrites the feed record with `change` while this root context holds
    /// the lease, and answers what `change` did; `None` when another one
    /// holds it (or the record could not be written).
    pub(super) fn update_feed<R>(
        &mut self,
        host: &mut impl Host,
        config: &FilterConfig,
        inv: &Invalidation,
        now: i64,
        mut change: impl FnMut(&mut FeedState) -> R,
    ) -> Option<R> {
        for _ in 0..4 {
            let (bytes, cas) = host.shared_data(&self.feed.key);
            let mut state = bytes
                .as_deref()
                .and_then(FeedState::decode)
                .unwrap_or_default();
            if !state.may_poll(self.feed.me, now) {
                self.feed.view = FeedView::of(&state);
                return None;
            }
            let did = change(&mut state);
            state.owner = self.feed.me;
            state.lease_until_ms = now + lease_ms(config, inv);
            match host.set_shared_data(&self.feed.key, &state.encode(), cas) {
                SharedWrite::Ok => {
                    self.feed.view = FeedView::of(&state);
                    return Some(did);
                }
                SharedWrite::CasMismatch => continue,
                SharedWrite::Failed => break,
            }
        }
        self.metrics.count(metrics::FEED_ERRORS);
        None
    }

    /// Drops the cache entry of a changed token: a tombstone in the slot
    /// that holds it (shared data cannot delete), dated `now`, which no
    /// lookup answers and no answer sent before it replaces.
    pub(super) fn invalidate(
        &mut self,
        host: &mut impl Host,
        config: &FilterConfig,
        c: feed::Change,
        now: i64,
    ) {
        let counts = &mut self.metrics;
        probe(
            host,
            config,
            &mut self.buffers.key,
            c.fingerprint,
            |host, key, data| {
                let head = EntryHead::parse(&data)?;
                if head.kind != c.kind || token_hash(head.kind, head.token) != c.fingerprint {
                    return None;
                }
                let tombstone = cache::encode(head.kind, head.token, now, now, None);
                if host.set_shared_data(key, &tombstone, None) == SharedWrite::Ok {
                    counts.count(metrics::FEED_INVALIDATIONS);
                }
                // The other slot may hold another entry of it: look there too.
                None::<()>
            },
        );
    }
}
