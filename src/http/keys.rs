//! `/api/keys`: organisation API keys — made (shown once), listed without secrets, revoked.
//! The root key (`SWITCHBOARD_API_KEY`) manages every organisation's keys; an organisation's
//! `admin` key manages its own organisation's; a `member` key may only revoke itself.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::{authenticate, check_id, ApiError, AppState, LateBody, Principal};
use crate::org::{generate_key, ApiKeyView, KeyRequest, KeyRole, OrgError};

/// Routes of this resource.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/keys")
            .route(web::post().to(create))
            .route(web::get().to(list)),
    );
    cfg.service(web::resource("/api/keys/{keyId}").route(web::delete().to(revoke)));
}

impl From<OrgError> for ApiError {
    fn from(e: OrgError) -> Self {
        match e {
            OrgError::Invalid { field, message } => ApiError::invalid(field, message),
            e @ OrgError::Random(_) => ApiError::Internal(Box::new(e)),
        }
    }
}

/// `?orgId=` of the list endpoints.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrgQuery {
    /// Only this organisation (the root key); an organisation key may name only its own.
    pub org_id: Option<String>,
}

/// Which organisation a list covers: the root key any (or all), an organisation key its own.
pub fn list_scope(who: &Principal, query: &OrgQuery) -> Result<Option<String>, ApiError> {
    if let Some(o) = &query.org_id {
        check_id("orgId", o)?;
    }
    match who {
        Principal::Admin => Ok(query.org_id.clone()),
        Principal::Org(k) => match &query.org_id {
            Some(o) if *o != k.org_id => Err(ApiError::Forbidden(
                "an organisation API key lists its own organisation only".into(),
            )),
            _ => Ok(Some(k.org_id.clone())),
        },
        _ => Err(ApiError::Forbidden(
            "this endpoint needs an API key (x-api-key)".into(),
        )),
    }
}

/// The answer of `POST /api/keys`: the key and its webhook secret, shown this once.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedKey {
    /// `sbk_<keyId>_<secret>`: send it as `x-api-key`.
    pub api_key: String,
    /// The key's id (for listing and revoking).
    pub key_id: String,
    /// Its organisation.
    pub org_id: String,
    /// `admin` or `member`.
    pub role: KeyRole,
    /// Verifies the signatures of this key's end-of-call webhooks.
    pub webhook_secret: String,
}

impl std::fmt::Debug for CreatedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedKey")
            .field("api_key", &"[redacted]")
            .field("key_id", &self.key_id)
            .field("org_id", &self.org_id)
            .field("role", &self.role)
            .field("webhook_secret", &"[redacted]")
            .finish()
    }
}

async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: LateBody,
) -> Result<HttpResponse, ApiError> {
    let who = authenticate(&req, &state)?;
    match &who {
        Principal::Admin => {}
        Principal::Org(k) if k.role == KeyRole::Admin => {}
        Principal::Org(_) => {
            return Err(ApiError::Forbidden(
                "only an organisation's admin key can create keys".into(),
            ))
        }
        _ => {
            return Err(ApiError::Forbidden(
                "creating API keys needs an admin API key".into(),
            ))
        }
    }
    let body: KeyRequest = body.parse()?;
    let new = generate_key(&body, Utc::now())?;
    if let Some(own) = who.org_id() {
        if new.record.org_id != own {
            return Err(ApiError::Forbidden(format!(
                "an organisation API key creates keys for its own organisation ({own}) only"
            )));
        }
    }
    state.store.create_api_key(&new.record).await?;
    tracing::info!(key_id = %new.record.key_id, org_id = %new.record.org_id, "API key created");
    Ok(HttpResponse::Created().json(CreatedKey {
        api_key: new.api_key.expose().to_string(),
        key_id: new.record.key_id.clone(),
        org_id: new.record.org_id.clone(),
        role: new.record.role,
        webhook_secret: new.record.webhook_secret.expose().to_string(),
    }))
}

async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<OrgQuery>,
) -> Result<HttpResponse, ApiError> {
    let who = authenticate(&req, &state)?;
    if let Principal::Org(k) = &who {
        if k.role != KeyRole::Admin {
            return Err(ApiError::Forbidden(
                "only an organisation's admin key can list its keys".into(),
            ));
        }
    }
    let scope = list_scope(&who, &query)?;
    let keys = state.store.list_api_keys(scope.as_deref()).await?;
    let views: Vec<ApiKeyView> = keys.iter().map(ApiKeyView::from).collect();
    Ok(HttpResponse::Ok().json(views))
}

async fn revoke(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let who = authenticate(&req, &state)?;
    who.require_org_or_admin()?;
    let key_id = path.into_inner();
    check_id("keyId", &key_id)?;
    let key = state
        .store
        .get_api_key(&key_id)
        .await?
        .ok_or_else(|| ApiError::not_found("api key", &key_id))?;
    if let Principal::Org(k) = &who {
        if k.org_id != key.org_id {
            // Another organisation's key: not even its existence is told.
            return Err(ApiError::not_found("api key", &key_id));
        }
        if k.role != KeyRole::Admin && k.key_id != key_id {
            return Err(ApiError::Forbidden(
                "a member key may revoke only itself".into(),
            ));
        }
    }
    state.store.revoke_api_key(&key_id, Utc::now()).await?;
    tracing::info!(key_id = %key_id, "API key revoked");
    Ok(HttpResponse::NoContent().finish())
}
