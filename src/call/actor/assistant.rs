//! The executor of [`AssistantEffect`]s: an outbound call's assistant dispatch, SIP dial-out
//! and recording, on LiveKit's agent, SIP and egress services; their answers are fed back
//! into the machine.

use actix::prelude::*;

use super::{feeder, CallActor};
use crate::call::machine::{AssistantEffect, Observation};
use crate::media::livekit::{SipDial, SipDialError};

impl CallActor {
    /// Carries out an effect of an outbound assistant call (dispatch, SIP dial-out,
    /// recording) and feeds LiveKit's answers back into the machine.
    pub(super) fn carry_out_assistant(
        &mut self,
        effect: AssistantEffect,
        span: tracing::Span,
        ctx: &mut Context<Self>,
    ) {
        use tracing::Instrument;
        let feed = feeder(ctx);
        let lk = self.deps.livekit.clone();
        let call_id = self.call_id.clone();
        match effect {
            AssistantEffect::DispatchAssistant {
                room,
                agent_name,
                metadata,
            } => {
                actix::spawn(
                    async move {
                        match lk.dispatch_agent(&room, &agent_name, &metadata).await {
                            Ok(dispatch_id) => {
                                feed(Observation::AssistantDispatched { dispatch_id }).await;
                            }
                            Err(e) => {
                                tracing::error!(%call_id, error = %e, "the assistant could not be dispatched");
                                feed(Observation::DispatchFailed {
                                    reason: e.to_string(),
                                })
                                .await;
                            }
                        }
                    }
                    .instrument(span),
                );
            }
            AssistantEffect::DialSip {
                room,
                livekit_trunk_id,
                number,
                identity,
                ring_secs,
            } => {
                let dial = SipDial {
                    sip_trunk_id: livekit_trunk_id,
                    to_number: number,
                    room,
                    name: "Callee".into(),
                    identity,
                    ringing_timeout: std::time::Duration::from_secs(u64::from(ring_secs)),
                };
                actix::spawn(
                    async move {
                        let obs = match lk.dial_sip(&dial).await {
                            Ok(answered) => Observation::SipAnswered {
                                sip_call_id: answered.sip_call_id,
                            },
                            Err(e) => {
                                tracing::info!(%call_id, error = %e, "the outbound call did not connect");
                                Observation::SipFailed {
                                    sip_status: e.sip_status(),
                                    reason: match &e {
                                        SipDialError::Rejected { reason, .. } => reason.clone(),
                                        SipDialError::Service(inner) => inner.to_string(),
                                    },
                                }
                            }
                        };
                        feed(obs).await;
                    }
                    .instrument(span),
                );
            }
            AssistantEffect::DismissAssistant {
                room,
                identity,
                dispatch_id,
            } => {
                actix::spawn(
                    async move {
                        if let Some(id) = dispatch_id {
                            if let Err(e) = lk.delete_dispatch(&room, &id).await {
                                tracing::warn!(%room, dispatch_id = %id, error = %e, "assistant dispatch not deleted");
                            }
                        }
                        if let Some(identity) = identity {
                            if let Err(e) = lk.remove_participant(&room, &identity).await {
                                tracing::debug!(%room, %identity, error = %e, "assistant not removed");
                            }
                        }
                    }
                    .instrument(span),
                );
            }
            AssistantEffect::StartRecording { room, file_stem } => {
                let target = self.deps.recording.clone();
                actix::spawn(
                    async move {
                        let Some(target) = target else {
                            feed(Observation::RecordingRefused {
                                error: "recordings are not configured (SWITCHBOARD_RECORDING_S3_*)".into(),
                            })
                            .await;
                            return;
                        };
                        let obs = match lk.start_audio_recording(&room, &target, &file_stem).await {
                            Ok(egress_id) => Observation::RecordingStarted { egress_id },
                            Err(e) => {
                                tracing::error!(%call_id, error = %e, "the recording could not be started");
                                Observation::RecordingRefused {
                                    error: format!("{e}: {}", error_chain(&e)),
                                }
                            }
                        };
                        feed(obs).await;
                    }
                    .instrument(span),
                );
            }
            AssistantEffect::StopRecording { egress_id } => {
                actix::spawn(
                    async move {
                        if let Err(e) = lk.stop_egress(&egress_id).await {
                            tracing::warn!(%egress_id, error = %e, "recording not stopped; the room's deletion ends it");
                        }
                    }
                    .instrument(span),
                );
            }
        }
    }
}

/// The sources of an error, joined (`a: b: c`), for records that outlive the log line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![];
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ")
}
