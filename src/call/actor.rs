//! CallActor: one per live call. It runs the pure machine, persists every transition before
//! announcing it, pushes the events through the hub, arms the machine's deadlines as timers,
//! and hands each group of the machine's effects to its one executor: LiveKit rooms
//! ([`livekit`]), Twilio phone legs and conferences ([`twilio`]), an outbound call's
//! assistant, dial-out and recording ([`assistant`]), the end-of-call notice ([`notice`]);
//! routing requests go to the registry.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use serde_json::Value;

use crate::call::machine::{
    CallMachine, Effect, Input, Observation, Rejection, RoutingEffect, Step, TimerKey,
};
use crate::call::registry::{CallChanged, Registry};
use crate::hub::Hub;
use crate::media::livekit::{LiveKit, LiveKitError, ParticipantRole, RecordingTarget};
use crate::media::twilio::TwilioBridge;
use crate::model::Event;
use crate::store::{CallCommit, Store, StoreError, StoredCall};

mod assistant;
mod livekit;
mod notice;
mod twilio;

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
    /// The `Idempotency-Key` was used before for another request (another body, method or
    /// route); nothing was changed.
    #[error("Idempotency-Key {0:?} was used for another request")]
    KeyReused(String),
}

/// An `Idempotency-Key` bound to the request it came with: a repeat of the same request
/// answers the first answer, another request with the same key is [`CallError::KeyReused`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// The key as the client sent it.
    pub key: String,
    /// Who sent it (`admin`, `agent:alice`, `org:acme`, ...): one principal's key never
    /// answers another's request.
    pub scope: String,
    /// SHA-256 of the request (method, route, body).
    pub fingerprint: [u8; 32],
}

impl IdempotencyKey {
    /// Binds `key` of `scope` to the request made of `parts` (each length-prefixed before
    /// it is hashed, so no two lists of parts share a digest).
    pub fn new(key: impl Into<String>, scope: impl Into<String>, parts: &[&[u8]]) -> Self {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for p in parts {
            h.update((p.len() as u64).to_be_bytes());
            h.update(p);
        }
        IdempotencyKey {
            key: key.into(),
            scope: scope.into(),
            fingerprint: h.finalize().into(),
        }
    }

    /// Whether `other` is the same key of the same principal (whatever the request).
    pub fn same_key(&self, other: &IdempotencyKey) -> bool {
        self.key == other.key && self.scope == other.scope
    }
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
    /// A client-chosen key; repeating it with the same request returns the first result.
    pub idempotency_key: Option<IdempotencyKey>,
}

/// Looks an idempotency key up without applying anything: `Ok(Some(machine))` with the first
/// answer, `Ok(None)` for a new key, [`CallError::KeyReused`] for a key of another request.
#[derive(Message)]
#[rtype(result = "Result<Option<Arc<CallMachine>>, CallError>")]
pub struct Recall(pub IdempotencyKey);

impl Handler<Recall> for CallActor {
    type Result = Result<Option<Arc<CallMachine>>, CallError>;

    fn handle(&mut self, msg: Recall, _: &mut Context<Self>) -> Self::Result {
        self.recall(&msg.0).transpose()
    }
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
    remembered: VecDeque<(IdempotencyKey, Arc<CallMachine>)>,
    /// Effects and events of the creating transition, carried out once started.
    pending: Option<Step>,
    /// How often its supervisor has restarted it.
    restarts: u32,
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
            restarts: 0,
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
            restarts: 0,
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
            restarts: 0,
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
            // Each group goes to its one executor: no effect can reach the wrong one.
            match effect.clone() {
                Effect::LiveKit(e) => self.carry_out_livekit(e, &span),
                Effect::Twilio(e) => self.carry_out_twilio(e, span.clone(), ctx),
                Effect::Assistant(e) => self.carry_out_assistant(e, span.clone(), ctx),
                Effect::Notice(e) => self.carry_out_notice(e, &step.machine, span.clone(), ctx),
                Effect::Routing(RoutingEffect::RequestAgent) => request_agent = true,
            }
        }
        // A settled call's report makes the registry forget its address; the actor then
        // stops by itself once the last address is gone and its last effects are done. It
        // never stops itself: its supervisor restarts an actor that stops while any address
        // is left (the registry's, until it reads the report), and a mass of calls ending
        // together would reload every one of them from the store.
        self.report(request_agent);
    }

    /// The first answer to `key`'s request, [`CallError::KeyReused`] when the key came with
    /// another request, `None` when it is new.
    fn recall(&self, key: &IdempotencyKey) -> Option<CallResult> {
        let (first, m) = self.remembered.iter().find(|(k, _)| k.same_key(key))?;
        Some(if first.fingerprint == key.fingerprint {
            Ok(m.clone())
        } else {
            Err(CallError::KeyReused(key.key.clone()))
        })
    }

    fn remember(&mut self, key: Option<IdempotencyKey>, m: &Arc<CallMachine>) {
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
        self.restarts += 1;
        crate::metrics::metrics().actor_restarted();
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
            if let Some(answer) = self.recall(key) {
                return AtomicResponse::new(Box::pin(fut::ready(answer)));
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

/// Test-only: how often the actor's supervisor has restarted it.
#[cfg(test)]
#[derive(Message)]
#[rtype(result = "u32")]
pub struct Restarts;

#[cfg(test)]
impl Handler<Restarts> for CallActor {
    type Result = u32;
    fn handle(&mut self, _: Restarts, _: &mut Context<Self>) -> u32 {
        self.restarts
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
