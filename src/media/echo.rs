//! The echo leg: returns the caller's audio as its own RTP stream (RFC 3550 §5.1, §8.2),
//! sent only to the latched source (symmetric RTP, RFC 4961), with telephone-events
//! (RFC 4733) echoed like audio.
//!
//! One tokio task per answered call, holding the call's [`RtpPorts`], one 1500-byte buffer and
//! a [`Latch`]. Each accepted packet is rewritten in place (a fixed header written just before
//! its payload) with the leg's own SSRC, sequence numbers and timestamps, and sent back:
//!
//! ```text
//!   caller ──RTP──> rtp socket ──Latch──> Restamp ──RTP──> latched source
//!   caller ──RTCP─> rtcp socket ──> counted and discarded
//! ```
//!
//! The task ends on hangup ([`EchoEnd::Hangup`]), after `media_timeout` without an accepted
//! packet ([`EchoEnd::MediaTimeout`]), or on a socket error; it then drops the ports, which
//! returns them to the pool, and reports an [`EchoReport`].

use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};
use tracing::Instrument;

use super::latch::{Latch, LatchEvent, LatchStats, PtSet, Verdict};
use super::ports::RtpPorts;
use super::rtp::{FIXED_HEADER_LEN, Pt, RtpHeader, Ssrc};

/// Largest datagram read; longer ones are truncated by the socket and fail to parse or echo
/// short, which an Ethernet-sized path never produces.
const BUFFER_LEN: usize = 1500;

/// Timestamp step used when a new SSRC starts before any step was seen: 20 ms at 8 kHz.
const DEFAULT_STEP: u32 = 160;

/// Largest timestamp step taken as the stream's packet interval (120 ms at 16 kHz); larger
/// jumps are silence gaps, not the interval.
const MAX_STEP: u32 = 1920;

/// Longest media timeout honoured; longer ones are cut to this (a year: in effect never).
const MAX_MEDIA_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

/// What the echo leg needs from the answered call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EchoConfig {
    /// The RTP address of the SDP offer (its IP is what the latch accepts first).
    pub remote: SocketAddr,
    /// The audio payload type of the answer.
    pub audio_pt: Pt,
    /// The telephone-event payload type of the answer, when negotiated.
    pub event_pt: Option<Pt>,
    /// End the leg after this long without accepted RTP; zero never ends it.
    pub media_timeout: Duration,
}

/// Why the echo leg ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EchoEnd {
    /// The hangup handle fired or was dropped.
    Hangup,
    /// No accepted RTP for `media_timeout` (RELIABILITY 36: the call is torn down).
    MediaTimeout,
    /// Receiving on a socket failed with an error that does not pass.
    Socket(io::ErrorKind),
}

/// Counts of one echo leg.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EchoStats {
    /// RTP packets accepted from the caller.
    pub packets_in: u64,
    /// RTP packets sent back.
    pub packets_out: u64,
    /// RTCP packets received (on the RTCP port, or muxed on the RTP port), then discarded.
    pub rtcp_in: u64,
    /// Sends that failed (the packet is lost; the leg goes on).
    pub send_errors: u64,
    /// The latch's counts, with drops by reason.
    pub latch: LatchStats,
}

/// How an echo leg ended and what it carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EchoReport {
    pub end: EchoEnd,
    pub stats: EchoStats,
    /// Where the caller's media came from, if it ever came.
    pub latched: Option<SocketAddr>,
}

/// Starts the echo leg on the current tokio runtime. Send on (or drop) the sender of
/// `hangup` to end it; the handle yields the report once the ports are released.
pub fn spawn(
    ports: RtpPorts,
    config: EchoConfig,
    hangup: oneshot::Receiver<()>,
) -> JoinHandle<EchoReport> {
    tokio::spawn(run(ports, config, hangup).in_current_span())
}

/// Runs the echo leg until it ends; [`spawn`] runs this as a task.
pub async fn run(ports: RtpPorts, config: EchoConfig, hangup: oneshot::Receiver<()>) -> EchoReport {
    let mut pts = PtSet::new(&[config.audio_pt]);
    if let Some(pt) = config.event_pt {
        pts = pts.with(pt);
    }
    let mut latch = Latch::new(config.remote, pts);
    let mut restamp = Restamp::new(rand::random(), rand::random(), rand::random());
    let mut stats = EchoStats::default();
    let mut buf = [0u8; BUFFER_LEN];
    let mut hangup = pin!(hangup);

    // Capped so that adding it to a time point cannot overflow.
    let timeout = config.media_timeout.min(MAX_MEDIA_TIMEOUT);
    let mut last_media = Instant::now();
    let mut timer = pin!(sleep_until(last_media + timeout));

    let end = loop {
        tokio::select! {
            biased;
            _ = &mut hangup => break EchoEnd::Hangup,
            received = ports.rtp().recv_from(&mut buf) => {
                let (len, src) = match received {
                    Ok(got) => got,
                    Err(e) if passes(&e) => continue,
                    Err(e) => break EchoEnd::Socket(e.kind()),
                };
                let Some(datagram) = buf.get_mut(..len) else { continue };
                let Some(reply) = handle_datagram(&mut latch, &mut restamp, &mut stats, src, datagram)
                else {
                    continue;
                };
                last_media = Instant::now();
                let sent = match datagram.get(reply) {
                    Some(packet) => ports.rtp().send_to(packet, src).await,
                    None => continue,
                };
                match sent {
                    Ok(_) => stats.packets_out += 1,
                    Err(_) => stats.send_errors += 1,
                }
            }
            // RTCP reports are not used; a zero-length read takes them off the socket.
            received = ports.rtcp().recv_from(&mut []) => match received {
                Ok(_) => stats.rtcp_in += 1,
                Err(e) if passes(&e) => {}
                Err(e) => break EchoEnd::Socket(e.kind()),
            },
            () = &mut timer, if !timeout.is_zero() => {
                // The deadline moves lazily: no timer reset per packet.
                let deadline = last_media + timeout;
                if Instant::now() >= deadline {
                    break EchoEnd::MediaTimeout;
                }
                timer.as_mut().reset(deadline);
            }
        }
    };
    stats.latch = latch.stats();
    let report = EchoReport {
        end,
        stats,
        latched: latch.latched_addr(),
    };
    tracing::debug!(?report, "echo leg ended");
    drop(ports);
    report
}

/// Errors after which receiving can go on: an ICMP error surfacing from an earlier send, or
/// an interruption.
fn passes(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// Latches and restamps one datagram in place; returns the range of `datagram` to send back
/// to its source, or `None` when nothing is to be sent.
fn handle_datagram(
    latch: &mut Latch,
    restamp: &mut Restamp,
    stats: &mut EchoStats,
    src: SocketAddr,
    datagram: &mut [u8],
) -> Option<std::ops::Range<usize>> {
    let (header, event, payload) = match latch.handle_datagram(src, datagram) {
        Verdict::Accept { packet, event } => (packet.header, event, packet.payload_range()),
        Verdict::Rtcp(_) => {
            stats.rtcp_in += 1;
            return None;
        }
        Verdict::Drop(_) => return None,
    };
    stats.packets_in += 1;
    let out = restamp.next(&header, event);
    // The payload starts at or after byte 12, so the new fixed header fits just before it.
    let start = payload.start.checked_sub(FIXED_HEADER_LEN)?;
    out.write(datagram.get_mut(start..payload.start)?).ok()?;
    Some(start..payload.end)
}

/// Maps the caller's stream onto the leg's own SSRC, sequence numbers and timestamps.
///
/// Sequence numbers count packets sent. Timestamps keep the caller's spacing (so RFC 4733
/// events keep their shared timestamp) shifted by a random base; when the caller changes SSRC
/// its timestamps start over, and the leg continues one packet interval after the last one.
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

    fn next(&mut self, incoming: &RtpHeader, event: LatchEvent) -> RtpHeader {
        // RFC 3550 §8.2: never send with the SSRC being received.
        while self.ssrc == incoming.ssrc {
            self.ssrc = Ssrc(rand::random());
        }
        let ts = incoming.timestamp;
        let restart = match event {
            LatchEvent::Latched => {
                self.offset = self.base.wrapping_sub(ts);
                true
            }
            LatchEvent::Rebased { .. } => {
                let resume = self.newest_out.wrapping_add(self.step);
                self.offset = resume.wrapping_sub(ts);
                true
            }
            LatchEvent::Continue => false,
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
    use crate::media::ports::PortPool;
    use crate::media::rtp::{RtpPacket, build};
    use std::net::{IpAddr, Ipv4Addr};
    use tokio::net::UdpSocket;

    const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

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
        let a = r.next(&incoming(1000, 7, false), LatchEvent::Latched);
        assert_eq!(
            (a.ssrc, a.sequence_number, a.timestamp, a.marker),
            (Ssrc(42), u16::MAX, u32::MAX - 100, true)
        );
        let b = r.next(&incoming(1160, 7, false), LatchEvent::Continue);
        assert_eq!((b.sequence_number, b.timestamp, b.marker), (0, 59, false));
        // An RFC 4733 event repeats its timestamp; so does the echo.
        let c = r.next(&incoming(1160, 7, true), LatchEvent::Continue);
        assert_eq!((c.sequence_number, c.timestamp, c.marker), (1, 59, true));
        // A reordered packet keeps its place on the timeline.
        let d = r.next(&incoming(1000, 7, false), LatchEvent::Continue);
        assert_eq!((d.sequence_number, d.timestamp), (2, u32::MAX - 100));
    }

    #[test]
    fn restamp_continues_one_interval_on_after_a_new_caller_ssrc() {
        let mut r = Restamp::new(42, 10, 5000);
        r.next(&incoming(0, 7, false), LatchEvent::Latched);
        r.next(&incoming(240, 7, false), LatchEvent::Continue);
        // A silence gap is not taken as the packet interval.
        let gap = r.next(&incoming(240 + 8000, 7, false), LatchEvent::Continue);
        assert_eq!(gap.timestamp, 13240);
        let new = r.next(
            &incoming(77, 8, false),
            LatchEvent::Rebased { previous: Ssrc(7) },
        );
        assert_eq!(
            (new.sequence_number, new.timestamp, new.marker),
            (13, 13480, true)
        );
        let after = r.next(&incoming(317, 8, false), LatchEvent::Continue);
        assert_eq!((after.sequence_number, after.timestamp), (14, 13720));
    }

    #[test]
    fn restamp_never_sends_with_the_callers_ssrc() {
        let mut r = Restamp::new(7, 0, 0);
        let out = r.next(&incoming(0, 7, false), LatchEvent::Latched);
        assert_ne!(out.ssrc, Ssrc(7));
    }

    fn packet(seq: u16, ssrc: u32, payload: &[u8]) -> Vec<u8> {
        let h = RtpHeader {
            marker: seq == 0,
            payload_type: Pt::PCMU,
            sequence_number: seq,
            timestamp: 8000 + u32::from(seq) * 160,
            ssrc: Ssrc(ssrc),
        };
        let mut out = vec![0u8; 1500];
        let n = build(&h, payload, &mut out).unwrap();
        out.truncate(n);
        out
    }

    async fn start(
        range: std::ops::RangeInclusive<u16>,
        remote: SocketAddr,
        media_timeout: Duration,
    ) -> (SocketAddr, oneshot::Sender<()>, JoinHandle<EchoReport>) {
        let pool = PortPool::new(LOOPBACK, range);
        let ports = pool.allocate().unwrap();
        let local = ports.rtp().local_addr().unwrap();
        let config = EchoConfig {
            remote,
            audio_pt: Pt::PCMU,
            event_pt: Pt::new(101),
            media_timeout,
        };
        let (tx, rx) = oneshot::channel();
        (local, tx, spawn(ports, config, rx))
    }

    #[tokio::test]
    async fn echoes_fifty_packets_as_its_own_stream_to_the_latched_source_only() {
        let caller = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
        let stranger = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
        // The offer names the caller's IP with another port, as behind a NAT.
        let offered = SocketAddr::new(LOOPBACK, 9);
        let (echo, hangup, task) = start(31200..=31201, offered, Duration::from_secs(30)).await;

        let mut buf = [0u8; 1500];
        let mut echoed = Vec::new();
        for seq in 0..50u16 {
            let payload = [seq as u8; 160];
            caller
                .send_to(&packet(seq, 0x1234, &payload), echo)
                .await
                .unwrap();
            if seq == 10 {
                // After latching, another source gets nothing back, whatever its SSRC.
                stranger
                    .send_to(&packet(seq, 0x1234, &payload), echo)
                    .await
                    .unwrap();
                stranger
                    .send_to(&packet(seq, 0x9999, &payload), echo)
                    .await
                    .unwrap();
            }
            let (n, from) = caller.recv_from(&mut buf).await.unwrap();
            assert_eq!(from, echo);
            let p = RtpPacket::parse(&buf[..n]).unwrap();
            assert_eq!(p.payload(), &payload);
            assert_eq!(p.header.payload_type, Pt::PCMU);
            echoed.push(p.header);
        }
        let ssrc = echoed[0].ssrc;
        assert_ne!(ssrc, Ssrc(0x1234));
        for (i, h) in echoed.iter().enumerate() {
            assert_eq!(h.ssrc, ssrc);
            assert_eq!(
                h.sequence_number,
                echoed[0].sequence_number.wrapping_add(i as u16)
            );
            assert_eq!(
                h.timestamp,
                echoed[0].timestamp.wrapping_add(160 * i as u32)
            );
        }

        hangup.send(()).unwrap();
        let report = task.await.unwrap();
        assert_eq!(report.end, EchoEnd::Hangup);
        assert_eq!(report.latched, Some(caller.local_addr().unwrap()));
        assert_eq!(report.stats.packets_in, 50);
        assert_eq!(report.stats.packets_out, 50);
        assert_eq!(report.stats.latch.dropped_not_latched_source, 2);
        assert_eq!(report.stats.latch.dropped_total(), 2);
        assert_eq!(report.stats.send_errors, 0);
        let mut nothing = [0u8; 16];
        assert!(stranger.try_recv_from(&mut nothing).is_err());
    }

    #[tokio::test]
    async fn drops_non_negotiated_and_malformed_and_discards_rtcp() {
        let caller = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
        let offered = caller.local_addr().unwrap();
        let (echo, hangup, task) = start(31210..=31211, offered, Duration::ZERO).await;
        let rtcp_port = SocketAddr::new(LOOPBACK, echo.port() + 1);

        let mut pcma = packet(0, 1, b"x");
        pcma[1] = 8;
        caller.send_to(&pcma, echo).await.unwrap();
        caller
            .send_to(&[0x8f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0], echo)
            .await
            .unwrap();
        caller
            .send_to(&[0x80, 201, 0, 1, 0, 0, 0, 1], echo)
            .await
            .unwrap();
        caller
            .send_to(&[0x80, 201, 0, 1, 0, 0, 0, 1], rtcp_port)
            .await
            .unwrap();
        // A telephone-event is echoed like audio.
        let mut dtmf = packet(1, 1, &[5, 0x8a, 0, 160]);
        dtmf[1] = 101;
        caller.send_to(&dtmf, echo).await.unwrap();
        let mut buf = [0u8; 64];
        let (n, _) = caller.recv_from(&mut buf).await.unwrap();
        let p = RtpPacket::parse(&buf[..n]).unwrap();
        assert_eq!(p.header.payload_type, Pt::new(101).unwrap());
        assert_eq!(p.payload(), &[5, 0x8a, 0, 160]);

        // On this single-threaded runtime the leg read the RTCP port before it went idle and
        // let the echo be received.
        drop(hangup);
        let report = task.await.unwrap();
        assert_eq!(report.end, EchoEnd::Hangup);
        assert_eq!(report.stats.latch.dropped_not_negotiated, 1);
        assert_eq!(report.stats.latch.dropped_malformed, 1);
        assert_eq!(report.stats.packets_in, 1);
        assert_eq!(report.stats.packets_out, 1);
        assert_eq!(report.stats.rtcp_in, 2);
        assert_eq!(report.stats.latch.rtcp, 1);
    }

    #[tokio::test]
    async fn one_leg_holds_little_more_than_its_buffer() {
        let pool = PortPool::new(LOOPBACK, 31240..=31241);
        let ports = pool.allocate().unwrap();
        let config = EchoConfig {
            remote: SocketAddr::new(LOOPBACK, 9),
            audio_pt: Pt::PCMU,
            event_pt: None,
            media_timeout: Duration::ZERO,
        };
        let (_tx, rx) = oneshot::channel();
        let leg = run(ports, config, rx);
        // The task's whole state: the 1500-byte buffer, the latch, two socket handles, one
        // timer and the pending reads (2,720 bytes with tokio 1.54 on x86-64). A bound, not
        // an exact figure, as layouts change between compiler and tokio releases.
        assert!(std::mem::size_of_val(&leg) <= 3 * 1024);
    }

    #[tokio::test(start_paused = true)]
    async fn media_timeout_ends_the_leg_when_no_rtp_arrives() {
        let started = Instant::now();
        let offered = SocketAddr::new(LOOPBACK, 9);
        let (_, _hangup, task) = start(31220..=31221, offered, Duration::from_secs(20)).await;
        let report = task.await.unwrap();
        assert_eq!(report.end, EchoEnd::MediaTimeout);
        assert_eq!(started.elapsed(), Duration::from_secs(20));
        assert_eq!(report.latched, None);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_or_huge_media_timeout_never_ends_the_leg() {
        let offered = SocketAddr::new(LOOPBACK, 9);
        for (range, timeout) in [
            (31250..=31251, Duration::ZERO),
            (31252..=31253, Duration::MAX),
        ] {
            let (_, hangup, task) = start(range, offered, timeout).await;
            tokio::time::sleep(Duration::from_secs(7 * 24 * 3600)).await;
            assert!(!task.is_finished());
            hangup.send(()).unwrap();
            assert_eq!(task.await.unwrap().end, EchoEnd::Hangup);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn media_timeout_counts_from_the_last_accepted_packet() {
        let caller = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
        let offered = caller.local_addr().unwrap();
        let (echo, _hangup, task) = start(31230..=31231, offered, Duration::from_secs(20)).await;
        tokio::time::sleep(Duration::from_secs(15)).await;
        caller.send_to(&packet(0, 1, b"a"), echo).await.unwrap();
        let mut buf = [0u8; 64];
        caller.recv_from(&mut buf).await.unwrap();
        let echoed_at = Instant::now();
        let report = task.await.unwrap();
        assert_eq!(report.end, EchoEnd::MediaTimeout);
        assert_eq!(echoed_at.elapsed(), Duration::from_secs(20));
        assert_eq!(report.stats.packets_out, 1);
    }
}
