//! A flood of unauthenticated INVITEs from a digest trunk's own network: each gets one
//! stateless 401 and nothing is left behind. (A test binary of its own, so that the
//! transaction gauge it reads belongs to this server alone.)

mod common;

use std::time::Duration;

use common::uac::{Uac, sample, status};
use common::{Backend, TestDb, TestServer, test_config};
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_invites_from_a_digest_trunk_network_get_one_stateless_401_each() {
    let _heavy = common::heavy::one_at_a_time();
    let db = TestDb::new(Backend::Sqlite).await;
    let s = TestServer::start_with(test_config(&db), db).await;
    let udp = s.server.as_ref().unwrap().sip_udp_addr;
    let (code, trunk) = s.admin_call(Method::POST, "/api/trunks", Some(json!({
        "name": "Tata", "provider": "tata", "auth": "ip+digest", "allowed_cidrs": ["127.0.0.0/24"],
        "realm": "vca.test", "username": "tata", "password": "correct horse battery",
        "digest_algorithms": ["MD5"],
    }))).await;
    assert_eq!(code, 201, "{trunk}");
    let mut uac = Uac::bind("127.0.0.9", udp).await;
    const N: usize = 2_000;
    let mut received = 0;
    for batch in 0..(N / 100) {
        for i in 0..100 {
            let request = uac.request("INVITE", "09876543210", &format!("u-{batch}-{i}"), "");
            uac.send(&request).await;
        }
        while let Some(answer) = uac.final_response(Duration::from_millis(300)).await {
            assert_eq!(status(&answer), 401, "{answer}");
            received += 1;
        }
    }
    assert_eq!(received, N, "one 401 each, never retransmitted");
    // Nothing was left behind: no transaction, no call.
    assert!(
        uac.final_response(Duration::from_secs(1)).await.is_none(),
        "a 401 was resent"
    );
    let metrics = s.metrics().await;
    assert_eq!(sample(&metrics, "vca_sip_transactions"), 0.0, "{metrics}");
    assert_eq!(sample(&metrics, "vca_sip_dialogs"), 0.0, "{metrics}");
}
