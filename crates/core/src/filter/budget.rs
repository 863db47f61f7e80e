//! The lookup budget (docs/configuration.md#the-lookup-budget): a token
//! bucket per worker of lookups for tokens the Envoy has not seen valid,
//! so that a flood of random tokens costs the token service what the
//! configuration allows, not what the client sends. A lookup it refuses
//! fails at once with `token_service_unavailable`, without a call.

use crate::config::LookupBudget;

/// What a refused lookup's failure says (the log, and how the driver tells
/// it from other failures).
pub(crate) const REFUSED: &str =
    "the lookup budget for tokens this Envoy has not seen is spent (token_service.lookup_budget)";

/// The bucket, in thousandths of a lookup.
#[derive(Debug, Default)]
pub(crate) struct Bucket {
    milli: i64,
    at_ms: i64,
    started: bool,
}

impl Bucket {
    /// Takes one lookup from the bucket at `now_ms`; false: none left.
    /// With `per_second` 0 there is no budget.
    pub(crate) fn take(&mut self, budget: &LookupBudget, now_ms: i64) -> bool {
        if budget.per_second == 0 {
            return true;
        }
        let cap = i64::from(budget.burst) * 1000;
        if !self.started {
            // A new worker starts with a full bucket.
            self.started = true;
            self.milli = cap;
        } else if now_ms > self.at_ms {
            // per_second lookups a second: per_second thousandths a ms.
            let refill = (now_ms - self.at_ms).saturating_mul(i64::from(budget.per_second));
            self.milli = self.milli.saturating_add(refill);
        }
        self.milli = self.milli.min(cap);
        self.at_ms = self.at_ms.max(now_ms);
        if self.milli >= 1000 {
            self.milli -= 1000;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_then_the_rate() {
        let budget = LookupBudget {
            per_second: 10,
            burst: 3,
        };
        let mut b = Bucket::default();
        let now = 1_000_000;
        assert!((0..3).all(|_| b.take(&budget, now)), "the burst");
        assert!(!b.take(&budget, now));
        assert!(!b.take(&budget, now + 99), "a tenth of a second makes one");
        assert!(b.take(&budget, now + 100));
        assert!(!b.take(&budget, now + 100));
        // A long quiet time fills it up to the burst, no more.
        assert!((0..3).all(|_| b.take(&budget, now + 60_000)));
        assert!(!b.take(&budget, now + 60_000));
        // A clock that steps back takes nothing and gives nothing.
        assert!(!b.take(&budget, now));
        assert!(b.take(&budget, now + 60_100));
    }

    #[test]
    fn per_second_0_is_no_budget() {
        let budget = LookupBudget {
            per_second: 0,
            burst: 1,
        };
        let mut b = Bucket::default();
        assert!((0..10_000).all(|_| b.take(&budget, 5)));
    }
}
