//! `intake serve` as a child process against a `#[sqlx::test]` database, for the tests that
//! need the real binary: logs, signals, crashes.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::PgPool;

use crate::helpers::{config_dir, free_port};

/// The URL of the database a `#[sqlx::test]` pool is connected to.
pub async fn database_url(pool: &PgPool) -> String {
    let name: String =
        sqlx::query_scalar("SELECT current_database()").fetch_one(pool).await.expect("name");
    with_database(&name)
}

/// DATABASE_URL (the test server) with another database name.
pub fn with_database(name: &str) -> String {
    let server = std::env::var("DATABASE_URL").expect("DATABASE_URL is set for tests");
    let (base, query) = match server.split_once('?') {
        Some((base, query)) => (base.to_owned(), format!("?{query}")),
        None => (server.clone(), String::new()),
    };
    let base = base.trim_end_matches('/');
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let server_part = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    format!("{server_part}/{name}{query}")
}

/// `intake serve` as a child process.
pub struct ServeProcess {
    child: std::process::Child,
    /// Reads the server's log as it comes, so that a full pipe never blocks the server.
    logs: Option<std::thread::JoinHandle<String>>,
    pub base: String,
}

impl ServeProcess {
    /// Starts the server against `url` (with RUST_LOG set to `log_filter`, if given) and waits
    /// until it answers.
    pub async fn start(url: &str, log_filter: Option<&str>) -> Self {
        Self::start_on(url, free_port(), log_filter).await
    }

    /// Like [`ServeProcess::start`], on a given port (a restart on the port clients know).
    pub async fn start_on(url: &str, port: u16, log_filter: Option<&str>) -> Self {
        Self::start_with(url, port, log_filter, &[]).await
    }

    /// Like [`ServeProcess::start_on`], with more settings as `INTAKE__…` variables.
    pub async fn start_with(
        url: &str,
        port: u16,
        log_filter: Option<&str>,
        settings: &[(&str, &str)],
    ) -> Self {
        Self::command(url, "serve", ("INTAKE__SERVER__PORT", port), log_filter, settings).await
    }

    /// `intake relay` with its metrics on `metrics_port`, once it answers `/healthz`.
    pub async fn relay(url: &str, metrics_port: u16, settings: &[(&str, &str)]) -> Self {
        let port = ("INTAKE__RELAY__METRICS_PORT", metrics_port);
        Self::command(url, "relay", port, Some("info"), settings).await
    }

    /// `intake <subcommand>`, answering `/healthz` on the port the variable sets.
    async fn command(
        url: &str,
        subcommand: &str,
        (port_variable, port): (&str, u16),
        log_filter: Option<&str>,
        settings: &[(&str, &str)],
    ) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_intake"));
        command.envs(settings.iter().copied());
        command
            .arg(subcommand)
            .env(port_variable, port.to_string())
            .env("DATABASE_URL", url)
            .env("INTAKE_CONFIG_DIR", config_dir())
            .env_remove("INTAKE_ENV")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(filter) = log_filter {
            command.env("RUST_LOG", filter);
        }
        let mut child = command.spawn().expect("serve starts");
        let mut stderr = child.stderr.take().expect("stderr");
        let logs = std::thread::spawn(move || {
            let mut logs = String::new();
            let _ = stderr.read_to_string(&mut logs);
            logs
        });
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while client.get(format!("{base}/healthz")).send().await.is_err() {
            assert!(Instant::now() < deadline, "the server never answered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { child, logs: Some(logs), base }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn sigterm(&self) {
        self.signal("TERM");
    }

    /// Sends the process a signal by name (`TERM`, `INT`).
    pub fn signal(&self, name: &str) {
        let killed = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(killed.success());
    }

    /// Kills the process with SIGKILL and reaps it: a crash, with no chance to clean up.
    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    /// Waits for the process to exit; its exit status and everything it logged.
    pub fn wait(mut self) -> (std::process::ExitStatus, String) {
        let exit = self.child.wait().expect("exits");
        let logs = self.logs.take().expect("logs").join().expect("log reader");
        (exit, logs)
    }
}

/// A test that fails leaves no server behind to hold its database open.
impl Drop for ServeProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
