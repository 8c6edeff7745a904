//! Durability: `kill -9` in the middle of a sipp load run loses no answered call. Every
//! Call-ID that sipp saw answered (a 200 OK to its INVITE) has exactly one record after the
//! crash — the Call-IDs are compared, not counts. When the node starts again it closes
//! the calls the crash left live, and only its own. Also: SIGTERM drains and exits 0.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::process::{command, serve};
use common::sipp::{Sipp, scenario};
use common::{ADMIN_TOKEN, Backend, TestDb};
use serde_json::json;
use vca_sip::clock::{SystemClock, WallClock};
use vca_sip::ids::{CallEventId, CallId, NodeId, TenantId};
use vca_sip::kinds::{CallTransport, Transport};
use vca_sip::store::model::{Call, CallEvent, CallStatus, Direction, HangupCause};
use vca_sip::store::{CallWrite, CallWriter, DatabaseUrl, Store};

on_both_backends!(
    answered_calls_survive_sigkill,
    sigterm_drains_and_exits_cleanly
);

fn database_url(db: &TestDb) -> String {
    match &db.url {
        DatabaseUrl::Sqlite(path) => format!("sqlite://{}", path.display()),
        DatabaseUrl::Postgres(url) => url.clone(),
    }
}

/// Creates a tenant with room for every call and the number +919876543210; returns the
/// tenant's id.
async fn provision(http: &str) -> String {
    let client = reqwest::Client::new();
    let tenant: serde_json::Value = client
        .post(format!("{http}/api/tenants"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "Load", "max_concurrent_calls": 100000}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let status = client
        .post(format!(
            "{http}/api/tenants/{}/phone-numbers",
            tenant["id"].as_str().unwrap()
        ))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"did_number": "+919876543210"}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 201);
    tenant["id"].as_str().unwrap().to_owned()
}

/// Waits until the tenant has a call in `status`.
async fn wait_for_call(http: &str, tenant: &str, status: &str) {
    let client = reqwest::Client::new();
    for _ in 0..200 {
        let calls: serde_json::Value = client
            .get(format!("{http}/api/tenants/{tenant}/calls"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if calls["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["status"] == status)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no call reached {status}");
}

/// Call-IDs whose INVITE got a 200 OK, from sipp's message trace.
fn answered_call_ids(messages: &str) -> HashSet<String> {
    let mut answered = HashSet::new();
    for message in messages.split("-----------------------------------------------") {
        if !(message.contains("message received") && message.contains("SIP/2.0 200 OK")) {
            continue;
        }
        if !message
            .lines()
            .any(|l| l.trim().eq_ignore_ascii_case("CSeq: 1 INVITE"))
        {
            continue;
        }
        if let Some(id) = message.lines().find_map(|l| l.strip_prefix("Call-ID: ")) {
            answered.insert(id.trim().to_owned());
        }
    }
    answered
}

async fn records_for(store: &Store, call_id: &str) -> Vec<(String, String)> {
    const SQL: &str = "SELECT sip_call_id, status FROM calls WHERE sip_call_id = $1";
    match store {
        Store::Sqlite(pool) => sqlx::query_as(SQL)
            .bind(call_id)
            .fetch_all(pool)
            .await
            .unwrap(),
        Store::Postgres(pool) => sqlx::query_as(SQL)
            .bind(call_id)
            .fetch_all(pool)
            .await
            .unwrap(),
    }
}

/// The calls `node` has recorded as live (queued, initiated, ringing or answered).
async fn live_calls_of(store: &Store, node: &str) -> Vec<CallId> {
    const SQL: &str = "SELECT id FROM calls WHERE node_id = $1 \
                       AND status IN ('queued', 'initiated', 'ringing', 'answered')";
    match store {
        Store::Sqlite(pool) => sqlx::query_scalar(SQL).bind(node).fetch_all(pool).await,
        Store::Postgres(pool) => sqlx::query_scalar(SQL).bind(node).fetch_all(pool).await,
    }
    .unwrap()
}

/// An answered call of another node sharing the database, up when this node crashed.
async fn record_call_of_another_node(store: &Store, tenant: TenantId) -> Call {
    let now = vca_sip::store::stamp(SystemClock.now());
    let call = Call {
        id: CallId::new(),
        tenant_id: tenant,
        phone_number_id: None,
        ai_profile_id: None,
        trunk_id: None,
        direction: Direction::Inbound,
        caller: "+919800000000".to_owned(),
        called: "+919876543210".to_owned(),
        called_raw: "9876543210".to_owned(),
        sip_call_id: "other-node@durability.test".to_owned(),
        transport: CallTransport::Sip(Transport::Tcp),
        remote_addr: "127.0.0.2:5060".to_owned(),
        codec: Some("PCMA".to_owned()),
        status: CallStatus::Answered,
        sip_status: Some(200),
        q850_cause: None,
        hangup_cause: None,
        started_at: now,
        answered_at: Some(now),
        ended_at: None,
        duration_s: None,
        recording_status: None,
        recording_duration_ms: None,
        recording_bytes: None,
        recording_error: None,
    };
    let answered = CallEvent {
        id: CallEventId::new(),
        call_id: call.id,
        tenant_id: tenant,
        kind: "answered".to_owned(),
        at: now,
        detail: sqlx::types::Json(json!({"sip_status": 200})),
    };
    let node_b = NodeId::parse("node-b").unwrap();
    let (writer, _task) = CallWriter::start(store.clone(), 4, node_b);
    writer
        .record_durably(CallWrite {
            call: call.clone(),
            events: vec![answered],
            stored: false,
        })
        .await
        .expect("the other node's call recorded");
    call
}

/// A node's call as the crash left it: its record, and how many events it had.
struct LeftLive {
    call: Call,
    events: usize,
}

async fn answered_calls_survive_sigkill(backend: Backend) {
    let _heavy = common::heavy::one_at_a_time();
    let db = TestDb::new(backend).await;
    let node_cmd = || {
        let mut cmd = command(db.dir.path());
        cmd.env("VCA_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("DATABASE_URL", database_url(&db))
            .env("VCA_NODE_ID", "node-a");
        cmd
    };
    // A short ring, so that the kill finds calls recorded as ringing as well as answered.
    let mut served = serve(node_cmd(), &["--media-timeout", "0", "--ring-ms", "100"]);
    let tenant: TenantId = provision(&served.http).await.parse().unwrap();

    let sipp = Sipp {
        scenario: scenario("call.xml"),
        target: served.sip_udp,
        transport: "udp",
        rows: vec!["9876543210;load".to_owned()],
        calls: 3000,
        rate: 300,
        pause_ms: 300,
        dir: db.dir.path(),
        extra: vec![
            "-timeout".into(),
            "6s".into(),
            "-buff_size".into(),
            "4194304".into(),
        ],
        trace_messages: true,
    };
    let crash = async {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        served.child.kill().expect("SIGKILL");
        served.child.wait().expect("reaped");
        SystemClock.now()
    };
    let (run, killed_at) = tokio::join!(sipp.run(), crash);

    let answered = answered_call_ids(&run.messages);
    assert!(
        answered.len() > 100,
        "too few answered calls before the kill: {}",
        answered.len()
    );
    let store = Store::connect(&db.url)
        .await
        .expect("reopen after the crash");
    let mut missing = Vec::new();
    for call_id in &answered {
        let records = records_for(&store, call_id).await;
        match records.as_slice() {
            [(_, status)] => assert!(
                status == "answered" || status == "ended",
                "{call_id} was answered but is recorded as {status}"
            ),
            [] => missing.push(call_id.clone()),
            more => panic!("{call_id} has {} records", more.len()),
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} answered calls lost: {:?}",
        missing.len(),
        answered.len(),
        &missing[..missing.len().min(5)]
    );
    eprintln!(
        "{} answered calls before SIGKILL, all recorded once",
        answered.len()
    );

    // What the crash left live, and a live call of a second node in the same database.
    let mut left = Vec::new();
    for id in live_calls_of(&store, "node-a").await {
        let call = store.call(tenant, id).await.expect("live call");
        let events = store.call_events(tenant, id).await.expect("events").len();
        left.push(LeftLive { call, events });
    }
    let never_answered = left.iter().filter(|l| l.call.answered_at.is_none()).count();
    assert!(
        left.len() > never_answered && never_answered > 0,
        "the kill left {} calls live, {never_answered} of them never answered: the test \
         needs both kinds",
        left.len()
    );
    let other = record_call_of_another_node(&store, tenant).await;
    store.close().await;

    let restarted = serve(node_cmd(), &["--media-timeout", "0"]);
    let closed_line = format!("closed={}", left.len());
    assert!(
        restarted
            .lines
            .iter()
            .any(|l| l.contains("left live when it stopped last") && l.contains(&closed_line)),
        "the restart does not say it closed {} calls: {:?}",
        left.len(),
        restarted.lines
    );
    let store = Store::connect(&db.url)
        .await
        .expect("reopen after the restart");
    assert_eq!(live_calls_of(&store, "node-a").await, []);
    for LeftLive { call, events } in &left {
        let got = store.call(tenant, call.id).await.expect("closed call");
        let timeline = store.call_events(tenant, call.id).await.expect("events");
        assert_eq!(
            timeline.len(),
            events + 1,
            "{}: one closing event",
            call.sip_call_id
        );
        let last = timeline.last().unwrap();
        let ended_at = got.ended_at.expect("ended_at");
        let activity = timeline[..*events]
            .iter()
            .map(|e| e.at)
            .chain([call.started_at])
            .chain(call.answered_at)
            .max()
            .unwrap();
        assert_eq!(
            ended_at, activity,
            "{}: ended at its last activity",
            call.sip_call_id
        );
        assert!(
            ended_at <= killed_at,
            "{}: ended after the kill",
            call.sip_call_id
        );
        let (status, kind, duration_s) = match call.answered_at {
            Some(answered_at) => (
                CallStatus::Ended,
                "ended",
                Some((ended_at - answered_at).num_seconds()),
            ),
            None => (CallStatus::Failed, "failed", None),
        };
        let want = Call {
            status,
            hangup_cause: Some(HangupCause::NodeRestart),
            ended_at: Some(ended_at),
            duration_s,
            ..call.clone()
        };
        assert_eq!(got, want);
        assert_eq!(last.kind, kind, "{}", call.sip_call_id);
        assert_eq!(last.at, ended_at, "{}", call.sip_call_id);
        assert_eq!(last.detail.0["hangup_cause"], "node_restart");
    }
    // The second node's call is still up, as it was.
    assert_eq!(store.call(tenant, other.id).await.unwrap(), other);
    assert_eq!(store.call_events(tenant, other.id).await.unwrap().len(), 1);
    assert_eq!(
        live_calls_of(&store, "node-b").await,
        [other.id],
        "the other node's call was closed"
    );
    terminate(restarted.child);
    eprintln!(
        "{} calls left live by the crash ({never_answered} never answered) closed at the \
         restart",
        left.len()
    );
}

/// Ends a served node with SIGTERM; it exits 0.
fn terminate(mut child: std::process::Child) {
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().expect("reaped");
    assert!(status.success(), "exit status {status}");
}

async fn sigterm_drains_and_exits_cleanly(backend: Backend) {
    let _heavy = common::heavy::one_at_a_time();
    let db = TestDb::new(backend).await;
    let mut cmd = command(db.dir.path());
    cmd.env("VCA_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("DATABASE_URL", database_url(&db));
    let served = serve(cmd, &["--media-timeout", "0"]);
    let tenant = provision(&served.http).await;
    // One call held for 2 s; SIGTERM arrives while it is up.
    let sipp = Sipp {
        scenario: scenario("call.xml"),
        target: served.sip_udp,
        transport: "udp",
        rows: vec!["9876543210;drain".to_owned()],
        calls: 1,
        rate: 1,
        pause_ms: 2000,
        dir: db.dir.path(),
        extra: Vec::new(),
        trace_messages: true,
    };
    let pid = served.child.id().to_string();
    let refused_scenario = common::sipp::variant(
        db.dir.path(),
        "unknown_did.xml",
        "draining.xml",
        &[("<recv response=\"404\"/>", "<recv response=\"503\"/>")],
    );
    let refused = Sipp {
        scenario: refused_scenario,
        target: served.sip_udp,
        transport: "udp",
        rows: vec!["9876543210;late".to_owned()],
        calls: 1,
        rate: 1,
        pause_ms: 0,
        dir: db.dir.path(),
        extra: Vec::new(),
        trace_messages: true,
    };
    let draining = async {
        wait_for_call(&served.http, &tenant, "answered").await;
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        // A new call during the drain is refused with 503 and Retry-After.
        refused.run().await
    };
    let (run, refused) = tokio::join!(sipp.run(), draining);
    assert!(
        refused.succeeded(),
        "{}\n{}\nserver: {:?}",
        refused.screen,
        refused.messages,
        served.said()
    );
    assert!(
        refused.messages.contains("Retry-After:"),
        "{}",
        refused.messages
    );
    assert!(run.succeeded(), "the live call was cut: {}", run.screen);
    let mut child = served.child;
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exit status {status}");
    let store = Store::connect(&db.url).await.unwrap();
    let answered = answered_call_ids(&run.messages);
    assert_eq!(answered.len(), 1);
    for call_id in answered {
        assert_eq!(
            records_for(&store, &call_id).await,
            [(call_id.clone(), "ended".to_owned())]
        );
    }
}
