//! The HTTP surface: shared state, who is asking ([`Principal`]), the one error type mapped
//! to JSON `{code, message}`, and the routes of each resource.

pub mod agents;
pub mod assistants;
pub mod calls;
mod error;
mod extract;
pub mod keys;
pub mod livekit_webhook;
pub mod meta;
pub mod metrics;
pub mod outbound;
mod principal;
pub mod rooms;
pub mod sessions;
pub mod transcripts;
pub mod transfers;
pub mod trunks;
pub mod twilio;
pub mod ui;
pub mod wallboard;
pub mod webhooks;

use std::sync::Arc;

use actix::Addr;

use crate::auth::SessionKeys;
use crate::call::registry::Registry;
use crate::call::service::CallService;
use crate::config::Config;
use crate::hub::Hub;
use crate::media::livekit::LiveKit;
use crate::media::twilio::TwilioBridge;
use crate::store::Store;

pub use error::{ApiError, ErrorBody};
pub use extract::{
    check_id, check_line, check_text, configure_extractors, idempotency_key, read_object, LateBody,
    MAX_BODY,
};
pub use principal::{authenticate, principal, resolve_org_key, OrgKey, Principal};

/// Everything a handler needs.
#[derive(Clone)]
pub struct AppState {
    /// Settings.
    pub config: Arc<Config>,
    /// The call service: every use case on a call goes through it.
    pub calls: CallService,
    /// Durable storage (reads, and the records that are not calls').
    pub store: Arc<dyn Store>,
    /// Event fan-out.
    pub hub: Hub,
    /// The LiveKit plane.
    pub livekit: LiveKit,
    /// The Twilio plane, when configured.
    pub twilio: Option<TwilioBridge>,
    /// Call actors and routing (presence, the calls of an agent).
    pub registry: Addr<Registry>,
    /// Session tokens.
    pub keys: SessionKeys,
    /// Call summaries (LLM or offline) and their background refresh.
    pub summaries: crate::summary::Summaries,
    /// End-of-call webhook deliveries and their worker.
    pub webhooks: crate::webhooks::Webhooks,
}
