//! Admission control: how many calls each tenant has up on this node, against its limit.
//!
//! A tenant at its limit gets 486 Busy Here for its next call (a tenant matter, never a
//! 503, which would tell the carrier to avoid the whole node).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::ids::TenantId;

/// Live call counts per tenant; cheap to clone and share.
#[derive(Clone, Default)]
pub struct Admission {
    live: Arc<Mutex<HashMap<TenantId, u32>>>,
}

/// One admitted call; dropping it frees the tenant's slot.
#[derive(Debug)]
pub struct Admitted {
    live: Arc<Mutex<HashMap<TenantId, u32>>>,
    tenant: TenantId,
}

impl Admission {
    /// Admits one more call for `tenant` when it has fewer than `limit` up.
    pub fn try_admit(&self, tenant: TenantId, limit: i64) -> Option<Admitted> {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let count = live.entry(tenant).or_default();
        if i64::from(*count) >= limit {
            return None;
        }
        *count += 1;
        metrics::gauge!("vca_calls_live").increment(1.0);
        Some(Admitted {
            live: self.live.clone(),
            tenant,
        })
    }

    /// Calls up for `tenant` now.
    pub fn live(&self, tenant: TenantId) -> u32 {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.get(&tenant).copied().unwrap_or(0)
    }

    /// Calls up on this node now.
    pub fn total(&self) -> u32 {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.values().sum()
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = live.get_mut(&self.tenant) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                live.remove(&self.tenant);
            }
        }
        metrics::gauge!("vca_calls_live").decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_at_its_limit_is_refused_and_others_are_not() {
        let admission = Admission::default();
        let (a, b) = (TenantId::new(), TenantId::new());
        let first = admission.try_admit(a, 2).expect("first");
        let second = admission.try_admit(a, 2).expect("second");
        assert!(admission.try_admit(a, 2).is_none());
        assert!(
            admission.try_admit(b, 2).is_some(),
            "B is unaffected by A's limit"
        );
        drop(first);
        assert_eq!(admission.live(a), 1);
        let third = admission.try_admit(a, 2).expect("a freed slot is reusable");
        drop((second, third));
        assert_eq!(admission.live(a), 0);
        assert!(
            admission.try_admit(a, 0).is_none(),
            "a limit of 0 admits nothing"
        );
        assert_eq!(admission.total(), 0);
    }
}
