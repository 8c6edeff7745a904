//! The UAC core on hand-made responses: dialogs, forks, late offer, 100rel.

use bytes::Bytes;

use super::*;

fn params<'a>(offer: Option<&'a Bytes>) -> UacInviteParams<'a> {
    UacInviteParams {
        request_uri: "sip:+15551234567@carrier.example",
        transport: "UDP",
        sent_by: "192.0.2.9:5060",
        branch_prefix: "z9hG4bKuac1",
        local_uri: "<sip:agent@vca.example>",
        local_tag: "f77",
        remote_uri: "<sip:+15551234567@carrier.example>",
        call_id: "out-1@192.0.2.9",
        cseq: 1,
        contact: "<sip:agent@192.0.2.9:5060>",
        routes: &[],
        max_forwards: 70,
        offer,
        reliable_provisionals: true,
        headers: &[],
    }
}

fn offer() -> Bytes {
    Bytes::from_static(b"v=0\r\n")
}

/// A response to the INVITE with `status`, To-tag `tag` (none if empty), two
/// Record-Routes, a Contact, `extra` header lines and `body`.
fn response(status: u16, tag: &str, extra: &str, body: &str) -> Response {
    let tag = if tag.is_empty() {
        String::new()
    } else {
        format!(";tag={tag}")
    };
    let contact = format!("<sip:uas-{status}@198.51.100.{}>", tag.len());
    let content_type = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    let text = format!(
        "SIP/2.0 {status} Reason\r\n\
         Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKuac1.0\r\n\
         Record-Route: <sip:p2.example;lr>\r\n\
         Record-Route: <sip:p1.example;lr>\r\n\
         From: <sip:agent@vca.example>;tag=f77\r\n\
         To: <sip:+15551234567@carrier.example>{tag}\r\n\
         Call-ID: out-1@192.0.2.9\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: {contact}\r\n\
         {extra}{content_type}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    match Message::parse(Bytes::from(text)) {
        Ok(Message::Response(r)) => r,
        other => panic!("not a response: {other:?}"),
    }
}

fn drain(uac: &mut UacInvite) -> Vec<UacOutput> {
    std::iter::from_fn(|| uac.poll_output()).collect()
}

fn text(b: &Bytes) -> &str {
    std::str::from_utf8(b).unwrap()
}

fn id(tag: &str) -> DialogId {
    DialogId::new("out-1@192.0.2.9", "f77", tag)
}

#[test]
fn the_invite_carries_contact_offer_and_100rel_on_branch_dot_zero() {
    let offer = offer();
    let uac = UacInvite::new(&params(Some(&offer))).unwrap();
    assert_eq!(
        text(uac.invite().as_bytes()),
        "INVITE sip:+15551234567@carrier.example SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKuac1.0\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:agent@vca.example>;tag=f77\r\n\
         To: <sip:+15551234567@carrier.example>\r\n\
         Call-ID: out-1@192.0.2.9\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:agent@192.0.2.9:5060>\r\n\
         Supported: 100rel\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: 5\r\n\r\n\
         v=0\r\n"
    );
    assert_eq!(
        uac.key(),
        &TransactionKey::client(Bytes::from_static(b"z9hG4bKuac1.0"), Method::Invite)
    );
    assert_eq!(uac.state(), UacInviteState::Calling);
    assert!(!uac.can_cancel());
}

#[test]
fn a_branch_prefix_without_the_magic_cookie_is_refused() {
    let mut p = params(None);
    p.branch_prefix = "uac1";
    assert_eq!(UacInvite::new(&p).err(), Some(UacError::BadBranch));
}

#[test]
fn a_tagged_provisional_creates_an_early_dialog_with_the_reversed_record_route() {
    let mut uac = UacInvite::new(&params(None)).unwrap();
    uac.handle_response(&response(100, "", "", "")).unwrap();
    uac.handle_response(&response(180, "t1", "", "")).unwrap();
    assert_eq!(
        drain(&mut uac),
        vec![
            UacOutput::Provisional {
                status: 100,
                dialog: None
            },
            UacOutput::Provisional {
                status: 180,
                dialog: Some(id("t1"))
            },
        ]
    );
    let dialog = uac.dialog(&id("t1")).unwrap();
    assert_eq!(dialog.state(), UacDialogState::Early);
    assert_eq!(
        dialog.route_set(),
        ["<sip:p1.example;lr>", "<sip:p2.example;lr>"]
    );
    assert_eq!(dialog.remote_target(), "sip:uas-180@198.51.100.7");
    assert_eq!(dialog.local_cseq(), 1);
    assert!(uac.can_cancel());
}

#[test]
fn a_2xx_confirms_the_dialog_and_gets_an_ack_again_for_each_retransmission() {
    let offer = offer();
    let mut uac = UacInvite::new(&params(Some(&offer))).unwrap();
    uac.handle_response(&response(180, "t1", "", "")).unwrap();
    drain(&mut uac);
    let ok = response(200, "t1", "", "v=0\r\n");
    uac.handle_response(&ok).unwrap();
    let out = drain(&mut uac);
    let ack = "ACK sip:uas-200@198.51.100.7 SIP/2.0\r\n\
               Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKuac1.1\r\n\
               Max-Forwards: 70\r\n\
               Route: <sip:p1.example;lr>\r\n\
               Route: <sip:p2.example;lr>\r\n\
               From: <sip:agent@vca.example>;tag=f77\r\n\
               To: <sip:+15551234567@carrier.example>;tag=t1\r\n\
               Call-ID: out-1@192.0.2.9\r\n\
               CSeq: 1 ACK\r\n\
               Content-Length: 0\r\n\r\n";
    assert_eq!(
        out,
        vec![
            UacOutput::Established {
                dialog: id("t1"),
                response: ok.clone()
            },
            UacOutput::SendAck {
                dialog: id("t1"),
                request: Bytes::from_static(ack.as_bytes())
            },
        ]
    );
    // The 2xx's Contact is the remote target from now on (§13.2.2.4).
    assert_eq!(
        uac.dialog(&id("t1")).unwrap().state(),
        UacDialogState::Confirmed
    );
    uac.handle_response(&ok).unwrap();
    assert_eq!(
        drain(&mut uac),
        vec![UacOutput::SendAck {
            dialog: id("t1"),
            request: Bytes::from_static(ack.as_bytes())
        }]
    );
    assert_eq!(uac.state(), UacInviteState::Established);
    assert!(!uac.can_cancel());
    let dialog = uac.established_mut().unwrap();
    assert_eq!(dialog.next_local_cseq(), 2);
}

#[test]
fn a_second_forks_2xx_is_acked_then_ended_with_a_bye() {
    let offer = offer();
    let mut uac = UacInvite::new(&params(Some(&offer))).unwrap();
    uac.handle_response(&response(180, "b", "", "")).unwrap();
    uac.handle_response(&response(180, "a", "", "")).unwrap();
    uac.handle_response(&response(200, "a", "", "v=0\r\n"))
        .unwrap();
    drain(&mut uac);
    uac.handle_response(&response(200, "b", "", "v=0\r\n"))
        .unwrap();
    let out = drain(&mut uac);
    assert_eq!(out.len(), 2, "{out:?}");
    let UacOutput::SendAck { dialog, request } = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(dialog, &id("b"));
    assert!(text(request).contains("To: <sip:+15551234567@carrier.example>;tag=b\r\n"));
    assert!(text(request).contains("CSeq: 1 ACK\r\n"));
    let UacOutput::SendBye {
        dialog,
        branch,
        request,
    } = &out[1]
    else {
        panic!("{out:?}")
    };
    assert_eq!(dialog, &id("b"));
    assert_eq!(branch, &Bytes::from_static(b"z9hG4bKuac1.3"));
    assert!(text(request).starts_with("BYE sip:uas-200@198.51.100.6 SIP/2.0\r\n"));
    assert!(text(request).contains("CSeq: 2 BYE\r\n"));
    assert_eq!(
        uac.dialog(&id("b")).unwrap().state(),
        UacDialogState::Terminated
    );
    // Still the winner, though the other fork's dialog is older.
    assert_eq!(uac.established_mut().unwrap().id(), &id("a"));
    // The surplus fork's 2xx retransmitted: ACK again, no second BYE.
    uac.handle_response(&response(200, "b", "", "v=0\r\n"))
        .unwrap();
    let out = drain(&mut uac);
    assert!(
        matches!(out.as_slice(), [UacOutput::SendAck { dialog, .. }] if dialog == &id("b")),
        "{out:?}"
    );
}

#[test]
fn a_late_offer_in_the_2xx_is_answered_in_the_ack() {
    let mut uac = UacInvite::new(&params(None)).unwrap();
    assert!(uac.invite().body().is_empty());
    let ok = response(200, "t1", "", "v=0 offer\r\n");
    uac.handle_response(&ok).unwrap();
    assert_eq!(
        drain(&mut uac),
        vec![
            UacOutput::Established {
                dialog: id("t1"),
                response: ok.clone()
            },
            UacOutput::NeedAnswer {
                dialog: id("t1"),
                offer: Bytes::from_static(b"v=0 offer\r\n")
            },
        ]
    );
    // A retransmitted 2xx before the answer: nothing to send yet.
    uac.handle_response(&ok).unwrap();
    assert_eq!(drain(&mut uac), vec![]);
    uac.answer(&id("t1"), Bytes::from_static(b"v=0 answer\r\n"))
        .unwrap();
    let out = drain(&mut uac);
    let [UacOutput::SendAck { request, .. }] = out.as_slice() else {
        panic!("{out:?}")
    };
    assert!(text(request).ends_with(
        "CSeq: 1 ACK\r\nContent-Type: application/sdp\r\nContent-Length: 12\r\n\r\nv=0 answer\r\n"
    ));
    assert_eq!(
        uac.answer(&id("t1"), Bytes::new()),
        Err(UacError::NoOfferPending)
    );
    assert_eq!(
        uac.answer(&id("zz"), Bytes::new()),
        Err(UacError::UnknownDialog)
    );
}

#[test]
fn a_non_2xx_final_ends_the_early_dialogs_and_fails_the_invite() {
    let mut uac = UacInvite::new(&params(None)).unwrap();
    uac.handle_response(&response(183, "t1", "", "")).unwrap();
    uac.handle_response(&response(486, "t1", "", "")).unwrap();
    assert_eq!(
        drain(&mut uac),
        vec![
            UacOutput::Provisional {
                status: 183,
                dialog: Some(id("t1"))
            },
            UacOutput::Failed { status: 486 },
        ]
    );
    assert_eq!(
        uac.dialog(&id("t1")).unwrap().state(),
        UacDialogState::Terminated
    );
    assert_eq!(uac.state(), UacInviteState::Failed);
}

#[test]
fn timer_b_fails_with_408_and_a_transport_error_with_503_once() {
    let mut uac = UacInvite::new(&params(None)).unwrap();
    uac.handle_timeout();
    uac.handle_transport_error();
    assert_eq!(drain(&mut uac), vec![UacOutput::Failed { status: 408 }]);
    let mut uac = UacInvite::new(&params(None)).unwrap();
    uac.handle_transport_error();
    assert_eq!(drain(&mut uac), vec![UacOutput::Failed { status: 503 }]);
}

#[test]
fn reliable_provisionals_are_pracked_in_order_and_retransmissions_ignored() {
    let mut uac = UacInvite::new(&params(None)).unwrap();
    let reliable = |rseq: u32| {
        response(
            183,
            "t1",
            &format!("Require: 100rel\r\nRSeq: {rseq}\r\n"),
            "",
        )
    };
    uac.handle_response(&reliable(7)).unwrap();
    let out = drain(&mut uac);
    let [
        UacOutput::Provisional { status: 183, .. },
        UacOutput::SendPrack {
            dialog,
            branch,
            request,
        },
    ] = out.as_slice()
    else {
        panic!("{out:?}")
    };
    assert_eq!(dialog, &id("t1"));
    assert_eq!(branch, &Bytes::from_static(b"z9hG4bKuac1.1"));
    assert_eq!(
        text(request),
        "PRACK sip:uas-183@198.51.100.7 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKuac1.1\r\n\
         Max-Forwards: 70\r\n\
         Route: <sip:p1.example;lr>\r\n\
         Route: <sip:p2.example;lr>\r\n\
         From: <sip:agent@vca.example>;tag=f77\r\n\
         To: <sip:+15551234567@carrier.example>;tag=t1\r\n\
         Call-ID: out-1@192.0.2.9\r\n\
         CSeq: 2 PRACK\r\n\
         RAck: 7 1 INVITE\r\n\
         Content-Length: 0\r\n\r\n"
    );
    // The same RSeq again is a retransmission; RSeq 9 skips 8: both ignored.
    uac.handle_response(&reliable(7)).unwrap();
    uac.handle_response(&reliable(9)).unwrap();
    assert_eq!(drain(&mut uac), vec![]);
    uac.handle_response(&reliable(8)).unwrap();
    let out = drain(&mut uac);
    let [
        UacOutput::Provisional { .. },
        UacOutput::SendPrack { request, .. },
    ] = out.as_slice()
    else {
        panic!("{out:?}")
    };
    assert!(text(request).contains("CSeq: 3 PRACK\r\nRAck: 8 1 INVITE\r\n"));
}
