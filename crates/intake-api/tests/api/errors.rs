//! Every error status of contract §5, each with its problem document.

use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::{
    expect_problem, quick_start_event, raw_exchange, spawn_app, spawn_app_without_database,
    DEV_TOKEN,
};

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn malformed_json_is_400_invalid_json(pool: PgPool) {
    let app = spawn_app(pool).await;
    for body in ["{", "{\"event_type\": }", "nope", "", "{\"a\":1} trailing"] {
        let (_, problem) = expect_problem(app.post_events().body(body), 400, "invalid-json").await;
        assert!(problem["detail"].is_string(), "for {body:?}");
    }
    assert_eq!(app.event_count().await, 0);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn invalid_utf8_is_400_invalid_utf8(pool: PgPool) {
    let app = spawn_app(pool).await;
    let body = b"{\"event_type\":\"\xff\xfe\"}".to_vec();
    expect_problem(app.post_events().body(body), 400, "invalid-utf8").await;
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_body_that_is_not_an_object_is_400_invalid_body(pool: PgPool) {
    let app = spawn_app(pool).await;
    for body in ["[]", "[{\"event_type\":\"t\"}]", "\"text\"", "42", "null", "true"] {
        expect_problem(app.post_events().body(body), 400, "invalid-body").await;
    }
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn every_invalid_field_is_reported_at_once(pool: PgPool) {
    let app = spawn_app(pool).await;
    let body = json!({
        "event_type": ".bad",
        "occured_at": "2025-12-22T10:30:00Z",
        "idempotency_key": "has space",
        "data": "not an object",
    });
    let (_, problem) =
        expect_problem(app.post_events().body(body.to_string()), 400, "validation-failed").await;
    let errors = problem["errors"].as_array().expect("errors array");
    let fields: Vec<(&str, &str)> = errors
        .iter()
        .map(|e| (e["field"].as_str().unwrap_or(""), e["code"].as_str().unwrap_or("")))
        .collect();
    for want in [
        ("occured_at", "unknown_field"),
        ("event_type", "invalid_event_type"),
        ("occurred_at", "missing_field"),
        ("idempotency_key", "invalid_idempotency_key"),
        ("data", "invalid_type"),
    ] {
        assert!(fields.contains(&want), "missing {want:?} in {fields:?}");
    }
    assert!(errors.iter().all(|e| e["message"].is_string()), "{problem}");
    assert_eq!(app.event_count().await, 0);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn occurred_at_without_offset_or_far_in_the_future_is_rejected(pool: PgPool) {
    let app = spawn_app(pool).await;
    let future = (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339();
    for (value, code) in [
        ("2025-12-22", "invalid_timestamp"),
        ("2025-12-22T10:30:00", "invalid_timestamp"),
        (future.as_str(), "timestamp_in_future"),
    ] {
        let mut body = quick_start_event();
        body["occurred_at"] = json!(value);
        let (_, problem) =
            expect_problem(app.post_events().body(body.to_string()), 400, "validation-failed")
                .await;
        assert_eq!(problem["errors"][0]["field"], "occurred_at", "for {value}");
        assert_eq!(problem["errors"][0]["code"], code, "for {value}");
    }
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_content_type_other_than_json_is_415(pool: PgPool) {
    let app = spawn_app(pool).await;
    let body = quick_start_event().to_string();
    let typed = |content_type: &str| {
        app.client
            .post(app.url("/v1/events"))
            .bearer_auth(DEV_TOKEN)
            .header(CONTENT_TYPE, content_type)
            .body(body.clone())
    };
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/json; charset=latin1",
        "garbage",
    ] {
        expect_problem(typed(content_type), 415, "unsupported-content-type").await;
    }
    let without = app.client.post(app.url("/v1/events")).bearer_auth(DEV_TOKEN).body(body.clone());
    expect_problem(without, 415, "unsupported-content-type").await;
    for content_type in [
        "application/json; charset=utf-8",
        "application/json; charset=UTF-8",
        // Any +json type carries intake's JSON, except the CloudEvents ones (§11).
        "application/vnd.example+json",
    ] {
        let status = typed(content_type).send().await.expect("sent").status();
        assert_eq!(status, 200, "{content_type}");
    }
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_content_encoding_other_than_gzip_or_identity_is_415(pool: PgPool) {
    let app = spawn_app(pool).await;
    for encoding in ["br", "deflate", "zstd"] {
        let request = app
            .post_events()
            .header("Content-Encoding", encoding)
            .body(quick_start_event().to_string());
        expect_problem(request, 415, "unsupported-content-encoding").await;
    }
    // A value that is not ASCII is no encoding intake knows either (not "none given").
    let not_ascii = reqwest::header::HeaderValue::from_bytes(b"\xc2\x85").expect("obs-text");
    let request = app
        .post_events()
        .header("Content-Encoding", not_ascii)
        .body(quick_start_event().to_string());
    expect_problem(request, 415, "unsupported-content-encoding").await;
    let identity = app
        .post_events()
        .header("Content-Encoding", "identity")
        .body(quick_start_event().to_string());
    assert_eq!(identity.send().await.expect("sent").status(), 200);
}

fn oversized_event(bytes: usize) -> String {
    let mut body = quick_start_event();
    body["data"] = json!({ "pad": "x".repeat(bytes) });
    body.to_string()
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_body_over_one_mebibyte_is_413(pool: PgPool) {
    let app = spawn_app(pool).await;
    let request = app.post_events().body(oversized_event(1024 * 1024));
    let (_, problem) = expect_problem(request, 413, "payload-too-large").await;
    assert!(problem["detail"].as_str().unwrap_or("").contains("1048576"), "{problem}");
    // Just under the limit is fine.
    let fits = oversized_event(1024 * 1024 - 300);
    assert!(fits.len() <= 1024 * 1024);
    assert_eq!(app.post_events().body(fits).send().await.expect("sent").status(), 200);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_streamed_body_without_length_is_cut_off_at_the_limit(pool: PgPool) {
    let app = spawn_app(pool).await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..40).map(|_| Ok(vec![b' '; 64 * 1024])).collect();
    let stream = futures_util::stream::iter(chunks);
    let request = app.post_events().body(reqwest::Body::wrap_stream(stream));
    expect_problem(request, 413, "payload-too-large").await;
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn an_unknown_route_is_a_404_problem(pool: PgPool) {
    let app = spawn_app(pool).await;
    for path in ["/", "/v2/events", "/v1/event", "/v1/events/extra/segments"] {
        expect_problem(app.client.get(app.url(path)), 404, "not-found").await;
    }
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_wrong_method_is_405_with_allow(pool: PgPool) {
    let app = spawn_app(pool).await;
    use reqwest::Method;
    for (method, path, allow) in [
        (Method::PUT, "/v1/events", "GET, POST"),
        (Method::DELETE, "/v1/events", "GET, POST"),
        (Method::PATCH, "/v1/events", "GET, POST"),
        (Method::POST, "/v1/events/evt_x", "DELETE, GET"),
        (Method::PUT, "/v1/erasures", "POST"),
        (Method::GET, "/v1/events/batch", "POST"),
        (Method::POST, "/healthz", "GET"),
    ] {
        let request = app.client.request(method.clone(), app.url(path)).bearer_auth(DEV_TOKEN);
        let (headers, _) = expect_problem(request, 405, "method-not-allowed").await;
        assert_eq!(headers["allow"], allow, "{method} {path}");
    }
}

#[tokio::test]
async fn an_unreachable_database_is_503_with_retry_after() {
    let app = spawn_app_without_database().await;
    let started = std::time::Instant::now();
    let (headers, _) = expect_problem(
        app.post_events().body(quick_start_event().to_string()),
        503,
        "service-unavailable",
    )
    .await;
    assert!(headers.get(RETRY_AFTER).is_some(), "Retry-After is set");
    // Bounded by the acquire timeout (0.5 s here), with generous room for a slow machine.
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_sane_request_id_is_echoed_and_an_insane_one_replaced(pool: PgPool) {
    let app = spawn_app(pool).await;
    let response = app
        .post_events()
        .header("X-Request-Id", "client-abc.123")
        .body(quick_start_event().to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(response.headers()["x-request-id"], "client-abc.123");

    let (headers, problem) = expect_problem(
        app.client.get(app.url("/nope")).header("X-Request-Id", "bad id with spaces"),
        404,
        "not-found",
    )
    .await;
    let echoed = headers["x-request-id"].to_str().expect("ascii");
    assert_ne!(echoed, "bad id with spaces");
    assert_eq!(problem["request_id"], echoed);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn values_postgres_cannot_store_are_400_not_500(pool: PgPool) {
    let app = spawn_app(pool).await;
    for (data, code) in [
        (r#"{"s":"nul \u0000 here"}"#, "invalid_character"),
        (r#"{"\u0000":1}"#, "invalid_character"),
        (r#"{"n":1e200000}"#, "number_out_of_range"),
        (r#"{"n":0.000001e-16380}"#, "number_out_of_range"),
    ] {
        let body = format!(
            r#"{{"event_type":"t","occurred_at":"2025-12-22T10:30:00Z","idempotency_key":"k","data":{data}}}"#
        );
        let (_, problem) =
            expect_problem(app.post_events().body(body), 400, "validation-failed").await;
        assert_eq!(problem["errors"][0]["code"], code, "for {data}");
    }
    assert_eq!(app.event_count().await, 0);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn requests_the_http_layer_refuses_are_problems_with_a_request_id(pool: PgPool) {
    let app = spawn_app(pool).await;
    let huge_header =
        format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(200_000));
    let many_headers = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..200).map(|i| format!("X-H{i}: v\r\n")).collect::<String>()
    );
    let cases: [(&str, &[u8], u16, &str); 6] = [
        ("a request line that is not HTTP", b"GARBAGE\r\n\r\n", 400, "malformed-request"),
        (
            "a Content-Length that is not a number",
            b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
            400,
            "malformed-request",
        ),
        (
            "Content-Length beside Transfer-Encoding",
            b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\
              Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
            "malformed-request",
        ),
        (
            "a header name with a space",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n",
            400,
            "malformed-request",
        ),
        ("a header over the limit", huge_header.as_bytes(), 431, "headers-too-large"),
        ("too many header fields", many_headers.as_bytes(), 431, "headers-too-large"),
    ];
    for (what, request, status, slug) in cases {
        let answer = raw_exchange(&app.address, request).await;
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{what}: {answer}");
        let head = head.to_ascii_lowercase();
        assert!(head.contains("content-type: application/problem+json"), "{what}: {answer}");
        let problem: serde_json::Value =
            serde_json::from_str(body).unwrap_or_else(|e| panic!("{what}: {e}: {answer}"));
        assert_eq!(problem["type"], format!("/docs/troubleshooting#{slug}"), "{what}");
        assert_eq!(problem["status"], status, "{what}");
        let id = problem["request_id"].as_str().expect("a request id");
        assert!(head.contains(&format!("x-request-id: {id}")), "{what}: {answer}");
    }
    // The server is no worse for it.
    let response = reqwest::get(format!("{}/healthz", app.address)).await.expect("healthz");
    assert_eq!(response.status(), 200);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn while_the_database_is_down_no_answer_waits_for_more_than_one_acquire_timeout(
    _pool: PgPool,
) {
    // The pool gives up on a connection after 0.5 s; a request queued behind a writer that is
    // still waiting must not then wait a second 0.5 s of its own.
    let app = spawn_app_without_database().await;
    let mut tasks = Vec::new();
    for wave in 0..6 {
        for n in 0..10 {
            let request = app.post_events().body(
                json!({"event_type": "t", "occurred_at": "2025-12-22T10:30:00Z",
                       "idempotency_key": format!("down-{wave}-{n}"), "data": {}})
                .to_string(),
            );
            tasks.push(tokio::spawn(async move {
                let started = std::time::Instant::now();
                let status = request.send().await.expect("answered").status().as_u16();
                (status, started.elapsed())
            }));
        }
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    }
    let mut slowest = std::time::Duration::ZERO;
    for task in tasks {
        let (status, took) = task.await.expect("task");
        assert_eq!(status, 503);
        slowest = slowest.max(took);
    }
    println!("slowest 503: {} ms (acquire timeout 500 ms)", slowest.as_millis());
    // Twice the acquire timeout means a request waited for two attempts.
    assert!(slowest < std::time::Duration::from_millis(950), "slowest 503 took {slowest:?}");
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_field_given_twice_is_refused_by_name_never_the_last_one_silently(pool: PgPool) {
    let app = spawn_app(pool).await;
    let plain = r#"{"event_type":"a","event_type":"b","occurred_at":"2025-12-22T10:30:00Z","idempotency_key":"d-1","data":{}}"#;
    let (_, problem) =
        expect_problem(app.post_events().body(plain), 400, "validation-failed").await;
    assert_eq!(problem["errors"][0]["field"], "event_type", "{problem}");
    assert_eq!(problem["errors"][0]["code"], "duplicate_field", "{problem}");
    let structured = r#"{"specversion":"1.0","id":"x","id":"y","source":"/s","type":"t","time":"2025-12-22T10:30:00Z"}"#;
    let request = app
        .client
        .post(app.url("/v1/events"))
        .bearer_auth(DEV_TOKEN)
        .header(CONTENT_TYPE, "application/cloudevents+json")
        .body(structured);
    let (_, problem) = expect_problem(request, 400, "validation-failed").await;
    assert_eq!(problem["errors"][0]["field"], "id", "{problem}");
    assert_eq!(app.event_count().await, 0);
}
