//! Requests and responses (RFC 3261 §7.1, §7.2, §18.3): start-line parsing, body bounds
//! and the request and response views.

use super::*;
use bytes::Bytes;

/// A parsed SIP message.
#[derive(Debug, Clone)]
pub enum Message {
    Request(Request),
    Response(Response),
}

/// A request (§7.1).
#[derive(Debug, Clone)]
pub struct Request {
    pub(super) head: Headers,
    pub(super) method: Span,
    pub(super) uri: Span,
    pub(super) uri_layout: UriLayout,
    pub(super) body: Bytes,
}

/// A response (§7.2).
#[derive(Debug, Clone)]
pub struct Response {
    pub(super) head: Headers,
    pub(super) status: u16,
    pub(super) reason: Span,
    pub(super) body: Bytes,
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
pub(super) fn body_of(head: &Headers) -> Result<Bytes, ParseError> {
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

pub(super) fn check_version(v: &[u8]) -> Result<(), ParseError> {
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

pub(super) fn parse_request_line(head: &Headers) -> Result<(Span, Span, UriLayout), ParseError> {
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

pub(super) fn parse_status_line(line: &[u8], base: usize) -> Result<(u16, Span), ParseError> {
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
