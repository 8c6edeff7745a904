//! Identifier newtypes, so that a tenant id cannot be passed where a call id belongs.
//!
//! Each id is a UUID (version 7: time-ordered, so ordering by id is ordering by creation,
//! which keyset pagination relies on). In PostgreSQL an id is a native `uuid`; in SQLite it
//! is stored as hyphenated text. Both encodings are implemented here once, so every query
//! binds and reads ids the same way on both backends.
//!
//! [`Did`], a dialed number in E.164 form, is the one identifier here that is not a UUID.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueRef};
use sqlx::sqlite::{SqliteArgumentsBuffer, SqliteTypeInfo, SqliteValueRef};
use sqlx::{Decode, Encode, Postgres, Sqlite, Type};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh, time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl Type<Sqlite> for $name {
            fn type_info() -> SqliteTypeInfo {
                <String as Type<Sqlite>>::type_info()
            }
            fn compatible(ty: &SqliteTypeInfo) -> bool {
                <String as Type<Sqlite>>::compatible(ty)
            }
        }

        impl Encode<'_, Sqlite> for $name {
            fn encode_by_ref(&self, buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
                // Formatted on the stack: the argument then costs one allocation, not two.
                let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
                let text: &str = self.0.hyphenated().encode_lower(&mut text);
                <&str as Encode<'_, Sqlite>>::encode(text, buf)
            }
        }

        impl<'r> Decode<'r, Sqlite> for $name {
            fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
                let text = <&str as Decode<'r, Sqlite>>::decode(value)?;
                Ok(Self(Uuid::parse_str(text)?))
            }
        }

        impl Type<Postgres> for $name {
            fn type_info() -> PgTypeInfo {
                <Uuid as Type<Postgres>>::type_info()
            }
        }

        impl Encode<'_, Postgres> for $name {
            fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
                <Uuid as Encode<'_, Postgres>>::encode_by_ref(&self.0, buf)
            }
        }

        impl<'r> Decode<'r, Postgres> for $name {
            fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
                Ok(Self(<Uuid as Decode<'r, Postgres>>::decode(value)?))
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

id_type!(
    /// A tenant of the platform.
    TenantId
);
id_type!(
    /// A phone number (DID) owned by a tenant.
    PhoneNumberId
);
id_type!(
    /// An AI profile owned by a tenant.
    AiProfileId
);
id_type!(
    /// A SIP trunk, owned by a tenant or by the platform.
    TrunkId
);
id_type!(
    /// A call record.
    CallId
);
id_type!(
    /// An event on a call's timeline.
    CallEventId
);
id_type!(
    /// An API key.
    ApiKeyId
);
id_type!(
    /// A tenant's agent (a person answering calls in a browser).
    AgentId
);

/// A dialed number in canonical E.164 form: `+` and 8 to 15 digits. Defined here beside the
/// other identifiers because the store keys phone numbers by it; the E.164 rules that build
/// one (`Did::normalize`) live in `routing::e164`, the only place that constructs it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Did(pub(crate) String);

impl Did {
    /// The number with its leading `+`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Did {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Did {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Did({})", self.0)
    }
}

/// The name of one vca-sip node among those that share a database. Every call row carries
/// the node that handles it, so that a node starting again after a crash closes the calls
/// it left live, and only those: another node's live calls are still up.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NodeId(String);

impl NodeId {
    /// The longest name taken: that of a DNS host name.
    pub const MAX_LEN: usize = 253;

    /// A name of 1 to [`NodeId::MAX_LEN`] letters, digits, `.`, `-` and `_`: any host
    /// name, and nothing that needs quoting in a log line.
    pub fn parse(text: &str) -> Result<NodeId, &'static str> {
        if text.is_empty() || text.len() > Self::MAX_LEN {
            return Err("must be 1 to 253 characters");
        }
        if !text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        {
            return Err("may hold only letters, digits, '.', '-' and '_'");
        }
        Ok(NodeId(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
