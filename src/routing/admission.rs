//! Admission control: how many calls each tenant and each trunk has up on this node,
//! against its limit.
//!
//! A tenant or trunk at its limit gets 486 Busy Here for its next call (a tenant matter, never a
//! 503, which would tell the carrier to avoid the whole node).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::ids::{TenantId, TrunkId};

/// What a live call holds a place in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Slot {
    Tenant(TenantId),
    Trunk(TrunkId),
}

type Counts = Arc<Mutex<HashMap<Slot, u32>>>;

/// Live call counts per tenant and per trunk; cheap to clone and share.
#[derive(Clone, Default)]
pub struct Admission {
    live: Counts,
}

/// Which limit refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    Tenant,
    Trunk,
}

/// One admitted call; dropping it frees its places.
#[derive(Debug)]
pub struct Admitted {
    live: Counts,
    slots: [Option<Slot>; 2],
}

impl Admission {
    /// Admits one more call for `tenant` when it has fewer than `limit` up.
    pub fn try_admit(&self, tenant: TenantId, limit: i64) -> Option<Admitted> {
        self.try_admit_call(tenant, limit, None).ok()
    }

    /// Admits one more call for `tenant` (fewer than `tenant_limit` up) arriving on `trunk`
    /// (fewer than its limit up, when it has one); both places are taken or neither.
    pub fn try_admit_call(
        &self,
        tenant: TenantId,
        tenant_limit: i64,
        trunk: Option<(TrunkId, Option<i64>)>,
    ) -> Result<Admitted, Busy> {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let below = |live: &HashMap<Slot, u32>, slot: Slot, limit: i64| {
            i64::from(live.get(&slot).copied().unwrap_or(0)) < limit
        };
        if !below(&live, Slot::Tenant(tenant), tenant_limit) {
            return Err(Busy::Tenant);
        }
        let trunk_slot = trunk.map(|(id, _)| Slot::Trunk(id));
        if let Some((id, Some(limit))) = trunk
            && !below(&live, Slot::Trunk(id), limit)
        {
            return Err(Busy::Trunk);
        }
        let slots = [Some(Slot::Tenant(tenant)), trunk_slot];
        for slot in slots.iter().flatten() {
            *live.entry(*slot).or_default() += 1;
        }
        metrics::gauge!("vca_calls_live").increment(1.0);
        Ok(Admitted {
            live: self.live.clone(),
            slots,
        })
    }

    /// Calls up for `tenant` now.
    pub fn live(&self, tenant: TenantId) -> u32 {
        self.count(Slot::Tenant(tenant))
    }

    /// Calls up on `trunk` now.
    pub fn live_on_trunk(&self, trunk: TrunkId) -> u32 {
        self.count(Slot::Trunk(trunk))
    }

    fn count(&self, slot: Slot) -> u32 {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.get(&slot).copied().unwrap_or(0)
    }

    /// Calls up on this node now.
    pub fn total(&self) -> u32 {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.iter()
            .filter(|(slot, _)| matches!(slot, Slot::Tenant(_)))
            .map(|(_, n)| n)
            .sum()
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        for slot in self.slots.iter().flatten() {
            if let Some(count) = live.get_mut(slot) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    live.remove(slot);
                }
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

    #[test]
    fn a_trunk_at_its_limit_is_refused_without_taking_the_tenant_place() {
        let admission = Admission::default();
        let (a, b) = (TenantId::new(), TenantId::new());
        let trunk = TrunkId::new();
        let first = admission
            .try_admit_call(a, 10, Some((trunk, Some(1))))
            .expect("first");
        assert_eq!(
            admission
                .try_admit_call(b, 10, Some((trunk, Some(1))))
                .err(),
            Some(Busy::Trunk)
        );
        assert_eq!(admission.live(b), 0, "a refused call holds nothing");
        // Another trunk, or no trunk limit, is unaffected.
        assert!(
            admission
                .try_admit_call(b, 10, Some((TrunkId::new(), Some(1))))
                .is_ok()
        );
        assert!(admission.try_admit_call(b, 10, Some((trunk, None))).is_ok());
        assert_eq!(admission.live_on_trunk(trunk), 1);
        drop(first);
        assert_eq!(admission.live_on_trunk(trunk), 0);
        assert_eq!(admission.total(), 0);
        assert_eq!(
            admission.try_admit_call(a, 0, Some((trunk, Some(5)))).err(),
            Some(Busy::Tenant)
        );
    }
}
