//! The live debugger's feed (contract §13): what each ingest request of a tenant ended as,
//! accepted or rejected, for the tenants somebody watches, from this server and (through the
//! domain's `DebugTransport`) from every other server on the database.
//!
//! Nothing is built for a tenant nobody watches: a watching server announces its tenants every
//! few seconds, and entries are made only for tenants announced in the last
//! [`WATCH_LIFETIME`]. Subscribers read from a bounded broadcast buffer: one that falls behind
//! misses entries (and is told how many), it never slows ingest down.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use intake_domain::{DebugMessage, TenantId};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{broadcast, mpsc};

/// Entries a subscriber may fall behind by before it misses some.
const BUFFER: usize = 1024;
/// How long an announced watch lasts; watching servers announce every third of it.
pub const WATCH_LIFETIME: Duration = Duration::from_secs(15);

/// One request's outcome as the stream sends it: the whole Server-Sent Events frame, made once
/// and shared by every reader (a clone is a reference count).
pub type Entry = Bytes;

/// How many debugger streams a server holds, in all and per token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// Streams open on this server at once.
    pub max_streams: usize,
    /// Streams one token may hold open at once.
    pub per_token: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        Self { max_streams: 1000, per_token: 10 }
    }
}

/// Why a stream was not opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StreamRefused {
    /// The token holds as many streams as it may.
    #[error("this token already holds {0} debugger streams, the most it may")]
    TooManyForToken(usize),
    /// The server holds as many streams as it may.
    #[error("this server already holds {0} debugger streams, the most it may")]
    ServerFull(usize),
}

/// The streams open now, in all and by token.
#[derive(Debug, Default)]
struct OpenStreams {
    total: usize,
    by_token: HashMap<String, usize>,
}

/// A stream's place among the open ones, given back when dropped.
#[derive(Debug)]
pub struct StreamSlot {
    open: Arc<Mutex<OpenStreams>>,
    token: String,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = match self.open.lock() {
            Ok(open) => open,
            Err(poisoned) => poisoned.into_inner(),
        };
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.by_token.get_mut(&self.token) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.by_token.remove(&self.token);
            }
        }
    }
}

/// An accepted (or replayed) event.
#[derive(Debug, Serialize)]
pub struct AcceptedEntry<'a> {
    /// The stored event's id.
    pub event_id: String,
    /// Its type.
    pub event_type: &'a str,
    /// When it happened.
    pub occurred_at: String,
    /// When it was first received.
    pub received_at: String,
    /// The client's key.
    pub idempotency_key: &'a str,
    /// Whether it was already stored.
    pub deduplicated: bool,
    /// `occurred_at` as sent, when it was corrected for the sender's clock.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub occurred_at_reported: Option<String>,
    /// The request's `sent_at`, when `occurred_at` was corrected by it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<String>,
    /// Its data.
    pub data: &'a Value,
}

/// A refused request: what its problem said, never its body.
#[derive(Debug, Serialize)]
pub struct RejectedEntry<'a> {
    /// The HTTP status.
    pub status: u16,
    /// The problem type.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// Every error the problem listed (field, code, message).
    pub errors: Value,
    /// The request's id.
    pub request_id: &'a str,
    /// When it was refused.
    pub at: String,
}

/// The tenants watched here or elsewhere, and this server's subscribers.
#[derive(Debug)]
pub struct DebugHub {
    channels: Mutex<HashMap<TenantId, broadcast::Sender<Entry>>>,
    /// Read on every ingest request: a read lock, not a mutex.
    watched: RwLock<HashMap<TenantId, Instant>>,
    outbound: Option<mpsc::Sender<DebugMessage>>,
    /// Set when the server stops: streams end, so that they do not hold the shutdown.
    closing: tokio::sync::watch::Sender<bool>,
    limits: StreamLimits,
    open: Arc<Mutex<OpenStreams>>,
}

impl DebugHub {
    /// A hub; `outbound` carries what other servers should hear (none: this server alone).
    pub fn new(outbound: Option<mpsc::Sender<DebugMessage>>, limits: StreamLimits) -> Self {
        Self {
            channels: Mutex::new(HashMap::new()),
            watched: RwLock::new(HashMap::new()),
            outbound,
            closing: tokio::sync::watch::Sender::new(false),
            limits,
            open: Arc::default(),
        }
    }

    /// A place for one more stream of the token (`token` names its budget, never its secret),
    /// or why there is none.
    pub fn open_stream(&self, token: &str) -> Result<StreamSlot, StreamRefused> {
        let mut open = match self.open.lock() {
            Ok(open) => open,
            Err(poisoned) => poisoned.into_inner(),
        };
        let of_token = open.by_token.get(token).copied().unwrap_or(0);
        if of_token >= self.limits.per_token {
            return Err(StreamRefused::TooManyForToken(of_token));
        }
        if open.total >= self.limits.max_streams {
            return Err(StreamRefused::ServerFull(open.total));
        }
        open.total += 1;
        *open.by_token.entry(token.to_owned()).or_default() += 1;
        Ok(StreamSlot { open: self.open.clone(), token: token.to_owned() })
    }

    /// Forgets what nobody needs any more: channels of tenants without subscribers here, and
    /// watches older than their lifetime. Run periodically (the announcer does), so that
    /// neither map grows with tenants that come and go.
    pub fn prune(&self) {
        if let Ok(mut channels) = self.channels.lock() {
            channels.retain(|_, sender| sender.receiver_count() > 0);
        }
        if let Ok(mut watched) = self.watched.write() {
            watched.retain(|_, at| at.elapsed() < WATCH_LIFETIME);
        }
    }

    /// Ends every stream (the server is stopping).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves once the server is stopping.
    pub fn closed(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Whether anybody, here or on another server, watches the tenant: only then is an entry
    /// worth building.
    pub fn watched(&self, tenant: &TenantId) -> bool {
        self.watched
            .read()
            .ok()
            .and_then(|w| w.get(tenant).map(|at| at.elapsed() < WATCH_LIFETIME))
            .unwrap_or(false)
    }

    /// Notes that somebody watches the tenant (a local subscriber, or another server's word).
    pub fn mark_watched(&self, tenant: &TenantId) {
        if let Ok(mut watched) = self.watched.write() {
            watched.insert(tenant.clone(), Instant::now());
        }
    }

    /// A subscription to the tenant's entries.
    pub fn subscribe(&self, tenant: &TenantId) -> broadcast::Receiver<Entry> {
        self.mark_watched(tenant);
        self.announce(DebugMessage::Watch(tenant.clone()));
        let mut channels = match self.channels.lock() {
            Ok(channels) => channels,
            Err(poisoned) => poisoned.into_inner(),
        };
        channels.entry(tenant.clone()).or_insert_with(|| broadcast::channel(BUFFER).0).subscribe()
    }

    /// The tenants with subscribers here (announced again periodically by the server).
    pub fn local_tenants(&self) -> Vec<TenantId> {
        self.channels
            .lock()
            .map(|c| {
                c.iter().filter(|(_, s)| s.receiver_count() > 0).map(|(t, _)| t.clone()).collect()
            })
            .unwrap_or_default()
    }

    /// Announces this server's watched tenants to the others.
    pub fn announce(&self, message: DebugMessage) {
        if let Some(outbound) = &self.outbound {
            // A full queue drops the message: the debugger may miss an entry, ingest never waits.
            let _ = outbound.try_send(message);
        }
    }

    /// An entry of this server: to its subscribers and to the other servers.
    pub fn publish(&self, tenant: &TenantId, kind: &'static str, json: String) {
        self.deliver(tenant, kind, json.clone());
        self.announce(DebugMessage::Entry { tenant: tenant.clone(), kind, json });
    }

    /// An entry to this server's subscribers only (another server's, say).
    pub fn deliver(&self, tenant: &TenantId, kind: &'static str, json: String) {
        let sender = self.channels.lock().ok().and_then(|c| c.get(tenant).cloned());
        if let Some(sender) = sender {
            let _ = sender.send(Bytes::from(format!("event: {kind}\ndata: {json}\n\n")));
        }
    }
}
