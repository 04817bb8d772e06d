//! Conformance checks of what is found through the indexes: calls by agent, unfinished calls,
//! transfers by call and status, rooms by name, and unknown ids
//! ([`CallStore`](crate::store::CallStore)).

use std::collections::HashSet;

use serde_json::json;

use super::fixtures::{self, at, create, update};
use super::{only_ours, owned};
use crate::model::{CallStatus, TransferStatus};
use crate::store::Store;

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
