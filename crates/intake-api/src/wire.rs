//! How the API writes and reads domain values on the wire: timestamps, the `Idempotency-Key`
//! header (a bare token or an RFC 8941 string), and which format (plain or CloudEvents) a
//! request carries.

use actix_web::http::header::{self, HeaderMap, HeaderValue};
use intake_domain::{ErrorCode, FieldError, IdempotencyKey, KeyBesideBody};
use serde_json::{Map, Value};

/// The header a single event's key may come in instead of (or as well as) the body.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// When a CloudEvents request says it was sent (§15); intake's JSON says it in `sent_at`.
pub const SENT_AT_HEADER: &str = "intake-sent-at";

pub use intake_service::format_timestamp;

/// A body as JSON whose numbers are spelled as they were sent (`1e1000`, never a thousand
/// digits nor `1e+1000`): an event or a schema never reads back longer than it was sent.
pub fn as_written<T: serde::Serialize>(body: &T) -> Result<Vec<u8>, crate::problem::ApiError> {
    intake_domain::event::json_bytes(body).map_err(|e| crate::problem::ApiError::Internal(e.into()))
}

/// The key of an `Idempotency-Key` header, for the domain to weigh against the body's.
pub fn key_beside_body(header: Option<&HeaderValue>) -> KeyBesideBody {
    KeyBesideBody {
        key: header.map(|value| idempotency_key(value.as_bytes())),
        source: "the Idempotency-Key header",
    }
}

/// Reads an `Idempotency-Key` header: a bare token or a structured-field string (`"…"`, with
/// `\"` and `\\` escapes).
pub fn idempotency_key(raw: &[u8]) -> Result<IdempotencyKey, FieldError> {
    let invalid = || {
        FieldError::new(
            "idempotency_key",
            ErrorCode::InvalidIdempotencyKey,
            "the Idempotency-Key header must be printable ASCII, bare or as a quoted string",
        )
    };
    // Only HTTP's optional whitespace (space, tab) surrounds a value; `str::trim` would also
    // take Unicode spaces such as U+0085 and turn "\u{85}k" into the key "k".
    let text = std::str::from_utf8(raw).map_err(|_| invalid())?.trim_matches([' ', '\t']);
    let unquoted = match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(inner) => unescape_sf_string(inner).ok_or_else(invalid)?,
        None => text.to_owned(),
    };
    IdempotencyKey::parse(&unquoted)
}

/// Undoes the escapes of an RFC 8941 string's inside; `None` when an escape is malformed.
fn unescape_sf_string(inner: &str) -> Option<String> {
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next()? {
                e @ ('"' | '\\') => out.push(e),
                _ => return None,
            },
            '"' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_idempotency_key_header_may_be_bare_or_a_quoted_string() {
        let cases: [(&[u8], &str); 5] = [
            (b"abc-123", "abc-123"),
            (b"\"abc-123\"", "abc-123"),
            (b"\"a\\\"b\"", "a\"b"),
            (b"  abc  ", "abc"),
            (b"\tabc\t", "abc"),
        ];
        for (raw, key) in cases {
            let parsed = idempotency_key(raw).expect("valid header");
            assert_eq!(parsed.as_str(), key, "for {:?}", String::from_utf8_lossy(raw));
        }
        // U+0085 and U+00A0 are whitespace to Unicode, not to HTTP: part of the key, refused.
        let unicode_spaces = [&b"\xc2\x85k"[..], b"k\xc2\xa0"];
        for raw in [&b"\"bad\\escape\""[..], b"\"\"", b"two words", b"\xff\xfe"]
            .into_iter()
            .chain(unicode_spaces)
        {
            assert!(idempotency_key(raw).is_err(), "{:?} should be rejected", raw);
        }
    }
}

/// How a request body carries its event (contract §11), by media type and headers alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventFormat {
    /// intake's own JSON.
    Plain,
    /// A CloudEvent in structured mode (`application/cloudevents+json`).
    Structured,
    /// A CloudEvent in binary mode: `ce-*` headers, the body is `data`.
    Binary,
    /// CloudEvents in batched mode (`application/cloudevents-batch+json`).
    Batched,
}

/// The media type of structured CloudEvents.
pub const CLOUDEVENTS_JSON: &str = "application/cloudevents+json";
/// The media type of batched CloudEvents.
pub const CLOUDEVENTS_BATCH_JSON: &str = "application/cloudevents-batch+json";

/// The format of a request: by its media type, or binary mode when it carries
/// `ce-specversion`.
pub fn event_format(headers: &HeaderMap) -> EventFormat {
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    match media_type.as_deref() {
        Some(CLOUDEVENTS_JSON) => EventFormat::Structured,
        Some(CLOUDEVENTS_BATCH_JSON) => EventFormat::Batched,
        _ if headers.contains_key("ce-specversion") => EventFormat::Binary,
        _ => EventFormat::Plain,
    }
}

/// Refuses a binary-mode request whose data is declared as something other than JSON: in binary
/// mode `datacontenttype` is the body's media type (the HTTP binding maps it to `Content-Type`),
/// so a `ce-datacontenttype` that is not JSON is the same `415` as such a `Content-Type`, never
/// a JSON body stored under another type. (`Content-Type` itself is checked where the body is
/// read.)
pub fn require_json_data(headers: &HeaderMap) -> Result<(), crate::problem::ApiError> {
    for value in headers.get_all("ce-datacontenttype") {
        let shown = String::from_utf8_lossy(value.as_bytes());
        if !intake_domain::cloudevent::is_json_media_type(&shown) {
            return Err(crate::problem::ApiError::UnsupportedContentType(format!(
                "ce-datacontenttype {shown:?} is not supported: intake takes CloudEvents whose \
                 data is JSON (application/json or application/…+json)"
            )));
        }
    }
    Ok(())
}

/// The essence of a media type (`application/json`), lowercased, for comparing two.
fn media_essence(text: &str) -> String {
    text.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}

/// The CloudEvents attributes of a binary-mode request: every `ce-` header, without the
/// prefix, its value percent-decoded (the HTTP binding's encoding); `datacontenttype` from
/// `Content-Type`, which a `ce-datacontenttype` naming another media type contradicts. A value
/// that is not ASCII, or not UTF-8 once decoded, is refused naming its header.
pub fn binary_attributes(headers: &HeaderMap) -> Result<Map<String, Value>, Vec<FieldError>> {
    let mut attributes = Map::new();
    let mut errors = Vec::new();
    for name in headers.keys() {
        let field = name.as_str();
        let Some(attribute) = field.strip_prefix("ce-") else {
            continue;
        };
        let mut values = headers.get_all(name);
        let Some(value) = values.next() else { continue };
        if values.next().is_some() {
            errors.push(FieldError::new(
                field,
                ErrorCode::DuplicateField,
                format!("{field} is given more than once; send each attribute once"),
            ));
        } else if attribute == "data" {
            errors.push(FieldError::new(
                field,
                ErrorCode::UnknownField,
                "in binary mode the body is the data: there is no ce-data header",
            ));
        } else {
            match percent_decoded(value.as_bytes()) {
                Ok(text) => {
                    attributes.insert(attribute.to_owned(), Value::String(text));
                }
                Err(why) => errors.push(FieldError::new(
                    field,
                    ErrorCode::InvalidEncoding,
                    format!("{field} {why}"),
                )),
            }
        }
    }
    if let Some(content_type) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
        if let Some(Value::String(declared)) = attributes.get("datacontenttype") {
            if media_essence(declared) != media_essence(content_type) {
                errors.push(FieldError::new(
                    "ce-datacontenttype",
                    ErrorCode::DuplicateField,
                    format!(
                        "in binary mode datacontenttype is the Content-Type header \
                         ({content_type:?}), and ce-datacontenttype says {declared:?}: send one, \
                         or the same in both"
                    ),
                ));
            }
        }
        attributes.insert("datacontenttype".into(), Value::String(content_type.to_owned()));
    }
    if errors.is_empty() {
        Ok(attributes)
    } else {
        Err(errors)
    }
}

/// A binary-mode header's value, percent-decoded as the HTTP binding says (3.1.3.2): the header
/// is printable ASCII, every `%` starts an escape of two hex digits, and the decoded bytes are
/// UTF-8. Anything else is refused, never stored altered.
fn percent_decoded(raw: &[u8]) -> Result<String, &'static str> {
    if raw.iter().any(|&b| !(b == b'\t' || (0x20..0x7f).contains(&b))) {
        return Err("must be printable ASCII; percent-encode other characters as UTF-8 (%C3%A9)");
    }
    // percent-encoding's decoder passes a malformed escape through as it is: refuse those first.
    let escapes_well_formed = raw.iter().enumerate().filter(|(_, &b)| b == b'%').all(|(at, _)| {
        raw.get(at + 1..at + 3).is_some_and(|pair| pair.iter().all(u8::is_ascii_hexdigit))
    });
    if !escapes_well_formed {
        return Err("has a % that does not start an escape of two hex digits");
    }
    percent_encoding::percent_decode(raw)
        .decode_utf8()
        .map(|text| text.into_owned())
        .map_err(|_| "percent-decodes to bytes that are not UTF-8")
}

/// Whether the client asks for events as structured CloudEvents.
pub fn wants_cloudevent(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|accept| {
        accept.split(',').any(|item| {
            item.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case(CLOUDEVENTS_JSON))
        })
    })
}
