//! Concurrent batches that share keys: each key stored once, no batch failing. What a batch
//! means for every store is in the conformance suite.

use std::sync::Arc;

use chrono::Utc;
use intake_domain::{
    BatchOutcome, EventData, EventId, EventStore, EventType, IdempotencyKey, Limits, NewEvent,
    OccurredAt, TenantId,
};
use intake_storage::PgStore;
use serde_json::{json, Value};
use sqlx::PgPool;

fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).expect("valid tenant")
}

fn item(key: &str, data: Value) -> (NewEvent, EventId) {
    let limits = Limits::default();
    let event = NewEvent::new(
        EventType::parse("t").expect("type"),
        OccurredAt::parse("2025-12-22T10:30:00Z", Utc::now(), &limits).expect("time"),
        IdempotencyKey::parse(key).expect("key"),
        EventData::parse(data, &limits).expect("data"),
    );
    (event, EventId::generate(Utc::now()))
}

async fn count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(pool).await.expect("count")
}

#[track_caller]
fn stored(outcome: &BatchOutcome) -> &intake_domain::Ingested {
    match outcome {
        BatchOutcome::Stored(ingested) => ingested,
        other => panic!("expected Stored, got {other:?}"),
    }
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn concurrent_overlapping_batches_store_each_key_once(pool: PgPool) {
    let store = Arc::new(PgStore::new(pool.clone()));
    let mut tasks = Vec::new();
    for t in 0..8 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            // Every batch has keys 0..50 shared with the others, and 10 of its own.
            let mut items: Vec<_> =
                (0..50).map(|i| item(&format!("shared-{i}"), json!({"i": i}))).collect();
            items.extend((0..10).map(|i| item(&format!("own-{t}-{i}"), json!({}))));
            store.ingest_batch(&tenant("acme"), &items).await.expect("batch")
        }));
    }
    let mut created = 0;
    let mut ids_of_shared: Vec<Vec<EventId>> = vec![Vec::new(); 50];
    for task in tasks {
        let outcomes = task.await.expect("task");
        for (i, outcome) in outcomes.iter().enumerate() {
            let ingested = stored(outcome);
            created += usize::from(!ingested.deduplicated);
            if i < 50 {
                ids_of_shared[i].push(ingested.event_id);
            }
        }
    }
    assert_eq!(created, 50 + 8 * 10, "each key is created by exactly one batch");
    for ids in &ids_of_shared {
        assert!(ids.iter().all(|id| *id == ids[0]), "every batch got the one id: {ids:?}");
    }
    assert_eq!(count(&pool).await, 130);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn batches_sharing_keys_in_opposite_orders_all_succeed(pool: PgPool) {
    let store = Arc::new(PgStore::new(pool.clone()));
    let mut tasks = Vec::new();
    for t in 0..4 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut items: Vec<_> =
                (0..200).map(|i| item(&format!("shared-{i}"), json!({"i": i}))).collect();
            if t % 2 == 1 {
                items.reverse();
            }
            store.ingest_batch(&tenant("acme"), &items).await
        }));
    }
    for task in tasks {
        let outcomes = task.await.expect("task").expect("no batch fails");
        assert!(outcomes.iter().all(|o| matches!(o, BatchOutcome::Stored(_))));
    }
    assert_eq!(count(&pool).await, 200);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn twelve_batches_drawing_one_key_set_in_random_orders_all_succeed(pool: PgPool) {
    // A connection per batch, so that all twelve run at once.
    let settings = intake_storage::PoolSettings {
        max_connections: 12,
        acquire_timeout: std::time::Duration::from_secs(30),
    };
    let store = Arc::new(PgStore::connect_lazy_with((*pool.connect_options()).clone(), &settings));
    let mut tasks = Vec::new();
    for seed in 0..12u64 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut order: Vec<usize> = (0..400).collect();
            fastrand::Rng::with_seed(seed).shuffle(&mut order);
            let items: Vec<_> =
                order.iter().map(|i| item(&format!("shared-{i}"), json!({"i": i}))).collect();
            store.ingest_batch(&tenant("acme"), &items).await
        }));
    }
    let started = std::time::Instant::now();
    let mut created = 0;
    for task in tasks {
        let outcomes = task.await.expect("task").expect("no batch fails");
        assert!(outcomes.iter().all(|o| matches!(o, BatchOutcome::Stored(_))));
        created += outcomes.iter().filter(|o| !stored(o).deduplicated).count();
    }
    assert_eq!(created, 400, "each key created once across the batches");
    assert_eq!(store.deadlocks(), 0, "rows are locked in one order: no deadlock to retry");
    assert_eq!(count(&pool).await, 400);
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "{:?}", started.elapsed());
}
