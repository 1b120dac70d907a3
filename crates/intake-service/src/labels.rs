//! Tenants as metric labels, bounded: the first [`TENANT_LABELS`] tenants seen get a series of
//! their own, every later one shares `other`, so that no number of tenants grows `/metrics`
//! without end.

use std::collections::HashSet;
use std::sync::Mutex;

/// How many tenants get series of their own.
pub const TENANT_LABELS: usize = 100;

/// The label for every tenant past the cap.
pub const OTHER: &str = "other";

/// The tenants that have series of their own.
#[derive(Debug, Default)]
pub struct TenantLabels {
    seen: Mutex<HashSet<String>>,
}

impl TenantLabels {
    /// The label `tenant` is counted under.
    pub fn label<'a>(&self, tenant: &'a str) -> &'a str {
        let Ok(mut seen) = self.seen.lock() else { return OTHER };
        if seen.contains(tenant) {
            return tenant;
        }
        if seen.len() < TENANT_LABELS {
            seen.insert(tenant.to_owned());
            return tenant;
        }
        OTHER
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_past_the_cap_share_one_label() {
        let labels = TenantLabels::default();
        let names: Vec<String> = (0..TENANT_LABELS + 50).map(|n| format!("t{n}")).collect();
        let given: HashSet<&str> = names.iter().map(|n| labels.label(n)).collect();
        assert_eq!(given.len(), TENANT_LABELS + 1, "{TENANT_LABELS} tenants and {OTHER}");
        assert_eq!(labels.label("t0"), "t0", "a tenant keeps its label");
        assert_eq!(labels.label(&names[TENANT_LABELS + 1]), OTHER);
    }
}
