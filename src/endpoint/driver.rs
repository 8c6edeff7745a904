//! The endpoint's tokio driver: the one place on the signalling path that reads the clock,
//! owns the inbound queue and the calls' mailboxes, and spawns the call tasks.
//!
//! One task runs [`Driver::run`]: it feeds the [`Endpoint`] what the transports queued and
//! what calls command, sends what it transmits, delivers its events, and sleeps on one
//! re-armed timer until its `poll_timeout`. No timer exists per transaction.
//!
//! ```text
//!   udp / tcp / tls tasks ──Inbound──▶ driver ──CallEvent──▶ call task (one per call)
//!                                        ▲                       │
//!                                        └────── Command ────────┘
//! ```

#![allow(clippy::disallowed_methods)] // the driver is where the clock is read

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;

use super::{Endpoint, Event, Input, TRANSACTIONS_RESERVED};
use crate::call::uac::{OutboundCall, Uac};
use crate::call::{self, CallContext};
use crate::gate::Gate;
use crate::ids::CallId;
use crate::sip::transaction::TimerConfig;
use crate::transport::{Inbound, Peer};
use crate::ua::{CallEvent, CallKey, Command};

/// How many inbound messages the driver's queue holds (see [`super::HIGH_WATER`]).
pub const QUEUE_CAPACITY: usize = 16_384;

/// How many events a call's mailbox holds; a call that falls this far behind gets its
/// requests answered `500` with `Retry-After` by the endpoint.
const MAILBOX: usize = 16;

/// Messages taken from the inbound queue per pass.
const BATCH: usize = 64;

/// Calls waiting to be placed; a full queue refuses the next one.
const PLACEMENTS: usize = 1024;

/// Handles shared with the rest of the server: draining flag and the driver's queues.
#[derive(Clone)]
pub struct CoreHandle {
    pub inbound: mpsc::Sender<Inbound>,
    pub commands: mpsc::Sender<Command<Peer>>,
    pub draining: Arc<AtomicBool>,
    placements: mpsc::Sender<Placement>,
}

/// A call to place, as [`CoreHandle::place_call`] hands it to the driver.
struct Placement {
    id: CallId,
    call: OutboundCall,
    peer: Peer,
}

/// Why a call could not be placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlaceError {
    /// The node is draining: it starts no new call.
    #[error("the node is draining")]
    Draining,
    /// Too many calls wait to be placed, or the core has stopped.
    #[error("the core cannot take another call now")]
    Busy,
}

impl CoreHandle {
    /// Places `call` to `peer` (the far end and the socket or connection to reach it by)
    /// and returns the id of its record, which exists (`queued`) once the call's task has
    /// committed it; the call then runs by itself to its end.
    pub fn place_call(&self, peer: Peer, call: OutboundCall) -> Result<CallId, PlaceError> {
        if self.draining.load(Ordering::Relaxed) {
            return Err(PlaceError::Draining);
        }
        let id = CallId::new();
        self.placements
            .try_send(Placement { id, call, peer })
            .map_err(|_| PlaceError::Busy)?;
        Ok(id)
    }
}

/// Owns the endpoint and everything around it that does IO.
pub struct Driver {
    endpoint: Endpoint<Peer>,
    mailboxes: HashMap<CallKey, mpsc::Sender<CallEvent<Peer>>>,
    context: Arc<CallContext>,
    inbound: mpsc::Receiver<Inbound>,
    commands: mpsc::Receiver<Command<Peer>>,
    placements: mpsc::Receiver<Placement>,
    handle: CoreHandle,
}

impl Driver {
    pub fn new(context: Arc<CallContext>, gate: Gate) -> (Driver, CoreHandle) {
        let (inbound_tx, inbound) = mpsc::channel(QUEUE_CAPACITY);
        let (commands_tx, commands) = mpsc::channel(QUEUE_CAPACITY);
        let (placements_tx, placements) = mpsc::channel(PLACEMENTS);
        let handle = CoreHandle {
            inbound: inbound_tx,
            commands: commands_tx,
            draining: Arc::new(AtomicBool::new(false)),
            placements: placements_tx,
        };
        let driver = Driver {
            endpoint: Endpoint::new(gate, TimerConfig::default(), TRANSACTIONS_RESERVED),
            mailboxes: HashMap::new(),
            context,
            inbound,
            commands,
            placements,
            handle: handle.clone(),
        };
        (driver, handle)
    }

    /// Runs until every queue into the endpoint is closed.
    pub async fn run(mut self) {
        let far = tokio::time::Instant::now() + Duration::from_secs(86_400);
        let sleep = tokio::time::sleep_until(far);
        tokio::pin!(sleep);
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let deadline = self
                .endpoint
                .poll_timeout()
                .map_or(far, tokio::time::Instant::from_std);
            if sleep.deadline() != deadline {
                sleep.as_mut().reset(deadline);
            }
            tokio::select! {
                biased;
                Some(command) = self.commands.recv() => {
                    let (now, wall) = (Instant::now(), SystemTime::now());
                    self.command(now, wall, command);
                    while let Ok(command) = self.commands.try_recv() {
                        self.command(now, wall, command);
                    }
                }
                Some(placement) = self.placements.recv() => self.place(placement),
                n = self.inbound.recv_many(&mut batch, BATCH) => {
                    if n == 0 {
                        return;
                    }
                    let (now, wall) = (Instant::now(), SystemTime::now());
                    self.endpoint
                        .set_draining(self.handle.draining.load(Ordering::Relaxed));
                    self.endpoint
                        .set_backlog(QUEUE_CAPACITY - self.handle.inbound.capacity());
                    for Inbound { data, peer } in batch.drain(..) {
                        self.endpoint.handle(now, wall, Input::Datagram { data, peer });
                        self.drain(now, wall);
                    }
                }
                () = &mut sleep => {
                    self.endpoint.handle_timeout(Instant::now());
                    self.drain(Instant::now(), SystemTime::now());
                }
            }
        }
    }

    /// Registers the new call's mailbox, then starts its task: whatever the endpoint
    /// hands the call from its first command on finds the mailbox there.
    fn place(&mut self, placement: Placement) {
        let Placement { id, call, peer } = placement;
        let settings = self.context.settings.clone();
        let machine = Uac::new(settings, self.context.clock.clone(), id, call, peer.clone());
        let (mailbox, events) = mpsc::channel(MAILBOX);
        self.mailboxes.insert(machine.key().clone(), mailbox);
        let commands = self.handle.commands.clone();
        let call = call::Call::outbound(self.context.clone(), commands, machine, peer, events);
        tokio::spawn(call.run());
    }

    fn command(&mut self, now: Instant, wall: SystemTime, command: Command<Peer>) {
        if let Command::Gone { call } = &command {
            self.mailboxes.remove(call);
        }
        self.endpoint.handle(now, wall, Input::Command(command));
        self.drain(now, wall);
    }

    /// Sends what the endpoint transmits and carries out its events, until both are empty.
    fn drain(&mut self, now: Instant, wall: SystemTime) {
        loop {
            while let Some(transmit) = self.endpoint.poll_transmit() {
                transmit.peer.send(transmit.data);
            }
            let Some(event) = self.endpoint.poll_event() else {
                return;
            };
            match event {
                Event::NewCall(new) => {
                    let (mailbox, events) = mpsc::channel(MAILBOX);
                    self.mailboxes.insert(new.key.clone(), mailbox);
                    let call = call::Call::new(
                        self.context.clone(),
                        self.handle.commands.clone(),
                        new.key,
                        new.local_tag,
                        new.invite_key,
                        new.request,
                        new.peer,
                        new.trunk,
                        events,
                    );
                    tokio::spawn(call.run());
                }
                Event::Deliver { call, event } => {
                    let refused = match self.mailboxes.get(&call) {
                        Some(mailbox) => mailbox.try_send(event).err().map(|e| match e {
                            mpsc::error::TrySendError::Full(event)
                            | mpsc::error::TrySendError::Closed(event) => event,
                        }),
                        None => Some(event),
                    };
                    if let Some(event) = refused {
                        let event = Box::new(event);
                        self.endpoint
                            .handle(now, wall, Input::Undelivered { call, event });
                    }
                }
            }
        }
    }
}
