//! The budgets behind intake's rate limits, behind the domain's [`RateLimiter`] port:
//!
//! - [`MemoryRateLimiter`]: each server counts alone, with `governor`'s GCRA;
//! - [`RedisRateLimiter`]: every server sharing a Redis shares each token's budget, through one
//!   atomic script call per request; while Redis cannot be reached it counts in memory, says so
//!   once in the log, counts the fallbacks, and goes back to Redis by itself.

mod memory;
mod redis_backend;

pub use intake_domain::{Budget, RateLimit, RateLimiter};
pub use memory::MemoryRateLimiter;
pub use redis_backend::{RedisRateLimiter, RedisStats};
