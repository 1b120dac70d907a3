//! Client clocks (contract §15): `sent_at` on a single event, at the top of a batch and as the
//! `Intake-Sent-At` header; `clock_skew_ms` in the answers; correction beyond
//! `limits.skew_correction_min` only, read back everywhere; retries with a later `sent_at`.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use reqwest::header::CONTENT_TYPE;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::{expect_problem, spawn_app, TestApp, DEV_TOKEN};

fn rfc3339(instant: DateTime<Utc>) -> String {
    instant.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn instant(value: &Value) -> DateTime<Utc> {
    let text = value.as_str().unwrap_or_else(|| panic!("not a timestamp: {value}"));
    DateTime::parse_from_rfc3339(text).expect("RFC 3339").with_timezone(&Utc)
}

/// An event that happened 5 s before it was sent, from a sender whose clock is `behind` the
/// server's (negative: ahead).
fn event(key: &str, behind: Duration) -> Value {
    let sender_now = Utc::now() - behind;
    json!({
        "event_type": "user.created",
        "occurred_at": rfc3339(sender_now - Duration::seconds(5)),
        "sent_at": rfc3339(sender_now),
        "idempotency_key": key,
        "data": {"user_id": "u_1"},
    })
}

async fn read(app: &TestApp, answer: &Value) -> Value {
    let id = answer["event_id"].as_str().unwrap_or_else(|| panic!("no event_id: {answer}"));
    app.get_json(&format!("/v1/events/{id}")).await
}

/// The feed's first event, once the feed hands it out (a page comes back empty while older
/// transactions on the server are still open).
async fn first_in_feed(app: &TestApp) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let page = app.get_json("/v1/events").await;
        if let Some(first) = page["data"].get(0) {
            return first.clone();
        }
        assert!(std::time::Instant::now() < deadline, "the feed stayed empty: {page}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn skew_of(answer: &Value) -> i64 {
    answer["clock_skew_ms"].as_i64().unwrap_or_else(|| panic!("no clock_skew_ms: {answer}"))
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_clock_ten_minutes_behind_is_reported_and_its_events_corrected(pool: PgPool) {
    let app = spawn_app(pool).await;
    let sent = event("k1", Duration::minutes(10));
    let answer: Value = app.post_event(&sent).await.json().await.expect("json");
    let skew = skew_of(&answer);
    assert!((599_000..=601_000).contains(&skew), "skew {skew} ms for a clock 10 min behind");

    let stored = read(&app, &answer).await;
    assert_eq!(instant(&stored["occurred_at_reported"]), instant(&sent["occurred_at"]));
    assert_eq!(instant(&stored["sent_at"]), instant(&sent["sent_at"]));
    let moved = instant(&stored["occurred_at"]) - instant(&sent["occurred_at"]);
    assert_eq!(moved.num_milliseconds(), skew, "occurred_at moved by the skew");
    let first = first_in_feed(&app).await;
    for field in ["occurred_at", "occurred_at_reported", "sent_at"] {
        assert_eq!(first[field], stored[field], "the feed's {field}");
    }
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn transit_time_below_the_threshold_is_reported_not_corrected(pool: PgPool) {
    let app = spawn_app(pool).await;
    let sent = event("k1", Duration::seconds(20));
    let answer: Value = app.post_event(&sent).await.json().await.expect("json");
    let skew = skew_of(&answer);
    assert!((19_000..=21_000).contains(&skew), "skew {skew} ms for a clock 20 s behind");
    let stored = read(&app, &answer).await;
    assert_eq!(instant(&stored["occurred_at"]), instant(&sent["occurred_at"]));
    assert!(stored.get("occurred_at_reported").is_none(), "{stored}");
    assert!(stored.get("sent_at").is_none(), "{stored}");
    // Without sent_at, no clock_skew_ms.
    let mut plain = event("k2", Duration::zero());
    plain.as_object_mut().expect("object").remove("sent_at");
    let answer: Value = app.post_event(&plain).await.json().await.expect("json");
    assert!(answer.get("clock_skew_ms").is_none(), "{answer}");
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_retry_with_a_later_sent_at_is_a_replay(pool: PgPool) {
    let app = spawn_app(pool).await;
    let first = event("k1", Duration::minutes(10));
    let stored: Value = app.post_event(&first).await.json().await.expect("json");
    let mut retry = first.clone();
    retry["sent_at"] = rfc3339(instant(&first["sent_at"]) + Duration::seconds(7)).into();
    let response = app.post_event(&retry).await;
    assert_eq!(response.status(), 200);
    let replayed: Value = response.json().await.expect("json");
    assert_eq!(replayed["deduplicated"], true, "{replayed}");
    assert_eq!(replayed["event_id"], stored["event_id"]);
    assert!(replayed["clock_skew_ms"].is_i64(), "{replayed}");
    assert_eq!(app.event_count().await, 1);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_clock_two_hours_ahead_is_checked_against_the_future_limit_once_corrected(pool: PgPool) {
    let app = spawn_app(pool).await;
    // Its occurred_at is 2 h ahead of the server: refused without sent_at, fine with it.
    let sent = event("k1", -Duration::hours(2));
    let mut without = sent.clone();
    without.as_object_mut().expect("object").remove("sent_at");
    expect_problem(app.post_events().body(without.to_string()), 400, "validation-failed").await;
    let answer: Value = app.post_event(&sent).await.json().await.expect("json");
    assert!(skew_of(&answer) < -7_100_000, "{answer}");
    let stored = read(&app, &answer).await;
    let lag = Utc::now() - instant(&stored["occurred_at"]);
    assert!(lag > Duration::seconds(3) && lag < Duration::seconds(30), "corrected: {stored}");
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn an_invalid_sent_at_is_named_with_every_other_problem(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut sent = event("k1", Duration::zero());
    sent["sent_at"] = "yesterday".into();
    sent["data"] = json!([]);
    let (_, body) =
        expect_problem(app.post_events().body(sent.to_string()), 400, "validation-failed").await;
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert!(fields.contains(&"sent_at") && fields.contains(&"data"), "{body}");
    assert_eq!(app.event_count().await, 0);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_batch_says_once_when_it_was_sent(pool: PgPool) {
    let app = spawn_app(pool).await;
    let behind = Duration::minutes(3);
    let mut items: Vec<Value> = (0..3).map(|n| event(&format!("b{n}"), behind)).collect();
    let sent_at = items[0]["sent_at"].clone();
    for item in &mut items[..2] {
        item.as_object_mut().expect("object").remove("sent_at");
    }
    let body = json!({"sent_at": sent_at, "events": items});
    let answer: Value = app
        .post_batch()
        .body(body.to_string())
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let skew = skew_of(&answer);
    assert!((179_000..=181_000).contains(&skew), "{answer}");
    // The third item carries its own sent_at: the batch says it once, at the top.
    let results = answer["results"].as_array().expect("results");
    assert_eq!(results[2]["status"], "error", "{answer}");
    assert_eq!(results[2]["errors"][0]["field"], "sent_at", "{answer}");
    let stored = read(&app, &results[0]).await;
    assert_eq!(instant(&stored["sent_at"]), instant(&sent_at));
    assert!(results[0].get("clock_skew_ms").is_none(), "once, at the top: {answer}");

    let bad = json!({"sent_at": 17, "events": [event("b9", Duration::zero())]});
    let request = app.post_batch().body(bad.to_string());
    let (_, body) = expect_problem(request, 400, "validation-failed").await;
    assert_eq!(body["errors"][0]["field"], "sent_at", "{body}");
    assert_eq!(app.event_count().await, 2);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_binary_cloudevent_says_it_in_a_header(pool: PgPool) {
    let app = spawn_app(pool).await;
    let sender_now = Utc::now() - Duration::minutes(5);
    let response = app
        .client
        .post(app.url("/v1/events"))
        .bearer_auth(DEV_TOKEN)
        .header(CONTENT_TYPE, "application/json")
        .header("ce-specversion", "1.0")
        .header("ce-id", "A-1")
        .header("ce-source", "/shop")
        .header("ce-type", "order.placed")
        .header("ce-time", rfc3339(sender_now - Duration::seconds(1)))
        .header("Intake-Sent-At", rfc3339(sender_now))
        .body(r#"{"order":1}"#)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.expect("json");
    assert!((299_000..=301_000).contains(&skew_of(&answer)), "{answer}");
    let stored = read(&app, &answer).await;
    assert_eq!(instant(&stored["sent_at"]), instant(&json!(rfc3339(sender_now))));
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn the_skew_histogram_has_no_tenant_label(pool: PgPool) {
    let app = spawn_app(pool).await;
    let answer: Value =
        app.post_event(&event("k1", Duration::minutes(2))).await.json().await.expect("json");
    assert!(answer["clock_skew_ms"].is_i64(), "{answer}");
    let metrics = app.client.get(app.url("/metrics")).send().await.expect("sent");
    let text = metrics.text().await.expect("text");
    let lines: Vec<&str> =
        text.lines().filter(|l| l.starts_with("intake_client_clock_skew_seconds")).collect();
    assert!(
        lines.iter().any(|l| l.starts_with("intake_client_clock_skew_seconds_count 1")),
        "{lines:?}"
    );
    assert!(lines.iter().all(|l| !l.contains("tenant")), "{lines:?}");
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_correction_out_of_range_refuses_only_its_own_item_naming_occurred_at(pool: PgPool) {
    let app = spawn_app(pool).await;
    let body = json!({"sent_at": "9999-12-31T23:59:59Z", "events": [
        {"event_type": "t", "occurred_at": "0001-01-01T00:00:00Z", "idempotency_key": "r-1", "data": {}},
        {"event_type": "t", "occurred_at": "9999-12-31T00:00:00Z", "idempotency_key": "r-2", "data": {}},
    ]});
    let response = app.post_batch().body(body.to_string()).send().await.expect("sent");
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.expect("json");
    assert_eq!(answer["results"][0]["errors"][0]["field"], "occurred_at", "{answer}");
    assert_eq!(answer["results"][1]["status"], "ok", "{answer}");
    // A single event corrected to year 0000 is refused, not stored as an instant no reader takes.
    let single = json!({"event_type": "t", "occurred_at": "0001-01-01T00:00:30Z",
                        "sent_at": rfc3339(Utc::now() + Duration::seconds(120)),
                        "idempotency_key": "r-3", "data": {}});
    let (_, problem) =
        expect_problem(app.post_events().body(single.to_string()), 400, "validation-failed").await;
    assert_eq!(problem["errors"][0]["field"], "occurred_at", "{problem}");
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_sent_at_header_given_twice_is_refused_naming_sent_at(pool: PgPool) {
    let app = spawn_app(pool).await;
    let sender_now = Utc::now() - Duration::minutes(5);
    let binary = app
        .client
        .post(app.url("/v1/events"))
        .bearer_auth(DEV_TOKEN)
        .header(CONTENT_TYPE, "application/json")
        .header("ce-specversion", "1.0")
        .header("ce-id", "twice-1")
        .header("ce-source", "/shop")
        .header("ce-type", "order.placed")
        .header("ce-time", rfc3339(sender_now))
        .header("Intake-Sent-At", rfc3339(sender_now))
        .header("Intake-Sent-At", rfc3339(Utc::now()))
        .body("{}");
    let (_, problem) = expect_problem(binary, 400, "validation-failed").await;
    assert_eq!(problem["errors"][0]["field"], "sent_at", "{problem}");
    assert_eq!(problem["errors"][0]["code"], "duplicate_field", "{problem}");
    // A batch of CloudEvents reads the header too.
    let item = json!({"specversion": "1.0", "id": "twice-2", "source": "/shop",
                      "type": "order.placed", "time": rfc3339(sender_now)});
    let batched = app
        .client
        .post(app.url("/v1/events/batch"))
        .bearer_auth(DEV_TOKEN)
        .header(CONTENT_TYPE, "application/cloudevents-batch+json")
        .header("Intake-Sent-At", rfc3339(sender_now))
        .header("Intake-Sent-At", rfc3339(Utc::now()))
        .body(json!([item]).to_string());
    let (_, problem) = expect_problem(batched, 400, "validation-failed").await;
    assert_eq!(problem["errors"][0]["field"], "sent_at", "{problem}");
    assert_eq!(app.event_count().await, 0);
}

/// An event read back as a structured CloudEvent.
async fn read_as_cloudevent(app: &TestApp, answer: &Value) -> Value {
    let id = answer["event_id"].as_str().unwrap_or_else(|| panic!("no event_id: {answer}"));
    let response = app
        .client
        .get(app.url(&format!("/v1/events/{id}")))
        .bearer_auth(DEV_TOKEN)
        .header(reqwest::header::ACCEPT, "application/cloudevents+json")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    response.json().await.expect("json")
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_corrected_event_reads_back_as_a_cloudevent_with_what_the_sender_reported(pool: PgPool) {
    let app = spawn_app(pool).await;
    // A plain event from a clock 10 minutes behind.
    let sent = event("k1", Duration::minutes(10));
    let answer: Value = app.post_event(&sent).await.json().await.expect("json");
    let back = read_as_cloudevent(&app, &answer).await;
    let plain = read(&app, &answer).await;
    assert_eq!(instant(&back["time"]), instant(&plain["occurred_at"]), "{back}");
    assert_eq!(instant(&back["reportedtime"]), instant(&sent["occurred_at"]), "{back}");
    assert_eq!(instant(&back["senttime"]), instant(&sent["sent_at"]), "{back}");
    // A binary CloudEvent from a clock 5 minutes ahead.
    let sender_now = instant(&json!(rfc3339(Utc::now() + Duration::minutes(5))));
    let response = app
        .client
        .post(app.url("/v1/events"))
        .bearer_auth(DEV_TOKEN)
        .header(CONTENT_TYPE, "application/json")
        .header("ce-specversion", "1.0")
        .header("ce-id", "ahead-1")
        .header("ce-source", "/shop")
        .header("ce-type", "order.placed")
        .header("ce-time", rfc3339(sender_now - Duration::seconds(1)))
        .header("Intake-Sent-At", rfc3339(sender_now))
        .body("{}")
        .send()
        .await
        .expect("sent");
    let answer: Value = response.json().await.expect("json");
    let back = read_as_cloudevent(&app, &answer).await;
    assert_eq!(
        instant(&back["reportedtime"]),
        sender_now - Duration::seconds(1),
        "the time the sender reported: {back}"
    );
    assert_eq!(instant(&back["senttime"]), sender_now, "{back}");
    // Uncorrected: neither attribute.
    let answer: Value =
        app.post_event(&event("k2", Duration::seconds(5))).await.json().await.expect("json");
    let back = read_as_cloudevent(&app, &answer).await;
    assert!(back.get("reportedtime").is_none() && back.get("senttime").is_none(), "{back}");
}
