//! Storage lifetime (contract §14): event partitions prepared ahead and dropped whole once
//! expired, key generations rotated and dropped whole, erasure.
//!
//! - **Event partitions** are ranges of event ids. An id is a UUIDv7 made when the server
//!   received the event, so a range of ids is a range of receipt times. A range is `width`
//!   long (half the retention, at most a day), so that an event is removed between
//!   `retention` and `retention + width` (≤ 1.5 × retention) after it was received. Ranges are
//!   prepared ahead, each before any of its events can exist; an event whose range is not
//!   prepared (the first seconds of an installation, an outage of maintenance longer than it
//!   prepares ahead, a sender's clock far off) lands in `events_default` and stays there until it
//!   expires. Rows are never moved between partitions: a statement planned before a partition
//!   was attached could miss a row moved into it.
//! - **Key generations**: a key is written into the current generation and looked for in every
//!   live one. A generation is current for half the keys window; it is dropped once its newest
//!   key is older than the window, so a key lives between 1 and 1.5 windows.
//! - **Erasure** deletes an event's row (its key stays) and leaves a tombstone, so that a second
//!   `DELETE` is a `204` and the relay knows to publish a notice of an event it had published.
//!
//! DDL cannot take bind parameters: the names and bounds in these statements are formatted by
//! this module from numbers, never from input.

use std::time::Duration;

use anyhow::anyhow;
use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use intake_domain::{
    EraseOutcome, ErasureCounts, ErasureId, ErasureRecord, ErasureRequest, ErasureStatus, EventId,
    EventType, LifetimeStats, LifetimeStore, MaintenanceReport, Retention, StoreError, TenantId,
};
use serde_json::Value;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use crate::errors::classify;
use crate::events::KEY_GENERATION_LOCK;
use crate::PgStore;

/// One maintenance run at a time over all servers: a session-level advisory lock.
const MAINTENANCE_LOCK: (i32, i32) = (0x696e_746b, 2);

/// The class of the advisory lock (with `hashtext(tenant)`) that an erasure takes exclusively
/// and the relay takes shared while it records a published page: the two never interleave, so
/// an erased event the relay published always gets its notice, once.
pub(crate) const RELAY_TENANT_LOCK: i32 = 0x696e_746c;

/// How long DDL waits for a lock before giving up until the next run: never long enough to
/// hold up ingest behind it.
const DDL_LOCK_TIMEOUT: &str = "SET LOCAL lock_timeout = '500ms'";

const SECOND: i64 = 1000;

/// How far in the future a range starts at the soonest when it is prepared, in milliseconds.
const LEAD: i64 = 5 * SECOND;
const DAY: i64 = 86_400 * SECOND;

/// The widths an event partition can have, widest first: the widest at most half the
/// retention is used.
const WIDTHS: [i64; 12] = [
    DAY,
    12 * 3600 * SECOND,
    6 * 3600 * SECOND,
    3600 * SECOND,
    1800 * SECOND,
    600 * SECOND,
    300 * SECOND,
    60 * SECOND,
    30 * SECOND,
    10 * SECOND,
    5 * SECOND,
    SECOND,
];

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// The width of new event partitions for a retention (a day when events are kept forever).
fn partition_width(retention: Option<Duration>) -> i64 {
    match retention {
        None => DAY,
        Some(retention) => {
            let half = millis(retention) / 2;
            WIDTHS.into_iter().find(|w| *w <= half).unwrap_or(SECOND)
        }
    }
}

/// How long a key generation stays current: half the keys window (at least a second).
fn generation_span(keys: Duration) -> i64 {
    (millis(keys) / 2).max(SECOND)
}

/// The smallest UUID of the millisecond `ms` (since the Unix epoch): every UUIDv7 made at or
/// after it sorts at or after this one.
fn time_uuid(ms: i64) -> Uuid {
    Uuid::from_u128((u128::from(ms.max(0).unsigned_abs()) & ((1 << 48) - 1)) << 80)
}

/// The millisecond a UUIDv7 was made in.
fn uuid_millis(id: Uuid) -> i64 {
    i64::try_from(id.as_u128() >> 80).unwrap_or(i64::MAX)
}

fn instant(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// An event partition: its table and range of ids, as milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Partition {
    name: String,
    from: i64,
    to: i64,
}

/// The range a partition bound expression names (`FOR VALUES FROM ('…') TO ('…')`); `None`
/// for the default partition.
fn parse_bound(bound: &str) -> Option<(i64, i64)> {
    let mut uuids = bound.split('\'').skip(1).step_by(2).map(Uuid::try_parse);
    let from = uuids.next()?.ok()?;
    let to = uuids.next()?.ok()?;
    Some((uuid_millis(from), uuid_millis(to)))
}

fn partition_name(from: i64) -> String {
    format!("events_{}", instant(from).format("%Y%m%dt%H%M%S"))
}

impl PgStore {
    /// The event partitions with a range, oldest first.
    async fn partitions(conn: &mut PgConnection) -> Result<Vec<Partition>, StoreError> {
        let rows = sqlx::query!(
            r#"SELECT c.relname::text AS "name!", pg_get_expr(c.relpartbound, c.oid) AS "bound!"
               FROM pg_inherits i
               JOIN pg_class c ON c.oid = i.inhrelid
               WHERE i.inhparent = 'events'::regclass"#
        )
        .fetch_all(&mut *conn)
        .await
        .map_err(classify)?;
        let mut partitions: Vec<Partition> = rows
            .into_iter()
            .filter_map(|row| {
                parse_bound(&row.bound).map(|(from, to)| Partition { name: row.name, from, to })
            })
            .collect();
        partitions.sort_by_key(|p| p.from);
        Ok(partitions)
    }

    /// Prepares the range [from, to): a table of its own, attached. A range starts in the
    /// future (see [`LEAD`]), so the default partition holds none of it; should it hold some all
    /// the same (a sender's clock far ahead), the range starts after the last of them.
    async fn prepare_range(conn: &mut PgConnection, from: i64, to: i64) -> Result<(), StoreError> {
        let mut tx = conn.begin().await.map_err(classify)?;
        sqlx::query(DDL_LOCK_TIMEOUT).execute(&mut *tx).await.map_err(classify)?;
        let stray: Option<Uuid> = sqlx::query_scalar!(
            "SELECT event_id FROM events_default WHERE event_id >= $1 AND event_id < $2
             ORDER BY event_id DESC LIMIT 1",
            time_uuid(from),
            time_uuid(to),
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(classify)?;
        let from = stray.map_or(from, |id| uuid_millis(id) + 1);
        if from >= to {
            return Ok(());
        }
        let name = partition_name(from);
        let (low, high) = (time_uuid(from), time_uuid(to));
        sqlx::query(&format!(
            "CREATE TABLE {name} (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
        ))
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        // SHARE UPDATE EXCLUSIVE on events: ingest and reads go on meanwhile.
        sqlx::query(&format!(
            "ALTER TABLE events ATTACH PARTITION {name} FOR VALUES FROM ('{low}') TO ('{high}')"
        ))
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        tx.commit().await.map_err(classify)
    }

    /// Drops an expired partition whole; returns the events it held.
    async fn drop_partition(
        conn: &mut PgConnection,
        partition: &Partition,
    ) -> Result<u64, StoreError> {
        let name = &partition.name;
        let mut tx = conn.begin().await.map_err(classify)?;
        sqlx::query(DDL_LOCK_TIMEOUT).execute(&mut *tx).await.map_err(classify)?;
        let held: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {name}"))
            .fetch_one(&mut *tx)
            .await
            .map_err(classify)?;
        sqlx::query(&format!("DROP TABLE {name}")).execute(&mut *tx).await.map_err(classify)?;
        tx.commit().await.map_err(classify)?;
        Ok(held.unsigned_abs())
    }

    /// Prepares the event ranges up to `ahead` past now and drops the expired ones.
    async fn maintain_events(
        conn: &mut PgConnection,
        retention: Option<Duration>,
        now: i64,
        report: &mut MaintenanceReport,
    ) -> Result<Vec<i64>, StoreError> {
        let width = partition_width(retention);
        let ahead = width.max(10 * SECOND);
        let partitions = Self::partitions(conn).await?;
        let mut due = Vec::new();

        // Ranges are prepared on from the newest one's end, never starting sooner than LEAD
        // from now: no event of a range exists while it is attached, so no statement that
        // planned before the attach (and reads after it) can miss one. The first time, and after
        // maintenance stood still longer than it prepares ahead, the events before that start
        // stay in the default partition until they expire.
        let earliest = now + LEAD;
        let mut end = match partitions.last() {
            Some(last) if last.to >= earliest => last.to,
            _ => earliest - earliest.rem_euclid(SECOND) + SECOND,
        };
        while end < now + LEAD + ahead {
            let next = end - end.rem_euclid(width) + width;
            Self::prepare_range(conn, end, next).await?;
            report.partitions_created += 1;
            end = next;
        }
        due.push(end - ahead);

        if let Some(retention) = retention {
            let cutoff = now - millis(retention);
            for partition in &partitions {
                if partition.to <= cutoff {
                    report.events_dropped += Self::drop_partition(conn, partition).await?;
                    report.partitions_dropped += 1;
                } else {
                    due.push(partition.to + millis(retention));
                }
            }
            // Expired events that never had a prepared range: the default partition only holds
            // such stragglers. By when the database received them, not by their id: an id made
            // by a clock far off (or not a UUIDv7 at all) says nothing of their age.
            let stray =
                sqlx::query!("DELETE FROM events_default WHERE received_at < $1", instant(cutoff))
                    .execute(&mut *conn)
                    .await
                    .map_err(classify)?;
            report.events_dropped += stray.rows_affected();
            // Tombstones of erased events that would have expired by now.
            sqlx::query!("DELETE FROM erased_events WHERE event_id < $1", time_uuid(cutoff))
                .execute(&mut *conn)
                .await
                .map_err(classify)?;
        }
        // Finished erasures, once the events they could have erased would have expired (30
        // days when events are kept forever): a tenant's are capped, so they must go.
        let forget = retention.map_or(30 * DAY, millis);
        sqlx::query!(
            "DELETE FROM erasures WHERE status IN ('done', 'failed') AND finished_at < $1",
            instant(now - forget)
        )
        .execute(&mut *conn)
        .await
        .map_err(classify)?;
        Ok(due)
    }

    /// Starts a new key generation when the current one has been current long enough, and
    /// drops those whose newest key is older than the window.
    async fn maintain_keys(
        conn: &mut PgConnection,
        keys: Duration,
        now: i64,
        report: &mut MaintenanceReport,
    ) -> Result<Vec<i64>, StoreError> {
        let span = generation_span(keys);
        let window = millis(keys);
        let generations = sqlx::query!(
            "SELECT generation, started_at FROM event_key_generations ORDER BY generation"
        )
        .fetch_all(&mut *conn)
        .await
        .map_err(classify)?;
        let mut due = Vec::new();
        let Some(current) = generations.last() else {
            return Err(StoreError::Unknown(anyhow!("no key generation exists")));
        };
        let (current, started) = (current.generation, current.started_at.timestamp_millis());
        // The next generation's table exists before it becomes current, so that the rotation
        // itself is one row, made while no ingest transaction is in flight.
        let next = current + 1;
        Self::prepare_generation(conn, next).await?;
        if now - started >= span {
            Self::rotate_on(conn, next).await?;
            report.key_generations_started += 1;
            due.push(now + span);
        } else {
            due.push(started + span);
        }
        // A generation's newest key was written before the next one started.
        for pair in generations.windows(2) {
            let (old, successor) = (&pair[0], &pair[1]);
            let expires = successor.started_at.timestamp_millis() + window;
            if expires > now {
                due.push(expires);
                continue;
            }
            let generation = old.generation;
            let mut tx = conn.begin().await.map_err(classify)?;
            sqlx::query(DDL_LOCK_TIMEOUT).execute(&mut *tx).await.map_err(classify)?;
            let held: i64 =
                sqlx::query_scalar(&format!("SELECT count(*) FROM event_keys_g{generation}"))
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(classify)?;
            sqlx::query(&format!("DROP TABLE IF EXISTS event_keys_g{generation}"))
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
            sqlx::query!("DELETE FROM event_key_generations WHERE generation = $1", generation)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
            tx.commit().await.map_err(classify)?;
            report.key_generations_dropped += 1;
            report.keys_dropped += held.unsigned_abs();
        }
        Ok(due)
    }

    /// Creates the table of key generation `generation`, unless it exists.
    async fn prepare_generation(
        conn: &mut PgConnection,
        generation: i32,
    ) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "CREATE TABLE IF NOT EXISTS event_keys_g{generation} PARTITION OF event_keys
             FOR VALUES IN ({generation})"
        ))
        .execute(&mut *conn)
        .await
        .map_err(classify)?;
        Ok(())
    }

    /// Makes `next` the current key generation (its table exists): under the exclusive
    /// advisory lock, which waits for every ingest transaction in flight, so that every key of
    /// the older generations is committed before any writer takes the new one for current.
    async fn rotate_on(conn: &mut PgConnection, next: i32) -> Result<(), StoreError> {
        let mut tx = conn.begin().await.map_err(classify)?;
        sqlx::query("SET LOCAL lock_timeout = '2s'").execute(&mut *tx).await.map_err(classify)?;
        sqlx::query!(
            "SELECT pg_advisory_xact_lock($1, $2)",
            KEY_GENERATION_LOCK.0,
            KEY_GENERATION_LOCK.1
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(classify)?;
        // Started when every key of the older generations has been written: their writers held
        // the lock this one waited for.
        sqlx::query!(
            "INSERT INTO event_key_generations (generation, started_at)
             VALUES ($1, clock_timestamp())",
            next
        )
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        tx.commit().await.map_err(classify)
    }

    /// Starts a new key generation now, whatever is due (maintenance does it when the current
    /// one has been current for half the keys window). For tests of the rotation and for
    /// operators; returns the new generation.
    pub async fn rotate_key_generation(&self) -> Result<i32, StoreError> {
        let mut conn = self.acquire().await?;
        let current: i32 = sqlx::query_scalar!(
            r#"SELECT max(generation) AS "generation!" FROM event_key_generations"#
        )
        .fetch_one(&mut *conn)
        .await
        .map_err(classify)?;
        let next = current + 1;
        Self::prepare_generation(&mut conn, next).await?;
        Self::rotate_on(&mut conn, next).await?;
        Ok(next)
    }

    /// One maintenance run on `conn`, which holds the maintenance lock.
    async fn maintain_on(
        conn: &mut PgConnection,
        retention: &Retention,
    ) -> Result<MaintenanceReport, StoreError> {
        let now: DateTime<Utc> = sqlx::query_scalar!(r#"SELECT now() AS "now!""#)
            .fetch_one(&mut *conn)
            .await
            .map_err(classify)?;
        let now = now.timestamp_millis();
        let mut report = MaintenanceReport::default();
        let mut due = Self::maintain_events(conn, retention.events, now, &mut report).await?;
        due.extend(Self::maintain_keys(conn, retention.keys, now, &mut report).await?);
        report.next_due = due.into_iter().min().map(instant);
        Ok(report)
    }
}

/// An erasure's row.
struct ErasureRow {
    erasure_id: Uuid,
    pointer: String,
    equals: String,
    event_type: Option<String>,
    status: String,
    erased: i64,
    created_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

impl ErasureRow {
    fn into_record(self) -> Result<ErasureRecord, StoreError> {
        let broken =
            |what: &str| StoreError::Unknown(anyhow!("erasure {}: {what}", self.erasure_id));
        let equals: Value = serde_json::from_str(&self.equals).map_err(|_| broken("equals"))?;
        let event_type = match &self.event_type {
            None => None,
            Some(raw) => Some(EventType::parse(raw).map_err(|_| broken("event_type"))?),
        };
        let request = ErasureRequest::from_parts(self.pointer.clone(), equals, event_type)
            .map_err(|_| broken("pointer"))?;
        Ok(ErasureRecord {
            erasure_id: ErasureId::from_uuid(self.erasure_id),
            request,
            status: ErasureStatus::parse(&self.status).ok_or_else(|| broken("status"))?,
            erased: self.erased.unsigned_abs(),
            created_at: self.created_at,
            finished_at: self.finished_at,
        })
    }
}

/// Takes the tenant's relay lock for the rest of the transaction (see [`RELAY_TENANT_LOCK`]).
pub(crate) async fn lock_relay_tenant(
    conn: &mut PgConnection,
    tenant: &TenantId,
    exclusive: bool,
) -> Result<(), StoreError> {
    let statement = if exclusive {
        sqlx::query!(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            RELAY_TENANT_LOCK,
            tenant.as_str()
        )
        .fetch_one(&mut *conn)
        .await
        .map(|_| ())
    } else {
        sqlx::query!(
            "SELECT pg_advisory_xact_lock_shared($1, hashtext($2))",
            RELAY_TENANT_LOCK,
            tenant.as_str()
        )
        .fetch_one(&mut *conn)
        .await
        .map(|_| ())
    };
    statement.map_err(classify)
}

/// Records erased events: tombstones, and a notice for every stream whose relay had published
/// them (its position is at or past the event). Runs under the tenant's relay lock.
async fn record_erased(
    conn: &mut PgConnection,
    tenant: &TenantId,
    ids: &[Uuid],
    txs: &[String],
    seqs: &[i64],
) -> Result<(), StoreError> {
    sqlx::query!(
        "INSERT INTO erased_events (tenant_id, event_id)
         SELECT $1, id FROM unnest($2::uuid[]) AS id
         ON CONFLICT ON CONSTRAINT erased_events_pkey DO NOTHING",
        tenant.as_str(),
        ids,
    )
    .execute(&mut *conn)
    .await
    .map_err(classify)?;
    sqlx::query!(
        "INSERT INTO relay_erased_notices (stream, tenant_id, event_id, erased_at)
         SELECT p.stream, p.tenant_id, e.id, now()
         FROM relay_positions p,
              unnest($2::uuid[], $3::text[], $4::int8[]) AS e(id, tx, seq)
         WHERE p.tenant_id = $1 AND (p.tx_id, p.seq) >= (e.tx::xid8, e.seq)
         ON CONFLICT ON CONSTRAINT relay_erased_notices_pkey DO NOTHING",
        tenant.as_str(),
        ids,
        txs as &[String],
        seqs,
    )
    .execute(&mut *conn)
    .await
    .map_err(classify)?;
    Ok(())
}

#[async_trait]
impl LifetimeStore for PgStore {
    async fn maintain(
        &self,
        retention: &Retention,
    ) -> Result<Option<MaintenanceReport>, StoreError> {
        // Its own connection, closed afterwards: the lock is the session's, and a run that
        // fails half-way must not hand a connection holding it back to the pool.
        let mut conn = self.acquire().await?.detach();
        let locked = sqlx::query_scalar!(
            r#"SELECT pg_try_advisory_lock($1, $2) AS "locked!""#,
            MAINTENANCE_LOCK.0,
            MAINTENANCE_LOCK.1
        )
        .fetch_one(&mut conn)
        .await
        .map_err(classify)?;
        if !locked {
            let _ = conn.close().await;
            return Ok(None);
        }
        let report = Self::maintain_on(&mut conn, retention).await;
        let _ = conn.close().await;
        report.map(Some)
    }

    async fn erase_event(
        &self,
        tenant: &TenantId,
        id: EventId,
    ) -> Result<EraseOutcome, StoreError> {
        let mut conn = self.acquire().await?;
        let mut tx = conn.begin().await.map_err(classify)?;
        lock_relay_tenant(&mut tx, tenant, true).await?;
        let deleted = sqlx::query!(
            r#"DELETE FROM events WHERE event_id = $1 AND tenant_id = $2
               RETURNING tx_id::text AS "tx_text!", seq"#,
            id.as_uuid(),
            tenant.as_str(),
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(classify)?;
        let outcome = match deleted {
            Some(row) => {
                record_erased(&mut tx, tenant, &[id.as_uuid()], &[row.tx_text], &[row.seq]).await?;
                EraseOutcome::Erased
            }
            None => {
                let erased = sqlx::query_scalar!(
                    r#"SELECT EXISTS (
                           SELECT 1 FROM erased_events WHERE tenant_id = $1 AND event_id = $2
                       ) AS "erased!""#,
                    tenant.as_str(),
                    id.as_uuid(),
                )
                .fetch_one(&mut *tx)
                .await
                .map_err(classify)?;
                if erased {
                    EraseOutcome::AlreadyErased
                } else {
                    EraseOutcome::NotFound
                }
            }
        };
        tx.commit().await.map_err(classify)?;
        Ok(outcome)
    }

    async fn create_erasure(
        &self,
        tenant: &TenantId,
        id: ErasureId,
        request: &ErasureRequest,
    ) -> Result<ErasureRecord, StoreError> {
        let path: Vec<String> = request.path().to_vec();
        let row = sqlx::query_as!(
            ErasureRow,
            "INSERT INTO erasures (erasure_id, tenant_id, pointer, path, equals, event_type)
             VALUES ($1, $2, $3, $4, $5, $6)
             RETURNING erasure_id, pointer, equals, event_type, status, erased, created_at,
                       finished_at",
            id.as_uuid(),
            tenant.as_str(),
            request.pointer(),
            &path,
            request.equals().to_string(),
            request.event_type().map(EventType::as_str),
        )
        .fetch_one(&mut *self.acquire().await?)
        .await
        .map_err(classify)?;
        row.into_record()
    }

    async fn erasure(
        &self,
        tenant: &TenantId,
        id: ErasureId,
    ) -> Result<Option<ErasureRecord>, StoreError> {
        let row = sqlx::query_as!(
            ErasureRow,
            "SELECT erasure_id, pointer, equals, event_type, status, erased, created_at,
                    finished_at
             FROM erasures WHERE erasure_id = $1 AND tenant_id = $2",
            id.as_uuid(),
            tenant.as_str(),
        )
        .fetch_optional(&mut *self.acquire().await?)
        .await
        .map_err(classify)?;
        row.map(ErasureRow::into_record).transpose()
    }

    async fn erasure_counts(&self, tenant: &TenantId) -> Result<ErasureCounts, StoreError> {
        let row = sqlx::query!(
            r#"SELECT count(*) FILTER (WHERE status IN ('pending', 'running')) AS "unfinished!",
                      count(*) AS "kept!"
               FROM erasures WHERE tenant_id = $1"#,
            tenant.as_str(),
        )
        .fetch_one(&mut *self.acquire().await?)
        .await
        .map_err(classify)?;
        Ok(ErasureCounts {
            unfinished: row.unfinished.unsigned_abs(),
            kept: row.kept.unsigned_abs(),
        })
    }

    async fn erasure_step(&self, max_events: u32) -> Result<bool, StoreError> {
        let mut conn = self.acquire().await?;
        let mut tx = conn.begin().await.map_err(classify)?;
        // The oldest unfinished erasure no other server is stepping now.
        let Some(erasure) = sqlx::query!(
            r#"SELECT erasure_id, tenant_id, path, equals, event_type,
                      until_tx::text AS "until_tx!", after_tx::text AS "after_tx!", after_seq
               FROM erasures
               WHERE status IN ('pending', 'running')
               ORDER BY created_at
               LIMIT 1
               FOR UPDATE SKIP LOCKED"#
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(classify)?
        else {
            return Ok(false);
        };
        let tenant = TenantId::parse(&erasure.tenant_id)
            .map_err(|e| StoreError::Unknown(anyhow!("erasure {}: {e}", erasure.erasure_id)))?;
        let equals: Value = serde_json::from_str(&erasure.equals).map_err(|e| {
            StoreError::Unknown(anyhow!("erasure {}: equals: {e}", erasure.erasure_id))
        })?;
        // The scalar as intake writes JSON (numbers as sent, strings escaped alike).
        let needle = intake_domain::event::stored_text(&equals);
        let equals: Value = serde_json::from_str(&needle).unwrap_or(equals);
        lock_relay_tenant(&mut tx, &tenant, true).await?;
        // The next events of the tenant's feed, in feed order, each with what its data holds at
        // the pointer (as JSON text; NULL when nothing, or when the scalar's JSON text does not
        // occur in the data's at all: a match always does, as data is kept as JSON text with
        // strings escaped as intake writes them, so the quick text search spares parsing the
        // rest). Only events whose writer has finished (below the feed's horizon) and that
        // were stored before the erasure was made.
        let page = sqlx::query!(
            r#"SELECT event_id AS "event_id!", event_type AS "event_type!",
                      tx_id::text AS "tx_text!", seq AS "seq!",
                      CASE WHEN strpos(data::text, $7) > 0
                           THEN json_extract_path(data, VARIADIC $5::text[])::text
                      END AS found
               FROM (
                   SELECT event_id, event_type, tx_id, seq, data
                   FROM events
                   WHERE tenant_id = $1
                     AND (tx_id, seq) > ($2::text::xid8, $3)
                     AND tx_id < $4::text::xid8
                     AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
                   ORDER BY events.tx_id, events.seq
                   LIMIT $6
               ) AS page
               ORDER BY page.tx_id, page.seq"#,
            tenant.as_str(),
            erasure.after_tx,
            erasure.after_seq,
            erasure.until_tx,
            &erasure.path,
            i64::from(max_events.max(1)),
            needle,
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(classify)?;
        let (mut ids, mut txs, mut seqs) = (Vec::new(), Vec::new(), Vec::new());
        for row in &page {
            let of_type = erasure.event_type.as_ref().is_none_or(|t| t == &row.event_type);
            let found = row.found.as_deref().and_then(|f| serde_json::from_str::<Value>(f).ok());
            if of_type && found.as_ref() == Some(&equals) {
                ids.push(row.event_id);
                txs.push(row.tx_text.clone());
                seqs.push(row.seq);
            }
        }
        if !ids.is_empty() {
            sqlx::query!(
                "DELETE FROM events WHERE tenant_id = $1 AND event_id = ANY($2)",
                tenant.as_str(),
                &ids,
            )
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
            record_erased(&mut tx, &tenant, &ids, &txs, &seqs).await?;
        }
        let erased = i64::try_from(ids.len()).unwrap_or(i64::MAX);
        let progressed = match page.last() {
            Some(last) => {
                sqlx::query!(
                    "UPDATE erasures
                     SET status = 'running', erased = erased + $2,
                         after_tx = $3::text::xid8, after_seq = $4
                     WHERE erasure_id = $1",
                    erasure.erasure_id,
                    erased,
                    last.tx_text,
                    last.seq,
                )
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
                true
            }
            None => {
                // Done once every writer that could hold an event stored before the erasure
                // was made has finished (and the walk found nothing more).
                let done = sqlx::query!(
                    "UPDATE erasures SET status = 'done', finished_at = now()
                     WHERE erasure_id = $1
                       AND until_tx <= pg_snapshot_xmin(pg_current_snapshot())",
                    erasure.erasure_id,
                )
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
                done.rows_affected() > 0
            }
        };
        tx.commit().await.map_err(classify)?;
        Ok(progressed)
    }

    async fn lifetime_stats(&self) -> Result<LifetimeStats, StoreError> {
        let row = sqlx::query!(
            r#"SELECT (SELECT received_at FROM events ORDER BY event_id LIMIT 1) AS oldest,
                      (SELECT count(*) FROM pg_inherits
                       WHERE inhparent = 'events'::regclass) AS "partitions!",
                      (SELECT count(*) FROM event_key_generations) AS "generations!",
                      (SELECT count(*) FROM erasures
                       WHERE status IN ('pending', 'running')) AS "pending!",
                      (SELECT count(*) FROM erasures WHERE status = 'done') AS "done!""#
        )
        .fetch_one(&mut *self.acquire().await?)
        .await
        .map_err(classify)?;
        Ok(LifetimeStats {
            oldest_event: row.oldest,
            partitions: row.partitions.unsigned_abs(),
            key_generations: row.generations.unsigned_abs(),
            erasures_pending: row.pending.unsigned_abs(),
            erasures_done: row.done.unsigned_abs(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_is_at_most_half_the_retention_and_at_most_a_day() {
        assert_eq!(partition_width(None), DAY);
        assert_eq!(partition_width(Some(Duration::from_secs(30 * 86_400))), DAY);
        assert_eq!(partition_width(Some(Duration::from_secs(20))), 10 * SECOND);
        assert_eq!(partition_width(Some(Duration::from_secs(3600))), 1800 * SECOND);
        assert_eq!(partition_width(Some(Duration::from_millis(500))), SECOND);
    }

    #[test]
    fn a_bound_reads_back_as_the_milliseconds_it_was_made_of() {
        let (from, to) = (1_764_460_800_000, 1_764_547_200_000);
        let bound = format!("FOR VALUES FROM ('{}') TO ('{}')", time_uuid(from), time_uuid(to));
        assert_eq!(parse_bound(&bound), Some((from, to)));
        assert_eq!(parse_bound("DEFAULT"), None);
        assert_eq!(partition_name(from), "events_20251130t000000");
    }

    #[test]
    fn an_event_id_sorts_within_the_range_of_its_millisecond() {
        let now = Utc::now();
        let id = EventId::generate(now).as_uuid();
        let ms = now.timestamp_millis();
        assert!(time_uuid(ms) <= id && id < time_uuid(ms + 1));
        assert_eq!(uuid_millis(id), ms);
    }
}
