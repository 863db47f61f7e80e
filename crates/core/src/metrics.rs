//! The filter's metrics (docs/configuration.md#metrics), defined once when
//! the configuration loads. Envoy shows them in `/stats` as
//! `wasmcustom.oauthv2info.*`.
//!
//! Counters are added up in the worker and handed to the host by the root
//! context's tick, once a second: a request makes no metric host call
//! (docs/performance.md#host-calls-per-request). Counters in `/stats` are
//! therefore up to a second behind; a VM that stops loses at most its last
//! second of counts.

use oauthv2info_names::Fault;

use crate::config::FilterConfig;
use crate::host::{Host, MetricKind};

/// A counter, as an index into [`Metrics`]'s pending counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counter(usize);

pub(crate) const EXECUTIONS: Counter = Counter(0);
pub(crate) const CALLOUTS: Counter = Counter(1);
pub(crate) const CALLOUT_FAILURES: Counter = Counter(2);
pub(crate) const CACHE_HITS: Counter = Counter(3);
pub(crate) const CACHE_NEGATIVE_HITS: Counter = Counter(4);
pub(crate) const CACHE_MISSES: Counter = Counter(5);
pub(crate) const CACHE_EVICTIONS: Counter = Counter(6);
pub(crate) const HEADERS_REFUSED: Counter = Counter(7);
pub(crate) const CACHE_STALE: Counter = Counter(8);
pub(crate) const FEED_POLLS: Counter = Counter(9);
pub(crate) const FEED_ERRORS: Counter = Counter(10);
pub(crate) const FEED_INVALIDATIONS: Counter = Counter(11);
pub(crate) const FEED_RESETS: Counter = Counter(12);
pub(crate) const LOOKUPS_REFUSED: Counter = Counter(13);
const FIXED: [&str; 14] = [
    "policy_executions",
    "callouts",
    "callout_failures",
    "cache.hits",
    "cache.negative_hits",
    "cache.misses",
    "cache.evictions",
    "request_headers_refused",
    "cache.stale",
    "feed.polls",
    "feed.errors",
    "feed.invalidations",
    "feed.resets",
    "lookups_refused",
];

/// Metric ids and the counts not yet handed to the host.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    /// Host ids of the counters (0: the host refused it).
    ids: Vec<u32>,
    pending: Vec<i64>,
    dirty: bool,
    /// `callout_latency_ms` (recorded at once: callouts are not the hot path).
    pub(crate) latency: Option<u32>,
    /// `feed.lag_ms`, a gauge: how long ago the change feed was last read
    /// up to date (set on the tick, with cache invalidation on).
    pub(crate) feed_lag: Option<u32>,
    policies: usize,
}

impl Metrics {
    pub(crate) fn define(host: &mut impl Host, config: &FilterConfig) -> Metrics {
        let mut names: Vec<String> = FIXED.iter().map(|n| n.to_string()).collect();
        names.extend(Fault::ALL.iter().map(|f| format!("faults.{}", f.name())));
        for policy in &config.policies {
            let name = stat_name(&policy.name);
            names.push(format!("policy.{name}.executions"));
            names.push(format!("policy.{name}.faults"));
        }
        let ids: Vec<u32> = names
            .iter()
            .map(|n| {
                host.define_metric(MetricKind::Counter, &format!("oauthv2info.{n}"))
                    .unwrap_or(0)
            })
            .collect();
        Metrics {
            pending: vec![0; ids.len()],
            ids,
            dirty: false,
            latency: host.define_metric(MetricKind::Histogram, "oauthv2info.callout_latency_ms"),
            feed_lag: config
                .cache
                .invalidation
                .as_ref()
                .and_then(|_| host.define_metric(MetricKind::Gauge, "oauthv2info.feed.lag_ms")),
            policies: config.policies.len(),
        }
    }

    pub(crate) fn count(&mut self, counter: Counter) {
        if let Some(n) = self.pending.get_mut(counter.0) {
            *n += 1;
            self.dirty = true;
        }
    }

    pub(crate) fn fault(&mut self, fault: Fault) {
        if let Some(i) = Fault::ALL.iter().position(|f| *f == fault) {
            self.count(Counter(FIXED.len() + i));
        }
    }

    pub(crate) fn policy(&mut self, policy: usize, fault: bool) {
        if policy < self.policies {
            let base = FIXED.len() + Fault::ALL.len() + policy * 2;
            self.count(Counter(base + usize::from(fault)));
        }
    }

    /// Hands the pending counts to the host (the root context's tick).
    pub(crate) fn flush(&mut self, host: &mut impl Host) {
        if !self.dirty {
            return;
        }
        for (id, n) in self.ids.iter().zip(self.pending.iter_mut()) {
            if *n != 0 {
                if *id != 0 {
                    host.increment_metric(*id, *n);
                }
                *n = 0;
            }
        }
        self.dirty = false;
    }
}

/// Policy names may hold spaces and periods; stat names keep `[A-Za-z0-9_-]`.
pub(crate) fn stat_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
