//! The repository traits: what the service needs from storage, and the errors it can get back.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::event::{EventId, TenantId};
use crate::feed::{FeedPage, FeedPosition, FeedQuery, StoredEvent};
use crate::fingerprint::Fingerprint;
use crate::lifetime::{
    EraseOutcome, ErasureId, ErasureRecord, ErasureRequest, LifetimeStats, MaintenanceReport,
    Retention,
};
use crate::new_event::NewEvent;
use crate::rate::RateLimit;
use crate::schema::{SchemaPut, SchemaRecord};
use crate::token::{NewToken, TokenHash, TokenId, TokenRecord};
use crate::{EventType, IdempotencyKey};

/// The outcome of storing an event: its id and when it was first received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingested {
    /// The stored event's id (the original one on a retry).
    pub event_id: EventId,
    /// When the event was first received.
    pub received_at: DateTime<Utc>,
    /// Whether an earlier request had already stored this event.
    pub deduplicated: bool,
}

/// The outcome of one item of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Stored now, or found stored by an earlier request or an earlier item of the batch.
    Stored(Ingested),
    /// The key already holds a different payload.
    KeyReused {
        /// The event that holds the key.
        original: EventId,
    },
}

impl BatchOutcome {
    /// The outcome as a single ingest answers it.
    pub fn into_result(self) -> Result<Ingested, IngestError> {
        match self {
            Self::Stored(ingested) => Ok(ingested),
            Self::KeyReused { original } => Err(IngestError::KeyReused { original }),
        }
    }
}

/// The stored event that holds an idempotency key: all that deciding a request's outcome needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyHolder {
    /// Its id.
    pub event_id: EventId,
    /// When it was first received.
    pub received_at: DateTime<Utc>,
    /// The fingerprint of its payload.
    pub fingerprint: Fingerprint,
}

impl KeyHolder {
    /// What a request carrying `event` gets from the event holding its key: that event when the
    /// payloads match (a replay, unless this very request `created` it), else `KeyReused`. The
    /// one place that decides what counts as a retry, for every store.
    pub fn outcome_for(&self, event: &NewEvent, created: bool) -> BatchOutcome {
        if &self.fingerprint != event.fingerprint() {
            return BatchOutcome::KeyReused { original: self.event_id };
        }
        BatchOutcome::Stored(Ingested {
            event_id: self.event_id,
            received_at: self.received_at,
            deduplicated: !created,
        })
    }
}

/// Why an event could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The tenant used this idempotency key for a different payload.
    #[error("idempotency key already used for event {original} with a different payload")]
    KeyReused {
        /// The event that holds the key.
        original: EventId,
    },
    /// Storage could not be reached; the request may be retried.
    #[error("storage is unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// More requests are waiting for storage than the server holds; the request may be retried.
    #[error("too many events are waiting to be stored")]
    Overloaded,
    /// Storage refused a value that validation let through; the request must change.
    #[error("storage refused a value of the event")]
    Refused(#[source] anyhow::Error),
    /// Anything else; a defect or an unexpected state of storage.
    #[error(transparent)]
    Unknown(anyhow::Error),
}

/// Why a storage operation other than ingest failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Storage could not be reached; the request may be retried.
    #[error("storage is unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// Storage refused a value (a data exception); the request must change.
    #[error("storage refused a value")]
    Refused(#[source] anyhow::Error),
    /// Anything else.
    #[error(transparent)]
    Unknown(anyhow::Error),
}

impl From<StoreError> for IngestError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(e) => Self::Unavailable(e),
            StoreError::Refused(e) => Self::Refused(e),
            StoreError::Unknown(e) => Self::Unknown(e),
        }
    }
}

/// Where events are stored, exactly once per tenant and idempotency key.
#[async_trait]
pub trait EventStore: std::fmt::Debug + Send + Sync + 'static {
    /// Stores `event` for `tenant` under `new_id` unless the tenant already has an event with
    /// its key: then returns that one (when the payload matches) or
    /// [`IngestError::KeyReused`]. Returns only once the event is durable.
    async fn ingest(
        &self,
        tenant: &TenantId,
        event: &NewEvent,
        new_id: EventId,
    ) -> Result<Ingested, IngestError>;

    /// Stores many events for `tenant`, each as [`EventStore::ingest`] would, in as few round
    /// trips as possible; outcomes come back in the order of `events`. An item whose key an
    /// earlier item of the same batch used behaves as a retry of that item. Only a failure of
    /// storage itself fails the whole call.
    async fn ingest_batch(
        &self,
        tenant: &TenantId,
        events: &[(NewEvent, EventId)],
    ) -> Result<Vec<BatchOutcome>, StoreError>;

    /// The tenant's event holding this idempotency key, if any.
    async fn key_holder(
        &self,
        tenant: &TenantId,
        key: &IdempotencyKey,
    ) -> Result<Option<KeyHolder>, StoreError>;

    /// The tenant's event with this id; `None` when it does not exist or is another tenant's.
    async fn get(&self, tenant: &TenantId, id: EventId) -> Result<Option<StoredEvent>, StoreError>;

    /// A page of the tenant's feed. A consumer that starts at [`crate::FeedPosition::START`] and
    /// keeps passing `next` back sees every event of the tenant exactly once, whatever order
    /// concurrent writers commit in.
    async fn feed_page(&self, tenant: &TenantId, query: &FeedQuery)
        -> Result<FeedPage, StoreError>;
}

/// Where API tokens are kept.
#[async_trait]
pub trait TokenStore: std::fmt::Debug + Send + Sync + 'static {
    /// The active (not revoked) token with this hash, if any.
    async fn find_active(&self, hash: &TokenHash) -> Result<Option<TokenRecord>, StoreError>;

    /// Stores a new token.
    async fn create(&self, token: &NewToken) -> Result<TokenRecord, StoreError>;

    /// Every token, newest first, revoked ones included.
    async fn list(&self) -> Result<Vec<TokenRecord>, StoreError>;

    /// Revokes a token; `false` when no active token has that id.
    async fn revoke(&self, id: TokenId) -> Result<bool, StoreError>;

    /// Sets a token's own rate limit (`None`: the default); `false` when no active token has
    /// that id.
    async fn set_limit(&self, id: TokenId, limit: Option<RateLimit>) -> Result<bool, StoreError>;
}

/// Where event schemas are kept: numbered versions per tenant and event type, and which types
/// are validated.
#[async_trait]
pub trait SchemaStore: std::fmt::Debug + Send + Sync + 'static {
    /// Registers `schema` as the next version, unless the type is validated and its latest
    /// version equals it as a JSON value (then that version, `created: false`). Registrations
    /// of one type are numbered one after the other, whatever the concurrency.
    async fn put(
        &self,
        tenant: &TenantId,
        event_type: &EventType,
        schema: &serde_json::Value,
    ) -> Result<SchemaPut, StoreError>;

    /// The latest version of a validated type; `None` when the type has no schema or it was
    /// deleted.
    async fn latest(
        &self,
        tenant: &TenantId,
        event_type: &EventType,
    ) -> Result<Option<SchemaRecord>, StoreError>;

    /// One version, deleted types included.
    async fn version(
        &self,
        tenant: &TenantId,
        event_type: &EventType,
        version: u32,
    ) -> Result<Option<SchemaRecord>, StoreError>;

    /// The latest version of each validated type of the tenant, by event type.
    async fn list(&self, tenant: &TenantId) -> Result<Vec<SchemaRecord>, StoreError>;

    /// Stops validating a type; `false` when it had no schema (or was already deleted).
    async fn delete(&self, tenant: &TenantId, event_type: &EventType) -> Result<bool, StoreError>;

    /// Every validated type of every tenant with its latest version number: what a cache of
    /// compiled schemas compares itself with.
    async fn active_versions(&self) -> Result<Vec<(TenantId, EventType, u32)>, StoreError>;
}

/// How storage keeps its size bounded (contract §14): retention of events, the keys window,
/// and erasure.
#[async_trait]
pub trait LifetimeStore: std::fmt::Debug + Send + Sync + 'static {
    /// One maintenance run: prepares the event ranges ahead, drops the expired ones, rotates
    /// and drops key generations. `None` when another server is running one now (one at a
    /// time does it).
    async fn maintain(
        &self,
        retention: &Retention,
    ) -> Result<Option<MaintenanceReport>, StoreError>;

    /// Erases one event of the tenant: gone from reads and the feed; its key stays within the
    /// window.
    async fn erase_event(&self, tenant: &TenantId, id: EventId)
        -> Result<EraseOutcome, StoreError>;

    /// Records an erasure by content, to be run in the background.
    async fn create_erasure(
        &self,
        tenant: &TenantId,
        id: ErasureId,
        request: &ErasureRequest,
    ) -> Result<ErasureRecord, StoreError>;

    /// One erasure of the tenant; `None` when it does not exist or is another tenant's.
    async fn erasure(
        &self,
        tenant: &TenantId,
        id: ErasureId,
    ) -> Result<Option<ErasureRecord>, StoreError>;

    /// The erasures of the tenant kept now (until maintenance forgets finished ones), and how
    /// many of them are not finished yet.
    async fn erasure_counts(&self, tenant: &TenantId) -> Result<ErasureCounts, StoreError>;

    /// One bounded step of the oldest unfinished erasure no other server is stepping: erases
    /// the matching events among the next `max_events` of its tenant's feed. `false` when there
    /// was nothing to do.
    async fn erasure_step(&self, max_events: u32) -> Result<bool, StoreError>;

    /// Storage's lifetime state, for metrics.
    async fn lifetime_stats(&self) -> Result<LifetimeStats, StoreError>;
}

/// How many erasures a tenant has ([`LifetimeStore::erasure_counts`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErasureCounts {
    /// Waiting or running.
    pub unfinished: u64,
    /// Every one kept, finished or not.
    pub kept: u64,
}

/// Whether storage is ready to serve: it answers, and its schema is current.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Ready.
    Ready,
    /// Storage answers but some migrations have not been applied.
    MigrationsPending {
        /// The migrations not applied yet, by description.
        pending: Vec<String>,
    },
}

/// What the operational endpoints ask of storage.
#[async_trait]
pub trait HealthCheck: std::fmt::Debug + Send + Sync + 'static {
    /// Whether storage answers and every migration is applied.
    async fn readiness(&self) -> Result<Readiness, StoreError>;
}

/// A change another server (or this one) made to the schemas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaChange {
    /// One type's schema was registered or deleted.
    Changed(TenantId, EventType),
    /// Changes may have been missed (the listening connection was lost and is back): compare
    /// everything.
    Resync,
}

/// Other servers' schema changes, read while awaited.
#[async_trait]
pub trait SchemaChangeFeed: Send {
    /// The next change; waits while storage is unreachable.
    async fn next(&mut self) -> SchemaChange;
}

/// What `intake relay` needs from storage: which tenants have events, how far each tenant's
/// feed was published into a stream, the feed itself, and claims that keep two relays from
/// publishing one (stream, tenant) at once.
#[async_trait]
pub trait RelayStore: std::fmt::Debug + Send + Sync + 'static {
    /// Every tenant that has events, or notices of erased ones to publish.
    async fn tenants(&self) -> Result<Vec<TenantId>, StoreError>;

    /// How far the tenant's feed was published into `stream` ([`FeedPosition::START`] when
    /// never).
    async fn position(&self, stream: &str, tenant: &TenantId) -> Result<FeedPosition, StoreError>;

    /// Records that `stream` acknowledged everything of the tenant's feed up to `position`,
    /// `published` among it since the last save. A position never moves back: saving one
    /// behind the stored one changes nothing (a relay that lost its claim may still finish a
    /// page). Any of `published` erased meanwhile gets its notice queued
    /// ([`RelayStore::erased_notices`]).
    async fn save_position(
        &self,
        stream: &str,
        tenant: &TenantId,
        position: FeedPosition,
        published: &[EventId],
    ) -> Result<(), StoreError>;

    /// Events of the tenant that were published into `stream` and erased since: the relay
    /// publishes a notice of each, then [`RelayStore::notices_sent`]. At most `limit`.
    async fn erased_notices(
        &self,
        stream: &str,
        tenant: &TenantId,
        limit: u16,
    ) -> Result<Vec<ErasedNotice>, StoreError>;

    /// Forgets notices JetStream acknowledged.
    async fn notices_sent(
        &self,
        stream: &str,
        tenant: &TenantId,
        ids: &[EventId],
    ) -> Result<(), StoreError>;

    /// How many of the tenant's events come after `position`, counted up to `cap`.
    async fn lag(
        &self,
        tenant: &TenantId,
        position: FeedPosition,
        cap: i64,
    ) -> Result<i64, StoreError>;

    /// The next page of the tenant's feed after `after`, in feed order as
    /// [`EventStore::feed_page`] reads it, each event with its own position (the relay stores
    /// how far JetStream acknowledged, event by event): at most `limit` events, and no more than
    /// `max_bytes` of their data (and CloudEvents context) as JSON text, but always the first.
    async fn relay_page(
        &self,
        tenant: &TenantId,
        after: FeedPosition,
        limit: u16,
        max_bytes: usize,
    ) -> Result<RelayPage, StoreError>;

    /// A holder of claims of its own (in PostgreSQL, a connection of its own): its claims last
    /// as long as it does, and end with it, or with the process.
    async fn claims(&self) -> Result<Box<dyn RelayClaims>, StoreError>;

    /// Records that the tenant's event can never be published into `stream`, and why (never
    /// its data): the relay then moves on past it. Parking it again changes nothing.
    async fn park(
        &self,
        stream: &str,
        tenant: &TenantId,
        event_id: EventId,
        reason: &str,
    ) -> Result<(), StoreError>;

    /// The tenant's events parked for `stream`, oldest first.
    async fn parked(&self, stream: &str, tenant: &TenantId)
        -> Result<Vec<ParkedEvent>, StoreError>;
}

/// A page of a tenant's feed for the relay ([`RelayStore::relay_page`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RelayPage {
    /// The events in feed order, each with its position in the feed.
    pub events: Vec<(FeedPosition, StoredEvent)>,
    /// Whether the page stopped at one of its limits (events or bytes): more may follow at once.
    pub full: bool,
}

/// An erased event the relay had published: it publishes a notice of it, once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasedNotice {
    /// The event.
    pub event_id: EventId,
    /// When it was erased.
    pub erased_at: DateTime<Utc>,
}

/// An event the relay can never publish into a stream ([`RelayStore::park`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedEvent {
    /// The event (read it as the API does).
    pub event_id: EventId,
    /// Why it cannot be published.
    pub reason: String,
    /// When the relay parked it.
    pub parked_at: DateTime<Utc>,
}

/// The claims of one relay process: each (stream, tenant) is published by one relay at a time.
#[async_trait]
pub trait RelayClaims: std::fmt::Debug + Send + Sync {
    /// Claims (stream, tenant) unless another holder has it; `true` when this one holds it now
    /// (claiming again what it holds is `true` too).
    async fn claim(&mut self, stream: &str, tenant: &TenantId) -> Result<bool, StoreError>;

    /// Whether every claim still holds; once `false`, they are all gone (another relay may own
    /// them now) and this holder is of no more use.
    async fn alive(&mut self) -> bool;
}
