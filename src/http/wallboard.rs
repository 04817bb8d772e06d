//! The supervisor wallboard's data: `GET /api/wallboard` (a snapshot of the live calls, open
//! transfers and agents with presence) and `GET /api/wallboard/events` (Server-Sent Events:
//! the snapshot, then every event as it is published, join tokens removed). Management only.

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::stream;
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;

use super::{principal, ApiError, AppState};
use crate::call::registry::PresenceList;
use crate::model::{Presence, TransferStatus};

/// How often an idle stream sends an SSE comment, so proxies keep it open.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// Routes of this module.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/api/wallboard").route(web::get().to(snapshot_route)));
    cfg.service(web::resource("/api/wallboard/events").route(web::get().to(events_route)));
}

/// A live call as the wallboard shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WallCall {
    /// The call.
    pub call_id: String,
    /// The caller's name.
    pub caller_name: String,
    /// Why they call.
    pub reason: String,
    /// `queued`, `ringing`, `active`, `on_hold`, `transferring`, ...
    pub status: String,
    /// Who has the caller.
    pub owner_id: Option<String>,
    /// Who it is offered to.
    pub offered_to: Option<String>,
    /// The open transfer.
    pub open_transfer_id: Option<String>,
    /// When the call was created (durations count from here).
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// An open transfer as the wallboard shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WallTransfer {
    /// The transfer.
    pub transfer_id: String,
    /// Its call.
    pub call_id: String,
    /// Agent A.
    pub from_agent_id: String,
    /// Agent B.
    pub to_agent_id: String,
    /// warm / cold / conference.
    pub mode: String,
    /// initiated / ringing / briefing.
    pub status: String,
    /// When it started.
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// An agent and its presence.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WallAgent {
    /// The agent.
    pub agent_id: String,
    /// Its name.
    pub name: String,
    /// `web` or `phone`.
    pub kind: String,
    /// offline / available / busy / away.
    pub presence: Presence,
}

/// Everything the wallboard shows.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// Calls that have not ended, oldest first.
    pub calls: Vec<WallCall>,
    /// Transfers that are open.
    pub transfers: Vec<WallTransfer>,
    /// Active agents.
    pub agents: Vec<WallAgent>,
    /// When the snapshot was taken.
    pub at: chrono::DateTime<chrono::Utc>,
}

fn wire<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// Reads the snapshot from the store and the registry.
pub async fn snapshot(state: &AppState) -> Result<Snapshot, ApiError> {
    let mut calls: Vec<WallCall> = state
        .store
        .list_unfinished_calls()
        .await?
        .into_iter()
        .filter(|s| !s.call.status.is_terminal())
        .map(|s| WallCall {
            status: wire(&s.call.status),
            call_id: s.call.call_id,
            caller_name: s.call.caller_name,
            reason: s.call.reason,
            owner_id: s.call.owner_id,
            offered_to: s.call.offered_to,
            open_transfer_id: s.call.open_transfer_id,
            created_at: s.call.created_at,
        })
        .collect();
    calls.sort_by_key(|c| c.created_at);
    let transfers = state
        .store
        .list_transfers(&[
            TransferStatus::Initiated,
            TransferStatus::Ringing,
            TransferStatus::Briefing,
        ])
        .await?
        .into_iter()
        .map(|t| WallTransfer {
            mode: wire(&t.mode),
            status: t.status.as_str().to_string(),
            transfer_id: t.transfer_id,
            call_id: t.call_id,
            from_agent_id: t.from_agent_id,
            to_agent_id: t.to_agent_id,
            created_at: t.created_at,
        })
        .collect();
    let presence = state.registry.send(PresenceList).await.unwrap_or_default();
    let agents = state
        .store
        .list_agents()
        .await?
        .into_iter()
        .filter(|a| a.active)
        .map(|a| WallAgent {
            presence: presence
                .get(&a.agent_id)
                .copied()
                .unwrap_or(Presence::Offline),
            kind: wire(&a.kind),
            agent_id: a.agent_id,
            name: a.name,
        })
        .collect();
    Ok(Snapshot {
        calls,
        transfers,
        agents,
        at: chrono::Utc::now(),
    })
}

async fn snapshot_route(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    principal(&req, &state)?.require_admin()?;
    Ok(HttpResponse::Ok().json(snapshot(&state).await?))
}

fn sse_snapshot(s: &Snapshot) -> web::Bytes {
    let json = serde_json::to_string(s).unwrap_or_else(|_| "{}".into());
    web::Bytes::from(format!("event: snapshot\ndata: {json}\n\n"))
}

/// What the stream does next.
enum Step {
    Start,
    Live,
}

async fn events_route(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    principal(&req, &state)?.require_admin()?;
    // Subscribe before reading the snapshot, so nothing falls between the two (an event
    // already in the snapshot may come again; applying it twice changes nothing).
    let rx = state.hub.monitor();
    let state = state.into_inner();
    let body = stream::unfold(
        (rx, state, Step::Start),
        |(mut rx, state, step)| async move {
            let out = match step {
                Step::Start => match snapshot(&state).await {
                    Ok(s) => sse_snapshot(&s),
                    Err(_) => return None,
                },
                Step::Live => match tokio::time::timeout(KEEPALIVE, rx.recv()).await {
                    Err(_) => web::Bytes::from_static(b": keepalive\n\n"),
                    Ok(Ok(text)) => web::Bytes::from(format!("data: {text}\n\n")),
                    Ok(Err(RecvError::Lagged(_))) => match snapshot(&state).await {
                        Ok(s) => sse_snapshot(&s),
                        Err(_) => return None,
                    },
                    Ok(Err(RecvError::Closed)) => return None,
                },
            };
            Some((Ok::<_, actix_web::Error>(out), (rx, state, Step::Live)))
        },
    );
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(body))
}
