//! The embedded store's call commits: the writer thread that group-commits them, and what one
//! commit checks and writes inside the group's transaction.

use redb::{Database, WriteTransaction};

use super::*;
use crate::model::{Event, Transfer};
use crate::store::{CallCommit, StoreError};

/// A call commit waiting for the writer thread, with where to send its answer.
pub(super) type CommitJob = (
    CallCommit,
    tokio::sync::oneshot::Sender<Result<u64, StoreError>>,
);

/// The writer thread: group-commits what is waiting until every store handle is dropped. It
/// holds the database weakly, and lets go of it before answering, so once the last handle is
/// dropped after its last answer the file is closed (and may be opened again at once).
pub(super) fn group_commit_loop(
    db: std::sync::Weak<Database>,
    rx: std::sync::mpsc::Receiver<CommitJob>,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let answers = match db.upgrade() {
            Some(db) => commit_group(&db, batch),
            None => batch
                .into_iter()
                .map(|(_, answer)| {
                    let closed = StoreError::backend("commit_call", "the store was closed");
                    (answer, Err(closed))
                })
                .collect(),
        };
        for (answer, outcome) in answers {
            let _ = answer.send(outcome);
        }
    }
}

/// An answer to send once the database is let go of.
type Answer = (
    tokio::sync::oneshot::Sender<Result<u64, StoreError>>,
    Result<u64, StoreError>,
);

/// One transaction for a group of commits: each checked, those that pass applied, one commit.
/// Returns each commit's answer.
fn commit_group(db: &Database, batch: Vec<CommitJob>) -> Vec<Answer> {
    const OP: &str = "commit_call";
    let fail_all = |batch: Vec<CommitJob>, why: String| -> Vec<Answer> {
        batch
            .into_iter()
            .map(|(_, answer)| (answer, Err(StoreError::backend(OP, why.clone()))))
            .collect()
    };
    let txn = match db.begin_write() {
        Ok(txn) => txn,
        Err(e) => return fail_all(batch, format!("beginning write transaction: {e}")),
    };
    let mut outcomes = Vec::with_capacity(batch.len());
    for (commit, _) in &batch {
        // Conditions first, read-only: a failed one writes nothing and affects no other.
        if let Err(e) = check_commit(&txn, commit) {
            outcomes.push(Err(e));
            continue;
        }
        match apply_commit(&txn, commit) {
            Ok(version) => outcomes.push(Ok(version)),
            Err(e) => {
                // Something failed half-way: nothing of the group may land.
                if let Err(abort) = txn.abort() {
                    tracing::warn!(error = %abort, "aborting write transaction failed");
                }
                return fail_all(batch, format!("group aborted: {e}"));
            }
        }
    }
    if let Err(e) = txn.commit() {
        return fail_all(batch, format!("committing write transaction: {e}"));
    }
    batch
        .into_iter()
        .map(|(_, answer)| answer)
        .zip(outcomes)
        .collect()
}

/// Checks a commit's conditions without writing: the call's version, and that none of its
/// events is taken (nor repeated within the commit).
fn check_commit(txn: &WriteTransaction, commit: &CallCommit) -> Result<(), StoreError> {
    const OP: &str = "checking call commit";
    let call_id = commit.call.call_id.as_str();
    let calls = open_table!(txn, CALLS, OP);
    let existing: Option<CallRecord> = get_record(&calls, "call", call_id)?;
    next_version(commit, existing)?;
    let events = open_table!(txn, EVENTS, OP);
    let mut in_commit = std::collections::HashSet::new();
    for event in &commit.events {
        let key = (event.call_id.as_str(), event.seq);
        if event_taken(&events, OP, event)? || !in_commit.insert(key) {
            return Err(StoreError::DuplicateEvent {
                call_id: event.call_id.clone(),
                seq: event.seq,
            });
        }
    }
    Ok(())
}

/// Whether the store holds an event with `event`'s `(callId, seq)` already.
fn event_taken<R>(events: &R, op: &str, event: &Event) -> Result<bool, StoreError>
where
    R: ReadableTable<(&'static str, u64), &'static [u8]>,
{
    Ok(events
        .get((event.call_id.as_str(), event.seq))
        .or_backend(|| format!("{op}: reading event {} of {}", event.seq, event.call_id))?
        .is_some())
}

/// The version a commit gives the call, or why it may not be written.
fn next_version(commit: &CallCommit, existing: Option<CallRecord>) -> Result<u64, StoreError> {
    const OP: &str = "committing call";
    let call_id = commit.call.call_id.as_str();
    match (commit.expected_version, existing) {
        (None, Some(_)) => Err(StoreError::AlreadyExists {
            entity: "call",
            id: call_id.to_owned(),
        }),
        (None, None) => Ok(1),
        (Some(_), None) => Err(StoreError::NotFound {
            entity: "call",
            id: call_id.to_owned(),
        }),
        (Some(expected), Some(stored)) if stored.version != expected => {
            Err(StoreError::VersionConflict {
                entity: "call",
                id: call_id.to_owned(),
                expected,
            })
        }
        (Some(expected), Some(_)) => expected.checked_add(1).ok_or_else(|| {
            StoreError::backend(format!("{OP} {call_id}"), "call version overflowed u64")
        }),
    }
}

/// Applies one call commit inside a write transaction (see [`CallCommit`]).
fn apply_commit(txn: &WriteTransaction, commit: &CallCommit) -> Result<u64, StoreError> {
    const OP: &str = "committing call";
    let call_id = commit.call.call_id.as_str();

    let mut calls = open_table!(txn, CALLS, OP);
    let existing: Option<CallRecord> = get_record(&calls, "call", call_id)?;
    let version = next_version(commit, existing)?;

    // Events first: a duplicate aborts the transaction before anything else is written.
    let mut events = open_table!(txn, EVENTS, OP);
    for event in &commit.events {
        let key = (event.call_id.as_str(), event.seq);
        if event_taken(&events, OP, event)? {
            return Err(StoreError::DuplicateEvent {
                call_id: event.call_id.clone(),
                seq: event.seq,
            });
        }
        let bytes = encode("event", &format!("{}#{}", event.call_id, event.seq), event)?;
        events
            .insert(key, bytes.as_slice())
            .or_backend(|| format!("{OP}: writing event {} of {}", event.seq, event.call_id))?;
    }

    let record = CallRecordRef {
        call: &commit.call,
        state: &commit.state,
        version,
    };
    let bytes = encode("call", call_id, &record)?;
    calls
        .insert(call_id, bytes.as_slice())
        .or_backend(|| format!("{OP}: writing call {call_id}"))?;

    let mut unfinished = open_table!(txn, UNFINISHED_CALLS, OP);
    if !commit.open {
        unfinished
            .remove(call_id)
            .or_backend(|| format!("{OP}: unindexing finished call {call_id}"))?;
    } else {
        unfinished
            .insert(call_id, ())
            .or_backend(|| format!("{OP}: indexing unfinished call {call_id}"))?;
    }

    let mut by_agent = open_table!(txn, CALLS_BY_AGENT, OP);
    let call = &commit.call;
    let parties = [
        &call.agent_a_id,
        &call.agent_b_id,
        &call.owner_id,
        &call.offered_to,
    ];
    for agent in parties.into_iter().flatten() {
        by_agent
            .insert((agent.as_str(), call_id), ())
            .or_backend(|| format!("{OP}: indexing call {call_id} for agent {agent}"))?;
    }

    let mut transfers = open_table!(txn, TRANSFERS, OP);
    let mut by_call = open_table!(txn, TRANSFERS_BY_CALL, OP);
    let mut by_status = open_table!(txn, TRANSFERS_BY_STATUS, OP);
    for t in &commit.transfers {
        let id = t.transfer_id.as_str();
        let old: Option<Transfer> = get_record(&transfers, "transfer", id)?;
        if let Some(old) = old {
            let (secs, nanos) = time_key(&old.created_at);
            by_call
                .remove((old.call_id.as_str(), secs, nanos, id))
                .or_backend(|| format!("{OP}: unindexing transfer {id}"))?;
            by_status
                .remove((old.status.as_str(), id))
                .or_backend(|| format!("{OP}: unindexing transfer {id}"))?;
        }
        let bytes = encode("transfer", id, t)?;
        transfers
            .insert(id, bytes.as_slice())
            .or_backend(|| format!("{OP}: writing transfer {id}"))?;
        let (secs, nanos) = time_key(&t.created_at);
        by_call
            .insert((t.call_id.as_str(), secs, nanos, id), ())
            .or_backend(|| format!("{OP}: indexing transfer {id}"))?;
        by_status
            .insert((t.status.as_str(), id), ())
            .or_backend(|| format!("{OP}: indexing transfer {id}"))?;
        for agent in [&t.from_agent_id, &t.to_agent_id] {
            by_agent
                .insert((agent.as_str(), t.call_id.as_str()), ())
                .or_backend(|| format!("{OP}: indexing transfer {id} for agent {agent}"))?;
        }
    }
    Ok(version)
}
