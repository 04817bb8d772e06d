//! [`MeteredStore`]: any [`Store`] wrapped so that its failures are counted as `store`
//! provider errors in [`crate::metrics`].

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{
    AgentStore, CallCommit, CallStore, OrgStore, Store, StoreError, StoredCall, TranscriptStore,
    WebhookStore,
};
use crate::metrics::metrics;
use crate::model::org::{ApiKeyRecord, Assistant, SipTrunk};
use crate::model::webhook::WebhookDelivery;
use crate::model::{Agent, Call, Event, Room, Summary, Transcript, Transfer, TransferStatus};

/// A [`Store`] that counts its failures (other than not-found, already-exists and version
/// conflicts, which are answers, not failures) as `store` provider errors.
pub struct MeteredStore(pub Arc<dyn Store>);

/// Counts `r` as a provider error if it is a failure, and passes it on unchanged.
fn counted<T>(r: Result<T, StoreError>) -> Result<T, StoreError> {
    if let Err(e) = &r {
        if !matches!(
            e,
            StoreError::NotFound { .. }
                | StoreError::AlreadyExists { .. }
                | StoreError::VersionConflict { .. }
        ) {
            metrics().provider_error("store");
        }
    }
    r
}

/// Implements a role trait for [`MeteredStore`] from its methods' signatures alone: each
/// method calls the inner store's and passes the outcome through [`counted`].
macro_rules! metered {
    ($role:ident { $(fn $name:ident(&self $(, $arg:ident: $ty:ty)* $(,)?) -> $ok:ty;)* }) => {
        #[async_trait]
        impl $role for MeteredStore {
            $(
                async fn $name(&self $(, $arg: $ty)*) -> Result<$ok, StoreError> {
                    counted(self.0.$name($($arg),*).await)
                }
            )*
        }
    };
}

metered!(CallStore {
    fn ping(&self) -> ();
    fn commit_call(&self, commit: CallCommit) -> u64;
    fn get_call(&self, call_id: &str) -> Option<StoredCall>;
    fn list_calls_by_agent(&self, agent_id: &str) -> Vec<Call>;
    fn list_unfinished_calls(&self) -> Vec<StoredCall>;
    fn get_transfer(&self, transfer_id: &str) -> Option<Transfer>;
    fn list_transfers_by_call(&self, call_id: &str) -> Vec<Transfer>;
    fn list_transfers(&self, statuses: &[TransferStatus]) -> Vec<Transfer>;
    fn events_since(&self, call_id: &str, after_seq: u64) -> Vec<Event>;
    fn put_room(&self, room: &Room) -> ();
    fn get_room(&self, room_id: &str) -> Option<Room>;
    fn get_room_by_name(&self, room_name: &str) -> Option<Room>;
});

metered!(AgentStore {
    fn create_agent(&self, agent: &Agent) -> Agent;
    fn get_agent(&self, agent_id: &str) -> Option<Agent>;
    fn update_agent(&self, agent: &Agent) -> Agent;
    fn list_agents(&self) -> Vec<Agent>;
});

metered!(TranscriptStore {
    fn put_transcript(&self, transcript: &Transcript) -> ();
    fn get_transcript(&self, transcript_id: &str) -> Option<Transcript>;
    fn list_transcripts_by_call(&self, call_id: &str) -> Vec<Transcript>;
    fn put_summary(&self, summary: &Summary) -> ();
    fn get_summary(&self, summary_id: &str) -> Option<Summary>;
    fn list_summaries_by_call(&self, call_id: &str) -> Vec<Summary>;
});

metered!(OrgStore {
    fn create_api_key(&self, key: &ApiKeyRecord) -> ();
    fn get_api_key(&self, key_id: &str) -> Option<ApiKeyRecord>;
    fn list_api_keys(&self, org_id: Option<&str>) -> Vec<ApiKeyRecord>;
    fn revoke_api_key(&self, key_id: &str, at: DateTime<Utc>) -> ApiKeyRecord;
    fn create_assistant(&self, assistant: &Assistant) -> Assistant;
    fn get_assistant(&self, assistant_id: &str) -> Option<Assistant>;
    fn list_assistants(&self, org_id: Option<&str>) -> Vec<Assistant>;
    fn update_assistant(&self, assistant: &Assistant) -> Assistant;
    fn delete_assistant(&self, assistant_id: &str) -> bool;
    fn create_sip_trunk(&self, trunk: &SipTrunk) -> ();
    fn get_sip_trunk(&self, trunk_id: &str) -> Option<SipTrunk>;
    fn list_sip_trunks(&self, org_id: Option<&str>) -> Vec<SipTrunk>;
    fn delete_sip_trunk(&self, trunk_id: &str) -> bool;
});

metered!(WebhookStore {
    fn create_webhook_delivery(&self, delivery: &WebhookDelivery) -> WebhookDelivery;
    fn update_webhook_delivery(&self, delivery: &WebhookDelivery) -> WebhookDelivery;
    fn get_webhook_delivery(&self, delivery_id: &str) -> Option<WebhookDelivery>;
    fn list_webhook_deliveries_by_call(&self, call_id: &str) -> Vec<WebhookDelivery>;
    fn list_pending_webhook_deliveries(&self) -> Vec<WebhookDelivery>;
});

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::fixtures;
    use crate::store::embedded::EmbeddedStore;

    /// Every outcome, answer or failure, passes through unchanged, and a failure is counted.
    #[tokio::test]
    async fn counts_failures_but_not_answers() {
        let dir = tempfile::tempdir().unwrap();
        let store = MeteredStore(Arc::new(EmbeddedStore::open(dir.path()).unwrap()));
        let agent = fixtures::agent("metered");
        let created = store.create_agent(&agent).await.unwrap();
        assert_eq!(created.version, 1);
        let before = metrics().provider_errors("store");
        assert!(matches!(
            store.create_agent(&agent).await,
            Err(StoreError::AlreadyExists { .. })
        ));
        assert!(matches!(
            store.update_agent(&agent).await,
            Err(StoreError::VersionConflict { .. })
        ));
        assert_eq!(store.get_agent("agent-none").await.unwrap(), None);
        assert!(counted::<()>(Err(StoreError::NotFound {
            entity: "agent",
            id: "x".into()
        }))
        .is_err());
        assert!(counted::<()>(Err(StoreError::backend("test", "down"))).is_err());
        assert!(metrics().provider_errors("store") > before);
    }
}
