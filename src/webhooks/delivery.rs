//! The delivery side: enqueueing (durable before it returns, one delivery per call and
//! event), the background worker that POSTs pending deliveries, and one attempt's rules:
//! retry on connect errors, timeouts, 408, 429 (after `Retry-After`) and 5xx with exponential
//! backoff and jitter; give up on other 4xx, on redirects, on a refused address, and when the
//! attempts run out.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

use super::signing::{self, ATTEMPT_HEADER, EVENT_HEADER, IDEMPOTENCY_HEADER, SIGNATURE_HEADER};
use super::ssrf::{self, SsrfError};
use super::WebhookConfig;
use super::{
    delivery_id, DeliveryAttempt, DeliveryStatus, WebhookDelivery, WebhookError, WebhookTarget,
    CALL_ENDED,
};
use crate::model::Call;
use crate::store::{Store, StoreError};

/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Webhook deliveries and their worker. Cheap to clone; clones share the worker.
#[derive(Clone)]
pub struct Webhooks {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

struct Inner {
    store: Arc<dyn Store>,
    config: WebhookConfig,
    wake: Notify,
    stop: watch::Sender<bool>,
    worker: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

pub(super) fn new(store: Arc<dyn Store>, config: WebhookConfig) -> Webhooks {
    Webhooks {
        inner: Arc::new(Inner {
            store,
            config,
            wake: Notify::new(),
            stop: watch::channel(false).0,
            worker: Mutex::new(None),
        }),
    }
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq)]
enum Verdict {
    /// 2xx.
    Delivered,
    /// Try again (after at least this long, when the receiver said so).
    Retry(Option<Duration>),
    /// Do not try again.
    GiveUp,
}

impl Webhooks {
    /// Starts the background worker (once; later calls do nothing). It resumes every pending
    /// delivery in the store, so deliveries enqueued before a restart are sent.
    pub fn start(&self) -> Webhooks {
        let mut worker = self.inner.worker.lock().unwrap_or_else(|p| p.into_inner());
        if worker.is_none() && !*self.inner.stop.borrow() {
            let me = self.clone();
            *worker = Some(tokio::spawn(async move { me.run().await }));
        }
        self.clone()
    }

    /// Stops the worker and waits for it; attempts in flight are abandoned unrecorded and
    /// made again after the next start (the receiver sees the same `Idempotency-Key`).
    pub async fn stop(&self) {
        self.inner.stop.send_replace(true);
        let handle = self
            .inner
            .worker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(h) = handle {
            let _ = h.await;
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &WebhookConfig {
        &self.inner.config
    }

    /// Enqueues the `call.ended` delivery of a call: exactly one per call however often or
    /// concurrently this is called (the first payload wins), durable before it returns.
    /// The URL is checked against the SSRF guard first (DNS is checked at delivery).
    pub async fn enqueue_call_ended(
        &self,
        call_id: &str,
        target: WebhookTarget,
        payload: Value,
    ) -> Result<WebhookDelivery, WebhookError> {
        let url = ssrf::check_url(&target.url, &self.inner.config.policy)?;
        let now = Utc::now();
        let delivery = WebhookDelivery {
            delivery_id: delivery_id(call_id, CALL_ENDED),
            call_id: call_id.to_string(),
            org_id: target.org_id,
            url: url.to_string(),
            event: CALL_ENDED.to_string(),
            payload,
            secret: target.secret,
            status: DeliveryStatus::Pending,
            attempts: vec![],
            next_attempt_at: Some(now),
            created_at: now,
            delivered_at: None,
            round_start: 0,
            version: 1,
        };
        let stored = match self.inner.store.create_webhook_delivery(&delivery).await {
            Ok(d) => {
                self.inner.wake.notify_one();
                d
            }
            Err(StoreError::AlreadyExists { .. }) => self
                .get(&delivery.delivery_id)
                .await?
                .ok_or_else(|| WebhookError::NotFound(delivery.delivery_id.clone()))?,
            Err(e) => return Err(WebhookError::Store(e)),
        };
        Ok(stored)
    }

    /// Enqueues the `call.ended` delivery of a finished call with the payload built from the
    /// store ([`end_of_call_payload`](super::end_of_call_payload) over the call, its
    /// transcripts and its transfers); `assistant` is `(assistantId, name)` if it had one.
    /// Idempotent like [`Webhooks::enqueue_call_ended`].
    pub async fn enqueue_ended_call(
        &self,
        call: &Call,
        target: WebhookTarget,
        assistant: Option<(&str, &str)>,
    ) -> Result<WebhookDelivery, WebhookError> {
        let id = delivery_id(&call.call_id, CALL_ENDED);
        if let Some(existing) = self.get(&id).await? {
            return Ok(existing);
        }
        let store = &self.inner.store;
        let transcripts = store
            .list_transcripts_by_call(&call.call_id)
            .await
            .map_err(WebhookError::Store)?;
        let transfers = store
            .list_transfers_by_call(&call.call_id)
            .await
            .map_err(WebhookError::Store)?;
        let payload = super::end_of_call_payload(call, &transcripts, &transfers, assistant);
        self.enqueue_call_ended(&call.call_id, target, payload)
            .await
    }

    /// Reads a delivery.
    pub async fn get(&self, delivery_id: &str) -> Result<Option<WebhookDelivery>, WebhookError> {
        self.inner
            .store
            .get_webhook_delivery(delivery_id)
            .await
            .map_err(WebhookError::Store)
    }

    /// A call's deliveries, oldest first.
    pub async fn list_by_call(&self, call_id: &str) -> Result<Vec<WebhookDelivery>, WebhookError> {
        self.inner
            .store
            .list_webhook_deliveries_by_call(call_id)
            .await
            .map_err(WebhookError::Store)
    }

    /// Puts a `failed` delivery back to `pending` with a fresh attempt budget; the worker
    /// sends it at once. Attempts already made stay in its history.
    pub async fn redeliver(&self, delivery_id: &str) -> Result<WebhookDelivery, WebhookError> {
        let mut d = self
            .get(delivery_id)
            .await?
            .ok_or_else(|| WebhookError::NotFound(delivery_id.to_string()))?;
        if d.status != DeliveryStatus::Failed {
            return Err(WebhookError::NotFailed {
                id: d.delivery_id,
                status: d.status.as_str(),
            });
        }
        d.status = DeliveryStatus::Pending;
        d.round_start = d.attempts.len() as u32;
        d.next_attempt_at = Some(Utc::now());
        let d = self
            .inner
            .store
            .update_webhook_delivery(&d)
            .await
            .map_err(WebhookError::Store)?;
        self.inner.wake.notify_one();
        Ok(d)
    }

    /// The worker: picks up due pending deliveries, runs their attempts (one at a time per
    /// delivery), and sleeps until the next is due, a new one is enqueued, or the poll
    /// interval passes (which also picks up what other nodes enqueued).
    async fn run(self) {
        let mut stop = self.inner.stop.subscribe();
        let mut running: JoinSet<()> = JoinSet::new();
        let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
        loop {
            if *stop.borrow() {
                break;
            }
            while running.try_join_next().is_some() {}
            let now = Utc::now();
            let mut wake_at = now
                + chrono::Duration::from_std(self.inner.config.poll_interval)
                    .unwrap_or(chrono::Duration::seconds(5));
            match self.inner.store.list_pending_webhook_deliveries().await {
                Ok(pending) => {
                    for d in pending {
                        let due = d.next_attempt_at.unwrap_or(now);
                        if due > now {
                            wake_at = wake_at.min(due);
                            continue;
                        }
                        let fresh = in_flight
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(d.delivery_id.clone());
                        if fresh {
                            let me = self.clone();
                            let in_flight = in_flight.clone();
                            running.spawn(async move {
                                let id = d.delivery_id.clone();
                                me.attempt(d).await;
                                in_flight
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .remove(&id);
                                me.inner.wake.notify_one();
                            });
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "webhooks: listing pending deliveries failed"),
            }
            let sleep = (wake_at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            tokio::select! {
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
                _ = stop.changed() => {}
            }
        }
        running.shutdown().await;
    }

    /// Makes one attempt of `d` and records it.
    async fn attempt(&self, mut d: WebhookDelivery) {
        let cfg = &self.inner.config;
        // Claim the attempt first (a conditional write pushing `nextAttemptAt` past the
        // attempt's deadline): of several workers on one store (other nodes), one sends; if
        // this one dies mid-attempt, the claim lapses and the attempt is made again.
        let lease = cfg.attempt_timeout * 2 + Duration::from_secs(5);
        d.next_attempt_at =
            Some(Utc::now() + chrono::Duration::from_std(lease).unwrap_or_default());
        d = match self.inner.store.update_webhook_delivery(&d).await {
            Ok(claimed) => claimed,
            Err(StoreError::VersionConflict { .. }) | Err(StoreError::NotFound { .. }) => return,
            Err(e) => {
                tracing::warn!(delivery = %d.delivery_id, error = %e, "claiming a webhook attempt failed");
                tokio::time::sleep(cfg.first_backoff).await;
                return;
            }
        };
        let number = d.attempts.len() as u32 + 1;
        let at = Utc::now();
        let started = Instant::now();
        let (verdict, status_code, error) = self.send(&d, number).await;
        let duration_ms = started.elapsed().as_millis() as u64;
        d.attempts.push(DeliveryAttempt {
            attempt: number,
            at,
            status_code,
            error: error.clone(),
            duration_ms,
        });
        let in_round = number.saturating_sub(d.round_start);
        let now = Utc::now();
        let outcome = match verdict {
            Verdict::Delivered => {
                d.status = DeliveryStatus::Delivered;
                d.delivered_at = Some(now);
                d.next_attempt_at = None;
                "delivered"
            }
            Verdict::Retry(after) if in_round < cfg.max_attempts => {
                let delay = backoff(cfg, in_round, jitter()).max(after.unwrap_or_default());
                d.next_attempt_at =
                    Some(now + chrono::Duration::from_std(delay).unwrap_or_default());
                "retry"
            }
            Verdict::Retry(_) | Verdict::GiveUp => {
                d.status = DeliveryStatus::Failed;
                d.next_attempt_at = None;
                "failed"
            }
        };
        crate::metrics::metrics().webhook_delivery(outcome);
        tracing::info!(
            delivery = %d.delivery_id,
            call_id = %d.call_id,
            attempt = number,
            status = ?status_code,
            error = error.as_deref().unwrap_or(""),
            outcome,
            "webhook attempt"
        );
        match self.inner.store.update_webhook_delivery(&d).await {
            Ok(_) => {}
            // Changed meanwhile (redelivered, or another node's worker): its record stands;
            // this attempt was still made, and the receiver dedups by Idempotency-Key.
            Err(StoreError::VersionConflict { .. }) => tracing::warn!(
                delivery = %d.delivery_id,
                "webhook delivery changed during an attempt; keeping the newer record"
            ),
            Err(e) => {
                tracing::warn!(delivery = %d.delivery_id, error = %e, "recording a webhook attempt failed");
                // Not recorded: try again after a pause rather than at once.
                tokio::time::sleep(cfg.first_backoff).await;
            }
        }
    }

    /// POSTs `d` once: `(verdict, HTTP status, error)`.
    async fn send(
        &self,
        d: &WebhookDelivery,
        number: u32,
    ) -> (Verdict, Option<u16>, Option<String>) {
        let cfg = &self.inner.config;
        let url = match ssrf::check_url(&d.url, &cfg.policy) {
            Ok(u) => u,
            Err(e) => return (Verdict::GiveUp, None, Some(e.to_string())),
        };
        let addrs = match ssrf::resolve(&url, &cfg.policy).await {
            Ok(a) => a,
            Err(e @ (SsrfError::Resolve { .. } | SsrfError::NoAddress(_))) => {
                return (Verdict::Retry(None), None, Some(e.to_string()))
            }
            Err(e) => return (Verdict::GiveUp, None, Some(e.to_string())),
        };
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(cfg.attempt_timeout)
            .connect_timeout(cfg.attempt_timeout)
            .user_agent(concat!("switchboard-webhooks/", env!("CARGO_PKG_VERSION")));
        if let Some(host) = url.host_str().filter(|h| !h.starts_with('[')) {
            if host.parse::<std::net::IpAddr>().is_err() {
                // Connect to the addresses just checked, never to a second DNS answer.
                builder = builder.resolve_to_addrs(host, &addrs);
            }
        }
        let client = match builder.build() {
            Ok(c) => c,
            Err(e) => {
                return (
                    Verdict::Retry(None),
                    None,
                    Some(format!("HTTP client: {e}")),
                )
            }
        };
        let body = match serde_json::to_vec(&d.payload) {
            Ok(b) => b,
            Err(e) => return (Verdict::GiveUp, None, Some(format!("payload: {e}"))),
        };
        let t = Utc::now().timestamp();
        let result = client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signing::sign(d.secret.expose(), &body, t))
            .header(IDEMPOTENCY_HEADER, &d.delivery_id)
            .header(EVENT_HEADER, &d.event)
            .header(ATTEMPT_HEADER, number.to_string())
            .body(body)
            .send()
            .await;
        match result {
            Ok(resp) => {
                let status = resp.status();
                let code = status.as_u16();
                let retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| retry_after(v, Utc::now()));
                if status.is_success() {
                    (Verdict::Delivered, Some(code), None)
                } else {
                    let verdict = classify(code, retry_after);
                    (
                        verdict,
                        Some(code),
                        Some(format!("receiver answered {status}")),
                    )
                }
            }
            Err(e) => {
                let what = if e.is_timeout() {
                    format!("timed out after {} ms", cfg.attempt_timeout.as_millis())
                } else if e.is_connect() {
                    "could not connect".to_string()
                } else {
                    "request failed".to_string()
                };
                (Verdict::Retry(None), None, Some(what))
            }
        }
    }
}

/// What an HTTP status means for a non-2xx answer.
fn classify(code: u16, retry_after: Option<Duration>) -> Verdict {
    match code {
        408 | 429 | 500..=599 => Verdict::Retry(retry_after),
        _ => Verdict::GiveUp,
    }
}

/// A `Retry-After` value (seconds or an HTTP date) as a delay, capped at an hour.
fn retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let v = value.trim();
    let d = if let Ok(secs) = v.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = DateTime::parse_from_rfc2822(v).ok()?.to_utc();
        (at - now).to_std().unwrap_or(Duration::ZERO)
    };
    Some(d.min(MAX_RETRY_AFTER))
}

/// A random number in `[0, 1)`.
fn jitter() -> f64 {
    (uuid::Uuid::new_v4().as_u128() as u64 >> 11) as f64 / (1u64 << 53) as f64
}

/// The delay after the `n`th failed attempt of a round (n ≥ 1): `first · 2^(n-1)` capped at
/// `max_backoff`, of which the upper half is random ("equal jitter"), so delays never shrink
/// from one attempt to the next until they reach the cap.
fn backoff(cfg: &WebhookConfig, n: u32, jitter: f64) -> Duration {
    let exp = 2f64.powi(n.saturating_sub(1).min(30) as i32);
    let full = (cfg.first_backoff.as_secs_f64() * exp).min(cfg.max_backoff.as_secs_f64());
    Duration::from_secs_f64(full / 2.0 + full / 2.0 * jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> WebhookConfig {
        WebhookConfig {
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            ..WebhookConfig::default()
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let c = cfg();
        assert_eq!(backoff(&c, 1, 0.0), Duration::from_millis(500));
        assert_eq!(backoff(&c, 1, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(&c, 2, 0.0), Duration::from_secs(1));
        assert_eq!(backoff(&c, 4, 1.0), Duration::from_secs(8));
        assert_eq!(backoff(&c, 20, 1.0), Duration::from_secs(300));
        assert_eq!(backoff(&c, 200, 0.0), Duration::from_secs(150));
        // Below the cap, the shortest next delay is the longest previous one.
        for n in 1..9 {
            assert!(
                backoff(&c, n + 1, 0.0) >= backoff(&c, n, 1.0),
                "never shrinks"
            );
        }
        let j = jitter();
        assert!((0.0..1.0).contains(&j));
    }

    #[test]
    fn statuses_decide_retry_or_give_up() {
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(matches!(classify(code, None), Verdict::Retry(_)), "{code}");
        }
        for code in [301, 302, 400, 401, 403, 404, 410, 422] {
            assert_eq!(classify(code, None), Verdict::GiveUp, "{code}");
        }
        assert_eq!(
            classify(429, Some(Duration::from_secs(7))),
            Verdict::Retry(Some(Duration::from_secs(7)))
        );
    }

    #[test]
    fn retry_after_seconds_or_date() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("999999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after("soon", now), None);
    }
}
