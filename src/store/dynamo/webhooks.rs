//! The DynamoDB store's end-of-call webhook deliveries ([`WebhookStore`]).

use std::collections::HashMap;

use async_trait::async_trait;

use super::codec::{codec_err, s, to_item};
use super::*;
use crate::store::WebhookStore;

#[async_trait]
impl WebhookStore for DynamoStore {
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
        next.version = bumped("webhook delivery", &id, expected)?;
        let item = to_item(&next, DELIVERY_JSON).map_err(codec_err(ctx.clone()))?;
        let key = HashMap::from([("deliveryId".to_owned(), s(id.as_str()))]);
        let what = ("webhook delivery", id.as_str(), expected);
        self.put_if_version(&self.tables.webhook_deliveries, key, item, what, &ctx)
            .await?;
        Ok(next)
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
        oldest_first(&mut out);
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
        oldest_first(&mut out);
        Ok(out)
    }
}
