//! Cost per 20 ms slot of a call streamed to an agent, without system calls or WebSocket
//! framing: the carrier's RTP leg bridged to the agent leg (jitter buffer, G.711 decode,
//! DTMF detector, the stream session's JSON and base64, the playout), on virtual time.
//!
//! - `caller_to_agent`: one PCMU packet from the carrier in, the slot's `media` message to
//!   the agent out (and the slot's silence frame to the caller, as a silent agent gets);
//! - `agent_to_caller`: one 20 ms `media` message from the agent parsed and queued, and its
//!   frame encoded and sent to the caller as RTP, the caller silent;
//! - `both_ways`: both in the same slot, as in a conversation with barge-in.
//!
//! The echo path of a call that is not streamed is `shard/bridge_echo_172B_in_to_out` in
//! `benches/rtp.rs`.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine as _;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vca_sip::media::agent::AgentLeg;
use vca_sip::media::bridge::{Bridge, Side};
use vca_sip::media::leg::{Datagram, Input, Port};
use vca_sip::media::rtp::{Pt, RtpHeader, Ssrc, build};
use vca_sip::media::rtp_leg::RtpLeg;
use vca_sip::media::session::MediaConfig;
use vca_sip::media::stream::{Dialect, StreamConfig};

const SLOT: Duration = Duration::from_millis(20);

/// A stream call on virtual time: the bridge, its clock and the carrier's packet counter.
struct Call {
    bridge: Bridge<RtpLeg, AgentLeg>,
    now: Instant,
    seq: u16,
    caller: SocketAddr,
    agent_media: String,
    sent_rtp: usize,
    sent_messages: usize,
}

impl Call {
    fn new() -> Call {
        let caller: SocketAddr = ([203, 0, 113, 5], 40000).into();
        let config = MediaConfig {
            remote: caller,
            audio_pt: Pt::PCMU,
            event_pt: Pt::new(101),
            media_timeout: Duration::from_secs(30),
        };
        let now = vca_sip::clock::origin();
        let stream = StreamConfig::new(Dialect::Twilio, "MZbench", "AC-tenant", "CA-call");
        let mut agent = AgentLeg::new(now, &config, stream);
        agent.set_connected();
        let payload = base64::engine::general_purpose::STANDARD.encode([0x55u8; 160]);
        let agent_media = format!(
            r#"{{"event":"media","streamSid":"MZbench","media":{{"payload":"{payload}"}}}}"#
        );
        let mut call = Call {
            bridge: Bridge::new(RtpLeg::new(now, &config), agent),
            now,
            seq: 0,
            caller,
            agent_media,
            sent_rtp: 0,
            sent_messages: 0,
        };
        // Fill the jitter buffer to its depth, so that every slot hands a frame on.
        for _ in 0..10 {
            call.slot(true, false);
        }
        call
    }

    /// One 20 ms slot: the carrier's packet and the agent's message as asked, then the
    /// slot's deadline, then everything the slot produced drained.
    fn slot(&mut self, from_caller: bool, from_agent: bool) {
        self.now += SLOT;
        if from_caller {
            self.seq = self.seq.wrapping_add(1);
            let packet = pcmu_packet(self.seq);
            let datagram = Datagram {
                port: Port::Rtp,
                src: self.caller,
                data: &packet,
            };
            self.bridge
                .handle_input(self.now, Side::A, Input::Datagram(datagram));
        }
        if from_agent {
            let now = self.now;
            self.bridge
                .b_mut()
                .session_mut()
                .handle_message(now, &self.agent_media);
        }
        self.bridge.handle_timeout(self.now);
        while let Some((_, transmit)) = self.bridge.poll_transmit() {
            self.sent_rtp += black_box(transmit.data.len());
        }
        while let Some(message) = self.bridge.b_mut().session_mut().poll_message() {
            self.sent_messages += black_box(message.len());
        }
        while self.bridge.poll_event().is_some() {}
        black_box(self.bridge.poll_timeout());
    }
}

fn pcmu_packet(seq: u16) -> Vec<u8> {
    let header = RtpHeader {
        marker: false,
        payload_type: Pt::PCMU,
        sequence_number: seq,
        timestamp: u32::from(seq) * 160,
        ssrc: Ssrc(0x1234_5678),
    };
    let mut out = vec![0u8; 172];
    let payload: Vec<u8> = (0..160u8).map(|i| i.wrapping_mul(7)).collect();
    let len = build(&header, &payload, &mut out).unwrap_or(0);
    out.truncate(len);
    out
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("stream_slot");
    group.throughput(Throughput::Elements(1));
    for (name, from_caller, from_agent) in [
        ("caller_to_agent", true, false),
        ("agent_to_caller", false, true),
        ("both_ways", true, true),
    ] {
        let mut call = Call::new();
        group.bench_function(name, |b| b.iter(|| call.slot(from_caller, from_agent)));
        assert!(
            call.sent_rtp > 0 && (!from_caller || call.sent_messages > 0),
            "{name}: the slot produced nothing"
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
