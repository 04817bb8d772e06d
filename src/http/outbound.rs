//! `POST /api/calls/outbound`: an AI assistant calls a number through an organisation's SIP
//! trunk. The call is a normal call actor: the room is made, the assistant dispatched with
//! its prompt rendered from the call's metadata, the number dialled, and the status pushed
//! as it goes (`dialing`, `ringing`, `active`, `ended`, or `failed` with the SIP status).

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::calls::room_names;
use super::{authenticate, check_id, idempotency_key, ApiError, AppState, Body};
use crate::call::machine::OutboundPlan;
use crate::call::registry::CreateCall;
use crate::model::{new_id, Call, CallStatus, Channel, Direction, OutboundLeg};

/// Largest metadata object accepted, serialised.
const MAX_METADATA_BYTES: usize = 16 * 1024;

/// Routes of this resource (registered before `/api/calls/{callId}`).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/api/calls/outbound").route(web::post().to(create)));
}

/// `POST /api/calls/outbound` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewOutboundCall {
    /// The assistant that talks.
    pub assistant_id: String,
    /// The trunk to dial through.
    pub trunk_id: String,
    /// The number to call (E.164).
    pub to_number: String,
    /// The trunk number shown to the callee (one of the trunk's numbers).
    #[serde(default)]
    pub from_number: Option<String>,
    /// Values for the `{{placeholders}}` of the assistant's prompt and start instruction.
    #[serde(default)]
    pub metadata: Option<Value>,
    /// Record the call (default: the assistant's setting).
    #[serde(default)]
    pub record: Option<bool>,
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

async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: Body<NewOutboundCall>,
) -> Result<HttpResponse, ApiError> {
    let who = authenticate(&req, &state)?;
    who.require_org_or_admin()?;
    let body = body.into_inner();
    check_id("assistantId", &body.assistant_id)?;
    check_id("trunkId", &body.trunk_id)?;
    if !crate::model::is_e164(&body.to_number) {
        return Err(ApiError::invalid(
            "toNumber",
            "must be an E.164 number ('+' and 8 to 15 digits)",
        ));
    }
    let metadata = match body.metadata {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(ApiError::invalid("metadata", "must be an object")),
    };
    if serde_json::to_vec(&metadata).map_or(0, |v| v.len()) > MAX_METADATA_BYTES {
        return Err(ApiError::invalid(
            "metadata",
            format!("must be at most {MAX_METADATA_BYTES} bytes as JSON"),
        ));
    }
    // Another organisation's assistant or trunk does not exist for this key.
    let assistant = state
        .store
        .get_assistant(&body.assistant_id)
        .await?
        .filter(|a| who.sees_org(&a.org_id))
        .ok_or_else(|| {
            ApiError::invalid("assistantId", format!("no assistant {}", body.assistant_id))
        })?;
    let trunk = state
        .store
        .get_sip_trunk(&body.trunk_id)
        .await?
        .filter(|t| who.sees_org(&t.org_id))
        .ok_or_else(|| ApiError::invalid("trunkId", format!("no trunk {}", body.trunk_id)))?;
    if trunk.org_id != assistant.org_id {
        return Err(ApiError::invalid(
            "trunkId",
            "the trunk belongs to another organisation than the assistant",
        ));
    }
    if let Some(from) = &body.from_number {
        if !trunk.numbers.contains(from) {
            return Err(ApiError::invalid(
                "fromNumber",
                format!("is not one of trunk {}'s numbers", trunk.trunk_id),
            ));
        }
    }
    // 400 `missing_metadata` naming every key the prompt or start instruction lacks.
    let rendered = assistant.render(&metadata)?;
    let record = body.record.unwrap_or(assistant.record);
    if record && state.config.recording.is_none() {
        return Err(ApiError::BadRequest {
            code: "recording_not_configured",
            message: "record: recordings are not configured (SWITCHBOARD_RECORDING_S3_*)".into(),
        });
    }
    let key = idempotency_key(&req)?;
    let call_id = outbound_call_id(&assistant.org_id, key.as_deref());
    if key.is_some() {
        if let Some(existing) = state.store.get_call(&call_id).await? {
            // The same request again: the call it made, not a second dial.
            return Ok(HttpResponse::Ok().json(outbound_view(&existing.call)));
        }
    }
    let (main_room, hold_room) = room_names(&call_id);
    let call = Call {
        call_id: call_id.clone(),
        caller_id: format!("callee-{}", &call_id[call_id.len().saturating_sub(12)..]),
        caller_name: metadata
            .get("name")
            .and_then(Value::as_str)
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
        caller_number: Some(body.to_number.clone()),
        org_id: Some(assistant.org_id.clone()),
        direction: Direction::Outbound,
        assistant_id: Some(assistant.assistant_id.clone()),
        outbound: Some(OutboundLeg {
            trunk_id: trunk.trunk_id.clone(),
            livekit_trunk_id: trunk.livekit_trunk_id.clone(),
            to_number: body.to_number.clone(),
            from_number: body.from_number.clone(),
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
        "toNumber": body.to_number,
    })
    .to_string();
    let created = state
        .registry
        .send(CreateCall {
            call,
            caller_call_sid: None,
            outbound: Some(OutboundPlan {
                agent_name: state.config.assistant_agent_name.clone(),
                dispatch_metadata,
                record,
            }),
        })
        .await
        .map_err(|_| ApiError::Unavailable("the switchboard is shutting down".into()))?;
    let m = match created {
        Ok(m) => m,
        // Two requests with the same key at once: the other one made the call.
        Err(crate::call::actor::CallError::Storage(e))
            if key.is_some() && matches!(*e, crate::store::StoreError::AlreadyExists { .. }) =>
        {
            let existing = state
                .store
                .get_call(&call_id)
                .await?
                .ok_or_else(|| ApiError::not_found("call", &call_id))?;
            return Ok(HttpResponse::Ok().json(outbound_view(&existing.call)));
        }
        Err(e) => return Err(e.into()),
    };
    tracing::info!(call_id = %call_id, assistant_id = %assistant.assistant_id, trunk_id = %trunk.trunk_id, "outbound call created");
    Ok(HttpResponse::Created().json(outbound_view(&m.call)))
}

/// The answer to `POST /api/calls/outbound`.
fn outbound_view(call: &Call) -> Value {
    json!({
        "callId": call.call_id,
        "status": call.status.as_str(),
        "room": call.main_room,
        "assistantId": call.assistant_id,
        "trunkId": call.outbound.as_ref().map(|o| o.trunk_id.clone()),
        "toNumber": call.outbound.as_ref().map(|o| o.to_number.clone()),
        "orgId": call.org_id,
        "call": call,
    })
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
        assert_ne!(
            outbound_call_id("org-a", None),
            outbound_call_id("org-a", None)
        );
        assert!(a.starts_with("call-out-"));
    }
}
