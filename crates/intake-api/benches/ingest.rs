//! `make bench`: ingest throughput of batches of 100 against single posts, measured in the same
//! run against the same server and database, reported as events per second and as a ratio.
//!
//! The server runs in this process (2 workers) against a fresh database on DATABASE_URL's
//! server, dropped at the end; the clients are concurrent tasks of this process.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use intake_api::settings::Settings;
use intake_api::startup::{Application, Backend};
use intake_storage::PgStore;
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};

const CONCURRENCY: usize = 16;
const SINGLE_EVENTS: usize = 6_000;
const BATCH_SIZE: usize = 100;
const BATCH_EVENTS: usize = 60_000;
const ROUNDS: usize = 3;

fn event(run: &str, i: usize) -> Value {
    json!({
        "event_type": "order.item_added",
        "occurred_at": "2025-12-22T10:30:00Z",
        "idempotency_key": format!("{run}-{i}"),
        "data": {"order_id": format!("o_{i}"), "sku": "SKU-123", "quantity": 2, "price": 19.99}
    })
}

/// Sends `total` events as requests of `per_request` events from CONCURRENCY tasks; returns
/// events per second.
async fn run(base: &str, run_name: &str, total: usize, per_request: usize) -> f64 {
    let client = reqwest::Client::new();
    let next = Arc::new(AtomicUsize::new(0));
    let requests = total / per_request;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (client, next, base, run_name) =
            (client.clone(), Arc::clone(&next), base.to_owned(), run_name.to_owned());
        tasks.push(tokio::spawn(async move {
            loop {
                let r = next.fetch_add(1, Ordering::Relaxed);
                if r >= requests {
                    return;
                }
                let (url, body) = if per_request == 1 {
                    (format!("{base}/v1/events"), event(&run_name, r).to_string())
                } else {
                    let events: Vec<Value> =
                        (0..per_request).map(|i| event(&run_name, r * per_request + i)).collect();
                    (format!("{base}/v1/events/batch"), json!({ "events": events }).to_string())
                };
                let response = client
                    .post(url)
                    .bearer_auth("test_123")
                    .header("Content-Type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .expect("request");
                assert_eq!(response.status(), 200, "{}", response.text().await.unwrap_or_default());
                let _ = response.bytes().await;
            }
        }));
    }
    for task in tasks {
        task.await.expect("client task");
    }
    total as f64 / started.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server = std::env::var("DATABASE_URL").expect("DATABASE_URL (make bench sets it)");
    let name = format!("intake_bench_{}", std::process::id());
    let base = server.rsplit_once('/').map_or(server.as_str(), |(b, _)| b).to_owned();
    let url = format!("{base}/{name}");
    let mut admin = PgConnection::connect(&server).await?;
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await?;

    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config");
    let mut settings = Settings::load_profile(&dir, "local")?;
    settings.server.port = 0;
    settings.server.workers = 2;
    settings.database.url = url.clone();
    let store = PgStore::connect_lazy(&url, &settings.database.pool())?;
    intake_storage::migrate(store.pool()).await?;
    let app = Application::build_with(
        &settings,
        Backend::postgres(store, settings.group_commit.settings()),
    )?;
    let address = format!("http://127.0.0.1:{}", app.port());
    let handle = tokio::spawn(app.run_until_stopped());

    run(&address, "warmup", 500, 1).await;
    let (mut single, mut batch) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        single.push(run(&address, &format!("single-{round}"), SINGLE_EVENTS, 1).await);
        batch.push(run(&address, &format!("batch-{round}"), BATCH_EVENTS, BATCH_SIZE).await);
        println!(
            "round {}: single posts {:>8.0} events/s   batches of {BATCH_SIZE} {:>8.0} events/s",
            round + 1,
            single[round],
            batch[round]
        );
    }
    let (single, batch) = (median(single), median(batch));
    println!(
        "median of {ROUNDS}: single posts {single:.0} events/s; batches of {BATCH_SIZE} {batch:.0} \
         events/s; speed-up {:.1}x",
        batch / single
    );

    handle.abort();
    tokio::time::sleep(Duration::from_millis(200)).await;
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)")).execute(&mut admin).await?;
    Ok(())
}
