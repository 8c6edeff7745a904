//! Trunk security on the wire: which sources and credentials a running vca-sip admits, what
//! everyone else is told, and how floods, scanners and password guessing are stopped.
//!
//! Attackers send from other 127.0.0.0/8 addresses than the trunk (Linux routes the whole
//! block to loopback), with a real sipp or a raw UDP socket.

mod common;

use std::time::Duration;

use common::Backend;
use common::sipp::scenario;
use common::uac::{Uac, authorization, authorization_in, sample, status};
use reqwest::Method;
use serde_json::json;
use vca_sip::gate::Unadmitted;

on_both_backends!(
    a_digest_trunk_admits_sipp_with_its_password_over_udp_and_tcp,
    an_ip_trunk_admits_its_network_and_nobody_else,
    a_tenant_trunk_reaches_only_its_own_numbers,
    tenants_with_the_same_username_have_separate_credentials,
);

const PASSWORD: &str = "CorrectHorse42";

type Env = common::calls::CallEnv;

fn rows(n: usize) -> Vec<String> {
    (0..n)
        .map(|_| "09876543210;919000000001".to_owned())
        .collect()
}

/// sipp's credentials for `[authentication]`.
fn credentials(user: &str, password: &str) -> Vec<String> {
    ["-au", user, "-ap", password]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}

async fn a_digest_trunk_admits_sipp_with_its_password_over_udp_and_tcp(backend: Backend) {
    let env = Env::start(backend, |_| {}).await;
    let trunk = env
        .platform_trunk(json!({
            "name": "Tata", "provider": "tata", "auth": "digest", "realm": "vca.test",
            "username": "tata", "password": PASSWORD, "digest_algorithms": ["MD5"],
        }))
        .await;
    for transport in ["udp", "tcp"] {
        let mut sipp = env.sipp(scenario("auth_call.xml"), transport, &rows(3));
        sipp.extra = credentials("tata", PASSWORD);
        let run = sipp.run().await;
        assert!(
            run.succeeded(),
            "{transport}: {}\n{}",
            run.screen,
            run.messages
        );
        assert!(
            run.messages.contains("SIP/2.0 401 Unauthorized"),
            "challenged first"
        );
    }
    let calls = env.finished_calls(6).await;
    assert_eq!(calls.len(), 6);
    for call in &calls {
        assert_eq!(call["trunk_id"], trunk.as_str(), "{call}");
        assert_eq!(call["status"], "ended", "{call}");
    }

    // A wrong password is challenged again and never answered.
    let before = env.metrics().await;
    let mut bad = env.sipp(scenario("auth_call.xml"), "udp", &rows(1));
    bad.extra = credentials("tata", "WrongPassword");
    bad.extra.extend(["-timeout".to_owned(), "5s".to_owned()]);
    let run = bad.run().await;
    assert!(!run.succeeded(), "a wrong password completed a call");
    assert_eq!(env.calls().await.len(), 6);
    let after = env.metrics().await;
    let key = "vca_sip_auth_failures_total{reason=\"bad_credentials\"}";
    assert!(sample(&after, key) > sample(&before, key), "{after}");
}

async fn an_ip_trunk_admits_its_network_and_nobody_else(backend: Backend) {
    let env = Env::start(backend, |c| c.gate.unadmitted = Unadmitted::Forbid).await;
    // Before any trunk exists, loopback is the development trunk.
    let mut outsider = Uac::bind("127.0.0.2", env.udp()).await;
    let ok = outsider
        .ask("OPTIONS", "ping", "dev-1", "")
        .await
        .expect("answer");
    assert_eq!(status(&ok), 200, "{ok}");

    let trunk = env
        .platform_trunk(json!({
            "name": "Tata", "provider": "tata", "auth": "ip", "allowed_cidrs": ["127.0.0.1/32"],
        }))
        .await;
    let run = env
        .sipp(
            scenario("call.xml"),
            "udp",
            &["09876543210;919000000001".to_owned()],
        )
        .run()
        .await;
    assert!(run.succeeded(), "{}\n{}", run.screen, run.messages);
    assert_eq!(env.calls().await[0]["trunk_id"], trunk.as_str());

    // Everything from outside the network gets the same 403, whatever it asks for.
    for (method, user) in [
        ("INVITE", "09876543210"),
        ("INVITE", "00000000"),
        ("OPTIONS", "ping"),
        ("REGISTER", "tata"),
        ("MESSAGE", "09876543210"),
        ("FOO", "x"),
    ] {
        let answer = outsider
            .ask(method, user, &format!("out-{method}-{user}"), "")
            .await
            .expect("answer");
        assert_eq!(status(&answer), 403, "{method}: {answer}");
        assert!(!answer.contains("WWW-Authenticate"), "{answer}");
    }
    // The trunk itself gets the method answers.
    let mut carrier = Uac::bind("127.0.0.1", env.udp()).await;
    let register = carrier
        .ask("REGISTER", "tata", "in-reg", "")
        .await
        .expect("answer");
    assert_eq!(status(&register), 405, "{register}");
    assert!(register.contains("Allow:"), "{register}");
    let unknown = carrier.ask("FOO", "x", "in-foo", "").await.expect("answer");
    assert_eq!(status(&unknown), 501, "{unknown}");
    assert_eq!(
        env.calls().await.len(),
        1,
        "no outsider INVITE reached a tenant"
    );
}

async fn a_tenant_trunk_reaches_only_its_own_numbers(backend: Backend) {
    let env = Env::start(backend, |_| {}).await;
    // Tenant B owns a trunk from 127.0.0.3 with UK national numbers and a limit of 1.
    let b = env.s.tenant("Bravo").await;
    let key_b = env.s.key(&b).await;
    let (status_code, number) = env
        .s
        .admin_call(
            Method::POST,
            &format!("/api/tenants/{b}/phone-numbers"),
            Some(json!({"did_number": "+447700900123"})),
        )
        .await;
    assert_eq!(status_code, 201, "{number}");
    let (status_code, trunk) = env
        .s
        .call(
            Method::POST,
            &format!("/api/tenants/{b}/trunks"),
            &key_b,
            Some(json!({
                "name": "Own carrier", "provider": "uk-carrier", "auth": "ip",
                "allowed_cidrs": ["127.0.0.3/32"], "default_country_code": "44",
                "max_concurrent_calls": 1,
            })),
        )
        .await;
    assert_eq!(status_code, 201, "{trunk}");

    let mut b_trunk = Uac::bind("127.0.0.3", env.udp()).await;
    // Tenant A's number on B's trunk: 404, exactly like an unknown number.
    let foreign = b_trunk
        .ask("INVITE", "+919876543210", "b-1", "")
        .await
        .unwrap();
    let unknown = b_trunk
        .ask("INVITE", "+919999999999", "b-2", "")
        .await
        .unwrap();
    assert_eq!(status(&foreign), 404, "{foreign}");
    assert_eq!(
        foreign.lines().find(|l| l.starts_with("Reason:")),
        unknown.lines().find(|l| l.starts_with("Reason:"))
    );
    assert!(env.calls().await.is_empty(), "A saw B's attempt");

    // B's own number in national form, normalised with the trunk's country (44): answered,
    // and while it is up the trunk's limit of one call refuses the next with 486.
    let offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.3\r\ns=-\r\nc=IN IP4 127.0.0.3\r\nt=0 0\r\n\
                 m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let invite = b_trunk
        .request(
            "INVITE",
            "07700900123",
            "b-3",
            "Content-Type: application/sdp\r\n",
        )
        .replace(
            "Content-Length: 0\r\n\r\n",
            &format!("Content-Length: {}\r\n\r\n{offer}", offer.len()),
        );
    b_trunk.send(&invite).await;
    let answered = b_trunk
        .final_response(Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(status(&answered), 200, "{answered}");
    let second = invite.replace("b-3", "b-4");
    b_trunk.send(&second).await;
    let busy = b_trunk
        .final_matching("Call-ID: b-4", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(status(&busy), 486, "{busy}");
    assert!(busy.contains("cause=17"), "{busy}");

    // Records are written by the batching writer: wait for both.
    let mut calls = Vec::new();
    for _ in 0..50 {
        let (_, list) = env
            .s
            .call(
                Method::GET,
                &format!("/api/tenants/{b}/calls"),
                &key_b,
                None,
            )
            .await;
        calls = list["items"].as_array().unwrap().clone();
        if calls.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(calls.len(), 2, "{calls:?}");
    for call in calls {
        assert_eq!(call["trunk_id"], trunk["id"], "{call}");
        assert_eq!(call["called"], "+447700900123", "{call}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_source_is_banned_and_the_trunk_is_not() {
    let env = Env::start(Backend::Sqlite, |c| c.gate.unadmitted = Unadmitted::Forbid).await;
    env.platform_trunk(json!({
        "name": "Tata", "provider": "tata", "auth": "ip", "allowed_cidrs": ["127.0.0.1/32"],
    }))
    .await;
    let before = env.metrics().await;
    let mut flooder = Uac::bind("127.0.0.4", env.udp()).await;
    let mut answered = 0;
    for i in 0..40 {
        let request = flooder.request("OPTIONS", "ping", &format!("flood-{i}"), "");
        flooder.send(&request).await;
    }
    while flooder
        .final_response(Duration::from_millis(500))
        .await
        .is_some()
    {
        answered += 1;
    }
    assert_eq!(answered, 16, "only the first 16 in the window are answered");
    // Still banned: nothing more is answered.
    assert!(
        flooder
            .ask("OPTIONS", "ping", "flood-late", "")
            .await
            .is_none()
    );
    // The trunk is never counted, however fast it sends.
    let mut carrier = Uac::bind("127.0.0.1", env.udp()).await;
    for i in 0..100 {
        let request = carrier.request("OPTIONS", "ping", &format!("trunk-{i}"), "");
        carrier.send(&request).await;
    }
    let mut trunk_answers = 0;
    while carrier
        .final_response(Duration::from_millis(500))
        .await
        .is_some()
    {
        trunk_answers += 1;
    }
    assert_eq!(trunk_answers, 100);
    let after = env.metrics().await;
    let key = "vca_sip_bans_total{reason=\"rate\"}";
    assert!(sample(&after, key) >= sample(&before, key) + 1.0, "{after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scanners_are_banned_by_signature_and_by_behaviour() {
    let env = Env::start(Backend::Sqlite, |c| {
        c.gate.unadmitted = Unadmitted::Forbid;
        c.flood.max_requests = 1_000;
    })
    .await;
    env.platform_trunk(json!({
        "name": "Tata", "provider": "tata", "auth": "ip", "allowed_cidrs": ["127.0.0.1/32"],
    }))
    .await;
    let before = env.metrics().await;
    let mut scanner = Uac::bind("127.0.0.5", env.udp()).await;
    assert!(
        scanner
            .ask(
                "OPTIONS",
                "100",
                "scan-1",
                "User-Agent: friendly-scanner\r\n"
            )
            .await
            .is_none(),
        "a scanner is answered"
    );
    assert!(scanner.ask("OPTIONS", "100", "scan-2", "").await.is_none());

    // 50 distinct numbers in a few seconds from one source: banned from the 50th on.
    let mut walker = Uac::bind("127.0.0.6", env.udp()).await;
    for i in 0..49 {
        let answer = walker
            .ask("INVITE", &format!("{}", 1000 + i), &format!("walk-{i}"), "")
            .await;
        assert_eq!(answer.as_deref().map(status), Some(403), "number {i}");
    }
    assert!(walker.ask("INVITE", "2000", "walk-50", "").await.is_none());
    assert!(walker.ask("INVITE", "1000", "walk-51", "").await.is_none());
    let after = env.metrics().await;
    for reason in ["signature", "scanning"] {
        let key = format!("vca_sip_bans_total{{reason=\"{reason}\"}}");
        assert!(
            sample(&after, &key) > sample(&before, &key),
            "{reason}: {after}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_guessing_is_locked_out_per_username_and_source() {
    let env = Env::start(Backend::Sqlite, |c| c.flood.max_requests = 10_000).await;
    env.platform_trunk(json!({
        "name": "Byoc", "provider": "byoc", "auth": "digest", "realm": "vca.test",
        "username": "tata", "password": PASSWORD, "digest_algorithms": ["SHA-256", "MD5"],
    }))
    .await;
    let before = env.metrics().await;
    let uri = format!("sip:09876543210@{}", env.udp());
    let mut cracker = Uac::bind("127.0.0.7", env.udp()).await;

    // Unknown user and wrong password look the same: same status line and headers.
    let attempt = async |uac: &mut Uac, user: &str, password: &str, call: &str| {
        let challenge = uac
            .ask("INVITE", "09876543210", call, "")
            .await
            .expect("401");
        assert_eq!(status(&challenge), 401, "{challenge}");
        let auth = authorization(&challenge, "INVITE", &uri, user, password, 1);
        uac.ask("INVITE", "09876543210", call, &auth)
            .await
            .expect("answer")
    };
    let unknown_user = attempt(&mut cracker, "nobody", "guess", "c-0").await;
    let wrong_password = attempt(&mut cracker, "tata", "guess", "c-1").await;
    let shape = |r: &str| -> Vec<String> {
        r.lines()
            .map(|l| l.split_once(':').map_or(l, |(name, _)| name).to_owned())
            .collect()
    };
    assert_eq!(status(&unknown_user), 401);
    assert_eq!(shape(&unknown_user), shape(&wrong_password));
    assert_eq!(
        unknown_user.lines().next(),
        wrong_password.lines().next(),
        "status lines differ"
    );

    // 9 more wrong passwords for tata (10 in all): locked, and then even the right one fails.
    for i in 2..11 {
        let answer = attempt(&mut cracker, "tata", "guess", &format!("c-{i}")).await;
        assert_eq!(status(&answer), 401, "attempt {i}");
    }
    let locked = attempt(&mut cracker, "tata", PASSWORD, "c-right").await;
    assert_eq!(status(&locked), 401, "a locked pair got in: {locked}");

    // The same username from another source still works.
    let mut carrier = Uac::bind("127.0.0.8", env.udp()).await;
    let offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.8\r\ns=-\r\nc=IN IP4 127.0.0.8\r\nt=0 0\r\n\
                 m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let challenge = carrier
        .ask("INVITE", "09876543210", "ok-1", "")
        .await
        .unwrap();
    let auth = authorization(&challenge, "INVITE", &uri, "tata", PASSWORD, 1);
    let invite = carrier
        .request(
            "INVITE",
            "09876543210",
            "ok-1",
            &format!("{auth}Content-Type: application/sdp\r\n"),
        )
        .replace(
            "Content-Length: 0\r\n\r\n",
            &format!("Content-Length: {}\r\n\r\n{offer}", offer.len()),
        );
    carrier.send(&invite).await;
    let answered = carrier
        .final_response(Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(status(&answered), 200, "{answered}");

    // Replaying the accepted credentials (same nonce and nc) on a new request: 401.
    let replay = invite.replace("z9hG4bK-t", "z9hG4bK-replay");
    carrier.send(&replay).await;
    let replayed = carrier
        .final_matching("z9hG4bK-replay", Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(status(&replayed), 401, "{replayed}");

    let after = env.metrics().await;
    let key = "vca_sip_auth_lockouts_total";
    assert!(sample(&after, key) > sample(&before, key), "{after}");

    // A source in a trunk's networks is never locked out: a carrier that mistypes its
    // password a dozen times gets in once it is right.
    env.platform_trunk(json!({
        "name": "Carrier", "provider": "tata", "auth": "ip+digest",
        "allowed_cidrs": ["127.0.0.12/32"], "realm": "both.test", "username": "both",
        "password": PASSWORD, "digest_algorithms": ["MD5"],
    }))
    .await;
    let mut trunk = Uac::bind("127.0.0.12", env.udp()).await;
    let attempts = (0..12)
        .map(|i| ("Mistyped", format!("t-{i}"), 401))
        .chain([(PASSWORD, "t-right".to_owned(), 200)]);
    for (password, call, expected) in attempts {
        let challenge = trunk.ask("INVITE", "09876543210", &call, "").await.unwrap();
        let auth = authorization_in(&challenge, "both.test", "INVITE", &uri, "both", password, 1);
        let invite = trunk
            .request(
                "INVITE",
                "09876543210",
                &call,
                &format!("{auth}Content-Type: application/sdp\r\n"),
            )
            .replace(
                "Content-Length: 0\r\n\r\n",
                &format!("Content-Length: {}\r\n\r\n{offer}", offer.len()),
            );
        trunk.send(&invite).await;
        let response = trunk
            .final_matching(&format!("Call-ID: {call}"), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(status(&response), expected, "{call}: {response}");
    }
}

async fn tenants_with_the_same_username_have_separate_credentials(backend: Backend) {
    let env = Env::start(backend, |_| {}).await;
    let a = env.tenant.clone();
    let b = env.s.tenant("Bravo").await;
    let (code, body) = env
        .s
        .admin_call(
            Method::POST,
            &format!("/api/tenants/{b}/phone-numbers"),
            Some(json!({"did_number": "+919876500000"})),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let trunk = |realm: &str, password: &str| {
        json!({
            "name": "Own PBX", "provider": "pbx", "auth": "digest", "realm": realm,
            "username": "pbx", "password": password, "digest_algorithms": ["MD5"],
        })
    };
    for (tenant, realm, password) in [
        (&a, "a.vca.test", "PasswordA1"),
        (&b, "b.vca.test", "PasswordB1"),
    ] {
        let key = env.s.key(tenant).await;
        let (code, body) = env
            .s
            .call(
                Method::POST,
                &format!("/api/tenants/{tenant}/trunks"),
                &key,
                Some(trunk(realm, password)),
            )
            .await;
        assert_eq!(code, 201, "{body}");
    }
    // B cannot take A's realm and username: a digest identity names one trunk.
    let key_b = env.s.key(&b).await;
    let (code, body) = env
        .s
        .call(
            Method::POST,
            &format!("/api/tenants/{b}/trunks"),
            &key_b,
            Some(trunk("a.vca.test", "PasswordB1")),
        )
        .await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(body["field"], "username", "{body}");

    let mut pbx = Uac::bind("127.0.0.11", env.udp()).await;
    let offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.11\r\ns=-\r\nc=IN IP4 127.0.0.11\r\nt=0 0\r\n\
                 m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let mut call = async |did: &str, realm: &str, password: &str, call_id: &str| -> u16 {
        let uri = format!("sip:{did}@{}", env.udp());
        let challenge = pbx.ask("INVITE", did, call_id, "").await.expect("401");
        assert_eq!(status(&challenge), 401, "{challenge}");
        assert!(challenge.contains("a.vca.test") && challenge.contains("b.vca.test"));
        let auth = authorization_in(&challenge, realm, "INVITE", &uri, "pbx", password, 1);
        let invite = pbx
            .request(
                "INVITE",
                did,
                call_id,
                &format!("{auth}Content-Type: application/sdp\r\n"),
            )
            .replace(
                "Content-Length: 0\r\n\r\n",
                &format!("Content-Length: {}\r\n\r\n{offer}", offer.len()),
            );
        pbx.send(&invite).await;
        let answer = pbx
            .final_matching(&format!("Call-ID: {call_id}"), Duration::from_secs(5))
            .await
            .expect("answer");
        status(&answer)
    };
    // A's credentials reach A's number and never B's; A's password is not B's.
    assert_eq!(
        call("+919876500000", "a.vca.test", "PasswordA1", "x-1").await,
        404
    );
    assert_eq!(
        call("+919876500000", "b.vca.test", "PasswordA1", "x-2").await,
        401
    );
    assert_eq!(
        call("+919876543210", "b.vca.test", "PasswordB1", "x-3").await,
        404
    );
    assert_eq!(
        call("+919876543210", "a.vca.test", "PasswordA1", "x-4").await,
        200
    );
    assert_eq!(
        call("+919876500000", "b.vca.test", "PasswordB1", "x-5").await,
        200
    );
}

/// A request that passed digest authentication and was then refused statelessly (here a
/// 405; a 503 for overload takes the same path) leaves no transaction behind: its
/// retransmission must get the same answer again, not a 401 for a replayed nonce-count.
/// A request that was acted on keeps its count used (the INVITE replay case above).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retransmission_of_an_authenticated_request_refused_statelessly_gets_the_same_answer() {
    let env = Env::start(Backend::Sqlite, |_| {}).await;
    env.platform_trunk(json!({
        "name": "Tata", "provider": "tata", "auth": "ip+digest", "allowed_cidrs": ["127.0.0.0/24"],
        "realm": "vca.test", "username": "tata", "password": PASSWORD,
        "digest_algorithms": ["MD5"],
    }))
    .await;
    let uri = format!("sip:09876543210@{}", env.udp());
    let mut uac = Uac::bind("127.0.0.11", env.udp()).await;
    let challenge = uac
        .ask("SUBSCRIBE", "09876543210", "sub-1", "Event: presence\r\n")
        .await
        .expect("a challenge");
    assert_eq!(status(&challenge), 401, "{challenge}");
    let auth = authorization(&challenge, "SUBSCRIBE", &uri, "tata", PASSWORD, 1);
    let request = uac.request(
        "SUBSCRIBE",
        "09876543210",
        "sub-1",
        &format!("Event: presence\r\n{auth}"),
    );
    for copy in ["first copy", "retransmission", "second retransmission"] {
        uac.send(&request).await;
        let answer = uac
            .final_response(Duration::from_secs(2))
            .await
            .unwrap_or_else(|| panic!("no answer to the {copy}"));
        assert_eq!(status(&answer), 405, "{copy}: {answer}");
    }
}
