//! What the switchboard does for WebSocket sessions (authorise, presence, replay, client
//! messages), and `POST /api/tokens`: a LiveKit token for the room the asker is placed in.

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{check_id, principal, ApiError, AppState, LateBody, Principal};
use crate::call::machine::{Input, Observation, Party, Plane};
use crate::call::registry::{AgentConnected, AgentDisconnected, CallsOfAgent};
use crate::model::{Event, PartyRef};
use crate::ws::{ClientError, ClientMessage, SessionHandler, Since};

/// Routes of this module.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/api/tokens").route(web::post().to(livekit_token)));
}

/// `POST /api/tokens` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRequest {
    /// The call.
    pub call_id: String,
    /// The agent, with the management key.
    pub agent_id: Option<String>,
}

async fn livekit_token(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: LateBody,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &state)?;
    let body: TokenRequest = body.parse()?;
    check_id("callId", &body.call_id)?;
    let m = super::calls::visible_call(&state, &who, &body.call_id).await?;
    let (party, identity, name) = match (&who, &body.agent_id) {
        (Principal::Caller(_), _) => (
            Party::Caller,
            m.call.caller_id.clone(),
            m.call.caller_name.clone(),
        ),
        (Principal::Agent(a), _) | (Principal::Admin, Some(a)) => {
            (Party::Agent(a.clone()), a.clone(), a.clone())
        }
        (Principal::Org(_), _) => return Err(Principal::org_forbidden()),
        (Principal::Admin, None) => {
            return Err(ApiError::invalid(
                "agentId",
                "is required with the management key",
            ))
        }
    };
    let join = state.calls.join_credentials(&m, &party, &identity, &name)?;
    Ok(HttpResponse::Ok().json(match join.plane {
        // A conference: the browser joins it with the Twilio Voice SDK.
        Plane::Twilio => json!({
            "plane": "twilio",
            "roomName": join.room,
            "space": join.space,
            "identity": join.identity,
            "token": join.token,
            "moveId": join.move_id,
        }),
        Plane::Livekit => json!({
            "plane": "livekit",
            "url": state.livekit.url(),
            "roomName": join.room,
            "space": join.space,
            "identity": join.identity,
            "token": join.token,
            "moveId": join.move_id,
        }),
    }))
}

/// The switchboard's side of WebSocket sessions.
pub struct Sessions {
    state: AppState,
}

impl Sessions {
    /// Sessions over the app state.
    pub fn new(state: AppState) -> Arc<Self> {
        Arc::new(Sessions { state })
    }
}

fn to_client(e: impl Into<ApiError>) -> ClientError {
    let e: ApiError = e.into();
    let code = match &e {
        ApiError::NotFound { .. } => "not_found",
        ApiError::Forbidden(_) => "forbidden",
        ApiError::Conflict { code, .. } => code,
        ApiError::BadRequest { code, .. } => code,
        ApiError::Unprocessable { code, .. } => code,
        ApiError::Unauthorized(_) => "unauthorized",
        ApiError::Unavailable(_) => "unavailable",
        ApiError::BadGateway(_) => "bad_gateway",
        ApiError::Internal(_) => "internal",
    };
    ClientError::new(code, e.to_string())
}

#[async_trait]
impl SessionHandler for Sessions {
    async fn authorize(&self, party: &PartyRef) -> Result<(), ClientError> {
        match party {
            PartyRef::Caller { call_id } => {
                self.state.calls.machine(call_id).await.map_err(to_client)?;
            }
            PartyRef::Agent { agent_id } => {
                let agent = self
                    .state
                    .store
                    .get_agent(agent_id)
                    .await
                    .map_err(to_client)?
                    .ok_or_else(|| ClientError::not_found(format!("no agent {agent_id}")))?;
                if !agent.active {
                    return Err(ClientError::forbidden(format!(
                        "agent {agent_id} is not active"
                    )));
                }
            }
        }
        Ok(())
    }

    async fn connected(&self, party: &PartyRef) {
        if let PartyRef::Agent { agent_id } = party {
            self.state.registry.do_send(AgentConnected {
                agent_id: agent_id.clone(),
            });
        }
    }

    async fn disconnected(&self, party: &PartyRef) {
        if let PartyRef::Agent { agent_id } = party {
            self.state.registry.do_send(AgentDisconnected {
                agent_id: agent_id.clone(),
            });
        }
    }

    async fn replay(&self, party: &PartyRef, since: &Since) -> Result<Vec<Event>, ClientError> {
        let calls: Vec<String> = match (party, since) {
            (_, Since::None) => return Ok(vec![]),
            (PartyRef::Caller { call_id }, _) => vec![call_id.clone()],
            (PartyRef::Agent { .. }, Since::PerCall(map)) => map.keys().cloned().collect(),
            (PartyRef::Agent { agent_id }, Since::All(_)) => self
                .state
                .registry
                .send(CallsOfAgent {
                    agent_id: agent_id.clone(),
                })
                .await
                .unwrap_or_default(),
        };
        let mut out = Vec::new();
        for call_id in calls {
            let after = since.floor(&call_id);
            let events = self
                .state
                .store
                .events_since(&call_id, after)
                .await
                .map_err(to_client)?;
            out.extend(events.into_iter().filter(|e| e.audience.includes(party)));
        }
        Ok(out)
    }

    async fn message(&self, party: &PartyRef, msg: ClientMessage) -> Result<Value, ClientError> {
        // Every message of an agent is checked as its connection was: a deactivated agent
        // can do nothing more (its sockets are closed too, but a message may be under way).
        if let PartyRef::Agent { .. } = party {
            self.authorize(party).await?;
        }
        match msg {
            ClientMessage::Ack { call_id, move_id } => self.ack(party, call_id, move_id).await,
            ClientMessage::Transcript {
                call_id,
                text,
                source,
            } => self.transcript(party, call_id, text, source).await,
            ClientMessage::Presence { status } => self.presence(party, status).await,
        }
    }
}

impl Sessions {
    /// `ack`: the party confirms it arrived where a move sent it (no media webhooks).
    async fn ack(
        &self,
        party: &PartyRef,
        call_id: String,
        move_id: String,
    ) -> Result<Value, ClientError> {
        let who = match party {
            PartyRef::Caller { call_id: own } if *own == call_id => Party::Caller,
            PartyRef::Caller { .. } => {
                return Err(ClientError::not_found(format!("no call {call_id}")))
            }
            PartyRef::Agent { agent_id } => Party::Agent(agent_id.clone()),
        };
        let m = self
            .state
            .calls
            .execute(
                &call_id,
                Input::Observe(Observation::MoveAcked {
                    party: who.clone(),
                    move_id,
                }),
                None,
            )
            .await
            .map_err(to_client)?;
        let confirmed = m.placements.get(&who).is_some_and(|p| p.confirmed);
        Ok(json!({ "confirmed": confirmed }))
    }

    /// `transcript`: a chunk of the call, spoken by the party itself.
    async fn transcript(
        &self,
        party: &PartyRef,
        call_id: String,
        text: String,
        source: crate::model::TranscriptSource,
    ) -> Result<Value, ClientError> {
        let (who, speaker) = match party {
            PartyRef::Caller { call_id: own } => {
                (super::Principal::Caller(own.clone()), "caller".to_string())
            }
            PartyRef::Agent { agent_id } => {
                (super::Principal::Agent(agent_id.clone()), agent_id.clone())
            }
        };
        check_id("callId", &call_id).map_err(to_client)?;
        super::calls::visible_call(&self.state, &who, &call_id)
            .await
            .map_err(to_client)?;
        let t = self
            .state
            .calls
            .append_transcript(&call_id, speaker, text, source)
            .await
            .map_err(to_client)?;
        Ok(json!({ "transcriptId": t.transcript_id, "createdAt": t.created_at }))
    }

    /// `presence`: an agent sets its own status.
    async fn presence(
        &self,
        party: &PartyRef,
        status: crate::model::AgentStatus,
    ) -> Result<Value, ClientError> {
        let PartyRef::Agent { agent_id } = party else {
            return Err(ClientError::forbidden("only agents have a presence"));
        };
        let patch = super::agents::AgentPatch {
            name: None,
            active: None,
            status: Some(status),
            phone_number: None,
        };
        let agent = super::agents::apply_patch(&self.state, agent_id, &patch)
            .await
            .map_err(to_client)?;
        Ok(json!({ "status": agent.status }))
    }
}
