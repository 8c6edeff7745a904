//! The RTP port pool: an even port for RTP and the next odd one for RTCP (RFC 3550 §11,
//! RFC 3264 §5.1), both bound on the media IP, handed out per call and returned on drop.
//!
//! Even ports wait in a ring (least recently freed first), so taking one is a pop and giving
//! one back is a push: no scan of the range, whatever the call rate. Reusing the port that has
//! been free longest also keeps a late packet of an ended call away from the next call.
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

use tokio::net::UdpSocket;

/// The default RTP range, as most SIP media servers use.
pub const DEFAULT_RANGE: RangeInclusive<u16> = 16384..=32767;

/// How many pairs one allocation tries before giving up.
pub const MAX_BIND_ATTEMPTS: usize = 16;

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

#[derive(Debug)]
struct Shared {
    ip: IpAddr,
    capacity: usize,
    free: Mutex<VecDeque<u16>>,
}

impl Shared {
    fn free_list(&self) -> std::sync::MutexGuard<'_, VecDeque<u16>> {
        // The list is a plain ring of integers and stays consistent across a panic.
        self.free.lock().unwrap_or_else(PoisonError::into_inner)
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
        let free: VecDeque<u16> = (first_even..end).step_by(2).collect();
        PortPool {
            shared: Arc::new(Shared {
                ip,
                capacity: free.len(),
                free: Mutex::new(free),
            }),
        }
    }

    /// How many pairs the pool holds in all.
    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }

    /// How many pairs are free now.
    pub fn available(&self) -> usize {
        self.shared.free_list().len()
    }

    /// Takes a free pair and binds both sockets. Must run inside a tokio runtime.
    pub fn allocate(&self) -> Result<RtpPorts, PortError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(PortError::NoRuntime);
        }
        let mut last_error = None;
        for _ in 0..MAX_BIND_ATTEMPTS {
            let Some(port) = self.shared.free_list().pop_front() else {
                break;
            };
            let lease = PortLease {
                port,
                shared: Arc::clone(&self.shared),
            };
            match bind_pair(self.shared.ip, port) {
                Ok((rtp, rtcp)) => return Ok(RtpPorts { rtp, rtcp, lease }),
                // Dropping the lease puts the pair at the back of the ring.
                Err(e) => last_error = Some(e),
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

fn bind_one(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = std::net::UdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}

/// Returns its pair to the pool when dropped.
#[derive(Debug)]
struct PortLease {
    port: u16,
    shared: Arc<Shared>,
}

impl Drop for PortLease {
    fn drop(&mut self) {
        self.shared.free_list().push_back(self.port);
    }
}

/// A bound RTP/RTCP socket pair held by one call. Dropping it closes both sockets and then
/// returns the pair to its pool.
#[derive(Debug)]
pub struct RtpPorts {
    // Fields drop in declaration order: the sockets close before the lease frees the port,
    // so the next call to get this pair can bind it.
    rtp: UdpSocket,
    rtcp: UdpSocket,
    lease: PortLease,
}

impl RtpPorts {
    /// The RTP port, to put in the SDP answer's m= line (RTCP is this + 1).
    pub fn rtp_port(&self) -> u16 {
        self.lease.port
    }

    /// The RTP socket.
    pub fn rtp(&self) -> &UdpSocket {
        &self.rtp
    }

    /// The RTCP socket.
    pub fn rtcp(&self) -> &UdpSocket {
        &self.rtcp
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

        // Returned pairs go to the back of the ring and can be bound again at once.
        let second = held.remove(1);
        drop(second);
        assert_eq!(pool.available(), 1);
        let again = pool.allocate().unwrap();
        assert_eq!(again.rtp_port(), 31002);
        drop(again);
        drop(held);
        assert_eq!(pool.available(), 4);
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
