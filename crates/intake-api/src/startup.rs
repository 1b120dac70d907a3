//! Building the application: the application layer over the backend's stores, authentication,
//! metrics, the background work and the HTTP server, bound to a port; and stopping them in
//! order.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use anyhow::Context;
use futures_util::future::BoxFuture;
use intake_service::background::{self, Background};
use intake_service::DebugHub;

pub use crate::app_data::AppData;
pub use crate::backend::Backend;
pub use crate::server::app;
use crate::settings::Settings;

/// A running server: its port, its background work, and a future that ends when it stops.
pub struct Application {
    port: u16,
    server: Server,
    background: Background,
    stopper: Stopper,
    close: Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application").field("port", &self.port).finish_non_exhaustive()
    }
}

impl Application {
    /// Binds the listener over the backend the settings name; port 0 picks a free port.
    pub fn build(settings: &Settings) -> anyhow::Result<Self> {
        Self::build_with(settings, Backend::from_settings(settings)?)
    }

    /// Like [`Application::build`], over a backend the caller made (tests pass the database
    /// that `#[sqlx::test]` gives them).
    pub fn build_with(settings: &Settings, mut backend: Backend) -> anyhow::Result<Self> {
        settings.check_for_serving()?;
        let background = Background::default();
        let debugger = background::share_debugger(
            &background,
            backend.debug_transport.take(),
            settings.debugger.limits(),
        );
        let data = AppData::with_debugger(settings, &backend, debugger.clone())?;
        background::follow_schema_changes(
            &background,
            data.state.schemas.clone(),
            backend.schema_changes.take(),
            Duration::from_secs(settings.schemas.recheck_secs.max(1)),
        );
        // Retention, the keys window and erasures by content, in the background.
        data.state.lifetime.run(&background);
        let address = format!("{}:{}", settings.server.host, settings.server.port);
        let listener =
            TcpListener::bind(&address).with_context(|| format!("cannot listen on {address}"))?;
        let port = listener.local_addr()?.port();
        let server = crate::server::serve(listener, data, &settings.server)?;
        let stopper = Stopper { server: server.handle(), debugger };
        stop_on_signals(&background, stopper.clone());
        Ok(Self { port, server, background, stopper, close: backend.close })
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's background work (tests count it).
    pub fn background(&self) -> &Background {
        &self.background
    }

    /// Serves until SIGTERM or SIGINT (or [`Application::stop`]); then in order: in-flight
    /// requests finish, every background loop ends, queued events are stored, storage is
    /// released.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let served = self.server.await.context("server failed");
        self.background.stop().await;
        (self.close)().await;
        served
    }

    /// What stops the server as SIGTERM does; take it before running the server.
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }
}

/// Stops a running [`Application`] gracefully.
#[derive(Debug, Clone)]
pub struct Stopper {
    server: ServerHandle,
    debugger: Arc<DebugHub>,
}

impl Stopper {
    /// Ends debugger streams at once (they would hold the graceful shutdown for its whole grace
    /// period), stops accepting, and lets in-flight requests finish; the application then stops
    /// the rest.
    pub async fn stop(&self) {
        self.debugger.close();
        self.server.stop(true).await;
    }
}

/// SIGTERM and SIGINT both drain, as [`Stopper::stop`] does.
fn stop_on_signals(background: &Background, stopper: Stopper) {
    let stopping = background.stopping();
    background.spawn("signals", async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) =
            (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
        else {
            tracing::error!("cannot listen for SIGTERM and SIGINT");
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: draining"),
            _ = int.recv() => tracing::info!("SIGINT: draining"),
            () = stopping.cancelled() => return,
        }
        stopper.stop().await;
    });
}
