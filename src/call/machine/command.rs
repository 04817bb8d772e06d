//! Command dispatch: checks who may issue each command in the call's state, and carries out
//! the call's own commands (offer, accept, decline, hold, resume, hang up, mute, details);
//! transfer commands go to [`super::transfer`].

use serde_json::{json, Value};

use super::input::conflict;
use super::transfer::{self, NewTransfer};
use super::tx::{require_live, require_owner};
use super::{Actor, Command, Effect, Party, Rejection, Space, TimerKey, TwilioEffect, Tx};
use crate::model::{from_millis, Audience, CallStatus};

/// Applies a command (refused when `actor` may not issue it in the call's state).
pub(super) fn command(tx: &mut Tx, actor: Actor, cmd: Command) -> Result<(), Rejection> {
    match cmd {
        Command::Offer { agent_id } => {
            if actor != Actor::System {
                return Err(Rejection::Forbidden("only routing offers calls".into()));
            }
            require_live(tx)?;
            if tx.m.call.status != CallStatus::Queued {
                return Err(conflict(
                    "not_queued",
                    "the call is not waiting for an agent",
                ));
            }
            tx.m.call.offered_to = Some(agent_id.clone());
            tx.set_status(CallStatus::Ringing);
            tx.m.timers
                .insert(TimerKey::Offer, tx.now + tx.m.timeouts.ring_ms);
            let data = json!({
                "agentId": agent_id,
                "callerName": tx.m.call.caller_name,
                "reason": tx.m.call.reason,
                "expiresAt": from_millis(tx.now + tx.m.timeouts.ring_ms),
            });
            tx.emit(
                "call.offered",
                Audience {
                    caller: true,
                    agents: vec![agent_id],
                },
                data,
            );
        }
        Command::AcceptCall => {
            let Actor::Agent(agent) = actor else {
                return Err(Rejection::Forbidden(
                    "only an agent may accept a call".into(),
                ));
            };
            if tx.owner().as_deref() == Some(agent.as_str()) {
                return Ok(()); // repeated accept: same result
            }
            require_live(tx)?;
            match tx.m.call.status {
                CallStatus::Queued => {}
                CallStatus::Ringing if tx.m.call.offered_to.as_deref() == Some(&agent) => {}
                CallStatus::Ringing => {
                    return Err(conflict(
                        "offered_to_another_agent",
                        "the call is offered to another agent",
                    ))
                }
                _ => return Err(conflict("already_taken", "another agent has the call")),
            }
            tx.m.call.offered_to = None;
            tx.m.timers.remove(&TimerKey::Offer);
            tx.m.call.owner_id = Some(agent.clone());
            if tx.m.call.agent_a_id.is_none() {
                tx.m.call.agent_a_id = Some(agent.clone());
            }
            tx.m.declined_by.clear();
            tx.set_status(CallStatus::Active);
            tx.place(Party::Agent(agent.clone()), Space::Main);
            tx.place(Party::Caller, Space::Main);
            tx.emit("call.active", tx.everyone(), json!({ "ownerId": agent }));
        }
        Command::DeclineCall => {
            let Actor::Agent(agent) = actor else {
                return Err(Rejection::Forbidden(
                    "only an agent may decline a call".into(),
                ));
            };
            require_live(tx)?;
            if tx.m.call.offered_to.as_deref() != Some(agent.as_str()) {
                return Err(conflict(
                    "not_offered",
                    "the call is not offered to this agent",
                ));
            }
            tx.m.declined_by.push(agent.clone());
            tx.emit(
                "call.declined",
                Tx::just(&[&agent]),
                json!({ "agentId": agent }),
            );
            tx.enqueue("declined");
        }
        Command::Hold => {
            require_owner(tx, &actor)?;
            if tx.sip_caller() {
                return Err(conflict(
                    "not_supported",
                    "a caller on a SIP trunk stays in the main room and cannot be held",
                ));
            }
            match tx.m.call.status {
                CallStatus::OnHold => return Ok(()),
                CallStatus::Active => {}
                _ => return Err(conflict("not_active", "only an active call can be held")),
            }
            tx.set_status(CallStatus::OnHold);
            tx.place(Party::Caller, Space::Hold);
            tx.emit("call.on_hold", tx.everyone(), json!({}));
        }
        Command::Resume => {
            require_owner(tx, &actor)?;
            match tx.m.call.status {
                CallStatus::Active => return Ok(()),
                CallStatus::OnHold => {}
                _ => return Err(conflict("not_on_hold", "the call is not on hold")),
            }
            tx.set_status(CallStatus::Active);
            tx.place(Party::Caller, Space::Main);
            tx.emit("call.resumed", tx.everyone(), json!({}));
        }
        Command::Hangup => {
            if tx.m.call.status.is_terminal() {
                return Ok(());
            }
            let reason = match &actor {
                Actor::Caller => "caller_hangup",
                Actor::Agent(_) => {
                    require_owner(tx, &actor)?;
                    "agent_hangup"
                }
                Actor::System => "system",
            };
            tx.end_call(reason);
        }
        Command::InitiateTransfer {
            transfer_id,
            to_agent_id,
            mode,
            transfer_room,
            summary_id,
            summary_text,
            note,
            to_number,
            briefing,
        } => transfer::initiate(
            tx,
            &actor,
            NewTransfer {
                transfer_id,
                to_agent_id,
                mode,
                transfer_room,
                summary_id,
                summary_text,
                note,
                to_number,
                briefing,
            },
        )?,
        Command::AcceptTransfer => transfer::accept(tx, &actor)?,
        Command::DeclineTransfer => transfer::decline(tx, &actor)?,
        Command::CompleteTransfer => transfer::complete(tx, &actor)?,
        Command::UpdateDetails {
            caller_name,
            reason,
            metadata,
        } => update_details(tx, actor, caller_name, reason, metadata)?,
        Command::Mute { party, muted } => {
            require_owner(tx, &actor)?;
            require_live(tx)?;
            let Some(p) = tx.m.placements.get(&party).cloned() else {
                return Err(conflict("not_placed", "that party is not in the call"));
            };
            let identity = tx.identity_of(&party);
            if tx.is_phone(&party) {
                // A held caller is still in the main conference.
                let conference = match p.space {
                    Space::Hold => tx.m.call.main_room.clone(),
                    space => tx.room_of(space),
                };
                tx.effects
                    .push(Effect::Twilio(TwilioEffect::MuteParticipant {
                        conference_sid: tx.conference_sid(&conference),
                        conference,
                        label: identity.clone(),
                        muted,
                    }));
            }
            let kind = if muted {
                "participant.muted"
            } else {
                "participant.unmuted"
            };
            let mut audience = tx.agents_only();
            audience.caller = party == Party::Caller;
            tx.emit(kind, audience, json!({ "identity": identity }));
        }
        Command::CancelTransfer => transfer::cancel(tx, &actor)?,
    }
    Ok(())
}

fn update_details(
    tx: &mut Tx,
    actor: Actor,
    caller_name: Option<String>,
    reason: Option<String>,
    metadata: Option<Value>,
) -> Result<(), Rejection> {
    if actor != Actor::System {
        require_owner(tx, &actor)?;
    }
    require_live(tx)?;
    let before = tx.m.call.clone();
    if let Some(n) = caller_name {
        tx.m.call.caller_name = n;
    }
    if let Some(r) = reason {
        tx.m.call.reason = r;
    }
    if let Some(md) = metadata {
        tx.m.call.metadata = md;
    }
    if tx.m.call != before {
        let data = json!({
            "callerName": tx.m.call.caller_name,
            "reason": tx.m.call.reason,
            "metadata": tx.m.call.metadata,
        });
        tx.emit("call.updated", tx.agents_only(), data);
    }
    Ok(())
}
