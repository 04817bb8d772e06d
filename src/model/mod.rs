//! The records the switchboard keeps: agents, calls, transfers, transcripts, summaries, rooms
//! and call events, with the camelCase field names of the classic six-table layout; and, in
//! [`org`] and [`webhook`], the records of organisations and of end-of-call webhook deliveries.

pub mod org;
pub mod webhook;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Milliseconds since the Unix epoch; how time enters the pure call machine.
pub type Millis = i64;

/// Converts a wall-clock instant to [`Millis`].
pub fn to_millis(at: DateTime<Utc>) -> Millis {
    at.timestamp_millis()
}

/// Converts [`Millis`] back to a wall-clock instant (the epoch for out-of-range values).
pub fn from_millis(ms: Millis) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default()
}

/// Whether `value` is an E.164 phone number (`+` and 8 to 15 digits, not starting with 0).
pub fn is_e164(value: &str) -> bool {
    let digits = value.strip_prefix('+').unwrap_or("");
    (8..=15).contains(&digits.len())
        && digits.chars().all(|c| c.is_ascii_digit())
        && !digits.starts_with('0')
}

/// How an agent is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AgentKind {
    /// A browser in a LiveKit room, steered over the WebSocket.
    #[default]
    Web,
    /// A phone specialist reached over the PSTN (see the Twilio issue).
    Phone,
}

/// What an agent says about themself; combined with their connection into [`Presence`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    /// Ready to take calls.
    #[default]
    Available,
    /// Signed in but not taking new calls.
    Away,
}

/// An agent's effective presence, as pushed in `agent.presence`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    /// No WebSocket session is open.
    Offline,
    /// Connected, not away, and engaged in no call.
    Available,
    /// Connected and engaged in a call (owner, target or offered).
    Busy,
    /// Connected but set away.
    Away,
}

/// An agent of the directory (the classic `Agents` table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Agent {
    /// `agent-<uuid>` unless given at creation.
    pub agent_id: String,
    /// Display name.
    pub name: String,
    /// Inactive agents are hidden from `GET /api/agents` and are never offered calls.
    pub active: bool,
    /// How the agent is reached.
    #[serde(default)]
    pub kind: AgentKind,
    /// E.164 number of a phone agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    /// The agent's own availability setting.
    #[serde(default)]
    pub status: AgentStatus,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Optimistic-concurrency version, bumped by every update.
    #[serde(default)]
    pub version: u64,
}

/// The status of a call (the `status` attribute of the classic `Calls` table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallStatus {
    /// Waiting for an agent.
    Queued,
    /// Offered to an agent who has not accepted yet.
    Ringing,
    /// The caller talks to the owner.
    Active,
    /// The owner put the caller on hold.
    OnHold,
    /// A transfer is open.
    Transferring,
    /// Finished; terminal.
    Ended,
    /// An outbound call being dialled (the SIP request is on its way).
    Dialing,
    /// An outbound call that never connected (busy, no answer, declined, dial failure);
    /// terminal, with the SIP status in [`OutboundLeg::sip_status`].
    Failed,
}

impl CallStatus {
    /// The wire name (`on_hold`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Queued => "queued",
            CallStatus::Ringing => "ringing",
            CallStatus::Active => "active",
            CallStatus::OnHold => "on_hold",
            CallStatus::Transferring => "transferring",
            CallStatus::Ended => "ended",
            CallStatus::Dialing => "dialing",
            CallStatus::Failed => "failed",
        }
    }

    /// Whether the call is over (`ended` or `failed`): nothing changes it any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, CallStatus::Ended | CallStatus::Failed)
    }
}

/// A call (the classic `Calls` table plus the switchboard's own attributes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Call {
    /// `call-<uuid>`.
    pub call_id: String,
    /// The caller's participant identity.
    pub caller_id: String,
    /// The caller's name as given.
    #[serde(default)]
    pub caller_name: String,
    /// Why the caller is calling, as given.
    #[serde(default)]
    pub reason: String,
    /// The first agent who took the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_a_id: Option<String>,
    /// The most recent transfer target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_b_id: Option<String>,
    /// The agent who has the caller now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    /// The agent the call is offered to while `ringing`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offered_to: Option<String>,
    /// The agent the caller asked for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_agent_id: Option<String>,
    /// Current status.
    pub status: CallStatus,
    /// The LiveKit room where caller and owner talk.
    pub main_room: String,
    /// The LiveKit room where the caller waits with music.
    pub hold_room: String,
    /// The transfer currently open, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_transfer_id: Option<String>,
    /// The newest summary of this call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_summary_id: Option<String>,
    /// Why the call ended (`caller_hangup`, `agent_hangup`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// When the call ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_at: Option<DateTime<Utc>>,
    /// Free-form metadata given at creation or by `PATCH`.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub metadata: Value,
    /// How the caller is connected: `web` (browser, LiveKit) or `phone` (Twilio).
    #[serde(default)]
    pub channel: Channel,
    /// The caller's phone number, for a phone caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_number: Option<String>,
    /// The organisation the call belongs to (calls made with an organisation's API key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
    /// Whether the caller called in or the switchboard called out.
    #[serde(default)]
    pub direction: Direction,
    /// The AI assistant that runs the call (outbound assistant calls), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assistant_id: Option<String>,
    /// The dial-out of an outbound call: trunk, number and how it went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound: Option<OutboundLeg>,
    /// The call's recording, when one was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording: Option<Recording>,
}

/// Which way a call was set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The caller reached the switchboard (browser or phone).
    #[default]
    Inbound,
    /// The switchboard dialled the number (through a SIP trunk).
    Outbound,
}

/// The dial-out of an outbound call through a SIP trunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboundLeg {
    /// The switchboard trunk dialled through.
    pub trunk_id: String,
    /// LiveKit's id of that trunk (`ST_…`).
    pub livekit_trunk_id: String,
    /// The number dialled (E.164).
    pub to_number: String,
    /// The trunk number shown to the callee, if chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_number: Option<String>,
    /// The SIP status that ended a failed dial (486 busy, 480 no answer, 603 declined, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip_status: Option<u16>,
    /// The SIP reason phrase, or why the dial failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip_reason: Option<String>,
    /// LiveKit's agent dispatch that sent the assistant to the room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatch_id: Option<String>,
    /// The LiveKit identity of the assistant's participant, once it joined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assistant_identity: Option<String>,
    /// When the callee answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_at: Option<DateTime<Utc>>,
}

/// Where a call's recording is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordingStatus {
    /// Asked of LiveKit's egress, not started yet.
    Requested,
    /// Recording.
    Active,
    /// Finished and uploaded to `location`.
    Complete,
    /// Could not start, or failed while recording (`error` says why).
    Failed,
}

impl RecordingStatus {
    /// Whether the recording will not change any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, RecordingStatus::Complete | RecordingStatus::Failed)
    }
}

/// A call's audio recording (a LiveKit room-composite egress to S3-compatible storage).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recording {
    /// LiveKit's egress id, once it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_id: Option<String>,
    /// Where it is.
    pub status: RecordingStatus,
    /// The stored file (`s3://bucket/key` or the storage's URL), when complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How a caller reached the switchboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// A browser in a LiveKit room.
    #[default]
    Web,
    /// A phone call through Twilio, always inside a Twilio conference.
    Phone,
    /// A phone reached through a SIP trunk into a LiveKit room (outbound calls); it cannot
    /// be moved between rooms, so it stays in the main room.
    Sip,
}

/// How a transfer hands the caller over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TransferMode {
    /// Owner and target brief privately while the caller holds; then the caller is handed over.
    #[default]
    Warm,
    /// The caller goes straight to the target, who receives the summary.
    Cold,
    /// Caller, owner and target together; the owner leaves when they choose.
    Conference,
}

/// The status of a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferStatus {
    /// Created; the parties are being placed.
    Initiated,
    /// Offered to the target, who has not answered yet.
    Ringing,
    /// The target accepted and is with the owner (warm) or in the conference.
    Briefing,
    /// The caller is with the target; terminal.
    Completed,
    /// The owner cancelled; terminal.
    Cancelled,
    /// The target declined; terminal.
    Declined,
    /// The target did not answer in time; terminal.
    TimedOut,
    /// A party could not be placed or left; terminal.
    Failed,
    /// The caller hung up during the transfer; terminal.
    Abandoned,
}

impl TransferStatus {
    /// Whether no further change can happen.
    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            TransferStatus::Initiated | TransferStatus::Ringing | TransferStatus::Briefing
        )
    }

    /// The wire name (`timed_out`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            TransferStatus::Initiated => "initiated",
            TransferStatus::Ringing => "ringing",
            TransferStatus::Briefing => "briefing",
            TransferStatus::Completed => "completed",
            TransferStatus::Cancelled => "cancelled",
            TransferStatus::Declined => "declined",
            TransferStatus::TimedOut => "timed_out",
            TransferStatus::Failed => "failed",
            TransferStatus::Abandoned => "abandoned",
        }
    }
}

/// A transfer (the classic `Transfers` table plus mode, reason and timestamps).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transfer {
    /// `xfer-<uuid>`.
    pub transfer_id: String,
    /// The call being transferred.
    pub call_id: String,
    /// The owner who initiated it (Agent A).
    pub from_agent_id: String,
    /// The target (Agent B).
    pub to_agent_id: String,
    /// The consult (briefing) room.
    pub transfer_room: String,
    /// The summary handed to the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary_id: Option<String>,
    /// The summary text handed to the target.
    #[serde(default)]
    pub summary_text: String,
    /// A note from A to B.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Warm, cold or conference.
    pub mode: TransferMode,
    /// Current status.
    pub status: TransferStatus,
    /// Why it ended where that is not obvious from the status (`target_disconnected`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// When it reached a terminal status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
}

/// Where a transcript chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TranscriptSource {
    /// Typed or posted by a person or a tool.
    #[default]
    Manual,
    /// A Whisper transcription.
    Whisper,
    /// LiveKit's transcription.
    Livekit,
    /// Twilio's real-time transcription.
    Twilio,
}

/// A transcript chunk (the classic `Transcripts` table plus the speaker).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transcript {
    /// `tx-<uuid>`.
    pub transcript_id: String,
    /// The call it belongs to.
    pub call_id: String,
    /// `caller` or an agent id.
    #[serde(default)]
    pub speaker: String,
    /// The text.
    pub text: String,
    /// Where it came from.
    pub source: TranscriptSource,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
}

/// Who wrote a summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SummarySource {
    /// An LLM behind an OpenAI-compatible endpoint.
    Llm,
    /// The offline extractive summariser (the default, and the fallback).
    #[default]
    Offline,
    /// Written by a person (`POST /api/summaries` with `summaryText`).
    Human,
}

/// The caller's mood as the summary reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Sentiment {
    /// Pleased or calm and positive.
    Positive,
    /// Neither (or not known).
    #[default]
    Neutral,
    /// Unhappy, worried.
    Negative,
    /// Angry or upset: handle with care.
    Angry,
}

/// How soon the caller needs help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Urgency {
    /// Can wait.
    Low,
    /// Ordinary (or not known).
    #[default]
    Normal,
    /// Money, access or service at stake now.
    High,
}

/// Tokens an LLM used for one summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TokenUsage {
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Both.
    pub total_tokens: u64,
}

/// Reads a value stored either as itself or as JSON text (how the DynamoDB codec keeps lists
/// and objects), so both stores load the structured fields of a summary.
fn json_or_text<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let v = Value::deserialize(d)?;
    let v = match v {
        Value::String(s) => serde_json::from_str(&s).map_err(serde::de::Error::custom)?,
        other => other,
    };
    serde_json::from_value(v).map_err(serde::de::Error::custom)
}

/// A summary of a call (the classic `Summaries` table), with the structured briefing B sees.
/// Every field after `createdAt` has a default, so summaries stored before they existed load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// `sum-<uuid>`.
    pub summary_id: String,
    /// The call summarised.
    pub call_id: String,
    /// The summary: a short free text.
    pub summary_text: String,
    /// The model that wrote it (`offline-extractive`, `human`, or an LLM's name).
    pub model: String,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
    /// Who wrote it: `llm`, `offline` or `human`.
    #[serde(default)]
    pub source: SummarySource,
    /// 1 for the call's first summary, then one more for each new one.
    #[serde(default)]
    pub version: u64,
    /// How many transcript chunks it covers (the first that many of the call's).
    #[serde(default)]
    pub transcript_count: u64,
    /// Why the call was made.
    #[serde(default)]
    pub reason: String,
    /// Details the customer gave (name, account, order, ...), masked when redaction is on.
    #[serde(default, deserialize_with = "json_or_text")]
    pub customer_details: Vec<String>,
    /// What was tried already.
    #[serde(default, deserialize_with = "json_or_text")]
    pub tried: Vec<String>,
    /// What the customer was promised.
    #[serde(default, deserialize_with = "json_or_text")]
    pub promised: Vec<String>,
    /// The open question, or the next step for Agent B.
    #[serde(default)]
    pub next_step: String,
    /// The caller's mood.
    #[serde(default)]
    pub sentiment: Sentiment,
    /// How soon the caller needs help.
    #[serde(default)]
    pub urgency: Urgency,
    /// One short, speakable paragraph for a phone specialist (Twilio `<Say>`); empty on old
    /// summaries, where `summaryText` is spoken instead.
    #[serde(default)]
    pub whisper_text: String,
    /// A suggested briefing script for Agent A.
    #[serde(default)]
    pub script: String,
    /// Tokens the LLM used (LLM summaries only).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "json_or_text"
    )]
    pub usage: Option<TokenUsage>,
    /// Why the LLM was not used when an offline summary stands in for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
}

impl Summary {
    /// What a phone specialist hears: `whisperText`, or `summaryText` when it is empty.
    pub fn spoken_text(&self) -> &str {
        if self.whisper_text.trim().is_empty() {
            &self.summary_text
        } else {
            &self.whisper_text
        }
    }
}

/// A LiveKit room the switchboard knows of (the classic `Rooms` table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Room {
    /// `room-<uuid>`.
    pub room_id: String,
    /// The LiveKit room name.
    pub room_name: String,
    /// Who the room is for (an agent id, or a call id for a call's rooms).
    #[serde(default)]
    pub owner_id: String,
    /// The call it belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    /// `main`, `hold`, `consult` or `adhoc`.
    #[serde(default)]
    pub kind: String,
    /// `open` or `closed`.
    pub status: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// Who receives an event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Audience {
    /// Whether the call's caller receives it.
    #[serde(default)]
    pub caller: bool,
    /// The agents who receive it.
    #[serde(default)]
    pub agents: Vec<String>,
}

impl Audience {
    /// Whether the given party is in the audience.
    pub fn includes(&self, party: &PartyRef) -> bool {
        match party {
            PartyRef::Caller { .. } => self.caller,
            PartyRef::Agent { agent_id } => self.agents.iter().any(|a| a == agent_id),
        }
    }
}

/// A WebSocket client's identity, from its session token.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum PartyRef {
    /// The caller of one call; reaches that call only.
    Caller {
        /// The call.
        #[serde(rename = "callId")]
        call_id: String,
    },
    /// An agent.
    Agent {
        /// The agent.
        #[serde(rename = "agentId")]
        agent_id: String,
    },
}

/// An immutable fact about a call, numbered per call, stored, and pushed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Per-call sequence number, starting at 1 and only growing.
    pub seq: u64,
    /// The call.
    pub call_id: String,
    /// `transfer.offered`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Event-specific data.
    pub data: Value,
    /// Who receives it (stored, never sent).
    #[serde(default)]
    pub audience: Audience,
}

/// An event as sent over the WebSocket: `{seq, callId, type, at, data}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireEvent {
    /// Per-call sequence number (0 for events that belong to no call).
    pub seq: u64,
    /// The call, or `null` for agent-level events such as `agent.presence`.
    pub call_id: Option<String>,
    /// The event type.
    #[serde(rename = "type")]
    pub kind: String,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Event-specific data.
    pub data: Value,
}

impl From<&Event> for WireEvent {
    fn from(e: &Event) -> Self {
        WireEvent {
            seq: e.seq,
            call_id: Some(e.call_id.clone()),
            kind: e.kind.clone(),
            at: e.at,
            data: e.data.clone(),
        }
    }
}

/// A new id with a readable prefix: `call-…`, `xfer-…`, `agent-…`.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_stored_before_the_briefing_fields_still_load() {
        let old = serde_json::json!({
            "summaryId": "sum-1", "callId": "call-1", "summaryText": "Caller wants a refund.",
            "model": "offline-extractive", "createdAt": "2026-03-01T10:00:00Z"
        });
        let s: Summary = serde_json::from_value(old).unwrap();
        assert_eq!(s.source, SummarySource::Offline);
        assert_eq!((s.version, s.transcript_count), (0, 0));
        assert!(s.customer_details.is_empty() && s.usage.is_none());
        assert_eq!(
            s.spoken_text(),
            "Caller wants a refund.",
            "falls back to summaryText"
        );
    }

    #[test]
    fn summary_lists_load_from_json_text_too() {
        let stored = serde_json::json!({
            "summaryId": "sum-1", "callId": "call-1", "summaryText": "x", "model": "m",
            "createdAt": "2026-03-01T10:00:00Z", "tried": "[\"reset\"]",
            "usage": "{\"promptTokens\":1,\"completionTokens\":2,\"totalTokens\":3}",
            "whisperText": "Spoken."
        });
        let s: Summary = serde_json::from_value(stored).unwrap();
        assert_eq!(s.tried, ["reset"]);
        assert_eq!(s.usage.unwrap().total_tokens, 3);
        assert_eq!(s.spoken_text(), "Spoken.");
    }
}

/// Serialises a [`Secret`](crate::secret::Secret) as its text (for the store only; never sent
/// to clients).
mod secret_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::secret::Secret;

    pub fn serialize<S: Serializer>(s: &Secret, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(s.expose())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Secret, D::Error> {
        String::deserialize(de).map(Secret::new)
    }
}
