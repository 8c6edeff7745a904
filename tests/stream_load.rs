//! The stream load generators (`examples/stream_load`) on a few calls: the carrier
//! generator places 5 calls to a number whose AI profile streams to the agent simulator,
//! and every frame must reach the agent and come back, every mark be echoed but the ones
//! still playing at the hang-up, every clear turn the caller's audio silent, and the shards'
//! send-lateness histogram count the packets. The load script runs the same code as
//! separate processes for hundreds of calls.

#![allow(clippy::disallowed_methods)] // real calls in real time

#[allow(dead_code)]
#[path = "../examples/stream_load/agent.rs"]
mod agent;
#[allow(dead_code)]
#[path = "../examples/stream_load/carrier.rs"]
mod carrier;
mod common;
#[allow(dead_code)]
#[path = "../examples/stream_load/procstat.rs"]
mod procstat;
#[allow(dead_code)]
#[path = "../examples/stream_load/summary.rs"]
mod summary;

use std::time::Duration;

use common::Backend;
use common::calls::CallEnv;
use reqwest::Method;
use serde_json::json;
use vca_sip::targets::TargetPolicy;

const CALLS: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_streamed_calls_carry_every_frame_both_ways_and_echo_their_marks() {
    let _heavy = common::heavy::one_at_a_time();
    let env = CallEnv::start(Backend::Sqlite, |c| {
        c.target_policy = TargetPolicy::AllowPrivate;
    })
    .await;
    let listener = agent::bind("127.0.0.1:0").expect("agent listens");
    let port = listener.local_addr().expect("agent address").port();
    let (status, profile) = env
        .s
        .admin_call(
            Method::POST,
            &format!("/api/tenants/{}/ai-profiles", env.tenant),
            Some(json!({
                "name": "Load agent",
                "role": "receptionist",
                "system_prompt": "Echo.",
                "is_default": true,
                "media_target": "stream",
                "stream_url": format!("ws://127.0.0.1:{port}/ws"),
                "stream_protocol": "twilio",
            })),
        )
        .await;
    assert_eq!(status, 201, "{profile}");

    let agent_config = agent::AgentConfig {
        streams: CALLS,
        clear_after: Duration::from_secs(2),
        deadline: Duration::from_secs(30),
    };
    let agent = std::thread::spawn(move || agent::run(listener, agent_config));
    let http = env.s.base.trim_start_matches("http://").to_owned();
    let config = carrier::CarrierConfig {
        calls: CALLS,
        rate: 50.0,
        server: env.udp(),
        did: "09876543210".into(),
        settle: Duration::from_secs(1),
        steady: Duration::from_secs(3),
        server_pid: Some(std::process::id()),
        agent_pid: None,
        http: Some(http),
        answer_timeout: Duration::from_secs(10),
    };
    let carried = tokio::task::spawn_blocking(move || carrier::run(&config))
        .await
        .expect("carrier thread")
        .expect("carrier runs");
    let agent = tokio::task::spawn_blocking(move || agent.join())
        .await
        .expect("join")
        .expect("agent thread")
        .expect("agent runs");
    let s = summary::summarize(&carried, Some(&agent));
    print!("{}", summary::render(&s));

    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(
        (s.answered, s.failed, s.ended_by_server),
        (CALLS, 0, 0),
        "{s:?}"
    );
    assert_eq!(carried.hung_up, CALLS, "{s:?}");
    assert_eq!(agent.streams.len(), CALLS, "{agent:?}");
    // Every caller frame reached the agent, in order, and every frame of vca-sip's came.
    assert_eq!(
        (s.lost_to_agent, s.timestamp_gaps_to_agent, s.lost_to_caller),
        (0, 0, 0),
        "{s:?}"
    );
    for stream in &agent.streams {
        assert!(stream.from.starts_with("load"), "{stream:?}");
        assert_eq!(stream.first_chunk, Some(1), "{stream:?}");
        // About 4 s of calls: 200 frames, less the agent's connect.
        assert!(stream.media_frames >= 150, "{stream:?}");
        assert_eq!(stream.bad_messages, 0, "{stream:?}");
        assert!(stream.stopped, "no stop: {stream:?}");
        // Each mark came back but, at most, the one still queued at the hang-up.
        assert!(stream.marks_sent >= 3, "{stream:?}");
        assert!(
            stream.marks_echoed + 1 >= stream.marks_sent && stream.marks_unknown == 0,
            "{stream:?}"
        );
    }
    for call in &carried.per_call {
        assert!(call.received >= 150, "{call:?}");
        assert!(call.sent >= 150, "{call:?}");
    }
    // Every clear turned the caller's audio silent within the next slots.
    assert_eq!((s.clears, s.clears_without_silence), (CALLS, 0), "{s:?}");
    let worst = s.clear_to_silence_max_ms.expect("clear-to-silence");
    assert!(worst < 200.0, "{s:?}");
    // The shards counted the window's packets: about 50 a second a call.
    assert!(
        s.lateness_samples >= (CALLS * 50) as f64,
        "send lateness not counted: {s:?}"
    );
}
