//! Back-to-back user agent rules (RFC 3261 §16.3, §16.6, §16.7, RFC 4320, RFC 3326) as
//! pure functions: what a bridge between a near leg (the call vca-sip received) and its
//! far legs (the INVITEs it sends onward) does when one side moves.
//!
//! A B2BUA terminates each leg: nothing is relayed as is. A far leg's final becomes a
//! response vca-sip composes for the near leg, by this mapping ([`near_final`]):
//!
//! | far leg                         | near INVITE                               | near non-INVITE |
//! |---------------------------------|-------------------------------------------|-----------------|
//! | 2xx                             | 200 (vca-sip's own, with its own SDP)     | 200             |
//! | Timer B / F, or a 408           | 408                                       | no response (RFC 4320) |
//! | 503, or a transport error       | 500 with `Reason: SIP;cause=503` (§16.7)  | same            |
//! | 3xx (not followed)              | 480 with `Reason: SIP;cause=3xx`          | same            |
//! | 401, 407 (our credentials)      | 500 with `Reason: SIP;cause=401/407`      | same            |
//! | any other 4xx-6xx (486, 404, 487, 603 ...) | the same status               | same            |
//!
//! The `Reason` header (RFC 3326) keeps the far status for the near peer's logs without
//! letting it act on it: a 503 relayed would make the near peer's RFC 3263 failover treat
//! vca-sip itself as overloaded (RELIABILITY 31).

use bytes::Bytes;

use super::message::{ParseError, cancel_for};
use super::transaction::{Method, TransactionKey};
use super::uac::{UacInvite, UacInviteState};

/// Max-Forwards of a request vca-sip originates (§8.1.1.6).
pub const DEFAULT_MAX_FORWARDS: u8 = 70;

/// Why a bridge step failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum B2bError {
    /// The near request arrived with Max-Forwards 0 and would be sent onward (§16.3).
    #[error("Max-Forwards is 0: the request would loop")]
    TooManyHops,
    /// The INVITE of a far leg lacks a header its CANCEL copies.
    #[error("the far INVITE cannot be cancelled: {0}")]
    BadInvite(ParseError),
}

impl B2bError {
    /// The status to answer the near request with.
    pub fn status(&self) -> u16 {
        match self {
            B2bError::TooManyHops => 483,
            B2bError::BadInvite(_) => 500,
        }
    }
}

/// Max-Forwards for the request sent onward, from the near request's (§16.6 step 3): one
/// less, or [`DEFAULT_MAX_FORWARDS`] when it had none. A received 0 is refused with 483
/// (§16.3 step 3), so a call that loops back through vca-sip ends (RFC 7332); a request
/// vca-sip terminates itself is served whatever its Max-Forwards (RELIABILITY 29).
pub fn onward_max_forwards(received: Option<u8>) -> Result<u8, B2bError> {
    match received {
        None => Ok(DEFAULT_MAX_FORWARDS),
        Some(0) => Err(B2bError::TooManyHops),
        Some(n) => Ok(n - 1),
    }
}

/// How a far leg ended, as its client transaction and UAC core report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FarOutcome {
    /// A final response with this status.
    Final(u16),
    /// Timer B (INVITE) or Timer F (non-INVITE) fired.
    Timeout,
    /// The transport failed (§8.1.3.1: as a 503).
    TransportError,
}

/// The response vca-sip composes for the near leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NearFinal {
    /// The status code.
    pub status: u16,
    /// The reason phrase.
    pub reason: &'static str,
    /// A `Reason` header value (RFC 3326) naming the far status, when it was not kept.
    pub reason_header: Option<String>,
}

/// The near leg's final for a far leg's outcome (the table in the module doc).
/// `near_is_invite` says whether the near request is an INVITE. `None`: send nothing (a
/// timeout on a non-INVITE: the near client's own Timer F ends it, RFC 4320).
pub fn near_final(far: FarOutcome, near_is_invite: bool) -> Option<NearFinal> {
    let mapped = |status, reason, far: u16| NearFinal {
        status,
        reason,
        reason_header: Some(format!("SIP;cause={far}")),
    };
    let kept = |status| NearFinal {
        status,
        reason: phrase(status),
        reason_header: None,
    };
    match far {
        FarOutcome::Timeout | FarOutcome::Final(408) => near_is_invite.then(|| kept(408)),
        FarOutcome::TransportError | FarOutcome::Final(503) => {
            Some(mapped(500, "Server Internal Error", 503))
        }
        FarOutcome::Final(200..=299) => Some(kept(200)),
        FarOutcome::Final(status @ 300..=399) => {
            Some(mapped(480, "Temporarily Unavailable", status))
        }
        FarOutcome::Final(status @ (401 | 407)) => {
            Some(mapped(500, "Server Internal Error", status))
        }
        FarOutcome::Final(status @ 400..=699) => Some(kept(status)),
        // Not a final status: the parser lets none through; answer as for a broken leg.
        FarOutcome::Final(status) => Some(mapped(500, "Server Internal Error", status)),
    }
}

/// Reason phrases of the statuses [`near_final`] keeps (RFC 3261 §21); others get a
/// generic phrase of their class, which §21 allows.
fn phrase(status: u16) -> &'static str {
    let known = match status {
        200 => Some("OK"),
        400 => Some("Bad Request"),
        403 => Some("Forbidden"),
        404 => Some("Not Found"),
        408 => Some("Request Timeout"),
        480 => Some("Temporarily Unavailable"),
        484 => Some("Address Incomplete"),
        486 => Some("Busy Here"),
        487 => Some("Request Terminated"),
        488 => Some("Not Acceptable Here"),
        500 => Some("Server Internal Error"),
        600 => Some("Busy Everywhere"),
        603 => Some("Decline"),
        604 => Some("Does Not Exist Anywhere"),
        606 => Some("Not Acceptable"),
        _ => None,
    };
    known.unwrap_or(match status / 100 {
        4 => "Request Failure",
        5 => "Server Failure",
        _ => "Global Failure",
    })
}

/// What to do for one far leg when the near leg's INVITE is cancelled (§9.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegCancel {
    /// Send `request` in a non-INVITE client transaction keyed `cancel_key`, to the far
    /// INVITE's peer; the far INVITE's 487 is then ACKed by its ICT.
    Send {
        /// The far INVITE's transaction.
        invite_key: TransactionKey,
        /// The CANCEL's transaction: the INVITE's branch, method CANCEL.
        cancel_key: TransactionKey,
        /// The serialised CANCEL.
        request: Bytes,
    },
    /// No provisional yet: a CANCEL now could overtake the INVITE (§9.1). Cancel this leg
    /// when its first provisional arrives.
    AfterProvisional(TransactionKey),
}

/// The CANCELs for every far leg still pending when the near leg is cancelled
/// (RELIABILITY 28). Legs that are established or failed need none: an established far
/// leg is ended with a BYE by the bridge instead.
pub fn cancel_pending<'a>(
    legs: impl IntoIterator<Item = &'a UacInvite>,
) -> Result<Vec<LegCancel>, B2bError> {
    let mut out = Vec::new();
    for leg in legs {
        let invite_key = leg.key().clone();
        match leg.state() {
            UacInviteState::Calling => out.push(LegCancel::AfterProvisional(invite_key)),
            UacInviteState::Proceeding => {
                let request = cancel_for(leg.invite()).map_err(B2bError::BadInvite)?;
                let branch = leg
                    .invite()
                    .headers()
                    .top_via()
                    .map_err(B2bError::BadInvite)?
                    .branch()
                    .map(|b| Bytes::copy_from_slice(b.as_bytes()))
                    .ok_or(B2bError::BadInvite(ParseError::BadHeader("Via")))?;
                out.push(LegCancel::Send {
                    invite_key,
                    cancel_key: TransactionKey::client(branch, Method::Cancel),
                    request,
                });
            }
            UacInviteState::Established | UacInviteState::Failed => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::sip::message::{Message, Response};
    use crate::sip::uac::UacInviteParams;

    #[test]
    fn max_forwards_is_decremented_and_zero_gets_483() {
        assert_eq!(onward_max_forwards(None), Ok(70));
        assert_eq!(onward_max_forwards(Some(70)), Ok(69));
        assert_eq!(onward_max_forwards(Some(1)), Ok(0));
        assert_eq!(onward_max_forwards(Some(0)), Err(B2bError::TooManyHops));
        assert_eq!(B2bError::TooManyHops.status(), 483);
    }

    #[test]
    fn a_far_timeout_is_408_to_an_invite_and_nothing_to_a_non_invite() {
        assert_eq!(
            near_final(FarOutcome::Timeout, true),
            Some(NearFinal {
                status: 408,
                reason: "Request Timeout",
                reason_header: None
            })
        );
        assert_eq!(near_final(FarOutcome::Timeout, false), None);
        assert_eq!(near_final(FarOutcome::Final(408), false), None);
    }

    #[test]
    fn a_far_503_or_transport_error_is_never_relayed_as_503() {
        for far in [FarOutcome::Final(503), FarOutcome::TransportError] {
            for invite in [true, false] {
                assert_eq!(
                    near_final(far, invite),
                    Some(NearFinal {
                        status: 500,
                        reason: "Server Internal Error",
                        reason_header: Some("SIP;cause=503".into())
                    })
                );
            }
        }
    }

    #[test]
    fn other_finals_map_as_documented() {
        let status = |far| near_final(FarOutcome::Final(far), true).map(|f| f.status);
        assert_eq!(status(200), Some(200));
        assert_eq!(status(202), Some(200));
        assert_eq!(status(302), Some(480));
        assert_eq!(status(401), Some(500));
        assert_eq!(status(407), Some(500));
        assert_eq!(status(486), Some(486));
        assert_eq!(status(487), Some(487));
        assert_eq!(status(404), Some(404));
        assert_eq!(status(603), Some(603));
        assert_eq!(status(500), Some(500));
        assert_eq!(
            near_final(FarOutcome::Final(302), true).and_then(|f| f.reason_header),
            Some("SIP;cause=302".into())
        );
        assert_eq!(
            near_final(FarOutcome::Final(486), true).map(|f| f.reason),
            Some("Busy Here")
        );
        assert_eq!(
            near_final(FarOutcome::Final(489), true).map(|f| f.reason),
            Some("Request Failure")
        );
    }

    fn leg(prefix: &str) -> UacInvite {
        UacInvite::new(&UacInviteParams {
            request_uri: "sip:+15551234567@carrier.example",
            transport: "UDP",
            sent_by: "192.0.2.9:5060",
            branch_prefix: prefix,
            local_uri: "<sip:agent@vca.example>",
            local_tag: "f1",
            remote_uri: "<sip:+15551234567@carrier.example>",
            call_id: "b-leg@192.0.2.9",
            cseq: 1,
            contact: "<sip:agent@192.0.2.9>",
            routes: &[],
            max_forwards: 69,
            offer: None,
            reliable_provisionals: false,
            headers: &[],
        })
        .unwrap()
    }

    fn ringing(prefix: &str, status: u16) -> Response {
        let text = format!(
            "SIP/2.0 {status} X\r\nVia: SIP/2.0/UDP 192.0.2.9:5060;branch={prefix}.0\r\n\
             From: <sip:agent@vca.example>;tag=f1\r\n\
             To: <sip:+15551234567@carrier.example>;tag=t\r\n\
             Call-ID: b-leg@192.0.2.9\r\nCSeq: 1 INVITE\r\nContact: <sip:x@198.51.100.1>\r\n\
             Content-Length: 0\r\n\r\n"
        );
        match Message::parse(Bytes::from(text)) {
            Ok(Message::Response(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_near_cancel_cancels_every_pending_far_leg() {
        let calling = leg("z9hG4bKleg1");
        let mut ringing_leg = leg("z9hG4bKleg2");
        ringing_leg
            .handle_response(&ringing("z9hG4bKleg2", 180))
            .unwrap();
        let mut failed = leg("z9hG4bKleg3");
        failed
            .handle_response(&ringing("z9hG4bKleg3", 486))
            .unwrap();
        let plan = cancel_pending([&calling, &ringing_leg, &failed]).unwrap();
        assert_eq!(plan.len(), 2, "{plan:?}");
        assert_eq!(plan[0], LegCancel::AfterProvisional(calling.key().clone()));
        let LegCancel::Send {
            invite_key,
            cancel_key,
            request,
        } = &plan[1]
        else {
            panic!("{plan:?}")
        };
        assert_eq!(invite_key, ringing_leg.key());
        assert_eq!(
            cancel_key,
            &TransactionKey::client(Bytes::from_static(b"z9hG4bKleg2.0"), Method::Cancel)
        );
        assert_eq!(
            std::str::from_utf8(request).unwrap(),
            "CANCEL sip:+15551234567@carrier.example SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKleg2.0\r\n\
             Max-Forwards: 69\r\n\
             From: <sip:agent@vca.example>;tag=f1\r\n\
             To: <sip:+15551234567@carrier.example>\r\n\
             Call-ID: b-leg@192.0.2.9\r\n\
             CSeq: 1 CANCEL\r\n\
             Content-Length: 0\r\n\r\n"
        );
    }
}
