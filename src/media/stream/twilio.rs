//! The Twilio Media Streams dialect: camelCase messages, µ-law audio (G.711, 8 kHz mono)
//! in base64, and `sequenceNumber`, `chunk` and `timestamp` as decimal strings.
//!
//! ```text
//!   {"event":"connected","protocol":"Call","version":"1.0.0"}
//!   {"event":"start","sequenceNumber":"1","streamSid":S,"start":{"streamSid":S,
//!     "accountSid":A,"callSid":C,"tracks":["inbound"],"customParameters":{..},
//!     "mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}
//!   {"event":"media","sequenceNumber":"2","streamSid":S,
//!     "media":{"track":"inbound","chunk":"1","timestamp":"20","payload":"<160 bytes>"}}
//!   {"event":"dtmf","sequenceNumber":"3","streamSid":S,"dtmf":{"track":"inbound_track","digit":"5"}}
//!   {"event":"mark","sequenceNumber":"4","streamSid":S,"mark":{"name":"m"}}
//!   {"event":"stop","sequenceNumber":"5","streamSid":S,"stop":{"accountSid":A,"callSid":C}}
//! ```
//!
//! Pipecat's `TwilioFrameSerializer` and its runner read this shape unchanged: the runner
//! takes `start.streamSid`, `start.callSid` and `start.customParameters` from the second
//! message; the serializer decodes `media.payload` and `dtmf.digit`. From the agent come
//! `media` (µ-law of any length), `mark` and `clear`.

use std::collections::BTreeMap;
use std::fmt::Write;

use base64::Engine;

use super::wire::{Ids, push_str};
use crate::media::g711;

pub(super) fn connected(out: &mut String) {
    out.push_str(r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#);
}

/// `"event":E,"sequenceNumber":"N","streamSid":S`, the head of every numbered message.
fn head(out: &mut String, event: &str, seq: u64, ids: &Ids) {
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        r#"{{"event":"{event}","sequenceNumber":"{seq}","streamSid":{}"#,
        ids.stream_sid
    );
}

pub(super) fn start(out: &mut String, seq: u64, ids: &Ids, params: &BTreeMap<String, String>) {
    head(out, "start", seq, ids);
    let _ = write!(
        out,
        r#","start":{{"streamSid":{},"accountSid":{},"callSid":{},"tracks":["inbound"],"customParameters":{{"#,
        ids.stream_sid, ids.account_sid, ids.call_sid
    );
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(out, k);
        out.push(':');
        push_str(out, v);
    }
    out.push_str(
        r#"},"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#,
    );
}

/// A media message of the caller's audio: `samples` µ-law encoded (through `scratch`).
pub(super) fn media(
    out: &mut String,
    seq: u64,
    ids: &Ids,
    chunk: u64,
    timestamp_ms: u64,
    samples: &[i16],
    scratch: &mut Vec<u8>,
) {
    head(out, "media", seq, ids);
    let _ = write!(
        out,
        r#","media":{{"track":"inbound","chunk":"{chunk}","timestamp":"{timestamp_ms}","payload":""#
    );
    scratch.clear();
    scratch.extend(samples.iter().map(|&s| g711::linear_to_ulaw(s)));
    base64::engine::general_purpose::STANDARD.encode_string(&scratch, out);
    out.push_str(r#""}}"#);
}

pub(super) fn dtmf(out: &mut String, seq: u64, ids: &Ids, digit: char) {
    head(out, "dtmf", seq, ids);
    let _ = write!(
        out,
        r#","dtmf":{{"track":"inbound_track","digit":"{digit}"}}}}"#
    );
}

pub(super) fn mark(out: &mut String, seq: u64, ids: &Ids, name: &str) {
    head(out, "mark", seq, ids);
    out.push_str(r#","mark":{"name":"#);
    push_str(out, name);
    out.push_str("}}");
}

pub(super) fn stop(out: &mut String, seq: u64, ids: &Ids) {
    head(out, "stop", seq, ids);
    let _ = write!(
        out,
        r#","stop":{{"accountSid":{},"callSid":{}}}}}"#,
        ids.account_sid, ids.call_sid
    );
}

/// Queues the agent's µ-law `payload` (decoded from base64) as linear samples.
pub(super) fn samples(payload: &[u8]) -> impl ExactSizeIterator<Item = i16> + '_ {
    payload.iter().map(|&c| g711::ulaw_to_linear(c))
}
