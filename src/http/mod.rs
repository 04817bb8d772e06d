//! The HTTP surface: shared state, who is asking ([`Principal`]), the one error type mapped
//! to JSON `{code, message}`, and the routes of each resource.

pub mod agents;
pub mod assistants;
pub mod calls;
pub mod keys;
pub mod livekit_webhook;
pub mod meta;
pub mod outbound;
pub mod rooms;
pub mod sessions;
pub mod transcripts;
pub mod transfers;
pub mod trunks;
pub mod twilio;
pub mod wallboard;
pub mod webhooks;

use std::sync::Arc;

use actix::Addr;
use actix_web::http::StatusCode;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use serde::Serialize;

use crate::auth::SessionKeys;
use crate::call::actor::{CallError, Execute};
use crate::call::machine::{CallMachine, Input, Rejection};
use crate::call::registry::{ActorDied, Found, Lookup, Registry};
use crate::config::{Config, ManagementAccess};
use crate::hub::Hub;
use crate::media::livekit::LiveKit;
use crate::media::twilio::TwilioBridge;
use crate::model::PartyRef;
use crate::store::{Store, StoreError};

/// Everything a handler needs.
#[derive(Clone)]
pub struct AppState {
    /// Settings.
    pub config: Arc<Config>,
    /// Durable storage.
    pub store: Arc<dyn Store>,
    /// Event fan-out.
    pub hub: Hub,
    /// The LiveKit plane.
    pub livekit: LiveKit,
    /// The Twilio plane, when configured.
    pub twilio: Option<TwilioBridge>,
    /// Call actors and routing.
    pub registry: Addr<Registry>,
    /// Session tokens.
    pub keys: SessionKeys,
    /// Call summaries (LLM or offline) and their background refresh.
    pub summaries: crate::summary::Summaries,
    /// End-of-call webhook deliveries and their worker.
    pub webhooks: crate::webhooks::Webhooks,
}

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

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { entity, id } => ApiError::NotFound { entity, id },
            StoreError::AlreadyExists { entity, id } => ApiError::Conflict {
                code: "already_exists",
                message: format!("{entity} {id} already exists"),
            },
            StoreError::VersionConflict { entity, id, .. } => ApiError::Conflict {
                code: "concurrent_update",
                message: format!("{entity} {id} was changed concurrently; retry"),
            },
            other => {
                tracing::error!(error = %other, "storage failed");
                ApiError::Unavailable("storage is unavailable; nothing was changed".into())
            }
        }
    }
}

impl From<CallError> for ApiError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Rejected(Rejection::Forbidden(m)) => ApiError::Forbidden(m),
            CallError::Rejected(Rejection::Conflict { code, message }) => {
                ApiError::Conflict { code, message }
            }
            CallError::Rejected(Rejection::Invalid(m)) => ApiError::BadRequest {
                code: "invalid_request",
                message: m,
            },
            CallError::NotFound(id) => ApiError::not_found("call", id),
            CallError::Storage(e) if matches!(*e, StoreError::VersionConflict { .. }) => {
                ApiError::Conflict {
                    code: "concurrent_update",
                    message: "the call was changed concurrently; retry".into(),
                }
            }
            CallError::Storage(e) => {
                tracing::error!(error = %e, "storage failed");
                ApiError::Unavailable("storage is unavailable; nothing was changed".into())
            }
            CallError::Unavailable => {
                ApiError::Unavailable("the call is being recovered; retry shortly".into())
            }
            CallError::Media(e) => ApiError::Internal(Box::new(CallError::Media(e))),
        }
    }
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Management: a valid `x-api-key`, or a local client when no key is configured.
    Admin,
    /// An agent with a session token.
    Agent(String),
    /// A caller with a session token; reaches one call only.
    Caller(String),
    /// An organisation's API key (`sbk_...`): its own keys, assistants and trunks only.
    Org(OrgKey),
}

/// A verified organisation API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgKey {
    /// The key's id.
    pub key_id: String,
    /// Its organisation.
    pub org_id: String,
    /// What it may do there.
    pub role: crate::org::KeyRole,
}

impl Principal {
    /// The organisation of an organisation key; `None` for everyone else (the root key
    /// included: it belongs to no organisation).
    pub fn org_id(&self) -> Option<&str> {
        match self {
            Principal::Org(k) => Some(&k.org_id),
            _ => None,
        }
    }

    /// Fails (403) unless this is the root key or an organisation key.
    pub fn require_org_or_admin(&self) -> Result<(), ApiError> {
        match self {
            Principal::Admin | Principal::Org(_) => Ok(()),
            _ => Err(ApiError::Forbidden(
                "this endpoint needs an API key (x-api-key)".into(),
            )),
        }
    }

    /// Whether a record of organisation `org_id` is visible to this key: the root key sees
    /// every organisation's, an organisation key its own only.
    pub fn sees_org(&self, org_id: &str) -> bool {
        self.org_id().is_none_or(|own| own == org_id)
    }

    /// The organisation a new record (`what`: assistants, trunks) belongs to: an organisation
    /// key's own (naming another is 403), or the `orgId` the root key must give.
    pub fn owning_org(&self, asked: Option<&str>, what: &str) -> Result<String, ApiError> {
        match self {
            Principal::Org(k) => {
                if asked.is_some_and(|o| o != k.org_id) {
                    return Err(ApiError::Forbidden(format!(
                        "an organisation API key creates {what} in its own organisation ({}) only",
                        k.org_id
                    )));
                }
                Ok(k.org_id.clone())
            }
            _ => {
                let org = asked.ok_or_else(|| {
                    ApiError::invalid("orgId", "is required with the management key")
                })?;
                check_id("orgId", org)?;
                Ok(org.to_string())
            }
        }
    }

    /// The 403 of an endpoint that organisation keys may not use (yet).
    pub fn org_forbidden() -> ApiError {
        ApiError::Forbidden(
            "organisation API keys cannot use this endpoint; it needs the management API key"
                .into(),
        )
    }

    /// Fails unless this is management.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self {
            Principal::Admin => Ok(()),
            _ => Err(ApiError::Forbidden(
                "this endpoint needs the management API key".into(),
            )),
        }
    }
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Whether a browser request comes from a page of another site (its `Origin` differs from
/// the `Host` it targets).
fn cross_site(req: &HttpRequest) -> bool {
    match (header(req, "origin"), header(req, "host")) {
        (Some(origin), Some(host)) => {
            let origin_host = origin.split("://").nth(1).unwrap_or(origin);
            origin_host != host
        }
        (Some(_), None) => true,
        _ => false,
    }
}

/// Works out who is asking, for every endpoint that organisation keys may not use: as
/// [`authenticate`], but a valid organisation key is refused with 403 `forbidden` (it never
/// gets management power).
pub fn principal(req: &HttpRequest, state: &AppState) -> Result<Principal, ApiError> {
    match authenticate(req, state)? {
        Principal::Org(_) => Err(Principal::org_forbidden()),
        other => Ok(other),
    }
}

/// What [`resolve_org_key`] found for the request's organisation key.
#[derive(Debug, Clone)]
enum OrgKeyCheck {
    /// The key is stored, not revoked, and its secret matches.
    Valid(OrgKey),
    /// Unknown, revoked, malformed or wrong secret (401 with this message).
    Refused(&'static str),
    /// The store could not be read (503).
    Unavailable,
}

/// Middleware: when `x-api-key` holds an organisation key (`sbk_...`, not the root key), looks
/// it up in the store (every request: a revoked key is refused at once) and leaves the result
/// for [`authenticate`], which stays synchronous.
pub async fn resolve_org_key(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let presented = header(req.request(), "x-api-key").map(str::to_owned);
    let state = req.app_data::<web::Data<AppState>>().cloned();
    if let (Some(key), Some(state)) = (presented, state) {
        let root =
            matches!(&state.config.management, ManagementAccess::ApiKey(e) if e.matches(&key));
        if !root && crate::org::looks_like_key(&key) {
            let check = check_org_key(&state, &key).await;
            req.extensions_mut().insert(check);
        }
    }
    next.call(req).await
}

async fn check_org_key(state: &AppState, text: &str) -> OrgKeyCheck {
    let Some((key_id, secret)) = crate::org::parse_key(text) else {
        return OrgKeyCheck::Refused("invalid API key");
    };
    match state.store.get_api_key(key_id).await {
        Ok(Some(k)) if k.secret_matches(secret) => {
            if k.revoked_at.is_some() {
                OrgKeyCheck::Refused("this API key has been revoked")
            } else {
                OrgKeyCheck::Valid(OrgKey {
                    key_id: k.key_id,
                    org_id: k.org_id,
                    role: k.role,
                })
            }
        }
        Ok(_) => OrgKeyCheck::Refused("invalid API key"),
        Err(e) => {
            tracing::error!(error = %e, "reading an API key failed");
            OrgKeyCheck::Unavailable
        }
    }
}

/// Works out who is asking: `x-api-key` (the root key is management, an organisation key is
/// [`Principal::Org`]), then `Authorization: Bearer <session token>`, then (with no key
/// configured) a local client.
pub fn authenticate(req: &HttpRequest, state: &AppState) -> Result<Principal, ApiError> {
    if let Some(key) = header(req, "x-api-key") {
        let root =
            matches!(&state.config.management, ManagementAccess::ApiKey(e) if e.matches(key));
        if !root && crate::org::looks_like_key(key) {
            return match req.extensions().get::<OrgKeyCheck>() {
                Some(OrgKeyCheck::Valid(k)) => Ok(Principal::Org(k.clone())),
                Some(OrgKeyCheck::Refused(m)) => Err(ApiError::Unauthorized((*m).into())),
                Some(OrgKeyCheck::Unavailable) => Err(ApiError::Unavailable(
                    "API keys cannot be checked right now (storage is unavailable)".into(),
                )),
                None => Err(ApiError::Internal(
                    "organisation keys are not resolved: resolve_org_key is not installed".into(),
                )),
            };
        }
        return match &state.config.management {
            ManagementAccess::ApiKey(expected) if expected.matches(key) => Ok(Principal::Admin),
            ManagementAccess::ApiKey(_) => Err(ApiError::Unauthorized("invalid API key".into())),
            ManagementAccess::LoopbackOnly => local_admin(req),
        };
    }
    if let Some(auth) = header(req, "authorization") {
        let token = auth.strip_prefix("Bearer ").ok_or_else(|| {
            ApiError::Unauthorized("expected Authorization: Bearer <token>".into())
        })?;
        return match state.keys.verify(token.trim()) {
            Ok(PartyRef::Agent { agent_id }) => Ok(Principal::Agent(agent_id)),
            Ok(PartyRef::Caller { call_id }) => Ok(Principal::Caller(call_id)),
            Err(_) => Err(ApiError::Unauthorized(
                "invalid or expired session token".into(),
            )),
        };
    }
    match &state.config.management {
        ManagementAccess::LoopbackOnly => local_admin(req),
        ManagementAccess::ApiKey(_) => Err(ApiError::Unauthorized(
            "send x-api-key (management) or Authorization: Bearer <session token>".into(),
        )),
    }
}

/// Whether a proxy or tunnel (ngrok, a reverse proxy) relayed the request: it then comes
/// from loopback but not from this machine's user.
fn forwarded(req: &HttpRequest) -> bool {
    [
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-real-ip",
    ]
    .iter()
    .any(|h| req.headers().contains_key(*h))
}

fn local_admin(req: &HttpRequest) -> Result<Principal, ApiError> {
    let local = req.peer_addr().is_some_and(|a| a.ip().is_loopback());
    if local && !cross_site(req) && !forwarded(req) {
        Ok(Principal::Admin)
    } else {
        Err(ApiError::Unauthorized(
            "management endpoints are open to local clients only while SWITCHBOARD_API_KEY is unset"
                .into(),
        ))
    }
}

/// The `Idempotency-Key` header, if any (at most 200 characters).
pub fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
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

impl AppState {
    /// Feeds an input to a call's actor, restarting a dead actor once from the store.
    pub async fn execute(
        &self,
        call_id: &str,
        input: Input,
        idempotency_key: Option<String>,
    ) -> Result<Arc<CallMachine>, ApiError> {
        for attempt in 0..2 {
            let found = self
                .registry
                .send(Lookup {
                    call_id: call_id.to_string(),
                })
                .await
                .map_err(|_| ApiError::Unavailable("the switchboard is shutting down".into()))??;
            let addr = match found {
                Found::Live(addr) => addr,
                Found::Ended(m) => {
                    // Ended calls answer from their final state: repeats succeed, the rest 409.
                    let step = m
                        .handle(crate::call::actor::now_ms(), input)
                        .map_err(CallError::from)?;
                    return if step.changed(&m) {
                        Err(ApiError::Conflict {
                            code: "call_ended",
                            message: format!("call {call_id} has ended"),
                        })
                    } else {
                        Ok(m)
                    };
                }
            };
            match addr
                .send(Execute {
                    input: input.clone(),
                    idempotency_key: idempotency_key.clone(),
                })
                .await
            {
                Ok(Err(CallError::Unavailable)) if attempt == 0 => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Ok(res) => return Ok(res?),
                Err(_) if attempt == 0 => {
                    self.registry.do_send(ActorDied {
                        call_id: call_id.to_string(),
                    });
                }
                Err(_) => break,
            }
        }
        Err(ApiError::Unavailable(
            "the call is being recovered; retry shortly".into(),
        ))
    }

    /// The current state of a call (live or ended).
    pub async fn machine(&self, call_id: &str) -> Result<Arc<CallMachine>, ApiError> {
        let stored = self
            .store
            .get_call(call_id)
            .await?
            .ok_or_else(|| ApiError::not_found("call", call_id))?;
        let m = crate::call::actor::decode(&stored).map_err(|e| ApiError::Internal(Box::new(e)))?;
        Ok(Arc::new(m))
    }
}

/// Path and query extractor errors as `{code, message}` 400s (bodies: [`Body`]).
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
    let ok = !value.is_empty()
        && value.len() <= 100
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            field,
            "must be 1 to 100 letters, digits, '-', '_', '.' or ':'",
        ))
    }
}

/// Checks a text's length in characters.
pub fn check_text(field: &str, value: &str, min: usize, max: usize) -> Result<(), ApiError> {
    let n = value.chars().count();
    if n < min || n > max {
        return Err(ApiError::invalid(
            field,
            format!("must be {min} to {max} characters (got {n})"),
        ));
    }
    Ok(())
}

/// Largest JSON body accepted.
pub const MAX_BODY: usize = 64 * 1024;

/// A JSON request body, read strictly: `Content-Type: application/json`, at most
/// [`MAX_BODY`], an object (never an array standing in for one); every failure is a 400
/// `{code, message}` naming what is wrong.
#[derive(Debug)]
pub struct Body<T>(pub T);

/// Like [`Body`], but an empty body means `T::default()`; a body that is present must be
/// valid.
#[derive(Debug)]
pub struct OptionalBody<T>(pub T);

impl<T> Body<T> {
    /// The parsed body.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Body<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Reads a JSON object body exactly as [`Body`] does (public for the fuzz targets).
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

impl<T: serde::de::DeserializeOwned + 'static> actix_web::FromRequest for Body<T> {
    type Error = ApiError;
    type Future = futures_util::future::LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let ct = content_type(req);
        let bytes = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            let bytes = bytes.await.map_err(|e| ApiError::BadRequest {
                code: "invalid_request",
                message: format!("could not read the body: {e}"),
            })?;
            read_object(ct, &bytes).map(Body)
        })
    }
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
    /// Parses the body exactly as [`Body`] does.
    pub fn parse<T: serde::de::DeserializeOwned>(self) -> Result<T, ApiError> {
        let bytes = self.bytes.map_err(|e| ApiError::BadRequest {
            code: "invalid_request",
            message: format!("could not read the body: {e}"),
        })?;
        read_object(self.content_type, &bytes)
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

impl<T: serde::de::DeserializeOwned + Default + 'static> actix_web::FromRequest
    for OptionalBody<T>
{
    type Error = ApiError;
    type Future = futures_util::future::LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let ct = content_type(req);
        let bytes = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            let bytes = bytes.await.map_err(|e| ApiError::BadRequest {
                code: "invalid_request",
                message: format!("could not read the body: {e}"),
            })?;
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(OptionalBody(T::default()));
            }
            read_object(ct, &bytes).map(OptionalBody)
        })
    }
}
