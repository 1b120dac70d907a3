//! Retention, the keys window and erasure over HTTP (contract §14).

use std::time::Duration;

use intake_domain::Scope;
use reqwest::header::{CONTENT_TYPE, LOCATION};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::{
    create_token, expect_problem, local_settings, quick_start_event, spawn_app, spawn_app_with,
    TestApp, DEV_TOKEN,
};

fn event(key: &str, user: &str) -> Value {
    json!({
        "event_type": "user.created",
        "occurred_at": "2025-12-22T10:30:00Z",
        "idempotency_key": key,
        "data": {"user_id": user},
    })
}

async fn store(app: &TestApp, body: &Value) -> Value {
    let response = app.post_event(body).await;
    assert_eq!(response.status(), 200);
    response.json().await.expect("json")
}

async fn delete(app: &TestApp, token: &str, id: &str) -> reqwest::Response {
    app.client
        .delete(app.url(&format!("/v1/events/{id}")))
        .bearer_auth(token)
        .send()
        .await
        .expect("sent")
}

async fn get_status(app: &TestApp, path: &str) -> u16 {
    let response = app.client.get(app.url(path)).bearer_auth(DEV_TOKEN).send().await.expect("sent");
    response.status().as_u16()
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn deleting_an_event_erases_it_and_its_key_still_answers_a_replay(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let stored = store(&app, &quick_start_event()).await;
    let id = stored["event_id"].as_str().expect("id").to_owned();
    let (other, _) = create_token(&pool, "other", Scope::ALL.to_vec()).await;
    let (reader, _) = create_token(&pool, "dev", vec![Scope::EventsRead, Scope::EventsWrite]).await;

    // Another tenant's event and an id that never existed are 404; without the scope, 403.
    assert_eq!(delete(&app, &other, &id).await.status(), 404);
    let never = "evt_0193e4a27c1e7d3a9f005c2b8f1e4a10";
    expect_problem(
        app.client.delete(app.url(&format!("/v1/events/{never}"))).bearer_auth(DEV_TOKEN),
        404,
        "not-found",
    )
    .await;
    expect_problem(
        app.client.delete(app.url("/v1/events/evt_x")).bearer_auth(DEV_TOKEN),
        404,
        "not-found",
    )
    .await;
    expect_problem(
        app.client.delete(app.url(&format!("/v1/events/{id}"))).bearer_auth(&reader),
        403,
        "forbidden",
    )
    .await;

    let erased = delete(&app, DEV_TOKEN, &id).await;
    assert_eq!(erased.status(), 204);
    assert_eq!(delete(&app, DEV_TOKEN, &id).await.status(), 204, "erased before: 204 too");
    assert_eq!(get_status(&app, &format!("/v1/events/{id}")).await, 404);
    let feed = app.get_json("/v1/events").await;
    assert_eq!(feed["data"], json!([]), "the feed omits it");

    let replay = app.post_event(&quick_start_event()).await;
    assert_eq!(replay.status(), 200);
    let replay: Value = replay.json().await.expect("json");
    assert_eq!(replay["event_id"], stored["event_id"]);
    assert_eq!(replay["deduplicated"], true);
    assert_eq!(app.event_count().await, 0, "nothing stored again");
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn an_erasure_by_content_runs_in_the_background_and_reads_back(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    for i in 0..30 {
        store(&app, &event(&format!("k{i}"), if i % 3 == 0 { "u_12345" } else { "u_2" })).await;
    }
    let response = app
        .client
        .post(app.url("/v1/erasures"))
        .bearer_auth(DEV_TOKEN)
        .header(CONTENT_TYPE, "application/json")
        .body(json!({"pointer": "/user_id", "equals": "u_12345"}).to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 202);
    let location = response.headers()[LOCATION].to_str().expect("ascii").to_owned();
    let created: Value = response.json().await.expect("json");
    let erasure_id = created["erasure_id"].as_str().expect("id");
    assert!(erasure_id.starts_with("era_"), "{created}");
    assert_eq!(location, format!("/v1/erasures/{erasure_id}"));
    assert_eq!(created["status"], "pending");
    assert_eq!(created["erased"], 0);
    assert!(created["created_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{created}");
    assert_eq!(created["finished_at"], Value::Null);

    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let done = loop {
        let erasure = app.get_json(&location).await;
        if erasure["status"] == "done" {
            break erasure;
        }
        assert!(std::time::Instant::now() < deadline, "not done: {erasure}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done["erased"], 10, "{done}");
    assert!(done["finished_at"].is_string(), "{done}");
    assert_eq!(app.event_count().await, 20);

    // Another tenant's erasure is 404, as is an id that is not one.
    let (other, _) = create_token(&pool, "other", Scope::ALL.to_vec()).await;
    let request = app.client.get(app.url(&location)).bearer_auth(&other);
    expect_problem(request, 404, "not-found").await;
    expect_problem(
        app.client.get(app.url("/v1/erasures/nope")).bearer_auth(DEV_TOKEN),
        404,
        "not-found",
    )
    .await;
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_bad_erasure_is_a_400_naming_every_field(pool: PgPool) {
    let app = spawn_app(pool).await;
    let request = app
        .client
        .post(app.url("/v1/erasures"))
        .bearer_auth(DEV_TOKEN)
        .header(CONTENT_TYPE, "application/json")
        .body(json!({"pointer": "user_id", "equals": {"a": 1}, "extra": true}).to_string());
    let (_, problem) = expect_problem(request, 400, "invalid-erasure").await;
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert_eq!(fields, ["pointer", "equals", "extra"], "{problem}");
    assert_eq!(problem["errors"][0]["code"], "invalid_pointer");
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn after_the_keys_window_the_same_key_stores_a_new_event(pool: PgPool) {
    let mut settings = local_settings();
    settings.retention.keys = Duration::from_secs(2);
    settings.retention.maintenance_interval = Duration::from_millis(300);
    let app = spawn_app_with(pool, settings).await;
    let first = store(&app, &quick_start_event()).await;
    let replay = store(&app, &quick_start_event()).await;
    assert_eq!(replay["deduplicated"], true);
    assert_eq!(replay["event_id"], first["event_id"]);

    // Forgotten at most 1.5 × 2 s plus one interval after: 3.3 s.
    tokio::time::sleep(Duration::from_millis(3600)).await;
    let again = store(&app, &quick_start_event()).await;
    assert_eq!(again["deduplicated"], false, "{again}");
    assert_ne!(again["event_id"], first["event_id"]);
    assert_eq!(app.event_count().await, 2);

    let metrics =
        app.client.get(app.url("/metrics")).send().await.expect("sent").text().await.expect("text");
    for line in [
        "intake_events_oldest_age_seconds ",
        "intake_event_partitions ",
        "intake_maintenance_last_run_removed{what=\"keys\"} ",
        "intake_erasures{status=\"pending\"} 0",
    ] {
        assert!(metrics.contains(line), "/metrics lacks {line:?}");
    }
    let runs = metrics
        .lines()
        .find_map(|l| l.strip_prefix("intake_maintenance_runs_total "))
        .and_then(|n| n.parse::<u64>().ok())
        .expect("runs");
    assert!(runs >= 3, "maintenance runs every interval: {runs}");
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_tenant_may_have_a_hundred_erasures_waiting(pool: PgPool) {
    use intake_domain::{ErasureRequest, Retention, TenantId};
    use intake_service::{ErasureRefusal, Lifetime};

    // No erasure worker runs here: every erasure made stays pending.
    let store = std::sync::Arc::new(intake_storage::PgStore::new(pool));
    let retention = Retention { events: None, keys: Duration::from_secs(600) };
    let lifetime = Lifetime::new(store, retention, Duration::from_secs(60));
    let (dev, other) =
        (TenantId::parse("dev").expect("tenant"), TenantId::parse("other").expect("tenant"));
    let request = ErasureRequest::parse(json!({"pointer": "/user_id", "equals": "u_1"}))
        .expect("valid request");
    for _ in 0..100 {
        lifetime.create_erasure(&dev, &request).await.expect("within the cap");
    }
    let refused = lifetime.create_erasure(&dev, &request).await;
    assert!(matches!(refused, Err(ErasureRefusal::TooMany)), "{refused:?}");
    // Another tenant's count is its own.
    lifetime.create_erasure(&other, &request).await.expect("another tenant's first");
}
