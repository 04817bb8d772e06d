//! `/api/transcripts` and `/api/summaries`: transcript chunks in (through the call service,
//! shared with the WebSocket and the Twilio transcription webhook), summaries (LLM, offline,
//! or written by a person) out. Summaries are for agents only,
//! never for the caller.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::calls::visible_call;
use super::{
    authenticate, check_id, check_text, principal, ApiError, AppState, LateBody, Principal,
};
use crate::model::{Transcript, TranscriptSource};

pub use crate::call::service::transcripts::{MAX_CALL_TRANSCRIPT_CHARS, MAX_TRANSCRIPT_CHARS};

/// Routes of these resources.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/api/transcripts").route(web::post().to(create_transcript)));
    cfg.service(
        web::resource("/api/transcripts/call/{callId}").route(web::get().to(transcripts_of_call)),
    );
    cfg.service(
        web::resource("/api/transcripts/{transcriptId}").route(web::get().to(get_transcript)),
    );
    cfg.service(web::resource("/api/summaries").route(web::post().to(create_summary)));
    cfg.service(
        web::resource("/api/summaries/call/{callId}").route(web::get().to(summaries_of_call)),
    );
    cfg.service(web::resource("/api/summaries/{summaryId}").route(web::get().to(get_summary)));
}

/// `POST /api/transcripts` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewTranscript {
    /// The call.
    pub call_id: String,
    /// The text.
    pub text: String,
    /// `caller` or an agent id; defaults to the agent posting (or `caller`).
    pub speaker: Option<String>,
    /// `manual` (default), `whisper`, `livekit` or `twilio`.
    #[serde(default)]
    pub source: TranscriptSource,
}

/// `POST /api/summaries` body: `{callId}` generates now; with `summaryText` stores a
/// human-written one.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewSummary {
    /// The call.
    pub call_id: String,
    /// A human-written summary.
    pub summary_text: Option<String>,
}

fn agents_only(who: &Principal) -> Result<(), ApiError> {
    if let Principal::Caller(_) = who {
        return Err(ApiError::Forbidden("summaries are for agents only".into()));
    }
    Ok(())
}

async fn create_transcript(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: LateBody,
) -> Result<HttpResponse, ApiError> {
    // An organisation's key (its assistant's worker) adds to its own calls' transcripts.
    let who = authenticate(&req, &state)?;
    let body: NewTranscript = body.parse()?;
    check_id("callId", &body.call_id)?;
    check_text("text", &body.text, 1, MAX_TRANSCRIPT_CHARS)?;
    visible_call(&state, &who, &body.call_id).await?;
    let speaker = match (&who, body.speaker) {
        (Principal::Caller(_), _) => "caller".to_string(),
        (_, Some(s)) => {
            super::check_line("speaker", &s, 1, 100)?;
            s
        }
        (Principal::Agent(a), None) => a.clone(),
        (Principal::Admin, None) => String::new(),
        (Principal::Org(_), None) => "assistant".to_string(),
    };
    let t = state
        .calls
        .append_transcript(&body.call_id, speaker, body.text, body.source)
        .await?;
    Ok(HttpResponse::Created().json(t))
}

/// A chunk as `who` is shown it: masked for agents and for the caller when redaction is on
/// (the caller never sees more than the agents, its own chunks included: a caller token is a
/// link anyone holding it can use); management and organisation keys see it as stored.
fn as_shown(state: &AppState, who: &Principal, t: Transcript) -> Transcript {
    match who {
        Principal::Agent(_) | Principal::Caller(_) => Transcript {
            text: state.summaries.shown(&t.text),
            ..t
        },
        _ => t,
    }
}

async fn get_transcript(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &state)?;
    let id = path.into_inner();
    let t = state
        .store
        .get_transcript(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("transcript", &id))?;
    visible_call(&state, &who, &t.call_id).await?;
    Ok(HttpResponse::Ok().json(as_shown(&state, &who, t)))
}

async fn transcripts_of_call(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &state)?;
    let call_id = path.into_inner();
    visible_call(&state, &who, &call_id).await?;
    let list: Vec<Transcript> = state
        .store
        .list_transcripts_by_call(&call_id)
        .await?
        .into_iter()
        .map(|t| as_shown(&state, &who, t))
        .collect();
    Ok(HttpResponse::Ok().json(list))
}

async fn create_summary(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: LateBody,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &state)?;
    agents_only(&who)?;
    let body: NewSummary = body.parse()?;
    check_id("callId", &body.call_id)?;
    let m = visible_call(&state, &who, &body.call_id).await?;
    let summary = state
        .calls
        .summarise(&m.call, body.summary_text.as_deref())
        .await?;
    Ok(HttpResponse::Created().json(summary))
}

async fn get_summary(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &state)?;
    agents_only(&who)?;
    let id = path.into_inner();
    let s = state
        .store
        .get_summary(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("summary", &id))?;
    visible_call(&state, &who, &s.call_id).await?;
    Ok(HttpResponse::Ok().json(s))
}

async fn summaries_of_call(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &state)?;
    agents_only(&who)?;
    let call_id = path.into_inner();
    visible_call(&state, &who, &call_id).await?;
    Ok(HttpResponse::Ok().json(state.store.list_summaries_by_call(&call_id).await?))
}
