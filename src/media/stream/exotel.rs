//! The Exotel dialect (its Voicebot applet's stream): snake_case messages, 16-bit
//! little-endian linear PCM (8 kHz mono) in base64, `sequence_number` and `chunk` as
//! numbers and `timestamp` as a decimal string.
//!
//! ```text
//!   {"event":"connected"}
//!   {"event":"start","sequence_number":1,"stream_sid":S,"start":{"stream_sid":S,
//!     "call_sid":C,"account_sid":A,"from":F,"to":T,"custom_parameters":{..},
//!     "media_format":{"encoding":"base64","sample_rate":"8000","bit_rate":"128kbps"}}}
//!   {"event":"media","sequence_number":2,"stream_sid":S,
//!     "media":{"chunk":1,"timestamp":"20","payload":"<320 bytes>"}}
//!   {"event":"dtmf","sequence_number":3,"stream_sid":S,"dtmf":{"digit":"5","duration":"160"}}
//!   {"event":"mark","sequence_number":4,"stream_sid":S,"mark":{"name":"m"}}
//!   {"event":"stop","sequence_number":5,"stream_sid":S,
//!     "stop":{"call_sid":C,"account_sid":A,"reason":"callended"}}
//! ```
//!
//! Pipecat's runner recognises this shape by `start.stream_sid`, `start.call_sid` and
//! `start.account_sid`, and takes `start.from`, `start.to` and `start.custom_parameters`;
//! `from` and `to` are the custom parameters of those names (empty when absent). Its
//! `ExotelFrameSerializer` decodes `media.payload` as PCM and `dtmf.digit`, and sends back
//! `media` (PCM, a whole number of samples, in any length) and `clear`.

use std::collections::BTreeMap;
use std::fmt::Write;

use base64::Engine;

use super::wire::{Ids, push_str};

pub(super) fn connected(out: &mut String) {
    out.push_str(r#"{"event":"connected"}"#);
}

/// `"event":E,"sequence_number":N,"stream_sid":S`, the head of every numbered message.
fn head(out: &mut String, event: &str, seq: u64, ids: &Ids) {
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        r#"{{"event":"{event}","sequence_number":{seq},"stream_sid":{}"#,
        ids.stream_sid
    );
}

pub(super) fn start(out: &mut String, seq: u64, ids: &Ids, params: &BTreeMap<String, String>) {
    head(out, "start", seq, ids);
    let _ = write!(
        out,
        r#","start":{{"stream_sid":{},"call_sid":{},"account_sid":{},"from":"#,
        ids.stream_sid, ids.call_sid, ids.account_sid
    );
    push_str(out, params.get("from").map_or("", String::as_str));
    out.push_str(r#","to":"#);
    push_str(out, params.get("to").map_or("", String::as_str));
    out.push_str(r#","custom_parameters":{"#);
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(out, k);
        out.push(':');
        push_str(out, v);
    }
    out.push_str(
        r#"},"media_format":{"encoding":"base64","sample_rate":"8000","bit_rate":"128kbps"}}}"#,
    );
}

/// A media message of the caller's audio: `samples` as little-endian bytes (through
/// `scratch`).
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
        r#","media":{{"chunk":{chunk},"timestamp":"{timestamp_ms}","payload":""#
    );
    scratch.clear();
    scratch.extend(samples.iter().flat_map(|s| s.to_le_bytes()));
    base64::engine::general_purpose::STANDARD.encode_string(&scratch, out);
    out.push_str(r#""}}"#);
}

pub(super) fn dtmf(out: &mut String, seq: u64, ids: &Ids, digit: char, duration_ms: u64) {
    head(out, "dtmf", seq, ids);
    let _ = write!(
        out,
        r#","dtmf":{{"digit":"{digit}","duration":"{duration_ms}"}}}}"#
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
        r#","stop":{{"call_sid":{},"account_sid":{},"reason":"callended"}}}}"#,
        ids.call_sid, ids.account_sid
    );
}

/// The agent's PCM `payload` (decoded from base64) as samples, or `None` when it is not a
/// whole number of them.
pub(super) fn samples(payload: &[u8]) -> Option<impl ExactSizeIterator<Item = i16> + '_> {
    if !payload.len().is_multiple_of(2) {
        return None;
    }
    Some(
        payload
            .chunks_exact(2)
            .map(|pair| i16::from_le_bytes([pair[0], pair[1]])),
    )
}
