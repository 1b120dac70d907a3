//! The client's options and their defaults (contract §16), and the builder that takes them.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;

use crate::error::{BuildError, ItemError};

/// What `send` does when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFull {
    /// Wait for room, at most `timeout`; then give the event back as
    /// [`crate::SendError::Timeout`] (counted in `dropped`).
    Block {
        /// The longest `send` waits for room.
        timeout: Duration,
    },
    /// Drop the event at once: [`crate::SendError::QueueFull`] (counted in `dropped`).
    Drop,
}

impl Default for OnFull {
    fn default() -> Self {
        Self::Block { timeout: Duration::from_secs(5) }
    }
}

/// The callback that hears of every event that failed.
pub(crate) type OnError = Arc<dyn Fn(ItemError) + Send + Sync>;

/// The options, checked.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) max_batch: usize,
    pub(crate) flush_interval: Duration,
    pub(crate) max_queue: usize,
    pub(crate) max_queue_bytes: usize,
    pub(crate) on_full: OnFull,
    pub(crate) max_retry_time: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) retry_initial: Duration,
    pub(crate) retry_max: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_batch: 100,
            flush_interval: Duration::from_millis(500),
            max_queue: 10_000,
            max_queue_bytes: 64 * 1024 * 1024,
            on_full: OnFull::default(),
            max_retry_time: Duration::from_secs(600),
            request_timeout: Duration::from_secs(30),
            retry_initial: Duration::from_millis(250),
            retry_max: Duration::from_secs(30),
        }
    }
}

/// Builds a [`Client`](crate::Client): `Client::builder(base_url, token)`, options, then
/// [`ClientBuilder::build`].
pub struct ClientBuilder {
    pub(crate) base_url: String,
    pub(crate) token: String,
    pub(crate) options: Options,
    pub(crate) on_error: Option<OnError>,
}

impl ClientBuilder {
    pub(crate) fn new(base_url: String, token: String) -> Self {
        Self { base_url, token, options: Options::default(), on_error: None }
    }

    /// The most events in one batch request (default 100, at most 1,000). A token whose burst is
    /// smaller makes the batches smaller.
    #[must_use]
    pub fn max_batch(mut self, events: usize) -> Self {
        self.options.max_batch = events;
        self
    }

    /// A batch that is not full is sent at most this long after its first event was queued
    /// (default 0.5 s).
    #[must_use]
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.options.flush_interval = interval;
        self
    }

    /// The most events waiting to be sent (default 10,000).
    #[must_use]
    pub fn max_queue(mut self, events: usize) -> Self {
        self.options.max_queue = events;
        self
    }

    /// The most bytes of events (as JSON) waiting to be sent (default 64 MiB). Whichever of
    /// the two bounds is reached first makes the queue full.
    #[must_use]
    pub fn max_queue_bytes(mut self, bytes: usize) -> Self {
        self.options.max_queue_bytes = bytes;
        self
    }

    /// What `send` does when the queue is full (default: block for at most 5 s).
    #[must_use]
    pub fn on_full(mut self, policy: OnFull) -> Self {
        self.options.on_full = policy;
        self
    }

    /// How long a batch is retried before its events count as failed (default 10 min).
    #[must_use]
    pub fn max_retry_time(mut self, limit: Duration) -> Self {
        self.options.max_retry_time = limit;
        self
    }

    /// How long one request may take, connecting included (default 30 s).
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.options.request_timeout = timeout;
        self
    }

    /// The backoff between retries: the n-th retry waits a random time up to
    /// `initial × 2ⁿ⁻¹`, at most `max` (defaults 0.25 s and 30 s), and never less than the
    /// server's `Retry-After`.
    #[must_use]
    pub fn retry_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.options.retry_initial = initial;
        self.options.retry_max = max;
        self
    }

    /// Called once for every event that failed (rejected by the server, refused with its
    /// request, or given up on), from the client's task: keep it short.
    #[must_use]
    pub fn on_error(mut self, callback: impl Fn(ItemError) + Send + Sync + 'static) -> Self {
        self.on_error = Some(Arc::new(callback));
        self
    }
}

/// The token and the callback never show.
impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("base_url", &self.base_url)
            .field("options", &self.options)
            .field("on_error", &self.on_error.is_some())
            .finish_non_exhaustive()
    }
}

/// The base URL, ending in `/` so that endpoints join below any path it has.
pub(crate) fn base_url(text: &str) -> Result<Url, BuildError> {
    let invalid = || BuildError::InvalidUrl(text.to_owned());
    let mut url = Url::parse(text).map_err(|_| invalid())?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(invalid());
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_join_below_the_base_url_whatever_its_path() {
        let cases = [
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080/v1/events"),
            ("https://example.com/intake", "https://example.com/intake/v1/events"),
            ("https://example.com/intake/", "https://example.com/intake/v1/events"),
        ];
        for (base, events) in cases {
            let url = base_url(base).expect("valid").join("v1/events").expect("joins");
            assert_eq!(url.as_str(), events, "{base}");
        }
        for bad in ["127.0.0.1:8080", "ftp://example.com", "not a url", "mailto:a@b"] {
            assert!(base_url(bad).is_err(), "{bad}");
        }
    }
}
