//! Stream sessions on a real media runtime: a carrier UDP socket on loopback and a test
//! agent (a small blocking WebSocket server, plain or TLS) on loopback.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::media::agent::{AgentNotice, AgentStart};
use crate::media::rtp::{Pt, RtpHeader, RtpPacket, Ssrc, build};
use crate::media::runtime::MediaRuntime;
use crate::media::session::{MediaConfig, MediaEnd, MediaReport, MediaSession};
use crate::media::stream::{Dialect, StreamConfig};
use crate::media::ws::accept_of;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const WAIT: Duration = Duration::from_secs(10);

/// The server side of one agent connection.
struct Agent<S> {
    s: S,
    buf: Vec<u8>,
    /// The upgrade request's head.
    request: String,
}

impl<S: Read + Write> Agent<S> {
    /// Reads the upgrade request and accepts it.
    fn accept(mut s: S) -> Agent<S> {
        let mut buf = Vec::new();
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 1024];
            let n = s.read(&mut chunk).unwrap();
            assert!(n > 0, "EOF in the request");
            buf.extend_from_slice(&chunk[..n]);
        };
        let request = String::from_utf8(buf[..end].to_vec()).unwrap();
        buf.drain(..end);
        let key = request
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap()
            .trim()
            .to_owned();
        let response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            accept_of(&key)
        );
        s.write_all(response.as_bytes()).unwrap();
        s.flush().unwrap();
        Agent { s, buf, request }
    }

    fn fill(&mut self, n: usize) {
        while self.buf.len() < n {
            let mut chunk = [0u8; 4096];
            let got = self.s.read(&mut chunk).unwrap();
            assert!(got > 0, "EOF in a frame");
            self.buf.extend_from_slice(&chunk[..got]);
        }
    }

    /// The next frame from the client: its opcode and unmasked payload.
    fn frame(&mut self) -> (u8, Vec<u8>) {
        self.fill(2);
        let (b0, b1) = (self.buf[0], self.buf[1]);
        assert_eq!(b0 & 0xf0, 0x80, "client frames are final");
        assert_eq!(b1 & 0x80, 0x80, "client frames are masked");
        let (len, mut at) = match b1 & 0x7f {
            126 => {
                self.fill(4);
                (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
            }
            127 => {
                self.fill(10);
                let len = u64::from_be_bytes(self.buf[2..10].try_into().unwrap());
                (len as usize, 10)
            }
            n => (n as usize, 2),
        };
        self.fill(at + 4 + len);
        let mask: [u8; 4] = self.buf[at..at + 4].try_into().unwrap();
        at += 4;
        let payload = self.buf[at..at + len]
            .iter()
            .zip(mask.iter().cycle())
            .map(|(b, m)| b ^ m)
            .collect();
        self.buf.drain(..at + len);
        (b0 & 0x0f, payload)
    }

    /// The next text message, as JSON.
    fn json(&mut self) -> Value {
        let (op, payload) = self.frame();
        assert_eq!(op, 1, "a text frame, got {op}: {payload:?}");
        serde_json::from_slice(&payload).unwrap()
    }

    /// Messages until one with `event`, which is returned; the others are passed to `seen`.
    fn until(&mut self, event: &str, mut seen: impl FnMut(&Value)) -> Value {
        loop {
            let m = self.json();
            if m["event"] == event {
                return m;
            }
            seen(&m);
        }
    }

    fn send(&mut self, op: u8, payload: &[u8]) {
        let mut f = vec![0x80 | op];
        match payload.len() {
            n if n < 126 => f.push(n as u8),
            n if n <= usize::from(u16::MAX) => {
                f.push(126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(payload);
        self.s.write_all(&f).unwrap();
        self.s.flush().unwrap();
    }

    /// Sends one frame, whatever becomes of the connection (the client may close it).
    fn try_send(&mut self, op: u8, payload: &[u8]) -> std::io::Result<()> {
        let mut f = vec![0x80 | op, 127];
        f.extend_from_slice(&(payload.len() as u64).to_be_bytes());
        self.s.write_all(&f)?;
        self.s.write_all(payload)?;
        self.s.flush()
    }

    fn send_json(&mut self, v: Value) {
        self.send(1, v.to_string().as_bytes());
    }
}

impl Agent<TcpStream> {
    /// A second handle on the same connection, for writing while another thread reads.
    fn writer(&self) -> Agent<TcpStream> {
        Agent {
            s: self.s.try_clone().unwrap(),
            buf: Vec::new(),
            request: String::new(),
        }
    }
}

/// The monotonic clock, read by the tests to measure arrival times on real sockets.
#[allow(clippy::disallowed_methods)] // These tests are drivers: they time real IO.
fn wall() -> Instant {
    Instant::now()
}

fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind((LOOPBACK, 0)).unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

fn accept_tcp(l: &TcpListener) -> TcpStream {
    let (s, _) = l.accept().unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

fn stream_config() -> StreamConfig {
    let mut c = StreamConfig::new(Dialect::Twilio, "MZ1", "AC1", "CA1");
    c.custom_parameters
        .insert("tenant_id".into(), "t-42".into());
    c
}

fn agent_start(url: String, addr: SocketAddr) -> AgentStart {
    AgentStart {
        url,
        addrs: vec![addr],
        auth_token: Some("tok-1".into()),
        ca_pem: None,
        connect_timeout: Duration::from_secs(5),
        stream: stream_config(),
        recording: None,
    }
}

fn media_config(remote: SocketAddr) -> MediaConfig {
    MediaConfig {
        remote,
        audio_pt: Pt::PCMU,
        event_pt: Pt::new(101),
        media_timeout: Duration::from_secs(30),
    }
}

fn packet(seq: u16, payload: &[u8]) -> Vec<u8> {
    let h = RtpHeader {
        marker: seq == 0,
        payload_type: Pt::PCMU,
        sequence_number: seq,
        timestamp: 1000 + u32::from(seq) * 160,
        ssrc: Ssrc(0x5eed),
    };
    let mut out = vec![0u8; 12 + payload.len()];
    let n = build(&h, payload, &mut out).unwrap();
    out.truncate(n);
    out
}

/// The caller's audio of packet `seq`: µ-law codes that decode and re-encode to themselves.
fn caller_audio(seq: u16) -> Vec<u8> {
    (0..160u16)
        .map(|i| 0x10 + ((seq * 7 + i) % 0x60) as u8)
        .collect()
}

async fn notice(rx: &mut mpsc::Receiver<AgentNotice>) -> AgentNotice {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a notice in time")
        .expect("the channel is open")
}

async fn ended(session: &mut MediaSession) -> MediaReport {
    tokio::time::timeout(WAIT, session.ended())
        .await
        .expect("the session ended")
}

fn join<T>(h: JoinHandle<T>) -> T {
    h.join().expect("the agent thread")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_flows_both_ways_with_marks_and_clear_and_the_agents_close_is_a_hangup() {
    let media = MediaRuntime::spawn(LOOPBACK, 31400..=31401, 1).unwrap();
    let (l, addr) = listener();
    let agent = std::thread::spawn(move || {
        let mut a = Agent::accept(accept_tcp(&l));
        let connected = a.json();
        let start = a.json();
        // The caller's audio, in order, until 40 frames came.
        let mut heard = Vec::new();
        let mut first_chunk = None;
        while heard.len() < 40 * 160 {
            let m = a.json();
            assert_eq!(m["event"], "media", "{m}");
            first_chunk.get_or_insert(m["media"]["chunk"].as_str().unwrap().to_owned());
            let payload = m["media"]["payload"].as_str().unwrap();
            heard.extend(STANDARD.decode(payload).unwrap());
        }
        // 100 ms of the agent's audio, then a mark.
        let speech = vec![0x55u8; 800];
        a.send_json(serde_json::json!({
            "event": "media", "streamSid": "MZ1",
            "media": {"payload": STANDARD.encode(&speech)}
        }));
        a.send_json(
            serde_json::json!({"event": "mark", "streamSid": "MZ1", "mark": {"name": "m1"}}),
        );
        let mark = a.until("mark", |_| {});
        a.send_json(serde_json::json!({"event": "clear", "streamSid": "MZ1"}));
        // A binary frame is refused by the session, and the stream goes on.
        a.send(2, &[1, 2, 3]);
        a.send(8, &1000u16.to_be_bytes());
        let (op, body) = loop {
            let (op, body) = a.frame();
            if op == 8 {
                break (op, body);
            }
        };
        (
            a.request,
            connected,
            start,
            first_chunk,
            heard,
            mark,
            op,
            body,
        )
    });

    let carrier = Arc::new(UdpSocket::bind((LOOPBACK, 0)).await.unwrap());
    let ports = media.allocate().unwrap();
    let shard_addr = SocketAddr::new(LOOPBACK, ports.rtp_port());
    let url = format!("ws://127.0.0.1:{}/agent?x=1", addr.port());
    let (mut session, mut notices) = media
        .start_stream(
            ports,
            media_config(carrier.local_addr().unwrap()),
            agent_start(url, addr),
        )
        .unwrap();
    // Silence comes before the caller sent anything (early media), to the offer's address.
    let mut buf = [0u8; 1500];
    let (n, from) = tokio::time::timeout(WAIT, carrier.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(from, shard_addr);
    let p = RtpPacket::parse(&buf[..n]).unwrap();
    assert_eq!(p.header.payload_type, Pt::PCMU);
    assert_eq!(p.payload(), &[0xff; 160][..]);
    assert_eq!(notice(&mut notices).await, AgentNotice::Connected);

    let sender = {
        let carrier = Arc::clone(&carrier);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            for seq in 0..150u16 {
                tick.tick().await;
                let _ = carrier
                    .send_to(&packet(seq, &caller_audio(seq)), shard_addr)
                    .await;
            }
        })
    };
    // The agent's audio reaches the carrier as PCMU in 20 ms packets.
    let mut speech_packets = 0;
    let mut last: Option<RtpHeader> = None;
    while speech_packets < 5 {
        let (n, _) = tokio::time::timeout(WAIT, carrier.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let p = RtpPacket::parse(&buf[..n]).unwrap();
        if let Some(prev) = last {
            assert_eq!(p.header.ssrc, prev.ssrc);
            assert_eq!(
                p.header.sequence_number,
                prev.sequence_number.wrapping_add(1)
            );
            assert_eq!(
                p.header.timestamp.wrapping_sub(prev.timestamp) % 160,
                0,
                "timestamps on the 20 ms grid"
            );
        }
        last = Some(p.header);
        if p.payload() == &[0x55; 160][..] {
            speech_packets += 1;
        }
    }
    assert_eq!(
        notice(&mut notices).await,
        AgentNotice::Cleared { marks: 0 }
    );
    let report = ended(&mut session).await;
    assert_eq!(report.end, MediaEnd::AgentHangup);
    assert_eq!(report.latched, Some(carrier.local_addr().unwrap()));
    assert!(report.stats.packets_in >= 40, "{report:?}");
    assert!(report.stats.packets_out >= 45, "{report:?}");
    let stream = report.stream.expect("a stream session's counts");
    assert!(stream.caller_frames >= 40, "{stream:?}");
    assert_eq!((stream.marks_echoed, stream.clears), (1, 1));
    assert_eq!(stream.protocol_errors, 1, "the binary frame");
    assert_eq!(report.stats.messages_dropped, 0);
    sender.abort();

    let (request, connected, start, first_chunk, heard, mark, op, body) = join(agent);
    assert!(
        request.starts_with("GET /agent?x=1 HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(
        request.contains("\r\nAuthorization: Bearer tok-1\r\n"),
        "{request}"
    );
    assert_eq!(connected["event"], "connected");
    assert_eq!(start["event"], "start");
    assert_eq!(start["start"]["callSid"], "CA1");
    assert_eq!(start["start"]["customParameters"]["tenant_id"], "t-42");
    assert_eq!(first_chunk.as_deref(), Some("1"));
    // What the agent heard is what the carrier sent, from its first packet on, in order
    // (after the jitter buffer's silence before it).
    let sent: Vec<u8> = (0..38).flat_map(caller_audio).collect();
    let at = heard
        .windows(160)
        .position(|w| w == &caller_audio(0)[..])
        .expect("the first packet's audio");
    assert!(heard[..at].iter().all(|&b| b == 0xff), "silence before it");
    let n = (heard.len() - at).min(sent.len());
    assert!(n >= 30 * 160, "{n}");
    assert_eq!(&heard[at..at + n], &sent[..n]);
    assert_eq!(mark["mark"]["name"], "m1");
    // The client echoed the close code.
    assert_eq!((op, body), (8, 1000u16.to_be_bytes().to_vec()));
    media.shutdown();
    media.join();
}

#[tokio::test]
async fn rtp_telephone_events_and_info_digits_reach_the_agent_and_the_call() {
    let media = MediaRuntime::spawn(LOOPBACK, 31410..=31411, 1).unwrap();
    let (l, addr) = listener();
    let agent = std::thread::spawn(move || {
        let mut a = Agent::accept(accept_tcp(&l));
        a.until("start", |_| {});
        let first = a.until("dtmf", |_| {});
        let second = a.until("dtmf", |_| {});
        drop(a);
        (first, second)
    });
    let carrier = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
    let ports = media.allocate().unwrap();
    let shard_addr = SocketAddr::new(LOOPBACK, ports.rtp_port());
    let url = format!("ws://127.0.0.1:{}/", addr.port());
    let (mut session, mut notices) = media
        .start_stream(
            ports,
            media_config(carrier.local_addr().unwrap()),
            agent_start(url, addr),
        )
        .unwrap();
    assert_eq!(notice(&mut notices).await, AgentNotice::Connected);
    // Key 5 pressed: an event's packets, the end sent three times.
    for (seq, (end, duration)) in [
        (false, 160u16),
        (false, 320),
        (true, 480),
        (true, 480),
        (true, 480),
    ]
    .into_iter()
    .enumerate()
    {
        let h = RtpHeader {
            marker: seq == 0,
            payload_type: Pt::new(101).unwrap(),
            sequence_number: seq as u16,
            timestamp: 8000,
            ssrc: Ssrc(9),
        };
        let flags = if end { 0x8a } else { 0x0a };
        let d = duration.to_be_bytes();
        let mut out = [0u8; 16];
        build(&h, &[5, flags, d[0], d[1]], &mut out).unwrap();
        carrier.send_to(&out, shard_addr).await.unwrap();
    }
    assert_eq!(notice(&mut notices).await, AgentNotice::Dtmf('5'));
    session.dtmf('#').unwrap();
    assert!(matches!(
        session.dtmf('x'),
        Err(crate::media::session::MediaError::InvalidDigit('x'))
    ));
    assert_eq!(notice(&mut notices).await, AgentNotice::Dtmf('#'));
    let (first, second) = join(agent);
    assert_eq!(first["dtmf"]["digit"], "5");
    assert_eq!(second["dtmf"]["digit"], "#");
    // The agent went away without a close frame.
    assert_eq!(ended(&mut session).await.end, MediaEnd::AgentDisconnected);
}

#[tokio::test]
async fn a_hangup_sends_stop_then_closes_and_waits_for_the_agents_close() {
    let media = MediaRuntime::spawn(LOOPBACK, 31420..=31421, 1).unwrap();
    let (l, addr) = listener();
    let agent = std::thread::spawn(move || {
        let mut a = Agent::accept(accept_tcp(&l));
        a.until("start", |_| {});
        let stop = a.until("stop", |_| {});
        let close = loop {
            let (op, body) = a.frame();
            if op == 8 {
                break body;
            }
        };
        a.send(8, &close);
        (stop, close)
    });
    let carrier = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
    let ports = media.allocate().unwrap();
    let url = format!("ws://127.0.0.1:{}/", addr.port());
    let (mut session, mut notices) = media
        .start_stream(
            ports,
            media_config(carrier.local_addr().unwrap()),
            agent_start(url, addr),
        )
        .unwrap();
    assert_eq!(notice(&mut notices).await, AgentNotice::Connected);
    session.hangup().unwrap();
    let (stop, close) = join(agent);
    assert_eq!(stop["event"], "stop");
    assert_eq!(stop["stop"]["callSid"], "CA1");
    assert_eq!(close, 1000u16.to_be_bytes().to_vec());
    assert_eq!(ended(&mut session).await.end, MediaEnd::Hangup);
    assert_eq!(media.pool().available(), 1);
}

#[tokio::test]
async fn a_message_over_the_limit_closes_with_1009() {
    let media = MediaRuntime::spawn(LOOPBACK, 31450..=31451, 1).unwrap();
    let (l, addr) = listener();
    let agent = std::thread::spawn(move || {
        let mut a = Agent::accept(accept_tcp(&l));
        a.until("start", |_| {});
        let big = format!(
            r#"{{"event":"media","media":{{"payload":"{}"}}}}"#,
            "A".repeat(2000)
        );
        a.send(1, big.as_bytes());
        loop {
            let (op, body) = a.frame();
            if op == 8 {
                break body;
            }
        }
    });
    let mut start = agent_start(format!("ws://127.0.0.1:{}/", addr.port()), addr);
    start.stream.max_message_bytes = 1000;
    let (mut session, mut notices) = media
        .start_stream(
            media.allocate().unwrap(),
            media_config(SocketAddr::new(LOOPBACK, 9)),
            start,
        )
        .unwrap();
    assert_eq!(notice(&mut notices).await, AgentNotice::Connected);
    assert_eq!(join(agent), 1009u16.to_be_bytes().to_vec());
    assert_eq!(ended(&mut session).await.end, MediaEnd::AgentDisconnected);
}

/// Starts a stream session whose agent is `addr`, and returns the reason it was unreachable
/// (the notice's and the end's, which must agree).
async fn unreachable(
    media: &MediaRuntime,
    url: String,
    addr: SocketAddr,
    timeout: Duration,
) -> String {
    let mut start = agent_start(url, addr);
    start.connect_timeout = timeout;
    let remote = SocketAddr::new(LOOPBACK, 9);
    let (mut session, mut notices) = media
        .start_stream(media.allocate().unwrap(), media_config(remote), start)
        .unwrap();
    let AgentNotice::Unreachable(reason) = notice(&mut notices).await else {
        panic!("not unreachable")
    };
    assert_eq!(
        ended(&mut session).await.end,
        MediaEnd::AgentUnreachable(reason.clone())
    );
    reason
}

/// A server that answers the upgrade with `response` and closes.
fn answering(response: &'static str) -> (SocketAddr, JoinHandle<()>) {
    let (l, addr) = listener();
    let h = std::thread::spawn(move || {
        let mut s = accept_tcp(&l);
        let mut buf = [0u8; 2048];
        let _ = s.read(&mut buf);
        s.write_all(response.as_bytes()).unwrap();
    });
    (addr, h)
}

#[tokio::test]
async fn refused_redirected_failing_and_silent_agents_are_unreachable() {
    let media = MediaRuntime::spawn(LOOPBACK, 31430..=31437, 1).unwrap();
    let long = Duration::from_secs(5);

    let (l, closed) = listener();
    drop(l);
    let reason = unreachable(
        &media,
        format!("ws://127.0.0.1:{}/", closed.port()),
        closed,
        long,
    )
    .await;
    assert!(reason.contains("refused"), "{reason}");

    let (addr, h) = answering("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n");
    let reason = unreachable(
        &media,
        format!("ws://127.0.0.1:{}/", addr.port()),
        addr,
        long,
    )
    .await;
    assert!(reason.contains("answered 500"), "{reason}");
    join(h);

    let (addr, h) = answering(
        "HTTP/1.1 301 Moved Permanently\r\nLocation: ws://elsewhere.example/\r\nContent-Length: 0\r\n\r\n",
    );
    let reason = unreachable(
        &media,
        format!("ws://127.0.0.1:{}/", addr.port()),
        addr,
        long,
    )
    .await;
    assert!(reason.contains("answered 301"), "{reason}");
    assert!(reason.contains("ws://elsewhere.example/"), "{reason}");
    join(h);

    // Accepted by the kernel, never answered.
    let (silent, addr) = listener();
    let reason = unreachable(
        &media,
        format!("ws://127.0.0.1:{}/", addr.port()),
        addr,
        Duration::from_millis(300),
    )
    .await;
    assert!(reason.contains("no WebSocket upgrade within"), "{reason}");
    drop(silent);

    // The refused address first, then a good one: the second is used.
    let (l, good) = listener();
    let agent = std::thread::spawn(move || {
        let mut a = Agent::accept(accept_tcp(&l));
        a.until("start", |_| {});
        a.send(8, &1000u16.to_be_bytes());
        let _ = a.frame();
    });
    let mut start = agent_start(format!("ws://agent.test:{}/", good.port()), good);
    start.addrs = vec![closed, good];
    let (mut session, mut notices) = media
        .start_stream(
            media.allocate().unwrap(),
            media_config(SocketAddr::new(LOOPBACK, 9)),
            start,
        )
        .unwrap();
    assert_eq!(notice(&mut notices).await, AgentNotice::Connected);
    join(agent);
    assert_eq!(ended(&mut session).await.end, MediaEnd::AgentHangup);
}

mod tls {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa,
        KeyPair, KeyUsagePurpose,
    };
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use rustls::{ServerConfig, ServerConnection, StreamOwned};

    /// A test CA's PEM, and a server configuration for `localhost` signed by it.
    fn pki() -> (String, Arc<ServerConfig>) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert.der().to_vec())],
                PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap(),
            )
            .unwrap();
        (ca.pem(), Arc::new(config))
    }

    #[tokio::test]
    async fn wss_with_the_profiles_ca_connects_and_an_unverified_server_is_unreachable() {
        let media = MediaRuntime::spawn(LOOPBACK, 31440..=31443, 1).unwrap();
        let (ca_pem, config) = pki();
        let (l, addr) = listener();
        let server_config = Arc::clone(&config);
        let agent = std::thread::spawn(move || {
            let tcp = accept_tcp(&l);
            let tls = StreamOwned::new(ServerConnection::new(server_config).unwrap(), tcp);
            let mut a = Agent::accept(tls);
            let start = a.until("start", |_| {});
            a.send_json(serde_json::json!({"event": "stop", "streamSid": "MZ1"}));
            // Messages already on their way may come before the close.
            let mut op = 1;
            for _ in 0..100 {
                op = a.frame().0;
                if op != 1 {
                    break;
                }
            }
            (a.request, start, op)
        });
        let url = format!("wss://localhost:{}/secure", addr.port());
        let mut start = agent_start(url.clone(), addr);
        start.ca_pem = Some(ca_pem);
        let (mut session, mut notices) = media
            .start_stream(
                media.allocate().unwrap(),
                media_config(SocketAddr::new(LOOPBACK, 9)),
                start,
            )
            .unwrap();
        assert_eq!(notice(&mut notices).await, AgentNotice::Connected);
        // The agent's `stop` ends the session; the client closes.
        assert_eq!(ended(&mut session).await.end, MediaEnd::AgentHangup);
        let (request, start, op) = join(agent);
        assert!(request.starts_with("GET /secure HTTP/1.1\r\n"), "{request}");
        assert_eq!(start["start"]["streamSid"], "MZ1");
        assert_eq!(op, 8);

        // Without the CA the server's certificate does not verify.
        let (l, addr) = listener();
        let h = std::thread::spawn(move || {
            let tcp = accept_tcp(&l);
            let mut tls = StreamOwned::new(ServerConnection::new(config).unwrap(), tcp);
            let mut buf = [0u8; 64];
            let _ = tls.read(&mut buf);
        });
        let url = format!("wss://localhost:{}/", addr.port());
        let reason = unreachable(&media, url, addr, Duration::from_secs(5)).await;
        assert!(
            reason.contains("TLS") && reason.contains("certificate"),
            "{reason}"
        );
        join(h);
    }
}

/// The agent's 20 ms chunk `j` (below 9216): µ-law codes that decode and re-encode to
/// themselves, none of them silence, whose first two bytes give `j` back.
fn agent_chunk(j: usize) -> Vec<u8> {
    let mut c = vec![0x10 + (j % 0x60) as u8; 160];
    c[0] = 0x10 + (j / 0x60) as u8;
    c
}

/// The chunk a carrier packet carries, or `None` for silence.
fn chunk_of(payload: &[u8]) -> Option<usize> {
    if payload.iter().all(|&b| b == 0xff) {
        return None;
    }
    let (hi, lo) = (payload[0] - 0x10, payload[1] - 0x10);
    assert!(
        payload[2..].iter().all(|&b| b == payload[1]),
        "an agent chunk, whole: {payload:?}"
    );
    Some(usize::from(hi) * 0x60 + usize::from(lo))
}

fn media_message(audio: &[u8]) -> Value {
    serde_json::json!({
        "event": "media", "streamSid": "MZ1",
        "media": {"payload": STANDARD.encode(audio)}
    })
}

/// Receives RTP on the carrier's socket until `until`: each packet's arrival and payload.
async fn record_rtp(carrier: &UdpSocket, until: Instant) -> Vec<(Instant, Vec<u8>)> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1500];
    loop {
        let left = until.saturating_duration_since(wall());
        let Ok(Ok((n, _))) = tokio::time::timeout(left, carrier.recv_from(&mut buf)).await else {
            return got;
        };
        let at = wall();
        let p = RtpPacket::parse(&buf[..n]).unwrap();
        got.push((at, p.payload().to_vec()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barge_in_a_clear_silences_the_caller_within_a_slot_and_echoes_the_pending_marks() {
    const CHUNKS: usize = 250;
    const MARK_EVERY: usize = 10;
    let media = MediaRuntime::spawn(LOOPBACK, 31460..=31461, 1).unwrap();
    let (l, addr) = listener();
    let agent = std::thread::spawn(move || {
        let mut a = Agent::accept(accept_tcp(&l));
        a.until("start", |_| {});
        let mut w = a.writer();
        // The echoed marks, with their arrival, read while the writer sends.
        let reader = std::thread::spawn(move || {
            let mut marks = Vec::new();
            while marks.len() < CHUNKS / MARK_EVERY {
                let m = a.json();
                if m["event"] == "mark" {
                    marks.push((wall(), m["mark"]["name"].as_str().unwrap().to_owned()));
                }
            }
            marks
        });
        // 5 s of audio, a mark after every 200 ms of it, sent at once.
        let started = wall();
        for j in 0..CHUNKS {
            w.send_json(media_message(&agent_chunk(j)));
            if (j + 1) % MARK_EVERY == 0 {
                let name = format!("m{}", j / MARK_EVERY);
                w.send_json(
                    serde_json::json!({"event": "mark", "streamSid": "MZ1", "mark": {"name": name}}),
                );
            }
        }
        std::thread::sleep((started + Duration::from_secs(1)).saturating_duration_since(wall()));
        let cleared = wall();
        w.send_json(serde_json::json!({"event": "clear", "streamSid": "MZ1"}));
        let marks = join(reader);
        (cleared, marks, w)
    });
    let carrier = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
    let url = format!("ws://127.0.0.1:{}/", addr.port());
    let begun = wall();
    let (mut session, mut notices) = media
        .start_stream(
            media.allocate().unwrap(),
            media_config(carrier.local_addr().unwrap()),
            agent_start(url, addr),
        )
        .unwrap();
    let rtp = record_rtp(&carrier, begun + Duration::from_millis(2500)).await;
    let (cleared, marks, w) = join(agent);
    assert_eq!(notice(&mut notices).await, AgentNotice::Connected);
    assert_eq!(
        notice(&mut notices).await,
        AgentNotice::Cleared {
            marks: CHUNKS / MARK_EVERY - marks.iter().filter(|(at, _)| *at < cleared).count()
        }
    );

    // The agent's audio plays in order from its first chunk, one chunk per packet.
    let played: Vec<(Instant, usize)> = rtp
        .iter()
        .filter_map(|(at, p)| chunk_of(p).map(|j| (*at, j)))
        .collect();
    let order: Vec<usize> = played.iter().map(|&(_, j)| j).collect();
    assert_eq!(order, (0..order.len()).collect::<Vec<_>>());
    assert!(
        order.len() >= 40,
        "about 1 s played before the clear: {order:?}"
    );
    // No agent audio more than 40 ms after the clear, silence steadily afterwards.
    let last_audio = played.last().unwrap().0;
    let to_silence = last_audio.saturating_duration_since(cleared);
    let first_silence = rtp
        .iter()
        .find(|(at, p)| *at > cleared && chunk_of(p).is_none())
        .map(|(at, _)| at.duration_since(cleared));
    println!(
        "clear to silence: last agent audio {to_silence:?} after the clear, first silence \
         {first_silence:?} after it; {} chunks of {CHUNKS} played",
        order.len()
    );
    assert!(to_silence <= Duration::from_millis(40), "{to_silence:?}");
    let silent_after = rtp
        .iter()
        .filter(|(at, p)| *at > cleared && chunk_of(p).is_none())
        .count();
    assert!(
        silent_after >= 60,
        "{silent_after} silent frames after the clear"
    );

    // The marks come back in order: those whose audio played before the clear after it
    // played, the rest right after the clear.
    let names: Vec<String> = marks.iter().map(|(_, n)| n.clone()).collect();
    let expected: Vec<String> = (0..CHUNKS / MARK_EVERY).map(|k| format!("m{k}")).collect();
    assert_eq!(names, expected);
    let mut before = 0;
    for (k, (at, _)) in marks.iter().enumerate() {
        let last_chunk = (k + 1) * MARK_EVERY - 1;
        let audio = played
            .iter()
            .find(|&&(_, j)| j == last_chunk)
            .map(|&(t, _)| t);
        if *at < cleared {
            before += 1;
            let audio = audio.expect("a mark echoed before the clear had its audio played");
            let after = at.checked_duration_since(audio);
            println!("mark m{k}: {after:?} after its last audio packet arrived");
            assert!(
                after.is_some_and(|d| d <= Duration::from_millis(100)),
                "m{k} echoed {after:?} after its audio"
            );
        } else {
            let late = at.saturating_duration_since(cleared);
            assert!(
                late <= Duration::from_millis(40),
                "m{k} {late:?} after the clear"
            );
            assert!(
                audio.is_none_or(|t| t >= cleared.checked_sub(Duration::from_millis(25)).unwrap()),
                "m{k}'s audio played well before the clear, yet it waited for it"
            );
        }
    }
    assert!((3..=5).contains(&before), "{before} marks before the clear");
    drop(w);
    assert_eq!(ended(&mut session).await.end, MediaEnd::AgentDisconnected);
}

/// The code that fills the caller's 30 ms packet `i`: a µ-law code that decodes and
/// re-encodes to itself, and is not silence.
fn packet_code(i: usize) -> u8 {
    0x10 + (i % 0x60) as u8
}

/// The caller's RTP packet `i` of 30 ms (240 PCMU bytes of `packet_code(i)`).
fn packet_30ms(i: usize) -> Vec<u8> {
    let h = RtpHeader {
        marker: i == 0,
        payload_type: Pt::PCMU,
        sequence_number: i as u16,
        timestamp: 1000 + i as u32 * 240,
        ssrc: Ssrc(0x7e11),
    };
    let payload = [packet_code(i); 240];
    let mut out = vec![0u8; 12 + 240];
    let n = build(&h, &payload, &mut out).unwrap();
    out.truncate(n);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jittery_lossy_reordered_30_ms_caller_reaches_the_agent_as_steady_20_ms_media() {
    use rand::{Rng, SeedableRng};
    const PACKETS: usize = 167; // 5 s of 30 ms packets
    const MESSAGES: usize = 300; // 6 s of 20 ms messages read by the agent
    let media = MediaRuntime::spawn(LOOPBACK, 31470..=31471, 1).unwrap();
    let (l, addr) = listener();
    let agent = std::thread::spawn(move || {
        let mut a = Agent::accept(accept_tcp(&l));
        a.until("start", |_| {});
        let mut got = Vec::new();
        while got.len() < MESSAGES {
            let m = a.json();
            if m["event"] == "media" {
                got.push((wall(), m));
            }
        }
        a.send(8, &1000u16.to_be_bytes());
        got
    });
    let carrier = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
    let ports = media.allocate().unwrap();
    let shard_addr = SocketAddr::new(LOOPBACK, ports.rtp_port());
    let url = format!("ws://127.0.0.1:{}/", addr.port());
    let (mut session, mut notices) = media
        .start_stream(
            ports,
            media_config(carrier.local_addr().unwrap()),
            agent_start(url, addr),
        )
        .unwrap();
    assert_eq!(notice(&mut notices).await, AgentNotice::Connected);

    // The schedule: packet i due at i * 30 ms plus 0-30 ms of jitter, 1 % lost (two
    // packets, one in each half), and one pair in 25 swapped.
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed_0030);
    let lost = [rng.random_range(20..80), rng.random_range(90..150)];
    let mut schedule: Vec<(Duration, usize)> = Vec::new();
    for i in 0..PACKETS {
        if lost.contains(&i) {
            continue;
        }
        let jitter = Duration::from_micros(rng.random_range(0..=30_000));
        schedule.push((Duration::from_millis(30 * i as u64) + jitter, i));
    }
    schedule.sort();
    let mut swapped = 0;
    for k in (10..schedule.len() - 1).step_by(25) {
        let (a, b) = (schedule[k].1, schedule[k + 1].1);
        schedule[k].1 = b;
        schedule[k + 1].1 = a;
        swapped += 1;
    }
    let begun = tokio::time::Instant::from_std(wall());
    for &(at, i) in &schedule {
        tokio::time::sleep_until(begun + at).await;
        carrier.send_to(&packet_30ms(i), shard_addr).await.unwrap();
    }
    let got = tokio::task::spawn_blocking(move || join(agent))
        .await
        .unwrap();
    let report = ended(&mut session).await;
    assert_eq!(report.end, MediaEnd::AgentHangup);

    // One 160-byte message per 20 ms, chunks counting up by one, timestamps by 20.
    let first_chunk: u64 = got[0].1["media"]["chunk"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let first_ts: u64 = got[0].1["media"]["timestamp"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut heard = Vec::new();
    for (n, (_, m)) in got.iter().enumerate() {
        let chunk: u64 = m["media"]["chunk"].as_str().unwrap().parse().unwrap();
        let ts: u64 = m["media"]["timestamp"].as_str().unwrap().parse().unwrap();
        assert_eq!(chunk, first_chunk + n as u64, "{m}");
        assert_eq!(ts, first_ts + 20 * n as u64, "{m}");
        let audio = STANDARD
            .decode(m["media"]["payload"].as_str().unwrap())
            .unwrap();
        assert_eq!(audio.len(), 160, "{m}");
        heard.extend(audio);
    }
    assert_eq!(first_chunk, 1);
    let span = got.last().unwrap().0.duration_since(got[0].0);
    let expected = span.as_secs_f64() / 0.020;
    let count = (got.len() - 1) as f64;
    println!(
        "{} messages over {span:?} ({expected:.1} slots); {} packets sent, {} lost ({lost:?}), \
         {swapped} pairs swapped",
        got.len(),
        schedule.len(),
        lost.len()
    );
    assert!((count - expected).abs() <= 2.0, "{count} vs {expected:.1}");

    // The audio: silence and the packets' codes, in the order sent.
    let mut runs: Vec<(u8, usize)> = Vec::new();
    for &b in &heard {
        match runs.last_mut() {
            Some((code, n)) if *code == b => *n += 1,
            _ => runs.push((b, 1)),
        }
    }
    let mut next = 0usize;
    let mut played = Vec::new();
    let mut bytes_of = vec![0usize; PACKETS];
    for &(code, n) in &runs {
        if code == 0xff {
            continue;
        }
        // The packet this code is, at or after the last one heard (codes repeat every 96).
        let i = (next..next + 0x60)
            .find(|&i| packet_code(i) == code)
            .unwrap();
        assert!(i < PACKETS, "code {code:#x} of no packet");
        assert!(i < next + 4, "packets {next}..{i} skipped");
        if played.last() != Some(&i) {
            played.push(i);
        }
        bytes_of[i] += n;
        next = i;
    }
    let sent: Vec<usize> = (0..PACKETS).filter(|i| !lost.contains(i)).collect();
    let missing: Vec<&usize> = sent.iter().filter(|i| !played.contains(i)).collect();
    let short: Vec<(usize, usize)> = played
        .iter()
        .filter(|&&i| bytes_of[i] != 240)
        .map(|&i| (i, bytes_of[i]))
        .collect();
    println!(
        "{} of {} packets sent heard in order; missing {missing:?}; not whole {short:?}; \
         caller frames in the report: {:?}",
        played.len(),
        sent.len(),
        report.stream.map(|s| s.caller_frames)
    );
    assert!(missing.len() <= 2, "{missing:?}");
    assert!(short.len() <= 4, "{short:?}");
    assert!(bytes_of.iter().all(|&n| n <= 240));
}

/// Exotel's audio: `n` samples of the linear value of µ-law `code`, 16-bit little-endian.
fn exotel_audio(code: u8, n: usize) -> Vec<u8> {
    let sample = crate::media::g711::decode_sample(crate::kinds::Codec::Pcmu, code);
    (0..n).flat_map(|_| sample.to_le_bytes()).collect()
}

/// An agent sends every kind of message the session refuses or ignores, then audio and a
/// mark: the stream goes on both ways and the report counts each.
async fn bad_messages_are_ignored(dialect: Dialect, base: u16) {
    let media = MediaRuntime::spawn(LOOPBACK, base..=base + 1, 1).unwrap();
    let (l, addr) = listener();
    let audio = match dialect {
        Dialect::Twilio => vec![0x35u8; 800],
        Dialect::Exotel => exotel_audio(0x35, 800),
    };
    let mut bad = vec![
        r#"{"event":"media","media":{"payload":"#.to_owned(),
        "not json at all".to_owned(),
        r#"{"event":"media","media":{"payload":"!!not base64!!"}}"#.to_owned(),
        r#"{"event":"mark","mark":{}}"#.to_owned(),
        r#"{"event":"mark"}"#.to_owned(),
    ];
    if dialect == Dialect::Exotel {
        // 3 bytes: not a whole number of 16-bit samples.
        bad.push(
            serde_json::json!({"event":"media","media":{"payload": STANDARD.encode([1u8, 2, 3])}})
                .to_string(),
        );
    }
    let refused = bad.len() as u64;
    let agent = std::thread::spawn(move || {
        let mut a = Agent::accept(accept_tcp(&l));
        a.until("start", |_| {});
        for m in &bad {
            a.send(1, m.as_bytes());
        }
        a.send_json(serde_json::json!({"event": "something-new", "x": [1, 2]}));
        a.send_json(media_message(&audio));
        a.send_json(serde_json::json!({"event": "mark", "mark": {"name": "after"}}));
        let mut after = 0;
        let mark = a.until("mark", |m| after += usize::from(m["event"] == "media"));
        // The caller's audio keeps coming.
        for _ in 0..10 {
            a.until("media", |_| {});
        }
        a.send(8, &1000u16.to_be_bytes());
        (mark, after)
    });
    let carrier = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
    let mut start = agent_start(format!("ws://127.0.0.1:{}/", addr.port()), addr);
    start.stream.dialect = dialect;
    let begun = wall();
    let (mut session, mut notices) = media
        .start_stream(
            media.allocate().unwrap(),
            media_config(carrier.local_addr().unwrap()),
            start,
        )
        .unwrap();
    assert_eq!(notice(&mut notices).await, AgentNotice::Connected);
    let rtp = record_rtp(&carrier, begun + Duration::from_millis(600)).await;
    let (mark, _) = tokio::task::spawn_blocking(move || join(agent))
        .await
        .unwrap();
    assert_eq!(mark["mark"]["name"], "after");
    // The agent's 100 ms after the bad messages reached the caller.
    let played = rtp.iter().filter(|(_, p)| p == &vec![0x35u8; 160]).count();
    assert_eq!(played, 5, "{dialect:?}");
    let report = ended(&mut session).await;
    assert_eq!(report.end, MediaEnd::AgentHangup);
    let stream = report.stream.unwrap();
    println!("{dialect:?}: {stream:?}");
    assert_eq!(
        (
            stream.protocol_errors,
            stream.unknown_events,
            stream.agent_media
        ),
        (refused, 1, 1),
        "{dialect:?}"
    );
    assert_eq!(stream.marks_echoed, 1);
    assert!(stream.caller_frames >= 10);
    media.shutdown();
    media.join();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_twilio_messages_are_ignored_and_counted_and_the_stream_goes_on() {
    bad_messages_are_ignored(Dialect::Twilio, 31480).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_exotel_messages_are_ignored_and_counted_and_the_stream_goes_on() {
    bad_messages_are_ignored(Dialect::Exotel, 31482).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_10_mb_message_closes_with_1009_and_the_agent_is_disconnected() {
    let media = MediaRuntime::spawn(LOOPBACK, 31490..=31491, 1).unwrap();
    let (l, addr) = listener();
    let agent = std::thread::spawn(move || {
        let mut a = Agent::accept(accept_tcp(&l));
        a.until("start", |_| {});
        let mut w = a.writer();
        let writer = std::thread::spawn(move || {
            let big = format!(
                r#"{{"event":"media","media":{{"payload":"{}"}}}}"#,
                "A".repeat(10 << 20)
            );
            // The client closes the connection before taking it all.
            let _ = w.try_send(1, big.as_bytes());
        });
        let close = loop {
            let (op, body) = a.frame();
            if op == 8 {
                break body;
            }
        };
        join(writer);
        close
    });
    let (mut session, mut notices) = media
        .start_stream(
            media.allocate().unwrap(),
            media_config(SocketAddr::new(LOOPBACK, 9)),
            agent_start(format!("ws://127.0.0.1:{}/", addr.port()), addr),
        )
        .unwrap();
    assert_eq!(notice(&mut notices).await, AgentNotice::Connected);
    let report = ended(&mut session).await;
    let close = tokio::task::spawn_blocking(move || join(agent))
        .await
        .unwrap();
    assert_eq!(close, 1009u16.to_be_bytes().to_vec());
    assert_eq!(report.end, MediaEnd::AgentDisconnected);
    let stream = report.stream.unwrap();
    println!("10 MB message: {:?}, {stream:?}", report.end);
    assert_eq!(stream.protocol_errors, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_audio_at_ten_times_real_time_past_the_queue_limit_drops_the_newest() {
    const CHUNKS: usize = 1000; // 20 s of audio, sent in 2 s
    let media = MediaRuntime::spawn(LOOPBACK, 31500..=31501, 1).unwrap();
    let (l, addr) = listener();
    let agent = std::thread::spawn(move || {
        let mut a = Agent::accept(accept_tcp(&l));
        a.until("start", |_| {});
        let mut w = a.writer();
        let reader = std::thread::spawn(move || {
            // The caller's audio keeps coming while the agent floods and after.
            let mut n = 0;
            while n < 150 {
                n += usize::from(a.json()["event"] == "media");
            }
            a
        });
        let started = wall();
        for j in 0..CHUNKS {
            let due = started + Duration::from_millis(2 * j as u64);
            std::thread::sleep(due.saturating_duration_since(wall()));
            w.send_json(media_message(&agent_chunk(j)));
        }
        let mut a = join(reader);
        a.send(8, &1000u16.to_be_bytes());
        // The client echoes the close.
        while a.frame().0 != 8 {}
    });
    let carrier = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
    let mut start = agent_start(format!("ws://127.0.0.1:{}/", addr.port()), addr);
    start.stream.max_queued_audio_ms = 1000;
    let begun = wall();
    let (mut session, mut notices) = media
        .start_stream(
            media.allocate().unwrap(),
            media_config(carrier.local_addr().unwrap()),
            start,
        )
        .unwrap();
    assert_eq!(notice(&mut notices).await, AgentNotice::Connected);
    let rtp = record_rtp(&carrier, begun + Duration::from_millis(3800)).await;
    let report = ended(&mut session).await;
    // The agent's close ended the session: it stayed up through the flood.
    assert_eq!(report.end, MediaEnd::AgentHangup);
    tokio::task::spawn_blocking(move || join(agent))
        .await
        .unwrap();
    let stream = report.stream.unwrap();
    let p = stream.playout;
    println!("10x real time past a 1 s queue: {p:?}");
    assert_eq!(p.queued_samples + p.dropped_samples, CHUNKS as u64 * 160);
    assert!(p.dropped_samples >= 12 * 8000, "{p:?}");
    assert_eq!(stream.agent_media, CHUNKS as u64);
    // The oldest audio plays, in order: the first second whole, then what found room.
    let order: Vec<usize> = rtp.iter().filter_map(|(_, p)| chunk_of(p)).collect();
    assert_eq!(order[..50], (0..50).collect::<Vec<_>>());
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    assert_eq!(order.len() as u64, p.audio_frames);
    assert!(order.len() < CHUNKS / 2, "{}", order.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_never_speaks_leaves_the_caller_steady_silence_and_the_session_up() {
    let media = MediaRuntime::spawn(LOOPBACK, 31510..=31511, 1).unwrap();
    let (l, addr) = listener();
    let agent = std::thread::spawn(move || {
        let mut a = Agent::accept(accept_tcp(&l));
        // It reads, and sends nothing until the call hangs up.
        let mut media = 0;
        a.until("stop", |m| media += usize::from(m["event"] == "media"));
        let close = loop {
            let (op, body) = a.frame();
            if op == 8 {
                break body;
            }
        };
        a.send(8, &close);
        media
    });
    let carrier = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
    let (mut session, mut notices) = media
        .start_stream(
            media.allocate().unwrap(),
            media_config(carrier.local_addr().unwrap()),
            agent_start(format!("ws://127.0.0.1:{}/", addr.port()), addr),
        )
        .unwrap();
    assert_eq!(notice(&mut notices).await, AgentNotice::Connected);
    let mut heard: Vec<(Instant, RtpHeader)> = Vec::new();
    let mut buf = [0u8; 1500];
    let until = wall() + Duration::from_secs(3);
    while let Ok(Ok((n, _))) = tokio::time::timeout(
        until.saturating_duration_since(wall()),
        carrier.recv_from(&mut buf),
    )
    .await
    {
        let at = wall();
        let p = RtpPacket::parse(&buf[..n]).unwrap();
        assert_eq!(p.payload(), &[0xff; 160][..], "silence");
        heard.push((at, p.header));
    }
    let gaps: Vec<Duration> = heard.windows(2).map(|w| w[1].0 - w[0].0).collect();
    let longest = gaps.iter().max().copied().unwrap_or_default();
    println!(
        "{} silence frames in 3 s, the longest gap {longest:?}",
        heard.len()
    );
    assert!((147..=153).contains(&heard.len()), "{}", heard.len());
    assert!(longest < Duration::from_millis(50), "{longest:?}");
    for w in heard.windows(2) {
        let (a, b) = (w[0].1, w[1].1);
        assert_eq!(b.sequence_number, a.sequence_number.wrapping_add(1));
        assert_eq!(b.timestamp.wrapping_sub(a.timestamp), 160);
    }
    // Still up.
    assert!(
        tokio::time::timeout(Duration::from_millis(100), session.ended())
            .await
            .is_err()
    );
    session.hangup().unwrap();
    assert_eq!(ended(&mut session).await.end, MediaEnd::Hangup);
    let media_messages = tokio::task::spawn_blocking(move || join(agent))
        .await
        .unwrap();
    assert!(media_messages >= 140, "{media_messages}");
}

/// A pseudo-random signal of `n` samples (amplitude ±8,000), as µ-law codes: two seeds are
/// two signals that do not correlate.
fn noise(seed: u32, n: usize) -> Vec<u8> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let sample = ((x >> 16) % 16_000) as i32 - 8000;
            crate::media::g711::linear_to_ulaw(sample as i16)
        })
        .collect()
}

/// The peak of the normalized cross-correlation of `signal` (µ-law codes) inside `channel`,
/// over the lags `lags`: (value, lag in samples).
fn peak(channel: &[i16], signal: &[u8], lags: std::ops::Range<usize>) -> (f64, usize) {
    let s: Vec<f64> = signal
        .iter()
        .map(|&c| f64::from(crate::media::g711::ulaw_to_linear(c)))
        .collect();
    let s_energy: f64 = s.iter().map(|v| v * v).sum();
    let mut best = (f64::MIN, 0);
    for lag in lags {
        let Some(w) = channel.get(lag..lag + s.len()) else {
            break;
        };
        let (mut dot, mut energy) = (0.0, 0.0);
        for (a, b) in w.iter().zip(&s) {
            let a = f64::from(*a);
            dot += a * b;
            energy += a * a;
        }
        let r = if energy > 0.0 {
            dot / (energy * s_energy).sqrt()
        } else {
            0.0
        };
        if r > best.0 {
            best = (r, lag);
        }
    }
    best
}

/// Samples of call time from `start` to `at`, at 8 kHz.
fn samples_between(start: Instant, at: Instant) -> usize {
    (at.duration_since(start).as_micros() / 125) as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_stream_call_is_a_stereo_wav_of_the_caller_left_and_the_agent_right() {
    use crate::ids::{CallId, TenantId};
    use crate::media::recorder::{Recorder, RecordingKey, recording_path};
    use crate::media::recording::HEADER_BYTES;

    const CALLER_PACKETS: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::spawn(dir.path().to_owned(), 256).unwrap();
    let key = RecordingKey {
        tenant: TenantId::new(),
        call: CallId::new(),
    };
    let tap = recorder.open(key).unwrap();
    let media = MediaRuntime::spawn(LOOPBACK, 31480..=31481, 1).unwrap();
    let (l, addr) = listener();
    let agent_signal = noise(77, 8000);
    let agent = {
        let agent_signal = agent_signal.clone();
        std::thread::spawn(move || {
            let mut a = Agent::accept(accept_tcp(&l));
            a.until("start", |_| {});
            // Half a second of the caller's audio, then one second of the agent's.
            for _ in 0..25 {
                a.until("media", |_| {});
            }
            let sent = wall();
            a.send_json(serde_json::json!({
                "event": "media", "streamSid": "MZ1",
                "media": {"payload": STANDARD.encode(&agent_signal)}
            }));
            // The rest of the caller's audio, and the agent hangs up.
            for _ in 0..(CALLER_PACKETS - 25) {
                a.until("media", |_| {});
            }
            std::thread::sleep(Duration::from_millis(300));
            a.send(8, &1000u16.to_be_bytes());
            sent
        })
    };

    let carrier = Arc::new(UdpSocket::bind((LOOPBACK, 0)).await.unwrap());
    let ports = media.allocate().unwrap();
    let shard_addr = SocketAddr::new(LOOPBACK, ports.rtp_port());
    let url = format!("ws://127.0.0.1:{}/agent", addr.port());
    let mut start = agent_start(url, addr);
    start.recording = Some(tap.clone());
    let started = wall();
    let (mut session, mut notices) = media
        .start_stream(ports, media_config(carrier.local_addr().unwrap()), start)
        .unwrap();
    assert_eq!(notice(&mut notices).await, AgentNotice::Connected);
    // A while after the start, the caller's two seconds of its own signal, in real time.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let caller_signal = noise(5, CALLER_PACKETS * 160);
    let caller_from = wall();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for (seq, chunk) in caller_signal.chunks(160).enumerate() {
        tick.tick().await;
        carrier
            .send_to(&packet(seq as u16, chunk), shard_addr)
            .await
            .unwrap();
    }
    let report = ended(&mut session).await;
    let stopped = wall();
    assert_eq!(report.end, MediaEnd::AgentHangup);
    let agent_from = join(agent);
    let recorded = report.recording.expect("a recorded session's account");
    assert_eq!(recorded.batches_dropped, 0);
    let done = tap.finish(recorded.slots).await.unwrap();

    // The call's length, within 40 ms.
    let call_ms = stopped.duration_since(started).as_millis() as i64;
    let wav_ms = done.duration.as_millis() as i64;
    assert!(
        (call_ms - wav_ms).abs() <= 40,
        "call {call_ms} ms, wav {wav_ms} ms"
    );
    let wav = std::fs::read(recording_path(dir.path(), key.tenant, key.call)).unwrap();
    assert_eq!(wav.len() as u64, done.bytes);
    assert_eq!(&wav[0..4], b"RIFF");
    assert_eq!(&wav[22..24], &2u16.to_le_bytes(), "stereo");
    assert_eq!(&wav[24..28], &8000u32.to_le_bytes());
    let samples: Vec<i16> = wav[HEADER_BYTES..]
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let left: Vec<i16> = samples.iter().step_by(2).copied().collect();
    let right: Vec<i16> = samples.iter().skip(1).step_by(2).copied().collect();
    assert_eq!(left.len() as u64, recorded.slots * 160);

    // Each side's signal is on its own channel where it was in call time, within 20 ms
    // (160 samples), and not on the other.
    let window = |expected: usize| expected.saturating_sub(2400)..expected + 2400;
    let caller_at = samples_between(started, caller_from);
    let (r, lag) = peak(&left, &caller_signal, window(caller_at));
    assert!(r >= 0.8, "left correlates {r}");
    assert!(
        lag.abs_diff(caller_at) <= 160,
        "left at {lag}, sent at {caller_at}"
    );
    let agent_at = samples_between(started, agent_from);
    let (r, lag) = peak(&right, &agent_signal, window(agent_at));
    assert!(r >= 0.8, "right correlates {r}");
    assert!(
        lag.abs_diff(agent_at) <= 160,
        "right at {lag}, sent at {agent_at}"
    );
    let (cross, _) = peak(&right, &caller_signal[..8000], window(caller_at));
    assert!(cross < 0.3, "the caller is not on the right: {cross}");
    media.shutdown();
    media.join();
}
