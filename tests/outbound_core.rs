//! Calls vca-sip places (RFC 3261 §13.2), through the running core, to a real sipp acting
//! as the far end: its built-in UAS scenario (180, 200, then waits for our BYE) and a
//! scenario that answers 486. The call record is read back from the store.

mod common;

use std::net::SocketAddr;
use std::process::Output;
use std::str::FromStr;
use std::time::Duration;

use common::sipp::{scenario, which};
use common::{Backend, TestServer};
use vca_sip::call::uac::{MediaTarget, OutboundCall};
use vca_sip::ids::{CallId, TenantId};
use vca_sip::store::model::{Call, CallStatus, Direction, HangupCause};

/// A free UDP port on loopback for sipp to listen on.
fn free_udp_port() -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.local_addr().expect("addr").port()
}

/// Starts sipp as the far end with `scenario` (`-sn uas` or `-sf file`), for one call.
fn far_end(scenario: &[&str], port: u16, dir: &std::path::Path) -> tokio::process::Child {
    assert!(which("sipp").is_some(), "sipp is not installed");
    tokio::process::Command::new("sipp")
        .current_dir(dir)
        .args(scenario)
        .args(["-i", "127.0.0.1", "-p", &port.to_string()])
        .args(["-m", "1", "-nostdin", "-trace_err"])
        .args(["-timeout", "30s", "-timeout_error"])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("sipp starts")
}

async fn finished(child: tokio::process::Child) -> Output {
    tokio::time::timeout(Duration::from_secs(40), child.wait_with_output())
        .await
        .expect("sipp finished within 40 s")
        .expect("sipp ran")
}

fn outbound(tenant: TenantId, port: u16, max: Duration) -> OutboundCall {
    OutboundCall {
        tenant_id: tenant,
        trunk_id: None,
        request_uri: format!("sip:+15551234567@127.0.0.1:{port}"),
        called: "+15551234567".to_owned(),
        from_user: "+914440000000".to_owned(),
        credentials: None,
        ring_timeout: Duration::from_secs(10),
        max_duration: max,
        media: MediaTarget::Echo,
    }
}

/// The call's record once it reached `status`, with its timeline's kinds.
async fn record_when(
    s: &TestServer,
    tenant: TenantId,
    id: CallId,
    status: CallStatus,
) -> (Call, Vec<String>) {
    let store = s.store();
    for _ in 0..200 {
        if let Ok(call) = store.call(tenant, id).await
            && call.status == status
        {
            let events = store.call_events(tenant, id).await.expect("events");
            return (call, events.into_iter().map(|e| e.kind).collect());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the call never reached {status}: {:?}",
        store.call(tenant, id).await
    );
}

#[tokio::test]
async fn a_call_to_sipps_uas_rings_is_answered_and_ends_with_our_bye() {
    let s = TestServer::start(Backend::Sqlite).await;
    let tenant = TenantId::from_str(&s.tenant("outbound").await).expect("a tenant id");
    let port = free_udp_port();
    let sipp = far_end(&["-sn", "uas"], port, &s.data_dir());
    let server = s.server.as_ref().expect("running");
    let to = SocketAddr::from(([127, 0, 0, 1], port));
    let id = server
        .place_call(to, outbound(tenant, port, Duration::from_secs(2)))
        .expect("the call is placed");
    let (call, kinds) = record_when(&s, tenant, id, CallStatus::Ended).await;
    let output = finished(sipp).await;
    assert!(
        output.status.success(),
        "sipp's UAS scenario completed: {output:?}"
    );
    assert_eq!(
        kinds,
        ["queued", "initiated", "ringing", "answered", "ended"]
    );
    assert_eq!(call.direction, Direction::Outbound);
    assert_eq!(call.called, "+15551234567");
    assert_eq!(call.caller, "+914440000000");
    assert_eq!(call.remote_addr, to.to_string());
    assert_eq!(call.sip_status, Some(200));
    assert_eq!(call.hangup_cause, Some(HangupCause::ServerBye));
    assert_eq!(call.codec.as_deref(), Some("PCMU"));
    assert!(call.answered_at.is_some());
    assert_eq!(call.duration_s, Some(2), "the maximum duration ended it");
}

#[tokio::test]
async fn a_call_to_a_busy_far_end_fails_busy_with_its_486_and_cause() {
    let s = TestServer::start(Backend::Sqlite).await;
    let tenant = TenantId::from_str(&s.tenant("outbound").await).expect("a tenant id");
    let port = free_udp_port();
    let file = scenario("uas_busy.xml").display().to_string();
    let sipp = far_end(&["-sf", &file], port, &s.data_dir());
    let server = s.server.as_ref().expect("running");
    let to = SocketAddr::from(([127, 0, 0, 1], port));
    let id = server
        .place_call(to, outbound(tenant, port, Duration::from_secs(60)))
        .expect("the call is placed");
    let (call, kinds) = record_when(&s, tenant, id, CallStatus::Failed).await;
    let output = finished(sipp).await;
    assert!(output.status.success(), "sipp got its ACK: {output:?}");
    assert_eq!(kinds, ["queued", "initiated", "failed"]);
    assert_eq!(call.sip_status, Some(486));
    assert_eq!(call.hangup_cause, Some(HangupCause::Busy));
    assert_eq!(call.q850_cause, Some(17));
    assert_eq!(call.answered_at, None);
    assert_eq!(call.duration_s, None);
}
