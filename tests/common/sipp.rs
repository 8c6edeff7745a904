//! Runs the real sipp (Debian package sip-tester) against a test server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

/// The repository's sipp scenarios.
pub fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sip-fixtures/sipp")
        .join(name)
}

/// Writes a variant of a shipped scenario into `dir`, with `(from, to)` text replacements.
pub fn variant(dir: &Path, base: &str, name: &str, replacements: &[(&str, &str)]) -> PathBuf {
    let mut text = std::fs::read_to_string(scenario(base)).expect("scenario");
    for (from, to) in replacements {
        assert!(text.contains(from), "{base} has no {from:?}");
        text = text.replace(from, to);
    }
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write scenario");
    path
}

/// One sipp run.
pub struct Sipp<'a> {
    pub scenario: PathBuf,
    pub target: SocketAddr,
    pub transport: &'a str,
    /// Injection file rows (`field0;field1;...`), used in order.
    pub rows: Vec<String>,
    pub calls: usize,
    pub rate: u32,
    pub pause_ms: u64,
    pub dir: &'a Path,
    pub extra: Vec<String>,
    /// Log every message (off for floods, whose log would be huge).
    pub trace_messages: bool,
}

/// What sipp did: its exit code, the messages it exchanged, its final screen.
pub struct SippRun {
    pub output: Output,
    pub messages: String,
    pub screen: String,
}

impl SippRun {
    pub fn succeeded(&self) -> bool {
        self.output.status.success()
    }
}

impl Sipp<'_> {
    pub async fn run(&self) -> SippRun {
        if which("sipp").is_none() {
            panic!("sipp is not installed: run ./scripts/test, which installs Debian's sip-tester");
        }
        let inf = self.dir.join(format!("rows-{}.csv", std::process::id()));
        let mut csv = String::from("SEQUENTIAL\n");
        for row in &self.rows {
            csv.push_str(row);
            csv.push('\n');
        }
        std::fs::write(&inf, csv).expect("injection file");
        let tag = format!("{:x}", rand_u32());
        let messages = self.dir.join(format!("msg-{tag}.log"));
        let screen = self.dir.join(format!("screen-{tag}.log"));
        let transport = match self.transport {
            "tcp" => "t1",
            _ => "u1",
        };
        let mut cmd = tokio::process::Command::new("sipp");
        // The local address is loopback unless the test picks another (`-i` in `extra`).
        if !self.extra.iter().any(|a| a == "-i") {
            cmd.args(["-i", "127.0.0.1"]);
        }
        cmd.current_dir(self.dir)
            .arg("-nostdin")
            .args(["-sf", &self.scenario.display().to_string()])
            .args(["-inf", &inf.display().to_string()])
            .args(["-p", "0"])
            .args(["-t", transport])
            .args(["-m", &self.calls.to_string()])
            .args(["-r", &self.rate.to_string()])
            .args(["-d", &self.pause_ms.to_string()])
            .args(["-timeout", "30s", "-timeout_error"])
            .args(if self.trace_messages {
                vec![
                    "-trace_msg".to_owned(),
                    "-message_file".to_owned(),
                    messages.display().to_string(),
                ]
            } else {
                Vec::new()
            })
            .args([
                "-trace_screen",
                "-screen_file",
                &screen.display().to_string(),
            ])
            .args(["-trace_err"])
            .args(&self.extra)
            .arg(self.target.to_string())
            .kill_on_drop(true);
        let output = tokio::time::timeout(Duration::from_secs(150), cmd.output())
            .await
            .expect("sipp finished within 150 s")
            .expect("sipp ran");
        SippRun {
            output,
            messages: std::fs::read_to_string(&messages).unwrap_or_default(),
            screen: std::fs::read_to_string(&screen).unwrap_or_default(),
        }
    }
}

fn rand_u32() -> u32 {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    nanos ^ std::process::id().rotate_left(16)
}

pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
}
