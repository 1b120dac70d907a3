//! The relay's loop against the PostgreSQL store (each test gets its own migrated database) and
//! a real NATS with JetStream (`INTAKE_TEST_NATS_URL`; `make test` finds or starts one:
//! scripts/nats), with no HTTP and no binary: what reaches the stream, in what order, and that
//! cancelling the token ends the loop and gives up its claims.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use async_trait::async_trait;
use chrono::Utc;
use intake_domain::{
    ErasedNotice, EventData, EventId, EventStore, EventType, FeedPosition, FeedQuery,
    IdempotencyKey, Limits, NewEvent, OccurredAt, ParkedEvent, RelayClaims, RelayPage, RelayStore,
    StoreError, TenantId,
};
use intake_relay::testing::{nats_url, TestStream};
use intake_relay::RelaySettings;
use intake_storage::PgStore;
use prometheus::Registry;
use serde_json::json;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).expect("valid tenant")
}

fn event(event_type: &str, key: &str, n: usize) -> NewEvent {
    let limits = Limits::default();
    NewEvent::new(
        EventType::parse(event_type).expect("type"),
        OccurredAt::parse("2025-12-22T10:30:00Z", Utc::now(), &limits).expect("time"),
        IdempotencyKey::parse(key).expect("key"),
        EventData::parse(json!({ "n": n }), &limits).expect("data"),
    )
}

/// Stores `count` events for each tenant, interleaved, starting at `n = from`; the ids each
/// tenant got, in the order stored.
async fn store_events(
    store: &PgStore,
    tenants: &[&TenantId],
    from: usize,
    count: usize,
) -> HashMap<TenantId, Vec<EventId>> {
    let mut ids: HashMap<TenantId, Vec<EventId>> = HashMap::new();
    for n in from..from + count {
        for tenant in tenants {
            let event_type = if n % 2 == 0 { "order.placed" } else { "order.paid" };
            let ingested = store
                .ingest(
                    tenant,
                    &event(event_type, &format!("k-{n}"), n),
                    EventId::generate(Utc::now()),
                )
                .await
                .expect("stored");
            assert!(!ingested.deduplicated);
            ids.entry((*tenant).clone()).or_default().push(ingested.event_id);
        }
    }
    ids
}

/// A stream and subject prefix of the test's own, on the shared NATS.
struct Stream(TestStream);

impl std::ops::Deref for Stream {
    type Target = TestStream;

    fn deref(&self) -> &TestStream {
        &self.0
    }
}

impl Stream {
    fn new() -> Self {
        Self(TestStream::default())
    }

    fn settings(&self) -> RelaySettings {
        RelaySettings {
            nats_url: nats_url(),
            subject_prefix: self.prefix.clone(),
            stream: self.name.clone(),
            duplicate_window_secs: 120,
            // Several pages per tenant.
            page_size: 4,
            max_page_bytes: 8 << 20,
            poll_ms: 20,
            claim_secs: 1,
        }
    }
}

/// The relay's loop in a task of the test's own.
fn start(
    store: &PgStore,
    settings: RelaySettings,
    registry: &Registry,
    shutdown: &CancellationToken,
) -> JoinHandle<anyhow::Result<()>> {
    let store: Arc<dyn RelayStore> = Arc::new(store.clone());
    let registry = registry.clone();
    let shutdown = shutdown.clone();
    tokio::spawn(async move { intake_relay::run(store, settings, &registry, shutdown).await })
}

/// Cancels the token and waits for the loop to end, which it must do promptly and cleanly.
async fn stop(shutdown: &CancellationToken, relay: JoinHandle<anyhow::Result<()>>) {
    assert!(!relay.is_finished(), "the loop runs until it is cancelled");
    shutdown.cancel();
    let ended = tokio::time::timeout(Duration::from_secs(10), relay)
        .await
        .expect("the loop ends within 10 s of the cancellation");
    ended.expect("the loop's task did not panic").expect("the loop ends without an error");
}

/// `intake_relay_published_events_total{tenant}` in `registry`.
fn published(registry: &Registry, tenant: &str) -> u64 {
    registry
        .gather()
        .iter()
        .filter(|family| family.name() == "intake_relay_published_events_total")
        .flat_map(|family| family.get_metric())
        .filter(|metric| metric.get_label().iter().any(|l| l.value() == tenant))
        .map(|metric| metric.get_counter().get_value() as u64)
        .sum()
}

/// `intake_relay_parked_events_total` in `registry`.
fn parked_total(registry: &Registry) -> u64 {
    registry
        .gather()
        .iter()
        .filter(|family| family.name() == "intake_relay_parked_events_total")
        .flat_map(|family| family.get_metric())
        .map(|metric| metric.get_counter().get_value() as u64)
        .sum()
}

/// Waits until the relay's metrics count `expected` events published for `tenant`.
async fn published_reaches(registry: &Registry, tenant: &str, expected: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while published(registry, tenant) < expected {
        assert!(
            Instant::now() < deadline,
            "{tenant}: {} of {expected} events published",
            published(registry, tenant)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn the_loop_publishes_each_tenants_events_once_in_feed_order_and_ends_when_cancelled(
    pool: PgPool,
) {
    let store = PgStore::new(pool);
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let stored = store_events(&store, &[&acme, &globex], 0, 10).await;
    let stream = Stream::new();
    let registry = Registry::new();
    let shutdown = CancellationToken::new();
    let relay = start(&store, stream.settings(), &registry, &shutdown);

    let messages = stream.messages(20, Duration::from_secs(30)).await;
    assert_eq!(messages.len(), 20, "each event once");
    let mut per_tenant: HashMap<String, Vec<String>> = HashMap::new();
    for (subject, id, body) in &messages {
        let parts: Vec<&str> = subject.splitn(3, '.').collect();
        assert_eq!(parts.len(), 3, "{subject}");
        assert_eq!(parts[0], stream.prefix);
        assert_eq!(parts[2], body["event_type"], "{subject}");
        assert_eq!(&body["event_id"], id, "Nats-Msg-Id is the event's id");
        assert_eq!(
            body["data"]["n"].as_u64().map(|n| n % 2 == 0),
            Some(parts[2] == "order.placed")
        );
        per_tenant.entry(parts[1].to_owned()).or_default().push(id.clone());
    }
    for tenant in [&acme, &globex] {
        let expected: Vec<String> = stored[tenant].iter().map(ToString::to_string).collect();
        assert_eq!(per_tenant[tenant.as_str()], expected, "{tenant}: every event, in feed order");
    }
    assert_eq!(per_tenant.len(), 2);
    // The body is the event as the API reads it.
    let first = store.get(&acme, stored[&acme][0]).await.expect("get").expect("stored");
    let body = messages.iter().find(|(_, id, _)| id == &stored[&acme][0].to_string());
    let expected = serde_json::to_value(intake_service::EventBody::from(first)).expect("json");
    assert_eq!(body.map(|(_, _, body)| body), Some(&expected));
    published_reaches(&registry, "acme", 10).await;
    published_reaches(&registry, "globex", 10).await;

    stop(&shutdown, relay).await;
    // Its position is stored, past every event.
    for tenant in [&acme, &globex] {
        let position = store.position(&stream.name, tenant).await.expect("position");
        assert_eq!(store.lag(tenant, position, 100).await.expect("lag"), 0, "{tenant}");
    }
    // And its claims went with it: another relay may take the tenants now.
    let mut claims = store.claims().await.expect("claims");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !claims.claim(&stream.name, &acme).await.expect("claim") {
        assert!(Instant::now() < deadline, "the stopped relay still holds its claim");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stream.delete().await;
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_restarted_loop_goes_on_from_the_stored_positions(pool: PgPool) {
    let store = PgStore::new(pool);
    let acme = tenant("acme");
    let stream = Stream::new();
    let before = store_events(&store, &[&acme], 0, 6).await;
    let registry = Registry::new();
    let shutdown = CancellationToken::new();
    let relay = start(&store, stream.settings(), &registry, &shutdown);
    published_reaches(&registry, "acme", 6).await;
    stop(&shutdown, relay).await;

    // Stored while no relay runs.
    let after = store_events(&store, &[&acme], 6, 5).await;
    let registry = Registry::new();
    let shutdown = CancellationToken::new();
    let relay = start(&store, stream.settings(), &registry, &shutdown);
    published_reaches(&registry, "acme", 5).await;
    let messages = stream.messages(11, Duration::from_secs(30)).await;
    // Nothing published twice (the duplicate window would hide it in the stream, not here).
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(published(&registry, "acme"), 5, "the restarted relay published only the new ones");
    stop(&shutdown, relay).await;

    let ids: Vec<&String> = messages.iter().map(|(_, id, _)| id).collect();
    let expected: Vec<String> =
        before[&acme].iter().chain(&after[&acme]).map(ToString::to_string).collect();
    assert_eq!(ids, expected.iter().collect::<Vec<_>>(), "every event once, in feed order");
    stream.delete().await;
}

/// Stores one event of `event_type` with `data` for `tenant` under `key`; its id.
async fn store_one(
    store: &PgStore,
    tenant: &TenantId,
    key: &str,
    event_type: &str,
    data: serde_json::Value,
) -> EventId {
    let limits = Limits::default();
    let new = NewEvent::new(
        EventType::parse(event_type).expect("type"),
        OccurredAt::parse("2025-12-22T10:30:00Z", Utc::now(), &limits).expect("time"),
        IdempotencyKey::parse(key).expect("key"),
        EventData::parse(data, &limits).expect("data"),
    );
    let ingested = store.ingest(tenant, &new, EventId::generate(Utc::now())).await.expect("stored");
    assert!(!ingested.deduplicated);
    ingested.event_id
}

/// The position after the tenant's first `count` events.
async fn position_after(store: &PgStore, tenant: &TenantId, count: u16) -> FeedPosition {
    let query = FeedQuery {
        after: FeedPosition::START,
        limit: count,
        event_type: None,
        max_bytes: usize::MAX,
    };
    let page = EventStore::feed_page(store, tenant, &query).await.expect("feed");
    assert_eq!(page.events.len(), usize::from(count));
    page.next
}

/// Creates the test's stream as the relay would, changed by `tweak` (limits the relay must
/// live with); a JetStream context to change it later.
async fn create_stream(
    stream: &TestStream,
    tweak: impl FnOnce(&mut jetstream::stream::Config),
) -> jetstream::Context {
    let js = jetstream::new(async_nats::connect(nats_url()).await.expect("nats"));
    let mut config = jetstream::stream::Config {
        name: stream.name.clone(),
        subjects: vec![format!("{}.>", stream.prefix)],
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    };
    tweak(&mut config);
    js.create_stream(config).await.expect("stream created");
    js
}

/// The ids of `messages` (subject, Nats-Msg-Id, body).
fn ids_of(messages: &[(String, String, serde_json::Value)]) -> Vec<String> {
    messages.iter().map(|(_, id, _)| id.clone()).collect()
}

fn strings(ids: &[EventId]) -> Vec<String> {
    ids.iter().map(ToString::to_string).collect()
}

/// Waits until the tenant's stored position is `expected`.
async fn position_reaches(
    store: &PgStore,
    stream: &str,
    tenant: &TenantId,
    expected: FeedPosition,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let position = store.position(stream, tenant).await.expect("position");
        if position == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{tenant}: the position is {position:?}, never {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn an_event_above_the_servers_max_payload_is_parked_and_the_tenants_later_events_follow(
    pool: PgPool,
) {
    let store = PgStore::new(pool);
    let acme = tenant("acme");
    let client = async_nats::connect(nats_url()).await.expect("nats");
    let max_payload = client.server_info().max_payload;
    assert!(max_payload > 0, "the server tells its max_payload");
    let before = store_events(&store, &[&acme], 0, 2).await;
    // Its data alone is as large as the server takes a message.
    let big =
        store_one(&store, &acme, "big", "order.placed", json!({ "blob": "x".repeat(max_payload) }))
            .await;
    let after = store_events(&store, &[&acme], 2, 3).await;
    let stream = Stream::new();
    let registry = Registry::new();
    let shutdown = CancellationToken::new();
    let relay = start(&store, stream.settings(), &registry, &shutdown);

    let messages = stream.messages(5, Duration::from_secs(30)).await;
    let expected: Vec<EventId> = before[&acme].iter().chain(&after[&acme]).copied().collect();
    assert_eq!(ids_of(&messages), strings(&expected), "every other event, in feed order");
    assert!(!ids_of(&messages).contains(&big.to_string()));
    published_reaches(&registry, "acme", 5).await;
    stop(&shutdown, relay).await;
    let position = store.position(&stream.name, &acme).await.expect("position");
    assert_eq!(store.lag(&acme, position, 100).await.expect("lag"), 0, "moved past the big one");
    // Parked once, with why, and counted.
    let parked = store.parked(&stream.name, &acme).await.expect("dead letters");
    assert_eq!(parked.iter().map(|p| p.event_id).collect::<Vec<_>>(), vec![big]);
    assert!(parked[0].reason.contains("max_payload"), "{}", parked[0].reason);
    assert!(!parked[0].reason.contains("xxxx"), "never the data");
    assert_eq!(parked_total(&registry), 1);
    stream.delete().await;
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn an_event_jetstream_refuses_for_good_is_parked_and_the_tenants_later_events_follow(
    pool: PgPool,
) {
    let store = PgStore::new(pool);
    let acme = tenant("acme");
    let stream = Stream::new();
    // The stream takes messages of up to 4 KiB: JetStream refuses a larger one, every time.
    create_stream(&stream, |config| config.max_message_size = 4096).await;
    let before = store_events(&store, &[&acme], 0, 2).await;
    let big =
        store_one(&store, &acme, "big", "order.placed", json!({ "blob": "x".repeat(8192) })).await;
    let after = store_events(&store, &[&acme], 2, 3).await;
    let registry = Registry::new();
    let shutdown = CancellationToken::new();
    let relay = start(&store, stream.settings(), &registry, &shutdown);

    let messages = stream.messages(5, Duration::from_secs(30)).await;
    let expected: Vec<EventId> = before[&acme].iter().chain(&after[&acme]).copied().collect();
    assert_eq!(ids_of(&messages), strings(&expected), "every other event, in feed order");
    assert!(!ids_of(&messages).contains(&big.to_string()));
    published_reaches(&registry, "acme", 5).await;
    stop(&shutdown, relay).await;
    let position = store.position(&stream.name, &acme).await.expect("position");
    assert_eq!(store.lag(&acme, position, 100).await.expect("lag"), 0, "moved past the big one");
    let parked = store.parked(&stream.name, &acme).await.expect("dead letters");
    assert_eq!(parked.iter().map(|p| p.event_id).collect::<Vec<_>>(), vec![big]);
    assert!(parked[0].reason.contains("maximum"), "JetStream's words: {}", parked[0].reason);
    assert_eq!(parked_total(&registry), 1);
    stream.delete().await;
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_failure_inside_a_page_stores_the_position_before_it_and_retries_from_there(
    pool: PgPool,
) {
    let store = PgStore::new(pool);
    let acme = tenant("acme");
    let stream = Stream::new();
    // At most two messages per subject, and JetStream refuses a third (until the limit is
    // lifted: a refusal that may pass, so the relay must retry, not park).
    let js = create_stream(&stream, |config| {
        config.max_messages_per_subject = 2;
        config.discard = jetstream::stream::DiscardPolicy::New;
        config.discard_new_per_subject = true;
    })
    .await;
    // One page of four: the third is refused, the fourth (another subject) acknowledged.
    let mut ids = Vec::new();
    for (n, event_type) in
        ["order.placed", "order.placed", "order.placed", "order.paid"].into_iter().enumerate()
    {
        ids.push(store_one(&store, &acme, &format!("k-{n}"), event_type, json!({ "n": n })).await);
    }
    let registry = Registry::new();
    let shutdown = CancellationToken::new();
    let relay = start(&store, stream.settings(), &registry, &shutdown);

    // The position stops after the second event: never past the refused third, whatever came
    // after it.
    let second = position_after(&store, &acme, 2).await;
    position_reaches(&store, &stream.name, &acme, second).await;
    let messages = stream.messages(3, Duration::from_secs(30)).await;
    assert_eq!(ids_of(&messages), strings(&[ids[0], ids[1], ids[3]]));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(store.position(&stream.name, &acme).await.expect("position"), second);
    assert_eq!(published(&registry, "acme"), 2, "what the stored position covers");
    assert_eq!(parked_total(&registry), 0, "a refusal that may pass is retried, not parked");

    // Once JetStream takes it, the third goes out, and the fourth is not stored twice.
    let mut config =
        js.get_stream(&stream.name).await.expect("stream").cached_info().config.clone();
    config.max_messages_per_subject = -1;
    config.discard_new_per_subject = false;
    js.update_stream(config).await.expect("limit lifted");
    let all = position_after(&store, &acme, 4).await;
    position_reaches(&store, &stream.name, &acme, all).await;
    published_reaches(&registry, "acme", 4).await;
    // Nothing lost, nothing twice: the fourth stays where it landed in the failed round (the
    // duplicate window drops its re-publish), the third follows once JetStream takes it.
    let messages = stream.messages(4, Duration::from_secs(30)).await;
    assert_eq!(ids_of(&messages), strings(&[ids[0], ids[1], ids[3], ids[2]]));
    assert!(store.parked(&stream.name, &acme).await.expect("dead letters").is_empty());
    stop(&shutdown, relay).await;
    stream.delete().await;
}
#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_tenant_that_cannot_publish_does_not_slow_the_others(pool: PgPool) {
    let store = PgStore::new(pool);
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let stream = Stream::new();
    // Two messages per subject: acme's third `order.placed` is refused until the test ends.
    create_stream(&stream, |config| {
        config.max_messages_per_subject = 2;
        config.discard = jetstream::stream::DiscardPolicy::New;
        config.discard_new_per_subject = true;
    })
    .await;
    for n in 0..3 {
        store_one(&store, &acme, &format!("k-{n}"), "order.placed", json!({ "n": n })).await;
    }
    // globex's events have a subject each: 15 pages of 4.
    for n in 0..60 {
        store_one(&store, &globex, &format!("k-{n}"), &format!("thing.{n}"), json!({ "n": n }))
            .await;
    }
    let registry = Registry::new();
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let relay = start(&store, stream.settings(), &registry, &shutdown);
    published_reaches(&registry, "globex", 60).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "globex's 15 pages took {took:?}");
    let second = position_after(&store, &acme, 2).await;
    assert!(store.position(&stream.name, &acme).await.expect("position") <= second);
    stop(&shutdown, relay).await;
    stream.delete().await;
}

/// The relay's store, noting what each page it reads holds: (events, bytes of their data).
#[derive(Debug)]
struct Measured {
    inner: PgStore,
    pages: Mutex<Vec<(usize, usize)>>,
}

#[async_trait]
impl RelayStore for Measured {
    async fn tenants(&self) -> Result<Vec<TenantId>, StoreError> {
        self.inner.tenants().await
    }

    async fn position(&self, stream: &str, tenant: &TenantId) -> Result<FeedPosition, StoreError> {
        self.inner.position(stream, tenant).await
    }

    async fn save_position(
        &self,
        stream: &str,
        tenant: &TenantId,
        position: FeedPosition,
        published: &[EventId],
    ) -> Result<(), StoreError> {
        self.inner.save_position(stream, tenant, position, published).await
    }

    async fn erased_notices(
        &self,
        stream: &str,
        tenant: &TenantId,
        limit: u16,
    ) -> Result<Vec<ErasedNotice>, StoreError> {
        self.inner.erased_notices(stream, tenant, limit).await
    }

    async fn notices_sent(
        &self,
        stream: &str,
        tenant: &TenantId,
        ids: &[EventId],
    ) -> Result<(), StoreError> {
        self.inner.notices_sent(stream, tenant, ids).await
    }

    async fn lag(
        &self,
        tenant: &TenantId,
        position: FeedPosition,
        cap: i64,
    ) -> Result<i64, StoreError> {
        self.inner.lag(tenant, position, cap).await
    }

    async fn relay_page(
        &self,
        tenant: &TenantId,
        after: FeedPosition,
        limit: u16,
        max_bytes: usize,
    ) -> Result<RelayPage, StoreError> {
        let page = RelayStore::relay_page(&self.inner, tenant, after, limit, max_bytes).await?;
        let bytes = page
            .events
            .iter()
            .map(|(_, event)| serde_json::to_vec(&event.data).expect("json").len())
            .sum();
        if !page.events.is_empty() {
            self.pages.lock().expect("pages").push((page.events.len(), bytes));
        }
        Ok(page)
    }

    async fn claims(&self) -> Result<Box<dyn RelayClaims>, StoreError> {
        self.inner.claims().await
    }

    async fn park(
        &self,
        stream: &str,
        tenant: &TenantId,
        event_id: EventId,
        reason: &str,
    ) -> Result<(), StoreError> {
        self.inner.park(stream, tenant, event_id, reason).await
    }

    async fn parked(
        &self,
        stream: &str,
        tenant: &TenantId,
    ) -> Result<Vec<ParkedEvent>, StoreError> {
        self.inner.parked(stream, tenant).await
    }
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_page_holds_at_most_max_page_bytes_and_at_least_one_event(pool: PgPool) {
    let store = PgStore::new(pool);
    let acme = tenant("acme");
    let mut ids = Vec::new();
    // 2 KiB events, one of 15 KiB among them: pages of 10 KB hold four, or the big one alone.
    for n in 0..16 {
        let blob = "x".repeat(if n == 10 { 15_000 } else { 2_000 });
        let data = json!({ "n": n, "blob": blob });
        ids.push(store_one(&store, &acme, &format!("k-{n}"), "order.placed", data).await);
    }
    let stream = Stream::new();
    let settings = RelaySettings { page_size: 8, max_page_bytes: 10_000, ..stream.settings() };
    let measured = Arc::new(Measured { inner: store.clone(), pages: Mutex::new(Vec::new()) });
    let registry = Registry::new();
    let shutdown = CancellationToken::new();
    let relay = {
        let (store, registry, shutdown) = (measured.clone(), registry.clone(), shutdown.clone());
        tokio::spawn(async move { intake_relay::run(store, settings, &registry, shutdown).await })
    };

    let messages = stream.messages(16, Duration::from_secs(30)).await;
    assert_eq!(ids_of(&messages), strings(&ids), "every event once, in feed order");
    published_reaches(&registry, "acme", 16).await;
    stop(&shutdown, relay).await;
    let pages = measured.pages.lock().expect("pages").clone();
    for (events, bytes) in &pages {
        assert!(*events == 1 || *bytes <= 10_000, "a page of {events} events held {bytes} bytes");
    }
    assert!(pages.iter().any(|(events, _)| *events > 1), "pages of several events: {pages:?}");
    assert!(pages.iter().any(|(events, bytes)| *events == 1 && *bytes > 10_000), "{pages:?}");
    stream.delete().await;
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn an_erased_event_is_never_published_and_a_published_one_gets_one_notice(pool: PgPool) {
    use intake_domain::LifetimeStore;

    let store = PgStore::new(pool);
    let acme = tenant("acme");
    let stream = Stream::new();
    let stored = store_events(&store, &[&acme], 0, 3).await;
    let ids = &stored[&acme];
    // Erased before any relay ran: never published.
    store.erase_event(&acme, ids[1]).await.expect("erased");
    let registry = Registry::new();
    let shutdown = CancellationToken::new();
    let relay = start(&store, stream.settings(), &registry, &shutdown);
    published_reaches(&registry, "acme", 2).await;

    // Erased after it was published: one notice on <prefix>.<tenant>.$erased.
    store.erase_event(&acme, ids[0]).await.expect("erased");
    let messages = stream.messages(3, Duration::from_secs(30)).await;
    stop(&shutdown, relay).await;
    let published: Vec<&String> = messages.iter().map(|(_, id, _)| id).collect();
    let notice_id = format!("erased:{}", ids[0]);
    assert_eq!(published, [&ids[0].to_string(), &ids[2].to_string(), &notice_id]);
    let (subject, _, body) = &messages[2];
    assert_eq!(subject, &format!("{}.acme.$erased", stream.prefix));
    assert_eq!(body["event_id"], ids[0].to_string());
    assert!(body["erased_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{body}");
    assert_eq!(body.as_object().map(|o| o.len()), Some(2), "{body}");
    // Sent once: nothing is left to send.
    let left = store.erased_notices(&stream.name, &acme, 10).await.expect("notices");
    assert!(left.is_empty(), "{left:?}");
    stream.delete().await;
}
