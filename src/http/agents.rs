//! `/api/agents`: the agent directory, agents' own settings, and their session tokens.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::{check_id, principal, ApiError, AppState, LateBody, Principal};
use crate::call::registry::{AgentUpserted, PresenceList};
use crate::model::{new_id, Agent, AgentKind, AgentStatus, PartyRef, Presence};

/// Routes of this resource.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/agents")
            .route(web::post().to(create))
            .route(web::get().to(list)),
    );
    cfg.service(
        web::resource("/api/agents/{agentId}")
            .route(web::get().to(get))
            .route(web::patch().to(patch)),
    );
    cfg.service(web::resource("/api/agents/{agentId}/token").route(web::post().to(token)));
}

/// `POST /api/agents` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewAgent {
    /// Optional id; `agent-<uuid>` when absent.
    pub agent_id: Option<String>,
    /// Display name.
    pub name: String,
    /// `web` (default) or `phone`.
    #[serde(default)]
    pub kind: AgentKind,
    /// E.164 number, for phone agents.
    pub phone_number: Option<String>,
    /// Defaults to true.
    pub active: Option<bool>,
}

/// `PATCH /api/agents/{agentId}` body; every field optional.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentPatch {
    /// Display name.
    pub name: Option<String>,
    /// Active in the directory (management only).
    pub active: Option<bool>,
    /// `available` or `away`.
    pub status: Option<AgentStatus>,
    /// E.164 number (management only).
    pub phone_number: Option<String>,
}

/// An agent with its live presence.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentView {
    /// The stored record.
    #[serde(flatten)]
    pub agent: Agent,
    /// Offline / available / busy / away, now.
    pub presence: Presence,
}

fn check_e164(value: &str) -> Result<(), ApiError> {
    if crate::model::is_e164(value) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "phoneNumber",
            "must be an E.164 number such as +14155550100",
        ))
    }
}

async fn presence(state: &AppState) -> std::collections::HashMap<String, Presence> {
    state.registry.send(PresenceList).await.unwrap_or_default()
}

async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: LateBody,
) -> Result<HttpResponse, ApiError> {
    principal(&req, &state)?.require_admin()?;
    let body: NewAgent = body.parse()?;
    let agent_id = body.agent_id.unwrap_or_else(|| new_id("agent"));
    check_id("agentId", &agent_id)?;
    let name = body.name.trim().to_string();
    super::check_line("name", &name, 1, 200)?;
    if let Some(n) = &body.phone_number {
        check_e164(n)?;
    }
    if body.kind == AgentKind::Phone && body.phone_number.is_none() {
        return Err(ApiError::invalid(
            "phoneNumber",
            "is required for phone agents",
        ));
    }
    let agent = Agent {
        agent_id,
        name,
        active: body.active.unwrap_or(true),
        kind: body.kind,
        phone_number: body.phone_number,
        status: AgentStatus::Available,
        created_at: Utc::now(),
        version: 0,
    };
    let stored = state.store.create_agent(&agent).await?;
    state.registry.do_send(AgentUpserted {
        agent: stored.clone(),
    });
    Ok(HttpResponse::Created().json(AgentView {
        agent: stored,
        presence: Presence::Offline,
    }))
}

async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    match principal(&req, &state)? {
        Principal::Admin | Principal::Agent(_) => {}
        Principal::Caller(_) => {
            return Err(ApiError::Forbidden("callers cannot list agents".into()))
        }
        Principal::Org(_) => return Err(Principal::org_forbidden()),
    }
    let presence = presence(&state).await;
    let agents: Vec<AgentView> = state
        .store
        .list_agents()
        .await?
        .into_iter()
        .filter(|a| a.active)
        .map(|a| AgentView {
            presence: presence
                .get(&a.agent_id)
                .copied()
                .unwrap_or(Presence::Offline),
            agent: a,
        })
        .collect();
    Ok(HttpResponse::Ok().json(agents))
}

async fn get(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    if let Principal::Caller(_) = principal(&req, &state)? {
        return Err(ApiError::Forbidden("callers cannot read agents".into()));
    }
    let id = path.into_inner();
    let agent = state
        .store
        .get_agent(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("agent", &id))?;
    let presence = presence(&state).await;
    Ok(HttpResponse::Ok().json(AgentView {
        presence: presence.get(&id).copied().unwrap_or(Presence::Offline),
        agent,
    }))
}

/// Applies a patch to the stored agent, retrying once on a concurrent update.
pub async fn apply_patch(
    state: &AppState,
    id: &str,
    patch: &AgentPatch,
) -> Result<Agent, ApiError> {
    for _ in 0..3 {
        let mut agent = state
            .store
            .get_agent(id)
            .await?
            .ok_or_else(|| ApiError::not_found("agent", id))?;
        if let Some(n) = &patch.name {
            let n = n.trim();
            super::check_line("name", n, 1, 200)?;
            agent.name = n.to_string();
        }
        if let Some(a) = patch.active {
            agent.active = a;
        }
        if let Some(s) = patch.status {
            agent.status = s;
        }
        if let Some(p) = &patch.phone_number {
            check_e164(p)?;
            agent.phone_number = Some(p.clone());
        }
        match state.store.update_agent(&agent).await {
            Ok(stored) => {
                state.registry.do_send(AgentUpserted {
                    agent: stored.clone(),
                });
                if !stored.active {
                    // Its sockets close now; its REST requests are refused (principal.rs).
                    state.hub.disconnect_agent(id);
                }
                return Ok(stored);
            }
            Err(crate::store::StoreError::VersionConflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Conflict {
        code: "concurrent_update",
        message: format!("agent {id} keeps changing; retry"),
    })
}

async fn patch(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: LateBody,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let who = principal(&req, &state)?;
    let body: AgentPatch = body.parse()?;
    match who {
        Principal::Admin => {}
        Principal::Agent(a) if a == id => {
            if body.active.is_some() || body.phone_number.is_some() {
                return Err(ApiError::Forbidden(
                    "only management may change active or phoneNumber".into(),
                ));
            }
        }
        _ => {
            return Err(ApiError::Forbidden(
                "agents may only change themselves".into(),
            ))
        }
    }
    let agent = apply_patch(&state, &id, &body).await?;
    let presence = presence(&state).await;
    Ok(HttpResponse::Ok().json(AgentView {
        presence: presence.get(&id).copied().unwrap_or(Presence::Offline),
        agent,
    }))
}

async fn token(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    principal(&req, &state)?.require_admin()?;
    let id = path.into_inner();
    let agent = state
        .store
        .get_agent(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("agent", &id))?;
    if !agent.active {
        return Err(ApiError::Conflict {
            code: "agent_inactive",
            message: format!("agent {id} is not active"),
        });
    }
    let issued = state
        .keys
        .issue(PartyRef::Agent { agent_id: id })
        .map_err(|e| ApiError::Internal(Box::new(e)))?;
    Ok(HttpResponse::Ok().json(issued))
}
