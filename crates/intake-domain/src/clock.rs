//! A sender's clock (contract §15): when a request says it was sent (`sent_at`), how far the
//! sender's clock is off, and the correction of what it reports when that is more than transit
//! time.

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use crate::event::{json_type_name, writable_year, OccurredAt};
use crate::validation::{ErrorCode, FieldError, Limits};

/// What a request said of the sender's clock, read against the moment it was received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderClock {
    sent_at: DateTime<Utc>,
    /// Received minus sent.
    skew: Duration,
}

impl SenderClock {
    /// Reads `sent_at` (an RFC 3339 date-time with an offset) of a request received at
    /// `received`; `field` names it in the error (`sent_at`, or a header).
    pub fn read(value: &Value, received: DateTime<Utc>, field: &str) -> Result<Self, FieldError> {
        let invalid = |why: String| FieldError::new(field, ErrorCode::InvalidTimestamp, why);
        let raw = match value {
            Value::String(raw) => raw,
            other => {
                return Err(invalid(format!(
                    "{field} must be an RFC 3339 date-time string, not {}",
                    json_type_name(other)
                )))
            }
        };
        let sent_at = DateTime::parse_from_rfc3339(raw)
            .map_err(|_| {
                invalid(format!(
                    "{field} must be an RFC 3339 date-time with an offset, like \
                     2025-12-22T10:30:00Z: the moment the request was sent"
                ))
            })?
            .with_timezone(&Utc);
        if !writable_year(sent_at) {
            return Err(invalid(format!(
                "{field} is out of range: in UTC it must fall in the years 0001 to 9999"
            )));
        }
        let skew = received.signed_duration_since(sent_at);
        Ok(Self { sent_at, skew })
    }

    /// When the sender says it sent the request.
    pub fn sent_at(&self) -> DateTime<Utc> {
        self.sent_at
    }

    /// Received minus sent, in milliseconds: what the sender's clock is behind by (negative:
    /// ahead), transit time included.
    pub fn skew_ms(&self) -> i64 {
        self.skew.num_milliseconds()
    }

    /// The shift to add to what the sender reports: the skew, when it is larger (either way)
    /// than `limits.skew_correction_min`; below it, transit time is not taken for skew.
    pub fn correction(&self, limits: &Limits) -> Option<Duration> {
        (self.skew.abs() > limits.skew_correction_min).then_some(self.skew)
    }
}

/// An event's instant as the sender reported it, when intake corrected it for the sender's
/// clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Correction {
    /// `occurred_at` as sent.
    pub reported: OccurredAt,
    /// When the request says it was sent.
    pub sent_at: DateTime<Utc>,
}
