//! The UAC core for one outgoing INVITE (RFC 3261 §8.1, §12.1.2, §13.2), with reliable
//! provisionals (RFC 3262): the dialogs its responses create and what to send in them.
//!
//! [`UacInvite`] builds the INVITE and then takes the responses that its INVITE client
//! transaction hands to the TU ([`Event::Response`](super::transaction::Event::Response)).
//! Responses with a To-tag create dialogs, one per tag, since a forking proxy may return
//! several ([`UacDialog`], §12.1.2): a provisional an early one, a 2xx a confirmed one.
//! The first 2xx wins; every other 2xx is acknowledged and then ended with a BYE
//! (§13.2.2.4). The machine does no IO and reads no clock: it answers with
//! [`UacOutput`]s that a driver executes (send the ACK, run the BYE or PRACK in a
//! non-INVITE client transaction, tell the call).
//!
//! ```text
//!   table Event::Response ──▶ handle_response ──▶ poll_output: Provisional, SendPrack,
//!   table Event::Timeout  ──▶ handle_timeout        NeedAnswer, SendAck, Established,
//!   TransportError        ──▶ handle_transport_error SendBye, Failed
//!   TU's SDP answer       ──▶ answer (late offer: the 2xx offered, the ACK answers)
//! ```
//!
//! Branches of the requests it builds are `<branch_prefix>.<n>`: the INVITE's is `.0`, so
//! a driver that gives each INVITE a unique prefix gets unique branches with no randomness
//! here. Route sets are used as loose routes (`;lr`, §16.12); strict routing of RFC 2543
//! is not supported.

use std::collections::VecDeque;

use bytes::Bytes;

use super::dialog::DialogId;
use super::message::{self, Message, ParseError, Request, RequestBuilder, Response};
use super::transaction::{MAGIC_COOKIE, Method, TransactionKey};

/// Why a UAC step failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UacError {
    /// The branch prefix does not start with the magic cookie `z9hG4bK` (§8.1.1.7).
    #[error("the branch prefix does not start with z9hG4bK")]
    BadBranch,
    /// The INVITE built from the parameters does not parse (a parameter holds a line break
    /// or is not a valid header value).
    #[error("the INVITE built from the parameters does not parse: {0}")]
    BadInvite(ParseError),
    /// A response that should create a dialog lacks what the dialog needs.
    #[error("the response cannot create a dialog: {0}")]
    BadResponse(ParseError),
    /// A dialog-creating response without a To-tag (§12.1.2 needs it).
    #[error("the response has no To-tag")]
    NoToTag,
    /// No dialog with this id belongs to the INVITE.
    #[error("no dialog with this id")]
    UnknownDialog,
    /// The TU gave an answer for a dialog whose 2xx did not carry an offer.
    #[error("the dialog is not waiting for an answer")]
    NoOfferPending,
}

/// Where a UAC dialog is in its life (RFC 3261 §12.1.2, §13.2.2.4).
///
/// ```text
///   1xx with To-tag ──▶ Early ──2xx (same tag)──▶ Confirmed ──BYE / surplus──▶ Terminated
///                         └──── 300-699 final, timeout ──────────────────────▶ Terminated
///   2xx with a new To-tag ──────────────────────▶ Confirmed
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UacDialogState {
    /// Created by a provisional with a To-tag.
    Early,
    /// Created or confirmed by a 2xx.
    Confirmed,
    /// Ended: a non-2xx final ended the early dialog, or a BYE was sent.
    Terminated,
}

/// A dialog in which vca-sip is the UAC of the creating INVITE (§12.1.2).
#[derive(Debug, Clone)]
pub struct UacDialog {
    id: DialogId,
    state: UacDialogState,
    local_uri: String,
    remote_uri: String,
    remote_target: String,
    route_set: Vec<String>,
    local_cseq: u32,
    transport: String,
    sent_by: String,
}

impl UacDialog {
    /// The dialog id (Call-ID, our From-tag, the peer's To-tag).
    pub fn id(&self) -> &DialogId {
        &self.id
    }

    /// The current state.
    pub fn state(&self) -> UacDialogState {
        self.state
    }

    /// Where requests in the dialog go: the Contact URI of the response (§12.1.2).
    pub fn remote_target(&self) -> &str {
        &self.remote_target
    }

    /// The route set: the response's Record-Route values in reverse order (§12.1.2).
    pub fn route_set(&self) -> &[String] {
        &self.route_set
    }

    /// The CSeq number of the last request vca-sip sent in the dialog (the INVITE's first).
    pub fn local_cseq(&self) -> u32 {
        self.local_cseq
    }

    /// Takes the next CSeq number for a new request in the dialog (not for an ACK, which
    /// reuses the INVITE's, nor a CANCEL).
    pub fn next_local_cseq(&mut self) -> u32 {
        self.local_cseq = self.local_cseq.wrapping_add(1);
        self.local_cseq
    }

    /// Starts a request in the dialog (§12.2.1.1): Request-URI the remote target, Route the
    /// route set, From our URI and tag, To the peer's URI and tag, a Via with `branch`.
    pub fn request<'a>(
        &'a self,
        method: message::Method,
        branch: &'a str,
        cseq: u32,
    ) -> RequestBuilder<'a> {
        let mut builder = RequestBuilder::new(
            method,
            &self.remote_target,
            (&self.transport, &self.sent_by, branch),
            (&self.local_uri, self.id.local_tag()),
            (&self.remote_uri, Some(self.id.remote_tag())),
            self.id.call_id(),
            cseq,
        );
        for route in &self.route_set {
            builder = builder.route(route);
        }
        builder
    }

    /// Takes the route set and remote target from a response of the dialog: on creation,
    /// and again when a 2xx confirms an early dialog (§12.1.2, §13.2.2.4).
    fn learn(&mut self, response: &Response) -> Result<(), UacError> {
        let head = response.headers();
        let mut route_set = Vec::new();
        for route in head.record_routes() {
            route_set.push(route.map_err(UacError::BadResponse)?.as_str().to_owned());
        }
        route_set.reverse();
        self.route_set = route_set;
        // A dialog-creating response must carry a Contact (§12.1.2); without one, requests
        // keep going to the Request-URI, which at least reaches the same place.
        if let Some(contact) = head.contacts().next() {
            self.remote_target = contact
                .map_err(UacError::BadResponse)?
                .uri()
                .as_str()
                .to_owned();
        }
        Ok(())
    }
}

/// What one outgoing INVITE is built from. The strings are header values as they go on
/// the wire.
#[derive(Debug, Clone, Copy)]
pub struct UacInviteParams<'a> {
    /// The Request-URI (and the first remote target).
    pub request_uri: &'a str,
    /// The Via transport token: `UDP`, `TCP`, `TLS`, `WS`.
    pub transport: &'a str,
    /// The Via sent-by: vca-sip's address as the peer should answer to.
    pub sent_by: &'a str,
    /// A prefix unique to this INVITE, starting with `z9hG4bK`; see the module doc.
    pub branch_prefix: &'a str,
    /// The From name-addr (without tag), e.g. `<sip:agent@vca.example>`.
    pub local_uri: &'a str,
    /// The From-tag.
    pub local_tag: &'a str,
    /// The To name-addr, e.g. `<sip:+15551234567@carrier.example>`.
    pub remote_uri: &'a str,
    /// The Call-ID.
    pub call_id: &'a str,
    /// The INVITE's CSeq number.
    pub cseq: u32,
    /// The Contact name-addr: where the peer sends requests in the dialog.
    pub contact: &'a str,
    /// A preloaded route set (an outbound proxy), one Route value each, in order.
    pub routes: &'a [&'a str],
    /// Max-Forwards of the INVITE: 70 for a request vca-sip originates, one less than the
    /// near leg's for a request it sends onward (RFC 3261 §16.6 step 3).
    pub max_forwards: u8,
    /// The SDP offer; `None` for a late offer (the 2xx offers, the ACK answers).
    pub offer: Option<&'a Bytes>,
    /// Whether to advertise `Supported: 100rel` (RFC 3262).
    pub reliable_provisionals: bool,
    /// Further header lines, e.g. the `Authorization` of an INVITE retried after a 401
    /// (§22.2).
    pub headers: &'a [(&'a str, &'a str)],
}

/// What the driver does for the INVITE, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UacOutput {
    /// A provisional arrived, with the dialog it belongs to if it carried a To-tag. A
    /// retransmitted reliable provisional is not reported again.
    Provisional {
        /// The status code.
        status: u16,
        /// The early dialog, if any.
        dialog: Option<DialogId>,
    },
    /// Send this PRACK (RFC 3262 §7.1) in a non-INVITE client transaction keyed by
    /// `branch` and method PRACK.
    SendPrack {
        /// The early dialog it belongs to.
        dialog: DialogId,
        /// The branch of its Via.
        branch: Bytes,
        /// The serialised request.
        request: Bytes,
    },
    /// The 2xx of this dialog carried an offer (late offer): give the SDP answer with
    /// [`UacInvite::answer`], which sends the ACK.
    NeedAnswer {
        /// The confirmed dialog.
        dialog: DialogId,
        /// The offer (the 2xx's body).
        offer: Bytes,
    },
    /// Send this ACK for the dialog's 2xx (§13.2.2.4), to the dialog's remote target (or
    /// its first route). It is not a transaction: send it as is, and again for each
    /// retransmitted 2xx (which produces this output again).
    SendAck {
        /// The confirmed dialog.
        dialog: DialogId,
        /// The serialised ACK.
        request: Bytes,
    },
    /// The call is up on this dialog (the first 2xx). Its 2xx is the `response` here.
    Established {
        /// The dialog that won.
        dialog: DialogId,
        /// The 2xx (its body is the answer, or for a late offer the offer).
        response: Response,
    },
    /// Send this BYE in a non-INVITE client transaction keyed by `branch` and method BYE:
    /// a surplus 2xx from another fork (§13.2.2.4).
    SendBye {
        /// The surplus dialog.
        dialog: DialogId,
        /// The branch of its Via.
        branch: Bytes,
        /// The serialised request.
        request: Bytes,
    },
    /// The INVITE failed with this final status: a 300-699 from the peer (already ACKed by
    /// the transaction), 408 on Timer B, 503 on a transport error (§8.1.3.1).
    Failed {
        /// The status.
        status: u16,
    },
}

/// Per-dialog bookkeeping of the INVITE.
#[derive(Debug, Clone)]
struct Leg {
    dialog: UacDialog,
    /// The ACK of this dialog's 2xx, resent for each retransmitted 2xx.
    ack: Option<Bytes>,
    /// The 2xx carried an offer and the TU has not answered yet.
    offer_pending: bool,
    /// Another dialog won: after the ACK, send a BYE.
    surplus: bool,
    /// The RSeq of the last reliable provisional accepted (RFC 3262 §4).
    last_rseq: Option<u32>,
}

/// Where the INVITE as a whole stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UacInviteState {
    /// Sent; no provisional yet (a CANCEL must wait, §9.1).
    Calling,
    /// A provisional arrived; the INVITE may be cancelled.
    Proceeding,
    /// A 2xx arrived: the call is up (surplus forks are still ACKed and ended).
    Established,
    /// It failed ([`UacOutput::Failed`] was reported).
    Failed,
}

/// The TU side of one outgoing INVITE.
#[derive(Debug, Clone)]
pub struct UacInvite {
    state: UacInviteState,
    invite: Request,
    key: TransactionKey,
    branch_prefix: String,
    next_branch: u32,
    late_offer: bool,
    legs: Vec<Leg>,
    /// The leg whose 2xx came first: the call's dialog.
    winner: Option<usize>,
    outputs: VecDeque<UacOutput>,
}

impl UacInvite {
    /// Builds the INVITE. Create its transaction with
    /// [`TransactionTable::create_ict`](super::transaction::TransactionTable::create_ict)
    /// using [`UacInvite::key`] and a clone of [`UacInvite::invite`].
    pub fn new(params: &UacInviteParams<'_>) -> Result<Self, UacError> {
        if !params.branch_prefix.as_bytes().starts_with(MAGIC_COOKIE) {
            return Err(UacError::BadBranch);
        }
        let branch = format!("{}.0", params.branch_prefix);
        let mut builder = RequestBuilder::new(
            message::Method::Invite,
            params.request_uri,
            (params.transport, params.sent_by, &branch),
            (params.local_uri, params.local_tag),
            (params.remote_uri, None),
            params.call_id,
            params.cseq,
        )
        .max_forwards(params.max_forwards)
        .header("Contact", params.contact);
        for route in params.routes {
            builder = builder.route(route);
        }
        if params.reliable_provisionals {
            builder = builder.header("Supported", "100rel");
        }
        for (name, value) in params.headers {
            builder = builder.header(name, value);
        }
        if let Some(offer) = params.offer {
            builder = builder.body("application/sdp", offer.clone());
        }
        let invite = match Message::parse(builder.build()) {
            Ok(Message::Request(request)) => request,
            Ok(Message::Response(_)) => return Err(UacError::BadInvite(ParseError::BadStartLine)),
            Err(e) => return Err(UacError::BadInvite(e)),
        };
        Ok(Self {
            state: UacInviteState::Calling,
            invite,
            key: TransactionKey::client(Bytes::from(branch), Method::Invite),
            branch_prefix: params.branch_prefix.to_owned(),
            next_branch: 1,
            late_offer: params.offer.is_none(),
            legs: Vec::new(),
            winner: None,
            outputs: VecDeque::new(),
        })
    }

    /// The INVITE, parsed (its bytes are [`Request::as_bytes`]).
    pub fn invite(&self) -> &Request {
        &self.invite
    }

    /// The key of the INVITE's client transaction.
    pub fn key(&self) -> &TransactionKey {
        &self.key
    }

    /// Where the INVITE stands.
    pub fn state(&self) -> UacInviteState {
        self.state
    }

    /// True while a CANCEL may be sent: a provisional arrived and no final (§9.1).
    pub fn can_cancel(&self) -> bool {
        self.state == UacInviteState::Proceeding
    }

    /// The dialog with this id.
    pub fn dialog(&self, id: &DialogId) -> Option<&UacDialog> {
        self.legs.iter().map(|l| &l.dialog).find(|d| d.id() == id)
    }

    /// Every dialog the responses created, early, confirmed or ended, in creation order.
    pub fn dialogs(&self) -> impl Iterator<Item = &UacDialog> + '_ {
        self.legs.iter().map(|l| &l.dialog)
    }

    /// The dialog the call runs on, once established, for the BYE that ends it and other
    /// requests (take CSeq numbers with [`UacDialog::next_local_cseq`]).
    pub fn established_mut(&mut self) -> Option<&mut UacDialog> {
        let leg = self.legs.get_mut(self.winner?)?;
        Some(&mut leg.dialog).filter(|d| d.state == UacDialogState::Confirmed)
    }

    /// A new branch for a request of this INVITE's dialogs.
    pub fn next_branch(&mut self) -> String {
        let branch = format!("{}.{}", self.branch_prefix, self.next_branch);
        self.next_branch = self.next_branch.wrapping_add(1);
        branch
    }

    /// A response the INVITE transaction passed to the TU. A response that cannot create
    /// its dialog fails the step and changes nothing. Drain [`UacInvite::poll_output`]
    /// afterwards.
    pub fn handle_response(&mut self, response: &Response) -> Result<(), UacError> {
        match response.status() {
            100..=199 => self.on_provisional(response),
            200..=299 => self.on_2xx(response),
            status => {
                for leg in &mut self.legs {
                    if leg.dialog.state == UacDialogState::Early {
                        leg.dialog.state = UacDialogState::Terminated;
                    }
                }
                if matches!(
                    self.state,
                    UacInviteState::Calling | UacInviteState::Proceeding
                ) {
                    self.state = UacInviteState::Failed;
                    self.outputs.push_back(UacOutput::Failed { status });
                }
                Ok(())
            }
        }
    }

    /// Timer B fired on the INVITE transaction: the INVITE failed with 408 (§8.1.3.1).
    pub fn handle_timeout(&mut self) {
        self.fail(408);
    }

    /// The transport failed for the INVITE: it failed with 503 (§8.1.3.1).
    pub fn handle_transport_error(&mut self) {
        self.fail(503);
    }

    /// The TU's SDP answer to the offer in the 2xx of `dialog` (late offer): sends the ACK
    /// with it, and for a surplus fork the BYE after it.
    pub fn answer(&mut self, dialog: &DialogId, answer: Bytes) -> Result<(), UacError> {
        let index = self
            .legs
            .iter()
            .position(|l| l.dialog.id() == dialog)
            .ok_or(UacError::UnknownDialog)?;
        let leg = self.legs.get(index).ok_or(UacError::UnknownDialog)?;
        if !leg.offer_pending {
            return Err(UacError::NoOfferPending);
        }
        self.send_ack(index, Some(answer));
        Ok(())
    }

    /// The next action. Call after every `handle*` and `answer` until it returns `None`.
    pub fn poll_output(&mut self) -> Option<UacOutput> {
        self.outputs.pop_front()
    }

    fn fail(&mut self, status: u16) {
        if matches!(
            self.state,
            UacInviteState::Calling | UacInviteState::Proceeding
        ) {
            for leg in &mut self.legs {
                leg.dialog.state = UacDialogState::Terminated;
            }
            self.state = UacInviteState::Failed;
            self.outputs.push_back(UacOutput::Failed { status });
        }
    }

    /// The leg for the response's To-tag, created (in `state`) if new.
    fn leg_for(
        &mut self,
        response: &Response,
        tag: &str,
        state: UacDialogState,
    ) -> Result<usize, UacError> {
        if let Some(index) = self
            .legs
            .iter()
            .position(|l| l.dialog.id().remote_tag() == tag)
        {
            return Ok(index);
        }
        let head = self.invite.headers();
        let from = head.from().map_err(UacError::BadInvite)?;
        let to = head.to().map_err(UacError::BadInvite)?;
        let via = head.top_via().map_err(UacError::BadInvite)?;
        let mut dialog = UacDialog {
            id: DialogId::new(
                head.call_id().map_err(UacError::BadInvite)?,
                from.tag().unwrap_or_default(),
                tag,
            ),
            state,
            local_uri: from.without_params().to_owned(),
            remote_uri: to.without_params().to_owned(),
            remote_target: self.invite.uri().as_str().to_owned(),
            route_set: Vec::new(),
            local_cseq: head.cseq().map_err(UacError::BadInvite)?.seq,
            transport: via.transport.to_owned(),
            sent_by: via.sent_by().to_owned(),
        };
        dialog.learn(response)?;
        self.legs.push(Leg {
            dialog,
            ack: None,
            offer_pending: false,
            surplus: false,
            last_rseq: None,
        });
        Ok(self.legs.len() - 1)
    }

    fn on_provisional(&mut self, response: &Response) -> Result<(), UacError> {
        if !matches!(
            self.state,
            UacInviteState::Calling | UacInviteState::Proceeding
        ) {
            return Ok(());
        }
        let status = response.status();
        let head = response.headers();
        let tag = head
            .to()
            .map_err(UacError::BadResponse)?
            .tag()
            .map(str::to_owned);
        // 100 Trying is hop-by-hop and creates no dialog (§12.1).
        let Some(tag) = tag.filter(|_| status > 100) else {
            self.state = UacInviteState::Proceeding;
            self.outputs.push_back(UacOutput::Provisional {
                status,
                dialog: None,
            });
            return Ok(());
        };
        let index = self.leg_for(response, &tag, UacDialogState::Early)?;
        let reliable = head.require().any(|t| t.is_ok_and(|t| t == "100rel"));
        let rseq = head.get("RSeq").and_then(|v| v.trim().parse::<u32>().ok());
        let mut prack = None;
        if let (true, Some(rseq)) = (reliable, rseq) {
            let Some(leg) = self.legs.get(index) else {
                return Ok(());
            };
            match leg.last_rseq {
                // A retransmission, or one that arrived before its predecessor: the
                // first is not news, the second must wait for the UAS to resend it in
                // order (RFC 3262 §4).
                Some(last) if rseq != last.wrapping_add(1) => return Ok(()),
                _ => prack = Some(rseq),
            }
        }
        self.state = UacInviteState::Proceeding;
        if let Some(rseq) = prack {
            let cseq = head.cseq().map_err(UacError::BadResponse)?.seq;
            let branch = self.next_branch();
            let Some(leg) = self.legs.get_mut(index) else {
                return Ok(());
            };
            leg.last_rseq = Some(rseq);
            let prack_cseq = leg.dialog.next_local_cseq();
            let rack = format!("{rseq} {cseq} INVITE");
            let request = leg
                .dialog
                .request(message::Method::Prack, &branch, prack_cseq)
                .header("RAck", &rack)
                .build();
            self.outputs.push_back(UacOutput::Provisional {
                status,
                dialog: Some(leg.dialog.id().clone()),
            });
            self.outputs.push_back(UacOutput::SendPrack {
                dialog: leg.dialog.id().clone(),
                branch: Bytes::from(branch),
                request,
            });
        } else if let Some(leg) = self.legs.get(index) {
            self.outputs.push_back(UacOutput::Provisional {
                status,
                dialog: Some(leg.dialog.id().clone()),
            });
        }
        Ok(())
    }

    fn on_2xx(&mut self, response: &Response) -> Result<(), UacError> {
        let tag = response
            .headers()
            .to()
            .map_err(UacError::BadResponse)?
            .tag()
            .ok_or(UacError::NoToTag)?
            .to_owned();
        if self.state == UacInviteState::Failed {
            // A 2xx after Timer B or a transport error: the call is given up, but the
            // peer's dialog must still be ACKed and ended (§13.2.2.4).
            let index = self.leg_for(response, &tag, UacDialogState::Confirmed)?;
            return self.confirm(index, response, true);
        }
        let index = self.leg_for(response, &tag, UacDialogState::Confirmed)?;
        let Some(leg) = self.legs.get(index) else {
            return Ok(());
        };
        if leg.dialog.state == UacDialogState::Early || leg.ack.is_none() && !leg.offer_pending {
            let surplus = self.state == UacInviteState::Established;
            self.state = UacInviteState::Established;
            return self.confirm(index, response, surplus);
        }
        // A retransmitted 2xx: the ACK was lost, send it again (§13.2.2.4).
        if let Some(ack) = &leg.ack {
            self.outputs.push_back(UacOutput::SendAck {
                dialog: leg.dialog.id().clone(),
                request: ack.clone(),
            });
        }
        Ok(())
    }

    /// The first 2xx of the dialog in `index`.
    fn confirm(
        &mut self,
        index: usize,
        response: &Response,
        surplus: bool,
    ) -> Result<(), UacError> {
        let late_offer = self.late_offer;
        let Some(leg) = self.legs.get_mut(index) else {
            return Ok(());
        };
        if leg.dialog.state == UacDialogState::Early {
            leg.dialog.learn(response)?;
        }
        leg.dialog.state = UacDialogState::Confirmed;
        leg.surplus = surplus;
        let id = leg.dialog.id().clone();
        if !surplus {
            self.winner = Some(index);
            self.outputs.push_back(UacOutput::Established {
                dialog: id.clone(),
                response: response.clone(),
            });
        }
        if late_offer && !response.body().is_empty() {
            if let Some(leg) = self.legs.get_mut(index) {
                leg.offer_pending = true;
            }
            self.outputs.push_back(UacOutput::NeedAnswer {
                dialog: id,
                offer: response.body().clone(),
            });
        } else {
            self.send_ack(index, None);
        }
        Ok(())
    }

    /// Sends the ACK of the 2xx of the dialog in `index` (with the answer of a late
    /// offer), then the BYE if the dialog is surplus.
    fn send_ack(&mut self, index: usize, answer: Option<Bytes>) {
        let invite_cseq = self.invite.headers().cseq().map_or(0, |c| c.seq);
        let ack_branch = self.next_branch();
        let surplus = self
            .legs
            .get(index)
            .is_some_and(|l| l.surplus && l.dialog.state == UacDialogState::Confirmed);
        let bye_branch = surplus.then(|| self.next_branch());
        let Some(leg) = self.legs.get_mut(index) else {
            return;
        };
        let mut builder = leg
            .dialog
            .request(message::Method::Ack, &ack_branch, invite_cseq);
        if let Some(answer) = answer {
            builder = builder.body("application/sdp", answer);
        }
        let ack = builder.build();
        leg.offer_pending = false;
        leg.ack = Some(ack.clone());
        self.outputs.push_back(UacOutput::SendAck {
            dialog: leg.dialog.id().clone(),
            request: ack,
        });
        if let Some(bye_branch) = bye_branch {
            let cseq = leg.dialog.next_local_cseq();
            let bye = leg
                .dialog
                .request(message::Method::Bye, &bye_branch, cseq)
                .build();
            leg.dialog.state = UacDialogState::Terminated;
            self.outputs.push_back(UacOutput::SendBye {
                dialog: leg.dialog.id().clone(),
                branch: Bytes::from(bye_branch),
                request: bye,
            });
        }
    }
}

#[cfg(test)]
mod tests;
