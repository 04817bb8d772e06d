//! `/api/sip/trunks`: an organisation's outbound SIP trunks, created in (and deleted from)
//! LiveKit's SIP service. The SIP password goes to LiveKit only: it is neither stored nor
//! returned. LiveKit down → 503 and nothing stored; LiveKit refusing the trunk → 400 with
//! its reason; any other LiveKit failure → 502.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use livekit_api::services::{ServerError, ServiceError};

use super::keys::{list_scope, OrgQuery};
use super::{authenticate, check_id, ApiError, AppState, LateBody, Principal};
use crate::media::livekit::{LiveKitError, OutboundTrunkSpec, SipTransport};
use crate::model::new_id;
use crate::org::{NewTrunk, SipTrunk};
use crate::secret::Secret;

/// Routes of this resource.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/sip/trunks")
            .route(web::post().to(create))
            .route(web::get().to(list)),
    );
    cfg.service(
        web::resource("/api/sip/trunks/{trunkId}")
            .route(web::get().to(get))
            .route(web::delete().to(delete)),
    );
}

/// Maps a LiveKit failure: unreachable or overloaded → 503; a refusal of what we asked for
/// → 400 naming LiveKit's reason; anything else (credentials, internal errors) → 502.
fn livekit_error(operation: &str, e: LiveKitError) -> ApiError {
    tracing::warn!(error = %e, source = ?std::error::Error::source(&e), operation, "LiveKit SIP request failed");
    match &e {
        LiveKitError::Service {
            source: ServiceError::Twirp(ServerError::Twirp(code)),
            ..
        } => match code.code.as_str() {
            "unavailable" | "resource_exhausted" | "deadline_exceeded" => {
                ApiError::Unavailable(format!(
                    "LiveKit is unavailable ({}); nothing was changed",
                    code.code
                ))
            }
            "invalid_argument"
            | "malformed"
            | "out_of_range"
            | "failed_precondition"
            | "already_exists" => ApiError::BadRequest {
                code: "livekit_refused",
                message: format!("LiveKit refused to {operation}: {}", code.msg),
            },
            other => ApiError::BadGateway(format!(
                "LiveKit failed to {operation} ({other}); check the switchboard's LiveKit settings"
            )),
        },
        LiveKitError::Service {
            source: ServiceError::Twirp(ServerError::Request(_)),
            ..
        } => ApiError::Unavailable("LiveKit is unreachable; nothing was changed".into()),
        _ => ApiError::BadGateway(format!("LiveKit failed to {operation}")),
    }
}

fn transport(name: Option<&str>) -> SipTransport {
    match name {
        Some("udp") => SipTransport::Udp,
        Some("tcp") => SipTransport::Tcp,
        Some("tls") => SipTransport::Tls,
        _ => SipTransport::Auto,
    }
}

/// Loads a trunk the principal may see; 404 for another organisation's.
pub async fn visible_trunk(
    state: &AppState,
    who: &Principal,
    trunk_id: &str,
) -> Result<SipTrunk, ApiError> {
    who.require_org_or_admin()?;
    check_id("trunkId", trunk_id)?;
    state
        .store
        .get_sip_trunk(trunk_id)
        .await?
        .filter(|t| who.sees_org(&t.org_id))
        .ok_or_else(|| ApiError::not_found("sip trunk", trunk_id))
}

async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: LateBody,
) -> Result<HttpResponse, ApiError> {
    let who = authenticate(&req, &state)?;
    who.require_org_or_admin()?;
    let body: NewTrunk = body.parse()?;
    let org_id = who.owning_org(body.org_id.as_deref(), "trunks")?;
    body.validate()?;
    let transport_name = body.transport.clone().unwrap_or_else(|| "auto".into());
    let spec = OutboundTrunkSpec {
        name: body.name.clone(),
        address: body.address.clone(),
        numbers: body.numbers.clone(),
        auth_username: body.auth_username.clone(),
        auth_password: body.auth_password.clone().map(Secret::new),
        transport: transport(Some(&transport_name)),
    };
    let livekit_trunk_id = state
        .livekit
        .create_outbound_trunk(&spec)
        .await
        .map_err(|e| livekit_error("create the SIP trunk", e))?;
    let trunk = SipTrunk {
        trunk_id: new_id("trunk"),
        org_id,
        name: body.name,
        address: body.address,
        numbers: body.numbers,
        auth_username: body.auth_username,
        has_password: body.auth_password.is_some(),
        transport: transport_name,
        livekit_trunk_id,
        created_at: Utc::now(),
    };
    if let Err(e) = state.store.create_sip_trunk(&trunk).await {
        // Nothing stored: take the trunk back out of LiveKit so none is left behind.
        if let Err(undo) = state
            .livekit
            .delete_sip_trunk(&trunk.livekit_trunk_id)
            .await
        {
            tracing::error!(livekit_trunk_id = %trunk.livekit_trunk_id, error = %undo,
                "a SIP trunk created in LiveKit could not be stored nor deleted");
        }
        return Err(e.into());
    }
    Ok(HttpResponse::Created().json(trunk))
}

async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<OrgQuery>,
) -> Result<HttpResponse, ApiError> {
    let who = authenticate(&req, &state)?;
    let scope = list_scope(&who, &query)?;
    Ok(HttpResponse::Ok().json(state.store.list_sip_trunks(scope.as_deref()).await?))
}

async fn get(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let who = authenticate(&req, &state)?;
    Ok(HttpResponse::Ok().json(visible_trunk(&state, &who, &path).await?))
}

async fn delete(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let who = authenticate(&req, &state)?;
    let t = visible_trunk(&state, &who, &path).await?;
    // LiveKit first: if it is down, the trunk stays listed (and usable) here.
    state
        .livekit
        .delete_sip_trunk(&t.livekit_trunk_id)
        .await
        .map_err(|e| livekit_error("delete the SIP trunk", e))?;
    if !state.store.delete_sip_trunk(&t.trunk_id).await? {
        return Err(ApiError::not_found("sip trunk", &t.trunk_id));
    }
    Ok(HttpResponse::NoContent().finish())
}
