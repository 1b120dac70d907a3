//! Each server's cache of compiled event schemas, so that checking an event costs
//! microseconds and no query.
//!
//! The cache loads every validated type on first use, is updated at once by this server's own
//! registrations and deletions, and follows other servers' changes through
//! [`SchemaCache::refresh`] (called on each change notification) and [`SchemaCache::resync`]
//! (called periodically and after a lost notification connection).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use intake_domain::{
    CompiledSchema, EventType, InvalidSchema, SchemaLimits, SchemaPut, SchemaRecord, SchemaStore,
    StoreError, TenantId,
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

/// Compiled schemas by tenant, then event type: looked up on every event without copying the
/// names.
type Entries = HashMap<TenantId, HashMap<EventType, Arc<ActiveSchema>>>;

/// Compiled schemas of every validated type, by tenant and type.
#[derive(Debug)]
pub struct SchemaCache {
    store: Arc<dyn SchemaStore>,
    limits: SchemaLimits,
    entries: RwLock<Entries>,
    loaded: OnceCell<()>,
    /// When loading last failed, and why: requests that find the cache unloaded while storage
    /// is down share that failure for a moment rather than each waiting out an attempt of its
    /// own, one after the other.
    failed: tokio::sync::Mutex<Option<(Instant, String)>>,
}

/// How long a failure to load is answered to later requests before loading is tried again.
const RETRY_LOAD_AFTER: Duration = Duration::from_millis(500);

impl SchemaCache {
    /// An empty cache over `store`; it loads on first use.
    pub fn new(store: Arc<dyn SchemaStore>, limits: SchemaLimits) -> Self {
        Self {
            store,
            limits,
            entries: RwLock::new(HashMap::new()),
            loaded: OnceCell::new(),
            failed: tokio::sync::Mutex::new(None),
        }
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
        if !self.loaded.initialized() {
            self.load().await?;
        }
        let entries = self.entries.read().map_err(poisoned)?;
        Ok(entries.get(tenant).and_then(|types| types.get(event_type)).cloned())
    }

    /// Loads the cache once; while storage is down, one attempt at a time, and a failure is
    /// shared with the requests that waited for it.
    async fn load(&self) -> Result<(), StoreError> {
        let mut failed = self.failed.lock().await;
        if self.loaded.initialized() {
            return Ok(());
        }
        if let Some((at, why)) = failed.as_ref() {
            if at.elapsed() < RETRY_LOAD_AFTER {
                return Err(StoreError::Unavailable(anyhow::anyhow!("{why}")));
            }
        }
        match self.loaded.get_or_try_init(|| self.resync()).await {
            Ok(()) => {
                *failed = None;
                Ok(())
            }
            Err(error) => {
                *failed = Some((Instant::now(), format!("{error:#}")));
                Err(error)
            }
        }
    }

    /// Makes the cache equal to the database: compiles what changed, drops what was deleted.
    pub async fn resync(&self) -> Result<(), StoreError> {
        let active = self.store.active_versions().await?;
        let stale: Vec<&(TenantId, EventType, u32)> = {
            let entries = self.entries.read().map_err(poisoned)?;
            active
                .iter()
                .filter(|(t, e, v)| {
                    entries.get(t).and_then(|types| types.get(e)).is_none_or(|s| s.version != *v)
                })
                .collect()
        };
        for (tenant, event_type, _) in stale {
            self.refresh(tenant, event_type).await?;
        }
        let keep: std::collections::HashSet<(&TenantId, &EventType)> =
            active.iter().map(|(t, e, _)| (t, e)).collect();
        let mut entries = self.entries.write().map_err(poisoned)?;
        for (tenant, types) in entries.iter_mut() {
            types.retain(|event_type, _| keep.contains(&(tenant, event_type)));
        }
        entries.retain(|_, types| !types.is_empty());
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

    /// Registers `document` as the type's next version (unless it equals the latest) and
    /// checks events against it at once on this server; `Ok(Err(why))` when it is not a JSON
    /// Schema intake accepts.
    pub async fn register(
        &self,
        tenant: &TenantId,
        event_type: &EventType,
        document: serde_json::Value,
    ) -> Result<Result<SchemaPut, InvalidSchema>, StoreError> {
        let compiled = match CompiledSchema::compile(document, &self.limits) {
            Ok(compiled) => compiled,
            Err(invalid) => return Ok(Err(invalid)),
        };
        let put = self.store.put(tenant, event_type, compiled.document()).await?;
        self.install(&put.record);
        Ok(Ok(put))
    }

    /// Stops checking a type, here at once and (through the store) everywhere; `false` when it
    /// had no schema.
    pub async fn unregister(
        &self,
        tenant: &TenantId,
        event_type: &EventType,
    ) -> Result<bool, StoreError> {
        let deleted = self.store.delete(tenant, event_type).await?;
        if deleted {
            self.remove(tenant, event_type);
        }
        Ok(deleted)
    }

    /// Puts a version in the cache (this server registered it, or the database has it), unless
    /// the cache already holds a newer one.
    pub fn install(&self, record: &SchemaRecord) {
        let compiled = match CompiledSchema::recompile(record.schema.clone(), &self.limits) {
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
        if let Ok(mut entries) = self.entries.write() {
            let types = entries.entry(record.tenant.clone()).or_default();
            if types.get(&record.event_type).is_none_or(|held| held.version <= record.version) {
                let active = Arc::new(ActiveSchema { version: record.version, compiled });
                types.insert(record.event_type.clone(), active);
            }
        }
    }

    /// Stops checking a type.
    pub fn remove(&self, tenant: &TenantId, event_type: &EventType) {
        if let Ok(mut entries) = self.entries.write() {
            if let Some(types) = entries.get_mut(tenant) {
                types.remove(event_type);
            }
        }
    }
}

fn poisoned<T>(_: T) -> StoreError {
    StoreError::Unknown(anyhow::anyhow!("the schema cache lock is poisoned"))
}
