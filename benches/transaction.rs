//! Per-call cost of the transaction table on the inbound INVITE path (RFC 3261 §17.2.1).
//!
//! One "call" is: a new INVITE matched (miss) and its server transaction created, a
//! retransmitted INVITE matched and absorbed, the TU's responses, the ACK, and the
//! transaction removed. Keys are built once, as a receive loop slices them out of the
//! datagram without allocating.
//!
//! Run: `cargo bench --bench transaction`

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use vca_sip::sip::transaction::{
    AckMatch, Method, RequestMatch, TimerConfig, TransactionKey, TransactionTable, Transport,
};

const KEYS: usize = 4096;

/// Where the transactions' messages go, as a UDP receive loop would record it.
const PEER: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 7), 5060));

fn keys() -> Vec<TransactionKey> {
    (0..KEYS)
        .filter_map(|i| {
            TransactionKey::server(
                Bytes::from(format!("z9hG4bK-524287-1---{i:016x}")),
                Bytes::from_static(b"203.0.113.7:5060"),
                Method::Invite,
            )
        })
        .collect()
}

fn drain(table: &mut TransactionTable<SocketAddr>) -> usize {
    let mut n = 0;
    while let Some(output) = table.poll_output() {
        black_box(output);
        n += 1;
    }
    n
}

/// INVITE over TCP answered 486: the ACK ends the transaction at once (Timer I is zero).
fn tcp_486(c: &mut Criterion) {
    let keys = keys();
    let trying = Bytes::from_static(b"SIP/2.0 100 Trying\r\n\r\n");
    let busy = Bytes::from_static(b"SIP/2.0 486 Busy Here\r\n\r\n");
    let mut table = TransactionTable::<SocketAddr>::with_capacity(TimerConfig::default(), KEYS);
    let now = vca_sip::clock::origin();
    let mut i = 0;
    c.bench_function("ist_tcp_invite_retransmit_486_ack", |b| {
        b.iter(|| {
            let key = &keys[i % keys.len()];
            i += 1;
            assert_eq!(table.handle_request(now, key), RequestMatch::New);
            let _ = table.create_ist(now, key.clone(), Transport::Tcp, PEER, Some(trying.clone()));
            assert_eq!(table.handle_request(now, key), RequestMatch::Retransmission);
            let _ = table.respond(now, key, 486, busy.clone());
            assert_eq!(table.handle_ack(now, key), AckMatch::Absorbed);
            drain(&mut table);
            black_box(table.poll_timeout());
        })
    });
    assert!(table.is_empty());
}

/// INVITE over UDP answered 180 then 200; the 2xx ACK stops the retransmission and the
/// transaction ends at Timer L, fired through the shared timer heap in batches of calls.
fn udp_200(c: &mut Criterion) {
    let keys = keys();
    let trying = Bytes::from_static(b"SIP/2.0 100 Trying\r\n\r\n");
    let ringing = Bytes::from_static(b"SIP/2.0 180 Ringing\r\n\r\n");
    let ok = Bytes::from_static(b"SIP/2.0 200 OK\r\n\r\n");
    let mut table = TransactionTable::<SocketAddr>::with_capacity(TimerConfig::default(), KEYS);
    let step = TimerConfig::default().t1x64() + Duration::from_millis(1);
    let mut now = vca_sip::clock::origin();
    let mut i = 0;
    c.bench_function("ist_udp_invite_retransmit_180_200_ack_timer_l", |b| {
        b.iter(|| {
            let key = &keys[i % keys.len()];
            i += 1;
            assert_eq!(table.handle_request(now, key), RequestMatch::New);
            let _ = table.create_ist(now, key.clone(), Transport::Udp, PEER, Some(trying.clone()));
            assert_eq!(table.handle_request(now, key), RequestMatch::Retransmission);
            let _ = table.respond(now, key, 180, ringing.clone());
            let _ = table.respond(now, key, 200, ok.clone());
            assert!(table.ack_2xx(now, key));
            drain(&mut table);
            black_box(table.poll_timeout());
            if i % KEYS == 0 {
                // Every key is in Accepted: let Timer L end them all.
                now += step;
                table.handle_timeout(now);
                drain(&mut table);
                assert!(table.is_empty());
            }
        })
    });
}

criterion_group!(benches, tcp_486, udp_200);
criterion_main!(benches);
