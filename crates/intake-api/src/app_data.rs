//! What the application's routes are given, built over a backend: the application layer
//! (ingest and its observers), authentication, rate limits, metrics, the debugger's hub and the
//! OpenAPI document.

use std::sync::Arc;

use actix_web::web;
use anyhow::Context;
use intake_domain::RateLimiter;
use intake_ratelimit::{MemoryRateLimiter, RedisRateLimiter};
use intake_service::{DebugHub, Ingest, Lifetime, RateLimits, SchemaCache};

use crate::auth::Authenticator;
use crate::backend::Backend;
use crate::metrics::{Metrics, RateLimitStats, StorageStats};
use crate::observe::DebuggerEntries;
use crate::routes::OpenApiJson;
use crate::settings::{RateBackend, Settings};
use crate::state::AppState;

/// Reads the rate limits' backend state, for metrics.
type RateStatsReader = Box<dyn Fn() -> RateLimitStats + Send + Sync>;

/// What the application's routes are given: shared state, authentication, metrics and the
/// OpenAPI document.
#[derive(Debug, Clone)]
pub struct AppData {
    pub(crate) state: web::Data<AppState>,
    pub(crate) auth: web::Data<Authenticator>,
    pub(crate) metrics: web::Data<Metrics>,
    pub(crate) limits: web::Data<RateLimits>,
    pub(crate) debugger: web::Data<DebugHub>,
    pub(crate) openapi: web::Data<OpenApiJson>,
}

impl AppData {
    /// Everything the routes need, over `backend`'s stores, with a debugger of this server
    /// alone.
    pub fn new(settings: &Settings, backend: &Backend) -> anyhow::Result<Self> {
        Self::with_debugger(
            settings,
            backend,
            Arc::new(DebugHub::new(None, settings.debugger.limits())),
        )
    }

    pub(crate) fn with_debugger(
        settings: &Settings,
        backend: &Backend,
        debugger: Arc<DebugHub>,
    ) -> anyhow::Result<Self> {
        let (limiter, rate_stats) = rate_limiter(settings)?;
        let storage = backend.gauge.clone();
        let metrics = Metrics::new(Arc::new(move || StorageStats {
            rate_limits: rate_stats(),
            ..storage()
        }))?;
        let limits = RateLimits::new(limiter, settings.limits.rate.default_limit()?);
        let schemas =
            Arc::new(SchemaCache::new(backend.schemas.clone(), settings.schemas.limits()));
        let ingest = Ingest::new(
            backend.events.clone(),
            schemas.clone(),
            limits.clone(),
            settings.limits.validation(),
        )
        .checking_within(settings.schemas.check_budget())
        .observed_by(Arc::new(metrics.clone()))
        .observed_by(Arc::new(DebuggerEntries(debugger.clone())));
        let lifetime = Arc::new(Lifetime::new(
            backend.lifetime.clone(),
            settings.retention.retention()?,
            settings.retention.maintenance_interval,
        ));
        let state = AppState::new(
            settings,
            ingest,
            backend.events.clone(),
            backend.health.clone(),
            schemas,
            lifetime,
        );
        Ok(Self {
            state: web::Data::new(state),
            auth: web::Data::new(authenticator(settings, backend)?),
            limits: web::Data::new(limits),
            metrics: web::Data::new(metrics),
            debugger: web::Data::from(debugger),
            openapi: web::Data::new(OpenApiJson(crate::openapi::document_json())),
        })
    }
}

/// The authenticator of the configured dev tokens and the backend's tokens.
fn authenticator(settings: &Settings, backend: &Backend) -> anyhow::Result<Authenticator> {
    let dev_tokens = settings
        .auth
        .dev_tokens
        .iter()
        .map(|t| {
            let (tenant, scopes) = t.principal().context("a configured dev token is invalid")?;
            Ok((t.token.clone(), tenant, scopes))
        })
        .collect::<anyhow::Result<_>>()?;
    let ttl = std::time::Duration::from_millis(settings.auth.cache_ttl_ms);
    Ok(Authenticator::new(dev_tokens, backend.tokens.clone(), ttl))
}

/// The limiter `limits.rate.backend` names, and how to read its state for metrics.
fn rate_limiter(
    settings: &Settings,
) -> anyhow::Result<(Option<Arc<dyn RateLimiter>>, RateStatsReader)> {
    let rate = &settings.limits.rate;
    Ok(match rate.backend {
        RateBackend::Off => (None, Box::new(RateLimitStats::default)),
        RateBackend::Memory => {
            (Some(Arc::new(MemoryRateLimiter::default())), Box::new(RateLimitStats::default))
        }
        RateBackend::Redis => {
            let redis = Arc::new(
                RedisRateLimiter::new(&rate.redis_url, &rate.redis_prefix)
                    .context("limits.rate.redis_url is not a valid Redis URL")?,
            );
            let stats = redis.clone();
            let reader: RateStatsReader = Box::new(move || {
                let s = stats.stats();
                RateLimitStats { fallback_requests: s.fallback_requests, degraded: s.degraded }
            });
            (Some(redis), reader)
        }
    })
}
