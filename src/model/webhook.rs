//! The record of an end-of-call webhook delivery the store keeps: its payload, signing
//! secret, status and every attempt. How deliveries are made is the
//! business of the `webhooks` module, which re-exports it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::secret::Secret;

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not delivered yet; the worker will (re)try at `nextAttemptAt`.
    Pending,
    /// A 2xx was received.
    Delivered,
    /// Given up (a 4xx other than 408/429, a refused address, or out of attempts).
    Failed,
}

impl DeliveryStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }
}

/// One POST of a delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryAttempt {
    /// 1 for the first attempt; also sent as `Switchboard-Delivery-Attempt`.
    pub attempt: u32,
    /// When it started.
    pub at: DateTime<Utc>,
    /// The receiver's HTTP status, if it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// What went wrong, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How long it took.
    pub duration_ms: u64,
}

/// A webhook delivery as stored: the payload, the signing secret, and every attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookDelivery {
    /// Derived from the call and the event (`webhooks::delivery_id`); the `Idempotency-Key`.
    pub delivery_id: String,
    /// The call.
    pub call_id: String,
    /// The call's organisation, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
    /// The receiver.
    pub url: String,
    /// `call.ended`.
    pub event: String,
    /// The JSON body, sent byte for byte the same on every attempt.
    pub payload: Value,
    /// The signing secret (stored; redacted in `Debug`; never returned by the API).
    #[serde(with = "super::secret_text")]
    pub secret: Secret,
    /// pending / delivered / failed.
    pub status: DeliveryStatus,
    /// Every attempt, oldest first.
    #[serde(default)]
    pub attempts: Vec<DeliveryAttempt>,
    /// When the worker tries next (pending only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// When a 2xx was received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<DateTime<Utc>>,
    /// Attempts made before the latest redelivery (the attempt budget counts from here).
    #[serde(default)]
    pub round_start: u32,
    /// Optimistic-concurrency version, bumped by every update (1 when created).
    #[serde(default)]
    pub version: u64,
}
