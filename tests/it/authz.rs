//! The authorisation matrix: anonymous, caller, agent (the call's owner), other agent and
//! admin × every endpoint and the WebSocket subscription, each cell asserted.

use serde_json::{json, Value};

use crate::flows::active_call;
use crate::support::app::{spawn_app_with, TestApp, TestOptions};

const KEY: &str = "authz-matrix-key";

/// Who asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Anonymous,
    Caller,
    Agent,
    OtherAgent,
    Admin,
}

const EVERYONE: [Who; 5] = [
    Who::Anonymous,
    Who::OtherAgent,
    Who::Caller,
    Who::Agent,
    Who::Admin,
];

struct World {
    app: TestApp,
    caller: String,
    agent: String,
    other: String,
}

impl World {
    async fn send(&self, who: Who, method: &str, path: &str, body: Option<Value>) -> u16 {
        let url = format!("{}{}", self.app.address, path);
        let mut req = self.app.http.request(method.parse().unwrap(), url);
        req = match who {
            Who::Anonymous => req,
            Who::Caller => req.bearer_auth(&self.caller),
            Who::Agent => req.bearer_auth(&self.agent),
            Who::OtherAgent => req.bearer_auth(&self.other),
            Who::Admin => req.header("x-api-key", KEY),
        };
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.expect("request sent").status().as_u16()
    }
}

/// Opens `/ws` as `who`; the HTTP status of the upgrade (101 when it succeeds).
async fn ws_status(w: &World, who: Who) -> u16 {
    let url = format!("ws://127.0.0.1:{}/ws", w.app.port);
    let mut req = awc::Client::new().ws(url);
    req = match who {
        Who::Anonymous => req,
        Who::Caller => req.bearer_auth(&w.caller),
        Who::Agent => req.bearer_auth(&w.agent),
        Who::OtherAgent => req.bearer_auth(&w.other),
        Who::Admin => req.header("x-api-key", KEY),
    };
    match req.connect().await {
        Ok((resp, _)) => resp.status().as_u16(),
        Err(awc::error::WsClientError::InvalidResponseStatus(s)) => s.as_u16(),
        Err(e) => panic!("websocket connect failed: {e}"),
    }
}

/// Every endpoint × every party. Rows run in order (a row's cells left to right: anonymous,
/// other agent, caller, agent, admin), so the refusals come before the one that changes
/// state; the call is alice's ("agent"), bob is the other agent, carol the transfer target.
#[actix_web::test]
async fn every_endpoint_and_the_websocket_refuse_or_serve_each_party_as_documented() {
    let app = spawn_app_with(TestOptions {
        api_key: Some(KEY.into()),
        ..Default::default()
    })
    .await;
    let c = active_call(&app, "alice").await;
    let other = app.agent("bob").await;
    let carol = app.agent("carol").await;
    let _carol_ws = app.connect("carol", &carol, None).await;
    let w = World {
        caller: c.caller.token.clone(),
        agent: c.owner_token.clone(),
        other,
        app,
    };
    let call = c.call_id.clone();
    let r = w
        .app
        .post(
            "/api/transcripts",
            None,
            json!({"callId": call, "text": "hello"}),
        )
        .await;
    let tx = r.body["transcriptId"].as_str().unwrap().to_string();
    let r = w
        .app
        .post("/api/summaries", None, json!({"callId": call}))
        .await;
    let su = r.body["summaryId"].as_str().unwrap().to_string();
    let r = w
        .app
        .post("/api/rooms", None, json!({"roomName": "authz-room"}))
        .await;
    let room = r.body["roomId"].as_str().unwrap().to_string();

    // The WebSocket: any valid session token; the management key is not one.
    let ws: Vec<u16> = {
        let mut row = vec![];
        for who in EVERYONE {
            row.push(ws_status(&w, who).await);
        }
        row
    };
    assert_eq!(ws, [401, 101, 101, 101, 401], "GET /ws");

    let empty = || Some(json!({}));
    type Row = (&'static str, String, Option<Value>, [u16; 5]);
    let mut rows: Vec<Row> = vec![
        ("GET", "/health".into(), None, [200; 5]),
        ("GET", "/api/openapi.json".into(), None, [200; 5]),
        ("GET", "/metrics".into(), None, [401, 403, 403, 403, 200]),
        (
            "GET",
            "/api/wallboard".into(),
            None,
            [401, 403, 403, 403, 200],
        ),
        ("GET", "/api/agents".into(), None, [401, 200, 403, 200, 200]),
        (
            "POST",
            "/api/agents".into(),
            Some(json!({"agentId": "zed", "name": "Zed"})),
            [401, 403, 403, 403, 201],
        ),
        (
            "GET",
            "/api/agents/alice".into(),
            None,
            [401, 200, 403, 200, 200],
        ),
        (
            "PATCH",
            "/api/agents/alice".into(),
            Some(json!({"name": "Alice"})),
            [401, 403, 403, 200, 200],
        ),
        (
            "POST",
            "/api/agents/alice/token".into(),
            empty(),
            [401, 403, 403, 403, 200],
        ),
        (
            "POST",
            "/api/calls".into(),
            Some(json!({"callerName": "X", "reason": "y"})),
            [401, 403, 403, 403, 201],
        ),
        (
            "GET",
            "/api/calls/agent/alice".into(),
            None,
            [401, 403, 403, 200, 200],
        ),
        (
            "GET",
            format!("/api/calls/{call}"),
            None,
            [401, 403, 200, 200, 200],
        ),
        (
            "PATCH",
            format!("/api/calls/{call}"),
            Some(json!({"reason": "billing"})),
            [401, 403, 403, 200, 200],
        ),
        // Transfers are listed per agent (bob sees his, none); callers see none.
        (
            "GET",
            "/api/transfers".into(),
            None,
            [401, 200, 403, 200, 200],
        ),
        (
            "POST",
            "/api/transcripts".into(),
            Some(json!({"callId": call, "text": "more"})),
            [401, 403, 201, 201, 201],
        ),
        (
            "GET",
            format!("/api/transcripts/call/{call}"),
            None,
            [401, 403, 200, 200, 200],
        ),
        (
            "GET",
            format!("/api/transcripts/{tx}"),
            None,
            [401, 403, 200, 200, 200],
        ),
        // Summaries are for agents only.
        (
            "POST",
            "/api/summaries".into(),
            Some(json!({"callId": call, "summaryText": "s"})),
            [401, 403, 403, 201, 201],
        ),
        (
            "GET",
            format!("/api/summaries/call/{call}"),
            None,
            [401, 403, 403, 200, 200],
        ),
        (
            "GET",
            format!("/api/summaries/{su}"),
            None,
            [401, 403, 403, 200, 200],
        ),
        (
            "POST",
            "/api/rooms".into(),
            empty(),
            [401, 403, 403, 403, 201],
        ),
        (
            "GET",
            format!("/api/rooms/{room}"),
            None,
            [401, 403, 403, 403, 200],
        ),
        (
            "PATCH",
            format!("/api/rooms/{room}"),
            Some(json!({"status": "open"})),
            [401, 403, 403, 403, 200],
        ),
        (
            "GET",
            format!("/api/rooms/{room}/participants"),
            None,
            [401, 403, 403, 403, 200],
        ),
        // Management must name the agent a token is for (400 without).
        (
            "POST",
            "/api/tokens".into(),
            Some(json!({"callId": call})),
            [401, 403, 200, 200, 400],
        ),
        (
            "POST",
            format!("/api/calls/{call}/mute"),
            empty(),
            [401, 403, 403, 200, 200],
        ),
        (
            "POST",
            format!("/api/calls/{call}/unmute"),
            empty(),
            [401, 403, 403, 200, 200],
        ),
        (
            "POST",
            format!("/api/calls/{call}/hold"),
            empty(),
            [401, 403, 403, 200, 200],
        ),
        (
            "POST",
            format!("/api/calls/{call}/resume"),
            empty(),
            [401, 403, 403, 200, 200],
        ),
        // The call is alice's already: her accept repeats what happened (200); for bob it
        // is a conflict (nobody offered it to him), as is declining a call one has taken;
        // management must name the agent (400).
        (
            "POST",
            format!("/api/calls/{call}/accept"),
            empty(),
            [401, 409, 403, 200, 400],
        ),
        (
            "POST",
            format!("/api/calls/{call}/decline"),
            empty(),
            [401, 409, 403, 409, 400],
        ),
        // Alice starts a transfer to carol; management must name agent A (400).
        (
            "POST",
            "/api/transfers/initiate".into(),
            Some(json!({"callId": call, "agentBId": "carol", "mode": "warm"})),
            [401, 403, 403, 201, 400],
        ),
    ];
    let mut failures = vec![];
    let run = |rows: Vec<Row>| {
        let w = &w;
        let mut out = vec![];
        async move {
            for (method, path, body, expected) in rows {
                let mut got = [0u16; 5];
                for (i, who) in EVERYONE.iter().enumerate() {
                    got[i] = w.send(*who, method, &path, body.clone()).await;
                }
                if got != expected {
                    out.push(format!(
                        "{method} {path}: expected {expected:?}, got {got:?}"
                    ));
                }
            }
            out
        }
    };
    failures.extend(run(std::mem::take(&mut rows)).await);
    // The transfer alice started (the only one).
    let r = w.app.get("/api/transfers", None).await;
    let t = r.body.as_array().map(|a| a.as_slice()).unwrap_or_default();
    assert_eq!(t.len(), 1, "{:?}", r.body);
    let t = t[0]["transferId"].as_str().unwrap().to_string();
    let rows: Vec<Row> = vec![
        // A caller is not told a transfer exists (404); bob may not see it.
        (
            "GET",
            format!("/api/transfers/{t}"),
            None,
            [401, 403, 404, 200, 200],
        ),
        // Only the target (carol) accepts; management may on her behalf.
        (
            "POST",
            format!("/api/transfers/{t}/accept"),
            empty(),
            [401, 403, 404, 403, 200],
        ),
        // Accepted: too late to decline.
        (
            "POST",
            format!("/api/transfers/{t}/decline"),
            empty(),
            [401, 403, 404, 403, 409],
        ),
        // Alice completes; management's repeat is answered with the same outcome.
        (
            "POST",
            format!("/api/transfers/{t}/complete"),
            empty(),
            [401, 403, 404, 200, 200],
        ),
        // Completed: nothing left to cancel.
        (
            "POST",
            format!("/api/transfers/{t}/cancel"),
            empty(),
            [401, 403, 404, 409, 409],
        ),
        // Carol owns the call now: alice may no longer hold it.
        (
            "POST",
            format!("/api/calls/{call}/hold"),
            empty(),
            [401, 403, 403, 403, 200],
        ),
        // The caller hangs up; repeats of an ended call's hang-up answer as the first did.
        (
            "POST",
            format!("/api/calls/{call}/hangup"),
            empty(),
            [401, 403, 200, 200, 200],
        ),
    ];
    failures.extend(run(rows).await);
    assert!(
        failures.is_empty(),
        "authorisation matrix:\n{}",
        failures.join("\n")
    );
}

// ---- Organisation API keys ----

/// Who asks, for the organisation rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum OrgWho {
    Anonymous,
    Agent,
    Caller,
    Root,
    /// An `admin` key of organisation `acme`, which owns the assistant and the trunk.
    OwnAdmin,
    /// A `member` key of `acme`.
    OwnMember,
    /// An `admin` key of organisation `globex`.
    OtherAdmin,
}

/// Organisation keys never get management power: every existing endpoint answers them 403
/// (`/health` and the OpenAPI document are public; `/ws` takes session tokens only). The new
/// endpoints: 401 without a valid key, 403 for session tokens, 404 across organisations.
#[actix_web::test]
async fn organisation_keys_reach_their_own_organisation_and_nothing_else() {
    use OrgWho::*;
    let app = spawn_app_with(TestOptions {
        api_key: Some(KEY.into()),
        ..Default::default()
    })
    .await;
    let agent = app.agent("alice").await;
    let created = app.create_call(Some("alice")).await;
    let call = created["call"]["callId"].as_str().unwrap().to_string();
    let caller = created["callerToken"].as_str().unwrap().to_string();
    let mut keys = std::collections::HashMap::new();
    for (who, org, role) in [
        (OwnAdmin, "Acme", "admin"),
        (OwnMember, "Acme", "member"),
        (OtherAdmin, "Globex", "admin"),
    ] {
        let r = app
            .post(
                "/api/keys",
                None,
                json!({"userName": "u", "orgName": org, "userEmail": "u@example.com", "role": role}),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        keys.insert(who, r.body["apiKey"].as_str().unwrap().to_string());
    }
    let send = |who: OrgWho, method: &'static str, path: String, body: Option<Value>| {
        let url = format!("{}{}", app.address, path);
        let mut req = app.http.request(method.parse().unwrap(), url);
        req = match who {
            Anonymous => req,
            Agent => req.bearer_auth(&agent),
            Caller => req.bearer_auth(&caller),
            Root => req.header("x-api-key", KEY),
            k => req.header("x-api-key", &keys[&k]),
        };
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move { req.send().await.expect("request sent").status().as_u16() }
    };
    let mut failures = vec![];

    // Every existing endpoint: 403 for both roles of organisation keys.
    let existing: Vec<(&'static str, String, Option<Value>)> = vec![
        ("GET", "/metrics".into(), None),
        ("GET", "/api/wallboard".into(), None),
        ("GET", "/api/wallboard/events".into(), None),
        ("GET", "/api/agents".into(), None),
        (
            "POST",
            "/api/agents".into(),
            Some(json!({"agentId": "zed", "name": "Zed"})),
        ),
        ("GET", "/api/agents/alice".into(), None),
        (
            "PATCH",
            "/api/agents/alice".into(),
            Some(json!({"name": "Alice"})),
        ),
        ("POST", "/api/agents/alice/token".into(), Some(json!({}))),
        (
            "POST",
            "/api/calls".into(),
            Some(json!({"callerName": "X", "reason": "y"})),
        ),
        ("GET", "/api/calls/agent/alice".into(), None),
        (
            "PATCH",
            format!("/api/calls/{call}"),
            Some(json!({"reason": "billing"})),
        ),
        ("GET", "/api/transfers".into(), None),
        ("GET", "/api/transfers/tr-x".into(), None),
        ("GET", format!("/api/transcripts/call/{call}"), None),
        ("GET", "/api/transcripts/tx-x".into(), None),
        (
            "POST",
            "/api/summaries".into(),
            Some(json!({"callId": call, "summaryText": "s"})),
        ),
        ("GET", format!("/api/summaries/call/{call}"), None),
        ("GET", "/api/summaries/su-x".into(), None),
        ("POST", "/api/rooms".into(), Some(json!({}))),
        ("GET", "/api/rooms/room-x".into(), None),
        ("POST", "/api/tokens".into(), Some(json!({"callId": call}))),
        ("POST", format!("/api/calls/{call}/accept"), Some(json!({}))),
        ("POST", format!("/api/calls/{call}/hold"), Some(json!({}))),
        ("POST", format!("/api/calls/{call}/mute"), Some(json!({}))),
    ];
    // What an organisation key does on its own calls (its assistants' calls): on a call or
    // transfer of no organisation, or of another, it gets 404, as if it did not exist.
    let not_theirs: Vec<(&'static str, String, Option<Value>)> = vec![
        ("GET", format!("/api/calls/{call}"), None),
        ("POST", format!("/api/calls/{call}/hangup"), Some(json!({}))),
        ("GET", format!("/api/calls/{call}/webhooks"), None),
        ("POST", "/api/transfers/tr-x/accept".into(), Some(json!({}))),
        ("POST", "/api/transfers/tr-x/cancel".into(), Some(json!({}))),
        (
            "POST",
            "/api/transfers/initiate".into(),
            Some(json!({"callId": call, "agentBId": "bob", "mode": "warm"})),
        ),
        (
            "POST",
            "/api/transcripts".into(),
            Some(json!({"callId": call, "text": "hi"})),
        ),
    ];
    for (method, path, body) in not_theirs {
        for who in [OwnAdmin, OwnMember] {
            let got = send(who, method, path.clone(), body.clone()).await;
            if got != 404 {
                failures.push(format!(
                    "{method} {path} as {who:?}: expected 404 (not its organisation's), got {got}"
                ));
            }
        }
    }
    for (method, path, body) in existing {
        for who in [OwnAdmin, OwnMember] {
            let got = send(who, method, path.clone(), body.clone()).await;
            if got != 403 {
                failures.push(format!(
                    "{method} {path} as {who:?}: expected 403, got {got}"
                ));
            }
        }
    }
    for path in ["/health", "/api/openapi.json"] {
        assert_eq!(
            send(OwnAdmin, "GET", path.into(), None).await,
            200,
            "{path}"
        );
    }
    let ws = awc::Client::new()
        .ws(format!("ws://127.0.0.1:{}/ws", app.port))
        .header("x-api-key", keys[&OwnAdmin].as_str());
    match ws.connect().await {
        Err(awc::error::WsClientError::InvalidResponseStatus(s)) => assert_eq!(s.as_u16(), 401),
        Ok((resp, _)) => panic!("an organisation key opened /ws: {}", resp.status()),
        Err(e) => panic!("websocket connect failed: {e}"),
    }

    // The new endpoints, cell by cell in the order given (refusals before changes).
    let r = send(
        OwnMember,
        "POST",
        "/api/assistants".into(),
        Some(json!({
        "name": "A", "prompt": "p", "tts": {"provider": "openai"}})),
    )
    .await;
    assert_eq!(r, 201);
    let list = app
        .http
        .get(format!("{}/api/assistants?orgId=acme", app.address))
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let assistant = list[0]["assistantId"].as_str().unwrap().to_string();
    let trunk = app
        .http
        .post(format!("{}/api/sip/trunks", app.address))
        .header("x-api-key", keys[&OwnAdmin].as_str())
        .json(&json!({"name": "T", "address": "pstn.example.com", "numbers": ["+15550100123"]}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let trunk = trunk["trunkId"]
        .as_str()
        .expect("trunk created")
        .to_string();
    let own_key_id = {
        let v = app
            .http
            .get(format!("{}/api/keys?orgId=acme", app.address))
            .header("x-api-key", KEY)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .find(|k| k["role"] == "member")
            .unwrap()["keyId"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let a_body = || Some(json!({"name": "B", "prompt": "p", "tts": {"provider": "openai"}}));
    let k_body = || Some(json!({"userName": "n", "orgName": "Acme", "userEmail": "n@example.com"}));
    let refused = [(Anonymous, 401), (Agent, 403), (Caller, 403)];
    type OrgRow = (&'static str, String, Option<Value>, Vec<(OrgWho, u16)>);
    let with = |extra: Vec<(OrgWho, u16)>| refused.iter().copied().chain(extra).collect::<Vec<_>>();
    let rows: Vec<OrgRow> = vec![
        (
            "GET",
            "/api/keys".into(),
            None,
            with(vec![
                (Root, 200),
                (OwnAdmin, 200),
                (OwnMember, 403),
                (OtherAdmin, 200),
            ]),
        ),
        (
            "POST",
            "/api/keys".into(),
            k_body(),
            with(vec![
                (Root, 201),
                (OwnAdmin, 201),
                (OwnMember, 403),
                (OtherAdmin, 403),
            ]),
        ),
        (
            "GET",
            "/api/assistants".into(),
            None,
            with(vec![
                (Root, 200),
                (OwnAdmin, 200),
                (OwnMember, 200),
                (OtherAdmin, 200),
            ]),
        ),
        (
            "POST",
            "/api/assistants".into(),
            a_body(),
            with(vec![
                (Root, 400),
                (OwnAdmin, 201),
                (OwnMember, 201),
                (OtherAdmin, 201),
            ]),
        ),
        (
            "GET",
            format!("/api/assistants/{assistant}"),
            None,
            with(vec![
                (Root, 200),
                (OwnAdmin, 200),
                (OwnMember, 200),
                (OtherAdmin, 404),
            ]),
        ),
        (
            "PATCH",
            format!("/api/assistants/{assistant}"),
            Some(json!({"name": "C"})),
            with(vec![
                (OtherAdmin, 404),
                (Root, 200),
                (OwnAdmin, 200),
                (OwnMember, 200),
            ]),
        ),
        (
            "GET",
            "/api/sip/trunks".into(),
            None,
            with(vec![
                (Root, 200),
                (OwnAdmin, 200),
                (OwnMember, 200),
                (OtherAdmin, 200),
            ]),
        ),
        (
            "GET",
            format!("/api/sip/trunks/{trunk}"),
            None,
            with(vec![
                (Root, 200),
                (OwnAdmin, 200),
                (OwnMember, 200),
                (OtherAdmin, 404),
            ]),
        ),
        (
            "DELETE",
            format!("/api/sip/trunks/{trunk}"),
            None,
            with(vec![(OtherAdmin, 404), (OwnMember, 204), (OwnAdmin, 404)]),
        ),
        (
            "DELETE",
            format!("/api/assistants/{assistant}"),
            None,
            with(vec![(OtherAdmin, 404), (OwnAdmin, 204), (Root, 404)]),
        ),
        (
            "DELETE",
            format!("/api/keys/{own_key_id}"),
            None,
            with(vec![(OtherAdmin, 404), (OwnAdmin, 204), (OwnMember, 401)]),
        ),
    ];
    for (method, path, body, cells) in rows {
        for (who, expected) in cells {
            let got = send(who, method, path.clone(), body.clone()).await;
            if got != expected {
                failures.push(format!(
                    "{method} {path} as {who:?}: expected {expected}, got {got}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "organisation keys:\n{}",
        failures.join("\n")
    );
}

/// What a deactivated agent's token can no longer do (REST): every request is 403.
async fn assert_powerless(app: &TestApp, id: &str, token: &str) {
    for (method, path, body) in [
        ("GET", "/api/agents".to_string(), None),
        ("GET", format!("/api/agents/{id}"), None),
        ("GET", "/api/transfers".to_string(), None),
        (
            "PATCH",
            format!("/api/agents/{id}"),
            Some(json!({ "status": "available" })),
        ),
    ] {
        let r = app.request(method, &path, Some(token), body).await;
        assert_eq!(r.status, 403, "{method} {path}: {:?}", r.body);
        assert_eq!(r.body["code"], "forbidden", "{method} {path}: {:?}", r.body);
    }
}

async fn deactivate(app: &TestApp, id: &str) {
    let r = app
        .request(
            "PATCH",
            &format!("/api/agents/{id}"),
            None,
            Some(json!({ "active": false })),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["active"], false);
}

#[actix_web::test]
async fn a_deactivated_agent_loses_its_powers_and_its_sockets_and_its_offered_call_moves_on() {
    let app = spawn_app_with(TestOptions::default()).await;
    let bob_token = app.agent("bob").await;
    let mut bob = app.connect("bob", &bob_token, None).await;
    let carol_token = app.agent("carol").await;
    let mut carol = app.connect("carol", &carol_token, None).await;
    // Before: Bob's token works.
    let r = app.get("/api/agents", Some(&bob_token)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let created = app.create_call(Some("bob")).await;
    let call_id = created["call"]["callId"].as_str().unwrap().to_string();
    let caller_token = created["callerToken"].as_str().unwrap().to_string();
    let mut caller = app.connect("caller", &caller_token, None).await;
    caller.join_from(&created["livekit"]);
    let offered = bob.expect("call.offered").await;
    assert_eq!(offered["callId"], call_id.as_str());

    deactivate(&app, "bob").await;
    bob.expect("socket.closed").await;
    assert_powerless(&app, "bob", &bob_token).await;
    // The call offered to Bob is offered to Carol.
    let again = carol.expect("call.offered").await;
    assert_eq!(again["callId"], call_id.as_str());
    let call = crate::flows::call_until(&app, &call_id, "offered to carol", |c| {
        c["offeredTo"] == "carol"
    })
    .await;
    assert_eq!(call["status"], "ringing");
    // Management still sees Bob; reactivated, his token works again.
    let r = app
        .request(
            "PATCH",
            "/api/agents/bob",
            None,
            Some(json!({ "active": true })),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = app.get("/api/agents", Some(&bob_token)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

#[actix_web::test]
async fn deactivating_the_agent_a_transfer_rings_fails_the_transfer() {
    let app = spawn_app_with(TestOptions::default()).await;
    let mut c = active_call(&app, "alice").await;
    let bob_token = app.agent("bob").await;
    let mut bob = app.connect("bob", &bob_token, None).await;
    crate::flows::initiate(&app, &c, "bob", "warm").await;
    bob.expect("transfer.offered").await;

    deactivate(&app, "bob").await;
    bob.expect("socket.closed").await;
    assert_powerless(&app, "bob", &bob_token).await;
    let failed = c.owner.expect("transfer.failed").await;
    assert_eq!(failed["callId"], c.call_id.as_str());
    let call = crate::flows::call_until(&app, &c.call_id, "transfer failed", |c| {
        c["status"] == "active" && c["openTransferId"].is_null()
    })
    .await;
    assert_eq!(call["ownerId"], "alice");
}

/// Every endpoint that takes a JSON body authenticates before it reads it: an anonymous
/// request (or one with a wrong key) with a malformed body is 401, never a 400 that would
/// describe the body to a stranger.
#[actix_web::test]
async fn every_body_taking_endpoint_authenticates_before_it_parses() {
    let app = spawn_app_with(TestOptions {
        api_key: Some(KEY.into()),
        ..Default::default()
    })
    .await;
    let endpoints = [
        ("POST", "/api/agents"),
        ("PATCH", "/api/agents/alice"),
        ("POST", "/api/calls"),
        ("PATCH", "/api/calls/call-x"),
        ("POST", "/api/calls/call-x/accept"),
        ("POST", "/api/calls/call-x/decline"),
        ("POST", "/api/calls/call-x/hold"),
        ("POST", "/api/calls/call-x/resume"),
        ("POST", "/api/calls/call-x/mute"),
        ("POST", "/api/calls/call-x/unmute"),
        ("POST", "/api/calls/call-x/hangup"),
        ("POST", "/api/calls/outbound"),
        ("POST", "/api/transcripts"),
        ("POST", "/api/summaries"),
        ("POST", "/api/rooms"),
        ("PATCH", "/api/rooms/room-x"),
        ("POST", "/api/tokens"),
        ("POST", "/api/transfers/initiate"),
        ("POST", "/api/transfers/tr-x/accept"),
        ("POST", "/api/transfers/tr-x/decline"),
        ("POST", "/api/transfers/tr-x/complete"),
        ("POST", "/api/transfers/tr-x/cancel"),
        ("POST", "/api/assistants"),
        ("PATCH", "/api/assistants/as-x"),
        ("POST", "/api/sip/trunks"),
        ("POST", "/api/keys"),
    ];
    let bodies = [
        ("application/json", "{"),
        ("application/json", "[1,2]"),
        ("application/json", "{\"agentId\":{}}"),
        ("text/plain", "hello"),
    ];
    for (method, path) in endpoints {
        for (ct, body) in bodies {
            for key in [None, Some("wrong-key-0123456789")] {
                let mut req = app
                    .http
                    .request(method.parse().unwrap(), format!("{}{path}", app.address))
                    .header("content-type", ct)
                    .body(body);
                if let Some(k) = key {
                    req = req.header("x-api-key", k);
                }
                let r = req.send().await.unwrap();
                let status = r.status().as_u16();
                let v: Value = r.json().await.unwrap_or(Value::Null);
                assert_eq!(status, 401, "{method} {path} {ct} {body} key {key:?}: {v}");
                assert_eq!(v["code"], "unauthorized", "{method} {path}: {v}");
            }
        }
    }
}
