//! `intake relay` against a real NATS with JetStream (`make test` finds or starts one:
//! scripts/nats): order per tenant, events stored while the relay was down, kill -9 mid-stream
//! and two relays at once, still each event once in the stream.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use intake_relay::testing::{nats_url, TestStream};
use reqwest::header::CONTENT_TYPE;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::{create_token, free_port, DEV_TOKEN};
use crate::process::{database_url, ServeProcess};

/// A stream and subject prefix of the test's own, on the shared NATS.
struct Stream(TestStream);

impl std::ops::Deref for Stream {
    type Target = TestStream;

    fn deref(&self) -> &TestStream {
        &self.0
    }
}

impl Stream {
    fn new() -> Self {
        Self(TestStream::default())
    }

    fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("INTAKE__RELAY__NATS_URL", nats_url()),
            ("INTAKE__RELAY__STREAM", self.name.clone()),
            ("INTAKE__RELAY__SUBJECT_PREFIX", self.prefix.clone()),
            ("INTAKE__RELAY__CLAIM_SECS", "1".into()),
            ("INTAKE__RELAY__POLL_MS", "50".into()),
        ]
    }

    /// Waits until the stream holds at least `n` messages; how many it holds then.
    async fn count_when_at_least(&self, n: usize) -> usize {
        let client = async_nats::connect(nats_url()).await.expect("nats");
        let js = jetstream::new(client);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut stream) = js.get_stream(&self.name).await {
                let count = stream.info().await.expect("info").state.messages as usize;
                if count >= n {
                    return count;
                }
            }
            assert!(Instant::now() < deadline, "the relay published nothing");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

async fn post(client: &reqwest::Client, base: &str, token: &str, key: &str, n: usize) {
    let response = client
        .post(format!("{base}/v1/events"))
        .bearer_auth(token)
        .header(CONTENT_TYPE, "application/json")
        .body(
            json!({"event_type": if n % 2 == 0 { "order.placed" } else { "order.paid" },
                     "occurred_at": "2025-12-22T10:30:00Z", "idempotency_key": key,
                     "data": {"n": n}})
            .to_string(),
        )
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
}

fn env<'a>(settings: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    settings.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn every_event_reaches_jetstream_once_in_feed_order_per_tenant(pool: PgPool) {
    let (acme, _) = create_token(&pool, "acme", intake_domain::Scope::ALL.to_vec()).await;
    let url = database_url(&pool).await;
    let server = ServeProcess::start(&url, None).await;
    let client = reqwest::Client::new();
    // Stored while no relay runs.
    for n in 0..20 {
        post(&client, &server.base, DEV_TOKEN, &format!("dev-{n}"), n).await;
        post(&client, &server.base, &acme, &format!("acme-{n}"), n).await;
    }
    let stream = Stream::new();
    let settings = stream.settings();
    let relay = ServeProcess::relay(&url, free_port(), &env(&settings)).await;
    for n in 20..30 {
        post(&client, &server.base, DEV_TOKEN, &format!("dev-{n}"), n).await;
        post(&client, &server.base, &acme, &format!("acme-{n}"), n).await;
    }
    let messages = stream.messages(60, Duration::from_secs(60)).await;
    assert_eq!(messages.len(), 60, "each event once");
    let ids: HashSet<&String> = messages.iter().map(|(_, id, _)| id).collect();
    assert_eq!(ids.len(), 60);
    let mut per_tenant: HashMap<String, Vec<u64>> = HashMap::new();
    for (subject, id, body) in &messages {
        let parts: Vec<&str> = subject.splitn(3, '.').collect();
        assert_eq!(parts[0], stream.prefix);
        assert_eq!(parts[2], body["event_type"], "{subject}");
        assert_eq!(&body["event_id"], id, "the body is the event as the API reads it");
        per_tenant
            .entry(parts[1].to_owned())
            .or_default()
            .push(body["data"]["n"].as_u64().expect("n"));
    }
    for (tenant, order) in &per_tenant {
        assert_eq!(order, &(0..30).collect::<Vec<u64>>(), "{tenant} in feed order");
    }
    assert_eq!(per_tenant.len(), 2);
    let metrics = reqwest::get(format!("{}/metrics", relay.base))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("intake_relay_published_events_total{tenant=\"acme\"} 30"),
        "{metrics}"
    );
    relay.sigterm();
    let (exit, logs) = relay.wait();
    assert!(exit.success(), "SIGTERM exits 0: {logs}");
    stream.delete().await;
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn kill_9_mid_stream_and_two_relays_still_publish_each_event_once(pool: PgPool) {
    let url = database_url(&pool).await;
    let server = ServeProcess::start(&url, None).await;
    let client = reqwest::Client::new();
    let total = 5000;
    let batch: Vec<Value> = (0..total)
        .map(|n| {
            json!({"event_type": "bulk.item", "occurred_at": "2025-12-22T10:30:00Z",
                        "idempotency_key": format!("k-{n}"), "data": {"n": n}})
        })
        .collect();
    for chunk in batch.chunks(500) {
        let response = client
            .post(format!("{}/v1/events/batch", server.base))
            .bearer_auth(DEV_TOKEN)
            .header(CONTENT_TYPE, "application/json")
            .body(json!({"events": chunk}).to_string())
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 200);
    }
    let stream = Stream::new();
    let mut settings = stream.settings();
    settings.push(("INTAKE__RELAY__PAGE_SIZE", "20".into()));
    let first = ServeProcess::relay(&url, free_port(), &env(&settings)).await;
    // Kill it mid-stream, once it has published some of the events.
    let at_kill = stream.count_when_at_least(100).await;
    first.kill9();
    assert!(at_kill < total, "the relay finished before it could be killed ({at_kill})");
    // Two relays at once: one of them takes the tenant over.
    let second = ServeProcess::relay(&url, free_port(), &env(&settings)).await;
    let restarted = ServeProcess::relay(&url, free_port(), &env(&settings)).await;
    let messages = stream.messages(total, Duration::from_secs(60)).await;
    let ids: HashSet<&String> = messages.iter().map(|(_, id, _)| id).collect();
    println!(
        "relay: killed at {at_kill} messages; then {} messages, {} distinct ids, {total} events",
        messages.len(),
        ids.len()
    );
    assert_eq!(ids.len(), total, "nothing lost");
    assert_eq!(messages.len(), total, "nothing doubled");
    let order: Vec<u64> =
        messages.iter().map(|(_, _, b)| b["data"]["n"].as_u64().expect("n")).collect();
    assert_eq!(order, (0..total as u64).collect::<Vec<_>>(), "in feed order");
    drop(second);
    drop(restarted);
    stream.delete().await;
}

/// A `nats-server -js` of the test's own, with a store that outlives a restart.
struct PrivateNats {
    port: u16,
    store: std::path::PathBuf,
    child: Option<std::process::Child>,
}

impl PrivateNats {
    fn new() -> Self {
        let store =
            std::env::temp_dir().join(format!("intake-nats-{}", uuid::Uuid::new_v4().simple()));
        let mut nats = Self { port: free_port(), store, child: None };
        nats.start();
        nats
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn start(&mut self) {
        let child = std::process::Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(&self.store)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run nats-server ({e}); install it (Debian: apt-get install nats-server)"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

async fn relay_metric(relay: &ServeProcess, line_start: &str) -> i64 {
    let text = reqwest::get(format!("{}/metrics", relay.base))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .find_map(|l| l.strip_prefix(line_start).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0)
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn nats_stopped_and_restarted_loses_nothing_and_shows_the_lag(pool: PgPool) {
    let mut nats = PrivateNats::new();
    let url = database_url(&pool).await;
    let server = ServeProcess::start(&url, None).await;
    let client = reqwest::Client::new();
    let stream = Stream::new();
    let mut settings = stream.settings();
    settings[0].1 = nats.url();
    let relay = ServeProcess::relay(&url, free_port(), &env(&settings)).await;
    for n in 0..10 {
        post(&client, &server.base, DEV_TOKEN, &format!("before-{n}"), n).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while relay_metric(&relay, "intake_relay_published_events_total{tenant=\"dev\"}").await < 10 {
        assert!(Instant::now() < deadline, "the first events were not published");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    nats.stop();
    for n in 10..40 {
        post(&client, &server.base, DEV_TOKEN, &format!("during-{n}"), n).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let lag = loop {
        let lag = relay_metric(&relay, "intake_relay_lag_events{tenant=\"dev\"}").await;
        if lag >= 30 {
            break lag;
        }
        assert!(Instant::now() < deadline, "the lag never showed: {lag}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(relay_metric(&relay, "intake_relay_publish_errors_total").await >= 1);

    nats.start();
    let deadline = Instant::now() + Duration::from_secs(60);
    while relay_metric(&relay, "intake_relay_lag_events{tenant=\"dev\"}").await > 0
        || relay_metric(&relay, "intake_relay_published_events_total{tenant=\"dev\"}").await < 40
    {
        assert!(Instant::now() < deadline, "the relay did not catch up after NATS came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let client = async_nats::connect(nats.url()).await.expect("nats");
    let mut js_stream = jetstream::new(client).get_stream(&stream.name).await.expect("stream");
    let held = js_stream.info().await.expect("info").state.messages;
    println!("nats outage: lag {lag} while down; {held} messages after it came back");
    assert_eq!(held, 40, "nothing lost, nothing doubled");
    drop(relay);
}
