//! The agent stream session on virtual time: every message of both dialects as JSON, the
//! pacing of the playout, marks, clear, the queue's cap and every refused input.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::*;
use crate::clock::origin;
use crate::media::bridge::Bridge;
use crate::media::echo::EchoLeg;
use crate::media::leg::{Frame, RtpMedia, StreamEvent};
use crate::media::rtp::{RtpHeader, Ssrc};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn config(dialect: Dialect) -> StreamConfig {
    let mut c = StreamConfig::new(dialect, "MZ0001", "tenant-7", "call-42");
    for (k, v) in [
        ("tenant_id", "tenant-7"),
        ("call_id", "call-42"),
        ("phone_number_id", "pn-3"),
        ("ai_profile_id", "ai-9"),
        ("from", "+33612345678"),
        ("to", "+33187654321"),
        ("called_raw", "0187654321"),
        ("voice", "warm \"quoted\""),
    ] {
        c.custom_parameters.insert(k.to_owned(), v.to_owned());
    }
    c
}

/// A session past its `connected` and `start`.
fn open(t0: Instant, dialect: Dialect) -> StreamSession {
    let mut s = StreamSession::new(t0, config(dialect));
    assert_eq!(messages(&mut s).len(), 2);
    s
}

fn messages(s: &mut StreamSession) -> Vec<Value> {
    let mut out = Vec::new();
    while let Some(m) = s.poll_message() {
        out.push(serde_json::from_str(m).unwrap_or_else(|e| panic!("{e}: {m}")));
    }
    out
}

fn events(s: &mut StreamSession) -> Vec<SessionEvent> {
    std::iter::from_fn(|| s.poll_stream_event()).collect()
}

fn tone(n: usize, seed: i16) -> Vec<i16> {
    (0..n)
        .map(|i| ((i as i32 * 997 + i32::from(seed) * 31) % 20_000 - 10_000) as i16)
        .collect()
}

fn frame_in(s: &mut StreamSession, now: Instant, ts: u32, samples: &[i16]) {
    s.handle_input(
        now,
        Input::Media(Media::Frame(Frame {
            timestamp: ts,
            samples,
        })),
    );
}

fn media_twilio(ulaw: &[u8]) -> String {
    json!({"event":"media","streamSid":"MZ0001","media":{"payload":STANDARD.encode(ulaw)}})
        .to_string()
}

fn media_exotel(pcm: &[i16]) -> String {
    let bytes: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
    json!({"event":"media","stream_sid":"MZ0001","media":{"payload":STANDARD.encode(bytes)}})
        .to_string()
}

fn mark(name: &str) -> String {
    json!({"event":"mark","streamSid":"MZ0001","mark":{"name":name}}).to_string()
}

const CLEAR: &str = r#"{"event":"clear","streamSid":"MZ0001"}"#;

/// Plays the slot due at `now` and returns its frame.
fn tick(s: &mut StreamSession, now: Instant) -> Vec<i16> {
    s.handle_timeout(now);
    match s.poll_media() {
        Some(Media::Frame(f)) => f.samples.to_vec(),
        other => panic!("no frame at {now:?}: {other:?}"),
    }
}

fn payload(m: &Value) -> Vec<u8> {
    STANDARD
        .decode(m["media"]["payload"].as_str().unwrap())
        .unwrap()
}

fn ulaw(samples: &[i16]) -> Vec<u8> {
    samples.iter().map(|&s| g711::linear_to_ulaw(s)).collect()
}

fn decoded(ulaw: &[u8]) -> Vec<i16> {
    ulaw.iter().map(|&c| g711::ulaw_to_linear(c)).collect()
}

// Messages of each dialect, exactly.

#[test]
fn twilio_connected_and_start() {
    let mut s = StreamSession::new(origin(), config(Dialect::Twilio));
    let m = messages(&mut s);
    assert_eq!(
        m[0],
        json!({"event":"connected","protocol":"Call","version":"1.0.0"})
    );
    assert_eq!(
        m[1],
        json!({
            "event": "start",
            "sequenceNumber": "1",
            "streamSid": "MZ0001",
            "start": {
                "streamSid": "MZ0001",
                "accountSid": "tenant-7",
                "callSid": "call-42",
                "tracks": ["inbound"],
                "customParameters": {
                    "tenant_id": "tenant-7",
                    "call_id": "call-42",
                    "phone_number_id": "pn-3",
                    "ai_profile_id": "ai-9",
                    "from": "+33612345678",
                    "to": "+33187654321",
                    "called_raw": "0187654321",
                    "voice": "warm \"quoted\"",
                },
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
        })
    );
    assert_eq!(m.len(), 2);
    assert_eq!(s.dialect(), Dialect::Twilio);
    assert_eq!(Dialect::default(), Dialect::Twilio);
}

#[test]
fn exotel_connected_and_start() {
    let mut s = StreamSession::new(origin(), config(Dialect::Exotel));
    let m = messages(&mut s);
    assert_eq!(m[0], json!({"event":"connected"}));
    assert_eq!(
        m[1],
        json!({
            "event": "start",
            "sequence_number": 1,
            "stream_sid": "MZ0001",
            "start": {
                "stream_sid": "MZ0001",
                "call_sid": "call-42",
                "account_sid": "tenant-7",
                "from": "+33612345678",
                "to": "+33187654321",
                "custom_parameters": {
                    "tenant_id": "tenant-7",
                    "call_id": "call-42",
                    "phone_number_id": "pn-3",
                    "ai_profile_id": "ai-9",
                    "from": "+33612345678",
                    "to": "+33187654321",
                    "called_raw": "0187654321",
                    "voice": "warm \"quoted\"",
                },
                "media_format": {"encoding": "base64", "sample_rate": "8000", "bit_rate": "128kbps"},
            },
        })
    );
    // Without from and to, the fields are there and empty.
    let mut bare = StreamSession::new(origin(), StreamConfig::new(Dialect::Exotel, "s", "a", "c"));
    let m = messages(&mut bare);
    assert_eq!(m[1]["start"]["from"], "");
    assert_eq!(m[1]["start"]["to"], "");
    assert_eq!(m[1]["start"]["custom_parameters"], json!({}));
}

#[test]
fn twilio_media_every_20_ms_of_caller_audio() {
    let t0 = origin();
    let mut s = open(t0, Dialect::Twilio);
    let mut sent = Vec::new();
    for i in 0..3u32 {
        let samples = tone(160, i as i16);
        frame_in(&mut s, t0 + ms(20) * i, 1000 + 160 * i, &samples);
        let m = messages(&mut s);
        assert_eq!(m.len(), 1);
        sent.push((m[0].clone(), samples));
    }
    for (i, (m, samples)) in sent.iter().enumerate() {
        let p = payload(m);
        assert_eq!(p.len(), 160);
        assert_eq!(p, ulaw(samples));
        let mut want = json!({
            "event": "media",
            "sequenceNumber": (2 + i).to_string(),
            "streamSid": "MZ0001",
            "media": {
                "track": "inbound",
                "chunk": (1 + i).to_string(),
                "timestamp": (20 * i).to_string(),
                "payload": "",
            },
        });
        want["media"]["payload"] = m["media"]["payload"].clone();
        assert_eq!(m, &want);
    }
    assert_eq!(s.stats().caller_frames, 3);
}

#[test]
fn exotel_media_is_little_endian_pcm_with_numbers() {
    let t0 = origin();
    let mut s = open(t0, Dialect::Exotel);
    let samples = tone(160, 3);
    frame_in(&mut s, t0 + ms(40), 0, &samples);
    frame_in(&mut s, t0 + ms(60), 160, &samples);
    let m = messages(&mut s);
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    for (i, m) in m.iter().enumerate() {
        assert_eq!(payload(m), bytes);
        let mut want = json!({
            "event": "media",
            "sequence_number": 2 + i,
            "stream_sid": "MZ0001",
            "media": {"chunk": 1 + i, "timestamp": (40 + 20 * i).to_string(), "payload": ""},
        });
        want["media"]["payload"] = m["media"]["payload"].clone();
        assert_eq!(m, &want);
    }
    assert_eq!(m.len(), 2);
}

#[test]
fn dtmf_in_both_dialects() {
    let t0 = origin();
    let mut s = open(t0, Dialect::Twilio);
    s.handle_dtmf(t0, '5', ms(160)).unwrap();
    s.handle_dtmf(t0, 'b', ms(100)).unwrap();
    assert_eq!(s.handle_dtmf(t0, 'x', ms(100)), Err(InvalidDigit('x')));
    assert_eq!(s.handle_dtmf(t0, 'E', ms(100)), Err(InvalidDigit('E')));
    let m = messages(&mut s);
    assert_eq!(
        m,
        vec![
            json!({"event":"dtmf","sequenceNumber":"2","streamSid":"MZ0001",
                   "dtmf":{"track":"inbound_track","digit":"5"}}),
            json!({"event":"dtmf","sequenceNumber":"3","streamSid":"MZ0001",
                   "dtmf":{"track":"inbound_track","digit":"B"}}),
        ]
    );
    let mut s = open(t0, Dialect::Exotel);
    for d in ['0', '9', '*', '#', 'A', 'D'] {
        s.handle_dtmf(t0, d, ms(240)).unwrap();
    }
    let m = messages(&mut s);
    assert_eq!(
        m[2],
        json!({"event":"dtmf","sequence_number":4,"stream_sid":"MZ0001",
               "dtmf":{"digit":"*","duration":"240"}})
    );
    let digits: Vec<&str> = m
        .iter()
        .map(|m| m["dtmf"]["digit"].as_str().unwrap())
        .collect();
    assert_eq!(digits, ["0", "9", "*", "#", "A", "D"]);
    assert_eq!(s.stats().dtmf_digits, 6);
}

#[test]
fn mark_echoes_in_both_dialects() {
    let t0 = origin();
    let mut s = open(t0, Dialect::Twilio);
    s.handle_message(t0, &mark("hello \"there\""));
    assert_eq!(
        messages(&mut s),
        vec![
            json!({"event":"mark","sequenceNumber":"2","streamSid":"MZ0001",
                    "mark":{"name":"hello \"there\""}})
        ]
    );
    let mut s = open(t0, Dialect::Exotel);
    s.handle_message(
        t0,
        r#"{"event":"mark","stream_sid":"MZ0001","mark":{"name":"m1"}}"#,
    );
    assert_eq!(
        messages(&mut s),
        vec![
            json!({"event":"mark","sequence_number":2,"stream_sid":"MZ0001","mark":{"name":"m1"}})
        ]
    );
}

#[test]
fn hang_up_sends_stop_then_closes_in_both_dialects() {
    let t0 = origin();
    for (dialect, want) in [
        (
            Dialect::Twilio,
            json!({"event":"stop","sequenceNumber":"2","streamSid":"MZ0001",
                   "stop":{"accountSid":"tenant-7","callSid":"call-42"}}),
        ),
        (
            Dialect::Exotel,
            json!({"event":"stop","sequence_number":2,"stream_sid":"MZ0001",
                   "stop":{"call_sid":"call-42","account_sid":"tenant-7","reason":"callended"}}),
        ),
    ] {
        let mut s = open(t0, dialect);
        s.hang_up(t0 + ms(5));
        assert_eq!(messages(&mut s), vec![want]);
        assert_eq!(
            events(&mut s),
            vec![SessionEvent::Close { code: CLOSE_NORMAL }]
        );
        assert!(s.is_closed());
        // Closed: a second hang-up, the caller's audio and digits, the agent's messages and
        // the socket closing send and report nothing.
        s.hang_up(t0 + ms(6));
        frame_in(&mut s, t0 + ms(20), 0, &[0; 160]);
        s.handle_dtmf(t0, '1', ms(100)).unwrap();
        s.handle_message(t0, &mark("late"));
        s.handle_close(t0, Some(1000));
        assert!(messages(&mut s).is_empty());
        assert!(events(&mut s).is_empty());
        let stats = s.stats();
        assert_eq!((stats.caller_dropped, stats.after_close), (2, 1));
        // The playout goes on with silence until the call drops the leg.
        assert_eq!(tick(&mut s, t0 + ms(20)), vec![0; 160]);
        assert!(s.poll_timeout().is_some());
    }
}

#[test]
fn sequence_numbers_count_every_message_after_connected() {
    let t0 = origin();
    let mut s = StreamSession::new(t0, config(Dialect::Twilio));
    frame_in(&mut s, t0, 0, &[1; 160]);
    s.handle_dtmf(t0, '1', ms(100)).unwrap();
    s.handle_message(t0, &mark("a"));
    frame_in(&mut s, t0 + ms(20), 160, &[1; 160]);
    s.hang_up(t0 + ms(20));
    let m = messages(&mut s);
    let kinds: Vec<&str> = m.iter().map(|m| m["event"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "connected",
            "start",
            "media",
            "dtmf",
            "mark",
            "media",
            "stop"
        ]
    );
    assert!(m[0].get("sequenceNumber").is_none());
    let seqs: Vec<&str> = m[1..]
        .iter()
        .map(|m| m["sequenceNumber"].as_str().unwrap())
        .collect();
    assert_eq!(seqs, ["1", "2", "3", "4", "5", "6"]);
    // Chunks count media messages only.
    assert_eq!(m[2]["media"]["chunk"], "1");
    assert_eq!(m[5]["media"]["chunk"], "2");
    assert_eq!(s.stats().messages_out, 7);
}

// The caller's side.

#[test]
fn caller_frames_of_other_lengths_are_re_framed() {
    let t0 = origin();
    let mut s = open(t0, Dialect::Twilio);
    let audio = tone(480, 1);
    // 10 ms frames, then one of 30 ms.
    for i in 0..3u32 {
        let part = &audio[80 * i as usize..80 * (i as usize + 1)];
        frame_in(&mut s, t0 + ms(10) * i, 80 * i, part);
    }
    frame_in(&mut s, t0 + ms(30), 240, &audio[240..]);
    let m = messages(&mut s);
    assert_eq!(m.len(), 3);
    for (i, m) in m.iter().enumerate() {
        assert_eq!(payload(m), ulaw(&audio[160 * i..160 * (i + 1)]));
        assert_eq!(m["media"]["timestamp"], (20 * i).to_string());
    }
}

#[test]
fn caller_timestamps_start_at_the_first_frames_arrival_and_follow_its_timeline() {
    let t0 = origin();
    let mut s = open(t0, Dialect::Twilio);
    frame_in(&mut s, t0 + ms(30), 5000, &[1; 160]);
    // Delivered late but continuous: placed by timestamp.
    frame_in(&mut s, t0 + ms(75), 5160, &[1; 160]);
    // 60 ms lost.
    frame_in(&mut s, t0 + ms(115), 5160 + 160 + 480, &[1; 160]);
    let ts: Vec<Value> = messages(&mut s)
        .iter()
        .map(|m| m["media"]["timestamp"].clone())
        .collect();
    assert_eq!(ts, ["30", "50", "130"]);
}

fn rtp(pt: Pt, ts: u32, stream: StreamEvent, payload: &[u8]) -> RtpMedia<'_> {
    RtpMedia {
        header: RtpHeader {
            marker: false,
            payload_type: pt,
            sequence_number: 1,
            timestamp: ts,
            ssrc: Ssrc(9),
        },
        stream,
        payload,
    }
}

#[test]
fn caller_g711_packets_are_decoded_and_telephone_events_counted() {
    let t0 = origin();
    let mut s = open(t0, Dialect::Twilio);
    let codes: Vec<u8> = (0..160u8)
        .map(|c| if c == 0x7F { 0x10 } else { c })
        .collect();
    s.handle_input(
        t0,
        Input::Media(Media::Rtp(rtp(Pt::PCMU, 0, StreamEvent::Start, &codes))),
    );
    // PCMU passes through unchanged (but for the negative zero, left out here).
    let m = messages(&mut s);
    assert_eq!(payload(&m[0]), codes);
    // PCMA becomes µ-law through linear.
    let alaw: Vec<u8> = (0..=255u8).cycle().skip(3).take(160).collect();
    s.handle_input(
        t0 + ms(20),
        Input::Media(Media::Rtp(rtp(Pt::PCMA, 160, StreamEvent::Continue, &alaw))),
    );
    let m = messages(&mut s);
    let want: Vec<u8> = alaw.iter().map(|&a| g711::alaw_to_ulaw(a)).collect();
    assert_eq!(payload(&m[0]), want);
    assert_eq!(m[0]["media"]["timestamp"], "20");
    // A 30 ms packet: one message now, the rest with the next packet.
    let long = vec![0xFFu8; 240];
    s.handle_input(
        t0 + ms(40),
        Input::Media(Media::Rtp(rtp(Pt::PCMU, 320, StreamEvent::Continue, &long))),
    );
    assert_eq!(messages(&mut s).len(), 1);
    s.handle_input(
        t0 + ms(70),
        Input::Media(Media::Rtp(rtp(Pt::PCMU, 560, StreamEvent::Continue, &long))),
    );
    let m = messages(&mut s);
    assert_eq!(m.len(), 2);
    assert_eq!(m[1]["media"]["timestamp"], "80");
    // RFC 4733 events are not audio.
    let event = Pt::new(101).unwrap();
    s.handle_input(
        t0,
        Input::Media(Media::Rtp(rtp(
            event,
            0,
            StreamEvent::Continue,
            &[5, 0x8a, 0, 160],
        ))),
    );
    assert!(messages(&mut s).is_empty());
    let stats = s.stats();
    assert_eq!((stats.caller_unsupported, stats.caller_frames), (1, 5));
    // Datagrams cannot reach the session.
    s.handle_input(
        t0,
        Input::Datagram(leg::Datagram {
            port: leg::Port::Rtp,
            src: "127.0.0.1:9".parse().unwrap(),
            data: &[0x80; 12],
        }),
    );
    assert!(messages(&mut s).is_empty());
    assert_eq!(s.poll_transmit(), None);
    assert_eq!(s.poll_event(), None);
}

// Playout.

#[test]
fn playout_is_one_frame_per_slot_silent_when_empty() {
    let t0 = origin();
    let mut s = open(t0, Dialect::Twilio);
    assert_eq!(s.poll_timeout(), Some(t0));
    assert_eq!(tick(&mut s, t0), vec![0; 160]);
    assert_eq!(s.poll_timeout(), Some(t0 + ms(20)));
    // Early: nothing.
    s.handle_timeout(t0 + ms(10));
    assert_eq!(s.poll_media(), None);
    let audio = tone(320, 5);
    s.handle_message(t0 + ms(10), &media_twilio(&ulaw(&audio)));
    assert_eq!(s.queued_audio(), ms(40));
    assert_eq!(tick(&mut s, t0 + ms(20)), decoded(&ulaw(&audio[..160])));
    assert_eq!(tick(&mut s, t0 + ms(40)), decoded(&ulaw(&audio[160..])));
    assert_eq!(tick(&mut s, t0 + ms(60)), vec![0; 160]);
    // Only one frame per tick.
    assert_eq!(s.poll_media(), None);
    let p = s.stats().playout;
    assert_eq!((p.audio_frames, p.silent_frames), (2, 2));
}

#[test]
fn late_ticks_skip_missed_slots_and_never_burst() {
    let t0 = origin();
    let mut s = open(t0, Dialect::Twilio);
    let audio = tone(160 * 10, 2);
    s.handle_message(t0, &media_twilio(&ulaw(&audio)));
    let mut stamps = Vec::new();
    let mut frames = Vec::new();
    // On time at 0 and 20 ms, then 53 ms late, then on time again.
    for at in [0, 20, 93, 100, 120] {
        s.handle_timeout(t0 + ms(at));
        let Some(Media::Frame(f)) = s.poll_media() else {
            panic!("no frame at {at} ms");
        };
        stamps.push(f.timestamp);
        frames.push(f.samples.to_vec());
        // Woken again at once: no second frame.
        s.handle_timeout(t0 + ms(at));
        assert_eq!(s.poll_media(), None);
    }
    // Slots 0, 1, 4, 5, 6: the late tick plays slot 4 and 2, 3 are skipped.
    assert_eq!(stamps, [0, 160, 640, 800, 960]);
    // The audio is not lost: it plays in order, delayed.
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f, &decoded(&ulaw(&audio[160 * i..160 * (i + 1)])));
    }
    assert_eq!(s.stats().playout.skipped_slots, 2);
    assert_eq!(s.poll_timeout(), Some(t0 + ms(140)));
}

#[test]
fn exotel_agent_pcm_is_played_as_sent() {
    let t0 = origin();
    let mut s = open(t0, Dialect::Exotel);
    let audio = tone(800, 4);
    s.handle_message(t0, &media_exotel(&audio));
    for i in 0..5 {
        assert_eq!(
            tick(&mut s, t0 + ms(20 * i as u64)),
            audio[160 * i..160 * (i + 1)]
        );
    }
}

#[test]
fn marks_are_echoed_in_order_as_their_audio_is_played() {
    let t0 = origin();
    let mut s = open(t0, Dialect::Twilio);
    // Nothing queued: echoed at once.
    s.handle_message(t0, &mark("first"));
    assert_eq!(messages(&mut s)[0]["mark"]["name"], "first");
    s.handle_message(t0, &media_twilio(&[0xFF; 320]));
    s.handle_message(t0, &mark("a"));
    s.handle_message(t0, &media_twilio(&[0xFF; 100]));
    s.handle_message(t0, &mark("b"));
    s.handle_message(t0, &mark("c"));
    assert!(messages(&mut s).is_empty());
    tick(&mut s, t0);
    assert!(messages(&mut s).is_empty());
    // The frame holding a's last samples is being sent: not yet.
    tick(&mut s, t0 + ms(20));
    assert!(messages(&mut s).is_empty());
    // It has played: a is echoed while b's 100 samples play.
    tick(&mut s, t0 + ms(40));
    let m = messages(&mut s);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0]["mark"]["name"], "a");
    // Then silence: b and c were played past.
    tick(&mut s, t0 + ms(60));
    let names: Vec<Value> = messages(&mut s)
        .iter()
        .map(|m| m["mark"]["name"].clone())
        .collect();
    assert_eq!(names, ["b", "c"]);
    assert_eq!(s.stats().marks_echoed, 4);
}

#[test]
fn clear_empties_the_queue_before_the_next_tick_and_echoes_pending_marks() {
    let t0 = origin();
    let mut s = open(t0, Dialect::Twilio);
    let audio = tone(1600, 6);
    s.handle_message(t0, &media_twilio(&ulaw(&audio[..800])));
    s.handle_message(t0, &mark("x"));
    s.handle_message(t0, &media_twilio(&ulaw(&audio[800..])));
    s.handle_message(t0, &mark("y"));
    assert_eq!(tick(&mut s, t0), decoded(&ulaw(&audio[..160])));
    s.handle_message(t0 + ms(5), CLEAR);
    let m = messages(&mut s);
    let names: Vec<Value> = m.iter().map(|m| m["mark"]["name"].clone()).collect();
    assert_eq!(names, ["x", "y"]);
    assert_eq!(m[0]["sequenceNumber"], "2");
    assert_eq!(m[1]["sequenceNumber"], "3");
    assert_eq!(
        events(&mut s),
        vec![SessionEvent::Cleared {
            dropped: ms(180),
            marks_echoed: 2
        }]
    );
    assert_eq!(s.queued_audio(), Duration::ZERO);
    assert_eq!(tick(&mut s, t0 + ms(20)), vec![0; 160]);
    // A clear with nothing queued is reported too.
    s.handle_message(t0 + ms(25), CLEAR);
    assert_eq!(
        events(&mut s),
        vec![SessionEvent::Cleared {
            dropped: Duration::ZERO,
            marks_echoed: 0
        }]
    );
    let stats = s.stats();
    assert_eq!((stats.clears, stats.playout.cleared_samples), (2, 1440));
}

#[test]
fn audio_at_twice_real_time_fills_the_queue_to_its_cap_then_is_dropped_and_counted() {
    let t0 = origin();
    let mut s = open(t0, Dialect::Twilio);
    // As Pipecat sends: 40 ms of audio every 20 ms, for 40 s.
    let chunk = media_twilio(&[0x55; 320]);
    let mut dropped_events = Duration::ZERO;
    for n in 0..2000u32 {
        let now = t0 + ms(20) * n;
        s.handle_message(now, &chunk);
        tick(&mut s, now);
        for e in events(&mut s) {
            match e {
                SessionEvent::AudioDropped { dropped } => dropped_events += dropped,
                other => panic!("{other:?}"),
            }
        }
        assert!(messages(&mut s).is_empty());
    }
    // Each round queues 320 samples and plays 160. Before round k's push 160 * k are
    // queued; 160 * k + 320 fits under the 240 000 of 30 s up to k = 1498. From round 1499
    // on, each push finds 239 840 queued and drops 160.
    let dropped = (2000 - 1499) * 160;
    assert_eq!(s.stats().playout.dropped_samples, dropped);
    assert_eq!(s.dropped_audio(), Duration::from_micros(dropped * 125));
    assert_eq!(dropped_events, s.dropped_audio());
    assert_eq!(s.queued_audio(), Duration::from_micros(239_840 * 125));
    // Nothing ends: the stream is open and plays on.
    assert!(!s.is_closed());
    assert_eq!(s.stats().agent_media, 2000);
}

#[test]
fn drops_add_up_in_one_event_until_taken() {
    let t0 = origin();
    let mut c = config(Dialect::Twilio);
    c.max_queued_audio_ms = 100;
    let mut s = StreamSession::new(t0, c);
    s.handle_message(t0, &media_twilio(&[0xFF; 1000]));
    s.handle_message(t0, &media_twilio(&[0xFF; 40]));
    assert_eq!(
        events(&mut s),
        vec![SessionEvent::AudioDropped { dropped: ms(30) }]
    );
    assert_eq!(s.queued_audio(), ms(100));
}

// Bad input.

#[test]
fn every_bad_message_is_refused_counted_and_reported_and_the_stream_goes_on() {
    let t0 = origin();
    let long_name = "n".repeat(playout::MAX_MARK_NAME_BYTES + 1);
    let cases: Vec<(Dialect, String, ProtocolError)> = vec![
        (Dialect::Twilio, "not json".into(), ProtocolError::NotJson),
        (
            Dialect::Twilio,
            r#"{"event":"media""#.into(),
            ProtocolError::NotJson,
        ),
        (Dialect::Twilio, "[1]".into(), ProtocolError::Malformed),
        (
            Dialect::Twilio,
            r#"{"streamSid":"MZ0001"}"#.into(),
            ProtocolError::Malformed,
        ),
        (
            Dialect::Twilio,
            r#"{"event":"media","media":"x"}"#.into(),
            ProtocolError::Malformed,
        ),
        (
            Dialect::Twilio,
            r#"{"event":"media","media":{}}"#.into(),
            ProtocolError::MediaWithoutPayload,
        ),
        (
            Dialect::Twilio,
            r#"{"event":"media"}"#.into(),
            ProtocolError::MediaWithoutPayload,
        ),
        (
            Dialect::Twilio,
            r#"{"event":"media","media":{"payload":"not base64!"}}"#.into(),
            ProtocolError::BadBase64,
        ),
        (
            Dialect::Exotel,
            json!({"event":"media","media":{"payload":STANDARD.encode([1u8, 2, 3])}}).to_string(),
            ProtocolError::PartialSample { bytes: 3 },
        ),
        (
            Dialect::Twilio,
            r#"{"event":"mark"}"#.into(),
            ProtocolError::MarkWithoutName,
        ),
        (
            Dialect::Twilio,
            r#"{"event":"mark","mark":{}}"#.into(),
            ProtocolError::MarkWithoutName,
        ),
        (Dialect::Twilio, mark(""), ProtocolError::MarkWithoutName),
        (
            Dialect::Twilio,
            mark(&long_name),
            ProtocolError::MarkNameTooLong {
                bytes: long_name.len(),
            },
        ),
    ];
    for (dialect, text, error) in cases {
        let mut s = open(t0, dialect);
        // 20 ms queued.
        let audio = match dialect {
            Dialect::Twilio => media_twilio(&[0xFF; 160]),
            Dialect::Exotel => media_exotel(&[0; 160]),
        };
        s.handle_message(t0, &audio);
        s.handle_message(t0, &text);
        assert_eq!(
            events(&mut s),
            vec![SessionEvent::ProtocolError(error.clone())],
            "{text}"
        );
        assert_eq!(error.close_code(), None);
        assert!(!error.to_string().is_empty());
        assert!(messages(&mut s).is_empty(), "{text}");
        // The queue is as it was, and the stream goes on.
        assert_eq!(s.queued_audio(), ms(20), "{text}");
        s.handle_message(t0, &mark("still here"));
        tick(&mut s, t0);
        tick(&mut s, t0 + ms(20));
        assert_eq!(messages(&mut s)[0]["mark"]["name"], "still here");
        let stats = s.stats();
        assert_eq!((stats.protocol_errors, stats.messages_in), (1, 3));
        assert!(!s.is_closed());
    }
}

#[test]
fn unknown_events_are_ignored_and_counted() {
    let t0 = origin();
    let mut s = open(t0, Dialect::Twilio);
    s.handle_message(t0, r#"{"event":"connected","protocol":"Call"}"#);
    s.handle_message(t0, r#"{"event":"something-new","x":{"y":[1,2,3]}}"#);
    assert!(events(&mut s).is_empty());
    assert!(messages(&mut s).is_empty());
    let stats = s.stats();
    assert_eq!((stats.unknown_events, stats.protocol_errors), (2, 0));
}

#[test]
fn too_many_pending_marks_are_refused() {
    let t0 = origin();
    let mut s = open(t0, Dialect::Twilio);
    s.handle_message(t0, &media_twilio(&[0xFF; 160]));
    for i in 0..playout::MAX_PENDING_MARKS {
        s.handle_message(t0, &mark(&i.to_string()));
    }
    assert!(events(&mut s).is_empty());
    s.handle_message(t0, &mark("over"));
    assert_eq!(
        events(&mut s),
        vec![SessionEvent::ProtocolError(ProtocolError::TooManyMarks)]
    );
    tick(&mut s, t0);
    tick(&mut s, t0 + ms(20));
    let m = messages(&mut s);
    assert_eq!(m.len(), playout::MAX_PENDING_MARKS);
    assert_eq!(
        m.last().unwrap()["mark"]["name"],
        (playout::MAX_PENDING_MARKS - 1).to_string()
    );
}

#[test]
fn a_message_over_the_limit_closes_the_socket_with_1009() {
    let t0 = origin();
    let mut s = open(t0, Dialect::Twilio);
    let big = media_twilio(&vec![0xFF; 800_000]);
    assert!(big.len() > DEFAULT_MAX_MESSAGE_BYTES);
    s.handle_message(t0, &big);
    let e = events(&mut s);
    assert_eq!(
        e,
        vec![
            SessionEvent::ProtocolError(ProtocolError::TooLarge {
                bytes: big.len(),
                limit: DEFAULT_MAX_MESSAGE_BYTES
            }),
            SessionEvent::Close {
                code: CLOSE_MESSAGE_TOO_BIG
            },
        ]
    );
    let SessionEvent::ProtocolError(error) = &e[0] else {
        unreachable!()
    };
    assert_eq!(error.close_code(), Some(1009));
    // No stop: the socket is closed as it is.
    assert!(messages(&mut s).is_empty());
    assert!(s.is_closed());
    assert_eq!(s.queued_audio(), Duration::ZERO);
    // A limit of its own, and binary messages.
    let mut c = config(Dialect::Twilio);
    c.max_message_bytes = 100;
    let mut s = StreamSession::new(t0, c);
    messages(&mut s);
    s.handle_binary(t0, 100);
    assert_eq!(
        events(&mut s),
        vec![SessionEvent::ProtocolError(ProtocolError::Binary {
            bytes: 100
        })]
    );
    s.handle_binary(t0, 101);
    assert_eq!(
        events(&mut s)[1],
        SessionEvent::Close {
            code: CLOSE_MESSAGE_TOO_BIG
        }
    );
    s.handle_binary(t0, 1);
    assert_eq!(s.stats().after_close, 1);
}

// The end.

#[test]
fn the_agents_stop_is_reported_and_its_queued_audio_still_plays() {
    let t0 = origin();
    let mut s = open(t0, Dialect::Twilio);
    let audio = tone(160, 8);
    s.handle_message(t0, &media_twilio(&ulaw(&audio)));
    s.handle_message(t0, &mark("bye"));
    s.handle_message(t0, r#"{"event":"stop","streamSid":"MZ0001"}"#);
    s.handle_message(t0, r#"{"event":"stop","streamSid":"MZ0001"}"#);
    assert_eq!(events(&mut s), vec![SessionEvent::AgentStopped]);
    // The caller's audio and digits are no longer sent.
    frame_in(&mut s, t0, 0, &[3; 160]);
    s.handle_dtmf(t0, '1', ms(100)).unwrap();
    assert!(messages(&mut s).is_empty());
    assert_eq!(s.stats().caller_dropped, 2);
    // The agent's audio plays and its mark is echoed once it has played.
    assert_eq!(tick(&mut s, t0), decoded(&ulaw(&audio)));
    assert!(messages(&mut s).is_empty());
    assert_eq!(tick(&mut s, t0 + ms(20)), vec![0; 160]);
    assert_eq!(messages(&mut s)[0]["mark"]["name"], "bye");
    // The call then hangs up: stop and close.
    s.hang_up(t0 + ms(40));
    assert_eq!(messages(&mut s)[0]["event"], "stop");
    assert_eq!(
        events(&mut s),
        vec![SessionEvent::Close { code: CLOSE_NORMAL }]
    );
}

#[test]
fn the_socket_closing_is_reported_and_ends_sending() {
    let t0 = origin();
    let mut s = open(t0, Dialect::Exotel);
    s.handle_message(t0, &media_exotel(&[9; 320]));
    s.handle_message(t0, r#"{"event":"mark","mark":{"name":"never"}}"#);
    s.handle_close(t0, Some(1001));
    assert_eq!(
        events(&mut s),
        vec![SessionEvent::AgentClosed { code: Some(1001) }]
    );
    assert!(s.is_closed());
    s.hang_up(t0);
    assert!(events(&mut s).is_empty());
    // The queued audio still plays out; its mark has nowhere to go.
    assert_eq!(tick(&mut s, t0), vec![9; 160]);
    assert_eq!(tick(&mut s, t0 + ms(20)), vec![9; 160]);
    assert!(messages(&mut s).is_empty());
    assert_eq!(tick(&mut s, t0 + ms(40)), vec![0; 160]);
    let mut s = open(t0, Dialect::Twilio);
    s.handle_close(t0, None);
    assert_eq!(
        events(&mut s),
        vec![SessionEvent::AgentClosed { code: None }]
    );
}

// As a leg of a bridge.

#[test]
fn bridged_to_an_echo_the_agents_audio_comes_back_as_the_callers() {
    let t0 = origin();
    let mut bridge = Bridge::new(
        StreamSession::new(t0, config(Dialect::Twilio)),
        EchoLeg::new(),
    );
    assert_eq!(messages(bridge.a_mut()).len(), 2);
    let audio = tone(480, 11);
    let sent = ulaw(&audio);
    bridge.a_mut().handle_message(t0, &media_twilio(&sent));
    let mut back = Vec::new();
    for n in 0..4u32 {
        let now = t0 + ms(20) * n;
        assert_eq!(bridge.poll_timeout(), Some(now));
        bridge.handle_timeout(now);
        for m in messages(bridge.a_mut()) {
            assert_eq!(m["event"], "media");
            assert_eq!(m["media"]["timestamp"], (20 * n).to_string());
            back.extend(payload(&m));
        }
        assert_eq!(bridge.poll_event(), None);
        assert_eq!(bridge.poll_transmit(), None);
    }
    // Three frames of the agent's audio, then one of silence, each sent back unchanged.
    let mut want = sent.clone();
    want.extend([g711::ULAW_SILENCE; 160]);
    assert_eq!(back, want);
    assert_eq!(bridge.b().counts(), (4, 0));
    assert_eq!(bridge.a().stats().caller_frames, 4);
    assert_eq!(bridge.b_mut().poll_media(), None);
}

#[test]
fn a_message_the_framing_refused_as_too_large_is_counted_and_closes_with_1009() {
    let t0 = origin();
    let mut s = open(t0, Dialect::Exotel);
    s.handle_too_large(t0, 10 << 20);
    assert_eq!(
        events(&mut s),
        vec![
            SessionEvent::ProtocolError(ProtocolError::TooLarge {
                bytes: 10 << 20,
                limit: DEFAULT_MAX_MESSAGE_BYTES
            }),
            SessionEvent::Close {
                code: CLOSE_MESSAGE_TOO_BIG
            },
        ]
    );
    assert!(s.is_closed());
    s.handle_too_large(t0, 10 << 20);
    assert!(events(&mut s).is_empty());
    let stats = s.stats();
    assert_eq!(
        (stats.protocol_errors, stats.messages_in, stats.after_close),
        (1, 1, 1)
    );
}
