//! An INVITE flood from a source outside every trunk network, as fast as sipp sends, for
//! 30 s, while the trunk places 100 calls per second: the trunk's calls complete, memory
//! stays bounded and the server keeps answering. (A test binary of its own: it reads the
//! process's memory.)

mod common;

use common::sipp::{Sipp, scenario};
use common::uac::{Uac, sample, status};
use common::{Backend, TestDb, TestServer, test_config};
use reqwest::Method;
use serde_json::json;

const TRUNK_IP: &str = "127.0.0.10";
const FLOODER_IP: &str = "127.0.0.2";
const SECONDS: usize = 30;
const TRUNK_RATE: usize = 100;

/// Resident memory of this process (the server runs in it), in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_outside_does_not_stop_the_trunk() {
    let _heavy = common::heavy::one_at_a_time();
    let db = TestDb::new(Backend::Sqlite).await;
    let s = TestServer::start_with(test_config(&db), db).await;
    let server = s.server.as_ref().unwrap();
    let udp = server.sip_udp_addr;
    let tenant = s.tenant("Acme").await;
    let (code, body) = s
        .admin_call(
            Method::PATCH,
            &format!("/api/tenants/{tenant}"),
            Some(json!({"max_concurrent_calls": 10_000})),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = s
        .admin_call(
            Method::POST,
            &format!("/api/tenants/{tenant}/phone-numbers"),
            Some(json!({"did_number": "+919876543210"})),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let (code, body) = s
        .admin_call(
            Method::POST,
            "/api/trunks",
            Some(json!({
                "name": "Tata", "provider": "tata", "auth": "ip",
                "allowed_cidrs": [format!("{TRUNK_IP}/32")],
            })),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let dir = s.db.dir.path();
    let rss_before = rss_kib();

    let trunk_calls = TRUNK_RATE * SECONDS;
    let trunk = Sipp {
        scenario: scenario("call.xml"),
        target: udp,
        transport: "udp",
        rows: vec!["09876543210;919000000001".to_owned(); 1],
        calls: trunk_calls,
        rate: TRUNK_RATE as u32,
        pause_ms: 200,
        dir,
        extra: vec![
            "-i".into(),
            TRUNK_IP.into(),
            "-timeout".into(),
            format!("{}s", SECONDS + 20),
        ],
        trace_messages: true,
    };
    // As fast as sipp can send: a rate it cannot reach, stopped by the call count or by
    // the run's global timeout.
    let flood = Sipp {
        scenario: scenario("flood.xml"),
        target: udp,
        transport: "udp",
        rows: vec!["09876543210;flood".to_owned(); 1],
        calls: 100_000 * SECONDS,
        rate: 100_000,
        pause_ms: 0,
        dir,
        extra: vec![
            "-i".into(),
            FLOODER_IP.into(),
            "-timeout".into(),
            format!("{SECONDS}s"),
        ],
        trace_messages: false,
    };
    // The flood ends at its global timeout, so only the server can say how much came.
    let (trunk, _flood) = tokio::join!(trunk.run(), flood.run());
    let rss_after = rss_kib();

    let stat = |screen: &str, label: &str| -> u64 {
        screen
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .and_then(|l| l.split('|').nth(2))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let completed = stat(&trunk.screen, "Successful call");
    assert!(
        completed * 100 >= trunk_calls as u64 * 99,
        "trunk completed {completed} of {trunk_calls}:\n{}\n{}",
        trunk.screen,
        String::from_utf8_lossy(&trunk.output.stderr)
    );

    // The server still answers the trunk at once, and nothing is left over.
    let mut carrier = Uac::bind(TRUNK_IP, udp).await;
    let answer = carrier.ask("OPTIONS", "ping", "after-flood", "").await;
    assert_eq!(answer.as_deref().map(status), Some(200));
    let metrics = s.metrics().await;
    assert!(
        sample(&metrics, "vca_sip_bans_total{reason=\"rate\"}") >= 1.0,
        "{metrics}"
    );
    let dropped = sample(&metrics, "vca_sip_dropped_total{reason=\"banned\"}") as u64;
    assert!(
        dropped > 10_000,
        "the flood was not dropped at the door:\n{metrics}"
    );
    let growth_mib = rss_after.saturating_sub(rss_before) / 1024;
    println!(
        "flood: {dropped} INVITEs from {FLOODER_IP} dropped; trunk {completed}/{trunk_calls}; RSS {} -> {} MiB",
        rss_before / 1024,
        rss_after / 1024
    );
    assert!(growth_mib < 200, "RSS grew by {growth_mib} MiB");
}
