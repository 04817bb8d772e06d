//! The embedded single-file store on redb: ACID, survives `kill -9`, zero setup.
//!
//! Everything lives in one file, `switchboard.redb`, in the data directory. Records are stored
//! as JSON bytes (the same shapes any other backend stores), keyed by their ids:
//!
//! | table                 | key                                   | value                          |
//! |-----------------------|---------------------------------------|--------------------------------|
//! | `agents`              | `agentId`                             | [`Agent`] JSON                 |
//! | `calls`               | `callId`                              | `{call, state, version}` JSON  |
//! | `transfers`           | `transferId`                          | [`Transfer`] JSON              |
//! | `transcripts`         | `transcriptId`                        | [`Transcript`] JSON            |
//! | `summaries`           | `summaryId`                           | [`Summary`] JSON               |
//! | `rooms`               | `roomId`                              | [`Room`] JSON                  |
//! | `events`              | `(callId, seq)`                       | [`Event`] JSON                 |
//! | `calls_by_agent`      | `(agentId, callId)`                   | `()`                           |
//! | `unfinished_calls`    | `callId`                              | `()`                           |
//! | `transfers_by_call`   | `(callId, createdSecs, nanos, id)`    | `()`                           |
//! | `transfers_by_status` | `(status, transferId)`                | `()`                           |
//! | `transcripts_by_call` | `(callId, createdSecs, nanos, id)`    | `()`                           |
//! | `summaries_by_call`   | `(callId, createdSecs, nanos, id)`    | `()`                           |
//! | `rooms_by_name`       | `roomName`                            | `roomId`                       |
//!
//! The index tables are maintained in the same write transaction as the records they point
//! to. `calls_by_agent` only ever grows: an agent who took part in a call at any time (as
//! `agentAId`, `agentBId`, owner, offered agent, or either party of a transfer) stays listed.
//! Every write transaction commits with redb's default `Durability::Immediate`, so a write
//! that returned `Ok` survives a crash. Every redb operation runs on tokio's blocking pool,
//! except call commits: those go to one writer thread that **group-commits** them — it takes
//! every commit waiting (up to [`MAX_GROUP`]), checks each one's conditions (version, events
//! not taken) in one write transaction, applies those that pass, and commits once (one
//! fsync), then answers each. A commit whose condition fails is answered with its own error
//! and writes nothing; the others are unaffected. Each answer still comes only after its data
//! is durable; what changes is that concurrent calls share the fsync (measured in
//! BENCHMARKS.md: an fsync costs milliseconds here, so one per transition capped the whole
//! node at a few hundred transitions per second).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redb::{
    Database, ReadTransaction, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle,
    WriteTransaction,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{CallCommit, Store, StoreError, StoredCall};
use crate::model::org::{ApiKeyRecord, Assistant, SipTrunk};
use crate::model::webhook::{DeliveryStatus, WebhookDelivery};
use crate::model::{Agent, Call, Event, Room, Summary, Transcript, Transfer, TransferStatus};

/// The name of the database file inside the data directory.
pub const DB_FILE_NAME: &str = "switchboard.redb";

/// A JSON record keyed by its id.
type RecordTable = TableDefinition<'static, &'static str, &'static [u8]>;
/// An index entry keyed by (parent id, child id).
type PairIndex = TableDefinition<'static, (&'static str, &'static str), ()>;
/// An index entry keyed by (parent id, creation seconds, creation nanos, child id).
type TimeIndex = TableDefinition<'static, (&'static str, i64, u32, &'static str), ()>;

const AGENTS: RecordTable = TableDefinition::new("agents");
const CALLS: RecordTable = TableDefinition::new("calls");
const TRANSFERS: RecordTable = TableDefinition::new("transfers");
const TRANSCRIPTS: RecordTable = TableDefinition::new("transcripts");
const SUMMARIES: RecordTable = TableDefinition::new("summaries");
const ROOMS: RecordTable = TableDefinition::new("rooms");
const EVENTS: TableDefinition<'static, (&'static str, u64), &'static [u8]> =
    TableDefinition::new("events");
const CALLS_BY_AGENT: PairIndex = TableDefinition::new("calls_by_agent");
const UNFINISHED_CALLS: TableDefinition<'static, &'static str, ()> =
    TableDefinition::new("unfinished_calls");
const TRANSFERS_BY_CALL: TimeIndex = TableDefinition::new("transfers_by_call");
const TRANSFERS_BY_STATUS: PairIndex = TableDefinition::new("transfers_by_status");
const TRANSCRIPTS_BY_CALL: TimeIndex = TableDefinition::new("transcripts_by_call");
const SUMMARIES_BY_CALL: TimeIndex = TableDefinition::new("summaries_by_call");
const ROOMS_BY_NAME: TableDefinition<'static, &'static str, &'static str> =
    TableDefinition::new("rooms_by_name");
// ---- End-of-call webhook deliveries ----
const WEBHOOK_DELIVERIES: RecordTable = TableDefinition::new("webhook_deliveries");
const WEBHOOKS_BY_CALL: TimeIndex = TableDefinition::new("webhooks_by_call");
const PENDING_WEBHOOKS: TableDefinition<'static, &'static str, ()> =
    TableDefinition::new("pending_webhooks");
// ---- end of webhook deliveries ----

/// A call as stored in the `calls` table (owned, for reading).
#[derive(Deserialize)]
struct CallRecord {
    call: Call,
    state: Value,
    version: u64,
}

/// A call as stored in the `calls` table (borrowed, for writing).
#[derive(Serialize)]
struct CallRecordRef<'a> {
    call: &'a Call,
    state: &'a Value,
    version: u64,
}

impl From<CallRecord> for StoredCall {
    fn from(r: CallRecord) -> Self {
        StoredCall {
            call: r.call,
            state: r.state,
            version: r.version,
        }
    }
}

/// Maps any backend failure into [`StoreError::Backend`] with what the store was doing.
trait OrBackend<T> {
    /// Wraps the error, if any, with `context`.
    fn or_backend(self, context: impl FnOnce() -> String) -> Result<T, StoreError>;
}

impl<T, E> OrBackend<T> for Result<T, E>
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn or_backend(self, context: impl FnOnce() -> String) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::backend(context(), e))
    }
}

/// Serializes a record to JSON bytes.
fn encode<T: Serialize + ?Sized>(entity: &str, id: &str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).or_backend(|| format!("encoding {entity} {id}"))
}

/// Deserializes a record from JSON bytes; a corrupt value is a backend error.
fn decode<T: DeserializeOwned>(entity: &str, id: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).or_backend(|| format!("decoding stored {entity} {id}"))
}

/// Whole seconds and nanoseconds of an instant, which order exactly like the instant.
fn time_key(at: &DateTime<Utc>) -> (i64, u32) {
    (at.timestamp(), at.timestamp_subsec_nanos())
}

/// Reads and decodes one JSON record, if present.
fn get_record<T, R>(table: &R, entity: &'static str, id: &str) -> Result<Option<T>, StoreError>
where
    T: DeserializeOwned,
    R: ReadableTable<&'static str, &'static [u8]>,
{
    let guard = table
        .get(id)
        .or_backend(|| format!("reading {entity} {id}"))?;
    match guard {
        Some(g) => decode(entity, id, g.value()).map(Some),
        None => Ok(None),
    }
}

/// Whether a JSON record with that id exists.
fn has_record<R>(table: &R, entity: &'static str, id: &str) -> Result<bool, StoreError>
where
    R: ReadableTable<&'static str, &'static [u8]>,
{
    Ok(table
        .get(id)
        .or_backend(|| format!("reading {entity} {id}"))?
        .is_some())
}

/// Reads and decodes every JSON record of a table.
fn all_records<T, R>(table: &R, entity: &'static str) -> Result<Vec<T>, StoreError>
where
    T: DeserializeOwned,
    R: ReadableTable<&'static str, &'static [u8]>,
{
    let mut out = Vec::new();
    for item in table.iter().or_backend(|| format!("scanning {entity}s"))? {
        let (k, v) = item.or_backend(|| format!("scanning {entity}s"))?;
        out.push(decode(entity, k.value(), v.value())?);
    }
    Ok(out)
}

/// The child ids of a `(parent, child)` index under one parent, in key order.
fn pair_index_ids<R>(index: &R, name: &'static str, parent: &str) -> Result<Vec<String>, StoreError>
where
    R: ReadableTable<(&'static str, &'static str), ()>,
{
    let mut ids = Vec::new();
    let range = index
        .range::<(&str, &str)>((parent, "")..)
        .or_backend(|| format!("scanning {name} for {parent}"))?;
    for item in range {
        let (k, _) = item.or_backend(|| format!("scanning {name} for {parent}"))?;
        let (p, child) = k.value();
        if p != parent {
            break;
        }
        ids.push(child.to_owned());
    }
    Ok(ids)
}

/// The child ids of a time-ordered index under one parent (oldest first, then by id).
fn time_index_ids<R>(index: &R, name: &'static str, parent: &str) -> Result<Vec<String>, StoreError>
where
    R: ReadableTable<(&'static str, i64, u32, &'static str), ()>,
{
    let mut ids = Vec::new();
    let range = index
        .range::<(&str, i64, u32, &str)>((parent, i64::MIN, 0, "")..)
        .or_backend(|| format!("scanning {name} for {parent}"))?;
    for item in range {
        let (k, _) = item.or_backend(|| format!("scanning {name} for {parent}"))?;
        let (p, _, _, child) = k.value();
        if p != parent {
            break;
        }
        ids.push(child.to_owned());
    }
    Ok(ids)
}

/// Loads the records an index points to, skipping (and logging) dangling entries.
fn load_all<T, R>(table: &R, entity: &'static str, ids: &[String]) -> Result<Vec<T>, StoreError>
where
    T: DeserializeOwned,
    R: ReadableTable<&'static str, &'static [u8]>,
{
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        match get_record(table, entity, id)? {
            Some(record) => out.push(record),
            None => tracing::warn!(entity, id = %id, "index points to a missing record"),
        }
    }
    Ok(out)
}

/// Runs `f` in a read transaction.
fn read<T>(
    db: &Database,
    op: &'static str,
    f: impl FnOnce(&ReadTransaction) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let txn = db
        .begin_read()
        .or_backend(|| format!("{op}: beginning read transaction"))?;
    f(&txn)
}

/// Runs `f` in a write transaction, committing on `Ok` and aborting (nothing lands) on `Err`.
fn write<T>(
    db: &Database,
    op: &'static str,
    f: impl FnOnce(&WriteTransaction) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let txn = db
        .begin_write()
        .or_backend(|| format!("{op}: beginning write transaction"))?;
    match f(&txn) {
        Ok(value) => {
            txn.commit()
                .or_backend(|| format!("{op}: committing write transaction"))?;
            Ok(value)
        }
        Err(e) => {
            if let Err(abort) = txn.abort() {
                tracing::warn!(op, error = %abort, "aborting write transaction failed");
            }
            Err(e)
        }
    }
}

/// Opens a table of a read or write transaction, mapping the error with context.
macro_rules! open_table {
    ($txn:expr, $def:expr, $op:expr) => {
        $txn.open_table($def)
            .or_backend(|| format!("{}: opening table {}", $op, $def.name()))?
    };
}

/// The embedded single-file [`Store`]: one redb database file in the data directory.
///
/// Cheap to clone; clones share the open database.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    path: PathBuf,
    writer: std::sync::mpsc::Sender<CommitJob>,
}

/// The most call commits the writer thread puts in one transaction.
pub const MAX_GROUP: usize = 256;

/// A call commit waiting for the writer thread, with where to send its answer.
type CommitJob = (
    CallCommit,
    tokio::sync::oneshot::Sender<Result<u64, StoreError>>,
);

/// The writer thread: group-commits what is waiting until every store handle is dropped. It
/// holds the database weakly, and lets go of it before answering, so once the last handle is
/// dropped after its last answer the file is closed (and may be opened again at once).
fn group_commit_loop(db: std::sync::Weak<Database>, rx: std::sync::mpsc::Receiver<CommitJob>) {
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

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens (creating if needed) `data_dir` and the database file `switchboard.redb` in it,
    /// and makes sure every table exists. Fails with [`StoreError::Backend`] if the directory
    /// cannot be created, the file is held by another process, or the file is corrupt.
    pub fn open(data_dir: &Path) -> Result<EmbeddedStore, StoreError> {
        std::fs::create_dir_all(data_dir)
            .or_backend(|| format!("creating data directory {}", data_dir.display()))?;
        let path = data_dir.join(DB_FILE_NAME);
        let db = Database::create(&path)
            .or_backend(|| format!("opening database file {}", path.display()))?;
        write(&db, "creating tables", |txn| {
            let op = "creating tables";
            for def in [AGENTS, CALLS, TRANSFERS, TRANSCRIPTS, SUMMARIES, ROOMS] {
                open_table!(txn, def, op);
            }
            open_table!(txn, EVENTS, op);
            open_table!(txn, CALLS_BY_AGENT, op);
            open_table!(txn, UNFINISHED_CALLS, op);
            open_table!(txn, TRANSFERS_BY_CALL, op);
            open_table!(txn, TRANSFERS_BY_STATUS, op);
            open_table!(txn, TRANSCRIPTS_BY_CALL, op);
            open_table!(txn, SUMMARIES_BY_CALL, op);
            open_table!(txn, ROOMS_BY_NAME, op);
            open_table!(txn, WEBHOOK_DELIVERIES, op);
            open_table!(txn, WEBHOOKS_BY_CALL, op);
            open_table!(txn, PENDING_WEBHOOKS, op);
            Ok(())
        })?;
        let db = Arc::new(db);
        let (writer, jobs) = std::sync::mpsc::channel();
        let weak = Arc::downgrade(&db);
        std::thread::Builder::new()
            .name("redb-group-commit".into())
            .spawn(move || group_commit_loop(weak, jobs))
            .or_backend(|| "starting the group-commit thread".to_owned())?;
        Ok(EmbeddedStore { db, path, writer })
    }

    /// The path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` against the database on tokio's blocking pool.
    async fn blocking<T, F>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .or_backend(|| format!("{op}: blocking task failed"))?
    }
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
        let taken = events
            .get(key)
            .or_backend(|| format!("{OP}: reading event {} of {}", event.seq, event.call_id))?
            .is_some();
        if taken || !in_commit.insert(key) {
            return Err(StoreError::DuplicateEvent {
                call_id: event.call_id.clone(),
                seq: event.seq,
            });
        }
    }
    Ok(())
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
        let taken = events
            .get(key)
            .or_backend(|| format!("{OP}: reading event {} of {}", event.seq, event.call_id))?
            .is_some();
        if taken {
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

#[async_trait]
impl Store for EmbeddedStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.blocking("ping", |db| {
            read(db, "ping", |txn| {
                let agents = open_table!(txn, AGENTS, "ping");
                agents.len().or_backend(|| "ping: counting agents".into())?;
                Ok(())
            })
        })
        .await
    }

    async fn create_agent(&self, agent: &Agent) -> Result<Agent, StoreError> {
        let mut agent = agent.clone();
        agent.version = 1;
        self.blocking("create_agent", move |db| {
            write(db, "create_agent", |txn| {
                let mut agents = open_table!(txn, AGENTS, "create_agent");
                let id = agent.agent_id.as_str();
                if has_record(&agents, "agent", id)? {
                    return Err(StoreError::AlreadyExists {
                        entity: "agent",
                        id: id.to_owned(),
                    });
                }
                let bytes = encode("agent", id, &agent)?;
                agents
                    .insert(id, bytes.as_slice())
                    .or_backend(|| format!("create_agent: writing agent {id}"))?;
                Ok(())
            })?;
            Ok(agent)
        })
        .await
    }

    async fn get_agent(&self, agent_id: &str) -> Result<Option<Agent>, StoreError> {
        let id = agent_id.to_owned();
        self.blocking("get_agent", move |db| {
            read(db, "get_agent", |txn| {
                let agents = open_table!(txn, AGENTS, "get_agent");
                get_record(&agents, "agent", &id)
            })
        })
        .await
    }

    async fn update_agent(&self, agent: &Agent) -> Result<Agent, StoreError> {
        let mut agent = agent.clone();
        self.blocking("update_agent", move |db| {
            write(db, "update_agent", |txn| {
                let mut agents = open_table!(txn, AGENTS, "update_agent");
                let id = agent.agent_id.clone();
                let stored: Option<Agent> = get_record(&agents, "agent", &id)?;
                let Some(stored) = stored else {
                    return Err(StoreError::NotFound {
                        entity: "agent",
                        id,
                    });
                };
                if stored.version != agent.version {
                    return Err(StoreError::VersionConflict {
                        entity: "agent",
                        id,
                        expected: agent.version,
                    });
                }
                agent.version = agent.version.checked_add(1).ok_or_else(|| {
                    StoreError::backend(
                        format!("update_agent {id}"),
                        "agent version overflowed u64",
                    )
                })?;
                let bytes = encode("agent", &id, &agent)?;
                agents
                    .insert(id.as_str(), bytes.as_slice())
                    .or_backend(|| format!("update_agent: writing agent {id}"))?;
                Ok(())
            })?;
            Ok(agent)
        })
        .await
    }

    async fn list_agents(&self) -> Result<Vec<Agent>, StoreError> {
        self.blocking("list_agents", |db| {
            read(db, "list_agents", |txn| {
                let agents = open_table!(txn, AGENTS, "list_agents");
                let mut all: Vec<Agent> = all_records(&agents, "agent")?;
                all.sort_by(|a, b| (a.created_at, &a.agent_id).cmp(&(b.created_at, &b.agent_id)));
                Ok(all)
            })
        })
        .await
    }

    async fn commit_call(&self, commit: CallCommit) -> Result<u64, StoreError> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.writer
            .send((commit, answer))
            .map_err(|_| StoreError::backend("commit_call", "the group-commit thread stopped"))?;
        answered
            .await
            .map_err(|_| StoreError::backend("commit_call", "the group-commit thread dropped it"))?
    }

    async fn get_call(&self, call_id: &str) -> Result<Option<StoredCall>, StoreError> {
        let id = call_id.to_owned();
        self.blocking("get_call", move |db| {
            read(db, "get_call", |txn| {
                let calls = open_table!(txn, CALLS, "get_call");
                let record: Option<CallRecord> = get_record(&calls, "call", &id)?;
                Ok(record.map(StoredCall::from))
            })
        })
        .await
    }

    async fn list_calls_by_agent(&self, agent_id: &str) -> Result<Vec<Call>, StoreError> {
        let agent_id = agent_id.to_owned();
        self.blocking("list_calls_by_agent", move |db| {
            read(db, "list_calls_by_agent", |txn| {
                let index = open_table!(txn, CALLS_BY_AGENT, "list_calls_by_agent");
                let calls = open_table!(txn, CALLS, "list_calls_by_agent");
                let ids = pair_index_ids(&index, "calls_by_agent", &agent_id)?;
                let records: Vec<CallRecord> = load_all(&calls, "call", &ids)?;
                let mut out: Vec<Call> = records.into_iter().map(|r| r.call).collect();
                out.sort_by(|a, b| (b.created_at, &b.call_id).cmp(&(a.created_at, &a.call_id)));
                Ok(out)
            })
        })
        .await
    }

    async fn list_unfinished_calls(&self) -> Result<Vec<StoredCall>, StoreError> {
        self.blocking("list_unfinished_calls", |db| {
            read(db, "list_unfinished_calls", |txn| {
                let index = open_table!(txn, UNFINISHED_CALLS, "list_unfinished_calls");
                let calls = open_table!(txn, CALLS, "list_unfinished_calls");
                let mut ids = Vec::new();
                let scan = || "list_unfinished_calls: scanning unfinished_calls".to_owned();
                for item in index.iter().or_backend(scan)? {
                    let (k, _) = item.or_backend(scan)?;
                    ids.push(k.value().to_owned());
                }
                let records: Vec<CallRecord> = load_all(&calls, "call", &ids)?;
                let mut out: Vec<StoredCall> = records.into_iter().map(StoredCall::from).collect();
                out.sort_by(|a, b| {
                    (a.call.created_at, &a.call.call_id).cmp(&(b.call.created_at, &b.call.call_id))
                });
                Ok(out)
            })
        })
        .await
    }

    async fn get_transfer(&self, transfer_id: &str) -> Result<Option<Transfer>, StoreError> {
        let id = transfer_id.to_owned();
        self.blocking("get_transfer", move |db| {
            read(db, "get_transfer", |txn| {
                let transfers = open_table!(txn, TRANSFERS, "get_transfer");
                get_record(&transfers, "transfer", &id)
            })
        })
        .await
    }

    async fn list_transfers_by_call(&self, call_id: &str) -> Result<Vec<Transfer>, StoreError> {
        let call_id = call_id.to_owned();
        self.blocking("list_transfers_by_call", move |db| {
            read(db, "list_transfers_by_call", |txn| {
                let index = open_table!(txn, TRANSFERS_BY_CALL, "list_transfers_by_call");
                let transfers = open_table!(txn, TRANSFERS, "list_transfers_by_call");
                let ids = time_index_ids(&index, "transfers_by_call", &call_id)?;
                load_all(&transfers, "transfer", &ids)
            })
        })
        .await
    }

    async fn list_transfers(
        &self,
        statuses: &[TransferStatus],
    ) -> Result<Vec<Transfer>, StoreError> {
        let mut statuses = statuses.to_vec();
        statuses.sort_by_key(|s| s.as_str());
        statuses.dedup();
        self.blocking("list_transfers", move |db| {
            read(db, "list_transfers", |txn| {
                let transfers = open_table!(txn, TRANSFERS, "list_transfers");
                let mut out: Vec<Transfer> = if statuses.is_empty() {
                    all_records(&transfers, "transfer")?
                } else {
                    let index = open_table!(txn, TRANSFERS_BY_STATUS, "list_transfers");
                    let mut ids = Vec::new();
                    for status in &statuses {
                        ids.extend(pair_index_ids(
                            &index,
                            "transfers_by_status",
                            status.as_str(),
                        )?);
                    }
                    load_all(&transfers, "transfer", &ids)?
                };
                out.sort_by(|a, b| {
                    (a.created_at, &a.transfer_id).cmp(&(b.created_at, &b.transfer_id))
                });
                Ok(out)
            })
        })
        .await
    }

    async fn put_transcript(&self, transcript: &Transcript) -> Result<(), StoreError> {
        let t = transcript.clone();
        self.blocking("put_transcript", move |db| {
            write(db, "put_transcript", |txn| {
                let op = "put_transcript";
                let mut table = open_table!(txn, TRANSCRIPTS, op);
                let mut index = open_table!(txn, TRANSCRIPTS_BY_CALL, op);
                let id = t.transcript_id.as_str();
                if has_record(&table, "transcript", id)? {
                    return Err(StoreError::AlreadyExists {
                        entity: "transcript",
                        id: id.to_owned(),
                    });
                }
                let bytes = encode("transcript", id, &t)?;
                table
                    .insert(id, bytes.as_slice())
                    .or_backend(|| format!("{op}: writing transcript {id}"))?;
                let (secs, nanos) = time_key(&t.created_at);
                index
                    .insert((t.call_id.as_str(), secs, nanos, id), ())
                    .or_backend(|| format!("{op}: indexing transcript {id}"))?;
                Ok(())
            })
        })
        .await
    }

    async fn get_transcript(&self, transcript_id: &str) -> Result<Option<Transcript>, StoreError> {
        let id = transcript_id.to_owned();
        self.blocking("get_transcript", move |db| {
            read(db, "get_transcript", |txn| {
                let table = open_table!(txn, TRANSCRIPTS, "get_transcript");
                get_record(&table, "transcript", &id)
            })
        })
        .await
    }

    async fn list_transcripts_by_call(&self, call_id: &str) -> Result<Vec<Transcript>, StoreError> {
        let call_id = call_id.to_owned();
        self.blocking("list_transcripts_by_call", move |db| {
            read(db, "list_transcripts_by_call", |txn| {
                let op = "list_transcripts_by_call";
                let index = open_table!(txn, TRANSCRIPTS_BY_CALL, op);
                let table = open_table!(txn, TRANSCRIPTS, op);
                let ids = time_index_ids(&index, "transcripts_by_call", &call_id)?;
                load_all(&table, "transcript", &ids)
            })
        })
        .await
    }

    async fn put_summary(&self, summary: &Summary) -> Result<(), StoreError> {
        let s = summary.clone();
        self.blocking("put_summary", move |db| {
            write(db, "put_summary", |txn| {
                let op = "put_summary";
                let mut table = open_table!(txn, SUMMARIES, op);
                let mut index = open_table!(txn, SUMMARIES_BY_CALL, op);
                let id = s.summary_id.as_str();
                if has_record(&table, "summary", id)? {
                    return Err(StoreError::AlreadyExists {
                        entity: "summary",
                        id: id.to_owned(),
                    });
                }
                let bytes = encode("summary", id, &s)?;
                table
                    .insert(id, bytes.as_slice())
                    .or_backend(|| format!("{op}: writing summary {id}"))?;
                let (secs, nanos) = time_key(&s.created_at);
                index
                    .insert((s.call_id.as_str(), secs, nanos, id), ())
                    .or_backend(|| format!("{op}: indexing summary {id}"))?;
                Ok(())
            })
        })
        .await
    }

    async fn get_summary(&self, summary_id: &str) -> Result<Option<Summary>, StoreError> {
        let id = summary_id.to_owned();
        self.blocking("get_summary", move |db| {
            read(db, "get_summary", |txn| {
                let table = open_table!(txn, SUMMARIES, "get_summary");
                get_record(&table, "summary", &id)
            })
        })
        .await
    }

    async fn list_summaries_by_call(&self, call_id: &str) -> Result<Vec<Summary>, StoreError> {
        let call_id = call_id.to_owned();
        self.blocking("list_summaries_by_call", move |db| {
            read(db, "list_summaries_by_call", |txn| {
                let op = "list_summaries_by_call";
                let index = open_table!(txn, SUMMARIES_BY_CALL, op);
                let table = open_table!(txn, SUMMARIES, op);
                let ids = time_index_ids(&index, "summaries_by_call", &call_id)?;
                load_all(&table, "summary", &ids)
            })
        })
        .await
    }

    async fn put_room(&self, room: &Room) -> Result<(), StoreError> {
        let room = room.clone();
        self.blocking("put_room", move |db| {
            write(db, "put_room", |txn| {
                let op = "put_room";
                let mut rooms = open_table!(txn, ROOMS, op);
                let mut by_name = open_table!(txn, ROOMS_BY_NAME, op);
                let id = room.room_id.as_str();
                let old: Option<Room> = get_record(&rooms, "room", id)?;
                if let Some(old) = old.filter(|old| old.room_name != room.room_name) {
                    let points_here = by_name
                        .get(old.room_name.as_str())
                        .or_backend(|| format!("{op}: reading room name {}", old.room_name))?
                        .is_some_and(|g| g.value() == id);
                    if points_here {
                        by_name.remove(old.room_name.as_str()).or_backend(|| {
                            format!("{op}: unindexing room name {}", old.room_name)
                        })?;
                    }
                }
                let bytes = encode("room", id, &room)?;
                rooms
                    .insert(id, bytes.as_slice())
                    .or_backend(|| format!("{op}: writing room {id}"))?;
                by_name
                    .insert(room.room_name.as_str(), id)
                    .or_backend(|| format!("{op}: indexing room name {}", room.room_name))?;
                Ok(())
            })
        })
        .await
    }

    async fn get_room(&self, room_id: &str) -> Result<Option<Room>, StoreError> {
        let id = room_id.to_owned();
        self.blocking("get_room", move |db| {
            read(db, "get_room", |txn| {
                let rooms = open_table!(txn, ROOMS, "get_room");
                get_record(&rooms, "room", &id)
            })
        })
        .await
    }

    async fn get_room_by_name(&self, room_name: &str) -> Result<Option<Room>, StoreError> {
        let name = room_name.to_owned();
        self.blocking("get_room_by_name", move |db| {
            read(db, "get_room_by_name", |txn| {
                let op = "get_room_by_name";
                let by_name = open_table!(txn, ROOMS_BY_NAME, op);
                let rooms = open_table!(txn, ROOMS, op);
                let id = by_name
                    .get(name.as_str())
                    .or_backend(|| format!("{op}: reading room name {name}"))?
                    .map(|g| g.value().to_owned());
                match id {
                    Some(id) => get_record(&rooms, "room", &id),
                    None => Ok(None),
                }
            })
        })
        .await
    }

    async fn events_since(&self, call_id: &str, after_seq: u64) -> Result<Vec<Event>, StoreError> {
        let Some(first) = after_seq.checked_add(1) else {
            return Ok(Vec::new());
        };
        let call_id = call_id.to_owned();
        self.blocking("events_since", move |db| {
            read(db, "events_since", |txn| {
                let events = open_table!(txn, EVENTS, "events_since");
                let scan = || format!("events_since: scanning events of {call_id}");
                let mut out = Vec::new();
                let range = events
                    .range::<(&str, u64)>((call_id.as_str(), first)..=(call_id.as_str(), u64::MAX))
                    .or_backend(scan)?;
                for item in range {
                    let (k, v) = item.or_backend(scan)?;
                    let (_, seq) = k.value();
                    out.push(decode("event", &format!("{call_id}#{seq}"), v.value())?);
                }
                Ok(out)
            })
        })
        .await
    }

    // ---- Organisations: API keys, assistants, SIP trunks (see `org_store` below) ----

    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        let key = key.clone();
        self.blocking("create_api_key", move |db| {
            org_store::create(db, org_store::API_KEYS, "api key", &key.key_id, &key)
        })
        .await
    }

    async fn get_api_key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let id = key_id.to_owned();
        self.blocking("get_api_key", move |db| {
            org_store::get(db, org_store::API_KEYS, "api key", &id)
        })
        .await
    }

    async fn list_api_keys(&self, org_id: Option<&str>) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let org = org_id.map(str::to_owned);
        self.blocking("list_api_keys", move |db| {
            let mut all: Vec<ApiKeyRecord> = org_store::list(db, org_store::API_KEYS, "api key")?;
            all.retain(|k| org.as_deref().is_none_or(|o| k.org_id == o));
            all.sort_by(|a, b| (a.created_at, &a.key_id).cmp(&(b.created_at, &b.key_id)));
            Ok(all)
        })
        .await
    }

    async fn revoke_api_key(
        &self,
        key_id: &str,
        at: DateTime<Utc>,
    ) -> Result<ApiKeyRecord, StoreError> {
        let id = key_id.to_owned();
        self.blocking("revoke_api_key", move |db| {
            write(db, "revoke_api_key", |txn| {
                let mut t = open_table!(txn, org_store::API_KEYS, "revoke_api_key");
                let stored: Option<ApiKeyRecord> = get_record(&t, "api key", &id)?;
                let Some(mut key) = stored else {
                    return Err(StoreError::NotFound {
                        entity: "api key",
                        id,
                    });
                };
                key.revoked_at.get_or_insert(at);
                let bytes = encode("api key", &id, &key)?;
                t.insert(id.as_str(), bytes.as_slice())
                    .or_backend(|| format!("revoke_api_key: writing {id}"))?;
                Ok(key)
            })
        })
        .await
    }

    async fn create_assistant(&self, assistant: &Assistant) -> Result<Assistant, StoreError> {
        let mut a = assistant.clone();
        a.version = 1;
        self.blocking("create_assistant", move |db| {
            org_store::create(db, org_store::ASSISTANTS, "assistant", &a.assistant_id, &a)?;
            Ok(a)
        })
        .await
    }

    async fn get_assistant(&self, assistant_id: &str) -> Result<Option<Assistant>, StoreError> {
        let id = assistant_id.to_owned();
        self.blocking("get_assistant", move |db| {
            org_store::get(db, org_store::ASSISTANTS, "assistant", &id)
        })
        .await
    }

    async fn list_assistants(&self, org_id: Option<&str>) -> Result<Vec<Assistant>, StoreError> {
        let org = org_id.map(str::to_owned);
        self.blocking("list_assistants", move |db| {
            let mut all: Vec<Assistant> = org_store::list(db, org_store::ASSISTANTS, "assistant")?;
            all.retain(|a| org.as_deref().is_none_or(|o| a.org_id == o));
            all.sort_by(|a, b| {
                (a.created_at, &a.assistant_id).cmp(&(b.created_at, &b.assistant_id))
            });
            Ok(all)
        })
        .await
    }

    async fn update_assistant(&self, assistant: &Assistant) -> Result<Assistant, StoreError> {
        let mut a = assistant.clone();
        self.blocking("update_assistant", move |db| {
            write(db, "update_assistant", |txn| {
                let mut t = open_table!(txn, org_store::ASSISTANTS, "update_assistant");
                let id = a.assistant_id.clone();
                let stored: Option<Assistant> = get_record(&t, "assistant", &id)?;
                let Some(stored) = stored else {
                    return Err(StoreError::NotFound {
                        entity: "assistant",
                        id,
                    });
                };
                if stored.version != a.version {
                    return Err(StoreError::VersionConflict {
                        entity: "assistant",
                        id,
                        expected: a.version,
                    });
                }
                a.version = a.version.checked_add(1).ok_or_else(|| {
                    StoreError::backend(format!("update_assistant {id}"), "version overflowed")
                })?;
                let bytes = encode("assistant", &id, &a)?;
                t.insert(id.as_str(), bytes.as_slice())
                    .or_backend(|| format!("update_assistant: writing {id}"))?;
                Ok(())
            })?;
            Ok(a)
        })
        .await
    }

    async fn delete_assistant(&self, assistant_id: &str) -> Result<bool, StoreError> {
        let id = assistant_id.to_owned();
        self.blocking("delete_assistant", move |db| {
            org_store::delete(db, org_store::ASSISTANTS, "assistant", &id)
        })
        .await
    }

    async fn create_sip_trunk(&self, trunk: &SipTrunk) -> Result<(), StoreError> {
        let t = trunk.clone();
        self.blocking("create_sip_trunk", move |db| {
            org_store::create(db, org_store::SIP_TRUNKS, "sip trunk", &t.trunk_id, &t)
        })
        .await
    }

    async fn get_sip_trunk(&self, trunk_id: &str) -> Result<Option<SipTrunk>, StoreError> {
        let id = trunk_id.to_owned();
        self.blocking("get_sip_trunk", move |db| {
            org_store::get(db, org_store::SIP_TRUNKS, "sip trunk", &id)
        })
        .await
    }

    async fn list_sip_trunks(&self, org_id: Option<&str>) -> Result<Vec<SipTrunk>, StoreError> {
        let org = org_id.map(str::to_owned);
        self.blocking("list_sip_trunks", move |db| {
            let mut all: Vec<SipTrunk> = org_store::list(db, org_store::SIP_TRUNKS, "sip trunk")?;
            all.retain(|t| org.as_deref().is_none_or(|o| t.org_id == o));
            all.sort_by(|a, b| (a.created_at, &a.trunk_id).cmp(&(b.created_at, &b.trunk_id)));
            Ok(all)
        })
        .await
    }

    async fn delete_sip_trunk(&self, trunk_id: &str) -> Result<bool, StoreError> {
        let id = trunk_id.to_owned();
        self.blocking("delete_sip_trunk", move |db| {
            org_store::delete(db, org_store::SIP_TRUNKS, "sip trunk", &id)
        })
        .await
    }

    // ---- end of organisations ----

    // ---- End-of-call webhook deliveries ----

    async fn create_webhook_delivery(
        &self,
        delivery: &WebhookDelivery,
    ) -> Result<WebhookDelivery, StoreError> {
        let mut d = delivery.clone();
        d.version = 1;
        self.blocking("create_webhook_delivery", move |db| {
            write(db, "create_webhook_delivery", |txn| {
                let op = "create_webhook_delivery";
                let mut table = open_table!(txn, WEBHOOK_DELIVERIES, op);
                let mut by_call = open_table!(txn, WEBHOOKS_BY_CALL, op);
                let mut pending = open_table!(txn, PENDING_WEBHOOKS, op);
                let id = d.delivery_id.as_str();
                if has_record(&table, "webhook delivery", id)? {
                    return Err(StoreError::AlreadyExists {
                        entity: "webhook delivery",
                        id: id.to_owned(),
                    });
                }
                let bytes = encode("webhook delivery", id, &d)?;
                table
                    .insert(id, bytes.as_slice())
                    .or_backend(|| format!("{op}: writing {id}"))?;
                let (secs, nanos) = time_key(&d.created_at);
                by_call
                    .insert((d.call_id.as_str(), secs, nanos, id), ())
                    .or_backend(|| format!("{op}: indexing {id}"))?;
                if d.status == DeliveryStatus::Pending {
                    pending
                        .insert(id, ())
                        .or_backend(|| format!("{op}: marking {id} pending"))?;
                }
                Ok(())
            })?;
            Ok(d)
        })
        .await
    }

    async fn update_webhook_delivery(
        &self,
        delivery: &WebhookDelivery,
    ) -> Result<WebhookDelivery, StoreError> {
        let mut d = delivery.clone();
        self.blocking("update_webhook_delivery", move |db| {
            write(db, "update_webhook_delivery", |txn| {
                let op = "update_webhook_delivery";
                let mut table = open_table!(txn, WEBHOOK_DELIVERIES, op);
                let mut pending = open_table!(txn, PENDING_WEBHOOKS, op);
                let id = d.delivery_id.clone();
                let stored: Option<WebhookDelivery> = get_record(&table, "webhook delivery", &id)?;
                let Some(stored) = stored else {
                    return Err(StoreError::NotFound {
                        entity: "webhook delivery",
                        id,
                    });
                };
                if stored.version != d.version {
                    return Err(StoreError::VersionConflict {
                        entity: "webhook delivery",
                        id,
                        expected: d.version,
                    });
                }
                d.version = d.version.checked_add(1).ok_or_else(|| {
                    StoreError::backend(format!("{op} {id}"), "version overflowed u64")
                })?;
                let bytes = encode("webhook delivery", &id, &d)?;
                table
                    .insert(id.as_str(), bytes.as_slice())
                    .or_backend(|| format!("{op}: writing {id}"))?;
                if d.status == DeliveryStatus::Pending {
                    pending
                        .insert(id.as_str(), ())
                        .or_backend(|| format!("{op}: marking {id} pending"))?;
                } else {
                    pending
                        .remove(id.as_str())
                        .or_backend(|| format!("{op}: unmarking {id}"))?;
                }
                Ok(())
            })?;
            Ok(d)
        })
        .await
    }

    async fn get_webhook_delivery(
        &self,
        delivery_id: &str,
    ) -> Result<Option<WebhookDelivery>, StoreError> {
        let id = delivery_id.to_owned();
        self.blocking("get_webhook_delivery", move |db| {
            read(db, "get_webhook_delivery", |txn| {
                let table = open_table!(txn, WEBHOOK_DELIVERIES, "get_webhook_delivery");
                get_record(&table, "webhook delivery", &id)
            })
        })
        .await
    }

    async fn list_webhook_deliveries_by_call(
        &self,
        call_id: &str,
    ) -> Result<Vec<WebhookDelivery>, StoreError> {
        let call_id = call_id.to_owned();
        self.blocking("list_webhook_deliveries_by_call", move |db| {
            read(db, "list_webhook_deliveries_by_call", |txn| {
                let op = "list_webhook_deliveries_by_call";
                let index = open_table!(txn, WEBHOOKS_BY_CALL, op);
                let table = open_table!(txn, WEBHOOK_DELIVERIES, op);
                let ids = time_index_ids(&index, "webhooks_by_call", &call_id)?;
                load_all(&table, "webhook delivery", &ids)
            })
        })
        .await
    }

    async fn list_pending_webhook_deliveries(&self) -> Result<Vec<WebhookDelivery>, StoreError> {
        self.blocking("list_pending_webhook_deliveries", |db| {
            read(db, "list_pending_webhook_deliveries", |txn| {
                let op = "list_pending_webhook_deliveries";
                let pending = open_table!(txn, PENDING_WEBHOOKS, op);
                let table = open_table!(txn, WEBHOOK_DELIVERIES, op);
                let mut ids = Vec::new();
                for item in pending.iter().or_backend(|| format!("{op}: scanning"))? {
                    let (k, _) = item.or_backend(|| format!("{op}: scanning"))?;
                    ids.push(k.value().to_owned());
                }
                let mut out: Vec<WebhookDelivery> = load_all(&table, "webhook delivery", &ids)?;
                out.sort_by(|a, b| {
                    (a.created_at, &a.delivery_id).cmp(&(b.created_at, &b.delivery_id))
                });
                Ok(out)
            })
        })
        .await
    }

    // ---- end of webhook deliveries ----
}

/// The organisations' tables: `api_keys` (`keyId` → [`ApiKeyRecord`] JSON, the secret only
/// as its digest), `assistants` (`assistantId` → [`Assistant`] JSON) and `sip_trunks`
/// (`trunkId` → [`SipTrunk`] JSON). They are created by their first write; before it, reads
/// find nothing. Listing by organisation scans the table and filters: an organisation's keys,
/// assistants and trunks number in the dozens, not in the millions calls do.
mod org_store {
    use redb::{Database, TableError};
    use serde::de::DeserializeOwned;
    use serde::Serialize;

    use super::{all_records, encode, get_record, has_record, read, write, OrBackend, RecordTable};
    use crate::store::StoreError;

    pub const API_KEYS: RecordTable = RecordTable::new("api_keys");
    pub const ASSISTANTS: RecordTable = RecordTable::new("assistants");
    pub const SIP_TRUNKS: RecordTable = RecordTable::new("sip_trunks");

    /// Stores a new record; `AlreadyExists` if the id is taken.
    pub fn create<T: Serialize>(
        db: &Database,
        def: RecordTable,
        entity: &'static str,
        id: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        write(db, "create", |txn| {
            let mut t = txn
                .open_table(def)
                .or_backend(|| format!("creating {entity} {id}: opening table"))?;
            if has_record(&t, entity, id)? {
                return Err(StoreError::AlreadyExists {
                    entity,
                    id: id.to_owned(),
                });
            }
            let bytes = encode(entity, id, value)?;
            t.insert(id, bytes.as_slice())
                .or_backend(|| format!("creating {entity} {id}"))?;
            Ok(())
        })
    }

    /// Reads a record; none when its table was never written.
    pub fn get<T: DeserializeOwned>(
        db: &Database,
        def: RecordTable,
        entity: &'static str,
        id: &str,
    ) -> Result<Option<T>, StoreError> {
        read(db, "get", |txn| match txn.open_table(def) {
            Ok(t) => get_record(&t, entity, id),
            Err(TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(StoreError::backend(format!("reading {entity} {id}"), e)),
        })
    }

    /// Every record of a table.
    pub fn list<T: DeserializeOwned>(
        db: &Database,
        def: RecordTable,
        entity: &'static str,
    ) -> Result<Vec<T>, StoreError> {
        read(db, "list", |txn| match txn.open_table(def) {
            Ok(t) => all_records(&t, entity),
            Err(TableError::TableDoesNotExist(_)) => Ok(Vec::new()),
            Err(e) => Err(StoreError::backend(format!("listing {entity}s"), e)),
        })
    }

    /// Deletes a record; whether it existed.
    pub fn delete(
        db: &Database,
        def: RecordTable,
        entity: &'static str,
        id: &str,
    ) -> Result<bool, StoreError> {
        write(db, "delete", |txn| {
            let mut t = txn
                .open_table(def)
                .or_backend(|| format!("deleting {entity} {id}: opening table"))?;
            let removed = t
                .remove(id)
                .or_backend(|| format!("deleting {entity} {id}"))?
                .is_some();
            Ok(removed)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance;

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
}
