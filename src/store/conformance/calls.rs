//! Conformance checks of call commits: versions, atomicity with events, and races
//! ([`CallStore`](crate::store::CallStore)).

use serde_json::json;

use super::fixtures::{self, at, create, update};
use crate::model::{CallStatus, TransferStatus};
use crate::store::{CallCommit, Store, StoreError};

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
