//! Outbound assistant calls end to end through the LiveKit fake's SIP, agent
//! dispatch and egress services: a call answered, recorded and hung up by the callee, with
//! its one signed end-of-call webhook; busy, no answer and a failing trunk; recording off
//! and a refused recording; the assistant handing the caller to a human over the transfer
//! API; organisations kept apart; placeholders refused by name; a retried request dialling
//! once.

use std::time::Duration;

use serde_json::{json, Value};

use super::webhooks::{fast_env, Receiver};
use crate::support::app::{send_with_key as send, spawn_app_with, TestApp, TestOptions};
use crate::support::livekit::{EgressFault, SipScript};
use switchboard::webhooks::signing::{self, DEFAULT_TOLERANCE};

const ROOT: &str = "outbound-root-management-key";
const CALLEE: &str = "+15550102030";
const BUCKET: &str = "calls";

/// An organisation with a key, a trunk and an assistant whose webhook goes to `receiver`.
struct Org {
    key: String,
    webhook_secret: String,
    trunk_id: String,
    assistant_id: String,
}

async fn app_with(receiver: &Receiver) -> TestApp {
    let mut env = fast_env(receiver.port());
    for (k, v) in [
        ("SWITCHBOARD_RECORDING_S3_BUCKET", BUCKET),
        ("SWITCHBOARD_RECORDING_S3_REGION", "eu-west-1"),
        ("SWITCHBOARD_RECORDING_S3_ACCESS_KEY", "AKIAEXAMPLE"),
        ("SWITCHBOARD_RECORDING_S3_SECRET", "s3-secret-for-tests"),
    ] {
        env.push((k.to_string(), v.to_string()));
    }
    spawn_app_with(TestOptions {
        api_key: Some(ROOT.into()),
        ring_timeout: 2.0,
        move_timeout: 3.0,
        env,
        ..Default::default()
    })
    .await
}

async fn org(app: &TestApp, name: &str, receiver: &Receiver, record: bool) -> Org {
    let (status, key) = send(
        app,
        Some(ROOT),
        "POST",
        "/api/keys",
        Some(json!({"userName": "Ada", "orgName": name, "userEmail": "ada@example.com", "role": "admin"})),
    )
    .await;
    assert_eq!(status, 201, "{key}");
    let api_key = key["apiKey"].as_str().unwrap().to_string();
    let (status, trunk) = send(
        app,
        Some(&api_key),
        "POST",
        "/api/sip/trunks",
        Some(json!({
            "name": "Carrier",
            "address": "sip.carrier.example",
            "numbers": ["+15550100000"],
            "authUsername": "acct",
            "authPassword": "trunk-password",
        })),
    )
    .await;
    assert_eq!(status, 201, "{trunk}");
    let (status, assistant) = send(
        app,
        Some(&api_key),
        "POST",
        "/api/assistants",
        Some(json!({
            "name": "Renewals",
            "prompt": "You call {{name}} about order {{orderId}}.",
            "startInstruction": "Hello {{name}}!",
            "tts": {"provider": "cartesia", "voiceId": "248be419-3632-4f38-9500-05f963499d7e"},
            "endCallUrl": receiver.url(),
            "record": record,
        })),
    )
    .await;
    assert_eq!(status, 201, "{assistant}");
    Org {
        key: api_key,
        webhook_secret: key["webhookSecret"].as_str().unwrap().to_string(),
        trunk_id: trunk["trunkId"].as_str().unwrap().to_string(),
        assistant_id: assistant["assistantId"].as_str().unwrap().to_string(),
    }
}

async fn dial(app: &TestApp, org: &Org, extra: Value) -> Value {
    let mut body = json!({
        "assistantId": org.assistant_id,
        "trunkId": org.trunk_id,
        "toNumber": CALLEE,
        "metadata": {"name": "Ada", "orderId": 42},
    });
    if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
        b.extend(e);
    }
    let (status, created) = send(
        app,
        Some(&org.key),
        "POST",
        "/api/calls/outbound",
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["status"], "dialing");
    created
}

/// Polls the call (with the organisation's key) until `pred` holds.
async fn call_until(
    app: &TestApp,
    org: &Org,
    call_id: &str,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (_, body) = send(
            app,
            Some(&org.key),
            "GET",
            &format!("/api/calls/{call_id}"),
            None,
        )
        .await;
        if pred(&body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the call never reached: {what}; last: {body:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The one `call.ended` webhook, checked for its signature with the key's secret.
async fn the_webhook(receiver: &Receiver, org: &Org) -> Value {
    let got = receiver.wait_for(1, Duration::from_secs(30)).await;
    let r = &got[0];
    let header = r.header("Switchboard-Signature");
    let now = chrono::Utc::now().timestamp();
    signing::verify(&org.webhook_secret, header, &r.body, now, DEFAULT_TOLERANCE)
        .expect("the webhook verifies with the key's secret");
    assert!(
        signing::verify("whsec_wrong", header, &r.body, now, DEFAULT_TOLERANCE).is_err(),
        "a wrong secret must not verify"
    );
    serde_json::from_slice(&r.body).unwrap()
}

/// The room (with its SIP leg and assistant) and the dispatch are gone, soon after the end
/// (the clean-up runs after the end is stored).
async fn nothing_left(app: &TestApp, room: &str, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let gone = !app.livekit.room_exists(room)
            && app.livekit.dispatches(room).is_empty()
            && app.livekit.participants(room).is_empty();
        if gone {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: left behind in {room}: participants {:?}, dispatches {:?}",
            app.livekit.participants(room),
            app.livekit.dispatches(room)
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[actix_web::test]
async fn an_answered_recorded_call_ends_with_one_signed_webhook_and_nothing_left_behind() {
    let receiver = Receiver::start(vec![]);
    let app = app_with(&receiver).await;
    let org = org(&app, "Acme", &receiver, true).await;
    app.livekit.script_sip(
        CALLEE,
        SipScript::Answer {
            after: Duration::from_millis(300),
        },
    );
    let created = dial(&app, &org, json!({})).await;
    let call_id = created["callId"].as_str().unwrap().to_string();
    let room = created["room"].as_str().unwrap().to_string();

    // The assistant is dispatched with the prompt rendered from the metadata.
    call_until(&app, &org, &call_id, "dispatched and dialled", |c| {
        c["outbound"]["dispatchId"].is_string() && c["status"] != "dialing"
    })
    .await;
    let dispatches = app.livekit.dispatches(&room);
    assert_eq!(dispatches.len(), 1, "{dispatches:?}");
    assert_eq!(dispatches[0].agent_name, "switchboard-assistant");
    let md: Value = serde_json::from_str(&dispatches[0].metadata).unwrap();
    assert_eq!(md["prompt"], "You call Ada about order 42.");
    assert_eq!(md["startInstruction"], "Hello Ada!");
    assert_eq!(md["callId"], call_id.as_str());
    // The number is dialled through the organisation's trunk into the call's room.
    let dials = app.livekit.sip_dials();
    assert_eq!(dials.len(), 1);
    assert_eq!(dials[0].sip_call_to, CALLEE);
    assert_eq!(dials[0].room_name, room);
    let lk_trunk = app.livekit.sip_trunks()[0].sip_trunk_id.clone();
    assert_eq!(dials[0].sip_trunk_id, lk_trunk);

    let active = call_until(&app, &org, &call_id, "active", |c| c["status"] == "active").await;
    assert_eq!(active["ownerId"], format!("assistant:{}", org.assistant_id));
    assert!(active["outbound"]["answeredAt"].is_string(), "{active:#}");
    let recording = call_until(&app, &org, &call_id, "recording", |c| {
        c["recording"]["status"] == "active"
    })
    .await;
    let egress_id = recording["recording"]["egressId"]
        .as_str()
        .unwrap()
        .to_string();
    let req = &app.livekit.egress_requests()[0];
    assert!(req.audio_only, "recordings are audio only");

    // The assistant's worker writes what was said.
    let (status, t) = send(
        &app,
        Some(&org.key),
        "POST",
        "/api/transcripts",
        Some(json!({"callId": call_id, "text": "Hello Ada! Your order 42 renews next week."})),
    )
    .await;
    assert_eq!(status, 201, "{t}");
    assert_eq!(t["speaker"], "assistant");

    // The callee hangs up.
    let callee = active["callerId"].as_str().unwrap();
    assert!(app.livekit.sip_hangup(&room, callee));
    let ended = call_until(&app, &org, &call_id, "ended", |c| c["status"] == "ended").await;
    assert_eq!(ended["endReason"], "caller_hangup");

    let payload = the_webhook(&receiver, &org).await;
    assert_eq!(payload["callId"], call_id.as_str());
    assert_eq!(payload["assistantId"], org.assistant_id.as_str());
    assert_eq!(payload["assistantName"], "Renewals");
    assert_eq!(payload["toNumber"], CALLEE);
    assert_eq!(payload["endReason"], "caller_hangup");
    assert_eq!(payload["recording"]["status"], "complete", "{payload:#}");
    assert_eq!(
        payload["recording"]["location"],
        format!("s3://{BUCKET}/recordings/{call_id}.ogg")
    );
    assert!(
        payload["transcripts"]
            .to_string()
            .contains("renews next week"),
        "{payload:#}"
    );
    // Nothing left behind: the room (with the assistant) is gone, the dispatch deleted,
    // the recording finished.
    nothing_left(&app, &room, "answered").await;
    let egress = app
        .livekit
        .egresses()
        .into_iter()
        .find(|e| e.info.egress_id == egress_id)
        .unwrap();
    assert!(egress.has_credentials);
    // Exactly one delivery, delivered, visible to the organisation.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.got().len(), 1, "one webhook per call");
    let (status, deliveries) = send(
        &app,
        Some(&org.key),
        "GET",
        &format!("/api/calls/{call_id}/webhooks"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{deliveries}");
    assert_eq!(deliveries["deliveries"].as_array().unwrap().len(), 1);
}

#[actix_web::test]
async fn busy_unanswered_and_failing_dials_fail_the_call_with_the_sip_status() {
    for (script, status, outcome) in [
        (
            SipScript::Reject {
                status: 486,
                reason: "Busy Here".into(),
            },
            486,
            "busy",
        ),
        (SipScript::NoAnswer, 480, "no_answer"),
        (
            SipScript::Reject {
                status: 503,
                reason: "Service Unavailable".into(),
            },
            503,
            "dial_failed",
        ),
    ] {
        let receiver = Receiver::start(vec![]);
        let app = app_with(&receiver).await;
        let org = org(&app, "Acme", &receiver, false).await;
        app.livekit.script_sip(CALLEE, script);
        let created = dial(&app, &org, json!({})).await;
        let call_id = created["callId"].as_str().unwrap();
        let room = created["room"].as_str().unwrap();
        let failed = call_until(&app, &org, call_id, "failed", |c| c["status"] == "failed").await;
        assert_eq!(failed["endReason"], outcome, "{failed:#}");
        assert_eq!(failed["outbound"]["sipStatus"], status);
        let payload = the_webhook(&receiver, &org).await;
        assert_eq!(payload["sipStatus"], status, "{payload:#}");
        assert_eq!(payload["endReason"], outcome);
        nothing_left(&app, room, outcome).await;
    }
}

#[actix_web::test]
async fn recording_off_records_nothing_and_a_refused_recording_is_recorded_as_failed() {
    let receiver = Receiver::start(vec![]);
    let app = app_with(&receiver).await;
    let org = org(&app, "Acme", &receiver, false).await;
    let created = dial(&app, &org, json!({})).await;
    let call_id = created["callId"].as_str().unwrap().to_string();
    call_until(&app, &org, &call_id, "active", |c| c["status"] == "active").await;
    assert!(
        app.livekit.egress_requests().is_empty(),
        "no recording asked for"
    );

    // Asked for by the call, refused by LiveKit's egress: recorded, never ignored.
    app.livekit.fail_egress(EgressFault::StartRefused);
    let created = dial(&app, &org, json!({"record": true})).await;
    let call_id = created["callId"].as_str().unwrap().to_string();
    let c = call_until(&app, &org, &call_id, "recording failed", |c| {
        c["recording"]["status"] == "failed"
    })
    .await;
    assert!(
        c["recording"]["error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{c:#}"
    );
    assert_eq!(
        c["status"], "active",
        "the call goes on without a recording"
    );
}

#[actix_web::test]
async fn the_assistant_hands_the_caller_to_a_human_who_takes_over_on_arrival() {
    let receiver = Receiver::start(vec![]);
    let app = app_with(&receiver).await;
    let org = org(&app, "Acme", &receiver, false).await;
    let bob_token = app.agent("bob").await;
    let mut bob = app.connect("bob", &bob_token, None).await;
    let created = dial(&app, &org, json!({})).await;
    let call_id = created["callId"].as_str().unwrap().to_string();
    let room = created["room"].as_str().unwrap().to_string();
    call_until(&app, &org, &call_id, "assistant in the room", |c| {
        c["status"] == "active" && c["outbound"]["assistantIdentity"].is_string()
    })
    .await;
    send(
        &app,
        Some(&org.key),
        "POST",
        "/api/transcripts",
        Some(json!({"callId": call_id, "text": "I want to cancel my renewal and speak to a person."})),
    )
    .await;
    let (status, t) = send(
        &app,
        Some(&org.key),
        "POST",
        "/api/transfers/initiate",
        Some(json!({"callId": call_id, "agentBId": "bob", "note": "Wants to cancel"})),
    )
    .await;
    assert_eq!(status, 201, "{t}");
    assert_eq!(
        t["mode"], "conference",
        "an assistant hands over in the caller's room"
    );
    assert!(t["tokens"]["tokenA"].is_null());
    let transfer_id = t["transferId"].as_str().unwrap().to_string();
    let offered = bob.expect("transfer.offered").await;
    assert!(
        offered["data"]["summaryText"]
            .as_str()
            .is_some_and(|s| s.contains("cancel")),
        "B gets the summary before saying a word: {offered:#}"
    );
    // An organisation key cannot answer for B.
    let (status, _) = send(
        &app,
        Some(&org.key),
        "POST",
        &format!("/api/transfers/{transfer_id}/accept"),
        None,
    )
    .await;
    assert_eq!(status, 403);
    let r = app
        .post(
            &format!("/api/transfers/{transfer_id}/accept"),
            Some(&bob_token),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let mv = bob.follow_move().await;
    assert_eq!(mv["data"]["room"], room.as_str());
    let done = call_until(&app, &org, &call_id, "bob owns the call", |c| {
        c["ownerId"] == "bob"
    })
    .await;
    assert_eq!(done["transfer"]["status"], "completed");
    assert_eq!(done["transfer"]["reason"], "assistant_handoff");
    assert_eq!(done["status"], "active");
    // The assistant left: its dispatch deleted and its participant removed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !app.livekit.dispatches(&room).is_empty()
        || app
            .livekit
            .participants(&room)
            .iter()
            .any(|p| p.starts_with("agent-"))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the assistant is still there: {:?}",
            app.livekit.participants(&room)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The assistant no longer owns the call: a second hand-off is refused.
    let (status, body) = send(
        &app,
        Some(&org.key),
        "POST",
        "/api/transfers/initiate",
        Some(json!({"callId": call_id, "agentBId": "bob"})),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "not_assistant_call");
}

#[actix_web::test]
async fn organisations_are_kept_apart_and_bad_requests_dial_nothing() {
    let receiver = Receiver::start(vec![]);
    let app = app_with(&receiver).await;
    let acme = org(&app, "Acme", &receiver, false).await;
    let globex = org(&app, "Globex", &receiver, false).await;
    let created = dial(&app, &acme, json!({})).await;
    let call_id = created["callId"].as_str().unwrap().to_string();
    call_until(&app, &acme, &call_id, "active", |c| c["status"] == "active").await;

    // Another organisation's key: the call does not exist for it.
    for (method, path, body) in [
        ("GET", format!("/api/calls/{call_id}"), None),
        ("POST", format!("/api/calls/{call_id}/hangup"), None),
        ("GET", format!("/api/calls/{call_id}/webhooks"), None),
        (
            "POST",
            "/api/transcripts".to_string(),
            Some(json!({"callId": call_id, "text": "x"})),
        ),
        (
            "POST",
            "/api/transfers/initiate".to_string(),
            Some(json!({"callId": call_id, "agentBId": "bob"})),
        ),
    ] {
        let (status, reply) = send(&app, Some(&globex.key), method, &path, body).await;
        assert_eq!(status, 404, "{method} {path}: {reply}");
    }
    // Nor are its assistant and trunk usable by another organisation.
    let dials_before = app.livekit.sip_dials().len();
    for body in [
        json!({"assistantId": acme.assistant_id, "trunkId": globex.trunk_id, "toNumber": CALLEE, "metadata": {"name": "A", "orderId": 1}}),
        json!({"assistantId": globex.assistant_id, "trunkId": acme.trunk_id, "toNumber": CALLEE, "metadata": {"name": "A", "orderId": 1}}),
    ] {
        let (status, reply) = send(
            &app,
            Some(&globex.key),
            "POST",
            "/api/calls/outbound",
            Some(body),
        )
        .await;
        assert_eq!(status, 400, "{reply}");
        assert_eq!(reply["code"], "invalid_field");
    }
    // Missing placeholders are named; a bad number is refused; no key is 401.
    let (status, reply) = send(
        &app,
        Some(&acme.key),
        "POST",
        "/api/calls/outbound",
        Some(json!({"assistantId": acme.assistant_id, "trunkId": acme.trunk_id, "toNumber": CALLEE, "metadata": {"nom": "Ada"}})),
    )
    .await;
    assert_eq!(status, 400, "{reply}");
    assert_eq!(reply["code"], "missing_metadata");
    let message = reply["message"].as_str().unwrap();
    assert!(
        message.contains("name") && message.contains("orderId"),
        "{message}"
    );
    let (status, reply) = send(
        &app,
        Some(&acme.key),
        "POST",
        "/api/calls/outbound",
        Some(json!({"assistantId": acme.assistant_id, "trunkId": acme.trunk_id, "toNumber": "5550102030", "metadata": {"name": "A", "orderId": 1}})),
    )
    .await;
    assert_eq!(status, 400, "{reply}");
    for key in [
        None,
        Some("sbk_000000000000000000000000_notakeynotakeynotakeynotakeynotakeynota"),
    ] {
        let (status, _) = send(
            &app,
            key,
            "POST",
            "/api/calls/outbound",
            Some(json!({"assistantId": acme.assistant_id, "trunkId": acme.trunk_id, "toNumber": CALLEE})),
        )
        .await;
        assert_eq!(status, 401);
    }
    assert_eq!(
        app.livekit.sip_dials().len(),
        dials_before,
        "nothing was dialled"
    );

    // A revoked key is refused at once.
    let (_, keys) = send(&app, Some(ROOT), "GET", "/api/keys", None).await;
    let globex_key_id = keys
        .as_array()
        .or_else(|| keys["keys"].as_array())
        .unwrap()
        .iter()
        .find(|k| k["orgId"] == "globex")
        .unwrap()["keyId"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _) = send(
        &app,
        Some(ROOT),
        "DELETE",
        &format!("/api/keys/{globex_key_id}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = send(&app, Some(&globex.key), "GET", "/api/assistants", None).await;
    assert_eq!(status, 401);

    // The management key's assistants need SWITCHBOARD_WEBHOOK_SECRET to sign their
    // webhooks; without it, an end-of-call URL is refused rather than left unsigned.
    let (status, reply) = send(
        &app,
        Some(ROOT),
        "POST",
        "/api/assistants",
        Some(json!({"orgId": "acme", "name": "R", "prompt": "p", "tts": {"provider": "openai"}, "endCallUrl": receiver.url()})),
    )
    .await;
    assert_eq!(status, 400, "{reply}");
    assert_eq!(reply["code"], "webhook_secret_missing");
    // An end-of-call URL on a private address (not allowed here) is refused.
    let (status, reply) = send(
        &app,
        Some(&acme.key),
        "PATCH",
        &format!("/api/assistants/{}", acme.assistant_id),
        Some(json!({"endCallUrl": "http://169.254.169.254/latest/meta-data"})),
    )
    .await;
    assert_eq!(status, 400, "{reply}");
    assert!(
        reply["message"].as_str().unwrap().starts_with("endCallUrl"),
        "{reply}"
    );

    // The organisation hangs its own call up.
    let (status, reply) = send(
        &app,
        Some(&acme.key),
        "POST",
        &format!("/api/calls/{call_id}/hangup"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    call_until(&app, &acme, &call_id, "ended", |c| c["status"] == "ended").await;
}

#[actix_web::test]
async fn a_retried_request_with_the_same_idempotency_key_dials_once() {
    let receiver = Receiver::start(vec![]);
    let app = app_with(&receiver).await;
    let org = org(&app, "Acme", &receiver, false).await;
    let body = json!({
        "assistantId": org.assistant_id,
        "trunkId": org.trunk_id,
        "toNumber": CALLEE,
        "metadata": {"name": "Ada", "orderId": 42},
    });
    let mut ids = vec![];
    for expected in [201, 200] {
        let resp = app
            .http
            .post(format!("{}/api/calls/outbound", app.address))
            .header("x-api-key", &org.key)
            .header("Idempotency-Key", "renewal-campaign-7-ada")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), expected);
        let v: Value = resp.json().await.unwrap();
        ids.push(v["callId"].as_str().unwrap().to_string());
    }
    assert_eq!(ids[0], ids[1]);
    // The same key with another body (another callee's metadata) is refused: 422, no dial.
    let mut other = body.clone();
    other["metadata"]["name"] = json!("Bob");
    let resp = app
        .http
        .post(format!("{}/api/calls/outbound", app.address))
        .header("x-api-key", &org.key)
        .header("Idempotency-Key", "renewal-campaign-7-ada")
        .json(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 422);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["code"], "idempotency_key_reused", "{v}");
    // The dial runs after the answer: wait for its result before counting.
    call_until(&app, &org, &ids[0], "answered", |c| c["status"] == "active").await;
    assert_eq!(app.livekit.sip_dials().len(), 1, "one dial for one request");
}

#[actix_web::test]
async fn a_recording_asked_for_without_storage_is_refused_before_dialling() {
    let receiver = Receiver::start(vec![]);
    let app = spawn_app_with(TestOptions {
        api_key: Some(ROOT.into()),
        env: fast_env(receiver.port()),
        ..Default::default()
    })
    .await;
    let org = org(&app, "Acme", &receiver, false).await;
    let (status, reply) = send(
        &app,
        Some(&org.key),
        "POST",
        "/api/calls/outbound",
        Some(json!({
            "assistantId": org.assistant_id,
            "trunkId": org.trunk_id,
            "toNumber": CALLEE,
            "metadata": {"name": "Ada", "orderId": 1},
            "record": true,
        })),
    )
    .await;
    assert_eq!(status, 400, "{reply}");
    assert_eq!(reply["code"], "recording_not_configured");
    assert!(app.livekit.sip_dials().is_empty(), "nothing was dialled");
}

#[actix_web::test]
async fn an_assistant_that_drops_out_leaves_the_caller_queued_for_a_human() {
    let receiver = Receiver::start(vec![]);
    let app = app_with(&receiver).await;
    let org = org(&app, "Acme", &receiver, false).await;
    let bob_token = app.agent("bob").await;
    let mut bob = app.connect("bob", &bob_token, None).await;
    let created = dial(&app, &org, json!({})).await;
    let call_id = created["callId"].as_str().unwrap().to_string();
    let room = created["room"].as_str().unwrap().to_string();
    let active = call_until(&app, &org, &call_id, "assistant in the room", |c| {
        c["status"] == "active" && c["outbound"]["assistantIdentity"].is_string()
    })
    .await;
    // The assistant's worker crashes: LiveKit reports its participant gone.
    let worker = active["outbound"]["assistantIdentity"].as_str().unwrap();
    assert!(app.livekit.leave(&room, worker));
    // The callee is not left alone with nobody: routing offers the call to a human.
    let offered = bob.expect("call.offered").await;
    assert_eq!(offered["callId"], call_id.as_str());
    let r = app
        .post(
            &format!("/api/calls/{call_id}/accept"),
            Some(&bob_token),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let mv = bob.follow_move().await;
    assert_eq!(
        mv["data"]["room"],
        room.as_str(),
        "bob joins the callee where it is"
    );
    let c = call_until(&app, &org, &call_id, "bob has the call", |c| {
        c["ownerId"] == "bob"
    })
    .await;
    assert_eq!(c["status"], "active");
}

#[actix_web::test]
async fn a_sip_callee_is_handed_to_web_agents_only() {
    let receiver = Receiver::start(vec![]);
    let mut env = fast_env(receiver.port());
    env.push(("SWITCHBOARD_RING_TIMEOUT".into(), "2".into()));
    let app = spawn_app_with(TestOptions {
        api_key: Some(ROOT.into()),
        twilio: true,
        env,
        ..Default::default()
    })
    .await;
    let org = org(&app, "Acme", &receiver, false).await;
    let r = app
        .post(
            "/api/agents",
            None,
            json!({"agentId": "spec", "name": "Specialist", "kind": "phone", "phoneNumber": "+15550003333"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let created = dial(&app, &org, json!({})).await;
    let call_id = created["callId"].as_str().unwrap().to_string();
    call_until(&app, &org, &call_id, "active", |c| c["status"] == "active").await;
    let (status, reply) = send(
        &app,
        Some(&org.key),
        "POST",
        "/api/transfers/initiate",
        Some(json!({"callId": call_id, "agentBId": "spec"})),
    )
    .await;
    assert_eq!(status, 400, "{reply}");
    assert_eq!(reply["code"], "unsupported_target");
    let c = call_until(&app, &org, &call_id, "still the assistant's", |c| {
        c["status"] == "active"
    })
    .await;
    assert_eq!(c["ownerId"], format!("assistant:{}", org.assistant_id));
    assert!(c["openTransferId"].is_null(), "{c:#}");
}
