//! A real softphone for the tests: baresip (Debian package baresip) run headless with a
//! configuration directory of its own. Its audio source is a WAV file (module aufile), what it
//! receives is written to a WAV file by module sndfile (the aufile of baresip 1.0.0 has no
//! player), the player itself is a dead-end aubridge device, only the G.711 codecs are
//! loaded, and it is driven over module ctrl_tcp (netstrings of JSON) on loopback. No STUN,
//! ICE or registration: every packet stays on 127.0.0.1. Also here: the test signal (noise
//! bursts), WAV files, and the correlation that finds the sent signal in a recording.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep, sleep_until, timeout};

/// The account of a phone that calls without credentials (loopback is the development
/// trunk while no trunk is configured).
pub const PLAIN_ACCOUNT: &str =
    "<sip:caller@127.0.0.1>;regint=0;answermode=manual;audio_codecs=PCMA,PCMU";

/// Where Debian's baresip keeps its modules.
const MODULES: &str = "/usr/lib/baresip/modules";

/// The only sample rate G.711 carries.
pub const RATE: usize = 8000;

/// Largest offset, either way, searched between the sent and the received signal: one
/// second covers jitter buffering, packets lost at the start and recording start-up.
const MAX_LAG: usize = RATE;

/// The received window matched against the sent signal: half a second, one second in.
const WINDOW_START: usize = RATE;
const WINDOW_LEN: usize = RATE / 2;

/// The baresip binary; panics naming the package when it is not installed.
pub fn program() -> PathBuf {
    super::sipp::which("baresip").unwrap_or_else(|| {
        panic!(
            "baresip is not installed: install the Debian package baresip (apt-get install baresip)"
        )
    })
}

/// A baresip process with its own configuration directory, killed when dropped.
pub struct Baresip {
    child: Child,
    pub ctrl: Ctrl,
    dir: PathBuf,
}

impl Baresip {
    /// Dials `target`; panics with baresip's log when it refuses.
    pub async fn dial(&mut self, target: &str) {
        let answer = self.ctrl.command("dial", target).await;
        assert_eq!(answer["ok"], true, "dial refused: {answer}\n{}", self.log());
    }

    /// Writes the configuration into `dir/baresip`, starts baresip and connects to its
    /// control socket. The control port is picked free just before; should another process
    /// take it first, baresip says so and runs on without it, and is started again on
    /// another port.
    pub async fn start(program: &Path, dir: &Path, source: &Path, account: &str) -> Baresip {
        for _ in 0..3 {
            if let Some(phone) = Baresip::try_start(program, dir, source, account).await {
                return phone;
            }
        }
        panic!("baresip could not listen on a control port in 3 attempts");
    }

    pub async fn try_start(
        program: &Path,
        dir: &Path,
        source: &Path,
        account: &str,
    ) -> Option<Baresip> {
        assert!(
            Path::new(MODULES).join("aufile.so").is_file(),
            "baresip's modules are not in {MODULES}: install the Debian package baresip"
        );
        let conf = dir.join("baresip");
        let recordings = dir.join("recordings");
        std::fs::create_dir_all(&conf).expect("config dir");
        std::fs::create_dir_all(&recordings).expect("recordings dir");
        let ctrl_addr = free_tcp_port();
        let config = [
            "poll_method epoll",
            // SIP on loopback only, on a port of the system's choosing.
            "sip_listen 127.0.0.1:0",
            "sip_trans_def udp",
            // Media and SIP addresses come from loopback alone.
            "net_interface 127.0.0.1",
            // No name is ever looked up; were one, the query would stay on loopback.
            "dns_server 127.0.0.1:53",
            &format!("audio_source aufile,{}", source.display()),
            // A player nobody listens to: the received audio is taken by sndfile before it.
            "audio_player aubridge,nowhere",
            "audio_alert aubridge,nowhere-alert",
            &format!("module_path {MODULES}"),
            "module g711.so",
            "module aufile.so",
            "module aubridge.so",
            "module sndfile.so",
            &format!("snd_path {}", recordings.display()),
            "module_app account.so",
            "module_app menu.so",
            "module_app ctrl_tcp.so",
            &format!("ctrl_tcp_listen {ctrl_addr}"),
        ]
        .join("\n");
        std::fs::write(conf.join("config"), config + "\n").expect("baresip config");
        // No registration (regint=0); the call is dialled with a full SIP URI.
        std::fs::write(conf.join("accounts"), format!("{account}\n")).expect("baresip accounts");
        std::fs::write(conf.join("contacts"), "").expect("baresip contacts");

        let log_path = dir.join("baresip.log");
        let log = std::fs::File::create(&log_path).expect("baresip log");
        let child = Command::new(program)
            .arg("-f")
            .arg(&conf)
            .args(["-v", "-s"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
        let mut phone = Baresip {
            child,
            ctrl: Ctrl {
                log: log_path,
                ..Ctrl::default()
            },
            dir: dir.to_path_buf(),
        };
        // baresip flushes its log line by line: wait for it to say it listens, so that the
        // connection cannot reach another process on that port.
        let listening = format!("ctrl_tcp: TCP socket listening on {ctrl_addr}");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = phone.log();
            if log.contains(&listening) {
                break;
            }
            if log.contains("ctrl_tcp: failed to listen") {
                return None;
            }
            if let Ok(Some(exit)) = phone.child.try_wait() {
                panic!("baresip exited at start ({exit}):\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "baresip did not open its control socket {ctrl_addr} within 5 s:\n{log}"
            );
            sleep(Duration::from_millis(20)).await;
        }
        let stream = TcpStream::connect(ctrl_addr)
            .await
            .unwrap_or_else(|e| panic!("connecting to baresip at {ctrl_addr}: {e}"));
        phone.ctrl.stream = Some(stream);
        Some(phone)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("baresip.log")).unwrap_or_default()
    }

    /// Asks baresip to quit and waits for it to exit, so that its recordings are closed.
    pub async fn quit(&mut self) {
        // The reply may never come: baresip can close the socket while quitting.
        let _ = self.ctrl.send("quit", "").await;
        match timeout(Duration::from_secs(5), self.child.wait()).await {
            Ok(Ok(status)) => assert!(status.success(), "baresip: {status}\n{}", self.log()),
            Ok(Err(e)) => panic!("waiting for baresip: {e}"),
            Err(_) => panic!("baresip did not quit within 5 s:\n{}", self.log()),
        }
    }

    /// The samples of the one recording whose name ends in `-{direction}.wav`.
    pub fn recording(&self, direction: &str) -> Vec<i16> {
        let suffix = format!("-{direction}.wav");
        let found: Vec<PathBuf> = std::fs::read_dir(self.dir.join("recordings"))
            .expect("recordings dir")
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.to_string_lossy().ends_with(&suffix))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one {direction} recording expected: {found:?}\n{}",
            self.log()
        );
        let bytes = std::fs::read(&found[0]).expect("read recording");
        parse_wav(&bytes).unwrap_or_else(|e| panic!("{}: {e}", found[0].display()))
    }
}

/// A loopback TCP address that was free a moment ago.
pub fn free_tcp_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local addr")
}

/// baresip's ctrl_tcp: commands and replies as netstrings of JSON, with events in between.
#[derive(Default)]
pub struct Ctrl {
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    token: u32,
    /// Events read while waiting for something else.
    events: Vec<Value>,
    log: PathBuf,
}

impl Ctrl {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn send(&mut self, command: &str, params: &str) -> std::io::Result<String> {
        self.token += 1;
        let token = self.token.to_string();
        let body = json!({"command": command, "params": params, "token": token}).to_string();
        let frame = format!("{}:{body},", body.len());
        let stream = self.stream.as_mut().expect("connected");
        stream.write_all(frame.as_bytes()).await?;
        Ok(token)
    }

    /// Sends a command and returns baresip's reply to it.
    pub async fn command(&mut self, command: &str, params: &str) -> Value {
        let token = self
            .send(command, params)
            .await
            .unwrap_or_else(|e| panic!("sending {command}: {e}\n{}", self.log()));
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let message = self
                .next(deadline)
                .await
                .unwrap_or_else(|| panic!("no reply to {command} within 5 s:\n{}", self.log()));
            if message["response"] == true && message["token"] == token.as_str() {
                return message;
            }
            if message["event"] == true {
                self.events.push(message);
            }
        }
    }

    /// Waits for the event of type `kind`; a closed call on the way fails the test.
    pub async fn event(&mut self, kind: &str, wait: Duration) -> Value {
        let deadline = Instant::now() + wait;
        loop {
            let message = if self.events.is_empty() {
                self.next(deadline)
                    .await
                    .unwrap_or_else(|| panic!("no {kind} event within {wait:?}:\n{}", self.log()))
            } else {
                self.events.remove(0)
            };
            if message["event"] != true {
                continue;
            }
            if message["type"] == kind {
                return message;
            }
            assert_ne!(
                message["type"],
                "CALL_CLOSED",
                "the call closed while waiting for {kind}: {message}\n{}",
                self.log()
            );
        }
    }

    /// Lets `wait` pass, failing the test if the call closes meanwhile.
    pub async fn hold(&mut self, wait: Duration) {
        let deadline = Instant::now() + wait;
        let pending = std::mem::take(&mut self.events);
        for message in pending {
            self.check_open(&message);
        }
        while let Some(message) = self.next(deadline).await {
            self.check_open(&message);
        }
    }

    pub fn check_open(&self, message: &Value) {
        assert!(
            !(message["event"] == true && message["type"] == "CALL_CLOSED"),
            "the call closed before baresip hung up: {message}\n{}",
            self.log()
        );
    }

    /// The next message, or `None` at the deadline.
    pub async fn next(&mut self, deadline: Instant) -> Option<Value> {
        loop {
            if let Some(message) = self.take_frame() {
                return Some(message);
            }
            let mut chunk = [0u8; 4096];
            let stream = self.stream.as_mut().expect("connected");
            let n = tokio::select! {
                read = stream.read(&mut chunk) => read.expect("read from ctrl_tcp"),
                () = sleep_until(deadline) => return None,
            };
            assert!(n > 0, "baresip closed its control socket:\n{}", self.log());
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Takes one complete netstring (`len:payload,`) off the buffer.
    pub fn take_frame(&mut self) -> Option<Value> {
        let colon = self.buf.iter().position(|b| *b == b':')?;
        let len: usize = std::str::from_utf8(&self.buf[..colon])
            .ok()
            .and_then(|digits| digits.parse().ok())
            .unwrap_or_else(|| panic!("bad netstring from baresip: {:?}", self.buf));
        let end = colon + 1 + len;
        if self.buf.len() <= end {
            return None;
        }
        assert_eq!(self.buf[end], b',', "netstring without its comma");
        let message = serde_json::from_slice(&self.buf[colon + 1..end])
            .unwrap_or_else(|e| panic!("bad JSON from baresip: {e}"));
        self.buf.drain(..=end);
        Some(message)
    }
}

/// Pseudo-random noise in bursts of 100 to 300 ms separated by 40 to 120 ms of silence:
/// sharp under correlation, and with no period that could match at a wrong lag.
pub fn noise_bursts(seed: u32, len: usize) -> Vec<i16> {
    let mut state = seed;
    let mut next = move || {
        // xorshift32
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state
    };
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let burst = RATE / 10 + (next() as usize % (RATE / 5));
        let gap = RATE / 25 + (next() as usize % (RATE / 12));
        for _ in 0..burst {
            // Uniform in -8000..8000: well inside G.711's range, far from clipping.
            out.push((next() % 16_000) as i16 - 8000);
        }
        out.extend(std::iter::repeat_n(0, gap));
    }
    out.truncate(len);
    out
}

/// A RIFF WAVE file: PCM, 16-bit little-endian, mono, 8 kHz.
pub fn wav_bytes(samples: &[i16]) -> Vec<u8> {
    let data_len = u32::try_from(samples.len() * 2).expect("small file");
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&(RATE as u32).to_le_bytes());
    out.extend_from_slice(&(RATE as u32 * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes()); // block align
    out.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

/// The samples of a RIFF WAVE file that must be 16-bit PCM, mono, 8 kHz.
pub fn parse_wav(bytes: &[u8]) -> Result<Vec<i16>, String> {
    if bytes.len() < 12 || &bytes[..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err("not a RIFF WAVE file".into());
    }
    let mut at = 12;
    let mut format_ok = false;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        let body = &bytes[at + 8..bytes.len().min(at + 8 + len)];
        match id {
            b"fmt " => {
                let field = |i: usize| u16::from_le_bytes([body[i], body[i + 1]]);
                let rate = u32::from_le_bytes(body[4..8].try_into().unwrap());
                let (format, channels, bits) = (field(0), field(2), field(14));
                if format != 1 || channels != 1 || bits != 16 || rate != RATE as u32 {
                    return Err(format!(
                        "format {format}, {channels} channels, {bits} bits, {rate} Hz; \
                         expected PCM, mono, 16 bits, {RATE} Hz"
                    ));
                }
                format_ok = true;
            }
            b"data" => {
                if !format_ok {
                    return Err("data before fmt".into());
                }
                return Ok(body
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]))
                    .collect());
            }
            _ => {}
        }
        at += 8 + len + (len & 1);
    }
    Err("no data chunk".into())
}

pub fn to_f64(samples: &[i16]) -> Vec<f64> {
    samples.iter().map(|s| f64::from(*s)).collect()
}

pub fn rms(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let energy: f64 = samples.iter().map(|s| f64::from(*s).powi(2)).sum();
    (energy / samples.len() as f64).sqrt()
}

/// Normalised correlation of two equally long stretches; zero when either is silent.
pub fn coefficient(x: &[f64], y: &[f64]) -> f64 {
    let (mut xy, mut xx, mut yy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        xy += a * b;
        xx += a * a;
        yy += b * b;
    }
    if xx == 0.0 || yy == 0.0 {
        return 0.0;
    }
    xy / (xx * yy).sqrt()
}

/// Where a lag puts the received signal on the sent one: `received[i]` is `sent[i + lag]`.
#[derive(Debug, Clone, Copy)]
pub struct Peak {
    pub lag: isize,
    pub coefficient: f64,
}

/// The lag in `-MAX_LAG..=MAX_LAG` at which a window of `received` best matches `sent`.
pub fn best_lag(sent: &[f64], received: &[f64]) -> Peak {
    assert!(
        received.len() >= WINDOW_START + WINDOW_LEN,
        "the recording is too short to search: {} samples",
        received.len()
    );
    let window = &received[WINDOW_START..WINDOW_START + WINDOW_LEN];
    let max = MAX_LAG as isize;
    search(sent, window, WINDOW_START, -max..=max)
}

/// The best match, over `lags`, of `window` (which starts at `start` in the recording)
/// within `sent`. The energy of every stretch of `sent` comes from running sums, so that
/// each lag costs one dot product.
pub fn search(
    sent: &[f64],
    window: &[f64],
    start: usize,
    lags: std::ops::RangeInclusive<isize>,
) -> Peak {
    let window_energy: f64 = window.iter().map(|x| x * x).sum();
    let mut running = Vec::with_capacity(sent.len() + 1);
    running.push(0.0);
    let mut total = 0.0;
    for x in sent {
        total += x * x;
        running.push(total);
    }
    let mut best = Peak {
        lag: 0,
        coefficient: 0.0,
    };
    for lag in lags {
        let Ok(from) = usize::try_from(start as isize + lag) else {
            continue;
        };
        let Some(stretch) = sent.get(from..from + window.len()) else {
            continue;
        };
        // Differences of running sums can come out a hair below zero over silence.
        let energy = (running[from + window.len()] - running[from]).max(0.0);
        if energy * window_energy < 1.0 {
            continue;
        }
        let c = dot(window, stretch) / (energy * window_energy).sqrt();
        if c.abs() > best.coefficient.abs() {
            best = Peak {
                lag,
                coefficient: c,
            };
        }
    }
    best
}

/// The best match of each second of the recording (and of a last part of at least half a
/// second), searched within 50 ms of `lag`: a frame lost or repeated on the way shifts the
/// lag of the seconds after it by a frame, while a second that does not carry the signal
/// matches nowhere.
pub fn per_second(sent: &[f64], received: &[f64], lag: isize) -> Vec<Peak> {
    let reach = (RATE / 20) as isize;
    received
        .chunks(RATE)
        .filter(|part| part.len() >= RATE / 2)
        .enumerate()
        .map(|(i, second)| search(sent, second, i * RATE, lag - reach..=lag + reach))
        .collect()
}

/// The dot product of two equally long stretches, eight samples a step: this runs some 10^8
/// times in an unoptimised test build.
pub fn dot(x: &[f64], y: &[f64]) -> f64 {
    let mut sum = 0.0;
    let (xs, ys) = (x.chunks_exact(8), y.chunks_exact(8));
    for (a, b) in xs.clone().zip(ys.clone()) {
        sum += a[0] * b[0]
            + a[1] * b[1]
            + a[2] * b[2]
            + a[3] * b[3]
            + a[4] * b[4]
            + a[5] * b[5]
            + a[6] * b[6]
            + a[7] * b[7];
    }
    for (a, b) in xs.remainder().iter().zip(ys.remainder()) {
        sum += a * b;
    }
    sum
}

/// The coefficient over the whole overlap of the two signals at `lag`.
pub fn overlap_coefficient(sent: &[f64], received: &[f64], lag: isize) -> f64 {
    let first = (-lag).max(0) as usize;
    let last = received
        .len()
        .min((sent.len() as isize - lag).max(0) as usize);
    if first >= last {
        return 0.0;
    }
    let s0 = (first as isize + lag) as usize;
    coefficient(&received[first..last], &sent[s0..s0 + (last - first)])
}
