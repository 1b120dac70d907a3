//! What `intake relay` keeps in PostgreSQL: which tenants have events, how far each tenant's
//! feed was published into each stream, and which relay process owns which (stream, tenant).

use anyhow::anyhow;
use async_trait::async_trait;
use intake_domain::{
    ErasedNotice, EventId, FeedPosition, FeedQuery, ParkedEvent, RelayPage, RelayStore, StoreError,
    TenantId,
};
use sqlx::Connection;
use uuid::Uuid;

use crate::errors::classify;
use crate::lifetime::lock_relay_tenant;
use crate::PgStore;

impl PgStore {
    /// Every tenant that has events.
    pub async fn relay_tenants(&self) -> Result<Vec<TenantId>, StoreError> {
        // A skip scan of `events_feed_idx`: one index probe per tenant.
        let names = sqlx::query_scalar!(
            r#"WITH RECURSIVE t AS (
                   (SELECT tenant_id FROM events ORDER BY tenant_id LIMIT 1)
                   UNION ALL
                   SELECT (SELECT e.tenant_id FROM events e WHERE e.tenant_id > t.tenant_id
                           ORDER BY e.tenant_id LIMIT 1)
                   FROM t WHERE t.tenant_id IS NOT NULL
               )
               SELECT tenant_id AS "tenant_id!" FROM t WHERE tenant_id IS NOT NULL
               UNION
               SELECT DISTINCT tenant_id FROM relay_erased_notices"#
        )
        .fetch_all(&mut *self.acquire().await?)
        .await
        .map_err(classify)?;
        names
            .iter()
            .map(|n| TenantId::parse(n).map_err(|e| StoreError::Unknown(anyhow!("{e}"))))
            .collect()
    }

    /// How far a tenant's feed was published into `stream` (the start when never).
    pub async fn relay_position(
        &self,
        stream: &str,
        tenant: &TenantId,
    ) -> Result<FeedPosition, StoreError> {
        let row = sqlx::query!(
            r#"SELECT tx_id::text AS "tx_text!", seq
               FROM relay_positions
               WHERE stream = $1 AND tenant_id = $2"#,
            stream,
            tenant.as_str(),
        )
        .fetch_optional(&mut *self.acquire().await?)
        .await
        .map_err(classify)?;
        match row {
            None => Ok(FeedPosition::START),
            Some(row) => Ok(FeedPosition {
                tx: row.tx_text.parse().map_err(|e| {
                    StoreError::Unknown(anyhow!("relay tx_id {}: {e}", row.tx_text))
                })?,
                seq: row.seq,
            }),
        }
    }

    /// Records that everything up to `position` was acknowledged by `stream`.
    pub async fn save_relay_position(
        &self,
        stream: &str,
        tenant: &TenantId,
        position: FeedPosition,
        published: &[EventId],
    ) -> Result<(), StoreError> {
        let mut conn = self.acquire().await?;
        let mut tx = conn.begin().await.map_err(classify)?;
        // Under the tenant's relay lock, which an erasure takes exclusively: either the erasure
        // came first (and its tombstone is seen here, so the notice is queued here), or this
        // comes first (and the erasure sees the position past its event, and queues it).
        lock_relay_tenant(&mut tx, tenant, false).await?;
        sqlx::query!(
            "INSERT INTO relay_positions (stream, tenant_id, tx_id, seq)
             VALUES ($1, $2, $3::text::xid8, $4)
             ON CONFLICT ON CONSTRAINT relay_positions_pkey DO UPDATE
             SET tx_id = EXCLUDED.tx_id, seq = EXCLUDED.seq, updated_at = now()
             WHERE (relay_positions.tx_id, relay_positions.seq) < (EXCLUDED.tx_id, EXCLUDED.seq)",
            stream,
            tenant.as_str(),
            position.tx.to_string(),
            position.seq,
        )
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        if !published.is_empty() {
            let ids: Vec<Uuid> = published.iter().map(EventId::as_uuid).collect();
            sqlx::query!(
                "INSERT INTO relay_erased_notices (stream, tenant_id, event_id, erased_at)
                 SELECT $1, tenant_id, event_id, erased_at
                 FROM erased_events
                 WHERE tenant_id = $2 AND event_id = ANY($3)
                 ON CONFLICT ON CONSTRAINT relay_erased_notices_pkey DO NOTHING",
                stream,
                tenant.as_str(),
                &ids,
            )
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        }
        tx.commit().await.map_err(classify)?;
        Ok(())
    }

    /// Notices of erased events that `stream` had published, oldest first.
    pub async fn relay_erased_notices(
        &self,
        stream: &str,
        tenant: &TenantId,
        limit: u16,
    ) -> Result<Vec<ErasedNotice>, StoreError> {
        let rows = sqlx::query!(
            "SELECT event_id, erased_at FROM relay_erased_notices
             WHERE stream = $1 AND tenant_id = $2
             ORDER BY erased_at, event_id
             LIMIT $3",
            stream,
            tenant.as_str(),
            i64::from(limit),
        )
        .fetch_all(&mut *self.acquire().await?)
        .await
        .map_err(classify)?;
        Ok(rows
            .into_iter()
            .map(|row| ErasedNotice {
                event_id: EventId::from_uuid(row.event_id),
                erased_at: row.erased_at,
            })
            .collect())
    }

    /// Forgets notices JetStream acknowledged.
    pub async fn relay_notices_sent(
        &self,
        stream: &str,
        tenant: &TenantId,
        ids: &[EventId],
    ) -> Result<(), StoreError> {
        let ids: Vec<Uuid> = ids.iter().map(EventId::as_uuid).collect();
        sqlx::query!(
            "DELETE FROM relay_erased_notices
             WHERE stream = $1 AND tenant_id = $2 AND event_id = ANY($3)",
            stream,
            tenant.as_str(),
            &ids,
        )
        .execute(&mut *self.acquire().await?)
        .await
        .map_err(classify)?;
        Ok(())
    }

    pub async fn relay_lag(
        &self,
        tenant: &TenantId,
        position: FeedPosition,
        cap: i64,
    ) -> Result<i64, StoreError> {
        sqlx::query_scalar!(
            r#"SELECT count(*) AS "behind!" FROM (
                   SELECT 1 FROM events
                   WHERE tenant_id = $1 AND (tx_id, seq) > ($2::text::xid8, $3)
                   LIMIT $4
               ) AS behind"#,
            tenant.as_str(),
            position.tx.to_string(),
            position.seq,
            cap,
        )
        .fetch_one(&mut *self.acquire().await?)
        .await
        .map_err(classify)
    }

    /// The next page of a tenant's feed for the relay: at most `limit` events, each with its
    /// position, whose data and CloudEvents context add up to at most `max_bytes` of JSON text
    /// (but always the first event).
    pub async fn relay_page(
        &self,
        tenant: &TenantId,
        after: FeedPosition,
        limit: u16,
        max_bytes: usize,
    ) -> Result<RelayPage, StoreError> {
        // The feed's own page (order, horizon and byte bound: see `feed_page`), with each
        // event's position.
        let query = FeedQuery { after, limit, event_type: None, max_bytes };
        let page = self.feed_rows(tenant, &query).await?;
        Ok(RelayPage { events: page.events, full: page.full })
    }

    /// Parks an event that can never be published into `stream` (a dead letter), with why.
    pub async fn park_relay_event(
        &self,
        stream: &str,
        tenant: &TenantId,
        event_id: EventId,
        reason: &str,
    ) -> Result<(), StoreError> {
        // Once per (stream, tenant, event): a relay that parks it again keeps the first record.
        sqlx::query!(
            "INSERT INTO relay_dead_letters (stream, tenant_id, event_id, reason)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT ON CONSTRAINT relay_dead_letters_pkey DO NOTHING",
            stream,
            tenant.as_str(),
            event_id.as_uuid(),
            reason,
        )
        .execute(&mut *self.acquire().await?)
        .await
        .map_err(classify)?;
        Ok(())
    }

    /// The tenant's events parked for `stream`, oldest first.
    pub async fn relay_parked(
        &self,
        stream: &str,
        tenant: &TenantId,
    ) -> Result<Vec<ParkedEvent>, StoreError> {
        let rows = sqlx::query!(
            "SELECT event_id, reason, parked_at
             FROM relay_dead_letters
             WHERE stream = $1 AND tenant_id = $2
             ORDER BY parked_at, event_id",
            stream,
            tenant.as_str(),
        )
        .fetch_all(&mut *self.acquire().await?)
        .await
        .map_err(classify)?;
        Ok(rows
            .into_iter()
            .map(|row| ParkedEvent {
                event_id: EventId::from_uuid(row.event_id),
                reason: row.reason,
                parked_at: row.parked_at,
            })
            .collect())
    }

    /// A connection of its own to hold a relay's claims: they last as long as it does, and end
    /// with it when the relay dies.
    pub async fn relay_claims(&self) -> Result<RelayClaims, StoreError> {
        let conn = self.acquire().await?.detach();
        Ok(RelayClaims { conn })
    }
}

/// The claims of one relay process, held on one connection.
#[derive(Debug)]
pub struct RelayClaims {
    conn: sqlx::PgConnection,
}

impl RelayClaims {
    /// Claims (stream, tenant) unless another relay holds it; `true` when this one holds it
    /// now (claiming again what it holds is `true` too).
    pub async fn claim(&mut self, stream: &str, tenant: &TenantId) -> Result<bool, StoreError> {
        // A session lock per (stream, tenant): held by one relay process while its connection
        // lives.
        sqlx::query_scalar!(
            r#"SELECT pg_try_advisory_lock(
                   hashtextextended('intake.relay/' || $1::text || '/' || $2::text, 0)
               ) AS "claimed!""#,
            stream,
            tenant.as_str(),
        )
        .fetch_one(&mut self.conn)
        .await
        .map_err(classify)
    }

    /// Whether the connection, and so every claim, still holds.
    pub async fn alive(&mut self) -> bool {
        self.conn.ping().await.is_ok()
    }
}

/// The relay's port, on the statements above.
#[async_trait]
impl RelayStore for PgStore {
    async fn tenants(&self) -> Result<Vec<TenantId>, StoreError> {
        self.relay_tenants().await
    }

    async fn position(&self, stream: &str, tenant: &TenantId) -> Result<FeedPosition, StoreError> {
        self.relay_position(stream, tenant).await
    }

    async fn save_position(
        &self,
        stream: &str,
        tenant: &TenantId,
        position: FeedPosition,
        published: &[EventId],
    ) -> Result<(), StoreError> {
        self.save_relay_position(stream, tenant, position, published).await
    }

    async fn erased_notices(
        &self,
        stream: &str,
        tenant: &TenantId,
        limit: u16,
    ) -> Result<Vec<ErasedNotice>, StoreError> {
        self.relay_erased_notices(stream, tenant, limit).await
    }

    async fn notices_sent(
        &self,
        stream: &str,
        tenant: &TenantId,
        ids: &[EventId],
    ) -> Result<(), StoreError> {
        self.relay_notices_sent(stream, tenant, ids).await
    }

    async fn lag(
        &self,
        tenant: &TenantId,
        position: FeedPosition,
        cap: i64,
    ) -> Result<i64, StoreError> {
        self.relay_lag(tenant, position, cap).await
    }

    async fn relay_page(
        &self,
        tenant: &TenantId,
        after: FeedPosition,
        limit: u16,
        max_bytes: usize,
    ) -> Result<RelayPage, StoreError> {
        PgStore::relay_page(self, tenant, after, limit, max_bytes).await
    }

    async fn claims(&self) -> Result<Box<dyn intake_domain::RelayClaims>, StoreError> {
        Ok(Box::new(self.relay_claims().await?))
    }

    async fn park(
        &self,
        stream: &str,
        tenant: &TenantId,
        event_id: EventId,
        reason: &str,
    ) -> Result<(), StoreError> {
        self.park_relay_event(stream, tenant, event_id, reason).await
    }

    async fn parked(
        &self,
        stream: &str,
        tenant: &TenantId,
    ) -> Result<Vec<ParkedEvent>, StoreError> {
        self.relay_parked(stream, tenant).await
    }
}

/// The port's claims: session locks on this connection.
#[async_trait]
impl intake_domain::RelayClaims for RelayClaims {
    async fn claim(&mut self, stream: &str, tenant: &TenantId) -> Result<bool, StoreError> {
        RelayClaims::claim(self, stream, tenant).await
    }

    async fn alive(&mut self) -> bool {
        RelayClaims::alive(self).await
    }
}
