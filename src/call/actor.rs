//! CallActor: one per live call. It runs the pure machine, persists every transition before
//! announcing it, pushes the events through the hub, arms the machine's deadlines as timers,
//! and carries out the remaining effects (LiveKit rooms, routing requests).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use serde_json::Value;

use crate::call::machine::{CallMachine, Effect, Input, Observation, Rejection, Step, TimerKey};
use crate::call::machine::{Party, HELD_SUFFIX};
use crate::call::registry::{CallChanged, Registry};
use crate::hub::Hub;
use crate::media::livekit::{
    LiveKit, LiveKitError, ParticipantRole, RecordingTarget, SipDial, SipDialError,
};
use crate::media::twilio::TwilioBridge;
use crate::model::{new_id, Event, Room};
use crate::store::{CallCommit, Store, StoreError, StoredCall};

/// How many idempotency keys an actor remembers.
const REMEMBERED_KEYS: usize = 64;

/// What a call actor needs from the rest of the app.
#[derive(Clone)]
pub struct CallDeps {
    /// Durable storage.
    pub store: Arc<dyn Store>,
    /// Event fan-out.
    pub hub: Hub,
    /// The LiveKit plane.
    pub livekit: LiveKit,
    /// The Twilio plane, when configured.
    pub twilio: Option<TwilioBridge>,
    /// Where recordings are uploaded, when configured.
    pub recording: Option<RecordingTarget>,
    /// Sends end-of-call notices (the assistant's webhook), when the app has any.
    pub end_of_call: Option<Arc<dyn EndOfCall>>,
}

/// Sends a finished call's end-of-call notice. The actor asks once the call is over (and
/// its recording settled) and again, later, until it succeeds; implementations must be
/// idempotent (one notice per call however often they are asked).
#[async_trait::async_trait]
pub trait EndOfCall: Send + Sync {
    /// Queues the notice durably (delivery happens later, with retries).
    async fn call_ended(&self, machine: &CallMachine) -> Result<(), String>;
}

/// Why a call operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The machine refused the command.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// No such call.
    #[error("call {0} not found")]
    NotFound(String),
    /// Storage failed; nothing was changed.
    #[error("storage failed: {0}")]
    Storage(Arc<StoreError>),
    /// The call's actor is not running (it is being restarted).
    #[error("the call is being recovered; try again")]
    Unavailable,
    /// A LiveKit token could not be minted.
    #[error("could not mint a LiveKit token: {0}")]
    Media(Arc<LiveKitError>),
}

impl From<StoreError> for CallError {
    fn from(e: StoreError) -> Self {
        CallError::Storage(Arc::new(e))
    }
}

/// The result of a command: the machine after it.
pub type CallResult = Result<Arc<CallMachine>, CallError>;

/// Apply an input to the call.
#[derive(Message)]
#[rtype(result = "CallResult")]
pub struct Execute {
    /// The command or observation.
    pub input: Input,
    /// A client-chosen key; repeating it returns the first result.
    pub idempotency_key: Option<String>,
}

/// Read the current state.
#[derive(Message)]
#[rtype(result = "CallResult")]
pub struct Snapshot;

/// One live call.
pub struct CallActor {
    call_id: String,
    machine: Option<Arc<CallMachine>>,
    version: u64,
    deps: CallDeps,
    registry: Addr<Registry>,
    timers: HashMap<TimerKey, SpawnHandle>,
    remembered: VecDeque<(String, Arc<CallMachine>)>,
    /// Effects and events of the creating transition, carried out once started.
    pending: Option<Step>,
}

impl CallActor {
    /// An actor for a call that exists in the store; it loads itself when started.
    pub fn recover(call_id: String, deps: CallDeps, registry: Addr<Registry>) -> Self {
        CallActor {
            call_id,
            machine: None,
            version: 0,
            deps,
            registry,
            timers: HashMap::new(),
            remembered: VecDeque::new(),
            pending: None,
        }
    }

    /// An actor for a call recovery has just read from the store (at `version`): it starts
    /// without reading it again.
    pub fn recovered(
        machine: CallMachine,
        version: u64,
        deps: CallDeps,
        registry: Addr<Registry>,
    ) -> Self {
        CallActor {
            call_id: machine.call.call_id.clone(),
            machine: Some(Arc::new(machine)),
            version,
            deps,
            registry,
            timers: HashMap::new(),
            remembered: VecDeque::new(),
            pending: None,
        }
    }

    /// An actor for a call just created and committed (version 1) by `step`.
    pub fn created(step: Step, deps: CallDeps, registry: Addr<Registry>) -> Self {
        CallActor {
            call_id: step.machine.call.call_id.clone(),
            machine: Some(Arc::new(step.machine.clone())),
            version: 1,
            deps,
            registry,
            timers: HashMap::new(),
            remembered: VecDeque::new(),
            pending: Some(step),
        }
    }

    fn load(&mut self, ctx: &mut Context<Self>) {
        let store = self.deps.store.clone();
        let id = self.call_id.clone();
        ctx.wait(
            async move { store.get_call(&id).await }
                .into_actor(self)
                .map(|res, act, ctx| match res {
                    Ok(Some(stored)) => match decode(&stored) {
                        Ok(m) => {
                            act.version = stored.version;
                            act.machine = Some(Arc::new(m));
                            act.sync_timers(ctx);
                            act.report(false);
                        }
                        Err(e) => {
                            tracing::error!(call_id = %act.call_id, error = %e, "stored call state is unreadable");
                            ctx.stop();
                        }
                    },
                    Ok(None) => {
                        tracing::warn!(call_id = %act.call_id, "call vanished from the store");
                        ctx.stop();
                    }
                    Err(e) => {
                        tracing::error!(call_id = %act.call_id, error = %e, "could not load call; will retry");
                        ctx.run_later(Duration::from_secs(1), |act, ctx| act.load(ctx));
                    }
                }),
        );
    }

    /// Re-arms a timer per deadline of the machine.
    fn sync_timers(&mut self, ctx: &mut Context<Self>) {
        for (_, handle) in self.timers.drain() {
            ctx.cancel_future(handle);
        }
        let Some(m) = self.machine.clone() else {
            return;
        };
        let now = now_ms();
        for (key, due) in m.timers.iter() {
            let delay = Duration::from_millis((*due - now).max(0) as u64);
            let fired = key.clone();
            let handle = ctx.run_later(delay, move |_act, ctx| {
                ctx.address().do_send(Execute {
                    input: Input::Observe(Observation::TimerFired { key: fired }),
                    idempotency_key: None,
                });
            });
            self.timers.insert(key.clone(), handle);
        }
    }

    /// Tells the registry what routing needs to know about this call.
    fn report(&self, request_agent: bool) {
        if let Some(m) = &self.machine {
            self.registry.do_send(CallChanged {
                call_id: self.call_id.clone(),
                status: m.call.status,
                engaged: m.engaged_agents(),
                created_at_ms: m.call.created_at.timestamp_millis(),
                // The caller's choice of agent holds until someone first takes the call.
                requested_agent: m
                    .call
                    .requested_agent_id
                    .clone()
                    .filter(|_| m.call.agent_a_id.is_none()),
                declined_by: m.declined_by.clone(),
                request_agent,
                settled: m.is_settled(),
            });
        }
    }

    /// Publishes the events and carries out the effects of a persisted step.
    fn carry_out(&mut self, step: &Step, ctx: &mut Context<Self>) {
        use tracing::Instrument;
        let span = crate::logging::call_span(
            &self.call_id,
            step.machine
                .transfer
                .as_ref()
                .map(|t| t.transfer_id.as_str()),
        );
        let _entered = span.clone().entered();
        tracing::debug!(
            status = step.machine.call.status.as_str(),
            events = step.events.len(),
            effects = step.effects.len(),
            "call step carried out"
        );
        // Join tokens go only into what is pushed live: never into the stored event log
        // (no credentials at rest, none replayed after they expire; a client that missed
        // a move asks `POST /api/tokens`).
        let mut live = step.events.clone();
        if let Err(e) = add_join_tokens(
            &self.deps.livekit,
            self.deps.twilio.as_ref(),
            &step.machine,
            &mut live,
        ) {
            tracing::error!(call_id = %self.call_id, error = %e, "could not mint join tokens");
        }
        for event in &live {
            self.deps.hub.publish(event);
        }
        self.sync_timers(ctx);
        let mut request_agent = false;
        for effect in &step.effects {
            match effect {
                Effect::RequestAgent => request_agent = true,
                Effect::EnsureRoom { room } => {
                    let deps = self.deps.clone();
                    let room = room.clone();
                    let call_id = self.call_id.clone();
                    actix::spawn(async move {
                        record_room(&deps, &call_id, &room, "open").await;
                        if let Err(e) = deps.livekit.ensure_room(&room).await {
                            tracing::warn!(%room, error = %e, "LiveKit room not created; clients create it on join");
                        }
                    }.instrument(span.clone()));
                }
                Effect::CloseRoom { room } => {
                    let deps = self.deps.clone();
                    let room = room.clone();
                    let call_id = self.call_id.clone();
                    actix::spawn(async move {
                        record_room(&deps, &call_id, &room, "closed").await;
                        if let Err(e) = deps.livekit.delete_room(&room).await {
                            tracing::warn!(%room, error = %e, "LiveKit room not deleted; its empty timeout will close it");
                        }
                    }.instrument(span.clone()));
                }
                Effect::RemoveParticipant { room, identity } => {
                    let lk = self.deps.livekit.clone();
                    let (room, identity) = (room.clone(), identity.clone());
                    actix::spawn(async move {
                        if let Err(e) = lk.remove_participant(&room, &identity).await {
                            tracing::debug!(%room, %identity, error = %e, "participant not removed");
                        }
                    }.instrument(span.clone()));
                }
                Effect::DispatchAssistant { .. }
                | Effect::DialSip { .. }
                | Effect::DismissAssistant { .. }
                | Effect::StartRecording { .. }
                | Effect::StopRecording { .. }
                | Effect::NotifyEnded => {
                    self.carry_out_outbound(effect.clone(), &step.machine, span.clone(), ctx)
                }
                twilio_effect => self.carry_out_twilio(twilio_effect.clone(), span.clone(), ctx),
            }
        }
        self.report(request_agent);
        if self.machine.as_ref().is_some_and(|m| m.is_settled()) {
            ctx.stop();
        }
    }

    /// Carries out an effect of an outbound assistant call (dispatch, SIP dial-out,
    /// recording, end-of-call notice) and feeds LiveKit's answers back into the machine.
    fn carry_out_outbound(
        &mut self,
        effect: Effect,
        machine: &CallMachine,
        span: tracing::Span,
        ctx: &mut Context<Self>,
    ) {
        use tracing::Instrument;
        let feed = feeder(ctx);
        let lk = self.deps.livekit.clone();
        let call_id = self.call_id.clone();
        match effect {
            Effect::DispatchAssistant {
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
            Effect::DialSip {
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
            Effect::DismissAssistant {
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
            Effect::StartRecording { room, file_stem } => {
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
            Effect::StopRecording { egress_id } => {
                actix::spawn(
                    async move {
                        if let Err(e) = lk.stop_egress(&egress_id).await {
                            tracing::warn!(%egress_id, error = %e, "recording not stopped; the room's deletion ends it");
                        }
                    }
                    .instrument(span),
                );
            }
            Effect::NotifyEnded => {
                let Some(notifier) = self.deps.end_of_call.clone() else {
                    // Nothing to send: the call is settled.
                    actix::spawn(async move {
                        feed(Observation::Notified).await;
                    });
                    return;
                };
                let machine = machine.clone();
                actix::spawn(
                    async move {
                        match notifier.call_ended(&machine).await {
                            Ok(()) => {
                                feed(Observation::Notified).await;
                            }
                            Err(e) => {
                                tracing::error!(%call_id, error = %e, "end-of-call notice not queued; asking again later");
                            }
                        }
                    }
                    .instrument(span),
                );
            }
            // Never logged whole: a dispatch carries the rendered prompt (the callee's data).
            _ => {
                tracing::error!(%call_id, "an effect that is not an outbound call's was routed here")
            }
        }
    }

    /// Carries out an effect on the Twilio plane and feeds what Twilio answered back into the
    /// machine: a dialled leg's SID, a refused dial, or a successful move (confirmation that
    /// does not wait for the conference callback).
    fn carry_out_twilio(&mut self, effect: Effect, span: tracing::Span, ctx: &mut Context<Self>) {
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
        };
        use tracing::Instrument;
        actix::spawn(async move {
            match effect {
                Effect::Dial {
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
                Effect::RedirectPhone {
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
                Effect::HoldParticipant {
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
                Effect::HangupPhone { call_sid, ringing } => {
                    if let Err(e) = bridge.hangup(&call_sid, ringing).await {
                        tracing::warn!(%call_id, %call_sid, error = %e, "phone leg not hung up");
                    }
                }
                Effect::RemoveFromConference {
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
                Effect::MuteParticipant {
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
                Effect::EndConference {
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
                Effect::EnsureRoom { .. }
                | Effect::CloseRoom { .. }
                | Effect::RemoveParticipant { .. }
                | Effect::RequestAgent
                | Effect::DispatchAssistant { .. }
                | Effect::DialSip { .. }
                | Effect::DismissAssistant { .. }
                | Effect::StartRecording { .. }
                | Effect::StopRecording { .. }
                | Effect::NotifyEnded => {}
            }
        }.instrument(span));
    }

    fn remember(&mut self, key: Option<String>, m: &Arc<CallMachine>) {
        if let Some(k) = key {
            if self.remembered.len() >= REMEMBERED_KEYS {
                self.remembered.pop_front();
            }
            self.remembered.push_back((k, m.clone()));
        }
    }
}

/// Adds the join token to every `participant.move` event pushed live: a LiveKit token and
/// url for a room, or a Twilio Voice SDK Access Token for a conference (`plane: twilio`).
pub fn add_join_tokens(
    livekit: &LiveKit,
    twilio: Option<&TwilioBridge>,
    machine: &CallMachine,
    events: &mut [Event],
) -> Result<(), JoinTokenError> {
    for e in events.iter_mut().filter(|e| e.kind == "participant.move") {
        let identity = e.data["identity"].as_str().unwrap_or_default().to_string();
        let room = e.data["room"].as_str().unwrap_or_default().to_string();
        let (role, name) = if identity == machine.call.caller_id {
            (ParticipantRole::Caller, machine.call.caller_name.clone())
        } else {
            (ParticipantRole::Agent, identity.clone())
        };
        let (token, url) = if e.data["plane"] == "twilio" {
            let bridge = twilio.ok_or(JoinTokenError::TwilioNotConfigured)?;
            let now = u64::try_from(now_ms() / 1000).unwrap_or_default();
            (bridge.client_token(&identity, now)?, None)
        } else {
            let token = livekit.participant_token(&identity, &name, &room, role)?;
            (token, Some(livekit.url().to_string()))
        };
        if let Value::Object(map) = &mut e.data {
            map.insert("token".into(), Value::String(token));
            if let Some(url) = url {
                map.insert("url".into(), Value::String(url));
            }
        }
    }
    Ok(())
}

/// Why a join token could not be added to a move.
#[derive(Debug, thiserror::Error)]
pub enum JoinTokenError {
    /// LiveKit token.
    #[error("could not mint a LiveKit token")]
    LiveKit(#[from] LiveKitError),
    /// Twilio Access Token.
    #[error("could not mint a Twilio Access Token")]
    Twilio(#[from] crate::media::twilio::ClientTokenError),
    /// A conference move without Twilio.
    #[error("a move into a conference, but Twilio is not configured")]
    TwilioNotConfigured,
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

/// Feeds an observation back into this actor from a spawned task: whether it was taken
/// (false once the actor stopped, e.g. the call ended meanwhile).
fn feeder(
    ctx: &Context<CallActor>,
) -> impl Fn(Observation) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool>>> + Clone {
    let me = ctx.address();
    move |obs: Observation| {
        let me = me.clone();
        Box::pin(async move {
            me.send(Execute {
                input: Input::Observe(obs),
                idempotency_key: None,
            })
            .await
            .is_ok()
        })
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

/// The machine stored with a call.
pub fn decode(stored: &StoredCall) -> Result<CallMachine, serde_json::Error> {
    serde_json::from_value(stored.state.clone())
}

/// The store commit for a step (`expected_version` None creates the call).
pub fn commit_of(step: &Step, expected_version: Option<u64>) -> Result<CallCommit, StoreError> {
    Ok(CallCommit {
        call: step.machine.call.clone(),
        state: serde_json::to_value(&step.machine)
            .map_err(|e| StoreError::backend("encoding call state", e))?,
        expected_version,
        transfers: step.transfers.clone(),
        events: step.events.clone(),
        open: !step.machine.is_settled(),
    })
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Actor for CallActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(256);
        if let Some(step) = self.pending.take() {
            self.carry_out(&step, ctx);
        } else if self.machine.is_none() {
            self.load(ctx);
        } else {
            // Recovered with its state: arm its deadlines and tell routing, as `load` does.
            self.sync_timers(ctx);
            self.report(false);
        }
    }
}

impl Supervised for CallActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        // Never trust in-memory state after a failure: reload from the store on start.
        tracing::warn!(call_id = %self.call_id, "call actor restarting; reloading from the store");
        self.machine = None;
        self.timers.clear();
        self.pending = None;
    }
}

impl Handler<Snapshot> for CallActor {
    type Result = CallResult;

    fn handle(&mut self, _: Snapshot, _: &mut Context<Self>) -> CallResult {
        self.machine.clone().ok_or(CallError::Unavailable)
    }
}

impl Handler<Execute> for CallActor {
    type Result = AtomicResponse<Self, CallResult>;

    fn handle(&mut self, msg: Execute, _ctx: &mut Context<Self>) -> Self::Result {
        let Some(machine) = self.machine.clone() else {
            return AtomicResponse::new(Box::pin(fut::ready(Err(CallError::Unavailable))));
        };
        if let Some(key) = &msg.idempotency_key {
            if let Some((_, m)) = self.remembered.iter().find(|(k, _)| k == key) {
                return AtomicResponse::new(Box::pin(fut::ready(Ok(m.clone()))));
            }
        }
        let step = match machine.handle(now_ms(), msg.input) {
            Ok(step) => step,
            Err(rejection) => {
                return AtomicResponse::new(Box::pin(fut::ready(Err(rejection.into()))))
            }
        };
        if !step.changed(&machine) {
            self.remember(msg.idempotency_key, &machine);
            return AtomicResponse::new(Box::pin(fut::ready(Ok(machine))));
        }
        let commit = match commit_of(&step, Some(self.version)) {
            Ok(c) => c,
            Err(e) => return AtomicResponse::new(Box::pin(fut::ready(Err(e.into())))),
        };
        let store = self.deps.store.clone();
        let key = msg.idempotency_key;
        AtomicResponse::new(Box::pin(
            async move { store.commit_call(commit).await }
                .into_actor(self)
                .map(move |res, act, ctx| match res {
                    Ok(version) => {
                        act.version = version;
                        let m = Arc::new(step.machine.clone());
                        act.machine = Some(m.clone());
                        act.remember(key, &m);
                        act.carry_out(&step, ctx);
                        Ok(m)
                    }
                    Err(e) => {
                        // Whether or not the write landed, memory may now be stale:
                        // restart and reload from the store.
                        tracing::error!(call_id = %act.call_id, error = %e, "commit failed; reloading the call");
                        ctx.stop();
                        Err(e.into())
                    }
                }),
        ))
    }
}

/// Test-only: make the actor panic inside a handler, as a bug would.
#[cfg(test)]
#[derive(Message)]
#[rtype(result = "()")]
pub struct Crash;

#[cfg(test)]
impl Handler<Crash> for CallActor {
    type Result = ();
    fn handle(&mut self, _: Crash, _: &mut Context<Self>) {
        panic!("simulated bug in a call actor");
    }
}
