//! The DynamoDB backend end to end, on the local server (moto, started by `scripts/test.sh`):
//! the full warm transfer through the real HTTP and WebSocket API, then an independent
//! reader (boto3) checks that the items are in the classic six-table layout (Calls,
//! Transcripts, Summaries, Transfers, Agents, Rooms) with its attributes; an agent written
//! the classic way (no version) by boto3 is served and updated by the switchboard; and
//! `switchboard init-tables` as an operator runs it.

use std::process::{Command, Stdio};

use serde_json::json;

use crate::flows::warm_transfer_flow;
use crate::support::app::{spawn_app_with, TestOptions, TestStore};
use crate::support::dynamo::{endpoint, fresh_prefix, server_env};

/// Runs `tests/py/dynamo_check.py`; fails the test with a clear message if python3 or boto3
/// is missing, or if a check fails.
fn boto3_check(args: &[&str]) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/dynamo_check.py");
    let out = Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "python3 is required for the boto3 cross-check and could not be run ({e}); \
                 install Python 3 and `python3 -m pip install -r tests/py/requirements.txt`"
            )
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("dynamo_check.py printed no JSON ({e}): {stdout}")),
        Some(2) => panic!(
            "tests/py/dynamo_check.py could not run (missing boto3? run \
             `python3 -m pip install -r tests/py/requirements.txt`): {stderr}"
        ),
        _ => panic!("the boto3 check failed: {stderr}"),
    }
}

#[actix_web::test]
async fn warm_transfer_end_to_end_on_dynamodb_in_the_classic_tables() {
    let prefix = fresh_prefix();
    let app = spawn_app_with(TestOptions {
        store: TestStore::DynamoDb {
            prefix: prefix.clone(),
        },
        ..Default::default()
    })
    .await;
    let r = app.get("/health", None).await;
    assert_eq!(r.body["store"], "ok", "{:?}", r.body);

    let done = warm_transfer_flow(&app).await;

    let summary = boto3_check(&[
        "check-flow",
        &endpoint(),
        &prefix,
        &done.call_id,
        &done.transfer_id,
        "alice",
        "bob",
    ]);
    assert_eq!(summary["call"], done.call_id.as_str());
    assert_eq!(
        summary["transfers"], 2,
        "the completed one and the one back to alice"
    );

    // An agent written the classic way (four attributes, no version) is served and updated by the switchboard.
    boto3_check(&["put-seed-agent", &endpoint(), &prefix, "carol", "Carol"]);
    let r = app.get("/api/agents/carol", None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["name"], "Carol");
    assert_eq!(r.body["active"], true);
    let r = app
        .request(
            "PATCH",
            "/api/agents/carol",
            None,
            Some(json!({"name": "Carol Renamed"})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let after = boto3_check(&[
        "check-agent",
        &endpoint(),
        &prefix,
        "carol",
        "Carol Renamed",
    ]);
    assert_eq!(after["version"], 1, "the item got its first version");
}

/// `switchboard init-tables` creates everything, says so, and a second run changes nothing;
/// with the embedded store it refuses, saying why.
#[test]
fn init_tables_command_is_idempotent() {
    let prefix = fresh_prefix();
    let run = || {
        let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("init-tables")
            .envs(server_env(&prefix))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .expect("switchboard runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = run();
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    for table in [
        "Calls",
        "Transcripts",
        "Summaries",
        "Transfers",
        "Agents",
        "Rooms",
    ] {
        assert!(
            stdout.contains(&format!("{prefix}{table}: created")),
            "{stdout}"
        );
    }
    assert!(stdout.contains("ACTIVE"), "{stdout}");
    let (code, stdout, stderr) = run();
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(!stdout.contains("created"), "{stdout}");
    assert_eq!(
        stdout.matches(": exists").count(),
        switchboard::store::dynamo::tables::TABLE_COUNT,
        "{stdout}"
    );

    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("init-tables")
        .env("SWITCHBOARD_STORE", "embedded")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SWITCHBOARD_STORE=dynamodb"));
}

/// Without `SWITCHBOARD_INIT_TABLES`, a server whose tables are missing refuses to start and
/// names what is missing and how to create it.
#[test]
fn the_server_refuses_to_start_without_its_tables() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("serve")
        .envs(server_env(&fresh_prefix()))
        .env("SWITCHBOARD_INIT_TABLES", "false")
        .env("SWITCHBOARD_ADDR", "127.0.0.1:0")
        .env("SWITCHBOARD_DATA_DIR", dir.path())
        .env("RUST_LOG", "warn")
        .current_dir(dir.path())
        .output()
        .expect("switchboard runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Calls does not exist"), "{err}");
    assert!(err.contains("switchboard init-tables"), "{err}");
}
