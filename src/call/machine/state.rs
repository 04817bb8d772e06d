//! The call machine's state: the call's parties, where each is placed and on which media
//! plane, its phone legs, its deadlines, and [`CallMachine`] that holds them all.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{Call, Millis, Transfer};

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
    /// The media session (LiveKit participant SID, Twilio CallSid) the party was last seen
    /// joining with here: a leave of another session is about an earlier stay, however close
    /// in time (LiveKit stamps its webhooks in whole seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
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
