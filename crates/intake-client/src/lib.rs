//! The official Rust client of the Event Intake API (contract §16).
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let client = intake_client::Client::new("http://127.0.0.1:8080", "test_123")?;
//! let key = client.send("user.created", serde_json::json!({"user_id": "u_1"})).await?;
//! let counts = client.close(std::time::Duration::from_secs(5)).await;
//! println!("{key}: {counts:?}");
//! # Ok(()) }
//! ```
//!
//! This crate owns the producer's side of the wire: a bounded queue (in events and in bytes)
//! that `send` fills without touching the network, one background tokio task that sends it
//! through `POST /v1/events/batch` (with `sent_at`, gzip above a few KiB), the retry policy
//! (connection errors, timeouts, `408`, `429`, `5xx`: exponential backoff with full jitter,
//! `Retry-After` honoured, the same idempotency keys every time, until `max_retry_time`),
//! splitting a batch over the token's burst by the `q` of `RateLimit-Policy`, the flush and
//! close bookkeeping, `send_now` for one event at once, and the counts.
//!
//! It must not know the server's insides: it speaks only the HTTP contract (no intake crate is
//! a dependency), checks nothing the server checks, and never logs a token, an idempotency key
//! or event data (its `tracing` events, at debug and trace level, carry counts, statuses and
//! durations only).

mod client;
mod error;
mod event;
mod ledger;
mod options;
mod queue;
mod wire;
mod worker;

pub use client::{Client, Stats};
pub use error::{BuildError, Failure, FieldError, ItemError, Problem, SendError, SendNowError};
pub use event::{Accepted, Event};
pub use ledger::FlushCounts;
pub use options::{ClientBuilder, OnFull};
