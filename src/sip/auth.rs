//! SIP digest authentication without IO (RFC 3261 §22, RFC 7616 qop=auth, RFC 8760 SHA-256).
//!
//! This module builds `WWW-Authenticate` challenges, verifies `Authorization` answers and
//! tracks failures for lockout; its `client` part answers the challenges of the servers
//! vca-sip calls ([`DigestClient`]). It does no network or storage IO and never reads a clock:
//! the caller passes the time (Unix seconds, see [`unix_seconds`]), the server key, and a
//! lookup that maps a username to its stored HA1.
//!
//! ```text
//!   INVITE (no Authorization) ──► DigestAuth::challenge ──► 401 + WWW-Authenticate (one per algorithm)
//!   INVITE (Authorization)    ──► DigestAuth::verify ─┬─► Authenticated  → serve the call
//!                                                     ├─► Challenge{stale} → fresh 401
//!                                                     └─► Refuse           → 400
//! ```
//!
//! Nonces are stateless: `hex(timestamp) || hex(HMAC-SHA-256(key, timestamp | source |
//! Call-ID | realm))`, truncated to 128 bits, so any node holding the same key can verify
//! them and a nonce only works from the source and on the Call-ID it was issued for. The
//! only per-nonce state is the highest nonce-count accepted, kept in a bounded table until
//! the nonce expires, so that a captured request cannot be replayed.
//!
//! Unknown users and wrong passwords take the same path: the response is always computed
//! (against a dummy HA1 when the user is unknown) and compared in constant time.

#![forbid(unsafe_code)]

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::sip::message::{Host, Scheme, Uri};

mod client;

pub use crate::kinds::DigestAlgorithm;
pub use client::{AuthHeader, Challenge, ChallengeKind, ClientAuthError, DigestClient};

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the HMAC kept in a nonce (128 bits).
const NONCE_MAC_LEN: usize = 16;
/// Hex characters of the timestamp part of a nonce (a big-endian `u64`).
const NONCE_TS_HEX: usize = 16;
/// Total length of a nonce in characters.
const NONCE_LEN: usize = NONCE_TS_HEX + 2 * NONCE_MAC_LEN;
/// Longest `Authorization` header value parsed; longer ones are refused unparsed.
const MAX_AUTHORIZATION_LEN: usize = 4096;
/// Shortest server key accepted.
const MIN_KEY_LEN: usize = 16;
/// Bytes of a username kept as a lockout key (longer names are truncated).
const MAX_LOCKOUT_USERNAME: usize = 64;

/// Seconds since the Unix epoch of `t` (0 for times before the epoch).
///
/// The one place a `SystemTime` becomes the `u64` that the rest of this module takes.
pub fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Why a request was not authenticated. Each variant maps to the reply next to it:
/// see [`AuthError::status_code`], [`AuthError::stale`] and [`AuthError::counts_as_failure`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The `Authorization` value could not be parsed.
    #[error("malformed Authorization header: {0}")]
    Malformed(HeaderFault),
    /// The answer names another realm (for example another tenant's).
    #[error("realm does not match the challenge")]
    WrongRealm,
    /// The answer uses an algorithm this realm does not offer (RFC 8760 §2.4).
    #[error("algorithm {0:?} was not offered")]
    AlgorithmNotOffered(String),
    /// The answer does not use `qop=auth`.
    #[error("qop other than auth")]
    UnsupportedQop,
    /// The digest uri matches neither the Request-URI nor its host and port.
    #[error("digest uri does not match the Request-URI")]
    UriMismatch,
    /// The nonce was not issued by this server for this source, Call-ID and realm.
    #[error("nonce is invalid or bound to another source or Call-ID")]
    NonceInvalid,
    /// The nonce is older than the configured lifetime.
    #[error("nonce expired")]
    NonceExpired,
    /// The nonce is dated further in the future than the allowed clock skew.
    #[error("nonce dated in the future")]
    NonceFromFuture,
    /// The nonce-count went past the configured maximum; the client needs a fresh nonce.
    #[error("nonce-count limit reached")]
    NonceCountExhausted,
    /// The nonce-count did not increase: a replayed or reordered request.
    #[error("nonce-count replayed or not increasing")]
    Replay,
    /// Wrong password or unknown user: deliberately indistinguishable.
    #[error("credentials rejected")]
    BadCredentials,
    /// The (username, source) pair or the source is locked out.
    #[error("locked out")]
    LockedOut,
    /// The replay table is full of live nonces; failing closed rather than forgetting one.
    #[error("replay table full")]
    ReplayTableFull,
}

/// What is wrong with an unparsable `Authorization` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderFault {
    /// The scheme is not `Digest`.
    #[error("scheme is not Digest")]
    NotDigest,
    /// The value is longer than this module parses.
    #[error("value too long")]
    TooLong,
    /// Bad parameter syntax (unterminated quote, missing `=`, stray characters).
    #[error("syntax error")]
    Syntax,
    /// A parameter appears twice.
    #[error("duplicate parameter {0}")]
    DuplicateParam(&'static str),
    /// A required parameter is absent.
    #[error("missing parameter {0}")]
    MissingParam(&'static str),
    /// `nc` is not 1 to 8 hex digits, or is zero.
    #[error("bad nonce-count")]
    BadNonceCount,
}

impl AuthError {
    /// Whether the fresh challenge carries `stale=true` (the client may retry with the same
    /// credentials and a new nonce without asking the user).
    pub fn stale(&self) -> bool {
        matches!(
            self,
            AuthError::NonceExpired
                | AuthError::NonceFromFuture
                | AuthError::NonceCountExhausted
                | AuthError::ReplayTableFull
        )
    }

    /// Whether this failure counts toward a lockout: wrong credentials, a forged or
    /// misbound nonce, or a replay.
    pub fn counts_as_failure(&self) -> bool {
        matches!(
            self,
            AuthError::BadCredentials | AuthError::NonceInvalid | AuthError::Replay
        )
    }

    /// The SIP status to answer with: 400 for an unparsable header, otherwise 401 with a
    /// fresh challenge.
    pub fn status_code(&self) -> u16 {
        match self {
            AuthError::Malformed(_) => 400,
            _ => 401,
        }
    }
}

/// Errors building a [`DigestAuth`] or a [`NonceKey`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No algorithm configured: nothing could be offered.
    #[error("no digest algorithm configured")]
    NoAlgorithms,
    /// The server key is shorter than 16 bytes.
    #[error("nonce key shorter than {MIN_KEY_LEN} bytes")]
    KeyTooShort,
    /// The realm is empty or contains a control character.
    #[error("invalid realm")]
    BadRealm,
}

/// What the caller does with a request after [`DigestAuth::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Credentials are valid: admit the request as this user.
    Authenticated {
        /// The authenticated username.
        username: String,
        /// The algorithm the client used.
        algorithm: DigestAlgorithm,
    },
    /// Answer 401 with [`DigestAuth::challenge`]`(.., stale)`.
    Challenge {
        /// Whether the new challenge says `stale=true`.
        stale: bool,
        /// Why, for logs and metrics; never sent to the peer.
        reason: AuthError,
    },
    /// Answer 400 Bad Request: the header cannot be understood.
    Refuse {
        /// Why, for logs and metrics.
        reason: AuthError,
    },
}

/// The result of [`DigestAuth::verify`]: the verdict and any lockouts it triggered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// What to answer.
    pub verdict: Verdict,
    /// Lockouts that started with this request, to log as security events and count.
    pub events: Vec<LockoutEvent>,
    /// The nonce-count an authenticated request used up (`None` unless authenticated).
    pub nonce_use: Option<NonceUse>,
}

/// A nonce-count that an authenticated request used up.
///
/// When the request is then refused before anything acts on it (a stateless 503 for
/// overload, a 405), hand it back with [`DigestAuth::give_back`]: the client's
/// retransmission of the same request then authenticates again and gets the same answer,
/// instead of reading as a replay. A count is only ever handed back while it is still the
/// highest accepted on its nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonceUse {
    nonce: Box<str>,
    nc: u32,
    /// The highest count accepted on the nonce before (0: none).
    previous: u32,
}

/// The server key under which nonces are signed. All nodes (and restarts) must share it.
#[derive(Clone)]
pub struct NonceKey(Vec<u8>);

impl NonceKey {
    /// A key from random bytes (at least 16; 32 recommended).
    pub fn new(bytes: &[u8]) -> Result<Self, ConfigError> {
        if bytes.len() < MIN_KEY_LEN {
            return Err(ConfigError::KeyTooShort);
        }
        Ok(NonceKey(bytes.to_vec()))
    }
}

impl std::fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NonceKey(..)")
    }
}

/// Settings of one realm's digest authentication.
#[derive(Debug, Clone)]
pub struct DigestConfig {
    /// The realm challenged for, e.g. the trunk's host name.
    pub realm: String,
    /// Algorithms offered, one challenge each, in this order (RFC 8760 §2.4: the preferred
    /// first). Debian's sipp reads only the first challenge and speaks only MD5.
    pub algorithms: Vec<DigestAlgorithm>,
    /// Nonce lifetime in seconds (default 30): an older nonce gets `stale=true`.
    pub nonce_ttl_secs: u64,
    /// How far in the future a nonce may be dated (default 3 s), for clock skew between nodes.
    pub max_future_skew_secs: u64,
    /// Highest nonce-count accepted on one nonce (default 255); beyond it `stale=true`.
    pub max_nonce_count: u32,
    /// Nonces whose highest nonce-count is remembered at once (default 1,048,576, for up to
    /// ~35,000 authenticated calls/s with 30 s nonces; ~200 bytes each when used). Only
    /// authenticated requests add entries and each lives at most the nonce lifetime, so this
    /// bounds memory against a flood; size it above `calls per second × nonce_ttl_secs`
    /// (262,144 made every call past the 262,144th in 30 s at 9,000 calls/s retry).
    /// When full of live entries, new nonces are refused with `stale=true` rather than
    /// remembered nowhere (which would allow a replay).
    pub replay_capacity: usize,
}

impl DigestConfig {
    /// Defaults for `realm`: SHA-256 then MD5, 30 s nonces, 3 s skew, nc ≤ 255.
    pub fn new(realm: impl Into<String>) -> Self {
        DigestConfig {
            realm: realm.into(),
            algorithms: vec![DigestAlgorithm::Sha256, DigestAlgorithm::Md5],
            nonce_ttl_secs: 30,
            max_future_skew_secs: 3,
            max_nonce_count: 255,
            replay_capacity: 1 << 20,
        }
    }
}

/// The request facts verification depends on, taken from the transport and the parsed message.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    /// The request method, e.g. `INVITE`.
    pub method: &'a str,
    /// The Request-URI as received.
    pub request_uri: &'a str,
    /// The source address the request came from (after Via received/rport processing).
    pub source: IpAddr,
    /// The Call-ID header value.
    pub call_id: &'a str,
    /// The source lies in an allow-listed trunk CIDR: never locked out.
    pub allow_listed: bool,
}

impl std::fmt::Debug for DigestAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigestAuth")
            .field("config", &self.config)
            .field("replay_entries", &self.replay.len())
            .finish_non_exhaustive()
    }
}

/// Digest authentication for one realm: challenges, verification and replay tracking.
pub struct DigestAuth {
    config: DigestConfig,
    /// HMAC keyed with the server key, cloned for each nonce.
    mac: HmacSha256,
    /// Per algorithm, an HA1 no user has, used for unknown users so timing does not differ.
    dummy_md5: String,
    dummy_sha256: String,
    replay: ReplayTable,
}

impl DigestAuth {
    /// Digest authentication for `config.realm`, signing nonces with `key`.
    pub fn new(config: DigestConfig, key: NonceKey) -> Result<Self, ConfigError> {
        if config.algorithms.is_empty() {
            return Err(ConfigError::NoAlgorithms);
        }
        if config.realm.is_empty() || config.realm.chars().any(char::is_control) {
            return Err(ConfigError::BadRealm);
        }
        let mut seed = HmacSha256::new_from_slice(&key.0).map_err(|_| ConfigError::KeyTooShort)?;
        seed.update(b"vca-sip dummy ha1");
        let seed = hex::encode(seed.finalize().into_bytes());
        let dummy_md5 = DigestAlgorithm::Md5.ha1(&seed, &config.realm, &seed);
        let dummy_sha256 = DigestAlgorithm::Sha256.ha1(&seed, &config.realm, &seed);
        let replay = ReplayTable::new(config.replay_capacity);
        let mac = HmacSha256::new_from_slice(&key.0).map_err(|_| ConfigError::KeyTooShort)?;
        Ok(DigestAuth {
            config,
            mac,
            dummy_md5,
            dummy_sha256,
            replay,
        })
    }

    /// The realm this instance challenges for.
    pub fn realm(&self) -> &str {
        &self.config.realm
    }

    /// `WWW-Authenticate` header values for a 401 to a request from `source` with `call_id`
    /// at `now` (Unix seconds): one per configured algorithm, in the configured order, all
    /// carrying the same nonce.
    pub fn challenge(&self, now: u64, source: IpAddr, call_id: &str, stale: bool) -> Vec<String> {
        let nonce = self.make_nonce(now, source, call_id);
        let mut realm = String::with_capacity(self.config.realm.len() + 2);
        push_quoted(&mut realm, &self.config.realm);
        self.config
            .algorithms
            .iter()
            .map(|alg| {
                let mut v = format!(
                    "Digest realm={realm}, nonce=\"{nonce}\", algorithm={}, qop=\"auth\"",
                    alg.token()
                );
                if stale {
                    v.push_str(", stale=true");
                }
                v
            })
            .collect()
    }

    /// Verifies the `Authorization` value `authorization` of `req` at `now` (Unix seconds).
    ///
    /// `lookup(username, algorithm)` returns the user's stored HA1 (lower-case hex) in this
    /// realm, or `None` for an unknown user; both take the same path. Failures that count are
    /// recorded in `lockout`, and a locked pair or source is answered exactly like a wrong
    /// password. Call [`DigestAuth::challenge`] with the returned `stale` for a
    /// [`Verdict::Challenge`].
    pub fn verify<F>(
        &mut self,
        now: u64,
        req: &RequestInfo<'_>,
        authorization: &str,
        lockout: &mut Lockout,
        lookup: F,
    ) -> Outcome
    where
        F: FnOnce(&str, DigestAlgorithm) -> Option<String>,
    {
        let creds = match DigestCredentials::parse(authorization) {
            Ok(c) => c,
            Err(fault) => {
                return Outcome {
                    verdict: Verdict::Refuse {
                        reason: AuthError::Malformed(fault),
                    },
                    events: Vec::new(),
                    nonce_use: None,
                };
            }
        };
        let locked = lockout.is_locked(now, creds.username, req.source, req.allow_listed);
        let result = self.check(now, req, &creds, lookup);
        let mut events = Vec::new();
        let mut nonce_use = None;
        let verdict = match result {
            Ok(_) if locked => challenge_for(AuthError::LockedOut),
            Ok((algorithm, used)) => {
                lockout.record_success(creds.username, req.source);
                nonce_use = Some(used);
                Verdict::Authenticated {
                    username: creds.username.to_owned(),
                    algorithm,
                }
            }
            Err(reason) => {
                if reason.counts_as_failure() && !locked {
                    events =
                        lockout.record_failure(now, creds.username, req.source, req.allow_listed);
                }
                if locked {
                    challenge_for(AuthError::LockedOut)
                } else {
                    challenge_for(reason)
                }
            }
        };
        Outcome {
            verdict,
            events,
            nonce_use,
        }
    }

    /// Hands back a nonce-count used by a request that was then refused before anything
    /// acted on it (see [`NonceUse`]). Does nothing once a higher count was accepted.
    pub fn give_back(&mut self, used: &NonceUse) {
        self.replay.give_back(used);
    }

    fn check<F>(
        &mut self,
        now: u64,
        req: &RequestInfo<'_>,
        creds: &DigestCredentials<'_>,
        lookup: F,
    ) -> Result<(DigestAlgorithm, NonceUse), AuthError>
    where
        F: FnOnce(&str, DigestAlgorithm) -> Option<String>,
    {
        if creds.realm != self.config.realm {
            return Err(AuthError::WrongRealm);
        }
        // RFC 7616 §3.4: no algorithm parameter means MD5.
        let algorithm = match creds.algorithm {
            None => DigestAlgorithm::Md5,
            Some(token) => DigestAlgorithm::from_token(token)
                .ok_or_else(|| AuthError::AlgorithmNotOffered(truncate(token, 32).to_owned()))?,
        };
        if !self.config.algorithms.contains(&algorithm) {
            return Err(AuthError::AlgorithmNotOffered(algorithm.token().to_owned()));
        }
        if !creds.qop.eq_ignore_ascii_case("auth") {
            return Err(AuthError::UnsupportedQop);
        }
        if !uri_matches(creds.uri, req.request_uri) {
            return Err(AuthError::UriMismatch);
        }
        let issued = self.check_nonce(now, creds.nonce, req.source, req.call_id)?;
        if creds.nc > self.config.max_nonce_count {
            return Err(AuthError::NonceCountExhausted);
        }
        let known = lookup(creds.username, algorithm);
        let ha1 = match (&known, algorithm) {
            (Some(h), _) => h.as_str(),
            (None, DigestAlgorithm::Md5) => self.dummy_md5.as_str(),
            (None, DigestAlgorithm::Sha256) => self.dummy_sha256.as_str(),
        };
        let expected = response(
            algorithm,
            ha1,
            creds.nonce,
            creds.nc_raw,
            creds.cnonce,
            creds.qop,
            req.method,
            creds.uri,
        );
        let matches = ct_eq_hex(expected.as_bytes(), creds.response.as_bytes());
        if !(matches && known.is_some()) {
            return Err(AuthError::BadCredentials);
        }
        // Only a correct answer advances the nonce-count, so forged requests cannot burn a
        // legitimate client's counts.
        let previous = self.replay.observe(
            now,
            creds.nonce,
            creds.nc,
            issued + self.config.nonce_ttl_secs,
        )?;
        let used = NonceUse {
            nonce: creds.nonce.into(),
            nc: creds.nc,
            previous,
        };
        Ok((algorithm, used))
    }

    fn nonce_mac(&self, ts: u64, source: IpAddr, call_id: &str) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(&ts.to_be_bytes());
        match source {
            IpAddr::V4(v4) => {
                mac.update(&[4]);
                mac.update(&v4.octets());
            }
            IpAddr::V6(v6) => {
                mac.update(&[6]);
                mac.update(&v6.octets());
            }
        }
        mac.update(&(call_id.len() as u64).to_be_bytes());
        mac.update(call_id.as_bytes());
        mac.update(&(self.config.realm.len() as u64).to_be_bytes());
        mac.update(self.config.realm.as_bytes());
        mac
    }

    fn make_nonce(&self, now: u64, source: IpAddr, call_id: &str) -> String {
        let tag = self.nonce_mac(now, source, call_id).finalize().into_bytes();
        let mut nonce = String::with_capacity(NONCE_LEN);
        let _ = write!(nonce, "{now:016x}");
        nonce.push_str(&hex::encode(tag.get(..NONCE_MAC_LEN).unwrap_or_default()));
        nonce
    }

    /// Checks a nonce's signature and age; returns its timestamp.
    fn check_nonce(
        &self,
        now: u64,
        nonce: &str,
        source: IpAddr,
        call_id: &str,
    ) -> Result<u64, AuthError> {
        if nonce.len() != NONCE_LEN {
            return Err(AuthError::NonceInvalid);
        }
        let (ts_hex, mac_hex) = match (nonce.get(..NONCE_TS_HEX), nonce.get(NONCE_TS_HEX..)) {
            (Some(a), Some(b)) => (a, b),
            _ => return Err(AuthError::NonceInvalid),
        };
        let mut ts_bytes = [0u8; 8];
        hex::decode_to_slice(ts_hex, &mut ts_bytes).map_err(|_| AuthError::NonceInvalid)?;
        let mut tag = [0u8; NONCE_MAC_LEN];
        hex::decode_to_slice(mac_hex, &mut tag).map_err(|_| AuthError::NonceInvalid)?;
        let ts = u64::from_be_bytes(ts_bytes);
        self.nonce_mac(ts, source, call_id)
            .verify_truncated_left(&tag)
            .map_err(|_| AuthError::NonceInvalid)?;
        if ts > now.saturating_add(self.config.max_future_skew_secs) {
            return Err(AuthError::NonceFromFuture);
        }
        if now.saturating_sub(ts) > self.config.nonce_ttl_secs {
            return Err(AuthError::NonceExpired);
        }
        Ok(ts)
    }
}

fn challenge_for(reason: AuthError) -> Verdict {
    Verdict::Challenge {
        stale: reason.stale(),
        reason,
    }
}

fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

/// Appends `value` as a quoted-string (RFC 3261 §25.1).
fn push_quoted(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// response = H(HA1:nonce:nc:cnonce:qop:H(method:uri)) (RFC 7616 §3.4.1, qop=auth).
#[allow(clippy::too_many_arguments)]
fn response(
    alg: DigestAlgorithm,
    ha1: &str,
    nonce: &str,
    nc: &str,
    cnonce: &str,
    qop: &str,
    method: &str,
    uri: &str,
) -> String {
    let ha2 = alg.hex(format!("{method}:{uri}").as_bytes());
    let ha1 = ha1.to_ascii_lowercase();
    let qop = qop.to_ascii_lowercase();
    alg.hex(format!("{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}").as_bytes())
}

/// Constant-time comparison of an expected lower-case hex digest with a received one
/// (case-insensitive). Lengths are not secret and are compared directly.
fn ct_eq_hex(expected: &[u8], received: &[u8]) -> bool {
    if expected.len() != received.len() {
        return false;
    }
    let mut lowered = [0u8; 64];
    let Some(buf) = lowered.get_mut(..received.len()) else {
        return false;
    };
    for (dst, src) in buf.iter_mut().zip(received) {
        *dst = src.to_ascii_lowercase();
    }
    bool::from(expected.ct_eq(buf))
}

/// The username and realm an `Authorization` value names, to pick whose credentials to
/// check it against; `None` when it does not parse.
pub fn identity(authorization: &str) -> Option<(&str, &str)> {
    DigestCredentials::parse(authorization)
        .ok()
        .map(|c| (c.username, c.realm))
}

/// The parameters of an `Authorization: Digest ...` value, borrowed from it.
#[derive(Debug)]
struct DigestCredentials<'a> {
    username: &'a str,
    realm: &'a str,
    nonce: &'a str,
    uri: &'a str,
    response: &'a str,
    algorithm: Option<&'a str>,
    cnonce: &'a str,
    nc_raw: &'a str,
    nc: u32,
    qop: &'a str,
}

impl<'a> DigestCredentials<'a> {
    fn parse(value: &'a str) -> Result<Self, HeaderFault> {
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

fn parse_nc(raw: &str) -> Result<u32, HeaderFault> {
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
struct ParamIter<'a> {
    rest: &'a str,
    failed: bool,
}

impl<'a> ParamIter<'a> {
    fn new(s: &'a str) -> Self {
        ParamIter {
            rest: s,
            failed: false,
        }
    }

    fn next_param(&mut self) -> Result<Option<(&'a str, &'a str)>, HeaderFault> {
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
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// Whether the digest `uri` designates the Request-URI: the same string, or a SIP URI with
/// the same scheme, host and port (absent port = the scheme's default) whose user part is
/// absent (as sipp sends it) or equal. URI parameters are ignored. Both are read by the
/// message parser's URI grammar (§19.1.1), the one every header's URIs go through.
fn uri_matches(digest_uri: &str, request_uri: &str) -> bool {
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
struct UriTarget<'a> {
    scheme: Scheme,
    user: Option<&'a str>,
    /// An IP literal as written by the parser, a name lower-cased (host names compare
    /// case-insensitively, §19.1.4).
    host: String,
    port: u16,
}

fn sip_target(uri: &str) -> Option<UriTarget<'_>> {
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

/// Highest nonce-count accepted per live nonce. Bounded: entries leave when their nonce
/// expires, and a full table refuses new nonces instead of growing.
#[derive(Debug)]
struct ReplayTable {
    capacity: usize,
    /// nonce -> (highest nc accepted, expiry in Unix seconds)
    entries: HashMap<Box<str>, (u32, u64)>,
    /// Insertion order with expiry, to purge expired entries in amortised O(1).
    order: VecDeque<(u64, Box<str>)>,
}

impl ReplayTable {
    fn new(capacity: usize) -> Self {
        ReplayTable {
            capacity,
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn purge(&mut self, now: u64) {
        while let Some((expires, _)) = self.order.front() {
            if *expires >= now {
                break;
            }
            if let Some((_, nonce)) = self.order.pop_front() {
                self.entries.remove(&nonce);
            }
        }
    }

    /// Records `nc` for `nonce`, which is valid until `expires`; fails unless `nc` is
    /// greater than every count accepted before on this nonce. Returns the highest count
    /// accepted before (0 for a nonce not seen yet).
    fn observe(&mut self, now: u64, nonce: &str, nc: u32, expires: u64) -> Result<u32, AuthError> {
        self.purge(now);
        if let Some(entry) = self.entries.get_mut(nonce) {
            if nc <= entry.0 {
                return Err(AuthError::Replay);
            }
            return Ok(std::mem::replace(&mut entry.0, nc));
        }
        if self.entries.len() >= self.capacity {
            return Err(AuthError::ReplayTableFull);
        }
        let key: Box<str> = nonce.into();
        self.entries.insert(key.clone(), (nc, expires));
        self.order.push_back((expires, key));
        Ok(0)
    }

    /// Undoes an [`observe`](Self::observe) while its count is still the highest.
    fn give_back(&mut self, used: &NonceUse) {
        if let Some(entry) = self.entries.get_mut(&*used.nonce)
            && entry.0 == used.nc
        {
            entry.0 = used.previous;
        }
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Settings of a [`Lockout`].
#[derive(Debug, Clone)]
pub struct LockoutConfig {
    /// Failures of one (username, source) pair within the window that lock the pair (10).
    pub pair_threshold: u32,
    /// Failures from one source, across usernames, within the window that lock the source
    /// (30): stops a cracker that rotates usernames.
    pub source_threshold: u32,
    /// Length of the counting window in seconds (60).
    pub window_secs: u64,
    /// How long a lock lasts in seconds (300).
    pub lock_secs: u64,
    /// Most entries in each table (65,536). Stops a flood of distinct usernames or sources
    /// from growing memory; when full and nothing has expired, new keys are not tracked
    /// (the source table still catches one source rotating usernames).
    pub max_entries: usize,
}

impl Default for LockoutConfig {
    fn default() -> Self {
        LockoutConfig {
            pair_threshold: 10,
            source_threshold: 30,
            window_secs: 60,
            lock_secs: 300,
            max_entries: 65_536,
        }
    }
}

/// What was locked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockScope {
    /// One username from one source.
    Pair {
        /// The username (truncated to 64 bytes).
        username: String,
        /// The source address.
        source: IpAddr,
    },
    /// Every username from one source.
    Source {
        /// The source address.
        source: IpAddr,
    },
}

/// A security event for the caller to log and count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockoutEvent {
    /// A lock started.
    Locked {
        /// What is locked.
        scope: LockScope,
        /// Failures counted in the window.
        failures: u32,
        /// End of the lock, Unix seconds.
        until: u64,
    },
}

#[derive(Debug, Clone, Copy)]
struct Counter {
    window_start: u64,
    failures: u32,
    locked_until: u64,
}

impl Counter {
    fn locked(&self, now: u64) -> bool {
        now < self.locked_until
    }

    fn expired(&self, now: u64, window: u64) -> bool {
        !self.locked(now) && now >= self.window_start.saturating_add(window)
    }

    /// Counts one failure; returns the failure count if this one starts a lock.
    fn fail(&mut self, now: u64, cfg: &LockoutConfig, threshold: u32) -> Option<u32> {
        if self.locked(now) {
            return None;
        }
        if now >= self.window_start.saturating_add(cfg.window_secs) {
            self.window_start = now;
            self.failures = 0;
        }
        self.failures = self.failures.saturating_add(1);
        if self.failures >= threshold {
            self.locked_until = now.saturating_add(cfg.lock_secs);
            Some(self.failures)
        } else {
            None
        }
    }
}

type PairKey = (Box<[u8]>, IpAddr);

/// Counts digest failures per (username, source) and per source, and locks out those that
/// go over their threshold within the window. Bounded in memory; allow-listed sources are
/// never counted or locked.
#[derive(Debug)]
pub struct Lockout {
    config: LockoutConfig,
    pairs: HashMap<PairKey, Counter>,
    sources: HashMap<IpAddr, Counter>,
    last_sweep: Option<u64>,
}

impl Lockout {
    /// An empty tracker.
    pub fn new(config: LockoutConfig) -> Self {
        Lockout {
            config,
            pairs: HashMap::new(),
            sources: HashMap::new(),
            last_sweep: None,
        }
    }

    fn pair_key(username: &str, source: IpAddr) -> PairKey {
        let bytes = username.as_bytes();
        let kept = bytes.get(..MAX_LOCKOUT_USERNAME).unwrap_or(bytes);
        (kept.into(), source)
    }

    /// Whether `username` from `source` is locked out at `now`.
    pub fn is_locked(&self, now: u64, username: &str, source: IpAddr, allow_listed: bool) -> bool {
        if allow_listed {
            return false;
        }
        if self.sources.get(&source).is_some_and(|c| c.locked(now)) {
            return true;
        }
        self.pairs
            .get(&Self::pair_key(username, source))
            .is_some_and(|c| c.locked(now))
    }

    /// Counts one failure of `username` from `source`; returns the locks it started.
    pub fn record_failure(
        &mut self,
        now: u64,
        username: &str,
        source: IpAddr,
        allow_listed: bool,
    ) -> Vec<LockoutEvent> {
        let mut events = Vec::new();
        if allow_listed {
            return events;
        }
        self.sweep_if_full(now);
        let cfg = &self.config;
        let fresh = Counter {
            window_start: now,
            failures: 0,
            locked_until: 0,
        };
        let key = Self::pair_key(username, source);
        let room = self.pairs.len() < cfg.max_entries;
        let pair = if room || self.pairs.contains_key(&key) {
            Some(self.pairs.entry(key).or_insert(fresh))
        } else {
            None
        };
        if let Some(failures) = pair.and_then(|c| c.fail(now, cfg, cfg.pair_threshold)) {
            events.push(LockoutEvent::Locked {
                scope: LockScope::Pair {
                    username: String::from_utf8_lossy(&Self::pair_key(username, source).0)
                        .into_owned(),
                    source,
                },
                failures,
                until: now.saturating_add(cfg.lock_secs),
            });
        }
        let room = self.sources.len() < cfg.max_entries;
        let src = if room || self.sources.contains_key(&source) {
            Some(self.sources.entry(source).or_insert(fresh))
        } else {
            None
        };
        if let Some(failures) = src.and_then(|c| c.fail(now, cfg, cfg.source_threshold)) {
            events.push(LockoutEvent::Locked {
                scope: LockScope::Source { source },
                failures,
                until: now.saturating_add(cfg.lock_secs),
            });
        }
        events
    }

    /// Clears the pair's failure count after a successful authentication (the source's
    /// count is kept, so one good account does not launder a source's guesses).
    pub fn record_success(&mut self, username: &str, source: IpAddr) {
        let key = Self::pair_key(username, source);
        if self.pairs.get(&key).is_some_and(|c| c.locked_until == 0) {
            self.pairs.remove(&key);
        }
    }

    /// Drops expired entries when a table is full, at most once per second so that a
    /// flood against a full table does not pay a full scan per request.
    fn sweep_if_full(&mut self, now: u64) {
        let full = self.pairs.len() >= self.config.max_entries
            || self.sources.len() >= self.config.max_entries;
        if !full || self.last_sweep == Some(now) {
            return;
        }
        self.last_sweep = Some(now);
        let window = self.config.window_secs;
        self.pairs.retain(|_, c| !c.expired(now, window));
        self.sources.retain(|_, c| !c.expired(now, window));
    }

    /// Entries held: (pairs, sources). For metrics and tests.
    pub fn len(&self) -> (usize, usize) {
        (self.pairs.len(), self.sources.len())
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty() && self.sources.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// The fake wall clock: every test time is `T0 + offset`.
    const T0: u64 = 1_800_000_000;
    const REALM: &str = "trunk.example.net";
    const USER: &str = "carrier";
    const PASSWORD: &str = "s3cret";
    const RURI: &str = "sip:+912212345678@10.0.0.5:5060;transport=udp";
    const CALL_ID: &str = "a84b4c76e66710@pc33.example.com";

    fn src() -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10))
    }

    fn other_src() -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 99))
    }

    fn auth_with(algorithms: Vec<DigestAlgorithm>) -> DigestAuth {
        let mut cfg = DigestConfig::new(REALM);
        cfg.algorithms = algorithms;
        let key = NonceKey::new(&[7u8; 32]).expect("static key");
        DigestAuth::new(cfg, key).expect("valid config")
    }

    fn auth() -> DigestAuth {
        auth_with(vec![DigestAlgorithm::Sha256, DigestAlgorithm::Md5])
    }

    fn req(source: IpAddr, call_id: &str) -> RequestInfo<'_> {
        RequestInfo {
            method: "INVITE",
            request_uri: RURI,
            source,
            call_id,
            allow_listed: false,
        }
    }

    fn lookup(user: &str, alg: DigestAlgorithm) -> Option<String> {
        (user == USER).then(|| alg.ha1(USER, REALM, PASSWORD))
    }

    /// Pulls the nonce out of a challenge header value.
    fn nonce_of(challenge: &str) -> String {
        let start = challenge.find("nonce=\"").expect("nonce") + 7;
        let rest = &challenge[start..];
        rest[..rest.find('"').expect("closing quote")].to_owned()
    }

    struct Answer<'a> {
        alg: DigestAlgorithm,
        user: &'a str,
        password: &'a str,
        realm: &'a str,
        uri: &'a str,
        nonce: &'a str,
        nc: u32,
    }

    impl Answer<'_> {
        fn header(&self) -> String {
            let nc = format!("{:08x}", self.nc);
            let ha1 = self.alg.ha1(self.user, self.realm, self.password);
            let resp = response(
                self.alg, &ha1, self.nonce, &nc, "0a4f113b", "auth", "INVITE", self.uri,
            );
            format!(
                "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", \
                 response=\"{resp}\", algorithm={}, cnonce=\"0a4f113b\", nc={nc}, qop=auth",
                self.user,
                self.realm,
                self.nonce,
                self.uri,
                self.alg.token()
            )
        }
    }

    fn answer<'a>(alg: DigestAlgorithm, nonce: &'a str, nc: u32) -> Answer<'a> {
        Answer {
            alg,
            user: USER,
            password: PASSWORD,
            realm: REALM,
            uri: RURI,
            nonce,
            nc,
        }
    }

    fn lockout() -> Lockout {
        Lockout::new(LockoutConfig::default())
    }

    fn verify(
        a: &mut DigestAuth,
        l: &mut Lockout,
        now: u64,
        r: &RequestInfo<'_>,
        h: &str,
    ) -> Verdict {
        a.verify(now, r, h, l, lookup).verdict
    }

    fn authenticated(alg: DigestAlgorithm) -> Verdict {
        Verdict::Authenticated {
            username: USER.to_owned(),
            algorithm: alg,
        }
    }

    fn challenged(stale: bool, reason: AuthError) -> Verdict {
        Verdict::Challenge { stale, reason }
    }

    // --- known vectors -------------------------------------------------------------

    #[test]
    fn md5_response_matches_rfc2617_example() {
        // RFC 2617 §3.5.
        let ha1 = DigestAlgorithm::Md5.ha1("Mufasa", "testrealm@host.com", "Circle Of Life");
        let r = response(
            DigestAlgorithm::Md5,
            &ha1,
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            "00000001",
            "0a4f113b",
            "auth",
            "GET",
            "/dir/index.html",
        );
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn sha256_and_md5_responses_match_rfc7616_example() {
        // RFC 7616 §3.9.1.
        let nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        let realm = "http-auth@example.org";
        let sha = DigestAlgorithm::Sha256.ha1("Mufasa", realm, "Circle of Life");
        let r = response(
            DigestAlgorithm::Sha256,
            &sha,
            nonce,
            "00000001",
            cnonce,
            "auth",
            "GET",
            "/dir/index.html",
        );
        assert_eq!(
            r,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
        let md5 = DigestAlgorithm::Md5.ha1("Mufasa", realm, "Circle of Life");
        let r = response(
            DigestAlgorithm::Md5,
            &md5,
            nonce,
            "00000001",
            cnonce,
            "auth",
            "GET",
            "/dir/index.html",
        );
        assert_eq!(r, "8ca523f5e9506fed4657c9700eebdbec");
    }

    // --- challenges ----------------------------------------------------------------

    #[test]
    fn challenge_lists_one_header_per_algorithm_in_order() {
        let a = auth();
        let c = a.challenge(T0, src(), CALL_ID, false);
        assert_eq!(c.len(), 2);
        let nonce = nonce_of(&c[0]);
        assert_eq!(nonce.len(), NONCE_LEN);
        assert_eq!(
            c[0],
            format!("Digest realm=\"{REALM}\", nonce=\"{nonce}\", algorithm=SHA-256, qop=\"auth\"")
        );
        assert_eq!(
            c[1],
            format!("Digest realm=\"{REALM}\", nonce=\"{nonce}\", algorithm=MD5, qop=\"auth\"")
        );
        let stale = a.challenge(T0, src(), CALL_ID, true);
        assert!(stale.iter().all(|h| h.ends_with(", stale=true")));
        let md5_only = auth_with(vec![DigestAlgorithm::Md5]).challenge(T0, src(), CALL_ID, false);
        assert_eq!(md5_only.len(), 1);
        assert!(md5_only[0].contains("algorithm=MD5"));
    }

    #[test]
    fn config_errors() {
        let key = NonceKey::new(&[1u8; 32]).expect("key");
        let mut cfg = DigestConfig::new(REALM);
        cfg.algorithms.clear();
        assert_eq!(
            DigestAuth::new(cfg, key.clone()).err(),
            Some(ConfigError::NoAlgorithms)
        );
        assert_eq!(
            DigestAuth::new(DigestConfig::new("bad\r\nrealm"), key).err(),
            Some(ConfigError::BadRealm)
        );
        assert_eq!(
            NonceKey::new(&[0u8; 8]).err(),
            Some(ConfigError::KeyTooShort)
        );
    }

    // --- accepting good credentials -------------------------------------------------

    #[test]
    fn correct_credentials_accepted_for_both_algorithms() {
        for alg in [DigestAlgorithm::Sha256, DigestAlgorithm::Md5] {
            let mut a = auth();
            let mut l = lockout();
            let nonce = nonce_of(&a.challenge(T0, src(), CALL_ID, false)[0]);
            let h = answer(alg, &nonce, 1).header();
            assert_eq!(
                verify(&mut a, &mut l, T0 + 1, &req(src(), CALL_ID), &h),
                authenticated(alg)
            );
        }
    }

    #[test]
    fn sipp_style_uri_accepted() {
        let mut a = auth_with(vec![DigestAlgorithm::Md5]);
        let mut l = lockout();
        let nonce = nonce_of(&a.challenge(T0, src(), CALL_ID, false)[0]);
        for (nc, uri) in [
            (1, "sip:10.0.0.5:5060"),
            (2, "sip:10.0.0.5"),
            (3, "SIP:10.0.0.5"),
        ] {
            let mut ans = answer(DigestAlgorithm::Md5, &nonce, nc);
            ans.uri = uri;
            assert_eq!(
                verify(&mut a, &mut l, T0, &req(src(), CALL_ID), &ans.header()),
                authenticated(DigestAlgorithm::Md5),
                "{uri}"
            );
        }
    }

    #[test]
    fn uri_for_another_host_port_or_user_rejected() {
        let mut a = auth_with(vec![DigestAlgorithm::Md5]);
        let mut l = lockout();
        let nonce = nonce_of(&a.challenge(T0, src(), CALL_ID, false)[0]);
        for uri in [
            "sip:10.0.0.6:5060",
            "sip:10.0.0.5:5070",
            "sips:10.0.0.5:5060",
            "sip:+919999999999@10.0.0.5:5060",
            "tel:+912212345678",
            "garbage",
        ] {
            let mut ans = answer(DigestAlgorithm::Md5, &nonce, 1);
            ans.uri = uri;
            assert_eq!(
                verify(&mut a, &mut l, T0, &req(src(), CALL_ID), &ans.header()),
                challenged(false, AuthError::UriMismatch),
                "{uri}"
            );
        }
    }

    #[test]
    fn uri_matching_rules() {
        assert!(uri_matches(
            "sip:[2001:db8::1]:5060",
            "sip:alice@[2001:DB8::1]"
        ));
        assert!(uri_matches(
            "sip:alice@host.example;transport=tcp",
            "sip:alice@HOST.example"
        ));
        assert!(uri_matches(
            "sips:host.example",
            "sips:bob@host.example:5061"
        ));
        assert!(!uri_matches("sip:host.example", "sips:bob@host.example"));
        assert!(!uri_matches("sip:host.example:x", "sip:host.example"));
        assert!(uri_matches("tel:+15551234", "tel:+15551234"));
    }

    #[test]
    fn header_parsing_is_case_and_space_tolerant() {
        let mut a = auth_with(vec![DigestAlgorithm::Md5]);
        let mut l = lockout();
        let nonce = nonce_of(&a.challenge(T0, src(), CALL_ID, false)[0]);
        let ha1 = DigestAlgorithm::Md5.ha1(USER, REALM, PASSWORD);
        let resp = response(
            DigestAlgorithm::Md5,
            &ha1,
            &nonce,
            "00000001",
            "xyz",
            "auth",
            "INVITE",
            RURI,
        );
        // No algorithm parameter means MD5; upper-case hex response; odd spacing; opaque.
        let h = format!(
            "digest  USERNAME = \"{USER}\",Realm=\"{REALM}\" , NONCE=\"{nonce}\",\turi=\"{RURI}\", \
             response=\"{}\", opaque=\"\", cnonce=\"xyz\", NC=00000001, qop=\"auth\"",
            resp.to_ascii_uppercase()
        );
        assert_eq!(
            verify(&mut a, &mut l, T0, &req(src(), CALL_ID), &h),
            authenticated(DigestAlgorithm::Md5)
        );
    }

    #[test]
    fn malformed_headers_refused() {
        let cases: &[(&str, HeaderFault)] = &[
            ("Basic dXNlcjpwYXNz", HeaderFault::NotDigest),
            ("Digest", HeaderFault::NotDigest),
            ("Digest username=\"a", HeaderFault::Syntax),
            ("Digest username", HeaderFault::Syntax),
            ("Digest username=\"a\" realm=\"b\"", HeaderFault::Syntax),
            (
                "Digest username=\"a\", username=\"b\"",
                HeaderFault::DuplicateParam("username"),
            ),
            (
                "Digest username=\"a\", nc=00000001",
                HeaderFault::MissingParam("realm"),
            ),
            ("Digest username=\"a\", nc=zz", HeaderFault::BadNonceCount),
            (
                "Digest username=\"a\", nc=00000000",
                HeaderFault::BadNonceCount,
            ),
            (
                "Digest username=\"a\", nc=123456789",
                HeaderFault::BadNonceCount,
            ),
            ("Digest username=\"a\\\"b\", nc=1", HeaderFault::Syntax),
            ("Digest username=\"é\"", HeaderFault::MissingParam("nc")),
        ];
        let mut a = auth();
        let mut l = lockout();
        for (h, fault) in cases {
            assert_eq!(
                verify(&mut a, &mut l, T0, &req(src(), CALL_ID), h),
                Verdict::Refuse {
                    reason: AuthError::Malformed(*fault)
                },
                "{h}"
            );
        }
        let long = format!("Digest username=\"{}\"", "a".repeat(5000));
        assert_eq!(
            verify(&mut a, &mut l, T0, &req(src(), CALL_ID), &long),
            Verdict::Refuse {
                reason: AuthError::Malformed(HeaderFault::TooLong)
            }
        );
        assert_eq!(AuthError::Malformed(HeaderFault::Syntax).status_code(), 400);
        assert!(l.is_empty());
    }

    // --- replay protection ------------------------------------------------------------

    #[test]
    fn increasing_nc_accepted_and_replay_rejected() {
        let mut a = auth();
        let mut l = lockout();
        let r = req(src(), CALL_ID);
        let nonce = nonce_of(&a.challenge(T0, src(), CALL_ID, false)[0]);
        let first = answer(DigestAlgorithm::Sha256, &nonce, 1).header();
        assert_eq!(
            verify(&mut a, &mut l, T0, &r, &first),
            authenticated(DigestAlgorithm::Sha256)
        );
        assert_eq!(
            verify(&mut a, &mut l, T0 + 1, &r, &first),
            challenged(false, AuthError::Replay)
        );
        let third = answer(DigestAlgorithm::Sha256, &nonce, 3).header();
        assert_eq!(
            verify(&mut a, &mut l, T0 + 2, &r, &third),
            authenticated(DigestAlgorithm::Sha256)
        );
        let second = answer(DigestAlgorithm::Sha256, &nonce, 2).header();
        assert_eq!(
            verify(&mut a, &mut l, T0 + 2, &r, &second),
            challenged(false, AuthError::Replay)
        );
    }

    #[test]
    fn a_count_handed_back_authenticates_again_until_a_higher_one_is_accepted() {
        let mut a = auth();
        let mut l = lockout();
        let r = req(src(), CALL_ID);
        let nonce = nonce_of(&a.challenge(T0, src(), CALL_ID, false)[0]);
        let first = answer(DigestAlgorithm::Sha256, &nonce, 1).header();
        let used = a.verify(T0, &r, &first, &mut l, lookup).nonce_use;
        let used = used.expect("an authenticated request uses a count");
        // Refused before anything acted on it: its retransmission authenticates again.
        a.give_back(&used);
        assert_eq!(
            verify(&mut a, &mut l, T0 + 1, &r, &first),
            authenticated(DigestAlgorithm::Sha256)
        );
        // Not handed back this time: the same count is a replay.
        assert_eq!(
            verify(&mut a, &mut l, T0 + 1, &r, &first),
            challenged(false, AuthError::Replay)
        );
        // A count handed back after a higher one was accepted changes nothing.
        let third = answer(DigestAlgorithm::Sha256, &nonce, 3).header();
        let third_use = a.verify(T0 + 2, &r, &third, &mut l, lookup).nonce_use;
        assert!(third_use.is_some());
        a.give_back(&used);
        assert_eq!(
            verify(&mut a, &mut l, T0 + 2, &r, &first),
            challenged(false, AuthError::Replay)
        );
        let second = answer(DigestAlgorithm::Sha256, &nonce, 2).header();
        assert_eq!(
            verify(&mut a, &mut l, T0 + 2, &r, &second),
            challenged(false, AuthError::Replay)
        );
        // A failed verification uses no count.
        let mut bad = answer(DigestAlgorithm::Sha256, &nonce, 4);
        bad.password = "guess";
        assert_eq!(
            a.verify(T0 + 3, &r, &bad.header(), &mut l, lookup)
                .nonce_use,
            None
        );
    }

    #[test]
    fn forged_responses_do_not_advance_nc() {
        let mut a = auth();
        let mut l = lockout();
        let r = req(src(), CALL_ID);
        let nonce = nonce_of(&a.challenge(T0, src(), CALL_ID, false)[0]);
        let mut bad = answer(DigestAlgorithm::Sha256, &nonce, 9);
        bad.password = "guess";
        assert_eq!(
            verify(&mut a, &mut l, T0, &r, &bad.header()),
            challenged(false, AuthError::BadCredentials)
        );
        let good = answer(DigestAlgorithm::Sha256, &nonce, 1).header();
        assert_eq!(
            verify(&mut a, &mut l, T0, &r, &good),
            authenticated(DigestAlgorithm::Sha256)
        );
    }

    #[test]
    fn nc_above_255_is_stale() {
        let mut a = auth();
        let mut l = lockout();
        let r = req(src(), CALL_ID);
        let nonce = nonce_of(&a.challenge(T0, src(), CALL_ID, false)[0]);
        let h = answer(DigestAlgorithm::Sha256, &nonce, 255).header();
        assert_eq!(
            verify(&mut a, &mut l, T0, &r, &h),
            authenticated(DigestAlgorithm::Sha256)
        );
        let h = answer(DigestAlgorithm::Sha256, &nonce, 256).header();
        assert_eq!(
            verify(&mut a, &mut l, T0, &r, &h),
            challenged(true, AuthError::NonceCountExhausted)
        );
    }

    #[test]
    fn replay_table_is_bounded_and_entries_expire() {
        let mut cfg = DigestConfig::new(REALM);
        cfg.replay_capacity = 3;
        let mut a = DigestAuth::new(cfg, NonceKey::new(&[3u8; 32]).expect("key")).expect("cfg");
        let mut l = lockout();
        let call_ids = ["c1", "c2", "c3", "c4"];
        let mut verdicts = Vec::new();
        for cid in call_ids {
            let nonce = nonce_of(&a.challenge(T0, src(), cid, false)[0]);
            let h = answer(DigestAlgorithm::Sha256, &nonce, 1).header();
            verdicts.push(verify(&mut a, &mut l, T0, &req(src(), cid), &h));
        }
        assert_eq!(verdicts[2], authenticated(DigestAlgorithm::Sha256));
        assert_eq!(verdicts[3], challenged(true, AuthError::ReplayTableFull));
        assert_eq!(a.replay.len(), 3);
        // Once the first nonces expire, their entries go and new nonces fit again.
        let later = T0 + 31;
        let nonce = nonce_of(&a.challenge(later, src(), "c4", false)[0]);
        let h = answer(DigestAlgorithm::Sha256, &nonce, 1).header();
        assert_eq!(
            verify(&mut a, &mut l, later, &req(src(), "c4"), &h),
            authenticated(DigestAlgorithm::Sha256)
        );
        assert_eq!(a.replay.len(), 1);
    }

    // --- nonce lifetime and binding ------------------------------------------------------

    #[test]
    fn expired_nonce_is_stale() {
        let mut a = auth();
        let mut l = lockout();
        let r = req(src(), CALL_ID);
        let nonce = nonce_of(&a.challenge(T0, src(), CALL_ID, false)[0]);
        let h = answer(DigestAlgorithm::Sha256, &nonce, 1).header();
        assert_eq!(
            verify(&mut a, &mut l, T0 + 31, &r, &h),
            challenged(true, AuthError::NonceExpired)
        );
        assert_eq!(
            verify(&mut a, &mut l, T0 + 30, &r, &h),
            authenticated(DigestAlgorithm::Sha256)
        );
        assert!(l.is_empty(), "stale nonces are not failures");
    }

    #[test]
    fn configurable_expiry() {
        let mut cfg = DigestConfig::new(REALM);
        cfg.nonce_ttl_secs = 300;
        let mut a = DigestAuth::new(cfg, NonceKey::new(&[3u8; 32]).expect("key")).expect("cfg");
        let mut l = lockout();
        let r = req(src(), CALL_ID);
        let nonce = nonce_of(&a.challenge(T0, src(), CALL_ID, false)[0]);
        let h = answer(DigestAlgorithm::Sha256, &nonce, 1).header();
        assert_eq!(
            verify(&mut a, &mut l, T0 + 301, &r, &h),
            challenged(true, AuthError::NonceExpired)
        );
    }

    #[test]
    fn future_nonce_is_stale() {
        let mut a = auth();
        let mut l = lockout();
        let r = req(src(), CALL_ID);
        // A nonce issued by a node whose clock runs ahead.
        let ahead = nonce_of(&a.challenge(T0 + 4, src(), CALL_ID, false)[0]);
        let h = answer(DigestAlgorithm::Sha256, &ahead, 1).header();
        assert_eq!(
            verify(&mut a, &mut l, T0, &r, &h),
            challenged(true, AuthError::NonceFromFuture)
        );
        let skew = nonce_of(&a.challenge(T0 + 3, src(), CALL_ID, false)[0]);
        let h = answer(DigestAlgorithm::Sha256, &skew, 1).header();
        assert_eq!(
            verify(&mut a, &mut l, T0, &r, &h),
            authenticated(DigestAlgorithm::Sha256)
        );
    }

    #[test]
    fn tampered_nonce_is_not_stale_and_counts() {
        let mut a = auth();
        let mut l = lockout();
        let r = req(src(), CALL_ID);
        let nonce = nonce_of(&a.challenge(T0, src(), CALL_ID, false)[0]);
        // Move the timestamp forward by one second, keeping the MAC.
        let mut forged = format!("{:016x}", T0 + 1);
        forged.push_str(&nonce[NONCE_TS_HEX..]);
        let mut flipped = nonce.clone();
        flipped.replace_range(
            NONCE_LEN - 1..,
            if nonce.ends_with('0') { "1" } else { "0" },
        );
        for bad in [
            forged.as_str(),
            flipped.as_str(),
            "abc",
            &"z".repeat(NONCE_LEN),
        ] {
            let h = answer(DigestAlgorithm::Sha256, bad, 1).header();
            assert_eq!(
                verify(&mut a, &mut l, T0, &r, &h),
                challenged(false, AuthError::NonceInvalid),
                "{bad}"
            );
        }
        assert_eq!(l.len(), (1, 1), "counted as failures");
    }

    #[test]
    fn nonce_bound_to_source_and_call_id() {
        let mut a = auth();
        let mut l = lockout();
        let nonce = nonce_of(&a.challenge(T0, src(), CALL_ID, false)[0]);
        let h = answer(DigestAlgorithm::Sha256, &nonce, 1).header();
        assert_eq!(
            verify(&mut a, &mut l, T0, &req(src(), "another-call"), &h),
            challenged(false, AuthError::NonceInvalid)
        );
        assert_eq!(
            verify(&mut a, &mut l, T0, &req(other_src(), CALL_ID), &h),
            challenged(false, AuthError::NonceInvalid)
        );
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert_eq!(
            verify(&mut a, &mut l, T0, &req(v6, CALL_ID), &h),
            challenged(false, AuthError::NonceInvalid)
        );
        assert_eq!(
            verify(&mut a, &mut l, T0, &req(src(), CALL_ID), &h),
            authenticated(DigestAlgorithm::Sha256)
        );
    }

    #[test]
    fn nonce_bound_to_realm() {
        let mut cfg = DigestConfig::new("tenant-b.example.net");
        cfg.algorithms = vec![DigestAlgorithm::Sha256];
        let b = DigestAuth::new(cfg, NonceKey::new(&[7u8; 32]).expect("key")).expect("cfg");
        let mut a = auth();
        let mut l = lockout();
        // Tenant B's nonce answered with tenant A's realm and password.
        let nonce = nonce_of(&b.challenge(T0, src(), CALL_ID, false)[0]);
        let h = answer(DigestAlgorithm::Sha256, &nonce, 1).header();
        assert_eq!(
            verify(&mut a, &mut l, T0, &req(src(), CALL_ID), &h),
            challenged(false, AuthError::NonceInvalid)
        );
    }

    // --- algorithm and realm -------------------------------------------------------------

    #[test]
    fn md5_answer_to_sha256_only_challenge_rejected() {
        let mut a = auth_with(vec![DigestAlgorithm::Sha256]);
        let mut l = lockout();
        let nonce = nonce_of(&a.challenge(T0, src(), CALL_ID, false)[0]);
        let h = answer(DigestAlgorithm::Md5, &nonce, 1).header();
        assert_eq!(
            verify(&mut a, &mut l, T0, &req(src(), CALL_ID), &h),
            challenged(false, AuthError::AlgorithmNotOffered("MD5".to_owned()))
        );
        // No algorithm parameter means MD5, also not offered.
        let h = h.replace(", algorithm=MD5", "");
        assert!(matches!(
            verify(&mut a, &mut l, T0, &req(src(), CALL_ID), &h),
            Verdict::Challenge {
                reason: AuthError::AlgorithmNotOffered(_),
                ..
            }
        ));
        let h = answer(DigestAlgorithm::Md5, &nonce, 1)
            .header()
            .replace("=MD5", "=MD5-sess");
        assert!(matches!(
            verify(&mut a, &mut l, T0, &req(src(), CALL_ID), &h),
            Verdict::Challenge {
                reason: AuthError::AlgorithmNotOffered(_),
                stale: false
            }
        ));
    }

    #[test]
    fn wrong_realm_gets_fresh_challenge() {
        let mut a = auth();
        let mut l = lockout();
        let nonce = nonce_of(&a.challenge(T0, src(), CALL_ID, false)[0]);
        let mut ans = answer(DigestAlgorithm::Sha256, &nonce, 1);
        ans.realm = "tenant-b.example.net";
        assert_eq!(
            verify(&mut a, &mut l, T0, &req(src(), CALL_ID), &ans.header()),
            challenged(false, AuthError::WrongRealm)
        );
        assert!(a.challenge(T0, src(), CALL_ID, false)[0].contains(REALM));
    }

    #[test]
    fn qop_other_than_auth_rejected() {
        let mut a = auth();
        let mut l = lockout();
        let nonce = nonce_of(&a.challenge(T0, src(), CALL_ID, false)[0]);
        let h = answer(DigestAlgorithm::Sha256, &nonce, 1)
            .header()
            .replace("qop=auth", "qop=auth-int");
        assert_eq!(
            verify(&mut a, &mut l, T0, &req(src(), CALL_ID), &h),
            challenged(false, AuthError::UnsupportedQop)
        );
    }

    #[test]
    fn unknown_user_and_wrong_password_look_the_same() {
        let mut a = auth();
        let mut l = lockout();
        let nonce = nonce_of(&a.challenge(T0, src(), CALL_ID, false)[0]);
        let mut wrong = answer(DigestAlgorithm::Sha256, &nonce, 1);
        wrong.password = "nope";
        let mut unknown = answer(DigestAlgorithm::Sha256, &nonce, 2);
        unknown.user = "nobody";
        let v1 = verify(&mut a, &mut l, T0, &req(src(), CALL_ID), &wrong.header());
        let v2 = verify(&mut a, &mut l, T0, &req(src(), CALL_ID), &unknown.header());
        assert_eq!(v1, v2);
        assert_eq!(v1, challenged(false, AuthError::BadCredentials));
    }

    #[test]
    fn unknown_user_never_matches_dummy_ha1() {
        // Even a client that somehow answered with the dummy HA1 is not admitted.
        let mut a = auth();
        let mut l = lockout();
        let nonce = nonce_of(&a.challenge(T0, src(), CALL_ID, false)[0]);
        let nc = "00000001";
        let uri = RURI;
        let resp = response(
            DigestAlgorithm::Sha256,
            &a.dummy_sha256,
            &nonce,
            nc,
            "c",
            "auth",
            "INVITE",
            uri,
        );
        let h = format!(
            "Digest username=\"ghost\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"{uri}\", \
             response=\"{resp}\", algorithm=SHA-256, cnonce=\"c\", nc={nc}, qop=auth"
        );
        assert_eq!(
            verify(&mut a, &mut l, T0, &req(src(), CALL_ID), &h),
            challenged(false, AuthError::BadCredentials)
        );
    }

    #[test]
    fn constant_time_compare() {
        assert!(ct_eq_hex(b"abcdef", b"ABCDEF"));
        assert!(!ct_eq_hex(b"abcdef", b"abcdee"));
        assert!(!ct_eq_hex(b"abcdef", b"abcde"));
        let long = [b'a'; 65];
        assert!(!ct_eq_hex(&long, &long));
    }

    // --- lockout ---------------------------------------------------------------------

    /// Sends `n` wrong-password answers for `user` from `source`, each on a fresh nonce.
    fn fail_n(
        a: &mut DigestAuth,
        l: &mut Lockout,
        now: u64,
        user: &str,
        source: IpAddr,
        allow_listed: bool,
        n: usize,
    ) -> Vec<LockoutEvent> {
        let mut events = Vec::new();
        for i in 0..n {
            let cid = format!("crack-{i}");
            let nonce = nonce_of(&a.challenge(now, source, &cid, false)[0]);
            let mut ans = answer(DigestAlgorithm::Sha256, &nonce, 1);
            ans.user = user;
            ans.password = "wrong";
            let mut r = req(source, &cid);
            r.allow_listed = allow_listed;
            events.extend(a.verify(now, &r, &ans.header(), l, lookup).events);
        }
        events
    }

    fn good_attempt(a: &mut DigestAuth, l: &mut Lockout, now: u64, source: IpAddr) -> Verdict {
        let nonce = nonce_of(&a.challenge(now, source, "good", false)[0]);
        let h = answer(DigestAlgorithm::Sha256, &nonce, 1).header();
        verify(a, l, now, &req(source, "good"), &h)
    }

    #[test]
    fn ten_failures_lock_the_pair_but_not_another_source() {
        let mut a = auth();
        let mut l = lockout();
        let events = fail_n(&mut a, &mut l, T0, USER, src(), false, 9);
        assert!(events.is_empty());
        assert_eq!(
            good_attempt(&mut a, &mut l, T0 + 1, src()),
            authenticated(DigestAlgorithm::Sha256)
        );
        // The success cleared the pair's count; ten more failures lock it.
        let events = fail_n(&mut a, &mut l, T0 + 2, USER, src(), false, 10);
        assert_eq!(
            events,
            vec![LockoutEvent::Locked {
                scope: LockScope::Pair {
                    username: USER.to_owned(),
                    source: src()
                },
                failures: 10,
                until: T0 + 2 + 300,
            }]
        );
        // Locked: even the right password gets the same challenge as a wrong one.
        assert_eq!(
            good_attempt(&mut a, &mut l, T0 + 3, src()),
            challenged(false, AuthError::LockedOut)
        );
        // The same username from another source still works.
        assert_eq!(
            good_attempt(&mut a, &mut l, T0 + 3, other_src()),
            authenticated(DigestAlgorithm::Sha256)
        );
        // The lock ends after its period.
        assert_eq!(
            good_attempt(&mut a, &mut l, T0 + 2 + 300, src()),
            authenticated(DigestAlgorithm::Sha256)
        );
    }

    #[test]
    fn failures_outside_the_window_do_not_lock() {
        let mut a = auth();
        let mut l = lockout();
        assert!(fail_n(&mut a, &mut l, T0, USER, src(), false, 9).is_empty());
        assert!(fail_n(&mut a, &mut l, T0 + 60, USER, src(), false, 9).is_empty());
        assert!(!l.is_locked(T0 + 60, USER, src(), false));
    }

    #[test]
    fn many_usernames_from_one_source_lock_the_source() {
        let mut l = lockout();
        let mut events = Vec::new();
        for i in 0..30 {
            events.extend(l.record_failure(T0, &format!("user{i}"), src(), false));
        }
        assert_eq!(
            events,
            vec![LockoutEvent::Locked {
                scope: LockScope::Source { source: src() },
                failures: 30,
                until: T0 + 300,
            }]
        );
        assert!(l.is_locked(T0 + 1, USER, src(), false));
        assert!(!l.is_locked(T0 + 1, USER, other_src(), false));
        assert!(!l.is_locked(T0 + 300, USER, src(), false));
    }

    #[test]
    fn allow_listed_sources_never_locked() {
        let mut a = auth();
        let mut l = lockout();
        assert!(fail_n(&mut a, &mut l, T0, USER, src(), true, 40).is_empty());
        assert!(l.is_empty());
        assert!(!l.is_locked(T0, USER, src(), true));
        let nonce = nonce_of(&a.challenge(T0, src(), "ok", false)[0]);
        let h = answer(DigestAlgorithm::Sha256, &nonce, 1).header();
        let mut r = req(src(), "ok");
        r.allow_listed = true;
        assert_eq!(
            verify(&mut a, &mut l, T0, &r, &h),
            authenticated(DigestAlgorithm::Sha256)
        );
    }

    #[test]
    fn configurable_lock_period() {
        let mut l = Lockout::new(LockoutConfig {
            lock_secs: 10,
            ..LockoutConfig::default()
        });
        for _ in 0..10 {
            l.record_failure(T0, USER, src(), false);
        }
        assert!(l.is_locked(T0 + 9, USER, src(), false));
        assert!(!l.is_locked(T0 + 10, USER, src(), false));
    }

    #[test]
    fn lockout_tables_are_bounded() {
        let mut l = Lockout::new(LockoutConfig {
            max_entries: 100,
            ..LockoutConfig::default()
        });
        for i in 0..10_000u32 {
            let source = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            l.record_failure(T0, &format!("user{i}"), source, false);
        }
        assert_eq!(l.len(), (100, 100));
        // After the window, the sweep makes room for new keys.
        l.record_failure(T0 + 61, "late", src(), false);
        assert_eq!(l.len(), (1, 1));
        // Long usernames are truncated in the key.
        let long = "x".repeat(10_000);
        let events: Vec<_> = (0..10)
            .flat_map(|_| l.record_failure(T0 + 62, &long, other_src(), false))
            .collect();
        assert!(matches!(
            &events[..],
            [LockoutEvent::Locked { scope: LockScope::Pair { username, .. }, .. }]
                if username.len() == MAX_LOCKOUT_USERNAME
        ));
    }

    #[test]
    fn unix_seconds_of_system_time() {
        use std::time::Duration;
        assert_eq!(unix_seconds(UNIX_EPOCH + Duration::from_secs(T0)), T0);
        assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_secs(5)), 0);
    }
}
