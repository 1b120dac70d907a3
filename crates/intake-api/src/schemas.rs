//! Each server's cache of compiled event schemas, so that checking an event costs
//! microseconds and no query.
//!
//! The cache loads every validated type on first use, is updated at once by this server's own
//! registrations and deletions, and follows other servers' changes through
//! [`SchemaCache::refresh`] (called on each change notification) and [`SchemaCache::resync`]
//! (called periodically and after a lost notification connection).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use intake_domain::{
    CompiledSchema, EventType, SchemaLimits, SchemaRecord, SchemaStore, StoreError, TenantId,
};
use tokio::sync::OnceCell;

/// The schema events of one type are checked against.
#[derive(Debug)]
pub struct ActiveSchema {
    /// Its version.
    pub version: u32,
    /// The compiled document.
    pub compiled: CompiledSchema,
}

type Key = (TenantId, EventType);

/// Compiled schemas of every validated type, by tenant and type.
#[derive(Debug)]
pub struct SchemaCache {
    store: Arc<dyn SchemaStore>,
    limits: SchemaLimits,
    entries: RwLock<HashMap<Key, Arc<ActiveSchema>>>,
    loaded: OnceCell<()>,
}

impl SchemaCache {
    /// An empty cache over `store`; it loads on first use.
    pub fn new(store: Arc<dyn SchemaStore>, limits: SchemaLimits) -> Self {
        Self { store, limits, entries: RwLock::new(HashMap::new()), loaded: OnceCell::new() }
    }

    /// The store behind the cache.
    pub fn store(&self) -> &Arc<dyn SchemaStore> {
        &self.store
    }

    /// The limits schema documents are held to.
    pub fn limits(&self) -> &SchemaLimits {
        &self.limits
    }

    /// The schema events of this type must satisfy, if any.
    pub async fn active(
        &self,
        tenant: &TenantId,
        event_type: &EventType,
    ) -> Result<Option<Arc<ActiveSchema>>, StoreError> {
        self.loaded.get_or_try_init(|| self.resync()).await?;
        let key = (tenant.clone(), event_type.clone());
        Ok(self.entries.read().ok().and_then(|entries| entries.get(&key).cloned()))
    }

    /// Makes the cache equal to the database: compiles what changed, drops what was deleted.
    pub async fn resync(&self) -> Result<(), StoreError> {
        let active = self.store.active_versions().await?;
        let stale: Vec<Key> = {
            let entries = self.entries.read().map_err(poisoned)?;
            active
                .iter()
                .filter(|(t, e, v)| {
                    entries.get(&(t.clone(), e.clone())).is_none_or(|s| s.version != *v)
                })
                .map(|(t, e, _)| (t.clone(), e.clone()))
                .collect()
        };
        for (tenant, event_type) in &stale {
            self.refresh(tenant, event_type).await?;
        }
        let keep: std::collections::HashSet<Key> =
            active.into_iter().map(|(t, e, _)| (t, e)).collect();
        self.entries.write().map_err(poisoned)?.retain(|key, _| keep.contains(key));
        Ok(())
    }

    /// Reloads one type from the database.
    pub async fn refresh(
        &self,
        tenant: &TenantId,
        event_type: &EventType,
    ) -> Result<(), StoreError> {
        match self.store.latest(tenant, event_type).await? {
            Some(record) => self.install(&record),
            None => self.remove(tenant, event_type),
        }
        Ok(())
    }

    /// Puts a version in the cache (this server registered it, or the database has it), unless
    /// the cache already holds a newer one.
    pub fn install(&self, record: &SchemaRecord) {
        let compiled = match CompiledSchema::compile(record.schema.clone(), &self.limits) {
            Ok(compiled) => compiled,
            Err(error) => {
                // Only a document accepted under other limits can fail here.
                tracing::error!(
                    event_type = record.event_type.as_str(),
                    version = record.version,
                    %error,
                    "a stored schema does not compile; events of its type are not checked"
                );
                return;
            }
        };
        let key = (record.tenant.clone(), record.event_type.clone());
        if let Ok(mut entries) = self.entries.write() {
            if entries.get(&key).is_none_or(|held| held.version <= record.version) {
                entries.insert(key, Arc::new(ActiveSchema { version: record.version, compiled }));
            }
        }
    }

    /// Stops checking a type.
    pub fn remove(&self, tenant: &TenantId, event_type: &EventType) {
        if let Ok(mut entries) = self.entries.write() {
            entries.remove(&(tenant.clone(), event_type.clone()));
        }
    }
}

fn poisoned<T>(_: T) -> StoreError {
    StoreError::Unknown(anyhow::anyhow!("the schema cache lock is poisoned"))
}
