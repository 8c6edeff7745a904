//! The call: one task per call driving its sans-IO machine ([`uas::Uas`] for a call that
//! came in, [`uac::Uac`] for one vca-sip places; RFC 3261 §13).
//!
//! The machine owns every decision about its call (routing, admission, SDP, the dialog,
//! the record); this driver owns what does IO for it: the mailbox from the endpoint, the
//! record writer, the RTP ports and the media leg, and the one timer the machine asks for.
//! It is, with the endpoint's driver, the only place on the call path that reads the clock.

mod record;
mod throttle;
pub mod uac;
pub mod uas;
pub mod webrtc;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::clock::WallClock;
use crate::gate::Admitted;
use crate::ids::CallId;
use crate::media::ports::RtpPorts;
use crate::media::recorder::{FINISH_WAIT, Recorded, Recorder, RecordingFailure, RecordingTap};
use crate::media::runtime::MediaRuntime;
use crate::media::session::{self, AgentNotice, AgentStart, MediaSession, RecordingReport};
use crate::media::stream::{Dialect, StreamConfig};
use crate::routing::admission::Admission;
use crate::routing::directory::Directory;
use crate::sip::message::Request;
use crate::sip::transaction::TransactionKey;
use crate::store::StreamTarget;
use crate::store::model::HangupCause;
use crate::store::model::StreamProtocol;
use crate::store::{AttemptLog, CallWriter};
use crate::targets::{self, TargetPolicy};
use crate::transport::Peer;
use crate::ua::{self, CallKey};

pub(crate) use throttle::Throttle;
use uac::Uac;
pub use uas::CallSettings;
use uas::{AgentEvent, AgentPlan, MediaEnd, Output, Uas};

type CallEvent = ua::CallEvent<Peer>;
type Command = ua::Command<Peer>;

/// What calls share: the node's store writer, directory, limits and media runtime.
pub struct CallContext {
    pub writer: CallWriter,
    pub directory: Directory,
    pub admission: Admission,
    pub media: MediaRuntime,
    pub attempts: AttemptLog,
    pub settings: CallSettings,
    /// Where record timestamps come from.
    pub clock: Arc<dyn WallClock>,
    /// Lets the "no RTP ports" warning through once a second when the pool runs dry.
    pub(crate) port_warnings: Throttle,
    /// Which addresses tenants' agent streams may reach.
    pub targets: TargetPolicy,
    /// The calls that the API may end (those streamed to an agent).
    pub live: LiveCalls,
    /// Where recorded calls' audio is written.
    pub recorder: Recorder,
}

/// What the driver needs of its machine: the face [`Uas`] and [`Uac`] share.
pub trait Machine: Send + 'static {
    /// The decisions before any IO (routing and admission, or the first record write).
    fn start(&mut self, ctx: &CallContext, now: Instant);
    fn poll_output(&mut self) -> Option<Output<Peer>>;
    fn poll_timeout(&self) -> Option<Instant>;
    fn handle_event(&mut self, now: Instant, event: CallEvent);
    fn handle_lost(&mut self, now: Instant);
    fn handle_media_end(&mut self, now: Instant, end: MediaEnd);
    fn handle_timeout(&mut self, now: Instant);
    fn handle_committed(&mut self, now: Instant, committed: bool);
    fn handle_ports(&mut self, now: Instant, port: Option<u16>);
    /// What the driver saw of the agent's stream.
    fn handle_agent(&mut self, now: Instant, event: AgentEvent);
    /// Someone outside the call (the agent, through the API) ends it.
    fn handle_hangup(&mut self, now: Instant, why: &str);
    /// How the call's recording ended; may come after the machine is done.
    fn handle_recording(&mut self, now: Instant, outcome: Result<Recorded, RecordingFailure>);
    /// The Call-ID, for the call's log span.
    fn sip_call_id(&self) -> String;
}

impl Machine for Uas<Peer> {
    fn start(&mut self, ctx: &CallContext, _now: Instant) {
        Uas::start(self, &ctx.directory, &ctx.admission);
    }
    fn poll_output(&mut self) -> Option<Output<Peer>> {
        Uas::poll_output(self)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Uas::poll_timeout(self)
    }
    fn handle_event(&mut self, now: Instant, event: CallEvent) {
        Uas::handle_event(self, now, event);
    }
    fn handle_lost(&mut self, now: Instant) {
        Uas::handle_lost(self, now);
    }
    fn handle_media_end(&mut self, now: Instant, end: MediaEnd) {
        Uas::handle_media_end(self, now, end);
    }
    fn handle_timeout(&mut self, now: Instant) {
        Uas::handle_timeout(self, now);
    }
    fn handle_committed(&mut self, now: Instant, committed: bool) {
        Uas::handle_committed(self, now, committed);
    }
    fn handle_ports(&mut self, now: Instant, port: Option<u16>) {
        Uas::handle_ports(self, now, port);
    }
    fn handle_agent(&mut self, now: Instant, event: AgentEvent) {
        Uas::handle_agent(self, now, event);
    }
    fn handle_hangup(&mut self, now: Instant, why: &str) {
        Uas::handle_hangup(self, now, why);
    }
    fn handle_recording(&mut self, now: Instant, outcome: Result<Recorded, RecordingFailure>) {
        Uas::handle_recording(self, now, outcome);
    }
    fn sip_call_id(&self) -> String {
        let call_id = self.invite().headers().call_id();
        call_id.unwrap_or_default().to_owned()
    }
}

impl Machine for Uac<Peer> {
    fn start(&mut self, _ctx: &CallContext, now: Instant) {
        Uac::start(self, now);
    }
    fn poll_output(&mut self) -> Option<Output<Peer>> {
        Uac::poll_output(self)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Uac::poll_timeout(self)
    }
    fn handle_event(&mut self, now: Instant, event: CallEvent) {
        Uac::handle_event(self, now, event);
    }
    fn handle_lost(&mut self, now: Instant) {
        Uac::handle_lost(self, now);
    }
    fn handle_media_end(&mut self, now: Instant, end: MediaEnd) {
        Uac::handle_media_end(self, now, end);
    }
    fn handle_timeout(&mut self, now: Instant) {
        Uac::handle_timeout(self, now);
    }
    fn handle_committed(&mut self, now: Instant, committed: bool) {
        Uac::handle_committed(self, now, committed);
    }
    fn handle_ports(&mut self, now: Instant, port: Option<u16>) {
        Uac::handle_ports(self, now, port);
    }
    // An outbound call's media is echo: no agent stream reports to it, and the API does
    // not register it.
    fn handle_agent(&mut self, _now: Instant, _event: AgentEvent) {}
    fn handle_hangup(&mut self, _now: Instant, _why: &str) {}
    // Nor is it recorded.
    fn handle_recording(&mut self, _now: Instant, _outcome: Result<Recorded, RecordingFailure>) {}
    fn sip_call_id(&self) -> String {
        self.call_id().to_owned()
    }
}

/// One call's driver: an inbound call's by default, an outbound one's with [`Uac`].
pub struct Call<M = Uas<Peer>> {
    ctx: Arc<CallContext>,
    core: mpsc::Sender<Command>,
    key: CallKey,
    peer: Peer,
    machine: M,
    events: mpsc::Receiver<CallEvent>,
    ports: Option<RtpPorts>,
    media: Option<MediaSession>,
    /// What the agent's stream reports, while the call has one.
    agent: Option<mpsc::Receiver<AgentNotice>>,
    /// Hang-ups asked through the API, once the call is registered in [`LiveCalls`].
    hangups: Option<(CallId, mpsc::Receiver<Hangup>)>,
    /// The call's recording, finished once its media ended.
    recording: Option<RecordingTap>,
    /// A recorded call's session after its hangup, for the report that ends the recording.
    stopping: Option<MediaSession>,
    /// What the session's end report said of the recording.
    recorded: Option<RecordingReport>,
}

impl Call<Uac<Peer>> {
    /// The driver of a call vca-sip places; its mailbox `events` must be registered under
    /// [`Uac::key`] before the task runs.
    pub fn outbound(
        ctx: Arc<CallContext>,
        core: mpsc::Sender<Command>,
        machine: Uac<Peer>,
        peer: Peer,
        events: mpsc::Receiver<CallEvent>,
    ) -> Self {
        Call {
            ctx,
            core,
            key: machine.key().clone(),
            peer,
            machine,
            events,
            ports: None,
            media: None,
            agent: None,
            hangups: None,
            recording: None,
            stopping: None,
            recorded: None,
        }
    }
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
        let machine = Uas::new(
            ctx.settings.clone(),
            ctx.clock.clone(),
            key.clone(),
            local_tag,
            invite_key,
            invite,
            peer.clone(),
            trunk,
        );
        Call {
            ctx,
            core,
            key,
            peer,
            machine,
            events,
            ports: None,
            media: None,
            agent: None,
            hangups: None,
            recording: None,
            stopping: None,
            recorded: None,
        }
    }
}

impl<M: Machine> Call<M> {
    pub async fn run(mut self) {
        let call_id = self.machine.sip_call_id();
        let span = tracing::debug_span!("call", sip_call_id = %call_id);
        tracing::Instrument::instrument(self.drive(), span.clone()).await;
        tracing::Instrument::instrument(self.finish_recording(), span).await;
        // Dropping the session hangs it up.
        drop(self.media.take());
        if let Some((id, _)) = self.hangups.take() {
            self.ctx.live.remove(id);
        }
        let _ = self
            .core
            .send(ua::Command::Gone {
                call: self.key.clone(),
            })
            .await;
    }

    /// Feeds the machine until it is done.
    #[allow(clippy::disallowed_methods)] // the driver is where the clock is read
    async fn drive(&mut self) {
        self.machine.start(&self.ctx, Instant::now());
        let far = Duration::from_secs(86_400 * 365);
        loop {
            if self.carry_out().await {
                return;
            }
            let deadline = self
                .machine
                .poll_timeout()
                .unwrap_or_else(|| Instant::now() + far);
            let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline));
            tokio::select! {
                event = self.events.recv() => match event {
                    Some(event) => self.machine.handle_event(Instant::now(), event),
                    None => self.machine.handle_lost(Instant::now()),
                },
                report = media_end(&mut self.media) => {
                    self.media = None;
                    self.recorded = report.recording;
                    let end = match report.end {
                        session::MediaEnd::MediaTimeout => MediaEnd::Timeout,
                        session::MediaEnd::AgentHangup => MediaEnd::AgentHangup,
                        session::MediaEnd::AgentDisconnected => MediaEnd::AgentDisconnected,
                        session::MediaEnd::AgentUnreachable(reason) => {
                            MediaEnd::AgentUnreachable(reason)
                        }
                        session::MediaEnd::Hangup
                        | session::MediaEnd::PeerGone(_)
                        | session::MediaEnd::Socket(_)
                        | session::MediaEnd::Shutdown => MediaEnd::Failed,
                    };
                    self.machine.handle_media_end(Instant::now(), end);
                }
                notice = agent_notice(&mut self.agent) => match notice {
                    Some(notice) => {
                        let event = match notice {
                            AgentNotice::Connected => AgentEvent::Connected,
                            AgentNotice::Unreachable(reason) => AgentEvent::Unreachable(reason),
                            AgentNotice::Dtmf(digit) => AgentEvent::Dtmf(digit),
                            AgentNotice::Cleared { marks } => AgentEvent::Cleared { marks },
                        };
                        self.machine.handle_agent(Instant::now(), event);
                    }
                    None => self.agent = None,
                },
                why = hangup_asked(&mut self.hangups) => match why {
                    // A carrier's call is ended from outside only by its agent.
                    Some(Hangup { why, .. }) => self.machine.handle_hangup(Instant::now(), &why),
                    None => {
                        if let Some((id, _)) = self.hangups.take() {
                            self.ctx.live.remove(id);
                        }
                    }
                },
                () = sleep => self.machine.handle_timeout(Instant::now()),
            }
        }
    }

    /// Carries out what the machine asks; true once it is done.
    #[allow(clippy::disallowed_methods)] // the driver is where the clock is read
    async fn carry_out(&mut self) -> bool {
        while let Some(output) = self.machine.poll_output() {
            match output {
                Output::Command(command) => {
                    if self.core.try_send(command).is_err() {
                        metrics::counter!("vca_sip_send_failures_total").increment(1);
                    }
                }
                Output::Write(write) => {
                    if self.ctx.writer.record(write).is_err() {
                        metrics::counter!("vca_call_records_dropped_total").increment(1);
                    }
                }
                Output::WriteDurably(write) => {
                    let committed = self.ctx.writer.record_durably(write).await.is_ok();
                    self.machine.handle_committed(Instant::now(), committed);
                }
                Output::AllocatePorts => {
                    let port = match self.ctx.media.allocate() {
                        Ok(ports) => {
                            let port = ports.rtp_port();
                            self.ports = Some(ports);
                            Some(port)
                        }
                        Err(e) => {
                            if let Some(held_back) = self.ctx.port_warnings.admit(Instant::now()) {
                                tracing::warn!(error = %e, held_back, "no RTP ports for a call");
                            }
                            None
                        }
                    };
                    self.machine.handle_ports(Instant::now(), port);
                }
                Output::StartMedia(config) => {
                    if let Some(ports) = self.ports.take() {
                        match self.ctx.media.start(ports, config) {
                            Ok(media) => self.media = Some(media),
                            Err(e) => {
                                tracing::warn!(error = %e, "no media session for an answered call");
                                self.machine
                                    .handle_media_end(Instant::now(), MediaEnd::Failed);
                            }
                        }
                    }
                }
                Output::ConnectAgent(plan) => self.connect_agent(plan).await,
                Output::SendDtmf(digit) => {
                    if let Some(media) = self.media.as_mut()
                        && let Err(e) = media.dtmf(digit)
                    {
                        tracing::warn!(error = %e, "a DTMF digit did not reach the agent");
                    }
                }
                Output::StopMedia => {
                    if let Some(mut media) = self.media.take() {
                        if let Err(e) = media.hangup() {
                            // Dropping the session tries again.
                            tracing::warn!(error = %e, "media hangup not queued");
                        }
                        if self.recording.is_some() {
                            self.stopping = Some(media);
                        }
                    }
                }
                Output::Attempt { reason, called } => {
                    let at = self.ctx.clock.now();
                    self.ctx
                        .attempts
                        .record(at, self.peer.addr().ip(), reason, &called);
                }
                Output::Done => return true,
            }
        }
        false
    }
}

impl<M: Machine> Call<M> {
    /// Resolves the agent's host (bounded by its connect timeout), checks where it leads,
    /// and starts the stream session on the call's ports; what fails is the agent being
    /// unreachable, said to the machine.
    #[allow(clippy::disallowed_methods)] // the driver is where the clock is read
    async fn connect_agent(&mut self, plan: AgentPlan) {
        let AgentPlan {
            media,
            target,
            account_sid,
            call_sid,
            parameters,
            recording: plan_recording,
        } = plan;
        let Some(ports) = self.ports.take() else {
            return;
        };
        let addrs = tokio::time::timeout(
            target.connect_timeout,
            resolve_stream_url(&target.url, self.ctx.targets),
        )
        .await
        .unwrap_or_else(|_| Err("resolving the agent's host timed out".to_owned()));
        let addrs = match addrs {
            Ok(addrs) => addrs,
            Err(reason) => {
                tracing::info!(url = %target.url, %reason, "agent unreachable");
                if plan_recording.is_some() {
                    let failure = RecordingFailure::no_media("the agent's host did not resolve");
                    count_recording_failure(&failure);
                    self.machine.handle_recording(Instant::now(), Err(failure));
                }
                return self
                    .machine
                    .handle_agent(Instant::now(), AgentEvent::Unreachable(reason));
            }
        };
        let recording = match plan_recording {
            Some(key) => match self.ctx.recorder.open(key) {
                Ok(tap) => Some(tap),
                Err(failure) => {
                    count_recording_failure(&failure);
                    self.machine.handle_recording(Instant::now(), Err(failure));
                    None
                }
            },
            None => None,
        };
        self.recording.clone_from(&recording);
        let agent = agent_start(
            &target,
            addrs,
            &account_sid,
            &call_sid,
            parameters,
            recording,
        );
        match self.ctx.media.start_stream(ports, media, agent) {
            Ok((session, notices)) => {
                self.media = Some(session);
                self.agent = Some(notices);
                if let Ok(id) = call_sid.parse::<uuid::Uuid>() {
                    let id = CallId(id);
                    let token = target.auth_token.as_ref().map(|t| t.0.clone());
                    self.hangups = Some((id, self.ctx.live.insert(id, &account_sid, token)));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "no media session for an agent stream");
                if let Some(tap) = self.recording.take() {
                    tap.abort();
                    let failure = RecordingFailure::no_media(format!("no media session: {e}"));
                    count_recording_failure(&failure);
                    self.machine.handle_recording(Instant::now(), Err(failure));
                }
                self.machine.handle_agent(
                    Instant::now(),
                    AgentEvent::Unreachable(format!("no media session: {e}")),
                );
            }
        }
    }
}

impl<M: Machine> Call<M> {
    /// Once the call is over: waits for its media's end report (the recording's last slot),
    /// finishes the recording and has the machine write how it ended. A recording that
    /// cannot be kept leaves the call as it was, with the recording marked failed.
    #[allow(clippy::disallowed_methods)] // the driver is where the clock is read
    async fn finish_recording(&mut self) {
        let Some(tap) = self.recording.take() else {
            return;
        };
        if self.recorded.is_none()
            && let Some(mut session) = self.stopping.take().or_else(|| self.media.take())
        {
            let _ = session.hangup();
            if let Ok(report) = tokio::time::timeout(FINISH_WAIT, session.ended()).await {
                self.recorded = report.recording;
            }
        }
        let report = self.recorded.unwrap_or_default();
        if report.batches_dropped > 0 {
            metrics::counter!("vca_sip_recording_batches_dropped_total")
                .increment(report.batches_dropped);
        }
        let outcome = tap.finish(report.slots).await;
        match &outcome {
            Ok(recorded) => {
                metrics::counter!("vca_sip_recordings_ready_total").increment(1);
                tracing::debug!(?recorded, "recording ready");
            }
            Err(failure) => count_recording_failure(failure),
        }
        self.machine.handle_recording(Instant::now(), outcome);
        self.carry_out().await;
    }
}

fn count_recording_failure(failure: &RecordingFailure) {
    tracing::warn!(reason = failure.reason.as_str(), detail = %failure.detail, "call recording failed");
    metrics::counter!("vca_sip_recordings_failed_total", "reason" => failure.reason.as_str())
        .increment(1);
}

/// The addresses of a `ws://` or `wss://` URL's host, each checked against `policy`.
/// What the shard needs to open `target`'s stream for call `call_sid` of tenant
/// `account_sid`, its host resolved to `addrs`.
fn agent_start(
    target: &StreamTarget,
    addrs: Vec<SocketAddr>,
    account_sid: &str,
    call_sid: &str,
    parameters: std::collections::BTreeMap<String, String>,
    recording: Option<RecordingTap>,
) -> AgentStart {
    let dialect = match target.protocol {
        StreamProtocol::Twilio => Dialect::Twilio,
        StreamProtocol::Exotel => Dialect::Exotel,
    };
    let stream_sid = format!("MZ{}", uuid::Uuid::new_v4().simple());
    let mut stream = StreamConfig::new(dialect, &stream_sid, account_sid, call_sid);
    stream.custom_parameters = parameters;
    stream.max_queued_audio_ms =
        u32::try_from(target.max_queued_audio.as_millis()).unwrap_or(u32::MAX);
    AgentStart {
        recording,
        url: target.url.clone(),
        addrs,
        auth_token: target.auth_token.as_ref().map(|t| t.0.clone()),
        ca_pem: target.ca_pem.clone(),
        connect_timeout: target.connect_timeout,
        stream,
    }
}

async fn resolve_stream_url(url: &str, policy: TargetPolicy) -> Result<Vec<SocketAddr>, String> {
    let uri: axum::http::Uri = url
        .parse()
        .map_err(|e| format!("the stream URL does not parse: {e}"))?;
    let host = uri.host().ok_or("the stream URL has no host")?;
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("wss") {
            443
        } else {
            80
        });
    targets::resolve(host, port, policy)
        .await
        .map_err(|e| e.to_string())
}

/// The media session's end report, when it runs; never ready otherwise.
async fn media_end(media: &mut Option<MediaSession>) -> session::MediaReport {
    match media {
        Some(session) => session.ended().await,
        None => std::future::pending().await,
    }
}

/// The agent stream's next notice; never ready without a stream.
async fn agent_notice(agent: &mut Option<mpsc::Receiver<AgentNotice>>) -> Option<AgentNotice> {
    match agent {
        Some(notices) => notices.recv().await,
        None => std::future::pending().await,
    }
}

/// The next hang-up asked through the API; never ready for a call not registered.
async fn hangup_asked(hangups: &mut Option<(CallId, mpsc::Receiver<Hangup>)>) -> Option<Hangup> {
    match hangups {
        Some((_, asked)) => asked.recv().await,
        None => std::future::pending().await,
    }
}

/// The calls that can be ended from outside their task: those streamed to an agent, by
/// call id, with the tenant that owns each. An agent's REST hang-up finds its call here.
#[derive(Clone, Default)]
pub struct LiveCalls {
    calls: Arc<std::sync::Mutex<std::collections::HashMap<CallId, LiveCall>>>,
}

struct LiveCall {
    tenant_id: String,
    /// The stream's auth token, which the agent may use as its password.
    token: Option<String>,
    /// A browser call's WebRTC session, and where its trickled candidates go.
    session: Option<(uuid::Uuid, crate::media::session::CandidateSink)>,
    hangup: mpsc::Sender<Hangup>,
}

/// A hang-up asked from outside a call: whose, and why (for its record).
#[derive(Debug, Clone)]
pub(crate) struct Hangup {
    pub(crate) cause: HangupCause,
    pub(crate) why: String,
}

/// Why [`LiveCalls::hang_up`] did not reach a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HangupError {
    /// No live call of that tenant has that id.
    NotFound,
}

impl LiveCalls {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<CallId, LiveCall>> {
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn insert(&self, id: CallId, tenant_id: &str, token: Option<String>) -> mpsc::Receiver<Hangup> {
        let (hangup, asked) = mpsc::channel(1);
        let tenant_id = tenant_id.to_owned();
        self.lock().insert(
            id,
            LiveCall {
                tenant_id,
                token,
                session: None,
                hangup,
            },
        );
        asked
    }

    /// Registers a browser's call, which its WebRTC session's id also reaches (and, streamed
    /// to an agent, the stream's auth token as [`LiveCalls::token_matches`] checks it).
    fn insert_session(
        &self,
        id: CallId,
        session: (uuid::Uuid, crate::media::session::CandidateSink),
        tenant_id: &str,
        token: Option<String>,
    ) -> mpsc::Receiver<Hangup> {
        let asked = self.insert(id, tenant_id, token);
        if let Some(call) = self.lock().get_mut(&id) {
            call.session = Some(session);
        }
        asked
    }

    /// Whether `session` is a live WebRTC session of `tenant_id`.
    pub fn has_session(&self, tenant_id: &str, session: uuid::Uuid) -> bool {
        self.lock().values().any(|c| {
            c.tenant_id == tenant_id && c.session.as_ref().is_some_and(|(s, _)| *s == session)
        })
    }

    /// Hands a candidate the browser of WebRTC session `session` of `tenant_id` trickled to
    /// its leg.
    pub fn add_candidate(
        &self,
        tenant_id: &str,
        session: uuid::Uuid,
        candidate: str0m::Candidate,
    ) -> Result<(), HangupError> {
        let calls = self.lock();
        let (_, sink) = calls
            .values()
            .filter(|c| c.tenant_id == tenant_id)
            .find_map(|c| c.session.as_ref().filter(|(s, _)| *s == session))
            .ok_or(HangupError::NotFound)?;
        // A full shard queue loses the candidate; the browser's others, or its checks from
        // the address, still get through.
        let _ = sink.add(candidate);
        Ok(())
    }

    /// Asks the browser call of the WebRTC session `session` of `tenant_id` to end.
    pub fn hang_up_session(
        &self,
        tenant_id: &str,
        session: uuid::Uuid,
        why: &str,
    ) -> Result<(), HangupError> {
        let calls = self.lock();
        let call = calls
            .values()
            .find(|c| {
                c.tenant_id == tenant_id && c.session.as_ref().is_some_and(|(s, _)| *s == session)
            })
            .ok_or(HangupError::NotFound)?;
        let _ = call.hangup.try_send(Hangup {
            cause: HangupCause::ServerBye,
            why: why.to_owned(),
        });
        Ok(())
    }

    fn remove(&self, id: CallId) {
        self.lock().remove(&id);
    }

    /// Asks the live call `id` of tenant `tenant_id` to end, saying `why` in its record.
    /// A call asked already is left to end by the first request.
    pub fn hang_up(&self, tenant_id: &str, id: CallId, why: &str) -> Result<(), HangupError> {
        let calls = self.lock();
        let call = calls
            .get(&id)
            .filter(|c| c.tenant_id == tenant_id)
            .ok_or(HangupError::NotFound)?;
        // A full channel holds a hang-up already.
        let _ = call.hangup.try_send(Hangup {
            cause: HangupCause::AgentHangup,
            why: why.to_owned(),
        });
        Ok(())
    }

    /// Whether `password` is the stream auth token of the live call `id` of `tenant_id`
    /// (compared in constant time).
    pub fn token_matches(&self, tenant_id: &str, id: CallId, password: &str) -> bool {
        use subtle::ConstantTimeEq as _;
        self.lock().get(&id).is_some_and(|c| {
            c.tenant_id == tenant_id
                && c.token
                    .as_deref()
                    .is_some_and(|t| bool::from(t.as_bytes().ct_eq(password.as_bytes())))
        })
    }
}
