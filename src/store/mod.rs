//! Durable storage behind traits split by role ([`CallStore`], [`AgentStore`],
//! [`TranscriptStore`], [`OrgStore`], [`WebhookStore`]) and composed into [`Store`]: the
//! embedded single-file backend by default, the DynamoDB backend (the classic six-table
//! layout) by configuration, and any other backend that passes the same conformance suite.
//! [`MeteredStore`] counts any backend's failures.
//!
//! The store depends on the records of [`crate::model`] (and on [`crate::secret`] and
//! [`crate::metrics`], both leaves), never on the modules above it.

#[cfg(test)]
pub mod conformance;
pub mod dynamo;
pub mod embedded;
pub mod metered;
mod record;
pub mod roles;

pub use self::metered::MeteredStore;
pub use self::roles::{AgentStore, CallStore, OrgStore, TranscriptStore, WebhookStore};

/// The storage traits, to `use crate::store::prelude::*` where a concrete backend's methods
/// are called.
pub mod prelude {
    pub use super::{AgentStore, CallStore, OrgStore, Store, TranscriptStore, WebhookStore};
}

use serde_json::Value;

use crate::model::{Call, Event, Transfer};

/// Errors every backend maps its own failures into; no backend type leaks past the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A record with that id exists already.
    #[error("{entity} {id} already exists")]
    AlreadyExists {
        /// The entity kind (`agent`, `call`, ...).
        entity: &'static str,
        /// The id.
        id: String,
    },
    /// The record to update does not exist.
    #[error("{entity} {id} not found")]
    NotFound {
        /// The entity kind.
        entity: &'static str,
        /// The id.
        id: String,
    },
    /// Someone else changed the record since it was read (optimistic concurrency).
    #[error("{entity} {id} changed concurrently (expected version {expected})")]
    VersionConflict {
        /// The entity kind.
        entity: &'static str,
        /// The id.
        id: String,
        /// The version the writer expected.
        expected: u64,
    },
    /// An event with that `(callId, seq)` exists already.
    #[error("event {seq} of call {call_id} already exists")]
    DuplicateEvent {
        /// The call.
        call_id: String,
        /// The sequence number.
        seq: u64,
    },
    /// The backend failed (I/O, corruption, network); the source says how.
    #[error("storage backend failed: {context}")]
    Backend {
        /// What the store was doing.
        context: String,
        /// The backend's own error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StoreError {
    /// Wraps a backend error with what the store was doing.
    pub fn backend(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        StoreError::Backend {
            context: context.into(),
            source: source.into(),
        }
    }
}

/// A call as stored: the public record, the call machine's private state, and a version.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCall {
    /// The public record (what `GET /api/calls/{callId}` shows).
    pub call: Call,
    /// The call machine's state, opaque to the store.
    pub state: Value,
    /// Bumped by every commit; starts at 1 when the call is created.
    pub version: u64,
}

/// Everything one transition of a call writes, applied atomically: the call (with its
/// machine state), the transfers it changed, and the events it produced.
#[derive(Debug, Clone, PartialEq)]
pub struct CallCommit {
    /// The call after the transition.
    pub call: Call,
    /// The machine state after the transition.
    pub state: Value,
    /// `None` creates the call (fails if it exists); `Some(v)` updates it only if the stored
    /// version is still `v`, and the stored version becomes `v + 1`.
    pub expected_version: Option<u64>,
    /// Transfers created or changed by the transition (upserted).
    pub transfers: Vec<Transfer>,
    /// New events; each `(callId, seq)` must be new.
    pub events: Vec<Event>,
    /// Whether the call stays in the unfinished index that recovery restarts actors from:
    /// unfinished, or finished with work left (its end-of-call notice).
    pub open: bool,
}

/// The whole storage contract: every role at once. Implemented for every type that implements
/// the roles, so a backend implements the roles and code holding an `Arc<dyn Store>` calls
/// any of their methods (on `dyn Store` and on `S: Store` without importing the roles; on a
/// concrete backend, with `use crate::store::prelude::*`).
pub trait Store: CallStore + AgentStore + TranscriptStore + OrgStore + WebhookStore {}

impl<T> Store for T where T: CallStore + AgentStore + TranscriptStore + OrgStore + WebhookStore {}
