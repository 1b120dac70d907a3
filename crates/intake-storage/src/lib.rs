//! PostgreSQL adapters of the repository traits of `intake-domain`.
//!
//! This is the only crate that writes SQL or knows sqlx. It owns connecting, migrating, and
//! turning database failures into the domain's errors: a connection problem becomes
//! `Unavailable` (the API answers 503), anything else `Unknown` (500, logged).

mod debugger;
mod errors;
mod events;
mod group_commit;
mod health;
mod lifetime;
mod notify;
mod relay;
mod schemas;
mod tokens;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use intake_domain::StoreError;
use sqlx::pool::PoolConnection;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

pub use debugger::{PgDebugTransport, DEBUGGER_CHANNEL};
pub use events::IngestItem;
pub use group_commit::{GroupCommit, GroupCommitSettings, GroupCommitStats};
pub use notify::{Listener, Notified, MAX_PAYLOAD};
pub use relay::RelayClaims;
pub use schemas::{SchemaChanges, SCHEMA_CHANNEL};
pub use sqlx::migrate::MigrateError;

/// The migrations in the top-level `migrations/` folder, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// How the pool connects and how long a request may wait for a connection.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// The most connections the pool opens.
    pub max_connections: u32,
    /// How long a request waits for a connection before it is told the database is unavailable.
    pub acquire_timeout: Duration,
}

/// A snapshot of the connection pool, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// Connections open now.
    pub size: u32,
    /// Of those, connections not in use.
    pub idle: u32,
    /// The most connections the pool opens.
    pub max: u32,
    /// Requests waiting for a connection now.
    pub waiting: u32,
}

/// The PostgreSQL store: events and tokens in one database.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Requests waiting for a connection now (sqlx does not count them).
    waiting: Arc<AtomicU32>,
    /// Ingest statements PostgreSQL aborted as deadlock victims (and that were run again).
    deadlocks: Arc<AtomicU64>,
}

/// Counts a request as waiting for a connection while it lives.
struct Waiting<'a>(&'a AtomicU32);

impl<'a> Waiting<'a> {
    fn start(counter: &'a AtomicU32) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl PgStore {
    /// Wraps an existing pool.
    pub fn new(pool: PgPool) -> Self {
        Self { pool, waiting: Arc::new(AtomicU32::new(0)), deadlocks: Arc::new(AtomicU64::new(0)) }
    }

    /// A connection from the pool, counted as waiting until it arrives; a pool that cannot
    /// give one within its acquire timeout is `Unavailable`.
    async fn acquire(&self) -> Result<PoolConnection<sqlx::Postgres>, StoreError> {
        let _waiting = Waiting::start(&self.waiting);
        self.pool.acquire().await.map_err(errors::classify)
    }

    /// A pool for `url` that connects lazily, so the server starts (and later recovers) even
    /// while the database is down.
    pub fn connect_lazy(url: &str, settings: &PoolSettings) -> Result<Self, sqlx::Error> {
        Ok(Self::connect_lazy_with(url.parse()?, settings))
    }

    /// Like [`PgStore::connect_lazy`], from connection options.
    ///
    /// Every session runs at READ COMMITTED whatever the server's or database's default: the
    /// ingest statements rely on it (a conflicting row committed by another writer is waited
    /// for, then skipped and read, rather than failing the statement with a serialization
    /// error as REPEATABLE READ would).
    pub fn connect_lazy_with(options: PgConnectOptions, settings: &PoolSettings) -> Self {
        let options = options
            .application_name("intake")
            // A space in a startup option is escaped with a backslash.
            .options([("default_transaction_isolation", "read\\ committed")]);
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            .connect_lazy_with(options);
        Self::new(pool)
    }

    /// How many ingest statements PostgreSQL has aborted as deadlock victims so far. Rows are
    /// locked in one order, so this stays 0 unless something outside intake writes events.
    pub fn deadlocks(&self) -> u64 {
        self.deadlocks.load(Ordering::Relaxed)
    }

    /// The connection pool's state now, for metrics.
    pub fn pool_stats(&self) -> PoolStats {
        PoolStats {
            size: self.pool.size(),
            idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
            max: self.pool.options().get_max_connections(),
            waiting: self.waiting.load(Ordering::Relaxed),
        }
    }

    /// The pool, for callers that need to close it.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Creates the database named in `url` when it does not exist yet.
pub async fn ensure_database(url: &str) -> Result<(), sqlx::Error> {
    use sqlx::migrate::MigrateDatabase;
    if !sqlx::Postgres::database_exists(url).await? {
        sqlx::Postgres::create_database(url).await?;
    }
    Ok(())
}

/// Applies every pending migration. Safe to run twice and from several hosts at once: sqlx
/// holds an advisory lock while it migrates.
pub async fn migrate(pool: &PgPool) -> Result<(), MigrateError> {
    MIGRATOR.run(pool).await
}
