//! Who may hold a TCP connection: a small budget for strangers, per source
//! address too, apart from the slots of admitted plugins.
//!
//! Before this, any peer that sent one complete frame (even a HELLO that was
//! rejected) kept its slot for as long as it sent something every few
//! seconds, and 255 such peers locked real plugins out for good. Now a
//! connection is *pending* until the host answers its HELLO with WELCOME:
//! pending connections share `max_pending` places (and
//! `max_pending_per_address` per source address — an IPv6 /64 counts as one
//! address, since one host holds a whole /64), and are cut at the handshake
//! deadline whatever they send. When the places are full, a newcomer takes
//! the place of the oldest pending connection that has not sent its HELLO
//! after [`MIN_AGE`]: a real plugin sends it within milliseconds of
//! connecting, so it is never pushed out, while idle strangers can never
//! hold the door shut. Only a WELCOME moves a connection to the admitted
//! slots.
//!
//! Strangers that open connections in a storm from many addresses can
//! still keep every pending place busy; so an address from which a plugin
//! was admitted before (within [`TRUST_FOR`]) gets pending places of its
//! own, as many again, that strangers never touch: an external plugin
//! reconnecting after a host restart or a network cut gets in whatever the
//! rest of the network does.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// A pending connection younger than this is never pushed out: time to send
/// its HELLO (a plugin needs a few milliseconds), with a wide margin.
pub const MIN_AGE: Duration = Duration::from_millis(500);
/// How long an address where a plugin was admitted keeps its own places.
pub const TRUST_FOR: Duration = Duration::from_secs(24 * 3600);
/// Addresses remembered as trusted; past it the one admitted longest ago is forgotten.
const MAX_TRUSTED: usize = 1024;

/// The counts, shared by the accept loop and every connection.
pub struct Budget {
    max_pending: usize,
    max_pending_per_address: usize,
    max_admitted: usize,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    /// Pending connections, oldest first.
    pending: VecDeque<Arc<Entry>>,
    admitted: usize,
    /// Sources where a plugin was admitted, and when last.
    trusted: HashMap<IpAddr, Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Pending,
    Admitted,
    Gone,
}

struct Entry {
    address: IpAddr,
    since: Instant,
    /// Counted in the trusted sources' places.
    trusted: bool,
    /// The client has sent a complete message frame (its HELLO).
    greeted: AtomicBool,
    place: Mutex<Place>,
    evicted: CancellationToken,
}

/// Why a connection was not let in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Every pending place is held by a connection that sent its HELLO or
    /// has not had its time to (see [`MIN_AGE`]).
    #[error("{0} connections are already pending, none idle long enough to make way")]
    Pending(usize),
    /// Every pending place of this address is held likewise.
    #[error(
        "{count} connections from {address} are already pending, none idle long enough to make way"
    )]
    PendingFromAddress {
        /// The source address (an IPv6 address stands for its /64).
        address: IpAddr,
        /// Its pending connections.
        count: usize,
    },
    /// Every admitted slot is taken.
    #[error("all {0} admitted connections are in use")]
    Admitted(usize),
    /// A newer connection took this one's place before its HELLO.
    #[error("its place was given to a newer connection before it sent a HELLO")]
    Evicted,
}

/// A connection's place in the budget; given back when dropped.
pub struct Slot {
    budget: Arc<Budget>,
    entry: Arc<Entry>,
}

/// What counts as one source: the address, or an IPv6 address's /64.
fn source(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
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

    /// A pending place for a new connection from `address`, taking the place
    /// of the oldest idle connection (see [`MIN_AGE`]) if none is free.
    pub fn admit_pending(self: &Arc<Budget>, address: IpAddr) -> Result<Slot, Refusal> {
        self.admit_pending_at(address, Instant::now())
    }

    fn admit_pending_at(
        self: &Arc<Budget>,
        address: IpAddr,
        now: Instant,
    ) -> Result<Slot, Refusal> {
        let address = source(address);
        let mut c = self.lock();
        let trusted = c
            .trusted
            .get(&address)
            .is_some_and(|t| now.saturating_duration_since(*t) < TRUST_FOR);
        let pool = |e: &Entry| e.trusted == trusted;
        let evictable = |e: &Entry| {
            !e.greeted.load(Ordering::Relaxed) && now.saturating_duration_since(e.since) >= MIN_AGE
        };
        let in_pool = c.pending.iter().filter(|e| pool(e)).count();
        let from = c
            .pending
            .iter()
            .filter(|e| pool(e) && e.address == address)
            .count();
        if from >= self.max_pending_per_address {
            if !evict_oldest(&mut c, |e| pool(e) && e.address == address && evictable(e)) {
                return Err(Refusal::PendingFromAddress {
                    address,
                    count: from,
                });
            }
        } else if in_pool >= self.max_pending && !evict_oldest(&mut c, |e| pool(e) && evictable(e))
        {
            return Err(Refusal::Pending(in_pool));
        }
        let entry = Arc::new(Entry {
            address,
            since: now,
            trusted,
            greeted: AtomicBool::new(false),
            place: Mutex::new(Place::Pending),
            evicted: CancellationToken::new(),
        });
        c.pending.push_back(entry.clone());
        Ok(Slot {
            budget: self.clone(),
            entry,
        })
    }

    /// Connections pending and admitted now.
    pub fn counts(&self) -> (usize, usize) {
        let c = self.lock();
        (c.pending.len(), c.admitted)
    }
}

/// Takes the place of the oldest pending connection that matches; false
/// if there is none.
fn evict_oldest(c: &mut Counts, matches: impl Fn(&Entry) -> bool) -> bool {
    let Some(i) = c.pending.iter().position(|e| matches(e)) else {
        return false;
    };
    if let Some(old) = c.pending.remove(i) {
        *lock_place(&old) = Place::Gone;
        old.evicted.cancel();
    }
    true
}

fn lock_place(e: &Entry) -> std::sync::MutexGuard<'_, Place> {
    e.place.lock().unwrap_or_else(|p| p.into_inner())
}

impl Slot {
    /// The client sent a complete message frame: it may no longer be pushed
    /// out by a newcomer.
    pub fn greeted(&self) {
        self.entry.greeted.store(true, Ordering::Relaxed);
    }

    /// Resolves if a newer connection took this one's place.
    pub async fn evicted(&self) {
        self.entry.evicted.cancelled().await
    }

    /// The host sent WELCOME: move from the pending budget to an admitted slot.
    pub fn promote(&self) -> Result<(), Refusal> {
        let mut c = self.budget.lock();
        let mut place = lock_place(&self.entry);
        match *place {
            Place::Admitted => return Ok(()),
            Place::Gone => return Err(Refusal::Evicted),
            Place::Pending => {}
        }
        if c.admitted >= self.budget.max_admitted {
            return Err(Refusal::Admitted(c.admitted));
        }
        c.admitted += 1;
        c.pending.retain(|e| !Arc::ptr_eq(e, &self.entry));
        *place = Place::Admitted;
        if c.trusted.len() >= MAX_TRUSTED && !c.trusted.contains_key(&self.entry.address) {
            let oldest = c.trusted.iter().min_by_key(|(_, t)| **t).map(|(a, _)| *a);
            if let Some(a) = oldest {
                c.trusted.remove(&a);
            }
        }
        c.trusted.insert(self.entry.address, Instant::now());
        Ok(())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.budget.lock();
        let mut place = lock_place(&self.entry);
        match *place {
            Place::Admitted => c.admitted = c.admitted.saturating_sub(1),
            Place::Pending => c.pending.retain(|e| !Arc::ptr_eq(e, &self.entry)),
            Place::Gone => {}
        }
        *place = Place::Gone;
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
        let a1 = budget.admit_pending(a).expect("first from a");
        let a2 = budget.admit_pending(a).expect("second from a");
        a1.greeted();
        a2.greeted();
        assert!(matches!(
            budget.admit_pending(a),
            Err(Refusal::PendingFromAddress { count: 2, .. })
        ));
        let b1 = budget.admit_pending(b).expect("b is not a");
        let b2 = budget.admit_pending(b).expect("b again");
        b1.greeted();
        b2.greeted();
        assert!(matches!(
            budget.admit_pending([10, 0, 0, 3].into()),
            Err(Refusal::Pending(4))
        ));
        // A WELCOME frees a pending place and takes an admitted slot.
        b1.promote().expect("admitted");
        assert_eq!(budget.counts(), (3, 1));
        let _c = budget
            .admit_pending([10, 0, 0, 3].into())
            .expect("room again");
        drop(b1);
        assert_eq!(budget.counts(), (4, 0));
    }

    #[test]
    fn idle_strangers_give_their_place_to_newcomers() {
        let budget = Budget::new(3, 2, 8);
        let t0 = Instant::now();
        let idle: Vec<Slot> = (1..=3u8)
            .map(|i| {
                budget
                    .admit_pending_at([10, 0, 0, i].into(), t0)
                    .expect("room")
            })
            .collect();
        // Full, nobody has said HELLO, but all are young: nobody goes.
        assert!(budget.admit_pending_at([10, 0, 0, 9].into(), t0).is_err());
        // Once they have had their time, the oldest goes.
        let later = t0 + MIN_AGE;
        let newcomer = budget
            .admit_pending_at([10, 0, 0, 9].into(), later)
            .expect("a newcomer gets in past an idle one");
        assert!(idle[0].entry.evicted.is_cancelled());
        assert_eq!(idle[0].promote(), Err(Refusal::Evicted));
        assert_eq!(budget.counts(), (3, 0));
        drop(idle);
        assert_eq!(
            budget.counts(),
            (1, 0),
            "the evicted place is not given back twice"
        );
        newcomer.promote().expect("admitted");
        // Per address too: the idle one of the same address makes way.
        let x: IpAddr = [10, 0, 0, 5].into();
        let x1 = budget.admit_pending_at(x, later).expect("room");
        let x2 = budget.admit_pending_at(x, later).expect("room");
        x2.greeted();
        let _x3 = budget
            .admit_pending_at(x, later + MIN_AGE)
            .expect("x1 was idle");
        assert!(x1.entry.evicted.is_cancelled());
        assert!(!x2.entry.evicted.is_cancelled());
    }

    #[test]
    fn an_address_that_had_a_plugin_admitted_has_places_of_its_own() {
        let budget = Budget::new(2, 2, 8);
        let home: IpAddr = [10, 0, 0, 7].into();
        let first = budget.admit_pending(home).expect("room");
        first.promote().expect("admitted");
        drop(first);
        // Strangers fill every stranger's place with connections that said HELLO.
        let strangers: Vec<Slot> = (1..=2u8)
            .map(|i| budget.admit_pending([10, 0, 1, i].into()).expect("room"))
            .collect();
        strangers.iter().for_each(Slot::greeted);
        assert!(budget.admit_pending([10, 0, 1, 9].into()).is_err());
        // The plugin's address still gets in, in its own places.
        let back = budget.admit_pending(home).expect("trusted places");
        back.promote().expect("admitted again");
    }

    #[test]
    fn an_ipv6_slash_64_is_one_source() {
        let budget = Budget::new(8, 1, 8);
        let one: IpAddr = "2001:db8:1:2::1".parse().expect("v6");
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("v6");
        let other_64: IpAddr = "2001:db8:1:3::1".parse().expect("v6");
        let first = budget.admit_pending(one).expect("room");
        first.greeted();
        assert!(budget.admit_pending(same_64).is_err());
        let _other = budget.admit_pending(other_64).expect("another /64");
    }

    #[test]
    fn admitted_slots_are_bounded_and_given_back() {
        let budget = Budget::new(8, 8, 1);
        let ip: IpAddr = [127, 0, 0, 1].into();
        let one = budget.admit_pending(ip).expect("pending");
        let two = budget.admit_pending(ip).expect("pending");
        one.promote().expect("admitted");
        assert_eq!(two.promote(), Err(Refusal::Admitted(1)));
        drop(one);
        two.promote().expect("admitted after the first left");
        drop(two);
        assert_eq!(budget.counts(), (0, 0));
    }
}
