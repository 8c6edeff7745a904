//! The header index (RFC 3261 §7.3, §7.3.1): one slice per header line, folding undone,
//! and the typed accessors that parse a header value when asked.

use super::*;
use bytes::{Bytes, BytesMut};
use bytestring::ByteString;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Span {
    pub(super) start: u32,
    pub(super) end: u32,
}

impl Span {
    pub(super) fn new(start: usize, end: usize) -> Span {
        // Header offsets lie within leading line breaks plus MAX_HEAD; only an input over
        // 4 GiB could clamp, and a clamped span slices to nothing rather than panicking.
        Span {
            start: clamp_u32(start),
            end: clamp_u32(end),
        }
    }
    pub(super) fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

pub(super) fn clamp_u32(v: usize) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    pub(super) name: Name,
    pub(super) name_span: Span,
    pub(super) value: Span,
}

/// The indexed header section of a message: its start line and one slice per header line.
///
/// A `Headers` exists even when the start line or a header value is malformed, which is
/// what lets a UAS answer 400 to a request it cannot fully parse (see
/// [`Headers::can_answer`]).
#[derive(Debug, Clone)]
pub struct Headers {
    pub(super) buf: Bytes,
    /// The start line and header section (`buf` up to the body) when they are UTF-8,
    /// checked once so that each value is a slice rather than another check.
    pub(super) text: Option<ByteString>,
    pub(super) start: Span,
    pub(super) entries: Vec<Entry>,
    /// Offset of the first body octet.
    pub(super) body_start: usize,
    pub(super) bad_line: bool,
    /// Index of the first entry of each recognised name (`u16::MAX` when absent).
    pub(super) first: [u16; NAMES],
    /// Bit per recognised name that occurs on more than one line.
    pub(super) repeated: u32,
}

/// Number of [`Name`] variants.
pub(super) const NAMES: usize = Name::Other as usize + 1;

pub(super) fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

pub(super) fn trim_span(buf: &[u8], mut start: usize, mut end: usize) -> (usize, usize) {
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
pub(super) const CLASS: [u8; 256] = {
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
pub(super) const TOKEN: u8 = 1;
pub(super) const WS_CTL: u8 = 2;
pub(super) const HOST: u8 = 4;
/// Host octets that make a host a name rather than an IPv4 address.
pub(super) const HOST_NAME: u8 = 8;
/// Octets that cannot appear in a URI.
pub(super) const NOT_URI: u8 = 16;

pub(super) fn has_ws_or_ctl(s: &str) -> bool {
    s.bytes().any(|b| CLASS[usize::from(b)] & WS_CTL != 0)
}

pub(super) fn is_token_byte(b: u8) -> bool {
    CLASS[usize::from(b)] & TOKEN != 0
}

/// Position of an ASCII octet in a string (cheaper than a char pattern search).
pub(super) fn find_b(s: &str, b: u8) -> Option<usize> {
    find_byte(s.as_bytes(), 0, b)
}

/// `split_once` on an ASCII octet.
pub(super) fn split_byte(s: &str, b: u8) -> Option<(&str, &str)> {
    let i = find_b(s, b)?;
    Some((s.get(..i)?, s.get(i + 1..)?))
}

/// Position of the first `a` or `b`.
pub(super) fn first_of(s: &[u8], a: u8, b: u8) -> Option<usize> {
    let first_a = find_byte(s, 0, a);
    let before = s.get(..first_a.unwrap_or(s.len())).unwrap_or_default();
    find_byte(before, 0, b).or(first_a)
}

pub(super) fn first_ws(s: &str) -> Option<usize> {
    s.bytes().position(is_ws)
}

pub(super) fn is_token(s: &str) -> bool {
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

    pub(super) fn slice(&self, s: Span) -> &[u8] {
        self.buf.get(s.range()).unwrap_or_default()
    }

    /// The text of a span of the start line or header section; `None` when not UTF-8.
    pub(super) fn str_at(&self, s: Span) -> Option<&str> {
        match &self.text {
            Some(text) => text.get(s.range()),
            None => std::str::from_utf8(self.slice(s)).ok(),
        }
    }

    /// `text`, a slice of this header section, as shared octets of the message (no copy);
    /// any other text is copied.
    pub(super) fn share(&self, text: &str) -> ByteString {
        let start = (text.as_ptr() as usize).wrapping_sub(self.buf.as_ptr() as usize);
        start
            .checked_add(text.len())
            .filter(|&end| end <= self.buf.len())
            .and_then(|end| ByteString::try_from(self.buf.slice(start..end)).ok())
            .unwrap_or_else(|| ByteString::from(text))
    }

    pub(super) fn value_str(&self, e: &Entry) -> Result<&str, ParseError> {
        self.str_at(e.value)
            .ok_or(ParseError::BadHeader(e.name_str()))
    }

    /// Entries of one recognised header, starting at its first line and stopping after it
    /// when it occurs once.
    pub(super) fn named(&self, n: Name) -> impl Iterator<Item = &Entry> + '_ {
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
    pub(super) fn single(&self, n: Name) -> Result<Option<&str>, ParseError> {
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

    pub(super) fn required(&self, n: Name) -> Result<&str, ParseError> {
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

    pub(super) fn list<'a, T: 'a>(
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
pub(super) fn unfold(buf: &Bytes, entries: &[Entry]) -> Bytes {
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
    pub(super) fn name_str(&self) -> &'static str {
        match self.name {
            Name::Other => "header",
            n => n.as_str(),
        }
    }
}

/// Splits a header value at commas that are outside quoted strings and angle brackets,
/// trimming each element. Empty elements are yielded (as "") so that callers reject them.
pub(super) fn split_list(v: &str) -> impl Iterator<Item = &str> {
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

pub(super) fn parse_digits<T: TryFrom<u64>>(s: &str, max_digits: usize) -> Option<T> {
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

pub(super) fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    parse_digits(s, 19)
}

pub(super) fn parse_u32(s: &str) -> Option<u32> {
    if s.is_empty() {
        return None;
    }
    parse_digits(s, 10)
}

pub(super) fn parse_token(s: &str) -> Result<&str, ()> {
    if is_token(s) { Ok(s) } else { Err(()) }
}
