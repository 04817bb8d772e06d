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

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::model::{
    from_millis, Audience, Call, CallStatus, Channel, Event, Millis, Transfer, TransferMode,
    TransferStatus,
};

/// Deadlines and limits the machine applies, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Timeouts {
    /// How long an offered agent (call or transfer) has to accept.
    pub ring_ms: Millis,
    /// How long a moved party has to arrive in its new room.
    pub move_ms: Millis,
    /// How long a party that left its room has to come back before it counts as gone.
    pub rejoin_ms: Millis,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            ring_ms: 30_000,
            move_ms: 20_000,
            rejoin_ms: 15_000,
        }
    }
}

/// Which of the call's rooms a party is placed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Space {
    /// Where the caller talks to the owner.
    Main,
    /// Where the caller waits with music.
    Hold,
    /// The open transfer's private briefing room.
    Consult,
}

/// A party in the machine's bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Party {
    /// The caller.
    Caller,
    /// An agent, by id.
    Agent(String),
}

/// Where a party is expected, and whether its arrival was confirmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    /// The room the party was sent to.
    pub space: Space,
    /// Identifies the move; a client acknowledges arrival with it.
    pub move_id: String,
    /// Whether arrival was observed.
    pub confirmed: bool,
    /// Moves re-sent because the party did not arrive in time.
    pub retries: u8,
    /// Time of the newest LiveKit observation about this party (older ones are stale).
    pub last_observed: Millis,
    /// When the move was issued; a join LiveKit saw in an earlier second is not about it.
    #[serde(default)]
    pub placed_at: Millis,
    /// Which media plane realises the space for this party.
    #[serde(default)]
    pub plane: Plane,
}

/// The media plane that realises a space: a LiveKit room, or a Twilio conference (as soon as
/// a phone party must be in it; web parties then join it as Voice SDK client legs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Plane {
    /// A LiveKit room.
    #[default]
    Livekit,
    /// A Twilio conference with the same name.
    Twilio,
}

impl Plane {
    /// `livekit` or `twilio`.
    pub fn as_str(self) -> &'static str {
        match self {
            Plane::Livekit => "livekit",
            Plane::Twilio => "twilio",
        }
    }
}

/// Where a phone leg (a Twilio call of the caller or of a phone agent) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhoneState {
    /// Twilio is dialling it.
    Dialing,
    /// Twilio is executing our webhook's answer for it: that answer realises its next
    /// placement (no redirect needed).
    AtPrompt,
    /// In one of the call's conferences.
    Connected,
}

/// A party connected by phone rather than by browser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PhoneLeg {
    /// The E.164 number dialled (agents) or calling (the caller).
    pub number: String,
    /// Twilio's CallSid, once known.
    pub call_sid: Option<String>,
    /// Where the leg is.
    pub state: PhoneState,
}

/// Suffix of the pseudo-room in which a held phone caller is expected: the caller stays in
/// the main conference with `hold=true`, and a `participant-hold` callback confirms it.
pub const HELD_SUFFIX: &str = "#held";

/// A deadline the actor arms as a timer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", content = "party", rename_all = "snake_case")]
pub enum TimerKey {
    /// The offered agent must accept the call by then.
    Offer,
    /// The transfer target must answer by then.
    TransferRing,
    /// The party must arrive in the room it was moved to by then.
    Arrival(Party),
    /// The party that left its room must be back by then.
    Rejoin(Party),
    /// An outbound dial must have answered or failed by then.
    Dial,
    /// The end-of-call notice is due (after the recording settled), and asked again until
    /// the actor confirms it was queued.
    Finish,
}

/// Who issued a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Actor {
    /// The call's caller.
    Caller,
    /// An agent (a management caller acts as the agent it names).
    Agent(String),
    /// The switchboard itself (routing).
    System,
}

/// A request from a person or from routing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Routing offers the queued call to an agent.
    Offer {
        /// The agent.
        agent_id: String,
    },
    /// An agent takes the call (offered to them, or waiting in the queue).
    AcceptCall,
    /// The offered agent passes; the call goes back to the queue.
    DeclineCall,
    /// The owner puts the caller on hold.
    Hold,
    /// The owner takes the caller off hold.
    Resume,
    /// The caller or the owner ends the call.
    Hangup,
    /// The owner starts a transfer.
    InitiateTransfer {
        /// New transfer id.
        transfer_id: String,
        /// Agent B.
        to_agent_id: String,
        /// Warm, cold or conference.
        mode: TransferMode,
        /// The consult room's name.
        transfer_room: String,
        /// The summary handed to B.
        summary_id: Option<String>,
        /// Its text.
        summary_text: String,
        /// A note from A to B.
        note: Option<String>,
        /// B's phone number when B is a phone agent (dialled through Twilio).
        to_number: Option<String>,
        /// The summary's structured briefing for B (reason, customer details, what was tried
        /// and promised, next step, sentiment, urgency, script), as B may see it; pushed with
        /// `transfer.offered` so B needs no request. Null when there is none.
        #[serde(default)]
        briefing: Value,
    },
    /// The target accepts the transfer.
    AcceptTransfer,
    /// The target declines the transfer.
    DeclineTransfer,
    /// The owner hands the caller over (warm, conference) after the briefing.
    CompleteTransfer,
    /// The owner calls the transfer off.
    CancelTransfer,
    /// The owner mutes or unmutes a party: a phone leg through the conference participant
    /// API, a browser by telling it to mute its microphone.
    Mute {
        /// Who.
        party: Party,
        /// Mute (true) or unmute (false).
        muted: bool,
    },
    /// The owner (or management) corrects the caller's details or the call's metadata.
    UpdateDetails {
        /// New caller name.
        caller_name: Option<String>,
        /// New reason.
        reason: Option<String>,
        /// New metadata (replaces the old).
        metadata: Option<Value>,
    },
}

/// A fact reported by the media planes, the WebSocket layer or a timer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Observation {
    /// LiveKit says a participant joined a room (`at` from the webhook).
    Joined {
        /// Participant identity.
        identity: String,
        /// Room name.
        room: String,
        /// When LiveKit saw it.
        at: Millis,
    },
    /// LiveKit says a participant left a room.
    Left {
        /// Participant identity.
        identity: String,
        /// Room name.
        room: String,
        /// When LiveKit saw it.
        at: Millis,
    },
    /// The party's client says it arrived where a `participant.move` sent it.
    MoveAcked {
        /// Who acknowledges.
        party: Party,
        /// The move's id.
        move_id: String,
    },
    /// An agent's last WebSocket session closed and did not come back in time.
    AgentGone {
        /// The agent.
        agent_id: String,
    },
    /// A deadline passed.
    TimerFired {
        /// Which one.
        key: TimerKey,
    },
    /// A newer summary of the call was stored.
    SummaryStored {
        /// Its id.
        summary_id: String,
        /// Its text, pushed with `summary.updated` so agents need no request.
        #[serde(default)]
        summary_text: String,
        /// Its structured briefing (as agents may see it), pushed likewise.
        #[serde(default)]
        briefing: Value,
    },
    /// Twilio reported that one of the call's conferences started (its SID is needed for
    /// participant updates).
    ConferenceStarted {
        /// The conference's friendly name (the space's room name).
        conference: String,
        /// Its `CF…` SID.
        conference_sid: String,
    },
    /// Twilio created the call that dials a phone party.
    Dialed {
        /// The party dialled.
        party: Party,
        /// The new call's SID.
        call_sid: String,
        /// The transfer whose dial this answers, when known (a late answer to an older
        /// transfer's dial of the same party must not be taken for the newer one).
        #[serde(default)]
        transfer_id: Option<String>,
    },
    /// Twilio refused to dial a phone party.
    DialFailed {
        /// The party.
        party: Party,
        /// Why (Twilio's message).
        reason: String,
        /// The transfer whose dial failed, when known.
        #[serde(default)]
        transfer_id: Option<String>,
    },
    /// A dialled phone party answered and Twilio asks us what to play (the whisper).
    PhoneAnswered {
        /// The party.
        party: Party,
        /// The call's SID.
        call_sid: String,
    },
    /// A phone leg ended (hung up, busy, no answer, failed, cancelled).
    PhoneLegEnded {
        /// The party.
        party: Party,
        /// The call's SID, when Twilio told it (a different SID is an older leg: ignored).
        call_sid: Option<String>,
        /// Twilio's `CallStatus` (`completed`, `busy`, `no-answer`, `failed`, `canceled`) or
        /// `hung_up` / `no_input` / `declined` as seen in a conference or a prompt.
        status: String,
    },
    /// The callee of an outbound call answered.
    SipAnswered {
        /// LiveKit's SIP call id.
        sip_call_id: String,
    },
    /// The dial-out of an outbound call failed (busy, no answer, declined, trunk error).
    SipFailed {
        /// The SIP status, when the trunk gave one.
        sip_status: Option<u16>,
        /// The reason phrase or error.
        reason: String,
    },
    /// LiveKit accepted the assistant's dispatch.
    AssistantDispatched {
        /// The dispatch's id.
        dispatch_id: String,
    },
    /// LiveKit refused the assistant's dispatch.
    DispatchFailed {
        /// Why.
        reason: String,
    },
    /// The assistant's participant joined the main room.
    AssistantJoined {
        /// Its LiveKit identity.
        identity: String,
    },
    /// The assistant's participant left the main room.
    AssistantLeft {
        /// Its LiveKit identity.
        identity: String,
    },
    /// LiveKit started the call's recording.
    RecordingStarted {
        /// The egress id.
        egress_id: String,
    },
    /// The recording's egress changed (LiveKit's egress webhooks, or a refused start).
    RecordingUpdated {
        /// The egress id.
        egress_id: String,
        /// Its status now.
        status: crate::model::RecordingStatus,
        /// The uploaded file, when complete.
        location: Option<String>,
        /// Why it failed.
        error: Option<String>,
    },
    /// The recording could not be started.
    RecordingRefused {
        /// Why.
        error: String,
    },
    /// The end-of-call notice was queued durably (the actor's confirmation).
    Notified,
    /// A transcript chunk of the call was stored (told to its agents).
    TranscriptAppended {
        /// Its id.
        transcript_id: String,
        /// `caller` or an agent id.
        speaker: String,
        /// The text as agents are shown it (masked when redaction is on).
        text: Option<String>,
        /// Where it came from.
        source: crate::model::TranscriptSource,
    },
}

/// An input to the machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Input {
    /// A command and who issued it.
    Command(Actor, Command),
    /// An observation.
    Observe(Observation),
}

/// Something the actor must carry out after the transition is persisted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Make sure the LiveKit room exists (best effort).
    EnsureRoom {
        /// Room name.
        room: String,
    },
    /// Delete the LiveKit room (best effort).
    CloseRoom {
        /// Room name.
        room: String,
    },
    /// Remove a participant from a LiveKit room (best effort).
    RemoveParticipant {
        /// Room name.
        room: String,
        /// Participant identity.
        identity: String,
    },
    /// The call waits for an agent: routing should offer it, avoiding `exclude` if it can.
    RequestAgent,
    /// Dial a phone party through Twilio; the answer is the briefing prompt.
    Dial {
        /// Who.
        party: Party,
        /// Their E.164 number.
        number: String,
        /// The transfer the dial belongs to.
        transfer_id: String,
        /// How long to let it ring, in seconds.
        ring_secs: u32,
    },
    /// Move a phone leg into a conference (a Twilio call update with new TwiML).
    RedirectPhone {
        /// The leg's CallSid.
        call_sid: String,
        /// The conference's name.
        conference: String,
        /// The participant label (the party's identity).
        label: String,
    },
    /// Hold or resume a participant of a conference (phone caller's hold).
    HoldParticipant {
        /// The conference's name.
        conference: String,
        /// Its SID, when known.
        conference_sid: Option<String>,
        /// The participant label.
        label: String,
        /// Hold (true) or resume (false).
        hold: bool,
    },
    /// End a phone leg: cancel it while ringing, hang it up once answered.
    HangupPhone {
        /// The leg's CallSid.
        call_sid: String,
        /// Whether it may still be ringing.
        ringing: bool,
    },
    /// Remove a participant (a client leg) from a conference.
    RemoveFromConference {
        /// The conference's name.
        conference: String,
        /// Its SID, when known.
        conference_sid: Option<String>,
        /// The participant label.
        label: String,
    },
    /// Mute or unmute a conference participant (a phone leg).
    MuteParticipant {
        /// The conference's name.
        conference: String,
        /// Its SID, when known.
        conference_sid: Option<String>,
        /// The participant label.
        label: String,
        /// Mute (true) or unmute (false).
        muted: bool,
    },
    /// End a conference for everyone in it.
    EndConference {
        /// The conference's name.
        conference: String,
        /// Its SID, when known.
        conference_sid: Option<String>,
    },
    /// Dispatch the call's assistant (a LiveKit agent) to the room.
    DispatchAssistant {
        /// The room.
        room: String,
        /// The LiveKit agent name.
        agent_name: String,
        /// The dispatch metadata (rendered prompt and voice).
        metadata: String,
    },
    /// Dial the callee of an outbound call through a SIP trunk into the room.
    DialSip {
        /// The room.
        room: String,
        /// LiveKit's trunk id.
        livekit_trunk_id: String,
        /// The number.
        number: String,
        /// The callee's participant identity.
        identity: String,
        /// How long to let it ring, in seconds.
        ring_secs: u32,
    },
    /// Send the assistant away: delete its dispatch and remove its participant.
    DismissAssistant {
        /// The room.
        room: String,
        /// Its participant identity, when known.
        identity: Option<String>,
        /// Its dispatch, when known.
        dispatch_id: Option<String>,
    },
    /// Start recording the room (audio only).
    StartRecording {
        /// The room.
        room: String,
        /// The file name's stem.
        file_stem: String,
    },
    /// Stop the recording.
    StopRecording {
        /// The egress id.
        egress_id: String,
    },
    /// Queue the end-of-call notice (webhook), then confirm with [`Observation::Notified`].
    NotifyEnded,
}

/// Why a command was refused. Observations are never refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The actor may not do this to this call.
    #[error("{0}")]
    Forbidden(String),
    /// The call or transfer is in a state where this cannot happen.
    #[error("{message}")]
    Conflict {
        /// Stable code (`transfer_open`, `not_ringing`, ...).
        code: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The command's arguments are wrong.
    #[error("{0}")]
    Invalid(String),
}

fn conflict(code: &'static str, message: impl Into<String>) -> Rejection {
    Rejection::Conflict {
        code,
        message: message.into(),
    }
}

/// The result of one transition.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The state after the transition.
    pub machine: CallMachine,
    /// Events to persist and publish, in order.
    pub events: Vec<Event>,
    /// Transfers changed by the transition (to persist).
    pub transfers: Vec<Transfer>,
    /// Effects to carry out after persisting.
    pub effects: Vec<Effect>,
}

impl Step {
    /// Whether the transition changed anything that must be persisted.
    pub fn changed(&self, before: &CallMachine) -> bool {
        !self.events.is_empty() || !self.transfers.is_empty() || &self.machine != before
    }
}

/// The state of one call. Serialised whole into the store with the call record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallMachine {
    /// The public call record.
    pub call: Call,
    /// The open transfer, or the most recent one.
    pub transfer: Option<Transfer>,
    /// Where each party is expected.
    #[serde(with = "as_pairs")]
    pub placements: BTreeMap<Party, Placement>,
    /// Armed deadlines.
    #[serde(with = "as_pairs")]
    pub timers: BTreeMap<TimerKey, Millis>,
    /// Agents that passed on this call while it was queued; routing avoids them.
    pub declined_by: Vec<String>,
    /// The last event sequence number used.
    pub seq: u64,
    /// Counter for move ids.
    pub moves: u64,
    /// The machine's deadlines.
    pub timeouts: Timeouts,
    /// Parties connected by phone (everyone else is web).
    #[serde(default, with = "as_pairs")]
    pub phones: BTreeMap<Party, PhoneLeg>,
    /// The plane of the main space (Twilio from the start for a phone caller, and from the
    /// moment a phone agent joins it).
    #[serde(default)]
    pub main_plane: Plane,
    /// The plane of the open transfer's consult space (Twilio when the target is a phone).
    #[serde(default)]
    pub consult_plane: Plane,
    /// Conference SIDs by friendly name, as Twilio reported them.
    #[serde(default)]
    pub conferences: BTreeMap<String, String>,
    /// Whether the assistant of an outbound call is in the main room now.
    #[serde(default)]
    pub assistant_present: bool,
}

mod outbound;
pub use outbound::{assistant_party_id, dial_outcome, OutboundPlan};

/// Maps whose keys are not strings, stored in JSON as `[[key, value], ...]`.
mod as_pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        map: &BTreeMap<K, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.iter())
    }

    pub fn deserialize<'de, K, V, D>(d: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
    }
}

/// Accumulates the output of one transition.
struct Tx {
    m: CallMachine,
    now: Millis,
    events: Vec<Event>,
    transfer_changed: bool,
    effects: Vec<Effect>,
}

impl Tx {
    fn new(m: CallMachine, now: Millis) -> Tx {
        Tx {
            m,
            now,
            events: vec![],
            transfer_changed: false,
            effects: vec![],
        }
    }

    fn emit(&mut self, kind: &str, audience: Audience, data: Value) {
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

    fn owner(&self) -> Option<String> {
        self.m.call.owner_id.clone()
    }

    fn open_transfer(&self) -> Option<&Transfer> {
        self.m.transfer.as_ref().filter(|t| !t.status.is_terminal())
    }

    fn room_of(&self, space: Space) -> String {
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
    fn involved_agents(&self) -> Vec<String> {
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

    fn everyone(&self) -> Audience {
        Audience {
            caller: true,
            agents: self.involved_agents(),
        }
    }

    fn agents_only(&self) -> Audience {
        Audience {
            caller: false,
            agents: self.involved_agents(),
        }
    }

    fn just(agents: &[&str]) -> Audience {
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

    fn is_phone(&self, party: &Party) -> bool {
        self.m.phones.contains_key(party)
    }

    fn identity_of(&self, party: &Party) -> String {
        match party {
            Party::Caller => self.m.call.caller_id.clone(),
            Party::Agent(id) => id.clone(),
        }
    }

    fn plane_of(&self, party: &Party, space: Space) -> Plane {
        match space {
            Space::Main => self.m.main_plane,
            Space::Hold if self.is_phone(party) => Plane::Twilio,
            Space::Hold => Plane::Livekit,
            Space::Consult => self.m.consult_plane,
        }
    }

    /// The room (or conference) in which a party placed in `space` is expected; a held phone
    /// caller stays in the main conference, held ([`HELD_SUFFIX`]).
    fn room_for(&self, party: &Party, space: Space) -> String {
        if space == Space::Hold && self.is_phone(party) {
            return format!("{}{HELD_SUFFIX}", self.m.call.main_room);
        }
        self.room_of(space)
    }

    fn conference_sid(&self, conference: &str) -> Option<String> {
        self.m.conferences.get(conference).cloned()
    }

    /// Sends a party to a space: a `participant.move` event to a web party (the actor adds
    /// the token), a Twilio effect for a phone party, and an arrival deadline.
    fn place(&mut self, party: Party, space: Space) {
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
            },
        );
        self.announce_move(&party);
    }

    fn announce_move(&mut self, party: &Party) {
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

    /// Realises a phone party's placement: nothing when Twilio is waiting on our answer to
    /// its prompt (that answer joins it), hold/resume in the main conference for the caller,
    /// a redirect into the space's conference for an agent.
    fn move_phone(&mut self, party: &Party, leg: &PhoneLeg, p: &Placement, identity: String) {
        if leg.state == PhoneState::AtPrompt {
            if let Some(l) = self.m.phones.get_mut(party) {
                l.state = PhoneState::Connected;
            }
            return;
        }
        match party {
            Party::Caller => {
                let conference = self.m.call.main_room.clone();
                self.effects.push(Effect::HoldParticipant {
                    conference_sid: self.conference_sid(&conference),
                    conference,
                    label: identity,
                    hold: p.space == Space::Hold,
                });
            }
            Party::Agent(_) => {
                if let Some(call_sid) = leg.call_sid.clone() {
                    self.effects.push(Effect::RedirectPhone {
                        call_sid,
                        conference: self.room_of(p.space),
                        label: identity,
                    });
                }
            }
        }
    }

    /// Undoes a placement on its media plane (leaving a LiveKit room or a conference).
    fn unplace(&mut self, party: &Party, p: &Placement) {
        let identity = self.identity_of(party);
        match p.plane {
            Plane::Livekit => self.effects.push(Effect::RemoveParticipant {
                room: self.room_for(party, p.space),
                identity,
            }),
            Plane::Twilio if !self.is_phone(party) => {
                let conference = self.room_of(p.space);
                self.effects.push(Effect::RemoveFromConference {
                    conference_sid: self.conference_sid(&conference),
                    conference,
                    label: identity,
                });
            }
            // A phone leg leaves when it is hung up (`drop_phone`).
            Plane::Twilio => {}
        }
    }

    /// Forgets a party's phone leg and hangs it up (cancels it while it rings).
    fn drop_phone(&mut self, party: &Party) {
        if let Some(leg) = self.m.phones.remove(party) {
            if let Some(call_sid) = leg.call_sid {
                self.effects.push(Effect::HangupPhone {
                    call_sid,
                    ringing: leg.state == PhoneState::Dialing,
                });
            }
        }
    }

    /// Takes an agent out of the call: no placement, no deadlines, removed from its room or
    /// conference, its phone leg hung up.
    fn release(&mut self, agent_id: &str, reason: &str) {
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

    fn set_status(&mut self, status: CallStatus) {
        self.m.call.status = status;
    }

    /// Sets the open transfer's status and emits `transfer.<status>`.
    fn transfer_to(&mut self, status: TransferStatus, reason: Option<&str>, audience: Audience) {
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
                (Some(room), Plane::Livekit) => self.effects.push(Effect::CloseRoom { room }),
                (Some(conference), Plane::Twilio) => self.effects.push(Effect::EndConference {
                    conference_sid: self.conference_sid(&conference),
                    conference,
                }),
                (None, _) => {}
            }
        }
    }

    /// Ends an open transfer without handing over: the target is released and the caller
    /// goes back to the owner (or to the queue when there is no owner).
    fn roll_back(&mut self, status: TransferStatus, reason: Option<&str>) {
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

    /// Puts the call back in the queue (caller stays where it is; hold room if it was there).
    fn enqueue(&mut self, reason: &str) {
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
        self.effects.push(Effect::RequestAgent);
    }

    /// Ends the call for everyone.
    fn end_call(&mut self, reason: &str) {
        self.finish_call(CallStatus::Ended, reason);
    }

    /// Ends the call for everyone with a terminal status (`ended`, or `failed` for a dial-out
    /// that never connected).
    fn finish_call(&mut self, status: CallStatus, reason: &str) {
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
            self.effects.push(Effect::EndConference {
                conference_sid: self.conference_sid(&conference),
                conference,
            });
        }
        match self.m.call.channel {
            Channel::Web => {
                self.effects.push(Effect::CloseRoom {
                    room: self.m.call.main_room.clone(),
                });
                self.effects.push(Effect::CloseRoom {
                    room: self.m.call.hold_room.clone(),
                });
            }
            // Deleting the room hangs the SIP leg up and ends the room's egress.
            Channel::Sip => self.effects.push(Effect::CloseRoom {
                room: self.m.call.main_room.clone(),
            }),
            Channel::Phone => {}
        }
        self.after_end();
    }

    /// The caller is with the target now: B owns the call, A is released.
    fn hand_over(&mut self, reason: Option<&str>) {
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

    /// A party is gone for good (disconnected, or never arrived).
    fn party_gone(&mut self, party: &Party) {
        if self.m.call.status.is_terminal() {
            return;
        }
        match party {
            Party::Caller => self.end_call("caller_lost"),
            Party::Agent(agent) => self.agent_gone(agent),
        }
    }

    fn agent_gone(&mut self, agent: &str) {
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

    fn finish(self) -> Step {
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
            tx.effects.push(Effect::EnsureRoom {
                room: tx.m.call.main_room.clone(),
            });
            tx.effects.push(Effect::EnsureRoom {
                room: tx.m.call.hold_room.clone(),
            });
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
        tx.effects.push(Effect::RequestAgent);
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
        party_of_identity(self, identity)
    }

    /// Applies one input at time `now`. Commands may be refused; observations never are
    /// (an irrelevant or stale one simply changes nothing).
    pub fn handle(&self, now: Millis, input: Input) -> Result<Step, Rejection> {
        let mut tx = Tx::new(self.clone(), now);
        match input {
            Input::Command(actor, cmd) => command(&mut tx, actor, cmd)?,
            Input::Observe(obs) => observe(&mut tx, obs),
        }
        Ok(tx.finish())
    }
}

fn require_owner(tx: &Tx, actor: &Actor) -> Result<String, Rejection> {
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

fn require_live(tx: &Tx) -> Result<(), Rejection> {
    if tx.m.call.status.is_terminal() {
        return Err(conflict("call_ended", "the call has ended"));
    }
    Ok(())
}

fn command(tx: &mut Tx, actor: Actor, cmd: Command) -> Result<(), Rejection> {
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
        } => {
            let owner = require_owner(tx, &actor)?;
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
                tx.effects.push(Effect::Dial {
                    party: target,
                    number,
                    transfer_id: transfer_id.clone(),
                    ring_secs: u32::try_from(tx.m.timeouts.ring_ms / 1000)
                        .unwrap_or(u32::MAX)
                        .max(1),
                });
            }
            if mode == TransferMode::Warm {
                if tx.m.consult_plane == Plane::Livekit {
                    tx.effects.push(Effect::EnsureRoom {
                        room: transfer_room.clone(),
                    });
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
        }
        Command::AcceptTransfer => {
            let t = require_target(tx, &actor)?;
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
        }
        Command::DeclineTransfer => {
            let t = require_target(tx, &actor)?;
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
        }
        Command::CompleteTransfer => {
            let t = require_initiator(tx, &actor, "complete")?;
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
        }
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
                tx.effects.push(Effect::MuteParticipant {
                    conference_sid: tx.conference_sid(&conference),
                    conference,
                    label: identity.clone(),
                    muted,
                });
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
        Command::CancelTransfer => {
            let t = require_initiator(tx, &actor, "cancel")?;
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
        }
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

fn party_of_identity(m: &CallMachine, identity: &str) -> Option<Party> {
    if identity == m.call.caller_id {
        return Some(Party::Caller);
    }
    let p = Party::Agent(identity.to_string());
    (m.placements.contains_key(&p) || m.phones.contains_key(&p)).then_some(p)
}

fn observe(tx: &mut Tx, obs: Observation) {
    if let Observation::Dialed {
        party,
        call_sid,
        transfer_id,
    } = &obs
    {
        // Even after the call ended: a leg Twilio created too late must not stay up.
        return dialed(tx, party, call_sid, transfer_id.as_deref());
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
        } => {
            // A consult conference whose transfer already ended (Twilio told us its SID too
            // late for the end of the transfer to close it) is ended now.
            let finished_consult =
                tx.m.transfer
                    .as_ref()
                    .is_some_and(|t| t.transfer_room == conference && t.status.is_terminal());
            if finished_consult {
                tx.effects.push(Effect::EndConference {
                    conference: conference.clone(),
                    conference_sid: Some(conference_sid.clone()),
                });
            }
            tx.m.conferences.insert(conference, conference_sid);
        }
        Observation::PhoneAnswered { party, call_sid } => {
            if let Some(leg) = tx.m.phones.get_mut(&party) {
                if leg.call_sid.as_deref().is_none_or(|s| s == call_sid) {
                    leg.call_sid = Some(call_sid);
                    leg.state = PhoneState::AtPrompt;
                }
            }
        }
        Observation::DialFailed {
            party,
            reason: _,
            transfer_id,
        } => {
            let ringing_target = tx.open_transfer().is_some_and(|t| {
                t.status == TransferStatus::Ringing
                    && party == Party::Agent(t.to_agent_id.clone())
                    && transfer_id.as_deref().is_none_or(|id| id == t.transfer_id)
            });
            if ringing_target {
                tx.m.phones.remove(&party);
                tx.roll_back(TransferStatus::Failed, Some("dial_failed"));
            }
        }
        Observation::PhoneLegEnded {
            party,
            call_sid,
            status,
        } => phone_leg_ended(tx, party, call_sid, &status),
        Observation::Joined { identity, room, at } => {
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
        Observation::Left { identity, room, at } => {
            let Some(party) = party_of_identity(&tx.m, &identity) else {
                return;
            };
            let Some(p) = tx.m.placements.get(&party).cloned() else {
                return;
            };
            // A party cannot leave a room before it was sent there (see `Joined`).
            let before_move = at.saturating_add(999) < p.placed_at;
            if at < p.last_observed
                || before_move
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
        Observation::TimerFired { key } => {
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
    }
}

/// Twilio created the call dialling `party`: remember its SID, or hang it up when the party
/// is no longer wanted (the transfer ended before Twilio answered our request, or the answer
/// is about an older transfer's dial of the same party).
fn dialed(tx: &mut Tx, party: &Party, call_sid: &str, transfer_id: Option<&str>) {
    let current = tx.open_transfer().map(|t| t.transfer_id.clone());
    if transfer_id.is_some_and(|id| Some(id) != current.as_deref()) {
        let known = tx.m.phones.get(party).and_then(|l| l.call_sid.as_deref()) == Some(call_sid);
        if !known {
            tx.effects.push(Effect::HangupPhone {
                call_sid: call_sid.to_string(),
                ringing: true,
            });
        }
        return;
    }
    match tx.m.phones.get_mut(party) {
        Some(leg) if leg.call_sid.is_none() => leg.call_sid = Some(call_sid.to_string()),
        Some(_) => {}
        None => tx.effects.push(Effect::HangupPhone {
            call_sid: call_sid.to_string(),
            ringing: true,
        }),
    }
}

/// A phone leg ended: the caller hanging up ends the call; a transfer target that is busy,
/// does not answer, fails, declines at the prompt or hangs up rolls the transfer back; an
/// owner on the phone hanging up ends the call.
fn phone_leg_ended(tx: &mut Tx, party: Party, call_sid: Option<String>, status: &str) {
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

#[cfg(test)]
mod tests;
