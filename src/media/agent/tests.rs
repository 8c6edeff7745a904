use std::net::SocketAddr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use super::*;
use crate::clock::origin;
use crate::media::bridge::{Bridge, Side};
use crate::media::leg::{Datagram, Port};
use crate::media::rtp::{RtpHeader, RtpPacket, Ssrc, build};
use crate::media::rtp_leg::RtpLeg;
use crate::media::stream::Dialect;

const SLOT: Duration = Duration::from_millis(20);

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn config() -> MediaConfig {
    MediaConfig {
        remote: addr("203.0.113.5:40000"),
        audio_pt: Pt::PCMU,
        event_pt: Pt::new(101),
        media_timeout: Duration::ZERO,
    }
}

fn bridge(t0: Instant) -> Bridge<RtpLeg, AgentLeg> {
    let stream = StreamConfig::new(Dialect::Twilio, "MZ1", "AC1", "CA1");
    Bridge::new(
        RtpLeg::with_ids(t0, &config(), 42, 0, 0),
        AgentLeg::new(t0, &config(), stream),
    )
}

fn rtp(pt: u8, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
    let h = RtpHeader {
        marker: false,
        payload_type: Pt::new(pt).unwrap(),
        sequence_number: seq,
        timestamp: ts,
        ssrc: Ssrc(7),
    };
    let mut out = vec![0u8; 12 + payload.len()];
    let n = build(&h, payload, &mut out).unwrap();
    out.truncate(n);
    out
}

fn audio(seq: u16) -> Vec<u8> {
    (0..160u16)
        .map(|i| 0x10 + ((seq * 3 + i) % 0x60) as u8)
        .collect()
}

const CALLER: &str = "203.0.113.5:40000";

fn from_caller(bridge: &mut Bridge<RtpLeg, AgentLeg>, now: Instant, data: &[u8]) {
    let datagram = Datagram {
        port: Port::Rtp,
        src: addr(CALLER),
        data,
    };
    bridge.handle_input(now, Side::A, Input::Datagram(datagram));
}

/// The RTP payloads the bridge sends at `now`, after waking it.
fn tick(bridge: &mut Bridge<RtpLeg, AgentLeg>, now: Instant) -> Vec<Vec<u8>> {
    bridge.handle_timeout(now);
    let mut out = Vec::new();
    while let Some((side, t)) = bridge.poll_transmit() {
        assert_eq!(side, Side::A);
        out.push(RtpPacket::parse(t.data).unwrap().payload().to_vec());
    }
    out
}

fn messages(bridge: &mut Bridge<RtpLeg, AgentLeg>) -> Vec<Value> {
    let session = bridge.b_mut().session_mut();
    let mut out = Vec::new();
    while let Some(m) = session.poll_message() {
        out.push(serde_json::from_str(m).unwrap());
    }
    out
}

#[test]
fn silence_plays_from_the_start_and_the_callers_audio_goes_to_the_agent_once_connected() {
    let t0 = origin();
    let mut b = bridge(t0);
    let events: Vec<Value> = messages(&mut b);
    assert_eq!(events.len(), 2);
    assert_eq!(
        (events[0]["event"].as_str(), events[1]["event"].as_str()),
        (Some("connected"), Some("start"))
    );
    // The first slot is due at once: silence, to the offer's address before latching.
    assert_eq!(b.poll_timeout(), Some(t0));
    assert_eq!(tick(&mut b, t0), vec![vec![0xff; 160]]);
    assert_eq!(b.poll_timeout(), Some(t0 + SLOT));

    // While connecting the caller's audio is buffered and played out, not sent.
    let mut seq = 0u16;
    for n in 1..6u32 {
        let now = t0 + SLOT * n;
        from_caller(&mut b, now, &rtp(0, seq, 160 * u32::from(seq), &audio(seq)));
        seq += 1;
        assert_eq!(tick(&mut b, now), vec![vec![0xff; 160]]);
    }
    assert!(messages(&mut b).is_empty());
    b.b_mut().set_connected();
    let mut heard = Vec::new();
    for n in 6..40u32 {
        let now = t0 + SLOT * n;
        from_caller(&mut b, now, &rtp(0, seq, 160 * u32::from(seq), &audio(seq)));
        seq += 1;
        // One packet to the caller per slot, whatever comes in.
        assert_eq!(tick(&mut b, now).len(), 1);
        for m in messages(&mut b) {
            assert_eq!(m["event"], "media");
            heard.push(
                STANDARD
                    .decode(m["media"]["payload"].as_str().unwrap())
                    .unwrap(),
            );
        }
    }
    // A frame per slot from the connect on; the audio is the caller's, in order.
    assert_eq!(heard.len(), 34);
    let first = heard.iter().position(|f| f != &vec![0xff; 160]).unwrap();
    let k = (0..seq).find(|&k| audio(k) == heard[first]).unwrap();
    for (i, f) in heard[first..].iter().enumerate() {
        assert_eq!(f, &audio(k + i as u16), "frame {i}");
    }
    assert_eq!(b.b().jitter().stats().lost, 0);
}

#[test]
fn the_agents_audio_is_played_to_the_caller_one_frame_per_slot() {
    let t0 = origin();
    let mut b = bridge(t0);
    assert_eq!(tick(&mut b, t0).len(), 1);
    let speech = [0x55u8; 320];
    let message = format!(
        r#"{{"event":"media","media":{{"payload":"{}"}}}}"#,
        STANDARD.encode(speech)
    );
    b.b_mut().session_mut().handle_message(t0, &message);
    assert_eq!(tick(&mut b, t0 + SLOT), vec![vec![0x55; 160]]);
    // A late wake-up skips the missed slot instead of sending two packets.
    assert_eq!(tick(&mut b, t0 + SLOT * 3), vec![vec![0x55; 160]]);
    assert_eq!(tick(&mut b, t0 + SLOT * 4), vec![vec![0xff; 160]]);
}

#[test]
fn telephone_events_and_info_digits_become_dtmf_messages_and_digits() {
    let t0 = origin();
    let mut b = bridge(t0);
    messages(&mut b);
    let end = [5u8, 0x8a, 0x01, 0x40];
    for seq in 0..3 {
        from_caller(&mut b, t0, &rtp(101, seq, 8000, &end));
    }
    let sent = messages(&mut b);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["event"], "dtmf");
    assert_eq!(sent[0]["dtmf"]["digit"], "5");
    assert_eq!(b.b_mut().poll_digit(), Some('5'));
    assert_eq!(b.b_mut().poll_digit(), None);
    b.b_mut().handle_info_digit(t0, 'b').unwrap();
    assert_eq!(b.b_mut().poll_digit(), Some('B'));
    assert_eq!(messages(&mut b)[0]["dtmf"]["digit"], "B");
    assert!(b.b_mut().handle_info_digit(t0, 'x').is_err());
    assert_eq!(b.b_mut().poll_digit(), None);
}
