//! Tests of [`Summaries`]: versions, fallback labels, the transfer path, and the background
//! refresh (debounce, at most one generation in flight per call).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::*;
use crate::model::{SummarySource, TranscriptSource};
use crate::store::conformance::fixtures;
use crate::store::embedded::EmbeddedStore;

/// A summariser that takes `delay`, counts its calls and the most that ran at once, and
/// fails when told to.
struct Slow {
    delay: Duration,
    fail: bool,
    calls: AtomicUsize,
    running: AtomicUsize,
    max_running: AtomicUsize,
}

impl Slow {
    fn new(delay_ms: u64, fail: bool) -> Arc<Slow> {
        Arc::new(Slow {
            delay: Duration::from_millis(delay_ms),
            fail,
            calls: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            max_running: AtomicUsize::new(0),
        })
    }
}

#[async_trait]
impl Summarizer for Slow {
    fn source(&self) -> SummarySource {
        SummarySource::Llm
    }
    fn model(&self) -> String {
        "slow-test-model".into()
    }
    async fn summarize(&self, input: &SummaryInput<'_>) -> Result<Draft, SummaryError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        if self.fail {
            return Err(SummaryError::Llm(llm::LlmError::Malformed("test".into())));
        }
        Ok(Draft {
            summary_text: format!("{} chunks", input.transcripts.len()),
            whisper_text: input
                .transcripts
                .last()
                .map(|t| t.text.clone())
                .unwrap_or_default(),
            usage: Some(TokenUsage {
                prompt_tokens: 10,
                completion_tokens: 5,
                total_tokens: 15,
            }),
            ..Draft::default()
        })
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    call: Call,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let call = fixtures::call("alice");
    store.commit_call(fixtures::create(&call)).await.unwrap();
    Fixture {
        _dir: dir,
        store,
        call,
    }
}

async fn say(f: &Fixture, text: &str) {
    f.store
        .put_transcript(&Transcript {
            transcript_id: new_id("tx"),
            call_id: f.call.call_id.clone(),
            speaker: "caller".into(),
            text: text.into(),
            source: TranscriptSource::Manual,
            created_at: Utc::now(),
        })
        .await
        .unwrap();
}

#[actix_rt::test]
async fn versions_count_up_and_the_llm_is_labelled_with_its_usage() {
    let f = fixture().await;
    let llm = Slow::new(0, false);
    let s = Summaries::with_summarizer(
        f.store.clone(),
        Some(llm.clone()),
        true,
        Duration::from_millis(10),
    );
    say(&f, "My card 4111 1111 1111 1111 was declined.").await;
    let a = s.generate(&f.call, true).await.unwrap();
    assert_eq!(
        (a.version, a.source, a.model.as_str()),
        (1, SummarySource::Llm, "slow-test-model")
    );
    assert_eq!(a.usage.unwrap().total_tokens, 15);
    assert_eq!(
        a.whisper_text, "My card [card] was declined.",
        "the provider sees masked text"
    );
    let b = s.generate(&f.call, false).await.unwrap();
    assert_eq!((b.version, b.source), (2, SummarySource::Offline));
    assert_eq!(b.fallback_reason, None);
    let h = s.store_human(&f.call, "Declined card.").await.unwrap();
    assert_eq!(
        (h.version, h.source, h.transcript_count),
        (3, SummarySource::Human, 1)
    );
    assert_eq!(s.generated(), 2);
}

#[actix_rt::test]
async fn a_failing_llm_falls_back_to_offline_and_says_why() {
    let f = fixture().await;
    let s = Summaries::with_summarizer(
        f.store.clone(),
        Some(Slow::new(0, true)),
        false,
        Duration::from_millis(10),
    );
    say(&f, "My router is down.").await;
    let a = s.generate(&f.call, true).await.unwrap();
    assert_eq!(a.source, SummarySource::Offline);
    assert_eq!(a.model, OFFLINE_MODEL);
    assert_eq!(a.fallback_reason.as_deref(), Some("malformed"));
    assert!(a.summary_text.contains("My router is down."));
}

#[actix_rt::test]
async fn the_transfer_path_never_waits_for_the_llm() {
    let f = fixture().await;
    let llm = Slow::new(5_000, false);
    let s = Summaries::with_summarizer(
        f.store.clone(),
        Some(llm.clone()),
        true,
        Duration::from_millis(10),
    );
    say(&f, "I was charged twice.").await;
    let started = std::time::Instant::now();
    let t = s.for_transfer(&f.call).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(llm.calls.load(Ordering::SeqCst), 0);
    assert!(t.stored_now && t.stale, "offline now, the LLM later");
    assert_eq!(t.summary.source, SummarySource::Offline);
    // The stored one is handed over next time; it is stale once the transcript grows.
    say(&f, "And the late fee too.").await;
    let t2 = s.for_transfer(&f.call).await.unwrap();
    assert_eq!(t2.summary.summary_id, t.summary.summary_id);
    assert!(!t2.stored_now && t2.stale);
}

#[actix_rt::test]
async fn offline_only_summaries_are_current_until_the_transcript_grows() {
    let f = fixture().await;
    let s = Summaries::with_summarizer(f.store.clone(), None, true, Duration::from_millis(10));
    say(&f, "Hello.").await;
    let t = s.for_transfer(&f.call).await.unwrap();
    assert!(t.stored_now && !t.stale);
    say(&f, "More.").await;
    assert!(s.for_transfer(&f.call).await.unwrap().stale);
}

#[actix_rt::test]
async fn quick_lines_are_debounced_into_one_or_two_generations_one_at_a_time() {
    let f = fixture().await;
    let llm = Slow::new(150, false);
    let s = Summaries::with_summarizer(
        f.store.clone(),
        Some(llm.clone()),
        true,
        Duration::from_millis(200),
    );
    let stored = Arc::new(AtomicUsize::new(0));
    for i in 0..10 {
        say(&f, &format!("line {i}.")).await;
        let stored = stored.clone();
        s.refresh(&f.call.call_id, false, move |_| {
            let stored = stored.clone();
            async move {
                stored.fetch_add(1, Ordering::SeqCst);
            }
        });
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while s.in_flight() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the refresh never ended"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let calls = llm.calls.load(Ordering::SeqCst);
    assert!(
        (1..=2).contains(&calls),
        "{calls} generations for 10 quick lines"
    );
    assert_eq!(
        llm.max_running.load(Ordering::SeqCst),
        1,
        "at most one in flight"
    );
    assert_eq!(stored.load(Ordering::SeqCst), calls);
    let latest = f
        .store
        .list_summaries_by_call(&f.call.call_id)
        .await
        .unwrap();
    assert_eq!(
        latest.last().unwrap().transcript_count,
        10,
        "the last one covers every line"
    );
    assert_eq!(latest.last().unwrap().whisper_text, "line 9.");
}

#[actix_rt::test]
async fn requests_during_a_generation_fold_into_one_more() {
    let f = fixture().await;
    let llm = Slow::new(300, false);
    let s = Summaries::with_summarizer(
        f.store.clone(),
        Some(llm.clone()),
        true,
        Duration::from_millis(10),
    );
    say(&f, "first.").await;
    s.refresh(&f.call.call_id, true, |_| async {});
    tokio::time::sleep(Duration::from_millis(100)).await;
    for i in 0..5 {
        say(&f, &format!("more {i}.")).await;
        s.refresh(&f.call.call_id, true, |_| async {});
    }
    while s.in_flight() > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(llm.calls.load(Ordering::SeqCst), 2);
    assert_eq!(llm.max_running.load(Ordering::SeqCst), 1);
    // Nothing new: a further refresh generates nothing.
    s.refresh(&f.call.call_id, true, |_| async {});
    while s.in_flight() > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(llm.calls.load(Ordering::SeqCst), 2);
}

#[actix_rt::test]
async fn a_newer_human_summary_is_not_overwritten_by_a_refresh() {
    let f = fixture().await;
    let llm = Slow::new(300, false);
    let s = Summaries::with_summarizer(
        f.store.clone(),
        Some(llm.clone()),
        true,
        Duration::from_millis(10),
    );
    say(&f, "first.").await;
    s.refresh(&f.call.call_id, true, |_| async {});
    tokio::time::sleep(Duration::from_millis(100)).await;
    let h = s.store_human(&f.call, "Written by Alice.").await.unwrap();
    while s.in_flight() > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all = f
        .store
        .list_summaries_by_call(&f.call.call_id)
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].summary_id, h.summary_id);
}

#[actix_rt::test]
async fn ended_or_unknown_calls_are_not_refreshed() {
    let f = fixture().await;
    let llm = Slow::new(0, false);
    let s = Summaries::with_summarizer(
        f.store.clone(),
        Some(llm.clone()),
        true,
        Duration::from_millis(10),
    );
    say(&f, "Bye.").await;
    let mut ended = f.call.clone();
    ended.status = crate::model::CallStatus::Ended;
    f.store
        .commit_call(fixtures::update(&ended, 1))
        .await
        .unwrap();
    s.refresh(&f.call.call_id, true, |_| async {});
    s.refresh("call-unknown", true, |_| async {});
    while s.in_flight() > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(llm.calls.load(Ordering::SeqCst), 0);
    assert!(f
        .store
        .list_summaries_by_call(&f.call.call_id)
        .await
        .unwrap()
        .is_empty());
}
