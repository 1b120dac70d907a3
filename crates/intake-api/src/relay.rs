//! `intake relay` (contract §12): publishes every stored event, per tenant in feed order, to
//! NATS JetStream as `<prefix>.<tenant>.<event_type>` with `Nats-Msg-Id: <event id>`, the body
//! the event as `GET /v1/events/{id}` returns it.
//!
//! Exactly once, effectively: a tenant's position is stored in PostgreSQL only after JetStream
//! acknowledged every event up to it, so a relay killed at any moment re-publishes at most the
//! page it was on, and JetStream's duplicate window drops those by their message id. Several
//! relays may run: each (stream, tenant) is claimed with a PostgreSQL session lock held on a
//! connection of the relay's own, which ends with the relay; the others take over a dead
//! relay's tenants at their next look (`relay.claim_secs`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::Context;
use async_nats::jetstream::{self, stream};
use intake_domain::{EventStore, FeedPosition, FeedQuery, TenantId};
use intake_storage::{PgStore, RelayClaims};
use prometheus::{Encoder, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::settings::{RelaySettings, Settings};
use intake_service::EventBody;

/// Lag is counted up to this many events per tenant.
const LAG_CAP: i64 = 1_000_000;

/// The relay's metrics.
#[derive(Clone)]
struct RelayMetrics {
    registry: Registry,
    published: IntCounterVec,
    errors: IntCounter,
    lag: IntGaugeVec,
}

impl RelayMetrics {
    fn new() -> anyhow::Result<Self> {
        let registry = Registry::new();
        let published = IntCounterVec::new(
            Opts::new(
                "intake_relay_published_events_total",
                "Events JetStream acknowledged, by tenant.",
            ),
            &["tenant"],
        )?;
        let errors = IntCounter::new(
            "intake_relay_publish_errors_total",
            "Pages that could not be published (NATS down, no acknowledgement); retried.",
        )?;
        let lag = IntGaugeVec::new(
            Opts::new("intake_relay_lag_events", "Events stored but not yet published, by tenant."),
            &["tenant"],
        )?;
        registry.register(Box::new(published.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(lag.clone()))?;
        Ok(Self { registry, published, errors, lag })
    }

    fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

/// Runs the relay until SIGTERM or SIGINT; in-flight publishes finish first.
pub async fn run(settings: &Settings) -> anyhow::Result<()> {
    let relay = &settings.relay;
    let store = PgStore::connect_lazy(&settings.database.url, &settings.database.pool())
        .context("DATABASE_URL / database.url is not a valid PostgreSQL URL")?;
    let metrics = RelayMetrics::new()?;
    let server = metrics_server(relay.metrics_port, metrics.clone())?;
    let server_handle = server.handle();
    tokio::spawn(server);

    let stopping = Arc::new(AtomicBool::new(false));
    tokio::spawn({
        let stopping = stopping.clone();
        async move {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(term) => term,
                    Err(error) => {
                        tracing::error!(%error, "cannot listen for SIGTERM");
                        return;
                    }
                };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            tracing::info!("stopping: finishing the publishes in flight");
            stopping.store(true, Ordering::SeqCst);
        }
    });

    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(&relay.nats_url)
        .await
        .with_context(|| format!("cannot reach NATS at {}", relay.nats_url))?;
    let jetstream = jetstream::new(client);
    let mut relay_loop = Relay {
        store,
        jetstream,
        settings: relay.clone(),
        metrics,
        claims: None,
        owned: HashMap::new(),
        last_claim: None,
    };
    relay_loop.ensure_stream(&stopping).await;
    tracing::info!(stream = %relay.stream, nats = %relay.nats_url, "relaying");
    while !stopping.load(Ordering::SeqCst) {
        let busy = relay_loop.round(&stopping).await;
        if !busy {
            tokio::time::sleep(Duration::from_millis(relay.poll_ms)).await;
        }
    }
    server_handle.stop(true).await;
    tracing::info!("stopped");
    Ok(())
}

fn metrics_server(port: u16, metrics: RelayMetrics) -> anyhow::Result<actix_web::dev::Server> {
    let server = HttpServer::new(move || {
        let metrics = metrics.clone();
        App::new()
            .route(
                "/healthz",
                web::get()
                    .to(|| async { HttpResponse::Ok().json(serde_json::json!({"status": "ok"})) }),
            )
            .route(
                "/metrics",
                web::get().to(move || {
                    let body = metrics.render();
                    async move {
                        HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(body)
                    }
                }),
            )
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", port))
    .with_context(|| format!("cannot listen on relay.metrics_port {port}"))?
    .run();
    Ok(server)
}

struct Relay {
    store: PgStore,
    jetstream: jetstream::Context,
    settings: RelaySettings,
    metrics: RelayMetrics,
    claims: Option<RelayClaims>,
    /// The tenants this relay publishes, and how far.
    owned: HashMap<TenantId, FeedPosition>,
    last_claim: Option<Instant>,
}

impl Relay {
    /// Creates the stream when missing, or checks that it captures the subjects and keeps
    /// duplicates out long enough; waits with backoff while NATS is down.
    async fn ensure_stream(&self, stopping: &AtomicBool) {
        let wanted = format!("{}.>", self.settings.subject_prefix);
        let window = Duration::from_secs(self.settings.duplicate_window_secs);
        let mut backoff = Duration::from_millis(200);
        while !stopping.load(Ordering::SeqCst) {
            let config = stream::Config {
                name: self.settings.stream.clone(),
                subjects: vec![wanted.clone()],
                duplicate_window: window,
                ..Default::default()
            };
            match self.jetstream.get_or_create_stream(config).await {
                Ok(mut existing) => match existing.info().await {
                    Ok(info) => {
                        let fits = info.config.subjects.contains(&wanted);
                        if !fits || info.config.duplicate_window < window {
                            tracing::warn!(
                                stream = %self.settings.stream,
                                subjects = ?info.config.subjects,
                                duplicate_window = ?info.config.duplicate_window,
                                "the existing stream does not capture {wanted} or keeps duplicates \
                                 out for less than {window:?}"
                            );
                        }
                        return;
                    }
                    Err(error) => tracing::warn!(%error, "cannot read the stream; retrying"),
                },
                Err(error) => tracing::warn!(%error, "cannot create the stream; retrying"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// One round: keep the claims, claim free tenants now and then, publish a page of each
    /// owned tenant. Whether any page was full (more is waiting).
    async fn round(&mut self, stopping: &AtomicBool) -> bool {
        if let Err(error) = self.keep_claims().await {
            tracing::warn!(%error, "cannot hold the relay's claims; retrying");
            return false;
        }
        let mut busy = false;
        let tenants: Vec<TenantId> = self.owned.keys().cloned().collect();
        for tenant in tenants {
            if stopping.load(Ordering::SeqCst) {
                break;
            }
            match self.publish_page(&tenant).await {
                Ok(full) => busy |= full,
                Err(error) => {
                    self.metrics.errors.inc();
                    tracing::warn!(tenant = %tenant, error = %format!("{error:#}"), "a page was not published; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
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
            self.claims = Some(self.store.relay_claims().await?);
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
        for tenant in self.store.relay_tenants().await? {
            if self.owned.contains_key(&tenant) {
                continue;
            }
            if claims.claim(&self.settings.stream, &tenant).await? {
                let position = self.store.relay_position(&self.settings.stream, &tenant).await?;
                tracing::info!(tenant = %tenant, "relaying this tenant");
                self.owned.insert(tenant, position);
            }
        }
        // Lag of every owned tenant, for /metrics.
        for (tenant, position) in &self.owned {
            let lag = self.store.relay_lag(tenant, *position, LAG_CAP).await?;
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
            let subject = format!(
                "{}.{}.{}",
                self.settings.subject_prefix,
                tenant.as_str(),
                event.event_type
            );
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", event.event_id.to_string().as_str());
            let body = serde_json::to_vec(&EventBody::from(event))?;
            acks.push(self.jetstream.publish_with_headers(subject, headers, body.into()).await?);
        }
        for ack in acks {
            ack.await.context("JetStream did not acknowledge a publish")?;
        }
        self.store.save_relay_position(&self.settings.stream, tenant, page.next).await?;
        self.owned.insert(tenant.clone(), page.next);
        self.metrics.published.with_label_values(&[tenant.as_str()]).inc_by(count as u64);
        let lag = self.metrics.lag.with_label_values(&[tenant.as_str()]);
        lag.set((lag.get() - count as i64).max(0));
        Ok(count == usize::from(limit))
    }
}
