//! The local DynamoDB server of the tests (moto, started by `scripts/test.sh`): its endpoint,
//! fresh table prefixes, and the settings a server or a store needs to use it. A test that
//! needs it and cannot find it fails loudly, saying how to start it; it never skips.

use std::collections::HashMap;
use std::time::Duration;

use switchboard::secret::Secret;
use switchboard::store::dynamo::{DynamoConfig, DynamoStore, StaticCredentials, TableNames};

/// The variable naming the local DynamoDB endpoint.
pub const ENDPOINT_VAR: &str = "SWITCHBOARD_TEST_DYNAMODB_ENDPOINT";

/// The local endpoint (`http://127.0.0.1:PORT`); panics with how to start it when unset.
pub fn endpoint() -> String {
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

/// A table prefix no other test uses.
pub fn fresh_prefix() -> String {
    format!("it{}-", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// The environment that points a server at the local DynamoDB, in tables with `prefix`
/// created at start.
pub fn server_env(prefix: &str) -> HashMap<String, String> {
    [
        ("SWITCHBOARD_STORE", "dynamodb".to_owned()),
        ("DYNAMODB_TABLE_PREFIX", prefix.to_owned()),
        ("SWITCHBOARD_INIT_TABLES", "true".to_owned()),
        ("AWS_ENDPOINT_URL_DYNAMODB", endpoint()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// A store on the tables with `prefix` (not created here).
pub async fn store(prefix: &str) -> DynamoStore {
    let config = DynamoConfig {
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
        init_tables: false,
    };
    DynamoStore::connect(&config).await.expect("connect")
}

/// An error followed by its sources: `a: b: c`.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    msg
}
