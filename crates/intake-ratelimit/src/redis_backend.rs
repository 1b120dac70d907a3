//! Budgets shared by every server through Redis: one GCRA script call per request, atomic in
//! Redis, timed by Redis's own clock so that servers' clocks do not matter.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use intake_domain::{Budget, RateLimit, RateLimiter};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::MemoryRateLimiter;

/// GCRA on the key's theoretical arrival time (TAT, in microseconds of Redis's clock).
/// ARGV: the interval per event (µs), the burst, the cost (0 reads without spending).
/// Returns {allowed, remaining, retry after (µs), time until full (µs)}.
const GCRA: &str = r"
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tau = interval * burst
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat or tat < now then tat = now end
local function remaining(at)
  local r = math.floor((now + tau - at) / interval)
  if r > burst then r = burst end
  if r < 0 then r = 0 end
  return r
end
if cost == 0 then return {1, remaining(tat), 0, tat - now} end
if cost > burst then return {0, remaining(tat), tau, tat - now} end
local new_tat = tat + cost * interval
local allowed_at = new_tat - tau
if allowed_at > now then return {0, remaining(tat), allowed_at - now, tat - now} end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return {1, remaining(new_tat), 0, new_tat - now}
";

/// How long one Redis call may take before the request is counted in memory instead.
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);
/// After a failure, how long requests are counted in memory before Redis is tried again.
const RETRY_REDIS_AFTER: Duration = Duration::from_secs(1);

/// What the Redis backend reports for metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct RedisStats {
    /// Requests counted in memory because Redis could not be reached.
    pub fallback_requests: u64,
    /// Whether Redis is unreachable right now.
    pub degraded: bool,
}

/// Shared budgets in Redis, with this server's memory as the fallback.
pub struct RedisRateLimiter {
    client: redis::Client,
    connection: tokio::sync::Mutex<Option<ConnectionManager>>,
    script: redis::Script,
    prefix: String,
    fallback: MemoryRateLimiter,
    retry_at: Mutex<Option<Instant>>,
    degraded: AtomicBool,
    fallback_requests: AtomicU64,
}

impl std::fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimiter").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl RedisRateLimiter {
    /// A limiter on the Redis at `url` (connected on first use, so that the server starts while
    /// Redis is down); keys are `<prefix><token key>`.
    pub fn new(url: &str, prefix: &str) -> Result<Self, redis::RedisError> {
        Ok(Self {
            client: redis::Client::open(url)?,
            connection: tokio::sync::Mutex::new(None),
            script: redis::Script::new(GCRA),
            prefix: prefix.to_owned(),
            fallback: MemoryRateLimiter::default(),
            retry_at: Mutex::new(None),
            degraded: AtomicBool::new(false),
            fallback_requests: AtomicU64::new(0),
        })
    }

    /// The counts for metrics.
    pub fn stats(&self) -> RedisStats {
        RedisStats {
            fallback_requests: self.fallback_requests.load(Ordering::Relaxed),
            degraded: self.degraded.load(Ordering::Relaxed),
        }
    }

    async fn connection(&self) -> redis::RedisResult<ConnectionManager> {
        let mut held = self.connection.lock().await;
        if let Some(connection) = held.as_ref() {
            return Ok(connection.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1);
        let connection = ConnectionManager::new_with_config(self.client.clone(), config).await?;
        *held = Some(connection.clone());
        Ok(connection)
    }

    async fn spend_in_redis(
        &self,
        key: &str,
        limit: RateLimit,
        cost: u32,
    ) -> redis::RedisResult<Budget> {
        let mut connection = self.connection().await?;
        let interval = u64::try_from(limit.interval().as_micros()).unwrap_or(u64::MAX).max(1);
        let (allowed, remaining, retry_after, reset): (i64, i64, i64, i64) = self
            .script
            .key(format!("{}{key}", self.prefix))
            .arg(interval)
            .arg(limit.burst)
            .arg(cost)
            .invoke_async(&mut connection)
            .await?;
        let micros = |n: i64| Duration::from_micros(u64::try_from(n).unwrap_or(0));
        Ok(Budget {
            limit,
            allowed: allowed == 1,
            remaining: u32::try_from(remaining).unwrap_or(0),
            reset: micros(reset),
            retry_after: if allowed == 1 {
                Duration::ZERO
            } else {
                micros(retry_after).max(Duration::from_millis(1))
            },
        })
    }

    fn redis_paused(&self) -> bool {
        let retry_at = self.retry_at.lock().map(|r| *r).unwrap_or(None);
        retry_at.is_some_and(|at| Instant::now() < at)
    }

    fn pause_redis(&self, error: &dyn std::fmt::Display) {
        if let Ok(mut retry_at) = self.retry_at.lock() {
            *retry_at = Some(Instant::now() + RETRY_REDIS_AFTER);
        }
        if !self.degraded.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                %error,
                "Redis cannot be reached: rate limits are counted by this server alone until it \
                 is back"
            );
        }
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn spend(&self, key: &str, limit: RateLimit, cost: u32) -> Budget {
        if !self.redis_paused() {
            match tokio::time::timeout(REDIS_TIMEOUT * 2, self.spend_in_redis(key, limit, cost))
                .await
            {
                Ok(Ok(budget)) => {
                    if self.degraded.swap(false, Ordering::Relaxed) {
                        tracing::warn!("Redis is back: rate limits are shared again");
                    }
                    return budget;
                }
                Ok(Err(error)) => {
                    // A broken connection is made anew next time.
                    if error.is_io_error() || error.is_connection_dropped() {
                        *self.connection.lock().await = None;
                    }
                    self.pause_redis(&error);
                }
                Err(_) => self.pause_redis(&"no answer in time"),
            }
        }
        self.fallback_requests.fetch_add(1, Ordering::Relaxed);
        self.fallback.spend(key, limit, cost).await
    }
}
