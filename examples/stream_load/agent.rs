//! The agent simulator: a WebSocket server (RFC 6455, text frames) speaking Twilio Media
//! Streams to vca-sip, one stream per connection, on one thread.
//!
//! ```text
//!   vca-sip ──connected, start, media (20 ms each), mark echoes, stop──> agent
//!   vca-sip <──media (each caller frame echoed), mark once a second, clear once──── agent
//! ```
//!
//! Per stream it counts the caller's `media` messages and the gaps in their `chunk` numbers
//! and `timestamp`s (frames lost on the way), and the marks it sent and got back. Once per
//! stream, `clear_after` past its start (spread over a second between streams), it queues a
//! second of a tone, stops echoing, sends `clear` 300 ms later noting the wall time, and
//! echoes again a second after that: the carrier generator measures from that time to the
//! first silent packet it gets.

// A load generator is a driver: it runs in real time.
#![allow(clippy::disallowed_methods)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::procstat;

/// The GUID of the WebSocket handshake (RFC 6455 §1.3).
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Longest frame taken from vca-sip; its messages are a few hundred bytes.
const MAX_FRAME: usize = 1 << 20;

/// From the tone's start: the clear, and the echo's return.
const CLEAR_DELAY: Duration = Duration::from_millis(300);
const ECHO_PAUSE: Duration = Duration::from_millis(1_300);

#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Streams to serve; the simulator ends once that many have ended (or at `deadline`).
    pub streams: usize,
    /// When each stream's clear sequence begins, from its `start`.
    pub clear_after: Duration,
    /// Longest the simulator runs.
    pub deadline: Duration,
}

/// What one stream saw.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StreamReport {
    pub stream_sid: String,
    pub call_sid: String,
    /// The `from` custom parameter: the caller's user part.
    pub from: String,
    pub media_frames: u64,
    /// Chunk numbers skipped (caller frames lost before the agent).
    pub lost_chunks: u64,
    /// `media` messages whose timestamp was not 20 ms after the previous one's.
    pub timestamp_gaps: u64,
    pub first_chunk: Option<u64>,
    pub marks_sent: u64,
    pub marks_echoed: u64,
    /// Echoes of marks never sent (a protocol fault).
    pub marks_unknown: u64,
    pub echoes_sent: u64,
    /// Wall time of the `clear`, µs since the epoch.
    pub clear_us: Option<u64>,
    pub stopped: bool,
    pub bad_messages: u64,
}

/// The simulator's report: every stream and its own CPU time.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AgentReport {
    pub streams: Vec<StreamReport>,
    pub connections: u64,
    pub handshake_failures: u64,
    pub cpu_seconds: f64,
}

impl AgentReport {
    pub fn media_frames(&self) -> u64 {
        self.streams.iter().map(|s| s.media_frames).sum()
    }
    pub fn lost_chunks(&self) -> u64 {
        self.streams.iter().map(|s| s.lost_chunks).sum()
    }
    pub fn timestamp_gaps(&self) -> u64 {
        self.streams.iter().map(|s| s.timestamp_gaps).sum()
    }
    pub fn marks(&self) -> (u64, u64) {
        let sent = self.streams.iter().map(|s| s.marks_sent).sum();
        let echoed = self.streams.iter().map(|s| s.marks_echoed).sum();
        (sent, echoed)
    }
}

#[derive(Default)]
struct Shared {
    report: AgentReport,
    ended: usize,
}

/// Binds `listen` and returns the listener with its address (the runtime must be entered).
pub fn bind(listen: &str) -> std::io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(listen)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Serves streams on `listener` on a runtime of this thread's own until `config.streams`
/// have ended or the deadline; returns the report.
pub fn run(listener: std::net::TcpListener, config: AgentConfig) -> std::io::Result<AgentReport> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let shared = Arc::new(Mutex::new(Shared::default()));
    runtime.block_on(async {
        let listener = TcpListener::from_std(listener)?;
        let deadline = Instant::now() + config.deadline;
        let config = Arc::new(config);
        let mut accepted = 0usize;
        let mut index = 0usize;
        loop {
            let done = shared.lock().map_or(true, |s| s.ended >= config.streams);
            if done {
                break;
            }
            tokio::select! {
                r = listener.accept(), if accepted < config.streams => {
                    let Ok((stream, _)) = r else { continue };
                    accepted += 1;
                    let _ = stream.set_nodelay(true);
                    let (shared, config) = (Arc::clone(&shared), Arc::clone(&config));
                    // Spread over a second, at phases that differ within the 20 ms slot.
                    let spread = Duration::from_millis((index as u64 * 37) % 1000);
                    index += 1;
                    tokio::spawn(async move {
                        let report = serve(stream, &config, spread).await;
                        if let Ok(mut s) = shared.lock() {
                            s.report.connections += 1;
                            match report {
                                Some(r) => s.report.streams.push(r),
                                None => s.report.handshake_failures += 1,
                            }
                            s.ended += 1;
                        }
                    });
                }
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        Ok::<_, std::io::Error>(())
    })?;
    let mut report = shared.lock().map(|s| s.report.clone()).unwrap_or_default();
    report.cpu_seconds = procstat::cpu_time("self").map_or(0.0, |d| d.as_secs_f64());
    Ok(report)
}

/// One stream's state.
struct Stream {
    report: StreamReport,
    last_chunk: Option<u64>,
    last_timestamp: Option<u64>,
    marks_pending: HashMap<String, ()>,
    /// Echo paused until then (the clear sequence).
    paused_until: Option<Instant>,
}

#[derive(Deserialize)]
struct Incoming<'a> {
    event: &'a str,
    #[serde(borrow, rename = "streamSid")]
    stream_sid: Option<&'a str>,
    #[serde(borrow)]
    start: Option<StartBody<'a>>,
    #[serde(borrow)]
    media: Option<MediaBody<'a>>,
    #[serde(borrow)]
    mark: Option<MarkBody<'a>>,
}

#[derive(Deserialize)]
struct StartBody<'a> {
    #[serde(borrow, rename = "callSid")]
    call_sid: &'a str,
    #[serde(rename = "customParameters", default)]
    custom_parameters: HashMap<String, String>,
}

#[derive(Deserialize)]
struct MediaBody<'a> {
    chunk: &'a str,
    timestamp: &'a str,
    #[serde(borrow)]
    payload: &'a str,
}

#[derive(Deserialize)]
struct MarkBody<'a> {
    #[serde(borrow)]
    name: &'a str,
}

/// The upgrade, then the stream until vca-sip closes it; `None` when the handshake failed.
async fn serve(mut tcp: TcpStream, config: &AgentConfig, spread: Duration) -> Option<StreamReport> {
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let key = loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            break head.lines().find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("sec-websocket-key")
                    .then(|| value.trim().to_owned())
            })?;
        }
        if buf.len() > 16 * 1024 || tcp.read_buf(&mut buf).await.ok()? == 0 {
            return None;
        }
    };
    let accept = BASE64.encode(Sha1::digest(format!("{key}{WS_GUID}").as_bytes()));
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    tcp.write_all(response.as_bytes()).await.ok()?;

    let tone = BASE64.encode(tone_second());
    let mut s = Stream {
        report: StreamReport::default(),
        last_chunk: None,
        last_timestamp: None,
        marks_pending: HashMap::new(),
        paused_until: None,
    };
    let mut out: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut started: Option<Instant> = None;
    let mut next_mark: Option<Instant> = None;
    // The clear sequence: the tone, the clear, the echo back.
    let mut stage = 0u8;
    let mut message = Vec::new();
    let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
    loop {
        let now = Instant::now();
        if let Some(at) = next_mark
            && now >= at
        {
            let name = format!("m{}", s.report.marks_sent + 1);
            send_text(
                &mut out,
                &format!(
                    r#"{{"event":"mark","streamSid":"{}","mark":{{"name":"{name}"}}}}"#,
                    s.report.stream_sid
                ),
            );
            s.marks_pending.insert(name, ());
            s.report.marks_sent += 1;
            next_mark = Some(at + Duration::from_secs(1));
        }
        if let Some(t0) = started {
            let begin = t0 + config.clear_after + spread;
            if stage == 0 && now >= begin {
                send_text(
                    &mut out,
                    &format!(
                        r#"{{"event":"media","streamSid":"{}","media":{{"payload":"{tone}"}}}}"#,
                        s.report.stream_sid
                    ),
                );
                s.paused_until = Some(begin + ECHO_PAUSE);
                stage = 1;
            }
            if stage == 1 && now >= begin + CLEAR_DELAY {
                send_text(
                    &mut out,
                    &format!(
                        r#"{{"event":"clear","streamSid":"{}"}}"#,
                        s.report.stream_sid
                    ),
                );
                // Noted just before the write below: the clear leaves now.
                s.report.clear_us = Some(procstat::realtime_us());
                stage = 2;
            }
        }
        if !out.is_empty() {
            if tcp.write_all(&out).await.is_err() {
                break;
            }
            out.clear();
        }
        let mut wake = next_mark.unwrap_or(far);
        if let Some(t0) = started {
            let begin = t0 + config.clear_after + spread;
            match stage {
                0 => wake = wake.min(begin),
                1 => wake = wake.min(begin + CLEAR_DELAY),
                _ => {}
            }
        }
        tokio::select! {
            r = tcp.read_buf(&mut buf) => {
                match r {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            _ = tokio::time::sleep_until(wake) => continue,
        }
        let mut closed = false;
        loop {
            match parse_frame(&buf) {
                Err(_) => {
                    closed = true;
                    break;
                }
                Ok(None) => break,
                Ok(Some(frame)) => {
                    let mut payload = buf[frame.payload.clone()].to_vec();
                    if let Some(mask) = frame.mask {
                        unmask(&mut payload, mask);
                    }
                    buf.drain(..frame.len);
                    match frame.opcode {
                        0x0 | 0x1 => {
                            message.extend_from_slice(&payload);
                            if frame.fin {
                                let now = Instant::now();
                                if handle(&mut s, &message, now, &mut out) && started.is_none() {
                                    started = Some(now);
                                    next_mark = Some(now + Duration::from_secs(1));
                                }
                                message.clear();
                            }
                        }
                        0x8 => {
                            // Answer the close with the same code, then end.
                            let mut close = Vec::new();
                            write_frame(&mut close, 0x8, payload.get(..2).unwrap_or_default());
                            out.extend_from_slice(&close);
                            closed = true;
                            break;
                        }
                        0x9 => write_frame(&mut out, 0xA, &payload),
                        _ => {}
                    }
                }
            }
        }
        if !out.is_empty() {
            if tcp.write_all(&out).await.is_err() {
                break;
            }
            out.clear();
        }
        if closed {
            break;
        }
    }
    Some(s.report)
}

/// Takes one text message; returns whether it was the stream's `start`.
fn handle(s: &mut Stream, message: &[u8], now: Instant, out: &mut Vec<u8>) -> bool {
    let Ok(m) = serde_json::from_slice::<Incoming<'_>>(message) else {
        s.report.bad_messages += 1;
        return false;
    };
    match m.event {
        "start" => {
            if let Some(start) = m.start {
                s.report.call_sid = start.call_sid.to_owned();
                s.report.from = start
                    .custom_parameters
                    .get("from")
                    .cloned()
                    .unwrap_or_default();
            }
            s.report.stream_sid = m.stream_sid.unwrap_or_default().to_owned();
            return true;
        }
        "media" => {
            let Some(media) = m.media else {
                s.report.bad_messages += 1;
                return false;
            };
            let (Ok(chunk), Ok(ts)) = (media.chunk.parse::<u64>(), media.timestamp.parse::<u64>())
            else {
                s.report.bad_messages += 1;
                return false;
            };
            s.report.media_frames += 1;
            match s.last_chunk {
                None => s.report.first_chunk = Some(chunk),
                Some(last) if chunk > last + 1 => s.report.lost_chunks += chunk - last - 1,
                Some(_) => {}
            }
            if s.last_timestamp.is_some_and(|last| ts != last + 20) {
                s.report.timestamp_gaps += 1;
            }
            s.last_chunk = Some(chunk);
            s.last_timestamp = Some(ts);
            if s.paused_until.is_some_and(|t| now < t) {
                return false;
            }
            send_text(
                out,
                &format!(
                    r#"{{"event":"media","streamSid":"{}","media":{{"payload":"{}"}}}}"#,
                    s.report.stream_sid, media.payload
                ),
            );
            s.report.echoes_sent += 1;
        }
        "mark" => {
            let name = m.mark.map(|mk| mk.name).unwrap_or_default();
            if s.marks_pending.remove(name).is_some() {
                s.report.marks_echoed += 1;
            } else {
                s.report.marks_unknown += 1;
            }
        }
        "stop" => s.report.stopped = true,
        _ => {}
    }
    false
}

/// One second of a 400 Hz tone in µ-law.
fn tone_second() -> Vec<u8> {
    (0..8000)
        .map(|n| {
            let phase = n as f64 * 400.0 * std::f64::consts::TAU / 8000.0;
            vca_sip::media::g711::linear_to_ulaw((phase.sin() * 6000.0) as i16)
        })
        .collect()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A frame at the start of a buffer: its opcode, whether it ends its message, where its
/// payload is and the client's mask of it, and its whole length.
struct Frame {
    fin: bool,
    opcode: u8,
    payload: std::ops::Range<usize>,
    mask: Option<[u8; 4]>,
    len: usize,
}

/// The frame at the start of `buf`; `None` until it is all there.
fn parse_frame(buf: &[u8]) -> Result<Option<Frame>, String> {
    let (Some(&b0), Some(&b1)) = (buf.first(), buf.get(1)) else {
        return Ok(None);
    };
    let masked = b1 & 0x80 != 0;
    let (len, mut at) = match b1 & 0x7f {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                (u64::from_be_bytes(a), 10)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    let len = usize::try_from(len).map_err(|_| "frame too long".to_owned())?;
    if len > MAX_FRAME {
        return Err(format!("frame of {len} bytes"));
    }
    let mask = if masked {
        let Some(m) = buf.get(at..at + 4) else {
            return Ok(None);
        };
        at += 4;
        Some([m[0], m[1], m[2], m[3]])
    } else {
        None
    };
    if buf.len() < at + len {
        return Ok(None);
    }
    Ok(Some(Frame {
        fin: b0 & 0x80 != 0,
        opcode: b0 & 0x0f,
        payload: at..at + len,
        mask,
        len: at + len,
    }))
}

/// Unmasks `payload` with the 4-byte `mask` (RFC 6455 §5.3).
fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
}

fn send_text(out: &mut Vec<u8>, text: &str) {
    write_frame(out, 0x1, text.as_bytes());
}

/// An unmasked frame (a server's, RFC 6455 §5.1) of `opcode` holding `payload`, whole.
fn write_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}
