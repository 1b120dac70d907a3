//! The domain of intake: what an event is, how a request body becomes one, how two payloads are
//! compared for idempotency, and the repository traits (the ports) that storage implements.
//!
//! This crate does no I/O and knows nothing of HTTP or SQL: it must not depend on actix, sqlx or
//! tokio. Everything here is deterministic given its inputs (the clock is passed in).

pub mod clock;
pub mod cloudevent;
pub mod debugger;
pub mod event;
pub mod feed;
pub mod fingerprint;
mod id;
pub mod lifetime;
pub mod new_event;
pub mod ports;
pub mod rate;
pub mod schema;
pub mod token;
pub mod validation;

#[cfg(feature = "test-support")]
pub mod memory;

pub use clock::{Correction, SenderClock};
pub use debugger::{DebugInbox, DebugMessage, DebugTransport};
pub use event::{
    EventData, EventId, EventType, IdempotencyKey, InvalidEventId, InvalidTenantId, OccurredAt,
    TenantId,
};
pub use feed::{FeedPage, FeedPosition, FeedQuery, StoredEvent};
pub use fingerprint::Fingerprint;
pub use lifetime::{
    EraseOutcome, ErasureId, ErasureRecord, ErasureRequest, ErasureStatus, InvalidErasureId,
    LifetimeStats, MaintenanceReport, Retention,
};
pub use new_event::{KeyBesideBody, NewEvent};
pub use ports::{
    BatchOutcome, ErasedNotice, ErasureCounts, EventStore, HealthCheck, IngestError, Ingested,
    KeyHolder, LifetimeStore, ParkedEvent, Readiness, RelayClaims, RelayPage, RelayStore,
    SchemaChange, SchemaChangeFeed, SchemaStore, StoreError, TokenStore,
};
pub use rate::{Budget, RateLimit, RateLimiter};
pub use schema::{
    CompiledSchema, InvalidSchema, SchemaLimits, SchemaPut, SchemaRecord, SchemaViolation,
};
pub use token::{InvalidTokenId, NewToken, Scope, TokenHash, TokenId, TokenRecord, UnknownScope};
pub use validation::{ErrorCode, FieldError, Limits};
