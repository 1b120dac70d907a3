//! The application's background work, owned: every loop is started on one [`TaskTracker`] and
//! ends when the [`CancellationToken`] is cancelled, so that a stopping server waits for each
//! (`Background::stop`) before it releases storage. No loop is a detached `spawn`.
//!
//! The loops: the schema follower (other servers' schema changes, and a periodic resync), and
//! the live debugger's announcer, sender and receiver (watched tenants and entries shared with
//! the other servers through the domain's `DebugTransport`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use intake_domain::{DebugMessage, DebugTransport, SchemaChange, SchemaChangeFeed};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::debugger::{DebugHub, StreamLimits, WATCH_LIFETIME};
use crate::schemas::SchemaCache;

/// The most debugger messages waiting to be sent; past it they are dropped (a debugger may miss
/// an entry, ingest never waits).
const OUTBOX: usize = 10_000;

/// The application's loops and what stops them.
#[derive(Debug, Clone, Default)]
pub struct Background {
    tracker: TaskTracker,
    stop: CancellationToken,
}

impl Background {
    /// Runs `task` until it ends or the background is stopped, whichever comes first.
    pub fn spawn<F>(&self, name: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let stop = self.stop.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                () = task => tracing::debug!(task = name, "ended"),
                () = stop.cancelled() => tracing::debug!(task = name, "stopped"),
            }
        });
    }

    /// Cancels every loop and waits until each has ended.
    pub async fn stop(&self) {
        self.stop.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }

    /// How many loops run now.
    pub fn running(&self) -> usize {
        self.tracker.len()
    }

    /// Resolves once the background is told to stop.
    pub fn stopping(&self) -> CancellationToken {
        self.stop.clone()
    }
}

/// Keeps the schema cache equal to the database: each change notification refreshes its type,
/// a lost notification connection and a periodic tick compare everything.
pub fn follow_schema_changes(
    background: &Background,
    schemas: Arc<SchemaCache>,
    mut changes: Option<Box<dyn SchemaChangeFeed>>,
    recheck: Duration,
) {
    background.spawn("schema follower", async move {
        let mut tick = tokio::time::interval(recheck);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            let change = async {
                match changes.as_mut() {
                    Some(changes) => changes.next().await,
                    None => std::future::pending().await,
                }
            };
            let outcome = tokio::select! {
                change = change => match change {
                    SchemaChange::Changed(tenant, event_type) => {
                        schemas.refresh(&tenant, &event_type).await
                    }
                    SchemaChange::Resync => schemas.resync().await,
                },
                _ = tick.tick() => schemas.resync().await,
            };
            if let Err(error) = outcome {
                // The next tick tries again.
                tracing::warn!(%error, "cannot refresh the schema cache");
            }
        }
    });
}

/// The live debugger's hub; with a transport, shared with every other server: entries and
/// watches go out in batches, and come in through the transport's inbox.
pub fn share_debugger(
    background: &Background,
    transport: Option<Arc<dyn DebugTransport>>,
    limits: StreamLimits,
) -> Arc<DebugHub> {
    let (sender, mut outbox) = mpsc::channel::<DebugMessage>(OUTBOX);
    let hub = Arc::new(DebugHub::new(transport.as_ref().map(|_| sender), limits));
    // Subscribers here keep their tenants watched, here and on the other servers.
    let announcing = hub.clone();
    background.spawn("debugger announcer", async move {
        let mut tick = tokio::time::interval(WATCH_LIFETIME / 3);
        loop {
            tick.tick().await;
            announcing.prune();
            for tenant in announcing.local_tenants() {
                announcing.mark_watched(&tenant);
                announcing.announce(DebugMessage::Watch(tenant));
            }
        }
    });
    let Some(transport) = transport else { return hub };
    let sending = transport.clone();
    background.spawn("debugger sender", async move {
        let mut batch = Vec::new();
        while outbox.recv_many(&mut batch, 500).await > 0 {
            if let Err(error) = sending.send(&batch).await {
                tracing::debug!(%error, "debugger entries not shared");
            }
            batch.clear();
        }
    });
    let mut inbox = transport.inbox();
    let receiving = hub.clone();
    background.spawn("debugger receiver", async move {
        loop {
            match inbox.next().await {
                DebugMessage::Watch(tenant) => receiving.mark_watched(&tenant),
                DebugMessage::Entry { tenant, kind, json } => {
                    receiving.deliver(&tenant, kind, json)
                }
            }
        }
    });
    hub
}
