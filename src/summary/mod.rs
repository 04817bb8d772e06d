//! Summaries of calls: the [`Summarizer`] trait with its two implementations (an
//! OpenAI-compatible LLM in [`llm`], the offline extractive one in [`offline`], the default
//! and the fallback), redaction of personal data ([`redact`]), and [`Summaries`], which
//! generates and stores summary versions and keeps each call's summary fresh in the
//! background (debounced, at most one generation in flight per call).

pub mod llm;
pub mod offline;
pub mod redact;

use crate::secret::Secret;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;

use crate::model::{
    new_id, Call, Sentiment, Summary, SummarySource, TokenUsage, Transcript, Urgency,
};
use crate::store::{Store, StoreError};

pub use offline::OFFLINE_MODEL;

/// One OpenAI-compatible chat-completions endpoint (`LLM_*`).
#[derive(Debug, Clone, PartialEq)]
pub struct LlmEndpoint {
    /// `openai`, `openrouter`, `groq`, or `custom` (an `LLM_BASE_URL` of its own).
    pub provider: String,
    /// Base URL; requests go to `{base_url}/chat/completions`.
    pub base_url: String,
    /// The model asked for.
    pub model: String,
    /// Sent as `Authorization: Bearer`; `None` for a local server without a key.
    pub api_key: Option<Secret>,
    /// Deadline of one attempt (`LLM_TIMEOUT`).
    pub timeout: Duration,
    /// Retries after a 429, a 5xx or a connection failure (`LLM_RETRIES`).
    pub retries: u32,
    /// Ask for a streamed (SSE) answer (`LLM_STREAM`, default on).
    pub stream: bool,
}

/// Summaries: the LLM endpoint (none = offline only), redaction and the refresh debounce.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmConfig {
    /// The LLM, when a key (or an own `LLM_BASE_URL`) is configured.
    pub endpoint: Option<LlmEndpoint>,
    /// Mask personal data before it leaves for the provider and in what agents are shown
    /// (`SWITCHBOARD_REDACT`, default on).
    pub redact: bool,
    /// Quiet time after new transcript text before a summary is regenerated
    /// (`SWITCHBOARD_SUMMARY_DEBOUNCE`).
    pub debounce: Duration,
}

/// The `model` recorded on human-written summaries.
pub const HUMAN_MODEL: &str = "human";

/// What a summariser reads: the call and its transcript (already redacted when redaction is
/// on).
#[derive(Debug, Clone, Copy)]
pub struct SummaryInput<'a> {
    /// The call (caller name, reason given).
    pub call: &'a Call,
    /// The transcript chunks, oldest first.
    pub transcripts: &'a [Transcript],
}

/// The structured briefing a summariser produces (stored as the fields of a [`Summary`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Draft {
    /// Short free text (`summaryText`).
    pub summary_text: String,
    /// Why the customer called.
    pub reason: String,
    /// Details the customer gave.
    pub customer_details: Vec<String>,
    /// What was tried.
    pub tried: Vec<String>,
    /// What the customer was promised.
    pub promised: Vec<String>,
    /// The open question or next step for Agent B.
    pub next_step: String,
    /// The caller's mood.
    pub sentiment: Sentiment,
    /// How soon help is needed.
    pub urgency: Urgency,
    /// One short spoken paragraph for a phone specialist.
    pub whisper_text: String,
    /// A briefing script for Agent A.
    pub script: String,
    /// Tokens used (LLM only).
    pub usage: Option<TokenUsage>,
}

/// Why a summary could not be made or stored.
#[derive(Debug, thiserror::Error)]
pub enum SummaryError {
    /// The store failed.
    #[error("the store failed while summarising")]
    Store(#[source] StoreError),
    /// The LLM gave no usable answer (the caller falls back to the offline summariser).
    #[error("the LLM gave no usable summary")]
    Llm(#[source] llm::LlmError),
    /// The call does not exist.
    #[error("call {0} not found")]
    CallNotFound(String),
}

impl From<StoreError> for SummaryError {
    fn from(e: StoreError) -> Self {
        SummaryError::Store(e)
    }
}

impl SummaryError {
    /// A short, stable label recorded as a summary's `fallbackReason`.
    pub fn label(&self) -> String {
        match self {
            SummaryError::Llm(e) => e.label(),
            SummaryError::Store(_) => "store".into(),
            SummaryError::CallNotFound(_) => "call_not_found".into(),
        }
    }
}

/// Something that turns a transcript into a briefing.
#[async_trait]
pub trait Summarizer: Send + Sync + 'static {
    /// How its summaries are labelled.
    fn source(&self) -> SummarySource;
    /// The `model` recorded on its summaries.
    fn model(&self) -> String;
    /// Summarises.
    async fn summarize(&self, input: &SummaryInput<'_>) -> Result<Draft, SummaryError>;
}

/// The offline extractive summariser as a [`Summarizer`].
#[derive(Debug, Clone, Copy, Default)]
pub struct OfflineSummarizer;

#[async_trait]
impl Summarizer for OfflineSummarizer {
    fn source(&self) -> SummarySource {
        SummarySource::Offline
    }
    fn model(&self) -> String {
        OFFLINE_MODEL.into()
    }
    async fn summarize(&self, input: &SummaryInput<'_>) -> Result<Draft, SummaryError> {
        Ok(offline::summarize(input.call, input.transcripts))
    }
}

#[async_trait]
impl Summarizer for llm::LlmClient {
    fn source(&self) -> SummarySource {
        SummarySource::Llm
    }
    fn model(&self) -> String {
        llm::LlmClient::model(self).to_string()
    }
    async fn summarize(&self, input: &SummaryInput<'_>) -> Result<Draft, SummaryError> {
        llm::LlmClient::summarize(self, input)
            .await
            .map_err(SummaryError::Llm)
    }
}

/// What a transfer is handed: the latest stored summary, and whether a refresh should follow.
#[derive(Debug, Clone)]
pub struct TransferSummary {
    /// The summary to hand to B.
    pub summary: Summary,
    /// Whether it was made (offline) and stored just now because the call had none.
    pub stored_now: bool,
    /// Whether the transcript moved on since (or a better summariser is available): start a
    /// refresh once the transfer is offered.
    pub stale: bool,
}

struct Slot {
    /// A request arrived after the current generation read the transcript.
    dirty: bool,
    /// Which task owns the slot.
    token: u64,
    /// Cuts the debounce short (a transfer wants the refresh now).
    wake: Arc<tokio::sync::Notify>,
}

struct Inner {
    store: Arc<dyn Store>,
    primary: Option<Arc<dyn Summarizer>>,
    redact: bool,
    debounce: Duration,
    slots: Mutex<HashMap<String, Slot>>,
    tokens: AtomicU64,
    generated: AtomicU64,
}

/// Generates, stores and refreshes call summaries. Cheap to clone.
#[derive(Clone)]
pub struct Summaries {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Summaries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Summaries")
            .field("llm", &self.inner.primary.as_ref().map(|p| p.model()))
            .field("redact", &self.inner.redact)
            .field("debounce", &self.inner.debounce)
            .finish()
    }
}

/// Removes a refresh slot when its task ends, however it ends.
struct SlotGuard {
    inner: Arc<Inner>,
    call_id: String,
    token: u64,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let mut slots = self.inner.slots.lock().unwrap_or_else(|p| p.into_inner());
        if slots
            .get(&self.call_id)
            .is_some_and(|s| s.token == self.token)
        {
            slots.remove(&self.call_id);
        }
    }
}

impl Summaries {
    /// The summaries of the configuration: the LLM when an endpoint is configured, offline
    /// otherwise.
    pub fn new(store: Arc<dyn Store>, config: &LlmConfig) -> Result<Summaries, SummaryError> {
        let primary: Option<Arc<dyn Summarizer>> = match &config.endpoint {
            Some(endpoint) => Some(Arc::new(
                llm::LlmClient::new(endpoint.clone()).map_err(SummaryError::Llm)?,
            )),
            None => None,
        };
        Ok(Summaries::with_summarizer(
            store,
            primary,
            config.redact,
            config.debounce,
        ))
    }

    /// Summaries with a given primary summariser (`None`: offline only).
    pub fn with_summarizer(
        store: Arc<dyn Store>,
        primary: Option<Arc<dyn Summarizer>>,
        redact: bool,
        debounce: Duration,
    ) -> Summaries {
        Summaries {
            inner: Arc::new(Inner {
                store,
                primary,
                redact,
                debounce,
                slots: Mutex::new(HashMap::new()),
                tokens: AtomicU64::new(0),
                generated: AtomicU64::new(0),
            }),
        }
    }

    /// Whether personal data is masked (for the provider and for what agents are shown).
    pub fn redacts(&self) -> bool {
        self.inner.redact
    }

    /// Text as agents are shown it: masked when redaction is on.
    pub fn shown(&self, text: &str) -> String {
        if self.inner.redact {
            redact::redact(text)
        } else {
            text.to_string()
        }
    }

    /// How many summaries this instance generated and stored (human ones not counted).
    pub fn generated(&self) -> u64 {
        self.inner.generated.load(Ordering::Relaxed)
    }

    /// How many calls have a refresh pending or running.
    pub fn in_flight(&self) -> usize {
        self.inner.slots.lock().map(|s| s.len()).unwrap_or(0)
    }

    fn prepared(&self, transcripts: Vec<Transcript>) -> Vec<Transcript> {
        if !self.inner.redact {
            return transcripts;
        }
        transcripts
            .into_iter()
            .map(|t| Transcript {
                text: redact::redact(&t.text),
                ..t
            })
            .collect()
    }

    /// Summarises the call now and stores the result as a new version. With `use_llm` and a
    /// configured provider the LLM writes it; when the provider fails, the offline summariser
    /// does, and the summary says why (`fallbackReason`).
    pub async fn generate(&self, call: &Call, use_llm: bool) -> Result<Summary, SummaryError> {
        let s = self.make(call, use_llm).await?;
        self.store(&s).await
    }

    async fn make(&self, call: &Call, use_llm: bool) -> Result<Summary, SummaryError> {
        let store = &self.inner.store;
        let transcripts = self.prepared(store.list_transcripts_by_call(&call.call_id).await?);
        let input = SummaryInput {
            call,
            transcripts: &transcripts,
        };
        let primary = self.inner.primary.as_ref().filter(|_| use_llm);
        let (draft, source, model, fallback_reason) = match primary {
            Some(p) => match p.summarize(&input).await {
                Ok(d) => (d, p.source(), p.model(), None),
                Err(e) => {
                    tracing::warn!(call_id = %call.call_id, error = %e, reason = %e.label(), "LLM summary failed; using the offline summariser");
                    crate::metrics::metrics().provider_error("llm");
                    (
                        offline::summarize(call, &transcripts),
                        SummarySource::Offline,
                        OFFLINE_MODEL.to_string(),
                        Some(e.label()),
                    )
                }
            },
            None => (
                offline::summarize(call, &transcripts),
                SummarySource::Offline,
                OFFLINE_MODEL.to_string(),
                None,
            ),
        };
        Ok(Summary {
            summary_id: new_id("sum"),
            call_id: call.call_id.clone(),
            summary_text: draft.summary_text,
            model,
            created_at: Utc::now(),
            source,
            version: 0,
            transcript_count: transcripts.len() as u64,
            reason: draft.reason,
            customer_details: draft.customer_details,
            tried: draft.tried,
            promised: draft.promised,
            next_step: draft.next_step,
            sentiment: draft.sentiment,
            urgency: draft.urgency,
            whisper_text: draft.whisper_text,
            script: draft.script,
            usage: draft.usage,
            fallback_reason,
        })
    }

    /// Numbers the summary after the call's latest and stores it.
    async fn store(&self, s: &Summary) -> Result<Summary, SummaryError> {
        let existing = self.inner.store.list_summaries_by_call(&s.call_id).await?;
        let version = existing
            .iter()
            .map(|x| x.version)
            .max()
            .unwrap_or(0)
            .max(existing.len() as u64)
            + 1;
        let s = Summary {
            version,
            created_at: Utc::now(),
            ..s.clone()
        };
        self.inner.store.put_summary(&s).await?;
        if s.source != SummarySource::Human {
            self.inner.generated.fetch_add(1, Ordering::Relaxed);
        }
        Ok(s)
    }

    /// Stores a human-written summary (covering the transcript as it is now).
    pub async fn store_human(&self, call: &Call, text: &str) -> Result<Summary, SummaryError> {
        let transcripts = self
            .inner
            .store
            .list_transcripts_by_call(&call.call_id)
            .await?;
        let s = Summary {
            summary_id: new_id("sum"),
            call_id: call.call_id.clone(),
            summary_text: text.to_string(),
            model: HUMAN_MODEL.into(),
            created_at: Utc::now(),
            source: SummarySource::Human,
            transcript_count: transcripts.len() as u64,
            whisper_text: text.to_string(),
            ..Summary::default()
        };
        self.store(&s).await
    }

    /// The summary a transfer hands to B, at once and never from an LLM: the latest stored
    /// one, or (when the call has none) an offline one made and stored now.
    pub async fn for_transfer(&self, call: &Call) -> Result<TransferSummary, SummaryError> {
        let store = &self.inner.store;
        let transcripts = store.list_transcripts_by_call(&call.call_id).await?;
        let latest = store
            .list_summaries_by_call(&call.call_id)
            .await?
            .into_iter()
            .max_by_key(|s| (s.version, s.created_at));
        let (summary, stored_now) = match latest {
            Some(s) => (s, false),
            None => (self.generate(call, false).await?, true),
        };
        let stale = self.needs_refresh(&summary, transcripts.len());
        Ok(TransferSummary {
            summary,
            stored_now,
            stale,
        })
    }

    /// Whether a summary covering `count` chunks should be regenerated: the transcript grew,
    /// or an LLM is configured and the summary is offline without having tried it.
    fn needs_refresh(&self, s: &Summary, count: usize) -> bool {
        (s.transcript_count as usize) < count
            || (self.inner.primary.is_some()
                && count > 0
                && s.source == SummarySource::Offline
                && s.fallback_reason.is_none())
    }

    /// One background regeneration: `None` when the call is gone or ended, or the latest
    /// summary is still current (or a newer one, human or not, landed meanwhile).
    async fn refresh_once(&self, call_id: &str) -> Result<Option<Summary>, SummaryError> {
        let store = &self.inner.store;
        let Some(stored) = store.get_call(call_id).await? else {
            return Ok(None);
        };
        if stored.call.status.is_terminal() {
            return Ok(None);
        }
        let count = store.list_transcripts_by_call(call_id).await?.len();
        let latest =
            |list: Vec<Summary>| list.into_iter().max_by_key(|s| (s.version, s.created_at));
        let before = latest(store.list_summaries_by_call(call_id).await?);
        if before
            .as_ref()
            .is_some_and(|s| !self.needs_refresh(s, count))
        {
            return Ok(None);
        }
        let made = self.make(&stored.call, true).await?;
        let now = latest(store.list_summaries_by_call(call_id).await?);
        let superseded = now.as_ref().is_some_and(|n| {
            before.as_ref().map(|b| &b.summary_id) != Some(&n.summary_id)
                && n.transcript_count >= made.transcript_count
        });
        if superseded {
            return Ok(None);
        }
        Ok(Some(self.store(&made).await?))
    }

    /// Asks for the call's summary to be regenerated in the background. Never waits: after
    /// `debounce` (at once with `now`, which also cuts a pending debounce short) one
    /// generation runs; requests that arrive meanwhile are folded into it or into one more,
    /// so at most one generation per call is in flight.
    /// `on_stored` is called with each summary stored (to tell the call actor). Must be
    /// called within an actix system (the task is spawned on the current arbiter).
    pub fn refresh<F, Fut>(&self, call_id: &str, now: bool, on_stored: F)
    where
        F: Fn(Summary) -> Fut + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let token = self.inner.tokens.fetch_add(1, Ordering::Relaxed) + 1;
        let wake = Arc::new(tokio::sync::Notify::new());
        {
            let mut slots = self.inner.slots.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(slot) = slots.get_mut(call_id) {
                slot.dirty = true;
                if now {
                    slot.wake.notify_one();
                }
                return;
            }
            slots.insert(
                call_id.to_string(),
                Slot {
                    dirty: false,
                    token,
                    wake: wake.clone(),
                },
            );
        }
        let this = self.clone();
        let guard = SlotGuard {
            inner: self.inner.clone(),
            call_id: call_id.to_string(),
            token,
        };
        actix_rt::spawn(async move {
            let call_id = guard.call_id.clone();
            let mut wait = !now;
            loop {
                if wait {
                    tokio::select! {
                        _ = tokio::time::sleep(this.inner.debounce) => {}
                        _ = wake.notified() => {}
                    }
                }
                wait = true;
                if let Some(slot) = this
                    .inner
                    .slots
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_mut(&call_id)
                {
                    slot.dirty = false;
                }
                match this.refresh_once(&call_id).await {
                    Ok(Some(s)) => on_stored(s).await,
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(call_id = %call_id, error = %e, "summary refresh failed")
                    }
                }
                let mut slots = this.inner.slots.lock().unwrap_or_else(|p| p.into_inner());
                match slots.get(&call_id) {
                    Some(slot) if slot.token == token && slot.dirty => continue,
                    Some(slot) if slot.token == token => {
                        slots.remove(&call_id);
                        break;
                    }
                    _ => break,
                }
            }
            drop(guard);
        });
    }
}

#[cfg(test)]
mod tests;

/// A summary's structured briefing as agents are shown it (pushed with `transfer.offered` and
/// `summary.updated`; summaries are written from masked transcripts, so nothing here needs
/// masking again).
pub fn briefing_view(summary: &Summary) -> serde_json::Value {
    serde_json::json!({
        "summaryId": summary.summary_id,
        "source": summary.source,
        "version": summary.version,
        "reason": summary.reason,
        "customerDetails": summary.customer_details,
        "tried": summary.tried,
        "promised": summary.promised,
        "nextStep": summary.next_step,
        "sentiment": summary.sentiment,
        "urgency": summary.urgency,
        "whisperText": summary.whisper_text,
        "script": summary.script,
    })
}
