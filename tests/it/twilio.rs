//! Phone legs end to end through the Twilio fake over real HTTP: phone callers, phone
//! specialists, browsers joining conferences through the Voice SDK, every failure path of a
//! transfer to a phone, signature checks, and Twilio's retried and reordered callbacks. Each
//! test shows where every party ends up, in the fake's calls and conferences and in the API.

use std::time::Duration;

use serde_json::{json, Value};

use crate::flows::{call_until, placed};
use crate::support::app::{spawn_app_with, Party, TestApp, TestOptions, TWILIO_NUMBER};
use crate::support::twilio::{twilio_signature, FakeTwilio, Heard, PhoneScript, RestFault, Route};

const CALLER_NUMBER: &str = "+15557654321";
const SPECIALIST: &str = "spec";
const SPECIALIST_NUMBER: &str = "+15550002222";
const WAIT: Duration = Duration::from_secs(10);

async fn twilio_app(ring_timeout: f64) -> TestApp {
    spawn_app_with(TestOptions {
        twilio: true,
        ring_timeout,
        ..Default::default()
    })
    .await
}

fn fake(app: &TestApp) -> &FakeTwilio {
    app.twilio.as_deref().expect("the Twilio fake")
}

/// Creates the phone specialist with how their phone behaves.
async fn specialist(app: &TestApp, script: PhoneScript) {
    let r = app
        .post(
            "/api/agents",
            None,
            json!({ "agentId": SPECIALIST, "name": "Spec", "kind": "phone", "phoneNumber": SPECIALIST_NUMBER }),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    fake(app).set_phone(SPECIALIST_NUMBER, script);
}

/// Waits until the conference `name` has the participant labelled `label` (with `hold`).
async fn in_conference(app: &TestApp, name: &str, label: &str, hold: bool) {
    let what = format!("{label} in conference {name} (hold={hold})");
    fake(app)
        .wait_for(&what, WAIT, |f| {
            f.conference(name)
                .filter(|c| c.status != "completed")
                .and_then(|c| {
                    c.participants
                        .iter()
                        .find(|p| p.label.as_deref() == Some(label) && p.hold == hold)
                        .cloned()
                })
        })
        .await;
}

/// Labels of the conference's current participants.
fn labels(app: &TestApp, name: &str) -> Vec<String> {
    let mut l: Vec<String> = fake(app)
        .conference(name)
        .map(|c| {
            c.participants
                .iter()
                .filter_map(|p| p.label.clone())
                .collect()
        })
        .unwrap_or_default();
    l.sort();
    l
}

/// A phone call taken by web agent `owner`, who joined the main conference from the browser.
struct PhoneCall {
    call_id: String,
    caller_sid: String,
    caller_id: String,
    main: String,
    owner: Party,
    owner_token: String,
}

async fn phone_call(app: &TestApp, owner_id: &str) -> PhoneCall {
    let owner_token = app.agent(owner_id).await;
    let mut owner = app.connect(owner_id, &owner_token, None).await;
    let caller_sid = fake(app).inbound_call(CALLER_NUMBER, TWILIO_NUMBER);
    let call_id = format!("call-{}", caller_sid.to_ascii_lowercase());
    let main = format!("{call_id}--main");
    let offered = owner.expect("call.offered").await;
    assert_eq!(offered["callId"], call_id.as_str());
    assert_eq!(offered["data"]["callerName"], CALLER_NUMBER);
    let caller_id = app.get(&format!("/api/calls/{call_id}"), None).await.body["callerId"]
        .as_str()
        .expect("callerId")
        .to_string();
    // The caller waits in the main conference with music until an agent starts it.
    in_conference(app, &main, &caller_id, false).await;
    fake(app)
        .wait_for("wait music", WAIT, |f| {
            f.heard(&caller_sid)
                .iter()
                .any(|h| matches!(h, Heard::WaitMusic(_)))
                .then_some(())
        })
        .await;
    let r = app
        .post(
            &format!("/api/calls/{call_id}/accept"),
            Some(&owner_token),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let mv = owner.follow_move().await;
    assert_eq!(mv["data"]["plane"], "twilio");
    assert_eq!(mv["data"]["room"], main.as_str());
    in_conference(app, &main, owner_id, false).await;
    call_until(app, &call_id, "caller and owner confirmed", |c| {
        placed(c, "caller") == Some(("main".into(), true))
            && placed(c, owner_id) == Some(("main".into(), true))
    })
    .await;
    PhoneCall {
        call_id,
        caller_sid,
        caller_id,
        main,
        owner,
        owner_token,
    }
}

async fn initiate(app: &TestApp, call_id: &str, token: &str, mode: &str, note: &str) -> Value {
    let r = app
        .post(
            "/api/transfers/initiate",
            Some(token),
            json!({ "callId": call_id, "agentBId": SPECIALIST, "mode": mode, "note": note }),
        )
        .await;
    assert_eq!(r.status, 201, "initiate: {:?}", r.body);
    r.body
}

/// The specialist's call, once Twilio dialled it.
async fn specialist_call(app: &TestApp) -> String {
    fake(app)
        .wait_for("the specialist dialled", WAIT, |f| {
            f.calls()
                .into_iter()
                .find(|c| c.to == SPECIALIST_NUMBER)
                .map(|c| c.sid)
        })
        .await
}

async fn transfer_until(app: &TestApp, id: &str, status: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let r = app.get(&format!("/api/transfers/{id}"), None).await;
        if r.body["status"] == status {
            return r.body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "transfer {id} never became {status}: {:#}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Replays every REST request the server sent to the fake during the test against prism's
/// mock of Twilio's published OpenAPI description (started by scripts/test.sh), which
/// validates each one: every request must be accepted (2xx). Returns how many were checked.
async fn assert_openapi_accepts_every_request(app: &TestApp) -> usize {
    let base = std::env::var("SWITCHBOARD_TEST_TWILIO_OPENAPI_MOCK").unwrap_or_else(|_| {
        panic!(
            "SWITCHBOARD_TEST_TWILIO_OPENAPI_MOCK is not set: run the tests with scripts/test.sh, \
             which starts `prism mock` on Twilio's OpenAPI description"
        )
    });
    let requests = fake(app).requests();
    assert!(!requests.is_empty(), "the server sent no REST request");
    let http = reqwest::Client::new();
    for r in &requests {
        let url = format!("{base}{}", r.path);
        let method: reqwest::Method = r.method.parse().expect("method");
        let mut req = http
            .request(method.clone(), &url)
            .basic_auth(fake(app).account_sid(), Some("token"));
        if method == reqwest::Method::POST {
            req = req.form(&r.params);
        }
        let resp = req.send().await.expect("prism answers");
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        assert!(
            (200..300).contains(&status),
            "Twilio's OpenAPI description refuses {} {} {:?}: {status} {body}",
            r.method,
            r.path,
            r.params
        );
    }
    requests.len()
}

/// A completes the transfer (200 expected).
async fn complete(app: &TestApp, id: &str, token: &str) {
    let r = app
        .post(
            &format!("/api/transfers/{id}/complete"),
            Some(token),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "complete: {:?}", r.body);
}

fn spoken(app: &TestApp, sid: &str) -> String {
    fake(app)
        .heard(sid)
        .iter()
        .filter_map(|h| match h {
            Heard::Say(t) => Some(t.clone()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

#[actix_web::test]
async fn warm_transfer_of_a_phone_caller_to_a_phone_specialist() {
    let app = twilio_app(30.0).await;
    specialist(&app, PhoneScript::answering().pressing("1")).await;
    let mut c = phone_call(&app, "alice").await;
    let started = initiate(&app, &c.call_id, &c.owner_token, "warm", "Needs a refund").await;
    let id = started["transferId"].as_str().unwrap().to_string();
    let consult = started["transferRoom"].as_str().unwrap().to_string();
    // Caller held in the main conference (hold music, conference not ended); A moves to the
    // consult conference from the browser.
    in_conference(&app, &c.main, &c.caller_id, true).await;
    let mv = c.owner.follow_move().await;
    assert_eq!(
        (mv["data"]["plane"].as_str(), mv["data"]["room"].as_str()),
        (Some("twilio"), Some(consult.as_str()))
    );
    // B answers, hears the briefing, presses 1 and joins A in the consult conference.
    let b_sid = specialist_call(&app).await;
    in_conference(&app, &consult, SPECIALIST, false).await;
    in_conference(&app, &consult, "alice", false).await;
    transfer_until(&app, &id, "briefing").await;
    let briefing = spoken(&app, &b_sid);
    assert!(
        briefing.contains("Needs a refund") && briefing.contains(CALLER_NUMBER),
        "{briefing}"
    );
    assert!(briefing.contains("Press 1"), "{briefing}");
    fake(&app)
        .wait_for("hold music", WAIT, |f| {
            f.heard(&c.caller_sid)
                .iter()
                .any(|h| matches!(h, Heard::HoldMusic(_)))
                .then_some(())
        })
        .await;

    complete(&app, &id, &c.owner_token).await;
    c.owner.expect("participant.released").await;
    // Caller (resumed) and B together in the main conference; A gone; consult ended.
    in_conference(&app, &c.main, &c.caller_id, false).await;
    in_conference(&app, &c.main, SPECIALIST, false).await;
    fake(&app)
        .wait_for("consult conference ended", WAIT, |f| {
            f.conference(&consult)
                .filter(|cf| cf.status == "completed")
                .map(|_| ())
        })
        .await;
    let call = call_until(&app, &c.call_id, "B owns the call", |v| {
        v["ownerId"] == SPECIALIST && v["status"] == "active"
    })
    .await;
    assert_eq!(placed(&call, "alice"), None);
    assert_eq!(labels(&app, &c.main), {
        let mut l = vec![c.caller_id.clone(), SPECIALIST.to_string()];
        l.sort();
        l
    });
    assert!(fake(&app).errors().is_empty(), "{:?}", fake(&app).errors());

    // B hangs up: B owned the call, so it ends and the caller is let go.
    fake(&app).hang_up(&b_sid);
    call_until(&app, &c.call_id, "ended", |v| v["status"] == "ended").await;
    fake(&app)
        .wait_for_call_status(&c.caller_sid, "completed", WAIT)
        .await;
    // Dial, hold, resume, redirect, remove, end conference, hang up: all valid for Twilio.
    let checked = assert_openapi_accepts_every_request(&app).await;
    assert!(checked >= 6, "{checked} requests");
}

#[actix_web::test]
async fn warm_transfer_of_a_web_caller_to_a_phone_specialist() {
    let app = twilio_app(30.0).await;
    specialist(&app, PhoneScript::answering().pressing("1")).await;
    let mut c = crate::flows::active_call(&app, "alice").await;
    let started = initiate(&app, &c.call_id, &c.owner_token, "warm", "VIP").await;
    let id = started["transferId"].as_str().unwrap().to_string();
    let consult = started["transferRoom"].as_str().unwrap().to_string();
    let to_hold = c.caller.follow_move().await;
    assert_eq!(to_hold["data"]["plane"], "livekit");
    assert_eq!(to_hold["data"]["space"], "hold");
    let a_mv = c.owner.follow_move().await;
    assert_eq!(a_mv["data"]["plane"], "twilio");
    in_conference(&app, &consult, SPECIALIST, false).await;
    transfer_until(&app, &id, "briefing").await;
    complete(&app, &id, &c.owner_token).await;
    // The web caller now joins the main conference as a Voice SDK client leg, with B.
    let mv = c.caller.follow_move().await;
    assert_eq!(
        (mv["data"]["plane"].as_str(), mv["data"]["room"].as_str()),
        (Some("twilio"), Some(c.main_room.as_str()))
    );
    in_conference(&app, &c.main_room, SPECIALIST, false).await;
    let caller_id = app
        .get(&format!("/api/calls/{}", c.call_id), None)
        .await
        .body["callerId"]
        .as_str()
        .unwrap()
        .to_string();
    in_conference(&app, &c.main_room, &caller_id, false).await;
    call_until(&app, &c.call_id, "caller confirmed with B", |v| {
        placed(v, "caller") == Some(("main".into(), true)) && v["ownerId"] == SPECIALIST
    })
    .await;
}

#[actix_web::test]
async fn warm_transfer_of_a_phone_caller_to_a_web_agent() {
    let app = twilio_app(30.0).await;
    let mut c = phone_call(&app, "alice").await;
    let bob_token = app.agent("bob").await;
    let mut bob = app.connect("bob", &bob_token, None).await;
    let r = app
        .post(
            "/api/transfers/initiate",
            Some(&c.owner_token),
            json!({ "callId": c.call_id, "agentBId": "bob", "mode": "warm" }),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.body["transferId"].as_str().unwrap().to_string();
    in_conference(&app, &c.main, &c.caller_id, true).await;
    // A and B brief in a LiveKit room (both are web).
    let a_mv = c.owner.follow_move().await;
    assert_eq!(a_mv["data"]["plane"], "livekit");
    bob.expect("transfer.offered").await;
    let r = app
        .post(
            &format!("/api/transfers/{id}/accept"),
            Some(&bob_token),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    bob.follow_move().await;
    transfer_until(&app, &id, "briefing").await;
    complete(&app, &id, &c.owner_token).await;
    let b_mv = bob.follow_move().await;
    assert_eq!(
        (
            b_mv["data"]["plane"].as_str(),
            b_mv["data"]["room"].as_str()
        ),
        (Some("twilio"), Some(c.main.as_str()))
    );
    in_conference(&app, &c.main, "bob", false).await;
    in_conference(&app, &c.main, &c.caller_id, false).await;
    fake(&app)
        .wait_for("alice's client leg gone", WAIT, |f| {
            (!labels_of(f, &c.main).contains(&"alice".to_string())).then_some(())
        })
        .await;
}

fn labels_of(f: &FakeTwilio, name: &str) -> Vec<String> {
    f.conference(name)
        .map(|c| {
            c.participants
                .iter()
                .filter_map(|p| p.label.clone())
                .collect()
        })
        .unwrap_or_default()
}

#[actix_web::test]
async fn cold_and_conference_transfers_to_a_phone_specialist() {
    // Cold: the caller goes straight to B once B presses 1.
    let app = twilio_app(30.0).await;
    specialist(&app, PhoneScript::answering().pressing("1")).await;
    let c = phone_call(&app, "alice").await;
    let started = initiate(&app, &c.call_id, &c.owner_token, "cold", "").await;
    let id = started["transferId"].as_str().unwrap().to_string();
    transfer_until(&app, &id, "completed").await;
    in_conference(&app, &c.main, SPECIALIST, false).await;
    in_conference(&app, &c.main, &c.caller_id, false).await;
    fake(&app)
        .wait_for("alice left", WAIT, |f| {
            (!labels_of(f, &c.main).contains(&"alice".to_string())).then_some(())
        })
        .await;

    // Conference: all three together, then A leaves on complete.
    let app = twilio_app(30.0).await;
    specialist(&app, PhoneScript::answering().pressing("1")).await;
    let c = phone_call(&app, "alice").await;
    let started = initiate(&app, &c.call_id, &c.owner_token, "conference", "").await;
    let id = started["transferId"].as_str().unwrap().to_string();
    transfer_until(&app, &id, "briefing").await;
    in_conference(&app, &c.main, SPECIALIST, false).await;
    in_conference(&app, &c.main, &c.caller_id, false).await;
    in_conference(&app, &c.main, "alice", false).await;
    complete(&app, &id, &c.owner_token).await;
    fake(&app)
        .wait_for("alice left the three-way", WAIT, |f| {
            (!labels_of(f, &c.main).contains(&"alice".to_string())).then_some(())
        })
        .await;
    assert_openapi_accepts_every_request(&app).await;
}

/// Each failure of the specialist's phone returns the caller to A, unheld, with A back in
/// the main conference and the consult conference ended.
#[actix_web::test]
async fn every_phone_failure_returns_the_caller_to_a() {
    // (what, the phone, B hangs up once briefing, outcome, reason)
    let cases: Vec<(&str, PhoneScript, bool, &str, &str)> = vec![
        ("busy", PhoneScript::busy(), false, "declined", "busy"),
        (
            "no answer",
            PhoneScript::no_answer(),
            false,
            "timed_out",
            "no_answer",
        ),
        (
            "failed dial",
            PhoneScript::failing(),
            false,
            "failed",
            "dial_failed",
        ),
        (
            "presses 2",
            PhoneScript::answering().pressing("2"),
            false,
            "declined",
            "declined",
        ),
        (
            "presses nothing",
            PhoneScript::answering().pressing_nothing(),
            false,
            "timed_out",
            "no_input",
        ),
        (
            "hangs up during the briefing",
            PhoneScript::answering().pressing("1"),
            true,
            "failed",
            "target_hangup",
        ),
    ];
    for (what, script, hang_up_in_briefing, outcome, reason) in cases {
        let app = twilio_app(3.0).await;
        specialist(&app, script).await;
        let mut c = phone_call(&app, "alice").await;
        let started = initiate(&app, &c.call_id, &c.owner_token, "warm", "").await;
        let id = started["transferId"].as_str().unwrap().to_string();
        c.owner.follow_move().await; // to the consult conference
        if hang_up_in_briefing {
            let b_sid = specialist_call(&app).await;
            transfer_until(&app, &id, "briefing").await;
            fake(&app).hang_up(&b_sid);
        }
        let t = transfer_until(&app, &id, outcome).await;
        assert_eq!(t["reason"], reason, "{what}");
        let back = c.owner.follow_move().await;
        assert_eq!(
            (
                back["data"]["plane"].as_str(),
                back["data"]["room"].as_str()
            ),
            (Some("twilio"), Some(c.main.as_str())),
            "{what}"
        );
        in_conference(&app, &c.main, &c.caller_id, false).await;
        in_conference(&app, &c.main, "alice", false).await;
        let call = call_until(&app, &c.call_id, "back with alice", |v| {
            v["status"] == "active" && v["ownerId"] == "alice"
        })
        .await;
        assert_eq!(placed(&call, SPECIALIST), None, "{what}");
        // No leg of the specialist is left up.
        let left_up: Vec<_> = fake(&app)
            .calls()
            .into_iter()
            .filter(|x| x.to == SPECIALIST_NUMBER && !x.is_over())
            .collect();
        assert!(
            left_up.is_empty() || wait_all_over(&app).await,
            "{what}: {left_up:?}"
        );
    }
}

async fn wait_all_over(app: &TestApp) -> bool {
    fake(app)
        .wait_for("specialist legs over", WAIT, |f| {
            f.calls()
                .iter()
                .filter(|x| x.to == SPECIALIST_NUMBER)
                .all(|x| x.is_over())
                .then_some(true)
        })
        .await
}

#[actix_web::test]
async fn cancelling_while_the_specialist_rings_cancels_their_call() {
    let app = twilio_app(30.0).await;
    specialist(&app, PhoneScript::answering_after(Duration::from_secs(20))).await;
    let mut c = phone_call(&app, "alice").await;
    let started = initiate(&app, &c.call_id, &c.owner_token, "warm", "").await;
    let id = started["transferId"].as_str().unwrap().to_string();
    let b_sid = specialist_call(&app).await;
    fake(&app)
        .wait_for_call_status(&b_sid, "ringing", WAIT)
        .await;
    c.owner.follow_move().await;
    let r = app
        .post(
            &format!("/api/transfers/{id}/cancel"),
            Some(&c.owner_token),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    fake(&app)
        .wait_for_call_status(&b_sid, "canceled", WAIT)
        .await;
    c.owner.follow_move().await;
    in_conference(&app, &c.main, &c.caller_id, false).await;
    in_conference(&app, &c.main, "alice", false).await;
    assert_openapi_accepts_every_request(&app).await;
}

#[actix_web::test]
async fn a_caller_hanging_up_while_held_ends_the_specialist_leg_and_releases_a() {
    let app = twilio_app(30.0).await;
    specialist(&app, PhoneScript::answering().pressing("1")).await;
    let mut c = phone_call(&app, "alice").await;
    let started = initiate(&app, &c.call_id, &c.owner_token, "warm", "").await;
    let id = started["transferId"].as_str().unwrap().to_string();
    c.owner.follow_move().await;
    let b_sid = specialist_call(&app).await;
    transfer_until(&app, &id, "briefing").await;
    in_conference(&app, &c.main, &c.caller_id, true).await;
    fake(&app).hang_up(&c.caller_sid);
    let t = transfer_until(&app, &id, "abandoned").await;
    assert_eq!(t["reason"], "caller_hangup");
    fake(&app)
        .wait_for_call_status(&b_sid, "completed", WAIT)
        .await;
    c.owner.expect("call.ended").await;
    let call = call_until(&app, &c.call_id, "ended", |v| v["status"] == "ended").await;
    assert_eq!(call["endReason"], "caller_hangup");
    assert!(call["parties"].as_array().is_none_or(|p| p.is_empty()));
}

#[actix_web::test]
async fn twilio_rest_errors_fail_the_dial_cleanly_and_rate_limits_are_retried() {
    // A 429 is retried with backoff: the dial goes through.
    let app = twilio_app(30.0).await;
    specialist(&app, PhoneScript::answering().pressing("1")).await;
    let c = phone_call(&app, "alice").await;
    fake(&app).fail_next(
        Route::CreateCall,
        2,
        RestFault::TooManyRequests {
            retry_after_secs: 0,
        },
    );
    let started = initiate(&app, &c.call_id, &c.owner_token, "cold", "").await;
    let id = started["transferId"].as_str().unwrap().to_string();
    transfer_until(&app, &id, "completed").await;

    // A 400 (Twilio refuses the number), a 500 (not retried on a create: it may have
    // dialled) and a 503 that outlasts the retries fail the transfer; the caller is back
    // with A.
    for (fault, n) in [
        (RestFault::Rejected { code: 21217 }, 1),
        (RestFault::ServerError, 1),
        (RestFault::Unavailable, 10),
    ] {
        let app = twilio_app(30.0).await;
        specialist(&app, PhoneScript::answering().pressing("1")).await;
        let mut c = phone_call(&app, "alice").await;
        fake(&app).fail_next(Route::CreateCall, n, fault);
        let started = initiate(&app, &c.call_id, &c.owner_token, "warm", "").await;
        let id = started["transferId"].as_str().unwrap().to_string();
        let t = transfer_until(&app, &id, "failed").await;
        assert_eq!(t["reason"], "dial_failed");
        c.owner.follow_move().await;
        c.owner.follow_move().await;
        in_conference(&app, &c.main, &c.caller_id, false).await;
        assert!(fake(&app).calls().iter().all(|x| x.to != SPECIALIST_NUMBER));
    }
}

#[actix_web::test]
async fn hold_resume_and_mute_work_on_a_phone_caller() {
    let app = twilio_app(30.0).await;
    let c = phone_call(&app, "alice").await;
    let act = |action: &'static str| {
        let url = format!("/api/calls/{}/{action}", c.call_id);
        let token = c.owner_token.clone();
        let app = &app;
        async move { app.post(&url, Some(&token), json!({})).await }
    };
    assert_eq!(act("hold").await.status, 200);
    in_conference(&app, &c.main, &c.caller_id, true).await;
    call_until(&app, &c.call_id, "hold confirmed", |v| {
        placed(v, "caller") == Some(("hold".into(), true))
    })
    .await;
    assert_eq!(act("resume").await.status, 200);
    in_conference(&app, &c.main, &c.caller_id, false).await;
    assert_eq!(act("mute").await.status, 200);
    fake(&app)
        .wait_for("caller muted", WAIT, |f| {
            f.conference(&c.main)?
                .participants
                .iter()
                .find(|p| p.label.as_deref() == Some(c.caller_id.as_str()) && p.muted)
                .map(|_| ())
        })
        .await;
    assert_eq!(act("unmute").await.status, 200);
    fake(&app)
        .wait_for("caller unmuted", WAIT, |f| {
            f.conference(&c.main)?
                .participants
                .iter()
                .find(|p| p.label.as_deref() == Some(c.caller_id.as_str()) && !p.muted)
                .map(|_| ())
        })
        .await;
    assert_openapi_accepts_every_request(&app).await;
}

/// Twilio sends a conference's `conference-start` and its participants' events
/// independently, and may lose any of them: a hold asked for before the switchboard learnt
/// the conference's SID looks the running conference up by name instead of being dropped.
#[actix_web::test]
async fn hold_works_on_a_phone_caller_whose_conference_start_callback_was_lost() {
    let app = twilio_app(30.0).await;
    fake(&app).drop_next_events("conference-start", 1);
    let c = phone_call(&app, "alice").await;
    fake(&app)
        .wait_for_callbacks("the start callback to be lost", WAIT, |log| {
            log.iter()
                .any(|cb| cb.dropped && cb.param("StatusCallbackEvent") == Some("conference-start"))
        })
        .await;
    let r = app
        .post(
            &format!("/api/calls/{}/hold", c.call_id),
            Some(&c.owner_token),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    in_conference(&app, &c.main, &c.caller_id, true).await;
    call_until(&app, &c.call_id, "hold confirmed", |v| {
        placed(v, "caller") == Some(("hold".into(), true))
    })
    .await;
}

#[actix_web::test]
async fn a_briefing_cannot_inject_twiml() {
    let app = twilio_app(30.0).await;
    specialist(&app, PhoneScript::answering().pressing("1")).await;
    let c = phone_call(&app, "alice").await;
    let note = r#"Tom & Jerry "quoted" </Say><Hangup/><Say>"#;
    let started = initiate(&app, &c.call_id, &c.owner_token, "warm", note).await;
    let id = started["transferId"].as_str().unwrap().to_string();
    let b_sid = specialist_call(&app).await;
    transfer_until(&app, &id, "briefing").await;
    let heard = spoken(&app, &b_sid);
    assert!(heard.contains(note), "the note is spoken verbatim: {heard}");
    assert!(fake(&app).errors().is_empty(), "{:?}", fake(&app).errors());
    assert!(
        !fake(&app).call(&b_sid).unwrap().is_over(),
        "B was not hung up by the note"
    );
}

#[actix_web::test]
async fn twilio_webhooks_without_a_valid_signature_are_refused() {
    let app = twilio_app(30.0).await;
    let f = fake(&app);
    let url = format!("{}/twilio/voice", app.address);
    let params = vec![
        (
            "CallSid".to_string(),
            "CA0123456789abcdef0123456789abcdef".to_string(),
        ),
        ("From".to_string(), CALLER_NUMBER.to_string()),
        ("To".to_string(), TWILIO_NUMBER.to_string()),
    ];
    let send = |sig: Option<String>, params: Vec<(String, String)>| {
        let mut req = app.http.post(&url).form(&params);
        if let Some(s) = sig {
            req = req.header("X-Twilio-Signature", s);
        }
        req.send()
    };
    let r = send(None, params.clone()).await.unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "forbidden");
    let wrong = twilio_signature("not-the-token", &url, &params);
    assert_eq!(
        send(Some(wrong), params.clone()).await.unwrap().status(),
        403
    );
    // Signed over other parameters (tampered body) → refused.
    let good = twilio_signature(&f.auth_token(), &url, &params);
    let mut tampered = params.clone();
    tampered[1].1 = "+15550009999".into();
    assert_eq!(
        send(Some(good.clone()), tampered).await.unwrap().status(),
        403
    );
    // Correctly signed → TwiML; the same request again (Twilio's retry) → the same call.
    for _ in 0..2 {
        let r = send(Some(good.clone()), params.clone()).await.unwrap();
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        assert!(text.contains("<Conference"), "{text}");
    }
    let store = app.store.as_ref().expect("in-process store");
    let unfinished = store.list_unfinished_calls().await.unwrap();
    assert_eq!(unfinished.len(), 1, "one call for the retried webhook");
    // Every route checks.
    for path in [
        "client",
        "whisper",
        "gather",
        "status",
        "conference",
        "music",
    ] {
        let r = app
            .http
            .post(format!("{}/twilio/{path}", app.address))
            .form(&params)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{path}");
    }
}

#[actix_web::test]
async fn duplicated_and_reordered_callbacks_change_nothing() {
    let app = twilio_app(30.0).await;
    specialist(&app, PhoneScript::answering().pressing("1")).await;
    fake(&app).duplicate_next_callbacks(1_000);
    let mut c = phone_call(&app, "alice").await;
    fake(&app).reorder_next_callbacks(6);
    let started = initiate(&app, &c.call_id, &c.owner_token, "warm", "").await;
    let id = started["transferId"].as_str().unwrap().to_string();
    c.owner.follow_move().await;
    transfer_until(&app, &id, "briefing").await;
    complete(&app, &id, &c.owner_token).await;
    in_conference(&app, &c.main, SPECIALIST, false).await;
    in_conference(&app, &c.main, &c.caller_id, false).await;
    let store = app.store.as_ref().expect("in-process store");
    let list = store.events_since(&c.call_id, 0).await.unwrap();
    let mut seqs: Vec<u64> = list.iter().map(|e| e.seq).collect();
    let n = seqs.len();
    seqs.dedup();
    assert_eq!(seqs.len(), n, "no duplicate seq");
    let count = |kind: &str| list.iter().filter(|e| e.kind == kind).count();
    assert_eq!(count("transfer.completed"), 1);
    assert_eq!(count("call.active"), 2, "taken once, handed over once");
    assert!(
        fake(&app).callback_log().len() > n,
        "callbacks were duplicated"
    );
}

#[actix_web::test]
async fn a_phone_callers_words_reach_the_agents_and_the_specialists_briefing() {
    let app = spawn_app_with(TestOptions {
        twilio: true,
        env: vec![
            ("SWITCHBOARD_TWILIO_TRANSCRIBE".into(), "true".into()),
            ("SWITCHBOARD_SUMMARY_DEBOUNCE".into(), "0.05".into()),
        ],
        ..Default::default()
    })
    .await;
    specialist(&app, PhoneScript::answering().pressing("1")).await;
    let mut c = phone_call(&app, "alice").await;
    // Retried callbacks (each delivered twice) store each chunk once.
    fake(&app).duplicate_next_callbacks(100);
    assert!(
        fake(&app).speak(
            &c.caller_sid,
            "My card was charged twice for the same order."
        ),
        "the caller's leg is transcribed"
    );
    let appended = c.owner.expect("transcript.appended").await;
    assert_eq!(appended["data"]["speaker"], "caller");
    assert_eq!(appended["data"]["source"], "twilio");
    assert!(appended["data"]["text"]
        .as_str()
        .unwrap()
        .contains("charged twice"));
    let stored = call_transcripts(&app, &c.call_id, 1).await;
    assert_eq!(
        stored.len(),
        1,
        "one chunk for a retried callback: {stored:?}"
    );
    let events = app
        .store
        .as_ref()
        .expect("in-process store")
        .events_since(&c.call_id, 0)
        .await
        .unwrap();
    let appended: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "transcript.appended")
        .collect();
    assert_eq!(appended.len(), 1, "announced once: {appended:?}");
    assert!(
        fake(&app)
            .callback_log()
            .iter()
            .filter(|cb| cb.param("TranscriptionEvent") == Some("transcription-content"))
            .count()
            >= 2,
        "the callback really was delivered twice"
    );
    // The summary kept fresh from it is what the specialist hears.
    c.owner.expect("summary.updated").await;
    let started = initiate(&app, &c.call_id, &c.owner_token, "warm", "").await;
    let id = started["transferId"].as_str().unwrap().to_string();
    let b_sid = specialist_call(&app).await;
    transfer_until(&app, &id, "briefing").await;
    let heard = spoken(&app, &b_sid);
    assert!(heard.contains("charged twice"), "{heard}");
    // The specialist's own leg is transcribed too, under its agent id. The transfer is in
    // `briefing` as soon as the gather webhook is answered; Twilio starts the transcription
    // only when it carries out the TwiML of that answer, so wait for it.
    fake(&app)
        .wait_for("the specialist's leg to be transcribed", WAIT, |f| {
            f.is_transcribed(&b_sid).then_some(())
        })
        .await;
    assert!(fake(&app).speak(&b_sid, "I can refund that now."));
    let stored = call_transcripts(&app, &c.call_id, 2).await;
    assert!(
        stored.iter().any(|t| t["speaker"] == SPECIALIST),
        "{stored:?}"
    );
}

/// The call's stored transcript chunks, once there are at least `n`.
async fn call_transcripts(app: &TestApp, call_id: &str, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let r = app
            .get(&format!("/api/transcripts/call/{call_id}"), None)
            .await;
        let list = r.body["transcripts"]
            .as_array()
            .or_else(|| r.body.as_array())
            .cloned()
            .unwrap_or_default();
        if list.len() >= n {
            // Let retried callbacks land before counting.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let r = app
                .get(&format!("/api/transcripts/call/{call_id}"), None)
                .await;
            return r.body["transcripts"]
                .as_array()
                .or_else(|| r.body.as_array())
                .cloned()
                .unwrap_or_default();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "fewer than {n} transcripts: {:#}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[actix_web::test]
async fn a_phone_caller_hanging_up_while_waiting_in_the_queue_ends_the_call() {
    let app = twilio_app(30.0).await;
    // Nobody is online: the caller waits with music.
    let caller_sid = fake(&app).inbound_call(CALLER_NUMBER, TWILIO_NUMBER);
    let call_id = format!("call-{}", caller_sid.to_ascii_lowercase());
    call_until(&app, &call_id, "queued", |v| v["status"] == "queued").await;
    fake(&app)
        .wait_for("wait music", WAIT, |f| {
            f.heard(&caller_sid)
                .iter()
                .any(|h| matches!(h, Heard::WaitMusic(_)))
                .then_some(())
        })
        .await;
    fake(&app).hang_up(&caller_sid);
    let call = call_until(&app, &call_id, "ended", |v| v["status"] == "ended").await;
    assert_eq!(call["endReason"], "caller_hangup");
    // An agent coming online later is offered nothing.
    let token = app.agent("late").await;
    let mut late = app.connect("late", &token, None).await;
    late.settle(Duration::from_millis(300)).await;
    assert!(
        !late.types().iter().any(|t| t == "call.offered"),
        "{:?}",
        late.types()
    );
}

/// When Twilio's conference-start callback is lost, effects on the conference (end it,
/// remove or mute someone) look the running conference up by its name: the lookup against
/// the fake finds exactly the running conference, and nothing once it is over.
#[actix_web::test]
async fn a_running_conference_is_found_by_its_name() {
    let app = twilio_app(30.0).await;
    let call = phone_call(&app, "alice").await;
    let f = fake(&app);
    let client = switchboard::twilio::rest::TwilioClient::new(
        &f.base_url(),
        switchboard::twilio::rest::TwilioAuth::AuthToken {
            account_sid: f.account_sid(),
            auth_token: switchboard::secret::Secret::new(f.auth_token()),
        },
        switchboard::twilio::rest::RetryPolicy::default(),
    )
    .expect("client");
    let running = f.conference(&call.main).expect("the main conference").sid;
    assert_eq!(
        client
            .find_conferences(&call.main, "in-progress")
            .await
            .unwrap(),
        vec![running.clone()]
    );
    assert!(client
        .find_conferences("call-nobody--main", "in-progress")
        .await
        .unwrap()
        .is_empty());
    let r = app
        .post(
            &format!("/api/calls/{}/hangup", call.call_id),
            Some(&call.owner_token),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    f.wait_for("the main conference ended", WAIT, |f| {
        f.conference(&call.main)
            .filter(|c| c.status == "completed")
            .map(|_| ())
    })
    .await;
    assert!(client
        .find_conferences(&call.main, "in-progress")
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        client
            .find_conferences(&call.main, "completed")
            .await
            .unwrap(),
        vec![running]
    );
}

/// Twilio's `CallerName` is a provider's value: its control and bidirectional-format
/// characters are stripped (not refused), so the console shows the name as plain text.
#[actix_web::test]
async fn a_caller_name_loses_its_control_characters() {
    let app = twilio_app(30.0).await;
    let f = fake(&app);
    let url = format!("{}/twilio/voice", app.address);
    let params = vec![
        (
            "CallSid".to_string(),
            "CA0123456789abcdef0123456789abcde1".to_string(),
        ),
        ("From".to_string(), CALLER_NUMBER.to_string()),
        ("To".to_string(), TWILIO_NUMBER.to_string()),
        (
            "CallerName".to_string(),
            "\u{1b}[31mANN\u{202e}\u{7} LEE\u{0}\u{fffe}".to_string(),
        ),
    ];
    let sig = twilio_signature(&f.auth_token(), &url, &params);
    let r = app
        .http
        .post(&url)
        .header("X-Twilio-Signature", sig)
        .form(&params)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let store = app.store.as_ref().expect("in-process store");
    let calls = store.list_unfinished_calls().await.unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].call.caller_name, "[31mANN LEE");
}
