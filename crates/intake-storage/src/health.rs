//! Readiness and pool statistics for the operational endpoints.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use intake_domain::{HealthCheck, PoolStats, Readiness, StoreError};

use crate::errors::classify;
use crate::{PgStore, MIGRATOR};

#[async_trait]
impl HealthCheck for PgStore {
    async fn readiness(&self) -> Result<Readiness, StoreError> {
        let mut conn = self.acquire().await?;
        let applied: Vec<i64> =
            match sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&mut *conn)
                .await
            {
                Ok(versions) => versions,
                // 42P01: no migrations table yet, so nothing is applied.
                Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P01") => {
                    Vec::new()
                }
                Err(e) => return Err(classify(e)),
            };
        let applied: HashSet<i64> = applied.into_iter().collect();
        let pending: Vec<String> = MIGRATOR
            .iter()
            .filter(|m| m.migration_type.is_up_migration() && !applied.contains(&m.version))
            .map(|m| format!("{} {}", m.version, m.description))
            .collect();
        Ok(if pending.is_empty() {
            Readiness::Ready
        } else {
            Readiness::MigrationsPending { pending }
        })
    }

    fn pool_stats(&self) -> PoolStats {
        PoolStats {
            size: self.pool.size(),
            idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
            max: self.pool.options().get_max_connections(),
            waiting: self.waiting.load(Ordering::Relaxed),
        }
    }
}
