//! Rate budgets per token (contract §10): the limiter behind the domain's port, and the default
//! limit of tokens without one of their own.

use std::sync::Arc;

use intake_domain::{Budget, RateLimit, RateLimiter, TenantId};

/// Who spends: a token's tenant, the key of its budget (never its secret) and its own limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The tenant the token acts for.
    pub tenant: TenantId,
    /// The key of the token's budget.
    pub budget_key: String,
    /// The token's own limit; `None` follows the default.
    pub limit: Option<RateLimit>,
}

/// The limiter and the default limit.
#[derive(Debug, Clone)]
pub struct RateLimits {
    /// `None` when limits are off.
    limiter: Option<Arc<dyn RateLimiter>>,
    default: RateLimit,
}

impl RateLimits {
    /// Limits through `limiter` (none: no limits), `default` for tokens without a limit of
    /// their own.
    pub fn new(limiter: Option<Arc<dyn RateLimiter>>, default: RateLimit) -> Self {
        Self { limiter, default }
    }

    /// Spends `cost` events of the account's budget (0 only reads it): the budget after, or
    /// `None` when limits are off. When `allowed` is false nothing was spent.
    pub async fn spend(&self, account: &Account, cost: u32) -> Option<Budget> {
        let limiter = self.limiter.as_ref()?;
        Some(limiter.spend(&account.budget_key, account.limit.unwrap_or(self.default), cost).await)
    }
}
