//! The embedded store's tests: the conformance suite, group commit, durability across
//! reopening and `kill -9`, and corrupt values.

use super::*;
use crate::store::conformance;
use crate::store::prelude::*;
use crate::store::CallCommit;

/// A store in a fresh temporary directory, with the directory kept alive alongside.
async fn temp_store() -> (EmbeddedStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    let store = EmbeddedStore::open(dir.path()).expect("opening the embedded store");
    (store, dir)
}

crate::store_conformance_tests!(temp_store());

/// The suite makes no assumption of an empty store: two full runs at once on one store
/// (as on a shared DynamoDB table) pass too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_suite_twice_concurrently_on_one_store() {
    let (store, _dir) = temp_store().await;
    tokio::join!(conformance::run_all(&store), conformance::run_all(&store));
}

/// Many commits at once share transactions (group commit), yet each is answered on its
/// own: every new call lands, a repeated create in the same burst fails alone with
/// `AlreadyExists`, and all of it is there after the file is reopened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_answers_each_commit_on_its_own() {
    use crate::store::conformance::fixtures;
    let (store, dir) = temp_store().await;
    let calls: Vec<_> = (0..300)
        .map(|i| fixtures::call(&format!("group-{i}")))
        .collect();
    let mut commits: Vec<_> = calls.iter().map(fixtures::create).collect();
    commits.insert(150, fixtures::create(&calls[10]));
    let results =
        futures_util::future::join_all(commits.into_iter().map(|c| store.commit_call(c))).await;
    let failed: Vec<_> = results.iter().filter(|r| r.is_err()).collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(matches!(failed[0], Err(StoreError::AlreadyExists { .. })));
    drop(store);
    let store = EmbeddedStore::open(dir.path()).unwrap();
    for c in &calls {
        let stored = store.get_call(&c.call_id).await.unwrap().expect("stored");
        assert_eq!(stored.version, 1);
    }
}

#[tokio::test]
async fn open_creates_directory_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("nested").join("data");
    let store = EmbeddedStore::open(&data_dir).unwrap();
    assert_eq!(store.path(), data_dir.join(DB_FILE_NAME));
    assert!(data_dir.join(DB_FILE_NAME).is_file());
    store.ping().await.unwrap();
}

#[tokio::test]
async fn second_open_of_same_file_is_a_backend_error() {
    let (_store, dir) = temp_store().await;
    match EmbeddedStore::open(dir.path()) {
        Err(StoreError::Backend { .. }) => {}
        other => panic!("expected a backend error, got {other:?}"),
    }
}

#[tokio::test]
async fn data_survives_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let agent = conformance::fixtures::agent("persist");
    let call = conformance::fixtures::call(&agent.agent_id);
    let transfer = conformance::fixtures::transfer(&call.call_id, &agent.agent_id, "agent-x");
    let event = conformance::fixtures::event(&call.call_id, 1);
    {
        let store = EmbeddedStore::open(dir.path()).unwrap();
        store.create_agent(&agent).await.unwrap();
        let v = store
            .commit_call(CallCommit {
                call: call.clone(),
                state: serde_json::json!({"phase": "queued"}),
                expected_version: None,
                transfers: vec![transfer.clone()],
                events: vec![event.clone()],
                open: !call.status.is_terminal(),
            })
            .await
            .unwrap();
        assert_eq!(v, 1);
    }
    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(
        store
            .get_agent(&agent.agent_id)
            .await
            .unwrap()
            .unwrap()
            .version,
        1
    );
    let stored = store.get_call(&call.call_id).await.unwrap().unwrap();
    assert_eq!(stored.call, call);
    assert_eq!(stored.state, serde_json::json!({"phase": "queued"}));
    assert_eq!(stored.version, 1);
    assert_eq!(
        store.get_transfer(&transfer.transfer_id).await.unwrap(),
        Some(transfer.clone())
    );
    assert_eq!(
        store.events_since(&call.call_id, 0).await.unwrap(),
        vec![event]
    );
    let by_agent = store.list_calls_by_agent("agent-x").await.unwrap();
    assert_eq!(by_agent, vec![call.clone()]);
    let unfinished = store.list_unfinished_calls().await.unwrap();
    assert_eq!(unfinished.len(), 1);
    assert_eq!(unfinished[0].call.call_id, call.call_id);
}

/// Set in the child process of [`committed_write_survives_kill_9`] to the data directory.
const KILL_CHILD_ENV: &str = "SWITCHBOARD_STORE_KILL9_CHILD_DIR";
/// The call the child commits before it is killed.
const KILL_CALL_ID: &str = "call-kill9";

/// Runs this test binary again as a child that commits a call, reports it, and waits to
/// be killed with SIGKILL; the parent then reopens the file and finds the commit.
#[tokio::test]
async fn committed_write_survives_kill_9() {
    use std::io::BufRead;

    if let Ok(dir) = std::env::var(KILL_CHILD_ENV) {
        // Child: commit, say so, then hang until killed (or give up after a minute).
        let store = EmbeddedStore::open(Path::new(&dir)).unwrap();
        let mut call = conformance::fixtures::call("agent-kill9");
        call.call_id = KILL_CALL_ID.into();
        let mut commit = conformance::fixtures::create(&call);
        commit.events = vec![conformance::fixtures::event(KILL_CALL_ID, 1)];
        store.commit_call(commit).await.unwrap();
        println!("KILL9-COMMITTED");
        std::thread::sleep(std::time::Duration::from_secs(60));
        return;
    }

    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut child = std::process::Command::new(exe)
        .args([
            "store::embedded::tests::committed_write_survives_kill_9",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(KILL_CHILD_ENV, dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let committed = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|line| line.contains("KILL9-COMMITTED"))
    })
    .await
    .unwrap();
    child.kill().unwrap(); // SIGKILL on Unix: no destructor, no flush
    child.wait().unwrap();
    assert!(committed, "the child process did not commit");

    let store = EmbeddedStore::open(dir.path()).unwrap();
    let stored = store.get_call(KILL_CALL_ID).await.unwrap().unwrap();
    assert_eq!(stored.version, 1);
    assert_eq!(store.events_since(KILL_CALL_ID, 0).await.unwrap().len(), 1);
    assert_eq!(store.list_unfinished_calls().await.unwrap().len(), 1);
}

/// Overwrites a stored record with bytes that are not JSON.
fn corrupt(store: &EmbeddedStore, def: RecordTable, id: &str) {
    let txn = store.db.begin_write().unwrap();
    {
        let mut table = txn.open_table(def).unwrap();
        table.insert(id, b"\xffnot json".as_slice()).unwrap();
    }
    txn.commit().unwrap();
}

fn assert_backend<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    match result {
        Err(StoreError::Backend { context, .. }) => {
            assert!(context.contains("decoding"), "unexpected context {context}")
        }
        other => panic!("expected a backend error, got {other:?}"),
    }
}

#[tokio::test]
async fn corrupt_values_are_backend_errors_not_panics() {
    let (store, _dir) = temp_store().await;
    let agent = conformance::fixtures::agent("corrupt");
    store.create_agent(&agent).await.unwrap();
    let call = conformance::fixtures::call(&agent.agent_id);
    store
        .commit_call(CallCommit {
            call: call.clone(),
            state: Value::Null,
            expected_version: None,
            transfers: vec![],
            events: vec![],
            open: !call.status.is_terminal(),
        })
        .await
        .unwrap();

    corrupt(&store, AGENTS, &agent.agent_id);
    assert_backend(store.get_agent(&agent.agent_id).await);
    assert_backend(store.list_agents().await);
    let mut update = agent.clone();
    update.version = 1;
    assert_backend(store.update_agent(&update).await);

    corrupt(&store, CALLS, &call.call_id);
    assert_backend(store.get_call(&call.call_id).await);
    assert_backend(store.list_calls_by_agent(&agent.agent_id).await);
    assert_backend(store.list_unfinished_calls().await);
    assert_backend(
        store
            .commit_call(CallCommit {
                open: !call.status.is_terminal(),
                call,
                state: Value::Null,
                expected_version: Some(1),
                transfers: vec![],
                events: vec![],
            })
            .await,
    );
    // The store still answers.
    store.ping().await.unwrap();
}
