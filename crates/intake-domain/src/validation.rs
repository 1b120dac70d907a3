//! Field errors and the limits that validation applies.

use std::fmt;

use serde::Serialize;

/// The machine-readable reason a field was rejected; stable, part of the API contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// A required field is absent.
    MissingField,
    /// The field has the wrong JSON type (a number where a string belongs, say).
    InvalidType,
    /// A string is empty or longer than its limit.
    InvalidLength,
    /// An `event_type` with a character outside its alphabet or a bad first character.
    InvalidEventType,
    /// An `occurred_at` that is not an RFC 3339 date-time with an offset.
    InvalidTimestamp,
    /// An `occurred_at` further ahead of the server clock than the allowed skew.
    TimestampInFuture,
    /// An idempotency key with a space, a control or a non-ASCII character.
    InvalidIdempotencyKey,
    /// The `Idempotency-Key` header and the body's `idempotency_key` differ.
    IdempotencyKeyMismatch,
    /// `data` nests deeper than the configured limit.
    TooDeep,
    /// `data` holds a U+0000 character, which storage cannot keep; or a CloudEvent's string
    /// attribute holds a character the CloudEvents type system forbids (a control character or
    /// a noncharacter).
    InvalidCharacter,
    /// `data` holds a number with more digits or a larger exponent than storage keeps exactly;
    /// or a CloudEvent's number extension is outside the CloudEvents Integer range (int32).
    NumberOutOfRange,
    /// A top-level field the API does not know.
    UnknownField,
    /// A key that an earlier event holds with a different payload (an item of a batch).
    IdempotencyKeyReused,
    /// A value whose encoding is broken: a header that is not ASCII, malformed
    /// percent-encoding, or bytes that do not decode to UTF-8.
    InvalidEncoding,
    /// A field or attribute given more than once.
    DuplicateField,
    /// A field that intake sets itself and a client may not send.
    ReservedField,
    /// An erasure's `pointer` that is not a JSON Pointer into data.
    InvalidPointer,
    /// A CloudEvent whose `datacontenttype` is not JSON: intake takes JSON data only.
    UnsupportedContentType,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingField => "missing_field",
            Self::InvalidType => "invalid_type",
            Self::InvalidLength => "invalid_length",
            Self::InvalidEventType => "invalid_event_type",
            Self::InvalidTimestamp => "invalid_timestamp",
            Self::TimestampInFuture => "timestamp_in_future",
            Self::InvalidIdempotencyKey => "invalid_idempotency_key",
            Self::IdempotencyKeyMismatch => "idempotency_key_mismatch",
            Self::TooDeep => "too_deep",
            Self::InvalidCharacter => "invalid_character",
            Self::NumberOutOfRange => "number_out_of_range",
            Self::UnknownField => "unknown_field",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::InvalidEncoding => "invalid_encoding",
            Self::DuplicateField => "duplicate_field",
            Self::ReservedField => "reserved_field",
            Self::InvalidPointer => "invalid_pointer",
            Self::UnsupportedContentType => "unsupported_content_type",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem with one field of a request, reported to the client as
/// `{"field","code","message"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// The top-level field the problem is about (or the unknown field's name).
    pub field: String,
    /// The stable reason.
    pub code: ErrorCode,
    /// A sentence for people.
    pub message: String,
}

impl FieldError {
    /// A field error with its message.
    pub fn new(field: impl Into<String>, code: ErrorCode, message: impl Into<String>) -> Self {
        Self { field: field.into(), code, message: message.into() }
    }
}

/// The limits validation applies; configured under `[limits]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How far ahead of the server clock `occurred_at` may be.
    pub max_future_skew: chrono::Duration,
    /// How deeply `data` may nest (an object holding scalars has depth 1).
    pub max_data_depth: usize,
    /// A sender's clock off by more than this has the events it reports corrected (§15).
    pub skew_correction_min: chrono::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_future_skew: chrono::Duration::hours(1),
            max_data_depth: 32,
            skew_correction_min: chrono::Duration::seconds(60),
        }
    }
}
