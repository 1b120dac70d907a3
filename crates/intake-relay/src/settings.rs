//! What the relay is told: where NATS is, what to publish into, and how eagerly.

use serde::Deserialize;

/// The relay's settings (`[relay]` in `config/base.toml`, which documents each key).
#[derive(Debug, Clone, Deserialize)]
pub struct RelaySettings {
    /// The NATS server.
    pub nats_url: String,
    /// Subjects are `<prefix>.<tenant>.<event_type>`.
    pub subject_prefix: String,
    /// The JetStream stream, capturing `<prefix>.>`.
    pub stream: String,
    /// The stream's duplicate window (created streams; an existing one must have at least this).
    pub duplicate_window_secs: u64,
    /// Events published per round trip of acknowledgements.
    pub page_size: u16,
    /// Bytes a page holds at most, read and in flight (always at least one event).
    pub max_page_bytes: usize,
    /// How long an idle relay waits before looking for new events.
    pub poll_ms: u64,
    /// How often a relay looks for tenants nobody relays (new ones, or a dead relay's).
    pub claim_secs: u64,
}
