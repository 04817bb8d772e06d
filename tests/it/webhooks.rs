//! End-of-call webhooks against a local receiver on a real socket: retries with growing
//! delays through a 500, a hang past the attempt timeout and a 429 with `Retry-After`; the
//! same `Idempotency-Key` on every attempt; signatures verified in Rust and with the
//! documented Python recipe (`tests/py/verify_webhook.py`); exactly one delivery per call
//! when enqueued concurrently and across a restart; attempts through the API; 404/410 give
//! up as `failed` and redelivery tries again; SSRF refusals; `/metrics`.

use std::collections::VecDeque;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use crate::support::app::{spawn_app_with, TestApp, TestOptions};
use switchboard::config::WebhookConfig;
use switchboard::secret::Secret;
use switchboard::store::embedded::EmbeddedStore;
use switchboard::store::Store;
use switchboard::webhooks::signing::{self, DEFAULT_TOLERANCE};
use switchboard::webhooks::ssrf::{AllowedHost, EgressPolicy};
use switchboard::webhooks::{
    end_of_call_payload, DeliveryStatus, WebhookDelivery, WebhookError, WebhookTarget, Webhooks,
};

const SECRET: &str = "whsec_integration_test_secret";

/// What the receiver does with one request.
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    Status(u16),
    /// 429 with `Retry-After: <secs>`.
    TooMany(u64),
    /// Holds the request this long before answering 200 (past the attempt timeout).
    Hang(Duration),
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) at: Instant,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Received {
    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("header {name} missing: {:?}", self.headers))
    }
}

#[derive(Default)]
struct ReceiverState {
    script: VecDeque<Reply>,
    got: Vec<Received>,
}

/// A webhook receiver on 127.0.0.1, port 0, answering from a script (then 200).
pub(crate) struct Receiver {
    port: u16,
    state: Arc<Mutex<ReceiverState>>,
}

impl Receiver {
    pub(crate) fn start(script: Vec<Reply>) -> Receiver {
        let state = Arc::new(Mutex::new(ReceiverState {
            script: script.into(),
            got: vec![],
        }));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let data = web::Data::new(state.clone());
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new()
                .app_data(data.clone())
                .default_service(web::to(receive))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        actix_web::rt::spawn(server);
        Receiver { port, state }
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks/ended", self.port)
    }

    pub(crate) fn got(&self) -> Vec<Received> {
        self.state.lock().unwrap().got.clone()
    }

    pub(crate) async fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.got();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "receiver got {} requests, expected {n}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn receive(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<Arc<Mutex<ReceiverState>>>,
) -> HttpResponse {
    let reply = {
        let mut s = state.lock().unwrap();
        s.got.push(Received {
            at: Instant::now(),
            headers: req
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                .collect(),
            body: body.to_vec(),
        });
        s.script.pop_front().unwrap_or(Reply::Status(200))
    };
    match reply {
        Reply::Status(code) => {
            HttpResponse::build(actix_web::http::StatusCode::from_u16(code).unwrap()).finish()
        }
        Reply::TooMany(secs) => HttpResponse::TooManyRequests()
            .insert_header(("Retry-After", secs.to_string()))
            .finish(),
        Reply::Hang(d) => {
            tokio::time::sleep(d).await;
            HttpResponse::Ok().finish()
        }
    }
}

/// Settings for fast tests: first backoff 0.2 s, attempt timeout 1 s.
pub(crate) fn fast_env(receiver_port: u16) -> Vec<(String, String)> {
    [
        ("SWITCHBOARD_WEBHOOK_MAX_ATTEMPTS", "6".to_string()),
        ("SWITCHBOARD_WEBHOOK_BACKOFF", "0.2".to_string()),
        ("SWITCHBOARD_WEBHOOK_MAX_BACKOFF", "5".to_string()),
        ("SWITCHBOARD_WEBHOOK_TIMEOUT", "1".to_string()),
        ("SWITCHBOARD_WEBHOOK_POLL", "0.2".to_string()),
        (
            "SWITCHBOARD_WEBHOOK_ALLOWED_HOSTS",
            format!("127.0.0.1:{receiver_port}"),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn fast_config(policy: EgressPolicy) -> WebhookConfig {
    WebhookConfig {
        max_attempts: 6,
        first_backoff: Duration::from_millis(200),
        max_backoff: Duration::from_secs(5),
        attempt_timeout: Duration::from_secs(1),
        poll_interval: Duration::from_millis(200),
        policy,
        signing_secret: None,
    }
}

fn target(url: &str) -> WebhookTarget {
    WebhookTarget {
        url: url.to_string(),
        secret: Secret::new(SECRET),
        org_id: Some("org-test".into()),
    }
}

/// The `call.ended` payload of a call the server has, built from the store.
async fn payload_of(store: &dyn Store, call_id: &str) -> Value {
    let call = store.get_call(call_id).await.unwrap().expect("call stored");
    let transcripts = store.list_transcripts_by_call(call_id).await.unwrap();
    let transfers = store.list_transfers_by_call(call_id).await.unwrap();
    end_of_call_payload(
        &call.call,
        &transcripts,
        &transfers,
        Some(("asst-test", "Test assistant")),
    )
}

/// Runs the documented Python recipe on a received request; fails loudly without python3.
fn python_verifies(r: &Received, secret: &str) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body.json");
    std::fs::write(&body, &r.body).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/verify_webhook.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .args(["--secret", secret])
        .args(["--header", r.header("switchboard-signature")])
        .arg("--body-file")
        .arg(&body)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "python3 is needed to check the documented verification recipe and could not \
                 be run ({e}); install Python 3 (scripts/test.sh expects it on PATH)"
            )
        });
    out.status.success()
}

async fn deliveries(app: &TestApp, call_id: &str) -> Vec<Value> {
    let r = app
        .get(&format!("/api/calls/{call_id}/webhooks"), None)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["deliveries"].as_array().unwrap().clone()
}

async fn wait_status(app: &TestApp, call_id: &str, want: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let d = deliveries(app, call_id).await;
        if d.len() == 1 && d[0]["status"] == want {
            return d[0].clone();
        }
        assert!(Instant::now() < deadline, "delivery never {want}: {d:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn secs(d: &Value, i: usize, key: &str) -> f64 {
    let at =
        chrono::DateTime::parse_from_rfc3339(d["attempts"][i]["at"].as_str().unwrap()).unwrap();
    let base = at.timestamp_millis() as f64 / 1000.0;
    match key {
        "start" => base,
        _ => base + d["attempts"][i]["durationMs"].as_f64().unwrap() / 1000.0,
    }
}

#[actix_web::test]
async fn retries_with_growing_delays_the_same_key_and_verifiable_signatures() {
    let receiver = Receiver::start(vec![
        Reply::Status(500),
        Reply::Hang(Duration::from_secs(3)),
        Reply::TooMany(1),
    ]);
    let app = spawn_app_with(TestOptions {
        env: fast_env(receiver.port),
        ..TestOptions::default()
    })
    .await;
    let store = app.store.clone().unwrap();
    let call = app.create_call(None).await;
    let call_id = call["call"]["callId"].as_str().unwrap().to_string();
    let payload = payload_of(store.as_ref(), &call_id).await;
    // Another node enqueues through the library on the shared store, twice at once: one
    // delivery. Its worker and the server's both run: each attempt is made by one of them.
    let hooks = Webhooks::new(
        store.clone(),
        fast_config(EgressPolicy {
            allow_private: false,
            allowed_hosts: vec![
                AllowedHost::parse(&format!("127.0.0.1:{}", receiver.port)).unwrap()
            ],
        }),
    );
    let hooks = hooks.start();
    let (a, b) = tokio::join!(
        hooks.enqueue_call_ended(&call_id, target(&receiver.url()), payload.clone()),
        hooks.enqueue_call_ended(&call_id, target(&receiver.url()), payload.clone())
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.delivery_id, b.delivery_id);
    assert_eq!(a.status, DeliveryStatus::Pending);

    let got = receiver.wait_for(4, Duration::from_secs(20)).await;
    let d = wait_status(&app, &call_id, "delivered", Duration::from_secs(10)).await;
    assert_eq!(got.len(), 4, "no attempt after the 200");
    // Same idempotency key (the delivery id), numbered attempts, the event, JSON.
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.header("idempotency-key"), a.delivery_id);
        assert_eq!(
            r.header("switchboard-delivery-attempt"),
            (i + 1).to_string()
        );
        assert_eq!(r.header("switchboard-event"), "call.ended");
        assert!(r.header("content-type").starts_with("application/json"));
        let sig = r.header("switchboard-signature");
        let now = chrono::Utc::now().timestamp();
        signing::verify(SECRET, sig, &r.body, now, DEFAULT_TOLERANCE)
            .unwrap_or_else(|e| panic!("attempt {}: {e}", i + 1));
        assert!(signing::verify("wrong", sig, &r.body, now, DEFAULT_TOLERANCE).is_err());
        assert!(
            python_verifies(r, SECRET),
            "Python recipe accepts attempt {}",
            i + 1
        );
        assert!(
            !python_verifies(r, "wrong"),
            "Python recipe refuses a wrong secret"
        );
        // The same bytes every time: the payload as enqueued.
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body, payload);
    }
    assert_eq!(payload["callId"], call_id.as_str());
    assert_eq!(payload["assistantName"], "Test assistant");
    // A tampered body fails both verifiers.
    let mut tampered = got[3].clone();
    tampered.body.extend_from_slice(b" ");
    assert!(!python_verifies(&tampered, SECRET));

    // Attempts through the API: 500, timeout, 429, 200, with growing delays between them.
    let attempts = d["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 4, "{d}");
    assert_eq!(attempts[0]["statusCode"], 500);
    assert!(attempts[1]["statusCode"].is_null());
    assert!(
        attempts[1]["error"].as_str().unwrap().contains("timed out"),
        "{}",
        attempts[1]
    );
    assert!(attempts[1]["durationMs"].as_u64().unwrap() >= 900);
    assert_eq!(attempts[2]["statusCode"], 429);
    assert_eq!(attempts[3]["statusCode"], 200);
    assert!(d["deliveredAt"].is_string());
    assert!(d.get("secret").is_none(), "the secret is never returned");
    let gaps: Vec<f64> = (0..3)
        .map(|i| secs(&d, i + 1, "start") - secs(&d, i, "end"))
        .collect();
    // Backoff: [0.1, 0.2] s, then [0.2, 0.4] s, then Retry-After's 1 s (over [0.4, 0.8]).
    assert!(gaps[0] >= 0.09, "first delay {gaps:?}");
    assert!(gaps[1] + 0.02 >= gaps[0], "delays grow: {gaps:?}");
    assert!(gaps[2] >= 0.95, "Retry-After honoured: {gaps:?}");
    assert!(gaps[2] >= gaps[1], "delays grow: {gaps:?}");
    // The receiver saw the same spacing.
    assert!(got[3].at - got[2].at >= Duration::from_millis(950));

    // A later enqueue (the call ending again, a retried handler) changes nothing.
    let again = hooks
        .enqueue_call_ended(&call_id, target(&receiver.url()), json!({"other": true}))
        .await
        .unwrap();
    assert_eq!(again.status, DeliveryStatus::Delivered);
    assert_eq!(again.payload, payload);
    assert_eq!(deliveries(&app, &call_id).await.len(), 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.got().len(), 4, "delivered means no more attempts");
    hooks.stop().await;

    // The metrics count the attempts by outcome.
    let text = app
        .http
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for outcome in ["delivered", "retry"] {
        let line = text
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "switchboard_webhook_deliveries_total{{outcome=\"{outcome}\"}}"
                ))
            })
            .unwrap_or_else(|| panic!("no {outcome} series in:\n{text}"));
        let n: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(n >= 1, "{line}");
    }
}

#[actix_web::test]
async fn gone_receivers_fail_and_redelivery_tries_again() {
    let receiver = Receiver::start(vec![Reply::Status(404), Reply::Status(410)]);
    let app = spawn_app_with(TestOptions {
        env: fast_env(receiver.port),
        ..TestOptions::default()
    })
    .await;
    let store = app.store.clone().unwrap();
    let policy = EgressPolicy {
        allow_private: true,
        allowed_hosts: vec![],
    };
    let hooks = Webhooks::new(store.clone(), fast_config(policy));
    let call_id = app.create_call(None).await["call"]["callId"]
        .as_str()
        .unwrap()
        .to_string();
    // Transcript lines of the call make it into the payload built from the store.
    let r = app
        .post(
            "/api/transcripts",
            None,
            json!({"callId": call_id, "speaker": "caller", "text": "My order never came."}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let call = store.get_call(&call_id).await.unwrap().unwrap().call;
    let d = hooks
        .enqueue_ended_call(&call, target(&receiver.url()), Some(("asst-1", "Support")))
        .await
        .unwrap();
    let mut expected = payload_of(store.as_ref(), &call_id).await;
    expected["assistantId"] = json!("asst-1");
    expected["assistantName"] = json!("Support");
    assert_eq!(d.payload, expected);
    assert_eq!(d.payload["transcripts"][0]["text"], "My order never came.");
    assert_eq!(d.payload["transcripts"][0]["speaker"], "caller");
    // 404: given up at once, no retry.
    let failed = wait_status(&app, &call_id, "failed", Duration::from_secs(10)).await;
    assert_eq!(failed["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(failed["attempts"][0]["statusCode"], 404);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(receiver.got().len(), 1, "a 404 is not retried");

    // Only a failed delivery can be redelivered; unknown ids are 404.
    let r = app
        .post("/api/webhooks/whd-unknown/redeliver", None, json!({}))
        .await;
    assert_eq!(r.status, 404, "{:?}", r.body);
    let r = app
        .post(
            &format!("/api/webhooks/{}/redeliver", d.delivery_id),
            None,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(r.body["status"], "pending");
    // 410 this time: failed again, with both attempts kept.
    let deadline = Instant::now() + Duration::from_secs(10);
    let failed = loop {
        let all = deliveries(&app, &call_id).await;
        if all[0]["status"] == "failed" && all[0]["attempts"].as_array().unwrap().len() == 2 {
            break all[0].clone();
        }
        assert!(Instant::now() < deadline, "410 never recorded: {all:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(failed["attempts"][1]["statusCode"], 410);
    assert_eq!(failed["attempts"][1]["attempt"], 2);
    // Redelivered once more: the receiver now answers 200.
    let r = app
        .post(
            &format!("/api/webhooks/{}/redeliver", d.delivery_id),
            None,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let done = wait_status(&app, &call_id, "delivered", Duration::from_secs(10)).await;
    assert_eq!(done["attempts"].as_array().unwrap().len(), 3);
    let r = app
        .post(
            &format!("/api/webhooks/{}/redeliver", d.delivery_id),
            None,
            json!({}),
        )
        .await;
    assert_eq!(
        r.status, 409,
        "a delivered one is not redelivered: {:?}",
        r.body
    );
    assert_eq!(r.body["code"], "not_failed");
    let keys: Vec<String> = receiver
        .got()
        .iter()
        .map(|r| r.header("idempotency-key").to_string())
        .collect();
    assert_eq!(keys, vec![d.delivery_id.clone(); 3]);
    // Unknown calls are 404 on the listing.
    assert_eq!(
        app.get("/api/calls/call-unknown/webhooks", None)
            .await
            .status,
        404
    );
}

#[actix_web::test]
async fn management_only() {
    let app = spawn_app_with(TestOptions {
        api_key: Some("webhooks-test-management-key".into()),
        ..TestOptions::default()
    })
    .await;
    let call_id = app.create_call(None).await["call"]["callId"]
        .as_str()
        .unwrap()
        .to_string();
    let agent = app.agent("wh-agent").await;
    let r = app
        .get(&format!("/api/calls/{call_id}/webhooks"), Some(&agent))
        .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    let anon = app
        .http
        .get(format!("{}/api/calls/{call_id}/webhooks", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), 401);
    let r = app
        .get(&format!("/api/calls/{call_id}/webhooks"), None)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["deliveries"], json!([]));
}

#[actix_web::test]
async fn one_delivery_per_call_across_a_restart_and_pending_ones_resume() {
    let receiver = Receiver::start(vec![Reply::Status(503)]);
    let dir = tempfile::tempdir().unwrap();
    let policy = EgressPolicy {
        allow_private: false,
        allowed_hosts: vec![AllowedHost::parse(&format!("127.0.0.1:{}", receiver.port)).unwrap()],
    };
    let config = WebhookConfig {
        // Long enough that the retry is due only after the restart.
        first_backoff: Duration::from_secs(2),
        ..fast_config(policy)
    };
    let call_id = "call-restart-test";
    let payload = json!({"event": "call.ended", "callId": call_id});
    let first: WebhookDelivery = {
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let hooks = Webhooks::new(store.clone(), config.clone()).start();
        let (a, b) = tokio::join!(
            hooks.enqueue_call_ended(call_id, target(&receiver.url()), payload.clone()),
            hooks.enqueue_call_ended(call_id, target(&receiver.url()), payload.clone())
        );
        assert_eq!(a.unwrap().delivery_id, b.as_ref().unwrap().delivery_id);
        receiver.wait_for(1, Duration::from_secs(10)).await;
        // Wait until the 503 is recorded, then stop everything (the "process" ends).
        let deadline = Instant::now() + Duration::from_secs(5);
        while store
            .list_webhook_deliveries_by_call(call_id)
            .await
            .unwrap()[0]
            .attempts
            .is_empty()
        {
            assert!(Instant::now() < deadline, "first attempt never recorded");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        hooks.stop().await;
        b.unwrap()
    };
    // Reopen the same store (the file is free again: nothing holds it).
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let before = store
        .list_webhook_deliveries_by_call(call_id)
        .await
        .unwrap();
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].status, DeliveryStatus::Pending);
    assert_eq!(before[0].attempts.len(), 1);
    assert_eq!(before[0].attempts[0].status_code, Some(503));
    let hooks = Webhooks::new(store.clone(), config).start();
    // The call ends "again" after the restart: still the same one delivery.
    let again = hooks
        .enqueue_call_ended(call_id, target(&receiver.url()), json!({"different": 1}))
        .await
        .unwrap();
    assert_eq!(again.delivery_id, first.delivery_id);
    // The pending delivery is resumed and delivered by the new worker.
    let got = receiver.wait_for(2, Duration::from_secs(10)).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let done = loop {
        let d = store
            .get_webhook_delivery(&first.delivery_id)
            .await
            .unwrap()
            .unwrap();
        if d.status == DeliveryStatus::Delivered {
            break d;
        }
        assert!(Instant::now() < deadline, "never delivered: {d:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    hooks.stop().await;
    assert_eq!(done.attempts.len(), 2);
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0].header("idempotency-key"),
        got[1].header("idempotency-key")
    );
    assert_eq!(got[1].header("switchboard-delivery-attempt"), "2");
    let body: Value = serde_json::from_slice(&got[1].body).unwrap();
    assert_eq!(body, payload, "the first payload is the one delivered");
    assert_eq!(
        store
            .list_webhook_deliveries_by_call(call_id)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[actix_web::test]
async fn ssrf_refusals_name_the_reason_and_allowed_receivers_are_reachable() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let hooks = Webhooks::new(store.clone(), fast_config(EgressPolicy::default()));
    for (url, reason) in [
        ("http://127.0.0.1:8080/hook", "loopback"),
        ("http://localhost/hook", "local name"),
        ("http://[::1]/hook", "loopback"),
        ("http://10.0.0.1/hook", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[::ffff:127.0.0.1]/hook", "loopback"),
        ("http://100.64.0.1/hook", "CGNAT"),
        ("file:///etc/passwd", "scheme \"file\""),
    ] {
        match hooks
            .enqueue_call_ended("call-ssrf", target(url), json!({}))
            .await
        {
            Err(WebhookError::Url(e)) => {
                let msg = e.to_string();
                assert!(msg.contains(reason), "{url}: {msg}");
                assert!(
                    msg.contains("refused") || msg.contains("not allowed"),
                    "{url}: {msg}"
                );
            }
            other => panic!("{url} was not refused: {other:?}"),
        }
    }
    assert!(
        store
            .list_webhook_deliveries_by_call("call-ssrf")
            .await
            .unwrap()
            .is_empty(),
        "nothing refused is stored"
    );
    // With SWITCHBOARD_WEBHOOK_ALLOW_PRIVATE the local receiver is reachable.
    let receiver = Receiver::start(vec![]);
    let open = Webhooks::new(
        store.clone(),
        fast_config(EgressPolicy {
            allow_private: true,
            allowed_hosts: vec![],
        }),
    )
    .start();
    let d = open
        .enqueue_call_ended("call-private-ok", target(&receiver.url()), json!({"a": 1}))
        .await
        .unwrap();
    receiver.wait_for(1, Duration::from_secs(10)).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while store
        .get_webhook_delivery(&d.delivery_id)
        .await
        .unwrap()
        .unwrap()
        .status
        != DeliveryStatus::Delivered
    {
        assert!(Instant::now() < deadline, "never delivered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    open.stop().await;

    // The guard runs again at every attempt: a delivery enqueued while private receivers
    // were allowed is refused (and fails, never reaching the receiver) by a worker whose
    // policy does not allow them.
    let d = open
        .enqueue_call_ended("call-policy-changed", target(&receiver.url()), json!({}))
        .await
        .unwrap();
    let strict = Webhooks::new(store.clone(), fast_config(EgressPolicy::default())).start();
    let deadline = Instant::now() + Duration::from_secs(5);
    let failed = loop {
        let d = store
            .get_webhook_delivery(&d.delivery_id)
            .await
            .unwrap()
            .unwrap();
        if d.status == DeliveryStatus::Failed {
            break d;
        }
        assert!(Instant::now() < deadline, "never refused: {d:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    strict.stop().await;
    let error = failed.attempts[0].error.clone().unwrap_or_default();
    assert!(
        error.contains("loopback") && error.contains("refused"),
        "{error}"
    );
    assert_eq!(failed.attempts.len(), 1, "a refusal is not retried");
    assert_eq!(
        receiver.got().len(),
        1,
        "the refused attempt never connected"
    );
}
