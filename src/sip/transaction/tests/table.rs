//! The transaction table as a unit: matching, errors, the shared timer heap, and memory.

use bytes::Bytes;

use super::harness::{Clock, TableDriver, response_to};
use crate::sip::transaction::{
    AckMatch, Event, IstState, Method, RequestMatch, ResponseMatch, TableOutput, TimerConfig,
    TransactionError, TransactionKey, TransactionTable, Transport,
};

fn drain(table: &mut TransactionTable) -> Vec<TableOutput> {
    std::iter::from_fn(|| table.poll_output()).collect()
}

/// Runs the table until no timer is left; returns how many outputs it produced.
fn drive(table: &mut TransactionTable, clock: &mut Clock) -> usize {
    let mut outputs = 0;
    while let Some(at) = table.poll_timeout() {
        clock.set(at);
        table.handle_timeout(at);
        outputs += drain(table).len();
    }
    outputs
}

#[test]
fn hundred_thousand_requests_leave_nothing_behind() {
    let mut clock = Clock::new();
    let mut table = TransactionTable::new(TimerConfig::default());
    for i in 0..100_000u32 {
        let key = TableDriver::key(&format!("n{i}/OPTIONS"));
        assert_eq!(table.handle_request(clock.now(), &key), RequestMatch::New);
        table
            .create_nist(key.clone(), Transport::Udp, ())
            .expect("new key");
        table
            .respond(clock.now(), &key, 200, Bytes::from_static(b"200"))
            .expect("live");
        assert_eq!(
            table.handle_request(clock.now(), &key),
            RequestMatch::Retransmission
        );
    }
    assert_eq!(table.len(), 100_000);
    assert_eq!(drain(&mut table).len(), 200_000);
    assert_eq!(drive(&mut table, &mut clock), 100_000);
    assert_eq!(clock.ms(clock.now()), 32_000);
    assert!(table.is_empty());
    assert_eq!(table.timer_backlog(), 0);
    assert_eq!(table.poll_timeout(), None);
    table.shrink_to_fit();
    assert!(table.is_empty());
    // Still usable after shrinking.
    let key = TableDriver::key("after/OPTIONS");
    table
        .create_nist(key.clone(), Transport::Tcp, ())
        .expect("new key");
    table
        .respond(clock.now(), &key, 200, Bytes::from_static(b"200"))
        .expect("live");
    assert!(table.is_empty());
}

#[test]
fn index_finds_every_live_key_through_growth_slot_reuse_and_shrinking() {
    let clock = Clock::new();
    // No reservation: the index grows (and rehashes) many times on the way.
    let mut table = TransactionTable::new(TimerConfig::default());
    let key = |i: u32| TableDriver::key(&format!("k{i}/OPTIONS"));
    let create = |table: &mut TransactionTable, i: u32, transport| {
        table.create_nist(key(i), transport, ()).expect("new key");
        table
            .respond(clock.now(), &key(i), 200, Bytes::from_static(b"200"))
            .expect("live");
    };
    // Over TCP a transaction ends with its final response and frees its slot at once.
    for i in 0..20_000u32 {
        let transport = if i.is_multiple_of(2) {
            Transport::Udp
        } else {
            Transport::Tcp
        };
        create(&mut table, i, transport);
    }
    assert_eq!(table.len(), 10_000);
    // New keys take the freed slots.
    for i in 20_000..30_000 {
        create(&mut table, i, Transport::Udp);
    }
    drain(&mut table);
    let live = |i: u32| i.is_multiple_of(2) || i >= 20_000;
    let check = |table: &mut TransactionTable| {
        for i in 0..30_000 {
            let expected = if live(i) {
                RequestMatch::Retransmission
            } else {
                RequestMatch::New
            };
            assert_eq!(
                table.handle_request(clock.now(), &key(i)),
                expected,
                "key {i}"
            );
            assert_eq!(table.contains(&key(i)), live(i), "key {i}");
        }
        drain(table);
    };
    assert_eq!(table.len(), 20_000);
    check(&mut table);
    table.shrink_to_fit();
    assert_eq!(table.len(), 20_000);
    check(&mut table);
    assert_eq!(
        table.create_nist(key(0), Transport::Udp, ()),
        Err(TransactionError::Exists)
    );
}

#[test]
fn shrinking_drops_stale_timers_and_keeps_live_ones() {
    let clock = Clock::new();
    let mut table = TransactionTable::new(TimerConfig::default());
    for i in 0..2_000 {
        let key = TableDriver::key(&format!("z{i}"));
        table
            .create_ist(
                clock.now(),
                key.clone(),
                Transport::Tcp,
                (),
                Some(Bytes::from_static(b"100")),
            )
            .expect("new");
        if i % 2 == 0 {
            table.transport_error(clock.now(), &key).expect("live");
        }
    }
    drain(&mut table);
    assert_eq!(table.len(), 1_000);
    table.shrink_to_fit();
    assert_eq!(table.timer_backlog(), 1_000);
    assert_eq!(table.poll_timeout(), Some(clock.at_ms(200)));
    table.handle_timeout(clock.at_ms(200));
    let sent = drain(&mut table)
        .into_iter()
        .filter(|o| matches!(o.event, Event::Transmit(_)))
        .count();
    assert_eq!(sent, 1_000);
}

#[test]
fn stale_deadlines_are_skipped_and_bounded() {
    let mut clock = Clock::new();
    let mut table = TransactionTable::new(TimerConfig::default());
    let keys: Vec<TransactionKey> = (0..5_000)
        .map(|i| TableDriver::key(&format!("s{i}")))
        .collect();
    for key in &keys {
        table
            .create_ist(
                clock.now(),
                key.clone(),
                Transport::Tcp,
                (),
                Some(Bytes::from_static(b"100")),
            )
            .expect("new key");
    }
    assert_eq!(table.poll_timeout(), Some(clock.at_ms(200)));
    // The TU answers 180 at once: every 200 ms deadline goes stale.
    for key in &keys {
        table
            .respond(clock.now(), key, 180, Bytes::from_static(b"180"))
            .expect("live");
    }
    drain(&mut table);
    assert_eq!(
        table.poll_timeout(),
        None,
        "stale deadlines are not reported"
    );
    assert_eq!(table.timer_backlog(), 0);
    // Many deadline changes on few entries never grow the heap without bound.
    for round in 0..50u64 {
        clock.set(clock.at_ms(round));
        for key in keys.iter().take(10) {
            // A transport error ends the entry; recreate it with a new deadline.
            table.transport_error(clock.now(), key).expect("live");
            table
                .create_ist(
                    clock.now(),
                    key.clone(),
                    Transport::Tcp,
                    (),
                    Some(Bytes::from_static(b"100")),
                )
                .expect("ended, so free");
        }
    }
    assert!(table.timer_backlog() <= 1024 + 2 * table.len());
    assert_eq!(table.poll_timeout(), Some(clock.at_ms(49 + 200)));
}

#[test]
fn misuse_is_reported() {
    let clock = Clock::new();
    let mut table = TransactionTable::new(TimerConfig::default());
    let invite = TableDriver::key("m");
    let bye = TableDriver::key("m/BYE");
    let client = TableDriver::key("c:m/BYE");
    let now = clock.now();
    table
        .create_ist(now, invite.clone(), Transport::Udp, (), None)
        .expect("new");
    assert_eq!(
        table.create_ist(now, invite.clone(), Transport::Udp, (), None),
        Err(TransactionError::Exists)
    );
    assert_eq!(
        table.create_ist(now, bye.clone(), Transport::Udp, (), None),
        Err(TransactionError::WrongMethod(Method::Bye))
    );
    assert_eq!(
        table.create_nist(invite.clone(), Transport::Udp, ()),
        Err(TransactionError::WrongMethod(Method::Invite))
    );
    assert_eq!(
        table.create_nist(client.clone(), Transport::Udp, ()),
        Err(TransactionError::WrongSide)
    );
    assert_eq!(
        table.create_nict(
            now,
            bye.clone(),
            Transport::Udp,
            (),
            Bytes::from_static(b"BYE")
        ),
        Err(TransactionError::WrongSide)
    );
    assert_eq!(
        table.respond(now, &bye, 200, Bytes::new()),
        Err(TransactionError::NoMatch)
    );
    assert_eq!(
        table.respond(now, &invite, 42, Bytes::new()),
        Err(TransactionError::BadStatus(42))
    );
    assert_eq!(
        table.transport_error(now, &bye),
        Err(TransactionError::NoMatch)
    );
    // A response can never reach a server transaction, nor a request a client one.
    assert_eq!(
        table.handle_response(now, &invite, response_to("a", "INVITE", 200)),
        ResponseMatch::NoMatch
    );
    table
        .create_nict(
            now,
            client.clone(),
            Transport::Udp,
            (),
            Bytes::from_static(b"BYE"),
        )
        .expect("new");
    assert_eq!(table.handle_request(now, &client), RequestMatch::New);
    assert_eq!(table.len(), 2);
    assert!(table.contains(&client));
    assert_eq!(table.ist_state(&invite), Some(IstState::Proceeding));
    assert_eq!(table.ist_state(&client), None);
}

#[test]
fn ack_with_the_invite_branch_in_accepted_goes_to_the_tu() {
    let clock = Clock::new();
    let mut table = TransactionTable::new(TimerConfig::default());
    let key = TableDriver::key("k");
    table
        .create_ist(clock.now(), key.clone(), Transport::Udp, (), None)
        .expect("new");
    table
        .respond(clock.now(), &key, 200, Bytes::from_static(b"200"))
        .expect("live");
    assert_eq!(table.handle_ack(clock.at_ms(100), &key), AckMatch::ToTu);
    // The ACK stopped the 2xx retransmission: nothing but the end remains.
    drain(&mut table);
    assert_eq!(table.poll_timeout(), Some(clock.at_ms(32_000)));
    table.handle_timeout(clock.at_ms(32_000));
    let out = drain(&mut table);
    assert_eq!(
        out,
        vec![TableOutput {
            key,
            peer: (),
            event: Event::Terminated
        }]
    );
    assert!(table.is_empty());
}

#[test]
fn an_acknowledged_2xx_lets_go_of_its_retransmitter_while_the_invite_lingers() {
    let clock = Clock::new();
    let mut table = TransactionTable::new(TimerConfig::default());
    let acked = TableDriver::key("a/INVITE");
    let unacked = TableDriver::key("b/INVITE");
    for key in [&acked, &unacked] {
        table
            .create_ist(clock.now(), key.clone(), Transport::Udp, (), None)
            .expect("new key");
        table
            .respond(clock.now(), key, 200, Bytes::from_static(b"200"))
            .expect("live");
    }
    drain(&mut table);
    assert_eq!(table.retransmitters(), 2);
    assert!(table.ack_2xx(clock.now(), &acked));
    drain(&mut table);
    // The ACKed INVITE stays for Timer L, absorbing retransmissions, without its 2xx.
    assert_eq!(table.ist_state(&acked), Some(IstState::Accepted));
    assert_eq!(table.retransmitters(), 1);
    assert!(!table.ack_2xx(clock.now(), &acked), "nothing left to stop");
    assert_eq!(
        table.handle_request(clock.now(), &acked),
        RequestMatch::Retransmission
    );
    assert!(
        drain(&mut table).is_empty(),
        "an Accepted INVITE sends nothing"
    );
    assert!(table.ack_2xx(clock.now(), &unacked));
}
