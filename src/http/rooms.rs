//! `/api/rooms`: the LiveKit rooms the switchboard knows of (management only).

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use serde::Deserialize;

use super::{check_id, principal, ApiError, AppState, LateBody};
use crate::model::{new_id, Room};

/// Routes of this resource.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/api/rooms").route(web::post().to(create)));
    cfg.service(
        web::resource("/api/rooms/{roomId}")
            .route(web::get().to(get))
            .route(web::patch().to(patch)),
    );
    cfg.service(
        web::resource("/api/rooms/{roomId}/participants").route(web::get().to(participants)),
    );
}

/// `POST /api/rooms` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewRoom {
    /// The LiveKit room name; generated when absent.
    pub room_name: Option<String>,
    /// Who the room is for.
    #[serde(default)]
    pub owner_id: String,
}

/// `PATCH /api/rooms/{roomId}` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoomPatch {
    /// `open` or `closed`.
    pub status: Option<String>,
    /// New owner.
    pub owner_id: Option<String>,
}

async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: LateBody,
) -> Result<HttpResponse, ApiError> {
    principal(&req, &state)?.require_admin()?;
    let body: NewRoom = body.parse()?;
    let room_name = body.room_name.unwrap_or_else(|| new_id("adhoc"));
    check_id("roomName", &room_name)?;
    if !body.owner_id.is_empty() {
        check_id("ownerId", &body.owner_id)?;
    }
    if room_name.contains("--") {
        return Err(ApiError::invalid(
            "roomName",
            "'--' is reserved for the rooms of calls",
        ));
    }
    if state.store.get_room_by_name(&room_name).await?.is_some() {
        return Err(ApiError::Conflict {
            code: "already_exists",
            message: format!("room {room_name} already exists"),
        });
    }
    let room = Room {
        room_id: new_id("room"),
        room_name: room_name.clone(),
        owner_id: body.owner_id,
        call_id: None,
        kind: "adhoc".into(),
        status: "open".into(),
        created_at: Utc::now(),
    };
    state.store.put_room(&room).await?;
    let lk = state.livekit.clone();
    actix_web::rt::spawn(async move {
        if let Err(e) = lk.ensure_room(&room_name).await {
            tracing::warn!(room = %room_name, error = %e, "LiveKit room not created");
        }
    });
    Ok(HttpResponse::Created().json(room))
}

async fn load(state: &AppState, id: &str) -> Result<Room, ApiError> {
    state
        .store
        .get_room(id)
        .await?
        .ok_or_else(|| ApiError::not_found("room", id))
}

async fn get(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    principal(&req, &state)?.require_admin()?;
    Ok(HttpResponse::Ok().json(load(&state, &path).await?))
}

async fn patch(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: LateBody,
) -> Result<HttpResponse, ApiError> {
    principal(&req, &state)?.require_admin()?;
    let body: RoomPatch = body.parse()?;
    let mut room = load(&state, &path).await?;
    if let Some(s) = &body.status {
        if s != "open" && s != "closed" {
            return Err(ApiError::invalid("status", "must be open or closed"));
        }
        room.status = s.clone();
    }
    if let Some(o) = &body.owner_id {
        check_id("ownerId", o)?;
        room.owner_id = o.clone();
    }
    state.store.put_room(&room).await?;
    Ok(HttpResponse::Ok().json(room))
}

async fn participants(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    principal(&req, &state)?.require_admin()?;
    let room = load(&state, &path).await?;
    let identities = state
        .livekit
        .list_participants(&room.room_name)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "LiveKit ListParticipants failed");
            ApiError::Unavailable("LiveKit is unreachable".into())
        })?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "roomId": room.room_id,
        "roomName": room.room_name,
        "participants": identities,
    })))
}
