//! Operational metrics in Prometheus text format, served by `GET /metrics` (`http::metrics`).
//!
//! One process-wide set of metrics ([`metrics()`]), fed by small hooks where things happen:
//! - the hub observes every published event: `transfer.<terminal status>` counts transfers
//!   by outcome and mode and observes their duration (from `transfer.initiated`);
//! - the WebSocket sessions observe push latency (publish → frame written to the socket);
//! - the webhook handlers count verification failures per provider;
//! - the LiveKit and Twilio clients and the store ([`crate::store::MeteredStore`]) count
//!   provider errors.
//!
//! Gauges that describe the present (live calls by status, WebSocket sessions) are read
//! when scraped, from the store and the hub, so they can never drift.
//!
//! Built on the `prometheus` crate (without its protobuf feature): a registry and a text
//! encoder, nothing global beyond the one [`Metrics`] value here.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Providers whose failures are counted in `switchboard_provider_errors_total`.
pub const PROVIDERS: [&str; 4] = ["livekit", "twilio", "llm", "store"];

/// Outcomes of an end-of-call webhook attempt in `switchboard_webhook_deliveries_total`.
pub const WEBHOOK_OUTCOMES: [&str; 3] = ["delivered", "retry", "failed"];

/// Every call status a live call can have (ended calls are not live).
const LIVE_STATUSES: [&str; 6] = [
    "queued",
    "ringing",
    "active",
    "on_hold",
    "transferring",
    "dialing",
];

/// The terminal statuses of a transfer (its outcomes).
const OUTCOMES: [&str; 6] = [
    "completed",
    "cancelled",
    "declined",
    "timed_out",
    "failed",
    "abandoned",
];

/// Transfers whose start is remembered for the duration histogram, at most.
const MAX_OPEN_TRANSFERS: usize = 100_000;

/// The metrics of this process.
pub struct Metrics {
    registry: Registry,
    live_calls: IntGaugeVec,
    ws_sessions: IntGaugeVec,
    transfers: IntCounterVec,
    transfer_duration: HistogramVec,
    push_latency: HistogramVec,
    webhook_failures: IntCounterVec,
    provider_errors: IntCounterVec,
    webhook_deliveries: IntCounterVec,
    actor_restarts: IntCounter,
    /// `transferId` → when `transfer.initiated` was published (bounded).
    open_transfers: Mutex<HashMap<String, DateTime<Utc>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn new() -> Self {
        // The names, labels and buckets below are constants: registering cannot fail.
        fn must<T>(r: prometheus::Result<T>) -> T {
            r.expect("metric definitions are valid and unique")
        }
        let registry = Registry::new();
        let live_calls = must(IntGaugeVec::new(
            Opts::new(
                "switchboard_live_calls",
                "Calls that have not ended, by status.",
            ),
            &["status"],
        ));
        let ws_sessions = must(IntGaugeVec::new(
            Opts::new(
                "switchboard_websocket_sessions",
                "Open WebSocket sessions, by party kind (agent or caller).",
            ),
            &["party"],
        ));
        let transfers = must(IntCounterVec::new(
            Opts::new(
                "switchboard_transfers_total",
                "Transfers that reached a terminal status, by outcome and mode.",
            ),
            &["outcome", "mode"],
        ));
        let transfer_duration = must(HistogramVec::new(
            HistogramOpts::new(
                "switchboard_transfer_duration_seconds",
                "From transfer.initiated to the transfer's terminal status, by outcome.",
            )
            .buckets(vec![
                0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
            ]),
            &["outcome"],
        ));
        let push_latency = must(HistogramVec::new(
            HistogramOpts::new(
                "switchboard_push_latency_seconds",
                "From an event's publication by the hub to its frame written to a WebSocket.",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
            &["party"],
        ));
        let webhook_failures = must(IntCounterVec::new(
            Opts::new(
                "switchboard_webhook_verification_failures_total",
                "Webhooks refused because their signature did not verify, by provider.",
            ),
            &["provider"],
        ));
        let provider_errors = must(IntCounterVec::new(
            Opts::new(
                "switchboard_provider_errors_total",
                "Failed calls to a provider (after retries), by provider.",
            ),
            &["provider"],
        ));
        let webhook_deliveries = must(IntCounterVec::new(
            Opts::new(
                "switchboard_webhook_deliveries_total",
                "End-of-call webhook attempts, by outcome (delivered, retry, failed: given up).",
            ),
            &["outcome"],
        ));
        must(registry.register(Box::new(webhook_deliveries.clone())));
        for o in WEBHOOK_OUTCOMES {
            webhook_deliveries.with_label_values(&[o]);
        }
        let actor_restarts = must(IntCounter::new(
            "switchboard_actor_restarts_total",
            "Call actors restarted by their supervisor (reloaded from the store after a failure).",
        ));
        must(registry.register(Box::new(actor_restarts.clone())));
        for m in [&live_calls, &ws_sessions] {
            must(registry.register(Box::new(m.clone())));
        }
        for m in [&transfers, &webhook_failures, &provider_errors] {
            must(registry.register(Box::new(m.clone())));
        }
        for m in [&transfer_duration, &push_latency] {
            must(registry.register(Box::new(m.clone())));
        }
        // Every series exists from the start (at 0), so dashboards and alerts see it.
        for p in PROVIDERS {
            provider_errors.with_label_values(&[p]);
        }
        for p in ["livekit", "twilio"] {
            webhook_failures.with_label_values(&[p]);
        }
        for outcome in OUTCOMES {
            transfer_duration.with_label_values(&[outcome]);
            for mode in ["warm", "cold", "conference"] {
                transfers.with_label_values(&[outcome, mode]);
            }
        }
        for s in LIVE_STATUSES {
            live_calls.with_label_values(&[s]);
        }
        for p in ["agent", "caller"] {
            ws_sessions.with_label_values(&[p]);
            push_latency.with_label_values(&[p]);
        }
        Metrics {
            registry,
            live_calls,
            ws_sessions,
            transfers,
            transfer_duration,
            push_latency,
            webhook_failures,
            provider_errors,
            webhook_deliveries,
            actor_restarts,
            open_transfers: Mutex::new(HashMap::new()),
        }
    }

    /// Observes a published call event (called by the hub for every event): its kind, its
    /// data and when it happened.
    pub fn observe_event(&self, kind: &str, data: &serde_json::Value, at: DateTime<Utc>) {
        let Some(status) = kind.strip_prefix("transfer.") else {
            return;
        };
        let Some(transfer_id) = data.get("transferId").and_then(|v| v.as_str()) else {
            return;
        };
        let mut open = self
            .open_transfers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match status {
            "initiated" if open.len() < MAX_OPEN_TRANSFERS => {
                open.insert(transfer_id.to_string(), at);
            }
            outcome if OUTCOMES.contains(&outcome) => {
                let mode = data
                    .get("mode")
                    .and_then(|v| v.as_str())
                    .unwrap_or("unknown");
                self.transfers.with_label_values(&[status, mode]).inc();
                if let Some(start) = open.remove(transfer_id) {
                    let secs = (at - start).num_milliseconds().max(0) as f64 / 1000.0;
                    self.transfer_duration
                        .with_label_values(&[status])
                        .observe(secs);
                }
            }
            _ => {}
        }
    }

    /// Observes one pushed frame: `party` is `agent` or `caller`.
    pub fn observe_push(&self, party: &str, latency: Duration) {
        self.push_latency
            .with_label_values(&[party])
            .observe(latency.as_secs_f64());
    }

    /// Counts a webhook whose signature did not verify (`livekit` or `twilio`).
    pub fn webhook_verification_failed(&self, provider: &str) {
        self.webhook_failures.with_label_values(&[provider]).inc();
    }

    /// Counts a failed call to a provider (one of [`PROVIDERS`]).
    pub fn provider_error(&self, provider: &str) {
        self.provider_errors.with_label_values(&[provider]).inc();
    }

    /// Counts an end-of-call webhook attempt by outcome (one of [`WEBHOOK_OUTCOMES`]).
    pub fn webhook_delivery(&self, outcome: &str) {
        self.webhook_deliveries.with_label_values(&[outcome]).inc();
    }

    /// Counts a call actor restarted by its supervisor.
    pub fn actor_restarted(&self) {
        self.actor_restarts.inc();
    }

    /// How many call actors their supervisor has restarted.
    pub fn actor_restarts(&self) -> u64 {
        self.actor_restarts.get()
    }

    /// The current value of the webhook attempt counter for an outcome.
    pub fn webhook_deliveries(&self, outcome: &str) -> u64 {
        self.webhook_deliveries.with_label_values(&[outcome]).get()
    }

    /// The current value of a provider's error counter.
    pub fn provider_errors(&self, provider: &str) -> u64 {
        self.provider_errors.with_label_values(&[provider]).get()
    }

    /// Everything, in Prometheus text format, after setting the gauges that describe the
    /// present: `live_calls`, the status of every unfinished call (`queued`, `active`, ...),
    /// and the open WebSocket sessions of agents and of callers.
    pub fn render<'a>(
        &self,
        live_calls: impl IntoIterator<Item = &'a str>,
        sessions: (usize, usize),
    ) -> Result<String, prometheus::Error> {
        let mut by_status: HashMap<&str, i64> = LIVE_STATUSES.iter().map(|s| (*s, 0)).collect();
        for status in live_calls {
            if let Some(n) = by_status.get_mut(status) {
                *n += 1;
            }
        }
        for (status, n) in by_status {
            self.live_calls.with_label_values(&[status]).set(n);
        }
        let (agents, callers) = sessions;
        self.ws_sessions
            .with_label_values(&["agent"])
            .set(agents as i64);
        self.ws_sessions
            .with_label_values(&["caller"])
            .set(callers as i64);
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        String::from_utf8(out).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Audience, Event};
    use serde_json::json;

    fn event(kind: &str, transfer_id: &str, mode: &str, at_ms: i64) -> Event {
        Event {
            seq: 1,
            call_id: "call-m".into(),
            kind: kind.into(),
            at: DateTime::from_timestamp_millis(at_ms).unwrap(),
            data: json!({ "transferId": transfer_id, "mode": mode }),
            audience: Audience::default(),
        }
    }

    fn observe(e: &Event) {
        metrics().observe_event(&e.kind, &e.data, e.at);
    }

    fn count(outcome: &str, mode: &str) -> u64 {
        metrics()
            .transfers
            .with_label_values(&[outcome, mode])
            .get()
    }

    fn durations(outcome: &str) -> (u64, f64) {
        let h = metrics().transfer_duration.with_label_values(&[outcome]);
        (h.get_sample_count(), h.get_sample_sum())
    }

    #[test]
    fn terminal_transfer_events_count_by_outcome_and_mode_and_time_the_transfer() {
        // A mode no other test uses, so parallel tests cannot disturb the counts.
        let before = count("declined", "unit-mode");
        let (n0, sum0) = durations("declined");
        observe(&event(
            "transfer.initiated",
            "tr-unit-1",
            "unit-mode",
            1_000,
        ));
        observe(&event("transfer.ringing", "tr-unit-1", "unit-mode", 1_200));
        assert_eq!(count("declined", "unit-mode"), before, "not terminal yet");
        observe(&event("transfer.declined", "tr-unit-1", "unit-mode", 3_500));
        assert_eq!(count("declined", "unit-mode"), before + 1);
        let (n1, sum1) = durations("declined");
        assert!(n1 > n0, "duration observed");
        assert!(sum1 - sum0 >= 2.5 - 1e-9, "2.5 s observed: {}", sum1 - sum0);
        // Non-transfer events and events without a transfer id change nothing.
        observe(&Event {
            data: json!({}),
            ..event("transfer.declined", "", "unit-mode", 4_000)
        });
        observe(&event(
            "participant.joined",
            "tr-unit-1",
            "unit-mode",
            4_000,
        ));
        assert_eq!(count("declined", "unit-mode"), before + 1);
    }

    #[test]
    fn the_text_format_names_every_family() {
        metrics().webhook_verification_failed("twilio");
        metrics().provider_error("llm");
        let families = metrics().registry.gather();
        let mut out = Vec::new();
        TextEncoder::new().encode(&families, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        for name in [
            "switchboard_live_calls{status=\"on_hold\"}",
            "switchboard_websocket_sessions{party=\"agent\"}",
            "switchboard_push_latency_seconds_bucket",
            "switchboard_webhook_verification_failures_total{provider=\"twilio\"}",
            "switchboard_provider_errors_total{provider=\"store\"}",
            "switchboard_provider_errors_total{provider=\"llm\"}",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
        assert!(metrics().provider_errors("llm") >= 1);
    }
}
