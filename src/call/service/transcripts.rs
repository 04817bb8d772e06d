//! Transcript chunks in, summaries kept fresh: the use cases shared by the REST API, the
//! WebSocket and the Twilio transcription webhook. Never waits for a summariser.

use chrono::Utc;

use super::{check_text, CallService, ServiceError};
use crate::call::machine::{Input, Observation};
use crate::model::{new_id, Call, Summary, Transcript, TranscriptSource};

/// Longest transcript chunk, in characters.
pub const MAX_TRANSCRIPT_CHARS: usize = 10_000;

/// The most transcript text one call may hold, in characters: no client (or provider) can
/// grow a call's transcript, and its summaries' input, without limit.
pub const MAX_CALL_TRANSCRIPT_CHARS: usize = 200_000;

/// The observation telling a call of its new summary (pushed whole with `summary.updated`).
pub fn summary_stored(summary: &Summary) -> Observation {
    Observation::SummaryStored {
        summary_id: summary.summary_id.clone(),
        summary_text: summary.summary_text.clone(),
        briefing: crate::summary::briefing_view(summary),
    }
}

impl CallService {
    /// Stores a transcript chunk of a live call, pushes `transcript.appended` to the call's
    /// agents (through the call actor, so it gets a `seq` and is stored like every event) and
    /// asks for a debounced background refresh of the call's summary. The transport has
    /// checked who may add to the call; this checks the text (1 to
    /// [`MAX_TRANSCRIPT_CHARS`] characters, at most [`MAX_CALL_TRANSCRIPT_CHARS`] per call)
    /// and that the call has not ended.
    pub async fn append_transcript(
        &self,
        call_id: &str,
        speaker: String,
        text: String,
        source: TranscriptSource,
    ) -> Result<Transcript, ServiceError> {
        self.append_with_id(call_id, new_id("tx"), speaker, text, source)
            .await
    }

    /// Like [`CallService::append_transcript`], with an id derived from the provider's own
    /// (a Twilio transcription's SID and sequence number): a retried callback finds the chunk
    /// already stored and changes nothing.
    pub async fn append_transcript_once(
        &self,
        call_id: &str,
        transcript_id: String,
        speaker: String,
        text: String,
        source: TranscriptSource,
    ) -> Result<Transcript, ServiceError> {
        if let Some(existing) = self.store.get_transcript(&transcript_id).await? {
            return Ok(existing);
        }
        self.append_with_id(call_id, transcript_id, speaker, text, source)
            .await
    }

    async fn append_with_id(
        &self,
        call_id: &str,
        transcript_id: String,
        speaker: String,
        text: String,
        source: TranscriptSource,
    ) -> Result<Transcript, ServiceError> {
        check_text("text", &text, 1, MAX_TRANSCRIPT_CHARS)?;
        if text.trim().is_empty() {
            return Err(ServiceError::invalid("text", "must not be blank"));
        }
        let m = self.machine(call_id).await?;
        if m.call.status.is_terminal() {
            return Err(ServiceError::call_ended(call_id));
        }
        let stored: usize = self
            .store
            .list_transcripts_by_call(call_id)
            .await?
            .iter()
            .map(|t| t.text.chars().count())
            .sum();
        if stored + text.chars().count() > MAX_CALL_TRANSCRIPT_CHARS {
            return Err(ServiceError::Conflict {
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
        self.store.put_transcript(&t).await?;
        let shown = self.summaries.shown(&t.text);
        self.execute(
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
        self.refresh_summary(call_id, false);
        Ok(t)
    }

    /// Starts a background refresh of the call's summary (`now`: without the debounce); each
    /// summary it stores is told to the call actor (`summary.updated`, `lastSummaryId`).
    pub fn refresh_summary(&self, call_id: &str, now: bool) {
        let service = self.clone();
        self.summaries.refresh(call_id, now, move |s: Summary| {
            let service = service.clone();
            async move {
                let r = service
                    .execute(&s.call_id, Input::Observe(summary_stored(&s)), None)
                    .await;
                if let Err(e) = r {
                    tracing::warn!(call_id = %s.call_id, error = %e, "could not tell the call of its new summary");
                }
            }
        });
    }

    /// Stores a summary for `call` now: `text` written by a person, or (without) generated
    /// (this may ask the LLM, and falls back to the offline summariser); a live call is told
    /// of it (`summary.updated`).
    pub async fn summarise(
        &self,
        call: &Call,
        text: Option<&str>,
    ) -> Result<Summary, ServiceError> {
        let summary = match text {
            Some(text) => {
                check_text("summaryText", text, 1, 10_000)?;
                self.summaries.store_human(call, text).await?
            }
            None => self.summaries.generate(call, true).await?,
        };
        if !call.status.is_terminal() {
            self.execute(
                &call.call_id,
                Input::Observe(summary_stored(&summary)),
                None,
            )
            .await?;
        }
        Ok(summary)
    }
}
