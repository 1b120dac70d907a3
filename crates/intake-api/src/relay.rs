//! `intake relay`: the relay of `intake-relay` on the PostgreSQL store, beside its own
//! `/healthz` and `/metrics` on `relay.metrics_port`. SIGTERM or SIGINT cancels one token: the
//! relay finishes the publishes in flight, then the HTTP server stops, then the pool closes,
//! and the process exits 0.

use std::sync::Arc;

use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::Context;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::settings::Settings;

/// Runs the relay until SIGTERM or SIGINT; in-flight publishes finish first.
pub async fn run(settings: &Settings) -> anyhow::Result<()> {
    let store = crate::backend::store(settings)?;
    let registry = Registry::new();
    let server = metrics_server(settings.relay.metrics_port, registry.clone())?;
    let server_handle = server.handle();
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    tasks.spawn(server);
    tasks.spawn(cancel_on_signal(shutdown.clone()));

    let relayed = intake_relay::run(
        Arc::new(store.clone()),
        settings.relay.publish.clone(),
        &registry,
        shutdown.clone(),
    )
    .await;
    // The relay ends once the token is cancelled, or when it cannot start: either way the rest
    // stops too, in order.
    shutdown.cancel();
    server_handle.stop(true).await;
    tasks.close();
    tasks.wait().await;
    store.pool().close().await;
    relayed?;
    tracing::info!("stopped");
    Ok(())
}

/// Cancels `shutdown` on SIGTERM or SIGINT; ends without a signal once it is cancelled.
async fn cancel_on_signal(shutdown: CancellationToken) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGTERM");
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
        () = shutdown.cancelled() => return,
    }
    tracing::info!("stopping: finishing the publishes in flight");
    shutdown.cancel();
}

/// `/healthz` and `/metrics` (the relay's registry) on 127.0.0.1:`port`.
fn metrics_server(port: u16, registry: Registry) -> anyhow::Result<actix_web::dev::Server> {
    let server = HttpServer::new(move || {
        let registry = registry.clone();
        App::new()
            .route(
                "/healthz",
                web::get()
                    .to(|| async { HttpResponse::Ok().json(serde_json::json!({"status": "ok"})) }),
            )
            .route(
                "/metrics",
                web::get().to(move || {
                    let mut body = Vec::new();
                    let _ = TextEncoder::new().encode(&registry.gather(), &mut body);
                    async move {
                        HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(body)
                    }
                }),
            )
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", port))
    .with_context(|| format!("cannot listen on relay.metrics_port {port}"))?
    .run();
    Ok(server)
}
