//! Server-side digest authentication (RFC 3261 §22.4, RFC 7616 §3.3-3.4, RFC 8760): the
//! challenge, the stateless nonce and the verification of an answer.

use super::*;
use hmac::Mac;
use std::net::IpAddr;
use subtle::ConstantTimeEq;

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
    pub(super) nonce: Box<str>,
    pub(super) nc: u32,
    /// The highest count accepted on the nonce before (0: none).
    pub(super) previous: u32,
}

/// The server key under which nonces are signed. All nodes (and restarts) must share it.
#[derive(Clone)]
pub struct NonceKey(pub(super) Vec<u8>);

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
    pub(super) config: DigestConfig,
    /// HMAC keyed with the server key, cloned for each nonce.
    pub(super) mac: HmacSha256,
    /// Per algorithm, an HA1 no user has, used for unknown users so timing does not differ.
    pub(super) dummy_md5: String,
    pub(super) dummy_sha256: String,
    pub(super) replay: ReplayTable,
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

    pub(super) fn check<F>(
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

    pub(super) fn nonce_mac(&self, ts: u64, source: IpAddr, call_id: &str) -> HmacSha256 {
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

    pub(super) fn make_nonce(&self, now: u64, source: IpAddr, call_id: &str) -> String {
        let tag = self.nonce_mac(now, source, call_id).finalize().into_bytes();
        let mut nonce = String::with_capacity(NONCE_LEN);
        let _ = write!(nonce, "{now:016x}");
        nonce.push_str(&hex::encode(tag.get(..NONCE_MAC_LEN).unwrap_or_default()));
        nonce
    }

    /// Checks a nonce's signature and age; returns its timestamp.
    pub(super) fn check_nonce(
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

pub(super) fn challenge_for(reason: AuthError) -> Verdict {
    Verdict::Challenge {
        stale: reason.stale(),
        reason,
    }
}

pub(super) fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

/// Appends `value` as a quoted-string (RFC 3261 §25.1).
pub(super) fn push_quoted(out: &mut String, value: &str) {
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
pub(super) fn response(
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
pub(super) fn ct_eq_hex(expected: &[u8], received: &[u8]) -> bool {
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
