//! Limits against hostile clients and `GET /metrics`: oversized bodies, too many WebSocket
//! sessions, WebSocket message floods and oversized frames, overlong transcripts — each a
//! clear 4xx or close code — and the metrics a warm transfer and a forged webhook leave.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;

use crate::flows::warm_transfer_flow;
use crate::support::app::{spawn_app, spawn_app_with, TestApp, TestOptions};

/// Opens a raw WebSocket; `Err(status)` when the upgrade is refused.
async fn raw_ws(
    app: &TestApp,
    token: &str,
) -> Result<actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>, u16> {
    let url = format!("ws://127.0.0.1:{}/ws?token={token}", app.port);
    match awc::Client::new()
        .ws(url)
        .max_frame_size(1 << 20)
        .connect()
        .await
    {
        Ok((_, framed)) => Ok(framed),
        Err(awc::error::WsClientError::InvalidResponseStatus(s)) => Err(s.as_u16()),
        Err(e) => panic!("websocket connect failed: {e}"),
    }
}

/// Reads frames until the server closes; returns its close code and reason.
pub async fn close_of(
    framed: &mut actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>,
    within: Duration,
) -> (u16, String) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let frame = tokio::time::timeout_at(deadline, framed.next())
            .await
            .expect("the server closes the socket in time");
        match frame {
            Some(Ok(awc::ws::Frame::Close(Some(reason)))) => {
                return (
                    u16::from(reason.code),
                    reason.description.unwrap_or_default(),
                )
            }
            Some(Ok(awc::ws::Frame::Close(None))) => return (1005, String::new()),
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("websocket error before the close frame: {e}"),
            None => panic!("socket ended without a close frame"),
        }
    }
}

#[actix_web::test]
async fn an_agent_may_hold_eight_sessions_and_the_ninth_gets_429() {
    let app = spawn_app().await;
    let token = app.agent("alice").await;
    let mut open = Vec::new();
    for i in 0..switchboard::ws::MAX_SESSIONS_PER_PARTY {
        let ws = raw_ws(&app, &token)
            .await
            .unwrap_or_else(|s| panic!("session {i} refused with {s}"));
        open.push(ws);
    }
    // The hub registers a session right after the upgrade: wait until all are counted.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(raw_ws(&app, &token).await.err(), Some(429));
    // Another agent is not affected; closing one frees a place.
    let bob = app.agent("bob").await;
    assert!(raw_ws(&app, &bob).await.is_ok());
    let mut first = open.remove(0);
    first
        .send(awc::ws::Message::Close(None))
        .await
        .expect("close sent");
    drop(first);
    let mut freed = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if raw_ws(&app, &token).await.is_ok() {
            freed = true;
            break;
        }
    }
    assert!(freed, "a closed session frees its place");
}

#[actix_web::test]
async fn a_message_flood_is_closed_with_1008() {
    let app = spawn_app().await;
    let token = app.agent("alice").await;
    let mut ws = raw_ws(&app, &token).await.expect("connects");
    let flood = switchboard::ws::MESSAGE_BURST as usize * 3;
    for i in 0..flood {
        let msg = json!({ "type": "ping", "id": i }).to_string();
        if ws.send(awc::ws::Message::Text(msg.into())).await.is_err() {
            break;
        }
    }
    let (code, reason) = close_of(&mut ws, Duration::from_secs(10)).await;
    assert_eq!(code, 1008, "{reason}");
    assert_eq!(reason, "message rate exceeded");
}

#[actix_web::test]
async fn a_frame_over_64_kib_is_closed_with_1009() {
    let app = spawn_app().await;
    let token = app.agent("alice").await;
    let mut ws = raw_ws(&app, &token).await.expect("connects");
    let big = "x".repeat(switchboard::ws::MAX_FRAME_SIZE + 1);
    ws.send(awc::ws::Message::Text(big.into()))
        .await
        .expect("sent");
    let (code, reason) = close_of(&mut ws, Duration::from_secs(10)).await;
    assert_eq!(code, 1009, "{reason}");
}

#[actix_web::test]
async fn bodies_over_the_limit_are_refused_with_a_4xx() {
    let app = spawn_app().await;
    let big = format!(
        "{{\"callerName\":\"{}\"}}",
        "a".repeat(switchboard::http::MAX_BODY + 1)
    );
    let r = app
        .http
        .post(format!("{}/api/calls", app.address))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    assert!(
        status == 400 || status == 413,
        "an oversized body gets 400 or 413, got {status}"
    );
    if status == 400 {
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["code"], "too_large", "{v}");
    }
    // Far larger than any buffer: refused without being read whole.
    let huge = vec![b'a'; 4 * 1024 * 1024];
    let r = app
        .http
        .post(format!("{}/api/agents", app.address))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await;
    if let Ok(r) = r {
        let status = r.status().as_u16();
        assert!((400..500).contains(&status), "got {status}");
    }
}

#[actix_web::test]
async fn a_call_transcript_is_bounded() {
    let app = spawn_app().await;
    let created = app.create_call(None).await;
    let call_id = created["call"]["callId"].as_str().unwrap();
    let chunk = "word ".repeat(2_000); // 10,000 characters, the most one chunk may hold
    let max = switchboard::http::transcripts::MAX_CALL_TRANSCRIPT_CHARS;
    for i in 0..max / chunk.len() {
        let r = app
            .post(
                "/api/transcripts",
                None,
                json!({ "callId": call_id, "text": chunk }),
            )
            .await;
        assert_eq!(r.status, 201, "chunk {i}: {:?}", r.body);
    }
    let r = app
        .post(
            "/api/transcripts",
            None,
            json!({ "callId": call_id, "text": "one more" }),
        )
        .await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert_eq!(r.body["code"], "transcript_too_long");
    let r = app
        .get(&format!("/api/transcripts/call/{call_id}"), None)
        .await;
    assert_eq!(r.body.as_array().unwrap().len(), max / chunk.len());
}

/// The value of one sample line `name{labels} value` in a Prometheus text page.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
}

async fn scrape(app: &TestApp) -> String {
    let mut req = app.http.get(format!("{}/metrics", app.address));
    if let Some(k) = &app.api_key {
        req = req.header("x-api-key", k);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    r.text().await.unwrap()
}

#[actix_web::test]
async fn metrics_count_transfers_sessions_calls_and_forged_webhooks() {
    let app = spawn_app_with(TestOptions {
        api_key: Some("metrics-test-key".into()),
        ..Default::default()
    })
    .await;
    // Management only.
    let r = app
        .http
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let agent = app.agent("carol").await;
    let r = app.get("/metrics", Some(&agent)).await;
    assert_eq!(r.status, 403);

    let before = scrape(&app).await;
    let completed = "switchboard_transfers_total{mode=\"warm\",outcome=\"completed\"}";
    let completed_before = before
        .lines()
        .find_map(|l| l.strip_prefix(completed)?.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    let forged_before = sample(
        &before,
        "switchboard_webhook_verification_failures_total{provider=\"livekit\"}",
    );
    let durations_before = sample(
        &before,
        "switchboard_transfer_duration_seconds_count{outcome=\"completed\"}",
    );

    warm_transfer_flow(&app).await;
    let r = app
        .http
        .post(format!("{}/livekit/webhook", app.address))
        .header("authorization", "forged")
        .header("content-type", "application/webhook+json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);

    // carol stays connected while we scrape.
    let _carol = app.connect("carol", &agent, None).await;
    let after = scrape(&app).await;
    assert!(
        sample(&after, completed) >= completed_before + 1.0,
        "{after}"
    );
    assert!(
        sample(
            &after,
            "switchboard_transfer_duration_seconds_count{outcome=\"completed\"}"
        ) > durations_before
    );
    assert!(
        sample(
            &after,
            "switchboard_webhook_verification_failures_total{provider=\"livekit\"}"
        ) >= forged_before + 1.0
    );
    // The flow leaves its call live (bob owns it; a second transfer rings); carol is
    // connected; pushes were timed.
    let live: f64 = ["queued", "ringing", "active", "on_hold", "transferring"]
        .iter()
        .map(|s| sample(&after, &format!("switchboard_live_calls{{status=\"{s}\"}}")))
        .sum();
    assert!(live >= 1.0, "{after}");
    assert!(sample(&after, "switchboard_websocket_sessions{party=\"agent\"}") >= 1.0);
    assert!(
        sample(
            &after,
            "switchboard_push_latency_seconds_count{party=\"agent\"}"
        ) >= 1.0
    );
    for p in ["livekit", "twilio", "llm", "store"] {
        sample(
            &after,
            &format!("switchboard_provider_errors_total{{provider=\"{p}\"}}"),
        );
    }
}
