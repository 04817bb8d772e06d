//! The browser UI end to end: the real server binary against the LiveKit fake, and
//! `node tests/e2e/transfer.mjs` driving Debian's Chromium through playwright-core with three
//! people (caller, Agent A, Agent B) and the wallboard. The pages' LiveKit SDK is swapped (by
//! Playwright routing) for a double that joins the fake with the real tokens the pages got
//! (`POST /test/join` on the fake), so grants are checked and webhooks are real.
//!
//! Needs `node`, `npm ci --prefix tests/e2e` and `/usr/bin/chromium` (`scripts/test.sh` and
//! `.ci/run` install them); without them the test fails and says so. The idle period of the
//! no-polling check is `SWITCHBOARD_E2E_IDLE_SECS` (default 120, the two minutes).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::support::app::{server_env, TestOptions};
use crate::support::livekit::{FakeLiveKit, FakeOptions};

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

/// Runs one E2E script against a fresh server; panics with node's output if it fails.
async fn run_script(script: &str, idle_secs: u64, min_joins: usize) {
    check_prerequisites();
    let livekit = Arc::new(FakeLiveKit::start(FakeOptions::default()));
    let data_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let env = server_env(
        &TestOptions {
            disconnect_grace: 10.0,
            ..Default::default()
        },
        &livekit,
        data_dir.path(),
        &format!("127.0.0.1:{port}"),
    );
    let base = format!("http://127.0.0.1:{port}");
    livekit.set_webhook_url(Some(format!("{base}/livekit/webhook")));
    let _server = start_server(&env, port).await;

    let http = reqwest::Client::new();
    create_agent(&http, &base, json!({"agentId": "alice", "name": "Alice"})).await;
    create_agent(&http, &base, json!({"agentId": "bob", "name": "Bob"})).await;
    create_agent(
        &http,
        &base,
        json!({"agentId": "phil", "name": "Phil", "kind": "phone", "phoneNumber": "+15550100"}),
    )
    .await;

    let shots = repo().join("target/e2e-screenshots");
    let run = tokio::process::Command::new("node")
        .arg(repo().join("tests/e2e").join(script))
        .current_dir(repo().join("tests/e2e"))
        .env("SWITCHBOARD_URL", &base)
        .env("E2E_SCREENSHOT_DIR", &shots)
        .env("E2E_IDLE_SECS", idle_secs.to_string())
        .kill_on_drop(true)
        .output();
    let limit = Duration::from_secs(idle_secs + 300);
    let out = tokio::time::timeout(limit, run)
        .await
        .unwrap_or_else(|_| panic!("node {script} did not finish within {limit:?}"))
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "node tests/e2e/{script} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
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
        joins >= min_joins,
        "expected the pages' joins to reach the LiveKit fake, saw {joins} participant_joined webhooks accepted by the server"
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
/// transfer).
#[actix_web::test]
async fn three_people_transfer_in_chromium_without_polling() {
    run_script("transfer.mjs", idle_secs(), 8).await;
}

/// A blocked microphone, the server unreachable at sign-in, the WebSocket cut and caught up
/// with `since=`, LiveKit unreachable on a move, the console on a phone-sized screen, and the
/// client side of the Twilio contract (`plane: "twilio"` moves).
#[actix_web::test]
async fn failures_show_clear_messages_in_chromium() {
    run_script("resilience.mjs", 0, 2).await;
}
