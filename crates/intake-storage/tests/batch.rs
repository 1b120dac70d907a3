//! Storing batches: one statement for the batch, the same once-only promise as single events.

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
async fn a_batch_stores_each_new_event_under_its_id_in_order(pool: PgPool) {
    let store = PgStore::new(pool.clone());
    let items: Vec<_> = (0..5).map(|i| item(&format!("k{i}"), json!({"i": i}))).collect();
    let outcomes = store.ingest_batch(&tenant("acme"), &items).await.expect("batch");
    assert_eq!(outcomes.len(), 5);
    for ((_, id), outcome) in items.iter().zip(&outcomes) {
        let ingested = stored(outcome);
        assert_eq!(ingested.event_id, *id);
        assert!(!ingested.deduplicated);
    }
    let order: Vec<String> = sqlx::query_scalar("SELECT idempotency_key FROM events ORDER BY seq")
        .fetch_all(&pool)
        .await
        .expect("rows");
    assert_eq!(order, ["k0", "k1", "k2", "k3", "k4"]);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_batch_deduplicates_against_earlier_events_and_reports_reused_keys(pool: PgPool) {
    let store = PgStore::new(pool.clone());
    let earlier = store
        .ingest(&tenant("acme"), &item("old", json!({"v": 1})).0, EventId::generate(Utc::now()))
        .await
        .expect("earlier");
    let other = store
        .ingest(&tenant("acme"), &item("taken", json!({"v": 1})).0, EventId::generate(Utc::now()))
        .await
        .expect("other");
    let items =
        vec![item("new", json!({})), item("old", json!({"v": 1})), item("taken", json!({"v": 2}))];
    let outcomes = store.ingest_batch(&tenant("acme"), &items).await.expect("batch");
    assert!(!stored(&outcomes[0]).deduplicated);
    let replayed = stored(&outcomes[1]);
    assert!(replayed.deduplicated);
    assert_eq!(replayed.event_id, earlier.event_id);
    assert_eq!(replayed.received_at, earlier.received_at);
    assert_eq!(outcomes[2], BatchOutcome::KeyReused { original: other.event_id });
    assert_eq!(count(&pool).await, 3);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_key_repeated_within_a_batch_behaves_like_a_retry(pool: PgPool) {
    let store = PgStore::new(pool.clone());
    let items = vec![
        item("dup", json!({"v": 1})),
        item("x", json!({})),
        item("dup", json!({"v": 1})),
        item("dup", json!({"v": 2})),
    ];
    let outcomes = store.ingest_batch(&tenant("acme"), &items).await.expect("batch");
    let first = stored(&outcomes[0]);
    assert!(!first.deduplicated);
    let again = stored(&outcomes[2]);
    assert!(again.deduplicated);
    assert_eq!(again.event_id, first.event_id);
    assert_eq!(outcomes[3], BatchOutcome::KeyReused { original: first.event_id });
    assert_eq!(count(&pool).await, 2);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn keys_in_a_batch_are_scoped_to_the_tenant(pool: PgPool) {
    let store = PgStore::new(pool.clone());
    store.ingest_batch(&tenant("acme"), &[item("k", json!({"a": 1}))]).await.expect("acme");
    let outcomes =
        store.ingest_batch(&tenant("globex"), &[item("k", json!({"b": 2}))]).await.expect("globex");
    assert!(!stored(&outcomes[0]).deduplicated);
    assert_eq!(count(&pool).await, 2);
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
async fn a_thousand_items_go_in_one_batch(pool: PgPool) {
    let store = PgStore::new(pool.clone());
    let items: Vec<_> = (0..1000).map(|i| item(&format!("k{i}"), json!({"i": i}))).collect();
    let outcomes = store.ingest_batch(&tenant("acme"), &items).await.expect("batch");
    assert_eq!(outcomes.iter().filter(|o| !stored(o).deduplicated).count(), 1000);
    assert_eq!(count(&pool).await, 1000);
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
