//! A call's record as the call task keeps it, and the events not yet written.

use std::net::SocketAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use serde_json::{Value, json};

use crate::clock::WallClock;
use crate::ids::{CallEventId, CallId, TenantId, TrunkId};
use crate::kinds::CallTransport;
use crate::media::recorder::{Recorded, RecordingFailure};
use crate::routing::directory::Route;
use crate::sip::message::Request;
use crate::store::model::{Call, CallEvent, CallStatus, Direction, HangupCause, RecordingStatus};
use crate::store::{CallWrite, stamp};
use crate::transport::Transport;

pub struct Record {
    clock: Arc<dyn WallClock>,
    call: Call,
    events: Vec<CallEvent>,
    /// A durable write of the record has been committed.
    stored: bool,
}

impl Record {
    /// The clock's time at the precision both stores keep (microseconds), so that a record
    /// reads back as it was written on SQLite and PostgreSQL alike.
    fn now(&self) -> DateTime<Utc> {
        stamp(self.clock.now())
    }

    #[allow(clippy::too_many_arguments)]
    pub fn new(
        clock: Arc<dyn WallClock>,
        invite: &Request,
        remote: SocketAddr,
        transport: Transport,
        route: &Route,
        trunk: Option<TrunkId>,
        called: &str,
        called_raw: &str,
    ) -> Record {
        let h = invite.headers();
        let caller = h
            .from()
            .ok()
            .map(|f| {
                let uri = f.uri();
                uri.user()
                    .or(uri.number())
                    .unwrap_or(uri.as_str())
                    .to_owned()
            })
            .unwrap_or_default();
        let call = Call {
            trunk_id: trunk.or(route.trunk_id),
            sip_call_id: truncate(h.call_id().unwrap_or_default(), 256),
            transport: transport.into(),
            ..inbound_call(clock.as_ref(), route, &caller, called, called_raw, remote)
        };
        Record::of(clock, call)
    }

    /// The record of a browser's call to `called` (E.164; `called_raw` as the browser gave
    /// it) from `caller` (an agent's username, or `anonymous`) at `remote`.
    pub fn webrtc(
        clock: Arc<dyn WallClock>,
        route: &Route,
        called: &str,
        called_raw: &str,
        caller: &str,
        remote: SocketAddr,
    ) -> Record {
        let call = Call {
            transport: CallTransport::Webrtc,
            ..inbound_call(clock.as_ref(), route, caller, called, called_raw, remote)
        };
        Record::of(clock, call)
    }

    /// A record not yet stored, with no events.
    fn of(clock: Arc<dyn WallClock>, call: Call) -> Record {
        Record {
            clock,
            call,
            events: Vec::new(),
            stored: false,
        }
    }

    /// The record of a call vca-sip places, `queued` until its INVITE goes out.
    pub fn outbound(clock: Arc<dyn WallClock>, id: CallId, call: Outbound<'_>) -> Record {
        let transport = call.transport.into();
        let call = Call {
            id,
            tenant_id: call.tenant_id,
            phone_number_id: None,
            ai_profile_id: None,
            trunk_id: call.trunk_id,
            direction: Direction::Outbound,
            caller: truncate(call.caller, 128),
            called: truncate(call.called, 128),
            called_raw: truncate(call.called, 128),
            sip_call_id: truncate(call.sip_call_id, 256),
            transport,
            remote_addr: call.remote.to_string(),
            codec: None,
            status: CallStatus::Queued,
            sip_status: None,
            q850_cause: None,
            hangup_cause: None,
            started_at: stamp(clock.now()),
            answered_at: None,
            ended_at: None,
            duration_s: None,
            recording_status: None,
            recording_duration_ms: None,
            recording_bytes: None,
            recording_error: None,
        };
        Record::of(clock, call)
    }

    /// The INVITE of an outbound call went out.
    pub fn initiated(&mut self) {
        self.call.status = CallStatus::Initiated;
        self.event(
            "initiated",
            json!({"remote_addr": self.call.remote_addr.clone()}),
        );
    }

    /// An outbound call's far end rings (`status` 180 or 183).
    pub fn ringing_received(&mut self, status: u16) {
        self.call.status = CallStatus::Ringing;
        self.call.sip_status = Some(i64::from(status));
        self.event("ringing", json!({"sip_status": status}));
    }

    /// An outbound call's far end answered with `status`.
    pub fn answered_received(&mut self, status: u16) {
        self.answered();
        self.call.sip_status = Some(i64::from(status));
    }

    /// The record as it stands.
    pub fn call(&self) -> &Call {
        &self.call
    }

    pub fn event(&mut self, kind: &str, detail: Value) {
        self.events.push(CallEvent {
            id: CallEventId::new(),
            call_id: self.call.id,
            tenant_id: self.call.tenant_id,
            kind: kind.to_owned(),
            at: self.now(),
            detail: sqlx::types::Json(detail),
        });
    }

    pub fn ringing(&mut self) {
        self.call.status = CallStatus::Ringing;
        self.call.sip_status = Some(180);
        self.event("ringing", json!({"sip_status": 180}));
    }

    pub fn codec(&mut self, codec: &str) {
        self.call.codec = Some(codec.to_owned());
    }

    pub fn codec_is_unset(&self) -> bool {
        self.call.codec.is_none()
    }

    pub fn answered(&mut self) {
        self.call.status = CallStatus::Answered;
        self.call.sip_status = Some(200);
        self.call.answered_at = Some(self.now());
        self.event(
            "answered",
            json!({"sip_status": 200, "codec": self.call.codec}),
        );
    }

    /// Refused before answer: `status` is the final response sent, `q850` the cause of
    /// the Reason header sent with it (RFC 6432), if any.
    pub fn fail(&mut self, status: u16, q850: Option<u16>, cause: HangupCause, why: &str) {
        self.fail_with(Some(status), q850, cause, why);
    }

    /// Never answered; `status` is the final response sent or received, none when there
    /// was none (a timeout, a transport error, a call given up before its INVITE).
    pub fn fail_with(
        &mut self,
        status: Option<u16>,
        q850: Option<u16>,
        cause: HangupCause,
        why: &str,
    ) {
        self.call.status = CallStatus::Failed;
        self.call.sip_status = status.map(i64::from);
        self.call.q850_cause = q850.map(i64::from);
        self.call.hangup_cause = Some(cause);
        self.call.ended_at = Some(self.now());
        self.event(
            "failed",
            json!({"sip_status": status, "q850_cause": q850, "reason": why}),
        );
    }

    /// An answered call that ended normally.
    pub fn end(&mut self, cause: HangupCause, why: &str) {
        self.finish(CallStatus::Ended, cause);
        let detail = json!({"hangup_cause": cause.as_str(), "reason": why, "duration_s": self.call.duration_s});
        self.event("ended", detail);
    }

    /// An answered call that could not go on (no ACK, no answer to our offer).
    pub fn end_failed(&mut self, cause: HangupCause, why: &str) {
        self.finish(CallStatus::Failed, cause);
        self.event(
            "failed",
            json!({"hangup_cause": cause.as_str(), "reason": why}),
        );
    }

    fn finish(&mut self, status: CallStatus, cause: HangupCause) {
        let ended = self.now();
        self.call.status = status;
        self.call.hangup_cause = Some(cause);
        self.call.ended_at = Some(ended);
        self.call.duration_s = self
            .call
            .answered_at
            .map(|a| (ended - a).num_seconds().max(0));
    }

    /// The call's audio is being recorded.
    pub fn recording_started(&mut self) {
        self.call.recording_status = Some(RecordingStatus::Recording);
        self.event(
            "recording_started",
            json!({"format": "wav", "sample_rate": 8000, "channels": ["caller", "agent"]}),
        );
    }

    /// The recording is complete: ready to be fetched.
    pub fn recording_ready(&mut self, recorded: &Recorded) {
        self.call.recording_status = Some(RecordingStatus::Ready);
        let ms = i64::try_from(recorded.duration.as_millis()).unwrap_or(i64::MAX);
        self.call.recording_duration_ms = Some(ms);
        self.call.recording_bytes = Some(i64::try_from(recorded.bytes).unwrap_or(i64::MAX));
        self.call.recording_error = None;
    }

    /// The recording could not be kept; the call went on without it.
    pub fn recording_failed(&mut self, failure: &RecordingFailure) {
        let reason = failure.reason.as_str();
        self.call.recording_status = Some(RecordingStatus::Failed);
        self.call.recording_duration_ms = None;
        self.call.recording_bytes = None;
        self.call.recording_error = Some(truncate(&format!("{reason}: {}", failure.detail), 1024));
        self.event(
            "recording_failed",
            json!({"reason": reason, "detail": truncate(&failure.detail, 1024)}),
        );
    }

    /// The record as it stands and the events since the last write.
    pub fn take_write(&mut self) -> CallWrite {
        CallWrite {
            call: self.call.clone(),
            events: std::mem::take(&mut self.events),
            stored: self.stored,
        }
    }

    /// The last write was committed: later writes only update the record.
    pub fn committed(&mut self) {
        self.stored = true;
    }
}

/// What the record of a call vca-sip places is made from.
#[derive(Debug, Clone, Copy)]
pub struct Outbound<'a> {
    pub tenant_id: TenantId,
    pub trunk_id: Option<TrunkId>,
    /// The calling number as sent in From.
    pub caller: &'a str,
    /// The number called, E.164.
    pub called: &'a str,
    pub sip_call_id: &'a str,
    pub transport: Transport,
    pub remote: SocketAddr,
}

/// A call to one of `route`'s numbers that has just arrived, `initiated` now: no trunk, SIP
/// Call-ID or transport yet (the constructors set theirs).
fn inbound_call(
    clock: &dyn WallClock,
    route: &Route,
    caller: &str,
    called: &str,
    called_raw: &str,
    remote: SocketAddr,
) -> Call {
    Call {
        id: CallId::new(),
        tenant_id: route.tenant_id,
        phone_number_id: Some(route.phone_number_id),
        ai_profile_id: route.ai_profile_id,
        trunk_id: None,
        direction: Direction::Inbound,
        caller: truncate(caller, 128),
        called: called.to_owned(),
        called_raw: truncate(called_raw, 128),
        sip_call_id: String::new(),
        transport: CallTransport::Webrtc,
        remote_addr: remote.to_string(),
        codec: None,
        status: CallStatus::Initiated,
        sip_status: None,
        q850_cause: None,
        hangup_cause: None,
        started_at: stamp(clock.now()),
        answered_at: None,
        ended_at: None,
        duration_s: None,
        recording_status: None,
        recording_duration_ms: None,
        recording_bytes: None,
        recording_error: None,
    }
}

fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Timelike};

    use super::*;
    use crate::clock::FakeClock;

    #[test]
    fn record_times_keep_microseconds_as_both_stores_do() {
        let start = Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap()
            + chrono::Duration::nanoseconds(1_234_567);
        let clock = FakeClock::new(start);
        let call = Outbound {
            tenant_id: TenantId::new(),
            trunk_id: None,
            caller: "+911234567890",
            called: "+919876543210",
            sip_call_id: "a@b",
            transport: Transport::Udp,
            remote: "127.0.0.1:5060".parse().unwrap(),
        };
        let record = Record::outbound(clock.clone(), CallId::new(), call);
        assert_eq!(record.call.started_at.nanosecond(), 1_234_000);
        clock.advance(std::time::Duration::from_nanos(999)); // 1_235_566 ns: truncated, not rounded
        assert_eq!(record.now().nanosecond(), 1_235_000);
    }
}
