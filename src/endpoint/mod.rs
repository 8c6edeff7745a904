//! The user-agent endpoint: the transaction layer between the transports and the calls,
//! sans-IO (RFC 3261 §8.2, §12.2.2, §17.2.3), in the shape of a QUIC endpoint.
//!
//! [`Endpoint`] owns the [`TransactionTable`], the registry of live dialogs and the trunk
//! [`Gate`]. It takes every inbound message in order, triages it (§8.2), matches it to its
//! transaction (§17.2.3) or dialog (§12.2.2), and either answers it itself (OPTIONS,
//! stateless refusals, 481, CANCEL) or hands it to the call it belongs to. Calls answer
//! through it, so every response passes through its transaction. It never touches a socket,
//! a channel or the clock:
//!
//! ```text
//!   handle(now, wall, Input::Datagram)    poll_transmit() -> bytes for a peer
//!   handle(now, wall, Input::Command)     poll_event()    -> a new call, an event for a call
//!   handle(now, wall, Input::Undelivered) poll_timeout()  -> when to call handle_timeout
//!   handle_timeout(now)
//! ```
//!
//! The calling contract: after any `handle*`, drain `poll_transmit` and `poll_event` until
//! both return `None`, then sleep until `poll_timeout()`. [`driver`] is the tokio side that
//! does exactly that, owns the sockets' inbound queue and the calls' mailboxes, and spawns
//! the call tasks.

pub mod driver;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod uac_tests;

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::{Bytes, BytesMut};

use crate::gate::{self, Admitted, Decision, Gate};
use crate::sip::message::{Message, Method, Request, Response, ToTag};
use crate::sip::transaction::{
    self, AckMatch, IstState, RequestMatch, TransactionKey, TransactionTable,
};
use crate::sip::triage::{ALLOW, MethodClass, Triage, triage};
use crate::ua::{CallEvent, CallKey, Command, Link, new_tag, outbound_call_key};

pub use driver::{CoreHandle, Driver, PlaceError, QUEUE_CAPACITY};

/// Above this many queued inbound messages new calls are refused with 503 while requests of
/// calls already up are still served (RELIABILITY 11).
pub const HIGH_WATER: usize = QUEUE_CAPACITY * 3 / 4;

/// Transactions the table has room for from the start. A call leaves its INVITE and BYE
/// transactions alive for Timers L and J (32 s each over UDP), so 10,000 calls/s keep about
/// 640,000 at once and 16,000 calls/s a million. Growing past the reservation doubles the
/// table inside the endpoint, a copy of a hundred megabytes or more that stalls every call
/// for long enough to overflow the socket backlog under load (it showed as a burst of 503s
/// 26 s into a 10,000 calls/s run when the reservation was half this); reserved address
/// space is only backed by memory once used.
pub const TRANSACTIONS_RESERVED: usize = 1 << 20;

/// What the endpoint is given.
#[derive(Debug)]
pub enum Input<P> {
    /// A message as it arrived from `peer`.
    Datagram { data: Bytes, peer: P },
    /// A call's command.
    Command(Command<P>),
    /// An event from [`Event::Deliver`] that the call could not take (its mailbox is full
    /// or gone): a request in it is answered `500` with `Retry-After` (§14.2).
    Undelivered {
        call: CallKey,
        event: Box<CallEvent<P>>,
    },
}

/// Bytes for a peer.
#[derive(Debug)]
pub struct Transmit<P> {
    pub peer: P,
    pub data: Bytes,
}

/// What the endpoint asks of its driver besides sending.
#[derive(Debug)]
pub enum Event<P> {
    /// Start a call for this INVITE; its server transaction exists and its 100 Trying is
    /// due in 200 ms unless the call answers first.
    NewCall(NewCall<P>),
    /// Hand `event` to the call's mailbox; give it back as [`Input::Undelivered`] when the
    /// mailbox cannot take it.
    Deliver { call: CallKey, event: CallEvent<P> },
}

/// A call the endpoint has admitted.
#[derive(Debug)]
pub struct NewCall<P> {
    pub key: CallKey,
    pub local_tag: Arc<str>,
    pub invite_key: TransactionKey,
    pub request: Request,
    pub peer: P,
    /// The trunk that admitted the INVITE (`None`: the development trunk).
    pub trunk: Admitted,
}

struct CallEntry {
    local_tag: Arc<str>,
    invite: TransactionKey,
    /// Server transactions handed to the call that still wait for its final response:
    /// answered by the endpoint itself if the call goes without answering them.
    unanswered: Vec<Unanswered>,
    /// vca-sip placed the call: it is keyed by its own From-tag, not the peer's.
    outbound: bool,
    /// The INVITE client transactions the call started (its INVITE, and the INVITE
    /// retried with credentials).
    client_invites: Vec<TransactionKey>,
}

/// A request the call was given (its INVITE, or a request inside its dialog) and has not
/// yet answered with a final response.
struct Unanswered {
    key: TransactionKey,
    request: Request,
}

/// Where a transaction's messages go, and the call it belongs to.
#[derive(Clone, Debug)]
pub struct TxPeer<P> {
    peer: P,
    call: Option<CallKey>,
}

/// The sans-IO endpoint; `P` is the way a message came (see [`Link`]).
pub struct Endpoint<P> {
    table: TransactionTable<TxPeer<P>>,
    calls: HashMap<CallKey, CallEntry>,
    gate: Gate,
    /// Inbound messages waiting behind the one being handled, as the driver last said.
    backlog: usize,
    draining: bool,
    transmits: VecDeque<Transmit<P>>,
    events: VecDeque<Event<P>>,
    /// Gauges set on every pass, held so that each set skips the registry lookup.
    transactions_gauge: metrics::Gauge,
    dialogs_gauge: metrics::Gauge,
}

impl<P: Link + std::fmt::Debug> Endpoint<P> {
    pub fn new(gate: Gate, config: transaction::TimerConfig, reserved: usize) -> Self {
        Endpoint {
            table: TransactionTable::with_capacity(config, reserved),
            calls: HashMap::new(),
            gate,
            backlog: 0,
            draining: false,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            transactions_gauge: metrics::gauge!("vca_sip_transactions"),
            dialogs_gauge: metrics::gauge!("vca_sip_dialogs"),
        }
    }

    /// How many inbound messages wait behind the next one; above [`HIGH_WATER`] new calls
    /// get 503.
    pub fn set_backlog(&mut self, queued: usize) {
        self.backlog = queued;
    }

    /// A draining node refuses new calls with 503 and serves the ones it has.
    pub fn set_draining(&mut self, draining: bool) {
        self.draining = draining;
    }

    /// Live transactions.
    pub fn transactions(&self) -> usize {
        self.table.len()
    }

    /// Live calls (dialogs and pending INVITEs).
    pub fn calls(&self) -> usize {
        self.calls.len()
    }

    /// Takes one input at `now` (`wall` is the wall clock, for digest nonces).
    pub fn handle(&mut self, now: Instant, wall: SystemTime, input: Input<P>) {
        match input {
            Input::Datagram { data, peer } => self.handle_inbound(now, wall, data, peer),
            Input::Command(command) => self.handle_command(now, command),
            Input::Undelivered { call, event } => self.handle_undelivered(now, call, *event),
        }
        self.drain_table();
    }

    /// Runs the timers due at `now`; early or repeated calls are no-ops.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.table.handle_timeout(now);
        self.drain_table();
    }

    /// The next message to send. Call after every `handle*` until it returns `None`.
    pub fn poll_transmit(&mut self) -> Option<Transmit<P>> {
        self.transmits.pop_front()
    }

    /// The next call to start or event to deliver. Call after every `handle*` until it
    /// returns `None`.
    pub fn poll_event(&mut self) -> Option<Event<P>> {
        self.events.pop_front()
    }

    /// When [`Endpoint::handle_timeout`] is next due; `None` when no timer runs.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.table.poll_timeout()
    }

    fn send(&mut self, peer: &P, data: Bytes) {
        self.transmits.push_back(Transmit {
            peer: peer.clone(),
            data,
        });
    }

    fn drain_table(&mut self) {
        while let Some(out) = self.table.poll_output() {
            match out.event {
                transaction::Event::Transmit(data) => self.transmits.push_back(Transmit {
                    peer: out.peer.peer,
                    data,
                }),
                transaction::Event::GiveUp => {
                    if let Some(call) = out.peer.call.filter(|c| self.calls.contains_key(c)) {
                        self.events.push_back(Event::Deliver {
                            call,
                            event: CallEvent::AckTimeout,
                        });
                    }
                }
                transaction::Event::Response(response) => self.deliver(
                    out.peer.call,
                    CallEvent::Response {
                        key: out.key,
                        response,
                    },
                ),
                transaction::Event::Timeout => {
                    self.deliver(out.peer.call, CallEvent::Timeout { key: out.key })
                }
                transaction::Event::TransportError => {
                    self.deliver(out.peer.call, CallEvent::TransportError { key: out.key })
                }
                transaction::Event::NoAck | transaction::Event::Terminated => {}
            }
        }
        self.transactions_gauge.set(self.table.len() as f64);
    }

    /// Hands `event` to `call` if it is still live; a call that went misses nothing it
    /// could act on (its client transactions finish by themselves).
    fn deliver(&mut self, call: Option<CallKey>, event: CallEvent<P>) {
        if let Some(call) = call.filter(|c| self.calls.contains_key(c)) {
            self.events.push_back(Event::Deliver { call, event });
        }
    }

    fn handle_command(&mut self, now: Instant, command: Command<P>) {
        match command {
            Command::Respond {
                key,
                status,
                response,
            } => {
                if status >= 200 {
                    self.answered(&key);
                }
                if self.table.respond(now, &key, status, response).is_err() {
                    metrics::counter!("vca_sip_late_responses_total").increment(1);
                }
            }
            Command::Request {
                call,
                key,
                peer,
                request,
            } => {
                let transport = peer.transport();
                let tx = TxPeer {
                    peer,
                    call: Some(call),
                };
                if self
                    .table
                    .create_nict(now, key, transport, tx, request)
                    .is_err()
                {
                    metrics::counter!("vca_sip_request_errors_total").increment(1);
                }
            }
            Command::Invite {
                call,
                key,
                peer,
                invite,
            } => self.invite(now, call, key, peer, *invite),
            Command::Cancel { key } => {
                if self.table.cancel_ict(now, &key).is_err() {
                    metrics::counter!("vca_sip_request_errors_total").increment(1);
                }
            }
            Command::Ack { peer, request } => self.send(&peer, request),
            Command::SetInvite { call, key } => {
                if let Some(entry) = self.calls.get_mut(&call) {
                    entry.invite = key;
                }
            }
            Command::Gone { call } => {
                if let Some(entry) = self.calls.remove(&call) {
                    self.answer_for_gone(now, entry);
                }
                self.dialogs_gauge.set(self.calls.len() as f64);
            }
        }
    }

    /// Starts an INVITE client transaction for `call`, registering the call the first time
    /// (a call vca-sip places).
    fn invite(
        &mut self,
        now: Instant,
        call: CallKey,
        key: TransactionKey,
        peer: P,
        invite: Request,
    ) {
        if !self.calls.contains_key(&call) {
            let Some(local_tag) = invite.headers().from().ok().and_then(|f| f.tag()) else {
                metrics::counter!("vca_sip_request_errors_total").increment(1);
                return;
            };
            let entry = CallEntry {
                local_tag: Arc::from(local_tag),
                invite: key.clone(),
                unanswered: Vec::new(),
                outbound: true,
                client_invites: Vec::new(),
            };
            self.calls.insert(call.clone(), entry);
            self.dialogs_gauge.set(self.calls.len() as f64);
        }
        if let Some(entry) = self.calls.get_mut(&call) {
            entry.client_invites.push(key.clone());
        }
        let transport = peer.transport();
        let tx = TxPeer {
            peer,
            call: Some(call),
        };
        if self
            .table
            .create_ict(now, key, transport, tx, invite)
            .is_err()
        {
            metrics::counter!("vca_sip_request_errors_total").increment(1);
        }
    }

    /// The final response on server transaction `key` is being sent: its call no longer
    /// waits on it.
    fn answered(&mut self, key: &TransactionKey) {
        let call = self.table.peer(key).and_then(|tx| tx.call.clone());
        if let Some(entry) = call.and_then(|call| self.calls.get_mut(&call)) {
            entry.unanswered.retain(|u| &u.key != key);
        }
    }

    /// A call went without a final response to every request it was given. Each such
    /// server transaction would otherwise wait for its TU forever (an INVITE server
    /// transaction in Proceeding and a non-INVITE one in Trying run no timer, §17.2), so
    /// the endpoint answers it, and the transaction then ends by its own timers:
    /// - a request inside the dialog (a BYE, INFO or re-INVITE queued behind the one that
    ///   ended the call) gets 481: the dialog it names is gone, which is what the same
    ///   request arriving a moment later is told (§12.2.2);
    /// - the INVITE that started the call and never got a final gets 500: the call failed
    ///   inside vca-sip without deciding, and 500 (not 481: the INVITE created no dialog
    ///   the caller could have lost) says the fault is the server's.
    ///
    /// An INVITE client transaction of the call still in Proceeding (a provisional came,
    /// no final, typically a CANCEL that was never answered) runs no timer either
    /// (§17.1.1.2): it is destroyed, as §9.1 says a UAC does once it stops waiting for the
    /// final.
    fn answer_for_gone(&mut self, now: Instant, entry: CallEntry) {
        for key in &entry.client_invites {
            if self.table.ict_state(key) == Some(transaction::IctState::Proceeding) {
                let _ = self.table.transport_error(now, key);
            }
        }
        for Unanswered { key, request } in entry.unanswered {
            let Some(addr) = self.table.peer(&key).map(|tx| tx.peer.addr()) else {
                continue;
            };
            let (status, reason) = if request.in_dialog() {
                (481, "Call/Transaction Does Not Exist")
            } else {
                (500, "Server Internal Error")
            };
            let response = Response::to_request(&request, status, reason)
                .to_tag(&entry.local_tag)
                .received(addr.ip(), addr.port())
                .build();
            if self.table.respond(now, &key, status, response).is_ok() {
                metrics::counter!("vca_sip_unanswered_at_end_total", "status" => status.to_string())
                    .increment(1);
            }
        }
    }

    /// A call could not take an event. A request in it is still answered: `500` with
    /// `Retry-After` (§14.2 for a re-INVITE; any request of a call too busy to read its
    /// mailbox gets the same), in the dialog's To-tag.
    fn handle_undelivered(&mut self, now: Instant, call: CallKey, event: CallEvent<P>) {
        metrics::counter!("vca_sip_call_mailbox_full_total").increment(1);
        let CallEvent::Request { key, request, peer } = event else {
            return;
        };
        let tag = match self.calls.get(&call) {
            Some(entry) => entry.local_tag.clone(),
            None => Arc::from(ToTag::derive(request.headers()).as_str()),
        };
        let addr = peer.addr();
        let response = Response::to_request(&request, 500, "Server Internal Error")
            .to_tag(&tag)
            .received(addr.ip(), addr.port())
            .header("Retry-After", &retry_after().to_string())
            .build();
        self.answered(&key);
        let _ = self.table.respond(now, &key, 500, response);
    }

    fn handle_inbound(&mut self, now: Instant, wall: SystemTime, data: Bytes, peer: P) {
        if data.starts_with(b"SIP/") {
            self.handle_response(now, data);
            return;
        }
        match triage(data, peer.transport()) {
            Triage::Drop(reason) => {
                metrics::counter!("vca_sip_dropped_total", "reason" => format!("{reason:?}"))
                    .increment(1);
            }
            Triage::Reject(_) if !self.gate.trusted_source(peer.addr().ip()) => {
                // Only a trunk learns what is wrong with its message; others learn nothing.
                metrics::counter!("vca_sip_dropped_total", "reason" => "unadmitted").increment(1);
            }
            Triage::Reject(rejection) => {
                metrics::counter!("vca_sip_rejected_total", "status" => rejection.status.to_string())
                    .increment(1);
                let addr = peer.addr();
                let response = rejection
                    .response()
                    .received(addr.ip(), addr.port())
                    .build();
                self.send(&peer, response);
            }
            Triage::Accept(request, class) => self.handle_request(now, wall, *request, class, peer),
        }
    }

    fn handle_response(&mut self, now: Instant, data: Bytes) {
        let Ok(Message::Response(response)) = Message::parse(data.clone()) else {
            metrics::counter!("vca_sip_dropped_total", "reason" => "bad_response").increment(1);
            return;
        };
        let Some(key) = client_key(&data, &response) else {
            metrics::counter!("vca_sip_dropped_total", "reason" => "stray_response").increment(1);
            return;
        };
        if self.table.handle_response(now, &key, response) == transaction::ResponseMatch::NoMatch {
            metrics::counter!("vca_sip_dropped_total", "reason" => "stray_response").increment(1);
        }
    }

    /// The order of decisions: (1) ACK, CANCEL and requests of a live dialog are matched
    /// and served, never challenged; (2) any other request must be admitted by a trunk, or
    /// gets the gate's uniform answer; (3) an admitted trunk's INVITE and OPTIONS are
    /// served, other methods get 405 or 501.
    fn handle_request(
        &mut self,
        now: Instant,
        wall: SystemTime,
        request: Request,
        class: MethodClass,
        peer: P,
    ) {
        let method = request.method();
        let Some(key) = server_key(&request) else {
            if self.gate.trusted_source(peer.addr().ip()) {
                self.stateless(&request, &peer, 400, "Bad Via", &[]);
            }
            return;
        };
        if method == Method::Ack {
            match self.table.handle_ack(now, &key) {
                AckMatch::Absorbed | AckMatch::ToTu => {}
                AckMatch::NoMatch => self.ack_for_2xx(now, request),
            }
            return;
        }
        if self.table.handle_request(now, &key) == RequestMatch::Retransmission {
            return;
        }
        let call_key = call_key(&request);
        if method == Method::Cancel && self.table.ist_state(&key.invite_key()).is_some() {
            return self.cancel(now, request, key, call_key, peer);
        }
        if request.in_dialog()
            && let Some(dialog) = self.dialog_of(&request)
        {
            return self.in_dialog(now, request, key, Some(dialog), peer);
        }

        let source = peer.addr().ip();
        let pass = match self.gate.decide(
            now,
            wall,
            &request,
            source,
            peer.transport(),
            peer.client_cert(),
        ) {
            Decision::Admit(pass) => pass,
            Decision::Challenge(challenges) => {
                let headers: Vec<(&str, &str)> = challenges
                    .iter()
                    .map(|c| ("WWW-Authenticate", c.as_str()))
                    .collect();
                return self.stateless(&request, &peer, 401, "Unauthorized", &headers);
            }
            Decision::BadCredentials => {
                return self.stateless(&request, &peer, 400, "Bad Authorization", &[]);
            }
            Decision::Forbid => return self.stateless(&request, &peer, 403, "Forbidden", &[]),
            Decision::Drop => {
                metrics::counter!("vca_sip_dropped_total", "reason" => "unadmitted").increment(1);
                return;
            }
        };

        match class {
            MethodClass::Served => {}
            MethodClass::NotServed | MethodClass::Unknown => {
                let (status, reason) = if class == MethodClass::NotServed {
                    (405, "Method Not Allowed")
                } else {
                    (501, "Not Implemented")
                };
                self.gate.give_back(&pass);
                return self.stateless(&request, &peer, status, reason, &[("Allow", ALLOW)]);
            }
        }
        match method {
            Method::Invite if !request.in_dialog() => {
                self.new_call(now, request, key, call_key, peer, pass)
            }
            Method::Cancel => self.cancel(now, request, key, call_key, peer),
            Method::Options if !request.in_dialog() => {
                self.create_nist(key.clone(), &peer, None);
                let addr = peer.addr();
                let tag = ToTag::derive(request.headers());
                let response = Response::to_request(&request, 200, "OK")
                    .to_tag(tag.as_str())
                    .received(addr.ip(), addr.port())
                    .header("Allow", ALLOW)
                    .header("Accept", "application/sdp")
                    .header("Supported", "timer")
                    .build();
                let _ = self.table.respond(now, &key, 200, response);
            }
            _ => {
                let dialog = self.dialog_of(&request);
                self.in_dialog(now, request, key, dialog, peer)
            }
        }
    }

    /// The call whose live dialog a request with a To-tag belongs to. A call that came in
    /// is keyed by the caller's From-tag and its To-tag is ours; a call vca-sip placed is
    /// keyed by our own tag, which the far end's requests carry as their To-tag.
    fn dialog_of(&self, request: &Request) -> Option<CallKey> {
        let tag = request.headers().to().ok()?.tag()?;
        let inbound = call_key(request);
        if self
            .calls
            .get(&inbound)
            .is_some_and(|e| !e.outbound && tag == &*e.local_tag)
        {
            return Some(inbound);
        }
        let outbound = outbound_call_key(request.headers().call_id().ok()?, tag);
        self.calls
            .get(&outbound)
            .is_some_and(|e| e.outbound)
            .then_some(outbound)
    }

    /// A stateless answer (§8.2.7's To-tag, no transaction left behind).
    fn stateless(
        &mut self,
        request: &Request,
        peer: &P,
        status: u16,
        reason: &str,
        headers: &[(&str, &str)],
    ) {
        metrics::counter!("vca_sip_rejected_total", "status" => status.to_string()).increment(1);
        let addr = peer.addr();
        let tag = ToTag::derive(request.headers());
        let mut builder = Response::to_request(request, status, reason)
            .to_tag(tag.as_str())
            .received(addr.ip(), addr.port());
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        self.send(peer, builder.build());
    }

    fn create_nist(&mut self, key: TransactionKey, peer: &P, call: Option<CallKey>) {
        let tx = TxPeer {
            peer: peer.clone(),
            call,
        };
        let _ = self.table.create_nist(key, peer.transport(), tx);
    }

    /// Answers a request inside a transaction the endpoint creates for it.
    fn respond_stateful(
        &mut self,
        now: Instant,
        request: &Request,
        key: TransactionKey,
        peer: &P,
        status: u16,
        reason: &str,
    ) {
        if request.method() == Method::Invite {
            let _ = self.table.create_ist(
                now,
                key.clone(),
                peer.transport(),
                TxPeer {
                    peer: peer.clone(),
                    call: None,
                },
                None,
            );
        } else {
            self.create_nist(key.clone(), peer, None);
        }
        let addr = peer.addr();
        let tag = ToTag::derive(request.headers());
        let response = Response::to_request(request, status, reason)
            .to_tag(tag.as_str())
            .received(addr.ip(), addr.port())
            .build();
        let _ = self.table.respond(now, &key, status, response);
    }

    fn new_call(
        &mut self,
        now: Instant,
        request: Request,
        key: TransactionKey,
        call_key: CallKey,
        peer: P,
        pass: gate::Pass,
    ) {
        if self.calls.contains_key(&call_key) {
            // The same Call-ID and From-tag on a new branch: a merged request (§8.2.2.2).
            return self.respond_stateful(now, &request, key, &peer, 482, "Loop Detected");
        }
        if self.draining || self.backlog > HIGH_WATER {
            metrics::counter!("vca_sip_overload_rejects_total").increment(1);
            // No transaction is left to absorb the client's retransmission: it must
            // authenticate again and get this same answer, not a 401 for a replay.
            self.gate.give_back(&pass);
            return self.stateless(
                &request,
                &peer,
                503,
                "Service Unavailable",
                &[
                    ("Retry-After", "5"),
                    (
                        "Reason",
                        "Q.850;cause=42;text=\"Switching equipment congestion\"",
                    ),
                ],
            );
        }
        let addr = peer.addr();
        let local_tag: Arc<str> = Arc::from(new_tag().as_str());
        let trying = Response::to_request(&request, 100, "Trying")
            .received(addr.ip(), addr.port())
            .build();
        let tx = TxPeer {
            peer: peer.clone(),
            call: Some(call_key.clone()),
        };
        if self
            .table
            .create_ist(now, key.clone(), peer.transport(), tx, Some(trying))
            .is_err()
        {
            return;
        }
        self.calls.insert(
            call_key.clone(),
            CallEntry {
                local_tag: local_tag.clone(),
                invite: key.clone(),
                unanswered: vec![Unanswered {
                    key: key.clone(),
                    request: request.clone(),
                }],
                outbound: false,
                client_invites: Vec::new(),
            },
        );
        self.dialogs_gauge.set(self.calls.len() as f64);
        self.events.push_back(Event::NewCall(NewCall {
            key: call_key,
            local_tag,
            invite_key: key,
            request,
            peer,
            trunk: pass.trunk,
        }));
    }

    fn cancel(
        &mut self,
        now: Instant,
        request: Request,
        key: TransactionKey,
        call_key: CallKey,
        peer: P,
    ) {
        let invite = key.invite_key();
        match self.table.ist_state(&invite) {
            None => self.respond_stateful(
                now,
                &request,
                key,
                &peer,
                481,
                "Call/Transaction Does Not Exist",
            ),
            Some(state) => {
                self.respond_stateful(now, &request, key, &peer, 200, "OK");
                if state == IstState::Proceeding && self.calls.contains_key(&call_key) {
                    self.events.push_back(Event::Deliver {
                        call: call_key,
                        event: CallEvent::Cancel,
                    });
                }
            }
        }
    }

    /// A request for the live dialog of `dialog` ([`Endpoint::dialog_of`]), or 481.
    fn in_dialog(
        &mut self,
        now: Instant,
        request: Request,
        key: TransactionKey,
        dialog: Option<CallKey>,
        peer: P,
    ) {
        let Some(call_key) = dialog else {
            return self.respond_stateful(
                now,
                &request,
                key,
                &peer,
                481,
                "Call/Transaction Does Not Exist",
            );
        };
        let tx = TxPeer {
            peer: peer.clone(),
            call: Some(call_key.clone()),
        };
        let created = if request.method() == Method::Invite {
            self.table
                .create_ist(now, key.clone(), peer.transport(), tx, None)
        } else {
            self.table.create_nist(key.clone(), peer.transport(), tx)
        };
        if created.is_err() {
            return;
        }
        if let Some(entry) = self.calls.get_mut(&call_key) {
            entry.unanswered.push(Unanswered {
                key: key.clone(),
                request: request.clone(),
            });
        }
        self.events.push_back(Event::Deliver {
            call: call_key,
            event: CallEvent::Request { key, request, peer },
        });
    }

    fn ack_for_2xx(&mut self, now: Instant, request: Request) {
        let call_key = call_key(&request);
        let Some(entry) = self.calls.get(&call_key) else {
            metrics::counter!("vca_sip_dropped_total", "reason" => "stray_ack").increment(1);
            return;
        };
        self.table.ack_2xx(now, &entry.invite);
        self.events.push_back(Event::Deliver {
            call: call_key,
            event: CallEvent::Ack { request },
        });
    }
}

/// Seconds a client is asked to wait before retrying a request refused for being busy
/// (§14.2: "a random value between 0 and 10 seconds").
fn retry_after() -> u32 {
    use rand::Rng;
    rand::rng().random_range(0..=10)
}

/// The §17.2.3 key of a received request: top Via branch, sent-by and method (or, for an
/// RFC 2543 request without the magic cookie, the whole top Via plus Call-ID and CSeq).
///
/// Branch and sent-by are copied into one small buffer of their own: a key lives as long as
/// its transaction (32 s after the final response over UDP) and must not keep the whole
/// message alive.
pub fn server_key(request: &Request) -> Option<TransactionKey> {
    let via = request.headers().top_via().ok()?;
    let method = request.method();
    if let Some(branch) = via.branch() {
        let mut id = BytesMut::with_capacity(branch.len() + 48);
        id.extend_from_slice(branch.as_bytes());
        // Writing into a BytesMut cannot fail.
        let _ = write!(id, "{}:{}", via.host, via.port.unwrap_or(5060));
        let mut sent_by = id.freeze();
        let branch = sent_by.split_to(branch.len());
        if let Some(key) = TransactionKey::server(branch, sent_by, method.clone()) {
            return Some(key);
        }
    }
    let call_id = request.headers().call_id().ok()?;
    let cseq = request.headers().cseq().ok()?;
    let legacy = format!(
        "{}|{}|{}|{}",
        via.as_str(),
        call_id,
        cseq.seq,
        request.headers().from().ok()?.tag().unwrap_or("")
    );
    Some(TransactionKey::legacy(Bytes::from(legacy), method))
}

fn client_key(data: &Bytes, response: &Response) -> Option<TransactionKey> {
    let via = response.headers().top_via().ok()?;
    let branch = slice_of(data, via.branch()?);
    let cseq = response.headers().cseq().ok()?;
    Some(TransactionKey::client(branch, cseq.method))
}

/// A zero-copy slice of `buf` for a `&str` that points into it (a copy otherwise).
fn slice_of(buf: &Bytes, part: &str) -> Bytes {
    let start = part.as_ptr() as usize;
    let base = buf.as_ptr() as usize;
    if start >= base && start + part.len() <= base + buf.len() {
        buf.slice_ref(part.as_bytes())
    } else {
        Bytes::copy_from_slice(part.as_bytes())
    }
}

fn call_key(request: &Request) -> CallKey {
    let call_id = request.headers().call_id().unwrap_or_default();
    let from_tag = request
        .headers()
        .from()
        .ok()
        .and_then(|f| f.tag())
        .unwrap_or_default();
    let mut key = String::with_capacity(call_id.len() + from_tag.len() + 1);
    key.push_str(call_id);
    key.push('\u{0}');
    key.push_str(from_tag);
    Arc::from(key)
}
