//! Properties of parsing and fingerprints over arbitrary input: parsing never panics and either
//! yields an event or field errors; the same payload written differently (key order, offset)
//! has one fingerprint; a different payload has another.

use chrono::{DateTime, TimeZone, Utc};
use intake_domain::{Limits, NewEvent};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 12, 22, 10, 30, 3).single().expect("valid date")
}

/// Any JSON value a few levels deep, with strings (and object keys) drawn from `strings`.
fn json_with(strings: &'static str) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        strings.prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(strings, inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Any JSON value, any string (U+0000 included).
fn any_json() -> impl Strategy<Value = Value> {
    json_with(".{0,12}")
}

/// Any JSON value that storage can keep (no U+0000).
fn storable_json() -> impl Strategy<Value = Value> {
    json_with("[^\\x00]{0,12}")
}

/// A body whose fields are each either a plausible value or anything at all.
fn any_body() -> impl Strategy<Value = Map<String, Value>> {
    (
        prop_oneof![any_json(), "[A-Za-z0-9][A-Za-z0-9._:-]{0,20}".prop_map(Value::String)],
        prop_oneof![
            any_json(),
            Just(json!("2025-12-22T10:30:00Z")),
            Just(json!("2025-12-22T12:30:00.123456+02:00"))
        ],
        prop_oneof![any_json(), "[!-~]{1,40}".prop_map(Value::String)],
        any_json(),
        prop::collection::btree_map("[a-z_]{1,10}", any_json(), 0..3),
    )
        .prop_map(|(event_type, occurred_at, key, data, extra)| {
            let mut body: Map<String, Value> = extra.into_iter().collect();
            body.insert("event_type".into(), event_type);
            body.insert("occurred_at".into(), occurred_at);
            body.insert("idempotency_key".into(), key);
            body.insert("data".into(), data);
            body
        })
}

fn parse(body: Map<String, Value>) -> Result<NewEvent, Vec<intake_domain::FieldError>> {
    NewEvent::parse(body, None, now(), &Limits::default())
}

fn valid(data: Value, occurred_at: &str) -> NewEvent {
    let body = json!({
        "event_type": "user.created",
        "occurred_at": occurred_at,
        "idempotency_key": "k",
        "data": data,
    });
    match body {
        Value::Object(map) => parse(map).expect("valid"),
        _ => unreachable!("an object literal"),
    }
}

/// The JSON text of `value` with every object's keys written in reverse order.
fn reversed_text(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let members: Vec<String> = map
                .iter()
                .rev()
                .map(|(k, v)| format!("{}:{}", json!(k), reversed_text(v)))
                .collect();
            format!("{{{}}}", members.join(","))
        }
        Value::Array(items) => {
            format!("[{}]", items.iter().map(reversed_text).collect::<Vec<_>>().join(","))
        }
        other => other.to_string(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn parsing_never_panics_and_names_a_field_for_every_error(body in any_body()) {
        match parse(body.clone()) {
            Ok(event) => {
                let written = event.data().canonical_json();
                prop_assert!(written.starts_with('{'), "data is written as an object: {}", written);
            }
            Err(errors) => {
                prop_assert!(!errors.is_empty());
                for error in errors {
                    prop_assert!(!error.field.is_empty() && !error.message.is_empty(), "{error:?}");
                }
            }
        }
    }

    #[test]
    fn key_order_and_offset_notation_do_not_change_the_fingerprint(
        data in prop::collection::btree_map("[a-z]{1,6}", storable_json(), 0..6)
    ) {
        let data = Value::Object(data.into_iter().collect());
        let text = reversed_text(&data);
        let rewritten: Value = serde_json::from_str(&text).expect("the reversed text is JSON");
        let a = valid(data.clone(), "2025-12-22T10:30:00Z");
        let b = valid(rewritten, "2025-12-22T12:30:00+02:00");
        prop_assert_eq!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn a_different_data_value_has_a_different_fingerprint(
        a in prop::collection::btree_map("[a-z]{1,6}", storable_json(), 0..6),
        b in prop::collection::btree_map("[a-z]{1,6}", storable_json(), 0..6),
    ) {
        let (a, b) = (Value::Object(a.into_iter().collect()), Value::Object(b.into_iter().collect()));
        let same = a == b;
        let (fa, fb) = (valid(a, "2025-12-22T10:30:00Z"), valid(b, "2025-12-22T10:30:00Z"));
        prop_assert_eq!(fa.fingerprint() == fb.fingerprint(), same);
    }

    #[test]
    fn normalising_a_normalised_event_changes_nothing(
        data in prop::collection::btree_map("[^\\x00]{1,6}", storable_json(), 0..6),
        offset_minutes in -(14 * 60)..=(14 * 60i32),
        seconds_ago in 0..(10 * 365 * 86_400i64),
    ) {
        let data = Value::Object(data.into_iter().collect());
        let instant = now() - chrono::Duration::seconds(seconds_ago);
        let zone = chrono::FixedOffset::east_opt(offset_minutes * 60).expect("offset in range");
        let first = valid(data, &instant.with_timezone(&zone).to_rfc3339());
        // The normal form: UTC instant, data as its canonical text.
        let normal_data: Value =
            serde_json::from_str(first.data().canonical_json()).expect("canonical JSON");
        let again = valid(normal_data.clone(), &first.occurred_at().as_utc().to_rfc3339());
        prop_assert_eq!(again.fingerprint(), first.fingerprint());
        prop_assert_eq!(again.occurred_at().as_utc(), first.occurred_at().as_utc());
        prop_assert_eq!(again.data().canonical_json(), first.data().canonical_json());
        prop_assert_eq!(again.data().to_value(), normal_data);
    }
}
