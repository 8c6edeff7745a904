//! The transaction table: many transactions keyed per RFC 3261 §17.2.3 (server) and
//! §17.1.3 (client), with one combined deadline.
//!
//! The table owns INVITE server transactions (each with the UAS core's 2xx retransmitter
//! once a 2xx is sent, §13.3.1.4), non-INVITE server transactions, and the INVITE and
//! non-INVITE client transactions of the requests vca-sip sends (their responses reach
//! the TU whole, as [`Event::Response`]). A retransmitted request is matched with one hash lookup and no
//! allocation: a [`TransactionKey`] is built from [`Bytes`] slices of the received
//! message. The hash index holds only slot numbers (four bytes a bucket; the key lives in
//! its slot), so a table sized for a million transactions costs megabytes, not the
//! hundreds a map of whole keys would touch as it fills. All timers share one binary heap
//! of `(deadline, slot)` with lazy deletion, so
//! [`TransactionTable::poll_timeout`] and [`TransactionTable::handle_timeout`] cost
//! O(log n) per fired timer and never scan the table. A transaction that terminates is
//! removed at once, so [`TransactionTable::len`] returns to zero when traffic stops.
//!
//! ```text
//!   received request ──▶ handle_request / handle_ack ──▶ New: create_ist / create_nist
//!   received response ─▶ handle_response                 Retransmission: absorbed
//!   TU decisions ──────▶ respond, ack_2xx, create_ict, cancel_ict, create_nict,
//!                        transport_error
//!   sleep expired ─────▶ handle_timeout
//!                        poll_output ──▶ (key, Transmit | Response | GiveUp | Timeout ..)
//!                        poll_timeout ─▶ next wake-up
//! ```
//!
//! One step of a UDP receive loop, once the parser has sliced the top Via's branch and
//! sent-by and the method out of the datagram:
//!
//! ```
//! use std::net::SocketAddr;
//! use std::time::Instant;
//! use bytes::Bytes;
//! use vca_sip::sip::transaction::{
//!     Event, Method, RequestMatch, TimerConfig, TransactionKey, TransactionTable, Transport,
//! };
//!
//! let mut table: TransactionTable<SocketAddr> = TransactionTable::new(TimerConfig::default());
//! let from: SocketAddr = "203.0.113.7:5060".parse().unwrap();
//! let now = Instant::now(); // in the server: the clock the run loop reads once per wake-up
//! let key = TransactionKey::server(
//!     Bytes::from_static(b"z9hG4bK74bf9"),
//!     Bytes::from_static(b"203.0.113.7:5060"),
//!     Method::Invite,
//! )
//! .unwrap(); // None: no magic cookie, build TransactionKey::legacy instead
//! for _ in 0..2 {
//!     // The second time round the INVITE is a retransmission.
//!     if table.handle_request(now, &key) == RequestMatch::New {
//!         let trying = Bytes::from_static(b"SIP/2.0 100 Trying\r\n...");
//!         table.create_ist(now, key.clone(), Transport::Udp, from, Some(trying)).unwrap();
//!         // ...hand the INVITE to its call task, which later calls table.respond(..)
//!     }
//! }
//! table.handle_timeout(now + std::time::Duration::from_millis(200));
//! while let Some(out) = table.poll_output() {
//!     match out.event {
//!         Event::Transmit(bytes) => { /* socket.send_to(&bytes, out.peer) */ }
//!         Event::GiveUp => { /* tell the call: send BYE, record the call failed */ }
//!         _ => {}
//!     }
//! }
//! assert_eq!(table.poll_timeout(), None); // nothing more until the TU responds
//! ```

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::time::Instant;

use bytes::Bytes;
use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

use super::ict::{Ict, IctInput, IctOutput, IctState};
use super::ist::{Ist, IstInput, IstOutput, IstState};
use super::nict::{Nict, NictInput, NictOutput};
use super::nist::{Nist, NistInput, NistOutput};
use super::uas2xx::{Uas2xx, Uas2xxInput, Uas2xxOutput};
use super::{MAGIC_COOKIE, Method, TimerConfig, TransactionError, Transport};
use crate::sip::message::{Request, Response, cancel_for};

/// Which side of a transaction a key names. A server key's branch was chosen by the peer,
/// a client key's by vca-sip: keeping them apart stops a peer from reaching a client
/// transaction with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Side {
    Server,
    Client,
}

/// How the transaction is identified on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Id {
    /// RFC 3261: the top Via's branch (starting with the magic cookie) and, for a server
    /// transaction, its sent-by.
    Branch { branch: Bytes, sent_by: Bytes },
    /// RFC 2543 request without the magic cookie: an identifier the caller derives from the
    /// request (§17.2.3 lists Request-URI, To tag, From tag, Call-ID, CSeq and top Via).
    Legacy(Bytes),
}

/// The key of one transaction (§17.2.3, §17.1.3). Cheap to clone: it holds [`Bytes`].
///
/// An ACK's key equals its INVITE's key (the method is stored as INVITE); a CANCEL's key
/// differs from its INVITE's only in the method, see [`TransactionKey::invite_key`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TransactionKey {
    side: Side,
    method: Method,
    id: Id,
}

impl TransactionKey {
    /// The key of a received request per §17.2.3: the top Via's `branch` and `sent_by`
    /// (host and port as received; the caller normalises case if it wants) and the method.
    ///
    /// Returns `None` if the branch does not start with the magic cookie `z9hG4bK`: the
    /// request comes from an RFC 2543 element, so use [`TransactionKey::legacy`].
    pub fn server(branch: Bytes, sent_by: Bytes, method: Method) -> Option<Self> {
        if !branch.starts_with(MAGIC_COOKIE) {
            return None;
        }
        Some(Self {
            side: Side::Server,
            method: Self::normalise(method),
            id: Id::Branch { branch, sent_by },
        })
    }

    /// The key of a received RFC 2543 request (no magic cookie), from an identifier the
    /// caller derives from the request. For an ACK, derive it the way the INVITE's was
    /// derived, without the To tag (§17.2.3).
    pub fn legacy(id: Bytes, method: Method) -> Self {
        Self {
            side: Side::Server,
            method: Self::normalise(method),
            id: Id::Legacy(id),
        }
    }

    /// The key of a request vca-sip sends (§17.1.3): the branch it put in its Via and the
    /// method. A response matches when its top Via branch and CSeq method are these.
    pub fn client(branch: Bytes, method: Method) -> Self {
        Self {
            side: Side::Client,
            method: Self::normalise(method),
            id: Id::Branch {
                branch,
                sent_by: Bytes::new(),
            },
        }
    }

    /// The method this key matches (INVITE for an ACK's key).
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The key of the INVITE transaction that a CANCEL with this key targets (§9.2).
    pub fn invite_key(&self) -> TransactionKey {
        Self {
            side: self.side,
            method: Method::Invite,
            id: self.id.clone(),
        }
    }

    fn normalise(method: Method) -> Method {
        match method {
            Method::Ack => Method::Invite,
            other => other,
        }
    }
}

/// What became of a received request offered to [`TransactionTable::handle_request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestMatch {
    /// It retransmits a request of a live transaction and was absorbed; any response to
    /// resend is queued in [`TransactionTable::poll_output`]. The TU must not see it.
    Retransmission,
    /// No transaction matches: it is a new request. Pass it to the TU and create its
    /// transaction with [`TransactionTable::create_ist`] or [`TransactionTable::create_nist`].
    New,
}

/// What became of a received ACK offered to [`TransactionTable::handle_ack`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMatch {
    /// It acknowledged a non-2xx final (or retransmits such an ACK): absorbed.
    Absorbed,
    /// It matched an INVITE transaction in Accepted (RFC 6026): pass it to the TU (the
    /// dialog). The 2xx retransmission of that transaction has been stopped.
    ToTu,
    /// No transaction matches: an ACK for a 2xx (it carries a new branch); pass it to the
    /// dialog layer, which stops the 2xx with [`TransactionTable::ack_2xx`].
    NoMatch,
}

/// What became of a received response offered to [`TransactionTable::handle_response`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseMatch {
    /// The response is queued for the TU as an [`Event::Response`].
    ToTu,
    /// It retransmits a final response already passed on: absorbed (for an INVITE's
    /// 300-699 final, after resending the ACK).
    Absorbed,
    /// No client transaction matches: drop it and count it (§18.1.2).
    NoMatch,
}

/// What the table asks its caller to do, for the transaction named in [`TableOutput`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Send these bytes over the transaction's transport to its peer.
    Transmit(Bytes),
    /// A client transaction passes this response to the TU: a provisional, a final, or
    /// (an INVITE's, RFC 6026 Accepted) a further 2xx, which the TU acknowledges.
    Response(Response),
    /// Timer H fired: the non-2xx final to an INVITE was never acknowledged.
    NoAck,
    /// The 2xx to an INVITE was not acknowledged within 64*T1 (§13.3.1.4): send a BYE and
    /// record the call as failed.
    GiveUp,
    /// Timer F (or Timer B for an INVITE) fired: a request vca-sip sent got no final
    /// response (the TU treats it as a 408; nothing is sent).
    Timeout,
    /// The transport failed for a request vca-sip sent (the TU treats it as a 503).
    TransportError,
    /// The transaction ended and left the table.
    Terminated,
}

/// One output of the table: an event for one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableOutput<P = ()> {
    /// The transaction the event belongs to.
    pub key: TransactionKey,
    /// Where its messages go, as given when the transaction was created.
    pub peer: P,
    /// What to do.
    pub event: Event,
}

/// A transaction held in the table.
#[derive(Debug)]
enum Machine {
    /// An INVITE server transaction and, from its 2xx until that is acknowledged or given
    /// up, the UAS core's retransmitter. Boxed and dropped once done, the retransmitter
    /// costs no slot space through the 32 s an answered INVITE lingers (Timer L), nor in
    /// the other transactions' slots.
    Invite {
        ist: Ist,
        ok: Option<Box<Uas2xx>>,
    },
    Nist(Nist),
    Nict(Nict),
    /// An INVITE client transaction. Boxed: it keeps the parsed INVITE, and the server
    /// transactions that fill most slots should not pay for that space.
    Ict(Box<Ict>),
}

impl Machine {
    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Machine::Invite { ist, ok } => {
                let ok = ok.as_deref().and_then(Uas2xx::poll_timeout);
                match (ist.poll_timeout(), ok) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
            Machine::Nist(nist) => nist.poll_timeout(),
            Machine::Nict(nict) => nict.poll_timeout(),
            Machine::Ict(ict) => ict.poll_timeout(),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        match self {
            Machine::Invite { ist, ok } => {
                ist.handle_timeout(now);
                if let Some(ok) = ok {
                    ok.handle_timeout(now);
                }
            }
            Machine::Nist(nist) => nist.handle_timeout(now),
            Machine::Nict(nict) => nict.handle_timeout(now),
            Machine::Ict(ict) => ict.handle_timeout(now),
        }
    }

    fn is_finished(&self) -> bool {
        match self {
            Machine::Invite { ist, ok } => {
                ist.is_terminated() && ok.as_deref().is_none_or(Uas2xx::is_done)
            }
            Machine::Nist(nist) => nist.is_terminated(),
            Machine::Nict(nict) => nict.is_terminated(),
            Machine::Ict(ict) => ict.is_terminated(),
        }
    }

    /// Moves the machine's outputs to `out`, tagged with `key`. Returns true if the machine
    /// passed the message just handed in (an ACK, a response) to the TU. `response` is the
    /// response just handed to a NICT, which sees only its status: it goes out whole.
    fn drain<P: Clone>(
        &mut self,
        key: &TransactionKey,
        peer: &P,
        out: &mut VecDeque<TableOutput<P>>,
        response: &mut Option<Response>,
    ) -> bool {
        let mut to_tu = false;
        let mut push = |event| {
            out.push_back(TableOutput {
                key: key.clone(),
                peer: peer.clone(),
                event,
            })
        };
        match self {
            Machine::Invite { ist, ok } => {
                while let Some(output) = ist.poll_output() {
                    match output {
                        IstOutput::Transmit(bytes) => push(Event::Transmit(bytes)),
                        IstOutput::NoAck => push(Event::NoAck),
                        IstOutput::AckToTu => to_tu = true,
                        // The table reports the end once the whole entry is gone.
                        IstOutput::Terminated => {}
                    }
                }
                if let Some(retransmitter) = ok {
                    while let Some(output) = retransmitter.poll_output() {
                        match output {
                            Uas2xxOutput::Transmit(bytes) => push(Event::Transmit(bytes)),
                            Uas2xxOutput::GiveUp => push(Event::GiveUp),
                        }
                    }
                    if retransmitter.is_done() {
                        *ok = None;
                    }
                }
            }
            Machine::Nist(nist) => {
                while let Some(output) = nist.poll_output() {
                    match output {
                        NistOutput::Transmit(bytes) => push(Event::Transmit(bytes)),
                        NistOutput::Terminated => {}
                    }
                }
            }
            Machine::Nict(nict) => {
                while let Some(output) = nict.poll_output() {
                    match output {
                        NictOutput::Transmit(bytes) => push(Event::Transmit(bytes)),
                        NictOutput::Timeout => push(Event::Timeout),
                        NictOutput::TransportError => push(Event::TransportError),
                        NictOutput::Response(_) => {
                            to_tu = true;
                            if let Some(response) = response.take() {
                                push(Event::Response(response));
                            }
                        }
                        NictOutput::Terminated => {}
                    }
                }
            }
            Machine::Ict(ict) => {
                while let Some(output) = ict.poll_output() {
                    match output {
                        IctOutput::Transmit(bytes) => push(Event::Transmit(bytes)),
                        IctOutput::Response(response) => {
                            to_tu = true;
                            push(Event::Response(response));
                        }
                        IctOutput::Timeout => push(Event::Timeout),
                        IctOutput::TransportError => push(Event::TransportError),
                        IctOutput::Terminated => {}
                    }
                }
            }
        }
        to_tu
    }
}

#[derive(Debug)]
struct Live<P> {
    key: TransactionKey,
    peer: P,
    machine: Machine,
    /// The deadline this entry has in the heap; heap items with another deadline are stale.
    armed: Option<Instant>,
}

#[derive(Debug)]
struct Slot<P> {
    generation: u32,
    entry: Option<Live<P>>,
}

/// A heap item: the deadline of the entry in slot `index` at `generation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Deadline {
    at: Instant,
    index: u32,
    generation: u32,
}

/// Stale heap items beyond this many plus twice the slots trigger a rebuild, so the heap
/// stays within a constant factor of the table's peak size and rebuilds cost O(1) amortised.
const HEAP_SLACK: usize = 1024;

/// Many transactions, matched in O(1), with one combined timer.
///
/// `P` is what the caller needs to send a transaction's messages (a `SocketAddr` for UDP,
/// a connection id for TCP/TLS/WS); the table hands it back with every output, so a timer
/// retransmission needs no second lookup.
///
/// After any `handle_*`, `create_*`, `respond`, `ack_2xx` or `transport_error`, drain
/// [`TransactionTable::poll_output`], then sleep until [`TransactionTable::poll_timeout`]
/// and call [`TransactionTable::handle_timeout`] when it expires.
#[derive(Debug)]
pub struct TransactionTable<P = ()> {
    config: TimerConfig,
    /// Slot numbers, hashed by the key their slot holds.
    index: HashTable<u32>,
    hasher: RandomState,
    slots: Vec<Slot<P>>,
    free: Vec<u32>,
    heap: BinaryHeap<Reverse<Deadline>>,
    outputs: VecDeque<TableOutput<P>>,
    /// The response being handed to a NICT, for [`Machine::drain`] to pass on whole.
    pending: Option<Response>,
}

impl<P: Clone> TransactionTable<P> {
    /// An empty table whose transactions use `config`.
    pub fn new(config: TimerConfig) -> Self {
        Self::with_capacity(config, 0)
    }

    /// An empty table with room for `capacity` transactions before it reallocates.
    pub fn with_capacity(config: TimerConfig, capacity: usize) -> Self {
        Self {
            config,
            index: HashTable::with_capacity(capacity),
            hasher: RandomState::new(),
            slots: Vec::with_capacity(capacity),
            free: Vec::with_capacity(capacity),
            heap: BinaryHeap::with_capacity(capacity),
            outputs: VecDeque::new(),
            pending: None,
        }
    }

    /// The timer values the table's transactions use.
    pub fn config(&self) -> TimerConfig {
        self.config
    }

    /// The number of live transactions.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when no transaction is live.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Where the live transaction with this key sends its messages.
    pub fn peer(&self, key: &TransactionKey) -> Option<&P> {
        self.entry(key).map(|entry| &entry.peer)
    }

    /// True if a live transaction has this key.
    pub fn contains(&self, key: &TransactionKey) -> bool {
        self.find(key).is_some()
    }

    /// The state of the INVITE server transaction with this key, if live. A CANCEL asks
    /// with [`TransactionKey::invite_key`]: `Some(Proceeding)` means the INVITE is still
    /// pending (answer 200 to the CANCEL and 487 to the INVITE); `None` means 481 (§9.2).
    pub fn ist_state(&self, key: &TransactionKey) -> Option<IstState> {
        match &self.entry(key)?.machine {
            Machine::Invite { ist, .. } => Some(ist.state()),
            Machine::Nist(_) | Machine::Nict(_) | Machine::Ict(_) => None,
        }
    }

    /// The state of the INVITE client transaction with this key, if live. A CANCEL may be
    /// sent only in `Proceeding` (§9.1), see [`TransactionTable::cancel_ict`].
    pub fn ict_state(&self, key: &TransactionKey) -> Option<IctState> {
        match &self.entry(key)?.machine {
            Machine::Ict(ict) => Some(ict.state()),
            Machine::Invite { .. } | Machine::Nist(_) | Machine::Nict(_) => None,
        }
    }

    /// Offers a received request other than ACK (INVITE, CANCEL, BYE, ...) with its key.
    /// A retransmission is absorbed (and the last response resent); otherwise the request
    /// is new. Drain [`TransactionTable::poll_output`] afterwards.
    pub fn handle_request(&mut self, now: Instant, key: &TransactionKey) -> RequestMatch {
        let Some(index) = self.live_index(key, Side::Server) else {
            return RequestMatch::New;
        };
        if let Some(entry) = self.entry_at(index) {
            match &mut entry.machine {
                Machine::Invite { ist, .. } => {
                    // Network inputs never fail.
                    let _ = ist.handle(now, IstInput::Request);
                }
                Machine::Nist(nist) => {
                    let _ = nist.handle(now, NistInput::Request);
                }
                Machine::Nict(_) | Machine::Ict(_) => {}
            }
        }
        self.settle(index);
        RequestMatch::Retransmission
    }

    /// Offers a received ACK with its key (equal to its INVITE's key). Drain
    /// [`TransactionTable::poll_output`] afterwards.
    pub fn handle_ack(&mut self, now: Instant, key: &TransactionKey) -> AckMatch {
        let Some(index) = self.live_index(key, Side::Server) else {
            return AckMatch::NoMatch;
        };
        let mut is_invite = false;
        if let Some(entry) = self.entry_at(index)
            && let Machine::Invite { ist, ok } = &mut entry.machine
        {
            is_invite = true;
            let _ = ist.handle(now, IstInput::Ack);
            if ist.state() == IstState::Accepted
                && let Some(ok) = ok
            {
                ok.handle(now, Uas2xxInput::Ack);
            }
        }
        match (self.settle(index), is_invite) {
            (true, _) => AckMatch::ToTu,
            (false, true) => AckMatch::Absorbed,
            (false, false) => AckMatch::NoMatch,
        }
    }

    /// Creates the INVITE server transaction for a new INVITE. `trying` is the serialised
    /// 100 Trying the table sends after 200 ms if the TU has not responded (see
    /// [`Ist::new`]).
    pub fn create_ist(
        &mut self,
        now: Instant,
        key: TransactionKey,
        transport: Transport,
        peer: P,
        trying: Option<Bytes>,
    ) -> Result<(), TransactionError> {
        if key.side != Side::Server {
            return Err(TransactionError::WrongSide);
        }
        if key.method != Method::Invite {
            return Err(TransactionError::WrongMethod(key.method));
        }
        let ist = Ist::new(now, self.config, transport, trying);
        self.insert(key, peer, Machine::Invite { ist, ok: None })
    }

    /// Creates the non-INVITE server transaction for a new request (BYE, CANCEL, OPTIONS..).
    pub fn create_nist(
        &mut self,
        key: TransactionKey,
        transport: Transport,
        peer: P,
    ) -> Result<(), TransactionError> {
        if key.side != Side::Server {
            return Err(TransactionError::WrongSide);
        }
        if key.method == Method::Invite {
            return Err(TransactionError::WrongMethod(key.method));
        }
        let nist = Nist::new(self.config, transport);
        self.insert(key, peer, Machine::Nist(nist))
    }

    /// Creates a non-INVITE client transaction and sends `request` (queued as a
    /// [`Event::Transmit`]) at `now`.
    pub fn create_nict(
        &mut self,
        now: Instant,
        key: TransactionKey,
        transport: Transport,
        peer: P,
        request: Bytes,
    ) -> Result<(), TransactionError> {
        if key.side != Side::Client {
            return Err(TransactionError::WrongSide);
        }
        if key.method == Method::Invite {
            return Err(TransactionError::WrongMethod(key.method));
        }
        let nict = Nict::new(now, self.config, transport, request);
        self.insert(key, peer, Machine::Nict(nict))
    }

    /// Creates an INVITE client transaction and sends `invite` (queued as a
    /// [`Event::Transmit`]) at `now`. `invite` is the parsed form of the bytes to send: the
    /// transaction builds the ACK of a non-2xx final and any CANCEL from it. `key` is
    /// [`TransactionKey::client`] with the branch of the INVITE's Via and method INVITE.
    pub fn create_ict(
        &mut self,
        now: Instant,
        key: TransactionKey,
        transport: Transport,
        peer: P,
        invite: Request,
    ) -> Result<(), TransactionError> {
        if key.side != Side::Client {
            return Err(TransactionError::WrongSide);
        }
        if key.method != Method::Invite {
            return Err(TransactionError::WrongMethod(key.method));
        }
        let ict = Ict::new(now, self.config, transport, invite);
        self.insert(key, peer, Machine::Ict(Box::new(ict)))
    }

    /// Cancels the pending INVITE client transaction `key` (§9.1): builds the CANCEL from
    /// its INVITE and sends it in its own non-INVITE client transaction, keyed by the same
    /// branch with method CANCEL, to the same peer. The INVITE's final (a 487, or a 200
    /// that crossed the CANCEL) still arrives on `key`; the ICT acknowledges a 487 itself.
    ///
    /// Allowed only once a provisional arrived (`Proceeding`): before that the CANCEL could
    /// overtake the INVITE, and after the final there is nothing to cancel. Returns the
    /// CANCEL's key. Drain [`TransactionTable::poll_output`] afterwards.
    pub fn cancel_ict(
        &mut self,
        now: Instant,
        key: &TransactionKey,
    ) -> Result<TransactionKey, TransactionError> {
        let entry = self
            .live_index(key, Side::Client)
            .and_then(|index| self.slots.get(index as usize)?.entry.as_ref())
            .ok_or(TransactionError::NoMatch)?;
        let Machine::Ict(ict) = &entry.machine else {
            return Err(TransactionError::WrongMethod(key.method.clone()));
        };
        if ict.state() != IctState::Proceeding {
            return Err(TransactionError::NotAllowed {
                input: "CANCEL",
                state: ict.state_name(),
            });
        }
        let cancel = cancel_for(ict.invite()).map_err(|_| TransactionError::Uncancellable)?;
        let (transport, peer) = (ict.transport(), entry.peer.clone());
        let cancel_key = TransactionKey {
            side: Side::Client,
            method: Method::Cancel,
            id: key.id.clone(),
        };
        self.create_nict(now, cancel_key.clone(), transport, peer, cancel)?;
        Ok(cancel_key)
    }

    /// The TU responds on a server transaction: `response` is the serialised response with
    /// status `status`. A 2xx to an INVITE starts the UAS core's retransmission
    /// (§13.3.1.4), which sends it at once. Drain [`TransactionTable::poll_output`]
    /// afterwards.
    pub fn respond(
        &mut self,
        now: Instant,
        key: &TransactionKey,
        status: u16,
        response: Bytes,
    ) -> Result<(), TransactionError> {
        let index = self
            .live_index(key, Side::Server)
            .ok_or(TransactionError::NoMatch)?;
        let config = self.config;
        let entry = self.entry_at(index).ok_or(TransactionError::NoMatch)?;
        let result = match &mut entry.machine {
            Machine::Invite { ist, ok } => {
                let result = ist.handle(
                    now,
                    IstInput::Respond {
                        status,
                        response: response.clone(),
                    },
                );
                if result.is_ok() && (200..300).contains(&status) {
                    *ok = Some(Box::new(Uas2xx::new(now, config, response)));
                }
                result
            }
            Machine::Nist(nist) => nist.handle(now, NistInput::Respond { status, response }),
            Machine::Nict(_) | Machine::Ict(_) => Err(TransactionError::WrongSide),
        };
        self.settle(index);
        result
    }

    /// The dialog layer matched an ACK to the 2xx sent on the INVITE transaction `key`:
    /// stop retransmitting that 2xx. Returns false if no retransmission was running.
    pub fn ack_2xx(&mut self, now: Instant, key: &TransactionKey) -> bool {
        let Some(index) = self.live_index(key, Side::Server) else {
            return false;
        };
        let mut stopped = false;
        if let Some(entry) = self.entry_at(index)
            && let Machine::Invite { ok: Some(ok), .. } = &mut entry.machine
            && !ok.is_done()
        {
            ok.handle(now, Uas2xxInput::Ack);
            stopped = true;
        }
        self.settle(index);
        stopped
    }

    /// Offers a received response, keyed by its top Via branch and CSeq method
    /// ([`TransactionKey::client`], §17.1.3). A response the transaction passes on is
    /// queued whole as [`Event::Response`]. Drain [`TransactionTable::poll_output`]
    /// afterwards.
    pub fn handle_response(
        &mut self,
        now: Instant,
        key: &TransactionKey,
        response: Response,
    ) -> ResponseMatch {
        let Some(index) = self.live_index(key, Side::Client) else {
            return ResponseMatch::NoMatch;
        };
        let mut is_client = false;
        if let Some(entry) = self.entry_at(index) {
            match &mut entry.machine {
                Machine::Nict(nict) => {
                    is_client = true;
                    nict.handle(now, NictInput::Response(response.status()));
                    self.pending = Some(response);
                }
                Machine::Ict(ict) => {
                    is_client = true;
                    ict.handle(now, IctInput::Response(response));
                }
                Machine::Invite { .. } | Machine::Nist(_) => {}
            }
        }
        let to_tu = self.settle(index);
        self.pending = None;
        match (to_tu, is_client) {
            (true, _) => ResponseMatch::ToTu,
            (false, true) => ResponseMatch::Absorbed,
            (false, false) => ResponseMatch::NoMatch,
        }
    }

    /// The transport failed to deliver a message of the transaction `key` (§17.1.4,
    /// §17.2.4): the transaction ends (and with it any 2xx retransmission).
    pub fn transport_error(
        &mut self,
        now: Instant,
        key: &TransactionKey,
    ) -> Result<(), TransactionError> {
        let index = self.find(key).ok_or(TransactionError::NoMatch)?;
        let entry = self.entry_at(index).ok_or(TransactionError::NoMatch)?;
        match &mut entry.machine {
            Machine::Invite { ist, ok } => {
                let _ = ist.handle(now, IstInput::TransportError);
                if let Some(ok) = ok {
                    ok.handle(now, Uas2xxInput::Ack);
                }
            }
            Machine::Nist(nist) => {
                let _ = nist.handle(now, NistInput::TransportError);
            }
            Machine::Nict(nict) => nict.handle(now, NictInput::TransportError),
            Machine::Ict(ict) => ict.handle(now, IctInput::TransportError),
        }
        self.settle(index);
        Ok(())
    }

    /// Fires every timer due at `now`, in deadline order. Calling it early or twice is a
    /// no-op. Drain [`TransactionTable::poll_output`] afterwards.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse(top)) = self.heap.peek().copied() {
            if top.at > now {
                break;
            }
            self.heap.pop();
            if !self.is_current(top) {
                continue;
            }
            if let Some(entry) = self.entry_at(top.index) {
                entry.armed = None;
                entry.machine.handle_timeout(now);
            }
            self.settle(top.index);
        }
    }

    /// The next output to act on. Call after every other call on the table until it
    /// returns `None`.
    pub fn poll_output(&mut self) -> Option<TableOutput<P>> {
        self.outputs.pop_front()
    }

    /// When to call [`TransactionTable::handle_timeout`] next: the earliest deadline of any
    /// transaction, or `None` if no timer runs. Call after draining
    /// [`TransactionTable::poll_output`], and re-arm the one sleep with the answer.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        while let Some(Reverse(top)) = self.heap.peek().copied() {
            if self.is_current(top) {
                return Some(top.at);
            }
            self.heap.pop();
        }
        None
    }

    /// Gives memory kept from a past peak back to the allocator: trailing free slots,
    /// stale timer items and spare capacity. O(capacity); call it when traffic is low
    /// (e.g. from a periodic housekeeping tick), not per message.
    pub fn shrink_to_fit(&mut self) {
        while self.slots.last().is_some_and(|slot| slot.entry.is_none()) {
            self.slots.pop();
        }
        let slots = self.slots.len();
        self.free.retain(|&index| (index as usize) < slots);
        // Every stale item goes, including any that named a slot just dropped.
        self.rebuild_heap();
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.index
            .shrink_to_fit(|&index| hash_of_slot(hasher, slots, index));
        self.slots.shrink_to_fit();
        self.free.shrink_to_fit();
        self.heap.shrink_to_fit();
        self.outputs.shrink_to_fit();
    }

    /// Heap items held, live or stale: bounded by twice the slots plus a slack.
    #[cfg(test)]
    pub(crate) fn timer_backlog(&self) -> usize {
        self.heap.len()
    }

    /// INVITE transactions still holding a 2xx retransmitter.
    #[cfg(test)]
    pub(crate) fn retransmitters(&self) -> usize {
        self.slots
            .iter()
            .filter_map(|slot| slot.entry.as_ref())
            .filter(|e| matches!(e.machine, Machine::Invite { ok: Some(_), .. }))
            .count()
    }

    fn entry(&self, key: &TransactionKey) -> Option<&Live<P>> {
        let index = self.find(key)?;
        self.slots.get(index as usize)?.entry.as_ref()
    }

    /// The slot of the live transaction with this key.
    fn find(&self, key: &TransactionKey) -> Option<u32> {
        let slots = &self.slots;
        self.index
            .find(self.hasher.hash_one(key), |&index| {
                key_at(slots, index) == Some(key)
            })
            .copied()
    }

    fn entry_at(&mut self, index: u32) -> Option<&mut Live<P>> {
        self.slots.get_mut(index as usize)?.entry.as_mut()
    }

    fn live_index(&self, key: &TransactionKey, side: Side) -> Option<u32> {
        if key.side != side {
            return None;
        }
        self.find(key)
    }

    fn is_current(&self, deadline: Deadline) -> bool {
        self.slots.get(deadline.index as usize).is_some_and(|slot| {
            slot.generation == deadline.generation
                && slot
                    .entry
                    .as_ref()
                    .is_some_and(|entry| entry.armed == Some(deadline.at))
        })
    }

    fn insert(
        &mut self,
        key: TransactionKey,
        peer: P,
        machine: Machine,
    ) -> Result<(), TransactionError> {
        // One hash for the check and the insert.
        let (slots, hasher) = (&self.slots, &self.hasher);
        let Entry::Vacant(vacant) = self.index.entry(
            hasher.hash_one(&key),
            |&index| key_at(slots, index) == Some(&key),
            |&index| hash_of_slot(hasher, slots, index),
        ) else {
            return Err(TransactionError::Exists);
        };
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                // Four billion live transactions cannot fit in memory; refuse rather than wrap.
                let index =
                    u32::try_from(self.slots.len()).map_err(|_| TransactionError::Exists)?;
                self.slots.push(Slot {
                    generation: 0,
                    entry: None,
                });
                index
            }
        };
        vacant.insert(index);
        if let Some(slot) = self.slots.get_mut(index as usize) {
            slot.entry = Some(Live {
                key,
                peer,
                machine,
                armed: None,
            });
        }
        self.settle(index);
        Ok(())
    }

    /// After any step of the entry in slot `index`: move its outputs to the queue, remove it
    /// if it finished, else make sure the heap holds its next deadline. Returns true if the
    /// machine passed the message just handed in to the TU.
    fn settle(&mut self, index: u32) -> bool {
        let Some(slot) = self.slots.get_mut(index as usize) else {
            return false;
        };
        let generation = slot.generation;
        let Some(entry) = slot.entry.as_mut() else {
            return false;
        };
        let to_tu = entry.machine.drain(
            &entry.key,
            &entry.peer,
            &mut self.outputs,
            &mut self.pending,
        );
        if entry.machine.is_finished() {
            if let Some(entry) = slot.entry.take() {
                let hash = self.hasher.hash_one(&entry.key);
                if let Ok(found) = self.index.find_entry(hash, |&i| i == index) {
                    found.remove();
                }
                self.outputs.push_back(TableOutput {
                    key: entry.key,
                    peer: entry.peer,
                    event: Event::Terminated,
                });
            }
            slot.generation = slot.generation.wrapping_add(1);
            self.free.push(index);
            return to_tu;
        }
        let next = entry.machine.poll_timeout();
        if next != entry.armed {
            entry.armed = next;
            if let Some(at) = next {
                self.heap.push(Reverse(Deadline {
                    at,
                    index,
                    generation,
                }));
                if self.heap.len() > HEAP_SLACK + 2 * self.slots.len() {
                    self.rebuild_heap();
                }
            }
        }
        to_tu
    }

    /// Drops stale heap items: one item per live entry with a deadline.
    fn rebuild_heap(&mut self) {
        let live = self.slots.iter().enumerate().filter_map(|(index, slot)| {
            let at = slot.entry.as_ref()?.armed?;
            Some(Reverse(Deadline {
                at,
                index: u32::try_from(index).ok()?,
                generation: slot.generation,
            }))
        });
        self.heap = live.collect();
    }
}

/// The key held in slot `index`, if the slot is live.
fn key_at<P>(slots: &[Slot<P>], index: u32) -> Option<&TransactionKey> {
    Some(&slots.get(index as usize)?.entry.as_ref()?.key)
}

/// The hash of the key in slot `index`, to move it when the index grows or shrinks. Every
/// slot the index names is live.
fn hash_of_slot<P>(hasher: &RandomState, slots: &[Slot<P>], index: u32) -> u64 {
    key_at(slots, index).map_or(0, |key| hasher.hash_one(key))
}
