//! Replay protection for digest nonces (RFC 7616 §3.4.5): the highest nonce-count accepted
//! per live nonce, in a bounded table.

use super::*;
use std::collections::{HashMap, VecDeque};

/// Highest nonce-count accepted per live nonce. Bounded: entries leave when their nonce
/// expires, and a full table refuses new nonces instead of growing.
#[derive(Debug)]
pub(super) struct ReplayTable {
    pub(super) capacity: usize,
    /// nonce -> (highest nc accepted, expiry in Unix seconds)
    pub(super) entries: HashMap<Box<str>, (u32, u64)>,
    /// Insertion order with expiry, to purge expired entries in amortised O(1).
    pub(super) order: VecDeque<(u64, Box<str>)>,
}

impl ReplayTable {
    pub(super) fn new(capacity: usize) -> Self {
        ReplayTable {
            capacity,
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub(super) fn purge(&mut self, now: u64) {
        while let Some((expires, _)) = self.order.front() {
            if *expires >= now {
                break;
            }
            if let Some((_, nonce)) = self.order.pop_front() {
                self.entries.remove(&nonce);
            }
        }
    }

    /// Records `nc` for `nonce`, which is valid until `expires`; fails unless `nc` is
    /// greater than every count accepted before on this nonce. Returns the highest count
    /// accepted before (0 for a nonce not seen yet).
    pub(super) fn observe(
        &mut self,
        now: u64,
        nonce: &str,
        nc: u32,
        expires: u64,
    ) -> Result<u32, AuthError> {
        self.purge(now);
        if let Some(entry) = self.entries.get_mut(nonce) {
            if nc <= entry.0 {
                return Err(AuthError::Replay);
            }
            return Ok(std::mem::replace(&mut entry.0, nc));
        }
        if self.entries.len() >= self.capacity {
            return Err(AuthError::ReplayTableFull);
        }
        let key: Box<str> = nonce.into();
        self.entries.insert(key.clone(), (nc, expires));
        self.order.push_back((expires, key));
        Ok(0)
    }

    /// Undoes an [`observe`](Self::observe) while its count is still the highest.
    pub(super) fn give_back(&mut self, used: &NonceUse) {
        if let Some(entry) = self.entries.get_mut(&*used.nonce)
            && entry.0 == used.nc
        {
            entry.0 = used.previous;
        }
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}
