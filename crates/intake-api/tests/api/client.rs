//! The official Rust client (`intake-client`, contract §16) and `intake send` against the real
//! server: a crash and restart mid-stream, a server down at start, rate limits, rejected items,
//! a full queue, closing with the server down, `send_now`, its logs, and its throughput.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use intake_client::{
    Client, ClientBuilder, Event, Failure, FlushCounts, ItemError, OnFull, SendError, SendNowError,
};
use intake_domain::Scope;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::{
    create_limited_token, create_token, free_port, local_settings, spawn_app, spawn_app_with,
    TestApp, DEV_TOKEN,
};
use crate::process::{database_url, ServeProcess};

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

fn secs(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

/// A client of `base` with retries quick enough for a test.
fn client(base: &str, token: &str) -> ClientBuilder {
    Client::builder(base, token).retry_backoff(ms(100), secs(1))
}

/// A base URL nothing listens on.
fn nowhere() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

fn all_delivered(events: u64) -> FlushCounts {
    FlushCounts { delivered: events, failed: 0, pending: 0 }
}

/// Rows of `tenant`, and distinct keys among them.
async fn stored(pool: &PgPool, tenant: &str) -> (i64, i64) {
    sqlx::query_as(
        "SELECT count(*), count(DISTINCT idempotency_key) FROM events WHERE tenant_id = $1",
    )
    .bind(tenant)
    .fetch_one(pool)
    .await
    .expect("count")
}

/// Each key of `tenant` with the number of rows holding it.
async fn rows_per_key(pool: &PgPool, tenant: &str) -> HashMap<String, i64> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT idempotency_key, count(*) FROM events WHERE tenant_id = $1 GROUP BY 1",
    )
    .bind(tenant)
    .fetch_all(pool)
    .await
    .expect("keys");
    rows.into_iter().collect()
}

/// The value of one line of `/metrics` (0 when the line is absent).
async fn metric(app: &TestApp, line: &str) -> f64 {
    let text =
        app.client.get(app.url("/metrics")).send().await.expect("sent").text().await.expect("text");
    text.lines()
        .find_map(|l| l.strip_prefix(line).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or(0.0)
}

const BATCH_200: &str =
    r#"intake_http_requests_total{method="POST",route="/v1/events/batch",status="200"}"#;
const BATCH_429: &str =
    r#"intake_http_requests_total{method="POST",route="/v1/events/batch",status="429"}"#;

const CRASH_EVENTS: usize = 2_000;

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn events_sent_while_the_server_is_killed_and_restarted_are_stored_exactly_once(
    pool: PgPool,
) {
    let url = database_url(&pool).await;
    let port = free_port();
    let mut server = ServeProcess::start_on(&url, port, None).await;
    for run in 1..=3 {
        let tenant = format!("crash-{run}");
        let (token, _) = create_token(&pool, &tenant, vec![Scope::EventsWrite]).await;
        let client = client(&server.base, &token).build().expect("client");
        // A steady stream (20 events every 5 ms), so that the kill lands in the middle of it.
        let producer = {
            let client = client.clone();
            tokio::spawn(async move {
                let mut keys = Vec::with_capacity(CRASH_EVENTS);
                for n in 0..CRASH_EVENTS {
                    let key = client.send("client.crash", json!({"run": run, "n": n})).await;
                    keys.push(key.expect("queued"));
                    if n % 20 == 19 {
                        tokio::time::sleep(ms(5)).await;
                    }
                }
                keys
            })
        };
        let deadline = Instant::now() + secs(30);
        while stored(&pool, &tenant).await.0 < 300 {
            assert!(Instant::now() < deadline, "run {run}: the stream made no progress");
            tokio::time::sleep(ms(5)).await;
        }
        server.kill9();
        let at_kill = stored(&pool, &tenant).await.0;
        tokio::time::sleep(ms(300)).await;
        server = ServeProcess::start_on(&url, port, None).await;

        let keys = producer.await.expect("producer");
        let counts = client.flush(secs(60)).await;
        let stats = client.stats();
        let (rows, distinct) = stored(&pool, &tenant).await;
        let per_key = rows_per_key(&pool, &tenant).await;
        println!(
            "client kill -9, run {run}: {CRASH_EVENTS} events sent, {at_kill} rows at the kill; \
             flush {counts:?}; {rows} rows, {distinct} distinct keys; {} events retried, {} \
             acknowledged as deduplicated",
            stats.retried, stats.deduplicated
        );
        assert!((at_kill as usize) < CRASH_EVENTS, "run {run}: the kill came after the stream");
        assert!(stats.retried > 0, "run {run}: nothing was retried: {stats:?}");
        assert_eq!(counts, all_delivered(CRASH_EVENTS as u64), "run {run}");
        assert_eq!((rows, distinct), (CRASH_EVENTS as i64, CRASH_EVENTS as i64), "run {run}");
        let sent: HashSet<&String> = keys.iter().collect();
        assert_eq!(sent.len(), CRASH_EVENTS, "run {run}: send returned distinct keys");
        assert!(
            keys.iter().all(|key| per_key.get(key) == Some(&1)),
            "run {run}: a key returned by send is missing or stored twice"
        );
        client.close(secs(1)).await;
    }
    server.sigterm();
    let _ = server.wait();
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn events_sent_while_the_server_is_down_are_delivered_once_it_is_up(pool: PgPool) {
    let port = free_port();
    let client = client(&format!("http://127.0.0.1:{port}"), DEV_TOKEN)
        .flush_interval(ms(50))
        .build()
        .expect("client");
    for n in 0..50 {
        client.send("client.early", json!({"n": n})).await.expect("queued");
    }
    tokio::time::sleep(ms(800)).await;
    let while_down = client.stats();
    assert!(while_down.retried > 0 && while_down.delivered == 0, "{while_down:?}");

    let mut settings = local_settings();
    settings.server.port = port;
    let app = spawn_app_with(pool, settings).await;
    let counts = client.flush(secs(30)).await;
    assert_eq!(counts, all_delivered(50));
    assert_eq!(app.event_count().await, 50);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_tiny_rate_limit_is_waited_out_through_its_429s(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let (token, _) = create_limited_token(&pool, "acme", 10, 10).await;
    let client = client(&app.address, &token).max_batch(10).build().expect("client");
    let started = Instant::now();
    for n in 0..30 {
        client.send("client.limited", json!({"n": n})).await.expect("queued");
    }
    let counts = client.flush(secs(30)).await;
    let stats = client.stats();
    println!("30 events at 10 events/s (burst 10): delivered in {:.1?}", started.elapsed());
    assert_eq!(counts, all_delivered(30));
    assert!(metric(&app, BATCH_429).await >= 1.0, "the limit was never reached");
    assert!(stats.retried > 0, "{stats:?}");
    assert_eq!(stored(&pool, "acme").await, (30, 30));
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_batch_over_the_burst_is_split_by_the_policy_q_and_later_batches_keep_to_it(
    pool: PgPool,
) {
    let app = spawn_app(pool.clone()).await;
    let (token, _) = create_limited_token(&pool, "acme", 100_000, 10).await;
    let client = client(&app.address, &token).flush_interval(secs(60)).build().expect("client");
    for n in 0..35 {
        client.send("client.split", json!({"n": n})).await.expect("queued");
    }
    assert_eq!(client.flush(secs(10)).await, all_delivered(35));
    assert_eq!(metric(&app, BATCH_429).await, 1.0, "one batch of 35 over the burst");
    assert_eq!(metric(&app, BATCH_200).await, 4.0, "split into 10, 10, 10 and 5");

    for n in 35..60 {
        client.send("client.split", json!({"n": n})).await.expect("queued");
    }
    assert_eq!(client.flush(secs(10)).await, all_delivered(60));
    assert_eq!(metric(&app, BATCH_429).await, 1.0, "later batches keep to q");
    assert_eq!(metric(&app, BATCH_200).await, 7.0, "then 10, 10 and 5");
    assert_eq!(stored(&pool, "acme").await, (60, 60));
    assert_eq!(client.stats().retried, 0, "a split is not a retry");
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn an_item_the_server_rejects_goes_to_on_error_once_and_is_never_retried(pool: PgPool) {
    let app = spawn_app(pool).await;
    let reported = Arc::new(Mutex::new(Vec::<ItemError>::new()));
    let client = {
        let reported = reported.clone();
        client(&app.address, DEV_TOKEN)
            .on_error(move |error| reported.lock().expect("reported").push(error))
            .build()
            .expect("client")
    };
    for n in 0..5 {
        client.send("client.good", json!({"n": n})).await.expect("queued");
    }
    let bad = client.send("not a valid type!", json!({"n": 5})).await.expect("queued");
    for n in 6..11 {
        client.send("client.good", json!({"n": n})).await.expect("queued");
    }
    let expected = FlushCounts { delivered: 10, failed: 1, pending: 0 };
    assert_eq!(client.flush(secs(10)).await, expected);
    // Longer than the flush interval: a retry would have happened by now.
    tokio::time::sleep(ms(700)).await;
    assert_eq!(client.flush(secs(1)).await, expected);

    let reported = reported.lock().expect("reported").clone();
    assert_eq!(reported.len(), 1, "{reported:?}");
    assert_eq!(reported[0].idempotency_key, bad);
    assert_eq!(reported[0].event_type, "not a valid type!");
    match &reported[0].failure {
        Failure::Rejected { errors, .. } => {
            assert!(errors.iter().any(|e| e.field.as_deref() == Some("event_type")), "{errors:?}")
        }
        other => panic!("not a rejection: {other:?}"),
    }
    let stats = client.stats();
    assert_eq!((stats.delivered, stats.failed, stats.retried), (10, 1, 0), "{stats:?}");
    assert_eq!(metric(&app, BATCH_200).await, 1.0, "one request, never sent again");
    assert_eq!(app.event_count().await, 10);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_full_queue_drops_or_blocks_as_the_policy_says(pool: PgPool) {
    // With no server and a long flush interval, nothing leaves a queue of 10.
    let down = nowhere();
    let full = |policy| {
        client(&down, DEV_TOKEN).max_queue(10).flush_interval(secs(60)).on_full(policy).build()
    };
    let dropping = full(OnFull::Drop).expect("client");
    for n in 0..10 {
        dropping.send("client.full", json!({"n": n})).await.expect("room");
    }
    let dropped = dropping.send("client.full", json!({"n": 10})).await;
    assert!(matches!(dropped, Err(SendError::QueueFull)), "{dropped:?}");
    let stats = dropping.stats();
    assert_eq!((stats.enqueued, stats.dropped, stats.queued), (10, 1, 10), "{stats:?}");

    let blocking = full(OnFull::Block { timeout: ms(300) }).expect("client");
    for n in 0..10 {
        blocking.send("client.full", json!({"n": n})).await.expect("room");
    }
    let started = Instant::now();
    let timed_out = blocking.send("client.full", json!({"n": 10})).await;
    assert!(matches!(timed_out, Err(SendError::Timeout(_))), "{timed_out:?}");
    assert!(started.elapsed() >= ms(300), "gave up after {:?}", started.elapsed());
    assert_eq!(blocking.stats().dropped, 1);
    dropping.close(Duration::ZERO).await;
    blocking.close(Duration::ZERO).await;

    // With a server, a blocked sender gets in as batches leave.
    let app = spawn_app(pool).await;
    let client = client(&app.address, DEV_TOKEN)
        .max_queue(10)
        .max_batch(10)
        .on_full(OnFull::Block { timeout: secs(10) })
        .build()
        .expect("client");
    for n in 0..50 {
        client.send("client.full", json!({"n": n})).await.expect("room, eventually");
    }
    assert_eq!(client.flush(secs(10)).await, all_delivered(50));
    assert_eq!(client.stats().dropped, 0);
    assert_eq!(app.event_count().await, 50);
}

#[tokio::test]
async fn close_returns_within_its_timeout_while_the_server_does_not_answer() {
    // A listener that never accepts: connections open, requests hang.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", silent.local_addr().expect("address"));
    for base in [base, nowhere()] {
        let client = client(&base, DEV_TOKEN).flush_interval(ms(20)).build().expect("client");
        for n in 0..20 {
            client.send("client.closing", json!({"n": n})).await.expect("queued");
        }
        let started = Instant::now();
        let counts = client.close(secs(2)).await;
        let took = started.elapsed();
        println!("close(2 s) with {base} not answering returned in {took:.2?}: {counts:?}");
        assert!(took < secs(3), "close took {took:?}");
        assert_eq!(counts, FlushCounts { delivered: 0, failed: 0, pending: 20 });
        let late = client.send("client.closing", json!({})).await;
        assert!(matches!(late, Err(SendError::Closed)), "{late:?}");
    }
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn send_now_answers_at_once_and_a_second_time_as_a_replay(pool: PgPool) {
    let app = spawn_app(pool).await;
    let client = Client::new(&app.address, DEV_TOKEN).expect("client");
    let event = Event::new("user.created", json!({"user_id": "u_1"}))
        .occurred_at(Utc::now())
        .idempotency_key("send-now-1");
    let first = client.send_now(event.clone()).await.expect("stored");
    let second = client.send_now(event).await.expect("replayed");
    assert!(first.event_id.starts_with("evt_"), "{first:?}");
    assert!(!first.deduplicated && second.deduplicated, "{first:?} {second:?}");
    assert_eq!((&second.event_id, second.received_at), (&first.event_id, first.received_at));
    assert_eq!(second.idempotency_key, "send-now-1");
    let skew = first.clock_skew_ms.expect("sent_at makes the server report the skew");
    assert!(skew.abs() < 5_000, "one clock, {skew} ms apart");

    let refused = client.send_now(Event::new("not a valid type!", json!({}))).await;
    match refused {
        Err(SendNowError::Refused(ref problem)) => {
            assert_eq!((problem.status, problem.slug()), (400, "validation-failed"));
            assert!(problem.errors.iter().any(|e| e.field.as_deref() == Some("event_type")));
            assert!(!refused.as_ref().is_err_and(SendNowError::is_retryable));
        }
        other => panic!("not a refusal: {other:?}"),
    }
    assert_eq!(client.stats().enqueued, 0, "send_now does not use the queue");
    assert_eq!(app.event_count().await, 1);
}

thread_local! {
    /// Where this thread's log lines go while it captures them.
    static CAPTURE: std::cell::RefCell<Option<Arc<Mutex<Vec<u8>>>>> =
        const { std::cell::RefCell::new(None) };
}

/// Writes into the capture of the thread that logs, if it has one.
struct ThreadCapture;

impl Write for ThreadCapture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|capture| {
            if let Some(buffer) = capture.borrow().as_ref() {
                buffer.lock().expect("capture").extend_from_slice(bytes);
            }
        });
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures everything this thread logs, at every level, until the returned buffer is read with
/// [`end_capture`].
///
/// tracing caches each call site's interest, and a call site first reached by another test's
/// thread (with no subscriber of its own) can stay switched off for a subscriber scoped to this
/// thread (`set_default`; tokio-rs/tracing#2874, #3611). So one global subscriber is installed
/// for the test binary, passing only capturing threads' events, and the cache is rebuilt once
/// it is in place (a call site registered while it was being installed is set right too).
fn capture_logs() -> Arc<Mutex<Vec<u8>>> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::Layer;
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        // Asked at every event (a `filter_fn` would be asked once per call site).
        let capturing = tracing_subscriber::filter::dynamic_filter_fn(|_, _| {
            CAPTURE.with(|capture| capture.borrow().is_some())
        });
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(|| ThreadCapture)
            .with_filter(capturing);
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
            .expect("no other subscriber in the test binary");
        tracing::callsite::rebuild_interest_cache();
    });
    let buffer = Arc::new(Mutex::new(Vec::new()));
    CAPTURE.with(|capture| *capture.borrow_mut() = Some(buffer.clone()));
    buffer
}

/// Stops capturing this thread's logs; what was captured.
fn end_capture(buffer: Arc<Mutex<Vec<u8>>>) -> String {
    CAPTURE.with(|capture| *capture.borrow_mut() = None);
    let bytes = buffer.lock().expect("capture").clone();
    String::from_utf8(bytes).expect("UTF-8 logs")
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn the_client_logs_no_token_and_no_data_even_at_trace(pool: PgPool) {
    // The server is a process of its own, so that only the client logs here.
    let server = ServeProcess::start(&database_url(&pool).await, None).await;
    let (token, _) = create_token(&pool, "acme", vec![Scope::EventsWrite]).await;
    let unknown_token = "itk_unknowntokenmarker0000000000000000000000000000000000000000000000";
    let marker = "data-marker-5d1c";
    // The client's task and its connections run on this thread (one thread per sqlx test).
    let captured = capture_logs();

    // Delivered events, a rejected one and one sent now.
    let sender = client(&server.base, &token).flush_interval(ms(20)).build().expect("client");
    let mut keys = Vec::new();
    for n in 0..20 {
        keys.push(
            sender.send("log.test", json!({"secret": marker, "n": n})).await.expect("queued"),
        );
    }
    keys.push(sender.send("not valid!", json!({"secret": marker})).await.expect("queued"));
    assert_eq!(sender.flush(secs(10)).await, FlushCounts { delivered: 20, failed: 1, pending: 0 });
    let now = sender.send_now(Event::new("log.test", json!({"secret": marker}))).await;
    keys.push(now.expect("sent now").idempotency_key);
    sender.close(secs(1)).await;
    // A token the server does not know, and a server that is down.
    let refused = client(&server.base, unknown_token).build().expect("client");
    keys.push(refused.send("log.test", json!({"secret": marker})).await.expect("queued"));
    assert_eq!(refused.close(secs(5)).await.failed, 1);
    let down = client(&nowhere(), &token).retry_backoff(ms(10), ms(50)).build().expect("client");
    keys.push(down.send("log.test", json!({"secret": marker})).await.expect("queued"));
    assert_eq!(down.close(ms(500)).await.pending, 1);
    let logs = end_capture(captured);
    for expected in ["batch answered", "batch refused", "batch will be retried", "client closed"] {
        assert!(logs.contains(expected), "the capture lacks {expected:?}:\n{logs}");
    }
    assert!(!logs.contains(&token), "the token was logged:\n{logs}");
    assert!(!logs.contains(unknown_token), "the unknown token was logged:\n{logs}");
    assert!(!logs.contains(marker), "event data was logged:\n{logs}");
    for key in &keys {
        assert!(!logs.contains(key.as_str()), "key {key} was logged:\n{logs}");
    }
}

/// `intake send …` as a process, with `INTAKE_TOKEN` as given.
async fn intake_send(args: &[&str], token_variable: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_intake"));
    command.arg("send").args(args).env_remove("INTAKE_TOKEN").env_remove("RUST_LOG");
    if let Some(token) = token_variable {
        command.env("INTAKE_TOKEN", token);
    }
    // Off the runtime's thread: the in-process server answers on it meanwhile.
    tokio::task::spawn_blocking(move || command.output().expect("intake send runs"))
        .await
        .expect("joined")
}

/// The `name: value` lines `intake send` prints.
#[track_caller]
fn answer_of(output: &Output) -> HashMap<String, String> {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "exit {:?}; stdout: {stdout}; stderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .filter_map(|line| line.split_once(": "))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn intake_send_prints_the_event_id_and_then_a_replay(pool: PgPool) {
    let app = spawn_app(pool).await;
    let event = ["--key", "cli-1", "--occurred-at", "2025-12-22T12:30:00+02:00", "user.created"];
    let data = r#"{"user_id":"u_1"}"#;
    let mut args = vec!["--url", app.address.as_str(), "--token", DEV_TOKEN];
    args.extend(event);
    args.push(data);
    let first = answer_of(&intake_send(&args, None).await);
    assert!(first["event_id"].starts_with("evt_"), "{first:?}");
    assert_eq!(first["deduplicated"], "false");
    assert_eq!(first["idempotency_key"], "cli-1");
    assert!(first["clock_skew_ms"].parse::<i64>().is_ok(), "{first:?}");

    // The token from the environment; the same key and time again: a replay.
    let mut args = vec!["--url", app.address.as_str()];
    args.extend(event);
    args.push(data);
    let second = answer_of(&intake_send(&args, Some(DEV_TOKEN)).await);
    assert_eq!(
        (&second["event_id"], second["deduplicated"].as_str()),
        (&first["event_id"], "true")
    );

    let stored = app.get_json(&format!("/v1/events/{}", first["event_id"])).await;
    assert_eq!(stored["occurred_at"], "2025-12-22T10:30:00Z");
    assert_eq!(stored["data"], json!({"user_id": "u_1"}));
    assert_eq!(app.event_count().await, 1);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn intake_send_exits_non_zero_with_the_problem_when_refused(pool: PgPool) {
    let app = spawn_app(pool).await;
    let base = app.address.as_str();
    let cases: [(&[&str], &[&str]); 3] = [
        (
            &["--url", base, "--token", DEV_TOKEN, "not a valid type!", "{}"],
            &["400 validation-failed", "event_type", "request_id"],
        ),
        (&["--url", base, "--token", "itk_unknown", "user.created", "{}"], &["401 unauthorized"]),
        (&["--url", base, "--token", DEV_TOKEN, "user.created", "{not json"], &["JSON_DATA"]),
    ];
    for (args, expected) in cases {
        let output = intake_send(args, None).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(output.stdout.is_empty(), "{args:?}: {}", String::from_utf8_lossy(&output.stdout));
        for part in expected {
            assert!(stderr.contains(part), "{args:?}: {part:?} not in {stderr}");
        }
    }
    assert_eq!(app.event_count().await, 0);
}

const THROUGHPUT_EVENTS: u64 = 100_000;

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn one_task_sends_a_hundred_thousand_events_through_a_local_server(pool: PgPool) {
    let app = spawn_app(pool).await;
    let client = Client::new(&app.address, DEV_TOKEN).expect("client");
    let started = Instant::now();
    for n in 0..THROUGHPUT_EVENTS {
        client.send("client.throughput", json!({"n": n})).await.expect("queued");
    }
    let counts = client.flush(secs(120)).await;
    let took = started.elapsed();
    println!(
        "client throughput: {THROUGHPUT_EVENTS} events from one task in {took:.2?}: {:.0} \
         events/s (batches of 100, one request in flight, server in-process, debug build)",
        THROUGHPUT_EVENTS as f64 / took.as_secs_f64()
    );
    assert_eq!(counts, all_delivered(THROUGHPUT_EVENTS));
    assert_eq!(app.event_count().await, THROUGHPUT_EVENTS as i64);
    client.close(secs(1)).await;
}
