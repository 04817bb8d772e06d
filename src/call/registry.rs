//! Registry: creates, finds, supervises and retires call actors; re-creates every unfinished
//! call from the store after a restart; tracks agents' presence; and routes queued calls to
//! available agents (the agent idle longest first).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde_json::json;

use crate::call::actor::{
    commit_of, decode, now_ms, CallActor, CallDeps, CallError, CallResult, Execute,
};
use crate::call::machine::{
    Actor as By, CallMachine, Command, Input, Observation, OutboundPlan, Timeouts,
};
use crate::model::{Agent, AgentKind, AgentStatus, Call, CallStatus, Presence, WireEvent};

/// What an actor reports after every transition.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct CallChanged {
    /// The call.
    pub call_id: String,
    /// Its status now.
    pub status: CallStatus,
    /// Agents it engages now.
    pub engaged: Vec<String>,
    /// When it was created (queue order).
    pub created_at_ms: i64,
    /// The agent the caller asked for.
    pub requested_agent: Option<String>,
    /// Agents that passed on it.
    pub declined_by: Vec<String>,
    /// The machine asked for an agent.
    pub request_agent: bool,
    /// Nothing more will happen to the call (over, and its end-of-call notice queued): its
    /// actor stops.
    pub settled: bool,
}

/// Create a call and its actor.
#[derive(Message)]
#[rtype(result = "CallResult")]
pub struct CreateCall {
    /// The new call record (status is set by the machine).
    pub call: Call,
    /// The caller's Twilio CallSid, for a phone caller.
    pub caller_call_sid: Option<String>,
    /// For an outbound call: the assistant to dispatch and whether to record (the call
    /// record carries the trunk and number).
    pub outbound: Option<OutboundPlan>,
}

/// Where a call is.
pub enum Found {
    /// Live, with its actor.
    Live(Addr<CallActor>),
    /// Ended: its final state.
    Ended(Arc<CallMachine>),
}

/// Find a call's actor, re-creating it from the store if it is unfinished but not running.
#[derive(Message)]
#[rtype(result = "Result<Found, CallError>")]
pub struct Lookup {
    /// The call.
    pub call_id: String,
}

/// The actor of a call died (its mailbox closed): restart it from the store.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ActorDied {
    /// The call.
    pub call_id: String,
}

/// Re-create every unfinished call from the store (at start).
#[derive(Message)]
#[rtype(result = "Result<usize, CallError>")]
pub struct Recover;

/// An agent's WebSocket session opened.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AgentConnected {
    /// The agent.
    pub agent_id: String,
}

/// An agent's WebSocket session closed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AgentDisconnected {
    /// The agent.
    pub agent_id: String,
}

/// An agent was created or changed in the directory.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AgentUpserted {
    /// The agent as stored.
    pub agent: Agent,
}

/// Presence of every known agent.
#[derive(Message)]
#[rtype(result = "HashMap<String, Presence>")]
pub struct PresenceList;

/// Live calls engaging an agent.
#[derive(Message)]
#[rtype(result = "Vec<String>")]
pub struct CallsOfAgent {
    /// The agent.
    pub agent_id: String,
}

#[derive(Debug, Clone)]
struct QueueEntry {
    requested: Option<String>,
    declined_by: Vec<String>,
}

/// The arbiters call actors run on: one thread per core, so calls' transitions run in
/// parallel (every actor used to run on the thread that started the registry).
#[derive(Clone)]
struct Pool {
    arbiters: Arc<Vec<ArbiterHandle>>,
}

impl Pool {
    /// One arbiter per available core (`SWITCHBOARD_CALL_THREADS` overrides; 0 keeps every
    /// actor on the registry's own arbiter).
    fn new() -> Pool {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = std::env::var("SWITCHBOARD_CALL_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(cores);
        let arbiters = (0..threads).map(|_| Arbiter::new().handle()).collect();
        Pool {
            arbiters: Arc::new(arbiters),
        }
    }

    /// Starts a call actor under a supervisor on the arbiter `call_id` hashes to (or on the
    /// current one when the pool is empty).
    fn start<F>(&self, call_id: &str, make: F) -> Addr<CallActor>
    where
        F: FnOnce(&mut Context<CallActor>) -> CallActor + Send + 'static,
    {
        if self.arbiters.is_empty() {
            return actix::Supervisor::start(make);
        }
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        call_id.hash(&mut h);
        let i = (h.finish() % self.arbiters.len() as u64) as usize;
        actix::Supervisor::start_in_arbiter(&self.arbiters[i], make)
    }
}

/// The registry actor.
pub struct Registry {
    deps: CallDeps,
    pool: Pool,
    timeouts: Timeouts,
    disconnect_grace: Duration,
    actors: HashMap<String, Addr<CallActor>>,
    queue: BTreeMap<(i64, String), QueueEntry>,
    queued_at: HashMap<String, (i64, String)>,
    engaged: HashMap<String, HashSet<String>>,
    call_agents: HashMap<String, Vec<String>>,
    sessions: HashMap<String, usize>,
    directory: HashMap<String, Agent>,
    idle_since: HashMap<String, Instant>,
    presence: HashMap<String, Presence>,
}

impl Registry {
    /// A registry over the given dependencies.
    pub fn new(deps: CallDeps, timeouts: Timeouts, disconnect_grace: Duration) -> Self {
        Registry {
            deps,
            pool: Pool::new(),
            timeouts,
            disconnect_grace,
            actors: HashMap::new(),
            queue: BTreeMap::new(),
            queued_at: HashMap::new(),
            engaged: HashMap::new(),
            call_agents: HashMap::new(),
            sessions: HashMap::new(),
            directory: HashMap::new(),
            idle_since: HashMap::new(),
            presence: HashMap::new(),
        }
    }

    /// The timeouts new calls get.
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    fn start_actor(&mut self, call_id: &str, ctx: &mut Context<Self>) -> Addr<CallActor> {
        let deps = self.deps.clone();
        let me = ctx.address();
        let id = call_id.to_string();
        let addr = self
            .pool
            .start(call_id, move |_| CallActor::recover(id, deps, me));
        self.actors.insert(call_id.to_string(), addr.clone());
        addr
    }

    /// Starts the actor of a call recovery read from the store, with that state.
    fn start_recovered(
        &mut self,
        machine: CallMachine,
        version: u64,
        ctx: &mut Context<Self>,
    ) -> Addr<CallActor> {
        let deps = self.deps.clone();
        let me = ctx.address();
        let id = machine.call.call_id.clone();
        let addr = self.pool.start(&id, move |_| {
            CallActor::recovered(machine, version, deps, me)
        });
        self.actors.insert(id, addr.clone());
        addr
    }

    fn presence_of(&self, agent_id: &str) -> Presence {
        let engaged = self.engaged.get(agent_id).is_some_and(|c| !c.is_empty());
        let phone = self
            .directory
            .get(agent_id)
            .is_some_and(|a| a.kind == crate::model::AgentKind::Phone);
        if phone && engaged {
            // A phone specialist has no WebSocket; on one of our calls, it is busy.
            return Presence::Busy;
        }
        if self.sessions.get(agent_id).copied().unwrap_or(0) == 0 {
            return Presence::Offline;
        }
        if self.directory.get(agent_id).map(|a| a.status) == Some(AgentStatus::Away) {
            return Presence::Away;
        }
        if self.engaged.get(agent_id).is_some_and(|c| !c.is_empty()) {
            Presence::Busy
        } else {
            Presence::Available
        }
    }

    /// Recomputes an agent's presence and pushes `agent.presence` when it changed.
    fn refresh_presence(&mut self, agent_id: &str) {
        let now = self.presence_of(agent_id);
        let before = self.presence.insert(agent_id.to_string(), now);
        if before != Some(now) {
            if now == Presence::Available {
                self.idle_since.insert(agent_id.to_string(), Instant::now());
            }
            let event = WireEvent {
                seq: 0,
                call_id: None,
                kind: "agent.presence".into(),
                at: chrono::Utc::now(),
                data: json!({ "agentId": agent_id, "presence": now }),
            };
            self.deps.hub.publish_to_all_agents(&event);
        }
    }

    fn can_take_calls(&self, agent_id: &str) -> bool {
        self.presence_of(agent_id) == Presence::Available
            && self
                .directory
                .get(agent_id)
                .is_some_and(|a| a.active && a.kind == AgentKind::Web)
    }

    /// Offers queued calls, oldest first, to available agents (idle longest first).
    fn dispatch(&mut self, ctx: &mut Context<Self>) {
        let mut free: Vec<String> = self
            .sessions
            .keys()
            .filter(|a| self.can_take_calls(a))
            .cloned()
            .collect();
        if free.is_empty() || self.queue.is_empty() {
            return;
        }
        free.sort_by_key(|a| self.idle_since.get(a).copied().unwrap_or_else(Instant::now));
        let entries: Vec<((i64, String), QueueEntry)> = self
            .queue
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for ((at, call_id), entry) in entries {
            if free.is_empty() {
                break;
            }
            // A request for an agent since deactivated no longer holds the call.
            let requested = entry
                .requested
                .as_ref()
                .filter(|r| self.directory.get(*r).is_none_or(|a| a.active));
            let pick = match requested {
                Some(r) => free.iter().position(|a| a == r),
                None => free
                    .iter()
                    .position(|a| !entry.declined_by.contains(a))
                    .or(Some(0)),
            };
            let Some(i) = pick else { continue };
            let agent = free.remove(i);
            self.queue.remove(&(at, call_id.clone()));
            self.queued_at.remove(&call_id);
            // Count the agent engaged at once so nobody else offers them a call meanwhile.
            self.engaged
                .entry(agent.clone())
                .or_default()
                .insert(call_id.clone());
            self.refresh_presence(&agent);
            let Some(addr) = self.actors.get(&call_id).cloned() else {
                continue;
            };
            let input = Input::Command(
                By::System,
                Command::Offer {
                    agent_id: agent.clone(),
                },
            );
            addr.send(Execute {
                input,
                idempotency_key: None,
            })
            .into_actor(self)
            .map(move |res, act, ctx| {
                if !matches!(res, Ok(Ok(_))) {
                    tracing::debug!(%call_id, %agent, "offer not made");
                    if let Some(calls) = act.engaged.get_mut(&agent) {
                        calls.remove(&call_id);
                    }
                    act.refresh_presence(&agent);
                    ctx.notify(Redispatch);
                }
            })
            .spawn(ctx);
        }
    }

    /// Tells every call the agent is engaged in that it went away (`AgentGone`).
    fn agent_gone(&self, agent_id: &str) {
        let calls: Vec<String> = self
            .engaged
            .get(agent_id)
            .map(|c| c.iter().cloned().collect())
            .unwrap_or_default();
        for call_id in calls {
            if let Some(addr) = self.actors.get(&call_id) {
                addr.do_send(Execute {
                    input: Input::Observe(Observation::AgentGone {
                        agent_id: agent_id.to_string(),
                    }),
                    idempotency_key: None,
                });
            }
        }
    }

    fn apply_change(&mut self, msg: &CallChanged) {
        let before = self
            .call_agents
            .insert(msg.call_id.clone(), msg.engaged.clone())
            .unwrap_or_default();
        for a in &before {
            if let Some(calls) = self.engaged.get_mut(a) {
                calls.remove(&msg.call_id);
            }
        }
        for a in &msg.engaged {
            self.engaged
                .entry(a.clone())
                .or_default()
                .insert(msg.call_id.clone());
        }
        if let Some(key) = self.queued_at.remove(&msg.call_id) {
            self.queue.remove(&key);
        }
        if msg.status == CallStatus::Queued {
            let key = (msg.created_at_ms, msg.call_id.clone());
            self.queue.insert(
                key.clone(),
                QueueEntry {
                    requested: msg.requested_agent.clone(),
                    declined_by: msg.declined_by.clone(),
                },
            );
            self.queued_at.insert(msg.call_id.clone(), key);
        }
        if msg.settled {
            self.actors.remove(&msg.call_id);
            self.call_agents.remove(&msg.call_id);
        }
        let touched: HashSet<String> = before.into_iter().chain(msg.engaged.clone()).collect();
        for a in touched {
            self.refresh_presence(&a);
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Redispatch;

#[derive(Message)]
#[rtype(result = "()")]
struct GraceOver {
    agent_id: String,
}

impl Actor for Registry {
    type Context = Context<Self>;
}

impl Handler<Redispatch> for Registry {
    type Result = ();
    fn handle(&mut self, _: Redispatch, ctx: &mut Context<Self>) {
        self.dispatch(ctx);
    }
}

impl Handler<CallChanged> for Registry {
    type Result = ();
    fn handle(&mut self, msg: CallChanged, ctx: &mut Context<Self>) {
        self.apply_change(&msg);
        self.dispatch(ctx);
    }
}

impl Handler<CreateCall> for Registry {
    type Result = ResponseActFuture<Self, CallResult>;

    fn handle(&mut self, msg: CreateCall, _ctx: &mut Context<Self>) -> Self::Result {
        let step = match msg.outbound {
            Some(plan) => CallMachine::create_outbound(msg.call, plan, self.timeouts, now_ms()),
            None => CallMachine::create(msg.call, msg.caller_call_sid, self.timeouts, now_ms()),
        };
        let deps = self.deps.clone();
        let prepared = commit_of(&step, None).map_err(CallError::from);
        Box::pin(
            async move {
                let commit = prepared?;
                deps.store.commit_call(commit).await?;
                Ok(step)
            }
            .into_actor(self)
            .map(|res: Result<_, CallError>, act, ctx| {
                let step = res?;
                let machine = Arc::new(step.machine.clone());
                let id = machine.call.call_id.clone();
                let deps = act.deps.clone();
                let me = ctx.address();
                let addr = act
                    .pool
                    .start(&id, move |_| CallActor::created(step, deps, me));
                act.actors.insert(id, addr);
                Ok(machine)
            }),
        )
    }
}

impl Handler<Lookup> for Registry {
    type Result = ResponseActFuture<Self, Result<Found, CallError>>;

    fn handle(&mut self, msg: Lookup, _ctx: &mut Context<Self>) -> Self::Result {
        if let Some(addr) = self.actors.get(&msg.call_id) {
            if addr.connected() {
                return Box::pin(fut::ready(Ok(Found::Live(addr.clone()))));
            }
        }
        let store = self.deps.store.clone();
        let id = msg.call_id.clone();
        Box::pin(
            async move { store.get_call(&id).await }
                .into_actor(self)
                .map(move |res, act, ctx| {
                    let stored = res?.ok_or_else(|| CallError::NotFound(msg.call_id.clone()))?;
                    if stored.call.status.is_terminal() {
                        let m = decode(&stored).map_err(|e| {
                            CallError::from(crate::store::StoreError::backend("decoding call", e))
                        })?;
                        return Ok(Found::Ended(Arc::new(m)));
                    }
                    // Another lookup may have started it meanwhile.
                    if let Some(addr) = act.actors.get(&msg.call_id) {
                        if addr.connected() {
                            return Ok(Found::Live(addr.clone()));
                        }
                    }
                    Ok(Found::Live(act.start_actor(&msg.call_id, ctx)))
                }),
        )
    }
}

impl Handler<ActorDied> for Registry {
    type Result = ();
    fn handle(&mut self, msg: ActorDied, ctx: &mut Context<Self>) {
        tracing::warn!(call_id = %msg.call_id, "call actor died; restarting it from the store");
        self.actors.remove(&msg.call_id);
        self.start_actor(&msg.call_id, ctx);
    }
}

impl Handler<Recover> for Registry {
    type Result = ResponseActFuture<Self, Result<usize, CallError>>;

    fn handle(&mut self, _: Recover, _ctx: &mut Context<Self>) -> Self::Result {
        let store = self.deps.store.clone();
        Box::pin(
            async move {
                let agents = store.list_agents().await?;
                let calls = store.list_unfinished_calls().await?;
                Ok::<_, CallError>((agents, calls))
            }
            .into_actor(self)
            .map(|res, act, ctx| {
                let (agents, calls) = res?;
                for a in agents {
                    act.directory.insert(a.agent_id.clone(), a);
                }
                let mut engaged_agents = HashSet::new();
                for stored in calls.iter() {
                    match decode(stored) {
                        Ok(m) => {
                            engaged_agents.extend(m.agents_with_sessions());
                            // Read once for all calls: the actor starts from it.
                            act.start_recovered(m, stored.version, ctx);
                        }
                        // Unreadable here: the actor reads it itself (and reports why).
                        Err(_) => {
                            act.start_actor(&stored.call.call_id, ctx);
                        }
                    }
                }
                // Agents engaged before the restart have the grace period to reconnect.
                for agent_id in engaged_agents {
                    ctx.notify_later(GraceOver { agent_id }, act.disconnect_grace);
                }
                Ok(calls.len())
            }),
        )
    }
}

impl Handler<AgentConnected> for Registry {
    type Result = ();
    fn handle(&mut self, msg: AgentConnected, ctx: &mut Context<Self>) {
        *self.sessions.entry(msg.agent_id.clone()).or_default() += 1;
        if !self.directory.contains_key(&msg.agent_id) {
            let store = self.deps.store.clone();
            let id = msg.agent_id.clone();
            async move { store.get_agent(&id).await }
                .into_actor(self)
                .map(|res, act, ctx| {
                    if let Ok(Some(agent)) = res {
                        let id = agent.agent_id.clone();
                        act.directory.insert(id.clone(), agent);
                        act.refresh_presence(&id);
                        act.dispatch(ctx);
                    }
                })
                .spawn(ctx);
        }
        self.refresh_presence(&msg.agent_id);
        self.dispatch(ctx);
    }
}

impl Handler<AgentDisconnected> for Registry {
    type Result = ();
    fn handle(&mut self, msg: AgentDisconnected, ctx: &mut Context<Self>) {
        let left = {
            let n = self.sessions.entry(msg.agent_id.clone()).or_default();
            *n = n.saturating_sub(1);
            *n
        };
        if left == 0 {
            self.sessions.remove(&msg.agent_id);
            self.refresh_presence(&msg.agent_id);
            ctx.notify_later(
                GraceOver {
                    agent_id: msg.agent_id,
                },
                self.disconnect_grace,
            );
        }
    }
}

impl Handler<GraceOver> for Registry {
    type Result = ();
    fn handle(&mut self, msg: GraceOver, _ctx: &mut Context<Self>) {
        if self.sessions.get(&msg.agent_id).copied().unwrap_or(0) > 0 {
            return; // came back
        }
        self.agent_gone(&msg.agent_id);
    }
}

impl Handler<AgentUpserted> for Registry {
    type Result = ();
    fn handle(&mut self, msg: AgentUpserted, ctx: &mut Context<Self>) {
        let id = msg.agent.agent_id.clone();
        let deactivated = !msg.agent.active;
        self.directory.insert(id.clone(), msg.agent);
        if deactivated {
            // An agent deactivated goes away at once, as one whose grace period ran out:
            // a call offered to it is offered again, a transfer ringing it fails.
            self.agent_gone(&id);
        }
        self.refresh_presence(&id);
        self.dispatch(ctx);
    }
}

impl Handler<PresenceList> for Registry {
    type Result = MessageResult<PresenceList>;
    fn handle(&mut self, _: PresenceList, _: &mut Context<Self>) -> Self::Result {
        let all = self
            .directory
            .keys()
            .map(|a| (a.clone(), self.presence_of(a)))
            .collect();
        MessageResult(all)
    }
}

impl Handler<CallsOfAgent> for Registry {
    type Result = MessageResult<CallsOfAgent>;
    fn handle(&mut self, msg: CallsOfAgent, _: &mut Context<Self>) -> Self::Result {
        MessageResult(
            self.engaged
                .get(&msg.agent_id)
                .map(|c| c.iter().cloned().collect())
                .unwrap_or_default(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::actor::{Crash, Restarts};
    use crate::call::machine::{Actor as By, Command, Input};
    use crate::hub::Hub;
    use crate::media::livekit::LiveKit;
    use crate::media::livekit::LiveKitConfig;
    use crate::secret::Secret;
    use crate::store::embedded::EmbeddedStore;

    fn deps(dir: &std::path::Path) -> CallDeps {
        CallDeps {
            store: Arc::new(EmbeddedStore::open(dir).unwrap()),
            hub: Hub::new(16),
            // Nothing listens there: room effects fail quietly, as they may in production.
            livekit: LiveKit::new(&LiveKitConfig {
                url: "ws://127.0.0.1:9".into(),
                api_url: "http://127.0.0.1:9".into(),
                api_key: "k".into(),
                api_secret: Secret::new("s"),
            }),
            twilio: None,
            recording: None,
            end_of_call: None,
        }
    }

    fn new_call(id: &str) -> Call {
        Call {
            call_id: id.into(),
            caller_id: "caller-1".into(),
            caller_name: "Ann".into(),
            reason: String::new(),
            agent_a_id: None,
            agent_b_id: None,
            owner_id: None,
            offered_to: None,
            requested_agent_id: None,
            status: CallStatus::Queued,
            main_room: format!("{id}--main"),
            hold_room: format!("{id}--hold"),
            open_transfer_id: None,
            last_summary_id: None,
            end_reason: None,
            created_at: chrono::Utc::now(),
            end_at: None,
            metadata: serde_json::Value::Null,
            channel: Default::default(),
            caller_number: None,
            org_id: None,
            direction: Default::default(),
            assistant_id: None,
            outbound: None,
            recording: None,
        }
    }

    /// A registry on a fresh store in `dir`, with one new call `id`.
    async fn registry_with_call(dir: &std::path::Path, id: &str) -> Addr<Registry> {
        let registry =
            Registry::new(deps(dir), Timeouts::default(), Duration::from_secs(5)).start();
        registry
            .send(CreateCall {
                call: new_call(id),
                caller_call_sid: None,
                outbound: None,
            })
            .await
            .unwrap()
            .unwrap();
        registry
    }

    /// Whether the registry answers `id` from the store (it forgot the call's actor).
    async fn answered_as_ended(registry: &Addr<Registry>, id: &str) -> bool {
        matches!(
            registry.send(Lookup { call_id: id.into() }).await.unwrap(),
            Ok(Found::Ended(_))
        )
    }

    async fn live(registry: &Addr<Registry>, id: &str) -> Addr<CallActor> {
        match registry.send(Lookup { call_id: id.into() }).await.unwrap() {
            Ok(Found::Live(addr)) => addr,
            _ => panic!("call {id} is not live"),
        }
    }

    #[actix_rt::test]
    async fn a_call_actor_that_panics_is_restarted_from_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let registry = registry_with_call(dir.path(), "call-p").await;
        let addr = live(&registry, "call-p").await;
        addr.do_send(Crash);
        // The actor runs on an arbiter of the pool (another thread): wait for its end.
        for _ in 0..200 {
            if !addr.connected() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!addr.connected(), "the panic killed the actor");
        let hangup = Execute {
            input: Input::Command(By::Caller, Command::Hangup),
            idempotency_key: None,
        };
        assert!(addr.send(hangup).await.is_err(), "its mailbox is closed");
        // The next lookup notices the dead address and restarts the call from the store,
        // with its state intact (a failed send is also reported as ActorDied).
        let again = live(&registry, "call-p").await;
        assert!(again.connected());
        let m = again
            .send(Execute {
                input: Input::Command(By::Caller, Command::Hangup),
                idempotency_key: None,
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.call.status, CallStatus::Ended);
        assert_eq!(m.call.caller_name, "Ann");
        assert_eq!(m.seq, 2, "call.created was 1; nothing was lost or repeated");
    }

    #[actix_rt::test]
    async fn recovery_restarts_every_unfinished_call() {
        let dir = tempfile::tempdir().unwrap();
        let shared = deps(dir.path());
        {
            let registry =
                Registry::new(shared.clone(), Timeouts::default(), Duration::from_secs(5)).start();
            for id in ["call-1", "call-2", "call-3"] {
                registry
                    .send(CreateCall {
                        call: new_call(id),
                        caller_call_sid: None,
                        outbound: None,
                    })
                    .await
                    .unwrap()
                    .unwrap();
            }
            let a = live(&registry, "call-3").await;
            a.send(Execute {
                input: Input::Command(By::Caller, Command::Hangup),
                idempotency_key: None,
            })
            .await
            .unwrap()
            .unwrap();
        }
        // A new registry over the same store, as after a restart (the real binary is
        // killed and restarted over the same file in tests/it/recovery.rs).
        let registry = Registry::new(shared, Timeouts::default(), Duration::from_secs(5)).start();
        let n = registry.send(Recover).await.unwrap().unwrap();
        assert_eq!(n, 2, "the ended call is not recovered");
        assert!(matches!(
            registry
                .send(Lookup {
                    call_id: "call-3".into()
                })
                .await
                .unwrap(),
            Ok(Found::Ended(_))
        ));
    }

    #[actix_rt::test]
    async fn an_ended_calls_actor_stops_for_good_and_is_never_restarted() {
        let dir = tempfile::tempdir().unwrap();
        let registry = registry_with_call(dir.path(), "call-e").await;
        let addr = live(&registry, "call-e").await;
        let m = addr
            .send(Execute {
                input: Input::Command(By::Caller, Command::Hangup),
                idempotency_key: None,
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.call.status, CallStatus::Ended);
        // The registry forgets the ended call: lookups read it from the store.
        for _ in 0..200 {
            if answered_as_ended(&registry, "call-e").await {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(answered_as_ended(&registry, "call-e").await);
        // While an address is left (here the test's, as the registry's was when the call
        // ended) the actor's supervisor did not restart it and reload it from the store.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(addr.send(Restarts).await.unwrap(), 0, "restarted");
        // Once its last address is gone, it stops for good.
        let weak = addr.downgrade();
        drop(addr);
        for _ in 0..200 {
            if weak.upgrade().is_none_or(|a| !a.connected()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            weak.upgrade().is_none_or(|a| !a.connected()),
            "still running"
        );
    }
}
