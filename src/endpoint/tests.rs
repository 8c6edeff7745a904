//! The endpoint's order of decisions, driven on virtual time with plain addresses for peers:
//! no socket, no runtime, no sleep.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use super::*;
use crate::gate::flood::FloodConfig;
use crate::gate::{GateConfig, Shield, Unadmitted};
use crate::routing::trunks::TrunkBook;
use crate::sip::auth::NonceKey;
use crate::sip::transaction::TimerConfig;
use crate::sip::triage::Transport;
use crate::ua::testing::TestPeer;

const CARRIER: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const STRANGER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));

/// An endpoint with no trunk configured (loopback is the development trunk), on a clock
/// of its own.
struct Harness {
    endpoint: Endpoint<TestPeer>,
    now: Instant,
    wall: SystemTime,
}

impl Harness {
    fn new() -> Harness {
        Harness::with_unadmitted(Unadmitted::Drop)
    }

    fn with_unadmitted(unadmitted: Unadmitted) -> Harness {
        let shield = Shield::new(TrunkBook::default(), FloodConfig::default());
        let key = NonceKey::new(&[7; 32]).expect("a 32-byte key");
        let config = GateConfig {
            unadmitted,
            ..GateConfig::default()
        };
        let gate = Gate::new(shield, key, config);
        Harness {
            endpoint: Endpoint::new(gate, TimerConfig::default(), 1024),
            now: crate::clock::origin(),
            wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        }
    }

    fn receive_from(&mut self, source: IpAddr, transport: Transport, message: String) {
        let peer = TestPeer {
            addr: SocketAddr::new(source, 5060),
            transport,
        };
        let input = Input::Datagram {
            data: Bytes::from(message),
            peer,
        };
        self.endpoint.handle(self.now, self.wall, input);
    }

    fn receive(&mut self, message: String) {
        self.receive_from(CARRIER, Transport::Udp, message);
    }

    fn command(&mut self, command: Command<TestPeer>) {
        self.endpoint
            .handle(self.now, self.wall, Input::Command(command));
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.endpoint.handle_timeout(self.now);
    }

    /// Every response sent since the last call, parsed.
    fn sent(&mut self) -> Vec<Response> {
        let mut out = Vec::new();
        while let Some(t) = self.endpoint.poll_transmit() {
            match Message::parse(t.data) {
                Ok(Message::Response(r)) => out.push(r),
                other => panic!("sent something other than a response: {other:?}"),
            }
        }
        out
    }

    fn statuses(&mut self) -> Vec<u16> {
        self.sent().iter().map(Response::status).collect()
    }

    fn events(&mut self) -> Vec<Event<TestPeer>> {
        std::iter::from_fn(|| self.endpoint.poll_event()).collect()
    }

    /// Receives an INVITE and returns the call the endpoint started for it.
    fn new_call(&mut self, call: &Msg) -> NewCall<TestPeer> {
        self.receive(call.invite());
        let mut events = self.events();
        assert_eq!(events.len(), 1, "one event for a new INVITE: {events:?}");
        match events.pop() {
            Some(Event::NewCall(new)) => new,
            other => panic!("expected a new call, got {other:?}"),
        }
    }

    /// Answers the call's INVITE 200 as the call would, through its transaction.
    fn answer(&mut self, new: &NewCall<TestPeer>) {
        let response = Response::to_request(&new.request, 200, "OK")
            .to_tag(&new.local_tag)
            .build();
        self.command(Command::Respond {
            key: new.invite_key.clone(),
            status: 200,
            response,
        });
    }
}

/// The fields of one dialog's messages.
struct Msg {
    call_id: &'static str,
    from_tag: &'static str,
}

const CALL: Msg = Msg {
    call_id: "call-1@carrier",
    from_tag: "ftag1",
};

impl Msg {
    fn request(
        &self,
        method: &str,
        branch: &str,
        to_tag: Option<&str>,
        cseq: u32,
        extra: &str,
    ) -> String {
        let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
        // Each dialog's INVITE (and the CANCEL that matches it) has a branch of its own.
        let branch = if branch == "inv" {
            format!("inv-{}", self.from_tag)
        } else {
            branch.to_owned()
        };
        format!(
            "{method} sip:09876543210@127.0.0.1 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK{branch}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:alice@127.0.0.1>;tag={from}\r\n\
             To: <sip:09876543210@127.0.0.1>{to_tag}\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} {cseq_method}\r\n\
             Contact: <sip:alice@127.0.0.1:5060>\r\n\
             {extra}\
             Content-Length: 0\r\n\r\n",
            from = self.from_tag,
            call_id = self.call_id,
            cseq_method = method,
        )
    }

    fn invite(&self) -> String {
        self.request("INVITE", "inv", None, 1, "")
    }
}

fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response.headers().get(name)
}

#[test]
fn a_new_invite_starts_one_call_and_trying_follows_a_silent_tu_at_200_ms() {
    let mut h = Harness::new();
    let new = h.new_call(&CALL);
    assert_eq!(new.request.headers().call_id().ok(), Some(CALL.call_id));
    assert!(new.trunk.is_none(), "admitted by the development trunk");
    assert!(h.sent().is_empty(), "nothing before 200 ms");
    h.advance(Duration::from_millis(199));
    assert!(h.sent().is_empty());
    h.advance(Duration::from_millis(1));
    assert_eq!(h.statuses(), vec![100]);
    assert_eq!(h.endpoint.calls(), 1);
}

#[test]
fn a_retransmitted_invite_starts_nothing_and_gets_the_last_provisional() {
    let mut h = Harness::new();
    let _new = h.new_call(&CALL);
    h.advance(Duration::from_millis(200));
    assert_eq!(h.statuses(), vec![100]);
    h.receive(CALL.invite());
    assert!(h.events().is_empty(), "no second call for a retransmission");
    assert_eq!(h.statuses(), vec![100]);
}

#[test]
fn a_merged_invite_on_a_new_branch_gets_482() {
    let mut h = Harness::new();
    let _new = h.new_call(&CALL);
    h.receive(CALL.request("INVITE", "other", None, 1, ""));
    assert!(h.events().is_empty());
    assert_eq!(h.statuses(), vec![482]);
}

#[test]
fn max_forwards_zero_on_an_invite_vca_sip_terminates_is_served() {
    let mut h = Harness::new();
    let invite = CALL.invite().replace("Max-Forwards: 70", "Max-Forwards: 0");
    h.receive(invite);
    assert!(matches!(h.events().as_slice(), [Event::NewCall(_)]));
    assert!(h.sent().is_empty());
}

#[test]
fn a_request_for_an_unknown_dialog_gets_481() {
    let mut h = Harness::new();
    h.receive(CALL.request("BYE", "bye", Some("nosuchtag"), 2, ""));
    assert!(h.events().is_empty());
    assert_eq!(h.statuses(), vec![481]);
}

#[test]
fn cancel_without_a_pending_invite_gets_481() {
    let mut h = Harness::new();
    h.receive(CALL.request("CANCEL", "inv", None, 1, ""));
    assert_eq!(h.statuses(), vec![481]);
    assert!(h.events().is_empty());
}

#[test]
fn cancel_of_a_pending_invite_gets_200_and_reaches_the_call() {
    let mut h = Harness::new();
    let new = h.new_call(&CALL);
    h.receive(CALL.request("CANCEL", "inv", None, 1, ""));
    assert_eq!(h.statuses(), vec![200]);
    match h.events().as_slice() {
        [Event::Deliver { call, event }] => {
            assert_eq!(call, &new.key);
            assert!(matches!(event, CallEvent::Cancel));
        }
        other => panic!("expected the CANCEL delivered, got {other:?}"),
    }
}

#[test]
fn cancel_after_the_final_response_gets_200_and_changes_nothing() {
    let mut h = Harness::new();
    let new = h.new_call(&CALL);
    h.answer(&new);
    assert_eq!(h.statuses(), vec![200]);
    h.receive(CALL.request("CANCEL", "inv", None, 1, ""));
    assert_eq!(h.statuses(), vec![200]);
    assert!(
        h.events().is_empty(),
        "the call is not told of a late CANCEL"
    );
}

#[test]
fn the_2xx_is_resent_until_the_ack_which_reaches_the_call() {
    let mut h = Harness::new();
    let new = h.new_call(&CALL);
    h.answer(&new);
    assert_eq!(h.statuses(), vec![200]);
    h.advance(Duration::from_millis(500));
    assert_eq!(h.statuses(), vec![200], "resent at T1");
    h.advance(Duration::from_millis(1000));
    assert_eq!(h.statuses(), vec![200], "resent at 2*T1 after that");
    h.receive(CALL.request("ACK", "ack", Some(&new.local_tag), 1, ""));
    match h.events().as_slice() {
        [
            Event::Deliver {
                event: CallEvent::Ack { .. },
                ..
            },
        ] => {}
        other => panic!("expected the ACK delivered, got {other:?}"),
    }
    h.advance(Duration::from_secs(4));
    assert!(h.sent().is_empty(), "no 2xx after its ACK");
}

#[test]
fn an_unacknowledged_2xx_is_resent_until_64_t1_then_the_call_is_told() {
    let mut h = Harness::new();
    let new = h.new_call(&CALL);
    h.answer(&new);
    let mut sent_at = vec![Duration::ZERO; h.sent().len()];
    let mut at = Duration::ZERO;
    let events = loop {
        h.advance(Duration::from_millis(500));
        at += Duration::from_millis(500);
        sent_at.extend(std::iter::repeat_n(at, h.sent().len()));
        let events = h.events();
        if !events.is_empty() || at > Duration::from_secs(40) {
            break events;
        }
    };
    // T1 doubling to T2 (§13.3.1.4): 0, 0.5, 1.5, 3.5, 7.5, 11.5 ... 31.5 s.
    let ms: Vec<u128> = sent_at.iter().map(Duration::as_millis).collect();
    assert_eq!(
        ms,
        vec![
            0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500
        ]
    );
    assert_eq!(at, Duration::from_secs(32), "given up at 64*T1");
    assert!(
        matches!(
            events.as_slice(),
            [Event::Deliver { event: CallEvent::AckTimeout, call }] if call == &new.key
        ),
        "{events:?}"
    );
}

#[test]
fn a_bye_of_a_live_dialog_reaches_its_call_with_a_transaction() {
    let mut h = Harness::new();
    let new = h.new_call(&CALL);
    h.answer(&new);
    h.sent();
    h.receive(CALL.request("BYE", "bye", Some(&new.local_tag), 2, ""));
    let mut events = h.events();
    let Some(Event::Deliver {
        event: CallEvent::Request { key, request, .. },
        ..
    }) = events.pop()
    else {
        panic!("expected the BYE delivered");
    };
    assert_eq!(request.method(), Method::Bye);
    let response = Response::to_request(&request, 200, "OK")
        .to_tag(&new.local_tag)
        .build();
    h.command(Command::Respond {
        key,
        status: 200,
        response,
    });
    assert_eq!(h.statuses(), vec![200]);
    h.receive(CALL.request("BYE", "bye", Some(&new.local_tag), 2, ""));
    assert!(h.events().is_empty(), "a retransmitted BYE is absorbed");
    assert_eq!(h.statuses(), vec![200], "and gets the same final response");
}

#[test]
fn a_request_the_busy_call_cannot_take_gets_500_with_retry_after() {
    let mut h = Harness::new();
    let new = h.new_call(&CALL);
    h.answer(&new);
    h.receive(CALL.request("ACK", "ack", Some(&new.local_tag), 1, ""));
    h.events();
    h.sent();
    h.receive(CALL.request("INFO", "info", Some(&new.local_tag), 2, ""));
    let Some(Event::Deliver { call, event }) = h.events().pop() else {
        panic!("expected the INFO delivered");
    };
    // The driver found the mailbox full and hands the event back.
    let event = Box::new(event);
    h.endpoint
        .handle(h.now, h.wall, Input::Undelivered { call, event });
    let sent = h.sent();
    assert_eq!(sent.len(), 1);
    let response = &sent[0];
    assert_eq!(response.status(), 500);
    let retry: u32 = header(response, "Retry-After")
        .and_then(|v| v.trim().parse().ok())
        .expect("a numeric Retry-After");
    assert!(retry <= 10, "Retry-After {retry} is within 0-10 s (§14.2)");
    let to = response.headers().to().expect("a To header");
    assert_eq!(to.tag(), Some(&*new.local_tag), "in the dialog's To-tag");
    assert_eq!(
        response.headers().cseq().map(|c| c.seq).ok(),
        Some(2),
        "answers the INFO"
    );
    // Over UDP a non-INVITE final is only resent when the request is: nothing by timer.
    h.advance(Duration::from_millis(500));
    assert!(h.sent().is_empty());
    h.receive(CALL.request("INFO", "info", Some(&new.local_tag), 2, ""));
    assert_eq!(h.statuses(), vec![500]);
}

#[test]
fn a_gone_call_leaves_its_dialog_unknown() {
    let mut h = Harness::new();
    let new = h.new_call(&CALL);
    h.command(Command::Gone {
        call: new.key.clone(),
    });
    assert_eq!(h.statuses(), vec![500], "the INVITE it never answered");
    assert_eq!(h.endpoint.calls(), 0);
    h.receive(CALL.request("BYE", "bye", Some(&new.local_tag), 2, ""));
    assert_eq!(h.statuses(), vec![481]);
}

#[test]
fn above_the_high_water_mark_new_calls_get_503_but_dialogs_are_served() {
    let mut h = Harness::new();
    let new = h.new_call(&CALL);
    h.answer(&new);
    h.receive(CALL.request("ACK", "ack", Some(&new.local_tag), 1, ""));
    h.events();
    h.sent();
    h.endpoint.set_backlog(HIGH_WATER + 1);
    let other = Msg {
        call_id: "call-2@carrier",
        from_tag: "ftag2",
    };
    h.receive(other.invite());
    assert!(h.events().is_empty(), "no call started");
    let sent = h.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].status(), 503);
    assert_eq!(header(&sent[0], "Retry-After"), Some("5"));
    assert!(header(&sent[0], "Reason").is_some_and(|r| r.contains("cause=42")));
    // Stateless: a retransmission is answered again, not absorbed by a transaction.
    h.receive(other.invite());
    assert_eq!(h.statuses(), vec![503]);
    h.advance(Duration::from_secs(1));
    assert!(h.sent().is_empty(), "a stateless 503 is never resent");

    h.receive(CALL.request("BYE", "bye", Some(&new.local_tag), 2, ""));
    assert!(matches!(
        h.events().as_slice(),
        [Event::Deliver {
            event: CallEvent::Request { .. },
            ..
        }]
    ));
    h.endpoint.set_backlog(HIGH_WATER);
    let third = Msg {
        call_id: "call-3@carrier",
        from_tag: "ftag3",
    };
    let _ = h.new_call(&third);
}

#[test]
fn a_draining_node_refuses_new_calls_with_503() {
    let mut h = Harness::new();
    h.endpoint.set_draining(true);
    h.receive(CALL.invite());
    assert!(h.events().is_empty());
    assert_eq!(h.statuses(), vec![503]);
}

#[test]
fn options_gets_200_with_allow() {
    let mut h = Harness::new();
    h.receive(CALL.request("OPTIONS", "opt", None, 1, ""));
    let sent = h.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].status(), 200);
    assert_eq!(header(&sent[0], "Allow"), Some(ALLOW));
    assert!(h.events().is_empty());
}

#[test]
fn a_known_method_not_served_gets_405_with_allow_and_an_unknown_one_501() {
    let mut h = Harness::new();
    h.receive(CALL.request("REGISTER", "reg", None, 1, ""));
    let sent = h.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].status(), 405);
    assert_eq!(header(&sent[0], "Allow"), Some(ALLOW));
    h.receive(CALL.request("FROBNICATE", "frob", None, 1, ""));
    assert_eq!(h.statuses(), vec![501]);
    assert!(h.events().is_empty());
}

#[test]
fn a_source_no_trunk_admits_gets_nothing_or_403_as_configured() {
    let mut h = Harness::new();
    h.receive_from(STRANGER, Transport::Udp, CALL.invite());
    assert!(h.sent().is_empty(), "dropped by default");
    assert!(h.events().is_empty());

    let mut h = Harness::with_unadmitted(Unadmitted::Forbid);
    h.receive_from(STRANGER, Transport::Udp, CALL.invite());
    assert_eq!(h.statuses(), vec![403]);
    assert!(h.events().is_empty());
}

#[test]
fn an_ack_or_in_dialog_request_is_matched_before_the_gate() {
    // A dialog's requests are served even when their source would not be admitted now.
    let mut h = Harness::new();
    let new = h.new_call(&CALL);
    h.answer(&new);
    h.sent();
    let bye = CALL.request("BYE", "bye", Some(&new.local_tag), 2, "");
    h.receive_from(STRANGER, Transport::Udp, bye);
    assert!(matches!(
        h.events().as_slice(),
        [Event::Deliver {
            event: CallEvent::Request { .. },
            ..
        }]
    ));
}

#[test]
fn a_malformed_request_gets_400_from_a_trunk_and_nothing_from_a_stranger() {
    let mut h = Harness::new();
    let bad = CALL.invite().replace("CSeq: 1 INVITE", "CSeq: 1 BYE");
    h.receive(bad.clone());
    assert_eq!(h.statuses(), vec![400]);
    h.receive_from(STRANGER, Transport::Udp, bad);
    assert!(h.sent().is_empty());
    assert!(h.events().is_empty());
}

#[test]
fn a_stray_response_is_dropped() {
    let mut h = Harness::new();
    let response = "SIP/2.0 200 OK\r\n\
                    Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKnobody\r\n\
                    From: <sip:a@127.0.0.1>;tag=1\r\n\
                    To: <sip:b@127.0.0.1>;tag=2\r\n\
                    Call-ID: stray\r\n\
                    CSeq: 1 BYE\r\n\
                    Content-Length: 0\r\n\r\n";
    h.receive(response.to_owned());
    assert!(h.sent().is_empty());
    assert!(h.events().is_empty());
}

#[test]
fn over_tcp_the_2xx_is_still_resent_until_the_ack() {
    // §13.3.1.4: the UAS core resends the 2xx on every transport.
    let mut h = Harness::new();
    h.receive_from(CARRIER, Transport::Tcp, CALL.invite());
    let Some(Event::NewCall(new)) = h.events().pop() else {
        panic!("expected a call");
    };
    assert!(new.peer.is_reliable());
    h.answer(&new);
    assert_eq!(h.statuses(), vec![200]);
    h.advance(Duration::from_millis(500));
    assert_eq!(h.statuses(), vec![200]);
}

#[test]
fn a_call_gone_without_a_final_gets_its_invite_answered_500_and_the_table_empties() {
    // Fuzz reproducer `01 00 2b 2c`: an INVITE over TCP, then the call lets go at once.
    let mut h = Harness::new();
    h.receive_from(CARRIER, Transport::Tcp, CALL.invite());
    let Some(Event::NewCall(new)) = h.events().pop() else {
        panic!("expected a call");
    };
    h.command(Command::Gone {
        call: new.key.clone(),
    });
    let sent = h.sent();
    assert_eq!(sent.iter().map(Response::status).collect::<Vec<_>>(), [500]);
    let to = sent[0].headers().to().expect("a To");
    assert_eq!(to.tag(), Some(&*new.local_tag), "in the call's To-tag");
    assert_eq!(h.endpoint.calls(), 0);
    // Timer H (64*T1) ends the INVITE transaction even without an ACK over TCP.
    h.advance(Duration::from_secs(32));
    assert_eq!(h.endpoint.transactions(), 0);
    assert_eq!(h.endpoint.poll_timeout(), None);
}

#[test]
fn over_udp_the_500_for_a_gone_call_is_resent_until_its_ack() {
    let mut h = Harness::new();
    let new = h.new_call(&CALL);
    h.command(Command::Gone {
        call: new.key.clone(),
    });
    assert_eq!(h.statuses(), [500]);
    h.advance(Duration::from_millis(500));
    assert_eq!(h.statuses(), [500], "Timer G resends it");
    h.receive(CALL.request("ACK", "inv", Some(&new.local_tag), 1, ""));
    h.advance(Duration::from_secs(5));
    assert!(h.sent().is_empty(), "the ACK stopped it; Timer I absorbs");
    assert_eq!(h.endpoint.transactions(), 0);
    assert_eq!(h.endpoint.poll_timeout(), None);
}

#[test]
fn requests_queued_behind_the_bye_get_481_when_the_call_goes() {
    let mut h = Harness::new();
    let new = h.new_call(&CALL);
    h.answer(&new);
    h.receive(CALL.request("ACK", "ack", Some(&new.local_tag), 1, ""));
    assert_eq!(h.statuses(), [200]);
    h.receive(CALL.request("BYE", "bye", Some(&new.local_tag), 2, ""));
    h.receive(CALL.request("INFO", "info", Some(&new.local_tag), 3, ""));
    let keys: Vec<(TransactionKey, Request)> = h
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Deliver {
                event: CallEvent::Request { key, request, .. },
                ..
            } => Some((key, request)),
            _ => None,
        })
        .collect();
    // ACK, BYE and INFO reached the call; it answers the BYE and goes.
    let (bye_key, bye) = keys.first().cloned().expect("the BYE");
    assert_eq!(bye.method(), Method::Bye);
    let ok = Response::to_request(&bye, 200, "OK")
        .to_tag(&new.local_tag)
        .build();
    h.command(Command::Respond {
        key: bye_key,
        status: 200,
        response: ok,
    });
    h.command(Command::Gone {
        call: new.key.clone(),
    });
    let sent = h.sent();
    let answers: Vec<(u16, String)> = sent
        .iter()
        .map(|r| {
            let cseq = r.headers().cseq().expect("a CSeq");
            (r.status(), format!("{} {}", cseq.seq, cseq.method.as_str()))
        })
        .collect();
    assert_eq!(
        answers,
        [(200, "2 BYE".to_owned()), (481, "3 INFO".to_owned())],
        "the BYE as the call answered it, the INFO by the endpoint"
    );
    // Timer J (64*T1 over UDP) for the BYE and INFO, Timer L for the INVITE.
    h.advance(Duration::from_secs(32));
    assert_eq!(h.endpoint.transactions(), 0);
    assert_eq!(h.endpoint.poll_timeout(), None);
}

#[test]
fn a_request_answered_by_the_call_is_not_answered_again_when_it_goes() {
    let mut h = Harness::new();
    let new = h.new_call(&CALL);
    let busy = Response::to_request(&new.request, 486, "Busy Here")
        .to_tag(&new.local_tag)
        .build();
    h.command(Command::Respond {
        key: new.invite_key.clone(),
        status: 486,
        response: busy,
    });
    assert_eq!(h.statuses(), [486]);
    h.command(Command::Gone {
        call: new.key.clone(),
    });
    assert!(h.sent().is_empty(), "nothing more for an answered INVITE");
}

// ---- The client path: calls vca-sip places -------------------------------------------

const OUT_CALL_ID: &str = "out-1@vca";
const OUT_TAG: &str = "vcatag1";
const OUT_BRANCH: &str = "z9hG4bKout1.0";

/// The INVITE of a call vca-sip places, its call key and its client transaction key.
fn outbound_invite() -> (CallKey, TransactionKey, Request) {
    let text = format!(
        "INVITE sip:+15551234567@127.0.0.1:5080 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5060;branch={OUT_BRANCH}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:vca@127.0.0.1>;tag={OUT_TAG}\r\n\
         To: <sip:+15551234567@127.0.0.1:5080>\r\n\
         Call-ID: {OUT_CALL_ID}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:vca@127.0.0.1:5060>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let Ok(Message::Request(invite)) = Message::parse(Bytes::from(text)) else {
        panic!("the INVITE parses");
    };
    let key = TransactionKey::client(
        Bytes::from_static(OUT_BRANCH.as_bytes()),
        transaction::Method::Invite,
    );
    (outbound_call_key(OUT_CALL_ID, OUT_TAG), key, invite)
}

/// A response of the far end to the outbound INVITE (or, with `method`, to another
/// request on `branch`).
fn far_response(
    status: u16,
    branch: &str,
    cseq: &str,
    to_tag: Option<&str>,
    extra: &str,
) -> String {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    format!(
        "SIP/2.0 {status} Whatever\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5060;branch={branch}\r\n\
         From: <sip:vca@127.0.0.1>;tag={OUT_TAG}\r\n\
         To: <sip:+15551234567@127.0.0.1:5080>{to_tag}\r\n\
         Call-ID: {OUT_CALL_ID}\r\n\
         CSeq: {cseq}\r\n\
         Contact: <sip:callee@127.0.0.1:5080>\r\n\
         {extra}\
         Content-Length: 0\r\n\r\n"
    )
}

impl Harness {
    /// Everything sent since the last call, as the start line of each message.
    fn sent_lines(&mut self) -> Vec<String> {
        std::iter::from_fn(|| self.endpoint.poll_transmit())
            .map(|t| {
                let text = String::from_utf8_lossy(&t.data).into_owned();
                text.lines().next().unwrap_or_default().to_owned()
            })
            .collect()
    }

    /// Places the outbound call: its INVITE goes out at once.
    fn place(&mut self) -> (CallKey, TransactionKey, Request) {
        let (call, key, invite) = outbound_invite();
        self.command(Command::Invite {
            call: call.clone(),
            key: key.clone(),
            peer: far_peer(),
            invite: Box::new(invite.clone()),
        });
        (call, key, invite)
    }

    /// The responses, timeouts and transport errors delivered to `call`, as (status or
    /// 0 for a timeout, CSeq method).
    fn delivered(&mut self, call: &CallKey) -> Vec<(u16, String)> {
        self.events()
            .into_iter()
            .map(|e| match e {
                Event::Deliver { call: c, event } if &c == call => match event {
                    CallEvent::Response { response, .. } => {
                        let method = response
                            .headers()
                            .cseq()
                            .map(|c| c.method.as_str().to_owned());
                        (response.status(), method.unwrap_or_default())
                    }
                    CallEvent::Timeout { .. } => (0, "timeout".to_owned()),
                    CallEvent::TransportError { .. } => (0, "transport".to_owned()),
                    other => panic!("unexpected event {other:?}"),
                },
                other => panic!("unexpected event {other:?}"),
            })
            .collect()
    }
}

fn far_peer() -> TestPeer {
    TestPeer {
        addr: SocketAddr::new(CARRIER, 5080),
        transport: Transport::Udp,
    }
}

#[test]
fn an_outbound_invite_over_udp_is_resent_on_timer_a_and_timer_b_reaches_the_call() {
    let mut h = Harness::new();
    let start = h.now;
    let (call, _, _) = h.place();
    assert_eq!(h.endpoint.calls(), 1, "the call is registered");
    let mut sent_at = Vec::new();
    for ms in (0..=32_000u64).step_by(100) {
        h.now = start + Duration::from_millis(ms);
        h.endpoint.handle_timeout(h.now);
        for line in h.sent_lines() {
            assert!(line.starts_with("INVITE "), "{line}");
            sent_at.push(ms);
        }
        let delivered = h.delivered(&call);
        if ms < 32_000 {
            assert!(
                delivered.is_empty(),
                "nothing before Timer B: {delivered:?} at {ms}"
            );
        } else {
            assert_eq!(delivered, [(0, "timeout".to_owned())]);
        }
    }
    assert_eq!(sent_at, [0, 500, 1500, 3500, 7500, 15_500, 31_500]);
    assert_eq!(
        h.endpoint.transactions(),
        0,
        "Timer B ended the transaction"
    );
}

#[test]
fn provisionals_and_the_2xx_reach_the_call_whole_and_a_retransmitted_2xx_too() {
    let mut h = Harness::new();
    let (call, _, _) = h.place();
    assert_eq!(h.sent_lines().len(), 1);
    h.receive_from(
        CARRIER,
        Transport::Udp,
        far_response(100, OUT_BRANCH, "1 INVITE", None, ""),
    );
    h.receive_from(
        CARRIER,
        Transport::Udp,
        far_response(180, OUT_BRANCH, "1 INVITE", Some("callee"), ""),
    );
    let ringing = h.events();
    let Some(Event::Deliver {
        event: CallEvent::Response { response, .. },
        ..
    }) = ringing.last()
    else {
        panic!("the 180 is delivered: {ringing:?}");
    };
    assert_eq!(response.status(), 180);
    assert_eq!(
        response.headers().to().ok().and_then(|t| t.tag()),
        Some("callee")
    );
    h.advance(Duration::from_secs(2));
    assert!(
        h.sent_lines().is_empty(),
        "no INVITE resent once a provisional came"
    );
    let ok = far_response(200, OUT_BRANCH, "1 INVITE", Some("callee"), "");
    h.receive_from(CARRIER, Transport::Udp, ok.clone());
    assert_eq!(h.delivered(&call), [(200, "INVITE".to_owned())]);
    // The TU's ACK goes out as it is, once.
    let ack = Bytes::from_static(b"ACK sip:callee@127.0.0.1:5080 SIP/2.0\r\n\r\n");
    h.command(Command::Ack {
        peer: far_peer(),
        request: ack,
    });
    assert_eq!(h.sent_lines(), ["ACK sip:callee@127.0.0.1:5080 SIP/2.0"]);
    // The ACK was lost: the 2xx comes again, and the call is told, to ACK again (RFC 6026).
    h.receive_from(CARRIER, Transport::Udp, ok);
    assert_eq!(h.delivered(&call), [(200, "INVITE".to_owned())]);
    assert!(
        h.sent_lines().is_empty(),
        "the transaction sends nothing for a 2xx"
    );
    // Timer M ends the transaction; the call stays until it goes.
    h.advance(Duration::from_secs(32));
    assert_eq!(h.endpoint.transactions(), 0);
    assert_eq!(h.endpoint.calls(), 1);
}

#[test]
fn a_486_is_acknowledged_by_the_transaction_and_delivered() {
    let mut h = Harness::new();
    let (call, _, _) = h.place();
    h.sent_lines();
    let busy = far_response(486, OUT_BRANCH, "1 INVITE", Some("callee"), "");
    h.receive_from(CARRIER, Transport::Udp, busy.clone());
    assert_eq!(h.delivered(&call), [(486, "INVITE".to_owned())]);
    assert_eq!(
        h.sent_lines(),
        ["ACK sip:+15551234567@127.0.0.1:5080 SIP/2.0"]
    );
    h.receive_from(CARRIER, Transport::Udp, busy);
    assert!(
        h.delivered(&call).is_empty(),
        "a retransmitted 486 is absorbed"
    );
    assert_eq!(
        h.sent_lines(),
        ["ACK sip:+15551234567@127.0.0.1:5080 SIP/2.0"]
    );
    h.command(Command::Gone { call });
    h.advance(Duration::from_secs(32));
    assert_eq!(h.endpoint.transactions(), 0, "Timer D ended it");
    assert_eq!(h.endpoint.calls(), 0);
    assert_eq!(h.endpoint.poll_timeout(), None);
}

#[test]
fn a_cancelled_invite_gets_its_cancel_answered_and_its_487_acknowledged() {
    let mut h = Harness::new();
    let (call, key, _) = h.place();
    h.sent_lines();
    h.receive_from(
        CARRIER,
        Transport::Udp,
        far_response(180, OUT_BRANCH, "1 INVITE", Some("callee"), ""),
    );
    assert_eq!(h.delivered(&call), [(180, "INVITE".to_owned())]);
    h.command(Command::Cancel { key });
    assert_eq!(
        h.sent_lines(),
        ["CANCEL sip:+15551234567@127.0.0.1:5080 SIP/2.0"]
    );
    h.receive_from(
        CARRIER,
        Transport::Udp,
        far_response(200, OUT_BRANCH, "1 CANCEL", Some("callee"), ""),
    );
    h.receive_from(
        CARRIER,
        Transport::Udp,
        far_response(487, OUT_BRANCH, "1 INVITE", Some("callee"), ""),
    );
    assert_eq!(
        h.delivered(&call),
        [(200, "CANCEL".to_owned()), (487, "INVITE".to_owned())]
    );
    assert_eq!(
        h.sent_lines(),
        ["ACK sip:+15551234567@127.0.0.1:5080 SIP/2.0"]
    );
}

#[test]
fn the_far_ends_bye_reaches_the_call_vca_sip_placed_and_our_bye_gets_its_answer() {
    let mut h = Harness::new();
    let (call, _, _) = h.place();
    h.receive_from(
        CARRIER,
        Transport::Udp,
        far_response(200, OUT_BRANCH, "1 INVITE", Some("callee"), ""),
    );
    h.sent_lines();
    h.events();
    // The callee's BYE: its From-tag is the callee's, its To-tag ours.
    let bye = format!(
        "BYE sip:vca@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKfarbye\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:+15551234567@127.0.0.1:5080>;tag=callee\r\n\
         To: <sip:vca@127.0.0.1>;tag={OUT_TAG}\r\n\
         Call-ID: {OUT_CALL_ID}\r\n\
         CSeq: 7 BYE\r\n\
         Content-Length: 0\r\n\r\n"
    );
    h.receive_from(CARRIER, Transport::Udp, bye);
    let events = h.events();
    assert!(
        matches!(
            events.as_slice(),
            [Event::Deliver { call: c, event: CallEvent::Request { request, .. } }]
                if c == &call && request.method() == Method::Bye
        ),
        "{events:?}"
    );
    // Our own BYE on another call's dialog: its 200 comes back to the call.
    let key = TransactionKey::client(
        Bytes::from_static(b"z9hG4bKout1.2"),
        transaction::Method::Bye,
    );
    h.command(Command::Request {
        call: call.clone(),
        key,
        peer: far_peer(),
        request: Bytes::from_static(b"BYE sip:callee@127.0.0.1:5080 SIP/2.0\r\n\r\n"),
    });
    assert_eq!(h.sent_lines(), ["BYE sip:callee@127.0.0.1:5080 SIP/2.0"]);
    h.receive_from(
        CARRIER,
        Transport::Udp,
        far_response(200, "z9hG4bKout1.2", "2 BYE", Some("callee"), ""),
    );
    assert_eq!(h.delivered(&call), [(200, "BYE".to_owned())]);
}

#[test]
fn responses_for_a_call_that_went_are_not_delivered_and_strays_are_dropped() {
    let mut h = Harness::new();
    let (call, _, _) = h.place();
    h.sent_lines();
    h.command(Command::Gone { call });
    assert!(
        h.sent_lines().is_empty(),
        "an outbound call has no server transaction to answer"
    );
    h.receive_from(
        CARRIER,
        Transport::Udp,
        far_response(486, OUT_BRANCH, "1 INVITE", Some("callee"), ""),
    );
    assert!(h.events().is_empty());
    assert_eq!(
        h.sent_lines().len(),
        1,
        "the transaction still ACKs the 486"
    );
    h.receive_from(
        CARRIER,
        Transport::Udp,
        far_response(200, "z9hG4bKnobody", "1 INVITE", Some("x"), ""),
    );
    assert!(h.events().is_empty());
    assert!(h.sent_lines().is_empty());
}

#[test]
fn an_invite_left_proceeding_by_a_call_that_went_is_destroyed() {
    // A CANCEL the far end never answers leaves the INVITE transaction in Proceeding,
    // where no timer runs; the call gives up and goes.
    let mut h = Harness::new();
    let (call, key, _) = h.place();
    let ringing = far_response(180, OUT_BRANCH, "1 INVITE", Some("callee"), "");
    h.receive_from(CARRIER, Transport::Udp, ringing);
    h.command(Command::Cancel { key });
    h.advance(Duration::from_secs(32));
    assert_eq!(
        h.endpoint.transactions(),
        1,
        "the CANCEL ended; the INVITE waits"
    );
    h.command(Command::Gone { call });
    assert_eq!(h.endpoint.transactions(), 0);
    assert_eq!(h.endpoint.poll_timeout(), None);
}
