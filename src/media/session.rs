//! A call's handle on its media session: the session itself lives on a media shard (see
//! [`super::shard`]); the call holds this handle, sends it commands through the shard's
//! bounded queue and awaits the session's end report (RFC 3550 §6.4 counts kept per call).
//!
//! A command that finds the queue full is an error ([`MediaError::Busy`]) the caller sees at
//! once, never a wait. The queue holds four commands per port pair of the pool, more than a
//! pair can have in flight (its call's start and hangup, and a late hangup of the call before
//! it), so it is full only if the shard is stuck.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

pub use super::agent::{AgentNotice, AgentStart};
use super::dtmf::Digit;
use super::latch::LatchStats;
use super::rtp::Pt;
use super::shard::{Command, ShardLink};
use super::stream::StreamStats;

/// What a media session needs from the answered call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaConfig {
    /// The RTP address of the SDP offer (its IP is what the latch accepts first).
    pub remote: SocketAddr,
    /// The audio payload type of the answer.
    pub audio_pt: Pt,
    /// The telephone-event payload type of the answer, when negotiated.
    pub event_pt: Option<Pt>,
    /// End the session after this long without accepted RTP; zero never ends it.
    pub media_timeout: Duration,
}

/// Why a media session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEnd {
    /// The call hung up ([`MediaSession::hangup`], or the handle was dropped).
    Hangup,
    /// No accepted RTP for `media_timeout` (RELIABILITY 36: the call is torn down).
    MediaTimeout,
    /// Receiving on a socket failed with an error that does not pass.
    Socket(io::ErrorKind),
    /// The media runtime stopped with the server.
    Shutdown,
    /// A stream session's agent hung up: it closed the WebSocket or sent `stop`.
    AgentHangup,
    /// A stream session's WebSocket died mid-call (reset, or EOF without a close frame), or
    /// the agent broke the protocol.
    AgentDisconnected,
    /// A stream session's agent could not be reached (the reason, as in
    /// [`AgentNotice::Unreachable`]): the call ends with 480 `Reason: Q.850;cause=20`.
    AgentUnreachable(String),
    /// A WebRTC leg's browser went away (closed, vanished, or never connected): why.
    PeerGone(&'static str),
}

/// Counts of one media session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaStats {
    /// RTP packets accepted from the caller.
    pub packets_in: u64,
    /// RTP packets sent to the caller.
    pub packets_out: u64,
    /// RTCP packets received (on the RTCP port, or muxed on the RTP port), then discarded.
    pub rtcp_in: u64,
    /// Sends that failed (the packet is lost; the session goes on).
    pub send_errors: u64,
    /// The latch's counts, with drops by reason.
    pub latch: LatchStats,
    /// A stream session's notices dropped because the call's channel was full.
    pub notices_dropped: u64,
    /// A stream session's messages to the agent dropped because the agent did not read
    /// them (the WebSocket's output was full).
    pub messages_dropped: u64,
}

/// How a media session ended and what it carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaReport {
    pub end: MediaEnd,
    pub stats: MediaStats,
    /// Where the caller's media came from, if it ever came.
    pub latched: Option<SocketAddr>,
    /// A stream session's counts of its agent stream; `None` for an echo session.
    pub stream: Option<StreamStats>,
    /// A recorded session's account of its recording; `None` when not recorded.
    pub recording: Option<RecordingReport>,
}

/// What a recorded session handed its recording writer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordingReport {
    /// Slots of 20 ms of call time recorded: the file's length.
    pub slots: u64,
    /// Batches the writer's queue had no room for (silence in the file).
    pub batches_dropped: u64,
    /// Caller frames too late for their slot.
    pub late_frames: u64,
}

impl MediaReport {
    /// The report of a session that the runtime dropped without one (it stopped).
    fn shutdown() -> Self {
        MediaReport {
            end: MediaEnd::Shutdown,
            stats: MediaStats::default(),
            latched: None,
            stream: None,
            recording: None,
        }
    }
}

/// Why a command did not reach a media shard. Node-wide overload: 503 for a new call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// The shard's command queue is full.
    #[error("the media shard's command queue is full")]
    Busy,
    /// The media runtime has stopped.
    #[error("the media runtime has stopped")]
    Stopped,
    /// [`MediaSession::dtmf`] was given a character that is no DTMF key.
    #[error("{0:?} is not a DTMF digit (0-9, *, #, A-D)")]
    InvalidDigit(char),
}

impl MediaError {
    /// The SIP status to refuse a new call (or, for a digit, the INFO) with.
    pub fn sip_status(&self) -> u16 {
        match self {
            MediaError::InvalidDigit(_) => 400,
            MediaError::Busy | MediaError::Stopped => 503,
        }
    }
}

#[derive(Debug, Clone)]
enum State {
    Live,
    HungUp,
    Ended(Box<MediaReport>),
}

/// The call's side of one media session on a shard. Dropping it hangs the session up.
#[derive(Debug)]
pub struct MediaSession {
    link: Arc<ShardLink>,
    port: u16,
    lease: u64,
    report: oneshot::Receiver<MediaReport>,
    state: State,
}

impl MediaSession {
    pub(crate) fn new(
        link: Arc<ShardLink>,
        port: u16,
        lease: u64,
        report: oneshot::Receiver<MediaReport>,
    ) -> Self {
        MediaSession {
            link,
            port,
            lease,
            report,
            state: State::Live,
        }
    }

    /// The RTP port the session runs on.
    pub fn rtp_port(&self) -> u16 {
        self.port
    }

    /// A handle that reaches the session's WebRTC leg from elsewhere (the API's trickled
    /// candidates) while this one waits for its end.
    pub fn candidates(&self) -> CandidateSink {
        CandidateSink {
            link: Arc::clone(&self.link),
            port: self.port,
            lease: self.lease,
        }
    }

    /// Ends the session; its ports go back to the pool once the shard has run the command.
    /// A stream session first sends `stop` to its agent and closes the WebSocket (a close
    /// frame, then a bounded wait for the agent's). A second call, or one after the session
    /// ended, does nothing. On an error the session
    /// is still up and dropping the handle tries again.
    pub fn hangup(&mut self) -> Result<(), MediaError> {
        if !matches!(self.state, State::Live) {
            return Ok(());
        }
        self.link.send(Command::Hangup {
            port: self.port,
            lease: self.lease,
        })?;
        self.state = State::HungUp;
        Ok(())
    }

    /// Sends a digit the call received (a SIP INFO) to a stream session's agent as a `dtmf`
    /// message (0-9, *, #, A-D; a-d taken as A-D). An echo session ignores it, and so does
    /// a session that ended or is hung up.
    pub fn dtmf(&mut self, digit: char) -> Result<(), MediaError> {
        if Digit::from_char(digit).is_none() {
            return Err(MediaError::InvalidDigit(digit));
        }
        if !matches!(self.state, State::Live) {
            return Ok(());
        }
        self.link.send(Command::Dtmf {
            port: self.port,
            lease: self.lease,
            digit,
        })
    }

    /// Waits for the session to end and returns its report. Cancel-safe, and callable again
    /// after it returned (it returns the same report).
    pub async fn ended(&mut self) -> MediaReport {
        if let State::Ended(report) = &self.state {
            return (**report).clone();
        }
        let report = (&mut self.report)
            .await
            .unwrap_or_else(|_| MediaReport::shutdown());
        self.state = State::Ended(Box::new(report.clone()));
        report
    }
}

/// Where a browser's trickled ICE candidates go: its session's WebRTC leg, on its shard.
#[derive(Debug, Clone)]
pub struct CandidateSink {
    link: Arc<ShardLink>,
    port: u16,
    lease: u64,
}

impl CandidateSink {
    /// Hands the leg one remote candidate (an SDP `candidate:` attribute value, parsed
    /// already); a session that ended ignores it.
    pub fn add(&self, candidate: str0m::Candidate) -> Result<(), MediaError> {
        self.link.send(Command::Candidate {
            port: self.port,
            lease: self.lease,
            candidate: Box::new(candidate),
        })
    }
}

impl Drop for MediaSession {
    fn drop(&mut self) {
        if matches!(self.state, State::Live) {
            let _ = self.hangup();
        }
    }
}
