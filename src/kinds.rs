//! The closed vocabularies every layer speaks (RFC 3261 §7.1 methods, §18 transports, RFC 3551
//! G.711 codecs, RFC 8760 digest algorithms), one type each.
//!
//! This module imports no other module of the crate, so sip, transport, store, api and media
//! all use the same [`Transport`], [`Method`], [`Codec`] and [`DigestAlgorithm`] and nothing
//! converts between look-alikes. Each type that is stored or shown by the API carries its
//! text form once: the same text in the database, in JSON and in the OpenAPI document.
//!
//! Two restrictions of [`Transport`] exist because what they hold is narrower than a SIP
//! transport, and both keep the text of their values:
//! - [`TrunkTransport`]: what a trunk may be configured with (udp, tcp, tls); a trunk's
//!   carrier does not reach vca-sip over WebSocket, so anything else is refused when it is
//!   configured.
//! - [`CallTransport`]: what a call record says its signalling arrived on, a SIP transport
//!   or `webrtc`, a browser's call set up by HTTP offer/answer. `webrtc` is not a SIP
//!   transport, so it is not a [`Transport`] variant: no SIP code has to handle it.

use bytestring::ByteString;
use md5::Md5;
use sha2::{Digest, Sha256};

/// Declares an enum stored as text (checked by the database) and spoken as the same text in
/// JSON and in the OpenAPI document. The text is taken as a token tree, not a `literal`
/// fragment: a fragment reaches the derives wrapped in an invisible group, which serde reads
/// through but utoipa does not, so the document would name the Rust variants instead of the
/// JSON values.
macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident {
        $($(#[$vdoc:meta])* $variant:ident => $text:tt),+ $(,)?
    }) => {
        // The derives come first so that `#[schema(..)]` may be among the attributes.
        #[derive(
            Clone,
            Copy,
            Debug,
            PartialEq,
            Eq,
            Hash,
            ::serde::Serialize,
            ::serde::Deserialize,
            ::utoipa::ToSchema,
        )]
        $(#[$doc])*
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        $crate::kinds::text_sql!($name);
    };
}
pub(crate) use text_enum;

/// sqlx text encoding for a type with `as_str` and `parse`, so that both backends store the
/// text form.
macro_rules! text_sql {
    ($name:ident) => {
        impl<DB: sqlx::Database> sqlx::Type<DB> for $name
        where
            str: sqlx::Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <str as sqlx::Type<DB>>::type_info()
            }
            fn compatible(ty: &DB::TypeInfo) -> bool {
                <str as sqlx::Type<DB>>::compatible(ty)
            }
        }

        impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for $name
        where
            &'q str: sqlx::Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut <DB as sqlx::Database>::ArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&'q str as sqlx::Encode<'q, DB>>::encode(self.as_str(), buf)
            }
        }

        impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for $name
        where
            &'r str: sqlx::Decode<'r, DB>,
        {
            fn decode(
                value: <DB as sqlx::Database>::ValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                let text = <&'r str as sqlx::Decode<'r, DB>>::decode(value)?;
                $name::parse(text)
                    .ok_or_else(|| format!("{text:?} is not a {}", stringify!($name)).into())
            }
        }
    };
}
pub(crate) use text_sql;

/// Text, JSON and OpenAPI forms of a restriction of another text type: what [`text_enum!`]
/// derives, written out because the type is not a plain enum. The JSON error for a value
/// outside the type is serde's own for an enum ("unknown variant `x`, expected one of ..."),
/// so an API client sees the same answer as for a derived enum.
macro_rules! text_restriction {
    ($name:ident, $schema:literal, $description:literal, [$($text:literal),+ $(,)?]) => {
        impl $name {
            /// Every text form, in the order the OpenAPI document lists them.
            pub const TEXTS: &'static [&'static str] = &[$($text),+];
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct Text;
                impl serde::de::Visitor<'_> for Text {
                    type Value = $name;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str(concat!("enum ", $schema))
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$name, E> {
                        $name::parse(v).ok_or_else(|| E::unknown_variant(v, $name::TEXTS))
                    }
                }
                d.deserialize_str(Text)
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
                ObjectBuilder::new()
                    .schema_type(SchemaType::new(Type::String))
                    .description(Some($description))
                    .enum_values(Some([$($text),+]))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {
            fn name() -> std::borrow::Cow<'static, str> {
                std::borrow::Cow::Borrowed($schema)
            }
        }

        text_sql!($name);
    };
}

// ---------------------------------------------------------------------------------------
// Transports

text_enum!(
    /// The transport a SIP message travels on (RFC 3261 §18, RFC 7118 for WebSocket).
    Transport {
        Udp => "udp",
        Tcp => "tcp",
        Tls => "tls",
        /// SIP over WebSocket (RFC 7118): one message per WebSocket message.
        Ws => "ws",
        /// SIP over secure WebSocket (RFC 7118).
        Wss => "wss",
    }
);

impl Transport {
    /// Whether the transport delivers or reports an error by itself (§17: over a reliable
    /// transport the transaction machines never retransmit, and Timers I, J and K are zero).
    pub fn is_reliable(self) -> bool {
        self != Transport::Udp
    }

    /// Whether messages are framed by Content-Length on a byte stream (§18.3).
    pub fn is_stream(self) -> bool {
        matches!(self, Transport::Tcp | Transport::Tls)
    }
}

/// The transport a trunk's carrier sends and receives SIP on: UDP, TCP or TLS, never a
/// WebSocket (which only browsers use).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TrunkTransport(Transport);

impl TrunkTransport {
    pub const UDP: TrunkTransport = TrunkTransport(Transport::Udp);
    pub const TCP: TrunkTransport = TrunkTransport(Transport::Tcp);
    pub const TLS: TrunkTransport = TrunkTransport(Transport::Tls);

    /// The trunk transport for `transport`, `None` for a WebSocket.
    pub fn new(transport: Transport) -> Option<TrunkTransport> {
        matches!(transport, Transport::Udp | Transport::Tcp | Transport::Tls)
            .then_some(TrunkTransport(transport))
    }

    /// The SIP transport.
    pub fn get(self) -> Transport {
        self.0
    }

    pub fn as_str(self) -> &'static str {
        self.0.as_str()
    }

    pub fn parse(text: &str) -> Option<TrunkTransport> {
        Transport::parse(text).and_then(TrunkTransport::new)
    }
}

text_restriction!(
    TrunkTransport,
    "TrunkTransport",
    "The transport a trunk's carrier sends and receives SIP on.",
    ["udp", "tcp", "tls"]
);

/// What a call record says the call's signalling arrived on: a SIP transport, or `webrtc`
/// for a browser's call set up by HTTP offer/answer, which has no SIP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallTransport {
    Sip(Transport),
    Webrtc,
}

impl CallTransport {
    pub fn as_str(self) -> &'static str {
        match self {
            CallTransport::Sip(transport) => transport.as_str(),
            CallTransport::Webrtc => "webrtc",
        }
    }

    pub fn parse(text: &str) -> Option<CallTransport> {
        match text {
            "webrtc" => Some(CallTransport::Webrtc),
            other => Transport::parse(other).map(CallTransport::Sip),
        }
    }
}

impl From<Transport> for CallTransport {
    fn from(transport: Transport) -> Self {
        CallTransport::Sip(transport)
    }
}

text_restriction!(
    CallTransport,
    "SipTransport",
    "The transport a call's signalling arrived on; `webrtc` for a browser's call set up\nby HTTP offer/answer, which has no SIP transport.",
    ["udp", "tcp", "tls", "ws", "wss", "webrtc"]
);

// ---------------------------------------------------------------------------------------
// Methods

/// A request method (RFC 3261 §7.1, §27.4). Known methods compare without touching bytes;
/// an extension method keeps its token, shared with the message it came in (no copy).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// INVITE (§13).
    Invite,
    /// ACK: matches the INVITE transaction it acknowledges (§17.2.3).
    Ack,
    /// BYE (§15).
    Bye,
    /// CANCEL: matches the INVITE's key but is its own transaction (§9.2).
    Cancel,
    /// OPTIONS (§11).
    Options,
    Register,
    Update,
    Info,
    Prack,
    Subscribe,
    Notify,
    Message,
    Refer,
    Publish,
    /// Any other token, as received (methods are case-sensitive, §7.1).
    Other(ByteString),
}

impl Method {
    /// The known method a token names, `None` for an extension method.
    pub fn known(token: &str) -> Option<Method> {
        Some(match token {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "REGISTER" => Method::Register,
            "UPDATE" => Method::Update,
            "INFO" => Method::Info,
            "PRACK" => Method::Prack,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "MESSAGE" => Method::Message,
            "REFER" => Method::Refer,
            "PUBLISH" => Method::Publish,
            _ => return None,
        })
    }

    /// Classifies a token it owns (case-sensitive, as §7.1 requires). Does not allocate.
    pub fn from_token(token: ByteString) -> Method {
        Method::known(&token).unwrap_or(Method::Other(token))
    }

    /// Classifies a borrowed token; only an extension method copies it.
    pub fn parse(token: &str) -> Method {
        Method::known(token).unwrap_or_else(|| Method::Other(ByteString::from(token)))
    }

    /// The method token.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Update => "UPDATE",
            Method::Info => "INFO",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Message => "MESSAGE",
            Method::Refer => "REFER",
            Method::Publish => "PUBLISH",
            Method::Other(token) => token,
        }
    }

    /// The method token as octets.
    pub fn as_bytes(&self) -> &[u8] {
        self.as_str().as_bytes()
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------------------
// Codecs

text_enum!(
    /// An audio codec. Both are 8 kHz G.711 with static payload types (RFC 3551); the text is
    /// the encoding name of a=rtpmap, of call records and of a trunk's codec list.
    #[schema(description = "An audio codec a trunk may carry.")]
    Codec { Pcma => "PCMA", Pcmu => "PCMU" }
);

impl Codec {
    /// The static payload type from RFC 3551 Table 4, used in our own offers and when an offer
    /// lists the number without an rtpmap.
    pub const fn static_pt(self) -> u8 {
        match self {
            Self::Pcmu => 0,
            Self::Pcma => 8,
        }
    }

    /// The encoding name as written in a=rtpmap (and in call records).
    pub const fn encoding_name(self) -> &'static str {
        match self {
            Self::Pcmu => "PCMU",
            Self::Pcma => "PCMA",
        }
    }

    /// Sampling clock rate in Hz.
    pub const fn clock_rate(self) -> u32 {
        8000
    }
}

// ---------------------------------------------------------------------------------------
// Digest algorithms

text_enum!(
    /// A digest hash algorithm a trunk is challenged with (RFC 8760), as spelt on the wire.
    DigestAlgorithm { Sha256 => "SHA-256", Md5 => "MD5" }
);

impl DigestAlgorithm {
    /// The token used in the `algorithm=` parameter.
    pub fn token(self) -> &'static str {
        self.as_str()
    }

    /// Parses an `algorithm=` token (case-insensitive, RFC 7616 §3.3). `-sess` variants,
    /// which vca-sip does not offer, give `None`.
    pub fn from_token(token: &str) -> Option<Self> {
        [DigestAlgorithm::Md5, DigestAlgorithm::Sha256]
            .into_iter()
            .find(|a| token.eq_ignore_ascii_case(a.as_str()))
    }

    /// Lower-case hex of the hash of `data`.
    pub fn hex(self, data: &[u8]) -> String {
        match self {
            DigestAlgorithm::Md5 => hex::encode(Md5::digest(data)),
            DigestAlgorithm::Sha256 => hex::encode(Sha256::digest(data)),
        }
    }

    /// HA1 = H(username:realm:password), what a store keeps instead of the password.
    pub fn ha1(self, username: &str, realm: &str, password: &str) -> String {
        self.hex(format!("{username}:{realm}:{password}").as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restrictions_keep_the_text_of_their_transport() {
        let all = [
            Transport::Udp,
            Transport::Tcp,
            Transport::Tls,
            Transport::Ws,
            Transport::Wss,
        ];
        let trunk: Vec<&str> = all
            .into_iter()
            .filter_map(TrunkTransport::new)
            .map(TrunkTransport::as_str)
            .collect();
        assert_eq!(trunk, TrunkTransport::TEXTS);
        let mut call: Vec<&str> = all
            .into_iter()
            .map(|t| CallTransport::from(t).as_str())
            .collect();
        call.push(CallTransport::Webrtc.as_str());
        assert_eq!(call, CallTransport::TEXTS);
        for text in CallTransport::TEXTS {
            assert_eq!(
                CallTransport::parse(text).map(CallTransport::as_str),
                Some(*text)
            );
        }
        assert_eq!(TrunkTransport::parse("ws"), None);
        assert_eq!(TrunkTransport::parse("tls"), Some(TrunkTransport::TLS));
    }

    #[test]
    fn a_trunk_transport_outside_udp_tcp_tls_is_refused_like_an_enum_variant() {
        let err = serde_json::from_str::<TrunkTransport>("\"wss\"").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown variant `wss`, expected one of `udp`, `tcp`, `tls` at line 1 column 5"
        );
        assert_eq!(
            serde_json::to_string(&CallTransport::Webrtc).unwrap(),
            "\"webrtc\""
        );
    }

    #[test]
    fn reliability_follows_the_transport() {
        assert!(!Transport::Udp.is_reliable());
        assert!(Transport::Tcp.is_reliable() && Transport::Wss.is_reliable());
        assert!(Transport::Tls.is_stream() && !Transport::Ws.is_stream());
    }

    #[test]
    fn methods_classify_case_sensitively_and_keep_extension_tokens() {
        assert_eq!(Method::parse("INVITE"), Method::Invite);
        assert_eq!(Method::parse("invite"), Method::Other("invite".into()));
        assert_eq!(Method::from_token("NOTIFY".into()), Method::Notify);
        assert_eq!(Method::parse("FOO").as_str(), "FOO");
    }

    #[test]
    fn digest_algorithm_tokens() {
        assert_eq!(
            DigestAlgorithm::from_token("sha-256"),
            Some(DigestAlgorithm::Sha256)
        );
        assert_eq!(DigestAlgorithm::from_token("MD5-sess"), None);
        assert_eq!(DigestAlgorithm::parse("md5"), None);
        assert_eq!(
            DigestAlgorithm::Md5.ha1("Mufasa", "testrealm@host.com", "Circle Of Life"),
            "939e7578ed9e3c518a452acee763bce9"
        );
    }
}
