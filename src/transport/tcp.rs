//! SIP over TCP (RFC 3261 §18.3): an accept loop with connection caps, and one task per
//! connection that frames messages by Content-Length and writes replies back on the same
//! connection. The accept loop and the connection task serve TLS too ([`super::tls`]):
//! they take any byte stream.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

use super::{Inbound, PacketFilter, Peer, Transport};
use crate::sip::framing::{Frame, Limits, StreamDecoder};
use crate::sip::triage::{Triage, triage_frame_error};

/// Abuse limits of a stream listener: the TCP one, and the TLS one, which counts its own
/// connections against caps of the same size.
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    /// Open connections in all; stops a connection flood from taking every file descriptor.
    pub max_connections: usize,
    /// Open connections from one IP address.
    pub max_per_source: usize,
    /// How long a message may take to arrive once it has started: a peer that sends one
    /// byte every few seconds (slowloris) is cut off.
    pub message_deadline: Duration,
    /// How long a connection may stay silent before it is closed.
    pub idle_timeout: Duration,
    /// TLS only: how long the handshake may take before the connection is closed; stops
    /// a peer that opens connections and never finishes the handshake from holding slots.
    pub handshake_timeout: Duration,
}

impl Default for TcpLimits {
    fn default() -> Self {
        TcpLimits {
            max_connections: 4096,
            max_per_source: 512,
            message_deadline: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(600),
            handshake_timeout: Duration::from_secs(5),
        }
    }
}

/// The metric names of one kind of stream listener.
pub(super) struct StreamMetrics {
    /// Gauge of open connections.
    pub connections: &'static str,
    /// Connections refused at accept, by `reason` (global_cap, source_cap).
    pub refused: &'static str,
    /// Connections the server closed, by `reason` (deadline).
    pub closed: &'static str,
}

const TCP_METRICS: StreamMetrics = StreamMetrics {
    connections: "vca_sip_tcp_connections",
    refused: "vca_sip_tcp_refused_total",
    closed: "vca_sip_tcp_closed_total",
};

/// Accepts connections until the core goes away.
///
/// A banned source's connection is closed at once, and so is a connection whose source is
/// banned while it is open.
pub async fn run<P: PacketFilter>(
    listener: TcpListener,
    core: mpsc::Sender<Inbound>,
    limits: TcpLimits,
    shield: Arc<P>,
) {
    let guard = shield.clone();
    accept_loop(
        listener,
        core,
        limits,
        shield,
        &TCP_METRICS,
        move |stream, addr, core| {
            let _ = stream.set_nodelay(true);
            serve_connection(
                stream,
                Connection {
                    addr,
                    transport: Transport::Tcp,
                    client_cert: None,
                },
                core,
                limits,
                guard.clone(),
                &TCP_METRICS,
            )
        },
    )
    .await;
}

/// Accepts connections within `limits`' caps and runs `serve` for each on a task of its
/// own, until the core goes away. A connection from a source that `shield` bans, or over
/// a cap, is closed at once (the latter counted).
#[allow(clippy::disallowed_methods)] // the accept loop is a driver: it stamps each connection
pub(super) async fn accept_loop<P, F, Fut>(
    listener: TcpListener,
    core: mpsc::Sender<Inbound>,
    limits: TcpLimits,
    shield: Arc<P>,
    names: &'static StreamMetrics,
    serve: F,
) where
    P: PacketFilter,
    F: Fn(TcpStream, SocketAddr, mpsc::Sender<Inbound>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let per_source: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, most likely: back off instead of spinning.
                tracing::warn!(error = %e, "stream accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if core.is_closed() {
            return;
        }
        if !shield.admit(std::time::Instant::now(), addr.ip()) {
            continue;
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics::counter!(names.refused, "reason" => "global_cap").increment(1);
            continue;
        };
        {
            let mut counts = per_source.lock().unwrap_or_else(|e| e.into_inner());
            let count = counts.entry(addr.ip()).or_default();
            if *count >= limits.max_per_source {
                metrics::counter!(names.refused, "reason" => "source_cap").increment(1);
                continue;
            }
            *count += 1;
        }
        let connection = serve(stream, addr, core.clone());
        let per_source = per_source.clone();
        tokio::spawn(async move {
            metrics::gauge!(names.connections).increment(1.0);
            connection.await;
            metrics::gauge!(names.connections).decrement(1.0);
            let mut counts = per_source.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(count) = counts.get_mut(&addr.ip()) {
                *count -= 1;
                if *count == 0 {
                    counts.remove(&addr.ip());
                }
            }
            drop(slot);
        });
    }
}

/// What a connection tells the core about where its messages came from.
pub(super) struct Connection {
    pub addr: SocketAddr,
    pub transport: Transport,
    /// The verified client certificate (TLS only); see [`Peer::Stream`].
    pub client_cert: Option<Arc<CertificateDer<'static>>>,
}

/// How long a connection that is being closed still writes the answers to the messages
/// it carried before it failed.
const CLOSE_GRACE: Duration = Duration::from_millis(300);

/// Writes `data` and pushes it onto the wire: a TLS stream holds written bytes in its
/// record layer until flushed (for TCP the flush does nothing).
async fn write<S: AsyncWrite + Unpin>(stream: &mut S, data: &[u8]) -> std::io::Result<()> {
    stream.write_all(data).await?;
    stream.flush().await
}

/// Writes whatever the core sends for this connection during `grace`.
async fn flush_for<S: AsyncWrite + Unpin>(
    stream: &mut S,
    outbound: &mut mpsc::Receiver<bytes::Bytes>,
    grace: Duration,
) {
    let grace = tokio::time::sleep(grace);
    tokio::pin!(grace);
    loop {
        let data = tokio::select! {
            // What is queued already goes out, even once the grace is over.
            biased;
            data = outbound.recv() => data,
            () = &mut grace => return,
        };
        match data {
            Some(data) if write(stream, &data).await.is_ok() => {}
            _ => return,
        }
    }
}

/// Serves one connection until the peer closes it, it fails, a deadline passes, or
/// `shield` bans its source.
#[allow(clippy::disallowed_methods)] // the connection's socket loop is a driver: it owns the deadlines
pub(super) async fn serve_connection<S, P>(
    mut stream: S,
    connection: Connection,
    core: mpsc::Sender<Inbound>,
    limits: TcpLimits,
    shield: Arc<P>,
    names: &'static StreamMetrics,
) where
    S: AsyncRead + AsyncWrite + Unpin,
    P: PacketFilter,
{
    let Connection {
        addr,
        transport,
        client_cert,
    } = connection;
    let (tx, mut outbound) = mpsc::channel::<bytes::Bytes>(256);
    let peer = Peer::Stream {
        addr,
        transport,
        conn: tx,
        client_cert,
    };
    let mut decoder = StreamDecoder::new(Limits::default());
    let mut deadline = Instant::now() + limits.idle_timeout;
    // When the message now being received began to arrive: its deadline does not move
    // however slowly the rest trickles in.
    let mut message_started: Option<Instant> = None;
    loop {
        tokio::select! {
            read = stream.read_buf(decoder.read_buf()) => {
                match read {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                loop {
                    match decoder.poll_frame() {
                        Ok(Some(Frame::Message(frame))) => {
                            if !shield.admit(std::time::Instant::now(), addr.ip()) {
                                return;
                            }
                            // Copied out at its own size: a frame split from the read
                            // buffer would pin the buffer for as long as it lives.
                            let data = bytes::Bytes::copy_from_slice(&frame);
                            let inbound = Inbound { data, peer: peer.clone() };
                            if core.try_send(inbound).is_err() {
                                metrics::counter!("vca_sip_dropped_total", "reason" => "core_queue_full")
                                    .increment(1);
                            }
                        }
                        Ok(Some(Frame::Ping)) => {
                            // RFC 5626 §3.5.1: a CRLFCRLF ping gets a CRLF pong.
                            if write(&mut stream, b"\r\n").await.is_err() {
                                return;
                            }
                        }
                        Ok(None) => break,
                        Err(err) => {
                            metrics::counter!("vca_sip_dropped_total", "reason" => "framing")
                                .increment(1);
                            // Answers to the messages framed before the error go out first.
                            flush_for(&mut stream, &mut outbound, CLOSE_GRACE).await;
                            if let Triage::Reject(rejection) = triage_frame_error(&err) {
                                let response = rejection
                                    .response()
                                    .received(addr.ip(), addr.port())
                                    .build();
                                let _ = write(&mut stream, &response).await;
                            }
                            return;
                        }
                    }
                }
                // A started message must finish within its deadline; a quiet connection
                // may idle for longer.
                let now = Instant::now();
                deadline = if decoder.buffered() > 0 {
                    *message_started.get_or_insert(now) + limits.message_deadline
                } else {
                    message_started = None;
                    now + limits.idle_timeout
                };
            }
            out = outbound.recv() => {
                match out {
                    Some(data) => {
                        if write(&mut stream, &data).await.is_err() {
                            return;
                        }
                    }
                    None => return,
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                metrics::counter!(names.closed, "reason" => "deadline").increment(1);
                return;
            }
        }
    }
}
