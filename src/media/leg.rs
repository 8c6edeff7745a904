//! The media leg: the one sans-IO face of every media endpoint of a call (an RTP end system
//! of RFC 3550 §2, or a source or sink of decoded audio), and the units legs exchange.
//!
//! A leg has two sides. Its network side takes datagrams ([`Input::Datagram`]) and hands out
//! datagrams to send ([`Leg::poll_transmit`]); a leg without a network of its own (echo, a
//! recorder) has neither. Its bridge side takes media ([`Input::Media`]) and hands out
//! media ([`Leg::poll_media`]); a [`super::bridge::Bridge`] moves what one leg hands out
//! into the other. A leg reads no clock and does no IO: the time is passed in, and it asks
//! to be woken at [`Leg::poll_timeout`].
//!
//! ```text
//!            datagrams                  media                  media
//!   socket <───────────> [ RTP leg ] <───────> Bridge <───────> [ echo leg ]
//!                 handle_input / poll_transmit    handle_input(Media) / poll_media
//! ```
//!
//! Media is either an RTP packet as carried ([`Media::Rtp`]: G.711 audio and RFC 4733
//! telephone-events pass through untouched, with the sender's timeline) or a 20 ms frame of
//! 16-bit linear audio ([`Media::Frame`]) for legs that must see samples: an agent stream
//! re-framing the agent's audio, a recorder, a mixer. A leg that produces frames paces them
//! by deadline: `poll_timeout` returns the next 20 ms slot (start + n * 20 ms, skipping slots
//! that were missed rather than bunching them) and `handle_timeout` emits the frame due, or
//! silence when nothing is queued. A leg that consumes frames but speaks RTP on its network
//! encodes them with its negotiated codec; one that gets a kind it cannot carry drops it and
//! counts it.
//!
//! The calling contract, as for every machine of this crate: after any `handle_*` call,
//! drain [`Leg::poll_media`], [`Leg::poll_transmit`] and [`Leg::poll_event`] until each says
//! `None`, then wake the leg at [`Leg::poll_timeout`]. An output borrows the leg and lives
//! until the next call on it; a leg keeps one output of each kind waiting, and a new input
//! replaces one that was not taken.

use std::net::SocketAddr;
use std::time::Instant;

use super::rtp::RtpHeader;

/// Samples in a 20 ms frame at 8 kHz, the clock of G.711 and of the agent streams.
pub const FRAME_SAMPLES: usize = 160;

/// Which of a leg's sockets a datagram came in on or goes out of (RFC 3550 §11: RTP on an
/// even port, RTCP on the next).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    Rtp,
    Rtcp,
}

/// A datagram received on one of the leg's sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram<'a> {
    pub port: Port,
    pub src: SocketAddr,
    pub data: &'a [u8],
}

/// A datagram the leg wants sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit<'a> {
    pub port: Port,
    pub dest: SocketAddr,
    pub data: &'a [u8],
}

/// Where an RTP packet stands in its sender's stream, so that a leg re-sending it on a
/// timeline of its own knows when the sender's sequence and timestamps start over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEvent {
    /// The next packet of the stream.
    Continue,
    /// The stream's first packet.
    Start,
    /// The first packet of a new stream from the same source (a new SSRC).
    Restart,
}

/// An RTP packet's header and payload (RFC 3550 §5.1), as the sending leg received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpMedia<'a> {
    pub header: RtpHeader,
    pub stream: StreamEvent,
    pub payload: &'a [u8],
}

/// 20 ms of 16-bit linear audio at 8 kHz ([`FRAME_SAMPLES`] samples).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The first sample's place on the producer's 8 kHz clock (wrapping, as RTP's).
    pub timestamp: u32,
    pub samples: &'a [i16],
}

/// What one leg hands another through a bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media<'a> {
    Rtp(RtpMedia<'a>),
    Frame(Frame<'a>),
}

/// An input to a leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input<'a> {
    /// From the network side.
    Datagram(Datagram<'a>),
    /// From the bridge side: what the other leg handed out.
    Media(Media<'a>),
}

/// What a leg reports about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegEvent {
    /// No accepted media for the leg's media timeout: the call is to end (RELIABILITY 36).
    MediaTimeout,
    /// The far end went away (a browser that closed, vanished or never connected): why.
    PeerGone(&'static str),
}

/// A media endpoint, driven by inputs and time. See the module documentation for the
/// calling contract.
pub trait Leg {
    /// Takes one input at `now`.
    fn handle_input(&mut self, now: Instant, input: Input<'_>);

    /// Tells the leg that `now` has come; a call before [`Leg::poll_timeout`] is a no-op.
    fn handle_timeout(&mut self, now: Instant);

    /// Media for the other leg; call until `None` after every input.
    fn poll_media(&mut self) -> Option<Media<'_>>;

    /// A datagram to send; call until `None` after every input.
    fn poll_transmit(&mut self) -> Option<Transmit<'_>>;

    /// What happened to the leg; call until `None` after every input.
    fn poll_event(&mut self) -> Option<LegEvent>;

    /// When the leg next needs [`Leg::handle_timeout`]; `None` when nothing is due. Ask
    /// again after every input: the deadline moves.
    fn poll_timeout(&self) -> Option<Instant>;
}
