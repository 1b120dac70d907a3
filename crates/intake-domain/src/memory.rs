//! In-memory repositories for fast tests of the HTTP handlers. They follow the traits'
//! contracts but keep nothing; the PostgreSQL adapters are what the service runs on.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::Utc;

use crate::event::{EventId, EventType, IdempotencyKey, TenantId};
use crate::feed::{FeedPage, FeedPosition, FeedQuery, StoredEvent};
use crate::fingerprint::Fingerprint;
use crate::lifetime::{
    EraseOutcome, ErasureId, ErasureRecord, ErasureRequest, ErasureStatus, LifetimeStats,
    MaintenanceReport, Retention,
};
use crate::new_event::NewEvent;
use crate::ports::{
    BatchOutcome, ErasureCounts, EventStore, HealthCheck, IngestError, Ingested, KeyHolder,
    LifetimeStore, Readiness, SchemaStore, StoreError, TokenStore,
};
use crate::rate::RateLimit;
use crate::schema::{SchemaPut, SchemaRecord};
use crate::token::{NewToken, TokenHash, TokenId, TokenRecord};

type Row = (TenantId, StoredEvent, Fingerprint);

/// Events in insertion order; a row's index is its feed position (there are no concurrent
/// transactions to order here).
#[derive(Debug, Default)]
pub struct MemoryEventStore {
    events: Mutex<Vec<Row>>,
    /// Erased events: their rows stay (their keys are remembered), reads skip them.
    erased: Mutex<HashSet<EventId>>,
    erasures: Mutex<Vec<(TenantId, ErasureRecord)>>,
    unavailable: AtomicBool,
}

impl MemoryEventStore {
    /// Makes every later call fail as if the database were down (or back, with `false`).
    pub fn set_unavailable(&self, down: bool) {
        self.unavailable.store(down, Ordering::SeqCst);
    }

    /// How many events are stored.
    pub fn len(&self) -> usize {
        self.events.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether no event is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Vec<Row>>, StoreError> {
        if self.unavailable.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable(anyhow::anyhow!("memory store set down")));
        }
        self.events.lock().map_err(|_| StoreError::Unknown(anyhow::anyhow!("poisoned")))
    }

    fn erased(&self) -> Result<std::sync::MutexGuard<'_, HashSet<EventId>>, StoreError> {
        self.erased.lock().map_err(|_| StoreError::Unknown(anyhow::anyhow!("poisoned")))
    }
}

impl MemoryEventStore {
    /// Stores one event unless its key is held, and answers as the held key dictates.
    fn store(
        &self,
        tenant: &TenantId,
        event: &NewEvent,
        new_id: EventId,
    ) -> Result<BatchOutcome, StoreError> {
        let mut events = self.lock()?;
        let key = event.idempotency_key().as_str();
        let existing =
            events.iter().find(|(t, stored, _)| t == tenant && stored.idempotency_key == key);
        if let Some((_, stored, fingerprint)) = existing {
            let holder = KeyHolder {
                event_id: stored.event_id,
                received_at: stored.received_at,
                fingerprint: *fingerprint,
            };
            return Ok(holder.outcome_for(event, false));
        }
        let stored = StoredEvent {
            event_id: new_id,
            event_type: event.event_type().as_str().to_owned(),
            occurred_at: event.occurred_at().as_utc(),
            received_at: Utc::now(),
            idempotency_key: key.to_owned(),
            data: event.data().to_value(),
            schema_version: event.schema_version(),
            cloudevent: event.context().cloned(),
            correction: event.correction().map(|c| (c.reported.as_utc(), c.sent_at)),
        };
        let holder = KeyHolder {
            event_id: new_id,
            received_at: stored.received_at,
            fingerprint: *event.fingerprint(),
        };
        events.push((tenant.clone(), stored, *event.fingerprint()));
        Ok(holder.outcome_for(event, true))
    }
}

#[async_trait]
impl EventStore for MemoryEventStore {
    async fn ingest(
        &self,
        tenant: &TenantId,
        event: &NewEvent,
        new_id: EventId,
    ) -> Result<Ingested, IngestError> {
        self.store(tenant, event, new_id)?.into_result()
    }

    async fn ingest_batch(
        &self,
        tenant: &TenantId,
        events: &[(NewEvent, EventId)],
    ) -> Result<Vec<BatchOutcome>, StoreError> {
        events.iter().map(|(event, id)| self.store(tenant, event, *id)).collect()
    }

    async fn key_holder(
        &self,
        tenant: &TenantId,
        key: &IdempotencyKey,
    ) -> Result<Option<KeyHolder>, StoreError> {
        Ok(self
            .lock()?
            .iter()
            .find(|(t, stored, _)| t == tenant && stored.idempotency_key == key.as_str())
            .map(|(_, stored, fingerprint)| KeyHolder {
                event_id: stored.event_id,
                received_at: stored.received_at,
                fingerprint: *fingerprint,
            }))
    }

    async fn get(&self, tenant: &TenantId, id: EventId) -> Result<Option<StoredEvent>, StoreError> {
        let erased = self.erased()?;
        Ok(self
            .lock()?
            .iter()
            .find(|(t, stored, _)| t == tenant && stored.event_id == id)
            .filter(|(_, stored, _)| !erased.contains(&stored.event_id))
            .map(|(_, stored, _)| stored.clone()))
    }

    async fn feed_page(
        &self,
        tenant: &TenantId,
        query: &FeedQuery,
    ) -> Result<FeedPage, StoreError> {
        let erased = self.erased()?;
        let events = self.lock()?;
        let page: Vec<(FeedPosition, StoredEvent)> = events
            .iter()
            .enumerate()
            .map(|(i, (t, stored, _))| {
                (FeedPosition { tx: i as u64 + 1, seq: i as i64 + 1 }, t, stored)
            })
            .filter(|(position, t, stored)| {
                *t == tenant
                    && !erased.contains(&stored.event_id)
                    && *position > query.after
                    && query.event_type.as_ref().is_none_or(|et| et.as_str() == stored.event_type)
            })
            .take(usize::from(query.limit))
            .scan(0usize, |bytes, (position, _, stored)| {
                let size = stored.data.to_string().len()
                    + stored.cloudevent.as_ref().map_or(0, |c| c.to_string().len());
                let first = *bytes == 0;
                *bytes = bytes.saturating_add(size);
                (first || *bytes <= query.max_bytes).then(|| (position, stored.clone()))
            })
            .collect();
        let next = page.last().map_or(query.after, |(position, _)| *position);
        Ok(FeedPage { events: page.into_iter().map(|(_, e)| e).collect(), next })
    }
}

#[async_trait]
impl LifetimeStore for MemoryEventStore {
    async fn maintain(
        &self,
        _retention: &Retention,
    ) -> Result<Option<MaintenanceReport>, StoreError> {
        self.lock().map(|_| Some(MaintenanceReport::default()))
    }

    async fn erase_event(
        &self,
        tenant: &TenantId,
        id: EventId,
    ) -> Result<EraseOutcome, StoreError> {
        let events = self.lock()?;
        let mut erased = self.erased()?;
        if !events.iter().any(|(t, stored, _)| t == tenant && stored.event_id == id) {
            return Ok(EraseOutcome::NotFound);
        }
        Ok(if erased.insert(id) { EraseOutcome::Erased } else { EraseOutcome::AlreadyErased })
    }

    /// Erases at once: there is no background here.
    async fn create_erasure(
        &self,
        tenant: &TenantId,
        id: ErasureId,
        request: &ErasureRequest,
    ) -> Result<ErasureRecord, StoreError> {
        let events = self.lock()?;
        let mut erased = self.erased()?;
        let mut count = 0;
        for (t, stored, _) in events.iter() {
            let of_type = request.event_type().is_none_or(|et| et.as_str() == stored.event_type);
            if t == tenant && of_type && request.matches_data(&stored.data) {
                count += u64::from(erased.insert(stored.event_id));
            }
        }
        let now = Utc::now();
        let record = ErasureRecord {
            erasure_id: id,
            request: request.clone(),
            status: ErasureStatus::Done,
            erased: count,
            created_at: now,
            finished_at: Some(now),
        };
        self.erasures
            .lock()
            .map_err(|_| StoreError::Unknown(anyhow::anyhow!("poisoned")))?
            .push((tenant.clone(), record.clone()));
        Ok(record)
    }

    async fn erasure(
        &self,
        tenant: &TenantId,
        id: ErasureId,
    ) -> Result<Option<ErasureRecord>, StoreError> {
        Ok(self
            .erasures
            .lock()
            .map_err(|_| StoreError::Unknown(anyhow::anyhow!("poisoned")))?
            .iter()
            .find(|(t, record)| t == tenant && record.erasure_id == id)
            .map(|(_, record)| record.clone()))
    }

    async fn erasure_counts(&self, tenant: &TenantId) -> Result<ErasureCounts, StoreError> {
        let kept = self
            .erasures
            .lock()
            .map_err(|_| StoreError::Unknown(anyhow::anyhow!("poisoned")))?
            .iter()
            .filter(|(t, _)| t == tenant)
            .count();
        Ok(ErasureCounts { unfinished: 0, kept: kept as u64 })
    }

    async fn erasure_step(&self, _max_events: u32) -> Result<bool, StoreError> {
        Ok(false)
    }

    async fn lifetime_stats(&self) -> Result<LifetimeStats, StoreError> {
        let events = self.lock()?;
        Ok(LifetimeStats {
            oldest_event: events.iter().map(|(_, stored, _)| stored.received_at).min(),
            ..LifetimeStats::default()
        })
    }
}

#[async_trait]
impl HealthCheck for MemoryEventStore {
    async fn readiness(&self) -> Result<Readiness, StoreError> {
        self.lock().map(|_| Readiness::Ready)
    }
}

/// Tokens in a list.
#[derive(Debug, Default)]
pub struct MemoryTokenStore {
    tokens: Mutex<Vec<(TokenHash, TokenRecord)>>,
}

impl MemoryTokenStore {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Vec<(TokenHash, TokenRecord)>>, StoreError> {
        self.tokens.lock().map_err(|_| StoreError::Unknown(anyhow::anyhow!("poisoned")))
    }
}

#[async_trait]
impl TokenStore for MemoryTokenStore {
    async fn find_active(&self, hash: &TokenHash) -> Result<Option<TokenRecord>, StoreError> {
        Ok(self
            .lock()?
            .iter()
            .find(|(h, r)| h == hash && r.revoked_at.is_none())
            .map(|(_, r)| r.clone()))
    }

    async fn create(&self, token: &NewToken) -> Result<TokenRecord, StoreError> {
        let record = TokenRecord {
            id: token.id,
            tenant: token.tenant.clone(),
            name: token.name.clone(),
            scopes: token.scopes.clone(),
            created_at: Utc::now(),
            revoked_at: None,
            limit: token.limit,
        };
        self.lock()?.push((token.hash, record.clone()));
        Ok(record)
    }

    async fn list(&self) -> Result<Vec<TokenRecord>, StoreError> {
        Ok(self.lock()?.iter().rev().map(|(_, r)| r.clone()).collect())
    }

    async fn revoke(&self, id: TokenId) -> Result<bool, StoreError> {
        let mut tokens = self.lock()?;
        match tokens.iter_mut().find(|(_, r)| r.id == id && r.revoked_at.is_none()) {
            Some((_, record)) => {
                record.revoked_at = Some(Utc::now());
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn set_limit(&self, id: TokenId, limit: Option<RateLimit>) -> Result<bool, StoreError> {
        let mut tokens = self.lock()?;
        match tokens.iter_mut().find(|(_, r)| r.id == id && r.revoked_at.is_none()) {
            Some((_, record)) => {
                record.limit = limit;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// A tenant's event type, its versions, and whether it is validated.
type SchemaType = (TenantId, EventType, Vec<SchemaRecord>, bool);

/// Schema versions per (tenant, event type), and whether the type is validated.
#[derive(Debug, Default)]
pub struct MemorySchemaStore {
    types: Mutex<Vec<SchemaType>>,
}

impl MemorySchemaStore {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Vec<SchemaType>>, StoreError> {
        self.types.lock().map_err(|_| StoreError::Unknown(anyhow::anyhow!("poisoned")))
    }
}

#[async_trait]
impl SchemaStore for MemorySchemaStore {
    async fn put(
        &self,
        tenant: &TenantId,
        event_type: &EventType,
        schema: &serde_json::Value,
    ) -> Result<SchemaPut, StoreError> {
        let mut types = self.lock()?;
        let index = match types.iter().position(|(t, e, _, _)| t == tenant && e == event_type) {
            Some(index) => index,
            None => {
                types.push((tenant.clone(), event_type.clone(), Vec::new(), false));
                types.len() - 1
            }
        };
        let (_, _, versions, active) = &mut types[index];
        if let Some(latest) = versions.last().filter(|latest| *active && latest.schema == *schema) {
            return Ok(SchemaPut { record: latest.clone(), created: false });
        }
        let record = SchemaRecord {
            tenant: tenant.clone(),
            event_type: event_type.clone(),
            version: versions.len() as u32 + 1,
            created_at: Utc::now(),
            schema: schema.clone(),
        };
        versions.push(record.clone());
        *active = true;
        Ok(SchemaPut { record, created: true })
    }

    async fn latest(
        &self,
        tenant: &TenantId,
        event_type: &EventType,
    ) -> Result<Option<SchemaRecord>, StoreError> {
        Ok(self
            .lock()?
            .iter()
            .find(|(t, e, _, active)| t == tenant && e == event_type && *active)
            .and_then(|(_, _, versions, _)| versions.last().cloned()))
    }

    async fn version(
        &self,
        tenant: &TenantId,
        event_type: &EventType,
        version: u32,
    ) -> Result<Option<SchemaRecord>, StoreError> {
        Ok(self.lock()?.iter().find(|(t, e, _, _)| t == tenant && e == event_type).and_then(
            |(_, _, versions, _)| versions.iter().find(|r| r.version == version).cloned(),
        ))
    }

    async fn list(&self, tenant: &TenantId) -> Result<Vec<SchemaRecord>, StoreError> {
        let mut list: Vec<SchemaRecord> = self
            .lock()?
            .iter()
            .filter(|(t, _, _, active)| t == tenant && *active)
            .filter_map(|(_, _, versions, _)| versions.last().cloned())
            .collect();
        list.sort_by(|a, b| a.event_type.as_str().cmp(b.event_type.as_str()));
        Ok(list)
    }

    async fn delete(&self, tenant: &TenantId, event_type: &EventType) -> Result<bool, StoreError> {
        let mut types = self.lock()?;
        match types.iter_mut().find(|(t, e, _, active)| t == tenant && e == event_type && *active) {
            Some((_, _, _, active)) => {
                *active = false;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn active_versions(&self) -> Result<Vec<(TenantId, EventType, u32)>, StoreError> {
        Ok(self
            .lock()?
            .iter()
            .filter(|(_, _, _, active)| *active)
            .filter_map(|(t, e, versions, _)| {
                versions.last().map(|r| (t.clone(), e.clone(), r.version))
            })
            .collect())
    }
}
