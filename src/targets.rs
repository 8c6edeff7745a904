//! Targets that tenants configure (an agent's `stream_url`, a webhook's `url`, a tenant
//! trunk's `host`): where vca-sip connects on a tenant's behalf, checked when it connects.
//!
//! A tenant must not be able to point vca-sip at the platform's own network: its loopback
//! services, cloud metadata (169.254.169.254), the private networks it runs in. So before
//! connecting, the target's host is resolved and every address it resolves to is
//! classified ([`classify`]); one that is loopback, unspecified (which reaches the local
//! host on Linux), private (RFC 1918, RFC 6598 shared space, site-local), link-local,
//! unique-local (RFC 4193), multicast, broadcast or otherwise reserved (documentation,
//! benchmarking, the future-use block) refuses the whole target, unless the server runs
//! with `--allow-private-targets` (tests, and deployments whose agents are on a private
//! network). IPv6 addresses that carry an IPv4 address (IPv4-mapped, NAT64's well-known
//! prefix, 6to4) are classified by that IPv4 address, since that is where they lead.
//!
//! Platform (admin) configuration is trusted and not checked. The API checks only a
//! target's syntax when it is written: what a name resolves to can change at any time.
//!
//! The caller connects to the addresses [`resolve`] returns, never to the name again, so
//! that a second lookup cannot answer with an address the check did not see (DNS
//! rebinding); TLS still names the host (SNI, certificate check). [`resolve`] sets no
//! deadline of its own: the caller bounds it with its connect timeout.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Whether tenants' targets may reach restricted addresses (`--allow-private-targets`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TargetPolicy {
    /// Only public addresses: the default.
    #[default]
    PublicOnly,
    /// Any address, restricted ones included.
    AllowPrivate,
}

/// The kinds of address a tenant's target may not reach (unless allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Restricted {
    /// 0.0.0.0/8, `::`: connecting there reaches the local host.
    Unspecified,
    /// 127.0.0.0/8, `::1`.
    Loopback,
    /// 10/8, 172.16/12, 192.168/16 (RFC 1918), 100.64/10 (RFC 6598 shared address space),
    /// fec0::/10 (site-local), 64:ff9b:1::/48 (RFC 8215 local-use translation).
    Private,
    /// 169.254/16, fe80::/10.
    LinkLocal,
    /// fc00::/7 (RFC 4193).
    UniqueLocal,
    /// 224/4, ff00::/8.
    Multicast,
    /// 255.255.255.255.
    Broadcast,
    /// Never a public host: 192.0.0/24 (IETF protocol assignments), 192.0.2/24,
    /// 198.51.100/24, 203.0.113/24 and 2001:db8::/32 (documentation), 198.18/15
    /// (benchmarking), 240/4 (future use), 100::/64 (discard), and the deprecated
    /// IPv4-compatible IPv6 addresses (::/96).
    Reserved,
}

impl fmt::Display for Restricted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Restricted::Unspecified => "unspecified",
            Restricted::Loopback => "loopback",
            Restricted::Private => "private",
            Restricted::LinkLocal => "link-local",
            Restricted::UniqueLocal => "unique-local",
            Restricted::Multicast => "multicast",
            Restricted::Broadcast => "broadcast",
            Restricted::Reserved => "reserved",
        })
    }
}

/// Why a target cannot be connected to.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    #[error("{host} cannot be resolved: {source}")]
    Unresolved {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{host} resolves to no address")]
    NoAddress { host: String },
    #[error("{host} resolves to {addr}, a {class} address, which tenants' targets may not reach")]
    Refused {
        host: String,
        addr: IpAddr,
        class: Restricted,
    },
}

/// The restricted kind `ip` is of, or `None` for an address a tenant's target may reach.
pub fn classify(ip: IpAddr) -> Option<Restricted> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// Whether `ip` is inside `net`/`prefix`.
fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn classify_v4(ip: Ipv4Addr) -> Option<Restricted> {
    use Restricted::*;
    const TABLE: &[([u8; 4], u32, Restricted)] = &[
        ([0, 0, 0, 0], 8, Unspecified),
        ([127, 0, 0, 0], 8, Loopback),
        ([10, 0, 0, 0], 8, Private),
        ([172, 16, 0, 0], 12, Private),
        ([192, 168, 0, 0], 16, Private),
        ([100, 64, 0, 0], 10, Private),
        ([169, 254, 0, 0], 16, LinkLocal),
        ([224, 0, 0, 0], 4, Multicast),
        ([255, 255, 255, 255], 32, Broadcast),
        ([240, 0, 0, 0], 4, Reserved),
        ([192, 0, 0, 0], 24, Reserved),
        ([192, 0, 2, 0], 24, Reserved),
        ([198, 51, 100, 0], 24, Reserved),
        ([203, 0, 113, 0], 24, Reserved),
        ([198, 18, 0, 0], 15, Reserved),
    ];
    TABLE
        .iter()
        .find(|(net, prefix, _)| in_v4(ip, *net, *prefix))
        .map(|(_, _, class)| *class)
}

/// The IPv4 address held in two IPv6 segments.
fn v4_of(high: u16, low: u16) -> Ipv4Addr {
    Ipv4Addr::from((u32::from(high) << 16) | u32::from(low))
}

fn classify_v6(ip: Ipv6Addr) -> Option<Restricted> {
    use Restricted::*;
    let s = ip.segments();
    if ip.is_unspecified() {
        return Some(Unspecified);
    }
    if ip.is_loopback() {
        return Some(Loopback);
    }
    // Addresses that lead to an IPv4 address are what that address is.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return classify_v4(v4_of(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return classify_v4(v4_of(s[1], s[2]));
    }
    let first = s[0];
    if s[..6] == [0; 6] {
        // ::a.b.c.d, IPv4-compatible (RFC 4291 §2.5.5.1): deprecated, never a public host.
        return Some(Reserved);
    }
    if first & 0xff00 == 0xff00 {
        return Some(Multicast);
    }
    if first & 0xffc0 == 0xfe80 {
        return Some(LinkLocal);
    }
    if first & 0xffc0 == 0xfec0 {
        return Some(Private);
    }
    if first & 0xfe00 == 0xfc00 {
        return Some(UniqueLocal);
    }
    if s[..3] == [0x64, 0xff9b, 1] {
        return Some(Private);
    }
    if s[..2] == [0x2001, 0x0db8] || s[..4] == [0x100, 0, 0, 0] {
        return Some(Reserved);
    }
    None
}

/// Checks every address `host` resolved to: all of them when each may be reached under
/// `policy`, else the first refused one.
pub fn check_addresses(
    host: &str,
    addrs: impl IntoIterator<Item = SocketAddr>,
    policy: TargetPolicy,
) -> Result<Vec<SocketAddr>, TargetError> {
    let addrs: Vec<SocketAddr> = addrs.into_iter().collect();
    if addrs.is_empty() {
        return Err(TargetError::NoAddress {
            host: host.to_owned(),
        });
    }
    if policy == TargetPolicy::PublicOnly {
        for addr in &addrs {
            if let Some(class) = classify(addr.ip()) {
                return Err(TargetError::Refused {
                    host: host.to_owned(),
                    addr: addr.ip(),
                    class,
                });
            }
        }
    }
    Ok(addrs)
}

/// Resolves a target's `host` (a name, an IP address, or an IPv6 address in brackets as a
/// URL writes it) and `port`, and returns the addresses to connect to when every one of
/// them may be reached under `policy`.
pub async fn resolve(
    host: &str,
    port: u16,
    policy: TargetPolicy,
) -> Result<Vec<SocketAddr>, TargetError> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let addrs = tokio::net::lookup_host((bare, port))
        .await
        .map_err(|source| TargetError::Unresolved {
            host: host.to_owned(),
            source,
        })?;
    check_addresses(host, addrs, policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind, at and just past the edges of its ranges.
    const TABLE: &[(&str, Option<Restricted>)] = {
        use Restricted::*;
        &[
            // IPv4 public
            ("8.8.8.8", None),
            ("1.1.1.1", None),
            ("1.0.0.0", None),
            ("9.255.255.255", None),
            ("11.0.0.0", None),
            ("126.255.255.255", None),
            ("128.0.0.0", None),
            ("172.15.255.255", None),
            ("172.32.0.0", None),
            ("192.167.255.255", None),
            ("192.169.0.0", None),
            ("100.63.255.255", None),
            ("100.128.0.0", None),
            ("169.253.255.255", None),
            ("169.255.0.0", None),
            ("192.0.1.0", None),
            ("192.0.3.0", None),
            ("198.17.255.255", None),
            ("198.20.0.0", None),
            ("198.51.99.255", None),
            ("203.0.112.255", None),
            ("223.255.255.255", None),
            // IPv4 unspecified and "this network"
            ("0.0.0.0", Some(Unspecified)),
            ("0.1.2.3", Some(Unspecified)),
            ("0.255.255.255", Some(Unspecified)),
            // IPv4 loopback
            ("127.0.0.1", Some(Loopback)),
            ("127.0.0.0", Some(Loopback)),
            ("127.255.255.255", Some(Loopback)),
            ("127.1.2.3", Some(Loopback)),
            // IPv4 private and shared
            ("10.0.0.0", Some(Private)),
            ("10.255.255.255", Some(Private)),
            ("172.16.0.0", Some(Private)),
            ("172.31.255.255", Some(Private)),
            ("192.168.0.0", Some(Private)),
            ("192.168.255.255", Some(Private)),
            ("100.64.0.0", Some(Private)),
            ("100.127.255.255", Some(Private)),
            // IPv4 link-local, including cloud metadata
            ("169.254.0.0", Some(LinkLocal)),
            ("169.254.169.254", Some(LinkLocal)),
            ("169.254.255.255", Some(LinkLocal)),
            // IPv4 multicast and broadcast
            ("224.0.0.0", Some(Multicast)),
            ("224.0.0.251", Some(Multicast)),
            ("239.255.255.255", Some(Multicast)),
            ("255.255.255.255", Some(Broadcast)),
            // IPv4 reserved
            ("240.0.0.0", Some(Reserved)),
            ("255.255.255.254", Some(Reserved)),
            ("192.0.0.0", Some(Reserved)),
            ("192.0.0.255", Some(Reserved)),
            ("192.0.2.1", Some(Reserved)),
            ("198.51.100.7", Some(Reserved)),
            ("203.0.113.200", Some(Reserved)),
            ("198.18.0.0", Some(Reserved)),
            ("198.19.255.255", Some(Reserved)),
            // IPv6 public
            ("2606:4700:4700::1111", None),
            ("2001:4860:4860::8888", None),
            ("2a00:1450::1", None),
            ("2001:db7:ffff::1", None),
            ("2001:db9::1", None),
            ("fbff:ffff::1", None),
            ("fe00::1", None),
            ("64:ff9a::1", None),
            ("100::1:0:0:0:1", None),
            // IPv6 unspecified and loopback
            ("::", Some(Unspecified)),
            ("::1", Some(Loopback)),
            // IPv6 link-local, site-local, unique-local
            ("fe80::1", Some(LinkLocal)),
            ("febf:ffff::1", Some(LinkLocal)),
            ("fec0::1", Some(Private)),
            ("feff::1", Some(Private)),
            ("fc00::", Some(UniqueLocal)),
            ("fd12:3456:789a::1", Some(UniqueLocal)),
            ("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some(UniqueLocal)),
            // IPv6 multicast
            ("ff02::1", Some(Multicast)),
            ("ff0e::1", Some(Multicast)),
            ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Some(Multicast)),
            // IPv6 reserved
            ("2001:db8::1", Some(Reserved)),
            ("2001:db8:ffff:ffff::1", Some(Reserved)),
            ("100::", Some(Reserved)),
            ("100::ffff:ffff:ffff:ffff", Some(Reserved)),
            ("::2", Some(Reserved)),
            ("::127.0.0.1", Some(Reserved)),
            ("::8.8.8.8", Some(Reserved)),
            // IPv4-mapped IPv6: the IPv4 address decides
            ("::ffff:8.8.8.8", None),
            ("::ffff:127.0.0.1", Some(Loopback)),
            ("::ffff:0.0.0.0", Some(Unspecified)),
            ("::ffff:10.1.2.3", Some(Private)),
            ("::ffff:172.20.0.1", Some(Private)),
            ("::ffff:192.168.1.1", Some(Private)),
            ("::ffff:100.100.0.1", Some(Private)),
            ("::ffff:169.254.169.254", Some(LinkLocal)),
            ("::ffff:224.0.0.1", Some(Multicast)),
            ("::ffff:255.255.255.255", Some(Broadcast)),
            ("::ffff:7f00:1", Some(Loopback)),
            // NAT64 (RFC 6052 well-known prefix; RFC 8215 local use)
            ("64:ff9b::8.8.8.8", None),
            ("64:ff9b::127.0.0.1", Some(Loopback)),
            ("64:ff9b::10.0.0.1", Some(Private)),
            ("64:ff9b::169.254.169.254", Some(LinkLocal)),
            ("64:ff9b:1::8.8.8.8", Some(Private)),
            // 6to4: the embedded IPv4 address decides
            ("2002:808:808::1", None),
            ("2002:7f00:1::1", Some(Loopback)),
            ("2002:c0a8:101::1", Some(Private)),
            ("2002:a9fe:a9fe::", Some(LinkLocal)),
        ]
    };

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn every_address_is_classified_as_its_range() {
        let wrong: Vec<String> = TABLE
            .iter()
            .filter_map(|(text, expected)| {
                let got = classify(ip(text));
                (got != *expected).then(|| format!("{text}: got {got:?}, expected {expected:?}"))
            })
            .collect();
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn the_classes_agree_with_the_standard_library_where_it_has_an_opinion() {
        for (text, class) in TABLE {
            let ip = ip(text);
            let std_restricted = ip.is_loopback() || ip.is_unspecified() || ip.is_multicast();
            if std_restricted {
                assert!(class.is_some(), "{text} is restricted by std's own tests");
            }
            if let IpAddr::V4(v4) = ip
                && (v4.is_private() || v4.is_link_local() || v4.is_broadcast())
            {
                assert!(class.is_some(), "{text}");
            }
        }
    }

    #[test]
    fn one_refused_address_refuses_the_target_unless_private_targets_are_allowed() {
        let public: SocketAddr = "8.8.8.8:443".parse().unwrap();
        let metadata: SocketAddr = "169.254.169.254:80".parse().unwrap();
        let v6_loopback: SocketAddr = "[::1]:443".parse().unwrap();
        assert_eq!(
            check_addresses("agent.example", [public], TargetPolicy::PublicOnly).unwrap(),
            [public]
        );
        let err = check_addresses(
            "agent.example",
            [public, metadata],
            TargetPolicy::PublicOnly,
        )
        .unwrap_err();
        match &err {
            TargetError::Refused { host, addr, class } => {
                assert_eq!(host, "agent.example");
                assert_eq!(*addr, metadata.ip());
                assert_eq!(*class, Restricted::LinkLocal);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            err.to_string(),
            "agent.example resolves to 169.254.169.254, a link-local address, \
             which tenants' targets may not reach"
        );
        assert_eq!(
            check_addresses(
                "agent.example",
                [public, metadata, v6_loopback],
                TargetPolicy::AllowPrivate
            )
            .unwrap(),
            [public, metadata, v6_loopback]
        );
        assert!(matches!(
            check_addresses("agent.example", [], TargetPolicy::AllowPrivate),
            Err(TargetError::NoAddress { .. })
        ));
    }

    #[tokio::test]
    async fn resolved_names_and_literals_are_checked_on_every_address() {
        for host in ["127.0.0.1", "[::1]", "::1", "localhost"] {
            let err = resolve(host, 8080, TargetPolicy::PublicOnly)
                .await
                .expect_err(host);
            assert!(
                matches!(
                    err,
                    TargetError::Refused {
                        class: Restricted::Loopback,
                        ..
                    }
                ),
                "{host}: {err}"
            );
            let addrs = resolve(host, 8080, TargetPolicy::AllowPrivate)
                .await
                .unwrap_or_else(|e| panic!("{host}: {e}"));
            assert!(
                addrs
                    .iter()
                    .all(|a| a.ip().is_loopback() && a.port() == 8080),
                "{host}: {addrs:?}"
            );
        }
        // A literal needs no lookup, so a public one passes without any network.
        assert_eq!(
            resolve("203.0.114.9", 443, TargetPolicy::PublicOnly)
                .await
                .unwrap(),
            ["203.0.114.9:443".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            resolve("[2606:4700::1]", 443, TargetPolicy::PublicOnly)
                .await
                .unwrap(),
            ["[2606:4700::1]:443".parse::<SocketAddr>().unwrap()]
        );
        assert!(matches!(
            resolve("0.0.0.0", 80, TargetPolicy::PublicOnly).await,
            Err(TargetError::Refused {
                class: Restricted::Unspecified,
                ..
            })
        ));
        // A name the resolver cannot even be asked about fails before any lookup.
        assert!(matches!(
            resolve("bad\0host", 80, TargetPolicy::AllowPrivate).await,
            Err(TargetError::Unresolved { .. })
        ));
    }
}
