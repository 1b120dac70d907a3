//! CloudEvents 1.0 (contract §11): turning a CloudEvent's attributes and data into a
//! [`NewEvent`], and a stored event back into a structured CloudEvent. Pure functions; the API
//! only reads headers and media types.
//!
//! Mapping: `type` → event type, `time` → occurred_at (required), `data` → data (a JSON object;
//! absent is `{}`). The idempotency key is derived from `source` and `id`, which the CloudEvents
//! spec makes unique per event: the same pair again is a retry. `subject`, `dataschema`,
//! `datacontenttype` and extension attributes are kept beside the event and read back.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::event::{EventData, EventType, IdempotencyKey, OccurredAt, TenantId};
use crate::feed::StoredEvent;
use crate::new_event::NewEvent;
use crate::validation::{ErrorCode, FieldError, Limits};

/// The only spec version taken.
pub const SPEC_VERSION: &str = "1.0";

/// The extension attributes intake sets on read-back, which a CloudEvent may not carry:
/// `recordedtime` (when intake received the event, the CloudEvents "recordedtime" extension),
/// and, for an event whose `time` intake corrected for the sender's clock (§15), `reportedtime`
/// (`time` as the sender reported it) and `senttime` (when the request says it was sent).
pub const SET_ON_READ: [&str; 3] = ["recordedtime", "reportedtime", "senttime"];

/// The attributes the mapping uses or the spec defines; any other is an extension.
const CORE: [&str; 9] = [
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "subject",
    "dataschema",
    "datacontenttype",
    "data",
];

/// How attribute names appear in errors: bare in structured mode (`type`), as headers in
/// binary mode (`ce-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `application/cloudevents+json` (and each item of a batch).
    Structured,
    /// `ce-*` headers, the body is `data`.
    Binary,
}

impl Mode {
    fn field(self, attribute: &str) -> String {
        match self {
            Self::Structured => attribute.to_owned(),
            Self::Binary => format!("ce-{attribute}"),
        }
    }
}

/// What a CloudEvent carries beside type, time and data: kept with the event and read back.
fn context_of(attributes: &Map<String, Value>) -> Value {
    let kept: Map<String, Value> = attributes
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "specversion" | "type" | "time" | "data"))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    Value::Object(kept)
}

/// Whether a media type (a `datacontenttype`, a `Content-Type`) says JSON: `application/json`
/// or `application/<something>+json`, in any letter case, with no charset but UTF-8.
pub fn is_json_media_type(text: &str) -> bool {
    let mut parts = text.split(';');
    let essence = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    let json = match essence.split_once('/') {
        Some(("application", subtype)) => {
            subtype == "json"
                || subtype.strip_suffix("+json").is_some_and(|s| {
                    !s.is_empty() && !s.contains(|c: char| c.is_whitespace() || c == '/')
                })
        }
        _ => false,
    };
    let utf8 = parts.all(|parameter| match parameter.split_once('=') {
        Some((name, value)) if name.trim().eq_ignore_ascii_case("charset") => {
            value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
        }
        _ => true,
    });
    json && utf8
}

/// The first character of `text` that the CloudEvents type system forbids in a String: the
/// control characters U+0000–U+001F and U+007F–U+009F, and the Unicode noncharacters
/// (U+FDD0–U+FDEF and the last two code points of every plane). Surrogates cannot occur in a
/// Rust string.
fn forbidden_character(text: &str) -> Option<char> {
    text.chars().find(|&c| {
        let code = u32::from(c);
        c.is_control() || (0xFDD0..=0xFDEF).contains(&code) || code & 0xFFFE == 0xFFFE
    })
}

fn forbidden_character_error(mode: Mode, name: &str, text: &str) -> FieldError {
    let shown = forbidden_character(text).map(|c| format!("U+{:04X}", u32::from(c)));
    FieldError::new(
        mode.field(name),
        ErrorCode::InvalidCharacter,
        format!(
            "the CloudEvents attribute {name} holds {}, a control character or noncharacter, \
             which a CloudEvents String may not hold",
            shown.unwrap_or_default()
        ),
    )
}

/// Why an extension attribute's (scalar) value is not one the CloudEvents type system has: a
/// String holding a forbidden character, or a number that is not an Integer (a whole number
/// from -2,147,483,648 to 2,147,483,647; written without a fraction or exponent, so that it
/// is read back as it was sent).
fn extension_value_error(mode: Mode, name: &str, value: &Value) -> Option<FieldError> {
    match value {
        Value::String(text) if forbidden_character(text).is_some() => {
            Some(forbidden_character_error(mode, name, text))
        }
        Value::Number(number) => {
            let text = number.to_string();
            let whole = !text.contains(['.', 'e', 'E']);
            let in_range = number.as_i64().is_some_and(|n| i32::try_from(n).is_ok());
            let (code, message) = match (whole, in_range) {
                (true, true) => return None,
                (true, false) => (
                    ErrorCode::NumberOutOfRange,
                    format!(
                        "extension attribute {name} = {text} is outside the CloudEvents Integer \
                         range (-2147483648 to 2147483647); send larger numbers as strings"
                    ),
                ),
                (false, _) => (
                    ErrorCode::InvalidType,
                    format!(
                        "extension attribute {name} = {text} is not a CloudEvents Integer (a \
                         whole number from -2147483648 to 2147483647, written without a fraction \
                         or exponent); send other numbers as strings"
                    ),
                ),
            };
            Some(FieldError::new(mode.field(name), code, message))
        }
        _ => None,
    }
}

/// The idempotency key of a CloudEvent: `ce:` and the SHA-256 of its `source` and `id`
/// (length-prefixed, so that no two pairs share a key).
pub fn key_of(source: &str, id: &str) -> IdempotencyKey {
    let mut hasher = Sha256::new();
    hasher.update((source.len() as u64).to_be_bytes());
    hasher.update(source.as_bytes());
    hasher.update(id.as_bytes());
    // 67 printable ASCII characters: always a valid key.
    IdempotencyKey::derived(format!("ce:{}", hex_lower(&hasher.finalize())))
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A CloudEvent's attributes (and `data`, in structured mode) as an event carrying its context
/// ([`NewEvent::context`]), or every problem at once, each naming the attribute as the mode
/// spells it.
pub fn parse(
    mut attributes: Map<String, Value>,
    mode: Mode,
    now: DateTime<Utc>,
    limits: &Limits,
) -> Result<NewEvent, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut string = |name: &str, required: bool| -> Option<String> {
        match attributes.get(name) {
            Some(Value::String(s)) if forbidden_character(s).is_some() => {
                errors.push(forbidden_character_error(mode, name, s));
                None
            }
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::String(_)) => {
                errors.push(FieldError::new(
                    mode.field(name),
                    ErrorCode::InvalidLength,
                    format!("the CloudEvents attribute {name} must not be empty"),
                ));
                None
            }
            Some(other) => {
                errors.push(FieldError::new(
                    mode.field(name),
                    ErrorCode::InvalidType,
                    format!("the CloudEvents attribute {name} must be a string, not {other}"),
                ));
                None
            }
            None if required => {
                errors.push(FieldError::new(
                    mode.field(name),
                    ErrorCode::MissingField,
                    format!("the CloudEvents attribute {name} is required"),
                ));
                None
            }
            None => None,
        }
    };
    let specversion = string("specversion", true);
    let id = string("id", true);
    let source = string("source", true);
    let event_type = string("type", true);
    let time = string("time", true);
    for optional in ["subject", "dataschema"] {
        string(optional, false);
    }
    let datacontenttype = string("datacontenttype", false);
    if let Some(version) = &specversion {
        if version != SPEC_VERSION {
            errors.push(FieldError::new(
                mode.field("specversion"),
                ErrorCode::InvalidType,
                format!("specversion must be \"{SPEC_VERSION}\", not {version:?}"),
            ));
        }
    }
    if let Some(declared) = datacontenttype.filter(|t| !is_json_media_type(t)) {
        errors.push(FieldError::new(
            mode.field("datacontenttype"),
            ErrorCode::UnsupportedContentType,
            format!(
                "datacontenttype {declared:?} is not JSON: intake takes CloudEvents whose data is \
                 JSON (application/json or application/…+json, UTF-8)"
            ),
        ));
    }
    if attributes.contains_key("data_base64") {
        errors.push(FieldError::new(
            mode.field("data_base64"),
            ErrorCode::InvalidType,
            "binary data (data_base64) is not taken; send data as a JSON object",
        ));
    }
    for (name, value) in &attributes {
        if CORE.contains(&name.as_str()) || name == "data_base64" {
            continue;
        }
        let well_named = (1..=20).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if SET_ON_READ.contains(&name.as_str()) {
            errors.push(FieldError::new(
                mode.field(name),
                ErrorCode::ReservedField,
                format!(
                    "{name} is set by intake on read-back (recordedtime: when it received the \
                     event; reportedtime and senttime: what the sender reported, when intake \
                     corrected time for its clock); it cannot be sent"
                ),
            ));
        } else if !well_named {
            errors.push(FieldError::new(
                mode.field(name),
                ErrorCode::UnknownField,
                format!(
                    "extension attribute {name:?}: names are 1-20 lowercase letters and digits"
                ),
            ));
        } else if value.is_object() || value.is_array() || value.is_null() {
            errors.push(FieldError::new(
                mode.field(name),
                ErrorCode::InvalidType,
                format!("extension attribute {name} must be a string, integer or boolean"),
            ));
        } else if let Some(error) = extension_value_error(mode, name, value) {
            errors.push(error);
        }
    }
    let renamed = |e: FieldError, attribute: &str| FieldError {
        field: mode.field(attribute),
        message: e.message.replace(&e.field, attribute),
        ..e
    };
    let event_type = event_type
        .and_then(|t| EventType::parse(&t).map_err(|e| errors.push(renamed(e, "type"))).ok());
    let occurred_at = time.and_then(|t| {
        OccurredAt::parse(&t, now, limits).map_err(|e| errors.push(renamed(e, "time"))).ok()
    });
    let data = match attributes.get("data") {
        None => Some(Map::new()),
        Some(Value::Object(map)) => Some(map.clone()),
        Some(other) => {
            errors.push(FieldError::new(
                mode.field("data"),
                ErrorCode::InvalidType,
                format!("data must be a JSON object, not {}", crate::event::json_type_name(other)),
            ));
            None
        }
    }
    .and_then(|map| {
        EventData::parse(Value::Object(map), limits)
            .map_err(|e| errors.push(renamed(e, "data")))
            .ok()
    });
    attributes.remove("data");
    match (id, source, event_type, occurred_at, data) {
        (Some(id), Some(source), Some(t), Some(o), Some(d)) if errors.is_empty() => {
            Ok(NewEvent::new(t, o, key_of(&source, &id), d).with_context(context_of(&attributes)))
        }
        _ => Err(errors),
    }
}

/// A stored event as a structured CloudEvent: the context it came with, or (for an event sent
/// as plain JSON) `source` `/intake/<tenant>` and its event id as `id`; `recordedtime` is when
/// intake received it. When intake corrected the event's time for the sender's clock (§15),
/// `time` is the corrected instant, `reportedtime` the one the sender reported and `senttime`
/// when its request says it was sent.
pub fn to_structured(
    event: &StoredEvent,
    tenant: &TenantId,
    format_time: fn(DateTime<Utc>) -> String,
) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("specversion".into(), SPEC_VERSION.into());
    match &event.cloudevent {
        Some(Value::Object(context)) => {
            for (name, value) in context {
                out.insert(name.clone(), value.clone());
            }
        }
        _ => {
            out.insert("id".into(), event.event_id.to_string().into());
            out.insert("source".into(), format!("/intake/{}", tenant.as_str()).into());
        }
    }
    out.insert("type".into(), event.event_type.clone().into());
    out.insert("time".into(), format_time(event.occurred_at).into());
    out.insert("recordedtime".into(), format_time(event.received_at).into());
    if let Some((reported, sent_at)) = event.correction {
        out.insert("reportedtime".into(), format_time(reported).into());
        out.insert("senttime".into(), format_time(sent_at).into());
    }
    if !out.contains_key("datacontenttype") {
        out.insert("datacontenttype".into(), "application/json".into());
    }
    out.insert("data".into(), event.data.clone());
    out
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;
    use crate::event::EventId;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().expect("date")
    }

    fn attributes(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    fn structured() -> Value {
        json!({
            "specversion": "1.0", "id": "A234-1234", "source": "https://example.com/shop",
            "type": "com.example.order.placed", "time": "2025-12-22T10:30:00Z",
            "subject": "order/17", "dataschema": "https://example.com/order.json",
            "datacontenttype": "application/json", "traceparent": "00-abc", "partition": 7,
            "data": {"order": 17}
        })
    }

    #[test]
    fn a_cloudevent_maps_to_an_event_and_back() {
        let event = parse(attributes(structured()), Mode::Structured, now(), &Limits::default())
            .expect("valid");
        let context = event.context().cloned().expect("a context");
        assert_eq!(event.event_type().as_str(), "com.example.order.placed");
        assert_eq!(event.data().to_value(), json!({"order": 17}));
        assert_eq!(event.idempotency_key(), &key_of("https://example.com/shop", "A234-1234"));
        assert_eq!(
            context,
            json!({"id": "A234-1234", "source": "https://example.com/shop", "subject": "order/17",
                   "dataschema": "https://example.com/order.json",
                   "datacontenttype": "application/json", "traceparent": "00-abc", "partition": 7})
        );
        let stored = StoredEvent {
            event_id: EventId::generate(now()),
            event_type: event.event_type().as_str().into(),
            occurred_at: event.occurred_at().as_utc(),
            received_at: now(),
            idempotency_key: event.idempotency_key().as_str().into(),
            data: event.data().to_value(),
            schema_version: None,
            correction: None,
            cloudevent: Some(context),
        };
        let tenant = TenantId::parse("acme").expect("tenant");
        let back = to_structured(&stored, &tenant, |t| t.to_rfc3339());
        for name in
            ["id", "source", "type", "subject", "dataschema", "traceparent", "partition", "data"]
        {
            assert_eq!(back[name], structured()[name], "{name}");
        }
        assert_eq!(back["specversion"], "1.0");
        assert!(back["recordedtime"].is_string());
    }

    #[test]
    fn a_plain_event_reads_back_with_intake_as_its_source() {
        let stored = StoredEvent {
            event_id: EventId::generate(now()),
            event_type: "user.created".into(),
            occurred_at: now(),
            received_at: now(),
            idempotency_key: "k".into(),
            data: json!({}),
            schema_version: None,
            cloudevent: None,
            correction: None,
        };
        let tenant = TenantId::parse("acme").expect("tenant");
        let back = to_structured(&stored, &tenant, |t| t.to_rfc3339());
        assert_eq!(back["source"], "/intake/acme");
        assert_eq!(back["id"], stored.event_id.to_string());
        assert_eq!(back["datacontenttype"], "application/json");
    }

    #[test]
    fn a_corrected_event_reads_back_with_what_the_sender_reported_and_no_one_may_send_it() {
        let at = |seconds: i64| now() + chrono::Duration::seconds(seconds);
        let stored = StoredEvent {
            event_id: EventId::generate(now()),
            event_type: "user.created".into(),
            occurred_at: at(600),
            received_at: at(605),
            idempotency_key: "k".into(),
            data: json!({}),
            schema_version: None,
            cloudevent: None,
            correction: Some((at(0), at(4))),
        };
        let tenant = TenantId::parse("acme").expect("tenant");
        let back = to_structured(&stored, &tenant, |t| t.to_rfc3339());
        assert_eq!(back["time"], at(600).to_rfc3339());
        assert_eq!(back["reportedtime"], at(0).to_rfc3339());
        assert_eq!(back["senttime"], at(4).to_rfc3339());
        for name in SET_ON_READ {
            assert!(name.len() <= 20 && name.bytes().all(|b| b.is_ascii_lowercase()), "{name}");
            assert!(!CORE.contains(&name), "{name}");
            let mut event = attributes(structured());
            event.insert(name.into(), json!("2025-12-22T10:30:00Z"));
            let errors = parse(event, Mode::Binary, now(), &Limits::default()).expect_err(name);
            assert_eq!(errors[0].field, format!("ce-{name}"));
            assert_eq!(errors[0].code, ErrorCode::ReservedField);
        }
    }

    #[test]
    fn every_attribute_rule_names_the_attribute_as_the_mode_spells_it() {
        let bad = json!({"specversion": "0.3", "id": "", "source": 5, "time": "yesterday",
                         "Bad_Name": "x", "nested": {"a": 1}, "data": [1]});
        let errors = parse(attributes(bad.clone()), Mode::Structured, now(), &Limits::default())
            .expect_err("bad");
        let mut fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            ["Bad_Name", "data", "id", "nested", "source", "specversion", "time", "type"]
        );
        let errors =
            parse(attributes(bad), Mode::Binary, now(), &Limits::default()).expect_err("bad");
        assert!(errors.iter().any(|e| e.field == "ce-time"), "{errors:?}");
        assert!(errors.iter().all(|e| e.field.starts_with("ce-")), "{errors:?}");
    }

    #[test]
    fn string_attributes_with_control_characters_are_refused_naming_the_attribute() {
        let attributes_of = ["id", "source", "type", "subject", "dataschema", "datacontenttype"]
            .into_iter()
            .chain(["traceparent"]);
        for attribute in attributes_of {
            for bad in ["a\nb", "a\u{0}", "\t", "a\u{7f}", "a\u{85}b", "a\u{fffe}", "a\u{fdd0}"] {
                let mut event = attributes(structured());
                event.insert(attribute.into(), Value::String(bad.into()));
                for mode in [Mode::Structured, Mode::Binary] {
                    let errors = parse(event.clone(), mode, now(), &Limits::default())
                        .expect_err(&format!("{attribute} = {bad:?} in {mode:?}"));
                    let field = mode.field(attribute);
                    assert!(
                        errors
                            .iter()
                            .any(|e| e.field == field && e.code == ErrorCode::InvalidCharacter),
                        "{attribute} = {bad:?} in {mode:?}: {errors:?}"
                    );
                }
            }
        }
        // Other characters beyond ASCII are fine.
        let mut event = attributes(structured());
        event.insert("subject".into(), Value::String("caf\u{e9} \u{1f600}".into()));
        assert!(parse(event, Mode::Structured, now(), &Limits::default()).is_ok());
    }

    #[test]
    fn a_number_extension_must_be_an_integer_within_int32() {
        let number = |text: &str| serde_json::from_str::<Value>(text).expect("a JSON number");
        for fine in ["0", "-2147483648", "2147483647", "7"] {
            let mut event = attributes(structured());
            event.insert("partition".into(), number(fine));
            let parsed = parse(event, Mode::Structured, now(), &Limits::default());
            assert!(parsed.is_ok(), "{fine}: {parsed:?}");
        }
        for (bad, code) in [
            ("2147483648", ErrorCode::NumberOutOfRange),
            ("-2147483649", ErrorCode::NumberOutOfRange),
            ("99999999999999999999999", ErrorCode::NumberOutOfRange),
            ("1.5", ErrorCode::InvalidType),
            ("7.0", ErrorCode::InvalidType),
            ("1e2", ErrorCode::InvalidType),
            ("1e400", ErrorCode::InvalidType),
        ] {
            let mut event = attributes(structured());
            event.insert("partition".into(), number(bad));
            let errors = parse(event, Mode::Structured, now(), &Limits::default())
                .expect_err(&format!("{bad} refused"));
            assert_eq!(errors.len(), 1, "{bad}: {errors:?}");
            assert_eq!((errors[0].field.as_str(), errors[0].code), ("partition", code), "{bad}");
        }
    }

    #[test]
    fn json_media_types_are_told_from_others() {
        for json in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=\"UTF-8\"",
            "application/vnd.shop+json",
            "application/cloudevents+json",
        ] {
            assert!(is_json_media_type(json), "{json}");
        }
        for other in [
            "text/plain",
            "text/json",
            "application/xml",
            "application/+json",
            "application/json; charset=latin1",
            "application/jsonx",
            "json",
            "",
        ] {
            assert!(!is_json_media_type(other), "{other}");
        }
    }

    #[test]
    fn absent_data_is_an_empty_object_and_the_key_depends_on_source_and_id_only() {
        let mut no_data = attributes(structured());
        no_data.remove("data");
        let event = parse(no_data, Mode::Structured, now(), &Limits::default()).expect("valid");
        assert_eq!(event.data().to_value(), json!({}));
        assert_ne!(key_of("a", "bc"), key_of("ab", "c"));
        assert_eq!(key_of("a", "b"), key_of("a", "b"));
    }
}
