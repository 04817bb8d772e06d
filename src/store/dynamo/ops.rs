//! The DynamoDB store's requests: consistent reads, paginated scans and queries, index
//! look-ups, batched reads with retries of unprocessed keys, and conditioned writes.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, ReturnValuesOnConditionCheckFailure,
};

use super::codec::{n, s, Item};
use super::*;
use crate::store::{StoreError, StoredCall};

impl DynamoStore {
    /// `(expression name, attribute)` pairs for `ExpressionAttributeNames`.
    pub(super) fn names(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// Reads one item by its key, strongly consistent.
    pub(super) async fn get_item(
        &self,
        table: &str,
        key: Item,
        context: impl Fn() -> String,
    ) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error(context(), e))?;
        Ok(out.item.filter(|i| !i.is_empty()))
    }

    /// Every item of a table (consistent `Scan`, following `LastEvaluatedKey`).
    pub(super) async fn scan_all(
        &self,
        table: &str,
        context: &str,
    ) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(table)
                .consistent_read(true)
                .set_limit(self.page_limit)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error(context.to_owned(), e))?;
            out.extend(page.items.unwrap_or_default());
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(out),
            }
        }
    }

    /// Every item matching `key_condition` (a `Query` of the table or of one of its
    /// indexes, following `LastEvaluatedKey`). Consistent unless it reads an index.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn query_all(
        &self,
        table: &str,
        index: Option<&str>,
        key_condition: &str,
        names: HashMap<String, String>,
        values: HashMap<String, AttributeValue>,
        projection: Option<&str>,
        context: &str,
    ) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(table)
                .set_index_name(index.map(str::to_owned))
                .consistent_read(index.is_none())
                .key_condition_expression(key_condition)
                .set_expression_attribute_names(Some(names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .set_projection_expression(projection.map(str::to_owned))
                .set_limit(self.page_limit)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error(context.to_owned(), e))?;
            out.extend(page.items.unwrap_or_default());
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(out),
            }
        }
    }

    /// The ids (attribute `pk`) of the items of `table` whose indexed attribute `attr`
    /// equals `value`, through the index `index`.
    pub(super) async fn ids_by_index(
        &self,
        table: &str,
        index: &str,
        attr: &str,
        value: &str,
        pk: &str,
        context: &str,
    ) -> Result<Vec<String>, StoreError> {
        let items = self
            .query_all(
                table,
                Some(index),
                "#a = :v",
                Self::names(&[("#a", attr), ("#pk", pk)]),
                HashMap::from([(":v".to_owned(), s(value))]),
                Some("#pk"),
                context,
            )
            .await?;
        Ok(items
            .iter()
            .filter_map(|i| get_s(i, pk).map(str::to_owned))
            .collect())
    }

    /// Reads items by their (string) primary key `pk`, strongly consistent, in chunks of at
    /// most 100 keys, re-sending unprocessed keys with backoff. Missing items are left out;
    /// the order is DynamoDB's.
    pub(super) async fn batch_get(
        &self,
        table: &str,
        pk: &str,
        ids: &[String],
        context: &str,
    ) -> Result<Vec<Item>, StoreError> {
        let mut seen = HashSet::new();
        let unique: Vec<&String> = ids.iter().filter(|id| seen.insert(id.as_str())).collect();
        let chunk = self
            .page_limit
            .map_or(MAX_BATCH_GET, |l| (l as usize).min(MAX_BATCH_GET));
        let mut out = Vec::with_capacity(unique.len());
        for ids in unique.chunks(chunk) {
            let keys: Vec<Item> = ids
                .iter()
                .map(|id| HashMap::from([(pk.to_owned(), s(id.as_str()))]))
                .collect();
            let mut request = HashMap::from([(
                table.to_owned(),
                KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .consistent_read(true)
                    .build()
                    .map_err(build_error(context))?,
            )]);
            let mut attempt = 0;
            loop {
                let resp = self
                    .client
                    .batch_get_item()
                    .set_request_items(Some(request))
                    .send()
                    .await
                    .map_err(|e| sdk_error(context.to_owned(), e))?;
                if let Some(mut responses) = resp.responses {
                    out.extend(responses.remove(table).unwrap_or_default());
                }
                match resp.unprocessed_keys {
                    Some(left) if left.values().any(|k| !k.keys().is_empty()) => {
                        attempt += 1;
                        if attempt > STORE_RETRIES {
                            return Err(StoreError::backend(
                                context.to_owned(),
                                DynamoError::plain(format!(
                                    "BatchGetItem left keys unprocessed after {STORE_RETRIES} retries (throttled)"
                                )),
                            ));
                        }
                        tokio::time::sleep(backoff(attempt)).await;
                        request = left;
                    }
                    _ => break,
                }
            }
        }
        Ok(out)
    }

    /// A `PutItem` with a condition; `Ok(None)` when written, `Ok(Some(old item or empty))`
    /// when the condition failed (the old item when DynamoDB returned it).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn conditional_put(
        &self,
        table: &str,
        item: Item,
        condition: &str,
        names: HashMap<String, String>,
        values: Option<HashMap<String, AttributeValue>>,
        context: &str,
    ) -> Result<Option<Item>, StoreError> {
        check_item_size(&item, context)?;
        let result = self
            .client
            .put_item()
            .table_name(table)
            .set_item(Some(item))
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(values)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(None),
            Err(e) => match e.as_service_error() {
                Some(se) if se.is_conditional_check_failed_exception() => {
                    let old = match se {
                        aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c) => {
                            c.item().cloned().unwrap_or_default()
                        }
                        _ => Item::new(),
                    };
                    Ok(Some(old))
                }
                _ => Err(sdk_error(context.to_owned(), e)),
            },
        }
    }

    /// Creates an item whose key attribute `pk` must be new; `AlreadyExists` otherwise.
    pub(super) async fn create_item(
        &self,
        table: &str,
        pk: &str,
        entity: &'static str,
        id: &str,
        item: Item,
    ) -> Result<(), StoreError> {
        let context = format!("creating {entity} {id} in {table}");
        let failed = self
            .conditional_put(
                table,
                item,
                "attribute_not_exists(#pk)",
                Self::names(&[("#pk", pk)]),
                None,
                &context,
            )
            .await?;
        match failed {
            None => Ok(()),
            Some(_) => Err(StoreError::AlreadyExists {
                entity,
                id: id.to_owned(),
            }),
        }
    }

    /// Decides why a conditioned update of `entity` `id` failed when DynamoDB did not say:
    /// `VersionConflict` if the item exists, `NotFound` otherwise.
    pub(super) async fn update_failure(
        &self,
        table: &str,
        key: Item,
        old: Item,
        entity: &'static str,
        id: &str,
        expected: u64,
    ) -> Result<StoreError, StoreError> {
        let exists = if old.is_empty() {
            self.get_item(table, key, || format!("reading {entity} {id} in {table}"))
                .await?
                .is_some()
        } else {
            true
        };
        Ok(if exists {
            StoreError::VersionConflict {
                entity,
                id: id.to_owned(),
                expected,
            }
        } else {
            StoreError::NotFound {
                entity,
                id: id.to_owned(),
            }
        })
    }

    /// Reads and decodes items of `table` by id, keeping those `keep` accepts.
    pub(super) async fn load_many<T: serde::de::DeserializeOwned>(
        &self,
        table: &str,
        pk: &str,
        ids: &[String],
        json: &[&str],
        entity: &str,
    ) -> Result<Vec<T>, StoreError> {
        let context = format!("reading {entity}s from {table}");
        let items = self.batch_get(table, pk, ids, &context).await?;
        items.iter().map(|i| decode(i, json, entity, pk)).collect()
    }

    /// The call items of `ids`, decoded with their state and version.
    pub(super) async fn load_calls(&self, ids: &[String]) -> Result<Vec<StoredCall>, StoreError> {
        let context = format!("reading calls from {}", self.tables.calls);
        let items = self
            .batch_get(&self.tables.calls, "callId", ids, &context)
            .await?;
        items.iter().map(decode_call).collect()
    }

    /// Puts `item` under `condition`, a check of the stored version; when the check fails,
    /// says why: `VersionConflict` if the item of `key` exists, `NotFound` otherwise.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn put_checked(
        &self,
        table: &str,
        key: Item,
        item: Item,
        condition: &str,
        names: HashMap<String, String>,
        values: Option<HashMap<String, AttributeValue>>,
        (entity, id, expected): (&'static str, &str, u64),
        context: &str,
    ) -> Result<(), StoreError> {
        let failed = self
            .conditional_put(table, item, condition, names, values, context)
            .await?;
        match failed {
            None => Ok(()),
            Some(old) => Err(self
                .update_failure(table, key, old, entity, id, expected)
                .await?),
        }
    }

    /// Puts `item` if the stored item's `version` is `expected` (see [`Self::put_checked`]).
    pub(super) async fn put_if_version(
        &self,
        table: &str,
        key: Item,
        item: Item,
        (entity, id, expected): (&'static str, &str, u64),
        context: &str,
    ) -> Result<(), StoreError> {
        self.put_checked(
            table,
            key,
            item,
            "#v = :expected",
            Self::names(&[("#v", VERSION)]),
            Some(HashMap::from([(":expected".to_owned(), n(expected))])),
            (entity, id, expected),
            context,
        )
        .await
    }
}
