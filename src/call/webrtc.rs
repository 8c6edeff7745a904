//! A browser's call in: an SDP offer posted over HTTP for one of a tenant's numbers, taken
//! through the same decisions as a carrier's INVITE (the number's tenant, its state, the
//! tenant's concurrent-call limit, the media ports), answered with the WebRTC leg's SDP, and
//! then carried by a task of its own until the browser goes or someone hangs up.
//!
//! The decisions and their answers, in order:
//!
//! | what | answer |
//! |---|---|
//! | the number is not one of the tenant's | [`Refusal::UnknownNumber`] |
//! | the tenant or the number is not in service | [`Refusal::NotInService`] |
//! | the number's media target is not the echo | [`Refusal::MediaTarget`] |
//! | the tenant is at its limit | [`Refusal::TenantBusy`] |
//! | no media ports, or the record cannot be stored | [`Refusal::Overloaded`] |
//! | the offer cannot be answered | [`Refusal::Offer`] |
//!
//! A call refused after routing is recorded as `failed` with the SIP status a carrier call
//! would have got, so both kinds read the same in the call records.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use super::record::Record;
use super::{CallContext, LiveCalls};
use crate::ids::{CallId, TenantId};
use crate::media::session::{MediaEnd, MediaSession};
use crate::media::webrtc::{OfferError, WebRtcLeg};
use crate::routing::e164::Did;
use crate::store::CallMedia;
use crate::store::model::{HangupCause, TenantStatus};

/// Why a browser's offer is not answered.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("{0} is not a number of this tenant")]
    UnknownNumber(String),
    #[error("{0}")]
    NotInService(&'static str),
    #[error("browser calls reach numbers whose profile is the echo; this number's is {0}")]
    MediaTarget(&'static str),
    #[error("the tenant is at its concurrent-call limit")]
    TenantBusy,
    #[error("{0}")]
    Overloaded(&'static str),
    #[error(transparent)]
    Offer(#[from] OfferError),
}

/// What a browser's offer is answered with.
#[derive(Debug, Clone)]
pub struct Answered {
    pub call_id: CallId,
    pub session_id: uuid::Uuid,
    pub sdp: String,
}

/// Who is calling: the browser's address and who it says it is.
#[derive(Debug, Clone)]
pub struct Caller {
    pub remote: SocketAddr,
    /// A browser agent's username, or `anonymous`.
    pub name: String,
}

/// Takes a browser's `offer` to `to` for `tenant`: routes, admits, records and answers it,
/// and starts the task that carries the call.
#[allow(clippy::disallowed_methods)] // a driver: it reads the clock for the leg it makes
pub async fn offer(
    ctx: &Arc<CallContext>,
    tenant: TenantId,
    to: &str,
    offer: &str,
    caller: Caller,
) -> Result<Answered, Refusal> {
    let did = Did::normalize(to, &ctx.settings.country)
        .map_err(|_| Refusal::UnknownNumber(to.to_owned()))?;
    let resolved = ctx
        .directory
        .resolve(&did)
        .filter(|r| r.route.tenant_id == tenant)
        .ok_or_else(|| Refusal::UnknownNumber(to.to_owned()))?;
    let route = resolved.route;
    let mut record = Record::webrtc(
        ctx.clock.clone(),
        &route,
        did.as_str(),
        to,
        &caller.name,
        caller.remote,
    );
    record.event(
        "initiated",
        json!({"remote_addr": caller.remote.to_string()}),
    );
    let refused = |mut record: Record, status: u16, q850: u16, cause, why: &str| {
        record.fail(status, Some(q850), cause, why);
        let _ = ctx.writer.record(record.take_write());
    };
    if route.tenant_status != TenantStatus::Active {
        refused(
            record,
            403,
            21,
            HangupCause::Rejected,
            "Tenant not in service",
        );
        return Err(Refusal::NotInService("the tenant is not in service"));
    }
    if !route.is_active {
        refused(
            record,
            403,
            21,
            HangupCause::Rejected,
            "Number not in service",
        );
        return Err(Refusal::NotInService("the number is not in service"));
    }
    match resolved.media {
        CallMedia::Echo => {}
        CallMedia::Stream(_) => return Err(Refusal::MediaTarget("stream")),
    }
    let Some(admitted) = ctx
        .admission
        .try_admit(route.tenant_id, route.max_concurrent_calls)
    else {
        refused(record, 486, 17, HangupCause::Busy, "User busy");
        return Err(Refusal::TenantBusy);
    };
    let Ok(ports) = ctx.media.allocate() else {
        refused(record, 503, 34, HangupCause::Error, "no RTP ports");
        return Err(Refusal::Overloaded("no media ports are free"));
    };
    let ip = match ctx.settings.public_ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
        ip => ip,
    };
    let local = SocketAddr::new(ip, ports.rtp_port());
    let (leg, sdp) = match WebRtcLeg::answer(Instant::now(), offer, local) {
        Ok(answered) => answered,
        Err(e) => {
            refused(record, 488, 88, HangupCause::Rejected, &e.to_string());
            return Err(e.into());
        }
    };
    record.codec(leg.codec());
    record.answered();
    if ctx
        .writer
        .record_durably(record.take_write())
        .await
        .is_err()
    {
        return Err(Refusal::Overloaded("the call record cannot be stored"));
    }
    record.committed();
    let media = match ctx.media.start_webrtc(ports, leg) {
        Ok(media) => media,
        Err(_) => {
            record.end_failed(HangupCause::Error, "the media runtime is busy");
            let _ = ctx.writer.record(record.take_write());
            return Err(Refusal::Overloaded("the media runtime is busy"));
        }
    };
    let call_id = record.call().id;
    let session_id = uuid::Uuid::new_v4();
    let hangups = ctx
        .live
        .insert_session(call_id, session_id, &tenant.to_string());
    let ctx = Arc::clone(ctx);
    tokio::spawn(async move {
        let _admitted = admitted;
        carry(&ctx.live, call_id, media, hangups, &mut record).await;
        let _ = ctx.writer.record(record.take_write());
    });
    Ok(Answered {
        call_id,
        session_id,
        sdp,
    })
}

/// Carries an answered browser call until its media ends or someone hangs it up.
async fn carry(
    live: &LiveCalls,
    id: CallId,
    mut media: MediaSession,
    mut hangups: tokio::sync::mpsc::Receiver<String>,
    record: &mut Record,
) {
    let asked = tokio::select! {
        report = media.ended() => Err(report),
        why = hangups.recv() => Ok(why.unwrap_or_else(|| "the server stopped".to_owned())),
    };
    live.remove(id);
    match asked {
        Ok(why) => {
            // A session that ended meanwhile has nothing to hang up.
            let _ = media.hangup();
            let _ = media.ended().await;
            record.end(HangupCause::ServerBye, &why);
        }
        Err(report) => match report.end {
            MediaEnd::PeerGone(why) => record.end(HangupCause::BrowserHangup, why),
            MediaEnd::Shutdown => record.end(HangupCause::NodeRestart, "the server stopped"),
            _ => record.end(HangupCause::Error, "the media leg failed"),
        },
    }
}
