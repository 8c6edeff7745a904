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
//! | the number streams to an agent that cannot be reached | [`Refusal::AgentUnreachable`] |
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

use tokio::sync::mpsc;

use super::record::Record;
use super::uas::agent_parameters;
use super::{CallContext, Hangup, LiveCalls, agent_start, resolve_stream_url};
use crate::ids::{CallId, TenantId};
use crate::media::AgentNotice;
use crate::media::session::{MediaEnd, MediaSession};
use crate::media::webrtc::{OfferError, WebRtcLeg};
use crate::routing::e164::Did;
use crate::store::model::{HangupCause, TenantStatus};
use crate::store::{CallMedia, StreamTarget};

/// Why a browser's offer is not answered.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("{0} is not a number of this tenant")]
    UnknownNumber(String),
    #[error("{0}")]
    NotInService(&'static str),
    #[error("the number's agent cannot be reached: {0}")]
    AgentUnreachable(String),
    #[error("the tenant is at its concurrent-call limit")]
    TenantBusy,
    #[error("{0}")]
    Overloaded(&'static str),
    #[error(transparent)]
    Offer(#[from] OfferError),
}

/// How long past the profile's connect timeout the answer waits for the shard's word.
const CONNECT_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

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
    let target = match resolved.media {
        CallMedia::Echo => None,
        CallMedia::Stream(target) => Some(target),
    };
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
    let call_id = record.call().id;
    let session_id = uuid::Uuid::new_v4();
    let (media, notices, token) = match target {
        None => {
            answer(ctx, &mut record).await?;
            match ctx.media.start_webrtc(ports, leg) {
                Ok(media) => (media, None, None),
                Err(_) => return Err(broken(ctx, record)),
            }
        }
        Some(target) => {
            let (session, notices) = connect_agent(ctx, &mut record, ports, leg, &target).await?;
            answer(ctx, &mut record).await?;
            let token = target.auth_token.as_ref().map(|t| t.0.clone());
            (session, Some(notices), token)
        }
    };
    let sink = media.candidates();
    let hangups = ctx
        .live
        .insert_session(call_id, (session_id, sink), &tenant.to_string(), token);
    let ctx = Arc::clone(ctx);
    tokio::spawn(async move {
        let _admitted = admitted;
        carry(&ctx.live, call_id, media, notices, hangups, &mut record).await;
        let _ = ctx.writer.record(record.take_write());
    });
    Ok(Answered {
        call_id,
        session_id,
        sdp,
    })
}

/// Records the call answered, durably: the answer leaves only once it is stored.
async fn answer(ctx: &CallContext, record: &mut Record) -> Result<(), Refusal> {
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
    Ok(())
}

/// An answered call whose media cannot start.
fn broken(ctx: &CallContext, mut record: Record) -> Refusal {
    record.end_failed(HangupCause::Error, "the media runtime is busy");
    let _ = ctx.writer.record(record.take_write());
    Refusal::Overloaded("the media runtime is busy")
}

/// Starts the browser's leg bridged to `target`'s agent stream and waits until the agent is
/// up; an agent that cannot be reached fails the call as a carrier's would (480, cause 20).
async fn connect_agent(
    ctx: &CallContext,
    record: &mut Record,
    ports: crate::media::ports::RtpPorts,
    leg: WebRtcLeg,
    target: &StreamTarget,
) -> Result<(MediaSession, mpsc::Receiver<AgentNotice>), Refusal> {
    record.event(
        "agent_connecting",
        json!({"url": target.url, "protocol": target.protocol}),
    );
    let unreachable = |record: &mut Record, reason: String| {
        record.event("agent_unreachable", json!({"reason": reason}));
        record.fail(480, Some(20), HangupCause::AgentUnreachable, &reason);
        let _ = ctx.writer.record(record.take_write());
        Refusal::AgentUnreachable(reason)
    };
    let addrs = tokio::time::timeout(
        target.connect_timeout,
        resolve_stream_url(&target.url, ctx.targets),
    )
    .await
    .unwrap_or_else(|_| Err("resolving the agent's host timed out".to_owned()));
    let addrs = match addrs {
        Ok(addrs) => addrs,
        Err(reason) => return Err(unreachable(record, reason)),
    };
    let call = record.call();
    let (account_sid, call_sid) = (call.tenant_id.to_string(), call.id.to_string());
    let parameters = agent_parameters(call, target);
    let agent = agent_start(target, addrs, &account_sid, &call_sid, parameters, None);
    let config = leg.media_config(ctx.settings.media_timeout);
    let (mut session, mut notices) = ctx
        .media
        .start_webrtc_stream(ports, leg, config, agent)
        .map_err(|_| Refusal::Overloaded("the media runtime is busy"))?;
    let up = tokio::time::timeout(target.connect_timeout + CONNECT_GRACE, async {
        loop {
            match notices.recv().await {
                Some(AgentNotice::Connected) => return Ok(()),
                Some(AgentNotice::Unreachable(reason)) => return Err(reason),
                Some(_) => {}
                None => return Err("the media session ended".to_owned()),
            }
        }
    })
    .await
    .unwrap_or_else(|_| Err("the agent did not answer in time".to_owned()));
    match up {
        Ok(()) => {
            record.event("agent_connected", json!({}));
            Ok((session, notices))
        }
        Err(reason) => {
            let _ = session.hangup();
            Err(unreachable(record, reason))
        }
    }
}

/// Carries an answered browser call until its media ends or someone hangs it up; an agent's
/// notices go into the timeline meanwhile.
async fn carry(
    live: &LiveCalls,
    id: CallId,
    mut media: MediaSession,
    mut notices: Option<mpsc::Receiver<AgentNotice>>,
    mut hangups: mpsc::Receiver<Hangup>,
    record: &mut Record,
) {
    let asked = loop {
        tokio::select! {
            report = media.ended() => break Err(report),
            asked = hangups.recv() => {
                break Ok(asked.unwrap_or_else(|| Hangup {
                    cause: HangupCause::NodeRestart,
                    why: "the server stopped".to_owned(),
                }))
            }
            notice = next_notice(&mut notices) => match notice {
                Some(AgentNotice::Dtmf(digit)) => {
                    record.event("dtmf", json!({"digit": digit.to_string()}));
                }
                Some(AgentNotice::Cleared { marks }) => {
                    record.event("clear", json!({"marks": marks}));
                }
                Some(AgentNotice::Connected | AgentNotice::Unreachable(_)) => {}
                None => notices = None,
            },
        }
    };
    live.remove(id);
    match asked {
        Ok(Hangup { cause, why }) => {
            // A session that ended meanwhile has nothing to hang up.
            let _ = media.hangup();
            let _ = media.ended().await;
            record.end(cause, &why);
        }
        Err(report) => match report.end {
            MediaEnd::PeerGone(why) => record.end(HangupCause::BrowserHangup, why),
            MediaEnd::AgentHangup => record.end(HangupCause::AgentHangup, "the agent hung up"),
            MediaEnd::AgentDisconnected | MediaEnd::AgentUnreachable(_) => record.end(
                HangupCause::AgentDisconnected,
                "the agent's stream was lost mid-call",
            ),
            MediaEnd::Shutdown => record.end(HangupCause::NodeRestart, "the server stopped"),
            _ => record.end(HangupCause::Error, "the media leg failed"),
        },
    }
}

/// The agent's next notice; never ready for an echo call.
async fn next_notice(notices: &mut Option<mpsc::Receiver<AgentNotice>>) -> Option<AgentNotice> {
    match notices {
        Some(notices) => notices.recv().await,
        None => std::future::pending().await,
    }
}
