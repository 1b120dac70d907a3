//! Building the application: storage, authentication and the HTTP server, bound to a port.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use anyhow::Context;
use intake_domain::{EventStore, HealthCheck, Limits, TokenStore};
use intake_storage::PgStore;

use crate::auth::Authenticator;
use crate::body::BodyLimits;
use crate::metrics::Metrics;
use crate::request_context;
use crate::routes;
use crate::settings::Settings;

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    /// Where events go.
    pub events: Arc<dyn EventStore>,
    /// Who may call.
    pub auth: Authenticator,
    /// Whether storage is ready, and its pool.
    pub health: Arc<dyn HealthCheck>,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// How a single event's body is read.
    pub event_body: BodyLimits,
    /// How a batch's body is read.
    pub batch_body: BodyLimits,
    /// Validation limits.
    pub validation: Limits,
}

impl AppState {
    /// State over the given repositories.
    pub fn new(
        settings: &Settings,
        events: Arc<dyn EventStore>,
        tokens: Arc<dyn TokenStore>,
        health: Arc<dyn HealthCheck>,
    ) -> anyhow::Result<Self> {
        let timeout = Duration::from_millis(settings.server.client_body_timeout_ms);
        Ok(Self {
            events,
            auth: Authenticator::new(&settings.auth, tokens)?,
            health,
            metrics: Metrics::new()?,
            event_body: BodyLimits { max_bytes: settings.limits.max_body_bytes, timeout },
            batch_body: BodyLimits { max_bytes: settings.limits.max_batch_body_bytes, timeout },
            validation: settings.limits.validation(),
        })
    }
}

/// The actix application over `state`; also what handler tests build.
pub fn app(
    state: web::Data<AppState>,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(state)
        .wrap(from_fn(request_context::middleware))
        .configure(routes::configure)
}

/// A running server: its port, and a future that ends when it stops.
pub struct Application {
    port: u16,
    server: Server,
    store: PgStore,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application").field("port", &self.port).finish_non_exhaustive()
    }
}

impl Application {
    /// Connects storage (lazily: the server starts while the database is down) and binds the
    /// listener; port 0 picks a free port.
    pub fn build(settings: &Settings) -> anyhow::Result<Self> {
        let store = PgStore::connect_lazy(&settings.database.url, &settings.database.pool())
            .context("DATABASE_URL / database.url is not a valid PostgreSQL URL")?;
        Self::build_with_store(settings, store)
    }

    /// Like [`Application::build`], over a store whose pool the caller made (tests pass the
    /// database that `#[sqlx::test]` gives them).
    pub fn build_with_store(settings: &Settings, store: PgStore) -> anyhow::Result<Self> {
        settings.check_for_serving()?;
        let shared = Arc::new(store.clone());
        let state =
            web::Data::new(AppState::new(settings, shared.clone(), shared.clone(), shared)?);
        let address = format!("{}:{}", settings.server.host, settings.server.port);
        let listener =
            TcpListener::bind(&address).with_context(|| format!("cannot listen on {address}"))?;
        let port = listener.local_addr()?.port();
        let mut server = HttpServer::new(move || app(state.clone()))
            .client_request_timeout(Duration::from_millis(
                settings.server.client_request_timeout_ms,
            ))
            .shutdown_timeout(settings.server.shutdown_grace_secs);
        if settings.server.workers > 0 {
            server = server.workers(settings.server.workers);
        }
        let server = server.listen(listener)?.run();
        Ok(Self { port, server, store })
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM or SIGINT, lets in-flight requests finish, then closes the pool.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.server.await.context("server failed")?;
        self.store.pool().close().await;
        Ok(())
    }
}
