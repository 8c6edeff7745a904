//! Fuzz target for the message parser, datagram triage and stream framing
//! (RFC 3261 §7, §18.3): none of them may panic, hang or allocate without bound.
//!
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run parse` from the repository root (see README). Commit any crash input
//! to `sip-fixtures/regress/` with an expected outcome.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use vca_sip::sip::auth;
use vca_sip::sip::framing::{Frame, Limits, StreamDecoder};
use vca_sip::sip::message::Message;
use vca_sip::sip::session_timer::{SessionExpires, parse_min_se};
use vca_sip::sip::triage::{Transport, Triage, triage, triage_frame_error};

fuzz_target!(|data: &[u8]| {
    let buf = Bytes::copy_from_slice(data);
    if let Ok(Message::Request(req)) = Message::parse(buf.clone()) {
        let h = req.headers();
        let _ = (h.from(), h.to(), h.call_id(), h.cseq(), h.max_forwards());
        // The one parser of each of these headers: digest authentication's, the session
        // timer's.
        let _ = (
            h.content_type(),
            h.get("Authorization").map(auth::identity),
            h.get("Session-Expires").map(SessionExpires::parse),
            h.get("Min-SE").map(parse_min_se),
        );
        let _ = h.vias().count() + h.contacts().count() + h.routes().count();
    }
    if let Triage::Reject(r) = triage(buf.clone(), Transport::Udp) {
        // A refusal must always serialise into a response that parses back.
        assert!(matches!(
            Message::parse(r.response().build()),
            Ok(Message::Response(_))
        ));
    }

    // The same bytes as a stream, fed in two pieces.
    let mut d = StreamDecoder::new(Limits::default());
    let (a, b) = data.split_at(data.len() / 2);
    for piece in [a, b] {
        d.handle_bytes(piece);
        loop {
            match d.poll_frame() {
                Ok(Some(Frame::Message(m))) => {
                    let _ = triage(m, Transport::Tcp);
                }
                Ok(Some(Frame::Ping)) => {}
                Ok(None) => break,
                Err(e) => {
                    let _ = triage_frame_error(&e);
                    break;
                }
            }
        }
    }
});
