//! Checking an event's data against its type's schema, off the I/O threads when it may be
//! heavy, and under a time budget.
//!
//! Almost every check costs microseconds and runs where the request runs: handing it to another
//! thread would cost more than the check. A check whose cost may be large (the data's size times
//! the schema's exceeds [`INLINE_WORK`]: a legal schema of 1,500 `patternProperties` against an
//! event of 50,000 properties takes about a second) runs on a blocking thread instead, at most
//! [`CheckBudget::heavy_at_once`] of them at a time, and the request waits for it at most
//! [`CheckBudget::max_time`]. The validator cannot be interrupted: a check over its budget
//! runs on to its end on its thread, holding its slot, while the request is answered at once;
//! the number of slots is what bounds the CPU that heavy checks take from everything else.

use std::sync::Arc;
use std::time::Duration;

use intake_domain::TenantId;
use intake_domain::{NewEvent, SchemaViolation};
use tokio::sync::Semaphore;

use crate::schemas::ActiveSchema;

/// The most work (the data's bytes times the schema's, both as compact JSON) a check may
/// represent and still run where the request runs: 4 MiB·B, such as 20 KiB of data against a
/// 200-byte schema, or 100 bytes against a 40 KiB one; either costs well under a millisecond.
pub const INLINE_WORK: u64 = 1 << 22;

/// How long heavy checks may take and how many may run at once (`[schemas]` in the
/// configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckBudget {
    /// The longest a request waits for a heavy check, and for a slot to run it in.
    pub max_time: Duration,
    /// Heavy checks running at once on a server.
    pub heavy_at_once: usize,
}

impl Default for CheckBudget {
    fn default() -> Self {
        Self { max_time: Duration::from_millis(250), heavy_at_once: 2 }
    }
}

/// What checking an event found.
#[derive(Debug)]
pub enum Verdict {
    /// The data satisfies the schema.
    Passed,
    /// Every way the data violates it.
    Violates(Vec<SchemaViolation>),
    /// The check did not end within the budget (it goes on to its end, unheard).
    OverBudget,
    /// Every slot for heavy checks stayed taken for the whole budget.
    Busy,
    /// The check failed (a defect of the validator).
    Failed(String),
}

/// Runs schema checks: cheap ones in place, heavy ones on a bounded set of blocking threads
/// under the budget.
#[derive(Debug)]
pub struct SchemaChecks {
    budget: CheckBudget,
    slots: Arc<Semaphore>,
    /// Heavy checks each tenant has waiting or running: one tenant may hold at most
    /// [`SchemaChecks::per_tenant`] of the slots, so that another's heavy checks still find one.
    /// An entry lives while its tenant has a check in flight.
    held: Arc<std::sync::Mutex<std::collections::HashMap<TenantId, usize>>>,
}

/// A tenant's share of the heavy-check slots, given back when its check ends.
struct TenantShare {
    held: Arc<std::sync::Mutex<std::collections::HashMap<TenantId, usize>>>,
    tenant: TenantId,
}

impl Drop for TenantShare {
    fn drop(&mut self) {
        let mut held = match self.held.lock() {
            Ok(held) => held,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(count) = held.get_mut(&self.tenant) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.remove(&self.tenant);
            }
        }
    }
}

impl Default for SchemaChecks {
    fn default() -> Self {
        Self::new(CheckBudget::default())
    }
}

impl SchemaChecks {
    /// Checks within `budget` (at least one heavy check at a time).
    pub fn new(budget: CheckBudget) -> Self {
        let budget = CheckBudget { heavy_at_once: budget.heavy_at_once.max(1), ..budget };
        Self { budget, slots: Arc::new(Semaphore::new(budget.heavy_at_once)), held: Arc::default() }
    }

    /// The most heavy checks one tenant may have waiting or running: half the slots, rounded
    /// down, and at least one (all of them when there is only one).
    pub fn per_tenant(&self) -> usize {
        (self.budget.heavy_at_once / 2).max(1)
    }

    /// Takes a share of the slots for `tenant`, unless it holds as many as it may.
    fn share(&self, tenant: &TenantId) -> Option<TenantShare> {
        let mut held = match self.held.lock() {
            Ok(held) => held,
            Err(poisoned) => poisoned.into_inner(),
        };
        let count = held.entry(tenant.clone()).or_default();
        if *count >= self.per_tenant() {
            return None;
        }
        *count += 1;
        Some(TenantShare { held: Arc::clone(&self.held), tenant: tenant.clone() })
    }

    /// The budget checks run under.
    pub fn budget(&self) -> CheckBudget {
        self.budget
    }

    /// Whether checking data of `data_bytes` against a schema of `schema_bytes` runs in place.
    pub fn runs_in_place(data_bytes: usize, schema_bytes: usize) -> bool {
        (data_bytes as u64).saturating_mul(schema_bytes as u64) <= INLINE_WORK
    }

    /// Checks `event`'s data against `schema`. The event is shared with the thread that checks
    /// it, and back in the caller's sole hands once the check ended (a check over its budget
    /// keeps its share until it ends).
    pub async fn check(
        &self,
        tenant: &TenantId,
        schema: &Arc<ActiveSchema>,
        event: &Arc<NewEvent>,
    ) -> Verdict {
        let data = event.data();
        if Self::runs_in_place(data.canonical_json().len(), schema.compiled.size()) {
            return verdict(schema.compiled.check(data.as_value()));
        }
        // A tenant whose heavy checks hold its share of the slots waits for one of its own to
        // end (within the budget), never for another tenant's.
        let waited = tokio::time::timeout(self.budget.max_time, async {
            loop {
                if let Some(share) = self.share(tenant) {
                    return share;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await;
        let Ok(share) = waited else {
            return Verdict::Busy;
        };
        let slot = match tokio::time::timeout(
            self.budget.max_time,
            Arc::clone(&self.slots).acquire_owned(),
        )
        .await
        {
            Ok(Ok(slot)) => slot,
            // The semaphore is never closed; were it, no check could run.
            Ok(Err(_)) | Err(_) => return Verdict::Busy,
        };
        let (schema, event) = (Arc::clone(schema), Arc::clone(event));
        let check = tokio::task::spawn_blocking(move || {
            let result = schema.compiled.check(event.data().as_value());
            // Both shares go before the answer does, so that the caller holds the only one.
            drop((event, slot, share));
            result
        });
        match tokio::time::timeout(self.budget.max_time, check).await {
            Ok(Ok(result)) => verdict(result),
            Ok(Err(failed)) => Verdict::Failed(failed.to_string()),
            Err(_) => Verdict::OverBudget,
        }
    }
}

fn verdict(result: Result<(), Vec<SchemaViolation>>) -> Verdict {
    match result {
        Ok(()) => Verdict::Passed,
        Err(violations) => Verdict::Violates(violations),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_checks_run_in_place_and_large_ones_do_not() {
        for (data, schema, in_place) in [
            (200, 600, true),
            (20 * 1024, 200, true),
            (100, 40 * 1024, true),
            (1024 * 1024, 100, false),
            (400 * 1024, 42 * 1024, false),
            (usize::MAX, usize::MAX, false),
        ] {
            assert_eq!(
                SchemaChecks::runs_in_place(data, schema),
                in_place,
                "{data} bytes of data against {schema} bytes of schema"
            );
        }
    }

    #[test]
    fn a_tenant_holds_at_most_half_the_slots_and_gives_them_back() {
        let checks = SchemaChecks::new(CheckBudget { heavy_at_once: 4, ..CheckBudget::default() });
        let (a, b) = (TenantId::parse("a").expect("tenant"), TenantId::parse("b").expect("tenant"));
        let first = checks.share(&a).expect("a's first");
        let second = checks.share(&a).expect("a's second");
        assert!(checks.share(&a).is_none(), "a holds its half");
        let theirs = checks.share(&b).expect("b still gets one");
        drop(first);
        assert!(checks.share(&a).is_some(), "given back when a check ends");
        drop((second, theirs));
        assert!(checks.held.lock().expect("lock").is_empty(), "no entry outlives its checks");
        let one = SchemaChecks::new(CheckBudget { heavy_at_once: 1, ..CheckBudget::default() });
        assert_eq!(one.per_tenant(), 1);
    }

    #[test]
    fn at_least_one_heavy_check_may_run() {
        let checks = SchemaChecks::new(CheckBudget { heavy_at_once: 0, ..CheckBudget::default() });
        assert_eq!(checks.budget().heavy_at_once, 1);
    }
}
