//! Real clients against the real server (`make test` installs them): the official CloudEvents
//! SDKs (Python's `cloudevents` into .tmp/venv, JavaScript's `cloudevents` into .tmp/node), each
//! posting events as it writes them, in every mode, and reading them back through its own
//! parser; and the debugger page in headless Chromium through selenium. The scripts are in
//! `tests/interop/`.

use std::process::Command;

use sqlx::PgPool;

use crate::helpers::DEV_TOKEN;
use crate::process::{database_url, ServeProcess};

fn interop_script(name: &str) -> String {
    format!("{}/../../tests/interop/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn tool(variable: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| {
        panic!("set {variable} (make test installs the test tools: CloudEvents SDKs, selenium, and sets it)")
    })
}

/// Runs an SDK script against the server; its output on success.
async fn run(mut command: Command) -> String {
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("joined")
        .expect("the SDK script runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn the_official_python_and_javascript_sdks_round_trip(pool: PgPool) {
    let server = ServeProcess::start(&database_url(&pool).await, Some("warn")).await;

    let mut python = Command::new(tool("INTAKE_INTEROP_PYTHON"));
    python.arg(interop_script("python_sdk.py")).args([&server.base, DEV_TOKEN]);
    let said = run(python).await;
    assert!(said.contains("python sdk: structured, binary, a replay across modes: ok"), "{said}");

    let mut node = Command::new("node");
    node.env("NODE_PATH", tool("INTAKE_INTEROP_NODE_MODULES"))
        .arg(interop_script("js_sdk.cjs"))
        .args([&server.base, DEV_TOKEN]);
    let said = run(node).await;
    assert!(
        said.contains("js sdk: structured, binary, batched, a replay in a batch: ok"),
        "{said}"
    );

    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE cloudevent IS NOT NULL")
            .fetch_one(&pool)
            .await
            .expect("count");
    assert_eq!(stored, 6, "2 from Python, 4 from JavaScript");
    server.sigterm();
    let (exit, logs) = server.wait();
    assert!(exit.success(), "{logs}");
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn the_debugger_page_shows_events_and_rejections_in_a_real_browser(pool: PgPool) {
    let server = ServeProcess::start(&database_url(&pool).await, Some("warn")).await;
    let screenshot =
        std::env::temp_dir().join(format!("intake-debugger-{}.png", uuid::Uuid::new_v4().simple()));
    let mut browser = Command::new(tool("INTAKE_INTEROP_PYTHON"));
    browser
        .arg(interop_script("debugger_browser.py"))
        .args([server.base.as_str(), DEV_TOKEN])
        .arg(&screenshot);
    let said = run(browser).await;
    assert!(
        said.contains("the page showed the accepted event and the rejected request: ok"),
        "{said}"
    );
    let png = std::fs::read(&screenshot).expect("a screenshot");
    let _ = std::fs::remove_file(&screenshot);
    assert!(png.starts_with(b"\x89PNG"), "the screenshot is a PNG");
    server.sigterm();
    let _ = server.wait();
}
