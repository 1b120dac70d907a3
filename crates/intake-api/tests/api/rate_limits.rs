//! Rate limits per token (contract §10) over real HTTP and PostgreSQL, with the memory backend
//! and with Redis (`make test` finds or starts one; a private `redis-server` for the outage).

use std::time::{Duration, Instant};

use intake_domain::{RateLimit, Scope, TokenStore};
use intake_storage::PgStore;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use reqwest::Response;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::{
    create_limited_token, create_token, free_port, local_settings, spawn_app, spawn_app_with,
    TestApp, DEV_TOKEN,
};
use crate::process::{database_url, ServeProcess};

fn event(key: &str) -> Value {
    json!({"event_type": "rate.test", "occurred_at": "2025-12-22T10:30:00Z",
           "idempotency_key": key, "data": {}})
}

async fn post(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    body: &Value,
    batch: bool,
) -> Response {
    let path = if batch { "/v1/events/batch" } else { "/v1/events" };
    client
        .post(format!("{base}{path}"))
        .bearer_auth(token)
        .header(CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("sent")
}

/// The `RateLimit` field's `r` and `t`.
fn remaining(response: &Response) -> (u64, u64) {
    let field =
        response.headers().get("ratelimit").and_then(|v| v.to_str().ok()).expect("RateLimit");
    let number = |name: &str| {
        field
            .split(';')
            .find_map(|part| part.strip_prefix(&format!("{name}=")))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {field:?}"))
    };
    assert!(field.starts_with("\"events\";"), "{field}");
    (number("r"), number("t"))
}

fn policy(response: &Response) -> String {
    response
        .headers()
        .get("ratelimit-policy")
        .and_then(|v| v.to_str().ok())
        .expect("policy")
        .to_owned()
}

async fn count(app: &TestApp, prefix: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE starts_with(idempotency_key, $1)")
        .bind(prefix)
        .fetch_one(&app.pool)
        .await
        .expect("count")
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_burst_over_the_limit_gets_429_with_the_fields_and_stores_nothing(pool: PgPool) {
    let (token, _) = create_limited_token(&pool, "acme", 1, 5).await;
    let app = spawn_app(pool).await;
    for n in 0..5u64 {
        let response =
            post(&app.client, &app.address, &token, &event(&format!("b-{n}")), false).await;
        assert_eq!(response.status(), 200);
        assert_eq!(policy(&response), "\"events\";q=5;w=5");
        let (r, t) = remaining(&response);
        assert_eq!(r, 4 - n, "after {} events", n + 1);
        assert!((1..=5).contains(&t), "t={t}");
    }
    let refused = post(&app.client, &app.address, &token, &event("b-5"), false).await;
    assert_eq!(refused.status(), 429);
    let retry: u64 = refused
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    assert_eq!(remaining(&refused).0, 0);
    assert_eq!(policy(&refused), "\"events\";q=5;w=5");
    let problem: Value = refused.json().await.expect("json");
    assert_eq!(problem["type"], "/docs/troubleshooting#rate-limited");
    assert_eq!(problem["status"], 429);
    assert_eq!(count(&app, "b-").await, 5, "the limited request stored nothing");

    // The budget comes back: after Retry-After the request fits.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    let again = post(&app.client, &app.address, &token, &event("b-5"), false).await;
    assert_eq!(again.status(), 200);
    assert_eq!(count(&app, "b-").await, 6);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn tokens_and_tenants_keep_their_own_budgets(pool: PgPool) {
    let (spent, _) = create_limited_token(&pool, "acme", 1, 2).await;
    let (sibling, _) = create_limited_token(&pool, "acme", 1, 2).await;
    let (other_tenant, _) = create_limited_token(&pool, "globex", 1, 2).await;
    let app = spawn_app(pool).await;
    for n in 0..2 {
        assert_eq!(
            post(&app.client, &app.address, &spent, &event(&format!("s-{n}")), false)
                .await
                .status(),
            200
        );
    }
    assert_eq!(post(&app.client, &app.address, &spent, &event("s-2"), false).await.status(), 429);
    assert_eq!(post(&app.client, &app.address, &sibling, &event("t-0"), false).await.status(), 200);
    assert_eq!(
        post(&app.client, &app.address, &other_tenant, &event("g-0"), false).await.status(),
        200
    );
    // The dev token follows the default, far away.
    let dev = post(&app.client, &app.address, DEV_TOKEN, &event("d-0"), false).await;
    assert_eq!(dev.status(), 200);
    assert_eq!(policy(&dev), "\"events\";q=200000;w=2");
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_batch_larger_than_what_is_left_is_refused_whole(pool: PgPool) {
    let (token, _) = create_limited_token(&pool, "acme", 1, 10).await;
    let app = spawn_app(pool).await;
    let batch = |prefix: &str, n: usize| json!({"events": (0..n).map(|i| event(&format!("{prefix}-{i}"))).collect::<Vec<_>>()});
    let response = post(&app.client, &app.address, &token, &batch("a", 7), true).await;
    assert_eq!(response.status(), 200);
    assert_eq!(remaining(&response).0, 3, "a batch costs its items");
    let response = post(&app.client, &app.address, &token, &batch("b", 5), true).await;
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"), "5 fit later: when to retry");
    assert_eq!(count(&app, "b-").await, 0, "refused whole");
    // More than the burst can never fit (§10): the policy says the burst, and no Retry-After.
    let response = post(&app.client, &app.address, &token, &batch("d", 11), true).await;
    assert_eq!(response.status(), 429);
    assert!(!response.headers().contains_key("retry-after"), "11 never fit a burst of 10");
    assert_eq!(policy(&response), "\"events\";q=10;w=10");
    let problem: Value = response.json().await.expect("json");
    assert!(problem["detail"].as_str().is_some_and(|d| d.contains("burst of 10")), "{problem}");
    assert!(problem["detail"].as_str().is_some_and(|d| d.contains("never")), "{problem}");
    // A body that is not a batch spends nothing, and still shows the budget.
    let bad = app
        .client
        .post(app.url("/v1/events/batch"))
        .bearer_auth(&token)
        .header(CONTENT_TYPE, "application/json")
        .body("{\"events\": 1}")
        .send()
        .await
        .expect("sent");
    assert_eq!(bad.status(), 400);
    assert!(bad.headers().contains_key("ratelimit"));
    let response = post(&app.client, &app.address, &token, &batch("c", 3), true).await;
    assert_eq!(response.status(), 200);
    // 3 were left (give or take a second's refill): the bad body spent none of them.
    assert!(remaining(&response).0 <= 1, "the bad body spent nothing");
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn reads_spend_nothing_and_every_authenticated_answer_shows_the_budget(pool: PgPool) {
    let (token, _) = create_limited_token(&pool, "acme", 1, 3).await;
    let (write_only, _) = create_token(&pool, "acme", vec![Scope::EventsWrite]).await;
    let app = spawn_app(pool).await;
    assert_eq!(post(&app.client, &app.address, &token, &event("r-0"), false).await.status(), 200);
    for _ in 0..5 {
        let read =
            app.client.get(app.url("/v1/events")).bearer_auth(&token).send().await.expect("sent");
        assert_eq!(read.status(), 200);
        assert_eq!(remaining(&read).0, 2, "reads spend nothing");
    }
    let schema =
        app.client.get(app.url("/v1/schemas")).bearer_auth(&token).send().await.expect("sent");
    assert_eq!(remaining(&schema).0, 2);
    let forbidden =
        app.client.get(app.url("/v1/events")).bearer_auth(&write_only).send().await.expect("sent");
    assert_eq!(forbidden.status(), 403);
    assert!(forbidden.headers().contains_key("ratelimit"), "a 403 is authenticated too");
    let bad = app.post_events().body("{").send().await.expect("sent");
    assert_eq!(bad.status(), 400);
    assert!(bad.headers().contains_key("ratelimit-policy"));
    let anonymous = app.client.get(app.url("/v1/events")).send().await.expect("sent");
    assert_eq!(anonymous.status(), 401);
    assert!(!anonymous.headers().contains_key("ratelimit"), "no token, no budget");
    let health = app.client.get(app.url("/healthz")).send().await.expect("sent");
    assert!(!health.headers().contains_key("ratelimit"));
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn tokens_update_takes_effect_within_a_few_seconds(pool: PgPool) {
    let (token, id) = create_limited_token(&pool, "acme", 1, 1).await;
    let store = PgStore::new(pool.clone());
    let app = spawn_app(pool).await;
    assert_eq!(post(&app.client, &app.address, &token, &event("u-0"), false).await.status(), 200);
    assert_eq!(post(&app.client, &app.address, &token, &event("u-1"), false).await.status(), 429);
    assert!(store.set_limit(id, RateLimit::new(1000, 1000)).await.expect("update"));
    let started = Instant::now();
    let mut n = 1;
    loop {
        let response =
            post(&app.client, &app.address, &token, &event(&format!("u-{n}")), false).await;
        if response.status() == 200 {
            assert_eq!(policy(&response), "\"events\";q=1000;w=1");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "still {} after 3 s",
            response.status()
        );
        n += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("tokens update took effect after {:?}", started.elapsed());
}

fn test_redis() -> String {
    std::env::var("INTAKE_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!("set INTAKE_TEST_REDIS_URL to a Redis the tests may use (make test finds or starts one)")
    })
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn two_servers_sharing_redis_hold_one_combined_budget(pool: PgPool) {
    let (token, _) = create_limited_token(&pool, "acme", 1, 10).await;
    let url = database_url(&pool).await;
    let redis = test_redis();
    let prefix = format!("intake-test:{}:", uuid::Uuid::new_v4().simple());
    let settings = [
        ("INTAKE__LIMITS__RATE__BACKEND", "redis"),
        ("INTAKE__LIMITS__RATE__REDIS_URL", redis.as_str()),
        ("INTAKE__LIMITS__RATE__REDIS_PREFIX", prefix.as_str()),
    ];
    let a = ServeProcess::start_with(&url, free_port(), None, &settings).await;
    let b = ServeProcess::start_with(&url, free_port(), None, &settings).await;
    let client = reqwest::Client::new();
    let mut accepted = 0;
    for n in 0..12 {
        let base = if n % 2 == 0 { &a.base } else { &b.base };
        let status = post(&client, base, &token, &event(&format!("two-{n}")), false).await.status();
        assert!(status == 200 || status == 429, "{status}");
        accepted += usize::from(status == 200);
    }
    assert_eq!(accepted, 10, "one budget of 10 across both servers, not 10 each");
}

#[path = "../../../intake-ratelimit/tests/support/private_redis.rs"]
mod private_redis;
use private_redis::PrivateRedis;

async fn metric(app: &TestApp, name: &str) -> f64 {
    let text =
        app.client.get(app.url("/metrics")).send().await.expect("sent").text().await.expect("text");
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{name} in {text}"))
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn redis_stopped_mid_run_falls_back_without_a_500_and_recovers(pool: PgPool) {
    let port = free_port();
    let mut redis = PrivateRedis::start(port);
    let mut settings = local_settings();
    settings.limits.rate.backend = intake_api::settings::RateBackend::Redis;
    settings.limits.rate.redis_url = format!("redis://127.0.0.1:{port}");
    // A burst under a thousand: no lease, every request asks Redis.
    (settings.limits.rate.per_second, settings.limits.rate.burst) = (100, 500);
    let app = spawn_app_with(pool, settings).await;
    assert_eq!(app.post_event(&event("f-0")).await.status(), 200);
    assert_eq!(metric(&app, "intake_rate_limit_backend_degraded").await, 0.0);

    redis.stop();
    for n in 1..20 {
        let response = app.post_event(&event(&format!("f-{n}"))).await;
        assert_eq!(response.status(), 200, "no 500 while Redis is down");
        assert!(response.headers().contains_key("ratelimit"));
    }
    assert_eq!(metric(&app, "intake_rate_limit_backend_degraded").await, 1.0);
    assert!(metric(&app, "intake_rate_limit_fallback_requests_total").await >= 1.0);

    let _redis = PrivateRedis::start(port);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut n = 100;
    while metric(&app, "intake_rate_limit_backend_degraded").await != 0.0 {
        assert!(Instant::now() < deadline, "never went back to Redis");
        assert_eq!(app.post_event(&event(&format!("f-{n}"))).await.status(), 200);
        n += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn an_exhausted_token_is_refused_before_its_batch_is_read(pool: PgPool) {
    let (token, _) = create_limited_token(&pool, "acme", 1, 3).await;
    let app = spawn_app(pool).await;
    let batch = json!({"events": (0..3).map(|i| event(&format!("e-{i}"))).collect::<Vec<_>>()});
    assert_eq!(post(&app.client, &app.address, &token, &batch, true).await.status(), 200);
    // The head of a 4 MiB batch, and none of its body: the budget is gone, so the answer must
    // not wait for a body it will not use.
    let head = format!(
        "POST /v1/events/batch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 4194304\r\n\r\n"
    );
    let answer = crate::helpers::raw_exchange(&app.address, head.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("retry-after:"), "{answer}");
}
