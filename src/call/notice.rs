//! End-of-call notices: when an assistant's call is over (and its recording settled), its
//! signed `call.ended` webhook is queued for the assistant's end-of-call URL, signed with the
//! secret of the API key that created the assistant (`SWITCHBOARD_WEBHOOK_SECRET` for the
//! management key's assistants).

use std::sync::Arc;

use async_trait::async_trait;

use crate::call::actor::EndOfCall;
use crate::call::machine::CallMachine;
use crate::secret::Secret;
use crate::http::assistants::ROOT_CREATOR;
use crate::store::Store;
use crate::webhooks::{WebhookError, WebhookTarget, Webhooks};

/// Queues end-of-call webhooks from the store's records.
pub struct WebhookNotices {
    store: Arc<dyn Store>,
    webhooks: Webhooks,
    root_secret: Option<Secret>,
}

impl WebhookNotices {
    /// Notices read from `store` and delivered by `webhooks`; `root_secret` signs for the
    /// assistants the management key created.
    pub fn new(store: Arc<dyn Store>, webhooks: Webhooks, root_secret: Option<Secret>) -> Self {
        WebhookNotices {
            store,
            webhooks,
            root_secret,
        }
    }

    /// The secret that signs an assistant's webhooks, if there is one.
    async fn secret_of(&self, created_by: &str) -> Result<Option<Secret>, String> {
        if created_by == ROOT_CREATOR {
            return Ok(self.root_secret.clone());
        }
        let key = self
            .store
            .get_api_key(created_by)
            .await
            .map_err(|e| format!("reading the assistant's API key: {e}"))?;
        // A revoked key's secret still signs: revoking stops API access, not the receiver's
        // ability to check what its assistants' calls report.
        Ok(key.map(|k| k.webhook_secret))
    }
}

#[async_trait]
impl EndOfCall for WebhookNotices {
    async fn call_ended(&self, machine: &CallMachine) -> Result<(), String> {
        let call = &machine.call;
        let Some(assistant_id) = &call.assistant_id else {
            return Ok(()); // only assistants have an end-of-call URL
        };
        let assistant = self
            .store
            .get_assistant(assistant_id)
            .await
            .map_err(|e| format!("reading assistant {assistant_id}: {e}"))?;
        let Some(assistant) = assistant else {
            tracing::warn!(call_id = %call.call_id, %assistant_id, "the call's assistant was deleted: no end-of-call webhook");
            return Ok(());
        };
        let Some(url) = assistant.end_call_url.clone() else {
            return Ok(());
        };
        let Some(secret) = self.secret_of(&assistant.created_by_key_id).await? else {
            tracing::warn!(call_id = %call.call_id, key_id = %assistant.created_by_key_id, "no secret signs this assistant's webhooks: none sent");
            return Ok(());
        };
        let target = WebhookTarget {
            url,
            secret,
            org_id: call.org_id.clone(),
        };
        match self
            .webhooks
            .enqueue_ended_call(
                call,
                target,
                Some((&assistant.assistant_id, &assistant.name)),
            )
            .await
        {
            Ok(d) => {
                tracing::info!(call_id = %call.call_id, delivery_id = %d.delivery_id, "end-of-call webhook queued");
                Ok(())
            }
            // A URL the guard refuses will not become acceptable by asking again.
            Err(WebhookError::Url(e)) if !e.is_temporary() => {
                tracing::warn!(call_id = %call.call_id, error = %e, "end-of-call webhook URL refused");
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    }
}
