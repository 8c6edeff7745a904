//! One inbound call as a sans-IO machine: the UAS transaction user (RFC 3261 §13.3, §12,
//! §15; RFC 4028 session timers; RFC 6432 Reason).
//!
//! The machine decides everything about its call and does none of it: it asks for RTP
//! ports, for record writes (durable or not), for media to start and stop, and gives the
//! endpoint commands (responses, the BYE it sends). Its driver ([`super::Call`]) carries
//! those out and feeds back what happened.
//!
//! ```text
//!              start(now)                 poll_output() -> Output
//!   driver ─ handle_ports(now, ..) ──▶ Uas ─────────────────────────▶ driver
//!            handle_committed(now, ..)    poll_timeout() -> Option<Instant>
//!            handle_event(now, ..)
//!            handle_media_end(now, ..)
//!            handle_timeout(now)
//! ```
//!
//! The order of decisions for a new INVITE: dialed number -> tenant (404 unknown, 403
//! inactive number or tenant) -> admission (486 at the tenant's or trunk's limit) ->
//! session timer (400, 422) -> RTP ports (503) -> SDP (488) -> the agent's stream, when the
//! number's AI profile sends its calls to one (183 with early media while it connects; 480
//! with `Reason: Q.850;cause=20` when it cannot be reached in time) -> ring -> record
//! committed -> 200 OK -> ACK -> media. Every decision after the tenant is known is written
//! to the call's record with the status sent.
//!
//! ```text
//!   Routing ──ports──▶ Ringing ──ring over──▶ Committing ──committed──▶ AwaitingAck
//!      │  └─stream─▶ Connecting ─connected─┘ │          │ failed: 503          │ ACK
//!      │              │ 480, CANCEL: 487   │ CANCEL   │                      ▼
//!      ▼              ▼                    ▼ 487      ▼                      Up
//!     Done ◀──────── Done ◀────────────── Done ◀──── Done ◀── BYE either way ──┘
//! ```

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng;

use super::record::Record;
use crate::clock::WallClock;
use crate::gate::Admitted;
use crate::media::dtmf;
use crate::media::recorder::{Recorded, RecordingFailure, RecordingKey};
use crate::media::rtp::Pt;
use crate::media::session::MediaConfig;
use crate::routing::admission::{self, Admission, Busy};
use crate::routing::directory::Directory;
use crate::routing::e164::{CountryCode, Did};
use crate::sip::dialog::{AckOutcome, Dialog, DialogError, UasDialogParams};
use crate::sip::message::{Method, Request, RequestBuilder, Response, Scheme, Uri};
use crate::sip::sdp::{
    DEFAULT_CODECS, Direction as SdpDirection, LocalSession, Negotiated, SessionDescription,
};
use crate::sip::session_timer::{
    Expired, SessionExpires, SessionTimer, SessionTimerParams, SessionTimerPolicy, parse_min_se,
};
use crate::sip::transaction::{self, TransactionKey};
use crate::sip::triage::{ALLOW, Transport};
use crate::store::CallWrite;
use crate::store::model::{HangupCause, TenantStatus};
use crate::store::{CallMedia, StreamTarget};
use crate::ua::{CallEvent, CallKey, Command, Link, new_tag};

/// Settings every call reads.
#[derive(Debug, Clone)]
pub struct CallSettings {
    /// The address put in Contact and SDP.
    pub public_ip: IpAddr,
    pub udp_port: u16,
    pub tcp_port: u16,
    /// The SIP over TLS port; 0 when TLS is off (no call arrives over TLS then).
    pub tls_port: u16,
    pub ring: Duration,
    pub media_timeout: Duration,
    pub max_call_duration: Duration,
    pub country: CountryCode,
}

/// What the machine asks its driver to do, in order.
#[derive(Debug)]
pub enum Output<P> {
    /// Give the endpoint this command.
    Command(Command<P>),
    /// Write this change of the record; nothing waits for it.
    Write(CallWrite),
    /// Commit this change before anything else happens, then call
    /// [`Uas::handle_committed`] with the outcome.
    WriteDurably(CallWrite),
    /// Take an RTP/RTCP port pair for the call, then call [`Uas::handle_ports`].
    AllocatePorts,
    /// Start the call's media on its ports.
    StartMedia(MediaConfig),
    /// Start the call's media on its ports now, before it is answered, bridged to the
    /// agent's stream: the caller hears early media while it connects. The driver feeds back
    /// [`Uas::handle_agent`] (and [`Uas::handle_media_end`] when the stream ends).
    ConnectAgent(AgentPlan),
    /// Send a digit the caller sent by SIP INFO to the agent's stream.
    SendDtmf(char),
    /// Stop the call's media (the call is over).
    StopMedia,
    /// A call that resolved to no tenant, for the attempts log: `reason` and the number
    /// as dialed.
    Attempt {
        reason: &'static str,
        called: String,
    },
    /// The call is over: nothing more comes out.
    Done,
}

/// How the call's media ended by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEnd {
    /// No RTP from the caller for the media timeout.
    Timeout,
    /// The media leg failed (a socket error).
    Failed,
    /// The agent closed its stream (a close, or its `stop`).
    AgentHangup,
    /// The agent's stream died mid-call without a close.
    AgentDisconnected,
    /// The agent's stream could not be opened.
    AgentUnreachable(String),
}

/// The agent stream a call connects to, and what it tells the agent about the call.
#[derive(Debug, Clone)]
pub struct AgentPlan {
    /// The caller's RTP as the SDP said (early media goes there until RTP latches).
    pub media: MediaConfig,
    pub target: Arc<StreamTarget>,
    /// The stream's `accountSid`: the tenant id.
    pub account_sid: String,
    /// The stream's `callSid`: the call id.
    pub call_sid: String,
    /// `customParameters`: the call's ids and numbers, then the profile's own parameters.
    pub parameters: std::collections::BTreeMap<String, String>,
    /// The recording to make of the call, when its profile records.
    pub recording: Option<RecordingKey>,
}

/// What the driver reports of the agent's stream while the call is set up and runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEvent {
    /// The stream is open: the call may be answered.
    Connected,
    /// The stream could not be opened: the reason, for the record.
    Unreachable(String),
    /// A digit reached the agent.
    Dtmf(char),
    /// The agent cleared its queued audio; `marks` were echoed at once.
    Cleared { marks: usize },
}

/// Why a call is refused, as the response and the record say it.
#[derive(Debug)]
struct Refusal {
    status: u16,
    reason: &'static str,
    /// Q.850 cause (RFC 6432).
    cause: u16,
    text: &'static str,
    extra: Vec<(&'static str, String)>,
}

impl Refusal {
    fn new(status: u16, reason: &'static str, cause: u16, text: &'static str) -> Refusal {
        Refusal {
            status,
            reason,
            cause,
            text,
            extra: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Routed and admitted; waiting for ports.
    Routing,
    /// 183 sent with early media; the agent's stream is connecting until the deadline.
    Connecting(Instant),
    /// 180 sent; the 200 follows at the deadline.
    Ringing(Instant),
    /// The answered record is being committed; the 200 waits for it.
    Committing,
    /// 200 sent; waiting for its ACK.
    AwaitingAck,
    /// Established, media running.
    Up,
    Done,
}

/// One inbound call; `P` is the way its INVITE came.
pub struct Uas<P> {
    settings: CallSettings,
    clock: Arc<dyn WallClock>,
    key: CallKey,
    local_tag: Arc<str>,
    invite_key: TransactionKey,
    invite: Request,
    peer: P,
    /// The trunk that admitted the INVITE (`None`: the development trunk).
    trunk: Admitted,
    state: State,
    record: Option<Record>,
    admitted: Option<admission::Admitted>,
    timer_params: Option<SessionTimerParams>,
    session: Option<LocalSession>,
    negotiated: Option<Negotiated>,
    /// Our last SDP (answer or offer), sent again for a re-INVITE without an offer.
    sdp: Bytes,
    dialog: Option<Dialog>,
    timer: Option<SessionTimer>,
    /// When the longest call allowed ends.
    hangup_at: Option<Instant>,
    media_started: bool,
    /// Where the call's audio goes, as its route said.
    media: CallMedia,
    /// The agent's stream ended before the call was up: the call ends as soon as it is.
    media_gone: Option<MediaEnd>,
    /// Events that arrived while the record was being committed, served after it.
    deferred: VecDeque<CallEvent<P>>,
    outputs: VecDeque<Output<P>>,
}

impl<P: Link + std::fmt::Debug> Uas<P> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: CallSettings,
        clock: Arc<dyn WallClock>,
        key: CallKey,
        local_tag: Arc<str>,
        invite_key: TransactionKey,
        invite: Request,
        peer: P,
        trunk: Admitted,
    ) -> Self {
        Uas {
            settings,
            clock,
            key,
            local_tag,
            invite_key,
            invite,
            peer,
            trunk,
            state: State::Routing,
            record: None,
            admitted: None,
            timer_params: None,
            session: None,
            negotiated: None,
            sdp: Bytes::new(),
            dialog: None,
            timer: None,
            hangup_at: None,
            media_started: false,
            media: CallMedia::Echo,
            media_gone: None,
            deferred: VecDeque::new(),
            outputs: VecDeque::new(),
        }
    }

    /// The INVITE this call answers.
    pub fn invite(&self) -> &Request {
        &self.invite
    }

    /// The next thing to do. Call after every input until it returns `None`.
    pub fn poll_output(&mut self) -> Option<Output<P>> {
        self.outputs.pop_front()
    }

    /// When [`Uas::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Connecting(at) | State::Ringing(at) => Some(at),
            State::Up => {
                let session = self.timer.as_ref().and_then(SessionTimer::poll_timeout);
                match (session, self.hangup_at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
            _ => None,
        }
    }

    /// Routes and admits the call: the decisions up to the RTP ports.
    pub fn start(&mut self, directory: &Directory, admission: &Admission) {
        let raw = dialed_number(&self.invite);
        let country = self
            .trunk
            .as_ref()
            .map_or(&self.settings.country, |t| &t.country);
        let did = raw.as_deref().and_then(|r| Did::normalize(r, country).ok());
        let resolved = did.as_ref().and_then(|d| directory.resolve(d));
        let (route, media) = match resolved {
            Some(r) => (Some(r.route), r.media),
            None => (None, CallMedia::Echo),
        };
        self.media = media;
        // A tenant's own trunk reaches only that tenant's numbers; anything else is refused
        // exactly like an unknown number.
        let owner = self.trunk.as_ref().and_then(|t| t.tenant_id);
        let foreign = matches!((&route, owner), (Some(r), Some(o)) if r.tenant_id != o);
        let (Some(did), Some(route), false) = (did, route, foreign) else {
            let reason = if foreign {
                "foreign_did"
            } else {
                "unknown_did"
            };
            self.outputs.push_back(Output::Attempt {
                reason,
                called: raw.unwrap_or_default(),
            });
            self.refuse(&Refusal::new(404, "Not Found", 1, "Unallocated number"));
            return self.finish();
        };
        let mut record = Record::new(
            self.clock.clone(),
            &self.invite,
            self.peer.addr(),
            self.peer.transport(),
            &route,
            self.trunk.as_ref().map(|t| t.id),
            did.as_str(),
            raw.as_deref().unwrap_or(""),
        );
        record.event(
            "initiated",
            serde_json::json!({"remote_addr": self.peer.addr().to_string()}),
        );
        self.record = Some(record);

        match route.tenant_status {
            TenantStatus::Active => {}
            TenantStatus::Suspended | TenantStatus::Deleted => {
                return self.refuse_recorded(Refusal::new(
                    403,
                    "Forbidden",
                    21,
                    "Tenant not in service",
                ));
            }
        }
        if !route.is_active {
            return self.refuse_recorded(Refusal::new(
                403,
                "Forbidden",
                21,
                "Number not in service",
            ));
        }
        let trunk_limit = self.trunk.as_ref().map(|t| (t.id, t.max_concurrent_calls));
        match admission.try_admit_call(route.tenant_id, route.max_concurrent_calls, trunk_limit) {
            Ok(admitted) => self.admitted = Some(admitted),
            Err(Busy::Tenant) => {
                return self.refuse_recorded(Refusal::new(486, "Busy Here", 17, "User busy"));
            }
            Err(Busy::Trunk) => {
                return self.refuse_recorded(Refusal::new(486, "Busy Here", 17, "Trunk busy"));
            }
        }
        match self.session_timer() {
            Ok(params) => self.timer_params = params,
            Err(refusal) => return self.refuse_recorded(refusal),
        }
        self.outputs.push_back(Output::AllocatePorts);
    }

    /// The outcome of [`Output::AllocatePorts`]: the RTP port of the pair, or none left.
    pub fn handle_ports(&mut self, now: Instant, port: Option<u16>) {
        if self.state != State::Routing {
            return;
        }
        let Some(port) = port else {
            return self.refuse_recorded(congestion("rtp_ports"));
        };
        let mut session = LocalSession::new(rand::rng().random(), self.settings.public_ip, port);
        let body = self.invite.body().clone();
        let (negotiated, sdp) = if body.is_empty() {
            (None, session.offer(&DEFAULT_CODECS, SdpDirection::SendRecv))
        } else {
            let answered = SessionDescription::parse(&body)
                .ok()
                .and_then(|offer| session.answer(&offer, &DEFAULT_CODECS).ok());
            let Some((negotiated, answer)) = answered else {
                return self.refuse_recorded(Refusal::new(
                    488,
                    "Not Acceptable Here",
                    88,
                    "Incompatible destination",
                ));
            };
            (Some(negotiated), answer)
        };
        self.session = Some(session);
        self.negotiated = negotiated;
        self.sdp = Bytes::from(sdp);
        if let CallMedia::Stream(target) = &self.media {
            let target = Arc::clone(target);
            return self.connect_agent(now, target);
        }
        self.ring(now);
    }

    /// Rings (or answers at once when there is no ring time).
    fn ring(&mut self, now: Instant) {
        if self.settings.ring.is_zero() {
            return self.commit();
        }
        self.send_response(180, "Ringing", &[], None);
        if let Some(record) = self.record.as_mut() {
            record.ringing();
        }
        self.write();
        self.state = State::Ringing(now + self.settings.ring);
    }

    /// Opens the agent's stream with early media (183) while it connects. Without an SDP
    /// offer in the INVITE (late offer) the caller's RTP address is not known yet: early
    /// media starts once the caller's first RTP latches, and the 183 carries no SDP.
    fn connect_agent(&mut self, now: Instant, target: Arc<StreamTarget>) {
        let media = match &self.negotiated {
            Some(n) => self.media_config(n),
            None => MediaConfig {
                remote: SocketAddr::new(self.peer.addr().ip(), 0),
                audio_pt: Pt::PCMU,
                event_pt: None,
                media_timeout: self.settings.media_timeout,
            },
        };
        let Some(record) = self.record.as_mut() else {
            return;
        };
        let call = record.call();
        let parameters = agent_parameters(call, &target);
        let (account_sid, call_sid) = (call.tenant_id.to_string(), call.id.to_string());
        let recording = target.record.then_some(RecordingKey {
            tenant: call.tenant_id,
            call: call.id,
        });
        record.event(
            "agent_connecting",
            serde_json::json!({"url": target.url, "protocol": target.protocol}),
        );
        if recording.is_some() {
            record.recording_started();
        }
        let deadline = now + target.connect_timeout + AGENT_CONNECT_GRACE;
        self.outputs.push_back(Output::ConnectAgent(AgentPlan {
            media,
            target,
            account_sid,
            call_sid,
            parameters,
            recording,
        }));
        self.media_started = true;
        let early = self.negotiated.is_some().then(|| self.sdp.clone());
        self.send_response(
            183,
            "Session Progress",
            &[("Contact", self.contact())],
            early,
        );
        self.state = State::Connecting(deadline);
    }

    /// What the driver reports of the agent's stream.
    pub fn handle_agent(&mut self, now: Instant, event: AgentEvent) {
        match event {
            AgentEvent::Connected => {
                if let Some(record) = self.record.as_mut() {
                    record.event("agent_connected", serde_json::json!({}));
                }
                if matches!(self.state, State::Connecting(_)) {
                    self.ring(now);
                }
            }
            AgentEvent::Unreachable(reason) => self.agent_unreachable(&reason),
            AgentEvent::Dtmf(digit) => {
                if let Some(record) = self.record.as_mut() {
                    record.event("dtmf", serde_json::json!({"digit": digit.to_string()}));
                }
            }
            AgentEvent::Cleared { marks } => {
                if let Some(record) = self.record.as_mut() {
                    record.event("clear", serde_json::json!({"marks": marks}));
                }
            }
        }
    }

    /// How the call's recording ended (the driver finishes it once the media ended, the call
    /// over or not): the record says so, in one more write.
    pub fn handle_recording(&mut self, _now: Instant, outcome: Result<Recorded, RecordingFailure>) {
        let Some(record) = self.record.as_mut() else {
            return;
        };
        match &outcome {
            Ok(recorded) => record.recording_ready(recorded),
            Err(failure) => record.recording_failed(failure),
        }
        self.write();
    }

    /// The agent could not be reached before the call was answered: 480 with the cause
    /// of an absent subscriber, and the record says why.
    fn agent_unreachable(&mut self, reason: &str) {
        if !matches!(self.state, State::Connecting(_) | State::Ringing(_)) {
            return;
        }
        let refusal = Refusal::new(480, "Temporarily Unavailable", 20, "Subscriber absent");
        self.refuse(&refusal);
        if let Some(record) = self.record.as_mut() {
            record.event("agent_unreachable", serde_json::json!({"reason": reason}));
            record.fail(
                refusal.status,
                Some(refusal.cause),
                HangupCause::AgentUnreachable,
                reason,
            );
        }
        self.write();
        self.finish();
    }

    /// The agent (or the caller, through its stream) asked to end the call: a BYE when it is
    /// up; an unanswered call is refused as if the agent could not be reached.
    pub fn handle_hangup(&mut self, _now: Instant, why: &str) {
        match self.state {
            State::Up => {
                self.send_bye();
                self.end(HangupCause::AgentHangup, why);
            }
            State::Connecting(_) | State::Ringing(_) => self.agent_unreachable(why),
            // The 200 is on its way: the call ends as soon as it is up.
            State::Committing | State::AwaitingAck => {
                self.media_gone.get_or_insert(MediaEnd::AgentHangup);
            }
            State::Routing | State::Done => {}
        }
    }

    /// The outcome of [`Output::WriteDurably`].
    pub fn handle_committed(&mut self, now: Instant, committed: bool) {
        if self.state != State::Committing {
            return;
        }
        if !committed {
            return self.refuse_recorded(congestion("call_record"));
        }
        if let Some(record) = self.record.as_mut() {
            record.committed();
        }
        let mut headers: Vec<(&str, String)> = vec![
            ("Contact", self.contact()),
            ("Allow", ALLOW.to_owned()),
            ("Supported", "timer".to_owned()),
        ];
        if let Some(params) = &self.timer_params {
            headers.push(("Session-Expires", params.session_expires_header()));
            if let Some(require) = params.require_header() {
                headers.push(("Require", require.to_owned()));
            }
        }
        self.send_response(200, "OK", &headers, Some(self.sdp.clone()));
        let mut dialog = self.new_dialog(self.negotiated.is_some());
        dialog.handle_final_sent(200);
        self.dialog = Some(dialog);
        self.state = State::AwaitingAck;
        while let Some(event) = self.deferred.pop_front() {
            self.handle_event(now, event);
        }
    }

    /// An event from the endpoint.
    pub fn handle_event(&mut self, now: Instant, event: CallEvent<P>) {
        match self.state {
            State::Routing | State::Done => {}
            State::Connecting(_) | State::Ringing(_) => match event {
                CallEvent::Cancel => self.cancelled(),
                // A request inside the early dialog, before our final response: the caller
                // should wait or CANCEL, so it is refused (the pending INVITE stays).
                CallEvent::Request { key, request, .. } => {
                    self.respond(&key, &request, 491, "Request Pending", &[], None)
                }
                CallEvent::Ack { .. }
                | CallEvent::AckTimeout
                | CallEvent::Response { .. }
                | CallEvent::Timeout { .. }
                | CallEvent::TransportError { .. } => {}
            },
            State::Committing => self.deferred.push_back(event),
            State::AwaitingAck => self.awaiting_ack(now, event),
            State::Up => match event {
                CallEvent::Request { key, request, .. } => {
                    if self.in_dialog(now, key, request) {
                        self.end(HangupCause::CallerBye, "caller hung up");
                    }
                }
                CallEvent::Ack { request } => {
                    let cseq = request.headers().cseq().map(|c| c.seq).unwrap_or(0);
                    if let Some(dialog) = self.dialog.as_mut() {
                        let _ = dialog.handle_ack(cseq, !request.body().is_empty());
                    }
                }
                CallEvent::AckTimeout => {
                    if let Some(dialog) = self.dialog.as_mut() {
                        dialog.handle_ack_timeout();
                    }
                }
                // Only a BYE of ours can be answered, and the call ended when it sent it.
                CallEvent::Cancel
                | CallEvent::Response { .. }
                | CallEvent::Timeout { .. }
                | CallEvent::TransportError { .. } => {}
            },
        }
    }

    /// The endpoint let go of the call (its mailbox closed): whatever state it is in, it
    /// ends the way a lost peer ends it.
    pub fn handle_lost(&mut self, now: Instant) {
        match self.state {
            State::Connecting(_) | State::Ringing(_) => self.cancelled(),
            State::AwaitingAck => self.awaiting_ack(now, CallEvent::AckTimeout),
            State::Up => self.end(HangupCause::Error, "the call lost its mailbox"),
            State::Routing | State::Committing | State::Done => {}
        }
    }

    /// The media leg ended by itself.
    pub fn handle_media_end(&mut self, _now: Instant, end: MediaEnd) {
        match self.state {
            State::Up => {}
            State::Connecting(_) | State::Ringing(_) => {
                self.media_started = false;
                let reason = match end {
                    MediaEnd::AgentUnreachable(reason) => reason,
                    MediaEnd::AgentHangup => "the agent closed its stream".to_owned(),
                    MediaEnd::AgentDisconnected => "the agent's stream was lost".to_owned(),
                    MediaEnd::Timeout | MediaEnd::Failed => "the media leg failed".to_owned(),
                };
                return self.agent_unreachable(&reason);
            }
            State::Committing | State::AwaitingAck => {
                self.media_started = false;
                self.media_gone.get_or_insert(end);
                return;
            }
            State::Routing | State::Done => return,
        }
        self.media_started = false;
        self.send_bye();
        self.media_ended(end);
    }

    /// Ends an answered call whose media ended by itself (its BYE is sent).
    fn media_ended(&mut self, end: MediaEnd) {
        match end {
            MediaEnd::Timeout => self.end(HangupCause::Timeout, "no RTP from the caller"),
            MediaEnd::Failed => self.end(HangupCause::Error, "the media leg failed"),
            MediaEnd::AgentHangup => self.end(HangupCause::AgentHangup, "the agent hung up"),
            MediaEnd::AgentDisconnected => self.end(
                HangupCause::AgentDisconnected,
                "the agent's stream was lost mid-call",
            ),
            MediaEnd::AgentUnreachable(reason) => self.end(HangupCause::AgentDisconnected, &reason),
        }
    }

    /// Runs what is due at `now`; early calls are no-ops.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Connecting(at) if now >= at => {
                self.agent_unreachable("the agent's stream did not open in time");
            }
            State::Ringing(at) if now >= at => self.commit(),
            State::Up => {
                if self.hangup_at.is_some_and(|at| now >= at) {
                    self.send_bye();
                    return self.end(HangupCause::ServerBye, "maximum call duration");
                }
                let expired = self
                    .timer
                    .as_mut()
                    .and_then(|timer| timer.handle_timeout(now));
                if expired == Some(Expired::Session) {
                    self.send_bye();
                    self.end(HangupCause::Timeout, "session timer expired");
                }
            }
            _ => {}
        }
    }

    fn cancelled(&mut self) {
        self.send_response(487, "Request Terminated", &[], None);
        if let Some(record) = self.record.as_mut() {
            record.fail(487, None, HangupCause::Cancel, "cancelled by the caller");
        }
        self.write();
        self.finish();
    }

    /// Ringing is over: the answered record is committed before the 200 leaves.
    fn commit(&mut self) {
        let Some(record) = self.record.as_mut() else {
            return;
        };
        if let Some(n) = &self.negotiated {
            record.codec(n.codec.encoding_name());
        }
        record.answered();
        self.outputs
            .push_back(Output::WriteDurably(record.take_write()));
        self.state = State::Committing;
    }

    fn awaiting_ack(&mut self, now: Instant, event: CallEvent<P>) {
        match event {
            CallEvent::Ack { request } => {
                let Some(dialog) = self.dialog.as_mut() else {
                    return;
                };
                let cseq = request.headers().cseq().map(|c| c.seq).unwrap_or(0);
                let negotiated = match dialog.handle_ack(cseq, !request.body().is_empty()) {
                    AckOutcome::Stray => return,
                    AckOutcome::AnswerMissing => {
                        if let Some(record) = self.record.as_mut() {
                            record.event("ack_without_answer", serde_json::json!({}));
                        }
                        None
                    }
                    AckOutcome::Accepted => match self.negotiated.take() {
                        Some(n) => Some(n),
                        None => {
                            let answer = SessionDescription::parse(request.body()).ok();
                            let session = self.session.as_mut();
                            answer
                                .zip(session)
                                .and_then(|(a, s)| s.accept_answer(&a).ok())
                        }
                    },
                };
                match negotiated {
                    Some(negotiated) => self.up(now, negotiated),
                    None => {
                        self.send_bye();
                        self.end_failed(HangupCause::Error, "no usable SDP answer in the ACK");
                    }
                }
            }
            CallEvent::AckTimeout => {
                if let Some(dialog) = self.dialog.as_mut() {
                    dialog.handle_ack_timeout();
                }
                if let Some(record) = self.record.as_mut() {
                    record.event("ack_timeout", serde_json::json!({}));
                }
                self.send_bye();
                self.end_failed(HangupCause::Timeout, "no ACK for the 200 OK");
            }
            CallEvent::Cancel
            | CallEvent::Response { .. }
            | CallEvent::Timeout { .. }
            | CallEvent::TransportError { .. } => {}
            CallEvent::Request { key, request, .. } => {
                if request.method() == Method::Bye {
                    self.respond(&key, &request, 200, "OK", &[], None);
                    if let Some(dialog) = self.dialog.as_mut() {
                        dialog.terminate();
                    }
                    return self.end(HangupCause::CallerBye, "caller hung up");
                }
                self.respond(&key, &request, 491, "Request Pending", &[], None);
            }
        }
    }

    /// The ACK came: the call is up and its media starts.
    fn up(&mut self, now: Instant, negotiated: Negotiated) {
        if let Some(record) = self.record.as_mut()
            && record.codec_is_unset()
        {
            record.codec(negotiated.codec.encoding_name());
        }
        // A stream's media runs since it connected; echo starts now.
        if matches!(self.media, CallMedia::Echo) {
            let config = self.media_config(&negotiated);
            self.outputs.push_back(Output::StartMedia(config));
            self.media_started = true;
        }
        self.timer = self.timer_params.map(|p| SessionTimer::new(now, p));
        let max = self.settings.max_call_duration;
        self.hangup_at = (!max.is_zero()).then(|| now + max);
        self.state = State::Up;
        if let Some(end) = self.media_gone.take() {
            self.send_bye();
            self.media_ended(end);
        }
    }

    fn media_config(&self, negotiated: &Negotiated) -> MediaConfig {
        MediaConfig {
            remote: negotiated.remote_rtp,
            audio_pt: Pt::new(negotiated.payload_type).unwrap_or(Pt::PCMU),
            event_pt: negotiated.telephone_event_pt.and_then(Pt::new),
            media_timeout: self.settings.media_timeout,
        }
    }

    /// Serves one request inside the dialog; returns true when it ends the call (BYE).
    fn in_dialog(&mut self, now: Instant, key: TransactionKey, request: Request) -> bool {
        let Some(dialog) = self.dialog.as_mut() else {
            return false;
        };
        let method = request.method();
        let cseq = request.headers().cseq().map(|c| c.seq).unwrap_or(0);
        if let Err(e) = dialog.check_remote_cseq(cseq, method.as_str()) {
            self.refuse_in_dialog(&key, &request, &e);
            return false;
        }
        match method {
            Method::Bye => {
                self.respond(&key, &request, 200, "OK", &[], None);
                if let Some(dialog) = self.dialog.as_mut() {
                    dialog.terminate();
                }
                true
            }
            Method::Invite | Method::Update => {
                let has_offer = !request.body().is_empty();
                let checked = if method == Method::Invite {
                    dialog.handle_reinvite(cseq, has_offer)
                } else {
                    dialog.handle_update(has_offer)
                };
                if let Err(e) = checked {
                    self.refuse_in_dialog(&key, &request, &e);
                    return false;
                }
                if method == Method::Invite {
                    self.command(Command::SetInvite {
                        call: self.key.clone(),
                        key: key.clone(),
                    });
                }
                let body = if has_offer {
                    let answer = SessionDescription::parse(request.body())
                        .ok()
                        .zip(self.session.as_mut())
                        .and_then(|(offer, s)| s.answer(&offer, &DEFAULT_CODECS).ok());
                    match answer {
                        Some((_, sdp)) => Bytes::from(sdp),
                        None => {
                            self.respond(
                                &key,
                                &request,
                                488,
                                "Not Acceptable Here",
                                &[("Reason", q850(88, "Incompatible destination"))],
                                None,
                            );
                            self.final_sent(method, 488);
                            return false;
                        }
                    }
                } else {
                    self.sdp.clone()
                };
                self.sdp = body.clone();
                if let Some(timer) = self.timer.as_mut() {
                    timer.handle_refresh(now);
                }
                let mut headers = vec![("Contact", self.contact())];
                if let Some(timer) = &self.timer {
                    headers.push(("Session-Expires", timer.params().session_expires_header()));
                }
                self.respond(&key, &request, 200, "OK", &headers, Some(body));
                self.final_sent(method, 200);
                false
            }
            Method::Info if matches!(self.media, CallMedia::Stream(_)) => {
                let content_type = request.headers().get("Content-Type").unwrap_or_default();
                match dtmf::parse_info(content_type, request.body()) {
                    Ok(press) => {
                        self.respond(&key, &request, 200, "OK", &[], None);
                        self.outputs
                            .push_back(Output::SendDtmf(press.digit.as_char()));
                    }
                    // Another package's INFO, or none: nothing for the agent.
                    Err(dtmf::DtmfError::UnsupportedContentType(_)) => {
                        self.respond(&key, &request, 200, "OK", &[], None);
                    }
                    Err(e) => {
                        let status = e.status();
                        let reason = if status == 415 {
                            "Unsupported Media Type"
                        } else {
                            "Bad Request"
                        };
                        self.respond(&key, &request, status, reason, &[], None);
                    }
                }
                false
            }
            _ => {
                self.respond(&key, &request, 200, "OK", &[], None);
                false
            }
        }
    }

    fn final_sent(&mut self, method: Method, status: u16) {
        if let Some(dialog) = self.dialog.as_mut() {
            if method == Method::Invite {
                dialog.handle_final_sent(status);
            } else {
                dialog.handle_update_final_sent();
            }
        }
    }

    /// Refuses an in-dialog request the dialog's rules do not allow (§12.2.2, §14.2),
    /// with the Retry-After those rules ask for.
    fn refuse_in_dialog(&mut self, key: &TransactionKey, request: &Request, e: &DialogError) {
        let retry = e
            .retry_after(rand::rng().random_range(0..=10))
            .map(|s| s.to_string());
        let headers: Vec<(&str, String)> = retry.into_iter().map(|r| ("Retry-After", r)).collect();
        let reason = match e.status() {
            491 => "Request Pending",
            481 => "Call/Transaction Does Not Exist",
            _ => "Server Internal Error",
        };
        self.respond(key, request, e.status(), reason, &headers, None);
    }

    fn session_timer(&self) -> Result<Option<SessionTimerParams>, Refusal> {
        let headers = self.invite.headers();
        let se = headers
            .get("Session-Expires")
            .map(SessionExpires::parse)
            .transpose();
        let min_se = headers.get("Min-SE").map(parse_min_se).transpose();
        let supports = headers
            .supported()
            .filter_map(Result::ok)
            .any(|t| t.eq_ignore_ascii_case("timer"));
        let policy = SessionTimerPolicy::default();
        let (Ok(se), Ok(min_se)) = (se, min_se) else {
            return Err(Refusal::new(
                400,
                "Bad Session-Expires",
                100,
                "Invalid message",
            ));
        };
        policy.negotiate(se, min_se, supports).map_err(|e| {
            let mut refusal = Refusal::new(
                e.status(),
                "Session Interval Too Small",
                100,
                "Invalid message",
            );
            refusal.extra.push(("Min-SE", policy.min_se().to_string()));
            refusal
        })
    }

    fn new_dialog(&self, has_offer: bool) -> Dialog {
        let h = self.invite.headers();
        let from = h.from().ok();
        let to = h.to().ok();
        let contact = h
            .contacts()
            .next()
            .and_then(Result::ok)
            .map(|c| c.uri().as_str().to_owned());
        let remote_uri = from
            .map(|f| f.uri().as_str().to_owned())
            .unwrap_or_default();
        let record_route: Vec<&str> = h
            .record_routes()
            .filter_map(Result::ok)
            .map(|r| r.as_str())
            .collect();
        Dialog::new_uas(&UasDialogParams {
            call_id: h.call_id().unwrap_or_default(),
            local_tag: &self.local_tag,
            remote_tag: from.and_then(|f| f.tag()).unwrap_or_default(),
            local_uri: to.map(|t| t.uri().as_str()).unwrap_or_default(),
            remote_uri: &remote_uri,
            remote_target: contact.as_deref().unwrap_or(&remote_uri),
            record_route: &record_route,
            cseq: h.cseq().map(|c| c.seq).unwrap_or(0),
            has_offer,
        })
    }

    fn contact(&self) -> String {
        let s = &self.settings;
        let transport = self.peer.transport();
        let addr = match transport {
            Transport::Udp => SocketAddr::new(s.public_ip, s.udp_port),
            Transport::Tls => SocketAddr::new(s.public_ip, s.tls_port),
            Transport::Tcp | Transport::Ws | Transport::Wss => {
                SocketAddr::new(s.public_ip, s.tcp_port)
            }
        };
        match transport {
            Transport::Udp => format!("<sip:vca@{addr}>"),
            Transport::Tcp => format!("<sip:vca@{addr};transport=tcp>"),
            // §12.1.1: a dialog begun with a sips: Request-URI gets a sips: Contact; one begun
            // with sip: over TLS keeps sip:, with the transport named.
            Transport::Tls if self.invite.uri().scheme() == Scheme::Sips => {
                format!("<sips:vca@{addr}>")
            }
            Transport::Tls => format!("<sip:vca@{addr};transport=tls>"),
            // RFC 7118 §5.2: `ws` names both WebSocket transports in a URI.
            Transport::Ws | Transport::Wss => format!("<sip:vca@{addr};transport=ws>"),
        }
    }

    /// Refuses the INVITE with a final response that says why (RFC 6432 Reason).
    fn refuse(&mut self, refusal: &Refusal) {
        let reason = q850(refusal.cause, refusal.text);
        let mut headers: Vec<(&str, String)> = vec![("Reason", reason)];
        if refusal.status == 503 {
            headers.push(("Retry-After", "5".to_owned()));
        }
        for (name, value) in &refusal.extra {
            headers.push((name, value.clone()));
        }
        self.send_response(refusal.status, refusal.reason, &headers, None);
    }

    /// Refuses the INVITE and records the refusal; the call is over.
    fn refuse_recorded(&mut self, refusal: Refusal) {
        self.refuse(&refusal);
        if let Some(record) = self.record.as_mut() {
            record.fail(
                refusal.status,
                Some(refusal.cause),
                HangupCause::Rejected,
                refusal.text,
            );
        }
        self.write();
        self.finish();
    }

    /// An answered call that ended.
    fn end(&mut self, cause: HangupCause, why: &str) {
        if let Some(record) = self.record.as_mut() {
            record.end(cause, why);
        }
        self.write();
        self.finish();
    }

    /// An answered call that could not go on (no ACK, no answer to our offer).
    fn end_failed(&mut self, cause: HangupCause, why: &str) {
        if let Some(record) = self.record.as_mut() {
            record.end_failed(cause, why);
        }
        self.write();
        self.finish();
    }

    fn finish(&mut self) {
        if self.media_started {
            self.media_started = false;
            self.outputs.push_back(Output::StopMedia);
        }
        self.admitted = None;
        self.state = State::Done;
        self.outputs.push_back(Output::Done);
    }

    fn write(&mut self) {
        if let Some(record) = self.record.as_mut() {
            self.outputs.push_back(Output::Write(record.take_write()));
        }
    }

    fn command(&mut self, command: Command<P>) {
        self.outputs.push_back(Output::Command(command));
    }

    /// A response to the INVITE.
    fn send_response(
        &mut self,
        status: u16,
        reason: &str,
        headers: &[(&str, String)],
        sdp: Option<Bytes>,
    ) {
        let key = self.invite_key.clone();
        let invite = self.invite.clone();
        self.respond(&key, &invite, status, reason, headers, sdp);
    }

    fn respond(
        &mut self,
        key: &TransactionKey,
        request: &Request,
        status: u16,
        reason: &str,
        headers: &[(&str, String)],
        sdp: Option<Bytes>,
    ) {
        let addr = self.peer.addr();
        let mut builder = Response::to_request(request, status, reason)
            .to_tag(&self.local_tag)
            .received(addr.ip(), addr.port());
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        if let Some(sdp) = sdp {
            builder = builder.body("application/sdp", sdp);
        }
        let response = builder.build();
        self.command(Command::Respond {
            key: key.clone(),
            status,
            response,
        });
    }

    /// Ends the dialog from our side (§15.1.1).
    fn send_bye(&mut self) {
        let Some(dialog) = self.dialog.as_mut() else {
            return;
        };
        let h = self.invite.headers();
        let (Ok(from), Ok(to), Ok(call_id)) = (h.from(), h.to(), h.call_id()) else {
            return;
        };
        let s = &self.settings;
        let (transport, port) = match self.peer.transport() {
            Transport::Udp => ("UDP", s.udp_port),
            Transport::Tcp => ("TCP", s.tcp_port),
            Transport::Tls => ("TLS", s.tls_port),
            Transport::Ws => ("WS", s.tcp_port),
            Transport::Wss => ("WSS", s.tcp_port),
        };
        let sent_by = SocketAddr::new(s.public_ip, port).to_string();
        let branch = format!("z9hG4bK{}", new_tag());
        let cseq = dialog.next_local_cseq();
        let target = dialog.remote_target().to_owned();
        let routes = dialog.route_set().to_vec();
        let mut builder = RequestBuilder::new(
            Method::Bye,
            &target,
            (transport, &sent_by, &branch),
            (to.as_str(), &self.local_tag),
            (from.as_str(), None),
            call_id,
            cseq,
        );
        for route in &routes {
            builder = builder.route(route);
        }
        let request = builder.build();
        dialog.terminate();
        let key = TransactionKey::client(Bytes::from(branch), transaction::Method::Bye);
        let peer = self.peer.clone();
        let call = self.key.clone();
        self.command(Command::Request {
            call,
            key,
            peer,
            request,
        });
    }
}

/// How long past the stream's own connect timeout the call waits for the driver's word.
const AGENT_CONNECT_GRACE: Duration = Duration::from_millis(500);

/// A node-wide shortage (`what` names it in metrics): 503, so that the carrier tries
/// another node.
fn congestion(what: &'static str) -> Refusal {
    metrics::counter!("vca_calls_congestion_total", "what" => what).increment(1);
    Refusal::new(
        503,
        "Service Unavailable",
        42,
        "Switching equipment congestion",
    )
}

fn q850(cause: u16, text: &str) -> String {
    format!("Q.850;cause={cause};text=\"{text}\"")
}

/// The dialed number: the Request-URI's user part (sip:, sips:) or number (tel:), else the
/// To URI's, else P-Called-Party-ID's.
fn dialed_number(request: &Request) -> Option<String> {
    fn of_uri(uri: Uri<'_>) -> Option<String> {
        let user = match uri.scheme() {
            Scheme::Tel => uri.number(),
            _ => uri.user().map(|u| u.split(';').next().unwrap_or(u)),
        }?;
        let looks_like_number = user.bytes().any(|b| b.is_ascii_digit())
            && user
                .bytes()
                .all(|b| b.is_ascii_digit() || b"+-.() ".contains(&b));
        looks_like_number.then(|| user.to_owned())
    }
    let h = request.headers();
    of_uri(request.uri())
        .or_else(|| h.to().ok().and_then(|t| of_uri(t.uri())))
        .or_else(|| {
            h.p_called_party_id()
                .ok()
                .flatten()
                .and_then(|p| of_uri(p.uri()))
        })
}

/// What the agent's `start` says of the call in its custom parameters: the call's ids, its
/// numbers, and the profile's own `stream_parameters`, which win on a clash of names.
pub(super) fn agent_parameters(
    call: &crate::store::model::Call,
    target: &StreamTarget,
) -> std::collections::BTreeMap<String, String> {
    let mut parameters = std::collections::BTreeMap::new();
    parameters.insert("tenant_id".to_owned(), call.tenant_id.to_string());
    parameters.insert("call_id".to_owned(), call.id.to_string());
    if let Some(id) = call.phone_number_id {
        parameters.insert("phone_number_id".to_owned(), id.to_string());
    }
    parameters.insert("ai_profile_id".to_owned(), target.ai_profile_id.to_string());
    parameters.insert("from".to_owned(), call.caller.clone());
    parameters.insert("to".to_owned(), call.called.clone());
    parameters.insert("called_raw".to_owned(), call.called_raw.clone());
    for (name, value) in &target.parameters {
        parameters.insert(name.clone(), value.clone());
    }
    parameters
}
