//! The RTP port pool: an even port for RTP and the next odd one for RTCP (RFC 3550 §11,
//! RFC 3264 §5.1), both bound on the media IP, handed out per call and returned on drop.
//!
//! Free pairs wait in two queues, least recently freed first: pairs that keep their sockets
//! bound (up to [`MAX_IDLE_BOUND`]) and bare ports. Taking one is a pop and giving one back
//! is a push: no scan of the range, whatever the call rate. A bound pair skips binding,
//! closing and registering two sockets, the largest kernel cost of a call, so it is taken
//! first, but only once it has been free for [`QUARANTINE`]: a carrier sends every call
//! from the same address, and a late packet of an ended call must not be latched by the
//! next call on its port. Whatever reached an idle pair is read and thrown away when it is
//! handed out again, so the next call starts as if on freshly bound sockets. The pair's
//! shard says which pairs need it: its loop hears an idle pair's sockets become readable
//! and notes the pair ([`PortPool::note_stale`]), and only a noted pair is read, so that
//! handing out a pair that nothing reached costs no system call. While no bound
//! pair has waited long enough a bare port is bound instead; only when there is none, or
//! binding one failed, is a younger bound pair used, rather than refusing the call.
//!
//! A pair whose bind fails (another process holds a port) goes to the back of the ring and the
//! next pair is tried, up to [`MAX_BIND_ATTEMPTS`] times.
//!
//! Sockets are registered once, when bound, with the event loop of one media shard (see
//! [`super::shard`]), under the port number as token; a pair keeps its shard for as long as it
//! stays bound, and its idle queue is that shard's, so a call allocated on a shard is served by
//! that shard's loop without ever registering again. A call is put on the least loaded shard
//! that can take it: its own ripe bound pair first, else a bare port bound and registered for
//! it, else its youngest bound pair, else another shard's bound pair (the call then goes to
//! that shard).
//!
//! Each call holds two sockets; with the process capped at 20,000 open files that is at most
//! ~10,000 concurrent calls, less whatever else is open. When a bind fails because the process
//! is out of file descriptors the error is [`PortError::Io`], which also maps to 503.
//!
//! The receive buffer is left at the kernel default: one call's 50 packets/s fit, and setting
//! `SO_RCVBUF` on a UDP socket needs a crate beyond std and mio.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};

use crate::clock::MonotonicClock;

/// The default RTP range, as most SIP media servers use.
pub const DEFAULT_RANGE: RangeInclusive<u16> = 16384..=32767;

/// How many pairs one allocation tries before giving up.
pub const MAX_BIND_ATTEMPTS: usize = 16;

/// How many free pairs of one shard keep their sockets bound (two file descriptors each);
/// pairs freed beyond this are closed. Enough for [`QUARANTINE`] at 16,000 calls per second
/// on one shard, so that a bound pair is ripe by the time it reaches the front; idle or in
/// use, a pool never holds more than two descriptors per pair of its range.
pub const MAX_IDLE_BOUND: usize = 4096;

/// How long a freed pair stays unused before its bound sockets are handed out again: longer
/// than a packet of the ended call takes to arrive.
pub const QUARANTINE: Duration = Duration::from_millis(250);

/// Most datagrams thrown away from an idle pair when it is handed out.
const MAX_DRAINED: usize = 256;

/// Why no port pair could be handed out. Every variant is node-wide overload: the SIP edge
/// answers it with 503 and `Retry-After` (see [`PortError::sip_status`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PortError {
    /// Every pair in the range is held by a call.
    #[error("RTP port pool exhausted")]
    Exhausted,
    /// Binding failed for every pair tried; the last error is kept.
    #[error("binding an RTP port pair failed: {0}")]
    Io(#[source] io::Error),
    /// The pool has no media shard to register sockets with.
    #[error("RTP sockets need a media runtime")]
    NoRuntime,
}

impl PortError {
    /// The SIP status to answer an INVITE with when no port is available.
    pub fn sip_status(&self) -> u16 {
        503
    }
}

/// The event-loop token of the socket bound on `port`: the port number itself, so that the
/// shard finds the call from the token with one index.
pub fn token(port: u16) -> Token {
    Token(usize::from(port))
}

/// A free pair that kept its sockets, and when it was freed.
#[derive(Debug)]
struct IdlePair {
    freed: Instant,
    port: u16,
    sockets: (UdpSocket, UdpSocket),
}

/// A pair handed out: its port, its shard, and its sockets when it kept them.
type Taken = (u16, usize, Option<(UdpSocket, UdpSocket)>);

#[derive(Debug)]
struct FreeList {
    /// Per shard: pairs with sockets registered with that shard, least recently freed first.
    bound: Vec<VecDeque<IdlePair>>,
    /// Even ports without sockets, least recently freed first.
    bare: VecDeque<u16>,
    /// Numbers the next allocation, so that a late command for a pair's previous call is
    /// told apart from one for its current call.
    next_lease: u64,
}

impl FreeList {
    /// The next pair to hand out at `now` for a call that prefers `shard`: a bound pair of
    /// that shard past its quarantine, else a bare port, else that shard's bound pair freed
    /// longest ago, else another shard's.
    fn take(&mut self, shard: usize, now: Instant) -> Option<Taken> {
        let ripe = self
            .bound
            .get(shard)
            .and_then(VecDeque::front)
            .is_some_and(|p| now.saturating_duration_since(p.freed) >= QUARANTINE);
        if !ripe && let Some(port) = self.bare.pop_front() {
            return Some((port, shard, None));
        }
        self.take_bound(shard)
            .or_else(|| self.bare.pop_front().map(|port| (port, shard, None)))
    }

    /// The bound pair freed longest ago, whatever its age: of `shard` if it has one, else of
    /// the first shard that has one.
    fn take_bound(&mut self, shard: usize) -> Option<Taken> {
        let home = self.bound.get(shard).is_some_and(|q| !q.is_empty());
        let from = if home {
            shard
        } else {
            self.bound.iter().position(|q| !q.is_empty())?
        };
        let pair = self.bound.get_mut(from)?.pop_front()?;
        Some((pair.port, from, Some(pair.sockets)))
    }

    /// Queues a freed pair; returns the sockets to close when enough pairs of its shard are
    /// idle already.
    fn give_back(
        &mut self,
        now: Instant,
        port: u16,
        shard: usize,
        sockets: Option<(UdpSocket, UdpSocket)>,
    ) -> Option<(UdpSocket, UdpSocket)> {
        match (sockets, self.bound.get_mut(shard)) {
            (Some(sockets), Some(queue)) if queue.len() < MAX_IDLE_BOUND => {
                queue.push_back(IdlePair {
                    freed: now,
                    port,
                    sockets,
                });
                None
            }
            (other, _) => {
                self.bare.push_back(port);
                other
            }
        }
    }

    fn idle_bound(&self) -> usize {
        self.bound.iter().map(VecDeque::len).sum()
    }
}

/// One shard as the pool sees it: where its sockets are registered, and how many pairs its
/// calls hold.
#[derive(Debug)]
struct ShardPorts {
    registry: Registry,
    held: AtomicUsize,
}

#[derive(Debug)]
struct Shared {
    ip: IpAddr,
    first_port: u16,
    capacity: usize,
    shards: Vec<ShardPorts>,
    /// Where the search for the least loaded shard starts, turning, so that ties alternate.
    turn: AtomicUsize,
    free: Mutex<FreeList>,
    /// Per pair: a socket of it became readable while no call of its shard held it.
    stale: Box<[AtomicBool]>,
    /// Stamps freed pairs: a pair comes back when its owner drops it, wherever that is.
    clock: Arc<dyn MonotonicClock>,
}

impl Shared {
    fn free_list(&self) -> std::sync::MutexGuard<'_, FreeList> {
        // The lists stay consistent across a panic: every change is one push or one pop.
        self.free.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Returns a pair to the pool, keeping its sockets while few enough are idle.
    fn give_back(&self, port: u16, shard: usize, sockets: Option<(UdpSocket, UdpSocket)>) {
        let now = self.clock.instant();
        let closed = self.free_list().give_back(now, port, shard, sockets);
        // Closing deregisters from the shard's loop: done outside the lock.
        if let (Some((mut rtp, mut rtcp)), Some(home)) = (closed, self.shards.get(shard)) {
            let _ = home.registry.deregister(&mut rtp);
            let _ = home.registry.deregister(&mut rtcp);
        }
    }

    /// The shard whose calls hold the fewest pairs.
    fn least_loaded(&self) -> usize {
        let n = self.shards.len().max(1);
        let start = self.turn.fetch_add(1, Ordering::Relaxed) % n;
        (0..n)
            .map(|i| (start + i) % n)
            .min_by_key(|&i| {
                self.shards
                    .get(i)
                    .map_or(usize::MAX, |s| s.held.load(Ordering::Relaxed))
            })
            .unwrap_or(0)
    }

    fn bind_pair(&self, port: u16, shard: usize) -> io::Result<(UdpSocket, UdpSocket)> {
        let registry = &self
            .shards
            .get(shard)
            .ok_or_else(|| io::Error::other("no such media shard"))?
            .registry;
        let mut rtp = bind_one(SocketAddr::new(self.ip, port))?;
        let rtcp_port = port.wrapping_add(1);
        let mut rtcp = bind_one(SocketAddr::new(self.ip, rtcp_port))?;
        registry.register(&mut rtp, token(port), Interest::READABLE)?;
        if let Err(e) = registry.register(&mut rtcp, token(rtcp_port), Interest::READABLE) {
            let _ = registry.deregister(&mut rtp);
            return Err(e);
        }
        Ok((rtp, rtcp))
    }
}

/// A pool of RTP/RTCP port pairs on one local IP, shared by the media shards. Cloning shares
/// the pool.
#[derive(Debug, Clone)]
pub struct PortPool {
    shared: Arc<Shared>,
}

impl PortPool {
    /// A pool of the even ports of `range` whose odd neighbour is also in `range`, bound on
    /// `ip`, with one shard per registry: a pair's sockets are registered with its shard's.
    /// An empty or one-port range gives a pool that is always exhausted. `clock` times the
    /// quarantine of freed pairs.
    pub fn new(
        ip: IpAddr,
        range: RangeInclusive<u16>,
        registries: Vec<Registry>,
        clock: Arc<dyn MonotonicClock>,
    ) -> Self {
        let (start, end) = (*range.start(), *range.end());
        let first_port = start.saturating_add(start % 2);
        let bare: VecDeque<u16> = (first_port..end).step_by(2).collect();
        let bound = registries.iter().map(|_| VecDeque::new()).collect();
        let stale = (0..bare.len()).map(|_| AtomicBool::new(false)).collect();
        PortPool {
            shared: Arc::new(Shared {
                ip,
                first_port,
                capacity: bare.len(),
                shards: registries
                    .into_iter()
                    .map(|registry| ShardPorts {
                        registry,
                        held: AtomicUsize::new(0),
                    })
                    .collect(),
                turn: AtomicUsize::new(0),
                free: Mutex::new(FreeList {
                    bound,
                    bare,
                    next_lease: 0,
                }),
                stale,
                clock,
            }),
        }
    }

    /// How many pairs the pool holds in all.
    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }

    /// How many pairs are free now.
    pub fn available(&self) -> usize {
        let free = self.shared.free_list();
        free.idle_bound() + free.bare.len()
    }

    /// How many free pairs hold bound sockets now.
    pub fn idle_bound(&self) -> usize {
        self.shared.free_list().idle_bound()
    }

    /// How many pairs the calls of `shard` hold now.
    pub fn held(&self, shard: usize) -> usize {
        self.shared
            .shards
            .get(shard)
            .map_or(0, |s| s.held.load(Ordering::Relaxed))
    }

    /// The index of the pair holding `port` (its RTP or its RTCP port), counted from the
    /// first pair of the range: what a shard indexes its calls by.
    pub fn pair_index(&self, port: u16) -> Option<usize> {
        let offset = usize::from(port.checked_sub(self.shared.first_port)?) / 2;
        (offset < self.shared.capacity).then_some(offset)
    }

    /// The RTP port of the pair at `index`.
    pub fn rtp_port_of(&self, index: usize) -> Option<u16> {
        let offset = u16::try_from(index.checked_mul(2)?).ok()?;
        self.shared.first_port.checked_add(offset)
    }

    /// Notes that a socket of the pair at `index` (see [`PortPool::pair_index`]) became
    /// readable while no call of its shard held it: what reached it is read and thrown away
    /// when the pair is next handed out. A pair's shard calls this from its loop; a pair
    /// that is held already gains only a read of two empty sockets at its next hand-out.
    pub fn note_stale(&self, index: usize) {
        if let Some(stale) = self.shared.stale.get(index) {
            stale.store(true, Ordering::Relaxed);
        }
    }

    /// Whether the pair holding `port` was noted stale, clearing the note.
    fn take_stale(&self, port: u16) -> bool {
        self.pair_index(port)
            .and_then(|index| self.shared.stale.get(index))
            .is_some_and(|stale| stale.swap(false, Ordering::Relaxed))
    }

    /// Takes a free pair on the least loaded shard that has one and binds both sockets,
    /// registered with that shard, unless the pair kept them.
    pub fn allocate(&self) -> Result<RtpPorts, PortError> {
        if self.shared.shards.is_empty() {
            return Err(PortError::NoRuntime);
        }
        let preferred = self.shared.least_loaded();
        let mut last_error = None;
        for _ in 0..MAX_BIND_ATTEMPTS {
            let now = self.shared.clock.instant();
            let (taken, lease) = {
                let mut free = self.shared.free_list();
                // After a failed bind (a squatted port, or no file descriptors left) a
                // bound pair, however recently freed, beats refusing the call.
                let taken = match last_error {
                    Some(_) => free
                        .take_bound(preferred)
                        .or_else(|| free.take(preferred, now)),
                    None => free.take(preferred, now),
                };
                free.next_lease = free.next_lease.wrapping_add(1);
                (taken, free.next_lease)
            };
            let Some((port, shard, sockets)) = taken else {
                break;
            };
            let bound = match sockets {
                Some((rtp, rtcp)) => {
                    if self.take_stale(port) {
                        drain(&rtp);
                        drain(&rtcp);
                    }
                    Ok((rtp, rtcp))
                }
                None => self.shared.bind_pair(port, shard),
            };
            match bound {
                Ok(sockets) => {
                    if let Some(s) = self.shared.shards.get(shard) {
                        s.held.fetch_add(1, Ordering::Relaxed);
                    }
                    return Ok(RtpPorts {
                        sockets: Some(sockets),
                        port,
                        shard,
                        lease,
                        shared: Arc::clone(&self.shared),
                    });
                }
                Err(e) => {
                    // The port goes to the back of its queue, to be tried again later.
                    self.shared.free_list().give_back(now, port, shard, None);
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.map_or(PortError::Exhausted, PortError::Io))
    }
}

/// Reads and throws away what reached an idle socket.
fn drain(socket: &UdpSocket) {
    let mut buf = [0u8; 1500];
    for _ in 0..MAX_DRAINED {
        if socket.recv_from(&mut buf).is_err() {
            break;
        }
    }
}

fn bind_one(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = std::net::UdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    Ok(UdpSocket::from_std(socket))
}

/// A bound RTP/RTCP socket pair held by one call, registered with one shard. Dropping it
/// returns the pair, with its sockets still bound and registered, to its pool.
#[derive(Debug)]
pub struct RtpPorts {
    /// Always `Some` until dropped.
    sockets: Option<(UdpSocket, UdpSocket)>,
    port: u16,
    shard: usize,
    lease: u64,
    shared: Arc<Shared>,
}

impl RtpPorts {
    /// The RTP port, to put in the SDP answer's m= line (RTCP is this + 1).
    pub fn rtp_port(&self) -> u16 {
        self.port
    }

    /// The shard whose event loop the sockets are registered with.
    pub fn shard(&self) -> usize {
        self.shard
    }

    /// This allocation's number, unique within the pool (until it wraps at 2^64).
    pub fn lease(&self) -> u64 {
        self.lease
    }

    fn pair(&self) -> &(UdpSocket, UdpSocket) {
        self.sockets
            .as_ref()
            .expect("an RtpPorts holds its sockets until it is dropped")
    }

    /// The RTP socket.
    pub fn rtp(&self) -> &UdpSocket {
        &self.pair().0
    }

    /// The RTCP socket.
    pub fn rtcp(&self) -> &UdpSocket {
        &self.pair().1
    }
}

impl Drop for RtpPorts {
    fn drop(&mut self) {
        if let Some(s) = self.shared.shards.get(self.shard) {
            s.held.fetch_sub(1, Ordering::Relaxed);
        }
        self.shared
            .give_back(self.port, self.shard, self.sockets.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{FakeClock, origin};
    use chrono::DateTime;
    use mio::{Events, Poll};
    use std::net::Ipv4Addr;

    const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn still() -> Arc<FakeClock> {
        FakeClock::new(DateTime::UNIX_EPOCH)
    }

    /// A pool over `range` with `shards` event loops of its own, on a clock that stands
    /// still: every freed pair stays young.
    fn pool(range: RangeInclusive<u16>, shards: usize) -> (Vec<Poll>, PortPool) {
        pool_on(range, shards, still())
    }

    fn pool_on(
        range: RangeInclusive<u16>,
        shards: usize,
        clock: Arc<FakeClock>,
    ) -> (Vec<Poll>, PortPool) {
        let polls: Vec<Poll> = (0..shards).map(|_| Poll::new().unwrap()).collect();
        let registries = polls
            .iter()
            .map(|p| p.registry().try_clone().unwrap())
            .collect();
        (polls, PortPool::new(LOOPBACK, range, registries, clock))
    }

    #[test]
    fn range_keeps_only_even_ports_with_an_odd_neighbour() {
        let capacity = |range| PortPool::new(LOOPBACK, range, Vec::new(), still()).capacity();
        assert_eq!(capacity(16384..=32767), 8192);
        assert_eq!(capacity(10001..=10006), 2); // 10002, 10004
        assert_eq!(capacity(10000..=10000), 0);
        assert_eq!(capacity(65534..=65535), 1);
        assert_eq!(capacity(65535..=65535), 0);
    }

    #[test]
    fn pairs_are_indexed_from_the_first_even_port() {
        let (_polls, pool) = pool(10001..=10006, 1);
        assert_eq!(pool.pair_index(10002), Some(0));
        assert_eq!(pool.pair_index(10003), Some(0));
        assert_eq!(pool.pair_index(10005), Some(1));
        assert_eq!(pool.pair_index(10006), None);
        assert_eq!(pool.pair_index(10001), None);
        assert_eq!(pool.rtp_port_of(1), Some(10004));
    }

    #[test]
    fn allocation_without_a_shard_is_an_error() {
        let pool = PortPool::new(LOOPBACK, 30000..=30001, Vec::new(), still());
        assert!(matches!(pool.allocate(), Err(PortError::NoRuntime)));
        assert_eq!(pool.available(), 1);
    }

    #[test]
    fn allocates_until_empty_then_503_and_drop_returns_the_pair() {
        let (_polls, pool) = pool(31000..=31007, 1);
        assert_eq!(pool.capacity(), 4);
        let mut held = Vec::new();
        for expected in [31000, 31002, 31004, 31006] {
            let ports = pool.allocate().unwrap();
            assert_eq!(ports.rtp_port(), expected);
            assert_eq!(
                ports.rtp().local_addr().unwrap(),
                SocketAddr::new(LOOPBACK, expected)
            );
            assert_eq!(
                ports.rtcp().local_addr().unwrap(),
                SocketAddr::new(LOOPBACK, expected + 1)
            );
            held.push(ports);
        }
        assert_eq!((pool.available(), pool.held(0)), (0, 4));
        let err = pool.allocate().unwrap_err();
        assert!(matches!(err, PortError::Exhausted));
        assert_eq!(err.sip_status(), 503);

        // Returned pairs go to the back of the ring, still bound, and are handed out again.
        let second = held.remove(1);
        let lease = second.lease();
        drop(second);
        assert_eq!(pool.available(), 1);
        assert_eq!(pool.idle_bound(), 1);
        let again = pool.allocate().unwrap();
        assert_eq!(again.rtp_port(), 31002);
        assert_ne!(again.lease(), lease);
        assert_eq!(pool.idle_bound(), 0);
        drop(again);
        drop(held);
        assert_eq!(
            (pool.available(), pool.idle_bound(), pool.held(0)),
            (4, 4, 0)
        );
    }

    #[test]
    fn a_bound_pair_waits_out_its_quarantine_while_bare_ports_remain() {
        let sockets = (
            bind_one(SocketAddr::new(LOOPBACK, 31300)).unwrap(),
            bind_one(SocketAddr::new(LOOPBACK, 31301)).unwrap(),
        );
        let t0 = origin();
        let mut free = FreeList {
            bound: vec![VecDeque::new()],
            bare: VecDeque::from([31302, 31304]),
            next_lease: 0,
        };
        assert!(free.give_back(t0, 31300, 0, Some(sockets)).is_none());

        let young = t0 + QUARANTINE - Duration::from_millis(1);
        let (port, _, sockets) = free.take(0, young).unwrap();
        assert_eq!((port, sockets.is_some()), (31302, false));
        free.give_back(young, port, 0, None);

        let (port, _, sockets) = free.take(0, t0 + QUARANTINE).unwrap();
        assert_eq!((port, sockets.is_some()), (31300, true));
        free.give_back(t0 + QUARANTINE, port, 0, sockets);

        // With no bare port left, a young bound pair is used rather than refusing the call.
        free.bare.clear();
        let (port, _, sockets) = free.take(0, t0 + QUARANTINE).unwrap();
        assert_eq!((port, sockets.is_some()), (31300, true));
        assert!(free.take(0, t0 + QUARANTINE).is_none());
    }

    #[test]
    fn a_dropped_pair_is_handed_out_again_once_the_pool_clock_passes_its_quarantine() {
        let clock = still();
        let (_polls, pool) = pool_on(31700..=31703, 1, clock.clone());
        let first = pool.allocate().unwrap();
        assert_eq!(first.rtp_port(), 31700);
        drop(first);
        clock.advance(QUARANTINE - Duration::from_millis(1));
        // Still young: the bare port is bound instead.
        let young = pool.allocate().unwrap();
        assert_eq!(young.rtp_port(), 31702);
        drop(young);
        clock.advance(Duration::from_millis(1));
        let ripe = pool.allocate().unwrap();
        assert_eq!((ripe.rtp_port(), pool.idle_bound()), (31700, 1));
    }

    #[test]
    fn idle_pairs_stay_with_their_shard_and_calls_spread_over_shards() {
        let (_polls, pool) = pool(31600..=31605, 2);
        let a = pool.allocate().unwrap();
        let b = pool.allocate().unwrap();
        // The least loaded shard takes each call.
        assert_eq!((a.shard(), b.shard()), (0, 1));
        assert_eq!((pool.held(0), pool.held(1)), (1, 1));
        let (a_port, b_port) = (a.rtp_port(), b.rtp_port());
        drop(a);
        drop(b);
        // The last bare port goes to the next call, on the least loaded shard.
        let c = pool.allocate().unwrap();
        assert_eq!((c.rtp_port(), c.shard()), (31604, 0));
        // No bare port left: shard 1 takes its own young pair, not shard 0's.
        let d = pool.allocate().unwrap();
        assert_eq!((d.rtp_port(), d.shard()), (b_port, 1));
        drop(c);
        // Shard 1's turn at a tie, but it has no pair: the call goes where a pair is.
        let e = pool.allocate().unwrap();
        let f = pool.allocate().unwrap();
        assert_eq!(e.shard(), 0);
        assert_eq!(f.shard(), 0);
        assert_eq!([e.rtp_port(), f.rtp_port()], [a_port, 31604]);
        assert!(matches!(pool.allocate(), Err(PortError::Exhausted)));
    }

    #[test]
    fn a_failed_bind_falls_back_to_a_young_bound_pair() {
        let (_polls, pool) = pool(31400..=31403, 1);
        let first = pool.allocate().unwrap();
        assert_eq!(first.rtp_port(), 31400);
        drop(first);
        // 31400 is bound but in quarantine; the bare 31402 cannot be bound.
        let squatter = std::net::UdpSocket::bind((LOOPBACK, 31403)).unwrap();
        let ports = pool.allocate().unwrap();
        assert_eq!(ports.rtp_port(), 31400);
        assert_eq!((pool.available(), pool.idle_bound()), (1, 0));
        drop(squatter);
    }

    #[test]
    fn a_reused_pair_starts_empty_and_its_shard_hears_it_under_its_port() {
        let (mut polls, pool) = pool(31500..=31501, 1);
        let ports = pool.allocate().unwrap();
        let rtp = ports.rtp().local_addr().unwrap();
        drop(ports);
        // A late packet of the ended call reaches the idle pair (loopback delivers at once).
        let late = std::net::UdpSocket::bind((LOOPBACK, 0)).unwrap();
        late.send_to(b"late rtp", rtp).unwrap();
        late.send_to(b"late rtcp", (LOOPBACK, 31501)).unwrap();
        // The shard's loop hears the idle sockets and notes the pair, as its loop does.
        let mut events = Events::with_capacity(8);
        let mut heard = Vec::new();
        while heard.len() < 2 {
            polls[0]
                .poll(&mut events, Some(Duration::from_secs(5)))
                .unwrap();
            heard.extend(events.iter().map(|e| e.token()));
        }
        assert!(heard.contains(&token(31500)) && heard.contains(&token(31501)));
        pool.note_stale(pool.pair_index(31501).unwrap());
        let ports = pool.allocate().unwrap();
        assert_eq!(ports.rtp_port(), 31500);
        let mut buf = [0u8; 64];
        assert!(
            ports.rtp().recv_from(&mut buf).is_err(),
            "a stale packet was kept"
        );
        assert!(
            ports.rtcp().recv_from(&mut buf).is_err(),
            "a stale packet was kept"
        );
        // What comes now is delivered, and the shard's loop is told under the port's token.
        late.send_to(b"new", rtp).unwrap();
        polls[0]
            .poll(&mut events, Some(Duration::from_secs(5)))
            .unwrap();
        let tokens: Vec<Token> = events.iter().map(|e| e.token()).collect();
        assert!(tokens.contains(&token(31500)), "{tokens:?}");
        let (n, _) = ports.rtp().recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"new");
    }

    #[test]
    fn a_reused_pair_that_no_packet_reached_is_handed_out_without_reading_it() {
        let (_polls, pool) = pool(31510..=31511, 1);
        let ports = pool.allocate().unwrap();
        let rtp = ports.rtp().local_addr().unwrap();
        drop(ports);
        // Not noted by the shard (here: no loop runs), so the pair is not read: a packet
        // that arrives between the shard's note and the hand-out is the new call's.
        let sender = std::net::UdpSocket::bind((LOOPBACK, 0)).unwrap();
        sender.send_to(b"unheard", rtp).unwrap();
        let ports = pool.allocate().unwrap();
        assert_eq!(ports.rtp_port(), 31510);
        let mut buf = [0u8; 64];
        let (n, _) = ports.rtp().recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"unheard");
        drop(ports);
        // A note is used once: the pair after a drained hand-out is read only if noted again.
        pool.note_stale(pool.pair_index(31510).unwrap());
        sender.send_to(b"stale", rtp).unwrap();
        let ports = pool.allocate().unwrap();
        assert!(
            ports.rtp().recv_from(&mut buf).is_err(),
            "a noted pair was not read"
        );
        drop(ports);
        sender.send_to(b"kept", rtp).unwrap();
        let ports = pool.allocate().unwrap();
        let (n, _) = ports.rtp().recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"kept");
    }

    #[test]
    fn a_pair_held_elsewhere_is_skipped() {
        let squatter = std::net::UdpSocket::bind((LOOPBACK, 31101)).unwrap();
        let (_polls, pool) = pool(31100..=31103, 1);
        let ports = pool.allocate().unwrap();
        assert_eq!(ports.rtp_port(), 31102);
        // The busy pair stays in the pool and fails again while it is held.
        assert_eq!(pool.available(), 1);
        assert!(matches!(pool.allocate(), Err(PortError::Io(_))));
        drop(squatter);
        assert_eq!(pool.allocate().unwrap().rtp_port(), 31100);
    }
}
