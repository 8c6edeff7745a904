//! SIP over UDP (RFC 3261 §18.1.2): one receive loop per socket.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::{Inbound, PacketFilter, Peer};

/// The largest datagram read; anything longer is cut and then fails to parse (§18.1.1).
const MAX_DATAGRAM: usize = 65_535;

/// The kernel receive buffer asked for: a burst of thousands of calls per second must not
/// overflow the default (~200 KB) while the core is busy.
const RECV_BUFFER: usize = 4 * 1024 * 1024;

/// Binds the SIP UDP socket with a large receive buffer.
pub fn bind(addr: SocketAddr) -> std::io::Result<Arc<UdpSocket>> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    // Best effort: the kernel caps it at net.core.rmem_max.
    let _ = socket.set_recv_buffer_size(RECV_BUFFER);
    let _ = socket.set_send_buffer_size(RECV_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(Arc::new(UdpSocket::from_std(socket.into())?))
}

/// Reads datagrams and hands them to the core until the core goes away. A full core queue
/// drops the datagram (counted): the sender retransmits, and shedding here keeps a burst
/// from turning into a backlog that every later message waits behind.
///
/// What a banned source sends is dropped here, before it costs the core anything.
#[allow(clippy::disallowed_methods)] // the UDP socket loop is a driver: it stamps each datagram
pub async fn run<F: PacketFilter>(
    socket: Arc<UdpSocket>,
    core: mpsc::Sender<Inbound>,
    shield: Arc<F>,
) {
    // One receive buffer, reused; each datagram is copied out at its own size, so that what
    // a transaction keeps (its branch, its request) pins ~1 KB and not a shared 64 KB block.
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (len, addr) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                // ICMP errors surface here on some systems; they say nothing about us.
                tracing::debug!(error = %e, "UDP receive error");
                continue;
            }
        };
        if !shield.admit(std::time::Instant::now(), addr.ip()) {
            continue;
        }
        let data = Bytes::copy_from_slice(&buf[..len]);
        let inbound = Inbound {
            data,
            peer: Peer::Udp {
                socket: socket.clone(),
                addr,
            },
        };
        match core.try_send(inbound) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics::counter!("vca_sip_dropped_total", "reason" => "core_queue_full")
                    .increment(1);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}
