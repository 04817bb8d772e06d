//! The real binary's lifecycle: JSON logs with a span per call that never contain a secret,
//! and a graceful shutdown on SIGTERM that tells WebSocket clients to reconnect (1012).

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::hostile::close_of;
use crate::support::app::{server_env, TestApp, TestOptions};
use crate::support::livekit::{FakeLiveKit, FakeOptions};

/// Secrets the server is given; none may appear in its logs.
const API_KEY: &str = "mgmt-key-SECRET-7f3a9c1e5b";
const SESSION_SECRET: &str = "session-secret-SECRET-0123456789abcdef0123456789";

struct Proc {
    child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the binary with JSON logs at debug level written to `log`.
async fn start(env: &HashMap<String, String>, port: u16, log: &std::path::Path) -> Proc {
    let file = std::fs::File::create(log).unwrap();
    let proc = Proc {
        child: Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("serve")
            .envs(env)
            .env("SWITCHBOARD_LOG_FORMAT", "json")
            .env("RUST_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(file)
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
                return proc;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "switchboard did not come up on port {port}:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

#[actix_web::test]
async fn json_logs_carry_the_call_and_no_secret_and_sigterm_closes_sockets_with_1012() {
    let livekit = Arc::new(FakeLiveKit::start(FakeOptions::default()));
    let data_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let opts = TestOptions {
        api_key: Some(API_KEY.into()),
        ..Default::default()
    };
    let mut env = server_env(
        &opts,
        &livekit,
        data_dir.path(),
        &format!("127.0.0.1:{port}"),
    );
    env.insert("SWITCHBOARD_SESSION_SECRET".into(), SESSION_SECRET.into());
    let address = format!("http://127.0.0.1:{port}");
    livekit.set_webhook_url(Some(format!("{address}/livekit/webhook")));
    let log = data_dir.path().join("server.log");
    let mut server = start(&env, port, &log).await;
    let app = TestApp {
        address,
        port,
        livekit: livekit.clone(),
        twilio: None,
        http: crate::support::app::http_client(),
        data_dir: tempfile::tempdir().unwrap(),
        api_key: Some(API_KEY.into()),
        store: None,
    };

    // A call taken by an agent, a hold and a resume: steps with effects, in the call's span.
    let alice = app.agent("alice").await;
    let mut owner = app.connect("alice", &alice, None).await;
    let created = app.create_call(Some("alice")).await;
    let call_id = created["call"]["callId"].as_str().unwrap().to_string();
    let caller_token = created["callerToken"].as_str().unwrap().to_string();
    owner.expect("call.offered").await;
    let r = app
        .post(
            &format!("/api/calls/{call_id}/accept"),
            Some(&alice),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = app
        .post(
            &format!("/api/calls/{call_id}/hold"),
            Some(&alice),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // A raw socket to watch the close code.
    let (_, mut ws) = awc::Client::new()
        .ws(format!("ws://127.0.0.1:{port}/ws?token={caller_token}"))
        .connect()
        .await
        .expect("caller socket");
    let ready = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("session.ready in time");
    assert!(matches!(ready, Some(Ok(awc::ws::Frame::Text(_)))));

    // SIGTERM: the socket is told to reconnect, the process exits cleanly.
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let (code, reason) = close_of(&mut ws, Duration::from_secs(5)).await;
    assert_eq!(code, 1012, "{reason}");
    assert_eq!(reason, switchboard::shutdown::RESTART_CLOSE_REASON);
    drop(ws);
    owner.close();
    let mut exited = None;
    for _ in 0..300 {
        if let Some(s) = server.child.try_wait().unwrap() {
            exited = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let exited = exited.expect("the server exits within 15 s of SIGTERM");
    assert!(exited.success(), "exit status {exited:?}");
    let refused = app.http.get(format!("{}/health", app.address)).send().await;
    assert!(refused.is_err(), "nothing listens after shutdown");

    let text = std::fs::read_to_string(&log).unwrap();
    for secret in [
        API_KEY,
        SESSION_SECRET,
        &livekit.api_secret(),
        &alice,
        &caller_token,
    ] {
        assert!(
            !text.contains(secret),
            "a secret ({}...) appears in the logs",
            &secret[..8]
        );
    }
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let in_call = lines
        .iter()
        .filter(|l| l["span"]["callId"] == call_id.as_str())
        .count();
    assert!(
        in_call >= 2,
        "log lines in the call's span: {in_call}\n{text}"
    );
    assert!(
        lines.iter().any(|l| l["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("shutting down"))),
        "the shutdown is logged"
    );
}
