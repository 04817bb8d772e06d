//! `/api/transfers`: initiate a warm, cold or conference transfer (the classic REST layout's
//! response shape), and the target's and owner's answers: accept, decline, complete, cancel.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::calls::resolve_agent;
use super::{
    authenticate, check_id, check_text, idempotency_key, principal, ApiError, AppState, LateBody,
    Principal,
};
use crate::call::machine::Command;
use crate::call::service::transfers::{Initiator, NewTransfer};
use crate::model::{Transfer, TransferMode, TransferStatus};

/// Routes of this resource.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/api/transfers/initiate").route(web::post().to(initiate)));
    cfg.service(web::resource("/api/transfers").route(web::get().to(list)));
    cfg.service(web::resource("/api/transfers/{transferId}").route(web::get().to(get)));
    cfg.service(web::resource("/api/transfers/{transferId}/{action}").route(web::post().to(act)));
}

/// `POST /api/transfers/initiate` body (the classic layout's fields, plus mode and note).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitiateTransfer {
    /// The call.
    pub call_id: String,
    /// Agent A (the owner); taken from the session token when absent.
    pub agent_a_id: Option<String>,
    /// Agent B.
    pub agent_b_id: String,
    /// `warm` (default), `cold` or `conference`.
    #[serde(default)]
    pub mode: TransferMode,
    /// A note from A to B.
    pub note: Option<String>,
    /// Transcript text to add before summarising.
    pub transcript_text: Option<String>,
}

/// `GET /api/transfers` query.
#[derive(Debug, Deserialize)]
pub struct TransferQuery {
    /// `active` (initiated, ringing, briefing) or one status.
    pub status: Option<String>,
}

/// `POST /api/transfers/initiate`: checks the body and who asks, then starts the transfer
/// through the call service.
async fn initiate(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: LateBody,
) -> Result<HttpResponse, ApiError> {
    let who = authenticate(&req, &state)?;
    let key = idempotency_key(&req, &who, body.raw())?;
    let body: InitiateTransfer = body.parse()?;
    check_id("callId", &body.call_id)?;
    check_id("agentBId", &body.agent_b_id)?;
    let from = match &who {
        // An organisation's key speaks for its call's assistant: the hand-off to a human.
        Principal::Org(_) => Initiator::Assistant(
            assistant_owner(&state, &who, &body.call_id, body.agent_a_id.as_deref()).await?,
        ),
        Principal::Admin => Initiator::Management(
            resolve_agent(&state, &who, body.agent_a_id.as_deref(), "agentAId").await?,
        ),
        _ => Initiator::Agent(
            resolve_agent(&state, &who, body.agent_a_id.as_deref(), "agentAId").await?,
        ),
    };
    if let Some(n) = &body.note {
        check_text("note", n, 0, 2000)?;
    }
    if let Some(t) = &body.transcript_text {
        check_text("transcriptText", t, 0, 20_000)?;
    }
    let started = state
        .calls
        .initiate_transfer(NewTransfer {
            call_id: body.call_id,
            from,
            to_agent_id: body.agent_b_id,
            mode: body.mode,
            note: body.note,
            transcript_text: body.transcript_text,
            idempotency_key: key,
        })
        .await?;
    let t = started.transfer;
    Ok(HttpResponse::Created().json(json!({
        "transferId": t.transfer_id,
        "transferRoom": t.transfer_room,
        "tokens": { "tokenA": started.token_a, "tokenB": started.token_b },
        "summaryText": t.summary_text,
        "summaryId": t.summary_id,
        "status": t.status,
        "mode": t.mode,
        "callId": t.call_id,
        "fromAgentId": t.from_agent_id,
        "toAgentId": t.to_agent_id,
        "livekitUrl": state.livekit.url(),
        "transfer": t,
    })))
}

/// The assistant that owns `call_id`, for an organisation's key: the call must be the
/// organisation's (404 otherwise) and still be its assistant's (409 once a human has it).
async fn assistant_owner(
    state: &AppState,
    who: &Principal,
    call_id: &str,
    named: Option<&str>,
) -> Result<String, ApiError> {
    let m = super::calls::visible_call(state, who, call_id).await?;
    let assistant = m
        .call
        .assistant_id
        .as_deref()
        .map(crate::call::machine::assistant_party_id)
        .ok_or_else(|| ApiError::Conflict {
            code: "no_assistant",
            message: format!("call {call_id} has no assistant to hand it over"),
        })?;
    if named.is_some_and(|n| n != assistant) {
        return Err(ApiError::Forbidden(format!(
            "an organisation's key acts as the call's assistant ({assistant})"
        )));
    }
    if m.call.owner_id.as_deref() != Some(assistant.as_str()) {
        return Err(ApiError::Conflict {
            code: "not_assistant_call",
            message: format!("call {call_id} is no longer with its assistant"),
        });
    }
    Ok(assistant)
}

async fn load_visible(
    state: &AppState,
    who: &Principal,
    transfer_id: &str,
) -> Result<Transfer, ApiError> {
    let t = state
        .store
        .get_transfer(transfer_id)
        .await?
        .ok_or_else(|| ApiError::not_found("transfer", transfer_id))?;
    match who {
        Principal::Admin => Ok(t),
        Principal::Agent(a) if *a == t.from_agent_id || *a == t.to_agent_id => Ok(t),
        Principal::Agent(_) => Err(ApiError::Forbidden(format!(
            "you are not part of transfer {transfer_id}"
        ))),
        Principal::Caller(_) => Err(ApiError::not_found("transfer", transfer_id)),
        // An organisation sees the transfers of its own calls.
        Principal::Org(_) => {
            super::calls::visible_call(state, who, &t.call_id)
                .await
                .map_err(|_| ApiError::not_found("transfer", transfer_id))?;
            Ok(t)
        }
    }
}

async fn get(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &state)?;
    Ok(HttpResponse::Ok().json(load_visible(&state, &who, &path).await?))
}

async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<TransferQuery>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &state)?;
    let statuses: Vec<TransferStatus> = match query.status.as_deref() {
        None | Some("") => vec![],
        Some("active") => vec![
            TransferStatus::Initiated,
            TransferStatus::Ringing,
            TransferStatus::Briefing,
        ],
        Some(s) => vec![serde_json::from_value(json!(s)).map_err(|_| {
            ApiError::invalid(
                "status",
                "must be active, initiated, ringing, briefing, completed, cancelled, declined, timed_out, failed or abandoned",
            )
        })?],
    };
    let all = state.store.list_transfers(&statuses).await?;
    let visible: Vec<Transfer> = match &who {
        Principal::Admin => all,
        Principal::Agent(a) => all
            .into_iter()
            .filter(|t| t.from_agent_id == *a || t.to_agent_id == *a)
            .collect(),
        Principal::Caller(_) => {
            return Err(ApiError::Forbidden("callers cannot list transfers".into()))
        }
        Principal::Org(_) => return Err(Principal::org_forbidden()),
    };
    Ok(HttpResponse::Ok().json(visible))
}

/// Body of the answers when sent with the management key.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Answer {
    /// The agent management acts as (defaults to the transfer's target or owner).
    pub agent_id: Option<String>,
}

async fn answer(
    req: HttpRequest,
    state: web::Data<AppState>,
    transfer_id: String,
    body: LateBody,
    cmd: Command,
    by_target: bool,
) -> Result<HttpResponse, ApiError> {
    let who = authenticate(&req, &state)?;
    let key = idempotency_key(&req, &who, body.raw())?;
    let body: Answer = body.parse_optional()?;
    let t = load_visible(&state, &who, &transfer_id).await?;
    if let Principal::Org(_) = &who {
        // The assistant may cancel or complete its own hand-off; only B answers it.
        if by_target {
            return Err(ApiError::Forbidden(
                "only the transfer's target answers it".into(),
            ));
        }
    }
    let default_agent = if by_target {
        &t.to_agent_id
    } else {
        &t.from_agent_id
    };
    let named = body
        .agent_id
        .or_else(|| (who == Principal::Admin).then(|| default_agent.clone()));
    let agent = match &who {
        Principal::Org(_) => {
            if !t.from_agent_id.starts_with("assistant:") {
                return Err(ApiError::Forbidden(format!(
                    "transfer {transfer_id} belongs to agent {}, not to an assistant",
                    t.from_agent_id
                )));
            }
            if named.is_some_and(|n| n != t.from_agent_id) {
                return Err(ApiError::Forbidden(format!(
                    "an organisation's key acts as {}",
                    t.from_agent_id
                )));
            }
            t.from_agent_id.clone()
        }
        _ => resolve_agent(&state, &who, named.as_deref(), "agentId").await?,
    };
    let t = state.calls.answer_transfer(t, agent, cmd, key).await?;
    Ok(HttpResponse::Ok().json(t))
}

/// `POST /api/transfers/{transferId}/{accept|decline|complete|cancel}`.
async fn act(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: LateBody,
) -> Result<HttpResponse, ApiError> {
    let (transfer_id, action) = path.into_inner();
    let (cmd, by_target) = match action.as_str() {
        "accept" => (Command::AcceptTransfer, true),
        "decline" => (Command::DeclineTransfer, true),
        "complete" => (Command::CompleteTransfer, false),
        "cancel" => (Command::CancelTransfer, false),
        _ => return super::meta::not_found(req).await,
    };
    answer(req, state, transfer_id, body, cmd, by_target).await
}
