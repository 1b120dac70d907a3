//! Storing events exactly once, and reading them back.
//!
//! Every statement is checked against the schema when the crate is built (`sqlx::query!` and
//! kin, with the offline data in `.sqlx/`). Columns whose nullability PostgreSQL cannot tell
//! (those of a `UNION`, a cast, a `RETURNING` of a CTE) carry sqlx's `"name!"` override: the
//! statements guarantee them non-null.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::anyhow;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use intake_domain::{
    BatchOutcome, EventId, EventStore, FeedPage, FeedPosition, FeedQuery, Fingerprint,
    IdempotencyKey, IngestError, Ingested, KeyHolder, NewEvent, StoreError, StoredEvent, TenantId,
};
use serde_json::Value;
use sqlx::Connection;
use uuid::Uuid;

use crate::errors::classify;
use crate::PgStore;

fn is_deadlock(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("40P01"))
}

/// A row routed to the default partition while maintenance attached the range it belongs to:
/// the statement saw the partitions as they were before the attach. Run again, it sees the new
/// partition. (Ranges are attached before any of their events can exist, so only an id from a
/// clock far ahead can meet this.)
fn raced_an_attach(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db)
        if db.code().as_deref() == Some("23514") && db.table() == Some("events_default"))
}

/// The event that holds a key, from its row.
fn holder_of(
    event_id: Uuid,
    received_at: DateTime<Utc>,
    fingerprint: &[u8],
) -> Result<KeyHolder, StoreError> {
    let fingerprint = Fingerprint::from_slice(fingerprint)
        .ok_or_else(|| StoreError::Unknown(anyhow!("stored fingerprint is not 32 bytes")))?;
    Ok(KeyHolder { event_id: EventId::from_uuid(event_id), received_at, fingerprint })
}

/// The row that holds a key, as the batch insert and the read of the keys it skipped return
/// it. `query_as!` fills the fields by column name, so a statement that renames or drops one
/// does not compile.
#[derive(Debug)]
struct HolderRow {
    tenant_id: String,
    idempotency_key: String,
    event_id: Uuid,
    received_at: DateTime<Utc>,
    fingerprint: Vec<u8>,
}

impl HolderRow {
    fn holder(&self) -> Result<KeyHolder, StoreError> {
        holder_of(self.event_id, self.received_at, &self.fingerprint)
    }
}

/// An event as [`EventStore::get`] and the feed read it, with its feed position.
#[derive(Debug)]
struct EventRow {
    event_id: Uuid,
    event_type: String,
    occurred_at: DateTime<Utc>,
    received_at: DateTime<Utc>,
    idempotency_key: String,
    data: Value,
    schema_version: Option<i32>,
    cloudevent: Option<Value>,
    occurred_at_reported: Option<DateTime<Utc>>,
    sent_at: Option<DateTime<Utc>>,
    /// `tx_id` as text: sqlx has no type for `xid8`.
    tx_text: String,
    seq: i64,
}

/// An event as the feed reads it: an [`EventRow`], and how many events the page's walk of the
/// index found before the byte bound cut it (the same on every row).
#[derive(Debug)]
struct FeedRow {
    event_id: Uuid,
    event_type: String,
    occurred_at: DateTime<Utc>,
    received_at: DateTime<Utc>,
    idempotency_key: String,
    data: Value,
    schema_version: Option<i32>,
    cloudevent: Option<Value>,
    occurred_at_reported: Option<DateTime<Utc>>,
    sent_at: Option<DateTime<Utc>>,
    tx_text: String,
    seq: i64,
    candidates: i64,
}

impl From<FeedRow> for EventRow {
    fn from(row: FeedRow) -> Self {
        Self {
            event_id: row.event_id,
            event_type: row.event_type,
            occurred_at: row.occurred_at,
            received_at: row.received_at,
            idempotency_key: row.idempotency_key,
            data: row.data,
            schema_version: row.schema_version,
            cloudevent: row.cloudevent,
            occurred_at_reported: row.occurred_at_reported,
            sent_at: row.sent_at,
            tx_text: row.tx_text,
            seq: row.seq,
        }
    }
}

/// A page of the feed with each event's position, and whether the walk found more than the
/// page holds (it stopped at its limit or its byte bound: more may be waiting).
pub(crate) struct FeedRows {
    pub(crate) events: Vec<(FeedPosition, StoredEvent)>,
    pub(crate) full: bool,
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
            data: self.data,
            schema_version: self.schema_version.and_then(|v| u32::try_from(v).ok()),
            cloudevent: self.cloudevent,
            correction: self.occurred_at_reported.zip(self.sent_at),
        };
        Ok((FeedPosition { tx, seq: self.seq }, event))
    }
}

/// The advisory lock (two-key form: class, object) that ingest transactions hold shared and a
/// key rotation takes exclusively.
pub(crate) const KEY_GENERATION_LOCK: (i32, i32) = (0x696e_746b, 1);

/// Holds the current key generation for the rest of the transaction: a rotation waits until
/// the transaction has ended, and the statements after this one see every key written into
/// earlier generations (they were all committed before the rotation that made the current one).
/// Taken before the insert, in a statement of its own, so that the insert's snapshot is taken
/// after it.
pub(crate) async fn hold_key_generation(conn: &mut sqlx::PgConnection) -> Result<(), StoreError> {
    sqlx::query!(
        "SELECT pg_advisory_xact_lock_shared($1, $2)",
        KEY_GENERATION_LOCK.0,
        KEY_GENERATION_LOCK.1
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(classify)?;
    Ok(())
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
        // The event holding one key of one tenant, within the keys window (the key outlives
        // its event: expired or erased, a replay still answers with its id). A key lives in
        // one generation at a time; the oldest is the holder, should that ever not hold.
        let row = sqlx::query!(
            "SELECT event_id, received_at, fingerprint
             FROM event_keys
             WHERE tenant_id = $1 AND idempotency_key = $2
             ORDER BY generation
             LIMIT 1",
            tenant.as_str(),
            key.as_str(),
        )
        .fetch_optional(&mut *self.acquire().await?)
        .await
        .map_err(classify)?;
        row.map(|row| holder_of(row.event_id, row.received_at, &row.fingerprint)).transpose()
    }

    async fn get(&self, tenant: &TenantId, id: EventId) -> Result<Option<StoredEvent>, StoreError> {
        // One event of one tenant, by id (the primary key).
        let row = sqlx::query_as!(
            EventRow,
            r#"SELECT event_id, event_type, occurred_at, received_at, idempotency_key, data,
                      schema_version, cloudevent, occurred_at_reported, sent_at,
                      tx_id::text AS "tx_text!", seq
               FROM events
               WHERE event_id = $1 AND tenant_id = $2"#,
            id.as_uuid(),
            tenant.as_str(),
        )
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
        let rows = self.feed_rows(tenant, query).await?;
        let next = rows.events.last().map_or(query.after, |(position, _)| *position);
        Ok(FeedPage { events: rows.events.into_iter().map(|(_, event)| event).collect(), next })
    }
}

impl PgStore {
    /// A page of the feed with each event's position: what [`EventStore::feed_page`] and the
    /// relay read.
    pub(crate) async fn feed_rows(
        &self,
        tenant: &TenantId,
        query: &FeedQuery,
    ) -> Result<FeedRows, StoreError> {
        // A page of a tenant's feed, in (tx_id, seq) order, after the cursor. (`ORDER BY` names
        // the table's columns: a bare `tx_id` could be taken for a text alias and sort '10'
        // before '9'.)
        //
        // Why not `WHERE seq > $cursor`: `seq` is drawn when a row is inserted, not when it
        // commits. A writer can draw seq 7, stall, and commit after another writer's seq 8 has
        // been read; a reader that moved its cursor to 8 would never see 7. Instead, every row
        // carries the id of the transaction that wrote it (`tx_id`), and a page only includes
        // rows whose transaction is older than the oldest transaction still running
        // (`pg_snapshot_xmin` of this statement's snapshot). Every transaction below that
        // horizon has finished, so its rows are all visible now and no row can ever appear below
        // it later: the ids still running, and any assigned from now on, are all at or above it.
        // Ordering by (tx_id, seq) is therefore final for every row handed out, and a cursor at
        // the last row handed out misses nothing and repeats nothing.
        //
        // The price: a row becomes visible in the feed only once every transaction older than
        // its own has ended, so one long-running write transaction in the database delays the
        // feed (not the ingest) until it ends. intake's own writes are single statements.
        //
        // A page also ends before the first event that would take its events' data and context
        // past `max_bytes` (it always holds one): a running sum over the candidates, so that no
        // page is larger than asked, whatever the events weigh.
        //
        // Two statements that differ only in the event type condition, each with an index of its
        // own (`events_feed_idx`, `events_feed_by_type_idx`): a prepared
        // `($5 IS NULL OR event_type = $5)` gets a generic plan that filters instead of seeking.
        let after_tx = query.after.tx.to_string();
        let limit = i64::from(query.limit);
        let max_bytes = i64::try_from(query.max_bytes).unwrap_or(i64::MAX);
        let mut conn = self.acquire().await?;
        let rows = match &query.event_type {
            None => {
                sqlx::query_as!(
                    FeedRow,
                    r#"SELECT event_id AS "event_id!", event_type AS "event_type!",
                            occurred_at AS "occurred_at!", received_at AS "received_at!",
                            idempotency_key AS "idempotency_key!", data AS "data!",
                            schema_version, cloudevent, occurred_at_reported, sent_at,
                            tx_text AS "tx_text!", seq AS "seq!", candidates AS "candidates!"
                     FROM (
                         SELECT *, tx_id::text AS tx_text,
                                row_number() OVER page AS n,
                                count(*) OVER () AS candidates,
                                sum(octet_length(data::text)
                                    + coalesce(octet_length(cloudevent::text), 0)) OVER page
                                    AS bytes
                         FROM (
                             SELECT * FROM events
                             WHERE tenant_id = $1
                               AND (tx_id, seq) > ($2::text::xid8, $3)
                               AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
                             ORDER BY events.tx_id, events.seq
                             LIMIT $4
                         ) AS candidates
                         WINDOW page AS (ORDER BY candidates.tx_id, candidates.seq)
                     ) AS sized
                     WHERE n = 1 OR bytes <= $5
                     ORDER BY n"#,
                    tenant.as_str(),
                    after_tx,
                    query.after.seq,
                    limit,
                    max_bytes,
                )
                .fetch_all(&mut *conn)
                .await
            }
            Some(event_type) => {
                sqlx::query_as!(
                    FeedRow,
                    r#"SELECT event_id AS "event_id!", event_type AS "event_type!",
                            occurred_at AS "occurred_at!", received_at AS "received_at!",
                            idempotency_key AS "idempotency_key!", data AS "data!",
                            schema_version, cloudevent, occurred_at_reported, sent_at,
                            tx_text AS "tx_text!", seq AS "seq!", candidates AS "candidates!"
                     FROM (
                         SELECT *, tx_id::text AS tx_text,
                                row_number() OVER page AS n,
                                count(*) OVER () AS candidates,
                                sum(octet_length(data::text)
                                    + coalesce(octet_length(cloudevent::text), 0)) OVER page
                                    AS bytes
                         FROM (
                             SELECT * FROM events
                             WHERE tenant_id = $1
                               AND (tx_id, seq) > ($2::text::xid8, $3)
                               AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
                               AND event_type = $5
                             ORDER BY events.tx_id, events.seq
                             LIMIT $4
                         ) AS candidates
                         WINDOW page AS (ORDER BY candidates.tx_id, candidates.seq)
                     ) AS sized
                     WHERE n = 1 OR bytes <= $6
                     ORDER BY n"#,
                    tenant.as_str(),
                    after_tx,
                    query.after.seq,
                    limit,
                    event_type.as_str(),
                    max_bytes,
                )
                .fetch_all(&mut *conn)
                .await
            }
        }
        .map_err(classify)?;
        let candidates = rows.first().map_or(0, |row| row.candidates);
        let full =
            i64::try_from(rows.len()).unwrap_or(i64::MAX) < candidates || candidates >= limit;
        let events = rows
            .into_iter()
            .map(|row| EventRow::from(row).into_event())
            .collect::<Result<_, _>>()?;
        Ok(FeedRows { events, full })
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
        let item = IngestItem { tenant, event, id: new_id };
        let mut outcomes = self.ingest_many_on(conn, &[item]).await?;
        outcomes
            .pop()
            .ok_or_else(|| IngestError::Unknown(anyhow!("no outcome for the event")))?
            .into_result()
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
            let tenants: Vec<&str> = batch.iter().map(|i| i.tenant.as_str()).collect();
            let ids: Vec<Uuid> = batch.iter().map(|i| i.id.as_uuid()).collect();
            let keys: Vec<&str> =
                batch.iter().map(|i| i.event.idempotency_key().as_str()).collect();
            let types: Vec<&str> = batch.iter().map(|i| i.event.event_type().as_str()).collect();
            let occurred: Vec<DateTime<Utc>> =
                batch.iter().map(|i| i.event.occurred_at().as_utc()).collect();
            let data: Vec<&str> = batch.iter().map(|i| i.event.data().stored_json()).collect();
            let fingerprints: Vec<&[u8]> =
                batch.iter().map(|i| &i.event.fingerprint().as_bytes()[..]).collect();
            let versions: Vec<Option<i32>> =
                batch.iter().map(|i| i.event.schema_version().map(version_column)).collect();
            let contexts: Vec<Option<String>> = batch
                .iter()
                .map(|i| i.event.context().map(intake_domain::event::stored_text))
                .collect();
            let reported: Vec<Option<DateTime<Utc>>> =
                batch.iter().map(|i| i.event.correction().map(|c| c.reported.as_utc())).collect();
            let sent: Vec<Option<DateTime<Utc>>> =
                batch.iter().map(|i| i.event.correction().map(|c| c.sent_at)).collect();
            // Inserts many events, of one tenant or several, in one statement, skipping keys
            // already held, and returns the keys it inserted. The (tenant, key) pairs are
            // distinct: repeats were folded above.
            //
            // A key is held when a live generation of `event_keys` has it: one index probe per
            // key in the older generations (a lateral `LIMIT 1`, never a join reading them
            // whole). The current
            // generation's unique constraint decides between concurrent writers
            // (`ON CONFLICT DO NOTHING` waits for a concurrent insert of the key to commit, then
            // skips); older generations are only read: every key written into one was committed
            // before the rotation that ended it (see `hold_key_generation`), so this statement's
            // snapshot sees them all. The event is inserted only with a key this statement
            // inserted.
            //
            // Keys are inserted in (tenant, key) order, so that any two of these statements take
            // their row locks in one global order and cannot deadlock on each other. Each event's
            // `seq` is drawn in the order the items were given (volatile functions are evaluated
            // after the `ORDER BY`), so the feed, which orders a transaction's rows by `seq`,
            // keeps request order.
            //
            // The arrays are borrowed (`&str`, `&[u8]`) or hold NULLs, which the macros' type
            // check does not know for array parameters: `as` names each one's Rust type, and the
            // statement's own casts name the SQL type.
            let mut tx = conn.begin().await.map_err(classify)?;
            hold_key_generation(&mut tx).await?;
            let inserted = sqlx::query_as!(
                HolderRow,
                r#"WITH item AS (
                       SELECT u.*, nextval('events_seq'::regclass) AS seq
                       FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[],
                                   $5::timestamptz[], $6::text[], $7::bytea[], $8::int4[],
                                   $9::text[], $10::timestamptz[], $11::timestamptz[])
                            WITH ORDINALITY AS u(tenant_id, event_id, idempotency_key, event_type,
                                                 occurred_at, data, fingerprint, schema_version,
                                                 cloudevent, occurred_at_reported, sent_at, ord)
                       ORDER BY ord
                   ),
                   current AS (
                       SELECT max(generation) AS generation FROM event_key_generations
                   ),
                   keys AS (
                       INSERT INTO event_keys (generation, tenant_id, idempotency_key, event_id,
                                               received_at, fingerprint)
                       SELECT current.generation, item.tenant_id, item.idempotency_key,
                              item.event_id, now(), item.fingerprint
                       FROM item
                       CROSS JOIN current
                       LEFT JOIN LATERAL (
                           SELECT true AS found FROM event_keys held
                           WHERE held.tenant_id = item.tenant_id
                             AND held.idempotency_key = item.idempotency_key
                             AND held.generation < current.generation
                           LIMIT 1
                       ) AS older ON true
                       WHERE older.found IS NULL
                       ORDER BY item.tenant_id, item.idempotency_key
                       ON CONFLICT (tenant_id, idempotency_key, generation) DO NOTHING
                       RETURNING tenant_id, idempotency_key, event_id, received_at, fingerprint
                   ),
                   stored AS (
                       INSERT INTO events (seq, event_id, tenant_id, idempotency_key, event_type,
                                           occurred_at, received_at, data, fingerprint,
                                           schema_version, cloudevent, occurred_at_reported,
                                           sent_at)
                       SELECT item.seq, item.event_id, item.tenant_id, item.idempotency_key,
                              item.event_type, item.occurred_at, keys.received_at,
                              item.data::json, item.fingerprint, item.schema_version,
                              item.cloudevent::json, item.occurred_at_reported, item.sent_at
                       FROM item
                       JOIN keys ON keys.tenant_id = item.tenant_id
                                AND keys.idempotency_key = item.idempotency_key
                       ORDER BY item.ord
                       RETURNING 1
                   )
                   SELECT tenant_id AS "tenant_id!", idempotency_key AS "idempotency_key!",
                          event_id AS "event_id!", received_at AS "received_at!",
                          fingerprint AS "fingerprint!"
                   FROM keys"#,
                &tenants[..] as &[&str],
                &ids[..],
                &keys[..] as &[&str],
                &types[..] as &[&str],
                &occurred[..],
                &data[..] as &[&str],
                &fingerprints[..] as &[&[u8]],
                &versions[..] as &[Option<i32>],
                &contexts[..] as &[Option<String>],
                &reported[..] as &[Option<DateTime<Utc>>],
                &sent[..] as &[Option<DateTime<Utc>>],
            )
            .fetch_all(&mut *tx)
            .await;
            let inserted = match inserted {
                Ok(rows) => tx.commit().await.map(|()| rows),
                Err(e) => {
                    drop(tx);
                    Err(e)
                }
            };
            // Statements of this kind lock rows in one order, but a single-event insert or
            // another writer of the database may not: when PostgreSQL aborts this statement as
            // a deadlock, it did nothing, and it is run again.
            let inserted = match inserted {
                Err(e) if raced_an_attach(&e) => {
                    tracing::debug!(
                        "an ingest statement raced a partition attach; running it again"
                    );
                    continue;
                }
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
                let tenants: Vec<&str> = skipped.iter().map(|i| i.tenant.as_str()).collect();
                let keys: Vec<&str> =
                    skipped.iter().map(|i| i.event.idempotency_key().as_str()).collect();
                // The rows holding the keys the insert skipped (one index probe per key: a join
                // planned while a generation looked empty would read it whole). A separate
                // statement, so its snapshot includes rows that concurrent writers committed while
                // the insert waited on them.
                let rows = sqlx::query_as!(
                    HolderRow,
                    r#"SELECT k.tenant_id AS "tenant_id!", k.idempotency_key AS "idempotency_key!",
                              e.event_id AS "event_id!", e.received_at AS "received_at!",
                              e.fingerprint AS "fingerprint!"
                       FROM unnest($1::text[], $2::text[]) AS k(tenant_id, idempotency_key)
                       CROSS JOIN LATERAL (
                           SELECT event_id, received_at, fingerprint FROM event_keys
                           WHERE event_keys.tenant_id = k.tenant_id
                             AND event_keys.idempotency_key = k.idempotency_key
                           ORDER BY event_keys.generation
                           LIMIT 1
                       ) AS e"#,
                    &tenants[..] as &[&str],
                    &keys[..] as &[&str],
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
