//! `make bench`: intake's ingest against raw PostgreSQL, every figure measured in one run on
//! one machine, printed as one table whose headline is the ratios.
//!
//! On a fresh database on DATABASE_URL's server (dropped at the end):
//! 1. raw baselines with `pgbench` into a table of the events table's shape with a unique index
//!    on (tenant, key), the dedupe a hand-rolled service would have: one-row
//!    `INSERT … ON CONFLICT DO NOTHING` per transaction at 64 clients, and 100 rows per statement
//!    at 16 clients (the batch load's concurrency); random UUID keys, as the loads send; each
//!    after a 2 s warm-up;
//! 2. `intake serve` (the release binary, a process of its own, the local profile) taking single
//!    events at 64 connections, unique keys: events/s, latency percentiles, non-2xx answers;
//! 3. batches of 100 at 16 connections;
//! 4. the dedupe path: every request a replay of a stored event;
//! 5. the server's peak resident memory over all of the above;
//! 6. single events with group commit off (a statement and a commit per event), for reference;
//! 7. single events again once millions of events are stored;
//! 8. single events and batches of a type with a realistic JSON Schema (ten properties, an enum,
//!    patterns, a nested object), against the same events before the schema was registered;
//! 9. single events with rate limits off, then at the default limits with the memory backend,
//!    then with the Redis backend (the Redis of `INTAKE_TEST_REDIS_URL`, which `make bench`
//!    finds or starts like `make test` does);
//! 10. `intake relay` publishing the stored events to NATS JetStream (`INTAKE_TEST_NATS_URL`),
//!     against the single-event ingest rate.
//!
//! The baselines and the single and batch phases run three times each and show the median run.
//! `BENCH_SECS` (default 10) sets each phase's length and `BENCH_STORED` (default 5000000) the
//! stored events of phase 7.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};

#[path = "../tests/fixtures/signup.rs"]
mod signup;
use signup::{signup_data, signup_schema};

const SINGLE_CLIENTS: usize = 64;
const BATCH_CLIENTS: usize = 16;
const RAW_SINGLE_CLIENTS: usize = 64;
const RAW_MULTI_CLIENTS: usize = BATCH_CLIENTS;
/// The headline phases run this many times; the median run is shown.
const RUNS: usize = 3;
const BATCH_SIZE: usize = 100;
const REPLAY_KEYS: usize = 10_000;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn event(key: &str, i: usize) -> Value {
    json!({
        "event_type": "order.item_added",
        "occurred_at": "2025-12-22T10:30:00Z",
        "idempotency_key": key,
        "data": {"order_id": format!("o_{i}"), "sku": "SKU-123", "quantity": 2, "price": 19.99}
    })
}

/// An event that the realistic schema accepts.
fn signup_event(key: &str, i: usize) -> Value {
    json!({
        "event_type": "user.signup",
        "occurred_at": "2025-12-22T10:30:00Z",
        "idempotency_key": key,
        "data": signup_data(i),
    })
}

/// What one load phase saw.
struct Load {
    /// Requests answered 2xx per second.
    requests_per_sec: f64,
    /// Events those requests carried, per second.
    events_per_sec: f64,
    latency: Histogram<u64>,
    non_2xx: u64,
}

/// What a request of a load phase sends.
#[derive(Clone, Copy)]
enum Shape {
    /// One event with a key never used before.
    Single,
    /// A batch of new events.
    Batch,
    /// One event already stored (keys `replay-0` … `replay-9999`).
    Replay,
    /// One new `user.signup` event.
    SignupSingle,
    /// A batch of new `user.signup` events.
    SignupBatch,
}

/// `clients` connections sending requests of `shape` back to back for `secs` seconds.
async fn load(base: &str, shape: Shape, clients: usize, secs: u64) -> Load {
    let client =
        reqwest::Client::builder().pool_max_idle_per_host(clients).build().expect("http client");
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..clients {
        let (client, base) = (client.clone(), base.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("hist");
            let (mut ok, mut events, mut non_2xx) = (0u64, 0u64, 0u64);
            let mut n = 0usize;
            while Instant::now() < deadline {
                n += 1;
                let (url, body, carried) = match shape {
                    Shape::Single => {
                        let key = uuid::Uuid::new_v4().to_string();
                        (format!("{base}/v1/events"), event(&key, n).to_string(), 1)
                    }
                    Shape::Batch => {
                        let items: Vec<Value> = (0..BATCH_SIZE)
                            .map(|i| event(&uuid::Uuid::new_v4().to_string(), i))
                            .collect();
                        let body = json!({ "events": items }).to_string();
                        (format!("{base}/v1/events/batch"), body, BATCH_SIZE as u64)
                    }
                    Shape::SignupSingle => {
                        let key = uuid::Uuid::new_v4().to_string();
                        (format!("{base}/v1/events"), signup_event(&key, n).to_string(), 1)
                    }
                    Shape::SignupBatch => {
                        let items: Vec<Value> = (0..BATCH_SIZE)
                            .map(|i| signup_event(&uuid::Uuid::new_v4().to_string(), i))
                            .collect();
                        let body = json!({ "events": items }).to_string();
                        (format!("{base}/v1/events/batch"), body, BATCH_SIZE as u64)
                    }
                    Shape::Replay => {
                        let i = (task * 7919 + n * 104_729) % REPLAY_KEYS;
                        (
                            format!("{base}/v1/events"),
                            event(&format!("replay-{i}"), i).to_string(),
                            1,
                        )
                    }
                };
                let sent = Instant::now();
                let response = client
                    .post(url)
                    .bearer_auth("test_123")
                    .header("Content-Type", "application/json")
                    .body(body)
                    .send()
                    .await;
                let success = match response {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                let _ = latency.record(micros.max(1));
                if success {
                    ok += 1;
                    events += carried;
                } else {
                    non_2xx += 1;
                }
            }
            (latency, ok, events, non_2xx)
        }));
    }
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("hist");
    let (mut ok, mut events, mut non_2xx) = (0, 0, 0);
    for task in tasks {
        let (l, o, e, n) = task.await.expect("load task");
        latency.add(l).expect("same bounds");
        ok += o;
        events += e;
        non_2xx += n;
    }
    let elapsed = started.elapsed().as_secs_f64();
    Load {
        requests_per_sec: ok as f64 / elapsed,
        events_per_sec: events as f64 / elapsed,
        latency,
        non_2xx,
    }
}

/// `pgbench` running `script` at `clients` for `secs` seconds; transactions per second.
fn pgbench(url: &str, script: &str, clients: usize, secs: u64) -> anyhow::Result<f64> {
    let file = std::env::temp_dir().join(format!("intake-bench-{}.sql", uuid::Uuid::new_v4()));
    std::fs::write(&file, script)?;
    let output = Command::new(pgbench_binary()?)
        .args(["-n", "-M", "prepared", "-c", &clients.to_string(), "-j", "2"])
        .args(["-T", &secs.to_string(), "-f"])
        .arg(&file)
        .arg(url)
        .output()
        .context("running pgbench")?;
    let _ = std::fs::remove_file(&file);
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("pgbench failed: {text}{}", String::from_utf8_lossy(&output.stderr));
    }
    text.lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no tps in pgbench's output: {text}"))
}

fn pgbench_binary() -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::env::var("PGBENCH") {
        return Ok(path.into());
    }
    let found = Command::new("sh").args(["-c", "command -v pgbench"]).output()?;
    if found.status.success() {
        return Ok(String::from_utf8_lossy(&found.stdout).trim().into());
    }
    bail!("pgbench is missing (Debian: apt-get install postgresql-15; make bench looks for it)")
}

/// `intake serve` as a process of its own.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    async fn start(url: &str, extra_env: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::command(url, "serve", "INTAKE__SERVER__PORT", "/readyz", extra_env).await
    }

    /// `intake relay`, once its `/healthz` answers.
    async fn relay(url: &str, extra_env: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::command(url, "relay", "INTAKE__RELAY__METRICS_PORT", "/healthz", extra_env).await
    }

    async fn command(
        url: &str,
        subcommand: &str,
        port_variable: &str,
        ready_path: &str,
        extra_env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config");
        let mut command = Command::new(env!("CARGO_BIN_EXE_intake"));
        command
            .arg(subcommand)
            .env("DATABASE_URL", url)
            .env("INTAKE_CONFIG_DIR", config)
            .env(port_variable, port.to_string())
            .env_remove("INTAKE_ENV")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (name, value) in extra_env {
            command.env(name, value);
        }
        let child = command.spawn().with_context(|| format!("starting intake {subcommand}"))?;
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = client.get(format!("{base}{ready_path}")).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            if Instant::now() > deadline {
                bail!("intake {subcommand} never became ready");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self { child, base })
    }

    /// The process's peak resident memory, in MiB.
    fn peak_rss_mib(&self) -> f64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            })
            .map_or(f64::NAN, |kib| kib / 1024.0)
    }

    fn stop(mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

/// The relay's acknowledged-publish rate: `intake relay` on the events the earlier phases
/// stored (a backlog of hundreds of thousands), into a stream of its own on the NATS of
/// `INTAKE_TEST_NATS_URL`, counted from its metrics over `secs` seconds after a warm-up.
async fn relay_phase(url: &str, secs: u64) -> anyhow::Result<f64> {
    let nats = std::env::var("INTAKE_TEST_NATS_URL")
        .context("INTAKE_TEST_NATS_URL (make bench sets it through scripts/nats)")?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (stream, prefix) = (format!("INTAKE_BENCH_{id}"), format!("b{id}"));
    let relay = Server::relay(
        url,
        &[
            ("INTAKE__RELAY__NATS_URL", nats.as_str()),
            ("INTAKE__RELAY__STREAM", stream.as_str()),
            ("INTAKE__RELAY__SUBJECT_PREFIX", prefix.as_str()),
        ],
    )
    .await?;
    let published = || async {
        let text = reqwest::get(format!("{}/metrics", relay.base)).await?.text().await?;
        Ok::<f64, anyhow::Error>(
            text.lines()
                .filter(|l| l.starts_with("intake_relay_published_events_total{"))
                .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
                .sum(),
        )
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (started, before) = (Instant::now(), published().await?);
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let rate = (published().await? - before) / started.elapsed().as_secs_f64();
    relay.stop();
    let client = async_nats::connect(nats.as_str()).await?;
    let _ = async_nats::jetstream::new(client).delete_stream(&stream).await;
    Ok(rate)
}

/// Stores `REPLAY_KEYS` events through batches, for the dedupe phase to replay.
/// Connections the bench opens at its busiest (pgbench's clients, servers' pools, loads).
const NEEDED_CONNECTIONS: i64 = 80;

/// Events the client phases send.
const CLIENT_EVENTS: usize = 100_000;

/// The official Rust client (one task, its default options) sending small events to the
/// server until every one is acknowledged: events per second, enqueue to the last answer.
async fn rust_client_phase(base: &str) -> anyhow::Result<f64> {
    let client = intake_client::Client::new(base, "test_123")?;
    let started = Instant::now();
    for i in 0..CLIENT_EVENTS {
        client.send("client.bench", json!({"n": i})).await?;
    }
    let counts = client.close(Duration::from_secs(300)).await;
    let elapsed = started.elapsed().as_secs_f64();
    if counts.delivered != CLIENT_EVENTS as u64 {
        bail!("the Rust client delivered {counts:?} of {CLIENT_EVENTS}");
    }
    Ok(CLIENT_EVENTS as f64 / elapsed)
}

/// The official Python client (one process, its default options), when `INTAKE_BENCH_PYTHON`
/// names a Python that has it (`make bench` installs one): events per second.
fn python_client_phase(base: &str) -> anyhow::Result<Option<f64>> {
    let Ok(python) = std::env::var("INTAKE_BENCH_PYTHON") else { return Ok(None) };
    let script = format!(
        "import time, intake_client\n\
         c = intake_client.Client({base:?}, 'test_123', flush_at_exit=False)\n\
         t = time.monotonic()\n\
         for i in range({CLIENT_EVENTS}): c.send('client.bench.py', {{'n': i}})\n\
         r = c.close(300)\n\
         assert r.delivered == {CLIENT_EVENTS}, r\n\
         print({CLIENT_EVENTS} / (time.monotonic() - t))\n"
    );
    let out = Command::new(python).args(["-c", &script]).output().context("running Python")?;
    if !out.status.success() {
        bail!("the Python client phase failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(Some(String::from_utf8_lossy(&out.stdout).trim().parse()?))
}

async fn store_replay_keys(base: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    for chunk in (0..REPLAY_KEYS).collect::<Vec<_>>().chunks(1000) {
        let items: Vec<Value> = chunk.iter().map(|&i| event(&format!("replay-{i}"), i)).collect();
        let response = client
            .post(format!("{base}/v1/events/batch"))
            .bearer_auth("test_123")
            .header("Content-Type", "application/json")
            .body(json!({ "events": items }).to_string())
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("storing the replay keys: {}", response.status());
        }
    }
    Ok(())
}

/// Fills the events table with `total` events of another tenant, straight through SQL.
async fn fill(url: &str, total: u64) -> anyhow::Result<()> {
    let mut conn = PgConnection::connect(url).await?;
    let chunk = 500_000u64;
    let mut done = 0;
    while done < total {
        let n = chunk.min(total - done);
        sqlx::query(
            "INSERT INTO events (event_id, tenant_id, idempotency_key, event_type, occurred_at,
                                 data, fingerprint)
             SELECT gen_random_uuid(), 'filler', gen_random_uuid()::text, 'order.item_added',
                    now(), json_build_object('order_id', 'o_' || i, 'sku', 'SKU-123', 'quantity', 2),
                    sha256(i::text::bytea)
             FROM generate_series(1, $2) AS i",
        )
        .bind(i64::try_from(done)?)
        .bind(i64::try_from(n)?)
        .execute(&mut conn)
        .await?;
        done += n;
    }
    // Their keys too, as ingest would have written them: the keys window full of random keys.
    sqlx::query(
        "INSERT INTO event_keys (generation, tenant_id, idempotency_key, event_id, received_at,
                                 fingerprint)
         SELECT (SELECT max(generation) FROM event_key_generations), tenant_id,
                idempotency_key, event_id, received_at, fingerprint
         FROM events WHERE tenant_id = 'filler'",
    )
    .execute(&mut conn)
    .await?;
    sqlx::query("VACUUM ANALYZE events").execute(&mut conn).await?;
    sqlx::query("VACUUM ANALYZE event_keys").execute(&mut conn).await?;
    Ok(())
}

/// The median of `RUNS` pgbench runs of `script`, after a 2 s warm-up.
fn pgbench_median(url: &str, script: &str, clients: usize, secs: u64) -> anyhow::Result<f64> {
    pgbench(url, script, clients, 2)?;
    let mut runs =
        (0..RUNS).map(|_| pgbench(url, script, clients, secs)).collect::<Result<Vec<_>, _>>()?;
    runs.sort_by(f64::total_cmp);
    Ok(runs[RUNS / 2])
}

/// The median of `RUNS` runs of a load (by events per second), latencies of that run.
async fn load_median(base: &str, shape: Shape, clients: usize, secs: u64) -> Load {
    let mut runs = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        runs.push(load(base, shape, clients, secs).await);
    }
    runs.sort_by(|a, b| a.events_per_sec.total_cmp(&b.events_per_sec));
    runs.swap_remove(RUNS / 2)
}

fn ms(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    histogram.value_at_quantile(quantile) as f64 / 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let secs = env_number("BENCH_SECS", 10);
    let stored = env_number("BENCH_STORED", 5_000_000);
    let server_url = std::env::var("DATABASE_URL").context("DATABASE_URL (make bench sets it)")?;
    let name = format!("intake_bench_{}", std::process::id());
    let (without_query, query) = match server_url.split_once('?') {
        Some((b, q)) => (b.to_owned(), format!("?{q}")),
        None => (server_url.clone(), String::new()),
    };
    let base = without_query.rsplit_once('/').map_or(without_query.as_str(), |(b, _)| b);
    let url = format!("{base}/{name}{query}");
    let mut admin = PgConnection::connect(&server_url).await?;
    // pgbench's 64 clients, the servers' pools and the load's own: about 80 connections.
    let (max, used): (i32, i64) = sqlx::query_as(
        "SELECT current_setting('max_connections')::int, (SELECT count(*) FROM pg_stat_activity)",
    )
    .fetch_one(&mut admin)
    .await?;
    if i64::from(max) - used < NEEDED_CONNECTIONS {
        bail!(
            "the bench needs {NEEDED_CONNECTIONS} free PostgreSQL connections and the server has \
             {} ({used} of max_connections {max} in use); `make bench` runs it on a private \
             cluster of its own",
            i64::from(max) - used
        );
    }
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await?;
    let outcome = run(&url, secs, stored).await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    outcome
}

async fn run(url: &str, secs: u64, stored: u64) -> anyhow::Result<()> {
    let store = intake_storage::PgStore::connect_lazy(
        url,
        &intake_storage::PoolSettings {
            max_connections: 2,
            acquire_timeout: Duration::from_secs(10),
        },
    )?;
    intake_storage::migrate(store.pool()).await?;
    sqlx::query("CREATE TABLE raw_events (LIKE events INCLUDING ALL)")
        .execute(store.pool())
        .await?;
    sqlx::query("ALTER TABLE raw_events ADD UNIQUE (tenant_id, idempotency_key)")
        .execute(store.pool())
        .await?;
    store.pool().close().await;

    eprintln!("bench: {secs} s per phase; raw pgbench baselines…");
    let columns =
        "event_id, tenant_id, idempotency_key, event_type, occurred_at, data, fingerprint";
    let values = "gen_random_uuid(), 'bench', gen_random_uuid()::text, 'order.item_added', now(), \
                  '{\"order_id\":\"o_1\",\"sku\":\"SKU-123\",\"quantity\":2,\"price\":19.99}', \
                  sha256(random()::text::bytea)";
    let raw_single = pgbench_median(
        url,
        &format!(
            "INSERT INTO raw_events ({columns}) VALUES ({values}) \
             ON CONFLICT (tenant_id, idempotency_key) DO NOTHING;\n"
        ),
        RAW_SINGLE_CLIENTS,
        secs,
    )?;
    let raw_multi = BATCH_SIZE as f64
        * pgbench_median(
            url,
            &format!(
                "INSERT INTO raw_events ({columns}) SELECT {values} FROM generate_series(1, \
                 {BATCH_SIZE}) ON CONFLICT (tenant_id, idempotency_key) DO NOTHING;\n"
            ),
            RAW_MULTI_CLIENTS,
            secs,
        )?;
    let mut conn = PgConnection::connect(url).await?;
    sqlx::query("DROP TABLE raw_events").execute(&mut conn).await?;

    eprintln!("bench: intake with group commit…");
    let server = Server::start(url, &[]).await?;
    load(&server.base, Shape::Single, SINGLE_CLIENTS, 2).await;
    let single = load_median(&server.base, Shape::Single, SINGLE_CLIENTS, secs).await;
    load(&server.base, Shape::Batch, BATCH_CLIENTS, 2).await;
    let batch = load_median(&server.base, Shape::Batch, BATCH_CLIENTS, secs).await;
    eprintln!("bench: the official clients, {CLIENT_EVENTS} events each…");
    let rust_client = rust_client_phase(&server.base).await?;
    let python_client = python_client_phase(&server.base)?;
    store_replay_keys(&server.base).await?;
    let replay = load(&server.base, Shape::Replay, SINGLE_CLIENTS, secs).await;

    eprintln!("bench: user.signup events without, then with, a schema…");
    let plain_single = load(&server.base, Shape::SignupSingle, SINGLE_CLIENTS, secs).await;
    let plain_batch = load(&server.base, Shape::SignupBatch, BATCH_CLIENTS, secs).await;
    let registered = reqwest::Client::new()
        .put(format!("{}/v1/schemas/user.signup", server.base))
        .bearer_auth("test_123")
        .header("Content-Type", "application/json")
        .body(signup_schema().to_string())
        .send()
        .await?;
    if registered.status() != 201 {
        bail!("registering the schema: {}", registered.status());
    }
    let schema_single = load(&server.base, Shape::SignupSingle, SINGLE_CLIENTS, secs).await;
    let schema_batch = load(&server.base, Shape::SignupBatch, BATCH_CLIENTS, secs).await;
    let rss = server.peak_rss_mib();
    server.stop();

    eprintln!("bench: intake with group commit off…");
    let server = Server::start(url, &[("INTAKE__GROUP_COMMIT__WRITERS", "0")]).await?;
    load(&server.base, Shape::Single, SINGLE_CLIENTS, 2).await;
    let ungrouped = load(&server.base, Shape::Single, SINGLE_CLIENTS, secs).await;
    let rss = rss.max(server.peak_rss_mib());
    server.stop();

    eprintln!("bench: rate limits off, in memory, in Redis…");
    let redis_url = std::env::var("INTAKE_TEST_REDIS_URL")
        .context("INTAKE_TEST_REDIS_URL (make bench sets it through scripts/redis)")?;
    let mut by_backend = Vec::new();
    let mut rss_backends = 0.0_f64;
    for backend in ["off", "memory", "redis"] {
        let server = Server::start(
            url,
            &[
                ("INTAKE__LIMITS__RATE__BACKEND", backend),
                ("INTAKE__LIMITS__RATE__REDIS_URL", redis_url.as_str()),
            ],
        )
        .await?;
        load(&server.base, Shape::Single, SINGLE_CLIENTS, 2).await;
        by_backend.push(load(&server.base, Shape::Single, SINGLE_CLIENTS, secs).await);
        rss_backends = rss_backends.max(server.peak_rss_mib());
        server.stop();
    }
    let [limits_off, limits_memory, limits_redis] =
        <[Load; 3]>::try_from(by_backend).map_err(|_| anyhow::anyhow!("three phases"))?;

    eprintln!("bench: intake relay into NATS JetStream…");
    let relay_rate = relay_phase(url, secs).await?;

    eprintln!("bench: storing {stored} events, then single events again…");
    fill(url, stored).await?;
    let server = Server::start(url, &[]).await?;
    load(&server.base, Shape::Single, SINGLE_CLIENTS, 2).await;
    let full = load(&server.base, Shape::Single, SINGLE_CLIENTS, secs).await;
    let rss = rss.max(rss_backends).max(server.peak_rss_mib());
    server.stop();
    conn.close().await?;

    let ratio = |x: f64, base: f64| format!("{:.2}×", x / base);
    let latency = |l: &Load| {
        format!(
            "p50 {:.1} / p99 {:.1} / max {:.1} ms",
            ms(&l.latency, 0.5),
            ms(&l.latency, 0.99),
            l.latency.max() as f64 / 1000.0
        )
    };
    let rows: Vec<[String; 5]> = vec![
        [
            format!("raw pgbench, 1-row INSERT … ON CONFLICT per transaction ({RAW_SINGLE_CLIENTS} clients), median of {RUNS}"),
            format!("{raw_single:.0} rows/s"),
            "1.00× (baseline A)".into(),
            String::new(),
            String::new(),
        ],
        [
            format!("raw pgbench, {BATCH_SIZE} rows per statement ({RAW_MULTI_CLIENTS} clients), median of {RUNS}"),
            format!("{raw_multi:.0} rows/s"),
            "1.00× (baseline B)".into(),
            String::new(),
            String::new(),
        ],
        [
            format!("intake POST /v1/events, unique keys ({SINGLE_CLIENTS} conns), median of {RUNS}"),
            format!("{:.0} events/s", single.events_per_sec),
            format!("{} of A", ratio(single.events_per_sec, raw_single)),
            latency(&single),
            single.non_2xx.to_string(),
        ],
        [
            format!("intake POST /v1/events/batch, {BATCH_SIZE} per batch ({BATCH_CLIENTS} conns), median of {RUNS}"),
            format!("{:.0} events/s", batch.events_per_sec),
            format!("{} of B", ratio(batch.events_per_sec, raw_multi)),
            latency(&batch),
            batch.non_2xx.to_string(),
        ],
        [
            format!("intake-client (Rust), one task sending {CLIENT_EVENTS} events"),
            format!("{rust_client:.0} events/s"),
            format!("{} of batch", ratio(rust_client, batch.events_per_sec)),
            String::new(),
            String::new(),
        ],
        [
            format!("intake_client (Python), one process sending {CLIENT_EVENTS} events"),
            python_client.map_or("not run (INTAKE_BENCH_PYTHON unset)".into(), |r| format!("{r:.0} events/s")),
            python_client.map_or(String::new(), |r| format!("{} of batch", ratio(r, batch.events_per_sec))),
            String::new(),
            String::new(),
        ],
        [
            format!("intake dedupe path, every request a replay ({SINGLE_CLIENTS} conns)"),
            format!("{:.0} requests/s", replay.requests_per_sec),
            format!("{} of single", ratio(replay.requests_per_sec, single.events_per_sec)),
            latency(&replay),
            replay.non_2xx.to_string(),
        ],
        [
            format!("intake POST /v1/events, group commit off ({SINGLE_CLIENTS} conns)"),
            format!("{:.0} events/s", ungrouped.events_per_sec),
            format!("{} of A", ratio(ungrouped.events_per_sec, raw_single)),
            latency(&ungrouped),
            ungrouped.non_2xx.to_string(),
        ],
        [
            format!("intake POST /v1/events with {stored} events stored ({SINGLE_CLIENTS} conns)"),
            format!("{:.0} events/s", full.events_per_sec),
            format!("{} of empty", ratio(full.events_per_sec, single.events_per_sec)),
            latency(&full),
            full.non_2xx.to_string(),
        ],
        [
            format!("intake POST /v1/events, user.signup, no schema ({SINGLE_CLIENTS} conns)"),
            format!("{:.0} events/s", plain_single.events_per_sec),
            "1.00× (baseline C)".into(),
            latency(&plain_single),
            plain_single.non_2xx.to_string(),
        ],
        [
            format!("intake POST /v1/events, user.signup checked against its schema ({SINGLE_CLIENTS} conns)"),
            format!("{:.0} events/s", schema_single.events_per_sec),
            format!("{} of C", ratio(schema_single.events_per_sec, plain_single.events_per_sec)),
            latency(&schema_single),
            schema_single.non_2xx.to_string(),
        ],
        [
            format!("intake POST /v1/events/batch, user.signup, no schema ({BATCH_CLIENTS} conns)"),
            format!("{:.0} events/s", plain_batch.events_per_sec),
            "1.00× (baseline D)".into(),
            latency(&plain_batch),
            plain_batch.non_2xx.to_string(),
        ],
        [
            format!("intake POST /v1/events/batch, user.signup checked against its schema ({BATCH_CLIENTS} conns)"),
            format!("{:.0} events/s", schema_batch.events_per_sec),
            format!("{} of D", ratio(schema_batch.events_per_sec, plain_batch.events_per_sec)),
            latency(&schema_batch),
            schema_batch.non_2xx.to_string(),
        ],
        [
            format!("intake POST /v1/events, rate limits off ({SINGLE_CLIENTS} conns)"),
            format!("{:.0} events/s", limits_off.events_per_sec),
            "1.00× (baseline E)".into(),
            latency(&limits_off),
            limits_off.non_2xx.to_string(),
        ],
        [
            format!("intake POST /v1/events, default limits in memory ({SINGLE_CLIENTS} conns)"),
            format!("{:.0} events/s", limits_memory.events_per_sec),
            format!("{} of E", ratio(limits_memory.events_per_sec, limits_off.events_per_sec)),
            latency(&limits_memory),
            limits_memory.non_2xx.to_string(),
        ],
        [
            format!("intake POST /v1/events, default limits in Redis ({SINGLE_CLIENTS} conns)"),
            format!("{:.0} events/s", limits_redis.events_per_sec),
            format!("{} of E", ratio(limits_redis.events_per_sec, limits_off.events_per_sec)),
            latency(&limits_redis),
            limits_redis.non_2xx.to_string(),
        ],
        [
            "intake relay, stored events published to JetStream (acknowledged)".into(),
            format!("{relay_rate:.0} events/s"),
            format!("{} of single", ratio(relay_rate, single.events_per_sec)),
            String::new(),
            String::new(),
        ],
        [
            "intake server peak RSS (the largest of every server process the bench ran)".into(),
            format!("{rss:.1} MiB"),
            String::new(),
            String::new(),
            String::new(),
        ],
    ];
    println!("| what | rate | ratio | latency | non-2xx |");
    println!("|---|---|---|---|---|");
    for [what, rate, r, l, e] in rows {
        println!("| {what} | {rate} | {r} | {l} | {e} |");
    }
    Ok(())
}
