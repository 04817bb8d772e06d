//! switchboard: a control plane for live calls. Each call is one supervised actor owning a
//! pure state machine; every change is pushed to the people involved over WebSockets.
//!
//! - [`model`]: the records (agents, calls, transfers, transcripts, summaries, rooms, events).
//! - [`call`]: the pure call machine, the call actor that carries out its effects, and the
//!   registry that supervises actors and routes queued calls to agents.
//! - [`store`]: durable storage behind one trait (embedded single-file default, or DynamoDB).
//! - [`hub`] and [`ws`]: event fan-out and the WebSocket sessions of agents and callers.
//! - [`http`]: the REST API, webhooks and the one error type mapped to `{code, message}`.
//! - [`media`]: LiveKit (tokens, RoomService, webhooks).
//! - [`summary`]: call summaries (LLM or offline), kept fresh in the background; redaction.
//! - [`twilio`]: Twilio REST client, webhook signatures, Access Tokens and TwiML rendering.
//! - [`auth`]: session tokens and API keys. [`config`]: settings. [`app`]: startup.
//! - [`metrics`]: `GET /metrics` (Prometheus). [`shutdown`]: graceful stop on SIGTERM/SIGINT.
//!   [`logging`]: text or JSON logs, and the span of each call.
//! - [`org`]: organisations' API keys, AI assistants (and their prompt templates), SIP trunks.
//! - [`webhooks`]: signed end-of-call webhooks, delivered at least once, behind an SSRF guard.

#![warn(missing_docs)]

pub mod app;
pub mod auth;
pub mod call;
pub mod config;
pub mod http;
pub mod hub;
pub mod logging;
pub mod media;
pub mod metrics;
pub mod model;
pub mod org;
pub mod secret;
pub mod shutdown;
pub mod store;
pub mod summary;
pub mod twilio;
pub mod webhooks;
pub mod ws;
