//! What passes between the user-agent endpoint and its calls (RFC 3261 §8, §12, §17): the
//! events the endpoint hands a call, the commands a call gives back, and what the endpoint
//! needs to know of the way a message came.
//!
//! Both sides import this file and nothing of each other, so data flows one way:
//!
//! ```text
//!   endpoint ──CallEvent──▶ call
//!      ▲                     │
//!      └────── Command ──────┘
//! ```

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use rustls::pki_types::CertificateDer;

use crate::sip::message::{Request, Response};
use crate::sip::transaction::TransactionKey;
use crate::sip::triage::Transport;

/// Identifies a call from the caller's side: Call-ID and From-tag.
pub type CallKey = Arc<str>;

/// The way a message came, and the way its answers go back (RFC 3581): what the endpoint
/// machine reads of it. The driver's [`crate::transport::Peer`] carries the socket too;
/// tests use a plain address.
pub trait Link: Clone {
    /// The source address and port the message came from.
    fn addr(&self) -> SocketAddr;
    /// The transport it came over.
    fn transport(&self) -> Transport;
    /// The verified certificate a TLS client presented, if any.
    fn client_cert(&self) -> Option<&CertificateDer<'static>>;

    /// Whether the transport retransmits by itself (§17: no Timers A, E, G ...).
    fn is_reliable(&self) -> bool {
        self.transport() != Transport::Udp
    }
}

impl Link for crate::transport::Peer {
    fn addr(&self) -> SocketAddr {
        crate::transport::Peer::addr(self)
    }

    fn transport(&self) -> Transport {
        crate::transport::Peer::transport(self)
    }

    fn client_cert(&self) -> Option<&CertificateDer<'static>> {
        crate::transport::Peer::client_cert(self)
    }
}

/// What the endpoint passes to a call.
#[derive(Debug)]
pub enum CallEvent<P> {
    /// A CANCEL matched the pending INVITE (the endpoint has answered it 200).
    Cancel,
    /// The ACK for our 2xx.
    Ack { request: Request },
    /// Our 2xx was never acknowledged (64*T1).
    AckTimeout,
    /// A request inside the dialog, with its server transaction already created.
    Request {
        key: TransactionKey,
        request: Request,
        peer: P,
    },
    /// A response to a request the call sent, whole, from its client transaction `key`:
    /// a provisional or final to its INVITE, a further 2xx to that INVITE (a
    /// retransmission, or another fork's answer: RFC 6026, the call acknowledges each), or
    /// the final to a BYE, PRACK or CANCEL.
    Response {
        key: TransactionKey,
        response: Response,
    },
    /// A request the call sent got no final response in time (Timer B or F): the call
    /// treats it as a 408 (§8.1.3.1).
    Timeout { key: TransactionKey },
    /// The transport could not deliver a request the call sent: the call treats it as a
    /// 503 (§8.1.3.1).
    TransportError { key: TransactionKey },
}

/// What a call asks the endpoint to do.
#[derive(Debug)]
pub enum Command<P> {
    /// Send `response` to the server transaction `key`.
    Respond {
        key: TransactionKey,
        status: u16,
        response: Bytes,
    },
    /// Start a non-INVITE client transaction for `call` (a BYE, PRACK or INFO it sends);
    /// its responses come back as [`CallEvent::Response`].
    Request {
        call: CallKey,
        key: TransactionKey,
        peer: P,
        request: Bytes,
    },
    /// Send `invite` to `peer` in a new INVITE client transaction keyed `key`, for `call`
    /// (its responses come back as [`CallEvent::Response`]). The first INVITE of a call
    /// vca-sip places also registers the call, under
    /// [`outbound_call_key`]`(Call-ID, From-tag)`, so that the far end's requests in the
    /// dialog reach it.
    Invite {
        call: CallKey,
        key: TransactionKey,
        peer: P,
        /// Boxed: the parsed INVITE is far larger than any other command.
        invite: Box<Request>,
    },
    /// Cancel the INVITE client transaction `key` (§9.1; only once a provisional arrived).
    Cancel { key: TransactionKey },
    /// Send the ACK for a 2xx to our INVITE: a request of the dialog, not of the INVITE's
    /// transaction, sent once per 2xx received and never retransmitted (§13.2.2.4,
    /// §17.1.1.3).
    Ack { peer: P, request: Bytes },
    /// The dialog's current INVITE (initial or re-INVITE) whose 2xx an ACK stops.
    SetInvite { call: CallKey, key: TransactionKey },
    /// The call is over: forget it.
    Gone { call: CallKey },
}

/// The key of a call vca-sip places: its Call-ID and its own From-tag. Requests of the far
/// end carry that tag as their To-tag, which is how the endpoint finds the call.
pub fn outbound_call_key(call_id: &str, local_tag: &str) -> CallKey {
    let mut key = String::with_capacity(call_id.len() + local_tag.len() + 1);
    key.push_str(call_id);
    key.push('\u{0}');
    key.push_str(local_tag);
    Arc::from(key)
}

/// A fresh random tag or branch suffix (§19.3: at least 32 bits of randomness).
pub fn new_tag() -> String {
    use rand::Rng;
    format!("{:016x}", rand::rng().random::<u64>())
}

/// A [`Link`] that is only an address, for driving machines in tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    #[derive(Clone, Debug)]
    pub struct TestPeer {
        pub addr: SocketAddr,
        pub transport: Transport,
    }

    impl Link for TestPeer {
        fn addr(&self) -> SocketAddr {
            self.addr
        }

        fn transport(&self) -> Transport {
            self.transport
        }

        fn client_cert(&self) -> Option<&CertificateDer<'static>> {
            None
        }
    }
}
