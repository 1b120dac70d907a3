//! What every [`EventStore`] must do: store each key once per tenant, answer retries with the
//! original, refuse a reused key, keep batch order, and hand out a tenant's feed exactly once.

pub use crate::cloudevents::a_cloudevent_keeps_its_context;
pub use crate::schemas::an_event_reads_back_with_the_schema_version_it_was_checked_against;
use std::time::{Duration, Instant};

use chrono::Utc;
use intake_domain::{
    BatchOutcome, EventData, EventId, EventStore, EventType, FeedPosition, FeedQuery,
    IdempotencyKey, IngestError, Ingested, Limits, NewEvent, OccurredAt, StoredEvent, TenantId,
};
use serde_json::{json, Value};

fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).expect("valid tenant")
}

fn typed_event(event_type: &str, key: &str, data: Value) -> NewEvent {
    let limits = Limits::default();
    NewEvent::new(
        EventType::parse(event_type).expect("type"),
        OccurredAt::parse("2025-12-22T10:30:00Z", Utc::now(), &limits).expect("time"),
        IdempotencyKey::parse(key).expect("key"),
        EventData::parse(data, &limits).expect("data"),
    )
}

fn event(key: &str, data: Value) -> NewEvent {
    typed_event("user.created", key, data)
}

fn item(key: &str, data: Value) -> (NewEvent, EventId) {
    (event(key, data), new_id())
}

fn new_id() -> EventId {
    EventId::generate(Utc::now())
}

#[track_caller]
fn stored(outcome: &BatchOutcome) -> &Ingested {
    match outcome {
        BatchOutcome::Stored(ingested) => ingested,
        other => panic!("expected Stored, got {other:?}"),
    }
}

/// Follows the tenant's feed from the start until it has handed out `expected` events and one
/// more page comes back empty. A page may come back short while a transaction older than a row
/// is still open anywhere in the database (other tests', say): that is the feed waiting for its
/// horizon, so this polls again, as a real consumer would.
pub async fn drain(
    store: &dyn EventStore,
    tenant_name: &str,
    limit: u16,
    event_type: Option<&str>,
    expected: usize,
) -> Vec<StoredEvent> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut after = FeedPosition::START;
    let mut events = Vec::new();
    loop {
        let query = FeedQuery {
            after,
            limit,
            event_type: event_type.map(|t| EventType::parse(t).expect("type")),
            max_bytes: usize::MAX,
        };
        let page = store.feed_page(&tenant(tenant_name), &query).await.expect("page");
        assert!(page.events.len() <= usize::from(limit), "a page holds at most its limit");
        if page.events.is_empty() {
            assert_eq!(page.next, after, "an empty page keeps the cursor where it was");
            if events.len() >= expected {
                return events;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {expected} events arrived",
                events.len()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        assert!(page.next > after, "the cursor moves forward");
        events.extend(page.events);
        after = page.next;
    }
}

fn ids(events: &[StoredEvent]) -> Vec<EventId> {
    events.iter().map(|e| e.event_id).collect()
}

/// A new key stores the event under the id the caller chose.
pub async fn a_new_key_stores_the_event_under_the_given_id(store: &dyn EventStore) {
    let id = new_id();
    let got =
        store.ingest(&tenant("dev"), &event("k1", json!({"a": 1})), id).await.expect("ingest");
    assert_eq!(got.event_id, id);
    assert!(!got.deduplicated);
    assert_eq!(ids(&drain(store, "dev", 100, None, 1).await), vec![id]);
}

/// A retry is answered with the original id and time, marked deduplicated.
pub async fn a_retry_with_the_same_key_returns_the_original_event(store: &dyn EventStore) {
    let first =
        store.ingest(&tenant("dev"), &event("k1", json!({"a": 1})), new_id()).await.expect("first");
    let again =
        store.ingest(&tenant("dev"), &event("k1", json!({"a": 1})), new_id()).await.expect("retry");
    assert_eq!(again.event_id, first.event_id);
    assert_eq!(again.received_at, first.received_at);
    assert!(again.deduplicated);
    assert_eq!(drain(store, "dev", 100, None, 1).await.len(), 1);
}

/// A key used again with another payload names the event that holds it; nothing is stored.
pub async fn a_key_reused_with_another_payload_names_the_original_and_stores_nothing(
    store: &dyn EventStore,
) {
    let first =
        store.ingest(&tenant("dev"), &event("k1", json!({"a": 1})), new_id()).await.expect("first");
    let refused = new_id();
    let err = store
        .ingest(&tenant("dev"), &event("k1", json!({"a": 2})), refused)
        .await
        .expect_err("different payload");
    match err {
        IngestError::KeyReused { original } => assert_eq!(original, first.event_id),
        other => panic!("expected KeyReused, got {other:?}"),
    }
    assert!(store.get(&tenant("dev"), refused).await.expect("get").is_none());
    assert_eq!(ids(&drain(store, "dev", 100, None, 1).await), vec![first.event_id]);
}

/// Two tenants may use one key for different events.
pub async fn keys_are_scoped_to_their_tenant(store: &dyn EventStore) {
    let a = store.ingest(&tenant("acme"), &event("k1", json!({})), new_id()).await.expect("acme");
    let b = store
        .ingest(&tenant("globex"), &event("k1", json!({"other": true})), new_id())
        .await
        .expect("globex");
    assert_ne!(a.event_id, b.event_id);
    assert!(!b.deduplicated);
    assert_eq!(ids(&drain(store, "acme", 100, None, 1).await), vec![a.event_id]);
    assert_eq!(ids(&drain(store, "globex", 100, None, 1).await), vec![b.event_id]);
}

/// A stored event reads back with its type, key, time and data as sent: every digit of a large
/// number, unicode, nesting. (An exponent may come back in the store's own spelling of the
/// same number, as PostgreSQL's jsonb writes it.)
pub async fn a_stored_event_reads_back_as_sent(store: &dyn EventStore) {
    let data: Value = serde_json::from_str(
        r#"{"big":123456789012345678901234567890,"max_safe_plus":9007199254740993,"f":0.1,"e":1.5e300,"s":"ünï 🚀","n":{"a":[null,true,{}]}}"#,
    )
    .expect("json");
    let id = store
        .ingest(&tenant("acme"), &event("k", data.clone()), new_id())
        .await
        .expect("ingest")
        .event_id;
    let stored = store.get(&tenant("acme"), id).await.expect("get").expect("present");
    assert_eq!(stored.event_id, id);
    assert_eq!(stored.event_type, "user.created");
    assert_eq!(stored.idempotency_key, "k");
    assert_eq!(stored.occurred_at.to_rfc3339(), "2025-12-22T10:30:00+00:00");
    for (key, value) in data.as_object().expect("object") {
        if key == "e" {
            assert_eq!(stored.data[key].as_f64(), Some(1.5e300), "{}", stored.data);
        } else {
            assert_eq!(&stored.data[key], value, "{key}");
        }
    }
    assert_eq!(stored.data.as_object().map(|o| o.len()), Some(data.as_object().expect("o").len()));
    let text = serde_json::to_string(&stored.data).expect("serialise");
    assert!(text.contains("123456789012345678901234567890"), "{text}");
    assert!(text.contains("9007199254740993"), "{text}");
}

/// `occurred_at` keeps microseconds (digits beyond are dropped) and reads back in UTC.
pub async fn occurred_at_reads_back_at_microsecond_precision_in_utc(store: &dyn EventStore) {
    let limits = Limits::default();
    let e = NewEvent::new(
        EventType::parse("t").expect("type"),
        OccurredAt::parse("2025-12-22T12:30:00.1234567+02:00", Utc::now(), &limits).expect("time"),
        IdempotencyKey::parse("k").expect("key"),
        EventData::parse(json!({}), &limits).expect("data"),
    );
    let id = store.ingest(&tenant("dev"), &e, new_id()).await.expect("ingest").event_id;
    let stored = store.get(&tenant("dev"), id).await.expect("get").expect("present");
    assert_eq!(
        stored.occurred_at.format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
        "2025-12-22T10:30:00.123456"
    );
}

/// Another tenant's event and an id never stored are both simply absent.
pub async fn another_tenants_or_an_unknown_event_is_not_found(store: &dyn EventStore) {
    let globex = store
        .ingest(&tenant("globex"), &event("k", json!({})), new_id())
        .await
        .expect("ingest")
        .event_id;
    assert!(store.get(&tenant("acme"), globex).await.expect("get").is_none());
    assert!(store.get(&tenant("globex"), globex).await.expect("get").is_some());
    assert!(store.get(&tenant("globex"), new_id()).await.expect("get").is_none());
}

/// Each new item of a batch is stored under its own id, and the feed keeps request order
/// (whatever order the keys sort in).
pub async fn a_batch_stores_each_new_event_under_its_id_in_request_order(store: &dyn EventStore) {
    let keys = ["k3", "k1", "k4", "k0", "k2"];
    let items: Vec<_> = keys.iter().map(|k| item(k, json!({"k": k}))).collect();
    let outcomes = store.ingest_batch(&tenant("acme"), &items).await.expect("batch");
    assert_eq!(outcomes.len(), 5);
    for ((_, id), outcome) in items.iter().zip(&outcomes) {
        let ingested = stored(outcome);
        assert_eq!(ingested.event_id, *id);
        assert!(!ingested.deduplicated);
    }
    let fed: Vec<String> =
        drain(store, "acme", 100, None, 5).await.into_iter().map(|e| e.idempotency_key).collect();
    assert_eq!(fed, keys);
}

/// A batch item whose key an earlier event holds is a replay of it, or a reused key.
pub async fn a_batch_deduplicates_against_earlier_events_and_reports_reused_keys(
    store: &dyn EventStore,
) {
    let earlier =
        store.ingest(&tenant("acme"), &event("old", json!({"v": 1})), new_id()).await.expect("old");
    let other = store
        .ingest(&tenant("acme"), &event("taken", json!({"v": 1})), new_id())
        .await
        .expect("taken");
    let items =
        vec![item("new", json!({})), item("old", json!({"v": 1})), item("taken", json!({"v": 2}))];
    let outcomes = store.ingest_batch(&tenant("acme"), &items).await.expect("batch");
    assert!(!stored(&outcomes[0]).deduplicated);
    let replayed = stored(&outcomes[1]);
    assert!(replayed.deduplicated);
    assert_eq!(replayed.event_id, earlier.event_id);
    assert_eq!(replayed.received_at, earlier.received_at);
    assert_eq!(outcomes[2], BatchOutcome::KeyReused { original: other.event_id });
    assert_eq!(drain(store, "acme", 100, None, 3).await.len(), 3);
}

/// Within a batch, a later item with an earlier item's key is that item's retry.
pub async fn a_key_repeated_within_a_batch_behaves_like_a_retry(store: &dyn EventStore) {
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
    assert_eq!(drain(store, "acme", 100, None, 2).await.len(), 2);
}

/// A batch's keys belong to its tenant.
pub async fn keys_in_a_batch_are_scoped_to_the_tenant(store: &dyn EventStore) {
    store.ingest_batch(&tenant("acme"), &[item("k", json!({"a": 1}))]).await.expect("acme");
    let outcomes =
        store.ingest_batch(&tenant("globex"), &[item("k", json!({"b": 2}))]).await.expect("globex");
    assert!(!stored(&outcomes[0]).deduplicated);
    assert_eq!(drain(store, "globex", 100, None, 1).await.len(), 1);
}

/// The largest batch the API takes goes through whole.
pub async fn a_thousand_items_go_in_one_batch(store: &dyn EventStore) {
    let items: Vec<_> = (0..1000).map(|i| item(&format!("k{i}"), json!({"i": i}))).collect();
    let outcomes = store.ingest_batch(&tenant("acme"), &items).await.expect("batch");
    assert_eq!(outcomes.iter().filter(|o| !stored(o).deduplicated).count(), 1000);
    assert_eq!(drain(store, "acme", 1000, None, 1000).await.len(), 1000);
}

/// Pages follow one another in the order events were stored, each at most `limit` long.
pub async fn the_feed_pages_through_events_in_insertion_order(store: &dyn EventStore) {
    let mut written = Vec::new();
    for i in 0..25 {
        let ingested =
            store.ingest(&tenant("acme"), &event(&format!("k{i}"), json!({})), new_id()).await;
        written.push(ingested.expect("ingest").event_id);
    }
    assert_eq!(ids(&drain(store, "acme", 10, None, written.len()).await), written);
}

/// A retry adds nothing to the feed.
pub async fn a_retry_does_not_add_to_the_feed(store: &dyn EventStore) {
    let id = store.ingest(&tenant("acme"), &event("same", json!({})), new_id()).await;
    let again = store.ingest(&tenant("acme"), &event("same", json!({})), new_id()).await;
    assert_eq!(again.expect("retry").event_id, id.as_ref().expect("first").event_id);
    assert_eq!(ids(&drain(store, "acme", 100, None, 1).await), vec![id.expect("first").event_id]);
}

/// A feed of one event type holds those events only, in order.
pub async fn the_feed_filters_by_event_type(store: &dyn EventStore) {
    let mut created = Vec::new();
    for i in 0..6 {
        let event_type = if i % 2 == 0 { "user.created" } else { "user.deleted" };
        let e = typed_event(event_type, &format!("k{i}"), json!({}));
        let id = store.ingest(&tenant("acme"), &e, new_id()).await.expect("ingest").event_id;
        if event_type == "user.created" {
            created.push(id);
        }
    }
    let filtered = drain(store, "acme", 2, Some("user.created"), created.len()).await;
    assert_eq!(ids(&filtered), created);
    assert!(filtered.iter().all(|e| e.event_type == "user.created"));
}

/// A tenant's feed holds its own events only.
pub async fn tenants_see_only_their_own_feed(store: &dyn EventStore) {
    let acme = store.ingest(&tenant("acme"), &event("k", json!({})), new_id()).await;
    store.ingest(&tenant("globex"), &event("k", json!({})), new_id()).await.expect("globex");
    assert_eq!(ids(&drain(store, "acme", 100, None, 1).await), vec![acme.expect("acme").event_id]);
}
