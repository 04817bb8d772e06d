//! The transaction helper: [`Tx`] accumulates the output of one transition (the new state,
//! its events, whether the transfer changed, its effects) and holds the steps every command
//! and observation is made of: placing parties, releasing agents, queueing, ending the call.

use serde_json::{json, Value};

use super::input::conflict;
use super::{Actor, Rejection};
use super::{
    CallMachine, Effect, LiveKitEffect, Party, Placement, Plane, RoutingEffect, Space, Step,
    TimerKey, TwilioEffect, HELD_SUFFIX,
};
use crate::model::{
    from_millis, Audience, CallStatus, Channel, Event, Millis, Transfer, TransferStatus,
};

/// Accumulates the output of one transition.
pub(super) struct Tx {
    /// The state, changed as the transition goes.
    pub(super) m: CallMachine,
    /// The transition's time.
    pub(super) now: Millis,
    /// Events emitted so far, in order.
    pub(super) events: Vec<Event>,
    /// Whether the transfer record changed (and must be persisted).
    pub(super) transfer_changed: bool,
    /// Effects for the actor, in order.
    pub(super) effects: Vec<Effect>,
}

impl Tx {
    pub(super) fn new(m: CallMachine, now: Millis) -> Tx {
        Tx {
            m,
            now,
            events: vec![],
            transfer_changed: false,
            effects: vec![],
        }
    }

    pub(super) fn emit(&mut self, kind: &str, audience: Audience, data: Value) {
        self.m.seq += 1;
        self.events.push(Event {
            seq: self.m.seq,
            call_id: self.m.call.call_id.clone(),
            kind: kind.to_string(),
            at: from_millis(self.now),
            data,
            audience,
        });
    }

    pub(super) fn owner(&self) -> Option<String> {
        self.m.call.owner_id.clone()
    }

    pub(super) fn open_transfer(&self) -> Option<&Transfer> {
        self.m.transfer.as_ref().filter(|t| !t.status.is_terminal())
    }

    pub(super) fn room_of(&self, space: Space) -> String {
        match space {
            Space::Main => self.m.call.main_room.clone(),
            Space::Hold => self.m.call.hold_room.clone(),
            Space::Consult => self
                .m
                .transfer
                .as_ref()
                .map(|t| t.transfer_room.clone())
                .unwrap_or_default(),
        }
    }

    /// Every agent currently placed, plus the offered agent.
    pub(super) fn involved_agents(&self) -> Vec<String> {
        let mut agents: Vec<String> = self
            .m
            .placements
            .keys()
            .filter_map(|p| match p {
                Party::Agent(id) => Some(id.clone()),
                Party::Caller => None,
            })
            .collect();
        if let Some(offered) = &self.m.call.offered_to {
            if !agents.contains(offered) {
                agents.push(offered.clone());
            }
        }
        if let Some(t) = self.open_transfer() {
            if !agents.contains(&t.to_agent_id) {
                agents.push(t.to_agent_id.clone());
            }
        }
        agents
    }

    pub(super) fn everyone(&self) -> Audience {
        Audience {
            caller: true,
            agents: self.involved_agents(),
        }
    }

    pub(super) fn agents_only(&self) -> Audience {
        Audience {
            caller: false,
            agents: self.involved_agents(),
        }
    }

    pub(super) fn just(agents: &[&str]) -> Audience {
        let mut list: Vec<String> = Vec::new();
        for a in agents {
            if !list.iter().any(|x| x == a) {
                list.push(a.to_string());
            }
        }
        Audience {
            caller: false,
            agents: list,
        }
    }

    pub(super) fn is_phone(&self, party: &Party) -> bool {
        self.m.phones.contains_key(party)
    }

    pub(super) fn identity_of(&self, party: &Party) -> String {
        match party {
            Party::Caller => self.m.call.caller_id.clone(),
            Party::Agent(id) => id.clone(),
        }
    }

    pub(super) fn plane_of(&self, party: &Party, space: Space) -> Plane {
        match space {
            Space::Main => self.m.main_plane,
            Space::Hold if self.is_phone(party) => Plane::Twilio,
            Space::Hold => Plane::Livekit,
            Space::Consult => self.m.consult_plane,
        }
    }

    /// The room (or conference) in which a party placed in `space` is expected; a held phone
    /// caller stays in the main conference, held ([`HELD_SUFFIX`]).
    pub(super) fn room_for(&self, party: &Party, space: Space) -> String {
        if space == Space::Hold && self.is_phone(party) {
            return format!("{}{HELD_SUFFIX}", self.m.call.main_room);
        }
        self.room_of(space)
    }

    pub(super) fn conference_sid(&self, conference: &str) -> Option<String> {
        self.m.conferences.get(conference).cloned()
    }

    /// Sends a party to a space: a `participant.move` event to a web party (the actor adds
    /// the token), a Twilio effect for a phone party, and an arrival deadline.
    pub(super) fn place(&mut self, party: Party, space: Space) {
        if space == Space::Main && self.m.main_plane == Plane::Livekit && self.is_phone(&party) {
            // A phone agent joins the main space: it becomes a Twilio conference, and the web
            // parties already placed there follow as client legs.
            self.m.main_plane = Plane::Twilio;
            let web_in_main: Vec<Party> = self
                .m
                .placements
                .iter()
                .filter(|(p, pl)| pl.space == Space::Main && !self.is_phone(p) && **p != party)
                .map(|(p, _)| p.clone())
                .collect();
            for other in web_in_main {
                self.place(other, Space::Main);
            }
        }
        let plane = self.plane_of(&party, space);
        if let Some(p) = self.m.placements.get(&party) {
            if p.space == space && p.plane == plane {
                return;
            }
        }
        self.m.moves += 1;
        let move_id = format!("mv-{}", self.m.moves);
        let last_observed = self
            .m
            .placements
            .get(&party)
            .map(|p| p.last_observed)
            .unwrap_or(0);
        self.m.placements.insert(
            party.clone(),
            Placement {
                space,
                move_id: move_id.clone(),
                confirmed: false,
                retries: 0,
                last_observed,
                placed_at: self.now,
                plane,
                session: None,
            },
        );
        self.announce_move(&party);
    }

    pub(super) fn announce_move(&mut self, party: &Party) {
        let Some(p) = self.m.placements.get(party).cloned() else {
            return;
        };
        self.m.timers.insert(
            TimerKey::Arrival(party.clone()),
            self.now + self.m.timeouts.move_ms,
        );
        self.m.timers.remove(&TimerKey::Rejoin(party.clone()));
        let identity = self.identity_of(party);
        if let Some(leg) = self.m.phones.get(party).cloned() {
            self.move_phone(party, &leg, &p, identity);
            return;
        }
        let room = self.room_for(party, p.space);
        let audience = match party {
            Party::Caller => Audience {
                caller: true,
                agents: vec![],
            },
            Party::Agent(id) => Tx::just(&[id]),
        };
        self.emit(
            "participant.move",
            audience,
            json!({
                "moveId": p.move_id,
                "room": room,
                "space": p.space,
                "plane": p.plane.as_str(),
                "identity": identity,
            }),
        );
    }

    /// Undoes a placement on its media plane (leaving a LiveKit room or a conference).
    pub(super) fn unplace(&mut self, party: &Party, p: &Placement) {
        let identity = self.identity_of(party);
        match p.plane {
            Plane::Livekit => {
                self.effects
                    .push(Effect::LiveKit(LiveKitEffect::RemoveParticipant {
                        room: self.room_for(party, p.space),
                        identity,
                    }))
            }
            Plane::Twilio if !self.is_phone(party) => {
                let conference = self.room_of(p.space);
                self.effects
                    .push(Effect::Twilio(TwilioEffect::RemoveFromConference {
                        conference_sid: self.conference_sid(&conference),
                        conference,
                        label: identity,
                    }));
            }
            // A phone leg leaves when it is hung up (`drop_phone`).
            Plane::Twilio => {}
        }
    }

    /// Takes an agent out of the call: no placement, no deadlines, removed from its room or
    /// conference, its phone leg hung up.
    pub(super) fn release(&mut self, agent_id: &str, reason: &str) {
        let party = Party::Agent(agent_id.to_string());
        if let Some(p) = self.m.placements.remove(&party) {
            self.unplace(&party, &p);
        }
        self.drop_phone(&party);
        self.m.timers.remove(&TimerKey::Arrival(party.clone()));
        self.m.timers.remove(&TimerKey::Rejoin(party));
        self.emit(
            "participant.released",
            Tx::just(&[agent_id]),
            json!({ "agentId": agent_id, "reason": reason }),
        );
    }

    pub(super) fn set_status(&mut self, status: CallStatus) {
        self.m.call.status = status;
    }

    /// Puts the call back in the queue (caller stays where it is; hold room if it was there).
    pub(super) fn enqueue(&mut self, reason: &str) {
        self.m.call.owner_id = None;
        self.m.call.offered_to = None;
        self.m.timers.remove(&TimerKey::Offer);
        self.set_status(CallStatus::Queued);
        self.emit(
            "call.queued",
            Audience {
                caller: true,
                agents: vec![],
            },
            json!({ "reason": reason }),
        );
        self.effects
            .push(Effect::Routing(RoutingEffect::RequestAgent));
    }

    /// Ends the call for everyone.
    pub(super) fn end_call(&mut self, reason: &str) {
        self.finish_call(CallStatus::Ended, reason);
    }

    /// Ends the call for everyone with a terminal status (`ended`, or `failed` for a dial-out
    /// that never connected).
    pub(super) fn finish_call(&mut self, status: CallStatus, reason: &str) {
        // Everyone involved before the transfer closes, so a ringing target hears the end too.
        let audience = self.everyone();
        if self.open_transfer().is_some() {
            let status = if reason == "caller_hangup" || reason == "caller_lost" {
                TransferStatus::Abandoned
            } else {
                TransferStatus::Cancelled
            };
            let audience = self.everyone();
            self.transfer_to(status, Some(reason), audience.clone());
        }
        self.m.call.offered_to = None;
        self.set_status(status);
        self.m.call.end_at = Some(from_millis(self.now));
        self.m.call.end_reason = Some(reason.to_string());
        if status == CallStatus::Failed {
            let sip_status = self.m.call.outbound.as_ref().and_then(|l| l.sip_status);
            self.emit(
                "call.failed",
                audience,
                json!({ "reason": reason, "sipStatus": sip_status }),
            );
        } else {
            self.emit("call.ended", audience, json!({ "reason": reason }));
        }
        let placed: Vec<(Party, Placement)> =
            std::mem::take(&mut self.m.placements).into_iter().collect();
        for (party, p) in placed {
            self.unplace(&party, &p);
        }
        let phones: Vec<Party> = self.m.phones.keys().cloned().collect();
        for party in phones {
            self.drop_phone(&party);
        }
        self.m.timers.clear();
        if self.m.main_plane == Plane::Twilio {
            let conference = self.m.call.main_room.clone();
            self.effects
                .push(Effect::Twilio(TwilioEffect::EndConference {
                    conference_sid: self.conference_sid(&conference),
                    conference,
                }));
        }
        match self.m.call.channel {
            Channel::Web => {
                self.effects.push(Effect::LiveKit(LiveKitEffect::CloseRoom {
                    room: self.m.call.main_room.clone(),
                }));
                self.effects.push(Effect::LiveKit(LiveKitEffect::CloseRoom {
                    room: self.m.call.hold_room.clone(),
                }));
            }
            // Deleting the room hangs the SIP leg up and ends the room's egress.
            Channel::Sip => self.effects.push(Effect::LiveKit(LiveKitEffect::CloseRoom {
                room: self.m.call.main_room.clone(),
            })),
            Channel::Phone => {}
        }
        self.after_end();
    }

    /// A party is gone for good (disconnected, or never arrived).
    pub(super) fn party_gone(&mut self, party: &Party) {
        if self.m.call.status.is_terminal() {
            return;
        }
        match party {
            Party::Caller => self.end_call("caller_lost"),
            Party::Agent(agent) => self.agent_gone(agent),
        }
    }

    pub(super) fn agent_gone(&mut self, agent: &str) {
        let owner = self.owner();
        if self.m.call.offered_to.as_deref() == Some(agent)
            && self.m.call.status == CallStatus::Ringing
        {
            self.m.declined_by.push(agent.to_string());
            self.enqueue("agent_gone");
            return;
        }
        if let Some(t) = self.open_transfer().cloned() {
            if t.to_agent_id == agent {
                self.roll_back(TransferStatus::Failed, Some("target_disconnected"));
                return;
            }
            if t.from_agent_id == agent {
                if t.status == TransferStatus::Briefing {
                    // B already knows the case: the caller goes to B.
                    self.hand_over(Some("owner_disconnected"));
                } else {
                    self.release(agent, "disconnected");
                    self.m.call.owner_id = None;
                    self.roll_back(TransferStatus::Failed, Some("owner_disconnected"));
                }
                return;
            }
        }
        if owner.as_deref() == Some(agent) {
            self.release(agent, "disconnected");
            self.enqueue("owner_disconnected");
        }
    }

    pub(super) fn finish(self) -> Step {
        let transfers = if self.transfer_changed {
            self.m.transfer.clone().into_iter().collect()
        } else {
            vec![]
        };
        Step {
            machine: self.m,
            events: self.events,
            transfers,
            effects: self.effects,
        }
    }
}

/// The owner, when `actor` is the agent who owns the call.
pub(super) fn require_owner(tx: &Tx, actor: &Actor) -> Result<String, Rejection> {
    match (actor, tx.owner()) {
        (Actor::Agent(a), Some(owner)) if *a == owner => Ok(owner),
        (Actor::Agent(a), _) => Err(Rejection::Forbidden(format!(
            "agent {a} does not own call {}",
            tx.m.call.call_id
        ))),
        _ => Err(Rejection::Forbidden(
            "only the agent who owns the call may do this".into(),
        )),
    }
}

/// Refuses commands once the call has ended.
pub(super) fn require_live(tx: &Tx) -> Result<(), Rejection> {
    if tx.m.call.status.is_terminal() {
        return Err(conflict("call_ended", "the call has ended"));
    }
    Ok(())
}
