//! The tables and indexes of the DynamoDB store: their names, their key schemas, and
//! `init-tables` (idempotent creation, waiting until everything is `ACTIVE`) and the start-up
//! check that they are all there.
//!
//! | table (default name) | key                         | global secondary indexes                                  |
//! |----------------------|-----------------------------|-----------------------------------------------------------|
//! | `Calls`              | `callId` (S)                | `agentAId-index` (`agentAId`; INCLUDE the seed attributes) |
//! | `Transcripts`        | `transcriptId` (S)          | `callId-index` (`callId`; ALL)                             |
//! | `Summaries`          | `summaryId` (S)             | `callId-index` (`callId`; ALL)                             |
//! | `Transfers`          | `transferId` (S)            | `callId-index` (`callId`; ALL), `status-index` (`status`; KEYS_ONLY) |
//! | `Agents`             | `agentId` (S)               |                                                           |
//! | `Rooms`              | `roomId` (S)                | `roomName-index` (`roomName`; KEYS_ONLY)                   |
//! | `Events`             | `callId` (S), `seq` (N)     |                                                           |
//! | `CallAgents`         | `agentId` (S), `callId` (S) |                                                           |
//! | `OpenCalls`          | `callId` (S)                |                                                           |
//! | `OrgRecords`         | `recordId` (S)              | `orgId-index` (`orgId`; KEYS_ONLY)                         |
//!
//! The first six are the classic tables with its index names; the others are the
//! switchboard's own (`OrgRecords`: organisations' API keys, assistants and SIP trunks, see
//! `org` in the store). New tables are created on demand (`PAY_PER_REQUEST`). An existing table
//! (a deployment of the classic layout) is kept: its key schema is checked, and the indexes it lacks are
//! added one at a time with `UpdateTable` (a `PROVISIONED` table's new index gets the
//! table's throughput).

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, CreateGlobalSecondaryIndexAction, GlobalSecondaryIndex,
    GlobalSecondaryIndexUpdate, IndexStatus, KeySchemaElement, KeyType, Projection, ProjectionType,
    ProvisionedThroughput, ScalarAttributeType, TableDescription, TableStatus,
};
use aws_sdk_dynamodb::Client;

use super::sdk_error;
use crate::store::StoreError;

/// How long `init-tables` waits for tables and indexes to become `ACTIVE` (an index added
/// to a big existing table is backfilled first, which can take a while).
pub const ACTIVE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// How many tables the store uses.
pub const TABLE_COUNT: usize = 11;

/// The environment variables naming the tables, their defaults, and the classic layout's among them.
pub const TABLE_VARS: [(&str, &str); TABLE_COUNT] = [
    ("DYNAMODB_TABLE_CALLS", "Calls"),
    ("DYNAMODB_TABLE_TRANSCRIPTS", "Transcripts"),
    ("DYNAMODB_TABLE_SUMMARIES", "Summaries"),
    ("DYNAMODB_TABLE_TRANSFERS", "Transfers"),
    ("DYNAMODB_TABLE_AGENTS", "Agents"),
    ("DYNAMODB_TABLE_ROOMS", "Rooms"),
    ("DYNAMODB_TABLE_EVENTS", "Events"),
    ("DYNAMODB_TABLE_CALL_AGENTS", "CallAgents"),
    ("DYNAMODB_TABLE_OPEN_CALLS", "OpenCalls"),
    ("DYNAMODB_TABLE_ORG_RECORDS", "OrgRecords"),
    // End-of-call webhook deliveries.
    ("DYNAMODB_TABLE_WEBHOOK_DELIVERIES", "WebhookDeliveries"),
];

/// The full names (prefix included) of the store's tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableNames {
    /// Calls (classic layout), with the machine state and version.
    pub calls: String,
    /// Transcript chunks (classic layout).
    pub transcripts: String,
    /// Summaries (classic layout).
    pub summaries: String,
    /// Transfers (classic layout).
    pub transfers: String,
    /// Agents (classic layout).
    pub agents: String,
    /// Rooms (classic layout).
    pub rooms: String,
    /// Call events, keyed `(callId, seq)`.
    pub events: String,
    /// Which agents took part in which call, keyed `(agentId, callId)`.
    pub call_agents: String,
    /// The calls that are not `ended`, keyed `callId`.
    pub open_calls: String,
    /// Organisations' API keys, assistants and SIP trunks, keyed `recordId`
    /// (`<kind>#<id>`).
    pub org_records: String,
    /// End-of-call webhook deliveries, keyed `deliveryId`.
    pub webhook_deliveries: String,
}

impl TableNames {
    /// Builds the names from one name per [`TABLE_VARS`] entry (same order) and a prefix.
    pub fn from_parts(prefix: &str, names: [&str; TABLE_COUNT]) -> TableNames {
        let p = |i: usize| format!("{prefix}{}", names[i]);
        TableNames {
            calls: p(0),
            transcripts: p(1),
            summaries: p(2),
            transfers: p(3),
            agents: p(4),
            rooms: p(5),
            events: p(6),
            call_agents: p(7),
            open_calls: p(8),
            org_records: p(9),
            webhook_deliveries: p(10),
        }
    }

    /// The default names with a prefix (`""` for the classic layout's own names).
    pub fn with_prefix(prefix: &str) -> TableNames {
        TableNames::from_parts(prefix, TABLE_VARS.map(|(_, default)| default))
    }

    /// Every table name, in [`TABLE_VARS`] order.
    pub fn all(&self) -> [&str; TABLE_COUNT] {
        [
            &self.calls,
            &self.transcripts,
            &self.summaries,
            &self.transfers,
            &self.agents,
            &self.rooms,
            &self.events,
            &self.call_agents,
            &self.open_calls,
            &self.org_records,
            &self.webhook_deliveries,
        ]
    }
}

impl Default for TableNames {
    fn default() -> Self {
        TableNames::with_prefix("")
    }
}

/// Checks a full table name against DynamoDB's rules (3 to 255 of `a-z A-Z 0-9 _ - .`).
pub fn check_table_name(name: &str) -> Result<(), String> {
    if !(3..=255).contains(&name.len()) {
        return Err(format!(
            "table name {name:?} must be 3 to 255 characters long"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(format!(
            "table name {name:?} contains {c:?}; only letters, digits, '_', '-' and '.' are allowed"
        ));
    }
    Ok(())
}

/// Index names (the classic layout's and the switchboard's).
pub mod index {
    /// `Calls` by `agentAId` (classic layout).
    pub const AGENT_A: &str = "agentAId-index";
    /// `Transcripts`, `Summaries`, `Transfers` by `callId` (classic layout).
    pub const CALL_ID: &str = "callId-index";
    /// `Transfers` by `status`.
    pub const STATUS: &str = "status-index";
    /// `Rooms` by `roomName`.
    pub const ROOM_NAME: &str = "roomName-index";
    /// `OrgRecords` by `orgId`.
    pub const ORG_ID: &str = "orgId-index";
}

/// The attributes of the classic `Calls` table, projected into `agentAId-index`.
const SEED_CALL_ATTRIBUTES: &[&str] = &[
    "callerId",
    "agentBId",
    "status",
    "createdAt",
    "endAt",
    "lastSummaryId",
];

/// A key attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct KeyAttr {
    name: &'static str,
    number: bool,
}

const fn key_s(name: &'static str) -> KeyAttr {
    KeyAttr {
        name,
        number: false,
    }
}

impl KeyAttr {
    fn scalar_type(self) -> ScalarAttributeType {
        if self.number {
            ScalarAttributeType::N
        } else {
            ScalarAttributeType::S
        }
    }

    fn show(self) -> String {
        format!("{} ({})", self.name, if self.number { "N" } else { "S" })
    }
}

/// What an index carries besides the keys.
#[derive(Debug, Clone, Copy)]
enum Proj {
    All,
    KeysOnly,
    Include(&'static [&'static str]),
}

/// A global secondary index (hash key only).
#[derive(Debug, Clone, Copy)]
struct IndexSpec {
    name: &'static str,
    hash: KeyAttr,
    projection: Proj,
}

/// A table the store needs.
#[derive(Debug, Clone)]
struct TableSpec {
    name: String,
    hash: KeyAttr,
    range: Option<KeyAttr>,
    indexes: Vec<IndexSpec>,
}

fn specs(names: &TableNames) -> Vec<TableSpec> {
    let by_call = IndexSpec {
        name: index::CALL_ID,
        hash: key_s("callId"),
        projection: Proj::All,
    };
    let table = |name: &str, hash, range, indexes| TableSpec {
        name: name.to_owned(),
        hash,
        range,
        indexes,
    };
    vec![
        table(
            &names.calls,
            key_s("callId"),
            None,
            vec![IndexSpec {
                name: index::AGENT_A,
                hash: key_s("agentAId"),
                projection: Proj::Include(SEED_CALL_ATTRIBUTES),
            }],
        ),
        table(
            &names.transcripts,
            key_s("transcriptId"),
            None,
            vec![by_call],
        ),
        table(&names.summaries, key_s("summaryId"), None, vec![by_call]),
        table(
            &names.transfers,
            key_s("transferId"),
            None,
            vec![
                by_call,
                IndexSpec {
                    name: index::STATUS,
                    hash: key_s("status"),
                    projection: Proj::KeysOnly,
                },
            ],
        ),
        table(&names.agents, key_s("agentId"), None, vec![]),
        table(
            &names.rooms,
            key_s("roomId"),
            None,
            vec![IndexSpec {
                name: index::ROOM_NAME,
                hash: key_s("roomName"),
                projection: Proj::KeysOnly,
            }],
        ),
        table(
            &names.events,
            key_s("callId"),
            Some(KeyAttr {
                name: "seq",
                number: true,
            }),
            vec![],
        ),
        table(
            &names.call_agents,
            key_s("agentId"),
            Some(key_s("callId")),
            vec![],
        ),
        table(&names.open_calls, key_s("callId"), None, vec![]),
        table(
            &names.org_records,
            key_s("recordId"),
            None,
            vec![IndexSpec {
                name: index::ORG_ID,
                hash: key_s("orgId"),
                projection: Proj::KeysOnly,
            }],
        ),
        // End-of-call webhook deliveries: by call, and the pending ones by status.
        table(
            &names.webhook_deliveries,
            key_s("deliveryId"),
            None,
            vec![
                by_call,
                IndexSpec {
                    name: index::STATUS,
                    hash: key_s("status"),
                    projection: Proj::KeysOnly,
                },
            ],
        ),
    ]
}

/// A table or index that does not have the shape the store needs.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SchemaError(pub String);

/// What `init-tables` did to one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableAction {
    /// The table did not exist and was created with its indexes.
    Created,
    /// The table and its indexes were there already.
    Existed,
    /// The table existed; these indexes were added.
    AddedIndexes(Vec<String>),
}

/// One line of the `init-tables` report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableReport {
    /// The full table name.
    pub table: String,
    /// What was done.
    pub action: TableAction,
}

impl std::fmt::Display for TableReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.action {
            TableAction::Created => write!(f, "{}: created", self.table),
            TableAction::Existed => write!(f, "{}: exists", self.table),
            TableAction::AddedIndexes(ix) => {
                write!(f, "{}: exists; added {}", self.table, ix.join(", "))
            }
        }
    }
}

fn build_err(context: String) -> impl FnOnce(aws_sdk_dynamodb::error::BuildError) -> StoreError {
    move |e| StoreError::backend(context, e)
}

fn key_schema(
    hash: KeyAttr,
    range: Option<KeyAttr>,
    ctx: &str,
) -> Result<Vec<KeySchemaElement>, StoreError> {
    let mut out = vec![KeySchemaElement::builder()
        .attribute_name(hash.name)
        .key_type(KeyType::Hash)
        .build()
        .map_err(build_err(ctx.to_owned()))?];
    if let Some(r) = range {
        out.push(
            KeySchemaElement::builder()
                .attribute_name(r.name)
                .key_type(KeyType::Range)
                .build()
                .map_err(build_err(ctx.to_owned()))?,
        );
    }
    Ok(out)
}

fn attribute_definition(k: KeyAttr, ctx: &str) -> Result<AttributeDefinition, StoreError> {
    AttributeDefinition::builder()
        .attribute_name(k.name)
        .attribute_type(k.scalar_type())
        .build()
        .map_err(build_err(ctx.to_owned()))
}

fn projection(p: Proj) -> Projection {
    match p {
        Proj::All => Projection::builder()
            .projection_type(ProjectionType::All)
            .build(),
        Proj::KeysOnly => Projection::builder()
            .projection_type(ProjectionType::KeysOnly)
            .build(),
        Proj::Include(attrs) => Projection::builder()
            .projection_type(ProjectionType::Include)
            .set_non_key_attributes(Some(attrs.iter().map(|a| (*a).to_owned()).collect()))
            .build(),
    }
}

/// Reads a table's description; `None` if it does not exist.
async fn describe(client: &Client, table: &str) -> Result<Option<TableDescription>, StoreError> {
    match client.describe_table().table_name(table).send().await {
        Ok(out) => Ok(out.table),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(sdk_error(format!("describing table {table}"), e)),
    }
}

/// The key attributes of a description: `(name, is number)` for hash and range.
fn described_key(
    d: &TableDescription,
    schema: &[KeySchemaElement],
) -> Vec<(String, KeyType, bool)> {
    schema
        .iter()
        .map(|k| {
            let number = d
                .attribute_definitions()
                .iter()
                .find(|a| a.attribute_name() == k.attribute_name())
                .is_some_and(|a| a.attribute_type() == &ScalarAttributeType::N);
            (k.attribute_name().to_owned(), k.key_type().clone(), number)
        })
        .collect()
}

fn wanted_key(hash: KeyAttr, range: Option<KeyAttr>) -> Vec<(String, KeyType, bool)> {
    let mut out = vec![(hash.name.to_owned(), KeyType::Hash, hash.number)];
    if let Some(r) = range {
        out.push((r.name.to_owned(), KeyType::Range, r.number));
    }
    out
}

fn show_key(key: &[(String, KeyType, bool)]) -> String {
    key.iter()
        .map(|(n, t, num)| format!("{n} {} ({})", t.as_str(), if *num { "N" } else { "S" }))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every problem of an existing table against its spec: `(wrong key, missing indexes)`.
fn compare(spec: &TableSpec, d: &TableDescription) -> (Vec<String>, Vec<IndexSpec>) {
    let mut problems = Vec::new();
    let have = described_key(d, d.key_schema());
    let want = wanted_key(spec.hash, spec.range);
    if have != want {
        problems.push(format!(
            "table {} has the key [{}] but the switchboard needs [{}]",
            spec.name,
            show_key(&have),
            show_key(&want)
        ));
    }
    let mut missing = Vec::new();
    for ix in &spec.indexes {
        match d
            .global_secondary_indexes()
            .iter()
            .find(|g| g.index_name() == Some(ix.name))
        {
            None => missing.push(*ix),
            Some(g) => {
                let have = described_key(d, g.key_schema());
                let want = wanted_key(ix.hash, None);
                // The classic layout's indexes may carry a range key too; only the hash key matters here.
                if have.first() != want.first() {
                    problems.push(format!(
                        "index {} of table {} has the key [{}] but the switchboard needs [{}]",
                        ix.name,
                        spec.name,
                        show_key(&have),
                        ix.hash.show()
                    ));
                }
            }
        }
    }
    (problems, missing)
}

/// Checks that every table and index exists with the right keys (at start-up, when the
/// server is not asked to create them). Names everything that is missing or wrong.
pub async fn verify(client: &Client, names: &TableNames) -> Result<(), StoreError> {
    let mut problems = Vec::new();
    for spec in specs(names) {
        match describe(client, &spec.name).await? {
            None => problems.push(format!("table {} does not exist", spec.name)),
            Some(d) => {
                let (mut wrong, missing) = compare(&spec, &d);
                problems.append(&mut wrong);
                for ix in missing {
                    problems.push(format!("table {} has no index {}", spec.name, ix.name));
                }
            }
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(StoreError::backend(
        "checking the DynamoDB tables",
        SchemaError(format!(
            "{}; run `switchboard init-tables` (or start with SWITCHBOARD_INIT_TABLES=true) to \
             create what is missing",
            problems.join("; ")
        )),
    ))
}

/// Creates every missing table and index, and waits until all are `ACTIVE`. Safe to run
/// again and concurrently: what exists is kept (and its key schema checked).
pub async fn init(client: &Client, names: &TableNames) -> Result<Vec<TableReport>, StoreError> {
    let mut reports = Vec::new();
    for spec in specs(names) {
        let ctx = format!("creating table {}", spec.name);
        let action = match describe(client, &spec.name).await? {
            None => {
                create(client, &spec, &ctx).await?;
                wait_active(client, &spec.name).await?;
                TableAction::Created
            }
            Some(d) => {
                let (wrong, missing) = compare(&spec, &d);
                if !wrong.is_empty() {
                    return Err(StoreError::backend(ctx, SchemaError(wrong.join("; "))));
                }
                wait_active(client, &spec.name).await?;
                if missing.is_empty() {
                    TableAction::Existed
                } else {
                    let mut added = Vec::new();
                    for ix in missing {
                        add_index(client, &spec, &d, ix).await?;
                        wait_active(client, &spec.name).await?;
                        added.push(ix.name.to_owned());
                    }
                    TableAction::AddedIndexes(added)
                }
            }
        };
        tracing::info!(table = %spec.name, ?action, "DynamoDB table ready");
        reports.push(TableReport {
            table: spec.name.clone(),
            action,
        });
    }
    Ok(reports)
}

async fn create(client: &Client, spec: &TableSpec, ctx: &str) -> Result<(), StoreError> {
    let mut defs = vec![attribute_definition(spec.hash, ctx)?];
    if let Some(r) = spec.range {
        defs.push(attribute_definition(r, ctx)?);
    }
    let mut gsis = Vec::new();
    for ix in &spec.indexes {
        if !defs.iter().any(|d| d.attribute_name() == ix.hash.name) {
            defs.push(attribute_definition(ix.hash, ctx)?);
        }
        gsis.push(
            GlobalSecondaryIndex::builder()
                .index_name(ix.name)
                .set_key_schema(Some(key_schema(ix.hash, None, ctx)?))
                .projection(projection(ix.projection))
                .build()
                .map_err(build_err(ctx.to_owned()))?,
        );
    }
    let result = client
        .create_table()
        .table_name(&spec.name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(Some(key_schema(spec.hash, spec.range, ctx)?))
        .set_attribute_definitions(Some(defs))
        .set_global_secondary_indexes((!gsis.is_empty()).then_some(gsis))
        .send()
        .await;
    match result {
        Ok(_) => Ok(()),
        // Someone else (another node's init) is creating it: wait for it like for ours.
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_in_use_exception()) =>
        {
            Ok(())
        }
        Err(e) => Err(sdk_error(ctx.to_owned(), e)),
    }
}

async fn add_index(
    client: &Client,
    spec: &TableSpec,
    d: &TableDescription,
    ix: IndexSpec,
) -> Result<(), StoreError> {
    let ctx = format!("adding index {} to table {}", ix.name, spec.name);
    let mut action = CreateGlobalSecondaryIndexAction::builder()
        .index_name(ix.name)
        .set_key_schema(Some(key_schema(ix.hash, None, &ctx)?))
        .projection(projection(ix.projection));
    let provisioned = d
        .billing_mode_summary()
        .and_then(|b| b.billing_mode())
        .is_none_or(|m| m == &BillingMode::Provisioned);
    if let (true, Some(t)) = (provisioned, d.provisioned_throughput()) {
        let (r, w) = (
            t.read_capacity_units().unwrap_or(0),
            t.write_capacity_units().unwrap_or(0),
        );
        if r > 0 && w > 0 {
            action = action.provisioned_throughput(
                ProvisionedThroughput::builder()
                    .read_capacity_units(r)
                    .write_capacity_units(w)
                    .build()
                    .map_err(build_err(ctx.clone()))?,
            );
        }
    }
    let result = client
        .update_table()
        .table_name(&spec.name)
        .attribute_definitions(attribute_definition(ix.hash, &ctx)?)
        .global_secondary_index_updates(
            GlobalSecondaryIndexUpdate::builder()
                .create(action.build().map_err(build_err(ctx.clone()))?)
                .build(),
        )
        .send()
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) => {
            // A concurrent init may have added it meanwhile.
            if let Some(now) = describe(client, &spec.name).await? {
                if now
                    .global_secondary_indexes()
                    .iter()
                    .any(|g| g.index_name() == Some(ix.name))
                {
                    return Ok(());
                }
            }
            Err(sdk_error(ctx, e))
        }
    }
}

/// Polls until the table and all its indexes are `ACTIVE`.
async fn wait_active(client: &Client, table: &str) -> Result<(), StoreError> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(100);
    let mut announced = false;
    loop {
        let d = describe(client, table).await?;
        let ready = d.as_ref().is_some_and(|d| {
            d.table_status() == Some(&TableStatus::Active)
                && d.global_secondary_indexes()
                    .iter()
                    .all(|g| g.index_status() == Some(&IndexStatus::Active))
        });
        if ready {
            return Ok(());
        }
        if started.elapsed() > ACTIVE_TIMEOUT {
            return Err(StoreError::backend(
                format!("waiting for table {table}"),
                SchemaError(format!(
                    "table {table} or one of its indexes is still not ACTIVE after {} s",
                    ACTIVE_TIMEOUT.as_secs()
                )),
            ));
        }
        if !announced && started.elapsed() > Duration::from_secs(5) {
            tracing::info!(%table, "waiting for the table and its indexes to become ACTIVE");
            announced = true;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_take_the_prefix_and_seed_defaults() {
        let t = TableNames::with_prefix("dev-");
        assert_eq!(t.calls, "dev-Calls");
        assert_eq!(t.open_calls, "dev-OpenCalls");
        assert_eq!(TableNames::default().transcripts, "Transcripts");
        assert_eq!(t.all().len(), TABLE_VARS.len());
    }

    #[test]
    fn table_names_follow_dynamodb_rules() {
        assert!(check_table_name("Calls").is_ok());
        assert!(check_table_name("my.app-Calls_2").is_ok());
        assert!(check_table_name("ab").is_err());
        assert!(check_table_name("has space").is_err());
        assert!(check_table_name(&"x".repeat(256)).is_err());
    }
}
