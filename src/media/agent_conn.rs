//! A stream call on a media shard: the agent's WebSocket over a non-blocking mio TCP stream
//! (TLS by rustls for `wss://`), driven by the shard's loop, and the bridge of the carrier's
//! [`RtpLeg`] with the [`AgentLeg`]. This is the IO edge of [`super::ws`] and
//! [`super::stream`]: it reads no clock (the shard passes `now`) and never blocks.
//!
//! ```text
//!   connect: each address in turn ──> TCP up ──> [TLS handshake] ──> GET upgrade ──> 101
//!            (all within connect_timeout, on the shard's timer heap)
//!   open:    socket ──read──> WsClient ──Text──> StreamSession::handle_message
//!            StreamSession::poll_message ──> WsClient::send_text ──> bounded output ──write──> socket
//!   end:     agent close / stop ──> AgentHangup; EOF or reset ──> AgentDisconnected;
//!            broken framing, or a message over max_message_bytes ──> close frame
//!            (1002, 1007, 1009) ──> AgentDisconnected;
//!            connect failed ──> AgentNotice::Unreachable, AgentUnreachable;
//!            call hangup ──> `stop`, close frame, wait at most CLOSE_WAIT ──> Hangup
//! ```
//!
//! The socket is registered with the shard's poller for both readiness kinds at once (edge
//! triggered): on any readiness the call reads until the socket would block, then writes
//! what is queued until it would block; what is left waits for the next writable edge. The
//! output is bounded ([`MAX_OUTPUT`]): past it the caller's audio messages are dropped and
//! counted, as the agent is not reading.
//!
//! The agent breaking the protocol at the WebSocket level ends the session with
//! [`MediaEnd::AgentDisconnected`], as a lost connection does: the agent did not hang up, it
//! failed. A message longer than the stream's `max_message_bytes` is refused by the framing
//! from its length, before its payload is buffered: the client sends a close frame with 1009
//! (message too big), drops the socket without waiting for the agent's close, and the
//! session counts the message as a protocol error ([`super::stream::ProtocolError::TooLarge`]
//! in the report's stream counts). Messages the session refuses (not JSON, bad base64, a
//! partial sample, a mark without a name) and unknown events are counted and the stream
//! goes on.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use tokio::sync::mpsc;

use super::agent::{AgentLeg, AgentNotice, AgentStart};
use super::bridge::Bridge;
use super::leg::Leg;
use super::recorder::RecordingTap;
use super::rtp_leg::RtpLeg;
use super::session::{MediaConfig, MediaEnd, RecordingReport};
use super::stream::{CLOSE_NORMAL, SessionEvent};
use super::ws::{Upgrade, WsClient, WsError, WsEvent, WsLimits, WsUrl};

/// Most bytes waiting to be written to the agent: about 10 s of µ-law media messages.
pub const MAX_OUTPUT: usize = 512 * 1024;

/// Longest wait for the agent's close frame after the call hung up.
pub const CLOSE_WAIT: Duration = Duration::from_millis(500);

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;

/// The TLS configuration for `wss://`: the public web roots, and `ca_pem`'s certificates
/// when given. The one without extra roots is made once.
pub(crate) fn tls_config(ca_pem: Option<&str>) -> Result<Arc<ClientConfig>, String> {
    static DEFAULT: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    match ca_pem {
        None => DEFAULT.get_or_init(|| build_tls(None)).clone(),
        Some(pem) => build_tls(Some(pem)),
    }
}

fn build_tls(ca_pem: Option<&str>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = ca_pem {
        let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("the stream CA PEM is not valid: {e}"))?;
        if certs.is_empty() {
            return Err("the stream CA PEM holds no certificate".into());
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("the stream CA PEM holds an unusable certificate: {e}"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS cannot be set up: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// A TCP connect is in progress (or about to be tried on the next address).
    Connecting,
    /// TCP is up: TLS and the upgrade go on.
    Upgrading,
    /// The upgrade was accepted.
    Open,
    /// The socket is gone.
    Done,
}

/// How the socket ended, when it did by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Unreachable(String),
    /// EOF or an error on an open connection.
    Lost,
}

/// The agent's socket and its WebSocket protocol state.
#[derive(Debug)]
struct AgentConn {
    url: WsUrl,
    addrs: Vec<SocketAddr>,
    next_addr: usize,
    tls_config: Option<Arc<ClientConfig>>,
    tcp: Option<TcpStream>,
    tls: Option<Box<ClientConnection>>,
    ws: WsClient,
    phase: Phase,
    token: Token,
    /// Why the last address failed.
    last_error: Option<String>,
    /// The socket reached its end (EOF or TLS close_notify).
    eof: bool,
    outcome: Option<Outcome>,
}

impl AgentConn {
    fn new(agent: &AgentStart, token: Token) -> Result<AgentConn, String> {
        let url = WsUrl::parse(&agent.url).map_err(|e| e.to_string())?;
        let tls_config = if url.secure {
            Some(tls_config(agent.ca_pem.as_deref())?)
        } else {
            None
        };
        let upgrade = Upgrade {
            bearer: agent.auth_token.as_deref(),
            key: rand::random(),
        };
        let limits = WsLimits {
            max_message_bytes: agent.stream.max_message_bytes,
            max_output_bytes: MAX_OUTPUT,
        };
        let ws = WsClient::new(&url, upgrade, limits).map_err(|e| e.to_string())?;
        Ok(AgentConn {
            url,
            addrs: agent.addrs.clone(),
            next_addr: 0,
            tls_config,
            tcp: None,
            tls: None,
            ws,
            phase: Phase::Connecting,
            token,
            last_error: None,
            eof: false,
            outcome: None,
        })
    }

    /// Starts a connect to the next address; when none is left the connection is
    /// unreachable.
    fn connect_next(&mut self, registry: &Registry) {
        self.drop_socket(registry);
        while let Some(&addr) = self.addrs.get(self.next_addr) {
            self.next_addr += 1;
            let mut tcp = match TcpStream::connect(addr) {
                Ok(tcp) => tcp,
                Err(e) => {
                    self.last_error = Some(format!("{addr}: {e}"));
                    continue;
                }
            };
            if let Err(e) = registry.register(
                &mut tcp,
                self.token,
                Interest::READABLE | Interest::WRITABLE,
            ) {
                self.last_error = Some(format!("{addr}: {e}"));
                continue;
            }
            self.tcp = Some(tcp);
            self.phase = Phase::Connecting;
            return;
        }
        let reason = match self.last_error.take() {
            Some(e) => format!("cannot connect: {e}"),
            None => format!("no address to connect to for {}", self.url.authority),
        };
        self.unreachable(reason);
    }

    fn unreachable(&mut self, reason: String) {
        self.phase = Phase::Done;
        if self.outcome.is_none() {
            self.outcome = Some(Outcome::Unreachable(reason));
        }
    }

    fn lost(&mut self) {
        self.phase = Phase::Done;
        if self.outcome.is_none() {
            self.outcome = Some(Outcome::Lost);
        }
    }

    fn drop_socket(&mut self, registry: &Registry) {
        if let Some(mut tcp) = self.tcp.take() {
            let _ = registry.deregister(&mut tcp);
        }
        self.tls = None;
    }

    /// Serves a readiness event: completes the connect, reads everything there is, writes
    /// what is queued.
    fn handle_io(&mut self, registry: &Registry) {
        if self.phase == Phase::Connecting && !self.check_connected(registry) {
            return;
        }
        if matches!(self.phase, Phase::Upgrading | Phase::Open) {
            self.read();
        }
        self.flush();
    }

    /// Whether the connect in progress has finished; a failed one moves to the next address.
    fn check_connected(&mut self, registry: &Registry) -> bool {
        let Some(tcp) = &self.tcp else {
            return false;
        };
        let addr = self.addrs.get(self.next_addr.wrapping_sub(1)).copied();
        let failed = match tcp.take_error() {
            Ok(Some(e)) | Err(e) => Some(e),
            Ok(None) => match tcp.peer_addr() {
                Ok(_) => None,
                Err(e)
                    if e.kind() == io::ErrorKind::NotConnected
                        || e.raw_os_error() == Some(EINPROGRESS) =>
                {
                    return false;
                }
                Err(e) => Some(e),
            },
        };
        if let Some(e) = failed {
            self.last_error = Some(match addr {
                Some(addr) => format!("{addr}: {e}"),
                None => e.to_string(),
            });
            self.connect_next(registry);
            return false;
        }
        let _ = tcp.set_nodelay(true);
        if let Some(config) = &self.tls_config {
            let name = match ServerName::try_from(self.url.host.clone()) {
                Ok(name) => name,
                Err(e) => {
                    self.unreachable(format!("bad TLS server name {}: {e}", self.url.host));
                    return false;
                }
            };
            match ClientConnection::new(Arc::clone(config), name) {
                Ok(tls) => self.tls = Some(Box::new(tls)),
                Err(e) => {
                    self.unreachable(format!("TLS cannot start: {e}"));
                    return false;
                }
            }
        }
        self.phase = Phase::Upgrading;
        true
    }

    /// Reads until the socket would block, handing the bytes to the WebSocket client.
    fn read(&mut self) {
        let Some(tcp) = &mut self.tcp else {
            return;
        };
        let mut buf = [0u8; READ_CHUNK];
        let mut eof = false;
        let mut failure = None;
        match &mut self.tls {
            None => loop {
                match tcp.read(&mut buf) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => self.ws.handle_read(buf.get(..n).unwrap_or_default()),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        failure = Some(e.to_string());
                        break;
                    }
                }
            },
            Some(tls) => loop {
                // Records from the socket until it would block, each batch decrypted.
                let mut drained = false;
                match tls.read_tls(tcp) {
                    Ok(0) => eof = true,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => drained = true,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        failure = Some(e.to_string());
                        break;
                    }
                }
                if let Err(e) = tls.process_new_packets() {
                    failure = Some(format!("TLS: {e}"));
                    // Send the alert rustls queued, if the socket takes it.
                    let _ = tls.write_tls(tcp);
                    break;
                }
                loop {
                    match tls.reader().read(&mut buf) {
                        // The peer's close_notify.
                        Ok(0) => {
                            eof = true;
                            break;
                        }
                        Ok(n) => self.ws.handle_read(buf.get(..n).unwrap_or_default()),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        // The socket ended without close_notify.
                        Err(_) => {
                            eof = true;
                            break;
                        }
                    }
                }
                if eof || drained {
                    break;
                }
            },
        }
        if let Some(reason) = failure {
            self.fail(reason);
        } else if eof {
            // Told to the WebSocket once what came before the end was read out of it.
            self.eof = true;
        }
    }

    /// After the WebSocket's events were drained: the end of the input, if it came.
    fn settle_eof(&mut self) {
        if !std::mem::take(&mut self.eof) {
            return;
        }
        match self.ws.handle_eof() {
            Some(e) => self.unreachable(format!("{}: {e}", self.url.authority)),
            None => self.lost(),
        }
    }

    fn fail(&mut self, reason: String) {
        if self.phase == Phase::Open {
            self.lost();
        } else {
            self.unreachable(format!("{}: {reason}", self.url.authority));
        }
    }

    /// Writes what is queued until the socket would block.
    fn flush(&mut self) {
        if !matches!(self.phase, Phase::Upgrading | Phase::Open) {
            return;
        }
        let Some(tcp) = &mut self.tcp else {
            return;
        };
        let mut failure = None;
        match &mut self.tls {
            None => {
                while !self.ws.output().is_empty() {
                    match tcp.write(self.ws.output()) {
                        Ok(n) => self.ws.consume(n),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            failure = Some(e.to_string());
                            break;
                        }
                    }
                }
            }
            Some(tls) => loop {
                if !self.ws.output().is_empty() {
                    match tls.writer().write(self.ws.output()) {
                        Ok(n) => self.ws.consume(n),
                        Err(e) => {
                            failure = Some(e.to_string());
                            break;
                        }
                    }
                }
                if !tls.wants_write() {
                    break;
                }
                match tls.write_tls(tcp) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        failure = Some(e.to_string());
                        break;
                    }
                }
            },
        }
        if let Some(reason) = failure {
            self.fail(reason);
        }
    }
}

/// `EINPROGRESS` on Linux: a non-blocking connect not yet finished (mio's `peer_addr` may
/// say so instead of `NotConnected`).
const EINPROGRESS: i32 = 115;

/// One stream call on a shard: the bridge of the carrier's leg and the agent's, the agent's
/// socket, and the call's notice channel.
#[derive(Debug)]
pub(crate) struct StreamCall<A = RtpLeg> {
    pub(crate) bridge: Bridge<A, AgentLeg>,
    conn: AgentConn,
    notices: mpsc::Sender<AgentNotice>,
    pub(crate) notices_dropped: u64,
    /// Until the upgrade is accepted: connecting fails after it.
    connect_deadline: Instant,
    connect_timeout: Duration,
    /// The call hung up: the agent's close is awaited until then.
    close_deadline: Option<Instant>,
    connected: bool,
    /// Caller audio messages dropped because the output was full.
    pub(crate) messages_dropped: u64,
    /// Where the call's recording goes, when it is recorded.
    recording: Option<RecordingTap>,
    /// Recording batches the writer's queue had no room for.
    recording_dropped: u64,
    /// Slots of call time the recording holds, once it ended.
    recorded_slots: u64,
}

impl<A: Leg> StreamCall<A> {
    /// A call whose media starts at `now` with the caller's leg `caller`, and whose agent
    /// connect starts at once, its socket registered under `token`. When it cannot even
    /// start (a bad URL or CA PEM) the returned call ends at its first
    /// [`StreamCall::pump`] with the reason.
    pub(crate) fn new(
        now: Instant,
        caller: A,
        config: &MediaConfig,
        agent: AgentStart,
        token: Token,
        notices: mpsc::Sender<AgentNotice>,
        registry: &Registry,
    ) -> StreamCall<A> {
        let conn = AgentConn::new(&agent, token);
        let mut leg = AgentLeg::new(now, config, agent.stream);
        if agent.recording.is_some() {
            leg.record(now);
        }
        let bridge = Bridge::new(caller, leg);
        let conn = match conn {
            Ok(mut conn) => {
                conn.connect_next(registry);
                conn
            }
            Err(reason) => AgentConn::failed(reason),
        };
        StreamCall {
            bridge,
            conn,
            notices,
            notices_dropped: 0,
            connect_deadline: now + agent.connect_timeout,
            connect_timeout: agent.connect_timeout,
            close_deadline: None,
            connected: false,
            messages_dropped: 0,
            recording: agent.recording,
            recording_dropped: 0,
            recorded_slots: 0,
        }
    }

    /// Hands the recording's final batches to its writer; a batch the writer's queue has no
    /// room for is dropped and counted (the file has silence there).
    fn send_recording(&mut self) {
        let Some(tap) = &self.recording else {
            return;
        };
        while let Some(batch) = self.bridge.b_mut().poll_recording() {
            if !tap.send(batch) {
                self.recording_dropped += 1;
            }
        }
    }

    /// The recording's account for the end report, when the call is recorded.
    pub(crate) fn recording_report(&self) -> Option<RecordingReport> {
        let stats = self.bridge.b().recording_stats()?;
        Some(RecordingReport {
            slots: self.recorded_slots,
            batches_dropped: self.recording_dropped,
            late_frames: stats.late_frames,
        })
    }

    /// The agent's socket is ready: IO, then [`StreamCall::pump`].
    pub(crate) fn handle_io(&mut self, now: Instant, registry: &Registry) -> Option<MediaEnd> {
        self.conn.handle_io(registry);
        self.pump(now)
    }

    /// The call's deadline came: the connect timeout, the close wait, the legs' slots.
    pub(crate) fn handle_timeout(&mut self, now: Instant) -> Option<MediaEnd> {
        if !self.connected && self.conn.outcome.is_none() && now >= self.connect_deadline {
            let reason = format!(
                "{}: no WebSocket upgrade within {:?}",
                self.conn.url.authority, self.connect_timeout
            );
            self.conn.drop_socket_now();
            self.conn.unreachable(reason);
        }
        if self.close_deadline.is_some_and(|t| now >= t) {
            return Some(MediaEnd::Hangup);
        }
        self.bridge.handle_timeout(now);
        self.pump(now)
    }

    /// The earliest of the legs' deadlines and the connection's.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let mut next = self.bridge.poll_timeout();
        let conn = if self.connected {
            self.close_deadline
        } else {
            Some(self.connect_deadline)
        };
        if let Some(t) = conn {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
        next
    }

    /// The call hangs up: `stop` and a close frame to a connected agent, and the session
    /// ends when the agent closes or after [`CLOSE_WAIT`]; at once when not connected.
    pub(crate) fn hangup(&mut self, now: Instant) -> Option<MediaEnd> {
        if !self.connected || !self.conn.ws.is_open() {
            return Some(MediaEnd::Hangup);
        }
        self.close_deadline = Some(now + CLOSE_WAIT);
        self.bridge.b_mut().session_mut().hang_up(now);
        self.pump(now)
    }

    /// Closes the agent's socket at once (the session ends), and ends the recording at the
    /// last slot the call reached.
    pub(crate) fn close(&mut self, registry: &Registry) {
        self.conn.drop_socket(registry);
        self.conn.phase = Phase::Done;
        if let Some(slots) = self.bridge.b_mut().finish_recording() {
            self.recorded_slots = slots;
            self.send_recording();
        }
    }

    /// A SIP INFO digit for the agent.
    pub(crate) fn dtmf(&mut self, now: Instant, digit: char) -> Option<MediaEnd> {
        if self.bridge.b_mut().handle_info_digit(now, digit).is_err() {
            tracing::debug!(?digit, "not a DTMF digit");
        }
        self.pump(now)
    }

    fn notify(&mut self, notice: AgentNotice) {
        if self.notices.try_send(notice).is_err() {
            self.notices_dropped += 1;
        }
    }

    /// Moves what the WebSocket read into the session and what the session has to send
    /// into the WebSocket, reports to the call, and writes; returns why the session ends,
    /// if it does. Call after every input to the bridge or the socket.
    pub(crate) fn pump(&mut self, now: Instant) -> Option<MediaEnd> {
        let mut end = None;
        let mut opened = false;
        let hanging_up = self.close_deadline.is_some();
        {
            let session = self.bridge.b_mut();
            while let Some(event) = self.conn.ws.poll_event() {
                match event {
                    WsEvent::Open => {
                        opened = true;
                        self.conn.phase = Phase::Open;
                        session.set_connected();
                    }
                    WsEvent::Text(text) => session.session_mut().handle_message(now, text),
                    WsEvent::Binary(data) => {
                        session.session_mut().handle_binary(now, data.len());
                    }
                    WsEvent::Closed { code } => {
                        session.session_mut().handle_close(now, code);
                        end = Some(if hanging_up {
                            MediaEnd::Hangup
                        } else {
                            MediaEnd::AgentHangup
                        });
                    }
                    WsEvent::Failed(error) => {
                        if self.conn.phase == Phase::Open {
                            tracing::info!(%error, "agent stream failed");
                            if let WsError::TooBig { bytes, .. } = error {
                                let bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
                                session.session_mut().handle_too_large(now, bytes);
                            }
                            session.session_mut().handle_close(now, None);
                            end = Some(MediaEnd::AgentDisconnected);
                        } else {
                            let reason = format!("{}: {error}", self.conn.url.authority);
                            self.conn.outcome = Some(Outcome::Unreachable(reason));
                        }
                    }
                }
            }
        }
        self.conn.settle_eof();
        if opened {
            self.connected = true;
        }
        if self.conn.ws.is_open() {
            let session = self.bridge.b_mut().session_mut();
            while let Some(message) = session.poll_message() {
                if self.conn.ws.send_text(message).is_err() {
                    self.messages_dropped += 1;
                }
            }
        }
        while let Some(event) = self.bridge.b_mut().session_mut().poll_stream_event() {
            match event {
                SessionEvent::Close { code } => {
                    self.conn.ws.close(code);
                    if !hanging_up && end.is_none() {
                        end = Some(MediaEnd::AgentDisconnected);
                    }
                }
                SessionEvent::AgentStopped => {
                    self.conn.ws.close(CLOSE_NORMAL);
                    end.get_or_insert(MediaEnd::AgentHangup);
                }
                SessionEvent::Cleared { marks_echoed, .. } => self.notify(AgentNotice::Cleared {
                    marks: marks_echoed,
                }),
                SessionEvent::AgentClosed { .. } => {}
                SessionEvent::AudioDropped { dropped } => {
                    tracing::debug!(?dropped, "agent audio over the queue limit dropped");
                }
                SessionEvent::ProtocolError(error) => {
                    tracing::debug!(%error, "agent message refused");
                }
            }
        }
        while let Some(digit) = self.bridge.b_mut().poll_digit() {
            self.notify(AgentNotice::Dtmf(digit));
        }
        if opened {
            self.notify(AgentNotice::Connected);
        }
        self.send_recording();
        self.conn.flush();
        match self.conn.outcome.take() {
            Some(Outcome::Unreachable(reason)) => {
                tracing::info!(%reason, "agent stream unreachable");
                self.notify(AgentNotice::Unreachable(reason.clone()));
                return Some(MediaEnd::AgentUnreachable(reason));
            }
            Some(Outcome::Lost) => {
                end.get_or_insert(if hanging_up {
                    MediaEnd::Hangup
                } else {
                    MediaEnd::AgentDisconnected
                });
            }
            None => {}
        }
        end
    }
}

impl AgentConn {
    /// A connection that could not start: unreachable for `reason`.
    fn failed(reason: String) -> AgentConn {
        let url = WsUrl {
            secure: false,
            host: String::new(),
            port: 0,
            authority: String::new(),
            resource: "/".into(),
        };
        let mut conn = AgentConn {
            url,
            addrs: Vec::new(),
            next_addr: 0,
            tls_config: None,
            tcp: None,
            tls: None,
            ws: WsClient::done(),
            phase: Phase::Done,
            token: Token(0),
            last_error: None,
            eof: false,
            outcome: None,
        };
        conn.unreachable(reason);
        conn
    }

    /// Closes the socket at once (a connect that timed out); its registration goes with it.
    fn drop_socket_now(&mut self) {
        self.tcp = None;
        self.tls = None;
    }
}

#[cfg(test)]
mod tests;
