//! `POST /livekit/webhook`: LiveKit's signed room events, verified like LiveKit's own
//! `WebhookReceiver`, turned into observations of the call the room belongs to.

use actix_web::{web, HttpRequest, HttpResponse};

use super::{ApiError, AppState};
use crate::call::machine::{Input, Observation};
use crate::call::service::ServiceError;
use crate::media::livekit::{EgressStatus, ParticipantKind, RoomActivity};
use crate::model::RecordingStatus;

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
    let Some(obs) = observation_of(&activity) else {
        return Ok(HttpResponse::Ok().finish());
    };
    let Some(call_id) = call_of_room(&activity.room) else {
        return Ok(HttpResponse::Ok().finish());
    };
    match state
        .calls
        .execute(call_id, Input::Observe(obs), None)
        .await
    {
        Ok(_) | Err(ServiceError::NotFound { .. }) | Err(ServiceError::Conflict { .. }) => {
            Ok(HttpResponse::Ok().finish())
        }
        // Not processed: let LiveKit retry.
        Err(e) => Err(e.into()),
    }
}

/// What a webhook tells the call machine, if anything: joins and leaves of its parties
/// (the assistant, a LiveKit agent, told apart by its kind), and recording progress.
pub fn observation_of(activity: &RoomActivity) -> Option<Observation> {
    if let Some(egress) = &activity.egress {
        let status = match egress.status {
            EgressStatus::Starting | EgressStatus::Active | EgressStatus::Ending => {
                RecordingStatus::Active
            }
            EgressStatus::Complete | EgressStatus::LimitReached => RecordingStatus::Complete,
            EgressStatus::Failed | EgressStatus::Aborted => RecordingStatus::Failed,
        };
        let error = match (egress.status, &egress.error) {
            (EgressStatus::Aborted, None) => Some("the recording was aborted".to_string()),
            (_, e) => e.clone(),
        };
        return Some(Observation::RecordingUpdated {
            egress_id: egress.egress_id.clone(),
            status,
            location: egress.location.clone(),
            error,
        });
    }
    let identity = activity.identity.clone()?;
    let agent = activity.participant_kind == Some(ParticipantKind::Agent);
    let room = activity.room.clone();
    let at = activity.at_ms;
    let session = activity.participant_sid.clone();
    match (activity.event.as_str(), agent) {
        ("participant_joined", true) => Some(Observation::AssistantJoined { identity }),
        ("participant_left" | "participant_connection_aborted", true) => {
            Some(Observation::AssistantLeft { identity })
        }
        ("participant_joined", false) => Some(Observation::Joined {
            identity,
            room,
            at,
            session,
        }),
        ("participant_left" | "participant_connection_aborted", false) => Some(Observation::Left {
            identity,
            room,
            at,
            session,
        }),
        _ => None,
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
