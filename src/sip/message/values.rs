//! Typed header values (RFC 3261 §20): Via (with RFC 3581 rport), name-addr, CSeq and
//! media types, borrowing from the message.

use super::*;
use bytes::{BufMut, BytesMut};
use std::net::IpAddr;

/// One Via value (§20.42, §18.2.2, RFC 3581).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via<'a> {
    pub(super) raw: &'a str,
    /// Protocol version, normally "2.0".
    pub version: &'a str,
    /// Transport token as sent (UDP, TCP, TLS, SCTP, WS, WSS or an extension).
    pub transport: &'a str,
    /// sent-by host.
    pub host: Host<'a>,
    /// sent-by port.
    pub port: Option<u16>,
    /// sent-by as received (`host[:port]`).
    pub(super) sent_by: &'a str,
    pub(super) params: Params<'a>,
    /// The first `branch`, `received` and `rport` parameters, found while parsing.
    pub(super) branch: Option<Option<&'a str>>,
    pub(super) received: Option<Option<&'a str>>,
    pub(super) rport: Option<Option<&'a str>>,
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
pub(super) type ViaParts<'a> = (&'a str, &'a str, &'a str, Host<'a>, Option<u16>, &'a str);

pub(super) fn parse_via_sent_by(v: &str) -> Result<ViaParts<'_>, ()> {
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
    pub(super) fn parse(v: &'a str) -> Result<Via<'a>, ParseError> {
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

pub(super) fn write_via_with_received(
    out: &mut BytesMut,
    via: &Via<'_>,
    source: IpAddr,
    port: u16,
) {
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
pub(super) struct ByteWriter<'a>(pub(super) &'a mut BytesMut);

impl std::fmt::Write for ByteWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.put_slice(s.as_bytes());
        Ok(())
    }
}

/// A name-addr or addr-spec with header parameters (From, To, Contact, Route, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddr<'a> {
    pub(super) raw: &'a str,
    /// The value up to its header parameters (display name and URI).
    pub(super) addr: &'a str,
    pub(super) display: Option<&'a str>,
    pub(super) uri: Uri<'a>,
    pub(super) params: Params<'a>,
}

impl<'a> NameAddr<'a> {
    pub(super) fn parse(v: &'a str) -> Result<NameAddr<'a>, ()> {
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
    pub(super) fn parse(head: &Headers, v: &str) -> Result<CSeq, ParseError> {
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
    pub(super) params: Params<'a>,
}

impl<'a> MediaType<'a> {
    pub(super) fn parse(v: &'a str) -> Result<MediaType<'a>, ()> {
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
