//! Request triage (RFC 3261 §8.2, §18.3, §21): the sans-IO front of the server that decides,
//! from the bytes alone, whether a message is dropped, refused with a stateless error
//! response, or handed on to the transaction layer.
//!
//! Checks run in this order, the first that fails decides:
//!
//! ```text
//!   response, or no addressable Via      -> Drop            (counted by the caller)
//!   SIP version other than 2.0           -> 505             (§8.2.2 / §21.5.6)
//!   malformed start line or headers,
//!   missing/conflicting Via, From, To,
//!   Call-ID, CSeq; CSeq method mismatch  -> 400 naming it   (§8.2.2, §21.4.1)
//!   Request-URI not sip/sips/tel         -> 416             (§8.2.2.1)
//!   Require other than `timer`           -> 420 + Unsupported (§8.2.2.3; not ACK/CANCEL)
//!   INVITE/UPDATE body not SDP           -> 415 + Accept    (§8.2.3)
//!   INVITE Accept without SDP            -> 406             (§21.4.7)
//!   otherwise                            -> Accept, with the method class
//! ```
//!
//! An ACK is never answered (§17.2.1): where a request would be refused, a malformed ACK is
//! dropped. Max-Forwards 0 is processed normally because vca-sip terminates the request.
//! Whether the source is admitted, and the 405/501 answers for [`MethodClass::NotServed`]
//! and [`MethodClass::Unknown`], are decided by the caller after admission.

use bytes::Bytes;

use crate::sip::framing::FrameError;
use crate::sip::message::{
    Headers, MAX_VIAS, Message, Method, ParseError, Request, ResponseBuilder, Scheme, ToTag,
};

/// The methods vca-sip serves, for the Allow header of 405 responses (§20.5).
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO, PRACK";

/// Option tags vca-sip supports (§20.37); any other tag in Require gets 420.
pub const SUPPORTED: &[&str] = &["timer"];

pub use crate::kinds::Transport;

/// What a request is, for the caller's next decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodClass {
    /// INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO, PRACK.
    Served,
    /// A known method vca-sip does not serve (REGISTER, SUBSCRIBE, NOTIFY, MESSAGE, REFER,
    /// PUBLISH): answer 405 with [`ALLOW`].
    NotServed,
    /// An extension method: answer 501 (§8.2.1).
    Unknown,
}

impl MethodClass {
    /// Classifies a method.
    pub fn of(method: &Method) -> MethodClass {
        match method {
            Method::Invite
            | Method::Ack
            | Method::Bye
            | Method::Cancel
            | Method::Options
            | Method::Update
            | Method::Info
            | Method::Prack => MethodClass::Served,
            Method::Register
            | Method::Subscribe
            | Method::Notify
            | Method::Message
            | Method::Refer
            | Method::Publish => MethodClass::NotServed,
            Method::Other(_) => MethodClass::Unknown,
        }
    }
}

/// Why a message was dropped without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// A response: those matching a client transaction never reach triage.
    Response,
    /// No Via, so nowhere to send a response (§18.2.2).
    NoVia,
    /// Nothing could be parsed that addresses a response.
    Unparseable,
    /// An ACK that would have been refused: ACKs are never answered.
    MalformedAck,
    /// Over a size cap (line, header section, Via count).
    TooLarge,
    /// Only line breaks: a keepalive.
    KeepAlive,
}

/// A stateless refusal: the status, why, and the request head to address it.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub status: u16,
    /// Reason phrase; built from constants only, never from the request.
    pub reason: String,
    /// Headers the status requires (Unsupported for 420, Accept for 415).
    pub extra: Vec<(&'static str, String)>,
    /// The parse error behind a 400/505/513, when there is one.
    pub error: Option<ParseError>,
    /// The To-tag for the response, derived from the request (§8.2.7).
    pub to_tag: ToTag,
    head: Headers,
}

impl Rejection {
    fn new(head: Headers, status: u16, reason: String) -> Rejection {
        Rejection {
            status,
            reason,
            extra: Vec::new(),
            error: None,
            to_tag: ToTag::derive(&head),
            head,
        }
    }

    fn from_error(head: Headers, error: ParseError) -> Rejection {
        let mut r = Rejection::new(head, error.status(), error.reason());
        r.error = Some(error);
        r
    }

    /// The request's header section.
    pub fn headers(&self) -> &Headers {
        &self.head
    }

    /// The response, ready for the caller to add `received`/`rport` and build.
    pub fn response(&self) -> ResponseBuilder<'_> {
        let mut b = ResponseBuilder::new(&self.head, self.status, &self.reason)
            .to_tag(self.to_tag.as_str());
        for (n, v) in &self.extra {
            b = b.header(n, v);
        }
        b
    }
}

/// The triage decision.
#[derive(Debug, Clone)]
pub enum Triage {
    Drop(DropReason),
    Reject(Box<Rejection>),
    Accept(Box<Request>, MethodClass),
}

/// Triage one datagram (UDP, one WebSocket message) or one stream frame from
/// [`crate::sip::framing::StreamDecoder`].
pub fn triage(buf: Bytes, transport: Transport) -> Triage {
    if buf.iter().all(|b| matches!(b, b'\r' | b'\n')) {
        return Triage::Drop(DropReason::KeepAlive);
    }
    let req = match Message::parse_partial(buf) {
        Ok(Message::Response(_)) => return Triage::Drop(DropReason::Response),
        Ok(Message::Request(r)) => r,
        Err(partial) => {
            let Some(head) = partial.head else {
                return Triage::Drop(match partial.error {
                    ParseError::LineTooLong | ParseError::HeadTooLarge => DropReason::TooLarge,
                    _ => DropReason::Unparseable,
                });
            };
            return refuse(head, partial.error);
        }
    };
    let ack = req.method() == Method::Ack;
    match check(&req, transport) {
        Ok(class) => Triage::Accept(Box::new(req), class),
        Err(Refusal::Drop(r)) => Triage::Drop(r),
        Err(Refusal::Reject(_)) if ack => Triage::Drop(DropReason::MalformedAck),
        Err(Refusal::Reject(f)) => {
            let mut r = Rejection::new(req.into_headers(), f.status, f.reason);
            r.extra.extend(f.extra);
            r.error = f.error;
            Triage::Reject(Box::new(r))
        }
    }
}

/// Triage a stream framing error: a 400 or 513 when the header section addresses one,
/// otherwise a drop. Either way the caller closes the connection afterwards.
pub fn triage_frame_error(err: &FrameError) -> Triage {
    let (Some(status), Some(head)) = (err.kind.status(), err.head.clone()) else {
        return Triage::Drop(DropReason::TooLarge);
    };
    match Headers::index(head) {
        Ok(h) => match refuse(h, err.kind.parse_error()) {
            Triage::Reject(mut r) => {
                r.status = status;
                Triage::Reject(r)
            }
            other => other,
        },
        Err(_) => Triage::Drop(DropReason::Unparseable),
    }
}

/// A refusal for a request that could not be fully parsed.
fn refuse(head: Headers, error: ParseError) -> Triage {
    if head.start_line().starts_with(b"SIP/") {
        return Triage::Drop(DropReason::Response);
    }
    if let Some(d) = unaddressable(&head) {
        return Triage::Drop(d);
    }
    if head.start_line().split(|&b| b == b' ').next() == Some(b"ACK") {
        return Triage::Drop(DropReason::MalformedAck);
    }
    Triage::Reject(Box::new(Rejection::from_error(head, error)))
}

fn unaddressable(head: &Headers) -> Option<DropReason> {
    if head.get_all("Via").next().is_none() {
        Some(DropReason::NoVia)
    } else if !head.can_answer() {
        Some(DropReason::Unparseable)
    } else {
        None
    }
}

/// A refusal decided by [`check`]; [`triage`] adds the request head.
struct Refused {
    status: u16,
    reason: String,
    extra: Option<(&'static str, String)>,
    error: Option<ParseError>,
}

enum Refusal {
    Drop(DropReason),
    Reject(Refused),
}

fn reject(status: u16, reason: &str) -> Refusal {
    Refusal::Reject(Refused {
        status,
        reason: reason.to_owned(),
        extra: None,
        error: None,
    })
}

fn bad(e: ParseError) -> Refusal {
    Refusal::Reject(Refused {
        status: e.status(),
        reason: e.reason(),
        extra: None,
        error: Some(e),
    })
}

fn check(req: &Request, transport: Transport) -> Result<MethodClass, Refusal> {
    let h = req.headers();
    if let Some(d) = unaddressable(h) {
        return Err(Refusal::Drop(d));
    }
    let mut vias = 0usize;
    for v in h.vias() {
        vias += 1;
        if vias > MAX_VIAS {
            return Err(Refusal::Drop(DropReason::TooLarge));
        }
        v.map_err(bad)?;
    }
    if h.has_bad_line() {
        return Err(bad(ParseError::BadHeaderLine));
    }
    h.from().map_err(bad)?;
    h.to().map_err(bad)?;
    h.call_id().map_err(bad)?;
    let cseq = h.cseq().map_err(bad)?;
    if cseq.method != req.method() {
        return Err(bad(ParseError::CSeqMethodMismatch));
    }
    h.max_forwards().map_err(bad)?;
    if transport.is_stream() && h.content_length().map_err(bad)?.is_none() {
        return Err(bad(ParseError::MissingHeader("Content-Length")));
    }

    if !matches!(req.uri().scheme(), Scheme::Sip | Scheme::Sips | Scheme::Tel) {
        return Err(reject(416, "Unsupported URI Scheme"));
    }

    let method = req.method();
    if !matches!(method, Method::Ack | Method::Cancel) {
        let mut unsupported = String::new();
        for tag in h.require() {
            let tag = tag.map_err(bad)?;
            if !SUPPORTED.iter().any(|s| s.eq_ignore_ascii_case(tag)) {
                if !unsupported.is_empty() {
                    unsupported.push_str(", ");
                }
                unsupported.push_str(tag);
            }
        }
        if !unsupported.is_empty() {
            return Err(Refusal::Reject(Refused {
                status: 420,
                reason: "Bad Extension".to_owned(),
                extra: Some(("Unsupported", unsupported)),
                error: None,
            }));
        }
    }

    if matches!(method, Method::Invite | Method::Update) && !req.body().is_empty() {
        match h.content_type().map_err(bad)? {
            None => return Err(bad(ParseError::MissingHeader("Content-Type"))),
            Some(ct) if !ct.is("application", "sdp") => {
                return Err(Refusal::Reject(Refused {
                    status: 415,
                    reason: "Unsupported Media Type".to_owned(),
                    extra: Some(("Accept", "application/sdp".to_owned())),
                    error: None,
                }));
            }
            Some(_) => {}
        }
    }

    if let (Method::Invite, Some(ranges)) = (&method, h.accept()) {
        let mut sdp = false;
        for range in ranges {
            sdp |= range.map_err(bad)?.admits("application", "sdp");
        }
        if !sdp {
            return Err(reject(406, "Not Acceptable"));
        }
    }

    Ok(MethodClass::of(&method))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::framing::{Frame, Limits, StreamDecoder};

    /// The outcome a server shows for one message, in the vocabulary of expected.tsv.
    fn outcome(t: &Triage) -> String {
        match t {
            Triage::Drop(_) => "drop".to_owned(),
            Triage::Reject(r) => r.status.to_string(),
            Triage::Accept(_, MethodClass::NotServed) => "405".to_owned(),
            Triage::Accept(_, MethodClass::Unknown) => "501".to_owned(),
            Triage::Accept(req, MethodClass::Served) => match req.method() {
                Method::Ack => "drop".to_owned(),
                Method::Options if !req.in_dialog() => "200".to_owned(),
                Method::Invite if !req.in_dialog() => "invite".to_owned(),
                _ => "481".to_owned(),
            },
        }
    }

    /// Sends the bytes as one datagram.
    fn udp(data: &[u8]) -> String {
        let t = triage(Bytes::copy_from_slice(data), Transport::Udp);
        if let Triage::Reject(r) = &t {
            // Every refusal must serialise into a parseable response.
            let out = r.response().build();
            match Message::parse(out) {
                Ok(Message::Response(resp)) => assert_eq!(resp.status(), r.status),
                other => panic!("unparseable refusal: {other:?}"),
            }
        }
        outcome(&t)
    }

    /// Sends the bytes on a fresh stream connection; outcomes of successive messages are
    /// joined with commas; an incomplete message at the end means the server closes at
    /// its read deadline.
    fn tcp(data: &[u8]) -> String {
        let mut d = StreamDecoder::new(Limits::default());
        d.handle_bytes(data);
        let mut out = Vec::new();
        loop {
            match d.poll_frame() {
                Ok(Some(Frame::Message(m))) => out.push(outcome(&triage(m, Transport::Tcp))),
                Ok(Some(Frame::Ping)) => out.push("pong".to_owned()),
                Ok(None) => {
                    if d.buffered() > 0 {
                        out.push("close".to_owned());
                    }
                    break;
                }
                Err(e) => {
                    out.push(match triage_frame_error(&e) {
                        Triage::Reject(r) => format!("{}+close", r.status),
                        _ => "close".to_owned(),
                    });
                    break;
                }
            }
        }
        out.join(",")
    }

    fn expected(tsv: &str, file: &str) -> (String, String) {
        tsv.lines()
            .map(|l| l.split('\t').collect::<Vec<_>>())
            .find(|cols| cols.first() == Some(&file))
            .map(|cols| (cols[1].to_owned(), cols[2].to_owned()))
            .unwrap_or_else(|| panic!("{file} is not in expected.tsv"))
    }

    fn run(dir: &str, tsv: &str, file: &str, data: &[u8]) {
        let (want_udp, want_tcp) = expected(tsv, file);
        assert_eq!(udp(data), want_udp, "{dir}/{file} over UDP");
        assert_eq!(tcp(data), want_tcp, "{dir}/{file} over TCP");
    }

    macro_rules! fixtures {
        ($dir:literal, $tsv:ident, $listed:ident: $($test:ident => $file:literal),+ $(,)?) => {
            const $tsv: &str = include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"), "/sip-fixtures/", $dir, "/expected.tsv"
            ));
            const $listed: &[&str] = &[$($file),+];
            $(
                #[test]
                fn $test() {
                    let data = include_bytes!(concat!(
                        env!("CARGO_MANIFEST_DIR"), "/sip-fixtures/", $dir, "/", $file
                    ));
                    run($dir, $tsv, $file, data);
                }
            )+
        };
    }

    mod rfc4475 {
        use super::*;
        fixtures!("torture/rfc4475", TSV, LISTED:
            wsinv => "wsinv.dat", intmeth => "intmeth.dat", esc01 => "esc01.dat",
            escnull => "escnull.dat", esc02 => "esc02.dat", lwsdisp => "lwsdisp.dat",
            longreq => "longreq.dat", dblreq => "dblreq.dat", semiuri => "semiuri.dat",
            transports => "transports.dat", mpart01 => "mpart01.dat",
            unreason => "unreason.dat", noreason => "noreason.dat",
            badinv01 => "badinv01.dat", clerr => "clerr.dat", ncl => "ncl.dat",
            scalar02 => "scalar02.dat", scalarlg => "scalarlg.dat", quotbal => "quotbal.dat",
            ltgtruri => "ltgtruri.dat", lwsruri => "lwsruri.dat", lwsstart => "lwsstart.dat",
            trws => "trws.dat", escruri => "escruri.dat", baddate => "baddate.dat",
            regbadct => "regbadct.dat", badaspec => "badaspec.dat", baddn => "baddn.dat",
            badvers => "badvers.dat", mismatch01 => "mismatch01.dat",
            mismatch02 => "mismatch02.dat", bigcode => "bigcode.dat",
            badbranch => "badbranch.dat", insuf => "insuf.dat", unkscm => "unkscm.dat",
            novelsc => "novelsc.dat", unksm2 => "unksm2.dat", bext01 => "bext01.dat",
            invut => "invut.dat", regaut01 => "regaut01.dat", multi01 => "multi01.dat",
            mcl01 => "mcl01.dat", bcast => "bcast.dat", zeromf => "zeromf.dat",
            cparam01 => "cparam01.dat", cparam02 => "cparam02.dat",
            regescrt => "regescrt.dat", sdp01 => "sdp01.dat", inv2543 => "inv2543.dat",
            test => "test.dat",
        );
        #[test]
        fn every_file_is_listed() {
            super::all_listed("torture/rfc4475", TSV, LISTED);
        }
    }

    mod rfc5118 {
        use super::*;
        fixtures!("torture/rfc5118", TSV, LISTED:
            ipv6_good => "ipv6-good.dat", ipv6_bad => "ipv6-bad.dat",
            port_ambiguous => "port-ambiguous.dat", port_unambiguous => "port-unambiguous.dat",
            via_received_with_delim => "via-received-param-with-delim.dat",
            via_received_no_delim => "via-received-param-no-delim.dat",
            ipv6_in_sdp => "ipv6-in-sdp.dat", mult_ip_in_header => "mult-ip-in-header.dat",
            mult_ip_in_sdp => "mult-ip-in-sdp.dat", ipv4_mapped_ipv6 => "ipv4-mapped-ipv6.dat",
            ipv6_bug_abnf_3_colons => "ipv6-bug-abnf-3-colons.dat",
            ipv6_correct_abnf_2_colons => "ipv6-correct-abnf-2-colons.dat",
        );
        #[test]
        fn every_file_is_listed() {
            super::all_listed("torture/rfc5118", TSV, LISTED);
        }
    }

    mod regress {
        use super::*;
        fixtures!("regress", TSV, LISTED:
            from_display_name_trailing_backslash =>
                "belle-sip-cve-2021-43611-from-display-trailing-backslash.dat",
            unterminated_multipart => "unterminated-multipart.dat",
            content_length_4294967328 => "content-length-4294967328.dat",
            via_101 => "via-101-values.dat",
            header_line_over_8k => "header-line-over-8k.dat",
            missing_via => "missing-via.dat", missing_from => "missing-from.dat",
            missing_to => "missing-to.dat", missing_call_id => "missing-call-id.dat",
            missing_cseq => "missing-cseq.dat", cseq_method_mismatch => "cseq-method-mismatch.dat",
            sip_3_0 => "sip-3.0.dat",
        );
        #[test]
        fn every_file_is_listed() {
            super::all_listed("regress", TSV, LISTED);
        }

        #[test]
        fn refusals_say_why() {
            let cases = [
                ("missing-from.dat", ParseError::MissingHeader("From")),
                ("missing-to.dat", ParseError::MissingHeader("To")),
                ("missing-call-id.dat", ParseError::MissingHeader("Call-ID")),
                ("missing-cseq.dat", ParseError::MissingHeader("CSeq")),
                ("cseq-method-mismatch.dat", ParseError::CSeqMethodMismatch),
                ("sip-3.0.dat", ParseError::BadVersion),
                (
                    "content-length-4294967328.dat",
                    ParseError::ContentLengthMismatch,
                ),
                (
                    "belle-sip-cve-2021-43611-from-display-trailing-backslash.dat",
                    ParseError::BadHeader("From"),
                ),
            ];
            for (file, error) in cases {
                let path = format!("{}/sip-fixtures/regress/{file}", env!("CARGO_MANIFEST_DIR"));
                let data = std::fs::read(path).unwrap();
                let Triage::Reject(r) = triage(Bytes::from(data), Transport::Udp) else {
                    panic!("{file}: not refused");
                };
                assert_eq!(r.error, Some(error), "{file}");
                assert_eq!(r.reason, error.reason(), "{file}");
            }
            assert_eq!(
                ParseError::MissingHeader("Call-ID").reason(),
                "Missing Call-ID Header"
            );
        }

        #[test]
        fn every_outcome_is_a_refusal_or_a_drop() {
            for line in TSV.lines().skip(1) {
                for v in line.split('\t').skip(1) {
                    assert!(
                        v == "drop" || v == "close" || v.starts_with('4') || v.starts_with("505"),
                        "{line}"
                    );
                }
            }
        }
    }

    /// expected.tsv has a header row and exactly one row per file on disk, and every file
    /// has its own test.
    fn all_listed(dir: &str, tsv: &str, listed: &[&str]) {
        let path = format!("{}/sip-fixtures/{dir}", env!("CARGO_MANIFEST_DIR"));
        let mut on_disk: Vec<String> = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".dat"))
            .collect();
        on_disk.sort();
        let mut rows: Vec<&str> = tsv
            .lines()
            .skip(1)
            .map(|l| l.split('\t').next().unwrap())
            .collect();
        rows.sort();
        let mut tests: Vec<&str> = listed.to_vec();
        tests.sort();
        assert_eq!(rows, on_disk, "expected.tsv rows vs files in {dir}");
        assert_eq!(tests, on_disk, "tests vs files in {dir}");
        assert!(
            tsv.starts_with("file\tudp\ttcp\n"),
            "{dir}/expected.tsv header"
        );
    }

    #[test]
    fn rejection_carries_what_the_status_requires() {
        let t = triage(
            Bytes::from_static(b"OPTIONS sip:u@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:u@h>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nRequire: timer, foo, bar\r\n\r\n"),
            Transport::Udp,
        );
        let Triage::Reject(r) = t else {
            panic!("expected 420, got {t:?}")
        };
        assert_eq!(r.status, 420);
        assert_eq!(r.extra, vec![("Unsupported", "foo, bar".to_owned())]);
        let text = r.response().build();
        let text = std::str::from_utf8(&text).unwrap();
        assert!(text.starts_with("SIP/2.0 420 Bad Extension\r\n"), "{text}");
        assert!(text.contains("\r\nUnsupported: foo, bar\r\n"), "{text}");
        assert!(text.contains(&format!("To: <sip:u@h>;tag={}\r\n", r.to_tag.as_str())));
    }

    #[test]
    fn bad_request_reason_names_the_header() {
        let t = triage(
            Bytes::from_static(b"INVITE sip:u@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:u@h>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"),
            Transport::Udp,
        );
        let Triage::Reject(r) = t else {
            panic!("expected 400, got {t:?}")
        };
        assert_eq!((r.status, r.reason.as_str()), (400, "Missing From Header"));
        assert_eq!(r.error, Some(ParseError::MissingHeader("From")));
    }

    #[test]
    fn ack_is_never_answered_and_keepalives_drop() {
        let ack = b"ACK sip:u@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:u@h>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\r\n";
        assert!(matches!(
            triage(Bytes::from_static(ack), Transport::Udp),
            Triage::Drop(DropReason::MalformedAck)
        ));
        assert!(matches!(
            triage(Bytes::from_static(b"\r\n\r\n"), Transport::Udp),
            Triage::Drop(DropReason::KeepAlive)
        ));
    }

    #[test]
    fn sips_request_uris_are_served_over_tls() {
        for method in ["INVITE", "OPTIONS"] {
            let message = format!(
                "{method} sips:+919876543210@vca.example:5061 SIP/2.0\r\n\
                 Via: SIP/2.0/TLS 192.0.2.1:5061;branch=z9hG4bK1\r\n\
                 From: <sips:carrier@192.0.2.1>;tag=1\r\nTo: <sips:+919876543210@vca.example>\r\n\
                 Call-ID: x\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
            );
            let t = triage(Bytes::from(message), Transport::Tls);
            let Triage::Accept(req, MethodClass::Served) = &t else {
                panic!("{method} sips: over TLS not accepted: {t:?}");
            };
            assert_eq!(req.uri().scheme(), Scheme::Sips, "{method}");
        }
    }

    #[test]
    fn stream_frame_without_content_length_is_400() {
        let t = triage(
            Bytes::from_static(b"OPTIONS sip:u@h SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:u@h>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n"),
            Transport::Tcp,
        );
        assert!(
            matches!(&t, Triage::Reject(r) if r.status == 400 && r.reason == "Missing Content-Length Header")
        );
    }
}
