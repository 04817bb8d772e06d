//! AI briefing: transcripts in (HTTP and WebSocket), `transcript.appended` pushes, summaries
//! kept fresh in the background, the LLM client against an OpenAI-compatible fake (normal,
//! streamed, slow, 429, 500, malformed), the transfer path never waiting for the provider,
//! and the offline summariser on realistic call transcripts.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::flows::{active_call, initiate, ActiveCall};
use crate::support::app::{spawn_app_with, TestApp, TestOptions};
use crate::support::llm::{Answer, FakeLlm, KEY, MODEL};

fn opts(env: Vec<(String, String)>, debounce: f64) -> TestOptions {
    let mut env = env;
    env.push(("SWITCHBOARD_SUMMARY_DEBOUNCE".into(), debounce.to_string()));
    TestOptions {
        env,
        ..Default::default()
    }
}

async fn say(app: &TestApp, c: &ActiveCall, speaker: &str, text: &str) -> Value {
    let r = app
        .post(
            "/api/transcripts",
            Some(&c.owner_token),
            json!({ "callId": c.call_id, "speaker": speaker, "text": text, "source": "livekit" }),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body
}

async fn summaries(app: &TestApp, c: &ActiveCall) -> Vec<Value> {
    app.get(
        &format!("/api/summaries/call/{}", c.call_id),
        Some(&c.owner_token),
    )
    .await
    .body
    .as_array()
    .expect("a list")
    .clone()
}

async fn generate_now(app: &TestApp, c: &ActiveCall) -> Value {
    let r = app
        .post(
            "/api/summaries",
            Some(&c.owner_token),
            json!({ "callId": c.call_id }),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body
}

#[actix_web::test]
async fn the_llm_gets_model_key_and_a_masked_transcript_and_its_briefing_is_pushed() {
    let llm = FakeLlm::start();
    let app = spawn_app_with(opts(llm.env(false, 5.0, 0), 0.2)).await;
    let mut c = active_call(&app, "alice").await;
    say(
        &app,
        &c,
        "caller",
        "I was charged twice in March. My card is 4111 1111 1111 1111, email ann@example.com.",
    )
    .await;
    let appended = c.owner.expect("transcript.appended").await;
    assert_eq!(appended["data"]["speaker"], "caller");
    assert_eq!(appended["data"]["source"], "livekit");
    assert_eq!(
        appended["data"]["text"],
        "I was charged twice in March. My card is [card], email [email]."
    );
    assert!(appended["seq"].as_u64().unwrap() > 0);
    let updated = c.owner.expect("summary.updated").await;
    let id = updated["data"]["summaryId"].as_str().unwrap().to_string();
    let s = app
        .get(&format!("/api/summaries/{id}"), Some(&c.owner_token))
        .await
        .body;
    assert_eq!(s["source"], "llm");
    assert_eq!(s["model"], MODEL);
    assert_eq!(s["version"], 1);
    assert_eq!(s["transcriptCount"], 1);
    assert_eq!(s["usage"]["totalTokens"], 408);
    assert_eq!(s["sentiment"], "negative");
    assert_eq!(s["urgency"], "high");
    assert_eq!(
        s["tried"][0],
        "Agent checked the statement: both charges are there"
    );
    assert!(s["whisperText"]
        .as_str()
        .unwrap()
        .starts_with("Ann Lee was charged twice"));
    assert!(s["script"].as_str().unwrap().starts_with("Hi, I have Ann"));
    let call = app
        .get(&format!("/api/calls/{}", c.call_id), None)
        .await
        .body;
    assert_eq!(call["lastSummaryId"], id.as_str());

    let got = llm.received();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].auth.as_deref(),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(got[0].body["model"], MODEL);
    assert_eq!(got[0].body["stream"], false);
    assert_eq!(got[0].body["messages"][0]["role"], "system");
    let user = got[0].user_message();
    assert!(
        user.contains("[caller] I was charged twice in March. My card is [card], email [email]."),
        "{user}"
    );
    assert!(!user.contains("4111") && !user.contains("ann@example.com"));
    // The caller never receives transcript or summary events.
    c.caller.settle(Duration::from_millis(100)).await;
    assert!(!c
        .caller
        .types()
        .iter()
        .any(|t| t.starts_with("summary") || t.starts_with("transcript")));
}

#[actix_web::test]
async fn a_streamed_answer_is_joined_and_its_usage_recorded() {
    let llm = FakeLlm::start();
    llm.always(Answer::Streamed);
    let app = spawn_app_with(opts(llm.env(true, 5.0, 0), 30.0)).await;
    let c = active_call(&app, "alice").await;
    say(&app, &c, "caller", "I was charged twice.").await;
    let s = generate_now(&app, &c).await;
    assert_eq!(s["source"], "llm", "{s}");
    assert_eq!(s["usage"]["totalTokens"], 408);
    assert!(s["summaryText"]
        .as_str()
        .unwrap()
        .starts_with("LLM: Ann Lee"));
    let got = llm.received();
    assert_eq!(got[0].body["stream"], true);
    assert_eq!(got[0].body["stream_options"]["include_usage"], true);
}

#[actix_web::test]
async fn rate_limits_are_retried_after_retry_after() {
    let llm = FakeLlm::start();
    llm.script(&[Answer::RateLimited(Some(1)), Answer::RateLimited(None)]);
    let app = spawn_app_with(opts(llm.env(false, 5.0, 3), 30.0)).await;
    let c = active_call(&app, "alice").await;
    say(&app, &c, "caller", "I was charged twice.").await;
    let s = generate_now(&app, &c).await;
    assert_eq!(s["source"], "llm", "{s}");
    let got = llm.received();
    assert_eq!(got.len(), 3, "two 429s, then the answer");
    let first_wait = got[1].at - got[0].at;
    assert!(
        first_wait >= Duration::from_millis(950),
        "Retry-After: 1 is honoured (waited {first_wait:?})"
    );
    let second_wait = got[2].at - got[1].at;
    assert!(
        second_wait >= Duration::from_millis(400) && second_wait < Duration::from_secs(3),
        "exponential backoff without Retry-After (waited {second_wait:?})"
    );
}

#[actix_web::test]
async fn server_errors_are_retried_then_fall_back_to_offline() {
    let llm = FakeLlm::start();
    llm.always(Answer::ServerError);
    let app = spawn_app_with(opts(llm.env(false, 5.0, 2), 30.0)).await;
    let c = active_call(&app, "alice").await;
    say(&app, &c, "caller", "My router keeps dropping.").await;
    let errors_before = switchboard::metrics::metrics().provider_errors("llm");
    let s = generate_now(&app, &c).await;
    assert!(
        switchboard::metrics::metrics().provider_errors("llm") > errors_before,
        "the provider's failure is counted in /metrics"
    );
    assert_eq!(s["source"], "offline");
    assert_eq!(s["model"], "offline-extractive");
    assert_eq!(s["fallbackReason"], "status_500");
    assert!(s["summaryText"]
        .as_str()
        .unwrap()
        .contains("My router keeps dropping."));
    assert_eq!(llm.received().len(), 3, "one try and two retries");
}

#[actix_web::test]
async fn malformed_answers_fall_back_at_once() {
    let llm = FakeLlm::start();
    llm.always(Answer::Malformed);
    let app = spawn_app_with(opts(llm.env(false, 5.0, 2), 30.0)).await;
    let c = active_call(&app, "alice").await;
    say(&app, &c, "caller", "My router keeps dropping.").await;
    let s = generate_now(&app, &c).await;
    assert_eq!(s["source"], "offline");
    assert_eq!(s["fallbackReason"], "malformed");
    assert_eq!(llm.received().len(), 1, "a malformed answer is not retried");
}

#[actix_web::test]
async fn a_slow_provider_times_out_and_falls_back() {
    let llm = FakeLlm::start();
    llm.always(Answer::Slow(Duration::from_secs(8)));
    let app = spawn_app_with(opts(llm.env(false, 0.5, 0), 30.0)).await;
    let c = active_call(&app, "alice").await;
    say(&app, &c, "caller", "My router keeps dropping.").await;
    let started = Instant::now();
    let s = generate_now(&app, &c).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(s["source"], "offline");
    assert_eq!(s["fallbackReason"], "timeout");
}

#[actix_web::test]
async fn a_hanging_provider_never_blocks_the_transfer() {
    let llm = FakeLlm::start();
    llm.always(Answer::Slow(Duration::from_secs(20)));
    let app = spawn_app_with(opts(llm.env(false, 15.0, 0), 0.05)).await;
    let mut c = active_call(&app, "alice").await;
    let bob_token = app.agent("bob").await;
    let mut bob = app.connect("bob", &bob_token, None).await;
    say(&app, &c, "caller", "I was charged twice in March.").await;
    c.owner.expect("transcript.appended").await;
    // Wait until the background refresh is waiting on the provider.
    let deadline = Instant::now() + Duration::from_secs(5);
    while llm.received().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the refresh never asked the provider"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    let t = initiate(&app, &c, "bob", "warm").await;
    let offer = tokio::time::timeout(Duration::from_secs(2), bob.expect("transfer.offered"))
        .await
        .expect("transfer.offered at once");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(offer["data"]["summaryText"]
        .as_str()
        .unwrap()
        .contains("charged twice"));
    assert_eq!(t["summaryId"], offer["data"]["summaryId"]);
    // The structured briefing comes with the offer: B needs no request.
    let briefing = &offer["data"]["briefing"];
    assert_eq!(briefing["summaryId"], offer["data"]["summaryId"]);
    assert_eq!(briefing["source"], "offline");
    for field in [
        "reason",
        "nextStep",
        "sentiment",
        "urgency",
        "whisperText",
        "script",
    ] {
        assert!(!briefing[field].is_null(), "briefing.{field}: {briefing:#}");
    }
    assert!(briefing["customerDetails"].is_array() && briefing["tried"].is_array());
    let s = app
        .get(
            &format!("/api/summaries/{}", t["summaryId"].as_str().unwrap()),
            Some(&c.owner_token),
        )
        .await
        .body;
    assert_eq!(s["source"], "offline", "the transfer path made it offline");
}

#[actix_web::test]
async fn a_stale_summary_is_handed_over_then_refreshed_after_the_offer() {
    // Offline only, with a debounce long enough that only the transfer starts a refresh.
    let app = spawn_app_with(opts(vec![], 60.0)).await;
    let c = active_call(&app, "alice").await;
    let bob_token = app.agent("bob").await;
    let mut bob = app.connect("bob", &bob_token, None).await;
    say(&app, &c, "caller", "I was charged twice in March.").await;
    let first = generate_now(&app, &c).await;
    say(&app, &c, "caller", "Also the late fee is wrong.").await;
    let t = initiate(&app, &c, "bob", "warm").await;
    assert_eq!(
        t["summaryId"], first["summaryId"],
        "the latest stored, at once"
    );
    let offer = bob.expect("transfer.offered").await;
    let updated = bob.expect("summary.updated").await;
    assert!(updated["seq"].as_u64() > offer["seq"].as_u64());
    let id = updated["data"]["summaryId"].as_str().unwrap();
    let s = app
        .get(&format!("/api/summaries/{id}"), Some(&bob_token))
        .await
        .body;
    assert_eq!(s["transcriptCount"], 2);
    assert_eq!(s["version"], 2);
    assert!(s["summaryText"].as_str().unwrap().contains("late fee"));
}

#[actix_web::test]
async fn quick_lines_are_debounced_into_one_or_two_summaries() {
    let app = spawn_app_with(opts(vec![], 0.4)).await;
    let mut c = active_call(&app, "alice").await;
    for i in 0..10 {
        say(
            &app,
            &c,
            "caller",
            &format!("Line number {i} of my complaint."),
        )
        .await;
    }
    for _ in 0..10 {
        c.owner.expect("transcript.appended").await;
    }
    c.owner.expect("summary.updated").await;
    c.owner.settle(Duration::from_millis(1_500)).await;
    let list = summaries(&app, &c).await;
    assert!(
        (1..=2).contains(&list.len()),
        "{} summaries for 10 quick lines",
        list.len()
    );
    assert_eq!(list.last().unwrap()["transcriptCount"], 10);
}

#[actix_web::test]
async fn transcripts_arrive_over_the_websocket() {
    let app = spawn_app_with(opts(vec![], 60.0)).await;
    let mut c = active_call(&app, "alice").await;
    c.owner.send(json!({"type": "transcript", "id": 1, "callId": c.call_id, "text": "Let me check that.", "source": "whisper"}));
    let reply = c.owner.expect("reply").await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert!(reply["data"]["transcriptId"]
        .as_str()
        .unwrap()
        .starts_with("tx-"));
    let appended = c.owner.expect("transcript.appended").await;
    assert_eq!(appended["data"]["speaker"], "alice");
    assert_eq!(appended["data"]["source"], "whisper");

    // The caller speaks as the caller, on its own call only.
    c.caller
        .send(json!({"type": "transcript", "id": 2, "callId": c.call_id, "text": "Thanks."}));
    assert_eq!(c.caller.expect("reply").await["ok"], true);
    let appended = c.owner.expect("transcript.appended").await;
    assert_eq!(appended["data"]["speaker"], "caller");
    assert_eq!(appended["data"]["source"], "manual");
    c.caller
        .send(json!({"type": "transcript", "id": 3, "callId": "call-other", "text": "x"}));
    let err = c.caller.expect("error").await;
    assert_eq!(err["code"], "not_found");

    // An agent outside the call may not add to it; limits are checked.
    let mallory = app.agent("mallory").await;
    let mut m = app.connect("mallory", &mallory, None).await;
    m.send(json!({"type": "transcript", "id": 4, "callId": c.call_id, "text": "x"}));
    assert_eq!(m.expect("error").await["code"], "forbidden");
    c.owner
        .send(json!({"type": "transcript", "id": 5, "callId": c.call_id, "text": ""}));
    assert_eq!(c.owner.expect("error").await["code"], "invalid_field");
    c.owner.send(
        json!({"type": "transcript", "id": 6, "callId": c.call_id, "text": "a".repeat(10_001)}),
    );
    assert_eq!(c.owner.expect("error").await["code"], "invalid_field");

    let list = app
        .get(&format!("/api/transcripts/call/{}", c.call_id), None)
        .await
        .body;
    assert_eq!(list.as_array().unwrap().len(), 2);
}

#[actix_web::test]
async fn human_summaries_are_labelled_and_spoken_as_written() {
    let app = spawn_app_with(opts(vec![], 60.0)).await;
    let c = active_call(&app, "alice").await;
    let r = app
        .post(
            "/api/summaries",
            Some(&c.owner_token),
            json!({ "callId": c.call_id, "summaryText": "Double charge; refund promised." }),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["source"], "human");
    assert_eq!(r.body["model"], "human");
    assert_eq!(r.body["version"], 1);
    assert_eq!(r.body["whisperText"], "Double charge; refund promised.");
}

// ---------------------------------------------------------------------------------------
// The offline summariser on realistic transcripts
// ---------------------------------------------------------------------------------------

mod fixtures {
    use serde_json::Value;
    use switchboard::model::{Call, CallStatus, Sentiment, Transcript, TranscriptSource, Urgency};
    use switchboard::summary::{offline, redact};

    fn load_all() -> Vec<(String, Value)> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/transcripts");
        let mut out: Vec<(String, Value)> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .map(|p| {
                let text = std::fs::read_to_string(&p).unwrap();
                (
                    p.file_name().unwrap().to_string_lossy().to_string(),
                    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{p:?}: {e}")),
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn call(f: &Value) -> Call {
        Call {
            call_id: "call-fixture".into(),
            caller_id: "caller-fixture".into(),
            caller_name: f["callerName"].as_str().unwrap().into(),
            reason: f["reason"].as_str().unwrap().into(),
            agent_a_id: Some("alice".into()),
            agent_b_id: None,
            owner_id: Some("alice".into()),
            offered_to: None,
            requested_agent_id: None,
            status: CallStatus::Active,
            main_room: "main".into(),
            hold_room: "hold".into(),
            open_transfer_id: None,
            last_summary_id: None,
            end_reason: None,
            created_at: chrono::Utc::now(),
            end_at: None,
            metadata: Value::Null,
            channel: Default::default(),
            caller_number: None,
            org_id: None,
            direction: Default::default(),
            assistant_id: None,
            outbound: None,
            recording: None,
        }
    }

    #[test]
    fn the_offline_summary_keeps_each_calls_facts_within_its_limits() {
        let all = load_all();
        assert!(
            all.len() >= 5,
            "fixtures: {:?}",
            all.iter().map(|f| &f.0).collect::<Vec<_>>()
        );
        for (name, f) in all {
            let chunks: Vec<Transcript> = f["transcript"]
                .as_array()
                .unwrap()
                .iter()
                .enumerate()
                .map(|(i, l)| Transcript {
                    transcript_id: format!("tx-{i}"),
                    call_id: "call-fixture".into(),
                    speaker: l["speaker"].as_str().unwrap().into(),
                    // As the server does with redaction on (the default).
                    text: redact::redact(l["text"].as_str().unwrap()),
                    source: TranscriptSource::Manual,
                    created_at: chrono::Utc::now(),
                })
                .collect();
            let d = offline::summarize(&call(&f), &chunks);
            let all_text = [
                d.summary_text.clone(),
                d.reason.clone(),
                d.customer_details.join(" "),
                d.tried.join(" "),
                d.promised.join(" "),
                d.next_step.clone(),
                d.script.clone(),
            ]
            .join("\n");
            for fact in f["expect"]["facts"].as_array().unwrap() {
                let fact = fact.as_str().unwrap();
                assert!(
                    all_text.to_lowercase().contains(&fact.to_lowercase()),
                    "{name}: {fact:?} missing from\n{all_text}"
                );
            }
            for bad in f["expect"]["forbidden"].as_array().unwrap() {
                let bad = bad.as_str().unwrap();
                assert!(
                    !(all_text.clone() + &d.whisper_text).contains(bad),
                    "{name}: {bad:?} must not appear in\n{all_text}"
                );
            }
            if let Some(s) = f["expect"]["sentiment"].as_str() {
                let want: Sentiment = serde_json::from_value(s.into()).unwrap();
                assert_eq!(d.sentiment, want, "{name}: sentiment");
            }
            if let Some(u) = f["expect"]["urgency"].as_str() {
                let want: Urgency = serde_json::from_value(u.into()).unwrap();
                assert_eq!(d.urgency, want, "{name}: urgency");
            }
            if f["expect"]["emptyLists"] == true {
                assert!(
                    d.customer_details.is_empty() && d.tried.is_empty() && d.promised.is_empty(),
                    "{name}: nothing may be invented: {d:?}"
                );
            }
            assert!(
                d.summary_text.starts_with("[offline summary]"),
                "{name}: labelled"
            );
            assert!(
                d.summary_text.chars().count() <= offline::SUMMARY_MAX_CHARS,
                "{name}: summaryText too long"
            );
            let words = d.whisper_text.split_whitespace().count();
            assert!(
                (1..=offline::WHISPER_MAX_WORDS).contains(&words),
                "{name}: whisperText has {words} words (about 20 s of speech at most): {}",
                d.whisper_text
            );
            assert!(
                d.script.chars().count() <= offline::SCRIPT_MAX_CHARS,
                "{name}: script too long"
            );
        }
    }
}

#[actix_web::test]
async fn agents_read_transcripts_masked_management_as_written() {
    let app = spawn_app_with(opts(vec![], 60.0)).await;
    let c = active_call(&app, "alice").await;
    let t = say(
        &app,
        &c,
        "caller",
        "Call me on +44 20 7946 0958 about order 88213.",
    )
    .await;
    let id = t["transcriptId"].as_str().unwrap();
    let as_agent = app
        .get(&format!("/api/transcripts/{id}"), Some(&c.owner_token))
        .await
        .body;
    assert_eq!(as_agent["text"], "Call me on [phone] about order 88213.");
    let list = app
        .get(
            &format!("/api/transcripts/call/{}", c.call_id),
            Some(&c.owner_token),
        )
        .await
        .body;
    assert_eq!(list[0]["text"], "Call me on [phone] about order 88213.");
    let as_admin = app.get(&format!("/api/transcripts/{id}"), None).await.body;
    assert_eq!(
        as_admin["text"],
        "Call me on +44 20 7946 0958 about order 88213."
    );
}

#[actix_web::test]
async fn redaction_can_be_switched_off() {
    let app = spawn_app_with(opts(
        vec![("SWITCHBOARD_REDACT".into(), "false".into())],
        60.0,
    ))
    .await;
    let mut c = active_call(&app, "alice").await;
    say(&app, &c, "caller", "My email is ann@example.com.").await;
    let appended = c.owner.expect("transcript.appended").await;
    assert_eq!(appended["data"]["text"], "My email is ann@example.com.");
    let s = generate_now(&app, &c).await;
    assert!(s["summaryText"]
        .as_str()
        .unwrap()
        .contains("ann@example.com"));
}

#[actix_web::test]
async fn the_caller_is_shown_transcripts_masked_like_the_agents_never_more() {
    let app = spawn_app_with(opts(vec![], 30.0)).await;
    let mut c = active_call(&app, "alice").await;
    let spoken = "Your card 4111 1111 1111 1111 is on file, I wrote to ann@example.com.";
    let masked = "Your card [card] is on file, I wrote to [email].";
    let t = say(&app, &c, "alice", spoken).await;
    let id = t["transcriptId"].as_str().unwrap().to_string();
    // The caller's own words, posted with its own token, are masked for it too.
    let r = app
        .post(
            "/api/transcripts",
            Some(&c.caller_token),
            json!({ "callId": c.call_id, "text": "Mine is 5500 0000 0000 0004.", "source": "livekit" }),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let pushed = c.owner.expect("transcript.appended").await;
    assert_eq!(pushed["data"]["text"], masked);
    for token in [&c.owner_token, &c.caller_token] {
        let list = app
            .get(&format!("/api/transcripts/call/{}", c.call_id), Some(token))
            .await
            .body;
        let texts: Vec<&str> = list
            .as_array()
            .expect("a list")
            .iter()
            .map(|t| t["text"].as_str().unwrap())
            .collect();
        assert_eq!(texts, [masked, "Mine is [card]."], "{list}");
        let one = app
            .get(&format!("/api/transcripts/{id}"), Some(token))
            .await
            .body;
        assert_eq!(one["text"], masked, "{one}");
    }
    // Over the WebSocket the caller gets no transcript at all, live or replayed.
    let full = format!("{}:0", c.call_id);
    let mut again = app
        .connect("caller again", &c.caller_token, Some(&full))
        .await;
    again.settle(Duration::from_millis(200)).await;
    c.caller.settle(Duration::from_millis(100)).await;
    for seen in [&again.seen, &c.caller.seen] {
        let text = serde_json::to_string(seen).unwrap();
        assert!(
            !text.contains("4111") && !text.contains("ann@example"),
            "{text}"
        );
        assert!(!text.contains("transcript.appended"), "{text}");
    }
    // The agent's replay carries the masked text.
    let mut history = app
        .connect("alice history", &c.owner_token, Some(&full))
        .await;
    let replayed = history.expect("transcript.appended").await;
    assert_eq!(replayed["data"]["text"], masked);
}
