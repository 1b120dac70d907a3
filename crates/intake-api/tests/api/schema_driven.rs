//! Schema-driven testing: schemathesis (from PyPI; `make tools` installs it) generates requests
//! from the served `/openapi.json`, valid and invalid, and runs every check against the real
//! server: no 5xx, every response conforms to the document, valid data is accepted and invalid
//! data refused, except for the contract rules `tests/schemathesis.toml` names. This is the
//! bounded pass; `make schemathesis` runs a long one.

use std::process::Command;

use sqlx::PgPool;

use crate::helpers::DEV_TOKEN;
use crate::process::{database_url, ServeProcess};

/// Examples per operation and phase in the bounded pass; `INTAKE_SCHEMATHESIS_EXAMPLES` sets
/// another number (`make schemathesis` runs 1,000).
const MAX_EXAMPLES: &str = "25";

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn schemathesis_finds_no_server_error_and_no_schema_violation(pool: PgPool) {
    let schemathesis = std::env::var("INTAKE_SCHEMATHESIS").unwrap_or_else(|_| {
        panic!("set INTAKE_SCHEMATHESIS to the schemathesis command (make test installs it)")
    });
    let examples =
        std::env::var("INTAKE_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| MAX_EXAMPLES.to_owned());
    let server = ServeProcess::start(&database_url(&pool).await, Some("warn")).await;
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/schemathesis.toml");
    let reports =
        std::env::temp_dir().join(format!("intake-schemathesis-{}", uuid::Uuid::new_v4()));
    let run = tokio::task::spawn_blocking({
        let url = server.url("/openapi.json");
        let reports = reports.clone();
        move || {
            Command::new(&schemathesis)
                .current_dir(std::env::temp_dir())
                .args(["--no-color", "--config-file", config, "run", &url])
                .args(["--header", &format!("Authorization: Bearer {DEV_TOKEN}")])
                .args(["--checks", "all", "--mode", "all", "--max-examples", &examples])
                .args(["--generation-database", "none", "--report-dir"])
                .arg(&reports)
                .output()
                .unwrap_or_else(|e| {
                    panic!("cannot run {schemathesis}: {e} (make tools installs it)")
                })
        }
    });
    let output = run.await.expect("schemathesis ran");
    let _ = std::fs::remove_dir_all(&reports);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = stdout.lines().filter(|line| line.contains(" generated,")).collect::<Vec<_>>();
    println!("schemathesis: {}", summary.join(" "));
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!summary.is_empty(), "schemathesis generated nothing:\n{stdout}");
    server.sigterm();
    let (exit, logs) = server.wait();
    assert!(exit.success(), "exit {exit:?}; logs: {logs}");
}
