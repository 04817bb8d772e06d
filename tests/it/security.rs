//! Authorisation rules, webhook signatures, management keys and bad input: each refused with
//! the right status and a stable `{code, message}`.

use serde_json::json;

use crate::flows::{active_call, initiate};
use crate::support::app::{spawn_app, spawn_app_with, TestOptions};

#[actix_web::test]
async fn a_caller_reaches_only_its_own_call_and_never_a_consult_room() {
    let app = spawn_app().await;
    let mut c = active_call(&app, "alice").await;
    let bob_token = app.agent("bob").await;
    let _bob = app.connect("bob", &bob_token, None).await;
    let caller_token = c.caller.token.clone();
    let t = initiate(&app, &c, "bob", "warm").await;
    let transfer_id = t["transferId"].as_str().unwrap();
    c.caller.follow_move().await;

    // The caller's LiveKit token is for where the caller is: the hold room.
    let r = app
        .post(
            "/api/tokens",
            Some(&caller_token),
            json!({ "callId": c.call_id }),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["roomName"], c.hold_room.as_str());
    assert_eq!(r.body["space"], "hold");

    // Its call view hides the briefing; transfers and summaries are not for callers.
    let r = app
        .get(&format!("/api/calls/{}", c.call_id), Some(&caller_token))
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body["transfer"].get("summaryText").is_none());
    assert!(r.body["transfer"].get("transferRoom").is_none());
    let r = app
        .get(
            &format!("/api/transfers/{transfer_id}"),
            Some(&caller_token),
        )
        .await;
    assert_eq!(r.status, 404);
    let r = app
        .get(
            &format!("/api/summaries/call/{}", c.call_id),
            Some(&caller_token),
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.body["code"], "forbidden");

    // Another call does not exist for this caller; management endpoints are refused.
    let other = app.create_call(None).await;
    let other_id = other["call"]["callId"].as_str().unwrap();
    let r = app
        .get(&format!("/api/calls/{other_id}"), Some(&caller_token))
        .await;
    assert_eq!(r.status, 404);
    let r = app
        .post(
            &format!("/api/calls/{other_id}/hangup"),
            Some(&caller_token),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 404);
    let r = app
        .post("/api/agents", Some(&caller_token), json!({ "name": "x" }))
        .await;
    assert_eq!(r.status, 403);
    // The caller may not act for an agent.
    let r = app
        .post(
            &format!("/api/transfers/{transfer_id}/accept"),
            Some(&caller_token),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 404);
}

#[actix_web::test]
async fn an_agent_cannot_act_on_another_agents_call() {
    let app = spawn_app().await;
    let c = active_call(&app, "alice").await;
    let bob_token = app.agent("bob").await;
    let _bob = app.connect("bob", &bob_token, None).await;
    let mallory = app.agent("mallory").await;
    let t = initiate(&app, &c, "bob", "warm").await;
    let id = t["transferId"].as_str().unwrap();
    for (path, body) in [
        (format!("/api/calls/{}/hold", c.call_id), json!({})),
        (format!("/api/calls/{}/hangup", c.call_id), json!({})),
        (format!("/api/transfers/{id}/complete"), json!({})),
        (format!("/api/transfers/{id}/cancel"), json!({})),
        (format!("/api/transfers/{id}/accept"), json!({})),
        (
            "/api/transfers/initiate".to_string(),
            json!({ "callId": c.call_id, "agentBId": "mallory" }),
        ),
    ] {
        let r = app.post(&path, Some(&mallory), body).await;
        assert_eq!(r.status, 403, "{path}: {:?}", r.body);
        assert_eq!(r.body["code"], "forbidden");
    }
    let r = app
        .get(&format!("/api/calls/{}", c.call_id), Some(&mallory))
        .await;
    assert_eq!(r.status, 403);
    // Claiming another agent's id in the body does not help.
    let r = app
        .post(
            "/api/transfers/initiate",
            Some(&mallory),
            json!({ "callId": c.call_id, "agentAId": "alice", "agentBId": "bob" }),
        )
        .await;
    assert_eq!(r.status, 403);
    // Only the target answers; A cannot accept for B.
    let r = app
        .post(
            &format!("/api/transfers/{id}/accept"),
            Some(&c.owner_token),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
}

#[actix_web::test]
async fn livekit_webhooks_must_be_signed() {
    let app = spawn_app().await;
    let url = format!("{}/livekit/webhook", app.address);
    let body = r#"{"event":"participant_joined","room":{"name":"call-x--main"},"participant":{"identity":"caller-x"}}"#;
    let unsigned = app
        .http
        .post(&url)
        .header("content-type", "application/webhook+json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status().as_u16(), 403);
    let forged = livekit_api::access_token::AccessToken::with_api_key(
        &app.livekit.api_key(),
        "not-the-secret",
    )
    .with_sha256("AAAA")
    .to_jwt()
    .unwrap();
    let r = app
        .http
        .post(&url)
        .header("authorization", forged)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["code"], "forbidden");
}

#[actix_web::test]
async fn with_a_management_key_nothing_mutating_is_open() {
    let key = "test-management-key-0123456789";
    let app = spawn_app_with(TestOptions {
        api_key: Some(key.into()),
        ..Default::default()
    })
    .await;
    let no_key = app
        .http
        .post(format!("{}/api/agents", app.address))
        .json(&json!({ "name": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(no_key.status().as_u16(), 401);
    let wrong = app
        .http
        .post(format!("{}/api/calls", app.address))
        .header("x-api-key", "wrong-key-wrong-key-wrong")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let v: serde_json::Value = wrong.json().await.unwrap();
    assert_eq!(v["code"], "unauthorized");
    // The right key works (TestApp sends it), and so does an agent's token for agent routes.
    let token = app.agent("alice").await;
    let r = app.get("/api/agents", Some(&token)).await;
    assert_eq!(r.status, 200);
    let r = app.get("/api/agents", Some("not-a-token")).await;
    assert_eq!(r.status, 401);
    // WebSocket without a valid token is refused before upgrading.
    let r = app
        .http
        .get(format!("{}/ws?token=bogus", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

#[actix_web::test]
async fn bad_input_gets_a_clear_4xx() {
    let app = spawn_app().await;
    let c = active_call(&app, "alice").await;
    let raw = |body: &'static str| {
        app.http
            .post(format!("{}/api/transfers/initiate", app.address))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let r = raw("{not json").await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["code"], "invalid_json");
    let r = raw(r#"{"agentAId":"alice"}"#).await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(v["message"].as_str().unwrap().contains("callId"), "{v}");
    let r = app
        .post(
            "/api/transfers/initiate",
            None,
            json!({ "callId": c.call_id, "agentAId": "alice", "agentBId": "bob", "mode": "sideways" }),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.body["message"].as_str().unwrap().contains("sideways"),
        "{:?}",
        r.body
    );
    let r = app
        .post(
            "/api/transfers/initiate",
            None,
            json!({ "callId": c.call_id, "agentAId": "alice", "agentBId": "nobody" }),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.body["message"].as_str().unwrap().starts_with("agentBId"));
    let r = app.get("/api/calls/call-does-not-exist", None).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body["code"], "not_found");
    let r = app.get("/api/transfers/xfer-nope", None).await;
    assert_eq!(r.status, 404);
    let r = app.get("/api/transfers?status=sideways", None).await;
    assert_eq!(r.status, 400);
    let r = app.post("/api/agents", None, json!({ "name": "" })).await;
    assert_eq!(r.status, 400);
    assert!(r.body["message"].as_str().unwrap().starts_with("name"));
    let r = app
        .post(
            "/api/agents",
            None,
            json!({ "agentId": "a b", "name": "x" }),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = app
        .post(
            "/api/agents",
            None,
            json!({ "agentId": "alice", "name": "again" }),
        )
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.body["code"], "already_exists");
    let r = app.request("DELETE", "/api/calls", None, None).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.body["code"], "method_not_allowed");
    let r = app.get("/api/nothing-here", None).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body["code"], "not_found");
    let r = app.get("/api/openapi.json", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["openapi"].as_str().map(|s| &s[..2]), Some("3."));
}

#[actix_web::test]
async fn duplicate_and_stale_webhooks_change_nothing() {
    let app = spawn_app().await;
    let c = active_call(&app, "alice").await;
    assert!(
        app.livekit
            .wait_for_webhooks_idle(std::time::Duration::from_secs(5))
            .await
    );
    let before = app
        .get(&format!("/api/calls/{}", c.call_id), None)
        .await
        .body;
    let deliveries = app.livekit.webhook_deliveries();
    assert!(!deliveries.is_empty());
    for d in &deliveries {
        assert_eq!(d.status, Some(200), "{d:?}");
        assert!(app.livekit.redeliver_webhook(&d.id));
    }
    assert!(
        app.livekit
            .wait_for_webhooks_idle(std::time::Duration::from_secs(5))
            .await
    );
    let after = app
        .get(&format!("/api/calls/{}", c.call_id), None)
        .await
        .body;
    assert_eq!(
        before["seq"], after["seq"],
        "replayed webhooks add no events"
    );
    assert_eq!(before["parties"], after["parties"]);
}

#[test]
fn livekits_official_python_sdk_accepts_our_tokens_with_the_intended_grants() {
    use switchboard::config::LiveKitConfig;
    use switchboard::media::livekit::{LiveKit, ParticipantRole};
    use switchboard::secret::Secret;
    let secret = "cross-check-secret-0123456789abcdef";
    let lk = LiveKit::new(&LiveKitConfig {
        url: "ws://localhost:7880".into(),
        api_url: "http://localhost:7880".into(),
        api_key: "devkey".into(),
        api_secret: Secret::new(secret),
    });
    for (role, identity, may_send_data) in [
        (ParticipantRole::Caller, "caller-1", false),
        (ParticipantRole::Agent, "alice", true),
    ] {
        let token = lk
            .participant_token(identity, "Name", "call-1--hold", role)
            .unwrap();
        let (code, out, err) =
            crate::livekit_fake::python_check(&["verify-token", "devkey", secret, &token], "");
        assert_eq!(code, 0, "python rejected our token: {err}");
        let claims: serde_json::Value = serde_json::from_str(&out).expect("JSON from python");
        assert_eq!(claims["identity"], identity);
        let video = &claims["video"];
        assert_eq!(video["roomJoin"], true, "{claims}");
        assert_eq!(video["room"], "call-1--hold");
        assert_eq!(video["canPublishData"], may_send_data, "{claims}");
        for admin in [
            "roomAdmin",
            "roomCreate",
            "roomList",
            "roomRecord",
            "ingressAdmin",
        ] {
            assert_ne!(
                video[admin], true,
                "{admin} must never leave the server: {claims}"
            );
        }
        // And a token signed with another secret is refused by the official verifier.
        let (code, _, _) = crate::livekit_fake::python_check(
            &[
                "verify-token",
                "devkey",
                "some-other-secret-0123456789",
                &token,
            ],
            "",
        );
        assert_eq!(code, 1);
    }
}

#[actix_web::test]
async fn an_idempotency_key_returns_the_first_answer() {
    let app = spawn_app().await;
    let c = active_call(&app, "alice").await;
    let bob_token = app.agent("bob").await;
    let _bob = app.connect("bob", &bob_token, None).await;
    let send = || {
        app.http
            .post(format!("{}/api/transfers/initiate", app.address))
            .bearer_auth(&c.owner_token)
            .header("Idempotency-Key", "retry-123")
            .json(&json!({ "callId": c.call_id, "agentBId": "bob" }))
            .send()
    };
    let first: serde_json::Value = send().await.unwrap().json().await.unwrap();
    let second = send().await.unwrap();
    assert_eq!(second.status().as_u16(), 201);
    let second: serde_json::Value = second.json().await.unwrap();
    assert_eq!(
        first["transferId"], second["transferId"],
        "a retried initiate opens no second transfer"
    );
    let open = app.get("/api/transfers?status=active", None).await.body;
    assert_eq!(open.as_array().unwrap().len(), 1);
}

#[actix_web::test]
async fn a_request_relayed_by_a_tunnel_is_not_a_local_manager() {
    let app = spawn_app().await;
    for header in ["x-forwarded-for", "forwarded", "x-real-ip"] {
        let r = app
            .http
            .post(format!("{}/api/agents", app.address))
            .header(header, "203.0.113.7")
            .json(&json!({ "name": "intruder" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401, "{header}");
    }
    let r = app
        .http
        .post(format!("{}/api/agents", app.address))
        .header("origin", "http://evil.example")
        .json(&json!({ "name": "intruder" }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        401,
        "a page of another site is not a local manager"
    );
}

#[actix_web::test]
async fn bodies_are_read_strictly() {
    let app = spawn_app().await;
    let c = active_call(&app, "alice").await;
    let post = |path: String, ct: &'static str, body: &'static str| {
        app.http
            .post(format!("{}{path}", app.address))
            .header("content-type", ct)
            .body(body)
            .send()
    };
    // An optional body that is present must be valid.
    for (body, code) in [
        ("j", "invalid_json"),
        ("[\"alice\"]", "invalid_request"),
        ("{\"agentId\":{}}", "invalid_request"),
    ] {
        let r = post(
            format!("/api/calls/{}/hold", c.call_id),
            "application/json",
            body,
        )
        .await
        .unwrap();
        assert_eq!(r.status().as_u16(), 400, "{body}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["code"], code, "{body}: {v}");
    }
    let r = post("/api/calls".into(), "application/json", "[null,null]")
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let r = post("/api/agents".into(), "text/plain", "{\"name\":\"x\"}")
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // Management may not act as an agent that does not exist.
    let other = app.create_call(None).await;
    let id = other["call"]["callId"].as_str().unwrap();
    let r = app
        .post(
            &format!("/api/calls/{id}/accept"),
            None,
            json!({ "agentId": "ghost" }),
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert!(r.body["message"].as_str().unwrap().starts_with("agentId"));
    // Holding a call nobody owns is a conflict, not a bad request.
    let r = app
        .post(&format!("/api/calls/{id}/hold"), None, json!({}))
        .await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert_eq!(r.body["code"], "no_owner");
    // A wrong method keeps its Allow header; an unknown path with any method is a 404.
    let r = app
        .http
        .delete(format!("{}/api/agents", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert!(r.headers().get("allow").is_some());
    let r = app
        .http
        .post(format!("{}/no/such/thing", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let r = app
        .http
        .get(format!("{}/", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "the landing page is served");
}

/// Without a management key, a page of another name that resolves to loopback (DNS
/// rebinding) is not a local manager: its `Host` is not a loopback name (403 JSON), on the
/// management endpoints and the wallboard's stream alike; an allow-listed `Host` is.
#[actix_web::test]
async fn a_rebound_host_is_not_a_local_manager() {
    let app = spawn_app_with(TestOptions {
        env: vec![("SWITCHBOARD_ALLOWED_HOSTS".into(), "box.lan".into())],
        ..Default::default()
    })
    .await;
    let send = |method: &str, path: &str, host: &str, origin: Option<&str>| {
        let mut req = app
            .http
            .request(method.parse().unwrap(), format!("{}{path}", app.address))
            .header("host", host);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        if method == "POST" {
            req = req.json(&json!({ "agentId": "mallory", "name": "Mallory" }));
        }
        req.send()
    };
    for (method, path) in [
        ("POST", "/api/agents"),
        ("GET", "/api/wallboard"),
        ("GET", "/api/wallboard/events"),
    ] {
        for (host, origin) in [
            ("evil.test", None),
            ("rebind.evil.test", Some("http://rebind.evil.test")),
            ("localhost.evil.test:80", None),
            ("128.0.0.1", None),
        ] {
            let r = send(method, path, host, origin).await.unwrap();
            assert_eq!(r.status().as_u16(), 403, "{method} {path} Host: {host}");
            let v: serde_json::Value = r.json().await.unwrap();
            assert_eq!(v["code"], "forbidden", "{v}");
        }
    }
    // An origin that is no web page (file:, a custom scheme) is refused as well.
    let port = app.port;
    let r = send(
        "GET",
        "/api/wallboard",
        &format!("localhost:{port}"),
        Some(&format!("ftp://localhost:{port}")),
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    // Loopback names and the allow-list still manage.
    for (host, origin) in [
        (format!("localhost:{port}"), None),
        (
            format!("127.0.0.1:{port}"),
            Some(format!("http://127.0.0.1:{port}")),
        ),
        ("app.localhost".to_string(), None),
        (
            "box.lan:8080".to_string(),
            Some("https://box.lan:8080".to_string()),
        ),
    ] {
        let r = send("GET", "/api/wallboard", &host, origin.as_deref())
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "Host: {host}");
    }
    let agents = app.get("/api/agents", None).await;
    assert!(!agents.body.to_string().contains("mallory"));
}

/// Control, bidirectional-format and non-characters are refused with a 400 naming the field
/// in every text a console shows (names one line; reasons, notes and transcripts keep `\n`
/// and `\t`), and nothing is stored.
#[actix_web::test]
async fn control_and_bidi_characters_are_refused_naming_the_field() {
    let app = spawn_app().await;
    let c = active_call(&app, "alice").await;
    let id = &c.call_id;
    let cases: Vec<(&str, String, serde_json::Value, &str)> = vec![
        (
            "POST",
            "/api/calls".into(),
            json!({"callerName": "Ann\u{202e}gnp.exe"}),
            "callerName",
        ),
        (
            "POST",
            "/api/calls".into(),
            json!({"callerName": "Ann\nLee"}),
            "callerName",
        ),
        (
            "POST",
            "/api/calls".into(),
            json!({"reason": "\u{1b}[31mred"}),
            "reason",
        ),
        (
            "PATCH",
            format!("/api/calls/{id}"),
            json!({"reason": "bell\u{7}"}),
            "reason",
        ),
        (
            "PATCH",
            format!("/api/calls/{id}"),
            json!({"callerName": "x\u{fffe}"}),
            "callerName",
        ),
        (
            "POST",
            "/api/agents".into(),
            json!({"agentId": "zed", "name": "Zed\u{0}"}),
            "name",
        ),
        (
            "PATCH",
            "/api/agents/alice".into(),
            json!({"name": "Al\u{2066}ice"}),
            "name",
        ),
        (
            "POST",
            "/api/transcripts".into(),
            json!({"callId": id, "text": "hi\u{0}"}),
            "text",
        ),
        (
            "POST",
            "/api/transcripts".into(),
            json!({"callId": id, "text": "hi", "speaker": "a\u{200b}"}),
            "speaker",
        ),
        (
            "POST",
            "/api/transfers/initiate".into(),
            json!({"callId": id, "agentAId": "alice", "agentBId": "bob", "note": "\u{202e}x"}),
            "note",
        ),
    ];
    for (method, path, body, field) in cases {
        let r = app.request(method, &path, None, Some(body.clone())).await;
        assert_eq!(r.status, 400, "{method} {path} {body}: {:?}", r.body);
        let m = r.body["message"].as_str().unwrap();
        assert!(m.starts_with(&format!("{field}:")), "{m}");
    }
    let call = app.get(&format!("/api/calls/{id}"), None).await.body;
    assert!(!call.to_string().contains("bell"), "{call}");
    // Multi-line text stays allowed where it is multi-line.
    let r = app
        .request(
            "PATCH",
            &format!("/api/calls/{id}"),
            None,
            Some(json!({"reason": "two\nlines\tok"})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

/// An `Idempotency-Key` is bound to its request: the same request again answers the first
/// answer; another body, or another command on the call, is 422 `idempotency_key_reused`
/// and changes nothing; another principal's key of the same text is its own.
#[actix_web::test]
async fn an_idempotency_key_is_bound_to_its_request() {
    let app = spawn_app().await;
    let c = active_call(&app, "alice").await;
    let id = c.call_id.clone();
    let send =
        |method: &'static str, path: String, token: Option<String>, body: serde_json::Value| {
            let mut req = app
                .http
                .request(method.parse().unwrap(), format!("{}{path}", app.address))
                .header("Idempotency-Key", "same-key-1")
                .json(&body);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            req.send()
        };
    let patch = format!("/api/calls/{id}");
    let r = send("PATCH", patch.clone(), None, json!({"reason": "first"}))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = send("PATCH", patch.clone(), None, json!({"reason": "first"}))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "the same request again");
    let r = send("PATCH", patch.clone(), None, json!({"reason": "second"}))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["code"], "idempotency_key_reused", "{v}");
    let r = send("POST", format!("/api/calls/{id}/hangup"), None, json!({}))
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        422,
        "a PATCH key does not stand for a hangup"
    );
    let call = app.get(&patch, None).await.body;
    assert_eq!(call["reason"], "first", "{call}");
    assert_ne!(call["status"], "ended", "{call}");
    // The owner's key of the same text is another key: it hangs up.
    let r = send(
        "POST",
        format!("/api/calls/{id}/hangup"),
        Some(c.owner_token.clone()),
        json!({}),
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let call = app.get(&patch, None).await.body;
    assert_eq!(call["status"], "ended", "{call}");
}

/// A retried initiate answers the first transfer; the key with another body is 422 and adds
/// no transcript.
#[actix_web::test]
async fn an_initiate_key_reused_with_another_body_is_refused() {
    let app = spawn_app().await;
    let c = active_call(&app, "alice").await;
    let bob_token = app.agent("bob").await;
    let _bob = app.connect("bob", &bob_token, None).await;
    let send = |body: serde_json::Value| {
        app.http
            .post(format!("{}/api/transfers/initiate", app.address))
            .bearer_auth(&c.owner_token)
            .header("Idempotency-Key", "initiate-1")
            .json(&body)
            .send()
    };
    let first = json!({"callId": c.call_id, "agentBId": "bob", "transcriptText": "one"});
    assert_eq!(send(first.clone()).await.unwrap().status().as_u16(), 201);
    assert_eq!(send(first).await.unwrap().status().as_u16(), 201);
    let r = send(json!({"callId": c.call_id, "agentBId": "bob", "transcriptText": "two"}))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let texts = app
        .get(&format!("/api/transcripts/call/{}", c.call_id), None)
        .await
        .body;
    let texts: Vec<&str> = texts
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["text"].as_str())
        .collect();
    assert_eq!(texts, ["one"], "the retry and the refusal add nothing");
}
