//! The embedded store's calls, transfers, events and rooms ([`CallStore`]).

use async_trait::async_trait;
use redb::{ReadableTable, ReadableTableMetadata};

use super::*;
use crate::model::{Call, Event, Room, Transfer, TransferStatus};
use crate::store::{CallCommit, CallStore, StoreError, StoredCall};

#[async_trait]
impl CallStore for EmbeddedStore {
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
                let ids = key_ids(&index, "list_unfinished_calls", "unfinished_calls")?;
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
        self.get_json("get_transfer", TRANSFERS, "transfer", transfer_id)
            .await
    }

    async fn list_transfers_by_call(&self, call_id: &str) -> Result<Vec<Transfer>, StoreError> {
        let op = "list_transfers_by_call";
        self.list_by_time_index(op, TRANSFERS_BY_CALL, TRANSFERS, "transfer", call_id)
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
                oldest_first(&mut out);
                Ok(out)
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
        self.get_json("get_room", ROOMS, "room", room_id).await
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
}
