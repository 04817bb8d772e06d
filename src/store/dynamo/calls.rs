//! The DynamoDB store's calls, transfers, events and rooms ([`CallStore`]).

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;

use super::codec::{codec_err, from_item, get_i64, get_s, get_u64, n, s, to_item};
use super::*;
use crate::store::CallStore;

#[async_trait]
impl CallStore for DynamoStore {
    async fn ping(&self) -> Result<(), StoreError> {
        let key = HashMap::from([("callId".to_owned(), s("__switchboard_ping__"))]);
        self.get_item(&self.tables.calls, key, || {
            format!("ping: reading {}", self.tables.calls)
        })
        .await
        .map(|_| ())
    }

    async fn commit_call(&self, commit: CallCommit) -> Result<u64, StoreError> {
        // Two events of one (callId, seq) in a commit: DynamoDB refuses two writes of one
        // item in a transaction, so find it here (and report as the embedded store would).
        let mut keys = HashSet::new();
        if let Some(dup) = commit
            .events
            .iter()
            .find(|e| !keys.insert((e.call_id.as_str(), e.seq)))
        {
            let (call_id, seq) = (dup.call_id.clone(), dup.seq);
            return Err(self.duplicate_in_commit(&commit, call_id, seq).await?);
        }
        let prepared = self.prepare(&commit)?;
        let call_id = commit.call.call_id.as_str();
        let mut attempt = 0;
        loop {
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(prepared.items.clone()))
                .send()
                .await;
            let err = match result {
                Ok(_) => return Ok(prepared.version),
                Err(e) => e,
            };
            let reasons = match err.as_service_error() {
                Some(
                    aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c),
                ) => c.cancellation_reasons().to_vec(),
                _ => return Err(sdk_error(format!("commit_call {call_id}"), err)),
            };
            match self.cancelled(&commit, &prepared.slots, &reasons).await? {
                Some(e) => return Err(e),
                None if attempt < STORE_RETRIES => {
                    attempt += 1;
                    tracing::debug!(%call_id, attempt, "transaction conflict; sending the commit again");
                    tokio::time::sleep(backoff(attempt)).await;
                }
                None => {
                    return Err(StoreError::backend(
                        format!("commit_call {call_id}"),
                        DynamoError::plain(format!(
                            "the transaction kept conflicting or being throttled after {STORE_RETRIES} retries"
                        )),
                    ))
                }
            }
        }
    }

    async fn get_call(&self, call_id: &str) -> Result<Option<StoredCall>, StoreError> {
        let key = HashMap::from([("callId".to_owned(), s(call_id))]);
        let item = self
            .get_item(&self.tables.calls, key, || format!("get_call {call_id}"))
            .await?;
        item.as_ref().map(decode_call).transpose()
    }

    async fn list_calls_by_agent(&self, agent_id: &str) -> Result<Vec<Call>, StoreError> {
        let entries = self
            .query_all(
                &self.tables.call_agents,
                None,
                "#a = :a",
                Self::names(&[("#a", "agentId"), ("#c", "callId")]),
                HashMap::from([(":a".to_owned(), s(agent_id))]),
                Some("#c"),
                &format!("list_calls_by_agent {agent_id}"),
            )
            .await?;
        let ids: Vec<String> = entries
            .iter()
            .filter_map(|i| get_s(i, "callId").map(str::to_owned))
            .collect();
        let mut calls: Vec<Call> = self
            .load_calls(&ids)
            .await?
            .into_iter()
            .map(|c| c.call)
            .collect();
        calls.sort_by(|a, b| (b.created_at, &b.call_id).cmp(&(a.created_at, &a.call_id)));
        Ok(calls)
    }

    async fn list_unfinished_calls(&self) -> Result<Vec<StoredCall>, StoreError> {
        let entries = self
            .scan_all(
                &self.tables.open_calls,
                "list_unfinished_calls: scanning open calls",
            )
            .await?;
        let ids: Vec<String> = entries
            .iter()
            .filter_map(|i| get_s(i, "callId").map(str::to_owned))
            .collect();
        let mut calls: Vec<StoredCall> = self.load_calls(&ids).await?;
        calls.sort_by(|a, b| {
            (a.call.created_at, &a.call.call_id).cmp(&(b.call.created_at, &b.call.call_id))
        });
        Ok(calls)
    }

    async fn get_transfer(&self, transfer_id: &str) -> Result<Option<Transfer>, StoreError> {
        self.get_record(&self.tables.transfers, transfer_id).await
    }

    async fn list_transfers_by_call(&self, call_id: &str) -> Result<Vec<Transfer>, StoreError> {
        self.list_by_call(&self.tables.transfers, call_id).await
    }

    async fn list_transfers(
        &self,
        statuses: &[TransferStatus],
    ) -> Result<Vec<Transfer>, StoreError> {
        let t = &self.tables.transfers;
        let mut out: Vec<Transfer> = if statuses.is_empty() {
            let items = self
                .scan_all(t, "list_transfers: scanning transfers")
                .await?;
            items
                .iter()
                .map(|i| decode(i, &[], "transfer", "transferId"))
                .collect::<Result<_, _>>()?
        } else {
            let mut ids = Vec::new();
            let mut wanted: Vec<TransferStatus> = statuses.to_vec();
            wanted.sort_by_key(|s| s.as_str());
            wanted.dedup();
            for status in &wanted {
                let ctx = format!("list_transfers {}", status.as_str());
                ids.extend(
                    self.ids_by_index(
                        t,
                        tables::index::STATUS,
                        "status",
                        status.as_str(),
                        "transferId",
                        &ctx,
                    )
                    .await?,
                );
            }
            let mut found: Vec<Transfer> = self
                .load_many(t, "transferId", &ids, &[], "transfer")
                .await?;
            // The index may lag behind a status change: keep only what matches now.
            found.retain(|x| wanted.contains(&x.status));
            found
        };
        oldest_first(&mut out);
        Ok(out)
    }

    async fn events_since(&self, call_id: &str, after_seq: u64) -> Result<Vec<Event>, StoreError> {
        if after_seq == u64::MAX {
            return Ok(Vec::new());
        }
        let items = self
            .query_all(
                &self.tables.events,
                None,
                "#c = :c AND #s > :after",
                Self::names(&[("#c", "callId"), ("#s", "seq")]),
                HashMap::from([
                    (":c".to_owned(), s(call_id)),
                    (":after".to_owned(), n(after_seq)),
                ]),
                None,
                &format!("events_since {call_id} {after_seq}"),
            )
            .await?;
        let mut events: Vec<Event> = items
            .iter()
            .map(|i| {
                let seq = get_u64(i, "seq").unwrap_or(0);
                from_item(i, EVENT_JSON)
                    .map_err(codec_err(format!("decoding stored event {call_id}#{seq}")))
            })
            .collect::<Result<_, _>>()?;
        events.sort_by_key(|e| e.seq);
        Ok(events)
    }

    async fn put_room(&self, room: &Room) -> Result<(), StoreError> {
        let ctx = format!("put_room {}", room.room_id);
        let mut item = to_item(room, &[]).map_err(codec_err(ctx.clone()))?;
        let now = chrono::Utc::now();
        let put_at = now.timestamp_nanos_opt().unwrap_or(i64::MAX);
        item.insert(PUT_AT.into(), n(put_at));
        check_item_size(&item, &ctx)?;
        self.client
            .put_item()
            .table_name(&self.tables.rooms)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| sdk_error(ctx, e))?;
        Ok(())
    }

    async fn get_room(&self, room_id: &str) -> Result<Option<Room>, StoreError> {
        let key = HashMap::from([("roomId".to_owned(), s(room_id))]);
        let item = self
            .get_item(&self.tables.rooms, key, || format!("get_room {room_id}"))
            .await?;
        item.map(|i| decode(&i, &[], "room", "roomId")).transpose()
    }

    async fn get_room_by_name(&self, room_name: &str) -> Result<Option<Room>, StoreError> {
        let t = &self.tables.rooms;
        let ctx = format!("get_room_by_name {room_name}");
        let ids = self
            .ids_by_index(
                t,
                tables::index::ROOM_NAME,
                "roomName",
                room_name,
                "roomId",
                &ctx,
            )
            .await?;
        if ids.is_empty() {
            return Ok(None);
        }
        let items = self.batch_get(t, "roomId", &ids, &ctx).await?;
        // Several rooms may carry one name; like the embedded index, the last put wins.
        let newest = items
            .iter()
            .filter(|i| get_s(i, "roomName") == Some(room_name))
            .max_by_key(|i| (get_i64(i, PUT_AT).unwrap_or(i64::MIN), get_s(i, "roomId")));
        newest.map(|i| decode(i, &[], "room", "roomId")).transpose()
    }
}
