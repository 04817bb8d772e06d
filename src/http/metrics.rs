//! `GET /metrics`: the process's metrics in Prometheus text format (management only), with
//! the gauges of the present (live calls by status, WebSocket sessions) read when scraped.

use actix_web::{web, HttpRequest, HttpResponse};

use super::{principal, ApiError, AppState};
use crate::metrics::metrics;

/// Routes of this resource.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/metrics").route(web::get().to(metrics_route)));
}

/// `GET /metrics`: management only (like the other management endpoints).
async fn metrics_route(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    principal(&req, &state)?.require_admin()?;
    let calls = state.store.list_unfinished_calls().await?;
    let statuses = calls
        .iter()
        .filter(|c| !c.call.status.is_terminal())
        .map(|c| c.call.status.as_str());
    let text = metrics()
        .render(statuses, state.hub.session_counts())
        .map_err(|e| ApiError::Internal(Box::new(e)))?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text))
}
