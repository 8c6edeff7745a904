//! Media: RTP/RTCP packets (RFC 3550), symmetric RTP latching (RFC 4961), the RTP port pool
//! (RFC 3264 §5.1 ports), G.711 audio, the legs of a call's media and the shards that run
//! them.
//!
//! `rtp`, `latch`, `leg`, `rtp_leg`, `echo`, `bridge`, `g711`, `jitter`, `dtmf` and `stream`
//! do no IO and read no clock: every media endpoint is a [`leg::Leg`] driven by `now`, and a
//! [`bridge::Bridge`] joins two. [`g711`] converts µ-law and A-law to and from linear audio;
//! [`jitter::JitterBuffer`] (one 20 ms frame per 20 ms slot from the caller's RTP, RFC 3550)
//! and [`dtmf::DtmfDetector`] (one digit per RFC 4733 event, and SIP INFO's DTMF bodies) are
//! the parts an agent stream leg is built from; [`stream`] is the agent stream (Twilio Media
//! Streams or Exotel JSON over a WebSocket the driver owns), a leg that sends the caller's
//! audio to the agent as messages and plays the agent's back in 20 ms frames.
//! [`agent::AgentLeg`] joins them into the agent side of a stream call, and [`ws`] is the
//! WebSocket client protocol (RFC 6455) its stream runs over.
//! [`recording`] lays a recorded call's two sides out as a stereo WAV's frames, and
//! [`recorder`] is the thread that writes them to files off the shards.
//! `ports`, `shard` and `runtime` are the IO edge: one event loop per core
//! ([`runtime::MediaRuntime`]), each owning whole calls, with no task per call; a stream
//! call's agent socket (TCP, or TLS by rustls) is registered with its shard's loop too.
//! Each shard measures how late its stream sessions' RTP leaves against the playout
//! deadlines ([`lateness::SendLateness`]) and flushes that to the metrics once a second.
//!
//! A call allocates an [`ports::RtpPorts`] pair through [`runtime::MediaRuntime::allocate`]
//! before answering (an empty pool is a 503), puts [`ports::RtpPorts::rtp_port`] in its SDP
//! answer, and hands the pair to [`runtime::MediaRuntime::start`] once answered; the
//! [`session::MediaSession`] it gets back hangs the session up and awaits its report. A call
//! to an AI agent uses [`runtime::MediaRuntime::start_stream`] instead, at once (before
//! answering: the agent's silence is the early media), with an [`agent::AgentStart`]; it
//! also gets [`agent::AgentNotice`]s (connected, unreachable, digits, clears) and can hand
//! the session SIP INFO digits ([`session::MediaSession::dtmf`]).
//!
//! ```text
//!   call ──allocate──> PortPool (shard chosen, sockets registered with its loop)
//!   call ──start / hangup──> shard queue ──> Shard loop: Bridge(RtpLeg, EchoLeg)
//!   call ──start_stream / dtmf / hangup──> shard queue ──> Bridge(RtpLeg, AgentLeg) + WebSocket
//!   call <──MediaReport── shard            call <──AgentNotice── shard
//! ```

pub mod agent;
mod agent_conn;
pub mod bridge;
pub mod dtmf;
pub mod echo;
pub mod g711;
pub mod jitter;
pub mod latch;
pub mod lateness;
pub mod leg;
pub mod ports;
pub mod recorder;
pub mod recording;
pub mod rtp;
pub mod rtp_leg;
pub mod runtime;
pub mod session;
pub mod shard;
pub mod stream;
mod wake_timer;
pub mod webrtc;
pub mod ws;

pub use agent::{AgentNotice, AgentStart};
