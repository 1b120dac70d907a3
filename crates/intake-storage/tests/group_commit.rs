//! Group commit against a real database: concurrent single events share statements, each
//! request still gets its own row, and grouping changes nothing a client can see.
//!
//! Several tests hold a writer still on purpose: another transaction inserts a key and keeps
//! its row lock, a request with that key makes the writer's statement wait on it, and what is
//! sent meanwhile queues up behind it as one group.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use intake_domain::{
    EventData, EventId, EventStore, EventType, IdempotencyKey, IngestError, Ingested, Limits,
    NewEvent, OccurredAt, TenantId,
};
use intake_storage::{GroupCommit, GroupCommitSettings, PgStore};
use serde_json::{json, Value};
use sqlx::{PgPool, Postgres, Transaction};
use tokio::task::JoinHandle;

fn tenant() -> TenantId {
    TenantId::parse("acme").expect("valid tenant")
}

fn event(key: &str, data: Value) -> NewEvent {
    let limits = Limits::default();
    NewEvent::new(
        EventType::parse("t").expect("type"),
        OccurredAt::parse("2025-12-22T10:30:00Z", Utc::now(), &limits).expect("time"),
        IdempotencyKey::parse(key).expect("key"),
        EventData::parse(data, &limits).expect("data"),
    )
}

fn group_commit(pool: &PgPool, writers: usize, queue_bound: usize) -> Arc<GroupCommit> {
    let settings = GroupCommitSettings { writers, max_group: 256, queue_bound };
    Arc::new(GroupCommit::start(PgStore::new(pool.clone()), settings))
}

/// Ingests through the group in a task of its own; its id and its answer.
fn send(
    store: &Arc<GroupCommit>,
    key: &str,
    data: Value,
) -> (EventId, JoinHandle<Result<Ingested, IngestError>>) {
    let (store, event, id) = (Arc::clone(store), event(key, data), EventId::generate(Utc::now()));
    (id, tokio::spawn(async move { store.ingest(&tenant(), &event, id).await }))
}

/// Polls until `condition` holds, failing after 10 s.
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, condition: impl Fn() -> F) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition().await {
        assert!(Instant::now() < deadline, "{what} did not happen within 10 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Inserts `key` in a transaction left open: its row lock holds back any statement inserting
/// the same key until the transaction ends.
async fn hold_key(pool: &PgPool, key: &str) -> Transaction<'static, Postgres> {
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query(
        "INSERT INTO event_keys (generation, tenant_id, idempotency_key, event_id, received_at,
                                 fingerprint)
         VALUES ((SELECT max(generation) FROM event_key_generations), 'acme', $1,
                 gen_random_uuid(), now(), decode(repeat('00', 32), 'hex'))",
    )
    .bind(key)
    .execute(&mut *tx)
    .await
    .expect("insert the held key");
    tx
}

/// Sends a request with the held key and waits until a writer's statement is stuck on it.
async fn stall_the_writer(
    pool: &PgPool,
    store: &Arc<GroupCommit>,
    held: &str,
) -> JoinHandle<Result<Ingested, IngestError>> {
    let (_, stalled) = send(store, held, json!({}));
    eventually("a writer waiting on the held row", || async {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(pool)
        .await
        .expect("pg_stat_activity");
        waiting > 0
    })
    .await;
    stalled
}

async fn count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(pool).await.expect("count")
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn concurrent_single_events_share_statements_and_each_gets_its_own_row(pool: PgPool) {
    let store = group_commit(&pool, 2, 10_000);
    let requests: Vec<_> =
        (0..300).map(|i| send(&store, &format!("k{i}"), json!({"i": i}))).collect();
    for (id, answer) in requests {
        let ingested = answer.await.expect("task").expect("stored");
        assert_eq!(ingested.event_id, id, "each request is answered from its own row");
        assert!(!ingested.deduplicated);
    }
    let stats = store.stats();
    assert_eq!(stats.events, 300);
    assert!(stats.groups < 300, "300 requests took {} statements", stats.groups);
    assert_eq!(stats.fallbacks, 0);
    assert_eq!(count(&pool).await, 300);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_lone_request_is_stored_at_once_by_an_idle_writer(pool: PgPool) {
    let store = group_commit(&pool, 1, 10);
    let (id, answer) = send(&store, "alone", json!({}));
    let ingested = tokio::time::timeout(Duration::from_secs(5), answer)
        .await
        .expect("answered without waiting for company")
        .expect("task")
        .expect("stored");
    assert_eq!(ingested.event_id, id);
    assert_eq!(store.stats().groups, 1);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn one_key_twice_in_a_group_is_a_retry_and_another_payload_is_refused(pool: PgPool) {
    let store = group_commit(&pool, 1, 100);
    let held = hold_key(&pool, "held").await;
    let stalled = stall_the_writer(&pool, &store, "held").await;
    let (first_id, first) = send(&store, "dup", json!({"v": 1}));
    eventually("the first queued", || async { store.stats().queued == 1 }).await;
    let (_, again) = send(&store, "dup", json!({"v": 1}));
    let (_, other) = send(&store, "dup", json!({"v": 2}));
    eventually("all three queued", || async { store.stats().queued == 3 }).await;
    held.rollback().await.expect("release the held key");

    assert!(!stalled.await.expect("task").expect("stored").deduplicated);
    let first = first.await.expect("task").expect("stored");
    assert_eq!(first.event_id, first_id);
    assert!(!first.deduplicated);
    let again = again.await.expect("task").expect("a retry");
    assert_eq!(again.event_id, first_id);
    assert!(again.deduplicated);
    match other.await.expect("task") {
        Err(IngestError::KeyReused { original }) => assert_eq!(original, first_id),
        answer => panic!("expected KeyReused, got {answer:?}"),
    }
    assert_eq!(store.stats().groups, 2, "the three requests shared one statement");
    assert_eq!(count(&pool).await, 2);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_row_the_database_refuses_fails_only_its_own_request(pool: PgPool) {
    sqlx::query("ALTER TABLE events ADD CONSTRAINT no_poison CHECK (idempotency_key <> 'poison')")
        .execute(&pool)
        .await
        .expect("add a constraint one key breaks");
    let store = group_commit(&pool, 1, 100);
    let held = hold_key(&pool, "held").await;
    let stalled = stall_the_writer(&pool, &store, "held").await;
    let (good_id, good) = send(&store, "good", json!({}));
    let (_, poison) = send(&store, "poison", json!({}));
    let (other_id, other) = send(&store, "other", json!({}));
    eventually("the group queued", || async { store.stats().queued == 3 }).await;
    held.rollback().await.expect("release the held key");

    stalled.await.expect("task").expect("stored");
    assert_eq!(good.await.expect("task").expect("stored").event_id, good_id);
    assert_eq!(other.await.expect("task").expect("stored").event_id, other_id);
    assert!(poison.await.expect("task").is_err(), "the offending row gets the error");
    assert_eq!(store.stats().fallbacks, 1);
    assert_eq!(count(&pool).await, 3);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_request_cancelled_while_queued_is_left_out_and_holds_up_nothing(pool: PgPool) {
    let store = group_commit(&pool, 1, 100);
    let held = hold_key(&pool, "held").await;
    let stalled = stall_the_writer(&pool, &store, "held").await;
    let (gone_id, gone) = send(&store, "gone", json!({}));
    eventually("the request queued", || async { store.stats().queued == 1 }).await;
    gone.abort();
    assert!(gone.await.expect_err("aborted").is_cancelled());
    let (kept_id, kept) = send(&store, "kept", json!({}));
    held.rollback().await.expect("release the held key");

    stalled.await.expect("task").expect("stored");
    assert_eq!(kept.await.expect("task").expect("stored").event_id, kept_id);
    assert!(store.get(&tenant(), gone_id).await.expect("get").is_none(), "nobody waits for it");
    assert_eq!(count(&pool).await, 2);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_full_queue_refuses_at_once(pool: PgPool) {
    let store = group_commit(&pool, 1, 2);
    let held = hold_key(&pool, "held").await;
    let stalled = stall_the_writer(&pool, &store, "held").await;
    let queued: Vec<_> = (0..2).map(|i| send(&store, &format!("q{i}"), json!({}))).collect();
    eventually("the queue full", || async { store.stats().queued == 2 }).await;
    let started = Instant::now();
    let (acme, over) = (tenant(), event("over", json!({})));
    let refused = store.ingest(&acme, &over, EventId::generate(Utc::now())).await;
    assert!(matches!(refused, Err(IngestError::Overloaded)), "{refused:?}");
    assert!(started.elapsed() < Duration::from_secs(1), "refused without waiting");
    held.rollback().await.expect("release the held key");
    stalled.await.expect("task").expect("stored");
    for (_, answer) in queued {
        answer.await.expect("task").expect("queued requests are stored");
    }
    assert_eq!(count(&pool).await, 3);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn close_stores_everything_queued_and_refuses_what_comes_after(pool: PgPool) {
    let store = group_commit(&pool, 1, 100);
    let held = hold_key(&pool, "held").await;
    let stalled = stall_the_writer(&pool, &store, "held").await;
    let queued: Vec<_> = (0..5).map(|i| send(&store, &format!("q{i}"), json!({}))).collect();
    eventually("five queued", || async { store.stats().queued == 5 }).await;
    let closing = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.close().await })
    };
    eventually("the queue closed to new requests", || async { store.is_closed() }).await;
    let (acme, late) = (tenant(), event("late", json!({})));
    let answer = store.ingest(&acme, &late, EventId::generate(Utc::now())).await;
    assert!(matches!(answer, Err(IngestError::Unavailable(_))), "{answer:?}");
    assert!(!closing.is_finished(), "close waits for the queued requests");
    held.rollback().await.expect("release the held key");
    tokio::time::timeout(Duration::from_secs(10), closing)
        .await
        .expect("close returns once the queue is stored")
        .expect("task");
    stalled.await.expect("task").expect("stored");
    for (id, answer) in queued {
        assert_eq!(answer.await.expect("task").expect("stored").event_id, id);
    }
    assert_eq!(count(&pool).await, 6);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn idle_writers_give_their_connections_back(pool: PgPool) {
    let store = group_commit(&pool, 2, 100);
    let requests: Vec<_> = (0..50).map(|i| send(&store, &format!("k{i}"), json!({}))).collect();
    for (_, answer) in requests {
        answer.await.expect("task").expect("stored");
    }
    eventually("every connection idle in the pool", || async {
        usize::try_from(pool.size()).unwrap_or(0) == pool.num_idle()
    })
    .await;
    tokio::time::timeout(Duration::from_secs(5), pool.close())
        .await
        .expect("the pool closes: no writer sits on a connection");
}
