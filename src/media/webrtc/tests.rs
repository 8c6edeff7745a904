//! The WebRTC leg against a full-ICE peer connection playing the browser, on virtual time:
//! datagrams are handed between the two by hand, and time moves only when the test says.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::SdpAnswer;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Output, Rtc, RtcConfig};

use super::*;
use crate::media::leg::Datagram;

const BROWSER: &str = "127.0.0.1:40000";
const SERVER: &str = "127.0.0.1:20000";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("a test address")
}

/// A browser's side: a full ICE agent offering audio with `codecs`.
struct Browser {
    rtc: Rtc,
    mid: Mid,
    heard: Vec<Vec<u8>>,
    connected: bool,
}

impl Browser {
    /// A browser offering PCMU and PCMA; returns it and its offer.
    fn offer(now: Instant, pcmu: bool) -> (Browser, String, str0m::change::SdpPendingOffer) {
        install_crypto();
        let mut rtc = RtcConfig::new()
            .clear_codecs()
            .enable_opus(true, false)
            .enable_pcmu(pcmu, false)
            .enable_pcma(true, false)
            .build(now);
        rtc.add_local_candidate(Candidate::host(addr(BROWSER), "udp").expect("a candidate"));
        let mut change = rtc.sdp_api();
        let mid = change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        let (offer, pending) = change.apply().expect("an offer");
        let browser = Browser {
            rtc,
            mid,
            heard: Vec::new(),
            connected: false,
        };
        (browser, offer.to_sdp_string(), pending)
    }

    /// Datagrams the browser sends until its next timeout.
    fn drain(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            match self.rtc.poll_output().expect("the browser's output") {
                Output::Timeout(_) => return out,
                Output::Transmit(t) => out.push(t.contents.to_vec()),
                Output::Event(Event::Connected) => self.connected = true,
                Output::Event(Event::MediaData(data)) => self.heard.push(data.data.to_vec()),
                Output::Event(_) => {}
            }
        }
    }

    fn receive(&mut self, now: Instant, data: &[u8]) {
        let receive = Receive::new(Protocol::Udp, addr(SERVER), addr(BROWSER), data)
            .expect("a datagram the browser can parse");
        self.rtc
            .handle_input(str0m::Input::Receive(now, receive))
            .expect("the browser takes it");
    }

    fn send_audio(&mut self, now: Instant, timestamp: u64, payload: &[u8]) {
        let writer = self.rtc.writer(self.mid).expect("the browser's audio");
        let pt = writer
            .payload_params()
            .find(|p| {
                p.spec().codec == str0m::format::Codec::PCMU
                    || p.spec().codec == str0m::format::Codec::PCMA
            })
            .map(|p| p.pt())
            .expect("a G.711 payload type");
        writer
            .write(
                pt,
                now,
                MediaTime::new(timestamp, Frequency::EIGHT_KHZ),
                payload.to_vec(),
            )
            .expect("the browser writes");
    }
}

/// Moves datagrams both ways and media from the leg back into it (an echo), `steps` times 10 ms.
fn run(
    now: &mut Instant,
    browser: &mut Browser,
    leg: &mut WebRtcLeg,
    steps: usize,
    echo: bool,
) -> Vec<(RtpHeader, StreamEvent, Vec<u8>)> {
    let mut handed = Vec::new();
    for _ in 0..steps {
        browser
            .rtc
            .handle_input(str0m::Input::Timeout(*now))
            .expect("the browser's timeout");
        for data in browser.drain() {
            leg.handle_input(
                *now,
                Input::Datagram(Datagram {
                    port: Port::Rtp,
                    src: addr(BROWSER),
                    data: &data,
                }),
            );
        }
        leg.handle_timeout(*now);
        let mut media = Vec::new();
        while let Some(Media::Rtp(rtp)) = leg.poll_media() {
            media.push((rtp.header, rtp.stream, rtp.payload.to_vec()));
        }
        for (header, stream, payload) in media {
            if echo {
                leg.handle_input(
                    *now,
                    Input::Media(Media::Rtp(RtpMedia {
                        header,
                        stream,
                        payload: &payload,
                    })),
                );
            }
            handed.push((header, stream, payload));
        }
        while let Some(t) = leg.poll_transmit() {
            assert_eq!(t.dest, addr(BROWSER));
            let data = t.data.to_vec();
            browser.receive(*now, &data);
        }
        *now += Duration::from_millis(10);
    }
    handed
}

#[test]
fn a_browser_connects_and_its_audio_is_echoed_back_on_one_timeline() {
    let mut now = crate::clock::origin();
    let (mut browser, offer, pending) = Browser::offer(now, true);
    let (mut leg, answer) = WebRtcLeg::answer(now, &offer, addr(SERVER)).expect("answered");
    assert_eq!(leg.codec(), "PCMU");
    assert!(answer.contains("a=ice-lite"), "{answer}");
    assert!(answer.contains("PCMU/8000"), "{answer}");
    assert!(!answer.to_ascii_lowercase().contains("opus"), "{answer}");
    browser
        .rtc
        .sdp_api()
        .accept_answer(
            pending,
            SdpAnswer::from_sdp_string(&answer).expect("the answer parses"),
        )
        .expect("the browser takes the answer");

    run(&mut now, &mut browser, &mut leg, 50, true);
    assert!(leg.is_connected(), "{leg:?}");
    assert!(browser.connected);

    let mut handed = Vec::new();
    for n in 0..25u8 {
        browser.send_audio(now, 8_000 + u64::from(n) * 160, &[n; 160]);
        handed.extend(run(&mut now, &mut browser, &mut leg, 2, true));
    }
    handed.extend(run(&mut now, &mut browser, &mut leg, 10, true));
    assert!(handed.len() >= 24, "{} packets handed on", handed.len());
    assert_eq!(handed[0].1, StreamEvent::Start);
    for pair in handed.windows(2) {
        assert_eq!(
            pair[1].0.sequence_number,
            pair[0].0.sequence_number.wrapping_add(1)
        );
        assert_eq!(pair[1].0.timestamp.wrapping_sub(pair[0].0.timestamp), 160);
        assert_eq!(pair[1].0.ssrc, pair[0].0.ssrc);
    }
    assert_eq!(handed[0].2, vec![handed[0].2[0]; 160]);
    // The echo reached the browser, payloads intact.
    assert!(browser.heard.len() >= 20, "{} heard", browser.heard.len());
    assert!(browser.heard.iter().all(|p| p.len() == 160));
    assert_eq!(leg.stats().packets_out as usize, handed.len());
    assert!(leg.gone().is_none());
}

#[test]
fn pcma_is_answered_when_the_browser_offers_no_pcmu() {
    let now = crate::clock::origin();
    let (_browser, offer, _pending) = Browser::offer(now, false);
    let (leg, answer) = WebRtcLeg::answer(now, &offer, addr(SERVER)).expect("answered");
    assert_eq!(leg.codec(), "PCMA");
    assert!(answer.contains("PCMA/8000"), "{answer}");
}

#[test]
fn a_browser_that_never_completes_ice_ends_the_leg_after_ten_seconds() {
    let mut now = crate::clock::origin();
    let (_browser, offer, _pending) = Browser::offer(now, true);
    let (mut leg, _) = WebRtcLeg::answer(now, &offer, addr(SERVER)).expect("answered");
    let mut ended = None;
    for _ in 0..200 {
        if let Some(at) = leg.poll_timeout() {
            now = now.max(at);
        } else {
            break;
        }
        leg.handle_timeout(now);
        if let Some(LegEvent::PeerGone(why)) = leg.poll_event() {
            ended = Some((now, why));
            break;
        }
    }
    let (at, why) = ended.expect("the leg ended");
    assert_eq!(why, "ICE did not complete within 10 s");
    assert!(leg.poll_event().is_none(), "reported once");
    assert!(leg.poll_timeout().is_none());
    let _ = at;
}

#[test]
fn a_browser_that_goes_silent_ends_the_leg_after_thirty_seconds() {
    let mut now = crate::clock::origin();
    let (mut browser, offer, pending) = Browser::offer(now, true);
    let (mut leg, answer) = WebRtcLeg::answer(now, &offer, addr(SERVER)).expect("answered");
    browser
        .rtc
        .sdp_api()
        .accept_answer(
            pending,
            SdpAnswer::from_sdp_string(&answer).expect("parses"),
        )
        .expect("taken");
    run(&mut now, &mut browser, &mut leg, 50, true);
    assert!(leg.is_connected());
    let silent_from = now;
    // The browser vanishes: only the leg's own timeouts run.
    let mut ended = None;
    for _ in 0..100_000 {
        let Some(at) = leg.poll_timeout() else { break };
        now = now.max(at);
        leg.handle_timeout(now);
        while leg.poll_transmit().is_some() {}
        if let Some(LegEvent::PeerGone(why)) = leg.poll_event() {
            ended = Some((now, why));
            break;
        }
    }
    let (at, why) = ended.expect("the leg ended");
    assert!(
        at - silent_from <= SILENCE_TIMEOUT + Duration::from_millis(500),
        "{:?}",
        at - silent_from
    );
    assert!(!why.is_empty());
}

#[test]
fn offers_without_audio_fingerprint_or_g711_are_refused_by_name() {
    let now = crate::clock::origin();
    let (_browser, offer, _pending) = Browser::offer(now, true);
    let no_fingerprint: String = offer
        .lines()
        .filter(|l| !l.starts_with("a=fingerprint:"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    assert_eq!(
        WebRtcLeg::answer(now, &no_fingerprint, addr(SERVER)).err(),
        Some(OfferError::NoFingerprint)
    );
    let opus_only = offer
        .replace("PCMU/8000", "X-NONE/8000")
        .replace("PCMA/8000", "X-NONE/8000")
        .replace(" 0 8", "")
        .replace(" 8 0", "");
    assert!(matches!(
        WebRtcLeg::answer(now, &opus_only, addr(SERVER)).err(),
        Some(OfferError::NoCommonCodec | OfferError::Malformed(_))
    ));
    assert!(matches!(
        WebRtcLeg::answer(now, "v=0\r\nthis is not sdp", addr(SERVER)).err(),
        Some(OfferError::Malformed(_))
    ));
    let video_only = offer.replace("m=audio", "m=video");
    assert!(matches!(
        WebRtcLeg::answer(now, &video_only, addr(SERVER)).err(),
        Some(OfferError::NoAudio | OfferError::Malformed(_))
    ));
}

#[test]
fn datagrams_that_are_not_the_sessions_are_counted_and_dropped() {
    let now = crate::clock::origin();
    let (_browser, offer, _pending) = Browser::offer(now, true);
    let (mut leg, _) = WebRtcLeg::answer(now, &offer, addr(SERVER)).expect("answered");
    for data in [
        &b"garbage"[..],
        &[0u8; 0][..],
        &[0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1][..],
    ] {
        leg.handle_input(
            now,
            Input::Datagram(Datagram {
                port: Port::Rtp,
                src: addr("127.0.0.1:9"),
                data,
            }),
        );
    }
    assert_eq!(leg.stats().rejected, 3);
    assert!(leg.poll_media().is_none());
    assert!(leg.gone().is_none());
}
