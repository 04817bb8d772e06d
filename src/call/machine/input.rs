//! What goes into the call machine: commands (and who issued them), observations, and why a
//! command may be refused.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Party, TimerKey};
use crate::model::{Millis, TransferMode};

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
        /// The media session that joined (LiveKit's participant SID, Twilio's CallSid of the
        /// leg), when the event names one: each join of an identity is a new session.
        session: Option<String>,
    },
    /// LiveKit says a participant left a room.
    Left {
        /// Participant identity.
        identity: String,
        /// Room name.
        room: String,
        /// When LiveKit saw it.
        at: Millis,
        /// The media session that left, when the event names one: the leave of another
        /// session than the one that confirmed the placement is about an earlier stay.
        session: Option<String>,
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

/// A refusal because of the state the call or transfer is in.
pub(super) fn conflict(code: &'static str, message: impl Into<String>) -> Rejection {
    Rejection::Conflict {
        code,
        message: message.into(),
    }
}
