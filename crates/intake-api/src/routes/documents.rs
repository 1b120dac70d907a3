//! The request bodies of the ingest endpoints, as the OpenAPI document describes them. Bodies
//! are read as JSON objects and parsed field by field by the domain (so that every problem is
//! reported at once and unknown fields are named), so these types are never deserialized: they
//! document what that parsing accepts.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// An event to ingest (the request body of `POST /v1/events`, and each item of a batch).
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Event)]
pub(crate) struct EventInput {
    /// 1–128 ASCII letters, digits and `. _ - :`, starting with a letter or digit.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = "^[A-Za-z0-9][A-Za-z0-9._:-]*$",
        example = "user.created"
    )]
    event_type: String,
    /// RFC 3339 date-time with an offset; at most `limits.max_future_skew` ahead.
    #[schema(format = DateTime, example = "2025-12-22T10:30:00Z")]
    occurred_at: String,
    /// 1–255 printable ASCII characters without spaces; may come in the Idempotency-Key header
    /// instead.
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 255,
        pattern = "^[!-~]+$",
        example = "0f3f6f9b-9f0b-4c8d-9f18-5b6a9d9d2d41"
    )]
    idempotency_key: Option<String>,
    /// The payload: any JSON object.
    #[schema(value_type = Object)]
    data: serde_json::Value,
    /// When the client sent this request (RFC 3339 with an offset): the answer then says how far
    /// the client's clock is off (`clock_skew_ms`), and beyond `limits.skew_correction_min`
    /// (60 s) `occurred_at` is corrected by it. Not part of the payload a retry is compared on.
    #[schema(format = DateTime, nullable = false, example = "2025-12-22T10:30:01Z")]
    sent_at: Option<String>,
}

/// A CloudEvent 1.0 in structured mode (contract §11); besides the attributes below, extension
/// attributes (names of 1–20 lowercase letters and digits; string, integer or boolean values, an
/// integer being a CloudEvents Integer: -2147483648 to 2147483647, without fraction or exponent).
/// No string attribute may hold a control character (U+0000–U+001F, U+007F–U+009F) or a Unicode
/// noncharacter.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CloudEvent)]
pub(crate) struct CloudEventInput {
    /// Always `1.0`.
    #[schema(pattern = "^1\\.0$", example = "1.0")]
    specversion: String,
    /// Unique within `source`; with it, the event's idempotency identity.
    #[schema(min_length = 1, example = "A234-1234")]
    id: String,
    /// Where the event comes from.
    #[schema(min_length = 1, example = "https://shop.example/orders")]
    source: String,
    /// The event type: 1–128 ASCII letters, digits and `. _ - :`, starting with a letter or
    /// digit.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = "^[A-Za-z0-9][A-Za-z0-9._:-]*$",
        example = "com.example.order.placed"
    )]
    r#type: String,
    /// When it happened: RFC 3339; required here.
    #[schema(format = DateTime, example = "2025-12-22T10:30:00Z")]
    time: String,
    /// The subject within the source.
    #[schema(nullable = false, min_length = 1)]
    subject: Option<String>,
    /// The schema of `data`.
    #[schema(nullable = false, min_length = 1)]
    dataschema: Option<String>,
    /// The media type of `data`: JSON (`application/json` or `application/…+json`, UTF-8); any
    /// other is refused.
    #[schema(nullable = false, example = "application/json")]
    datacontenttype: Option<String>,
    /// The payload: a JSON object; absent is `{}`.
    #[schema(value_type = Object, nullable = false)]
    data: Option<Value>,
}

/// An event of a batch: like a single event, but its key must be in the item (batches take no
/// `Idempotency-Key` header).
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = BatchEvent)]
pub(crate) struct BatchEventInput {
    /// 1–128 ASCII letters, digits and `. _ - :`, starting with a letter or digit.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = "^[A-Za-z0-9][A-Za-z0-9._:-]*$",
        example = "user.created"
    )]
    event_type: String,
    /// RFC 3339 date-time with an offset; at most `limits.max_future_skew` ahead.
    #[schema(format = DateTime, example = "2025-12-22T10:30:00Z")]
    occurred_at: String,
    /// 1–255 printable ASCII characters without spaces.
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "^[!-~]+$",
        example = "0f3f6f9b-9f0b-4c8d-9f18-5b6a9d9d2d41"
    )]
    idempotency_key: String,
    /// The payload: any JSON object.
    #[schema(value_type = Object)]
    data: serde_json::Value,
}

/// A batch to ingest.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchInput {
    /// When the client sent this request (RFC 3339 with an offset), once for every event: see
    /// the single event's `sent_at`.
    #[schema(format = DateTime, nullable = false, example = "2025-12-22T10:30:01Z")]
    sent_at: Option<String>,
    /// 1 to 1,000 events.
    #[schema(min_items = 1, max_items = 1000)]
    events: Vec<BatchEventInput>,
}
