//! Tests of the DynamoDB store against a local server (moto, started by `scripts/test.sh`):
//! the conformance suite, unchanged, twice (DynamoDB's page sizes, and pages of 2 items so
//! that every listing follows `LastEvaluatedKey`), then what only this backend has: races of
//! many writers, DynamoDB's limits, `init-tables`, classic-layout items, and error mapping.
//!
//! Every test uses its own table prefix, so tests run concurrently on one server.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::json;

use super::codec::{get_s, s};
use super::*;
use crate::model::new_id;
use crate::store::conformance::fixtures;
use crate::store::prelude::*;

/// The variable naming the local DynamoDB endpoint the tests use.
pub const ENDPOINT_VAR: &str = "SWITCHBOARD_TEST_DYNAMODB_ENDPOINT";

/// The local endpoint; fails the test loudly when it is not configured.
fn endpoint() -> String {
    std::env::var(ENDPOINT_VAR)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| {
            panic!(
                "{ENDPOINT_VAR} is not set. The DynamoDB tests need a local DynamoDB: run \
             `scripts/test.sh` (it starts one), or start moto yourself with \
             `python3 -m pip install -r tests/py/requirements.txt && \
             python3 tests/py/moto_dynamodb.py -p 5000` and set \
             {ENDPOINT_VAR}=http://127.0.0.1:5000"
            )
        })
}

/// A configuration for the local server with a fresh table prefix and fake credentials.
fn test_config(prefix: &str) -> DynamoConfig {
    DynamoConfig {
        tables: TableNames::with_prefix(prefix),
        endpoint_url: Some(endpoint()),
        region: Some("us-east-1".into()),
        credentials: Some(StaticCredentials {
            access_key_id: "testing".into(),
            secret_access_key: Secret::new("testing"),
            session_token: None,
        }),
        max_attempts: 3,
        timeout: Duration::from_secs(20),
        init_tables: true,
    }
}

/// A unique table prefix.
fn prefix() -> String {
    format!("t{}-", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// A store on fresh tables; fails loudly (with how to start moto) if the server is down.
async fn fresh_store() -> DynamoStore {
    let config = test_config(&prefix());
    let store = DynamoStore::connect(&config).await.expect("connect");
    if let Err(e) = store.init_tables().await {
        panic!(
            "could not create tables on the local DynamoDB at {}: {}. Is it running? \
             `scripts/test.sh` starts it; by hand: `python3 tests/py/moto_dynamodb.py -p 5000` \
             with {ENDPOINT_VAR}=http://127.0.0.1:5000",
            endpoint(),
            error_chain(&e)
        );
    }
    store
}

async fn moto_store() -> (DynamoStore, ()) {
    (fresh_store().await, ())
}

async fn small_pages_store() -> (DynamoStore, ()) {
    (fresh_store().await.with_page_limit(2), ())
}

/// An error with all its sources, for messages.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(&format!(": {s}"));
        src = s.source();
    }
    out
}

mod conformance {
    crate::store_conformance_tests!(super::moto_store());
}

mod conformance_small_pages {
    crate::store_conformance_tests!(super::small_pages_store());
}

/// Many commits from one version at once (complete vs cancel of one transfer, as two agents
/// or a webhook and a command would race): exactly one lands, whole; every other one gets
/// `VersionConflict` and lands nothing. Several rounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_racing_commits_from_one_version_exactly_one_wins() {
    let store = fresh_store().await;
    for round in 0..4 {
        let owner = new_id("agent");
        let target = new_id("agent");
        let call = fixtures::call(&owner);
        let mut transfer = fixtures::transfer(&call.call_id, &owner, &target);
        transfer.status = TransferStatus::Briefing;
        let mut create = fixtures::create(&call);
        create.transfers = vec![transfer.clone()];
        create.events = vec![fixtures::event(&call.call_id, 1)];
        store.commit_call(create).await.unwrap();

        let contenders: Vec<CallCommit> = (0..12usize)
            .map(|i| {
                let completes = i.is_multiple_of(2);
                let mut c = call.clone();
                let mut t = transfer.clone();
                if completes {
                    c.owner_id = Some(target.clone());
                    c.agent_b_id = Some(target.clone());
                    t.status = TransferStatus::Completed;
                } else {
                    t.status = TransferStatus::Cancelled;
                }
                let mut commit = fixtures::update(&c, 1);
                commit.state = json!({"contender": i});
                commit.transfers = vec![t];
                let mut e = fixtures::event(&call.call_id, 2);
                e.kind = if completes {
                    "transfer.completed"
                } else {
                    "transfer.cancelled"
                }
                .into();
                e.data = json!({"contender": i});
                commit.events = vec![e];
                commit
            })
            .collect();
        let results = futures_util::future::join_all(contenders.into_iter().map(|c| {
            let store = store.clone();
            tokio::spawn(async move { store.commit_call(c).await })
        }))
        .await;
        let results: Vec<Result<u64, StoreError>> =
            results.into_iter().map(|r| r.unwrap()).collect();
        let winners: Vec<usize> = results
            .iter()
            .enumerate()
            .filter(|(_, r)| r.is_ok())
            .map(|(i, _)| i)
            .collect();
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one winner: {results:?}"
        );
        let winner = winners[0];
        assert_eq!(results[winner].as_ref().unwrap(), &2);
        for (i, r) in results.iter().enumerate() {
            if i != winner {
                assert!(
                    matches!(
                        r,
                        Err(StoreError::VersionConflict {
                            expected: 1,
                            entity: "call",
                            ..
                        })
                    ),
                    "round {round}: loser {i} gets VersionConflict, got {r:?}"
                );
            }
        }
        let stored = store.get_call(&call.call_id).await.unwrap().unwrap();
        assert_eq!(stored.version, 2);
        assert_eq!(stored.state, json!({"contender": winner}));
        let want = if winner.is_multiple_of(2) {
            TransferStatus::Completed
        } else {
            TransferStatus::Cancelled
        };
        let t = store
            .get_transfer(&transfer.transfer_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(t.status, want, "the transfer shows the winner's outcome");
        let owner_now = stored.call.owner_id.clone().unwrap();
        assert_eq!(owner_now == target, want == TransferStatus::Completed);
        let events = store.events_since(&call.call_id, 0).await.unwrap();
        assert_eq!(events.len(), 2, "the winner's event only");
        assert_eq!(events[1].data, json!({"contender": winner}));
        let listed = store.list_transfers(&[want]).await.unwrap();
        assert!(
            listed.iter().any(|x| x.transfer_id == transfer.transfer_id),
            "the status index agrees"
        );
        let briefing = store
            .list_transfers(&[TransferStatus::Briefing])
            .await
            .unwrap();
        assert!(!briefing
            .iter()
            .any(|x| x.transfer_id == transfer.transfer_id));
    }
}

/// A commit with more writes than one transaction may hold is refused before anything is
/// sent: nothing lands.
#[tokio::test]
async fn a_commit_over_the_transaction_limit_writes_nothing() {
    let store = fresh_store().await;
    let call = fixtures::call(&new_id("agent"));
    let mut commit = fixtures::create(&call);
    commit.events = (1..=120)
        .map(|seq| fixtures::event(&call.call_id, seq))
        .collect();
    match store.commit_call(commit).await {
        Err(e @ StoreError::Backend { .. }) => {
            let text = error_chain(&e);
            assert!(text.contains("limit of 100"), "{text}");
            assert!(text.contains("nothing was written"), "{text}");
        }
        other => panic!("expected a backend error, got {other:?}"),
    }
    assert_eq!(store.get_call(&call.call_id).await.unwrap(), None);
    assert!(store
        .events_since(&call.call_id, 0)
        .await
        .unwrap()
        .is_empty());
    // 98 events (+ the call and its open-call entry + the owner's entry = 101) still too many;
    // 96 fit.
    let mut commit = fixtures::create(&call);
    commit.events = (1..=96)
        .map(|seq| fixtures::event(&call.call_id, seq))
        .collect();
    assert_eq!(store.commit_call(commit).await.unwrap(), 1);
    assert_eq!(
        store.events_since(&call.call_id, 0).await.unwrap().len(),
        96
    );
}

/// An item over 400 KB is refused before anything is sent.
#[tokio::test]
async fn an_item_over_400_kb_writes_nothing() {
    let store = fresh_store().await;
    let call = fixtures::call(&new_id("agent"));
    let mut commit = fixtures::create(&call);
    commit.state = json!({"blob": "x".repeat(MAX_ITEM_BYTES)});
    match store.commit_call(commit).await {
        Err(e @ StoreError::Backend { .. }) => {
            assert!(error_chain(&e).contains("400 KB"), "{}", error_chain(&e))
        }
        other => panic!("expected a backend error, got {other:?}"),
    }
    assert_eq!(store.get_call(&call.call_id).await.unwrap(), None);
    // Just under the limit is fine.
    let mut commit = fixtures::create(&call);
    commit.state = json!({"blob": "x".repeat(MAX_ITEM_BYTES - 10_000)});
    assert_eq!(store.commit_call(commit).await.unwrap(), 1);
}

/// `init-tables` twice: the second run finds everything and changes nothing.
#[tokio::test]
async fn init_tables_is_idempotent() {
    let store = fresh_store().await;
    let again = store.init_tables().await.unwrap();
    assert_eq!(again.len(), crate::store::dynamo::tables::TABLE_COUNT);
    assert_eq!(again.len(), TABLE_VARS.len());
    assert!(
        again.iter().all(|r| r.action == TableAction::Existed),
        "{again:?}"
    );
    store.verify_tables().await.unwrap();
    // Two inits at once (two nodes starting) both succeed.
    let config = test_config(&prefix());
    let a = DynamoStore::connect(&config).await.unwrap();
    let b = a.clone();
    let (ra, rb) = tokio::join!(a.init_tables(), b.init_tables());
    ra.unwrap();
    rb.unwrap();
    a.verify_tables().await.unwrap();
}

/// A deployment of the classic layout: its tables exist with their own indexes; `init-tables` keeps them,
/// adds the indexes and tables the switchboard needs, and the store then works on them.
#[tokio::test]
async fn init_tables_completes_a_seed_deployment() {
    let config = test_config(&prefix());
    let store = DynamoStore::connect(&config).await.unwrap();
    let t = store.tables().clone();
    // the classic layout's Transfers: transferId key and callId-index only.
    store
        .client
        .create_table()
        .table_name(&t.transfers)
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .key_schema(
            aws_sdk_dynamodb::types::KeySchemaElement::builder()
                .attribute_name("transferId")
                .key_type(aws_sdk_dynamodb::types::KeyType::Hash)
                .build()
                .unwrap(),
        )
        .attribute_definitions(
            aws_sdk_dynamodb::types::AttributeDefinition::builder()
                .attribute_name("transferId")
                .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .attribute_definitions(
            aws_sdk_dynamodb::types::AttributeDefinition::builder()
                .attribute_name("callId")
                .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .global_secondary_indexes(
            aws_sdk_dynamodb::types::GlobalSecondaryIndex::builder()
                .index_name("callId-index")
                .key_schema(
                    aws_sdk_dynamodb::types::KeySchemaElement::builder()
                        .attribute_name("callId")
                        .key_type(aws_sdk_dynamodb::types::KeyType::Hash)
                        .build()
                        .unwrap(),
                )
                .projection(
                    aws_sdk_dynamodb::types::Projection::builder()
                        .projection_type(aws_sdk_dynamodb::types::ProjectionType::All)
                        .build(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("creating a seed table on {}: {e:?}", endpoint()));
    // Without init, the start-up check names what is missing.
    let err = error_chain(&store.verify_tables().await.unwrap_err());
    assert!(
        err.contains(&format!("table {} has no index status-index", t.transfers)),
        "{err}"
    );
    assert!(
        err.contains(&format!("table {} does not exist", t.calls)),
        "{err}"
    );
    assert!(err.contains("switchboard init-tables"), "{err}");

    let report = store.init_tables().await.unwrap();
    let transfers = report.iter().find(|r| r.table == t.transfers).unwrap();
    assert_eq!(
        transfers.action,
        TableAction::AddedIndexes(vec!["status-index".into()])
    );
    assert_eq!(
        transfers.to_string(),
        format!("{}: exists; added status-index", t.transfers)
    );
    assert!(report
        .iter()
        .filter(|r| r.table != t.transfers)
        .all(|r| r.action == TableAction::Created));
    store.verify_tables().await.unwrap();
    crate::store::conformance::transfers_by_call_and_status(&store).await;
}

/// A table with the seed's name but another key is refused, by name, and left alone.
#[tokio::test]
async fn init_tables_refuses_a_table_with_another_key() {
    let config = test_config(&prefix());
    let store = DynamoStore::connect(&config).await.unwrap();
    store
        .client
        .create_table()
        .table_name(&store.tables().agents)
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .key_schema(
            aws_sdk_dynamodb::types::KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(aws_sdk_dynamodb::types::KeyType::Hash)
                .build()
                .unwrap(),
        )
        .attribute_definitions(
            aws_sdk_dynamodb::types::AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let err = error_chain(&store.init_tables().await.unwrap_err());
    assert!(
        err.contains("has the key [id HASH (S)] but the switchboard needs [agentId HASH (S)]"),
        "{err}"
    );
    let err = error_chain(&store.verify_tables().await.unwrap_err());
    assert!(err.contains("[agentId HASH (S)]"), "{err}");
}

/// Items as the classic layout's writers wrote them (no version, 3-digit timestamps) are read, and an agent is
/// updated under the condition that it still has no version. A seed call, which has no
/// machine state, is a clear error rather than a guess.
#[tokio::test]
async fn classic_layout_items_are_read_and_updated() {
    let store = fresh_store().await;
    let t = store.tables().clone();
    let put = |table: &str, attrs: Vec<(&str, AttributeValue)>| {
        let item: Item = attrs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        store
            .client
            .put_item()
            .table_name(table)
            .set_item(Some(item))
            .send()
    };
    let agent_id = new_id("agent");
    put(
        &t.agents,
        vec![
            ("agentId", s(&agent_id)),
            ("name", s("Seed Agent")),
            ("active", AttributeValue::Bool(true)),
            ("createdAt", s("2024-05-06T07:08:09.123Z")),
        ],
    )
    .await
    .unwrap();
    let agent = store.get_agent(&agent_id).await.unwrap().unwrap();
    assert_eq!((agent.name.as_str(), agent.version), ("Seed Agent", 0));
    let mut renamed = agent.clone();
    renamed.name = "Renamed".into();
    let updated = store.update_agent(&renamed).await.unwrap();
    assert_eq!(updated.version, 1);
    // A second writer that also read the seed item (version 0) loses.
    match store.update_agent(&agent).await {
        Err(StoreError::VersionConflict { expected: 0, .. }) => {}
        other => panic!("expected VersionConflict, got {other:?}"),
    }
    assert_eq!(store.get_agent(&agent_id).await.unwrap(), Some(updated));
    assert!(store
        .list_agents()
        .await
        .unwrap()
        .iter()
        .any(|a| a.agent_id == agent_id));

    let call_id = new_id("call");
    put(
        &t.transcripts,
        vec![
            ("transcriptId", s(new_id("tx"))),
            ("callId", s(&call_id)),
            ("text", s("hello from the seed")),
            ("source", s("whisper")),
            ("createdAt", s("2024-05-06T07:08:09.123Z")),
        ],
    )
    .await
    .unwrap();
    let chunks = store.list_transcripts_by_call(&call_id).await.unwrap();
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].text, "hello from the seed");
    assert_eq!(chunks[0].speaker, "", "a seed chunk has no speaker");

    put(
        &t.calls,
        vec![
            ("callId", s(&call_id)),
            ("agentAId", s(&agent_id)),
            ("status", s("active")),
            ("createdAt", s("2024-05-06T07:08:09.123Z")),
        ],
    )
    .await
    .unwrap();
    let err = store.get_call(&call_id).await.unwrap_err();
    assert!(matches!(err, StoreError::Backend { .. }));
    assert!(
        error_chain(&err).contains("decoding stored call"),
        "{}",
        error_chain(&err)
    );
}

/// The stored items carry the classic layout's attribute names and types (the Python check reads them
/// with boto3 too).
#[tokio::test]
async fn stored_items_use_seed_attribute_names() {
    let store = fresh_store().await;
    let owner = new_id("agent");
    let call = fixtures::call(&owner);
    let mut commit = fixtures::create(&call);
    commit.events = vec![fixtures::event(&call.call_id, 1)];
    store.commit_call(commit).await.unwrap();
    let item = store
        .get_item(
            &store.tables().calls,
            HashMap::from([("callId".to_owned(), s(&call.call_id))]),
            || "raw read".into(),
        )
        .await
        .unwrap()
        .unwrap();
    for name in ["callId", "callerId", "agentAId", "status", "createdAt"] {
        assert!(
            matches!(item.get(name), Some(AttributeValue::S(_))),
            "{name}: {item:?}"
        );
    }
    assert!(matches!(item.get("version"), Some(AttributeValue::N(v)) if v == "1"));
    assert!(matches!(item.get("state"), Some(AttributeValue::S(_))));
    assert!(!item.contains_key("agentBId"), "absent, not NULL");
    assert_eq!(get_s(&item, "status"), Some("active"));
}

/// Errors name the operation and the service's error, keep the SDK error only as a source,
/// and hint at `init-tables` when a table is missing.
#[tokio::test]
async fn a_missing_table_is_a_backend_error_with_a_hint() {
    let config = test_config(&prefix());
    let store = DynamoStore::connect(&config).await.unwrap();
    let err = store.ping().await.unwrap_err();
    let StoreError::Backend { context, source } = &err else {
        panic!("expected a backend error, got {err:?}");
    };
    assert!(context.starts_with("ping"), "{context}");
    let dynamo = source
        .downcast_ref::<DynamoError>()
        .expect("the source is the store's own DynamoError");
    let text = dynamo.to_string();
    assert!(text.contains("ResourceNotFoundException"), "{text}");
    assert!(text.contains("init-tables"), "{text}");
}

/// A server that does not answer is a backend error within the configured deadline, after
/// the configured attempts.
#[tokio::test]
async fn an_unreachable_server_is_a_backend_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let mut config = test_config("x-");
    config.endpoint_url = Some(format!("http://127.0.0.1:{port}"));
    config.max_attempts = 2;
    config.timeout = Duration::from_secs(3);
    let store = DynamoStore::connect(&config).await.unwrap();
    let started = std::time::Instant::now();
    let err = store.ping().await.unwrap_err();
    assert!(matches!(err, StoreError::Backend { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}
