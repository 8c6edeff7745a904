//! Tests of the message parser and serialisers (RFC 3261 §7, §20, §25; RFC 4475 cases).

use std::net::Ipv4Addr;

use bytes::Bytes;

use super::*;

#[test]
fn the_ipv4_fast_path_agrees_with_the_general_host_parser() {
    let taken = [
        "1.2.3.4",
        "198.51.100.20:5060",
        "010.001.000.255:0",
        "203.0.113.10:65535",
        "0.0.0.0:00001",
    ];
    for s in taken {
        let fast = ipv4_port(s.as_bytes()).expect(s);
        assert_eq!(Ok(fast), parse_hostport_general(s), "{s}");
    }
    // Left to the general path, which accepts or refuses them itself.
    let declined = [
        " 1.2.3.4",
        "1.2.3.4 : 5060",
        "256.1.1.1",
        "1.2.3",
        "1.2.3.4.5",
        "0001.2.3.4",
        "1.2.3.4:",
        "1.2.3.4:65536",
        "1.2.3.4:123456",
        "1.2.3.4x",
        "a.example.com:5060",
        "[2001:db8::1]:5060",
        "",
    ];
    for s in declined {
        assert_eq!(ipv4_port(s.as_bytes()), None, "{s:?}");
    }
    assert_eq!(
        parse_hostport(" 1.2.3.4 : 5060"),
        Ok((Host::Ipv4(Ipv4Addr::new(1, 2, 3, 4)), Some(5060)))
    );
    assert_eq!(
        parse_hostport("256.1.1.1"),
        Ok((Host::Name("256.1.1.1"), None))
    );
    assert_eq!(parse_hostport("1.2.3.4:65536"), Err(()));
    assert_eq!(parse_hostport("1.2.3.4:"), Err(()));
}

const INVITE: &str = "INVITE sip:+919876543210@vca.example.com;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 203.0.113.7:5060;branch=z9hG4bK776asdhds;rport\r\n\
v: SIP/2.0/TCP [2001:db8::1]:5061;branch=z9hG4bKabc;received=192.0.2.1, SIP/2.0/UDP gw.example.net;branch=z9hG4bKx\r\n\
Max-Forwards: 0069\r\n\
f: \"Alice \\\"A\\\"\" <sip:alice@example.org>;tag=1928301774\r\n\
t: <tel:+919876543210>\r\n\
i: a84b4c76e66710@pc33.example.org\r\n\
CSeq: 0314159 INVITE\r\n\
m: <sip:alice@203.0.113.7:5060;transport=udp>\r\n\
Require: timer\r\n\
k: timer, 100rel\r\n\
x: 1800;refresher=uac\r\n\
Min-SE: 90\r\n\
Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n\
Record-Route: <sip:rr.example.com;lr>\r\n\
User-Agent: test/1\r\n\
P-Called-Party-ID: <sip:+919876543210@vca.example.com;user=phone>\r\n\
Authorization: Digest username=\"trunk\", realm=\"vca\", nonce=\"abc,def\", uri=\"sip:x\", response=\"0123\"\r\n\
c: application/sdp\r\n\
l: 4\r\n\
\r\n\
v=0\r\ntrailing";

fn req(s: &str) -> Request {
    match Message::parse(Bytes::copy_from_slice(s.as_bytes())) {
        Ok(Message::Request(r)) => r,
        other => panic!("not a request: {other:?}"),
    }
}

#[test]
fn types_the_call_path_headers() {
    let r = req(INVITE);
    let h = r.headers();
    assert_eq!(r.method(), Method::Invite);
    let uri = r.uri();
    assert_eq!(uri.scheme(), Scheme::Sip);
    assert_eq!(uri.user(), Some("+919876543210"));
    assert_eq!(uri.host(), Some(Host::Name("vca.example.com")));
    assert!(uri.is_user_phone());
    let vias: Vec<_> = h.vias().collect::<Result<_, _>>().unwrap();
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[0].transport, "UDP");
    assert_eq!(vias[0].host, Host::Ipv4(Ipv4Addr::new(203, 0, 113, 7)));
    assert_eq!(vias[0].port, Some(5060));
    assert_eq!(vias[0].branch(), Some("z9hG4bK776asdhds"));
    assert_eq!(vias[0].rport(), Rport::Requested);
    assert_eq!(vias[1].host, Host::Ipv6("2001:db8::1".parse().unwrap()));
    assert_eq!(vias[1].port, Some(5061));
    assert_eq!(vias[1].received(), Some("192.0.2.1"));
    assert_eq!(vias[1].rport(), Rport::Absent);
    assert_eq!(vias[2].host, Host::Name("gw.example.net"));
    assert_eq!(vias[2].branch(), Some("z9hG4bKx"));
    assert_eq!(h.max_forwards(), Ok(Some(69)));
    let from = h.from().unwrap();
    assert_eq!(from.display_name(), Some("Alice \\\"A\\\""));
    assert_eq!(from.tag(), Some("1928301774"));
    assert_eq!(from.uri().user(), Some("alice"));
    let to = h.to().unwrap();
    assert_eq!(to.uri().scheme(), Scheme::Tel);
    assert_eq!(to.uri().number(), Some("+919876543210"));
    assert_eq!(to.tag(), None);
    assert_eq!(h.call_id(), Ok("a84b4c76e66710@pc33.example.org"));
    let cseq = h.cseq().unwrap();
    assert_eq!((cseq.seq, cseq.method), (314159, Method::Invite));
    let contact = h.contacts().next().unwrap().unwrap();
    assert_eq!(contact.uri().port(), Some(5060));
    assert_eq!(contact.uri().params().get("transport"), Some(Some("udp")));
    assert_eq!(
        h.require().collect::<Result<Vec<_>, _>>(),
        Ok(vec!["timer"])
    );
    assert_eq!(
        h.supported().collect::<Result<Vec<_>, _>>(),
        Ok(vec!["timer", "100rel"])
    );
    // Session-Expires and Min-SE are typed by the session timer (RFC 4028), Authorization
    // by digest authentication: the index only finds them.
    assert_eq!(h.get("Min-SE"), Some("90"));
    let routes: Vec<_> = h.routes().map(|r| r.unwrap().uri().as_str()).collect();
    assert_eq!(routes, ["sip:p1.example.com;lr", "sip:p2.example.com;lr"]);
    assert_eq!(h.record_routes().count(), 1);
    assert_eq!(h.user_agent(), Some("test/1"));
    assert!(
        h.p_called_party_id()
            .unwrap()
            .unwrap()
            .uri()
            .is_user_phone()
    );
    assert!(
        h.get("authorization")
            .is_some_and(|v| v.starts_with("Digest "))
    );
    assert!(h.content_type().unwrap().unwrap().is("application", "sdp"));
    assert_eq!(h.content_length(), Ok(Some(4)));
    assert_eq!(&r.body()[..], b"v=0\r");
    assert_eq!(r.header("content-type"), Some("application/sdp"));
    assert_eq!(r.header("Session-Expires"), Some("1800;refresher=uac"));
    assert_eq!(h.get_all("via").count(), 2);
}

#[test]
fn folding_and_lws_are_unfolded() {
    let r = req(
        "OPTIONS sip:a@b SIP/2.0\r\nVia : SIP / 2.0\r\n /UDP\r\n  h.example.com ;\r\n branch = z9hG4bK1\r\nFrom:\r\n <sip:x@y>\r\n ;tag = 7\r\nTo: sip:a@b\r\nCall-ID: c\r\nCSeq: 1\r\n OPTIONS\r\nX-Thing: a\r\n\tb\r\n\r\n",
    );
    let h = r.headers();
    let via = h.top_via().unwrap();
    assert_eq!(via.transport, "UDP");
    assert_eq!(via.host, Host::Name("h.example.com"));
    assert_eq!(via.branch(), Some("z9hG4bK1"));
    assert_eq!(h.from().unwrap().tag(), Some("7"));
    assert_eq!(h.cseq().unwrap().method, Method::Options);
    assert_eq!(r.header("x-thing"), Some("a  \tb"));
    assert_eq!(r.body().len(), 0);
}

#[test]
fn name_addrs_without_params_and_via_sent_by_keep_the_received_text() {
    let r = req(
        "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP [2001:db8::1]:5070 ;branch=z9hG4bK1\r\nFrom: \"A; B\" <sip:x@y;transport=tcp>;tag=7\r\nTo: sip:a@b;tag=9\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n",
    );
    let h = r.headers();
    assert_eq!(h.top_via().unwrap().sent_by(), "[2001:db8::1]:5070");
    let from = h.from().unwrap();
    assert_eq!(from.without_params(), "\"A; B\" <sip:x@y;transport=tcp>");
    assert_eq!(from.tag(), Some("7"));
    assert_eq!(h.to().unwrap().without_params(), "sip:a@b");
}

#[test]
fn ipv6_hosts_and_ports() {
    let u = Uri::parse("sip:[2001:db8::10:5070]").unwrap();
    assert_eq!(
        u.host(),
        Some(Host::Ipv6("2001:db8::10:5070".parse().unwrap()))
    );
    assert_eq!(u.port(), None);
    let u = Uri::parse("sip:[2001:db8::10]:5070").unwrap();
    assert_eq!(u.port(), Some(5070));
    assert!(Uri::parse("sip:2001:db8::10").is_err());
    assert!(Uri::parse("sip:user@[2001:db8:::192.0.2.1]").is_err());
    assert_eq!(Uri::parse("nobody:opaque").unwrap().scheme(), Scheme::Other);
    fn host(u: &str) -> Option<Host<'_>> {
        Uri::parse(u).unwrap().host()
    }
    assert_eq!(
        host("sip:192.000.002.010"),
        Some(Host::Ipv4(Ipv4Addr::new(192, 0, 2, 10)))
    );
    assert_eq!(host("sip:256.1.1.1"), Some(Host::Name("256.1.1.1")));
    assert_eq!(host("sip:1.2.3"), Some(Host::Name("1.2.3")));
    assert_eq!(host("sip:a_b-c.example"), Some(Host::Name("a_b-c.example")));
    assert!(Uri::parse("sip:a!b.example").is_err());
    let u = Uri::parse("sip:user;par=u%40example.net@example.com").unwrap();
    assert_eq!(u.user(), Some("user;par=u%40example.net"));
}

#[test]
fn display_names() {
    let n = NameAddr::parse("caller<sip:caller@example.com>;tag=323").unwrap();
    assert_eq!(n.display_name(), Some("caller"));
    assert!(NameAddr::parse("Bell, Alexander <sip:a@b>").is_err());
    assert!(NameAddr::parse("\"Mr. J. User <sip:j.user@example.com>").is_err());
    assert!(NameAddr::parse("\"abc\\\" <sip:a@b>").is_err());
    assert!(NameAddr::parse("\"x\" < sip:t@example.org >").is_err());
    let n = NameAddr::parse("sip:u@h ;  tag = 9").unwrap();
    assert_eq!(n.tag(), Some("9"));
}

#[test]
fn start_lines() {
    let p = |s: &str| Message::parse(Bytes::copy_from_slice(s.as_bytes())).map(|_| ());
    let tail = "\r\nVia: SIP/2.0/UDP h\r\n\r\n";
    assert_eq!(
        p(&format!("OPTIONS sip:a@b SIP/3.0{tail}")),
        Err(ParseError::BadVersion)
    );
    assert_eq!(
        p(&format!("OPTIONS  sip:a@b SIP/2.0{tail}")),
        Err(ParseError::BadStartLine)
    );
    assert_eq!(
        p(&format!("OPTIONS sip:a@b SIP/2.0 {tail}")),
        Err(ParseError::BadStartLine)
    );
    assert_eq!(
        p(&format!("OPTIONS <sip:a@b> SIP/2.0{tail}")),
        Err(ParseError::BadRequestUri)
    );
    assert_eq!(
        p(&format!("OPTIONS sip:a@b?x=y SIP/2.0{tail}")),
        Err(ParseError::BadRequestUri)
    );
    assert_eq!(
        p(&format!("SIP/2.0 4294967301 big{tail}")),
        Err(ParseError::BadStartLine)
    );
    match Message::parse(Bytes::from_static(
        b"SIP/2.0 100 \r\nVia: SIP/2.0/UDP h\r\n\r\n",
    )) {
        Ok(Message::Response(r)) => assert_eq!((r.status(), r.reason()), (100, "")),
        other => panic!("{other:?}"),
    }
    assert_eq!(p("\r\n\r\n"), Err(ParseError::Empty));
}

#[test]
fn content_length_rules() {
    let m = |cl: &str, body: &str| {
        Message::parse(Bytes::from(format!(
            "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n{cl}\r\n{body}"
        )))
    };
    assert_eq!(
        m("Content-Length: 9999\r\n", "abc").err(),
        Some(ParseError::ContentLengthMismatch)
    );
    assert_eq!(
        m("Content-Length: 4294967328\r\n", "abc").err(),
        Some(ParseError::ContentLengthMismatch)
    );
    assert_eq!(
        m("Content-Length: -1\r\n", "").err(),
        Some(ParseError::BadHeader("Content-Length"))
    );
    assert_eq!(
        m("Content-Length: 1\r\nl: 2\r\n", "ab").err(),
        Some(ParseError::DuplicateHeader("Content-Length"))
    );
    let Ok(Message::Request(r)) = m("Content-Length: 2\r\n", "abcdef") else {
        panic!("trailing octets must be ignored");
    };
    assert_eq!(&r.body()[..], b"ab");
    let Ok(Message::Request(r)) = m("", "rest of datagram") else {
        panic!("no Content-Length must take the rest");
    };
    assert_eq!(&r.body()[..], b"rest of datagram");
}

#[test]
fn response_copies_and_tags() {
    let r = req(INVITE);
    let tag = ToTag::derive(r.headers());
    assert_eq!(tag, ToTag::derive(req(INVITE).headers()));
    let out = Response::to_request(&r, 200, "OK")
        .to_tag(tag.as_str())
        .received("198.51.100.9".parse().unwrap(), 40000)
        .header("Supported", "timer")
        .body("application/sdp", Bytes::from_static(b"v=0\r\n"))
        .build();
    let Ok(Message::Response(resp)) = Message::parse(out.clone()) else {
        panic!("unparseable response: {out:?}");
    };
    let h = resp.headers();
    assert_eq!(resp.status(), 200);
    let top = h.top_via().unwrap();
    assert_eq!(top.received(), Some("198.51.100.9"));
    assert_eq!(top.rport(), Rport::Value(40000));
    assert_eq!(top.branch(), Some("z9hG4bK776asdhds"));
    assert_eq!(h.vias().count(), 3);
    assert_eq!(h.to().unwrap().tag(), Some(tag.as_str()));
    assert_eq!(h.from().unwrap().tag(), Some("1928301774"));
    assert_eq!(h.call_id(), Ok("a84b4c76e66710@pc33.example.org"));
    assert_eq!(h.cseq().unwrap().seq, 314159);
    assert_eq!(h.get("supported"), Some("timer"));
    assert_eq!(&resp.body()[..], b"v=0\r\n");
}

#[test]
fn to_tag_is_not_added_twice() {
    let r = req(
        "BYE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>;tag=2\r\nCall-ID: c\r\nCSeq: 2 BYE\r\n\r\n",
    );
    let out = Response::to_request(&r, 481, "Call/Transaction Does Not Exist")
        .to_tag("zzz")
        .build();
    let text = std::str::from_utf8(&out).unwrap();
    assert!(text.starts_with("SIP/2.0 481 Call/Transaction Does Not Exist\r\n"));
    assert!(text.contains("\r\nTo: <sip:a@b>;tag=2\r\n"));
    assert!(!text.contains("zzz"));
    assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
}

#[test]
fn via_with_received_ipv6_has_no_brackets() {
    let r = req(
        "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP [2001:db8::9:1];received=[2001:db8::9:255];branch=z9hG4bK1;rport\r\n\r\n",
    );
    let via = r.headers().top_via().unwrap();
    assert_eq!(via.received(), Some("2001:db8::9:255"));
    let v = via.with_received("2001:db8::2".parse().unwrap(), 5062);
    assert_eq!(
        v,
        "SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bK1;received=2001:db8::2;rport=5062"
    );
}

#[test]
fn request_builder_writes_a_parseable_bye() {
    let out = RequestBuilder::new(
        Method::Bye,
        "sip:alice@203.0.113.7:5060",
        ("UDP", "192.0.2.10:5060", "z9hG4bKbye1"),
        ("<sip:+919876543210@vca.example.com>", "ourtag"),
        ("<sip:alice@example.org>", Some("theirtag")),
        "a84b4c76e66710@pc33.example.org",
        2,
    )
    .route("<sip:p1.example.com;lr>")
    .route("<sip:p2.example.com;lr>")
    .build();
    let r = req(std::str::from_utf8(&out).unwrap());
    let h = r.headers();
    assert_eq!(r.method(), Method::Bye);
    assert_eq!(h.top_via().unwrap().branch(), Some("z9hG4bKbye1"));
    assert_eq!(h.max_forwards(), Ok(Some(70)));
    assert_eq!(h.routes().count(), 2);
    assert_eq!(h.from().unwrap().tag(), Some("ourtag"));
    assert_eq!(h.to().unwrap().tag(), Some("theirtag"));
    assert_eq!(
        h.cseq().unwrap(),
        CSeq {
            seq: 2,
            method: Method::Bye
        }
    );
    assert_eq!(h.content_length(), Ok(Some(0)));
}

#[test]
fn caps_are_enforced() {
    let long = format!(
        "OPTIONS sip:a@b SIP/2.0\r\nX: {}\r\n\r\n",
        "a".repeat(MAX_LINE + 1)
    );
    assert_eq!(
        Message::parse(Bytes::from(long)).err(),
        Some(ParseError::LineTooLong)
    );
    let many = format!(
        "OPTIONS sip:a@b SIP/2.0\r\n{}\r\n",
        "X: 1\r\n".repeat(MAX_HEADER_LINES + 1)
    );
    assert_eq!(
        Message::parse(Bytes::from(many)).err(),
        Some(ParseError::HeadTooLarge)
    );
}

const SENT_INVITE: &str = "INVITE sip:+15551234567@carrier.example SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKout1;rport\r\n\
Max-Forwards: 69\r\n\
Route: <sip:p1.example;lr>\r\n\
Route: <sip:p2.example;lr>\r\n\
From: \"VCA\" <sip:agent@vca.example>;tag=f77\r\n\
To: <sip:+15551234567@carrier.example>\r\n\
Call-ID: out-1@192.0.2.9\r\n\
CSeq: 7 INVITE\r\n\
Contact: <sip:agent@192.0.2.9:5060>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

fn resp(s: &str) -> Response {
    match Message::parse(Bytes::copy_from_slice(s.as_bytes())) {
        Ok(Message::Response(r)) => r,
        other => panic!("not a response: {other:?}"),
    }
}

#[test]
fn the_ack_of_a_non_2xx_copies_the_invite_and_the_responses_to() {
    let invite = req(SENT_INVITE);
    let busy = resp(
        "SIP/2.0 486 Busy Here\r\n\
Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKout1;rport=5060;received=192.0.2.9\r\n\
Record-Route: <sip:ignored.example;lr>\r\n\
From: \"VCA\" <sip:agent@vca.example>;tag=f77\r\n\
To: <sip:+15551234567@carrier.example>;tag=uas-9\r\n\
Call-ID: out-1@192.0.2.9\r\n\
CSeq: 7 INVITE\r\n\
Content-Length: 0\r\n\r\n",
    );
    let ack = ack_for_non_2xx(&invite, &busy).unwrap();
    assert_eq!(
        std::str::from_utf8(&ack).unwrap(),
        "ACK sip:+15551234567@carrier.example SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKout1;rport\r\n\
Max-Forwards: 69\r\n\
Route: <sip:p1.example;lr>\r\n\
Route: <sip:p2.example;lr>\r\n\
From: \"VCA\" <sip:agent@vca.example>;tag=f77\r\n\
To: <sip:+15551234567@carrier.example>;tag=uas-9\r\n\
Call-ID: out-1@192.0.2.9\r\n\
CSeq: 7 ACK\r\n\
Content-Length: 0\r\n\r\n"
    );
    let no_to = resp("SIP/2.0 486 Busy Here\r\nCSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(
        ack_for_non_2xx(&invite, &no_to),
        Err(ParseError::MissingHeader("To"))
    );
}

#[test]
fn the_cancel_copies_the_invite_with_its_to_untagged() {
    let cancel = cancel_for(&req(SENT_INVITE)).unwrap();
    assert_eq!(
        std::str::from_utf8(&cancel).unwrap(),
        "CANCEL sip:+15551234567@carrier.example SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKout1;rport\r\n\
Max-Forwards: 69\r\n\
Route: <sip:p1.example;lr>\r\n\
Route: <sip:p2.example;lr>\r\n\
From: \"VCA\" <sip:agent@vca.example>;tag=f77\r\n\
To: <sip:+15551234567@carrier.example>\r\n\
Call-ID: out-1@192.0.2.9\r\n\
CSeq: 7 CANCEL\r\n\
Content-Length: 0\r\n\r\n"
    );
}
