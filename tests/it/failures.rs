//! Every way a transfer can fail, and the other modes: where the caller, A and B end up.

use std::time::Duration;

use serde_json::{json, Value};

use crate::flows::{
    active_call, assert_caller_never_briefed, call_until, initiate, placed, ActiveCall,
};
use crate::support::app::{spawn_app, spawn_app_with, Party, TestApp, TestOptions};

/// The caller is back with the owner in the main room, confirmed, and B is not placed.
async fn assert_back_with_owner(
    app: &TestApp,
    c: &mut ActiveCall,
    owner: &str,
    target: &str,
) -> Value {
    let mv = c.caller.follow_move().await;
    assert_eq!(mv["data"]["room"], c.main_room.as_str());
    let call = call_until(app, &c.call_id, "caller back with the owner", |b| {
        placed(b, "caller") == Some(("main".into(), true))
            && placed(b, owner).map(|p| p.0) == Some("main".into())
    })
    .await;
    assert_eq!(call["status"], "active");
    assert_eq!(call["ownerId"], owner);
    assert!(
        placed(&call, target).is_none(),
        "{target} released: {call:#}"
    );
    assert!(call.get("openTransferId").is_none());
    call
}

async fn with_bob(app: &TestApp) -> (String, Party) {
    let token = app.agent("bob").await;
    let party = app.connect("bob", &token, None).await;
    (token, party)
}

/// A warm transfer from alice to bob, accepted: bob and alice in the consult room (confirmed),
/// the caller on hold.
struct Briefing {
    c: ActiveCall,
    bob: Party,
    transfer_id: String,
    consult: String,
}

async fn briefing(app: &TestApp) -> Briefing {
    let Ringing {
        c,
        mut bob,
        transfer_id,
        bob_token,
    } = ringing(app).await;
    let r = app
        .post(
            &format!("/api/transfers/{transfer_id}/accept"),
            Some(&bob_token),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    bob.follow_move().await;
    call_until(app, &c.call_id, "bob in consult", |b| {
        placed(b, "bob") == Some(("consult".into(), true))
    })
    .await;
    Briefing {
        consult: consult_room(app, &transfer_id).await,
        c,
        bob,
        transfer_id,
    }
}

/// A warm transfer from alice to bob, ringing: the caller on hold, alice in the consult room,
/// bob offered.
struct Ringing {
    c: ActiveCall,
    bob: Party,
    transfer_id: String,
    bob_token: String,
}

async fn ringing(app: &TestApp) -> Ringing {
    let mut c = active_call(app, "alice").await;
    let (bob_token, mut bob) = with_bob(app).await;
    let t = initiate(app, &c, "bob", "warm").await;
    c.caller.follow_move().await;
    c.owner.follow_move().await;
    bob.expect("transfer.offered").await;
    Ringing {
        c,
        bob,
        transfer_id: t["transferId"].as_str().unwrap().to_string(),
        bob_token,
    }
}

async fn consult_room(app: &TestApp, transfer_id: &str) -> String {
    let t = app
        .get(&format!("/api/transfers/{transfer_id}"), None)
        .await
        .body;
    t["transferRoom"].as_str().unwrap().to_string()
}

async fn transfer_status(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/api/transfers/{id}"), None).await.body
}

#[actix_web::test]
async fn b_declines_and_the_caller_returns_to_a() {
    let app = spawn_app().await;
    let Ringing {
        mut c,
        mut bob,
        transfer_id,
        bob_token,
    } = ringing(&app).await;
    let id = transfer_id.as_str();
    let r = app
        .post(
            &format!("/api/transfers/{id}/decline"),
            Some(&bob_token),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "declined");
    bob.expect("transfer.declined").await;
    c.owner.expect("transfer.declined").await;
    c.caller.expect("transfer.declined").await;
    c.owner.follow_move().await; // back to main
    assert_back_with_owner(&app, &mut c, "alice", "bob").await;
    // Completing a declined transfer is a conflict, not a success.
    let r = app
        .post(
            &format!("/api/transfers/{id}/complete"),
            Some(&c.owner_token),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert_eq!(r.body["code"], "transfer_ended");
    assert_caller_never_briefed(&c.caller);
}

#[actix_web::test]
async fn b_does_not_answer_in_time_and_the_transfer_times_out() {
    let app = spawn_app_with(TestOptions {
        ring_timeout: 1.0,
        ..Default::default()
    })
    .await;
    let Ringing {
        mut c,
        mut bob,
        transfer_id,
        ..
    } = ringing(&app).await;
    let id = transfer_id.as_str();
    bob.expect("transfer.timed_out").await;
    c.owner.expect("transfer.timed_out").await;
    c.owner.follow_move().await;
    assert_back_with_owner(&app, &mut c, "alice", "bob").await;
    assert_eq!(transfer_status(&app, id).await["status"], "timed_out");
}

#[actix_web::test]
async fn a_cancels_while_b_is_ringing() {
    let app = spawn_app().await;
    let Ringing {
        mut c,
        mut bob,
        transfer_id,
        bob_token,
    } = ringing(&app).await;
    let id = transfer_id.as_str();
    let r = app
        .post(
            &format!("/api/transfers/{id}/cancel"),
            Some(&c.owner_token),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "cancelled");
    bob.expect("transfer.cancelled").await;
    c.owner.follow_move().await;
    assert_back_with_owner(&app, &mut c, "alice", "bob").await;
    // B's late accept is refused.
    let r = app
        .post(
            &format!("/api/transfers/{id}/accept"),
            Some(&bob_token),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 409, "{:?}", r.body);
}

#[actix_web::test]
async fn a_cancels_during_the_briefing_and_b_is_removed() {
    let app = spawn_app().await;
    let Briefing {
        mut c,
        mut bob,
        transfer_id: id,
        consult,
    } = briefing(&app).await;
    let id = id.as_str();
    let r = app
        .post(
            &format!("/api/transfers/{id}/cancel"),
            Some(&c.owner_token),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    bob.expect("transfer.cancelled").await;
    bob.expect("participant.released").await;
    c.owner.follow_move().await;
    assert_back_with_owner(&app, &mut c, "alice", "bob").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while app.livekit.room_exists(&consult) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !app.livekit.room_exists(&consult),
        "the consult room is closed"
    );
}

#[actix_web::test]
async fn b_disconnecting_during_the_briefing_fails_the_transfer() {
    let app = spawn_app().await;
    let Briefing {
        mut c,
        mut bob,
        transfer_id: id,
        ..
    } = briefing(&app).await;
    let id = id.as_str();
    bob.close();
    let failed = c.owner.expect("transfer.failed").await;
    assert_eq!(failed["data"]["reason"], "target_disconnected");
    c.owner.follow_move().await;
    assert_back_with_owner(&app, &mut c, "alice", "bob").await;
    assert_eq!(transfer_status(&app, id).await["status"], "failed");
}

#[actix_web::test]
async fn a_disconnecting_while_b_rings_sends_the_caller_to_the_next_agent() {
    let app = spawn_app().await;
    let mut c = active_call(&app, "alice").await;
    let (bob_token, mut bob) = with_bob(&app).await;
    let t = initiate(&app, &c, "bob", "warm").await;
    let id = t["transferId"].as_str().unwrap();
    c.caller.follow_move().await;
    bob.expect("transfer.offered").await;
    c.owner.close();
    let failed = bob.expect("transfer.failed").await;
    assert_eq!(failed["data"]["reason"], "owner_disconnected");
    c.caller.expect("call.queued").await;
    // Bob is the next available agent: the call is offered to him.
    let offered = bob.expect("call.offered").await;
    assert_eq!(offered["callId"], c.call_id.as_str());
    let r = app
        .post(
            &format!("/api/calls/{}/accept", c.call_id),
            Some(&bob_token),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    bob.follow_move().await;
    let mv = c.caller.follow_move().await;
    assert_eq!(mv["data"]["room"], c.main_room.as_str());
    let call = call_until(&app, &c.call_id, "caller with bob", |b| {
        placed(b, "caller") == Some(("main".into(), true))
            && placed(b, "bob") == Some(("main".into(), true))
    })
    .await;
    assert_eq!(call["ownerId"], "bob");
    assert!(placed(&call, "alice").is_none());
    assert_eq!(transfer_status(&app, id).await["status"], "failed");
}

#[actix_web::test]
async fn a_disconnecting_during_the_briefing_hands_the_caller_to_b() {
    let app = spawn_app().await;
    let Briefing { mut c, mut bob, .. } = briefing(&app).await;
    c.owner.close();
    let done = bob.expect("transfer.completed").await;
    assert_eq!(done["data"]["reason"], "owner_disconnected");
    bob.follow_move().await;
    c.caller.follow_move().await;
    let call = call_until(&app, &c.call_id, "caller with bob", |b| {
        placed(b, "caller") == Some(("main".into(), true))
            && placed(b, "bob") == Some(("main".into(), true))
    })
    .await;
    assert_eq!(call["ownerId"], "bob");
}

#[actix_web::test]
async fn caller_hanging_up_mid_transfer_abandons_it_and_releases_b() {
    let app = spawn_app().await;
    let Briefing {
        mut c,
        mut bob,
        transfer_id: id,
        ..
    } = briefing(&app).await;
    let id = id.as_str();
    let r = app
        .post(
            &format!("/api/calls/{}/hangup", c.call_id),
            Some(&c.caller.token.clone()),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "ended");
    assert_eq!(r.body["endReason"], "caller_hangup");
    bob.expect("transfer.abandoned").await;
    bob.expect("call.ended").await;
    c.owner.expect("call.ended").await;
    c.caller.expect("call.ended").await;
    assert_eq!(transfer_status(&app, id).await["status"], "abandoned");
    let call = app
        .get(&format!("/api/calls/{}", c.call_id), None)
        .await
        .body;
    assert_eq!(call["parties"], json!([]));
    assert!(call["endAt"].is_string());
    // Bob is free again: available for new calls.
    let agents = app.get("/api/agents", None).await.body;
    let bob_view = agents
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["agentId"] == "bob")
        .unwrap();
    assert_eq!(bob_view["presence"], "available");
    // Hanging up again answers the same.
    let again = app
        .post(
            &format!("/api/calls/{}/hangup", c.call_id),
            Some(&c.caller.token.clone()),
            json!({}),
        )
        .await;
    assert_eq!(again.status, 200);
}

#[actix_web::test]
async fn a_second_transfer_while_one_is_open_is_refused() {
    let app = spawn_app().await;
    let c = active_call(&app, "alice").await;
    let (_t, _bob) = with_bob(&app).await;
    let carol = app.agent("carol").await;
    let _carol = app.connect("carol", &carol, None).await;
    initiate(&app, &c, "bob", "warm").await;
    let r = app
        .post(
            "/api/transfers/initiate",
            Some(&c.owner_token),
            json!({ "callId": c.call_id, "agentBId": "carol" }),
        )
        .await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert_eq!(r.body["code"], "transfer_open");
}

#[actix_web::test]
async fn cold_transfer_sends_the_caller_straight_to_b() {
    let app = spawn_app().await;
    let mut c = active_call(&app, "alice").await;
    let (bob_token, mut bob) = with_bob(&app).await;
    let t = initiate(&app, &c, "bob", "cold").await;
    let id = t["transferId"].as_str().unwrap();
    c.caller.follow_move().await; // hold while B rings
    let offer = bob.expect("transfer.offered").await;
    assert!(
        offer["data"]["summaryText"].is_string(),
        "B receives the summary"
    );
    let r = app
        .post(
            &format!("/api/transfers/{id}/accept"),
            Some(&bob_token),
            json!({}),
        )
        .await;
    assert_eq!(r.body["status"], "completed", "{:?}", r.body);
    bob.follow_move().await;
    c.caller.follow_move().await;
    c.owner.expect("participant.released").await;
    let call = call_until(&app, &c.call_id, "caller with bob", |b| {
        placed(b, "caller") == Some(("main".into(), true))
            && placed(b, "bob") == Some(("main".into(), true))
    })
    .await;
    assert_eq!(call["ownerId"], "bob");
    assert!(placed(&call, "alice").is_none());
    assert_caller_never_briefed(&c.caller);
}

#[actix_web::test]
async fn conference_transfer_brings_b_in_and_a_leaves_when_done() {
    let app = spawn_app().await;
    let mut c = active_call(&app, "alice").await;
    let (bob_token, mut bob) = with_bob(&app).await;
    let t = initiate(&app, &c, "bob", "conference").await;
    let id = t["transferId"].as_str().unwrap();
    bob.expect("transfer.offered").await;
    app.post(
        &format!("/api/transfers/{id}/accept"),
        Some(&bob_token),
        json!({}),
    )
    .await;
    let mv = bob.follow_move().await;
    assert_eq!(mv["data"]["room"], c.main_room.as_str());
    let call = call_until(&app, &c.call_id, "three together", |b| {
        placed(b, "caller") == Some(("main".into(), true))
            && placed(b, "alice") == Some(("main".into(), true))
            && placed(b, "bob") == Some(("main".into(), true))
    })
    .await;
    assert_eq!(call["transfer"]["status"], "briefing");
    let r = app
        .post(
            &format!("/api/transfers/{id}/complete"),
            Some(&c.owner_token),
            json!({}),
        )
        .await;
    assert_eq!(r.body["status"], "completed", "{:?}", r.body);
    c.owner.expect("participant.released").await;
    let call = call_until(&app, &c.call_id, "alice left", |b| {
        placed(b, "alice").is_none()
    })
    .await;
    assert_eq!(call["ownerId"], "bob");
    assert_eq!(placed(&call, "caller"), Some(("main".into(), true)));
    assert!(
        !c.caller.types().iter().any(|t| t == "participant.move"),
        "the caller never moved"
    );
}

#[actix_web::test]
async fn hold_resume_and_agent_hangup() {
    let app = spawn_app().await;
    let mut c = active_call(&app, "alice").await;
    let r = app
        .post(
            &format!("/api/calls/{}/hold", c.call_id),
            Some(&c.owner_token),
            json!({}),
        )
        .await;
    assert_eq!(r.body["status"], "on_hold", "{:?}", r.body);
    let mv = c.caller.follow_move().await;
    assert_eq!(mv["data"]["space"], "hold");
    c.caller.expect("call.on_hold").await;
    let r = app
        .post(
            &format!("/api/calls/{}/resume", c.call_id),
            Some(&c.owner_token),
            json!({}),
        )
        .await;
    assert_eq!(r.body["status"], "active");
    let mv = c.caller.follow_move().await;
    assert_eq!(mv["data"]["space"], "main");
    let r = app
        .post(
            &format!("/api/calls/{}/hangup", c.call_id),
            Some(&c.owner_token),
            json!({}),
        )
        .await;
    assert_eq!(r.body["status"], "ended");
    assert_eq!(r.body["endReason"], "agent_hangup");
    c.caller.expect("call.ended").await;
    let r = app
        .post(
            &format!("/api/calls/{}/hold", c.call_id),
            Some(&c.owner_token),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 409);
}

#[actix_web::test]
async fn an_unanswered_offer_goes_to_the_next_agent() {
    let app = spawn_app_with(TestOptions {
        ring_timeout: 1.0,
        ..Default::default()
    })
    .await;
    // Both are available; Alice has been idle longest, so she is offered the call first.
    let a = app.agent("alice").await;
    let mut alice = app.connect("alice", &a, None).await;
    let b = app.agent("bob").await;
    let mut bob = app.connect("bob", &b, None).await;
    let created = app.create_call(None).await;
    let call_id = created["call"]["callId"].as_str().unwrap().to_string();
    alice.expect("call.offered").await;
    bob.settle(Duration::from_millis(100)).await;
    assert!(
        !bob.types().iter().any(|t| t == "call.offered"),
        "one offer at a time"
    );
    alice.expect("call.offer_timed_out").await;
    let offered = bob.expect("call.offered").await;
    assert_eq!(offered["callId"], call_id.as_str());
    // Alice may no longer take it while it rings for Bob.
    let r = app
        .post(&format!("/api/calls/{call_id}/accept"), Some(&a), json!({}))
        .await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert_eq!(r.body["code"], "offered_to_another_agent");
    let r = app
        .post(&format!("/api/calls/{call_id}/accept"), Some(&b), json!({}))
        .await;
    assert_eq!(r.status, 200);
}

#[actix_web::test]
async fn the_transfer_completes_while_livekits_api_is_down() {
    let app = spawn_app().await;
    app.livekit.set_api_down(true);
    let mut c = active_call(&app, "alice").await;
    let (bob_token, mut bob) = with_bob(&app).await;
    let t = initiate(&app, &c, "bob", "warm").await;
    let id = t["transferId"].as_str().unwrap();
    c.caller.follow_move().await;
    c.owner.follow_move().await;
    app.post(
        &format!("/api/transfers/{id}/accept"),
        Some(&bob_token),
        json!({}),
    )
    .await;
    bob.follow_move().await;
    let r = app
        .post(
            &format!("/api/transfers/{id}/complete"),
            Some(&c.owner_token),
            json!({}),
        )
        .await;
    assert_eq!(r.body["status"], "completed", "{:?}", r.body);
    c.caller.follow_move().await;
    bob.follow_move().await;
    call_until(&app, &c.call_id, "caller with bob", |b| {
        placed(b, "caller") == Some(("main".into(), true))
            && placed(b, "bob") == Some(("main".into(), true))
    })
    .await;
    let health = app.get("/health", None).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.body["livekit"], "unreachable");
    assert_eq!(health.body["store"], "ok");
    assert!(
        app.livekit.requests().iter().all(|r| r.status == 503),
        "every RoomService call met the outage"
    );
}

/// Acknowledges the party's latest move over its WebSocket, as a browser does after joining.
async fn ack(p: &mut Party, mv: &Value) {
    p.send(
        json!({ "type": "ack", "id": "1", "callId": mv["callId"], "moveId": mv["data"]["moveId"] }),
    );
    let reply = p.expect("reply").await;
    assert_eq!(reply["ok"], true, "{reply}");
}

/// A warm transfer on a server that receives no webhooks, driven by acknowledgements up to
/// B's move into the consult room (which B has not acknowledged yet).
struct AckedTransfer {
    call_id: String,
    caller: Party,
    alice: Party,
    bob: Party,
    bob_move: Value,
}

async fn transfer_confirmed_by_acks(app: &TestApp) -> AckedTransfer {
    let a = app.agent("alice").await;
    let mut alice = app.connect("alice", &a, None).await;
    let created = app.create_call(Some("alice")).await;
    let call_id = created["call"]["callId"].as_str().unwrap().to_string();
    let mut caller = app
        .connect("caller", created["callerToken"].as_str().unwrap(), None)
        .await;
    // The caller joins from the create response and acknowledges that placement too.
    caller.join_from(&created["livekit"]);
    let first = json!({ "callId": call_id, "data": { "moveId": created["livekit"]["moveId"] } });
    ack(&mut caller, &first).await;
    alice.expect("call.offered").await;
    app.post(&format!("/api/calls/{call_id}/accept"), Some(&a), json!({}))
        .await;
    let mv = alice.follow_move().await;
    ack(&mut alice, &mv).await;
    let (bob_token, mut bob) = with_bob(app).await;
    let r = app
        .post(
            "/api/transfers/initiate",
            Some(&a),
            json!({ "callId": call_id, "agentBId": "bob" }),
        )
        .await;
    let id = r.body["transferId"].as_str().unwrap().to_string();
    let mv = caller.follow_move().await;
    ack(&mut caller, &mv).await;
    let mv = alice.follow_move().await;
    ack(&mut alice, &mv).await;
    app.post(
        &format!("/api/transfers/{id}/accept"),
        Some(&bob_token),
        json!({}),
    )
    .await;
    let bob_move = bob.follow_move().await;
    AckedTransfer {
        call_id,
        caller,
        alice,
        bob,
        bob_move,
    }
}

#[actix_web::test]
async fn without_webhooks_clients_confirm_arrival_by_acknowledging_moves() {
    let app = spawn_app_with(TestOptions {
        webhooks: false,
        ..Default::default()
    })
    .await;
    let mut t = transfer_confirmed_by_acks(&app).await;
    let bob_move = t.bob_move.clone();
    ack(&mut t.bob, &bob_move).await;
    let call = call_until(&app, &t.call_id, "all confirmed by acks", |b| {
        placed(b, "caller") == Some(("hold".into(), true))
            && placed(b, "alice") == Some(("consult".into(), true))
            && placed(b, "bob") == Some(("consult".into(), true))
    })
    .await;
    assert_eq!(call["transfer"]["status"], "briefing");
    // A stale acknowledgement (an old move id) changes nothing.
    let seq = call["seq"].clone();
    t.caller
        .send(json!({ "type": "ack", "callId": t.call_id, "moveId": "mv-0" }));
    let reply = t.caller.expect("reply").await;
    assert_eq!(
        reply["data"]["confirmed"], true,
        "still confirmed by the real ack"
    );
    let after = app
        .get(&format!("/api/calls/{}", t.call_id), None)
        .await
        .body;
    assert_eq!(after["seq"], seq);
}

#[actix_web::test]
async fn a_target_that_never_arrives_fails_the_transfer_at_the_deadline() {
    let app = spawn_app_with(TestOptions {
        webhooks: false,
        move_timeout: 2.0,
        ..Default::default()
    })
    .await;
    // Bob's browser never joins nor acknowledges its move to the consult room.
    let mut t = transfer_confirmed_by_acks(&app).await;
    let failed = t.alice.expect("transfer.failed").await;
    assert_eq!(failed["data"]["reason"], "target_disconnected");
    let mv = t.caller.follow_move().await;
    assert_eq!(mv["data"]["space"], "main");
    ack(&mut t.caller, &mv).await;
    let call = call_until(&app, &t.call_id, "caller back with alice", |b| {
        placed(b, "caller") == Some(("main".into(), true)) && placed(b, "bob").is_none()
    })
    .await;
    assert_eq!(call["ownerId"], "alice");
}

#[actix_web::test]
async fn an_away_agent_is_not_offered_calls_and_presence_is_pushed() {
    let app = spawn_app().await;
    let a = app.agent("alice").await;
    let mut alice = app.connect("alice", &a, None).await;
    let b = app.agent("bob").await;
    let mut bob = app.connect("bob", &b, None).await;
    alice.send(json!({ "type": "presence", "status": "away" }));
    let reply = alice.expect("reply").await;
    assert_eq!(reply["data"]["status"], "away");
    loop {
        let p = bob.expect("agent.presence").await;
        if p["data"]["agentId"] == "alice" && p["data"]["presence"] == "away" {
            break;
        }
    }
    let created = app.create_call(None).await;
    let offered = bob.expect("call.offered").await;
    assert_eq!(offered["callId"], created["call"]["callId"]);
    alice.settle(Duration::from_millis(300)).await;
    assert!(
        !alice.types().iter().any(|t| t == "call.offered"),
        "away agents get no offers"
    );
    let agents = app.get("/api/agents", Some(&a)).await.body;
    let find = |id: &str| {
        agents
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["agentId"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(find("alice")["presence"], "away");
    assert_eq!(find("bob")["presence"], "busy");
}
