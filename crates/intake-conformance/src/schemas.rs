//! What every [`SchemaStore`] must do: number versions per tenant and type from 1, answer an
//! unchanged document with its version, stop validating on delete while keeping the history,
//! continue the numbering after a delete, and keep tenants apart. Events record the version
//! their data was checked against.

use intake_domain::{
    EventData, EventId, EventStore, EventType, IdempotencyKey, Limits, NewEvent, OccurredAt,
    SchemaStore, TenantId,
};
use serde_json::{json, Value};

fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).expect("valid tenant")
}

fn event_type(name: &str) -> EventType {
    EventType::parse(name).expect("valid event type")
}

fn schema(plans: &[&str]) -> Value {
    json!({"type": "object", "properties": {"plan": {"enum": plans}}})
}

/// Versions count from 1; an unchanged document creates nothing; a changed one the next.
pub async fn versions_count_from_one_and_an_unchanged_schema_creates_nothing(
    store: &dyn SchemaStore,
) {
    let (acme, signup) = (tenant("acme"), event_type("user.signup"));
    let first = store.put(&acme, &signup, &schema(&["free"])).await.expect("put");
    assert!(first.created);
    assert_eq!(first.record.version, 1);
    let same = store.put(&acme, &signup, &schema(&["free"])).await.expect("put again");
    assert!(!same.created);
    assert_eq!(same.record.version, 1);
    assert_eq!(same.record.created_at, first.record.created_at);
    let second = store.put(&acme, &signup, &schema(&["free", "pro"])).await.expect("put new");
    assert!(second.created);
    assert_eq!(second.record.version, 2);
    let latest = store.latest(&acme, &signup).await.expect("latest").expect("present");
    assert_eq!((latest.version, latest.schema), (2, schema(&["free", "pro"])));
    let one = store.version(&acme, &signup, 1).await.expect("version").expect("present");
    assert_eq!(one.schema, schema(&["free"]));
    assert!(store.version(&acme, &signup, 3).await.expect("version").is_none());
}

/// A deleted type leaves the list and has no latest version, but keeps its versions; the next
/// registration continues the numbering, even with the deleted document.
pub async fn a_delete_stops_validation_keeps_history_and_the_numbering_continues(
    store: &dyn SchemaStore,
) {
    let (acme, signup, other) = (tenant("acme"), event_type("user.signup"), event_type("other"));
    store.put(&acme, &signup, &schema(&["free"])).await.expect("put");
    store.put(&acme, &other, &schema(&["x"])).await.expect("put other");
    assert!(store.delete(&acme, &signup).await.expect("delete"));
    assert!(!store.delete(&acme, &signup).await.expect("second delete"), "already deleted");
    assert!(store.latest(&acme, &signup).await.expect("latest").is_none());
    let listed: Vec<String> = store
        .list(&acme)
        .await
        .expect("list")
        .iter()
        .map(|r| r.event_type.as_str().to_owned())
        .collect();
    assert_eq!(listed, ["other"]);
    assert!(store.version(&acme, &signup, 1).await.expect("version").is_some());
    let again = store.put(&acme, &signup, &schema(&["free"])).await.expect("put after delete");
    assert!(again.created, "the same document after a delete is a new version");
    assert_eq!(again.record.version, 2);
    let active: Vec<u32> = store
        .active_versions()
        .await
        .expect("active")
        .into_iter()
        .filter(|(t, e, _)| *t == acme && *e == signup)
        .map(|(_, _, v)| v)
        .collect();
    assert_eq!(active, [2]);
}

/// A type that never had a schema cannot be deleted and has nothing to show.
pub async fn a_type_without_a_schema_has_nothing(store: &dyn SchemaStore) {
    let (acme, signup) = (tenant("acme"), event_type("user.signup"));
    assert!(!store.delete(&acme, &signup).await.expect("delete"));
    assert!(store.latest(&acme, &signup).await.expect("latest").is_none());
    assert!(store.version(&acme, &signup, 1).await.expect("version").is_none());
    assert!(store.list(&acme).await.expect("list").is_empty());
}

/// Another tenant's schemas are neither seen nor numbered with one's own.
pub async fn tenants_have_their_own_schemas(store: &dyn SchemaStore) {
    let (acme, globex, signup) = (tenant("acme"), tenant("globex"), event_type("user.signup"));
    store.put(&acme, &signup, &schema(&["a"])).await.expect("put");
    store.put(&acme, &signup, &schema(&["b"])).await.expect("put");
    assert!(store.latest(&globex, &signup).await.expect("latest").is_none());
    assert!(store.list(&globex).await.expect("list").is_empty());
    assert!(!store.delete(&globex, &signup).await.expect("delete"));
    let theirs = store.put(&globex, &signup, &schema(&["a"])).await.expect("put");
    assert_eq!(theirs.record.version, 1);
    assert_eq!(store.latest(&acme, &signup).await.expect("latest").expect("kept").version, 2);
}

/// An event checked against a schema version reads back with it; one without, with none.
pub async fn an_event_reads_back_with_the_schema_version_it_was_checked_against(
    store: &dyn EventStore,
) {
    let acme = tenant("acme");
    let event = |key: &str| {
        NewEvent::new(
            event_type("user.signup"),
            OccurredAt::parse("2025-12-22T10:30:00Z", chrono::Utc::now(), &Limits::default())
                .expect("instant"),
            IdempotencyKey::parse(key).expect("key"),
            EventData::parse(json!({"plan": "pro"}), &Limits::default()).expect("data"),
        )
    };
    let (checked, unchecked) =
        (EventId::generate(chrono::Utc::now()), EventId::generate(chrono::Utc::now()));
    store.ingest(&acme, &event("checked").checked_against(3), checked).await.expect("ingest");
    store.ingest(&acme, &event("unchecked"), unchecked).await.expect("ingest");
    let read = store.get(&acme, checked).await.expect("get").expect("stored");
    assert_eq!(read.schema_version, Some(3));
    let read = store.get(&acme, unchecked).await.expect("get").expect("stored");
    assert_eq!(read.schema_version, None);
    let batch = vec![(event("in-batch").checked_against(4), EventId::generate(chrono::Utc::now()))];
    store.ingest_batch(&acme, &batch).await.expect("batch");
    let read = store.get(&acme, batch[0].1).await.expect("get").expect("stored");
    assert_eq!(read.schema_version, Some(4));
    let holder = store
        .key_holder(&acme, &IdempotencyKey::parse("checked").expect("key"))
        .await
        .expect("holder")
        .expect("present");
    assert_eq!(holder.event_id, checked);
    assert!(store
        .key_holder(&tenant("globex"), &IdempotencyKey::parse("checked").expect("key"))
        .await
        .expect("holder")
        .is_none());
}
