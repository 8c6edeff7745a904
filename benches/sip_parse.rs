//! Parse cost of a typical carrier INVITE (~1 KB with SDP), with every header the inbound
//! call path reads typed: `cargo bench --bench sip_parse -- parse_invite_1k`.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use vca_sip::sip::message::{Message, Method};
use vca_sip::sip::session_timer::{SessionExpires, parse_min_se};
use vca_sip::sip::triage::{Transport, Triage, triage};

pub const INVITE: &str = "INVITE sip:+914446001234@203.0.113.10:5060;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.51.100.20:5060;branch=z9hG4bK-524287-1---5f6a8b7c9d0e1f2a;rport\r\n\
Max-Forwards: 69\r\n\
From: \"9876543210\" <sip:+919876543210@198.51.100.20;user=phone>;tag=as5f6a8b7c\r\n\
To: <sip:+914446001234@203.0.113.10;user=phone>\r\n\
Call-ID: 3c26700b2f5a4e6d8c1b9a0f7e6d5c4b@198.51.100.20\r\n\
CSeq: 102 INVITE\r\n\
Contact: <sip:+919876543210@198.51.100.20:5060;transport=udp>\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, INFO, UPDATE, PRACK\r\n\
Supported: timer, 100rel, replaces\r\n\
Session-Expires: 1800;refresher=uac\r\n\
Min-SE: 90\r\n\
P-Asserted-Identity: <sip:+919876543210@198.51.100.20;user=phone>\r\n\
P-Called-Party-ID: <sip:+914446001234@203.0.113.10;user=phone>\r\n\
Record-Route: <sip:198.51.100.20;lr>\r\n\
User-Agent: CarrierSBC/4.2\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 329\r\n\
\r\n\
v=0\r\n\
o=CarrierSBC 1682345678 1682345679 IN IP4 198.51.100.21\r\n\
s=SIP Media Capabilities\r\n\
c=IN IP4 198.51.100.21\r\n\
t=0 0\r\n\
m=audio 31234 RTP/AVP 8 0 18 101\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:18 G729/8000\r\n\
a=fmtp:18 annexb=no\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=ptime:20\r\n\
a=maxptime:40\r\n\
a=sendrecv\r\n\
a=rtcp:31235\r\n";

/// Parses and types everything the call path reads; returns a value depending on all of it.
fn parse_and_type(buf: Bytes) -> usize {
    let Ok(Message::Request(req)) = Message::parse(buf) else {
        return 0;
    };
    let h = req.headers();
    let mut n = usize::from(req.method() == Method::Invite);
    n += req.uri().user().map_or(0, str::len);
    for via in h.vias().flatten() {
        n += via.branch().map_or(0, str::len) + usize::from(via.port.unwrap_or(0));
    }
    n += h.from().ok().and_then(|f| f.tag()).map_or(0, str::len);
    n += h.to().map_or(0, |t| t.uri().as_str().len());
    n += h.call_id().map_or(0, str::len);
    n += h.cseq().map_or(0, |c| c.seq as usize);
    n += h.max_forwards().ok().flatten().map_or(0, usize::from);
    n += h.contacts().flatten().count();
    n += h.require().count() + h.supported().count();
    n += h
        .get("Session-Expires")
        .and_then(|v| SessionExpires::parse(v).ok())
        .map_or(0, |s| s.interval as usize);
    n += h
        .get("Min-SE")
        .and_then(|v| parse_min_se(v).ok())
        .map_or(0, |s| s as usize);
    n += h.record_routes().count() + h.routes().count();
    n += h.user_agent().map_or(0, str::len);
    n += h
        .p_called_party_id()
        .ok()
        .flatten()
        .map_or(0, |p| p.as_str().len());
    n += h
        .content_type()
        .ok()
        .flatten()
        .map_or(0, |c| c.subtype.len());
    n += h.content_length().ok().flatten().map_or(0, |l| l as usize);
    n + req.body().len()
}

fn bench(c: &mut Criterion) {
    let buf = Bytes::from_static(INVITE.as_bytes());
    assert!(parse_and_type(buf.clone()) > 0);
    c.bench_function("parse_invite_1k", |b| {
        b.iter(|| parse_and_type(black_box(buf.clone())))
    });
    c.bench_function("triage_invite_1k", |b| {
        b.iter(|| {
            matches!(
                triage(black_box(buf.clone()), Transport::Udp),
                Triage::Accept(..)
            )
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
