//! The outbound call machine ([`crate::call::uac`]) driven through the endpoint on virtual
//! time: what the UAC commands goes through the endpoint's transactions, what the endpoint
//! transmits is what the far end sees, and the far end's responses come back in as
//! datagrams. No socket, no database, no runtime, no sleep.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use chrono::{TimeZone, Utc};

use super::{Endpoint, Event, Input};
use crate::call::uac::{MediaTarget, OutboundCall, TrunkCredentials, Uac, q850_cause};
use crate::call::uas::{CallSettings, MediaEnd, Output};
use crate::clock::FakeClock;
use crate::gate::flood::FloodConfig;
use crate::gate::{Gate, GateConfig, Shield};
use crate::ids::{CallId, TenantId};
use crate::media::session::MediaConfig;
use crate::routing::e164::CountryCode;
use crate::routing::trunks::TrunkBook;
use crate::sip::auth::NonceKey;
use crate::sip::message::{Message, Method, Request, Response};
use crate::sip::transaction::TimerConfig;
use crate::sip::triage::Transport;
use crate::store::CallWrite;
use crate::store::model::{CallStatus, Direction, HangupCause};
use crate::ua::testing::TestPeer;
use crate::ua::{Command, Link};

/// The far end's SDP answer to vca-sip's offer.
const ANSWER: &str = "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                      m=audio 40002 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
/// An answer with no codec vca-sip offered.
const G729_ANSWER: &str = "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n\
                           t=0 0\r\nm=audio 40002 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n";

const RING: Duration = Duration::from_secs(20);
const MAX: Duration = Duration::from_secs(60);

fn settings() -> CallSettings {
    CallSettings {
        public_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        udp_port: 5060,
        tcp_port: 5060,
        tls_port: 0,
        ring: Duration::ZERO,
        media_timeout: Duration::from_secs(30),
        max_call_duration: Duration::from_secs(3600),
        country: CountryCode::parse("91").expect("a country code"),
    }
}

fn far_peer() -> TestPeer {
    TestPeer {
        addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5080),
        transport: Transport::Udp,
    }
}

fn call(credentials: Option<TrunkCredentials>) -> OutboundCall {
    OutboundCall {
        tenant_id: TenantId::new(),
        trunk_id: None,
        request_uri: "sip:+15551234567@127.0.0.1:5080".to_owned(),
        called: "+15551234567".to_owned(),
        from_user: "+914440000000".to_owned(),
        credentials,
        ring_timeout: RING,
        max_duration: MAX,
        media: MediaTarget::Echo,
    }
}

fn credentials(realm: Option<&str>) -> Option<TrunkCredentials> {
    Some(TrunkCredentials {
        username: "trunkuser".to_owned(),
        password: "s3cret".to_owned(),
        realm: realm.map(str::to_owned),
    })
}

/// One UAC and the endpoint it talks through, on one clock.
struct Pair {
    endpoint: Endpoint<TestPeer>,
    uac: Uac<TestPeer>,
    clock: Arc<FakeClock>,
    start: Instant,
    now: Instant,
    wall: SystemTime,
    /// Whether the record commits succeed.
    commit: bool,
    writes: Vec<CallWrite>,
    /// The requests the far end received, in order.
    wire: Vec<Request>,
    /// How many of them [`Pair::took`] has returned.
    taken: usize,
    /// Every INVITE the far end received.
    invites: Vec<Request>,
    /// The responses the far end received (to its own requests).
    answers: Vec<Response>,
    media: Vec<MediaConfig>,
    media_stopped: bool,
    done: bool,
}

impl Pair {
    fn new(call: OutboundCall) -> Pair {
        Pair::with_commit(call, true)
    }

    fn with_commit(call: OutboundCall, commit: bool) -> Pair {
        let shield = Shield::new(TrunkBook::default(), FloodConfig::default());
        let key = NonceKey::new(&[7; 32]).expect("a 32-byte key");
        let gate = Gate::new(shield, key, GateConfig::default());
        let clock = FakeClock::new(Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap());
        let now = crate::clock::origin();
        let uac = Uac::new(settings(), clock.clone(), CallId::new(), call, far_peer());
        let mut pair = Pair {
            endpoint: Endpoint::new(gate, TimerConfig::default(), 64),
            uac,
            clock,
            start: now,
            now,
            wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            commit,
            writes: Vec::new(),
            wire: Vec::new(),
            taken: 0,
            invites: Vec::new(),
            answers: Vec::new(),
            media: Vec::new(),
            media_stopped: false,
            done: false,
        };
        pair.uac.start(now);
        pair.drive();
        pair
    }

    /// Runs both machines until neither has anything more to do at `now`.
    fn drive(&mut self) {
        loop {
            let mut busy = false;
            let (mut commit, mut ports) = (false, false);
            while let Some(output) = self.uac.poll_output() {
                busy = true;
                match output {
                    Output::Command(command) => {
                        self.endpoint
                            .handle(self.now, self.wall, Input::Command(command));
                    }
                    Output::Write(write) => self.writes.push(write),
                    Output::WriteDurably(write) => {
                        self.writes.push(write);
                        commit = true;
                    }
                    Output::AllocatePorts => ports = true,
                    Output::StartMedia(config) => self.media.push(config),
                    Output::StopMedia => self.media_stopped = true,
                    Output::Attempt { .. } => panic!("an outbound call logs no attempt"),
                    Output::ConnectAgent(_) | Output::SendDtmf(_) => {
                        panic!("an outbound call has no agent stream")
                    }
                    Output::Done => {
                        self.done = true;
                        let call = self.uac.key().clone();
                        self.endpoint.handle(
                            self.now,
                            self.wall,
                            Input::Command(Command::Gone { call }),
                        );
                    }
                }
            }
            if commit {
                self.uac.handle_committed(self.now, self.commit);
            }
            if ports {
                self.uac.handle_ports(self.now, Some(40_000));
            }
            while let Some(t) = self.endpoint.poll_transmit() {
                busy = true;
                assert_eq!(
                    t.peer.addr(),
                    far_peer().addr(),
                    "everything goes to the far end"
                );
                match Message::parse(t.data) {
                    Ok(Message::Request(r)) => {
                        if r.method() == Method::Invite {
                            self.invites.push(r.clone());
                        }
                        self.wire.push(r);
                    }
                    Ok(Message::Response(r)) => self.answers.push(r),
                    Err(e) => panic!("sent something that does not parse: {e}"),
                }
            }
            while let Some(event) = self.endpoint.poll_event() {
                busy = true;
                match event {
                    Event::Deliver { call, event } => {
                        assert_eq!(&call, self.uac.key());
                        self.uac.handle_event(self.now, event);
                    }
                    Event::NewCall(new) => panic!("no call comes in here: {new:?}"),
                }
            }
            if !busy && !commit && !ports {
                return;
            }
        }
    }

    /// Moves the clock on by `by`, firing what is due on the way (in 100 ms steps).
    fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        while self.now < end {
            let step = Duration::from_millis(100).min(end - self.now);
            self.now += step;
            self.clock.advance(step);
            self.endpoint.handle_timeout(self.now);
            self.drive();
            if self.uac.poll_timeout().is_some_and(|at| at <= self.now) {
                self.uac.handle_timeout(self.now);
                self.drive();
            }
        }
    }

    /// The methods of the requests the far end got, then forgets them.
    fn took(&mut self) -> Vec<String> {
        let new = self.wire.get(self.taken..).unwrap_or_default();
        let methods = new.iter().map(|r| r.method().as_str().to_owned()).collect();
        self.taken = self.wire.len();
        methods
    }

    /// The last request with `method` the far end got.
    fn last_request(&self, method: Method) -> Request {
        self.wire
            .iter()
            .rev()
            .find(|r| r.method() == method)
            .cloned()
            .expect("the request went out")
    }

    /// The last INVITE the far end got.
    fn invite(&self) -> Request {
        self.invites.last().cloned().expect("an INVITE went out")
    }

    /// The first INVITE the far end got (the one a CANCEL names).
    fn invite_sent_first(&self) -> Request {
        self.invites.first().cloned().expect("an INVITE went out")
    }

    /// The far end answers `request` with `status`, To-tag `callee`, `headers` and `body`.
    fn reply_to(&mut self, request: &Request, status: u16, headers: &[(&str, &str)], body: &str) {
        let mut builder = Response::to_request(request, status, "Far")
            .to_tag("callee")
            .header("Contact", "<sip:callee@127.0.0.1:5080>");
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        if !body.is_empty() {
            builder = builder.body("application/sdp", Bytes::from(body.to_owned()));
        }
        let data = builder.build();
        self.endpoint.handle(
            self.now,
            self.wall,
            Input::Datagram {
                data,
                peer: far_peer(),
            },
        );
        self.drive();
    }

    /// The far end answers the last INVITE.
    fn reply(&mut self, status: u16, headers: &[(&str, &str)], body: &str) {
        let invite = self.invite();
        self.reply_to(&invite, status, headers, body);
    }

    /// The far end answers the last request with `method`.
    fn reply_last(&mut self, method: Method, status: u16) {
        let request = self.last_request(method);
        self.reply_to(&request, status, &[], "");
    }

    /// The far end sends a request inside the dialog.
    fn far_request(&mut self, method: &str, cseq: u32) {
        let invite = self.invite();
        let h = invite.headers();
        let from_tag = h.from().ok().and_then(|f| f.tag()).expect("our From-tag");
        let text = format!(
            "{method} sip:vca@127.0.0.1:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKfar{method}{cseq}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:+15551234567@127.0.0.1:5080>;tag=callee\r\n\
             To: <sip:+914440000000@127.0.0.1>;tag={from_tag}\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} {method}\r\n\
             Content-Length: 0\r\n\r\n",
            call_id = h.call_id().expect("a Call-ID"),
        );
        self.endpoint.handle(
            self.now,
            self.wall,
            Input::Datagram {
                data: Bytes::from(text),
                peer: far_peer(),
            },
        );
        self.drive();
    }

    /// The statuses of the record, one per write.
    fn statuses(&self) -> Vec<CallStatus> {
        self.writes.iter().map(|w| w.call.status).collect()
    }

    fn last(&self) -> &CallWrite {
        self.writes.last().expect("a record write")
    }

    /// The outcome: status, SIP status, hangup cause, Q.850 cause.
    fn outcome(&self) -> (CallStatus, Option<i64>, Option<HangupCause>, Option<i64>) {
        let call = &self.last().call;
        (
            call.status,
            call.sip_status,
            call.hangup_cause,
            call.q850_cause,
        )
    }

    /// Once the call is over and the clock has run on, nothing is left in the endpoint.
    fn assert_all_gone(&mut self) {
        assert!(self.done, "the call is over");
        self.advance(Duration::from_secs(64));
        assert_eq!(self.endpoint.calls(), 0, "no call left");
        assert_eq!(self.endpoint.transactions(), 0, "no transaction left");
        assert_eq!(self.endpoint.poll_timeout(), None, "no timer left");
    }
}

#[test]
fn the_invite_carries_the_offer_and_the_record_goes_queued_then_initiated() {
    let mut p = Pair::new(call(None));
    assert_eq!(p.statuses(), [CallStatus::Queued, CallStatus::Initiated]);
    let record = &p.last().call;
    assert_eq!(record.direction, Direction::Outbound);
    assert_eq!(record.called, "+15551234567");
    assert_eq!(record.caller, "+914440000000");
    assert_eq!(record.remote_addr, "127.0.0.1:5080");
    assert_eq!(record.sip_call_id, p.uac.call_id());
    assert!(p.writes[0].events.iter().any(|e| e.kind == "queued"));
    assert!(!p.writes[0].stored, "the queued record is the first write");
    assert!(
        p.writes[1].stored,
        "and was committed before the INVITE went out"
    );
    let invite = p.invite();
    assert_eq!(invite.uri().as_str(), "sip:+15551234567@127.0.0.1:5080");
    assert_eq!(invite.headers().cseq().map(|c| c.seq).ok(), Some(1));
    let offer = String::from_utf8_lossy(invite.body()).into_owned();
    assert!(offer.contains("m=audio 40000 RTP/AVP"), "{offer}");
    assert_eq!(p.took(), ["INVITE"]);
}

#[test]
fn ringing_then_answered_then_max_duration_ends_with_our_bye() {
    let mut p = Pair::new(call(None));
    p.reply(100, &[], "");
    p.reply(180, &[], "");
    assert_eq!(p.last().call.status, CallStatus::Ringing);
    assert_eq!(p.last().call.sip_status, Some(180));
    p.reply(200, &[], ANSWER);
    assert_eq!(p.took(), ["INVITE", "ACK"]);
    let record = &p.last().call;
    assert_eq!(record.status, CallStatus::Answered);
    assert_eq!(record.sip_status, Some(200));
    assert_eq!(record.codec.as_deref(), Some("PCMU"));
    assert_eq!(p.media.len(), 1, "media starts with the answer");
    assert_eq!(
        p.media[0].remote,
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40_002)
    );
    let answered_at = p.now;
    p.advance(MAX - Duration::from_millis(100));
    assert!(p.took().is_empty(), "nothing before the maximum duration");
    p.advance(Duration::from_millis(100));
    assert_eq!(p.now - answered_at, MAX);
    assert_eq!(p.took(), ["BYE"]);
    let bye = p.last_request(Method::Bye);
    assert_eq!(
        bye.uri().as_str(),
        "sip:callee@127.0.0.1:5080",
        "to the remote target"
    );
    assert_eq!(bye.headers().cseq().map(|c| c.seq).ok(), Some(2));
    assert_eq!(
        p.outcome(),
        (
            CallStatus::Ended,
            Some(200),
            Some(HangupCause::ServerBye),
            None
        )
    );
    assert_eq!(p.last().call.duration_s, Some(60));
    assert_eq!(
        p.statuses(),
        [
            CallStatus::Queued,
            CallStatus::Initiated,
            CallStatus::Ringing,
            CallStatus::Answered,
            CallStatus::Ended
        ]
    );
    assert!(p.media_stopped);
    p.reply_last(Method::Bye, 200);
    p.assert_all_gone();
}

#[test]
fn a_183_rings_and_a_retransmitted_200_gets_the_ack_again() {
    let mut p = Pair::new(call(None));
    p.reply(183, &[], "");
    assert_eq!(p.last().call.sip_status, Some(183));
    p.reply(200, &[], ANSWER);
    p.reply(200, &[], ANSWER);
    assert_eq!(p.took(), ["INVITE", "ACK", "ACK"]);
    assert_eq!(p.media.len(), 1, "media starts once");
}

#[test]
fn the_far_ends_bye_is_answered_and_ends_the_call() {
    let mut p = Pair::new(call(None));
    p.reply(200, &[], ANSWER);
    p.far_request("BYE", 1);
    assert_eq!(
        p.answers.iter().map(Response::status).collect::<Vec<_>>(),
        [200]
    );
    assert_eq!(
        p.outcome(),
        (
            CallStatus::Ended,
            Some(200),
            Some(HangupCause::CallerBye),
            None
        )
    );
    assert!(p.media_stopped);
    p.assert_all_gone();
}

#[test]
fn an_info_is_answered_and_a_reinvite_refused_while_the_call_goes_on() {
    let mut p = Pair::new(call(None));
    p.reply(200, &[], ANSWER);
    p.far_request("INFO", 1);
    p.far_request("INVITE", 2);
    assert_eq!(
        p.answers.iter().map(Response::status).collect::<Vec<_>>(),
        [200, 488]
    );
    assert_eq!(p.last().call.status, CallStatus::Answered);
    assert!(!p.done);
}

#[test]
fn busy_486_and_600_fail_the_call_busy() {
    for status in [486, 600] {
        let mut p = Pair::new(call(None));
        p.reply(180, &[], "");
        p.reply(
            status,
            &[("Reason", "Q.850;cause=17;text=\"User busy\"")],
            "",
        );
        assert_eq!(
            p.took(),
            ["INVITE", "ACK"],
            "the transaction ACKs the {status}"
        );
        assert_eq!(
            p.outcome(),
            (
                CallStatus::Failed,
                Some(i64::from(status)),
                Some(HangupCause::Busy),
                Some(17)
            )
        );
        p.assert_all_gone();
    }
}

#[test]
fn no_answer_within_the_ring_timeout_cancels_then_the_487_fails_it_no_answer() {
    let mut p = Pair::new(call(None));
    p.reply(180, &[], "");
    p.took();
    p.advance(RING - Duration::from_millis(100));
    assert!(p.took().is_empty());
    p.advance(Duration::from_millis(100));
    assert_eq!(p.took(), ["CANCEL"]);
    assert!(!p.done, "waiting for the INVITE's final");
    let invite = p.invite_sent_first();
    p.reply_to(&invite, 487, &[], "");
    assert_eq!(
        p.outcome(),
        (
            CallStatus::Failed,
            Some(487),
            Some(HangupCause::NoAnswer),
            None
        )
    );
    p.assert_all_gone();
}

#[test]
fn a_480_or_408_is_no_answer_unless_its_reason_is_a_capacity_cause() {
    let cases = [
        (
            480,
            Some("Q.850;cause=19;text=\"No answer\""),
            HangupCause::NoAnswer,
            Some(19),
        ),
        (480, None, HangupCause::NoAnswer, None),
        (408, None, HangupCause::NoAnswer, None),
        (480, Some("Q.850;cause=34"), HangupCause::Rejected, Some(34)),
        (404, Some("Q.850;cause=1"), HangupCause::Rejected, Some(1)),
        (503, None, HangupCause::Rejected, None),
        (487, None, HangupCause::Rejected, None),
    ];
    for (status, reason, cause, q850) in cases {
        let mut p = Pair::new(call(None));
        let headers: Vec<(&str, &str)> = reason.into_iter().map(|r| ("Reason", r)).collect();
        p.reply(status, &headers, "");
        assert_eq!(
            p.outcome(),
            (
                CallStatus::Failed,
                Some(i64::from(status)),
                Some(cause),
                q850
            ),
            "{status} {reason:?}"
        );
    }
}

#[test]
fn hung_up_while_ringing_cancels_and_fails_cancel() {
    let mut p = Pair::new(call(None));
    p.reply(180, &[], "");
    p.took();
    p.uac.hang_up(p.now);
    p.drive();
    assert_eq!(p.took(), ["CANCEL"]);
    p.reply_last(Method::Cancel, 200);
    let invite = p.invite_sent_first();
    p.reply_to(&invite, 487, &[], "");
    assert_eq!(
        p.outcome(),
        (
            CallStatus::Failed,
            Some(487),
            Some(HangupCause::Cancel),
            None
        )
    );
    p.assert_all_gone();
}

#[test]
fn hung_up_before_any_provisional_waits_for_one_to_cancel() {
    let mut p = Pair::new(call(None));
    p.took();
    p.uac.hang_up(p.now);
    p.drive();
    assert!(
        p.took().is_empty(),
        "no CANCEL may overtake the INVITE (§9.1)"
    );
    p.reply(100, &[], "");
    assert_eq!(p.took(), ["CANCEL"]);
}

#[test]
fn a_200_crossing_our_cancel_is_acknowledged_and_ended() {
    let mut p = Pair::new(call(None));
    p.reply(180, &[], "");
    p.uac.hang_up(p.now);
    p.drive();
    p.reply(200, &[], ANSWER);
    assert_eq!(p.took(), ["INVITE", "CANCEL", "ACK", "BYE"]);
    assert_eq!(
        p.outcome(),
        (
            CallStatus::Failed,
            Some(200),
            Some(HangupCause::Cancel),
            None
        )
    );
    assert!(p.media.is_empty(), "no media for a call hung up");
}

#[test]
fn a_cancel_never_answered_gives_up_after_64_t1() {
    let mut p = Pair::new(call(None));
    p.reply(180, &[], "");
    p.uac.hang_up(p.now);
    p.drive();
    p.advance(Duration::from_secs(32) - Duration::from_millis(100));
    assert!(!p.done);
    p.advance(Duration::from_millis(100));
    assert_eq!(
        p.outcome(),
        (CallStatus::Failed, None, Some(HangupCause::Cancel), None)
    );
    p.assert_all_gone();
}

#[test]
fn no_response_at_all_fails_the_call_error_at_timer_b() {
    let mut p = Pair::new(call(None));
    p.advance(Duration::from_millis(31_900));
    assert!(!p.done);
    assert_eq!(
        p.took(),
        [
            "INVITE", "INVITE", "INVITE", "INVITE", "INVITE", "INVITE", "INVITE"
        ],
        "sent at 0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s"
    );
    p.advance(Duration::from_millis(100));
    assert_eq!(p.now - p.start, Duration::from_secs(32));
    assert_eq!(
        p.outcome(),
        (CallStatus::Failed, None, Some(HangupCause::Error), None)
    );
    p.assert_all_gone();
}

#[test]
fn a_401_is_answered_once_with_credentials_in_a_new_invite() {
    let mut p = Pair::new(call(credentials(Some("carrier"))));
    p.reply(
        401,
        &[(
            "WWW-Authenticate",
            "Digest realm=\"carrier\", nonce=\"n1\", qop=\"auth\", algorithm=MD5",
        )],
        "",
    );
    assert_eq!(p.took(), ["INVITE", "ACK", "INVITE"]);
    p.took();
    let first = p.invite_sent_first();
    let retried = p.invite();
    let (h1, h2) = (first.headers(), retried.headers());
    assert_eq!(h2.call_id().ok(), h1.call_id().ok(), "the same Call-ID");
    assert_eq!(
        h2.from().ok().and_then(|f| f.tag()),
        h1.from().ok().and_then(|f| f.tag()),
        "the same From-tag"
    );
    assert_eq!(h2.cseq().map(|c| c.seq).ok(), Some(2));
    assert_ne!(
        h2.top_via().ok().and_then(|v| v.branch()),
        h1.top_via().ok().and_then(|v| v.branch()),
        "a new transaction"
    );
    let auth = retried.header("Authorization").expect("credentials");
    assert!(
        auth.starts_with("Digest username=\"trunkuser\", realm=\"carrier\", nonce=\"n1\""),
        "{auth}"
    );
    assert!(
        auth.contains("uri=\"sip:+15551234567@127.0.0.1:5080\""),
        "{auth}"
    );
    assert_eq!(p.last().call.status, CallStatus::Initiated);
    p.reply(180, &[], "");
    p.reply(200, &[], ANSWER);
    assert_eq!(p.last().call.status, CallStatus::Answered);
}

#[test]
fn a_second_challenge_for_the_same_nonce_fails_the_call() {
    let mut p = Pair::new(call(credentials(None)));
    let challenge = [(
        "Proxy-Authenticate",
        "Digest realm=\"carrier\", nonce=\"n1\", algorithm=MD5",
    )];
    p.reply(407, &challenge, "");
    let retried = p.invite();
    assert!(retried.header("Proxy-Authorization").is_some());
    p.reply(407, &challenge, "");
    assert_eq!(
        p.took(),
        ["INVITE", "ACK", "INVITE", "ACK"],
        "no third INVITE"
    );
    assert_eq!(
        p.outcome(),
        (
            CallStatus::Failed,
            Some(407),
            Some(HangupCause::Rejected),
            None
        )
    );
    let reason = p.last().events.last().map(|e| e.detail.0["reason"].clone());
    assert_eq!(
        reason,
        Some(serde_json::json!("the credentials were refused"))
    );
    p.assert_all_gone();
}

#[test]
fn a_challenge_for_another_realm_is_not_answered() {
    let mut p = Pair::new(call(credentials(Some("carrier"))));
    p.reply(
        401,
        &[(
            "WWW-Authenticate",
            "Digest realm=\"elsewhere\", nonce=\"n1\"",
        )],
        "",
    );
    assert_eq!(p.took(), ["INVITE", "ACK"]);
    assert_eq!(
        p.outcome(),
        (
            CallStatus::Failed,
            Some(401),
            Some(HangupCause::Rejected),
            None
        )
    );
    let reason = p.last().events.last().map(|e| e.detail.0["reason"].clone());
    assert_eq!(
        reason,
        Some(serde_json::json!(
            "challenged for realm [\"elsewhere\"], the trunk's realm is \"carrier\""
        ))
    );
}

#[test]
fn a_challenge_without_credentials_fails_rejected() {
    let mut p = Pair::new(call(None));
    p.reply(
        401,
        &[("WWW-Authenticate", "Digest realm=\"c\", nonce=\"n\"")],
        "",
    );
    assert_eq!(
        p.outcome(),
        (
            CallStatus::Failed,
            Some(401),
            Some(HangupCause::Rejected),
            None
        )
    );
}

#[test]
fn an_answer_without_a_codec_we_offered_is_ended_at_once() {
    let mut p = Pair::new(call(None));
    p.reply(200, &[], G729_ANSWER);
    assert_eq!(p.took(), ["INVITE", "ACK", "BYE"]);
    assert_eq!(
        p.outcome(),
        (
            CallStatus::Failed,
            Some(200),
            Some(HangupCause::Error),
            None
        )
    );
    assert!(p.media.is_empty());
}

#[test]
fn a_record_that_cannot_be_stored_places_no_call() {
    let mut p = Pair::with_commit(call(None), false);
    assert!(p.took().is_empty(), "no INVITE");
    assert_eq!(
        p.outcome(),
        (CallStatus::Failed, None, Some(HangupCause::Error), None)
    );
    assert!(p.done);
}

#[test]
fn media_that_ends_by_itself_ends_the_call_with_a_bye() {
    let mut p = Pair::new(call(None));
    p.reply(200, &[], ANSWER);
    p.took();
    p.uac.handle_media_end(p.now, MediaEnd::Timeout);
    p.drive();
    assert_eq!(p.took(), ["BYE"]);
    assert_eq!(
        p.outcome(),
        (
            CallStatus::Ended,
            Some(200),
            Some(HangupCause::Timeout),
            None
        )
    );
}

#[test]
fn the_q850_cause_is_read_from_the_reason_header() {
    let response = |reason: &str| {
        let text = format!(
            "SIP/2.0 480 X\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\n\
             To: <sip:b@h>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n{reason}Content-Length: 0\r\n\r\n"
        );
        match Message::parse(Bytes::from(text)) {
            Ok(Message::Response(r)) => r,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        q850_cause(&response("Reason: Q.850;cause=34;text=\"No circuit\"\r\n")),
        Some(34)
    );
    assert_eq!(
        q850_cause(&response("Reason: q.850 ; cause = 19\r\n")),
        Some(19)
    );
    assert_eq!(q850_cause(&response("Reason: SIP;cause=200\r\n")), None);
    assert_eq!(q850_cause(&response("")), None);
}
