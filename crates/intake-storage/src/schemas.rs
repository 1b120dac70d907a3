//! Event schemas: numbered versions per tenant and event type, which types are validated, and
//! a notification on every change so that each server's cache follows within moments.

use anyhow::anyhow;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use intake_domain::{
    EventType, SchemaChange, SchemaChangeFeed, SchemaPut, SchemaRecord, SchemaStore, StoreError,
    TenantId,
};
use serde_json::Value;

use crate::errors::classify;
use crate::notify::{Listener, Notified};
use crate::PgStore;

/// The channel every schema change is announced on, with `<tenant>\n<event type>` as payload.
pub const SCHEMA_CHANNEL: &str = "intake_schema_changes";

/// A version as the statements below return it.
#[derive(Debug)]
struct SchemaRow {
    tenant_id: String,
    event_type: String,
    version: i32,
    created_at: DateTime<Utc>,
    schema: Value,
}

impl SchemaRow {
    fn into_record(self) -> Result<SchemaRecord, StoreError> {
        let corrupt = |what: String| {
            StoreError::Unknown(anyhow!("event_schemas row of {:?}: {what}", self.event_type))
        };
        Ok(SchemaRecord {
            tenant: TenantId::parse(&self.tenant_id).map_err(|e| corrupt(e.to_string()))?,
            event_type: EventType::parse(&self.event_type).map_err(|e| corrupt(e.message))?,
            version: u32::try_from(self.version).map_err(|e| corrupt(e.to_string()))?,
            created_at: self.created_at,
            schema: self.schema,
        })
    }
}

fn version_column(version: u32) -> Result<i32, StoreError> {
    i32::try_from(version).map_err(|_| StoreError::Refused(anyhow!("version {version} too large")))
}

#[async_trait]
impl SchemaStore for PgStore {
    async fn put(
        &self,
        tenant: &TenantId,
        event_type: &EventType,
        schema: &Value,
    ) -> Result<SchemaPut, StoreError> {
        let mut conn = self.acquire().await?;
        let mut tx = begin_locked(&mut conn, tenant, event_type).await?;
        let head = sqlx::query!(
            "SELECT h.latest_version, h.active, s.schema
             FROM event_schema_heads h
             JOIN event_schemas s ON s.tenant_id = h.tenant_id AND s.event_type = h.event_type
                                 AND s.version = h.latest_version
             WHERE h.tenant_id = $1 AND h.event_type = $2",
            tenant.as_str(),
            event_type.as_str(),
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(classify)?;
        if let Some(head) = &head {
            if head.active && head.schema == *schema {
                let record = version_row(&mut tx, tenant, event_type, head.latest_version)
                    .await?
                    .ok_or_else(|| StoreError::Unknown(anyhow!("the latest version has no row")))?
                    .into_record()?;
                tx.rollback().await.map_err(classify)?;
                return Ok(SchemaPut { record, created: false });
            }
        }
        let next = head.map_or(1, |head| head.latest_version + 1);
        let stored = sqlx::query!(
            "INSERT INTO event_schemas (tenant_id, event_type, version, schema)
             VALUES ($1, $2, $3, $4::text::json)
             RETURNING version, created_at, schema",
            tenant.as_str(),
            event_type.as_str(),
            next,
            intake_domain::event::stored_text(schema),
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(classify)?;
        sqlx::query!(
            "INSERT INTO event_schema_heads (tenant_id, event_type, latest_version, active)
             VALUES ($1, $2, $3, true)
             ON CONFLICT ON CONSTRAINT event_schema_heads_pkey
             DO UPDATE SET latest_version = EXCLUDED.latest_version, active = true",
            tenant.as_str(),
            event_type.as_str(),
            stored.version,
        )
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        notify(&mut tx, tenant, event_type).await?;
        tx.commit().await.map_err(classify)?;
        let record = SchemaRow {
            tenant_id: tenant.as_str().to_owned(),
            event_type: event_type.as_str().to_owned(),
            version: stored.version,
            created_at: stored.created_at,
            schema: stored.schema,
        }
        .into_record()?;
        Ok(SchemaPut { record, created: true })
    }

    async fn latest(
        &self,
        tenant: &TenantId,
        event_type: &EventType,
    ) -> Result<Option<SchemaRecord>, StoreError> {
        let row = sqlx::query_as!(
            SchemaRow,
            "SELECT s.tenant_id, s.event_type, s.version, s.created_at, s.schema
             FROM event_schema_heads h
             JOIN event_schemas s ON s.tenant_id = h.tenant_id AND s.event_type = h.event_type
                                 AND s.version = h.latest_version
             WHERE h.tenant_id = $1 AND h.event_type = $2 AND h.active",
            tenant.as_str(),
            event_type.as_str(),
        )
        .fetch_optional(&mut *self.acquire().await?)
        .await
        .map_err(classify)?;
        row.map(SchemaRow::into_record).transpose()
    }

    async fn version(
        &self,
        tenant: &TenantId,
        event_type: &EventType,
        version: u32,
    ) -> Result<Option<SchemaRecord>, StoreError> {
        let Ok(version) = version_column(version) else {
            return Ok(None);
        };
        let row = version_row(&mut *self.acquire().await?, tenant, event_type, version).await?;
        row.map(SchemaRow::into_record).transpose()
    }

    async fn list(&self, tenant: &TenantId) -> Result<Vec<SchemaRecord>, StoreError> {
        let rows = sqlx::query_as!(
            SchemaRow,
            "SELECT s.tenant_id, s.event_type, s.version, s.created_at, s.schema
             FROM event_schema_heads h
             JOIN event_schemas s ON s.tenant_id = h.tenant_id AND s.event_type = h.event_type
                                 AND s.version = h.latest_version
             WHERE h.tenant_id = $1 AND h.active
             ORDER BY s.event_type",
            tenant.as_str(),
        )
        .fetch_all(&mut *self.acquire().await?)
        .await
        .map_err(classify)?;
        rows.into_iter().map(SchemaRow::into_record).collect()
    }

    async fn delete(&self, tenant: &TenantId, event_type: &EventType) -> Result<bool, StoreError> {
        let mut conn = self.acquire().await?;
        let mut tx = begin_locked(&mut conn, tenant, event_type).await?;
        let deleted = sqlx::query!(
            "UPDATE event_schema_heads SET active = false
             WHERE tenant_id = $1 AND event_type = $2 AND active",
            tenant.as_str(),
            event_type.as_str(),
        )
        .execute(&mut *tx)
        .await
        .map_err(classify)?
        .rows_affected()
            > 0;
        if deleted {
            notify(&mut tx, tenant, event_type).await?;
        }
        tx.commit().await.map_err(classify)?;
        Ok(deleted)
    }

    async fn active_versions(&self) -> Result<Vec<(TenantId, EventType, u32)>, StoreError> {
        let rows = sqlx::query!(
            "SELECT tenant_id, event_type, latest_version FROM event_schema_heads WHERE active"
        )
        .fetch_all(&mut *self.acquire().await?)
        .await
        .map_err(classify)?;
        rows.into_iter()
            .map(|row| {
                let corrupt =
                    |what: String| StoreError::Unknown(anyhow!("event_schema_heads row: {what}"));
                Ok((
                    TenantId::parse(&row.tenant_id).map_err(|e| corrupt(e.to_string()))?,
                    EventType::parse(&row.event_type).map_err(|e| corrupt(e.message))?,
                    u32::try_from(row.latest_version).map_err(|e| corrupt(e.to_string()))?,
                ))
            })
            .collect()
    }
}

/// One version of one tenant's event type.
async fn version_row(
    conn: &mut sqlx::PgConnection,
    tenant: &TenantId,
    event_type: &EventType,
    version: i32,
) -> Result<Option<SchemaRow>, StoreError> {
    sqlx::query_as!(
        SchemaRow,
        "SELECT tenant_id, event_type, version, created_at, schema
         FROM event_schemas
         WHERE tenant_id = $1 AND event_type = $2 AND version = $3",
        tenant.as_str(),
        event_type.as_str(),
        version,
    )
    .fetch_optional(conn)
    .await
    .map_err(classify)
}

/// A transaction that holds the lock of one tenant's event type until it ends.
async fn begin_locked<'c>(
    conn: &'c mut sqlx::PgConnection,
    tenant: &TenantId,
    event_type: &EventType,
) -> Result<sqlx::Transaction<'c, sqlx::Postgres>, StoreError> {
    let mut tx = sqlx::Connection::begin(conn).await.map_err(classify)?;
    // Serialises registrations and deletions of one tenant's event type for the rest of the
    // transaction, including the very first one (which has no row to lock yet).
    sqlx::query!(
        "SELECT pg_advisory_xact_lock(
             hashtextextended('intake.schema/' || $1::text || '/' || $2::text, 0))",
        tenant.as_str(),
        event_type.as_str(),
    )
    .execute(&mut *tx)
    .await
    .map_err(classify)?;
    Ok(tx)
}

/// Announces a change of one type's schema when the transaction commits.
async fn notify(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    tenant: &TenantId,
    event_type: &EventType,
) -> Result<(), StoreError> {
    sqlx::query!(
        r"SELECT pg_notify($1, $2::text || E'\n' || $3::text)",
        SCHEMA_CHANNEL,
        tenant.as_str(),
        event_type.as_str(),
    )
    .execute(&mut **tx)
    .await
    .map_err(classify)?;
    Ok(())
}

impl PgStore {
    /// Follows [`SCHEMA_CHANNEL`] on a connection of its own, for as long as the receiver is
    /// kept. The connection is re-established after a loss, with a [`SchemaChange::Resync`]
    /// once it is back; until the first connection succeeds nothing is sent.
    pub fn schema_changes(&self) -> SchemaChanges {
        SchemaChanges(self.listen(SCHEMA_CHANNEL))
    }
}

/// Other servers' schema changes, read while awaited (see [`crate::Listener`]).
#[derive(Debug)]
pub struct SchemaChanges(Listener);

#[async_trait]
impl SchemaChangeFeed for SchemaChanges {
    async fn next(&mut self) -> SchemaChange {
        match self.0.next().await {
            Notified::Payload(payload) => payload
                .split_once('\n')
                .and_then(|(tenant, event_type)| {
                    Some(SchemaChange::Changed(
                        TenantId::parse(tenant).ok()?,
                        EventType::parse(event_type).ok()?,
                    ))
                })
                .unwrap_or(SchemaChange::Resync),
            Notified::Reconnected => SchemaChange::Resync,
        }
    }
}
