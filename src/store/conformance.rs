//! The conformance suite every `Store` backend must pass, unchanged.
//!
//! Each check is a `pub async fn check(store: &dyn Store)` that panics (with a message) when
//! the backend misbehaves. Checks use fresh uuid-based ids and only look at their own
//! records, so they can run concurrently against one shared backend (a DynamoDB table) and
//! never assume the store is empty.
//!
//! A backend runs the whole suite with [`store_conformance_tests!`](crate::store_conformance_tests),
//! which expands to one `#[tokio::test]` per check so that a failure names the behaviour:
//!
//! ```ignore
//! #[cfg(test)]
//! mod tests {
//!     async fn temp_store() -> (EmbeddedStore, tempfile::TempDir) {
//!         let dir = tempfile::tempdir().unwrap();
//!         let store = EmbeddedStore::open(dir.path()).unwrap();
//!         (store, dir) // the guard (here the temp dir) lives as long as the test
//!     }
//!     crate::store_conformance_tests!(temp_store());
//! }
//! ```

use std::collections::HashSet;

use serde_json::json;

use super::{CallCommit, Store, StoreError};
use crate::model::{CallStatus, TransferStatus};

/// Expands to one `#[tokio::test]` per conformance check, run against a fresh store.
///
/// The argument is an expression that evaluates to a future (typically a call of an
/// `async fn`) yielding `(store, guard)`: `store` is any sized type implementing
/// [`Store`](crate::store::Store), and `guard` is kept alive until the check ends (a
/// `tempfile::TempDir`, a client handle, or `()`). The expression is evaluated anew for
/// every test. Outer attributes given before the expression (such as
/// `#[ignore = "needs DynamoDB"]`) are put on every generated test.
///
/// ```ignore
/// crate::store_conformance_tests!(temp_store());
/// crate::store_conformance_tests!(#[ignore = "needs DynamoDB Local"] dynamo_store());
/// ```
#[macro_export]
macro_rules! store_conformance_tests {
    (@each [$($attrs:tt)*] $factory:expr; $check:ident, $($rest:ident,)*) => {
        $($attrs)*
        #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $check() {
            let (store, _guard) = $factory.await;
            $crate::store::conformance::$check(&store).await;
        }
        $crate::store_conformance_tests!(@each [$($attrs)*] $factory; $($rest,)*);
    };
    (@each [$($attrs:tt)*] $factory:expr;) => {};
    ($(#[$meta:meta])* $factory:expr $(,)?) => {
        $crate::store_conformance_tests!(@each [$(#[$meta])*] $factory;
            ping_answers,
            agent_create_get_update,
            agent_create_twice_is_already_exists,
            agent_stale_update_is_version_conflict,
            agent_update_of_missing_is_not_found,
            agent_list_orders_by_created_at_then_id,
            agent_concurrent_updates_one_wins,
            call_create_starts_at_version_one,
            call_update_bumps_version,
            call_stale_update_is_version_conflict,
            call_double_create_is_already_exists,
            call_update_of_missing_is_not_found,
            commit_with_duplicate_event_changes_nothing,
            create_with_duplicate_event_creates_nothing,
            events_since_orders_and_filters,
            calls_by_agent_cover_every_role,
            calls_by_agent_newest_first,
            unfinished_calls_exclude_ended_oldest_first,
            transfers_by_call_and_status,
            transcripts_by_call_in_order,
            summaries_by_call_in_order,
            structured_summaries_round_trip,
            rooms_by_id_and_name_replace,
            concurrent_commits_one_wins,
            concurrent_creates_one_wins,
            unknown_ids_are_none_or_empty,
            finished_calls_left_open_stay_unfinished,
            // Organisations (src/org.rs).
            org_api_keys_create_get_list_revoke,
            org_assistants_versioned_by_org,
            org_sip_trunks_by_org,
            webhook_delivery_is_created_once,
            webhook_delivery_updates_are_conditional,
            webhook_deliveries_by_call_and_pending,
        );
    };
}

/// Runs every check in sequence against one store (for a quick smoke run of a backend).
pub async fn run_all(store: &dyn Store) {
    webhook_delivery_is_created_once(store).await;
    webhook_delivery_updates_are_conditional(store).await;
    webhook_deliveries_by_call_and_pending(store).await;
    ping_answers(store).await;
    agent_create_get_update(store).await;
    agent_create_twice_is_already_exists(store).await;
    agent_stale_update_is_version_conflict(store).await;
    agent_update_of_missing_is_not_found(store).await;
    agent_list_orders_by_created_at_then_id(store).await;
    agent_concurrent_updates_one_wins(store).await;
    call_create_starts_at_version_one(store).await;
    call_update_bumps_version(store).await;
    call_stale_update_is_version_conflict(store).await;
    call_double_create_is_already_exists(store).await;
    call_update_of_missing_is_not_found(store).await;
    commit_with_duplicate_event_changes_nothing(store).await;
    create_with_duplicate_event_creates_nothing(store).await;
    events_since_orders_and_filters(store).await;
    calls_by_agent_cover_every_role(store).await;
    calls_by_agent_newest_first(store).await;
    unfinished_calls_exclude_ended_oldest_first(store).await;
    transfers_by_call_and_status(store).await;
    transcripts_by_call_in_order(store).await;
    summaries_by_call_in_order(store).await;
    structured_summaries_round_trip(store).await;
    rooms_by_id_and_name_replace(store).await;
    concurrent_commits_one_wins(store).await;
    concurrent_creates_one_wins(store).await;
    unknown_ids_are_none_or_empty(store).await;
    finished_calls_left_open_stay_unfinished(store).await;
    org_api_keys_create_get_list_revoke(store).await;
    org_assistants_versioned_by_org(store).await;
    org_sip_trunks_by_org(store).await;
}

/// Record builders with fresh unique ids, for the checks and for backend-specific tests.
pub mod fixtures {
    use chrono::{DateTime, Duration, Utc};
    use serde_json::{json, Value};

    use crate::model::{
        new_id, Agent, AgentKind, AgentStatus, Audience, Call, CallStatus, Event, Room, Summary,
        Transcript, TranscriptSource, Transfer, TransferMode, TransferStatus,
    };
    use crate::store::CallCommit;

    /// A fixed instant (with sub-millisecond precision, which backends must keep) plus
    /// `offset_ms` milliseconds.
    pub fn at(offset_ms: i64) -> DateTime<Utc> {
        let base = DateTime::<Utc>::from_timestamp(1_750_000_000, 123_456_789).unwrap_or_default();
        base + Duration::milliseconds(offset_ms)
    }

    /// An active web agent with a fresh id (`agent-<label>-<uuid>`), version 0.
    pub fn agent(label: &str) -> Agent {
        Agent {
            agent_id: new_id(&format!("agent-{label}")),
            name: format!("Agent {label}"),
            active: true,
            kind: AgentKind::Web,
            phone_number: None,
            status: AgentStatus::Available,
            created_at: at(0),
            version: 0,
        }
    }

    /// An active call owned by `owner` (also its `agentAId`), with a fresh id.
    pub fn call(owner: &str) -> Call {
        let call_id = new_id("call");
        Call {
            caller_id: format!("caller-{call_id}"),
            caller_name: "Ada Caller".into(),
            reason: "billing question".into(),
            agent_a_id: Some(owner.to_owned()),
            agent_b_id: None,
            owner_id: Some(owner.to_owned()),
            offered_to: None,
            requested_agent_id: None,
            status: CallStatus::Active,
            main_room: format!("main-{call_id}"),
            hold_room: format!("hold-{call_id}"),
            open_transfer_id: None,
            last_summary_id: None,
            end_reason: None,
            created_at: at(0),
            end_at: None,
            metadata: Value::Null,
            channel: Default::default(),
            caller_number: None,
            org_id: None,
            direction: Default::default(),
            assistant_id: None,
            outbound: None,
            recording: None,
            call_id,
        }
    }

    /// A queued call that involves no agent, with a fresh id.
    pub fn queued_call() -> Call {
        Call {
            agent_a_id: None,
            owner_id: None,
            status: CallStatus::Queued,
            ..call("nobody")
        }
    }

    /// A warm transfer of `call_id` from `from` to `to`, `initiated`, with a fresh id.
    pub fn transfer(call_id: &str, from: &str, to: &str) -> Transfer {
        let transfer_id = new_id("xfer");
        Transfer {
            call_id: call_id.to_owned(),
            from_agent_id: from.to_owned(),
            to_agent_id: to.to_owned(),
            transfer_room: format!("consult-{transfer_id}"),
            summary_id: None,
            summary_text: String::new(),
            note: None,
            mode: TransferMode::Warm,
            status: TransferStatus::Initiated,
            reason: None,
            created_at: at(0),
            updated_at: at(0),
            ended_at: None,
            transfer_id,
        }
    }

    /// Event `seq` of `call_id`, addressed to the caller and one agent.
    pub fn event(call_id: &str, seq: u64) -> Event {
        Event {
            seq,
            call_id: call_id.to_owned(),
            kind: "call.updated".into(),
            at: at(seq as i64),
            data: json!({"seq": seq, "nested": {"list": [1, 2, 3]}}),
            audience: Audience {
                caller: true,
                agents: vec![format!("agent-for-{seq}")],
            },
        }
    }

    /// A transcript chunk of `call_id` with a fresh id, stored at `at(offset_ms)`.
    pub fn transcript(call_id: &str, offset_ms: i64) -> Transcript {
        Transcript {
            transcript_id: new_id("tx"),
            call_id: call_id.to_owned(),
            speaker: "caller".into(),
            text: format!("chunk at {offset_ms}"),
            source: TranscriptSource::Manual,
            created_at: at(offset_ms),
        }
    }

    /// A summary of `call_id` with a fresh id, stored at `at(offset_ms)`.
    pub fn summary(call_id: &str, offset_ms: i64) -> Summary {
        Summary {
            summary_id: new_id("sum"),
            call_id: call_id.to_owned(),
            summary_text: format!("summary at {offset_ms}"),
            model: "offline-extractive".into(),
            created_at: at(offset_ms),
            ..Summary::default()
        }
    }

    /// An open main room with a fresh id and name.
    pub fn room() -> Room {
        let room_id = new_id("room");
        Room {
            room_name: format!("name-{room_id}"),
            owner_id: new_id("agent"),
            call_id: Some(new_id("call")),
            kind: "main".into(),
            status: "open".into(),
            created_at: at(0),
            room_id,
        }
    }

    /// A commit that creates `call` with no transfers and no events.
    pub fn create(call: &Call) -> CallCommit {
        CallCommit {
            call: call.clone(),
            state: json!({"phase": "created"}),
            expected_version: None,
            transfers: vec![],
            events: vec![],
            open: !call.status.is_terminal(),
        }
    }

    /// A commit that updates `call` from `version`, with no transfers and no events.
    pub fn update(call: &Call, version: u64) -> CallCommit {
        CallCommit {
            call: call.clone(),
            state: json!({"phase": "updated", "from": version}),
            expected_version: Some(version),
            transfers: vec![],
            events: vec![],
            open: !call.status.is_terminal(),
        }
    }
}

use fixtures::{at, create, update};

/// The ids of `items` (by `id`) that are in `ours`, in the order the store returned them.
fn only_ours<T>(items: &[T], ours: &[&str], id: impl Fn(&T) -> &str) -> Vec<String> {
    items
        .iter()
        .map(&id)
        .filter(|i| ours.contains(i))
        .map(str::to_owned)
        .collect()
}

/// Converts a list of `&str` to owned strings (for comparisons).
fn owned(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

/// `ping` answers `Ok`.
pub async fn ping_answers(store: &dyn Store) {
    store.ping().await.expect("ping");
}

/// An agent is created with version 1, read back unchanged, and an update replaces it and
/// bumps the version.
pub async fn agent_create_get_update(store: &dyn Store) {
    let mut agent = fixtures::agent("cgu");
    agent.version = 42; // ignored on create
    agent.phone_number = Some("+15550100".into());
    let created = store.create_agent(&agent).await.expect("create_agent");
    assert_eq!(created.version, 1, "a created agent has version 1");
    assert_eq!(created.agent_id, agent.agent_id);
    let got = store.get_agent(&agent.agent_id).await.expect("get_agent");
    assert_eq!(
        got.as_ref(),
        Some(&created),
        "get_agent returns what was created"
    );

    let mut changed = created.clone();
    changed.name = "Renamed".into();
    changed.active = false;
    changed.status = crate::model::AgentStatus::Away;
    let updated = store.update_agent(&changed).await.expect("update_agent");
    assert_eq!(updated.version, 2, "an update bumps the version");
    assert_eq!(updated.name, "Renamed");
    let got = store.get_agent(&agent.agent_id).await.expect("get_agent");
    assert_eq!(got, Some(updated.clone()), "get_agent returns the update");

    let again = store.update_agent(&updated).await.expect("second update");
    assert_eq!(again.version, 3);
}

/// Creating an agent whose id is taken is `AlreadyExists` and leaves the first one.
pub async fn agent_create_twice_is_already_exists(store: &dyn Store) {
    let agent = fixtures::agent("twice");
    store.create_agent(&agent).await.expect("create_agent");
    let mut other = agent.clone();
    other.name = "Impostor".into();
    match store.create_agent(&other).await {
        Err(StoreError::AlreadyExists { entity, id }) => {
            assert_eq!(entity, "agent");
            assert_eq!(id, agent.agent_id);
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    let got = store.get_agent(&agent.agent_id).await.unwrap().unwrap();
    assert_eq!(got.name, agent.name, "the first agent is unchanged");
}

/// Updating an agent from a stale version is `VersionConflict` and changes nothing.
pub async fn agent_stale_update_is_version_conflict(store: &dyn Store) {
    let created = store
        .create_agent(&fixtures::agent("stale"))
        .await
        .expect("create_agent");
    let mut first = created.clone();
    first.name = "First".into();
    let updated = store.update_agent(&first).await.expect("first update");
    let mut stale = created.clone();
    stale.name = "Stale".into();
    match store.update_agent(&stale).await {
        Err(StoreError::VersionConflict {
            entity,
            id,
            expected,
        }) => {
            assert_eq!(entity, "agent");
            assert_eq!(id, created.agent_id);
            assert_eq!(expected, 1);
        }
        other => panic!("expected VersionConflict, got {other:?}"),
    }
    let got = store.get_agent(&created.agent_id).await.unwrap();
    assert_eq!(got, Some(updated), "a conflicting update changes nothing");
}

/// Updating an agent that does not exist is `NotFound` and creates nothing.
pub async fn agent_update_of_missing_is_not_found(store: &dyn Store) {
    let mut agent = fixtures::agent("missing");
    agent.version = 1;
    match store.update_agent(&agent).await {
        Err(StoreError::NotFound { entity, id }) => {
            assert_eq!(entity, "agent");
            assert_eq!(id, agent.agent_id);
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert_eq!(store.get_agent(&agent.agent_id).await.unwrap(), None);
}

/// `list_agents` includes inactive agents, ordered by `createdAt` then id.
pub async fn agent_list_orders_by_created_at_then_id(store: &dyn Store) {
    let mut late = fixtures::agent("late");
    late.created_at = at(2_000);
    let mut early = fixtures::agent("early");
    early.created_at = at(-1_000);
    early.active = false;
    // Two agents created at the same instant are ordered by id.
    let mut tie_b = fixtures::agent("tie");
    let base = tie_b.agent_id.clone();
    tie_b.agent_id = format!("{base}-b");
    tie_b.created_at = at(500);
    let mut tie_a = tie_b.clone();
    tie_a.agent_id = format!("{base}-a");
    for a in [&late, &tie_b, &early, &tie_a] {
        store.create_agent(a).await.expect("create_agent");
    }
    let all = store.list_agents().await.expect("list_agents");
    let ours = [
        early.agent_id.as_str(),
        tie_a.agent_id.as_str(),
        tie_b.agent_id.as_str(),
        late.agent_id.as_str(),
    ];
    assert_eq!(only_ours(&all, &ours, |a| &a.agent_id), owned(&ours));
    let listed_early = all.iter().find(|a| a.agent_id == early.agent_id).unwrap();
    assert!(!listed_early.active, "inactive agents are listed too");
    assert_eq!(listed_early.version, 1);
}

/// Two concurrent updates of an agent from the same version: exactly one wins.
pub async fn agent_concurrent_updates_one_wins(store: &dyn Store) {
    let created = store
        .create_agent(&fixtures::agent("race"))
        .await
        .expect("create_agent");
    let mut a = created.clone();
    a.name = "A".into();
    let mut b = created.clone();
    b.name = "B".into();
    let (ra, rb) = tokio::join!(store.update_agent(&a), store.update_agent(&b));
    let (winner, loser) = match (ra, rb) {
        (Ok(w), Err(l)) => (w, l),
        (Err(l), Ok(w)) => (w, l),
        other => panic!("expected exactly one winner, got {other:?}"),
    };
    assert!(
        matches!(loser, StoreError::VersionConflict { expected: 1, .. }),
        "the loser gets VersionConflict, got {loser:?}"
    );
    assert_eq!(winner.version, 2);
    let got = store.get_agent(&created.agent_id).await.unwrap();
    assert_eq!(got, Some(winner));
}

/// Creating a call stores it with its state at version 1; every field round-trips.
pub async fn call_create_starts_at_version_one(store: &dyn Store) {
    let mut call = fixtures::call(&crate::model::new_id("agent"));
    call.agent_b_id = Some(crate::model::new_id("agent"));
    call.offered_to = Some(crate::model::new_id("agent"));
    call.requested_agent_id = Some(crate::model::new_id("agent"));
    call.open_transfer_id = Some(crate::model::new_id("xfer"));
    call.last_summary_id = Some(crate::model::new_id("sum"));
    call.metadata = json!({"crm": {"ticket": 42, "tags": ["vip", "en"]}, "empty": {}});
    call.end_reason = Some("none yet".into());
    call.end_at = Some(at(60_000));
    let state = json!({"machine": {"phase": "active", "timers": [1, 2]}, "n": 1.5});
    let version = store
        .commit_call(CallCommit {
            call: call.clone(),
            state: state.clone(),
            expected_version: None,
            transfers: vec![],
            events: vec![],
            open: !call.status.is_terminal(),
        })
        .await
        .expect("commit_call create");
    assert_eq!(version, 1, "a created call has version 1");
    let stored = store
        .get_call(&call.call_id)
        .await
        .expect("get_call")
        .expect("the created call is stored");
    assert_eq!(stored.call, call, "every field of the call round-trips");
    assert_eq!(stored.state, state, "the machine state round-trips");
    assert_eq!(stored.version, 1);
}

/// Updating a call from its current version stores the new call and state, version + 1.
pub async fn call_update_bumps_version(store: &dyn Store) {
    let mut call = fixtures::call(&crate::model::new_id("agent"));
    assert_eq!(store.commit_call(create(&call)).await.unwrap(), 1);
    call.status = CallStatus::OnHold;
    call.metadata = json!({"hold": true});
    let commit = update(&call, 1);
    let state = commit.state.clone();
    assert_eq!(store.commit_call(commit).await.expect("update 1"), 2);
    let stored = store.get_call(&call.call_id).await.unwrap().unwrap();
    assert_eq!(stored.version, 2);
    assert_eq!(stored.call, call);
    assert_eq!(stored.state, state);
    call.status = CallStatus::Active;
    assert_eq!(
        store.commit_call(update(&call, 2)).await.expect("update 2"),
        3
    );
    let stored = store.get_call(&call.call_id).await.unwrap().unwrap();
    assert_eq!(
        (stored.version, stored.call.status),
        (3, CallStatus::Active)
    );
}

/// Updating a call from a stale version is `VersionConflict` and changes nothing.
pub async fn call_stale_update_is_version_conflict(store: &dyn Store) {
    let mut call = fixtures::call(&crate::model::new_id("agent"));
    store.commit_call(create(&call)).await.unwrap();
    call.status = CallStatus::OnHold;
    store.commit_call(update(&call, 1)).await.unwrap();
    let before = store.get_call(&call.call_id).await.unwrap().unwrap();
    let mut stale = call.clone();
    stale.status = CallStatus::Ended;
    let mut commit = update(&stale, 1);
    commit.events = vec![fixtures::event(&call.call_id, 1)];
    match store.commit_call(commit).await {
        Err(StoreError::VersionConflict {
            entity,
            id,
            expected,
        }) => {
            assert_eq!(entity, "call");
            assert_eq!(id, call.call_id);
            assert_eq!(expected, 1);
        }
        other => panic!("expected VersionConflict, got {other:?}"),
    }
    let after = store.get_call(&call.call_id).await.unwrap().unwrap();
    assert_eq!(after, before, "a conflicting commit changes nothing");
    assert!(store
        .events_since(&call.call_id, 0)
        .await
        .unwrap()
        .is_empty());
    // A version from the future conflicts too.
    assert!(matches!(
        store.commit_call(update(&call, 7)).await,
        Err(StoreError::VersionConflict { expected: 7, .. })
    ));
}

/// Creating a call twice is `AlreadyExists` and leaves the first one.
pub async fn call_double_create_is_already_exists(store: &dyn Store) {
    let call = fixtures::call(&crate::model::new_id("agent"));
    store.commit_call(create(&call)).await.unwrap();
    let mut again = create(&call);
    again.call.reason = "second".into();
    match store.commit_call(again).await {
        Err(StoreError::AlreadyExists { entity, id }) => {
            assert_eq!(entity, "call");
            assert_eq!(id, call.call_id);
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    let stored = store.get_call(&call.call_id).await.unwrap().unwrap();
    assert_eq!((stored.version, stored.call), (1, call));
}

/// Updating a call that does not exist is `NotFound` and writes nothing.
pub async fn call_update_of_missing_is_not_found(store: &dyn Store) {
    let owner = crate::model::new_id("agent");
    let call = fixtures::call(&owner);
    let mut commit = update(&call, 1);
    commit.events = vec![fixtures::event(&call.call_id, 1)];
    match store.commit_call(commit).await {
        Err(StoreError::NotFound { entity, id }) => {
            assert_eq!(entity, "call");
            assert_eq!(id, call.call_id);
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert_eq!(store.get_call(&call.call_id).await.unwrap(), None);
    assert!(store
        .events_since(&call.call_id, 0)
        .await
        .unwrap()
        .is_empty());
    assert!(store.list_calls_by_agent(&owner).await.unwrap().is_empty());
}

/// A commit carrying an event whose `(callId, seq)` exists fails with `DuplicateEvent` and
/// lands nothing: neither the call, nor its transfers, nor any event, nor index entries.
pub async fn commit_with_duplicate_event_changes_nothing(store: &dyn Store) {
    let owner = crate::model::new_id("agent");
    let target = crate::model::new_id("agent");
    let newcomer = crate::model::new_id("agent");
    let call = fixtures::call(&owner);
    let t1 = fixtures::transfer(&call.call_id, &owner, &target);
    let e1 = fixtures::event(&call.call_id, 1);
    let mut first = create(&call);
    first.transfers = vec![t1.clone()];
    first.events = vec![e1.clone()];
    assert_eq!(store.commit_call(first).await.unwrap(), 1);
    let before = store.get_call(&call.call_id).await.unwrap().unwrap();

    let mut changed = call.clone();
    changed.status = CallStatus::Ended;
    changed.offered_to = Some(newcomer.clone());
    let mut t1_changed = t1.clone();
    t1_changed.status = TransferStatus::Ringing;
    t1_changed.updated_at = at(5_000);
    let t2 = fixtures::transfer(&call.call_id, &owner, &newcomer);
    let mut bad = update(&changed, 1);
    bad.transfers = vec![t1_changed, t2.clone()];
    bad.events = vec![
        fixtures::event(&call.call_id, 2),
        fixtures::event(&call.call_id, 1),
    ];
    match store.commit_call(bad).await {
        Err(StoreError::DuplicateEvent { call_id, seq }) => {
            assert_eq!(call_id, call.call_id);
            assert_eq!(seq, 1);
        }
        other => panic!("expected DuplicateEvent, got {other:?}"),
    }

    let after = store.get_call(&call.call_id).await.unwrap().unwrap();
    assert_eq!(after, before, "the call is unchanged");
    assert_eq!(
        store.get_transfer(&t1.transfer_id).await.unwrap(),
        Some(t1.clone()),
        "the existing transfer is unchanged"
    );
    assert_eq!(store.get_transfer(&t2.transfer_id).await.unwrap(), None);
    assert_eq!(
        store.list_transfers_by_call(&call.call_id).await.unwrap(),
        vec![t1.clone()]
    );
    let ringing = store
        .list_transfers(&[TransferStatus::Ringing])
        .await
        .unwrap();
    assert!(!ringing.iter().any(|t| t.call_id == call.call_id));
    assert_eq!(
        store.events_since(&call.call_id, 0).await.unwrap(),
        vec![e1],
        "no event of the failed commit landed"
    );
    assert!(store
        .list_calls_by_agent(&newcomer)
        .await
        .unwrap()
        .is_empty());
    let unfinished = store.list_unfinished_calls().await.unwrap();
    assert!(
        unfinished.iter().any(|c| c.call.call_id == call.call_id),
        "the call is still unfinished"
    );

    // The same commit without the duplicate lands whole.
    let mut good = update(&changed, 1);
    good.transfers = vec![t2.clone()];
    good.events = vec![fixtures::event(&call.call_id, 2)];
    assert_eq!(store.commit_call(good).await.unwrap(), 2);
    assert_eq!(store.events_since(&call.call_id, 0).await.unwrap().len(), 2);
    assert_eq!(store.list_calls_by_agent(&newcomer).await.unwrap().len(), 1);
}

/// A creating commit with two events of the same seq fails with `DuplicateEvent` and
/// creates nothing.
pub async fn create_with_duplicate_event_creates_nothing(store: &dyn Store) {
    let owner = crate::model::new_id("agent");
    let call = fixtures::call(&owner);
    let t = fixtures::transfer(&call.call_id, &owner, &crate::model::new_id("agent"));
    let mut commit = create(&call);
    commit.transfers = vec![t.clone()];
    commit.events = vec![
        fixtures::event(&call.call_id, 1),
        fixtures::event(&call.call_id, 1),
    ];
    assert!(matches!(
        store.commit_call(commit).await,
        Err(StoreError::DuplicateEvent { seq: 1, .. })
    ));
    assert_eq!(store.get_call(&call.call_id).await.unwrap(), None);
    assert_eq!(store.get_transfer(&t.transfer_id).await.unwrap(), None);
    assert!(store
        .events_since(&call.call_id, 0)
        .await
        .unwrap()
        .is_empty());
    assert!(store.list_calls_by_agent(&owner).await.unwrap().is_empty());
    assert!(!store
        .list_unfinished_calls()
        .await
        .unwrap()
        .iter()
        .any(|c| c.call.call_id == call.call_id));
    // The id is still free.
    assert_eq!(store.commit_call(create(&call)).await.unwrap(), 1);
}

/// `events_since` returns a call's events with `seq > after`, in seq order, with their
/// audience, data and time intact, and never another call's events.
pub async fn events_since_orders_and_filters(store: &dyn Store) {
    let call = fixtures::call(&crate::model::new_id("agent"));
    let other = fixtures::call(&crate::model::new_id("agent"));
    let e: Vec<_> = (1..=4).map(|s| fixtures::event(&call.call_id, s)).collect();
    let mut first = create(&call);
    first.events = vec![e[1].clone(), e[0].clone()]; // out of order within a commit
    store.commit_call(first).await.unwrap();
    let mut second = update(&call, 1);
    second.events = vec![e[2].clone()];
    store.commit_call(second).await.unwrap();
    let mut third = update(&call, 2);
    let mut custom = e[3].clone();
    custom.kind = "transfer.offered".into();
    custom.audience = crate::model::Audience {
        caller: false,
        agents: vec!["agent-x".into(), "agent-y".into()],
    };
    custom.data = json!({"transferId": "xfer-1", "note": null, "n": [true, 2.5, "s"]});
    third.events = vec![custom.clone()];
    store.commit_call(third).await.unwrap();
    let mut other_create = create(&other);
    other_create.events = vec![
        fixtures::event(&other.call_id, 1),
        fixtures::event(&other.call_id, 5),
    ];
    store.commit_call(other_create).await.unwrap();

    let expected = vec![e[0].clone(), e[1].clone(), e[2].clone(), custom.clone()];
    assert_eq!(
        store.events_since(&call.call_id, 0).await.unwrap(),
        expected
    );
    assert_eq!(
        store.events_since(&call.call_id, 2).await.unwrap(),
        expected[2..].to_vec()
    );
    assert_eq!(
        store.events_since(&call.call_id, 3).await.unwrap(),
        vec![custom.clone()]
    );
    assert!(store
        .events_since(&call.call_id, 4)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .events_since(&call.call_id, u64::MAX)
        .await
        .unwrap()
        .is_empty());
    let got = store.events_since(&call.call_id, 3).await.unwrap();
    assert_eq!(got[0].audience, custom.audience, "the audience round-trips");
    assert_eq!(
        store
            .events_since(&other.call_id, 0)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect::<Vec<_>>(),
        vec![1, 5]
    );
}

/// `list_calls_by_agent` finds a call through every role an agent had at any time:
/// `agentAId`, `agentBId`, owner, offered agent, and either party of a transfer.
pub async fn calls_by_agent_cover_every_role(store: &dyn Store) {
    let agent = crate::model::new_id("agent");
    let someone = crate::model::new_id("agent");

    let mut as_a = fixtures::queued_call();
    as_a.agent_a_id = Some(agent.clone());
    let mut as_b = fixtures::queued_call();
    as_b.agent_b_id = Some(agent.clone());
    let mut as_owner = fixtures::queued_call();
    as_owner.owner_id = Some(agent.clone());
    let mut as_offered = fixtures::queued_call();
    as_offered.offered_to = Some(agent.clone());
    let as_target = fixtures::call(&someone);
    let as_source = fixtures::queued_call();
    let unrelated = fixtures::call(&someone);

    for c in [&as_a, &as_b, &as_owner, &as_offered, &unrelated] {
        store.commit_call(create(c)).await.unwrap();
    }
    let mut commit = create(&as_target);
    commit.transfers = vec![fixtures::transfer(&as_target.call_id, &someone, &agent)];
    store.commit_call(commit).await.unwrap();
    let mut commit = create(&as_source);
    commit.transfers = vec![fixtures::transfer(&as_source.call_id, &agent, &someone)];
    store.commit_call(commit).await.unwrap();

    // The offer moves on to someone else: the agent took part, so the call stays listed.
    let mut moved = as_offered.clone();
    moved.offered_to = Some(someone.clone());
    store.commit_call(update(&moved, 1)).await.unwrap();

    let listed = store.list_calls_by_agent(&agent).await.unwrap();
    let got: HashSet<&str> = listed.iter().map(|c| c.call_id.as_str()).collect();
    let want: HashSet<&str> = [&as_a, &as_b, &as_owner, &as_offered, &as_target, &as_source]
        .iter()
        .map(|c| c.call_id.as_str())
        .collect();
    assert_eq!(
        got, want,
        "every role lists the call, and nothing else is listed"
    );
    assert_eq!(listed.len(), want.len(), "each call is listed once");
    let listed_moved = listed.iter().find(|c| c.call_id == moved.call_id).unwrap();
    assert_eq!(listed_moved, &moved, "the listing shows the current call");

    let theirs = store.list_calls_by_agent(&someone).await.unwrap();
    assert_eq!(theirs.len(), 4, "unrelated, as_target, as_source, moved");
}

/// `list_calls_by_agent` lists newest first (`createdAt` descending).
pub async fn calls_by_agent_newest_first(store: &dyn Store) {
    let agent = crate::model::new_id("agent");
    let mut calls = Vec::new();
    for offset in [1_000, 3_000, 2_000, 0] {
        let mut c = fixtures::call(&agent);
        c.created_at = at(offset);
        store.commit_call(create(&c)).await.unwrap();
        calls.push(c);
    }
    let listed = store.list_calls_by_agent(&agent).await.unwrap();
    let got: Vec<_> = listed.iter().map(|c| c.created_at).collect();
    assert_eq!(got, vec![at(3_000), at(2_000), at(1_000), at(0)]);
}

/// `list_unfinished_calls` lists calls not `ended`, oldest first, with state and version,
/// and drops a call once it ends.
pub async fn unfinished_calls_exclude_ended_oldest_first(store: &dyn Store) {
    let owner = crate::model::new_id("agent");
    let mut newer = fixtures::call(&owner);
    newer.created_at = at(10_000);
    let mut older = fixtures::queued_call();
    older.created_at = at(-10_000);
    let mut ends_later = fixtures::call(&owner);
    ends_later.created_at = at(0);
    let mut born_ended = fixtures::call(&owner);
    born_ended.status = CallStatus::Ended;
    for c in [&newer, &older, &ends_later, &born_ended] {
        store.commit_call(create(c)).await.unwrap();
    }
    let ours = [
        older.call_id.as_str(),
        ends_later.call_id.as_str(),
        newer.call_id.as_str(),
        born_ended.call_id.as_str(),
    ];
    let listed = store.list_unfinished_calls().await.unwrap();
    assert_eq!(
        only_ours(&listed, &ours, |c| &c.call.call_id),
        owned(&ours[..3]),
        "unfinished calls, oldest first"
    );
    let entry = listed
        .iter()
        .find(|c| c.call.call_id == older.call_id)
        .unwrap();
    assert_eq!(entry.version, 1);
    assert_eq!(entry.call, older);
    assert_eq!(entry.state, json!({"phase": "created"}));

    let mut ended = ends_later.clone();
    ended.status = CallStatus::Ended;
    ended.end_at = Some(at(30_000));
    store.commit_call(update(&ended, 1)).await.unwrap();
    let listed = store.list_unfinished_calls().await.unwrap();
    assert_eq!(
        only_ours(&listed, &ours, |c| &c.call.call_id),
        owned(&[ours[0], ours[2]]),
        "an ended call is no longer unfinished"
    );
}

/// Transfers are upserted by commits and listed by call and by status, oldest first.
pub async fn transfers_by_call_and_status(store: &dyn Store) {
    let owner = crate::model::new_id("agent");
    let target = crate::model::new_id("agent");
    let call = fixtures::call(&owner);
    let other_call = fixtures::call(&owner);
    let mut t1 = fixtures::transfer(&call.call_id, &owner, &target);
    t1.created_at = at(0);
    let mut t2 = fixtures::transfer(&call.call_id, &owner, &target);
    t2.created_at = at(1_000);
    t2.status = TransferStatus::Completed;
    t2.mode = crate::model::TransferMode::Cold;
    t2.note = Some("vip".into());
    t2.summary_text = "caller wants a refund".into();
    t2.ended_at = Some(at(2_000));
    let mut t3 = fixtures::transfer(&call.call_id, &owner, &target);
    t3.created_at = at(2_000);
    t3.status = TransferStatus::Ringing;
    let t_other = fixtures::transfer(&other_call.call_id, &owner, &target);

    let mut first = create(&call);
    first.transfers = vec![t2.clone(), t1.clone()];
    store.commit_call(first).await.unwrap();
    let mut other = create(&other_call);
    other.transfers = vec![t_other.clone()];
    store.commit_call(other).await.unwrap();

    t1.status = TransferStatus::Cancelled;
    t1.reason = Some("owner_cancelled".into());
    t1.updated_at = at(3_000);
    t1.ended_at = Some(at(3_000));
    let mut second = update(&call, 1);
    second.transfers = vec![t3.clone(), t1.clone()];
    store.commit_call(second).await.unwrap();

    assert_eq!(
        store.get_transfer(&t1.transfer_id).await.unwrap(),
        Some(t1.clone())
    );
    assert_eq!(
        store.list_transfers_by_call(&call.call_id).await.unwrap(),
        vec![t1.clone(), t2.clone(), t3.clone()],
        "transfers of a call, oldest first, as last written"
    );
    assert_eq!(
        store
            .list_transfers_by_call(&other_call.call_id)
            .await
            .unwrap(),
        vec![t_other.clone()]
    );

    let ours = [
        t1.transfer_id.as_str(),
        t2.transfer_id.as_str(),
        t_other.transfer_id.as_str(),
        t3.transfer_id.as_str(),
    ];
    fn id(t: &crate::model::Transfer) -> &str {
        &t.transfer_id
    }
    let ringing = store
        .list_transfers(&[TransferStatus::Ringing])
        .await
        .unwrap();
    assert_eq!(only_ours(&ringing, &ours, id), owned(&[ours[3]]));
    assert!(ringing.iter().all(|t| t.status == TransferStatus::Ringing));
    let initiated = store
        .list_transfers(&[TransferStatus::Initiated])
        .await
        .unwrap();
    assert_eq!(
        only_ours(&initiated, &ours, id),
        owned(&[ours[2]]),
        "t1 left `initiated` when it was cancelled"
    );
    let terminal = store
        .list_transfers(&[TransferStatus::Completed, TransferStatus::Cancelled])
        .await
        .unwrap();
    assert_eq!(only_ours(&terminal, &ours, id), owned(&ours[..2]));
    let all = store.list_transfers(&[]).await.unwrap();
    // t_other was created at at(0) like t1: ties are ordered by id.
    let mut want = vec![
        (t1.created_at, t1.transfer_id.clone()),
        (t2.created_at, t2.transfer_id.clone()),
        (t3.created_at, t3.transfer_id.clone()),
        (t_other.created_at, t_other.transfer_id.clone()),
    ];
    want.sort();
    let want: Vec<String> = want.into_iter().map(|(_, id)| id).collect();
    assert_eq!(
        only_ours(&all, &ours, id),
        want,
        "all transfers, oldest first"
    );
    for w in all.windows(2) {
        assert!(
            (w[0].created_at, &w[0].transfer_id) <= (w[1].created_at, &w[1].transfer_id),
            "list_transfers is ordered by createdAt then id"
        );
    }
}

/// Transcripts are listed by call in `createdAt` then id order, read by id, and a taken
/// id is `AlreadyExists`.
pub async fn transcripts_by_call_in_order(store: &dyn Store) {
    let call_id = crate::model::new_id("call");
    let other_call = crate::model::new_id("call");
    let late = fixtures::transcript(&call_id, 2_000);
    let early = fixtures::transcript(&call_id, -1_000);
    let mut tie_b = fixtures::transcript(&call_id, 500);
    let base = tie_b.transcript_id.clone();
    tie_b.transcript_id = format!("{base}-b");
    let mut tie_a = tie_b.clone();
    tie_a.transcript_id = format!("{base}-a");
    tie_a.speaker = "agent-1".into();
    tie_a.source = crate::model::TranscriptSource::Whisper;
    let elsewhere = fixtures::transcript(&other_call, 0);
    for t in [&late, &tie_b, &elsewhere, &early, &tie_a] {
        store.put_transcript(t).await.expect("put_transcript");
    }
    assert_eq!(
        store.list_transcripts_by_call(&call_id).await.unwrap(),
        vec![early.clone(), tie_a.clone(), tie_b.clone(), late.clone()]
    );
    assert_eq!(
        store.get_transcript(&tie_a.transcript_id).await.unwrap(),
        Some(tie_a.clone())
    );
    let mut dup = late.clone();
    dup.text = "overwrite".into();
    match store.put_transcript(&dup).await {
        Err(StoreError::AlreadyExists { entity, id }) => {
            assert_eq!(entity, "transcript");
            assert_eq!(id, late.transcript_id);
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(
        store.get_transcript(&late.transcript_id).await.unwrap(),
        Some(late)
    );
    assert_eq!(
        store.list_transcripts_by_call(&other_call).await.unwrap(),
        vec![elsewhere]
    );
}

/// A summary with the whole structured briefing (lists, usage, labels) reads back equal, by
/// id and by call; so does one with only seed 000's fields (the defaults).
pub async fn structured_summaries_round_trip(store: &dyn Store) {
    use crate::model::{Sentiment, SummarySource, TokenUsage, Urgency};
    let call_id = crate::model::new_id("call");
    let plain = fixtures::summary(&call_id, 0);
    let full = crate::model::Summary {
        source: SummarySource::Llm,
        model: "gpt-4o-mini".into(),
        version: 2,
        transcript_count: 7,
        reason: "double charge in March".into(),
        customer_details: vec!["Ann Lee".into(), "order ORD-2026-10458".into()],
        tried: vec!["checked the statement".into()],
        promised: vec![],
        next_step: "waive the late fee?".into(),
        sentiment: Sentiment::Angry,
        urgency: Urgency::High,
        whisper_text: "Ann was charged twice in March.".into(),
        script: "Hi, I have Ann on hold.".into(),
        usage: Some(TokenUsage {
            prompt_tokens: 812,
            completion_tokens: 143,
            total_tokens: 955,
        }),
        fallback_reason: Some("timeout".into()),
        ..fixtures::summary(&call_id, 1_000)
    };
    for s in [&plain, &full] {
        store.put_summary(s).await.expect("put_summary");
    }
    assert_eq!(
        store.get_summary(&full.summary_id).await.unwrap(),
        Some(full.clone())
    );
    assert_eq!(
        store.list_summaries_by_call(&call_id).await.unwrap(),
        vec![plain, full]
    );
}

/// Summaries are listed by call oldest first, read by id, and a taken id is `AlreadyExists`.
pub async fn summaries_by_call_in_order(store: &dyn Store) {
    let call_id = crate::model::new_id("call");
    let second = fixtures::summary(&call_id, 1_000);
    let first = fixtures::summary(&call_id, 0);
    let third = fixtures::summary(&call_id, 2_000);
    let elsewhere = fixtures::summary(&crate::model::new_id("call"), 0);
    for s in [&second, &elsewhere, &third, &first] {
        store.put_summary(s).await.expect("put_summary");
    }
    assert_eq!(
        store.list_summaries_by_call(&call_id).await.unwrap(),
        vec![first.clone(), second.clone(), third.clone()]
    );
    assert_eq!(
        store.get_summary(&second.summary_id).await.unwrap(),
        Some(second.clone())
    );
    let mut dup = first.clone();
    dup.summary_text = "overwrite".into();
    match store.put_summary(&dup).await {
        Err(StoreError::AlreadyExists { entity, id }) => {
            assert_eq!(entity, "summary");
            assert_eq!(id, first.summary_id);
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(
        store.get_summary(&first.summary_id).await.unwrap(),
        Some(first)
    );
}

/// Rooms are read by id and by name; `put_room` replaces, and a renamed room is no longer
/// found under its old name.
pub async fn rooms_by_id_and_name_replace(store: &dyn Store) {
    let room = fixtures::room();
    store.put_room(&room).await.expect("put_room");
    assert_eq!(
        store.get_room(&room.room_id).await.unwrap(),
        Some(room.clone())
    );
    assert_eq!(
        store.get_room_by_name(&room.room_name).await.unwrap(),
        Some(room.clone())
    );

    let mut closed = room.clone();
    closed.status = "closed".into();
    store.put_room(&closed).await.expect("replace room");
    assert_eq!(
        store.get_room(&room.room_id).await.unwrap(),
        Some(closed.clone())
    );
    assert_eq!(
        store.get_room_by_name(&room.room_name).await.unwrap(),
        Some(closed.clone())
    );

    let mut renamed = closed.clone();
    renamed.room_name = format!("{}-renamed", room.room_name);
    renamed.call_id = None;
    store.put_room(&renamed).await.expect("rename room");
    assert_eq!(
        store.get_room(&room.room_id).await.unwrap(),
        Some(renamed.clone())
    );
    assert_eq!(
        store.get_room_by_name(&renamed.room_name).await.unwrap(),
        Some(renamed)
    );
    assert_eq!(store.get_room_by_name(&room.room_name).await.unwrap(), None);

    let other = fixtures::room();
    store.put_room(&other).await.unwrap();
    assert_eq!(
        store.get_room_by_name(&other.room_name).await.unwrap(),
        Some(other)
    );
}

/// Two commits racing from the same version: exactly one lands (with its event), the
/// other gets `VersionConflict` and lands nothing. Repeated a few rounds.
pub async fn concurrent_commits_one_wins(store: &dyn Store) {
    let mut call = fixtures::call(&crate::model::new_id("agent"));
    store.commit_call(create(&call)).await.unwrap();
    let mut version = 1;
    for round in 0..8u64 {
        call.status = if round % 2 == 0 {
            CallStatus::OnHold
        } else {
            CallStatus::Active
        };
        let seq_a = 100 + 2 * round;
        let seq_b = seq_a + 1;
        let mut a = update(&call, version);
        a.state = json!({"by": "a", "round": round});
        a.events = vec![fixtures::event(&call.call_id, seq_a)];
        let mut b = update(&call, version);
        b.state = json!({"by": "b", "round": round});
        b.events = vec![fixtures::event(&call.call_id, seq_b)];
        let (ra, rb) = tokio::join!(store.commit_call(a), store.commit_call(b));
        let (winner_seq, winner_state, loser) = match (ra, rb) {
            (Ok(v), Err(e)) => {
                assert_eq!(v, version + 1);
                (seq_a, "a", e)
            }
            (Err(e), Ok(v)) => {
                assert_eq!(v, version + 1);
                (seq_b, "b", e)
            }
            other => panic!("round {round}: expected exactly one winner, got {other:?}"),
        };
        match loser {
            StoreError::VersionConflict { expected, .. } => assert_eq!(expected, version),
            other => panic!("round {round}: the loser must get VersionConflict, got {other:?}"),
        }
        version += 1;
        let stored = store.get_call(&call.call_id).await.unwrap().unwrap();
        assert_eq!(stored.version, version);
        assert_eq!(
            stored.state["by"], winner_state,
            "the winner's state is stored"
        );
        let events = store
            .events_since(&call.call_id, 100 + 2 * round - 1)
            .await
            .unwrap();
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![winner_seq], "only the winner's event landed");
    }
}

/// Two commits racing to create the same call: exactly one creates it (version 1), the
/// other gets `AlreadyExists`.
pub async fn concurrent_creates_one_wins(store: &dyn Store) {
    for _ in 0..4 {
        let call = fixtures::call(&crate::model::new_id("agent"));
        let mut a = create(&call);
        a.state = json!("a");
        let mut b = create(&call);
        b.state = json!("b");
        let (ra, rb) = tokio::join!(store.commit_call(a), store.commit_call(b));
        let (winner, loser) = match (ra, rb) {
            (Ok(1), Err(e)) => ("a", e),
            (Err(e), Ok(1)) => ("b", e),
            other => panic!("expected exactly one creation, got {other:?}"),
        };
        assert!(
            matches!(loser, StoreError::AlreadyExists { entity: "call", .. }),
            "the loser gets AlreadyExists, got {loser:?}"
        );
        let stored = store.get_call(&call.call_id).await.unwrap().unwrap();
        assert_eq!((stored.version, stored.state), (1, json!(winner)));
    }
}

/// A finished call committed as still `open` (its end-of-call notice not queued yet) stays
/// in the unfinished list, so recovery restarts its actor; committed closed, it leaves it.
pub async fn finished_calls_left_open_stay_unfinished(store: &dyn Store) {
    let owner = crate::model::new_id("agent");
    let call = fixtures::call(&owner);
    store.commit_call(create(&call)).await.unwrap();
    let mut failed = call.clone();
    failed.status = CallStatus::Failed;
    failed.end_at = Some(at(5_000));
    let mut lingering = update(&failed, 1);
    lingering.open = true;
    store.commit_call(lingering).await.unwrap();
    let listed = store.list_unfinished_calls().await.unwrap();
    let entry = listed.iter().find(|c| c.call.call_id == call.call_id);
    assert_eq!(
        entry.map(|c| c.call.status),
        Some(CallStatus::Failed),
        "a finished call with work left is listed for recovery"
    );
    store.commit_call(update(&failed, 2)).await.unwrap();
    let listed = store.list_unfinished_calls().await.unwrap();
    assert!(
        !listed.iter().any(|c| c.call.call_id == call.call_id),
        "settled, it is no longer listed"
    );
}

/// Reads of unknown ids are `Ok(None)`; listings for unknown ids are empty.
pub async fn unknown_ids_are_none_or_empty(store: &dyn Store) {
    let id = crate::model::new_id("unknown");
    assert_eq!(store.get_agent(&id).await.unwrap(), None);
    assert_eq!(store.get_call(&id).await.unwrap(), None);
    assert_eq!(store.get_transfer(&id).await.unwrap(), None);
    assert_eq!(store.get_transcript(&id).await.unwrap(), None);
    assert_eq!(store.get_summary(&id).await.unwrap(), None);
    assert_eq!(store.get_room(&id).await.unwrap(), None);
    assert_eq!(store.get_room_by_name(&id).await.unwrap(), None);
    assert!(store.list_calls_by_agent(&id).await.unwrap().is_empty());
    assert!(store.list_transfers_by_call(&id).await.unwrap().is_empty());
    assert!(store
        .list_transcripts_by_call(&id)
        .await
        .unwrap()
        .is_empty());
    assert!(store.list_summaries_by_call(&id).await.unwrap().is_empty());
    assert!(store.events_since(&id, 0).await.unwrap().is_empty());
    // An id that is a prefix of a real one matches nothing.
    let call = fixtures::call(&crate::model::new_id("agent"));
    let mut commit = create(&call);
    commit.events = vec![fixtures::event(&call.call_id, 1)];
    commit.transfers = vec![fixtures::transfer(&call.call_id, "a", "b")];
    store.commit_call(commit).await.unwrap();
    let prefix = &call.call_id[..call.call_id.len() - 1];
    assert_eq!(store.get_call(prefix).await.unwrap(), None);
    assert!(store.events_since(prefix, 0).await.unwrap().is_empty());
    assert!(store
        .list_transfers_by_call(prefix)
        .await
        .unwrap()
        .is_empty());
}

// ---- Organisations (src/org.rs): API keys, assistants, SIP trunks ----

fn org_key(org_id: &str, offset_ms: i64) -> crate::org::ApiKeyRecord {
    let req = crate::org::KeyRequest {
        user_name: "Ada".into(),
        org_name: org_id.into(),
        user_email: "ada@example.com".into(),
        role: crate::org::KeyRole::Admin,
    };
    let at = chrono::Utc::now() + chrono::Duration::milliseconds(offset_ms);
    crate::org::generate_key(&req, at).unwrap().record
}

fn org_assistant(org_id: &str, offset_ms: i64) -> crate::org::Assistant {
    let at = chrono::Utc::now() + chrono::Duration::milliseconds(offset_ms);
    crate::org::Assistant::create(
        crate::org::NewAssistant {
            org_id: None,
            name: "Support".into(),
            description: "d".into(),
            prompt: "You help {{name}}.".into(),
            start_instruction: "Hi {{name}}".into(),
            tts: crate::org::Tts {
                provider: "sarvam".into(),
                voice_id: None,
                speaker: Some("meera".into()),
            },
            end_call_url: Some("https://hooks.example/end".into()),
            record: true,
        },
        crate::model::new_id("as"),
        org_id.into(),
        "k1".into(),
        at,
    )
    .unwrap()
}

fn org_trunk(org_id: &str, offset_ms: i64) -> crate::org::SipTrunk {
    crate::org::SipTrunk {
        trunk_id: crate::model::new_id("tr"),
        org_id: org_id.into(),
        name: "Twilio".into(),
        address: "example.pstn.twilio.com:5060".into(),
        numbers: vec!["+15550100000".into()],
        auth_username: Some("user".into()),
        has_password: true,
        transport: "auto".into(),
        livekit_trunk_id: crate::model::new_id("ST"),
        created_at: chrono::Utc::now() + chrono::Duration::milliseconds(offset_ms),
    }
}

/// Keys: created once, read back whole (digest, webhook secret), listed by organisation in
/// creation order, revoked once (a second revoke keeps the first time).
pub async fn org_api_keys_create_get_list_revoke(store: &dyn Store) {
    let org_a = crate::model::new_id("org");
    let org_b = crate::model::new_id("org");
    let k2 = org_key(&org_a, 10);
    let k1 = org_key(&org_a, 0);
    let kb = org_key(&org_b, 0);
    for k in [&k2, &k1, &kb] {
        store.create_api_key(k).await.unwrap();
    }
    assert!(matches!(
        store.create_api_key(&k1).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    let got = store
        .get_api_key(&k1.key_id)
        .await
        .unwrap()
        .expect("stored key");
    assert_eq!(got, k1);
    assert_eq!(got.webhook_secret.expose(), k1.webhook_secret.expose());
    let ids =
        |v: Vec<crate::org::ApiKeyRecord>| v.into_iter().map(|k| k.key_id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.list_api_keys(Some(&org_a)).await.unwrap()),
        vec![k1.key_id.clone(), k2.key_id.clone()]
    );
    assert_eq!(
        ids(store.list_api_keys(Some(&org_b)).await.unwrap()),
        vec![kb.key_id.clone()]
    );
    let all = ids(store.list_api_keys(None).await.unwrap());
    for k in [&k1, &k2, &kb] {
        assert!(
            all.contains(&k.key_id),
            "{} in the list of all keys",
            k.key_id
        );
    }
    let at = chrono::Utc::now();
    let revoked = store.revoke_api_key(&k1.key_id, at).await.unwrap();
    assert_eq!(revoked.revoked_at, Some(at));
    let again = store
        .revoke_api_key(&k1.key_id, at + chrono::Duration::seconds(5))
        .await
        .unwrap();
    assert_eq!(
        again.revoked_at,
        Some(at),
        "the first revocation time stays"
    );
    let got = store.get_api_key(&k1.key_id).await.unwrap().unwrap();
    assert_eq!(got.revoked_at, Some(at));
    assert_eq!(
        store
            .get_api_key(&k2.key_id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        None
    );
    assert!(matches!(
        store.revoke_api_key("no-such-key", at).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(store.get_api_key("no-such-key").await.unwrap().is_none());
    assert!(store
        .list_api_keys(Some("no-such-org"))
        .await
        .unwrap()
        .is_empty());
}

/// Assistants: version 1 on create, conditional replace by version, listed by organisation
/// only, deleted once.
pub async fn org_assistants_versioned_by_org(store: &dyn Store) {
    let org_a = crate::model::new_id("org");
    let org_b = crate::model::new_id("org");
    let mut a2 = org_assistant(&org_a, 10);
    a2.version = 7; // create always starts at 1
    let a1 = org_assistant(&org_a, 0);
    let b1 = org_assistant(&org_b, 0);
    let a2 = store.create_assistant(&a2).await.unwrap();
    assert_eq!(a2.version, 1);
    store.create_assistant(&a1).await.unwrap();
    store.create_assistant(&b1).await.unwrap();
    assert!(matches!(
        store.create_assistant(&a1).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    assert_eq!(
        store.get_assistant(&a1.assistant_id).await.unwrap(),
        Some(a1.clone())
    );
    let ids =
        |v: Vec<crate::org::Assistant>| v.into_iter().map(|a| a.assistant_id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.list_assistants(Some(&org_a)).await.unwrap()),
        vec![a1.assistant_id.clone(), a2.assistant_id.clone()]
    );
    assert_eq!(
        ids(store.list_assistants(Some(&org_b)).await.unwrap()),
        vec![b1.assistant_id.clone()]
    );
    let all = ids(store.list_assistants(None).await.unwrap());
    assert!(all.contains(&a1.assistant_id) && all.contains(&b1.assistant_id));

    let mut changed = a1.clone();
    changed.name = "Renamed".into();
    let v2 = store.update_assistant(&changed).await.unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(
        store.get_assistant(&a1.assistant_id).await.unwrap(),
        Some(v2.clone())
    );
    // A writer that read version 1 loses.
    assert!(matches!(
        store.update_assistant(&changed).await,
        Err(StoreError::VersionConflict { expected: 1, .. })
    ));
    let ghost = org_assistant(&org_a, 0);
    assert!(matches!(
        store.update_assistant(&ghost).await,
        Err(StoreError::NotFound { .. })
    ));
    // Two concurrent writers of version 2: exactly one wins.
    let (x, y) = tokio::join!(store.update_assistant(&v2), store.update_assistant(&v2));
    assert_eq!(
        [x.is_ok(), y.is_ok()].iter().filter(|ok| **ok).count(),
        1,
        "{x:?} {y:?}"
    );
    assert!(store.delete_assistant(&a1.assistant_id).await.unwrap());
    assert!(!store.delete_assistant(&a1.assistant_id).await.unwrap());
    assert!(store
        .get_assistant(&a1.assistant_id)
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        ids(store.list_assistants(Some(&org_a)).await.unwrap()),
        vec![a2.assistant_id.clone()]
    );
}

/// SIP trunks: created once, listed by organisation, deleted once.
pub async fn org_sip_trunks_by_org(store: &dyn Store) {
    let org_a = crate::model::new_id("org");
    let org_b = crate::model::new_id("org");
    let t2 = org_trunk(&org_a, 10);
    let t1 = org_trunk(&org_a, 0);
    let tb = org_trunk(&org_b, 0);
    for t in [&t2, &t1, &tb] {
        store.create_sip_trunk(t).await.unwrap();
    }
    assert!(matches!(
        store.create_sip_trunk(&t1).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    assert_eq!(
        store.get_sip_trunk(&t1.trunk_id).await.unwrap(),
        Some(t1.clone())
    );
    let ids = |v: Vec<crate::org::SipTrunk>| v.into_iter().map(|t| t.trunk_id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.list_sip_trunks(Some(&org_a)).await.unwrap()),
        vec![t1.trunk_id.clone(), t2.trunk_id.clone()]
    );
    assert_eq!(
        ids(store.list_sip_trunks(Some(&org_b)).await.unwrap()),
        vec![tb.trunk_id.clone()]
    );
    assert!(ids(store.list_sip_trunks(None).await.unwrap()).contains(&tb.trunk_id));
    assert!(store.delete_sip_trunk(&t1.trunk_id).await.unwrap());
    assert!(!store.delete_sip_trunk(&t1.trunk_id).await.unwrap());
    assert!(store.get_sip_trunk(&t1.trunk_id).await.unwrap().is_none());
    assert!(store
        .get_sip_trunk("no-such-trunk")
        .await
        .unwrap()
        .is_none());
}
// ---- End-of-call webhook deliveries ----

fn delivery(call_id: &str, id: &str) -> crate::webhooks::WebhookDelivery {
    use crate::webhooks::{DeliveryAttempt, DeliveryStatus, WebhookDelivery};
    let now = chrono::Utc::now();
    WebhookDelivery {
        delivery_id: id.to_owned(),
        call_id: call_id.to_owned(),
        org_id: Some("org-1".into()),
        url: "https://hooks.example.com/ended".into(),
        event: "call.ended".into(),
        payload: json!({"event": "call.ended", "callId": call_id, "nested": {"a": [1, 2]}}),
        secret: crate::secret::Secret::new("whsec_conformance"),
        status: DeliveryStatus::Pending,
        attempts: vec![DeliveryAttempt {
            attempt: 1,
            at: now,
            status_code: Some(500),
            error: Some("receiver answered 500".into()),
            duration_ms: 12,
        }],
        next_attempt_at: Some(now),
        created_at: now,
        delivered_at: None,
        round_start: 0,
        version: 0,
    }
}

/// A delivery is created once: the second create (also a concurrent one) is
/// `AlreadyExists` and leaves the first unchanged; everything round-trips.
pub async fn webhook_delivery_is_created_once(store: &dyn Store) {
    let call_id = crate::model::new_id("call");
    let d = delivery(&call_id, &crate::model::new_id("whd"));
    let created = store.create_webhook_delivery(&d).await.unwrap();
    assert_eq!(created.version, 1, "created at version 1");
    let got = store
        .get_webhook_delivery(&d.delivery_id)
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(
        got, created,
        "round-trips (payload, attempts, secret, times)"
    );
    let mut other = d.clone();
    other.url = "https://elsewhere.example.com/".into();
    match store.create_webhook_delivery(&other).await {
        Err(StoreError::AlreadyExists { id, .. }) => assert_eq!(id, d.delivery_id),
        other => panic!("second create: {other:?}"),
    }
    assert_eq!(
        store.get_webhook_delivery(&d.delivery_id).await.unwrap(),
        Some(created)
    );
    // Racing creates: exactly one wins.
    let race = delivery(&call_id, &crate::model::new_id("whd"));
    let (a, b) = tokio::join!(
        store.create_webhook_delivery(&race),
        store.create_webhook_delivery(&race)
    );
    let wins = [a.is_ok(), b.is_ok()].iter().filter(|w| **w).count();
    assert_eq!(wins, 1, "one create wins: {a:?} {b:?}");
    assert_eq!(
        store
            .list_webhook_deliveries_by_call(&call_id)
            .await
            .unwrap()
            .len(),
        2
    );
}

/// Updates need the stored version; a stale one is `VersionConflict`, a missing one
/// `NotFound`.
pub async fn webhook_delivery_updates_are_conditional(store: &dyn Store) {
    use crate::webhooks::DeliveryStatus;
    let d = delivery(&crate::model::new_id("call"), &crate::model::new_id("whd"));
    let v1 = store.create_webhook_delivery(&d).await.unwrap();
    let mut change = v1.clone();
    change.status = DeliveryStatus::Delivered;
    change.delivered_at = Some(chrono::Utc::now());
    let v2 = store.update_webhook_delivery(&change).await.unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(
        store.get_webhook_delivery(&d.delivery_id).await.unwrap(),
        Some(v2.clone())
    );
    match store.update_webhook_delivery(&change).await {
        Err(StoreError::VersionConflict { expected, .. }) => assert_eq!(expected, 1),
        other => panic!("stale update: {other:?}"),
    }
    let mut missing = v2.clone();
    missing.delivery_id = crate::model::new_id("whd");
    match store.update_webhook_delivery(&missing).await {
        Err(StoreError::NotFound { id, .. }) => assert_eq!(id, missing.delivery_id),
        other => panic!("update of missing: {other:?}"),
    }
    assert_eq!(
        store
            .get_webhook_delivery(&missing.delivery_id)
            .await
            .unwrap(),
        None
    );
}

/// Deliveries are listed by call (oldest first) and, while pending, in the pending list.
pub async fn webhook_deliveries_by_call_and_pending(store: &dyn Store) {
    use crate::webhooks::DeliveryStatus;
    let call_id = crate::model::new_id("call");
    let mut first = delivery(&call_id, &crate::model::new_id("whd-b"));
    let mut second = delivery(&call_id, &crate::model::new_id("whd-a"));
    second.created_at = first.created_at + chrono::Duration::milliseconds(5);
    first = store.create_webhook_delivery(&first).await.unwrap();
    second = store.create_webhook_delivery(&second).await.unwrap();
    let other = store
        .create_webhook_delivery(&delivery(
            &crate::model::new_id("call"),
            &crate::model::new_id("whd"),
        ))
        .await
        .unwrap();
    let ids = |v: Vec<crate::webhooks::WebhookDelivery>| -> Vec<String> {
        v.into_iter().map(|d| d.delivery_id).collect()
    };
    assert_eq!(
        ids(store
            .list_webhook_deliveries_by_call(&call_id)
            .await
            .unwrap()),
        vec![first.delivery_id.clone(), second.delivery_id.clone()]
    );
    let pending = ids(store.list_pending_webhook_deliveries().await.unwrap());
    for d in [&first, &second, &other] {
        assert!(
            pending.contains(&d.delivery_id),
            "{} pending",
            d.delivery_id
        );
    }
    let i = pending
        .iter()
        .position(|x| *x == first.delivery_id)
        .unwrap();
    let j = pending
        .iter()
        .position(|x| *x == second.delivery_id)
        .unwrap();
    assert!(i < j, "oldest first");
    let mut done = first.clone();
    done.status = DeliveryStatus::Delivered;
    store.update_webhook_delivery(&done).await.unwrap();
    let mut failed = second.clone();
    failed.status = DeliveryStatus::Failed;
    let failed = store.update_webhook_delivery(&failed).await.unwrap();
    let pending = ids(store.list_pending_webhook_deliveries().await.unwrap());
    assert!(
        !pending.contains(&first.delivery_id),
        "delivered is not pending"
    );
    assert!(
        !pending.contains(&second.delivery_id),
        "failed is not pending"
    );
    assert!(pending.contains(&other.delivery_id));
    // Redelivery puts a failed one back.
    let mut again = failed.clone();
    again.status = DeliveryStatus::Pending;
    store.update_webhook_delivery(&again).await.unwrap();
    let pending = ids(store.list_pending_webhook_deliveries().await.unwrap());
    assert!(pending.contains(&second.delivery_id), "pending again");
    assert_eq!(
        store
            .list_webhook_deliveries_by_call(&call_id)
            .await
            .unwrap()
            .len(),
        2,
        "status changes do not duplicate the call's list"
    );
    assert!(store
        .list_webhook_deliveries_by_call(&crate::model::new_id("call"))
        .await
        .unwrap()
        .is_empty());
}

// ---- end of webhook deliveries ----
