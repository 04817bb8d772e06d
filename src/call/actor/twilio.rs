//! The executor of [`TwilioEffect`]s: phone legs and conferences on the Twilio plane; what
//! Twilio answers (a dialled leg's SID, a refused dial, a successful move) is fed back into
//! the machine.

use actix::prelude::*;

use super::{feeder, now_ms, CallActor};
use crate::call::machine::{Observation, Party, TwilioEffect, HELD_SUFFIX};
use crate::media::twilio::TwilioBridge;

impl CallActor {
    /// Carries out an effect on the Twilio plane and feeds what Twilio answered back into the
    /// machine: a dialled leg's SID, a refused dial, or a successful move (confirmation that
    /// does not wait for the conference callback).
    pub(super) fn carry_out_twilio(
        &mut self,
        effect: TwilioEffect,
        span: tracing::Span,
        ctx: &mut Context<Self>,
    ) {
        let Some(bridge) = self.deps.twilio.clone() else {
            tracing::error!(call_id = %self.call_id, ?effect, "a phone leg needs Twilio, which is not configured");
            return;
        };
        let call_id = self.call_id.clone();
        let feed = feeder(ctx);
        let confirmed = move |label: String, room: String| Observation::Joined {
            identity: label,
            room,
            at: now_ms(),
            session: None,
        };
        use tracing::Instrument;
        actix::spawn(async move {
            match effect {
                TwilioEffect::Dial {
                    party,
                    number,
                    transfer_id,
                    ring_secs,
                } => {
                    let Party::Agent(agent_id) = &party else {
                        return;
                    };
                    match bridge
                        .dial(&call_id, &transfer_id, agent_id, &number, ring_secs)
                        .await
                    {
                        Ok(call_sid) => {
                            let fed = feed(Observation::Dialed {
                                party: party.clone(),
                                call_sid: call_sid.clone(),
                                transfer_id: Some(transfer_id.clone()),
                            })
                            .await;
                            if !fed {
                                // The call ended meanwhile: nobody wants this leg.
                                let _ = bridge.hangup(&call_sid, true).await;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(%call_id, %transfer_id, error = %e, "dialling the phone agent failed");
                            feed(Observation::DialFailed {
                                party,
                                transfer_id: Some(transfer_id.clone()),
                                reason: e.to_string(),
                            })
                            .await;
                        }
                    }
                }
                TwilioEffect::RedirectPhone {
                    call_sid,
                    conference,
                    label,
                } => match bridge
                    .redirect(&call_id, &call_sid, &conference, &label)
                    .await
                {
                    Ok(()) => {
                        feed(confirmed(label, conference)).await;
                    }
                    Err(e) => {
                        tracing::warn!(%call_id, %call_sid, error = %e, "phone leg not moved; the arrival deadline decides");
                    }
                },
                TwilioEffect::HoldParticipant {
                    conference,
                    conference_sid,
                    label,
                    hold,
                } => {
                    // The conference's start callback may not have arrived yet (Twilio sends
                    // it and the participant's join independently): look it up by name.
                    let Some(sid) = known_or_running(&bridge, &feed, &call_id, &conference, conference_sid).await else {
                        tracing::warn!(%call_id, %conference, "conference not started yet: hold not applied");
                        return;
                    };
                    match bridge.hold(&sid, &label, hold).await {
                        Ok(()) => {
                            let room = if hold {
                                format!("{conference}{HELD_SUFFIX}")
                            } else {
                                conference
                            };
                            feed(confirmed(label, room)).await;
                        }
                        Err(e) => {
                            tracing::warn!(%call_id, %label, hold, error = %e, "hold not applied; the arrival deadline decides");
                        }
                    }
                }
                TwilioEffect::HangupPhone { call_sid, ringing } => {
                    if let Err(e) = bridge.hangup(&call_sid, ringing).await {
                        tracing::warn!(%call_id, %call_sid, error = %e, "phone leg not hung up");
                    }
                }
                TwilioEffect::RemoveFromConference {
                    conference,
                    conference_sid,
                    label,
                } => {
                    let Some(sid) = known_or_running(&bridge, &feed, &call_id, &conference, conference_sid).await else {
                        return;
                    };
                    if let Err(e) = bridge.remove(&sid, &label).await {
                        tracing::warn!(%call_id, %conference, %label, error = %e, "participant not removed");
                    }
                }
                TwilioEffect::MuteParticipant {
                    conference,
                    conference_sid,
                    label,
                    muted,
                } => {
                    let Some(sid) = known_or_running(&bridge, &feed, &call_id, &conference, conference_sid).await else {
                        tracing::warn!(%call_id, %conference, "conference not started yet: mute not applied");
                        return;
                    };
                    if let Err(e) = bridge.mute(&sid, &label, muted).await {
                        tracing::warn!(%call_id, %label, muted, error = %e, "mute not applied");
                    }
                }
                TwilioEffect::EndConference {
                    conference,
                    conference_sid,
                } => {
                    let Some(sid) = known_or_running(&bridge, &feed, &call_id, &conference, conference_sid).await else {
                        return;
                    };
                    if let Err(e) = bridge.end_conference(&sid).await {
                        tracing::warn!(%call_id, %conference, error = %e, "conference not ended");
                    }
                }
            }
        }.instrument(span));
    }
}

/// A conference's SID: the one Twilio's callback told, or else the running conference of that
/// name, looked up (and told to the machine, so later effects have it). `None` when no such
/// conference runs (it never started, or is over).
async fn known_or_running<F>(
    bridge: &TwilioBridge,
    feed: &F,
    call_id: &str,
    conference: &str,
    known: Option<String>,
) -> Option<String>
where
    F: Fn(Observation) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool>>>,
{
    if known.is_some() {
        return known;
    }
    match bridge.running_conference(conference).await {
        Ok(Some(sid)) => {
            feed(Observation::ConferenceStarted {
                conference: conference.to_string(),
                conference_sid: sid.clone(),
            })
            .await;
            Some(sid)
        }
        Ok(None) => {
            tracing::debug!(%call_id, %conference, "no such conference running");
            None
        }
        Err(e) => {
            tracing::warn!(%call_id, %conference, error = %e, "could not look the conference up");
            None
        }
    }
}
