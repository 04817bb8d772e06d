//! Conformance checks of end-of-call webhook deliveries
//! ([`WebhookStore`](crate::store::WebhookStore)).

use serde_json::json;

use crate::store::{Store, StoreError};

fn delivery(call_id: &str, id: &str) -> crate::webhooks::WebhookDelivery {
    use crate::webhooks::{DeliveryAttempt, DeliveryStatus, WebhookDelivery};
    let now = chrono::Utc::now();
    WebhookDelivery {
        delivery_id: id.to_owned(),
        call_id: call_id.to_owned(),
        org_id: Some("org-1".into()),
        url: "https://hooks.example.com/ended".into(),
        event: "call.ended".into(),
        payload: json!({"event": "call.ended", "callId": call_id, "nested": {"a": [1, 2]}}),
        secret: crate::secret::Secret::new("whsec_conformance"),
        status: DeliveryStatus::Pending,
        attempts: vec![DeliveryAttempt {
            attempt: 1,
            at: now,
            status_code: Some(500),
            error: Some("receiver answered 500".into()),
            duration_ms: 12,
        }],
        next_attempt_at: Some(now),
        created_at: now,
        delivered_at: None,
        round_start: 0,
        version: 0,
    }
}

/// A delivery is created once: the second create (also a concurrent one) is
/// `AlreadyExists` and leaves the first unchanged; everything round-trips.
pub async fn webhook_delivery_is_created_once(store: &dyn Store) {
    let call_id = crate::model::new_id("call");
    let d = delivery(&call_id, &crate::model::new_id("whd"));
    let created = store.create_webhook_delivery(&d).await.unwrap();
    assert_eq!(created.version, 1, "created at version 1");
    let got = store
        .get_webhook_delivery(&d.delivery_id)
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(
        got, created,
        "round-trips (payload, attempts, secret, times)"
    );
    let mut other = d.clone();
    other.url = "https://elsewhere.example.com/".into();
    match store.create_webhook_delivery(&other).await {
        Err(StoreError::AlreadyExists { id, .. }) => assert_eq!(id, d.delivery_id),
        other => panic!("second create: {other:?}"),
    }
    assert_eq!(
        store.get_webhook_delivery(&d.delivery_id).await.unwrap(),
        Some(created)
    );
    // Racing creates: exactly one wins.
    let race = delivery(&call_id, &crate::model::new_id("whd"));
    let (a, b) = tokio::join!(
        store.create_webhook_delivery(&race),
        store.create_webhook_delivery(&race)
    );
    let wins = [a.is_ok(), b.is_ok()].iter().filter(|w| **w).count();
    assert_eq!(wins, 1, "one create wins: {a:?} {b:?}");
    assert_eq!(
        store
            .list_webhook_deliveries_by_call(&call_id)
            .await
            .unwrap()
            .len(),
        2
    );
}

/// Updates need the stored version; a stale one is `VersionConflict`, a missing one
/// `NotFound`.
pub async fn webhook_delivery_updates_are_conditional(store: &dyn Store) {
    use crate::webhooks::DeliveryStatus;
    let d = delivery(&crate::model::new_id("call"), &crate::model::new_id("whd"));
    let v1 = store.create_webhook_delivery(&d).await.unwrap();
    let mut change = v1.clone();
    change.status = DeliveryStatus::Delivered;
    change.delivered_at = Some(chrono::Utc::now());
    let v2 = store.update_webhook_delivery(&change).await.unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(
        store.get_webhook_delivery(&d.delivery_id).await.unwrap(),
        Some(v2.clone())
    );
    match store.update_webhook_delivery(&change).await {
        Err(StoreError::VersionConflict { expected, .. }) => assert_eq!(expected, 1),
        other => panic!("stale update: {other:?}"),
    }
    let mut missing = v2.clone();
    missing.delivery_id = crate::model::new_id("whd");
    match store.update_webhook_delivery(&missing).await {
        Err(StoreError::NotFound { id, .. }) => assert_eq!(id, missing.delivery_id),
        other => panic!("update of missing: {other:?}"),
    }
    assert_eq!(
        store
            .get_webhook_delivery(&missing.delivery_id)
            .await
            .unwrap(),
        None
    );
}

/// Deliveries are listed by call (oldest first) and, while pending, in the pending list.
pub async fn webhook_deliveries_by_call_and_pending(store: &dyn Store) {
    use crate::webhooks::DeliveryStatus;
    let call_id = crate::model::new_id("call");
    let mut first = delivery(&call_id, &crate::model::new_id("whd-b"));
    let mut second = delivery(&call_id, &crate::model::new_id("whd-a"));
    second.created_at = first.created_at + chrono::Duration::milliseconds(5);
    first = store.create_webhook_delivery(&first).await.unwrap();
    second = store.create_webhook_delivery(&second).await.unwrap();
    let other = store
        .create_webhook_delivery(&delivery(
            &crate::model::new_id("call"),
            &crate::model::new_id("whd"),
        ))
        .await
        .unwrap();
    let ids = |v: Vec<crate::webhooks::WebhookDelivery>| -> Vec<String> {
        v.into_iter().map(|d| d.delivery_id).collect()
    };
    assert_eq!(
        ids(store
            .list_webhook_deliveries_by_call(&call_id)
            .await
            .unwrap()),
        vec![first.delivery_id.clone(), second.delivery_id.clone()]
    );
    let pending = ids(store.list_pending_webhook_deliveries().await.unwrap());
    for d in [&first, &second, &other] {
        assert!(
            pending.contains(&d.delivery_id),
            "{} pending",
            d.delivery_id
        );
    }
    let i = pending
        .iter()
        .position(|x| *x == first.delivery_id)
        .unwrap();
    let j = pending
        .iter()
        .position(|x| *x == second.delivery_id)
        .unwrap();
    assert!(i < j, "oldest first");
    let mut done = first.clone();
    done.status = DeliveryStatus::Delivered;
    store.update_webhook_delivery(&done).await.unwrap();
    let mut failed = second.clone();
    failed.status = DeliveryStatus::Failed;
    let failed = store.update_webhook_delivery(&failed).await.unwrap();
    let pending = ids(store.list_pending_webhook_deliveries().await.unwrap());
    assert!(
        !pending.contains(&first.delivery_id),
        "delivered is not pending"
    );
    assert!(
        !pending.contains(&second.delivery_id),
        "failed is not pending"
    );
    assert!(pending.contains(&other.delivery_id));
    // Redelivery puts a failed one back.
    let mut again = failed.clone();
    again.status = DeliveryStatus::Pending;
    store.update_webhook_delivery(&again).await.unwrap();
    let pending = ids(store.list_pending_webhook_deliveries().await.unwrap());
    assert!(pending.contains(&second.delivery_id), "pending again");
    assert_eq!(
        store
            .list_webhook_deliveries_by_call(&call_id)
            .await
            .unwrap()
            .len(),
        2,
        "status changes do not duplicate the call's list"
    );
    assert!(store
        .list_webhook_deliveries_by_call(&crate::model::new_id("call"))
        .await
        .unwrap()
        .is_empty());
}
