//! DTMF from a call: RFC 4733 telephone-events (§2.3 payload, §2.5 procedures, §3 DTMF event
//! codes) detected as one digit per key press, and the DTMF bodies of SIP INFO
//! (`application/dtmf-relay`, `application/dtmf`) parsed to the same [`DtmfDigit`]. Sans-IO.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     event     |E|R| volume    |          duration             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! # One digit per event
//! Every packet of one key press carries the RTP timestamp of the press's start and a
//! growing duration; the last ones carry the E bit, and senders repeat them (usually three
//! times). An event is therefore its SSRC and timestamp, and the detector reports it once:
//! - on the first packet with the E bit, whatever arrived before it. The marker bit is never
//!   looked at: senders omit it, and the packet that had it may be lost. An event of which
//!   only the end packets arrive is reported the same way.
//! - when its end never arrives: as soon as another event starts, or after
//!   [`EVENT_TIMEOUT`] without a packet of it, with the longest duration seen.
//!
//! Packets of an event already reported (the end's repeats, stragglers) are ignored; a new
//! timestamp is a new press, even of the same key. A press longer than the 16-bit duration
//! field (8.2 s at 8 kHz) goes as segments, each new one starting where the previous one's
//! maximal duration ended; a segment that continues the press is joined to it. A payload
//! packing several reports of consecutive events is read report by report, each starting
//! where the previous one ended. Events 16 and above (flash hook, tones) are
//! not digits and are counted only.
//!
//! # INFO bodies
//! `application/dtmf-relay` is lines of `key=value`, `Signal` required and `Duration` (in
//! milliseconds) optional, keys in any case, other keys ignored; `application/dtmf` is the
//! key alone. A signal is one of `0-9 * # A-D` (any case) or an event number `10`-`15`.
//! Anything else is a [`DtmfError`], which says the SIP status to refuse the INFO with.
//!
//! The agent stream leg feeds every [`RtpMedia`] to [`DtmfDetector::handle_packet`] (next to
//! [`super::jitter::JitterBuffer::handle_packet`]), drains [`DtmfDetector::poll_digit`] and
//! wakes the detector at [`DtmfDetector::poll_timeout`]; a call's INFO goes through
//! [`parse_info`]. Either way it sends one `dtmf` message per [`DtmfDigit`].

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;
use std::time::Instant;

use super::jitter::RtpPosition;
use super::leg::RtpMedia;
use super::rtp::{Pt, Ssrc};

/// How long an event may go without a packet before it is taken as ended (its end packets
/// lost). Senders refresh an event every packet interval, well under this.
pub const EVENT_TIMEOUT: Duration = Duration::from_millis(500);

/// Digits held for [`DtmfDetector::poll_digit`]; more than a packet can make (two).
const QUEUE: usize = 8;

/// Events remembered after they were reported, to ignore their late packets.
const RECENT: usize = 8;

/// Length of one telephone-event report.
const REPORT_LEN: usize = 4;

/// The keys of DTMF events 0-15 (RFC 4733 §3.2), in event order.
const KEYS: [char; 16] = [
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '#', 'A', 'B', 'C', 'D',
];

/// A DTMF key: `0`-`9`, `*`, `#`, `A`-`D`, held as its RFC 4733 event code (0-15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digit(u8);

impl Digit {
    /// The key of an event code, or `None` for codes 16 and above (not DTMF).
    pub const fn from_event(code: u8) -> Option<Digit> {
        if code < 16 { Some(Digit(code)) } else { None }
    }

    /// The key a character names (`a`-`d` as `A`-`D`), or `None`.
    pub fn from_char(c: char) -> Option<Digit> {
        let c = c.to_ascii_uppercase();
        let code = KEYS.iter().position(|&k| k == c)?;
        u8::try_from(code).ok().and_then(Digit::from_event)
    }

    /// The RFC 4733 event code, 0-15.
    pub const fn event(self) -> u8 {
        self.0
    }

    /// The key as a character: `0`-`9`, `*`, `#`, `A`-`D`.
    pub fn as_char(self) -> char {
        KEYS[usize::from(self.0 & 0x0f)]
    }
}

impl fmt::Display for Digit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_char())
    }
}

/// One key press, from RTP or from a SIP INFO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfDigit {
    pub digit: Digit,
    /// How long the key was held: the event's duration, or the INFO's `Duration`; `None`
    /// when an INFO gave none.
    pub duration: Option<Duration>,
    /// The event's SSRC and timestamp (the press's start on the sender's timeline, the one
    /// [`super::jitter::JitterFrame::origin`] speaks of); `None` from an INFO.
    pub position: Option<RtpPosition>,
}

/// Counts of one detector.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DtmfStats {
    /// Digits reported.
    pub digits: u64,
    /// Of those, digits whose end packets never arrived.
    pub unended: u64,
    /// Reports of events already reported (the end's repeats): ignored.
    pub repeats: u64,
    /// Reports of events that are not DTMF (16 and above): ignored.
    pub other_events: u64,
    /// Telephone-event payloads that are not whole 4-byte reports.
    pub malformed: u64,
    /// Digits dropped because [`DtmfDetector::poll_digit`] was not drained.
    pub dropped: u64,
}

/// One report of a telephone-event payload (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Report {
    event: u8,
    end: bool,
    duration: u16,
}

impl Report {
    fn parse(bytes: &[u8]) -> Option<Report> {
        let [event, flags, d0, d1] = *bytes else {
            return None;
        };
        Some(Report {
            event,
            end: flags & 0x80 != 0,
            duration: u16::from_be_bytes([d0, d1]),
        })
    }
}

/// The event being received.
#[derive(Debug, Clone, Copy)]
struct Current {
    ssrc: Ssrc,
    /// The press's first timestamp.
    start: u32,
    /// The timestamp of the segment being received.
    segment: u32,
    digit: Digit,
    /// The longest duration of this segment seen.
    segment_units: u16,
    /// The durations of the press's earlier segments.
    earlier_units: u64,
    last_seen: Instant,
}

/// Detects RFC 4733 DTMF events in one call's RTP, one digit per event. See the module
/// documentation.
#[derive(Debug)]
pub struct DtmfDetector {
    event_pt: Pt,
    clock_rate: u32,
    current: Option<Current>,
    recent: [Option<(Ssrc, u32)>; RECENT],
    recent_next: usize,
    digits: VecDeque<DtmfDigit>,
    stats: DtmfStats,
}

impl DtmfDetector {
    /// A detector of the telephone-event payload type `event_pt`, whose RTP clock runs at
    /// `clock_rate` Hz (the rate of its a=rtpmap: 8000 with G.711, 48000 from some browsers).
    pub fn new(event_pt: Pt, clock_rate: u32) -> Self {
        DtmfDetector {
            event_pt,
            clock_rate: clock_rate.max(1),
            current: None,
            recent: [None; RECENT],
            recent_next: 0,
            digits: VecDeque::with_capacity(QUEUE),
            stats: DtmfStats::default(),
        }
    }

    /// Counts so far.
    pub fn stats(&self) -> DtmfStats {
        self.stats
    }

    /// Takes one RTP packet of the call at `now`; packets of other payload types are ignored,
    /// so every packet may be given.
    pub fn handle_packet(&mut self, now: Instant, packet: &RtpMedia<'_>) {
        if packet.header.payload_type != self.event_pt {
            return;
        }
        let payload = packet.payload;
        if payload.is_empty() || !payload.len().is_multiple_of(REPORT_LEN) {
            self.stats.malformed += 1;
            return;
        }
        let ssrc = packet.header.ssrc;
        let mut timestamp = packet.header.timestamp;
        for bytes in payload.chunks_exact(REPORT_LEN) {
            let Some(report) = Report::parse(bytes) else {
                self.stats.malformed += 1;
                return;
            };
            self.handle_report(now, ssrc, timestamp, report);
            timestamp = timestamp.wrapping_add(u32::from(report.duration));
        }
    }

    fn handle_report(&mut self, now: Instant, ssrc: Ssrc, timestamp: u32, report: Report) {
        if self.recent.contains(&Some((ssrc, timestamp))) {
            self.stats.repeats += 1;
            return;
        }
        let Some(digit) = Digit::from_event(report.event) else {
            self.stats.other_events += 1;
            return;
        };
        let mut current = match self.current {
            Some(cur) if cur.ssrc == ssrc && cur.segment == timestamp => cur,
            Some(mut cur)
                if cur.ssrc == ssrc
                    && cur.digit == digit
                    && cur.segment_units == u16::MAX
                    && timestamp == cur.segment.wrapping_add(u32::from(u16::MAX)) =>
            {
                // The next segment of a long press.
                self.remember(ssrc, cur.segment);
                cur.earlier_units += u64::from(cur.segment_units);
                cur.segment = timestamp;
                cur.segment_units = 0;
                cur
            }
            Some(_) => {
                // Another event started: the one before lost its end.
                self.finish(true);
                Current::new(ssrc, timestamp, digit, now)
            }
            None => Current::new(ssrc, timestamp, digit, now),
        };
        current.segment_units = current.segment_units.max(report.duration);
        current.last_seen = now;
        self.current = Some(current);
        if report.end {
            self.finish(false);
        }
    }

    fn remember(&mut self, ssrc: Ssrc, timestamp: u32) {
        self.recent[self.recent_next % RECENT] = Some((ssrc, timestamp));
        self.recent_next = (self.recent_next + 1) % RECENT;
    }

    /// Reports the current event.
    fn finish(&mut self, unended: bool) {
        let Some(cur) = self.current.take() else {
            return;
        };
        self.remember(cur.ssrc, cur.segment);
        let units = cur.earlier_units + u64::from(cur.segment_units);
        let micros = units * 1_000_000 / u64::from(self.clock_rate);
        let digit = DtmfDigit {
            digit: cur.digit,
            duration: Some(Duration::from_micros(micros)),
            position: Some(RtpPosition {
                ssrc: cur.ssrc,
                timestamp: cur.start,
            }),
        };
        if self.digits.len() >= QUEUE {
            self.digits.pop_front();
            self.stats.dropped += 1;
        }
        self.digits.push_back(digit);
        self.stats.digits += 1;
        if unended {
            self.stats.unended += 1;
        }
    }

    /// Tells the detector that `now` has come: an event without packets for
    /// [`EVENT_TIMEOUT`] is reported. Before [`DtmfDetector::poll_timeout`] it does nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(deadline) = self.poll_timeout()
            && now >= deadline
        {
            self.finish(true);
        }
    }

    /// A digit detected; call until `None` after every input.
    pub fn poll_digit(&mut self) -> Option<DtmfDigit> {
        self.digits.pop_front()
    }

    /// When the event being received times out; `None` when none is. Ask again after every
    /// input.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let cur = self.current?;
        cur.last_seen.checked_add(EVENT_TIMEOUT)
    }
}

impl Current {
    fn new(ssrc: Ssrc, timestamp: u32, digit: Digit, now: Instant) -> Self {
        Current {
            ssrc,
            start: timestamp,
            segment: timestamp,
            digit,
            segment_units: 0,
            earlier_units: 0,
            last_seen: now,
        }
    }
}

/// Longest text of a bad field kept in an error.
const ERROR_TEXT: usize = 32;

fn clip(text: &str) -> String {
    text.chars().take(ERROR_TEXT).collect()
}

/// Why a SIP INFO's DTMF body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DtmfError {
    /// The body is neither `application/dtmf-relay` nor `application/dtmf`.
    #[error("content type {0:?} is not application/dtmf-relay or application/dtmf")]
    UnsupportedContentType(String),
    /// The body is not UTF-8 text.
    #[error("DTMF body is not text")]
    NotText,
    /// No signal: an empty body, or a dtmf-relay body without `Signal`.
    #[error("DTMF body has no signal")]
    MissingSignal,
    /// The signal is not a DTMF key.
    #[error("{0:?} is not a DTMF signal (0-9, *, #, A-D or 10-15)")]
    BadSignal(String),
    /// The duration is not a whole number of milliseconds.
    #[error("duration {0:?} is not a whole number of milliseconds")]
    BadDuration(String),
    /// A field given twice.
    #[error("DTMF body gives {0} more than once")]
    DuplicateField(&'static str),
    /// A dtmf-relay line that is not `key=value`.
    #[error("dtmf-relay line {0:?} is not key=value")]
    BadLine(String),
}

impl DtmfError {
    /// The SIP status to answer the INFO with: 415 Unsupported Media Type for a body of
    /// another type (RFC 3261 §21.4.13), 400 Bad Request for a malformed one.
    pub fn status(&self) -> u16 {
        match self {
            DtmfError::UnsupportedContentType(_) => 415,
            _ => 400,
        }
    }
}

/// The digit a SIP INFO carries, from its Content-Type (parameters ignored, any case) and
/// body.
pub fn parse_info(content_type: &str, body: &[u8]) -> Result<DtmfDigit, DtmfError> {
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    if media_type.eq_ignore_ascii_case("application/dtmf-relay") {
        parse_dtmf_relay(body)
    } else if media_type.eq_ignore_ascii_case("application/dtmf") {
        parse_dtmf(body)
    } else {
        Err(DtmfError::UnsupportedContentType(clip(content_type)))
    }
}

/// An `application/dtmf-relay` body: `Signal=5\r\nDuration=160\r\n`.
pub fn parse_dtmf_relay(body: &[u8]) -> Result<DtmfDigit, DtmfError> {
    let text = std::str::from_utf8(body).map_err(|_| DtmfError::NotText)?;
    let mut signal = None;
    let mut duration = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(DtmfError::BadLine(clip(line)));
        };
        let (key, value) = (key.trim(), value.trim());
        if key.eq_ignore_ascii_case("signal") {
            if signal.is_some() {
                return Err(DtmfError::DuplicateField("Signal"));
            }
            signal = Some(parse_signal(value)?);
        } else if key.eq_ignore_ascii_case("duration") {
            if duration.is_some() {
                return Err(DtmfError::DuplicateField("Duration"));
            }
            duration = Some(parse_millis(value)?);
        }
    }
    let digit = signal.ok_or(DtmfError::MissingSignal)?;
    Ok(DtmfDigit {
        digit,
        duration,
        position: None,
    })
}

/// An `application/dtmf` body: the key alone (`5`), surrounding white space allowed.
pub fn parse_dtmf(body: &[u8]) -> Result<DtmfDigit, DtmfError> {
    let text = std::str::from_utf8(body).map_err(|_| DtmfError::NotText)?;
    let text = text.trim();
    if text.is_empty() {
        return Err(DtmfError::MissingSignal);
    }
    Ok(DtmfDigit {
        digit: parse_signal(text)?,
        duration: None,
        position: None,
    })
}

/// A key (`0`-`9`, `*`, `#`, `A`-`D`, any case) or an event number 10-15.
fn parse_signal(text: &str) -> Result<Digit, DtmfError> {
    let bad = || DtmfError::BadSignal(clip(text));
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (None, _) => Err(DtmfError::MissingSignal),
        (Some(c), None) => Digit::from_char(c).ok_or_else(bad),
        _ if text.bytes().all(|b| b.is_ascii_digit()) => text
            .parse::<u8>()
            .ok()
            .and_then(Digit::from_event)
            .ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// A whole number of milliseconds.
fn parse_millis(text: &str) -> Result<Duration, DtmfError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DtmfError::BadDuration(clip(text)));
    }
    text.parse::<u32>()
        .map(|ms| Duration::from_millis(u64::from(ms)))
        .map_err(|_| DtmfError::BadDuration(clip(text)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::origin;
    use crate::media::leg::StreamEvent;
    use crate::media::rtp::RtpHeader;

    const EVENT_PT: Pt = match Pt::new(101) {
        Some(pt) => pt,
        None => Pt::PCMU,
    };

    /// Feeds RFC 4733 packets to a detector on virtual time, 20 ms apart.
    struct Sender {
        detector: DtmfDetector,
        now: Instant,
        seq: u16,
        ssrc: u32,
    }

    impl Sender {
        fn new() -> Self {
            Sender {
                detector: DtmfDetector::new(EVENT_PT, 8000),
                now: origin(),
                seq: 100,
                ssrc: 0x5151,
            }
        }

        fn send_payload(&mut self, pt: Pt, marker: bool, ts: u32, payload: &[u8]) {
            let media = RtpMedia {
                header: RtpHeader {
                    marker,
                    payload_type: pt,
                    sequence_number: self.seq,
                    timestamp: ts,
                    ssrc: Ssrc(self.ssrc),
                },
                stream: StreamEvent::Continue,
                payload,
            };
            self.detector.handle_packet(self.now, &media);
            self.seq = self.seq.wrapping_add(1);
            self.now += Duration::from_millis(20);
        }

        /// One telephone-event packet.
        fn event(&mut self, marker: bool, ts: u32, event: u8, end: bool, duration: u16) {
            let [d0, d1] = duration.to_be_bytes();
            let flags = if end { 0x80 | 10 } else { 10 };
            self.send_payload(EVENT_PT, marker, ts, &[event, flags, d0, d1]);
        }

        /// A whole key press as a careful sender sends it: the first packet marked, updates
        /// every 20 ms, and the end three times.
        fn press(&mut self, ts: u32, event: u8, updates: u16) {
            for n in 1..=updates {
                self.event(n == 1, ts, event, false, n * 160);
            }
            for _ in 0..3 {
                self.event(false, ts, event, true, (updates + 1) * 160);
            }
        }

        fn digits(&mut self) -> Vec<DtmfDigit> {
            std::iter::from_fn(|| self.detector.poll_digit()).collect()
        }
    }

    fn pressed(digit: char, ms: u64, ssrc: u32, ts: u32) -> DtmfDigit {
        DtmfDigit {
            digit: Digit::from_char(digit).unwrap(),
            duration: Some(Duration::from_millis(ms)),
            position: Some(RtpPosition {
                ssrc: Ssrc(ssrc),
                timestamp: ts,
            }),
        }
    }

    #[test]
    fn one_digit_per_event_however_many_packets_and_end_repeats() {
        let mut s = Sender::new();
        s.press(8_000, 5, 4);
        assert_eq!(s.digits(), vec![pressed('5', 100, 0x5151, 8_000)]);
        let stats = s.detector.stats();
        assert_eq!((stats.digits, stats.repeats, stats.unended), (1, 2, 0));
        // The event is over: nothing is waiting.
        assert_eq!(s.detector.poll_timeout(), None);
    }

    #[test]
    fn the_digit_is_reported_on_the_end_bit_without_any_marker() {
        let mut s = Sender::new();
        s.event(false, 1_000, 9, false, 160);
        s.event(false, 1_000, 9, false, 320);
        assert_eq!(s.digits(), vec![]);
        s.event(false, 1_000, 9, true, 480);
        s.event(false, 1_000, 9, true, 480);
        assert_eq!(s.digits(), vec![pressed('9', 60, 0x5151, 1_000)]);
    }

    #[test]
    fn an_event_of_which_only_the_end_packets_arrive_is_one_digit() {
        let mut s = Sender::new();
        for _ in 0..3 {
            s.event(false, 4_000, 11, true, 800);
        }
        assert_eq!(s.digits(), vec![pressed('#', 100, 0x5151, 4_000)]);
        assert_eq!(s.detector.stats().repeats, 2);
    }

    #[test]
    fn two_presses_of_the_same_key_are_two_digits() {
        let mut s = Sender::new();
        s.press(10_000, 1, 3);
        // Audio between the presses is not the detector's.
        s.send_payload(Pt::PCMU, false, 11_000, &[0xff; 160]);
        s.press(12_000, 1, 3);
        assert_eq!(
            s.digits(),
            vec![
                pressed('1', 80, 0x5151, 10_000),
                pressed('1', 80, 0x5151, 12_000)
            ]
        );
    }

    #[test]
    fn the_end_repeats_of_an_earlier_event_arriving_late_are_ignored() {
        let mut s = Sender::new();
        s.event(true, 2_000, 3, false, 160);
        s.event(false, 2_000, 3, true, 320);
        s.press(4_000, 4, 2);
        // A straggler of the first press, reordered behind the second.
        s.event(false, 2_000, 3, true, 320);
        s.event(false, 2_000, 3, false, 160);
        assert_eq!(
            s.digits(),
            vec![
                pressed('3', 40, 0x5151, 2_000),
                pressed('4', 60, 0x5151, 4_000)
            ]
        );
        assert_eq!(s.detector.stats().repeats, 4);
    }

    #[test]
    fn an_event_whose_end_is_lost_is_reported_at_the_next_event_or_on_timeout() {
        let mut s = Sender::new();
        s.event(true, 1_000, 7, false, 160);
        s.event(false, 1_000, 7, false, 320);
        // The next press begins: the first one ended unseen.
        s.event(true, 3_000, 8, false, 160);
        assert_eq!(s.digits(), vec![pressed('7', 40, 0x5151, 1_000)]);
        let last = s.now - Duration::from_millis(20);
        assert_eq!(s.detector.poll_timeout(), Some(last + EVENT_TIMEOUT));
        s.detector
            .handle_timeout(last + EVENT_TIMEOUT - Duration::from_millis(1));
        assert_eq!(s.digits(), vec![]);
        s.detector.handle_timeout(last + EVENT_TIMEOUT);
        assert_eq!(s.digits(), vec![pressed('8', 20, 0x5151, 3_000)]);
        assert_eq!(s.detector.poll_timeout(), None);
        // Its end arriving after all changes nothing.
        s.event(false, 3_000, 8, true, 480);
        assert_eq!(s.digits(), vec![]);
        let stats = s.detector.stats();
        assert_eq!((stats.digits, stats.unended, stats.repeats), (2, 2, 1));
    }

    #[test]
    fn events_0_to_15_are_the_sixteen_keys_and_others_are_not_digits() {
        let keys: String = (0..16)
            .map(|e| Digit::from_event(e).unwrap().as_char())
            .collect();
        assert_eq!(keys, "0123456789*#ABCD");
        let mut s = Sender::new();
        let mut got = String::new();
        for event in 0..16u8 {
            s.event(false, 1_000 + u32::from(event) * 1_000, event, true, 400);
            got.extend(s.digits().iter().map(|d| d.digit.to_string()));
        }
        assert_eq!(got, "0123456789*#ABCD");
        // Not drained, the detector keeps the newest eight and counts the rest.
        for event in 0..16u8 {
            s.event(false, 50_000 + u32::from(event) * 1_000, event, true, 400);
        }
        let kept: String = s.digits().iter().map(|d| d.digit.to_string()).collect();
        assert_eq!(kept, "89*#ABCD");
        assert_eq!(s.detector.stats().dropped, 8);
        // Flash hook (16) is an event but not a key.
        s.event(false, 90_000, 16, true, 400);
        assert_eq!(s.digits(), vec![]);
        assert_eq!(s.detector.stats().other_events, 1);
        assert_eq!(Digit::from_event(16), None);
        assert_eq!(Digit::from_char('d'), Digit::from_event(15));
        assert_eq!(Digit::from_char('E'), None);
    }

    #[test]
    fn malformed_payloads_and_other_payload_types_are_not_digits() {
        let mut s = Sender::new();
        s.send_payload(EVENT_PT, true, 1_000, &[5, 0x80, 0]);
        s.send_payload(EVENT_PT, true, 1_000, &[]);
        s.send_payload(EVENT_PT, true, 1_000, &[5, 0x80, 0, 160, 1]);
        s.send_payload(Pt::PCMU, true, 1_000, &[5, 0x80, 0, 160]);
        assert_eq!(s.digits(), vec![]);
        assert_eq!(s.detector.stats().malformed, 3);
    }

    #[test]
    fn a_48_khz_event_clock_gives_the_duration_in_time() {
        let mut s = Sender::new();
        s.detector = DtmfDetector::new(EVENT_PT, 48_000);
        s.event(false, 96_000, 0, true, 4_800);
        assert_eq!(s.digits(), vec![pressed('0', 100, 0x5151, 96_000)]);
    }

    #[test]
    fn a_long_press_sent_in_segments_is_one_digit() {
        let mut s = Sender::new();
        let start = u32::MAX - 1_000;
        s.event(true, start, 2, false, 60_000);
        s.event(false, start, 2, false, u16::MAX);
        // The next segment starts where the first one's duration ran out (and wraps).
        let next = start.wrapping_add(u32::from(u16::MAX));
        s.event(false, next, 2, false, 8_000);
        s.event(false, next, 2, true, 16_000);
        s.event(false, next, 2, true, 16_000);
        // 81535 units at 8 kHz.
        assert_eq!(
            s.digits(),
            vec![DtmfDigit {
                duration: Some(Duration::from_micros(10_191_875)),
                ..pressed('2', 0, 0x5151, start)
            }]
        );
    }

    #[test]
    fn a_payload_packing_several_reports_is_read_report_by_report() {
        let mut s = Sender::new();
        // Event 1 ended after 800 units, then event 2 began where it ended.
        s.send_payload(EVENT_PT, false, 5_000, &[1, 0x8a, 3, 32, 2, 0x0a, 0, 160]);
        assert_eq!(s.digits(), vec![pressed('1', 100, 0x5151, 5_000)]);
        s.event(false, 5_800, 2, true, 320);
        assert_eq!(s.digits(), vec![pressed('2', 40, 0x5151, 5_800)]);
    }

    #[test]
    fn the_same_timestamp_from_another_ssrc_is_another_event() {
        let mut s = Sender::new();
        s.event(false, 1_000, 6, true, 160);
        s.ssrc = 0x6262;
        s.event(false, 1_000, 6, true, 160);
        assert_eq!(
            s.digits(),
            vec![
                pressed('6', 20, 0x5151, 1_000),
                pressed('6', 20, 0x6262, 1_000)
            ]
        );
    }

    fn info(digit: char, ms: Option<u64>) -> DtmfDigit {
        DtmfDigit {
            digit: Digit::from_char(digit).unwrap(),
            duration: ms.map(Duration::from_millis),
            position: None,
        }
    }

    #[test]
    fn dtmf_relay_bodies_parse_to_the_digit_and_duration() {
        let relay = "application/dtmf-relay";
        assert_eq!(
            parse_info(relay, b"Signal=5\r\nDuration=160\r\n"),
            Ok(info('5', Some(160)))
        );
        assert_eq!(
            parse_info(relay, b"signal= *\nduration = 250"),
            Ok(info('*', Some(250)))
        );
        assert_eq!(parse_info(relay, b"Signal=10\r\n"), Ok(info('*', None)));
        assert_eq!(parse_dtmf_relay(b"Signal=11"), Ok(info('#', None)));
        assert_eq!(parse_info(relay, b"Signal=d\r\n\r\n"), Ok(info('D', None)));
        assert_eq!(
            parse_info(
                "Application/DTMF-Relay; charset=UTF-8",
                b"Volume=10\r\nSignal=0\r\nDuration=100"
            ),
            Ok(info('0', Some(100)))
        );
        // The same digit type as RTP's.
        let mut s = Sender::new();
        s.event(false, 1_000, 5, true, 1_280);
        let rtp = s.digits()[0];
        let sip = parse_info(relay, b"Signal=5\r\nDuration=160\r\n").unwrap();
        assert_eq!((rtp.digit, rtp.duration), (sip.digit, sip.duration));
    }

    #[test]
    fn dtmf_bodies_are_the_key_alone() {
        assert_eq!(parse_info("application/dtmf", b"5"), Ok(info('5', None)));
        assert_eq!(
            parse_info("APPLICATION/DTMF", b" #\r\n"),
            Ok(info('#', None))
        );
        assert_eq!(parse_dtmf(b"b"), Ok(info('B', None)));
        assert_eq!(parse_dtmf(b"12"), Ok(info('A', None)));
    }

    #[test]
    fn bad_info_bodies_are_errors_with_a_status() {
        let relay = |body: &[u8]| parse_info("application/dtmf-relay", body);
        assert_eq!(relay(b""), Err(DtmfError::MissingSignal));
        assert_eq!(relay(b"Duration=100\r\n"), Err(DtmfError::MissingSignal));
        assert_eq!(relay(b"Signal=\r\n"), Err(DtmfError::MissingSignal));
        assert_eq!(relay(b"Signal=E"), Err(DtmfError::BadSignal("E".into())));
        assert_eq!(relay(b"Signal=16"), Err(DtmfError::BadSignal("16".into())));
        assert_eq!(relay(b"Signal=55"), Err(DtmfError::BadSignal("55".into())));
        assert_eq!(relay(b"Signal=5x"), Err(DtmfError::BadSignal("5x".into())));
        assert_eq!(
            relay(b"Signal=5\r\nDuration=abc"),
            Err(DtmfError::BadDuration("abc".into()))
        );
        assert_eq!(
            relay(b"Signal=5\r\nDuration=+5"),
            Err(DtmfError::BadDuration("+5".into()))
        );
        assert_eq!(
            relay(b"Signal=5\r\nDuration=99999999999"),
            Err(DtmfError::BadDuration("99999999999".into()))
        );
        assert_eq!(
            relay(b"Signal=1\r\nSignal=2"),
            Err(DtmfError::DuplicateField("Signal"))
        );
        assert_eq!(
            relay(b"Signal=1\r\nDuration=1\r\nDuration=2"),
            Err(DtmfError::DuplicateField("Duration"))
        );
        assert_eq!(relay(b"hello"), Err(DtmfError::BadLine("hello".into())));
        assert_eq!(relay(&[b'S', 0xff, 0xfe]), Err(DtmfError::NotText));
        let long = format!("Signal={}", "9".repeat(100));
        assert_eq!(
            relay(long.as_bytes()),
            Err(DtmfError::BadSignal("9".repeat(32)))
        );
        assert_eq!(parse_dtmf(b""), Err(DtmfError::MissingSignal));
        assert_eq!(parse_dtmf(b" \r\n"), Err(DtmfError::MissingSignal));
        assert_eq!(parse_dtmf(b"55"), Err(DtmfError::BadSignal("55".into())));
        assert_eq!(parse_dtmf(b"x"), Err(DtmfError::BadSignal("x".into())));
        let other = parse_info("text/plain", b"5");
        assert_eq!(
            other,
            Err(DtmfError::UnsupportedContentType("text/plain".into()))
        );
        assert_eq!(other.unwrap_err().status(), 415);
        assert_eq!(relay(b"Signal=E").unwrap_err().status(), 400);
    }

    #[test]
    fn no_payload_upsets_the_detector() {
        // Seeded garbage of every length, from two sources, on few timestamps.
        let mut s = Sender::new();
        let mut x = 7u64;
        let mut next = || {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (x >> 33) as u32
        };
        let mut polled = 0;
        for _ in 0..20_000 {
            let len = (next() % 10) as usize;
            let payload: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            s.ssrc = next() % 2;
            let ts = next() % 8;
            s.send_payload(EVENT_PT, next() % 2 == 0, ts, &payload);
            if next() % 50 == 0 {
                s.now += EVENT_TIMEOUT;
                s.detector.handle_timeout(s.now);
            }
            for d in s.digits() {
                assert!(d.digit.event() < 16);
                assert!(d.position.is_some_and(|p| p.ssrc.0 < 2));
                polled += 1;
            }
        }
        let stats = s.detector.stats();
        assert_eq!((stats.digits, stats.dropped), (polled, 0));
        assert!(
            stats.digits > 100 && stats.malformed > 100 && stats.repeats > 100,
            "{stats:?}"
        );
    }
}
