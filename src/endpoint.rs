//! The endpoint core: the transaction layer between the transports and the calls.
//!
//! One task owns the [`TransactionTable`] and the registry of live calls. It takes every
//! inbound message in order, triages it (RFC 3261 §8.2), matches it to its transaction
//! (§17.2.3) or dialog (§12.2.2), and either answers it itself (OPTIONS, stateless
//! refusals, 481, CANCEL) or hands it to the call it belongs to. Calls answer through the
//! core, so every response passes through its transaction. The table's timers wake the
//! core through one re-armed sleep; no timer exists per transaction.
//!
//! ```text
//!   udp / tcp tasks ──Inbound──▶ core ──CallEvent──▶ call task (one per call)
//!                                  ▲                     │
//!                                  └──── Command ────────┘
//! ```

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;

use crate::call::{self, CallContext, CallEvent};
use crate::gate::{self, Decision, Gate};
use crate::sip::message::{Message, Method, Request, Response, ToTag};
use crate::sip::transaction::{
    self, AckMatch, Event, IstState, RequestMatch, TransactionKey, TransactionTable,
};
use crate::sip::triage::{ALLOW, MethodClass, Triage, triage};
use crate::transport::{Inbound, Peer};

/// How many inbound messages the core queue holds. Above [`HIGH_WATER`] new calls are
/// refused with 503 while requests of calls already up are still served.
pub const QUEUE_CAPACITY: usize = 16_384;
const HIGH_WATER: usize = QUEUE_CAPACITY * 3 / 4;

/// Transactions the table has room for from the start. A call leaves its INVITE and BYE
/// transactions alive for Timers L and J (32 s each over UDP), so 10,000 calls/s keep about
/// 640,000 at once and 16,000 calls/s a million. Growing past the reservation doubles the
/// table inside the core, a copy of a hundred megabytes or more that stalls every call for
/// long enough to overflow the socket backlog under load (it showed as a burst of 503s 26 s
/// into a 10,000 calls/s run when the reservation was half this); reserved address space is
/// only backed by memory once used.
const TRANSACTIONS_RESERVED: usize = 1 << 20;

/// What a call asks the core to do.
#[derive(Debug)]
pub enum Command {
    /// Send `response` to the server transaction `key`.
    Respond {
        key: TransactionKey,
        status: u16,
        response: Bytes,
    },
    /// Start a client transaction (the BYE vca-sip sends).
    Request {
        key: TransactionKey,
        peer: Peer,
        request: Bytes,
    },
    /// The dialog's current INVITE (initial or re-INVITE) whose 2xx an ACK stops.
    SetInvite { call: CallKey, key: TransactionKey },
    /// The call is over: forget it.
    Gone { call: CallKey },
}

/// Identifies a call from the caller's side: Call-ID and From-tag.
pub type CallKey = Arc<str>;

struct CallEntry {
    mailbox: mpsc::Sender<CallEvent>,
    local_tag: Arc<str>,
    invite: TransactionKey,
}

/// Where a transaction's messages go, and the call it belongs to.
#[derive(Clone, Debug)]
pub struct TxPeer {
    peer: Peer,
    call: Option<CallKey>,
}

/// Handles shared with the rest of the server: draining flag and the core's queues.
#[derive(Clone)]
pub struct CoreHandle {
    pub inbound: mpsc::Sender<Inbound>,
    pub commands: mpsc::Sender<Command>,
    pub draining: Arc<AtomicBool>,
}

pub struct Core {
    table: TransactionTable<TxPeer>,
    calls: HashMap<CallKey, CallEntry>,
    gate: Gate,
    context: Arc<CallContext>,
    inbound: mpsc::Receiver<Inbound>,
    commands: mpsc::Receiver<Command>,
    handle: CoreHandle,
    /// Gauges set on every pass, held so that each set skips the registry lookup.
    transactions_gauge: metrics::Gauge,
    dialogs_gauge: metrics::Gauge,
}

impl Core {
    pub fn new(context: Arc<CallContext>, gate: Gate) -> (Core, CoreHandle) {
        let (inbound_tx, inbound) = mpsc::channel(QUEUE_CAPACITY);
        let (commands_tx, commands) = mpsc::channel(QUEUE_CAPACITY);
        let handle = CoreHandle {
            inbound: inbound_tx,
            commands: commands_tx,
            draining: Arc::new(AtomicBool::new(false)),
        };
        let core = Core {
            table: TransactionTable::with_capacity(
                transaction::TimerConfig::default(),
                TRANSACTIONS_RESERVED,
            ),
            calls: HashMap::new(),
            gate,
            context,
            inbound,
            commands,
            handle: handle.clone(),
            transactions_gauge: metrics::gauge!("vca_sip_transactions"),
            dialogs_gauge: metrics::gauge!("vca_sip_dialogs"),
        };
        (core, handle)
    }

    /// Runs until every queue into the core is closed.
    pub async fn run(mut self) {
        let far = tokio::time::Instant::now() + std::time::Duration::from_secs(86_400);
        let sleep = tokio::time::sleep_until(far);
        tokio::pin!(sleep);
        let mut batch = Vec::with_capacity(64);
        loop {
            let deadline = self
                .table
                .poll_timeout()
                .map_or(far, tokio::time::Instant::from_std);
            if sleep.deadline() != deadline {
                sleep.as_mut().reset(deadline);
            }
            tokio::select! {
                biased;
                Some(command) = self.commands.recv() => {
                    let now = Instant::now();
                    self.handle_command(now, command);
                    while let Ok(command) = self.commands.try_recv() {
                        self.handle_command(now, command);
                    }
                }
                n = self.inbound.recv_many(&mut batch, 64) => {
                    if n == 0 {
                        return;
                    }
                    let now = Instant::now();
                    for inbound in batch.drain(..) {
                        self.handle_inbound(now, inbound);
                    }
                }
                () = &mut sleep => {
                    self.table.handle_timeout(Instant::now());
                }
            }
            self.drain_table();
            self.transactions_gauge.set(self.table.len() as f64);
        }
    }

    fn drain_table(&mut self) {
        while let Some(out) = self.table.poll_output() {
            match out.event {
                Event::Transmit(data) => out.peer.peer.send(data),
                Event::GiveUp => {
                    if let Some(entry) = out.peer.call.as_ref().and_then(|c| self.calls.get(c)) {
                        let _ = entry.mailbox.try_send(CallEvent::AckTimeout);
                    }
                }
                Event::Response(_)
                | Event::NoAck
                | Event::Timeout
                | Event::TransportError
                | Event::Terminated => {}
            }
        }
    }

    fn handle_command(&mut self, now: Instant, command: Command) {
        match command {
            Command::Respond {
                key,
                status,
                response,
            } => {
                if self.table.respond(now, &key, status, response).is_err() {
                    metrics::counter!("vca_sip_late_responses_total").increment(1);
                }
            }
            Command::Request { key, peer, request } => {
                let transport = reliability(&peer);
                let tx = TxPeer { peer, call: None };
                if self
                    .table
                    .create_nict(now, key, transport, tx, request)
                    .is_err()
                {
                    metrics::counter!("vca_sip_request_errors_total").increment(1);
                }
            }
            Command::SetInvite { call, key } => {
                if let Some(entry) = self.calls.get_mut(&call) {
                    entry.invite = key;
                }
            }
            Command::Gone { call } => {
                self.calls.remove(&call);
                self.dialogs_gauge.set(self.calls.len() as f64);
            }
        }
    }

    fn handle_inbound(&mut self, now: Instant, inbound: Inbound) {
        let Inbound { data, peer } = inbound;
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
                peer.send(response);
            }
            Triage::Accept(request, class) => self.handle_request(now, *request, class, peer),
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
    fn handle_request(&mut self, now: Instant, request: Request, class: MethodClass, peer: Peer) {
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
        if request.in_dialog() && self.dialog_of(&call_key, &request).is_some() {
            return self.in_dialog(now, request, key, call_key, peer);
        }

        let source = peer.addr().ip();
        let pass = match self.gate.decide(
            SystemTime::now(),
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
            _ => self.in_dialog(now, request, key, call_key, peer),
        }
    }

    /// The live dialog a request with a To-tag belongs to.
    fn dialog_of(&self, call_key: &CallKey, request: &Request) -> Option<&CallEntry> {
        let to = request.headers().to().ok()?;
        let tag = to.tag()?;
        self.calls.get(call_key).filter(|e| tag == &*e.local_tag)
    }

    /// A stateless answer (§8.2.7's To-tag, no transaction left behind).
    fn stateless(
        &self,
        request: &Request,
        peer: &Peer,
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
        peer.send(builder.build());
    }

    fn create_nist(&mut self, key: TransactionKey, peer: &Peer, call: Option<CallKey>) {
        let tx = TxPeer {
            peer: peer.clone(),
            call,
        };
        let _ = self.table.create_nist(key, reliability(peer), tx);
    }

    /// Answers a request inside a transaction the core creates for it.
    fn respond_stateful(
        &mut self,
        now: Instant,
        request: &Request,
        key: TransactionKey,
        peer: &Peer,
        status: u16,
        reason: &str,
    ) {
        if request.method() == Method::Invite {
            let _ = self.table.create_ist(
                now,
                key.clone(),
                reliability(peer),
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
        peer: Peer,
        pass: gate::Pass,
    ) {
        if self.calls.contains_key(&call_key) {
            // The same Call-ID and From-tag on a new branch: a merged request (§8.2.2.2).
            return self.respond_stateful(now, &request, key, &peer, 482, "Loop Detected");
        }
        let overloaded = self.handle.draining.load(Ordering::Relaxed)
            || QUEUE_CAPACITY - self.handle.inbound.capacity() > HIGH_WATER;
        if overloaded {
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
        let local_tag: Arc<str> = Arc::from(call::new_tag().as_str());
        let trying = Response::to_request(&request, 100, "Trying")
            .received(addr.ip(), addr.port())
            .build();
        let tx = TxPeer {
            peer: peer.clone(),
            call: Some(call_key.clone()),
        };
        if self
            .table
            .create_ist(now, key.clone(), reliability(&peer), tx, Some(trying))
            .is_err()
        {
            return;
        }
        let (mailbox, events) = mpsc::channel(16);
        self.calls.insert(
            call_key.clone(),
            CallEntry {
                mailbox,
                local_tag: local_tag.clone(),
                invite: key.clone(),
            },
        );
        self.dialogs_gauge.set(self.calls.len() as f64);
        let call = call::Call::new(
            self.context.clone(),
            self.handle.commands.clone(),
            call_key,
            local_tag,
            key,
            request,
            peer,
            pass.trunk,
            events,
        );
        tokio::spawn(call.run());
    }

    fn cancel(
        &mut self,
        now: Instant,
        request: Request,
        key: TransactionKey,
        call_key: CallKey,
        peer: Peer,
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
                if state == IstState::Proceeding
                    && let Some(entry) = self.calls.get(&call_key)
                {
                    let _ = entry.mailbox.try_send(CallEvent::Cancel);
                }
            }
        }
    }

    fn in_dialog(
        &mut self,
        now: Instant,
        request: Request,
        key: TransactionKey,
        call_key: CallKey,
        peer: Peer,
    ) {
        let Some(entry) = self.dialog_of(&call_key, &request) else {
            return self.respond_stateful(
                now,
                &request,
                key,
                &peer,
                481,
                "Call/Transaction Does Not Exist",
            );
        };
        let mailbox = entry.mailbox.clone();
        let tx = TxPeer {
            peer: peer.clone(),
            call: Some(call_key.clone()),
        };
        let created = if request.method() == Method::Invite {
            self.table
                .create_ist(now, key.clone(), reliability(&peer), tx, None)
        } else {
            self.table.create_nist(key.clone(), reliability(&peer), tx)
        };
        if created.is_err() {
            return;
        }
        if mailbox
            .try_send(CallEvent::Request {
                key: key.clone(),
                request,
                peer: peer.clone(),
            })
            .is_err()
        {
            // The call is busy or gone: §14.2 asks for 500 with Retry-After.
            let _ = self.table.respond(now, &key, 500, Bytes::new());
        }
    }

    fn ack_for_2xx(&mut self, now: Instant, request: Request) {
        let call_key = call_key(&request);
        let Some(entry) = self.calls.get(&call_key) else {
            metrics::counter!("vca_sip_dropped_total", "reason" => "stray_ack").increment(1);
            return;
        };
        self.table.ack_2xx(now, &entry.invite);
        let _ = entry.mailbox.try_send(CallEvent::Ack { request });
    }
}

fn reliability(peer: &Peer) -> transaction::Transport {
    if peer.is_reliable() {
        transaction::Transport::Reliable
    } else {
        transaction::Transport::Unreliable
    }
}

fn tx_method(method: Method<'_>) -> transaction::Method {
    match method {
        Method::Invite => transaction::Method::Invite,
        Method::Ack => transaction::Method::Ack,
        Method::Cancel => transaction::Method::Cancel,
        Method::Bye => transaction::Method::Bye,
        Method::Options => transaction::Method::Options,
        other => transaction::Method::Other(Bytes::copy_from_slice(other.as_str().as_bytes())),
    }
}

/// The §17.2.3 key of a received request: top Via branch, sent-by and method (or, for an
/// RFC 2543 request without the magic cookie, the whole top Via plus Call-ID and CSeq).
///
/// Branch and sent-by are copied into one small buffer of their own: a key lives as long as
/// its transaction (32 s after the final response over UDP) and must not keep the whole
/// message alive.
pub fn server_key(request: &Request) -> Option<TransactionKey> {
    let via = request.headers().top_via().ok()?;
    let method = tx_method(request.method());
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
    Some(TransactionKey::client(branch, tx_method(cseq.method)))
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
