//! The client handle: queue events, flush, close, send one now, read the counts.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::Utc;
use reqwest::header::HeaderValue;
use reqwest::Url;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::error::{BuildError, Problem, SendError, SendNowError};
use crate::event::{sent_at, Accepted, Event};
use crate::ledger::{FlushCounts, Ledger};
use crate::options::{base_url, ClientBuilder, OnError, Options};
use crate::worker::{self, Shared};

/// The Event Intake API's client (contract §16). Cheap to clone: every clone is a handle on
/// one queue and one background task.
///
/// [`Client::send`] queues an event and returns its idempotency key at once; the background
/// task sends the queue in batches, retrying with the same keys until each event is
/// acknowledged, rejected or `max_retry_time` runs out. [`Client::flush`] waits for what was
/// queued before it; [`Client::close`] flushes and stops the task. Dropping the last handle
/// without `close` stops the task too, abandoning whatever is still queued.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    base_url: Url,
    stop: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
}

/// The last handle gone, the task stops.
impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Counts since the client was built (see [`Client::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Events `send` queued.
    pub enqueued: u64,
    /// Events the server acknowledged (deduplicated ones included).
    pub delivered: u64,
    /// Of the delivered events, those the server had already stored (a retry after a lost
    /// answer, or a key sent twice).
    pub deduplicated: u64,
    /// Events rejected, refused or given up on (each reported to `on_error`).
    pub failed: u64,
    /// Events `send` did not queue because the queue was full (either policy).
    pub dropped: u64,
    /// Events sent again after a request failed in a way worth a retry (once per retry).
    pub retried: u64,
    /// Events waiting in the queue now.
    pub queued: usize,
    /// The clock skew the last batch answer reported (§15): how far this machine's clock is
    /// behind the server's, in milliseconds, transit included.
    pub clock_skew_ms: Option<i64>,
}

impl Client {
    /// A client with the default options; see [`Client::builder`].
    pub fn new(base_url: impl Into<String>, token: impl Into<String>) -> Result<Self, BuildError> {
        Self::builder(base_url, token).build()
    }

    /// A builder for a client of the server at `base_url` (`https://intake.example.com`),
    /// sending with `token` (scope `events:write`).
    pub fn builder(base_url: impl Into<String>, token: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(base_url.into(), token.into())
    }

    pub(crate) fn start(
        base_url: Url,
        authorization: HeaderValue,
        options: Options,
        on_error: Option<OnError>,
        runtime: &tokio::runtime::Handle,
    ) -> Result<Self, BuildError> {
        let http = reqwest::Client::builder()
            .timeout(options.request_timeout)
            .connect_timeout(options.request_timeout.min(Duration::from_secs(10)))
            // A redirected POST would become a GET: a redirect is an answer like any other.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("intake-client-rust/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(BuildError::Http)?;
        let endpoint = |path: &str| {
            base_url.join(path).map_err(|_| BuildError::InvalidUrl(base_url.to_string()))
        };
        let urls = (endpoint("v1/events")?, endpoint("v1/events/batch")?);
        let shared = Arc::new(Shared::new(options, http, urls, authorization, on_error));
        let stop = CancellationToken::new();
        let task = runtime.spawn(worker::run(shared.clone(), stop.clone()));
        Ok(Self { inner: Arc::new(Inner { shared, base_url, stop, task: Mutex::new(Some(task)) }) })
    }

    /// Queues an event of `event_type` with `data` (a JSON object), happening now, under a new
    /// key; returns the key. Waits only for room in the queue, never for the network.
    pub async fn send(
        &self,
        event_type: impl Into<String>,
        data: Value,
    ) -> Result<String, SendError> {
        self.send_event(Event::new(event_type, data)).await
    }

    /// Queues an event built with [`Event`] (its own `occurred_at` or key); returns its key.
    pub async fn send_event(&self, event: Event) -> Result<String, SendError> {
        let shared = &self.inner.shared;
        let prepared = event.prepare(Utc::now(), None)?;
        let key = prepared.key.clone();
        match shared.queue.push(prepared, shared.options.on_full).await {
            Ok(()) => Ok(key),
            Err(error) => {
                if matches!(error, SendError::QueueFull | SendError::Timeout(_)) {
                    shared.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Err(error)
            }
        }
    }

    /// Sends everything queued before this call at once, and waits until each of those events
    /// is delivered or failed, or `timeout` passes; their counts (see [`FlushCounts`]).
    pub async fn flush(&self, timeout: Duration) -> FlushCounts {
        let deadline = tokio::time::Instant::now() + timeout;
        let shared = &self.inner.shared;
        let (id, finished) = shared.queue.flush_mark(|queued| shared.ledger.register(queued));
        let waiting = Waiting { ledger: &shared.ledger, id: Some(id) };
        if !self.inner.stop.is_cancelled() {
            let _ = tokio::time::timeout_at(deadline, finished).await;
        }
        waiting.counts()
    }

    /// Refuses further events, flushes (at most `timeout`) and stops the background task.
    /// Events still pending then are abandoned; the counts say how many.
    pub async fn close(&self, timeout: Duration) -> FlushCounts {
        let deadline = tokio::time::Instant::now() + timeout;
        self.inner.shared.queue.close();
        let counts = self.flush(timeout).await;
        self.inner.stop.cancel();
        let task = self.inner.task.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(mut task) = task {
            // The task ends at its next await once cancelled; this bounds an `on_error`
            // callback that takes its time.
            let grace = deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .max(Duration::from_millis(100));
            if tokio::time::timeout(grace, &mut task).await.is_err() {
                task.abort();
            }
        }
        debug!(
            delivered = counts.delivered,
            failed = counts.failed,
            pending = counts.pending,
            "client closed"
        );
        counts
    }

    /// Posts one event to `POST /v1/events` now, with `sent_at`, and returns the server's
    /// answer. One attempt: on an error, [`SendNowError::is_retryable`] says whether sending
    /// the same event again may succeed; to make the second attempt a replay rather than a
    /// second event, give the event its key and `occurred_at` before the first. Works after
    /// `close` too; not counted in [`Client::stats`].
    pub async fn send_now(&self, event: Event) -> Result<Accepted, SendNowError> {
        let shared = &self.inner.shared;
        let now = Utc::now();
        let prepared = event.prepare(now, Some(&sent_at(now)))?;
        let reply = shared
            .post(&shared.events_url, prepared.json.into_bytes())
            .await
            .map_err(SendNowError::Transport)?;
        debug!(status = reply.status, "event sent now");
        if reply.status != 200 {
            return Err(SendNowError::Refused(Problem::from_answer(reply.status, &reply.body)));
        }
        let mut accepted: Accepted = serde_json::from_slice(&reply.body)
            .map_err(|_| SendNowError::UnexpectedAnswer { status: reply.status })?;
        accepted.idempotency_key = prepared.key;
        accepted.occurred_at = prepared.occurred_at;
        Ok(accepted)
    }

    /// The counts since the client was built.
    pub fn stats(&self) -> Stats {
        let shared = &self.inner.shared;
        let totals = shared.ledger.totals();
        Stats {
            enqueued: shared.queue.enqueued(),
            delivered: totals.delivered,
            deduplicated: totals.deduplicated,
            failed: totals.failed,
            dropped: shared.dropped.load(std::sync::atomic::Ordering::Relaxed),
            retried: shared.retried.load(std::sync::atomic::Ordering::Relaxed),
            queued: shared.queue.len(),
            clock_skew_ms: totals.clock_skew_ms,
        }
    }
}

/// The token never shows.
impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.base_url.as_str())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// A flush's place in the ledger, given up however the flush ends.
struct Waiting<'a> {
    ledger: &'a Ledger,
    id: Option<u64>,
}

impl Waiting<'_> {
    fn counts(mut self) -> FlushCounts {
        self.id.take().map(|id| self.ledger.unregister(id)).unwrap_or_default()
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.ledger.unregister(id);
        }
    }
}

impl ClientBuilder {
    /// The client, with its background task started on the current tokio runtime.
    pub fn build(self) -> Result<Client, BuildError> {
        let options = self.options;
        if !(1..=1000).contains(&options.max_batch) {
            return Err(BuildError::InvalidOption("max_batch must be between 1 and 1000"));
        }
        if options.max_queue == 0 {
            return Err(BuildError::InvalidOption("max_queue must be at least 1"));
        }
        if options.max_queue_bytes == 0 || options.max_queue_bytes > u32::MAX as usize {
            return Err(BuildError::InvalidOption("max_queue_bytes must be between 1 and 4 GiB"));
        }
        if options.request_timeout.is_zero() {
            return Err(BuildError::InvalidOption("request_timeout must be more than zero"));
        }
        let base = base_url(&self.base_url)?;
        if self.token.trim().is_empty() {
            return Err(BuildError::InvalidToken);
        }
        let mut authorization = HeaderValue::from_str(&format!("Bearer {}", self.token))
            .map_err(|_| BuildError::InvalidToken)?;
        authorization.set_sensitive(true);
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        Client::start(base, authorization, options, self.on_error, &runtime)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared_across_tasks<T: Clone + Send + Sync + 'static>() {}

    #[test]
    fn a_client_is_cheap_to_clone_and_shared_across_tasks_and_threads() {
        shared_across_tasks::<Client>();
        shared_across_tasks::<crate::ItemError>();
    }

    #[test]
    fn building_outside_a_tokio_runtime_is_an_error_not_a_panic() {
        let built = Client::new("http://127.0.0.1:8080", "token");
        assert!(matches!(built, Err(BuildError::NoRuntime)), "{built:?}");
    }

    #[tokio::test]
    async fn neither_the_token_nor_a_bad_one_shows_in_errors_or_debug_output() {
        let client = Client::new("http://127.0.0.1:8080", "tok-secret-1").expect("client");
        assert!(!format!("{client:?}").contains("tok-secret-1"));
        let builder = Client::builder("http://127.0.0.1:8080", "tok-secret-2");
        assert!(!format!("{builder:?}").contains("tok-secret-2"));
        let refused = Client::new("http://127.0.0.1:8080", "tok\nsecret-3");
        assert!(matches!(refused, Err(BuildError::InvalidToken)));
        assert!(!format!("{refused:?}").contains("secret-3"));
        client.close(Duration::ZERO).await;
    }
}
