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

#[cfg(test)]
mod tests;
#[cfg(test)]
mod uac_tests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::clock::WallClock;
use crate::gate::Admitted;
use crate::media::ports::RtpPorts;
use crate::media::runtime::MediaRuntime;
use crate::media::session::{self, MediaSession};
use crate::routing::admission::Admission;
use crate::routing::directory::Directory;
use crate::sip::message::Request;
use crate::sip::transaction::TransactionKey;
use crate::store::{AttemptLog, CallWriter};
use crate::transport::Peer;
use crate::ua::{self, CallKey};

pub(crate) use throttle::Throttle;
use uac::Uac;
pub use uas::CallSettings;
use uas::{MediaEnd, Output, Uas};

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
        }
    }
}

impl<M: Machine> Call<M> {
    pub async fn run(mut self) {
        let call_id = self.machine.sip_call_id();
        let span = tracing::debug_span!("call", sip_call_id = %call_id);
        tracing::Instrument::instrument(self.drive(), span).await;
        // Dropping the session hangs it up.
        drop(self.media.take());
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
                    let end = match report.end {
                        session::MediaEnd::MediaTimeout => MediaEnd::Timeout,
                        session::MediaEnd::Hangup
                        | session::MediaEnd::Socket(_)
                        | session::MediaEnd::Shutdown
                        | session::MediaEnd::AgentHangup
                        | session::MediaEnd::AgentDisconnected
                        | session::MediaEnd::AgentUnreachable(_) => MediaEnd::Failed,
                    };
                    self.machine.handle_media_end(Instant::now(), end);
                }
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
                Output::StopMedia => {
                    if let Some(mut media) = self.media.take()
                        && let Err(e) = media.hangup()
                    {
                        // Dropping the session tries again.
                        tracing::warn!(error = %e, "media hangup not queued");
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

/// The media session's end report, when it runs; never ready otherwise.
async fn media_end(media: &mut Option<MediaSession>) -> session::MediaReport {
    match media {
        Some(session) => session.ended().await,
        None => std::future::pending().await,
    }
}
