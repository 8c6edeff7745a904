//! SIP messages (RFC 3261 §7, §20, §25): vca-sip's own message type, a lazy zero-copy parser
//! over [`Bytes`], and the serialisers for the responses and requests a UAS sends.
//!
//! Parsing is in two steps. [`Message::parse`] indexes the header section once (start line,
//! one name/value slice per header line, folding turned into spaces, compact names
//! resolved) and checks only the start line and the body bounds. Typed values (`Via`, `From`,
//! `CSeq`, ...) are parsed from their slice when the caller asks for them and borrow from
//! the message, so a hop pays only for the headers it reads.
//!
//! Body bounds follow §18.3: with a Content-Length the body is that many octets after the
//! header section (fewer is an error, octets beyond it are ignored, as on a datagram); with
//! none the body is the rest of the input. Stream framing, which requires Content-Length,
//! lives in [`crate::sip::framing`].

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

/// Longest header line accepted (§21.5.7 513 territory; also a memory bound).
pub const MAX_LINE: usize = 8 * 1024;
/// Largest header section accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// Most header lines indexed in one message.
pub const MAX_HEADER_LINES: usize = 256;
/// Most Via values a request may carry before it is refused.
pub const MAX_VIAS: usize = 100;

/// Why a message, or one of its headers, could not be parsed.
///
/// [`ParseError::status`] maps each variant to the SIP status a UAS answers with, when a
/// response can be addressed at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// No start line: the input is empty or only line breaks.
    #[error("empty message")]
    Empty,
    /// The start line is neither a Request-Line nor a Status-Line.
    #[error("malformed start line")]
    BadStartLine,
    /// The SIP version is well formed but not SIP/2.0.
    #[error("unsupported SIP version")]
    BadVersion,
    /// The Request-URI does not parse, or carries headers (§19.1.1).
    #[error("malformed Request-URI")]
    BadRequestUri,
    /// A header line has no colon or no valid name.
    #[error("malformed header line")]
    BadHeaderLine,
    /// A required header is absent.
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    /// A header value does not parse.
    #[error("malformed {0} header")]
    BadHeader(&'static str),
    /// A single-valued header appears more than once with different values.
    #[error("conflicting {0} headers")]
    DuplicateHeader(&'static str),
    /// The CSeq method is not the request method (§8.2.6 400).
    #[error("CSeq method does not match the request method")]
    CSeqMethodMismatch,
    /// Content-Length announces more octets than the message holds.
    #[error("body shorter than Content-Length")]
    ContentLengthMismatch,
    /// A header line is longer than [`MAX_LINE`].
    #[error("header line too long")]
    LineTooLong,
    /// The header section is larger than [`MAX_HEAD`] or has more than
    /// [`MAX_HEADER_LINES`] lines.
    #[error("header section too large")]
    HeadTooLarge,
    /// More than [`MAX_VIAS`] Via values.
    #[error("too many Via values")]
    TooManyVias,
}

impl ParseError {
    /// The status a UAS answers with (§21.4.1 400, §21.5.7 513, §21.5.6 505).
    pub fn status(&self) -> u16 {
        match self {
            ParseError::BadVersion => 505,
            ParseError::LineTooLong | ParseError::HeadTooLarge | ParseError::TooManyVias => 513,
            _ => 400,
        }
    }

    /// A reason phrase naming what was wrong; never contains input-derived text.
    pub fn reason(&self) -> String {
        match self {
            ParseError::BadVersion => "Version Not Supported".to_owned(),
            ParseError::LineTooLong | ParseError::HeadTooLarge | ParseError::TooManyVias => {
                "Message Too Large".to_owned()
            }
            ParseError::MissingHeader(h) => format!("Missing {h} Header"),
            ParseError::BadHeader(h) => format!("Bad {h} Header"),
            ParseError::DuplicateHeader(h) => format!("Conflicting {h} Headers"),
            ParseError::CSeqMethodMismatch => "CSeq Method Mismatch".to_owned(),
            ParseError::ContentLengthMismatch => "Bad Content-Length".to_owned(),
            ParseError::BadRequestUri => "Bad Request-URI".to_owned(),
            ParseError::BadStartLine => "Bad Request-Line".to_owned(),
            ParseError::BadHeaderLine => "Bad Header Line".to_owned(),
            ParseError::Empty => "Bad Request".to_owned(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Header names

/// Headers vca-sip recognises by name (long and compact form, §7.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Name {
    Via,
    From,
    To,
    CallId,
    CSeq,
    MaxForwards,
    Contact,
    Require,
    Supported,
    ContentLength,
    ContentType,
    ContentEncoding,
    Authorization,
    SessionExpires,
    MinSe,
    Route,
    RecordRoute,
    UserAgent,
    PCalledPartyId,
    Accept,
    Subject,
    Event,
    ReferTo,
    ReferredBy,
    AllowEvents,
    Other,
}

impl Name {
    fn as_str(self) -> &'static str {
        match self {
            Name::Via => "Via",
            Name::From => "From",
            Name::To => "To",
            Name::CallId => "Call-ID",
            Name::CSeq => "CSeq",
            Name::MaxForwards => "Max-Forwards",
            Name::Contact => "Contact",
            Name::Require => "Require",
            Name::Supported => "Supported",
            Name::ContentLength => "Content-Length",
            Name::ContentType => "Content-Type",
            Name::ContentEncoding => "Content-Encoding",
            Name::Authorization => "Authorization",
            Name::SessionExpires => "Session-Expires",
            Name::MinSe => "Min-SE",
            Name::Route => "Route",
            Name::RecordRoute => "Record-Route",
            Name::UserAgent => "User-Agent",
            Name::PCalledPartyId => "P-Called-Party-ID",
            Name::Accept => "Accept",
            Name::Subject => "Subject",
            Name::Event => "Event",
            Name::ReferTo => "Refer-To",
            Name::ReferredBy => "Referred-By",
            Name::AllowEvents => "Allow-Events",
            Name::Other => "",
        }
    }

    /// Classifies a header name, case-insensitively, compact forms included.
    fn classify(name: &[u8]) -> Name {
        if let [c] = name {
            return match c.to_ascii_lowercase() {
                b'v' => Name::Via,
                b'f' => Name::From,
                b't' => Name::To,
                b'i' => Name::CallId,
                b'm' => Name::Contact,
                b'k' => Name::Supported,
                b'l' => Name::ContentLength,
                b'c' => Name::ContentType,
                b'e' => Name::ContentEncoding,
                b'x' => Name::SessionExpires,
                b's' => Name::Subject,
                b'o' => Name::Event,
                b'r' => Name::ReferTo,
                b'b' => Name::ReferredBy,
                b'u' => Name::AllowEvents,
                _ => Name::Other,
            };
        }
        // Length and first letter leave at most one candidate, compared once.
        let first = name.first().map_or(0, u8::to_ascii_lowercase);
        let second = name.get(1).map_or(0, u8::to_ascii_lowercase);
        let candidate = match (name.len(), first) {
            (2, _) => Name::To,
            (3, _) => Name::Via,
            (4, b'f') => Name::From,
            (4, b'c') => Name::CSeq,
            (5, b'r') => Name::Route,
            (5, b'e') => Name::Event,
            (6, b'a') => Name::Accept,
            (6, b'm') => Name::MinSe,
            (7, b'c') if second == b'a' => Name::CallId,
            (7, b'c') => Name::Contact,
            (7, b'r') => Name::Require,
            (7, b's') => Name::Subject,
            (8, _) => Name::ReferTo,
            (9, _) => Name::Supported,
            (10, _) => Name::UserAgent,
            (11, _) => Name::ReferredBy,
            (12, b'm') => Name::MaxForwards,
            (12, b'c') => Name::ContentType,
            (12, b'r') => Name::RecordRoute,
            (12, b'a') => Name::AllowEvents,
            (13, _) => Name::Authorization,
            (14, _) => Name::ContentLength,
            (15, _) => Name::SessionExpires,
            (16, _) => Name::ContentEncoding,
            (17, _) => Name::PCalledPartyId,
            _ => return Name::Other,
        };
        // The names above hold only letters and '-'. Setting bit 0x20 lowercases a letter
        // and keeps '-'; the only other octet it maps onto one of them is CR (onto '-'), so
        // with CR refused this is `eq_ignore_ascii_case` without a branch per octet.
        let known = candidate.as_str().as_bytes();
        let differ = known.iter().zip(name).fold(0u8, |acc, (&k, &n)| {
            acc | ((k | 0x20) ^ (n | 0x20)) | u8::from(n == b'\r')
        });
        if differ == 0 && known.len() == name.len() {
            return candidate;
        }
        Name::Other
    }
}

// ---------------------------------------------------------------------------------------
// The header index

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn new(start: usize, end: usize) -> Span {
        // Header offsets lie within leading line breaks plus MAX_HEAD; only an input over
        // 4 GiB could clamp, and a clamped span slices to nothing rather than panicking.
        Span {
            start: clamp_u32(start),
            end: clamp_u32(end),
        }
    }
    fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

fn clamp_u32(v: usize) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    name: Name,
    name_span: Span,
    value: Span,
}

/// The indexed header section of a message: its start line and one slice per header line.
///
/// A `Headers` exists even when the start line or a header value is malformed, which is
/// what lets a UAS answer 400 to a request it cannot fully parse (see
/// [`Headers::can_answer`]).
#[derive(Debug, Clone)]
pub struct Headers {
    buf: Bytes,
    /// The start line and header section (`buf` up to the body) when they are UTF-8,
    /// checked once so that each value is a slice rather than another check.
    text: Option<ByteString>,
    start: Span,
    entries: Vec<Entry>,
    /// Offset of the first body octet.
    body_start: usize,
    bad_line: bool,
    /// Index of the first entry of each recognised name (`u16::MAX` when absent).
    first: [u16; NAMES],
    /// Bit per recognised name that occurs on more than one line.
    repeated: u32,
}

/// Number of [`Name`] variants.
const NAMES: usize = Name::Other as usize + 1;

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn trim_span(buf: &[u8], mut start: usize, mut end: usize) -> (usize, usize) {
    while start < end && buf.get(start).is_some_and(|&b| is_ws(b)) {
        start += 1;
    }
    while end > start && buf.get(end - 1).is_some_and(|&b| is_ws(b)) {
        end -= 1;
    }
    (start, end)
}

/// Finds `needle` at or after `from`, eight octets at a time (the header scan is the
/// parser's hot loop).
pub(crate) fn find_byte(hay: &[u8], from: usize, needle: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let s = hay.get(from..)?;
    let pattern = LO.wrapping_mul(u64::from(needle));
    let mut chunks = s.chunks_exact(8);
    let mut off = from;
    for c in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(c);
        let x = u64::from_le_bytes(word) ^ pattern;
        // A zero octet in x is a match; the lowest flagged octet is always a true match.
        let found = x.wrapping_sub(LO) & !x & HI;
        if found != 0 {
            return Some(off + (found.trailing_zeros() / 8) as usize);
        }
        off += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == needle)
        .map(|p| p + off)
}

/// Octet classes: token characters (§25.1), blanks and controls, host characters, and
/// octets that cannot appear in a URI.
const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        if b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            )
        {
            t[i] |= TOKEN;
        }
        if b <= b' ' || b == 0x7f {
            t[i] |= WS_CTL | NOT_URI;
        }
        if matches!(b, b'<' | b'>' | b'"') {
            t[i] |= NOT_URI;
        }
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_') {
            t[i] |= HOST;
        }
        if b.is_ascii_alphabetic() || matches!(b, b'-' | b'_') {
            t[i] |= HOST_NAME;
        }
        i += 1;
    }
    t
};
const TOKEN: u8 = 1;
const WS_CTL: u8 = 2;
const HOST: u8 = 4;
/// Host octets that make a host a name rather than an IPv4 address.
const HOST_NAME: u8 = 8;
/// Octets that cannot appear in a URI.
const NOT_URI: u8 = 16;

fn has_ws_or_ctl(s: &str) -> bool {
    s.bytes().any(|b| CLASS[usize::from(b)] & WS_CTL != 0)
}

fn is_token_byte(b: u8) -> bool {
    CLASS[usize::from(b)] & TOKEN != 0
}

/// Position of an ASCII octet in a string (cheaper than a char pattern search).
fn find_b(s: &str, b: u8) -> Option<usize> {
    find_byte(s.as_bytes(), 0, b)
}

/// `split_once` on an ASCII octet.
fn split_byte(s: &str, b: u8) -> Option<(&str, &str)> {
    let i = find_b(s, b)?;
    Some((s.get(..i)?, s.get(i + 1..)?))
}

/// Position of the first `a` or `b`.
fn first_of(s: &[u8], a: u8, b: u8) -> Option<usize> {
    let first_a = find_byte(s, 0, a);
    let before = s.get(..first_a.unwrap_or(s.len())).unwrap_or_default();
    find_byte(before, 0, b).or(first_a)
}

fn first_ws(s: &str) -> Option<usize> {
    s.bytes().position(is_ws)
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_byte)
}

impl Headers {
    /// Indexes the header section of `buf`. Fails only when there is no start line or a
    /// size cap is exceeded; a malformed header line is remembered, not fatal.
    pub fn index(buf: Bytes) -> Result<Headers, ParseError> {
        let data: &[u8] = &buf;
        let mut pos = data
            .iter()
            .position(|&b| b != b'\r' && b != b'\n')
            .ok_or(ParseError::Empty)?;
        let head_origin = pos;
        let mut start = Span::default();
        let mut entries: Vec<Entry> = Vec::with_capacity(24);
        let mut bad_line = false;
        let mut folded = false;
        let mut first = true;
        let mut first_line = [u16::MAX; NAMES];
        let mut repeated = 0u32;
        let body_start;
        loop {
            let (line_end, next) = match find_byte(data, pos, b'\n') {
                Some(nl) => {
                    let end = if nl > pos && data.get(nl - 1) == Some(&b'\r') {
                        nl - 1
                    } else {
                        nl
                    };
                    (end, nl + 1)
                }
                None => (data.len(), data.len()),
            };
            if line_end - pos > MAX_LINE {
                return Err(ParseError::LineTooLong);
            }
            if next - head_origin > MAX_HEAD {
                return Err(ParseError::HeadTooLarge);
            }
            if first {
                start = Span::new(pos, line_end);
                first = false;
            } else if line_end == pos {
                body_start = next;
                break;
            } else if matches!(data.get(pos), Some(b' ' | b'\t')) {
                // Folded continuation (§7.3.1): extend the previous value.
                match entries.last_mut() {
                    Some(e) => {
                        e.value.end = clamp_u32(line_end);
                        folded = true;
                    }
                    None => bad_line = true,
                }
            } else {
                if entries.len() >= MAX_HEADER_LINES {
                    return Err(ParseError::HeadTooLarge);
                }
                // The name ends at the first colon (no token octet is one), blanks before
                // it allowed. A recognised name is a token already; others are checked.
                let line = data.get(pos..line_end).unwrap_or_default();
                let entry = find_byte(line, 0, b':').and_then(|colon| {
                    let mut name = line.get(..colon).unwrap_or_default();
                    while let [rest @ .., b' ' | b'\t'] = name {
                        name = rest;
                    }
                    let kind = Name::classify(name);
                    let valid = kind != Name::Other
                        || (!name.is_empty() && name.iter().all(|&b| is_token_byte(b)));
                    valid.then(|| {
                        let (s, t) = trim_span(data, pos + colon + 1, line_end);
                        Entry {
                            name: kind,
                            name_span: Span::new(pos, pos + name.len()),
                            value: Span::new(s, t),
                        }
                    })
                });
                match entry {
                    Some(e) => {
                        if let Some(f) = first_line.get_mut(e.name as usize) {
                            if *f == u16::MAX {
                                *f = u16::try_from(entries.len()).unwrap_or(u16::MAX);
                            } else {
                                repeated |= 1 << (e.name as usize);
                            }
                        }
                        entries.push(e);
                    }
                    None => bad_line = true,
                }
            }
            if next >= data.len() {
                body_start = data.len();
                break;
            }
            pos = next;
        }
        let buf = if folded {
            // Unfolded, a continuation's blanks and line breaks are spaces: trim again.
            let buf = unfold(&buf, &entries);
            for e in &mut entries {
                let (s, t) = trim_span(&buf, e.value.start as usize, e.value.end as usize);
                e.value = Span::new(s, t);
            }
            buf
        } else {
            buf
        };
        let text = ByteString::try_from(buf.slice(..body_start.min(buf.len()))).ok();
        Ok(Headers {
            buf,
            text,
            start,
            entries,
            body_start,
            bad_line,
            first: first_line,
            repeated,
        })
    }

    fn slice(&self, s: Span) -> &[u8] {
        self.buf.get(s.range()).unwrap_or_default()
    }

    /// The text of a span of the start line or header section; `None` when not UTF-8.
    fn str_at(&self, s: Span) -> Option<&str> {
        match &self.text {
            Some(text) => text.get(s.range()),
            None => std::str::from_utf8(self.slice(s)).ok(),
        }
    }

    /// `text`, a slice of this header section, as shared octets of the message (no copy);
    /// any other text is copied.
    fn share(&self, text: &str) -> ByteString {
        let start = (text.as_ptr() as usize).wrapping_sub(self.buf.as_ptr() as usize);
        start
            .checked_add(text.len())
            .filter(|&end| end <= self.buf.len())
            .and_then(|end| ByteString::try_from(self.buf.slice(start..end)).ok())
            .unwrap_or_else(|| ByteString::from(text))
    }

    fn value_str(&self, e: &Entry) -> Result<&str, ParseError> {
        self.str_at(e.value)
            .ok_or(ParseError::BadHeader(e.name_str()))
    }

    /// Entries of one recognised header, starting at its first line and stopping after it
    /// when it occurs once.
    fn named(&self, n: Name) -> impl Iterator<Item = &Entry> + '_ {
        let i = n as usize;
        let start = self.first.get(i).map_or(usize::MAX, |&f| usize::from(f));
        let count = if self.repeated & (1 << i) != 0 {
            usize::MAX
        } else {
            1
        };
        self.entries
            .get(start..)
            .unwrap_or_default()
            .iter()
            .filter(move |e| e.name == n)
            .take(count)
    }

    /// The start line, as received.
    pub fn start_line(&self) -> &[u8] {
        self.slice(self.start)
    }

    /// Whether a header line was malformed (no colon, bad name, orphan continuation).
    pub fn has_bad_line(&self) -> bool {
        self.bad_line
    }

    /// Whether a response can be addressed: there is a Via whose top value names a
    /// sent-by (§18.2.2). Without one the request is dropped; missing From/To/Call-ID/CSeq
    /// are still answered (400 naming the header) with what is present.
    pub fn can_answer(&self) -> bool {
        self.named(Name::Via)
            .next()
            .and_then(|e| self.value_str(e).ok())
            .and_then(|v| split_list(v).next())
            .is_some_and(|first| parse_via_sent_by(first).is_ok())
    }

    /// The first value of a header, by name (case-insensitive, compact forms understood).
    /// `None` when absent or not UTF-8. Folding has been replaced by spaces.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_all(name).next()
    }

    /// Every line of a header, by name, in order (comma lists are not split).
    pub fn get_all<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        let n = Name::classify(name.as_bytes());
        self.entries
            .iter()
            .filter(move |e| {
                if n == Name::Other {
                    e.name == Name::Other
                        && self
                            .slice(e.name_span)
                            .eq_ignore_ascii_case(name.as_bytes())
                } else {
                    e.name == n
                }
            })
            .filter_map(|e| self.str_at(e.value))
    }

    /// The value of a single-valued header: missing, repeated with a different value, or
    /// not UTF-8 is an error.
    fn single(&self, n: Name) -> Result<Option<&str>, ParseError> {
        let mut it = self.named(n);
        let Some(first) = it.next() else {
            return Ok(None);
        };
        let v = self.value_str(first)?;
        for other in it {
            if self.slice(other.value) != v.as_bytes() {
                return Err(ParseError::DuplicateHeader(n.as_str()));
            }
        }
        Ok(Some(v))
    }

    fn required(&self, n: Name) -> Result<&str, ParseError> {
        self.single(n)?.ok_or(ParseError::MissingHeader(n.as_str()))
    }

    /// Every Via value in order, splitting comma lists (§7.3.1, §20.42).
    pub fn vias(&self) -> impl Iterator<Item = Result<Via<'_>, ParseError>> + '_ {
        self.named(Name::Via).flat_map(move |e| {
            let (v, bad) = match self.value_str(e) {
                Ok(v) => (v, false),
                Err(_) => ("", true),
            };
            let bad = bad.then_some(Err(ParseError::BadHeader("Via")));
            bad.into_iter().chain(split_list(v).map(Via::parse))
        })
    }

    /// The topmost Via.
    pub fn top_via(&self) -> Result<Via<'_>, ParseError> {
        self.vias()
            .next()
            .unwrap_or(Err(ParseError::MissingHeader("Via")))
    }

    /// From (§20.20).
    pub fn from(&self) -> Result<NameAddr<'_>, ParseError> {
        NameAddr::parse(self.required(Name::From)?).map_err(|_| ParseError::BadHeader("From"))
    }

    /// To (§20.39).
    pub fn to(&self) -> Result<NameAddr<'_>, ParseError> {
        NameAddr::parse(self.required(Name::To)?).map_err(|_| ParseError::BadHeader("To"))
    }

    /// Call-ID (§20.8): one word, optionally `@word`, no whitespace.
    pub fn call_id(&self) -> Result<&str, ParseError> {
        let v = self.required(Name::CallId)?;
        if v.is_empty() || has_ws_or_ctl(v) {
            return Err(ParseError::BadHeader("Call-ID"));
        }
        Ok(v)
    }

    /// CSeq (§20.16).
    pub fn cseq(&self) -> Result<CSeq, ParseError> {
        CSeq::parse(self, self.required(Name::CSeq)?)
    }

    /// Max-Forwards (§20.22), `None` when absent; values above 255 are errors.
    pub fn max_forwards(&self) -> Result<Option<u8>, ParseError> {
        self.single(Name::MaxForwards)?
            .map(|v| {
                parse_u32(v)
                    .and_then(|n| u8::try_from(n).ok())
                    .ok_or(ParseError::BadHeader("Max-Forwards"))
            })
            .transpose()
    }

    /// Every Contact value (§20.10); `*` yields a value whose URI scheme is empty.
    pub fn contacts(&self) -> impl Iterator<Item = Result<NameAddr<'_>, ParseError>> + '_ {
        self.list(Name::Contact, NameAddr::parse)
    }

    /// Every Route value (§20.34), in order.
    pub fn routes(&self) -> impl Iterator<Item = Result<NameAddr<'_>, ParseError>> + '_ {
        self.list(Name::Route, NameAddr::parse)
    }

    /// Every Record-Route value (§20.30), in order.
    pub fn record_routes(&self) -> impl Iterator<Item = Result<NameAddr<'_>, ParseError>> + '_ {
        self.list(Name::RecordRoute, NameAddr::parse)
    }

    /// Option tags of every Require line (§20.32).
    pub fn require(&self) -> impl Iterator<Item = Result<&str, ParseError>> + '_ {
        self.list(Name::Require, parse_token)
    }

    /// Option tags of every Supported line (§20.37).
    pub fn supported(&self) -> impl Iterator<Item = Result<&str, ParseError>> + '_ {
        self.list(Name::Supported, parse_token)
    }

    /// Media ranges of every Accept line (§20.1); `None` when there is no Accept header.
    pub fn accept(&self) -> Option<impl Iterator<Item = Result<MediaType<'_>, ParseError>> + '_> {
        self.named(Name::Accept)
            .next()
            .map(|_| self.list(Name::Accept, MediaType::parse))
    }

    fn list<'a, T: 'a>(
        &'a self,
        n: Name,
        f: fn(&'a str) -> Result<T, ()>,
    ) -> impl Iterator<Item = Result<T, ParseError>> + 'a {
        self.named(n).flat_map(move |e| {
            let (v, bad) = match self.value_str(e) {
                Ok(v) => (v, None),
                Err(err) => ("", Some(Err(err))),
            };
            bad.into_iter().chain(
                split_list(v)
                    .map(move |item| f(item).map_err(|()| ParseError::BadHeader(n.as_str()))),
            )
        })
    }

    /// Content-Length (§20.14), `None` when absent. Conflicting values are an error.
    pub fn content_length(&self) -> Result<Option<u64>, ParseError> {
        self.single(Name::ContentLength)?
            .map(|v| parse_u64(v).ok_or(ParseError::BadHeader("Content-Length")))
            .transpose()
    }

    /// Content-Type (§20.15), `None` when absent.
    pub fn content_type(&self) -> Result<Option<MediaType<'_>>, ParseError> {
        self.single(Name::ContentType)?
            .map(|v| MediaType::parse(v).map_err(|()| ParseError::BadHeader("Content-Type")))
            .transpose()
    }

    /// User-Agent (§20.41), raw.
    pub fn user_agent(&self) -> Option<&str> {
        self.named(Name::UserAgent)
            .next()
            .and_then(|e| self.value_str(e).ok())
    }

    /// P-Called-Party-ID (RFC 3455 §4.2), `None` when absent.
    pub fn p_called_party_id(&self) -> Result<Option<NameAddr<'_>>, ParseError> {
        self.single(Name::PCalledPartyId)?
            .map(|v| NameAddr::parse(v).map_err(|()| ParseError::BadHeader("P-Called-Party-ID")))
            .transpose()
    }
}

/// Returns a copy of `buf` in which the CR and LF of every folded line are spaces, so values
/// keep their offsets and never contain line breaks.
fn unfold(buf: &Bytes, entries: &[Entry]) -> Bytes {
    let mut out = BytesMut::from(&buf[..]);
    for e in entries {
        if let Some(v) = out.get_mut(e.value.range()) {
            for b in v.iter_mut().filter(|b| matches!(b, b'\r' | b'\n')) {
                *b = b' ';
            }
        }
    }
    out.freeze()
}

impl Entry {
    fn name_str(&self) -> &'static str {
        match self.name {
            Name::Other => "header",
            n => n.as_str(),
        }
    }
}

/// Splits a header value at commas that are outside quoted strings and angle brackets,
/// trimming each element. Empty elements are yielded (as "") so that callers reject them.
fn split_list(v: &str) -> impl Iterator<Item = &str> {
    // Most values hold no comma at all: one word-at-a-time search settles it.
    let mut rest = Some(v);
    let plain = find_byte(v.as_bytes(), 0, b',').is_none();
    std::iter::from_fn(move || {
        let s = rest?;
        if plain {
            rest = None;
            return Some(s.trim_ascii());
        }
        let bytes = s.as_bytes();
        let mut quoted = false;
        let mut angle = false;
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            match b {
                b'\\' if quoted => i += 1,
                b'"' => quoted = !quoted,
                b'<' if !quoted => angle = true,
                b'>' if !quoted => angle = false,
                b',' if !quoted && !angle => {
                    rest = s.get(i + 1..);
                    return Some(s.get(..i).unwrap_or_default().trim_ascii());
                }
                _ => {}
            }
            i += 1;
        }
        rest = None;
        Some(s.trim_ascii())
    })
    .filter({
        // An entirely empty header value is an empty list, not one empty element.
        let empty = v.trim_ascii().is_empty();
        move |_| !empty
    })
}

fn parse_digits<T: TryFrom<u64>>(s: &str, max_digits: usize) -> Option<T> {
    let zeros = s.bytes().take_while(|&b| b == b'0').count();
    let s = s.get(zeros..).unwrap_or_default();
    if s.len() > max_digits {
        return None;
    }
    let mut n: u64 = 0;
    for b in s.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    T::try_from(n).ok()
}

fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    parse_digits(s, 19)
}

fn parse_u32(s: &str) -> Option<u32> {
    if s.is_empty() {
        return None;
    }
    parse_digits(s, 10)
}

fn parse_token(s: &str) -> Result<&str, ()> {
    if is_token(s) { Ok(s) } else { Err(()) }
}

// ---------------------------------------------------------------------------------------
// Methods

pub use crate::kinds::Method;

// ---------------------------------------------------------------------------------------
// Hosts, parameters, URIs

/// A host: IPv4, bracketed IPv6 (RFC 5118), or a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host<'a> {
    Ipv4(Ipv4Addr),
    Ipv6(Ipv6Addr),
    Name(&'a str),
}

impl Host<'_> {
    /// The address, when the host is an IP literal.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Host::Ipv4(a) => Some(IpAddr::V4(*a)),
            Host::Ipv6(a) => Some(IpAddr::V6(*a)),
            Host::Name(_) => None,
        }
    }
}

impl std::fmt::Display for Host<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Ipv4(a) => write!(f, "{a}"),
            Host::Ipv6(a) => write!(f, "[{a}]"),
            Host::Name(n) => f.write_str(n),
        }
    }
}

/// Parses `host [":" port]` (whitespace around the colon tolerated, §7.3.1).
fn parse_hostport(s: &str) -> Result<(Host<'_>, Option<u16>), ()> {
    let s = s.trim_ascii();
    match ipv4_port(s.as_bytes()) {
        Some(parsed) => Ok(parsed),
        None => parse_hostport_general(s),
    }
}

fn parse_hostport_general(s: &str) -> Result<(Host<'_>, Option<u16>), ()> {
    let s = s.trim_ascii();
    let (host, rest) = if let Some(inner) = s.strip_prefix('[') {
        let close = find_b(inner, b']').ok_or(())?;
        let addr: Ipv6Addr = inner.get(..close).ok_or(())?.parse().map_err(|_| ())?;
        (Host::Ipv6(addr), inner.get(close + 1..).unwrap_or_default())
    } else {
        parse_host_name(s)?
    };
    let rest = rest.trim_ascii();
    if rest.is_empty() {
        return Ok((host, None));
    }
    let port = rest.strip_prefix(':').ok_or(())?.trim_ascii();
    let port = parse_u32(port)
        .and_then(|p| u16::try_from(p).ok())
        .ok_or(())?;
    Ok((host, Some(port)))
}

/// The common `a.b.c.d[:port]` with nothing around it, in one pass. `None` leaves
/// everything else (names, IPv6, blanks, long or out-of-range parts) to the general path,
/// which also decides what is an error.
fn ipv4_port(s: &[u8]) -> Option<(Host<'static>, Option<u16>)> {
    let mut quad = [0u8; 4];
    let mut part = 0usize;
    let mut digits = 0u8;
    let mut value = 0u16;
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        match b {
            b'0'..=b'9' if digits < 3 => {
                value = value * 10 + u16::from(b - b'0');
                digits += 1;
            }
            b'.' if digits > 0 => {
                *quad.get_mut(part)? = u8::try_from(value).ok()?;
                part += 1;
                digits = 0;
                value = 0;
            }
            b':' => break,
            _ => return None,
        }
        i += 1;
    }
    if part != 3 || digits == 0 {
        return None;
    }
    quad[3] = u8::try_from(value).ok()?;
    let port = match s.get(i + 1..) {
        None => None,
        Some(p) if (1..=5).contains(&p.len()) => {
            let mut n = 0u32;
            for &b in p {
                if !b.is_ascii_digit() {
                    return None;
                }
                n = n * 10 + u32::from(b - b'0');
            }
            Some(u16::try_from(n).ok()?)
        }
        Some(_) => return None,
    };
    Some((Host::Ipv4(Ipv4Addr::from(quad)), port))
}

/// A host name or dotted-quad IPv4 address (leading zeros accepted) at the start of `s`,
/// ending at a colon, a blank or the end; returns the host and what follows.
fn parse_host_name(s: &str) -> Result<(Host<'_>, &str), ()> {
    let mut end = s.len();
    let mut named = 0u8;
    for (i, b) in s.bytes().enumerate() {
        let class = CLASS[usize::from(b)];
        if class & HOST == 0 {
            if matches!(b, b':' | b' ' | b'\t') {
                end = i;
                break;
            }
            return Err(());
        }
        named |= class & HOST_NAME;
    }
    let (name, rest) = s.split_at_checked(end).ok_or(())?;
    if name.is_empty() {
        return Err(());
    }
    match dotted_quad(name).filter(|_| named == 0) {
        Some(quad) => Ok((Host::Ipv4(Ipv4Addr::from(quad)), rest)),
        None => Ok((Host::Name(name), rest)),
    }
}

/// Four parts of 1-3 digits worth at most 255, from text made only of digits and dots.
fn dotted_quad(name: &str) -> Option<[u8; 4]> {
    let mut quad = [0u8; 4];
    let mut part = 0usize;
    let mut digits = 0u8;
    let mut value = 0u16;
    for b in name.bytes() {
        if b == b'.' {
            if !(1..=3).contains(&digits) {
                return None;
            }
            *quad.get_mut(part)? = u8::try_from(value).ok()?;
            part += 1;
            digits = 0;
            value = 0;
        } else {
            digits = digits.saturating_add(1);
            value = value
                .saturating_mul(10)
                .saturating_add(u16::from(b.wrapping_sub(b'0')));
        }
    }
    if part != 3 || !(1..=3).contains(&digits) {
        return None;
    }
    quad[3] = u8::try_from(value).ok()?;
    Some(quad)
}

/// `;`-separated parameters (§19.1.1 uri-parameters, §7.3.1 generic-param), as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Params<'a>(&'a str);

/// One parameter: name, and value when it has one (quotes kept).
pub type Param<'a> = (&'a str, Option<&'a str>);

impl<'a> Params<'a> {
    /// Validates a parameter list (the text after the first `;`, or empty).
    fn parse(s: &'a str) -> Result<Params<'a>, ()> {
        let p = Params(s);
        if s.trim_ascii().is_empty() {
            return Ok(Params(""));
        }
        if find_byte(s.as_bytes(), 0, b'"').is_none() {
            return if plain_params_valid(s.as_bytes()) {
                Ok(p)
            } else {
                Err(())
            };
        }
        for item in p.raw_items() {
            let (name, value) = split_param(item);
            if !is_token(name) {
                return Err(());
            }
            if let Some(v) = value {
                if v.starts_with('"') {
                    if quoted_end(v) != Some(v.len()) {
                        return Err(());
                    }
                } else if v.is_empty() || has_ws_or_ctl(v) {
                    return Err(());
                }
            }
        }
        Ok(p)
    }

    fn raw_items(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        let s = self.0;
        let mut rest = (!s.trim_ascii().is_empty()).then_some(s);
        let plain = find_byte(s.as_bytes(), 0, b'"').is_none();
        std::iter::from_fn(move || {
            let s = rest?;
            if plain {
                let (item, tail) = split_byte(s, b';').map_or((s, None), |(i, t)| (i, Some(t)));
                rest = tail;
                return Some(item.trim_ascii());
            }
            let bytes = s.as_bytes();
            let mut quoted = false;
            let mut i = 0;
            while let Some(&b) = bytes.get(i) {
                match b {
                    b'\\' if quoted => i += 1,
                    b'"' => quoted = !quoted,
                    b';' if !quoted => {
                        rest = s.get(i + 1..);
                        return Some(s.get(..i).unwrap_or_default().trim_ascii());
                    }
                    _ => {}
                }
                i += 1;
            }
            rest = None;
            Some(s.trim_ascii())
        })
    }

    /// Every parameter in order.
    pub fn iter(&self) -> impl Iterator<Item = Param<'a>> + use<'a> {
        self.raw_items().map(split_param)
    }

    /// A parameter by name (case-insensitive): `Some(None)` when present without a value.
    pub fn get(&self, name: &str) -> Option<Option<&'a str>> {
        if is_token(name) && find_byte(self.0.as_bytes(), 0, b'"').is_none() {
            return self.get_plain(name);
        }
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The parameters as received.
    pub fn as_str(&self) -> &'a str {
        self.0
    }

    /// [`Params::get`] for a list without quotes and a token name: each item is looked at
    /// once, from its start, and only a matching one is split.
    fn get_plain(&self, name: &str) -> Option<Option<&'a str>> {
        let mut rest = self.0;
        if rest.trim_ascii().is_empty() {
            return None;
        }
        loop {
            let (item, tail) = match split_byte(rest, b';') {
                Some((i, t)) => (i, Some(t)),
                None => (rest, None),
            };
            let item = item.trim_ascii_start();
            if let Some((head, after)) = item.split_at_checked(name.len())
                && head.eq_ignore_ascii_case(name)
            {
                let after = after.trim_ascii();
                if after.is_empty() {
                    return Some(None);
                }
                if let Some(v) = after.strip_prefix('=') {
                    return Some(Some(v.trim_ascii()));
                }
            }
            rest = tail?;
        }
    }
}

/// Validates a non-empty parameter list holding no quote, in one pass: every item is a
/// token name, optionally `=` and a value free of blanks and controls, blanks around each.
fn plain_params_valid(s: &[u8]) -> bool {
    let skip_ws = |mut i: usize| {
        while s.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        i
    };
    let mut i = 0;
    loop {
        i = skip_ws(i);
        let name_start = i;
        while s.get(i).is_some_and(|&b| is_token_byte(b)) {
            i += 1;
        }
        if i == name_start {
            return false;
        }
        i = skip_ws(i);
        if s.get(i) == Some(&b'=') {
            i = skip_ws(i + 1);
            let value_start = i;
            while s
                .get(i)
                .is_some_and(|&b| b != b';' && CLASS[usize::from(b)] & WS_CTL == 0)
            {
                i += 1;
            }
            if i == value_start {
                return false;
            }
            i = skip_ws(i);
        }
        match s.get(i) {
            None => return true,
            Some(b';') => i += 1,
            Some(_) => return false,
        }
    }
}

fn split_param(item: &str) -> Param<'_> {
    match split_byte(item, b'=') {
        Some((n, v)) => (n.trim_ascii(), Some(v.trim_ascii())),
        None => (item.trim_ascii(), None),
    }
}

/// Given text starting with `"`, the offset just past the closing quote.
fn quoted_end(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 1;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\\' => {
                // quoted-pair: any octet but CR and LF (§25.1).
                match bytes.get(i + 1) {
                    Some(b'\r' | b'\n') | None => return None,
                    Some(_) => i += 2,
                }
            }
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// URI scheme kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Sip,
    Sips,
    Tel,
    /// Any other absoluteURI scheme (§19.1, §25.1).
    Other,
}

/// A parsed URI (§19.1 SIP/SIPS, RFC 3966 tel, or any other absolute URI) borrowing from
/// the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uri<'a> {
    raw: &'a str,
    l: UriLayout,
}

/// Where the parts of a URI lie in its text (octet offsets), so that a request can keep its
/// parsed Request-URI without borrowing from itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct UriLayout {
    scheme: Scheme,
    user: Option<Part>,
    password: Option<Part>,
    host: Option<HostAt>,
    port: Option<u16>,
    /// tel: the global or local number.
    number: Option<Part>,
    params: Part,
    headers: Option<Part>,
}

const OPAQUE: UriLayout = UriLayout {
    scheme: Scheme::Other,
    user: None,
    password: None,
    host: None,
    port: None,
    number: None,
    params: Part(0, 0),
    headers: None,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Part(u16, u16);

impl Part {
    /// The offsets of `piece`, a slice of `raw` (at most `u16::MAX` octets long).
    fn of(raw: &str, piece: &str) -> Part {
        let start = piece.as_ptr().addr().wrapping_sub(raw.as_ptr().addr());
        let clamp = |v: usize| u16::try_from(v).unwrap_or(u16::MAX);
        Part(clamp(start), clamp(start + piece.len()))
    }
    fn get(self, raw: &str) -> &str {
        raw.get(usize::from(self.0)..usize::from(self.1))
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HostAt {
    V4(Ipv4Addr),
    V6(Ipv6Addr),
    Name(Part),
}

impl<'a> Uri<'a> {
    /// Parses a URI as it appears in a Request-URI or inside `<>`.
    pub fn parse(raw: &'a str) -> Result<Uri<'a>, ParseError> {
        Self::parse_inner(raw).map_err(|()| ParseError::BadRequestUri)
    }

    fn parse_inner(raw: &'a str) -> Result<Uri<'a>, ()> {
        if raw.len() > usize::from(u16::MAX) {
            return Err(());
        }
        // Reject octets no URI may hold (a branch-free pass), then find the first '@' (hosts,
        // parameters and headers cannot contain one, so it ends the userinfo).
        let classes = raw.bytes().fold(0u8, |acc, b| acc | CLASS[usize::from(b)]);
        if classes & NOT_URI != 0 {
            return Err(());
        }
        let at = find_byte(raw.as_bytes(), 0, b'@');
        let (scheme_s, rest) = split_byte(raw, b':').ok_or(())?;
        let mut sb = scheme_s.bytes();
        if !sb.next().is_some_and(|b| b.is_ascii_alphabetic())
            || !sb.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        {
            return Err(());
        }
        let scheme = if scheme_s.eq_ignore_ascii_case("sip") {
            Scheme::Sip
        } else if scheme_s.eq_ignore_ascii_case("sips") {
            Scheme::Sips
        } else if scheme_s.eq_ignore_ascii_case("tel") {
            Scheme::Tel
        } else {
            Scheme::Other
        };
        let mut uri = UriLayout { scheme, ..OPAQUE };
        match scheme {
            Scheme::Other => {
                if rest.is_empty() {
                    return Err(());
                }
            }
            Scheme::Tel => {
                let (number, params) = split_byte(rest, b';').unwrap_or((rest, ""));
                if number.is_empty() {
                    return Err(());
                }
                uri.number = Some(Part::of(raw, number));
                uri.params = Part::of(raw, Params::parse(params)?.0);
            }
            Scheme::Sip | Scheme::Sips => {
                let at = at.and_then(|a| a.checked_sub(scheme_s.len() + 1));
                let (userinfo, hostpart) = match at {
                    Some(at) => (rest.get(..at), rest.get(at + 1..).ok_or(())?),
                    None => (None, rest),
                };
                if let Some(ui) = userinfo {
                    let (user, pass) = match split_byte(ui, b':') {
                        Some((u, p)) => (u, Some(p)),
                        None => (ui, None),
                    };
                    if user.is_empty() {
                        return Err(());
                    }
                    uri.user = Some(Part::of(raw, user));
                    uri.password = pass.map(|p| Part::of(raw, p));
                }
                let (hostport, params, headers) = match first_of(hostpart.as_bytes(), b';', b'?') {
                    None => (hostpart, "", None),
                    Some(i) => {
                        let (hostport, tail) = hostpart.split_at(i);
                        match (tail.strip_prefix(';'), tail.strip_prefix('?')) {
                            (Some(p), _) => match split_byte(p, b'?') {
                                Some((p, h)) => (hostport, p, Some(h)),
                                None => (hostport, p, None),
                            },
                            (None, h) => (hostport, "", h),
                        }
                    }
                };
                let (host, port) = parse_hostport(hostport)?;
                uri.host = Some(match host {
                    Host::Ipv4(a) => HostAt::V4(a),
                    Host::Ipv6(a) => HostAt::V6(a),
                    Host::Name(n) => HostAt::Name(Part::of(raw, n)),
                });
                uri.port = port;
                uri.params = Part::of(raw, Params::parse(params)?.0);
                uri.headers = headers.map(|h| Part::of(raw, h));
            }
        }
        Ok(Uri { raw, l: uri })
    }

    /// The URI as received.
    pub fn as_str(&self) -> &'a str {
        self.raw
    }
    /// The scheme kind.
    pub fn scheme(&self) -> Scheme {
        self.l.scheme
    }
    /// The user part (sip/sips), still %-escaped.
    pub fn user(&self) -> Option<&'a str> {
        self.l.user.map(|p| p.get(self.raw))
    }
    /// The password part of the userinfo (sip/sips; deprecated by §19.1.1).
    pub fn password(&self) -> Option<&'a str> {
        self.l.password.map(|p| p.get(self.raw))
    }
    /// The host (sip/sips).
    pub fn host(&self) -> Option<Host<'a>> {
        self.l.host.map(|h| match h {
            HostAt::V4(a) => Host::Ipv4(a),
            HostAt::V6(a) => Host::Ipv6(a),
            HostAt::Name(p) => Host::Name(p.get(self.raw)),
        })
    }
    /// The explicit port (sip/sips).
    pub fn port(&self) -> Option<u16> {
        self.l.port
    }
    /// The number of a tel: URI.
    pub fn number(&self) -> Option<&'a str> {
        self.l.number.map(|p| p.get(self.raw))
    }
    /// URI parameters (sip/sips uri-parameters, tel par).
    pub fn params(&self) -> Params<'a> {
        Params(self.l.params.get(self.raw))
    }
    /// The `?`-headers component (sip/sips), as received.
    pub fn headers(&self) -> Option<&'a str> {
        self.l.headers.map(|p| p.get(self.raw))
    }
    /// Whether `user=phone` is set (§19.1.1): the user part is a telephone number.
    pub fn is_user_phone(&self) -> bool {
        self.params()
            .get("user")
            .flatten()
            .is_some_and(|v| v.eq_ignore_ascii_case("phone"))
    }
}

// ---------------------------------------------------------------------------------------
// Typed header values

/// One Via value (§20.42, §18.2.2, RFC 3581).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via<'a> {
    raw: &'a str,
    /// Protocol version, normally "2.0".
    pub version: &'a str,
    /// Transport token as sent (UDP, TCP, TLS, SCTP, WS, WSS or an extension).
    pub transport: &'a str,
    /// sent-by host.
    pub host: Host<'a>,
    /// sent-by port.
    pub port: Option<u16>,
    /// sent-by as received (`host[:port]`).
    sent_by: &'a str,
    params: Params<'a>,
    /// The first `branch`, `received` and `rport` parameters, found while parsing.
    branch: Option<Option<&'a str>>,
    received: Option<Option<&'a str>>,
    rport: Option<Option<&'a str>>,
}

/// The rport parameter of a Via (RFC 3581 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rport {
    Absent,
    /// `;rport` with no value: the client asks for the source port.
    Requested,
    Value(u16),
}

/// The parts of a Via value: version, transport, sent-by (as text, host and port), params.
type ViaParts<'a> = (&'a str, &'a str, &'a str, Host<'a>, Option<u16>, &'a str);

fn parse_via_sent_by(v: &str) -> Result<ViaParts<'_>, ()> {
    let (head, params) = split_byte(v, b';').unwrap_or((v, ""));
    // sent-protocol: name "/" version "/" transport, LWS allowed around the slashes.
    let (name, rest) = split_byte(head, b'/').ok_or(())?;
    let (version, rest) = split_byte(rest, b'/').ok_or(())?;
    let (name, version, rest) = (
        name.trim_ascii(),
        version.trim_ascii(),
        rest.trim_ascii_start(),
    );
    if !name.eq_ignore_ascii_case("SIP") || !is_token(version) {
        return Err(());
    }
    let split = first_ws(rest).ok_or(())?;
    let (transport, sent_by) = rest.split_at(split);
    if !is_token(transport) {
        return Err(());
    }
    let (host, port) = parse_hostport(sent_by)?;
    Ok((version, transport, sent_by.trim_ascii(), host, port, params))
}

impl<'a> Via<'a> {
    fn parse(v: &'a str) -> Result<Via<'a>, ParseError> {
        let bad = |()| ParseError::BadHeader("Via");
        let (version, transport, sent_by, host, port, params) =
            parse_via_sent_by(v).map_err(bad)?;
        let params = Params::parse(params).map_err(bad)?;
        let (mut branch, mut received, mut rport) = (None, None, None);
        for (name, value) in params.iter() {
            let slot = if name.eq_ignore_ascii_case("branch") {
                &mut branch
            } else if name.eq_ignore_ascii_case("received") {
                &mut received
            } else if name.eq_ignore_ascii_case("rport") {
                &mut rport
            } else {
                continue;
            };
            if slot.is_none() {
                *slot = Some(value);
            }
        }
        let via = Via {
            raw: v,
            version,
            transport,
            host,
            port,
            sent_by,
            params,
            branch,
            received,
            rport,
        };
        if let Some(b) = branch {
            b.filter(|b| is_token(b))
                .ok_or(ParseError::BadHeader("Via"))?;
        }
        if let Some(Some(p)) = rport {
            parse_u32(p)
                .and_then(|p| u16::try_from(p).ok())
                .ok_or(ParseError::BadHeader("Via"))?;
        }
        Ok(via)
    }

    /// The value as received.
    pub fn as_str(&self) -> &'a str {
        self.raw
    }
    /// The sent-by (`host[:port]`) as received.
    pub fn sent_by(&self) -> &'a str {
        self.sent_by
    }
    /// The branch parameter.
    pub fn branch(&self) -> Option<&'a str> {
        self.branch.flatten()
    }
    /// The received parameter, brackets stripped when an IPv6 reference was sent with them
    /// (RFC 5118 §4.5).
    pub fn received(&self) -> Option<&'a str> {
        self.received.flatten().map(|r| {
            r.strip_prefix('[')
                .and_then(|r| r.strip_suffix(']'))
                .unwrap_or(r)
        })
    }
    /// The rport parameter.
    pub fn rport(&self) -> Rport {
        match self.rport {
            None => Rport::Absent,
            Some(None) => Rport::Requested,
            Some(Some(p)) => parse_u32(p)
                .and_then(|p| u16::try_from(p).ok())
                .map_or(Rport::Requested, Rport::Value),
        }
    }
    /// All parameters.
    pub fn params(&self) -> Params<'a> {
        self.params
    }

    /// This Via as a server sends it back (§18.2.1, RFC 3581 §4): `received` set to the
    /// packet's source address and, when `rport` was requested, `rport` set to its port.
    pub fn with_received(&self, source: IpAddr, source_port: u16) -> String {
        let mut out = BytesMut::with_capacity(self.raw.len() + 48);
        write_via_with_received(&mut out, self, source, source_port);
        String::from_utf8_lossy(&out).into_owned()
    }
}

fn write_via_with_received(out: &mut BytesMut, via: &Via<'_>, source: IpAddr, port: u16) {
    let head = split_byte(via.raw, b';').map_or(via.raw, |(h, _)| h);
    out.put_slice(head.trim_ascii_end().as_bytes());
    let mut rport_requested = false;
    for (name, value) in via.params.iter() {
        if name.eq_ignore_ascii_case("received") {
            continue;
        }
        if name.eq_ignore_ascii_case("rport") {
            rport_requested = true;
            continue;
        }
        out.put_u8(b';');
        out.put_slice(name.as_bytes());
        if let Some(v) = value {
            out.put_u8(b'=');
            out.put_slice(v.as_bytes());
        }
    }
    let _ = write!(ByteWriter(out), ";received={source}");
    if rport_requested {
        let _ = write!(ByteWriter(out), ";rport={port}");
    }
}

/// `fmt::Write` into a `BytesMut`, for numbers and addresses without a temporary String.
struct ByteWriter<'a>(&'a mut BytesMut);

impl std::fmt::Write for ByteWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.put_slice(s.as_bytes());
        Ok(())
    }
}

/// A name-addr or addr-spec with header parameters (From, To, Contact, Route, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddr<'a> {
    raw: &'a str,
    /// The value up to its header parameters (display name and URI).
    addr: &'a str,
    display: Option<&'a str>,
    uri: Uri<'a>,
    params: Params<'a>,
}

impl<'a> NameAddr<'a> {
    fn parse(v: &'a str) -> Result<NameAddr<'a>, ()> {
        let v = v.trim_ascii();
        if v == "*" {
            // Contact: * (§20.10); represented with an opaque URI.
            return Ok(NameAddr {
                raw: v,
                addr: v,
                display: None,
                uri: Uri { raw: v, l: OPAQUE },
                params: Params(""),
            });
        }
        let (display, after_display) = if v.starts_with('"') {
            let end = quoted_end(v).ok_or(())?;
            let inner = v.get(1..end - 1).ok_or(())?;
            let rest = v.get(end..).ok_or(())?.trim_ascii_start();
            if !rest.starts_with('<') {
                return Err(());
            }
            (Some(inner), rest)
        } else if let Some(lt) = find_b(v, b'<') {
            let dn = v.get(..lt).ok_or(())?.trim_ascii();
            if !dn
                .bytes()
                .all(|b| is_token_byte(b) || b == b' ' || b == b'\t')
            {
                return Err(());
            }
            ((!dn.is_empty()).then_some(dn), v.get(lt..).ok_or(())?)
        } else {
            (None, v)
        };
        let (uri_s, addr, params) = if let Some(inner) = after_display.strip_prefix('<') {
            let gt = find_b(inner, b'>').ok_or(())?;
            let uri_s = inner.get(..gt).ok_or(())?;
            // `inner` is a suffix of `v`: the name-addr ends at its `>`.
            let addr = v.get(..v.len() - inner.len() + gt + 1).ok_or(())?;
            let rest = inner.get(gt + 1..).ok_or(())?.trim_ascii_start();
            let params = if rest.is_empty() {
                ""
            } else {
                rest.strip_prefix(';').ok_or(())?
            };
            (uri_s, addr, params)
        } else {
            let end = find_b(after_display, b';').unwrap_or(after_display.len());
            let uri_s = after_display.get(..end).ok_or(())?.trim_ascii_end();
            // In addr-spec form the URI cannot carry parameters or headers of its own.
            if uri_s.bytes().any(|b| b == b'?' || b == b',') {
                return Err(());
            }
            (
                uri_s,
                uri_s,
                after_display.get(end + 1..).unwrap_or_default(),
            )
        };
        Ok(NameAddr {
            raw: v,
            addr,
            display,
            uri: Uri::parse_inner(uri_s)?,
            params: Params::parse(params)?,
        })
    }

    /// The value as received.
    pub fn as_str(&self) -> &'a str {
        self.raw
    }
    /// The value without its header parameters: display name and URI as received (the
    /// tag of a From or To goes on separately).
    pub fn without_params(&self) -> &'a str {
        self.addr
    }
    /// The display name, without quotes (quoted-pairs left as sent).
    pub fn display_name(&self) -> Option<&'a str> {
        self.display
    }
    /// The URI.
    pub fn uri(&self) -> Uri<'a> {
        self.uri
    }
    /// Header parameters (after the URI).
    pub fn params(&self) -> Params<'a> {
        self.params
    }
    /// The tag parameter (§19.3).
    pub fn tag(&self) -> Option<&'a str> {
        self.params.get("tag").flatten()
    }
}

/// CSeq (§20.16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

impl CSeq {
    /// Parses a CSeq value of `head`; an extension method shares its token with the message.
    fn parse(head: &Headers, v: &str) -> Result<CSeq, ParseError> {
        let bad = ParseError::BadHeader("CSeq");
        let split = first_ws(v).ok_or(bad)?;
        let (n, m) = v.split_at(split);
        let m = m.trim_ascii();
        if !is_token(m) {
            return Err(bad);
        }
        Ok(CSeq {
            seq: parse_u32(n).ok_or(bad)?,
            method: Method::known(m).unwrap_or_else(|| Method::Other(head.share(m))),
        })
    }
}

/// A media type or range (Content-Type §20.15, Accept §20.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaType<'a> {
    pub kind: &'a str,
    pub subtype: &'a str,
    params: Params<'a>,
}

impl<'a> MediaType<'a> {
    fn parse(v: &'a str) -> Result<MediaType<'a>, ()> {
        let (ty, params) = split_byte(v, b';').unwrap_or((v, ""));
        let (kind, subtype) = split_byte(ty, b'/').ok_or(())?;
        let (kind, subtype) = (kind.trim_ascii(), subtype.trim_ascii());
        if !is_token(kind) || !is_token(subtype) {
            return Err(());
        }
        Ok(MediaType {
            kind,
            subtype,
            params: Params::parse(params)?,
        })
    }
    /// Case-insensitive comparison with `kind/subtype`.
    pub fn is(&self, kind: &str, subtype: &str) -> bool {
        self.kind.eq_ignore_ascii_case(kind) && self.subtype.eq_ignore_ascii_case(subtype)
    }
    /// Whether this range admits `kind/subtype` (wildcards understood).
    pub fn admits(&self, kind: &str, subtype: &str) -> bool {
        (self.kind == "*" || self.kind.eq_ignore_ascii_case(kind))
            && (self.subtype == "*" || self.subtype.eq_ignore_ascii_case(subtype))
    }
    /// Parameters (charset, boundary, q, ...).
    pub fn params(&self) -> Params<'a> {
        self.params
    }
}

// ---------------------------------------------------------------------------------------
// Messages

/// A parsed SIP message.
#[derive(Debug, Clone)]
pub enum Message {
    Request(Request),
    Response(Response),
}

/// A request (§7.1).
#[derive(Debug, Clone)]
pub struct Request {
    head: Headers,
    method: Span,
    uri: Span,
    uri_layout: UriLayout,
    body: Bytes,
}

/// A response (§7.2).
#[derive(Debug, Clone)]
pub struct Response {
    head: Headers,
    status: u16,
    reason: Span,
    body: Bytes,
}

/// Two responses are equal when their octets are: the parse is a function of them.
impl PartialEq for Response {
    fn eq(&self, other: &Self) -> bool {
        self.head.buf == other.head.buf
    }
}

impl Eq for Response {}

/// A message that failed to parse, with whatever of its header section could be indexed, so
/// that the caller can still answer 400 (or drop when nothing can be addressed).
#[derive(Debug, Clone)]
pub struct Partial {
    pub error: ParseError,
    pub head: Option<Headers>,
}

impl Partial {
    /// Whether a response can be addressed (see [`Headers::can_answer`]).
    pub fn can_answer(&self) -> bool {
        self.head.as_ref().is_some_and(Headers::can_answer)
    }
}

impl Message {
    /// Parses one message: a datagram, a WebSocket message, or a frame from
    /// [`crate::sip::framing::StreamDecoder`].
    pub fn parse(buf: Bytes) -> Result<Message, ParseError> {
        Self::parse_partial(buf).map_err(|p| p.error)
    }

    /// Like [`Message::parse`], keeping the indexed header section on failure.
    pub fn parse_partial(buf: Bytes) -> Result<Message, Box<Partial>> {
        let head = Headers::index(buf).map_err(|error| Box::new(Partial { error, head: None }))?;
        let fail = |head: Headers, error| {
            Box::new(Partial {
                error,
                head: Some(head),
            })
        };
        let body = match body_of(&head) {
            Ok(b) => b,
            Err(e) => return Err(fail(head, e)),
        };
        let line = head.start_line();
        if line.starts_with(b"SIP/") {
            match parse_status_line(line, head.start.start as usize) {
                Ok((status, reason)) => Ok(Message::Response(Response {
                    head,
                    status,
                    reason,
                    body,
                })),
                Err(e) => Err(fail(head, e)),
            }
        } else {
            match parse_request_line(&head) {
                Ok((method, uri, uri_layout)) => Ok(Message::Request(Request {
                    head,
                    method,
                    uri,
                    uri_layout,
                    body,
                })),
                Err(e) => Err(fail(head, e)),
            }
        }
    }

    /// The header section.
    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.head,
            Message::Response(r) => &r.head,
        }
    }
}

/// The body per §18.3: Content-Length octets after the header section (fewer is an error,
/// more are ignored), or the rest of the input when there is no Content-Length.
fn body_of(head: &Headers) -> Result<Bytes, ParseError> {
    let avail = head.buf.len().saturating_sub(head.body_start);
    let len = match head.content_length()? {
        Some(n) => usize::try_from(n)
            .ok()
            .filter(|&n| n <= avail)
            .ok_or(ParseError::ContentLengthMismatch)?,
        None => avail,
    };
    Ok(head.buf.slice(head.body_start..head.body_start + len))
}

fn check_version(v: &[u8]) -> Result<(), ParseError> {
    if v.eq_ignore_ascii_case(b"SIP/2.0") {
        return Ok(());
    }
    let well_formed = v.len() > 4
        && v.get(..4).is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
        && v.get(4..).is_some_and(|n| {
            let mut parts = n.split(|&b| b == b'.');
            let ok = |p: Option<&[u8]>| {
                p.is_some_and(|p| !p.is_empty() && p.iter().all(u8::is_ascii_digit))
            };
            ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
        });
    Err(if well_formed {
        ParseError::BadVersion
    } else {
        ParseError::BadStartLine
    })
}

fn parse_request_line(head: &Headers) -> Result<(Span, Span, UriLayout), ParseError> {
    let line = head.start_line();
    let base = head.start.start as usize;
    let sp1 = line
        .iter()
        .position(|&b| b == b' ')
        .ok_or(ParseError::BadStartLine)?;
    let sp2 = line
        .iter()
        .rposition(|&b| b == b' ')
        .ok_or(ParseError::BadStartLine)?;
    if sp2 <= sp1 {
        return Err(ParseError::BadStartLine);
    }
    check_version(line.get(sp2 + 1..).unwrap_or_default())?;
    let method = line.get(..sp1).unwrap_or_default();
    if method.is_empty() || !method.iter().all(|&b| is_token_byte(b)) {
        return Err(ParseError::BadStartLine);
    }
    let uri = line.get(sp1 + 1..sp2).unwrap_or_default();
    if uri.contains(&b' ') {
        return Err(ParseError::BadStartLine);
    }
    let uri_span = Span::new(base + sp1 + 1, base + sp2);
    let uri_s = head.str_at(uri_span).ok_or(ParseError::BadRequestUri)?;
    let parsed = Uri::parse(uri_s)?;
    if parsed.headers().is_some() {
        return Err(ParseError::BadRequestUri);
    }
    Ok((Span::new(base, base + sp1), uri_span, parsed.l))
}

fn parse_status_line(line: &[u8], base: usize) -> Result<(u16, Span), ParseError> {
    let mut parts = line.splitn(3, |&b| b == b' ');
    check_version(parts.next().unwrap_or_default())?;
    let code = parts.next().unwrap_or_default();
    if code.len() != 3 {
        return Err(ParseError::BadStartLine);
    }
    let status = std::str::from_utf8(code)
        .ok()
        .and_then(parse_u32)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (100..700).contains(c))
        .ok_or(ParseError::BadStartLine)?;
    let reason_start = (12).min(line.len());
    Ok((status, Span::new(base + reason_start, base + line.len())))
}

impl Request {
    /// The method; an extension method shares its token with the message (no copy).
    pub fn method(&self) -> Method {
        let token = self.method_str();
        Method::known(token).unwrap_or_else(|| Method::Other(self.head.share(token)))
    }
    /// The method token as received.
    pub fn method_str(&self) -> &str {
        self.head.str_at(self.method).unwrap_or_default()
    }
    /// The Request-URI (parsed once, with the request).
    pub fn uri(&self) -> Uri<'_> {
        Uri {
            raw: self.head.str_at(self.uri).unwrap_or_default(),
            l: self.uri_layout,
        }
    }
    /// The header section (typed accessors and generic lookup).
    pub fn headers(&self) -> &Headers {
        &self.head
    }
    /// Gives up the request for its header section (to address a response to it).
    pub fn into_headers(self) -> Headers {
        self.head
    }
    /// The first value of a header by name (see [`Headers::get`]).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.get(name)
    }
    /// Every line of a header by name (see [`Headers::get_all`]).
    pub fn headers_named<'a, 'n>(
        &'a self,
        name: &'n str,
    ) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.head.get_all(name)
    }
    /// The body (exactly Content-Length octets).
    pub fn body(&self) -> &Bytes {
        &self.body
    }
    /// The whole message buffer as received (folding replaced by spaces).
    pub fn as_bytes(&self) -> &Bytes {
        &self.head.buf
    }
    /// Whether the To carries a tag: the request claims to be inside a dialog (§12.2.2).
    pub fn in_dialog(&self) -> bool {
        self.head.to().is_ok_and(|t| t.tag().is_some())
    }
}

impl Response {
    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }
    /// The reason phrase (opaque UTF-8, may be empty).
    pub fn reason(&self) -> &str {
        self.head.str_at(self.reason).unwrap_or_default()
    }
    /// The header section.
    pub fn headers(&self) -> &Headers {
        &self.head
    }
    /// The body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }
    /// The whole message buffer as received (folding replaced by spaces).
    pub fn as_bytes(&self) -> &Bytes {
        &self.head.buf
    }

    /// Starts a response to `req` (§8.2.6.2): Vias, From, To, Call-ID and CSeq are copied.
    pub fn to_request<'a>(req: &'a Request, status: u16, reason: &'a str) -> ResponseBuilder<'a> {
        ResponseBuilder::new(&req.head, status, reason)
    }
}

// ---------------------------------------------------------------------------------------
// Serialisation

/// Builds a response from the header section of a request. Nothing is allocated until
/// [`ResponseBuilder::write`] or [`ResponseBuilder::build`], which reserve once.
#[derive(Debug)]
pub struct ResponseBuilder<'a> {
    req: &'a Headers,
    status: u16,
    reason: &'a str,
    to_tag: Option<&'a str>,
    received: Option<(IpAddr, u16)>,
    extra: Vec<(&'a str, &'a str)>,
    body: Option<(&'a str, Bytes)>,
}

const COPIED: [Name; 5] = [Name::Via, Name::From, Name::To, Name::CallId, Name::CSeq];

impl<'a> ResponseBuilder<'a> {
    /// A response to a request known only by its header section (used when the request could
    /// not be fully parsed).
    pub fn new(req: &'a Headers, status: u16, reason: &'a str) -> ResponseBuilder<'a> {
        ResponseBuilder {
            req,
            status,
            reason,
            to_tag: None,
            received: None,
            extra: Vec::new(),
            body: None,
        }
    }

    /// The To-tag to add when the request's To has none (§8.2.6.2).
    pub fn to_tag(mut self, tag: &'a str) -> Self {
        self.to_tag = Some(tag);
        self
    }

    /// Sets `received` (and `rport` when requested) on the top Via (§18.2.1, RFC 3581).
    pub fn received(mut self, source: IpAddr, source_port: u16) -> Self {
        self.received = Some((source, source_port));
        self
    }

    /// Adds a header line.
    pub fn header(mut self, name: &'a str, value: &'a str) -> Self {
        self.extra.push((name, value));
        self
    }

    /// Sets the body and its Content-Type.
    pub fn body(mut self, content_type: &'a str, body: Bytes) -> Self {
        self.body = Some((content_type, body));
        self
    }

    /// Serialises into `out`.
    pub fn write(&self, out: &mut BytesMut) {
        let h = self.req;
        let copied: usize = h
            .entries
            .iter()
            .filter(|e| COPIED.contains(&e.name))
            .map(|e| e.value.range().len() + 24)
            .sum();
        let extra: usize = self.extra.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
        let body_len = self
            .body
            .as_ref()
            .map_or(0, |(ct, b)| ct.len() + b.len() + 20);
        out.reserve(64 + self.reason.len() + copied + extra + body_len + 96);
        let _ = write!(ByteWriter(out), "SIP/2.0 {} ", self.status);
        out.put_slice(self.reason.as_bytes());
        out.put_slice(b"\r\n");
        let mut first_via = true;
        for name in COPIED {
            for e in h.named(name) {
                out.put_slice(name.as_str().as_bytes());
                out.put_slice(b": ");
                let value = h.slice(e.value);
                match (name, self.received) {
                    (Name::Via, Some((ip, port))) if first_via => {
                        first_via = false;
                        write_top_via(out, value, ip, port);
                    }
                    _ => out.put_slice(value),
                }
                if let (Name::To, Some(tag)) = (name, self.to_tag) {
                    let has_tag = std::str::from_utf8(value)
                        .ok()
                        .and_then(|v| NameAddr::parse(v).ok())
                        .is_some_and(|t| t.tag().is_some());
                    if !has_tag {
                        out.put_slice(b";tag=");
                        out.put_slice(tag.as_bytes());
                    }
                }
                out.put_slice(b"\r\n");
            }
        }
        for (n, v) in &self.extra {
            put_header(out, n, v);
        }
        write_body(out, self.body.as_ref());
    }

    /// Serialises into a new buffer.
    pub fn build(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.write(&mut out);
        out.freeze()
    }
}

/// Writes the top Via value with received/rport set; a value that does not parse is copied.
fn write_top_via(out: &mut BytesMut, value: &[u8], ip: IpAddr, port: u16) {
    let parsed = std::str::from_utf8(value).ok().and_then(|v| {
        let first_end = split_list(v).next().map_or(0, str::len);
        let (first, rest) = (v.get(..first_end)?, v.get(first_end..)?);
        Some((Via::parse(first).ok()?, rest))
    });
    match parsed {
        Some((via, rest)) => {
            write_via_with_received(out, &via, ip, port);
            out.put_slice(rest.as_bytes());
        }
        None => out.put_slice(value),
    }
}

fn put_header(out: &mut BytesMut, name: &str, value: &str) {
    out.put_slice(name.as_bytes());
    out.put_slice(b": ");
    out.put_slice(value.as_bytes());
    out.put_slice(b"\r\n");
}

fn write_body(out: &mut BytesMut, body: Option<&(&str, Bytes)>) {
    match body {
        Some((ct, b)) => {
            put_header(out, "Content-Type", ct);
            let _ = write!(ByteWriter(out), "Content-Length: {}\r\n\r\n", b.len());
            out.put_slice(b);
        }
        None => out.put_slice(b"Content-Length: 0\r\n\r\n"),
    }
}

/// Builds a request a UAS sends inside a dialog (BYE, re-INVITE, ...; §12.2.1.1).
#[derive(Debug)]
pub struct RequestBuilder<'a> {
    method: Method,
    uri: &'a str,
    via: (&'a str, &'a str, &'a str),
    from: (&'a str, &'a str),
    to: (&'a str, Option<&'a str>),
    call_id: &'a str,
    cseq: u32,
    max_forwards: u8,
    routes: Vec<&'a str>,
    extra: Vec<(&'a str, &'a str)>,
    body: Option<(&'a str, Bytes)>,
}

impl<'a> RequestBuilder<'a> {
    /// `uri` is the remote target; `via` is (transport, sent-by, branch); `from` is the
    /// local (name-addr, tag), `to` the remote (name-addr, tag).
    pub fn new(
        method: Method,
        uri: &'a str,
        via: (&'a str, &'a str, &'a str),
        from: (&'a str, &'a str),
        to: (&'a str, Option<&'a str>),
        call_id: &'a str,
        cseq: u32,
    ) -> RequestBuilder<'a> {
        RequestBuilder {
            method,
            uri,
            via,
            from,
            to,
            call_id,
            cseq,
            max_forwards: 70,
            routes: Vec::new(),
            extra: Vec::new(),
            body: None,
        }
    }

    /// Appends one Route value (the dialog's route set, in order; §12.2.1.1).
    pub fn route(mut self, route: &'a str) -> Self {
        self.routes.push(route);
        self
    }

    /// Overrides Max-Forwards (default 70).
    pub fn max_forwards(mut self, n: u8) -> Self {
        self.max_forwards = n;
        self
    }

    /// Adds a header line.
    pub fn header(mut self, name: &'a str, value: &'a str) -> Self {
        self.extra.push((name, value));
        self
    }

    /// Sets the body and its Content-Type.
    pub fn body(mut self, content_type: &'a str, body: Bytes) -> Self {
        self.body = Some((content_type, body));
        self
    }

    /// Serialises into `out`.
    pub fn write(&self, out: &mut BytesMut) {
        let m = self.method.as_str();
        let routes: usize = self.routes.iter().map(|r| r.len() + 9).sum();
        let extra: usize = self.extra.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
        let body_len = self
            .body
            .as_ref()
            .map_or(0, |(ct, b)| ct.len() + b.len() + 20);
        let fixed = self.uri.len()
            + self.via.0.len()
            + self.via.1.len()
            + self.via.2.len()
            + self.from.0.len()
            + self.from.1.len()
            + self.to.0.len()
            + self.to.1.map_or(0, str::len)
            + self.call_id.len()
            + 2 * m.len();
        out.reserve(fixed + routes + extra + body_len + 160);
        out.put_slice(m.as_bytes());
        out.put_u8(b' ');
        out.put_slice(self.uri.as_bytes());
        out.put_slice(b" SIP/2.0\r\nVia: SIP/2.0/");
        out.put_slice(self.via.0.as_bytes());
        out.put_u8(b' ');
        out.put_slice(self.via.1.as_bytes());
        out.put_slice(b";branch=");
        out.put_slice(self.via.2.as_bytes());
        let _ = write!(
            ByteWriter(out),
            "\r\nMax-Forwards: {}\r\n",
            self.max_forwards
        );
        for r in &self.routes {
            put_header(out, "Route", r);
        }
        out.put_slice(b"From: ");
        out.put_slice(self.from.0.as_bytes());
        out.put_slice(b";tag=");
        out.put_slice(self.from.1.as_bytes());
        out.put_slice(b"\r\nTo: ");
        out.put_slice(self.to.0.as_bytes());
        if let Some(tag) = self.to.1 {
            out.put_slice(b";tag=");
            out.put_slice(tag.as_bytes());
        }
        out.put_slice(b"\r\n");
        put_header(out, "Call-ID", self.call_id);
        let _ = write!(ByteWriter(out), "CSeq: {} ", self.cseq);
        out.put_slice(m.as_bytes());
        out.put_slice(b"\r\n");
        for (n, v) in &self.extra {
            put_header(out, n, v);
        }
        write_body(out, self.body.as_ref());
    }

    /// Serialises into a new buffer.
    pub fn build(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.write(&mut out);
        out.freeze()
    }
}

/// Builds the ACK that the INVITE client transaction sends for a 300-699 final
/// (§17.1.1.3): the INVITE's Request-URI, top Via, Max-Forwards, Route, From and Call-ID,
/// the To of the response (with the tag the UAS added) and the INVITE's CSeq number with
/// method ACK. The ACK for a 2xx is a request of the dialog, built by the TU (§13.2.2.4).
///
/// Fails when the INVITE or the response lacks a header the ACK copies.
pub fn ack_for_non_2xx(invite: &Request, response: &Response) -> Result<Bytes, ParseError> {
    let to = response.headers().to()?.as_str();
    invite_derived(invite, Method::Ack, to)
}

/// Builds the CANCEL of a pending INVITE (§9.1): the INVITE's Request-URI, top Via (so the
/// CANCEL reaches the same transaction at the UAS), Max-Forwards, Route, From, To (with no
/// tag added) and Call-ID, and its CSeq number with method CANCEL.
///
/// Fails when the INVITE lacks a header the CANCEL copies.
pub fn cancel_for(invite: &Request) -> Result<Bytes, ParseError> {
    let to = invite.headers().to()?.as_str();
    invite_derived(invite, Method::Cancel, to)
}

/// A request that copies the INVITE's routing and identity (ACK for a non-2xx, CANCEL).
fn invite_derived(invite: &Request, method: Method, to: &str) -> Result<Bytes, ParseError> {
    let head = invite.headers();
    let via = head.top_via()?.as_str();
    let from = head.from()?.as_str();
    let call_id = head.call_id()?;
    let seq = head.cseq()?.seq;
    let max_forwards = head.max_forwards()?.unwrap_or(70);
    let uri = invite.uri().as_str();
    let m = method.as_str();
    let routes: Vec<&str> = head.get_all("Route").collect();
    let mut out = BytesMut::with_capacity(
        uri.len()
            + via.len()
            + from.len()
            + to.len()
            + call_id.len()
            + routes.iter().map(|r| r.len() + 9).sum::<usize>()
            + 2 * m.len()
            + 120,
    );
    out.put_slice(m.as_bytes());
    out.put_u8(b' ');
    out.put_slice(uri.as_bytes());
    out.put_slice(b" SIP/2.0\r\n");
    put_header(&mut out, "Via", via);
    let _ = write!(ByteWriter(&mut out), "Max-Forwards: {max_forwards}\r\n");
    for route in routes {
        put_header(&mut out, "Route", route);
    }
    put_header(&mut out, "From", from);
    put_header(&mut out, "To", to);
    put_header(&mut out, "Call-ID", call_id);
    let _ = write!(ByteWriter(&mut out), "CSeq: {seq} {m}\r\n");
    out.put_slice(b"Content-Length: 0\r\n\r\n");
    Ok(out.freeze())
}

/// A To-tag derived from the request (§8.2.7, §8.2.6.2): the same request, retransmitted,
/// gets the same tag, so stateless replies need no memory. 16 hex digits of a 64-bit
/// FNV-1a over Call-ID, From-tag and top Via branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToTag([u8; 16]);

impl ToTag {
    /// Derives the tag from a request's header section; absent parts hash as empty.
    pub fn derive(head: &Headers) -> ToTag {
        let call_id = head.call_id().unwrap_or_default();
        let from_tag = head.from().ok().and_then(|f| f.tag()).unwrap_or_default();
        let branch = head
            .top_via()
            .ok()
            .and_then(|v| v.branch())
            .unwrap_or_default();
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for part in [call_id, from_tag, branch] {
            for b in part.bytes().chain(std::iter::once(0)) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        let mut out = [0u8; 16];
        for (i, o) in out.iter_mut().enumerate() {
            let nibble = (h >> (60 - 4 * i)) & 0xf;
            *o = b"0123456789abcdef"
                .get(nibble as usize)
                .copied()
                .unwrap_or(b'0');
        }
        ToTag(out)
    }

    /// The tag text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ipv4_fast_path_agrees_with_the_general_host_parser() {
        let taken = [
            "1.2.3.4",
            "198.51.100.20:5060",
            "010.001.000.255:0",
            "203.0.113.10:65535",
            "0.0.0.0:00001",
        ];
        for s in taken {
            let fast = ipv4_port(s.as_bytes()).expect(s);
            assert_eq!(Ok(fast), parse_hostport_general(s), "{s}");
        }
        // Left to the general path, which accepts or refuses them itself.
        let declined = [
            " 1.2.3.4",
            "1.2.3.4 : 5060",
            "256.1.1.1",
            "1.2.3",
            "1.2.3.4.5",
            "0001.2.3.4",
            "1.2.3.4:",
            "1.2.3.4:65536",
            "1.2.3.4:123456",
            "1.2.3.4x",
            "a.example.com:5060",
            "[2001:db8::1]:5060",
            "",
        ];
        for s in declined {
            assert_eq!(ipv4_port(s.as_bytes()), None, "{s:?}");
        }
        assert_eq!(
            parse_hostport(" 1.2.3.4 : 5060"),
            Ok((Host::Ipv4(Ipv4Addr::new(1, 2, 3, 4)), Some(5060)))
        );
        assert_eq!(
            parse_hostport("256.1.1.1"),
            Ok((Host::Name("256.1.1.1"), None))
        );
        assert_eq!(parse_hostport("1.2.3.4:65536"), Err(()));
        assert_eq!(parse_hostport("1.2.3.4:"), Err(()));
    }

    const INVITE: &str = "INVITE sip:+919876543210@vca.example.com;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 203.0.113.7:5060;branch=z9hG4bK776asdhds;rport\r\n\
v: SIP/2.0/TCP [2001:db8::1]:5061;branch=z9hG4bKabc;received=192.0.2.1, SIP/2.0/UDP gw.example.net;branch=z9hG4bKx\r\n\
Max-Forwards: 0069\r\n\
f: \"Alice \\\"A\\\"\" <sip:alice@example.org>;tag=1928301774\r\n\
t: <tel:+919876543210>\r\n\
i: a84b4c76e66710@pc33.example.org\r\n\
CSeq: 0314159 INVITE\r\n\
m: <sip:alice@203.0.113.7:5060;transport=udp>\r\n\
Require: timer\r\n\
k: timer, 100rel\r\n\
x: 1800;refresher=uac\r\n\
Min-SE: 90\r\n\
Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n\
Record-Route: <sip:rr.example.com;lr>\r\n\
User-Agent: test/1\r\n\
P-Called-Party-ID: <sip:+919876543210@vca.example.com;user=phone>\r\n\
Authorization: Digest username=\"trunk\", realm=\"vca\", nonce=\"abc,def\", uri=\"sip:x\", response=\"0123\"\r\n\
c: application/sdp\r\n\
l: 4\r\n\
\r\n\
v=0\r\ntrailing";

    fn req(s: &str) -> Request {
        match Message::parse(Bytes::copy_from_slice(s.as_bytes())) {
            Ok(Message::Request(r)) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    #[test]
    fn types_the_call_path_headers() {
        let r = req(INVITE);
        let h = r.headers();
        assert_eq!(r.method(), Method::Invite);
        let uri = r.uri();
        assert_eq!(uri.scheme(), Scheme::Sip);
        assert_eq!(uri.user(), Some("+919876543210"));
        assert_eq!(uri.host(), Some(Host::Name("vca.example.com")));
        assert!(uri.is_user_phone());
        let vias: Vec<_> = h.vias().collect::<Result<_, _>>().unwrap();
        assert_eq!(vias.len(), 3);
        assert_eq!(vias[0].transport, "UDP");
        assert_eq!(vias[0].host, Host::Ipv4(Ipv4Addr::new(203, 0, 113, 7)));
        assert_eq!(vias[0].port, Some(5060));
        assert_eq!(vias[0].branch(), Some("z9hG4bK776asdhds"));
        assert_eq!(vias[0].rport(), Rport::Requested);
        assert_eq!(vias[1].host, Host::Ipv6("2001:db8::1".parse().unwrap()));
        assert_eq!(vias[1].port, Some(5061));
        assert_eq!(vias[1].received(), Some("192.0.2.1"));
        assert_eq!(vias[1].rport(), Rport::Absent);
        assert_eq!(vias[2].host, Host::Name("gw.example.net"));
        assert_eq!(vias[2].branch(), Some("z9hG4bKx"));
        assert_eq!(h.max_forwards(), Ok(Some(69)));
        let from = h.from().unwrap();
        assert_eq!(from.display_name(), Some("Alice \\\"A\\\""));
        assert_eq!(from.tag(), Some("1928301774"));
        assert_eq!(from.uri().user(), Some("alice"));
        let to = h.to().unwrap();
        assert_eq!(to.uri().scheme(), Scheme::Tel);
        assert_eq!(to.uri().number(), Some("+919876543210"));
        assert_eq!(to.tag(), None);
        assert_eq!(h.call_id(), Ok("a84b4c76e66710@pc33.example.org"));
        let cseq = h.cseq().unwrap();
        assert_eq!((cseq.seq, cseq.method), (314159, Method::Invite));
        let contact = h.contacts().next().unwrap().unwrap();
        assert_eq!(contact.uri().port(), Some(5060));
        assert_eq!(contact.uri().params().get("transport"), Some(Some("udp")));
        assert_eq!(
            h.require().collect::<Result<Vec<_>, _>>(),
            Ok(vec!["timer"])
        );
        assert_eq!(
            h.supported().collect::<Result<Vec<_>, _>>(),
            Ok(vec!["timer", "100rel"])
        );
        // Session-Expires and Min-SE are typed by the session timer (RFC 4028), Authorization
        // by digest authentication: the index only finds them.
        assert_eq!(h.get("Min-SE"), Some("90"));
        let routes: Vec<_> = h.routes().map(|r| r.unwrap().uri().as_str()).collect();
        assert_eq!(routes, ["sip:p1.example.com;lr", "sip:p2.example.com;lr"]);
        assert_eq!(h.record_routes().count(), 1);
        assert_eq!(h.user_agent(), Some("test/1"));
        assert!(
            h.p_called_party_id()
                .unwrap()
                .unwrap()
                .uri()
                .is_user_phone()
        );
        assert!(
            h.get("authorization")
                .is_some_and(|v| v.starts_with("Digest "))
        );
        assert!(h.content_type().unwrap().unwrap().is("application", "sdp"));
        assert_eq!(h.content_length(), Ok(Some(4)));
        assert_eq!(&r.body()[..], b"v=0\r");
        assert_eq!(r.header("content-type"), Some("application/sdp"));
        assert_eq!(r.header("Session-Expires"), Some("1800;refresher=uac"));
        assert_eq!(h.get_all("via").count(), 2);
    }

    #[test]
    fn folding_and_lws_are_unfolded() {
        let r = req(
            "OPTIONS sip:a@b SIP/2.0\r\nVia : SIP / 2.0\r\n /UDP\r\n  h.example.com ;\r\n branch = z9hG4bK1\r\nFrom:\r\n <sip:x@y>\r\n ;tag = 7\r\nTo: sip:a@b\r\nCall-ID: c\r\nCSeq: 1\r\n OPTIONS\r\nX-Thing: a\r\n\tb\r\n\r\n",
        );
        let h = r.headers();
        let via = h.top_via().unwrap();
        assert_eq!(via.transport, "UDP");
        assert_eq!(via.host, Host::Name("h.example.com"));
        assert_eq!(via.branch(), Some("z9hG4bK1"));
        assert_eq!(h.from().unwrap().tag(), Some("7"));
        assert_eq!(h.cseq().unwrap().method, Method::Options);
        assert_eq!(r.header("x-thing"), Some("a  \tb"));
        assert_eq!(r.body().len(), 0);
    }

    #[test]
    fn name_addrs_without_params_and_via_sent_by_keep_the_received_text() {
        let r = req(
            "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP [2001:db8::1]:5070 ;branch=z9hG4bK1\r\nFrom: \"A; B\" <sip:x@y;transport=tcp>;tag=7\r\nTo: sip:a@b;tag=9\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n",
        );
        let h = r.headers();
        assert_eq!(h.top_via().unwrap().sent_by(), "[2001:db8::1]:5070");
        let from = h.from().unwrap();
        assert_eq!(from.without_params(), "\"A; B\" <sip:x@y;transport=tcp>");
        assert_eq!(from.tag(), Some("7"));
        assert_eq!(h.to().unwrap().without_params(), "sip:a@b");
    }

    #[test]
    fn ipv6_hosts_and_ports() {
        let u = Uri::parse("sip:[2001:db8::10:5070]").unwrap();
        assert_eq!(
            u.host(),
            Some(Host::Ipv6("2001:db8::10:5070".parse().unwrap()))
        );
        assert_eq!(u.port(), None);
        let u = Uri::parse("sip:[2001:db8::10]:5070").unwrap();
        assert_eq!(u.port(), Some(5070));
        assert!(Uri::parse("sip:2001:db8::10").is_err());
        assert!(Uri::parse("sip:user@[2001:db8:::192.0.2.1]").is_err());
        assert_eq!(Uri::parse("nobody:opaque").unwrap().scheme(), Scheme::Other);
        fn host(u: &str) -> Option<Host<'_>> {
            Uri::parse(u).unwrap().host()
        }
        assert_eq!(
            host("sip:192.000.002.010"),
            Some(Host::Ipv4(Ipv4Addr::new(192, 0, 2, 10)))
        );
        assert_eq!(host("sip:256.1.1.1"), Some(Host::Name("256.1.1.1")));
        assert_eq!(host("sip:1.2.3"), Some(Host::Name("1.2.3")));
        assert_eq!(host("sip:a_b-c.example"), Some(Host::Name("a_b-c.example")));
        assert!(Uri::parse("sip:a!b.example").is_err());
        let u = Uri::parse("sip:user;par=u%40example.net@example.com").unwrap();
        assert_eq!(u.user(), Some("user;par=u%40example.net"));
    }

    #[test]
    fn display_names() {
        let n = NameAddr::parse("caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(n.display_name(), Some("caller"));
        assert!(NameAddr::parse("Bell, Alexander <sip:a@b>").is_err());
        assert!(NameAddr::parse("\"Mr. J. User <sip:j.user@example.com>").is_err());
        assert!(NameAddr::parse("\"abc\\\" <sip:a@b>").is_err());
        assert!(NameAddr::parse("\"x\" < sip:t@example.org >").is_err());
        let n = NameAddr::parse("sip:u@h ;  tag = 9").unwrap();
        assert_eq!(n.tag(), Some("9"));
    }

    #[test]
    fn start_lines() {
        let p = |s: &str| Message::parse(Bytes::copy_from_slice(s.as_bytes())).map(|_| ());
        let tail = "\r\nVia: SIP/2.0/UDP h\r\n\r\n";
        assert_eq!(
            p(&format!("OPTIONS sip:a@b SIP/3.0{tail}")),
            Err(ParseError::BadVersion)
        );
        assert_eq!(
            p(&format!("OPTIONS  sip:a@b SIP/2.0{tail}")),
            Err(ParseError::BadStartLine)
        );
        assert_eq!(
            p(&format!("OPTIONS sip:a@b SIP/2.0 {tail}")),
            Err(ParseError::BadStartLine)
        );
        assert_eq!(
            p(&format!("OPTIONS <sip:a@b> SIP/2.0{tail}")),
            Err(ParseError::BadRequestUri)
        );
        assert_eq!(
            p(&format!("OPTIONS sip:a@b?x=y SIP/2.0{tail}")),
            Err(ParseError::BadRequestUri)
        );
        assert_eq!(
            p(&format!("SIP/2.0 4294967301 big{tail}")),
            Err(ParseError::BadStartLine)
        );
        match Message::parse(Bytes::from_static(
            b"SIP/2.0 100 \r\nVia: SIP/2.0/UDP h\r\n\r\n",
        )) {
            Ok(Message::Response(r)) => assert_eq!((r.status(), r.reason()), (100, "")),
            other => panic!("{other:?}"),
        }
        assert_eq!(p("\r\n\r\n"), Err(ParseError::Empty));
    }

    #[test]
    fn content_length_rules() {
        let m = |cl: &str, body: &str| {
            Message::parse(Bytes::from(format!(
                "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n{cl}\r\n{body}"
            )))
        };
        assert_eq!(
            m("Content-Length: 9999\r\n", "abc").err(),
            Some(ParseError::ContentLengthMismatch)
        );
        assert_eq!(
            m("Content-Length: 4294967328\r\n", "abc").err(),
            Some(ParseError::ContentLengthMismatch)
        );
        assert_eq!(
            m("Content-Length: -1\r\n", "").err(),
            Some(ParseError::BadHeader("Content-Length"))
        );
        assert_eq!(
            m("Content-Length: 1\r\nl: 2\r\n", "ab").err(),
            Some(ParseError::DuplicateHeader("Content-Length"))
        );
        let Ok(Message::Request(r)) = m("Content-Length: 2\r\n", "abcdef") else {
            panic!("trailing octets must be ignored");
        };
        assert_eq!(&r.body()[..], b"ab");
        let Ok(Message::Request(r)) = m("", "rest of datagram") else {
            panic!("no Content-Length must take the rest");
        };
        assert_eq!(&r.body()[..], b"rest of datagram");
    }

    #[test]
    fn response_copies_and_tags() {
        let r = req(INVITE);
        let tag = ToTag::derive(r.headers());
        assert_eq!(tag, ToTag::derive(req(INVITE).headers()));
        let out = Response::to_request(&r, 200, "OK")
            .to_tag(tag.as_str())
            .received("198.51.100.9".parse().unwrap(), 40000)
            .header("Supported", "timer")
            .body("application/sdp", Bytes::from_static(b"v=0\r\n"))
            .build();
        let Ok(Message::Response(resp)) = Message::parse(out.clone()) else {
            panic!("unparseable response: {out:?}");
        };
        let h = resp.headers();
        assert_eq!(resp.status(), 200);
        let top = h.top_via().unwrap();
        assert_eq!(top.received(), Some("198.51.100.9"));
        assert_eq!(top.rport(), Rport::Value(40000));
        assert_eq!(top.branch(), Some("z9hG4bK776asdhds"));
        assert_eq!(h.vias().count(), 3);
        assert_eq!(h.to().unwrap().tag(), Some(tag.as_str()));
        assert_eq!(h.from().unwrap().tag(), Some("1928301774"));
        assert_eq!(h.call_id(), Ok("a84b4c76e66710@pc33.example.org"));
        assert_eq!(h.cseq().unwrap().seq, 314159);
        assert_eq!(h.get("supported"), Some("timer"));
        assert_eq!(&resp.body()[..], b"v=0\r\n");
    }

    #[test]
    fn to_tag_is_not_added_twice() {
        let r = req(
            "BYE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>;tag=2\r\nCall-ID: c\r\nCSeq: 2 BYE\r\n\r\n",
        );
        let out = Response::to_request(&r, 481, "Call/Transaction Does Not Exist")
            .to_tag("zzz")
            .build();
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.starts_with("SIP/2.0 481 Call/Transaction Does Not Exist\r\n"));
        assert!(text.contains("\r\nTo: <sip:a@b>;tag=2\r\n"));
        assert!(!text.contains("zzz"));
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
    }

    #[test]
    fn via_with_received_ipv6_has_no_brackets() {
        let r = req(
            "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP [2001:db8::9:1];received=[2001:db8::9:255];branch=z9hG4bK1;rport\r\n\r\n",
        );
        let via = r.headers().top_via().unwrap();
        assert_eq!(via.received(), Some("2001:db8::9:255"));
        let v = via.with_received("2001:db8::2".parse().unwrap(), 5062);
        assert_eq!(
            v,
            "SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bK1;received=2001:db8::2;rport=5062"
        );
    }

    #[test]
    fn request_builder_writes_a_parseable_bye() {
        let out = RequestBuilder::new(
            Method::Bye,
            "sip:alice@203.0.113.7:5060",
            ("UDP", "192.0.2.10:5060", "z9hG4bKbye1"),
            ("<sip:+919876543210@vca.example.com>", "ourtag"),
            ("<sip:alice@example.org>", Some("theirtag")),
            "a84b4c76e66710@pc33.example.org",
            2,
        )
        .route("<sip:p1.example.com;lr>")
        .route("<sip:p2.example.com;lr>")
        .build();
        let r = req(std::str::from_utf8(&out).unwrap());
        let h = r.headers();
        assert_eq!(r.method(), Method::Bye);
        assert_eq!(h.top_via().unwrap().branch(), Some("z9hG4bKbye1"));
        assert_eq!(h.max_forwards(), Ok(Some(70)));
        assert_eq!(h.routes().count(), 2);
        assert_eq!(h.from().unwrap().tag(), Some("ourtag"));
        assert_eq!(h.to().unwrap().tag(), Some("theirtag"));
        assert_eq!(
            h.cseq().unwrap(),
            CSeq {
                seq: 2,
                method: Method::Bye
            }
        );
        assert_eq!(h.content_length(), Ok(Some(0)));
    }

    #[test]
    fn caps_are_enforced() {
        let long = format!(
            "OPTIONS sip:a@b SIP/2.0\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_LINE + 1)
        );
        assert_eq!(
            Message::parse(Bytes::from(long)).err(),
            Some(ParseError::LineTooLong)
        );
        let many = format!(
            "OPTIONS sip:a@b SIP/2.0\r\n{}\r\n",
            "X: 1\r\n".repeat(MAX_HEADER_LINES + 1)
        );
        assert_eq!(
            Message::parse(Bytes::from(many)).err(),
            Some(ParseError::HeadTooLarge)
        );
    }

    const SENT_INVITE: &str = "INVITE sip:+15551234567@carrier.example SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKout1;rport\r\n\
Max-Forwards: 69\r\n\
Route: <sip:p1.example;lr>\r\n\
Route: <sip:p2.example;lr>\r\n\
From: \"VCA\" <sip:agent@vca.example>;tag=f77\r\n\
To: <sip:+15551234567@carrier.example>\r\n\
Call-ID: out-1@192.0.2.9\r\n\
CSeq: 7 INVITE\r\n\
Contact: <sip:agent@192.0.2.9:5060>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

    fn resp(s: &str) -> Response {
        match Message::parse(Bytes::copy_from_slice(s.as_bytes())) {
            Ok(Message::Response(r)) => r,
            other => panic!("not a response: {other:?}"),
        }
    }

    #[test]
    fn the_ack_of_a_non_2xx_copies_the_invite_and_the_responses_to() {
        let invite = req(SENT_INVITE);
        let busy = resp(
            "SIP/2.0 486 Busy Here\r\n\
Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKout1;rport=5060;received=192.0.2.9\r\n\
Record-Route: <sip:ignored.example;lr>\r\n\
From: \"VCA\" <sip:agent@vca.example>;tag=f77\r\n\
To: <sip:+15551234567@carrier.example>;tag=uas-9\r\n\
Call-ID: out-1@192.0.2.9\r\n\
CSeq: 7 INVITE\r\n\
Content-Length: 0\r\n\r\n",
        );
        let ack = ack_for_non_2xx(&invite, &busy).unwrap();
        assert_eq!(
            std::str::from_utf8(&ack).unwrap(),
            "ACK sip:+15551234567@carrier.example SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKout1;rport\r\n\
Max-Forwards: 69\r\n\
Route: <sip:p1.example;lr>\r\n\
Route: <sip:p2.example;lr>\r\n\
From: \"VCA\" <sip:agent@vca.example>;tag=f77\r\n\
To: <sip:+15551234567@carrier.example>;tag=uas-9\r\n\
Call-ID: out-1@192.0.2.9\r\n\
CSeq: 7 ACK\r\n\
Content-Length: 0\r\n\r\n"
        );
        let no_to = resp("SIP/2.0 486 Busy Here\r\nCSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(
            ack_for_non_2xx(&invite, &no_to),
            Err(ParseError::MissingHeader("To"))
        );
    }

    #[test]
    fn the_cancel_copies_the_invite_with_its_to_untagged() {
        let cancel = cancel_for(&req(SENT_INVITE)).unwrap();
        assert_eq!(
            std::str::from_utf8(&cancel).unwrap(),
            "CANCEL sip:+15551234567@carrier.example SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKout1;rport\r\n\
Max-Forwards: 69\r\n\
Route: <sip:p1.example;lr>\r\n\
Route: <sip:p2.example;lr>\r\n\
From: \"VCA\" <sip:agent@vca.example>;tag=f77\r\n\
To: <sip:+15551234567@carrier.example>\r\n\
Call-ID: out-1@192.0.2.9\r\n\
CSeq: 7 CANCEL\r\n\
Content-Length: 0\r\n\r\n"
        );
    }
}
