//! The LLM summariser: any OpenAI-compatible `POST {base}/chat/completions` endpoint
//! (OpenAI, OpenRouter, Groq, a local server), asked for a JSON briefing. A request timeout,
//! retries with backoff on 429 and 5xx (honouring `Retry-After`), streaming (SSE) when
//! configured, and the token usage recorded on the summary.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use super::LlmEndpoint;
use super::{Draft, SummaryInput};
use crate::model::{Sentiment, TokenUsage, Urgency};

/// Longest wait a `Retry-After` may ask for; a longer one ends the attempts.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// First backoff; doubled on each retry.
const BACKOFF: Duration = Duration::from_millis(250);
/// Transcript characters sent at most (the head and the tail of longer ones).
const MAX_PROMPT_CHARS: usize = 24_000;
/// Words kept of `whisperText`.
const WHISPER_MAX_WORDS: usize = 60;

/// Why the provider gave no usable summary.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// The HTTP client could not be built.
    #[error("could not build the HTTP client")]
    Client(#[source] reqwest::Error),
    /// No answer within the timeout.
    #[error("the provider did not answer within {0:?}")]
    Timeout(Duration),
    /// The request could not be sent or the answer not read.
    #[error("the provider could not be reached")]
    Transport(#[source] reqwest::Error),
    /// The provider answered with an error status (after the retries).
    #[error("the provider answered {status}")]
    Status {
        /// The HTTP status.
        status: u16,
    },
    /// The answer is not the JSON briefing asked for.
    #[error("the provider's answer is malformed: {0}")]
    Malformed(String),
}

impl LlmError {
    /// A short, stable label (recorded as the fallback reason; no secrets, no bodies).
    pub fn label(&self) -> String {
        match self {
            LlmError::Client(_) => "client".into(),
            LlmError::Timeout(_) => "timeout".into(),
            LlmError::Transport(_) => "unreachable".into(),
            LlmError::Status { status } => format!("status_{status}"),
            LlmError::Malformed(_) => "malformed".into(),
        }
    }
}

/// The client of one OpenAI-compatible endpoint.
#[derive(Clone)]
pub struct LlmClient {
    http: reqwest::Client,
    endpoint: LlmEndpoint,
}

impl std::fmt::Debug for LlmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmClient")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

const SYSTEM_PROMPT: &str = "You brief a contact-centre agent (Agent B) who is about to take \
over a live call from a colleague (Agent A). Read the call transcript and answer with one JSON \
object and nothing else, with exactly these keys: \
\"reason\" (why the customer called, one sentence), \
\"customerDetails\" (array of short strings: details the customer gave), \
\"tried\" (array: what was already tried), \
\"promised\" (array: what the customer was promised), \
\"nextStep\" (the open question or next step for Agent B), \
\"sentiment\" (one of positive, neutral, negative, angry), \
\"urgency\" (one of low, normal, high), \
\"summaryText\" (at most 80 words), \
\"whisperText\" (one plain spoken paragraph of at most 45 words for a phone specialist: no \
lists, no symbols, no abbreviations), \
\"script\" (what Agent A can say to brief Agent B, at most 80 words). \
Use only facts from the transcript; never invent any. Masked values such as [card] or [email] \
stay masked. If the transcript is empty, say so.";

/// The user message: the call's given details and the transcript, one line per chunk.
pub fn render_prompt(input: &SummaryInput<'_>) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "Caller name: {}\nReason given: {}\nTranscript:\n",
        non_empty(&input.call.caller_name),
        non_empty(&input.call.reason)
    ));
    let mut body = String::new();
    for t in input.transcripts {
        let speaker = if t.speaker == "caller" || t.speaker == input.call.caller_id {
            "caller".to_string()
        } else if t.speaker.is_empty() {
            "unknown".to_string()
        } else {
            format!("agent {}", t.speaker)
        };
        body.push_str(&format!("[{speaker}] {}\n", t.text.trim()));
    }
    if body.is_empty() {
        body.push_str("(no transcript)\n");
    }
    if body.chars().count() > MAX_PROMPT_CHARS {
        let head: String = body.chars().take(MAX_PROMPT_CHARS / 6).collect();
        let tail_len = MAX_PROMPT_CHARS - MAX_PROMPT_CHARS / 6;
        let skip = body.chars().count() - tail_len;
        let tail: String = body.chars().skip(skip).collect();
        body = format!("{head}\n[… middle of the call left out …]\n{tail}");
    }
    out.push_str(&body);
    out
}

fn non_empty(s: &str) -> &str {
    if s.trim().is_empty() {
        "(not given)"
    } else {
        s.trim()
    }
}

/// The briefing as the model returns it (lenient: missing lists are empty).
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ModelBriefing {
    reason: Value,
    customer_details: Value,
    tried: Value,
    promised: Value,
    next_step: Value,
    sentiment: Value,
    urgency: Value,
    summary_text: Value,
    whisper_text: Value,
    script: Value,
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.trim().to_string(),
        Value::Null => String::new(),
        Value::Array(items) => items.iter().map(text_of).collect::<Vec<_>>().join(" "),
        other => other.to_string(),
    }
}

fn list_of(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items
            .iter()
            .map(text_of)
            .filter(|s| !s.is_empty())
            .collect(),
        Value::Null => vec![],
        other => {
            let s = text_of(other);
            if s.is_empty() {
                vec![]
            } else {
                vec![s]
            }
        }
    }
}

/// Parses the model's message content into a draft.
pub fn parse_briefing(content: &str) -> Result<Draft, LlmError> {
    let start = content.find('{');
    let end = content.rfind('}');
    let (Some(start), Some(end)) = (start, end) else {
        return Err(LlmError::Malformed("no JSON object in the answer".into()));
    };
    if end < start {
        return Err(LlmError::Malformed("no JSON object in the answer".into()));
    }
    let b: ModelBriefing = serde_json::from_str(&content[start..=end])
        .map_err(|e| LlmError::Malformed(format!("not the JSON asked for: {e}")))?;
    let summary_text = text_of(&b.summary_text);
    if summary_text.is_empty() {
        return Err(LlmError::Malformed("summaryText is missing".into()));
    }
    let sentiment = match text_of(&b.sentiment).to_lowercase().as_str() {
        "positive" => Sentiment::Positive,
        "negative" => Sentiment::Negative,
        "angry" => Sentiment::Angry,
        _ => Sentiment::Neutral,
    };
    let urgency = match text_of(&b.urgency).to_lowercase().as_str() {
        "low" => Urgency::Low,
        "high" => Urgency::High,
        _ => Urgency::Normal,
    };
    let mut whisper = text_of(&b.whisper_text);
    if whisper.is_empty() {
        whisper = summary_text.clone();
    }
    let words: Vec<&str> = whisper.split_whitespace().collect();
    if words.len() > WHISPER_MAX_WORDS {
        whisper = format!(
            "{}.",
            words[..WHISPER_MAX_WORDS]
                .join(" ")
                .trim_end_matches([',', '.', ';'])
        );
    }
    Ok(Draft {
        summary_text,
        reason: text_of(&b.reason),
        customer_details: list_of(&b.customer_details),
        tried: list_of(&b.tried),
        promised: list_of(&b.promised),
        next_step: text_of(&b.next_step),
        sentiment,
        urgency,
        whisper_text: whisper,
        script: text_of(&b.script),
        usage: None,
    })
}

fn usage_of(v: &Value) -> Option<TokenUsage> {
    let u = v.get("usage").filter(|u| u.is_object())?;
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let prompt = n("prompt_tokens");
    let completion = n("completion_tokens");
    let total = match n("total_tokens") {
        0 => prompt + completion,
        t => t,
    };
    Some(TokenUsage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: total,
    })
}

/// Reads a streamed answer (SSE `data:` lines, ended by `[DONE]`): the content and usage.
fn parse_sse(body: &str) -> Result<(String, Option<TokenUsage>), LlmError> {
    let mut content = String::new();
    let mut usage = None;
    let mut done = false;
    for line in body.lines() {
        let Some(data) = line.strip_prefix("data:") else {
            continue;
        };
        let data = data.trim();
        if data == "[DONE]" {
            done = true;
            break;
        }
        let chunk: Value = serde_json::from_str(data)
            .map_err(|e| LlmError::Malformed(format!("bad stream chunk: {e}")))?;
        if let Some(piece) = chunk
            .pointer("/choices/0/delta/content")
            .and_then(Value::as_str)
        {
            content.push_str(piece);
        }
        if let Some(u) = usage_of(&chunk).or_else(|| chunk.get("x_groq").and_then(usage_of)) {
            usage = Some(u);
        }
    }
    if !done {
        return Err(LlmError::Malformed(
            "the stream ended without [DONE]".into(),
        ));
    }
    Ok((content, usage))
}

enum Attempt {
    Done(Draft),
    /// Worth another try (429, 5xx, unreachable), after the server's `Retry-After` if any.
    Retry(LlmError, Option<Duration>),
    Fail(LlmError),
}

fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let v = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?;
    v.trim()
        .parse::<f64>()
        .ok()
        .filter(|s| *s >= 0.0 && s.is_finite())
        .map(Duration::from_secs_f64)
}

impl LlmClient {
    /// A client of the endpoint.
    pub fn new(endpoint: LlmEndpoint) -> Result<Self, LlmError> {
        let http = reqwest::Client::builder()
            .connect_timeout(endpoint.timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(LlmError::Client)?;
        Ok(LlmClient { http, endpoint })
    }

    /// The model asked for.
    pub fn model(&self) -> &str {
        &self.endpoint.model
    }

    /// The request body for this input.
    pub fn request_body(&self, input: &SummaryInput<'_>) -> Value {
        let mut body = json!({
            "model": self.endpoint.model,
            "messages": [
                { "role": "system", "content": SYSTEM_PROMPT },
                { "role": "user", "content": render_prompt(input) },
            ],
            "temperature": 0.2,
            "response_format": { "type": "json_object" },
            "stream": self.endpoint.stream,
        });
        if self.endpoint.stream {
            body["stream_options"] = json!({ "include_usage": true });
        }
        body
    }

    /// Asks the provider for a briefing, with the configured timeout (per attempt) and
    /// retries with backoff on 429, 5xx and connection failures.
    pub async fn summarize(&self, input: &SummaryInput<'_>) -> Result<Draft, LlmError> {
        let body = self.request_body(input);
        let url = format!(
            "{}/chat/completions",
            self.endpoint.base_url.trim_end_matches('/')
        );
        let mut attempt = 0u32;
        loop {
            let outcome = match tokio::time::timeout(
                self.endpoint.timeout,
                self.attempt(&url, &body),
            )
            .await
            {
                Ok(outcome) => outcome,
                Err(_) => Attempt::Fail(LlmError::Timeout(self.endpoint.timeout)),
            };
            match outcome {
                Attempt::Done(d) => return Ok(d),
                Attempt::Fail(e) => return Err(e),
                Attempt::Retry(e, _) if attempt >= self.endpoint.retries => return Err(e),
                Attempt::Retry(e, after) => {
                    let wait = after.unwrap_or(BACKOFF * 2u32.pow(attempt.min(8)));
                    if wait > MAX_RETRY_AFTER {
                        return Err(e);
                    }
                    tracing::info!(
                        attempt = attempt + 1,
                        wait_ms = wait.as_millis() as u64,
                        error = %e,
                        "LLM request failed; retrying"
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
            }
        }
    }

    async fn attempt(&self, url: &str, body: &Value) -> Attempt {
        let mut req = self.http.post(url).json(body);
        if let Some(key) = &self.endpoint.api_key {
            req = req.bearer_auth(key.expose());
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return Attempt::Retry(LlmError::Transport(e), None),
        };
        let status = resp.status();
        if status.as_u16() == 429 || status.is_server_error() {
            let after = retry_after(&resp);
            return Attempt::Retry(
                LlmError::Status {
                    status: status.as_u16(),
                },
                after,
            );
        }
        if !status.is_success() {
            return Attempt::Fail(LlmError::Status {
                status: status.as_u16(),
            });
        }
        let streamed = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let text = match resp.text().await {
            Ok(t) => t,
            Err(e) => return Attempt::Fail(LlmError::Transport(e)),
        };
        let parsed = if streamed {
            parse_sse(&text)
        } else {
            serde_json::from_str::<Value>(&text)
                .map_err(|e| LlmError::Malformed(format!("the answer is not JSON: {e}")))
                .and_then(|v| {
                    let content = v
                        .pointer("/choices/0/message/content")
                        .and_then(Value::as_str)
                        .ok_or_else(|| LlmError::Malformed("no choices[0].message.content".into()))?
                        .to_string();
                    Ok((content, usage_of(&v)))
                })
        };
        match parsed
            .and_then(|(content, usage)| parse_briefing(&content).map(|d| Draft { usage, ..d }))
        {
            Ok(d) => Attempt::Done(d),
            Err(e) => Attempt::Fail(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fenced_briefing_parses_leniently() {
        let d = parse_briefing(
            "```json\n{\"reason\":\"double charge\",\"customerDetails\":\"Ann\",\
             \"tried\":[\"checked account\"],\"sentiment\":\"ANGRY\",\"urgency\":\"high\",\
             \"summaryText\":\"Ann was charged twice.\"}\n```",
        )
        .unwrap();
        assert_eq!(d.reason, "double charge");
        assert_eq!(d.customer_details, ["Ann"]);
        assert_eq!(d.tried, ["checked account"]);
        assert_eq!(d.sentiment, Sentiment::Angry);
        assert_eq!(d.urgency, Urgency::High);
        assert_eq!(d.whisper_text, "Ann was charged twice.");
    }

    #[test]
    fn answers_without_a_summary_are_malformed() {
        for bad in ["I cannot help", "{\"reason\": 1}", "{not json}", "}{"] {
            assert!(
                matches!(parse_briefing(bad), Err(LlmError::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn sse_streams_are_joined_and_need_done() {
        let body = "data: {\"choices\":[{\"delta\":{\"content\":\"{\\\"summaryText\\\":\"}}]}\n\n\
                    data: {\"choices\":[{\"delta\":{\"content\":\"\\\"hi\\\"}\"}}]}\n\n\
                    data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\n\
                    data: [DONE]\n\n";
        let (content, usage) = parse_sse(body).unwrap();
        assert_eq!(content, "{\"summaryText\":\"hi\"}");
        assert_eq!(usage.unwrap().total_tokens, 5);
        assert!(parse_sse("data: {\"choices\":[]}\n").is_err());
    }
}
