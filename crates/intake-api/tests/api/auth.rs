//! Bearer tokens, scopes and tenants.

use std::time::{Duration, Instant};

use intake_domain::{Scope, TokenStore};
use intake_storage::PgStore;
use reqwest::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use serde_json::Value;
use sqlx::PgPool;

use crate::helpers::{
    create_token, expect_problem, local_settings, quick_start_event, spawn_app, spawn_app_with,
};

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_missing_or_malformed_authorization_is_401_with_www_authenticate(pool: PgPool) {
    let app = spawn_app(pool).await;
    let body = quick_start_event().to_string();
    let base = || {
        app.client
            .post(app.url("/v1/events"))
            .header(CONTENT_TYPE, "application/json")
            .body(body.clone())
    };
    let cases = [
        base(),
        base().header("Authorization", "Basic dGVzdDoxMjM="),
        base().header("Authorization", "Bearer"),
        base().header("Authorization", "Bearer "),
        base().header("Authorization", "test_123"),
        base().header("Authorization", "Bearer wrong_token"),
    ];
    for request in cases {
        let (headers, _) = expect_problem(request, 401, "unauthorized").await;
        let challenge = headers.get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).unwrap_or("");
        assert!(challenge.starts_with("Bearer"), "WWW-Authenticate is {challenge:?}");
    }
    assert_eq!(app.event_count().await, 0);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn the_bearer_scheme_is_case_insensitive(pool: PgPool) {
    let app = spawn_app(pool).await;
    for (i, scheme) in ["bearer", "BEARER", "BeArEr"].into_iter().enumerate() {
        let mut body = quick_start_event();
        body["idempotency_key"] = format!("case-{i}").into();
        let response = app
            .client
            .post(app.url("/v1/events"))
            .header("Authorization", format!("{scheme} test_123"))
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 200, "scheme {scheme}");
    }
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_token_without_the_write_scope_is_403(pool: PgPool) {
    let (read_only, _) = create_token(&pool, "acme", vec![Scope::EventsRead]).await;
    let app = spawn_app(pool).await;
    let request = app
        .client
        .post(app.url("/v1/events"))
        .bearer_auth(&read_only)
        .header(CONTENT_TYPE, "application/json")
        .body(quick_start_event().to_string());
    let (_, problem) = expect_problem(request, 403, "forbidden").await;
    assert!(problem["detail"].as_str().unwrap_or("").contains("events:write"), "{problem}");
    assert_eq!(app.event_count().await, 0);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_database_token_works_and_its_tenant_scopes_the_key(pool: PgPool) {
    let (acme, _) = create_token(&pool, "acme", Scope::ALL.to_vec()).await;
    let (globex, _) = create_token(&pool, "globex", vec![Scope::EventsWrite]).await;
    let app = spawn_app(pool).await;
    let post = |token: String| {
        app.client
            .post(app.url("/v1/events"))
            .bearer_auth(token)
            .header(CONTENT_TYPE, "application/json")
            .body(quick_start_event().to_string())
            .send()
    };
    let a: Value = post(acme).await.expect("sent").json().await.expect("json");
    let b: Value = post(globex).await.expect("sent").json().await.expect("json");
    let dev: Value = app.post_event(&quick_start_event()).await.json().await.expect("json");
    assert_eq!(a["deduplicated"], false);
    assert_eq!(b["deduplicated"], false);
    assert_eq!(dev["deduplicated"], false);
    assert_ne!(a["event_id"], b["event_id"]);
    let tenants: Vec<String> =
        sqlx::query_scalar("SELECT tenant_id FROM events ORDER BY tenant_id")
            .fetch_all(&app.pool)
            .await
            .expect("rows");
    assert_eq!(tenants, ["acme", "dev", "globex"]);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_revoked_token_stops_working_within_a_second(pool: PgPool) {
    let (secret, id) = create_token(&pool, "acme", Scope::ALL.to_vec()).await;
    let app = spawn_app(pool.clone()).await;
    let post = |key: &str| {
        let mut body = quick_start_event();
        body["idempotency_key"] = key.into();
        app.client
            .post(app.url("/v1/events"))
            .bearer_auth(&secret)
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
    };
    assert_eq!(post("before").await.expect("sent").status(), 200, "token works (and is cached)");
    assert!(PgStore::new(pool).revoke(id).await.expect("revoke"));
    let revoked_at = Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let status = post(&format!("after-{attempt}")).await.expect("sent").status();
        if status == 401 {
            break;
        }
        assert_eq!(status, 200, "before it is refused, the token still works");
        assert!(
            revoked_at.elapsed() < Duration::from_secs(1),
            "still accepted {:?} after revocation",
            revoked_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn production_refuses_dev_tokens() {
    let mut settings =
        intake_api::settings::Settings::load_profile(&crate::helpers::config_dir(), "production")
            .expect("production profile loads");
    assert!(settings.auth.dev_tokens.is_empty(), "the shipped production profile has none");
    settings.check_for_serving().expect("production without dev tokens may serve");
    settings.auth.dev_tokens = local_settings().auth.dev_tokens;
    let err = settings.check_for_serving().expect_err("dev tokens in production");
    assert!(err.to_string().contains("refusing to start"), "{err}");
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn the_local_profile_serves_the_dev_token(pool: PgPool) {
    let settings = local_settings();
    assert_eq!(settings.auth.dev_tokens.len(), 1);
    let app = spawn_app_with(pool, settings).await;
    assert_eq!(app.post_event(&quick_start_event()).await.status(), 200);
}
