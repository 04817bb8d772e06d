//! What comes out of the call machine: the [`Step`] of one transition, and the [`Effect`]s
//! the actor carries out after persisting it.

use super::{CallMachine, Party};
use crate::model::{Event, Transfer};

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
    /// Queue the end-of-call notice (webhook), then confirm with [`super::Observation::Notified`].
    NotifyEnded,
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
