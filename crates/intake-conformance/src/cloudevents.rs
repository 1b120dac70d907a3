//! What every [`EventStore`] must do with CloudEvents: keep the context an event came with and
//! read it back; a plain event has none.

use intake_domain::cloudevent::{self, Mode};
use intake_domain::{EventId, EventStore, Limits, TenantId};
use serde_json::{json, Value};

/// A CloudEvent's context reads back as it came; a retry of it is a replay.
pub async fn a_cloudevent_keeps_its_context(store: &dyn EventStore) {
    let acme = TenantId::parse("acme").expect("tenant");
    let attributes = json!({
        "specversion": "1.0", "id": "1", "source": "/shop", "type": "order.placed",
        "time": "2025-12-22T10:30:00Z", "subject": "o/1", "traceparent": "00-x", "data": {"n": 1}
    });
    let Value::Object(attributes) = attributes else { unreachable!("an object literal") };
    let event =
        cloudevent::parse(attributes, Mode::Structured, chrono::Utc::now(), &Limits::default())
            .expect("valid");
    let context = event.context().cloned().expect("a context");
    let id = EventId::generate(chrono::Utc::now());
    let stored = store.ingest(&acme, &event, id).await.expect("ingest");
    let read = store.get(&acme, stored.event_id).await.expect("get").expect("stored");
    assert_eq!(read.cloudevent, Some(context));
    let again =
        store.ingest(&acme, &event, EventId::generate(chrono::Utc::now())).await.expect("retry");
    assert!(again.deduplicated);
    assert_eq!(again.event_id, id);
    let batch = vec![(event.clone(), EventId::generate(chrono::Utc::now()))];
    let outcomes = store.ingest_batch(&acme, &batch).await.expect("batch");
    assert_eq!(outcomes[0].clone().into_result().expect("stored").event_id, id);
}
