//! New calls and getting into them: a web caller's call, a phone caller's call (Twilio's
//! voice webhook), and the credentials a placed party joins its room or conference with.

use std::sync::Arc;

use chrono::Utc;
use serde_json::{json, Value};

use super::{
    check_id, check_line, check_text, room_names, strip_hidden, CallService, ServiceError,
};
use crate::call::machine::{CallMachine, Party, Plane, Space};
use crate::call::registry::CreateCall;
use crate::media::livekit::ParticipantRole;
use crate::model::{new_id, Call, CallStatus, Channel};

/// A web caller's call to create.
#[derive(Debug, Clone, Default)]
pub struct NewWebCall {
    /// The caller's id (random when absent).
    pub caller_id: Option<String>,
    /// The caller's name (at most 200 characters).
    pub caller_name: String,
    /// Why they call (at most 2,000 characters).
    pub reason: String,
    /// An agent asked for by id; it must exist and be active.
    pub agent_id: Option<String>,
    /// Free-form metadata: a JSON object, or null.
    pub metadata: Option<Value>,
}

/// A phone caller Twilio tells us of (`POST /twilio/voice`).
#[derive(Debug, Clone)]
pub struct NewPhoneCall {
    /// Twilio's CallSid of the caller's leg (the call id is derived from it).
    pub call_sid: String,
    /// The caller's number (`From`).
    pub from: String,
    /// The number called (`To`).
    pub to: Option<String>,
    /// Twilio's `CallerName` (CNAM), when it has one.
    pub caller_name: Option<String>,
}

/// How a placed party joins where the machine put it.
#[derive(Debug, Clone)]
pub struct JoinCredentials {
    /// The media plane: a LiveKit room or a Twilio conference.
    pub plane: Plane,
    /// The room or conference name.
    pub room: String,
    /// The space it is (main, consult, hold).
    pub space: Space,
    /// The participant identity.
    pub identity: String,
    /// A LiveKit token, or a Twilio Voice SDK Access Token.
    pub token: String,
    /// The move to acknowledge over the WebSocket where media sends no webhooks.
    pub move_id: String,
}

/// The call id of a phone caller's call: derived from the CallSid, so Twilio's retry of
/// the voice webhook finds the same call.
pub fn phone_call_id(call_sid: &str) -> String {
    format!("call-{}", call_sid.to_ascii_lowercase())
}

impl CallService {
    /// Creates a web caller's call: queued, with its main and hold rooms; the registry
    /// routes it to an agent.
    pub async fn create_web_call(&self, new: NewWebCall) -> Result<Arc<CallMachine>, ServiceError> {
        let call_id = new_id("call");
        let caller_id = new.caller_id.unwrap_or_else(|| new_id("caller"));
        check_id("callerId", &caller_id)?;
        check_line("callerName", &new.caller_name, 0, 200)?;
        check_text("reason", &new.reason, 0, 2000)?;
        if let Some(a) = &new.agent_id {
            check_id("agentId", a)?;
            let agent = self
                .store
                .get_agent(a)
                .await?
                .ok_or_else(|| ServiceError::invalid("agentId", format!("no agent {a}")))?;
            if !agent.active {
                return Err(ServiceError::invalid(
                    "agentId",
                    format!("agent {a} is not active"),
                ));
            }
        }
        let metadata = match new.metadata {
            None | Some(Value::Null) => Value::Null,
            Some(v @ Value::Object(_)) => v,
            Some(_) => return Err(ServiceError::invalid("metadata", "must be an object")),
        };
        let mut call = queued_call(&call_id, caller_id, new.caller_name, Channel::Web);
        call.reason = new.reason;
        call.requested_agent_id = new.agent_id;
        call.metadata = metadata;
        self.create(CreateCall {
            call,
            caller_call_sid: None,
            outbound: None,
        })
        .await
    }

    /// The call of a phone caller, created on Twilio's first voice webhook and found again
    /// on its retries.
    pub async fn phone_call(&self, new: NewPhoneCall) -> Result<Arc<CallMachine>, ServiceError> {
        let call_id = phone_call_id(&new.call_sid);
        check_id("CallSid", &new.call_sid)
            .map_err(|_| ServiceError::invalid("CallSid", "is not a Twilio SID"))?;
        if let Ok(m) = self.machine(&call_id).await {
            return Ok(m);
        }
        // Twilio's CNAM is a provider's value: what a console must not show is dropped.
        let caller_name = new
            .caller_name
            .map(|n| strip_hidden(&n))
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| new.from.clone());
        let caller_id = format!("caller-{}", &call_id["call-".len()..]);
        let mut call = queued_call(&call_id, caller_id, caller_name, Channel::Phone);
        call.reason = "Phone call".into();
        call.metadata = json!({ "twilioCallSid": new.call_sid, "to": new.to });
        call.caller_number = Some(new.from);
        self.create(CreateCall {
            call,
            caller_call_sid: Some(new.call_sid),
            outbound: None,
        })
        .await
    }

    async fn create(&self, create: CreateCall) -> Result<Arc<CallMachine>, ServiceError> {
        Ok(self
            .registry
            .send(create)
            .await
            .map_err(|_| ServiceError::shutting_down())??)
    }

    /// The credentials `party` (shown as `identity`, named `name`) joins its place in call
    /// `m` with: a LiveKit token for a room, or a Voice SDK Access Token for a Twilio
    /// conference. The party must be placed; a caller never joins a consult room.
    pub fn join_credentials(
        &self,
        m: &CallMachine,
        party: &Party,
        identity: &str,
        name: &str,
    ) -> Result<JoinCredentials, ServiceError> {
        let placement = m
            .placements
            .get(party)
            .ok_or_else(|| ServiceError::Conflict {
                code: "not_placed",
                message: format!("{identity} is not in any room of call {}", m.call.call_id),
            })?;
        if *party == Party::Caller && placement.space == Space::Consult {
            return Err(ServiceError::Forbidden(
                "callers never join a consult room".into(),
            ));
        }
        let room = m
            .room_of_party(party)
            .ok_or_else(|| ServiceError::Internal("placed party without a room".into()))?;
        let token = match placement.plane {
            Plane::Twilio => {
                let bridge = self.twilio.as_ref().ok_or_else(|| {
                    ServiceError::Unavailable(
                        "the call is in a Twilio conference, but Twilio is not configured".into(),
                    )
                })?;
                let now = u64::try_from(Utc::now().timestamp()).unwrap_or_default();
                bridge
                    .client_token(identity, now)
                    .map_err(|e| ServiceError::Internal(Box::new(e)))?
            }
            Plane::Livekit => {
                let role = match party {
                    Party::Caller => ParticipantRole::Caller,
                    _ => ParticipantRole::Agent,
                };
                self.livekit
                    .participant_token(identity, name, &room, role)
                    .map_err(|e| ServiceError::Internal(Box::new(e)))?
            }
        };
        Ok(JoinCredentials {
            plane: placement.plane,
            room,
            space: placement.space,
            identity: identity.to_string(),
            token,
            move_id: placement.move_id.clone(),
        })
    }
}

/// A queued call record with its rooms, before the machine takes it.
fn queued_call(call_id: &str, caller_id: String, caller_name: String, channel: Channel) -> Call {
    let (main_room, hold_room) = room_names(call_id);
    Call {
        call_id: call_id.to_string(),
        caller_id,
        caller_name,
        reason: String::new(),
        agent_a_id: None,
        agent_b_id: None,
        owner_id: None,
        offered_to: None,
        requested_agent_id: None,
        status: CallStatus::Queued,
        main_room,
        hold_room,
        open_transfer_id: None,
        last_summary_id: None,
        end_reason: None,
        created_at: Utc::now(),
        end_at: None,
        metadata: Value::Null,
        channel,
        caller_number: None,
        org_id: None,
        direction: Default::default(),
        assistant_id: None,
        outbound: None,
        recording: None,
    }
}
