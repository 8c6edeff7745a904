//! The gate: which requests get in, by trunk, and who is kept out.
//!
//! Two halves. The [`Shield`] is shared by the transports and the core: before a datagram
//! or stream message is queued, it drops what banned sources send and counts the rest
//! against the flood limits, so that a flood never reaches the core queue. The [`Gate`] is
//! owned by the core: for a new request it decides, in the order of decisions of the
//! design, whether a trunk admits it (by source network, by digest credentials, or both),
//! and what the uniform answer is when none does.
//!
//! ```text
//!   source in an ip trunk's networks            -> admitted as that trunk
//!   loopback, and no trunk configured           -> admitted as the development trunk
//!   a digest trunk may admit the source         -> 401 (stateless) until credentials verify
//!   otherwise                                   -> 403 or silent drop, as configured
//! ```

pub mod flood;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use rustls::pki_types::CertificateDer;

use crate::ids::TrunkId;
use crate::routing::trunks::{TrunkBook, TrunkEntry, TrunkSet, is_loopback};
use crate::sip::auth::{
    self, DigestAuth, DigestConfig, Lockout, LockoutConfig, LockoutEvent, NonceKey, NonceUse,
    RequestInfo, Verdict as AuthVerdict,
};
use crate::sip::message::Request;
use crate::store::model::DigestAlgorithm;
use crate::transport::{PacketFilter, Transport};

use flood::{BanReason, FloodConfig, FloodGuard, Verdict as FloodVerdict};

/// What a source that no trunk admits is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unadmitted {
    /// Nothing: the request is dropped and counted (a scanner learns nothing).
    #[default]
    Drop,
    /// A stateless 403 Forbidden.
    Forbid,
}

impl std::str::FromStr for Unadmitted {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "drop" => Ok(Unadmitted::Drop),
            "403" => Ok(Unadmitted::Forbid),
            other => Err(format!("{other:?} is not one of: drop, 403")),
        }
    }
}

/// The transport-side half: trunk networks and the flood guard.
#[derive(Debug)]
pub struct Shield {
    trunks: TrunkBook,
    flood: Mutex<FloodGuard>,
}

impl Shield {
    pub fn new(trunks: TrunkBook, flood: FloodConfig) -> Arc<Shield> {
        Arc::new(Shield {
            trunks,
            flood: Mutex::new(FloodGuard::new(flood)),
        })
    }

    pub fn trunks(&self) -> &TrunkBook {
        &self.trunks
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, FloodGuard> {
        self.flood.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether one message (or connection) from `source`, arrived at `now`, may go on to
    /// the core. Sources in trunk networks always may; others are counted and, past the
    /// limit, banned.
    pub fn admit(&self, now: Instant, source: IpAddr) -> bool {
        if self.trunks.snapshot().allow_listed(source) {
            return true;
        }
        let verdict = self.guard().check(now, source);
        match verdict {
            FloodVerdict::Pass => true,
            FloodVerdict::Drop(started) => {
                if let Some(reason) = started {
                    banned(source, reason);
                }
                metrics::counter!("vca_sip_dropped_total", "reason" => "banned").increment(1);
                false
            }
        }
    }

    /// Bans `source` (never an allow-listed one) for `reason`, from `now`.
    pub fn ban(&self, now: Instant, source: IpAddr, reason: BanReason) {
        if self.trunks.snapshot().allow_listed(source) {
            return;
        }
        if self.guard().ban(now, source) {
            banned(source, reason);
        }
    }

    /// Notes that `source` (not allow-listed) dialed `user`; bans it when it scans.
    fn observe_user(&self, now: Instant, source: IpAddr, user: &str) -> bool {
        let scanning = self.guard().observe_user(now, source, user);
        if scanning {
            banned(source, BanReason::Scanning);
        }
        scanning
    }

    /// Marks `source` as having authenticated: not rate limited for a ban's length.
    fn trust(&self, now: Instant, source: IpAddr) {
        self.guard().trust(now, source);
    }

    /// Forgets sources idle at `now`; run now and then.
    pub fn evict(&self, now: Instant) {
        self.guard().evict(now);
        metrics::gauge!("vca_sip_flood_sources").set(self.guard().len() as f64);
    }
}

/// The transports drop, before queueing, what the shield refuses.
impl PacketFilter for Shield {
    fn admit(&self, now: Instant, source: IpAddr) -> bool {
        Shield::admit(self, now, source)
    }
}

fn banned(source: IpAddr, reason: BanReason) {
    tracing::warn!(%source, reason = reason.as_str(), "source banned");
    metrics::counter!("vca_sip_bans_total", "reason" => reason.as_str()).increment(1);
}

/// Which trunk admitted a request; `None` is the development trunk (loopback, no trunks).
pub type Admitted = Option<Arc<TrunkEntry>>;

/// The gate's decision on a new request.
#[derive(Debug)]
pub enum Decision {
    /// Serve the request.
    Admit(Pass),
    /// A stateless 401 with these `WWW-Authenticate` values.
    Challenge(Vec<String>),
    /// A stateless 400: the credentials cannot be parsed.
    BadCredentials,
    /// A stateless 403.
    Forbid,
    /// No answer at all.
    Drop,
}

/// An admitted request: its trunk, and the nonce-count it used when it carried digest
/// credentials (hand it back with [`Gate::give_back`] when the request is then refused
/// statelessly).
#[derive(Debug)]
pub struct Pass {
    pub trunk: Admitted,
    pub nonce_use: Option<NonceUse>,
}

impl Pass {
    fn trunk(trunk: Admitted) -> Pass {
        Pass {
            trunk,
            nonce_use: None,
        }
    }
}

/// Digest state of one trunk, kept across reloads while its realm and algorithms stay.
struct TrunkDigest {
    realm: String,
    algorithms: Vec<DigestAlgorithm>,
    auth: DigestAuth,
}

/// The core-side half: trunk matching and digest authentication.
pub struct Gate {
    shield: Arc<Shield>,
    key: NonceKey,
    nonce_ttl_secs: u64,
    unadmitted: Unadmitted,
    scanner_agents: Vec<String>,
    digests: HashMap<TrunkId, TrunkDigest>,
    generation: u64,
    lockout: Lockout,
}

/// Settings of the gate.
#[derive(Debug, Clone)]
pub struct GateConfig {
    pub unadmitted: Unadmitted,
    pub nonce_ttl_secs: u64,
    pub lockout: LockoutConfig,
    /// User-Agent fragments (lower case) that ban a source at once; empty disables.
    pub scanner_agents: Vec<String>,
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            unadmitted: Unadmitted::Drop,
            nonce_ttl_secs: 30,
            lockout: LockoutConfig::default(),
            scanner_agents: flood::SCANNER_AGENTS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        }
    }
}

impl Gate {
    pub fn new(shield: Arc<Shield>, key: NonceKey, config: GateConfig) -> Gate {
        Gate {
            shield,
            key,
            nonce_ttl_secs: config.nonce_ttl_secs,
            unadmitted: config.unadmitted,
            scanner_agents: config.scanner_agents,
            digests: HashMap::new(),
            generation: u64::MAX,
            lockout: Lockout::new(config.lockout),
        }
    }

    pub fn shield(&self) -> &Arc<Shield> {
        &self.shield
    }

    /// Whether a source is admitted by its address alone (a trunk network, or loopback as
    /// the development trunk): such a source may be told why a message is malformed.
    pub fn trusted_source(&self, source: IpAddr) -> bool {
        self.shield.trunks.snapshot().allow_listed(source)
    }

    /// The uniform answer to a source no trunk admits.
    pub fn unadmitted(&self) -> Decision {
        metrics::counter!("vca_sip_unadmitted_total").increment(1);
        match self.unadmitted {
            Unadmitted::Drop => Decision::Drop,
            Unadmitted::Forbid => Decision::Forbid,
        }
    }

    /// Hands back the nonce-count an admitted request used, when the request was then
    /// refused before anything acted on it, so that its retransmission is not taken for a
    /// replay. Does nothing for a request admitted without digest credentials.
    pub fn give_back(&mut self, pass: &Pass) {
        if let (Some(trunk), Some(used)) = (&pass.trunk, &pass.nonce_use)
            && let Some(digest) = self.digests.get_mut(&trunk.id)
        {
            digest.auth.give_back(used);
        }
    }

    /// Decides on a new (out-of-dialog) request from `source` over `transport`, whose TLS
    /// client presented `client_cert` (verified), at `now` (monotonic: flood and scanner
    /// counts) and `wall` (the wall time nonces carry).
    pub fn decide(
        &mut self,
        now: Instant,
        wall: SystemTime,
        request: &Request,
        source: IpAddr,
        transport: Transport,
        client_cert: Option<&CertificateDer<'_>>,
    ) -> Decision {
        let set = self.shield.trunks.snapshot();
        self.sync(&set);
        if set.dev_loopback() && is_loopback(source) {
            return Decision::Admit(Pass::trunk(None));
        }
        if let Some(trunk) = set.by_source(source, transport) {
            if trunk.accepts_client(client_cert) {
                return Decision::Admit(Pass::trunk(Some(trunk.clone())));
            }
            metrics::counter!("vca_sip_auth_failures_total", "reason" => "client_certificate")
                .increment(1);
            return self.unadmitted();
        }
        let allow_listed = set.allow_listed(source);
        if !allow_listed && self.scanner(now, request, source) {
            return Decision::Drop;
        }
        let candidates: Vec<&Arc<TrunkEntry>> = set
            .digest_candidates(source, transport)
            .filter(|t| t.accepts_client(client_cert))
            .collect();
        if candidates.is_empty() {
            return self.unadmitted();
        }
        let unix = auth::unix_seconds(wall);
        let call_id = request.headers().call_id().unwrap_or_default();
        let Some(authorization) = request.header("Authorization") else {
            metrics::counter!("vca_sip_auth_challenges_total").increment(1);
            return Decision::Challenge(self.challenges(&candidates, unix, source, call_id, false));
        };
        let (user, realm) = auth::identity(authorization).unwrap_or(("", ""));
        let same_realm = |t: &&&Arc<TrunkEntry>| t.realm.as_deref() == Some(realm);
        let chosen = candidates
            .iter()
            .find(|t| same_realm(t) && t.username.as_deref() == Some(user))
            .or_else(|| candidates.iter().find(same_realm))
            .unwrap_or(&candidates[0]);
        let trunk: Arc<TrunkEntry> = Arc::clone(chosen);
        let Some(digest) = self.digests.get_mut(&trunk.id) else {
            return self.unadmitted();
        };
        let info = RequestInfo {
            method: request.method_str(),
            request_uri: request.uri().as_str(),
            source,
            call_id,
            allow_listed,
        };
        let known = trunk.username.as_deref() == Some(user);
        let outcome =
            digest
                .auth
                .verify(unix, &info, authorization, &mut self.lockout, |u, alg| {
                    (known && u == user)
                        .then(|| trunk.ha1.get(alg).map(str::to_owned))
                        .flatten()
                });
        for event in &outcome.events {
            let LockoutEvent::Locked {
                scope,
                failures,
                until,
            } = event;
            tracing::warn!(?scope, failures, until, trunk = %trunk.id, "digest lockout");
            metrics::counter!("vca_sip_auth_lockouts_total").increment(1);
        }
        match outcome.verdict {
            AuthVerdict::Authenticated { .. } => {
                if !allow_listed {
                    self.shield.trust(now, source);
                }
                Decision::Admit(Pass {
                    trunk: Some(trunk),
                    nonce_use: outcome.nonce_use,
                })
            }
            AuthVerdict::Challenge { stale, reason } => {
                let label = match reason {
                    auth::AuthError::LockedOut => "locked_out",
                    auth::AuthError::BadCredentials => "bad_credentials",
                    auth::AuthError::Replay => "replay",
                    auth::AuthError::NonceInvalid => "bad_nonce",
                    auth::AuthError::WrongRealm => "wrong_realm",
                    _ if stale => "stale",
                    _ => "other",
                };
                metrics::counter!("vca_sip_auth_failures_total", "reason" => label).increment(1);
                Decision::Challenge(self.challenges(&candidates, unix, source, call_id, stale))
            }
            AuthVerdict::Refuse { .. } => {
                metrics::counter!("vca_sip_auth_failures_total", "reason" => "malformed")
                    .increment(1);
                Decision::BadCredentials
            }
        }
    }

    /// Bans a source that announces a scanner or tries number after number.
    fn scanner(&self, now: Instant, request: &Request, source: IpAddr) -> bool {
        if request
            .headers()
            .user_agent()
            .is_some_and(|ua| flood::is_scanner(ua, &self.scanner_agents))
        {
            self.shield.ban(now, source, BanReason::Signature);
            return true;
        }
        let user = request
            .uri()
            .user()
            .or_else(|| request.headers().to().ok().and_then(|to| to.uri().user()))
            .unwrap_or("");
        self.shield.observe_user(now, source, user)
    }

    /// One challenge per candidate trunk's realm and algorithm, in trunk order.
    fn challenges(
        &self,
        candidates: &[&Arc<TrunkEntry>],
        now: u64,
        source: IpAddr,
        call_id: &str,
        stale: bool,
    ) -> Vec<String> {
        let mut realms: Vec<&str> = Vec::new();
        let mut out = Vec::new();
        for trunk in candidates {
            let Some(digest) = self.digests.get(&trunk.id) else {
                continue;
            };
            if realms.contains(&digest.realm.as_str()) {
                continue;
            }
            realms.push(&digest.realm);
            out.extend(digest.auth.challenge(now, source, call_id, stale));
        }
        out
    }

    /// Brings the per-trunk digest state in line with `set`, keeping the replay tables of
    /// trunks whose realm and algorithms did not change.
    fn sync(&mut self, set: &TrunkSet) {
        if set.generation() == self.generation {
            return;
        }
        self.generation = set.generation();
        let mut next = HashMap::with_capacity(set.trunks().len());
        for trunk in set.trunks().iter().filter(|t| t.needs_digest()) {
            let Some(realm) = trunk.realm.clone() else {
                continue;
            };
            if let Some(old) = self.digests.remove(&trunk.id)
                && old.realm == realm
                && old.algorithms == trunk.algorithms
            {
                next.insert(trunk.id, old);
                continue;
            }
            let mut config = DigestConfig::new(realm.clone());
            config.algorithms = trunk.algorithms.clone();
            config.nonce_ttl_secs = self.nonce_ttl_secs;
            match DigestAuth::new(config, self.key.clone()) {
                Ok(auth) => {
                    next.insert(
                        trunk.id,
                        TrunkDigest {
                            realm,
                            algorithms: trunk.algorithms.clone(),
                            auth,
                        },
                    );
                }
                Err(e) => {
                    tracing::warn!(trunk = %trunk.id, error = %e, "trunk has no usable digest settings")
                }
            }
        }
        self.digests = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::origin;
    use std::time::Duration;

    #[test]
    fn a_ban_lasts_its_length_on_the_instants_the_transports_give() {
        let shield = Shield::new(TrunkBook::default(), FloodConfig::default());
        let source: IpAddr = "192.0.2.7".parse().unwrap();
        let t0 = origin();
        assert!(shield.admit(t0, source));
        shield.ban(t0, source, BanReason::Signature);
        assert!(!shield.admit(t0 + Duration::from_secs(299), source));
        assert!(shield.admit(t0 + Duration::from_secs(300), source));
        // Loopback is the development trunk: never banned.
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        shield.ban(t0, loopback, BanReason::Signature);
        assert!(shield.admit(t0, loopback));
    }
}
