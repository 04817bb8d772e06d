//! `GET /health`, `GET /api/openapi.json`, JSON 404s for unknown routes, and
//! [`json_errors`]: every 4xx/5xx the app answers, actix's own included (payload limits,
//! extractors, static files), in the `{code, message}` shape.

use actix_web::http::StatusCode;
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

/// The stable code of an error answer that did not come as `{code, message}`: from the
/// error behind it where actix says what it was, otherwise from the status.
pub fn error_code(status: StatusCode, error: Option<&actix_web::Error>) -> &'static str {
    if let Some(e) = error {
        if e.as_error::<actix_files::UriSegmentError>().is_some()
            || e.as_error::<actix_web::error::PathError>().is_some()
        {
            return "invalid_path";
        }
        if status == StatusCode::BAD_REQUEST {
            if e.as_error::<actix_web::error::JsonPayloadError>().is_some() {
                return "invalid_json";
            }
            if e.as_error::<actix_web::error::UrlencodedError>().is_some() {
                return "invalid_form";
            }
            if e.as_error::<actix_web::error::QueryPayloadError>()
                .is_some()
            {
                return "invalid_query";
            }
        }
    }
    match status.as_u16() {
        400 => "invalid_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        406 => "not_acceptable",
        408 => "request_timeout",
        409 => "conflict",
        411 => "length_required",
        413 => "too_large",
        414 => "uri_too_long",
        415 => "unsupported_media_type",
        416 => "range_not_satisfiable",
        429 => "too_many_requests",
        431 => "headers_too_large",
        500 => "internal",
        502 => "bad_gateway",
        503 => "unavailable",
        504 => "gateway_timeout",
        s if s < 500 => "client_error",
        _ => "server_error",
    }
}

/// Rewrites an error answer that is not JSON (actix's own: `413` of a payload limit, `400`
/// of an extractor or of a static file path, ...) into `{code, message}` with a stable
/// [`error_code`], keeping its status and headers. Answers already JSON pass untouched.
pub fn json_errors<B>(
    res: actix_web::dev::ServiceResponse<B>,
) -> actix_web::Result<actix_web::middleware::ErrorHandlerResponse<B>> {
    use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
    use actix_web::middleware::ErrorHandlerResponse;
    let is_json = res
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json")
        })
        .unwrap_or(false);
    if is_json {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let code = error_code(status, res.response().error());
    let message = match res.response().error() {
        // Our fault: the details stay in the log.
        _ if status.is_server_error() => status
            .canonical_reason()
            .unwrap_or("internal error")
            .to_string(),
        Some(e) => e.to_string(),
        None => status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_string(),
    };
    if status.is_server_error() {
        if let Some(e) = res.response().error() {
            tracing::error!(error = %e, status = status.as_u16(), "error answer");
        }
    }
    let (req, original) = res.into_parts();
    let mut builder = HttpResponse::build(status);
    for (name, value) in original.headers() {
        if name != CONTENT_TYPE && name != CONTENT_LENGTH {
            builder.append_header((name.clone(), value.clone()));
        }
    }
    let response = builder
        .json(json!({ "code": code, "message": message }))
        .map_into_right_body();
    Ok(ErrorHandlerResponse::Response(
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
