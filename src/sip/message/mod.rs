//! SIP messages (RFC 3261 §7, §20, §25): vca-sip's own message type, a lazy zero-copy parser
//! over [`Bytes`], and the serialisers for the responses and requests a UAS sends.
//!
//! Parsing is in two steps. [`Message::parse`] indexes the header section once (start line,
//! one name/value slice per header line, folding turned into spaces, compact names
//! resolved) and checks only the start line and the body bounds. Typed values (`Via`, `From`,
//! `CSeq`, ...) are parsed from their slice when the caller asks for them and borrow from
//! the message, so a hop pays only for the headers it reads.
//!
//! Body bounds follow §18.3: with a Content-Length the body is that many octets after the
//! header section (fewer is an error, octets beyond it are ignored, as on a datagram); with
//! none the body is the rest of the input. Stream framing, which requires Content-Length,
//! lives in [`crate::sip::framing`].

use std::fmt::Write as _;

mod build;
mod index;
mod names;
mod parse;
mod uri;
mod values;

pub use build::*;
pub use index::*;
use names::*;
pub use parse::*;
pub use uri::*;
pub use values::*;

pub use crate::kinds::Method;

/// Longest header line accepted (§21.5.7 513 territory; also a memory bound).
pub const MAX_LINE: usize = 8 * 1024;
/// Largest header section accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// Most header lines indexed in one message.
pub const MAX_HEADER_LINES: usize = 256;
/// Most Via values a request may carry before it is refused.
pub const MAX_VIAS: usize = 100;

/// Why a message, or one of its headers, could not be parsed.
///
/// [`ParseError::status`] maps each variant to the SIP status a UAS answers with, when a
/// response can be addressed at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// No start line: the input is empty or only line breaks.
    #[error("empty message")]
    Empty,
    /// The start line is neither a Request-Line nor a Status-Line.
    #[error("malformed start line")]
    BadStartLine,
    /// The SIP version is well formed but not SIP/2.0.
    #[error("unsupported SIP version")]
    BadVersion,
    /// The Request-URI does not parse, or carries headers (§19.1.1).
    #[error("malformed Request-URI")]
    BadRequestUri,
    /// A header line has no colon or no valid name.
    #[error("malformed header line")]
    BadHeaderLine,
    /// A required header is absent.
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    /// A header value does not parse.
    #[error("malformed {0} header")]
    BadHeader(&'static str),
    /// A single-valued header appears more than once with different values.
    #[error("conflicting {0} headers")]
    DuplicateHeader(&'static str),
    /// The CSeq method is not the request method (§8.2.6 400).
    #[error("CSeq method does not match the request method")]
    CSeqMethodMismatch,
    /// Content-Length announces more octets than the message holds.
    #[error("body shorter than Content-Length")]
    ContentLengthMismatch,
    /// A header line is longer than [`MAX_LINE`].
    #[error("header line too long")]
    LineTooLong,
    /// The header section is larger than [`MAX_HEAD`] or has more than
    /// [`MAX_HEADER_LINES`] lines.
    #[error("header section too large")]
    HeadTooLarge,
    /// More than [`MAX_VIAS`] Via values.
    #[error("too many Via values")]
    TooManyVias,
}

impl ParseError {
    /// The status a UAS answers with (§21.4.1 400, §21.5.7 513, §21.5.6 505).
    pub fn status(&self) -> u16 {
        match self {
            ParseError::BadVersion => 505,
            ParseError::LineTooLong | ParseError::HeadTooLarge | ParseError::TooManyVias => 513,
            _ => 400,
        }
    }

    /// A reason phrase naming what was wrong; never contains input-derived text.
    pub fn reason(&self) -> String {
        match self {
            ParseError::BadVersion => "Version Not Supported".to_owned(),
            ParseError::LineTooLong | ParseError::HeadTooLarge | ParseError::TooManyVias => {
                "Message Too Large".to_owned()
            }
            ParseError::MissingHeader(h) => format!("Missing {h} Header"),
            ParseError::BadHeader(h) => format!("Bad {h} Header"),
            ParseError::DuplicateHeader(h) => format!("Conflicting {h} Headers"),
            ParseError::CSeqMethodMismatch => "CSeq Method Mismatch".to_owned(),
            ParseError::ContentLengthMismatch => "Bad Content-Length".to_owned(),
            ParseError::BadRequestUri => "Bad Request-URI".to_owned(),
            ParseError::BadStartLine => "Bad Request-Line".to_owned(),
            ParseError::BadHeaderLine => "Bad Header Line".to_owned(),
            ParseError::Empty => "Bad Request".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests;
