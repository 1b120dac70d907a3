//! The values an event is made of.
//!
//! Each is a newtype with a private inner value and a fallible `parse`: once one exists, it is
//! valid. [`crate::NewEvent`] puts them together.

use std::fmt;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::validation::{ErrorCode, FieldError, Limits};

/// A tenant name that is not 1–64 characters of `a-z 0-9 - _`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tenant {0:?} must be 1-64 characters of lower-case letters, digits, '-' and '_'")]
pub struct InvalidTenantId(String);

/// The tenant a token belongs to; every event and key is scoped to one.
///
/// 1–64 characters of lower-case ASCII letters, digits, `-` and `_`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(String);

impl TenantId {
    /// Accepts a tenant name, or says why not.
    pub fn parse(raw: &str) -> Result<Self, InvalidTenantId> {
        let ok_len = (1..=64).contains(&raw.len());
        let ok_chars = raw
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok_len && ok_chars {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidTenantId(raw.to_owned()))
        }
    }

    /// The tenant name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

crate::id::prefixed_id!(
    /// A stored event's id: a time-ordered UUID (v7) made when the event was received, written
    /// `evt_` + 32 hex digits.
    EventId,
    InvalidEventId,
    "evt_",
    "an event id"
);

/// What happened, like `user.created`: 1–128 ASCII letters, digits and `. _ - :`, starting with a
/// letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventType(String);

impl EventType {
    /// The longest event type accepted.
    pub const MAX_LEN: usize = 128;

    /// Accepts an event type, or says why not.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let field = "event_type";
        if raw.is_empty() || raw.len() > Self::MAX_LEN {
            return Err(FieldError::new(
                field,
                ErrorCode::InvalidLength,
                format!("event_type must be 1-{} characters long", Self::MAX_LEN),
            ));
        }
        let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':');
        let starts_well = raw.as_bytes()[0].is_ascii_alphanumeric();
        if !starts_well || !raw.bytes().all(allowed) {
            return Err(FieldError::new(
                field,
                ErrorCode::InvalidEventType,
                "event_type may hold only ASCII letters, digits and . _ - : and must start with a \
                 letter or digit",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The event type as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// When the event happened, at microsecond precision, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OccurredAt(DateTime<Utc>);

/// Whether an instant's year in UTC is one RFC 3339 can write (0001–9999): `0000-01-01T00:00:00+14:00`
/// parses, but in UTC it falls in year -1, which no RFC 3339 reader takes back.
pub fn writable_year(instant: DateTime<Utc>) -> bool {
    (1..=9999).contains(&chrono::Datelike::year(&instant))
}

impl OccurredAt {
    /// Accepts an RFC 3339 date-time with an offset (`Z` or `±hh:mm`) that is not more than
    /// `max_future_skew` ahead of `now`. Digits beyond microseconds are truncated.
    pub fn parse(raw: &str, now: DateTime<Utc>, limits: &Limits) -> Result<Self, FieldError> {
        let field = "occurred_at";
        let parsed = DateTime::parse_from_rfc3339(raw).map_err(|_| {
            FieldError::new(
                field,
                ErrorCode::InvalidTimestamp,
                "occurred_at must be an RFC 3339 date-time with an offset, like \
                 2025-12-22T10:30:00Z or 2025-12-22T12:30:00+02:00",
            )
        })?;
        let instant = Self::from_micros(parsed.timestamp_micros())
            .filter(|instant| writable_year(instant.0))
            .ok_or_else(|| {
                FieldError::new(
                    field,
                    ErrorCode::InvalidTimestamp,
                    "occurred_at is out of range: in UTC it must fall in the years 0001 to 9999",
                )
            })?;
        if instant.0 > now + limits.max_future_skew {
            return Err(FieldError::new(
                field,
                ErrorCode::TimestampInFuture,
                format!(
                    "occurred_at is more than {}s ahead of the server clock",
                    limits.max_future_skew.num_seconds()
                ),
            ));
        }
        Ok(instant)
    }

    /// The instant moved by `by`; `None` out of range.
    pub fn shifted(&self, by: chrono::Duration) -> Option<Self> {
        self.0.checked_add_signed(by).map(Self)
    }

    fn from_micros(micros: i64) -> Option<Self> {
        DateTime::from_timestamp_micros(micros).map(Self)
    }

    /// The instant in UTC.
    pub fn as_utc(&self) -> DateTime<Utc> {
        self.0
    }

    /// Microseconds since the Unix epoch; the form the fingerprint uses.
    pub fn unix_micros(&self) -> i64 {
        self.0.timestamp_micros()
    }
}

/// A client-chosen key that makes a retry safe: 1–255 printable ASCII characters, no spaces.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// A key intake derived itself, known to be valid (a CloudEvent's, say).
    pub(crate) fn derived(key: String) -> Self {
        Self(key)
    }

    /// The longest key accepted.
    pub const MAX_LEN: usize = 255;

    /// Accepts a key, or says why not.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let field = "idempotency_key";
        if raw.is_empty() || raw.len() > Self::MAX_LEN {
            return Err(FieldError::new(
                field,
                ErrorCode::InvalidLength,
                format!("idempotency_key must be 1-{} characters long", Self::MAX_LEN),
            ));
        }
        if !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(FieldError::new(
                field,
                ErrorCode::InvalidIdempotencyKey,
                "idempotency_key may hold only printable ASCII characters, without spaces",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The key as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The event's payload: a JSON object, stored and returned as sent.
#[derive(Debug, Clone, PartialEq)]
pub struct EventData {
    /// Always a JSON object.
    value: Value,
    /// The object written once, keys sorted: what the fingerprint hashes and storage keeps.
    json: String,
    /// The stored spelling, when it differs from `json`.
    stored: Option<String>,
}

impl EventData {
    /// The most digits a number in `data` may have.
    pub const MAX_NUMBER_DIGITS: usize = 1000;
    /// The largest exponent (either sign) a number in `data` may have.
    pub const MAX_NUMBER_EXPONENT: u32 = 1000;

    /// Accepts a JSON object nesting at most `limits.max_data_depth` levels, whose strings hold
    /// no U+0000 and whose numbers stay within [`Self::MAX_NUMBER_DIGITS`] digits and an
    /// exponent of [`Self::MAX_NUMBER_EXPONENT`]: what PostgreSQL's jsonb stores exactly.
    pub fn parse(value: Value, limits: &Limits) -> Result<Self, FieldError> {
        let Value::Object(map) = value else {
            return Err(FieldError::new(
                "data",
                ErrorCode::InvalidType,
                format!("data must be a JSON object, not {}", json_type_name(&value)),
            ));
        };
        inspect(&map, limits)?;
        // serde_json's map keeps keys sorted (the `preserve_order` feature is off), so equal
        // values are written identically; a test guards that assumption. The fingerprint hashes
        // this text, so a failure to write it is an error, never an empty text.
        let written = |e: serde_json::Error| {
            FieldError::new("data", ErrorCode::InvalidType, format!("data cannot be written: {e}"))
        };
        let json = serde_json::to_string(&map).map_err(written)?;
        // serde_json spells an exponent `e+N` even when it came as `eN`: what is stored drops
        // the sign again, so that no number reads back longer than it was sent. (The
        // fingerprint keeps hashing `json`, as it always has.)
        let stored = if json.contains("e+") {
            Some(unsigned_exponents(&map).map_err(written)?)
        } else {
            None
        };
        Ok(Self { value: Value::Object(map), json, stored })
    }

    /// The object as JSON text as it is stored and read back: `canonical_json`, with numbers'
    /// exponents written without a `+`.
    pub fn stored_json(&self) -> &str {
        self.stored.as_deref().unwrap_or(&self.json)
    }

    /// The object, as a JSON value (what a schema checks).
    pub fn as_value(&self) -> &Value {
        &self.value
    }

    /// The object as JSON text, keys sorted: one spelling for every equal value.
    pub fn canonical_json(&self) -> &str {
        &self.json
    }

    /// The object as a JSON value, owned.
    pub fn to_value(&self) -> Value {
        self.value.clone()
    }
}

/// A JSON value as intake stores it: compact, numbers' exponents without a `+` (`1e1000`, not
/// `1e+1000`), so that it is never longer than the value as sent.
pub fn stored_text(value: &Value) -> String {
    unsigned_exponents(value).unwrap_or_else(|_| value.to_string())
}

/// Anything serializable as intake writes JSON out (answers, relay messages): compact, numbers'
/// exponents without a `+`, so that an event never reads back longer than it was sent.
pub fn json_bytes<T: serde::Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    unsigned_exponents(value).map(String::into_bytes)
}

/// `value` as compact JSON whose numbers' exponents carry no `+`.
fn unsigned_exponents<T: serde::Serialize + ?Sized>(
    value: &T,
) -> Result<String, serde_json::Error> {
    struct Unsigned;
    impl serde_json::ser::Formatter for Unsigned {
        fn write_number_str<W: ?Sized + std::io::Write>(
            &mut self,
            writer: &mut W,
            value: &str,
        ) -> std::io::Result<()> {
            match value.find("e+").or_else(|| value.find("E+")) {
                Some(at) => {
                    writer.write_all(&value.as_bytes()[..=at])?;
                    writer.write_all(&value.as_bytes()[at + 2..])
                }
                None => writer.write_all(value.as_bytes()),
            }
        }
    }
    let mut out = Vec::new();
    value.serialize(&mut serde_json::Serializer::with_formatter(&mut out, Unsigned))?;
    // Only valid UTF-8 was written (the value's own strings and ASCII).
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Walks `data` once, iteratively (a hostile input cannot overflow the stack here), checking
/// its depth (`{}` and `{"a":1}` are 1 deep, `{"a":{"b":[]}}` is 3), strings and numbers.
fn inspect(map: &Map<String, Value>, limits: &Limits) -> Result<(), FieldError> {
    let nul = || {
        FieldError::new(
            "data",
            ErrorCode::InvalidCharacter,
            "data must not contain the character U+0000 (\\u0000)",
        )
    };
    if map.keys().any(|k| k.contains('\0')) {
        return Err(nul());
    }
    let mut deepest = 1;
    // Each entry is a value and the depth of the container holding it.
    let mut pending: Vec<(&Value, usize)> = map.values().map(|v| (v, 1)).collect();
    while let Some((value, parent_depth)) = pending.pop() {
        match value {
            Value::Object(m) => {
                if m.keys().any(|k| k.contains('\0')) {
                    return Err(nul());
                }
                deepest = deepest.max(parent_depth + 1);
                pending.extend(m.values().map(|v| (v, parent_depth + 1)));
            }
            Value::Array(a) => {
                deepest = deepest.max(parent_depth + 1);
                pending.extend(a.iter().map(|v| (v, parent_depth + 1)));
            }
            Value::String(s) if s.contains('\0') => return Err(nul()),
            Value::Number(n) if !number_in_range(n.as_str()) => {
                return Err(FieldError::new(
                    "data",
                    ErrorCode::NumberOutOfRange,
                    format!(
                        "data holds a number with more than {} digits or an exponent beyond \
                         ±{}",
                        EventData::MAX_NUMBER_DIGITS,
                        EventData::MAX_NUMBER_EXPONENT
                    ),
                ))
            }
            _ => {}
        }
        if deepest > limits.max_data_depth {
            return Err(FieldError::new(
                "data",
                ErrorCode::TooDeep,
                format!("data nests more than {} levels deep", limits.max_data_depth),
            ));
        }
    }
    Ok(())
}

/// Whether a JSON number's text (already valid JSON) is within the digit and exponent limits.
fn number_in_range(text: &str) -> bool {
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], &text[i + 1..]),
        None => (text, ""),
    };
    let digits = mantissa.bytes().filter(u8::is_ascii_digit).count();
    let exponent_ok = exponent.is_empty()
        || exponent
            .trim_start_matches(['+', '-'])
            .parse::<u32>()
            .is_ok_and(|e| e <= EventData::MAX_NUMBER_EXPONENT);
    digits <= EventData::MAX_NUMBER_DIGITS && exponent_ok
}

/// The JSON type of a value, for messages.
pub fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
