//! The call machine's order of decisions on virtual time: every input is fed by hand, every
//! output read back; no socket, no database, no runtime, no sleep.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{TimeZone, Utc};

use super::uas::{AgentEvent, CallSettings, MediaEnd, Output, Uas};
use crate::clock::FakeClock;
use crate::ids::{AiProfileId, PhoneNumberId, TenantId};
use crate::routing::admission::Admission;
use crate::routing::directory::{Directory, Route};
use crate::routing::e164::CountryCode;
use crate::sip::message::{Message, Request, Response};
use crate::sip::transaction::{self, TransactionKey};
use crate::sip::triage::Transport;
use crate::store::model::{CallStatus, HangupCause, TenantStatus};
use crate::store::{CallMedia, CallWrite, ResolvedRoute, StreamTarget};
use crate::ua::testing::TestPeer;
use crate::ua::{CallEvent, Command};

const ANSWERED: &str = "+919876543210";
const INACTIVE: &str = "+919876543211";
const SUSPENDED: &str = "+919876543212";
const FULL: &str = "+919876543213";
/// A number whose profile streams its calls to an agent.
const STREAMED: &str = "+919876543214";
const AGENT_TIMEOUT: Duration = Duration::from_millis(3000);

const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                     m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
                     a=rtpmap:101 telephone-event/8000\r\n";
const G729_ONLY: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                         m=audio 40000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n";
/// An answer to vca-sip's own offer (late offer).
const ANSWER: &str = "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                      m=audio 40002 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

fn route(did: &str, tenant: TenantId, is_active: bool, status: TenantStatus, max: i64) -> Route {
    Route {
        phone_number_id: PhoneNumberId::new(),
        tenant_id: tenant,
        did_number: did.to_owned(),
        is_active,
        trunk_id: None,
        ai_profile_id: None,
        tenant_status: status,
        max_concurrent_calls: max,
    }
}

fn settings(ring: Duration) -> CallSettings {
    CallSettings {
        public_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        udp_port: 5060,
        tcp_port: 5060,
        tls_port: 0,
        ring,
        media_timeout: Duration::from_secs(30),
        max_call_duration: Duration::from_secs(3600),
        country: CountryCode::parse("91").expect("a country code"),
    }
}

fn message(method: &str, to_tag: Option<&str>, cseq: u32, extra: &str, body: &str) -> Request {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    let content_type = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    let text = format!(
        "{method} sip:{{DID}}@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{method}{cseq}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@127.0.0.1>;tag=caller\r\n\
         To: <sip:{{DID}}@127.0.0.1>{to_tag}\r\n\
         Call-ID: machine-test\r\n\
         CSeq: {cseq} {method}\r\n\
         Contact: <sip:alice@127.0.0.1:5070>\r\n\
         {extra}{content_type}\
         Content-Length: {len}\r\n\r\n{body}",
        len = body.len(),
    );
    match Message::parse(Bytes::from(text)) {
        Ok(Message::Request(r)) => r,
        other => panic!("test request does not parse: {other:?}"),
    }
}

/// One call machine with the directory, limits and clock it runs against.
struct Harness {
    uas: Uas<TestPeer>,
    directory: Directory,
    admission: Admission,
    clock: Arc<FakeClock>,
    now: Instant,
    tenant: TenantId,
    local_tag: &'static str,
}

impl Harness {
    fn new(did: &str, extra: &str, body: &str) -> Harness {
        Harness::with(
            did,
            extra,
            body,
            settings(Duration::ZERO),
            Admission::default(),
        )
    }

    fn with(
        did: &str,
        extra: &str,
        body: &str,
        settings: CallSettings,
        admission: Admission,
    ) -> Harness {
        let tenant = TenantId::new();
        let streamed = ResolvedRoute {
            route: route(STREAMED, tenant, true, TenantStatus::Active, 10),
            media: CallMedia::Stream(Arc::new(StreamTarget {
                ai_profile_id: AiProfileId::new(),
                url: "ws://127.0.0.1:9/agent".to_owned(),
                protocol: crate::store::model::StreamProtocol::Twilio,
                auth_token: None,
                parameters: [("bot".to_owned(), "echo".to_owned())].into(),
                ca_pem: None,
                connect_timeout: AGENT_TIMEOUT,
                max_queued_audio: Duration::from_secs(30),
                record: false,
            })),
        };
        let echoed = [
            route(ANSWERED, tenant, true, TenantStatus::Active, 10),
            route(INACTIVE, tenant, false, TenantStatus::Active, 10),
            route(
                SUSPENDED,
                TenantId::new(),
                true,
                TenantStatus::Suspended,
                10,
            ),
            route(FULL, TenantId::new(), true, TenantStatus::Active, 0),
        ]
        .map(|route| ResolvedRoute {
            route,
            media: CallMedia::Echo,
        });
        let directory = Directory::from_resolved(echoed.into_iter().chain([streamed]));
        let national = format!("0{}", &did[3..]);
        let invite = message("INVITE", None, 1, extra, body);
        let text = String::from_utf8_lossy(invite.as_bytes()).replace("{DID}", &national);
        let Ok(Message::Request(invite)) = Message::parse(Bytes::from(text)) else {
            panic!("the INVITE does not parse");
        };
        let clock = FakeClock::new(Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap());
        let peer = TestPeer {
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5070),
            transport: Transport::Udp,
        };
        let local_tag = "ourtag";
        let uas = Uas::new(
            settings,
            clock.clone(),
            Arc::from("machine-test\0caller"),
            Arc::from(local_tag),
            TransactionKey::client(
                Bytes::from_static(b"z9hG4bKINVITE1"),
                transaction::Method::Invite,
            ),
            invite,
            peer,
            None,
        );
        Harness {
            uas,
            directory,
            admission,
            clock,
            now: crate::clock::origin(),
            tenant,
            local_tag,
        }
    }

    fn start(&mut self) -> Vec<Output<TestPeer>> {
        self.uas.start(&self.directory, &self.admission);
        self.outputs()
    }

    fn outputs(&mut self) -> Vec<Output<TestPeer>> {
        std::iter::from_fn(|| self.uas.poll_output()).collect()
    }

    fn ports(&mut self, port: Option<u16>) -> Vec<Output<TestPeer>> {
        self.uas.handle_ports(self.now, port);
        self.outputs()
    }

    fn committed(&mut self, ok: bool) -> Vec<Output<TestPeer>> {
        self.uas.handle_committed(self.now, ok);
        self.outputs()
    }

    fn event(&mut self, event: CallEvent<TestPeer>) -> Vec<Output<TestPeer>> {
        self.uas.handle_event(self.now, event);
        self.outputs()
    }

    fn agent(&mut self, event: AgentEvent) -> Vec<Output<TestPeer>> {
        self.uas.handle_agent(self.now, event);
        self.outputs()
    }

    fn media_end(&mut self, end: MediaEnd) -> Vec<Output<TestPeer>> {
        self.uas.handle_media_end(self.now, end);
        self.outputs()
    }

    fn advance(&mut self, by: Duration) -> Vec<Output<TestPeer>> {
        self.now += by;
        self.clock.advance(by);
        self.uas.handle_timeout(self.now);
        self.outputs()
    }

    fn request(&self, method: &str, cseq: u32, body: &str) -> CallEvent<TestPeer> {
        let request = message(method, Some(self.local_tag), cseq, "", body);
        let key = TransactionKey::client(
            Bytes::from(format!("z9hG4bK{method}{cseq}")),
            transaction::Method::parse(method),
        );
        CallEvent::Request {
            key,
            request,
            peer: TestPeer {
                addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5070),
                transport: Transport::Udp,
            },
        }
    }

    fn ack(&self, body: &str) -> CallEvent<TestPeer> {
        CallEvent::Ack {
            request: message("ACK", Some(self.local_tag), 1, "", body),
        }
    }

    /// Routes, allocates port 20000, and returns what the ports step produced.
    fn routed(&mut self) -> Vec<Output<TestPeer>> {
        let out = self.start();
        assert!(
            matches!(out.as_slice(), [Output::AllocatePorts]),
            "only ports asked for: {out:?}"
        );
        self.ports(Some(20000))
    }

    /// Answered and acknowledged: the call is up with media started.
    fn up(&mut self) {
        let out = self.routed();
        assert!(
            matches!(out.as_slice(), [Output::WriteDurably(_)]),
            "{out:?}"
        );
        let out = self.committed(true);
        assert_eq!(statuses(&out), vec![200]);
        let out = self.event(self.ack(""));
        assert!(matches!(out.as_slice(), [Output::StartMedia(_)]), "{out:?}");
    }
}

/// The responses among the outputs, parsed.
fn responses(outputs: &[Output<TestPeer>]) -> Vec<Response> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Command(Command::Respond { response, .. }) => {
                match Message::parse(response.clone()) {
                    Ok(Message::Response(r)) => Some(r),
                    other => panic!("a response that does not parse: {other:?}"),
                }
            }
            _ => None,
        })
        .collect()
}

fn statuses(outputs: &[Output<TestPeer>]) -> Vec<u16> {
    responses(outputs).iter().map(Response::status).collect()
}

fn reason(outputs: &[Output<TestPeer>]) -> String {
    responses(outputs)
        .last()
        .and_then(|r| r.headers().get("Reason").map(str::to_owned))
        .unwrap_or_default()
}

/// The last record change among the outputs.
fn last_write(outputs: &[Output<TestPeer>]) -> &CallWrite {
    outputs
        .iter()
        .rev()
        .find_map(|o| match o {
            Output::Write(w) | Output::WriteDurably(w) => Some(w),
            _ => None,
        })
        .expect("a record write")
}

fn sent_bye(outputs: &[Output<TestPeer>]) -> bool {
    outputs.iter().any(|o| {
        matches!(o, Output::Command(Command::Request { request, .. }) if request.starts_with(b"BYE "))
    })
}

fn is_done(outputs: &[Output<TestPeer>]) -> bool {
    matches!(outputs.last(), Some(Output::Done))
}

#[test]
fn an_unknown_number_gets_404_an_attempt_and_no_record() {
    let mut h = Harness::new("+919999999999", "", OFFER);
    let out = h.start();
    assert!(
        matches!(&out[0], Output::Attempt { reason: "unknown_did", called } if called == "09999999999")
    );
    assert_eq!(statuses(&out), vec![404]);
    assert!(reason(&out).contains("cause=1"));
    assert!(!out.iter().any(|o| matches!(o, Output::Write(_))));
    assert!(is_done(&out));
}

#[test]
fn an_inactive_number_and_a_suspended_tenant_get_403_recorded() {
    for did in [INACTIVE, SUSPENDED] {
        let mut h = Harness::new(did, "", OFFER);
        let out = h.start();
        assert_eq!(statuses(&out), vec![403], "{did}");
        assert!(reason(&out).contains("cause=21"));
        let write = last_write(&out);
        assert_eq!(write.call.status, CallStatus::Failed);
        assert_eq!(write.call.sip_status, Some(403));
        assert_eq!(write.call.hangup_cause, Some(HangupCause::Rejected));
        assert_eq!(write.call.called, did);
        assert!(is_done(&out));
    }
}

#[test]
fn a_tenant_at_its_limit_gets_486_and_another_tenant_is_unaffected() {
    let admission = Admission::default();
    let mut h = Harness::with(FULL, "", OFFER, settings(Duration::ZERO), admission.clone());
    let out = h.start();
    assert_eq!(statuses(&out), vec![486]);
    assert!(reason(&out).contains("cause=17"));
    assert_eq!(last_write(&out).call.status, CallStatus::Failed);

    let mut other = Harness::with(
        ANSWERED,
        "",
        OFFER,
        settings(Duration::ZERO),
        admission.clone(),
    );
    let out = other.start();
    assert!(matches!(out.as_slice(), [Output::AllocatePorts]));
    assert_eq!(
        admission.live(other.tenant),
        1,
        "the place is held while the call lives"
    );
    let _ = other.ports(None);
    assert_eq!(
        admission.live(other.tenant),
        0,
        "and given back when it ends"
    );
}

#[test]
fn no_common_codec_gets_488_recorded() {
    let mut h = Harness::new(ANSWERED, "", G729_ONLY);
    let out = h.routed();
    assert_eq!(statuses(&out), vec![488]);
    assert!(reason(&out).contains("cause=88"));
    assert_eq!(last_write(&out).call.sip_status, Some(488));
    assert!(is_done(&out));
}

#[test]
fn an_empty_port_pool_gets_503_with_retry_after() {
    let mut h = Harness::new(ANSWERED, "", OFFER);
    h.start();
    let out = h.ports(None);
    assert_eq!(statuses(&out), vec![503]);
    let response = &responses(&out)[0];
    assert_eq!(response.headers().get("Retry-After"), Some("5"));
    assert!(reason(&out).contains("cause=42"));
    assert_eq!(last_write(&out).call.status, CallStatus::Failed);
}

#[test]
fn a_record_that_cannot_be_committed_gets_503_and_no_200() {
    let mut h = Harness::new(ANSWERED, "", OFFER);
    let out = h.routed();
    assert!(matches!(out.as_slice(), [Output::WriteDurably(_)]));
    let out = h.committed(false);
    assert_eq!(statuses(&out), vec![503]);
    assert!(reason(&out).contains("cause=42"));
    assert!(is_done(&out));
}

#[test]
fn the_answered_record_is_committed_before_the_200_leaves() {
    let mut h = Harness::new(ANSWERED, "", OFFER);
    let out = h.routed();
    let [Output::WriteDurably(write)] = out.as_slice() else {
        panic!("expected only the durable write first: {out:?}");
    };
    assert_eq!(write.call.status, CallStatus::Answered);
    assert_eq!(write.call.codec.as_deref(), Some("PCMU"));
    assert!(!write.stored);
    let out = h.committed(true);
    let sent = responses(&out);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].status(), 200);
    assert!(sent[0].body().starts_with(b"v=0"), "with our SDP answer");
    assert_eq!(
        sent[0].headers().to().ok().and_then(|t| t.tag()),
        Some("ourtag")
    );
}

#[test]
fn ringing_sends_180_then_200_at_the_ring_deadline() {
    let mut h = Harness::with(
        ANSWERED,
        "",
        OFFER,
        settings(Duration::from_secs(2)),
        Admission::default(),
    );
    let out = h.routed();
    assert_eq!(statuses(&out), vec![180]);
    assert_eq!(last_write(&out).call.status, CallStatus::Ringing);
    assert_eq!(h.uas.poll_timeout(), Some(h.now + Duration::from_secs(2)));
    assert!(h.advance(Duration::from_millis(1999)).is_empty());
    let out = h.advance(Duration::from_millis(1));
    assert!(matches!(out.as_slice(), [Output::WriteDurably(_)]));
}

#[test]
fn cancel_while_ringing_gets_487_recorded_as_cancel() {
    let mut h = Harness::with(
        ANSWERED,
        "",
        OFFER,
        settings(Duration::from_secs(2)),
        Admission::default(),
    );
    h.routed();
    let out = h.event(CallEvent::Cancel);
    assert_eq!(statuses(&out), vec![487]);
    let write = last_write(&out);
    assert_eq!(write.call.status, CallStatus::Failed);
    assert_eq!(write.call.hangup_cause, Some(HangupCause::Cancel));
    assert!(is_done(&out));
    assert!(
        h.advance(Duration::from_secs(5)).is_empty(),
        "no 200 after the 487"
    );
}

#[test]
fn a_request_in_the_early_dialog_gets_491() {
    let mut h = Harness::with(
        ANSWERED,
        "",
        OFFER,
        settings(Duration::from_secs(2)),
        Admission::default(),
    );
    h.routed();
    let out = h.event(h.request("UPDATE", 2, ""));
    assert_eq!(statuses(&out), vec![491]);
    assert!(!is_done(&out));
}

#[test]
fn cancel_after_the_200_changes_nothing() {
    let mut h = Harness::new(ANSWERED, "", OFFER);
    h.routed();
    h.committed(true);
    assert!(h.event(CallEvent::Cancel).is_empty());
    let out = h.event(h.ack(""));
    assert!(matches!(out.as_slice(), [Output::StartMedia(_)]));
}

#[test]
fn the_ack_starts_media_toward_the_offer() {
    let mut h = Harness::new(ANSWERED, "", OFFER);
    h.routed();
    h.committed(true);
    let out = h.event(h.ack(""));
    let [Output::StartMedia(config)] = out.as_slice() else {
        panic!("expected media to start: {out:?}");
    };
    assert_eq!(config.remote, "127.0.0.1:40000".parse().unwrap());
    assert_eq!(config.audio_pt.get(), 0);
    assert_eq!(config.event_pt.map(|p| p.get()), Some(101));
    assert_eq!(config.media_timeout, Duration::from_secs(30));
}

#[test]
fn a_bye_from_the_caller_ends_the_call() {
    let mut h = Harness::new(ANSWERED, "", OFFER);
    h.up();
    h.clock.advance(Duration::from_secs(7));
    let out = h.event(h.request("BYE", 2, ""));
    assert_eq!(statuses(&out), vec![200]);
    assert!(out.iter().any(|o| matches!(o, Output::StopMedia)));
    let write = last_write(&out);
    assert_eq!(write.call.status, CallStatus::Ended);
    assert_eq!(write.call.hangup_cause, Some(HangupCause::CallerBye));
    assert_eq!(write.call.duration_s, Some(7));
    assert!(is_done(&out));
}

#[test]
fn a_bye_before_the_ack_ends_the_call() {
    let mut h = Harness::new(ANSWERED, "", OFFER);
    h.routed();
    h.committed(true);
    let out = h.event(h.request("BYE", 2, ""));
    assert_eq!(statuses(&out), vec![200]);
    assert_eq!(
        last_write(&out).call.hangup_cause,
        Some(HangupCause::CallerBye)
    );
    assert!(is_done(&out));
}

#[test]
fn a_bye_that_arrives_while_the_record_commits_is_served_after_the_200() {
    let mut h = Harness::new(ANSWERED, "", OFFER);
    h.routed();
    assert!(
        h.event(h.request("BYE", 2, "")).is_empty(),
        "held until committed"
    );
    let out = h.committed(true);
    assert_eq!(statuses(&out), vec![200, 200]);
    assert_eq!(
        last_write(&out).call.hangup_cause,
        Some(HangupCause::CallerBye)
    );
}

#[test]
fn the_longest_call_allowed_ends_with_our_bye() {
    let mut h = Harness::new(ANSWERED, "", OFFER);
    h.up();
    assert!(h.advance(Duration::from_secs(3599)).is_empty());
    let out = h.advance(Duration::from_secs(1));
    assert!(sent_bye(&out));
    assert!(out.iter().any(|o| matches!(o, Output::StopMedia)));
    let write = last_write(&out);
    assert_eq!(write.call.status, CallStatus::Ended);
    assert_eq!(write.call.hangup_cause, Some(HangupCause::ServerBye));
}

#[test]
fn no_rtp_from_the_caller_ends_with_our_bye() {
    let mut h = Harness::new(ANSWERED, "", OFFER);
    h.up();
    h.uas.handle_media_end(h.now, MediaEnd::Timeout);
    let out = h.outputs();
    assert!(sent_bye(&out));
    assert!(
        !out.iter().any(|o| matches!(o, Output::StopMedia)),
        "media already ended"
    );
    assert_eq!(
        last_write(&out).call.hangup_cause,
        Some(HangupCause::Timeout)
    );
}

#[test]
fn an_unacknowledged_200_ends_with_our_bye_recorded_failed() {
    let mut h = Harness::new(ANSWERED, "", OFFER);
    h.routed();
    h.committed(true);
    let out = h.event(CallEvent::AckTimeout);
    assert!(sent_bye(&out));
    let write = last_write(&out);
    assert_eq!(write.call.status, CallStatus::Failed);
    assert_eq!(write.call.hangup_cause, Some(HangupCause::Timeout));
    assert!(is_done(&out));
}

#[test]
fn an_expired_session_timer_ends_with_our_bye() {
    let extra = "Session-Expires: 90;refresher=uac\r\nSupported: timer\r\n";
    let mut h = Harness::new(ANSWERED, extra, OFFER);
    let out = h.routed();
    assert!(matches!(out.as_slice(), [Output::WriteDurably(_)]));
    let out = h.committed(true);
    let ok = &responses(&out)[0];
    assert_eq!(
        ok.headers().get("Session-Expires"),
        Some("90;refresher=uac")
    );
    h.event(h.ack(""));
    // A refresh at 40 s moves the expiry to 40 + 60 s (RFC 4028 §10: interval - min(32, interval/3)).
    assert!(h.advance(Duration::from_secs(40)).is_empty());
    let out = h.event(h.request("UPDATE", 2, ""));
    assert_eq!(statuses(&out), vec![200]);
    assert!(h.advance(Duration::from_secs(59)).is_empty());
    let out = h.advance(Duration::from_secs(1));
    assert!(sent_bye(&out));
    assert_eq!(
        last_write(&out).call.hangup_cause,
        Some(HangupCause::Timeout)
    );
}

#[test]
fn a_late_offer_is_answered_in_the_ack() {
    let mut h = Harness::new(ANSWERED, "", "");
    h.routed();
    let out = h.committed(true);
    assert!(
        responses(&out)[0].body().starts_with(b"v=0"),
        "our offer in the 200"
    );
    let out = h.event(h.ack(ANSWER));
    let [Output::StartMedia(config)] = out.as_slice() else {
        panic!("expected media to start: {out:?}");
    };
    assert_eq!(config.remote, "127.0.0.1:40002".parse().unwrap());
}

#[test]
fn a_late_offer_without_an_answer_in_the_ack_ends_with_our_bye() {
    let mut h = Harness::new(ANSWERED, "", "");
    h.routed();
    h.committed(true);
    let out = h.event(h.ack(""));
    assert!(sent_bye(&out));
    let write = last_write(&out);
    assert_eq!(write.call.status, CallStatus::Failed);
    assert_eq!(write.call.hangup_cause, Some(HangupCause::Error));
}

#[test]
fn a_request_with_a_lower_cseq_gets_500() {
    let mut h = Harness::new(ANSWERED, "", OFFER);
    h.up();
    let out = h.event(h.request("INFO", 5, ""));
    assert_eq!(statuses(&out), vec![200]);
    let out = h.event(h.request("INFO", 4, ""));
    assert_eq!(statuses(&out), vec![500]);
    assert!(!is_done(&out));
}

#[test]
fn a_reinvite_gets_200_with_our_answer_and_moves_the_dialogs_invite() {
    let mut h = Harness::new(ANSWERED, "", OFFER);
    h.up();
    let out = h.event(h.request("INVITE", 2, OFFER));
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Command(Command::SetInvite { .. })))
    );
    let sent = responses(&out);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].status(), 200);
    assert!(sent[0].body().starts_with(b"v=0"));
}

/// The outputs of a streamed call's ports step: the agent's plan, and the 183.
fn connecting(h: &mut Harness) -> Vec<Output<TestPeer>> {
    let out = h.routed();
    assert_eq!(statuses(&out), vec![183], "{out:?}");
    assert!(
        out.iter().any(|o| matches!(o, Output::ConnectAgent(_))),
        "the agent's stream is asked for: {out:?}"
    );
    out
}

#[test]
fn a_streamed_call_connects_its_agent_with_early_media_before_it_answers() {
    let mut h = Harness::new(STREAMED, "", OFFER);
    let out = connecting(&mut h);
    let plan = out
        .iter()
        .find_map(|o| match o {
            Output::ConnectAgent(plan) => Some(plan.clone()),
            _ => None,
        })
        .unwrap();
    // The agent learns the call's ids and numbers and the profile's own parameters.
    assert_eq!(plan.account_sid, h.tenant.to_string());
    let p = &plan.parameters;
    assert_eq!(p["tenant_id"], h.tenant.to_string());
    assert_eq!(p["call_id"], plan.call_sid);
    assert_eq!(p["to"], STREAMED);
    assert_eq!(p["from"], "alice");
    assert_eq!(p["called_raw"], format!("0{}", &STREAMED[3..]));
    assert_eq!(p["bot"], "echo");
    assert!(p.contains_key("phone_number_id") && p.contains_key("ai_profile_id"));
    // Early media goes where the offer said, on the answer's codec.
    assert_eq!(plan.media.remote.port(), 40000);
    // The 183 carries the SDP answer, so the caller hears the early media.
    let early = &responses(&out)[0];
    assert!(early.body().starts_with(b"v=0"));
    // Nothing is committed while the agent connects; once it is up the call answers.
    assert!(!out.iter().any(|o| matches!(o, Output::WriteDurably(_))));
    let out = h.agent(AgentEvent::Connected);
    assert!(
        matches!(out.as_slice(), [Output::WriteDurably(_)]),
        "{out:?}"
    );
    let out = h.committed(true);
    assert_eq!(statuses(&out), vec![200]);
    // The stream runs since it connected: the ACK starts no second media session.
    let out = h.event(h.ack(""));
    assert!(
        !out.iter().any(|o| matches!(o, Output::StartMedia(_))),
        "{out:?}"
    );
    // The caller's BYE stops the stream (its `stop` goes to the agent).
    let out = h.event(h.request("BYE", 2, ""));
    assert_eq!(statuses(&out), vec![200]);
    assert!(out.iter().any(|o| matches!(o, Output::StopMedia)));
    assert_eq!(
        last_write(&out).call.hangup_cause,
        Some(HangupCause::CallerBye)
    );
}

#[test]
fn an_unreachable_agent_gets_the_caller_480_with_cause_20() {
    let mut h = Harness::new(STREAMED, "", OFFER);
    connecting(&mut h);
    let out = h.agent(AgentEvent::Unreachable("connection refused".to_owned()));
    assert_eq!(statuses(&out), vec![480]);
    assert!(reason(&out).contains("cause=20"), "{}", reason(&out));
    let write = last_write(&out);
    assert_eq!(write.call.status, CallStatus::Failed);
    assert_eq!(write.call.sip_status, Some(480));
    assert_eq!(write.call.q850_cause, Some(20));
    assert_eq!(write.call.hangup_cause, Some(HangupCause::AgentUnreachable));
    assert!(
        write
            .events
            .iter()
            .any(|e| e.kind == "agent_unreachable" && e.detail.0["reason"] == "connection refused")
    );
    assert!(out.iter().any(|o| matches!(o, Output::StopMedia)));
    assert!(is_done(&out));
}

#[test]
fn an_agent_that_does_not_connect_in_time_is_unreachable() {
    let mut h = Harness::new(STREAMED, "", OFFER);
    connecting(&mut h);
    // The stream's own timeout is the driver's; the call waits a little longer, then 480.
    assert!(h.advance(AGENT_TIMEOUT).is_empty());
    let out = h.advance(Duration::from_secs(1));
    assert_eq!(statuses(&out), vec![480]);
    assert_eq!(
        last_write(&out).call.hangup_cause,
        Some(HangupCause::AgentUnreachable)
    );
    // A connect reported after the refusal changes nothing.
    let out = h.agent(AgentEvent::Connected);
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn a_cancel_while_the_agent_connects_gets_487_and_stops_the_stream() {
    let mut h = Harness::new(STREAMED, "", OFFER);
    connecting(&mut h);
    let out = h.event(CallEvent::Cancel);
    assert_eq!(statuses(&out), vec![487]);
    assert!(out.iter().any(|o| matches!(o, Output::StopMedia)));
    assert_eq!(
        last_write(&out).call.hangup_cause,
        Some(HangupCause::Cancel)
    );
}

#[test]
fn the_agent_hanging_up_ends_the_call_with_a_bye_and_its_cause() {
    for (end, cause) in [
        (MediaEnd::AgentHangup, HangupCause::AgentHangup),
        (MediaEnd::AgentDisconnected, HangupCause::AgentDisconnected),
    ] {
        let mut h = Harness::new(STREAMED, "", OFFER);
        connecting(&mut h);
        h.agent(AgentEvent::Connected);
        h.committed(true);
        h.event(h.ack(""));
        let out = h.media_end(end.clone());
        assert!(sent_bye(&out), "{end:?}: {out:?}");
        let write = last_write(&out);
        assert_eq!(write.call.status, CallStatus::Ended);
        assert_eq!(write.call.hangup_cause, Some(cause));
        // The stream has ended by itself: nothing to stop.
        assert!(!out.iter().any(|o| matches!(o, Output::StopMedia)));
    }
}

#[test]
fn an_agent_gone_before_the_ack_ends_the_call_once_it_is_up() {
    let mut h = Harness::new(STREAMED, "", OFFER);
    connecting(&mut h);
    h.agent(AgentEvent::Connected);
    h.committed(true);
    assert!(h.media_end(MediaEnd::AgentHangup).is_empty());
    let out = h.event(h.ack(""));
    assert!(sent_bye(&out), "{out:?}");
    assert_eq!(
        last_write(&out).call.hangup_cause,
        Some(HangupCause::AgentHangup)
    );
    assert!(is_done(&out));
}

#[test]
fn the_rest_hang_up_ends_an_answered_call_and_refuses_an_unanswered_one() {
    let mut h = Harness::new(STREAMED, "", OFFER);
    connecting(&mut h);
    h.agent(AgentEvent::Connected);
    h.committed(true);
    h.event(h.ack(""));
    h.uas.handle_hangup(h.now, "the agent ended the call");
    let out = h.outputs();
    assert!(sent_bye(&out));
    assert!(out.iter().any(|o| matches!(o, Output::StopMedia)));
    assert_eq!(
        last_write(&out).call.hangup_cause,
        Some(HangupCause::AgentHangup)
    );

    let mut h = Harness::new(STREAMED, "", OFFER);
    connecting(&mut h);
    h.uas.handle_hangup(h.now, "the agent ended the call");
    assert_eq!(statuses(&h.outputs()), vec![480]);
}

#[test]
fn info_digits_go_to_the_agent_and_a_bad_body_is_refused() {
    let mut h = Harness::new(STREAMED, "", OFFER);
    connecting(&mut h);
    h.agent(AgentEvent::Connected);
    h.committed(true);
    h.event(h.ack(""));
    let info = |h: &Harness, cseq: u32, content_type: &str, body: &str| {
        let mut event = h.request("INFO", cseq, "");
        if let CallEvent::Request { request, .. } = &mut event {
            let text = String::from_utf8_lossy(request.as_bytes()).replace(
                "Content-Length: 0\r\n\r\n",
                &format!(
                    "Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                ),
            );
            let Ok(Message::Request(r)) = Message::parse(Bytes::from(text)) else {
                panic!("the INFO does not parse");
            };
            *request = r;
        }
        event
    };
    let out = h.event(info(
        &h,
        2,
        "application/dtmf-relay",
        "Signal=5\r\nDuration=160\r\n",
    ));
    assert_eq!(statuses(&out), vec![200]);
    assert!(
        out.iter().any(|o| matches!(o, Output::SendDtmf('5'))),
        "{out:?}"
    );
    let out = h.event(info(&h, 3, "application/dtmf", "#"));
    assert!(
        out.iter().any(|o| matches!(o, Output::SendDtmf('#'))),
        "{out:?}"
    );
    let out = h.event(info(&h, 4, "application/dtmf-relay", "Signal=Z\r\n"));
    assert_eq!(statuses(&out), vec![400]);
    assert!(!out.iter().any(|o| matches!(o, Output::SendDtmf(_))));
    // Another package's INFO is answered and reaches no agent.
    let out = h.event(info(&h, 5, "application/x-other", "x"));
    assert_eq!(statuses(&out), vec![200]);
    assert!(!out.iter().any(|o| matches!(o, Output::SendDtmf(_))));
    // The agent's digits and clears go on the call's timeline.
    h.agent(AgentEvent::Dtmf('7'));
    h.agent(AgentEvent::Cleared { marks: 2 });
    let out = h.event(h.request("BYE", 6, ""));
    let events: Vec<&str> = last_write(&out)
        .events
        .iter()
        .map(|e| e.kind.as_str())
        .collect();
    assert!(
        events.contains(&"dtmf") && events.contains(&"clear"),
        "{events:?}"
    );
}
