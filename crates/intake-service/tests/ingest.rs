//! The ingest use case on the in-memory stores: the policy alone, in milliseconds. The
//! PostgreSQL path is proven by the storage and API tests.

use std::sync::{Arc, Mutex};

use intake_domain::memory::{MemoryEventStore, MemorySchemaStore};
use intake_domain::{
    EventType, Ingested, Limits, NewEvent, RateLimit, SchemaLimits, SchemaStore, TenantId,
};
use intake_ratelimit::MemoryRateLimiter;
use intake_service::{
    Account, CheckBudget, Incoming, Ingest, IngestObserver, RateLimits, Refusal, SchemaCache,
};
use serde_json::{json, Value};

/// What the observers were told, in order.
#[derive(Debug, Default)]
struct Seen(Mutex<Vec<String>>);

impl IngestObserver for Seen {
    fn accepted(&self, _: &TenantId, event: &NewEvent, ingested: &Ingested) {
        let how = if ingested.deduplicated { "replayed" } else { "stored" };
        self.push(format!("{how} {}", event.idempotency_key().as_str()));
    }

    fn refused(&self, _: &TenantId, refusal: &Refusal) {
        let what = match refusal {
            Refusal::RateLimited { .. } => "rate-limited",
            Refusal::Unread { .. } => "unread",
            Refusal::Invalid(_) => "invalid",
            Refusal::NotAnObject(_) => "not-an-object",
            Refusal::SchemaViolation { .. } => "schema-violation",
            Refusal::CheckTooSlow { .. } => "check-too-slow",
            Refusal::ChecksBusy { .. } => "checks-busy",
            Refusal::KeyReused { .. } => "key-reused",
            Refusal::Failed(_) => "failed",
        };
        self.push(what.to_owned());
    }
}

impl Seen {
    fn push(&self, line: String) {
        self.0.lock().expect("lock").push(line);
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().expect("lock"))
    }
}

struct Fixture {
    ingest: Ingest,
    events: Arc<MemoryEventStore>,
    schemas: Arc<MemorySchemaStore>,
    cache: Arc<SchemaCache>,
    seen: Arc<Seen>,
    account: Account,
}

fn fixture(burst: u32) -> Fixture {
    fixture_checking_within(burst, CheckBudget::default())
}

fn fixture_checking_within(burst: u32, budget: CheckBudget) -> Fixture {
    let events = Arc::new(MemoryEventStore::default());
    let schemas = Arc::new(MemorySchemaStore::default());
    let cache = Arc::new(SchemaCache::new(schemas.clone(), SchemaLimits::default()));
    let limit = RateLimit::new(1, burst).expect("limit");
    let limits = RateLimits::new(Some(Arc::new(MemoryRateLimiter::default())), limit);
    let seen = Arc::new(Seen::default());
    let ingest = Ingest::new(events.clone(), cache.clone(), limits, Limits::default())
        .checking_within(budget)
        .observed_by(seen.clone());
    let account = Account {
        tenant: TenantId::parse("acme").expect("tenant"),
        budget_key: "token-1".into(),
        limit: None,
    };
    Fixture { ingest, events, schemas, cache, seen, account }
}

fn event(key: &str, data: Value) -> Incoming {
    let Value::Object(fields) = json!({
        "event_type": "user.created",
        "occurred_at": "2025-12-22T10:30:00Z",
        "idempotency_key": key,
        "data": data,
    }) else {
        unreachable!()
    };
    Incoming::Plain { fields, beside: None }
}

#[tokio::test]
async fn a_retry_is_answered_with_the_stored_event_and_stores_nothing_more() {
    let f = fixture(10);
    let first = f.ingest.spend(&f.account, 1).await.expect("permit");
    let stored =
        f.ingest.single(first, event("k1", json!({"a": 1})), None).await.expect("stored").outcome;
    let again = f.ingest.spend(&f.account, 1).await.expect("permit");
    let replayed =
        f.ingest.single(again, event("k1", json!({"a": 1})), None).await.expect("replayed").outcome;

    assert_eq!((stored.deduplicated, replayed.deduplicated), (false, true));
    assert_eq!(replayed.event_id, stored.event_id);
    assert_eq!(f.events.len(), 1);
    assert_eq!(f.seen.take(), ["stored k1", "replayed k1"]);
}

#[tokio::test]
async fn a_request_over_the_budget_is_refused_and_spends_nothing() {
    let f = fixture(2);
    let refused = f.ingest.spend(&f.account, 3).await.expect_err("3 exceed a burst of 2");
    let Refusal::RateLimited { budget, cost } = refused else { panic!("{refused:?}") };
    assert_eq!((cost, budget.remaining, budget.limit.burst), (3, 2, 2));
    // Nothing was spent: the whole burst is still there.
    let permit = f.ingest.spend(&f.account, 2).await.expect("2 fit");
    assert_eq!(permit.budget().map(|b| b.remaining), Some(0));
    assert_eq!(f.seen.take(), ["rate-limited"]);
}

#[tokio::test]
async fn data_that_violates_its_schema_is_refused_unless_it_is_a_retry() {
    let f = fixture(10);
    let permit = f.ingest.spend(&f.account, 1).await.expect("permit");
    let stored = f
        .ingest
        .single(permit, event("k1", json!({"plan": "pro"})), None)
        .await
        .expect("ok")
        .outcome;
    let schema = json!({"type": "object", "required": ["user_id"]});
    let event_type = EventType::parse("user.created").expect("type");
    let put = f.schemas.put(&f.account.tenant, &event_type, &schema).await.expect("put");
    f.cache.install(&put.record);

    let retry = f.ingest.spend(&f.account, 1).await.expect("permit");
    let replayed = f.ingest.single(retry, event("k1", json!({"plan": "pro"})), None).await;
    assert_eq!(replayed.expect("a retry is a replay").outcome.event_id, stored.event_id);
    let new = f.ingest.spend(&f.account, 1).await.expect("permit");
    let refused = f.ingest.single(new, event("k2", json!({"plan": "pro"})), None).await;
    let Err(Refusal::SchemaViolation { version: 1, violations }) = refused else {
        panic!("{refused:?}")
    };
    assert_eq!(violations.len(), 1);
    assert_eq!(f.events.len(), 1);
    assert_eq!(f.seen.take(), ["stored k1", "replayed k1", "schema-violation"]);
}

#[tokio::test]
async fn a_check_over_its_budget_is_refused_unless_the_event_is_a_retry() {
    let budget = CheckBudget { max_time: std::time::Duration::from_millis(1), heavy_at_once: 4 };
    let f = fixture_checking_within(10, budget);
    // 300 properties, each matched against 1,500 patterns: far more than a millisecond.
    let data: serde_json::Map<String, Value> =
        (0..300).map(|i| (format!("k{i}"), json!(i))).collect();
    let data = Value::Object(data);
    let permit = f.ingest.spend(&f.account, 1).await.expect("permit");
    let stored = f.ingest.single(permit, event("k1", data.clone()), None).await.expect("ok");
    let patterns: serde_json::Map<String, Value> =
        (0..1500).map(|i| (format!("^p{i}x$"), json!({"type": "string"}))).collect();
    let event_type = EventType::parse("user.created").expect("type");
    let schema = json!({"patternProperties": patterns});
    let put = f.schemas.put(&f.account.tenant, &event_type, &schema).await.expect("put");
    f.cache.install(&put.record);

    let retry = f.ingest.spend(&f.account, 1).await.expect("permit");
    let replayed = f.ingest.single(retry, event("k1", data.clone()), None).await;
    assert_eq!(replayed.expect("a retry is a replay").outcome.event_id, stored.outcome.event_id);
    let new = f.ingest.spend(&f.account, 1).await.expect("permit");
    let refused = f.ingest.single(new, event("k2", data.clone()), None).await;
    let Err(Refusal::CheckTooSlow { version: 1, budget: over }) = refused else {
        panic!("{refused:?}")
    };
    assert_eq!(over, budget.max_time);
    // An event that is small enough is checked in place, within any budget.
    let small = f.ingest.spend(&f.account, 1).await.expect("permit");
    let checked = f.ingest.single(small, event("k3", json!({"p1x": "a"})), None).await;
    assert!(checked.is_ok(), "{checked:?}");
    assert_eq!(f.events.len(), 2);
    assert_eq!(f.seen.take(), ["stored k1", "replayed k1", "check-too-slow", "stored k3"]);
}

#[tokio::test]
async fn a_batch_answers_each_item_in_order() {
    let f = fixture(10);
    let items = vec![
        event("k1", json!({"a": 1})),
        Incoming::NotAnObject("a number"),
        event("k1", json!({"a": 1})),
        event("k1", json!({"a": 2})),
        event("", json!({})),
    ];
    let permit = f.ingest.spend(&f.account, 5).await.expect("permit");
    let outcomes = f.ingest.batch(permit, items, None).await.expect("batch").outcome;
    let kinds: Vec<&str> = outcomes
        .iter()
        .map(|o| match o {
            Ok(i) if i.deduplicated => "replayed",
            Ok(_) => "stored",
            Err(Refusal::NotAnObject(_)) => "not-an-object",
            Err(Refusal::KeyReused { .. }) => "key-reused",
            Err(Refusal::Invalid(_)) => "invalid",
            Err(other) => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["stored", "not-an-object", "replayed", "key-reused", "invalid"]);
    assert_eq!(f.events.len(), 1);
}

#[tokio::test]
async fn a_permit_covers_only_the_events_it_was_spent_for() {
    let f = fixture(10);
    let permit = f.ingest.spend(&f.account, 1).await.expect("permit");
    let items = vec![event("k1", json!({})), event("k2", json!({}))];
    let refused =
        f.ingest.batch(permit, items, None).await.expect_err("2 events on a permit for 1");
    assert!(matches!(refused, Refusal::Failed(_)), "{refused:?}");
    assert!(f.events.is_empty());
}

#[tokio::test]
async fn storage_failing_is_not_reported_as_a_judgement() {
    let f = fixture(10);
    f.events.set_unavailable(true);
    let permit = f.ingest.spend(&f.account, 1).await.expect("permit");
    let failed = f.ingest.single(permit, event("k1", json!({})), None).await;
    assert!(matches!(failed, Err(Refusal::Failed(_))), "{failed:?}");
    assert!(f.seen.take().is_empty());
}

#[tokio::test]
async fn a_sender_clock_off_by_more_than_the_threshold_is_corrected_and_a_retry_still_matches() {
    let f = fixture(10);
    let sent_at = |behind: i64| {
        let at = chrono::Utc::now() - chrono::Duration::seconds(behind);
        Some(Value::String(at.to_rfc3339()))
    };
    let permit = f.ingest.spend(&f.account, 1).await.expect("permit");
    let stored =
        f.ingest.single(permit, event("k1", json!({})), sent_at(300)).await.expect("stored");
    let skew = stored.clock_skew_ms.expect("skew");
    assert!((299_000..=301_000).contains(&skew), "{skew}");
    // A retry sent later, with another skew: the same event.
    let permit = f.ingest.spend(&f.account, 1).await.expect("permit");
    let retry = f.ingest.single(permit, event("k1", json!({})), sent_at(320)).await.expect("ok");
    assert!(retry.outcome.deduplicated);
    assert_eq!(retry.outcome.event_id, stored.outcome.event_id);
    // Within the threshold nothing moves; the read-back shows it.
    let permit = f.ingest.spend(&f.account, 1).await.expect("permit");
    let near = f.ingest.single(permit, event("k2", json!({})), sent_at(30)).await.expect("ok");
    use intake_domain::EventStore;
    let tenant = &f.account.tenant;
    let far = f.events.get(tenant, stored.outcome.event_id).await.expect("get").expect("stored");
    let (reported, _) = far.correction.expect("corrected");
    assert_eq!(reported.to_rfc3339(), "2025-12-22T10:30:00+00:00");
    assert_eq!((far.occurred_at - reported).num_milliseconds(), skew);
    let close = f.events.get(tenant, near.outcome.event_id).await.expect("get").expect("stored");
    assert_eq!((close.occurred_at.to_rfc3339(), close.correction), (reported.to_rfc3339(), None));
}
