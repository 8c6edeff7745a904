//! SIP over TCP (RFC 3261 §18.3): an accept loop with connection caps, and one task per
//! connection that frames messages by Content-Length and writes replies back on the same
//! connection.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

use super::{Inbound, Peer, Transport};
use crate::gate::Shield;
use crate::sip::framing::{Frame, Limits, StreamDecoder};
use crate::sip::triage::{Triage, triage_frame_error};

/// Abuse limits of the TCP listener.
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
}

impl Default for TcpLimits {
    fn default() -> Self {
        TcpLimits {
            max_connections: 4096,
            max_per_source: 512,
            message_deadline: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(600),
        }
    }
}

/// Accepts connections until the core goes away.
///
/// A banned source's connection is closed at once, and so is a connection whose source is
/// banned while it is open.
pub async fn run(
    listener: TcpListener,
    core: mpsc::Sender<Inbound>,
    limits: TcpLimits,
    shield: Arc<Shield>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let per_source: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, most likely: back off instead of spinning.
                tracing::warn!(error = %e, "TCP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if core.is_closed() {
            return;
        }
        if !shield.admit(addr.ip()) {
            continue;
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics::counter!("vca_sip_tcp_refused_total", "reason" => "global_cap").increment(1);
            continue;
        };
        {
            let mut counts = per_source.lock().unwrap_or_else(|e| e.into_inner());
            let count = counts.entry(addr.ip()).or_default();
            if *count >= limits.max_per_source {
                metrics::counter!("vca_sip_tcp_refused_total", "reason" => "source_cap")
                    .increment(1);
                continue;
            }
            *count += 1;
        }
        let core = core.clone();
        let per_source = per_source.clone();
        let shield = shield.clone();
        tokio::spawn(async move {
            metrics::gauge!("vca_sip_tcp_connections").increment(1.0);
            serve_connection(stream, addr, core, limits, shield).await;
            metrics::gauge!("vca_sip_tcp_connections").decrement(1.0);
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

/// How long a connection that is being closed still writes the answers to the messages
/// it carried before it failed.
const CLOSE_GRACE: Duration = Duration::from_millis(300);

/// Writes whatever the core sends for this connection during `grace`.
async fn flush_for(
    writer: &mut tokio::net::tcp::OwnedWriteHalf,
    outbound: &mut mpsc::Receiver<bytes::Bytes>,
    grace: Duration,
) {
    let deadline = Instant::now() + grace;
    while let Ok(Some(data)) = tokio::time::timeout_at(deadline, outbound.recv()).await {
        if writer.write_all(&data).await.is_err() {
            return;
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    addr: SocketAddr,
    core: mpsc::Sender<Inbound>,
    limits: TcpLimits,
    shield: Arc<Shield>,
) {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let (tx, mut outbound) = mpsc::channel::<bytes::Bytes>(256);
    let peer = Peer::Stream {
        addr,
        transport: Transport::Tcp,
        conn: tx,
    };
    let mut decoder = StreamDecoder::new(Limits::default());
    let mut deadline = Instant::now() + limits.idle_timeout;
    // When the message now being received began to arrive: its deadline does not move
    // however slowly the rest trickles in.
    let mut message_started: Option<Instant> = None;
    loop {
        tokio::select! {
            read = reader.read_buf(decoder.read_buf()) => {
                match read {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                loop {
                    match decoder.poll_frame() {
                        Ok(Some(Frame::Message(frame))) => {
                            if !shield.admit(addr.ip()) {
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
                            if writer.write_all(b"\r\n").await.is_err() {
                                return;
                            }
                        }
                        Ok(None) => break,
                        Err(err) => {
                            metrics::counter!("vca_sip_dropped_total", "reason" => "framing")
                                .increment(1);
                            // Answers to the messages framed before the error go out first.
                            flush_for(&mut writer, &mut outbound, CLOSE_GRACE).await;
                            if let Triage::Reject(rejection) = triage_frame_error(&err) {
                                let response = rejection
                                    .response()
                                    .received(addr.ip(), addr.port())
                                    .build();
                                let _ = writer.write_all(&response).await;
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
                        if writer.write_all(&data).await.is_err() {
                            return;
                        }
                    }
                    None => return,
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                metrics::counter!("vca_sip_tcp_closed_total", "reason" => "deadline").increment(1);
                return;
            }
        }
    }
}
