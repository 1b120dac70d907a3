//! Rate limits per token (contract §10) on the wire: the IETF `RateLimit-Policy` / `RateLimit`
//! fields on every authenticated response. Budgets are spent by the application layer
//! (`intake_service::RateLimits`, `Ingest::spend`).

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::HttpMessage;
use intake_domain::Budget;

/// The IETF policy field: the budget and how long it takes to fill.
pub const RATE_LIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// The IETF limit field: what is left now and how long until the budget is full again.
pub const RATE_LIMIT: HeaderName = HeaderName::from_static("ratelimit");

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

    use intake_domain::RateLimit;

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
