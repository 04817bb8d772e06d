//! The transfer saga: a transfer is initiated, rings its target, is accepted into a briefing
//! (warm: in the consult room; conference: all three in the main room) or handed over at once
//! (cold), and ends completed, or rolled back (declined, timed out, failed, cancelled) with the
//! caller back with its owner.

use serde_json::{json, Value};

use super::input::conflict;
use super::tx::{require_live, require_owner};
use super::{
    Actor, Effect, LiveKitEffect, Party, PhoneLeg, PhoneState, Plane, Rejection, Space, TimerKey,
    TwilioEffect, Tx,
};
use crate::model::{from_millis, Audience, CallStatus, Transfer, TransferMode, TransferStatus};

impl Tx {
    /// Sets the open transfer's status and emits `transfer.<status>`.
    pub(super) fn transfer_to(
        &mut self,
        status: TransferStatus,
        reason: Option<&str>,
        audience: Audience,
    ) {
        let now = from_millis(self.now);
        let Some(t) = self.m.transfer.as_mut() else {
            return;
        };
        t.status = status;
        t.updated_at = now;
        if let Some(r) = reason {
            t.reason = Some(r.to_string());
        }
        if status.is_terminal() {
            t.ended_at = Some(now);
        }
        let data = json!({
            "transferId": t.transfer_id,
            "status": status.as_str(),
            "mode": t.mode,
            "fromAgentId": t.from_agent_id,
            "toAgentId": t.to_agent_id,
            "reason": t.reason,
        });
        let terminal = status.is_terminal();
        // Only a warm transfer opens a consult room (or conference).
        let consult = (t.mode == TransferMode::Warm).then(|| t.transfer_room.clone());
        let consult_plane = self.m.consult_plane;
        self.transfer_changed = true;
        self.emit(&format!("transfer.{}", status.as_str()), audience, data);
        if terminal {
            self.m.call.open_transfer_id = None;
            self.m.timers.remove(&TimerKey::TransferRing);
            match (consult, consult_plane) {
                (Some(room), Plane::Livekit) => self
                    .effects
                    .push(Effect::LiveKit(LiveKitEffect::CloseRoom { room })),
                (Some(conference), Plane::Twilio) => {
                    self.effects
                        .push(Effect::Twilio(TwilioEffect::EndConference {
                            conference_sid: self.conference_sid(&conference),
                            conference,
                        }))
                }
                (None, _) => {}
            }
        }
    }

    /// Ends an open transfer without handing over: the target is released and the caller
    /// goes back to the owner (or to the queue when there is no owner).
    pub(super) fn roll_back(&mut self, status: TransferStatus, reason: Option<&str>) {
        let Some(t) = self.open_transfer().cloned() else {
            return;
        };
        let audience = self.everyone();
        self.transfer_to(status, reason, audience);
        if self
            .m
            .placements
            .contains_key(&Party::Agent(t.to_agent_id.clone()))
        {
            self.release(&t.to_agent_id, status.as_str());
        }
        self.drop_phone(&Party::Agent(t.to_agent_id.clone()));
        if self.automated_owner() {
            // The caller stayed with the assistant in the main room all along.
            if self.m.assistant_present {
                self.place(Party::Caller, Space::Main);
                self.set_status(CallStatus::Active);
                self.emit(
                    "call.resumed",
                    self.everyone(),
                    json!({ "ownerId": self.m.call.owner_id }),
                );
            } else {
                self.enqueue("assistant_left");
            }
            return;
        }
        match self.owner() {
            Some(owner) => {
                self.place(Party::Agent(owner), Space::Main);
                self.place(Party::Caller, Space::Main);
                self.set_status(CallStatus::Active);
                self.emit(
                    "call.resumed",
                    self.everyone(),
                    json!({ "ownerId": self.m.call.owner_id }),
                );
            }
            None => self.enqueue("owner_disconnected"),
        }
    }

    /// The caller is with the target now: B owns the call, A is released.
    pub(super) fn hand_over(&mut self, reason: Option<&str>) {
        let Some(t) = self.open_transfer().cloned() else {
            return;
        };
        let audience = self.everyone();
        if self.automated_owner() {
            self.dismiss_assistant();
        }
        self.place(Party::Agent(t.to_agent_id.clone()), Space::Main);
        self.place(Party::Caller, Space::Main);
        self.m.call.owner_id = Some(t.to_agent_id.clone());
        self.m.call.agent_b_id = Some(t.to_agent_id.clone());
        self.transfer_to(TransferStatus::Completed, reason, audience);
        if t.from_agent_id != t.to_agent_id {
            self.release(&t.from_agent_id, "transfer_completed");
        }
        self.set_status(CallStatus::Active);
        self.emit(
            "call.active",
            self.everyone(),
            json!({ "ownerId": t.to_agent_id }),
        );
    }
}

/// A transfer the owner asks for ([`super::Command::InitiateTransfer`]'s fields).
pub(super) struct NewTransfer {
    /// New transfer id.
    pub(super) transfer_id: String,
    /// Agent B.
    pub(super) to_agent_id: String,
    /// Warm, cold or conference.
    pub(super) mode: TransferMode,
    /// The consult room's name.
    pub(super) transfer_room: String,
    /// The summary handed to B.
    pub(super) summary_id: Option<String>,
    /// Its text.
    pub(super) summary_text: String,
    /// A note from A to B.
    pub(super) note: Option<String>,
    /// B's phone number when B is a phone agent.
    pub(super) to_number: Option<String>,
    /// The summary's structured briefing for B (null when there is none).
    pub(super) briefing: Value,
}

/// The owner starts a transfer: the target rings (a phone target is dialled), and for a warm
/// transfer the owner goes to the consult room while the caller waits on hold.
pub(super) fn initiate(tx: &mut Tx, actor: &Actor, new: NewTransfer) -> Result<(), Rejection> {
    let NewTransfer {
        transfer_id,
        to_agent_id,
        mode,
        transfer_room,
        summary_id,
        summary_text,
        note,
        to_number,
        briefing,
    } = new;
    let owner = require_owner(tx, actor)?;
    // An assistant's hand-off: the target joins the caller and the assistant in the
    // main room and takes over when it arrives (no consult room for an assistant).
    let mode = if tx.automated_owner() {
        TransferMode::Conference
    } else {
        mode
    };
    if tx
        .m
        .transfer
        .as_ref()
        .is_some_and(|t| t.transfer_id == transfer_id && t.status.is_terminal())
    {
        return Ok(()); // the same request again, after it ended: same result
    }
    if let Some(t) = tx.open_transfer() {
        if t.transfer_id == transfer_id {
            return Ok(()); // the same request again
        }
        return Err(conflict(
            "transfer_open",
            format!("transfer {} is still open", t.transfer_id),
        ));
    }
    if !matches!(tx.m.call.status, CallStatus::Active | CallStatus::OnHold) {
        return Err(conflict(
            "not_active",
            "only an active or held call can be transferred",
        ));
    }
    if to_agent_id == owner {
        return Err(Rejection::Invalid(
            "agentBId must differ from the agent who owns the call".into(),
        ));
    }
    let now = from_millis(tx.now);
    tx.m.transfer = Some(Transfer {
        transfer_id: transfer_id.clone(),
        call_id: tx.m.call.call_id.clone(),
        from_agent_id: owner.clone(),
        to_agent_id: to_agent_id.clone(),
        transfer_room: transfer_room.clone(),
        summary_id: summary_id.clone(),
        summary_text: summary_text.clone(),
        note: note.clone(),
        mode,
        status: TransferStatus::Initiated,
        reason: None,
        created_at: now,
        updated_at: now,
        ended_at: None,
    });
    tx.m.call.open_transfer_id = Some(transfer_id.clone());
    tx.set_status(CallStatus::Transferring);
    let initiated = json!({
        "transferId": transfer_id,
        "mode": mode,
        "fromAgentId": owner,
        "toAgentId": to_agent_id,
        "status": "initiated",
    });
    tx.transfer_changed = true;
    tx.emit("transfer.initiated", tx.everyone(), initiated);
    let target = Party::Agent(to_agent_id.clone());
    tx.m.consult_plane = Plane::Livekit;
    if let Some(number) = to_number {
        tx.m.consult_plane = Plane::Twilio;
        tx.m.phones.insert(
            target.clone(),
            PhoneLeg {
                number: number.clone(),
                call_sid: None,
                state: PhoneState::Dialing,
            },
        );
        tx.effects.push(Effect::Twilio(TwilioEffect::Dial {
            party: target,
            number,
            transfer_id: transfer_id.clone(),
            ring_secs: u32::try_from(tx.m.timeouts.ring_ms / 1000)
                .unwrap_or(u32::MAX)
                .max(1),
        }));
    }
    if mode == TransferMode::Warm {
        if tx.m.consult_plane == Plane::Livekit {
            tx.effects.push(Effect::LiveKit(LiveKitEffect::EnsureRoom {
                room: transfer_room.clone(),
            }));
        }
        if !tx.sip_caller() {
            tx.place(Party::Caller, Space::Hold);
        }
        tx.place(Party::Agent(owner.clone()), Space::Consult);
    } else if mode == TransferMode::Cold && !tx.sip_caller() {
        tx.place(Party::Caller, Space::Hold);
    }
    tx.m.timers
        .insert(TimerKey::TransferRing, tx.now + tx.m.timeouts.ring_ms);
    tx.transfer_to(
        TransferStatus::Ringing,
        None,
        Audience {
            caller: false,
            agents: vec![owner.clone()],
        },
    );
    let offered = json!({
        "transferId": transfer_id,
        "mode": mode,
        "fromAgentId": owner,
        "toAgentId": to_agent_id,
        "callerName": tx.m.call.caller_name,
        "reason": tx.m.call.reason,
        "summaryId": summary_id,
        "summaryText": summary_text,
        "briefing": briefing,
        "note": note,
        "expiresAt": from_millis(tx.now + tx.m.timeouts.ring_ms),
    });
    tx.emit("transfer.offered", Tx::just(&[&to_agent_id]), offered);
    Ok(())
}

/// The target accepts: a briefing starts (warm, conference), or the caller is handed over (cold).
pub(super) fn accept(tx: &mut Tx, actor: &Actor) -> Result<(), Rejection> {
    let t = require_target(tx, actor)?;
    match t.status {
        TransferStatus::Ringing => {}
        TransferStatus::Briefing | TransferStatus::Completed => return Ok(()),
        s => {
            return Err(conflict(
                "transfer_not_ringing",
                format!("transfer {} is {}", t.transfer_id, s.as_str()),
            ))
        }
    }
    require_live(tx)?;
    tx.m.timers.remove(&TimerKey::TransferRing);
    tx.emit(
        "transfer.accepted",
        tx.everyone(),
        json!({ "transferId": t.transfer_id, "toAgentId": t.to_agent_id }),
    );
    match t.mode {
        TransferMode::Warm => {
            tx.place(Party::Agent(t.to_agent_id.clone()), Space::Consult);
            let audience = tx.agents_only();
            tx.transfer_to(TransferStatus::Briefing, None, audience);
        }
        TransferMode::Conference => {
            tx.place(Party::Agent(t.to_agent_id.clone()), Space::Main);
            // All three together, even when the conference started from hold.
            tx.place(Party::Caller, Space::Main);
            let audience = tx.everyone();
            tx.transfer_to(TransferStatus::Briefing, None, audience);
        }
        TransferMode::Cold => tx.hand_over(None),
    }
    Ok(())
}

/// The target declines: the transfer is rolled back.
pub(super) fn decline(tx: &mut Tx, actor: &Actor) -> Result<(), Rejection> {
    let t = require_target(tx, actor)?;
    match t.status {
        TransferStatus::Ringing => {}
        TransferStatus::Declined => return Ok(()),
        s => {
            return Err(conflict(
                "transfer_not_ringing",
                format!("transfer {} is {}", t.transfer_id, s.as_str()),
            ))
        }
    }
    tx.roll_back(TransferStatus::Declined, None);
    Ok(())
}

/// The owner hands the caller over after the briefing.
pub(super) fn complete(tx: &mut Tx, actor: &Actor) -> Result<(), Rejection> {
    let t = require_initiator(tx, actor, "complete")?;
    match t.status {
        TransferStatus::Briefing => tx.hand_over(None),
        TransferStatus::Completed => {}
        TransferStatus::Ringing | TransferStatus::Initiated => {
            return Err(conflict(
                "transfer_not_accepted",
                "the target has not accepted the transfer yet",
            ))
        }
        s => {
            return Err(conflict(
                "transfer_ended",
                format!("transfer {} is {}", t.transfer_id, s.as_str()),
            ))
        }
    }
    Ok(())
}

/// The owner calls the transfer off: it is rolled back.
pub(super) fn cancel(tx: &mut Tx, actor: &Actor) -> Result<(), Rejection> {
    let t = require_initiator(tx, actor, "cancel")?;
    match t.status {
        TransferStatus::Initiated | TransferStatus::Ringing | TransferStatus::Briefing => {
            tx.roll_back(TransferStatus::Cancelled, None)
        }
        TransferStatus::Cancelled => {}
        s => {
            return Err(conflict(
                "transfer_ended",
                format!("transfer {} is {}", t.transfer_id, s.as_str()),
            ))
        }
    }
    Ok(())
}

fn require_target(tx: &Tx, actor: &Actor) -> Result<Transfer, Rejection> {
    let t =
        tx.m.transfer
            .clone()
            .ok_or_else(|| conflict("no_transfer", "the call has no transfer"))?;
    match actor {
        Actor::Agent(a) if *a == t.to_agent_id => Ok(t),
        _ => Err(Rejection::Forbidden(format!(
            "only agent {} may answer transfer {}",
            t.to_agent_id, t.transfer_id
        ))),
    }
}

fn require_initiator(tx: &Tx, actor: &Actor, verb: &str) -> Result<Transfer, Rejection> {
    let t =
        tx.m.transfer
            .clone()
            .ok_or_else(|| conflict("no_transfer", "the call has no transfer"))?;
    match actor {
        Actor::Agent(a) if *a == t.from_agent_id => Ok(t),
        _ => Err(Rejection::Forbidden(format!(
            "only agent {} may {verb} transfer {}",
            t.from_agent_id, t.transfer_id
        ))),
    }
}
