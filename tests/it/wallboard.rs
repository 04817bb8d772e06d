//! The supervisor wallboard's endpoints: management only; the snapshot lists live calls, open
//! transfers and agents with presence; the event stream starts with the snapshot, then carries
//! every event as it happens, with join tokens removed.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::app::spawn_app;

/// Reads the event stream until `pred` holds for one SSE block; returns that block.
async fn next_block(
    resp: &mut reqwest::Response,
    buf: &mut String,
    seen: &mut Vec<String>,
    pred: impl Fn(&str) -> bool,
) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        while let Some(i) = buf.find("\n\n") {
            let block = buf[..i].to_string();
            buf.drain(..i + 2);
            seen.push(block.clone());
            if pred(&block) {
                return block;
            }
        }
        let chunk = tokio::time::timeout_at(deadline, resp.chunk())
            .await
            .unwrap_or_else(|_| panic!("no matching SSE block within 10 s; saw {seen:#?}"))
            .expect("stream readable")
            .expect("stream still open");
        buf.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
    }
}

fn data(block: &str) -> Value {
    let line = block
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap_or_else(|| panic!("no data line in {block:?}"));
    serde_json::from_str(line).expect("JSON data")
}

#[actix_web::test]
async fn the_wallboard_is_for_management_only() {
    let app = spawn_app().await;
    let token = app.agent("alice").await;
    for path in ["/api/wallboard", "/api/wallboard/events"] {
        let r = app.get(path, Some(&token)).await;
        assert_eq!(r.status, 403, "{path} with an agent token: {:?}", r.body);
        assert!(r.body["message"].as_str().unwrap().contains("management"));
    }
}

#[actix_web::test]
async fn the_snapshot_and_the_stream_follow_calls_without_tokens() {
    let app = spawn_app().await;
    let alice_token = app.agent("alice").await;
    let r = app.get("/api/wallboard", None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["calls"], json!([]));
    assert_eq!(r.body["agents"][0]["agentId"], "alice");
    assert_eq!(r.body["agents"][0]["presence"], "offline");

    let mut resp = app
        .http
        .get(format!("{}/api/wallboard/events", app.address))
        .send()
        .await
        .expect("stream opens");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let (mut buf, mut seen) = (String::new(), Vec::new());
    let first = next_block(&mut resp, &mut buf, &mut seen, |_| true).await;
    assert!(first.starts_with("event: snapshot\n"), "{first}");

    // Alice comes online, a call comes in and is offered to her.
    let _alice = app.connect("alice", &alice_token, None).await;
    let presence = next_block(&mut resp, &mut buf, &mut seen, |b| {
        b.contains("agent.presence")
    })
    .await;
    assert_eq!(data(&presence)["data"]["presence"], "available");
    let created = app.create_call(None).await;
    let call_id = created["call"]["callId"].as_str().unwrap().to_string();
    let offered = next_block(&mut resp, &mut buf, &mut seen, |b| {
        b.contains("\"call.offered\"")
    })
    .await;
    assert_eq!(data(&offered)["callId"], call_id.as_str());
    assert_eq!(data(&offered)["data"]["agentId"], "alice");

    let r = app.get("/api/wallboard", None).await;
    assert_eq!(r.body["calls"][0]["callId"], call_id.as_str());
    assert_eq!(r.body["calls"][0]["status"], "ringing");
    assert_eq!(r.body["calls"][0]["callerName"], "Ann");
    // Ringing counts as engaged.
    assert_eq!(r.body["agents"][0]["presence"], "busy");

    // Alice accepts: she is moved with a join token, which the stream never carries.
    let r = app
        .post(
            &format!("/api/calls/{call_id}/accept"),
            Some(&alice_token),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let moved = next_block(&mut resp, &mut buf, &mut seen, |b| {
        b.contains("\"participant.move\"") && b.contains("\"identity\":\"alice\"")
    })
    .await;
    let moved = data(&moved);
    assert!(moved["data"]["room"].is_string(), "{moved}");
    assert!(
        moved["data"].get("token").is_none(),
        "token leaked: {moved}"
    );
    next_block(&mut resp, &mut buf, &mut seen, |b| {
        b.contains("\"call.active\"")
    })
    .await;
    for block in &seen {
        assert!(!block.contains("\"token\""), "a join token in {block}");
    }
}
