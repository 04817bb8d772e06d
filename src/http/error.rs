//! The one error type of the HTTP boundary, rendered as JSON `{code, message}`, and how the
//! errors of the layers below map to it.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::call::actor::CallError;
use crate::call::service::ServiceError;
use crate::store::StoreError;

/// The one error type of the HTTP boundary, rendered as `{code, message}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No or bad credentials (401).
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated, but not allowed (403).
    #[error("{0}")]
    Forbidden(String),
    /// Unknown id (404).
    #[error("{entity} {id} not found")]
    NotFound {
        /// `call`, `agent`, ...
        entity: &'static str,
        /// The id asked for.
        id: String,
    },
    /// Bad request body, path or query (400), with a stable code.
    #[error("{message}")]
    BadRequest {
        /// `invalid_json`, `invalid_request`, `invalid_field`, ...
        code: &'static str,
        /// What is wrong, naming the field where there is one.
        message: String,
    },
    /// The resource is in a state where this cannot happen (409).
    #[error("{message}")]
    Conflict {
        /// Stable code (`transfer_open`, `call_ended`, ...).
        code: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Well-formed but refused (422), with a stable code (`idempotency_key_reused`).
    #[error("{message}")]
    Unprocessable {
        /// Stable code.
        code: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A dependency is down; nothing was changed (503).
    #[error("{0}")]
    Unavailable(String),
    /// A dependency answered, but refused or failed in a way the client cannot fix (502).
    #[error("{0}")]
    BadGateway(String),
    /// Our fault (500); details are logged, never returned.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    /// A 400 naming the field.
    pub fn invalid(field: &str, message: impl std::fmt::Display) -> Self {
        ApiError::BadRequest {
            code: "invalid_field",
            message: format!("{field}: {message}"),
        }
    }

    /// A 404.
    pub fn not_found(entity: &'static str, id: impl Into<String>) -> Self {
        ApiError::NotFound {
            entity,
            id: id.into(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound { .. } => "not_found",
            ApiError::BadRequest { code, .. } => code,
            ApiError::Conflict { code, .. } => code,
            ApiError::Unprocessable { code, .. } => code,
            ApiError::Unavailable(_) => "unavailable",
            ApiError::BadGateway(_) => "bad_gateway",
            ApiError::Internal(_) => "internal",
        }
    }
}

/// The JSON body of every error.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    /// Stable, machine-readable.
    pub code: String,
    /// For people.
    pub message: String,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(e) = self {
            tracing::error!(error = %e, source = ?e.source(), "internal error");
        }
        HttpResponse::build(self.status_code()).json(ErrorBody {
            code: self.code().to_string(),
            message: self.to_string(),
        })
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::NotFound { entity, id } => ApiError::NotFound { entity, id },
            ServiceError::Invalid { code, message } => ApiError::BadRequest { code, message },
            ServiceError::Forbidden(m) => ApiError::Forbidden(m),
            ServiceError::Conflict { code, message } => ApiError::Conflict { code, message },
            ServiceError::Unprocessable { code, message } => {
                ApiError::Unprocessable { code, message }
            }
            ServiceError::Unavailable(m) => ApiError::Unavailable(m),
            ServiceError::BadGateway(m) => ApiError::BadGateway(m),
            ServiceError::Internal(e) => ApiError::Internal(e),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ServiceError::from(e).into()
    }
}

impl From<CallError> for ApiError {
    fn from(e: CallError) -> Self {
        ServiceError::from(e).into()
    }
}
