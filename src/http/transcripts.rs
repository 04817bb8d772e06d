//! `/api/transcripts` and `/api/summaries`: transcript chunks in, summaries (offline, or
//! written by a person) out. Summaries are for agents only, never for the caller.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use serde::Deserialize;

use super::calls::visible_call;
use super::{check_id, check_text, principal, ApiError, AppState, Body, Principal};
use crate::call::machine::{Input, Observation};
use crate::model::{new_id, Summary, Transcript, TranscriptSource};

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

/// The most transcript text one call may hold, in characters (chunks are at most 10,000).
pub const MAX_TRANSCRIPT_CHARS: usize = 200_000;

async fn create_transcript(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: Body<NewTranscript>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &state)?;
    let body = body.into_inner();
    check_id("callId", &body.call_id)?;
    check_text("text", &body.text, 1, 10_000)?;
    let m = visible_call(&state, &who, &body.call_id).await?;
    if m.call.status == crate::model::CallStatus::Ended {
        return Err(ApiError::Conflict {
            code: "call_ended",
            message: format!("call {} has ended", body.call_id),
        });
    }
    // Bounded per call: a client cannot grow a call's transcript (and its summary input)
    // without limit.
    let stored: usize = state
        .store
        .list_transcripts_by_call(&body.call_id)
        .await?
        .iter()
        .map(|t| t.text.chars().count())
        .sum();
    if stored + body.text.chars().count() > MAX_TRANSCRIPT_CHARS {
        return Err(ApiError::Conflict {
            code: "transcript_too_long",
            message: format!(
                "call {} already holds {stored} transcript characters; at most {MAX_TRANSCRIPT_CHARS} per call",
                body.call_id
            ),
        });
    }
    let speaker = match (&who, body.speaker) {
        (Principal::Caller(_), _) => "caller".to_string(),
        (_, Some(s)) => {
            check_text("speaker", &s, 1, 100)?;
            s
        }
        (Principal::Agent(a), None) => a.clone(),
        (Principal::Admin, None) => String::new(),
    };
    let t = Transcript {
        transcript_id: new_id("tx"),
        call_id: body.call_id,
        speaker,
        text: body.text,
        source: body.source,
        created_at: Utc::now(),
    };
    state.store.put_transcript(&t).await?;
    Ok(HttpResponse::Created().json(t))
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
    Ok(HttpResponse::Ok().json(t))
}

async fn transcripts_of_call(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &state)?;
    let call_id = path.into_inner();
    visible_call(&state, &who, &call_id).await?;
    Ok(HttpResponse::Ok().json(state.store.list_transcripts_by_call(&call_id).await?))
}

async fn create_summary(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: Body<NewSummary>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &state)?;
    agents_only(&who)?;
    let body = body.into_inner();
    check_id("callId", &body.call_id)?;
    let m = visible_call(&state, &who, &body.call_id).await?;
    let summary = match body.summary_text {
        Some(text) => {
            check_text("summaryText", &text, 1, 10_000)?;
            let s = Summary {
                summary_id: new_id("sum"),
                call_id: body.call_id.clone(),
                summary_text: text,
                model: "human".into(),
                created_at: Utc::now(),
            };
            state.store.put_summary(&s).await?;
            s
        }
        None => {
            let transcripts = state.store.list_transcripts_by_call(&body.call_id).await?;
            let s = Summary {
                summary_id: new_id("sum"),
                call_id: body.call_id.clone(),
                summary_text: crate::summary::offline_summary(&m.call, &transcripts),
                model: crate::summary::OFFLINE_MODEL.into(),
                created_at: Utc::now(),
            };
            state.store.put_summary(&s).await?;
            s
        }
    };
    if m.call.status != crate::model::CallStatus::Ended {
        state
            .execute(
                &body.call_id,
                Input::Observe(Observation::SummaryStored {
                    summary_id: summary.summary_id.clone(),
                }),
                None,
            )
            .await?;
    }
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
