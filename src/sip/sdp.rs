//! SDP session descriptions (RFC 8866, formerly RFC 4566) and the RFC 3264 offer/answer model
//! for one audio stream.
//!
//! vca-sip terminates calls as an audio endpoint: it accepts one RTP/AVP audio stream carrying
//! G.711 (PCMU or PCMA) and, when offered, RFC 4733 telephone-events. Every other stream in an
//! offer is declined with port 0, as RFC 3264 §6 requires, so that the answer keeps the
//! offer's m= lines in the same count and order.
//!
//! ```text
//!   INVITE with SDP:     offer ──> SessionDescription::parse ──> LocalSession::answer ──> 200 body
//!   INVITE without SDP:  LocalSession::offer ──> 200 body;  ACK body ──> LocalSession::accept_answer
//! ```
//!
//! Parsing is lenient where carriers differ (CRLF or bare LF, stray whitespace, unknown lines
//! and attributes, IPv6 as in RFC 5118) and strict where a wrong guess would send audio to the
//! wrong place. Nothing here does IO; the caller maps [`NegotiationError`] to a 488.

use std::fmt::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Most m= lines accepted in one description. A real call offers one to three streams; the
/// cap bounds the answer we build for an offer crafted with thousands of m= lines.
pub const MAX_MEDIA: usize = 16;

/// Packet duration we send and ask for (a=ptime), in milliseconds: the media layer works in
/// 20 ms frames.
pub const LOCAL_PTIME_MS: u32 = 20;

/// Payload type we use for telephone-event in our own offers (a common choice among carriers).
pub const LOCAL_TELEPHONE_EVENT_PT: u8 = 101;

/// The address in `c=IN IP4 0.0.0.0`, the RFC 2543 way to put a call on hold (RFC 3264
/// §8.4): a [`Negotiated::remote_rtp`] with this address means "do not send".
pub const HOLD_ADDRESS: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

/// Codecs we offer and accept when the trunk does not narrow the list: PCMA first, as most
/// carriers outside North America prefer it.
pub const DEFAULT_CODECS: [Codec; 2] = [Codec::Pcma, Codec::Pcmu];

/// Why a body could not be read as SDP. Any of these ends the offer/answer exchange with a 488.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SdpError {
    /// The body is not UTF-8 text.
    #[error("SDP body is not UTF-8")]
    NotUtf8,
    /// The body has no `v=` line first (empty body, or not SDP at all).
    #[error("SDP does not start with v=")]
    MissingVersion,
    /// `v=` carries a version other than 0.
    #[error("unsupported SDP version {0:?}")]
    UnsupportedVersion(String),
    /// A line is not of the form `<letter>=<value>`.
    #[error("line {line} is not <type>=<value>")]
    MalformedLine {
        /// One-based line number.
        line: usize,
    },
    /// The mandatory `o=` line is missing.
    #[error("SDP has no o= line")]
    MissingOrigin,
    /// The `o=` line does not have its six fields.
    #[error("malformed o= line")]
    MalformedOrigin,
    /// A `c=` line is not `IN IP4|IP6 <address>`.
    #[error("malformed c= line on line {line}")]
    MalformedConnection {
        /// One-based line number.
        line: usize,
    },
    /// An `m=` line does not have media, port, proto and at least one format.
    #[error("malformed m= line on line {line}")]
    MalformedMedia {
        /// One-based line number.
        line: usize,
    },
    /// An attribute this module relies on (rtpmap, fmtp, ptime, maxptime, rtcp) is malformed.
    #[error("malformed a={attribute} on line {line}")]
    MalformedAttribute {
        /// The attribute name.
        attribute: &'static str,
        /// One-based line number.
        line: usize,
    },
    /// More than [`MAX_MEDIA`] m= lines.
    #[error("more than {MAX_MEDIA} m= lines")]
    TooManyMedia,
}

/// Why an offer or answer, though readable, cannot set up a call: the caller answers 488
/// Not Acceptable Here (Q.850 cause 88) and records the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NoMediaReason {
    /// The description has no m= line at all.
    NoStreams,
    /// Every m= line has port 0 (all streams disabled).
    AllStreamsDisabled,
    /// No enabled audio stream (only video, or other media).
    NoAudioStream,
    /// Audio is offered only over an RTP profile other than plain RTP/AVP (RTP/SAVP, SAVPF,
    /// UDP/TLS/RTP/SAVP, AVPF): SRTP is not served on carrier trunks.
    SecureRtpOnly,
    /// Audio is offered with no codec in our allowed list.
    NoCommonCodec,
    /// The audio stream has no c= line, or its address is a host name rather than an IP.
    NoConnectionAddress,
    /// An answer's m= lines do not match the offer's, one for one (RFC 3264 §6).
    StreamCountMismatch,
    /// We have no outstanding offer for this answer to complete.
    NoPendingOffer,
}

impl NoMediaReason {
    /// A short stable token for call records and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoStreams => "no-streams",
            Self::AllStreamsDisabled => "all-streams-disabled",
            Self::NoAudioStream => "no-audio-stream",
            Self::SecureRtpOnly => "secure-rtp-only",
            Self::NoCommonCodec => "no-common-codec",
            Self::NoConnectionAddress => "no-connection-address",
            Self::StreamCountMismatch => "stream-count-mismatch",
            Self::NoPendingOffer => "no-pending-offer",
        }
    }
}

impl fmt::Display for NoMediaReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of offer/answer when no media session can be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NegotiationError {
    /// The body is not valid SDP.
    #[error("malformed SDP: {0}")]
    Malformed(#[from] SdpError),
    /// The SDP is valid but offers nothing we can use.
    #[error("no acceptable media: {0}")]
    NoAcceptableMedia(NoMediaReason),
}

impl NegotiationError {
    /// The SIP status to send: 488 Not Acceptable Here for both kinds (RFC 3261 §21.4.26),
    /// since the request itself is well formed and only its session description is refused.
    /// An error on an answer carried in an ACK cannot be refused; the caller ends the call
    /// with BYE instead.
    pub fn status(&self) -> u16 {
        488
    }
}

pub use crate::kinds::Codec;

/// How a description names a codec: SDP's business, so it lives here rather than with the
/// vocabulary.
impl Codec {
    /// The codec a payload type in a description stands for: by its rtpmap when present
    /// (name compared case-insensitively, 8000 Hz, mono), else by the static number.
    fn identify(pt: u8, rtpmap: Option<&RtpMap>) -> Option<Codec> {
        match rtpmap {
            Some(map) => {
                let mono = map.channels.is_none_or(|c| c == 1);
                if map.clock_rate != 8000 || !mono {
                    return None;
                }
                [Codec::Pcmu, Codec::Pcma]
                    .into_iter()
                    .find(|c| map.encoding.eq_ignore_ascii_case(c.encoding_name()))
            }
            None => [Codec::Pcmu, Codec::Pcma]
                .into_iter()
                .find(|c| c.static_pt() == pt),
        }
    }
}

/// Encoding name of RFC 4733 DTMF events; its payload type is always dynamic.
pub const TELEPHONE_EVENT: &str = "telephone-event";

/// Whether a payload type is telephone-event at 8000 Hz, which the G.711 stream can carry.
fn is_telephone_event(rtpmap: Option<&RtpMap>) -> bool {
    rtpmap.is_some_and(|m| m.encoding.eq_ignore_ascii_case(TELEPHONE_EVENT) && m.clock_rate == 8000)
}

/// Stream direction (RFC 8866 §6.7, RFC 3264 §6.1), always from the point of view of the side
/// that wrote the description.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    /// Send and receive (the default when no attribute is present).
    #[default]
    SendRecv,
    /// The writer only sends: on an offer from the peer this is a hold.
    SendOnly,
    /// The writer only receives.
    RecvOnly,
    /// Neither side sends.
    Inactive,
}

impl Direction {
    /// The direction an answer takes for this offered direction (RFC 3264 §6.1): sendonly is
    /// answered recvonly (the peer holds us), recvonly sendonly, the others unchanged.
    pub const fn answer(self) -> Self {
        match self {
            Self::SendOnly => Self::RecvOnly,
            Self::RecvOnly => Self::SendOnly,
            other => other,
        }
    }

    /// Whether the writer of this direction sends media.
    pub const fn sends(self) -> bool {
        matches!(self, Self::SendRecv | Self::SendOnly)
    }

    /// Whether the writer of this direction expects to receive media.
    pub const fn receives(self) -> bool {
        matches!(self, Self::SendRecv | Self::RecvOnly)
    }

    /// The attribute name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::SendRecv => "sendrecv",
            Self::SendOnly => "sendonly",
            Self::RecvOnly => "recvonly",
            Self::Inactive => "inactive",
        }
    }

    fn from_attribute(name: &str) -> Option<Self> {
        match name {
            "sendrecv" => Some(Self::SendRecv),
            "sendonly" => Some(Self::SendOnly),
            "recvonly" => Some(Self::RecvOnly),
            "inactive" => Some(Self::Inactive),
            _ => None,
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `o=` line: who made the description and which revision it is. The version tells a
/// re-offer that changes the session from a refresh that does not (RFC 3264 §8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The user name, `-` when the writer has none.
    pub username: String,
    /// Session id, stable for the whole session. Kept as text: some stacks exceed 64 bits.
    pub session_id: String,
    /// Session version, raised by the writer whenever its description changes.
    pub session_version: String,
    /// The writer's address as written (IP literal or host name).
    pub address: String,
}

/// Where a `c=` line says to send media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionAddress {
    /// An IPv4 or IPv6 literal. IPv4-mapped IPv6 (`::ffff:a.b.c.d`, RFC 5118 §4.9) is
    /// reduced to IPv4 so that it can be reached from an IPv4 socket.
    Ip(IpAddr),
    /// A host name (RFC 8866 allows one); not usable as an RTP destination here.
    Name(String),
}

/// A `c=` line (RFC 8866 §5.7). Multicast TTL and count suffixes are dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// The connection address.
    pub address: ConnectionAddress,
}

impl Connection {
    /// The IP address to send RTP to, if the line names one.
    pub fn ip(&self) -> Option<IpAddr> {
        match self.address {
            ConnectionAddress::Ip(ip) => Some(ip),
            ConnectionAddress::Name(_) => None,
        }
    }
}

/// An `a=rtpmap` attribute: what a payload type number stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    /// Payload type number.
    pub pt: u8,
    /// Encoding name as written (`PCMU`, `telephone-event`).
    pub encoding: String,
    /// Clock rate in Hz.
    pub clock_rate: u32,
    /// Channel count when written.
    pub channels: Option<u8>,
}

/// An `a=fmtp` attribute: format parameters for one payload type, kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fmtp {
    /// Payload type number.
    pub pt: u8,
    /// The parameters after the payload type.
    pub params: String,
}

/// An `a=rtcp` attribute (RFC 3605): the RTCP port when it is not RTP port + 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rtcp {
    /// RTCP port.
    pub port: u16,
    /// RTCP address when it differs from the stream's c=.
    pub connection: Option<Connection>,
}

/// One `m=` section with the attributes this endpoint uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    /// Media type (`audio`, `video`, ...), as written.
    pub media: String,
    /// Transport port; 0 means the stream is disabled.
    pub port: u16,
    /// Transport protocol (`RTP/AVP`, `RTP/SAVP`, ...), as written.
    pub proto: String,
    /// Formats as written; payload type numbers for RTP profiles.
    pub formats: Vec<String>,
    /// Media-level c=, which overrides the session-level one.
    pub connection: Option<Connection>,
    /// a=rtpmap lines, in order.
    pub rtpmaps: Vec<RtpMap>,
    /// a=fmtp lines, in order.
    pub fmtps: Vec<Fmtp>,
    /// a=ptime in milliseconds.
    pub ptime: Option<u32>,
    /// a=maxptime in milliseconds.
    pub maxptime: Option<u32>,
    /// Media-level direction attribute, which overrides the session-level one.
    pub direction: Option<Direction>,
    /// a=rtcp.
    pub rtcp: Option<Rtcp>,
}

impl MediaDescription {
    /// The rtpmap for a payload type, if one was given.
    pub fn rtpmap(&self, pt: u8) -> Option<&RtpMap> {
        self.rtpmaps.iter().find(|m| m.pt == pt)
    }

    /// The fmtp for a payload type, if one was given.
    pub fn fmtp(&self, pt: u8) -> Option<&Fmtp> {
        self.fmtps.iter().find(|f| f.pt == pt)
    }

    /// Whether the stream uses plain RTP/AVP, the only profile this endpoint serves.
    fn is_plain_rtp(&self) -> bool {
        self.proto.eq_ignore_ascii_case("RTP/AVP")
    }

    /// Whether the stream is RTP over a secure or feedback profile we refuse.
    fn is_other_rtp(&self) -> bool {
        let proto = self.proto.to_ascii_uppercase();
        proto.contains("RTP/") && !self.is_plain_rtp()
    }

    /// Payload type numbers among the formats, in offer order; non-numeric formats skipped.
    fn payload_types(&self) -> impl Iterator<Item = u8> + '_ {
        self.formats.iter().filter_map(|f| f.parse::<u8>().ok())
    }
}

/// A parsed session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    /// The `o=` line.
    pub origin: Origin,
    /// The `s=` line (empty when missing or blank).
    pub session_name: String,
    /// Session-level c=.
    pub connection: Option<Connection>,
    /// Session-level direction attribute.
    pub direction: Option<Direction>,
    /// The m= sections in order.
    pub media: Vec<MediaDescription>,
}

impl SessionDescription {
    /// Parses a body as SDP. Accepts CRLF or LF line ends and ignores unknown line types and
    /// attributes, so that any carrier's offer is read; rejects anything that is not SDP.
    pub fn parse(body: &[u8]) -> Result<Self, SdpError> {
        let text = std::str::from_utf8(body).map_err(|_| SdpError::NotUtf8)?;
        let mut lines = text
            .split('\n')
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty());

        match lines.next() {
            Some((_, first)) => match first.strip_prefix("v=") {
                Some("0") => {}
                Some(other) => return Err(SdpError::UnsupportedVersion(other.to_owned())),
                None => return Err(SdpError::MissingVersion),
            },
            None => return Err(SdpError::MissingVersion),
        }

        let mut origin = None;
        let mut session_name = String::new();
        let mut connection = None;
        let mut direction = None;
        let mut media: Vec<MediaDescription> = Vec::new();

        for (number, line) in lines {
            let (kind, value) = split_line(line).ok_or(SdpError::MalformedLine { line: number })?;
            match (kind, media.last_mut()) {
                ('o', None) => origin = Some(parse_origin(value)?),
                ('s', None) => value.clone_into(&mut session_name),
                ('c', None) => connection = Some(parse_connection(value, number)?),
                ('c', Some(m)) => m.connection = Some(parse_connection(value, number)?),
                ('m', _) => {
                    if media.len() == MAX_MEDIA {
                        return Err(SdpError::TooManyMedia);
                    }
                    media.push(parse_media(value, number)?);
                }
                ('a', None) => {
                    if let Some(d) = Direction::from_attribute(value) {
                        direction = Some(d);
                    }
                }
                ('a', Some(m)) => parse_media_attribute(m, value, number)?,
                _ => {}
            }
        }

        Ok(Self {
            origin: origin.ok_or(SdpError::MissingOrigin)?,
            session_name,
            connection,
            direction,
            media,
        })
    }

    /// The connection for a stream: its own c= if present, else the session-level one.
    pub fn connection_for<'a>(&'a self, media: &'a MediaDescription) -> Option<&'a Connection> {
        media.connection.as_ref().or(self.connection.as_ref())
    }

    /// The effective direction of a stream: media level, else session level, else sendrecv.
    /// A c= of 0.0.0.0 is the RFC 2543 way to put a stream on hold (RFC 3264 §8.4): the
    /// writer does not want to receive, so a sendrecv stream counts as sendonly.
    pub fn direction_for(&self, media: &MediaDescription) -> Direction {
        let written = media.direction.or(self.direction).unwrap_or_default();
        let unspecified = self
            .connection_for(media)
            .and_then(Connection::ip)
            .is_some_and(|ip| ip.is_unspecified());
        match (written, unspecified) {
            (Direction::SendRecv, true) => Direction::SendOnly,
            (Direction::RecvOnly, true) => Direction::Inactive,
            (d, _) => d,
        }
    }
}

/// Splits `x=value` into its type letter and value.
fn split_line(line: &str) -> Option<(char, &str)> {
    let mut chars = line.chars();
    let kind = chars.next()?;
    if !kind.is_ascii_alphabetic() {
        return None;
    }
    let value = chars.as_str().strip_prefix('=')?;
    Some((kind, value.trim()))
}

fn parse_origin(value: &str) -> Result<Origin, SdpError> {
    let fields: Vec<&str> = value.split_ascii_whitespace().collect();
    match fields.as_slice() {
        [
            username,
            session_id,
            session_version,
            _net,
            _addr_type,
            address,
        ] => Ok(Origin {
            username: (*username).to_owned(),
            session_id: (*session_id).to_owned(),
            session_version: (*session_version).to_owned(),
            address: (*address).to_owned(),
        }),
        _ => Err(SdpError::MalformedOrigin),
    }
}

fn parse_connection(value: &str, line: usize) -> Result<Connection, SdpError> {
    let malformed = SdpError::MalformedConnection { line };
    let fields: Vec<&str> = value.split_ascii_whitespace().collect();
    let [net, addr_type, address] = fields.as_slice() else {
        return Err(malformed);
    };
    if !net.eq_ignore_ascii_case("IN")
        || !(addr_type.eq_ignore_ascii_case("IP4") || addr_type.eq_ignore_ascii_case("IP6"))
    {
        return Err(malformed);
    }
    // Multicast forms carry /ttl and /count suffixes; some stacks bracket IPv6.
    let host = address.split('/').next().unwrap_or_default();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err(malformed);
    }
    let address = match host.parse::<IpAddr>() {
        Ok(ip) => ConnectionAddress::Ip(ip.to_canonical()),
        Err(_) => ConnectionAddress::Name(host.to_owned()),
    };
    Ok(Connection { address })
}

fn parse_media(value: &str, line: usize) -> Result<MediaDescription, SdpError> {
    let malformed = SdpError::MalformedMedia { line };
    let mut fields = value.split_ascii_whitespace();
    let (Some(media), Some(port), Some(proto)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err(malformed);
    };
    // `port/count` asks for several consecutive ports; one audio stream uses the first.
    let port = port
        .split('/')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .ok_or(malformed.clone())?;
    let formats: Vec<String> = fields.map(str::to_owned).collect();
    if formats.is_empty() {
        return Err(malformed);
    }
    Ok(MediaDescription {
        media: media.to_owned(),
        port,
        proto: proto.to_owned(),
        formats,
        connection: None,
        rtpmaps: Vec::new(),
        fmtps: Vec::new(),
        ptime: None,
        maxptime: None,
        direction: None,
        rtcp: None,
    })
}

fn parse_media_attribute(
    media: &mut MediaDescription,
    value: &str,
    line: usize,
) -> Result<(), SdpError> {
    let (name, rest) = value.split_once(':').unwrap_or((value, ""));
    let rest = rest.trim();
    let bad = |attribute| SdpError::MalformedAttribute { attribute, line };
    match name {
        "rtpmap" => {
            let map = parse_rtpmap(rest).ok_or(bad("rtpmap"))?;
            media.rtpmaps.push(map);
        }
        "fmtp" => {
            let (pt, params) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            let pt = pt.parse::<u8>().map_err(|_| bad("fmtp"))?;
            media.fmtps.push(Fmtp {
                pt,
                params: params.trim().to_owned(),
            });
        }
        "ptime" => media.ptime = Some(parse_millis(rest).ok_or(bad("ptime"))?),
        "maxptime" => media.maxptime = Some(parse_millis(rest).ok_or(bad("maxptime"))?),
        "rtcp" => media.rtcp = Some(parse_rtcp(rest, line).ok_or(bad("rtcp"))?),
        other => {
            if let Some(d) = Direction::from_attribute(other) {
                media.direction = Some(d);
            }
        }
    }
    Ok(())
}

fn parse_rtpmap(value: &str) -> Option<RtpMap> {
    let (pt, encoding) = value.split_once(char::is_whitespace)?;
    let pt = pt.parse::<u8>().ok()?;
    let mut parts = encoding.trim().split('/');
    let name = parts.next().filter(|n| !n.is_empty())?;
    let clock_rate = parts.next()?.parse::<u32>().ok()?;
    let channels = match parts.next() {
        Some(c) => Some(c.parse::<u8>().ok()?),
        None => None,
    };
    Some(RtpMap {
        pt,
        encoding: name.to_owned(),
        clock_rate,
        channels,
    })
}

/// Reads a ptime value; some stacks write fractional milliseconds (`20.0`).
fn parse_millis(value: &str) -> Option<u32> {
    let whole = value.split('.').next()?;
    whole.parse::<u32>().ok()
}

fn parse_rtcp(value: &str, line: usize) -> Option<Rtcp> {
    let (port, rest) = value.split_once(char::is_whitespace).unwrap_or((value, ""));
    let port = port.parse::<u16>().ok()?;
    let rest = rest.trim();
    let connection = if rest.is_empty() {
        None
    } else {
        Some(parse_connection(rest, line).ok()?)
    };
    Some(Rtcp { port, connection })
}

/// What offer/answer settled for the audio stream: everything the media layer needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// Where to send RTP. An unspecified address (0.0.0.0) means the peer holds the call.
    pub remote_rtp: SocketAddr,
    /// The payload type to put on the codec's packets (the peer's number for it).
    pub payload_type: u8,
    /// The codec.
    pub codec: Codec,
    /// The peer's telephone-event payload type, when DTMF events were agreed.
    pub telephone_event_pt: Option<u8>,
    /// Packet duration the peer asked to receive, in milliseconds (20 when not given).
    pub ptime: u32,
    /// Our direction, as written in our own description: whether we send and receive.
    pub direction: Direction,
}

/// Our half of the session: the address and port we advertise and the o= line state that
/// must stay consistent across every description we send in one dialog (RFC 3264 §8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSession {
    sess_id: u64,
    version: u64,
    addr: IpAddr,
    rtp_port: u16,
    /// Our last description without its o= line; a new one that equals it keeps the version.
    last_sent: Option<String>,
    /// The payload types we last offered, while the answer is outstanding.
    pending_offer: Option<PendingOffer>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PendingOffer {
    codecs: Vec<Codec>,
    telephone_event_pt: u8,
}

/// What goes into our m=audio line.
struct AudioLine {
    codecs: Vec<(u8, Codec)>,
    telephone_event_pt: Option<u8>,
    direction: Direction,
}

impl LocalSession {
    /// A session with a caller-chosen id (random or clock-derived, so that o= is unique) that
    /// advertises `addr:rtp_port`. The first description sent carries version 1.
    pub fn new(sess_id: u64, addr: IpAddr, rtp_port: u16) -> Self {
        Self {
            sess_id,
            version: 1,
            addr,
            rtp_port,
            last_sent: None,
            pending_offer: None,
        }
    }

    /// The session id written in o=.
    pub fn sess_id(&self) -> u64 {
        self.sess_id
    }

    /// The session version written in our most recent description.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The advertised media address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The advertised RTP port.
    pub fn rtp_port(&self) -> u16 {
        self.rtp_port
    }

    /// Answers an offer (RFC 3264 §6): accepts the first enabled RTP/AVP audio stream that
    /// shares a codec with `allowed`, choosing the first such codec in the OFFER's order, plus
    /// telephone-event under the offerer's number when offered; declines every other stream
    /// with port 0. Returns what was agreed and the answer body. On error nothing changes, so
    /// a refused re-INVITE leaves the session as it was (RFC 3261 §14.2).
    pub fn answer(
        &mut self,
        offer: &SessionDescription,
        allowed: &[Codec],
    ) -> Result<(Negotiated, String), NegotiationError> {
        let (index, negotiated) = select_audio(offer, allowed)?;
        let mut body = String::with_capacity(256);
        for (i, m) in offer.media.iter().enumerate() {
            if i == index {
                let line = AudioLine {
                    codecs: vec![(negotiated.payload_type, negotiated.codec)],
                    telephone_event_pt: negotiated.telephone_event_pt,
                    direction: negotiated.direction,
                };
                self.write_audio(&mut body, &line);
            } else {
                // A declined stream keeps its media type and proto; formats are echoed.
                let _ = write!(body, "m={} 0 {}", m.media, m.proto);
                for f in &m.formats {
                    let _ = write!(body, " {f}");
                }
                body.push_str("\r\n");
            }
        }
        Ok((negotiated, self.finish(&body)))
    }

    /// Builds an offer for an INVITE that came without SDP (we offer in the 2xx and the
    /// answer arrives in the ACK). Lists `allowed` in order with their static payload types
    /// and telephone-event as [`LOCAL_TELEPHONE_EVENT_PT`]. An empty list offers
    /// [`DEFAULT_CODECS`], since an offer without a codec could never be answered.
    pub fn offer(&mut self, allowed: &[Codec], direction: Direction) -> String {
        let allowed = if allowed.is_empty() {
            &DEFAULT_CODECS[..]
        } else {
            allowed
        };
        let line = AudioLine {
            codecs: allowed.iter().map(|c| (c.static_pt(), *c)).collect(),
            telephone_event_pt: Some(LOCAL_TELEPHONE_EVENT_PT),
            direction,
        };
        let mut body = String::new();
        self.write_audio(&mut body, &line);
        self.pending_offer = Some(PendingOffer {
            codecs: allowed.to_vec(),
            telephone_event_pt: LOCAL_TELEPHONE_EVENT_PT,
        });
        self.finish(&body)
    }

    /// Takes the answer to our last [`offer`](Self::offer): it must have exactly our one
    /// stream, enabled, with one of the codecs we offered. On success the offer is settled;
    /// on error the caller ends the call (an ACK cannot be refused).
    pub fn accept_answer(
        &mut self,
        answer: &SessionDescription,
    ) -> Result<Negotiated, NegotiationError> {
        let pending = self
            .pending_offer
            .take()
            .ok_or(NegotiationError::NoAcceptableMedia(
                NoMediaReason::NoPendingOffer,
            ))?;
        let fail = |r| Err(NegotiationError::NoAcceptableMedia(r));
        let [stream] = answer.media.as_slice() else {
            return fail(NoMediaReason::StreamCountMismatch);
        };
        if stream.port == 0 {
            return fail(NoMediaReason::AllStreamsDisabled);
        }
        if !stream.media.eq_ignore_ascii_case("audio") || !stream.is_plain_rtp() {
            return fail(NoMediaReason::NoAudioStream);
        }
        let Some(ip) = answer.connection_for(stream).and_then(Connection::ip) else {
            return fail(NoMediaReason::NoConnectionAddress);
        };
        let Some((payload_type, codec)) = stream.payload_types().find_map(|pt| {
            Codec::identify(pt, stream.rtpmap(pt))
                .filter(|c| pending.codecs.contains(c))
                .map(|c| (pt, c))
        }) else {
            return fail(NoMediaReason::NoCommonCodec);
        };
        let telephone_event_pt = stream
            .payload_types()
            .find(|pt| is_telephone_event(stream.rtpmap(*pt)))
            .or_else(|| {
                // Some answerers repeat our number without its rtpmap.
                stream
                    .payload_types()
                    .find(|pt| *pt == pending.telephone_event_pt)
            });
        Ok(Negotiated {
            remote_rtp: SocketAddr::new(ip, stream.port),
            payload_type,
            codec,
            telephone_event_pt,
            ptime: remote_ptime(stream),
            direction: answer.direction_for(stream).answer(),
        })
    }

    fn write_audio(&self, body: &mut String, line: &AudioLine) {
        let _ = write!(body, "m=audio {} RTP/AVP", self.rtp_port);
        for (pt, _) in &line.codecs {
            let _ = write!(body, " {pt}");
        }
        if let Some(pt) = line.telephone_event_pt {
            let _ = write!(body, " {pt}");
        }
        body.push_str("\r\n");
        for (pt, codec) in &line.codecs {
            let _ = write!(
                body,
                "a=rtpmap:{pt} {}/{}\r\n",
                codec.encoding_name(),
                codec.clock_rate()
            );
        }
        if let Some(pt) = line.telephone_event_pt {
            let _ = write!(
                body,
                "a=rtpmap:{pt} {TELEPHONE_EVENT}/8000\r\na=fmtp:{pt} 0-16\r\n"
            );
        }
        let _ = write!(body, "a=ptime:{LOCAL_PTIME_MS}\r\na={}\r\n", line.direction);
    }

    /// Prefixes the session-level lines, raising the version only when the description
    /// differs from the last one we sent (RFC 3264 §8).
    fn finish(&mut self, media: &str) -> String {
        let ip_kind = match self.addr {
            IpAddr::V4(_) => "IP4",
            IpAddr::V6(_) => "IP6",
        };
        // The address is formatted once; both texts are sized up front.
        let mut addr = String::with_capacity(48);
        let _ = write!(addr, "{}", self.addr);
        let mut rest = String::with_capacity(media.len() + addr.len() + 32);
        let _ = write!(rest, "s=-\r\nc=IN {ip_kind} {addr}\r\nt=0 0\r\n{media}");
        match &self.last_sent {
            Some(last) if *last == rest => {}
            Some(_) => self.version = self.version.saturating_add(1),
            None => {}
        }
        let mut text = String::with_capacity(rest.len() + addr.len() + 64);
        let _ = write!(
            text,
            "v=0\r\no=- {} {} IN {ip_kind} {addr}\r\n{rest}",
            self.sess_id, self.version
        );
        self.last_sent = Some(rest);
        text
    }
}

/// The peer's packet duration, 20 ms when absent or nonsensical.
fn remote_ptime(stream: &MediaDescription) -> u32 {
    match stream.ptime {
        Some(p) if (1..=200).contains(&p) => p,
        _ => LOCAL_PTIME_MS,
    }
}

/// Picks the stream to accept and what to agree on it, or says why nothing fits.
fn select_audio(
    offer: &SessionDescription,
    allowed: &[Codec],
) -> Result<(usize, Negotiated), NegotiationError> {
    let fail = |r| Err(NegotiationError::NoAcceptableMedia(r));
    if offer.media.is_empty() {
        return fail(NoMediaReason::NoStreams);
    }
    if offer.media.iter().all(|m| m.port == 0) {
        return fail(NoMediaReason::AllStreamsDisabled);
    }
    // The most specific reason across the enabled audio streams, if none is accepted.
    let mut reason = NoMediaReason::NoAudioStream;
    for (index, m) in offer.media.iter().enumerate() {
        if m.port == 0 || !m.media.eq_ignore_ascii_case("audio") {
            continue;
        }
        if !m.is_plain_rtp() {
            if m.is_other_rtp() && reason == NoMediaReason::NoAudioStream {
                reason = NoMediaReason::SecureRtpOnly;
            }
            continue;
        }
        let chosen = m.payload_types().find_map(|pt| {
            Codec::identify(pt, m.rtpmap(pt))
                .filter(|c| allowed.contains(c))
                .map(|c| (pt, c))
        });
        let Some((payload_type, codec)) = chosen else {
            reason = NoMediaReason::NoCommonCodec;
            continue;
        };
        let Some(ip) = offer.connection_for(m).and_then(Connection::ip) else {
            if reason != NoMediaReason::NoCommonCodec {
                reason = NoMediaReason::NoConnectionAddress;
            }
            continue;
        };
        let telephone_event_pt = m
            .payload_types()
            .find(|pt| is_telephone_event(m.rtpmap(*pt)));
        let negotiated = Negotiated {
            remote_rtp: SocketAddr::new(ip, m.port),
            payload_type,
            codec,
            telephone_event_pt,
            ptime: remote_ptime(m),
            direction: offer.direction_for(m).answer(),
        };
        return Ok((index, negotiated));
    }
    fail(reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;
    use std::path::PathBuf;

    const LOCAL_V4: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5));

    fn parse(text: &str) -> SessionDescription {
        match SessionDescription::parse(text.as_bytes()) {
            Ok(sd) => sd,
            Err(e) => panic!("fixture does not parse: {e}"),
        }
    }

    fn fixture_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sip-fixtures/sdp")
    }

    /// Runs one fixture: `<name>.sdp` answered with the default codecs must give exactly
    /// what `<name>.expect` lists (`key=value` lines).
    fn run_fixture(name: &str) {
        let dir = fixture_dir();
        let body = std::fs::read(dir.join(format!("{name}.sdp"))).unwrap_or_default();
        let expect_text =
            std::fs::read_to_string(dir.join(format!("{name}.expect"))).unwrap_or_default();
        let expect: Vec<(&str, &str)> = expect_text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .collect();
        assert!(!expect.is_empty(), "{name}.expect is missing or empty");
        let get = |k: &str| expect.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);

        let mut local = LocalSession::new(42, LOCAL_V4, 40000);
        let outcome = SessionDescription::parse(&body)
            .map_err(NegotiationError::from)
            .and_then(|offer| local.answer(&offer, &DEFAULT_CODECS));
        match get("result") {
            Some("answer") => {
                let (n, answer) = match outcome {
                    Ok(ok) => ok,
                    Err(e) => panic!("{name}: expected an answer, got {e}"),
                };
                assert_eq!(Some(n.codec.encoding_name()), get("codec"), "{name}: codec");
                assert_eq!(
                    Some(n.payload_type.to_string()).as_deref(),
                    get("pt"),
                    "{name}"
                );
                assert_eq!(
                    Some(n.remote_rtp.to_string()).as_deref(),
                    get("remote"),
                    "{name}"
                );
                assert_eq!(Some(n.direction.as_str()), get("direction"), "{name}");
                let te = n
                    .telephone_event_pt
                    .map_or("none".to_owned(), |p| p.to_string());
                assert_eq!(Some(te.as_str()), get("telephone_event"), "{name}");
                assert_eq!(Some(n.ptime.to_string()).as_deref(), get("ptime"), "{name}");
                let ports: Vec<String> = parse(&answer)
                    .media
                    .iter()
                    .map(|m| format!("{} {}", m.media, m.port))
                    .collect();
                assert_eq!(
                    Some(ports.join(",")).as_deref(),
                    get("answer_media"),
                    "{name}"
                );
            }
            Some("488") => match outcome {
                Err(e @ NegotiationError::NoAcceptableMedia(r)) => {
                    assert_eq!(e.status(), 488);
                    assert_eq!(Some(r.as_str()), get("reason"), "{name}: reason");
                }
                other => panic!("{name}: expected 488, got {other:?}"),
            },
            Some("malformed") => match outcome {
                Err(e @ NegotiationError::Malformed(_)) => assert_eq!(e.status(), 488),
                other => panic!("{name}: expected malformed, got {other:?}"),
            },
            other => panic!("{name}: unknown result {other:?}"),
        }
    }

    macro_rules! fixtures {
        ($($name:ident),* $(,)?) => {
            const FIXTURES: &[&str] = &[$(stringify!($name)),*];
            mod fixture {
                $(#[test] fn $name() { super::run_fixture(stringify!($name)); })*
            }
        };
    }

    fixtures! {
        pcmu_first,
        pcma_first,
        only_g729,
        port_zero_only,
        no_connection,
        ipv6_connection,
        media_level_connection_overrides,
        hold_sendonly,
        recvonly_offer,
        inactive_offer,
        telephone_event,
        audio_and_video,
        savp_only,
        savp_then_avp,
        hostname_connection,
        lf_line_endings,
        rfc5118_ipv6_in_sdp,
        rfc5118_mult_ip_in_sdp,
        rfc5118_ipv4_mapped_ipv6,
        garbage_text,
        empty_body,
    }

    #[test]
    fn every_fixture_file_has_a_test() {
        let mut on_disk: Vec<String> = std::fs::read_dir(fixture_dir())
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter_map(|n| n.strip_suffix(".sdp").map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        on_disk.sort();
        let mut listed: Vec<String> = FIXTURES.iter().map(|s| (*s).to_owned()).collect();
        listed.sort();
        assert_eq!(on_disk, listed);
    }

    const OFFER: &str = "v=0\r\no=carrier 123 456 IN IP4 198.51.100.1\r\ns=call\r\n\
        c=IN IP4 198.51.100.1\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0 8 101\r\n\
        a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\n";

    #[test]
    fn parses_every_field() {
        let sd = parse(
            "v=0\no=alice 2890844526 2890844527 IN IP6 2001:db8::1\ns=-\n\
             c=IN IP4 224.2.1.1/127/3\na=recvonly\nt=0 0\n\
             m=audio 49170/2 RTP/AVP 0 97\nc=IN IP6 [2001:db8::2]\n\
             a=rtpmap:97 opus/48000/2\na=fmtp:97 useinbandfec=1\na=ptime:30.0\na=maxptime:60\n\
             a=rtcp:53020 IN IP4 126.16.64.4\na=sendonly\na=x-unknown\n",
        );
        assert_eq!(
            sd.origin,
            Origin {
                username: "alice".into(),
                session_id: "2890844526".into(),
                session_version: "2890844527".into(),
                address: "2001:db8::1".into(),
            }
        );
        assert_eq!(sd.session_name, "-");
        assert_eq!(
            sd.connection.as_ref().and_then(Connection::ip),
            Some(IpAddr::V4(Ipv4Addr::new(224, 2, 1, 1)))
        );
        assert_eq!(sd.direction, Some(Direction::RecvOnly));
        let m = &sd.media[0];
        assert_eq!(
            (m.media.as_str(), m.port, m.proto.as_str()),
            ("audio", 49170, "RTP/AVP")
        );
        assert_eq!(m.formats, vec!["0".to_owned(), "97".to_owned()]);
        assert_eq!(
            m.connection.as_ref().and_then(Connection::ip),
            Some(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2)))
        );
        assert_eq!(
            m.rtpmaps,
            vec![RtpMap {
                pt: 97,
                encoding: "opus".into(),
                clock_rate: 48000,
                channels: Some(2)
            }]
        );
        assert_eq!(
            m.fmtp(97).map(|f| f.params.as_str()),
            Some("useinbandfec=1")
        );
        assert_eq!((m.ptime, m.maxptime), (Some(30), Some(60)));
        assert_eq!(
            m.rtcp,
            Some(Rtcp {
                port: 53020,
                connection: Some(Connection {
                    address: ConnectionAddress::Ip(IpAddr::V4(Ipv4Addr::new(126, 16, 64, 4)))
                }),
            })
        );
        assert_eq!(m.direction, Some(Direction::SendOnly));
        assert_eq!(sd.direction_for(m), Direction::SendOnly);
    }

    #[test]
    fn parse_errors_are_structured() {
        let cases: &[(&[u8], SdpError)] = &[
            (b"", SdpError::MissingVersion),
            (b"\xff\xfe", SdpError::NotUtf8),
            (b"v=1\r\n", SdpError::UnsupportedVersion("1".into())),
            (b"v=0\r\ns=x\r\n", SdpError::MissingOrigin),
            (b"v=0\r\no=a b\r\n", SdpError::MalformedOrigin),
            (
                b"v=0\r\nnot a line\r\n",
                SdpError::MalformedLine { line: 2 },
            ),
            (
                b"v=0\r\nc=IN IP4\r\n",
                SdpError::MalformedConnection { line: 2 },
            ),
            (
                b"v=0\r\nc=ATM NSAP x\r\n",
                SdpError::MalformedConnection { line: 2 },
            ),
            (
                b"v=0\r\nm=audio 70000 RTP/AVP 0\r\n",
                SdpError::MalformedMedia { line: 2 },
            ),
            (
                b"v=0\r\nm=audio 4000 RTP/AVP\r\n",
                SdpError::MalformedMedia { line: 2 },
            ),
            (
                b"v=0\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:300 X/8000\r\n",
                SdpError::MalformedAttribute {
                    attribute: "rtpmap",
                    line: 3,
                },
            ),
            (
                b"v=0\r\nm=audio 4000 RTP/AVP 0\r\na=ptime:abc\r\n",
                SdpError::MalformedAttribute {
                    attribute: "ptime",
                    line: 3,
                },
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(SessionDescription::parse(body).as_ref(), Err(expected));
        }
    }

    #[test]
    fn too_many_media_lines_are_refused() {
        let mut body = String::from("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n");
        for _ in 0..=MAX_MEDIA {
            body.push_str("m=audio 0 RTP/AVP 0\r\n");
        }
        assert_eq!(
            SessionDescription::parse(body.as_bytes()),
            Err(SdpError::TooManyMedia)
        );
    }

    #[test]
    fn answer_text_is_exact() {
        let mut local = LocalSession::new(7, LOCAL_V4, 40000);
        let (n, answer) = local
            .answer(&parse(OFFER), &DEFAULT_CODECS)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            answer,
            "v=0\r\no=- 7 1 IN IP4 203.0.113.5\r\ns=-\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\n\
             m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n\
             a=sendrecv\r\n"
        );
        assert_eq!(
            n,
            Negotiated {
                remote_rtp: "198.51.100.1:30000"
                    .parse()
                    .unwrap_or_else(|e| panic!("{e}")),
                payload_type: 0,
                codec: Codec::Pcmu,
                telephone_event_pt: Some(101),
                ptime: 20,
                direction: Direction::SendRecv,
            }
        );
    }

    #[test]
    fn allowed_list_narrows_but_offer_order_wins() {
        let offer = parse(OFFER);
        let mut local = LocalSession::new(1, LOCAL_V4, 40000);
        let pcma_only = local.answer(&offer, &[Codec::Pcma]).map(|(n, _)| n.codec);
        assert_eq!(pcma_only, Ok(Codec::Pcma));
        let both = local
            .answer(&offer, &[Codec::Pcma, Codec::Pcmu])
            .map(|(n, _)| n.codec);
        assert_eq!(both, Ok(Codec::Pcmu));
        assert_eq!(
            local.answer(&offer, &[]).map(|(n, _)| n),
            Err(NegotiationError::NoAcceptableMedia(
                NoMediaReason::NoCommonCodec
            ))
        );
    }

    #[test]
    fn dynamic_payload_type_for_g711_uses_offerers_number() {
        let offer = parse(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nc=IN IP4 192.0.2.1\r\n\
             m=audio 5000 RTP/AVP 112\r\na=rtpmap:112 pcma/8000/1\r\n",
        );
        let mut local = LocalSession::new(1, LOCAL_V4, 40000);
        let n = local
            .answer(&offer, &DEFAULT_CODECS)
            .map(|(n, _)| (n.codec, n.payload_type));
        assert_eq!(n, Ok((Codec::Pcma, 112)));
    }

    #[test]
    fn unchanged_reoffer_keeps_version_and_changes_raise_it() {
        let mut local = LocalSession::new(9, LOCAL_V4, 40000);
        let offer = parse(OFFER);
        let first = local.answer(&offer, &DEFAULT_CODECS).map(|(_, a)| a);
        assert_eq!(local.version(), 1);
        // A session refresh re-INVITE with the same offer gets the same answer, same version.
        let refresh = local.answer(&offer, &DEFAULT_CODECS).map(|(_, a)| a);
        assert_eq!(first, refresh);
        assert_eq!(local.version(), 1);
        // Hold changes our direction: the version goes up once.
        let hold = parse(&format!("{OFFER}a=sendonly\r\n"));
        let held = local.answer(&hold, &DEFAULT_CODECS);
        assert_eq!(
            held.as_ref().map(|(n, _)| n.direction),
            Ok(Direction::RecvOnly)
        );
        assert_eq!(local.version(), 2);
        assert!(held.is_ok_and(|(_, a)| a.contains("o=- 9 2 IN IP4") && a.contains("a=recvonly")));
        let _ = local.answer(&hold, &DEFAULT_CODECS);
        assert_eq!(local.version(), 2);
        // A refused offer changes nothing.
        let g729 = parse(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nc=IN IP4 192.0.2.1\r\nm=audio 5000 RTP/AVP 18\r\n",
        );
        assert!(local.answer(&g729, &DEFAULT_CODECS).is_err());
        assert_eq!(local.version(), 2);
        // Resume.
        let _ = local.answer(&offer, &DEFAULT_CODECS);
        assert_eq!(local.version(), 3);
    }

    #[test]
    fn connection_zero_is_old_style_hold() {
        let offer = parse(
            "v=0\r\no=- 1 2 IN IP4 192.0.2.1\r\nc=IN IP4 0.0.0.0\r\nm=audio 5000 RTP/AVP 8\r\n",
        );
        let mut local = LocalSession::new(1, LOCAL_V4, 40000);
        let n = local
            .answer(&offer, &DEFAULT_CODECS)
            .map(|(n, _)| (n.direction, n.remote_rtp.ip()));
        assert_eq!(n, Ok((Direction::RecvOnly, HOLD_ADDRESS)));
    }

    #[test]
    fn ipv4_mapped_ipv6_connection_is_reached_over_ipv4() {
        let offer = parse(
            "v=0\r\no=- 1 1 IN IP6 ::ffff:192.0.2.2\r\nc=IN IP6 ::ffff:192.0.2.2\r\n\
             m=audio 6000 RTP/AVP 0\r\n",
        );
        let mut local = LocalSession::new(1, LOCAL_V4, 40000);
        let remote = local
            .answer(&offer, &DEFAULT_CODECS)
            .map(|(n, _)| n.remote_rtp);
        assert_eq!(
            remote,
            Ok(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
                6000
            ))
        );
    }

    #[test]
    fn every_prefix_of_an_offer_parses_or_errors_without_panic() {
        let mut local = LocalSession::new(1, LOCAL_V4, 40000);
        for end in 0..=OFFER.len() {
            if let Ok(sd) = SessionDescription::parse(&OFFER.as_bytes()[..end]) {
                let _ = local.answer(&sd, &DEFAULT_CODECS);
            }
        }
        let noise: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
        assert!(SessionDescription::parse(&noise).is_err());
    }

    #[test]
    fn ipv6_local_session_writes_ip6() {
        let addr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 5));
        let mut local = LocalSession::new(3, addr, 41000);
        let offer = local.offer(&[Codec::Pcmu], Direction::SendRecv);
        assert_eq!(
            offer,
            "v=0\r\no=- 3 1 IN IP6 2001:db8::5\r\ns=-\r\nc=IN IP6 2001:db8::5\r\nt=0 0\r\n\
             m=audio 41000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n\
             a=sendrecv\r\n"
        );
    }

    #[test]
    fn offer_then_answer_in_ack() {
        let mut local = LocalSession::new(5, LOCAL_V4, 40000);
        let offer = local.offer(&DEFAULT_CODECS, Direction::SendRecv);
        assert!(offer.contains("m=audio 40000 RTP/AVP 8 0 101\r\n"));
        let mut other = LocalSession::new(5, LOCAL_V4, 40000);
        assert_eq!(other.offer(&[], Direction::SendRecv), offer);
        let answer = parse(
            "v=0\r\no=peer 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n\
             m=audio 6000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n\
             a=ptime:30\r\na=recvonly\r\n",
        );
        assert_eq!(
            local.accept_answer(&answer),
            Ok(Negotiated {
                remote_rtp: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9)), 6000),
                payload_type: 0,
                codec: Codec::Pcmu,
                telephone_event_pt: Some(101),
                ptime: 30,
                direction: Direction::SendOnly,
            })
        );
        // The offer is settled: a second answer has nothing to complete.
        assert_eq!(
            local.accept_answer(&answer),
            Err(NegotiationError::NoAcceptableMedia(
                NoMediaReason::NoPendingOffer
            ))
        );
    }

    #[test]
    fn answer_must_pick_an_offered_codec() {
        let cases = [
            ("m=audio 6000 RTP/AVP 18\r\n", NoMediaReason::NoCommonCodec),
            ("m=audio 6000 RTP/AVP 0\r\n", NoMediaReason::NoCommonCodec),
            ("m=audio 0 RTP/AVP 8\r\n", NoMediaReason::AllStreamsDisabled),
            (
                "m=audio 6000 RTP/AVP 8\r\nm=video 0 RTP/AVP 96\r\n",
                NoMediaReason::StreamCountMismatch,
            ),
            ("m=video 6000 RTP/AVP 8\r\n", NoMediaReason::NoAudioStream),
        ];
        for (media, reason) in cases {
            let mut local = LocalSession::new(5, LOCAL_V4, 40000);
            let _ = local.offer(&[Codec::Pcma], Direction::SendRecv);
            let answer = parse(&format!(
                "v=0\r\no=p 1 1 IN IP4 192.0.2.9\r\nc=IN IP4 192.0.2.9\r\n{media}"
            ));
            assert_eq!(
                local.accept_answer(&answer),
                Err(NegotiationError::NoAcceptableMedia(reason)),
                "{media}"
            );
        }
    }
}
