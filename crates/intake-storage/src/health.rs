//! Readiness and pool statistics for the operational endpoints.

use std::collections::HashSet;

use async_trait::async_trait;
use intake_domain::{HealthCheck, Readiness, StoreError};

use crate::errors::classify;
use crate::{PgStore, MIGRATOR};

#[async_trait]
impl HealthCheck for PgStore {
    async fn readiness(&self) -> Result<Readiness, StoreError> {
        let mut conn = self.acquire().await?;
        // Not checked at build time (the one statement here that is not): `_sqlx_migrations` is
        // sqlx's own bookkeeping, made by its migrator rather than by migrations/, and not
        // existing yet is a state this check must answer (42P01 below), not a build error.
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
}
