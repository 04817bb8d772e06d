//! `POST /api/calls/outbound`: an AI assistant calls a number through an organisation's SIP
//! trunk. The call is a normal call actor: the room is made, the assistant dispatched with
//! its prompt rendered from the call's metadata, the number dialled, and the status pushed
//! as it goes (`dialing`, `ringing`, `active`, `ended`, or `failed` with the SIP status).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{authenticate, idempotency_key, ApiError, AppState, LateBody};
use crate::call::service::outbound::NewOutbound;
use crate::model::Call;

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

async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: LateBody,
) -> Result<HttpResponse, ApiError> {
    let who = authenticate(&req, &state)?;
    who.require_org_or_admin()?;
    let key = idempotency_key(&req, &who, body.raw())?;
    let body: NewOutboundCall = body.parse()?;
    let placed = state
        .calls
        .place_outbound(NewOutbound {
            visible_org: who.org_id().map(str::to_string),
            assistant_id: body.assistant_id,
            trunk_id: body.trunk_id,
            to_number: body.to_number,
            from_number: body.from_number,
            metadata: body.metadata,
            record: body.record,
            idempotency_key: key,
        })
        .await?;
    let view = outbound_view(&placed.call);
    Ok(if placed.created {
        HttpResponse::Created().json(view)
    } else {
        HttpResponse::Ok().json(view)
    })
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
