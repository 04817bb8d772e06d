//! The browser UI end to end: the real server binary against the LiveKit and Twilio fakes,
//! and `node tests/e2e/<script>.mjs` driving Debian's Chromium through playwright-core with
//! three people (caller, Agent A, Agent B) and the wallboard. The pages' LiveKit SDK and
//! Twilio Voice SDK are swapped (by Playwright routing) for doubles that join the fakes with
//! the real tokens the pages got (`POST /test/join` on the LiveKit fake,
//! `POST /test/client/connect` on the Twilio fake), so grants and the TwiML App are checked
//! and webhooks are real; phone callers and specialists are the Twilio fake's scripted phones.
//!
//! Needs `node`, `npm ci --prefix tests/e2e` and `/usr/bin/chromium` (`scripts/test.sh` and
//! `.ci/run` install them); without them the test fails and says so. The idle period of the
//! no-polling check is `SWITCHBOARD_E2E_IDLE_SECS` (default 120: two minutes idle).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::support::app::{server_env, twilio_env, TestOptions, TWILIO_APP_SID, TWILIO_NUMBER};
use crate::support::livekit::{FakeLiveKit, FakeOptions};
use crate::support::twilio::{FakeTwilio, FakeTwilioConfig, PhoneScript};

const CHROMIUM: &str = "/usr/bin/chromium";

/// The server process, killed and reaped on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Fails with how to install what the browser tests need.
fn check_prerequisites() {
    let how = "run scripts/test.sh (it runs `npm ci --prefix tests/e2e`; .ci/run also installs \
               Debian's chromium, node and npm), or by hand: `apt-get install chromium nodejs npm` \
               and `npm ci --prefix tests/e2e`";
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "the browser tests need node on PATH: {how}"
    );
    assert!(
        Path::new(CHROMIUM).exists(),
        "the browser tests need Debian's Chromium at {CHROMIUM}: {how}"
    );
    assert!(
        repo()
            .join("tests/e2e/node_modules/playwright-core/package.json")
            .exists(),
        "the browser tests need playwright-core in tests/e2e/node_modules: {how}"
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_server(env: &std::collections::HashMap<String, String>, port: u16) -> Server {
    let server = Server(
        Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("serve")
            .current_dir(repo())
            .envs(env)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("switchboard binary starts"),
    );
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/health"))
            .send()
            .await
        {
            if r.status().is_success() {
                return server;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("switchboard did not come up on port {port}");
}

async fn create_agent(http: &reqwest::Client, base: &str, body: serde_json::Value) {
    let r = http
        .post(format!("{base}/api/agents"))
        .json(&body)
        .send()
        .await
        .expect("POST /api/agents");
    assert_eq!(r.status().as_u16(), 201, "{:?}", r.text().await);
}

/// A phone specialist of the directory and how the Twilio fake's phone at that number
/// answers.
struct Specialist {
    agent_id: &'static str,
    name: &'static str,
    number: &'static str,
    script: PhoneScript,
}

/// How a script's world is set up.
struct Scenario {
    script: &'static str,
    idle_secs: u64,
    /// Fewest `participant_joined` webhooks the LiveKit fake must have delivered.
    min_joins: usize,
    /// Fewest browser client legs (`client:` calls) the Twilio fake must have seen.
    min_client_legs: usize,
    /// The Twilio fake's `time_scale` (ring and gather timeouts).
    time_scale: f64,
    specialists: Vec<Specialist>,
}

/// Runs one E2E script against a fresh server; panics with node's output if it fails.
async fn run_script(sc: Scenario) {
    check_prerequisites();
    let script = sc.script;
    let livekit = Arc::new(FakeLiveKit::start(FakeOptions::default()));
    let data_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut env = server_env(
        &TestOptions {
            disconnect_grace: 10.0,
            ..Default::default()
        },
        &livekit,
        data_dir.path(),
        &format!("127.0.0.1:{port}"),
    );
    // Twilio: the fake's number and TwiML App point at the server binary's webhooks.
    let twilio = FakeTwilio::start(FakeTwilioConfig {
        apps: [(TWILIO_APP_SID.to_string(), format!("{base}/twilio/client"))].into(),
        numbers: [(TWILIO_NUMBER.to_string(), format!("{base}/twilio/voice"))].into(),
        time_scale: sc.time_scale,
        ..FakeTwilioConfig::default()
    });
    env.extend(twilio_env(&twilio, &base));
    livekit.set_webhook_url(Some(format!("{base}/livekit/webhook")));
    let _server = start_server(&env, port).await;

    let http = reqwest::Client::new();
    create_agent(&http, &base, json!({"agentId": "alice", "name": "Alice"})).await;
    create_agent(&http, &base, json!({"agentId": "bob", "name": "Bob"})).await;
    for sp in sc.specialists {
        create_agent(
            &http,
            &base,
            json!({"agentId": sp.agent_id, "name": sp.name, "kind": "phone", "phoneNumber": sp.number}),
        )
        .await;
        twilio.set_phone(sp.number, sp.script);
    }

    let shots = repo().join("target/e2e-screenshots");
    let run = tokio::process::Command::new("node")
        .arg(repo().join("tests/e2e").join(script))
        .current_dir(repo().join("tests/e2e"))
        .env("SWITCHBOARD_URL", &base)
        .env("TWILIO_FAKE_URL", twilio.base_url())
        .env("TWILIO_NUMBER", TWILIO_NUMBER)
        .env("E2E_SCREENSHOT_DIR", &shots)
        .env("E2E_IDLE_SECS", sc.idle_secs.to_string())
        .kill_on_drop(true)
        .output();
    let limit = Duration::from_secs(sc.idle_secs + 300);
    let out = tokio::time::timeout(limit, run)
        .await
        .unwrap_or_else(|_| panic!("node {script} did not finish within {limit:?}"))
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "node tests/e2e/{script} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- Twilio fake errors\n{:#?}",
        out.status,
        twilio.errors()
    );
    assert!(
        stdout.contains("all steps passed"),
        "node tests/e2e/{script} exited 0 without finishing:\n{stdout}\n{stderr}"
    );
    // What the pages did reached LiveKit with real tokens: the fake saw the joins.
    let joins = livekit
        .webhook_deliveries()
        .iter()
        .filter(|d| d.event == "participant_joined" && d.status == Some(200))
        .count();
    assert!(
        joins >= sc.min_joins,
        "expected the pages' joins to reach the LiveKit fake, saw {joins} participant_joined webhooks accepted by the server"
    );
    // ... and Twilio with real Access Tokens: the fake ran the TwiML App for each client leg.
    let client_legs = twilio
        .calls()
        .iter()
        .filter(|c| c.from.starts_with("client:"))
        .count();
    assert!(
        client_legs >= sc.min_client_legs,
        "expected the pages' Voice SDK legs to reach the Twilio fake, saw {client_legs}"
    );
    assert!(
        twilio.errors().is_empty(),
        "the Twilio fake saw application errors: {:#?}",
        twilio.errors()
    );
    println!("{stdout}screenshots in {}", shots.display());
}

fn idle_secs() -> u64 {
    std::env::var("SWITCHBOARD_E2E_IDLE_SECS")
        .ok()
        .map(|v| {
            v.parse()
                .expect("SWITCHBOARD_E2E_IDLE_SECS must be a number of seconds")
        })
        .unwrap_or(120)
}

/// Caller, Agent A and Agent B in Chromium: call → accept → warm transfer → B accepts →
/// briefing → complete, a declined and a cancelled transfer, hang-up; the wallboard follows;
/// no page polls (an idle period with no request at all, no repeated request during the
/// transfer). A transfer to a phone specialist is started and cancelled while their phone
/// rings (real-time Twilio fake, so the ring outlasts the cancel).
#[actix_web::test]
async fn three_people_transfer_in_chromium_without_polling() {
    run_script(Scenario {
        script: "transfer.mjs",
        idle_secs: idle_secs(),
        min_joins: 8,
        min_client_legs: 1,
        time_scale: 1.0,
        specialists: vec![Specialist {
            agent_id: "phil",
            name: "Phil",
            number: "+15550100",
            script: PhoneScript::answering_after(Duration::from_secs(600)),
        }],
    })
    .await;
}

/// A blocked microphone, the server unreachable at sign-in, the WebSocket cut and caught up
/// with `since=`, LiveKit unreachable on a move, the console on a phone-sized screen, and the
/// client side of the Twilio contract (`plane: "twilio"` moves).
#[actix_web::test]
async fn failures_show_clear_messages_in_chromium() {
    run_script(Scenario {
        script: "resilience.mjs",
        idle_secs: 0,
        min_joins: 2,
        min_client_legs: 0,
        time_scale: 1.0,
        specialists: vec![],
    })
    .await;
}

/// Phone legs in Chromium against the Twilio fake: a phone caller offered, accepted (A's page
/// joins the main conference as a Voice SDK client leg), held, resumed, muted and unmuted
/// from the console; warm-transferred to a phone specialist who presses 1 (A's page in the
/// consult conference, then the specialist and the caller together in the main conference);
/// a web caller transferred to a busy specialist, back with A; then that web caller handed to
/// the specialist (the caller page joins the main conference). Every step checks the pages
/// and where every leg is in the fake (`GET /test/state`).
#[actix_web::test]
async fn phone_callers_and_phone_specialists_in_chromium() {
    run_script(Scenario {
        script: "phone.mjs",
        idle_secs: 0,
        min_joins: 2,
        min_client_legs: 4,
        time_scale: 0.1,
        specialists: vec![
            Specialist {
                agent_id: "phil",
                name: "Phil",
                number: "+15550100",
                script: PhoneScript::answering().pressing("1").pressing("1"),
            },
            Specialist {
                agent_id: "bess",
                name: "Bess",
                number: "+15550199",
                script: PhoneScript::busy(),
            },
        ],
    })
    .await;
}
