//! Storing events exactly once.

use anyhow::anyhow;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use intake_domain::{EventId, EventStore, Fingerprint, IngestError, Ingested, NewEvent, TenantId};
use uuid::Uuid;

use crate::errors::classify;
use crate::PgStore;

/// Inserts the event unless its tenant already has the key, and in either case returns the
/// row that holds the key. `ON CONFLICT DO NOTHING` waits for a concurrent insert of the same
/// key to commit and then skips, so exactly one row ever exists per key.
///
/// Under READ COMMITTED, when the conflicting row was committed after this statement took its
/// snapshot, the second half cannot see it and the statement returns no row; the caller then
/// runs it again with a fresh snapshot, which does.
const INGEST: &str = r#"
WITH inserted AS (
    INSERT INTO events (event_id, tenant_id, idempotency_key, event_type, occurred_at, data,
                        fingerprint)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
    ON CONFLICT ON CONSTRAINT events_tenant_idempotency_key_unique DO NOTHING
    RETURNING event_id, received_at, fingerprint
)
SELECT event_id, received_at, fingerprint, true AS inserted FROM inserted
UNION ALL
SELECT event_id, received_at, fingerprint, false AS inserted
FROM events
WHERE tenant_id = $2 AND idempotency_key = $3 AND NOT EXISTS (SELECT 1 FROM inserted)
"#;

/// How often the statement is tried when a concurrent writer's row is not yet in its snapshot.
/// One retry suffices in practice (the conflicting row is committed by then); the bound only
/// guards against a loop on a state that should not exist.
const INGEST_ATTEMPTS: usize = 5;

#[async_trait]
impl EventStore for PgStore {
    async fn ingest(
        &self,
        tenant: &TenantId,
        event: &NewEvent,
        new_id: EventId,
    ) -> Result<Ingested, IngestError> {
        for _ in 0..INGEST_ATTEMPTS {
            let row: Option<(Uuid, DateTime<Utc>, Vec<u8>, bool)> = sqlx::query_as(INGEST)
                .bind(new_id.as_uuid())
                .bind(tenant.as_str())
                .bind(event.idempotency_key().as_str())
                .bind(event.event_type().as_str())
                .bind(event.occurred_at().as_utc())
                .bind(sqlx::types::Json(event.data().as_map()))
                .bind(&event.fingerprint().as_bytes()[..])
                .fetch_optional(&self.pool)
                .await
                .map_err(classify)?;
            let Some((event_id, received_at, fingerprint, inserted)) = row else {
                continue;
            };
            let event_id = EventId::from_uuid(event_id);
            let stored = Fingerprint::from_slice(&fingerprint).ok_or_else(|| {
                IngestError::Unknown(anyhow!("stored fingerprint is not 32 bytes"))
            })?;
            if !inserted && &stored != event.fingerprint() {
                return Err(IngestError::KeyReused { original: event_id });
            }
            return Ok(Ingested {
                event_id,
                received_at,
                deduplicated: !inserted,
            });
        }
        Err(IngestError::Unknown(anyhow!(
            "no row holds the key after {INGEST_ATTEMPTS} attempts to insert it"
        )))
    }
}
