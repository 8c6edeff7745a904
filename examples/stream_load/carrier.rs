//! The carrier generator: N concurrent calls from a minimal SIP UAC over UDP (INVITE with a
//! PCMU offer, ACK, BYE), each with its own RTP socket sending a 20 ms packet on deadlines
//! and receiving vca-sip's RTP, on one thread with one mio loop.
//!
//! ```text
//!   ramp: INVITE at `rate`/s ──200 OK (SDP)──> ACK ──> RTP every 20 ms from the answer
//!   settle, then the measured window: snapshots of vca-sip's CPU and RSS, the machine's
//!         /proc/stat, the agent's and this process's CPU, the packet counts and /metrics
//!   end:  BYE at `rate`/s ──200 OK──> done
//! ```
//!
//! Per call it counts the packets received, the lost ones (RFC 3550 A.3: expected from the
//! extended sequence numbers less received), the inter-arrival jitter (RFC 3550 A.8) and the
//! wall times at which the audio turned silent (an all-silence µ-law payload after audio),
//! which, with the agent's clear times, give clear-to-silence.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use serde::Serialize;

use crate::procstat::{self, Buckets};

const SIP: Token = Token(usize::MAX - 1);
const FRAME: Duration = Duration::from_millis(20);
const SAMPLES: u32 = 160;
/// How often retransmissions and phases are looked at.
const TICK: Duration = Duration::from_millis(10);
/// SIP retransmission: first after T1, doubling, at most this many sends.
const T1: Duration = Duration::from_millis(500);
const MAX_SENDS: u32 = 7;
/// Silence onsets kept per call.
const MAX_ONSETS: usize = 64;
pub const LATENESS: &str = "vca_sip_stream_send_lateness_seconds";

#[derive(Debug, Clone)]
pub struct CarrierConfig {
    pub calls: usize,
    /// Calls placed (and hung up) per second.
    pub rate: f64,
    /// vca-sip's SIP UDP address.
    pub server: SocketAddr,
    /// The number dialled (its user part).
    pub did: String,
    /// After every call is up, before the window.
    pub settle: Duration,
    /// The measured window.
    pub steady: Duration,
    /// vca-sip's and the agent's process ids, for their CPU and memory.
    pub server_pid: Option<u32>,
    pub agent_pid: Option<u32>,
    /// vca-sip's HTTP address, for `/metrics`.
    pub http: Option<String>,
    /// Longest wait for all the calls to be answered.
    pub answer_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Inviting,
    Up,
    Byeing,
    Done,
    Failed(u16),
    /// vca-sip sent a BYE.
    EndedByServer,
}

struct Call {
    rtp: UdpSocket,
    call_id: String,
    state: State,
    /// The To header line of the answer, with its tag.
    to: String,
    /// The Request-URI of in-dialog requests (the answer's Contact).
    target: String,
    remote: Option<SocketAddr>,
    last_send: Instant,
    sends: u32,
    message: String,
    // Sending.
    seq: u16,
    ts: u32,
    ssrc: u32,
    sent: u64,
    // Receiving.
    received: u64,
    base_seq: Option<u32>,
    max_ext: u32,
    cycles: u32,
    jitter: f64,
    last_transit: Option<f64>,
    silent: bool,
    onsets: Vec<u64>,
    epoch: Instant,
}

/// Counts at one moment.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Snapshot {
    pub at_s: f64,
    pub server_cpu_s: Option<f64>,
    pub server_rss_kb: Option<u64>,
    pub agent_cpu_s: Option<f64>,
    pub own_cpu_s: f64,
    pub machine: Option<(u64, u64)>,
    pub rtp_sent: u64,
    pub rtp_received: u64,
    pub calls_up: usize,
    #[serde(skip)]
    pub lateness: Buckets,
}

/// One call's counts.
#[derive(Debug, Clone, Serialize)]
pub struct CallReport {
    pub from: String,
    pub sent: u64,
    pub received: u64,
    pub lost: i64,
    pub jitter_ms: f64,
    pub onsets_us: Vec<u64>,
    pub state: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CarrierReport {
    pub calls: usize,
    pub answered: usize,
    pub failed: usize,
    pub ended_by_server: usize,
    pub hung_up: usize,
    pub retransmissions: u64,
    pub idle_rss_kb: Option<u64>,
    pub before: Option<Snapshot>,
    pub after: Option<Snapshot>,
    pub per_call: Vec<CallReport>,
    pub cpu_seconds: f64,
    pub errors: Vec<String>,
}

/// The caller's audio: a 300 Hz tone in µ-law, one second of it, looped.
fn tone() -> Vec<u8> {
    (0..8000)
        .map(|n| {
            let phase = n as f64 * 300.0 * std::f64::consts::TAU / 8000.0;
            vca_sip::media::g711::linear_to_ulaw((phase.sin() * 4000.0) as i16)
        })
        .collect()
}

/// Whether a µ-law payload is all silence (either code of zero).
fn is_silence(payload: &[u8]) -> bool {
    !payload.is_empty() && payload.iter().all(|&b| b == 0xFF || b == 0x7F)
}

fn pid_str(pid: Option<u32>) -> Option<String> {
    pid.map(|p| p.to_string())
}

/// Runs the calls; returns the report (errors inside it say what went wrong).
#[allow(clippy::disallowed_methods)] // a load generator is a driver: it reads the clock
pub fn run(config: &CarrierConfig) -> io::Result<CarrierReport> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut sip = UdpSocket::bind("127.0.0.1:0".parse().map_err(io::Error::other)?)?;
    poll.registry()
        .register(&mut sip, SIP, Interest::READABLE)?;
    let local = sip.local_addr()?;
    let run_id = std::process::id();
    let start = Instant::now();
    let mut calls = Vec::with_capacity(config.calls);
    let mut by_id = HashMap::new();
    for i in 0..config.calls {
        let mut rtp = UdpSocket::bind("127.0.0.1:0".parse().map_err(io::Error::other)?)?;
        poll.registry()
            .register(&mut rtp, Token(i), Interest::READABLE)?;
        let call_id = format!("sl{i}-{run_id}@127.0.0.1");
        by_id.insert(call_id.clone(), i);
        calls.push(Call {
            rtp,
            call_id,
            state: State::Idle,
            to: String::new(),
            target: String::new(),
            remote: None,
            last_send: start,
            sends: 0,
            message: String::new(),
            seq: (i as u16).wrapping_mul(7919),
            ts: (i as u32).wrapping_mul(104_729),
            ssrc: 0x5100_0000 + i as u32,
            sent: 0,
            received: 0,
            base_seq: None,
            max_ext: 0,
            cycles: 0,
            jitter: 0.0,
            last_transit: None,
            silent: false,
            onsets: Vec::new(),
            epoch: start,
        });
    }
    let server_pid = pid_str(config.server_pid);
    let agent_pid = pid_str(config.agent_pid);
    let mut report = CarrierReport {
        calls: config.calls,
        idle_rss_kb: server_pid.as_deref().and_then(procstat::rss_kb),
        ..CarrierReport::default()
    };
    let tone = tone();
    let mut heap: BinaryHeap<Reverse<(Instant, usize)>> = BinaryHeap::new();
    let mut buf = vec![0u8; 65_536];
    let mut packet = [0u8; 12 + SAMPLES as usize];
    let interval = Duration::from_secs_f64(1.0 / config.rate.max(0.001));
    let mut placed = 0usize;
    let mut next_place = start;
    let mut next_tick = start;
    let mut all_up: Option<Instant> = None;
    let mut window: Option<(Instant, Instant)> = None;
    let mut hanging = 0usize;
    let mut next_hang = start;
    let mut metrics_thread: Option<std::thread::JoinHandle<Result<String, String>>> = None;
    let mut before_metrics: Option<Result<String, String>> = None;
    let mut end_by: Option<Instant> = None;
    let answer_by = start
        + Duration::from_secs_f64(config.calls as f64 / config.rate.max(0.001))
        + config.answer_timeout;

    let snapshot = |calls: &[Call], at: Instant| Snapshot {
        at_s: (at - start).as_secs_f64(),
        server_cpu_s: server_pid
            .as_deref()
            .and_then(procstat::cpu_time)
            .map(|d| d.as_secs_f64()),
        server_rss_kb: server_pid.as_deref().and_then(procstat::rss_kb),
        agent_cpu_s: agent_pid
            .as_deref()
            .and_then(procstat::cpu_time)
            .map(|d| d.as_secs_f64()),
        own_cpu_s: procstat::cpu_time("self").map_or(0.0, |d| d.as_secs_f64()),
        machine: procstat::machine_ticks(),
        rtp_sent: calls.iter().map(|c| c.sent).sum(),
        rtp_received: calls.iter().map(|c| c.received).sum(),
        calls_up: calls.iter().filter(|c| c.state == State::Up).count(),
        lateness: Buckets::default(),
    };
    let fetch = |http: &Option<String>| {
        http.clone()
            .map(|addr| std::thread::spawn(move || procstat::http_get(&addr, "/metrics")))
    };

    loop {
        let now = Instant::now();
        // New calls, at the rate.
        while placed < config.calls && now >= next_place {
            let i = placed;
            placed += 1;
            next_place += interval;
            let call = &mut calls[i];
            let rtp_port = call.rtp.local_addr()?.port();
            call.message = invite(config, local, i, &call.call_id, rtp_port);
            call.state = State::Inviting;
            call.sends = 1;
            call.last_send = now;
            let _ = sip.send_to(call.message.as_bytes(), config.server);
        }
        // RTP due.
        while let Some(&Reverse((at, i))) = heap.peek() {
            if at > now {
                break;
            }
            heap.pop();
            let call = &mut calls[i];
            if call.state != State::Up && call.state != State::Byeing {
                continue;
            }
            let Some(remote) = call.remote else { continue };
            packet[0] = 0x80;
            packet[1] = if call.sent == 0 { 0x80 } else { 0 };
            packet[2..4].copy_from_slice(&call.seq.to_be_bytes());
            packet[4..8].copy_from_slice(&call.ts.to_be_bytes());
            packet[8..12].copy_from_slice(&call.ssrc.to_be_bytes());
            let from = (call.ts % 8000) as usize;
            for (k, b) in packet[12..].iter_mut().enumerate() {
                *b = tone[(from + k) % tone.len()];
            }
            if call.rtp.send_to(&packet, remote).is_ok() {
                call.sent += 1;
            }
            call.seq = call.seq.wrapping_add(1);
            call.ts = call.ts.wrapping_add(SAMPLES);
            if call.state == State::Up {
                heap.push(Reverse((at + FRAME, i)));
            }
        }
        if now >= next_tick {
            next_tick = now + TICK;
            // Retransmissions.
            for call in calls.iter_mut() {
                if matches!(call.state, State::Inviting | State::Byeing)
                    && call.sends < MAX_SENDS
                    && now >= call.last_send + T1 * (1 << (call.sends - 1)).min(8)
                {
                    call.sends += 1;
                    call.last_send = now;
                    report.retransmissions += 1;
                    let _ = sip.send_to(call.message.as_bytes(), config.server);
                } else if matches!(call.state, State::Inviting | State::Byeing)
                    && call.sends >= MAX_SENDS
                    && now >= call.last_send + Duration::from_secs(4)
                {
                    call.state = State::Failed(408);
                }
            }
            // Phases.
            let pending = calls
                .iter()
                .filter(|c| matches!(c.state, State::Idle | State::Inviting))
                .count();
            if all_up.is_none() && placed == config.calls && (pending == 0 || now >= answer_by) {
                if pending > 0 {
                    report
                        .errors
                        .push(format!("{pending} calls not answered in time"));
                }
                all_up = Some(now);
            }
            if let Some(up) = all_up
                && window.is_none()
                && now >= up + config.settle
            {
                let mut s = snapshot(&calls, now);
                if let Some(t) = fetch(&config.http) {
                    before_metrics = Some(t.join().unwrap_or_else(|_| Err("panic".into())));
                }
                s.lateness = before_metrics
                    .as_ref()
                    .and_then(|m| m.as_ref().ok())
                    .map(|m| Buckets::parse(m, LATENESS))
                    .unwrap_or_default();
                report.before = Some(s);
                window = Some((now, now + config.steady));
            }
            if let Some((_, until)) = window
                && report.after.is_none()
                && now >= until
            {
                report.after = Some(snapshot(&calls, now));
                metrics_thread = fetch(&config.http);
                next_hang = now;
                end_by = Some(
                    now + Duration::from_secs_f64(config.calls as f64 / config.rate.max(0.001))
                        + Duration::from_secs(10),
                );
            }
            if let Some(by) = end_by {
                let open = calls
                    .iter()
                    .filter(|c| matches!(c.state, State::Up | State::Byeing | State::Inviting))
                    .count();
                if open == 0 || now >= by {
                    if open > 0 {
                        report
                            .errors
                            .push(format!("{open} calls not ended in time"));
                    }
                    break;
                }
            }
        }
        // Hang-ups, at the rate.
        if report.after.is_some() {
            while hanging < config.calls && now >= next_hang {
                let i = hanging;
                hanging += 1;
                next_hang += interval;
                let call = &mut calls[i];
                if call.state != State::Up {
                    continue;
                }
                call.message = bye(config, local, i, call);
                call.state = State::Byeing;
                call.sends = 1;
                call.last_send = now;
                let _ = sip.send_to(call.message.as_bytes(), config.server);
            }
        }

        let mut wake = next_tick;
        if let Some(&Reverse((at, _))) = heap.peek() {
            wake = wake.min(at);
        }
        if placed < config.calls {
            wake = wake.min(next_place);
        }
        if report.after.is_some() && hanging < config.calls {
            wake = wake.min(next_hang);
        }
        let timeout = wake.saturating_duration_since(Instant::now());
        if let Err(e) = poll.poll(&mut events, Some(timeout)) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for event in &events {
            if event.token() == SIP {
                loop {
                    match sip.recv_from(&mut buf) {
                        Ok((n, src)) => {
                            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                            let now = Instant::now();
                            on_sip(&text, src, &sip, &by_id, &mut calls, &mut heap, now);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(_) => break,
                    }
                }
                continue;
            }
            let Some(call) = calls.get_mut(event.token().0) else {
                continue;
            };
            loop {
                match call.rtp.recv_from(&mut buf) {
                    Ok((n, _)) => on_rtp(call, &buf[..n], Instant::now()),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => break,
                }
            }
        }
    }

    if let (Some(after), Some(t)) = (report.after.as_mut(), metrics_thread) {
        match t.join().unwrap_or_else(|_| Err("panic".into())) {
            Ok(m) => after.lateness = Buckets::parse(&m, LATENESS),
            Err(e) => report.errors.push(format!("metrics: {e}")),
        }
    }
    if let Some(Err(e)) = before_metrics {
        report.errors.push(format!("metrics: {e}"));
    }
    for (i, c) in calls.iter().enumerate() {
        match c.state {
            State::Done => report.hung_up += 1,
            State::Failed(_) => report.failed += 1,
            State::EndedByServer => report.ended_by_server += 1,
            _ => {}
        }
        if !c.to.is_empty() {
            report.answered += 1;
        }
        let expected = c
            .base_seq
            .map_or(0, |base| i64::from(c.max_ext) - i64::from(base) + 1);
        report.per_call.push(CallReport {
            from: format!("load{i}"),
            sent: c.sent,
            received: c.received,
            lost: expected - c.received as i64,
            jitter_ms: c.jitter / 8.0,
            onsets_us: c.onsets.clone(),
            state: format!("{:?}", c.state),
        });
    }
    report.cpu_seconds = procstat::cpu_time("self").map_or(0.0, |d| d.as_secs_f64());
    Ok(report)
}

fn invite(config: &CarrierConfig, local: SocketAddr, i: usize, call_id: &str, rtp: u16) -> String {
    let sdp = format!(
        "v=0\r\no=- {i} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {rtp} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n"
    );
    let (did, server) = (&config.did, config.server);
    format!(
        "INVITE sip:{did}@{server} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};rport;branch=z9hG4bK-{i}-i\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:load{i}@127.0.0.1>;tag=f{i}\r\n\
         To: <sip:{did}@{server}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:load{i}@{local}>\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

fn in_dialog(
    method: &str,
    cseq: u32,
    branch: &str,
    local: SocketAddr,
    i: usize,
    call: &Call,
) -> String {
    format!(
        "{method} {target} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};rport;branch=z9hG4bK-{i}-{branch}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:load{i}@127.0.0.1>;tag=f{i}\r\n\
         {to}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} {method}\r\n\
         Content-Length: 0\r\n\r\n",
        target = call.target,
        to = call.to,
        call_id = call.call_id,
    )
}

fn bye(_config: &CarrierConfig, local: SocketAddr, i: usize, call: &Call) -> String {
    in_dialog("BYE", 2, "b", local, i, call)
}

fn header<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn header_line<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find(|l| {
        l.split_once(':')
            .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
    })
}

/// The audio address of an SDP body.
fn sdp_audio(body: &str) -> Option<SocketAddr> {
    let ip = body
        .lines()
        .find_map(|l| l.trim().strip_prefix("c=IN IP4 "))?
        .trim();
    let port = body
        .lines()
        .find_map(|l| l.trim().strip_prefix("m=audio "))?
        .split_whitespace()
        .next()?;
    format!("{ip}:{port}").parse().ok()
}

fn on_sip(
    text: &str,
    src: SocketAddr,
    sip: &UdpSocket,
    by_id: &HashMap<String, usize>,
    calls: &mut [Call],
    heap: &mut BinaryHeap<Reverse<(Instant, usize)>>,
    now: Instant,
) {
    let Some(call_id) = header(text, "Call-ID").or_else(|| header(text, "i")) else {
        return;
    };
    let Some(&i) = by_id.get(call_id) else {
        return;
    };
    let local = sip.local_addr().unwrap_or(src);
    let cseq = header(text, "CSeq").unwrap_or("");
    if let Some(status_line) = text.strip_prefix("SIP/2.0 ") {
        let status: u16 = status_line
            .get(..3)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let call = &mut calls[i];
        if cseq.ends_with("INVITE") {
            if status < 200 {
                // Provisional: stop retransmitting (RFC 3261 timer A stops on a 1xx).
                if call.state == State::Inviting {
                    call.last_send = now + Duration::from_secs(3600);
                }
                return;
            }
            if (200..300).contains(&status) {
                let first = call.state == State::Inviting;
                if first {
                    call.to = header_line(text, "To").unwrap_or("").trim().to_owned();
                    call.target = header(text, "Contact")
                        .and_then(|c| {
                            let start = c.find('<')? + 1;
                            let end = c.find('>')?;
                            c.get(start..end).map(str::to_owned)
                        })
                        .unwrap_or_else(|| format!("sip:{src}"));
                    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
                    call.remote = sdp_audio(body);
                    call.state = State::Up;
                    heap.push(Reverse((now, i)));
                }
                // The ACK, also for a retransmitted 200.
                let ack = in_dialog("ACK", 1, "a", local, i, call);
                let _ = sip.send_to(ack.as_bytes(), src);
            } else if call.state == State::Inviting {
                call.state = State::Failed(status);
                let ack = format!(
                    "ACK sip:x@{src} SIP/2.0\r\nVia: SIP/2.0/UDP {local};rport;branch=z9hG4bK-{i}-i\r\n\
                     From: <sip:load{i}@127.0.0.1>;tag=f{i}\r\n{}\r\nCall-ID: {}\r\nCSeq: 1 ACK\r\n\
                     Content-Length: 0\r\n\r\n",
                    header_line(text, "To").unwrap_or("To: <sip:x@127.0.0.1>"),
                    call.call_id
                );
                let _ = sip.send_to(ack.as_bytes(), src);
            }
        } else if cseq.ends_with("BYE") && status >= 200 && call.state == State::Byeing {
            call.state = State::Done;
        }
        return;
    }
    // A request of vca-sip's: answer 200 (a BYE ends the call).
    let method = text.split(' ').next().unwrap_or("");
    let mut ok = String::from("SIP/2.0 200 OK\r\n");
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        for line in text.lines().filter(|l| {
            l.split_once(':')
                .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        }) {
            ok.push_str(line);
            ok.push_str("\r\n");
        }
    }
    ok.push_str("Content-Length: 0\r\n\r\n");
    let _ = sip.send_to(ok.as_bytes(), src);
    if method == "BYE" && matches!(calls[i].state, State::Up | State::Byeing) {
        calls[i].state = State::EndedByServer;
    }
}

fn on_rtp(call: &mut Call, data: &[u8], now: Instant) {
    if data.len() < 12 || data[0] >> 6 != 2 {
        return;
    }
    let seq = u32::from(u16::from_be_bytes([data[2], data[3]]));
    let ts = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
    let cc = usize::from(data[0] & 0x0f);
    let payload = data.get(12 + 4 * cc..).unwrap_or_default();
    call.received += 1;
    // Extended highest sequence number (RFC 3550 A.1, without the probation).
    match call.base_seq {
        None => {
            call.base_seq = Some(seq);
            call.max_ext = seq;
        }
        Some(_) => {
            let max16 = call.max_ext & 0xffff;
            let delta = seq.wrapping_sub(max16) & 0xffff;
            if delta < 0x8000 && delta != 0 {
                if seq < max16 {
                    call.cycles += 1 << 16;
                }
                call.max_ext = call.cycles | seq;
            }
        }
    }
    // Inter-arrival jitter in timestamp units (RFC 3550 A.8).
    let arrival = (now - call.epoch).as_secs_f64() * 8000.0;
    let transit = arrival - f64::from(ts);
    if let Some(last) = call.last_transit {
        let mut d = transit - last;
        // A timestamp wrap shows as a jump of 2^32.
        if d.abs() > 2_147_483_648.0 {
            d = d.rem_euclid(4_294_967_296.0);
        }
        call.jitter += (d.abs() - call.jitter) / 16.0;
    }
    call.last_transit = Some(transit);
    let silent = is_silence(payload);
    if silent && !call.silent && call.onsets.len() < MAX_ONSETS && call.received > 1 {
        call.onsets.push(procstat::realtime_us());
    }
    call.silent = silent;
}
