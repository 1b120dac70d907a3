//! The relay's loop: keep the claims, claim free tenants now and then, publish a page of each
//! owned tenant, store how far it got.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::{self, stream};
use intake_domain::{FeedPosition, FeedQuery, RelayClaims, RelayStore, StoredEvent, TenantId};
use intake_service::EventBody;
use tokio_util::sync::CancellationToken;

use crate::metrics::RelayMetrics;
use crate::settings::RelaySettings;

/// Lag is counted up to this many events per tenant.
const LAG_CAP: i64 = 1_000_000;

/// One relay process's state.
#[derive(Debug)]
pub(crate) struct Relay {
    store: Arc<dyn RelayStore>,
    jetstream: jetstream::Context,
    settings: RelaySettings,
    metrics: RelayMetrics,
    shutdown: CancellationToken,
    claims: Option<Box<dyn RelayClaims>>,
    /// The tenants this relay publishes, and how far.
    owned: HashMap<TenantId, FeedPosition>,
    last_claim: Option<Instant>,
}

impl Relay {
    pub(crate) fn new(
        store: Arc<dyn RelayStore>,
        client: async_nats::Client,
        settings: RelaySettings,
        metrics: RelayMetrics,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            store,
            jetstream: jetstream::new(client),
            settings,
            metrics,
            shutdown,
            claims: None,
            owned: HashMap::new(),
            last_claim: None,
        }
    }

    /// Makes sure of the stream, then publishes round after round until the shutdown.
    pub(crate) async fn run(&mut self) {
        self.ensure_stream().await;
        tracing::info!(stream = %self.settings.stream, nats = %self.settings.nats_url, "relaying");
        while !self.shutdown.is_cancelled() {
            let busy = self.round().await;
            if !busy {
                self.pause(Duration::from_millis(self.settings.poll_ms)).await;
            }
        }
    }

    /// Sleeps for `duration`, or until the shutdown.
    async fn pause(&self, duration: Duration) {
        self.until_shutdown(tokio::time::sleep(duration)).await;
    }

    /// What `work` gives, unless the shutdown comes first (then `None`: nothing waits on it).
    async fn until_shutdown<F: Future>(&self, work: F) -> Option<F::Output> {
        tokio::select! {
            output = work => Some(output),
            () = self.shutdown.cancelled() => None,
        }
    }

    /// Creates the stream when missing, or checks that it captures the subjects and keeps
    /// duplicates out long enough; waits with backoff while NATS is down.
    async fn ensure_stream(&self) {
        let wanted = format!("{}.>", self.settings.subject_prefix);
        let window = Duration::from_secs(self.settings.duplicate_window_secs);
        let mut backoff = Duration::from_millis(200);
        while !self.shutdown.is_cancelled() {
            let config = stream::Config {
                name: self.settings.stream.clone(),
                subjects: vec![wanted.clone()],
                duplicate_window: window,
                ..Default::default()
            };
            match self.until_shutdown(self.jetstream.get_or_create_stream(config)).await {
                None => return,
                Some(Ok(mut existing)) => match self.until_shutdown(existing.info()).await {
                    None => return,
                    Some(Ok(info)) => {
                        let fits = info.config.subjects.contains(&wanted);
                        if !fits || info.config.duplicate_window < window {
                            tracing::warn!(
                                stream = %self.settings.stream,
                                subjects = ?info.config.subjects,
                                duplicate_window = ?info.config.duplicate_window,
                                "the existing stream does not capture {wanted} or keeps \
                                 duplicates out for less than {window:?}"
                            );
                        }
                        return;
                    }
                    Some(Err(error)) => tracing::warn!(%error, "cannot read the stream; retrying"),
                },
                Some(Err(error)) => tracing::warn!(%error, "cannot create the stream; retrying"),
            }
            self.pause(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// One round: keep the claims, claim free tenants now and then, publish a page of each
    /// owned tenant. Whether any page was full (more is waiting).
    async fn round(&mut self) -> bool {
        if let Err(error) = self.keep_claims().await {
            tracing::warn!(%error, "cannot hold the relay's claims; retrying");
            return false;
        }
        let mut busy = false;
        let tenants: Vec<TenantId> = self.owned.keys().cloned().collect();
        for tenant in tenants {
            if self.shutdown.is_cancelled() {
                break;
            }
            match self.publish_page(&tenant).await {
                Ok(full) => busy |= full,
                Err(error) => {
                    self.metrics.errors.inc();
                    tracing::warn!(
                        tenant = %tenant,
                        error = %format!("{error:#}"),
                        "a page was not published; retrying"
                    );
                    self.pause(Duration::from_millis(500)).await;
                }
            }
        }
        busy
    }

    async fn keep_claims(&mut self) -> anyhow::Result<()> {
        let alive = match self.claims.as_mut() {
            Some(claims) => claims.alive().await,
            None => false,
        };
        if !alive {
            // Without the connection the claims are gone: another relay may own these now.
            self.owned.clear();
            self.claims = Some(self.store.claims().await?);
            self.last_claim = None;
        }
        let due = self
            .last_claim
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(self.settings.claim_secs));
        if !due {
            return Ok(());
        }
        self.last_claim = Some(Instant::now());
        let Some(claims) = self.claims.as_mut() else { return Ok(()) };
        for tenant in self.store.tenants().await? {
            if self.owned.contains_key(&tenant) {
                continue;
            }
            if claims.claim(&self.settings.stream, &tenant).await? {
                let position = self.store.position(&self.settings.stream, &tenant).await?;
                tracing::info!(tenant = %tenant, "relaying this tenant");
                self.owned.insert(tenant, position);
            }
        }
        // Lag of every owned tenant, for /metrics.
        for (tenant, position) in &self.owned {
            let lag = self.store.lag(tenant, *position, LAG_CAP).await?;
            self.metrics.lag.with_label_values(&[tenant.as_str()]).set(lag);
        }
        Ok(())
    }

    /// Publishes the next page of a tenant's feed, all in flight at once, then awaits every
    /// acknowledgement, then stores the position. Whether the page was full.
    async fn publish_page(&mut self, tenant: &TenantId) -> anyhow::Result<bool> {
        let after = self.owned.get(tenant).copied().unwrap_or(FeedPosition::START);
        let limit = self.settings.page_size.max(1);
        let page =
            self.store.feed_page(tenant, &FeedQuery { after, limit, event_type: None }).await?;
        if page.events.is_empty() {
            return Ok(false);
        }
        let count = page.events.len();
        let mut acks = Vec::with_capacity(count);
        for event in page.events {
            let message = Message::of(&self.settings.subject_prefix, tenant, event)?;
            acks.push(
                self.jetstream
                    .publish_with_headers(message.subject, message.headers, message.body.into())
                    .await?,
            );
        }
        for ack in acks {
            ack.await.context("JetStream did not acknowledge a publish")?;
        }
        self.store.save_position(&self.settings.stream, tenant, page.next).await?;
        self.owned.insert(tenant.clone(), page.next);
        self.metrics.published.with_label_values(&[tenant.as_str()]).inc_by(count as u64);
        let lag = self.metrics.lag.with_label_values(&[tenant.as_str()]);
        lag.set((lag.get() - count as i64).max(0));
        Ok(count == usize::from(limit))
    }
}

/// What one stored event is published as.
#[derive(Debug)]
struct Message {
    /// `<prefix>.<tenant>.<event_type>`.
    subject: String,
    /// `Nats-Msg-Id: <event id>`, so that JetStream's duplicate window drops a re-publish.
    headers: async_nats::HeaderMap,
    /// The event as `GET /v1/events/{id}` returns it.
    body: Vec<u8>,
}

impl Message {
    fn of(prefix: &str, tenant: &TenantId, event: StoredEvent) -> anyhow::Result<Self> {
        let subject = format!("{prefix}.{}.{}", tenant.as_str(), event.event_type);
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", event.event_id.to_string().as_str());
        let body = intake_domain::event::json_bytes(&EventBody::from(event))?;
        Ok(Self { subject, headers, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_published_under_its_tenant_and_type_with_its_id_and_the_api_body() {
        let event = StoredEvent {
            event_id: "evt_0193e4a27c1e7d3a9f005c2b8f1e4a10".parse().expect("id"),
            event_type: "order.placed".into(),
            occurred_at: "2025-12-22T10:30:00Z".parse().expect("time"),
            received_at: "2025-12-22T10:30:01.250Z".parse().expect("time"),
            idempotency_key: "k-1".into(),
            data: serde_json::json!({"n": 1}),
            schema_version: None,
            cloudevent: None,
            correction: None,
        };
        let tenant = TenantId::parse("acme").expect("tenant");
        let message = Message::of("intake", &tenant, event.clone()).expect("message");
        assert_eq!(message.subject, "intake.acme.order.placed");
        assert_eq!(
            message.headers.get("Nats-Msg-Id").map(|v| v.as_str()),
            Some("evt_0193e4a27c1e7d3a9f005c2b8f1e4a10")
        );
        let expected = intake_domain::event::json_bytes(&EventBody::from(event)).expect("json");
        assert_eq!(message.body, expected);
        let body: serde_json::Value = serde_json::from_slice(&message.body).expect("json");
        assert_eq!(body["event_id"], "evt_0193e4a27c1e7d3a9f005c2b8f1e4a10");
        assert_eq!(body["received_at"], "2025-12-22T10:30:01.250Z");
    }
}
