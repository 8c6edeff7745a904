//! Cost per received packet of RTP parsing (RFC 3550 §5.1) and the symmetric-RTP latch
//! decision (RFC 4961), as the echo leg runs them for every datagram; and cost per call of
//! taking and returning an RTP/RTCP port pair (two binds and two closes on 127.0.0.1).

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vca_sip::media::latch::{Latch, PtSet, Verdict};
use vca_sip::media::ports::PortPool;
use vca_sip::media::rtp::{Pt, RtpHeader, RtpPacket, Ssrc, build};

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

fn bench_ports(c: &mut Criterion) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
    else {
        return;
    };
    let _entered = runtime.enter();
    let pool = PortPool::new(Ipv4Addr::LOCALHOST.into(), 24000..=24999);
    let mut group = c.benchmark_group("ports");
    group.throughput(Throughput::Elements(1));
    group.bench_function("allocate_and_release_pair", |b| {
        b.iter(|| pool.allocate().map(|ports| ports.rtp_port()).is_ok());
    });
    group.finish();
}

criterion_group!(benches, bench, bench_ports);
criterion_main!(benches);
