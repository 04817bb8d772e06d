//! What comes out of the call machine: the [`Step`] of one transition, and the [`Effect`]s
//! the actor carries out after persisting it, grouped by the plane (or service) that carries
//! them out, so that each group has one executor.

use super::{CallMachine, Party};
use crate::model::{Event, Transfer};

/// Something the actor must carry out after the transition is persisted, by who carries it
/// out. The actor hands each group to one executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// A LiveKit room or participant (rooms and participants of the call's spaces).
    LiveKit(LiveKitEffect),
    /// A phone leg or a conference on Twilio.
    Twilio(TwilioEffect),
    /// An outbound call's assistant, SIP dial-out or recording (LiveKit's agent dispatch, SIP
    /// and egress services), answered back into the machine.
    Assistant(AssistantEffect),
    /// Routing (the registry that offers calls to agents).
    Routing(RoutingEffect),
    /// The end-of-call notice.
    Notice(NoticeEffect),
}

/// An effect on the LiveKit rooms of the call's spaces (best effort, not answered back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveKitEffect {
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
}

/// An effect on the Twilio plane: phone legs and conferences.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TwilioEffect {
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
}

/// An effect of an outbound assistant call: the assistant's dispatch, the SIP dial-out and
/// the recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssistantEffect {
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
}

/// An effect for routing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoutingEffect {
    /// The call waits for an agent: routing should offer it, avoiding `exclude` if it can.
    RequestAgent,
}

/// An effect for the end-of-call notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoticeEffect {
    /// Queue the end-of-call notice (webhook), then confirm with [`super::Observation::Notified`].
    NotifyEnded,
}

impl From<LiveKitEffect> for Effect {
    fn from(e: LiveKitEffect) -> Self {
        Effect::LiveKit(e)
    }
}

impl From<TwilioEffect> for Effect {
    fn from(e: TwilioEffect) -> Self {
        Effect::Twilio(e)
    }
}

impl From<AssistantEffect> for Effect {
    fn from(e: AssistantEffect) -> Self {
        Effect::Assistant(e)
    }
}

impl From<RoutingEffect> for Effect {
    fn from(e: RoutingEffect) -> Self {
        Effect::Routing(e)
    }
}

impl From<NoticeEffect> for Effect {
    fn from(e: NoticeEffect) -> Self {
        Effect::Notice(e)
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
