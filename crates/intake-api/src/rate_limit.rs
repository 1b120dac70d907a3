//! Rate limits per token (contract §10): the budget a request spends right after its token is
//! authenticated, the 429 when it does not fit, and the IETF `RateLimit-Policy` / `RateLimit`
//! fields on every authenticated response.

use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest};
use intake_domain::{Budget, RateLimit, RateLimiter, TenantId};

use crate::metrics::Metrics;
use crate::problem::ApiError;

/// The IETF policy field: the budget and how long it takes to fill.
pub const RATE_LIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// The IETF limit field: what is left now and how long until the budget is full again.
pub const RATE_LIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// The limiter, the default limit, and the metrics limited requests are counted in.
#[derive(Debug, Clone)]
pub struct RateLimits {
    /// `None` when limits are off.
    limiter: Option<Arc<dyn RateLimiter>>,
    default: RateLimit,
    metrics: Metrics,
}

impl RateLimits {
    /// Limits through `limiter` (none: no limits), `default` for tokens without a limit of
    /// their own.
    pub fn new(
        limiter: Option<Arc<dyn RateLimiter>>,
        default: RateLimit,
        metrics: Metrics,
    ) -> Self {
        Self { limiter, default, metrics }
    }

    /// Spends `cost` events of the budget of `key` (a token), under its own limit or the
    /// default; 0 only reads the budget. The budget goes with the request, for its response's
    /// fields. Not enough left: 429 `rate-limited`, and nothing is spent. `None` when limits
    /// are off.
    pub async fn spend(
        &self,
        req: &HttpRequest,
        key: &str,
        own: Option<RateLimit>,
        tenant: &TenantId,
        cost: u32,
    ) -> Result<Option<Budget>, ApiError> {
        let Some(limiter) = &self.limiter else {
            return Ok(None);
        };
        let budget = limiter.spend(key, own.unwrap_or(self.default), cost).await;
        req.extensions_mut().insert(budget);
        if budget.allowed {
            return Ok(Some(budget));
        }
        self.metrics.count_limited(tenant.as_str());
        let retry_after = Budget::secs(budget.retry_after).max(1);
        let detail = if cost > budget.limit.burst {
            format!(
                "{cost} events exceed this token's burst of {}; send at most {} at once",
                budget.limit.burst, budget.limit.burst
            )
        } else {
            format!(
                "this token may send {} events per second, {} at once; {} can be sent now and {cost} \
                 were asked for; retry after {retry_after} s",
                budget.limit.per_second, budget.limit.burst, budget.remaining
            )
        };
        Err(ApiError::RateLimited { retry_after, detail })
    }
}

/// The two fields for a budget, in the structured-field syntax of
/// draft-ietf-httpapi-ratelimit-headers.
pub fn fields(budget: &Budget) -> [(HeaderName, String); 2] {
    [
        (
            RATE_LIMIT_POLICY,
            format!("\"events\";q={};w={}", budget.limit.burst, budget.limit.window_secs()),
        ),
        (RATE_LIMIT, format!("\"events\";r={};t={}", budget.remaining, Budget::secs(budget.reset))),
    ]
}

/// Adds the fields to the response of every request that consulted a budget (that is, every
/// authenticated one), errors included.
pub async fn middleware<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<B>, actix_web::Error> {
    let mut response = next.call(req).await?;
    let budget = response.request().extensions().get::<Budget>().copied();
    if let Some(budget) = budget {
        for (name, value) in fields(&budget) {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_fields_are_structured_with_whole_seconds() {
        let budget = Budget {
            limit: RateLimit::new(10, 25).expect("limit"),
            allowed: true,
            remaining: 7,
            reset: Duration::from_millis(1800),
            retry_after: Duration::ZERO,
        };
        let [(policy_name, policy), (limit_name, limit)] = fields(&budget);
        assert_eq!(
            (policy_name.as_str(), policy.as_str()),
            ("ratelimit-policy", "\"events\";q=25;w=3")
        );
        assert_eq!((limit_name.as_str(), limit.as_str()), ("ratelimit", "\"events\";r=7;t=2"));
    }
}
