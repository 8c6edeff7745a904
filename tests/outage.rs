//! The database goes away under a running server: a new INVITE gets 503 with Retry-After
//! within 2 s, health reports degraded, and both recover without a restart once the
//! database is back. PostgreSQL only: the test takes its own database offline.

mod common;

use std::time::Duration;

use chrono::NaiveDateTime;
use common::sipp::{Sipp, scenario, variant};
use common::{Backend, TestServer, pg_admin_url};
use reqwest::Method;
use serde_json::json;
use sqlx::Connection;
use vca_sip::store::DatabaseUrl;

/// Allows or refuses connections to the test's own database, closing the open ones.
async fn set_database_online(name: &str, online: bool) {
    let mut admin = sqlx::PgConnection::connect(&pg_admin_url())
        .await
        .expect("admin connection");
    let allow = if online { "true" } else { "false" };
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {name} ALLOW_CONNECTIONS {allow}"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    if !online {
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
            .bind(name)
            .execute(&mut admin)
            .await
            .unwrap();
    }
}

/// When sipp sent the first INVITE and received the first response with `status`.
fn exchange_times(messages: &str, status: &str) -> (NaiveDateTime, NaiveDateTime) {
    let mut sent = None;
    let mut answered = None;
    for block in messages
        .split("----------------------------------------------- ")
        .skip(1)
    {
        let Some((stamp, rest)) = block.split_once('\n') else {
            continue;
        };
        let Ok(at) = NaiveDateTime::parse_from_str(stamp.trim(), "%Y-%m-%d %H:%M:%S%.f") else {
            continue;
        };
        if sent.is_none() && rest.contains("message sent") && rest.contains("INVITE sip:") {
            sent = Some(at);
        }
        if answered.is_none()
            && rest.contains("message received")
            && rest.contains(&format!("SIP/2.0 {status} "))
        {
            answered = Some(at);
        }
    }
    (
        sent.expect("INVITE sent"),
        answered.unwrap_or_else(|| panic!("no {status}:\n{messages}")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_gives_503_in_time_and_recovers() {
    let _heavy = common::heavy::one_at_a_time();
    let s = TestServer::start(Backend::Postgres).await;
    let DatabaseUrl::Postgres(url) = &s.db.url else {
        unreachable!("a PostgreSQL test")
    };
    let name = url.rsplit('/').next().unwrap().to_owned();
    let tenant = s.tenant("Acme").await;
    let (status, _) = s
        .admin_call(
            Method::POST,
            &format!("/api/tenants/{tenant}/phone-numbers"),
            Some(json!({"did_number": "9876543210"})),
        )
        .await;
    assert_eq!(status, 201);
    let server = s.server.as_ref().unwrap();
    let sipp = |scenario| Sipp {
        scenario,
        target: server.sip_udp_addr,
        transport: "udp",
        rows: vec!["9876543210;x".to_owned()],
        calls: 1,
        rate: 1,
        pause_ms: 100,
        dir: s.db.dir.path(),
        extra: Vec::new(),
        trace_messages: true,
    };

    set_database_online(&name, false).await;
    let unavailable = variant(
        s.db.dir.path(),
        "unknown_did.xml",
        "unavailable.xml",
        &[("<recv response=\"404\"/>", "<recv response=\"503\"/>")],
    );
    let run = sipp(unavailable).run().await;
    assert!(run.succeeded(), "{}\n{}", run.screen, run.messages);
    let (sent, refused) = exchange_times(&run.messages, "503");
    let waited = (refused - sent).to_std().unwrap();
    assert!(waited <= Duration::from_secs(2), "503 after {waited:?}");
    assert!(run.messages.contains("Retry-After:"), "{}", run.messages);
    let health = s
        .client
        .get(format!("{}/healthz", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 503);

    set_database_online(&name, true).await;
    let mut recovered = false;
    for _ in 0..50 {
        let health = s
            .client
            .get(format!("{}/healthz", s.base))
            .send()
            .await
            .unwrap();
        if health.status() == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "health did not recover");
    let run = sipp(scenario("call.xml")).run().await;
    assert!(
        run.succeeded(),
        "calls did not recover: {}\n{}",
        run.screen,
        run.messages
    );
    // The refused call is on record too, written once the database was back.
    let mut statuses = Vec::new();
    for _ in 0..50 {
        let (_, calls) = s
            .admin_call(Method::GET, &format!("/api/tenants/{tenant}/calls"), None)
            .await;
        statuses = calls["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["status"].clone(), c["sip_status"].clone()))
            .collect();
        if statuses.len() == 2
            && statuses
                .iter()
                .all(|(st, _)| st == "ended" || st == "failed")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        statuses.contains(&(json!("failed"), json!(503))),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&(json!("ended"), json!(200))),
        "{statuses:?}"
    );
}

/// When sipp first received a response with `status`.
fn first_received(messages: &str, status: &str) -> Option<NaiveDateTime> {
    messages
        .split("----------------------------------------------- ")
        .skip(1)
        .find_map(|block| {
            let (stamp, rest) = block.split_once('\n')?;
            let at = NaiveDateTime::parse_from_str(stamp.trim(), "%Y-%m-%d %H:%M:%S%.f").ok()?;
            (rest.contains("message received") && rest.contains(&format!("SIP/2.0 {status} ")))
                .then_some(at)
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_database_does_not_delay_100_trying() {
    let _heavy = common::heavy::one_at_a_time();
    let s = TestServer::start(Backend::Postgres).await;
    let tenant = s.tenant("Acme").await;
    let (status, _) = s
        .admin_call(
            Method::POST,
            &format!("/api/tenants/{tenant}/phone-numbers"),
            Some(json!({"did_number": "9876543210"})),
        )
        .await;
    assert_eq!(status, 201);
    let DatabaseUrl::Postgres(url) = &s.db.url else {
        unreachable!("a PostgreSQL test")
    };

    // Another session holds the calls table for 5 s: every record write waits behind it.
    let mut blocker = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut blocker).await.unwrap();
    sqlx::query("LOCK TABLE calls IN ACCESS EXCLUSIVE MODE")
        .execute(&mut blocker)
        .await
        .unwrap();
    let release = async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let released = chrono::Local::now().naive_local();
        sqlx::query("COMMIT").execute(&mut blocker).await.unwrap();
        released
    };
    let server = s.server.as_ref().unwrap();
    let call = Sipp {
        scenario: scenario("call.xml"),
        target: server.sip_udp_addr,
        transport: "udp",
        rows: vec!["9876543210;x".to_owned()],
        calls: 1,
        rate: 1,
        pause_ms: 100,
        dir: s.db.dir.path(),
        extra: Vec::new(),
        trace_messages: true,
    };
    let (run, released) = tokio::join!(call.run(), release);
    assert!(
        run.succeeded(),
        "the call did not complete once the database caught up: {}\n{}",
        run.screen,
        run.messages
    );
    let (sent, answered) = exchange_times(&run.messages, "200");
    let trying = first_received(&run.messages, "100").expect("a 100 Trying");
    let to_trying = (trying - sent).to_std().unwrap();
    assert!(
        to_trying <= Duration::from_millis(250),
        "100 Trying after {to_trying:?}"
    );
    assert!(
        answered >= released,
        "the 200 left before its record could be written: 200 at {answered}, database free at {released}"
    );
    let (_, calls) = s
        .admin_call(Method::GET, &format!("/api/tenants/{tenant}/calls"), None)
        .await;
    assert_eq!(calls["items"].as_array().unwrap().len(), 1, "{calls}");
}
