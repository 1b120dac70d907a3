//! Group commit: concurrent single-event ingests coalesced into one statement and one commit.
//!
//! [`GroupCommit`] is an [`EventStore`] over a [`PgStore`]. Each single-event ingest joins a
//! bounded queue; a few writer tasks each take whatever is waiting (up to `max_group`) and store
//! it through [`PgStore::ingest_many`], the statement batches use, then answer every request
//! from its own row. An idle writer takes a lone request at once, so a quiet server adds no
//! latency; under load the queue fills by itself while the previous statements run, and one
//! commit serves many requests. Every answer still comes only after the commit that holds the
//! event.
//!
//! - Two requests with one key in one group behave as a retry of each other (the batch rule).
//! - When the group's statement fails for a reason other than the database being unreachable,
//!   each request is stored on its own, so that only the one the database refuses gets the error.
//! - A request whose caller went away before its group was formed is left out of it.
//! - A full queue refuses at once ([`IngestError::Overloaded`]) rather than growing.
//! - [`GroupCommit::close`] stops taking requests, stores what is queued, and waits for the
//!   writers, so the pool can close after it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use anyhow::anyhow;
use async_trait::async_trait;
use intake_domain::{
    BatchOutcome, EventId, EventStore, FeedPage, FeedQuery, IdempotencyKey, IngestError, Ingested,
    KeyHolder, NewEvent, StoreError, StoredEvent, TenantId,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use sqlx::pool::PoolConnection;
use sqlx::Postgres;

use crate::{IngestItem, PgStore};

/// How single events are grouped; configured under `[group_commit]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCommitSettings {
    /// Writer tasks, each with at most one statement in flight.
    pub writers: usize,
    /// The most events one statement stores.
    pub max_group: usize,
    /// The most events waiting for a writer; past it, ingest is refused as overloaded.
    pub queue_bound: usize,
}

/// What group commit has done since the server started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GroupCommitStats {
    /// Statements that stored a group.
    pub groups: u64,
    /// Events those statements carried.
    pub events: u64,
    /// Groups whose statement failed and whose requests were stored one by one.
    pub fallbacks: u64,
    /// Time the group statements took, summed, in microseconds.
    pub statement_micros: u64,
    /// Time events waited in the queue for a writer, summed, in microseconds.
    pub queued_micros: u64,
    /// Events waiting for a writer now.
    pub queued: u64,
}

#[derive(Debug, Default)]
struct Counters {
    groups: AtomicU64,
    events: AtomicU64,
    fallbacks: AtomicU64,
    statement_micros: AtomicU64,
    queued_micros: AtomicU64,
}

/// One request waiting for its group.
#[derive(Debug)]
struct Pending {
    tenant: TenantId,
    event: NewEvent,
    id: EventId,
    answer: oneshot::Sender<Result<Ingested, IngestError>>,
    queued_at: Instant,
}

/// The group-committing event store.
#[derive(Debug)]
pub struct GroupCommit {
    store: PgStore,
    /// `None` once closed; the only sender, so dropping it ends the writers once the queue is
    /// empty.
    queue: RwLock<Option<mpsc::Sender<Pending>>>,
    writers: Mutex<Vec<JoinHandle<()>>>,
    counters: Arc<Counters>,
}

impl GroupCommit {
    /// Starts `settings.writers` writer tasks on the current Tokio runtime.
    pub fn start(store: PgStore, settings: GroupCommitSettings) -> Self {
        let (sender, receiver) = mpsc::channel(settings.queue_bound.max(1));
        let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
        let counters = Arc::new(Counters::default());
        let writers = (0..settings.writers.max(1))
            .map(|_| {
                tokio::spawn(write_groups(
                    store.clone(),
                    Arc::clone(&receiver),
                    settings.max_group.max(1),
                    Arc::clone(&counters),
                ))
            })
            .collect();
        Self { store, queue: RwLock::new(Some(sender)), writers: Mutex::new(writers), counters }
    }

    /// What group commit has done so far, and what waits now.
    pub fn stats(&self) -> GroupCommitStats {
        let queued = self
            .queue
            .read()
            .ok()
            .and_then(|q| q.as_ref().map(|s| s.max_capacity() - s.capacity()))
            .unwrap_or(0);
        GroupCommitStats {
            groups: self.counters.groups.load(Ordering::Relaxed),
            events: self.counters.events.load(Ordering::Relaxed),
            fallbacks: self.counters.fallbacks.load(Ordering::Relaxed),
            statement_micros: self.counters.statement_micros.load(Ordering::Relaxed),
            queued_micros: self.counters.queued_micros.load(Ordering::Relaxed),
            queued: queued as u64,
        }
    }

    /// Whether [`GroupCommit::close`] has begun: new requests are refused.
    pub fn is_closed(&self) -> bool {
        self.queue.read().map_or(true, |q| q.is_none())
    }

    /// Refuses new requests, stores every queued one, and returns once the writers are done.
    pub async fn close(&self) {
        if let Ok(mut queue) = self.queue.write() {
            queue.take();
        }
        let writers = self.writers.lock().map(|mut w| std::mem::take(&mut *w)).unwrap_or_default();
        for writer in writers {
            if let Err(e) = writer.await {
                tracing::error!(error = %e, "a group commit writer failed");
            }
        }
    }

    fn enqueue(&self, pending: Pending) -> Result<(), IngestError> {
        let queue = self.queue.read().map_err(|_| IngestError::Unknown(anyhow!("poisoned")))?;
        let Some(sender) = queue.as_ref() else {
            return Err(IngestError::Unavailable(anyhow!("the server is shutting down")));
        };
        sender.try_send(pending).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => IngestError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => {
                IngestError::Unavailable(anyhow!("the server is shutting down"))
            }
        })
    }
}

/// A writer: takes what is waiting, stores it as one group, answers, and again, until the queue
/// is closed and empty. While events keep coming it keeps its connection from one group to the
/// next (a pool checkout tests a connection with a round trip of its own); it gives it back
/// when the queue runs dry, and drops it when it fails.
async fn write_groups(
    store: PgStore,
    receiver: Arc<tokio::sync::Mutex<mpsc::Receiver<Pending>>>,
    max_group: usize,
    counters: Arc<Counters>,
) {
    let mut group = Vec::with_capacity(max_group);
    let mut held: Option<PoolConnection<Postgres>> = None;
    loop {
        let taken = {
            // Another writer holding the queue is waiting for events: there are none now. An
            // idle writer gives its connection back to the pool rather than sitting on it.
            let mut queue = match receiver.try_lock() {
                Ok(queue) => queue,
                Err(_) => {
                    held = None;
                    receiver.lock().await
                }
            };
            if queue.is_empty() {
                held = None;
            }
            queue.recv_many(&mut group, max_group).await
        };
        if taken == 0 {
            return;
        }
        group.retain(|p: &Pending| !p.answer.is_closed());
        if !group.is_empty() {
            let conn = match held.take() {
                Some(conn) => Ok(conn),
                None => store.acquire().await,
            };
            held = match conn {
                Ok(conn) => commit(&store, conn, &mut group, &counters).await,
                Err(error) => {
                    // Everything queued meanwhile has waited out this attempt already: it is
                    // answered now, rather than after an attempt of its own (a 503 within one
                    // acquire timeout, not two).
                    answer_all(&mut group, &error);
                    let mut queue = receiver.lock().await;
                    while let Ok(pending) = queue.try_recv() {
                        group.push(pending);
                    }
                    drop(queue);
                    answer_all(&mut group, &error);
                    None
                }
            };
        }
        group.clear();
    }
}

/// Answers every request of a group that could not be stored with storage's failure.
fn answer_all(group: &mut Vec<Pending>, error: &StoreError) {
    for pending in group.drain(..) {
        let _ = pending.answer.send(Err(match error {
            StoreError::Unavailable(cause) => IngestError::Unavailable(anyhow!("{cause:#}")),
            other => IngestError::Unknown(anyhow!("{other:#}")),
        }));
    }
}

/// Stores one group on `conn` and answers each of its requests; gives the connection back
/// unless it failed.
async fn commit(
    store: &PgStore,
    mut conn: PoolConnection<Postgres>,
    group: &mut Vec<Pending>,
    counters: &Counters,
) -> Option<PoolConnection<Postgres>> {
    let started = Instant::now();
    let waited: u128 = group.iter().map(|p| started.duration_since(p.queued_at).as_micros()).sum();
    let items: Vec<IngestItem<'_>> =
        group.iter().map(|p| IngestItem { tenant: &p.tenant, event: &p.event, id: p.id }).collect();
    let stored = store.ingest_many_on(&mut conn, &items).await;
    drop(items);
    let took = started.elapsed().as_micros();
    counters.statement_micros.fetch_add(u64::try_from(took).unwrap_or(u64::MAX), Ordering::Relaxed);
    counters.queued_micros.fetch_add(u64::try_from(waited).unwrap_or(u64::MAX), Ordering::Relaxed);
    counters.groups.fetch_add(1, Ordering::Relaxed);
    counters.events.fetch_add(group.len() as u64, Ordering::Relaxed);
    match stored {
        Ok(outcomes) => {
            for (pending, outcome) in group.drain(..).zip(outcomes) {
                let _ = pending.answer.send(outcome.into_result());
            }
            Some(conn)
        }
        Err(error @ StoreError::Unavailable(_)) => {
            answer_all(group, &error);
            None
        }
        // The database refused the statement: one row may be to blame. Each request on its own
        // finds out whether it is the one.
        Err(error) => {
            counters.fallbacks.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%error, events = group.len(), "a group failed; storing its events one by one");
            let mut usable = true;
            for pending in group.drain(..) {
                let result =
                    store.ingest_on(&mut conn, &pending.tenant, &pending.event, pending.id).await;
                usable &= !matches!(result, Err(IngestError::Unavailable(_)));
                let _ = pending.answer.send(result);
            }
            usable.then_some(conn)
        }
    }
}

#[async_trait]
impl EventStore for GroupCommit {
    async fn ingest(
        &self,
        tenant: &TenantId,
        event: &NewEvent,
        new_id: EventId,
    ) -> Result<Ingested, IngestError> {
        let (answer, answered) = oneshot::channel();
        self.enqueue(Pending {
            tenant: tenant.clone(),
            event: event.clone(),
            id: new_id,
            answer,
            queued_at: Instant::now(),
        })?;
        answered
            .await
            .map_err(|_| IngestError::Unknown(anyhow!("a group commit writer dropped a request")))?
    }

    async fn ingest_batch(
        &self,
        tenant: &TenantId,
        events: &[(NewEvent, EventId)],
    ) -> Result<Vec<BatchOutcome>, StoreError> {
        self.store.ingest_batch(tenant, events).await
    }

    async fn key_holder(
        &self,
        tenant: &TenantId,
        key: &IdempotencyKey,
    ) -> Result<Option<KeyHolder>, StoreError> {
        self.store.key_holder(tenant, key).await
    }

    async fn get(&self, tenant: &TenantId, id: EventId) -> Result<Option<StoredEvent>, StoreError> {
        self.store.get(tenant, id).await
    }

    async fn feed_page(
        &self,
        tenant: &TenantId,
        query: &FeedQuery,
    ) -> Result<FeedPage, StoreError> {
        self.store.feed_page(tenant, query).await
    }
}
