//! A crash under load: clients post unique events with retries while `intake serve` is killed
//! with SIGKILL mid-load and restarted on the same port, twice. Afterwards every acknowledged
//! event exists exactly once, and the tenant holds one event per key sent.

use std::time::Duration;

use sqlx::PgPool;

use crate::helpers::free_port;
use crate::load::{assert_stored_exactly_once, post_with_retries};
use crate::process::{database_url, ServeProcess};

const CLIENTS: usize = 8;
const PER_CLIENT: usize = 150;

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn sigkill_under_load_loses_nothing_acknowledged_and_doubles_nothing(pool: PgPool) {
    let url = database_url(&pool).await;
    let port = free_port();
    let mut server = ServeProcess::start_on(&url, port, None).await;
    let base = server.base.clone();
    let load = tokio::spawn(async move {
        post_with_retries(&base, CLIENTS, PER_CLIENT, "crash", Duration::from_secs(120)).await
    });
    let mut stored_at_kills = Vec::new();
    for _ in 0..2 {
        // Let the load run until a good share of it is stored, then crash mid-stream.
        let before = stored(&pool).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while stored(&pool).await < before + 200 {
            assert!(std::time::Instant::now() < deadline, "the load made no progress");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server.kill9();
        stored_at_kills.push(stored(&pool).await);
        tokio::time::sleep(Duration::from_millis(300)).await;
        server = ServeProcess::start_on(&url, port, None).await;
    }
    let outcome = load.await.expect("load");
    server.sigterm();
    let _ = server.wait();

    let rows = assert_stored_exactly_once(&pool, "crash", &outcome).await;
    println!(
        "crash: {} keys, {} requests sent, {} unanswered, {} acknowledged, {} rows; \
         rows at the kills: {stored_at_kills:?}",
        CLIENTS * PER_CLIENT,
        outcome.sent,
        outcome.unanswered,
        outcome.acknowledged.len(),
        rows
    );
    assert!(outcome.unanswered > 0, "the kills never interrupted a request: {outcome:?}");
    assert!(outcome.unexpected_refusals().is_empty(), "{:?}", outcome.refusals);
    assert_eq!(outcome.acknowledged.len(), CLIENTS * PER_CLIENT, "every key acknowledged");
    assert_eq!(rows, CLIENTS * PER_CLIENT, "one event per key sent");
}

async fn stored(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(pool).await.expect("count")
}
