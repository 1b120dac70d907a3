//! Building the application: the stores, authentication, metrics and the HTTP server, bound to
//! a port. The one place that chooses a storage backend is [`Backend`].

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_http::{HttpService, Protocol};
use actix_service::{map_config, IntoServiceFactory, ServiceFactoryExt};
use actix_web::dev::{fn_service, AppConfig, Server};
use actix_web::middleware::from_fn;
use actix_web::{web, App};
use anyhow::Context;
use futures_util::future::BoxFuture;
use intake_domain::{EventStore, HealthCheck, RateLimiter, SchemaStore, TenantId, TokenStore};
use intake_ratelimit::{MemoryRateLimiter, RedisRateLimiter};
use intake_storage::{GroupCommit, GroupCommitSettings, Notified, PgStore, SchemaChange};
use tokio::sync::mpsc;

use crate::auth::Authenticator;
use crate::connection::Explainer;
use crate::debugger::{DebugHub, Outbound, WATCH_LIFETIME};
use crate::metrics::{Metrics, RateLimitStats, StorageGauge, StorageStats};
use crate::rate_limit::{self, RateLimits};
use crate::request_context;
use crate::routes::{self, OpenApiJson};
use crate::settings::RateBackend;
use crate::settings::Settings;
use crate::state::AppState;

/// The stores the application runs on, behind the domain's traits, and how to release them.
pub struct Backend {
    /// Where events go.
    pub events: Arc<dyn EventStore>,
    /// Where tokens are looked up.
    pub tokens: Arc<dyn TokenStore>,
    /// Whether storage is ready.
    pub health: Arc<dyn HealthCheck>,
    /// Where event schemas are kept.
    pub schemas: Arc<dyn SchemaStore>,
    /// Other servers' schema changes, as they happen (PostgreSQL notifications), when the
    /// backend can follow them.
    pub schema_changes: Option<Box<dyn FnOnce() -> mpsc::Receiver<SchemaChange> + Send>>,
    /// The database the live debugger shares entries through with other servers, when the
    /// backend is a server's own (not a test's).
    pub notifications: Option<PgStore>,
    /// Storage's state, for metrics.
    pub gauge: StorageGauge,
    /// Releases the stores once the server has stopped.
    pub close: Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend").field("events", &self.events).finish_non_exhaustive()
    }
}

impl Backend {
    /// Everything in one PostgreSQL database; single events grouped into statements when
    /// `group_commit` is given. Starts the group writers on the current Tokio runtime.
    pub fn postgres(store: PgStore, group_commit: Option<GroupCommitSettings>) -> Self {
        let shared = Arc::new(store.clone());
        let grouped = group_commit.map(|s| Arc::new(GroupCommit::start(store.clone(), s)));
        let events: Arc<dyn EventStore> = match &grouped {
            Some(grouped) => grouped.clone(),
            None => shared.clone(),
        };
        let (gauge_store, gauge_group) = (store.clone(), grouped.clone());
        Self {
            events,
            tokens: shared.clone(),
            health: shared.clone(),
            schemas: shared,
            schema_changes: None,
            notifications: None,
            gauge: Arc::new(move || StorageStats {
                pool: gauge_store.pool_stats(),
                group_commit: gauge_group.as_ref().map(|g| g.stats()).unwrap_or_default(),
                rate_limits: RateLimitStats::default(),
            }),
            close: Box::new(move || {
                Box::pin(async move {
                    // Queued events are stored before the pool closes.
                    if let Some(grouped) = grouped {
                        grouped.close().await;
                    }
                    store.pool().close().await
                })
            }),
        }
    }

    /// Stores that keep their own state and need no pool (in-memory ones, in tests).
    pub fn unpooled(
        events: Arc<dyn EventStore>,
        tokens: Arc<dyn TokenStore>,
        health: Arc<dyn HealthCheck>,
        schemas: Arc<dyn SchemaStore>,
    ) -> Self {
        Self {
            events,
            tokens,
            health,
            schemas,
            schema_changes: None,
            notifications: None,
            gauge: Arc::new(StorageStats::default),
            close: Box::new(|| Box::pin(async {})),
        }
    }

    /// The PostgreSQL backend the settings name; connects lazily, so that the server starts
    /// (and later recovers) while the database is down.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        Self::connect(settings, settings.group_commit.settings())
    }

    /// The PostgreSQL backend the settings name, grouping single events only when
    /// `group_commit` is given (a command that ingests nothing starts no writers).
    pub fn connect(
        settings: &Settings,
        group_commit: Option<GroupCommitSettings>,
    ) -> anyhow::Result<Self> {
        let store = PgStore::connect_lazy(&settings.database.url, &settings.database.pool())
            .context("DATABASE_URL / database.url is not a valid PostgreSQL URL")?;
        let listening = store.clone();
        let mut backend = Self::postgres(store, group_commit);
        backend.notifications = Some(listening.clone());
        backend.schema_changes = Some(Box::new(move || listening.schema_changes()));
        Ok(backend)
    }
}

/// Reads the rate limits' backend state, for metrics.
type RateStatsReader = Box<dyn Fn() -> RateLimitStats + Send + Sync>;

/// What the application's routes are given: shared state, authentication, metrics and the
/// OpenAPI document.
#[derive(Debug, Clone)]
pub struct AppData {
    state: web::Data<AppState>,
    auth: web::Data<Authenticator>,
    metrics: web::Data<Metrics>,
    limits: web::Data<RateLimits>,
    debugger: web::Data<DebugHub>,
    openapi: web::Data<OpenApiJson>,
}

impl AppData {
    /// Everything the routes need, over `backend`'s stores.
    pub fn new(settings: &Settings, backend: &Backend) -> anyhow::Result<Self> {
        let rate = &settings.limits.rate;
        let (limiter, rate_stats): (Option<Arc<dyn RateLimiter>>, RateStatsReader) = match rate
            .backend
        {
            RateBackend::Off => (None, Box::new(RateLimitStats::default)),
            RateBackend::Memory => {
                (Some(Arc::new(MemoryRateLimiter::default())), Box::new(RateLimitStats::default))
            }
            RateBackend::Redis => {
                let redis = Arc::new(
                    RedisRateLimiter::new(&rate.redis_url, &rate.redis_prefix)
                        .context("limits.rate.redis_url is not a valid Redis URL")?,
                );
                let stats = redis.clone();
                (
                    Some(redis),
                    Box::new(move || {
                        let s = stats.stats();
                        RateLimitStats {
                            fallback_requests: s.fallback_requests,
                            degraded: s.degraded,
                        }
                    }),
                )
            }
        };
        let storage = backend.gauge.clone();
        let metrics = Metrics::new(Arc::new(move || StorageStats {
            rate_limits: rate_stats(),
            ..storage()
        }))?;
        Ok(Self {
            state: web::Data::new(AppState::new(
                settings,
                backend.events.clone(),
                backend.health.clone(),
                backend.schemas.clone(),
            )),
            auth: web::Data::new(Authenticator::new(&settings.auth, backend.tokens.clone())?),
            limits: web::Data::new(RateLimits::new(
                limiter,
                rate.default_limit()?,
                metrics.clone(),
            )),
            metrics: web::Data::new(metrics),
            debugger: web::Data::new(DebugHub::new(None)),
            openapi: web::Data::new(OpenApiJson(crate::openapi::document_json())),
        })
    }
}

/// The actix application; also what handler tests build.
pub fn app(
    data: AppData,
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
        .app_data(data.state)
        .app_data(data.auth)
        .app_data(data.metrics)
        .app_data(data.limits)
        .app_data(data.debugger)
        .app_data(data.openapi)
        .wrap(from_fn(rate_limit::middleware))
        .wrap(from_fn(request_context::middleware))
        .configure(routes::configure)
}

/// The channel the live debugger's entries and watches travel on between servers.
const DEBUGGER_CHANNEL: &str = "intake_debugger";

/// The live debugger's hub; with a database, shared with every other server on it: entries and
/// watches go out in batches of notifications, and come in through a listener.
fn share_debugger(notifications: Option<PgStore>) -> web::Data<DebugHub> {
    let server = format!("{:016x}", server_id());
    let (sender, mut outbound) = mpsc::channel::<Outbound>(10_000);
    let hub = web::Data::new(DebugHub::new(notifications.as_ref().map(|_| sender)));
    // Subscribers here keep their tenants watched, here and on the other servers.
    let announcing = hub.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(WATCH_LIFETIME / 3);
        loop {
            tick.tick().await;
            for tenant in announcing.local_tenants() {
                announcing.mark_watched(&tenant);
                announcing.announce(Outbound::Watch(tenant));
            }
        }
    });
    if let Some(store) = notifications {
        let sending = store.clone();
        let me = server.clone();
        tokio::spawn(async move {
            let mut batch = Vec::new();
            while outbound.recv_many(&mut batch, 500).await > 0 {
                let payloads: Vec<String> =
                    batch.drain(..).filter_map(|message| payload(&me, message)).collect();
                if let Err(error) = sending.notify_many(DEBUGGER_CHANNEL, &payloads).await {
                    tracing::debug!(%error, "debugger entries not shared");
                }
            }
        });
        let mut incoming = store.listen(DEBUGGER_CHANNEL);
        let hub_in = hub.clone();
        tokio::spawn(async move {
            while let Some(notified) = incoming.recv().await {
                // A listener that reconnected missed entries: a debugger may skip some.
                let Notified::Payload(message) = notified else { continue };
                let mut parts = message.splitn(4, ' ');
                let (Some(from), Some(kind), Some(tenant)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                let Ok(tenant) = TenantId::parse(tenant) else { continue };
                if from == server {
                    continue;
                }
                match (kind, parts.next()) {
                    ("watch", _) => hub_in.mark_watched(&tenant),
                    ("accepted", Some(json)) => {
                        hub_in.deliver(&tenant, "accepted", json.to_owned())
                    }
                    ("rejected", Some(json)) => {
                        hub_in.deliver(&tenant, "rejected", json.to_owned())
                    }
                    _ => {}
                }
            }
        });
    }
    hub
}

/// A process's id among the servers sharing a database.
fn server_id() -> u64 {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

/// What travels on the channel: `<server> <kind> <tenant> [<json>]`, an entry's data left out
/// when it would not fit a notification.
fn payload(server: &str, message: Outbound) -> Option<String> {
    match message {
        Outbound::Watch(tenant) => Some(format!("{server} watch {tenant}")),
        Outbound::Entry { tenant, kind, json } => {
            let text = format!("{server} {kind} {tenant} {json}");
            if text.len() <= intake_storage::MAX_PAYLOAD {
                return Some(text);
            }
            let mut entry: serde_json::Value = serde_json::from_str(&json).ok()?;
            entry["data"] = serde_json::Value::Null;
            entry["data_omitted"] = true.into();
            let text = format!("{server} {kind} {tenant} {entry}");
            (text.len() <= intake_storage::MAX_PAYLOAD).then_some(text)
        }
    }
}

/// Keeps the schema cache equal to the database: each change notification refreshes its type,
/// a lost notification connection and a periodic tick compare everything.
fn follow_schema_changes(
    state: web::Data<AppState>,
    mut changes: Option<mpsc::Receiver<SchemaChange>>,
    recheck: Duration,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(recheck);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            let change = async {
                match changes.as_mut() {
                    Some(changes) => changes.recv().await,
                    None => std::future::pending().await,
                }
            };
            let outcome = tokio::select! {
                change = change => match change {
                    Some(SchemaChange::Changed(tenant, event_type)) => {
                        state.schemas.refresh(&tenant, &event_type).await
                    }
                    Some(SchemaChange::Resync) => state.schemas.resync().await,
                    None => {
                        changes = None;
                        Ok(())
                    }
                },
                _ = tick.tick() => state.schemas.resync().await,
            };
            if let Err(error) = outcome {
                // The next tick tries again.
                tracing::warn!(%error, "cannot refresh the schema cache");
            }
        }
    });
}

/// actix-web's `HttpServer`, assembled from its parts so that each accepted stream passes
/// through the connection layer (see [`crate::connection`]) first.
fn serve(
    listener: TcpListener,
    data: AppData,
    settings: &crate::settings::ServerSettings,
) -> anyhow::Result<Server> {
    let address = listener.local_addr()?;
    let head_timeout = Duration::from_millis(settings.client_request_timeout_ms);
    let explainer =
        Explainer::new(data.metrics.get_ref().clone(), settings.client_request_timeout_ms);
    let mut builder = actix_server::Server::build().shutdown_timeout(settings.shutdown_grace_secs);
    if settings.workers > 0 {
        builder = builder.workers(settings.workers);
    }
    // Lets idle keep-alive connections close as soon as a graceful shutdown starts.
    let shutdown = builder.graceful_shutdown_signal();
    let builder = builder.listen("intake", listener, move || {
        let explainer = explainer.clone();
        let shutdown = shutdown.clone();
        let data = data.clone();
        let http = HttpService::build()
            .client_request_timeout(head_timeout)
            // As HttpServer does: after an early answer (a 413 before the body, say), keep
            // reading for a second so the client sees the answer rather than a reset.
            .client_disconnect_timeout(Duration::from_secs(1))
            .graceful_shutdown_signal(move || {
                let shutdown = shutdown.clone();
                async move { shutdown.notified().await }
            })
            .local_addr(address)
            .finish(map_config(
                app(data).into_factory().map_err(|err| err.error_response()),
                // The host and address in it only serve URL generation, which intake does not use.
                |_| AppConfig::default(),
            ));
        fn_service(move |io: actix_web::rt::net::TcpStream| {
            let _ = io.set_nodelay(true);
            let peer = io.peer_addr().ok();
            let io = explainer.guard(io);
            async move { Ok::<_, actix_http::error::DispatchError>((io, Protocol::Http1, peer)) }
        })
        .and_then(http)
    })?;
    Ok(builder.run())
}

/// A running server: its port, and a future that ends when it stops.
pub struct Application {
    port: u16,
    server: Server,
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
        let mut data = AppData::new(settings, &backend)?;
        data.debugger = share_debugger(backend.notifications.take());
        // Debugger streams end when the server is asked to stop, so that they do not hold the
        // graceful shutdown for its whole grace period.
        let closing = data.debugger.clone();
        tokio::spawn(async move {
            let Ok(mut term) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            closing.close();
        });
        follow_schema_changes(
            data.state.clone(),
            backend.schema_changes.take().map(|listen| listen()),
            Duration::from_secs(settings.schemas.recheck_secs.max(1)),
        );
        let address = format!("{}:{}", settings.server.host, settings.server.port);
        let listener =
            TcpListener::bind(&address).with_context(|| format!("cannot listen on {address}"))?;
        let port = listener.local_addr()?.port();
        let server = serve(listener, data, &settings.server)?;
        Ok(Self { port, server, close: backend.close })
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM or SIGINT, lets in-flight requests finish, then releases storage.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.server.await.context("server failed")?;
        (self.close)().await;
        Ok(())
    }
}
