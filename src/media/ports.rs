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
//! handed out again, so the next call starts as if on freshly bound sockets. While no bound
//! pair has waited long enough a bare port is bound instead; only when there is none, or
//! binding one failed, is a younger bound pair used, rather than refusing the call.
//!
//! A pair whose bind fails (another process holds a port) goes to the back of the ring and the
//! next pair is tried, up to [`MAX_BIND_ATTEMPTS`] times.
//!
//! Each call holds two sockets; with the process capped at 20,000 open files that is at most
//! ~10,000 concurrent calls, less whatever else is open. When a bind fails because the process
//! is out of file descriptors the error is [`PortError::Io`], which also maps to 503.
//!
//! The receive buffer is left at the kernel default: one call's 50 packets/s fit, and setting
//! `SO_RCVBUF` on a UDP socket needs a crate beyond std and tokio.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

/// The default RTP range, as most SIP media servers use.
pub const DEFAULT_RANGE: RangeInclusive<u16> = 16384..=32767;

/// How many pairs one allocation tries before giving up.
pub const MAX_BIND_ATTEMPTS: usize = 16;

/// How many free pairs keep their sockets bound (two file descriptors each); pairs freed
/// beyond this are closed. Enough for [`QUARANTINE`] at 16,000 calls per second, so that a
/// bound pair is ripe by the time it reaches the front; idle or in use, a pool never holds
/// more than two descriptors per pair of its range.
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
    /// Called outside a tokio runtime, so the sockets cannot be registered.
    #[error("RTP sockets need a tokio runtime")]
    NoRuntime,
}

impl PortError {
    /// The SIP status to answer an INVITE with when no port is available.
    pub fn sip_status(&self) -> u16 {
        503
    }
}

/// A free pair that kept its sockets, and when it was freed.
#[derive(Debug)]
struct IdlePair {
    freed: Instant,
    port: u16,
    sockets: (UdpSocket, UdpSocket),
}

#[derive(Debug)]
struct FreeList {
    /// Pairs with bound sockets, least recently freed first.
    bound: VecDeque<IdlePair>,
    /// Even ports without sockets, least recently freed first.
    bare: VecDeque<u16>,
}

impl FreeList {
    /// The next pair to hand out at `now`: a bound pair past its quarantine, else a bare
    /// port, else the bound pair freed longest ago.
    fn take(&mut self, now: Instant) -> Option<(u16, Option<(UdpSocket, UdpSocket)>)> {
        let ripe = self
            .bound
            .front()
            .is_some_and(|p| now.saturating_duration_since(p.freed) >= QUARANTINE);
        if !ripe && let Some(port) = self.bare.pop_front() {
            return Some((port, None));
        }
        self.take_bound()
            .or_else(|| self.bare.pop_front().map(|port| (port, None)))
    }

    /// The bound pair freed longest ago, whatever its age.
    fn take_bound(&mut self) -> Option<(u16, Option<(UdpSocket, UdpSocket)>)> {
        self.bound.pop_front().map(|p| (p.port, Some(p.sockets)))
    }

    /// Queues a freed pair; returns the sockets to close when enough pairs are idle already.
    fn give_back(
        &mut self,
        now: Instant,
        port: u16,
        sockets: Option<(UdpSocket, UdpSocket)>,
    ) -> Option<(UdpSocket, UdpSocket)> {
        match sockets {
            Some(sockets) if self.bound.len() < MAX_IDLE_BOUND => {
                self.bound.push_back(IdlePair {
                    freed: now,
                    port,
                    sockets,
                });
                None
            }
            other => {
                self.bare.push_back(port);
                other
            }
        }
    }
}

#[derive(Debug)]
struct Shared {
    ip: IpAddr,
    capacity: usize,
    free: Mutex<FreeList>,
}

impl Shared {
    fn free_list(&self) -> std::sync::MutexGuard<'_, FreeList> {
        // The lists stay consistent across a panic: every change is one push or one pop.
        self.free.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Returns a pair to the pool, keeping its sockets while few enough are idle.
    fn give_back(&self, port: u16, sockets: Option<(UdpSocket, UdpSocket)>) {
        let closed = self.free_list().give_back(Instant::now(), port, sockets);
        // Closing deregisters from the reactor: done outside the lock.
        drop(closed);
    }
}

/// A pool of RTP/RTCP port pairs on one local IP. Cloning shares the pool.
#[derive(Debug, Clone)]
pub struct PortPool {
    shared: Arc<Shared>,
}

impl PortPool {
    /// A pool of the even ports of `range` whose odd neighbour is also in `range`, bound on
    /// `ip`. An empty or one-port range gives a pool that is always exhausted.
    pub fn new(ip: IpAddr, range: RangeInclusive<u16>) -> Self {
        let (start, end) = (*range.start(), *range.end());
        let first_even = start.saturating_add(start % 2);
        let bare: VecDeque<u16> = (first_even..end).step_by(2).collect();
        PortPool {
            shared: Arc::new(Shared {
                ip,
                capacity: bare.len(),
                free: Mutex::new(FreeList {
                    bound: VecDeque::new(),
                    bare,
                }),
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
        free.bound.len() + free.bare.len()
    }

    /// How many free pairs hold bound sockets now.
    pub fn idle_bound(&self) -> usize {
        self.shared.free_list().bound.len()
    }

    /// Takes a free pair and binds both sockets. Must run inside a tokio runtime.
    pub fn allocate(&self) -> Result<RtpPorts, PortError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(PortError::NoRuntime);
        }
        let mut last_error = None;
        for _ in 0..MAX_BIND_ATTEMPTS {
            let taken = {
                let mut free = self.shared.free_list();
                // After a failed bind (a squatted port, or no file descriptors left) a
                // bound pair, however recently freed, beats refusing the call.
                match last_error {
                    Some(_) => free.take_bound().or_else(|| free.take(Instant::now())),
                    None => free.take(Instant::now()),
                }
            };
            let Some((port, sockets)) = taken else {
                break;
            };
            let bound = match sockets {
                Some((rtp, rtcp)) => {
                    drain(&rtp);
                    drain(&rtcp);
                    Ok((rtp, rtcp))
                }
                None => bind_pair(self.shared.ip, port),
            };
            match bound {
                Ok(sockets) => {
                    return Ok(RtpPorts {
                        sockets: Some(sockets),
                        port,
                        shared: Arc::clone(&self.shared),
                    });
                }
                Err(e) => {
                    // The port goes to the back of its queue, to be tried again later.
                    self.shared.give_back(port, None);
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.map_or(PortError::Exhausted, PortError::Io))
    }
}

fn bind_pair(ip: IpAddr, port: u16) -> io::Result<(UdpSocket, UdpSocket)> {
    let rtp = bind_one(SocketAddr::new(ip, port))?;
    let rtcp = bind_one(SocketAddr::new(ip, port.wrapping_add(1)))?;
    Ok((rtp, rtcp))
}

/// Reads and throws away what reached an idle socket.
fn drain(socket: &UdpSocket) {
    let mut buf = [0u8; 1500];
    for _ in 0..MAX_DRAINED {
        if socket.try_recv_from(&mut buf).is_err() {
            break;
        }
    }
}

fn bind_one(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = std::net::UdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}

/// A bound RTP/RTCP socket pair held by one call. Dropping it returns the pair, with its
/// sockets still bound, to its pool.
#[derive(Debug)]
pub struct RtpPorts {
    /// Always `Some` until dropped.
    sockets: Option<(UdpSocket, UdpSocket)>,
    port: u16,
    shared: Arc<Shared>,
}

impl RtpPorts {
    /// The RTP port, to put in the SDP answer's m= line (RTCP is this + 1).
    pub fn rtp_port(&self) -> u16 {
        self.port
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
        self.shared.give_back(self.port, self.sockets.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    #[test]
    fn range_keeps_only_even_ports_with_an_odd_neighbour() {
        assert_eq!(PortPool::new(LOOPBACK, 16384..=32767).capacity(), 8192);
        assert_eq!(PortPool::new(LOOPBACK, 10001..=10006).capacity(), 2); // 10002, 10004
        assert_eq!(PortPool::new(LOOPBACK, 10000..=10000).capacity(), 0);
        assert_eq!(PortPool::new(LOOPBACK, 65534..=65535).capacity(), 1);
        assert_eq!(PortPool::new(LOOPBACK, 65535..=65535).capacity(), 0);
    }

    #[test]
    fn allocation_outside_a_runtime_is_an_error() {
        let pool = PortPool::new(LOOPBACK, 30000..=30001);
        assert!(matches!(pool.allocate(), Err(PortError::NoRuntime)));
        assert_eq!(pool.available(), 1);
    }

    #[tokio::test]
    async fn allocates_until_empty_then_503_and_drop_returns_the_pair() {
        let pool = PortPool::new(LOOPBACK, 31000..=31007);
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
        assert_eq!(pool.available(), 0);
        let err = pool.allocate().unwrap_err();
        assert!(matches!(err, PortError::Exhausted));
        assert_eq!(err.sip_status(), 503);

        // Returned pairs go to the back of the ring, still bound, and are handed out again.
        let second = held.remove(1);
        drop(second);
        assert_eq!(pool.available(), 1);
        assert_eq!(pool.idle_bound(), 1);
        let again = pool.allocate().unwrap();
        assert_eq!(again.rtp_port(), 31002);
        assert_eq!(pool.idle_bound(), 0);
        drop(again);
        drop(held);
        assert_eq!(pool.available(), 4);
        assert_eq!(pool.idle_bound(), 4);
    }

    #[tokio::test]
    async fn a_bound_pair_waits_out_its_quarantine_while_bare_ports_remain() {
        let sockets = bind_pair(LOOPBACK, 31300).unwrap();
        let t0 = Instant::now();
        let mut free = FreeList {
            bound: VecDeque::new(),
            bare: VecDeque::from([31302, 31304]),
        };
        assert!(free.give_back(t0, 31300, Some(sockets)).is_none());

        let young = t0 + QUARANTINE - Duration::from_millis(1);
        let (port, sockets) = free.take(young).unwrap();
        assert_eq!((port, sockets.is_some()), (31302, false));
        free.give_back(young, port, None);

        let (port, sockets) = free.take(t0 + QUARANTINE).unwrap();
        assert_eq!((port, sockets.is_some()), (31300, true));
        free.give_back(t0 + QUARANTINE, port, sockets);

        // With no bare port left, a young bound pair is used rather than refusing the call.
        free.bare.clear();
        let (port, sockets) = free.take(t0 + QUARANTINE).unwrap();
        assert_eq!((port, sockets.is_some()), (31300, true));
        assert!(free.take(t0 + QUARANTINE).is_none());
    }

    #[tokio::test]
    async fn a_failed_bind_falls_back_to_a_young_bound_pair() {
        let pool = PortPool::new(LOOPBACK, 31400..=31403);
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

    #[tokio::test]
    async fn a_reused_pair_starts_empty() {
        let pool = PortPool::new(LOOPBACK, 31500..=31501);
        let ports = pool.allocate().unwrap();
        let rtp = ports.rtp().local_addr().unwrap();
        drop(ports);
        // A late packet of the ended call reaches the idle pair.
        let late = std::net::UdpSocket::bind((LOOPBACK, 0)).unwrap();
        late.send_to(b"late rtp", rtp).unwrap();
        late.send_to(b"late rtcp", (LOOPBACK, 31501)).unwrap();
        // Let the reactor see the packets arrive.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let ports = pool.allocate().unwrap();
        assert_eq!(ports.rtp_port(), 31500);
        let mut buf = [0u8; 64];
        assert!(
            ports.rtp().try_recv_from(&mut buf).is_err(),
            "a stale packet was kept"
        );
        assert!(
            ports.rtcp().try_recv_from(&mut buf).is_err(),
            "a stale packet was kept"
        );
        // What comes now is delivered.
        late.send_to(b"new", rtp).unwrap();
        let (n, _) = ports.rtp().recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"new");
    }

    #[tokio::test]
    async fn a_pair_held_elsewhere_is_skipped() {
        let squatter = std::net::UdpSocket::bind((LOOPBACK, 31101)).unwrap();
        let pool = PortPool::new(LOOPBACK, 31100..=31103);
        let ports = pool.allocate().unwrap();
        assert_eq!(ports.rtp_port(), 31102);
        // The busy pair stays in the pool and fails again while it is held.
        assert_eq!(pool.available(), 1);
        assert!(matches!(pool.allocate(), Err(PortError::Io(_))));
        drop(squatter);
        assert_eq!(pool.allocate().unwrap().rtp_port(), 31100);
    }
}
