//! Storing events exactly once, and reading them back.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::anyhow;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use intake_domain::{
    BatchOutcome, EventId, EventStore, FeedPage, FeedPosition, FeedQuery, Fingerprint,
    IdempotencyKey, IngestError, Ingested, KeyHolder, NewEvent, StoreError, StoredEvent, TenantId,
};
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
                        fingerprint, schema_version, cloudevent)
    VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9::jsonb)
    ON CONFLICT ON CONSTRAINT events_tenant_idempotency_key_unique DO NOTHING
    RETURNING tenant_id, idempotency_key, event_id, received_at, fingerprint
)
SELECT tenant_id, idempotency_key, event_id, received_at, fingerprint, true AS inserted
FROM inserted
UNION ALL
SELECT tenant_id, idempotency_key, event_id, received_at, fingerprint, false AS inserted
FROM events
WHERE tenant_id = $2 AND idempotency_key = $3 AND NOT EXISTS (SELECT 1 FROM inserted)
"#;

/// Inserts many events, of one tenant or several, in one statement, skipping keys already held,
/// and returns the rows it inserted. The (tenant, key) pairs are distinct: the caller folds
/// repeats.
///
/// Rows are inserted in (tenant, key) order, so that any two of these statements take their
/// row locks in one global order and cannot deadlock on each other. Each row's `seq` is drawn
/// in the order the items were given (volatile functions are evaluated after the `ORDER BY`),
/// so the feed, which orders a transaction's rows by `seq`, keeps request order.
const INGEST_MANY: &str = r#"
WITH item AS (
    SELECT u.*, nextval('events_seq_seq'::regclass) AS seq
    FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::timestamptz[], $6::text[],
                $7::bytea[], $8::int4[], $9::text[])
         WITH ORDINALITY AS u(tenant_id, event_id, idempotency_key, event_type, occurred_at, data,
                              fingerprint, schema_version, cloudevent, ord)
    ORDER BY ord
)
INSERT INTO events (seq, event_id, tenant_id, idempotency_key, event_type, occurred_at, data,
                    fingerprint, schema_version, cloudevent)
OVERRIDING SYSTEM VALUE
SELECT seq, event_id, tenant_id, idempotency_key, event_type, occurred_at, data::jsonb,
       fingerprint, schema_version, cloudevent::jsonb
FROM item
ORDER BY tenant_id, idempotency_key
ON CONFLICT ON CONSTRAINT events_tenant_idempotency_key_unique DO NOTHING
RETURNING tenant_id, idempotency_key, event_id, received_at, fingerprint
"#;

/// The rows holding some (tenant, key) pairs: read after [`INGEST_MANY`] for the pairs it
/// skipped. A separate statement, so its snapshot includes rows that concurrent writers
/// committed while the insert waited on them.
const KEY_HOLDERS: &str = r#"
SELECT e.tenant_id, e.idempotency_key, e.event_id, e.received_at, e.fingerprint
FROM unnest($1::text[], $2::text[]) AS k(tenant_id, idempotency_key)
JOIN events e ON e.tenant_id = k.tenant_id AND e.idempotency_key = k.idempotency_key
"#;

fn is_deadlock(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("40P01"))
}

/// The row that holds a key, as [`INGEST`], [`INGEST_MANY`] and [`KEY_HOLDERS`] return it.
/// Columns are matched by name, so a statement that renames or drops one fails its tests
/// rather than filling the wrong field.
#[derive(Debug, sqlx::FromRow)]
struct HolderRow {
    tenant_id: String,
    idempotency_key: String,
    event_id: Uuid,
    received_at: DateTime<Utc>,
    fingerprint: Vec<u8>,
}

impl HolderRow {
    fn holder(&self) -> Result<KeyHolder, StoreError> {
        let fingerprint = Fingerprint::from_slice(&self.fingerprint)
            .ok_or_else(|| StoreError::Unknown(anyhow!("stored fingerprint is not 32 bytes")))?;
        Ok(KeyHolder {
            event_id: EventId::from_uuid(self.event_id),
            received_at: self.received_at,
            fingerprint,
        })
    }
}

/// What [`INGEST`] returns: the row holding the key, and whether this statement inserted it.
#[derive(Debug, sqlx::FromRow)]
struct IngestRow {
    #[sqlx(flatten)]
    holder: HolderRow,
    inserted: bool,
}

/// The event holding one key of one tenant.
const KEY_HOLDER: &str = r#"
SELECT tenant_id, idempotency_key, event_id, received_at, fingerprint
FROM events
WHERE tenant_id = $1 AND idempotency_key = $2
"#;

/// One event of one tenant, by id (the primary key).
const GET: &str = r#"
SELECT event_id, event_type, occurred_at, received_at, idempotency_key, data, schema_version,
       cloudevent, tx_id::text AS tx_text, seq
FROM events
WHERE event_id = $1 AND tenant_id = $2
"#;

/// A page of a tenant's feed, in (tx_id, seq) order, after the cursor. (`ORDER BY` names the
/// table's columns: a bare `tx_id` could be taken for a text alias and sort '10' before '9'.)
///
/// Why not `WHERE seq > $cursor`: `seq` is drawn when a row is inserted, not when it commits.
/// A writer can draw seq 7, stall, and commit after another writer's seq 8 has been read; a
/// reader that moved its cursor to 8 would never see 7. Instead, every row carries the id of
/// the transaction that wrote it (`tx_id`), and a page only includes rows whose transaction is
/// older than the oldest transaction still running (`pg_snapshot_xmin` of this statement's
/// snapshot). Every transaction below that horizon has finished, so its rows are all visible
/// now and no row can ever appear below it later: the ids still running, and any assigned from
/// now on, are all at or above it. Ordering by (tx_id, seq) is therefore final for every row
/// handed out, and a cursor at the last row handed out misses nothing and repeats nothing.
///
/// The price: a row becomes visible in the feed only once every transaction older than its own
/// has ended, so one long-running write transaction in the database delays the feed (not the
/// ingest) until it ends. intake's own writes are single statements.
macro_rules! feed_sql {
    ($type_filter:literal) => {
        concat!(
            "SELECT event_id, event_type, occurred_at, received_at, idempotency_key, data,
                    schema_version, cloudevent, tx_id::text AS tx_text, seq
             FROM events
             WHERE tenant_id = $1
               AND (tx_id, seq) > ($2::text::xid8, $3)
               AND tx_id < pg_snapshot_xmin(pg_current_snapshot())",
            $type_filter,
            "
             ORDER BY events.tx_id, events.seq
             LIMIT $4"
        )
    };
}

/// The whole feed (index `events_feed_idx`).
const FEED: &str = feed_sql!("");
/// The feed of one event type (index `events_feed_by_type_idx`). A separate statement, since a
/// prepared `($5 IS NULL OR event_type = $5)` gets a generic plan that filters instead of
/// seeking.
const FEED_OF_TYPE: &str = feed_sql!(" AND event_type = $5");

/// An event as [`GET`] and the feed read it, with its feed position.
#[derive(Debug, sqlx::FromRow)]
struct EventRow {
    event_id: Uuid,
    event_type: String,
    occurred_at: DateTime<Utc>,
    received_at: DateTime<Utc>,
    idempotency_key: String,
    data: sqlx::types::Json<serde_json::Value>,
    schema_version: Option<i32>,
    cloudevent: Option<sqlx::types::Json<serde_json::Value>>,
    /// `tx_id` as text: sqlx has no type for `xid8`.
    tx_text: String,
    seq: i64,
}

impl EventRow {
    fn into_event(self) -> Result<(FeedPosition, StoredEvent), StoreError> {
        let tx = self.tx_text.parse::<u64>().map_err(|e| {
            StoreError::Unknown(anyhow!("tx_id {:?} of event {}: {e}", self.tx_text, self.event_id))
        })?;
        let event = StoredEvent {
            event_id: EventId::from_uuid(self.event_id),
            event_type: self.event_type,
            occurred_at: self.occurred_at,
            received_at: self.received_at,
            idempotency_key: self.idempotency_key,
            data: self.data.0,
            schema_version: self.schema_version.and_then(|v| u32::try_from(v).ok()),
            cloudevent: self.cloudevent.map(|c| c.0),
        };
        Ok((FeedPosition { tx, seq: self.seq }, event))
    }
}

/// A schema version as its column holds it (versions stay far below `i32::MAX`).
fn version_column(version: u32) -> i32 {
    i32::try_from(version).unwrap_or(i32::MAX)
}

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
        self.ingest_on(&mut *self.acquire().await?, tenant, event, new_id).await
    }

    async fn ingest_batch(
        &self,
        tenant: &TenantId,
        events: &[(NewEvent, EventId)],
    ) -> Result<Vec<BatchOutcome>, StoreError> {
        let items: Vec<IngestItem<'_>> =
            events.iter().map(|(event, id)| IngestItem { tenant, event, id: *id }).collect();
        self.ingest_many(&items).await
    }

    async fn key_holder(
        &self,
        tenant: &TenantId,
        key: &IdempotencyKey,
    ) -> Result<Option<KeyHolder>, StoreError> {
        let row: Option<HolderRow> = sqlx::query_as(KEY_HOLDER)
            .bind(tenant.as_str())
            .bind(key.as_str())
            .fetch_optional(&mut *self.acquire().await?)
            .await
            .map_err(classify)?;
        row.map(|row| row.holder()).transpose()
    }

    async fn get(&self, tenant: &TenantId, id: EventId) -> Result<Option<StoredEvent>, StoreError> {
        let row: Option<EventRow> = sqlx::query_as(GET)
            .bind(id.as_uuid())
            .bind(tenant.as_str())
            .fetch_optional(&mut *self.acquire().await?)
            .await
            .map_err(classify)?;
        Ok(row.map(EventRow::into_event).transpose()?.map(|(_, event)| event))
    }

    async fn feed_page(
        &self,
        tenant: &TenantId,
        query: &FeedQuery,
    ) -> Result<FeedPage, StoreError> {
        let sql = if query.event_type.is_some() { FEED_OF_TYPE } else { FEED };
        let mut statement = sqlx::query_as(sql)
            .bind(tenant.as_str())
            .bind(query.after.tx.to_string())
            .bind(query.after.seq)
            .bind(i64::from(query.limit));
        if let Some(event_type) = &query.event_type {
            statement = statement.bind(event_type.as_str());
        }
        let rows: Vec<EventRow> =
            statement.fetch_all(&mut *self.acquire().await?).await.map_err(classify)?;
        let mut next = query.after;
        let mut events = Vec::with_capacity(rows.len());
        for row in rows {
            let (position, event) = row.into_event()?;
            next = position;
            events.push(event);
        }
        Ok(FeedPage { events, next })
    }
}

/// One event to store through [`PgStore::ingest_many`].
#[derive(Debug, Clone, Copy)]
pub struct IngestItem<'a> {
    /// Whose event it is.
    pub tenant: &'a TenantId,
    /// The event.
    pub event: &'a NewEvent,
    /// Its id, should it be new.
    pub id: EventId,
}

impl IngestItem<'_> {
    fn key(&self) -> (&str, &str) {
        (self.tenant.as_str(), self.event.idempotency_key().as_str())
    }
}

impl PgStore {
    /// Stores many events, of one tenant or several, each as [`EventStore::ingest`] would, in
    /// one insert and at most one read of the keys it skipped; outcomes come back in the order
    /// of `items`. An item whose (tenant, key) an earlier item used behaves as a retry of it.
    /// Only a failure of storage itself fails the whole call.
    pub async fn ingest_many(
        &self,
        items: &[IngestItem<'_>],
    ) -> Result<Vec<BatchOutcome>, StoreError> {
        self.ingest_many_on(&mut *self.acquire().await?, items).await
    }
}

impl PgStore {
    /// [`EventStore::ingest`] on a connection the caller holds.
    pub(crate) async fn ingest_on(
        &self,
        conn: &mut sqlx::PgConnection,
        tenant: &TenantId,
        event: &NewEvent,
        new_id: EventId,
    ) -> Result<Ingested, IngestError> {
        for _ in 0..INGEST_ATTEMPTS {
            let row: Option<IngestRow> = sqlx::query_as(INGEST)
                .bind(new_id.as_uuid())
                .bind(tenant.as_str())
                .bind(event.idempotency_key().as_str())
                .bind(event.event_type().as_str())
                .bind(event.occurred_at().as_utc())
                .bind(event.data().canonical_json())
                .bind(&event.fingerprint().as_bytes()[..])
                .bind(event.schema_version().map(version_column))
                .bind(event.context().map(|c| c.to_string()))
                .fetch_optional(&mut *conn)
                .await
                .map_err(classify)?;
            let Some(row) = row else {
                continue;
            };
            return row.holder.holder()?.outcome_for(event, row.inserted).into_result();
        }
        Err(IngestError::Unknown(anyhow!(
            "no row holds the key after {INGEST_ATTEMPTS} attempts to insert it"
        )))
    }

    /// [`PgStore::ingest_many`] on a connection the caller holds.
    pub(crate) async fn ingest_many_on(
        &self,
        conn: &mut sqlx::PgConnection,
        items: &[IngestItem<'_>],
    ) -> Result<Vec<BatchOutcome>, StoreError> {
        // The first item with each (tenant, key) is the one to insert; later ones are its
        // retries.
        let mut first_of_key: HashMap<(&str, &str), usize> = HashMap::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            first_of_key.entry(item.key()).or_insert(i);
        }
        let mut pending: Vec<usize> = first_of_key.values().copied().collect();
        pending.sort_unstable();

        // The holder of each first item's key, and whether this call inserted it.
        let mut holders: Vec<Option<(KeyHolder, bool)>> = vec![None; items.len()];
        let record = |holders: &mut Vec<Option<(KeyHolder, bool)>>,
                      row: HolderRow,
                      inserted: bool|
         -> Result<(), StoreError> {
            let first =
                first_of_key
                    .get(&(row.tenant_id.as_str(), row.idempotency_key.as_str()))
                    .ok_or_else(|| StoreError::Unknown(anyhow!("a row for a key not asked for")))?;
            holders[*first] = Some((row.holder()?, inserted));
            Ok(())
        };
        for _ in 0..INGEST_ATTEMPTS {
            if pending.is_empty() {
                break;
            }
            let batch: Vec<&IngestItem<'_>> = pending.iter().map(|&i| &items[i]).collect();
            let inserted: Result<Vec<HolderRow>, sqlx::Error> = sqlx::query_as(INGEST_MANY)
                .bind(batch.iter().map(|i| i.tenant.as_str()).collect::<Vec<_>>())
                .bind(batch.iter().map(|i| i.id.as_uuid()).collect::<Vec<_>>())
                .bind(batch.iter().map(|i| i.event.idempotency_key().as_str()).collect::<Vec<_>>())
                .bind(batch.iter().map(|i| i.event.event_type().as_str()).collect::<Vec<_>>())
                .bind(batch.iter().map(|i| i.event.occurred_at().as_utc()).collect::<Vec<_>>())
                .bind(batch.iter().map(|i| i.event.data().canonical_json()).collect::<Vec<_>>())
                .bind(
                    batch.iter().map(|i| &i.event.fingerprint().as_bytes()[..]).collect::<Vec<_>>(),
                )
                .bind(
                    batch
                        .iter()
                        .map(|i| i.event.schema_version().map(version_column))
                        .collect::<Vec<_>>(),
                )
                .bind(
                    batch
                        .iter()
                        .map(|i| i.event.context().map(|c| c.to_string()))
                        .collect::<Vec<_>>(),
                )
                .fetch_all(&mut *conn)
                .await;
            // Statements of this kind lock rows in one order, but a single-event insert or
            // another writer of the database may not: when PostgreSQL aborts this statement as
            // a deadlock, it did nothing, and it is run again.
            let inserted = match inserted {
                Err(e) if is_deadlock(&e) => {
                    self.deadlocks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(
                        "an ingest statement was chosen as a deadlock victim; running it again"
                    );
                    // Jittered, so that two victims do not meet again at once.
                    tokio::time::sleep(Duration::from_millis(fastrand::u64(1..=20))).await;
                    continue;
                }
                other => other.map_err(classify)?,
            };
            for row in inserted {
                record(&mut holders, row, true)?;
            }
            let skipped: Vec<&IngestItem<'_>> =
                pending.iter().filter(|&&i| holders[i].is_none()).map(|&i| &items[i]).collect();
            if !skipped.is_empty() {
                let rows: Vec<HolderRow> = sqlx::query_as(KEY_HOLDERS)
                    .bind(skipped.iter().map(|i| i.tenant.as_str()).collect::<Vec<_>>())
                    .bind(
                        skipped
                            .iter()
                            .map(|i| i.event.idempotency_key().as_str())
                            .collect::<Vec<_>>(),
                    )
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(classify)?;
                for row in rows {
                    record(&mut holders, row, false)?;
                }
            }
            pending.retain(|&i| holders[i].is_none());
        }
        if !pending.is_empty() {
            return Err(StoreError::Unknown(anyhow!(
                "{} keys have no row after {INGEST_ATTEMPTS} attempts to insert them",
                pending.len()
            )));
        }

        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let first = first_of_key.get(&item.key()).copied().unwrap_or(i);
                let (holder, inserted_now) = holders[first]
                    .as_ref()
                    .ok_or_else(|| StoreError::Unknown(anyhow!("no holder for a key")))?;
                // Only the first item with a key can have created its row.
                let created = *inserted_now && first == i;
                Ok(holder.outcome_for(item.event, created))
            })
            .collect()
    }
}
