//! Header names vca-sip recognises, long and compact (RFC 3261 §7.3.3, §20).

/// Headers vca-sip recognises by name (long and compact form, §7.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Name {
    Via,
    From,
    To,
    CallId,
    CSeq,
    MaxForwards,
    Contact,
    Require,
    Supported,
    ContentLength,
    ContentType,
    ContentEncoding,
    Authorization,
    SessionExpires,
    MinSe,
    Route,
    RecordRoute,
    UserAgent,
    PCalledPartyId,
    Accept,
    Subject,
    Event,
    ReferTo,
    ReferredBy,
    AllowEvents,
    Other,
}

impl Name {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Name::Via => "Via",
            Name::From => "From",
            Name::To => "To",
            Name::CallId => "Call-ID",
            Name::CSeq => "CSeq",
            Name::MaxForwards => "Max-Forwards",
            Name::Contact => "Contact",
            Name::Require => "Require",
            Name::Supported => "Supported",
            Name::ContentLength => "Content-Length",
            Name::ContentType => "Content-Type",
            Name::ContentEncoding => "Content-Encoding",
            Name::Authorization => "Authorization",
            Name::SessionExpires => "Session-Expires",
            Name::MinSe => "Min-SE",
            Name::Route => "Route",
            Name::RecordRoute => "Record-Route",
            Name::UserAgent => "User-Agent",
            Name::PCalledPartyId => "P-Called-Party-ID",
            Name::Accept => "Accept",
            Name::Subject => "Subject",
            Name::Event => "Event",
            Name::ReferTo => "Refer-To",
            Name::ReferredBy => "Referred-By",
            Name::AllowEvents => "Allow-Events",
            Name::Other => "",
        }
    }

    /// Classifies a header name, case-insensitively, compact forms included.
    pub(super) fn classify(name: &[u8]) -> Name {
        if let [c] = name {
            return match c.to_ascii_lowercase() {
                b'v' => Name::Via,
                b'f' => Name::From,
                b't' => Name::To,
                b'i' => Name::CallId,
                b'm' => Name::Contact,
                b'k' => Name::Supported,
                b'l' => Name::ContentLength,
                b'c' => Name::ContentType,
                b'e' => Name::ContentEncoding,
                b'x' => Name::SessionExpires,
                b's' => Name::Subject,
                b'o' => Name::Event,
                b'r' => Name::ReferTo,
                b'b' => Name::ReferredBy,
                b'u' => Name::AllowEvents,
                _ => Name::Other,
            };
        }
        // Length and first letter leave at most one candidate, compared once.
        let first = name.first().map_or(0, u8::to_ascii_lowercase);
        let second = name.get(1).map_or(0, u8::to_ascii_lowercase);
        let candidate = match (name.len(), first) {
            (2, _) => Name::To,
            (3, _) => Name::Via,
            (4, b'f') => Name::From,
            (4, b'c') => Name::CSeq,
            (5, b'r') => Name::Route,
            (5, b'e') => Name::Event,
            (6, b'a') => Name::Accept,
            (6, b'm') => Name::MinSe,
            (7, b'c') if second == b'a' => Name::CallId,
            (7, b'c') => Name::Contact,
            (7, b'r') => Name::Require,
            (7, b's') => Name::Subject,
            (8, _) => Name::ReferTo,
            (9, _) => Name::Supported,
            (10, _) => Name::UserAgent,
            (11, _) => Name::ReferredBy,
            (12, b'm') => Name::MaxForwards,
            (12, b'c') => Name::ContentType,
            (12, b'r') => Name::RecordRoute,
            (12, b'a') => Name::AllowEvents,
            (13, _) => Name::Authorization,
            (14, _) => Name::ContentLength,
            (15, _) => Name::SessionExpires,
            (16, _) => Name::ContentEncoding,
            (17, _) => Name::PCalledPartyId,
            _ => return Name::Other,
        };
        // The names above hold only letters and '-'. Setting bit 0x20 lowercases a letter
        // and keeps '-'; the only other octet it maps onto one of them is CR (onto '-'), so
        // with CR refused this is `eq_ignore_ascii_case` without a branch per octet.
        let known = candidate.as_str().as_bytes();
        let differ = known.iter().zip(name).fold(0u8, |acc, (&k, &n)| {
            acc | ((k | 0x20) ^ (n | 0x20)) | u8::from(n == b'\r')
        });
        if differ == 0 && known.len() == name.len() {
            return candidate;
        }
        Name::Other
    }
}
