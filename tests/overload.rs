//! RELIABILITY 11 end to end: with the endpoint's queue above its high-water mark, new
//! INVITEs get 503 with Retry-After while the requests of calls already up (BYE) or pending
//! (CANCEL) are still served. A burst of INVITEs from one loopback source, sent as fast as
//! a socket sends, fills the queue; the call's own requests are retransmitted every 200 ms
//! as a user agent would (a datagram that finds the queue full is dropped at the door).
//! (A test binary of its own: it loads the machine.)

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::uac::{Uac, sample, status};
use common::{Backend, TestDb, TestServer, test_config};
use reqwest::Method;
use serde_json::json;

const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                     m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
const BURST: usize = 40_000;

fn header<'a>(message: &'a str, name: &str) -> &'a str {
    message
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .unwrap_or_default()
        .trim()
}

/// Sends `request` every 200 ms until a final response containing `needle` arrives.
async fn until_answered(uac: &Uac, request: &str, needle: &str) -> Option<String> {
    for _ in 0..50 {
        uac.send(request).await;
        if let Some(r) = uac.final_matching(needle, Duration::from_millis(200)).await {
            return Some(r);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn above_the_high_water_mark_new_calls_get_503_and_dialogs_are_served() {
    let _heavy = common::heavy::one_at_a_time();
    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = test_config(&db);
    config.ring = Duration::from_secs(8);
    config.media_timeout = Duration::ZERO;
    let s = TestServer::start_with(config, db).await;
    let udp = s.server.as_ref().unwrap().sip_udp_addr;
    let tenant = s.tenant("Acme").await;
    let (code, body) = s
        .admin_call(
            Method::POST,
            &format!("/api/tenants/{tenant}/phone-numbers"),
            Some(json!({"did_number": "+919876543210"})),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let sdp = "Content-Type: application/sdp\r\n".to_owned();

    // Call A is answered and acknowledged before the burst.
    let mut a = Uac::bind("127.0.0.1", udp).await;
    let invite = a.request("INVITE", "09876543210", "call-a", &sdp).replace(
        "Content-Length: 0\r\n\r\n",
        &format!("Content-Length: {}\r\n\r\n{OFFER}", OFFER.len()),
    );
    a.send(&invite).await;
    let ok = a
        .final_response(Duration::from_secs(10))
        .await
        .expect("call A answered");
    assert_eq!(status(&ok), 200, "{ok}");
    let to = header(&ok, "To:").to_owned();
    let local = a.local();
    let ack = format!(
        "ACK sip:vca@{udp} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-ack-a\r\n\
         Max-Forwards: 70\r\nFrom: <sip:carrier@{local}>;tag=fcall-a\r\nTo: {to}\r\n\
         Call-ID: call-a\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    );
    a.send(&ack).await;
    let bye = ack
        .replace("ACK sip", "BYE sip")
        .replace("z9hG4bK-ack-a", "z9hG4bK-bye-a")
        .replace("CSeq: 1 ACK", "CSeq: 2 BYE");

    // Call B is ringing (8 s) when the burst starts.
    let mut b = Uac::bind("127.0.0.1", udp).await;
    let invite_b = b.request("INVITE", "09876543210", "call-b", &sdp).replace(
        "Content-Length: 0\r\n\r\n",
        &format!("Content-Length: {}\r\n\r\n{OFFER}", OFFER.len()),
    );
    b.send(&invite_b).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cancel = invite_b
        .replacen("INVITE sip", "CANCEL sip", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL")
        .replace(&sdp, "")
        .replace(
            &format!("Content-Length: {}\r\n\r\n{OFFER}", OFFER.len()),
            "Content-Length: 0\r\n\r\n",
        );

    // The burst: INVITEs for a number nobody has, each a new call, from another port, sent
    // until told to stop (bounded: at most 20 rounds of BURST).
    let stop = Arc::new(AtomicBool::new(false));
    let flooding = stop.clone();
    let flood = std::thread::spawn(move || {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let local = socket.local_addr().expect("address");
        for i in 0..BURST * 20 {
            if i % 1000 == 0 && flooding.load(Ordering::Relaxed) {
                return;
            }
            let invite = format!(
                "INVITE sip:0000000000@{udp} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-f{i}\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:f@{local}>;tag=f{i}\r\nTo: <sip:0000000000@{udp}>\r\n\
                 Call-ID: flood-{i}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
            );
            let _ = socket.send_to(invite.as_bytes(), udp);
        }
    });
    // Wait until the endpoint refuses new calls for its queue...
    let mut overloaded = false;
    for _ in 0..200 {
        if sample(&s.metrics().await, "vca_sip_overload_rejects_total") > 0.0 {
            overloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ... then the calls' own requests go in while the burst goes on.
    let bye_ok = until_answered(&a, &bye, "CSeq: 2 BYE").await;
    let cancel_ok = until_answered(&b, &cancel, "CSeq: 1 CANCEL").await;
    stop.store(true, Ordering::Relaxed);
    flood.join().expect("the burst thread");
    assert!(
        overloaded,
        "the burst must put the queue above its high-water mark (no INVITE got 503)"
    );

    let bye_ok = bye_ok.expect("the BYE of call A is answered during the burst");
    assert_eq!(status(&bye_ok), 200, "{bye_ok}");
    let cancel_ok = cancel_ok.expect("the CANCEL of call B is answered during the burst");
    assert_eq!(status(&cancel_ok), 200, "{cancel_ok}");
    let terminated = b
        .final_matching("CSeq: 1 INVITE", Duration::from_secs(10))
        .await
        .expect("call B's INVITE gets its final response");
    assert_eq!(status(&terminated), 487, "{terminated}");

    // The records' last changes are written in the next batch.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let calls = s
        .admin_call(Method::GET, &format!("/api/tenants/{tenant}/calls"), None)
        .await
        .1;
    let items = calls["items"].as_array().expect("items");
    let a_record = items
        .iter()
        .find(|c| c["sip_call_id"] == "call-a")
        .expect("call A recorded");
    assert_eq!(a_record["hangup_cause"], "caller_bye", "{a_record}");
    let b_record = items
        .iter()
        .find(|c| c["sip_call_id"] == "call-b")
        .expect("call B recorded");
    assert_eq!(b_record["hangup_cause"], "cancel", "{b_record}");
}
