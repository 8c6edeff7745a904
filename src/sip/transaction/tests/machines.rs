//! Edge cases of the machines and keys that the scenario files do not show.

use std::time::Duration;

use bytes::Bytes;

use super::harness::{Clock, invite, response_to};
use crate::sip::transaction::{
    Ict, IctInput, IctOutput, IctState, Ist, IstInput, IstOutput, IstState, Method, Nict,
    NictOutput, Nist, NistInput, TimerConfig, TransactionError, TransactionKey, Transport, Uas2xx,
};

fn bytes(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

#[test]
fn spurious_timeouts_are_no_ops() {
    let clock = Clock::new();
    let mut ist = Ist::new(clock.now(), TimerConfig::default(), Transport::Udp, None);
    ist.handle(
        clock.now(),
        IstInput::Respond {
            status: 486,
            response: bytes("486"),
        },
    )
    .expect("486 is allowed in Proceeding");
    assert_eq!(ist.poll_output(), Some(IstOutput::Transmit(bytes("486"))));
    assert_eq!(ist.poll_timeout(), Some(clock.at_ms(500)));
    // Early: nothing fires.
    ist.handle_timeout(clock.at_ms(499));
    assert_eq!(ist.poll_output(), None);
    assert_eq!(ist.poll_timeout(), Some(clock.at_ms(500)));
    // On time, then the same instant again: one retransmission only.
    ist.handle_timeout(clock.at_ms(500));
    ist.handle_timeout(clock.at_ms(500));
    assert_eq!(ist.poll_output(), Some(IstOutput::Transmit(bytes("486"))));
    assert_eq!(ist.poll_output(), None);
    assert_eq!(ist.poll_timeout(), Some(clock.at_ms(1500)));
}

#[test]
fn late_wake_up_fires_due_timers_in_deadline_order() {
    let clock = Clock::new();
    let mut ist = Ist::new(clock.now(), TimerConfig::default(), Transport::Udp, None);
    ist.handle(
        clock.now(),
        IstInput::Respond {
            status: 500,
            response: bytes("500"),
        },
    )
    .expect("500 is allowed in Proceeding");
    let _ = ist.poll_output();
    // Woken only at 40 s: the due timers fire in deadline order, G (500 ms) then H (32 s).
    ist.handle_timeout(clock.at_ms(40_000));
    assert_eq!(ist.poll_output(), Some(IstOutput::Transmit(bytes("500"))));
    assert_eq!(ist.poll_output(), Some(IstOutput::NoAck));
    assert_eq!(ist.poll_output(), Some(IstOutput::Terminated));
    assert_eq!(ist.poll_output(), None);
    assert_eq!(ist.poll_timeout(), None);
}

#[test]
fn timers_scale_with_t1() {
    let clock = Clock::new();
    let config = TimerConfig {
        t1: Duration::from_millis(100),
        t2: Duration::from_millis(400),
        t4: Duration::from_millis(1000),
    };
    let mut nict = Nict::new(clock.now(), config, Transport::Udp, bytes("BYE"));
    assert_eq!(nict.poll_output(), Some(NictOutput::Transmit(bytes("BYE"))));
    let mut sent = Vec::new();
    let mut clock = clock;
    while let Some(at) = nict.poll_timeout() {
        clock.set(at);
        nict.handle_timeout(at);
        while let Some(output) = nict.poll_output() {
            sent.push((clock.ms(clock.now()), output));
        }
    }
    let times: Vec<u64> = sent
        .iter()
        .filter(|(_, o)| matches!(o, NictOutput::Transmit(_)))
        .map(|(ms, _)| *ms)
        .collect();
    assert_eq!(
        times,
        [
            100, 300, 700, 1100, 1500, 1900, 2300, 2700, 3100, 3500, 3900, 4300, 4700, 5100, 5500,
            5900, 6300
        ]
    );
    assert_eq!(sent.last().map(|(ms, _)| *ms), Some(6400));
}

#[test]
fn tu_mistakes_are_errors_that_change_nothing() {
    let clock = Clock::new();
    let mut ist = Ist::new(clock.now(), TimerConfig::default(), Transport::Tcp, None);
    assert_eq!(
        ist.handle(
            clock.now(),
            IstInput::Respond {
                status: 99,
                response: bytes("99")
            }
        ),
        Err(TransactionError::BadStatus(99))
    );
    assert_eq!(
        ist.handle(
            clock.now(),
            IstInput::Respond {
                status: 700,
                response: bytes("700")
            }
        ),
        Err(TransactionError::BadStatus(700))
    );
    assert_eq!(ist.state(), IstState::Proceeding);
    assert_eq!(ist.poll_output(), None);
    assert_eq!(TransactionError::BadStatus(99).sip_status(), Some(500));
    assert_eq!(TransactionError::NoMatch.sip_status(), None);

    let mut nist = Nist::new(TimerConfig::default(), Transport::Tcp);
    nist.handle(
        clock.now(),
        NistInput::Respond {
            status: 200,
            response: bytes("200"),
        },
    )
    .expect("200 is allowed in Trying");
    assert!(nist.is_terminated());
    assert!(
        nist.handle(
            clock.now(),
            NistInput::Respond {
                status: 200,
                response: bytes("200")
            }
        )
        .is_err()
    );
}

#[test]
fn uas2xx_is_done_after_give_up() {
    let clock = Clock::new();
    let mut ok = Uas2xx::new(clock.now(), TimerConfig::default(), bytes("200"));
    assert!(!ok.is_done());
    ok.handle_timeout(clock.at_ms(32_000));
    assert!(ok.is_done());
    assert_eq!(ok.poll_timeout(), None);
}

#[test]
fn keys_follow_section_17_2_3() {
    let branch = bytes("z9hG4bK776asdhds");
    let sent_by = bytes("pc33.atlanta.com:5060");
    let key = |method| TransactionKey::server(branch.clone(), sent_by.clone(), method);
    let invite = key(Method::Invite).expect("branch has the cookie");
    // ACK matches the INVITE; CANCEL and BYE on the same branch do not.
    assert_eq!(key(Method::Ack), Some(invite.clone()));
    let cancel = key(Method::Cancel).expect("branch has the cookie");
    assert_ne!(cancel, invite);
    assert_eq!(cancel.invite_key(), invite);
    assert_ne!(key(Method::Bye), Some(invite.clone()));
    // Another sent-by is another transaction.
    let other = TransactionKey::server(branch.clone(), bytes("10.0.0.1:5060"), Method::Invite);
    assert_ne!(other, Some(invite.clone()));
    // No magic cookie: the caller must use a legacy key.
    assert_eq!(
        TransactionKey::server(bytes("776asdhds"), sent_by, Method::Invite),
        None
    );
    let legacy = TransactionKey::legacy(bytes("sip:bob@b.example;tag1;abc@x;1"), Method::Ack);
    assert_eq!(
        legacy,
        TransactionKey::legacy(bytes("sip:bob@b.example;tag1;abc@x;1"), Method::Invite)
    );
    // A client key never equals a server key.
    assert_ne!(TransactionKey::client(branch, Method::Invite), invite);
}

#[test]
fn method_tokens() {
    assert_eq!(Method::from_token("INVITE".into()), Method::Invite);
    assert_eq!(Method::from_token("ACK".into()), Method::Ack);
    assert_eq!(
        Method::from_token("invite".into()),
        Method::Other("invite".into())
    );
    assert_eq!(Method::from_token("NOTIFY".into()).as_bytes(), b"NOTIFY");
    assert_eq!(Method::Cancel.as_bytes(), b"CANCEL");
}

#[test]
fn the_ict_acks_a_non_2xx_with_the_responses_to_tag_and_hands_it_on_whole() {
    let clock = Clock::new();
    let invite = invite("a");
    let sent = invite.as_bytes().clone();
    let mut ict = Ict::new(clock.now(), TimerConfig::default(), Transport::Udp, invite);
    assert_eq!(ict.poll_output(), Some(IctOutput::Transmit(sent)));
    let busy = response_to("a", "INVITE", 486);
    ict.handle(clock.at_ms(100), IctInput::Response(busy.clone()));
    let Some(IctOutput::Transmit(ack)) = ict.poll_output() else {
        panic!("no ACK");
    };
    assert_eq!(
        std::str::from_utf8(&ack).unwrap(),
        "ACK sip:+15551234567@192.0.2.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKa\r\n\
Max-Forwards: 70\r\n\
Route: <sip:proxy.example;lr>\r\n\
From: <sip:vca@192.0.2.9>;tag=f1\r\n\
To: <sip:+15551234567@192.0.2.1>;tag=t1\r\n\
Call-ID: c1@192.0.2.9\r\n\
CSeq: 1 ACK\r\n\
Content-Length: 0\r\n\r\n"
    );
    assert_eq!(ict.poll_output(), Some(IctOutput::Response(busy)));
    assert_eq!(ict.poll_output(), None);
    assert_eq!(ict.state(), IctState::Completed);
    assert_eq!(ict.poll_timeout(), Some(clock.at_ms(32_100)));
}

#[test]
fn a_provisional_stops_timer_b_so_a_ringing_b_leg_never_times_out_in_the_ict() {
    let clock = Clock::new();
    let mut ict = Ict::new(
        clock.now(),
        TimerConfig::default(),
        Transport::Udp,
        invite("a"),
    );
    while ict.poll_output().is_some() {}
    ict.handle(
        clock.at_ms(300),
        IctInput::Response(response_to("a", "INVITE", 180)),
    );
    assert_eq!(ict.state(), IctState::Proceeding);
    assert_eq!(ict.poll_timeout(), None);
}
