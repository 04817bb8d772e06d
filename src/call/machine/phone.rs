//! Phone legs in the call machine: realising a phone party's placement on Twilio, hanging
//! legs up, and what Twilio reports about them (a conference started, a leg dialled, failed,
//! answered or ended).

use super::{Effect, Party, PhoneLeg, PhoneState, Placement, Space, TwilioEffect, Tx};
use crate::model::TransferStatus;

impl Tx {
    /// Realises a phone party's placement: nothing when Twilio is waiting on our answer to
    /// its prompt (that answer joins it), hold/resume in the main conference for the caller,
    /// a redirect into the space's conference for an agent.
    pub(super) fn move_phone(
        &mut self,
        party: &Party,
        leg: &PhoneLeg,
        p: &Placement,
        identity: String,
    ) {
        if leg.state == PhoneState::AtPrompt {
            if let Some(l) = self.m.phones.get_mut(party) {
                l.state = PhoneState::Connected;
            }
            return;
        }
        match party {
            Party::Caller => {
                let conference = self.m.call.main_room.clone();
                self.effects
                    .push(Effect::Twilio(TwilioEffect::HoldParticipant {
                        conference_sid: self.conference_sid(&conference),
                        conference,
                        label: identity,
                        hold: p.space == Space::Hold,
                    }));
            }
            Party::Agent(_) => {
                if let Some(call_sid) = leg.call_sid.clone() {
                    self.effects
                        .push(Effect::Twilio(TwilioEffect::RedirectPhone {
                            call_sid,
                            conference: self.room_of(p.space),
                            label: identity,
                        }));
                }
            }
        }
    }

    /// Forgets a party's phone leg and hangs it up (cancels it while it rings).
    pub(super) fn drop_phone(&mut self, party: &Party) {
        if let Some(leg) = self.m.phones.remove(party) {
            if let Some(call_sid) = leg.call_sid {
                self.effects.push(Effect::Twilio(TwilioEffect::HangupPhone {
                    call_sid,
                    ringing: leg.state == PhoneState::Dialing,
                }));
            }
        }
    }
}

/// Twilio created the call dialling `party`: remember its SID, or hang it up when the party
/// is no longer wanted (the transfer ended before Twilio answered our request, or the answer
/// is about an older transfer's dial of the same party).
pub(super) fn dialed(tx: &mut Tx, party: &Party, call_sid: &str, transfer_id: Option<&str>) {
    let current = tx.open_transfer().map(|t| t.transfer_id.clone());
    if transfer_id.is_some_and(|id| Some(id) != current.as_deref()) {
        let known = tx.m.phones.get(party).and_then(|l| l.call_sid.as_deref()) == Some(call_sid);
        if !known {
            tx.effects.push(Effect::Twilio(TwilioEffect::HangupPhone {
                call_sid: call_sid.to_string(),
                ringing: true,
            }));
        }
        return;
    }
    match tx.m.phones.get_mut(party) {
        Some(leg) if leg.call_sid.is_none() => leg.call_sid = Some(call_sid.to_string()),
        Some(_) => {}
        None => tx.effects.push(Effect::Twilio(TwilioEffect::HangupPhone {
            call_sid: call_sid.to_string(),
            ringing: true,
        })),
    }
}

/// A phone leg ended: the caller hanging up ends the call; a transfer target that is busy,
/// does not answer, fails, declines at the prompt or hangs up rolls the transfer back; an
/// owner on the phone hanging up ends the call.
pub(super) fn leg_ended(tx: &mut Tx, party: Party, call_sid: Option<String>, status: &str) {
    let Some(leg) = tx.m.phones.get(&party) else {
        return; // already gone, or never a phone leg
    };
    if let (Some(known), Some(told)) = (&leg.call_sid, &call_sid) {
        if known != told {
            return; // an older leg of the same party
        }
    }
    tx.m.phones.remove(&party);
    let agent = match party {
        Party::Caller => return tx.end_call("caller_hangup"),
        Party::Agent(agent) => agent,
    };
    if let Some(t) = tx.open_transfer().cloned() {
        if t.to_agent_id == agent {
            let (outcome, reason) = match (t.status, status) {
                (TransferStatus::Ringing, "busy") => (TransferStatus::Declined, "busy"),
                (TransferStatus::Ringing, "declined") => (TransferStatus::Declined, "declined"),
                (TransferStatus::Ringing, "no-answer") => (TransferStatus::TimedOut, "no_answer"),
                (TransferStatus::Ringing, "no_input") => (TransferStatus::TimedOut, "no_input"),
                (TransferStatus::Ringing, "failed") => (TransferStatus::Failed, "dial_failed"),
                (TransferStatus::Ringing, "canceled") => (TransferStatus::Failed, "canceled"),
                // Answered, heard the briefing, hung up without a key: a decline.
                (TransferStatus::Ringing, _) => (TransferStatus::Declined, "target_hangup"),
                _ => (TransferStatus::Failed, "target_hangup"),
            };
            return tx.roll_back(outcome, Some(reason));
        }
    }
    if tx.owner().as_deref() == Some(agent.as_str()) {
        tx.end_call("agent_hangup");
    } else if tx.m.placements.contains_key(&Party::Agent(agent.clone())) {
        tx.release(&agent, "hung_up");
    }
}

/// Twilio reported a conference's SID. A consult conference whose transfer already ended
/// (Twilio told us its SID too late for the end of the transfer to close it) is ended now.
pub(super) fn conference_started(tx: &mut Tx, conference: String, conference_sid: String) {
    let finished_consult =
        tx.m.transfer
            .as_ref()
            .is_some_and(|t| t.transfer_room == conference && t.status.is_terminal());
    if finished_consult {
        tx.effects.push(Effect::Twilio(TwilioEffect::EndConference {
            conference: conference.clone(),
            conference_sid: Some(conference_sid.clone()),
        }));
    }
    tx.m.conferences.insert(conference, conference_sid);
}

/// A dialled phone party answered: Twilio now executes our answer (the whisper prompt).
pub(super) fn answered(tx: &mut Tx, party: &Party, call_sid: String) {
    if let Some(leg) = tx.m.phones.get_mut(party) {
        if leg.call_sid.as_deref().is_none_or(|s| s == call_sid) {
            leg.call_sid = Some(call_sid);
            leg.state = PhoneState::AtPrompt;
        }
    }
}

/// Twilio refused to dial a phone party: a ringing transfer to it fails.
pub(super) fn dial_failed(tx: &mut Tx, party: &Party, transfer_id: Option<&str>) {
    let ringing_target = tx.open_transfer().is_some_and(|t| {
        t.status == TransferStatus::Ringing
            && *party == Party::Agent(t.to_agent_id.clone())
            && transfer_id.is_none_or(|id| id == t.transfer_id)
    });
    if ringing_target {
        tx.m.phones.remove(party);
        tx.roll_back(TransferStatus::Failed, Some("dial_failed"));
    }
}
