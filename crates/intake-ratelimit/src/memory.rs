//! Budgets held by this server alone, with `governor`'s GCRA.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::{DefaultDirectRateLimiter, Quota};
use intake_domain::{Budget, RateLimit, RateLimiter};

type Limiter = DefaultDirectRateLimiter<StateInformationMiddleware>;

/// One key's limiter, and the budget its last spend left (governor offers no way to read a
/// budget without spending, which a read of the budget needs).
struct Entry {
    limit: RateLimit,
    limiter: Limiter,
    last: Mutex<(Instant, u32)>,
}

impl Entry {
    fn new(limit: RateLimit) -> Self {
        let per_second = NonZeroU32::new(limit.per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(limit.burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_second(per_second).allow_burst(burst);
        Self {
            limit,
            limiter: DefaultDirectRateLimiter::direct(quota)
                .with_middleware::<StateInformationMiddleware>(),
            last: Mutex::new((Instant::now(), limit.burst)),
        }
    }

    fn budget(&self, allowed: bool, remaining: u32, retry_after: Duration) -> Budget {
        Budget {
            limit: self.limit,
            allowed,
            remaining,
            reset: self.limit.refill_time(remaining),
            retry_after,
        }
    }

    /// What the last spend left, refilled by the time since.
    fn refilled(&self, last: (Instant, u32), now: Instant) -> u32 {
        let interval = self.limit.interval().as_nanos().max(1);
        let regained = now.saturating_duration_since(last.0).as_nanos() / interval;
        let regained = u32::try_from(regained).unwrap_or(u32::MAX);
        last.1.saturating_add(regained).min(self.limit.burst)
    }

    fn spend(&self, cost: u32) -> Budget {
        let now = Instant::now();
        let mut last = match self.last.lock() {
            Ok(last) => last,
            Err(poisoned) => poisoned.into_inner(),
        };
        let Some(cells) = NonZeroU32::new(cost) else {
            let remaining = self.refilled(*last, now);
            return self.budget(true, remaining, Duration::ZERO);
        };
        match self.limiter.check_n(cells) {
            Ok(Ok(snapshot)) => {
                let remaining = snapshot.remaining_burst_capacity();
                *last = (now, remaining);
                self.budget(true, remaining, Duration::ZERO)
            }
            Ok(Err(not_until)) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                // The cost fits after `wait`, one event regained per interval until then.
                let interval = self.limit.interval().as_nanos().max(1);
                let short = u32::try_from(wait.as_nanos().div_ceil(interval)).unwrap_or(u32::MAX);
                let remaining = cost.saturating_sub(short);
                *last = (now, remaining);
                self.budget(false, remaining, wait.max(Duration::from_millis(1)))
            }
            // More than a full budget: it never fits.
            Err(_) => {
                let remaining = self.refilled(*last, now);
                self.budget(false, remaining, Duration::from_secs(self.limit.window_secs()))
            }
        }
    }
}

/// Each key's budget in this process; idle keys are forgotten after ten minutes (their budget
/// is full again by then at any sensible rate). A key whose limit changes starts afresh.
#[derive(Clone)]
pub struct MemoryRateLimiter {
    /// By key (looked up without allocating); the entry knows its limit.
    entries: moka::sync::Cache<String, Arc<Entry>>,
}

impl std::fmt::Debug for MemoryRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryRateLimiter").field("keys", &self.entries.entry_count()).finish()
    }
}

impl Default for MemoryRateLimiter {
    fn default() -> Self {
        Self {
            entries: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_idle(Duration::from_secs(600))
                .build(),
        }
    }
}

impl MemoryRateLimiter {
    /// [`RateLimiter::spend`], without awaiting anything.
    pub fn spend_now(&self, key: &str, limit: RateLimit, cost: u32) -> Budget {
        let entry = match self.entries.get(key) {
            Some(entry) if entry.limit == limit => entry,
            _ => {
                let entry = Arc::new(Entry::new(limit));
                self.entries.insert(key.to_owned(), entry.clone());
                entry
            }
        };
        entry.spend(cost)
    }
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn spend(&self, key: &str, limit: RateLimit, cost: u32) -> Budget {
        self.spend_now(key, limit, cost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_is_allowed_then_refused_until_the_budget_comes_back() {
        let limiter = MemoryRateLimiter::default();
        let limit = RateLimit::new(10, 5).expect("limit");
        let read = limiter.spend("t", limit, 0).await;
        assert_eq!((read.allowed, read.remaining), (true, 5));
        let spent = limiter.spend("t", limit, 3).await;
        assert_eq!((spent.allowed, spent.remaining), (true, 2));
        assert!(
            spent.reset > Duration::from_millis(250) && spent.reset <= Duration::from_millis(300)
        );
        let refused = limiter.spend("t", limit, 4).await;
        assert!(!refused.allowed);
        assert!(refused.remaining <= 2, "{refused:?}");
        assert!(
            refused.retry_after > Duration::ZERO
                && refused.retry_after <= Duration::from_millis(200)
        );
        let never = limiter.spend("t", limit, 6).await;
        assert!(!never.allowed);
        assert_eq!(never.retry_after, Duration::from_secs(1));
        // Another key has its own budget.
        assert_eq!(limiter.spend("u", limit, 5).await.remaining, 0);
        tokio::time::sleep(Duration::from_millis(250)).await;
        let later = limiter.spend("t", limit, 0).await;
        assert!(later.remaining >= 4, "{later:?}");
        assert!(limiter.spend("t", limit, 4).await.allowed);
    }
}
