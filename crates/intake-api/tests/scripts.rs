//! `scripts/db`, the script `make run` and `make test` use to find or start PostgreSQL, on the
//! path where it starts a throwaway cluster and the start fails.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/db")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// An executable shell script at `dir/name`.
fn fake(dir: &Path, name: &str, body: &str) {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write fake");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[test]
fn a_cluster_that_failed_to_start_is_not_marked_as_started_by_intake() {
    let root =
        std::env::temp_dir().join(format!("intake-scripts-{}", uuid::Uuid::new_v4().simple()));
    let bin = root.join("bin");
    let cluster = root.join("cluster");
    std::fs::create_dir_all(&bin).expect("bin folder");
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    // An initdb that makes a data folder, a pg_ctl whose start fails, and no Docker.
    fake(
        &bin,
        "initdb",
        r#"while [ $# -gt 0 ]; do [ "$1" = -D ] && mkdir -p "$2" && echo 15 > "$2/PG_VERSION"; shift; done"#,
    );
    fake(&bin, "pg_ctl", "echo 'could not start server' >&2; exit 1");
    fake(&bin, "docker", "exit 1");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let output = Command::new("bash")
        .arg(script())
        .arg("url")
        .env("PATH", path)
        .env_remove("DATABASE_URL")
        .env("INTAKE_DB_PROBE_PORT", free_port().to_string())
        .env("INTAKE_THROWAWAY_PG_PORT", free_port().to_string())
        .env("INTAKE_THROWAWAY_PG_DIR", &cluster)
        .output()
        .expect("scripts/db runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let marked = cluster.join("started-by-intake").exists();
    let _ = std::fs::remove_dir_all(&root);
    assert!(!output.status.success(), "no server, yet scripts/db succeeded: {stderr}");
    assert!(stderr.contains("pg_ctl start failed"), "{stderr}");
    assert!(stderr.contains("no PostgreSQL found"), "it says what to install: {stderr}");
    assert!(!marked, "a cluster that never started is marked as ours to stop: {stderr}");
}
