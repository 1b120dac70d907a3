//! The PostgreSQL adapters against a real database: each test gets its own, migrated.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use intake_domain::{
    EventData, EventId, EventStore, EventType, IdempotencyKey, IngestError, Limits, NewEvent,
    NewToken, OccurredAt, Scope, StoreError, TenantId, TokenHash, TokenId, TokenStore,
};
use intake_storage::{PgStore, PoolSettings};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

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
async fn a_new_key_stores_the_event_under_the_given_id(pool: PgPool) {
    let store = PgStore::new(pool.clone());
    let id = new_id();
    let got =
        store.ingest(&tenant("dev"), &event("k1", json!({"a": 1})), id).await.expect("ingest");
    assert_eq!(got.event_id, id);
    assert!(!got.deduplicated);
    assert_eq!(count(&pool).await, 1);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_retry_with_the_same_key_returns_the_original_event(pool: PgPool) {
    let store = PgStore::new(pool.clone());
    let first =
        store.ingest(&tenant("dev"), &event("k1", json!({"a": 1})), new_id()).await.expect("first");
    let again =
        store.ingest(&tenant("dev"), &event("k1", json!({"a": 1})), new_id()).await.expect("retry");
    assert_eq!(again.event_id, first.event_id);
    assert_eq!(again.received_at, first.received_at);
    assert!(again.deduplicated);
    assert_eq!(count(&pool).await, 1);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_key_reused_with_another_payload_names_the_original_and_stores_nothing(pool: PgPool) {
    let store = PgStore::new(pool.clone());
    let first =
        store.ingest(&tenant("dev"), &event("k1", json!({"a": 1})), new_id()).await.expect("first");
    let err = store
        .ingest(&tenant("dev"), &event("k1", json!({"a": 2})), new_id())
        .await
        .expect_err("different payload");
    match err {
        IngestError::KeyReused { original } => assert_eq!(original, first.event_id),
        other => panic!("expected KeyReused, got {other:?}"),
    }
    assert_eq!(count(&pool).await, 1);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn keys_are_scoped_to_their_tenant(pool: PgPool) {
    let store = PgStore::new(pool.clone());
    let a = store.ingest(&tenant("acme"), &event("k1", json!({})), new_id()).await.expect("acme");
    let b = store
        .ingest(&tenant("globex"), &event("k1", json!({"other": true})), new_id())
        .await
        .expect("globex");
    assert_ne!(a.event_id, b.event_id);
    assert!(!b.deduplicated);
    assert_eq!(count(&pool).await, 2);
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
async fn data_is_stored_as_sent(pool: PgPool) {
    let store = PgStore::new(pool.clone());
    let data: Value = serde_json::from_str(
        r#"{"big": 123456789012345678901234567890, "f": 0.1, "s": "ünï 🚀", "n": {"deep": [null, true]}}"#,
    )
    .expect("json");
    let got =
        store.ingest(&tenant("dev"), &event("k1", data.clone()), new_id()).await.expect("ingest");
    let stored: sqlx::types::Json<Value> =
        sqlx::query_scalar("SELECT data FROM events WHERE event_id = $1")
            .bind(got.event_id.as_uuid())
            .fetch_one(&pool)
            .await
            .expect("row");
    assert_eq!(stored.0, data);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn occurred_at_is_stored_at_microsecond_precision_in_utc(pool: PgPool) {
    let store = PgStore::new(pool.clone());
    let limits = Limits::default();
    let e = NewEvent::new(
        EventType::parse("t").expect("type"),
        OccurredAt::parse("2025-12-22T12:30:00.1234567+02:00", Utc::now(), &limits).expect("time"),
        IdempotencyKey::parse("k").expect("key"),
        EventData::parse(json!({}), &limits).expect("data"),
    );
    let got = store.ingest(&tenant("dev"), &e, new_id()).await.expect("ingest");
    let text: String = sqlx::query_scalar(
        "SELECT to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US') FROM events WHERE event_id = $1",
    )
    .bind(got.event_id.as_uuid())
    .fetch_one(&pool)
    .await
    .expect("row");
    assert_eq!(text, "2025-12-22T10:30:00.123456");
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

fn new_token(secret: &str, tenant_name: &str, scopes: Vec<Scope>) -> NewToken {
    NewToken {
        id: TokenId::from_uuid(Uuid::new_v4()),
        hash: TokenHash::of(secret),
        tenant: tenant(tenant_name),
        name: "ci".into(),
        scopes,
    }
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_created_token_is_found_by_the_hash_of_its_secret(pool: PgPool) {
    let store = PgStore::new(pool);
    let token = new_token("s3cret", "acme", vec![Scope::EventsRead]);
    let created = store.create(&token).await.expect("create");
    assert_eq!(created.id, token.id);
    let found = store.find_active(&TokenHash::of("s3cret")).await.expect("find").expect("present");
    assert_eq!(found.tenant.as_str(), "acme");
    assert_eq!(found.scopes, vec![Scope::EventsRead]);
    assert!(store.find_active(&TokenHash::of("other")).await.expect("find").is_none());
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_revoked_token_is_no_longer_found_but_still_listed(pool: PgPool) {
    let store = PgStore::new(pool);
    let token = new_token("s3cret", "acme", Scope::ALL.to_vec());
    store.create(&token).await.expect("create");
    assert!(store.revoke(token.id).await.expect("revoke"));
    assert!(!store.revoke(token.id).await.expect("second revoke"), "already revoked");
    assert!(store.find_active(&TokenHash::of("s3cret")).await.expect("find").is_none());
    let listed = store.list().await.expect("list");
    assert_eq!(listed.len(), 1);
    assert!(listed[0].revoked_at.is_some());
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
