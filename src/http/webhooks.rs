//! End-of-call webhook deliveries over HTTP: `GET /api/calls/{callId}/webhooks` (a call's
//! deliveries with every attempt) and `POST /api/webhooks/{deliveryId}/redeliver` (a failed
//! delivery is tried again). Management only; signing secrets are never returned.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::{authenticate, check_id, principal, ApiError, AppState, Principal};
use crate::webhooks::{DeliveryAttempt, DeliveryStatus, WebhookDelivery, WebhookError};

/// Routes of this module.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/api/calls/{callId}/webhooks").route(web::get().to(list_route)));
    cfg.service(
        web::resource("/api/webhooks/{deliveryId}/redeliver")
            .route(web::post().to(redeliver_route)),
    );
}

/// A delivery as the API shows it (no secret).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    /// The delivery (also its `Idempotency-Key`).
    pub delivery_id: String,
    /// The call.
    pub call_id: String,
    /// The call's organisation.
    pub org_id: Option<String>,
    /// The receiver.
    pub url: String,
    /// `call.ended`.
    pub event: String,
    /// pending / delivered / failed.
    pub status: DeliveryStatus,
    /// Every attempt, oldest first.
    pub attempts: Vec<DeliveryAttempt>,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// When a 2xx was received.
    pub delivered_at: Option<DateTime<Utc>>,
    /// The body sent.
    pub payload: Value,
}

impl From<WebhookDelivery> for DeliveryView {
    fn from(d: WebhookDelivery) -> Self {
        DeliveryView {
            delivery_id: d.delivery_id,
            call_id: d.call_id,
            org_id: d.org_id,
            url: d.url,
            event: d.event,
            status: d.status,
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at,
            created_at: d.created_at,
            delivered_at: d.delivered_at,
            payload: d.payload,
        }
    }
}

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::Url(e) => ApiError::BadRequest {
                code: "webhook_url_refused",
                message: e.to_string(),
            },
            WebhookError::NotFound(id) => ApiError::not_found("webhook delivery", id),
            WebhookError::NotFailed { id, status } => ApiError::Conflict {
                code: "not_failed",
                message: format!(
                    "webhook delivery {id} is {status}; only a failed delivery can be redelivered"
                ),
            },
            WebhookError::Store(e) => e.into(),
            e @ WebhookError::Payload(_) => ApiError::Internal(Box::new(e)),
        }
    }
}

/// `GET /api/calls/{callId}/webhooks`: `{deliveries: [...]}`.
async fn list_route(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    // Management, or the organisation whose call it is.
    let who = authenticate(&req, &state)?;
    if let Principal::Org(_) = who {
        super::calls::visible_call(&state, &who, &path).await?;
    } else {
        who.require_admin()?;
    }
    let call_id = path.into_inner();
    check_id("callId", &call_id)?;
    if state.store.get_call(&call_id).await?.is_none() {
        return Err(ApiError::not_found("call", call_id));
    }
    let deliveries: Vec<DeliveryView> = state
        .webhooks
        .list_by_call(&call_id)
        .await?
        .into_iter()
        .map(DeliveryView::from)
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "deliveries": deliveries })))
}

/// `POST /api/webhooks/{deliveryId}/redeliver`: 202 with the delivery, pending again.
async fn redeliver_route(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    principal(&req, &state)?.require_admin()?;
    let id = path.into_inner();
    check_id("deliveryId", &id)?;
    let d = state.webhooks.redeliver(&id).await?;
    Ok(HttpResponse::Accepted().json(DeliveryView::from(d)))
}
