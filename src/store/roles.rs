//! The storage contract, split by role: one trait per kind of record, each of whose methods
//! is atomic (a write lands whole or not at all). [`Store`](super::Store) is all of them.

use async_trait::async_trait;

use super::{CallCommit, StoreError, StoredCall};
use crate::model::org::{ApiKeyRecord, Assistant, SipTrunk};
use crate::model::webhook::WebhookDelivery;
use crate::model::{Agent, Call, Event, Room, Summary, Transcript, Transfer, TransferStatus};

/// Calls with their machine state, their transfers and events, the index of unfinished calls
/// recovery restarts from, and the rooms calls use; and whether the backend answers.
#[async_trait]
pub trait CallStore: Send + Sync + 'static {
    /// Checks that the backend answers (for `/health`).
    async fn ping(&self) -> Result<(), StoreError>;
    /// Applies one call transition atomically (see [`CallCommit`]); returns the new version.
    async fn commit_call(&self, commit: CallCommit) -> Result<u64, StoreError>;
    /// Reads a call with its machine state.
    async fn get_call(&self, call_id: &str) -> Result<Option<StoredCall>, StoreError>;
    /// Calls an agent took part in (as `agentAId`, `agentBId`, owner, offered agent, or
    /// transfer party at any time), newest first.
    async fn list_calls_by_agent(&self, agent_id: &str) -> Result<Vec<Call>, StoreError>;
    /// Every call whose status is not `ended`, oldest first (for recovery after a restart).
    async fn list_unfinished_calls(&self) -> Result<Vec<StoredCall>, StoreError>;
    /// Reads a transfer.
    async fn get_transfer(&self, transfer_id: &str) -> Result<Option<Transfer>, StoreError>;
    /// Transfers of a call, oldest first.
    async fn list_transfers_by_call(&self, call_id: &str) -> Result<Vec<Transfer>, StoreError>;
    /// Transfers with one of the given statuses (all when empty), oldest first.
    async fn list_transfers(
        &self,
        statuses: &[TransferStatus],
    ) -> Result<Vec<Transfer>, StoreError>;
    /// Events of a call with `seq > after_seq`, in `seq` order.
    async fn events_since(&self, call_id: &str, after_seq: u64) -> Result<Vec<Event>, StoreError>;
    /// Creates or replaces a room record.
    async fn put_room(&self, room: &Room) -> Result<(), StoreError>;
    /// Reads a room record.
    async fn get_room(&self, room_id: &str) -> Result<Option<Room>, StoreError>;
    /// Finds a room record by its LiveKit name.
    async fn get_room_by_name(&self, room_name: &str) -> Result<Option<Room>, StoreError>;
}

/// The agent directory (versioned records; presence is derived from them and the hub).
#[async_trait]
pub trait AgentStore: Send + Sync + 'static {
    /// Creates an agent; `AlreadyExists` if the id is taken. Stored with version 1.
    async fn create_agent(&self, agent: &Agent) -> Result<Agent, StoreError>;
    /// Reads an agent.
    async fn get_agent(&self, agent_id: &str) -> Result<Option<Agent>, StoreError>;
    /// Replaces an agent if its stored version equals `agent.version`; returns it with the
    /// version bumped. `NotFound` or `VersionConflict` otherwise.
    async fn update_agent(&self, agent: &Agent) -> Result<Agent, StoreError>;
    /// Every agent, active or not, ordered by `createdAt` then id.
    async fn list_agents(&self) -> Result<Vec<Agent>, StoreError>;
}

/// Transcript chunks and summaries of calls, each written once.
#[async_trait]
pub trait TranscriptStore: Send + Sync + 'static {
    /// Stores a transcript chunk; `AlreadyExists` if the id is taken.
    async fn put_transcript(&self, transcript: &Transcript) -> Result<(), StoreError>;
    /// Reads a transcript chunk.
    async fn get_transcript(&self, transcript_id: &str) -> Result<Option<Transcript>, StoreError>;
    /// Transcript chunks of a call in the order they were stored (`createdAt`, then id).
    async fn list_transcripts_by_call(&self, call_id: &str) -> Result<Vec<Transcript>, StoreError>;
    /// Stores a summary; `AlreadyExists` if the id is taken.
    async fn put_summary(&self, summary: &Summary) -> Result<(), StoreError>;
    /// Reads a summary.
    async fn get_summary(&self, summary_id: &str) -> Result<Option<Summary>, StoreError>;
    /// Summaries of a call, oldest first.
    async fn list_summaries_by_call(&self, call_id: &str) -> Result<Vec<Summary>, StoreError>;
}

/// Organisations' API keys (as digests), AI assistants and SIP trunks.
#[async_trait]
pub trait OrgStore: Send + Sync + 'static {
    /// Stores a new API key; `AlreadyExists` if the id is taken.
    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError>;
    /// Reads an API key by id (revoked ones too).
    async fn get_api_key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>, StoreError>;
    /// API keys of one organisation (`Some`) or of all (`None`), by `createdAt` then id.
    async fn list_api_keys(&self, org_id: Option<&str>) -> Result<Vec<ApiKeyRecord>, StoreError>;
    /// Marks a key revoked at `at` (a key revoked already keeps its first time); returns it.
    /// `NotFound` if there is no such key.
    async fn revoke_api_key(
        &self,
        key_id: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<ApiKeyRecord, StoreError>;
    /// Stores a new assistant with version 1; `AlreadyExists` if the id is taken.
    async fn create_assistant(&self, assistant: &Assistant) -> Result<Assistant, StoreError>;
    /// Reads an assistant.
    async fn get_assistant(&self, assistant_id: &str) -> Result<Option<Assistant>, StoreError>;
    /// Assistants of one organisation (`Some`) or of all (`None`), by `createdAt` then id.
    async fn list_assistants(&self, org_id: Option<&str>) -> Result<Vec<Assistant>, StoreError>;
    /// Replaces an assistant if its stored version equals `assistant.version`; returns it
    /// with the version bumped. `NotFound` or `VersionConflict` otherwise.
    async fn update_assistant(&self, assistant: &Assistant) -> Result<Assistant, StoreError>;
    /// Deletes an assistant; whether it existed.
    async fn delete_assistant(&self, assistant_id: &str) -> Result<bool, StoreError>;
    /// Stores a new SIP trunk; `AlreadyExists` if the id is taken.
    async fn create_sip_trunk(&self, trunk: &SipTrunk) -> Result<(), StoreError>;
    /// Reads a SIP trunk.
    async fn get_sip_trunk(&self, trunk_id: &str) -> Result<Option<SipTrunk>, StoreError>;
    /// Trunks of one organisation (`Some`) or of all (`None`), by `createdAt` then id.
    async fn list_sip_trunks(&self, org_id: Option<&str>) -> Result<Vec<SipTrunk>, StoreError>;
    /// Deletes a SIP trunk; whether it existed.
    async fn delete_sip_trunk(&self, trunk_id: &str) -> Result<bool, StoreError>;
}

/// End-of-call webhook deliveries: created once, updated under optimistic concurrency.
#[async_trait]
pub trait WebhookStore: Send + Sync + 'static {
    /// Creates a delivery if its id is new (stored with version 1); `AlreadyExists`
    /// otherwise, leaving the stored one unchanged.
    async fn create_webhook_delivery(
        &self,
        delivery: &WebhookDelivery,
    ) -> Result<WebhookDelivery, StoreError>;
    /// Replaces a delivery if its stored version equals `delivery.version`; returns it with
    /// the version bumped. `NotFound` or `VersionConflict` otherwise.
    async fn update_webhook_delivery(
        &self,
        delivery: &WebhookDelivery,
    ) -> Result<WebhookDelivery, StoreError>;
    /// Reads a delivery.
    async fn get_webhook_delivery(
        &self,
        delivery_id: &str,
    ) -> Result<Option<WebhookDelivery>, StoreError>;
    /// A call's deliveries, oldest first (`createdAt`, then id).
    async fn list_webhook_deliveries_by_call(
        &self,
        call_id: &str,
    ) -> Result<Vec<WebhookDelivery>, StoreError>;
    /// Every `pending` delivery, oldest first (for the worker, also after a restart).
    async fn list_pending_webhook_deliveries(&self) -> Result<Vec<WebhookDelivery>, StoreError>;
}
