//! Who may hold a TCP connection: a small budget for strangers, per source
//! address too, apart from the slots of admitted plugins.
//!
//! Before this, any peer that sent one complete frame (even a HELLO that was
//! rejected) kept its slot for as long as it sent something every few
//! seconds, and 255 such peers locked real plugins out for good. Now a
//! connection is *pending* until the host answers its HELLO with WELCOME:
//! pending connections share `max_pending` slots (and
//! `max_pending_per_address` per source address), and are cut at the
//! handshake deadline whatever they send. Only a WELCOME moves a
//! connection to the admitted slots, of which there are at most as many as
//! configured external plugins can use (a plugin id has one session).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The counts, shared by the accept loop and every connection.
pub struct Budget {
    max_pending: usize,
    max_pending_per_address: usize,
    max_admitted: usize,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    pending: usize,
    pending_by_address: HashMap<IpAddr, usize>,
    admitted: usize,
}

/// Why a connection was not let in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Too many connections wait for their handshake.
    #[error("{0} connections are already waiting for their handshake")]
    Pending(usize),
    /// Too many from this address wait for their handshake.
    #[error("{count} connections from {address} are already waiting for their handshake")]
    PendingFromAddress {
        /// The source address.
        address: IpAddr,
        /// Its pending connections.
        count: usize,
    },
    /// Every admitted slot is taken.
    #[error("all {0} admitted connections are in use")]
    Admitted(usize),
}

/// A connection's place in the budget; given back when dropped.
pub struct Slot {
    budget: Arc<Budget>,
    address: IpAddr,
    admitted: bool,
}

impl Budget {
    /// A budget with these bounds (each at least 1).
    pub fn new(
        max_pending: usize,
        max_pending_per_address: usize,
        max_admitted: usize,
    ) -> Arc<Budget> {
        Arc::new(Budget {
            max_pending: max_pending.max(1),
            max_pending_per_address: max_pending_per_address.max(1),
            max_admitted: max_admitted.max(1),
            counts: Mutex::new(Counts::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A pending slot for a new connection from `address`.
    pub fn admit_pending(self: &Arc<Budget>, address: IpAddr) -> Result<Slot, Refusal> {
        let mut c = self.lock();
        if c.pending >= self.max_pending {
            return Err(Refusal::Pending(c.pending));
        }
        let from = c.pending_by_address.get(&address).copied().unwrap_or(0);
        if from >= self.max_pending_per_address {
            return Err(Refusal::PendingFromAddress {
                address,
                count: from,
            });
        }
        c.pending += 1;
        *c.pending_by_address.entry(address).or_insert(0) += 1;
        Ok(Slot {
            budget: self.clone(),
            address,
            admitted: false,
        })
    }

    /// Connections pending and admitted now.
    pub fn counts(&self) -> (usize, usize) {
        let c = self.lock();
        (c.pending, c.admitted)
    }
}

impl Slot {
    /// The host sent WELCOME: move from the pending budget to an admitted slot.
    pub fn promote(&mut self) -> Result<(), Refusal> {
        if self.admitted {
            return Ok(());
        }
        let mut c = self.budget.lock();
        if c.admitted >= self.budget.max_admitted {
            return Err(Refusal::Admitted(c.admitted));
        }
        c.admitted += 1;
        release_pending(&mut c, self.address);
        self.admitted = true;
        Ok(())
    }
}

fn release_pending(c: &mut Counts, address: IpAddr) {
    c.pending = c.pending.saturating_sub(1);
    if let Some(n) = c.pending_by_address.get_mut(&address) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            c.pending_by_address.remove(&address);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.budget.lock();
        if self.admitted {
            c.admitted = c.admitted.saturating_sub(1);
        } else {
            release_pending(&mut c, self.address);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strangers_cannot_take_the_slots_of_admitted_plugins() {
        let budget = Budget::new(4, 2, 2);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let _a1 = budget.admit_pending(a).expect("first from a");
        let _a2 = budget.admit_pending(a).expect("second from a");
        assert!(matches!(
            budget.admit_pending(a),
            Err(Refusal::PendingFromAddress { count: 2, .. })
        ));
        let mut b1 = budget.admit_pending(b).expect("b is not a");
        let _b2 = budget.admit_pending(b).expect("b again");
        assert!(matches!(
            budget.admit_pending([10, 0, 0, 3].into()),
            Err(Refusal::Pending(4))
        ));
        // A WELCOME frees a pending slot and takes an admitted one.
        b1.promote().expect("admitted");
        assert_eq!(budget.counts(), (3, 1));
        let _c = budget
            .admit_pending([10, 0, 0, 3].into())
            .expect("room again");
        drop(b1);
        assert_eq!(budget.counts(), (4, 0));
    }

    #[test]
    fn admitted_slots_are_bounded_and_given_back() {
        let budget = Budget::new(8, 8, 1);
        let ip: IpAddr = [127, 0, 0, 1].into();
        let mut one = budget.admit_pending(ip).expect("pending");
        let mut two = budget.admit_pending(ip).expect("pending");
        one.promote().expect("admitted");
        assert_eq!(two.promote(), Err(Refusal::Admitted(1)));
        drop(one);
        two.promote().expect("admitted after the first left");
        drop(two);
        assert_eq!(budget.counts(), (0, 0));
    }
}
