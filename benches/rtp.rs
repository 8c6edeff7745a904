//! Cost per received packet of RTP parsing (RFC 3550 §5.1) and the symmetric-RTP latch
//! decision (RFC 4961); of a media shard's per-packet path without its system calls (the RTP
//! leg, the bridge and the echo leg, from datagram in to datagram out); of the same path
//! through a running shard on loopback (send, shard recv + bridge + send, receive); cost per
//! call of a media session's start and hangup on a shard, beside a tokio task spawned and
//! ended per call, as the media ran before shards; and cost per call of taking and returning
//! an RTP/RTCP port pair.

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vca_sip::media::bridge::{Bridge, Side};
use vca_sip::media::echo::EchoLeg;
use vca_sip::media::latch::{Latch, PtSet, Verdict};
use vca_sip::media::leg::{Datagram, Input, Port};
use vca_sip::media::ports::PortPool;
use vca_sip::media::rtp::{Pt, RtpHeader, RtpPacket, Ssrc, build};
use vca_sip::media::rtp_leg::RtpLeg;
use vca_sip::media::runtime::MediaRuntime;
use vca_sip::media::session::MediaConfig;

fn pcmu_packet(seq: u16) -> Vec<u8> {
    let header = RtpHeader {
        marker: false,
        payload_type: Pt::PCMU,
        sequence_number: seq,
        timestamp: u32::from(seq) * 160,
        ssrc: Ssrc(0x1234_5678),
    };
    let mut out = vec![0u8; 172];
    let len = build(&header, &[0xd5; 160], &mut out).unwrap_or(0);
    out.truncate(len);
    out
}

fn bench(c: &mut Criterion) {
    let caller: SocketAddr = ([203, 0, 113, 5], 40000).into();
    let stranger: SocketAddr = ([198, 51, 100, 9], 40000).into();
    let packet = pcmu_packet(1);

    let mut group = c.benchmark_group("rtp");
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse_172B_pcmu", |b| {
        b.iter(|| RtpPacket::parse(black_box(&packet)).is_ok());
    });

    let pts = PtSet::new(&[Pt::PCMU]).with(Pt::new(101).unwrap_or(Pt::PCMU));
    let mut latch = Latch::new(caller, pts);
    latch.handle_datagram(caller, &packet);
    group.bench_function("parse_and_latch_accept", |b| {
        b.iter(|| {
            matches!(
                latch.handle_datagram(black_box(caller), black_box(&packet)),
                Verdict::Accept { .. }
            )
        });
    });
    group.bench_function("parse_and_latch_drop_stranger", |b| {
        b.iter(|| {
            matches!(
                latch.handle_datagram(black_box(stranger), black_box(&packet)),
                Verdict::Drop(_)
            )
        });
    });
    group.finish();
}

fn bench_shard(c: &mut Criterion) {
    let caller: SocketAddr = ([203, 0, 113, 5], 40000).into();
    let config = MediaConfig {
        remote: caller,
        audio_pt: Pt::PCMU,
        event_pt: Pt::new(101),
        media_timeout: Duration::from_secs(30),
    };
    let now = vca_sip::clock::origin();
    let mut bridge = Bridge::new(RtpLeg::new(now, &config), EchoLeg::new());
    let packet = pcmu_packet(1);
    let mut group = c.benchmark_group("shard");
    group.throughput(Throughput::Elements(1));
    group.bench_function("bridge_echo_172B_in_to_out", |b| {
        b.iter(|| {
            let datagram = Datagram {
                port: Port::Rtp,
                src: caller,
                data: black_box(&packet),
            };
            bridge.handle_input(now, Side::A, Input::Datagram(datagram));
            let sent = bridge.poll_transmit().map(|(_, t)| t.data.len());
            let _ = black_box(bridge.poll_timeout());
            sent
        });
    });

    // The whole loop on loopback: one packet sent, echoed by the shard, received.
    let Ok(media) = MediaRuntime::spawn(Ipv4Addr::LOCALHOST.into(), 25000..=25001, 1) else {
        return;
    };
    let Ok(phone) = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)) else {
        return;
    };
    let (Ok(ports), Ok(local)) = (media.allocate(), phone.local_addr()) else {
        return;
    };
    let echo = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), ports.rtp_port());
    let Ok(_session) = media.start(
        ports,
        MediaConfig {
            remote: local,
            ..config
        },
    ) else {
        return;
    };
    let _ = phone.set_read_timeout(Some(Duration::from_secs(1)));
    let mut buf = [0u8; 1500];
    group.bench_function("loopback_echo_round_trip", |b| {
        b.iter(|| {
            let _ = phone.send_to(&packet, echo);
            phone.recv_from(&mut buf).map(|(n, _)| n).unwrap_or(0)
        });
    });
    group.finish();
    media.shutdown();
    media.join();
}

/// Calls per iteration of the per-call benches: enough that the shard's batching delay
/// (one `COMMAND_DELAY` of 5 ms per batch at most) weighs little per call.
const CALLS: usize = 1000;

fn bench_calls(c: &mut Criterion) {
    let Ok(tokio) = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    else {
        return;
    };
    let Ok(media) = MediaRuntime::spawn(Ipv4Addr::LOCALHOST.into(), 26000..=27999, 1) else {
        return;
    };
    let config = MediaConfig {
        remote: ([127, 0, 0, 1], 9).into(),
        audio_pt: Pt::PCMU,
        event_pt: Pt::new(101),
        media_timeout: Duration::from_secs(30),
    };
    let mut group = c.benchmark_group("call");
    group.throughput(Throughput::Elements(CALLS as u64));
    group.sample_size(10);
    // What calls with no RTP cost the media side, ports included: wall time of 1,000 calls
    // started, hung up and reported.
    group.bench_function("shard_sessions_start_and_hangup_x1000", |b| {
        b.iter(|| {
            tokio.block_on(async {
                let mut sessions = Vec::with_capacity(CALLS);
                for _ in 0..CALLS {
                    let Ok(ports) = media.allocate() else { break };
                    if let Ok(session) = media.start(ports, config) {
                        sessions.push(session);
                    }
                }
                for session in &mut sessions {
                    let _ = session.hangup();
                }
                for session in &mut sessions {
                    session.ended().await;
                }
                sessions.len()
            })
        });
    });
    // The same with a task per call, as the media ran before shards (ports included).
    group.bench_function("baseline_tasks_spawn_and_hangup_x1000", |b| {
        b.iter(|| {
            tokio.block_on(async {
                let mut calls = Vec::with_capacity(CALLS);
                for _ in 0..CALLS {
                    let Ok(ports) = media.allocate() else { break };
                    let (hangup, rx) = tokio::sync::oneshot::channel::<()>();
                    let task = tokio::spawn(async move {
                        let timer = tokio::time::sleep(Duration::from_secs(30));
                        let ended = tokio::select! {
                            _ = rx => true,
                            () = timer => false,
                        };
                        drop(ports);
                        ended
                    });
                    calls.push((hangup, task));
                }
                let mut tasks = Vec::with_capacity(calls.len());
                for (hangup, task) in calls {
                    let _ = hangup.send(());
                    tasks.push(task);
                }
                let mut ended = 0;
                for task in tasks {
                    ended += usize::from(task.await.unwrap_or(false));
                }
                ended
            })
        });
    });
    group.finish();
    media.shutdown();
    media.join();
}

fn bench_ports(c: &mut Criterion) {
    let Ok(poll) = mio::Poll::new() else {
        return;
    };
    let Ok(registry) = poll.registry().try_clone() else {
        return;
    };
    let pool = PortPool::new(
        Ipv4Addr::LOCALHOST.into(),
        24000..=24999,
        vec![registry],
        vca_sip::clock::monotonic(),
    );
    let mut group = c.benchmark_group("ports");
    group.throughput(Throughput::Elements(1));
    group.bench_function("allocate_and_release_pair", |b| {
        b.iter(|| pool.allocate().map(|ports| ports.rtp_port()).is_ok());
    });
    group.finish();
}

criterion_group!(benches, bench, bench_shard, bench_calls, bench_ports);
criterion_main!(benches);
