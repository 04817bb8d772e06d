//! Conformance checks of transcripts and summaries
//! ([`TranscriptStore`](crate::store::TranscriptStore)).

use super::fixtures::{self};
use crate::store::{Store, StoreError};

/// Transcripts are listed by call in `createdAt` then id order, read by id, and a taken
/// id is `AlreadyExists`.
pub async fn transcripts_by_call_in_order(store: &dyn Store) {
    let call_id = crate::model::new_id("call");
    let other_call = crate::model::new_id("call");
    let late = fixtures::transcript(&call_id, 2_000);
    let early = fixtures::transcript(&call_id, -1_000);
    let mut tie_b = fixtures::transcript(&call_id, 500);
    let base = tie_b.transcript_id.clone();
    tie_b.transcript_id = format!("{base}-b");
    let mut tie_a = tie_b.clone();
    tie_a.transcript_id = format!("{base}-a");
    tie_a.speaker = "agent-1".into();
    tie_a.source = crate::model::TranscriptSource::Whisper;
    let elsewhere = fixtures::transcript(&other_call, 0);
    for t in [&late, &tie_b, &elsewhere, &early, &tie_a] {
        store.put_transcript(t).await.expect("put_transcript");
    }
    assert_eq!(
        store.list_transcripts_by_call(&call_id).await.unwrap(),
        vec![early.clone(), tie_a.clone(), tie_b.clone(), late.clone()]
    );
    assert_eq!(
        store.get_transcript(&tie_a.transcript_id).await.unwrap(),
        Some(tie_a.clone())
    );
    let mut dup = late.clone();
    dup.text = "overwrite".into();
    match store.put_transcript(&dup).await {
        Err(StoreError::AlreadyExists { entity, id }) => {
            assert_eq!(entity, "transcript");
            assert_eq!(id, late.transcript_id);
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(
        store.get_transcript(&late.transcript_id).await.unwrap(),
        Some(late)
    );
    assert_eq!(
        store.list_transcripts_by_call(&other_call).await.unwrap(),
        vec![elsewhere]
    );
}

/// A summary with the whole structured briefing (lists, usage, labels) reads back equal, by
/// id and by call; so does one with only the classic six-table layout's fields (the defaults).
pub async fn structured_summaries_round_trip(store: &dyn Store) {
    use crate::model::{Sentiment, SummarySource, TokenUsage, Urgency};
    let call_id = crate::model::new_id("call");
    let plain = fixtures::summary(&call_id, 0);
    let full = crate::model::Summary {
        source: SummarySource::Llm,
        model: "gpt-4o-mini".into(),
        version: 2,
        transcript_count: 7,
        reason: "double charge in March".into(),
        customer_details: vec!["Ann Lee".into(), "order ORD-2026-10458".into()],
        tried: vec!["checked the statement".into()],
        promised: vec![],
        next_step: "waive the late fee?".into(),
        sentiment: Sentiment::Angry,
        urgency: Urgency::High,
        whisper_text: "Ann was charged twice in March.".into(),
        script: "Hi, I have Ann on hold.".into(),
        usage: Some(TokenUsage {
            prompt_tokens: 812,
            completion_tokens: 143,
            total_tokens: 955,
        }),
        fallback_reason: Some("timeout".into()),
        ..fixtures::summary(&call_id, 1_000)
    };
    for s in [&plain, &full] {
        store.put_summary(s).await.expect("put_summary");
    }
    assert_eq!(
        store.get_summary(&full.summary_id).await.unwrap(),
        Some(full.clone())
    );
    assert_eq!(
        store.list_summaries_by_call(&call_id).await.unwrap(),
        vec![plain, full]
    );
}

/// Summaries are listed by call oldest first, read by id, and a taken id is `AlreadyExists`.
pub async fn summaries_by_call_in_order(store: &dyn Store) {
    let call_id = crate::model::new_id("call");
    let second = fixtures::summary(&call_id, 1_000);
    let first = fixtures::summary(&call_id, 0);
    let third = fixtures::summary(&call_id, 2_000);
    let elsewhere = fixtures::summary(&crate::model::new_id("call"), 0);
    for s in [&second, &elsewhere, &third, &first] {
        store.put_summary(s).await.expect("put_summary");
    }
    assert_eq!(
        store.list_summaries_by_call(&call_id).await.unwrap(),
        vec![first.clone(), second.clone(), third.clone()]
    );
    assert_eq!(
        store.get_summary(&second.summary_id).await.unwrap(),
        Some(second.clone())
    );
    let mut dup = first.clone();
    dup.summary_text = "overwrite".into();
    match store.put_summary(&dup).await {
        Err(StoreError::AlreadyExists { entity, id }) => {
            assert_eq!(entity, "summary");
            assert_eq!(id, first.summary_id);
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(
        store.get_summary(&first.summary_id).await.unwrap(),
        Some(first)
    );
}
