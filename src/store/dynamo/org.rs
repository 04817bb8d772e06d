//! The DynamoDB store's organisations ([`OrgStore`]).
//!
//! The organisations' records in one table, `OrgRecords`: `recordId` = `<kind>#<id>`
//! (`key#…`, `assistant#…`, `trunk#…`), `kind`, `orgId` (indexed by `orgId-index`),
//! `version` (assistants), and `body`, the record as JSON text (an API key's secret only as
//! its digest). Listing by organisation takes the ids from the index and reads the items
//! consistently; listing everything scans the table.

use std::collections::HashMap;

use async_trait::async_trait;
use serde::Serialize;

use super::codec::{get_s, n, s, Item};
use super::*;
use crate::store::OrgStore;

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
        item.insert(VERSION.to_owned(), n(v));
    }
    Ok(item)
}

impl DynamoStore {
    async fn org_create<T: serde::Serialize>(
        &self,
        kind: Kind,
        id: &str,
        org_id: &str,
        version: Option<u64>,
        value: &T,
    ) -> Result<(), StoreError> {
        let item = item(kind, id, org_id, version, value)?;
        self.create_item(&self.tables.org_records, "recordId", kind.entity, id, item)
            .await
    }

    /// A record and its JSON body as stored.
    async fn org_get<T: serde::de::DeserializeOwned>(
        &self,
        kind: Kind,
        id: &str,
    ) -> Result<Option<(T, String)>, StoreError> {
        let item = self
            .get_item(&self.tables.org_records, key(kind, id), || {
                format!("reading {} {id}", kind.entity)
            })
            .await?;
        item.map(|i| org_decode(&i, kind)).transpose()
    }

    async fn org_list<T: serde::de::DeserializeOwned>(
        &self,
        kind: Kind,
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

    async fn org_delete(&self, kind: Kind, id: &str) -> Result<bool, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.tables.org_records)
            .set_key(Some(key(kind, id)))
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
    kind: Kind,
) -> Result<(T, String), StoreError> {
    let id = get_s(item, "recordId").unwrap_or("?");
    let body = get_s(item, BODY).ok_or_else(|| {
        StoreError::backend(
            format!("decoding stored {} {id}", kind.entity),
            DynamoError::plain(format!("attribute {} is missing", BODY)),
        )
    })?;
    let value = serde_json::from_str(body)
        .map_err(|e| StoreError::backend(format!("decoding stored {} {id}", kind.entity), e))?;
    Ok((value, body.to_owned()))
}

#[async_trait]
impl OrgStore for DynamoStore {
    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        self.org_create(KEY, &key.key_id, &key.org_id, None, key)
            .await
    }

    async fn get_api_key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        Ok(self.org_get(KEY, key_id).await?.map(|(k, _)| k))
    }

    async fn list_api_keys(&self, org_id: Option<&str>) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let all: Vec<ApiKeyRecord> = self.org_list(KEY, org_id).await?;
        Ok(of_org(all, org_id))
    }

    async fn revoke_api_key(
        &self,
        key_id: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<ApiKeyRecord, StoreError> {
        // Optimistic: the new body is written only over the body read.
        for _ in 0..STORE_RETRIES {
            let Some((mut key, old_body)) = self.org_get::<ApiKeyRecord>(KEY, key_id).await? else {
                return Err(StoreError::NotFound {
                    entity: KEY.entity,
                    id: key_id.to_owned(),
                });
            };
            if key.revoked_at.is_some() {
                return Ok(key);
            }
            key.revoked_at = Some(at);
            let item = item(KEY, key_id, &key.org_id, None, &key)?;
            let failed = self
                .conditional_put(
                    &self.tables.org_records,
                    item,
                    "#b = :b",
                    Self::names(&[("#b", BODY)]),
                    Some(HashMap::from([(":b".to_owned(), s(old_body))])),
                    &format!("revoking api key {key_id}"),
                )
                .await?;
            if failed.is_none() {
                return Ok(key);
            }
        }
        Err(StoreError::VersionConflict {
            entity: KEY.entity,
            id: key_id.to_owned(),
            expected: 0,
        })
    }

    async fn create_assistant(&self, assistant: &Assistant) -> Result<Assistant, StoreError> {
        let mut a = assistant.clone();
        a.version = 1;
        self.org_create(ASSISTANT, &a.assistant_id, &a.org_id, Some(1), &a)
            .await?;
        Ok(a)
    }

    async fn get_assistant(&self, assistant_id: &str) -> Result<Option<Assistant>, StoreError> {
        Ok(self.org_get(ASSISTANT, assistant_id).await?.map(|(a, _)| a))
    }

    async fn list_assistants(&self, org_id: Option<&str>) -> Result<Vec<Assistant>, StoreError> {
        let all: Vec<Assistant> = self.org_list(ASSISTANT, org_id).await?;
        Ok(of_org(all, org_id))
    }

    async fn update_assistant(&self, assistant: &Assistant) -> Result<Assistant, StoreError> {
        let mut a = assistant.clone();
        let id = a.assistant_id.clone();
        let expected = a.version;
        a.version = bumped(ASSISTANT.entity, &id, expected)?;
        let item = item(ASSISTANT, &id, &a.org_id, Some(a.version), &a)?;
        let what = (ASSISTANT.entity, id.as_str(), expected);
        let ctx = format!("updating assistant {id}");
        self.put_if_version(
            &self.tables.org_records,
            key(ASSISTANT, &id),
            item,
            what,
            &ctx,
        )
        .await?;
        Ok(a)
    }

    async fn delete_assistant(&self, assistant_id: &str) -> Result<bool, StoreError> {
        self.org_delete(ASSISTANT, assistant_id).await
    }

    async fn create_sip_trunk(&self, trunk: &SipTrunk) -> Result<(), StoreError> {
        self.org_create(TRUNK, &trunk.trunk_id, &trunk.org_id, None, trunk)
            .await
    }

    async fn get_sip_trunk(&self, trunk_id: &str) -> Result<Option<SipTrunk>, StoreError> {
        Ok(self.org_get(TRUNK, trunk_id).await?.map(|(t, _)| t))
    }

    async fn list_sip_trunks(&self, org_id: Option<&str>) -> Result<Vec<SipTrunk>, StoreError> {
        let all: Vec<SipTrunk> = self.org_list(TRUNK, org_id).await?;
        Ok(of_org(all, org_id))
    }

    async fn delete_sip_trunk(&self, trunk_id: &str) -> Result<bool, StoreError> {
        self.org_delete(TRUNK, trunk_id).await
    }
}
