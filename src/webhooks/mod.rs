//! Signed end-of-call webhooks, delivered at least once: one durable `call.ended` delivery
//! per call ([`Webhooks::enqueue_call_ended`]), POSTed by a background worker with retries,
//! exponential backoff with jitter, `Retry-After`, an SSRF guard ([`ssrf`]) and a
//! Stripe-style signature ([`signing`]); every attempt is stored and visible through
//! `GET /api/calls/{callId}/webhooks`.

pub mod delivery;
pub mod signing;
pub mod ssrf;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::model::{Call, CallStatus, Transcript, Transfer};
use crate::secret::Secret;
use crate::store::{Store, StoreError};

pub use self::delivery::Webhooks;
pub use crate::model::webhook::{DeliveryAttempt, DeliveryStatus, WebhookDelivery};

/// Settings of the end-of-call webhooks (`SWITCHBOARD_WEBHOOK_*`).
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookConfig {
    /// `SWITCHBOARD_WEBHOOK_MAX_ATTEMPTS` (default 8): attempts before a delivery fails.
    pub max_attempts: u32,
    /// `SWITCHBOARD_WEBHOOK_BACKOFF` (default 1 s): the first delay; it doubles after each
    /// failed attempt (with jitter).
    pub first_backoff: Duration,
    /// `SWITCHBOARD_WEBHOOK_MAX_BACKOFF` (default 300 s): the longest delay.
    pub max_backoff: Duration,
    /// `SWITCHBOARD_WEBHOOK_TIMEOUT` (default 10 s): one attempt's deadline.
    pub attempt_timeout: Duration,
    /// `SWITCHBOARD_WEBHOOK_POLL` (default 5 s): how often the worker re-reads the pending
    /// deliveries when nothing wakes it (picks up what another node enqueued).
    pub poll_interval: Duration,
    /// `SWITCHBOARD_WEBHOOK_ALLOW_PRIVATE` and `SWITCHBOARD_WEBHOOK_ALLOWED_HOSTS`.
    pub policy: crate::webhooks::ssrf::EgressPolicy,
    /// `SWITCHBOARD_WEBHOOK_SECRET`: signs the webhooks of assistants created with the
    /// management key (an organisation key's assistants use that key's own secret).
    pub signing_secret: Option<Secret>,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            max_attempts: 8,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            attempt_timeout: Duration::from_secs(10),
            poll_interval: Duration::from_secs(5),
            policy: Default::default(),
            signing_secret: None,
        }
    }
}

/// The event sent when a call ends.
pub const CALL_ENDED: &str = "call.ended";

/// Where a delivery goes and the key it is signed with.
#[derive(Debug, Clone)]
pub struct WebhookTarget {
    /// The receiver (`http` or `https`; checked against the SSRF guard).
    pub url: String,
    /// The signing secret (HMAC-SHA256 key).
    pub secret: Secret,
    /// The organisation the call belongs to, if any.
    pub org_id: Option<String>,
}

/// The name the brief's API uses for a stored delivery.
pub type Delivery = WebhookDelivery;

/// The delivery id of `event` for `call_id`: `whd-` and 32 hex digits of SHA-256, so one
/// call has exactly one delivery per event, whoever enqueues it and however often.
pub fn delivery_id(call_id: &str, event: &str) -> String {
    let digest = Sha256::digest(format!("{event}\n{call_id}").as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("whd-{hex}")
}

/// Errors of the webhook boundary.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The receiver URL is refused by the SSRF guard.
    #[error(transparent)]
    Url(#[from] ssrf::SsrfError),
    /// The payload could not be serialized.
    #[error("the webhook payload could not be serialized")]
    Payload(#[source] serde_json::Error),
    /// The store failed.
    #[error("storing the webhook delivery failed")]
    Store(#[source] StoreError),
    /// No such delivery.
    #[error("webhook delivery {0} not found")]
    NotFound(String),
    /// Redelivery of a delivery that is not `failed`.
    #[error("webhook delivery {id} is {status}; only a failed delivery can be redelivered")]
    NotFailed {
        /// The delivery.
        id: String,
        /// Its status.
        status: &'static str,
    },
}

impl Webhooks {
    /// The deliveries and worker over `store` with these settings; call
    /// [`Webhooks::start`] to run the worker.
    pub fn new(store: Arc<dyn Store>, config: WebhookConfig) -> Webhooks {
        delivery::new(store, config)
    }
}

fn time_or_null(at: Option<DateTime<Utc>>) -> Value {
    at.map_or(Value::Null, |t| json!(t))
}

/// The `call.ended` body: the call, its transcripts and transfers, and the assistant
/// (`(assistantId, name)`) if it had one. camelCase; see docs/webhooks.md.
pub fn end_of_call_payload(
    call: &Call,
    transcripts: &[Transcript],
    transfers: &[Transfer],
    assistant: Option<(&str, &str)>,
) -> Value {
    let ended = call.end_at;
    let duration = ended.map(|e| ((e - call.created_at).num_milliseconds().max(0) as f64) / 1000.0);
    let outbound = call.outbound.as_ref();
    let recording = call.recording.as_ref();
    let (assistant_id, assistant_name) = match assistant {
        Some((id, name)) => (Some(id.to_string()), Some(name.to_string())),
        None => (call.assistant_id.clone(), None),
    };
    // Outbound: the callee's number and the trunk number shown; inbound: the caller's.
    let to_number = outbound.map(|o| o.to_number.clone());
    let from_number = match outbound {
        Some(o) => o.from_number.clone(),
        None => call.caller_number.clone(),
    };
    let outcome = match call.status {
        CallStatus::Failed => "failed",
        CallStatus::Ended => "completed",
        _ => "in_progress",
    };
    json!({
        "event": CALL_ENDED,
        "callId": call.call_id,
        "room": call.main_room,
        "assistantId": assistant_id,
        "assistantName": assistant_name,
        "direction": call.direction,
        "toNumber": to_number,
        "fromNumber": from_number,
        "callerName": call.caller_name,
        "orgId": call.org_id,
        "outcome": outcome,
        "endReason": call.end_reason,
        "sipStatus": outbound.and_then(|o| o.sip_status),
        "sipReason": outbound.and_then(|o| o.sip_reason.clone()),
        "startedAt": call.created_at,
        "endedAt": time_or_null(ended),
        "durationSecs": duration,
        "recording": {
            "status": recording.map(|r| r.status),
            "location": recording.and_then(|r| r.location.clone()),
            "error": recording.and_then(|r| r.error.clone()),
        },
        "transcripts": transcripts.iter().map(|t| json!({
            "speaker": t.speaker,
            "text": t.text,
            "at": t.created_at,
            "source": t.source,
        })).collect::<Vec<_>>(),
        "transfers": transfers.iter().map(|t| json!({
            "transferId": t.transfer_id,
            "from": t.from_agent_id,
            "to": t.to_agent_id,
            "mode": t.mode,
            "status": t.status,
            "reason": t.reason,
            "createdAt": t.created_at,
            "endedAt": t.ended_at,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        Channel, Direction, OutboundLeg, Recording, RecordingStatus, TranscriptSource,
        TransferMode, TransferStatus,
    };

    fn call() -> Call {
        let start = DateTime::parse_from_rfc3339("2026-01-02T10:00:00Z")
            .unwrap()
            .to_utc();
        Call {
            call_id: "call-1".into(),
            caller_id: "caller-1".into(),
            caller_name: "Ada".into(),
            reason: "billing".into(),
            agent_a_id: Some("alice".into()),
            agent_b_id: Some("bob".into()),
            owner_id: None,
            offered_to: None,
            requested_agent_id: None,
            status: CallStatus::Ended,
            main_room: "room-main-1".into(),
            hold_room: "room-hold-1".into(),
            open_transfer_id: None,
            last_summary_id: None,
            end_reason: Some("caller_hangup".into()),
            created_at: start,
            end_at: Some(start + chrono::Duration::seconds(300)),
            metadata: Value::Null,
            channel: Channel::Phone,
            caller_number: Some("+15550001111".into()),
            org_id: None,
            direction: Direction::Inbound,
            assistant_id: None,
            outbound: None,
            recording: None,
        }
    }

    #[test]
    fn outbound_failed_call_carries_sip_status_numbers_and_recording() {
        let mut c = call();
        c.status = CallStatus::Failed;
        c.channel = Channel::Sip;
        c.direction = Direction::Outbound;
        c.org_id = Some("org-1".into());
        c.assistant_id = Some("asst-9".into());
        c.end_reason = Some("busy".into());
        c.outbound = Some(OutboundLeg {
            trunk_id: "trunk-1".into(),
            livekit_trunk_id: "ST_1".into(),
            to_number: "+15550000000".into(),
            from_number: Some("+15552223333".into()),
            sip_status: Some(486),
            sip_reason: Some("Busy Here".into()),
            dispatch_id: None,
            assistant_identity: None,
            answered_at: None,
        });
        c.recording = Some(Recording {
            egress_id: Some("EG_1".into()),
            status: RecordingStatus::Failed,
            location: None,
            error: Some("bucket not found".into()),
        });
        let p = end_of_call_payload(&c, &[], &[], None);
        assert_eq!(p["outcome"], "failed");
        assert_eq!(p["direction"], "outbound");
        assert_eq!(p["sipStatus"], 486);
        assert_eq!(p["sipReason"], "Busy Here");
        assert_eq!(p["toNumber"], "+15550000000");
        assert_eq!(p["fromNumber"], "+15552223333");
        assert_eq!(p["assistantId"], "asst-9", "from the call when not given");
        assert!(p["assistantName"].is_null());
        assert_eq!(p["orgId"], "org-1");
        assert_eq!(p["recording"]["status"], "failed");
        assert_eq!(p["recording"]["error"], "bucket not found");
        assert!(p["recording"]["location"].is_null());
        assert_eq!(p["transcripts"], json!([]));
        assert_eq!(p["transfers"], json!([]));
    }

    #[test]
    fn delivery_ids_are_stable_per_call_and_event() {
        let a = delivery_id("call-1", CALL_ENDED);
        assert_eq!(a, delivery_id("call-1", CALL_ENDED));
        assert_ne!(a, delivery_id("call-2", CALL_ENDED));
        assert_ne!(a, delivery_id("call-1", "call.started"));
        assert_eq!(a.len(), 4 + 32);
        assert!(a.starts_with("whd-"));
    }

    #[test]
    fn payload_has_the_end_of_call_fields_under_clear_names() {
        let c = call();
        let tx = Transcript {
            transcript_id: "tx-1".into(),
            call_id: "call-1".into(),
            speaker: "caller".into(),
            text: "I need help with my order.".into(),
            source: TranscriptSource::Manual,
            created_at: c.created_at + chrono::Duration::seconds(5),
        };
        let tr = Transfer {
            transfer_id: "xfer-1".into(),
            call_id: "call-1".into(),
            from_agent_id: "alice".into(),
            to_agent_id: "bob".into(),
            transfer_room: "room-consult".into(),
            summary_id: None,
            summary_text: String::new(),
            note: None,
            mode: TransferMode::Warm,
            status: TransferStatus::Completed,
            reason: None,
            created_at: c.created_at,
            updated_at: c.created_at,
            ended_at: Some(c.created_at + chrono::Duration::seconds(60)),
        };
        let p = end_of_call_payload(&c, &[tx], &[tr], Some(("asst-1", "Support")));
        assert_eq!(p["event"], "call.ended");
        assert_eq!(p["callId"], "call-1");
        // The usual end-of-call fields: room_name, assistant_id, assistant_name, to_number, recording_path,
        // transcripts [speaker, text, timestamp], started_at, ended_at, call_duration_minutes.
        assert_eq!(p["room"], "room-main-1");
        assert_eq!(p["assistantId"], "asst-1");
        assert_eq!(p["assistantName"], "Support");
        assert!(p.get("toNumber").is_some());
        assert_eq!(p["fromNumber"], "+15550001111");
        assert!(p["recording"].get("location").is_some());
        assert_eq!(p["transcripts"][0]["speaker"], "caller");
        assert_eq!(p["transcripts"][0]["text"], "I need help with my order.");
        assert_eq!(p["transcripts"][0]["at"], "2026-01-02T10:00:05Z");
        assert_eq!(p["transcripts"][0]["source"], "manual");
        assert_eq!(p["startedAt"], "2026-01-02T10:00:00Z");
        assert_eq!(p["endedAt"], "2026-01-02T10:05:00Z");
        assert_eq!(p["durationSecs"], 300.0);
        assert_eq!(p["outcome"], "completed");
        assert_eq!(p["endReason"], "caller_hangup");
        assert_eq!(p["direction"], "inbound");
        assert_eq!(p["transfers"][0]["transferId"], "xfer-1");
        assert_eq!(p["transfers"][0]["from"], "alice");
        assert_eq!(p["transfers"][0]["to"], "bob");
        assert_eq!(p["transfers"][0]["mode"], "warm");
        assert_eq!(p["transfers"][0]["status"], "completed");
        assert_eq!(p["transfers"][0]["endedAt"], "2026-01-02T10:01:00Z");
        for key in [
            "sipStatus",
            "assistantId",
            "toNumber",
            "endedAt",
            "durationSecs",
        ] {
            assert!(p.get(key).is_some(), "{key} present (null when unknown)");
        }
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let d = WebhookDelivery {
            delivery_id: "whd-1".into(),
            call_id: "call-1".into(),
            org_id: None,
            url: "https://example.com/".into(),
            event: CALL_ENDED.into(),
            payload: json!({}),
            secret: Secret::new("whsec_do_not_show"),
            status: DeliveryStatus::Pending,
            attempts: vec![],
            next_attempt_at: None,
            created_at: Utc::now(),
            delivered_at: None,
            round_start: 0,
            version: 1,
        };
        let dbg = format!("{d:?}");
        assert!(!dbg.contains("whsec_do_not_show"), "{dbg}");
        let t = WebhookTarget {
            url: "https://example.com/".into(),
            secret: Secret::new("whsec_do_not_show"),
            org_id: None,
        };
        assert!(!format!("{t:?}").contains("whsec_do_not_show"));
        // The stored form keeps it (the worker signs after a restart).
        let stored: WebhookDelivery =
            serde_json::from_value(serde_json::to_value(&d).unwrap()).unwrap();
        assert_eq!(stored.secret.expose(), "whsec_do_not_show");
    }
}
