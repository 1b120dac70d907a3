//! A database outage against a private PostgreSQL cluster that the test stops and starts with
//! the system's `pg_ctl` (never the shared server): requests get a 503 with Retry-After within
//! the acquire timeout, `/readyz` says 503, and the server serves again by itself when the
//! database returns.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use intake_api::startup::Application;
use serde_json::Value;

use crate::helpers::{expect_problem, free_port, local_settings, quick_start_event, TestApp};
use crate::load::{assert_stored_exactly_once, post_with_retries};

/// A throwaway cluster in a temporary folder, stopped and removed when dropped.
struct PrivateCluster {
    dir: PathBuf,
    port: u16,
    pg_ctl: PathBuf,
}

fn pg_binary(name: &str) -> PathBuf {
    let from_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|p| p.join(name)).find(|p| p.is_file())
    });
    let from_debian = std::fs::read_dir("/usr/lib/postgresql").ok().and_then(|versions| {
        versions.flatten().map(|v| v.path().join("bin").join(name)).find(|p| p.is_file())
    });
    from_path.or(from_debian).unwrap_or_else(|| {
        panic!("this test needs PostgreSQL's {name} (Debian: apt-get install postgresql)")
    })
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

/// Runs a PostgreSQL tool, as the `postgres` OS user when this process is root (initdb and
/// postgres refuse to run as root).
fn run_pg(tool: &Path, args: &[&str]) {
    let mut command = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(tool);
        c
    } else {
        Command::new(tool)
    };
    let output = command.args(args).output().expect("PostgreSQL tool runs");
    assert!(
        output.status.success(),
        "{} {args:?} failed: {}{}",
        tool.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl PrivateCluster {
    fn create() -> Self {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("intake-outage-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("cluster folder");
        if is_root() {
            let owned = Command::new("chown").arg("postgres").arg(&dir).status().expect("chown");
            assert!(owned.success());
        }
        let data = dir.join("data");
        run_pg(
            &pg_binary("initdb"),
            &[
                "-D",
                data.to_str().expect("utf-8 path"),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
        );
        let cluster = Self { dir, port, pg_ctl: pg_binary("pg_ctl") };
        cluster.start();
        cluster
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn start(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.port,
            self.dir.display()
        );
        let data = self.dir.join("data");
        let log = self.dir.join("log");
        run_pg(
            &self.pg_ctl,
            &[
                "-D",
                data.to_str().expect("utf-8"),
                "-l",
                log.to_str().expect("utf-8"),
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
    }

    fn stop(&self) {
        let data = self.dir.join("data");
        run_pg(
            &self.pg_ctl,
            &["-D", data.to_str().expect("utf-8"), "-m", "immediate", "-w", "stop"],
        );
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = Command::new(if is_root() { "runuser" } else { "true" })
            .args(if is_root() { vec!["-u", "postgres", "--"] } else { vec![] })
            .arg(&self.pg_ctl)
            .args(["-D", data.to_str().unwrap_or(""), "-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A migrated private cluster and a server over it (database waits bounded to 1 s); the
/// server's address.
async fn serve_on_private_cluster() -> (PrivateCluster, String) {
    let cluster = PrivateCluster::create();
    let pool = sqlx::PgPool::connect(&cluster.url()).await.expect("connect to the private cluster");
    intake_storage::migrate(&pool).await.expect("migrate");
    pool.close().await;

    let mut settings = local_settings();
    settings.database.url = cluster.url();
    settings.database.acquire_timeout_ms = 1000;
    let app = Application::build(&settings).expect("application builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    (cluster, address)
}

#[tokio::test]
async fn a_database_outage_is_503_and_the_server_recovers_by_itself() {
    let (cluster, address) = serve_on_private_cluster().await;
    let client = reqwest::Client::new();
    let app = TestApp {
        address,
        client: client.clone(),
        pool: sqlx::PgPool::connect_lazy(&cluster.url()).expect("lazy pool"),
    };

    let post = |key: &str| {
        let mut body = quick_start_event();
        body["idempotency_key"] = key.into();
        app.post_events().body(body.to_string()).send()
    };
    assert_eq!(post("before").await.expect("sent").status(), 200);

    cluster.stop();
    let started = Instant::now();
    let (headers, _) = expect_problem(
        app.post_events().body(quick_start_event().to_string()),
        503,
        "service-unavailable",
    )
    .await;
    assert!(headers.get("retry-after").is_some());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "503 within a bounded time: {:?}",
        started.elapsed()
    );
    expect_problem(app.client.get(app.url("/readyz")), 503, "service-unavailable").await;
    let live = app.client.get(app.url("/healthz")).send().await.expect("sent");
    assert_eq!(live.status(), 200, "the process stays alive");
    let metrics = app.client.get(app.url("/metrics")).send().await.expect("sent");
    assert_eq!(metrics.status(), 200, "metrics do not need the database");

    cluster.start();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = post("after").await.expect("sent");
        if response.status() == 200 {
            let body: Value = response.json().await.expect("json");
            assert_eq!(body["deduplicated"], false);
            break;
        }
        assert_eq!(response.status(), 503, "only 503 while the database comes back");
        assert!(Instant::now() < deadline, "the server did not recover within 30 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ready = app.client.get(app.url("/readyz")).send().await.expect("sent");
    assert_eq!(ready.status(), 200);
    assert_eq!(app.event_count().await, 2);
}

#[tokio::test]
async fn a_database_restart_under_load_gives_only_503s_and_loses_nothing_acknowledged() {
    const CLIENTS: usize = 8;
    const PER_CLIENT: usize = 150;
    let (cluster, base) = serve_on_private_cluster().await;
    let load = tokio::spawn({
        let base = base.clone();
        async move {
            post_with_retries(&base, CLIENTS, PER_CLIENT, "restart", Duration::from_secs(120)).await
        }
    });

    let observer = sqlx::PgPool::connect_lazy(&cluster.url()).expect("lazy pool");
    let deadline = Instant::now() + Duration::from_secs(30);
    while stored(&observer).await < 200 {
        assert!(Instant::now() < deadline, "the load made no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    observer.close().await;
    cluster.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.start();
    let outcome = load.await.expect("load");

    let pool = sqlx::PgPool::connect(&cluster.url()).await.expect("reconnect");
    let rows = assert_stored_exactly_once(&pool, "restart", &outcome).await;
    println!(
        "database restart: {} keys, {} requests sent, refusals {:?}, {} acknowledged, {} rows",
        CLIENTS * PER_CLIENT,
        outcome.sent,
        outcome.refusals,
        outcome.acknowledged.len(),
        rows
    );
    assert_eq!(outcome.unanswered, 0, "the server stayed up and answered every request");
    assert!(outcome.unexpected_refusals().is_empty(), "only 503s: {:?}", outcome.refusals);
    assert!(!outcome.refusals.is_empty(), "the outage never reached a request");
    assert_eq!(outcome.without_retry_after, 0, "every 503 carries Retry-After");
    assert_eq!(outcome.acknowledged.len(), CLIENTS * PER_CLIENT, "every key acknowledged");
}

async fn stored(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(pool).await.unwrap_or(0)
}

#[tokio::test]
async fn with_the_database_stopped_no_single_event_waits_for_two_acquire_timeouts() {
    let (cluster, address) = serve_on_private_cluster().await;
    let client = reqwest::Client::new();
    let post = |key: String| {
        let mut body = quick_start_event();
        body["idempotency_key"] = key.into();
        let request = client
            .post(format!("{address}/v1/events"))
            .bearer_auth(crate::helpers::DEV_TOKEN)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        async move {
            let started = Instant::now();
            let status = request.send().await.expect("answered").status().as_u16();
            (status, started.elapsed())
        }
    };
    assert_eq!(post("before".into()).await.0, 200, "up: the schema cache is loaded");

    cluster.stop();
    let mut tasks = Vec::new();
    for wave in 0..8 {
        for n in 0..8 {
            tasks.push(tokio::spawn(post(format!("down-{wave}-{n}"))));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut slowest = Duration::ZERO;
    for task in tasks {
        let (status, took) = task.await.expect("task");
        assert_eq!(status, 503);
        slowest = slowest.max(took);
    }
    println!(
        "slowest 503 with the database stopped: {} ms (acquire timeout 1000 ms)",
        slowest.as_millis()
    );
    assert!(slowest < Duration::from_millis(1900), "a 503 took {slowest:?}: two waits");
}
