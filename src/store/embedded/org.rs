//! The embedded store's organisations ([`OrgStore`]).
//!
//! The organisations' tables: `api_keys` (`keyId` → [`ApiKeyRecord`] JSON, the secret only
//! as its digest), `assistants` (`assistantId` → [`Assistant`] JSON) and `sip_trunks`
//! (`trunkId` → [`SipTrunk`] JSON). They are created by their first write; before it, reads
//! find nothing. Listing by organisation scans the table and filters: an organisation's keys,
//! assistants and trunks number in the dozens, not in the millions calls do.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redb::{Database, TableError};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::*;
use crate::model::org::{ApiKeyRecord, Assistant, SipTrunk};
use crate::store::OrgStore;
use crate::store::StoreError;

const API_KEYS: RecordTable = RecordTable::new("api_keys");
const ASSISTANTS: RecordTable = RecordTable::new("assistants");
const SIP_TRUNKS: RecordTable = RecordTable::new("sip_trunks");

/// Stores a new record; `AlreadyExists` if the id is taken.
fn create<T: Serialize>(
    db: &Database,
    def: RecordTable,
    entity: &'static str,
    id: &str,
    value: &T,
) -> Result<(), StoreError> {
    write(db, "create", |txn| {
        let mut t = txn
            .open_table(def)
            .or_backend(|| format!("creating {entity} {id}: opening table"))?;
        if has_record(&t, entity, id)? {
            return Err(StoreError::AlreadyExists {
                entity,
                id: id.to_owned(),
            });
        }
        let bytes = encode(entity, id, value)?;
        t.insert(id, bytes.as_slice())
            .or_backend(|| format!("creating {entity} {id}"))?;
        Ok(())
    })
}

/// Reads a record; none when its table was never written.
fn get<T: DeserializeOwned>(
    db: &Database,
    def: RecordTable,
    entity: &'static str,
    id: &str,
) -> Result<Option<T>, StoreError> {
    read(db, "get", |txn| match txn.open_table(def) {
        Ok(t) => get_record(&t, entity, id),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(StoreError::backend(format!("reading {entity} {id}"), e)),
    })
}

/// Every record of a table.
fn list<T: DeserializeOwned>(
    db: &Database,
    def: RecordTable,
    entity: &'static str,
) -> Result<Vec<T>, StoreError> {
    read(db, "list", |txn| match txn.open_table(def) {
        Ok(t) => all_records(&t, entity),
        Err(TableError::TableDoesNotExist(_)) => Ok(Vec::new()),
        Err(e) => Err(StoreError::backend(format!("listing {entity}s"), e)),
    })
}

/// Deletes a record; whether it existed.
fn delete(
    db: &Database,
    def: RecordTable,
    entity: &'static str,
    id: &str,
) -> Result<bool, StoreError> {
    write(db, "delete", |txn| {
        let mut t = txn
            .open_table(def)
            .or_backend(|| format!("deleting {entity} {id}: opening table"))?;
        let removed = t
            .remove(id)
            .or_backend(|| format!("deleting {entity} {id}"))?
            .is_some();
        Ok(removed)
    })
}

#[async_trait]
impl OrgStore for EmbeddedStore {
    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        let key = key.clone();
        self.blocking("create_api_key", move |db| {
            create(db, API_KEYS, "api key", &key.key_id, &key)
        })
        .await
    }

    async fn get_api_key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let id = key_id.to_owned();
        self.blocking("get_api_key", move |db| get(db, API_KEYS, "api key", &id))
            .await
    }

    async fn list_api_keys(&self, org_id: Option<&str>) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let org = org_id.map(str::to_owned);
        self.blocking("list_api_keys", move |db| {
            let all: Vec<ApiKeyRecord> = list(db, API_KEYS, "api key")?;
            Ok(of_org(all, org.as_deref()))
        })
        .await
    }

    async fn revoke_api_key(
        &self,
        key_id: &str,
        at: DateTime<Utc>,
    ) -> Result<ApiKeyRecord, StoreError> {
        let id = key_id.to_owned();
        self.blocking("revoke_api_key", move |db| {
            write(db, "revoke_api_key", |txn| {
                let mut t = open_table!(txn, API_KEYS, "revoke_api_key");
                let stored: Option<ApiKeyRecord> = get_record(&t, "api key", &id)?;
                let Some(mut key) = stored else {
                    return Err(StoreError::NotFound {
                        entity: "api key",
                        id,
                    });
                };
                key.revoked_at.get_or_insert(at);
                let bytes = encode("api key", &id, &key)?;
                t.insert(id.as_str(), bytes.as_slice())
                    .or_backend(|| format!("revoke_api_key: writing {id}"))?;
                Ok(key)
            })
        })
        .await
    }

    async fn create_assistant(&self, assistant: &Assistant) -> Result<Assistant, StoreError> {
        let mut a = assistant.clone();
        a.version = 1;
        self.blocking("create_assistant", move |db| {
            create(db, ASSISTANTS, "assistant", &a.assistant_id, &a)?;
            Ok(a)
        })
        .await
    }

    async fn get_assistant(&self, assistant_id: &str) -> Result<Option<Assistant>, StoreError> {
        let id = assistant_id.to_owned();
        self.blocking("get_assistant", move |db| {
            get(db, ASSISTANTS, "assistant", &id)
        })
        .await
    }

    async fn list_assistants(&self, org_id: Option<&str>) -> Result<Vec<Assistant>, StoreError> {
        let org = org_id.map(str::to_owned);
        self.blocking("list_assistants", move |db| {
            let all: Vec<Assistant> = list(db, ASSISTANTS, "assistant")?;
            Ok(of_org(all, org.as_deref()))
        })
        .await
    }

    async fn update_assistant(&self, assistant: &Assistant) -> Result<Assistant, StoreError> {
        let mut a = assistant.clone();
        self.blocking("update_assistant", move |db| {
            write(db, "update_assistant", |txn| {
                let mut t = open_table!(txn, ASSISTANTS, "update_assistant");
                replace_versioned(&mut t, "update_assistant", &mut a)
            })?;
            Ok(a)
        })
        .await
    }

    async fn delete_assistant(&self, assistant_id: &str) -> Result<bool, StoreError> {
        let id = assistant_id.to_owned();
        self.blocking("delete_assistant", move |db| {
            delete(db, ASSISTANTS, "assistant", &id)
        })
        .await
    }

    async fn create_sip_trunk(&self, trunk: &SipTrunk) -> Result<(), StoreError> {
        let t = trunk.clone();
        self.blocking("create_sip_trunk", move |db| {
            create(db, SIP_TRUNKS, "sip trunk", &t.trunk_id, &t)
        })
        .await
    }

    async fn get_sip_trunk(&self, trunk_id: &str) -> Result<Option<SipTrunk>, StoreError> {
        let id = trunk_id.to_owned();
        self.blocking("get_sip_trunk", move |db| {
            get(db, SIP_TRUNKS, "sip trunk", &id)
        })
        .await
    }

    async fn list_sip_trunks(&self, org_id: Option<&str>) -> Result<Vec<SipTrunk>, StoreError> {
        let org = org_id.map(str::to_owned);
        self.blocking("list_sip_trunks", move |db| {
            let all: Vec<SipTrunk> = list(db, SIP_TRUNKS, "sip trunk")?;
            Ok(of_org(all, org.as_deref()))
        })
        .await
    }

    async fn delete_sip_trunk(&self, trunk_id: &str) -> Result<bool, StoreError> {
        let id = trunk_id.to_owned();
        self.blocking("delete_sip_trunk", move |db| {
            delete(db, SIP_TRUNKS, "sip trunk", &id)
        })
        .await
    }
}
