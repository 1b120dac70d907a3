//! A fuzzing harness on stable Rust, driven by `proptest`: arbitrary and mutated requests go
//! through the whole application (every header parser, the body reader, gzip, the JSON and
//! event parsers) over in-memory stores, and the pure parsers get arbitrary bytes of their own.
//!
//! Whatever comes in, the answer is never a 5xx and never a panic, and every refusal is a
//! problem document that names the request id. `INTAKE_FUZZ_CASES` sets the number of requests
//! (`make test` runs 3,000; `make fuzz` runs 200,000).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use actix_web::http::header::HeaderValue;
use actix_web::test::{call_service, init_service, read_body, TestRequest};
use intake_api::settings::Settings;
use intake_api::startup::{app, AppData, Backend};
use intake_api::{cursor, wire};
use intake_domain::memory::{MemoryEventStore, MemorySchemaStore, MemoryTokenStore};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};

fn cases(default: u32) -> u32 {
    std::env::var("INTAKE_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(default)
}

/// Runs `test` on inputs from `strategy`, `cases_by_default` of them (or `INTAKE_FUZZ_CASES`);
/// panics with the smallest failing input.
fn fuzz<S: Strategy>(
    cases_by_default: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let config =
        Config { cases: cases(cases_by_default), failure_persistence: None, ..Config::default() };
    if let Err(failure) = TestRunner::new(config).run(&strategy, test) {
        panic!("{failure}");
    }
}

/// One request as a client could send it.
#[derive(Debug, Clone)]
struct Fuzzed {
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, Vec<u8>)>,
    body: Vec<u8>,
}

fn valid_event() -> String {
    json!({
        "event_type": "user.created",
        "occurred_at": "2025-12-22T10:30:00Z",
        "idempotency_key": "k-1",
        "data": {"plan": "pro", "n": [1, 2.5, null, {"x": "y"}]}
    })
    .to_string()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

/// `base` with a few bytes replaced, inserted or cut.
fn mutated(base: String) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec((any::<Index>(), any::<u8>(), 0..3u8), 0..6).prop_map(move |edits| {
        let mut bytes = base.clone().into_bytes();
        for (at, byte, kind) in edits {
            if bytes.is_empty() {
                break;
            }
            let i = at.index(bytes.len());
            match kind {
                0 => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ => {
                    bytes.truncate(i);
                }
            }
        }
        bytes
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    let plain = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        mutated(json!({"specversion": "1.0", "id": "e-1", "source": "/fuzz", "type": "fuzz.event",
                       "time": "2025-12-22T10:30:00Z", "ext1": 5, "data": {"a": [1, "b"]}}).to_string()),
        mutated(valid_event()),
        mutated(format!("{{\"events\":[{},{}]}}", valid_event(), valid_event())),
        "[\\PC]{0,80}".prop_map(|s| format!(r#"{{"event_type":"t","occurred_at":"{s}","idempotency_key":"{s}","data":{{"{s}":"{s}"}}}}"#).into_bytes()),
        Just(valid_event().into_bytes()),
    ];
    (plain, 0..4u8).prop_map(|(bytes, wrap)| match wrap {
        0 => gzip(&bytes),
        1 => {
            let mut packed = gzip(&bytes);
            packed.truncate(packed.len() / 2);
            packed
        }
        _ => bytes,
    })
}

/// A header value: a usual one, or arbitrary bytes.
fn header(usual: &'static [&'static str]) -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        3 => prop::sample::select(usual).prop_map(|v| Some(v.as_bytes().to_vec())),
        1 => prop::collection::vec(any::<u8>(), 0..40).prop_map(Some),
        1 => Just(None),
    ]
}

fn request() -> impl Strategy<Value = Fuzzed> {
    let path = prop_oneof![
        Just("/v1/events".to_owned()),
        Just("/v1/events/batch".to_owned()),
        "[\\PC]{0,30}".prop_map(|q| format!("/v1/events?{}", urlencode(&q))),
        "[\\PC]{0,40}".prop_map(|id| format!("/v1/events/{}", urlencode(&id))),
    ];
    (
        prop::sample::select(&["POST", "GET", "PUT"][..]),
        path,
        header(&["Bearer test_123", "bearer test_123", "Bearer ", "Basic dGVzdA=="]),
        header(&[
            "application/json",
            "application/json; charset=utf-8",
            "text/plain",
            "application/json+x",
            "application/cloudevents+json",
            "application/cloudevents-batch+json",
        ]),
        header(&["gzip", "identity", "br", "gzip, gzip"]),
        header(&["k-1", "\"k-1\"", "\"a\\\"b\"", "\"unterminated"]),
        header(&["req-1", "a b", ""]),
        // Binary-mode CloudEvents (now and then): the attributes as headers.
        prop_oneof![4 => Just(None), 1 => header(&["1.0", "0.3"])],
        header(&["2025-12-22T10:30:00Z", "yesterday"]),
        body(),
    )
        .prop_map(
            |(method, path, auth, ctype, encoding, key, request_id, ce_version, ce_time, body)| {
                let binary = ce_version.is_some();
                let headers = [
                    ("authorization", auth),
                    ("content-type", ctype),
                    ("content-encoding", encoding),
                    ("idempotency-key", key),
                    ("x-request-id", request_id),
                    ("ce-specversion", ce_version),
                    ("ce-time", ce_time),
                    ("ce-id", binary.then(|| b"e-1".to_vec())),
                    ("ce-source", binary.then(|| b"/fuzz".to_vec())),
                    ("ce-type", binary.then(|| b"fuzz.event".to_vec())),
                ]
                .into_iter()
                .filter_map(|(name, value)| value.map(|v| (name, v)))
                .collect();
                Fuzzed { method, path, headers, body }
            },
        )
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'=' | b'&' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn app_data() -> AppData {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config");
    let settings = Settings::load_profile(&dir, "local").expect("local profile");
    let events = Arc::new(MemoryEventStore::default());
    let backend = Backend::unpooled(
        events.clone(),
        Arc::new(MemoryTokenStore::default()),
        events.clone(),
        Arc::new(MemorySchemaStore::default()),
        events,
    );
    AppData::new(&settings, &backend).expect("app data")
}

#[test]
fn no_request_gets_a_server_error_and_every_refusal_is_a_problem() {
    let system = actix_web::rt::System::new();
    let service = system.block_on(init_service(app(app_data())));
    fuzz(3000, request(), |fuzzed| {
        let mut request = match fuzzed.method {
            "POST" => TestRequest::post(),
            "PUT" => TestRequest::put(),
            _ => TestRequest::get(),
        }
        .uri(&fuzzed.path);
        for (name, value) in &fuzzed.headers {
            // A value that is not a valid header value cannot be sent at all.
            if let Ok(value) = HeaderValue::from_bytes(value) {
                request = request.insert_header((*name, value));
            }
        }
        let request = request.set_payload(fuzzed.body.clone()).to_request();
        let (status, problem_type, request_id, body) = system.block_on(async {
            let response = call_service(&service, request).await;
            let status = response.status().as_u16();
            let header = |name: &str| {
                response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
            };
            let (problem_type, request_id) = (header("content-type"), header("x-request-id"));
            (status, problem_type, request_id, read_body(response).await)
        });
        prop_assert!(status < 500, "{status} for {fuzzed:?}: {}", String::from_utf8_lossy(&body));
        if status >= 400 {
            prop_assert_eq!(problem_type.as_deref(), Some("application/problem+json"));
            let problem: Value = serde_json::from_slice(&body)
                .map_err(|e| TestCaseError::fail(format!("{e}: {fuzzed:?}")))?;
            prop_assert_eq!(&problem["status"], &json!(status));
            prop_assert!(problem["type"].is_string() && problem["detail"].is_string());
            prop_assert_eq!(problem["request_id"].as_str(), request_id.as_deref());
        }
        Ok(())
    });
}

#[test]
fn the_idempotency_key_header_parser_takes_any_bytes() {
    let strategy = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        "[!-~]{1,255}".prop_map(|k| k.into_bytes()),
        "[!-~]{1,255}".prop_map(|k| {
            format!("\"{}\"", k.replace('\\', "\\\\").replace('"', "\\\"")).into_bytes()
        }),
    ];
    fuzz(20_000, strategy, |raw| {
        match wire::idempotency_key(&raw) {
            Ok(key) => {
                let text = String::from_utf8(raw.clone())
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                // A key is what was sent, without the whitespace around a header value, bare or
                // unquoted.
                let sent = text.trim_matches([' ', '\t']);
                prop_assert!(sent == key.as_str() || sent.starts_with('"'), "{text:?} -> {key:?}");
                prop_assert!((1..=255).contains(&key.as_str().len()));
            }
            Err(error) => prop_assert_eq!(error.field.as_str(), "idempotency_key"),
        }
        Ok(())
    });
}

#[test]
fn the_cursor_parser_takes_any_text_and_refuses_altered_cursors() {
    fuzz(
        20_000,
        ("\\PC{0,60}", any::<u64>(), any::<u64>(), any::<Index>()),
        |(text, tx, seq, at)| {
            let _ = cursor::decode(&text);
            let position = intake_domain::FeedPosition { tx, seq: seq as i64 };
            let valid = cursor::encode(position);
            prop_assert_eq!(cursor::decode(&valid), Some(position));
            let mut altered = valid.into_bytes();
            let i = at.index(altered.len());
            altered[i] = if altered[i] == b'A' { b'B' } else { b'A' };
            let altered =
                String::from_utf8(altered).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(cursor::decode(&altered), None, "{} decoded", altered);
            Ok(())
        },
    );
}
