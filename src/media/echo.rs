//! The echo leg: hands the caller's media straight back, so that the caller hears their own
//! audio (RTP payloads as received, RFC 4733 telephone-events included, RFC 3550 §5.1) until
//! a call has a real far end. Sans-IO, with no network side and no timer.
//!
//! ```text
//!   bridge ──Media──> EchoLeg ──the same Media──> bridge
//! ```
//!
//! The echo keeps the sender's header and stream position; the leg that sends it on (the
//! carrier's [`super::rtp_leg::RtpLeg`]) puts it on its own SSRC, sequence numbers and
//! timestamps. Frames are echoed like packets.

use std::time::Instant;

use super::leg::{
    FRAME_SAMPLES, Frame, Input, Leg, LegEvent, Media, RtpMedia, StreamEvent, Transmit,
};
use super::rtp::RtpHeader;
use super::rtp_leg::MAX_DATAGRAM;

/// What the echo holds until the bridge takes it.
#[derive(Debug, Clone, Copy)]
enum Held {
    None,
    Rtp {
        header: RtpHeader,
        stream: StreamEvent,
        len: usize,
    },
    Frame {
        timestamp: u32,
        len: usize,
    },
}

/// The echo leg of one call.
#[derive(Debug)]
pub struct EchoLeg {
    held: Held,
    /// Media handed back.
    echoed: u64,
    /// Media too large to hold (longer than a datagram, or a frame over 20 ms).
    dropped: u64,
    payload: [u8; MAX_DATAGRAM],
    samples: [i16; FRAME_SAMPLES],
}

impl Default for EchoLeg {
    fn default() -> Self {
        EchoLeg {
            held: Held::None,
            echoed: 0,
            dropped: 0,
            payload: [0; MAX_DATAGRAM],
            samples: [0; FRAME_SAMPLES],
        }
    }
}

impl EchoLeg {
    pub fn new() -> Self {
        Self::default()
    }

    /// How much media was handed back, and how much was too large to hold.
    pub fn counts(&self) -> (u64, u64) {
        (self.echoed, self.dropped)
    }

    fn hold(&mut self, media: &Media<'_>) -> Option<Held> {
        match media {
            Media::Rtp(m) => {
                self.payload
                    .get_mut(..m.payload.len())?
                    .copy_from_slice(m.payload);
                Some(Held::Rtp {
                    header: m.header,
                    stream: m.stream,
                    len: m.payload.len(),
                })
            }
            Media::Frame(f) => {
                self.samples
                    .get_mut(..f.samples.len())?
                    .copy_from_slice(f.samples);
                Some(Held::Frame {
                    timestamp: f.timestamp,
                    len: f.samples.len(),
                })
            }
        }
    }
}

impl Leg for EchoLeg {
    fn handle_input(&mut self, _now: Instant, input: Input<'_>) {
        // The echo has no sockets: a datagram cannot reach it.
        let Input::Media(media) = input else {
            return;
        };
        match self.hold(&media) {
            Some(held) => self.held = held,
            None => self.dropped += 1,
        }
    }

    fn handle_timeout(&mut self, _now: Instant) {}

    fn poll_media(&mut self) -> Option<Media<'_>> {
        let held = std::mem::replace(&mut self.held, Held::None);
        let media = match held {
            Held::None => return None,
            Held::Rtp {
                header,
                stream,
                len,
            } => Media::Rtp(RtpMedia {
                header,
                stream,
                payload: self.payload.get(..len)?,
            }),
            Held::Frame { timestamp, len } => Media::Frame(Frame {
                timestamp,
                samples: self.samples.get(..len)?,
            }),
        };
        self.echoed += 1;
        Some(media)
    }

    fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        None
    }

    fn poll_event(&mut self) -> Option<LegEvent> {
        None
    }

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::origin;
    use crate::media::leg::{Datagram, Port};
    use crate::media::rtp::{Pt, Ssrc};

    fn header() -> RtpHeader {
        RtpHeader {
            marker: true,
            payload_type: Pt::new(101).unwrap(),
            sequence_number: 9,
            timestamp: 1234,
            ssrc: Ssrc(7),
        }
    }

    #[test]
    fn hands_back_packets_and_frames_as_they_came() {
        let now = origin();
        let mut echo = EchoLeg::new();
        assert_eq!(echo.poll_media(), None);
        let dtmf = RtpMedia {
            header: header(),
            stream: StreamEvent::Restart,
            payload: &[5, 0x8a, 0, 160],
        };
        echo.handle_input(now, Input::Media(Media::Rtp(dtmf)));
        assert_eq!(echo.poll_media(), Some(Media::Rtp(dtmf)));
        assert_eq!(echo.poll_media(), None);

        let samples: Vec<i16> = (0..160).map(|i| i * 100 - 8000).collect();
        let frame = Frame {
            timestamp: 320,
            samples: &samples,
        };
        echo.handle_input(now, Input::Media(Media::Frame(frame)));
        assert_eq!(echo.poll_media(), Some(Media::Frame(frame)));
        assert_eq!(echo.poll_transmit(), None);
        assert_eq!((echo.poll_event(), echo.poll_timeout()), (None, None));
        assert_eq!(echo.counts(), (2, 0));
    }

    #[test]
    fn datagrams_are_ignored_and_oversized_media_dropped() {
        let now = origin();
        let mut echo = EchoLeg::new();
        echo.handle_input(
            now,
            Input::Datagram(Datagram {
                port: Port::Rtp,
                src: "127.0.0.1:9".parse().unwrap(),
                data: b"x",
            }),
        );
        let long = [0i16; FRAME_SAMPLES + 1];
        echo.handle_input(
            now,
            Input::Media(Media::Frame(Frame {
                timestamp: 0,
                samples: &long,
            })),
        );
        assert_eq!(echo.poll_media(), None);
        assert_eq!(echo.counts(), (0, 1));
    }
}
