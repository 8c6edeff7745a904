//! Hosts, parameters and URIs (RFC 3261 §19.1, §25.1; RFC 3966 tel; RFC 5118 IPv6):
//! the one URI parser that the Request-URI and every header's URIs go through.

use super::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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
pub(super) fn parse_hostport(s: &str) -> Result<(Host<'_>, Option<u16>), ()> {
    let s = s.trim_ascii();
    match ipv4_port(s.as_bytes()) {
        Some(parsed) => Ok(parsed),
        None => parse_hostport_general(s),
    }
}

pub(super) fn parse_hostport_general(s: &str) -> Result<(Host<'_>, Option<u16>), ()> {
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
pub(super) fn ipv4_port(s: &[u8]) -> Option<(Host<'static>, Option<u16>)> {
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
pub(super) fn parse_host_name(s: &str) -> Result<(Host<'_>, &str), ()> {
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
pub(super) fn dotted_quad(name: &str) -> Option<[u8; 4]> {
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
pub struct Params<'a>(pub(super) &'a str);

/// One parameter: name, and value when it has one (quotes kept).
pub type Param<'a> = (&'a str, Option<&'a str>);

impl<'a> Params<'a> {
    /// Validates a parameter list (the text after the first `;`, or empty).
    pub(super) fn parse(s: &'a str) -> Result<Params<'a>, ()> {
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

    pub(super) fn raw_items(&self) -> impl Iterator<Item = &'a str> + use<'a> {
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
    pub(super) fn get_plain(&self, name: &str) -> Option<Option<&'a str>> {
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
pub(super) fn plain_params_valid(s: &[u8]) -> bool {
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

pub(super) fn split_param(item: &str) -> Param<'_> {
    match split_byte(item, b'=') {
        Some((n, v)) => (n.trim_ascii(), Some(v.trim_ascii())),
        None => (item.trim_ascii(), None),
    }
}

/// Given text starting with `"`, the offset just past the closing quote.
pub(super) fn quoted_end(s: &str) -> Option<usize> {
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
    pub(super) raw: &'a str,
    pub(super) l: UriLayout,
}

/// Where the parts of a URI lie in its text (octet offsets), so that a request can keep its
/// parsed Request-URI without borrowing from itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct UriLayout {
    pub(super) scheme: Scheme,
    pub(super) user: Option<Part>,
    pub(super) password: Option<Part>,
    pub(super) host: Option<HostAt>,
    pub(super) port: Option<u16>,
    /// tel: the global or local number.
    pub(super) number: Option<Part>,
    pub(super) params: Part,
    pub(super) headers: Option<Part>,
}

pub(super) const OPAQUE: UriLayout = UriLayout {
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
pub(super) struct Part(pub(super) u16, u16);

impl Part {
    /// The offsets of `piece`, a slice of `raw` (at most `u16::MAX` octets long).
    pub(super) fn of(raw: &str, piece: &str) -> Part {
        let start = piece.as_ptr().addr().wrapping_sub(raw.as_ptr().addr());
        let clamp = |v: usize| u16::try_from(v).unwrap_or(u16::MAX);
        Part(clamp(start), clamp(start + piece.len()))
    }
    pub(super) fn get(self, raw: &str) -> &str {
        raw.get(usize::from(self.0)..usize::from(self.1))
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HostAt {
    V4(Ipv4Addr),
    V6(Ipv6Addr),
    Name(Part),
}

impl<'a> Uri<'a> {
    /// Parses a URI as it appears in a Request-URI or inside `<>`.
    pub fn parse(raw: &'a str) -> Result<Uri<'a>, ParseError> {
        Self::parse_inner(raw).map_err(|()| ParseError::BadRequestUri)
    }

    pub(super) fn parse_inner(raw: &'a str) -> Result<Uri<'a>, ()> {
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
