//! A real softphone calls the echo: baresip (Debian package baresip) dials a national number
//! over UDP on loopback, sends a generated noise signal as its microphone, records the audio
//! it receives and hangs up. The recording must hold the signal that was sent, and the call
//! record read back through the API must say how the call went.
//! How baresip is run is in `common::baresip`.

#![allow(clippy::disallowed_methods)] // deadlines on a real softphone and the real binary

mod common;

use std::time::Duration;

use common::baresip::{
    Baresip, PLAIN_ACCOUNT, RATE, best_lag, noise_bursts, overlap_coefficient, per_second, rms,
    to_f64, wav_bytes,
};
use common::calls::CallEnv;
use common::{Backend, TestServer};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::time::{Instant, sleep};
use vca_sip::config::TlsSettings;
use vca_sip::transport::tls::TlsFiles;

on_both_backends!(
    baresip_hears_its_own_voice_back,
    baresip_calls_a_digest_trunk_with_its_password,
);

/// Length of the generated source file. Longer than the call, so that the source never runs
/// dry (aufile ends the call at the end of its file).
const SOURCE_SECONDS: usize = 8;

/// How long the call is left running before baresip hangs up.
const TALK: Duration = Duration::from_secs(4);

/// Seeds of the sent signal and of an unrelated one used as a control.
const SEED: u32 = 0x5eed_1234;
const OTHER_SEED: u32 = 0x0bad_cafe;

async fn baresip_hears_its_own_voice_back(backend: Backend) {
    let _heavy = common::heavy::one_at_a_time();
    let started = Instant::now();
    let baresip = common::sipp::which("baresip").unwrap_or_else(|| {
        panic!(
            "baresip is not installed: install the Debian package baresip (apt-get install baresip)"
        )
    });

    // 1. A server on loopback with a tenant and its number.
    let CallEnv { s, tenant, .. } = CallEnv::start(backend, |_| {}).await;
    let sip = s.server.as_ref().expect("running").sip_udp_addr;

    // 2. The signal, written where baresip reads its microphone.
    let dir = tempfile::tempdir().expect("temp dir");
    let sent = noise_bursts(SEED, SOURCE_SECONDS * RATE);
    let source = dir.path().join("source.wav");
    std::fs::write(&source, wav_bytes(&sent)).expect("write source WAV");

    // 3. The call.
    let mut phone = Baresip::start(&baresip, dir.path(), &source, PLAIN_ACCOUNT).await;
    let target = format!("sip:09876543210@{sip}");
    phone.dial(&target).await;
    let established = phone
        .ctrl
        .event("CALL_ESTABLISHED", Duration::from_secs(5))
        .await;
    println!("established: {established}");
    // The call must stay up until baresip hangs up (the server's BYE, or the end of the
    // source file, would close it earlier).
    phone.ctrl.hold(TALK).await;
    let answer = phone.ctrl.command("hangup", "").await;
    assert_eq!(
        answer["ok"],
        true,
        "hangup refused: {answer}\n{}",
        phone.log()
    );
    let closed = phone
        .ctrl
        .event("CALL_CLOSED", Duration::from_secs(5))
        .await;
    println!("closed: {closed}");
    phone.quit().await;
    let log = phone.log();
    assert!(
        !log.contains("SIP/2.0 4") && !log.contains("SIP/2.0 5"),
        "the server refused a request:\n{log}"
    );

    // 4. The echo holds the signal.
    let received = phone.recording("dec");
    let secs = received.len() as f64 / RATE as f64;
    println!("received {} samples ({secs:.2} s)", received.len());
    assert!(
        (2.0..=TALK.as_secs_f64() + 1.5).contains(&secs),
        "the recording of a {TALK:?} call lasts {secs:.2} s\n{log}"
    );
    let level = rms(&received);
    assert!(
        level > 500.0,
        "the received audio is (nearly) silent: RMS {level:.1}\n{log}"
    );
    // What baresip encoded is the file itself (the source played what was generated).
    let sent_f = to_f64(&sent);
    let encoded = phone.recording("enc");
    let source_match = overlap_coefficient(&sent_f, &to_f64(&encoded), 0);
    println!("source check: encoded vs generated at lag 0: {source_match:.4}");
    assert!(
        source_match > 0.99,
        "baresip did not send the generated file as its audio ({source_match:.4}): the test \
         set-up is at fault, not the server\n{log}"
    );
    let received_f = to_f64(&received);
    let peak = best_lag(&sent_f, &received_f);
    let whole = overlap_coefficient(&sent_f, &received_f, peak.lag);
    println!(
        "echo: best lag {} samples ({:.1} ms), window coefficient {:.4}, whole-recording \
         coefficient {whole:.4}",
        peak.lag,
        peak.lag as f64 * 1000.0 / RATE as f64,
        peak.coefficient,
    );
    assert!(
        peak.coefficient > 0.8,
        "the received audio does not carry the sent signal: best {peak:?}, whole-recording \
         coefficient {whole:.4}\n{log}"
    );
    let seconds = per_second(&sent_f, &received_f, peak.lag);
    for (i, second) in seconds.iter().enumerate() {
        println!(
            "  second {i}: lag {} coefficient {:.4}",
            second.lag, second.coefficient
        );
    }
    assert!(
        seconds.iter().all(|second| second.coefficient > 0.8),
        "some second of the call does not carry the sent signal: {seconds:?}"
    );
    // Controls: an unrelated noise signal finds no match at any lag, and neither does silence.
    let unrelated = best_lag(
        &to_f64(&noise_bursts(OTHER_SEED, SOURCE_SECONDS * RATE)),
        &received_f,
    );
    println!(
        "control: unrelated noise best |coefficient| {:.4} at lag {}",
        unrelated.coefficient.abs(),
        unrelated.lag
    );
    assert!(
        unrelated.coefficient.abs() < 0.2,
        "an unrelated signal matches the recording: {:.4} at lag {}",
        unrelated.coefficient,
        unrelated.lag
    );
    let silence = vec![0.0; sent_f.len()];
    assert_eq!(best_lag(&silence, &received_f).coefficient, 0.0);

    // 5. The call record.
    let call = finished_call(&s, &tenant).await;
    println!("call record: {call}");
    assert_eq!(call["status"], "ended", "{call}");
    assert_eq!(call["hangup_cause"], "caller_bye", "{call}");
    assert_eq!(call["called"], "+919876543210", "{call}");
    assert_eq!(call["called_raw"], "09876543210", "{call}");
    assert_eq!(call["direction"], "inbound", "{call}");
    assert_eq!(call["sip_status"], 200, "{call}");
    assert_eq!(call["transport"], "udp", "{call}");
    assert!(
        call["codec"] == "PCMA" || call["codec"] == "PCMU",
        "codec: {call}"
    );
    assert!(
        call["duration_s"].as_i64().is_some_and(|d| d >= 2),
        "duration: {call}"
    );
    println!("{backend:?}: whole test took {:?}", started.elapsed());
}

/// Waits until the tenant has a call with a final status and returns it, checking that it
/// is the only call (records are written in batches just after the call ends).
/// baresip on a digest-only trunk: challenged, it answers with the trunk's username and
/// password over UDP, TCP and TLS, and the call comes up on that trunk. (baresip 1.0.0 does
/// not verify the server's certificate, so over TLS this checks the server side: the
/// handshake, the digest exchange and the call inside the TLS connection.)
async fn baresip_calls_a_digest_trunk_with_its_password(backend: Backend) {
    let _heavy = common::heavy::one_at_a_time();
    let baresip = common::sipp::which("baresip").unwrap_or_else(|| {
        panic!(
            "baresip is not installed: install the Debian package baresip (apt-get install baresip)"
        )
    });
    let certs = tempfile::tempdir().expect("temp dir");
    let ca = common::pki::Ca::new("vca-sip test CA");
    let (cert, key) = ca.server("vca-sip").write(certs.path(), "server");
    let CallEnv { s, tenant, .. } = CallEnv::start(backend, |config| {
        config.tls = Some(TlsSettings {
            addr: "127.0.0.1:0".parse().unwrap(),
            files: TlsFiles {
                cert,
                key,
                client_ca: None,
            },
        });
    })
    .await;
    let (status, trunk) = s
        .admin_call(
            Method::POST,
            "/api/trunks",
            Some(json!({
                "name": "Softphones", "provider": "baresip", "auth": "digest",
                "realm": "vca.test", "username": "phone", "password": "CorrectHorse42",
                // Debian's baresip 1.0.0 answers only the first challenge, and only MD5.
                "digest_algorithms": ["MD5"],
            })),
        )
        .await;
    assert_eq!(status, 201, "{trunk}");
    let server = s.server.as_ref().expect("running");

    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("source.wav");
    std::fs::write(
        &source,
        wav_bytes(&noise_bursts(SEED, SOURCE_SECONDS * RATE)),
    )
    .expect("write source WAV");
    let tls = server.sip_tls_addr.expect("TLS listener");
    for (transport, addr) in [
        ("udp", server.sip_udp_addr),
        ("tcp", server.sip_tcp_addr),
        ("tls", tls),
    ] {
        let account = format!(
            "<sip:phone@127.0.0.1;transport={transport}>;auth_pass=CorrectHorse42;regint=0;\
             answermode=manual;audio_codecs=PCMA,PCMU"
        );
        let phone_dir = dir.path().join(transport);
        std::fs::create_dir_all(&phone_dir).expect("phone dir");
        let mut phone = Baresip::start(&baresip, &phone_dir, &source, &account).await;
        // The account adds `;transport=...` to the dialled URI.
        let target = format!("sip:09876543210@{addr}");
        let answer = phone.ctrl.command("dial", &target).await;
        assert_eq!(
            answer["ok"],
            true,
            "dial refused: {answer}\n{}",
            phone.log()
        );
        phone
            .ctrl
            .event("CALL_ESTABLISHED", Duration::from_secs(5))
            .await;
        phone.ctrl.hold(Duration::from_secs(1)).await;
        let answer = phone.ctrl.command("hangup", "").await;
        assert_eq!(
            answer["ok"],
            true,
            "hangup refused: {answer}\n{}",
            phone.log()
        );
        phone
            .ctrl
            .event("CALL_CLOSED", Duration::from_secs(5))
            .await;
        phone.quit().await;
    }

    let deadline = Instant::now() + Duration::from_secs(5);
    let calls = loop {
        let (_, list) = s
            .admin_call(
                Method::GET,
                &format!("/api/tenants/{tenant}/calls?limit=10"),
                None,
            )
            .await;
        let calls = list["items"].as_array().expect("items").clone();
        if calls.iter().filter(|c| c["status"] == "ended").count() == 3 {
            break calls;
        }
        assert!(Instant::now() < deadline, "three ended calls: {calls:#?}");
        sleep(Duration::from_millis(50)).await;
    };
    let mut transports: Vec<&str> = calls
        .iter()
        .map(|c| c["transport"].as_str().unwrap_or(""))
        .collect();
    transports.sort_unstable();
    assert_eq!(transports, ["tcp", "tls", "udp"], "{calls:#?}");
    for call in &calls {
        assert_eq!(call["trunk_id"], trunk["id"], "{call}");
        assert_eq!(call["hangup_cause"], "caller_bye", "{call}");
    }
}

async fn finished_call(s: &TestServer, tenant: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, list) = s
            .admin_call(
                Method::GET,
                &format!("/api/tenants/{tenant}/calls?limit=500"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{list}");
        let calls = list["items"].as_array().expect("items").clone();
        let done = calls
            .iter()
            .any(|c| c["status"] == "ended" || c["status"] == "failed");
        if done {
            assert_eq!(calls.len(), 1, "exactly one call: {calls:#?}");
            return calls.into_iter().next().expect("one call");
        }
        assert!(
            Instant::now() < deadline,
            "no final call record within 5 s: {calls:#?}"
        );
        sleep(Duration::from_millis(50)).await;
    }
}
