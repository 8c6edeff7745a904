//! The Pipecat agent of the tests (`tests/agents`): the Python interpreter of its virtualenv,
//! built and cached by `scripts/agent-venv`, and the echo bot `pipecat_echo.py` as a child
//! process whose JSON notes (one object a line on its stderr) a test waits for.
//!
//! Nothing here is skipped when Python is missing: a venv or pip failure panics with what
//! the script said, so that the test fails where the cause is visible.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The folder of the agent scripts.
pub fn agents_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/agents")
}

/// The virtualenv's interpreter, from `scripts/agent-venv` (run once per test process; the
/// script itself makes concurrent runs wait for one build).
pub fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/agent-venv");
            let out = Command::new(&script)
                .stdin(Stdio::null())
                .output()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success(),
                "{} failed ({}): the Pipecat agent's virtualenv could not be built \
                 (needs python3 with venv and pip access to PyPI):\n{stderr}",
                script.display(),
                out.status
            );
            let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            let python = PathBuf::from(&path);
            assert!(
                python.is_file(),
                "{} printed {path:?}, which is not a file:\n{stderr}",
                script.display()
            );
            python
        })
        .clone()
}

/// The stream dialect the bot speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Twilio,
    Exotel,
}

impl Dialect {
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Twilio => "twilio",
            Dialect::Exotel => "exotel",
        }
    }
}

/// A running `pipecat_echo.py`.
pub struct EchoBot {
    child: Child,
    /// Its loopback port (WebSocket endpoint `/ws`).
    pub port: u16,
    /// From spawning it to its `listening` note.
    pub startup: Duration,
    notes: Receiver<Value>,
    /// Every note read so far, in order.
    pub seen: Vec<Value>,
    /// Whether it serves `wss://`.
    tls: bool,
}

impl EchoBot {
    /// A Twilio bot whose auto hang-up POSTs to `hangup_base` with `auth_token`.
    pub fn twilio(end_after: Duration, hangup_base: &str, auth_token: &str) -> EchoBot {
        EchoBot::start(
            Dialect::Twilio,
            end_after,
            &["--hangup-base", hangup_base, "--auth-token", auth_token],
        )
    }

    /// A Twilio bot like [`EchoBot::twilio`] serving `wss://` with the PEM files `cert` and
    /// `key`.
    pub fn twilio_tls(
        end_after: Duration,
        hangup_base: &str,
        auth_token: &str,
        (cert, key): (&Path, &Path),
    ) -> EchoBot {
        let (cert, key) = (cert.display().to_string(), key.display().to_string());
        EchoBot::start(
            Dialect::Twilio,
            end_after,
            &[
                "--hangup-base",
                hangup_base,
                "--auth-token",
                auth_token,
                "--tls-cert",
                &cert,
                "--tls-key",
                &key,
            ],
        )
    }

    /// An Exotel bot.
    pub fn exotel(end_after: Duration) -> EchoBot {
        EchoBot::start(Dialect::Exotel, end_after, &[])
    }

    /// Starts the bot on a free port, ending each call `end_after` its `start`, and waits
    /// (up to a minute) for it to listen.
    fn start(dialect: Dialect, end_after: Duration, extra: &[&str]) -> EchoBot {
        let spawned = Instant::now();
        let mut child = Command::new(python())
            .arg(agents_dir().join("pipecat_echo.py"))
            .args(["--dialect", dialect.as_str(), "--port", "0", "--end-after"])
            .arg(format!("{:.3}", end_after.as_secs_f64()))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start pipecat_echo.py: {e}"));
        let Some(stderr) = child.stderr.take() else {
            panic!("pipecat_echo.py has no stderr pipe");
        };
        let (tx, notes) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<Value>(&line) {
                    Ok(note @ Value::Object(_)) => {
                        if tx.send(note).is_err() {
                            break;
                        }
                    }
                    _ => eprintln!("pipecat_echo: {line}"),
                }
            }
        });
        let mut bot = EchoBot {
            child,
            port: 0,
            startup: Duration::ZERO,
            notes,
            seen: Vec::new(),
            tls: extra.contains(&"--tls-cert"),
        };
        let listening = bot.wait_for("listening", Duration::from_secs(60));
        bot.startup = spawned.elapsed();
        bot.port = listening["port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
            .unwrap_or_else(|| panic!("pipecat_echo.py listens on no port: {listening}"));
        bot
    }

    /// The URL a stream client connects to.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://127.0.0.1:{}/ws", self.port)
    }

    /// The first note of `event` (seen before or arriving within `within`); panics with
    /// every note so far when none comes.
    pub fn wait_for(&mut self, event: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            if let Some(note) = self.seen.iter().find(|n| n["event"] == event) {
                return note.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.notes.recv_timeout(left) {
                Ok(note) => self.seen.push(note),
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "pipecat_echo.py: no `{event}` within {within:?}; notes: {:?}",
                        self.seen
                    )
                }
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "pipecat_echo.py exited ({:?}) before `{event}`; notes: {:?}",
                    self.child.try_wait(),
                    self.seen
                ),
            }
        }
    }
}

impl Drop for EchoBot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `fake_edge.py` for `dialect` (it starts its own bot; with `edge_hangs_up` the edge
/// ends the call, else the bot's timer does) and returns its JSON summary; panics with its
/// output unless every check passed.
pub fn fake_edge(dialect: Dialect, edge_hangs_up: bool) -> Value {
    let out = Command::new(python())
        .arg(agents_dir().join("fake_edge.py"))
        .args(["--dialect", dialect.as_str()])
        .args(edge_hangs_up.then_some("--edge-hangs-up"))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run fake_edge.py: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "fake_edge.py --dialect {} failed ({}):\n{stdout}\n{stderr}",
        dialect.as_str(),
        out.status
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("fake_edge.py printed no JSON summary ({e}):\n{stdout}"))
}
