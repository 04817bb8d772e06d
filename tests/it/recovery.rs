//! The real binary killed with SIGKILL mid-transfer and restarted: every unfinished call
//! comes back from the store with its deadlines, clients catch up with `since=`, and the
//! transfer finishes. Also: the binary refuses to listen publicly without a key.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::flows::{active_call, call_until, initiate, placed};
use crate::support::app::{server_env, TestApp, TestOptions, TestStore};
use crate::support::livekit::{FakeLiveKit, FakeOptions};

struct Server {
    child: Child,
}

impl Server {
    async fn start(env: &std::collections::HashMap<String, String>, port: u16) -> Server {
        // Owned at once, so the process is killed and reaped on every path (Drop).
        let server = Server {
            child: Command::new(env!("CARGO_BIN_EXE_switchboard"))
                .arg("serve")
                .envs(env)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("switchboard binary starts"),
        };
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

    fn kill9(&mut self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-9", &pid])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn process_app(opts: TestOptions) -> (TestApp, std::collections::HashMap<String, String>) {
    let livekit = Arc::new(FakeLiveKit::start(FakeOptions::default()));
    let data_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let env = server_env(
        &opts,
        &livekit,
        data_dir.path(),
        &format!("127.0.0.1:{port}"),
    );
    let address = format!("http://127.0.0.1:{port}");
    livekit.set_webhook_url(Some(format!("{address}/livekit/webhook")));
    let store: Option<Arc<dyn switchboard::store::Store>> = match &opts.store {
        TestStore::Embedded => None,
        TestStore::DynamoDb { prefix } => {
            Some(Arc::new(crate::support::dynamo::store(prefix).await))
        }
    };
    (
        TestApp {
            address,
            port,
            livekit,
            twilio: None,
            http: crate::support::app::http_client(),
            data_dir,
            api_key: None,
            store,
        },
        env,
    )
}

#[actix_web::test]
async fn a_transfer_survives_kill_9_and_finishes_after_restart() {
    transfer_survives_kill_9(TestStore::Embedded).await;
}

/// The same on DynamoDB: recovery finds the call through the `OpenCalls` table, and the
/// restarted server re-runs `init-tables` (`SWITCHBOARD_INIT_TABLES=true`) harmlessly.
#[actix_web::test]
async fn a_transfer_survives_kill_9_and_finishes_after_restart_on_dynamodb() {
    let prefix = crate::support::dynamo::fresh_prefix();
    transfer_survives_kill_9(TestStore::DynamoDb { prefix }).await;
}

async fn transfer_survives_kill_9(store: TestStore) {
    let (app, env) = process_app(TestOptions {
        disconnect_grace: 5.0,
        store,
        ..Default::default()
    })
    .await;
    let mut server = Server::start(&env, app.port).await;
    let mut c = active_call(&app, "alice").await;
    let bob_token = app.agent("bob").await;
    let mut bob = app.connect("bob", &bob_token, None).await;
    let t = initiate(&app, &c, "bob", "warm").await;
    let id = t["transferId"].as_str().unwrap().to_string();
    c.caller.follow_move().await;
    c.owner.follow_move().await;
    bob.expect("transfer.offered").await;
    let seq_before = call_until(&app, &c.call_id, "caller held", |b| {
        placed(b, "caller") == Some(("hold".into(), true))
    })
    .await["seq"]
        .as_u64()
        .unwrap();

    server.kill9();
    let mut server = Server::start(&env, app.port).await;

    // Everyone reconnects; B accepts after the restart.
    let caller_token = c.caller.token.clone();
    let mut caller = app
        .connect("caller", &caller_token, Some(&seq_before.to_string()))
        .await;
    let mut alice = app.connect("alice", &c.owner_token, None).await;
    let mut bob = app.connect("bob", &bob_token, None).await;
    let r = app
        .post(
            &format!("/api/transfers/{id}/accept"),
            Some(&bob_token),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "briefing");
    bob.follow_move().await;
    alice.expect("transfer.briefing").await;
    let r = app
        .post(
            &format!("/api/transfers/{id}/complete"),
            Some(&c.owner_token),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "completed");
    caller.room = c.caller.room.take();
    caller.identity = c.caller.identity.clone();
    caller.follow_move().await;
    bob.follow_move().await;
    let call = call_until(&app, &c.call_id, "caller with bob after restart", |b| {
        placed(b, "caller") == Some(("main".into(), true))
            && placed(b, "bob") == Some(("main".into(), true))
    })
    .await;
    assert_eq!(call["ownerId"], "bob");
    // The caller's replayed and live events follow on from what it had, without gaps.
    let seqs: Vec<u64> = caller
        .seen
        .iter()
        .filter_map(|f| f["seq"].as_u64())
        .filter(|s| *s > 0)
        .collect();
    assert!(seqs.first().is_some_and(|s| *s > seq_before), "{seqs:?}");
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    server.kill9();
    if let Some(store) = &app.store {
        // What the store kept: the call with bob, the transfer completed, and every event
        // numbered 1..n without a gap across the crash.
        let stored = store
            .get_call(&c.call_id)
            .await
            .unwrap()
            .expect("call stored");
        assert_eq!(stored.call.owner_id.as_deref(), Some("bob"));
        let t = store
            .get_transfer(&id)
            .await
            .unwrap()
            .expect("transfer stored");
        assert_eq!(t.status.as_str(), "completed");
        let events = store.events_since(&c.call_id, 0).await.unwrap();
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    }
}

#[actix_web::test]
async fn deadlines_are_re_armed_after_kill_9() {
    let (app, env) = process_app(TestOptions {
        ring_timeout: 3.0,
        disconnect_grace: 10.0,
        ..Default::default()
    })
    .await;
    let mut server = Server::start(&env, app.port).await;
    let mut c = active_call(&app, "alice").await;
    let bob_token = app.agent("bob").await;
    let mut bob = app.connect("bob", &bob_token, None).await;
    let t = initiate(&app, &c, "bob", "warm").await;
    let id = t["transferId"].as_str().unwrap().to_string();
    c.caller.follow_move().await;
    bob.expect("transfer.offered").await;
    server.kill9();
    let mut server = Server::start(&env, app.port).await;
    let _alice = app.connect("alice", &c.owner_token, None).await;
    let _bob = app.connect("bob", &bob_token, None).await;
    // Nobody answers: the ring deadline, armed before the crash, still fires.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let t = app.get(&format!("/api/transfers/{id}"), None).await.body;
        if t["status"] == "timed_out" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "transfer never timed out: {t}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let call = call_until(&app, &c.call_id, "caller back with alice", |b| {
        placed(b, "caller").map(|p| p.0) == Some("main".into()) && b["status"] == "active"
    })
    .await;
    assert_eq!(call["ownerId"], "alice");
    server.kill9();
}

#[test]
fn refuses_a_public_address_without_a_management_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("serve")
        .env("SWITCHBOARD_ADDR", "0.0.0.0:0")
        .env("SWITCHBOARD_DATA_DIR", dir.path())
        .env_remove("SWITCHBOARD_API_KEY")
        .current_dir(dir.path())
        .output()
        .expect("binary runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SWITCHBOARD_API_KEY"), "{err}");
}
