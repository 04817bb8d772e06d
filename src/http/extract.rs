//! Reading requests strictly: the `Idempotency-Key` header, JSON bodies ([`LateBody`], parsed
//! by the handler once it has authenticated), path and query errors as `{code, message}` 400s, and the
//! field checks every handler shares.

use actix_web::{web, HttpRequest, ResponseError};

use super::principal::header;
use super::ApiError;
use crate::call::service::IdempotencyKey;

/// The `Idempotency-Key` header, if any, bound to the request: scoped to `who` and
/// fingerprinted over the method, the path (the route and the ids in it, the call's
/// included) and `body`, so that a reuse with another request is 422
/// `idempotency_key_reused`.
pub fn idempotency_key(
    req: &HttpRequest,
    who: &super::Principal,
    body: &[u8],
) -> Result<Option<IdempotencyKey>, ApiError> {
    Ok(idempotency_header(req)?.map(|k| {
        IdempotencyKey::new(
            k,
            who.scope(),
            &[
                req.method().as_str().as_bytes(),
                req.path().as_bytes(),
                body,
            ],
        )
    }))
}

/// The `Idempotency-Key` header's text, if any (at most 200 characters).
fn idempotency_header(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(raw) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    match raw.to_str().ok() {
        None => Err(ApiError::invalid(
            "Idempotency-Key",
            "must be visible ASCII characters",
        )),
        Some(k) if !k.is_empty() && k.len() <= 200 => Ok(Some(k.to_string())),
        Some(_) => Err(ApiError::invalid(
            "Idempotency-Key",
            "must be 1 to 200 characters",
        )),
    }
}

/// Path and query extractor errors as `{code, message}` 400s (bodies: [`LateBody`]).
pub fn configure_extractors(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::QueryConfig::default().error_handler(|err, _req| {
        let e = ApiError::BadRequest {
            code: "invalid_query",
            message: err.to_string(),
        };
        actix_web::error::InternalError::from_response(err, e.error_response()).into()
    }))
    .app_data(web::PathConfig::default().error_handler(|err, _req| {
        let e = ApiError::BadRequest {
            code: "invalid_path",
            message: err.to_string(),
        };
        actix_web::error::InternalError::from_response(err, e.error_response()).into()
    }));
}

/// Checks an id-like value: 1 to 100 characters of letters, digits, `-`, `_`, `.`, `:`.
pub fn check_id(field: &str, value: &str) -> Result<(), ApiError> {
    Ok(crate::call::service::check_id(field, value)?)
}

/// Checks a text's length in characters.
pub fn check_text(field: &str, value: &str, min: usize, max: usize) -> Result<(), ApiError> {
    Ok(crate::call::service::check_text(field, value, min, max)?)
}

/// Checks a one-line text (a name): its length, and no control or format character at all.
pub fn check_line(field: &str, value: &str, min: usize, max: usize) -> Result<(), ApiError> {
    Ok(crate::call::service::check_line(field, value, min, max)?)
}

/// Largest JSON body accepted.
pub const MAX_BODY: usize = 64 * 1024;

/// Reads a JSON request body strictly: `Content-Type: application/json`, at most
/// [`MAX_BODY`], an object (never an array standing in for one); every failure is a 400
/// `{code, message}` naming what is wrong. What [`LateBody::parse`] does (public for the fuzz
/// targets).
pub fn read_object<T: serde::de::DeserializeOwned>(
    content_type: Option<String>,
    bytes: &[u8],
) -> Result<T, ApiError> {
    if bytes.len() > MAX_BODY {
        return Err(ApiError::BadRequest {
            code: "too_large",
            message: format!("body is larger than {} KiB", MAX_BODY / 1024),
        });
    }
    let json_type = content_type
        .as_deref()
        .map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json")
        })
        .unwrap_or(false);
    if !json_type {
        return Err(ApiError::BadRequest {
            code: "invalid_request",
            message: "expected Content-Type: application/json".into(),
        });
    }
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ApiError::BadRequest {
            code: "invalid_json",
            message: format!("body is not valid JSON: {e}"),
        })?;
    if !value.is_object() {
        return Err(ApiError::BadRequest {
            code: "invalid_request",
            message: "body must be a JSON object".into(),
        });
    }
    serde_json::from_value(value).map_err(|e| ApiError::BadRequest {
        code: "invalid_request",
        message: e.to_string(),
    })
}

fn content_type(req: &HttpRequest) -> Option<String> {
    header(req, "content-type").map(str::to_string)
}

/// A JSON body read before the handler but parsed by it ([`LateBody::parse`]), so that
/// the handler authenticates first: a request without a valid key is 401 whatever its body.
/// Its `Debug` shows the length only (a body may carry a password).
pub struct LateBody {
    content_type: Option<String>,
    bytes: Result<web::Bytes, String>,
}

impl std::fmt::Debug for LateBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LateBody")
            .field("content_type", &self.content_type)
            .field("len", &self.bytes.as_ref().map(|b| b.len()))
            .finish()
    }
}

impl LateBody {
    /// The body's bytes as read (empty when it could not be read), for
    /// [`idempotency_key`]'s fingerprint.
    pub fn raw(&self) -> &[u8] {
        self.bytes.as_deref().unwrap_or_default()
    }

    /// Parses the body strictly ([`read_object`]); call it once the request is authenticated.
    pub fn parse<T: serde::de::DeserializeOwned>(self) -> Result<T, ApiError> {
        let bytes = self.bytes.map_err(|e| ApiError::BadRequest {
            code: "invalid_request",
            message: format!("could not read the body: {e}"),
        })?;
        read_object(self.content_type, &bytes)
    }

    /// As [`LateBody::parse`], but an empty (or all-whitespace) body means `T::default()`; a
    /// body that is present must be valid.
    pub fn parse_optional<T: serde::de::DeserializeOwned + Default>(self) -> Result<T, ApiError> {
        if let Ok(b) = &self.bytes {
            if b.iter().all(u8::is_ascii_whitespace) {
                return Ok(T::default());
            }
        }
        self.parse()
    }
}

impl actix_web::FromRequest for LateBody {
    type Error = ApiError;
    type Future = futures_util::future::LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let content_type = content_type(req);
        let bytes = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            Ok(LateBody {
                content_type,
                bytes: bytes.await.map_err(|e| e.to_string()),
            })
        })
    }
}
