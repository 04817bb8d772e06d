//! The DynamoDB store's call commits: one `TransactWriteItems` a transition, checked against
//! DynamoDB's limits before it is sent, and its cancellation reasons read back as the
//! store's errors.

use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodb::types::{CancellationReason, Delete, Put, TransactWriteItem};

use super::codec::{codec_err, item_size, n, s, to_item, Item};
use super::*;

/// What each write of a commit's transaction is, to read the cancellation reasons.
#[derive(Debug, Clone)]
pub(super) enum Slot {
    Call,
    Event { call_id: String, seq: u64 },
    Other,
}

/// A commit's transaction, ready to send.
pub(super) struct Prepared {
    pub(super) items: Vec<TransactWriteItem>,
    pub(super) slots: Vec<Slot>,
    pub(super) version: u64,
}

impl DynamoStore {
    pub(super) fn put(&self, table: &str, item: Item, ctx: &str) -> Result<Put, StoreError> {
        Put::builder()
            .table_name(table)
            .set_item(Some(item))
            .build()
            .map_err(build_error(ctx))
    }

    /// Builds the transaction of a commit, checking DynamoDB's limits first.
    pub(super) fn prepare(&self, commit: &CallCommit) -> Result<Prepared, StoreError> {
        let call = &commit.call;
        let call_id = call.call_id.as_str();
        let ctx = format!("commit_call {call_id}");
        let version = match commit.expected_version {
            None => 1,
            Some(v) => v.checked_add(1).ok_or_else(|| {
                StoreError::backend(
                    ctx.clone(),
                    DynamoError::plain("call version overflowed u64"),
                )
            })?,
        };
        let t = &self.tables;
        let mut items = Vec::new();
        let mut slots = Vec::new();
        let mut total = 0usize;
        let mut push = |item: TransactWriteItem, slot: Slot, size: usize| {
            total += size;
            items.push(item);
            slots.push(slot);
        };

        // The call, guarded by its version.
        let mut call_item = to_item(call, CALL_JSON).map_err(codec_err(ctx.clone()))?;
        call_item.insert(VERSION.into(), n(version));
        let state = serde_json::to_string(&commit.state)
            .map_err(|e| StoreError::backend(ctx.clone(), e))?;
        call_item.insert(STATE.into(), s(state));
        let size = check_item_size(&call_item, &format!("{ctx}: the call item"))?;
        let put = Put::builder()
            .table_name(&t.calls)
            .set_item(Some(call_item))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let put = match commit.expected_version {
            None => put
                .condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", "callId"),
            Some(expected) => put
                .condition_expression("#v = :expected")
                .expression_attribute_names("#v", VERSION)
                .expression_attribute_values(":expected", n(expected)),
        };
        let put = put.build().map_err(build_error(&ctx))?;
        push(
            TransactWriteItem::builder().put(put).build(),
            Slot::Call,
            size,
        );

        // Whether it is open (for recovery).
        let open_key = HashMap::from([("callId".to_owned(), s(call_id))]);
        if !commit.open {
            let del = Delete::builder()
                .table_name(&t.open_calls)
                .set_key(Some(open_key))
                .build()
                .map_err(build_error(&ctx))?;
            push(
                TransactWriteItem::builder().delete(del).build(),
                Slot::Other,
                64,
            );
        } else {
            let mut item = open_key;
            item.insert("createdAt".into(), s(codec::time_text(&call.created_at)));
            item.insert("status".into(), s(call.status.as_str()));
            let size = item_size(&item);
            let put = self.put(&t.open_calls, item, &ctx)?;
            push(
                TransactWriteItem::builder().put(put).build(),
                Slot::Other,
                size,
            );
        }

        // Events, each new.
        for e in &commit.events {
            let item = to_item(e, EVENT_JSON).map_err(codec_err(ctx.clone()))?;
            let size = check_item_size(&item, &format!("{ctx}: event {}", e.seq))?;
            let put = Put::builder()
                .table_name(&t.events)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", "callId")
                .build()
                .map_err(build_error(&ctx))?;
            push(
                TransactWriteItem::builder().put(put).build(),
                Slot::Event {
                    call_id: e.call_id.clone(),
                    seq: e.seq,
                },
                size,
            );
        }

        // Transfers (upserted; the last of one id wins, as in one embedded transaction).
        let mut last_of: HashMap<&str, &Transfer> = HashMap::new();
        for tr in &commit.transfers {
            last_of.insert(tr.transfer_id.as_str(), tr);
        }
        let mut written = HashSet::new();
        for tr in &commit.transfers {
            if !written.insert(tr.transfer_id.as_str()) {
                continue;
            }
            let tr = last_of[tr.transfer_id.as_str()];
            let item = to_item(tr, &[]).map_err(codec_err(ctx.clone()))?;
            let size = check_item_size(&item, &format!("{ctx}: transfer {}", tr.transfer_id))?;
            let put = self.put(&t.transfers, item, &ctx)?;
            push(
                TransactWriteItem::builder().put(put).build(),
                Slot::Other,
                size,
            );
        }

        // Who took part (never removed).
        let mut pairs: Vec<(&str, &str, &chrono::DateTime<chrono::Utc>)> = Vec::new();
        for agent in [
            &call.agent_a_id,
            &call.agent_b_id,
            &call.owner_id,
            &call.offered_to,
        ]
        .into_iter()
        .flatten()
        {
            pairs.push((agent, call_id, &call.created_at));
        }
        for tr in &commit.transfers {
            for agent in [&tr.from_agent_id, &tr.to_agent_id] {
                pairs.push((agent, &tr.call_id, &call.created_at));
            }
        }
        let mut seen = HashSet::new();
        for (agent, cid, created) in pairs {
            if !seen.insert((agent, cid)) {
                continue;
            }
            let item = HashMap::from([
                ("agentId".to_owned(), s(agent)),
                ("callId".to_owned(), s(cid)),
                ("createdAt".to_owned(), s(codec::time_text(created))),
            ]);
            let size = item_size(&item);
            let put = self.put(&t.call_agents, item, &ctx)?;
            push(
                TransactWriteItem::builder().put(put).build(),
                Slot::Other,
                size,
            );
        }

        if items.len() > MAX_TRANSACTION_ITEMS {
            return Err(StoreError::backend(
                ctx,
                DynamoError::plain(format!(
                    "the commit needs {} writes, over DynamoDB's limit of {MAX_TRANSACTION_ITEMS} in one transaction; nothing was written",
                    items.len()
                )),
            ));
        }
        if total > MAX_TRANSACTION_BYTES {
            return Err(StoreError::backend(
                ctx,
                DynamoError::plain(format!(
                    "the commit is {total} bytes, over DynamoDB's limit of {MAX_TRANSACTION_BYTES} bytes in one transaction; nothing was written"
                )),
            ));
        }
        Ok(Prepared {
            items,
            slots,
            version,
        })
    }

    /// The error a cancelled commit stands for, from the cancellation reasons; `None` when
    /// it should simply be sent again (conflicts with other transactions, throttling).
    pub(super) async fn cancelled(
        &self,
        commit: &CallCommit,
        slots: &[Slot],
        reasons: &[CancellationReason],
    ) -> Result<Option<StoreError>, StoreError> {
        let call_id = commit.call.call_id.as_str();
        let code = |i: usize| reasons.get(i).and_then(|r| r.code()).unwrap_or("None");
        if code(0) == "ConditionalCheckFailed" {
            return Ok(Some(match commit.expected_version {
                None => StoreError::AlreadyExists {
                    entity: "call",
                    id: call_id.to_owned(),
                },
                Some(expected) => {
                    let old = reasons[0].item().cloned().unwrap_or_default();
                    self.update_failure(
                        &self.tables.calls,
                        HashMap::from([("callId".to_owned(), s(call_id))]),
                        old,
                        "call",
                        call_id,
                        expected,
                    )
                    .await?
                }
            }));
        }
        for (i, slot) in slots.iter().enumerate() {
            if let (Slot::Event { call_id, seq }, "ConditionalCheckFailed") = (slot, code(i)) {
                return Ok(Some(StoreError::DuplicateEvent {
                    call_id: call_id.clone(),
                    seq: *seq,
                }));
            }
        }
        let codes: Vec<&str> = (0..slots.len().max(reasons.len())).map(code).collect();
        if codes.iter().any(|c| retryable_reason(c))
            && codes.iter().all(|c| *c == "None" || retryable_reason(c))
        {
            return Ok(None);
        }
        Ok(Some(StoreError::backend(
            format!("commit_call {call_id}"),
            DynamoError::plain(format!(
                "the transaction was cancelled: [{}]",
                codes.join(", ")
            )),
        )))
    }

    /// The error for a commit with two events of one `(callId, seq)`: what the embedded
    /// store would report (the call's condition first, then the duplicate), decided by
    /// reading the call; nothing is written.
    pub(super) async fn duplicate_in_commit(
        &self,
        commit: &CallCommit,
        call_id: String,
        seq: u64,
    ) -> Result<StoreError, StoreError> {
        let id = commit.call.call_id.as_str();
        let stored = self
            .get_item(
                &self.tables.calls,
                HashMap::from([("callId".to_owned(), s(id))]),
                || format!("commit_call {id}: reading the call"),
            )
            .await?;
        let stored_version = stored.as_ref().map(|i| get_u64(i, VERSION).unwrap_or(0));
        Ok(match (commit.expected_version, stored_version) {
            (None, Some(_)) => StoreError::AlreadyExists {
                entity: "call",
                id: id.to_owned(),
            },
            (Some(_), None) => StoreError::NotFound {
                entity: "call",
                id: id.to_owned(),
            },
            (Some(expected), Some(v)) if v != expected => StoreError::VersionConflict {
                entity: "call",
                id: id.to_owned(),
                expected,
            },
            _ => StoreError::DuplicateEvent { call_id, seq },
        })
    }
}
