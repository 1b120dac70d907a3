//! What ingest reports its outcomes to from the HTTP service: the metrics, and the live
//! debugger's entries (which show each refusal as the problem the client got).

use std::sync::Arc;

use chrono::{SubsecRound, Utc};
use intake_domain::{Ingested, NewEvent, TenantId};
use intake_service::debugger::{AcceptedEntry, RejectedEntry};
use intake_service::{format_timestamp, DebugHub, IngestObserver, Refusal};
use serde_json::Value;

use crate::metrics::{Metrics, Outcome};
use crate::problem::refusal_problem;
use crate::request_context;

impl IngestObserver for Metrics {
    fn accepted(&self, _: &TenantId, event: &NewEvent, ingested: &Ingested) {
        let outcome = if ingested.deduplicated { Outcome::Deduplicated } else { Outcome::Accepted };
        self.count_events(outcome, 1);
        if let Some(clock) = event.clock() {
            self.observe_clock_skew(clock.skew_ms());
        }
    }

    fn refused(&self, tenant: &TenantId, refusal: &Refusal) {
        match refusal {
            Refusal::RateLimited { .. } => self.count_limited(tenant.as_str()),
            _ => self.count_events(Outcome::Rejected, 1),
        }
    }
}

/// Builds the debugger's entries, only for tenants somebody watches.
#[derive(Debug)]
pub struct DebuggerEntries(pub Arc<DebugHub>);

impl IngestObserver for DebuggerEntries {
    fn accepted(&self, tenant: &TenantId, event: &NewEvent, ingested: &Ingested) {
        if !self.0.watched(tenant) {
            return;
        }
        let entry = AcceptedEntry {
            event_id: ingested.event_id.to_string(),
            event_type: event.event_type().as_str(),
            occurred_at: format_timestamp(event.occurred_at().as_utc()),
            received_at: format_timestamp(ingested.received_at),
            idempotency_key: event.idempotency_key().as_str(),
            deduplicated: ingested.deduplicated,
            occurred_at_reported: event.correction().map(|c| format_timestamp(c.reported.as_utc())),
            sent_at: event.correction().map(|c| format_timestamp(c.sent_at)),
            data: event.data().as_value(),
        };
        if let Ok(json) = serde_json::to_string(&entry) {
            self.0.publish(tenant, "accepted", json);
        }
    }

    fn refused(&self, tenant: &TenantId, refusal: &Refusal) {
        if !self.0.watched(tenant) {
            return;
        }
        let (kind, errors, _) = refusal_problem(refusal);
        let request_id = request_context::current_request_id();
        let entry = RejectedEntry {
            status: kind.status,
            problem_type: kind.type_uri(),
            errors: serde_json::to_value(errors).unwrap_or(Value::Array(Vec::new())),
            request_id: &request_id,
            at: format_timestamp(Utc::now().trunc_subsecs(6)),
        };
        if let Ok(json) = serde_json::to_string(&entry) {
            self.0.publish(tenant, "rejected", json);
        }
    }
}
