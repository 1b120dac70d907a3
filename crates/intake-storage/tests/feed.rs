//! The feed's promise under concurrent writers that commit out of order, which only a real
//! database can show. Paging, filters and tenant scoping are in the conformance suite.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use intake_domain::{EventId, EventStore, FeedPosition, FeedQuery, TenantId};
use intake_storage::PgStore;
use sqlx::PgPool;
use uuid::Uuid;

fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).expect("valid tenant")
}

fn query(after: FeedPosition, limit: u16) -> FeedQuery {
    FeedQuery { after, limit, event_type: None, max_bytes: usize::MAX }
}

/// Follows the feed from `after` until it has handed out `expected` events and then one more
/// page comes back empty. Pages may come back short (or empty) while any transaction in the
/// cluster that is older than a row is still open, as other tests' are: that is the feed
/// waiting for its horizon, so the consumer polls again, as a real one would.
async fn drain(
    store: &PgStore,
    tenant_name: &str,
    mut after: FeedPosition,
    limit: u16,
    expected: usize,
) -> (Vec<EventId>, FeedPosition) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut ids = Vec::new();
    loop {
        let page = store.feed_page(&tenant(tenant_name), &query(after, limit)).await.expect("page");
        assert!(page.events.len() <= usize::from(limit));
        if page.events.is_empty() {
            assert_eq!(page.next, after, "an empty page keeps the cursor where it was");
            if ids.len() >= expected {
                return (ids, after);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "only {} of {expected} events arrived: {ids:?}",
                ids.len()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        assert!(page.next > after, "the cursor moves forward");
        ids.extend(page.events.iter().map(|e| e.event_id));
        after = page.next;
    }
}

/// Inserts one event for `tenant` in an open transaction, the way ingest does, and returns the
/// transaction (uncommitted) and the new id.
async fn begin_insert(
    pool: &PgPool,
    tenant_name: &str,
) -> (sqlx::Transaction<'static, sqlx::Postgres>, Uuid) {
    let mut tx = pool.begin().await.expect("begin");
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO events (event_id, tenant_id, idempotency_key, event_type, occurred_at, data, fingerprint)
         VALUES ($1, $2, $1::text, 't', now(), '{}', decode(repeat('00', 32), 'hex'))",
    )
    .bind(id)
    .bind(tenant_name)
    .execute(&mut *tx)
    .await
    .expect("insert");
    (tx, id)
}

/// The naive feed: rows after a sequence number. Here only to show what the real feed guards
/// against.
async fn naive_page(pool: &PgPool, after_seq: i64) -> Vec<(Uuid, i64)> {
    sqlx::query_as(
        "SELECT event_id, seq FROM events WHERE tenant_id = 'acme' AND seq > $1 ORDER BY seq",
    )
    .bind(after_seq)
    .fetch_all(pool)
    .await
    .expect("naive page")
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_naive_sequence_cursor_loses_an_event_that_commits_late(pool: PgPool) {
    // The control for the test below: the scenario that a `seq > cursor` feed gets wrong.
    let (slow, slow_id) = begin_insert(&pool, "acme").await; // draws the lower seq
    let (fast, fast_id) = begin_insert(&pool, "acme").await;
    fast.commit().await.expect("commit fast");
    let page = naive_page(&pool, 0).await;
    assert_eq!(page.iter().map(|r| r.0).collect::<Vec<_>>(), vec![fast_id]);
    let cursor = page[0].1;
    slow.commit().await.expect("commit slow");
    let later = naive_page(&pool, cursor).await;
    assert!(later.is_empty(), "the naive cursor has moved past {slow_id} for good");
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn an_event_that_commits_late_is_not_skipped_by_the_feed(pool: PgPool) {
    let store = PgStore::new(pool.clone());
    let (slow, slow_id) = begin_insert(&pool, "acme").await;
    let (fast, fast_id) = begin_insert(&pool, "acme").await;
    fast.commit().await.expect("commit fast");

    let page =
        store.feed_page(&tenant("acme"), &query(FeedPosition::START, 100)).await.expect("page");
    assert!(page.events.is_empty(), "nothing is handed out while an older writer is open");
    assert_eq!(page.next, FeedPosition::START);

    slow.commit().await.expect("commit slow");
    let (seen, _) = drain(&store, "acme", page.next, 100, 2).await;
    let seen: Vec<Uuid> = seen.iter().map(|id| id.as_uuid()).collect();
    assert_eq!(seen, vec![slow_id, fast_id], "both, once, in writer order");
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_reader_following_the_cursor_sees_every_committed_event_exactly_once(pool: PgPool) {
    const WRITERS: usize = 8;
    const EVENTS_PER_WRITER: usize = 25;
    let store = PgStore::new(pool.clone());
    let writing = Arc::new(AtomicBool::new(true));

    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let pool = pool.clone();
        writers.push(tokio::spawn(async move {
            let mut committed = Vec::new();
            for i in 0..EVENTS_PER_WRITER {
                let (tx, id) = begin_insert(&pool, "acme").await;
                // Hold some transactions open so that commits land out of seq order.
                let pause = ((w * 7 + i * 13) % 5) as u64 * 3;
                tokio::time::sleep(Duration::from_millis(pause)).await;
                if (w + i) % 10 == 9 {
                    tx.rollback().await.expect("rollback");
                } else {
                    tx.commit().await.expect("commit");
                    committed.push(id);
                }
            }
            committed
        }));
    }

    // The reader follows the cursor while the writers run, then until it has caught up with
    // everything they committed (or a deadline passes), then once more.
    let expected = Arc::new(std::sync::atomic::AtomicUsize::new(usize::MAX));
    let reader = {
        let expected = Arc::clone(&expected);
        tokio::spawn(async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            let mut seen = Vec::new();
            let mut after = FeedPosition::START;
            loop {
                let page = store.feed_page(&tenant("acme"), &query(after, 7)).await.expect("page");
                seen.extend(page.events.iter().map(|e| e.event_id.as_uuid()));
                after = page.next;
                let caught_up = seen.len() >= expected.load(Ordering::SeqCst);
                if page.events.is_empty() && (caught_up || std::time::Instant::now() > deadline) {
                    return seen;
                }
                if page.events.is_empty() {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        })
    };

    let mut committed = HashSet::new();
    for writer in writers {
        committed.extend(writer.await.expect("writer"));
    }
    writing.store(false, Ordering::SeqCst);
    expected.store(committed.len(), Ordering::SeqCst);
    let seen = reader.await.expect("reader");

    let unique: HashSet<Uuid> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "the reader saw an event twice");
    let missing: Vec<&Uuid> = committed.difference(&unique).collect();
    assert!(
        missing.is_empty(),
        "the reader missed {} committed events: {missing:?}",
        missing.len()
    );
    let extra: Vec<&Uuid> = unique.difference(&committed).collect();
    assert!(extra.is_empty(), "the reader saw events that were never committed: {extra:?}");
}
