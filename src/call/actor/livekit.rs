//! The executor of [`LiveKitEffect`]s: the LiveKit rooms of the call's spaces and their
//! participants (best effort; rooms are also recorded in the store).

use super::{CallActor, CallDeps};
use crate::call::machine::LiveKitEffect;
use crate::model::{new_id, Room};

impl CallActor {
    /// Carries out an effect on the call's LiveKit rooms (best effort: a failure is logged).
    pub(super) fn carry_out_livekit(&self, effect: LiveKitEffect, span: &tracing::Span) {
        use tracing::Instrument;
        match effect {
            LiveKitEffect::EnsureRoom { room } => {
                let deps = self.deps.clone();
                let call_id = self.call_id.clone();
                actix::spawn(
                    async move {
                        record_room(&deps, &call_id, &room, "open").await;
                        if let Err(e) = deps.livekit.ensure_room(&room).await {
                            tracing::warn!(%room, error = %e, "LiveKit room not created; clients create it on join");
                        }
                    }
                    .instrument(span.clone()),
                );
            }
            LiveKitEffect::CloseRoom { room } => {
                let deps = self.deps.clone();
                let call_id = self.call_id.clone();
                actix::spawn(
                    async move {
                        record_room(&deps, &call_id, &room, "closed").await;
                        if let Err(e) = deps.livekit.delete_room(&room).await {
                            tracing::warn!(%room, error = %e, "LiveKit room not deleted; its empty timeout will close it");
                        }
                    }
                    .instrument(span.clone()),
                );
            }
            LiveKitEffect::RemoveParticipant { room, identity } => {
                let lk = self.deps.livekit.clone();
                actix::spawn(
                    async move {
                        if let Err(e) = lk.remove_participant(&room, &identity).await {
                            tracing::debug!(%room, %identity, error = %e, "participant not removed");
                        }
                    }
                    .instrument(span.clone()),
                );
            }
        }
    }
}

async fn record_room(deps: &CallDeps, call_id: &str, room: &str, status: &str) {
    let kind = room.rsplit("--").next().unwrap_or("adhoc");
    let kind = if kind.starts_with("consult") {
        "consult"
    } else {
        kind
    };
    let existing = deps.store.get_room_by_name(room).await.ok().flatten();
    let record = match existing {
        Some(mut r) => {
            if r.status == status {
                return;
            }
            r.status = status.to_string();
            r
        }
        None => Room {
            room_id: new_id("room"),
            room_name: room.to_string(),
            owner_id: call_id.to_string(),
            call_id: Some(call_id.to_string()),
            kind: kind.to_string(),
            status: status.to_string(),
            created_at: chrono::Utc::now(),
        },
    };
    if let Err(e) = deps.store.put_room(&record).await {
        tracing::warn!(%room, error = %e, "room record not stored");
    }
}
