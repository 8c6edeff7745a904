//! Transport: sockets and framing only (RFC 3261 §18). Datagrams and stream frames go to
//! the endpoint core as [`Inbound`]; replies go back the way the request came (RFC 3581):
//! to the datagram's source address and port, or down the same TCP or TLS connection.

pub mod tcp;
pub mod tls;
pub mod udp;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use rustls::pki_types::CertificateDer;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

pub use crate::sip::triage::Transport;

/// The per-packet check the transports apply before a datagram or stream message is queued
/// for the core: what it refuses is dropped at the socket, so that a flood never reaches the
/// core queue. The transports are generic over it (statically dispatched: UDP asks it on
/// every datagram); the server hands them the gate's shield.
pub trait PacketFilter: Send + Sync + 'static {
    /// Whether what `source` just sent, at `now`, may go on to the core.
    fn admit(&self, now: Instant, source: IpAddr) -> bool;
}

/// One message as it arrived.
#[derive(Debug)]
pub struct Inbound {
    pub data: Bytes,
    pub peer: Peer,
}

/// Where a reply goes: the way the request came.
#[derive(Clone, Debug)]
pub enum Peer {
    Udp {
        socket: Arc<UdpSocket>,
        addr: SocketAddr,
    },
    /// A stream connection: what is sent here is written by the connection's task.
    Stream {
        addr: SocketAddr,
        transport: Transport,
        conn: mpsc::Sender<Bytes>,
        /// Over TLS with `--tls-client-ca` set: the end-entity certificate the client
        /// presented, which verified against that CA bundle; `None` when the client
        /// presented none, and always over TCP. The handshake lets clients without one
        /// through: whether a trunk requires one, and for which name (e.g. with
        /// webpki's `verify_is_valid_for_subject_name`), is admission's decision.
        client_cert: Option<Arc<CertificateDer<'static>>>,
    },
}

impl Peer {
    pub fn addr(&self) -> SocketAddr {
        match self {
            Peer::Udp { addr, .. } | Peer::Stream { addr, .. } => *addr,
        }
    }

    pub fn transport(&self) -> Transport {
        match self {
            Peer::Udp { .. } => Transport::Udp,
            Peer::Stream { transport, .. } => *transport,
        }
    }

    /// The verified certificate a TLS client presented, if any.
    pub fn client_cert(&self) -> Option<&CertificateDer<'static>> {
        match self {
            Peer::Stream { client_cert, .. } => client_cert.as_deref(),
            Peer::Udp { .. } => None,
        }
    }

    /// Whether the transport retransmits by itself (§17: no Timers G, E, ...).
    pub fn is_reliable(&self) -> bool {
        !matches!(self, Peer::Udp { .. })
    }

    /// Sends without waiting: a datagram that the kernel will not take at once, or a full
    /// connection queue, is dropped and counted (the peer retransmits over UDP; a stream
    /// that cannot keep up is cut off by its own task).
    pub fn send(&self, data: Bytes) {
        let sent = match self {
            Peer::Udp { socket, addr } => socket.try_send_to(&data, *addr).is_ok(),
            Peer::Stream { conn, .. } => conn.try_send(data).is_ok(),
        };
        if !sent {
            metrics::counter!("vca_sip_send_failures_total").increment(1);
        }
    }
}
