//! The call: one task per inbound call driving its sans-IO machine ([`uas::Uas`]).
//!
//! The machine owns every decision about its call (routing, admission, SDP, the dialog,
//! the record); this driver owns what does IO for it: the mailbox from the endpoint, the
//! record writer, the RTP ports and the media leg, and the one timer the machine asks for.
//! It is, with the endpoint's driver, the only place on the call path that reads the clock.

mod record;
mod throttle;
pub mod uas;

#[cfg(test)]
mod tests;

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

/// One inbound call's driver.
pub struct Call {
    ctx: Arc<CallContext>,
    core: mpsc::Sender<Command>,
    key: CallKey,
    peer: Peer,
    machine: Uas<Peer>,
    events: mpsc::Receiver<CallEvent>,
    ports: Option<RtpPorts>,
    media: Option<MediaSession>,
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

    pub async fn run(mut self) {
        let call_id = self
            .machine
            .invite()
            .headers()
            .call_id()
            .unwrap_or_default()
            .to_owned();
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
        self.machine.start(&self.ctx.directory, &self.ctx.admission);
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
                        | session::MediaEnd::Shutdown => MediaEnd::Failed,
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
