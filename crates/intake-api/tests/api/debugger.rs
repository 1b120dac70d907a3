//! The live debugger's stream (contract §13) over real HTTP: entries as requests end, never a
//! rejected body, one tenant's only, another server's too, and a reader that falls behind is
//! told what it missed without slowing ingest. And the page.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::header::CONTENT_TYPE;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::{create_token, spawn_app, DEV_TOKEN};
use crate::process::{database_url, ServeProcess};

/// An open stream, read into text as it arrives.
struct Stream {
    body: std::pin::Pin<
        Box<dyn futures_util::Stream<Item = reqwest::Result<actix_web::web::Bytes>> + Send>,
    >,
    text: String,
}

impl Stream {
    async fn open(base: &str, token: &str) -> Self {
        let response = reqwest::Client::new()
            .get(format!("{base}/v1/debugger/stream"))
            .bearer_auth(token)
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()),
            Some("text/event-stream")
        );
        let mut stream = Self { body: Box::pin(response.bytes_stream()), text: String::new() };
        stream.until(": connected", Duration::from_secs(5)).await;
        stream
    }

    /// Reads until the text holds `needle` (panics after `limit`).
    async fn until(&mut self, needle: &str, limit: Duration) {
        if !self.try_until(needle, limit).await {
            panic!("{needle:?} never came; the stream said: {}", self.text);
        }
    }

    /// Reads until the text holds `needle`; `false` when it did not within `limit`.
    async fn try_until(&mut self, needle: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while !self.text.contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.body.next()).await {
                Ok(Some(Ok(chunk))) => self.text.push_str(&String::from_utf8_lossy(&chunk)),
                _ => return false,
            }
        }
        true
    }

    /// Every entry of a kind read so far, as JSON.
    fn entries(&self, kind: &str) -> Vec<Value> {
        self.text
            .split("\n\n")
            .filter(|block| block.starts_with(&format!("event: {kind}\n")))
            .filter_map(|block| block.lines().find_map(|l| l.strip_prefix("data: ")))
            .map(|data| serde_json::from_str(data).expect("json"))
            .collect()
    }
}

async fn post(base: &str, token: &str, body: String) -> u16 {
    reqwest::Client::new()
        .post(format!("{base}/v1/events"))
        .bearer_auth(token)
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .expect("sent")
        .status()
        .as_u16()
}

fn event(key: &str) -> String {
    json!({"event_type": "debug.seen", "occurred_at": "2025-12-22T10:30:00Z",
           "idempotency_key": key, "data": {"plan": "pro"}})
    .to_string()
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn the_stream_shows_accepted_and_rejected_requests_of_its_tenant_only(pool: PgPool) {
    let (acme, _) = create_token(&pool, "acme", intake_domain::Scope::ALL.to_vec()).await;
    let app = spawn_app(pool).await;
    let mut dev_stream = Stream::open(&app.address, DEV_TOKEN).await;
    let mut acme_stream = Stream::open(&app.address, &acme).await;

    assert_eq!(post(&app.address, DEV_TOKEN, event("d-1")).await, 200);
    assert_eq!(post(&app.address, DEV_TOKEN, event("d-1")).await, 200);
    let marker = "very-secret-body-7f3a";
    let rejected = json!({"event_type": "", "occurred_at": "2025-12-22T10:30:00Z",
                          "idempotency_key": "d-2", "data": {"secret": marker}});
    assert_eq!(post(&app.address, DEV_TOKEN, rejected.to_string()).await, 400);
    assert_eq!(post(&app.address, &acme, event("a-1")).await, 200);

    dev_stream.until("event: rejected", Duration::from_secs(5)).await;
    let accepted = dev_stream.entries("accepted");
    assert_eq!(accepted.len(), 2, "{}", dev_stream.text);
    assert_eq!(accepted[0]["idempotency_key"], "d-1");
    assert_eq!(accepted[0]["event_type"], "debug.seen");
    assert_eq!(accepted[0]["data"], json!({"plan": "pro"}));
    assert_eq!(accepted[0]["deduplicated"], false);
    assert_eq!(accepted[1]["deduplicated"], true);
    for field in ["event_id", "occurred_at", "received_at"] {
        assert!(accepted[0][field].is_string(), "{field}");
    }
    let rejections = dev_stream.entries("rejected");
    assert_eq!(rejections[0]["status"], 400);
    assert_eq!(rejections[0]["type"], "/docs/troubleshooting#validation-failed");
    assert_eq!(rejections[0]["errors"][0]["field"], "event_type");
    assert!(rejections[0]["request_id"].is_string() && rejections[0]["at"].is_string());
    assert!(!dev_stream.text.contains(marker), "a rejected body reached the stream");

    acme_stream.until("a-1", Duration::from_secs(5)).await;
    assert!(!acme_stream.text.contains("d-1"), "another tenant's traffic: {}", acme_stream.text);
    assert_eq!(acme_stream.entries("accepted").len(), 1);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn the_stream_needs_a_token_with_the_read_scope(pool: PgPool) {
    let (write_only, _) = create_token(&pool, "dev", vec![intake_domain::Scope::EventsWrite]).await;
    let app = spawn_app(pool).await;
    let url = app.url("/v1/debugger/stream");
    assert_eq!(app.client.get(&url).send().await.expect("sent").status(), 401);
    assert_eq!(
        app.client.get(&url).bearer_auth(&write_only).send().await.expect("sent").status(),
        403
    );
    let page = app.client.get(app.url("/debugger")).send().await.expect("sent");
    assert_eq!(page.status(), 200);
    // The page takes a token: no other site may frame it.
    let csp = page.headers()["content-security-policy"].to_str().expect("ascii").to_owned();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let html = page.text().await.expect("html");
    assert!(html.contains("/v1/debugger/stream") && html.contains("Authorization"));
    assert!(!html.contains(DEV_TOKEN), "the page holds no token");
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_reader_that_falls_behind_is_told_and_never_slows_ingest(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut stream = Stream::open(&app.address, DEV_TOKEN).await;
    // 3,000 events of 8 KiB while the reader reads nothing: more than the sockets between hold,
    // so the server's copy of the stream stops being drained and its buffer overflows.
    let pad = "x".repeat(8 * 1024);
    for chunk in 0..6 {
        let events: Vec<Value> = (0..500)
            .map(|i| {
                json!({"event_type": "bulk", "occurred_at": "2025-12-22T10:30:00Z",
                            "idempotency_key": format!("b-{chunk}-{i}"), "data": {"pad": pad}})
            })
            .collect();
        let response = app
            .client
            .post(app.url("/v1/events/batch"))
            .bearer_auth(DEV_TOKEN)
            .header(CONTENT_TYPE, "application/json")
            .body(json!({"events": events}).to_string())
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 200, "ingest went on");
    }
    assert_eq!(app.event_count().await, 3000);
    stream.until("event: gap", Duration::from_secs(30)).await;
    let missed: u64 = stream.entries("gap").iter().filter_map(|g| g["missed"].as_u64()).sum();
    assert!(missed > 0, "{missed}");
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn another_servers_requests_show_too(pool: PgPool) {
    let url = database_url(&pool).await;
    let (a, b) = (ServeProcess::start(&url, None).await, ServeProcess::start(&url, None).await);
    let mut stream = Stream::open(&a.base, DEV_TOKEN).await;
    // B hears of A's watcher within moments; until then it builds no entries.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut n = 0;
    loop {
        n += 1;
        assert_eq!(post(&b.base, DEV_TOKEN, event(&format!("b-{n}"))).await, 200);
        let rejected = json!({"event_type": "x", "occurred_at": "soon",
                              "idempotency_key": format!("r-{n}"), "data": {}});
        assert_eq!(post(&b.base, DEV_TOKEN, rejected.to_string()).await, 400);
        if stream.try_until("event: rejected", Duration::from_millis(300)).await {
            break;
        }
        assert!(Instant::now() < deadline, "B's requests never showed on A: {}", stream.text);
    }
    stream.until("event: rejected", Duration::from_secs(5)).await;
    assert!(stream.text.contains("event: accepted"), "{}", stream.text);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn sigterm_ends_open_streams_rather_than_waiting_out_the_grace_period(pool: PgPool) {
    let url = database_url(&pool).await;
    let settings = [("INTAKE__SERVER__SHUTDOWN_GRACE_SECS", "120")];
    let server = ServeProcess::start_with(&url, crate::helpers::free_port(), None, &settings).await;
    let mut stream = Stream::open(&server.base, DEV_TOKEN).await;
    server.sigterm();
    // The stream ends within seconds, not after the 120 s grace period.
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(chunk)) = stream.body.next().await {
            stream.text.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream stayed open after SIGTERM: {}", stream.text);
    let (exit, logs) = server.wait();
    assert!(exit.success(), "{logs}");
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn an_event_corrected_for_the_senders_clock_shows_what_was_reported(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut stream = Stream::open(&app.address, DEV_TOKEN).await;
    let sent_at = chrono::Utc::now() - chrono::Duration::minutes(10);
    let body = json!({"event_type": "debug.seen", "occurred_at": "2025-12-22T10:30:00Z",
                      "sent_at": sent_at.to_rfc3339(), "idempotency_key": "c-1", "data": {}});
    assert_eq!(post(&app.address, DEV_TOKEN, body.to_string()).await, 200);
    stream.until("event: accepted", Duration::from_secs(5)).await;
    let accepted = stream.entries("accepted");
    assert_eq!(accepted[0]["occurred_at_reported"], "2025-12-22T10:30:00Z", "{}", stream.text);
    assert!(accepted[0]["sent_at"].is_string(), "{}", stream.text);
    assert_ne!(accepted[0]["occurred_at"], "2025-12-22T10:30:00Z", "corrected: {}", stream.text);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_stream_ends_within_a_second_of_its_token_being_revoked(pool: PgPool) {
    use intake_domain::TokenStore;
    let (reader, reader_id) =
        create_token(&pool, "acme", vec![intake_domain::Scope::EventsRead]).await;
    let (writer, _) = create_token(&pool, "acme", intake_domain::Scope::ALL.to_vec()).await;
    let store = intake_storage::PgStore::new(pool.clone());
    let app = spawn_app(pool).await;
    let mut stream = Stream::open(&app.address, &reader).await;
    assert_eq!(post(&app.address, &writer, event("before")).await, 200);
    stream.until("before", Duration::from_secs(5)).await;

    assert!(store.revoke(reader_id).await.expect("revoked"));
    let revoked_at = Instant::now();
    // The stream must end by itself: read until the server closes it.
    let ended = loop {
        assert!(revoked_at.elapsed() < Duration::from_secs(3), "still open: {}", stream.text);
        assert_eq!(
            post(&app.address, &writer, event(&format!("after-{}", stream.text.len()))).await,
            200
        );
        match tokio::time::timeout(Duration::from_millis(100), stream.body.next()).await {
            Ok(None) | Ok(Some(Err(_))) => break revoked_at.elapsed(),
            Ok(Some(Ok(chunk))) => stream.text.push_str(&String::from_utf8_lossy(&chunk)),
            Err(_) => {}
        }
    };
    println!("the stream ended {} ms after the revocation", ended.as_millis());
    assert!(ended < Duration::from_millis(1500), "ended after {ended:?}");
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn streams_are_capped_per_token_and_per_server_with_a_clear_problem(pool: PgPool) {
    let (other, _) = create_token(&pool, "acme", vec![intake_domain::Scope::EventsRead]).await;
    let mut settings = crate::helpers::local_settings();
    settings.debugger.max_streams_per_token = 2;
    settings.debugger.max_streams = 3;
    let app = crate::helpers::spawn_app_with(pool, settings).await;
    let open = |token: &str| {
        reqwest::Client::new()
            .get(format!("{}/v1/debugger/stream", app.address))
            .bearer_auth(token.to_owned())
            .send()
    };
    let first = open(DEV_TOKEN).await.expect("sent");
    let second = open(DEV_TOKEN).await.expect("sent");
    assert_eq!((first.status().as_u16(), second.status().as_u16()), (200, 200));
    let third = open(DEV_TOKEN).await.expect("sent");
    assert_eq!(third.status(), 429, "a third stream of one token");
    let problem: Value = third.json().await.expect("json");
    assert_eq!(problem["type"], "/docs/troubleshooting#too-many-streams", "{problem}");
    let of_other = open(&other).await.expect("sent");
    assert_eq!(of_other.status(), 200, "another token has streams of its own");
    let fourth = open(&other).await.expect("sent");
    assert_eq!(fourth.status(), 503, "the server holds 3 streams");
    assert!(fourth.headers().contains_key("retry-after"));
    let problem: Value = fourth.json().await.expect("json");
    assert_eq!(problem["type"], "/docs/troubleshooting#debugger-full", "{problem}");
    // A stream that ends gives its place back.
    drop(first);
    let dropped = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let again = open(DEV_TOKEN).await.expect("sent");
        if again.status() == 200 {
            println!("place given back after {} ms", dropped.elapsed().as_millis());
            break;
        }
        assert!(Instant::now() < deadline, "the place was not given back: {}", again.status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
