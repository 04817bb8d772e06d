//! Outbound assistant calls: an organisation's AI assistant calls a number through one of its
//! SIP trunks. The call is an ordinary call actor: the room is made, the assistant
//! dispatched with its prompt rendered from the call's metadata, the number dialled.

use chrono::Utc;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::room_names;
use super::{check_id, CallService, ServiceError};
use crate::call::actor::CallError;
use crate::call::machine::OutboundPlan;
use crate::call::registry::CreateCall;
use crate::model::{new_id, Call, CallStatus, Channel, Direction, OutboundLeg};
use crate::org::TemplateError;
use crate::store::StoreError;

/// Largest metadata object accepted, serialised.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;

/// What outbound calls need of the configuration.
#[derive(Debug, Clone, Default)]
pub struct OutboundSettings {
    /// The LiveKit agent name dispatched into an outbound call's room.
    pub agent_name: String,
    /// Whether recordings are configured (a call asking to be recorded is refused without).
    pub recording_configured: bool,
}

/// An outbound call to place.
#[derive(Debug, Clone)]
pub struct NewOutbound {
    /// The organisation whose records the asker sees: `None` for the root key (every
    /// organisation's), an organisation key's own otherwise.
    pub visible_org: Option<String>,
    /// The assistant that talks.
    pub assistant_id: String,
    /// The trunk to dial through.
    pub trunk_id: String,
    /// The number to call (E.164).
    pub to_number: String,
    /// The trunk number shown to the callee (one of the trunk's numbers).
    pub from_number: Option<String>,
    /// Values for the `{{placeholders}}` of the assistant's prompt (a JSON object or null).
    pub metadata: Option<Value>,
    /// Record the call (default: the assistant's setting).
    pub record: Option<bool>,
    /// The request's `Idempotency-Key`: names one call per organisation; a reuse with
    /// another assistant, trunk, number or metadata is 422 `idempotency_key_reused`.
    pub idempotency_key: Option<super::IdempotencyKey>,
}

/// A placed outbound call.
#[derive(Debug, Clone)]
pub struct PlacedOutbound {
    /// The call record.
    pub call: Call,
    /// False when a retried request found the call its first attempt made.
    pub created: bool,
}

impl From<TemplateError> for ServiceError {
    fn from(e: TemplateError) -> Self {
        match e {
            TemplateError::Missing(keys) => ServiceError::Invalid {
                code: "missing_metadata",
                message: format!(
                    "metadata: lacks {} used by the assistant's prompt or start instruction",
                    keys.join(", ")
                ),
            },
            TemplateError::NotScalar(key) => ServiceError::Invalid {
                code: "invalid_metadata",
                message: format!("metadata: {key} must be text, a number or a boolean"),
            },
        }
    }
}

/// The call id of an outbound call: derived from the organisation and the request's
/// `Idempotency-Key` when there is one (a retried request finds the call it made instead of
/// dialling twice), random otherwise.
fn outbound_call_id(org_id: &str, key: Option<&str>) -> String {
    match key {
        Some(k) => {
            let digest = Sha256::digest(format!("{org_id}\n{k}").as_bytes());
            let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
            format!("call-out-{hex}")
        }
        None => new_id("call"),
    }
}

impl CallService {
    /// Places an outbound assistant call: checks the ids, the number and the metadata,
    /// finds the assistant and the trunk (another organisation's do not exist for the
    /// asker), renders the prompt (`missing_metadata` names every key it lacks), and creates
    /// the call actor, which dispatches the assistant and dials. A retried request with the
    /// same `Idempotency-Key` answers the call the first one made.
    pub async fn place_outbound(&self, req: NewOutbound) -> Result<PlacedOutbound, ServiceError> {
        check_id("assistantId", &req.assistant_id)?;
        check_id("trunkId", &req.trunk_id)?;
        if !crate::model::is_e164(&req.to_number) {
            return Err(ServiceError::invalid(
                "toNumber",
                "must be an E.164 number ('+' and 8 to 15 digits)",
            ));
        }
        let metadata = match req.metadata {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m,
            Some(_) => return Err(ServiceError::invalid("metadata", "must be an object")),
        };
        if serde_json::to_vec(&metadata).map_or(0, |v| v.len()) > MAX_METADATA_BYTES {
            return Err(ServiceError::invalid(
                "metadata",
                format!("must be at most {MAX_METADATA_BYTES} bytes as JSON"),
            ));
        }
        let sees = |org: &str| req.visible_org.as_deref().is_none_or(|own| own == org);
        let assistant = self
            .store
            .get_assistant(&req.assistant_id)
            .await?
            .filter(|a| sees(&a.org_id))
            .ok_or_else(|| {
                ServiceError::invalid("assistantId", format!("no assistant {}", req.assistant_id))
            })?;
        let trunk = self
            .store
            .get_sip_trunk(&req.trunk_id)
            .await?
            .filter(|t| sees(&t.org_id))
            .ok_or_else(|| {
                ServiceError::invalid("trunkId", format!("no trunk {}", req.trunk_id))
            })?;
        if trunk.org_id != assistant.org_id {
            return Err(ServiceError::invalid(
                "trunkId",
                "the trunk belongs to another organisation than the assistant",
            ));
        }
        if let Some(from) = &req.from_number {
            if !trunk.numbers.contains(from) {
                return Err(ServiceError::invalid(
                    "fromNumber",
                    format!("is not one of trunk {}'s numbers", trunk.trunk_id),
                ));
            }
        }
        let rendered = assistant.render(&metadata)?;
        let record = req.record.unwrap_or(assistant.record);
        if record && !self.outbound.recording_configured {
            return Err(ServiceError::Invalid {
                code: "recording_not_configured",
                message: "record: recordings are not configured (SWITCHBOARD_RECORDING_S3_*)"
                    .into(),
            });
        }
        let key = req.idempotency_key.map(|k| k.key);
        let call_id = outbound_call_id(&assistant.org_id, key.as_deref());
        if let Some(k) = &key {
            if let Some(existing) = self.store.get_call(&call_id).await? {
                let leg = existing.call.outbound.as_ref();
                let same = existing.call.assistant_id.as_deref()
                    == Some(assistant.assistant_id.as_str())
                    && leg.is_some_and(|l| {
                        l.trunk_id == trunk.trunk_id
                            && l.to_number == req.to_number
                            && l.from_number == req.from_number
                    })
                    && existing.call.metadata == Value::Object(metadata.clone());
                if !same {
                    return Err(ServiceError::key_reused(k));
                }
                // The same request again: the call it made, not a second dial.
                return Ok(PlacedOutbound {
                    call: existing.call,
                    created: false,
                });
            }
        }
        let (main_room, hold_room) = room_names(&call_id);
        let call = Call {
            call_id: call_id.clone(),
            caller_id: format!("callee-{}", &call_id[call_id.len().saturating_sub(12)..]),
            caller_name: metadata
                .get("name")
                .and_then(Value::as_str)
                .map(super::strip_hidden)
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect(),
            reason: String::new(),
            agent_a_id: None,
            agent_b_id: None,
            owner_id: None,
            offered_to: None,
            requested_agent_id: None,
            status: CallStatus::Dialing,
            main_room: main_room.clone(),
            hold_room,
            open_transfer_id: None,
            last_summary_id: None,
            end_reason: None,
            created_at: Utc::now(),
            end_at: None,
            metadata: Value::Object(metadata.clone()),
            channel: Channel::Sip,
            caller_number: Some(req.to_number.clone()),
            org_id: Some(assistant.org_id.clone()),
            direction: Direction::Outbound,
            assistant_id: Some(assistant.assistant_id.clone()),
            outbound: Some(OutboundLeg {
                trunk_id: trunk.trunk_id.clone(),
                livekit_trunk_id: trunk.livekit_trunk_id.clone(),
                to_number: req.to_number.clone(),
                from_number: req.from_number.clone(),
                sip_status: None,
                sip_reason: None,
                dispatch_id: None,
                assistant_identity: None,
                answered_at: None,
            }),
            recording: None,
        };
        let dispatch_metadata = json!({
            "callId": call_id,
            "room": main_room,
            "assistantId": assistant.assistant_id,
            "assistantName": assistant.name,
            "prompt": rendered.prompt,
            "startInstruction": rendered.start_instruction,
            "tts": assistant.tts,
            "metadata": metadata,
            "toNumber": req.to_number,
        })
        .to_string();
        let created = self
            .registry
            .send(CreateCall {
                call,
                caller_call_sid: None,
                outbound: Some(OutboundPlan {
                    agent_name: self.outbound.agent_name.clone(),
                    dispatch_metadata,
                    record,
                }),
            })
            .await
            .map_err(|_| ServiceError::shutting_down())?;
        match created {
            Ok(m) => {
                tracing::info!(%call_id, assistant_id = %assistant.assistant_id, trunk_id = %trunk.trunk_id, "outbound call created");
                Ok(PlacedOutbound {
                    call: m.call.clone(),
                    created: true,
                })
            }
            // Two requests with the same key at once: the other one made the call.
            Err(CallError::Storage(e))
                if key.is_some() && matches!(*e, StoreError::AlreadyExists { .. }) =>
            {
                let existing = self
                    .store
                    .get_call(&call_id)
                    .await?
                    .ok_or_else(|| ServiceError::not_found("call", &call_id))?;
                Ok(PlacedOutbound {
                    call: existing.call,
                    created: false,
                })
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::outbound_call_id;

    #[test]
    fn an_idempotency_key_names_one_call_per_organisation() {
        let a = outbound_call_id("org-a", Some("k1"));
        assert_eq!(a, outbound_call_id("org-a", Some("k1")));
        assert_ne!(a, outbound_call_id("org-b", Some("k1")));
        assert_ne!(a, outbound_call_id("org-a", Some("k2")));
        assert!(a.starts_with("call-out-"));
        assert_ne!(
            outbound_call_id("org-a", None),
            outbound_call_id("org-a", None)
        );
    }
}
