//! `intake relay` (contract §12): publishes every stored event, per tenant in feed order, to
//! NATS JetStream as `<prefix>.<tenant>.<event_type>` with `Nats-Msg-Id: <event id>`, the body
//! the event as `GET /v1/events/{id}` returns it ([`intake_service::EventBody`]).
//!
//! Exactly once, effectively: a tenant's position is stored only after JetStream acknowledged
//! every event up to it, so a relay killed at any moment re-publishes at most the page it was
//! on, and JetStream's duplicate window drops those by their message id. Several relays may
//! run: each (stream, tenant) is claimed through [`intake_domain::RelayClaims`] (in PostgreSQL,
//! a session lock held on a connection of the relay's own), and the claims end with the relay;
//! the others take over a dead relay's tenants at their next look (`relay.claim_secs`).
//!
//! This crate owns the relay's loop, its NATS JetStream client, its settings and its metrics'
//! names. It reaches storage only through the domain's [`RelayStore`] port, and must not know
//! SQL (sqlx, `intake-storage`) or HTTP (actix): the `intake` binary picks the store, serves
//! `/healthz` and `/metrics` from the registry it passes in, and cancels the token on SIGTERM.

mod metrics;
mod relay;
mod settings;
#[cfg(feature = "test-support")]
pub mod testing;

use std::sync::Arc;

use anyhow::Context;
use intake_domain::RelayStore;
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

use crate::metrics::RelayMetrics;
use crate::relay::Relay;
pub use crate::settings::RelaySettings;

/// Relays until `shutdown` is cancelled: the page in flight is published and its position
/// stored first, then the claims are given up and the NATS connection closed. Registers the
/// relay's metrics in `registry` (once per registry). Waits with backoff while NATS or storage
/// is down; fails only when it cannot start (a bad NATS URL, metrics already registered).
pub async fn run(
    store: Arc<dyn RelayStore>,
    settings: RelaySettings,
    registry: &Registry,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let metrics = RelayMetrics::register(registry).context("registering the relay's metrics")?;
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(&settings.nats_url)
        .await
        .with_context(|| format!("cannot reach NATS at {}", settings.nats_url))?;
    Relay::new(store, client, settings, metrics, shutdown).run().await;
    // Dropped here: the claims (given up) and the last handle of the NATS connection (closed).
    Ok(())
}
