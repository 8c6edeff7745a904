//! Browsers call tenants' numbers through the WebRTC offer endpoint: a real headless
//! Chromium (Debian's `chromium`, driven by Playwright from the agents' virtualenv) and the
//! real `vca-sip` binary, together in a network namespace of the test's own so that nothing
//! leaves loopback. `tests/browser/echo_call.py` does the browser's part and reports what it
//! saw; the assertions are here. The agent is the Pipecat echo bot of `tests/agents/`.

mod common;

use std::process::Command;

use serde_json::Value;

use common::agent::python;
use common::heavy;
use common::process::BIN;

/// Runs the browser driver and returns its report.
fn browser_report(dir: &std::path::Path) -> Value {
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "the WebRTC tests need Debian's chromium (./scripts/test installs it)"
    );
    let script =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser/echo_call.py");
    let output = Command::new("unshare")
        .arg("-n")
        .arg(python())
        .arg(script)
        .arg("--server")
        .arg(BIN)
        .arg("--dir")
        .arg(dir)
        .output()
        .expect("run unshare and the browser driver");
    let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
    assert!(
        output.status.success(),
        "the browser driver failed: {}\n{}\nserver log:\n{log}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "the driver's report is not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

#[test]
fn a_browser_calls_an_echo_number_hears_itself_and_hangs_up() {
    let _heavy = heavy::one_at_a_time();
    let dir = tempfile::tempdir().expect("a temp dir");
    let report = browser_report(dir.path());

    // 1. Answered, connected, the caller's audio back, hung up through the API.
    let first = &report["first"];
    assert_eq!(first["status"], 201, "{first}");
    assert!(first["answer_has_ice_lite"].as_bool().unwrap_or(false));
    let location = first["location"].as_str().expect("a Location");
    assert!(location.contains("/webrtc/sessions/"), "{location}");
    assert!(
        first["states"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s == "connected")),
        "{first}"
    );
    let received = first["inbound"]["packetsReceived"].as_u64().unwrap_or(0);
    assert!(received >= 200, "{received} packets back in 5 s");
    assert!(first["inbound"]["totalAudioEnergy"].as_f64().unwrap_or(0.0) > 0.0);
    assert_heard_itself(&first["windows"]);
    assert_eq!(first["live_status"], "answered");
    assert_eq!(first["delete"], 204);
    assert_eq!(first["delete_again"], 404);
    let record = &first["record"];
    assert_eq!(record["status"], "ended", "{record}");
    assert_eq!(record["hangup_cause"], "server_bye");
    assert_eq!(record["transport"], "webrtc");
    assert_eq!(record["codec"], "PCMU");
    assert_eq!(record["caller"], "anonymous");
    assert_eq!(record["called"], "+919876543210");
    assert_eq!(record["called_raw"], "9876543210");
    assert!(
        record["remote_addr"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{record}"
    );
    assert_eq!(event_kinds(record), ["initiated", "answered", "ended"]);

    // 2. The browser closing its peer connection ends the call as the browser's hang-up.
    let second = &report["second"];
    assert_eq!(second["status"], 201);
    assert_eq!(second["record"]["status"], "ended", "{second}");
    assert_eq!(second["record"]["hangup_cause"], "browser_hangup");

    // 3. A number streamed to a Pipecat bot: the browser hears itself through the agent,
    // whose own hang-up (Twilio's REST call) ends the call.
    let agent = &report["agent"];
    assert_eq!(agent["status"], 201, "{agent}");
    assert_heard_itself(&agent["windows"]);
    let record = &agent["record"];
    assert_eq!(record["status"], "ended", "{record}");
    assert_eq!(record["hangup_cause"], "agent_hangup", "{record}");
    assert_eq!(
        event_kinds(record),
        [
            "initiated",
            "agent_connecting",
            "agent_connected",
            "answered",
            "ended"
        ]
    );
    let bot = agent["bot"].as_array().expect("the bot's notes");
    let started = bot
        .iter()
        .find(|n| n["event"] == "started")
        .expect("the bot saw start");
    assert_eq!(started["call_sid"], record["id"]);
    assert_eq!(started["account_sid"], record["tenant_id"]);
    assert_eq!(started["custom_parameters"]["from"], "anonymous");
    assert_eq!(started["custom_parameters"]["to"], "+919876543210");
    assert!(
        bot.iter()
            .any(|n| n["event"] == "hangup" && n["status"] == 200),
        "{bot:?}"
    );
    assert_eq!(agent["unreachable"][0], 502, "{}", agent["unreachable"]);
    assert_eq!(
        agent["unreachable"][1]["type"],
        "/problems/agent-unreachable"
    );
    let unreachable = &agent["unreachable_record"];
    assert_eq!(unreachable["status"], "failed", "{unreachable}");
    assert_eq!(unreachable["hangup_cause"], "agent_unreachable");
    assert_eq!(unreachable["sip_status"], 480);
    assert_eq!(unreachable["q850_cause"], 20);

    // 4. Candidates trickled after the offer, as JSON and as WHIP's PATCH; WHIP answers
    // with the SDP itself.
    for mode in ["json-trickle", "whip"] {
        let call = &report[mode];
        assert_eq!(call["status"], 201, "{mode}: {call}");
        assert_eq!(call["offer_had_candidates"], false, "{mode}");
        let trickled = call["trickled"].as_array().expect("trickle statuses");
        assert!(
            !trickled.is_empty() && trickled.iter().all(|s| s == 204),
            "{mode}: {call}"
        );
        assert_heard_itself_briefly(&call["windows"]);
        assert_eq!(call["delete"], 204);
        assert_eq!(
            call["record"]["hangup_cause"], "server_bye",
            "{mode}: {call}"
        );
    }
    assert_eq!(report["whip"]["content_type"], "application/sdp");
    let token = &report["token"];
    assert_eq!(token["create"], 201, "{token}");
    assert_eq!(
        token["call"], 201,
        "a click-to-call token places its call: {token}"
    );
    assert!(token["packets"].as_u64().unwrap_or(0) > 20, "{token}");
    assert_eq!(token["delete"], 204);
    assert_eq!(token["other_number"][0], 403, "{token}");
    assert_eq!(token["forged"][0], 401, "{token}");
    assert_eq!(token["bad_ttl"], 400);
    assert_eq!(token["foreign_number"], 400);
    assert_eq!(report["bad_candidate"], 404, "a candidate for no session");
    assert_eq!(report["garbage_candidate"][0], 400);
    assert_eq!(report["garbage_candidate"][1]["field"], "candidate");

    // 5. Refusals, each with its problem.
    let refused = &report["refused"];
    let status = |name: &str| refused[name][0].as_u64().unwrap_or(0);
    assert_eq!(status("no_g711"), 400);
    assert_eq!(refused["no_g711"][1]["type"], "/problems/no-common-codec");
    assert_eq!(refused["no_g711"][1]["field"], "sdp");
    for name in ["not_sdp", "no_fingerprint"] {
        assert_eq!(status(name), 400, "{name}: {}", refused[name]);
        assert_eq!(refused[name][1]["field"], "sdp", "{name}");
    }
    assert_eq!(status("not_json"), 400);
    assert_eq!(status("unknown_number"), 404);
    assert_eq!(status("no_credentials"), 401);
    assert_eq!(
        status("inactive_number"),
        403,
        "{}",
        refused["inactive_number"]
    );
    assert_eq!(
        status("tenant_at_limit"),
        429,
        "{}",
        refused["tenant_at_limit"]
    );

    // Nothing left behind.
    let gauges = &report["gauges"];
    assert_eq!(gauges["vca_calls_live"], 0.0, "{gauges}");
    assert_eq!(gauges["vca_sip_webrtc_sessions"], 0.0, "{gauges}");
}

/// The kinds of a call record's events, in order.
fn event_kinds(record: &Value) -> Vec<&str> {
    record["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect()
}

/// What the page heard is what it sent: median correlation of the half-second windows at
/// least 0.8, each well-correlated window under 300 ms late.
fn assert_heard_itself(windows: &Value) {
    assert_echo(windows, 6);
}

/// As [`assert_heard_itself`], for a shorter call.
fn assert_heard_itself_briefly(windows: &Value) {
    assert_echo(windows, 3);
}

fn assert_echo(windows: &Value, at_least: usize) {
    let windows = windows.as_array().expect("correlation windows");
    assert!(windows.len() >= at_least, "{windows:?}");
    let mut corr: Vec<f64> = windows.iter().filter_map(|w| w["corr"].as_f64()).collect();
    corr.sort_by(f64::total_cmp);
    let median = corr[corr.len() / 2];
    assert!(
        median >= 0.8,
        "median echo correlation {median}: {windows:?}"
    );
    for w in windows.iter().filter(|w| w["corr"].as_f64() >= Some(0.8)) {
        let lag = w["lag_ms"].as_f64().unwrap_or(f64::MAX);
        assert!(lag < 300.0, "echo {lag} ms late: {windows:?}");
    }
}
