//! Inbound calls end to end: a real sipp calls a running vca-sip over UDP and TCP, on a real
//! SQLite file and a real PostgreSQL database, and the call records are read back through
//! the API.

mod common;

use std::time::Duration;

use common::Backend;
use common::sipp::{scenario, variant};
use reqwest::Method;
use serde_json::{Value, json};

on_both_backends!(
    calls_in_every_number_form_are_answered_and_recorded,
    refusals_say_why_and_are_recorded,
    a_tenant_at_its_limit_gets_busy_and_others_do_not,
    cancel_while_ringing_gets_487,
    silent_media_ends_the_call_with_a_bye,
    hold_and_refresh_are_answered_per_offer_answer,
    an_invite_without_sdp_gets_our_offer,
    session_timers_are_honoured,
);

type Env = common::calls::CallEnv;

impl Env {
    async fn events(&self, call: &Value) -> Vec<String> {
        let (status, call) = self
            .s
            .admin_call(
                Method::GET,
                &format!(
                    "/api/tenants/{}/calls/{}",
                    self.tenant,
                    call["id"].as_str().unwrap()
                ),
                None,
            )
            .await;
        assert_eq!(status, 200, "{call}");
        call["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_owned())
            .collect()
    }
}

async fn calls_in_every_number_form_are_answered_and_recorded(backend: Backend) {
    let env = Env::start(backend, |_| {}).await;
    let forms = [
        "+919876543210;alice",
        "919876543210;bob",
        "09876543210;carol",
        "9876543210;dave",
    ];
    for transport in ["udp", "tcp"] {
        let run = env
            .sipp(scenario("call.xml"), transport, &forms)
            .run()
            .await;
        assert!(
            run.succeeded(),
            "{transport}: {}\n{}",
            run.screen,
            run.messages
        );
    }
    // tel: URI with visual separators (RFC 3966).
    let tel = variant(
        env.s.db.dir.path(),
        "call.xml",
        "call-tel.xml",
        &[(
            "INVITE sip:[field0]@[remote_ip]:[remote_port] SIP/2.0",
            "INVITE [field0] SIP/2.0",
        )],
    );
    let run = env
        .sipp(tel, "udp", &["tel:+91-98765-43210;erin"])
        .run()
        .await;
    assert!(run.succeeded(), "{}\n{}", run.screen, run.messages);

    let calls = env.finished_calls(9).await;
    assert_eq!(calls.len(), 9);
    for call in &calls {
        assert_eq!(call["status"], "ended", "{call}");
        assert_eq!(call["called"], "+919876543210");
        assert_eq!(call["phone_number_id"], env.number.as_str());
        assert_eq!(call["direction"], "inbound");
        assert_eq!(call["sip_status"], 200);
        assert_eq!(call["hangup_cause"], "caller_bye");
        assert_eq!(call["codec"], "PCMA", "the offer's first codec");
        assert!(call["answered_at"].is_string() && call["ended_at"].is_string());
        assert!(
            call["duration_s"].as_i64().is_some_and(|d| d >= 0),
            "{call}"
        );
        assert!(
            call["remote_addr"]
                .as_str()
                .unwrap()
                .starts_with("127.0.0.1:")
        );
    }
    let mut transports: Vec<&str> = calls
        .iter()
        .map(|c| c["transport"].as_str().unwrap())
        .collect();
    transports.sort_unstable();
    assert_eq!(
        transports,
        [
            "tcp", "tcp", "tcp", "tcp", "udp", "udp", "udp", "udp", "udp"
        ]
    );
    let mut raw: Vec<&str> = calls
        .iter()
        .map(|c| c["called_raw"].as_str().unwrap())
        .collect();
    raw.sort_unstable();
    raw.dedup();
    assert_eq!(
        raw,
        [
            "+91-98765-43210",
            "+919876543210",
            "09876543210",
            "919876543210",
            "9876543210"
        ]
    );
    let callers: Vec<&str> = calls
        .iter()
        .map(|c| c["caller"].as_str().unwrap())
        .collect();
    assert!(
        callers.contains(&"erin") && callers.contains(&"alice"),
        "{callers:?}"
    );
    assert_eq!(
        env.events(&calls[0]).await,
        ["initiated", "answered", "ended"]
    );
    // The call is the tenant's: another tenant's key does not see it.
    let other = env.s.tenant("Other").await;
    let key = env.s.key(&other).await;
    let (status, _) = env
        .s
        .call(
            Method::GET,
            &format!(
                "/api/tenants/{}/calls/{}",
                env.tenant,
                calls[0]["id"].as_str().unwrap()
            ),
            &key,
            None,
        )
        .await;
    assert_eq!(status, 404);
}

async fn refusals_say_why_and_are_recorded(backend: Backend) {
    let env = Env::start(backend, |_| {}).await;
    let dir = env.s.db.dir.path();

    // Unknown number: 404 with Q.850 cause 1, no record for any tenant.
    let run = env
        .sipp(scenario("unknown_did.xml"), "udp", &["+911111111111;x"])
        .run()
        .await;
    assert!(run.succeeded(), "{}\n{}", run.screen, run.messages);
    assert!(
        run.messages.contains("Reason: Q.850;cause=1;"),
        "{}",
        run.messages
    );

    // No common codec: 488, cause 88, recorded as failed.
    let g729 = variant(
        dir,
        "unknown_did.xml",
        "g729.xml",
        &[
            ("<recv response=\"404\"/>", "<recv response=\"488\"/>"),
            (
                "m=audio [media_port] RTP/AVP 8 0\n      a=rtpmap:8 PCMA/8000\n      a=rtpmap:0 PCMU/8000",
                "m=audio [media_port] RTP/AVP 18\n      a=rtpmap:18 G729/8000",
            ),
        ],
    );
    let run = env.sipp(g729, "udp", &["9876543210;x"]).run().await;
    assert!(run.succeeded(), "{}\n{}", run.screen, run.messages);
    assert!(
        run.messages.contains("Reason: Q.850;cause=88;"),
        "{}",
        run.messages
    );

    // Inactive number, then suspended tenant: 403, cause 21.
    let forbidden = variant(
        dir,
        "unknown_did.xml",
        "forbidden.xml",
        &[("<recv response=\"404\"/>", "<recv response=\"403\"/>")],
    );
    let (status, _) = env
        .s
        .admin_call(
            Method::PATCH,
            &format!("/api/tenants/{}/phone-numbers/{}", env.tenant, env.number),
            Some(json!({"is_active": false})),
        )
        .await;
    assert_eq!(status, 200);
    let run = env
        .sipp(forbidden.clone(), "tcp", &["9876543210;x"])
        .run()
        .await;
    assert!(run.succeeded(), "{}\n{}", run.screen, run.messages);
    assert!(
        run.messages.contains("Reason: Q.850;cause=21;"),
        "{}",
        run.messages
    );
    env.s
        .admin_call(
            Method::PATCH,
            &format!("/api/tenants/{}/phone-numbers/{}", env.tenant, env.number),
            Some(json!({"is_active": true})),
        )
        .await;
    env.s
        .admin_call(
            Method::PATCH,
            &format!("/api/tenants/{}", env.tenant),
            Some(json!({"status": "suspended"})),
        )
        .await;
    let run = env.sipp(forbidden, "udp", &["9876543210;x"]).run().await;
    assert!(run.succeeded(), "{}\n{}", run.screen, run.messages);

    let calls = env.finished_calls(3).await;
    let mut statuses: Vec<i64> = calls
        .iter()
        .map(|c| c["sip_status"].as_i64().unwrap())
        .collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [403, 403, 488]);
    for call in &calls {
        assert_eq!(call["status"], "failed", "{call}");
        assert_eq!(call["hangup_cause"], "rejected");
        assert_eq!(call["answered_at"], Value::Null);
        assert_eq!(call["duration_s"], Value::Null);
    }
    // The unknown number went to the rejected-attempts table, not to a tenant.
    let server = env.s.server.as_ref().unwrap();
    let store = server.store.clone();
    let mut env = env;
    env.s
        .server
        .take()
        .unwrap()
        .stop(Duration::ZERO)
        .await
        .expect("stop");
    let reopened = vca_sip::store::Store::connect(&env.s.db.url).await.unwrap();
    let n = reopened
        .rejected_attempts("127.0.0.1".parse().unwrap(), "unknown_did")
        .await
        .unwrap();
    assert_eq!(n, 1);
    drop(store);
}

async fn a_tenant_at_its_limit_gets_busy_and_others_do_not(backend: Backend) {
    let env = Env::start(backend, |_| {}).await;
    env.s
        .admin_call(
            Method::PATCH,
            &format!("/api/tenants/{}", env.tenant),
            Some(json!({"max_concurrent_calls": 1})),
        )
        .await;
    let other = env.s.tenant("Other").await;
    env.s
        .admin_call(
            Method::POST,
            &format!("/api/tenants/{other}/phone-numbers"),
            Some(json!({"did_number": "+918888888888"})),
        )
        .await;
    let mut long = env.sipp(scenario("call.xml"), "udp", &["9876543210;x"]);
    long.pause_ms = 3000;
    let busy = variant(
        env.s.db.dir.path(),
        "unknown_did.xml",
        "busy.xml",
        &[("<recv response=\"404\"/>", "<recv response=\"486\"/>")],
    );
    let held = long.run();
    let second = async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        let busy_run = env.sipp(busy, "udp", &["9876543210;y"]).run().await;
        let other_run = env
            .sipp(scenario("call.xml"), "udp", &["+918888888888;z"])
            .run()
            .await;
        (busy_run, other_run)
    };
    let (held, (busy_run, other_run)) = tokio::join!(held, second);
    assert!(held.succeeded(), "{}", held.screen);
    assert!(
        busy_run.succeeded(),
        "{}\n{}",
        busy_run.screen,
        busy_run.messages
    );
    assert!(
        busy_run.messages.contains("Reason: Q.850;cause=17;"),
        "{}",
        busy_run.messages
    );
    assert!(
        other_run.succeeded(),
        "tenant B was affected by A's limit: {}",
        other_run.screen
    );
    let calls = env.finished_calls(2).await;
    let busy: Vec<&Value> = calls.iter().filter(|c| c["sip_status"] == 486).collect();
    assert_eq!(busy.len(), 1, "{calls:#?}");
    assert_eq!(busy[0]["status"], "failed");
}

async fn cancel_while_ringing_gets_487(backend: Backend) {
    let env = Env::start(backend, |c| c.ring = Duration::from_secs(5)).await;
    let run = env
        .sipp(scenario("cancel.xml"), "udp", &["9876543210;x"])
        .run()
        .await;
    assert!(run.succeeded(), "{}\n{}", run.screen, run.messages);
    let calls = env.finished_calls(1).await;
    assert_eq!(calls[0]["status"], "failed", "{}", calls[0]);
    assert_eq!(calls[0]["sip_status"], 487);
    assert_eq!(calls[0]["hangup_cause"], "cancel");
    assert_eq!(
        env.events(&calls[0]).await,
        ["initiated", "ringing", "failed"]
    );
}

async fn silent_media_ends_the_call_with_a_bye(backend: Backend) {
    let env = Env::start(backend, |c| c.media_timeout = Duration::from_secs(1)).await;
    let run = env
        .sipp(scenario("server_bye.xml"), "udp", &["9876543210;x"])
        .run()
        .await;
    assert!(run.succeeded(), "{}\n{}", run.screen, run.messages);
    let calls = env.finished_calls(1).await;
    assert_eq!(calls[0]["status"], "ended", "{}", calls[0]);
    assert_eq!(calls[0]["hangup_cause"], "timeout");
    assert_eq!(calls[0]["duration_s"], 1);
}

/// The response to the `cseq` request in sipp's trace (the last one received).
fn response_to(messages: &str, cseq: &str) -> String {
    messages
        .split("-----------------------------------------------")
        .filter(|m| m.contains("message received") && m.contains(&format!("CSeq: {cseq}")))
        .last()
        .unwrap_or_else(|| panic!("no response to {cseq}:\n{messages}"))
        .to_owned()
}

fn origin_line(message: &str) -> String {
    message
        .lines()
        .find(|l| l.starts_with("o="))
        .expect("an SDP o= line")
        .to_owned()
}

async fn hold_and_refresh_are_answered_per_offer_answer(backend: Backend) {
    let env = Env::start(backend, |_| {}).await;
    for transport in ["udp", "tcp"] {
        let run = env
            .sipp(scenario("hold.xml"), transport, &["9876543210;x"])
            .run()
            .await;
        assert!(
            run.succeeded(),
            "{transport}: {}\n{}",
            run.screen,
            run.messages
        );
        let first = response_to(&run.messages, "1 INVITE");
        let hold = response_to(&run.messages, "2 INVITE");
        let refresh = response_to(&run.messages, "3 INVITE");
        assert!(first.contains("a=sendrecv"), "{first}");
        assert!(
            hold.contains("SIP/2.0 200 OK") && hold.contains("a=recvonly"),
            "a sendonly offer is answered recvonly: {hold}"
        );
        assert_ne!(
            origin_line(&first),
            origin_line(&hold),
            "the answer changed, so its version goes up"
        );
        assert_eq!(
            origin_line(&hold),
            origin_line(&refresh),
            "an unchanged offer keeps the session version"
        );
    }
    let calls = env.finished_calls(2).await;
    assert!(calls.iter().all(|c| c["status"] == "ended"), "{calls:#?}");
}

async fn an_invite_without_sdp_gets_our_offer(backend: Backend) {
    let env = Env::start(backend, |_| {}).await;
    let run = env
        .sipp(scenario("late_offer.xml"), "udp", &["9876543210;x"])
        .run()
        .await;
    assert!(run.succeeded(), "{}\n{}", run.screen, run.messages);
    let ok = response_to(&run.messages, "1 INVITE");
    assert!(
        ok.contains("m=audio ") && ok.contains("a=rtpmap:8 PCMA/8000"),
        "{ok}"
    );
    let calls = env.finished_calls(1).await;
    assert_eq!(calls[0]["status"], "ended");
    assert_eq!(
        calls[0]["codec"], "PCMU",
        "the codec the answer in the ACK chose"
    );
}

async fn session_timers_are_honoured(backend: Backend) {
    // No media timeout: the only thing that may end the last call is its session timer.
    let env = Env::start(backend, |c| c.media_timeout = Duration::ZERO).await;
    let dir = env.s.db.dir.path();
    let timer = variant(
        dir,
        "call.xml",
        "timer.xml",
        &[(
            "      User-Agent: vca-sip-loadtest\n",
            "      Session-Expires: 1800;refresher=uac\n      Supported: timer\n",
        )],
    );
    let run = env.sipp(timer, "udp", &["9876543210;x"]).run().await;
    assert!(run.succeeded(), "{}\n{}", run.screen, run.messages);
    let ok = response_to(&run.messages, "1 INVITE");
    assert!(ok.contains("Session-Expires: 1800;refresher=uac"), "{ok}");
    assert!(ok.contains("Require: timer"), "{ok}");

    let too_small = variant(
        dir,
        "unknown_did.xml",
        "too-small.xml",
        &[
            ("<recv response=\"404\"/>", "<recv response=\"422\"/>"),
            (
                "      Max-Forwards: 70\n      Content-Type",
                "      Max-Forwards: 70\n      Session-Expires: 30\n      Supported: timer\n      Content-Type",
            ),
        ],
    );
    let run = env.sipp(too_small, "udp", &["9876543210;x"]).run().await;
    assert!(run.succeeded(), "{}\n{}", run.screen, run.messages);
    assert!(
        response_to(&run.messages, "1 INVITE").contains("Min-SE: 90"),
        "{}",
        run.messages
    );

    // A caller that is the refresher and never refreshes: at the smallest interval (90 s)
    // the server ends the call with a BYE a third of the interval before it runs out (§10).
    let lapsing = variant(
        dir,
        "server_bye.xml",
        "lapsing.xml",
        &[(
            "      User-Agent: vca-sip-loadtest\n",
            "      Session-Expires: 90;refresher=uac\n      Supported: timer\n",
        )],
    );
    let mut sipp = env.sipp(lapsing, "udp", &["9876543210;x"]);
    sipp.extra = vec!["-timeout".into(), "120s".into()];
    let run = sipp.run().await;
    assert!(run.succeeded(), "{}\n{}", run.screen, run.messages);
    let calls = env.finished_calls(3).await;
    let lapsed = calls
        .iter()
        .find(|c| c["hangup_cause"] == "timeout")
        .unwrap_or_else(|| panic!("no call ended by its session timer: {calls:#?}"));
    assert_eq!(lapsed["status"], "ended", "{lapsed}");
    let duration = lapsed["duration_s"].as_i64().unwrap_or(0);
    assert!((59..=61).contains(&duration), "{lapsed}");
}
