//! The WebRTC leg: a browser's audio over ICE-lite, DTLS-SRTP and RTCP mux (RFC 8827, RFC
//! 8445 §2.5, RFC 5764, RFC 5761), as a [`Leg`] a bridge moves media through like any other.
//!
//! The leg wraps one [`str0m::Rtc`], which is sans-IO like the leg itself: a datagram from
//! the browser goes in with its time, and the leg drains what the peer connection wants
//! (datagrams to send, media received, state changes) into its own outputs. It owns one UDP
//! port of the call's pair, so a datagram reaches it by the port it came in on, as RTP does.
//!
//! ```text
//!   browser ──STUN/DTLS/SRTP──> [ WebRTC leg: Rtc ] ──Media::Rtp──> Bridge ──> other leg
//!           <──────────────────                     <──Media::Rtp──
//! ```
//!
//! Towards the bridge the leg hands out each received audio packet as [`Media::Rtp`] on a
//! timeline of its own: one SSRC, sequence numbers that count up by one per packet and the
//! sender's timestamps, so a browser that restarts its stream is a [`StreamEvent::Restart`]
//! and never time going backwards. From the bridge it takes RTP (G.711, passed through) and
//! hands it to the peer connection, which numbers the outgoing packets continuously itself.
//!
//! The browser is answered with PCMU or PCMA only (no transcoding on the G.711 path). A leg
//! whose ICE has not completed within [`CONNECT_TIMEOUT`], or that has heard nothing from its
//! browser (no STUN, no SRTP) for [`SILENCE_TIMEOUT`], ends with [`LegEvent::PeerGone`].

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Once;
use std::time::{Duration, Instant};

use str0m::change::SdpOffer;
use str0m::format::Codec as Str0mCodec;
use str0m::media::{Frequency, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Output, Rtc, RtcConfig};

use super::g711;
use super::leg::{
    FRAME_SAMPLES, Input, Leg, LegEvent, Media, Port, RtpMedia, StreamEvent, Transmit,
};
use super::rtp::{Pt, RtpHeader, Ssrc};
use crate::kinds::Codec;

/// Longest a leg waits for its browser to complete ICE and DTLS.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest a connected leg goes without a datagram from its browser: browsers send STUN
/// consent checks every few seconds (RFC 7675) even when muted.
pub const SILENCE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why an offer cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    /// The SDP does not parse.
    #[error("the offer is not valid SDP: {0}")]
    Malformed(String),
    /// The offer has no audio section.
    #[error("the offer has no audio")]
    NoAudio,
    /// The offer carries no DTLS fingerprint.
    #[error("the offer has no DTLS fingerprint")]
    NoFingerprint,
    /// The offer's audio has neither PCMU nor PCMA.
    #[error("the offer's audio has neither PCMU nor PCMA")]
    NoCommonCodec,
    /// The peer connection refused the offer.
    #[error("the offer cannot be accepted: {0}")]
    Refused(String),
}

/// Counts of one WebRTC leg.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebRtcStats {
    /// Datagrams received from the browser.
    pub datagrams_in: u64,
    /// Datagrams the peer connection did not take (not STUN, DTLS or SRTP of this session).
    pub rejected: u64,
    /// Audio packets handed to the bridge.
    pub packets_in: u64,
    /// Audio packets handed to the peer connection.
    pub packets_out: u64,
    /// Media the leg could not carry (no negotiated audio yet, an unknown payload type).
    pub dropped: u64,
}

/// One browser's audio.
pub struct WebRtcLeg {
    rtc: Rtc,
    /// The host candidate: the address datagrams arrive on.
    local: SocketAddr,
    mid: Mid,
    /// The negotiated audio payload type, as the browser numbered it.
    audio_pt: str0m::media::Pt,
    /// The project's codec name of it: `PCMU` or `PCMA`.
    codec: &'static str,
    started: Instant,
    heard: Instant,
    connected: bool,
    gone: Option<&'static str>,
    reported: bool,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    transmit: Option<(SocketAddr, Vec<u8>)>,
    received: VecDeque<(RtpHeader, StreamEvent, Vec<u8>)>,
    media: Option<(RtpHeader, StreamEvent, Vec<u8>)>,
    next: Option<Instant>,
    ssrc: Ssrc,
    sequence: u16,
    first: bool,
    stats: WebRtcStats,
}

impl std::fmt::Debug for WebRtcLeg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebRtcLeg")
            .field("local", &self.local)
            .field("codec", &self.codec)
            .field("connected", &self.connected)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Installs the peer connections' crypto once per process.
fn install_crypto() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| str0m::crypto::from_feature_flags().install_process_default());
}

impl WebRtcLeg {
    /// Answers a browser's `offer` at `now` for a leg whose host candidate is `local` (the
    /// address the browser sends to and datagrams arrive on); returns the leg and the SDP
    /// answer.
    pub fn answer(
        now: Instant,
        offer: &str,
        local: SocketAddr,
    ) -> Result<(WebRtcLeg, String), OfferError> {
        let parsed =
            SdpOffer::from_sdp_string(offer).map_err(|e| OfferError::Malformed(e.to_string()))?;
        check_offer(offer)?;
        install_crypto();
        let mut rtc = RtcConfig::new()
            .set_ice_lite(true)
            .clear_codecs()
            .enable_pcmu(true, false)
            .enable_pcma(true, false)
            .build(now);
        let candidate =
            Candidate::host(local, "udp").map_err(|e| OfferError::Refused(e.to_string()))?;
        rtc.add_local_candidate(candidate);
        let answer = rtc
            .sdp_api()
            .accept_offer(parsed)
            .map_err(|e| OfferError::Refused(e.to_string()))?;
        let answer = answer.to_sdp_string();
        let mut transmits = VecDeque::new();
        let next = loop {
            match rtc.poll_output() {
                Ok(Output::Timeout(at)) => break at,
                Ok(Output::Transmit(t)) => {
                    transmits.push_back((t.destination, t.contents.to_vec()));
                }
                Ok(Output::Event(_)) => {}
                Err(e) => return Err(OfferError::Refused(e.to_string())),
            }
        };
        let mids = audio_mids(&answer);
        let (mid, audio_pt, codec) =
            negotiated(&mut rtc, &mids).ok_or(OfferError::NoCommonCodec)?;
        let leg = WebRtcLeg {
            rtc,
            local,
            mid,
            audio_pt,
            codec,
            started: now,
            heard: now,
            connected: false,
            gone: None,
            reported: false,
            transmits,
            transmit: None,
            received: VecDeque::new(),
            media: None,
            next: Some(next.min(now + CONNECT_TIMEOUT)),
            ssrc: Ssrc(rand::random()),
            sequence: rand::random(),
            first: true,
            stats: WebRtcStats::default(),
        };
        Ok((leg, answer))
    }

    /// The negotiated codec: `PCMU` or `PCMA`.
    pub fn codec(&self) -> &'static str {
        self.codec
    }

    /// Whether ICE and DTLS have completed.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Why the leg ended, once it has.
    pub fn gone(&self) -> Option<&'static str> {
        self.gone
    }

    /// The leg's counts.
    pub fn stats(&self) -> WebRtcStats {
        self.stats
    }

    /// The media settings a leg bridged to this one decodes its packets with.
    pub fn media_config(&self, media_timeout: Duration) -> super::session::MediaConfig {
        super::session::MediaConfig {
            remote: self.local,
            audio_pt: Pt::new(*self.audio_pt).unwrap_or(Pt::PCMU),
            event_pt: None,
            media_timeout,
        }
    }

    /// Takes a candidate the browser trickled after its offer (RFC 8838).
    pub fn add_remote_candidate(&mut self, now: Instant, candidate: Candidate) {
        if self.gone.is_none() {
            self.rtc.add_remote_candidate(candidate);
            self.drain(now);
        }
    }

    /// Closes the peer connection (the call hung up): nothing more is sent.
    pub fn close(&mut self) {
        self.rtc.disconnect();
    }

    fn end(&mut self, why: &'static str) {
        if self.gone.is_none() {
            self.gone = Some(why);
            self.rtc.disconnect();
        }
    }

    /// Takes everything the peer connection has to say, up to its next timeout.
    fn drain(&mut self, now: Instant) {
        while self.rtc.is_alive() {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(at)) => {
                    self.next = Some(at);
                    break;
                }
                Ok(Output::Transmit(t)) => {
                    self.transmits
                        .push_back((t.destination, t.contents.to_vec()));
                }
                Ok(Output::Event(event)) => self.handle_event(event),
                Err(e) => {
                    tracing::debug!(error = %e, "WebRTC peer connection failed");
                    self.end("peer connection failed");
                }
            }
        }
        if !self.rtc.is_alive() {
            self.end("browser closed the connection");
            self.next = None;
        }
        if self.gone.is_none() {
            let limit = if self.connected {
                self.heard + SILENCE_TIMEOUT
            } else {
                self.started + CONNECT_TIMEOUT
            };
            if now >= limit {
                self.end(if self.connected {
                    "no STUN or SRTP from the browser for 30 s"
                } else {
                    "ICE did not complete within 10 s"
                });
                self.next = None;
            } else {
                self.next = Some(self.next.map_or(limit, |n| n.min(limit)));
            }
        }
    }

    fn handle_event(&mut self, event: Event) {
        match event {
            Event::Connected => self.connected = true,
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.end("ICE disconnected");
            }
            Event::MediaData(data) => {
                if data.mid != self.mid || data.pt != self.audio_pt {
                    self.stats.dropped += 1;
                    return;
                }
                let stream = if std::mem::take(&mut self.first) {
                    StreamEvent::Start
                } else if data.contiguous {
                    StreamEvent::Continue
                } else {
                    StreamEvent::Restart
                };
                self.sequence = self.sequence.wrapping_add(1);
                let Some(payload_type) = Pt::new(*data.pt) else {
                    self.stats.dropped += 1;
                    return;
                };
                let header = RtpHeader {
                    marker: false,
                    payload_type,
                    sequence_number: self.sequence,
                    timestamp: data.time.rebase(Frequency::EIGHT_KHZ).numer() as u32,
                    ssrc: self.ssrc,
                };
                self.stats.packets_in += 1;
                self.received
                    .push_back((header, stream, data.data.to_vec()));
            }
            _ => {}
        }
    }
}

/// Checks what the peer connection would otherwise accept silently: an audio section with
/// G.711 and a DTLS fingerprint.
fn check_offer(offer: &str) -> Result<(), OfferError> {
    let mut audio = false;
    let mut g711 = false;
    let mut fingerprint = false;
    let mut in_audio = false;
    for line in offer.lines().map(str::trim_end) {
        if let Some(m) = line.strip_prefix("m=") {
            in_audio = m.starts_with("audio ");
            audio |= in_audio;
            // Static payload types 0 and 8 may be listed without an rtpmap.
            if in_audio && m.split(' ').skip(3).any(|pt| pt == "0" || pt == "8") {
                g711 = true;
            }
        } else if line.starts_with("a=fingerprint:") {
            fingerprint = true;
        } else if in_audio && let Some(map) = line.strip_prefix("a=rtpmap:") {
            let name = map.split(' ').nth(1).unwrap_or("");
            if name.eq_ignore_ascii_case("PCMU/8000") || name.eq_ignore_ascii_case("PCMA/8000") {
                g711 = true;
            }
        }
    }
    if !audio {
        return Err(OfferError::NoAudio);
    }
    if !fingerprint {
        return Err(OfferError::NoFingerprint);
    }
    if !g711 {
        return Err(OfferError::NoCommonCodec);
    }
    Ok(())
}

/// The mids of an SDP's audio sections that are not rejected (port 0).
fn audio_mids(sdp: &str) -> Vec<Mid> {
    let mut mids = Vec::new();
    let mut in_audio = false;
    for line in sdp.lines().map(str::trim_end) {
        if let Some(m) = line.strip_prefix("m=") {
            in_audio = m.starts_with("audio ") && !m.starts_with("audio 0 ");
        } else if in_audio && let Some(mid) = line.strip_prefix("a=mid:") {
            mids.push(Mid::from(mid));
        }
    }
    mids
}

/// The accepted audio section and its G.711 payload type, PCMU first.
fn negotiated(rtc: &mut Rtc, mids: &[Mid]) -> Option<(Mid, str0m::media::Pt, &'static str)> {
    for &mid in mids {
        let Some(writer) = rtc.writer(mid) else {
            continue;
        };
        let mut best: Option<(str0m::media::Pt, &'static str)> = None;
        for params in writer.payload_params() {
            match params.spec().codec {
                Str0mCodec::PCMU => return Some((mid, params.pt(), "PCMU")),
                Str0mCodec::PCMA if best.is_none() => best = Some((params.pt(), "PCMA")),
                _ => {}
            }
        }
        if let Some((pt, codec)) = best {
            return Some((mid, pt, codec));
        }
    }
    None
}

impl Leg for WebRtcLeg {
    fn handle_input(&mut self, now: Instant, input: Input<'_>) {
        match input {
            Input::Datagram(datagram) => {
                if datagram.port != Port::Rtp || self.gone.is_some() {
                    return;
                }
                self.stats.datagrams_in += 1;
                let Ok(receive) =
                    Receive::new(Protocol::Udp, datagram.src, self.local, datagram.data)
                else {
                    self.stats.rejected += 1;
                    return;
                };
                let input = str0m::Input::Receive(now, receive);
                if !self.rtc.accepts(&input) {
                    self.stats.rejected += 1;
                    return;
                }
                self.heard = now;
                if let Err(e) = self.rtc.handle_input(input) {
                    tracing::debug!(error = %e, "WebRTC datagram not taken");
                    self.stats.rejected += 1;
                }
            }
            Input::Media(Media::Rtp(rtp)) => {
                if !self.connected || self.gone.is_some() {
                    self.stats.dropped += 1;
                    return;
                }
                let time = MediaTime::new(u64::from(rtp.header.timestamp), Frequency::EIGHT_KHZ);
                let Some(writer) = self.rtc.writer(self.mid) else {
                    self.stats.dropped += 1;
                    return;
                };
                match writer.write(self.audio_pt, now, time, rtp.payload) {
                    Ok(()) => self.stats.packets_out += 1,
                    Err(_) => self.stats.dropped += 1,
                }
            }
            // 20 ms of linear audio (an agent's): encoded in the negotiated codec.
            Input::Media(Media::Frame(frame)) => {
                if !self.connected || self.gone.is_some() {
                    self.stats.dropped += 1;
                    return self.drain(now);
                }
                let codec = if self.codec == "PCMA" {
                    Codec::Pcma
                } else {
                    Codec::Pcmu
                };
                let mut payload = [0u8; FRAME_SAMPLES];
                let len = g711::encode(codec, frame.samples, &mut payload);
                let time = MediaTime::new(u64::from(frame.timestamp), Frequency::EIGHT_KHZ);
                let written = self.rtc.writer(self.mid).map(|w| {
                    w.write(
                        self.audio_pt,
                        now,
                        time,
                        payload.get(..len).unwrap_or_default().to_vec(),
                    )
                });
                match written {
                    Some(Ok(())) => self.stats.packets_out += 1,
                    _ => self.stats.dropped += 1,
                }
            }
        }
        self.drain(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.next.is_none_or(|at| now < at) {
            return;
        }
        if self.gone.is_none() && self.rtc.handle_input(str0m::Input::Timeout(now)).is_err() {
            self.end("peer connection failed");
        }
        self.drain(now);
    }

    fn poll_media(&mut self) -> Option<Media<'_>> {
        self.media = self.received.pop_front();
        let (header, stream, payload) = self.media.as_ref()?;
        Some(Media::Rtp(RtpMedia {
            header: *header,
            stream: *stream,
            payload,
        }))
    }

    fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        self.transmit = self.transmits.pop_front();
        let (dest, data) = self.transmit.as_ref()?;
        Some(Transmit {
            port: Port::Rtp,
            dest: *dest,
            data,
        })
    }

    fn poll_event(&mut self) -> Option<LegEvent> {
        match self.gone {
            Some(why) if !self.reported => {
                self.reported = true;
                Some(LegEvent::PeerGone(why))
            }
            _ => None,
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.next
    }
}

#[cfg(test)]
mod tests;
