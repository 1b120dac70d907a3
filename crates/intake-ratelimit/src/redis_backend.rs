//! Budgets shared by every server through Redis: one GCRA script call per request, atomic in
//! Redis, timed by Redis's own clock so that servers' clocks do not matter.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use intake_domain::{Budget, RateLimit, RateLimiter};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::MemoryRateLimiter;

/// GCRA on the key's theoretical arrival time (TAT, in microseconds of Redis's clock).
/// ARGV: the interval per event (µs), the burst, the cost (0 reads without spending), and how
/// many more events to take ahead if they are there (a lease, see [`RedisRateLimiter`]).
/// Returns {allowed, remaining, retry after (µs), time until full (µs), events taken ahead}.
const GCRA: &str = r"
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local ahead = tonumber(ARGV[4])
local tau = interval * burst
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat or tat < now then tat = now end
local function remaining(at)
  local r = math.floor((now + tau - at) / interval)
  if r > burst then r = burst end
  if r < 0 then r = 0 end
  return r
end
if cost == 0 then return {1, remaining(tat), 0, tat - now, 0} end
if cost > burst then return {0, remaining(tat), tau, tat - now, 0} end
local new_tat = tat + cost * interval
local allowed_at = new_tat - tau
if allowed_at > now then return {0, remaining(tat), allowed_at - now, tat - now, 0} end
local taken = math.min(ahead, remaining(new_tat))
new_tat = new_tat + taken * interval
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return {1, remaining(new_tat), 0, new_tat - now, taken}
";

/// A lease of events taken from the shared budget ahead of use, spent by this server alone.
#[derive(Debug, Clone, Copy)]
struct Lease {
    /// The limit it was taken under.
    limit: RateLimit,
    /// Events of the lease not spent yet.
    left: u32,
    /// The shared budget left when the lease was taken (the lease already deducted).
    shared: u32,
    /// When it was taken; a lease older than [`LEASE_LIFETIME`] is dropped.
    taken_at: Instant,
}

/// How long unspent leased events stay usable; after that they count as spent.
const LEASE_LIFETIME: Duration = Duration::from_millis(500);

/// The most leases a server holds at once (one per token that spent in the last
/// [`LEASE_LIFETIME`]); past it the least recently used is dropped, which costs only a trip to
/// Redis.
const MAX_LEASES: u64 = 100_000;

/// How many events a server takes ahead from a key's shared budget: a thousandth of the burst
/// and at most a hundredth of a second's worth, so that any number of servers hold little of
/// it; limits with a burst under a thousand events take nothing ahead and every request asks
/// Redis.
fn lease_size(limit: RateLimit) -> u32 {
    (limit.burst / 1000).min(limit.per_second / 100)
}

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
    connection: std::sync::RwLock<Option<ConnectionManager>>,
    connecting: tokio::sync::Mutex<()>,
    /// This server's leases by key: a concurrent cache, so that requests of different tokens
    /// take no common lock, whose entries expire with their lease (never more than
    /// [`MAX_LEASES`] held).
    leases: moka::sync::Cache<String, Arc<Mutex<Lease>>>,
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
            connection: std::sync::RwLock::new(None),
            connecting: tokio::sync::Mutex::new(()),
            leases: moka::sync::Cache::builder()
                .max_capacity(MAX_LEASES)
                .time_to_live(LEASE_LIFETIME)
                .build(),
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

    fn held_connection(&self) -> Option<ConnectionManager> {
        self.connection.read().ok().and_then(|held| held.clone())
    }

    async fn connection(&self) -> redis::RedisResult<ConnectionManager> {
        if let Some(connection) = self.held_connection() {
            return Ok(connection);
        }
        // One request connects; the others wait for it rather than each opening one.
        let _connecting = self.connecting.lock().await;
        if let Some(connection) = self.held_connection() {
            return Ok(connection);
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1);
        let connection = ConnectionManager::new_with_config(self.client.clone(), config).await?;
        if let Ok(mut held) = self.connection.write() {
            *held = Some(connection.clone());
        }
        Ok(connection)
    }

    fn forget_connection(&self) {
        if let Ok(mut held) = self.connection.write() {
            *held = None;
        }
    }

    /// How many leases this server holds now (expired ones are forgotten).
    pub fn leases_held(&self) -> u64 {
        self.leases.run_pending_tasks();
        self.leases.entry_count()
    }

    /// Spends `cost` from this server's lease of `key`, when it holds enough.
    fn spend_leased(&self, key: &str, limit: RateLimit, cost: u32) -> Option<Budget> {
        let held = self.leases.get(key)?;
        let mut lease = held.lock().ok()?;
        if lease.limit != limit || lease.taken_at.elapsed() > LEASE_LIFETIME || lease.left < cost {
            return None;
        }
        lease.left -= cost;
        let remaining = lease.shared.saturating_add(lease.left).min(limit.burst);
        Some(Budget {
            limit,
            allowed: true,
            remaining,
            reset: limit.refill_time(remaining),
            retry_after: Duration::ZERO,
        })
    }

    async fn spend_in_redis(
        &self,
        key: &str,
        limit: RateLimit,
        cost: u32,
    ) -> redis::RedisResult<Budget> {
        let mut connection = self.connection().await?;
        let interval = u64::try_from(limit.interval().as_micros()).unwrap_or(u64::MAX).max(1);
        let ahead = if cost == 0 { 0 } else { lease_size(limit) };
        let (allowed, remaining, retry_after, reset, taken): (i64, i64, i64, i64, i64) = self
            .script
            .key(format!("{}{key}", self.prefix))
            .arg(interval)
            .arg(limit.burst)
            .arg(cost)
            .arg(ahead)
            .invoke_async(&mut connection)
            .await?;
        let micros = |n: i64| Duration::from_micros(u64::try_from(n).unwrap_or(0));
        let shared = u32::try_from(remaining).unwrap_or(0);
        let taken = u32::try_from(taken).unwrap_or(0);
        if taken > 0 {
            let now = Instant::now();
            let fresh = Lease { limit, left: taken, shared, taken_at: now };
            let entry =
                self.leases.entry_by_ref(key).or_insert_with(|| Arc::new(Mutex::new(fresh)));
            if !entry.is_fresh() {
                if let Ok(mut held) = entry.value().lock() {
                    // Concurrent requests that each took a lease add theirs up: none is lost.
                    if held.limit == limit && now.duration_since(held.taken_at) <= LEASE_LIFETIME {
                        held.left = held.left.saturating_add(taken);
                        held.shared = held.shared.min(shared);
                    } else {
                        *held = fresh;
                    }
                }
            }
        }
        let remaining = shared.saturating_add(taken).min(limit.burst);
        Ok(Budget {
            limit,
            allowed: allowed == 1,
            remaining,
            reset: if taken > 0 { limit.refill_time(remaining) } else { micros(reset) },
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
        if let Some(budget) = self.spend_leased(key, limit, cost) {
            return budget;
        }
        if !self.redis_paused() {
            match self.spend_in_redis(key, limit, cost).await {
                Ok(budget) => {
                    if self.degraded.swap(false, Ordering::Relaxed) {
                        tracing::warn!("Redis is back: rate limits are shared again");
                    }
                    return budget;
                }
                Err(error) => {
                    // A broken connection is made anew next time.
                    if error.is_io_error() || error.is_connection_dropped() || error.is_timeout() {
                        self.forget_connection();
                    }
                    self.pause_redis(&error);
                }
            }
        }
        self.fallback_requests.fetch_add(1, Ordering::Relaxed);
        self.fallback.spend_now(key, limit, cost)
    }
}
