//! Carrier calls reach a real AI agent: baresip (the caller) dials the tenant's number, whose
//! AI profile streams the call to a real Pipecat bot (`tests/agents/pipecat_echo.py`) that
//! echoes what it hears. The caller must hear its own signal back through the agent, the
//! bot's own hang-up must end the call, and the call record must say so.
//!
//! With Pipecat's `TwilioFrameSerializer` the bot hangs up through vca-sip's
//! Twilio-compatible REST call (`POST /2010-04-01/Accounts/{accountSid}/Calls/{callSid}.json`),
//! which ends the call with a BYE; with its `ExotelFrameSerializer` it closes its stream.

#![allow(clippy::disallowed_methods)] // deadlines on real processes and the real binary

mod common;

use std::time::Duration;

use common::agent::EchoBot;
use common::baresip::{self, Baresip, PLAIN_ACCOUNT, RATE, best_lag, noise_bursts, to_f64};
use common::calls::CallEnv;
use common::sipp::scenario;
use common::{Backend, TestServer};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::time::{Instant, sleep};
use vca_sip::targets::TargetPolicy;

/// The profile's stream token: the bot's password for the REST hang-up.
const TOKEN: &str = "stream-token-0123456789";

/// Length of the caller's source file: longer than any call here.
const SOURCE_SECONDS: usize = 20;

/// How long after its `start` the bot ends the call.
const BOT_TALKS: Duration = Duration::from_secs(4);

const SEED: u32 = 0x0a6e_4701;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twilio_pipecat_agent_echoes_the_caller_and_hangs_up_through_the_rest_api() {
    let _heavy = common::heavy::one_at_a_time();
    let env = CallEnv::start(Backend::Sqlite, allow_loopback_agents).await;
    let bot = tokio::task::block_in_place(|| EchoBot::twilio(BOT_TALKS, &env.s.base, TOKEN));
    stream_profile(&env, &bot.url(), "twilio").await;

    let (call, mut bot, received) = call_the_agent(&env, bot).await;

    // The bot heard who called, in Twilio's shape.
    let started = tokio::task::block_in_place(|| bot.wait_for("started", Duration::ZERO));
    assert_eq!(started["account_sid"], env.tenant.as_str(), "{started}");
    assert_eq!(started["call_sid"], call["id"], "{started}");
    let custom = &started["custom_parameters"];
    assert_eq!(custom["tenant_id"], env.tenant.as_str(), "{started}");
    assert_eq!(custom["call_id"], call["id"], "{started}");
    assert_eq!(custom["phone_number_id"], env.number.as_str(), "{started}");
    assert_eq!(custom["to"], "+919876543210", "{started}");
    assert_eq!(custom["called_raw"], "09876543210", "{started}");
    assert_eq!(custom["greeting"], "namaste", "{started}");
    // Its hang-up reached vca-sip and was answered 200.
    let hangup = tokio::task::block_in_place(|| bot.wait_for("hangup", Duration::from_secs(5)));
    assert_eq!(hangup["status"], 200, "{hangup}");

    assert_echo(&received);
    assert_eq!(call["status"], "ended", "{call}");
    assert_eq!(call["hangup_cause"], "agent_hangup", "{call}");
    assert_eq!(call["sip_status"], 200, "{call}");
    let kinds = event_kinds(&call);
    for kind in ["agent_connecting", "agent_connected", "answered", "ended"] {
        assert!(kinds.contains(&kind), "no {kind} event: {call}");
    }
    let ended = call["events"]
        .as_array()
        .and_then(|events| events.iter().find(|e| e["kind"] == "ended"))
        .expect("an ended event");
    // The bot posts its hang-up (answered 200 above) and then closes its stream: whichever
    // reaches the call first ends it, as the agent's hang-up either way.
    let reason = ended["detail"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("REST API") || reason == "the agent hung up",
        "the call was not ended by the agent: {ended}"
    );
    // The BYE and the bot's own close race: the stream ends as either.
    assert_streams_gone(&env.s, &["hangup", "agent_hangup"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exotel_pipecat_agent_echoes_the_caller_and_hangs_up_by_closing_its_stream() {
    let _heavy = common::heavy::one_at_a_time();
    let env = CallEnv::start(Backend::Sqlite, allow_loopback_agents).await;
    let bot = tokio::task::block_in_place(|| EchoBot::exotel(BOT_TALKS));
    stream_profile(&env, &bot.url(), "exotel").await;

    let (call, mut bot, received) = call_the_agent(&env, bot).await;

    let started = tokio::task::block_in_place(|| bot.wait_for("started", Duration::ZERO));
    assert_eq!(started["call_sid"], call["id"], "{started}");
    assert_eq!(
        started["custom_parameters"]["greeting"], "namaste",
        "{started}"
    );
    // Every note of the call is in once the bot says it ended.
    tokio::task::block_in_place(|| bot.wait_for("ended", Duration::from_secs(5)));
    assert!(
        bot.seen.iter().all(|n| n["event"] != "hangup"),
        "an Exotel bot made a REST hang-up: {:?}",
        bot.seen
    );
    assert_echo(&received);
    assert_eq!(call["status"], "ended", "{call}");
    assert_eq!(call["hangup_cause"], "agent_hangup", "{call}");
    assert_streams_gone(&env.s, &["agent_hangup"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_cannot_be_reached_gets_the_caller_480_with_cause_20() {
    let _heavy = common::heavy::one_at_a_time();
    let env = CallEnv::start(Backend::Sqlite, allow_loopback_agents).await;
    // A port that was free a moment ago: nothing listens there.
    let nobody = baresip::free_tcp_port();
    stream_profile(&env, &format!("ws://{nobody}/ws"), "twilio").await;
    let (closed, log) = refused_call(&env).await;
    assert_eq!(closed["param"], "480 Temporarily Unavailable", "{closed}");
    assert!(
        log.contains("SIP/2.0 480"),
        "no 480 reached the caller:\n{log}"
    );
    assert!(
        log.contains("Reason: Q.850;cause=20"),
        "the 480 carries no Q.850 cause 20:\n{log}"
    );
    let call = finished_call(&env.s, &env.tenant).await;
    assert_streams_gone(&env.s, &["agent_unreachable"]).await;
    assert_eq!(call["status"], "failed", "{call}");
    assert_eq!(call["sip_status"], 480, "{call}");
    assert_eq!(call["q850_cause"], 20, "{call}");
    assert_eq!(call["hangup_cause"], "agent_unreachable", "{call}");
    assert!(event_kinds(&call).contains(&"agent_unreachable"), "{call}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wss_agent_under_a_private_ca_is_reached_with_the_profiles_ca() {
    let _heavy = common::heavy::one_at_a_time();
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = common::pki::Ca::new("agent test CA");
    let files = ca.server("agent").write(dir.path(), "agent");
    let env = CallEnv::start(Backend::Sqlite, allow_loopback_agents).await;
    let bot = tokio::task::block_in_place(|| {
        EchoBot::twilio_tls(BOT_TALKS, &env.s.base, TOKEN, (&files.0, &files.1))
    });
    assert!(bot.url().starts_with("wss://"), "{}", bot.url());
    stream_profile_with(&env, &bot.url(), "twilio", Some(ca.pem())).await;

    let (call, _bot, received) = call_the_agent(&env, bot).await;
    assert_echo(&received);
    assert_eq!(call["hangup_cause"], "agent_hangup", "{call}");
    assert!(event_kinds(&call).contains(&"agent_connected"), "{call}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wss_agent_whose_certificate_does_not_verify_gets_the_caller_480() {
    let _heavy = common::heavy::one_at_a_time();
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = common::pki::Ca::new("agent test CA");
    let files = ca.server("agent").write(dir.path(), "agent");
    let env = CallEnv::start(Backend::Sqlite, allow_loopback_agents).await;
    let bot = tokio::task::block_in_place(|| {
        EchoBot::twilio_tls(BOT_TALKS, &env.s.base, TOKEN, (&files.0, &files.1))
    });
    // The profile does not name the CA: the certificate does not verify.
    stream_profile(&env, &bot.url(), "twilio").await;
    let (closed, _) = refused_call(&env).await;
    assert_eq!(closed["param"], "480 Temporarily Unavailable", "{closed}");
    let call = finished_call(&env.s, &env.tenant).await;
    assert_eq!(call["hangup_cause"], "agent_unreachable", "{call}");
    assert_eq!(call["q850_cause"], 20, "{call}");
    let reason = call["events"]
        .as_array()
        .and_then(|events| events.iter().find(|e| e["kind"] == "agent_unreachable"))
        .map(|e| e["detail"]["reason"].to_string())
        .unwrap_or_default();
    assert!(
        reason.to_lowercase().contains("certificate"),
        "the reason does not name the certificate: {reason}"
    );
    drop(bot);
}

/// Tests run their agents on loopback, which tenants' targets may not reach by default.
fn allow_loopback_agents(config: &mut vca_sip::config::Config) {
    config.target_policy = TargetPolicy::AllowPrivate;
}

/// Makes the tenant's default AI profile a stream to `url` in `protocol`.
async fn stream_profile(env: &CallEnv, url: &str, protocol: &str) {
    stream_profile_with(env, url, protocol, None).await;
}

/// [`stream_profile`], trusting `ca_pem` for a `wss://` agent.
async fn stream_profile_with(env: &CallEnv, url: &str, protocol: &str, ca_pem: Option<String>) {
    stream_profile_recorded(env, url, protocol, ca_pem, false).await;
}

/// [`stream_profile_with`], its calls recorded when `record`.
async fn stream_profile_recorded(
    env: &CallEnv,
    url: &str,
    protocol: &str,
    ca_pem: Option<String>,
    record: bool,
) {
    let (status, profile) = env
        .s
        .admin_call(
            Method::POST,
            &format!("/api/tenants/{}/ai-profiles", env.tenant),
            Some(json!({
                "name": "Echo agent",
                "role": "receptionist",
                "system_prompt": "Repeat what you hear.",
                "is_default": true,
                "media_target": "stream",
                "stream_url": url,
                "stream_protocol": protocol,
                "stream_auth_token": TOKEN,
                "stream_parameters": {"greeting": "namaste"},
                "stream_ca_pem": ca_pem,
                "record": record,
            })),
        )
        .await;
    assert_eq!(status, 201, "{profile}");
}

/// baresip calls the number with a noise signal as its voice and stays on the line until
/// the server ends the call (the agent's hang-up). Returns the finished call record with
/// its events, the bot, and what baresip heard.
async fn call_the_agent(env: &CallEnv, bot: EchoBot) -> (Value, EchoBot, Vec<i16>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("source.wav");
    let sent = noise_bursts(SEED, SOURCE_SECONDS * RATE);
    std::fs::write(&source, baresip::wav_bytes(&sent)).expect("write source WAV");
    let mut phone = Baresip::start(&baresip::program(), dir.path(), &source, PLAIN_ACCOUNT).await;
    phone.dial(&format!("sip:09876543210@{}", env.udp())).await;
    let established = phone
        .ctrl
        .event("CALL_ESTABLISHED", Duration::from_secs(10))
        .await;
    println!("established: {established}");
    // The agent ends the call: baresip never hangs up here.
    let closed = phone
        .ctrl
        .event("CALL_CLOSED", BOT_TALKS + Duration::from_secs(10))
        .await;
    println!("closed: {closed}");
    phone.quit().await;
    let log = phone.log();
    assert!(
        log.contains("BYE sip:"),
        "the server sent baresip no BYE:\n{log}"
    );
    let received = phone.recording("dec");
    let call = finished_call(&env.s, &env.tenant).await;
    (call, bot, received)
}

/// baresip calls the number and the call is refused before it is answered: its
/// `CALL_CLOSED` event and its log.
async fn refused_call(env: &CallEnv) -> (Value, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("source.wav");
    std::fs::write(&source, baresip::wav_bytes(&noise_bursts(SEED, 4 * RATE)))
        .expect("write source WAV");
    let mut phone = Baresip::start(&baresip::program(), dir.path(), &source, PLAIN_ACCOUNT).await;
    phone.dial(&format!("sip:09876543210@{}", env.udp())).await;
    let closed = phone
        .ctrl
        .event("CALL_CLOSED", Duration::from_secs(10))
        .await;
    println!("closed: {closed}");
    phone.quit().await;
    (closed, phone.log())
}

/// What the caller heard carries what it said (echoed by the agent).
fn assert_echo(received: &[i16]) {
    let secs = received.len() as f64 / RATE as f64;
    println!("received {} samples ({secs:.2} s)", received.len());
    assert!(
        secs >= 2.0,
        "the caller heard only {secs:.2} s of the agent"
    );
    let sent = to_f64(&noise_bursts(SEED, SOURCE_SECONDS * RATE));
    let peak = best_lag(&sent, &to_f64(received));
    println!(
        "echo through the agent: lag {} samples ({:.1} ms), coefficient {:.4}",
        peak.lag,
        peak.lag as f64 * 1000.0 / RATE as f64,
        peak.coefficient
    );
    assert!(
        peak.coefficient > 0.8,
        "the caller did not hear its own signal back through the agent: {peak:?}"
    );
    let control = best_lag(
        &to_f64(&noise_bursts(SEED ^ 0xffff, SOURCE_SECONDS * RATE)),
        &to_f64(received),
    );
    assert!(
        control.coefficient.abs() < 0.2,
        "an unrelated signal matches what the caller heard: {control:?}"
    );
}

/// Once the calls are over no agent stream is left, and an end as one of `ends` was counted
/// (the metrics are the process's, so earlier tests' ends are in the counts too).
async fn assert_streams_gone(s: &TestServer, ends: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let metrics = s.metrics().await;
        let live = metric(&metrics, "vca_sip_agent_streams");
        let ended: f64 = ends
            .iter()
            .filter_map(|end| {
                metric(
                    &metrics,
                    &format!("vca_sip_agent_stream_ends_total{{end=\"{end}\"}}"),
                )
            })
            .sum();
        if live == Some(0.0) && ended >= 1.0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "agent streams live {live:?}, ended as {ends:?} {ended}:\n{metrics}"
        );
        sleep(Duration::from_millis(50)).await;
    }
}

/// The value of the sample `name` (with its labels, as printed) in a Prometheus text page.
fn metric(page: &str, name: &str) -> Option<f64> {
    page.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

fn event_kinds(call: &Value) -> Vec<&str> {
    call["events"]
        .as_array()
        .map(|events| events.iter().filter_map(|e| e["kind"].as_str()).collect())
        .unwrap_or_default()
}

/// The tenant's one call, with its events, once it has a final status.
async fn finished_call(s: &TestServer, tenant: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, list) = s
            .admin_call(Method::GET, &format!("/api/tenants/{tenant}/calls"), None)
            .await;
        assert_eq!(status, 200, "{list}");
        let calls = list["items"].as_array().cloned().unwrap_or_default();
        if let Some(call) = calls
            .iter()
            .find(|c| c["status"] == "ended" || c["status"] == "failed")
        {
            assert_eq!(calls.len(), 1, "exactly one call: {calls:#?}");
            let id = call["id"].as_str().expect("call id");
            let (status, call) = s
                .admin_call(
                    Method::GET,
                    &format!("/api/tenants/{tenant}/calls/{id}"),
                    None,
                )
                .await;
            assert_eq!(status, 200, "{call}");
            println!("call record: {call}");
            return call;
        }
        assert!(
            Instant::now() < deadline,
            "no final call record within 5 s: {calls:#?}"
        );
        sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_keys_reach_the_agent_from_rfc_4733_events_and_sip_info() {
    let _heavy = common::heavy::one_at_a_time();
    let env = CallEnv::start(Backend::Sqlite, allow_loopback_agents).await;
    let mut bot = tokio::task::block_in_place(|| {
        EchoBot::twilio(Duration::from_secs(60), &env.s.base, TOKEN)
    });
    stream_profile(&env, &bot.url(), "twilio").await;

    // sipp presses 1 as telephone-events, 9 as application/dtmf-relay and # as
    // application/dtmf, then hangs up.
    let mut sipp = env.sipp(scenario("dtmf.xml"), "udp", &["09876543210;sipp"]);
    sipp.pause_ms = 500;
    let run = sipp.run().await;
    assert!(run.succeeded(), "{}\n{}", run.screen, run.messages);

    tokio::task::block_in_place(|| bot.wait_for("ended", Duration::from_secs(10)));
    let digits: Vec<&str> = bot
        .seen
        .iter()
        .filter(|n| n["event"] == "dtmf")
        .filter_map(|n| n["digit"].as_str())
        .collect();
    assert_eq!(digits, ["1", "9", "#"], "the agent's notes: {:?}", bot.seen);

    let call = finished_call(&env.s, &env.tenant).await;
    assert_eq!(call["hangup_cause"], "caller_bye", "{call}");
    let recorded: Vec<&str> = call["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter(|e| e["kind"] == "dtmf")
                .filter_map(|e| e["detail"]["digit"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(recorded, ["1", "9", "#"], "{call}");
}

/// The call's record once its recording is no longer `recording` (it is finished after the
/// call's media ended).
async fn settled_recording(s: &TestServer, tenant: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, call) = s
            .admin_call(
                Method::GET,
                &format!("/api/tenants/{tenant}/calls/{id}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{call}");
        if call["recording"]["status"] != "recording" {
            return call;
        }
        assert!(
            Instant::now() < deadline,
            "the recording is not finished: {call}"
        );
        sleep(Duration::from_millis(50)).await;
    }
}

/// The two channels of a stereo 16-bit WAV, after checking its header says so.
fn stereo_channels(wav: &[u8]) -> (Vec<i16>, Vec<i16>) {
    assert!(wav.len() > 44, "{} bytes", wav.len());
    assert_eq!(&wav[0..4], b"RIFF");
    assert_eq!(&wav[8..16], b"WAVEfmt ");
    let u16_at = |i: usize| u16::from_le_bytes([wav[i], wav[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes([wav[i], wav[i + 1], wav[i + 2], wav[i + 3]]);
    assert_eq!(
        (u16_at(20), u16_at(22), u32_at(24), u16_at(34)),
        (1, 2, 8000, 16)
    );
    assert_eq!(&wav[36..40], b"data");
    assert_eq!(
        u32_at(4) as usize,
        wav.len() - 8,
        "the RIFF size is patched"
    );
    assert_eq!(
        u32_at(40) as usize,
        wav.len() - 44,
        "the data size is patched"
    );
    let samples: Vec<i16> = wav[44..]
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let left = samples.iter().step_by(2).copied().collect();
    let right = samples.iter().skip(1).step_by(2).copied().collect();
    (left, right)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_call_is_a_stereo_wav_of_the_caller_and_the_agent_until_deleted() {
    let _heavy = common::heavy::one_at_a_time();
    let env = CallEnv::start(Backend::Sqlite, allow_loopback_agents).await;
    let bot = tokio::task::block_in_place(|| EchoBot::exotel(BOT_TALKS));
    stream_profile_recorded(&env, &bot.url(), "exotel", None, true).await;

    let (call, _bot, received) = call_the_agent(&env, bot).await;
    assert_echo(&received);
    assert_eq!(call["hangup_cause"], "agent_hangup", "{call}");
    let id = call["id"].as_str().expect("call id");
    let call = settled_recording(&env.s, &env.tenant, id).await;
    let recording = &call["recording"];
    assert_eq!(recording["status"], "ready", "{call}");
    assert!(event_kinds(&call).contains(&"recording_started"), "{call}");

    let path = format!("/api/tenants/{}/calls/{id}/recording", env.tenant);
    let url = format!("{}{path}", env.s.base);
    // The tenant's own key reads it, as the admin does.
    let key = env.s.key(&env.tenant).await;
    let response = env
        .s
        .client
        .get(&url)
        .bearer_auth(&key)
        .send()
        .await
        .expect("GET recording");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "audio/wav");
    let length: u64 = response.headers()["content-length"]
        .to_str()
        .expect("text")
        .parse()
        .expect("a number");
    let wav = response.bytes().await.expect("body");
    assert_eq!(wav.len() as u64, length);
    assert_eq!(recording["bytes"], length, "{call}");
    let (left, right) = stereo_channels(&wav);
    let ms = left.len() as i64 * 1000 / RATE as i64;
    assert_eq!(recording["duration_ms"], ms, "{call}");
    assert!(ms >= 3000, "a {ms} ms recording of a call the bot held 4 s");

    // Left: what the caller sent. Right: what the agent sent back, as the caller heard it.
    let sent = to_f64(&noise_bursts(SEED, SOURCE_SECONDS * RATE));
    let caller = best_lag(&sent, &to_f64(&left));
    println!("caller on the left: {caller:?}");
    assert!(caller.coefficient > 0.8, "left: {caller:?}");
    let agent = best_lag(&to_f64(&right), &to_f64(&received));
    println!("agent on the right: {agent:?}");
    assert!(agent.coefficient > 0.8, "right: {agent:?}");
    // The bot echoes: the caller's signal is on the right too, but later than on the left
    // by the round trip through the agent.
    let echo = best_lag(&sent, &to_f64(&right));
    println!("the echo on the right: {echo:?}");
    assert!(
        echo.lag < caller.lag,
        "the right channel is not the agent's echo of the left: {echo:?} {caller:?}"
    );

    // Another tenant's key finds nothing.
    let other = env.s.tenant("Other").await;
    let other_key = env.s.key(&other).await;
    let (status, _) = env.s.call(Method::GET, &path, &other_key, None).await;
    assert_eq!(status, 404);

    let file = env
        .s
        .data_dir()
        .join("recordings")
        .join(&env.tenant)
        .join(format!("{id}.wav"));
    assert!(file.exists(), "{}", file.display());
    let (status, body) = env.s.admin_call(Method::DELETE, &path, None).await;
    assert_eq!(status, 204, "{body}");
    assert!(!file.exists(), "the file is gone");
    let (status, problem) = env.s.admin_call(Method::GET, &path, None).await;
    assert_eq!(status, 404, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("deleted"),
        "{problem}"
    );
    let (status, _) = env.s.admin_call(Method::DELETE, &path, None).await;
    assert_eq!(status, 404);
    let (_, call) = env
        .s
        .admin_call(
            Method::GET,
            &format!("/api/tenants/{}/calls/{id}", env.tenant),
            None,
        )
        .await;
    assert_eq!(call["recording"]["status"], "deleted", "{call}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_recordings_dir_fails_the_recording_and_not_the_call() {
    let _heavy = common::heavy::one_at_a_time();
    // A regular file where a folder of the path should be: no one, root included, can
    // create the recordings folder under it.
    let dir = tempfile::tempdir().expect("temp dir");
    let blocker = dir.path().join("not-a-folder");
    std::fs::write(&blocker, b"a file").expect("write the file");
    let recordings = blocker.join("recordings");
    let env = CallEnv::start(Backend::Sqlite, |config| {
        allow_loopback_agents(config);
        config.recordings_dir = recordings;
    })
    .await;
    let bot = tokio::task::block_in_place(|| EchoBot::exotel(BOT_TALKS));
    stream_profile_recorded(&env, &bot.url(), "exotel", None, true).await;

    let (call, _bot, received) = call_the_agent(&env, bot).await;
    // The call was answered and ended as any other.
    assert_echo(&received);
    assert_eq!(call["status"], "ended", "{call}");
    assert_eq!(call["hangup_cause"], "agent_hangup", "{call}");
    let id = call["id"].as_str().expect("call id");
    let call = settled_recording(&env.s, &env.tenant, id).await;
    assert_eq!(call["recording"]["status"], "failed", "{call}");
    let error = call["recording"]["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("unwritable"), "{call}");
    let failed = call["events"]
        .as_array()
        .and_then(|events| events.iter().find(|e| e["kind"] == "recording_failed"))
        .unwrap_or_else(|| panic!("no recording_failed event: {call}"));
    assert_eq!(failed["detail"]["reason"], "unwritable", "{failed}");
    let counted = metric(
        &env.s.metrics().await,
        "vca_sip_recordings_failed_total{reason=\"unwritable\"}",
    );
    assert!(counted >= Some(1.0), "{counted:?}");
    let path = format!("/api/tenants/{}/calls/{id}/recording", env.tenant);
    let (status, problem) = env.s.admin_call(Method::GET, &path, None).await;
    assert_eq!(status, 404, "{problem}");
    assert_eq!(std::fs::read(&blocker).expect("the file"), b"a file");
}
