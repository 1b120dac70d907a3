//! In-memory repositories for fast tests of the HTTP handlers. They follow the traits'
//! contracts but keep nothing; the PostgreSQL adapters are what the service runs on.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::Utc;

use crate::event::{EventId, NewEvent, TenantId};
use crate::fingerprint::Fingerprint;
use crate::ports::{EventStore, IngestError, Ingested, StoreError, TokenStore};
use crate::token::{NewToken, TokenHash, TokenId, TokenRecord};

/// Events in a map keyed by tenant and idempotency key.
#[derive(Debug, Default)]
pub struct MemoryEventStore {
    events: Mutex<HashMap<(TenantId, String), (Ingested, Fingerprint)>>,
    unavailable: std::sync::atomic::AtomicBool,
}

impl MemoryEventStore {
    /// Makes every later call fail as if the database were down (or back, with `false`).
    pub fn set_unavailable(&self, down: bool) {
        self.unavailable
            .store(down, std::sync::atomic::Ordering::SeqCst);
    }

    /// How many events are stored.
    pub fn len(&self) -> usize {
        self.events.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether no event is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
        if self.unavailable.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(IngestError::Unavailable(anyhow::anyhow!(
                "memory store set down"
            )));
        }
        let mut events = self
            .events
            .lock()
            .map_err(|_| IngestError::Unknown(anyhow::anyhow!("poisoned")))?;
        let key = (tenant.clone(), event.idempotency_key().as_str().to_owned());
        if let Some((stored, fingerprint)) = events.get(&key) {
            if fingerprint != event.fingerprint() {
                return Err(IngestError::KeyReused {
                    original: stored.event_id,
                });
            }
            return Ok(Ingested {
                deduplicated: true,
                ..stored.clone()
            });
        }
        let ingested = Ingested {
            event_id: new_id,
            received_at: Utc::now(),
            deduplicated: false,
        };
        events.insert(key, (ingested.clone(), *event.fingerprint()));
        Ok(ingested)
    }
}

/// Tokens in a list.
#[derive(Debug, Default)]
pub struct MemoryTokenStore {
    tokens: Mutex<Vec<(TokenHash, TokenRecord)>>,
}

impl MemoryTokenStore {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Vec<(TokenHash, TokenRecord)>>, StoreError> {
        self.tokens
            .lock()
            .map_err(|_| StoreError::Unknown(anyhow::anyhow!("poisoned")))
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
        };
        self.lock()?.push((token.hash, record.clone()));
        Ok(record)
    }

    async fn list(&self) -> Result<Vec<TokenRecord>, StoreError> {
        Ok(self.lock()?.iter().rev().map(|(_, r)| r.clone()).collect())
    }

    async fn revoke(&self, id: TokenId) -> Result<bool, StoreError> {
        let mut tokens = self.lock()?;
        match tokens
            .iter_mut()
            .find(|(_, r)| r.id == id && r.revoked_at.is_none())
        {
            Some((_, record)) => {
                record.revoked_at = Some(Utc::now());
                Ok(true)
            }
            None => Ok(false),
        }
    }
}
