//! The transfer use case: initiating a warm, cold or conference transfer (the target's
//! checks, presence, the phone policy, the briefing, the command, the background summary
//! refresh, the participants' tokens) and the answers to it (accept, decline, complete,
//! cancel).

use std::sync::Arc;

use super::{CallService, IdempotencyKey, ServiceError};
use crate::call::machine::{Actor, CallMachine, Command, Input};
use crate::call::registry::PresenceList;
use crate::media::livekit::ParticipantRole;
use crate::model::{
    new_id, AgentKind, Channel, Presence, TranscriptSource, Transfer, TransferMode, TransferStatus,
};

/// Who starts a transfer, as the transport established it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Initiator {
    /// Management, acting as the call's owner (`agent_id`); gets both participants' tokens.
    Management(String),
    /// The owner itself, with its session; it must be part of the call.
    Agent(String),
    /// An organisation's assistant handing its call to a human (its `assistant:<id>` party
    /// id); it joins through its LiveKit dispatch, so it gets no token.
    Assistant(String),
}

impl Initiator {
    fn agent_id(&self) -> &str {
        match self {
            Initiator::Management(a) | Initiator::Agent(a) | Initiator::Assistant(a) => a,
        }
    }
}

/// A transfer to start.
#[derive(Debug, Clone)]
pub struct NewTransfer {
    /// The call.
    pub call_id: String,
    /// Who starts it (Agent A).
    pub from: Initiator,
    /// Agent B.
    pub to_agent_id: String,
    /// Warm, cold or conference.
    pub mode: TransferMode,
    /// A note from A to B (at most 2,000 characters, checked by the transport).
    pub note: Option<String>,
    /// Transcript text to add (as A's words) before the briefing is taken.
    pub transcript_text: Option<String>,
    /// The request's `Idempotency-Key`, bound to the request.
    pub idempotency_key: Option<IdempotencyKey>,
}

/// A started transfer.
#[derive(Debug, Clone)]
pub struct StartedTransfer {
    /// The call after the command.
    pub machine: Arc<CallMachine>,
    /// The transfer.
    pub transfer: Transfer,
    /// A's LiveKit token for where A goes (none for an assistant).
    pub token_a: Option<String>,
    /// B's LiveKit token: for management only (B gets its own over its WebSocket).
    pub token_b: Option<String>,
}

/// The statuses a command leaves a transfer in, to answer repeats of it idempotently.
fn outcome(cmd: &Command) -> &'static [TransferStatus] {
    match cmd {
        Command::AcceptTransfer => &[TransferStatus::Briefing, TransferStatus::Completed],
        Command::DeclineTransfer => &[TransferStatus::Declined],
        Command::CompleteTransfer => &[TransferStatus::Completed],
        Command::CancelTransfer => &[TransferStatus::Cancelled],
        _ => &[],
    }
}

/// The room an agent of transfer `t` goes to: the consult room for a warm transfer, else
/// the call's main room.
fn where_agent_goes(t: &Transfer, main_room: &str) -> String {
    match t.mode {
        TransferMode::Warm => t.transfer_room.clone(),
        _ => main_room.to_string(),
    }
}

impl CallService {
    /// Starts a transfer. The target must exist, be active and reachable (a web agent
    /// online, a phone agent not busy on another call; a phone agent needs Twilio and a
    /// number; a SIP caller goes to web agents only); A must be part of the call (unless
    /// management or the call's assistant asks); at most one transfer is open per call (a
    /// retried request with the same `Idempotency-Key` answers the first). The briefing is
    /// the latest stored summary (never an LLM call on this path); a stale one is refreshed
    /// in the background after the offer, so that B is told `summary.updated`.
    pub async fn initiate_transfer(
        &self,
        req: NewTransfer,
    ) -> Result<StartedTransfer, ServiceError> {
        let agent_a = req.from.agent_id().to_string();
        let m = self.machine(&req.call_id).await?;
        if matches!(req.from, Initiator::Agent(_)) && !m.involves_agent(&agent_a) {
            return Err(ServiceError::Forbidden(format!(
                "you are not part of call {}",
                req.call_id
            )));
        }
        let target = self
            .store
            .get_agent(&req.to_agent_id)
            .await?
            .ok_or_else(|| {
                ServiceError::invalid("agentBId", format!("no agent {}", req.to_agent_id))
            })?;
        if !target.active {
            return Err(ServiceError::invalid("agentBId", "the agent is not active"));
        }
        let to_number = self.phone_number_of(&m, &target)?;
        self.check_reachable(&target).await?;
        // A repeated request answers the first answer without adding its transcript again;
        // the key of another request is refused before anything changes.
        let repeat = match &req.idempotency_key {
            Some(k) => self.recall(&req.call_id, k).await?.is_some(),
            None => false,
        };
        if let Some(open) = m.open_transfer() {
            if req.idempotency_key.is_none() {
                return Err(ServiceError::Conflict {
                    code: "transfer_open",
                    message: format!("transfer {} is still open", open.transfer_id),
                });
            }
        }
        if let Some(text) = req
            .transcript_text
            .as_ref()
            .filter(|t| !repeat && !t.trim().is_empty())
        {
            // Stored and announced (`transcript.appended`) like any other chunk.
            self.append_transcript(
                &req.call_id,
                agent_a.clone(),
                text.clone(),
                TranscriptSource::Manual,
            )
            .await?;
        }
        // The latest stored summary, at once: never an LLM call on this path.
        let briefing = self.summaries.for_transfer(&m.call).await?;
        let summary = briefing.summary;
        if briefing.stored_now
            || m.call.last_summary_id.as_deref() != Some(summary.summary_id.as_str())
        {
            self.execute(
                &req.call_id,
                Input::Observe(super::transcripts::summary_stored(&summary)),
                None,
            )
            .await?;
        }
        let transfer_id = new_id("xfer");
        let short = transfer_id
            .trim_start_matches("xfer-")
            .chars()
            .take(8)
            .collect::<String>();
        let cmd = Command::InitiateTransfer {
            transfer_id: transfer_id.clone(),
            to_agent_id: target.agent_id.clone(),
            mode: req.mode,
            transfer_room: format!("{}--consult-{short}", req.call_id),
            summary_id: Some(summary.summary_id.clone()),
            summary_text: summary.summary_text.clone(),
            note: req.note,
            to_number,
            briefing: crate::summary::briefing_view(&summary),
        };
        let m = self
            .execute(
                &req.call_id,
                Input::Command(Actor::Agent(agent_a), cmd),
                req.idempotency_key,
            )
            .await?;
        let t = m
            .transfer
            .clone()
            .ok_or_else(|| ServiceError::Internal("transfer missing after initiate".into()))?;
        if briefing.stale {
            // After the offer, so B is among the agents told `summary.updated`.
            self.refresh_summary(&req.call_id, true);
        }
        let token_for = |agent: &str| {
            let room = where_agent_goes(&t, &m.call.main_room);
            self.livekit
                .participant_token(agent, agent, &room, ParticipantRole::Agent)
                .map_err(|e| ServiceError::Internal(Box::new(e)))
        };
        let token_a = match req.from {
            Initiator::Assistant(_) => None,
            _ => Some(token_for(&t.from_agent_id)?),
        };
        let token_b = match req.from {
            Initiator::Management(_) => Some(token_for(&t.to_agent_id)?),
            _ => None,
        };
        Ok(StartedTransfer {
            machine: m,
            transfer: t,
            token_a,
            token_b,
        })
    }

    /// The number to dial for a phone target (`None` for a web agent), or why the target
    /// cannot take this call.
    fn phone_number_of(
        &self,
        m: &CallMachine,
        target: &crate::model::Agent,
    ) -> Result<Option<String>, ServiceError> {
        if m.call.channel == Channel::Sip && target.kind == AgentKind::Phone {
            return Err(ServiceError::Invalid {
                code: "unsupported_target",
                message: "agentBId: a caller on a SIP trunk can be handed to web agents only (a phone agent is reached through Twilio, another media plane)".into(),
            });
        }
        match target.kind {
            AgentKind::Phone if self.twilio.is_none() => Err(ServiceError::Invalid {
                code: "unsupported_target",
                message: "agentBId: phone agents are reached through Twilio, which is not configured (TWILIO_ACCOUNT_SID and the rest)".into(),
            }),
            AgentKind::Phone => Ok(Some(target.phone_number.clone().ok_or_else(|| {
                ServiceError::invalid("agentBId", "the phone agent has no phoneNumber")
            })?)),
            AgentKind::Web => Ok(None),
        }
    }

    /// Fails with `target_unavailable` unless the target can be offered a call: a web agent
    /// must be online; a phone specialist has no WebSocket, so it is reachable unless it is
    /// already busy on one of our calls.
    async fn check_reachable(&self, target: &crate::model::Agent) -> Result<(), ServiceError> {
        let presence = self.registry.send(PresenceList).await.unwrap_or_default();
        let now = presence
            .get(&target.agent_id)
            .copied()
            .unwrap_or(Presence::Offline);
        let unavailable = match target.kind {
            AgentKind::Phone => now == Presence::Busy,
            AgentKind::Web => now == Presence::Offline,
        };
        if unavailable {
            return Err(ServiceError::Conflict {
                code: "target_unavailable",
                message: format!(
                    "agent {} is {}",
                    target.agent_id,
                    if now == Presence::Busy {
                        "busy"
                    } else {
                        "offline"
                    }
                ),
            });
        }
        Ok(())
    }

    /// Answers transfer `t` as `agent` (accept, decline, complete or cancel). An older
    /// transfer of the call is over: a repeat of its outcome answers it as it is, anything
    /// else is `transfer_ended`.
    pub async fn answer_transfer(
        &self,
        t: Transfer,
        agent: String,
        cmd: Command,
        idempotency_key: Option<IdempotencyKey>,
    ) -> Result<Transfer, ServiceError> {
        let m = self.machine(&t.call_id).await?;
        let current = m.transfer.as_ref().map(|x| x.transfer_id.as_str());
        if current != Some(t.transfer_id.as_str()) {
            return if outcome(&cmd).contains(&t.status) {
                Ok(t)
            } else {
                Err(ServiceError::Conflict {
                    code: "transfer_ended",
                    message: format!("transfer {} is {}", t.transfer_id, t.status.as_str()),
                })
            };
        }
        let m = self
            .execute(
                &t.call_id,
                Input::Command(Actor::Agent(agent), cmd),
                idempotency_key,
            )
            .await?;
        m.transfer
            .clone()
            .filter(|x| x.transfer_id == t.transfer_id)
            .ok_or_else(|| ServiceError::Internal("transfer missing after command".into()))
    }
}
