//! The embedded store's end-of-call webhook deliveries ([`WebhookStore`]).

use super::*;
use async_trait::async_trait;

use crate::model::webhook::{DeliveryStatus, WebhookDelivery};
use crate::store::{StoreError, WebhookStore};
use redb::ReadableTable;

#[async_trait]
impl WebhookStore for EmbeddedStore {
    async fn create_webhook_delivery(
        &self,
        delivery: &WebhookDelivery,
    ) -> Result<WebhookDelivery, StoreError> {
        let mut d = delivery.clone();
        d.version = 1;
        self.blocking("create_webhook_delivery", move |db| {
            write(db, "create_webhook_delivery", |txn| {
                let op = "create_webhook_delivery";
                let mut table = open_table!(txn, WEBHOOK_DELIVERIES, op);
                let mut by_call = open_table!(txn, WEBHOOKS_BY_CALL, op);
                let mut pending = open_table!(txn, PENDING_WEBHOOKS, op);
                let id = d.delivery_id.as_str();
                if has_record(&table, "webhook delivery", id)? {
                    return Err(StoreError::AlreadyExists {
                        entity: "webhook delivery",
                        id: id.to_owned(),
                    });
                }
                let bytes = encode("webhook delivery", id, &d)?;
                table
                    .insert(id, bytes.as_slice())
                    .or_backend(|| format!("{op}: writing {id}"))?;
                let (secs, nanos) = time_key(&d.created_at);
                by_call
                    .insert((d.call_id.as_str(), secs, nanos, id), ())
                    .or_backend(|| format!("{op}: indexing {id}"))?;
                if d.status == DeliveryStatus::Pending {
                    pending
                        .insert(id, ())
                        .or_backend(|| format!("{op}: marking {id} pending"))?;
                }
                Ok(())
            })?;
            Ok(d)
        })
        .await
    }

    async fn update_webhook_delivery(
        &self,
        delivery: &WebhookDelivery,
    ) -> Result<WebhookDelivery, StoreError> {
        let mut d = delivery.clone();
        self.blocking("update_webhook_delivery", move |db| {
            write(db, "update_webhook_delivery", |txn| {
                let op = "update_webhook_delivery";
                let mut table = open_table!(txn, WEBHOOK_DELIVERIES, op);
                let mut pending = open_table!(txn, PENDING_WEBHOOKS, op);
                let id = d.delivery_id.clone();
                let stored: Option<WebhookDelivery> = get_record(&table, "webhook delivery", &id)?;
                let Some(stored) = stored else {
                    return Err(StoreError::NotFound {
                        entity: "webhook delivery",
                        id,
                    });
                };
                if stored.version != d.version {
                    return Err(StoreError::VersionConflict {
                        entity: "webhook delivery",
                        id,
                        expected: d.version,
                    });
                }
                d.version = d.version.checked_add(1).ok_or_else(|| {
                    StoreError::backend(format!("{op} {id}"), "version overflowed u64")
                })?;
                let bytes = encode("webhook delivery", &id, &d)?;
                table
                    .insert(id.as_str(), bytes.as_slice())
                    .or_backend(|| format!("{op}: writing {id}"))?;
                if d.status == DeliveryStatus::Pending {
                    pending
                        .insert(id.as_str(), ())
                        .or_backend(|| format!("{op}: marking {id} pending"))?;
                } else {
                    pending
                        .remove(id.as_str())
                        .or_backend(|| format!("{op}: unmarking {id}"))?;
                }
                Ok(())
            })?;
            Ok(d)
        })
        .await
    }

    async fn get_webhook_delivery(
        &self,
        delivery_id: &str,
    ) -> Result<Option<WebhookDelivery>, StoreError> {
        let id = delivery_id.to_owned();
        self.blocking("get_webhook_delivery", move |db| {
            read(db, "get_webhook_delivery", |txn| {
                let table = open_table!(txn, WEBHOOK_DELIVERIES, "get_webhook_delivery");
                get_record(&table, "webhook delivery", &id)
            })
        })
        .await
    }

    async fn list_webhook_deliveries_by_call(
        &self,
        call_id: &str,
    ) -> Result<Vec<WebhookDelivery>, StoreError> {
        let call_id = call_id.to_owned();
        self.blocking("list_webhook_deliveries_by_call", move |db| {
            read(db, "list_webhook_deliveries_by_call", |txn| {
                let op = "list_webhook_deliveries_by_call";
                let index = open_table!(txn, WEBHOOKS_BY_CALL, op);
                let table = open_table!(txn, WEBHOOK_DELIVERIES, op);
                let ids = time_index_ids(&index, "webhooks_by_call", &call_id)?;
                load_all(&table, "webhook delivery", &ids)
            })
        })
        .await
    }

    async fn list_pending_webhook_deliveries(&self) -> Result<Vec<WebhookDelivery>, StoreError> {
        self.blocking("list_pending_webhook_deliveries", |db| {
            read(db, "list_pending_webhook_deliveries", |txn| {
                let op = "list_pending_webhook_deliveries";
                let pending = open_table!(txn, PENDING_WEBHOOKS, op);
                let table = open_table!(txn, WEBHOOK_DELIVERIES, op);
                let mut ids = Vec::new();
                for item in pending.iter().or_backend(|| format!("{op}: scanning"))? {
                    let (k, _) = item.or_backend(|| format!("{op}: scanning"))?;
                    ids.push(k.value().to_owned());
                }
                let mut out: Vec<WebhookDelivery> = load_all(&table, "webhook delivery", &ids)?;
                out.sort_by(|a, b| {
                    (a.created_at, &a.delivery_id).cmp(&(b.created_at, &b.delivery_id))
                });
                Ok(out)
            })
        })
        .await
    }
}
