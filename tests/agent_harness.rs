//! The Pipecat agent harness itself: the virtualenv `scripts/agent-venv` builds (pipecat-ai
//! from PyPI, pinned in tests/agents/requirements.txt), and the echo bot
//! `tests/agents/pipecat_echo.py` that the agent stream tests call, in both dialects.
//!
//! `fake_edge.py` plays the edge's side against the bot (Twilio `connected`/`start`/`media`,
//! or Exotel's), checks that the bot echoes a tone, frames its audio as the dialect wants
//! and hangs up over Twilio's REST shape, or ends quietly when the edge hangs up; the tests here run it and also drive the bot from
//! Rust through `common::agent::EchoBot`, as the agent tests of vca-sip do, with a plain
//! WebSocket client and a plain HTTP server standing in for vca-sip. A Python, venv or pip
//! failure fails these tests; nothing is skipped. Each holds the heavy-test lock: they run a
//! real-time peer and time it.

#![allow(clippy::disallowed_methods)] // a real bot in real time

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::agent::{self, Dialect, EchoBot};
use serde_json::{Value, json};

const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const CALL_SID: &str = "CAfedcba9876543210fedcba9876543210";
const STREAM_SID: &str = "MZ00112233445566778899aabbccddeeff";
const AUTH_TOKEN: &str = "harness-token";

/// The caller's audio of the Rust-driven call: 1 s of 20 ms frames.
const FRAMES: usize = 50;

#[test]
fn twilio_fake_edge_hears_its_tone_and_the_hang_up() {
    let _heavy = common::heavy::one_at_a_time();
    let summary = agent::fake_edge(Dialect::Twilio, false);
    eprintln!("fake_edge twilio: {summary}");
    assert_eq!(summary["failures"], json!([]));
    assert_eq!(summary["hangup_posts"], 1, "{summary}");
    assert_tone_found(&summary);
}

#[test]
fn exotel_fake_edge_hears_its_tone_in_320_byte_multiples() {
    let _heavy = common::heavy::one_at_a_time();
    let summary = agent::fake_edge(Dialect::Exotel, false);
    eprintln!("fake_edge exotel: {summary}");
    assert_eq!(summary["failures"], json!([]));
    assert_eq!(summary["hangup_posts"], 0, "{summary}");
    let sizes = summary["payload_sizes"].as_array().expect("payload sizes");
    assert!(
        sizes
            .iter()
            .all(|s| s.as_u64().is_some_and(|s| s % 320 == 0)),
        "{summary}"
    );
    assert_tone_found(&summary);
}

/// When the edge sends `stop` and closes the socket, the bot ends its pipeline and, the
/// socket being gone, makes no hang-up POST: the edge's own hang-up is the only one.
#[test]
fn twilio_bot_ends_without_a_post_when_the_edge_hangs_up() {
    let _heavy = common::heavy::one_at_a_time();
    let summary = agent::fake_edge(Dialect::Twilio, true);
    eprintln!("fake_edge twilio, edge hangs up: {summary}");
    assert_eq!(summary["failures"], json!([]));
    assert_eq!(summary["hangup_posts"], 0, "{summary}");
    assert_tone_found(&summary);
}

#[test]
fn exotel_bot_ends_when_the_edge_hangs_up() {
    let _heavy = common::heavy::one_at_a_time();
    let summary = agent::fake_edge(Dialect::Exotel, true);
    eprintln!("fake_edge exotel, edge hangs up: {summary}");
    assert_eq!(summary["failures"], json!([]));
    assert_tone_found(&summary);
}

fn assert_tone_found(summary: &Value) {
    let windows = summary["window_correlations"]
        .as_array()
        .expect("window correlations");
    assert_eq!(windows.len(), 6, "{summary}");
    assert!(
        windows.iter().all(|c| c.as_f64().is_some_and(|c| c >= 0.9)),
        "{summary}"
    );
}

/// The Twilio bot driven from Rust: its notes carry what `start` said, it sends the caller's
/// µ-law back byte for byte, and when its timer ends the call it POSTs the hang-up (form
/// `Status=completed`, Basic auth of the account sid and token) and then closes the socket.
#[test]
fn twilio_bot_echoes_and_hangs_up_for_a_rust_edge() {
    let _heavy = common::heavy::one_at_a_time();
    let rest = FakeRest::start();
    let mut bot = EchoBot::twilio(Duration::from_secs(2), &rest.base, AUTH_TOKEN);
    eprintln!("pipecat_echo.py listening after {:?}", bot.startup);
    let mut ws = WsClient::connect(bot.port);
    ws.send(&json!({"event": "connected", "protocol": "Call", "version": "1.0.0"}));
    ws.send(&json!({
        "event": "start",
        "sequenceNumber": "1",
        "streamSid": STREAM_SID,
        "start": {
            "streamSid": STREAM_SID,
            "accountSid": ACCOUNT_SID,
            "callSid": CALL_SID,
            "tracks": ["inbound"],
            "customParameters": {"tenant": "acme"},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        },
    }));
    let started = bot.wait_for("started", Duration::from_secs(10));
    assert_eq!(started["stream_sid"], STREAM_SID);
    assert_eq!(started["call_sid"], CALL_SID);
    assert_eq!(started["account_sid"], ACCOUNT_SID);
    assert_eq!(started["custom_parameters"], json!({"tenant": "acme"}));
    let want_path = format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{CALL_SID}.json");
    assert_eq!(started["hangup_url"], format!("{}{want_path}", rest.base));

    // A µ-law byte ramp that avoids the two codes of zero, so that every byte survives the
    // serializer's µ-law -> PCM -> µ-law round trip unchanged and silence is told apart.
    let sent: Vec<u8> = (0..FRAMES * 160).map(|i| 0x10 + (i % 0x60) as u8).collect();
    let writer = ws.writer();
    let sending = std::thread::spawn(move || {
        let begin = Instant::now();
        for (n, frame) in sent.chunks(160).enumerate() {
            let message = json!({
                "event": "media",
                "sequenceNumber": (n + 2).to_string(),
                "streamSid": STREAM_SID,
                "media": {
                    "track": "inbound",
                    "chunk": (n + 1).to_string(),
                    "timestamp": (n * 20).to_string(),
                    "payload": BASE64.encode(frame),
                },
            });
            if write_text(&writer, &message.to_string()).is_err() {
                break;
            }
            let next = begin + Duration::from_millis(20 * (n as u64 + 1));
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        sent
    });

    let mut echoed = Vec::new();
    let mut other = Vec::new();
    let close = loop {
        match ws.next(Duration::from_secs(15)) {
            Incoming::Text(text) => {
                let message: Value = serde_json::from_str(&text).expect("bot sends JSON");
                if message["event"] == "media" {
                    assert_eq!(message["streamSid"], STREAM_SID, "{message}");
                    let payload = message["media"]["payload"].as_str().expect("payload");
                    echoed.extend(BASE64.decode(payload).expect("base64 payload"));
                } else {
                    other.push(message);
                }
            }
            Incoming::Close(code) => break code,
        }
    };
    let closed_at = Instant::now();
    let sent = sending.join().expect("sender thread");
    assert_eq!(close, Some(1000), "the bot closes normally");
    assert!(other.is_empty(), "only media from an echo bot: {other:?}");

    // The echo holds what was sent, in order, after any silence of the output's start.
    let voiced: Vec<u8> = echoed
        .iter()
        .copied()
        .skip_while(|b| *b == 0xff || *b == 0x7f)
        .collect();
    assert!(
        voiced.starts_with(&sent),
        "echo of {} bytes does not start with the {} bytes sent",
        voiced.len(),
        sent.len()
    );

    let post = rest.request(Duration::from_secs(5));
    assert!(
        post.at < closed_at,
        "the hang-up POST comes before the close"
    );
    assert_eq!(post.request_line, format!("POST {want_path} HTTP/1.1"));
    let want_auth = format!(
        "Basic {}",
        BASE64.encode(format!("{ACCOUNT_SID}:{AUTH_TOKEN}"))
    );
    assert_eq!(post.header("authorization"), Some(want_auth.as_str()));
    assert_eq!(
        post.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(post.body, "Status=completed");

    let hangup = bot.wait_for("hangup", Duration::from_secs(5));
    assert_eq!(hangup["status"], 200, "{hangup}");
    let ended = bot.wait_for("ended", Duration::from_secs(5));
    assert_eq!(ended["media_frames_in"], FRAMES, "{ended}");
}

/// The dialect is strict, as Pipecat's runner detects it: an Exotel bot turns away a
/// Twilio-shaped `start` and closes with 1008.
#[test]
fn exotel_bot_turns_away_a_twilio_start() {
    let _heavy = common::heavy::one_at_a_time();
    let mut bot = EchoBot::exotel(Duration::from_secs(2));
    let mut ws = WsClient::connect(bot.port);
    ws.send(&json!({"event": "connected"}));
    ws.send(&json!({
        "event": "start",
        "sequenceNumber": "1",
        "start": {"streamSid": STREAM_SID, "callSid": CALL_SID, "accountSid": ACCOUNT_SID},
    }));
    let rejected = bot.wait_for("rejected", Duration::from_secs(10));
    assert_eq!(rejected["reason"], "no exotel start message");
    match ws.next(Duration::from_secs(10)) {
        Incoming::Text(text) => panic!("a turned-away stream got {text}"),
        Incoming::Close(code) => assert_eq!(code, Some(1008)),
    }
    assert!(!bot.seen.iter().any(|n| n["event"] == "started"));
}

/// What the bot sent.
enum Incoming {
    Text(String),
    Close(Option<u16>),
}

/// A plain RFC 6455 client over a blocking socket: enough to speak a stream's JSON text.
struct WsClient {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl WsClient {
    fn connect(port: u16) -> WsClient {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the bot");
        stream.set_nodelay(true).expect("nodelay");
        let mut reader = BufReader::new(stream.try_clone().expect("clone socket"));
        (&stream)
            .write_all(
                format!(
                    "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
                     Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                     Sec-WebSocket-Version: 13\r\n\r\n"
                )
                .as_bytes(),
            )
            .expect("send the upgrade");
        let mut status = String::new();
        reader
            .read_line(&mut status)
            .expect("read the upgrade reply");
        assert!(
            status.starts_with("HTTP/1.1 101"),
            "upgrade answered {status:?}"
        );
        loop {
            let mut line = String::new();
            reader
                .read_line(&mut line)
                .expect("read the upgrade headers");
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        WsClient { stream, reader }
    }

    fn writer(&self) -> TcpStream {
        self.stream.try_clone().expect("clone socket")
    }

    fn send(&mut self, message: &Value) {
        write_text(&self.stream, &message.to_string()).expect("send a text message");
    }

    /// The next text message or the close (answered), joining fragments and answering pings.
    fn next(&mut self, within: Duration) -> Incoming {
        self.stream
            .set_read_timeout(Some(within))
            .expect("read timeout");
        let mut text = Vec::new();
        loop {
            let mut head = [0u8; 2];
            if self.reader.read_exact(&mut head).is_err() {
                return Incoming::Close(None);
            }
            let (fin, opcode) = (head[0] & 0x80 != 0, head[0] & 0x0f);
            let len = match head[1] & 0x7f {
                126 => {
                    let mut b = [0u8; 2];
                    self.reader.read_exact(&mut b).expect("length");
                    u64::from(u16::from_be_bytes(b))
                }
                127 => {
                    let mut b = [0u8; 8];
                    self.reader.read_exact(&mut b).expect("length");
                    u64::from_be_bytes(b)
                }
                n => u64::from(n),
            };
            assert_eq!(head[1] & 0x80, 0, "server frames are not masked");
            let mut payload = vec![0u8; usize::try_from(len).expect("frame length")];
            self.reader.read_exact(&mut payload).expect("frame payload");
            match opcode {
                0x0 | 0x1 => {
                    text.extend(payload);
                    if fin {
                        return Incoming::Text(String::from_utf8(text).expect("UTF-8 text"));
                    }
                }
                0x8 => {
                    let code = payload.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
                    let _ = write_frame(&self.stream, 0x8, &payload[..payload.len().min(2)]);
                    return Incoming::Close(code);
                }
                0x9 => write_frame(&self.stream, 0xa, &payload).expect("pong"),
                _ => {}
            }
        }
    }
}

fn write_text(stream: &TcpStream, text: &str) -> std::io::Result<()> {
    write_frame(stream, 0x1, text.as_bytes())
}

/// One masked frame (clients must mask, RFC 6455 §5.3).
fn write_frame(mut stream: &TcpStream, opcode: u8, payload: &[u8]) -> std::io::Result<()> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= 0xffff => {
            frame.push(0x80 | 126);
            frame.extend((n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend((n as u64).to_be_bytes());
        }
    }
    frame.extend(mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    stream.write_all(&frame)
}

/// One HTTP request as the fake REST API read it.
struct Request {
    at: Instant,
    request_line: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Twilio's Calls resource on loopback: answers every request with 200 and a call in
/// Twilio's JSON shape, and hands each request to the test.
struct FakeRest {
    base: String,
    requests: Receiver<Request>,
}

impl FakeRest {
    fn start() -> FakeRest {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake REST API");
        let base = format!("http://{}", listener.local_addr().expect("local addr"));
        let (tx, requests) = channel();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { break };
                let Some(request) = FakeRest::answer(conn) else {
                    continue;
                };
                if tx.send(request).is_err() {
                    break;
                }
            }
        });
        FakeRest { base, requests }
    }

    fn answer(conn: TcpStream) -> Option<Request> {
        conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut reader = BufReader::new(conn.try_clone().ok()?);
        let mut request_line = String::new();
        reader.read_line(&mut request_line).ok()?;
        let at = Instant::now();
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).ok()?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':')?;
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
        let length = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).ok()?;
        let reply = json!({
            "sid": CALL_SID,
            "account_sid": ACCOUNT_SID,
            "status": "completed",
            "api_version": "2010-04-01",
        })
        .to_string();
        let _ = (&conn).write_all(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{reply}",
                reply.len()
            )
            .as_bytes(),
        );
        Some(Request {
            at,
            request_line: request_line.trim_end().to_owned(),
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    fn request(&self, within: Duration) -> Request {
        self.requests
            .recv_timeout(within)
            .unwrap_or_else(|e| panic!("no hang-up request within {within:?}: {e}"))
    }
}
