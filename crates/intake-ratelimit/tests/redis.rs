//! The Redis backend against a real Redis (`make test` finds or starts one: scripts/redis) and
//! against a private `redis-server` that the test stops and starts.

use std::time::{Duration, Instant};

use intake_ratelimit::{RateLimit, RateLimiter, RedisRateLimiter};

fn shared_redis() -> String {
    std::env::var("INTAKE_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!("set INTAKE_TEST_REDIS_URL to a Redis the tests may use (make test finds or starts one)")
    })
}

/// A prefix of its own per test run, so that runs and tests never share budgets.
fn prefix() -> String {
    format!("intake-test:{}:", std::process::id())
}

fn limit(per_second: u32, burst: u32) -> RateLimit {
    RateLimit::new(per_second, burst).expect("limit")
}

#[tokio::test]
async fn two_servers_on_one_redis_share_one_budget() {
    let prefix = format!("{}shared:", prefix());
    let a = RedisRateLimiter::new(&shared_redis(), &prefix).expect("client");
    let b = RedisRateLimiter::new(&shared_redis(), &prefix).expect("client");
    let limit = limit(1, 10);
    let first = a.spend("token", limit, 6).await;
    assert!(first.allowed, "{first:?}");
    assert_eq!(first.remaining, 4);
    let second = b.spend("token", limit, 6).await;
    assert!(!second.allowed, "the other server's spend counts: {second:?}");
    assert_eq!(second.remaining, 4);
    assert!(second.retry_after > Duration::from_millis(1500), "{second:?}");
    let read = b.spend("token", limit, 0).await;
    assert_eq!((read.allowed, read.remaining), (true, 4));
    assert!(
        read.reset > Duration::from_secs(5) && read.reset <= Duration::from_secs(6),
        "{read:?}"
    );
    assert!(b.spend("token", limit, 4).await.allowed);
    assert!(!a.spend("token", limit, 1).await.allowed);
    assert!(a.spend("other", limit, 10).await.allowed, "another key has its own budget");
    let never = a.spend("fresh", limit, 11).await;
    assert!(!never.allowed, "more than a full budget never fits");
    assert_eq!(never.remaining, 10);
    assert_eq!(a.stats().fallback_requests + b.stats().fallback_requests, 0);
}

#[path = "support/private_redis.rs"]
mod private_redis;
use private_redis::PrivateRedis;

#[tokio::test]
async fn redis_stopped_mid_run_falls_back_to_memory_and_recovers() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let mut redis = PrivateRedis::start(port);
    let limiter =
        RedisRateLimiter::new(&format!("redis://127.0.0.1:{port}"), &prefix()).expect("client");
    let limit = limit(1000, 5);
    assert!(limiter.spend("t", limit, 3).await.allowed);
    assert!(!limiter.stats().degraded);

    redis.stop();
    let started = Instant::now();
    let during = limiter.spend("t", limit, 1).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a dead Redis held the request for {:?}",
        started.elapsed()
    );
    assert!(during.allowed, "counted in memory: {during:?}");
    let stats = limiter.stats();
    assert!(stats.degraded && stats.fallback_requests >= 1, "{stats:?}");
    // Still limited while degraded: the memory budget applies.
    let mut refused = false;
    for _ in 0..10 {
        refused |= !limiter.spend("t", limit, 1).await.allowed;
    }
    assert!(refused, "the fallback limits too");

    let _redis = PrivateRedis::start(port);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        limiter.spend("t", limit, 0).await;
        if !limiter.stats().degraded {
            break;
        }
        assert!(Instant::now() < deadline, "never went back to Redis: {:?}", limiter.stats());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn servers_take_small_leases_and_never_exceed_the_shared_budget() {
    let prefix = format!("{}lease:", prefix());
    let a = RedisRateLimiter::new(&shared_redis(), &prefix).expect("client");
    let b = RedisRateLimiter::new(&shared_redis(), &prefix).expect("client");
    // A thousandth of the burst is taken ahead: 10 events per trip to Redis.
    let limit = limit(1000, 10_000);
    let begun = Instant::now();
    let first = a.spend("token", limit, 1).await;
    assert!(first.allowed);
    let shared = b.spend("token", limit, 0).await.remaining;
    // 1 spent and 10 leased; the budget refills by one a millisecond meanwhile.
    let refill = begun.elapsed().as_millis() as u32 + 1;
    assert!(shared <= 9_989 + refill, "A's lease is already deducted: {shared} (refill {refill})");
    for _ in 0..9 {
        assert!(a.spend("token", limit, 1).await.allowed, "spent from A's lease");
    }
    let after = b.spend("token", limit, 0).await.remaining;
    assert!(after >= shared, "A's spends came out of its lease, not Redis: {shared} then {after}");

    let mut allowed = 10u64;
    for n in 0..12_000 {
        let server = if n % 2 == 0 { &a } else { &b };
        allowed += u64::from(server.spend("token", limit, 1).await.allowed);
    }
    // The budget has refilled since the first spend, the 10 counted above included.
    let refilled = (begun.elapsed().as_secs_f64() * 1000.0).ceil() as u64 + 1;
    assert!(allowed <= 10_000 + refilled, "{allowed} allowed; the budget was 10,000 + {refilled}");
    assert!(allowed >= 10_000 - 20, "at most a lease per server is lost: {allowed}");
}

#[tokio::test]
async fn leases_of_tokens_that_stopped_spending_are_forgotten() {
    let prefix = format!("{}forget:", prefix());
    let limiter = RedisRateLimiter::new(&shared_redis(), &prefix).expect("client");
    let limit = limit(1000, 10_000);
    for n in 0..200 {
        assert!(limiter.spend(&format!("token-{n}"), limit, 1).await.allowed);
    }
    assert_eq!(limiter.leases_held(), 200, "a lease per token that spent");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(limiter.leases_held(), 0, "leases outlive their lifetime");
}
