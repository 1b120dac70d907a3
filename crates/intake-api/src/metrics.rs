//! Prometheus metrics: requests and their latency by route and status, events by outcome, and
//! the database pool. Rendered in the text exposition format at `GET /metrics`.

use std::sync::Arc;

use intake_domain::LifetimeStats;
use intake_service::labels::TenantLabels;
use intake_service::LastRun;
use intake_storage::{GroupCommitStats, PoolStats};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
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

/// Storage's state, read when metrics are rendered.
#[derive(Debug, Clone, Copy, Default)]
pub struct StorageStats {
    /// The connection pool.
    pub pool: PoolStats,
    /// Group commit of single events.
    pub group_commit: GroupCommitStats,
    /// The rate limits' shared backend.
    pub rate_limits: RateLimitStats,
}

/// The rate limits' shared backend (Redis), when there is one.
#[derive(Debug, Clone, Copy, Default)]
pub struct RateLimitStats {
    /// Requests counted by this server alone because the shared backend could not be reached.
    pub fallback_requests: u64,
    /// Whether the shared backend is unreachable right now.
    pub degraded: bool,
}

/// Reads storage's state when metrics are rendered.
pub type StorageGauge = Arc<dyn Fn() -> StorageStats + Send + Sync>;

/// Retention, the keys window and erasure (contract §14), as of the last scrape.
#[derive(Clone)]
struct LifetimeGauges {
    oldest_age: prometheus::Gauge,
    partitions: IntGauge,
    key_generations: IntGauge,
    erasures: prometheus::IntGaugeVec,
    runs: IntCounter,
    failures: IntCounter,
    last_run: prometheus::Gauge,
    last_removed: prometheus::IntGaugeVec,
}

impl LifetimeGauges {
    fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let gauges = Self {
            oldest_age: prometheus::Gauge::new(
                "intake_events_oldest_age_seconds",
                "How long ago the oldest stored event was received (0 when none is stored).",
            )?,
            partitions: IntGauge::new(
                "intake_event_partitions",
                "Time partitions of the events table (the default one included).",
            )?,
            key_generations: IntGauge::new(
                "intake_key_generations",
                "Live generations of idempotency keys.",
            )?,
            erasures: prometheus::IntGaugeVec::new(
                Opts::new("intake_erasures", "Erasures by content, by status: pending, done."),
                &["status"],
            )?,
            runs: IntCounter::new(
                "intake_maintenance_runs_total",
                "Maintenance runs this server made (or tried while another server held the turn).",
            )?,
            failures: IntCounter::new(
                "intake_maintenance_failures_total",
                "Maintenance runs of this server that failed (retried).",
            )?,
            last_run: prometheus::Gauge::new(
                "intake_maintenance_last_run_timestamp_seconds",
                "When this server's last maintenance run ended (Unix time; 0 before the first).",
            )?,
            last_removed: prometheus::IntGaugeVec::new(
                Opts::new(
                    "intake_maintenance_last_run_removed",
                    "What this server's last maintenance run removed: partitions, events, \
                     key_generations, keys.",
                ),
                &["what"],
            )?,
        };
        registry.register(Box::new(gauges.oldest_age.clone()))?;
        registry.register(Box::new(gauges.partitions.clone()))?;
        registry.register(Box::new(gauges.key_generations.clone()))?;
        registry.register(Box::new(gauges.erasures.clone()))?;
        registry.register(Box::new(gauges.runs.clone()))?;
        registry.register(Box::new(gauges.failures.clone()))?;
        registry.register(Box::new(gauges.last_run.clone()))?;
        registry.register(Box::new(gauges.last_removed.clone()))?;
        Ok(gauges)
    }

    fn set(&self, stats: Option<&LifetimeStats>, last: &LastRun) {
        if let Some(stats) = stats {
            let age = stats.oldest_event.map_or(0.0, |oldest| {
                (chrono::Utc::now() - oldest).num_milliseconds().max(0) as f64 / 1000.0
            });
            self.oldest_age.set(age);
            self.partitions.set(i64::try_from(stats.partitions).unwrap_or(i64::MAX));
            self.key_generations.set(i64::try_from(stats.key_generations).unwrap_or(i64::MAX));
            for (status, n) in [("pending", stats.erasures_pending), ("done", stats.erasures_done)]
            {
                self.erasures
                    .with_label_values(&[status])
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        self.runs.inc_by(last.runs.saturating_sub(self.runs.get()));
        self.failures.inc_by(last.failures.saturating_sub(self.failures.get()));
        self.last_run.set(last.at.map_or(0.0, |at| at.timestamp_millis() as f64 / 1000.0));
        let report = &last.report;
        for (what, n) in [
            ("partitions", report.partitions_dropped),
            ("events", report.events_dropped),
            ("key_generations", report.key_generations_dropped),
            ("keys", report.keys_dropped),
        ] {
            self.last_removed.with_label_values(&[what]).set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}

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
    groups: IntCounter,
    grouped_events: IntCounter,
    group_fallbacks: IntCounter,
    group_statement_micros: IntCounter,
    group_queued_micros: IntCounter,
    queued: IntGauge,
    refused_before_routing: IntCounterVec,
    rate_limited: IntCounterVec,
    rate_fallbacks: IntCounter,
    rate_degraded: IntGauge,
    clock_skew: Histogram,
    lifetime: LifetimeGauges,
    /// The tenants with series of their own (the first hundred), the rest `other`.
    tenants: Arc<TenantLabels>,
    storage: StorageGauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered; `storage` is read at each rendering.
    pub fn new(storage: StorageGauge) -> Result<Self, prometheus::Error> {
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
        let groups = IntCounter::new(
            "intake_ingest_groups_total",
            "Statements that stored a group of single events.",
        )?;
        let grouped_events = IntCounter::new(
            "intake_ingest_grouped_events_total",
            "Single events stored through group statements.",
        )?;
        let group_fallbacks = IntCounter::new(
            "intake_ingest_group_fallbacks_total",
            "Groups whose statement failed, stored again one event at a time.",
        )?;
        let group_statement_micros = IntCounter::new(
            "intake_ingest_group_statement_microseconds_total",
            "Time group statements took, summed (divide by groups for the mean).",
        )?;
        let group_queued_micros = IntCounter::new(
            "intake_ingest_queued_microseconds_total",
            "Time single events waited for a writer, summed (divide by grouped events).",
        )?;
        let queued =
            IntGauge::new("intake_ingest_queued_events", "Single events waiting for a writer.")?;
        let refused_before_routing = IntCounterVec::new(
            Opts::new(
                "intake_http_refused_before_routing_total",
                "Requests the HTTP layer refused before routing (malformed, headers too large, \
                 head too slow), by status.",
            ),
            &["status"],
        )?;
        registry.register(Box::new(refused_before_routing.clone()))?;
        let rate_limited = IntCounterVec::new(
            Opts::new(
                "intake_rate_limited_requests_total",
                "Requests refused with 429, by tenant.",
            ),
            &["tenant"],
        )?;
        let rate_fallbacks = IntCounter::new(
            "intake_rate_limit_fallback_requests_total",
            "Requests whose budget was counted by this server alone because Redis could not be \
             reached.",
        )?;
        let rate_degraded = IntGauge::new(
            "intake_rate_limit_backend_degraded",
            "1 while the shared rate-limit backend (Redis) cannot be reached, else 0.",
        )?;
        registry.register(Box::new(rate_limited.clone()))?;
        registry.register(Box::new(rate_fallbacks.clone()))?;
        registry.register(Box::new(rate_degraded.clone()))?;
        registry.register(Box::new(group_statement_micros.clone()))?;
        registry.register(Box::new(group_queued_micros.clone()))?;
        registry.register(Box::new(groups.clone()))?;
        registry.register(Box::new(grouped_events.clone()))?;
        registry.register(Box::new(group_fallbacks.clone()))?;
        registry.register(Box::new(queued.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(events.clone()))?;
        // No tenant label: one series per bucket, whoever sends.
        let clock_skew = Histogram::with_opts(
            HistogramOpts::new(
                "intake_client_clock_skew_seconds",
                "How far senders' clocks were off (|received - sent_at|), per event sent with \
                 sent_at.",
            )
            .buckets(vec![0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 3600.0, 86400.0]),
        )?;
        registry.register(Box::new(clock_skew.clone()))?;
        for gauge in [&pool_size, &pool_idle, &pool_max, &pool_waiting] {
            registry.register(Box::new(gauge.clone()))?;
        }
        for outcome in [Outcome::Accepted, Outcome::Deduplicated, Outcome::Rejected] {
            events.with_label_values(&[outcome.label()]);
        }
        let lifetime = LifetimeGauges::register(&registry)?;
        Ok(Self {
            registry,
            requests,
            latency,
            events,
            pool_size,
            pool_idle,
            pool_max,
            pool_waiting,
            groups,
            grouped_events,
            group_fallbacks,
            group_statement_micros,
            group_queued_micros,
            queued,
            refused_before_routing,
            rate_limited,
            rate_fallbacks,
            rate_degraded,
            clock_skew,
            lifetime,
            tenants: Arc::default(),
            storage,
        })
    }

    /// Records a finished request.
    pub fn observe_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let status = status.to_string();
        let labels = [method, route, status.as_str()];
        self.requests.with_label_values(&labels).inc();
        self.latency.with_label_values(&labels).observe(seconds);
    }

    /// Counts a request refused for its tenant's rate limit.
    pub fn count_limited(&self, tenant: &str) {
        self.rate_limited.with_label_values(&[self.tenants.label(tenant)]).inc();
    }

    /// Counts a request the HTTP layer refused before routing.
    pub fn count_malformed(&self, status: u16) {
        self.refused_before_routing.with_label_values(&[status.to_string().as_str()]).inc();
    }

    /// Records how far a sender's clock was off (received minus `sent_at`, either way).
    pub fn observe_clock_skew(&self, skew_ms: i64) {
        self.clock_skew.observe(skew_ms.unsigned_abs() as f64 / 1000.0);
    }

    /// Counts `n` events with an outcome.
    pub fn count_events(&self, outcome: Outcome, n: usize) {
        self.events.with_label_values(&[outcome.label()]).inc_by(n as u64);
    }

    /// Sets the gauges of storage's lifetime (`stats` is `None` when storage did not answer).
    pub fn set_lifetime(&self, stats: Option<&LifetimeStats>, last: &LastRun) {
        self.lifetime.set(stats, last);
    }

    /// The exposition text, with the pool gauges as of now.
    pub fn render(&self) -> Result<Vec<u8>, prometheus::Error> {
        let StorageStats { pool, group_commit, rate_limits } = (self.storage)();
        // Storage keeps the totals; the counters catch up to them.
        for (counter, total) in [
            (&self.groups, group_commit.groups),
            (&self.grouped_events, group_commit.events),
            (&self.group_fallbacks, group_commit.fallbacks),
            (&self.group_statement_micros, group_commit.statement_micros),
            (&self.group_queued_micros, group_commit.queued_micros),
            (&self.rate_fallbacks, rate_limits.fallback_requests),
        ] {
            counter.inc_by(total.saturating_sub(counter.get()));
        }
        self.queued.set(i64::try_from(group_commit.queued).unwrap_or(i64::MAX));
        self.rate_degraded.set(i64::from(rate_limits.degraded));
        self.pool_size.set(i64::from(pool.size));
        self.pool_idle.set(i64::from(pool.idle));
        self.pool_max.set(i64::from(pool.max));
        self.pool_waiting.set(i64::from(pool.waiting));
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        Ok(out)
    }
}
