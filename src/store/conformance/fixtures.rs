//! Record builders with fresh unique ids, for the checks and for backend-specific tests.

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

use crate::model::{
    new_id, Agent, AgentKind, AgentStatus, Audience, Call, CallStatus, Event, Room, Summary,
    Transcript, TranscriptSource, Transfer, TransferMode, TransferStatus,
};
use crate::store::CallCommit;

/// A fixed instant (with sub-millisecond precision, which backends must keep) plus
/// `offset_ms` milliseconds.
pub fn at(offset_ms: i64) -> DateTime<Utc> {
    let base = DateTime::<Utc>::from_timestamp(1_750_000_000, 123_456_789).unwrap_or_default();
    base + Duration::milliseconds(offset_ms)
}

/// An active web agent with a fresh id (`agent-<label>-<uuid>`), version 0.
pub fn agent(label: &str) -> Agent {
    Agent {
        agent_id: new_id(&format!("agent-{label}")),
        name: format!("Agent {label}"),
        active: true,
        kind: AgentKind::Web,
        phone_number: None,
        status: AgentStatus::Available,
        created_at: at(0),
        version: 0,
    }
}

/// An active call owned by `owner` (also its `agentAId`), with a fresh id.
pub fn call(owner: &str) -> Call {
    let call_id = new_id("call");
    Call {
        caller_id: format!("caller-{call_id}"),
        caller_name: "Ada Caller".into(),
        reason: "billing question".into(),
        agent_a_id: Some(owner.to_owned()),
        agent_b_id: None,
        owner_id: Some(owner.to_owned()),
        offered_to: None,
        requested_agent_id: None,
        status: CallStatus::Active,
        main_room: format!("main-{call_id}"),
        hold_room: format!("hold-{call_id}"),
        open_transfer_id: None,
        last_summary_id: None,
        end_reason: None,
        created_at: at(0),
        end_at: None,
        metadata: Value::Null,
        channel: Default::default(),
        caller_number: None,
        org_id: None,
        direction: Default::default(),
        assistant_id: None,
        outbound: None,
        recording: None,
        call_id,
    }
}

/// A queued call that involves no agent, with a fresh id.
pub fn queued_call() -> Call {
    Call {
        agent_a_id: None,
        owner_id: None,
        status: CallStatus::Queued,
        ..call("nobody")
    }
}

/// A warm transfer of `call_id` from `from` to `to`, `initiated`, with a fresh id.
pub fn transfer(call_id: &str, from: &str, to: &str) -> Transfer {
    let transfer_id = new_id("xfer");
    Transfer {
        call_id: call_id.to_owned(),
        from_agent_id: from.to_owned(),
        to_agent_id: to.to_owned(),
        transfer_room: format!("consult-{transfer_id}"),
        summary_id: None,
        summary_text: String::new(),
        note: None,
        mode: TransferMode::Warm,
        status: TransferStatus::Initiated,
        reason: None,
        created_at: at(0),
        updated_at: at(0),
        ended_at: None,
        transfer_id,
    }
}

/// Event `seq` of `call_id`, addressed to the caller and one agent.
pub fn event(call_id: &str, seq: u64) -> Event {
    Event {
        seq,
        call_id: call_id.to_owned(),
        kind: "call.updated".into(),
        at: at(seq as i64),
        data: json!({"seq": seq, "nested": {"list": [1, 2, 3]}}),
        audience: Audience {
            caller: true,
            agents: vec![format!("agent-for-{seq}")],
        },
    }
}

/// A transcript chunk of `call_id` with a fresh id, stored at `at(offset_ms)`.
pub fn transcript(call_id: &str, offset_ms: i64) -> Transcript {
    Transcript {
        transcript_id: new_id("tx"),
        call_id: call_id.to_owned(),
        speaker: "caller".into(),
        text: format!("chunk at {offset_ms}"),
        source: TranscriptSource::Manual,
        created_at: at(offset_ms),
    }
}

/// A summary of `call_id` with a fresh id, stored at `at(offset_ms)`.
pub fn summary(call_id: &str, offset_ms: i64) -> Summary {
    Summary {
        summary_id: new_id("sum"),
        call_id: call_id.to_owned(),
        summary_text: format!("summary at {offset_ms}"),
        model: "offline-extractive".into(),
        created_at: at(offset_ms),
        ..Summary::default()
    }
}

/// An open main room with a fresh id and name.
pub fn room() -> Room {
    let room_id = new_id("room");
    Room {
        room_name: format!("name-{room_id}"),
        owner_id: new_id("agent"),
        call_id: Some(new_id("call")),
        kind: "main".into(),
        status: "open".into(),
        created_at: at(0),
        room_id,
    }
}

/// A commit that creates `call` with no transfers and no events.
pub fn create(call: &Call) -> CallCommit {
    CallCommit {
        call: call.clone(),
        state: json!({"phase": "created"}),
        expected_version: None,
        transfers: vec![],
        events: vec![],
        open: !call.status.is_terminal(),
    }
}

/// A commit that updates `call` from `version`, with no transfers and no events.
pub fn update(call: &Call, version: u64) -> CallCommit {
    CallCommit {
        call: call.clone(),
        state: json!({"phase": "updated", "from": version}),
        expected_version: Some(version),
        transfers: vec![],
        events: vec![],
        open: !call.status.is_terminal(),
    }
}
