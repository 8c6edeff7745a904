//! Client side of SIP digest authentication (RFC 3261 §22.2, RFC 7616, RFC 8760, RFC 2617
//! compatibility): answering a 401 (`WWW-Authenticate` -> `Authorization`) or a 407
//! (`Proxy-Authenticate` -> `Proxy-Authorization`).
//!
//! It shares the server side's parameter parser and hashes. No IO, no clock, no randomness:
//! the caller passes the client nonce (`cnonce`) it drew. One [`DigestClient`] follows one
//! request chain (an INVITE and its retries) and keeps its nonce-counts.
//!
//! Retry policy, so that wrong credentials never loop: each challenge (per header kind and
//! realm) is answered once. A further challenge for the same realm is answered again only
//! when it says `stale=true` with a nonce not yet answered (the old nonce expired, the
//! password was right); any other repeat means the credentials were refused.

use super::{DigestAlgorithm, HeaderFault, ParamIter, push_quoted};
use crate::sip::message::Response;

/// Why a challenge was not answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientAuthError {
    /// The response is not a 401 or 407.
    #[error("status {0} is not a digest challenge")]
    NotAChallenge(u16),
    /// No challenge of the response is a Digest with an algorithm vca-sip speaks.
    #[error("no usable digest challenge")]
    NoUsableChallenge,
    /// The same realm challenged again without `stale=true`: the credentials are wrong.
    #[error("the credentials were refused for realm {0:?}")]
    Refused(String),
}

/// Which header pair a challenge came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChallengeKind {
    /// 401: `WWW-Authenticate`, answered in `Authorization`.
    Www,
    /// 407: `Proxy-Authenticate`, answered in `Proxy-Authorization`.
    Proxy,
}

impl ChallengeKind {
    /// The header that carries the challenge.
    pub fn challenge_header(self) -> &'static str {
        match self {
            ChallengeKind::Www => "WWW-Authenticate",
            ChallengeKind::Proxy => "Proxy-Authenticate",
        }
    }

    /// The header that carries the answer.
    pub fn answer_header(self) -> &'static str {
        match self {
            ChallengeKind::Www => "Authorization",
            ChallengeKind::Proxy => "Proxy-Authorization",
        }
    }
}

/// One parsed `Digest` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The realm.
    pub realm: String,
    /// The server nonce.
    pub nonce: String,
    /// The algorithm (MD5 when the challenge names none, RFC 2617).
    pub algorithm: DigestAlgorithm,
    /// The server offers `qop=auth`; without it the RFC 2617 response without qop is used.
    pub qop_auth: bool,
    /// `stale=true`: the previous nonce expired, the credentials were right.
    pub stale: bool,
    /// The opaque value, returned as is.
    pub opaque: Option<String>,
}

impl Challenge {
    /// Parses a `WWW-Authenticate` or `Proxy-Authenticate` value. `Ok(None)` for a scheme
    /// other than Digest or an algorithm vca-sip does not speak (e.g. `-sess`, SHA-512-256).
    pub fn parse(value: &str) -> Result<Option<Challenge>, HeaderFault> {
        let value = value.trim_matches(|c| c == ' ' || c == '\t');
        let Some(split) = value.find([' ', '\t']) else {
            return Ok(None);
        };
        let (scheme, rest) = value.split_at(split);
        if !scheme.eq_ignore_ascii_case("Digest") {
            return Ok(None);
        }
        let (mut realm, mut nonce, mut algorithm, mut qop, mut stale, mut opaque) =
            (None, None, None, None, false, None);
        for param in ParamIter::new(rest) {
            let (name, val) = param?;
            match name.to_ascii_lowercase().as_str() {
                "realm" => realm = Some(val),
                "nonce" => nonce = Some(val),
                "algorithm" => algorithm = Some(val),
                "qop" => qop = Some(val),
                "stale" => stale = val.eq_ignore_ascii_case("true"),
                "opaque" => opaque = Some(val),
                _ => {}
            }
        }
        let algorithm = match algorithm {
            None => DigestAlgorithm::Md5,
            Some(token) => match DigestAlgorithm::from_token(token) {
                Some(a) => a,
                None => return Ok(None),
            },
        };
        let qop_auth = qop.is_some_and(|q| {
            q.split(',')
                .any(|t| t.trim_matches([' ', '\t']).eq_ignore_ascii_case("auth"))
        });
        Ok(Some(Challenge {
            realm: realm.ok_or(HeaderFault::MissingParam("realm"))?.to_owned(),
            nonce: nonce.ok_or(HeaderFault::MissingParam("nonce"))?.to_owned(),
            algorithm,
            qop_auth,
            stale,
            opaque: opaque.map(str::to_owned),
        }))
    }
}

/// A header to add to the retried request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthHeader {
    /// `Authorization` or `Proxy-Authorization`.
    pub name: &'static str,
    /// The credentials.
    pub value: String,
}

/// A challenge answered, kept to count nonces and to spot a refusal.
#[derive(Debug, Clone)]
struct Answered {
    kind: ChallengeKind,
    challenge: Challenge,
    /// The last nonce-count sent on `challenge.nonce`.
    nc: u32,
}

/// Digest credentials of one user, answering the challenges of one request chain.
#[derive(Debug, Clone)]
pub struct DigestClient {
    username: String,
    password: String,
    answered: Vec<Answered>,
}

impl DigestClient {
    /// A client for `username` with `password`.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
            answered: Vec::new(),
        }
    }

    /// Answers a 401 or 407 for a request with `method` and Request-URI `uri`: one header
    /// per realm challenged (a proxy and the UAS may both challenge). Picks SHA-256 over MD5
    /// when a realm offers both (RFC 8760 §2.4). `cnonce` is a fresh client nonce.
    pub fn answer(
        &mut self,
        response: &Response,
        method: &str,
        uri: &str,
        cnonce: &str,
    ) -> Result<Vec<AuthHeader>, ClientAuthError> {
        let kind = match response.status() {
            401 => ChallengeKind::Www,
            407 => ChallengeKind::Proxy,
            status => return Err(ClientAuthError::NotAChallenge(status)),
        };
        // Per realm, the best challenge: SHA-256 first.
        let mut best: Vec<Challenge> = Vec::new();
        for value in response.headers().get_all(kind.challenge_header()) {
            let Ok(Some(challenge)) = Challenge::parse(value) else {
                continue;
            };
            match best.iter_mut().find(|c| c.realm == challenge.realm) {
                Some(kept) => {
                    if kept.algorithm == DigestAlgorithm::Md5
                        && challenge.algorithm == DigestAlgorithm::Sha256
                    {
                        *kept = challenge;
                    }
                }
                None => best.push(challenge),
            }
        }
        if best.is_empty() {
            return Err(ClientAuthError::NoUsableChallenge);
        }
        let mut headers = Vec::with_capacity(best.len());
        for challenge in best {
            if let Some(previous) = self
                .answered
                .iter()
                .find(|a| a.kind == kind && a.challenge.realm == challenge.realm)
                && !(challenge.stale && challenge.nonce != previous.challenge.nonce)
            {
                return Err(ClientAuthError::Refused(challenge.realm));
            }
            self.answered
                .retain(|a| !(a.kind == kind && a.challenge.realm == challenge.realm));
            self.answered.push(Answered {
                kind,
                challenge,
                nc: 0,
            });
            let index = self.answered.len() - 1;
            if let Some(header) = self.authorize_at(index, method, uri, cnonce) {
                headers.push(header);
            }
        }
        Ok(headers)
    }

    /// Credentials for a further request (`method`, `uri`) on the nonces already answered,
    /// with the next nonce-count each: what a UAC sends on a new request to the same
    /// server without waiting to be challenged again (RFC 7616 §3.4.5).
    pub fn authorize(&mut self, method: &str, uri: &str, cnonce: &str) -> Vec<AuthHeader> {
        (0..self.answered.len())
            .filter_map(|index| self.authorize_at(index, method, uri, cnonce))
            .collect()
    }

    fn authorize_at(
        &mut self,
        index: usize,
        method: &str,
        uri: &str,
        cnonce: &str,
    ) -> Option<AuthHeader> {
        let (username, password) = (&self.username, &self.password);
        let answered = self.answered.get_mut(index)?;
        answered.nc = answered.nc.wrapping_add(1);
        let c = &answered.challenge;
        let alg = c.algorithm;
        let ha1 = alg.ha1(username, &c.realm, password);
        let ha2 = alg.hex(format!("{method}:{uri}").as_bytes());
        let nc = format!("{:08x}", answered.nc);
        let response = if c.qop_auth {
            alg.hex(format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", c.nonce).as_bytes())
        } else {
            alg.hex(format!("{ha1}:{}:{ha2}", c.nonce).as_bytes())
        };
        let mut value = String::from("Digest username=");
        push_quoted(&mut value, username);
        value.push_str(", realm=");
        push_quoted(&mut value, &c.realm);
        value.push_str(", nonce=");
        push_quoted(&mut value, &c.nonce);
        value.push_str(", uri=");
        push_quoted(&mut value, uri);
        value.push_str(", response=\"");
        value.push_str(&response);
        value.push_str("\", algorithm=");
        value.push_str(alg.token());
        if c.qop_auth {
            value.push_str(", qop=auth, nc=");
            value.push_str(&nc);
            value.push_str(", cnonce=");
            push_quoted(&mut value, cnonce);
        }
        if let Some(opaque) = &c.opaque {
            value.push_str(", opaque=");
            push_quoted(&mut value, opaque);
        }
        Some(AuthHeader {
            name: answered.kind.answer_header(),
            value,
        })
    }
}

#[cfg(test)]
mod tests;
