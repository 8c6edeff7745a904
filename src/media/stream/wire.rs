//! The JSON both dialects share: strings written escaped (RFC 8259 §7), the identifiers of a
//! stream escaped once, and the agent's messages read without copying their payload.
//!
//! Outgoing messages are written by hand into reused buffers, since the caller's audio makes
//! one every 20 ms; incoming ones are read by serde into borrowed fields. What the agent
//! sends has the same shape in both dialects for the fields read here (`event`,
//! `media.payload`, `mark.name`); its stream identifier (`streamSid` or `stream_sid`) is
//! not read, since a socket carries one stream.

use std::borrow::Cow;
use std::fmt::Write;

use serde::Deserialize;

/// Appends `s` to `out` as a JSON string, quotes included.
pub(super) fn push_str(out: &mut String, s: &str) {
    out.push('"');
    let mut plain = 0;
    for (i, c) in s.char_indices() {
        let escape = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            c if u32::from(c) < 0x20 => "",
            _ => continue,
        };
        out.push_str(&s[plain..i]);
        if escape.is_empty() {
            // Writing to a String cannot fail.
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push_str(escape);
        }
        plain = i + c.len_utf8();
    }
    out.push_str(&s[plain..]);
    out.push('"');
}

/// A stream's identifiers, each already a JSON string.
#[derive(Debug, Clone)]
pub(super) struct Ids {
    pub stream_sid: String,
    pub account_sid: String,
    pub call_sid: String,
}

impl Ids {
    pub fn new(stream_sid: &str, account_sid: &str, call_sid: &str) -> Self {
        let json = |s: &str| {
            let mut out = String::with_capacity(s.len() + 2);
            push_str(&mut out, s);
            out
        };
        Ids {
            stream_sid: json(stream_sid),
            account_sid: json(account_sid),
            call_sid: json(call_sid),
        }
    }
}

/// What the agent sent, as far as the session reads it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum AgentMessage<'a> {
    /// Audio to queue: base64 of the dialect's encoding, not yet decoded.
    Media(Option<Cow<'a, str>>),
    /// A mark to echo once the audio before it is played.
    Mark(Option<Cow<'a, str>>),
    /// Drop the queued audio.
    Clear,
    /// The agent ends the stream.
    Stop,
    /// Any other event, ignored.
    Other,
}

/// Why an agent's message could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReadError {
    /// Not JSON text.
    NotJson,
    /// JSON, but not an object with a string `event`, or a field read here of the wrong type.
    Malformed,
}

#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(borrow)]
    event: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    media: Option<Body<'a>>,
    #[serde(borrow, default)]
    mark: Option<Body<'a>>,
}

/// `media` and `mark` bodies: only their payload or name is read.
#[derive(Deserialize)]
struct Body<'a> {
    #[serde(borrow, default)]
    payload: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
}

/// Reads one text message from the agent.
pub(super) fn read(text: &str) -> Result<AgentMessage<'_>, ReadError> {
    let incoming: Incoming<'_> = serde_json::from_str(text).map_err(|e| {
        if e.is_data() {
            ReadError::Malformed
        } else {
            ReadError::NotJson
        }
    })?;
    let Some(event) = incoming.event else {
        return Err(ReadError::Malformed);
    };
    Ok(match &*event {
        "media" => AgentMessage::Media(incoming.media.and_then(|m| m.payload)),
        "mark" => AgentMessage::Mark(incoming.mark.and_then(|m| m.name)),
        "clear" => AgentMessage::Clear,
        "stop" => AgentMessage::Stop,
        _ => AgentMessage::Other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_so_that_json_reads_them_back() {
        for s in [
            "",
            "plain",
            "quote \" and backslash \\",
            "line\nfeed\r\ttab",
            "\u{0}\u{1f} controls",
            "ünïcode ☎ +33",
        ] {
            let mut out = String::from("x");
            push_str(&mut out, s);
            let back: String = serde_json::from_str(&out[1..]).unwrap();
            assert_eq!(back, s);
        }
        let mut out = String::new();
        push_str(&mut out, "a\u{1}b");
        assert_eq!(out, r#""a\u0001b""#);
    }

    #[test]
    fn agent_messages_of_both_dialects() {
        let twilio = r#"{"event":"media","streamSid":"MZ1","media":{"payload":"//8="}}"#;
        assert_eq!(read(twilio), Ok(AgentMessage::Media(Some("//8=".into()))));
        let exotel = r#"{"event":"media","stream_sid":"s","media":{"payload":"AAA="}}"#;
        assert_eq!(read(exotel), Ok(AgentMessage::Media(Some("AAA=".into()))));
        // An escaped solidus is read (into an owned string).
        let escaped = r#"{"event":"media","media":{"payload":"\/\/8="}}"#;
        assert_eq!(read(escaped), Ok(AgentMessage::Media(Some("//8=".into()))));
        assert_eq!(
            read(r#"{"event":"mark","mark":{"name":"m1"}}"#),
            Ok(AgentMessage::Mark(Some("m1".into())))
        );
        assert_eq!(read(r#"{"event":"mark"}"#), Ok(AgentMessage::Mark(None)));
        assert_eq!(
            read(r#"{"event":"media","media":{}}"#),
            Ok(AgentMessage::Media(None))
        );
        assert_eq!(
            read(r#"{"event":"clear","streamSid":"MZ1"}"#),
            Ok(AgentMessage::Clear)
        );
        assert_eq!(read(r#"{"event":"stop"}"#), Ok(AgentMessage::Stop));
        assert_eq!(
            read(r#"{"event":"connected","x":[1,2]}"#),
            Ok(AgentMessage::Other)
        );
    }

    #[test]
    fn unreadable_messages() {
        assert_eq!(read("not json"), Err(ReadError::NotJson));
        assert_eq!(read(r#"{"event":"media""#), Err(ReadError::NotJson));
        assert_eq!(read(""), Err(ReadError::NotJson));
        assert_eq!(read("[1,2]"), Err(ReadError::Malformed));
        assert_eq!(read(r#"{"media":{}}"#), Err(ReadError::Malformed));
        assert_eq!(read(r#"{"event":5}"#), Err(ReadError::Malformed));
        assert_eq!(
            read(r#"{"event":"media","media":{"payload":7}}"#),
            Err(ReadError::Malformed)
        );
        assert_eq!(
            read(r#"{"event":"mark","mark":"m"}"#),
            Err(ReadError::Malformed)
        );
    }
}
