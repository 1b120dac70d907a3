//! Rate limits per token: a rate in events per second and a burst, a budget spent by ingest
//! (a batch costs its number of items), and the port that keeps the budgets.

use std::time::Duration;

use async_trait::async_trait;

/// A token's limit: `per_second` events on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateLimit {
    /// Events per second, at least 1.
    pub per_second: u32,
    /// The most events at once (a full budget), at least 1.
    pub burst: u32,
}

impl RateLimit {
    /// A limit; `None` unless both numbers are at least 1.
    pub fn new(per_second: u32, burst: u32) -> Option<Self> {
        (per_second >= 1 && burst >= 1).then_some(Self { per_second, burst })
    }

    /// The time one event's worth of budget takes to come back.
    pub fn interval(&self) -> Duration {
        Duration::from_nanos(1_000_000_000 / u64::from(self.per_second))
    }

    /// Seconds an empty budget takes to fill up again, rounded up.
    pub fn window_secs(&self) -> u64 {
        u64::from(self.burst).div_ceil(u64::from(self.per_second))
    }

    /// The time until `remaining` is a full budget again.
    pub fn refill_time(&self, remaining: u32) -> Duration {
        self.interval() * self.burst.saturating_sub(remaining)
    }
}

/// What a spend found: whether it was allowed, and the budget left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// The limit the budget follows.
    pub limit: RateLimit,
    /// Whether the cost was taken.
    pub allowed: bool,
    /// Events that could be spent right now.
    pub remaining: u32,
    /// Time until the budget is full again.
    pub reset: Duration,
    /// When refused: the time until the cost would fit (the window when it never can).
    pub retry_after: Duration,
}

impl Budget {
    /// Whole seconds, rounded up.
    pub fn secs(duration: Duration) -> u64 {
        duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
    }
}

/// Where budgets are kept. Spending never fails: a backend that loses its store falls back to
/// one it holds itself, and says so.
#[async_trait]
pub trait RateLimiter: std::fmt::Debug + Send + Sync + 'static {
    /// Takes `cost` events from the budget of `key` under `limit` when they fit (all or
    /// nothing); a cost of 0 only reads the budget.
    async fn spend(&self, key: &str, limit: RateLimit, cost: u32) -> Budget;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_knows_its_window_and_refill_time() {
        let limit = RateLimit::new(10, 25).expect("valid");
        assert_eq!(limit.window_secs(), 3);
        assert_eq!(limit.interval(), Duration::from_millis(100));
        assert_eq!(limit.refill_time(20), Duration::from_millis(500));
        assert_eq!(Budget::secs(Duration::from_millis(1)), 1);
        assert_eq!(Budget::secs(Duration::from_secs(2)), 2);
        assert!(RateLimit::new(0, 5).is_none());
    }
}
