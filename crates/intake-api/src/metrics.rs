//! Prometheus metrics: requests and their latency by route and status, events by outcome, and
//! the database pool. Rendered in the text exposition format at `GET /metrics`.

use std::sync::Arc;

use intake_storage::PoolStats;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// What happened to an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Stored by this request.
    Accepted,
    /// Already stored; answered as a replay.
    Deduplicated,
    /// Refused: invalid, or a reused key.
    Rejected,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Deduplicated => "deduplicated",
            Self::Rejected => "rejected",
        }
    }
}

/// Reads the connection pool's state when metrics are rendered.
pub type PoolGauge = Arc<dyn Fn() -> PoolStats + Send + Sync>;

/// The service's metrics and their registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    events: IntCounterVec,
    pool_size: IntGauge,
    pool_idle: IntGauge,
    pool_max: IntGauge,
    pool_waiting: IntGauge,
    pool: PoolGauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered; `pool` is read at each rendering.
    pub fn new(pool: PoolGauge) -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("intake_http_requests_total", "HTTP requests by method, route and status."),
            &["method", "route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "intake_http_request_duration_seconds",
                "HTTP request latency by method, route and status.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["method", "route", "status"],
        )?;
        let events = IntCounterVec::new(
            Opts::new(
                "intake_events_total",
                "Events by outcome: accepted, deduplicated, rejected.",
            ),
            &["outcome"],
        )?;
        let pool_size = IntGauge::new("intake_db_pool_connections", "Open database connections.")?;
        let pool_idle =
            IntGauge::new("intake_db_pool_idle_connections", "Open connections not in use.")?;
        let pool_max = IntGauge::new(
            "intake_db_pool_max_connections",
            "The most connections the pool opens.",
        )?;
        let pool_waiting = IntGauge::new(
            "intake_db_pool_waiting_acquisitions",
            "Requests waiting for a database connection.",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(events.clone()))?;
        for gauge in [&pool_size, &pool_idle, &pool_max, &pool_waiting] {
            registry.register(Box::new(gauge.clone()))?;
        }
        for outcome in [Outcome::Accepted, Outcome::Deduplicated, Outcome::Rejected] {
            events.with_label_values(&[outcome.label()]);
        }
        Ok(Self {
            registry,
            requests,
            latency,
            events,
            pool_size,
            pool_idle,
            pool_max,
            pool_waiting,
            pool,
        })
    }

    /// Records a finished request.
    pub fn observe_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let status = status.to_string();
        let labels = [method, route, status.as_str()];
        self.requests.with_label_values(&labels).inc();
        self.latency.with_label_values(&labels).observe(seconds);
    }

    /// Counts `n` events with an outcome.
    pub fn count_events(&self, outcome: Outcome, n: usize) {
        self.events.with_label_values(&[outcome.label()]).inc_by(n as u64);
    }

    /// The exposition text, with the pool gauges as of now.
    pub fn render(&self) -> Result<Vec<u8>, prometheus::Error> {
        let pool = (self.pool)();
        self.pool_size.set(i64::from(pool.size));
        self.pool_idle.set(i64::from(pool.idle));
        self.pool_max.set(i64::from(pool.max));
        self.pool_waiting.set(i64::from(pool.waiting));
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        Ok(out)
    }
}
