//! Observation dispatch: what LiveKit, Twilio, the clients and the timers report, applied to
//! the call (stale, duplicate or early reports change nothing).

use serde_json::json;

use super::{outbound, phone, CallMachine, Observation, Party, Space, TimerKey, Tx};
use crate::model::{Audience, CallStatus, TransferStatus};

/// The party a LiveKit identity (or conference participant label) names, if it is in the call.
pub(super) fn party_of_identity(m: &CallMachine, identity: &str) -> Option<Party> {
    if identity == m.call.caller_id {
        return Some(Party::Caller);
    }
    let p = Party::Agent(identity.to_string());
    (m.placements.contains_key(&p) || m.phones.contains_key(&p)).then_some(p)
}

/// Applies an observation (never refused: an irrelevant or stale one changes nothing).
pub(super) fn observe(tx: &mut Tx, obs: Observation) {
    if let Observation::Dialed {
        party,
        call_sid,
        transfer_id,
    } = &obs
    {
        // Even after the call ended: a leg Twilio created too late must not stay up.
        return phone::dialed(tx, party, call_sid, transfer_id.as_deref());
    }
    if tx.m.call.status.is_terminal() {
        return outbound::after_end(tx, obs);
    }
    let Err(obs) = outbound::observe_live(tx, obs) else {
        return;
    };
    match obs {
        Observation::Dialed { .. } => {}
        Observation::ConferenceStarted {
            conference,
            conference_sid,
        } => phone::conference_started(tx, conference, conference_sid),
        Observation::PhoneAnswered { party, call_sid } => phone::answered(tx, &party, call_sid),
        Observation::DialFailed {
            party,
            reason: _,
            transfer_id,
        } => phone::dial_failed(tx, &party, transfer_id.as_deref()),
        Observation::PhoneLegEnded {
            party,
            call_sid,
            status,
        } => phone::leg_ended(tx, party, call_sid, &status),
        Observation::Joined {
            identity,
            room,
            at,
            session,
        } => {
            let Some(party) = party_of_identity(&tx.m, &identity) else {
                return;
            };
            let Some(p) = tx.m.placements.get(&party).cloned() else {
                return;
            };
            // LiveKit stamps events in whole seconds: one from a second that ended before
            // the move was issued is a late duplicate of an earlier join, not this arrival.
            let before_move = at.saturating_add(999) < p.placed_at;
            if at < p.last_observed || before_move || tx.room_for(&party, p.space) != room {
                return; // stale, or a room the party is no longer expected in
            }
            let placement = tx.m.placements.get_mut(&party).expect("checked above");
            placement.last_observed = at;
            if session.is_some() {
                // The newest session here: the leave of an older one (a reconnect) is stale.
                placement.session = session;
            }
            if placement.confirmed {
                return; // duplicate
            }
            placement.confirmed = true;
            tx.m.timers.remove(&TimerKey::Arrival(party.clone()));
            tx.m.timers.remove(&TimerKey::Rejoin(party.clone()));
            let audience = joined_audience(tx, &party);
            tx.emit(
                "participant.joined",
                audience,
                json!({ "identity": identity, "room": room, "space": p.space }),
            );
            if party == Party::Caller && tx.m.call.status == CallStatus::Dialing {
                // LiveKit adds the SIP participant when it starts ringing the number.
                tx.set_status(CallStatus::Ringing);
                let agents = tx.agents_only();
                tx.emit("call.ringing", agents, json!({ "identity": identity }));
            }
            tx.arrived(&party);
        }
        Observation::Left {
            identity,
            room,
            at,
            session,
        } => {
            let Some(party) = party_of_identity(&tx.m, &identity) else {
                return;
            };
            let Some(p) = tx.m.placements.get(&party).cloned() else {
                return;
            };
            // A party cannot leave a room before it was sent there (see `Joined`), nor leave
            // with another session than the one it is there with.
            let before_move = at.saturating_add(999) < p.placed_at;
            let other_session =
                matches!((&p.session, &session), (Some(mine), Some(theirs)) if mine != theirs);
            if at < p.last_observed
                || before_move
                || other_session
                || tx.room_for(&party, p.space) != room
                || !p.confirmed
            {
                return; // stale, or leaving a room it was moved out of
            }
            if party == Party::Caller && tx.sip_caller() {
                if matches!(tx.m.call.status, CallStatus::Dialing | CallStatus::Ringing) {
                    return; // the dial's own result (or its deadline) says how it ended
                }
                // A SIP callee that leaves has hung up: it cannot come back.
                return tx.end_call("caller_hangup");
            }
            let placement = tx.m.placements.get_mut(&party).expect("checked above");
            placement.last_observed = at;
            placement.confirmed = false;
            tx.m.timers.insert(
                TimerKey::Rejoin(party.clone()),
                tx.now + tx.m.timeouts.rejoin_ms,
            );
            let audience = joined_audience(tx, &party);
            tx.emit(
                "participant.left",
                audience,
                json!({ "identity": identity, "room": room, "space": p.space }),
            );
        }
        Observation::MoveAcked { party, move_id } => {
            let Some(p) = tx.m.placements.get(&party).cloned() else {
                return;
            };
            if p.move_id != move_id || p.confirmed {
                return;
            }
            let room = tx.room_for(&party, p.space);
            let identity = tx.identity_of(&party);
            if let Some(placement) = tx.m.placements.get_mut(&party) {
                placement.confirmed = true;
            }
            tx.m.timers.remove(&TimerKey::Arrival(party.clone()));
            tx.m.timers.remove(&TimerKey::Rejoin(party.clone()));
            let audience = joined_audience(tx, &party);
            tx.emit(
                "participant.joined",
                audience,
                json!({ "identity": identity, "room": room, "space": p.space, "acknowledged": true }),
            );
            tx.arrived(&party);
        }
        Observation::AgentGone { agent_id } => tx.agent_gone(&agent_id),
        // Taken by `outbound::observe_live` above.
        Observation::SipAnswered { .. }
        | Observation::SipFailed { .. }
        | Observation::AssistantDispatched { .. }
        | Observation::DispatchFailed { .. }
        | Observation::AssistantJoined { .. }
        | Observation::AssistantLeft { .. }
        | Observation::RecordingStarted { .. }
        | Observation::RecordingUpdated { .. }
        | Observation::RecordingRefused { .. }
        | Observation::Notified => {}
        Observation::SummaryStored {
            summary_id,
            summary_text,
            briefing,
        } => {
            if tx.m.call.last_summary_id.as_deref() != Some(summary_id.as_str()) {
                tx.m.call.last_summary_id = Some(summary_id.clone());
                let agents = tx.agents_only();
                tx.emit(
                    "summary.updated",
                    agents,
                    json!({ "summaryId": summary_id, "summaryText": summary_text, "briefing": briefing }),
                );
            }
        }
        Observation::TranscriptAppended {
            transcript_id,
            speaker,
            text,
            source,
        } => {
            let agents = tx.agents_only();
            tx.emit(
                "transcript.appended",
                agents,
                json!({ "transcriptId": transcript_id, "speaker": speaker, "text": text, "source": source }),
            );
        }
        Observation::TimerFired { key } => timer_fired(tx, key),
    }
}

/// Who hears that a party joined or left a room: everyone in the call for the main room; the
/// agents for the consult room; the agents (not the caller, who hears music) for hold.
fn joined_audience(tx: &Tx, party: &Party) -> Audience {
    let space = tx.m.placements.get(party).map(|p| p.space);
    match space {
        Some(Space::Main) => tx.everyone(),
        _ => {
            let mut a = tx.agents_only();
            if *party == Party::Caller {
                a.caller = true;
            }
            a
        }
    }
}

/// A deadline passed (a timer that fired early, or was disarmed meanwhile, changes nothing).
fn timer_fired(tx: &mut Tx, key: TimerKey) {
    let Some(due) = tx.m.timers.get(&key).copied() else {
        return; // disarmed meanwhile
    };
    if tx.now < due {
        return; // fired early (re-armed later)
    }
    tx.m.timers.remove(&key);
    match key {
        TimerKey::Offer => {
            if let (CallStatus::Ringing, Some(agent)) =
                (tx.m.call.status, tx.m.call.offered_to.clone())
            {
                tx.m.declined_by.push(agent.clone());
                tx.emit(
                    "call.offer_timed_out",
                    Tx::just(&[&agent]),
                    json!({ "agentId": agent }),
                );
                tx.enqueue("offer_timed_out");
            }
        }
        TimerKey::TransferRing => {
            if tx
                .open_transfer()
                .is_some_and(|t| t.status == TransferStatus::Ringing)
            {
                tx.roll_back(TransferStatus::TimedOut, None);
            }
        }
        TimerKey::Arrival(party) => {
            let Some(p) = tx.m.placements.get(&party).cloned() else {
                return;
            };
            if p.confirmed {
                return;
            }
            if party == Party::Caller && p.retries == 0 {
                // One more chance: send the move again with a fresh id.
                tx.m.moves += 1;
                let placement = tx.m.placements.get_mut(&party).expect("present");
                placement.retries = 1;
                placement.move_id = format!("mv-{}", tx.m.moves);
                tx.announce_move(&party);
            } else {
                tx.party_gone(&party);
            }
        }
        TimerKey::Rejoin(party) => {
            if tx.m.placements.get(&party).is_some_and(|p| !p.confirmed) {
                tx.party_gone(&party);
            }
        }
        TimerKey::Dial => outbound::dial_timed_out(tx),
        // Handled with the recording (it also fires after the end).
        TimerKey::Finish => {}
    }
}
