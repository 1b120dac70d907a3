//! The stores the application runs on: the one place that chooses a storage backend.

use std::sync::Arc;

use anyhow::Context;
use futures_util::future::BoxFuture;
use intake_domain::{
    DebugTransport, EventStore, HealthCheck, LifetimeStore, SchemaChangeFeed, SchemaStore,
    TokenStore,
};
use intake_storage::{GroupCommit, GroupCommitSettings, PgDebugTransport, PgStore};

use crate::metrics::{RateLimitStats, StorageGauge, StorageStats};
use crate::settings::Settings;

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
    /// Retention, the keys window and erasure.
    pub lifetime: Arc<dyn LifetimeStore>,
    /// Other servers' schema changes, as they happen (PostgreSQL notifications), when the
    /// backend can follow them.
    pub schema_changes: Option<Box<dyn SchemaChangeFeed>>,
    /// How the live debugger shares entries with other servers, when the backend is a
    /// server's own (not a test's).
    pub debug_transport: Option<Arc<dyn DebugTransport>>,
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
            lifetime: shared.clone(),
            schemas: shared,
            schema_changes: None,
            debug_transport: None,
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
        lifetime: Arc<dyn LifetimeStore>,
    ) -> Self {
        Self {
            events,
            tokens,
            health,
            schemas,
            lifetime,
            schema_changes: None,
            debug_transport: None,
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
        Ok(Self::shared(store(settings)?, group_commit))
    }

    /// Like [`Backend::postgres`], and following the other servers on the database: their
    /// schema changes and the live debugger's entries.
    pub fn shared(store: PgStore, group_commit: Option<GroupCommitSettings>) -> Self {
        let mut backend = Self::postgres(store.clone(), group_commit);
        backend.schema_changes = Some(Box::new(store.schema_changes()));
        backend.debug_transport = Some(Arc::new(PgDebugTransport::new(store)));
        backend
    }
}

/// The PostgreSQL store the settings name, connecting lazily (so that a process starts, and
/// later recovers, while the database is down): the one place a `PgStore` is made, for the
/// server, the relay and the command line alike.
pub fn store(settings: &Settings) -> anyhow::Result<PgStore> {
    PgStore::connect_lazy(&settings.database.url, &settings.database.pool())
        .context("DATABASE_URL / database.url is not a valid PostgreSQL URL")
}
