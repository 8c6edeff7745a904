//! RTP and RTCP packet headers (RFC 3550 §5.1, §6.4, §A.1-A.2), with RTP/RTCP demultiplexing
//! on one port (RFC 5761 §4). Sans-IO: bytes in, typed values out.
//!
//! Every length in a packet (CSRC count, header extension length, padding count, RTCP length
//! words) is checked against the datagram before anything is sliced, so a packet whose lengths
//! overrun its buffer is rejected with an [`RtpError`] (the CVE-2022-21722 and AST-2018-001
//! class) and no input can panic.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |V=2|P|X|  CC   |M|     PT      |       sequence number         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                           timestamp                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           synchronization source (SSRC) identifier            |
//! +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
//! |            contributing source (CSRC) identifiers             |
//! |                             ....                              |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | [profile-defined 16 bits | extension length in 32-bit words]  |
//! | [extension data ...]  payload ...  [padding ... | pad count]  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use std::ops::Range;

use crate::kinds::Codec;

/// The only RTP/RTCP version in use (RFC 3550 §5.1).
pub const RTP_VERSION: u8 = 2;

/// Length of the fixed RTP header, without CSRCs or extension.
pub const FIXED_HEADER_LEN: usize = 12;

/// An RTP payload type, 0..=127 (RFC 3550 §5.1, RFC 3551 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pt(u8);

impl Pt {
    /// PCMU (G.711 µ-law), the static payload type 0 of RFC 3551.
    pub const PCMU: Pt = Pt(Codec::Pcmu.static_pt());
    /// PCMA (G.711 A-law), the static payload type 8 of RFC 3551.
    pub const PCMA: Pt = Pt(Codec::Pcma.static_pt());

    /// A payload type, or `None` when `value` does not fit in 7 bits.
    pub const fn new(value: u8) -> Option<Pt> {
        if value <= 0x7f { Some(Pt(value)) } else { None }
    }

    /// The payload type number.
    pub const fn get(self) -> u8 {
        self.0
    }
}

/// A synchronization source identifier (RFC 3550 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ssrc(pub u32);

/// Why a datagram is not an acceptable RTP or RTCP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtpError {
    /// Shorter than the fixed header of its kind.
    #[error("packet of {len} bytes is shorter than the {need}-byte fixed header")]
    TooShort { len: usize, need: usize },
    /// The version field is not 2.
    #[error("RTP version {0} is not 2")]
    BadVersion(u8),
    /// The CSRC count runs past the end of the packet.
    #[error("CSRC list of {count} entries overruns the packet")]
    CsrcOverrun { count: u8 },
    /// The header extension length runs past the end of the packet.
    #[error("header extension of {words} words overruns the packet")]
    ExtensionOverrun { words: u16 },
    /// The padding count is zero or larger than the payload it pads.
    #[error("padding count {count} is invalid for {available} bytes after the header")]
    BadPadding { count: u8, available: usize },
    /// An RTCP length field runs past the end of the compound packet.
    #[error("RTCP packet of {words} length words overruns the compound packet")]
    RtcpLengthOverrun { words: u16 },
    /// The packet type is outside the RTCP range of RFC 5761 §4.
    #[error("packet type {0} is not an RTCP packet type")]
    NotRtcp(u8),
    /// The output buffer cannot hold what is being written.
    #[error("output buffer of {have} bytes cannot hold {need} bytes")]
    BufferTooSmall { need: usize, have: usize },
}

/// The fields of an RTP header that a sender chooses; CSRCs, extension and padding are
/// reported by [`RtpPacket`] when parsing and are never emitted by [`RtpHeader::write`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    pub marker: bool,
    pub payload_type: Pt,
    pub sequence_number: u16,
    pub timestamp: u32,
    pub ssrc: Ssrc,
}

impl RtpHeader {
    /// Writes this header as a 12-byte fixed header (V=2, P=0, X=0, CC=0) at the start of
    /// `out` and returns the number of bytes written.
    pub fn write(&self, out: &mut [u8]) -> Result<usize, RtpError> {
        let have = out.len();
        let Some(dst) = out.get_mut(..FIXED_HEADER_LEN) else {
            return Err(RtpError::BufferTooSmall {
                need: FIXED_HEADER_LEN,
                have,
            });
        };
        let mut fixed = [0u8; FIXED_HEADER_LEN];
        fixed[0] = RTP_VERSION << 6;
        fixed[1] = (u8::from(self.marker) << 7) | self.payload_type.get();
        fixed[2..4].copy_from_slice(&self.sequence_number.to_be_bytes());
        fixed[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        fixed[8..12].copy_from_slice(&self.ssrc.0.to_be_bytes());
        dst.copy_from_slice(&fixed);
        Ok(FIXED_HEADER_LEN)
    }
}

/// Writes a complete RTP packet (fixed header followed by `payload`) into `out` and returns
/// its length.
pub fn build(header: &RtpHeader, payload: &[u8], out: &mut [u8]) -> Result<usize, RtpError> {
    let need = FIXED_HEADER_LEN + payload.len();
    let have = out.len();
    let Some(dst) = out.get_mut(FIXED_HEADER_LEN..need) else {
        return Err(RtpError::BufferTooSmall { need, have });
    };
    dst.copy_from_slice(payload);
    header.write(out)?;
    Ok(need)
}

/// A header extension (RFC 3550 §5.3.1): the profile-defined word and the extension data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extension<'a> {
    pub profile: u16,
    pub data: &'a [u8],
}

/// A parsed RTP packet borrowing the datagram it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub header: RtpHeader,
    datagram: &'a [u8],
    csrc: Range<usize>,
    extension: Option<(u16, Range<usize>)>,
    payload: Range<usize>,
    padding: u8,
}

impl<'a> RtpPacket<'a> {
    /// Parses one RTP packet, checking every length against `datagram`.
    pub fn parse(datagram: &'a [u8]) -> Result<Self, RtpError> {
        let len = datagram.len();
        let Some(fixed) = datagram.first_chunk::<FIXED_HEADER_LEN>() else {
            return Err(RtpError::TooShort {
                len,
                need: FIXED_HEADER_LEN,
            });
        };
        let version = fixed[0] >> 6;
        if version != RTP_VERSION {
            return Err(RtpError::BadVersion(version));
        }
        let has_padding = fixed[0] & 0x20 != 0;
        let has_extension = fixed[0] & 0x10 != 0;
        let csrc_count = fixed[0] & 0x0f;
        let header = RtpHeader {
            marker: fixed[1] & 0x80 != 0,
            payload_type: Pt(fixed[1] & 0x7f),
            sequence_number: u16::from_be_bytes([fixed[2], fixed[3]]),
            timestamp: u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
            ssrc: Ssrc(u32::from_be_bytes([
                fixed[8], fixed[9], fixed[10], fixed[11],
            ])),
        };

        let csrc = FIXED_HEADER_LEN..FIXED_HEADER_LEN + 4 * usize::from(csrc_count);
        if csrc.end > len {
            return Err(RtpError::CsrcOverrun { count: csrc_count });
        }

        let mut body_start = csrc.end;
        let extension = if has_extension {
            let Some(&[p0, p1, l0, l1]) = datagram.get(body_start..body_start + 4) else {
                return Err(RtpError::ExtensionOverrun { words: 0 });
            };
            let words = u16::from_be_bytes([l0, l1]);
            let data = body_start + 4..body_start + 4 + 4 * usize::from(words);
            if data.end > len {
                return Err(RtpError::ExtensionOverrun { words });
            }
            body_start = data.end;
            Some((u16::from_be_bytes([p0, p1]), data))
        } else {
            None
        };

        let available = len - body_start;
        let padding = if has_padding {
            // RFC 3550 §5.1: the last octet counts the padding, itself included.
            let count = datagram.last().copied().unwrap_or(0);
            if count == 0 || usize::from(count) > available {
                return Err(RtpError::BadPadding { count, available });
            }
            count
        } else {
            0
        };

        Ok(RtpPacket {
            header,
            datagram,
            csrc,
            extension,
            payload: body_start..len - usize::from(padding),
            padding,
        })
    }

    /// The payload, without header, CSRCs, extension or padding.
    pub fn payload(&self) -> &'a [u8] {
        self.datagram.get(self.payload.clone()).unwrap_or_default()
    }

    /// Where the payload lies in the datagram; it always starts at or after byte 12, so a
    /// fixed header can be written in place just before it.
    pub fn payload_range(&self) -> Range<usize> {
        self.payload.clone()
    }

    /// The contributing sources, in order.
    pub fn csrcs(&self) -> impl Iterator<Item = Ssrc> + 'a {
        let list = self.datagram.get(self.csrc.clone()).unwrap_or_default();
        list.chunks_exact(4)
            .map(|w| Ssrc(u32::from_be_bytes([w[0], w[1], w[2], w[3]])))
    }

    /// The header extension, when the X bit is set.
    pub fn extension(&self) -> Option<Extension<'a>> {
        let (profile, range) = self.extension.clone()?;
        let data = self.datagram.get(range)?;
        Some(Extension { profile, data })
    }

    /// How many padding bytes (the count octet included) follow the payload; 0 without P.
    pub fn padding_len(&self) -> u8 {
        self.padding
    }
}

/// What a datagram received on a port carrying both RTP and RTCP is (RFC 5761 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    /// Version 2 with a second byte outside 192..=223: RTP.
    Rtp,
    /// Version 2 with a second byte in 192..=223, the RTCP packet types (SR 200, RR 201,
    /// SDES 202, BYE 203, APP 204, and the feedback and XR types next to them).
    Rtcp,
    /// Too short or not version 2: neither (STUN, DTLS, noise).
    Other,
}

/// Classifies a datagram by its first two bytes without parsing it further.
pub fn classify(datagram: &[u8]) -> PacketKind {
    match datagram {
        [b0, b1, ..] if b0 >> 6 == RTP_VERSION => {
            if (192..=223).contains(b1) {
                PacketKind::Rtcp
            } else {
                PacketKind::Rtp
            }
        }
        _ => PacketKind::Other,
    }
}

/// Length of the RTCP common header (V, P, count, packet type, length).
pub const RTCP_HEADER_LEN: usize = 4;

/// RTCP sender report (RFC 3550 §6.4.1).
pub const RTCP_SR: u8 = 200;
/// RTCP receiver report (RFC 3550 §6.4.2).
pub const RTCP_RR: u8 = 201;
/// RTCP source description (RFC 3550 §6.5).
pub const RTCP_SDES: u8 = 202;
/// RTCP goodbye (RFC 3550 §6.6).
pub const RTCP_BYE: u8 = 203;
/// RTCP application-defined (RFC 3550 §6.7).
pub const RTCP_APP: u8 = 204;

/// A validated compound RTCP packet (RFC 3550 §6.1, checks of §A.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtcpCompound {
    /// The packet type of the first packet.
    pub first_type: u8,
    /// The sender SSRC of the first packet, when it is long enough to carry one.
    pub sender_ssrc: Option<Ssrc>,
    /// How many packets the compound holds.
    pub packets: usize,
}

/// Walks a compound RTCP packet and checks every packet's version, type range and length,
/// and that only the last packet is padded. Contents of reports are not interpreted.
pub fn parse_rtcp(datagram: &[u8]) -> Result<RtcpCompound, RtpError> {
    let mut rest = datagram;
    let mut first: Option<(u8, Option<Ssrc>)> = None;
    let mut packets = 0usize;
    while !rest.is_empty() {
        let Some(&[b0, packet_type, l0, l1]) = rest.first_chunk::<RTCP_HEADER_LEN>() else {
            return Err(RtpError::TooShort {
                len: rest.len(),
                need: RTCP_HEADER_LEN,
            });
        };
        let version = b0 >> 6;
        if version != RTP_VERSION {
            return Err(RtpError::BadVersion(version));
        }
        if !(192..=223).contains(&packet_type) {
            return Err(RtpError::NotRtcp(packet_type));
        }
        let words = u16::from_be_bytes([l0, l1]);
        let total = RTCP_HEADER_LEN + 4 * usize::from(words);
        let Some((packet, tail)) = rest.split_at_checked(total) else {
            return Err(RtpError::RtcpLengthOverrun { words });
        };
        if b0 & 0x20 != 0 {
            let count = packet.last().copied().unwrap_or(0);
            let available = total - RTCP_HEADER_LEN;
            if !tail.is_empty() || count == 0 || usize::from(count) > available {
                return Err(RtpError::BadPadding { count, available });
            }
        }
        if first.is_none() {
            let ssrc = packet
                .get(4..8)
                .and_then(|s| s.first_chunk::<4>())
                .map(|s| Ssrc(u32::from_be_bytes(*s)));
            first = Some((packet_type, ssrc));
        }
        packets += 1;
        rest = tail;
    }
    match first {
        Some((first_type, sender_ssrc)) => Ok(RtcpCompound {
            first_type,
            sender_ssrc,
            packets,
        }),
        None => Err(RtpError::TooShort {
            len: 0,
            need: RTCP_HEADER_LEN,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(seq: u16) -> RtpHeader {
        RtpHeader {
            marker: true,
            payload_type: Pt::PCMA,
            sequence_number: seq,
            timestamp: 0x0102_0304,
            ssrc: Ssrc(0xdead_beef),
        }
    }

    #[test]
    fn build_then_parse_round_trips() {
        let mut out = [0u8; 64];
        let n = build(&header(0xabcd), b"hello", &mut out).unwrap();
        assert_eq!(n, 17);
        assert_eq!(
            out[..12],
            [0x80, 0x88, 0xab, 0xcd, 1, 2, 3, 4, 0xde, 0xad, 0xbe, 0xef]
        );
        let p = RtpPacket::parse(&out[..n]).unwrap();
        assert_eq!(p.header, header(0xabcd));
        assert_eq!(p.payload(), b"hello");
        assert_eq!(p.payload_range(), 12..17);
        assert_eq!(p.csrcs().count(), 0);
        assert_eq!(p.extension(), None);
        assert_eq!(p.padding_len(), 0);
    }

    #[test]
    fn parses_csrcs_extension_and_padding() {
        let mut d = vec![0xb2, 0x00, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        d.extend_from_slice(&[0, 0, 0, 10, 0, 0, 0, 11]); // two CSRCs
        d.extend_from_slice(&[0xbe, 0xde, 0, 1, 9, 9, 9, 9]); // one-word extension
        d.extend_from_slice(b"pay");
        d.extend_from_slice(&[0, 0, 3]); // three bytes of padding
        let p = RtpPacket::parse(&d).unwrap();
        assert!(!p.header.marker);
        assert_eq!(p.header.payload_type, Pt::PCMU);
        assert_eq!(p.header.sequence_number, 1);
        assert_eq!(p.header.timestamp, 2);
        assert_eq!(p.header.ssrc, Ssrc(3));
        assert_eq!(p.csrcs().collect::<Vec<_>>(), vec![Ssrc(10), Ssrc(11)]);
        assert_eq!(
            p.extension(),
            Some(Extension {
                profile: 0xbede,
                data: &[9, 9, 9, 9]
            })
        );
        assert_eq!(p.payload(), b"pay");
        assert_eq!(p.payload_range(), 28..31);
        assert_eq!(p.padding_len(), 3);
    }

    #[test]
    fn rejects_short_and_wrong_version() {
        assert_eq!(
            RtpPacket::parse(&[0x80; 11]),
            Err(RtpError::TooShort { len: 11, need: 12 })
        );
        assert_eq!(RtpPacket::parse(&[0x40; 12]), Err(RtpError::BadVersion(1)));
    }

    #[test]
    fn cve_2022_21722_csrc_count_overrun_is_rejected() {
        let mut d = [0u8; 20];
        d[0] = 0x83; // three CSRCs need 24 bytes
        assert_eq!(
            RtpPacket::parse(&d),
            Err(RtpError::CsrcOverrun { count: 3 })
        );
    }

    #[test]
    fn extension_length_overrun_is_rejected() {
        let mut d = vec![0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            RtpPacket::parse(&d),
            Err(RtpError::ExtensionOverrun { words: 0 })
        );
        d.extend_from_slice(&[0xbe, 0xde, 0xff, 0xff, 1, 2, 3, 4]);
        assert_eq!(
            RtpPacket::parse(&d),
            Err(RtpError::ExtensionOverrun { words: 0xffff })
        );
    }

    #[test]
    fn padding_overrun_or_zero_is_rejected() {
        let mut d = vec![0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 5];
        assert_eq!(
            RtpPacket::parse(&d),
            Err(RtpError::BadPadding {
                count: 5,
                available: 2
            })
        );
        d[13] = 0;
        assert_eq!(
            RtpPacket::parse(&d),
            Err(RtpError::BadPadding {
                count: 0,
                available: 2
            })
        );
        d[13] = 2;
        let p = RtpPacket::parse(&d).unwrap();
        assert_eq!(p.payload(), b"");
        assert_eq!(p.padding_len(), 2);
    }

    #[test]
    fn build_into_small_buffer_fails() {
        let mut out = [0u8; 13];
        assert_eq!(
            build(&header(1), b"ab", &mut out),
            Err(RtpError::BufferTooSmall { need: 14, have: 13 })
        );
        assert_eq!(
            header(1).write(&mut out[..11]),
            Err(RtpError::BufferTooSmall { need: 12, have: 11 })
        );
    }

    #[test]
    fn classify_separates_rtp_rtcp_and_other() {
        assert_eq!(classify(&[0x80, 0x00]), PacketKind::Rtp);
        assert_eq!(classify(&[0x80, 0xe5]), PacketKind::Rtp); // marker + PT 101
        assert_eq!(classify(&[0x80, RTCP_SR]), PacketKind::Rtcp);
        assert_eq!(classify(&[0x81, RTCP_APP]), PacketKind::Rtcp);
        assert_eq!(classify(&[0x00, 0x01]), PacketKind::Other); // STUN
        assert_eq!(classify(&[0x16, 0xfe]), PacketKind::Other); // DTLS
        assert_eq!(classify(&[0x80]), PacketKind::Other);
    }

    #[test]
    fn compound_rtcp_is_walked() {
        let mut d = vec![0x80, RTCP_RR, 0, 1, 0, 0, 0, 7];
        d.extend_from_slice(&[0x81, RTCP_SDES, 0, 2, 0, 0, 0, 7, 1, 1, b'a', 0]);
        assert_eq!(
            parse_rtcp(&d),
            Ok(RtcpCompound {
                first_type: RTCP_RR,
                sender_ssrc: Some(Ssrc(7)),
                packets: 2
            })
        );
    }

    #[test]
    fn rtcp_length_overrun_is_rejected() {
        let d = [0x80, RTCP_BYE, 0x00, 0x09, 0, 0, 0, 1];
        assert_eq!(
            parse_rtcp(&d),
            Err(RtpError::RtcpLengthOverrun { words: 9 })
        );
        assert_eq!(
            parse_rtcp(&d[..3]),
            Err(RtpError::TooShort { len: 3, need: 4 })
        );
        assert_eq!(parse_rtcp(&[]), Err(RtpError::TooShort { len: 0, need: 4 }));
        assert_eq!(
            parse_rtcp(&[0x80, 0x60, 0, 0]),
            Err(RtpError::NotRtcp(0x60))
        );
        assert_eq!(
            parse_rtcp(&[0x40, RTCP_RR, 0, 0]),
            Err(RtpError::BadVersion(1))
        );
    }

    #[test]
    fn rtcp_padding_only_on_last_packet() {
        let padded_first = [0xa0, RTCP_RR, 0, 1, 0, 0, 0, 4, 0x80, RTCP_BYE, 0, 0];
        assert_eq!(
            parse_rtcp(&padded_first),
            Err(RtpError::BadPadding {
                count: 4,
                available: 4
            })
        );
        let padded_last = [
            0x80, RTCP_RR, 0, 1, 0, 0, 0, 1, 0xa0, RTCP_BYE, 0, 1, 0, 0, 0, 4,
        ];
        assert_eq!(
            parse_rtcp(&padded_last),
            Ok(RtcpCompound {
                first_type: RTCP_RR,
                sender_ssrc: Some(Ssrc(1)),
                packets: 2
            })
        );
    }

    #[test]
    fn no_input_of_up_to_three_bytes_panics_and_all_lengths_are_checked() {
        // Exhaustive over short prefixes, then every first byte over a long random-ish body.
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                for len in 0..=3 {
                    let d = [a, b, 0xff][..len].to_vec();
                    let _ = RtpPacket::parse(&d);
                    let _ = parse_rtcp(&d);
                    let _ = classify(&d);
                }
                let mut d = [b; 40];
                d[0] = a;
                for len in 0..=40 {
                    if let Ok(p) = RtpPacket::parse(&d[..len]) {
                        assert!(p.payload_range().start >= FIXED_HEADER_LEN);
                        assert!(p.payload_range().end <= len);
                    }
                    let _ = parse_rtcp(&d[..len]);
                }
            }
        }
    }
}
