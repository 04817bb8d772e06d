//! `/api/assistants`: an organisation's AI voice assistants (prompt, start instruction, TTS
//! voice, end-of-call URL). An organisation key sees only its own organisation's: another
//! organisation's assistant is 404, never 403, and never listed. The root key sees all and
//! names the organisation when it creates one.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;

use super::keys::{list_scope, OrgQuery};
use super::{authenticate, check_id, ApiError, AppState, LateBody, Principal};
use crate::model::new_id;
use crate::org::{Assistant, AssistantPatch, NewAssistant, TemplateError};

/// Routes of this resource.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/assistants")
            .route(web::post().to(create))
            .route(web::get().to(list)),
    );
    cfg.service(
        web::resource("/api/assistants/{assistantId}")
            .route(web::get().to(get))
            .route(web::patch().to(patch))
            .route(web::delete().to(delete)),
    );
}

/// A call's metadata that cannot fill an assistant's templates: 400 naming the field and
/// every missing key (`missing_metadata`) or the key whose value is not text, a number or a
/// boolean (`invalid_metadata`), as the call service words it.
impl From<TemplateError> for ApiError {
    fn from(e: TemplateError) -> Self {
        crate::call::service::ServiceError::from(e).into()
    }
}

/// Loads an assistant the principal may see; 404 for another organisation's (and for
/// everyone but the root key and organisation keys, 403 before any lookup).
pub async fn visible_assistant(
    state: &AppState,
    who: &Principal,
    assistant_id: &str,
) -> Result<Assistant, ApiError> {
    who.require_org_or_admin()?;
    check_id("assistantId", assistant_id)?;
    state
        .store
        .get_assistant(assistant_id)
        .await?
        .filter(|a| who.sees_org(&a.org_id))
        .ok_or_else(|| ApiError::not_found("assistant", assistant_id))
}

async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: LateBody,
) -> Result<HttpResponse, ApiError> {
    let who = authenticate(&req, &state)?;
    who.require_org_or_admin()?;
    let body: NewAssistant = body.parse()?;
    let org_id = who.owning_org(body.org_id.as_deref(), "assistants")?;
    let creator = match &who {
        Principal::Org(k) => k.key_id.clone(),
        _ => crate::org::ROOT_CREATOR.to_string(),
    };
    let a = Assistant::create(body, new_id("as"), org_id, creator, Utc::now())?;
    check_webhook(&state, &a)?;
    let a = state.store.create_assistant(&a).await?;
    Ok(HttpResponse::Created().json(a))
}

/// An assistant's end-of-call URL must pass the SSRF guard's static checks (its addresses
/// are checked again at each delivery), and there must be a secret to sign with.
fn check_webhook(state: &AppState, a: &Assistant) -> Result<(), ApiError> {
    let Some(url) = &a.end_call_url else {
        return Ok(());
    };
    crate::webhooks::ssrf::check_url(url, &state.config.webhooks.policy)
        .map_err(|e| ApiError::invalid("endCallUrl", e))?;
    if a.created_by_key_id == crate::org::ROOT_CREATOR
        && state.config.webhooks.signing_secret.is_none()
    {
        return Err(ApiError::BadRequest {
            code: "webhook_secret_missing",
            message: "endCallUrl: assistants made with the management key sign their webhooks with SWITCHBOARD_WEBHOOK_SECRET, which is not set (or create the assistant with an organisation key)".into(),
        });
    }
    Ok(())
}

async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<OrgQuery>,
) -> Result<HttpResponse, ApiError> {
    let who = authenticate(&req, &state)?;
    let scope = list_scope(&who, &query)?;
    Ok(HttpResponse::Ok().json(state.store.list_assistants(scope.as_deref()).await?))
}

async fn get(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let who = authenticate(&req, &state)?;
    Ok(HttpResponse::Ok().json(visible_assistant(&state, &who, &path).await?))
}

async fn patch(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: LateBody,
) -> Result<HttpResponse, ApiError> {
    let who = authenticate(&req, &state)?;
    let current = visible_assistant(&state, &who, &path).await?;
    let patch: AssistantPatch = body.parse()?;
    let changed = current.patched(patch, Utc::now())?;
    check_webhook(&state, &changed)?;
    // Conditional on the version read: a concurrent change makes this a 409.
    let saved = state.store.update_assistant(&changed).await?;
    Ok(HttpResponse::Ok().json(saved))
}

async fn delete(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let who = authenticate(&req, &state)?;
    let a = visible_assistant(&state, &who, &path).await?;
    if !state.store.delete_assistant(&a.assistant_id).await? {
        return Err(ApiError::not_found("assistant", &a.assistant_id));
    }
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_errors_are_400s_naming_every_missing_key() {
        let e = ApiError::from(TemplateError::Missing(vec!["name".into(), "order".into()]));
        match &e {
            ApiError::BadRequest { code, message } => {
                assert_eq!(*code, "missing_metadata");
                assert!(message.starts_with("metadata:"), "{message}");
                assert!(message.contains("name, order"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let e = ApiError::from(TemplateError::NotScalar("o".into()));
        assert!(matches!(
            e,
            ApiError::BadRequest {
                code: "invalid_metadata",
                ..
            }
        ));
    }
}
