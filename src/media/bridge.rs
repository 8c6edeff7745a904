//! The bridge: joins two [`Leg`]s of a call, moving the media each hands out into the other
//! (the translator role of RFC 3550 §7, without mixing), sans-IO.
//!
//! ```text
//!   datagrams <──> [ leg A ] ──poll_media──> handle_input(Media) ──> [ leg B ] <──> ...
//!                            <──handle_input(Media)── poll_media ──
//! ```
//!
//! After any input to either leg the bridge moves media both ways until neither hands out
//! more (at most [`MAX_ROUNDS`] rounds, so that two legs echoing each other cannot spin);
//! what the legs want sent and what they report is then pulled through
//! [`Bridge::poll_transmit`] and [`Bridge::poll_event`], naming the leg. The driver follows
//! the legs' own contract: drain both after every input, wake at [`Bridge::poll_timeout`].

use std::time::Instant;

use super::leg::{Input, Leg, LegEvent, Transmit};

/// Most back-and-forth moves after one input.
pub const MAX_ROUNDS: usize = 8;

/// One of the two legs of a bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

/// Two legs joined.
#[derive(Debug)]
pub struct Bridge<A, B> {
    a: A,
    b: B,
}

impl<A: Leg, B: Leg> Bridge<A, B> {
    pub fn new(a: A, b: B) -> Self {
        Bridge { a, b }
    }

    pub fn a(&self) -> &A {
        &self.a
    }

    pub fn b(&self) -> &B {
        &self.b
    }

    /// The leg on side A, for inputs outside the [`Leg`] face (an agent stream's messages).
    /// Media such an input makes a leg hand out moves at the bridge's next input or timeout.
    pub fn a_mut(&mut self) -> &mut A {
        &mut self.a
    }

    /// The leg on side B, as [`Bridge::a_mut`].
    pub fn b_mut(&mut self) -> &mut B {
        &mut self.b
    }

    /// Gives `input` to the leg on `side` at `now`, then moves media between the legs.
    pub fn handle_input(&mut self, now: Instant, side: Side, input: Input<'_>) {
        match side {
            Side::A => self.a.handle_input(now, input),
            Side::B => self.b.handle_input(now, input),
        }
        self.pump(now);
    }

    /// Wakes the legs whose deadline has come, then moves media between them.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.a.poll_timeout().is_some_and(|t| t <= now) {
            self.a.handle_timeout(now);
        }
        if self.b.poll_timeout().is_some_and(|t| t <= now) {
            self.b.handle_timeout(now);
        }
        self.pump(now);
    }

    /// A datagram one of the legs wants sent; call until `None` after every input.
    pub fn poll_transmit(&mut self) -> Option<(Side, Transmit<'_>)> {
        if let Some(t) = self.a.poll_transmit() {
            return Some((Side::A, t));
        }
        self.b.poll_transmit().map(|t| (Side::B, t))
    }

    /// What one of the legs reports; call until `None` after every input.
    pub fn poll_event(&mut self) -> Option<(Side, LegEvent)> {
        if let Some(e) = self.a.poll_event() {
            return Some((Side::A, e));
        }
        self.b.poll_event().map(|e| (Side::B, e))
    }

    /// The earlier of the legs' deadlines.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.a.poll_timeout(), self.b.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn pump(&mut self, now: Instant) {
        for _ in 0..MAX_ROUNDS {
            let mut moved = false;
            while let Some(media) = self.a.poll_media() {
                self.b.handle_input(now, Input::Media(media));
                moved = true;
            }
            while let Some(media) = self.b.poll_media() {
                self.a.handle_input(now, Input::Media(media));
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::origin;
    use crate::media::echo::EchoLeg;
    use crate::media::leg::{Datagram, FRAME_SAMPLES, Frame, Media, Port};
    use crate::media::rtp::{Pt, RtpHeader, RtpPacket, Ssrc, build};
    use crate::media::rtp_leg::RtpLeg;
    use crate::media::session::MediaConfig;
    use std::net::SocketAddr;
    use std::time::Duration;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn packet(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
        let h = RtpHeader {
            marker: seq == 0,
            payload_type: Pt::new(pt).unwrap(),
            sequence_number: seq,
            timestamp: ts,
            ssrc: Ssrc(ssrc),
        };
        let mut out = vec![0u8; 12 + payload.len()];
        let n = build(&h, payload, &mut out).unwrap();
        out.truncate(n);
        out
    }

    fn echo_bridge(t0: Instant, timeout: Duration) -> Bridge<RtpLeg, EchoLeg> {
        let config = MediaConfig {
            // The offer names the caller's IP with another port, as behind a NAT.
            remote: addr("203.0.113.5:9"),
            audio_pt: Pt::PCMU,
            event_pt: Pt::new(101),
            media_timeout: timeout,
        };
        Bridge::new(
            RtpLeg::with_ids(t0, &config, 42, 1000, 50_000),
            EchoLeg::new(),
        )
    }

    fn from(src: SocketAddr, data: &[u8]) -> Input<'_> {
        Input::Datagram(Datagram {
            port: Port::Rtp,
            src,
            data,
        })
    }

    #[test]
    fn fifty_packets_come_back_as_the_legs_own_stream_to_the_latched_source_only() {
        let t0 = origin();
        let mut bridge = echo_bridge(t0, Duration::from_secs(30));
        let caller = addr("203.0.113.5:40000");
        let stranger = addr("198.51.100.9:40000");
        let mut echoed = Vec::new();
        for seq in 0..50u16 {
            let now = t0 + Duration::from_millis(20) * u32::from(seq);
            let payload = [seq as u8; 160];
            let d = packet(0, seq, 8000 + u32::from(seq) * 160, 0x1234, &payload);
            if seq == 10 || seq == 20 {
                bridge.handle_input(now, Side::A, from(stranger, &d));
                assert_eq!(bridge.poll_transmit(), None);
            }
            bridge.handle_input(now, Side::A, from(caller, &d));
            let (side, t) = bridge.poll_transmit().unwrap();
            assert_eq!((side, t.port, t.dest), (Side::A, Port::Rtp, caller));
            let p = RtpPacket::parse(t.data).unwrap();
            assert_eq!(p.payload(), &payload);
            echoed.push(p.header);
            assert_eq!(bridge.poll_transmit(), None);
            assert_eq!(bridge.poll_event(), None);
        }
        for (i, h) in echoed.iter().enumerate() {
            let i = i as u32;
            assert_eq!(h.ssrc, Ssrc(42));
            assert_eq!(h.payload_type, Pt::PCMU);
            assert_eq!(h.sequence_number, 1000 + i as u16);
            assert_eq!(h.timestamp, 50_000 + 160 * i);
            assert_eq!(h.marker, i == 0);
        }
        let stats = bridge.a().stats();
        assert_eq!((stats.packets_in, stats.transmits), (50, 50));
        assert_eq!(stats.latch.dropped_not_latched_source, 2);
        assert_eq!(stats.latch.dropped_total(), 2);
        assert_eq!(bridge.b().counts(), (50, 0));
        assert_eq!(bridge.a().latched(), Some(caller));
    }

    #[test]
    fn telephone_events_are_echoed_like_audio_and_rtcp_is_not() {
        let t0 = origin();
        let mut bridge = echo_bridge(t0, Duration::ZERO);
        let caller = addr("203.0.113.5:40000");
        let dtmf = packet(101, 0, 8000, 1, &[5, 0x8a, 0, 160]);
        bridge.handle_input(t0, Side::A, from(caller, &dtmf));
        let (_, t) = bridge.poll_transmit().unwrap();
        let p = RtpPacket::parse(t.data).unwrap();
        assert_eq!(p.header.payload_type, Pt::new(101).unwrap());
        assert_eq!(p.payload(), &[5, 0x8a, 0, 160]);
        let rr = [0x80, 201, 0, 1, 0, 0, 0, 1];
        bridge.handle_input(t0, Side::A, from(caller, &rr));
        assert_eq!(bridge.poll_transmit(), None);
        assert_eq!(bridge.a().stats().rtcp_in, 1);
    }

    #[test]
    fn the_media_timeout_of_a_leg_is_the_bridges() {
        let t0 = origin();
        let timeout = Duration::from_secs(20);
        let mut bridge = echo_bridge(t0, timeout);
        assert_eq!(bridge.poll_timeout(), Some(t0 + timeout));
        // Too early: a spurious wake-up is a no-op.
        bridge.handle_timeout(t0 + Duration::from_secs(19));
        assert_eq!(bridge.poll_event(), None);
        bridge.handle_timeout(t0 + timeout);
        assert_eq!(bridge.poll_event(), Some((Side::A, LegEvent::MediaTimeout)));
        assert_eq!(bridge.poll_event(), None);
        assert_eq!(bridge.poll_timeout(), None);
    }

    #[test]
    fn frames_pass_through_and_two_echoes_stop_after_max_rounds() {
        let t0 = origin();
        let mut echoes = Bridge::new(EchoLeg::new(), EchoLeg::new());
        let samples = [7i16; FRAME_SAMPLES];
        let frame = Frame {
            timestamp: 160,
            samples: &samples,
        };
        echoes.handle_input(t0, Side::A, Input::Media(Media::Frame(frame)));
        // A gives the frame to B, B back to A, and so on: bounded.
        assert_eq!(
            echoes.a().counts().0 + echoes.b().counts().0,
            2 * MAX_ROUNDS as u64
        );
        assert_eq!(echoes.poll_transmit(), None);
        assert_eq!(echoes.poll_timeout(), None);
    }
}
