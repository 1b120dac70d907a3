//! What `intake relay` keeps in PostgreSQL: which tenants have events, how far each tenant's
//! feed was published into each stream, and which relay process owns which (stream, tenant).

use anyhow::anyhow;
use async_trait::async_trait;
use intake_domain::{
    EventId, EventStore, FeedPosition, FeedQuery, ParkedEvent, RelayPage, RelayStore, StoreError,
    TenantId,
};
use sqlx::Connection;

use crate::errors::classify;
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
               SELECT tenant_id AS "tenant_id!" FROM t WHERE tenant_id IS NOT NULL"#
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
    ) -> Result<(), StoreError> {
        // Moves a position forward, never back (a relay that lost its claim may still finish a
        // page).
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
        .execute(&mut *self.acquire().await?)
        .await
        .map_err(classify)?;
        Ok(())
    }

    /// The tenant's events after `position`, counted up to `cap`.
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
        // First the page's positions, then the events themselves as the feed reads them, matched
        // up by id. The positions: a walk of `events_feed_idx` one row at a time (the feed's
        // order and horizon: see `feed_page`), adding up each row's size, that stops at `limit`
        // rows or at the first row that would take the page past `max_bytes`, so that a page of
        // large events never reads more than one row beyond what it holds. That row comes back
        // too, marked as not fitting: more is waiting. Rows below the horizon are final, so the
        // feed then hands out the same rows, unless some were removed in between (retention,
        // erasure): the page ends before the first that differs.
        let max_bytes = i64::try_from(max_bytes).unwrap_or(i64::MAX);
        let rows = sqlx::query!(
            r#"WITH RECURSIVE page (tx_id, seq, event_id, bytes, n, fits) AS (
                   (SELECT e.tx_id, e.seq, e.event_id,
                           octet_length(e.data::text)::bigint
                             + coalesce(octet_length(e.cloudevent::text), 0),
                           1, true
                    FROM events e
                    WHERE e.tenant_id = $1
                      AND (e.tx_id, e.seq) > ($2::text::xid8, $3)
                      AND e.tx_id < pg_snapshot_xmin(pg_current_snapshot())
                    ORDER BY e.tx_id, e.seq
                    LIMIT 1)
                   UNION ALL
                   SELECT nx.tx_id, nx.seq, nx.event_id, page.bytes + nx.size, page.n + 1,
                          page.bytes + nx.size <= $5
                   FROM page, LATERAL (
                       SELECT e.tx_id, e.seq, e.event_id,
                              octet_length(e.data::text)::bigint
                                + coalesce(octet_length(e.cloudevent::text), 0) AS size
                       FROM events e
                       WHERE e.tenant_id = $1
                         AND (e.tx_id, e.seq) > (page.tx_id, page.seq)
                         AND e.tx_id < pg_snapshot_xmin(pg_current_snapshot())
                       ORDER BY e.tx_id, e.seq
                       LIMIT 1
                   ) AS nx
                   WHERE page.fits AND page.n < $4
               )
               SELECT event_id AS "event_id!", tx_id::text AS "tx_text!", seq AS "seq!",
                      fits AS "fits!"
               FROM page
               ORDER BY n"#,
            tenant.as_str(),
            after.tx.to_string(),
            after.seq,
            i32::from(limit),
            max_bytes,
        )
        .fetch_all(&mut *self.acquire().await?)
        .await
        .map_err(classify)?;
        let fitting = rows.iter().take_while(|row| row.fits).count();
        let full = fitting < rows.len() || fitting >= usize::from(limit);
        let Ok(count) = u16::try_from(fitting) else {
            return Err(StoreError::Unknown(anyhow!("a page of {fitting} rows")));
        };
        if count == 0 {
            return Ok(RelayPage { events: Vec::new(), full });
        }
        let query = FeedQuery { after, limit: count, event_type: None, max_bytes: usize::MAX };
        let page = EventStore::feed_page(self, tenant, &query).await?;
        let mut events = Vec::with_capacity(page.events.len());
        for (row, event) in rows.into_iter().zip(page.events) {
            if event.event_id.as_uuid() != row.event_id {
                break;
            }
            let tx = row.tx_text.parse().map_err(|e| {
                StoreError::Unknown(anyhow!(
                    "tx_id {:?} of event {}: {e}",
                    row.tx_text,
                    row.event_id
                ))
            })?;
            events.push((FeedPosition { tx, seq: row.seq }, event));
        }
        Ok(RelayPage { events, full })
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
    ) -> Result<(), StoreError> {
        self.save_relay_position(stream, tenant, position).await
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
