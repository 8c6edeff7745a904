//! The WebSocket client protocol of the agent stream (RFC 6455): the opening handshake of §4.1
//! (an HTTP/1.1 upgrade, with `Sec-WebSocket-Accept` checked) and the framing of §5 (client
//! frames masked, fragmented messages reassembled, ping answered, the close handshake of
//! §7), sans-IO.
//!
//! ```text
//!   new ──> output: GET upgrade request
//!   handle_read(response) ──> 101 + Accept checked ──> WsEvent::Open
//!   handle_read(frames)   ──> poll_event: Text, Binary, Closed, Failed (pings answered)
//!   send_text / close     ──> output: masked frames, bounded
//! ```
//!
//! The machine holds no socket: the driver writes [`WsClient::output`] to the socket and
//! [`WsClient::consume`]s what was written, and hands in what it read with
//! [`WsClient::handle_read`]. After any input drain [`WsClient::poll_event`] until `None`.
//!
//! Limits, each stopping a server from making the client hold unbounded memory: the
//! response head is at most [`MAX_RESPONSE_HEAD`] bytes; a message (all its fragments) longer
//! than `max_message_bytes` fails the connection with close code 1009 before its payload is
//! buffered; the output holds at most `max_output_bytes` of data frames, past which
//! [`WsClient::send_text`] refuses (control frames always go in).

use std::fmt::Write as _;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha1::{Digest, Sha1};

/// The GUID of RFC 6455 §1.3, appended to the key to make the accept value.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Longest response head (status line and headers) read; a longer one fails the handshake.
pub const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// Close code for a protocol error (RFC 6455 §7.4.1).
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
/// Close code for a text message that is not UTF-8 (RFC 6455 §7.4.1).
pub const CLOSE_INVALID_DATA: u16 = 1007;
/// Close code for a message over the size limit (RFC 6455 §7.4.1).
pub const CLOSE_TOO_BIG: u16 = 1009;

/// Largest reassembly buffer kept between messages.
const KEPT_MESSAGE_BYTES: usize = 64 * 1024;

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// A `ws://` or `wss://` URL split into what the connection needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsUrl {
    /// `wss://`: TLS.
    pub secure: bool,
    /// The host as written (without brackets for an IPv6 address): the TLS server name.
    pub host: String,
    pub port: u16,
    /// The authority as written, for the `Host` header.
    pub authority: String,
    /// The path and query (`/` when the URL has none).
    pub resource: String,
}

/// Why a URL cannot be connected to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad stream URL: {0}")]
pub struct BadUrl(pub &'static str);

impl WsUrl {
    /// Parses `ws://host[:port][/path][?query]` or the same with `wss://`.
    pub fn parse(url: &str) -> Result<WsUrl, BadUrl> {
        if url.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(BadUrl("contains white space or control characters"));
        }
        let (secure, rest) = if let Some(rest) = url.strip_prefix("wss://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("ws://") {
            (false, rest)
        } else {
            return Err(BadUrl("must start with ws:// or wss://"));
        };
        let rest = rest.split('#').next().unwrap_or_default();
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, resource) = rest.split_at(end);
        if authority.contains('@') {
            return Err(BadUrl("has credentials"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let close = v6.find(']').ok_or(BadUrl("unclosed IPv6 address"))?;
            let (host, after) = v6.split_at(close);
            let after = after.get(1..).unwrap_or_default();
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(BadUrl("junk after the IPv6 address")),
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(BadUrl("has no host"));
        }
        let port = match port {
            Some(p) => p.parse::<u16>().map_err(|_| BadUrl("bad port"))?,
            None if secure => 443,
            None => 80,
        };
        let resource = match resource {
            "" => "/".to_owned(),
            r if r.starts_with('?') => format!("/{r}"),
            r => r.to_owned(),
        };
        Ok(WsUrl {
            secure,
            host: host.to_owned(),
            port,
            authority: authority.to_owned(),
            resource,
        })
    }
}

/// Why the connection failed. Each is final: the client closes (with the code of
/// [`WsError::close_code`] when it can still send one) and reports nothing more.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WsError {
    /// The server answered the upgrade with another status (a redirect included).
    #[error("the upgrade was answered {status}{}", location.as_ref().map(|l| format!(" (Location: {l})")).unwrap_or_default())]
    Status {
        status: u16,
        location: Option<String>,
    },
    #[error("the upgrade response is not HTTP/1.1")]
    BadResponse,
    #[error("the upgrade response head is over {MAX_RESPONSE_HEAD} bytes")]
    ResponseTooLong,
    #[error("the upgrade response lacks {0}")]
    MissingUpgrade(&'static str),
    #[error("the upgrade response's Sec-WebSocket-Accept does not match the key")]
    BadAccept,
    #[error("the server chose {0}, which was not offered")]
    NotOffered(&'static str),
    #[error("the server broke the framing: {0}")]
    Protocol(&'static str),
    #[error("a text message is not UTF-8")]
    InvalidUtf8,
    #[error("a message of at least {bytes} bytes is over the {limit}-byte limit")]
    TooBig { bytes: u64, limit: usize },
    /// The connection ended before the handshake finished.
    #[error("the connection closed during the upgrade")]
    Eof,
}

impl WsError {
    /// The close code the client sends for it, if the connection is open.
    pub fn close_code(&self) -> Option<u16> {
        match self {
            WsError::Protocol(_) => Some(CLOSE_PROTOCOL_ERROR),
            WsError::InvalidUtf8 => Some(CLOSE_INVALID_DATA),
            WsError::TooBig { .. } => Some(CLOSE_TOO_BIG),
            _ => None,
        }
    }
}

/// What the client reports.
#[derive(Debug, PartialEq, Eq)]
pub enum WsEvent<'a> {
    /// The server accepted the upgrade: messages can be sent.
    Open,
    Text(&'a str),
    Binary(&'a [u8]),
    /// The server closed (its close frame, with its code if any). The client answered with
    /// its own close frame if it had not sent one.
    Closed {
        code: Option<u16>,
    },
    /// The connection failed; a close frame is queued when one can be sent.
    Failed(WsError),
}

/// The output is full: the server does not read fast enough.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the WebSocket output buffer is full")]
pub struct OutputFull;

/// The limits of a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsLimits {
    /// Longest message taken (all fragments).
    pub max_message_bytes: usize,
    /// Most data-frame bytes waiting to be written.
    pub max_output_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Handshake,
    Open,
    /// The client sent its close frame and waits for the server's.
    Closing,
    /// Closed or failed: nothing more is read or reported.
    Done,
}

/// One WebSocket client connection's protocol state. See the module documentation.
#[derive(Debug)]
pub struct WsClient {
    state: State,
    accept: String,
    limits: WsLimits,
    input: Vec<u8>,
    /// Bytes of `input` already taken.
    taken: usize,
    output: Vec<u8>,
    /// Bytes of `output` already written.
    written: usize,
    /// The fragments of a message being received, and its opcode.
    message: Vec<u8>,
    message_op: Option<u8>,
    /// `message` was handed out whole: empty it before the next frame.
    message_done: bool,
}

/// The opening request's parts that are not the URL.
#[derive(Debug, Clone, Copy)]
pub struct Upgrade<'a> {
    /// Sent as `Authorization: Bearer <token>`.
    pub bearer: Option<&'a str>,
    /// The 16 random bytes of `Sec-WebSocket-Key` (RFC 6455 §4.1: chosen at random).
    pub key: [u8; 16],
}

/// A bearer token that cannot be sent in a header (control characters or non-ASCII).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the auth token is not a valid header value")]
pub struct BadToken;

impl WsClient {
    /// A client whose upgrade request for `url` is in the output.
    pub fn new(url: &WsUrl, upgrade: Upgrade<'_>, limits: WsLimits) -> Result<Self, BadToken> {
        let key = STANDARD.encode(upgrade.key);
        let mut request = String::with_capacity(256);
        // Writing to a String cannot fail.
        let _ = write!(
            request,
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nUser-Agent: vca-sip\r\n",
            url.resource, url.authority
        );
        if let Some(token) = upgrade.bearer {
            if !token.bytes().all(|b| (b' '..=b'~').contains(&b)) {
                return Err(BadToken);
            }
            let _ = write!(request, "Authorization: Bearer {token}\r\n");
        }
        request.push_str("\r\n");
        Ok(WsClient {
            state: State::Handshake,
            accept: accept_of(&key),
            limits,
            input: Vec::new(),
            taken: 0,
            output: request.into_bytes(),
            written: 0,
            message: Vec::new(),
            message_op: None,
            message_done: false,
        })
    }

    /// A client that is already over: it sends and reports nothing (a connection that
    /// could not even start).
    pub fn done() -> Self {
        WsClient {
            state: State::Done,
            accept: String::new(),
            limits: WsLimits {
                max_message_bytes: 0,
                max_output_bytes: 0,
            },
            input: Vec::new(),
            taken: 0,
            output: Vec::new(),
            written: 0,
            message: Vec::new(),
            message_op: None,
            message_done: false,
        }
    }

    /// Whether the server accepted the upgrade and the client has not closed.
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// Whether the connection is over: closed both ways, or failed.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The bytes to write to the socket next.
    pub fn output(&self) -> &[u8] {
        self.output.get(self.written..).unwrap_or_default()
    }

    /// `n` bytes of [`WsClient::output`] were written.
    pub fn consume(&mut self, n: usize) {
        self.written = (self.written + n).min(self.output.len());
        if self.written == self.output.len() {
            self.output.clear();
            self.written = 0;
        }
    }

    /// Bytes read from the socket.
    pub fn handle_read(&mut self, data: &[u8]) {
        if self.state == State::Done {
            return;
        }
        if self.taken > 0 {
            self.input.drain(..self.taken);
            self.taken = 0;
        }
        self.input.extend_from_slice(data);
    }

    /// Queues one text message; refused while not open or when the output is full.
    pub fn send_text(&mut self, text: &str) -> Result<(), OutputFull> {
        if self.state != State::Open
            || self.output().len() + text.len() > self.limits.max_output_bytes
        {
            return Err(OutputFull);
        }
        self.frame(OP_TEXT, text.as_bytes());
        Ok(())
    }

    /// Starts the close handshake with `code` (RFC 6455 §7.1.2); before the upgrade
    /// finished, or after, the connection is simply over.
    pub fn close(&mut self, code: u16) {
        match self.state {
            State::Open => {
                self.frame(OP_CLOSE, &code.to_be_bytes());
                self.state = State::Closing;
            }
            State::Handshake => self.state = State::Done,
            State::Closing | State::Done => {}
        }
    }

    /// The next event; call until `None` after every input.
    pub fn poll_event(&mut self) -> Option<WsEvent<'_>> {
        match self.state {
            State::Handshake => self.read_head(),
            State::Open | State::Closing => self.read_frame(),
            State::Done => None,
        }
    }

    /// The end of the input came (the socket reached EOF): during the upgrade, a failure.
    pub fn handle_eof(&mut self) -> Option<WsError> {
        match self.state {
            State::Handshake => {
                self.state = State::Done;
                Some(WsError::Eof)
            }
            _ => {
                self.state = State::Done;
                None
            }
        }
    }

    fn fail(&mut self, error: WsError) -> Option<WsEvent<'static>> {
        if let Some(code) = error.close_code()
            && self.state == State::Open
        {
            self.frame(OP_CLOSE, &code.to_be_bytes());
        }
        self.state = State::Done;
        Some(WsEvent::Failed(error))
    }

    fn read_head(&mut self) -> Option<WsEvent<'_>> {
        let pending = self.input.get(self.taken..).unwrap_or_default();
        let Some(end) = find_head_end(pending) else {
            if pending.len() > MAX_RESPONSE_HEAD {
                return self.fail(WsError::ResponseTooLong);
            }
            return None;
        };
        if end > MAX_RESPONSE_HEAD {
            return self.fail(WsError::ResponseTooLong);
        }
        let head = pending.get(..end).unwrap_or_default();
        let verdict = check_response(head, &self.accept);
        self.taken += end;
        match verdict {
            Ok(()) => {
                self.state = State::Open;
                Some(WsEvent::Open)
            }
            Err(e) => self.fail(e),
        }
    }

    fn read_frame(&mut self) -> Option<WsEvent<'_>> {
        if std::mem::take(&mut self.message_done) {
            self.message.clear();
            if self.message.capacity() > KEPT_MESSAGE_BYTES {
                self.message.shrink_to(KEPT_MESSAGE_BYTES);
            }
        }
        loop {
            let pending = self.input.get(self.taken..).unwrap_or_default();
            let header = match parse_header(pending) {
                Ok(Some(h)) => h,
                Ok(None) => return None,
                Err(e) => return self.fail(e),
            };
            let fin = header.fin;
            let op = header.opcode;
            let control = op >= OP_CLOSE;
            // Check the size before the payload is buffered.
            let so_far = if control {
                0
            } else {
                self.message.len() as u64
            };
            if !control && so_far + header.len > self.limits.max_message_bytes as u64 {
                let bytes = so_far + header.len;
                let limit = self.limits.max_message_bytes;
                return self.fail(WsError::TooBig { bytes, limit });
            }
            match (op, self.message_op) {
                (OP_CONTINUATION, None) => {
                    return self.fail(WsError::Protocol("continuation without a message"));
                }
                (OP_TEXT | OP_BINARY, Some(_)) => {
                    return self.fail(WsError::Protocol("new message inside a fragmented one"));
                }
                _ => {}
            }
            let Ok(len) = usize::try_from(header.len) else {
                return self.fail(WsError::Protocol("frame length"));
            };
            let start = self.taken + header.header_len;
            if self.input.len() < start + len {
                return None;
            }
            self.taken = start + len;
            let payload = start..start + len;
            match op {
                OP_PING => {
                    let data: Vec<u8> = self.input.get(payload).unwrap_or_default().to_vec();
                    if self.state == State::Open {
                        self.frame(OP_PONG, &data);
                    }
                }
                OP_PONG => {}
                OP_CLOSE => {
                    let body = self.input.get(payload).unwrap_or_default();
                    let code = match body {
                        [] => None,
                        [_] => return self.fail(WsError::Protocol("close payload of 1 byte")),
                        [a, b, reason @ ..] => {
                            if std::str::from_utf8(reason).is_err() {
                                return self.fail(WsError::InvalidUtf8);
                            }
                            Some(u16::from_be_bytes([*a, *b]))
                        }
                    };
                    if self.state == State::Open {
                        // Echo the code (RFC 6455 §5.5.1).
                        let echo = code.map(u16::to_be_bytes);
                        self.frame(OP_CLOSE, echo.as_ref().map_or(&[][..], |c| &c[..]));
                    }
                    self.state = State::Done;
                    return Some(WsEvent::Closed { code });
                }
                _ if fin && self.message_op.is_none() => {
                    // A whole message in one frame: handed out from the input as it is.
                    return self.deliver(op, true, payload);
                }
                _ => {
                    let data = self.input.get(payload).unwrap_or_default();
                    self.message.extend_from_slice(data);
                    if self.message_op.is_none() {
                        self.message_op = Some(op);
                    }
                    if fin {
                        let op = self.message_op.take().unwrap_or(OP_BINARY);
                        return self.deliver(op, false, 0..0);
                    }
                }
            }
        }
    }

    /// Hands out a message from the input (`range`) or from the reassembly buffer.
    fn deliver(
        &mut self,
        op: u8,
        in_input: bool,
        range: std::ops::Range<usize>,
    ) -> Option<WsEvent<'_>> {
        if !in_input {
            // Emptied at the next frame, once the message handed out is no longer borrowed.
            self.message_done = true;
        }
        let valid = op != OP_TEXT || {
            let data = if in_input {
                self.input.get(range.clone()).unwrap_or_default()
            } else {
                &self.message[..]
            };
            std::str::from_utf8(data).is_ok()
        };
        if !valid {
            return self.fail(WsError::InvalidUtf8);
        }
        let data = if in_input {
            self.input.get(range).unwrap_or_default()
        } else {
            &self.message[..]
        };
        Some(match op {
            OP_TEXT => WsEvent::Text(std::str::from_utf8(data).unwrap_or_default()),
            _ => WsEvent::Binary(data),
        })
    }

    /// Appends one masked frame (RFC 6455 §5.2, §5.3) to the output.
    fn frame(&mut self, op: u8, payload: &[u8]) {
        let mask: [u8; 4] = rand::random();
        self.output.push(0x80 | op);
        let len = payload.len();
        if len < 126 {
            self.output.push(0x80 | len as u8);
        } else if let Ok(short) = u16::try_from(len) {
            self.output.push(0x80 | 126);
            self.output.extend_from_slice(&short.to_be_bytes());
        } else {
            self.output.push(0x80 | 127);
            self.output.extend_from_slice(&(len as u64).to_be_bytes());
        }
        self.output.extend_from_slice(&mask);
        self.output
            .extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    }
}

/// The `Sec-WebSocket-Accept` value of a key (RFC 6455 §4.2.2 item 5.4).
pub fn accept_of(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(ACCEPT_GUID.as_bytes());
    STANDARD.encode(sha.finalize())
}

/// The length of the response head, through its blank line, once all of it is in.
fn find_head_end(data: &[u8]) -> Option<usize> {
    data.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
}

fn header<'a>(headers: &'a [httparse::Header<'a>], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .map(str::trim)
}

/// Checks a response head: 101, `Upgrade: websocket`, `Connection: upgrade`, the accept
/// value, and no extension or subprotocol (none was offered).
fn check_response(head: &[u8], accept: &str) -> Result<(), WsError> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(WsError::BadResponse),
    }
    if response.version != Some(1) {
        return Err(WsError::BadResponse);
    }
    let status = response.code.ok_or(WsError::BadResponse)?;
    if status != 101 {
        let location = header(response.headers, "location").map(str::to_owned);
        return Err(WsError::Status { status, location });
    }
    let headers = response.headers;
    if !header(headers, "upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")) {
        return Err(WsError::MissingUpgrade("Upgrade: websocket"));
    }
    let connection = header(headers, "connection").unwrap_or_default();
    if !connection
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
    {
        return Err(WsError::MissingUpgrade("Connection: Upgrade"));
    }
    if header(headers, "sec-websocket-accept") != Some(accept) {
        return Err(WsError::BadAccept);
    }
    if header(headers, "sec-websocket-extensions").is_some_and(|v| !v.is_empty()) {
        return Err(WsError::NotOffered("an extension"));
    }
    if header(headers, "sec-websocket-protocol").is_some_and(|v| !v.is_empty()) {
        return Err(WsError::NotOffered("a subprotocol"));
    }
    Ok(())
}

struct FrameHeader {
    fin: bool,
    opcode: u8,
    len: u64,
    header_len: usize,
}

/// Reads a server frame's header (RFC 6455 §5.2); `None` until all of it is in.
fn parse_header(data: &[u8]) -> Result<Option<FrameHeader>, WsError> {
    let (Some(&b0), Some(&b1)) = (data.first(), data.get(1)) else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(WsError::Protocol("reserved bits set"));
    }
    let opcode = b0 & 0x0f;
    let fin = b0 & 0x80 != 0;
    if !matches!(
        opcode,
        OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG
    ) {
        return Err(WsError::Protocol("unknown opcode"));
    }
    if b1 & 0x80 != 0 {
        return Err(WsError::Protocol("masked server frame"));
    }
    let (len, header_len) = match b1 & 0x7f {
        126 => {
            let Some(b) = data.get(2..4) else {
                return Ok(None);
            };
            (u64::from(u16::from_be_bytes([b[0], b[1]])), 4)
        }
        127 => {
            let Some(b) = data.get(2..10) else {
                return Ok(None);
            };
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            let len = u64::from_be_bytes(a);
            if len >> 63 != 0 {
                return Err(WsError::Protocol("frame length with the top bit set"));
            }
            (len, 10)
        }
        n => (u64::from(n), 2),
    };
    if opcode >= OP_CLOSE && (!fin || len > 125) {
        return Err(WsError::Protocol("fragmented or long control frame"));
    }
    Ok(Some(FrameHeader {
        fin,
        opcode,
        len,
        header_len,
    }))
}

#[cfg(test)]
mod tests;
