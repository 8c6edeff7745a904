//! One outbound call as a sans-IO machine: the UAC transaction user (RFC 3261 §8.1, §9.1,
//! §13.2, §15, §22.2; RFC 6432 Reason).
//!
//! The machine places one call and does none of the IO: it asks for a record write, RTP
//! ports, media, and gives the endpoint commands (the INVITE, its CANCEL, the ACK of the
//! 2xx, the BYE). Its driver ([`super::Call`]) carries those out and feeds back what
//! happened, exactly as for [`super::uas::Uas`], with which it shares [`Output`].
//!
//! ```text
//!              start(now)                 poll_output() -> Output
//!   driver ─ handle_committed(now, ..) ─▶ Uac ───────────────────────▶ driver
//!            handle_ports(now, ..)        poll_timeout() -> Option<Instant>
//!            handle_event(now, ..)
//!            handle_media_end(now, ..)
//!            handle_timeout(now), hang_up(now)
//! ```
//!
//! The record follows the call-outcome table of the design: `queued` (committed before
//! anything is sent, so that a crash leaves a record to close) -> `initiated` (INVITE sent)
//! -> `ringing` (180-183) -> `answered` (2xx: ACK sent, media started on the SDP answer)
//! -> `ended` (BYE either way), or `failed`:
//!
//! | what happened                                      | `hangup_cause` | `sip_status` |
//! |----------------------------------------------------|----------------|--------------|
//! | 486 or 600                                         | `busy`         | it           |
//! | ring timeout: CANCEL, then 487                     | `no_answer`    | 487          |
//! | 480 or 408 without a capacity cause in its Reason  | `no_answer`    | it           |
//! | hung up by our side before the answer (487)        | `cancel`       | 487          |
//! | 401/407 not answerable, any other 300-699          | `rejected`     | it           |
//! | Timer B, transport error, no ports, no record      | `error`        | none         |
//!
//! `q850_cause` is the cause of the far end's `Reason: Q.850;cause=N`. An answered call
//! ends `server_bye` when vca-sip sends the BYE (maximum duration, our hang-up) and
//! `caller_bye` when the far end does: the cause names who hung up, vca-sip or its peer.
//!
//! ```text
//!   Committing ──committed──▶ Ports ──ports──▶ Inviting ──2xx──▶ Up ──BYE either way──▶ Done
//!       │ failed                │ none            │ 300-699, Timer B, transport error
//!       ▼                       ▼                 ▼
//!      Done                    Done              Done
//! ```
//!
//! A 401 or 407 is answered once with the trunk's credentials, by a new INVITE in a new
//! transaction (same Call-ID and From-tag, CSeq one higher, §22.2); a second challenge
//! for a nonce already answered, or a challenge for a realm other than the trunk's, fails
//! the call. A hang-up before any provisional waits for one before sending the CANCEL
//! (§9.1), and a CANCEL whose INVITE gets no final within 64*T1 is given up (§9.1).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng;

use super::record::{Outbound, Record};
use super::uas::{CallSettings, MediaEnd, Output};
use crate::clock::WallClock;
use crate::ids::{CallId, TenantId, TrunkId};
use crate::media::rtp::Pt;
use crate::media::session::MediaConfig;
use crate::sip::auth::{AuthHeader, Challenge, ChallengeKind, ClientAuthError, DigestClient};
use crate::sip::message::{Method, Request, Response};
use crate::sip::sdp::{
    DEFAULT_CODECS, Direction as SdpDirection, LocalSession, SessionDescription,
};
use crate::sip::transaction::{TimerConfig, TransactionKey};
use crate::sip::triage::Transport;
use crate::sip::uac::{UacInvite, UacInviteParams, UacOutput};
use crate::store::model::HangupCause;
use crate::ua::{CallEvent, CallKey, Command, Link, new_tag, outbound_call_key};

/// Digest credentials of the trunk a call goes out on (§22.2).
#[derive(Clone)]
pub struct TrunkCredentials {
    pub username: String,
    pub password: String,
    /// The realm the trunk is configured with; a challenge for another realm is refused
    /// rather than answered, so that the password is never offered to a stranger. `None`
    /// answers any realm.
    pub realm: Option<String>,
}

impl std::fmt::Debug for TrunkCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrunkCredentials")
            .field("username", &self.username)
            .field("realm", &self.realm)
            .finish_non_exhaustive()
    }
}

/// Where an answered outbound call's audio goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaTarget {
    /// Back to the far end, by the echo leg that answers inbound calls today.
    Echo,
}

/// What one outbound call is placed with.
#[derive(Debug, Clone)]
pub struct OutboundCall {
    /// The tenant the call is placed for: its record belongs to it.
    pub tenant_id: TenantId,
    /// The trunk the call goes out on, if one is configured.
    pub trunk_id: Option<TrunkId>,
    /// The Request-URI, e.g. `sip:+15551234567@carrier.example`; also the To URI.
    pub request_uri: String,
    /// The number called in E.164, for the record.
    pub called: String,
    /// The calling number or user, sent as the user part of From.
    pub from_user: String,
    pub credentials: Option<TrunkCredentials>,
    /// How long the far end may ring before the call is cancelled as unanswered.
    pub ring_timeout: Duration,
    /// How long an answered call may last before vca-sip ends it with a BYE (zero: no
    /// limit).
    pub max_duration: Duration,
    pub media: MediaTarget,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The `queued` record is being committed.
    Committing,
    /// Waiting for RTP ports.
    Ports,
    /// The INVITE is out; no 2xx yet.
    Inviting,
    /// Answered, media running.
    Up,
    Done,
}

/// Why the call is being given up before an answer, once the CANCEL is out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HangUp {
    cause: HangupCause,
    /// The CANCEL went out at this instant; `None` while it waits for a provisional.
    cancelled_at: Option<Instant>,
}

/// One outbound call; `P` is the way to the far end.
pub struct Uac<P> {
    settings: CallSettings,
    call: OutboundCall,
    id: CallId,
    peer: P,
    call_id: String,
    local_tag: String,
    key: CallKey,
    cseq: u32,
    state: State,
    record: Record,
    session: Option<LocalSession>,
    offer: Bytes,
    invite: Option<UacInvite>,
    digest: Option<DigestClient>,
    /// A provisional of 180-183 was recorded.
    ringing: bool,
    ring_deadline: Option<Instant>,
    hang_up: Option<HangUp>,
    hangup_at: Option<Instant>,
    media_started: bool,
    /// The Q.850 cause of the last response to the INVITE.
    last_q850: Option<u16>,
    /// 64*T1: how long a CANCEL waits for the INVITE's final.
    cancel_wait: Duration,
    outputs: VecDeque<Output<P>>,
}

impl<P: Link + std::fmt::Debug> Uac<P> {
    /// A call to `peer` whose record will have id `id`. Nothing happens until
    /// [`Uac::start`].
    pub fn new(
        settings: CallSettings,
        clock: Arc<dyn WallClock>,
        id: CallId,
        call: OutboundCall,
        peer: P,
    ) -> Self {
        let call_id = format!("{}@{}", new_tag(), settings.public_ip);
        let local_tag = new_tag();
        let key = outbound_call_key(&call_id, &local_tag);
        let caller = call.from_user.clone();
        let record = Record::outbound(
            clock.clone(),
            id,
            Outbound {
                tenant_id: call.tenant_id,
                trunk_id: call.trunk_id,
                caller: &caller,
                called: &call.called,
                sip_call_id: &call_id,
                transport: peer.transport(),
                remote: peer.addr(),
            },
        );
        let digest = call
            .credentials
            .as_ref()
            .map(|c| DigestClient::new(c.username.clone(), c.password.clone()));
        Uac {
            settings,
            call,
            id,
            peer,
            call_id,
            local_tag,
            key,
            cseq: 1,
            state: State::Committing,
            record,
            session: None,
            offer: Bytes::new(),
            invite: None,
            digest,
            ringing: false,
            ring_deadline: None,
            hang_up: None,
            hangup_at: None,
            media_started: false,
            last_q850: None,
            cancel_wait: TimerConfig::default().t1x64(),
            outputs: VecDeque::new(),
        }
    }

    /// The key the endpoint knows the call by ([`outbound_call_key`]).
    pub fn key(&self) -> &CallKey {
        &self.key
    }

    /// The id of the call's record.
    pub fn id(&self) -> CallId {
        self.id
    }

    /// The Call-ID of the call's INVITE.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// The next thing to do. Call after every input until it returns `None`.
    pub fn poll_output(&mut self) -> Option<Output<P>> {
        self.outputs.pop_front()
    }

    /// When [`Uac::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Inviting => match self.hang_up {
                Some(HangUp {
                    cancelled_at: Some(at),
                    ..
                }) => Some(at + self.cancel_wait),
                Some(_) => None,
                None => self.ring_deadline,
            },
            State::Up => self.hangup_at,
            State::Committing | State::Ports | State::Done => None,
        }
    }

    /// Writes the `queued` record durably; the call goes on in
    /// [`Uac::handle_committed`].
    pub fn start(&mut self, _now: Instant) {
        self.record
            .event("queued", serde_json::json!({"called": self.call.called}));
        self.outputs
            .push_back(Output::WriteDurably(self.record.take_write()));
    }

    /// The outcome of [`Output::WriteDurably`].
    pub fn handle_committed(&mut self, _now: Instant, committed: bool) {
        if self.state != State::Committing {
            return;
        }
        if !committed {
            return self.fail(
                None,
                None,
                HangupCause::Error,
                "the call record was not stored",
            );
        }
        self.record.committed();
        self.state = State::Ports;
        self.outputs.push_back(Output::AllocatePorts);
    }

    /// The outcome of [`Output::AllocatePorts`]: the RTP port of the pair, or none left.
    pub fn handle_ports(&mut self, now: Instant, port: Option<u16>) {
        if self.state != State::Ports {
            return;
        }
        if let Some(hang_up) = self.hang_up {
            return self.fail(None, None, hang_up.cause, "hung up before the INVITE");
        }
        let Some(port) = port else {
            return self.fail(None, None, HangupCause::Error, "no RTP ports");
        };
        let mut session = LocalSession::new(rand::rng().random(), self.settings.public_ip, port);
        self.offer = Bytes::from(session.offer(&DEFAULT_CODECS, SdpDirection::SendRecv));
        self.session = Some(session);
        if !self.send_invite(&[]) {
            return self.fail(None, None, HangupCause::Error, "the INVITE cannot be built");
        }
        self.record.initiated();
        self.write();
        self.ring_deadline =
            (!self.call.ring_timeout.is_zero()).then(|| now + self.call.ring_timeout);
        self.state = State::Inviting;
    }

    /// An event from the endpoint.
    pub fn handle_event(&mut self, now: Instant, event: CallEvent<P>) {
        match event {
            CallEvent::Response { key, response } => {
                if self.state == State::Inviting && self.is_invite(&key) {
                    self.on_invite_response(now, &response);
                } else if self.state == State::Up && self.is_invite(&key) {
                    // A retransmitted 2xx: the ACK was lost, the UAC core sends it again.
                    if let Some(invite) = self.invite.as_mut() {
                        let _ = invite.handle_response(&response);
                    }
                    self.drain_invite(now);
                }
            }
            CallEvent::Timeout { key } if self.state == State::Inviting && self.is_invite(&key) => {
                self.give_up("no response to the INVITE (Timer B)");
            }
            CallEvent::TransportError { key }
                if self.state == State::Inviting && self.is_invite(&key) =>
            {
                self.give_up("the transport failed for the INVITE");
            }
            CallEvent::Request { key, request, .. } => self.far_request(key, &request),
            // The answers to our BYE or CANCEL (handled above: they change nothing, the call
            // ended when it sent the BYE and waits for the INVITE's final after a CANCEL),
            // their timeouts; ACK and CANCEL are for calls that came in.
            CallEvent::Timeout { .. }
            | CallEvent::TransportError { .. }
            | CallEvent::Cancel
            | CallEvent::Ack { .. }
            | CallEvent::AckTimeout => {}
        }
    }

    /// Our side hangs up: before the answer the INVITE is cancelled (the call fails
    /// `cancel`), once answered the call ends with a BYE (`server_bye`).
    pub fn hang_up(&mut self, now: Instant) {
        self.hang_up_with(now, HangupCause::Cancel);
    }

    /// The endpoint let go of the call (its mailbox closed): it ends as an error.
    pub fn handle_lost(&mut self, _now: Instant) {
        match self.state {
            State::Up => {
                self.send_bye();
                self.end(HangupCause::Error, "the call lost its mailbox");
            }
            State::Committing | State::Ports | State::Inviting => {
                self.fail(None, None, HangupCause::Error, "the call lost its mailbox");
            }
            State::Done => {}
        }
    }

    /// The media leg ended by itself.
    pub fn handle_media_end(&mut self, _now: Instant, end: MediaEnd) {
        if self.state != State::Up {
            return;
        }
        self.media_started = false;
        self.send_bye();
        match end {
            MediaEnd::Timeout => self.end(HangupCause::Timeout, "no RTP from the far end"),
            MediaEnd::Failed => self.end(HangupCause::Error, "the media leg failed"),
            MediaEnd::AgentHangup => self.end(HangupCause::AgentHangup, "the agent hung up"),
            MediaEnd::AgentDisconnected | MediaEnd::AgentUnreachable(_) => self.end(
                HangupCause::AgentDisconnected,
                "the agent's stream was lost mid-call",
            ),
        }
    }

    /// Runs what is due at `now`; early calls are no-ops.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Inviting => match self.hang_up {
                Some(HangUp {
                    cause,
                    cancelled_at: Some(at),
                }) if now >= at + self.cancel_wait => {
                    self.fail(None, None, cause, "no final response after the CANCEL");
                }
                None if self.ring_deadline.is_some_and(|at| now >= at) => {
                    self.hang_up_with(now, HangupCause::NoAnswer);
                }
                _ => {}
            },
            State::Up if self.hangup_at.is_some_and(|at| now >= at) => {
                self.send_bye();
                self.end(HangupCause::ServerBye, "maximum call duration");
            }
            _ => {}
        }
    }

    fn is_invite(&self, key: &TransactionKey) -> bool {
        self.invite.as_ref().is_some_and(|i| i.key() == key)
    }

    fn hang_up_with(&mut self, now: Instant, cause: HangupCause) {
        match self.state {
            State::Committing => self.fail(None, None, cause, "hung up before the INVITE"),
            // The ports are on their way: the call fails when they come.
            State::Ports => {
                self.hang_up.get_or_insert(HangUp {
                    cause,
                    cancelled_at: None,
                });
            }
            State::Inviting if self.hang_up.is_none() => {
                self.hang_up = Some(HangUp {
                    cause,
                    cancelled_at: None,
                });
                self.cancel_if_possible(now);
            }
            State::Up => {
                self.send_bye();
                self.end(HangupCause::ServerBye, "hung up by vca-sip");
            }
            State::Inviting | State::Done => {}
        }
    }

    /// Sends the CANCEL once a provisional has come (§9.1: never before, it could overtake
    /// the INVITE).
    fn cancel_if_possible(&mut self, now: Instant) {
        let Some(hang_up) = self.hang_up.as_mut() else {
            return;
        };
        let Some(invite) = self.invite.as_ref() else {
            return;
        };
        if hang_up.cancelled_at.is_none() && invite.can_cancel() {
            hang_up.cancelled_at = Some(now);
            let key = invite.key().clone();
            self.record.event(
                "cancel",
                serde_json::json!({"hangup_cause": hang_up.cause.as_str()}),
            );
            self.command(Command::Cancel { key });
        }
    }

    /// Builds and sends an INVITE (the first, or one retried with `auth`). False if the
    /// parameters do not make a valid INVITE.
    fn send_invite(&mut self, auth: &[AuthHeader]) -> bool {
        let s = &self.settings;
        let (transport, port) = match self.peer.transport() {
            Transport::Udp => ("UDP", s.udp_port),
            Transport::Tcp => ("TCP", s.tcp_port),
            Transport::Tls => ("TLS", s.tls_port),
            Transport::Ws => ("WS", s.tcp_port),
            Transport::Wss => ("WSS", s.tls_port),
        };
        let sent_by = SocketAddr::new(s.public_ip, port).to_string();
        let branch_prefix = format!("z9hG4bK{}", new_tag());
        let local_uri = format!("<sip:{}@{}>", self.call.from_user, s.public_ip);
        let remote_uri = format!("<{}>", self.call.request_uri);
        let contact = match self.peer.transport() {
            Transport::Udp => format!("<sip:vca@{sent_by}>"),
            Transport::Tcp => format!("<sip:vca@{sent_by};transport=tcp>"),
            Transport::Tls => format!("<sip:vca@{sent_by};transport=tls>"),
            Transport::Ws => format!("<sip:vca@{sent_by};transport=ws>"),
            Transport::Wss => format!("<sip:vca@{sent_by};transport=wss>"),
        };
        let headers: Vec<(&str, &str)> = auth.iter().map(|h| (h.name, h.value.as_str())).collect();
        let built = UacInvite::new(&UacInviteParams {
            request_uri: &self.call.request_uri,
            transport,
            sent_by: &sent_by,
            branch_prefix: &branch_prefix,
            local_uri: &local_uri,
            local_tag: &self.local_tag,
            remote_uri: &remote_uri,
            call_id: &self.call_id,
            cseq: self.cseq,
            contact: &contact,
            routes: &[],
            max_forwards: 70,
            offer: Some(&self.offer),
            reliable_provisionals: false,
            headers: &headers,
        });
        let Ok(invite) = built else {
            return false;
        };
        self.command(Command::Invite {
            call: self.key.clone(),
            key: invite.key().clone(),
            peer: self.peer.clone(),
            invite: Box::new(invite.invite().clone()),
        });
        self.invite = Some(invite);
        true
    }

    fn on_invite_response(&mut self, now: Instant, response: &Response) {
        let status = response.status();
        if matches!(status, 401 | 407) {
            return self.challenged(response);
        }
        self.last_q850 = q850_cause(response);
        if let Some(invite) = self.invite.as_mut()
            && let Err(e) = invite.handle_response(response)
        {
            tracing::debug!(error = %e, status, "a response to the INVITE was not usable");
        }
        self.drain_invite(now);
    }

    /// Carries out what the UAC core asks after a response.
    fn drain_invite(&mut self, now: Instant) {
        let mut established = None;
        while let Some(output) = self.invite.as_mut().and_then(UacInvite::poll_output) {
            match output {
                UacOutput::Provisional { status, .. } => {
                    if (180..=183).contains(&status) && !self.ringing {
                        self.ringing = true;
                        self.record.ringing_received(status);
                        self.write();
                    }
                    self.cancel_if_possible(now);
                }
                UacOutput::SendPrack {
                    branch, request, ..
                } => {
                    let method = Method::Prack;
                    let key = TransactionKey::client(branch, method);
                    self.request(key, request);
                }
                // The INVITE always carries our offer, so no 2xx asks for an answer.
                UacOutput::NeedAnswer { .. } => {}
                UacOutput::SendAck { request, .. } => self.command(Command::Ack {
                    peer: self.peer.clone(),
                    request,
                }),
                UacOutput::Established { response, .. } => established = Some(response),
                UacOutput::SendBye {
                    branch, request, ..
                } => {
                    let key = TransactionKey::client(branch, Method::Bye);
                    self.request(key, request);
                }
                UacOutput::Failed { status } => self.failed(status),
            }
        }
        if let Some(response) = established {
            self.established(now, &response);
        }
    }

    /// The far end answered: media starts on its SDP answer, unless our side hung up in
    /// the meantime (a 2xx that crossed the CANCEL: acknowledged, then ended, §9.1).
    fn established(&mut self, now: Instant, response: &Response) {
        let status = response.status();
        if let Some(hang_up) = self.hang_up {
            self.send_bye();
            return self.fail(
                Some(status),
                None,
                hang_up.cause,
                "answered after the hang-up",
            );
        }
        let negotiated = SessionDescription::parse(response.body())
            .ok()
            .zip(self.session.as_mut())
            .and_then(|(answer, session)| session.accept_answer(&answer).ok());
        let Some(negotiated) = negotiated else {
            self.send_bye();
            return self.fail(
                Some(status),
                None,
                HangupCause::Error,
                "no usable SDP answer in the 2xx",
            );
        };
        self.record.codec(negotiated.codec.encoding_name());
        self.record.answered_received(status);
        self.write();
        let config = MediaConfig {
            remote: negotiated.remote_rtp,
            audio_pt: Pt::new(negotiated.payload_type).unwrap_or(Pt::PCMU),
            event_pt: negotiated.telephone_event_pt.and_then(Pt::new),
            media_timeout: self.settings.media_timeout,
        };
        match self.call.media {
            MediaTarget::Echo => self.outputs.push_back(Output::StartMedia(config)),
        }
        self.media_started = true;
        let max = self.call.max_duration;
        self.hangup_at = (!max.is_zero()).then(|| now + max);
        self.state = State::Up;
    }

    /// A 300-699 final (or the 408 the UAC core reports for Timer B).
    fn failed(&mut self, status: u16) {
        let q850 = self.last_q850;
        let (cause, why) = match (status, self.hang_up) {
            (487, Some(hang_up)) if hang_up.cause == HangupCause::NoAnswer => {
                (HangupCause::NoAnswer, "no answer within the ring timeout")
            }
            (487, Some(hang_up)) => (hang_up.cause, "hung up before the answer"),
            (486 | 600, _) => (HangupCause::Busy, "busy"),
            (480 | 408, _) if !q850.is_some_and(is_capacity_cause) => {
                (HangupCause::NoAnswer, "not answered")
            }
            _ => (HangupCause::Rejected, "refused by the far end"),
        };
        self.fail(Some(status), q850, cause, why);
    }

    /// Timer B or a transport error: no final came. A ring timeout that found nothing to
    /// cancel heard nothing from the far end either: that is an error, not `no_answer`.
    fn give_up(&mut self, why: &str) {
        let cause = match self.hang_up {
            Some(hang_up) if hang_up.cause == HangupCause::Cancel => HangupCause::Cancel,
            _ => HangupCause::Error,
        };
        if let Some(invite) = self.invite.as_mut() {
            invite.handle_timeout();
            // Its only output is the failure being recorded here.
            while invite.poll_output().is_some() {}
        }
        self.fail(None, None, cause, why);
    }

    /// A 401 or 407: answered once with the trunk's credentials, in a new INVITE.
    fn challenged(&mut self, response: &Response) {
        let status = response.status();
        let q850 = q850_cause(response);
        let Some(credentials) = self.call.credentials.clone() else {
            return self.fail(
                Some(status),
                q850,
                HangupCause::Rejected,
                "challenged, and no credentials",
            );
        };
        let kind = if status == 401 {
            ChallengeKind::Www
        } else {
            ChallengeKind::Proxy
        };
        if let Some(realm) = &credentials.realm {
            let realms: Vec<String> = response
                .headers()
                .get_all(kind.challenge_header())
                .filter_map(|v| Challenge::parse(v).ok().flatten())
                .map(|c| c.realm)
                .collect();
            if !realms.iter().any(|r| r == realm) {
                let why =
                    format!("challenged for realm {realms:?}, the trunk's realm is {realm:?}");
                return self.fail(Some(status), q850, HangupCause::Rejected, &why);
            }
        }
        let cnonce = new_tag();
        let uri = self.call.request_uri.clone();
        let answered = match self.digest.as_mut() {
            Some(digest) => digest.answer(response, "INVITE", &uri, &cnonce),
            None => Err(ClientAuthError::NoUsableChallenge),
        };
        let headers = match answered {
            Ok(headers) if !headers.is_empty() => headers,
            Ok(_) | Err(_) => {
                let why = match answered {
                    Err(ClientAuthError::Refused(_)) => "the credentials were refused",
                    _ => "no usable digest challenge",
                };
                return self.fail(Some(status), q850, HangupCause::Rejected, why);
            }
        };
        self.record
            .event("challenged", serde_json::json!({"sip_status": status}));
        self.cseq = self.cseq.wrapping_add(1);
        if !self.send_invite(&headers) {
            self.fail(
                Some(status),
                q850,
                HangupCause::Error,
                "the retried INVITE cannot be built",
            );
        }
    }

    /// A request of the far end inside the dialog.
    fn far_request(&mut self, key: TransactionKey, request: &Request) {
        match request.method() {
            Method::Bye if self.state == State::Up => {
                self.respond(&key, request, 200, "OK");
                self.end(HangupCause::CallerBye, "the far end hung up");
            }
            Method::Bye => self.respond(&key, request, 481, "Call/Transaction Does Not Exist"),
            // A new offer would need a new media session; the session goes on unchanged
            // (§14.2).
            Method::Invite | Method::Update => {
                self.respond(&key, request, 488, "Not Acceptable Here")
            }
            _ => self.respond(&key, request, 200, "OK"),
        }
    }

    fn respond(&mut self, key: &TransactionKey, request: &Request, status: u16, reason: &str) {
        let response = Response::to_request(request, status, reason)
            .to_tag(&self.local_tag)
            .build();
        self.command(Command::Respond {
            key: key.clone(),
            status,
            response,
        });
    }

    /// Ends the dialog from our side (§15.1.1).
    fn send_bye(&mut self) {
        let Some(invite) = self.invite.as_mut() else {
            return;
        };
        let branch = invite.next_branch();
        let Some(dialog) = invite.established_mut() else {
            return;
        };
        let cseq = dialog.next_local_cseq();
        let request = dialog.request(Method::Bye, &branch, cseq).build();
        let key = TransactionKey::client(Bytes::from(branch), Method::Bye);
        self.request(key, request);
    }

    fn request(&mut self, key: TransactionKey, request: Bytes) {
        self.command(Command::Request {
            call: self.key.clone(),
            key,
            peer: self.peer.clone(),
            request,
        });
    }

    /// Never answered.
    fn fail(&mut self, status: Option<u16>, q850: Option<u16>, cause: HangupCause, why: &str) {
        self.record.fail_with(status, q850, cause, why);
        self.write();
        self.finish();
    }

    /// An answered call that ended.
    fn end(&mut self, cause: HangupCause, why: &str) {
        self.record.end(cause, why);
        self.write();
        self.finish();
    }

    fn finish(&mut self) {
        if self.media_started {
            self.media_started = false;
            self.outputs.push_back(Output::StopMedia);
        }
        self.state = State::Done;
        self.outputs.push_back(Output::Done);
    }

    fn write(&mut self) {
        self.outputs
            .push_back(Output::Write(self.record.take_write()));
    }

    fn command(&mut self, command: Command<P>) {
        self.outputs.push_back(Output::Command(command));
    }
}

/// Q.850 causes that say the network had no room, not that nobody answered: a 480 or 408
/// with one of them is a refusal (`rejected`), not `no_answer`. 34 no circuit/channel
/// available, 38 network out of order, 41 temporary failure, 42 switching equipment
/// congestion, 44 requested channel not available, 47 resource unavailable.
fn is_capacity_cause(cause: u16) -> bool {
    matches!(cause, 34 | 38 | 41 | 42 | 44 | 47)
}

/// The cause of a `Reason: Q.850;cause=N` header (RFC 3326, RFC 6432), if any.
pub fn q850_cause(response: &Response) -> Option<u16> {
    response.headers().get_all("Reason").find_map(|value| {
        let mut parts = value.split(';').map(str::trim);
        let protocol = parts.next()?;
        if !protocol.eq_ignore_ascii_case("Q.850") {
            return None;
        }
        parts.find_map(|param| {
            let (name, value) = param.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("cause")
                .then(|| value.trim().parse().ok())
                .flatten()
        })
    })
}
