//! How intake shows a stored event and an ingest answer: the one JSON definition of an event,
//! shared by `GET /v1/events/{id}`, the feed and the relay's message bodies.

use chrono::{DateTime, SecondsFormat, Utc};
use intake_domain::cloudevent;
use intake_domain::{Ingested, StoredEvent, TenantId};

use crate::ingest::Stored;
use serde::Serialize;
use serde_json::{Map, Value};
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
    /// `occurred_at` as sent, when intake corrected it for the sender's clock (the request's
    /// `sent_at` was off by more than `limits.skew_correction_min`); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime, nullable = false)]
    pub occurred_at_reported: Option<String>,
    /// The request's `sent_at`, when intake corrected `occurred_at` by it; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime, nullable = false)]
    pub sent_at: Option<String>,
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
            occurred_at_reported: e.correction.map(|(reported, _)| format_timestamp(reported)),
            sent_at: e.correction.map(|(_, sent_at)| format_timestamp(sent_at)),
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
    /// When the request gave `sent_at`: when it was received minus `sent_at`, in milliseconds
    /// (how far the sender's clock is behind; negative: ahead).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, example = 12)]
    pub clock_skew_ms: Option<i64>,
}

impl From<&Ingested> for Accepted {
    fn from(i: &Ingested) -> Self {
        Self {
            status: "ok",
            event_id: i.event_id.to_string(),
            received_at: format_timestamp(i.received_at),
            deduplicated: i.deduplicated,
            clock_skew_ms: None,
        }
    }
}

impl From<&Stored<Ingested>> for Accepted {
    fn from(stored: &Stored<Ingested>) -> Self {
        Self { clock_skew_ms: stored.clock_skew_ms, ..Self::from(&stored.outcome) }
    }
}

/// A stored event as a structured CloudEvent: its attributes as it came (or `source`
/// `/intake/<tenant>` and its event id, for a plain event), `recordedtime` when intake received
/// it, and `reportedtime` and `senttime` when intake corrected `time` for the sender's clock.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = StoredCloudEvent)]
pub struct CloudEventBody {
    /// `1.0`.
    #[schema(value_type = String)]
    specversion: &'static str,
    /// The CloudEvent's id.
    id: String,
    /// The CloudEvent's source.
    source: String,
    /// The event type.
    r#type: String,
    /// When it happened.
    #[schema(format = DateTime)]
    time: String,
    /// When intake received it.
    #[schema(format = DateTime)]
    recordedtime: String,
    /// When intake corrected `time` for the sender's clock (its request's `sent_at` was off by
    /// more than `limits.skew_correction_min`): `time` as the sender reported it (the plain
    /// event's `occurred_at_reported`); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime, nullable = false)]
    reportedtime: Option<String>,
    /// When intake corrected `time` for the sender's clock: when the request says it was sent
    /// (its `sent_at` or `Intake-Sent-At`; the plain event's `sent_at`); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime, nullable = false)]
    senttime: Option<String>,
    /// `application/json` unless it came with another.
    datacontenttype: String,
    /// The subject within the source, when it came with one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(ignore)]
    subject: Option<Value>,
    /// The schema of `data`, when it came with one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(ignore)]
    dataschema: Option<Value>,
    /// Extension attributes, as they came.
    #[serde(flatten)]
    #[schema(ignore)]
    extensions: Map<String, Value>,
    /// The payload.
    #[schema(value_type = Object)]
    data: Value,
}

impl CloudEventBody {
    /// A stored event of `tenant` as a structured CloudEvent (contract §11).
    pub fn of(event: StoredEvent, tenant: &TenantId) -> Self {
        let mut attributes = cloudevent::to_structured(&event, tenant, format_timestamp);
        let mut text = |name: &str| match attributes.remove(name) {
            Some(Value::String(s)) => s,
            Some(other) => other.to_string(),
            None => String::new(),
        };
        let (id, source, r#type) = (text("id"), text("source"), text("type"));
        let (time, recordedtime) = (text("time"), text("recordedtime"));
        let datacontenttype = text("datacontenttype");
        let mut timestamp = |name: &str| match attributes.remove(name) {
            Some(Value::String(s)) => Some(s),
            Some(other) => Some(other.to_string()),
            None => None,
        };
        let (reportedtime, senttime) = (timestamp("reportedtime"), timestamp("senttime"));
        attributes.remove("specversion");
        Self {
            specversion: cloudevent::SPEC_VERSION,
            id,
            source,
            r#type,
            time,
            recordedtime,
            reportedtime,
            senttime,
            datacontenttype,
            subject: attributes.remove("subject"),
            dataschema: attributes.remove("dataschema"),
            data: attributes.remove("data").unwrap_or(Value::Object(Map::new())),
            extensions: attributes,
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

    #[test]
    fn a_corrected_event_reads_back_with_what_was_reported_everywhere_it_is_shown() {
        let at = |micros: i64| DateTime::<Utc>::from_timestamp_micros(micros).expect("in range");
        let event = StoredEvent {
            event_id: intake_domain::EventId::generate(at(1_766_399_400_000_000)),
            event_type: "user.created".into(),
            occurred_at: at(1_766_400_000_000_000),
            received_at: at(1_766_400_005_000_000),
            idempotency_key: "k".into(),
            data: serde_json::json!({}),
            schema_version: None,
            cloudevent: None,
            correction: Some((at(1_766_399_400_000_000), at(1_766_399_404_000_000))),
        };
        let body = serde_json::to_value(EventBody::from(event.clone())).expect("json");
        assert_eq!(body["occurred_at"], "2025-12-22T10:40:00Z");
        assert_eq!(body["occurred_at_reported"], "2025-12-22T10:30:00Z");
        assert_eq!(body["sent_at"], "2025-12-22T10:30:04Z");
        let plain = StoredEvent { correction: None, ..event };
        let body = serde_json::to_value(EventBody::from(plain)).expect("json");
        assert!(body.get("occurred_at_reported").is_none() && body.get("sent_at").is_none());
    }
}
