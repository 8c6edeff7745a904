//! The `vca-sip` binary as a child process, for tests that signal or kill it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_vca-sip");

/// `vca-sip` with a clean environment in `dir`.
pub fn command(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .env_remove("VCA_ADMIN_TOKEN")
        .env_remove("DATABASE_URL")
        .env_remove("VCA_NODE_ID")
        .env_remove("VCA_HTTP")
        .env_remove("VCA_CONFIG")
        .env_remove("VCA_SIP_TLS")
        .env_remove("VCA_TLS_CERT")
        .env_remove("VCA_TLS_KEY")
        .env_remove("VCA_TLS_CLIENT_CA")
        .env("RUST_LOG", "warn");
    cmd
}

/// A running `vca-sip serve` and what it said at start.
pub struct Served {
    pub child: Child,
    pub http: String,
    pub sip_udp: SocketAddr,
    /// Where it takes SIP over TLS, when it was started with `--sip-tls`.
    pub sip_tls: Option<SocketAddr>,
    pub lines: Vec<String>,
    /// What it says after the start.
    pub later: std::sync::mpsc::Receiver<String>,
}

impl Served {
    /// Everything it has said since the start.
    pub fn said(&self) -> Vec<String> {
        self.later.try_iter().collect()
    }
}

/// Starts `vca-sip serve` on free loopback ports with `extra` arguments and waits until
/// it says where its API is.
pub fn serve(mut cmd: Command, extra: &[&str]) -> Served {
    let mut child = cmd
        .args([
            "serve",
            "--http",
            "127.0.0.1:0",
            "--sip-udp",
            "127.0.0.1:0",
            "--sip-tcp",
            "127.0.0.1:0",
        ])
        .args(extra)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn vca-sip");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    // Keeps reading to the end: a closed pipe would make the server's next log line fail.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lines = Vec::new();
    let mut sip_udp = None;
    let mut sip_tls = None;
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            if let Some(rest) = line.strip_prefix("vca-sip: SIP on udp/") {
                sip_udp = rest.split_whitespace().next().and_then(|a| a.parse().ok());
            }
            if let Some(rest) = line.strip_prefix("vca-sip: SIP over TLS on tls/") {
                sip_tls = rest.split_whitespace().next().and_then(|a| a.parse().ok());
            }
            if let Some(url) = line.strip_prefix("vca-sip: HTTP API on ") {
                let http = url.to_owned();
                lines.push(line);
                let sip_udp = sip_udp.expect("the SIP address is printed before the API's");
                return Served {
                    child,
                    http,
                    sip_udp,
                    sip_tls,
                    lines,
                    later: rx,
                };
            }
            lines.push(line);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("vca-sip did not start: {lines:?}");
}
