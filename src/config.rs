//! Configuration: defaults, then an optional TOML file, then environment variables, then
//! flags — each later source overrides the earlier ones.
//!
//! Every value from every source goes through the same validation, and an invalid one
//! stops the start with one line that names the setting and says why.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

use crate::gate::flood::FloodConfig;
use crate::gate::{GateConfig, Unadmitted};
use crate::ids::NodeId;
use crate::routing::e164::CountryCode;
use crate::store::DatabaseUrl;
use crate::targets::TargetPolicy;
use crate::transport::tcp::TcpLimits;
use crate::transport::tls::{TlsCerts, TlsFiles};

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "vca-sip",
    version,
    about = "SIP trunk edge for a multi-tenant Voice AI Agent platform",
    long_about = "vca-sip terminates carrier SIP trunks, maps each dialed number to one \
                  tenant, records and answers the call, and serves the tenant API.\n\n\
                  Settings come from defaults, then the --config TOML file, then environment \
                  variables, then flags (later ones win). With no settings at all, `vca-sip \
                  serve` keeps its data in ./vca-sip.db and serves the API on 127.0.0.1:8080."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply pending database migrations, then serve SIP and the HTTP API.
    Serve(Settings),
    /// Apply pending database migrations and exit.
    Migrate(Settings),
}

/// Settings given on the command line or in the environment.
#[derive(Debug, Clone, Default, Args)]
pub struct Settings {
    /// TOML file with any of the settings below (keys as the flags, with underscores).
    #[arg(long, env = "VCA_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Database: sqlite://FILE (default sqlite://vca-sip.db, created on first start) or
    /// postgres://USER:PASSWORD@HOST/DB.
    #[arg(long, env = "DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,
    /// This node's name among the nodes that share the database, unique to it and the
    /// same across its restarts: each call it records carries it, and at start it closes
    /// only the calls carrying it that a crash left live [default: the host name].
    #[arg(long, env = "VCA_NODE_ID", value_name = "NAME")]
    pub node_id: Option<String>,
    /// Address of the HTTP API [default: 127.0.0.1:8080].
    #[arg(long, env = "VCA_HTTP", value_name = "ADDR")]
    pub http: Option<String>,
    /// Address to receive SIP over UDP [default: 0.0.0.0:5060].
    #[arg(long, env = "VCA_SIP_UDP", value_name = "ADDR")]
    pub sip_udp: Option<String>,
    /// Address to receive SIP over TCP [default: 0.0.0.0:5060].
    #[arg(long, env = "VCA_SIP_TCP", value_name = "ADDR")]
    pub sip_tcp: Option<String>,
    /// Address to receive SIP over TLS, e.g. 0.0.0.0:5061; needs --tls-cert and
    /// --tls-key [default: none, TLS is off].
    #[arg(long, env = "VCA_SIP_TLS", value_name = "ADDR")]
    pub sip_tls: Option<String>,
    /// PEM certificate chain served over TLS, end-entity certificate first; re-read on
    /// SIGHUP.
    #[arg(long, env = "VCA_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the TLS certificate (PKCS#8, PKCS#1 or SEC1); re-read on SIGHUP.
    #[arg(long, env = "VCA_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle: TLS clients are asked for a certificate, and one they present must
    /// verify against it; clients without one still connect [default: none, not asked].
    #[arg(long, env = "VCA_TLS_CLIENT_CA", value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// Milliseconds a TLS handshake may take before the connection is closed
    /// [default: 5000].
    #[arg(long, env = "VCA_TLS_HANDSHAKE_TIMEOUT_MS", value_name = "MS")]
    pub tls_handshake_timeout_ms: Option<String>,
    /// RTP port range, LOW-HIGH; each call takes an even port and the odd one above it
    /// [default: 16384-32767].
    #[arg(long, env = "VCA_RTP_PORTS", value_name = "LOW-HIGH")]
    pub rtp_ports: Option<String>,
    /// The IP address put in SDP and Contact, for a server behind NAT [default: the SIP
    /// UDP address, or 127.0.0.1 when that is a wildcard].
    #[arg(long, env = "VCA_PUBLIC_IP", value_name = "IP")]
    pub public_ip: Option<String>,
    /// Milliseconds between 180 Ringing and 200 OK [default: 0, answer at once].
    #[arg(long, env = "VCA_RING_MS", value_name = "MS")]
    pub ring_ms: Option<String>,
    /// Seconds without RTP from the caller before the call is ended with a BYE; 0 disables
    /// [default: 30].
    #[arg(long, env = "VCA_MEDIA_TIMEOUT", value_name = "SECONDS")]
    pub media_timeout: Option<String>,
    /// Longest call in seconds before the server ends it with a BYE; 0 disables
    /// [default: 14400].
    #[arg(long, env = "VCA_MAX_CALL_DURATION", value_name = "SECONDS")]
    pub max_call_duration: Option<String>,
    /// Country calling code applied to national number forms arriving on the trunk
    /// [default: 91].
    #[arg(long, env = "VCA_DEFAULT_COUNTRY_CODE", value_name = "DIGITS")]
    pub default_country_code: Option<String>,
    /// What a request that no trunk admits gets: `drop` (no answer) or `403`
    /// [default: drop].
    #[arg(long, env = "VCA_UNADMITTED", value_name = "drop|403")]
    pub unadmitted: Option<String>,
    /// Requests a source outside every trunk network may send per flood window before it
    /// is banned [default: 16].
    #[arg(long, env = "VCA_FLOOD_MAX_REQUESTS", value_name = "N")]
    pub flood_max_requests: Option<String>,
    /// Length of the flood window in milliseconds [default: 2000].
    #[arg(long, env = "VCA_FLOOD_WINDOW_MS", value_name = "MS")]
    pub flood_window_ms: Option<String>,
    /// Seconds a banned source stays banned [default: 300].
    #[arg(long, env = "VCA_BAN_SECS", value_name = "SECONDS")]
    pub ban_secs: Option<String>,
    /// Seconds a digest nonce stays valid; older ones get `stale=true` [default: 30].
    #[arg(long, env = "VCA_NONCE_TTL_SECS", value_name = "SECONDS")]
    pub nonce_ttl_secs: Option<String>,
    /// Comma-separated User-Agent fragments that ban a source outside every trunk network
    /// at once; an empty value disables the check [default: friendly-scanner, sipvicious,
    /// sipcli, and other known scanners].
    #[arg(long, env = "VCA_SCANNER_AGENTS", value_name = "LIST")]
    pub scanner_agents: Option<String>,
    /// Let the targets tenants configure (agent streams, webhooks, tenant trunks) reach
    /// loopback, private, link-local and other non-public addresses; for tests and for
    /// agents on a private network. `--allow-private-targets` alone means true
    /// [default: false, such addresses are refused when connecting].
    #[arg(
        long,
        env = "VCA_ALLOW_PRIVATE_TARGETS",
        value_name = "true|false",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub allow_private_targets: Option<String>,
    /// Where the WAV recordings of calls on an AI profile with `record` are written, one
    /// folder per tenant [default: ./recordings].
    #[arg(long, env = "VCA_RECORDINGS_DIR", value_name = "DIR")]
    pub recordings_dir: Option<PathBuf>,
    /// Runs the media threads under the real-time FIFO scheduler at this priority (1-99), so
    /// that a 20 ms packet is not held back by other work on a busy machine; needs root or
    /// CAP_SYS_NICE, and without them the threads stay on normal scheduling with a warning
    /// [default: 0, normal scheduling].
    #[arg(long, env = "VCA_MEDIA_REALTIME_PRIORITY", value_name = "PRIORITY")]
    pub media_realtime_priority: Option<String>,
}

/// The keys a `--config` file may hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    database_url: Option<String>,
    node_id: Option<String>,
    http: Option<String>,
    sip_udp: Option<String>,
    sip_tcp: Option<String>,
    sip_tls: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    tls_handshake_timeout_ms: Option<u64>,
    rtp_ports: Option<String>,
    public_ip: Option<String>,
    ring_ms: Option<u64>,
    media_timeout: Option<u64>,
    max_call_duration: Option<u64>,
    default_country_code: Option<String>,
    unadmitted: Option<String>,
    flood_max_requests: Option<u64>,
    flood_window_ms: Option<u64>,
    ban_secs: Option<u64>,
    nonce_ttl_secs: Option<u64>,
    scanner_agents: Option<String>,
    allow_private_targets: Option<bool>,
    recordings_dir: Option<PathBuf>,
    media_realtime_priority: Option<u64>,
}

/// The resolved, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub database: DatabaseUrl,
    /// This node among those sharing the database.
    pub node_id: NodeId,
    pub http: SocketAddr,
    pub sip_udp: SocketAddr,
    pub sip_tcp: SocketAddr,
    /// SIP over TLS; `None` when TLS is off.
    pub tls: Option<TlsSettings>,
    pub rtp_ports: RangeInclusive<u16>,
    /// The address advertised in SDP and Contact.
    pub public_ip: IpAddr,
    pub ring: Duration,
    /// Zero disables the media timeout.
    pub media_timeout: Duration,
    /// Zero disables the limit.
    pub max_call_duration: Duration,
    pub default_country_code: CountryCode,
    /// Caps and deadlines of SIP over TCP, and of SIP over TLS (which counts its own
    /// connections against caps of the same size).
    pub tcp_limits: TcpLimits,
    /// Trunk admission, digest authentication and flood limits.
    pub gate: GateConfig,
    pub flood: FloodConfig,
    /// The platform admin's bearer token, from `VCA_ADMIN_TOKEN`; when unset it is kept
    /// in [`Config::admin_token_file`].
    pub admin_token: Option<String>,
    /// Whether the targets tenants configure may reach non-public addresses
    /// (`--allow-private-targets`); checked when they are connected to.
    pub target_policy: TargetPolicy,
    /// Where call recordings are written (`<dir>/<tenant_id>/<call_id>.wav`).
    pub recordings_dir: PathBuf,
    /// The real-time FIFO priority of the media threads; `None` for normal scheduling.
    pub media_realtime_priority: Option<u8>,
}

/// Where SIP over TLS is received and the files it is served from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub addr: SocketAddr,
    pub files: TlsFiles,
}

/// A setting that cannot be used, with the reason; printed as one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub setting: &'static str,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid setting `{}`: {}", self.setting, self.reason)
    }
}

impl std::error::Error for ConfigError {}

const DEFAULT_DATABASE_URL: &str = "sqlite://vca-sip.db";
const DEFAULT_HTTP: &str = "127.0.0.1:8080";
const DEFAULT_SIP: &str = "0.0.0.0:5060";
const DEFAULT_RECORDINGS_DIR: &str = "./recordings";

impl Config {
    /// Merges defaults, the file named by `settings.config`, and `settings` (which clap
    /// has already filled from flags over environment variables).
    pub fn load(settings: &Settings, admin_token: Option<String>) -> Result<Config, ConfigError> {
        let file = match &settings.config {
            Some(path) => read_file(path)?,
            None => FileSettings::default(),
        };
        let tls = tls_settings(settings, &file)?;
        let pick = |flag: &Option<String>, file: Option<String>, default: &str| {
            flag.clone().or(file).unwrap_or_else(|| default.to_owned())
        };
        let database_url = pick(
            &settings.database_url,
            file.database_url,
            DEFAULT_DATABASE_URL,
        );
        let database = DatabaseUrl::parse(&database_url).map_err(|reason| ConfigError {
            setting: "database_url",
            reason: format!("{database_url:?}: {reason}"),
        })?;
        let node_id = match settings.node_id.clone().or(file.node_id) {
            Some(name) => name,
            None => host_name()?,
        };
        let node_id = NodeId::parse(node_id.trim()).map_err(|why| ConfigError {
            setting: "node_id",
            reason: format!("{node_id:?} {why}"),
        })?;
        let admin_token = match admin_token {
            Some(token) if token.trim().len() < 16 => {
                return Err(ConfigError {
                    setting: "VCA_ADMIN_TOKEN",
                    reason: "must be at least 16 characters".to_owned(),
                });
            }
            other => other,
        };
        let sip_udp = socket_addr(
            "sip_udp",
            &pick(&settings.sip_udp, file.sip_udp, DEFAULT_SIP),
        )?;
        let public_ip = match settings.public_ip.clone().or(file.public_ip) {
            Some(ip) => ip.parse().map_err(|_| ConfigError {
                setting: "public_ip",
                reason: format!("{ip:?} is not an IP address"),
            })?,
            None if sip_udp.ip().is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            None => sip_udp.ip(),
        };
        let number =
            |setting: &'static str, flag: &Option<String>, file: Option<u64>, default| match flag {
                Some(text) => text.trim().parse::<u64>().map_err(|_| ConfigError {
                    setting,
                    reason: format!("{text:?} is not a whole number"),
                }),
                None => Ok(file.unwrap_or(default)),
            };
        let cc = pick(
            &settings.default_country_code,
            file.default_country_code,
            "91",
        );
        let unadmitted_text = pick(&settings.unadmitted, file.unadmitted, "drop");
        let unadmitted: Unadmitted =
            unadmitted_text
                .trim()
                .parse()
                .map_err(|reason| ConfigError {
                    setting: "unadmitted",
                    reason,
                })?;
        let flood_max = number(
            "flood_max_requests",
            &settings.flood_max_requests,
            file.flood_max_requests,
            16,
        )?;
        let flood_window = number(
            "flood_window_ms",
            &settings.flood_window_ms,
            file.flood_window_ms,
            2000,
        )?;
        let ban = number("ban_secs", &settings.ban_secs, file.ban_secs, 300)?;
        let media_realtime_priority = match number(
            "media_realtime_priority",
            &settings.media_realtime_priority,
            file.media_realtime_priority,
            0,
        )? {
            0 => None,
            p @ 1..=99 => Some(p as u8),
            _ => {
                return Err(ConfigError {
                    setting: "media_realtime_priority",
                    reason: "must be 0 (normal scheduling) or a priority from 1 to 99".to_owned(),
                });
            }
        };
        let nonce_ttl = number(
            "nonce_ttl_secs",
            &settings.nonce_ttl_secs,
            file.nonce_ttl_secs,
            30,
        )?;
        let target_policy = match &settings.allow_private_targets {
            Some(text) => match text.trim().to_ascii_lowercase().as_str() {
                "true" | "1" => TargetPolicy::AllowPrivate,
                "false" | "0" => TargetPolicy::PublicOnly,
                _ => {
                    return Err(ConfigError {
                        setting: "allow_private_targets",
                        reason: format!("{text:?} is not true or false"),
                    });
                }
            },
            None => match file.allow_private_targets {
                Some(true) => TargetPolicy::AllowPrivate,
                Some(false) | None => TargetPolicy::PublicOnly,
            },
        };
        let defaults = TcpLimits::default();
        let handshake_ms = number(
            "tls_handshake_timeout_ms",
            &settings.tls_handshake_timeout_ms,
            file.tls_handshake_timeout_ms,
            defaults.handshake_timeout.as_millis() as u64,
        )?;
        let tcp_limits = TcpLimits {
            handshake_timeout: Duration::from_millis(positive(
                "tls_handshake_timeout_ms",
                handshake_ms,
            )?),
            ..defaults
        };
        Ok(Config {
            database,
            node_id,
            http: socket_addr("http", &pick(&settings.http, file.http, DEFAULT_HTTP))?,
            sip_udp,
            sip_tcp: socket_addr(
                "sip_tcp",
                &pick(&settings.sip_tcp, file.sip_tcp, DEFAULT_SIP),
            )?,
            tls,
            rtp_ports: port_range(&pick(
                &settings.rtp_ports,
                file.rtp_ports,
                DEFAULT_RTP_PORTS,
            ))?,
            public_ip,
            ring: Duration::from_millis(number("ring_ms", &settings.ring_ms, file.ring_ms, 0)?),
            media_timeout: Duration::from_secs(number(
                "media_timeout",
                &settings.media_timeout,
                file.media_timeout,
                30,
            )?),
            max_call_duration: Duration::from_secs(number(
                "max_call_duration",
                &settings.max_call_duration,
                file.max_call_duration,
                4 * 3600,
            )?),
            default_country_code: CountryCode::parse(&cc).map_err(|e| ConfigError {
                setting: "default_country_code",
                reason: e.to_string(),
            })?,
            tcp_limits,
            gate: GateConfig {
                unadmitted,
                nonce_ttl_secs: positive("nonce_ttl_secs", nonce_ttl)?,
                scanner_agents: match settings.scanner_agents.clone().or(file.scanner_agents) {
                    Some(list) => list
                        .split(',')
                        .map(|s| s.trim().to_ascii_lowercase())
                        .filter(|s| !s.is_empty())
                        .collect(),
                    None => GateConfig::default().scanner_agents,
                },
                ..GateConfig::default()
            },
            flood: FloodConfig {
                max_requests: u32::try_from(positive("flood_max_requests", flood_max)?).map_err(
                    |_| ConfigError {
                        setting: "flood_max_requests",
                        reason: "too large".to_owned(),
                    },
                )?,
                window: Duration::from_millis(positive("flood_window_ms", flood_window)?),
                ban: Duration::from_secs(positive("ban_secs", ban)?),
                ..FloodConfig::default()
            },
            admin_token,
            target_policy,
            recordings_dir: settings
                .recordings_dir
                .clone()
                .or(file.recordings_dir)
                .filter(|dir| !dir.as_os_str().is_empty())
                .unwrap_or_else(|| PathBuf::from(DEFAULT_RECORDINGS_DIR)),
            media_realtime_priority,
        })
    }

    /// Where the generated admin token is kept: beside the database.
    pub fn admin_token_file(&self) -> PathBuf {
        self.database.data_dir().join("vca-sip.admin-token")
    }
}

/// The TLS settings: off without `sip_tls`; with it, the certificate and key are required
/// and every file is read now, so that a missing, unreadable or mismatched one stops the
/// start instead of the first handshake.
fn tls_settings(
    settings: &Settings,
    file: &FileSettings,
) -> Result<Option<TlsSettings>, ConfigError> {
    let cert = settings.tls_cert.clone().or(file.tls_cert.clone());
    let key = settings.tls_key.clone().or(file.tls_key.clone());
    let client_ca = settings
        .tls_client_ca
        .clone()
        .or(file.tls_client_ca.clone());
    let Some(addr) = settings.sip_tls.clone().or(file.sip_tls.clone()) else {
        let stray = [
            ("tls_cert", cert.is_some()),
            ("tls_key", key.is_some()),
            ("tls_client_ca", client_ca.is_some()),
        ];
        return match stray.iter().find(|(_, set)| *set) {
            Some((setting, _)) => Err(ConfigError {
                setting,
                reason: "is set but sip_tls is not: set sip_tls to serve SIP over TLS".to_owned(),
            }),
            None => Ok(None),
        };
    };
    let addr = socket_addr("sip_tls", &addr)?;
    let required = |setting: &'static str, value: Option<PathBuf>| {
        value.ok_or_else(|| ConfigError {
            setting,
            reason: "is required when sip_tls is set".to_owned(),
        })
    };
    let files = TlsFiles {
        cert: required("tls_cert", cert)?,
        key: required("tls_key", key)?,
        client_ca,
    };
    TlsCerts::load(files.clone()).map_err(|e| ConfigError {
        setting: e.setting(),
        reason: e.to_string(),
    })?;
    Ok(Some(TlsSettings { addr, files }))
}

fn read_file(path: &Path) -> Result<FileSettings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        setting: "config",
        reason: format!("cannot read {}: {e}", path.display()),
    })?;
    toml::from_str(&text).map_err(|e| ConfigError {
        setting: "config",
        reason: format!("{}: {}", path.display(), e.message()),
    })
}

/// Where Linux keeps the host name (the `nodename` of uname(2)).
const HOST_NAME_FILE: &str = "/proc/sys/kernel/hostname";

/// The host name, the default node id.
fn host_name() -> Result<String, ConfigError> {
    let name = std::fs::read_to_string(HOST_NAME_FILE).map_err(|e| ConfigError {
        setting: "node_id",
        reason: format!("is not set and the host name cannot be read from {HOST_NAME_FILE}: {e}"),
    })?;
    Ok(name.trim().to_owned())
}

const DEFAULT_RTP_PORTS: &str = "16384-32767";

fn port_range(value: &str) -> Result<RangeInclusive<u16>, ConfigError> {
    let bad = |why: &str| ConfigError {
        setting: "rtp_ports",
        reason: format!("{value:?}: {why}"),
    };
    let (low, high) = value
        .split_once('-')
        .ok_or_else(|| bad("expected LOW-HIGH, e.g. 16384-32767"))?;
    let low: u16 = low
        .trim()
        .parse()
        .map_err(|_| bad("LOW is not a port number"))?;
    let high: u16 = high
        .trim()
        .parse()
        .map_err(|_| bad("HIGH is not a port number"))?;
    if low < 1024 || high <= low {
        return Err(bad("need 1024 <= LOW < HIGH"));
    }
    Ok(low..=high)
}

fn positive(setting: &'static str, value: u64) -> Result<u64, ConfigError> {
    if value == 0 {
        return Err(ConfigError {
            setting,
            reason: "must be greater than 0".to_owned(),
        });
    }
    Ok(value)
}

fn socket_addr(setting: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| ConfigError {
        setting,
        reason: format!("{value:?} is not an IP address and port, e.g. 127.0.0.1:8080"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_no_setup() {
        let config = Config::load(&Settings::default(), None).unwrap();
        assert_eq!(
            config.database,
            DatabaseUrl::Sqlite(PathBuf::from("vca-sip.db"))
        );
        assert_eq!(config.http, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.sip_udp, "0.0.0.0:5060".parse().unwrap());
        assert_eq!(config.tls, None, "TLS is off unless asked for");
        assert_eq!(config.recordings_dir, PathBuf::from("./recordings"));
        assert_eq!(
            config.admin_token_file(),
            PathBuf::from("./vca-sip.admin-token")
        );
    }

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vca.toml");
        std::fs::write(
            &file,
            "http = \"127.0.0.1:9000\"\nsip_udp = \"127.0.0.1:5070\"\n",
        )
        .unwrap();
        let settings = Settings {
            config: Some(file),
            sip_udp: Some("127.0.0.1:5080".to_owned()),
            ..Settings::default()
        };
        let config = Config::load(&settings, None).unwrap();
        assert_eq!(config.http, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(config.sip_udp, "127.0.0.1:5080".parse().unwrap());
        assert_eq!(config.sip_tcp, "0.0.0.0:5060".parse().unwrap());
    }

    #[test]
    fn the_media_realtime_priority_is_off_unless_set_within_range() {
        let load = |settings: Settings| Config::load(&settings, None);
        assert_eq!(
            load(Settings::default()).unwrap().media_realtime_priority,
            None
        );
        let set = |text: &str| Settings {
            media_realtime_priority: Some(text.to_owned()),
            ..Settings::default()
        };
        assert_eq!(load(set("10")).unwrap().media_realtime_priority, Some(10));
        assert_eq!(load(set("0")).unwrap().media_realtime_priority, None);
        for bad in ["100", "-1", "high"] {
            let err = load(set(bad)).unwrap_err();
            assert_eq!(err.setting, "media_realtime_priority", "{bad}");
        }
    }

    #[test]
    fn the_recordings_dir_comes_from_the_flag_or_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vca.toml");
        std::fs::write(&file, "recordings_dir = \"/srv/vca/recordings\"\n").unwrap();
        let from_file = Settings {
            config: Some(file.clone()),
            ..Settings::default()
        };
        let config = Config::load(&from_file, None).unwrap();
        assert_eq!(config.recordings_dir, PathBuf::from("/srv/vca/recordings"));
        let from_flag = Settings {
            config: Some(file),
            recordings_dir: Some(PathBuf::from("rec")),
            ..Settings::default()
        };
        let config = Config::load(&from_flag, None).unwrap();
        assert_eq!(config.recordings_dir, PathBuf::from("rec"));
    }

    #[test]
    fn bad_values_name_the_setting() {
        let settings = Settings {
            http: Some("localhost".to_owned()),
            ..Settings::default()
        };
        assert_eq!(Config::load(&settings, None).unwrap_err().setting, "http");
        let settings = Settings {
            database_url: Some("mysql://x".to_owned()),
            ..Settings::default()
        };
        assert_eq!(
            Config::load(&settings, None).unwrap_err().setting,
            "database_url"
        );
        let err = Config::load(&Settings::default(), Some("short".to_owned())).unwrap_err();
        assert_eq!(err.setting, "VCA_ADMIN_TOKEN");
        for (settings, name) in [
            (
                Settings {
                    rtp_ports: Some("5000".to_owned()),
                    ..Settings::default()
                },
                "rtp_ports",
            ),
            (
                Settings {
                    rtp_ports: Some("9000-8000".to_owned()),
                    ..Settings::default()
                },
                "rtp_ports",
            ),
            (
                Settings {
                    public_ip: Some("host".to_owned()),
                    ..Settings::default()
                },
                "public_ip",
            ),
            (
                Settings {
                    ring_ms: Some("-1".to_owned()),
                    ..Settings::default()
                },
                "ring_ms",
            ),
            (
                Settings {
                    media_timeout: Some("x".to_owned()),
                    ..Settings::default()
                },
                "media_timeout",
            ),
            (
                Settings {
                    default_country_code: Some("+91".to_owned()),
                    ..Settings::default()
                },
                "default_country_code",
            ),
        ] {
            assert_eq!(Config::load(&settings, None).unwrap_err().setting, name);
        }
    }

    #[test]
    fn the_node_id_is_the_host_name_unless_set() {
        let host = std::fs::read_to_string(HOST_NAME_FILE).unwrap();
        let config = Config::load(&Settings::default(), None).unwrap();
        assert_eq!(config.node_id.as_str(), host.trim());

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vca.toml");
        std::fs::write(&file, "node_id = \"edge-1.example\"\n").unwrap();
        let from_file = Settings {
            config: Some(file),
            ..Settings::default()
        };
        let config = Config::load(&from_file, None).unwrap();
        assert_eq!(config.node_id.as_str(), "edge-1.example");
        let flag = Settings {
            node_id: Some("edge_2".to_owned()),
            ..from_file
        };
        assert_eq!(
            Config::load(&flag, None).unwrap().node_id.as_str(),
            "edge_2"
        );

        for bad in ["", "edge 3", "edge/3", "é", &"n".repeat(254)] {
            let settings = Settings {
                node_id: Some(bad.to_owned()),
                ..Settings::default()
            };
            let err = Config::load(&settings, None).unwrap_err();
            assert_eq!(err.setting, "node_id", "{bad:?}");
        }
        let longest = Settings {
            node_id: Some("n".repeat(253)),
            ..Settings::default()
        };
        assert_eq!(
            Config::load(&longest, None).unwrap().node_id.as_str().len(),
            253
        );
    }

    #[test]
    fn private_targets_are_refused_unless_allowed_by_flag_or_file() {
        assert_eq!(
            Config::load(&Settings::default(), None)
                .unwrap()
                .target_policy,
            TargetPolicy::PublicOnly
        );
        let parse = |args: &[&str]| match Cli::try_parse_from(args).unwrap().command {
            Command::Serve(settings) | Command::Migrate(settings) => settings,
        };
        let bare = parse(&["vca-sip", "serve", "--allow-private-targets"]);
        assert_eq!(bare.allow_private_targets.as_deref(), Some("true"));
        assert_eq!(
            Config::load(&bare, None).unwrap().target_policy,
            TargetPolicy::AllowPrivate
        );
        let off = parse(&["vca-sip", "serve", "--allow-private-targets=false"]);
        assert_eq!(
            Config::load(&off, None).unwrap().target_policy,
            TargetPolicy::PublicOnly
        );
        let then_flag = parse(&[
            "vca-sip",
            "serve",
            "--allow-private-targets",
            "--http",
            "127.0.0.1:1",
        ]);
        assert_eq!(then_flag.allow_private_targets.as_deref(), Some("true"));
        assert_eq!(then_flag.http.as_deref(), Some("127.0.0.1:1"));

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vca.toml");
        std::fs::write(&file, "allow_private_targets = true\n").unwrap();
        let from_file = Settings {
            config: Some(file),
            ..Settings::default()
        };
        assert_eq!(
            Config::load(&from_file, None).unwrap().target_policy,
            TargetPolicy::AllowPrivate
        );
        let overridden = Settings {
            allow_private_targets: Some("0".to_owned()),
            ..from_file
        };
        assert_eq!(
            Config::load(&overridden, None).unwrap().target_policy,
            TargetPolicy::PublicOnly
        );
        let bad = Settings {
            allow_private_targets: Some("maybe".to_owned()),
            ..Settings::default()
        };
        assert_eq!(
            Config::load(&bad, None).unwrap_err().setting,
            "allow_private_targets"
        );
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vca.toml");
        std::fs::write(&file, "htp = \"127.0.0.1:9000\"\n").unwrap();
        let settings = Settings {
            config: Some(file),
            ..Settings::default()
        };
        let err = Config::load(&settings, None).unwrap_err();
        assert_eq!(err.setting, "config");
        assert!(err.reason.contains("htp"), "{err}");
    }

    #[test]
    fn database_urls() {
        assert_eq!(
            DatabaseUrl::parse("sqlite:///var/lib/vca/vca.db").unwrap(),
            DatabaseUrl::Sqlite(PathBuf::from("/var/lib/vca/vca.db"))
        );
        assert_eq!(
            DatabaseUrl::parse("data/vca.db").unwrap().data_dir(),
            PathBuf::from("data")
        );
        assert!(matches!(
            DatabaseUrl::parse("postgres://vca@localhost/vca").unwrap(),
            DatabaseUrl::Postgres(_)
        ));
        assert!(DatabaseUrl::parse("sqlite::memory:").is_err());
    }
}
