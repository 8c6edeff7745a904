//! SIP message framing on stream transports (RFC 3261 §18.3, RFC 5626 §3.5.1 keepalives):
//! a sans-IO decoder that turns TCP/TLS bytes into whole messages.
//!
//! The decoder does no IO. The connection task appends what it reads with
//! [`StreamDecoder::handle_bytes`] (or reads straight into [`StreamDecoder::read_buf`]) and
//! then calls [`StreamDecoder::poll_frame`] until it returns `Ok(None)`:
//!
//! ```text
//!   socket --bytes--> handle_bytes --> poll_frame --> Frame::Message(Bytes) --> triage
//!                                               \--> Frame::Ping            --> send "\r\n"
//!                                               \--> Err(FrameError)        --> reply? close
//! ```
//!
//! On a stream Content-Length is required (§20.14): without it the end of the message is
//! unknowable, so the decoder reports an error meaning "answer 400, then close". Every
//! error leaves the decoder unusable; the connection must be closed, which is what keeps a
//! bad Content-Length from desynchronising the stream.
//!
//! Datagrams (UDP, and one WebSocket message each) need no framing: [`Message::parse`]
//! applies the datagram rule of §18.3 (a body shorter than Content-Length is an error,
//! octets past it are ignored, and without Content-Length the body is the rest).
//!
//! [`Message::parse`]: crate::sip::message::Message::parse

use bytes::{Bytes, BytesMut};

use crate::sip::message::{MAX_HEAD, MAX_LINE, ParseError, find_byte};

/// Abuse limits of a stream decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest header line: stops one endless line from holding memory (§21.5.7).
    pub max_line: usize,
    /// Largest header section: stops a header flood that never ends with an empty line.
    pub max_head: usize,
    /// Largest whole message: stops a huge Content-Length from making the server buffer it.
    pub max_message: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: MAX_LINE,
            max_head: MAX_HEAD,
            max_message: 64 * 1024,
        }
    }
}

/// What the decoder found in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// One whole message, header section and exactly Content-Length body octets.
    Message(Bytes),
    /// A CRLFCRLF keepalive ping (RFC 5626 §3.5.1): answer with a single CRLF pong.
    Ping,
}

/// Why the stream cannot be decoded further. The connection must be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameErrorKind {
    /// No Content-Length on a stream (§18.3): 400, then close.
    #[error("missing Content-Length on a stream transport")]
    MissingContentLength,
    /// Content-Length not a number, negative, conflicting, or absurd: 400, then close.
    #[error("malformed Content-Length")]
    BadContentLength,
    /// A header line over [`Limits::max_line`]: close.
    #[error("header line too long")]
    LineTooLong,
    /// A header section over [`Limits::max_head`]: close.
    #[error("header section too large")]
    HeadTooLarge,
    /// Header section plus Content-Length over [`Limits::max_message`]: 513, then close.
    #[error("message too large")]
    MessageTooLarge,
}

/// A framing error, with the complete header section when one was received so that a
/// response can be addressed (see [`crate::sip::triage::triage_frame_error`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct FrameError {
    pub kind: FrameErrorKind,
    pub head: Option<Bytes>,
}

impl FrameErrorKind {
    /// The status to answer before closing, when the header section can address one.
    pub fn status(&self) -> Option<u16> {
        match self {
            FrameErrorKind::MissingContentLength | FrameErrorKind::BadContentLength => Some(400),
            FrameErrorKind::MessageTooLarge => Some(513),
            FrameErrorKind::LineTooLong | FrameErrorKind::HeadTooLarge => None,
        }
    }

    /// The matching parse error, for reason phrases.
    pub fn parse_error(&self) -> ParseError {
        match self {
            FrameErrorKind::MissingContentLength => ParseError::MissingHeader("Content-Length"),
            FrameErrorKind::BadContentLength => ParseError::BadHeader("Content-Length"),
            FrameErrorKind::LineTooLong => ParseError::LineTooLong,
            FrameErrorKind::HeadTooLarge | FrameErrorKind::MessageTooLarge => {
                ParseError::HeadTooLarge
            }
        }
    }
}

/// A sans-IO decoder for one stream connection.
#[derive(Debug)]
pub struct StreamDecoder {
    buf: BytesMut,
    limits: Limits,
    /// How far the search for the end of the header section has got (no rescans when a
    /// peer trickles bytes).
    scanned: usize,
    line_start: usize,
    /// Header section end and total message length, once known.
    pending: Option<usize>,
    failed: bool,
}

impl StreamDecoder {
    /// A decoder with the given limits.
    pub fn new(limits: Limits) -> StreamDecoder {
        StreamDecoder {
            buf: BytesMut::new(),
            limits,
            scanned: 0,
            line_start: 0,
            pending: None,
            failed: false,
        }
    }

    /// Appends bytes read from the connection.
    pub fn handle_bytes(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The receive buffer, for reading from the socket without a copy (e.g. tokio's
    /// `read_buf`). Call [`StreamDecoder::poll_frame`] after each read.
    pub fn read_buf(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Octets received but not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Call after every read until it returns `Ok(None)` (more bytes needed). After an
    /// error the decoder returns that no more frames; close the connection.
    pub fn poll_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if self.failed {
            return Ok(None);
        }
        if self.pending.is_none() && self.scanned == 0 {
            // Between messages: keepalives and stray line breaks (§7.5).
            loop {
                if self.buf.starts_with(b"\r\n\r\n") {
                    let _ = self.buf.split_to(4);
                    return Ok(Some(Frame::Ping));
                }
                match self.buf.first() {
                    Some(b'\r') if self.buf.len() < 4 && b"\r\n\r\n".starts_with(&self.buf[..]) => {
                        return Ok(None);
                    }
                    Some(b'\r' | b'\n') => {
                        let _ = self.buf.split_to(1);
                    }
                    Some(_) => break,
                    None => return Ok(None),
                }
            }
        }
        let total = match self.pending {
            Some(t) => t,
            None => match self.scan_head() {
                Ok(Some(t)) => t,
                Ok(None) => return Ok(None),
                Err(e) => {
                    self.failed = true;
                    return Err(e);
                }
            },
        };
        if self.buf.len() < total {
            self.pending = Some(total);
            return Ok(None);
        }
        self.pending = None;
        self.scanned = 0;
        self.line_start = 0;
        Ok(Some(Frame::Message(self.buf.split_to(total).freeze())))
    }

    /// Looks for the end of the header section; returns the whole message length.
    fn scan_head(&mut self) -> Result<Option<usize>, FrameError> {
        let fail = |kind, head| FrameError { kind, head };
        let mut i = self.scanned;
        let head_end = loop {
            let Some(nl) = find_byte(&self.buf, i, b'\n') else {
                let end = self.buf.len();
                self.scanned = end;
                if end - self.line_start > self.limits.max_line {
                    return Err(fail(FrameErrorKind::LineTooLong, None));
                }
                if end > self.limits.max_head {
                    return Err(fail(FrameErrorKind::HeadTooLarge, None));
                }
                return Ok(None);
            };
            i = nl + 1;
            let line_len = i - 1 - self.line_start;
            if line_len > self.limits.max_line {
                return Err(fail(FrameErrorKind::LineTooLong, None));
            }
            let line = self.buf.get(self.line_start..i - 1).unwrap_or_default();
            self.line_start = i;
            if line.is_empty() || line == b"\r" {
                break i;
            }
            if i > self.limits.max_head {
                return Err(fail(FrameErrorKind::HeadTooLarge, None));
            }
        };
        if head_end > self.limits.max_head {
            return Err(fail(FrameErrorKind::HeadTooLarge, None));
        }
        let head = self.buf.get(..head_end).unwrap_or_default();
        let kind = match content_length(head) {
            // A length no 32-bit peer could mean (4294967328 wraps to 32) is malformed,
            // not merely large (§20.14).
            Ok(Some(n)) if n > u64::from(u32::MAX) => FrameErrorKind::BadContentLength,
            Ok(Some(n)) => match usize::try_from(n) {
                Ok(n) if n <= self.limits.max_message.saturating_sub(head_end) => {
                    return Ok(Some(head_end + n));
                }
                _ => FrameErrorKind::MessageTooLarge,
            },
            Ok(None) => FrameErrorKind::MissingContentLength,
            Err(()) => FrameErrorKind::BadContentLength,
        };
        let head = Bytes::copy_from_slice(head);
        Err(fail(kind, Some(head)))
    }
}

/// Content-Length of a header section (long or compact name, folding allowed); several
/// lines must agree. Without allocating: this runs before the message is accepted.
fn content_length(head: &[u8]) -> Result<Option<u64>, ()> {
    let mut found: Option<u64> = None;
    let mut lines = head.split(|&b| b == b'\n').skip(1).peekable();
    while let Some(line) = lines.next() {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line.get(..colon).unwrap_or_default().trim_ascii();
        if !(name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l")) {
            continue;
        }
        let mut digits = line.get(colon + 1..).unwrap_or_default().trim_ascii();
        while let Some(cont) = lines.next_if(|l| matches!(l.first(), Some(b' ' | b'\t'))) {
            let cont = cont.trim_ascii();
            if !cont.is_empty() {
                if !digits.is_empty() {
                    return Err(());
                }
                digits = cont;
            }
        }
        if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
            return Err(());
        }
        let n = digits
            .iter()
            .try_fold(0u64, |n, &d| {
                n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
            })
            .ok_or(())?;
        if found.is_some_and(|f| f != n) {
            return Err(());
        }
        found = Some(n);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nContent-Length: 3\r\n\r\nabc";

    fn decoder() -> StreamDecoder {
        StreamDecoder::new(Limits::default())
    }

    #[test]
    fn frames_back_to_back_messages_byte_by_byte() {
        let mut d = decoder();
        let stream = [b"\r\n".as_slice(), OPTIONS, OPTIONS].concat();
        let mut frames = Vec::new();
        for b in &stream {
            d.handle_bytes(std::slice::from_ref(b));
            while let Some(f) = d.poll_frame().unwrap() {
                frames.push(f);
            }
        }
        assert_eq!(
            frames,
            vec![
                Frame::Message(Bytes::from_static(OPTIONS)),
                Frame::Message(Bytes::from_static(OPTIONS))
            ]
        );
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn crlfcrlf_is_a_ping() {
        let mut d = decoder();
        d.handle_bytes(b"\r\n\r");
        assert_eq!(d.poll_frame(), Ok(None));
        d.handle_bytes(b"\n");
        assert_eq!(d.poll_frame(), Ok(Some(Frame::Ping)));
        d.handle_bytes(OPTIONS);
        assert!(matches!(d.poll_frame(), Ok(Some(Frame::Message(_)))));
    }

    #[test]
    fn missing_content_length_is_400_then_close() {
        let mut d = decoder();
        d.handle_bytes(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h\r\n\r\n");
        let e = d.poll_frame().unwrap_err();
        assert_eq!(e.kind, FrameErrorKind::MissingContentLength);
        assert_eq!(e.kind.status(), Some(400));
        assert!(e.head.is_some());
        d.handle_bytes(OPTIONS);
        assert_eq!(
            d.poll_frame(),
            Ok(None),
            "a failed decoder yields nothing more"
        );
    }

    #[test]
    fn huge_content_length_is_rejected_without_buffering() {
        let mut d = decoder();
        d.handle_bytes(b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 4294967328\r\n\r\nv=0");
        let e = d.poll_frame().unwrap_err();
        assert_eq!(e.kind, FrameErrorKind::BadContentLength);
        assert!(d.read_buf().capacity() < 1024);
        let mut d = decoder();
        d.handle_bytes(b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 70000\r\n\r\nv=0");
        assert_eq!(
            d.poll_frame().unwrap_err().kind,
            FrameErrorKind::MessageTooLarge
        );
        let mut d = decoder();
        d.handle_bytes(b"INVITE sip:a@b SIP/2.0\r\nContent-Length: -999\r\n\r\n");
        assert_eq!(
            d.poll_frame().unwrap_err().kind,
            FrameErrorKind::BadContentLength
        );
    }

    #[test]
    fn caps_on_lines_and_head() {
        let mut d = decoder();
        d.handle_bytes(b"OPTIONS sip:a@b SIP/2.0\r\nX: ");
        d.handle_bytes(&vec![b'a'; MAX_LINE + 1]);
        assert_eq!(
            d.poll_frame().unwrap_err().kind,
            FrameErrorKind::LineTooLong
        );
        let mut d = decoder();
        d.handle_bytes(b"OPTIONS sip:a@b SIP/2.0\r\n");
        for _ in 0..2000 {
            d.handle_bytes(b"X-Filler: 0123456789\r\n");
        }
        assert_eq!(
            d.poll_frame().unwrap_err().kind,
            FrameErrorKind::HeadTooLarge
        );
    }

    #[test]
    fn short_body_waits() {
        let mut d = decoder();
        d.handle_bytes(&OPTIONS[..OPTIONS.len() - 1]);
        assert_eq!(d.poll_frame(), Ok(None));
        d.handle_bytes(b"c");
        assert!(matches!(d.poll_frame(), Ok(Some(Frame::Message(_)))));
    }
}
