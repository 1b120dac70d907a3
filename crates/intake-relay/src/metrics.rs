//! The relay's metrics, registered in the registry the caller serves.

use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};

/// The relay's metrics.
#[derive(Debug, Clone)]
pub(crate) struct RelayMetrics {
    /// Events JetStream acknowledged, by tenant.
    pub(crate) published: IntCounterVec,
    /// Pages that could not be published.
    pub(crate) errors: IntCounter,
    /// Events stored but not yet published, by tenant.
    pub(crate) lag: IntGaugeVec,
    /// Events that can never be published, parked in the dead letters.
    pub(crate) parked: IntCounter,
    /// Notices of erased events published.
    pub(crate) erased_notices: IntCounter,
}

impl RelayMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub(crate) fn register(registry: &Registry) -> prometheus::Result<Self> {
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
        let parked = IntCounter::new(
            "intake_relay_parked_events_total",
            "Events that can never be published (larger than NATS or the stream takes), parked \
             in relay_dead_letters and skipped.",
        )?;
        let erased_notices = IntCounter::new(
            "intake_relay_erased_notices_total",
            "Notices of erased events the relay had published, published on \
             <prefix>.<tenant>.$erased.",
        )?;
        registry.register(Box::new(erased_notices.clone()))?;
        registry.register(Box::new(published.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(lag.clone()))?;
        registry.register(Box::new(parked.clone()))?;
        Ok(Self { published, errors, lag, parked, erased_notices })
    }
}
