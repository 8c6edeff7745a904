//! The trunk book: which carrier trunks exist, the networks they send from and the
//! credentials they answer a challenge with, held in memory for the SIP layer.
//!
//! Like the DID directory, the whole set is loaded at start, reloaded after every API
//! change to trunks on this node and periodically for changes made on other nodes. A
//! reload swaps in a new [`TrunkSet`]; readers take an `Arc` and never wait.
//!
//! With no trunk configured at all, loopback sources are admitted as a development trunk
//! so that a first run needs no setup; configuring any trunk (even a disabled one) ends it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};

use super::e164::CountryCode;
use crate::ids::{TenantId, TrunkId};
use crate::kinds::{DigestAlgorithm, Transport, TrunkTransport};
use crate::store::model::TrunkAuth;
use crate::store::{Ha1Set, Result, Store, TrunkCredentials};

/// An IPv4 or IPv6 network: its address masked to the prefix, and the prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Reads `address[/prefix]`. A bare address is a /32 or /128; host bits are cleared;
    /// an IPv4-mapped IPv6 network (`::ffff:a.b.c.d/120`) is its IPv4 network.
    pub fn parse(text: &str) -> Option<Cidr> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = match prefix {
            None => max,
            Some(p) if (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse().ok()?
            }
            Some(_) => return None,
        };
        if prefix > max {
            return None;
        }
        Some(match addr {
            IpAddr::V4(v4) => Cidr {
                net: IpAddr::V4(mask_v4(v4, prefix)),
                prefix,
            },
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) if prefix >= 96 => Cidr {
                    net: IpAddr::V4(mask_v4(v4, prefix - 96)),
                    prefix: prefix - 96,
                },
                _ => Cidr {
                    net: IpAddr::V6(mask_v6(v6, prefix)),
                    prefix,
                },
            },
        })
    }

    pub fn network(&self) -> IpAddr {
        self.net
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `addr` lies in this network (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        match (self.net, addr) {
            (IpAddr::V4(net), IpAddr::V4(a)) => mask_v4(a, self.prefix) == net,
            (IpAddr::V6(net), IpAddr::V6(a)) => mask_v6(a, self.prefix) == net,
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

fn mask_v4(addr: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    Ipv4Addr::from(u32::from(addr) & mask)
}

fn mask_v6(addr: Ipv6Addr, prefix: u8) -> Ipv6Addr {
    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
    Ipv6Addr::from(u128::from(addr) & mask)
}

/// One trunk as the SIP layer sees it.
#[derive(Debug, Clone)]
pub struct TrunkEntry {
    pub id: TrunkId,
    /// The owning tenant: such a trunk admits only that tenant's numbers.
    pub tenant_id: Option<TenantId>,
    pub name: String,
    pub transport: TrunkTransport,
    pub allowed: Vec<Cidr>,
    pub auth: TrunkAuth,
    pub realm: Option<String>,
    pub username: Option<String>,
    pub ha1: Ha1Set,
    pub algorithms: Vec<DigestAlgorithm>,
    pub max_concurrent_calls: Option<i64>,
    pub country: CountryCode,
    /// The carrier's host name, which its client certificate must be valid for.
    pub host: Option<String>,
    pub require_client_cert: bool,
}

impl TrunkEntry {
    fn from_credentials(c: TrunkCredentials) -> Option<TrunkEntry> {
        let t = c.trunk;
        let country = match CountryCode::parse(&t.default_country_code) {
            Ok(cc) => cc,
            Err(e) => {
                tracing::warn!(trunk = %t.id, error = %e, "trunk skipped: bad default country");
                return None;
            }
        };
        Some(TrunkEntry {
            id: t.id,
            tenant_id: t.tenant_id,
            name: t.name,
            transport: t.transport,
            allowed: t
                .allowed_cidrs
                .0
                .iter()
                .filter_map(|s| Cidr::parse(s))
                .collect(),
            auth: t.auth,
            realm: t.realm,
            username: t.username,
            ha1: c.ha1,
            algorithms: t.digest_algorithms.0,
            max_concurrent_calls: t.max_concurrent_calls,
            country,
            host: t.host,
            require_client_cert: t.require_client_cert,
        })
    }

    /// Whether `source` lies in one of the trunk's networks.
    pub fn allows(&self, source: IpAddr) -> bool {
        self.allowed.iter().any(|c| c.contains(source))
    }

    /// The longest prefix of the trunk's networks that holds `source`.
    fn best_prefix(&self, source: IpAddr) -> Option<u8> {
        self.allowed
            .iter()
            .filter(|c| c.contains(source))
            .map(Cidr::prefix)
            .max()
    }

    /// Whether a request over `transport` may come from this trunk: a TLS trunk admits only
    /// TLS (no downgrade to plain text from its networks); a UDP or TCP trunk admits UDP,
    /// TCP and TLS.
    pub fn admits_transport(&self, transport: Transport) -> bool {
        self.transport != TrunkTransport::TLS || transport == Transport::Tls
    }

    /// Whether a request with this client certificate (verified against the client CA by
    /// the TLS layer) may come from this trunk: always, unless the trunk requires one; then
    /// it must be present and, when the trunk names a host, valid for that host.
    pub fn accepts_client(&self, cert: Option<&CertificateDer<'_>>) -> bool {
        if !self.require_client_cert {
            return true;
        }
        let Some(cert) = cert else {
            return false;
        };
        let Some(host) = &self.host else {
            return true;
        };
        let Ok(name) = ServerName::try_from(host.as_str()) else {
            return false;
        };
        webpki::EndEntityCert::try_from(cert)
            .is_ok_and(|ee| ee.verify_is_valid_for_subject_name(&name).is_ok())
    }

    /// Whether the trunk admits requests by source address alone.
    pub fn ip_only(&self) -> bool {
        self.auth == TrunkAuth::Ip
    }

    /// Whether the trunk asks for digest credentials.
    pub fn needs_digest(&self) -> bool {
        matches!(self.auth, TrunkAuth::Digest | TrunkAuth::IpDigest)
    }
}

/// Every enabled trunk at one moment.
#[derive(Debug, Default)]
pub struct TrunkSet {
    trunks: Vec<Arc<TrunkEntry>>,
    /// No trunk exists at all: loopback is the development trunk.
    dev_loopback: bool,
    /// Bumped on every reload, so that holders of per-trunk state notice a change.
    generation: u64,
}

impl TrunkSet {
    /// A set of exactly these trunks (enabled ones); `any_configured` says whether any trunk,
    /// enabled or not, exists.
    pub fn new(trunks: Vec<TrunkEntry>, any_configured: bool, generation: u64) -> TrunkSet {
        TrunkSet {
            trunks: trunks.into_iter().map(Arc::new).collect(),
            dev_loopback: !any_configured,
            generation,
        }
    }

    pub fn trunks(&self) -> &[Arc<TrunkEntry>] {
        &self.trunks
    }

    pub fn dev_loopback(&self) -> bool {
        self.dev_loopback
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether `source` is a trusted carrier address: in some trunk's networks, or loopback
    /// while loopback is the development trunk. Such sources are never rate limited,
    /// banned or locked out.
    pub fn allow_listed(&self, source: IpAddr) -> bool {
        (self.dev_loopback && is_loopback(source)) || self.trunks.iter().any(|t| t.allows(source))
    }

    /// The IP-authenticated trunk for `source` over `transport`, the most specific network
    /// first.
    pub fn by_source(&self, source: IpAddr, transport: Transport) -> Option<&Arc<TrunkEntry>> {
        self.trunks
            .iter()
            .filter(|t| t.ip_only() && t.admits_transport(transport))
            .filter_map(|t| t.best_prefix(source).map(|p| (p, t)))
            .max_by_key(|(p, _)| *p)
            .map(|(_, t)| t)
    }

    /// The digest trunks that could admit `source` over `transport`: digest-only trunks,
    /// and ip+digest trunks whose networks hold `source`.
    pub fn digest_candidates(
        &self,
        source: IpAddr,
        transport: Transport,
    ) -> impl Iterator<Item = &Arc<TrunkEntry>> {
        self.trunks.iter().filter(move |t| {
            t.admits_transport(transport)
                && match t.auth {
                    TrunkAuth::Digest => true,
                    TrunkAuth::IpDigest => t.allows(source),
                    TrunkAuth::Ip => false,
                }
        })
    }
}

/// Whether `addr` is a loopback address (IPv4-mapped loopback included).
pub fn is_loopback(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// The in-memory trunk set; cheap to clone and share.
#[derive(Clone)]
pub struct TrunkBook {
    current: Arc<RwLock<Arc<TrunkSet>>>,
    reload: Arc<tokio::sync::Mutex<u64>>,
}

impl Default for TrunkBook {
    fn default() -> Self {
        TrunkBook::from_set(TrunkSet::new(Vec::new(), false, 0))
    }
}

impl std::fmt::Debug for TrunkBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrunkBook")
            .field("generation", &self.snapshot().generation())
            .finish_non_exhaustive()
    }
}

impl TrunkBook {
    /// Loads every trunk from `store`.
    pub async fn load(store: &Store) -> Result<TrunkBook> {
        let book = TrunkBook::default();
        book.reload(store).await?;
        Ok(book)
    }

    /// A book holding exactly `set`.
    pub fn from_set(set: TrunkSet) -> TrunkBook {
        let generation = set.generation;
        TrunkBook {
            current: Arc::new(RwLock::new(Arc::new(set))),
            reload: Arc::new(tokio::sync::Mutex::new(generation)),
        }
    }

    /// The set as it stands.
    pub fn snapshot(&self) -> Arc<TrunkSet> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the set with the database's current content.
    pub async fn reload(&self, store: &Store) -> Result<()> {
        let mut generation = self.reload.lock().await;
        let any_configured = store.trunk_count().await? > 0;
        let enabled: Vec<TrunkEntry> = store
            .all_enabled_trunks()
            .await?
            .into_iter()
            .filter_map(TrunkEntry::from_credentials)
            .collect();
        *generation += 1;
        let set = TrunkSet::new(enabled, any_configured, *generation);
        let was_dev = self.snapshot().dev_loopback;
        if was_dev && !set.dev_loopback {
            tracing::info!("trunks configured: loopback is no longer a development trunk");
        }
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
        Ok(())
    }

    /// Reloads every `period` until the task is dropped.
    pub async fn run(self, store: Store, period: Duration) {
        let mut tick = tokio::time::interval(period);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = self.reload(&store).await {
                tracing::warn!(error = %e, "trunk reload failed; keeping the last set");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::Transport;

    fn entry(auth: TrunkAuth, cidrs: &[&str]) -> TrunkEntry {
        TrunkEntry {
            id: TrunkId::new(),
            tenant_id: None,
            name: "t".into(),
            transport: TrunkTransport::UDP,
            allowed: cidrs.iter().map(|c| Cidr::parse(c).unwrap()).collect(),
            auth,
            realm: Some("r".into()),
            username: Some("u".into()),
            ha1: Ha1Set::default(),
            algorithms: vec![DigestAlgorithm::Md5],
            max_concurrent_calls: None,
            country: CountryCode::parse("91").unwrap(),
            host: None,
            require_client_cert: false,
        }
    }

    #[test]
    fn networks_hold_their_addresses() {
        let cases = [
            ("10.0.0.0/8", "10.200.1.1", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("203.0.113.7", "203.0.113.7", true),
            ("203.0.113.7", "203.0.113.8", false),
            ("0.0.0.0/0", "198.51.100.1", true),
            ("2001:db8::/32", "2001:db8:ffff::1", true),
            ("2001:db8::/32", "2001:db9::1", false),
            ("127.0.0.1/32", "::ffff:127.0.0.1", true),
            ("::/0", "10.0.0.1", false),
            ("10.0.0.0/8", "::1", false),
        ];
        for (net, addr, inside) in cases {
            let cidr = Cidr::parse(net).unwrap();
            assert_eq!(cidr.contains(addr.parse().unwrap()), inside, "{net} {addr}");
        }
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/-1",
            "x/8",
            "10.0.0.0/8/8",
        ] {
            assert!(Cidr::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn most_specific_ip_trunk_wins() {
        let wide = entry(TrunkAuth::Ip, &["10.0.0.0/8"]);
        let narrow = entry(TrunkAuth::Ip, &["10.1.0.0/16"]);
        let narrow_id = narrow.id;
        let set = TrunkSet::new(vec![wide, narrow], true, 1);
        let hit = set.by_source("10.1.2.3".parse().unwrap(), Transport::Udp);
        assert_eq!(hit.map(|t| t.id), Some(narrow_id));
        assert!(
            set.by_source("192.0.2.1".parse().unwrap(), Transport::Udp)
                .is_none()
        );
    }

    #[test]
    fn digest_candidates_follow_the_auth_mode() {
        let ip = entry(TrunkAuth::Ip, &["10.0.0.0/8"]);
        let both = entry(TrunkAuth::IpDigest, &["10.0.0.0/8"]);
        let digest = entry(TrunkAuth::Digest, &[]);
        let (both_id, digest_id) = (both.id, digest.id);
        let set = TrunkSet::new(vec![ip, both, digest], true, 1);
        let inside: Vec<_> = set
            .digest_candidates("10.0.0.1".parse().unwrap(), Transport::Udp)
            .map(|t| t.id)
            .collect();
        assert_eq!(inside, [both_id, digest_id]);
        let outside: Vec<_> = set
            .digest_candidates("192.0.2.1".parse().unwrap(), Transport::Udp)
            .map(|t| t.id)
            .collect();
        assert_eq!(outside, [digest_id]);
    }

    #[test]
    fn a_tls_trunk_admits_only_tls() {
        let mut tls = entry(TrunkAuth::Ip, &["10.0.0.0/8"]);
        tls.transport = TrunkTransport::TLS;
        let set = TrunkSet::new(vec![tls], true, 1);
        let source = "10.0.0.1".parse().unwrap();
        assert!(set.by_source(source, Transport::Udp).is_none());
        assert!(set.by_source(source, Transport::Tcp).is_none());
        assert!(set.by_source(source, Transport::Tls).is_some());
    }

    #[test]
    fn loopback_is_a_development_trunk_only_without_trunks() {
        let empty = TrunkSet::new(Vec::new(), false, 1);
        assert!(empty.allow_listed("127.0.0.5".parse().unwrap()));
        assert!(empty.allow_listed("::1".parse().unwrap()));
        assert!(!empty.allow_listed("192.0.2.1".parse().unwrap()));
        let configured = TrunkSet::new(Vec::new(), true, 1);
        assert!(!configured.allow_listed("127.0.0.1".parse().unwrap()));
    }
}
