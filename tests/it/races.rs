//! Many concurrent completes and cancels of one transfer through the HTTP API, on each
//! store. What the API promises: exactly one outcome wins; every request for the winning
//! command is answered 200 with that outcome (the first one did it, the others are
//! idempotent repeats of a finished command); every request for the other command is 409
//! `transfer_ended`; and the store holds exactly that outcome, once.

use serde_json::json;

use crate::flows::{active_call, call_until, initiate};
use crate::support::app::{spawn_app_with, TestApp, TestOptions, TestStore};

/// How many requests race (half complete, half cancel, interleaved).
const RACERS: usize = 16;

async fn complete_and_cancel_race(app: &TestApp) {
    let c = active_call(app, "alice").await;
    let bob_token = app.agent("bob").await;
    let mut bob = app.connect("bob", &bob_token, None).await;
    let started = initiate(app, &c, "bob", "warm").await;
    let id = started["transferId"].as_str().unwrap().to_string();
    bob.expect("transfer.offered").await;
    let r = app
        .post(
            &format!("/api/transfers/{id}/accept"),
            Some(&bob_token),
            json!({}),
        )
        .await;
    assert_eq!(r.body["status"], "briefing", "{:?}", r.body);

    let requests = (0..RACERS).map(|i| {
        let action = if i % 2 == 0 { "complete" } else { "cancel" };
        let path = format!("/api/transfers/{id}/{action}");
        let token = c.owner_token.clone();
        async move { (action, app.post(&path, Some(&token), json!({})).await) }
    });
    let replies = futures_util::future::join_all(requests).await;

    let outcome = replies
        .iter()
        .find(|(_, r)| r.status == 200)
        .map(|(_, r)| r.body["status"].as_str().unwrap().to_string())
        .expect("one command won");
    let winning = match outcome.as_str() {
        "completed" => "complete",
        "cancelled" => "cancel",
        other => panic!("unexpected outcome {other}"),
    };
    for (action, r) in &replies {
        if *action == winning {
            assert_eq!(r.status, 200, "{action}: {:?}", r.body);
            assert_eq!(r.body["status"], outcome.as_str(), "{action}: {:?}", r.body);
        } else {
            assert_eq!(r.status, 409, "{action}: {:?}", r.body);
            assert_eq!(r.body["code"], "transfer_ended", "{action}: {:?}", r.body);
        }
    }

    // The API and the store agree on the one outcome.
    let t = app.get(&format!("/api/transfers/{id}"), None).await.body;
    assert_eq!(t["status"], outcome.as_str());
    let owner = if outcome == "completed" {
        "bob"
    } else {
        "alice"
    };
    let call = call_until(app, &c.call_id, "the call settles with its owner", |b| {
        b["status"] == "active" && b["ownerId"] == owner
    })
    .await;
    assert!(call["openTransferId"].is_null(), "{call:#}");
    let store = app.store.as_ref().expect("the test server's store");
    let stored = store.get_transfer(&id).await.unwrap().unwrap();
    assert_eq!(stored.status.as_str(), outcome);
    let events = store.events_since(&c.call_id, 0).await.unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "no gap");
    let endings: Vec<&str> = events
        .iter()
        .filter(|e| e.kind == "transfer.completed" || e.kind == "transfer.cancelled")
        .map(|e| e.kind.as_str())
        .collect();
    assert_eq!(
        endings,
        vec![format!("transfer.{outcome}")],
        "one ending, stored once"
    );
    let open = store
        .list_transfers(&[switchboard::model::TransferStatus::Briefing])
        .await
        .unwrap();
    assert!(!open.iter().any(|t| t.transfer_id == id));
}

#[actix_web::test]
async fn racing_completes_and_cancels_have_one_winner() {
    let app = spawn_app_with(TestOptions::default()).await;
    complete_and_cancel_race(&app).await;
}

#[actix_web::test]
async fn racing_completes_and_cancels_have_one_winner_on_dynamodb() {
    let app = spawn_app_with(TestOptions {
        store: TestStore::DynamoDb {
            prefix: crate::support::dynamo::fresh_prefix(),
        },
        ..Default::default()
    })
    .await;
    complete_and_cancel_race(&app).await;
}
