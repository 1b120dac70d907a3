//! How intake shows a stored event and an ingest answer: the one JSON definition of an event,
//! shared by `GET /v1/events/{id}`, the feed and the relay's message bodies.

use chrono::{DateTime, SecondsFormat, Utc};
use intake_domain::{Ingested, StoredEvent};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// Formats an instant as intake writes every timestamp: RFC 3339 in UTC with `Z`, and only as
/// many fractional digits as it needs (none, 3 or 6).
pub fn format_timestamp(instant: DateTime<Utc>) -> String {
    instant.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// An event as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct EventBody {
    /// The event's id.
    #[schema(example = "evt_01a21a278c5778fcb1b0b514bf29aa92")]
    pub event_id: String,
    /// What happened.
    #[schema(example = "user.created")]
    pub event_type: String,
    /// When it happened (RFC 3339, UTC, microsecond precision).
    #[schema(format = DateTime)]
    pub occurred_at: String,
    /// When it was first received (RFC 3339, UTC).
    #[schema(format = DateTime)]
    pub received_at: String,
    /// The client's key.
    pub idempotency_key: String,
    /// The payload as sent.
    #[schema(value_type = Object)]
    pub data: Value,
    /// The version of its type's schema the data was checked against; null when its type had
    /// no schema.
    #[schema(example = 1)]
    pub schema_version: Option<u32>,
}

impl From<StoredEvent> for EventBody {
    fn from(e: StoredEvent) -> Self {
        Self {
            event_id: e.event_id.to_string(),
            event_type: e.event_type,
            occurred_at: format_timestamp(e.occurred_at),
            received_at: format_timestamp(e.received_at),
            idempotency_key: e.idempotency_key,
            data: e.data,
            schema_version: e.schema_version,
        }
    }
}

/// The answer to an accepted event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Accepted {
    /// Always `ok`.
    #[schema(value_type = String, example = "ok")]
    pub status: &'static str,
    /// The stored event's id (the original one on a retry).
    #[schema(example = "evt_01a21a278c5778fcb1b0b514bf29aa92")]
    pub event_id: String,
    /// When the event was first received (RFC 3339, UTC).
    #[schema(format = DateTime)]
    pub received_at: String,
    /// Whether an earlier request had already stored this event.
    pub deduplicated: bool,
}

impl From<&Ingested> for Accepted {
    fn from(i: &Ingested) -> Self {
        Self {
            status: "ok",
            event_id: i.event_id.to_string(),
            received_at: format_timestamp(i.received_at),
            deduplicated: i.deduplicated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_written_in_utc_with_as_few_fractional_digits_as_needed() {
        let at = |micros: i64| DateTime::<Utc>::from_timestamp_micros(micros).expect("in range");
        assert_eq!(format_timestamp(at(1_766_399_400_000_000)), "2025-12-22T10:30:00Z");
        assert_eq!(format_timestamp(at(1_766_399_400_120_000)), "2025-12-22T10:30:00.120Z");
        assert_eq!(format_timestamp(at(1_766_399_400_000_001)), "2025-12-22T10:30:00.000001Z");
    }
}
