//! `POST /livekit/webhook`: LiveKit's signed room events, verified like LiveKit's own
//! `WebhookReceiver`, turned into observations of the call the room belongs to.

use actix_web::{web, HttpRequest, HttpResponse};

use super::{ApiError, AppState};
use crate::call::machine::{Input, Observation};

/// Routes of this module.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/livekit/webhook")
            .app_data(web::PayloadConfig::new(1024 * 1024))
            .route(web::post().to(receive)),
    );
}

/// The call a room belongs to: rooms of calls are named `<callId>--<space>`.
pub fn call_of_room(room: &str) -> Option<&str> {
    room.split_once("--")
        .map(|(call, _)| call)
        .filter(|c| !c.is_empty())
}

async fn receive(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            crate::metrics::metrics().webhook_verification_failed("livekit");
            ApiError::Forbidden("missing LiveKit webhook signature".into())
        })?;
    let body = std::str::from_utf8(&body).map_err(|_| {
        crate::metrics::metrics().webhook_verification_failed("livekit");
        ApiError::Forbidden("webhook body is not UTF-8".into())
    })?;
    let activity = state.livekit.verify_webhook(body, auth).map_err(|e| {
        tracing::warn!(error = %e, "LiveKit webhook rejected");
        crate::metrics::metrics().webhook_verification_failed("livekit");
        ApiError::Forbidden("invalid LiveKit webhook signature".into())
    })?;
    let (Some(call_id), Some(identity)) = (call_of_room(&activity.room), activity.identity.clone())
    else {
        return Ok(HttpResponse::Ok().finish());
    };
    let obs = match activity.event.as_str() {
        "participant_joined" => Observation::Joined {
            identity,
            room: activity.room.clone(),
            at: activity.at_ms,
        },
        "participant_left" | "participant_connection_aborted" => Observation::Left {
            identity,
            room: activity.room.clone(),
            at: activity.at_ms,
        },
        _ => return Ok(HttpResponse::Ok().finish()),
    };
    match state.execute(call_id, Input::Observe(obs), None).await {
        Ok(_) | Err(ApiError::NotFound { .. }) | Err(ApiError::Conflict { .. }) => {
            Ok(HttpResponse::Ok().finish())
        }
        // Not processed: let LiveKit retry.
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::call_of_room;

    #[test]
    fn rooms_of_calls_name_their_call() {
        assert_eq!(call_of_room("call-1--main"), Some("call-1"));
        assert_eq!(call_of_room("call-1--consult-ab12"), Some("call-1"));
        assert_eq!(call_of_room("lobby"), None);
        assert_eq!(call_of_room("--main"), None);
    }
}
