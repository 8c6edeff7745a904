//! Serialisation of what vca-sip sends (RFC 3261 §8.2.6, §8.2.7, §9.1, §12.2.1.1,
//! §17.1.1.3): responses built from a request, in-dialog requests, ACK and CANCEL, To-tags.

use super::*;
use bytes::{BufMut, Bytes, BytesMut};
use std::net::IpAddr;

/// Builds a response from the header section of a request. Nothing is allocated until
/// [`ResponseBuilder::write`] or [`ResponseBuilder::build`], which reserve once.
#[derive(Debug)]
pub struct ResponseBuilder<'a> {
    pub(super) req: &'a Headers,
    pub(super) status: u16,
    pub(super) reason: &'a str,
    pub(super) to_tag: Option<&'a str>,
    pub(super) received: Option<(IpAddr, u16)>,
    pub(super) extra: Vec<(&'a str, &'a str)>,
    pub(super) body: Option<(&'a str, Bytes)>,
}

pub(super) const COPIED: [Name; 5] = [Name::Via, Name::From, Name::To, Name::CallId, Name::CSeq];

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
pub(super) fn write_top_via(out: &mut BytesMut, value: &[u8], ip: IpAddr, port: u16) {
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

pub(super) fn put_header(out: &mut BytesMut, name: &str, value: &str) {
    out.put_slice(name.as_bytes());
    out.put_slice(b": ");
    out.put_slice(value.as_bytes());
    out.put_slice(b"\r\n");
}

pub(super) fn write_body(out: &mut BytesMut, body: Option<&(&str, Bytes)>) {
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
    pub(super) method: Method,
    pub(super) uri: &'a str,
    pub(super) via: (&'a str, &'a str, &'a str),
    pub(super) from: (&'a str, &'a str),
    pub(super) to: (&'a str, Option<&'a str>),
    pub(super) call_id: &'a str,
    pub(super) cseq: u32,
    pub(super) max_forwards: u8,
    pub(super) routes: Vec<&'a str>,
    pub(super) extra: Vec<(&'a str, &'a str)>,
    pub(super) body: Option<(&'a str, Bytes)>,
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
pub(super) fn invite_derived(
    invite: &Request,
    method: Method,
    to: &str,
) -> Result<Bytes, ParseError> {
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
pub struct ToTag(pub(super) [u8; 16]);

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
