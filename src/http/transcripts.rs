//! `/api/transcripts` and `/api/summaries`: transcript chunks in (also through
//! [`append_transcript`], shared with the WebSocket and the Twilio transcription webhook),
//! summaries (LLM, offline, or written by a person) out. Summaries are for agents only,
//! never for the caller.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use serde::Deserialize;

use super::calls::visible_call;
use super::{authenticate, check_id, check_text, principal, ApiError, AppState, Body, Principal};
use crate::call::machine::{Input, Observation};
use crate::model::{new_id, Summary, Transcript, TranscriptSource};

/// Longest transcript chunk, in characters.
pub const MAX_TRANSCRIPT_CHARS: usize = 10_000;

/// The most transcript text one call may hold, in characters: no client (or provider) can
/// grow a call's transcript, and its summaries' input, without limit.
pub const MAX_CALL_TRANSCRIPT_CHARS: usize = 200_000;

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

/// Stores a transcript chunk of a live call, pushes `transcript.appended` to the call's agents
/// (through the call actor, so it gets a `seq` and is stored like every event) and asks for a
/// debounced background refresh of the call's summary. Never waits for a summariser. The
/// caller of this function has checked who may add to the call; this checks the text
/// (1 to [`MAX_TRANSCRIPT_CHARS`] characters) and that the call has not ended.
pub async fn append_transcript(
    state: &AppState,
    call_id: &str,
    speaker: String,
    text: String,
    source: TranscriptSource,
) -> Result<Transcript, ApiError> {
    append_with_id(state, call_id, new_id("tx"), speaker, text, source).await
}

/// Like [`append_transcript`], with an id derived from the provider's own (a Twilio
/// transcription's SID and sequence number): a retried callback finds the chunk already
/// stored and changes nothing.
pub async fn append_transcript_once(
    state: &AppState,
    call_id: &str,
    transcript_id: String,
    speaker: String,
    text: String,
    source: TranscriptSource,
) -> Result<Transcript, ApiError> {
    if let Some(existing) = state.store.get_transcript(&transcript_id).await? {
        return Ok(existing);
    }
    append_with_id(state, call_id, transcript_id, speaker, text, source).await
}

async fn append_with_id(
    state: &AppState,
    call_id: &str,
    transcript_id: String,
    speaker: String,
    text: String,
    source: TranscriptSource,
) -> Result<Transcript, ApiError> {
    check_text("text", &text, 1, MAX_TRANSCRIPT_CHARS)?;
    if text.trim().is_empty() {
        return Err(ApiError::invalid("text", "must not be blank"));
    }
    let m = state.machine(call_id).await?;
    if m.call.status.is_terminal() {
        return Err(ApiError::Conflict {
            code: "call_ended",
            message: format!("call {call_id} has ended"),
        });
    }
    let stored: usize = state
        .store
        .list_transcripts_by_call(call_id)
        .await?
        .iter()
        .map(|t| t.text.chars().count())
        .sum();
    if stored + text.chars().count() > MAX_CALL_TRANSCRIPT_CHARS {
        return Err(ApiError::Conflict {
            code: "transcript_too_long",
            message: format!(
                "call {call_id} already holds {stored} transcript characters; at most {MAX_CALL_TRANSCRIPT_CHARS} per call"
            ),
        });
    }
    let t = Transcript {
        transcript_id,
        call_id: call_id.to_string(),
        speaker,
        text,
        source,
        created_at: Utc::now(),
    };
    state.store.put_transcript(&t).await?;
    let shown = state.summaries.shown(&t.text);
    state
        .execute(
            call_id,
            Input::Observe(Observation::TranscriptAppended {
                transcript_id: t.transcript_id.clone(),
                speaker: t.speaker.clone(),
                text: Some(shown),
                source: t.source,
            }),
            None,
        )
        .await?;
    refresh_summary(state, call_id, false);
    Ok(t)
}

/// The observation telling a call of its new summary (pushed whole with `summary.updated`).
pub fn summary_stored(summary: &Summary) -> Observation {
    Observation::SummaryStored {
        summary_id: summary.summary_id.clone(),
        summary_text: summary.summary_text.clone(),
        briefing: crate::summary::briefing_view(summary),
    }
}

/// Starts a background refresh of the call's summary (`now`: without the debounce); each
/// summary it stores is told to the call actor (`summary.updated`, `lastSummaryId`).
pub fn refresh_summary(state: &AppState, call_id: &str, now: bool) {
    let st = state.clone();
    state.summaries.refresh(call_id, now, move |s: Summary| {
        let st = st.clone();
        async move {
            let r = st
                .execute(&s.call_id, Input::Observe(summary_stored(&s)), None)
                .await;
            if let Err(e) = r {
                tracing::warn!(call_id = %s.call_id, error = %e, "could not tell the call of its new summary");
            }
        }
    });
}

async fn create_transcript(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: Body<NewTranscript>,
) -> Result<HttpResponse, ApiError> {
    // An organisation's key (its assistant's worker) adds to its own calls' transcripts.
    let who = authenticate(&req, &state)?;
    let body = body.into_inner();
    check_id("callId", &body.call_id)?;
    check_text("text", &body.text, 1, MAX_TRANSCRIPT_CHARS)?;
    visible_call(&state, &who, &body.call_id).await?;
    let speaker = match (&who, body.speaker) {
        (Principal::Caller(_), _) => "caller".to_string(),
        (_, Some(s)) => {
            check_text("speaker", &s, 1, 100)?;
            s
        }
        (Principal::Agent(a), None) => a.clone(),
        (Principal::Admin, None) => String::new(),
        (Principal::Org(_), None) => "assistant".to_string(),
    };
    let t = append_transcript(&state, &body.call_id, speaker, body.text, body.source).await?;
    Ok(HttpResponse::Created().json(t))
}

/// A chunk as `who` is shown it: masked for agents when redaction is on (management sees it
/// as stored; a caller sees its own words).
fn as_shown(state: &AppState, who: &Principal, t: Transcript) -> Transcript {
    match who {
        Principal::Agent(_) => Transcript {
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
            state.summaries.store_human(&m.call, &text).await
        }
        // Not the transfer path: this may ask the LLM (and falls back to offline).
        None => state.summaries.generate(&m.call, true).await,
    }
    .map_err(summary_error)?;
    if !m.call.status.is_terminal() {
        state
            .execute(
                &body.call_id,
                Input::Observe(summary_stored(&summary)),
                None,
            )
            .await?;
    }
    Ok(HttpResponse::Created().json(summary))
}

/// Maps a summariser failure (only the store can fail: the LLM falls back to offline).
pub fn summary_error(e: crate::summary::SummaryError) -> ApiError {
    match e {
        crate::summary::SummaryError::Store(e) => e.into(),
        crate::summary::SummaryError::CallNotFound(id) => ApiError::not_found("call", &id),
        other => ApiError::Internal(Box::new(other)),
    }
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
