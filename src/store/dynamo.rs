//! The DynamoDB store (`SWITCHBOARD_STORE=dynamodb`): the classic six tables with their
//! camelCase attributes and `callId-index` / `agentAId-index`, plus three tables of the
//! switchboard's own (events, who took part in which call, which calls are open). See
//! [`tables`] for the layout and `init-tables`, and [`codec`] for how records become items.
//!
//! # Consistency
//!
//! * [`CallStore::commit_call`](crate::store::CallStore::commit_call) is **one `TransactWriteItems`**: the call item (`Put`, condition
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
//!   `attribute_not_exists(version)` for an item of the classic layout that has none). Transcripts and
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

use aws_sdk_dynamodb::config::{Credentials, Region};
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;
use aws_sdk_dynamodb::Client;
use serde_json::Value;

use self::codec::{codec_err, from_item, get_s, get_u64, item_size, s, Item};
pub use self::tables::{TableAction, TableNames, TableReport, TABLE_VARS};
use super::record::{bumped, of_org, oldest_first, Record};
use super::{CallCommit, StoreError, StoredCall};
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

/// Settings of the DynamoDB store, read and validated by the configuration above the store
/// (which imports this type; the store imports nothing of the configuration).
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

/// The DynamoDB [`Store`](crate::store::Store). Cheap to clone (the SDK client is shared).
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
}

/// A record that belongs to a call, stored in its own table keyed by its id and listed by
/// call through `callId-index` (transfers, transcripts, summaries, webhook deliveries).
trait CallRecord: Record + serde::de::DeserializeOwned {
    /// The partition key attribute.
    const PK: &'static str;
    /// Its call.
    fn call_id(&self) -> &str;
}

macro_rules! call_record {
    ($ty:ty, $pk:literal) => {
        impl CallRecord for $ty {
            const PK: &'static str = $pk;
            fn call_id(&self) -> &str {
                &self.call_id
            }
        }
    };
}

call_record!(Transfer, "transferId");
call_record!(Transcript, "transcriptId");
call_record!(Summary, "summaryId");
call_record!(WebhookDelivery, "deliveryId");

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
        oldest_first(&mut out);
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
                "the item has no {what} attribute (an item the switchboard did not write, such as a call of the classic layout?)"
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

mod agents;
mod calls;
mod commit;
mod ops;
mod org;
mod transcripts;
mod webhooks;

#[cfg(test)]
mod tests;
