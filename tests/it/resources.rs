//! The REST resources of the classic `/api` layout: agents, calls by agent, transcripts, summaries,
//! transfers by status, and rooms.

use serde_json::json;

use crate::flows::{active_call, initiate};
use crate::support::app::spawn_app;

#[actix_web::test]
async fn agents_are_created_read_patched_and_listed_when_active() {
    let app = spawn_app().await;
    let r = app
        .post("/api/agents", None, json!({ "name": "Zoe" }))
        .await;
    assert_eq!(r.status, 201);
    let id = r.body["agentId"].as_str().unwrap().to_string();
    assert!(id.starts_with("agent-"));
    assert_eq!(r.body["presence"], "offline");
    let r = app
        .post("/api/agents", None, json!({ "agentId": "spec", "name": "Spec", "kind": "phone", "phoneNumber": "+14155550100" }))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = app
        .post(
            "/api/agents",
            None,
            json!({ "name": "P", "kind": "phone", "phoneNumber": "555" }),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = app
        .request(
            "PATCH",
            &format!("/api/agents/{id}"),
            None,
            Some(json!({ "active": false })),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["active"], false);
    assert_eq!(r.body["version"], 2);
    let list = app.get("/api/agents", None).await.body;
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|a| a["agentId"] != id.as_str()),
        "inactive agents are not listed"
    );
    let r = app.get(&format!("/api/agents/{id}"), None).await;
    assert_eq!(r.body["name"], "Zoe");
    let r = app
        .post(&format!("/api/agents/{id}/token"), None, json!({}))
        .await;
    assert_eq!(r.status, 409, "an inactive agent gets no token");
    // An agent may rename itself and set itself away, but not reactivate or renumber itself.
    let token = app.agent("kim").await;
    let r = app
        .request(
            "PATCH",
            "/api/agents/kim",
            Some(&token),
            Some(json!({ "name": "Kim L", "status": "away" })),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "away");
    let r = app
        .request(
            "PATCH",
            "/api/agents/kim",
            Some(&token),
            Some(json!({ "active": false })),
        )
        .await;
    assert_eq!(r.status, 403);
    let r = app
        .request(
            "PATCH",
            "/api/agents/spec",
            Some(&token),
            Some(json!({ "name": "x" })),
        )
        .await;
    assert_eq!(r.status, 403);
    let r = app.get("/api/agents/nobody", None).await;
    assert_eq!(r.status, 404);
}

#[actix_web::test]
async fn transcripts_summaries_and_listings_follow_the_classic_layout() {
    let app = spawn_app().await;
    let c = active_call(&app, "alice").await;
    let caller_token = c.caller.token.clone();
    let r = app
        .post(
            "/api/transcripts",
            Some(&caller_token),
            json!({ "callId": c.call_id, "text": "My card was declined.", "speaker": "alice" }),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(
        r.body["speaker"], "caller",
        "a caller only speaks as the caller"
    );
    let r = app
        .post(
            "/api/transcripts",
            Some(&c.owner_token),
            json!({ "callId": c.call_id, "text": "Let me look.", "source": "whisper" }),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["speaker"], "alice");
    assert_eq!(r.body["source"], "whisper");
    let tx_id = r.body["transcriptId"].as_str().unwrap().to_string();
    let r = app
        .post(
            "/api/transcripts",
            None,
            json!({ "callId": c.call_id, "text": "" }),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = app
        .post(
            "/api/transcripts",
            None,
            json!({ "callId": c.call_id, "text": "x", "source": "telepathy" }),
        )
        .await;
    assert_eq!(r.status, 400);
    let list = app
        .get(&format!("/api/transcripts/call/{}", c.call_id), None)
        .await
        .body;
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[0]["text"], "My card was declined.");
    assert_eq!(
        app.get(&format!("/api/transcripts/{tx_id}"), None)
            .await
            .body["text"],
        "Let me look."
    );

    let r = app
        .post(
            "/api/summaries",
            Some(&c.owner_token),
            json!({ "callId": c.call_id }),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["model"], "offline-extractive");
    assert!(r.body["summaryText"]
        .as_str()
        .unwrap()
        .contains("My card was declined."));
    let r = app
        .post(
            "/api/summaries",
            Some(&c.owner_token),
            json!({ "callId": c.call_id, "summaryText": "Card declined; wants a refund." }),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["model"], "human");
    let human = r.body["summaryId"].as_str().unwrap().to_string();
    let call = app
        .get(&format!("/api/calls/{}", c.call_id), None)
        .await
        .body;
    assert_eq!(call["lastSummaryId"], human.as_str());
    let sums = app
        .get(&format!("/api/summaries/call/{}", c.call_id), None)
        .await
        .body;
    assert_eq!(sums.as_array().unwrap().len(), 2);
    assert_eq!(
        app.get(&format!("/api/summaries/{human}"), None).await.body["summaryText"],
        "Card declined; wants a refund."
    );

    // The human summary is what B is handed: it covers every transcript chunk.
    let bob_token = app.agent("bob").await;
    let _bob = app.connect("bob", &bob_token, None).await;
    let t = initiate(&app, &c, "bob", "warm").await;
    assert_eq!(t["summaryText"], "Card declined; wants a refund.");
    assert_eq!(t["summaryId"], human.as_str());

    let active = app.get("/api/transfers?status=active", None).await.body;
    assert!(active
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["transferId"] == t["transferId"]));
    let done = app.get("/api/transfers?status=completed", None).await.body;
    assert!(done.as_array().unwrap().is_empty());
    let mine = app.get("/api/transfers", Some(&bob_token)).await.body;
    assert_eq!(mine.as_array().unwrap().len(), 1);
    let calls = app.get("/api/calls/agent/bob", Some(&bob_token)).await.body;
    assert_eq!(
        calls.as_array().unwrap().len(),
        1,
        "a transfer target's calls include this one"
    );
    let calls = app.get("/api/calls/agent/alice", Some(&bob_token)).await;
    assert_eq!(calls.status, 403);

    let r = app
        .request(
            "PATCH",
            &format!("/api/calls/{}", c.call_id),
            Some(&c.owner_token),
            Some(json!({ "reason": "refund" })),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["reason"], "refund");
    let r = app
        .request(
            "PATCH",
            &format!("/api/calls/{}", c.call_id),
            None,
            Some(json!({ "status": "ended" })),
        )
        .await;
    assert_eq!(r.status, 400, "status is changed by actions, not PATCH");
}

#[actix_web::test]
async fn rooms_are_recorded_and_their_participants_listed() {
    let app = spawn_app().await;
    let r = app
        .post(
            "/api/rooms",
            None,
            json!({ "roomName": "lobby", "ownerId": "alice" }),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let room_id = r.body["roomId"].as_str().unwrap().to_string();
    let r = app
        .post("/api/rooms", None, json!({ "roomName": "lobby" }))
        .await;
    assert_eq!(r.status, 409);
    let r = app
        .post("/api/rooms", None, json!({ "roomName": "call-1--main" }))
        .await;
    assert_eq!(r.status, 400);
    let token = app.livekit.client_token("lobby", "visitor");
    app.livekit.join(&token).unwrap();
    let r = app
        .get(&format!("/api/rooms/{room_id}/participants"), None)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["participants"], json!(["visitor"]));
    let r = app
        .request(
            "PATCH",
            &format!("/api/rooms/{room_id}"),
            None,
            Some(json!({ "status": "closed" })),
        )
        .await;
    assert_eq!(r.body["status"], "closed");
    let r = app
        .request(
            "PATCH",
            &format!("/api/rooms/{room_id}"),
            None,
            Some(json!({ "status": "ajar" })),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        app.get(&format!("/api/rooms/{room_id}"), None).await.body["ownerId"],
        "alice"
    );
    app.livekit.set_api_down(true);
    let r = app
        .get(&format!("/api/rooms/{room_id}/participants"), None)
        .await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body["code"], "unavailable");
}
