//! The DynamoDB store (`SWITCHBOARD_STORE=dynamodb`): seed 000's six tables with their
//! camelCase attributes and `callId-index` / `agentAId-index`, plus three tables of the
//! switchboard's own (events, who took part in which call, which calls are open). See
//! [`tables`] for the layout and `init-tables`, and [`codec`] for how records become items.
//!
//! # Consistency
//!
//! * [`Store::commit_call`] is **one `TransactWriteItems`**: the call item (`Put`, condition
//!   `attribute_not_exists(callId)` to create, `version = :expected` to update), its
//!   `OpenCalls` entry (`Put` while the call is not ended, `Delete` once it is), every event
//!   (`Put`, condition `attribute_not_exists`), every changed transfer (`Put`), and one
//!   `CallAgents` entry per agent involved (`Put`). A cancelled transaction is mapped from its
//!   cancellation reasons: the call's `ConditionalCheckFailed` is `AlreadyExists` (create),
//!   `NotFound` (no old item) or `VersionConflict` (old item with another version); an event's
//!   is `DuplicateEvent`; `TransactionConflict` and throttling reasons are retried (a new
//!   transaction, with backoff), so a racing writer ends as exactly one winner and
//!   `VersionConflict` for the others. The SDK gives every `TransactWriteItems` a client
//!   request token, so its own retries of a transaction that did land are answered as the
//!   success they were, never as a false conflict.
//! * Agents are replaced with `PutItem` conditioned on the version read (`version = :v`, or
//!   `attribute_not_exists(version)` for a seed 000 item that has none). Transcripts and
//!   summaries are created with `attribute_not_exists`. Nothing is read-modified-written
//!   without a condition; rooms are plain replaces, like the embedded store's `put_room`.
//! * Reads by key are strongly consistent (`ConsistentRead`). `events_since`,
//!   `list_calls_by_agent` and `list_unfinished_calls` read base tables only, so they are
//!   strongly consistent too (recovery after `kill -9` sees every committed call). Listings
//!   through a global secondary index (transcripts, summaries and transfers of a call,
//!   transfers by status, rooms by name) take the keys from the index and then read the items
//!   themselves consistently, re-checking the indexed attribute: a result is never stale, but
//!   an item written within the index's propagation delay (usually well under a second) may
//!   be missing from it. DynamoDB offers no consistent reads of an index.
//! * Every `Query` and `Scan` follows `LastEvaluatedKey`; `BatchGetItem` is sent in chunks of
//!   100 keys and re-sends `UnprocessedKeys` with backoff.
//! * Throttling and transient errors are retried by the SDK (standard retry mode, exponential
//!   backoff with jitter from 50 ms up to 2 s, `AWS_MAX_ATTEMPTS` attempts, default 5), and
//!   every operation has a deadline (`SWITCHBOARD_DYNAMODB_TIMEOUT`).
//!
//! # Limits
//!
//! A transaction holds at most 100 writes and 4 MB, an item at most 400 KB. A commit that
//! would exceed any of them is refused with [`StoreError::Backend`] *before* anything is
//! sent, so nothing is written (the call actor then reloads the call, and the HTTP caller
//! gets 503 "nothing was changed"). A transition writes 1 call + 1 open-call entry + its
//! events + its transfers + one entry per agent involved, typically under 15, so only a
//! pathological call (megabytes of metadata) can reach them.
//!
//! No type of the AWS SDK appears in this module's public API or in its errors' types: SDK
//! failures become [`StoreError::Backend`] whose source is a [`DynamoError`] naming the
//! operation, the table and the service's error code and message.

pub mod codec;
pub mod tables;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::config::{Credentials, Region};
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, Delete, KeysAndAttributes, Put,
    ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use aws_sdk_dynamodb::Client;
use serde_json::Value;

use self::codec::{codec_err, from_item, get_i64, get_s, get_u64, item_size, n, s, to_item, Item};
pub use self::tables::{TableAction, TableNames, TableReport, TABLE_VARS};
use super::{CallCommit, Store, StoreError, StoredCall};
use crate::model::org::{ApiKeyRecord, Assistant, SipTrunk};
use crate::model::webhook::{DeliveryStatus, WebhookDelivery};
use crate::model::{Agent, Call, Event, Room, Summary, Transcript, Transfer, TransferStatus};
use crate::secret::Secret;

/// DynamoDB's limit of writes in one `TransactWriteItems`.
pub const MAX_TRANSACTION_ITEMS: usize = 100;
/// DynamoDB's limit of one item's size (400 KB).
pub const MAX_ITEM_BYTES: usize = 400 * 1024;
/// DynamoDB's limit of one transaction's total size (4 MB).
pub const MAX_TRANSACTION_BYTES: usize = 4 * 1024 * 1024;
/// DynamoDB's limit of keys in one `BatchGetItem`.
const MAX_BATCH_GET: usize = 100;
/// How often a cancelled-but-retryable transaction (or unprocessed batch keys) is re-sent.
const STORE_RETRIES: u32 = 8;
/// The attribute of the call item holding the machine state (JSON text).
const STATE: &str = "state";
/// The attribute of the call item holding its version.
const VERSION: &str = "version";
/// The attribute of a room item telling when it was last put (ns since the epoch), which
/// picks the newest of several rooms with one name.
const PUT_AT: &str = "putAt";
/// Fields of a call kept as JSON text.
const CALL_JSON: &[&str] = &["metadata"];
/// Fields of an event kept as JSON text.
const EVENT_JSON: &[&str] = &["data", "audience"];

/// Settings of the DynamoDB store (validated by [`Config`](crate::config::Config)).
#[derive(Debug, Clone, PartialEq)]
pub struct DynamoConfig {
    /// The tables.
    pub tables: TableNames,
    /// `AWS_ENDPOINT_URL_DYNAMODB` (or `AWS_ENDPOINT_URL`): a local server such as DynamoDB
    /// Local or moto; `None` for AWS itself.
    pub endpoint_url: Option<String>,
    /// `AWS_REGION` (or `AWS_DEFAULT_REGION`); `None` leaves it to the AWS profile.
    pub region: Option<String>,
    /// Static credentials from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` /
    /// `AWS_SESSION_TOKEN`; `None` uses the rest of the standard chain (profile, web
    /// identity, ECS, EC2 instance metadata).
    pub credentials: Option<StaticCredentials>,
    /// `AWS_MAX_ATTEMPTS`: attempts per request, retries included.
    pub max_attempts: u32,
    /// `SWITCHBOARD_DYNAMODB_TIMEOUT`: deadline of one operation, retries included.
    pub timeout: Duration,
    /// `SWITCHBOARD_INIT_TABLES`: create missing tables and indexes at start-up.
    pub init_tables: bool,
}

impl Default for DynamoConfig {
    fn default() -> Self {
        DynamoConfig {
            tables: TableNames::default(),
            endpoint_url: None,
            region: None,
            credentials: None,
            max_attempts: 5,
            timeout: Duration::from_secs(10),
            init_tables: false,
        }
    }
}

/// An access key given in the environment.
#[derive(Debug, Clone, PartialEq)]
pub struct StaticCredentials {
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: Secret,
    /// `AWS_SESSION_TOKEN`.
    pub session_token: Option<Secret>,
}

/// A DynamoDB failure, as the source of [`StoreError::Backend`]: the service's error code
/// and message (or the transport failure), with the SDK's error as its own source.
#[derive(Debug, thiserror::Error)]
#[error("{summary}")]
pub struct DynamoError {
    summary: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl DynamoError {
    fn plain(summary: impl Into<String>) -> Self {
        DynamoError {
            summary: summary.into(),
            source: None,
        }
    }
}

/// Maps an SDK error into [`StoreError::Backend`] with `context`.
pub(crate) fn sdk_error<E, R>(context: impl Into<String>, err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let summary = match &err {
        SdkError::ServiceError(se) => {
            let e = se.err();
            let code = e.code().unwrap_or("unknown error");
            let message = e.message().unwrap_or_default();
            let hint = if code == "ResourceNotFoundException" {
                " (is the table there? `switchboard init-tables` creates the tables)"
            } else {
                ""
            };
            format!("{code}: {message}{hint}")
        }
        other => DisplayErrorContext(other).to_string(),
    };
    StoreError::backend(
        context,
        DynamoError {
            summary,
            source: Some(Box::new(err)),
        },
    )
}

/// A `BuildError` of an SDK builder (a required field left out: a bug here).
fn build_error(
    context: &str,
) -> impl FnOnce(aws_sdk_dynamodb::error::BuildError) -> StoreError + '_ {
    move |e| StoreError::backend(context.to_owned(), DynamoError::plain(e.to_string()))
}

/// Exponential backoff with full jitter: a random delay in `[0, min(2 s, 25 ms · 2^attempt)]`.
fn backoff(attempt: u32) -> Duration {
    let cap_ms = 25u64.saturating_mul(1 << attempt.min(10)).min(2_000);
    let random = uuid::Uuid::new_v4().as_u128() as u64;
    Duration::from_millis(random % (cap_ms + 1))
}

/// Cancellation reason codes that mean "try the transaction again".
fn retryable_reason(code: &str) -> bool {
    matches!(
        code,
        "TransactionConflict"
            | "ThrottlingError"
            | "ProvisionedThroughputExceeded"
            | "RequestLimitExceeded"
    )
}

/// The DynamoDB [`Store`]. Cheap to clone (the SDK client is shared).
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    tables: TableNames,
    /// `Limit` of every `Query`/`Scan` page and the size of `BatchGetItem` chunks (tests set
    /// it small to exercise pagination); `None` = DynamoDB's (1 MB pages, 100 keys).
    page_limit: Option<i32>,
}

impl std::fmt::Debug for DynamoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoStore")
            .field("tables", &self.tables)
            .finish_non_exhaustive()
    }
}

impl DynamoStore {
    /// Builds the client from the standard AWS configuration chain (environment, profile,
    /// web identity, container and instance credentials) with the settings of `config` on
    /// top. Sends nothing; fails only if no region is configured anywhere.
    pub async fn connect(config: &DynamoConfig) -> Result<DynamoStore, StoreError> {
        use aws_config::retry::RetryConfig;
        use aws_config::timeout::TimeoutConfig;

        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::v2026_01_12())
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(config.max_attempts)
                    .with_initial_backoff(Duration::from_millis(50))
                    .with_max_backoff(Duration::from_secs(2)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3).min(config.timeout))
                    .operation_attempt_timeout(Duration::from_secs(5).min(config.timeout))
                    .operation_timeout(config.timeout)
                    .build(),
            );
        if let Some(region) = &config.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(c) = &config.credentials {
            loader = loader.credentials_provider(Credentials::new(
                c.access_key_id.clone(),
                c.secret_access_key.expose().to_owned(),
                c.session_token.as_ref().map(|t| t.expose().to_owned()),
                None,
                "switchboard-environment",
            ));
        }
        let sdk = loader.load().await;
        if sdk.region().is_none() {
            return Err(StoreError::backend(
                "configuring DynamoDB",
                DynamoError::plain(
                    "no AWS region is configured: set AWS_REGION (or a region in the AWS profile)",
                ),
            ));
        }
        let mut builder = aws_sdk_dynamodb::config::Builder::from(&sdk);
        if let Some(url) = &config.endpoint_url {
            builder = builder.endpoint_url(url);
        }
        Ok(DynamoStore {
            client: Client::from_conf(builder.build()),
            tables: config.tables.clone(),
            page_limit: None,
        })
    }

    /// Connects, then creates the tables (when `config.init_tables`) or checks that they are
    /// all there with their indexes (otherwise): what the server does at start-up.
    pub async fn open(config: &DynamoConfig) -> Result<DynamoStore, StoreError> {
        let store = DynamoStore::connect(config).await?;
        if config.init_tables {
            store.init_tables().await?;
        } else {
            store.verify_tables().await?;
        }
        Ok(store)
    }

    /// Limits every `Query`/`Scan` page to `limit` items and `BatchGetItem` chunks to
    /// `limit` keys (at most 100), so that tests exercise pagination with few items.
    pub fn with_page_limit(mut self, limit: i32) -> DynamoStore {
        self.page_limit = Some(limit.max(1));
        self
    }

    /// The tables this store uses.
    pub fn tables(&self) -> &TableNames {
        &self.tables
    }

    /// Creates every missing table and index (idempotent) and waits until all are `ACTIVE`.
    pub async fn init_tables(&self) -> Result<Vec<TableReport>, StoreError> {
        tables::init(&self.client, &self.tables).await
    }

    /// Checks that every table and index exists with the right key schema.
    pub async fn verify_tables(&self) -> Result<(), StoreError> {
        tables::verify(&self.client, &self.tables).await
    }

    /// `(expression name, attribute)` pairs for `ExpressionAttributeNames`.
    fn names(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// Reads one item by its key, strongly consistent.
    async fn get_item(
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
    async fn scan_all(&self, table: &str, context: &str) -> Result<Vec<Item>, StoreError> {
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
    async fn query_all(
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
    async fn ids_by_index(
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
    async fn batch_get(
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
    async fn conditional_put(
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
    async fn create_item(
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
    async fn update_failure(
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
    async fn load_many<T: serde::de::DeserializeOwned>(
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
    async fn load_calls(&self, ids: &[String]) -> Result<Vec<StoredCall>, StoreError> {
        let context = format!("reading calls from {}", self.tables.calls);
        let items = self
            .batch_get(&self.tables.calls, "callId", ids, &context)
            .await?;
        items.iter().map(decode_call).collect()
    }
}

/// A record that belongs to a call, stored in its own table keyed by its id and listed by
/// call through `callId-index` (transfers, transcripts, summaries).
trait CallRecord: serde::de::DeserializeOwned {
    /// The entity's name in errors.
    const ENTITY: &'static str;
    /// The partition key attribute.
    const PK: &'static str;
    /// Its id.
    fn id(&self) -> &str;
    /// Its call.
    fn call_id(&self) -> &str;
    /// When it was created.
    fn created_at(&self) -> chrono::DateTime<chrono::Utc>;
    /// Listing order: creation time, then id.
    fn order_key(&self) -> (chrono::DateTime<chrono::Utc>, &str) {
        (self.created_at(), self.id())
    }
}

macro_rules! call_record {
    ($ty:ty, $entity:literal, $pk:literal, $id:ident) => {
        impl CallRecord for $ty {
            const ENTITY: &'static str = $entity;
            const PK: &'static str = $pk;
            fn id(&self) -> &str {
                &self.$id
            }
            fn call_id(&self) -> &str {
                &self.call_id
            }
            fn created_at(&self) -> chrono::DateTime<chrono::Utc> {
                self.created_at
            }
        }
    };
}

call_record!(Transfer, "transfer", "transferId", transfer_id);
call_record!(Transcript, "transcript", "transcriptId", transcript_id);
call_record!(Summary, "summary", "summaryId", summary_id);
call_record!(
    WebhookDelivery,
    "webhook delivery",
    "deliveryId",
    delivery_id
);

/// Fields of a webhook delivery kept as JSON text.
const DELIVERY_JSON: &[&str] = &["payload", "attempts"];

impl DynamoStore {
    /// Reads one call record by id.
    async fn get_record<T: CallRecord>(
        &self,
        table: &str,
        id: &str,
    ) -> Result<Option<T>, StoreError> {
        let key = HashMap::from([(T::PK.to_owned(), s(id))]);
        let item = self
            .get_item(table, key, || format!("get_{} {id}", T::ENTITY))
            .await?;
        item.map(|i| decode(&i, &[], T::ENTITY, T::PK)).transpose()
    }

    /// A call's records, oldest first: ids from `callId-index`, items read consistently
    /// (the index may lag, so what no longer matches is dropped).
    async fn list_by_call<T: CallRecord>(
        &self,
        table: &str,
        call_id: &str,
    ) -> Result<Vec<T>, StoreError> {
        let ctx = format!("list_{}s_by_call {call_id}", T::ENTITY);
        let ids = self
            .ids_by_index(
                table,
                tables::index::CALL_ID,
                "callId",
                call_id,
                T::PK,
                &ctx,
            )
            .await?;
        let mut out: Vec<T> = self.load_many(table, T::PK, &ids, &[], T::ENTITY).await?;
        out.retain(|x| x.call_id() == call_id);
        out.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
        Ok(out)
    }
}

/// Decodes an item into a record, or a backend error naming it.
fn decode<T: serde::de::DeserializeOwned>(
    item: &Item,
    json: &[&str],
    entity: &str,
    pk: &str,
) -> Result<T, StoreError> {
    let id = get_s(item, pk).unwrap_or("?");
    from_item(item, json).map_err(codec_err(format!("decoding stored {entity} {id}")))
}

/// Decodes a call item (record, machine state, version).
fn decode_call(item: &Item) -> Result<StoredCall, StoreError> {
    let id = get_s(item, "callId").unwrap_or("?");
    let call: Call = decode(item, CALL_JSON, "call", "callId")?;
    let missing = |what: &str| {
        StoreError::backend(
            format!("decoding stored call {id}"),
            DynamoError::plain(format!(
                "the item has no {what} attribute (an item the switchboard did not write, such as a seed 000 call?)"
            )),
        )
    };
    let state_text = get_s(item, STATE).ok_or_else(|| missing("`state`"))?;
    let state: Value = serde_json::from_str(state_text)
        .map_err(|e| StoreError::backend(format!("decoding the state of call {id}"), e))?;
    let version = get_u64(item, VERSION).ok_or_else(|| missing("numeric `version`"))?;
    Ok(StoredCall {
        call,
        state,
        version,
    })
}

/// Refuses an item over DynamoDB's 400 KB.
fn check_item_size(item: &Item, context: &str) -> Result<usize, StoreError> {
    let size = item_size(item);
    if size > MAX_ITEM_BYTES {
        return Err(StoreError::backend(
            context.to_owned(),
            DynamoError::plain(format!(
                "the item is {size} bytes, over DynamoDB's item limit of 400 KB ({MAX_ITEM_BYTES} bytes); nothing was written"
            )),
        ));
    }
    Ok(size)
}

/// What each write of a commit's transaction is, to read the cancellation reasons.
#[derive(Debug, Clone)]
enum Slot {
    Call,
    Event { call_id: String, seq: u64 },
    Other,
}

/// A commit's transaction, ready to send.
struct Prepared {
    items: Vec<TransactWriteItem>,
    slots: Vec<Slot>,
    version: u64,
}

impl DynamoStore {
    fn put(&self, table: &str, item: Item, ctx: &str) -> Result<Put, StoreError> {
        Put::builder()
            .table_name(table)
            .set_item(Some(item))
            .build()
            .map_err(build_error(ctx))
    }

    /// Builds the transaction of a commit, checking DynamoDB's limits first.
    fn prepare(&self, commit: &CallCommit) -> Result<Prepared, StoreError> {
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
    async fn cancelled(
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
    async fn duplicate_in_commit(
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

#[async_trait]
impl Store for DynamoStore {
    async fn ping(&self) -> Result<(), StoreError> {
        let key = HashMap::from([("callId".to_owned(), s("__switchboard_ping__"))]);
        self.get_item(&self.tables.calls, key, || {
            format!("ping: reading {}", self.tables.calls)
        })
        .await
        .map(|_| ())
    }

    async fn create_agent(&self, agent: &Agent) -> Result<Agent, StoreError> {
        let mut agent = agent.clone();
        agent.version = 1;
        let ctx = format!("create_agent {}", agent.agent_id);
        let item = to_item(&agent, &[]).map_err(codec_err(ctx))?;
        self.create_item(
            &self.tables.agents,
            "agentId",
            "agent",
            &agent.agent_id,
            item,
        )
        .await?;
        Ok(agent)
    }

    async fn get_agent(&self, agent_id: &str) -> Result<Option<Agent>, StoreError> {
        let key = HashMap::from([("agentId".to_owned(), s(agent_id))]);
        let item = self
            .get_item(&self.tables.agents, key, || format!("get_agent {agent_id}"))
            .await?;
        item.map(|i| decode(&i, &[], "agent", "agentId"))
            .transpose()
    }

    async fn update_agent(&self, agent: &Agent) -> Result<Agent, StoreError> {
        let id = agent.agent_id.clone();
        let ctx = format!("update_agent {id}");
        let expected = agent.version;
        let mut next = agent.clone();
        next.version = expected.checked_add(1).ok_or_else(|| {
            StoreError::backend(
                ctx.clone(),
                DynamoError::plain("agent version overflowed u64"),
            )
        })?;
        let item = to_item(&next, &[]).map_err(codec_err(ctx.clone()))?;
        // Version 0 is an agent read from an item without a version (written by seed 000).
        let (condition, names, values) = if expected == 0 {
            (
                "attribute_exists(#pk) AND attribute_not_exists(#v)",
                Self::names(&[("#pk", "agentId"), ("#v", VERSION)]),
                None,
            )
        } else {
            (
                "#v = :expected",
                Self::names(&[("#v", VERSION)]),
                Some(HashMap::from([(":expected".to_owned(), n(expected))])),
            )
        };
        let failed = self
            .conditional_put(&self.tables.agents, item, condition, names, values, &ctx)
            .await?;
        match failed {
            None => Ok(next),
            Some(old) => Err(self
                .update_failure(
                    &self.tables.agents,
                    HashMap::from([("agentId".to_owned(), s(id.as_str()))]),
                    old,
                    "agent",
                    &id,
                    expected,
                )
                .await?),
        }
    }

    async fn list_agents(&self) -> Result<Vec<Agent>, StoreError> {
        let items = self
            .scan_all(&self.tables.agents, "list_agents: scanning agents")
            .await?;
        let mut all: Vec<Agent> = items
            .iter()
            .map(|i| decode(i, &[], "agent", "agentId"))
            .collect::<Result<_, _>>()?;
        all.sort_by(|a, b| (a.created_at, &a.agent_id).cmp(&(b.created_at, &b.agent_id)));
        Ok(all)
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
        out.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
        Ok(out)
    }

    async fn put_transcript(&self, transcript: &Transcript) -> Result<(), StoreError> {
        let id = &transcript.transcript_id;
        let item = to_item(transcript, &[]).map_err(codec_err(format!("put_transcript {id}")))?;
        self.create_item(
            &self.tables.transcripts,
            "transcriptId",
            "transcript",
            id,
            item,
        )
        .await
    }

    async fn get_transcript(&self, transcript_id: &str) -> Result<Option<Transcript>, StoreError> {
        self.get_record(&self.tables.transcripts, transcript_id)
            .await
    }

    async fn list_transcripts_by_call(&self, call_id: &str) -> Result<Vec<Transcript>, StoreError> {
        self.list_by_call(&self.tables.transcripts, call_id).await
    }

    async fn put_summary(&self, summary: &Summary) -> Result<(), StoreError> {
        let id = &summary.summary_id;
        let item = to_item(summary, &[]).map_err(codec_err(format!("put_summary {id}")))?;
        self.create_item(&self.tables.summaries, "summaryId", "summary", id, item)
            .await
    }

    async fn get_summary(&self, summary_id: &str) -> Result<Option<Summary>, StoreError> {
        self.get_record(&self.tables.summaries, summary_id).await
    }

    async fn list_summaries_by_call(&self, call_id: &str) -> Result<Vec<Summary>, StoreError> {
        self.list_by_call(&self.tables.summaries, call_id).await
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

    // ---- Organisations: API keys, assistants, SIP trunks (see `org` below) ----

    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        self.org_create(org::KEY, &key.key_id, &key.org_id, None, key)
            .await
    }

    async fn get_api_key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        Ok(self.org_get(org::KEY, key_id).await?.map(|(k, _)| k))
    }

    async fn list_api_keys(&self, org_id: Option<&str>) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let mut all: Vec<ApiKeyRecord> = self.org_list(org::KEY, org_id).await?;
        all.retain(|k| org_id.is_none_or(|o| k.org_id == o));
        all.sort_by(|a, b| (a.created_at, &a.key_id).cmp(&(b.created_at, &b.key_id)));
        Ok(all)
    }

    async fn revoke_api_key(
        &self,
        key_id: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<ApiKeyRecord, StoreError> {
        // Optimistic: the new body is written only over the body read.
        for _ in 0..STORE_RETRIES {
            let Some((mut key, old_body)) = self.org_get::<ApiKeyRecord>(org::KEY, key_id).await?
            else {
                return Err(StoreError::NotFound {
                    entity: org::KEY.entity,
                    id: key_id.to_owned(),
                });
            };
            if key.revoked_at.is_some() {
                return Ok(key);
            }
            key.revoked_at = Some(at);
            let item = org::item(org::KEY, key_id, &key.org_id, None, &key)?;
            let failed = self
                .conditional_put(
                    &self.tables.org_records,
                    item,
                    "#b = :b",
                    Self::names(&[("#b", org::BODY)]),
                    Some(HashMap::from([(":b".to_owned(), s(old_body))])),
                    &format!("revoking api key {key_id}"),
                )
                .await?;
            if failed.is_none() {
                return Ok(key);
            }
        }
        Err(StoreError::VersionConflict {
            entity: org::KEY.entity,
            id: key_id.to_owned(),
            expected: 0,
        })
    }

    async fn create_assistant(&self, assistant: &Assistant) -> Result<Assistant, StoreError> {
        let mut a = assistant.clone();
        a.version = 1;
        self.org_create(org::ASSISTANT, &a.assistant_id, &a.org_id, Some(1), &a)
            .await?;
        Ok(a)
    }

    async fn get_assistant(&self, assistant_id: &str) -> Result<Option<Assistant>, StoreError> {
        Ok(self
            .org_get(org::ASSISTANT, assistant_id)
            .await?
            .map(|(a, _)| a))
    }

    async fn list_assistants(&self, org_id: Option<&str>) -> Result<Vec<Assistant>, StoreError> {
        let mut all: Vec<Assistant> = self.org_list(org::ASSISTANT, org_id).await?;
        all.retain(|a| org_id.is_none_or(|o| a.org_id == o));
        all.sort_by(|a, b| (a.created_at, &a.assistant_id).cmp(&(b.created_at, &b.assistant_id)));
        Ok(all)
    }

    async fn update_assistant(&self, assistant: &Assistant) -> Result<Assistant, StoreError> {
        let mut a = assistant.clone();
        let id = a.assistant_id.clone();
        let expected = a.version;
        a.version = expected.checked_add(1).ok_or_else(|| {
            StoreError::backend(format!("update_assistant {id}"), "version overflowed")
        })?;
        let item = org::item(org::ASSISTANT, &id, &a.org_id, Some(a.version), &a)?;
        let failed = self
            .conditional_put(
                &self.tables.org_records,
                item,
                "#v = :v",
                Self::names(&[("#v", VERSION)]),
                Some(HashMap::from([(":v".to_owned(), n(expected))])),
                &format!("updating assistant {id}"),
            )
            .await?;
        match failed {
            None => Ok(a),
            Some(old) => Err(self
                .update_failure(
                    &self.tables.org_records,
                    org::key(org::ASSISTANT, &id),
                    old,
                    org::ASSISTANT.entity,
                    &id,
                    expected,
                )
                .await?),
        }
    }

    async fn delete_assistant(&self, assistant_id: &str) -> Result<bool, StoreError> {
        self.org_delete(org::ASSISTANT, assistant_id).await
    }

    async fn create_sip_trunk(&self, trunk: &SipTrunk) -> Result<(), StoreError> {
        self.org_create(org::TRUNK, &trunk.trunk_id, &trunk.org_id, None, trunk)
            .await
    }

    async fn get_sip_trunk(&self, trunk_id: &str) -> Result<Option<SipTrunk>, StoreError> {
        Ok(self.org_get(org::TRUNK, trunk_id).await?.map(|(t, _)| t))
    }

    async fn list_sip_trunks(&self, org_id: Option<&str>) -> Result<Vec<SipTrunk>, StoreError> {
        let mut all: Vec<SipTrunk> = self.org_list(org::TRUNK, org_id).await?;
        all.retain(|t| org_id.is_none_or(|o| t.org_id == o));
        all.sort_by(|a, b| (a.created_at, &a.trunk_id).cmp(&(b.created_at, &b.trunk_id)));
        Ok(all)
    }

    async fn delete_sip_trunk(&self, trunk_id: &str) -> Result<bool, StoreError> {
        self.org_delete(org::TRUNK, trunk_id).await
    }

    // ---- end of organisations ----

    // ---- End-of-call webhook deliveries ----

    async fn create_webhook_delivery(
        &self,
        delivery: &WebhookDelivery,
    ) -> Result<WebhookDelivery, StoreError> {
        let mut d = delivery.clone();
        d.version = 1;
        let ctx = format!("create_webhook_delivery {}", d.delivery_id);
        let item = to_item(&d, DELIVERY_JSON).map_err(codec_err(ctx))?;
        self.create_item(
            &self.tables.webhook_deliveries,
            "deliveryId",
            "webhook delivery",
            &d.delivery_id,
            item,
        )
        .await?;
        Ok(d)
    }

    async fn update_webhook_delivery(
        &self,
        delivery: &WebhookDelivery,
    ) -> Result<WebhookDelivery, StoreError> {
        let id = delivery.delivery_id.clone();
        let ctx = format!("update_webhook_delivery {id}");
        let expected = delivery.version;
        let mut next = delivery.clone();
        next.version = expected.checked_add(1).ok_or_else(|| {
            StoreError::backend(ctx.clone(), DynamoError::plain("version overflowed u64"))
        })?;
        let item = to_item(&next, DELIVERY_JSON).map_err(codec_err(ctx.clone()))?;
        let table = &self.tables.webhook_deliveries;
        let failed = self
            .conditional_put(
                table,
                item,
                "#v = :expected",
                Self::names(&[("#v", VERSION)]),
                Some(HashMap::from([(":expected".to_owned(), n(expected))])),
                &ctx,
            )
            .await?;
        match failed {
            None => Ok(next),
            Some(old) => Err(self
                .update_failure(
                    table,
                    HashMap::from([("deliveryId".to_owned(), s(id.as_str()))]),
                    old,
                    "webhook delivery",
                    &id,
                    expected,
                )
                .await?),
        }
    }

    async fn get_webhook_delivery(
        &self,
        delivery_id: &str,
    ) -> Result<Option<WebhookDelivery>, StoreError> {
        let key = HashMap::from([("deliveryId".to_owned(), s(delivery_id))]);
        let item = self
            .get_item(&self.tables.webhook_deliveries, key, || {
                format!("get_webhook_delivery {delivery_id}")
            })
            .await?;
        item.map(|i| decode(&i, DELIVERY_JSON, "webhook delivery", "deliveryId"))
            .transpose()
    }

    async fn list_webhook_deliveries_by_call(
        &self,
        call_id: &str,
    ) -> Result<Vec<WebhookDelivery>, StoreError> {
        let t = &self.tables.webhook_deliveries;
        let ctx = format!("list_webhook_deliveries_by_call {call_id}");
        let ids = self
            .ids_by_index(
                t,
                tables::index::CALL_ID,
                "callId",
                call_id,
                "deliveryId",
                &ctx,
            )
            .await?;
        let mut out: Vec<WebhookDelivery> = self
            .load_many(t, "deliveryId", &ids, DELIVERY_JSON, "webhook delivery")
            .await?;
        out.retain(|d| d.call_id == call_id);
        out.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
        Ok(out)
    }

    async fn list_pending_webhook_deliveries(&self) -> Result<Vec<WebhookDelivery>, StoreError> {
        let t = &self.tables.webhook_deliveries;
        let pending = DeliveryStatus::Pending.as_str();
        let ids = self
            .ids_by_index(
                t,
                tables::index::STATUS,
                "status",
                pending,
                "deliveryId",
                "list_pending_webhook_deliveries",
            )
            .await?;
        let mut out: Vec<WebhookDelivery> = self
            .load_many(t, "deliveryId", &ids, DELIVERY_JSON, "webhook delivery")
            .await?;
        // The index may lag behind a status change: keep only what is pending now.
        out.retain(|d| d.status == DeliveryStatus::Pending);
        out.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
        Ok(out)
    }

    // ---- end of webhook deliveries ----
}

/// The organisations' records in one table, `OrgRecords`: `recordId` = `<kind>#<id>`
/// (`key#…`, `assistant#…`, `trunk#…`), `kind`, `orgId` (indexed by `orgId-index`),
/// `version` (assistants), and `body`, the record as JSON text (an API key's secret only as
/// its digest). Listing by organisation takes the ids from the index and reads the items
/// consistently; listing everything scans the table.
mod org {
    use std::collections::HashMap;

    use serde::Serialize;

    use super::codec::{n, s, Item};
    use super::StoreError;

    /// The attribute holding the record's JSON.
    pub const BODY: &str = "body";

    /// A kind of record.
    #[derive(Debug, Clone, Copy)]
    pub struct Kind {
        /// The `kind` attribute and `recordId` prefix.
        pub prefix: &'static str,
        /// The entity's name in errors.
        pub entity: &'static str,
    }

    pub const KEY: Kind = Kind {
        prefix: "key",
        entity: "api key",
    };
    pub const ASSISTANT: Kind = Kind {
        prefix: "assistant",
        entity: "assistant",
    };
    pub const TRUNK: Kind = Kind {
        prefix: "trunk",
        entity: "sip trunk",
    };

    /// The `recordId` of a record.
    pub fn record_id(kind: Kind, id: &str) -> String {
        format!("{}#{id}", kind.prefix)
    }

    /// The key of a record's item.
    pub fn key(kind: Kind, id: &str) -> Item {
        HashMap::from([("recordId".to_owned(), s(record_id(kind, id)))])
    }

    /// A record's item.
    pub fn item<T: Serialize>(
        kind: Kind,
        id: &str,
        org_id: &str,
        version: Option<u64>,
        value: &T,
    ) -> Result<Item, StoreError> {
        let body = serde_json::to_string(value)
            .map_err(|e| StoreError::backend(format!("encoding {} {id}", kind.entity), e))?;
        let mut item = key(kind, id);
        item.insert("kind".to_owned(), s(kind.prefix));
        item.insert("orgId".to_owned(), s(org_id));
        item.insert(BODY.to_owned(), s(body));
        if let Some(v) = version {
            item.insert(super::VERSION.to_owned(), n(v));
        }
        Ok(item)
    }
}

impl DynamoStore {
    async fn org_create<T: serde::Serialize>(
        &self,
        kind: org::Kind,
        id: &str,
        org_id: &str,
        version: Option<u64>,
        value: &T,
    ) -> Result<(), StoreError> {
        let item = org::item(kind, id, org_id, version, value)?;
        self.create_item(&self.tables.org_records, "recordId", kind.entity, id, item)
            .await
    }

    /// A record and its JSON body as stored.
    async fn org_get<T: serde::de::DeserializeOwned>(
        &self,
        kind: org::Kind,
        id: &str,
    ) -> Result<Option<(T, String)>, StoreError> {
        let item = self
            .get_item(&self.tables.org_records, org::key(kind, id), || {
                format!("reading {} {id}", kind.entity)
            })
            .await?;
        item.map(|i| org_decode(&i, kind)).transpose()
    }

    async fn org_list<T: serde::de::DeserializeOwned>(
        &self,
        kind: org::Kind,
        org_id: Option<&str>,
    ) -> Result<Vec<T>, StoreError> {
        let table = &self.tables.org_records;
        let context = format!("listing {}s", kind.entity);
        let prefix = format!("{}#", kind.prefix);
        let items = match org_id {
            Some(o) => {
                let mut ids = self
                    .ids_by_index(
                        table,
                        tables::index::ORG_ID,
                        "orgId",
                        o,
                        "recordId",
                        &context,
                    )
                    .await?;
                ids.retain(|id| id.starts_with(&prefix));
                self.batch_get(table, "recordId", &ids, &context).await?
            }
            None => self.scan_all(table, &context).await?,
        };
        items
            .iter()
            .filter(|i| get_s(i, "recordId").is_some_and(|r| r.starts_with(&prefix)))
            .map(|i| org_decode(i, kind).map(|(v, _)| v))
            .collect()
    }

    async fn org_delete(&self, kind: org::Kind, id: &str) -> Result<bool, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.tables.org_records)
            .set_key(Some(org::key(kind, id)))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| sdk_error(format!("deleting {} {id}", kind.entity), e))?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }
}

/// Decodes an `OrgRecords` item's body.
fn org_decode<T: serde::de::DeserializeOwned>(
    item: &Item,
    kind: org::Kind,
) -> Result<(T, String), StoreError> {
    let id = get_s(item, "recordId").unwrap_or("?");
    let body = get_s(item, org::BODY).ok_or_else(|| {
        StoreError::backend(
            format!("decoding stored {} {id}", kind.entity),
            DynamoError::plain(format!("attribute {} is missing", org::BODY)),
        )
    })?;
    let value = serde_json::from_str(body)
        .map_err(|e| StoreError::backend(format!("decoding stored {} {id}", kind.entity), e))?;
    Ok((value, body.to_owned()))
}

#[cfg(test)]
mod tests;
