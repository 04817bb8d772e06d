//! `/api/calls`: create a call (with its rooms and the caller's tokens), read and correct it,
//! and the people's actions on it: accept, decline, hold, resume, hang up.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{
    authenticate, check_id, check_text, idempotency_key, principal, ApiError, AppState, LateBody,
    Principal,
};
use crate::call::machine::{Actor, CallMachine, Command, Input, Party, Plane, Space};
use crate::call::service::calls::NewWebCall;
use crate::call::service::IdempotencyKey;
use crate::model::{Call, PartyRef};

/// Routes of this resource.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/api/calls").route(web::post().to(create)));
    cfg.service(web::resource("/api/calls/agent/{agentId}").route(web::get().to(by_agent)));
    cfg.service(
        web::resource("/api/calls/{callId}")
            .route(web::get().to(get))
            .route(web::patch().to(patch)),
    );
    cfg.service(web::resource("/api/calls/{callId}/{action}").route(web::post().to(act)));
}

/// `POST /api/calls` body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewCall {
    /// The caller's participant identity; generated when absent.
    pub caller_id: Option<String>,
    /// The caller's name.
    #[serde(default)]
    pub caller_name: String,
    /// Why they call.
    #[serde(default)]
    pub reason: String,
    /// Offer the call to this agent only.
    pub agent_id: Option<String>,
    /// Free-form metadata (an object).
    pub metadata: Option<Value>,
}

/// `PATCH /api/calls/{callId}` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CallPatch {
    /// New caller name.
    pub caller_name: Option<String>,
    /// New reason.
    pub reason: Option<String>,
    /// New metadata (an object).
    pub metadata: Option<Value>,
}

/// Body of the agent actions when called with the management key.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActingAgent {
    /// The agent management acts as.
    pub agent_id: Option<String>,
    /// For `mute` and `unmute`: `caller` (the default) or an agent id.
    pub party: Option<String>,
}

/// Where a party of the call is now.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PartyView {
    /// `caller` or the agent's id.
    pub party: String,
    /// `main`, `hold` or `consult`.
    pub space: Space,
    /// The LiveKit room or Twilio conference.
    pub room: String,
    /// `livekit` or `twilio`.
    pub plane: Plane,
    /// Whether arrival was confirmed.
    pub confirmed: bool,
}

/// A call as returned by the API.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallView {
    /// The record.
    #[serde(flatten)]
    pub call: Call,
    /// The open transfer or the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transfer: Option<Value>,
    /// Where everyone is.
    pub parties: Vec<PartyView>,
    /// The last event's sequence number.
    pub seq: u64,
}

/// The view of a call for a principal (the caller never sees the summary text or note).
pub fn view(m: &CallMachine, who: &Principal) -> CallView {
    let transfer = m.transfer.as_ref().map(|t| {
        let mut v = serde_json::to_value(t).unwrap_or(Value::Null);
        if let (Principal::Caller(_), Value::Object(map)) = (who, &mut v) {
            map.remove("summaryText");
            map.remove("summaryId");
            map.remove("note");
            map.remove("transferRoom");
        }
        v
    });
    let parties = m
        .placements
        .iter()
        .map(|(p, pl)| PartyView {
            party: match p {
                Party::Caller => "caller".into(),
                Party::Agent(a) => a.clone(),
            },
            space: pl.space,
            room: m.room_of_party(p).unwrap_or_default(),
            plane: pl.plane,
            confirmed: pl.confirmed,
        })
        .collect();
    CallView {
        call: m.call.clone(),
        transfer,
        parties,
        seq: m.seq,
    }
}

/// Whether the principal may see the call.
pub fn can_see(who: &Principal, m: &CallMachine) -> bool {
    match who {
        Principal::Admin => true,
        Principal::Agent(a) => m.involves_agent(a),
        Principal::Caller(c) => *c == m.call.call_id,
        // An organisation's key sees its organisation's calls (its assistants' calls).
        Principal::Org(k) => m.call.org_id.as_deref() == Some(k.org_id.as_str()),
    }
}

/// Loads a call the principal may see (404 otherwise, so ids are not probed).
pub async fn visible_call(
    state: &AppState,
    who: &Principal,
    call_id: &str,
) -> Result<std::sync::Arc<CallMachine>, ApiError> {
    let m = state.calls.machine(call_id).await?;
    if !can_see(who, &m) {
        return Err(match who {
            Principal::Caller(_) | Principal::Org(_) => ApiError::not_found("call", call_id),
            _ => ApiError::Forbidden(format!("you are not part of call {call_id}")),
        });
    }
    Ok(m)
}

/// The agent a request acts as: the token's agent, or the body's `agentId` for management.
pub fn acting_agent(who: &Principal, named: Option<&str>, field: &str) -> Result<String, ApiError> {
    match (who, named) {
        (Principal::Agent(a), Some(n)) if n != a => Err(ApiError::Forbidden(format!(
            "your token is for agent {a}, not {n}"
        ))),
        (Principal::Agent(a), _) => Ok(a.clone()),
        (Principal::Admin, Some(n)) => Ok(n.to_string()),
        (Principal::Admin, None) => Err(ApiError::invalid(
            field,
            "is required with the management key",
        )),
        (Principal::Caller(_), _) => Err(ApiError::Forbidden("callers cannot do this".into())),
        (Principal::Org(_), _) => Err(Principal::org_forbidden()),
    }
}

/// `POST /api/calls`: a web caller's call, with the caller's session token and the
/// credentials to join the main room.
async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: LateBody,
) -> Result<HttpResponse, ApiError> {
    if !state.config.public_calls {
        principal(&req, &state)?.require_admin()?;
    }
    let body: NewCall = body.parse_optional()?;
    let m = state
        .calls
        .create_web_call(NewWebCall {
            caller_id: body.caller_id,
            caller_name: body.caller_name,
            reason: body.reason,
            agent_id: body.agent_id,
            metadata: body.metadata,
        })
        .await?;
    let call_id = m.call.call_id.clone();
    let caller_token = state
        .keys
        .issue(PartyRef::Caller {
            call_id: call_id.clone(),
        })
        .map_err(|e| ApiError::Internal(Box::new(e)))?;
    let join =
        state
            .calls
            .join_credentials(&m, &Party::Caller, &m.call.caller_id, &m.call.caller_name)?;
    Ok(HttpResponse::Created().json(json!({
        "call": view(&m, &Principal::Caller(call_id)),
        "callerToken": caller_token.token,
        "callerTokenExpiresAt": caller_token.expires_at,
        "livekit": {
            "url": state.livekit.url(),
            "roomName": join.room,
            "token": join.token,
            // Acknowledge with this id over the WebSocket where LiveKit sends no webhooks.
            "moveId": join.move_id,
        },
    })))
}

async fn get(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let who = authenticate(&req, &state)?;
    let m = visible_call(&state, &who, &path).await?;
    Ok(HttpResponse::Ok().json(view(&m, &who)))
}

async fn patch(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: LateBody,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &state)?;
    let call_id = path.into_inner();
    let m = visible_call(&state, &who, &call_id).await?;
    let key = idempotency_key(&req, &who, body.raw())?;
    let body: CallPatch = body.parse()?;
    if let Some(n) = &body.caller_name {
        super::check_line("callerName", n, 0, 200)?;
    }
    if let Some(r) = &body.reason {
        check_text("reason", r, 0, 2000)?;
    }
    if let Some(md) = &body.metadata {
        if !md.is_object() {
            return Err(ApiError::invalid("metadata", "must be an object"));
        }
    }
    let actor = match &who {
        Principal::Admin => Actor::System,
        Principal::Agent(a) => Actor::Agent(a.clone()),
        Principal::Caller(_) => {
            return Err(ApiError::Forbidden("callers cannot change the call".into()))
        }
        Principal::Org(_) => return Err(Principal::org_forbidden()),
    };
    let _ = m;
    let cmd = Command::UpdateDetails {
        caller_name: body.caller_name,
        reason: body.reason,
        metadata: body.metadata,
    };
    let m = state
        .calls
        .execute(&call_id, Input::Command(actor, cmd), key)
        .await?;
    Ok(HttpResponse::Ok().json(view(&m, &who)))
}

async fn by_agent(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let agent_id = path.into_inner();
    match principal(&req, &state)? {
        Principal::Admin => {}
        Principal::Agent(a) if a == agent_id => {}
        _ => {
            return Err(ApiError::Forbidden(
                "agents may only list their own calls".into(),
            ))
        }
    }
    let calls = state.store.list_calls_by_agent(&agent_id).await?;
    Ok(HttpResponse::Ok().json(calls))
}

/// The agent a request acts as, checked to exist when management names it.
pub async fn resolve_agent(
    state: &AppState,
    who: &Principal,
    named: Option<&str>,
    field: &str,
) -> Result<String, ApiError> {
    let agent = acting_agent(who, named, field)?;
    if *who == Principal::Admin {
        check_id(field, &agent)?;
        if state.store.get_agent(&agent).await?.is_none() {
            return Err(ApiError::invalid(field, format!("no agent {agent}")));
        }
    }
    Ok(agent)
}

/// Runs an agent command on a call and answers with the call.
async fn agent_action(
    req: HttpRequest,
    state: web::Data<AppState>,
    call_id: String,
    named: Option<String>,
    cmd: Command,
    key: Option<IdempotencyKey>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &state)?;
    let agent = resolve_agent(&state, &who, named.as_deref(), "agentId").await?;
    let m = state
        .calls
        .execute(&call_id, Input::Command(Actor::Agent(agent), cmd), key)
        .await?;
    Ok(HttpResponse::Ok().json(view(&m, &who)))
}

/// `POST /api/calls/{callId}/{accept|decline|hold|resume|mute|unmute|hangup}`.
async fn act(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: LateBody,
) -> Result<HttpResponse, ApiError> {
    let (call_id, action) = path.into_inner();
    match action.as_str() {
        "accept" | "decline" | "hold" | "resume" | "mute" | "unmute" => {}
        "hangup" => return hangup(req, state, call_id).await,
        _ => return super::meta::not_found(req).await,
    }
    let who = principal(&req, &state)?;
    let key = idempotency_key(&req, &who, body.raw())?;
    let body: ActingAgent = body.parse_optional()?;
    let cmd = match action.as_str() {
        "accept" => Command::AcceptCall,
        "decline" => Command::DeclineCall,
        "hold" => Command::Hold,
        "resume" => Command::Resume,
        "mute" | "unmute" => {
            let party = match body.party.as_deref() {
                None | Some("caller") => Party::Caller,
                Some(agent) => {
                    check_id("party", agent)?;
                    Party::Agent(agent.to_string())
                }
            };
            Command::Mute {
                party,
                muted: action == "mute",
            }
        }
        _ => return super::meta::not_found(req).await,
    };
    if body.party.is_some() && !matches!(cmd, Command::Mute { .. }) {
        return Err(ApiError::invalid("party", "is only for mute and unmute"));
    }
    let named = body.agent_id;
    // With the management key and no agentId, hold, resume and mute act as the call's owner.
    let named = match (&cmd, named, who) {
        (Command::Hold | Command::Resume | Command::Mute { .. }, None, Principal::Admin) => {
            let owner = state.calls.machine(&call_id).await?.call.owner_id.clone();
            Some(owner.ok_or_else(|| ApiError::Conflict {
                code: "no_owner",
                message: format!("call {call_id} has no agent to hold or resume it"),
            })?)
        }
        (_, named, _) => named,
    };
    agent_action(req, state, call_id, named, cmd, key).await
}

async fn hangup(
    req: HttpRequest,
    state: web::Data<AppState>,
    call_id: String,
) -> Result<HttpResponse, ApiError> {
    let who = authenticate(&req, &state)?;
    let actor = match &who {
        Principal::Admin => Actor::System,
        Principal::Agent(a) => Actor::Agent(a.clone()),
        Principal::Caller(c) if *c == call_id => Actor::Caller,
        Principal::Caller(_) => return Err(ApiError::not_found("call", call_id)),
        // An organisation ends its own calls (as the switchboard would).
        Principal::Org(_) => {
            visible_call(&state, &who, &call_id).await?;
            Actor::System
        }
    };
    let m = state
        .calls
        .execute(
            &call_id,
            Input::Command(actor, Command::Hangup),
            idempotency_key(&req, &who, b"")?,
        )
        .await?;
    Ok(HttpResponse::Ok().json(view(&m, &who)))
}
