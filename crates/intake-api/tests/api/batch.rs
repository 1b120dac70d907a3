//! `POST /v1/events/batch` over HTTP against real PostgreSQL.

use intake_domain::Scope;
use reqwest::header::CONTENT_TYPE;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::{
    create_token, expect_problem, gzip, quick_start_event, spawn_app, TestApp, DEV_TOKEN,
};

fn event(key: &str, plan: &str) -> Value {
    let mut e = quick_start_event();
    e["idempotency_key"] = key.into();
    e["data"]["plan"] = plan.into();
    e
}

fn post_batch(app: &TestApp) -> reqwest::RequestBuilder {
    app.client
        .post(app.url("/v1/events/batch"))
        .bearer_auth(DEV_TOKEN)
        .header(CONTENT_TYPE, "application/json")
}

async fn send_batch(app: &TestApp, events: Vec<Value>) -> Value {
    let response =
        post_batch(app).body(json!({ "events": events }).to_string()).send().await.expect("sent");
    assert_eq!(response.status(), 200);
    response.json().await.expect("json")
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn valid_items_are_stored_and_invalid_ones_get_their_errors_in_order(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut bad = event("b", "pro");
    bad["occurred_at"] = "yesterday".into();
    bad["extra"] = true.into();
    let body =
        send_batch(&app, vec![event("a", "pro"), bad, json!("not an object"), event("c", "pro")])
            .await;
    let results = body["results"].as_array().expect("results");
    assert_eq!(results.len(), 4);
    assert_eq!(results[0]["status"], "ok");
    assert!(results[0]["event_id"].as_str().unwrap_or("").starts_with("evt_"));
    assert_eq!(results[0]["deduplicated"], false);
    assert!(results[0]["received_at"].is_string());
    assert_eq!(results[1]["status"], "error");
    let codes: Vec<&str> = results[1]["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["code"].as_str())
        .collect();
    assert!(codes.contains(&"unknown_field") && codes.contains(&"invalid_timestamp"), "{codes:?}");
    assert_eq!(results[2]["status"], "error");
    assert_eq!(results[2]["errors"][0]["code"], "not_an_object");
    assert_eq!(results[3]["status"], "ok");
    assert_eq!(
        (body["accepted"].clone(), body["deduplicated"].clone(), body["rejected"].clone()),
        (json!(2), json!(0), json!(2))
    );
    assert_eq!(app.event_count().await, 2);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_batch_item_without_a_key_is_told_to_send_one_in_the_item(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut keyless = event("unused", "pro");
    keyless.as_object_mut().expect("object").remove("idempotency_key");
    let response = post_batch(&app)
        .header("Idempotency-Key", "ignored-for-batches")
        .body(json!({ "events": [keyless] }).to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    let error = &body["results"][0]["errors"][0];
    assert_eq!(error["code"], "missing_field", "{body}");
    let message = error["message"].as_str().unwrap_or("");
    assert!(!message.contains("header"), "batches ignore the header: {message}");
    assert_eq!(app.event_count().await, 0);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn duplicates_inside_a_batch_and_against_earlier_events_are_retries(pool: PgPool) {
    let app = spawn_app(pool).await;
    let earlier: Value = app.post_event(&event("old", "pro")).await.json().await.expect("json");
    let body = send_batch(
        &app,
        vec![
            event("new", "pro"),
            event("old", "pro"),
            event("new", "pro"),
            event("new", "free"),
            event("old", "free"),
        ],
    )
    .await;
    let r = body["results"].as_array().expect("results");
    assert_eq!(r[0]["deduplicated"], false);
    assert_eq!(r[1]["deduplicated"], true);
    assert_eq!(r[1]["event_id"], earlier["event_id"]);
    assert_eq!(r[1]["received_at"], earlier["received_at"]);
    assert_eq!(r[2]["deduplicated"], true);
    assert_eq!(r[2]["event_id"], r[0]["event_id"]);
    assert_eq!(r[3]["status"], "error");
    assert_eq!(r[3]["errors"][0]["code"], "idempotency_key_reused");
    assert_eq!(r[3]["event_id"], r[0]["event_id"]);
    assert_eq!(r[4]["errors"][0]["code"], "idempotency_key_reused");
    assert_eq!(r[4]["event_id"], earlier["event_id"]);
    assert_eq!(
        (body["accepted"].clone(), body["deduplicated"].clone(), body["rejected"].clone()),
        (json!(1), json!(2), json!(2))
    );
    assert_eq!(app.event_count().await, 2);

    // The whole batch again is a pure retry.
    let again = send_batch(&app, vec![event("new", "pro"), event("old", "pro")]).await;
    assert_eq!(again["deduplicated"], 2);
    assert_eq!(app.event_count().await, 2);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_batch_of_1000_is_accepted_and_of_0_or_1001_refused_whole(pool: PgPool) {
    let app = spawn_app(pool).await;
    let thousand: Vec<Value> = (0..1000).map(|i| event(&format!("k{i}"), "pro")).collect();
    let body = send_batch(&app, thousand).await;
    assert_eq!(body["accepted"], 1000);
    assert_eq!(app.event_count().await, 1000);

    for n in [0usize, 1001] {
        let events: Vec<Value> = (0..n).map(|i| event(&format!("n{i}"), "pro")).collect();
        let request = post_batch(&app).body(json!({ "events": events }).to_string());
        let (_, problem) = expect_problem(request, 400, "invalid-batch").await;
        assert!(problem["detail"].as_str().unwrap_or("").contains(&n.to_string()), "{problem}");
    }
    assert_eq!(app.event_count().await, 1000);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_body_that_is_not_an_events_object_is_refused_whole(pool: PgPool) {
    let app = spawn_app(pool).await;
    for body in [
        json!([quick_start_event()]),
        json!({}),
        json!({"events": quick_start_event()}),
        json!({"events": [quick_start_event()], "extra": 1}),
        json!({"items": [quick_start_event()]}),
    ] {
        let slug = if body.is_object() { "invalid-batch" } else { "invalid-body" };
        expect_problem(post_batch(&app).body(body.to_string()), 400, slug).await;
    }
    expect_problem(post_batch(&app).body("{\"events\": ["), 400, "invalid-json").await;
    assert_eq!(app.event_count().await, 0);
}

fn padded_batch(total_bytes: usize) -> String {
    let per_item = total_bytes / 10;
    let events: Vec<Value> = (0..10)
        .map(|i| {
            let mut e = event(&format!("p{i}"), "pro");
            e["data"]["pad"] = "x".repeat(per_item.saturating_sub(300)).into();
            e
        })
        .collect();
    json!({ "events": events }).to_string()
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_batch_body_may_be_5_mib_and_no_more(pool: PgPool) {
    let app = spawn_app(pool).await;
    let limit = 5 * 1024 * 1024;
    let fits = padded_batch(limit - 4096);
    assert!(fits.len() <= limit && fits.len() > 1024 * 1024, "{}", fits.len());
    let response = post_batch(&app).body(fits).send().await.expect("sent");
    assert_eq!(response.status(), 200);

    let too_big = padded_batch(limit + 4096);
    assert!(too_big.len() > limit);
    expect_problem(post_batch(&app).body(too_big), 413, "payload-too-large").await;
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_gzip_batch_is_accepted_and_a_gzip_bomb_refused(pool: PgPool) {
    let app = spawn_app(pool).await;
    let events: Vec<Value> = (0..100).map(|i| event(&format!("g{i}"), "pro")).collect();
    let compressed = gzip(json!({ "events": events }).to_string().as_bytes());
    let response = post_batch(&app)
        .header("Content-Encoding", "gzip")
        .body(compressed)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    assert_eq!(app.event_count().await, 100);

    // 1 GiB of spaces as 1024 gzip members of 1 MiB each (about 1 MiB on the wire): refused
    // after 5 MiB of inflation, without the server's memory growing by anything like 1 GiB.
    let member = gzip(&vec![b' '; 1024 * 1024]);
    let bomb: Vec<u8> = member.iter().copied().cycle().take(member.len() * 1024).collect();
    assert!(bomb.len() < 5 * 1024 * 1024, "the bomb itself fits the limit: {}", bomb.len());
    let peak_before = peak_rss_kib();
    let started = std::time::Instant::now();
    expect_problem(
        post_batch(&app).header("Content-Encoding", "gzip").body(bomb),
        413,
        "payload-too-large",
    )
    .await;
    let growth_mib = (peak_rss_kib() - peak_before) / 1024;
    assert!(growth_mib < 256, "peak memory grew by {growth_mib} MiB while refusing the bomb");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn an_unknown_encoding_or_type_is_415_and_auth_applies(pool: PgPool) {
    let (read_only, _) = create_token(&pool, "dev", vec![Scope::EventsRead]).await;
    let app = spawn_app(pool).await;
    let body = json!({ "events": [event("k", "pro")] }).to_string();
    expect_problem(
        post_batch(&app).header("Content-Encoding", "br").body(body.clone()),
        415,
        "unsupported-content-encoding",
    )
    .await;
    let plain = app
        .client
        .post(app.url("/v1/events/batch"))
        .bearer_auth(DEV_TOKEN)
        .header(CONTENT_TYPE, "text/plain")
        .body(body.clone());
    expect_problem(plain, 415, "unsupported-content-type").await;
    let anonymous = app
        .client
        .post(app.url("/v1/events/batch"))
        .header(CONTENT_TYPE, "application/json")
        .body(body.clone());
    expect_problem(anonymous, 401, "unauthorized").await;
    let reader = app
        .client
        .post(app.url("/v1/events/batch"))
        .bearer_auth(&read_only)
        .header(CONTENT_TYPE, "application/json")
        .body(body);
    expect_problem(reader, 403, "forbidden").await;
    assert_eq!(app.event_count().await, 0);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn batch_events_show_up_in_the_feed_in_request_order(pool: PgPool) {
    let app = spawn_app(pool).await;
    let body = send_batch(&app, (0..5).map(|i| event(&format!("f{i}"), "pro")).collect()).await;
    let sent: Vec<&Value> =
        body["results"].as_array().expect("results").iter().map(|r| &r["event_id"]).collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let page = app.get_json("/v1/events").await;
        let got: Vec<&Value> =
            page["data"].as_array().expect("data").iter().map(|e| &e["event_id"]).collect();
        if got.len() == sent.len() {
            assert_eq!(got, sent);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "feed has {} of {}", got.len(), sent.len());
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// This process's peak resident memory (the server runs in it), from /proc.
fn peak_rss_kib() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM line")
}
