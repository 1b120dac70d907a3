//! The quick start, idempotency and what is stored.

use std::sync::Arc;

use reqwest::header::CONTENT_TYPE;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::{expect_problem, gzip, quick_start_event, spawn_app};

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn the_quick_start_stores_an_event_and_a_retry_replays_it(pool: PgPool) {
    let app = spawn_app(pool).await;

    let first = app.post_event(&quick_start_event()).await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()[CONTENT_TYPE], "application/json");
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.expect("json");
    assert_eq!(first["status"], "ok");
    assert_eq!(first["deduplicated"], false);
    let event_id = first["event_id"].as_str().expect("event_id");
    assert!(event_id.starts_with("evt_"), "{event_id}");
    let received_at = first["received_at"].as_str().expect("received_at");
    assert!(received_at.ends_with('Z'), "{received_at}");
    chrono::DateTime::parse_from_rfc3339(received_at).expect("received_at is RFC 3339");

    let again = app.post_event(&quick_start_event()).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.expect("json");
    assert_eq!(again["event_id"], event_id);
    assert_eq!(again["received_at"], received_at);
    assert_eq!(again["deduplicated"], true);
    assert_eq!(app.event_count().await, 1);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn an_acknowledged_event_is_committed_before_the_answer(pool: PgPool) {
    let app = spawn_app(pool).await;
    let response = app.post_event(&quick_start_event()).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    let id = body["event_id"].as_str().expect("id").trim_start_matches("evt_").to_owned();
    // A new connection sees the row as soon as the answer has arrived.
    let mut other = sqlx::PgConnection::connect_with(&app.pool.connect_options())
        .await
        .expect("second connection");
    let stored: (String, Value) =
        sqlx::query_as("SELECT event_type, data FROM events WHERE event_id = $1::uuid")
            .bind(id)
            .fetch_one(&mut other)
            .await
            .expect("row committed");
    assert_eq!(stored.0, "user.created");
    assert_eq!(stored.1, json!({"user_id": "u_12345", "plan": "pro"}));
}

use sqlx::Connection;

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn the_same_instant_in_another_offset_and_key_order_deduplicates(pool: PgPool) {
    let app = spawn_app(pool).await;
    let first: Value = app.post_event(&quick_start_event()).await.json().await.expect("json");
    let reordered = r#"{"data":{"plan":"pro","user_id":"u_12345"},
        "idempotency_key":"0f3f6f9b-9f0b-4c8d-9f18-5b6a9d9d2d41",
        "occurred_at":"2025-12-22T12:30:00.000+02:00","event_type":"user.created"}"#;
    let response = app.post_events().body(reordered).send().await.expect("sent");
    assert_eq!(response.status(), 200);
    let again: Value = response.json().await.expect("json");
    assert_eq!(again["event_id"], first["event_id"]);
    assert_eq!(again["deduplicated"], true);
    assert_eq!(app.event_count().await, 1);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_key_reused_with_another_payload_is_422_naming_the_original(pool: PgPool) {
    let app = spawn_app(pool).await;
    let first: Value = app.post_event(&quick_start_event()).await.json().await.expect("json");
    for (field, value) in [
        ("event_type", json!("user.deleted")),
        ("occurred_at", json!("2025-12-22T10:30:01Z")),
        ("data", json!({"user_id": "u_12345", "plan": "free"})),
    ] {
        let mut changed = quick_start_event();
        changed[field] = value;
        let (_, problem) = expect_problem(
            app.post_events().body(changed.to_string()),
            422,
            "idempotency-key-reused",
        )
        .await;
        assert_eq!(problem["event_id"], first["event_id"], "when {field} differs");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap_or("")
                .contains(first["event_id"].as_str().unwrap_or("?")),
            "detail names the original: {problem}"
        );
    }
    assert_eq!(app.event_count().await, 1);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn the_key_may_come_from_the_idempotency_key_header(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut body = quick_start_event();
    body.as_object_mut().expect("object").remove("idempotency_key");
    let send = |header: &'static str| {
        app.post_events().header("Idempotency-Key", header).body(body.to_string()).send()
    };
    let first: Value = send("hdr-1").await.expect("sent").json().await.expect("json");
    assert_eq!(first["deduplicated"], false);
    let quoted: Value = send("\"hdr-1\"").await.expect("sent").json().await.expect("json");
    assert_eq!(quoted["event_id"], first["event_id"]);
    assert_eq!(quoted["deduplicated"], true);

    let (_, problem) = expect_problem(
        app.post_events().header("Idempotency-Key", "other").body(quick_start_event().to_string()),
        400,
        "validation-failed",
    )
    .await;
    assert_eq!(problem["errors"][0]["code"], "idempotency_key_mismatch");
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn concurrent_identical_requests_store_one_event_and_all_get_its_id(pool: PgPool) {
    let app = Arc::new(spawn_app(pool).await);
    let mut tasks = Vec::new();
    for _ in 0..30 {
        let app = Arc::clone(&app);
        tasks.push(tokio::spawn(async move {
            let response = app.post_event(&quick_start_event()).await;
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.expect("json")
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.expect("task")["event_id"].clone());
    }
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert_eq!(app.event_count().await, 1);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn gzip_bodies_are_accepted(pool: PgPool) {
    let app = spawn_app(pool).await;
    let compressed = gzip(quick_start_event().to_string().as_bytes());
    let response = app
        .post_events()
        .header("Content-Encoding", "gzip")
        .body(compressed)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    assert_eq!(app.event_count().await, 1);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn numbers_read_back_as_they_were_written_never_larger(pool: PgPool) {
    let app = spawn_app(pool).await;
    // 7 bytes that jsonb would have read back as 1,001 digits; and spellings it would change.
    let data = r#"{"big":1e1000,"small":1.5e-7,"float":1.0,"exp":1E+2}"#;
    let body = format!(
        r#"{{"event_type":"t","occurred_at":"2025-12-22T10:30:00Z","idempotency_key":"n-1","data":{data}}}"#
    );
    let answer: Value =
        app.post_events().body(body).send().await.expect("sent").json().await.expect("json");
    let id = answer["event_id"].as_str().expect("id");
    let text = app
        .client
        .get(app.url(&format!("/v1/events/{id}")))
        .bearer_auth(crate::helpers::DEV_TOKEN)
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("text");
    for written in ["1e1000", "1.5e-7", "1.0"] {
        assert!(text.contains(written), "{written} did not read back as written: {text}");
    }
    let read =
        text.split(r#""data":"#).nth(1).and_then(|rest| rest.split('}').next()).expect("data");
    assert!(read.len() < data.len(), "data read back as {read}}} is longer than {data}");
}
