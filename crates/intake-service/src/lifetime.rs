//! Storage lifetime (contract §14): the maintenance and erasure loops a server runs, and the
//! erasure use cases its endpoints call.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use intake_domain::{
    EraseOutcome, ErasureId, ErasureRecord, ErasureRequest, EventId, LifetimeStore,
    MaintenanceReport, Retention, StoreError, TenantId,
};

use crate::background::Background;

/// The most erasures by content a tenant may have waiting or running at once.
pub const MAX_UNFINISHED_ERASURES: u64 = 100;

/// The most erasures by content kept for a tenant (finished ones are forgotten with the events
/// they could have erased: after `retention.events`, or 30 days when events are kept forever).
pub const MAX_KEPT_ERASURES: u64 = 10_000;

/// Events an erasure step reads at most: a step is one short transaction.
pub const ERASURE_STEP_EVENTS: u32 = 5000;

/// The shortest pause between two maintenance runs, whatever is due.
const MIN_PAUSE: Duration = Duration::from_millis(200);

/// How long the erasure worker rests when there is nothing to erase.
const ERASURE_IDLE: Duration = Duration::from_millis(500);

/// What the last maintenance run this process made did, and when.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LastRun {
    /// When it ended; `None` before the first.
    pub at: Option<DateTime<Utc>>,
    /// What it did.
    pub report: MaintenanceReport,
    /// Runs so far, and runs that failed.
    pub runs: u64,
    /// Runs that failed.
    pub failures: u64,
}

/// Retention, the keys window and erasure, over a [`LifetimeStore`].
#[derive(Debug)]
pub struct Lifetime {
    store: Arc<dyn LifetimeStore>,
    retention: Retention,
    interval: Duration,
    last: Mutex<LastRun>,
    /// The last stats read, and when: `/metrics` is public, so a flood of scrapes reads storage
    /// at most once per [`STATS_TTL`].
    stats: tokio::sync::Mutex<Option<(std::time::Instant, intake_domain::LifetimeStats)>>,
}

/// How long storage's lifetime stats are reused.
const STATS_TTL: Duration = Duration::from_secs(2);

/// Why an erasure by content was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum ErasureRefusal {
    /// The tenant has too many erasures waiting or running.
    #[error("{MAX_UNFINISHED_ERASURES} erasures of this tenant are waiting or running")]
    TooMany,
    /// The tenant has made as many erasures as are kept.
    #[error("{MAX_KEPT_ERASURES} erasures of this tenant are kept")]
    TooManyKept,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Lifetime {
    /// Over `store`, keeping events and keys as `retention` says, maintaining every `interval`
    /// at the latest.
    pub fn new(store: Arc<dyn LifetimeStore>, retention: Retention, interval: Duration) -> Self {
        Self {
            store,
            retention,
            interval,
            last: Mutex::new(LastRun::default()),
            stats: tokio::sync::Mutex::new(None),
        }
    }

    /// How long events and keys are kept.
    pub fn retention(&self) -> Retention {
        self.retention
    }

    /// One maintenance run now (`intake maintain`, and the loop); `None` when another server
    /// is running one.
    pub async fn maintain_once(&self) -> Result<Option<MaintenanceReport>, StoreError> {
        let outcome = self.store.maintain(&self.retention).await;
        if let Ok(mut last) = self.last.lock() {
            last.runs += 1;
            match &outcome {
                Ok(Some(report)) => {
                    last.at = Some(Utc::now());
                    last.report = report.clone();
                }
                Ok(None) => {}
                Err(_) => last.failures += 1,
            }
        }
        outcome
    }

    /// What the last run of this process did.
    pub fn last_run(&self) -> LastRun {
        self.last.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Runs every erasure step there is until none is left (`intake maintain`).
    pub async fn erase_all(&self) -> Result<u64, StoreError> {
        let mut steps = 0;
        while self.store.erasure_step(ERASURE_STEP_EVENTS).await? {
            steps += 1;
        }
        Ok(steps)
    }

    /// Starts the maintenance loop (one run at once, then whenever something falls due, at
    /// least every interval) and the erasure worker on `background`.
    pub fn run(self: &Arc<Self>, background: &Background) {
        let lifetime = self.clone();
        background.spawn("maintenance", async move {
            loop {
                let pause = match lifetime.maintain_once().await {
                    Ok(Some(report)) => {
                        let removed = report.partitions_dropped + report.key_generations_dropped;
                        if removed > 0 || report.partitions_created > 0 {
                            tracing::info!(
                                partitions_created = report.partitions_created,
                                partitions_dropped = report.partitions_dropped,
                                events_dropped = report.events_dropped,
                                key_generations_dropped = report.key_generations_dropped,
                                keys_dropped = report.keys_dropped,
                                "maintenance"
                            );
                        }
                        lifetime.pause_until(report.next_due)
                    }
                    Ok(None) => lifetime.interval,
                    Err(error) => {
                        tracing::warn!(error = %format!("{error:#}"), "a maintenance run failed; retrying");
                        lifetime.interval.min(Duration::from_secs(5))
                    }
                };
                tokio::time::sleep(pause).await;
            }
        });
        let lifetime = self.clone();
        background.spawn("erasures", async move {
            loop {
                match lifetime.store.erasure_step(ERASURE_STEP_EVENTS).await {
                    // A short yield between steps: ingest goes first.
                    Ok(true) => tokio::time::sleep(Duration::from_millis(1)).await,
                    Ok(false) => tokio::time::sleep(ERASURE_IDLE).await,
                    Err(error) => {
                        tracing::warn!(error = %format!("{error:#}"), "an erasure step failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
    }

    /// How long to wait for the next run: until the next thing falls due, at most an interval.
    fn pause_until(&self, due: Option<DateTime<Utc>>) -> Duration {
        let until_due = due
            .and_then(|due| (due - Utc::now()).to_std().ok())
            .unwrap_or(self.interval)
            // Due times are in milliseconds; a little after, so that the run finds it due.
            .saturating_add(Duration::from_millis(20));
        until_due.min(self.interval).max(MIN_PAUSE)
    }

    /// Erases one event of the tenant.
    pub async fn erase_event(
        &self,
        tenant: &TenantId,
        id: EventId,
    ) -> Result<EraseOutcome, StoreError> {
        self.store.erase_event(tenant, id).await
    }

    /// Records an erasure by content; the erasure worker runs it.
    pub async fn create_erasure(
        &self,
        tenant: &TenantId,
        request: &ErasureRequest,
    ) -> Result<ErasureRecord, ErasureRefusal> {
        let counts = self.store.erasure_counts(tenant).await?;
        if counts.unfinished >= MAX_UNFINISHED_ERASURES {
            return Err(ErasureRefusal::TooMany);
        }
        if counts.kept >= MAX_KEPT_ERASURES {
            return Err(ErasureRefusal::TooManyKept);
        }
        let id = ErasureId::generate(Utc::now());
        Ok(self.store.create_erasure(tenant, id, request).await?)
    }

    /// One erasure of the tenant.
    pub async fn erasure(
        &self,
        tenant: &TenantId,
        id: ErasureId,
    ) -> Result<Option<ErasureRecord>, StoreError> {
        self.store.erasure(tenant, id).await
    }

    /// Storage's lifetime state, for metrics: read at most once per [`STATS_TTL`] (concurrent
    /// callers wait for the one read).
    pub async fn stats(&self) -> Result<intake_domain::LifetimeStats, StoreError> {
        let mut cached = self.stats.lock().await;
        if let Some((at, stats)) = cached.as_ref() {
            if at.elapsed() < STATS_TTL {
                return Ok(stats.clone());
            }
        }
        let stats = self.store.lifetime_stats().await?;
        *cached = Some((std::time::Instant::now(), stats.clone()));
        Ok(stats)
    }
}
