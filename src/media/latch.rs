//! Symmetric RTP latching (RFC 4961, with the source checks of RFC 3550 §8.2), as a sans-IO
//! decision per received datagram.
//!
//! The SDP offer names where the caller sends from, but a NAT in the path may rewrite the
//! port, so the latch learns the real source from the media itself:
//!
//! ```text
//!   Waiting ──(RTP, negotiated PT, source IP == offered IP, any port)──> Latched(addr, ssrc)
//!   Latched ──(RTP from addr, new SSRC)──> Latched(addr, new ssrc)   [rebase]
//! ```
//!
//! Rules, each stopping a known attack or fault:
//! - a payload type that was not negotiated is dropped (AST-2018-001);
//! - a datagram whose lengths overrun it is dropped (CVE-2022-21722);
//! - before latching, a source IP other than the offered one is dropped, so a stranger cannot
//!   win the race for the latch;
//! - after latching, every other IP:port is dropped, whatever its SSRC, so spraying relay
//!   ports captures nothing (AST-2017-005, AST-2017-008);
//! - a new SSRC from the latched source is accepted and reported as a rebase (a carrier's
//!   media server switching streams mid-call).
//!
//! The latch does no IO and reads no clock: feed each datagram to
//! [`Latch::handle_datagram`] and act on the [`Verdict`].

use std::net::{IpAddr, SocketAddr};

use super::rtp::{self, PacketKind, Pt, RtcpCompound, RtpPacket, Ssrc};

/// A set of payload types (the ones negotiated in SDP), as a 128-bit mask.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PtSet(u128);

impl PtSet {
    /// The set holding exactly `pts`.
    pub fn new(pts: &[Pt]) -> Self {
        pts.iter().fold(PtSet(0), |set, pt| set.with(*pt))
    }

    /// This set with `pt` added.
    pub const fn with(self, pt: Pt) -> Self {
        PtSet(self.0 | (1u128 << pt.get()))
    }

    /// Whether `pt` is in the set.
    pub const fn contains(self, pt: Pt) -> bool {
        self.0 & (1u128 << pt.get()) != 0
    }
}

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Not parseable as RTP or RTCP: short, wrong version, or a length that overruns it.
    Malformed,
    /// RTP with a payload type that was not negotiated.
    NotNegotiated,
    /// Before latching: from an IP address other than the one offered in SDP.
    UnexpectedSource,
    /// After latching: from any IP:port other than the latched one (new SSRC or not).
    NotLatchedSource,
}

/// What the latch learnt from an accepted packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatchEvent {
    /// The stream continues from the latched source with the same SSRC.
    Continue,
    /// This packet latched the source; the first accepted packet of the call.
    Latched,
    /// The latched source started a new SSRC; sequence and timing start over.
    Rebased { previous: Ssrc },
}

/// The decision on one datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// RTP from the caller: use it.
    Accept {
        packet: RtpPacket<'a>,
        event: LatchEvent,
    },
    /// A valid compound RTCP packet from the caller on the RTP port (RFC 5761 mux).
    Rtcp(RtcpCompound),
    /// Ignore the datagram; it has been counted under `reason`.
    Drop(DropReason),
}

/// Counts of what the latch has seen, for the call record and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatchStats {
    /// RTP packets accepted.
    pub accepted: u64,
    /// Valid RTCP packets accepted from the caller on the RTP port.
    pub rtcp: u64,
    /// Times the latched source changed SSRC.
    pub rebases: u64,
    pub dropped_malformed: u64,
    pub dropped_not_negotiated: u64,
    pub dropped_unexpected_source: u64,
    pub dropped_not_latched_source: u64,
}

impl LatchStats {
    /// How many datagrams were dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        match reason {
            DropReason::Malformed => self.dropped_malformed,
            DropReason::NotNegotiated => self.dropped_not_negotiated,
            DropReason::UnexpectedSource => self.dropped_unexpected_source,
            DropReason::NotLatchedSource => self.dropped_not_latched_source,
        }
    }

    /// How many datagrams were dropped for any reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_malformed
            + self.dropped_not_negotiated
            + self.dropped_unexpected_source
            + self.dropped_not_latched_source
    }

    fn count_drop(&mut self, reason: DropReason) {
        let counter = match reason {
            DropReason::Malformed => &mut self.dropped_malformed,
            DropReason::NotNegotiated => &mut self.dropped_not_negotiated,
            DropReason::UnexpectedSource => &mut self.dropped_unexpected_source,
            DropReason::NotLatchedSource => &mut self.dropped_not_latched_source,
        };
        *counter += 1;
    }
}

/// The symmetric-RTP latch of one call leg.
#[derive(Debug, Clone)]
pub struct Latch {
    offered_ip: IpAddr,
    pts: PtSet,
    latched: Option<(SocketAddr, Ssrc)>,
    stats: LatchStats,
}

impl Latch {
    /// A latch waiting for media from the IP of `offered` (the connection address and port of
    /// the SDP offer) carrying one of `pts`.
    pub fn new(offered: SocketAddr, pts: PtSet) -> Self {
        Latch {
            offered_ip: offered.ip().to_canonical(),
            pts,
            latched: None,
            stats: LatchStats::default(),
        }
    }

    /// Decides what to do with one datagram received from `src`, and counts it.
    pub fn handle_datagram<'a>(&mut self, src: SocketAddr, datagram: &'a [u8]) -> Verdict<'a> {
        let verdict = self.decide(src, datagram);
        match &verdict {
            Verdict::Accept { event, .. } => {
                self.stats.accepted += 1;
                if matches!(event, LatchEvent::Rebased { .. }) {
                    self.stats.rebases += 1;
                }
            }
            Verdict::Rtcp(_) => self.stats.rtcp += 1,
            Verdict::Drop(reason) => self.stats.count_drop(*reason),
        }
        verdict
    }

    fn decide<'a>(&mut self, src: SocketAddr, datagram: &'a [u8]) -> Verdict<'a> {
        match rtp::classify(datagram) {
            PacketKind::Other => Verdict::Drop(DropReason::Malformed),
            PacketKind::Rtcp => match self.source_check(src) {
                Err(reason) => Verdict::Drop(reason),
                Ok(()) => match rtp::parse_rtcp(datagram) {
                    Ok(compound) => Verdict::Rtcp(compound),
                    Err(_) => Verdict::Drop(DropReason::Malformed),
                },
            },
            PacketKind::Rtp => {
                let packet = match RtpPacket::parse(datagram) {
                    Ok(packet) => packet,
                    Err(_) => return Verdict::Drop(DropReason::Malformed),
                };
                if !self.pts.contains(packet.header.payload_type) {
                    return Verdict::Drop(DropReason::NotNegotiated);
                }
                if let Err(reason) = self.source_check(src) {
                    return Verdict::Drop(reason);
                }
                let ssrc = packet.header.ssrc;
                let event = match self.latched {
                    None => LatchEvent::Latched,
                    Some((_, current)) if current == ssrc => LatchEvent::Continue,
                    Some((_, previous)) => LatchEvent::Rebased { previous },
                };
                self.latched = Some((src, ssrc));
                Verdict::Accept { packet, event }
            }
        }
    }

    /// Whether `src` may deliver media now: the latched address exactly, or, before
    /// latching, any port on the offered IP.
    fn source_check(&self, src: SocketAddr) -> Result<(), DropReason> {
        match self.latched {
            Some((addr, _)) if addr == src => Ok(()),
            Some(_) => Err(DropReason::NotLatchedSource),
            None if src.ip().to_canonical() == self.offered_ip => Ok(()),
            None => Err(DropReason::UnexpectedSource),
        }
    }

    /// Where media must be sent (RFC 4961): the latched source, once there is one.
    pub fn latched_addr(&self) -> Option<SocketAddr> {
        self.latched.map(|(addr, _)| addr)
    }

    /// The SSRC the latched source sends with now.
    pub fn latched_ssrc(&self) -> Option<Ssrc> {
        self.latched.map(|(_, ssrc)| ssrc)
    }

    /// Counts so far.
    pub fn stats(&self) -> LatchStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::rtp::{RtpHeader, build};

    const PCMU: Pt = Pt::PCMU;
    const EVENT: Pt = match Pt::new(101) {
        Some(pt) => pt,
        None => Pt::PCMU,
    };

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn rtp(pt: Pt, seq: u16, ssrc: u32) -> Vec<u8> {
        let h = RtpHeader {
            marker: false,
            payload_type: pt,
            sequence_number: seq,
            timestamp: u32::from(seq) * 160,
            ssrc: Ssrc(ssrc),
        };
        let mut out = vec![0u8; 12 + 160];
        let n = build(&h, &[0xff; 160], &mut out).unwrap();
        out.truncate(n);
        out
    }

    fn latch() -> Latch {
        Latch::new(addr("203.0.113.5:40000"), PtSet::new(&[PCMU, EVENT]))
    }

    fn event(v: &Verdict<'_>) -> Option<LatchEvent> {
        match v {
            Verdict::Accept { event, .. } => Some(*event),
            _ => None,
        }
    }

    #[test]
    fn pt_set_holds_exactly_what_was_negotiated() {
        let set = PtSet::new(&[PCMU, EVENT]);
        assert!(set.contains(PCMU));
        assert!(set.contains(EVENT));
        assert!(!set.contains(Pt::PCMA));
        assert!(PtSet::default().with(Pt::PCMA).contains(Pt::PCMA));
        let top = Pt::new(127).unwrap();
        assert!(PtSet::new(&[top]).contains(top));
        assert_eq!(Pt::new(128), None);
    }

    #[test]
    fn latches_on_offered_ip_with_a_nat_rewritten_port() {
        let mut l = latch();
        assert_eq!(l.latched_addr(), None);
        let src = addr("203.0.113.5:51234");
        let d = rtp(PCMU, 1, 7);
        let v = l.handle_datagram(src, &d);
        assert_eq!(event(&v), Some(LatchEvent::Latched));
        assert_eq!(l.latched_addr(), Some(src));
        let d = rtp(PCMU, 2, 7);
        assert_eq!(
            event(&l.handle_datagram(src, &d)),
            Some(LatchEvent::Continue)
        );
        assert_eq!(l.stats().accepted, 2);
    }

    #[test]
    fn before_latching_other_ips_are_dropped_and_do_not_latch() {
        let mut l = latch();
        let d = rtp(PCMU, 1, 7);
        let v = l.handle_datagram(addr("198.51.100.9:40000"), &d);
        assert_eq!(v, Verdict::Drop(DropReason::UnexpectedSource));
        assert_eq!(l.latched_addr(), None);
        assert_eq!(l.stats().dropped(DropReason::UnexpectedSource), 1);
    }

    #[test]
    fn ast_2017_005_after_latching_other_ports_and_ips_are_dropped() {
        let mut l = latch();
        let src = addr("203.0.113.5:40000");
        l.handle_datagram(src, &rtp(PCMU, 1, 7));
        // Same IP, other port, same SSRC: still not the latched source.
        let d = rtp(PCMU, 2, 7);
        let v = l.handle_datagram(addr("203.0.113.5:40002"), &d);
        assert_eq!(v, Verdict::Drop(DropReason::NotLatchedSource));
        // Other IP, new SSRC: dropped, not rebased.
        let d = rtp(PCMU, 3, 99);
        let v = l.handle_datagram(addr("198.51.100.9:40000"), &d);
        assert_eq!(v, Verdict::Drop(DropReason::NotLatchedSource));
        assert_eq!(l.latched_addr(), Some(src));
        let s = l.stats();
        assert_eq!(s.dropped(DropReason::NotLatchedSource), 2);
        assert_eq!(s.rebases, 0);
        assert_eq!(s.accepted, 1);
        assert_eq!(s.dropped_total(), 2);
    }

    #[test]
    fn new_ssrc_from_latched_source_is_a_rebase() {
        let mut l = latch();
        let src = addr("203.0.113.5:40000");
        l.handle_datagram(src, &rtp(PCMU, 1, 7));
        let d = rtp(PCMU, 500, 8);
        let v = l.handle_datagram(src, &d);
        assert_eq!(event(&v), Some(LatchEvent::Rebased { previous: Ssrc(7) }));
        assert_eq!(l.latched_ssrc(), Some(Ssrc(8)));
        let d = rtp(PCMU, 501, 8);
        assert_eq!(
            event(&l.handle_datagram(src, &d)),
            Some(LatchEvent::Continue)
        );
        assert_eq!(l.stats().rebases, 1);
        assert_eq!(l.stats().accepted, 3);
    }

    #[test]
    fn ast_2018_001_non_negotiated_pt_is_dropped_and_does_not_latch() {
        let mut l = latch();
        let src = addr("203.0.113.5:40000");
        let d = rtp(Pt::PCMA, 1, 7);
        assert_eq!(
            l.handle_datagram(src, &d),
            Verdict::Drop(DropReason::NotNegotiated)
        );
        assert_eq!(l.latched_addr(), None);
        let d = rtp(EVENT, 2, 7);
        assert_eq!(
            event(&l.handle_datagram(src, &d)),
            Some(LatchEvent::Latched)
        );
        assert_eq!(l.stats().dropped(DropReason::NotNegotiated), 1);
    }

    #[test]
    fn cve_2022_21722_overrunning_lengths_are_dropped_as_malformed() {
        let mut l = latch();
        let src = addr("203.0.113.5:40000");
        let mut d = rtp(PCMU, 1, 7);
        d.truncate(20);
        d[0] = 0x8f; // fifteen CSRCs
        assert_eq!(
            l.handle_datagram(src, &d),
            Verdict::Drop(DropReason::Malformed)
        );
        let rtcp = [0x80, 200, 0xff, 0xff, 0, 0, 0, 7];
        assert_eq!(
            l.handle_datagram(src, &rtcp),
            Verdict::Drop(DropReason::Malformed)
        );
        let stun = [0x00, 0x01, 0x00, 0x00];
        assert_eq!(
            l.handle_datagram(src, &stun),
            Verdict::Drop(DropReason::Malformed)
        );
        assert_eq!(l.latched_addr(), None);
        assert_eq!(l.stats().dropped(DropReason::Malformed), 3);
    }

    #[test]
    fn muxed_rtcp_from_the_caller_is_recognised_and_not_latched_on() {
        let mut l = latch();
        let src = addr("203.0.113.5:40000");
        let rr = [0x80, 201, 0, 1, 0, 0, 0, 7];
        let expect = RtcpCompound {
            first_type: 201,
            sender_ssrc: Some(Ssrc(7)),
            packets: 1,
        };
        assert_eq!(l.handle_datagram(src, &rr), Verdict::Rtcp(expect));
        assert_eq!(l.latched_addr(), None);
        l.handle_datagram(src, &rtp(PCMU, 1, 7));
        let v = l.handle_datagram(addr("203.0.113.5:40001"), &rr);
        assert_eq!(v, Verdict::Drop(DropReason::NotLatchedSource));
        assert_eq!(l.stats().rtcp, 1);
    }

    #[test]
    fn ipv4_mapped_source_matches_an_ipv4_offer() {
        let mut l = latch();
        let src = addr("[::ffff:203.0.113.5]:40000");
        let d = rtp(PCMU, 1, 7);
        assert_eq!(
            event(&l.handle_datagram(src, &d)),
            Some(LatchEvent::Latched)
        );
    }
}
