//! Storage lifetime (contract §14) against a real PostgreSQL: the keys window across partition
//! boundaries and rotations (with concurrent writers), retention dropping whole partitions while
//! a feed cursor stays valid, erasure by id and by content, relay notices, and the upgrade of an
//! installation with the old single table.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use intake_domain::{
    EraseOutcome, ErasureId, ErasureRequest, ErasureStatus, EventData, EventId, EventStore,
    EventType, FeedPosition, FeedQuery, IdempotencyKey, LifetimeStore, Limits, NewEvent,
    OccurredAt, RelayStore, Retention, TenantId,
};
use intake_storage::PgStore;
use serde_json::{json, Value};
use sqlx::PgPool;

fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).expect("valid tenant")
}

fn event_of(event_type: &str, key: &str, data: Value) -> NewEvent {
    let limits = Limits::default();
    NewEvent::new(
        EventType::parse(event_type).expect("type"),
        OccurredAt::parse("2025-12-22T10:30:00Z", Utc::now(), &limits).expect("time"),
        IdempotencyKey::parse(key).expect("key"),
        EventData::parse(data, &limits).expect("data"),
    )
}

fn event(key: &str) -> NewEvent {
    event_of("user.created", key, json!({"n": 1}))
}

fn id_at(at: DateTime<Utc>) -> EventId {
    EventId::generate(at)
}

async fn count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(pool).await.expect("count")
}

/// Steps the erasures until none is left unfinished (a step finds nothing to do while older
/// transactions of the cluster hold the feed's horizon back); the steps that erased or walked.
async fn erase_all(store: &PgStore, pool: &PgPool, max_events: u32) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut steps = 0;
    loop {
        if store.erasure_step(max_events).await.expect("step") {
            steps += 1;
            continue;
        }
        let unfinished: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM erasures WHERE status IN ('pending', 'running')",
        )
        .fetch_one(pool)
        .await
        .expect("count");
        if unfinished == 0 {
            return steps;
        }
        assert!(std::time::Instant::now() < deadline, "erasures still unfinished after 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn retention(events: Option<Duration>, keys: Duration) -> Retention {
    Retention { events, keys }
}

/// Where an event's row is: the name of its partition.
async fn partition_of(pool: &PgPool, id: EventId) -> String {
    sqlx::query_scalar("SELECT tableoid::regclass::text FROM events WHERE event_id = $1")
        .bind(id.as_uuid())
        .fetch_one(pool)
        .await
        .expect("stored")
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_key_holds_on_both_sides_of_a_partition_boundary(pool: PgPool) {
    let store = PgStore::new(pool.clone());
    // Daily ranges prepared from a few seconds from now to a day ahead: tomorrow's midnight is
    // a boundary between two of them.
    let report = store
        .maintain(&retention(Some(Duration::from_secs(30 * 86_400)), Duration::from_secs(600)))
        .await
        .expect("maintained")
        .expect("the only maintainer");
    assert!(report.partitions_created >= 2, "{report:?}");
    let midnight = (Utc::now() + chrono::Duration::days(1))
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc();
    let before = id_at(midnight - chrono::Duration::milliseconds(1));
    let after = id_at(midnight + chrono::Duration::milliseconds(1));

    let first = store.ingest(&tenant("dev"), &event("k1"), before).await.expect("stored");
    let again = store.ingest(&tenant("dev"), &event("k1"), after).await.expect("answered");
    assert!(!first.deduplicated);
    assert!(again.deduplicated, "the key is held across the boundary");
    assert_eq!(again.event_id, before);
    assert_eq!(count(&pool).await, 1);
    // And the other way round: a key first used after the boundary.
    store.ingest(&tenant("dev"), &event("k2"), after).await.expect("stored");
    let replay = store.ingest(&tenant("dev"), &event("k2"), before).await.expect("answered");
    assert!(replay.deduplicated);
    assert_eq!(replay.event_id, after);
    assert_eq!(count(&pool).await, 2);
    assert_ne!(partition_of(&pool, before).await, partition_of(&pool, after).await);
    // Each is read from its own partition by id.
    assert!(store.get(&tenant("dev"), before).await.expect("read").is_some());
    assert!(store.get(&tenant("dev"), after).await.expect("read").is_some());
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_key_holds_across_a_rotation_and_expires_after_the_window(pool: PgPool) {
    let store = PgStore::new(pool.clone());
    let window = retention(None, Duration::from_secs(2));
    store.ingest(&tenant("dev"), &event("k1"), id_at(Utc::now())).await.expect("stored");
    let generation = store.rotate_key_generation().await.expect("rotated");
    assert_eq!(generation, 2);
    let replay = store.ingest(&tenant("dev"), &event("k1"), id_at(Utc::now())).await;
    assert!(replay.expect("answered").deduplicated, "the old generation is still read");
    assert_eq!(count(&pool).await, 1);

    // Generation 1 ended when 2 started; 2 s later maintenance drops it, and the key with it.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let report = store.maintain(&window).await.expect("maintained").expect("ran");
    assert_eq!(report.key_generations_dropped, 1, "{report:?}");
    assert_eq!(report.keys_dropped, 1);
    let fresh = store.ingest(&tenant("dev"), &event("k1"), id_at(Utc::now())).await;
    assert!(!fresh.expect("stored").deduplicated, "after the window the key stores a new event");
    assert_eq!(count(&pool).await, 2);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn fifty_concurrent_identical_requests_during_rotations_store_one_event_each(pool: PgPool) {
    let store = Arc::new(PgStore::new(pool.clone()));
    for round in 0..6 {
        let key = format!("round-{round}");
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (store, key) = (Arc::clone(&store), key.clone());
            tasks.push(tokio::spawn(async move {
                store.ingest(&tenant("dev"), &event(&key), id_at(Utc::now())).await
            }));
        }
        // A rotation in the middle of the round.
        tokio::time::sleep(Duration::from_millis(round * 2)).await;
        store.rotate_key_generation().await.expect("rotated");
        let mut ids = Vec::new();
        let mut fresh = 0;
        for task in tasks {
            let got = task.await.expect("task").expect("every request answers");
            fresh += usize::from(!got.deduplicated);
            ids.push(got.event_id);
        }
        assert_eq!(fresh, 1, "round {round}: one request stores the event");
        assert!(ids.iter().all(|id| *id == ids[0]), "round {round}: one id for all");
    }
    assert_eq!(count(&pool).await, 6);
    let keys: i64 =
        sqlx::query_scalar("SELECT count(*) FROM event_keys").fetch_one(&pool).await.expect("keys");
    assert_eq!(keys, 6, "each key is held once, in one generation");
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn retention_drops_whole_partitions_and_a_cursor_from_before_stays_valid(pool: PgPool) {
    let store = PgStore::new(pool.clone());
    // 2 s of events in ranges of 1 s, prepared from 5 s ahead.
    let keep = retention(Some(Duration::from_secs(2)), Duration::from_secs(600));
    store.maintain(&keep).await.expect("maintained").expect("ran");
    let dev = tenant("dev");
    // Two events in a prepared range (ids from 6 s ahead), then one in the next.
    let soon = Utc::now() + chrono::Duration::milliseconds(6500);
    let (old1, old2) = (id_at(soon), id_at(soon + chrono::Duration::milliseconds(1)));
    let later = id_at(soon + chrono::Duration::milliseconds(1500));
    for (key, id) in [("a", old1), ("b", old2), ("c", later)] {
        store.ingest(&dev, &event(key), id).await.expect("stored");
    }
    assert!(partition_of(&pool, old1).await.starts_with("events_2"), "in a prepared range");
    // A consumer read the first event (once every older transaction of the cluster has ended:
    // the feed's horizon).
    let first =
        FeedQuery { after: FeedPosition::START, limit: 1, event_type: None, max_bytes: 1 << 20 };
    let page = loop {
        let page = store.feed_page(&dev, &first).await.expect("page");
        if !page.events.is_empty() {
            break page;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(page.events[0].event_id, old1);
    let cursor = page.next;

    // Once the range of the first two (the second `soon` falls in) has been over for 2 s,
    // maintenance drops it whole; the range of the third is younger.
    let expired = soon + chrono::Duration::seconds(3);
    let wait = (expired - Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(100);
    tokio::time::sleep(wait).await;
    let report = store.maintain(&keep).await.expect("maintained").expect("ran");
    assert!(report.partitions_dropped >= 1, "{report:?}");
    assert!(report.events_dropped >= 2, "{report:?}");
    assert!(store.get(&dev, old2).await.expect("read").is_none(), "a removed event is gone");
    assert!(store.get(&dev, later).await.expect("read").is_some(), "a later one stays");

    // The cursor issued before the removal goes on with the next remaining event.
    let next = FeedQuery { after: cursor, ..first };
    let page = store.feed_page(&dev, &FeedQuery { limit: 10, ..next }).await.expect("page");
    let ids: Vec<EventId> = page.events.iter().map(|e| e.event_id).collect();
    assert_eq!(ids, vec![later]);
    // Its key is still remembered: the keys window is longer than retention.
    let replay = store.ingest(&dev, &event("a"), id_at(Utc::now())).await.expect("answered");
    assert!(replay.deduplicated);
    assert_eq!(replay.event_id, old1);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn an_erased_event_is_gone_its_key_remembered_and_a_second_erase_is_told_apart(pool: PgPool) {
    let store = PgStore::new(pool.clone());
    let (dev, other) = (tenant("dev"), tenant("other"));
    let id = id_at(Utc::now());
    store.ingest(&dev, &event("k1"), id).await.expect("stored");
    assert_eq!(store.erase_event(&other, id).await.expect("answered"), EraseOutcome::NotFound);
    assert_eq!(store.erase_event(&dev, id).await.expect("erased"), EraseOutcome::Erased);
    assert_eq!(store.erase_event(&dev, id).await.expect("answered"), EraseOutcome::AlreadyErased);
    let never = id_at(Utc::now());
    assert_eq!(store.erase_event(&dev, never).await.expect("answered"), EraseOutcome::NotFound);
    assert!(store.get(&dev, id).await.expect("read").is_none());
    let query =
        FeedQuery { after: FeedPosition::START, limit: 10, event_type: None, max_bytes: 1 << 20 };
    assert!(store.feed_page(&dev, &query).await.expect("page").events.is_empty());
    // A retry of its key is answered with its id, and stores nothing.
    let replay = store.ingest(&dev, &event("k1"), id_at(Utc::now())).await.expect("answered");
    assert!(replay.deduplicated);
    assert_eq!(replay.event_id, id);
    assert_eq!(count(&pool).await, 0);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn an_erasure_by_content_erases_every_match_stored_before_it_in_bounded_steps(pool: PgPool) {
    let store = PgStore::new(pool.clone());
    let (dev, other) = (tenant("dev"), tenant("other"));
    // 2,500 events: every fifth is u_1's; some of another type; another tenant's u_1 too.
    let mut items = Vec::new();
    for i in 0..2500 {
        let user = if i % 5 == 0 { "u_1" } else { "u_2" };
        let kind = if i % 10 == 0 { "order.placed" } else { "user.created" };
        items.push((
            event_of(kind, &format!("k{i}"), json!({"user": {"id": user}, "i": i})),
            id_at(Utc::now()),
        ));
    }
    store.ingest_batch(&dev, &items[..1000]).await.expect("stored");
    store.ingest_batch(&dev, &items[1000..]).await.expect("stored");
    let theirs: Vec<(NewEvent, EventId)> =
        items[..10].iter().map(|(e, _)| (e.clone(), id_at(Utc::now()))).collect();
    store.ingest_batch(&other, &theirs).await.expect("stored");
    let request = ErasureRequest::parse(json!({"pointer": "/user/id", "equals": "u_1"}))
        .expect("valid request");
    let erasure = store
        .create_erasure(&dev, ErasureId::generate(Utc::now()), &request)
        .await
        .expect("recorded");
    assert_eq!(erasure.status, ErasureStatus::Pending);
    // Stored after the erasure was made: not erased.
    store
        .ingest(
            &dev,
            &event_of("user.created", "late", json!({"user": {"id": "u_1"}})),
            id_at(Utc::now()),
        )
        .await
        .expect("stored");

    let steps = erase_all(&store, &pool, 300).await;
    assert!(steps >= 9, "2,500 events in steps of 300: {steps} steps");
    let done = store.erasure(&dev, erasure.erasure_id).await.expect("read").expect("exists");
    assert_eq!(done.status, ErasureStatus::Done);
    assert_eq!(done.erased, 500);
    assert!(done.finished_at.is_some());
    assert!(store.erasure(&other, erasure.erasure_id).await.expect("read").is_none());

    let remaining: Vec<(String, Value)> = sqlx::query_as(
        "SELECT tenant_id, data::jsonb FROM events WHERE data::jsonb #>> '{user,id}' = 'u_1'",
    )
    .fetch_all(&pool)
    .await
    .expect("read");
    assert_eq!(remaining.len(), 3, "another tenant's 2 and the late one remain: {remaining:?}");
    assert_eq!(count(&pool).await, 2500 - 500 + 10 + 1);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn the_relay_gets_a_notice_only_for_an_erased_event_it_had_published(pool: PgPool) {
    let store = PgStore::new(pool.clone());
    let dev = tenant("dev");
    let ids: Vec<EventId> = (0..4).map(|_| id_at(Utc::now())).collect();
    for (i, id) in ids.iter().enumerate() {
        store.ingest(&dev, &event(&format!("k{i}")), *id).await.expect("stored");
    }
    let page = loop {
        let page = RelayStore::relay_page(&store, &dev, FeedPosition::START, 10, 1 << 20)
            .await
            .expect("page");
        if page.events.len() == 4 {
            break page;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // The relay published the first two and saved its place.
    let (position, _) = &page.events[1];
    store.save_position("S", &dev, *position, &ids[..2]).await.expect("saved");
    // Erased: one it published, one it had not reached.
    store.erase_event(&dev, ids[0]).await.expect("erased");
    store.erase_event(&dev, ids[3]).await.expect("erased");
    // It read the third before it was erased, and publishes it after: the notice follows.
    store.erase_event(&dev, ids[2]).await.expect("erased");
    let (position, _) = &page.events[2];
    store.save_position("S", &dev, *position, &ids[2..3]).await.expect("saved");

    let notices = store.erased_notices("S", &dev, 10).await.expect("notices");
    let mut noticed: Vec<EventId> = notices.iter().map(|n| n.event_id).collect();
    noticed.sort();
    let mut expected = vec![ids[0], ids[2]];
    expected.sort();
    assert_eq!(noticed, expected, "a notice for each published event that was erased, only");
    assert!(store.erased_notices("T", &dev, 10).await.expect("notices").is_empty(), "per stream");
    store.notices_sent("S", &dev, &noticed).await.expect("forgotten");
    assert!(store.erased_notices("S", &dev, 10).await.expect("notices").is_empty());
}

/// The migrations before the storage-lifetime one, applied to a database of their own.
async fn migrate_to_the_old_layout(pool: &PgPool) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    let old = tempfile::tempdir().expect("temp dir");
    for entry in std::fs::read_dir(&dir).expect("migrations") {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        if name.as_str() < "20261202000001" {
            std::fs::copy(&path, old.path().join(&name)).expect("copied");
        }
    }
    let migrator = sqlx::migrate::Migrator::new(old.path()).await.expect("old migrations");
    migrator.run(pool).await.expect("old layout");
}

#[sqlx::test(migrations = false)]
async fn the_upgrade_keeps_every_event_and_key_of_the_old_table(pool: PgPool) {
    migrate_to_the_old_layout(&pool).await;
    // Three days of events of the old layout (the id's first 48 bits are its milliseconds).
    sqlx::query(
        "INSERT INTO events (event_id, tenant_id, idempotency_key, event_type, occurred_at,
                             received_at, data, fingerprint)
         SELECT (lpad(to_hex((extract(epoch FROM t) * 1000)::bigint), 12, '0') || '7000'
                 || lpad(to_hex(g), 16, '0'))::uuid,
                'dev', 'key-' || g, 'user.created', t, t, json_build_object('g', g),
                sha256(g::text::bytea)
         FROM generate_series(1, 3000) AS g,
              LATERAL (SELECT now() - interval '3 days' + g * interval '1 minute' * 1.4) AS at(t)",
    )
    .execute(&pool)
    .await
    .expect("old events");
    let before: Vec<(uuid::Uuid, i64)> =
        sqlx::query_as("SELECT event_id, seq FROM events ORDER BY tx_id, seq")
            .fetch_all(&pool)
            .await
            .expect("old feed");

    intake_storage::migrate(&pool).await.expect("upgraded");

    let after: Vec<(uuid::Uuid, i64)> =
        sqlx::query_as("SELECT event_id, seq FROM events ORDER BY tx_id, seq")
            .fetch_all(&pool)
            .await
            .expect("new feed");
    assert_eq!(after, before, "every event, in the same feed order");
    let partitions: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_inherits WHERE inhparent = 'events'::regclass")
            .fetch_one(&pool)
            .await
            .expect("partitions");
    assert!(partitions >= 4, "a partition per day, and the default: {partitions}");
    let stray: i64 = sqlx::query_scalar("SELECT count(*) FROM events_default")
        .fetch_one(&pool)
        .await
        .expect("default");
    assert_eq!(stray, 0, "old events are in their day's partition");

    // Every key is still held, and new events follow the old ones in the feed.
    let store = PgStore::new(pool.clone());
    let replay = store
        .key_holder(&tenant("dev"), &IdempotencyKey::parse("key-1234").expect("key"))
        .await
        .expect("read")
        .expect("the key is held");
    assert_eq!(replay.event_id.as_uuid(), before[1233].0);
    let stored = store.ingest(&tenant("dev"), &event("new"), id_at(Utc::now())).await;
    assert!(!stored.expect("stored").deduplicated);
    let seq: i64 = sqlx::query_scalar("SELECT seq FROM events WHERE idempotency_key = 'new'")
        .fetch_one(&pool)
        .await
        .expect("new row");
    assert!(seq > before.iter().map(|(_, s)| *s).max().unwrap_or(0), "seq goes on");
    // The upgrade is a migration like any other: running them again changes nothing.
    intake_storage::migrate(&pool).await.expect("idempotent");
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn an_erasure_matches_strings_with_escapes_and_numbers_as_written(pool: PgPool) {
    let store = PgStore::new(pool.clone());
    let dev = tenant("dev");
    let tricky = "café \"quoted\" \\ back\nline\u{1}";
    let items: Vec<(NewEvent, EventId)> = [
        json!({"who": tricky}),
        json!({"who": "café"}),
        json!({"who": {"nested": tricky}}),
        serde_json::from_str(r#"{"n": 1e5}"#).expect("json"),
        json!({"n": 100000}),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, data)| (event_of("user.created", &format!("k{i}"), data), id_at(Utc::now())))
    .collect();
    store.ingest_batch(&dev, &items).await.expect("stored");
    for (pointer, equals) in
        [("/who", json!(tricky)), ("/n", serde_json::from_str("1e+5").expect("number"))]
    {
        let request = ErasureRequest::parse(json!({"pointer": pointer, "equals": equals}))
            .expect("valid request");
        store.create_erasure(&dev, ErasureId::generate(Utc::now()), &request).await.expect("made");
    }
    erase_all(&store, &pool, 2).await;
    let left: Vec<String> =
        sqlx::query_scalar("SELECT idempotency_key FROM events ORDER BY idempotency_key")
            .fetch_all(&pool)
            .await
            .expect("read");
    assert_eq!(left, ["k1", "k2", "k4"], "the escaped string and 1e5 as written are erased");
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_straggler_is_kept_by_when_it_was_received_not_by_its_id(pool: PgPool) {
    let store = PgStore::new(pool.clone());
    // Written just now, under an id whose first bits read as 1970 (not a UUIDv7): it lands in
    // the default partition.
    sqlx::query(
        "INSERT INTO events (event_id, tenant_id, idempotency_key, event_type, occurred_at, data,
                             fingerprint)
         VALUES ('00000000-0000-4000-8000-000000000001', 'dev', 'odd', 't', now(), '{}',
                 decode(repeat('00', 32), 'hex'))",
    )
    .execute(&pool)
    .await
    .expect("inserted");
    let report = store
        .maintain(&retention(Some(Duration::from_secs(30 * 86_400)), Duration::from_secs(600)))
        .await
        .expect("maintained")
        .expect("ran");
    assert_eq!(report.events_dropped, 0, "{report:?}");
    assert_eq!(count(&pool).await, 1, "received now: kept for the retention");
}
