//! The Authorization header of a digest answer (RFC 3261 §20.7, §22.4; RFC 7616 §3.4):
//! the one parser of its parameters, and the match of its `uri` with the Request-URI.

use super::*;
use crate::sip::message::{Host, Scheme, Uri};

/// The username and realm an `Authorization` value names, to pick whose credentials to
/// check it against; `None` when it does not parse.
pub fn identity(authorization: &str) -> Option<(&str, &str)> {
    DigestCredentials::parse(authorization)
        .ok()
        .map(|c| (c.username, c.realm))
}

/// The parameters of an `Authorization: Digest ...` value, borrowed from it.
#[derive(Debug)]
pub(super) struct DigestCredentials<'a> {
    pub(super) username: &'a str,
    pub(super) realm: &'a str,
    pub(super) nonce: &'a str,
    pub(super) uri: &'a str,
    pub(super) response: &'a str,
    pub(super) algorithm: Option<&'a str>,
    pub(super) cnonce: &'a str,
    pub(super) nc_raw: &'a str,
    pub(super) nc: u32,
    pub(super) qop: &'a str,
}

impl<'a> DigestCredentials<'a> {
    pub(super) fn parse(value: &'a str) -> Result<Self, HeaderFault> {
        if value.len() > MAX_AUTHORIZATION_LEN {
            return Err(HeaderFault::TooLong);
        }
        let value = value.trim_matches(|c| c == ' ' || c == '\t');
        let split = value.find([' ', '\t']).ok_or(HeaderFault::NotDigest)?;
        let (scheme, rest) = value.split_at(split);
        if !scheme.eq_ignore_ascii_case("Digest") {
            return Err(HeaderFault::NotDigest);
        }
        let mut username = None;
        let mut realm = None;
        let mut nonce = None;
        let mut uri = None;
        let mut response = None;
        let mut algorithm = None;
        let mut cnonce = None;
        let mut nc = None;
        let mut qop = None;
        for param in ParamIter::new(rest) {
            let (name, val) = param?;
            let slot = match name.to_ascii_lowercase().as_str() {
                "username" => (&mut username, "username"),
                "realm" => (&mut realm, "realm"),
                "nonce" => (&mut nonce, "nonce"),
                "uri" => (&mut uri, "uri"),
                "response" => (&mut response, "response"),
                "algorithm" => (&mut algorithm, "algorithm"),
                "cnonce" => (&mut cnonce, "cnonce"),
                "nc" => (&mut nc, "nc"),
                "qop" => (&mut qop, "qop"),
                // opaque, userhash and extensions are not used by this server.
                _ => continue,
            };
            if slot.0.is_some() {
                return Err(HeaderFault::DuplicateParam(slot.1));
            }
            *slot.0 = Some(val);
        }
        let nc_raw = nc.ok_or(HeaderFault::MissingParam("nc"))?;
        let nc = parse_nc(nc_raw)?;
        Ok(DigestCredentials {
            username: username.ok_or(HeaderFault::MissingParam("username"))?,
            realm: realm.ok_or(HeaderFault::MissingParam("realm"))?,
            nonce: nonce.ok_or(HeaderFault::MissingParam("nonce"))?,
            uri: uri.ok_or(HeaderFault::MissingParam("uri"))?,
            response: response.ok_or(HeaderFault::MissingParam("response"))?,
            algorithm,
            cnonce: cnonce.ok_or(HeaderFault::MissingParam("cnonce"))?,
            nc_raw,
            nc,
            qop: qop.ok_or(HeaderFault::MissingParam("qop"))?,
        })
    }
}

pub(super) fn parse_nc(raw: &str) -> Result<u32, HeaderFault> {
    if raw.is_empty() || raw.len() > 8 || !raw.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(HeaderFault::BadNonceCount);
    }
    match u32::from_str_radix(raw, 16) {
        Ok(0) | Err(_) => Err(HeaderFault::BadNonceCount),
        Ok(n) => Ok(n),
    }
}

/// Iterates `name=value` pairs separated by commas; values are tokens or quoted-strings.
/// Quoted values are returned without quotes; a value containing a backslash escape is
/// rejected as the fields this module reads never need one.
pub(super) struct ParamIter<'a> {
    pub(super) rest: &'a str,
    pub(super) failed: bool,
}

impl<'a> ParamIter<'a> {
    pub(super) fn new(s: &'a str) -> Self {
        ParamIter {
            rest: s,
            failed: false,
        }
    }

    pub(super) fn next_param(&mut self) -> Result<Option<(&'a str, &'a str)>, HeaderFault> {
        let s = self.rest.trim_start_matches([' ', '\t', '\r', '\n', ',']);
        if s.is_empty() {
            return Ok(None);
        }
        let eq = s.find('=').ok_or(HeaderFault::Syntax)?;
        let (name, after) = s.split_at(eq);
        let name = name.trim_end_matches([' ', '\t']);
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(HeaderFault::Syntax);
        }
        let after = after
            .get(1..)
            .ok_or(HeaderFault::Syntax)?
            .trim_start_matches([' ', '\t']);
        let (value, rest) = if let Some(quoted) = after.strip_prefix('"') {
            let mut end = None;
            let mut escaped = false;
            for (i, b) in quoted.bytes().enumerate() {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    end = Some(i);
                    break;
                }
            }
            let end = end.ok_or(HeaderFault::Syntax)?;
            let value = quoted.get(..end).ok_or(HeaderFault::Syntax)?;
            if value.contains('\\') {
                return Err(HeaderFault::Syntax);
            }
            (value, quoted.get(end + 1..).ok_or(HeaderFault::Syntax)?)
        } else {
            let end = after
                .find([',', ' ', '\t', '\r', '\n'])
                .unwrap_or(after.len());
            let (v, r) = after.split_at(end);
            if v.is_empty() || !v.bytes().all(is_token_byte) {
                return Err(HeaderFault::Syntax);
            }
            (v, r)
        };
        let rest = rest.trim_start_matches([' ', '\t', '\r', '\n']);
        if !(rest.is_empty() || rest.starts_with(',')) {
            return Err(HeaderFault::Syntax);
        }
        self.rest = rest;
        Ok(Some((name, value)))
    }
}

impl<'a> Iterator for ParamIter<'a> {
    type Item = Result<(&'a str, &'a str), HeaderFault>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.next_param() {
            Ok(p) => p.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// RFC 3261 §25.1 token characters.
pub(super) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// Whether the digest `uri` designates the Request-URI: the same string, or a SIP URI with
/// the same scheme, host and port (absent port = the scheme's default) whose user part is
/// absent (as sipp sends it) or equal. URI parameters are ignored. Both are read by the
/// message parser's URI grammar (§19.1.1), the one every header's URIs go through.
pub(super) fn uri_matches(digest_uri: &str, request_uri: &str) -> bool {
    if digest_uri == request_uri {
        return true;
    }
    match (sip_target(digest_uri), sip_target(request_uri)) {
        (Some(d), Some(r)) => {
            d.scheme == r.scheme
                && d.host == r.host
                && d.port == r.port
                && d.user.is_none_or(|u| Some(u) == r.user)
        }
        _ => false,
    }
}

/// The parts of a SIP or SIPS URI that identify where a request is addressed.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct UriTarget<'a> {
    pub(super) scheme: Scheme,
    pub(super) user: Option<&'a str>,
    /// An IP literal as written by the parser, a name lower-cased (host names compare
    /// case-insensitively, §19.1.4).
    pub(super) host: String,
    pub(super) port: u16,
}

pub(super) fn sip_target(uri: &str) -> Option<UriTarget<'_>> {
    let parsed = Uri::parse(uri.trim()).ok()?;
    let default_port = match parsed.scheme() {
        Scheme::Sip => 5060,
        Scheme::Sips => 5061,
        _ => return None,
    };
    let host = match parsed.host()? {
        Host::Name(name) => name.to_ascii_lowercase(),
        ip => ip.to_string(),
    };
    Some(UriTarget {
        scheme: parsed.scheme(),
        user: parsed.user(),
        host,
        port: parsed.port().unwrap_or(default_port),
    })
}
