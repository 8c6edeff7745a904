//! UAS dialog state (RFC 3261 §12) and the in-dialog offer/answer rules for re-INVITE and
//! UPDATE (RFC 3261 §14, RFC 3311 §5.2).
//!
//! A [`Dialog`] is built from the INVITE that created it, from plain values the caller has
//! already taken out of the message, and then told what happens: requests that arrive,
//! final responses we send, ACKs. It answers with what the RFCs require (accept, or the error
//! status to send) and keeps what a request we send needs (remote target, route set, CSeq).
//! It does no IO and reads no clock.

use std::sync::Arc;

/// The identity of a dialog from our side (RFC 3261 §12): Call-ID, our To-tag, their From-tag.
/// Cloning shares the strings, so the id is cheap to copy into maps and call tasks.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DialogId {
    call_id: Arc<str>,
    local_tag: Arc<str>,
    remote_tag: Arc<str>,
}

impl DialogId {
    /// An id from the three values, compared byte for byte as RFC 3261 §19.3 compares them.
    /// A request from an RFC 2543 peer without a From-tag has an empty remote tag.
    pub fn new(call_id: &str, local_tag: &str, remote_tag: &str) -> Self {
        Self {
            call_id: Arc::from(call_id),
            local_tag: Arc::from(local_tag),
            remote_tag: Arc::from(remote_tag),
        }
    }

    /// The Call-ID.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// Our tag (the To-tag of requests the peer sends us).
    pub fn local_tag(&self) -> &str {
        &self.local_tag
    }

    /// The peer's tag (the From-tag of requests it sends us).
    pub fn remote_tag(&self) -> &str {
        &self.remote_tag
    }
}

/// Where a dialog is in its life (RFC 3261 §12).
///
/// ```text
///            INVITE, 1xx with To-tag sent
///                      |
///                      v
///                 +---------+  non-2xx final sent / terminate()
///                 |  Early  |-----------------------------------+
///                 +---------+                                   |
///                      | 2xx sent                               |
///                      v                                        v
///                 +-----------+       BYE, terminate()    +------------+
///                 | Confirmed |-------------------------->| Terminated |
///                 +-----------+                           +------------+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogState {
    /// The INVITE has been received (and possibly a provisional response with our tag sent),
    /// but no final response yet.
    Early,
    /// A 2xx to the INVITE has been sent.
    Confirmed,
    /// The dialog has ended (BYE, a non-2xx final to the INVITE, or a local decision).
    /// Requests that still arrive for it get 481.
    Terminated,
}

/// Why an in-dialog request is refused. Each variant names the status to send
/// ([`DialogError::status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DialogError {
    /// The CSeq is lower than the last one seen from the peer (RFC 3261 §12.2.2): 500.
    #[error("CSeq {received} is lower than the last remote CSeq {last}")]
    CSeqOutOfOrder {
        /// The highest CSeq seen so far.
        last: u32,
        /// The CSeq of the refused request.
        received: u32,
    },
    /// A re-INVITE arrived while the peer's previous INVITE on this dialog still waits for our
    /// final response or for its ACK (RFC 3261 §14.2): 500 with Retry-After.
    #[error("the previous INVITE on this dialog is still in progress")]
    InviteInProgress,
    /// An offer arrived while we still owe an answer to the peer's previous offer
    /// (RFC 3311 §5.2): 500 with Retry-After.
    #[error("an offer from the peer is still unanswered")]
    RemoteOfferPending,
    /// An offer arrived while our own offer waits for its answer (RFC 3261 §14.2,
    /// RFC 3311 §5.2): 491 Request Pending, so that both sides back off.
    #[error("glare: our offer is pending")]
    Glare,
    /// The dialog has ended: 481 Call/Transaction Does Not Exist.
    #[error("the dialog has terminated")]
    Terminated,
}

impl DialogError {
    /// The SIP status to answer the refused request with.
    pub fn status(&self) -> u16 {
        match self {
            Self::CSeqOutOfOrder { .. } | Self::InviteInProgress | Self::RemoteOfferPending => 500,
            Self::Glare => 491,
            Self::Terminated => 481,
        }
    }

    /// The Retry-After value, in seconds, for the statuses that need one: RFC 3261 §14.2 and
    /// RFC 3311 §5.2 ask for a random value from 0 to 10 so that both sides do not retry in
    /// lockstep. The caller supplies the randomness (`random` may be any value).
    pub fn retry_after(&self, random: u32) -> Option<u32> {
        match self {
            Self::InviteInProgress | Self::RemoteOfferPending => Some(random % 11),
            _ => None,
        }
    }
}

/// What the ACK for our 2xx means for the dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// The ACK completes the INVITE; any offer we made in the 2xx is answered.
    Accepted,
    /// We offered in the 2xx and the ACK has no answer: the session cannot go on, so the
    /// caller ends the call with BYE (an ACK itself is never answered).
    AnswerMissing,
    /// No INVITE of ours waits for this ACK (a retransmission, or a stray CSeq): ignore it.
    Stray,
}

/// The values a UAS dialog is built from, taken from the dialog-creating INVITE
/// (RFC 3261 §12.1.1) and the response we send.
#[derive(Debug, Clone, Copy)]
pub struct UasDialogParams<'a> {
    /// Call-ID of the INVITE.
    pub call_id: &'a str,
    /// The tag we put in the To header of our responses.
    pub local_tag: &'a str,
    /// The From-tag of the INVITE (empty if absent).
    pub remote_tag: &'a str,
    /// The To URI of the INVITE: our URI in this dialog.
    pub local_uri: &'a str,
    /// The From URI of the INVITE: the peer's URI in this dialog.
    pub remote_uri: &'a str,
    /// The Contact URI of the INVITE: where requests we send in the dialog go.
    pub remote_target: &'a str,
    /// The Record-Route entries of the INVITE, one name-addr each, in the order they appear
    /// (top first; entries of a comma-separated header split by the caller).
    pub record_route: &'a [&'a str],
    /// CSeq number of the INVITE.
    pub cseq: u32,
    /// Whether the INVITE carries an SDP offer (if not, we offer in the 2xx).
    pub has_offer: bool,
}

/// Who owes what in the offer/answer exchange (RFC 3264 §4, RFC 3261 §13.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Negotiation {
    /// No offer outstanding.
    Stable,
    /// The peer offered in an INVITE and we have not answered.
    RemoteOfferInInvite,
    /// The peer offered in an UPDATE and we have not answered.
    RemoteOfferInUpdate,
    /// We offered (in a 2xx to an offer-less INVITE) and wait for the answer in the ACK.
    LocalOffer,
}

/// The peer's INVITE (initial or re-INVITE) that is not yet complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerInvite {
    /// We have not sent a final response.
    AwaitingFinal { cseq: u32 },
    /// We sent a 2xx and wait for the ACK (RFC 3261 §13.3.1.4).
    AwaitingAck { cseq: u32 },
}

/// A dialog in which vca-sip is the UAS of the creating INVITE.
#[derive(Debug, Clone)]
pub struct Dialog {
    id: DialogId,
    state: DialogState,
    local_uri: String,
    remote_uri: String,
    remote_target: String,
    route_set: Vec<String>,
    remote_cseq: u32,
    local_cseq: u32,
    negotiation: Negotiation,
    peer_invite: Option<PeerInvite>,
}

impl Dialog {
    /// A dialog for an INVITE we are about to answer with a tagged response
    /// (RFC 3261 §12.1.1). It starts Early; our own CSeq space starts empty.
    pub fn new_uas(params: &UasDialogParams<'_>) -> Self {
        Self {
            id: DialogId::new(params.call_id, params.local_tag, params.remote_tag),
            state: DialogState::Early,
            local_uri: params.local_uri.to_owned(),
            remote_uri: params.remote_uri.to_owned(),
            remote_target: params.remote_target.to_owned(),
            route_set: params
                .record_route
                .iter()
                .map(|r| (*r).to_owned())
                .collect(),
            remote_cseq: params.cseq,
            local_cseq: 0,
            negotiation: if params.has_offer {
                Negotiation::RemoteOfferInInvite
            } else {
                Negotiation::Stable
            },
            peer_invite: Some(PeerInvite::AwaitingFinal { cseq: params.cseq }),
        }
    }

    /// The dialog id.
    pub fn id(&self) -> &DialogId {
        &self.id
    }

    /// The current state.
    pub fn state(&self) -> DialogState {
        self.state
    }

    /// Our URI (From of requests we send).
    pub fn local_uri(&self) -> &str {
        &self.local_uri
    }

    /// The peer's URI (To of requests we send).
    pub fn remote_uri(&self) -> &str {
        &self.remote_uri
    }

    /// The Request-URI for requests we send (RFC 3261 §12.2.1.1).
    pub fn remote_target(&self) -> &str {
        &self.remote_target
    }

    /// The Route headers for requests we send, in order (RFC 3261 §12.1.1).
    pub fn route_set(&self) -> &[String] {
        &self.route_set
    }

    /// The highest CSeq seen from the peer.
    pub fn remote_cseq(&self) -> u32 {
        self.remote_cseq
    }

    /// Checks an in-dialog request's CSeq (RFC 3261 §12.2.2) and, if it is in order, records
    /// it as the new remote CSeq. ACK and CANCEL carry the CSeq of the INVITE they belong to,
    /// so they are exempt. A request on a terminated dialog is refused with 481.
    pub fn check_remote_cseq(&mut self, cseq: u32, method: &str) -> Result<(), DialogError> {
        if method == "ACK" || method == "CANCEL" {
            return Ok(());
        }
        if self.state == DialogState::Terminated {
            return Err(DialogError::Terminated);
        }
        if cseq < self.remote_cseq {
            return Err(DialogError::CSeqOutOfOrder {
                last: self.remote_cseq,
                received: cseq,
            });
        }
        self.remote_cseq = cseq;
        Ok(())
    }

    /// The CSeq for the next request we send in this dialog (a BYE, an UPDATE). Our CSeq
    /// space starts at 1 and only grows (RFC 3261 §12.2.1.1).
    pub fn next_local_cseq(&mut self) -> u32 {
        self.local_cseq = self.local_cseq.saturating_add(1);
        self.local_cseq
    }

    /// A re-INVITE arrived (after [`check_remote_cseq`](Self::check_remote_cseq) accepted
    /// it). Refuses it while the peer's previous INVITE is incomplete (500 with Retry-After)
    /// or while an offer is outstanding; on success the caller processes it and reports its
    /// final response with [`handle_final_sent`](Self::handle_final_sent).
    pub fn handle_reinvite(&mut self, cseq: u32, has_offer: bool) -> Result<(), DialogError> {
        match self.state {
            DialogState::Terminated => return Err(DialogError::Terminated),
            DialogState::Early => return Err(DialogError::InviteInProgress),
            DialogState::Confirmed => {}
        }
        if self.peer_invite.is_some() {
            return Err(DialogError::InviteInProgress);
        }
        match self.negotiation {
            Negotiation::LocalOffer => return Err(DialogError::Glare),
            Negotiation::RemoteOfferInInvite | Negotiation::RemoteOfferInUpdate => {
                return Err(DialogError::RemoteOfferPending);
            }
            Negotiation::Stable => {}
        }
        if has_offer {
            self.negotiation = Negotiation::RemoteOfferInInvite;
        }
        self.peer_invite = Some(PeerInvite::AwaitingFinal { cseq });
        Ok(())
    }

    /// An UPDATE arrived (RFC 3311 §5.2). Without an offer (a session refresh) it is always
    /// accepted; with one it is refused while an offer is outstanding in either direction.
    /// After accepting an offer, the caller reports its response with
    /// [`handle_update_final_sent`](Self::handle_update_final_sent).
    pub fn handle_update(&mut self, has_offer: bool) -> Result<(), DialogError> {
        if self.state == DialogState::Terminated {
            return Err(DialogError::Terminated);
        }
        if !has_offer {
            return Ok(());
        }
        match self.negotiation {
            Negotiation::LocalOffer => Err(DialogError::Glare),
            Negotiation::RemoteOfferInInvite | Negotiation::RemoteOfferInUpdate => {
                Err(DialogError::RemoteOfferPending)
            }
            Negotiation::Stable => {
                self.negotiation = Negotiation::RemoteOfferInUpdate;
                Ok(())
            }
        }
    }

    /// We sent the final response to an UPDATE that carried an offer: a 2xx carried the
    /// answer, any other status rejected the offer and leaves the session as it was.
    pub fn handle_update_final_sent(&mut self) {
        if self.negotiation == Negotiation::RemoteOfferInUpdate {
            self.negotiation = Negotiation::Stable;
        }
    }

    /// We sent the final response to the peer's pending INVITE (initial or re-INVITE).
    ///
    /// A 2xx carries our answer, or our offer when the INVITE had none (the answer then comes
    /// in the ACK), and waits for the ACK. Any other final status rejects the INVITE: for the
    /// initial INVITE the dialog terminates; for a re-INVITE the session stays as it was and
    /// the dialog continues (RFC 3261 §14.2).
    pub fn handle_final_sent(&mut self, status: u16) {
        let Some(PeerInvite::AwaitingFinal { cseq }) = self.peer_invite else {
            return;
        };
        if (200..300).contains(&status) {
            self.negotiation = match self.negotiation {
                Negotiation::RemoteOfferInInvite => Negotiation::Stable,
                Negotiation::Stable => Negotiation::LocalOffer,
                other => other,
            };
            self.peer_invite = Some(PeerInvite::AwaitingAck { cseq });
            if self.state == DialogState::Early {
                self.state = DialogState::Confirmed;
            }
        } else if status >= 300 {
            if self.negotiation == Negotiation::RemoteOfferInInvite {
                self.negotiation = Negotiation::Stable;
            }
            self.peer_invite = None;
            if self.state == DialogState::Early {
                self.state = DialogState::Terminated;
            }
        }
    }

    /// An ACK arrived for our 2xx. `has_answer` says whether it carries an SDP body.
    pub fn handle_ack(&mut self, cseq: u32, has_answer: bool) -> AckOutcome {
        match self.peer_invite {
            Some(PeerInvite::AwaitingAck { cseq: pending }) if pending == cseq => {}
            _ => return AckOutcome::Stray,
        }
        self.peer_invite = None;
        if self.negotiation == Negotiation::LocalOffer {
            self.negotiation = Negotiation::Stable;
            if !has_answer {
                return AckOutcome::AnswerMissing;
            }
        }
        AckOutcome::Accepted
    }

    /// The ACK for our 2xx never came (RFC 3261 §13.3.1.4, 64·T1): the INVITE is abandoned
    /// and the caller ends the call with BYE.
    pub fn handle_ack_timeout(&mut self) {
        if matches!(self.peer_invite, Some(PeerInvite::AwaitingAck { .. })) {
            self.peer_invite = None;
            if self.negotiation == Negotiation::LocalOffer {
                self.negotiation = Negotiation::Stable;
            }
        }
    }

    /// A target refresh request (re-INVITE, UPDATE) accepted with a 2xx carried a Contact:
    /// requests we send go there from now on (RFC 3261 §12.2.2).
    pub fn set_remote_target(&mut self, contact_uri: &str) {
        contact_uri.clone_into(&mut self.remote_target);
    }

    /// Ends the dialog: a BYE was received or sent, or the call was torn down. Later
    /// requests get 481 (a re-INVITE after our BYE is refused cleanly).
    pub fn terminate(&mut self) {
        self.state = DialogState::Terminated;
        self.peer_invite = None;
        self.negotiation = Negotiation::Stable;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const ROUTES: [&str; 2] = ["<sip:p1.example.net;lr>", "<sip:p2.example.net;lr>"];

    fn params(has_offer: bool) -> UasDialogParams<'static> {
        UasDialogParams {
            call_id: "a84b4c76e66710@pc33",
            local_tag: "vca1",
            remote_tag: "1928301774",
            local_uri: "sip:+912212345678@vca.example.com",
            remote_uri: "sip:+919812345678@carrier.example.net",
            remote_target: "sip:caller@198.51.100.10:5060",
            record_route: &ROUTES,
            cseq: 314159,
            has_offer,
        }
    }

    /// A confirmed dialog whose initial INVITE had an offer and has been ACKed.
    fn confirmed() -> Dialog {
        let mut d = Dialog::new_uas(&params(true));
        d.handle_final_sent(200);
        assert_eq!(d.handle_ack(314159, false), AckOutcome::Accepted);
        d
    }

    #[test]
    fn built_from_the_invite() {
        let d = Dialog::new_uas(&params(true));
        assert_eq!(
            d.id(),
            &DialogId::new("a84b4c76e66710@pc33", "vca1", "1928301774")
        );
        assert_eq!(d.state(), DialogState::Early);
        assert_eq!(d.local_uri(), "sip:+912212345678@vca.example.com");
        assert_eq!(d.remote_uri(), "sip:+919812345678@carrier.example.net");
        assert_eq!(d.remote_target(), "sip:caller@198.51.100.10:5060");
        assert_eq!(
            d.route_set(),
            ["<sip:p1.example.net;lr>", "<sip:p2.example.net;lr>"]
        );
        assert_eq!(d.remote_cseq(), 314159);
    }

    #[test]
    fn dialog_id_hashes_by_all_three_parts() {
        let a = DialogId::new("c", "l", "r");
        let set: HashSet<DialogId> = [a.clone(), DialogId::new("c", "l", "x")].into();
        assert!(set.contains(&a));
        assert!(!set.contains(&DialogId::new("C", "l", "r")));
        assert_eq!(
            (a.call_id(), a.local_tag(), a.remote_tag()),
            ("c", "l", "r")
        );
    }

    #[test]
    fn lower_cseq_is_500_and_ack_cancel_are_exempt() {
        let mut d = confirmed();
        assert_eq!(d.check_remote_cseq(314160, "INFO"), Ok(()));
        assert_eq!(d.remote_cseq(), 314160);
        let err = d.check_remote_cseq(314159, "BYE");
        assert_eq!(
            err,
            Err(DialogError::CSeqOutOfOrder {
                last: 314160,
                received: 314159
            })
        );
        assert_eq!(
            err.map_err(|e| (e.status(), e.retry_after(7))),
            Err((500, None))
        );
        assert_eq!(d.check_remote_cseq(1, "ACK"), Ok(()));
        assert_eq!(d.check_remote_cseq(1, "CANCEL"), Ok(()));
        assert_eq!(d.remote_cseq(), 314160);
        // Equal is not lower: accepted.
        assert_eq!(d.check_remote_cseq(314160, "BYE"), Ok(()));
    }

    #[test]
    fn local_cseq_starts_at_one_and_grows() {
        let mut d = confirmed();
        assert_eq!(d.next_local_cseq(), 1);
        assert_eq!(d.next_local_cseq(), 2);
    }

    #[test]
    fn state_follows_final_responses() {
        let mut d = Dialog::new_uas(&params(true));
        d.handle_final_sent(180);
        assert_eq!(d.state(), DialogState::Early);
        d.handle_final_sent(200);
        assert_eq!(d.state(), DialogState::Confirmed);
        d.terminate();
        assert_eq!(d.state(), DialogState::Terminated);

        let mut rejected = Dialog::new_uas(&params(true));
        rejected.handle_final_sent(488);
        assert_eq!(rejected.state(), DialogState::Terminated);
    }

    #[test]
    fn second_reinvite_while_first_pending_is_500_with_retry_after() {
        let mut d = confirmed();
        assert_eq!(d.handle_reinvite(314160, true), Ok(()));
        let err = d.handle_reinvite(314161, true);
        assert_eq!(err, Err(DialogError::InviteInProgress));
        assert_eq!(
            err.map_err(|e| (e.status(), e.retry_after(25))),
            Err((500, Some(3)))
        );
        // Still refused after the 2xx while the ACK is outstanding.
        d.handle_final_sent(200);
        assert_eq!(
            d.handle_reinvite(314161, true),
            Err(DialogError::InviteInProgress)
        );
        assert_eq!(d.handle_ack(314160, false), AckOutcome::Accepted);
        assert_eq!(d.handle_reinvite(314161, true), Ok(()));
    }

    #[test]
    fn reinvite_before_initial_invite_answered_is_500() {
        let mut d = Dialog::new_uas(&params(true));
        assert_eq!(
            d.handle_reinvite(314160, true),
            Err(DialogError::InviteInProgress)
        );
    }

    #[test]
    fn retry_after_is_within_zero_to_ten() {
        let e = DialogError::RemoteOfferPending;
        assert_eq!(e.retry_after(0), Some(0));
        assert_eq!(e.retry_after(10), Some(10));
        assert_eq!(e.retry_after(u32::MAX), Some(u32::MAX % 11));
        assert_eq!(DialogError::Glare.retry_after(5), None);
    }

    #[test]
    fn offer_while_our_offer_pending_is_glare_491() {
        // Offer-less INVITE: we offer in the 200, the answer is due in the ACK.
        let mut d = Dialog::new_uas(&params(false));
        d.handle_final_sent(200);
        let err = d.handle_update(true);
        assert_eq!(err, Err(DialogError::Glare));
        assert_eq!(err.map_err(|e| e.status()), Err(491));
        // An UPDATE without an offer (a session refresh) is fine.
        assert_eq!(d.handle_update(false), Ok(()));
        assert_eq!(d.handle_ack(314159, true), AckOutcome::Accepted);
        assert_eq!(d.handle_update(true), Ok(()));
    }

    #[test]
    fn update_offer_while_answer_owed_is_500() {
        let mut d = confirmed();
        assert_eq!(d.handle_update(true), Ok(()));
        assert_eq!(d.handle_update(true), Err(DialogError::RemoteOfferPending));
        assert_eq!(
            d.handle_reinvite(314160, true),
            Err(DialogError::RemoteOfferPending)
        );
        d.handle_update_final_sent();
        assert_eq!(d.handle_update(true), Ok(()));
    }

    #[test]
    fn ack_without_answer_to_our_offer_ends_the_call() {
        let mut d = Dialog::new_uas(&params(false));
        d.handle_final_sent(200);
        assert_eq!(d.handle_ack(314158, true), AckOutcome::Stray);
        assert_eq!(d.handle_ack(314159, false), AckOutcome::AnswerMissing);
        assert_eq!(d.handle_ack(314159, false), AckOutcome::Stray);
    }

    #[test]
    fn ack_timeout_clears_the_pending_invite() {
        let mut d = Dialog::new_uas(&params(false));
        d.handle_final_sent(200);
        d.handle_ack_timeout();
        assert_eq!(d.handle_ack(314159, true), AckOutcome::Stray);
        assert_eq!(d.handle_update(true), Ok(()));
    }

    #[test]
    fn rejected_reinvite_offer_leaves_dialog_usable() {
        // An offer we refuse (488) must not leave stale offer state behind: the next offer
        // is processed normally (the shape of CVE-2021-21375).
        let mut d = confirmed();
        assert_eq!(d.check_remote_cseq(314160, "INVITE"), Ok(()));
        assert_eq!(d.handle_reinvite(314160, true), Ok(()));
        d.handle_final_sent(488);
        assert_eq!(d.state(), DialogState::Confirmed);
        assert_eq!(d.check_remote_cseq(314161, "INVITE"), Ok(()));
        assert_eq!(d.handle_reinvite(314161, true), Ok(()));
        d.handle_final_sent(200);
        assert_eq!(d.handle_ack(314161, false), AckOutcome::Accepted);
    }

    #[test]
    fn offerless_reinvite_gets_our_offer_and_needs_answer_in_ack() {
        let mut d = confirmed();
        assert_eq!(d.handle_reinvite(314160, false), Ok(()));
        d.handle_final_sent(200);
        assert_eq!(d.handle_update(true), Err(DialogError::Glare));
        assert_eq!(d.handle_ack(314160, true), AckOutcome::Accepted);
    }

    #[test]
    fn requests_after_termination_get_481() {
        // A re-INVITE without SDP after we sent BYE (the shape of CVE-2021-31878).
        let mut d = confirmed();
        d.terminate();
        let err = d.check_remote_cseq(314160, "INVITE");
        assert_eq!(err, Err(DialogError::Terminated));
        assert_eq!(err.map_err(|e| e.status()), Err(481));
        assert_eq!(
            d.handle_reinvite(314160, false),
            Err(DialogError::Terminated)
        );
        assert_eq!(d.handle_update(false), Err(DialogError::Terminated));
        assert_eq!(d.handle_ack(314159, false), AckOutcome::Stray);
    }

    #[test]
    fn target_refresh_replaces_remote_target() {
        let mut d = confirmed();
        d.set_remote_target("sip:caller@198.51.100.99:5070");
        assert_eq!(d.remote_target(), "sip:caller@198.51.100.99:5070");
    }
}
