//! `GET /health`, `GET /api/openapi.json`, and JSON 404s for unknown routes.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::{ApiError, AppState};

/// The OpenAPI description of the API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Routes of this module.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/health").route(web::get().to(health)));
    cfg.service(web::resource("/api/openapi.json").route(web::get().to(openapi)));
}

async fn health(state: web::Data<AppState>) -> HttpResponse {
    let store_ok = state.store.ping().await.is_ok();
    let livekit_ok = state.livekit.ping().await;
    let body = json!({
        "status": if store_ok && livekit_ok { "ok" } else if store_ok { "degraded" } else { "down" },
        "store": if store_ok { "ok" } else { "unreachable" },
        "livekit": if livekit_ok { "ok" } else { "unreachable" },
    });
    if store_ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI)
}

/// Replaces actix's empty 405 with `{code: "method_not_allowed", message}`.
pub fn method_not_allowed<B>(
    res: actix_web::dev::ServiceResponse<B>,
) -> actix_web::Result<actix_web::middleware::ErrorHandlerResponse<B>> {
    let (req, original) = res.into_parts();
    let message = format!("{} is not allowed on {}", req.method(), req.path());
    let mut builder = HttpResponse::MethodNotAllowed();
    if let Some(allow) = original.headers().get(actix_web::http::header::ALLOW) {
        builder.insert_header((actix_web::http::header::ALLOW, allow.clone()));
    }
    let response = builder
        .json(json!({ "code": "method_not_allowed", "message": message }))
        .map_into_right_body();
    Ok(actix_web::middleware::ErrorHandlerResponse::Response(
        actix_web::dev::ServiceResponse::new(req, response),
    ))
}

/// The answer for unknown routes.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound {
        entity: "route",
        id: format!("{} {}", req.method(), req.path()),
    })
}
