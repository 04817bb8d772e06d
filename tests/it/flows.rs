//! Calls and transfers end to end over real HTTP and WebSocket sockets, with the LiveKit fake
//! confirming arrivals by signed webhooks: the happy paths and every failure path, each
//! showing where every party ends up.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::app::{spawn_app, spawn_app_with, Party, TestApp, TestOptions};

/// A call between a caller and `owner`, active, everyone in the main room.
pub struct ActiveCall {
    pub call_id: String,
    pub main_room: String,
    pub hold_room: String,
    pub caller: Party,
    pub owner: Party,
    pub owner_token: String,
    /// The caller's token (from `POST /api/calls`).
    pub caller_token: String,
}

/// Creates agents, a call for `owner`, and has the owner accept it.
pub async fn active_call(app: &TestApp, owner_id: &str) -> ActiveCall {
    let owner_token = app.agent(owner_id).await;
    let mut owner = app.connect(owner_id, &owner_token, None).await;
    let created = app.create_call(Some(owner_id)).await;
    let call_id = created["call"]["callId"].as_str().unwrap().to_string();
    let caller_token = created["callerToken"].as_str().unwrap().to_string();
    let mut caller = app.connect("caller", &caller_token, None).await;
    caller.join_from(&created["livekit"]);
    let offered = owner.expect("call.offered").await;
    assert_eq!(offered["callId"], call_id.as_str());
    assert_eq!(offered["data"]["callerName"], "Ann");
    let r = app
        .post(
            &format!("/api/calls/{call_id}/accept"),
            Some(&owner_token),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "active");
    owner.follow_move().await;
    owner.expect("call.active").await;
    caller.expect("call.active").await;
    ActiveCall {
        call_id,
        main_room: created["call"]["mainRoom"].as_str().unwrap().to_string(),
        hold_room: created["call"]["holdRoom"].as_str().unwrap().to_string(),
        caller,
        owner,
        owner_token,
        caller_token,
    }
}

/// Polls the API (the test's view, not a client's) until the call satisfies `pred`.
pub async fn call_until(
    app: &TestApp,
    call_id: &str,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = app.get(&format!("/api/calls/{call_id}"), None).await;
        if pred(&r.body) {
            return r.body;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("call never reached: {what}; last: {:#}", r.body);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Where a party is placed: `(space, confirmed)`.
pub fn placed(call: &Value, party: &str) -> Option<(String, bool)> {
    call["parties"].as_array()?.iter().find_map(|p| {
        (p["party"] == party).then(|| {
            (
                p["space"].as_str().unwrap_or_default().to_string(),
                p["confirmed"].as_bool().unwrap_or(false),
            )
        })
    })
}

/// No frame the caller received carries the briefing.
pub fn assert_caller_never_briefed(caller: &Party) {
    for f in &caller.seen {
        let text = f.to_string();
        assert!(
            !text.contains("summaryText")
                && !text.contains("offline summary")
                && f["type"] != "transfer.offered",
            "caller received briefing material: {f}"
        );
        if f["type"] == "participant.move" {
            assert!(
                !f["data"]["room"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("--consult"),
                "caller was sent to a consult room: {f}"
            );
        }
    }
}

/// Starts a warm transfer from the call's owner to `target` (already connected).
pub async fn initiate(app: &TestApp, c: &ActiveCall, target: &str, mode: &str) -> Value {
    let r = app
        .post(
            "/api/transfers/initiate",
            Some(&c.owner_token),
            json!({ "callId": c.call_id, "agentBId": target, "mode": mode, "note": "VIP" }),
        )
        .await;
    assert_eq!(r.status, 201, "initiate: {:?}", r.body);
    r.body
}

#[actix_web::test]
async fn warm_transfer_hands_the_caller_to_b_after_a_private_briefing() {
    let app = spawn_app().await;
    warm_transfer_flow(&app).await;
}

/// The call and the transfer a [`warm_transfer_flow`] went through.
pub struct WarmTransferDone {
    pub call_id: String,
    pub transfer_id: String,
}

/// A warm transfer end to end on `app` (any store): alice has a call with a transcript,
/// transfers it to bob, who is briefed privately and then owns the call; bob can transfer
/// it again (that second transfer, back to alice, is left ringing).
pub async fn warm_transfer_flow(app: &TestApp) -> WarmTransferDone {
    let mut c = active_call(app, "alice").await;
    let bob_token = app.agent("bob").await;
    let mut bob = app.connect("bob", &bob_token, None).await;
    let r = app
        .post(
            "/api/transcripts",
            Some(&c.owner_token),
            json!({ "callId": c.call_id, "speaker": "caller", "text": "I was charged twice in March. Please fix it." }),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);

    let started = initiate(app, &c, "bob", "warm").await;
    assert_eq!(started["status"], "ringing");
    assert!(started["transferId"].as_str().unwrap().starts_with("xfer-"));
    assert!(started["summaryText"]
        .as_str()
        .unwrap()
        .contains("charged twice"));
    assert!(started["tokens"]["tokenA"].is_string());
    assert!(
        started["tokens"]["tokenB"].is_null(),
        "B's token never goes to A"
    );
    let transfer_id = started["transferId"].as_str().unwrap().to_string();
    let consult = started["transferRoom"].as_str().unwrap().to_string();

    // The caller is held, A goes to the consult room, B is offered the briefing.
    let mv = c.caller.follow_move().await;
    assert_eq!(mv["data"]["room"], c.hold_room.as_str());
    assert_eq!(mv["data"]["space"], "hold");
    let mv = c.owner.follow_move().await;
    assert_eq!(mv["data"]["room"], consult.as_str());
    let offer = bob.expect("transfer.offered").await;
    assert_eq!(offer["data"]["transferId"], transfer_id.as_str());
    assert!(offer["data"]["summaryText"]
        .as_str()
        .unwrap()
        .contains("charged twice"));
    assert_eq!(offer["data"]["note"], "VIP");
    c.caller.expect("transfer.initiated").await;

    // B accepts and joins the consult room: the briefing.
    let r = app
        .post(
            &format!("/api/transfers/{transfer_id}/accept"),
            Some(&bob_token),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "briefing");
    let mv = bob.follow_move().await;
    assert_eq!(mv["data"]["room"], consult.as_str());
    c.owner.expect("transfer.briefing").await;
    let call = call_until(app, &c.call_id, "everyone confirmed in place", |b| {
        placed(b, "caller") == Some(("hold".into(), true))
            && placed(b, "alice") == Some(("consult".into(), true))
            && placed(b, "bob") == Some(("consult".into(), true))
    })
    .await;
    assert_eq!(call["status"], "transferring");
    assert!(app.livekit.is_in_room(&consult, "alice") && app.livekit.is_in_room(&consult, "bob"));
    assert!(!app
        .livekit
        .participants(&consult)
        .iter()
        .any(|p| p.starts_with("caller")));

    // A completes: caller and B meet in the main room, A is released.
    let r = app
        .post(
            &format!("/api/transfers/{transfer_id}/complete"),
            Some(&c.owner_token),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "completed");
    let again = app
        .post(
            &format!("/api/transfers/{transfer_id}/complete"),
            Some(&c.owner_token),
            json!({}),
        )
        .await;
    assert_eq!(
        again.status, 200,
        "a repeated complete returns the same result"
    );
    assert_eq!(again.body["status"], "completed");
    let mv = c.caller.follow_move().await;
    assert_eq!(mv["data"]["room"], c.main_room.as_str());
    let mv = bob.follow_move().await;
    assert_eq!(mv["data"]["room"], c.main_room.as_str());
    c.owner.expect("participant.released").await;
    c.caller.expect("transfer.completed").await;
    bob.expect("transfer.completed").await;
    let call = call_until(app, &c.call_id, "caller with bob", |b| {
        placed(b, "caller") == Some(("main".into(), true))
            && placed(b, "bob") == Some(("main".into(), true))
    })
    .await;
    assert_eq!(call["status"], "active");
    assert_eq!(call["ownerId"], "bob");
    assert_eq!(call["agentAId"], "alice");
    assert_eq!(call["agentBId"], "bob");
    assert!(placed(&call, "alice").is_none(), "alice released: {call:#}");
    assert_caller_never_briefed(&c.caller);

    // Every event is numbered per call without gaps for the parties that see all of them,
    // and the consult room is gone.
    let seqs: Vec<u64> = c
        .caller
        .seen
        .iter()
        .filter_map(|f| f["seq"].as_u64())
        .filter(|s| *s > 0)
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "caller seqs grow: {seqs:?}"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while app.livekit.room_exists(&consult) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!app.livekit.room_exists(&consult), "consult room deleted");

    // B owns the call now and can transfer it again.
    let r = app
        .post(
            "/api/transfers/initiate",
            Some(&bob_token),
            json!({ "callId": c.call_id, "agentBId": "alice", "mode": "warm" }),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    WarmTransferDone {
        call_id: c.call_id.clone(),
        transfer_id,
    }
}

#[actix_web::test]
async fn an_agent_reconnecting_with_since_gets_exactly_what_it_missed() {
    let app = spawn_app_with(TestOptions {
        disconnect_grace: 5.0,
        ..Default::default()
    })
    .await;
    let mut c = active_call(&app, "alice").await;
    let last_seen = c
        .owner
        .seen
        .iter()
        .filter(|f| f["callId"] == c.call_id.as_str())
        .filter_map(|f| f["seq"].as_u64())
        .max()
        .unwrap();
    c.owner.close();
    // While Alice is away (within the grace period) the caller is put on hold.
    let r = app
        .post(
            &format!("/api/calls/{}/hold", c.call_id),
            Some(&c.owner_token),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let since = format!("{}:{last_seen}", c.call_id);
    let mut again = app
        .connect("alice again", &c.owner_token, Some(&since))
        .await;
    let held = again.expect("call.on_hold").await;
    assert!(held["seq"].as_u64().unwrap() > last_seen);
    again.settle(Duration::from_millis(200)).await;
    let replayed: Vec<u64> = again
        .seen
        .iter()
        .filter_map(|f| f["seq"].as_u64())
        .filter(|s| *s > 0)
        .collect();
    assert!(
        replayed.iter().all(|s| *s > last_seen),
        "nothing already seen: {replayed:?}"
    );
    let mut sorted = replayed.clone();
    sorted.dedup();
    assert_eq!(sorted, replayed, "no duplicates, in order");
    // The caller's move to hold was for the caller only: Alice does not receive it.
    assert!(!again.types().iter().any(|t| t == "participant.move"));
    // Replayed moves carry no credential: join tokens are never stored.
    let full = format!("{}:0", c.call_id);
    let mut history = app
        .connect("alice history", &c.owner_token, Some(&full))
        .await;
    let mv = history.expect("participant.move").await;
    assert!(mv["data"]["room"].is_string());
    assert!(
        mv["data"].get("token").is_none(),
        "stored move carries a token: {mv}"
    );
    // A garbage since is refused before upgrading.
    let r = app
        .http
        .get(format!(
            "{}/ws?token={}&since=call-x:notanumber",
            app.address, c.owner_token
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
}
