//! The embedded store's end-of-call webhook deliveries ([`WebhookStore`]).

use async_trait::async_trait;

use super::*;
use crate::model::webhook::{DeliveryStatus, WebhookDelivery};
use crate::store::WebhookStore;

/// Keeps `id` in the `pending_webhooks` set exactly while the delivery is pending.
fn mark_pending(
    pending: &mut redb::Table<'_, &'static str, ()>,
    op: &str,
    delivery: &WebhookDelivery,
) -> Result<(), StoreError> {
    let id = delivery.delivery_id.as_str();
    if delivery.status == DeliveryStatus::Pending {
        pending
            .insert(id, ())
            .or_backend(|| format!("{op}: marking {id} pending"))?;
    } else {
        pending
            .remove(id)
            .or_backend(|| format!("{op}: unmarking {id}"))?;
    }
    Ok(())
}

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
                insert_new(&mut table, op, "webhook delivery", id, &d)?;
                index_by_time(
                    &mut by_call,
                    op,
                    "webhook delivery",
                    &d.call_id,
                    &d.created_at,
                    id,
                )?;
                mark_pending(&mut pending, op, &d)
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
                replace_versioned(&mut table, op, &mut d)?;
                mark_pending(&mut pending, op, &d)
            })?;
            Ok(d)
        })
        .await
    }

    async fn get_webhook_delivery(
        &self,
        delivery_id: &str,
    ) -> Result<Option<WebhookDelivery>, StoreError> {
        let op = "get_webhook_delivery";
        self.get_json(op, WEBHOOK_DELIVERIES, "webhook delivery", delivery_id)
            .await
    }

    async fn list_webhook_deliveries_by_call(
        &self,
        call_id: &str,
    ) -> Result<Vec<WebhookDelivery>, StoreError> {
        let op = "list_webhook_deliveries_by_call";
        self.list_by_time_index(
            op,
            WEBHOOKS_BY_CALL,
            WEBHOOK_DELIVERIES,
            "webhook delivery",
            call_id,
        )
        .await
    }

    async fn list_pending_webhook_deliveries(&self) -> Result<Vec<WebhookDelivery>, StoreError> {
        self.blocking("list_pending_webhook_deliveries", |db| {
            read(db, "list_pending_webhook_deliveries", |txn| {
                let op = "list_pending_webhook_deliveries";
                let pending = open_table!(txn, PENDING_WEBHOOKS, op);
                let table = open_table!(txn, WEBHOOK_DELIVERIES, op);
                let ids = key_ids(&pending, op, "pending_webhooks")?;
                let mut out: Vec<WebhookDelivery> = load_all(&table, "webhook delivery", &ids)?;
                oldest_first(&mut out);
                Ok(out)
            })
        })
        .await
    }
}
