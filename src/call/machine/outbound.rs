//! Outbound assistant calls in the call machine: the SIP dial-out (dialing → ringing →
//! active, or failed with the SIP status), the assistant as an automated owner that hands the
//! caller to a human, the recording, and the end-of-call notice that waits for it.

use serde_json::json;

use super::{
    AssistantEffect, Effect, LiveKitEffect, NoticeEffect, Observation, Party, Space, Step,
    Timeouts, TimerKey, Tx,
};
use crate::model::{
    from_millis, Audience, Call, CallStatus, Millis, Recording, RecordingStatus, TransferStatus,
};

/// How long after the ring deadline a dial with no result counts as unanswered (the dial
/// request's own result is lost, e.g. across a restart).
pub const DIAL_GRACE_MS: Millis = 15_000;
/// How long the end-of-call notice waits for the recording to be uploaded.
pub const RECORDING_SETTLE_MS: Millis = 30_000;
/// How long before an end-of-call notice that was not confirmed is asked for again.
pub const NOTIFY_RETRY_MS: Millis = 15_000;

/// The owner id under which an assistant runs a call (never a human agent's id: agent ids
/// may not start with `assistant:`).
pub fn assistant_party_id(assistant_id: &str) -> String {
    format!("assistant:{assistant_id}")
}

/// What an outbound call needs besides its record: the assistant to dispatch and whether to
/// record. The rendered prompt travels only in the dispatch effect, never in the stored state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundPlan {
    /// The LiveKit agent name dispatched to the room.
    pub agent_name: String,
    /// The dispatch's metadata (JSON: rendered prompt, start instruction, voice, ...).
    pub dispatch_metadata: String,
    /// Whether to record the call.
    pub record: bool,
}

/// The end reason of a dial-out refused with `sip_status`.
pub fn dial_outcome(sip_status: Option<u16>) -> &'static str {
    match sip_status {
        Some(486) | Some(600) => "busy",
        Some(408) | Some(480) | Some(487) => "no_answer",
        Some(603) | Some(403) => "declined",
        _ => "dial_failed",
    }
}

impl Tx {
    /// Whether the call's owner is its assistant.
    pub(super) fn automated_owner(&self) -> bool {
        match (&self.m.call.assistant_id, &self.m.call.owner_id) {
            (Some(a), Some(owner)) => *owner == assistant_party_id(a),
            _ => false,
        }
    }

    /// Whether the caller is a SIP participant (it cannot be moved out of the main room).
    pub(super) fn sip_caller(&self) -> bool {
        self.m.call.channel == crate::model::Channel::Sip
    }

    /// Sends the assistant away: its dispatch deleted and its participant removed.
    pub(super) fn dismiss_assistant(&mut self) {
        let Some(leg) = self.m.call.outbound.as_ref() else {
            return;
        };
        if self.m.call.assistant_id.is_none() {
            return;
        }
        self.effects
            .push(Effect::Assistant(AssistantEffect::DismissAssistant {
                room: self.m.call.main_room.clone(),
                identity: leg.assistant_identity.clone(),
                dispatch_id: leg.dispatch_id.clone(),
            }));
        self.m.assistant_present = false;
    }

    /// After the call ended: stop the recording, and schedule the end-of-call notice (at
    /// once, or once the recording is uploaded). Calls with neither an assistant nor a
    /// recording have no notice to send.
    pub(super) fn after_end(&mut self) {
        if self.m.call.assistant_id.is_some() {
            self.dismiss_assistant();
        }
        let recording = self.m.call.recording.clone();
        let pending_recording = recording.as_ref().is_some_and(|r| !r.status.is_terminal());
        if let Some(Recording {
            egress_id: Some(egress_id),
            status,
            ..
        }) = &recording
        {
            if !status.is_terminal() {
                self.effects
                    .push(Effect::Assistant(AssistantEffect::StopRecording {
                        egress_id: egress_id.clone(),
                    }));
            }
        }
        if self.m.call.assistant_id.is_none() && recording.is_none() {
            return;
        }
        let due = if pending_recording {
            self.now + RECORDING_SETTLE_MS
        } else {
            self.now
        };
        self.m.timers.insert(TimerKey::Finish, due);
    }

    /// A dial-out that did not connect: the call fails with the SIP status.
    fn dial_failed(&mut self, sip_status: Option<u16>, reason: &str) {
        if let Some(leg) = self.m.call.outbound.as_mut() {
            leg.sip_status = sip_status;
            leg.sip_reason = Some(reason.to_string());
        }
        let outcome = dial_outcome(sip_status);
        self.finish_call(CallStatus::Failed, outcome);
    }

    /// The target of an assistant's hand-off arrived next to the caller: it takes over.
    pub(super) fn arrived(&mut self, party: &Party) {
        if !self.automated_owner() {
            return;
        }
        let Some(t) = self.open_transfer().cloned() else {
            return;
        };
        let target_here = *party == Party::Agent(t.to_agent_id.clone())
            && self
                .m
                .placements
                .get(party)
                .is_some_and(|p| p.confirmed && p.space == Space::Main);
        if t.status == TransferStatus::Briefing && target_here {
            self.hand_over(Some("assistant_handoff"));
        }
    }
}

/// The first transition of an outbound call: the room, the assistant's dispatch, the
/// recording and the dial-out; the callee is expected in the main room.
pub(super) fn create(call: Call, plan: OutboundPlan, timeouts: Timeouts, now: Millis) -> Step {
    let mut tx = Tx::new(super::CallMachine::blank(call, timeouts), now);
    let room = tx.m.call.main_room.clone();
    let assistant =
        tx.m.call
            .assistant_id
            .clone()
            .map(|a| assistant_party_id(&a));
    tx.m.call.owner_id = assistant.clone();
    tx.m.call.agent_a_id = assistant.clone();
    tx.m.call.status = CallStatus::Dialing;
    tx.effects.push(Effect::LiveKit(LiveKitEffect::EnsureRoom {
        room: room.clone(),
    }));
    if tx.m.call.assistant_id.is_some() {
        tx.effects
            .push(Effect::Assistant(AssistantEffect::DispatchAssistant {
                room: room.clone(),
                agent_name: plan.agent_name,
                metadata: plan.dispatch_metadata,
            }));
    }
    if plan.record {
        tx.m.call.recording = Some(Recording {
            egress_id: None,
            status: RecordingStatus::Requested,
            location: None,
            error: None,
        });
        tx.effects
            .push(Effect::Assistant(AssistantEffect::StartRecording {
                room: room.clone(),
                file_stem: tx.m.call.call_id.clone(),
            }));
    }
    let leg =
        tx.m.call
            .outbound
            .clone()
            .unwrap_or_else(|| crate::model::OutboundLeg {
                trunk_id: String::new(),
                livekit_trunk_id: String::new(),
                to_number: String::new(),
                from_number: None,
                sip_status: None,
                sip_reason: None,
                dispatch_id: None,
                assistant_identity: None,
                answered_at: None,
            });
    let ring_secs = u32::try_from(timeouts.ring_ms / 1000)
        .unwrap_or(u32::MAX)
        .max(1);
    tx.effects.push(Effect::Assistant(AssistantEffect::DialSip {
        room: room.clone(),
        livekit_trunk_id: leg.livekit_trunk_id.clone(),
        number: leg.to_number.clone(),
        identity: tx.m.call.caller_id.clone(),
        ring_secs,
    }));
    tx.m.moves += 1;
    tx.m.placements.insert(
        Party::Caller,
        super::Placement {
            space: Space::Main,
            move_id: format!("mv-{}", tx.m.moves),
            confirmed: false,
            retries: 0,
            last_observed: 0,
            placed_at: now,
            plane: super::Plane::Livekit,
            session: None,
        },
    );
    tx.m.timers
        .insert(TimerKey::Dial, now + timeouts.ring_ms + DIAL_GRACE_MS);
    let data = json!({
        "direction": tx.m.call.direction,
        "channel": tx.m.call.channel,
        "mainRoom": room,
        "assistantId": tx.m.call.assistant_id,
        "toNumber": leg.to_number,
        "status": "dialing",
    });
    tx.emit(
        "call.created",
        Audience {
            caller: false,
            agents: vec![],
        },
        data,
    );
    tx.finish()
}

/// Observations only outbound calls receive, while the call is live. Returns the
/// observation back (`Err`) when it is not one of them.
pub(super) fn observe_live(tx: &mut Tx, obs: Observation) -> Result<(), Observation> {
    match obs {
        Observation::SipAnswered { sip_call_id } => {
            if matches!(tx.m.call.status, CallStatus::Dialing | CallStatus::Ringing) {
                tx.m.timers.remove(&TimerKey::Dial);
                if let Some(leg) = tx.m.call.outbound.as_mut() {
                    leg.answered_at = Some(from_millis(tx.now));
                }
                if let Some(p) = tx.m.placements.get_mut(&Party::Caller) {
                    p.confirmed = true;
                }
                tx.set_status(CallStatus::Active);
                let owner = tx.m.call.owner_id.clone();
                tx.emit(
                    "call.active",
                    tx.everyone(),
                    json!({ "ownerId": owner, "sipCallId": sip_call_id }),
                );
            }
        }
        Observation::SipFailed { sip_status, reason } => {
            if matches!(tx.m.call.status, CallStatus::Dialing | CallStatus::Ringing) {
                tx.dial_failed(sip_status, &reason);
            }
        }
        Observation::AssistantDispatched { dispatch_id } => {
            if let Some(leg) = tx.m.call.outbound.as_mut() {
                leg.dispatch_id = Some(dispatch_id);
            }
        }
        Observation::DispatchFailed { reason } => {
            if matches!(tx.m.call.status, CallStatus::Dialing | CallStatus::Ringing) {
                // Nobody would talk to the callee: do not let the phone ring on.
                tx.effects
                    .push(Effect::LiveKit(LiveKitEffect::RemoveParticipant {
                        room: tx.m.call.main_room.clone(),
                        identity: tx.m.call.caller_id.clone(),
                    }));
                if let Some(leg) = tx.m.call.outbound.as_mut() {
                    leg.sip_reason = Some(reason);
                }
                tx.finish_call(CallStatus::Failed, "assistant_unavailable");
            } else if tx.automated_owner() && tx.open_transfer().is_none() {
                tx.enqueue("assistant_unavailable");
            }
        }
        Observation::AssistantJoined { identity } => {
            if let Some(leg) = tx.m.call.outbound.as_mut() {
                leg.assistant_identity = Some(identity.clone());
            }
            if !tx.m.assistant_present && tx.automated_owner() {
                tx.m.assistant_present = true;
                let agents = tx.agents_only();
                tx.emit(
                    "assistant.joined",
                    agents,
                    json!({ "assistantId": tx.m.call.assistant_id, "identity": identity }),
                );
            }
        }
        Observation::AssistantLeft { identity } => {
            let known =
                tx.m.call
                    .outbound
                    .as_ref()
                    .and_then(|l| l.assistant_identity.as_deref())
                    == Some(identity.as_str());
            if known && tx.m.assistant_present && tx.automated_owner() {
                tx.m.assistant_present = false;
                let agents = tx.agents_only();
                tx.emit(
                    "assistant.left",
                    agents,
                    json!({ "assistantId": tx.m.call.assistant_id, "identity": identity }),
                );
                // Alone with nobody: the caller goes to a human (unless one is on the way).
                if tx.m.call.status == CallStatus::Active && tx.open_transfer().is_none() {
                    tx.enqueue("assistant_left");
                }
            }
        }
        other => return recording(tx, other),
    }
    Ok(())
}

/// Recording observations and the end-of-call notice: they also arrive after the call ended.
/// Returns the observation back (`Err`) when it is not one of them.
pub(super) fn recording(tx: &mut Tx, obs: Observation) -> Result<(), Observation> {
    match obs {
        Observation::RecordingStarted { egress_id } => {
            let ended = tx.m.call.status.is_terminal();
            if let Some(r) = tx.m.call.recording.as_mut() {
                if r.egress_id.is_none() {
                    r.egress_id = Some(egress_id.clone());
                    if ended {
                        // Started after the call ended: stop it at once.
                        tx.effects
                            .push(Effect::Assistant(AssistantEffect::StopRecording {
                                egress_id,
                            }));
                    }
                }
            }
        }
        Observation::RecordingUpdated {
            egress_id,
            status,
            location,
            error,
        } => {
            let Some(r) = tx.m.call.recording.as_mut() else {
                return Ok(());
            };
            if r.egress_id.as_deref().is_some_and(|e| e != egress_id) || r.status.is_terminal() {
                return Ok(()); // another egress, or already settled
            }
            let (before, after) = (r.status, status);
            if before == after && r.location == location {
                return Ok(());
            }
            r.egress_id = Some(egress_id.clone());
            r.status = status;
            if location.is_some() {
                r.location = location.clone();
            }
            if error.is_some() {
                r.error = error.clone();
            }
            let kind = match status {
                RecordingStatus::Failed => "recording.failed",
                RecordingStatus::Complete => "recording.completed",
                _ => "recording.started",
            };
            let agents = tx.agents_only();
            tx.emit(
                kind,
                agents,
                json!({ "egressId": egress_id, "location": location, "error": error }),
            );
            if status.is_terminal() && tx.m.timers.contains_key(&TimerKey::Finish) {
                // The notice waited for this upload: send it now.
                tx.m.timers.insert(TimerKey::Finish, tx.now);
            }
        }
        Observation::RecordingRefused { error } => {
            let Some(r) = tx.m.call.recording.as_mut() else {
                return Ok(());
            };
            if r.status.is_terminal() {
                return Ok(());
            }
            r.status = RecordingStatus::Failed;
            r.error = Some(error.clone());
            let agents = tx.agents_only();
            tx.emit("recording.failed", agents, json!({ "error": error }));
            if tx.m.timers.contains_key(&TimerKey::Finish) {
                tx.m.timers.insert(TimerKey::Finish, tx.now);
            }
        }
        Observation::Notified => {
            tx.m.timers.remove(&TimerKey::Finish);
        }
        Observation::TimerFired {
            key: TimerKey::Finish,
        } => {
            let Some(due) = tx.m.timers.get(&TimerKey::Finish).copied() else {
                return Ok(());
            };
            if tx.now < due || !tx.m.call.status.is_terminal() {
                return Ok(());
            }
            // Asked again later unless the actor confirms it was queued.
            tx.m.timers
                .insert(TimerKey::Finish, tx.now + NOTIFY_RETRY_MS);
            tx.effects.push(Effect::Notice(NoticeEffect::NotifyEnded));
        }
        other => return Err(other),
    }
    Ok(())
}

/// What may still happen after the call ended: recordings settling, the notice, and
/// resources LiveKit reports too late (a dispatch or an answer after the end).
pub(super) fn after_end(tx: &mut Tx, obs: Observation) {
    let Err(obs) = recording(tx, obs) else {
        return;
    };
    match obs {
        Observation::AssistantDispatched { dispatch_id } => {
            let known =
                tx.m.call
                    .outbound
                    .as_ref()
                    .and_then(|l| l.dispatch_id.as_deref())
                    == Some(dispatch_id.as_str());
            if !known {
                if let Some(leg) = tx.m.call.outbound.as_mut() {
                    leg.dispatch_id = Some(dispatch_id.clone());
                }
                tx.effects
                    .push(Effect::Assistant(AssistantEffect::DismissAssistant {
                        room: tx.m.call.main_room.clone(),
                        identity: None,
                        dispatch_id: Some(dispatch_id),
                    }));
            }
        }
        Observation::SipAnswered { .. } => {
            // Answered after we gave up: hang it up.
            tx.effects
                .push(Effect::LiveKit(LiveKitEffect::RemoveParticipant {
                    room: tx.m.call.main_room.clone(),
                    identity: tx.m.call.caller_id.clone(),
                }));
        }
        _ => {}
    }
}

/// The dial deadline passed with no answer and no failure reported.
pub(super) fn dial_timed_out(tx: &mut Tx) {
    if matches!(tx.m.call.status, CallStatus::Dialing | CallStatus::Ringing) {
        tx.effects
            .push(Effect::LiveKit(LiveKitEffect::RemoveParticipant {
                room: tx.m.call.main_room.clone(),
                identity: tx.m.call.caller_id.clone(),
            }));
        tx.dial_failed(Some(408), "no answer before the dial deadline");
    }
}
