//! Summaries without an LLM: an extractive, deterministic offline summariser that never
//! invents content, and the helper that keeps a call's summary current before a transfer.

use chrono::Utc;

use crate::model::{new_id, Call, Summary, Transcript};
use crate::store::{Store, StoreError};

/// The `model` recorded on offline summaries.
pub const OFFLINE_MODEL: &str = "offline-extractive";

/// Longest excerpt taken from one transcript chunk.
const EXCERPT_CHARS: usize = 200;

fn excerpt(text: &str) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let first_sentence = text
        .split_inclusive(['.', '?', '!'])
        .next()
        .unwrap_or(&text)
        .trim()
        .to_string();
    if first_sentence.chars().count() > EXCERPT_CHARS {
        let cut: String = first_sentence.chars().take(EXCERPT_CHARS).collect();
        format!("{cut}…")
    } else {
        first_sentence
    }
}

/// An extractive summary: who called and why (as given), the caller's first points, and the
/// last thing said. Labelled as offline; says so when there is no transcript.
pub fn offline_summary(call: &Call, transcripts: &[Transcript]) -> String {
    let mut parts = vec!["[offline summary]".to_string()];
    let who = if call.caller_name.trim().is_empty() {
        "The caller".to_string()
    } else {
        format!("Caller {}", call.caller_name.trim())
    };
    if call.reason.trim().is_empty() {
        parts.push(format!("{who} gave no reason."));
    } else {
        parts.push(format!(
            "{who} called about: {}.",
            call.reason.trim().trim_end_matches('.')
        ));
    }
    if transcripts.is_empty() {
        parts.push("No transcript yet.".into());
        return parts.join(" ");
    }
    let caller_points: Vec<String> = transcripts
        .iter()
        .filter(|t| t.speaker == "caller" || t.speaker == call.caller_id)
        .map(|t| excerpt(&t.text))
        .filter(|s| !s.is_empty())
        .take(3)
        .collect();
    if !caller_points.is_empty() {
        parts.push(format!("Caller said: {}", caller_points.join(" / ")));
    }
    if let Some(last) = transcripts.iter().rev().find(|t| !t.text.trim().is_empty()) {
        let speaker = if last.speaker.is_empty() {
            "unknown speaker"
        } else {
            last.speaker.as_str()
        };
        parts.push(format!("Last ({speaker}): {}", excerpt(&last.text)));
    }
    parts.push(format!("{} transcript chunk(s).", transcripts.len()));
    parts.join(" ")
}

/// The call's newest summary if it covers every transcript chunk; otherwise a fresh offline
/// summary, stored. Returns the summary and whether it is new.
pub async fn current_summary(
    store: &dyn Store,
    call: &Call,
) -> Result<(Summary, bool), StoreError> {
    let transcripts = store.list_transcripts_by_call(&call.call_id).await?;
    let summaries = store.list_summaries_by_call(&call.call_id).await?;
    let newest_transcript = transcripts.iter().map(|t| t.created_at).max();
    if let Some(latest) = summaries.last() {
        if newest_transcript.is_none_or(|t| t <= latest.created_at) {
            return Ok((latest.clone(), false));
        }
    }
    let summary = Summary {
        summary_id: new_id("sum"),
        call_id: call.call_id.clone(),
        summary_text: offline_summary(call, &transcripts),
        model: OFFLINE_MODEL.into(),
        created_at: Utc::now(),
    };
    store.put_summary(&summary).await?;
    Ok((summary, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CallStatus, TranscriptSource};

    fn call(name: &str, reason: &str) -> Call {
        Call {
            call_id: "call-1".into(),
            caller_id: "caller-1".into(),
            caller_name: name.into(),
            reason: reason.into(),
            agent_a_id: None,
            agent_b_id: None,
            owner_id: None,
            offered_to: None,
            requested_agent_id: None,
            status: CallStatus::Active,
            main_room: "m".into(),
            hold_room: "h".into(),
            open_transfer_id: None,
            last_summary_id: None,
            end_reason: None,
            created_at: Utc::now(),
            end_at: None,
            metadata: serde_json::Value::Null,
            channel: Default::default(),
            caller_number: None,
        }
    }

    fn chunk(speaker: &str, text: &str) -> Transcript {
        Transcript {
            transcript_id: new_id("tx"),
            call_id: "call-1".into(),
            speaker: speaker.into(),
            text: text.into(),
            source: TranscriptSource::Manual,
            created_at: Utc::now(),
        }
    }

    #[test]
    fn without_transcript_it_says_so_and_invents_nothing() {
        let s = offline_summary(&call("Ann", ""), &[]);
        assert_eq!(
            s,
            "[offline summary] Caller Ann gave no reason. No transcript yet."
        );
    }

    #[test]
    fn extracts_caller_points_and_last_line() {
        let t = vec![
            chunk("caller", "My invoice is wrong. It shows two charges."),
            chunk("agent-a", "Let me check that for you."),
            chunk("caller", "I was charged twice in March!"),
        ];
        let s = offline_summary(&call("Ann", "billing"), &t);
        assert!(s.starts_with("[offline summary] Caller Ann called about: billing."));
        assert!(s.contains("Caller said: My invoice is wrong. / I was charged twice in March!"));
        assert!(s.contains("Last (caller): I was charged twice in March!"));
        assert!(
            !s.contains("two charges"),
            "only first sentences are extracted: {s}"
        );
    }

    #[test]
    fn long_text_is_cut() {
        let long = "a".repeat(1000);
        let s = offline_summary(&call("", ""), &[chunk("caller", &long)]);
        assert!(s.chars().count() < 700);
        assert!(s.contains('…'));
    }
}
