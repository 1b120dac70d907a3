//! Every validation rule of contract §3, each with the cases it accepts and rejects.

use chrono::{DateTime, Duration, SecondsFormat, TimeZone, Utc};
use intake_domain::{
    ErrorCode, EventData, EventId, EventType, FieldError, IdempotencyKey, KeyBesideBody, Limits,
    NewEvent, OccurredAt, TenantId,
};
use serde_json::{json, Map, Value};

fn format_timestamp(instant: DateTime<Utc>) -> String {
    instant.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 12, 22, 10, 30, 3).single().expect("valid date")
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("test body must be an object, got {other}"),
    }
}

fn valid_body() -> Value {
    json!({
        "event_type": "user.created",
        "occurred_at": "2025-12-22T10:30:00Z",
        "idempotency_key": "0f3f6f9b-9f0b-4c8d-9f18-5b6a9d9d2d41",
        "data": {"user_id": "u_12345", "plan": "pro"}
    })
}

fn parse(body: Value) -> Result<NewEvent, Vec<FieldError>> {
    NewEvent::parse(object(body), None, now(), &Limits::default())
}

fn codes(errors: &[FieldError]) -> Vec<(String, ErrorCode)> {
    errors.iter().map(|e| (e.field.clone(), e.code)).collect()
}

#[track_caller]
fn assert_single_error(body: Value, field: &str, code: ErrorCode) {
    let errors = parse(body.clone()).expect_err(&format!("{body} should be rejected"));
    assert_eq!(codes(&errors), vec![(field.to_owned(), code)], "for body {body}");
}

fn with(field: &str, value: Value) -> Value {
    let mut body = valid_body();
    body[field] = value;
    body
}

fn without(field: &str) -> Value {
    let mut body = valid_body();
    body.as_object_mut().expect("object").remove(field);
    body
}

#[test]
fn the_quick_start_event_is_valid() {
    let event = parse(valid_body()).expect("quick start body is valid");
    assert_eq!(event.event_type().as_str(), "user.created");
    assert_eq!(format_timestamp(event.occurred_at().as_utc()), "2025-12-22T10:30:00Z");
    assert_eq!(event.idempotency_key().as_str(), "0f3f6f9b-9f0b-4c8d-9f18-5b6a9d9d2d41");
    assert_eq!(event.data().to_value(), json!({"user_id": "u_12345", "plan": "pro"}));
}

#[test]
fn event_types_of_the_contract_are_accepted() {
    for raw in
        ["user.created", "order.item_added", "billing:invoice-paid", "A", "9to5", &"a".repeat(128)]
    {
        assert!(EventType::parse(raw).is_ok(), "{raw:?} should be accepted");
    }
}

#[test]
fn event_types_outside_the_alphabet_or_length_are_rejected() {
    let cases = [
        ("", ErrorCode::InvalidLength),
        (&*"a".repeat(129), ErrorCode::InvalidLength),
        (".user", ErrorCode::InvalidEventType),
        ("_user", ErrorCode::InvalidEventType),
        ("-user", ErrorCode::InvalidEventType),
        (":user", ErrorCode::InvalidEventType),
        ("user created", ErrorCode::InvalidEventType),
        ("user/created", ErrorCode::InvalidEventType),
        ("usér.created", ErrorCode::InvalidEventType),
        ("user.created\n", ErrorCode::InvalidEventType),
    ];
    for (raw, code) in cases {
        let err = EventType::parse(raw).expect_err(&format!("{raw:?} should be rejected"));
        assert_eq!(err.code, code, "for {raw:?}");
        assert_eq!(err.field, "event_type", "for {raw:?}");
    }
}

#[test]
fn event_type_must_be_a_string() {
    assert_single_error(with("event_type", json!(42)), "event_type", ErrorCode::InvalidType);
    assert_single_error(with("event_type", Value::Null), "event_type", ErrorCode::InvalidType);
}

#[test]
fn occurred_at_accepts_rfc3339_with_an_offset_and_stores_utc_microseconds() {
    let limits = Limits::default();
    let cases = [
        ("2025-12-22T10:30:00Z", "2025-12-22T10:30:00Z"),
        ("2025-12-22T12:30:00+02:00", "2025-12-22T10:30:00Z"),
        ("2025-12-22T05:00:00-05:30", "2025-12-22T10:30:00Z"),
        ("2025-12-22T10:30:00.5Z", "2025-12-22T10:30:00.500Z"),
        ("2025-12-22T10:30:00.123456Z", "2025-12-22T10:30:00.123456Z"),
        ("2025-12-22T10:30:00.1234567891Z", "2025-12-22T10:30:00.123456Z"),
    ];
    for (raw, utc) in cases {
        let parsed = OccurredAt::parse(raw, now(), &limits).expect(raw);
        assert_eq!(format_timestamp(parsed.as_utc()), utc, "for {raw:?}");
    }
}

#[test]
fn occurred_at_without_an_offset_or_time_is_rejected() {
    let limits = Limits::default();
    for raw in [
        "2025-12-22",
        "2025-12-22T10:30:00",
        "10:30:00Z",
        "2025-12-22T10:30Z",
        "2025-13-22T10:30:00Z",
        "2025-12-22T25:30:00Z",
        "1766399400",
        "yesterday",
        "",
    ] {
        let err = OccurredAt::parse(raw, now(), &limits).expect_err(raw);
        assert_eq!(err.code, ErrorCode::InvalidTimestamp, "for {raw:?}");
    }
}

#[test]
fn occurred_at_up_to_the_allowed_skew_ahead_is_accepted_and_beyond_it_rejected() {
    let limits = Limits::default();
    let at_limit = format_timestamp(now() + Duration::hours(1));
    assert!(OccurredAt::parse(&at_limit, now(), &limits).is_ok());
    let beyond = format_timestamp(now() + Duration::hours(1) + Duration::seconds(1));
    let err = OccurredAt::parse(&beyond, now(), &limits).expect_err("beyond skew");
    assert_eq!(err.code, ErrorCode::TimestampInFuture);
}

#[test]
fn occurred_at_in_the_past_is_accepted() {
    let limits = Limits::default();
    assert!(OccurredAt::parse("1970-01-01T00:00:00Z", now(), &limits).is_ok());
    assert!(OccurredAt::parse("0001-01-01T00:00:00Z", now(), &limits).is_ok());
}

#[test]
fn idempotency_keys_of_printable_ascii_are_accepted() {
    for raw in [
        "k",
        "0f3f6f9b-9f0b-4c8d-9f18-5b6a9d9d2d41",
        "a!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
        &"x".repeat(255),
    ] {
        assert!(IdempotencyKey::parse(raw).is_ok(), "{raw:?} should be accepted");
    }
}

#[test]
fn idempotency_keys_with_spaces_controls_or_too_long_are_rejected() {
    let cases = [
        ("", ErrorCode::InvalidLength),
        (&*"x".repeat(256), ErrorCode::InvalidLength),
        ("has space", ErrorCode::InvalidIdempotencyKey),
        ("tab\tkey", ErrorCode::InvalidIdempotencyKey),
        ("nul\0key", ErrorCode::InvalidIdempotencyKey),
        ("ключ", ErrorCode::InvalidIdempotencyKey),
        ("del\u{7f}", ErrorCode::InvalidIdempotencyKey),
    ];
    for (raw, code) in cases {
        let err = IdempotencyKey::parse(raw).expect_err(&format!("{raw:?} should be rejected"));
        assert_eq!(err.code, code, "for {raw:?}");
    }
}

fn beside(key: &str) -> Option<KeyBesideBody> {
    Some(KeyBesideBody { key: Some(IdempotencyKey::parse(key)), source: "the header" })
}

#[test]
fn the_key_may_come_from_beside_the_body_alone() {
    let body = without("idempotency_key");
    let event = NewEvent::parse(object(body), beside("hdr-key"), now(), &Limits::default())
        .expect("a key beside the body suffices");
    assert_eq!(event.idempotency_key().as_str(), "hdr-key");
}

#[test]
fn keys_in_and_beside_the_body_must_be_equal() {
    let key = "0f3f6f9b-9f0b-4c8d-9f18-5b6a9d9d2d41";
    assert!(NewEvent::parse(object(valid_body()), beside(key), now(), &Limits::default()).is_ok());
    let errors = NewEvent::parse(object(valid_body()), beside("other"), now(), &Limits::default())
        .expect_err("mismatch");
    assert_eq!(codes(&errors), vec![("idempotency_key".into(), ErrorCode::IdempotencyKeyMismatch)]);
    assert!(errors[0].message.starts_with("the header and"), "{}", errors[0].message);
}

#[test]
fn an_invalid_key_beside_the_body_is_reported_with_the_other_problems() {
    let refused = IdempotencyKey::parse("two words");
    let errors = NewEvent::parse(
        object(with("event_type", json!(""))),
        Some(KeyBesideBody { key: Some(refused), source: "the header" }),
        now(),
        &Limits::default(),
    )
    .expect_err("two problems");
    assert_eq!(
        codes(&errors),
        vec![
            ("event_type".into(), ErrorCode::InvalidLength),
            ("idempotency_key".into(), ErrorCode::InvalidIdempotencyKey),
        ]
    );
}

#[test]
fn a_missing_key_names_the_places_it_may_come_from() {
    let alone = parse(without("idempotency_key")).expect_err("missing");
    assert!(!alone[0].message.contains("header"), "{}", alone[0].message);
    let with_place = NewEvent::parse(
        object(without("idempotency_key")),
        Some(KeyBesideBody { key: None, source: "the header" }),
        now(),
        &Limits::default(),
    )
    .expect_err("missing");
    assert!(with_place[0].message.contains("the header"), "{}", with_place[0].message);
}

#[test]
fn a_key_in_neither_place_is_missing() {
    assert_single_error(without("idempotency_key"), "idempotency_key", ErrorCode::MissingField);
}

#[test]
fn data_must_be_an_object_and_may_be_empty() {
    assert!(parse(with("data", json!({}))).is_ok());
    for value in [json!([]), json!("x"), json!(1), json!(true), Value::Null] {
        assert_single_error(with("data", value), "data", ErrorCode::InvalidType);
    }
}

#[test]
fn data_nesting_is_limited() {
    let limits = Limits { max_data_depth: 3, ..Limits::default() };
    let ok = json!({"a": {"b": [1]}});
    assert!(EventData::parse(ok, &limits).is_ok());
    let deep = json!({"a": {"b": [[1]]}});
    let err = EventData::parse(deep, &limits).expect_err("too deep");
    assert_eq!(err.code, ErrorCode::TooDeep);
}

#[test]
fn every_required_field_is_reported_when_missing() {
    let errors = parse(json!({})).expect_err("empty object");
    let mut got = codes(&errors);
    got.sort();
    let mut want: Vec<(String, ErrorCode)> =
        ["data", "event_type", "idempotency_key", "occurred_at"]
            .into_iter()
            .map(|f| (f.to_owned(), ErrorCode::MissingField))
            .collect();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn every_problem_is_reported_at_once() {
    let body = json!({
        "event_type": "",
        "occured_at": "2025-12-22T10:30:00Z",
        "idempotency_key": "has space",
        "data": [],
    });
    let errors = parse(body).expect_err("many problems");
    let got = codes(&errors);
    for want in [
        ("occured_at", ErrorCode::UnknownField),
        ("event_type", ErrorCode::InvalidLength),
        ("occurred_at", ErrorCode::MissingField),
        ("idempotency_key", ErrorCode::InvalidIdempotencyKey),
        ("data", ErrorCode::InvalidType),
    ] {
        assert!(got.contains(&(want.0.to_owned(), want.1)), "missing {want:?} in {got:?}");
    }
    assert_eq!(got.len(), 5, "{got:?}");
}

#[test]
fn an_unknown_field_is_named_with_a_suggestion_for_a_typo() {
    let mut body = valid_body();
    body["occured_at"] = json!("2025-12-22T10:30:00Z");
    let errors = parse(body).expect_err("typo");
    assert_eq!(codes(&errors), vec![("occured_at".into(), ErrorCode::UnknownField)]);
    assert!(errors[0].message.contains("did you mean \"occurred_at\""), "{}", errors[0].message);

    let mut body = valid_body();
    body["source"] = json!("web");
    let errors = parse(body).expect_err("unknown");
    assert_eq!(codes(&errors), vec![("source".into(), ErrorCode::UnknownField)]);
}

#[test]
fn the_fingerprint_ignores_key_order_and_offset_notation() {
    let a = parse(json!({
        "event_type": "t", "occurred_at": "2025-12-22T10:30:00Z", "idempotency_key": "k",
        "data": {"a": 1, "b": {"x": [1, 2], "y": "z"}}
    }))
    .expect("valid");
    let b_body = r#"{"data": {"b": {"y": "z", "x": [1, 2]}, "a": 1},
        "idempotency_key": "k", "occurred_at": "2025-12-22T12:30:00.000+02:00", "event_type": "t"}"#;
    let b = parse(serde_json::from_str(b_body).expect("json")).expect("valid");
    assert_eq!(a.fingerprint(), b.fingerprint());
}

#[test]
fn the_fingerprint_differs_when_any_part_of_the_payload_differs() {
    let base = parse(valid_body()).expect("valid");
    let variants = [
        with("event_type", json!("user.deleted")),
        with("occurred_at", json!("2025-12-22T10:30:00.000001Z")),
        with("data", json!({"user_id": "u_12345", "plan": "free"})),
        with("data", json!({"user_id": "u_12345"})),
        with("data", json!({"user_id": "u_12345", "plan": ["pro"]})),
    ];
    for body in variants {
        let other = parse(body.clone()).expect("valid");
        assert_ne!(base.fingerprint(), other.fingerprint(), "for {body}");
    }
}

#[test]
fn large_numbers_keep_every_digit() {
    let body = r#"{"event_type":"t","occurred_at":"2025-12-22T10:30:00Z","idempotency_key":"k",
        "data":{"big":123456789012345678901234567890,"f":0.30000000000000004}}"#;
    let event = parse(serde_json::from_str(body).expect("json")).expect("valid");
    let written = serde_json::to_string(&event.data().to_value()).expect("serialise");
    assert!(written.contains("123456789012345678901234567890"), "{written}");
    assert!(written.contains("0.30000000000000004"), "{written}");
}

#[test]
fn event_ids_round_trip_through_their_text_form() {
    let id = EventId::generate(now());
    let text = id.to_string();
    assert!(text.starts_with("evt_") && text.len() == 36, "{text}");
    assert_eq!(text.parse::<EventId>(), Ok(id));
    for bad in [
        "",
        "evt_",
        "evt_xyz",
        "tok_0123456789abcdef0123456789abcdef",
        "evt_0123456789abcdef0123456789abcdeg",
    ] {
        assert!(bad.parse::<EventId>().is_err(), "{bad:?} should be rejected");
    }
}

#[test]
fn tenant_names_are_lower_case_slugs() {
    for ok in ["dev", "acme-corp", "t_1"] {
        assert!(TenantId::parse(ok).is_ok(), "{ok}");
    }
    for bad in ["", "Dev", "a b", &"a".repeat(65), "é"] {
        assert!(TenantId::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn data_with_a_nul_character_is_rejected() {
    for data in [json!({"s": "a\u{0}b"}), json!({"a\u{0}": 1}), json!({"deep": [{"x": "\u{0}"}]})] {
        assert_single_error(with("data", data.clone()), "data", ErrorCode::InvalidCharacter);
    }
    assert!(parse(with("data", json!({"s": "\u{1}\u{7f} ok"}))).is_ok());
}

#[test]
fn numbers_beyond_what_storage_keeps_exactly_are_rejected() {
    let limits = Limits::default();
    let accept =
        ["0", "-1", "1e1000", "1E-1000", "-2.5e+3", &"9".repeat(1000), "1.7976931348623157e308"];
    for text in accept {
        let value: Value = serde_json::from_str(&format!("{{\"n\":{text}}}")).expect("json");
        assert!(EventData::parse(value, &limits).is_ok(), "{text} should be accepted");
    }
    let reject = ["1e1001", "1e-1001", "0.000001e-16380", "1e131072", &"9".repeat(1001)];
    for text in reject {
        let value: Value = serde_json::from_str(&format!("{{\"n\":[{text}]}}")).expect("json");
        let err = EventData::parse(value, &limits).expect_err(text);
        assert_eq!(err.code, ErrorCode::NumberOutOfRange, "for {text}");
    }
}
