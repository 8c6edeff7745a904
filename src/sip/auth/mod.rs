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

use hmac::Hmac;
use sha2::Sha256;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

mod client;
mod credentials;
mod lockout;
mod replay;
mod server;

pub use crate::kinds::DigestAlgorithm;
pub use client::{AuthHeader, Challenge, ChallengeKind, ClientAuthError, DigestClient};
pub use credentials::*;
pub use lockout::*;
use replay::*;
pub use server::*;

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

#[cfg(test)]
mod tests;
