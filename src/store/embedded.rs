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
//! docs/benchmarks.md: an fsync costs milliseconds here, so one per transition capped the whole
//! node at a few hundred transitions per second).
//!
//! [`Agent`]: crate::model::Agent
//! [`Transfer`]: crate::model::Transfer
//! [`Transcript`]: crate::model::Transcript
//! [`Summary`]: crate::model::Summary
//! [`Room`]: crate::model::Room
//! [`Event`]: crate::model::Event

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use redb::{Database, ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::record::{next_version, of_org, oldest_first, Record, Versioned};
use super::{StoreError, StoredCall};
use crate::model::Call;

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
fn time_index_ids<R>(index: &R, name: &str, parent: &str) -> Result<Vec<String>, StoreError>
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

/// The keys of a set-like table (`id` → `()`), in key order.
fn key_ids<R>(set: &R, op: &str, name: &str) -> Result<Vec<String>, StoreError>
where
    R: ReadableTable<&'static str, ()>,
{
    let scan = || format!("{op}: scanning {name}");
    let mut ids = Vec::new();
    for item in set.iter().or_backend(scan)? {
        let (k, _) = item.or_backend(scan)?;
        ids.push(k.value().to_owned());
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
            .or_backend(|| format!("{}: opening table {}", $op, redb::TableHandle::name(&$def)))?
    };
}

/// The embedded single-file [`Store`](crate::store::Store): one redb database file in the data directory.
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

impl EmbeddedStore {
    /// Reads one JSON record of `def` by id.
    async fn get_json<T>(
        &self,
        op: &'static str,
        def: RecordTable,
        entity: &'static str,
        id: &str,
    ) -> Result<Option<T>, StoreError>
    where
        T: DeserializeOwned + Send + 'static,
    {
        let id = id.to_owned();
        self.blocking(op, move |db| {
            read(db, op, |txn| {
                let table = open_table!(txn, def, op);
                get_record(&table, entity, &id)
            })
        })
        .await
    }

    /// The records of `def` that the time-ordered `index` lists under `parent`, oldest first.
    async fn list_by_time_index<T>(
        &self,
        op: &'static str,
        index: TimeIndex,
        def: RecordTable,
        entity: &'static str,
        parent: &str,
    ) -> Result<Vec<T>, StoreError>
    where
        T: DeserializeOwned + Send + 'static,
    {
        let parent = parent.to_owned();
        self.blocking(op, move |db| {
            read(db, op, |txn| {
                let by_parent = open_table!(txn, index, op);
                let table = open_table!(txn, def, op);
                let ids = time_index_ids(&by_parent, redb::TableHandle::name(&index), &parent)?;
                load_all(&table, entity, &ids)
            })
        })
        .await
    }
}

/// Writes a new JSON record; `AlreadyExists` (writing nothing) if the id is taken.
fn insert_new<T: Serialize + ?Sized>(
    table: &mut redb::Table<'_, &'static str, &'static [u8]>,
    op: &str,
    entity: &'static str,
    id: &str,
    value: &T,
) -> Result<(), StoreError> {
    if has_record(table, entity, id)? {
        return Err(StoreError::AlreadyExists {
            entity,
            id: id.to_owned(),
        });
    }
    let bytes = encode(entity, id, value)?;
    table
        .insert(id, bytes.as_slice())
        .or_backend(|| format!("{op}: writing {entity} {id}"))?;
    Ok(())
}

/// Replaces a versioned JSON record if its stored version is the one `record` names, bumping
/// the version in `record`; `NotFound` or `VersionConflict` (writing nothing) otherwise.
fn replace_versioned<T>(
    table: &mut redb::Table<'_, &'static str, &'static [u8]>,
    op: &str,
    record: &mut T,
) -> Result<(), StoreError>
where
    T: Versioned + Serialize + DeserializeOwned,
{
    let id = record.id().to_owned();
    let stored: Option<T> = get_record(table, T::ENTITY, &id)?;
    let version = next_version(
        T::ENTITY,
        &id,
        stored.map(|s| s.version()),
        record.version(),
    )?;
    record.set_version(version);
    let bytes = encode(T::ENTITY, &id, record)?;
    table
        .insert(id.as_str(), bytes.as_slice())
        .or_backend(|| format!("{op}: writing {} {id}", T::ENTITY))?;
    Ok(())
}

/// Lists `id` under `parent` in a time-ordered index, at `created_at`.
fn index_by_time(
    index: &mut redb::Table<'_, (&'static str, i64, u32, &'static str), ()>,
    op: &str,
    entity: &str,
    parent: &str,
    created_at: &DateTime<Utc>,
    id: &str,
) -> Result<(), StoreError> {
    let (secs, nanos) = time_key(created_at);
    index
        .insert((parent, secs, nanos, id), ())
        .or_backend(|| format!("{op}: indexing {entity} {id}"))?;
    Ok(())
}

mod agents;
mod calls;
mod commit;
use self::commit::{group_commit_loop, CommitJob};
mod org;
mod transcripts;
mod webhooks;

#[cfg(test)]
mod tests;
