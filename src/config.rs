//! Configuration: defaults, then an optional TOML file, then environment variables, then
//! flags — each later source overrides the earlier ones.
//!
//! Every value from every source goes through the same validation, and an invalid one
//! stops the start with one line that names the setting and says why.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

use crate::store::DatabaseUrl;

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
    /// Address of the HTTP API [default: 127.0.0.1:8080].
    #[arg(long, env = "VCA_HTTP", value_name = "ADDR")]
    pub http: Option<String>,
    /// Address to receive SIP over UDP [default: 0.0.0.0:5060].
    #[arg(long, env = "VCA_SIP_UDP", value_name = "ADDR")]
    pub sip_udp: Option<String>,
    /// Address to receive SIP over TCP [default: 0.0.0.0:5060].
    #[arg(long, env = "VCA_SIP_TCP", value_name = "ADDR")]
    pub sip_tcp: Option<String>,
}

/// The keys a `--config` file may hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    database_url: Option<String>,
    http: Option<String>,
    sip_udp: Option<String>,
    sip_tcp: Option<String>,
}

/// The resolved, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub database: DatabaseUrl,
    pub http: SocketAddr,
    pub sip_udp: SocketAddr,
    pub sip_tcp: SocketAddr,
    /// The platform admin's bearer token, from `VCA_ADMIN_TOKEN`; when unset it is kept
    /// in [`Config::admin_token_file`].
    pub admin_token: Option<String>,
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

impl Config {
    /// Merges defaults, the file named by `settings.config`, and `settings` (which clap
    /// has already filled from flags over environment variables).
    pub fn load(settings: &Settings, admin_token: Option<String>) -> Result<Config, ConfigError> {
        let file = match &settings.config {
            Some(path) => read_file(path)?,
            None => FileSettings::default(),
        };
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
        let admin_token = match admin_token {
            Some(token) if token.trim().len() < 16 => {
                return Err(ConfigError {
                    setting: "VCA_ADMIN_TOKEN",
                    reason: "must be at least 16 characters".to_owned(),
                });
            }
            other => other,
        };
        Ok(Config {
            database,
            http: socket_addr("http", &pick(&settings.http, file.http, DEFAULT_HTTP))?,
            sip_udp: socket_addr(
                "sip_udp",
                &pick(&settings.sip_udp, file.sip_udp, DEFAULT_SIP),
            )?,
            sip_tcp: socket_addr(
                "sip_tcp",
                &pick(&settings.sip_tcp, file.sip_tcp, DEFAULT_SIP),
            )?,
            admin_token,
        })
    }

    /// Where the generated admin token is kept: beside the database.
    pub fn admin_token_file(&self) -> PathBuf {
        self.database.data_dir().join("vca-sip.admin-token")
    }
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
