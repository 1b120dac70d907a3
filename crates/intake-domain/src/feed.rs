//! Reading events back: one stored event, and the feed of a tenant's events in a stable order.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::event::{EventId, EventType};

/// An event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Its id.
    pub event_id: EventId,
    /// What happened.
    pub event_type: String,
    /// When it happened (microsecond precision, UTC).
    pub occurred_at: DateTime<Utc>,
    /// When it was first received.
    pub received_at: DateTime<Utc>,
    /// The client's key.
    pub idempotency_key: String,
    /// The payload as sent.
    pub data: Value,
    /// The version of its type's schema the data was checked against; `None` when none.
    pub schema_version: Option<u32>,
    /// The CloudEvents context it came with (`id`, `source`, …); `None` for a plain event.
    pub cloudevent: Option<Value>,
    /// `occurred_at` as sent and the request's `sent_at`, when intake corrected `occurred_at`
    /// for the sender's clock (§15); `None` otherwise.
    pub correction: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

/// A place in a tenant's feed: the writing transaction's id and the row's insertion number.
/// The feed is ordered by this pair, and hands out only rows whose transaction is older than
/// every transaction still running, so no row can later appear behind a position already
/// handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct FeedPosition {
    /// The writing transaction's id (PostgreSQL's 64-bit `xid8`).
    pub tx: u64,
    /// The row's insertion number within the table.
    pub seq: i64,
}

impl FeedPosition {
    /// Before the first event.
    pub const START: FeedPosition = FeedPosition { tx: 0, seq: 0 };
}

/// What page of the feed to read.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedQuery {
    /// Read events after this position.
    pub after: FeedPosition,
    /// At most this many events (1–1000).
    pub limit: u16,
    /// Only events of this type, when set.
    pub event_type: Option<EventType>,
    /// At most about this many bytes of events' data and CloudEvents context: the page ends
    /// before the first event that would take it past, but always holds one event when there is
    /// one.
    pub max_bytes: usize,
}

/// A page of the feed, and where the next one starts.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedPage {
    /// Events in feed order.
    pub events: Vec<StoredEvent>,
    /// The position after the last event of the page (the query's own when the page is empty).
    pub next: FeedPosition,
}
