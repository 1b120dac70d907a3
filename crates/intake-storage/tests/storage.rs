//! What only the PostgreSQL store can show, against a real database (each test gets its own,
//! migrated): concurrent writers, outages, migrations, the pool. The behaviour every store
//! shares is in the conformance suite (`tests/conformance.rs`).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use intake_domain::{
    EventData, EventId, EventStore, EventType, IdempotencyKey, IngestError, Limits, NewEvent,
    OccurredAt, StoreError, TenantId, TokenHash, TokenStore,
};
use intake_storage::{PgStore, PoolSettings};
use serde_json::{json, Value};
use sqlx::PgPool;

fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).expect("valid tenant")
}

fn event(key: &str, data: Value) -> NewEvent {
    let limits = Limits::default();
    NewEvent::new(
        EventType::parse("user.created").expect("type"),
        OccurredAt::parse("2025-12-22T10:30:00Z", Utc::now(), &limits).expect("time"),
        IdempotencyKey::parse(key).expect("key"),
        EventData::parse(data, &limits).expect("data"),
    )
}

fn new_id() -> EventId {
    EventId::generate(Utc::now())
}

async fn count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(pool).await.expect("count")
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn fifty_concurrent_inserts_of_one_key_store_exactly_one_row(pool: PgPool) {
    let store = Arc::new(PgStore::new(pool.clone()));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            store.ingest(&tenant("dev"), &event("same-key", json!({"n": 1})), new_id()).await
        }));
    }
    let mut ids = Vec::new();
    let mut fresh = 0;
    for task in tasks {
        let got = task.await.expect("task").expect("every insert answers");
        fresh += usize::from(!got.deduplicated);
        ids.push(got.event_id);
    }
    assert_eq!(fresh, 1, "exactly one request creates the event");
    assert!(ids.iter().all(|id| *id == ids[0]), "every response carries the one id");
    assert_eq!(count(&pool).await, 1);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn an_unreachable_database_is_unavailable_not_unknown(_pool: PgPool) {
    let settings = PoolSettings { max_connections: 1, acquire_timeout: Duration::from_millis(500) };
    let store =
        PgStore::connect_lazy("postgres://postgres@127.0.0.1:1/none", &settings).expect("url");
    let err =
        store.ingest(&tenant("dev"), &event("k", json!({})), new_id()).await.expect_err("down");
    assert!(matches!(err, IngestError::Unavailable(_)), "got {err:?}");
    let err = store.find_active(&TokenHash::of("x")).await.expect_err("down");
    assert!(matches!(err, StoreError::Unavailable(_)), "got {err:?}");
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn migrations_can_run_twice(pool: PgPool) {
    intake_storage::migrate(&pool).await.expect("second run is a no-op");
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_migrated_database_is_ready(pool: PgPool) {
    use intake_domain::{HealthCheck, Readiness};
    let store = PgStore::new(pool.clone());
    assert_eq!(store.readiness().await.expect("readiness"), Readiness::Ready);
    sqlx::query(
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT max(version) FROM _sqlx_migrations)",
    )
    .execute(&pool)
    .await
    .expect("forget one migration");
    match store.readiness().await.expect("readiness") {
        Readiness::MigrationsPending { pending } => assert_eq!(pending.len(), 1, "{pending:?}"),
        other => panic!("expected pending migrations, got {other:?}"),
    }
}

#[sqlx::test(migrations = false)]
async fn an_unmigrated_database_has_every_migration_pending(pool: PgPool) {
    use intake_domain::{HealthCheck, Readiness};
    let store = PgStore::new(pool);
    match store.readiness().await.expect("readiness") {
        Readiness::MigrationsPending { pending } => {
            assert_eq!(pending.len(), intake_storage::MIGRATOR.iter().count());
        }
        other => panic!("expected pending migrations, got {other:?}"),
    }
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn pool_stats_count_requests_waiting_for_a_connection(pool: PgPool) {
    let options = pool.connect_options();
    let small = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with((*options).clone())
        .await
        .expect("pool");
    let store = Arc::new(PgStore::new(small.clone()));
    let held = small.acquire().await.expect("hold the only connection");
    let waiter = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.find_active(&TokenHash::of("x")).await })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while store.pool_stats().waiting == 0 {
        assert!(std::time::Instant::now() < deadline, "the request never waited");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stats = store.pool_stats();
    assert_eq!((stats.size, stats.max, stats.waiting), (1, 1, 1));
    drop(held);
    waiter.await.expect("task").expect("query ran once the connection was free");
    assert_eq!(store.pool_stats().waiting, 0);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn sessions_run_read_committed_whatever_the_database_default(pool: PgPool) {
    let name: String =
        sqlx::query_scalar("SELECT current_database()").fetch_one(&pool).await.expect("name");
    sqlx::query(&format!(
        "ALTER DATABASE \"{name}\" SET default_transaction_isolation = 'repeatable read'"
    ))
    .execute(&pool)
    .await
    .expect("make repeatable read the database's default");
    let settings = PoolSettings { max_connections: 8, acquire_timeout: Duration::from_secs(5) };
    let store = Arc::new(PgStore::connect_lazy_with((*pool.connect_options()).clone(), &settings));
    let isolation: String = sqlx::query_scalar("SHOW transaction_isolation")
        .fetch_one(store.pool())
        .await
        .expect("show");
    assert_eq!(isolation, "read committed");

    let mut tasks = Vec::new();
    for _ in 0..50 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            store.ingest(&tenant("dev"), &event("raced", json!({})), new_id()).await
        }));
    }
    for task in tasks {
        task.await.expect("task").expect("no serialization failure reaches the caller");
    }
    assert_eq!(count(&pool).await, 1);
}
