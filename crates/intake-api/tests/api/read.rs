//! Reading events back over HTTP: one event, and the feed.

use std::time::{Duration, Instant};

use intake_domain::Scope;
use reqwest::header::CONTENT_TYPE;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::{
    create_token, expect_problem, quick_start_event, spawn_app, TestApp, DEV_TOKEN,
};

async fn post_keyed(app: &TestApp, key: &str, event_type: &str) -> String {
    let mut body = quick_start_event();
    body["idempotency_key"] = key.into();
    body["event_type"] = event_type.into();
    let answer: Value = app.post_event(&body).await.json().await.expect("json");
    answer["event_id"].as_str().expect("id").to_owned()
}

async fn get_json(app: &TestApp, path: &str, token: &str) -> (u16, Value) {
    let response = app.client.get(app.url(path)).bearer_auth(token).send().await.expect("sent");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json"))
}

/// Follows the feed until `expected` events arrived (pages may come back short while other
/// transactions on the server are open) and a page is empty; returns the ids and the cursor.
async fn follow(app: &TestApp, query: &str, expected: usize) -> (Vec<String>, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/events?{query}&cursor={c}"),
            None => format!("/v1/events?{query}"),
        };
        let (status, page) = get_json(app, &path, DEV_TOKEN).await;
        assert_eq!(status, 200, "{page}");
        let next = page["next_cursor"].as_str().expect("next_cursor is always present").to_owned();
        let data = page["data"].as_array().expect("data array");
        ids.extend(data.iter().map(|e| e["event_id"].as_str().expect("id").to_owned()));
        if data.is_empty() && ids.len() >= expected {
            return (ids, next);
        }
        assert!(Instant::now() < deadline, "only {} of {expected} arrived", ids.len());
        if data.is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        cursor = Some(next);
    }
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_stored_event_reads_back_with_its_data_as_sent(pool: PgPool) {
    let app = spawn_app(pool).await;
    let body = r#"{"event_type":"order.item_added","occurred_at":"2025-12-22T12:30:00.123456+02:00",
        "idempotency_key":"read-1","data":{"big":123456789012345678901234567890,
        "beyond_2_53":9007199254740993,"f":0.1,"neg":-2.5,"s":"ünï 🚀","n":{"a":[null,true,{}]}}}"#;
    let answer: Value =
        app.post_events().body(body).send().await.expect("sent").json().await.expect("json");
    let id = answer["event_id"].as_str().expect("id");

    let response = app
        .client
        .get(app.url(&format!("/v1/events/{id}")))
        .bearer_auth(DEV_TOKEN)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
    let text = response.text().await.expect("body");
    let event: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(event["event_id"], id);
    assert_eq!(event["event_type"], "order.item_added");
    assert_eq!(event["occurred_at"], "2025-12-22T10:30:00.123456Z");
    assert_eq!(event["received_at"], answer["received_at"]);
    assert_eq!(event["idempotency_key"], "read-1");
    for digits in ["123456789012345678901234567890", "9007199254740993", "0.1", "-2.5"] {
        assert!(text.contains(digits), "{digits} missing from {text}");
    }
    assert_eq!(event["data"]["s"], "ünï 🚀");
    assert_eq!(event["data"]["n"], json!({"a": [null, true, {}]}));
    let keys: Vec<&String> = event.as_object().expect("object").keys().collect();
    assert_eq!(keys.len(), 7, "exactly the seven fields: {keys:?}");
    assert_eq!(event["schema_version"], Value::Null, "its type has no schema");
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn another_tenants_unknown_or_malformed_id_is_404(pool: PgPool) {
    let (other, _) = create_token(&pool, "globex", Scope::ALL.to_vec()).await;
    let app = spawn_app(pool).await;
    let id = post_keyed(&app, "k", "t").await;
    let request = app.client.get(app.url(&format!("/v1/events/{id}"))).bearer_auth(&other);
    expect_problem(request, 404, "not-found").await;
    for bad in
        ["evt_0123456789abcdef0123456789abcdef", "evt_nothex", "12345", "evt_%00", "..%2F..%2Fetc"]
    {
        let request = app.client.get(app.url(&format!("/v1/events/{bad}"))).bearer_auth(DEV_TOKEN);
        expect_problem(request, 404, "not-found").await;
    }
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn reading_needs_the_read_scope(pool: PgPool) {
    let (write_only, _) = create_token(&pool, "dev", vec![Scope::EventsWrite]).await;
    let app = spawn_app(pool).await;
    let id = post_keyed(&app, "k", "t").await;
    for path in [format!("/v1/events/{id}"), "/v1/events".to_owned()] {
        let request = app.client.get(app.url(&path)).bearer_auth(&write_only);
        let (_, problem) = expect_problem(request, 403, "forbidden").await;
        assert!(problem["detail"].as_str().unwrap_or("").contains("events:read"), "{problem}");
        expect_problem(app.client.get(app.url(&path)), 401, "unauthorized").await;
    }
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn the_feed_pages_oldest_first_and_lets_a_consumer_poll_at_the_end(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut written = Vec::new();
    for i in 0..7 {
        written.push(post_keyed(&app, &format!("k{i}"), "t").await);
    }
    let (ids, cursor) = follow(&app, "limit=3", written.len()).await;
    assert_eq!(ids, written);

    // At the end, the same cursor keeps working and picks up what arrives later.
    let later = post_keyed(&app, "late", "t").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, page) =
            get_json(&app, &format!("/v1/events?cursor={cursor}"), DEV_TOKEN).await;
        assert_eq!(status, 200);
        let data = page["data"].as_array().expect("data");
        if !data.is_empty() {
            assert_eq!(data.len(), 1);
            assert_eq!(data[0]["event_id"], later.as_str());
            break;
        }
        assert_eq!(page["next_cursor"], cursor.as_str(), "an empty page keeps the cursor");
        assert!(Instant::now() < deadline, "the late event never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn the_feed_defaults_to_100_and_caps_at_1000(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    // Insert 150 events directly: the feed reads what storage holds.
    sqlx::query(
        "INSERT INTO events (event_id, tenant_id, idempotency_key, event_type, occurred_at, data, fingerprint)
         SELECT gen_random_uuid(), 'dev', 'bulk-' || i, 't', now(), '{}', decode(repeat('00', 32), 'hex')
         FROM generate_series(1, 150) AS i",
    )
    .execute(&pool)
    .await
    .expect("bulk insert");
    let (ids, _) = follow(&app, "limit=1000", 150).await;
    assert_eq!(ids.len(), 150);
    let (_, page) = get_json(&app, "/v1/events", DEV_TOKEN).await;
    assert_eq!(page["data"].as_array().expect("data").len(), 100);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn the_feed_filters_by_event_type(pool: PgPool) {
    let app = spawn_app(pool).await;
    let a = post_keyed(&app, "k1", "user.created").await;
    post_keyed(&app, "k2", "user.deleted").await;
    let b = post_keyed(&app, "k3", "user.created").await;
    let (ids, _) = follow(&app, "event_type=user.created", 2).await;
    assert_eq!(ids, vec![a, b]);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn the_feed_shows_only_the_callers_tenant(pool: PgPool) {
    let (globex, _) = create_token(&pool, "globex", Scope::ALL.to_vec()).await;
    let app = spawn_app(pool).await;
    let mine = post_keyed(&app, "k", "t").await;
    let response = app
        .client
        .post(app.url("/v1/events"))
        .bearer_auth(&globex)
        .header(CONTENT_TYPE, "application/json")
        .body(quick_start_event().to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let (ids, _) = follow(&app, "limit=10", 1).await;
    assert_eq!(ids, vec![mine]);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn bad_feed_parameters_are_400_invalid_query(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, page) = get_json(&app, "/v1/events", DEV_TOKEN).await;
    let good = page["next_cursor"].as_str().expect("cursor").to_owned();
    let mut tampered: Vec<char> = good.chars().collect();
    tampered[5] = if tampered[5] == 'x' { 'y' } else { 'x' };
    let tampered: String = tampered.into_iter().collect();
    let cases = [
        ("limit=0", "limit", "invalid_limit"),
        ("limit=1001", "limit", "invalid_limit"),
        ("limit=-1", "limit", "invalid_limit"),
        ("limit=ten", "limit", "invalid_limit"),
        ("limit=", "limit", "invalid_limit"),
        ("cursor=abc", "cursor", "invalid_cursor"),
        (&*format!("cursor={tampered}"), "cursor", "invalid_cursor"),
        ("cursor=", "cursor", "invalid_cursor"),
        ("event_type=.bad", "event_type", "invalid_event_type"),
        ("page=2", "page", "unknown_parameter"),
        ("limit=5&limit=6", "limit", "duplicate_parameter"),
    ];
    for (query, field, code) in cases {
        let request =
            app.client.get(app.url(&format!("/v1/events?{query}"))).bearer_auth(DEV_TOKEN);
        let (_, problem) = expect_problem(request, 400, "invalid-query").await;
        assert_eq!(problem["errors"][0]["field"], field, "for {query}");
        assert_eq!(problem["errors"][0]["code"], code, "for {query}");
    }
    let request = app.client.get(app.url("/v1/events?limit=0&cursor=zz")).bearer_auth(DEV_TOKEN);
    let (_, problem) = expect_problem(request, 400, "invalid-query").await;
    assert_eq!(problem["errors"].as_array().map(Vec::len), Some(2), "every problem at once");
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_feed_page_is_bounded_in_bytes_and_the_feed_still_misses_nothing(pool: PgPool) {
    let mut settings = crate::helpers::local_settings();
    settings.limits.max_feed_page_bytes = 1_000_000;
    let app = crate::helpers::spawn_app_with(pool, settings).await;
    let big = "x".repeat(400_000);
    for n in 0..5 {
        let body = json!({"event_type": "big", "occurred_at": "2025-12-22T10:30:00Z",
                          "idempotency_key": format!("big-{n}"), "data": {"blob": big}});
        assert_eq!(app.post_event(&body).await.status(), 200);
    }
    let (ids, _) = follow(&app, "limit=100", 5).await;
    assert_eq!(ids.len(), 5, "every event once");
    // Each page held at most two 400 kB events.
    let (status, first) = get_json(&app, "/v1/events?limit=100", DEV_TOKEN).await;
    assert_eq!(status, 200);
    let held = first["data"].as_array().expect("data").len();
    assert!((1..=2).contains(&held), "a page of {held} events of 400 kB against a 1 MB bound");
}
