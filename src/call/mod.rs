//! The call: one task per inbound call, the UAS transaction user (RFC 3261 §13.3, §12).
//!
//! The task owns everything about its call: the routing decision, the dialog, the SDP
//! session, the RTP ports and media leg, the call record and the admission slot. It
//! receives the requests of its dialog from the endpoint core through a small mailbox and
//! answers through the core, so every response passes through its transaction.
//!
//! The order of decisions for a new INVITE: dialed number -> tenant (404 unknown, 403
//! inactive number or tenant) -> admission (486 at the tenant's limit) -> SDP (488) ->
//! RTP ports (503) -> ring -> record committed -> 200 OK. Every decision after the tenant
//! is known is written to the call's record with the status sent.

mod record;
mod throttle;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng;
use tokio::sync::{mpsc, oneshot};

use crate::endpoint::{CallKey, Command};
use crate::gate::Admitted;
use crate::media::echo::{self, EchoConfig, EchoEnd};
use crate::media::ports::PortPool;
use crate::media::rtp::Pt;
use crate::routing::admission::{self, Admission, Busy};
use crate::routing::directory::{Directory, Route};
use crate::routing::e164::{CountryCode, Did};
use crate::sip::dialog::{AckOutcome, Dialog, DialogError, UasDialogParams};
use crate::sip::message::{Method, Request, RequestBuilder, Response, Scheme};
use crate::sip::sdp::{
    DEFAULT_CODECS, Direction as SdpDirection, LocalSession, Negotiated, SessionDescription,
};
use crate::sip::session_timer::{
    Expired, SessionExpires, SessionTimer, SessionTimerPolicy, parse_min_se,
};
use crate::sip::transaction::{self, TransactionKey};
use crate::sip::triage::ALLOW;
use crate::store::model::{HangupCause, TenantStatus};
use crate::store::{AttemptLog, CallWriter};
use crate::transport::{Peer, Transport};

use record::Record;
pub(crate) use throttle::Throttle;

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

/// What calls share: the node's store writer, directory, limits and port pool.
pub struct CallContext {
    pub writer: CallWriter,
    pub directory: Directory,
    pub admission: Admission,
    pub ports: PortPool,
    pub attempts: AttemptLog,
    pub settings: CallSettings,
    /// Lets the "no RTP ports" warning through once a second when the pool runs dry.
    pub(crate) port_warnings: Throttle,
}

/// What the core passes to a call.
#[derive(Debug)]
pub enum CallEvent {
    /// A CANCEL matched the pending INVITE (the core has answered it 200).
    Cancel,
    /// The ACK for our 2xx.
    Ack { request: Request },
    /// Our 2xx was never acknowledged (64*T1).
    AckTimeout,
    /// A request inside the dialog, with its server transaction already created.
    Request {
        key: TransactionKey,
        request: Request,
        peer: Peer,
    },
}

/// A fresh random tag or branch suffix (§19.3: at least 32 bits of randomness).
pub fn new_tag() -> String {
    format!("{:016x}", rand::rng().random::<u64>())
}

/// Why a call ended before or after it was answered, as the record says it.
struct Refusal {
    status: u16,
    reason: &'static str,
    /// Q.850 cause (RFC 6432).
    cause: u16,
    text: &'static str,
    extra: Vec<(&'static str, String)>,
}

/// How a call that never came up ended.
enum Outcome {
    /// Refuse the INVITE with this, and record it.
    Refused(Refusal),
    /// Already answered and recorded.
    Done,
}

impl From<Refusal> for Outcome {
    fn from(refusal: Refusal) -> Self {
        Outcome::Refused(refusal)
    }
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

/// One inbound call.
pub struct Call {
    ctx: Arc<CallContext>,
    core: mpsc::Sender<Command>,
    key: CallKey,
    local_tag: Arc<str>,
    invite_key: TransactionKey,
    invite: Request,
    peer: Peer,
    /// The trunk that admitted the INVITE (`None`: the development trunk).
    trunk: Admitted,
    events: mpsc::Receiver<CallEvent>,
}

/// What an answered call holds while it is up.
struct Live {
    dialog: Dialog,
    session: LocalSession,
    sdp: Bytes,
    timer: Option<SessionTimer>,
    echo: tokio::task::JoinHandle<echo::EchoReport>,
    hangup: Option<oneshot::Sender<()>>,
    _admitted: admission::Admitted,
}

impl Call {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ctx: Arc<CallContext>,
        core: mpsc::Sender<Command>,
        key: CallKey,
        local_tag: Arc<str>,
        invite_key: TransactionKey,
        invite: Request,
        peer: Peer,
        trunk: Admitted,
        events: mpsc::Receiver<CallEvent>,
    ) -> Call {
        Call {
            ctx,
            core,
            key,
            local_tag,
            invite_key,
            invite,
            peer,
            trunk,
            events,
        }
    }

    pub async fn run(mut self) {
        let call_id = self
            .invite
            .headers()
            .call_id()
            .unwrap_or_default()
            .to_owned();
        let span = tracing::debug_span!("call", sip_call_id = %call_id);
        let _ = tracing::Instrument::instrument(self.serve(), span).await;
        let _ = self
            .core
            .send(Command::Gone {
                call: self.key.clone(),
            })
            .await;
    }

    async fn serve(&mut self) {
        let raw = dialed_number(&self.invite);
        let country = self
            .trunk
            .as_ref()
            .map_or(&self.ctx.settings.country, |t| &t.country);
        let did = raw.as_deref().and_then(|r| Did::normalize(r, country).ok());
        let route = did.as_ref().and_then(|d| self.ctx.directory.lookup(d));
        // A tenant's own trunk reaches only that tenant's numbers; anything else is refused
        // exactly like an unknown number.
        let owner = self.trunk.as_ref().and_then(|t| t.tenant_id);
        let foreign = matches!((&route, owner), (Some(r), Some(o)) if r.tenant_id != o);
        let (Some(did), Some(route), false) = (did, route, foreign) else {
            let called = raw.unwrap_or_default();
            let reason = if foreign {
                "foreign_did"
            } else {
                "unknown_did"
            };
            self.ctx
                .attempts
                .record(self.peer.addr().ip(), reason, &called);
            self.refuse(&Refusal::new(404, "Not Found", 1, "Unallocated number"));
            return;
        };
        let mut record = Record::new(
            &self.invite,
            &self.peer,
            &route,
            self.trunk.as_ref().map(|t| t.id),
            did.as_str(),
            raw.as_deref().unwrap_or(""),
        );
        record.event(
            "initiated",
            serde_json::json!({"remote_addr": self.peer.addr().to_string()}),
        );
        match self.answer(&mut record, &route).await {
            Ok(live) => self.up(record, live).await,
            Err(Outcome::Refused(refusal)) => {
                self.refuse(&refusal);
                record.fail(
                    refusal.status,
                    Some(refusal.cause),
                    HangupCause::Rejected,
                    refusal.text,
                );
                self.write(&mut record);
            }
            Err(Outcome::Done) => {}
        }
    }

    /// Everything up to the 200 OK. On success the call is answered and recorded.
    async fn answer(&mut self, record: &mut Record, route: &Route) -> Result<Live, Outcome> {
        match route.tenant_status {
            TenantStatus::Active => {}
            TenantStatus::Suspended | TenantStatus::Deleted => {
                return Err(Refusal::new(403, "Forbidden", 21, "Tenant not in service").into());
            }
        }
        if !route.is_active {
            return Err(Refusal::new(403, "Forbidden", 21, "Number not in service").into());
        }
        let trunk_limit = self.trunk.as_ref().map(|t| (t.id, t.max_concurrent_calls));
        let admitted = self
            .ctx
            .admission
            .try_admit_call(route.tenant_id, route.max_concurrent_calls, trunk_limit)
            .map_err(|busy| match busy {
                Busy::Tenant => Refusal::new(486, "Busy Here", 17, "User busy"),
                Busy::Trunk => Refusal::new(486, "Busy Here", 17, "Trunk busy"),
            })?;
        let timer = self.session_timer()?;
        let ports = self.ctx.ports.allocate().map_err(|e| {
            if let Some(held_back) = self.ctx.port_warnings.admit(Instant::now()) {
                tracing::warn!(error = %e, held_back, "no RTP ports for a call");
            }
            congestion("rtp_ports")
        })?;
        let mut session = LocalSession::new(
            rand::rng().random(),
            self.ctx.settings.public_ip,
            ports.rtp_port(),
        );
        let body = self.invite.body().clone();
        let (negotiated, sdp) = if body.is_empty() {
            (None, session.offer(&DEFAULT_CODECS, SdpDirection::SendRecv))
        } else {
            let offer = SessionDescription::parse(&body).map_err(|_| {
                Refusal::new(488, "Not Acceptable Here", 88, "Incompatible destination")
            })?;
            let (negotiated, answer) = session.answer(&offer, &DEFAULT_CODECS).map_err(|_| {
                Refusal::new(488, "Not Acceptable Here", 88, "Incompatible destination")
            })?;
            (Some(negotiated), answer)
        };
        let sdp = Bytes::from(sdp);

        if !self.ctx.settings.ring.is_zero() {
            self.send_response(180, "Ringing", &[], None);
            record.ringing();
            self.write(record);
            let ring = tokio::time::sleep(self.ctx.settings.ring);
            tokio::pin!(ring);
            loop {
                tokio::select! {
                    () = &mut ring => break,
                    event = self.events.recv() => match event {
                        Some(CallEvent::Cancel) | None => {
                            self.send_response(487, "Request Terminated", &[], None);
                            record.fail(487, None, HangupCause::Cancel, "cancelled by the caller");
                            self.write(record);
                            return Err(Outcome::Done);
                        }
                        Some(other) => self.early_request(other),
                    },
                }
            }
        }

        if let Some(n) = &negotiated {
            record.codec(n.codec.encoding_name());
        }
        record.answered();
        if self
            .ctx
            .writer
            .record_durably(record.take_write())
            .await
            .is_err()
        {
            return Err(congestion("call_record").into());
        }
        record.committed();

        let mut headers: Vec<(&str, String)> = vec![
            ("Contact", self.contact()),
            ("Allow", ALLOW.to_owned()),
            ("Supported", "timer".to_owned()),
        ];
        if let Some(params) = &timer {
            headers.push(("Session-Expires", params.session_expires_header()));
            if let Some(require) = params.require_header() {
                headers.push(("Require", require.to_owned()));
            }
        }
        self.send_response(200, "OK", &headers, Some(sdp.clone()));
        let mut dialog = self.dialog(negotiated.is_some());
        dialog.handle_final_sent(200);

        // Wait for the ACK: the 2xx goes on being resent by the core until it comes.
        let negotiated = loop {
            match self.events.recv().await {
                Some(CallEvent::Ack { request }) => {
                    let cseq = request.headers().cseq().map(|c| c.seq).unwrap_or(0);
                    let has_answer = !request.body().is_empty();
                    match dialog.handle_ack(cseq, has_answer) {
                        AckOutcome::Accepted => {}
                        AckOutcome::AnswerMissing => {
                            record.event("ack_without_answer", serde_json::json!({}));
                            break None;
                        }
                        AckOutcome::Stray => continue,
                    }
                    match negotiated {
                        Some(n) => break Some(n),
                        None => {
                            let answer = SessionDescription::parse(request.body()).ok();
                            break answer.and_then(|a| session.accept_answer(&a).ok());
                        }
                    }
                }
                Some(CallEvent::AckTimeout) | None => {
                    dialog.handle_ack_timeout();
                    record.event("ack_timeout", serde_json::json!({}));
                    self.send_bye(&mut dialog);
                    record.end_failed(HangupCause::Timeout, "no ACK for the 200 OK");
                    self.write(record);
                    return Err(Outcome::Done);
                }
                Some(CallEvent::Cancel) => {}
                Some(CallEvent::Request { key, request, .. }) => {
                    if request.method() == Method::Bye {
                        self.respond(&key, &request, 200, "OK", &[], None);
                        record.end(HangupCause::CallerBye, "caller hung up");
                        self.write(record);
                        return Err(Outcome::Done);
                    }
                    self.respond(&key, &request, 491, "Request Pending", &[], None);
                }
            }
        };
        let Some(negotiated) = negotiated else {
            self.send_bye(&mut dialog);
            record.end_failed(HangupCause::Error, "no usable SDP answer in the ACK");
            self.write(record);
            return Err(Outcome::Done);
        };
        if record.codec_is_unset() {
            record.codec(negotiated.codec.encoding_name());
        }
        let (hangup, hangup_rx) = oneshot::channel();
        let echo = echo::spawn(ports, self.echo_config(&negotiated), hangup_rx);
        Ok(Live {
            dialog,
            session,
            sdp,
            timer: timer.map(|p| SessionTimer::new(Instant::now(), p)),
            echo,
            hangup: Some(hangup),
            _admitted: admitted,
        })
    }

    /// The answered call, until one side hangs up.
    async fn up(&mut self, mut record: Record, mut live: Live) {
        let max = if self.ctx.settings.max_call_duration.is_zero() {
            Duration::from_secs(86_400 * 365)
        } else {
            self.ctx.settings.max_call_duration
        };
        let limit = tokio::time::sleep(max);
        tokio::pin!(limit);
        let cause = loop {
            let session_deadline = live.timer.as_ref().and_then(SessionTimer::poll_timeout);
            let session = tokio::time::sleep_until(session_deadline.map_or_else(
                || tokio::time::Instant::now() + max,
                tokio::time::Instant::from_std,
            ));
            tokio::select! {
                event = self.events.recv() => match event {
                    None => break (HangupCause::Error, "the call lost its mailbox"),
                    Some(CallEvent::Request { key, request, .. }) => {
                        if self.in_dialog(&mut live, key, request) {
                            break (HangupCause::CallerBye, "caller hung up");
                        }
                    }
                    Some(CallEvent::Ack { request }) => {
                        let cseq = request.headers().cseq().map(|c| c.seq).unwrap_or(0);
                        let _ = live.dialog.handle_ack(cseq, !request.body().is_empty());
                    }
                    Some(CallEvent::AckTimeout) => live.dialog.handle_ack_timeout(),
                    Some(CallEvent::Cancel) => {}
                },
                report = &mut live.echo => {
                    match report.map(|r| r.end) {
                        Ok(EchoEnd::MediaTimeout) => {
                            self.send_bye(&mut live.dialog);
                            break (HangupCause::Timeout, "no RTP from the caller");
                        }
                        _ => {
                            self.send_bye(&mut live.dialog);
                            break (HangupCause::Error, "the media leg failed");
                        }
                    }
                }
                () = &mut limit => {
                    self.send_bye(&mut live.dialog);
                    break (HangupCause::ServerBye, "maximum call duration");
                }
                () = session, if session_deadline.is_some() => {
                    if let Some(timer) = live.timer.as_mut()
                        && timer.handle_timeout(Instant::now()) == Some(Expired::Session)
                    {
                        self.send_bye(&mut live.dialog);
                        break (HangupCause::Timeout, "session timer expired");
                    }
                }
            }
        };
        if let Some(hangup) = live.hangup.take() {
            let _ = hangup.send(());
        }
        record.end(cause.0, cause.1);
        self.write(&mut record);
    }

    /// Serves one request inside the dialog; returns true when it ends the call (BYE).
    fn in_dialog(&mut self, live: &mut Live, key: TransactionKey, request: Request) -> bool {
        let method = request.method();
        let cseq = request.headers().cseq().map(|c| c.seq).unwrap_or(0);
        if let Err(e) = live.dialog.check_remote_cseq(cseq, method.as_str()) {
            self.refuse_in_dialog(&key, &request, &e);
            return false;
        }
        match method {
            Method::Bye => {
                self.respond(&key, &request, 200, "OK", &[], None);
                live.dialog.terminate();
                true
            }
            Method::Invite | Method::Update => {
                let has_offer = !request.body().is_empty();
                let checked = if method == Method::Invite {
                    live.dialog.handle_reinvite(cseq, has_offer)
                } else {
                    live.dialog.handle_update(has_offer)
                };
                if let Err(e) = checked {
                    self.refuse_in_dialog(&key, &request, &e);
                    return false;
                }
                if method == Method::Invite {
                    let _ = self.core.try_send(Command::SetInvite {
                        call: self.key.clone(),
                        key: key.clone(),
                    });
                }
                let body = if has_offer {
                    let answer = SessionDescription::parse(request.body())
                        .ok()
                        .and_then(|offer| live.session.answer(&offer, &DEFAULT_CODECS).ok());
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
                            if method == Method::Invite {
                                live.dialog.handle_final_sent(488);
                            } else {
                                live.dialog.handle_update_final_sent();
                            }
                            return false;
                        }
                    }
                } else {
                    live.sdp.clone()
                };
                live.sdp = body.clone();
                if let Some(timer) = live.timer.as_mut() {
                    timer.handle_refresh(Instant::now());
                }
                let mut headers = vec![("Contact", self.contact())];
                if let Some(timer) = &live.timer {
                    headers.push(("Session-Expires", timer.params().session_expires_header()));
                }
                self.respond(&key, &request, 200, "OK", &headers, Some(body));
                if method == Method::Invite {
                    live.dialog.handle_final_sent(200);
                } else {
                    live.dialog.handle_update_final_sent();
                }
                false
            }
            _ => {
                self.respond(&key, &request, 200, "OK", &[], None);
                false
            }
        }
    }

    /// Refuses an in-dialog request the dialog's rules do not allow (§12.2.2, §14.2),
    /// with the Retry-After those rules ask for.
    fn refuse_in_dialog(&self, key: &TransactionKey, request: &Request, e: &DialogError) {
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

    /// A request inside the early dialog, before our final response: the caller should
    /// wait or CANCEL, so it is refused with 491 (the pending INVITE stays as it is).
    fn early_request(&mut self, event: CallEvent) {
        if let CallEvent::Request { key, request, .. } = event {
            self.respond(&key, &request, 491, "Request Pending", &[], None);
        }
    }

    fn session_timer(
        &self,
    ) -> Result<Option<crate::sip::session_timer::SessionTimerParams>, Refusal> {
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

    fn dialog(&self, has_offer: bool) -> Dialog {
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

    fn echo_config(&self, negotiated: &Negotiated) -> EchoConfig {
        EchoConfig {
            remote: negotiated.remote_rtp,
            audio_pt: Pt::new(negotiated.payload_type).unwrap_or(Pt::PCMU),
            event_pt: negotiated.telephone_event_pt.and_then(Pt::new),
            media_timeout: self.ctx.settings.media_timeout,
        }
    }

    fn contact(&self) -> String {
        let s = &self.ctx.settings;
        let addr = match self.peer.transport() {
            Transport::Udp => SocketAddr::new(s.public_ip, s.udp_port),
            Transport::Tls => SocketAddr::new(s.public_ip, s.tls_port),
            Transport::Tcp | Transport::Ws => SocketAddr::new(s.public_ip, s.tcp_port),
        };
        match self.peer.transport() {
            Transport::Udp => format!("<sip:vca@{addr}>"),
            Transport::Tcp => format!("<sip:vca@{addr};transport=tcp>"),
            // §12.1.1: a dialog begun with a sips: Request-URI gets a sips: Contact; one begun
            // with sip: over TLS keeps sip:, with the transport named.
            Transport::Tls if self.invite.uri().scheme() == Scheme::Sips => {
                format!("<sips:vca@{addr}>")
            }
            Transport::Tls => format!("<sip:vca@{addr};transport=tls>"),
            Transport::Ws => format!("<sip:vca@{addr};transport=ws>"),
        }
    }

    /// Refuses the INVITE with a final response that says why (RFC 6432 Reason).
    fn refuse(&self, refusal: &Refusal) {
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

    /// A response to the INVITE.
    fn send_response(
        &self,
        status: u16,
        reason: &str,
        headers: &[(&str, String)],
        sdp: Option<Bytes>,
    ) {
        self.respond(&self.invite_key, &self.invite, status, reason, headers, sdp);
    }

    fn respond(
        &self,
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
        if self
            .core
            .try_send(Command::Respond {
                key: key.clone(),
                status,
                response,
            })
            .is_err()
        {
            metrics::counter!("vca_sip_send_failures_total").increment(1);
        }
    }

    /// Ends the dialog from our side (§15.1.1).
    fn send_bye(&self, dialog: &mut Dialog) {
        let h = self.invite.headers();
        let (Ok(from), Ok(to), Ok(call_id)) = (h.from(), h.to(), h.call_id()) else {
            return;
        };
        let s = &self.ctx.settings;
        let (transport, port) = match self.peer.transport() {
            Transport::Udp => ("UDP", s.udp_port),
            Transport::Tcp => ("TCP", s.tcp_port),
            Transport::Tls => ("TLS", s.tls_port),
            Transport::Ws => ("WS", s.tcp_port),
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
        let key = TransactionKey::client(Bytes::from(branch.clone()), transaction::Method::Bye);
        let _ = self.core.try_send(Command::Request {
            key,
            peer: self.peer.clone(),
            request,
        });
        dialog.terminate();
    }

    fn write(&self, record: &mut Record) {
        if self.ctx.writer.record(record.take_write()).is_err() {
            metrics::counter!("vca_call_records_dropped_total").increment(1);
        }
    }
}

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
    fn of_uri(uri: crate::sip::message::Uri<'_>) -> Option<String> {
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
