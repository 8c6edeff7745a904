//! A media shard: one thread with one event loop (mio, epoll on Linux) that owns whole calls,
//! their RTP/RTCP sockets (RFC 3550 §11) and every leg of their media, so that a packet is
//! read, bridged and answered on one thread without crossing to another.
//!
//! The loop waits on the readiness of all its calls' sockets, its command queue and the
//! earliest deadline of one timer heap, then runs what is due:
//!
//! ```text
//!   epoll_wait(earliest deadline) ─> readable socket ─> recv ─> Bridge ─> send ─> re-arm
//!                                 ─> queue ─> commands (start, hang up)
//!                                 ─> deadlines due ─> Bridge::handle_timeout
//! ```
//!
//! Sockets are registered by the port pool when bound, with the port number as token, and
//! stay registered while their pair is idle, so starting and ending a call costs no system
//! call here: a call is one slot of a slab, one entry in the pair table and at most one entry
//! in the timer heap. A timer is armed only when a session's deadline moves earlier; a later
//! deadline waits for the armed one to fire (a spurious wake-up is a no-op), so a packet
//! costs a comparison, not a heap update. While it has calls the loop looks at its queue at
//! least every [`COMMAND_DELAY`] and is not woken per command; only a loop with no call
//! sleeps until woken, and the first command wakes it. Under load a wake-up runs a batch of
//! commands and a command costs no system call. A socket is read until it would block, at most
//! [`MAX_READS`] datagrams at a time, so that one flooded call cannot starve the others.
//!
//! A stream session (an AI agent's call) is a `Bridge(RtpLeg, AgentLeg)` with the agent's
//! WebSocket beside it (see `agent_conn`): its socket is registered under the token
//! [`AGENT_TOKENS`] + its slot, above every port token and [`WAKE`], and its connect
//! timeout, close wait and 20 ms slots are its deadline in the same timer heap. An echo
//! session's packets take the same path as before: one match on the session's kind.
//!
//! When a stream session's playout slot comes due, the loop reads the clock once more after
//! the slot's RTP was sent and counts how late it left in the shard's own
//! [`SendLateness`], which goes to the metrics every [`LATENESS_FLUSH`].

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use mio::{Events, Poll, Registry, Token, Waker};
use tokio::sync::{mpsc, oneshot};

use super::agent::{AgentNotice, AgentStart};
use super::agent_conn::StreamCall;
use super::bridge::{Bridge, Side};
use super::echo::EchoLeg;
use super::lateness::SendLateness;
use super::leg::{Datagram, Input, Leg, LegEvent, Port};
use super::ports::{PortPool, RtpPorts};
use super::rtp_leg::{MAX_DATAGRAM, RtpLeg};
use super::session::{MediaConfig, MediaEnd, MediaError, MediaReport, MediaStats};
use super::stream::StreamStats;
use super::wake_timer::WakeTimer;
use super::webrtc::WebRtcLeg;

/// The token of the shard's waker; socket tokens are port numbers, all below it.
pub(crate) const WAKE: Token = Token(1 << 16);

/// The token of the shard's precise wake-up timer, beside the waker's.
const TIMER: Token = Token(WAKE.0 + 1);

/// The first token of agent stream sockets: `AGENT_TOKENS + slot`, above the port tokens and
/// [`WAKE`].
pub(crate) const AGENT_TOKENS: usize = 1 << 17;

/// Most datagrams read from one socket before the loop serves the others.
pub const MAX_READS: usize = 64;

/// Longest a command waits while the shard has calls: the media of a call that starts wakes
/// the loop by itself (its first packet), and an ended call's ports only go back to the pool
/// (where they wait out a quarantine of 250 ms anyway).
pub const COMMAND_DELAY: Duration = Duration::from_millis(5);

/// How often a shard hands its send-lateness histogram to the metrics recorder.
pub const LATENESS_FLUSH: Duration = Duration::from_secs(1);

/// The queue's state as the loop and the senders share it: nothing new since the loop last
/// looked, a command was queued since, or the loop sleeps until woken.
const IDLE: u8 = 0;
const NOTIFIED: u8 = 1;
const PARKED: u8 = 2;

/// Most commands run before the loop serves its sockets again.
const MAX_COMMANDS: usize = 1024;

/// Readiness events taken per wake-up.
const EVENTS: usize = 1024;

/// A pair table entry: no session on the pair.
const NO_SESSION: u32 = u32::MAX;
/// A pair table entry: no session yet, but a socket of the pair became readable.
const READY_IDLE: u32 = u32::MAX - 1;

/// What a call asks of its shard.
#[derive(Debug)]
pub(crate) enum Command {
    Start {
        ports: RtpPorts,
        config: MediaConfig,
        report: oneshot::Sender<MediaReport>,
    },
    StartStream {
        ports: RtpPorts,
        config: MediaConfig,
        agent: Box<AgentStart>,
        notices: mpsc::Sender<AgentNotice>,
        report: oneshot::Sender<MediaReport>,
    },
    StartWebRtc {
        ports: RtpPorts,
        leg: Box<WebRtcLeg>,
        report: oneshot::Sender<MediaReport>,
    },
    StartWebRtcStream {
        ports: RtpPorts,
        leg: Box<WebRtcLeg>,
        config: MediaConfig,
        agent: Box<AgentStart>,
        notices: mpsc::Sender<AgentNotice>,
        report: oneshot::Sender<MediaReport>,
    },
    Hangup {
        port: u16,
        lease: u64,
    },
    Dtmf {
        port: u16,
        lease: u64,
        digit: char,
    },
    Candidate {
        port: u16,
        lease: u64,
        candidate: Box<str0m::Candidate>,
    },
}

/// The other threads' way into a shard: its bounded command queue and the waker of its loop.
#[derive(Debug)]
pub(crate) struct ShardLink {
    commands: mpsc::Sender<Command>,
    waker: Waker,
    /// [`IDLE`], [`NOTIFIED`] or [`PARKED`].
    state: AtomicU8,
    stop: AtomicBool,
}

impl ShardLink {
    /// Queues `command`, waking the loop only if it sleeps until woken; never waits.
    pub(crate) fn send(&self, command: Command) -> Result<(), MediaError> {
        self.commands.try_send(command).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => MediaError::Busy,
            mpsc::error::TrySendError::Closed(_) => MediaError::Stopped,
        })?;
        // Pairs with the loop's exchange: either it sees NOTIFIED, and then the command,
        // before it parks, or this swap sees PARKED and wakes it.
        if self.state.swap(NOTIFIED, Ordering::AcqRel) == PARKED {
            self.wake();
        }
        Ok(())
    }

    /// Asks the loop to end every session and return.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.wake();
    }

    fn wake(&self) {
        if let Err(e) = self.waker.wake() {
            // The command stays queued; the loop runs it on its next wake-up.
            tracing::warn!(error = %e, "cannot wake a media shard");
        }
    }
}

/// What a session's media is: the echo, or an agent stream (boxed: it holds much more, and
/// the echo's slot stays small).
#[derive(Debug)]
// The echo stays inline on purpose: its packets take no extra indirection.
#[allow(clippy::large_enum_variant)]
enum SessionMedia {
    Echo(Bridge<RtpLeg, EchoLeg>),
    Stream(Box<StreamCall>),
    /// A browser's call answered by the echo.
    WebRtcEcho(Box<Bridge<WebRtcLeg, EchoLeg>>),
    /// A browser's call streamed to an agent.
    WebRtcStream(Box<StreamCall<WebRtcLeg>>),
}

/// One call's media on the shard.
#[derive(Debug)]
struct Session {
    ports: RtpPorts,
    media: SessionMedia,
    report: oneshot::Sender<MediaReport>,
    sent: u64,
    send_errors: u64,
    /// The deadline in the timer heap, if any.
    armed: Option<Instant>,
}

/// Sends what a bridge's legs want sent; returns why the session ends, if a leg says so.
/// Only leg A (the carrier's) has a network side.
fn send_transmits<A: Leg, B: Leg>(
    bridge: &mut Bridge<A, B>,
    ports: &RtpPorts,
    sent: &mut u64,
    send_errors: &mut u64,
) -> Option<MediaEnd> {
    while let Some((_, t)) = bridge.poll_transmit() {
        let socket = match t.port {
            Port::Rtp => ports.rtp(),
            Port::Rtcp => ports.rtcp(),
        };
        match socket.send_to(t.data, t.dest) {
            Ok(_) => *sent += 1,
            Err(_) => *send_errors += 1,
        }
    }
    bridge.poll_event().map(|(_, event)| match event {
        LegEvent::MediaTimeout => MediaEnd::MediaTimeout,
        LegEvent::PeerGone(why) => MediaEnd::PeerGone(why),
    })
}

impl Session {
    /// Sends what the legs want sent; returns why the session ends, if a leg says so.
    fn flush(&mut self) -> Option<MediaEnd> {
        let (ports, sent, errors) = (&self.ports, &mut self.sent, &mut self.send_errors);
        match &mut self.media {
            SessionMedia::Echo(bridge) => send_transmits(bridge, ports, sent, errors),
            SessionMedia::Stream(call) => send_transmits(&mut call.bridge, ports, sent, errors),
            SessionMedia::WebRtcEcho(bridge) => send_transmits(&mut **bridge, ports, sent, errors),
            SessionMedia::WebRtcStream(call) => {
                send_transmits(&mut call.bridge, ports, sent, errors)
            }
        }
    }

    /// A datagram from the caller: through the bridge, and what it makes sent.
    fn handle_datagram(&mut self, now: Instant, datagram: Datagram<'_>) -> Option<MediaEnd> {
        match &mut self.media {
            SessionMedia::Echo(bridge) => {
                bridge.handle_input(now, Side::A, Input::Datagram(datagram));
                self.flush()
            }
            SessionMedia::Stream(call) => {
                call.bridge
                    .handle_input(now, Side::A, Input::Datagram(datagram));
                // The agent's messages (a digit) before the RTP, which only a timeout makes.
                let end = call.pump(now);
                end.or_else(|| self.flush())
            }
            SessionMedia::WebRtcEcho(bridge) => {
                bridge.handle_input(now, Side::A, Input::Datagram(datagram));
                self.flush()
            }
            SessionMedia::WebRtcStream(call) => {
                call.bridge
                    .handle_input(now, Side::A, Input::Datagram(datagram));
                let end = call.pump(now);
                end.or_else(|| self.flush())
            }
        }
    }

    /// The session's deadline came.
    fn handle_timeout(&mut self, now: Instant) -> Option<MediaEnd> {
        match &mut self.media {
            SessionMedia::Echo(bridge) => {
                bridge.handle_timeout(now);
                self.flush()
            }
            SessionMedia::Stream(call) => {
                let end = call.handle_timeout(now);
                end.or_else(|| self.flush())
            }
            SessionMedia::WebRtcEcho(bridge) => {
                bridge.handle_timeout(now);
                self.flush()
            }
            SessionMedia::WebRtcStream(call) => {
                let end = call.handle_timeout(now);
                end.or_else(|| self.flush())
            }
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match &self.media {
            SessionMedia::Echo(bridge) => bridge.poll_timeout(),
            SessionMedia::Stream(call) => call.poll_timeout(),
            SessionMedia::WebRtcEcho(bridge) => bridge.poll_timeout(),
            SessionMedia::WebRtcStream(call) => call.poll_timeout(),
        }
    }

    /// The deadline of the 20 ms frame a timeout at `now` plays to the caller: a stream
    /// session's playout slot, when it has come.
    fn slot_due(&self, now: Instant) -> Option<Instant> {
        let slot = match &self.media {
            SessionMedia::Echo(_) | SessionMedia::WebRtcEcho(_) => return None,
            SessionMedia::Stream(call) => call.bridge.b().session().next_slot(),
            SessionMedia::WebRtcStream(call) => call.bridge.b().session().next_slot(),
        };
        Some(slot).filter(|&slot| slot <= now)
    }

    fn rtp_leg(&self) -> Option<&RtpLeg> {
        match &self.media {
            SessionMedia::Echo(bridge) => Some(bridge.a()),
            SessionMedia::Stream(call) => Some(call.bridge.a()),
            SessionMedia::WebRtcEcho(_) | SessionMedia::WebRtcStream(_) => None,
        }
    }

    /// Puts the session's deadline in the heap when it moved earlier than the armed one.
    fn rearm(&mut self, slot: u32, timers: &mut Timers) {
        if let Some(next) = self.poll_timeout()
            && self.armed.is_none_or(|armed| next < armed)
        {
            timers.set(slot, next);
            self.armed = Some(next);
        }
    }

    fn report(&self, end: MediaEnd) -> MediaReport {
        let (packets_in, rtcp_in, latch) = match (self.rtp_leg(), &self.media) {
            (Some(leg), _) => {
                let stats = leg.stats();
                (stats.packets_in, stats.rtcp_in, stats.latch)
            }
            (None, SessionMedia::WebRtcEcho(bridge)) => {
                (bridge.a().stats().packets_in, 0, Default::default())
            }
            (None, SessionMedia::WebRtcStream(call)) => {
                (call.bridge.a().stats().packets_in, 0, Default::default())
            }
            (None, _) => (0, 0, Default::default()),
        };
        let (notices_dropped, messages_dropped, stream, recording) = match &self.media {
            SessionMedia::Echo(_) | SessionMedia::WebRtcEcho(_) => (0, 0, None, None),
            SessionMedia::Stream(call) => (
                call.notices_dropped,
                call.messages_dropped,
                Some(call.bridge.b().session().stats()),
                call.recording_report(),
            ),
            SessionMedia::WebRtcStream(call) => (
                call.notices_dropped,
                call.messages_dropped,
                Some(call.bridge.b().session().stats()),
                call.recording_report(),
            ),
        };
        MediaReport {
            end,
            stats: MediaStats {
                packets_in,
                packets_out: self.sent,
                rtcp_in,
                send_errors: self.send_errors,
                latch,
                notices_dropped,
                messages_dropped,
            },
            latched: self.rtp_leg().and_then(RtpLeg::latched),
            stream,
            recording,
        }
    }
}

/// A shard's loop and everything it owns; [`Shard::run`] runs it on its own thread.
pub(crate) struct Shard {
    poll: Poll,
    events: Events,
    timer: WakeTimer,
    core: Core,
}

/// The loop's state apart from the poller, so that events can be served while iterated.
struct Core {
    index: usize,
    /// The poller's registry, for agent stream sockets.
    registry: Registry,
    commands: mpsc::Receiver<Command>,
    link: Arc<ShardLink>,
    pool: PortPool,
    sessions: Vec<Option<Session>>,
    free: Vec<u32>,
    /// Per pair of the pool: the slot of its session, [`NO_SESSION`] or [`READY_IDLE`].
    by_pair: Vec<u32>,
    timers: Timers,
    /// Sockets left readable after [`MAX_READS`]: (slot, port, lease).
    again: Vec<(u32, Port, u64)>,
    more_commands: bool,
    buf: Box<[u8; MAX_DATAGRAM]>,
    /// Stream sessions' send lateness since the last flush, and when the next flush is due.
    lateness: SendLateness,
    lateness_flush: Option<Instant>,
}

impl Shard {
    /// A shard numbered `index` with its poller; returns it and the link other threads use.
    /// The queue holds `queue` commands.
    pub(crate) fn new(
        index: usize,
        poll: Poll,
        pool: PortPool,
        queue: usize,
    ) -> io::Result<(Shard, Arc<ShardLink>)> {
        let waker = Waker::new(poll.registry(), WAKE)?;
        let timer = WakeTimer::new(poll.registry(), TIMER)?;
        let registry = poll.registry().try_clone()?;
        let (tx, rx) = mpsc::channel(queue.max(1));
        let link = Arc::new(ShardLink {
            commands: tx,
            waker,
            state: AtomicU8::new(IDLE),
            stop: AtomicBool::new(false),
        });
        let pairs = pool.capacity();
        let shard = Shard {
            poll,
            events: Events::with_capacity(EVENTS),
            timer,
            core: Core {
                index,
                registry,
                commands: rx,
                link: Arc::clone(&link),
                pool,
                sessions: Vec::new(),
                free: Vec::new(),
                by_pair: vec![NO_SESSION; pairs],
                timers: Timers::default(),
                again: Vec::new(),
                more_commands: false,
                buf: Box::new([0; MAX_DATAGRAM]),
                lateness: SendLateness::default(),
                lateness_flush: None,
            },
        };
        Ok((shard, link))
    }

    /// Serves the shard's calls until the runtime stops it; then ends every session with
    /// [`MediaEnd::Shutdown`].
    #[allow(clippy::disallowed_methods)] // the media loop is a driver: it reads the clock around each wait
    pub(crate) fn run(mut self) {
        let core = &mut self.core;
        loop {
            if core.link.stop.load(Ordering::Acquire) {
                break;
            }
            let before = Instant::now();
            let timeout = core.timeout(before);
            if let Err(e) = self.timer.arm(before, timeout) {
                // The poller's timeout still wakes the loop, up to a millisecond later.
                tracing::debug!(shard = core.index, error = %e, "media shard cannot arm its timer");
            }
            if let Err(e) = self.poll.poll(&mut self.events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!(shard = core.index, error = %e, "media shard cannot wait for events; its calls end");
                break;
            }
            let now = Instant::now();
            for event in &self.events {
                if event.token() == TIMER {
                    self.timer.fired();
                } else {
                    core.readable(now, event.token());
                }
            }
            core.read_again(now);
            if core.link.state.swap(IDLE, Ordering::AcqRel) == NOTIFIED || core.more_commands {
                core.run_commands(now);
            }
            core.fire_timers(now, Instant::now);
            core.flush_lateness(now);
        }
        core.shutdown();
        core.lateness.flush_to_metrics();
    }
}

impl Core {
    /// How long the loop may sleep from `now`: not at all with work left over; until woken
    /// (parked) with no call; else until the earliest deadline, and at most [`COMMAND_DELAY`].
    fn timeout(&self, now: Instant) -> Option<Duration> {
        if !self.again.is_empty() || self.more_commands {
            return Some(Duration::ZERO);
        }
        if self.sessions.len() == self.free.len() {
            let parked =
                self.link
                    .state
                    .compare_exchange(IDLE, PARKED, Ordering::AcqRel, Ordering::Acquire);
            // A command came since the loop last looked: run it first.
            return if parked.is_ok() {
                None
            } else {
                Some(Duration::ZERO)
            };
        }
        let next = self
            .timers
            .peek()
            .map_or(COMMAND_DELAY, |(at, _)| at.saturating_duration_since(now));
        Some(next.min(COMMAND_DELAY))
    }

    fn readable(&mut self, now: Instant, token: Token) {
        if let Some(slot) = token.0.checked_sub(AGENT_TOKENS) {
            if let Ok(slot) = u32::try_from(slot) {
                self.agent_ready(now, slot);
            }
            return;
        }
        let Ok(port) = u16::try_from(token.0) else {
            return;
        };
        let Some(pair) = self.pool.pair_index(port) else {
            return;
        };
        let Some(entry) = self.by_pair.get_mut(pair) else {
            return;
        };
        if *entry >= READY_IDLE {
            // An idle pair, or one whose call has not started here yet: the start reads it,
            // and an idle pair is read when it is handed out again.
            *entry = READY_IDLE;
            self.pool.note_stale(pair);
            return;
        }
        let slot = *entry;
        let which = if self.pool.rtp_port_of(pair) == Some(port) {
            Port::Rtp
        } else {
            Port::Rtcp
        };
        self.read(now, slot, which);
    }

    /// Reads one socket of a session until it would block or [`MAX_READS`] were read.
    fn read(&mut self, now: Instant, slot: u32, which: Port) {
        let Some(Some(session)) = self.sessions.get_mut(slot as usize) else {
            return;
        };
        let mut end = None;
        let mut reads = 0;
        loop {
            if reads == MAX_READS {
                self.again.push((slot, which, session.ports.lease()));
                break;
            }
            reads += 1;
            let socket = match which {
                Port::Rtp => session.ports.rtp(),
                Port::Rtcp => session.ports.rtcp(),
            };
            match socket.recv_from(&mut self.buf[..]) {
                Ok((len, src)) => {
                    let data = self.buf.get(..len).unwrap_or_default();
                    let datagram = Datagram {
                        port: which,
                        src,
                        data,
                    };
                    end = session.handle_datagram(now, datagram);
                    if end.is_some() {
                        break;
                    }
                    session.rearm(slot, &mut self.timers);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if passes(&e) => {}
                Err(e) => {
                    end = Some(MediaEnd::Socket(e.kind()));
                    break;
                }
            }
        }
        if let Some(end) = end {
            self.end(slot, end);
        }
    }

    fn read_again(&mut self, now: Instant) {
        if self.again.is_empty() {
            return;
        }
        let again = std::mem::take(&mut self.again);
        for &(slot, which, lease) in &again {
            let alive = self
                .sessions
                .get(slot as usize)
                .and_then(Option::as_ref)
                .is_some_and(|s| s.ports.lease() == lease);
            if alive {
                self.read(now, slot, which);
            }
        }
        // Keep the allocation for the next time.
        if self.again.is_empty() {
            self.again = again;
            self.again.clear();
        }
    }

    fn run_commands(&mut self, now: Instant) {
        self.more_commands = false;
        for _ in 0..MAX_COMMANDS {
            match self.commands.try_recv() {
                Ok(Command::Start {
                    ports,
                    config,
                    report,
                }) => self.start(now, ports, report, |_, _| {
                    SessionMedia::Echo(Bridge::new(RtpLeg::new(now, &config), EchoLeg::new()))
                }),
                Ok(Command::StartStream {
                    ports,
                    config,
                    agent,
                    notices,
                    report,
                }) => self.start(now, ports, report, |slot, registry| {
                    let token = Token(AGENT_TOKENS + slot as usize);
                    let rtp = RtpLeg::new(now, &config);
                    let call = StreamCall::new(now, rtp, &config, *agent, token, notices, registry);
                    metrics::gauge!("vca_sip_agent_streams").increment(1.0);
                    SessionMedia::Stream(Box::new(call))
                }),
                Ok(Command::StartWebRtc { ports, leg, report }) => {
                    self.start(now, ports, report, |_, _| {
                        metrics::gauge!("vca_sip_webrtc_sessions").increment(1.0);
                        SessionMedia::WebRtcEcho(Box::new(Bridge::new(*leg, EchoLeg::new())))
                    })
                }
                Ok(Command::StartWebRtcStream {
                    ports,
                    leg,
                    config,
                    agent,
                    notices,
                    report,
                }) => self.start(now, ports, report, |slot, registry| {
                    let token = Token(AGENT_TOKENS + slot as usize);
                    let call =
                        StreamCall::new(now, *leg, &config, *agent, token, notices, registry);
                    metrics::gauge!("vca_sip_agent_streams").increment(1.0);
                    metrics::gauge!("vca_sip_webrtc_sessions").increment(1.0);
                    SessionMedia::WebRtcStream(Box::new(call))
                }),
                Ok(Command::Hangup { port, lease }) => {
                    if let Some(slot) = self.slot_of(port, lease) {
                        self.hangup(now, slot);
                    }
                }
                Ok(Command::Dtmf { port, lease, digit }) => {
                    if let Some(slot) = self.slot_of(port, lease) {
                        self.dtmf(now, slot, digit);
                    }
                }
                Ok(Command::Candidate {
                    port,
                    lease,
                    candidate,
                }) => {
                    if let Some(slot) = self.slot_of(port, lease) {
                        self.candidate(now, slot, *candidate);
                    }
                }
                Err(_) => return,
            }
        }
        self.more_commands = true;
    }

    /// Starts a session on `ports` whose media `make` makes for its slot.
    fn start(
        &mut self,
        now: Instant,
        ports: RtpPorts,
        report: oneshot::Sender<MediaReport>,
        make: impl FnOnce(u32, &Registry) -> SessionMedia,
    ) {
        let Some(pair) = self.pool.pair_index(ports.rtp_port()) else {
            return;
        };
        let Some(entry) = self.by_pair.get(pair).copied() else {
            return;
        };
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.sessions.push(None);
                u32::try_from(self.sessions.len() - 1).unwrap_or(NO_SESSION)
            }
        };
        let mut session = Session {
            ports,
            media: make(slot, &self.registry),
            report,
            sent: 0,
            send_errors: 0,
            armed: None,
        };
        session.rearm(slot, &mut self.timers);
        if let Some(place) = self.sessions.get_mut(slot as usize) {
            *place = Some(session);
        }
        if let Some(place) = self.by_pair.get_mut(pair) {
            *place = slot;
        }
        if entry == READY_IDLE {
            // Media came before the start: the readiness was noted, the packets wait.
            self.read(now, slot, Port::Rtp);
            self.read(now, slot, Port::Rtcp);
        }
    }

    fn slot_of(&self, port: u16, lease: u64) -> Option<u32> {
        let slot = *self.by_pair.get(self.pool.pair_index(port)?)?;
        let session = self.sessions.get(slot as usize)?.as_ref()?;
        (session.ports.lease() == lease).then_some(slot)
    }

    /// Runs the deadlines due at `now`; `sent_at` reads the clock after a stream session's
    /// slot was sent, for its lateness.
    fn fire_timers(&mut self, now: Instant, sent_at: impl Fn() -> Instant) {
        // Each armed deadline fires at most once per wake-up, whatever a leg asks for next.
        let mut budget = self.timers.len();
        while budget > 0
            && let Some((at, slot)) = self.timers.peek()
            && at <= now
        {
            budget -= 1;
            self.timers.remove(slot);
            let Some(Some(session)) = self.sessions.get_mut(slot as usize) else {
                continue;
            };
            session.armed = None;
            let slot_due = session.slot_due(now);
            match session.handle_timeout(now) {
                Some(end) => self.end(slot, end),
                None => {
                    if let Some(due) = slot_due {
                        self.lateness
                            .record(sent_at().saturating_duration_since(due));
                    }
                    session.rearm(slot, &mut self.timers);
                }
            }
        }
    }

    /// Hands the send lateness to the metrics when [`LATENESS_FLUSH`] has gone by since the
    /// last time.
    fn flush_lateness(&mut self, now: Instant) {
        match self.lateness_flush {
            Some(at) if now < at => {}
            _ => {
                self.lateness.flush_to_metrics();
                self.lateness_flush = Some(now + LATENESS_FLUSH);
            }
        }
    }

    /// The agent stream socket of the session in `slot` is ready.
    fn agent_ready(&mut self, now: Instant, slot: u32) {
        let Some(Some(session)) = self.sessions.get_mut(slot as usize) else {
            return;
        };
        let end = match &mut session.media {
            SessionMedia::Stream(call) => call.handle_io(now, &self.registry),
            SessionMedia::WebRtcStream(call) => call.handle_io(now, &self.registry),
            SessionMedia::Echo(_) | SessionMedia::WebRtcEcho(_) => return,
        };
        self.settle(slot, end);
    }

    /// The call hangs up the session in `slot`: at once, or once its agent closed.
    fn hangup(&mut self, now: Instant, slot: u32) {
        let Some(Some(session)) = self.sessions.get_mut(slot as usize) else {
            return;
        };
        let end = match &mut session.media {
            SessionMedia::Echo(_) => Some(MediaEnd::Hangup),
            SessionMedia::WebRtcEcho(bridge) => {
                bridge.a_mut().close();
                Some(MediaEnd::Hangup)
            }
            SessionMedia::Stream(call) => call.hangup(now),
            SessionMedia::WebRtcStream(call) => call.hangup(now),
        };
        self.settle(slot, end);
    }

    /// A SIP INFO digit for the session in `slot` (an echo session has no use for it).
    fn dtmf(&mut self, now: Instant, slot: u32, digit: char) {
        let Some(Some(session)) = self.sessions.get_mut(slot as usize) else {
            return;
        };
        let end = match &mut session.media {
            SessionMedia::Stream(call) => call.dtmf(now, digit),
            SessionMedia::WebRtcStream(call) => call.dtmf(now, digit),
            SessionMedia::Echo(_) | SessionMedia::WebRtcEcho(_) => return,
        };
        self.settle(slot, end);
    }

    /// A browser's trickled ICE candidate for the WebRTC leg of the session in `slot`.
    fn candidate(&mut self, now: Instant, slot: u32, candidate: str0m::Candidate) {
        let Some(Some(session)) = self.sessions.get_mut(slot as usize) else {
            return;
        };
        match &mut session.media {
            SessionMedia::WebRtcEcho(bridge) => bridge.a_mut().add_remote_candidate(now, candidate),
            SessionMedia::WebRtcStream(call) => {
                call.bridge.a_mut().add_remote_candidate(now, candidate);
            }
            SessionMedia::Echo(_) | SessionMedia::Stream(_) => return,
        }
        self.settle(slot, None);
    }

    /// After an input outside the sockets' reads: sends what the legs want sent, then ends
    /// the session or re-arms its deadline.
    fn settle(&mut self, slot: u32, end: Option<MediaEnd>) {
        let Some(Some(session)) = self.sessions.get_mut(slot as usize) else {
            return;
        };
        let end = end.or_else(|| session.flush());
        match end {
            Some(end) => self.end(slot, end),
            None => session.rearm(slot, &mut self.timers),
        }
    }

    /// Ends a session: reports, frees its slot and timer, and returns its ports to the pool.
    fn end(&mut self, slot: u32, end: MediaEnd) {
        let Some(mut session) = self.sessions.get_mut(slot as usize).and_then(Option::take) else {
            return;
        };
        match &mut session.media {
            SessionMedia::Stream(call) => call.close(&self.registry),
            SessionMedia::WebRtcEcho(_) => {
                metrics::gauge!("vca_sip_webrtc_sessions").decrement(1.0);
            }
            SessionMedia::WebRtcStream(call) => {
                call.close(&self.registry);
                metrics::gauge!("vca_sip_webrtc_sessions").decrement(1.0);
            }
            SessionMedia::Echo(_) => {}
        }
        self.free.push(slot);
        self.timers.remove(slot);
        if let Some(place) = self
            .pool
            .pair_index(session.ports.rtp_port())
            .and_then(|pair| self.by_pair.get_mut(pair))
        {
            *place = NO_SESSION;
        }
        let report = session.report(end);
        tracing::debug!(?report, "media session ended");
        if let Some(stream) = &report.stream {
            count_stream_end(&report.end, stream, &report.stats);
        }
        let Session {
            ports, report: tx, ..
        } = session;
        // The ports are back in the pool by the time the call reads the report.
        drop(ports);
        // The call may be gone already; then nobody waits for the report.
        let _ = tx.send(report);
    }

    fn shutdown(&mut self) {
        for slot in 0..self.sessions.len() {
            if let Ok(slot) = u32::try_from(slot) {
                self.end(slot, MediaEnd::Shutdown);
            }
        }
    }
}

/// Errors after which receiving can go on: an ICMP error surfacing from an earlier send, or
/// an interruption.
fn passes(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// The sessions' deadlines: a binary min-heap indexed by slot, so that a session's entry is
/// moved or removed in O(log n) and the heap holds no entry of an ended session.
#[derive(Debug, Default)]
struct Timers {
    heap: Vec<(Instant, u32)>,
    /// Per slot: its place in `heap`, or `ABSENT`.
    place: Vec<u32>,
}

const ABSENT: u32 = u32::MAX;

impl Timers {
    fn len(&self) -> usize {
        self.heap.len()
    }

    /// The earliest deadline and its slot.
    fn peek(&self) -> Option<(Instant, u32)> {
        self.heap.first().copied()
    }

    /// Sets `slot`'s deadline to `at`, moving it if it had one.
    fn set(&mut self, slot: u32, at: Instant) {
        let s = slot as usize;
        if self.place.len() <= s {
            self.place.resize(s + 1, ABSENT);
        }
        match self.place[s] {
            ABSENT => {
                self.heap.push((at, slot));
                let i = self.heap.len() - 1;
                self.place[s] = i as u32;
                self.sift_up(i);
            }
            i => {
                let i = i as usize;
                self.heap[i].0 = at;
                self.sift_up(i);
                self.sift_down(self.place[s] as usize);
            }
        }
    }

    /// Removes `slot`'s deadline, if it has one.
    fn remove(&mut self, slot: u32) {
        let Some(&i) = self.place.get(slot as usize) else {
            return;
        };
        if i == ABSENT {
            return;
        }
        let i = i as usize;
        self.place[slot as usize] = ABSENT;
        let last = self.heap.len() - 1;
        self.heap.swap(i, last);
        self.heap.pop();
        if let Some(&(_, moved)) = self.heap.get(i) {
            self.place[moved as usize] = i as u32;
            self.sift_up(i);
            self.sift_down(self.place[moved as usize] as usize);
        }
    }

    fn swap(&mut self, i: usize, j: usize) {
        self.heap.swap(i, j);
        self.place[self.heap[i].1 as usize] = i as u32;
        self.place[self.heap[j].1 as usize] = j as u32;
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.heap[i].0 >= self.heap[parent].0 {
                break;
            }
            self.swap(i, parent);
            i = parent;
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut least = i;
            if l < self.heap.len() && self.heap[l].0 < self.heap[least].0 {
                least = l;
            }
            if r < self.heap.len() && self.heap[r].0 < self.heap[least].0 {
                least = r;
            }
            if least == i {
                return;
            }
            self.swap(i, least);
            i = least;
        }
    }
}

/// An agent stream's end, in the metrics: once per session, never per packet.
fn count_stream_end(end: &MediaEnd, stream: &StreamStats, stats: &MediaStats) {
    let end = match end {
        MediaEnd::Hangup => "hangup",
        MediaEnd::MediaTimeout => "media_timeout",
        MediaEnd::Socket(_) => "socket_error",
        MediaEnd::Shutdown => "shutdown",
        MediaEnd::AgentHangup => "agent_hangup",
        MediaEnd::AgentDisconnected => "agent_disconnected",
        MediaEnd::AgentUnreachable(_) => "agent_unreachable",
        MediaEnd::PeerGone(_) => "peer_gone",
    };
    metrics::gauge!("vca_sip_agent_streams").decrement(1.0);
    metrics::counter!("vca_sip_agent_stream_ends_total", "end" => end).increment(1);
    let counts = [
        (
            "vca_sip_agent_protocol_errors_total",
            stream.protocol_errors,
        ),
        ("vca_sip_agent_unknown_events_total", stream.unknown_events),
        (
            "vca_sip_agent_audio_dropped_samples_total",
            stream.playout.dropped_samples,
        ),
        (
            "vca_sip_agent_playout_skipped_slots_total",
            stream.playout.skipped_slots,
        ),
        ("vca_sip_agent_notices_dropped_total", stats.notices_dropped),
        (
            "vca_sip_agent_messages_dropped_total",
            stats.messages_dropped,
        ),
    ];
    for (name, count) in counts {
        if count > 0 {
            metrics::counter!(name).increment(count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{FakeClock, origin};
    use crate::media::rtp::{Pt, RtpHeader, RtpPacket, Ssrc, build};
    use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};

    const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    /// A shard that is not running: the test turns its loop by hand.
    fn shard(range: std::ops::RangeInclusive<u16>, queue: usize) -> (Shard, Arc<ShardLink>) {
        let poll = Poll::new().unwrap();
        let registry = poll.registry().try_clone().unwrap();
        let clock = FakeClock::new(chrono::DateTime::UNIX_EPOCH);
        let pool = PortPool::new(LOOPBACK, range, vec![registry], clock);
        Shard::new(0, poll, pool, queue).unwrap()
    }

    /// One turn of the loop: wait for readiness (not when a command is queued), serve it,
    /// run commands.
    fn turn(shard: &mut Shard) {
        let queued = shard.core.link.state.load(Ordering::Acquire) == NOTIFIED;
        let wait = if queued { 0 } else { 5 };
        shard
            .poll
            .poll(&mut shard.events, Some(Duration::from_secs(wait)))
            .unwrap();
        let now = origin();
        for event in &shard.events {
            shard.core.readable(now, event.token());
        }
        if shard.core.link.state.swap(IDLE, Ordering::AcqRel) == NOTIFIED {
            shard.core.run_commands(now);
        }
    }

    #[test]
    fn media_that_came_before_the_start_is_read_at_the_start() {
        let (mut shard, link) = shard(31260..=31261, 8);
        let ports = shard.core.pool.allocate().unwrap();
        let echo = SocketAddr::new(LOOPBACK, ports.rtp_port());
        let caller = UdpSocket::bind((LOOPBACK, 0)).unwrap();
        caller
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        // Sent after the 200 OK, before the ACK started the session.
        let h = RtpHeader {
            marker: true,
            payload_type: Pt::PCMU,
            sequence_number: 0,
            timestamp: 0,
            ssrc: Ssrc(1),
        };
        let mut early = [0u8; 17];
        build(&h, b"early", &mut early).unwrap();
        caller.send_to(&early, echo).unwrap();
        turn(&mut shard);
        assert_eq!(shard.core.by_pair, vec![READY_IDLE]);

        let (tx, mut rx) = oneshot::channel();
        let config = MediaConfig {
            remote: caller.local_addr().unwrap(),
            audio_pt: Pt::PCMU,
            event_pt: None,
            media_timeout: Duration::from_secs(30),
        };
        link.send(Command::Start {
            ports,
            config,
            report: tx,
        })
        .unwrap();
        turn(&mut shard);
        assert_eq!(shard.core.by_pair, vec![0]);
        let mut buf = [0u8; 64];
        let (n, _) = caller.recv_from(&mut buf).unwrap();
        assert_eq!(RtpPacket::parse(&buf[..n]).unwrap().payload(), b"early");
        // One session, one armed deadline: the media timeout.
        assert_eq!(shard.core.timers.len(), 1);

        let lease = shard.core.sessions[0].as_ref().unwrap().ports.lease();
        // A hangup of an earlier call on the same pair is not this call's.
        link.send(Command::Hangup {
            port: echo.port(),
            lease: lease.wrapping_sub(1),
        })
        .unwrap();
        link.send(Command::Hangup {
            port: echo.port(),
            lease,
        })
        .unwrap();
        shard.core.run_commands(origin());
        let report = rx.try_recv().unwrap();
        assert_eq!(report.end, MediaEnd::Hangup);
        assert_eq!((report.stats.packets_in, report.stats.packets_out), (1, 1));
        assert_eq!(shard.core.by_pair, vec![NO_SESSION]);
        assert_eq!(
            (shard.core.timers.len(), shard.core.free.clone()),
            (0, vec![0])
        );
    }

    #[test]
    fn a_packet_reaching_an_idle_pair_is_thrown_away_when_the_pair_is_handed_out() {
        let (mut shard, _link) = shard(31270..=31271, 8);
        let ports = shard.core.pool.allocate().unwrap();
        let rtp = SocketAddr::new(LOOPBACK, ports.rtp_port());
        drop(ports);
        let late = UdpSocket::bind((LOOPBACK, 0)).unwrap();
        late.send_to(b"late", rtp).unwrap();
        turn(&mut shard);
        assert_eq!(shard.core.by_pair, vec![READY_IDLE]);
        let ports = shard.core.pool.allocate().unwrap();
        assert_eq!(ports.rtp_port(), rtp.port());
        let mut buf = [0u8; 64];
        assert!(
            ports.rtp().recv_from(&mut buf).is_err(),
            "the late packet reached the next call"
        );
    }

    #[test]
    fn an_idle_shard_parks_and_only_the_first_command_wakes_it() {
        let (mut shard, link) = shard(31264..=31265, 8);
        let now = origin();
        assert_eq!(shard.core.timeout(now), None);
        assert_eq!(link.state.load(Ordering::Acquire), PARKED);
        let hangup = || Command::Hangup {
            port: 31264,
            lease: 1,
        };
        link.send(hangup()).unwrap();
        link.send(hangup()).unwrap();
        let mut events = Events::with_capacity(8);
        shard
            .poll
            .poll(&mut events, Some(Duration::from_secs(5)))
            .unwrap();
        let tokens: Vec<Token> = events.iter().map(|e| e.token()).collect();
        assert_eq!(tokens, vec![WAKE]);
        // A command came since the loop looked: it does not park again before running it.
        assert_eq!(shard.core.timeout(now), Some(Duration::ZERO));

        // With a call on the shard the loop is not woken per command; it looks on its own.
        let ports = shard.core.pool.allocate().unwrap();
        let config = MediaConfig {
            remote: SocketAddr::new(LOOPBACK, 9),
            audio_pt: Pt::PCMU,
            event_pt: None,
            media_timeout: Duration::ZERO,
        };
        let (tx, _rx) = oneshot::channel();
        shard.core.start(now, ports, tx, |_, _| {
            SessionMedia::Echo(Bridge::new(RtpLeg::new(now, &config), EchoLeg::new()))
        });
        link.state.store(IDLE, Ordering::Release);
        assert_eq!(shard.core.timeout(now), Some(COMMAND_DELAY));
        link.send(hangup()).unwrap();
        shard.poll.poll(&mut events, Some(Duration::ZERO)).unwrap();
        assert!(events.is_empty());
    }

    #[test]
    fn a_call_on_a_shard_is_one_slot_of_fixed_size() {
        // Two 1,500-byte packet buffers (the RTP leg's and the echo's), the echo's 20 ms
        // frame, the latch, counters and the ports: 3,808 bytes on x86-64 with Rust 1.95. A
        // bound, not an exact figure, as layouts change between compiler releases.
        let size = std::mem::size_of::<Session>();
        assert!(size <= 4 * 1024, "{size}");
    }

    #[test]
    fn a_full_queue_is_an_error_at_once_and_a_gone_shard_is_stopped() {
        let (shard, link) = shard(31262..=31263, 1);
        let hangup = || Command::Hangup {
            port: 31262,
            lease: 1,
        };
        link.send(hangup()).unwrap();
        assert!(matches!(link.send(hangup()), Err(MediaError::Busy)));
        drop(shard);
        assert!(matches!(link.send(hangup()), Err(MediaError::Stopped)));
    }

    fn drain(timers: &mut Timers) -> Vec<(u64, u32)> {
        let t0 = timers.peek().map(|(at, _)| at);
        let mut out = Vec::new();
        while let Some((at, slot)) = timers.peek() {
            timers.remove(slot);
            out.push(((at - t0.unwrap_or(at)).as_millis() as u64, slot));
        }
        out
    }

    #[test]
    fn timers_fire_earliest_first_and_move_or_vanish_with_their_slot() {
        let t0 = origin();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut timers = Timers::default();
        for (slot, at) in [(0, 50), (1, 10), (2, 40), (3, 30), (4, 20), (5, 60)] {
            timers.set(slot, ms(at));
        }
        assert_eq!(timers.peek(), Some((ms(10), 1)));
        // Moved earlier, moved later, removed, removed twice, and a slot never set.
        timers.set(5, ms(5));
        timers.set(1, ms(45));
        timers.remove(2);
        timers.remove(2);
        timers.remove(9);
        assert_eq!(timers.len(), 5);
        assert_eq!(
            drain(&mut timers),
            vec![(0, 5), (15, 4), (25, 3), (40, 1), (45, 0)]
        );
        assert_eq!(timers.peek(), None);
    }

    #[test]
    fn timers_stay_ordered_through_many_changes() {
        let t0 = origin();
        let mut timers = Timers::default();
        let mut expect = vec![None; 64];
        // A fixed pseudo-random walk of sets and removes.
        let mut x: u32 = 12345;
        for _ in 0..2000 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let slot = (x >> 8) % 64;
            let at = t0 + Duration::from_millis(u64::from((x >> 16) % 1000));
            if x.is_multiple_of(3) {
                timers.remove(slot);
                expect[slot as usize] = None;
            } else {
                timers.set(slot, at);
                expect[slot as usize] = Some(at);
            }
        }
        let mut want: Vec<(Instant, u32)> = expect
            .iter()
            .enumerate()
            .filter_map(|(slot, at)| at.map(|at| (at, slot as u32)))
            .collect();
        want.sort();
        let mut got = Vec::new();
        while let Some((at, slot)) = timers.peek() {
            timers.remove(slot);
            got.push((at, slot));
        }
        assert_eq!(got.len(), want.len());
        let times = |v: &[(Instant, u32)]| v.iter().map(|(at, _)| *at).collect::<Vec<_>>();
        assert_eq!(times(&got), times(&want));
    }
}
