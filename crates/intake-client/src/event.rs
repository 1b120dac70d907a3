//! An event as the caller builds it, and the server's answer to one sent alone.

use std::fmt;

use chrono::{DateTime, FixedOffset, SecondsFormat, SubsecRound, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::SendError;

/// One event to send: its type and data, and optionally when it happened (default: when it is
/// queued) and its idempotency key (default: a UUID v4 made once, when it is queued, and kept
/// through every retry).
///
/// The client checks nothing the server checks (§3 of the contract): an event the server refuses
/// reaches the `on_error` callback (or `send_now`'s error) with every problem it has.
#[derive(Clone)]
pub struct Event {
    event_type: String,
    data: Value,
    occurred_at: Option<DateTime<FixedOffset>>,
    idempotency_key: Option<String>,
}

impl Event {
    /// An event of `event_type` carrying `data` (a JSON object).
    pub fn new(event_type: impl Into<String>, data: Value) -> Self {
        Self { event_type: event_type.into(), data, occurred_at: None, idempotency_key: None }
    }

    /// When the event happened, in any time zone (it is sent with its offset).
    #[must_use]
    pub fn occurred_at<Tz: TimeZone>(mut self, at: DateTime<Tz>) -> Self {
        self.occurred_at = Some(at.fixed_offset());
        self
    }

    /// The idempotency key: the same key sent again with the same payload (type, `occurred_at`
    /// instant, data) is a replay of the same event, never a second one.
    #[must_use]
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// The event's type.
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// The key given with [`Event::idempotency_key`], if any.
    pub fn key(&self) -> Option<&str> {
        self.idempotency_key.as_deref()
    }

    /// The event as it travels: its key fixed (made now when none was given), `occurred_at`
    /// defaulting to `now`, written as JSON once so that every retry sends the same bytes.
    /// `sent_at` is added for an event sent on its own.
    pub(crate) fn prepare(
        self,
        now: DateTime<Utc>,
        sent_at: Option<&str>,
    ) -> Result<Prepared, SendError> {
        let key = self.idempotency_key.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        // The server keeps microseconds: a default time is sent as it will be stored.
        let occurred_at = self.occurred_at.unwrap_or_else(|| now.trunc_subsecs(6).fixed_offset());
        let json = serde_json::to_string(&WireEvent {
            event_type: &self.event_type,
            occurred_at: &occurred_at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            idempotency_key: &key,
            data: &self.data,
            sent_at,
        })
        .map_err(SendError::Json)?;
        Ok(Prepared { key, event_type: self.event_type, occurred_at, json })
    }
}

/// An event's data is the caller's: it never shows, not even in a debug format.
impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("event_type", &self.event_type)
            .field("occurred_at", &self.occurred_at)
            .field("idempotency_key", &self.idempotency_key)
            .finish_non_exhaustive()
    }
}

/// The JSON of one event, as `POST /v1/events` and a batch's items take it.
#[derive(Serialize)]
struct WireEvent<'a> {
    event_type: &'a str,
    occurred_at: &'a str,
    idempotency_key: &'a str,
    data: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    sent_at: Option<&'a str>,
}

/// An event ready to travel.
pub(crate) struct Prepared {
    pub(crate) key: String,
    pub(crate) event_type: String,
    pub(crate) occurred_at: DateTime<FixedOffset>,
    /// The event's JSON, written once.
    pub(crate) json: String,
}

/// The server's answer to an event sent with [`crate::Client::send_now`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Accepted {
    /// The stored event's id (the original one when the event was already stored).
    pub event_id: String,
    /// When the server first received the event.
    pub received_at: DateTime<Utc>,
    /// Whether an earlier request had already stored this event (a replay).
    pub deduplicated: bool,
    /// When the server received the request minus when this client says it sent it, in
    /// milliseconds: how far this machine's clock is behind the server's (negative: ahead),
    /// plus the transit time.
    #[serde(default)]
    pub clock_skew_ms: Option<i64>,
    /// The event's idempotency key (the one given, or the one the client made).
    #[serde(skip)]
    pub idempotency_key: String,
    /// The event's `occurred_at` as sent (the one given, or when it was sent). Sending the
    /// event again as a retry needs this key and this time: with another time it is another
    /// payload, which the server refuses under the same key (`422`).
    #[serde(skip)]
    pub occurred_at: DateTime<FixedOffset>,
}

/// Now, as `sent_at` is written: RFC 3339 in UTC, to the millisecond.
pub(crate) fn sent_at(now: DateTime<Utc>) -> String {
    now.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).expect("RFC 3339").with_timezone(&Utc)
    }

    #[test]
    fn an_event_without_key_or_time_gets_a_uuid_and_the_time_it_was_queued() {
        let prepared = Event::new("user.created", json!({"a": 1}))
            .prepare(at("2025-12-22T10:30:00.250Z"), None)
            .expect("prepared");
        assert!(uuid::Uuid::parse_str(&prepared.key).is_ok(), "{}", prepared.key);
        let sent: Value = serde_json::from_str(&prepared.json).expect("json");
        assert_eq!(
            sent,
            json!({"event_type": "user.created", "occurred_at": "2025-12-22T10:30:00.250Z",
                   "idempotency_key": prepared.key, "data": {"a": 1}})
        );
    }

    #[test]
    fn a_given_key_and_time_are_sent_as_given_with_their_offset() {
        let occurred = DateTime::parse_from_rfc3339("2025-12-22T12:30:00+02:00").expect("time");
        let prepared = Event::new("t", json!({}))
            .occurred_at(occurred)
            .idempotency_key("k-1")
            .prepare(Utc::now(), Some("2025-12-22T10:31:00.000Z"))
            .expect("prepared");
        let sent: Value = serde_json::from_str(&prepared.json).expect("json");
        assert_eq!(sent["occurred_at"], "2025-12-22T12:30:00+02:00");
        assert_eq!(sent["idempotency_key"], "k-1");
        assert_eq!(sent["sent_at"], "2025-12-22T10:31:00.000Z");
        assert_eq!(prepared.key, "k-1");
    }

    #[test]
    fn the_debug_format_leaves_the_data_out() {
        let shown = format!("{:?}", Event::new("t", json!({"secret": "marker-123"})));
        assert!(!shown.contains("marker-123"), "{shown}");
    }
}
