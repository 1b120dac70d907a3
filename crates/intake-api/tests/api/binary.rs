//! The `intake` binary itself: its commands against the test's database, and `serve` as a
//! process (logs, SIGTERM).

use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::CONTENT_TYPE;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::{config_dir, DEV_TOKEN};
use crate::process::{database_url, with_database, ServeProcess};

fn intake(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_intake"))
        .args(args)
        .env("DATABASE_URL", url)
        .env("INTAKE_CONFIG_DIR", config_dir())
        .env_remove("INTAKE_ENV")
        .output()
        .expect("intake runs")
}

#[track_caller]
fn assert_success(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}; stderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn tokens_can_be_created_listed_and_revoked(pool: PgPool) {
    let url = database_url(&pool).await;

    let created = intake(
        &url,
        &["tokens", "create", "--tenant", "acme", "--name", "ci", "--scope", "events:write"],
    );
    let secret = assert_success(&created).trim().to_owned();
    assert!(secret.starts_with("itk_") && secret.len() == 4 + 64, "token {secret:?}");

    let listed = assert_success(&intake(&url, &["tokens", "list"]));
    let mut lines = listed.lines();
    assert_eq!(lines.next(), Some("ID\tTENANT\tNAME\tSCOPES\tRATE\tCREATED\tSTATE"), "{listed}");
    let line = lines.find(|l| l.contains("acme")).expect("token listed");
    assert!(line.contains("events:write") && line.contains("active"), "{line}");
    assert!(line.contains("\tdefault\t"), "no limit of its own: {line}");
    assert!(!listed.contains(&secret), "list never shows a secret");
    let id = line.split('\t').next().expect("id column").to_owned();
    assert!(id.starts_with("tok_"), "{id}");
    let as_json: serde_json::Value =
        serde_json::from_str(&assert_success(&intake(&url, &["tokens", "list", "--json"])))
            .expect("tokens list --json prints JSON");
    assert_eq!(as_json[0]["id"], id.as_str());
    assert_eq!(as_json[0]["tenant"], "acme");
    assert_eq!(as_json[0]["scopes"], serde_json::json!(["events:write"]));
    assert_eq!(as_json[0]["revoked_at"], serde_json::Value::Null);
    assert_eq!(as_json[0]["rate"], serde_json::Value::Null);

    assert_success(&intake(&url, &["tokens", "update", &id, "--rate", "5", "--burst", "20"]));
    let as_json: serde_json::Value =
        serde_json::from_str(&assert_success(&intake(&url, &["tokens", "list", "--json"])))
            .expect("json");
    assert_eq!((as_json[0]["rate"].clone(), as_json[0]["burst"].clone()), (5.into(), 20.into()));
    assert!(assert_success(&intake(&url, &["tokens", "list"])).contains("\t5/20\t"));
    assert_success(&intake(&url, &["tokens", "update", &id, "--default-limit"]));
    let as_json: serde_json::Value =
        serde_json::from_str(&assert_success(&intake(&url, &["tokens", "list", "--json"])))
            .expect("json");
    assert_eq!(as_json[0]["rate"], serde_json::Value::Null);
    for bad in [&["--rate", "5"][..], &["--rate", "0", "--burst", "1"], &[]] {
        let mut args = vec!["tokens", "update", id.as_str()];
        args.extend_from_slice(bad);
        assert!(!intake(&url, &args).status.success(), "{bad:?} must be refused");
    }
    let limited = intake(
        &url,
        &["tokens", "create", "--tenant", "acme", "--name", "slow", "--rate", "2", "--burst", "3"],
    );
    assert_success(&limited);
    let listed = assert_success(&intake(&url, &["tokens", "list"]));
    assert!(listed.lines().any(|l| l.contains("\tslow\t") && l.contains("\t2/3\t")), "{listed}");

    let hash: Vec<u8> = sqlx::query_scalar("SELECT token_hash FROM api_tokens")
        .fetch_one(&pool)
        .await
        .expect("row");
    assert_ne!(hash, secret.as_bytes(), "only a hash is stored");

    assert_success(&intake(&url, &["tokens", "revoke", &id]));
    let listed = assert_success(&intake(&url, &["tokens", "list"]));
    assert!(listed.contains("revoked"), "{listed}");
    let again = intake(&url, &["tokens", "revoke", &id]);
    assert!(!again.status.success(), "revoking twice fails");
    assert!(String::from_utf8_lossy(&again.stderr).contains("no active token"));
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn tokens_create_rejects_an_unknown_scope_or_tenant(pool: PgPool) {
    let url = database_url(&pool).await;
    let bad_scope = intake(
        &url,
        &["tokens", "create", "--tenant", "acme", "--name", "x", "--scope", "events:delete"],
    );
    assert!(!bad_scope.status.success());
    assert!(String::from_utf8_lossy(&bad_scope.stderr).contains("unknown scope"));
    let bad_tenant = intake(&url, &["tokens", "create", "--tenant", "Not Valid", "--name", "x"]);
    assert!(!bad_tenant.status.success());
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM api_tokens")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(count, 0);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn migrate_creates_the_database_and_is_safe_to_run_twice(pool: PgPool) {
    let name = format!("intake_migrate_{}", uuid::Uuid::new_v4().simple());
    let url = with_database(&name);
    assert_success(&intake(&url, &["migrate"]));
    assert_success(&intake(&url, &["migrate"]));
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await.expect("connect");
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut conn)
        .await
        .expect("migrations table");
    assert_eq!(applied as usize, intake_storage::MIGRATOR.iter().count());
    <sqlx::PgConnection as sqlx::Connection>::close(conn).await.expect("close");
    sqlx::query(&format!("DROP DATABASE {name}")).execute(&pool).await.expect("drop");
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn serve_logs_no_token_or_event_data_and_exits_0_on_sigterm(pool: PgPool) {
    let server = ServeProcess::start(&database_url(&pool).await, Some("debug")).await;
    let marker = "very-private-value-8c1f";
    let body = json!({
        "event_type": "user.created",
        "occurred_at": "2025-12-22T10:30:00Z",
        "idempotency_key": "log-check",
        "data": {"secret": marker}
    });
    let response = reqwest::Client::new()
        .post(server.url("/v1/events"))
        .bearer_auth(DEV_TOKEN)
        .header(CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);

    server.sigterm();
    let (exit, logs) = server.wait();
    assert!(exit.success(), "exit {exit:?}; logs: {logs}");
    assert!(logs.contains("request finished"), "a line per request: {logs}");
    assert!(!logs.contains('\u{1b}'), "colour codes in a log that is not a terminal: {logs}");
    assert!(!logs.contains(DEV_TOKEN), "a token reached the logs: {logs}");
    assert!(!logs.contains(marker), "event data reached the logs: {logs}");
}

/// A body sent in three parts, 200 ms apart, so that the request is in flight for a while;
/// `started` counts the bodies whose first part has gone out.
fn slow_body(body: String, started: Arc<AtomicUsize>) -> reqwest::Body {
    let bytes = body.into_bytes();
    let third = bytes.len() / 3;
    let parts = vec![
        bytes[..third].to_vec(),
        bytes[third..2 * third].to_vec(),
        bytes[2 * third..].to_vec(),
    ];
    let stream = futures_util::stream::unfold((0, parts.into_iter()), move |(i, mut parts)| {
        let started = started.clone();
        async move {
            let part = parts.next()?;
            if i == 0 {
                started.fetch_add(1, Ordering::SeqCst);
            } else {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Some((Ok::<_, std::io::Error>(part), (i + 1, parts)))
        }
    });
    reqwest::Body::wrap_stream(stream)
}

/// Polls until `condition` holds, failing after `seconds`.
async fn eventually(seconds: u64, what: &str, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !condition().await {
        assert!(Instant::now() < deadline, "{what} did not happen within {seconds} s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn sigterm_lets_requests_in_flight_finish_and_refuses_new_ones(pool: PgPool) {
    a_stop_signal_drains(pool, "TERM").await;
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn sigint_drains_exactly_as_sigterm_does(pool: PgPool) {
    a_stop_signal_drains(pool, "INT").await;
}

/// `signal` (TERM or INT) stops the server: requests in flight finish, new ones are refused, the
/// process exits 0 and warns of nothing.
async fn a_stop_signal_drains(pool: PgPool, signal: &str) {
    let server = ServeProcess::start(&database_url(&pool).await, Some("info")).await;
    // A client without connection reuse: each request opens its own connection.
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().expect("client");

    let event = |key: String| {
        json!({"event_type": "t", "occurred_at": "2025-12-22T10:30:00Z", "idempotency_key": key, "data": {}})
            .to_string()
    };
    let started = Arc::new(AtomicUsize::new(0));
    let mut in_flight = Vec::new();
    for i in 0..8 {
        let request = client
            .post(server.url("/v1/events"))
            .bearer_auth(DEV_TOKEN)
            .header(CONTENT_TYPE, "application/json")
            .body(slow_body(event(format!("inflight-{i}")), started.clone()));
        in_flight.push(tokio::spawn(request.send()));
    }
    eventually(10, "every request starting its body", async || started.load(Ordering::SeqCst) == 8)
        .await;
    // The listener accepts connections in the order they arrived: once a later one is served,
    // the eight are in the server's hands.
    let later = client.get(server.url("/healthz")).send().await.expect("served");
    assert_eq!(later.status(), 200);
    server.signal(signal);
    // The listener closes on SIGTERM: a new connection is soon refused.
    let address = server.base.trim_start_matches("http://").to_owned();
    eventually(5, "the listener closing", async || {
        tokio::net::TcpStream::connect(&address).await.is_err()
    })
    .await;

    // After SIGTERM no new connection is served: it is refused, or closed unanswered.
    let late = client
        .post(server.url("/v1/events"))
        .bearer_auth(DEV_TOKEN)
        .header(CONTENT_TYPE, "application/json")
        .body(event("late".into()))
        .send()
        .await;
    assert!(
        late.is_err(),
        "a request after SIG{signal} was served: {:?}",
        late.map(|r| r.status())
    );

    for (i, task) in in_flight.into_iter().enumerate() {
        let response = task.await.expect("task").expect("a request in flight gets its answer");
        assert_eq!(response.status(), 200, "request {i} after SIG{signal}");
    }
    let (exit, logs) = server.wait();
    assert!(exit.success(), "exit {exit:?}: {logs}");
    let warnings: Vec<&str> = logs.lines().filter(|l| l.contains("WARN")).collect();
    assert!(warnings.is_empty(), "a clean stop warns of nothing: {warnings:?}");

    let keys: Vec<String> =
        sqlx::query_scalar("SELECT idempotency_key FROM events ORDER BY idempotency_key")
            .fetch_all(&pool)
            .await
            .expect("rows");
    let want: Vec<String> = (0..8).map(|i| format!("inflight-{i}")).collect();
    assert_eq!(keys, want, "every answered event is stored, the late one is not");
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn requests_refused_before_routing_are_counted_not_logged_as_errors(pool: PgPool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = ServeProcess::start(&database_url(&pool).await, None).await;
    let address = server.base.trim_start_matches("http://").to_owned();
    for _ in 0..20 {
        let mut stream = tokio::net::TcpStream::connect(&address).await.expect("connect");
        stream.write_all(b"GARBAGE\r\n\r\n").await.expect("write");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.expect("read");
        assert!(answer.starts_with(b"HTTP/1.1 400 "), "{}", String::from_utf8_lossy(&answer));
    }
    let metrics = reqwest::get(server.url("/metrics")).await.expect("metrics");
    let text = metrics.text().await.expect("text");
    assert!(text.contains("intake_http_refused_before_routing_total{status=\"400\"} 20"), "{text}");
    server.sigterm();
    let (exit, logs) = server.wait();
    assert!(exit.success(), "exit {exit:?}; logs: {logs}");
    assert!(!logs.contains("ERROR"), "a client can write ERROR lines at will: {logs}");
}
