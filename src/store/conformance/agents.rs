//! Conformance checks of the agent directory ([`AgentStore`](crate::store::AgentStore)), and
//! of `ping`.

use super::fixtures::{self, at};
use super::{only_ours, owned};
use crate::store::{Store, StoreError};

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
