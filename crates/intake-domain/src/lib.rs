//! The domain of intake: what an event is, how a request body becomes one, how two payloads are
//! compared for idempotency, and the repository traits (the ports) that storage implements.
//!
//! This crate does no I/O and knows nothing of HTTP or SQL: it must not depend on actix, sqlx or
//! tokio. Everything here is deterministic given its inputs (the clock is passed in).

pub mod event;
pub mod feed;
pub mod fingerprint;
pub mod ports;
pub mod token;
pub mod validation;

#[cfg(feature = "test-support")]
pub mod memory;

pub use event::{EventData, EventId, EventType, IdempotencyKey, NewEvent, OccurredAt, TenantId};
pub use feed::{FeedPage, FeedPosition, FeedQuery, StoredEvent};
pub use fingerprint::Fingerprint;
pub use ports::{
    BatchOutcome, EventStore, HealthCheck, IngestError, Ingested, KeyHolder, PoolStats, Readiness,
    StoreError, TokenStore,
};
pub use token::{NewToken, Scope, TokenHash, TokenId, TokenRecord};
pub use validation::{ErrorCode, FieldError, Limits};
