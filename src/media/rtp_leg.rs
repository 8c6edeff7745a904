//! The carrier's RTP leg: the socket side of a call's media (RFC 3550 §5.1, §6, §8.2),
//! latched on the caller's real source and sent to it only (symmetric RTP, RFC 4961), sans-IO.
//!
//! Every datagram from the call's RTP port goes through the [`Latch`] (RELIABILITY 37–39):
//! accepted RTP is handed to the bridge as [`Media::Rtp`] with its header and payload, muxed
//! or separate RTCP is counted and discarded, the rest is dropped and counted by reason.
//! Media from the bridge is sent to the latched source on the leg's own timeline
//! ([`Restamp`]): its own SSRC, sequence numbers counting packets sent, and timestamps that
//! keep the sender's spacing, so that the carrier sees one continuous stream whatever the
//! far leg does. Only a fixed header and the payload go out (no CSRCs, extension or padding).
//! Frames of linear audio from the bridge (an agent stream's playout) are encoded with the
//! answer's codec (PCMU or PCMA), one packet per frame, and restamped the same way.
//!
//! ```text
//!   caller ──RTP──> Latch ──Accept──> poll_media ──> bridge
//!   caller <──RTP── Restamp <──────── handle_input(Media) <── bridge
//!   caller ──RTCP─> counted and discarded
//! ```
//!
//! After `media_timeout` without accepted RTP the leg reports [`LegEvent::MediaTimeout`],
//! once; the deadline moves lazily with each accepted packet (no timer reset per packet).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::g711;
use super::latch::{Latch, LatchEvent, LatchStats, PtSet, Verdict};
use super::leg::{
    Datagram, Frame, Input, Leg, LegEvent, Media, Port, RtpMedia, StreamEvent, Transmit,
};
use super::rtp::{FIXED_HEADER_LEN, Pt, RtpHeader, Ssrc};
use super::session::MediaConfig;
use crate::kinds::Codec;

/// Largest datagram handled; longer ones are truncated by the socket and fail to parse or
/// echo short, which an Ethernet-sized path never produces.
pub const MAX_DATAGRAM: usize = 1500;

/// Timestamp step used when a new SSRC starts before any step was seen: 20 ms at 8 kHz.
const DEFAULT_STEP: u32 = 160;

/// Largest timestamp step taken as the stream's packet interval (120 ms at 16 kHz); larger
/// jumps are silence gaps, not the interval.
const MAX_STEP: u32 = 1920;

/// Longest media timeout honoured; longer ones are cut to this (a year: in effect never).
const MAX_MEDIA_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

/// Counts of one RTP leg.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RtpLegStats {
    /// RTP packets accepted from the caller.
    pub packets_in: u64,
    /// RTP packets handed out to be sent to the caller.
    pub transmits: u64,
    /// RTCP packets received (on the RTCP port, or muxed on the RTP port), then discarded.
    pub rtcp_in: u64,
    /// Media from the bridge that could not be sent: RTP before the caller's source is
    /// latched, too long for a datagram, or frames when the answer's audio is not G.711.
    pub unsendable: u64,
    /// The latch's counts, with drops by reason.
    pub latch: LatchStats,
}

/// What the leg has to hand out; one at a time, in `buf`.
#[derive(Debug, Clone, Copy)]
enum Pending {
    None,
    Media {
        header: RtpHeader,
        stream: StreamEvent,
        len: usize,
    },
    Transmit {
        dest: SocketAddr,
        len: usize,
    },
}

/// The socket side of a call's media: one per call, on the call's RTP/RTCP ports.
#[derive(Debug)]
pub struct RtpLeg {
    latch: Latch,
    restamp: Restamp,
    /// Zero: never times out. Capped so that adding it to a time point cannot overflow.
    timeout: Duration,
    last_media: Instant,
    timed_out: bool,
    event: Option<LegEvent>,
    stats: RtpLegStats,
    pending: Pending,
    /// The offer's address: where frames go before the caller's source is latched.
    remote: SocketAddr,
    /// The answer's audio payload type, and its codec when it is G.711.
    audio_pt: Pt,
    codec: Option<Codec>,
    /// Frames were sent before: the next one continues their stream.
    framing: bool,
    buf: [u8; MAX_DATAGRAM],
}

impl RtpLeg {
    /// A leg started at `now`, sending with a random SSRC, first sequence number and
    /// timestamp base.
    pub fn new(now: Instant, config: &MediaConfig) -> Self {
        Self::with_ids(now, config, rand::random(), rand::random(), rand::random())
    }

    /// A leg with the given SSRC, first sequence number and timestamp base.
    pub fn with_ids(
        now: Instant,
        config: &MediaConfig,
        ssrc: u32,
        first_seq: u16,
        base: u32,
    ) -> Self {
        let mut pts = PtSet::new(&[config.audio_pt]);
        if let Some(pt) = config.event_pt {
            pts = pts.with(pt);
        }
        RtpLeg {
            latch: Latch::new(config.remote, pts),
            restamp: Restamp::new(ssrc, first_seq, base),
            timeout: config.media_timeout.min(MAX_MEDIA_TIMEOUT),
            last_media: now,
            timed_out: false,
            event: None,
            stats: RtpLegStats::default(),
            pending: Pending::None,
            remote: config.remote,
            audio_pt: config.audio_pt,
            codec: match config.audio_pt {
                Pt::PCMU => Some(Codec::Pcmu),
                Pt::PCMA => Some(Codec::Pcma),
                _ => None,
            },
            framing: false,
            buf: [0; MAX_DATAGRAM],
        }
    }

    /// Counts so far, with the latch's.
    pub fn stats(&self) -> RtpLegStats {
        RtpLegStats {
            latch: self.latch.stats(),
            ..self.stats
        }
    }

    /// Where the caller's media comes from, once it came.
    pub fn latched(&self) -> Option<SocketAddr> {
        self.latch.latched_addr()
    }

    fn handle_datagram(&mut self, now: Instant, datagram: Datagram<'_>) {
        if datagram.port == Port::Rtcp {
            // RTCP reports are not used.
            self.stats.rtcp_in += 1;
            return;
        }
        let (header, event, payload) = match self.latch.handle_datagram(datagram.src, datagram.data)
        {
            Verdict::Accept { packet, event } => (packet.header, event, packet.payload()),
            Verdict::Rtcp(_) => {
                self.stats.rtcp_in += 1;
                return;
            }
            Verdict::Drop(_) => return,
        };
        self.stats.packets_in += 1;
        self.last_media = now;
        let Some(slot) = self.buf.get_mut(..payload.len()) else {
            return;
        };
        slot.copy_from_slice(payload);
        let stream = match event {
            LatchEvent::Continue => StreamEvent::Continue,
            LatchEvent::Latched => StreamEvent::Start,
            LatchEvent::Rebased { .. } => StreamEvent::Restart,
        };
        self.pending = Pending::Media {
            header,
            stream,
            len: payload.len(),
        };
    }

    fn send(&mut self, media: &RtpMedia<'_>) {
        let Some(dest) = self.latch.latched_addr() else {
            self.stats.unsendable += 1;
            return;
        };
        let len = FIXED_HEADER_LEN + media.payload.len();
        let Some(out) = self.buf.get_mut(..len) else {
            self.stats.unsendable += 1;
            return;
        };
        let header = self
            .restamp
            .next(&media.header, media.stream, self.latch.latched_ssrc());
        let (fixed, body) = out.split_at_mut(FIXED_HEADER_LEN);
        if header.write(fixed).is_err() {
            self.stats.unsendable += 1;
            return;
        }
        body.copy_from_slice(media.payload);
        self.stats.transmits += 1;
        self.pending = Pending::Transmit { dest, len };
    }
}

impl RtpLeg {
    /// Sends a frame of linear audio encoded with the answer's codec, one packet per frame,
    /// stamped on the leg's timeline from the frame's timestamp. Before the caller's source
    /// is latched it goes to the offer's address, so that a stream's audio (or its silence)
    /// reaches the caller from the first frame on, as early media too.
    fn send_frame(&mut self, frame: &Frame<'_>) {
        let Some(codec) = self.codec else {
            self.stats.unsendable += 1;
            return;
        };
        let dest = self.latch.latched_addr().unwrap_or(self.remote);
        let len = FIXED_HEADER_LEN + frame.samples.len();
        let Some(out) = self.buf.get_mut(..len) else {
            self.stats.unsendable += 1;
            return;
        };
        let stream = if std::mem::replace(&mut self.framing, true) {
            StreamEvent::Continue
        } else {
            StreamEvent::Start
        };
        // The frames' producer as a stream of its own; its SSRC is never sent.
        let incoming = RtpHeader {
            marker: false,
            payload_type: self.audio_pt,
            sequence_number: 0,
            timestamp: frame.timestamp,
            ssrc: FRAME_SOURCE,
        };
        let header = self
            .restamp
            .next(&incoming, stream, self.latch.latched_ssrc());
        let (fixed, body) = out.split_at_mut(FIXED_HEADER_LEN);
        if header.write(fixed).is_err() {
            self.stats.unsendable += 1;
            return;
        }
        g711::encode(codec, frame.samples, body);
        self.stats.transmits += 1;
        self.pending = Pending::Transmit { dest, len };
    }
}

/// The SSRC frames are stamped from before the leg maps them onto its own.
const FRAME_SOURCE: Ssrc = Ssrc(0);

impl Leg for RtpLeg {
    fn handle_input(&mut self, now: Instant, input: Input<'_>) {
        match input {
            Input::Datagram(datagram) => self.handle_datagram(now, datagram),
            Input::Media(Media::Rtp(media)) => self.send(&media),
            Input::Media(Media::Frame(frame)) => self.send_frame(&frame),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        if let Some(deadline) = self.poll_timeout()
            && now >= deadline
        {
            self.timed_out = true;
            self.event = Some(LegEvent::MediaTimeout);
        }
    }

    fn poll_media(&mut self) -> Option<Media<'_>> {
        let Pending::Media {
            header,
            stream,
            len,
        } = self.pending
        else {
            return None;
        };
        self.pending = Pending::None;
        Some(Media::Rtp(RtpMedia {
            header,
            stream,
            payload: self.buf.get(..len)?,
        }))
    }

    fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        let Pending::Transmit { dest, len } = self.pending else {
            return None;
        };
        self.pending = Pending::None;
        Some(Transmit {
            port: Port::Rtp,
            dest,
            data: self.buf.get(..len)?,
        })
    }

    fn poll_event(&mut self) -> Option<LegEvent> {
        self.event.take()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.timeout.is_zero() || self.timed_out {
            return None;
        }
        Some(self.last_media + self.timeout)
    }
}

/// Maps the far leg's stream onto the leg's own SSRC, sequence numbers and timestamps.
///
/// Sequence numbers count packets sent. Timestamps keep the sender's spacing (so RFC 4733
/// events keep their shared timestamp) shifted by a random base; when the sender's stream
/// starts over its timestamps start over, and the leg continues one packet interval after
/// the last one.
#[derive(Debug)]
struct Restamp {
    ssrc: Ssrc,
    next_seq: u16,
    base: u32,
    offset: u32,
    step: u32,
    newest_in: u32,
    newest_out: u32,
}

impl Restamp {
    fn new(ssrc: u32, first_seq: u16, base: u32) -> Self {
        Restamp {
            ssrc: Ssrc(ssrc),
            next_seq: first_seq,
            base,
            offset: 0,
            step: DEFAULT_STEP,
            newest_in: 0,
            newest_out: base,
        }
    }

    /// The header to send `incoming` with; `received` is the SSRC the caller sends with.
    fn next(
        &mut self,
        incoming: &RtpHeader,
        stream: StreamEvent,
        received: Option<Ssrc>,
    ) -> RtpHeader {
        // RFC 3550 §8.2: never send with the SSRC being received.
        while self.ssrc == incoming.ssrc || Some(self.ssrc) == received {
            self.ssrc = Ssrc(rand::random());
        }
        let ts = incoming.timestamp;
        let restart = match stream {
            StreamEvent::Start => {
                self.offset = self.base.wrapping_sub(ts);
                true
            }
            StreamEvent::Restart => {
                let resume = self.newest_out.wrapping_add(self.step);
                self.offset = resume.wrapping_sub(ts);
                true
            }
            StreamEvent::Continue => false,
        };
        let out_ts = ts.wrapping_add(self.offset);
        // Signed distance on the 32-bit timestamp circle (RFC 3550 §5.1 wraps).
        let delta = ts.wrapping_sub(self.newest_in).cast_signed();
        if restart || delta > 0 {
            if !restart && delta.cast_unsigned() <= MAX_STEP {
                self.step = delta.cast_unsigned();
            }
            self.newest_in = ts;
            self.newest_out = out_ts;
        }
        let header = RtpHeader {
            marker: incoming.marker || restart,
            payload_type: incoming.payload_type,
            sequence_number: self.next_seq,
            timestamp: out_ts,
            ssrc: self.ssrc,
        };
        self.next_seq = self.next_seq.wrapping_add(1);
        header
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::origin;
    use crate::media::rtp::{Pt, RtpPacket, build};

    fn incoming(ts: u32, ssrc: u32, marker: bool) -> RtpHeader {
        RtpHeader {
            marker,
            payload_type: Pt::PCMU,
            sequence_number: 0,
            timestamp: ts,
            ssrc: Ssrc(ssrc),
        }
    }

    #[test]
    fn restamp_counts_sequence_and_keeps_timestamp_spacing() {
        let mut r = Restamp::new(42, u16::MAX, u32::MAX - 100);
        let a = r.next(&incoming(1000, 7, false), StreamEvent::Start, None);
        assert_eq!(
            (a.ssrc, a.sequence_number, a.timestamp, a.marker),
            (Ssrc(42), u16::MAX, u32::MAX - 100, true)
        );
        let b = r.next(&incoming(1160, 7, false), StreamEvent::Continue, None);
        assert_eq!((b.sequence_number, b.timestamp, b.marker), (0, 59, false));
        // An RFC 4733 event repeats its timestamp; so does the echo.
        let c = r.next(&incoming(1160, 7, true), StreamEvent::Continue, None);
        assert_eq!((c.sequence_number, c.timestamp, c.marker), (1, 59, true));
        // A reordered packet keeps its place on the timeline.
        let d = r.next(&incoming(1000, 7, false), StreamEvent::Continue, None);
        assert_eq!((d.sequence_number, d.timestamp), (2, u32::MAX - 100));
    }

    #[test]
    fn restamp_continues_one_interval_on_after_a_new_sender_ssrc() {
        let mut r = Restamp::new(42, 10, 5000);
        r.next(&incoming(0, 7, false), StreamEvent::Start, None);
        r.next(&incoming(240, 7, false), StreamEvent::Continue, None);
        // A silence gap is not taken as the packet interval.
        let gap = r.next(&incoming(240 + 8000, 7, false), StreamEvent::Continue, None);
        assert_eq!(gap.timestamp, 13240);
        let new = r.next(&incoming(77, 8, false), StreamEvent::Restart, None);
        assert_eq!(
            (new.sequence_number, new.timestamp, new.marker),
            (13, 13480, true)
        );
        let after = r.next(&incoming(317, 8, false), StreamEvent::Continue, None);
        assert_eq!((after.sequence_number, after.timestamp), (14, 13720));
    }

    #[test]
    fn restamp_never_sends_with_the_callers_ssrc() {
        let mut r = Restamp::new(7, 0, 0);
        let out = r.next(&incoming(0, 7, false), StreamEvent::Start, None);
        assert_ne!(out.ssrc, Ssrc(7));
        let mut r = Restamp::new(9, 0, 0);
        let out = r.next(&incoming(0, 7, false), StreamEvent::Start, Some(Ssrc(9)));
        assert_ne!(out.ssrc, Ssrc(9));
        assert_ne!(out.ssrc, Ssrc(7));
    }

    const EVENT: Pt = match Pt::new(101) {
        Some(pt) => pt,
        None => Pt::PCMU,
    };

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn config(timeout: Duration) -> MediaConfig {
        MediaConfig {
            remote: addr("203.0.113.5:40000"),
            audio_pt: Pt::PCMU,
            event_pt: Some(EVENT),
            media_timeout: timeout,
        }
    }

    fn packet(pt: Pt, seq: u16, ssrc: u32, payload: &[u8]) -> Vec<u8> {
        let h = RtpHeader {
            marker: false,
            payload_type: pt,
            sequence_number: seq,
            timestamp: 8000 + u32::from(seq) * 160,
            ssrc: Ssrc(ssrc),
        };
        let mut out = vec![0u8; 12 + payload.len()];
        let n = build(&h, payload, &mut out).unwrap();
        out.truncate(n);
        out
    }

    fn rtp_in(src: SocketAddr, data: &[u8]) -> Input<'_> {
        Input::Datagram(Datagram {
            port: Port::Rtp,
            src,
            data,
        })
    }

    #[test]
    fn accepted_rtp_goes_to_the_bridge_and_bridge_media_to_the_latched_source() {
        let t0 = origin();
        let mut leg = RtpLeg::with_ids(t0, &config(Duration::from_secs(30)), 42, 100, 5000);
        // NAT: the offered IP with another port.
        let src = addr("203.0.113.5:51234");
        let d = packet(Pt::PCMU, 1, 7, b"hello");
        leg.handle_input(t0, rtp_in(src, &d));
        assert_eq!(leg.poll_transmit(), None);
        let media = leg.poll_media().unwrap();
        let Media::Rtp(m) = media else {
            panic!("{media:?}")
        };
        assert_eq!((m.header.ssrc, m.header.sequence_number), (Ssrc(7), 1));
        assert_eq!((m.stream, m.payload), (StreamEvent::Start, &b"hello"[..]));
        let header = m.header;
        assert_eq!(leg.poll_media(), None);

        leg.handle_input(
            t0,
            Input::Media(Media::Rtp(RtpMedia {
                header,
                stream: StreamEvent::Start,
                payload: b"hello",
            })),
        );
        let t = leg.poll_transmit().unwrap();
        assert_eq!((t.port, t.dest), (Port::Rtp, src));
        let p = RtpPacket::parse(t.data).unwrap();
        assert_eq!(
            (p.header.ssrc, p.header.sequence_number, p.header.timestamp),
            (Ssrc(42), 100, 5000)
        );
        assert_eq!(p.payload(), b"hello");
        assert_eq!(leg.poll_transmit(), None);
        assert_eq!(leg.latched(), Some(src));
        let stats = leg.stats();
        assert_eq!((stats.packets_in, stats.transmits), (1, 1));
    }

    #[test]
    fn strangers_bad_payload_types_and_rtcp_reach_nobody() {
        let t0 = origin();
        let mut leg = RtpLeg::with_ids(t0, &config(Duration::ZERO), 42, 0, 0);
        let caller = addr("203.0.113.5:40000");
        leg.handle_input(t0, rtp_in(caller, &packet(Pt::PCMU, 1, 7, b"a")));
        let _ = leg.poll_media();
        // AST-2017-005: after latching another port of the same IP is dropped.
        leg.handle_input(
            t0,
            rtp_in(addr("203.0.113.5:40002"), &packet(Pt::PCMU, 2, 7, b"b")),
        );
        // AST-2018-001: PCMA was never negotiated.
        leg.handle_input(t0, rtp_in(caller, &packet(Pt::PCMA, 3, 7, b"c")));
        // Muxed RTCP on the RTP port, and a report on the RTCP port.
        let rr = [0x80, 201, 0, 1, 0, 0, 0, 7];
        leg.handle_input(t0, rtp_in(caller, &rr));
        leg.handle_input(
            t0,
            Input::Datagram(Datagram {
                port: Port::Rtcp,
                src: caller,
                data: &rr,
            }),
        );
        assert_eq!(leg.poll_media(), None);
        assert_eq!(leg.poll_transmit(), None);
        let s = leg.stats();
        assert_eq!((s.packets_in, s.rtcp_in), (1, 2));
        assert_eq!(s.latch.dropped_not_latched_source, 1);
        assert_eq!(s.latch.dropped_not_negotiated, 1);
        assert_eq!(s.latch.rtcp, 1);
    }

    #[test]
    fn rtp_media_before_latching_is_not_sent() {
        let t0 = origin();
        let mut leg = RtpLeg::with_ids(t0, &config(Duration::ZERO), 42, 0, 0);
        let media = RtpMedia {
            header: incoming(0, 7, false),
            stream: StreamEvent::Start,
            payload: b"x",
        };
        leg.handle_input(t0, Input::Media(Media::Rtp(media)));
        assert_eq!(leg.poll_transmit(), None);
        assert_eq!(leg.stats().unsendable, 1);
    }

    fn frame_in(leg: &mut RtpLeg, timestamp: u32, samples: &[i16]) {
        leg.handle_input(
            origin(),
            Input::Media(Media::Frame(crate::media::leg::Frame {
                timestamp,
                samples,
            })),
        );
    }

    #[test]
    fn frames_are_encoded_with_the_answers_codec_on_the_legs_timeline() {
        let t0 = origin();
        let mut leg = RtpLeg::with_ids(t0, &config(Duration::ZERO), 42, 500, 9000);
        let ramp: Vec<i16> = (0..160).map(|i| (i * 200 - 16_000) as i16).collect();
        // Before the caller sent anything: to the offer's address (early media).
        frame_in(&mut leg, 0, &ramp);
        let t = leg.poll_transmit().unwrap();
        assert_eq!(t.dest, addr("203.0.113.5:40000"));
        let p = RtpPacket::parse(t.data).unwrap();
        assert_eq!(
            (p.header.ssrc, p.header.sequence_number, p.header.timestamp),
            (Ssrc(42), 500, 9000)
        );
        assert!(p.header.marker);
        assert_eq!(p.header.payload_type, Pt::PCMU);
        let want: Vec<u8> = ramp.iter().map(|&s| g711::linear_to_ulaw(s)).collect();
        assert_eq!(p.payload(), &want[..]);
        assert_eq!(leg.poll_transmit(), None);

        // The caller's source latched (behind a NAT): frames follow it.
        let src = addr("203.0.113.5:51000");
        leg.handle_input(t0, rtp_in(src, &packet(Pt::PCMU, 1, 7, &[0xff; 160])));
        let _ = leg.poll_media();
        // A skipped slot moves the timestamp on by its length.
        frame_in(&mut leg, 320, &[0; 160]);
        let t = leg.poll_transmit().unwrap();
        assert_eq!(t.dest, src);
        let p = RtpPacket::parse(t.data).unwrap();
        assert_eq!(
            (
                p.header.sequence_number,
                p.header.timestamp,
                p.header.marker
            ),
            (501, 9320, false)
        );
        assert_eq!(p.payload(), &[0xff; 160][..]);
        assert_eq!(leg.stats().transmits, 2);
        assert_eq!(leg.stats().unsendable, 0);
    }

    #[test]
    fn frames_go_out_as_pcma_when_answered_so_and_not_at_all_for_other_audio() {
        let t0 = origin();
        let mut pcma = config(Duration::ZERO);
        pcma.audio_pt = Pt::PCMA;
        let mut leg = RtpLeg::with_ids(t0, &pcma, 42, 0, 0);
        frame_in(&mut leg, 0, &[1000; 160]);
        let t = leg.poll_transmit().unwrap();
        let p = RtpPacket::parse(t.data).unwrap();
        assert_eq!(p.header.payload_type, Pt::PCMA);
        assert_eq!(p.payload(), &[g711::linear_to_alaw(1000); 160][..]);

        let mut other = config(Duration::ZERO);
        other.audio_pt = Pt::new(9).unwrap();
        let mut leg = RtpLeg::with_ids(t0, &other, 42, 0, 0);
        frame_in(&mut leg, 0, &[0; 160]);
        assert_eq!(leg.poll_transmit(), None);
        assert_eq!(leg.stats().unsendable, 1);
    }

    #[test]
    fn media_timeout_counts_from_the_last_accepted_packet_and_fires_once() {
        let t0 = origin();
        let timeout = Duration::from_secs(20);
        let mut leg = RtpLeg::with_ids(t0, &config(timeout), 42, 0, 0);
        assert_eq!(leg.poll_timeout(), Some(t0 + timeout));
        let t15 = t0 + Duration::from_secs(15);
        leg.handle_input(
            t15,
            rtp_in(addr("203.0.113.5:40000"), &packet(Pt::PCMU, 1, 7, b"a")),
        );
        // A stranger's packet does not keep the call up.
        leg.handle_input(
            t15 + Duration::from_secs(1),
            rtp_in(addr("198.51.100.9:40000"), &packet(Pt::PCMU, 2, 7, b"b")),
        );
        assert_eq!(leg.poll_timeout(), Some(t15 + timeout));
        // Woken at the old deadline: nothing yet.
        leg.handle_timeout(t0 + timeout);
        assert_eq!(leg.poll_event(), None);
        leg.handle_timeout(t15 + timeout);
        assert_eq!(leg.poll_event(), Some(LegEvent::MediaTimeout));
        assert_eq!(leg.poll_event(), None);
        assert_eq!(leg.poll_timeout(), None);
        leg.handle_timeout(t15 + timeout * 2);
        assert_eq!(leg.poll_event(), None);
    }

    #[test]
    fn zero_or_huge_media_timeout_never_fires() {
        let t0 = origin();
        let leg = RtpLeg::with_ids(t0, &config(Duration::ZERO), 42, 0, 0);
        assert_eq!(leg.poll_timeout(), None);
        let mut leg = RtpLeg::with_ids(t0, &config(Duration::MAX), 42, 0, 0);
        assert_eq!(leg.poll_timeout(), Some(t0 + MAX_MEDIA_TIMEOUT));
        leg.handle_timeout(t0 + Duration::from_secs(7 * 24 * 3600));
        assert_eq!(leg.poll_event(), None);
    }
}
