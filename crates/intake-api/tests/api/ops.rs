//! The operational endpoints and slow clients, against real PostgreSQL.

use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use serde_json::Value;
use sqlx::PgPool;

use crate::helpers::{
    expect_problem, local_settings, quick_start_event, spawn_app, spawn_app_with,
};

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_migrated_database_is_ready_and_the_process_alive(pool: PgPool) {
    let app = spawn_app(pool).await;
    for (path, status) in [("/healthz", "ok"), ("/readyz", "ready")] {
        let response = app.client.get(app.url(path)).send().await.expect("sent");
        assert_eq!(response.status(), 200, "{path}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["status"], status, "{path}");
    }
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn readyz_names_migrations_that_are_missing(pool: PgPool) {
    sqlx::query(
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT max(version) FROM _sqlx_migrations)",
    )
    .execute(&pool)
    .await
    .expect("forget a migration");
    let app = spawn_app(pool).await;
    let (headers, problem) =
        expect_problem(app.client.get(app.url("/readyz")), 503, "migrations-pending").await;
    assert!(headers.get("retry-after").is_some());
    assert!(problem["detail"].as_str().unwrap_or("").contains("intake migrate"), "{problem}");
    let live = app.client.get(app.url("/healthz")).send().await.expect("sent");
    assert_eq!(live.status(), 200);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn metrics_count_requests_events_and_the_pool(pool: PgPool) {
    let app = spawn_app(pool).await;
    app.post_event(&quick_start_event()).await;
    app.post_event(&quick_start_event()).await;
    let mut bad = quick_start_event();
    bad["event_type"] = "".into();
    app.post_event(&bad).await;
    app.client
        .get(app.url("/v1/events/evt_0123456789abcdef0123456789abcdef"))
        .bearer_auth("test_123")
        .send()
        .await
        .expect("sent");
    let response = app.client.get(app.url("/metrics")).send().await.expect("sent");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()[CONTENT_TYPE].to_str().expect("ascii").to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let text = response.text().await.expect("text");
    for line in [
        r#"intake_events_total{outcome="accepted"} 1"#,
        r#"intake_events_total{outcome="deduplicated"} 1"#,
        r#"intake_events_total{outcome="rejected"} 1"#,
        r#"intake_http_requests_total{method="POST",route="/v1/events",status="200"} 2"#,
        r#"intake_http_requests_total{method="POST",route="/v1/events",status="400"} 1"#,
        r#"intake_http_requests_total{method="GET",route="/v1/events/{event_id}",status="404"} 1"#,
        r#"intake_http_request_duration_seconds_bucket{method="POST",route="/v1/events",status="200",le="+Inf"} 2"#,
        "intake_db_pool_waiting_acquisitions 0",
        "intake_ingest_grouped_events_total 2",
        "intake_ingest_queued_events 0",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    assert!(text.contains("intake_db_pool_connections "), "{text}");
    let max: u32 = text
        .lines()
        .find_map(|l| l.strip_prefix("intake_db_pool_max_connections "))
        .and_then(|v| v.trim().parse().ok())
        .expect("pool max gauge");
    assert!(max > 0);
    assert!(text.contains("intake_db_pool_idle_connections "), "{text}");
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_client_that_stalls_mid_body_gets_408(pool: PgPool) {
    let mut settings = local_settings();
    settings.server.client_body_timeout_ms = 300;
    let app = spawn_app_with(pool, settings).await;
    let body = quick_start_event().to_string();
    let (head, _) = body.split_at(20);
    let first = head.as_bytes().to_vec();
    let stream = futures_util::stream::unfold(0, move |step| {
        let first = first.clone();
        async move {
            match step {
                0 => Some((Ok::<_, std::io::Error>(first), 1)),
                1 => {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    Some((Ok(b"}".to_vec()), 2))
                }
                _ => None,
            }
        }
    });
    let started = std::time::Instant::now();
    let request = app.post_events().body(reqwest::Body::wrap_stream(stream));
    expect_problem(request, 408, "request-timeout").await;
    assert!(started.elapsed() < Duration::from_secs(3), "answered before the client finished");
    assert_eq!(app.event_count().await, 0);
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn a_client_that_stalls_mid_head_is_cut_off(pool: PgPool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut settings = local_settings();
    settings.server.client_request_timeout_ms = 300;
    let app = spawn_app_with(pool, settings).await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await.expect("connect");
    stream.write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\n").await.expect("partial head");
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server kept a stalled connection open for 5 s");
    assert!(started.elapsed() < Duration::from_secs(3), "cut off after {:?}", started.elapsed());
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("content-type: application/problem+json"), "{text}");
    assert!(text.contains("/docs/troubleshooting#request-timeout"), "{text}");
    assert!(text.contains("within 300 ms"), "{text}");
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn stopping_the_server_ends_every_background_loop(pool: PgPool) {
    use intake_api::startup::{Application, Backend};
    use intake_storage::PgStore;

    let settings = crate::helpers::local_settings();
    let backend = Backend::shared(PgStore::new(pool), settings.group_commit.settings());
    let app = Application::build_with(&settings, backend).expect("application builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let background = app.background().clone();
    let stopper = app.stopper();
    let running = tokio::spawn(app.run_until_stopped());
    // A debugger stream open while stopping: it must not hold the shutdown.
    let stream = reqwest::Client::new()
        .get(format!("{address}/v1/debugger/stream"))
        .bearer_auth(crate::helpers::DEV_TOKEN)
        .send()
        .await
        .expect("stream opens");
    assert_eq!(stream.status(), 200);
    // The schema follower, the debugger's announcer, sender and receiver, maintenance, the
    // erasure worker and the signal listener.
    assert_eq!(background.running(), 7, "loops running before the stop");

    stopper.stop().await;
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the server stops within 10 s")
        .expect("joins")
        .expect("stops cleanly");
    assert_eq!(background.running(), 0, "loops still running after the stop");
}

#[sqlx::test(migrator = "intake_storage::MIGRATOR")]
async fn metrics_do_not_grow_with_methods_or_paths_a_client_makes_up(pool: PgPool) {
    let app = spawn_app(pool).await;
    let lines = || async {
        let text = app.client.get(app.url("/metrics")).send().await.expect("sent").text().await;
        text.expect("text")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    // One of each kind first, so that the series an unknown method lands in exist already.
    let send = |method: &str, path: &str| {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        app.client.request(method, app.url(path)).send()
    };
    send("BREW", "/v1/events/0/x").await.expect("sent");
    send("GET", "/no/such/path").await.expect("sent");
    lines().await; // The scrape's own series.
    let before = lines().await;
    for n in 0..300 {
        send(&format!("M{n}X"), &format!("/v1/events/{n}/x")).await.expect("sent");
        send("GET", &format!("/made-up/{n}")).await.expect("sent");
    }
    let after = lines().await;
    let made_up: Vec<&String> =
        after.iter().filter(|l| l.contains("M1X") || l.contains("made-up")).collect();
    assert!(made_up.is_empty(), "a client's method or path became a label: {made_up:?}");
    assert_eq!(after.len(), before.len(), "series appeared: {:?}", {
        let old: std::collections::HashSet<_> =
            before.iter().map(|l| l.split(' ').next()).collect();
        after.iter().filter(|l| !old.contains(&l.split(' ').next())).take(5).collect::<Vec<_>>()
    });
}
