//! Event fan-out to WebSocket sessions, by agent and by call, with bounded outboxes.
//!
//! Every WebSocket session [registers](Hub::register) with the [`Hub`] under its
//! [`PartyRef`] and receives an [`Outbox`]: the receiving end of a bounded channel of
//! ready-to-send [`OutFrame`]s. Publishing serializes an event once into a shared
//! `Arc<str>` and hands a reference-counted frame to every session that may see it with a
//! non-blocking `try_send`, so a publish never waits on a client.
//!
//! A session whose outbox is full when a frame arrives is disconnected: the hub forgets it,
//! closes its channel and tells its [`Outbox`] why ([`Disconnect::Overflow`]), so the
//! session task can close the socket with a policy-violation close ("outbox overflow"). A
//! slow client therefore costs at most one outbox of memory and never stalls anyone else;
//! it reconnects with `?since=` and replays what it missed.
//!
//! Routing:
//! - [`Hub::publish`] sends a call's [`Event`] to the sessions of that call's caller when
//!   `audience.caller` is set, and to every session of each agent in `audience.agents`.
//! - [`Hub::publish_to_agents`] and [`Hub::publish_to_all_agents`] send events of no call
//!   (`agent.presence`, with `callId` null and `seq` 0).
//!
//! - [`Hub::monitor`] taps every event (call events and agent events) for supervisors (the
//!   wallboard's stream), with join tokens removed; a lagging monitor misses frames and is
//!   told so by its receiver, never slowing anyone down.
//!
//! The hub is a cheap [`Clone`] (an `Arc` inside) guarded by one std mutex that is held only
//! for map look-ups and `try_send`s, never across an `.await`.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use crate::model::{Event, PartyRef, WireEvent};

/// Identifies one registered WebSocket session (a party may have several).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(u64);

impl SessionId {
    /// The raw number, for logs.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ws-{}", self.0)
    }
}

/// A ready-to-send text frame: one serialized [`WireEvent`], shared by every session that
/// receives it.
#[derive(Debug, PartialEq, Eq)]
pub struct OutFrame {
    call_id: Option<String>,
    seq: u64,
    text: Arc<str>,
    published: std::time::Instant,
}

impl OutFrame {
    fn new(call_id: Option<String>, seq: u64, text: impl Into<Arc<str>>) -> Self {
        OutFrame {
            call_id,
            seq,
            text: text.into(),
            published: std::time::Instant::now(),
        }
    }

    /// When the hub published the frame (for the push latency metric).
    pub fn published(&self) -> std::time::Instant {
        self.published
    }

    /// The call the event belongs to, or `None` for agent-level events.
    pub fn call_id(&self) -> Option<&str> {
        self.call_id.as_deref()
    }

    /// The event's per-call sequence number (0 for agent-level events).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The JSON text sent to the client (`{seq, callId, type, at, data}`).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The shared JSON text.
    pub fn shared_text(&self) -> Arc<str> {
        Arc::clone(&self.text)
    }
}

/// Why the hub let go of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disconnect {
    /// The session's outbox was full when a frame arrived; the frame was dropped and the
    /// session removed. The socket should be closed with a policy-violation close.
    Overflow,
    /// The session was [unregistered](Hub::unregister) (or the hub is gone).
    Unregistered,
}

/// The receiving end of a session's bounded outbox.
///
/// Dropping it unregisters the session, so a session task that ends in any way (even by
/// panicking) never leaves a stale registration behind.
#[derive(Debug)]
pub struct Outbox {
    id: SessionId,
    rx: mpsc::Receiver<Arc<OutFrame>>,
    overflowed: watch::Receiver<bool>,
    hub: Weak<Inner>,
}

impl Outbox {
    /// The session this outbox belongs to.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// The next frame, or why the hub let go of the session. Once the hub has let go, this
    /// returns the reason at once, without draining the frames still queued. Cancel-safe.
    pub async fn recv(&mut self) -> Result<Arc<OutFrame>, Disconnect> {
        if *self.overflowed.borrow() {
            return Err(Disconnect::Overflow);
        }
        tokio::select! {
            biased;
            reason = Self::wait_disconnect(&mut self.overflowed) => Err(reason),
            frame = self.rx.recv() => match frame {
                Some(frame) => Ok(frame),
                None if *self.overflowed.borrow() => Err(Disconnect::Overflow),
                None => Err(Disconnect::Unregistered),
            },
        }
    }

    /// Resolves when the hub lets go of the session (overflow or unregister), without
    /// consuming frames; for racing a slow socket write. Cancel-safe.
    pub async fn disconnected(&mut self) -> Disconnect {
        Self::wait_disconnect(&mut self.overflowed).await
    }

    /// Whether the hub dropped the session because its outbox overflowed.
    pub fn overflowed(&self) -> bool {
        *self.overflowed.borrow()
    }

    async fn wait_disconnect(flag: &mut watch::Receiver<bool>) -> Disconnect {
        let res = flag.wait_for(|overflowed| *overflowed).await.is_ok();
        if res || *flag.borrow() {
            Disconnect::Overflow
        } else {
            Disconnect::Unregistered
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        if let Some(inner) = self.hub.upgrade() {
            Hub { inner }.unregister(self.id);
        }
    }
}

/// Counters of the hub since it was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HubStats {
    /// Sessions registered now.
    pub sessions: usize,
    /// Frames queued to a session's outbox.
    pub delivered: u64,
    /// Frames not queued because the outbox was full or closed.
    pub dropped: u64,
    /// Sessions disconnected because their outbox was full.
    pub overflow_disconnects: u64,
}

/// Fans events out to the WebSocket sessions of agents and callers. Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("outbox_capacity", &self.inner.capacity)
            .field("stats", &self.stats())
            .finish()
    }
}

#[derive(Debug)]
struct Inner {
    capacity: usize,
    next_id: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
    overflow_disconnects: AtomicU64,
    maps: Mutex<Maps>,
    monitor: tokio::sync::broadcast::Sender<Arc<str>>,
}

/// How many frames a monitor may lag behind before it misses some.
const MONITOR_CAPACITY: usize = 1024;

#[derive(Debug, Default)]
struct Maps {
    /// Sessions of callers, by call id.
    callers: HashMap<String, Vec<Slot>>,
    /// Sessions of agents, by agent id.
    agents: HashMap<String, Vec<Slot>>,
    /// Every session's party, for unregistering.
    parties: HashMap<SessionId, PartyRef>,
}

#[derive(Debug)]
struct Slot {
    id: SessionId,
    tx: mpsc::Sender<Arc<OutFrame>>,
    overflowed: watch::Sender<bool>,
}

/// What happened to one `try_send`.
enum Outcome {
    Delivered,
    Overflow,
    Closed,
}

impl Slot {
    fn offer(&self, frame: &Arc<OutFrame>) -> Outcome {
        match self.tx.try_send(Arc::clone(frame)) {
            Ok(()) => Outcome::Delivered,
            Err(mpsc::error::TrySendError::Full(_)) => Outcome::Overflow,
            Err(mpsc::error::TrySendError::Closed(_)) => Outcome::Closed,
        }
    }
}

/// The wire shape of an event, borrowed (serializes exactly like [`WireEvent`]).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireRef<'a> {
    seq: u64,
    call_id: Option<&'a str>,
    #[serde(rename = "type")]
    kind: &'a str,
    at: &'a DateTime<Utc>,
    data: &'a Value,
}

impl Hub {
    /// A hub whose sessions each buffer at most `outbox_capacity` frames (at least 1).
    pub fn new(outbox_capacity: usize) -> Self {
        Hub {
            inner: Arc::new(Inner {
                capacity: outbox_capacity.max(1),
                next_id: AtomicU64::new(1),
                delivered: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                overflow_disconnects: AtomicU64::new(0),
                maps: Mutex::new(Maps::default()),
                monitor: tokio::sync::broadcast::channel(MONITOR_CAPACITY).0,
            }),
        }
    }

    /// The capacity of every outbox.
    pub fn outbox_capacity(&self) -> usize {
        self.inner.capacity
    }

    /// Registers a session of `party`; frames for it arrive on the returned [`Outbox`].
    pub fn register(&self, party: PartyRef) -> (SessionId, Outbox) {
        let id = SessionId(self.inner.next_id.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = mpsc::channel(self.inner.capacity);
        let (flag_tx, flag_rx) = watch::channel(false);
        let slot = Slot {
            id,
            tx,
            overflowed: flag_tx,
        };
        {
            let mut maps = self.lock();
            match &party {
                PartyRef::Caller { call_id } => {
                    maps.callers.entry(call_id.clone()).or_default().push(slot)
                }
                PartyRef::Agent { agent_id } => {
                    maps.agents.entry(agent_id.clone()).or_default().push(slot)
                }
            }
            maps.parties.insert(id, party);
        }
        let outbox = Outbox {
            id,
            rx,
            overflowed: flag_rx,
            hub: Arc::downgrade(&self.inner),
        };
        (id, outbox)
    }

    /// Forgets a session and closes its outbox. Unknown or already removed ids are ignored.
    pub fn unregister(&self, id: SessionId) {
        let removed = {
            let mut maps = self.lock();
            maps.remove(id)
        };
        // Dropped outside the lock: closes the channel and wakes the session.
        drop(removed);
    }

    /// Closes every session of an agent (its outboxes report [`Disconnect::Unregistered`]):
    /// for an agent just deactivated. Returns how many were open.
    pub fn disconnect_agent(&self, agent_id: &str) -> usize {
        let removed: Vec<_> = {
            let mut maps = self.lock();
            let ids: Vec<SessionId> = maps
                .agents
                .get(agent_id)
                .map(|slots| slots.iter().map(|s| s.id).collect())
                .unwrap_or_default();
            ids.into_iter().filter_map(|id| maps.remove(id)).collect()
        };
        // Dropped outside the lock: closes the channels and wakes the sessions.
        removed.len()
    }

    /// Sends a call's event to the sessions in its audience: the call's caller if
    /// `audience.caller`, and each agent of `audience.agents` (each agent once).
    pub fn publish(&self, event: &Event) {
        crate::metrics::metrics().observe_event(&event.kind, &event.data, event.at);
        let wire = WireRef {
            seq: event.seq,
            call_id: Some(&event.call_id),
            kind: &event.kind,
            at: &event.at,
            data: &event.data,
        };
        let Some(frame) = Self::frame(Some(event.call_id.clone()), event.seq, &wire) else {
            return;
        };
        if self.inner.monitor.receiver_count() > 0 {
            if event.data.get("token").is_some() {
                let mut data = event.data.clone();
                if let Some(d) = data.as_object_mut() {
                    d.remove("token");
                }
                if let Ok(text) = serde_json::to_string(&WireRef {
                    data: &data,
                    ..wire
                }) {
                    let _ = self.inner.monitor.send(text.into());
                }
            } else {
                let _ = self.inner.monitor.send(frame.shared_text());
            }
        }
        let audience = &event.audience;
        self.deliver(&frame, |maps, out| {
            if audience.caller {
                if let Some(slots) = maps.callers.get(&event.call_id) {
                    out.extend(slots.iter().map(|s| s.id));
                }
            }
            for (i, agent) in audience.agents.iter().enumerate() {
                if audience.agents[..i].contains(agent) {
                    continue;
                }
                if let Some(slots) = maps.agents.get(agent) {
                    out.extend(slots.iter().map(|s| s.id));
                }
            }
        });
    }

    /// Sends an event of no call (e.g. `agent.presence`) to every session of the given agents.
    pub fn publish_to_agents(&self, agent_ids: &[String], event: &WireEvent) {
        let Some(frame) = Self::wire_frame(event) else {
            return;
        };
        let _ = self.inner.monitor.send(frame.shared_text());
        self.deliver(&frame, |maps, out| {
            for (i, agent) in agent_ids.iter().enumerate() {
                if agent_ids[..i].contains(agent) {
                    continue;
                }
                if let Some(slots) = maps.agents.get(agent) {
                    out.extend(slots.iter().map(|s| s.id));
                }
            }
        });
    }

    /// Sends an event of no call to every session of every connected agent.
    pub fn publish_to_all_agents(&self, event: &WireEvent) {
        let Some(frame) = Self::wire_frame(event) else {
            return;
        };
        let _ = self.inner.monitor.send(frame.shared_text());
        self.deliver(&frame, |maps, out| {
            for slots in maps.agents.values() {
                out.extend(slots.iter().map(|s| s.id));
            }
        });
    }

    /// A tap on every event published from now on (call events without join tokens, and
    /// agent events), as the JSON text sessions get: for supervisors. A receiver that falls
    /// more than 1024 frames behind gets `Lagged` and should reload its snapshot.
    pub fn monitor(&self) -> tokio::sync::broadcast::Receiver<Arc<str>> {
        self.inner.monitor.subscribe()
    }

    /// How many sessions the agent has open.
    pub fn agent_session_count(&self, agent_id: &str) -> usize {
        self.lock().agents.get(agent_id).map_or(0, Vec::len)
    }

    /// How many sessions the caller of a call has open.
    pub fn caller_session_count(&self, call_id: &str) -> usize {
        self.lock().callers.get(call_id).map_or(0, Vec::len)
    }

    /// The agents with at least one session, sorted.
    pub fn connected_agents(&self) -> Vec<String> {
        let mut agents: Vec<String> = self
            .lock()
            .agents
            .iter()
            .filter(|(_, slots)| !slots.is_empty())
            .map(|(agent, _)| agent.clone())
            .collect();
        agents.sort();
        agents
    }

    /// The counters since the hub was created.
    pub fn stats(&self) -> HubStats {
        let sessions = self.lock().parties.len();
        HubStats {
            sessions,
            delivered: self.inner.delivered.load(Ordering::Relaxed),
            dropped: self.inner.dropped.load(Ordering::Relaxed),
            overflow_disconnects: self.inner.overflow_disconnects.load(Ordering::Relaxed),
        }
    }

    /// Open sessions of agents and of callers, for the metrics.
    pub fn session_counts(&self) -> (usize, usize) {
        let maps = self.lock();
        (
            maps.agents.values().map(Vec::len).sum(),
            maps.callers.values().map(Vec::len).sum(),
        )
    }

    fn lock(&self) -> MutexGuard<'_, Maps> {
        // Nothing under this lock can leave the maps half-updated, so a poisoned lock is
        // still consistent.
        self.inner
            .maps
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn wire_frame(event: &WireEvent) -> Option<Arc<OutFrame>> {
        Self::frame(event.call_id.clone(), event.seq, event)
    }

    /// Serializes once; `None` (logged) if the event cannot be serialized.
    fn frame(call_id: Option<String>, seq: u64, wire: &impl Serialize) -> Option<Arc<OutFrame>> {
        match serde_json::to_string(wire) {
            Ok(text) => Some(Arc::new(OutFrame::new(call_id, seq, text))),
            Err(err) => {
                tracing::error!(error = %err, seq, "could not serialize an event; not published");
                None
            }
        }
    }

    /// Offers `frame` to the sessions `pick` selects, then removes the sessions that
    /// overflowed or are gone.
    fn deliver(&self, frame: &Arc<OutFrame>, pick: impl FnOnce(&Maps, &mut Vec<SessionId>)) {
        let mut delivered = 0u64;
        let mut dropped = 0u64;
        let mut overflowed = Vec::new();
        let mut removed = Vec::new();
        {
            let mut maps = self.lock();
            let mut targets = Vec::new();
            pick(&maps, &mut targets);
            if targets.is_empty() {
                return;
            }
            let mut failed = Vec::new();
            for id in &targets {
                let Some(slot) = maps.slot(*id) else { continue };
                match slot.offer(frame) {
                    Outcome::Delivered => delivered += 1,
                    Outcome::Overflow => {
                        dropped += 1;
                        overflowed.push(*id);
                        failed.push(*id);
                    }
                    Outcome::Closed => {
                        dropped += 1;
                        failed.push(*id);
                    }
                }
            }
            for id in failed {
                if let Some((party, slot)) = maps.remove(id) {
                    if overflowed.contains(&id) {
                        slot.overflowed.send_replace(true);
                    }
                    removed.push((party, slot));
                }
            }
        }
        let inner = &self.inner;
        inner.delivered.fetch_add(delivered, Ordering::Relaxed);
        inner.dropped.fetch_add(dropped, Ordering::Relaxed);
        inner
            .overflow_disconnects
            .fetch_add(overflowed.len() as u64, Ordering::Relaxed);
        for (party, slot) in &removed {
            if overflowed.contains(&slot.id) {
                tracing::warn!(session = %slot.id, ?party, "outbox overflow; session disconnected");
            } else {
                tracing::debug!(session = %slot.id, ?party, "outbox closed; session removed");
            }
        }
        // `removed` is dropped here, outside the lock, closing those channels.
    }
}

impl Maps {
    fn slots_of(&self, party: &PartyRef) -> Option<&Vec<Slot>> {
        match party {
            PartyRef::Caller { call_id } => self.callers.get(call_id),
            PartyRef::Agent { agent_id } => self.agents.get(agent_id),
        }
    }

    fn slot(&self, id: SessionId) -> Option<&Slot> {
        let party = self.parties.get(&id)?;
        self.slots_of(party)?.iter().find(|s| s.id == id)
    }

    /// Removes a session from every map; returns it so the caller can drop it unlocked.
    fn remove(&mut self, id: SessionId) -> Option<(PartyRef, Slot)> {
        let party = self.parties.remove(&id)?;
        let (map, key) = match &party {
            PartyRef::Caller { call_id } => (&mut self.callers, call_id),
            PartyRef::Agent { agent_id } => (&mut self.agents, agent_id),
        };
        let slots = map.get_mut(key)?;
        let pos = slots.iter().position(|s| s.id == id)?;
        let slot = slots.swap_remove(pos);
        if slots.is_empty() {
            map.remove(key);
        }
        Some((party, slot))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Audience;

    fn agent(id: &str) -> PartyRef {
        PartyRef::Agent {
            agent_id: id.into(),
        }
    }

    fn caller(call: &str) -> PartyRef {
        PartyRef::Caller {
            call_id: call.into(),
        }
    }

    fn event(call: &str, seq: u64, caller: bool, agents: &[&str]) -> Event {
        Event {
            seq,
            call_id: call.into(),
            kind: "test.event".into(),
            at: Utc::now(),
            data: serde_json::json!({ "n": seq }),
            audience: Audience {
                caller,
                agents: agents.iter().map(|a| a.to_string()).collect(),
            },
        }
    }

    /// Frames ready now, without waiting.
    fn drain(outbox: &mut Outbox) -> Vec<Arc<OutFrame>> {
        let mut frames = Vec::new();
        while let Ok(frame) = outbox.rx.try_recv() {
            frames.push(frame);
        }
        frames
    }

    fn seqs(frames: &[Arc<OutFrame>]) -> Vec<u64> {
        frames.iter().map(|f| f.seq()).collect()
    }

    #[test]
    fn publish_routes_by_audience() {
        let hub = Hub::new(16);
        let (_, mut caller1) = hub.register(caller("call-1"));
        let (_, mut caller2) = hub.register(caller("call-2"));
        let (_, mut a) = hub.register(agent("a"));
        let (_, mut a_again) = hub.register(agent("a"));
        let (_, mut b) = hub.register(agent("b"));

        hub.publish(&event("call-1", 1, true, &["a"]));
        hub.publish(&event("call-1", 2, false, &["a", "b", "a"]));
        hub.publish(&event("call-2", 1, false, &["b"]));

        assert_eq!(seqs(&drain(&mut caller1)), vec![1]);
        assert_eq!(seqs(&drain(&mut caller2)), Vec::<u64>::new());
        assert_eq!(seqs(&drain(&mut a)), vec![1, 2]);
        assert_eq!(seqs(&drain(&mut a_again)), vec![1, 2]);
        let b_frames = drain(&mut b);
        assert_eq!(seqs(&b_frames), vec![2, 1]);
        assert_eq!(b_frames[1].call_id(), Some("call-2"));
        assert_eq!(
            hub.stats(),
            HubStats {
                sessions: 5,
                delivered: 7,
                dropped: 0,
                overflow_disconnects: 0
            }
        );
    }

    #[test]
    fn frames_are_serialized_once_as_wire_events() {
        let hub = Hub::new(4);
        let (_, mut a) = hub.register(agent("a"));
        let (_, mut b) = hub.register(agent("b"));
        let ev = event("call-1", 7, false, &["a", "b"]);
        hub.publish(&ev);
        let fa = drain(&mut a).pop().unwrap();
        let fb = drain(&mut b).pop().unwrap();
        assert!(Arc::ptr_eq(&fa, &fb), "one frame shared by all sessions");
        assert_eq!(
            fa.text(),
            serde_json::to_string(&WireEvent::from(&ev)).unwrap()
        );
        let parsed: WireEvent = serde_json::from_str(fa.text()).unwrap();
        assert_eq!(parsed, WireEvent::from(&ev));
        assert!(!fa.text().contains("audience"));
    }

    #[test]
    fn agent_level_events_reach_the_named_or_all_agents() {
        let hub = Hub::new(4);
        let (_, mut a) = hub.register(agent("a"));
        let (_, mut b) = hub.register(agent("b"));
        let (_, mut c) = hub.register(caller("call-1"));
        let presence = WireEvent {
            seq: 0,
            call_id: None,
            kind: "agent.presence".into(),
            at: Utc::now(),
            data: serde_json::json!({"agentId": "a", "presence": "available"}),
        };
        hub.publish_to_agents(&["b".to_string(), "nobody".to_string()], &presence);
        assert_eq!(drain(&mut a).len(), 0);
        let got = drain(&mut b);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].call_id(), None);
        assert!(got[0].text().contains("\"callId\":null"));
        hub.publish_to_all_agents(&presence);
        assert_eq!(drain(&mut a).len(), 1);
        assert_eq!(drain(&mut b).len(), 1);
        assert_eq!(drain(&mut c).len(), 0, "callers get no agent-level events");
    }

    #[tokio::test]
    async fn overflow_disconnects_only_the_slow_session() {
        let hub = Hub::new(2);
        let (slow_id, mut slow) = hub.register(agent("slow"));
        let (_, mut fast) = hub.register(agent("fast"));
        let (_, mut other_fast) = hub.register(agent("slow"));

        for seq in 1..=5 {
            hub.publish(&event("call-1", seq, false, &["slow", "fast"]));
            // The fast sessions keep up; `slow` never reads.
            assert_eq!(seqs(&drain(&mut fast)), vec![seq]);
            assert_eq!(seqs(&drain(&mut other_fast)), vec![seq]);
        }

        assert!(slow.overflowed());
        assert_eq!(slow.recv().await, Err(Disconnect::Overflow));
        assert_eq!(slow.disconnected().await, Disconnect::Overflow);
        assert_eq!(
            hub.agent_session_count("slow"),
            1,
            "only the slow session went"
        );
        let stats = hub.stats();
        assert_eq!(stats.sessions, 2);
        assert_eq!(stats.dropped, 1);
        assert_eq!(stats.overflow_disconnects, 1);
        assert_eq!(stats.delivered, 2 + 5 + 5);
        // Unregistering a session the hub already dropped is harmless.
        hub.unregister(slow_id);
        hub.publish(&event("call-1", 6, false, &["slow", "fast"]));
        assert_eq!(seqs(&drain(&mut fast)), vec![6]);
        assert_eq!(seqs(&drain(&mut other_fast)), vec![6]);
    }

    #[tokio::test]
    async fn unregister_closes_the_outbox_and_stops_delivery() {
        let hub = Hub::new(4);
        let (id, mut a) = hub.register(agent("a"));
        let (_, mut a2) = hub.register(agent("a"));
        assert_eq!(hub.agent_session_count("a"), 2);
        assert_eq!(hub.connected_agents(), vec!["a".to_string()]);
        hub.publish(&event("call-1", 1, false, &["a"]));
        hub.unregister(id);
        assert_eq!(hub.agent_session_count("a"), 1);
        // The outbox reports the unregister (before any frames still queued).
        assert_eq!(a.recv().await, Err(Disconnect::Unregistered));
        assert_eq!(a.disconnected().await, Disconnect::Unregistered);
        hub.publish(&event("call-1", 2, false, &["a"]));
        assert_eq!(seqs(&drain(&mut a2)), vec![1, 2]);
        drop(a2);
        assert_eq!(
            hub.agent_session_count("a"),
            0,
            "dropping the outbox unregisters"
        );
        assert!(hub.connected_agents().is_empty());
        assert_eq!(hub.stats().sessions, 0);
    }

    #[test]
    fn the_monitor_sees_every_event_without_join_tokens() {
        let hub = Hub::new(4);
        hub.publish(&event("call-0", 1, true, &[])); // before anyone listens: not kept
        let mut monitor = hub.monitor();
        let (_, mut a) = hub.register(agent("a"));
        let mut moved = event("call-1", 2, false, &["a"]);
        moved.kind = "participant.move".into();
        moved.data = serde_json::json!({"room": "r", "token": "secret-jwt", "url": "ws://lk"});
        hub.publish(&moved);
        hub.publish(&event("call-2", 3, true, &[])); // no session at all: still monitored
        let presence = WireEvent {
            seq: 0,
            call_id: None,
            kind: "agent.presence".into(),
            at: Utc::now(),
            data: serde_json::json!({"agentId": "a", "presence": "away"}),
        };
        hub.publish_to_all_agents(&presence);
        let got: Vec<serde_json::Value> = std::iter::from_fn(|| monitor.try_recv().ok())
            .map(|t| serde_json::from_str(&t).unwrap())
            .collect();
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0]["type"], "participant.move");
        assert_eq!(
            got[0]["data"],
            serde_json::json!({"room": "r", "url": "ws://lk"})
        );
        assert_eq!(got[1]["callId"], "call-2");
        assert_eq!(got[2]["type"], "agent.presence");
        // The party itself still gets its token.
        assert!(drain(&mut a)[0].text().contains("secret-jwt"));
    }

    #[test]
    fn capacity_is_at_least_one() {
        assert_eq!(Hub::new(0).outbox_capacity(), 1);
    }
}
