//! What the handlers share: the application layer's ingest, the stores behind the domain's
//! traits, and the limits requests are held to. Authentication and metrics are registered
//! beside it, for the extractor and the middleware that use them.

use std::sync::Arc;
use std::time::Duration;

use intake_domain::{EventStore, HealthCheck};
use intake_service::{Ingest, Lifetime, SchemaCache};

use crate::body::BodyLimits;
use crate::settings::Settings;

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    /// Every event sent goes through it.
    pub ingest: Ingest,
    /// Where events are read from.
    pub events: Arc<dyn EventStore>,
    /// Whether storage is ready.
    pub health: Arc<dyn HealthCheck>,
    /// The compiled schemas events are checked against, and where schemas are kept.
    pub schemas: Arc<SchemaCache>,
    /// Retention, the keys window and erasure.
    pub lifetime: Arc<Lifetime>,
    /// How a single event's body is read.
    pub event_body: BodyLimits,
    /// How a batch's body is read.
    pub batch_body: BodyLimits,
    /// How a schema document's body is read.
    pub schema_body: BodyLimits,
    /// About how many bytes of events a feed page holds at most.
    pub max_feed_page_bytes: usize,
}

impl AppState {
    /// State over the given ingest and stores.
    pub fn new(
        settings: &Settings,
        ingest: Ingest,
        events: Arc<dyn EventStore>,
        health: Arc<dyn HealthCheck>,
        schemas: Arc<SchemaCache>,
        lifetime: Arc<Lifetime>,
    ) -> Self {
        let timeout = Duration::from_millis(settings.server.client_body_timeout_ms);
        Self {
            ingest,
            events,
            health,
            schemas,
            lifetime,
            event_body: BodyLimits { max_bytes: settings.limits.max_body_bytes, timeout },
            batch_body: BodyLimits { max_bytes: settings.limits.max_batch_body_bytes, timeout },
            // The limit applies to the compact document; the body may be indented.
            schema_body: BodyLimits {
                max_bytes: settings.schemas.max_bytes.saturating_mul(4),
                timeout,
            },
            max_feed_page_bytes: settings.limits.max_feed_page_bytes,
        }
    }
}
