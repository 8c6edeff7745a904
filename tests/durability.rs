//! Durability: `kill -9` in the middle of a sipp load run loses no answered call. Every
//! Call-ID that sipp saw answered (a 200 OK to its INVITE) has exactly one record after the
//! crash — the Call-IDs are compared, not counts. Also: SIGTERM drains and exits 0.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::process::{command, serve};
use common::sipp::{Sipp, scenario};
use common::{ADMIN_TOKEN, Backend, TestDb};
use serde_json::json;
use vca_sip::store::{DatabaseUrl, Store};

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

async fn answered_calls_survive_sigkill(backend: Backend) {
    let _heavy = common::heavy::one_at_a_time();
    let db = TestDb::new(backend).await;
    let mut cmd = command(db.dir.path());
    cmd.env("VCA_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("DATABASE_URL", database_url(&db));
    let mut served = serve(cmd, &["--media-timeout", "0"]);
    provision(&served.http).await;

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
    };
    let (run, ()) = tokio::join!(sipp.run(), crash);

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
