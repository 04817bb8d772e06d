//! The call machine: the pure core of a call. Commands (from people) and observations (from
//! the media planes and timers) go in with the time; a new state and effects come out. No
//! I/O, no clock, no randomness: every failure path of a transfer is testable without a
//! network.
//!
//! Where people are: the caller is always placed in exactly one room (the call's *main* room
//! or its *hold* room, never a consult room) until the call ends; agents are placed in the
//! main room or a transfer's consult room while they take part, and are released (removed
//! from the placements) when they leave the call. A placement is *expected* when the
//! machine sends the party there, and *confirmed* when LiveKit's webhook or the party's own
//! acknowledgement says it arrived. Every expectation has a deadline held in
//! [`CallMachine::timers`]; the actor arms a timer per entry and feeds it back as
//! [`Observation::TimerFired`].

use std::collections::BTreeMap;

use serde_json::json;

use crate::model::{Audience, Call, CallStatus, Channel, Millis, Transfer};

mod command;
mod effect;
mod input;
mod observe;
mod outbound;
mod phone;
mod state;
mod transfer;
mod tx;

pub use effect::{
    AssistantEffect, Effect, LiveKitEffect, NoticeEffect, RoutingEffect, Step, TwilioEffect,
};
pub use input::{Actor, Command, Input, Observation, Rejection};
pub use outbound::{assistant_party_id, dial_outcome, OutboundPlan};
pub use state::{
    CallMachine, Party, PhoneLeg, PhoneState, Placement, Plane, Space, Timeouts, TimerKey,
    HELD_SUFFIX,
};
use tx::Tx;

impl CallMachine {
    /// A machine for `call` with nothing placed, no timers and no events yet.
    fn blank(call: Call, timeouts: Timeouts) -> CallMachine {
        CallMachine {
            call,
            transfer: None,
            placements: BTreeMap::new(),
            timers: BTreeMap::new(),
            declined_by: vec![],
            seq: 0,
            moves: 0,
            timeouts,
            phones: BTreeMap::new(),
            main_plane: Plane::Livekit,
            consult_plane: Plane::Livekit,
            conferences: BTreeMap::new(),
            assistant_present: false,
        }
    }

    /// A new outbound call (`call.outbound` set, `call.channel` = sip): the room is made, the
    /// assistant dispatched, the recording started when asked, and the number dialled. The
    /// assistant owns the call; it is `dialing` until the callee answers or the dial fails.
    pub fn create_outbound(
        call: Call,
        plan: OutboundPlan,
        timeouts: Timeouts,
        now: Millis,
    ) -> Step {
        outbound::create(call, plan, timeouts, now)
    }

    /// Whether nothing more will happen to the call: it is over and its end-of-call notice
    /// (if any) was queued.
    pub fn is_settled(&self) -> bool {
        self.call.status.is_terminal() && !self.timers.contains_key(&TimerKey::Finish)
    }

    /// A new call, queued (or waiting for the agent it names), with the caller placed in the
    /// main room. A phone caller (`caller_call_sid`, with `call.channel` = phone) is placed in
    /// the main conference by the answer to Twilio's voice webhook. Returns the machine and
    /// its first events.
    pub fn create(
        call: Call,
        caller_call_sid: Option<String>,
        timeouts: Timeouts,
        now: Millis,
    ) -> Step {
        let phone_caller = call.channel == Channel::Phone;
        let mut phones = BTreeMap::new();
        if phone_caller {
            phones.insert(
                Party::Caller,
                PhoneLeg {
                    number: call.caller_number.clone().unwrap_or_default(),
                    call_sid: caller_call_sid,
                    state: PhoneState::Connected,
                },
            );
        }
        let main_plane = if phone_caller {
            Plane::Twilio
        } else {
            Plane::Livekit
        };
        let m = CallMachine {
            phones,
            main_plane,
            ..CallMachine::blank(call, timeouts)
        };
        let mut tx = Tx::new(m, now);
        if !phone_caller {
            tx.effects.push(Effect::LiveKit(LiveKitEffect::EnsureRoom {
                room: tx.m.call.main_room.clone(),
            }));
            tx.effects.push(Effect::LiveKit(LiveKitEffect::EnsureRoom {
                room: tx.m.call.hold_room.clone(),
            }));
        }
        tx.m.call.status = CallStatus::Queued;
        tx.m.timers.insert(
            TimerKey::Arrival(Party::Caller),
            now + tx.m.timeouts.move_ms,
        );
        tx.m.moves += 1;
        tx.m.placements.insert(
            Party::Caller,
            Placement {
                space: Space::Main,
                move_id: format!("mv-{}", tx.m.moves),
                confirmed: false,
                retries: 0,
                last_observed: 0,
                placed_at: now,
                plane: main_plane,
                session: None,
            },
        );
        let data = json!({
            "callerName": tx.m.call.caller_name,
            "reason": tx.m.call.reason,
            "mainRoom": tx.m.call.main_room,
            "channel": tx.m.call.channel,
        });
        tx.emit(
            "call.created",
            Audience {
                caller: true,
                agents: vec![],
            },
            data,
        );
        tx.effects
            .push(Effect::Routing(RoutingEffect::RequestAgent));
        tx.finish()
    }

    /// Agents this call engages now (owner, offered agent, transfer parties): routing treats
    /// them as busy.
    pub fn engaged_agents(&self) -> Vec<String> {
        if self.call.status.is_terminal() {
            return vec![];
        }
        let tx = Tx::new(self.clone(), 0);
        tx.involved_agents()
    }

    /// The engaged agents that take part over a WebSocket session, that is all but those on
    /// a phone leg (a phone specialist never opens a session: its leg is its presence). After
    /// a restart these have the disconnect grace to come back.
    pub fn agents_with_sessions(&self) -> Vec<String> {
        self.engaged_agents()
            .into_iter()
            .filter(|a| !self.phones.contains_key(&Party::Agent(a.clone())))
            .collect()
    }

    /// Whether the agent may see this call's details (and act on it as an agent).
    pub fn involves_agent(&self, agent_id: &str) -> bool {
        self.engaged_agents().iter().any(|a| a == agent_id)
            || self.call.agent_a_id.as_deref() == Some(agent_id)
            || self.call.agent_b_id.as_deref() == Some(agent_id)
    }

    /// The open transfer, if any.
    pub fn open_transfer(&self) -> Option<&Transfer> {
        self.transfer.as_ref().filter(|t| !t.status.is_terminal())
    }

    /// The room (or conference) a party is placed in now, if any.
    pub fn room_of_party(&self, party: &Party) -> Option<String> {
        let p = self.placements.get(party)?;
        if p.space == Space::Consult && self.transfer.is_none() {
            return None;
        }
        let tx = Tx::new(self.clone(), 0);
        Some(tx.room_for(party, p.space))
    }

    /// The party a conference participant label (or LiveKit identity) names, if any.
    pub fn party_of(&self, identity: &str) -> Option<Party> {
        observe::party_of_identity(self, identity)
    }

    /// Applies one input at time `now`. Commands may be refused; observations never are
    /// (an irrelevant or stale one simply changes nothing).
    pub fn handle(&self, now: Millis, input: Input) -> Result<Step, Rejection> {
        let mut tx = Tx::new(self.clone(), now);
        match input {
            Input::Command(actor, cmd) => command::command(&mut tx, actor, cmd)?,
            Input::Observe(obs) => observe::observe(&mut tx, obs),
        }
        Ok(tx.finish())
    }
}

#[cfg(test)]
mod tests;
