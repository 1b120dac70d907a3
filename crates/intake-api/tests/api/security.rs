//! Security guarantees, tried as a hostile client would: tokens at rest, tenant isolation,
//! SQL-looking input, hostile connections, and what error bodies may reveal.

use std::time::Duration;

use intake_domain::Scope;
use reqwest::header::CONTENT_TYPE;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::{
    create_token, raw_exchange, spawn_app, spawn_app_without_database, TestApp, DEV_TOKEN,
};

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn tokens_are_never_stored_in_plaintext(pool: PgPool) {
    let (secret, _) = create_token(&pool, "acme", Scope::ALL.to_vec()).await;
    let app = spawn_app(pool).await;
    // The secret is a working one.
    let response =
        app.client.get(app.url("/v1/events")).bearer_auth(&secret).send().await.expect("sent");
    assert_eq!(response.status(), 200);

    let rows: Vec<String> = sqlx::query_scalar("SELECT to_jsonb(t)::text FROM api_tokens t")
        .fetch_all(&app.pool)
        .await
        .expect("token rows");
    assert_eq!(rows.len(), 1);
    // The secret's random part: whatever follows its last separator.
    let random = secret.rsplit(['_', '.']).next().expect("a random part");
    assert!(random.len() >= 16, "{secret}");
    for row in &rows {
        assert!(!row.contains(&secret), "the token is stored as sent: {row}");
        assert!(!row.contains(random), "the token's random part is stored: {row}");
    }
}

fn keyed(key: &str, plan: &str) -> Value {
    json!({
        "event_type": "user.created",
        "occurred_at": "2025-12-22T10:30:00Z",
        "idempotency_key": key,
        "data": {"plan": plan}
    })
}

async fn send(
    app: &TestApp,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = match method {
        "POST" => app.client.post(app.url(path)),
        _ => app.client.get(app.url(path)),
    }
    .bearer_auth(token);
    if let Some(body) = body {
        request = request.header(CONTENT_TYPE, "application/json").body(body.to_string());
    }
    let response = request.send().await.expect("sent");
    (response.status().as_u16(), response.json().await.expect("json"))
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_tenant_can_never_read_or_dedupe_against_another(pool: PgPool) {
    let (acme, _) = create_token(&pool, "acme", Scope::ALL.to_vec()).await;
    let (globex, _) = create_token(&pool, "globex", Scope::ALL.to_vec()).await;
    let app = spawn_app(pool).await;

    // The same key: with the same payload it is no replay, with another it is no 422.
    let (status, a) = send(&app, &acme, "POST", "/v1/events", Some(keyed("shared", "pro"))).await;
    assert_eq!(status, 200);
    for plan in ["pro", "free"] {
        let body = Some(keyed(if plan == "pro" { "shared" } else { "shared-2" }, plan));
        let (status, b) = send(&app, &globex, "POST", "/v1/events", body).await;
        assert_eq!(status, 200, "{b}");
        assert_eq!(b["deduplicated"], false, "{b}");
        assert_ne!(b["event_id"], a["event_id"]);
    }
    let (_, reused) =
        send(&app, &globex, "POST", "/v1/events", Some(keyed("shared", "free"))).await;
    assert_ne!(reused["event_id"], a["event_id"], "a 422 must not name another tenant's event");
    let batch = json!({"events": [keyed("shared", "pro")]});
    let (status, b) = send(&app, &globex, "POST", "/v1/events/batch", Some(batch)).await;
    assert_eq!(status, 200);
    assert_eq!(b["results"][0]["deduplicated"], true, "globex's own earlier event: {b}");
    assert_ne!(b["results"][0]["event_id"], a["event_id"]);

    // Another tenant's event is as unknown as an id that never existed.
    let id = a["event_id"].as_str().expect("id");
    let (status, theirs) = send(&app, &globex, "GET", &format!("/v1/events/{id}"), None).await;
    assert_eq!(status, 404);
    let unknown = "evt_00000000000000000000000000000000";
    let (_, never) = send(&app, &globex, "GET", &format!("/v1/events/{unknown}"), None).await;
    assert_eq!(theirs["type"], never["type"]);
    let never_detail = never["detail"].as_str().expect("detail").replace(unknown, id);
    assert_eq!(theirs["detail"], never_detail, "the answers must not tell the two apart");

    // The feed holds only the caller's own. (It hands out an event once every older
    // transaction on the database server has ended, so other tests' can delay it a moment.)
    let feed = feed_of(&app, &globex, 2).await;
    let ids: Vec<&Value> =
        feed["data"].as_array().expect("data").iter().map(|e| &e["event_id"]).collect();
    assert_eq!(ids.len(), 2, "{feed}");
    assert!(!ids.contains(&&a["event_id"]));
    let feed = feed_of(&app, &acme, 1).await;
    assert_eq!(feed["data"].as_array().expect("data").len(), 1, "{feed}");
}

/// The first page of the token's feed once it holds `expected` events (or after 10 s).
async fn feed_of(app: &TestApp, token: &str, expected: usize) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, feed) = send(app, token, "GET", "/v1/events?limit=1000", None).await;
        let held = feed["data"].as_array().map_or(0, Vec::len);
        if held >= expected || std::time::Instant::now() > deadline {
            return feed;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn sql_looking_strings_are_stored_verbatim(pool: PgPool) {
    let app = spawn_app(pool).await;
    let sql = [
        "'; DROP TABLE events; --",
        "\" OR \"1\"=\"1",
        "1); DELETE FROM api_tokens WHERE (1=1",
        "$1 $$ $tag$ E'\\x00' \\' \\\\",
        "%' UNION SELECT secret_hash FROM api_tokens --",
    ];
    let mut data = serde_json::Map::new();
    for (i, text) in sql.iter().enumerate() {
        data.insert(format!("value{i}"), json!(text));
        data.insert((*text).to_owned(), json!([text, {"nested": text}]));
    }
    let data = Value::Object(data);
    // A key may hold any printable ASCII but spaces; this one is SQL all the same.
    let key = "';DROP/**/TABLE/**/events;--";
    let body = json!({
        "event_type": "select.from_events",
        "occurred_at": "2025-12-22T10:30:00Z",
        "idempotency_key": key,
        "data": data,
    });
    let (status, stored) = send(&app, DEV_TOKEN, "POST", "/v1/events", Some(body.clone())).await;
    assert_eq!(status, 200, "{stored}");
    let (status, replay) = send(&app, DEV_TOKEN, "POST", "/v1/events", Some(body)).await;
    assert_eq!(status, 200);
    assert_eq!(replay["deduplicated"], true, "the key matched itself, and only itself");

    let id = stored["event_id"].as_str().expect("id");
    let (_, read) = send(&app, DEV_TOKEN, "GET", &format!("/v1/events/{id}"), None).await;
    assert_eq!(read["data"], data, "data reads back as sent");
    assert_eq!(read["idempotency_key"], key);
    let (key_in_db, data_in_db): (String, Value) =
        sqlx::query_as("SELECT idempotency_key, data FROM events")
            .fetch_one(&app.pool)
            .await
            .expect("the events table is still there, with one row");
    assert_eq!(key_in_db, key);
    assert_eq!(data_in_db, data);

    // The same strings in the header key and the feed's parameters are input like any other.
    let header_key = "x'OR'1'='1";
    let response = app
        .post_events()
        .header("Idempotency-Key", header_key)
        .body(
            json!({"event_type": "t", "occurred_at": "2025-12-22T10:30:00Z", "data": {}})
                .to_string(),
        )
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    for query in [
        "event_type=x'%20OR%20'1'='1",
        "cursor='%3B%20DROP%20TABLE%20events%3B--",
        "limit=1;DELETE",
    ] {
        let (status, problem) =
            send(&app, DEV_TOKEN, "GET", &format!("/v1/events?{query}"), None).await;
        assert_eq!(status, 400, "{query}: {problem}");
        assert_eq!(problem["type"], "/docs/troubleshooting#invalid-query");
    }
    let tokens: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(tokens, 2);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn hostile_connections_do_not_stop_a_normal_client(pool: PgPool) {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app(pool).await;
    let address = app.address.trim_start_matches("http://").to_owned();

    // 1,000 connections that never send a byte.
    let mut idle = Vec::new();
    for _ in 0..1000 {
        idle.push(tokio::net::TcpStream::connect(&address).await.expect("idle connection"));
    }
    // 20 slowloris clients, a header byte every 100 ms, and 20 bodies that trickle.
    let mut slow = Vec::new();
    for i in 0..40 {
        let address = address.clone();
        slow.push(tokio::spawn(async move {
            let Ok(mut stream) = tokio::net::TcpStream::connect(&address).await else { return };
            let request = if i % 2 == 0 {
                "POST /v1/events HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".to_owned()
            } else {
                format!(
                    "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {DEV_TOKEN}\r\n\
                     Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{\"data\":\"{}",
                    "a".repeat(60)
                )
            };
            for byte in request.bytes() {
                if stream.write_all(&[byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }
    // Oversized header blocks, in a loop.
    let flood = {
        let address = app.address.clone();
        tokio::spawn(async move {
            let big = format!(
                "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
                "a".repeat(200_000)
            );
            for _ in 0..20 {
                let answer = raw_exchange(&address, big.as_bytes()).await;
                assert!(answer.starts_with("HTTP/1.1 431 "), "{answer:.200}");
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A normal client is served, promptly, while all of that goes on.
    let client =
        reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("client");
    for n in 0..20 {
        let response = client
            .post(app.url("/v1/events"))
            .bearer_auth(DEV_TOKEN)
            .header(CONTENT_TYPE, "application/json")
            .body(keyed(&format!("normal-{n}"), "pro").to_string())
            .send()
            .await
            .expect("a normal client is answered within 5 s");
        assert_eq!(response.status(), 200);
    }
    flood.await.expect("oversized headers answered 431");
    assert_eq!(app.event_count().await, 20, "only the normal client's events are stored");
    drop(idle);
    for task in slow {
        task.abort();
    }
}

/// Patterns that would reveal internals: SQL, the database, source paths, panics.
const REVEALING: &[&str] = &[
    "select ",
    "insert into",
    "delete from",
    "on conflict",
    "violates",
    "sqlstate",
    "sqlx",
    "postgres",
    "pg_",
    "relation ",
    "constraint",
    ".rs:",
    "/src/",
    "/root/",
    "/home/",
    "cargo",
    "panicked",
    "backtrace",
    "stack backtrace",
    "thread '",
];

#[track_caller]
fn assert_reveals_nothing(what: &str, body: &str) {
    let lower = body.to_lowercase();
    for pattern in REVEALING {
        assert!(!lower.contains(pattern), "{what}: the body reveals {pattern:?}: {body}");
    }
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn error_bodies_never_reveal_sql_paths_or_backtraces(pool: PgPool) {
    let app = spawn_app(pool).await;
    let client = &app.client;
    let event = keyed("k1", "pro");
    app.post_event(&event).await;
    let mut answers: Vec<(String, reqwest::RequestBuilder)> = vec![
        ("invalid json".into(), app.post_events().body("{\"event_type\": ")),
        ("invalid utf-8".into(), app.post_events().body(vec![b'{', 0xff, b'}'])),
        ("not an object".into(), app.post_events().body("[1]")),
        ("validation".into(), app.post_events().body(json!({"event_type": "", "data": 1}).to_string())),
        ("nul in data".into(), app.post_events().body(
            r#"{"event_type":"t","occurred_at":"2025-12-22T10:30:00Z","idempotency_key":"n","data":{"s":"\u0000"}}"#,
        )),
        ("number out of range".into(), app.post_events().body(
            r#"{"event_type":"t","occurred_at":"2025-12-22T10:30:00Z","idempotency_key":"n","data":{"n":1e99999}}"#,
        )),
        ("key reused".into(), app.post_events().body(keyed("k1", "free").to_string())),
        ("no token".into(), client.post(app.url("/v1/events"))),
        ("bad token".into(), client.get(app.url("/v1/events")).bearer_auth("'; SELECT 1; --")),
        ("unknown route".into(), client.get(app.url("/v1/../../etc/passwd"))),
        ("wrong method".into(), client.delete(app.url("/v1/events"))),
        ("bad query".into(), client.get(app.url("/v1/events?limit=-1&cursor=%00")).bearer_auth(DEV_TOKEN)),
        ("bad id".into(), client.get(app.url("/v1/events/evt_%27%3B--")).bearer_auth(DEV_TOKEN)),
        ("too large".into(), app.post_events().body(vec![b' '; 2 * 1024 * 1024])),
        ("wrong type".into(), client.post(app.url("/v1/events")).bearer_auth(DEV_TOKEN).header(CONTENT_TYPE, "text/plain").body("x")),
        ("wrong encoding".into(), app.post_events().header("Content-Encoding", "br").body("x")),
        ("bad gzip".into(), app.post_events().header("Content-Encoding", "gzip").body("not gzip")),
        ("bad batch".into(), client.post(app.url("/v1/events/batch")).bearer_auth(DEV_TOKEN).header(CONTENT_TYPE, "application/json").body("{\"events\": 5}")),
    ];
    let down = spawn_app_without_database().await;
    answers.push(("database down".into(), down.post_events().body(keyed("d", "pro").to_string())));
    answers.push(("readyz while down".into(), down.client.get(down.url("/readyz"))));
    for (what, request) in answers {
        let response = request.send().await.expect("sent");
        let status = response.status().as_u16();
        let body = response.text().await.expect("body");
        assert!((400..600).contains(&status) && status != 500, "{what}: {status} {body}");
        assert_reveals_nothing(&what, &body);
    }
    for raw in [&b"GARBAGE\r\n\r\n"[..], b"POST /v1/events HTTP/1.1\r\nContent-Length: x\r\n\r\n"] {
        let answer = raw_exchange(&app.address, raw).await;
        assert_reveals_nothing("malformed HTTP", &answer);
    }
}
