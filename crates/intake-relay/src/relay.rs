//! The relay's loop: keep the claims, claim free tenants now and then, publish a page of each
//! owned tenant, store how far it got.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::{self, stream};
use intake_domain::{EventId, FeedPosition, RelayClaims, RelayStore, StoredEvent, TenantId};
use intake_service::EventBody;
use tokio_util::sync::CancellationToken;

use crate::metrics::RelayMetrics;
use crate::settings::RelaySettings;

/// Lag is counted up to this many events per tenant.
const LAG_CAP: i64 = 1_000_000;

/// A tenant whose page failed is tried again after this, then twice as long each time it
/// fails again, up to [`MAX_BACKOFF`]; the other tenants go on meanwhile.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(4);

/// One relay process's state.
#[derive(Debug)]
pub(crate) struct Relay {
    store: Arc<dyn RelayStore>,
    /// The connection: what the server takes (`max_payload`).
    client: async_nats::Client,
    jetstream: jetstream::Context,
    settings: RelaySettings,
    metrics: RelayMetrics,
    shutdown: CancellationToken,
    claims: Option<Box<dyn RelayClaims>>,
    /// The tenants this relay publishes, how far, and when to try a failing one again.
    owned: HashMap<TenantId, Owned>,
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
            jetstream: jetstream::new(client.clone()),
            client,
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
    /// owned tenant (but those whose pages fail, until their own next attempt is due: one
    /// failing tenant never holds up the others). Whether more is waiting.
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
            let retry = self.owned.get(&tenant).and_then(|owned| owned.retry);
            if retry.is_some_and(|retry| retry.at > Instant::now()) {
                continue;
            }
            let outcome = self.publish_page(&tenant).await;
            let Some(owned) = self.owned.get_mut(&tenant) else { continue };
            match outcome {
                Ok(more) => {
                    busy |= more;
                    owned.retry = None;
                }
                Err(error) => {
                    self.metrics.errors.inc();
                    let backoff =
                        retry.map_or(FIRST_BACKOFF, |retry| (retry.backoff * 2).min(MAX_BACKOFF));
                    owned.retry = Some(Retry { at: Instant::now() + backoff, backoff });
                    tracing::warn!(
                        tenant = %tenant,
                        error = %format!("{error:#}"),
                        retry_in = ?backoff,
                        "a page was not published; retrying this tenant"
                    );
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
                self.owned.insert(tenant, Owned { position, retry: None });
            }
        }
        // Lag of every owned tenant, for /metrics.
        for (tenant, owned) in &self.owned {
            let lag = self.store.lag(tenant, owned.position, LAG_CAP).await?;
            self.metrics.lag.with_label_values(&[tenant.as_str()]).set(lag);
        }
        Ok(())
    }

    /// Publishes the next page of a tenant's feed (`relay.page_size` events, no more than
    /// `relay.max_page_bytes` of messages), all in flight at once, then awaits the
    /// acknowledgements in feed order, then stores the position after the last event settled
    /// before the first failure: acknowledged, or parked because it can never be published
    /// (larger than the server's `max_payload`, or refused by JetStream for good). A failure is
    /// returned once that position is stored; the next attempt starts from it, and JetStream's
    /// duplicate window drops the events after it that were acknowledged already. Whether more
    /// is waiting.
    async fn publish_page(&mut self, tenant: &TenantId) -> anyhow::Result<bool> {
        let notices_waiting = self.publish_erased_notices(tenant).await?;
        let after = self.owned.get(tenant).map_or(FeedPosition::START, |owned| owned.position);
        let limit = self.settings.page_size.max(1);
        // Bounded in bytes as well as in events: what a page reads and holds in flight.
        let max_bytes = self.settings.max_page_bytes.max(1);
        let page = self.store.relay_page(tenant, after, limit, max_bytes).await?;
        if page.events.is_empty() {
            return Ok(page.full);
        }
        let count = page.events.len();
        // What the server takes (its INFO; the client refuses larger messages itself).
        let max_payload = self.client.max_payload();
        let mut slots = Vec::with_capacity(count);
        let mut in_flight = 0;
        let mut failure = None;
        for (position, event) in page.events {
            let event_id = event.event_id;
            let message = match Message::of(&self.settings.subject_prefix, tenant, event) {
                Ok(message) => message,
                Err(error) => {
                    let reason = format!("cannot be written as JSON: {error}");
                    slots.push((position, event_id, Slot::Parked(reason)));
                    continue;
                }
            };
            let size = message.size();
            if max_payload > 0 && size > max_payload {
                let reason = format!(
                    "{size} bytes, more than the NATS server's max_payload of {max_payload}"
                );
                slots.push((position, event_id, Slot::Parked(reason)));
                continue;
            }
            if in_flight > 0 && in_flight + size > max_bytes {
                // The rest waits for the next page.
                break;
            }
            in_flight += size;
            let sent = self
                .jetstream
                .publish_with_headers(message.subject, message.headers, message.body.into())
                .await;
            match sent {
                Ok(ack) => slots.push((position, event_id, Slot::InFlight(ack))),
                Err(error) if refused_for_good(&error) => {
                    let reason = format!("refused: {error}");
                    slots.push((position, event_id, Slot::Parked(reason)));
                }
                Err(error) => {
                    // Nothing after it is sent: it would only overtake this one.
                    failure = Some(anyhow::Error::new(error).context("cannot publish"));
                    break;
                }
            }
        }
        let all = failure.is_none() && slots.len() == count;
        // Settled in feed order: the position never passes an event that is not.
        let mut settled = after;
        let (mut published, mut parked) = (0u64, 0i64);
        let mut acknowledged = Vec::with_capacity(count);
        for (position, event_id, slot) in slots {
            let reason = match slot {
                Slot::InFlight(ack) => match ack.await {
                    Ok(_) => {
                        published += 1;
                        acknowledged.push(event_id);
                        settled = position;
                        continue;
                    }
                    Err(error) if refused_for_good(&error) => {
                        format!("refused by JetStream: {error}")
                    }
                    Err(error) => {
                        let error = anyhow::Error::new(error)
                            .context("JetStream did not acknowledge a publish");
                        failure = Some(error);
                        break;
                    }
                },
                Slot::Parked(reason) => reason,
            };
            if let Err(error) = self.park(tenant, event_id, &reason).await {
                failure = Some(error);
                break;
            }
            parked += 1;
            settled = position;
        }
        if settled != after {
            self.store.save_position(&self.settings.stream, tenant, settled, &acknowledged).await?;
            if let Some(owned) = self.owned.get_mut(tenant) {
                owned.position = settled;
            }
            self.metrics.published.with_label_values(&[tenant.as_str()]).inc_by(published);
            let lag = self.metrics.lag.with_label_values(&[tenant.as_str()]);
            lag.set((lag.get() - published as i64 - parked).max(0));
        }
        match failure {
            Some(error) => Err(error),
            None => Ok(page.full || !all || notices_waiting),
        }
    }

    /// Publishes a notice of each erased event this stream had published (contract §14), on
    /// `<prefix>.<tenant>.$erased` with `Nats-Msg-Id: erased:<event id>`, then forgets those
    /// JetStream acknowledged: a notice is published once (a re-publish after a crash falls in
    /// the duplicate window). Whether more notices are waiting.
    async fn publish_erased_notices(&mut self, tenant: &TenantId) -> anyhow::Result<bool> {
        let limit = self.settings.page_size.max(1);
        let notices = self.store.erased_notices(&self.settings.stream, tenant, limit).await?;
        if notices.is_empty() {
            return Ok(false);
        }
        let subject = format!("{}.{}.$erased", self.settings.subject_prefix, tenant.as_str());
        let mut acks = Vec::with_capacity(notices.len());
        for notice in &notices {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", format!("erased:{}", notice.event_id).as_str());
            let body = serde_json::to_vec(&serde_json::json!({
                "event_id": notice.event_id.to_string(),
                "erased_at": intake_service::format_timestamp(notice.erased_at),
            }))?;
            let ack = self
                .jetstream
                .publish_with_headers(subject.clone(), headers, body.into())
                .await
                .context("cannot publish a notice of an erased event")?;
            acks.push((notice.event_id, ack));
        }
        let mut sent = Vec::with_capacity(acks.len());
        let mut failure = None;
        for (event_id, ack) in acks {
            match ack.await {
                Ok(_) => sent.push(event_id),
                Err(error) => {
                    failure =
                        Some(anyhow::Error::new(error).context("a notice was not acknowledged"));
                    break;
                }
            }
        }
        if !sent.is_empty() {
            self.store.notices_sent(&self.settings.stream, tenant, &sent).await?;
            self.metrics.erased_notices.inc_by(sent.len() as u64);
        }
        match failure {
            Some(error) => Err(error),
            None => Ok(notices.len() == usize::from(limit)),
        }
    }

    /// Parks an event that can never be published: recorded in the dead letters (with why,
    /// never its data), counted and logged, so that the tenant's position may move past it.
    async fn park(&self, tenant: &TenantId, event_id: EventId, reason: &str) -> anyhow::Result<()> {
        self.store
            .park(&self.settings.stream, tenant, event_id, reason)
            .await
            .context("cannot park an event that can never be published")?;
        self.metrics.parked.inc();
        tracing::warn!(
            tenant = %tenant,
            event_id = %event_id,
            reason,
            "an event that can never be published was parked in relay_dead_letters; \
             the tenant's later events go on"
        );
        Ok(())
    }
}

/// A tenant this relay publishes.
#[derive(Debug, Clone, Copy)]
struct Owned {
    /// How far its feed was published (and stored).
    position: FeedPosition,
    /// Set while its pages fail: not before `at`, and the wait after the next failure.
    retry: Option<Retry>,
}

/// When a failing tenant is tried again.
#[derive(Debug, Clone, Copy)]
struct Retry {
    at: Instant,
    backoff: Duration,
}

/// What became of one event of a page, in feed order.
enum Slot {
    /// Sent; JetStream's acknowledgement is awaited.
    InFlight(jetstream::context::PublishAckFuture),
    /// Never to be published, and why.
    Parked(String),
}

/// Whether a publish failed for a reason that will not change however often it is retried:
/// the message is larger than the server (`max_payload`) or the stream (`max_msg_size`, or
/// its headers' maximum) takes. Anything else (NATS down, timeouts, a stream that is missing or
/// full for now) passes, and is retried.
fn refused_for_good(error: &jetstream::context::PublishError) -> bool {
    use jetstream::context::PublishErrorKind;
    use jetstream::ErrorCode;
    match error.kind() {
        PublishErrorKind::MaxPayloadExceeded => true,
        PublishErrorKind::Other => std::error::Error::source(error)
            .and_then(|source| source.downcast_ref::<jetstream::Error>())
            .is_some_and(|refusal| {
                let code = refusal.error_code();
                code == ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM
                    || code == ErrorCode::STREAM_HEADER_EXCEEDS_MAXIMUM
            }),
        _ => false,
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

    /// Its size as the server counts it against `max_payload`: the body and the header block
    /// (`NATS/1.0`, each `name: value`, an empty line, every line ending in CRLF).
    fn size(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .flat_map(|(name, values)| values.iter().map(move |value| (name, value)))
            .map(|(name, value)| AsRef::<str>::as_ref(name).len() + 2 + value.as_str().len() + 2)
            .sum();
        self.body.len() + "NATS/1.0\r\n".len() + headers + 2
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
        // As the server counts it against max_payload: the header block, then the body.
        let header = "NATS/1.0\r\nNats-Msg-Id: evt_0193e4a27c1e7d3a9f005c2b8f1e4a10\r\n\r\n";
        assert_eq!(message.size(), header.len() + message.body.len());
        let body: serde_json::Value = serde_json::from_slice(&message.body).expect("json");
        assert_eq!(body["event_id"], "evt_0193e4a27c1e7d3a9f005c2b8f1e4a10");
        assert_eq!(body["received_at"], "2025-12-22T10:30:01.250Z");
    }
}
