//! Table and property tests of the call machine.
//!
//! The table tests walk every flow of the issue (offer, accept, hold, hang-up, warm, cold and
//! conference transfers) and every failure path of a transfer, asserting where each party
//! ends up, the call and transfer records, the timers, the effects, and the events in order
//! with their audiences. Every step taken through [`apply`] is also checked for consecutive
//! event numbering and for the caller's privacy (no `transfer.offered`, no summary, no
//! consult room).
//!
//! The property tests drive the machine with random sequences of commands by random actors
//! and random, duplicated, stale or early observations, and check the machine's invariants
//! after every step (placements per status, timers, one open transfer, terminal transfers
//! frozen, moves/removals/`participant.released`/`CloseRoom`/`RequestAgent` matching the
//! state change, audiences limited to the agents involved, repeated commands answering the
//! same), then feed it every armed timer and check that no transfer stays open.
//!
//! Tests named `bug_*` document defects of the machine found while writing these tests; they
//! fail until the machine is fixed (see each test's comment). Defects already fixed keep a
//! regression test whose comment starts with "Regression:".

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::Value;

use super::*;
use crate::model::{
    from_millis, Audience, Call, CallStatus, Event, Millis, Transfer, TransferMode, TransferStatus,
};

const CALL_ID: &str = "call-1";
const CALLER: &str = "caller-1";
const MAIN: &str = "room-main";
const HOLD: &str = "room-hold";
const A: &str = "agent-a";
const B: &str = "agent-b";
const C: &str = "agent-c";
const XFER: &str = "xfer-1";
const CONSULT: &str = "room-consult-1";
const SUMMARY: &str = "Caller wants a refund for order 42";
const NOTE: &str = "Already verified the address";

const RING: Millis = 30_000;
const MOVE: Millis = 20_000;
const REJOIN: Millis = 15_000;
const TIMEOUTS: Timeouts = Timeouts {
    ring_ms: RING,
    move_ms: MOVE,
    rejoin_ms: REJOIN,
};

/// When the transfer is initiated in the table tests.
const T_INIT: Millis = 1_000;
/// When the target answers.
const T_ANSWER: Millis = 2_000;
/// When the owner completes or cancels.
const T_DONE: Millis = 3_000;

// ---------------------------------------------------------------------------------------
// Builders and helpers
// ---------------------------------------------------------------------------------------

fn new_call() -> Call {
    Call {
        call_id: CALL_ID.into(),
        caller_id: CALLER.into(),
        caller_name: "Ada".into(),
        reason: "refund".into(),
        agent_a_id: None,
        agent_b_id: None,
        owner_id: None,
        offered_to: None,
        requested_agent_id: None,
        status: CallStatus::Queued,
        main_room: MAIN.into(),
        hold_room: HOLD.into(),
        open_transfer_id: None,
        last_summary_id: None,
        end_reason: None,
        created_at: from_millis(0),
        end_at: None,
        metadata: Value::Null,
        channel: Default::default(),
        caller_number: None,
        org_id: None,
        direction: Default::default(),
        assistant_id: None,
        outbound: None,
        recording: None,
    }
}

/// A freshly created call (at time 0), checked like every other step.
fn created() -> Step {
    let step = CallMachine::create(new_call(), None, TIMEOUTS, 0);
    check_step(None, 0, &step);
    step
}

fn agent(id: &str) -> Actor {
    Actor::Agent(id.to_string())
}

fn party(id: &str) -> Party {
    Party::Agent(id.to_string())
}

/// A command issued by an agent.
fn by(id: &str, command: Command) -> Input {
    Input::Command(agent(id), command)
}

fn joined(identity: &str, room: &str, at: Millis) -> Input {
    Input::Observe(Observation::Joined {
        identity: identity.into(),
        room: room.into(),
        at,
        session: None,
    })
}

fn left(identity: &str, room: &str, at: Millis) -> Input {
    Input::Observe(Observation::Left {
        identity: identity.into(),
        room: room.into(),
        at,
        session: None,
    })
}

fn acked(party: Party, move_id: &str) -> Input {
    Input::Observe(Observation::MoveAcked {
        party,
        move_id: move_id.into(),
    })
}

fn fire(key: TimerKey) -> Input {
    Input::Observe(Observation::TimerFired { key })
}

fn gone(agent_id: &str) -> Input {
    Input::Observe(Observation::AgentGone {
        agent_id: agent_id.into(),
    })
}

fn initiate(to: &str, mode: TransferMode) -> Command {
    initiate_with(XFER, CONSULT, to, mode)
}

fn initiate_with(transfer_id: &str, room: &str, to: &str, mode: TransferMode) -> Command {
    Command::InitiateTransfer {
        transfer_id: transfer_id.into(),
        to_agent_id: to.into(),
        mode,
        transfer_room: room.into(),
        summary_id: Some("sum-1".into()),
        summary_text: SUMMARY.into(),
        note: Some(NOTE.into()),
        to_number: None,
        briefing: serde_json::json!({ "reason": "refund", "urgency": "normal" }),
    }
}

/// Applies an input that must be accepted, and checks the step's numbering and privacy.
fn apply(m: &CallMachine, now: Millis, input: Input) -> Step {
    let step = m
        .handle(now, input.clone())
        .unwrap_or_else(|r| panic!("{input:?} at {now} was refused: {r:?}"));
    check_step(Some(m), now, &step);
    step
}

/// Applies an input that must be refused, and returns why.
fn refuse(m: &CallMachine, now: Millis, input: Input) -> Rejection {
    match m.handle(now, input.clone()) {
        Ok(step) => panic!(
            "{input:?} at {now} was accepted with events {:?}",
            kinds(&step)
        ),
        Err(r) => r,
    }
}

fn assert_forbidden(m: &CallMachine, now: Millis, input: Input) {
    let r = refuse(m, now, input.clone());
    assert!(
        matches!(r, Rejection::Forbidden(_)),
        "{input:?}: expected Forbidden, got {r:?}"
    );
}

fn assert_conflict(m: &CallMachine, now: Millis, input: Input, code: &str) {
    match refuse(m, now, input.clone()) {
        Rejection::Conflict { code: c, .. } if c == code => {}
        r => panic!("{input:?}: expected Conflict {code}, got {r:?}"),
    }
}

/// Applies an input that must change nothing at all.
fn assert_noop(m: &CallMachine, now: Millis, input: Input) {
    let step = apply(m, now, input.clone());
    assert_eq!(kinds(&step), Vec::<&str>::new(), "{input:?} emitted events");
    assert!(step.effects.is_empty(), "{input:?}: {:?}", step.effects);
    assert!(step.transfers.is_empty(), "{input:?} persisted a transfer");
    assert_eq!(&step.machine, m, "{input:?} changed the machine");
    assert!(!step.changed(m));
}

fn kinds(step: &Step) -> Vec<&str> {
    step.events.iter().map(|e| e.kind.as_str()).collect()
}

/// The step's only event of this type.
fn the<'a>(step: &'a Step, kind: &str) -> &'a Event {
    let found: Vec<&Event> = step.events.iter().filter(|e| e.kind == kind).collect();
    assert_eq!(found.len(), 1, "expected one {kind} in {:?}", kinds(step));
    found[0]
}

/// The step's events of this type.
fn all<'a>(step: &'a Step, kind: &str) -> Vec<&'a Event> {
    step.events.iter().filter(|e| e.kind == kind).collect()
}

fn assert_audience(e: &Event, caller: bool, agents: &[&str]) {
    let mut got: Vec<&str> = e.audience.agents.iter().map(String::as_str).collect();
    got.sort_unstable();
    let before = got.len();
    got.dedup();
    assert_eq!(before, got.len(), "{} audience has duplicates", e.kind);
    let mut want = agents.to_vec();
    want.sort_unstable();
    assert_eq!(
        (e.audience.caller, got),
        (caller, want),
        "audience of {} {}",
        e.kind,
        e.data
    );
}

/// Where every party is placed.
fn placements(m: &CallMachine) -> BTreeMap<Party, Space> {
    m.placements
        .iter()
        .map(|(p, pl)| (p.clone(), pl.space))
        .collect()
}

fn placed(list: &[(Party, Space)]) -> BTreeMap<Party, Space> {
    list.iter().cloned().collect()
}

fn move_id(m: &CallMachine, p: &Party) -> String {
    m.placements[p].move_id.clone()
}

/// The `participant.move` event sent to this party in the step.
fn move_of<'a>(step: &'a Step, p: &Party) -> &'a Event {
    let identity = match p {
        Party::Caller => CALLER.to_string(),
        Party::Agent(id) => id.clone(),
    };
    let found: Vec<&Event> = all(step, "participant.move")
        .into_iter()
        .filter(|e| e.data["identity"] == identity.as_str())
        .collect();
    assert_eq!(found.len(), 1, "expected one move of {p:?}");
    found[0]
}

fn transfer(m: &CallMachine) -> &Transfer {
    m.transfer.as_ref().expect("the call has a transfer")
}

fn timer_keys(m: &CallMachine) -> Vec<TimerKey> {
    m.timers.keys().cloned().collect()
}

/// Whether a JSON value holds a string containing this text anywhere.
fn mentions(v: &Value, needle: &str) -> bool {
    if needle.is_empty() {
        return false;
    }
    match v {
        Value::String(s) => s.contains(needle),
        Value::Array(items) => items.iter().any(|i| mentions(i, needle)),
        Value::Object(map) => map.values().any(|v| mentions(v, needle)),
        _ => false,
    }
}

/// Whether a JSON value has this key anywhere.
fn has_key(v: &Value, key: &str) -> bool {
    match v {
        Value::Array(items) => items.iter().any(|i| has_key(i, key)),
        Value::Object(map) => map.iter().any(|(k, v)| k == key || has_key(v, key)),
        _ => false,
    }
}

/// Checks one step: events numbered consecutively from the previous `seq`, stamped with the
/// call and the time, and nothing private reaches the caller.
fn check_step(before: Option<&CallMachine>, now: Millis, step: &Step) {
    let prev = before.map_or(0, |m| m.seq);
    for (i, e) in step.events.iter().enumerate() {
        assert_eq!(e.seq, prev + 1 + i as u64, "event {} misnumbered", e.kind);
        assert_eq!(e.call_id, step.machine.call.call_id);
        assert_eq!(e.at, from_millis(now), "event {} wrongly timed", e.kind);
    }
    assert_eq!(step.machine.seq, prev + step.events.len() as u64, "seq");
    // Keys the caller must never receive, then values (filled from the transfers).
    let private_keys = ["summaryText", "summaryId", "note", "briefing"];
    let mut secrets: Vec<String> = vec![];
    for t in before
        .and_then(|m| m.transfer.as_ref())
        .into_iter()
        .chain(step.machine.transfer.as_ref())
    {
        secrets.push(t.summary_text.clone());
        secrets.push(t.transfer_room.clone());
        if let Some(n) = &t.note {
            secrets.push(n.clone());
        }
    }
    for e in step.events.iter().filter(|e| e.audience.caller) {
        assert_ne!(
            e.kind, "transfer.offered",
            "the caller was offered a transfer"
        );
        for k in private_keys {
            assert!(
                !has_key(&e.data, k),
                "the caller receives {} with {k}: {}",
                e.kind,
                e.data
            );
        }
        for s in &secrets {
            assert!(
                !mentions(&e.data, s),
                "the caller receives {} carrying {s:?}: {}",
                e.kind,
                e.data
            );
        }
    }
}

/// A queued call whose caller arrived: created at 0, the caller confirmed in the main room
/// at 50 (which disarms the caller's first arrival deadline).
fn queued_call() -> CallMachine {
    let m = created().machine;
    let m = apply(&m, 50, joined(CALLER, MAIN, 50)).machine;
    assert_eq!(m.call.status, CallStatus::Queued);
    assert!(m.placements[&Party::Caller].confirmed);
    assert!(m.timers.is_empty(), "{:?}", m.timers);
    m
}

fn offer_to(agent_id: &str) -> Input {
    Input::Command(
        Actor::System,
        Command::Offer {
            agent_id: agent_id.into(),
        },
    )
}

/// An active call owned by `owner`: created at 0, offered at 100, accepted at 200, and both
/// parties confirmed in the main room at 300 (no deadline left).
fn active_call(owner: &str) -> CallMachine {
    let m = created().machine;
    let m = apply(&m, 100, offer_to(owner)).machine;
    let m = apply(&m, 200, by(owner, Command::AcceptCall)).machine;
    let m = apply(&m, 300, joined(CALLER, MAIN, 300)).machine;
    let m = apply(&m, 300, joined(owner, MAIN, 300)).machine;
    assert_eq!(m.call.status, CallStatus::Active);
    assert!(m.placements.values().all(|p| p.confirmed));
    assert!(m.timers.is_empty(), "{:?}", m.timers);
    m
}

/// An active call of A with a transfer to B ringing, initiated at `T_INIT`, the moved
/// parties confirmed where they were sent.
fn transfer_ringing(mode: TransferMode) -> CallMachine {
    let m = active_call(A);
    let mut m = apply(&m, T_INIT, by(A, initiate(B, mode))).machine;
    for (p, identity) in [(Party::Caller, CALLER), (party(A), A)] {
        if !m.placements[&p].confirmed {
            let room = m.room_of_party(&p).unwrap();
            m = apply(&m, T_INIT + 100, joined(identity, &room, T_INIT + 100)).machine;
        }
    }
    assert_eq!(transfer(&m).status, TransferStatus::Ringing);
    assert!(m.placements.values().all(|p| p.confirmed));
    assert_eq!(timer_keys(&m), [TimerKey::TransferRing]);
    m
}

/// `transfer_ringing`, accepted by B at `T_ANSWER`, B confirmed where it was sent.
fn transfer_briefing(mode: TransferMode) -> CallMachine {
    let m = transfer_ringing(mode);
    let m = apply(&m, T_ANSWER, by(B, Command::AcceptTransfer)).machine;
    let room = m.room_of_party(&party(B)).unwrap();
    let m = apply(&m, T_ANSWER + 100, joined(B, &room, T_ANSWER + 100)).machine;
    assert_eq!(transfer(&m).status, TransferStatus::Briefing);
    m
}

// ---------------------------------------------------------------------------------------
// Creation, offer, accept, hold, hang-up
// ---------------------------------------------------------------------------------------

#[test]
fn create_queues_the_call_with_the_caller_in_the_main_room() {
    let step = created();
    let m = &step.machine;
    assert_eq!(m.call.status, CallStatus::Queued);
    assert_eq!(m.call.owner_id, None);
    assert_eq!(placements(m), placed(&[(Party::Caller, Space::Main)]));
    let caller = &m.placements[&Party::Caller];
    assert!(!caller.confirmed);
    assert_eq!(
        (caller.move_id.as_str(), caller.retries, caller.placed_at),
        ("mv-1", 0, 0)
    );
    assert_eq!(
        m.timers,
        [(TimerKey::Arrival(Party::Caller), MOVE)]
            .into_iter()
            .collect(),
        "the caller must arrive in the main room"
    );
    assert_eq!(kinds(&step), ["call.created"]);
    assert_audience(&step.events[0], true, &[]);
    assert_eq!(step.events[0].seq, 1);
    assert_eq!(
        step.effects,
        [
            Effect::LiveKit(LiveKitEffect::EnsureRoom { room: MAIN.into() }),
            Effect::LiveKit(LiveKitEffect::EnsureRoom { room: HOLD.into() }),
            Effect::Routing(RoutingEffect::RequestAgent),
        ]
    );
}

/// Regression: the caller's first placement (main room, unconfirmed) had no arrival
/// deadline, so a caller who never connected was never detected. `create` now arms
/// `Arrival(Caller)` at `now + move_ms`; offering, declining and accepting the call keep it
/// (accepting does not re-place the caller), and the caller's arrival disarms it.
#[test]
fn caller_placement_at_creation_has_an_arrival_deadline() {
    let m = created().machine;
    let caller_deadline = (TimerKey::Arrival(Party::Caller), MOVE);
    let ringing = apply(&m, 100, offer_to(A)).machine;
    assert_eq!(
        ringing.timers,
        [caller_deadline.clone(), (TimerKey::Offer, 100 + RING)]
            .into_iter()
            .collect()
    );
    let requeued = apply(&ringing, 150, by(A, Command::DeclineCall)).machine;
    assert_eq!(
        requeued.timers,
        [caller_deadline.clone()].into_iter().collect()
    );
    let ringing = apply(&requeued, 160, offer_to(B)).machine;
    let step = apply(&ringing, 200, by(B, Command::AcceptCall));
    let m = &step.machine;
    assert_eq!(kinds(&step), ["participant.move", "call.active"]);
    assert_eq!(move_of(&step, &party(B)).data["room"], MAIN);
    assert!(!m.placements[&Party::Caller].confirmed);
    assert_eq!(
        move_id(m, &Party::Caller),
        "mv-1",
        "the caller is not moved"
    );
    assert_eq!(
        m.timers,
        [caller_deadline, (TimerKey::Arrival(party(B)), 200 + MOVE)]
            .into_iter()
            .collect(),
        "the caller is expected in the main room and the wait is bounded"
    );
    // The caller's arrival, seen by LiveKit or acknowledged, disarms the deadline.
    let by_webhook = apply(m, 300, joined(CALLER, MAIN, 300));
    assert_eq!(kinds(&by_webhook), ["participant.joined"]);
    assert_audience(&by_webhook.events[0], true, &[B]);
    let by_ack = apply(m, 300, acked(Party::Caller, "mv-1"));
    assert_eq!(kinds(&by_ack), ["participant.joined"]);
    for arrived in [by_webhook.machine, by_ack.machine] {
        assert!(arrived.placements[&Party::Caller].confirmed);
        assert_eq!(timer_keys(&arrived), [TimerKey::Arrival(party(B))]);
        assert_noop(&arrived, MOVE, fire(TimerKey::Arrival(Party::Caller)));
    }
}

/// A caller who never connects after the call is created gets one retry (a fresh move to
/// the main room), then the call ends `caller_lost`: whether it still waits in the queue,
/// rings an agent, or was already taken.
#[test]
fn caller_who_never_arrives_after_creation_gets_one_retry_then_the_call_ends() {
    let queued = created().machine;
    let ringing = apply(&queued, 100, offer_to(A)).machine;
    let taken = apply(&ringing, 200, by(A, Command::AcceptCall)).machine;
    let taken = apply(&taken, 300, joined(A, MAIN, 300)).machine;
    for (m, agents) in [(queued, vec![]), (ringing, vec![A]), (taken, vec![A])] {
        let status = m.call.status;
        assert_noop(&m, MOVE - 1, fire(TimerKey::Arrival(Party::Caller)));
        let step = apply(&m, MOVE, fire(TimerKey::Arrival(Party::Caller)));
        let retried = &step.machine;
        assert_eq!(kinds(&step), ["participant.move"], "{status:?}");
        let mv = &step.events[0];
        assert_audience(mv, true, &[]);
        assert_eq!(mv.data["room"], MAIN);
        let second = move_id(retried, &Party::Caller);
        assert_ne!(second, "mv-1", "the retry carries a fresh move id");
        assert_eq!(mv.data["moveId"], second.as_str());
        assert!(step.effects.is_empty());
        assert_eq!(retried.call.status, status, "nothing else changes");
        let caller = &retried.placements[&Party::Caller];
        assert_eq!((caller.retries, caller.placed_at), (1, 0));
        assert_eq!(
            retried.timers.get(&TimerKey::Arrival(Party::Caller)),
            Some(&(2 * MOVE))
        );
        // An acknowledgement of the first move is stale; the retry can still be answered.
        assert_noop(retried, MOVE + 1, acked(Party::Caller, "mv-1"));
        let answered = apply(retried, MOVE + 1, acked(Party::Caller, &second)).machine;
        assert!(answered.placements[&Party::Caller].confirmed);
        assert!(!answered
            .timers
            .contains_key(&TimerKey::Arrival(Party::Caller)));

        assert_noop(
            retried,
            2 * MOVE - 1,
            fire(TimerKey::Arrival(Party::Caller)),
        );
        let step = apply(retried, 2 * MOVE, fire(TimerKey::Arrival(Party::Caller)));
        let r = &step.machine;
        assert_eq!(r.call.status, CallStatus::Ended);
        assert_eq!(r.call.end_reason.as_deref(), Some("caller_lost"));
        assert_eq!(r.call.end_at, Some(from_millis(2 * MOVE)));
        assert_eq!(r.call.offered_to, None);
        assert!(r.placements.is_empty() && r.timers.is_empty());
        assert_eq!(kinds(&step), ["call.ended"]);
        assert_audience(&step.events[0], true, &agents);
        assert_eq!(step.events[0].data["reason"], "caller_lost");
        let mut effects = vec![Effect::LiveKit(LiveKitEffect::RemoveParticipant {
            room: MAIN.into(),
            identity: CALLER.into(),
        })];
        if status == CallStatus::Active {
            effects.push(Effect::LiveKit(LiveKitEffect::RemoveParticipant {
                room: MAIN.into(),
                identity: A.into(),
            }));
        }
        effects.push(Effect::LiveKit(LiveKitEffect::CloseRoom {
            room: MAIN.into(),
        }));
        effects.push(Effect::LiveKit(LiveKitEffect::CloseRoom {
            room: HOLD.into(),
        }));
        assert_eq!(step.effects, effects, "{status:?}");
        assert!(r.engaged_agents().is_empty());
    }
}

#[test]
fn offer_rings_the_agent_with_a_deadline() {
    let m = queued_call();
    let step = apply(&m, 100, offer_to(A));
    let m = &step.machine;
    assert_eq!(m.call.status, CallStatus::Ringing);
    assert_eq!(m.call.offered_to.as_deref(), Some(A));
    assert_eq!(
        m.timers,
        [(TimerKey::Offer, 100 + RING)].into_iter().collect()
    );
    assert_eq!(kinds(&step), ["call.offered"]);
    assert_audience(&step.events[0], true, &[A]);
    assert!(step.effects.is_empty());
    assert_eq!(m.engaged_agents(), [A]);
}

#[test]
fn only_routing_offers_and_only_a_queued_call() {
    let m = queued_call();
    let offer = |actor: Actor| Input::Command(actor, Command::Offer { agent_id: A.into() });
    assert_forbidden(&m, 100, offer(agent(A)));
    assert_forbidden(&m, 100, offer(Actor::Caller));
    let ringing = apply(&m, 100, offer(Actor::System)).machine;
    assert_conflict(&ringing, 200, offer(Actor::System), "not_queued");
}

#[test]
fn accepting_the_offer_makes_the_call_active() {
    let m = queued_call();
    let m = apply(&m, 100, offer_to(A)).machine;
    assert_conflict(
        &m,
        150,
        by(B, Command::AcceptCall),
        "offered_to_another_agent",
    );
    assert_forbidden(&m, 150, Input::Command(Actor::Caller, Command::AcceptCall));
    let step = apply(&m, 200, by(A, Command::AcceptCall));
    let m = &step.machine;
    assert_eq!(m.call.status, CallStatus::Active);
    assert_eq!(m.call.owner_id.as_deref(), Some(A));
    assert_eq!(m.call.agent_a_id.as_deref(), Some(A));
    assert_eq!(m.call.offered_to, None);
    assert_eq!(
        placements(m),
        placed(&[(Party::Caller, Space::Main), (party(A), Space::Main)])
    );
    assert_eq!(
        m.timers,
        [(TimerKey::Arrival(party(A)), 200 + MOVE)]
            .into_iter()
            .collect(),
        "the offer deadline is disarmed; the confirmed caller needs none"
    );
    assert_eq!(kinds(&step), ["participant.move", "call.active"]);
    assert_audience(&step.events[0], false, &[A]);
    assert_eq!(step.events[0].data["room"], MAIN);
    assert_audience(&step.events[1], true, &[A]);
    assert_eq!(step.events[1].data["ownerId"], A);
    // The offer timer of the accepted offer is disarmed.
    assert_noop(m, 200 + RING, fire(TimerKey::Offer));
    // Accepting again answers the same; another agent cannot take it.
    assert_noop(m, 250, by(A, Command::AcceptCall));
    assert_conflict(m, 250, by(B, Command::AcceptCall), "already_taken");
    // Joining the main room confirms the owner and disarms the arrival deadline.
    let step = apply(m, 300, joined(A, MAIN, 300));
    assert_eq!(kinds(&step), ["participant.joined"]);
    assert_audience(&step.events[0], true, &[A]);
    assert!(step.machine.placements[&party(A)].confirmed);
    assert!(step.machine.timers.is_empty());
}

#[test]
fn a_queued_call_can_be_taken_without_an_offer() {
    let m = queued_call();
    let step = apply(&m, 50, by(C, Command::AcceptCall));
    assert_eq!(step.machine.call.status, CallStatus::Active);
    assert_eq!(step.machine.call.owner_id.as_deref(), Some(C));
}

#[test]
fn declining_the_offer_puts_the_call_back_in_the_queue() {
    let m = queued_call();
    let m = apply(&m, 100, offer_to(A)).machine;
    assert_conflict(&m, 150, by(B, Command::DeclineCall), "not_offered");
    let step = apply(&m, 200, by(A, Command::DeclineCall));
    let m = &step.machine;
    assert_eq!(m.call.status, CallStatus::Queued);
    assert_eq!(m.call.offered_to, None);
    assert_eq!(m.declined_by, [A]);
    assert!(m.timers.is_empty());
    assert_eq!(kinds(&step), ["call.declined", "call.queued"]);
    assert_audience(&step.events[0], false, &[A]);
    assert_audience(&step.events[1], true, &[]);
    assert_eq!(step.events[1].data["reason"], "declined");
    assert_eq!(step.effects, [Effect::Routing(RoutingEffect::RequestAgent)]);
    assert_eq!(placements(m), placed(&[(Party::Caller, Space::Main)]));
}

#[test]
fn an_unanswered_offer_times_out_back_to_the_queue() {
    let m = queued_call();
    let m = apply(&m, 100, offer_to(A)).machine;
    assert_noop(&m, 100 + RING - 1, fire(TimerKey::Offer));
    let step = apply(&m, 100 + RING, fire(TimerKey::Offer));
    assert_eq!(step.machine.call.status, CallStatus::Queued);
    assert_eq!(step.machine.declined_by, [A]);
    assert_eq!(kinds(&step), ["call.offer_timed_out", "call.queued"]);
    assert_audience(&step.events[0], false, &[A]);
    assert_eq!(step.effects, [Effect::Routing(RoutingEffect::RequestAgent)]);
    assert!(step.machine.timers.is_empty());
    assert_noop(&step.machine, 100 + RING + 1, fire(TimerKey::Offer));
    // The late agent is no longer offered the call.
    assert_conflict(
        &step.machine,
        100 + RING + 1,
        by(A, Command::DeclineCall),
        "not_offered",
    );
}

#[test]
fn the_offered_agent_disconnecting_requeues_the_call() {
    let m = queued_call();
    let m = apply(&m, 100, offer_to(A)).machine;
    let step = apply(&m, 200, gone(A));
    assert_eq!(step.machine.call.status, CallStatus::Queued);
    assert_eq!(step.machine.call.offered_to, None);
    assert_eq!(step.machine.declined_by, [A]);
    assert!(step.machine.timers.is_empty());
    assert_eq!(kinds(&step), ["call.queued"]);
    assert_eq!(step.events[0].data["reason"], "agent_gone");
    assert_eq!(step.effects, [Effect::Routing(RoutingEffect::RequestAgent)]);
}

#[test]
fn hold_and_resume_move_the_caller_between_main_and_hold() {
    let m = active_call(A);
    assert_forbidden(&m, 1_000, by(B, Command::Hold));
    assert_forbidden(&m, 1_000, Input::Command(Actor::Caller, Command::Hold));
    assert_noop(&m, 1_000, by(A, Command::Resume));
    let step = apply(&m, 1_000, by(A, Command::Hold));
    let held = &step.machine;
    assert_eq!(held.call.status, CallStatus::OnHold);
    assert_eq!(
        placements(held),
        placed(&[(Party::Caller, Space::Hold), (party(A), Space::Main)])
    );
    assert_eq!(kinds(&step), ["participant.move", "call.on_hold"]);
    assert_audience(&step.events[0], true, &[]);
    assert_eq!(step.events[0].data["room"], HOLD);
    assert_audience(&step.events[1], true, &[A]);
    assert_eq!(
        timer_keys(held),
        [TimerKey::Arrival(Party::Caller)],
        "the caller must arrive in hold"
    );
    assert_noop(held, 1_100, by(A, Command::Hold));
    assert_forbidden(held, 1_100, by(B, Command::Resume));

    let step = apply(held, 2_000, by(A, Command::Resume));
    let resumed = &step.machine;
    assert_eq!(resumed.call.status, CallStatus::Active);
    assert_eq!(
        placements(resumed),
        placed(&[(Party::Caller, Space::Main), (party(A), Space::Main)])
    );
    assert_eq!(kinds(&step), ["participant.move", "call.resumed"]);
    assert_eq!(
        resumed.timers.get(&TimerKey::Arrival(Party::Caller)),
        Some(&(2_000 + MOVE))
    );
    assert_noop(resumed, 2_100, by(A, Command::Resume));
}

#[test]
fn caller_hangup_ends_the_call_and_releases_everyone() {
    let m = active_call(A);
    let step = apply(&m, 1_000, Input::Command(Actor::Caller, Command::Hangup));
    let m = &step.machine;
    assert_eq!(m.call.status, CallStatus::Ended);
    assert_eq!(m.call.end_reason.as_deref(), Some("caller_hangup"));
    assert_eq!(m.call.end_at, Some(from_millis(1_000)));
    assert!(m.placements.is_empty());
    assert!(m.timers.is_empty());
    assert!(m.engaged_agents().is_empty());
    assert_eq!(kinds(&step), ["call.ended"]);
    assert_audience(&step.events[0], true, &[A]);
    assert_eq!(
        step.effects,
        [
            Effect::LiveKit(LiveKitEffect::RemoveParticipant {
                room: MAIN.into(),
                identity: CALLER.into()
            }),
            Effect::LiveKit(LiveKitEffect::RemoveParticipant {
                room: MAIN.into(),
                identity: A.into()
            }),
            Effect::LiveKit(LiveKitEffect::CloseRoom { room: MAIN.into() }),
            Effect::LiveKit(LiveKitEffect::CloseRoom { room: HOLD.into() }),
        ]
    );
    // Hanging up again answers the same; nothing else is possible.
    assert_noop(m, 1_100, Input::Command(Actor::Caller, Command::Hangup));
    assert_noop(m, 1_100, by(A, Command::Hangup));
    assert_conflict(m, 1_100, by(A, Command::Hold), "not_active");
    assert!(m
        .handle(1_100, by(A, initiate(B, TransferMode::Warm)))
        .is_err());
    assert!(m.handle(1_100, offer_to(B)).is_err());
    // Observations of an ended call change nothing.
    assert_noop(m, 1_200, joined(CALLER, MAIN, 1_200));
    assert_noop(m, 1_200, gone(A));
    assert_noop(
        m,
        1_200,
        Input::Observe(Observation::SummaryStored {
            summary_id: "sum-9".into(),
            summary_text: String::new(),
            briefing: Value::Null,
        }),
    );
}

#[test]
fn only_the_owner_agent_hangs_up_a_call() {
    let m = active_call(A);
    assert_forbidden(&m, 1_000, by(B, Command::Hangup));
    let step = apply(&m, 1_000, by(A, Command::Hangup));
    assert_eq!(step.machine.call.status, CallStatus::Ended);
    assert_eq!(
        step.machine.call.end_reason.as_deref(),
        Some("agent_hangup")
    );
}

#[test]
fn owner_disconnecting_requeues_the_call_and_the_caller_stays_put() {
    for (held, caller_space) in [(false, Space::Main), (true, Space::Hold)] {
        let mut m = active_call(A);
        if held {
            m = apply(&m, 500, by(A, Command::Hold)).machine;
        }
        let step = apply(&m, 1_000, gone(A));
        let q = &step.machine;
        assert_eq!(q.call.status, CallStatus::Queued, "held: {held}");
        assert_eq!(q.call.owner_id, None);
        assert_eq!(placements(q), placed(&[(Party::Caller, caller_space)]));
        assert_eq!(kinds(&step), ["participant.released", "call.queued"]);
        assert_audience(&step.events[0], false, &[A]);
        assert_eq!(step.events[0].data["reason"], "disconnected");
        assert_audience(&step.events[1], true, &[]);
        assert_eq!(step.events[1].data["reason"], "owner_disconnected");
        assert_eq!(
            step.effects,
            [
                Effect::LiveKit(LiveKitEffect::RemoveParticipant {
                    room: MAIN.into(),
                    identity: A.into()
                }),
                Effect::Routing(RoutingEffect::RequestAgent),
            ]
        );
        // Only the held caller, not yet seen in hold, still has a deadline.
        let want: Vec<TimerKey> = if held {
            vec![TimerKey::Arrival(Party::Caller)]
        } else {
            vec![]
        };
        assert_eq!(timer_keys(q), want);
        // Another agent takes it and the caller is brought back to the main room.
        let taken = apply(q, 2_000, by(C, Command::AcceptCall)).machine;
        assert_eq!(taken.call.owner_id.as_deref(), Some(C));
        assert_eq!(taken.call.agent_a_id.as_deref(), Some(A), "A stays agent A");
        assert_eq!(
            placements(&taken),
            placed(&[(Party::Caller, Space::Main), (party(C), Space::Main)])
        );
    }
}

#[test]
fn owner_leaving_the_room_and_not_coming_back_requeues_the_call() {
    let m = active_call(A);
    let step = apply(&m, 1_000, left(A, MAIN, 1_000));
    assert_eq!(kinds(&step), ["participant.left"]);
    assert_eq!(
        step.machine.timers.get(&TimerKey::Rejoin(party(A))),
        Some(&(1_000 + REJOIN))
    );
    let step = apply(
        &step.machine,
        1_000 + REJOIN,
        fire(TimerKey::Rejoin(party(A))),
    );
    assert_eq!(step.machine.call.status, CallStatus::Queued);
    assert_eq!(kinds(&step), ["participant.released", "call.queued"]);
    assert_eq!(
        step.effects.last(),
        Some(&Effect::Routing(RoutingEffect::RequestAgent))
    );
}

#[test]
fn caller_who_never_arrives_gets_one_retry_then_the_call_ends() {
    let m = active_call(A);
    let held = apply(&m, 1_000, by(A, Command::Hold)).machine;
    let first = move_id(&held, &Party::Caller);
    let step = apply(&held, 1_000 + MOVE, fire(TimerKey::Arrival(Party::Caller)));
    let retried = &step.machine;
    assert_eq!(kinds(&step), ["participant.move"]);
    assert_audience(&step.events[0], true, &[]);
    let second = move_id(retried, &Party::Caller);
    assert_ne!(first, second, "the retry carries a fresh move id");
    assert_eq!(step.events[0].data["moveId"], second.as_str());
    assert_eq!(retried.placements[&Party::Caller].retries, 1);
    assert_eq!(
        retried.timers.get(&TimerKey::Arrival(Party::Caller)),
        Some(&(1_000 + 2 * MOVE))
    );
    // An acknowledgement of the first move is stale.
    assert_noop(retried, 1_000 + MOVE + 1, acked(Party::Caller, &first));
    let step = apply(
        retried,
        1_000 + 2 * MOVE,
        fire(TimerKey::Arrival(Party::Caller)),
    );
    assert_eq!(step.machine.call.status, CallStatus::Ended);
    assert_eq!(step.machine.call.end_reason.as_deref(), Some("caller_lost"));
    assert!(step.machine.placements.is_empty());
}

#[test]
fn summary_updates_reach_the_agents_only_once() {
    let m = transfer_ringing(TransferMode::Warm);
    let stored = |id: &str| {
        Input::Observe(Observation::SummaryStored {
            summary_id: id.into(),
            summary_text: String::new(),
            briefing: Value::Null,
        })
    };
    let step = apply(&m, 1_500, stored("sum-2"));
    assert_eq!(kinds(&step), ["summary.updated"]);
    assert_audience(&step.events[0], false, &[A, B]);
    assert_eq!(step.machine.call.last_summary_id.as_deref(), Some("sum-2"));
    assert_noop(&step.machine, 1_600, stored("sum-2"));
}

// ---------------------------------------------------------------------------------------
// Warm transfer
// ---------------------------------------------------------------------------------------

#[test]
fn warm_initiate_holds_the_caller_moves_a_to_consult_and_offers_b() {
    let m = active_call(A);
    let step = apply(&m, T_INIT, by(A, initiate(B, TransferMode::Warm)));
    let r = &step.machine;
    assert_eq!(r.call.status, CallStatus::Transferring);
    assert_eq!(r.call.open_transfer_id.as_deref(), Some(XFER));
    assert_eq!(r.call.owner_id.as_deref(), Some(A));
    let t = transfer(r);
    assert_eq!(
        (
            t.status,
            t.mode,
            t.from_agent_id.as_str(),
            t.to_agent_id.as_str()
        ),
        (TransferStatus::Ringing, TransferMode::Warm, A, B)
    );
    assert_eq!(t.transfer_room, CONSULT);
    assert_eq!(t.summary_text, SUMMARY);
    assert_eq!(step.transfers, std::slice::from_ref(t));
    assert_eq!(
        placements(r),
        placed(&[(Party::Caller, Space::Hold), (party(A), Space::Consult)])
    );
    assert_eq!(
        r.timers,
        [
            (TimerKey::TransferRing, T_INIT + RING),
            (TimerKey::Arrival(Party::Caller), T_INIT + MOVE),
            (TimerKey::Arrival(party(A)), T_INIT + MOVE),
        ]
        .into_iter()
        .collect()
    );
    assert_eq!(
        step.effects,
        [Effect::LiveKit(LiveKitEffect::EnsureRoom {
            room: CONSULT.into()
        })]
    );
    assert_eq!(
        kinds(&step),
        [
            "transfer.initiated",
            "participant.move",
            "participant.move",
            "transfer.ringing",
            "transfer.offered"
        ]
    );
    assert_audience(&step.events[0], true, &[A, B]);
    let caller_move = move_of(&step, &Party::Caller);
    assert_audience(caller_move, true, &[]);
    assert_eq!(caller_move.data["room"], HOLD);
    let a_move = move_of(&step, &party(A));
    assert_audience(a_move, false, &[A]);
    assert_eq!(a_move.data["room"], CONSULT);
    assert_audience(&step.events[3], false, &[A]);
    let offered = &step.events[4];
    assert_audience(offered, false, &[B]);
    assert_eq!(offered.data["summaryText"], SUMMARY);
    assert_eq!(offered.data["note"], NOTE);
    assert_eq!(offered.data["mode"], "warm");
    assert_eq!(offered.data["fromAgentId"], A);
    assert_eq!(offered.data["expiresAt"], json!(from_millis(T_INIT + RING)));
    assert_eq!(r.engaged_agents().len(), 2);
    assert!(r.involves_agent(B));
}

#[test]
fn warm_accept_brings_b_into_the_consult_room() {
    let m = transfer_ringing(TransferMode::Warm);
    let step = apply(&m, T_ANSWER, by(B, Command::AcceptTransfer));
    let r = &step.machine;
    assert_eq!(transfer(r).status, TransferStatus::Briefing);
    assert_eq!(r.call.status, CallStatus::Transferring);
    assert_eq!(
        placements(r),
        placed(&[
            (Party::Caller, Space::Hold),
            (party(A), Space::Consult),
            (party(B), Space::Consult)
        ])
    );
    assert_eq!(r.room_of_party(&party(B)).as_deref(), Some(CONSULT));
    assert_eq!(
        timer_keys(r),
        [TimerKey::Arrival(party(B))],
        "ring deadline disarmed"
    );
    assert_eq!(
        kinds(&step),
        ["transfer.accepted", "participant.move", "transfer.briefing"]
    );
    assert_audience(&step.events[0], true, &[A, B]);
    assert_audience(&step.events[1], false, &[B]);
    assert_eq!(step.events[1].data["room"], CONSULT);
    assert_audience(&step.events[2], false, &[A, B]);
    assert!(step.effects.is_empty());
    // The disarmed ring timer firing late changes nothing.
    assert_noop(r, T_INIT + RING, fire(TimerKey::TransferRing));
    // Joining the consult room is announced to the agents only.
    let step = apply(r, T_ANSWER + 100, joined(B, CONSULT, T_ANSWER + 100));
    assert_eq!(kinds(&step), ["participant.joined"]);
    assert_audience(&step.events[0], false, &[A, B]);
}

#[test]
fn warm_complete_hands_the_caller_to_b_and_releases_a() {
    let m = transfer_briefing(TransferMode::Warm);
    let step = apply(&m, T_DONE, by(A, Command::CompleteTransfer));
    let r = &step.machine;
    assert_eq!(r.call.status, CallStatus::Active);
    assert_eq!(r.call.owner_id.as_deref(), Some(B));
    assert_eq!(r.call.agent_a_id.as_deref(), Some(A));
    assert_eq!(r.call.agent_b_id.as_deref(), Some(B));
    assert_eq!(r.call.open_transfer_id, None);
    let t = transfer(r);
    assert_eq!(t.status, TransferStatus::Completed);
    assert_eq!(t.ended_at, Some(from_millis(T_DONE)));
    assert_eq!(step.transfers, std::slice::from_ref(t));
    assert_eq!(
        placements(r),
        placed(&[(Party::Caller, Space::Main), (party(B), Space::Main)])
    );
    assert_eq!(
        timer_keys(r),
        [
            TimerKey::Arrival(Party::Caller),
            TimerKey::Arrival(party(B))
        ]
    );
    assert_eq!(
        kinds(&step),
        [
            "participant.move",
            "participant.move",
            "transfer.completed",
            "participant.released",
            "call.active"
        ]
    );
    assert_audience(move_of(&step, &party(B)), false, &[B]);
    assert_eq!(move_of(&step, &party(B)).data["room"], MAIN);
    assert_audience(move_of(&step, &Party::Caller), true, &[]);
    assert_eq!(move_of(&step, &Party::Caller).data["room"], MAIN);
    assert_audience(the(&step, "transfer.completed"), true, &[A, B]);
    let released = the(&step, "participant.released");
    assert_audience(released, false, &[A]);
    assert_eq!(released.data["reason"], "transfer_completed");
    let active = the(&step, "call.active");
    assert_audience(active, true, &[B]);
    assert_eq!(active.data["ownerId"], B);
    assert_eq!(
        step.effects,
        [
            Effect::LiveKit(LiveKitEffect::CloseRoom {
                room: CONSULT.into()
            }),
            Effect::LiveKit(LiveKitEffect::RemoveParticipant {
                room: CONSULT.into(),
                identity: A.into()
            }),
        ]
    );
    assert_eq!(r.engaged_agents(), [B]);
    // A is out: A's stale consult observations and A's disconnect change nothing.
    assert_noop(r, T_DONE + 100, left(A, CONSULT, T_DONE + 100));
    assert_noop(r, T_DONE + 100, gone(A));
    assert_forbidden(r, T_DONE + 100, by(A, Command::Hold));
}

#[test]
fn after_a_warm_transfer_b_owns_the_call_and_can_transfer_again() {
    let m = transfer_briefing(TransferMode::Warm);
    let m = apply(&m, T_DONE, by(A, Command::CompleteTransfer)).machine;
    let again = initiate_with("xfer-2", "room-consult-2", C, TransferMode::Warm);
    assert_forbidden(&m, 4_000, by(A, again.clone()));
    let step = apply(&m, 4_000, by(B, again));
    let r = &step.machine;
    let t = transfer(r);
    assert_eq!(
        (t.transfer_id.as_str(), t.status),
        ("xfer-2", TransferStatus::Ringing)
    );
    assert_eq!((t.from_agent_id.as_str(), t.to_agent_id.as_str()), (B, C));
    assert_eq!(
        placements(r),
        placed(&[(Party::Caller, Space::Hold), (party(B), Space::Consult)])
    );
    assert_eq!(
        r.room_of_party(&party(B)).as_deref(),
        Some("room-consult-2")
    );
    assert_audience(the(&step, "transfer.offered"), false, &[C]);
    // B can also hold and hang up now.
    let m2 = apply(r, 4_100, by(B, Command::CancelTransfer)).machine;
    let held = apply(&m2, 4_200, by(B, Command::Hold)).machine;
    assert_eq!(held.call.status, CallStatus::OnHold);
    let step = apply(&held, 4_300, by(B, Command::Hangup));
    assert_eq!(
        step.machine.call.end_reason.as_deref(),
        Some("agent_hangup")
    );
}

#[test]
fn warm_transfer_can_start_from_hold() {
    let m = active_call(A);
    let held = apply(&m, 500, by(A, Command::Hold)).machine;
    let held = apply(&held, 600, joined(CALLER, HOLD, 600)).machine;
    let step = apply(&held, T_INIT, by(A, initiate(B, TransferMode::Warm)));
    assert_eq!(
        all(&step, "participant.move").len(),
        1,
        "only A moves; the caller already waits in hold"
    );
    assert!(step.machine.placements[&Party::Caller].confirmed);
    // Cancelling brings the caller back to A in the main room.
    let step = apply(&step.machine, T_DONE, by(A, Command::CancelTransfer));
    assert_eq!(step.machine.call.status, CallStatus::Active);
    assert_eq!(
        placements(&step.machine),
        placed(&[(Party::Caller, Space::Main), (party(A), Space::Main)])
    );
}

// ---------------------------------------------------------------------------------------
// Cold and conference transfers
// ---------------------------------------------------------------------------------------

#[test]
fn cold_transfer_sends_the_caller_straight_to_b_with_the_summary() {
    let m = active_call(A);
    let step = apply(&m, T_INIT, by(A, initiate(B, TransferMode::Cold)));
    let r = &step.machine;
    assert_eq!(
        kinds(&step),
        [
            "transfer.initiated",
            "participant.move",
            "transfer.ringing",
            "transfer.offered"
        ]
    );
    assert!(
        step.effects.is_empty(),
        "no consult room for a cold transfer"
    );
    assert_eq!(
        placements(r),
        placed(&[(Party::Caller, Space::Hold), (party(A), Space::Main)])
    );
    let offered = the(&step, "transfer.offered");
    assert_audience(offered, false, &[B]);
    assert_eq!(offered.data["summaryText"], SUMMARY);
    assert_eq!(offered.data["mode"], "cold");

    let step = apply(r, T_ANSWER, by(B, Command::AcceptTransfer));
    let r = &step.machine;
    assert_eq!(transfer(r).status, TransferStatus::Completed);
    assert_eq!(r.call.status, CallStatus::Active);
    assert_eq!(r.call.owner_id.as_deref(), Some(B));
    assert_eq!(
        placements(r),
        placed(&[(Party::Caller, Space::Main), (party(B), Space::Main)])
    );
    assert_eq!(
        kinds(&step),
        [
            "transfer.accepted",
            "participant.move",
            "participant.move",
            "transfer.completed",
            "participant.released",
            "call.active"
        ]
    );
    assert!(all(&step, "transfer.briefing").is_empty());
    assert_audience(the(&step, "participant.released"), false, &[A]);
    assert_audience(the(&step, "call.active"), true, &[B]);
    assert_eq!(
        step.effects,
        [Effect::LiveKit(LiveKitEffect::RemoveParticipant {
            room: MAIN.into(),
            identity: A.into()
        })],
        "A leaves; no room closes (a cold transfer has no consult room)"
    );
    assert_eq!(
        timer_keys(r),
        [
            TimerKey::Arrival(Party::Caller),
            TimerKey::Arrival(party(B))
        ]
    );
    // Accepting again answers the same; completing is meaningless but harmless for A.
    assert_noop(r, T_DONE, by(B, Command::AcceptTransfer));
    assert_noop(r, T_DONE, by(A, Command::CompleteTransfer));
}

#[test]
fn cold_transfer_cannot_be_completed_before_b_answers() {
    let m = transfer_ringing(TransferMode::Cold);
    assert_conflict(
        &m,
        T_ANSWER,
        by(A, Command::CompleteTransfer),
        "transfer_not_accepted",
    );
}

#[test]
fn conference_brings_b_into_the_main_room_and_a_leaves_on_complete() {
    let m = active_call(A);
    let step = apply(&m, T_INIT, by(A, initiate(B, TransferMode::Conference)));
    assert_eq!(
        kinds(&step),
        ["transfer.initiated", "transfer.ringing", "transfer.offered"]
    );
    assert_eq!(
        placements(&step.machine),
        placed(&[(Party::Caller, Space::Main), (party(A), Space::Main)]),
        "nobody moves while B rings"
    );
    assert_eq!(
        timer_keys(&step.machine),
        [TimerKey::TransferRing],
        "only the ring deadline"
    );

    let step = apply(&step.machine, T_ANSWER, by(B, Command::AcceptTransfer));
    let r = &step.machine;
    assert_eq!(transfer(r).status, TransferStatus::Briefing);
    assert_eq!(r.call.owner_id.as_deref(), Some(A));
    assert_eq!(
        placements(r),
        placed(&[
            (Party::Caller, Space::Main),
            (party(A), Space::Main),
            (party(B), Space::Main)
        ])
    );
    assert_eq!(
        kinds(&step),
        ["transfer.accepted", "participant.move", "transfer.briefing"]
    );
    assert_eq!(step.events[1].data["room"], MAIN);
    assert_audience(&step.events[2], true, &[A, B]);
    assert!(step.effects.is_empty());
    assert_eq!(timer_keys(r), [TimerKey::Arrival(party(B))]);

    let step = apply(r, T_DONE, by(A, Command::CompleteTransfer));
    let r = &step.machine;
    assert_eq!(transfer(r).status, TransferStatus::Completed);
    assert_eq!(r.call.status, CallStatus::Active);
    assert_eq!(r.call.owner_id.as_deref(), Some(B));
    assert_eq!(
        placements(r),
        placed(&[(Party::Caller, Space::Main), (party(B), Space::Main)])
    );
    assert_eq!(
        kinds(&step),
        ["transfer.completed", "participant.released", "call.active"]
    );
    assert_audience(&step.events[0], true, &[A, B]);
    assert_eq!(
        step.effects,
        [Effect::LiveKit(LiveKitEffect::RemoveParticipant {
            room: MAIN.into(),
            identity: A.into()
        })],
        "A leaves; no room closes (a conference has no consult room)"
    );
}

/// Regression: a conference started while the caller was on hold left the caller in the
/// hold room after B accepted. Accepting now brings the caller, A and B together in the
/// main room (a `participant.move` to the caller).
#[test]
fn conference_started_from_hold_brings_the_caller_to_the_main_room() {
    let m = active_call(A);
    let held = apply(&m, 500, by(A, Command::Hold)).machine;
    let held = apply(&held, 600, joined(CALLER, HOLD, 600)).machine;
    let step = apply(&held, T_INIT, by(A, initiate(B, TransferMode::Conference)));
    let ringing = &step.machine;
    assert_eq!(
        kinds(&step),
        ["transfer.initiated", "transfer.ringing", "transfer.offered"],
        "nobody moves while B rings"
    );
    assert!(step.effects.is_empty());
    assert_eq!(
        placements(ringing),
        placed(&[(Party::Caller, Space::Hold), (party(A), Space::Main)])
    );
    let step = apply(ringing, T_ANSWER, by(B, Command::AcceptTransfer));
    let r = &step.machine;
    assert_eq!(transfer(r).status, TransferStatus::Briefing);
    assert_eq!(
        placements(r),
        placed(&[
            (Party::Caller, Space::Main),
            (party(A), Space::Main),
            (party(B), Space::Main)
        ]),
        "the conference brings the caller, A and B together"
    );
    assert_eq!(
        kinds(&step),
        [
            "transfer.accepted",
            "participant.move",
            "participant.move",
            "transfer.briefing"
        ]
    );
    let caller_move = move_of(&step, &Party::Caller);
    assert_audience(caller_move, true, &[]);
    assert_eq!(caller_move.data["room"], MAIN);
    assert_audience(move_of(&step, &party(B)), false, &[B]);
    assert_eq!(move_of(&step, &party(B)).data["room"], MAIN);
    assert_audience(the(&step, "transfer.briefing"), true, &[A, B]);
    assert!(step.effects.is_empty());
    assert_eq!(
        r.timers,
        [
            (TimerKey::Arrival(Party::Caller), T_ANSWER + MOVE),
            (TimerKey::Arrival(party(B)), T_ANSWER + MOVE)
        ]
        .into_iter()
        .collect()
    );
    // The caller arrives in the main room, heard by everyone in it.
    let step = apply(r, T_ANSWER + 100, joined(CALLER, MAIN, T_ANSWER + 100));
    assert_eq!(kinds(&step), ["participant.joined"]);
    assert_audience(&step.events[0], true, &[A, B]);
    // A completes: the caller stays with B in the main room.
    let step = apply(&step.machine, T_DONE, by(A, Command::CompleteTransfer));
    assert_eq!(
        placements(&step.machine),
        placed(&[(Party::Caller, Space::Main), (party(B), Space::Main)])
    );
    assert_eq!(
        kinds(&step),
        ["transfer.completed", "participant.released", "call.active"]
    );
}

// ---------------------------------------------------------------------------------------
// Failure paths of a transfer
// ---------------------------------------------------------------------------------------

/// Checks a transfer rolled back to A: the caller and A in the main room, B out, the
/// consult room closed (warm only: cold and conference never open one), the call active,
/// and the events in order with their audiences. The transfer started with the caller in
/// the main room, so the parties moved back are A and the caller (warm), the caller (cold)
/// or nobody (conference). `b_was_placed` says whether B had joined (briefing) and so must
/// be released.
fn assert_rolled_back_to_a(step: &Step, status: TransferStatus, b_was_placed: bool) {
    let r = &step.machine;
    let t = transfer(r);
    assert_eq!(t.status, status);
    assert!(t.ended_at.is_some());
    assert_eq!(step.transfers, std::slice::from_ref(t));
    assert_eq!(r.call.status, CallStatus::Active);
    assert_eq!(r.call.owner_id.as_deref(), Some(A));
    assert_eq!(r.call.open_transfer_id, None);
    assert_eq!(
        placements(r),
        placed(&[(Party::Caller, Space::Main), (party(A), Space::Main)])
    );
    assert!(!r.timers.contains_key(&TimerKey::TransferRing));
    assert!(!r.timers.contains_key(&TimerKey::Arrival(party(B))));
    assert!(!r.timers.contains_key(&TimerKey::Rejoin(party(B))));
    let (moved, b_room): (Vec<Party>, &str) = match t.mode {
        TransferMode::Warm => (vec![party(A), Party::Caller], CONSULT),
        TransferMode::Cold => (vec![Party::Caller], MAIN),
        TransferMode::Conference => (vec![], MAIN),
    };
    // Exactly the parties moved back wait for their arrival.
    let mut armed = timer_keys(r);
    armed.sort();
    let mut want_armed: Vec<TimerKey> = moved.iter().cloned().map(TimerKey::Arrival).collect();
    want_armed.sort();
    assert_eq!(armed, want_armed, "{:?}", t.mode);
    let mut want = vec![format!("transfer.{}", status.as_str())];
    if b_was_placed {
        want.push("participant.released".into());
    }
    want.extend(moved.iter().map(|_| "participant.move".to_string()));
    want.push("call.resumed".into());
    assert_eq!(kinds(step), want, "{:?}", t.mode);
    let ended = &step.events[0];
    assert_audience(ended, true, &[A, B]);
    assert_eq!(ended.data["status"], status.as_str());
    if b_was_placed {
        let released = the(step, "participant.released");
        assert_audience(released, false, &[B]);
        assert_eq!(released.data["reason"], status.as_str());
    }
    for p in &moved {
        let mv = move_of(step, p);
        match p {
            Party::Caller => assert_audience(mv, true, &[]),
            Party::Agent(id) => assert_audience(mv, false, &[id.as_str()]),
        }
        assert_eq!(mv.data["room"], MAIN);
    }
    assert_audience(the(step, "call.resumed"), true, &[A]);
    let mut effects = vec![];
    if t.mode == TransferMode::Warm {
        effects.push(Effect::LiveKit(LiveKitEffect::CloseRoom {
            room: CONSULT.into(),
        }));
    }
    if b_was_placed {
        effects.push(Effect::LiveKit(LiveKitEffect::RemoveParticipant {
            room: b_room.into(),
            identity: B.into(),
        }));
    }
    assert_eq!(step.effects, effects, "{:?}", t.mode);
    assert_eq!(r.engaged_agents(), [A]);
}

#[test]
fn b_declines_and_the_caller_returns_to_a() {
    let m = transfer_ringing(TransferMode::Warm);
    assert_forbidden(&m, T_ANSWER, by(A, Command::DeclineTransfer));
    assert_forbidden(&m, T_ANSWER, by(C, Command::DeclineTransfer));
    assert_forbidden(
        &m,
        T_ANSWER,
        Input::Command(Actor::Caller, Command::DeclineTransfer),
    );
    let step = apply(&m, T_ANSWER, by(B, Command::DeclineTransfer));
    assert_rolled_back_to_a(&step, TransferStatus::Declined, false);
    let r = &step.machine;
    // Declining again answers the same; accepting now is too late.
    assert_noop(r, T_DONE, by(B, Command::DeclineTransfer));
    assert_conflict(
        r,
        T_DONE,
        by(B, Command::AcceptTransfer),
        "transfer_not_ringing",
    );
    assert_conflict(
        r,
        T_DONE,
        by(A, Command::CompleteTransfer),
        "transfer_ended",
    );
    assert_conflict(r, T_DONE, by(A, Command::CancelTransfer), "transfer_ended");
    assert_noop(r, T_INIT + RING, fire(TimerKey::TransferRing));
}

#[test]
fn b_not_answering_times_the_transfer_out() {
    let m = transfer_ringing(TransferMode::Warm);
    assert_noop(&m, T_INIT + RING - 1, fire(TimerKey::TransferRing));
    let step = apply(&m, T_INIT + RING, fire(TimerKey::TransferRing));
    assert_rolled_back_to_a(&step, TransferStatus::TimedOut, false);
    let r = &step.machine;
    assert_eq!(the(&step, "transfer.timed_out").data["status"], "timed_out");
    assert_conflict(
        r,
        T_INIT + RING + 1,
        by(B, Command::AcceptTransfer),
        "transfer_not_ringing",
    );
    assert_noop(r, T_INIT + RING + 1, fire(TimerKey::TransferRing));
}

#[test]
fn a_cancels_while_b_rings() {
    let m = transfer_ringing(TransferMode::Warm);
    assert_forbidden(&m, T_ANSWER, by(B, Command::CancelTransfer));
    assert_forbidden(&m, T_ANSWER, by(C, Command::CancelTransfer));
    let step = apply(&m, T_ANSWER, by(A, Command::CancelTransfer));
    assert_rolled_back_to_a(&step, TransferStatus::Cancelled, false);
    let r = &step.machine;
    assert_noop(r, T_DONE, by(A, Command::CancelTransfer));
    assert_conflict(
        r,
        T_DONE,
        by(B, Command::AcceptTransfer),
        "transfer_not_ringing",
    );
}

#[test]
fn a_cancels_during_the_briefing_and_b_is_released() {
    let m = transfer_briefing(TransferMode::Warm);
    let step = apply(&m, T_DONE, by(A, Command::CancelTransfer));
    assert_rolled_back_to_a(&step, TransferStatus::Cancelled, true);
    assert_eq!(
        the(&step, "participant.released").data["reason"],
        "cancelled"
    );
    assert_noop(&step.machine, T_DONE + 1, by(A, Command::CancelTransfer));
    assert_noop(&step.machine, T_DONE + 1, left(B, CONSULT, T_DONE + 1));
}

#[test]
fn a_cancels_a_conference_and_b_leaves_the_main_room() {
    let m = transfer_briefing(TransferMode::Conference);
    let step = apply(&m, T_DONE, by(A, Command::CancelTransfer));
    assert_rolled_back_to_a(&step, TransferStatus::Cancelled, true);
    assert_eq!(
        kinds(&step),
        ["transfer.cancelled", "participant.released", "call.resumed"]
    );
    assert_eq!(
        step.effects,
        [Effect::LiveKit(LiveKitEffect::RemoveParticipant {
            room: MAIN.into(),
            identity: B.into()
        })],
        "no consult room to close for a conference"
    );
}

/// Every way a ringing transfer fails, in every mode, brings the caller back to A; only a
/// warm transfer has a consult room to close.
#[test]
fn a_ringing_transfer_rolls_back_to_a_in_every_mode() {
    for mode in [
        TransferMode::Warm,
        TransferMode::Cold,
        TransferMode::Conference,
    ] {
        let m = transfer_ringing(mode);
        let endings = [
            (
                T_ANSWER,
                by(B, Command::DeclineTransfer),
                TransferStatus::Declined,
            ),
            (
                T_INIT + RING,
                fire(TimerKey::TransferRing),
                TransferStatus::TimedOut,
            ),
            (
                T_ANSWER,
                by(A, Command::CancelTransfer),
                TransferStatus::Cancelled,
            ),
            (T_ANSWER, gone(B), TransferStatus::Failed),
        ];
        for (at, input, status) in endings {
            let step = apply(&m, at, input);
            assert_rolled_back_to_a(&step, status, false);
            let closes_consult =
                step.effects
                    .contains(&Effect::LiveKit(LiveKitEffect::CloseRoom {
                        room: CONSULT.into(),
                    }));
            assert_eq!(closes_consult, mode == TransferMode::Warm, "{mode:?}");
        }
    }
}

#[test]
fn b_disconnecting_while_ringing_fails_the_transfer() {
    let m = transfer_ringing(TransferMode::Warm);
    let step = apply(&m, T_ANSWER, gone(B));
    assert_rolled_back_to_a(&step, TransferStatus::Failed, false);
    assert_eq!(
        transfer(&step.machine).reason.as_deref(),
        Some("target_disconnected")
    );
    assert_eq!(step.events[0].data["reason"], "target_disconnected");
}

#[test]
fn b_disconnecting_during_the_briefing_fails_the_transfer() {
    let m = transfer_briefing(TransferMode::Warm);
    let step = apply(&m, T_DONE, gone(B));
    assert_rolled_back_to_a(&step, TransferStatus::Failed, true);
    assert_eq!(
        transfer(&step.machine).reason.as_deref(),
        Some("target_disconnected")
    );
}

#[test]
fn b_leaving_the_consult_room_fails_the_transfer_unless_b_rejoins() {
    let m = transfer_briefing(TransferMode::Warm);
    let leave_at = T_DONE;
    let step = apply(&m, leave_at, left(B, CONSULT, leave_at));
    assert_eq!(kinds(&step), ["participant.left"]);
    assert_audience(&step.events[0], false, &[A, B]);
    let gone_b = step.machine;
    assert!(!gone_b.placements[&party(B)].confirmed);
    assert_eq!(
        gone_b.timers.get(&TimerKey::Rejoin(party(B))),
        Some(&(leave_at + REJOIN))
    );
    // A duplicate Left changes nothing, nor does the rejoin deadline firing early.
    assert_noop(&gone_b, leave_at + 10, left(B, CONSULT, leave_at));
    assert_noop(
        &gone_b,
        leave_at + REJOIN - 1,
        fire(TimerKey::Rejoin(party(B))),
    );

    // B comes back in time: the deadline is disarmed.
    let back = apply(
        &gone_b,
        leave_at + 1_000,
        joined(B, CONSULT, leave_at + 1_000),
    )
    .machine;
    assert!(back.placements[&party(B)].confirmed);
    assert!(!back.timers.contains_key(&TimerKey::Rejoin(party(B))));
    assert_noop(&back, leave_at + REJOIN, fire(TimerKey::Rejoin(party(B))));
    // A Joined older than the Left is stale.
    assert_noop(&gone_b, leave_at + 10, joined(B, CONSULT, leave_at - 1));

    // B does not come back.
    let step = apply(&gone_b, leave_at + REJOIN, fire(TimerKey::Rejoin(party(B))));
    assert_rolled_back_to_a(&step, TransferStatus::Failed, true);
    assert_eq!(
        transfer(&step.machine).reason.as_deref(),
        Some("target_disconnected")
    );
}

#[test]
fn b_never_arriving_in_the_consult_room_fails_the_transfer() {
    let m = transfer_ringing(TransferMode::Warm);
    let m = apply(&m, T_ANSWER, by(B, Command::AcceptTransfer)).machine;
    let step = apply(&m, T_ANSWER + MOVE, fire(TimerKey::Arrival(party(B))));
    assert_rolled_back_to_a(&step, TransferStatus::Failed, true);
}

#[test]
fn a_disconnecting_while_b_rings_fails_the_transfer_and_requeues_the_call() {
    let m = transfer_ringing(TransferMode::Warm);
    let step = apply(&m, T_ANSWER, gone(A));
    let r = &step.machine;
    let t = transfer(r);
    assert_eq!(t.status, TransferStatus::Failed);
    assert_eq!(t.reason.as_deref(), Some("owner_disconnected"));
    assert_eq!(r.call.status, CallStatus::Queued);
    assert_eq!(r.call.owner_id, None);
    assert_eq!(r.call.open_transfer_id, None);
    assert_eq!(
        placements(r),
        placed(&[(Party::Caller, Space::Hold)]),
        "the caller waits in hold for the next agent"
    );
    assert!(r.timers.is_empty(), "{:?}", r.timers);
    assert_eq!(
        kinds(&step),
        ["participant.released", "transfer.failed", "call.queued"]
    );
    assert_audience(&step.events[0], false, &[A]);
    assert_audience(&step.events[1], true, &[B]);
    assert_audience(&step.events[2], true, &[]);
    assert_eq!(step.events[2].data["reason"], "owner_disconnected");
    assert_eq!(
        step.effects,
        [
            Effect::LiveKit(LiveKitEffect::RemoveParticipant {
                room: CONSULT.into(),
                identity: A.into()
            }),
            Effect::LiveKit(LiveKitEffect::CloseRoom {
                room: CONSULT.into()
            }),
            Effect::Routing(RoutingEffect::RequestAgent),
        ]
    );
    assert!(r.engaged_agents().is_empty());
    assert_conflict(
        r,
        T_DONE,
        by(B, Command::AcceptTransfer),
        "transfer_not_ringing",
    );
    // Routing offers the call again; the new agent gets the caller back from hold.
    let r = apply(r, T_DONE, offer_to(C)).machine;
    let r = apply(&r, T_DONE + 100, by(C, Command::AcceptCall)).machine;
    assert_eq!(
        placements(&r),
        placed(&[(Party::Caller, Space::Main), (party(C), Space::Main)])
    );
}

#[test]
fn a_disconnecting_during_the_briefing_hands_the_caller_to_b() {
    let m = transfer_briefing(TransferMode::Warm);
    let step = apply(&m, T_DONE, gone(A));
    let r = &step.machine;
    let t = transfer(r);
    assert_eq!(t.status, TransferStatus::Completed);
    assert_eq!(t.reason.as_deref(), Some("owner_disconnected"));
    assert_eq!(r.call.status, CallStatus::Active);
    assert_eq!(r.call.owner_id.as_deref(), Some(B));
    assert_eq!(r.call.agent_b_id.as_deref(), Some(B));
    assert_eq!(
        placements(r),
        placed(&[(Party::Caller, Space::Main), (party(B), Space::Main)])
    );
    assert_eq!(
        kinds(&step),
        [
            "participant.move",
            "participant.move",
            "transfer.completed",
            "participant.released",
            "call.active"
        ]
    );
    assert_audience(the(&step, "transfer.completed"), true, &[A, B]);
    assert_eq!(
        the(&step, "transfer.completed").data["reason"],
        "owner_disconnected"
    );
    assert_audience(the(&step, "participant.released"), false, &[A]);
    assert_audience(the(&step, "call.active"), true, &[B]);
    assert!(step
        .effects
        .contains(&Effect::LiveKit(LiveKitEffect::RemoveParticipant {
            room: CONSULT.into(),
            identity: A.into()
        })));
}

#[test]
fn a_leaving_the_conference_for_good_hands_the_caller_to_b() {
    let m = transfer_briefing(TransferMode::Conference);
    let m = apply(&m, T_DONE, left(A, MAIN, T_DONE)).machine;
    let step = apply(&m, T_DONE + REJOIN, fire(TimerKey::Rejoin(party(A))));
    let r = &step.machine;
    assert_eq!(transfer(r).status, TransferStatus::Completed);
    assert_eq!(r.call.owner_id.as_deref(), Some(B));
    assert_eq!(
        placements(r),
        placed(&[(Party::Caller, Space::Main), (party(B), Space::Main)])
    );
}

/// B, whose transfer was still ringing, hears both that the transfer was abandoned and that
/// the call ended (regression: `call.ended` used to skip a ringing target).
#[test]
fn caller_hanging_up_while_b_rings_abandons_the_transfer() {
    let m = transfer_ringing(TransferMode::Warm);
    let step = apply(&m, T_ANSWER, Input::Command(Actor::Caller, Command::Hangup));
    let r = &step.machine;
    let t = transfer(r);
    assert_eq!(t.status, TransferStatus::Abandoned);
    assert_eq!(t.reason.as_deref(), Some("caller_hangup"));
    assert_eq!(step.transfers, std::slice::from_ref(t));
    assert_eq!(r.call.status, CallStatus::Ended);
    assert_eq!(r.call.open_transfer_id, None);
    assert!(r.placements.is_empty());
    assert!(r.timers.is_empty());
    assert!(r.engaged_agents().is_empty(), "B is no longer engaged");
    assert_eq!(kinds(&step), ["transfer.abandoned", "call.ended"]);
    assert_audience(&step.events[0], true, &[A, B]);
    assert_audience(&step.events[1], true, &[A, B]);
    assert_eq!(step.events[1].data["reason"], "caller_hangup");
    assert_eq!(
        step.effects,
        [
            Effect::LiveKit(LiveKitEffect::CloseRoom {
                room: CONSULT.into()
            }),
            Effect::LiveKit(LiveKitEffect::RemoveParticipant {
                room: HOLD.into(),
                identity: CALLER.into()
            }),
            Effect::LiveKit(LiveKitEffect::RemoveParticipant {
                room: CONSULT.into(),
                identity: A.into()
            }),
            Effect::LiveKit(LiveKitEffect::CloseRoom { room: MAIN.into() }),
            Effect::LiveKit(LiveKitEffect::CloseRoom { room: HOLD.into() }),
        ]
    );
    assert_conflict(
        r,
        T_DONE,
        by(B, Command::AcceptTransfer),
        "transfer_not_ringing",
    );
    assert_noop(r, T_INIT + RING, fire(TimerKey::TransferRing));
}

/// The call ending while B rings, in every mode and for every reason: B hears both the end
/// of the transfer and the end of the call; only a warm transfer has a consult room to close.
#[test]
fn the_call_ending_while_b_rings_tells_b_in_every_mode() {
    for mode in [
        TransferMode::Warm,
        TransferMode::Cold,
        TransferMode::Conference,
    ] {
        let m = transfer_ringing(mode);
        let caller_room = if mode == TransferMode::Conference {
            MAIN
        } else {
            HOLD
        };
        let a_room = if mode == TransferMode::Warm {
            CONSULT
        } else {
            MAIN
        };
        // The caller leaving for good ends it like a hang-up.
        let gone_caller = apply(&m, T_ANSWER, left(CALLER, caller_room, T_ANSWER)).machine;
        let endings = [
            (
                T_ANSWER,
                &m,
                Input::Command(Actor::Caller, Command::Hangup),
                TransferStatus::Abandoned,
                "caller_hangup",
            ),
            (
                T_ANSWER,
                &m,
                by(A, Command::Hangup),
                TransferStatus::Cancelled,
                "agent_hangup",
            ),
            (
                T_ANSWER,
                &m,
                Input::Command(Actor::System, Command::Hangup),
                TransferStatus::Cancelled,
                "system",
            ),
            (
                T_ANSWER + REJOIN,
                &gone_caller,
                fire(TimerKey::Rejoin(Party::Caller)),
                TransferStatus::Abandoned,
                "caller_lost",
            ),
        ];
        for (at, before, input, status, reason) in endings {
            let step = apply(before, at, input);
            let r = &step.machine;
            assert_eq!(r.call.status, CallStatus::Ended);
            assert_eq!(r.call.end_reason.as_deref(), Some(reason));
            let t = transfer(r);
            assert_eq!((t.status, t.reason.as_deref()), (status, Some(reason)));
            assert_eq!(step.transfers, std::slice::from_ref(t));
            let over = format!("transfer.{}", status.as_str());
            assert_eq!(kinds(&step), [over.as_str(), "call.ended"], "{mode:?}");
            assert_audience(&step.events[0], true, &[A, B]);
            assert_audience(&step.events[1], true, &[A, B]);
            let mut effects = vec![];
            if mode == TransferMode::Warm {
                effects.push(Effect::LiveKit(LiveKitEffect::CloseRoom {
                    room: CONSULT.into(),
                }));
            }
            effects.extend([
                Effect::LiveKit(LiveKitEffect::RemoveParticipant {
                    room: caller_room.into(),
                    identity: CALLER.into(),
                }),
                Effect::LiveKit(LiveKitEffect::RemoveParticipant {
                    room: a_room.into(),
                    identity: A.into(),
                }),
                Effect::LiveKit(LiveKitEffect::CloseRoom { room: MAIN.into() }),
                Effect::LiveKit(LiveKitEffect::CloseRoom { room: HOLD.into() }),
            ]);
            assert_eq!(step.effects, effects, "{mode:?} {reason}");
            assert!(r.engaged_agents().is_empty());
        }
    }
}

#[test]
fn caller_hanging_up_during_the_briefing_abandons_the_transfer_and_releases_b() {
    let m = transfer_briefing(TransferMode::Warm);
    let step = apply(&m, T_DONE, Input::Command(Actor::Caller, Command::Hangup));
    let r = &step.machine;
    assert_eq!(transfer(r).status, TransferStatus::Abandoned);
    assert_eq!(r.call.status, CallStatus::Ended);
    assert!(r.placements.is_empty());
    assert_eq!(kinds(&step), ["transfer.abandoned", "call.ended"]);
    assert_audience(&step.events[0], true, &[A, B]);
    assert_audience(&step.events[1], true, &[A, B]);
    assert!(step
        .effects
        .contains(&Effect::LiveKit(LiveKitEffect::RemoveParticipant {
            room: CONSULT.into(),
            identity: B.into()
        })));
    assert_conflict(
        r,
        T_DONE + 1,
        by(A, Command::CompleteTransfer),
        "transfer_ended",
    );
    assert_conflict(
        r,
        T_DONE + 1,
        by(A, Command::CancelTransfer),
        "transfer_ended",
    );
}

#[test]
fn caller_lost_mid_transfer_abandons_it() {
    let m = transfer_briefing(TransferMode::Warm);
    let m = apply(&m, T_DONE, left(CALLER, HOLD, T_DONE)).machine;
    let step = apply(&m, T_DONE + REJOIN, fire(TimerKey::Rejoin(Party::Caller)));
    assert_eq!(step.machine.call.end_reason.as_deref(), Some("caller_lost"));
    assert_eq!(transfer(&step.machine).status, TransferStatus::Abandoned);
}

#[test]
fn owner_hanging_up_mid_transfer_cancels_it() {
    let m = transfer_briefing(TransferMode::Warm);
    assert_forbidden(&m, T_DONE, by(B, Command::Hangup));
    let step = apply(&m, T_DONE, by(A, Command::Hangup));
    assert_eq!(transfer(&step.machine).status, TransferStatus::Cancelled);
    assert_eq!(
        transfer(&step.machine).reason.as_deref(),
        Some("agent_hangup")
    );
    assert_eq!(kinds(&step), ["transfer.cancelled", "call.ended"]);
}

#[test]
fn a_second_transfer_while_one_is_open_is_refused() {
    for m in [
        transfer_ringing(TransferMode::Warm),
        transfer_briefing(TransferMode::Warm),
        transfer_ringing(TransferMode::Cold),
        transfer_briefing(TransferMode::Conference),
    ] {
        let second = initiate_with("xfer-2", "room-consult-2", C, TransferMode::Warm);
        assert_conflict(&m, T_DONE, by(A, second), "transfer_open");
        // The same request again answers the same.
        let same = initiate(B, transfer(&m).mode);
        assert_noop(&m, T_DONE, by(A, same));
        // Nobody else can start one either.
        let other = initiate_with("xfer-3", "room-consult-3", C, TransferMode::Cold);
        assert_forbidden(&m, T_DONE, by(B, other.clone()));
        assert_forbidden(&m, T_DONE, Input::Command(Actor::Caller, other));
        assert_conflict(&m, T_DONE, by(A, Command::Hold), "not_active");
    }
}

#[test]
fn a_transfer_needs_an_owned_call_and_another_agent() {
    let queued = created().machine;
    assert_forbidden(&queued, 100, by(A, initiate(B, TransferMode::Warm)));
    let m = active_call(A);
    match refuse(&m, T_INIT, by(A, initiate(A, TransferMode::Warm))) {
        Rejection::Invalid(_) => {}
        r => panic!("expected Invalid, got {r:?}"),
    }
    assert_forbidden(&m, T_INIT, by(C, initiate(B, TransferMode::Warm)));
    assert_forbidden(
        &m,
        T_INIT,
        Input::Command(Actor::System, initiate(B, TransferMode::Warm)),
    );
}

/// Regression: repeating `InitiateTransfer` with the id of a transfer that had ended
/// re-opened it (the terminal record persisted again as `ringing`, B offered it again).
/// Repeating it after the end now answers the same, whatever the ending; a new id still
/// starts a new transfer.
#[test]
fn repeating_the_initiate_of_an_ended_transfer_changes_nothing() {
    let warm = transfer_ringing(TransferMode::Warm);
    let declined = apply(&warm, T_ANSWER, by(B, Command::DeclineTransfer)).machine;
    let timed_out = apply(
        &transfer_ringing(TransferMode::Cold),
        T_INIT + RING,
        fire(TimerKey::TransferRing),
    )
    .machine;
    let cancelled = apply(
        &transfer_briefing(TransferMode::Conference),
        T_DONE,
        by(A, Command::CancelTransfer),
    )
    .machine;
    let abandoned = apply(
        &warm,
        T_ANSWER,
        Input::Command(Actor::Caller, Command::Hangup),
    )
    .machine;
    for (m, status) in [
        (&declined, TransferStatus::Declined),
        (&timed_out, TransferStatus::TimedOut),
        (&cancelled, TransferStatus::Cancelled),
        (&abandoned, TransferStatus::Abandoned),
    ] {
        assert_eq!(transfer(m).status, status);
        let mode = transfer(m).mode;
        assert_noop(m, T_DONE + 1_000, by(A, initiate(B, mode)));
        // Whatever else the repeated request says, the id decides.
        assert_noop(m, T_DONE + 1_000, by(A, initiate(C, TransferMode::Warm)));
    }
    // A new transfer after the declined one starts normally.
    let again = initiate_with("xfer-2", "room-consult-2", B, TransferMode::Warm);
    let step = apply(&declined, T_DONE + 1_000, by(A, again));
    let t = transfer(&step.machine);
    assert_eq!(
        (t.transfer_id.as_str(), t.status),
        ("xfer-2", TransferStatus::Ringing)
    );
    assert_eq!(step.transfers, std::slice::from_ref(t));
    // After a completed transfer A no longer owns the call: the repeat is refused.
    let completed = apply(
        &transfer_briefing(TransferMode::Warm),
        T_DONE,
        by(A, Command::CompleteTransfer),
    )
    .machine;
    assert_forbidden(
        &completed,
        T_DONE + 1_000,
        by(A, initiate(B, TransferMode::Warm)),
    );
}

// ---------------------------------------------------------------------------------------
// Idempotency, stale and duplicate observations, authorization
// ---------------------------------------------------------------------------------------

#[test]
fn repeated_transfer_commands_answer_the_same_without_new_events() {
    let briefing = transfer_briefing(TransferMode::Warm);
    assert_noop(&briefing, T_DONE, by(B, Command::AcceptTransfer));
    let completed = apply(&briefing, T_DONE, by(A, Command::CompleteTransfer)).machine;
    assert_noop(&completed, T_DONE + 1, by(A, Command::CompleteTransfer));
    assert_noop(&completed, T_DONE + 1, by(B, Command::AcceptTransfer));
    assert_conflict(
        &completed,
        T_DONE + 1,
        by(A, Command::CancelTransfer),
        "transfer_ended",
    );
    assert_conflict(
        &completed,
        T_DONE + 1,
        by(B, Command::DeclineTransfer),
        "transfer_not_ringing",
    );

    let cancelled = apply(&briefing, T_DONE, by(A, Command::CancelTransfer)).machine;
    assert_noop(&cancelled, T_DONE + 1, by(A, Command::CancelTransfer));
    assert_conflict(
        &cancelled,
        T_DONE + 1,
        by(A, Command::CompleteTransfer),
        "transfer_ended",
    );

    let ringing = transfer_ringing(TransferMode::Conference);
    let accepted = apply(&ringing, T_ANSWER, by(B, Command::AcceptTransfer)).machine;
    assert_noop(&accepted, T_ANSWER + 1, by(B, Command::AcceptTransfer));
    assert_conflict(
        &accepted,
        T_ANSWER + 1,
        by(B, Command::DeclineTransfer),
        "transfer_not_ringing",
    );
}

#[test]
fn transfer_commands_without_a_transfer_conflict() {
    let m = active_call(A);
    for c in [
        Command::AcceptTransfer,
        Command::DeclineTransfer,
        Command::CompleteTransfer,
        Command::CancelTransfer,
    ] {
        assert_conflict(&m, 1_000, by(A, c), "no_transfer");
    }
}

#[test]
fn only_the_right_people_act_on_a_transfer() {
    let ringing = transfer_ringing(TransferMode::Warm);
    for who in [agent(A), agent(C), Actor::Caller, Actor::System] {
        for c in [Command::AcceptTransfer, Command::DeclineTransfer] {
            assert_forbidden(&ringing, T_ANSWER, Input::Command(who.clone(), c));
        }
    }
    let briefing = transfer_briefing(TransferMode::Warm);
    for who in [agent(B), agent(C), Actor::Caller, Actor::System] {
        for c in [Command::CompleteTransfer, Command::CancelTransfer] {
            assert_forbidden(&briefing, T_DONE, Input::Command(who.clone(), c));
        }
    }
    for who in [agent(B), agent(C), Actor::Caller] {
        for c in [Command::Hold, Command::Resume] {
            assert_forbidden(&briefing, T_DONE, Input::Command(who.clone(), c));
        }
    }
    assert_forbidden(&briefing, T_DONE, by(C, Command::Hangup));
}

#[test]
fn stale_livekit_observations_change_nothing() {
    let m = active_call(A);
    // A duplicate Joined of a confirmed party: no event, nothing but the time seen.
    let step = apply(&m, 400, joined(CALLER, MAIN, 300));
    assert!(step.events.is_empty() && step.effects.is_empty());
    // Someone unknown, or an agent not in the call.
    assert_noop(&m, 400, joined("stranger", MAIN, 400));
    assert_noop(&m, 400, joined(C, MAIN, 400));
    assert_noop(&m, 400, left(C, MAIN, 400));
    // The right party in the wrong room.
    assert_noop(&m, 400, joined(CALLER, HOLD, 400));
    assert_noop(&m, 400, left(CALLER, HOLD, 400));
    assert_noop(&m, 400, left(A, CONSULT, 400));
    // A Left older than the Joined that confirmed the party.
    assert_noop(&m, 400, left(CALLER, MAIN, 299));

    // Left, then an older Joined (reordered webhooks): the party stays gone.
    let step = apply(&m, 500, left(CALLER, MAIN, 500));
    assert_eq!(kinds(&step), ["participant.left"]);
    assert_audience(&step.events[0], true, &[A]);
    let gone_caller = step.machine;
    assert_noop(&gone_caller, 600, joined(CALLER, MAIN, 450));
    assert_noop(&gone_caller, 600, left(CALLER, MAIN, 500));
    let back = apply(&gone_caller, 600, joined(CALLER, MAIN, 550));
    assert_eq!(kinds(&back), ["participant.joined"]);
    assert!(back.machine.timers.is_empty());
}

#[test]
fn leaving_a_room_the_party_was_moved_out_of_changes_nothing() {
    let m = transfer_ringing(TransferMode::Warm);
    // The caller was moved to hold and A to consult; their Left from main is old news.
    assert_noop(&m, T_INIT + 200, left(CALLER, MAIN, T_INIT + 50));
    assert_noop(&m, T_INIT + 200, left(A, MAIN, T_INIT + 50));
    assert_noop(&m, T_INIT + 200, left(CALLER, MAIN, T_INIT + 200));
    // After a cancel the consult room is the old one.
    let back = apply(&m, T_DONE, by(A, Command::CancelTransfer)).machine;
    assert_noop(&back, T_DONE + 100, left(A, CONSULT, T_DONE + 50));
    assert_noop(&back, T_DONE + 100, left(CALLER, HOLD, T_DONE + 50));
    assert_noop(&back, T_DONE + 100, joined(A, CONSULT, T_DONE + 60));
}

#[test]
fn move_acknowledgements_confirm_only_the_current_move() {
    let m = active_call(A);
    let held = apply(&m, 1_000, by(A, Command::Hold)).machine;
    let to_hold = move_id(&held, &Party::Caller);
    let resumed = apply(&held, 2_000, by(A, Command::Resume)).machine;
    let to_main = move_id(&resumed, &Party::Caller);
    assert_ne!(to_hold, to_main);
    assert_noop(&resumed, 2_100, acked(Party::Caller, &to_hold));
    assert_noop(&resumed, 2_100, acked(Party::Caller, "mv-999"));
    assert_noop(&resumed, 2_100, acked(party(C), &to_main));
    let step = apply(&resumed, 2_100, acked(Party::Caller, &to_main));
    assert_eq!(kinds(&step), ["participant.joined"]);
    assert_eq!(step.events[0].data["acknowledged"], true);
    assert_eq!(step.events[0].data["room"], MAIN);
    assert_audience(&step.events[0], true, &[A]);
    let confirmed = step.machine;
    assert!(confirmed.placements[&Party::Caller].confirmed);
    assert!(!confirmed
        .timers
        .contains_key(&TimerKey::Arrival(Party::Caller)));
    assert_noop(&confirmed, 2_200, acked(Party::Caller, &to_main));
}

#[test]
fn timers_fired_early_disarmed_or_rearmed_change_nothing() {
    let m = active_call(A);
    // Nothing armed at all.
    for key in [
        TimerKey::Offer,
        TimerKey::TransferRing,
        TimerKey::Arrival(Party::Caller),
        TimerKey::Arrival(party(A)),
        TimerKey::Rejoin(Party::Caller),
        TimerKey::Rejoin(party(B)),
    ] {
        assert_noop(&m, 100_000, fire(key));
    }
    // Re-armed: the caller's arrival deadline moves with the second move.
    let held = apply(&m, 1_000, by(A, Command::Hold)).machine;
    let resumed = apply(&held, 5_000, by(A, Command::Resume)).machine;
    assert_eq!(
        resumed.timers.get(&TimerKey::Arrival(Party::Caller)),
        Some(&(5_000 + MOVE))
    );
    assert_noop(
        &resumed,
        1_000 + MOVE,
        fire(TimerKey::Arrival(Party::Caller)),
    );
    // Disarmed by the arrival.
    let arrived = apply(&resumed, 5_100, joined(CALLER, MAIN, 5_100)).machine;
    assert_noop(
        &arrived,
        5_000 + MOVE,
        fire(TimerKey::Arrival(Party::Caller)),
    );
    // Fired early.
    let ringing = transfer_ringing(TransferMode::Cold);
    assert_noop(&ringing, T_INIT + 1, fire(TimerKey::TransferRing));
}

#[test]
fn disconnects_of_agents_not_in_the_call_change_nothing() {
    let m = transfer_ringing(TransferMode::Warm);
    assert_noop(&m, T_ANSWER, gone(C));
    let active = active_call(A);
    assert_noop(&active, 1_000, gone(B));
}

/// Regression: a duplicated LiveKit `participant_joined` webhook (same `at` as one processed
/// before the caller was moved to hold and back) confirmed the new main-room placement. A
/// placement records when its move was issued (`placed_at`); LiveKit stamps whole seconds,
/// so a Joined whose second ended before that (`at + 999 < placed_at`) is ignored, while
/// one from the move's own second counts.
#[test]
fn a_duplicate_joined_webhook_does_not_confirm_a_later_move() {
    let m = active_call(A);
    let held = apply(&m, 1_000, by(A, Command::Hold)).machine;
    assert_eq!(held.placements[&Party::Caller].placed_at, 1_000);
    let resumed = apply(&held, 2_500, by(A, Command::Resume)).machine;
    let caller = &resumed.placements[&Party::Caller];
    assert_eq!((caller.placed_at, caller.confirmed), (2_500, false));
    assert_noop(&resumed, 2_600, joined(CALLER, MAIN, 300));
    // Still in the second before the move: stale, even though newer than anything seen.
    assert_noop(&resumed, 2_600, joined(CALLER, MAIN, 1_000));
    assert_noop(&resumed, 2_600, joined(CALLER, MAIN, 1_500));
    // From the second the move was issued in: the arrival.
    for at in [2_000, 2_500, 2_600] {
        let step = apply(&resumed, 2_600, joined(CALLER, MAIN, at));
        assert_eq!(kinds(&step), ["participant.joined"], "at {at}");
        let caller = &step.machine.placements[&Party::Caller];
        assert!(caller.confirmed);
        assert_eq!(caller.last_observed, at);
        assert!(step.machine.timers.is_empty());
    }
    // The same rule for an agent's move, and in the consult room.
    let ringing = transfer_ringing(TransferMode::Warm);
    let accepted = apply(&ringing, 5_000, by(B, Command::AcceptTransfer)).machine;
    assert_eq!(accepted.placements[&party(B)].placed_at, 5_000);
    assert_noop(&accepted, 5_100, joined(B, CONSULT, 3_999));
    let step = apply(&accepted, 5_100, joined(B, CONSULT, 4_001));
    assert_eq!(kinds(&step), ["participant.joined"]);
}

/// Regression: a late LiveKit `participant_left` about a stay that ended before the move was
/// issued must not un-confirm a placement the party acknowledged (`Left` follows the same
/// `placed_at` rule as `Joined`). Caller joins main at 300; `Hold` at 1000; `Resume` at
/// 2000; the caller acknowledges at 2100; `Left{caller, main, at: 1000}` redelivered at 2200.
#[test]
fn a_late_left_webhook_does_not_unconfirm_an_acknowledged_later_move() {
    let m = active_call(A);
    let held = apply(&m, 1_000, by(A, Command::Hold)).machine;
    assert_noop(&held, 1_100, left(CALLER, MAIN, 1_000));
    let resumed = apply(&held, 2_000, by(A, Command::Resume)).machine;
    let to_main = move_id(&resumed, &Party::Caller);
    let confirmed = apply(&resumed, 2_100, acked(Party::Caller, &to_main)).machine;
    assert!(confirmed.placements[&Party::Caller].confirmed);
    assert_noop(&confirmed, 2_200, left(CALLER, MAIN, 1_000));
}

fn joined_as(identity: &str, room: &str, at: Millis, session: &str) -> Input {
    Input::Observe(Observation::Joined {
        identity: identity.into(),
        room: room.into(),
        at,
        session: Some(session.into()),
    })
}

fn left_as(identity: &str, room: &str, at: Millis, session: &str) -> Input {
    Input::Observe(Observation::Left {
        identity: identity.into(),
        room: room.into(),
        at,
        session: Some(session.into()),
    })
}

/// Regression (found by the chaos run): LiveKit stamps webhooks in whole seconds, so the
/// late `participant_left` of the caller's first stay in the main room can carry the same
/// second as its return there. The leave names the participant SID of that first stay, not
/// of the session that confirmed the return: it is stale and changes nothing. A leave of the
/// confirming session still un-confirms, and a reconnect (a new session joining while the
/// old one is there) makes the old session's leave stale too.
#[test]
fn a_leave_of_an_earlier_session_in_the_same_second_does_not_unconfirm() {
    let m = active_call(A);
    let m = apply(&m, 1_000, joined_as(CALLER, MAIN, 1_000, "PA_first")).machine;
    let held = apply(&m, 1_100, by(A, Command::Hold)).machine;
    let resumed = apply(&held, 1_300, by(A, Command::Resume)).machine;
    let back = apply(&resumed, 1_400, joined_as(CALLER, MAIN, 1_000, "PA_second"));
    assert_eq!(kinds(&back), ["participant.joined"]);
    let back = back.machine;
    assert!(back.placements[&Party::Caller].confirmed);
    // The first stay's leave, redelivered late with the same second.
    assert_noop(&back, 1_500, left_as(CALLER, MAIN, 1_000, "PA_first"));
    // The confirming session's own leave counts.
    let gone = apply(&back, 1_600, left_as(CALLER, MAIN, 1_000, "PA_second")).machine;
    assert!(!gone.placements[&Party::Caller].confirmed);
    // A reconnect: the new session joins while the old one is there; the old one's leave
    // (LiveKit's duplicate-identity kick) is stale.
    let again = apply(&back, 1_600, joined_as(CALLER, MAIN, 1_000, "PA_third")).machine;
    assert!(again.placements[&Party::Caller].confirmed);
    assert_noop(&again, 1_700, left_as(CALLER, MAIN, 1_000, "PA_second"));
}

#[test]
fn the_caller_never_sees_the_summary_or_the_consult_room() {
    // `apply` checks every step for the caller's privacy; walk every flow through it and
    // count what the caller hears.
    let mut caller_events = vec![];
    let mut record = |step: &Step| {
        caller_events.extend(
            step.events
                .iter()
                .filter(|e| e.audience.caller)
                .map(|e| e.kind.clone()),
        );
        step.machine.clone()
    };
    for mode in [
        TransferMode::Warm,
        TransferMode::Cold,
        TransferMode::Conference,
    ] {
        let m = active_call(A);
        let m = record(&apply(&m, T_INIT, by(A, initiate(B, mode))));
        let m = record(&apply(&m, T_ANSWER, by(B, Command::AcceptTransfer)));
        if let Some(room) = m.room_of_party(&party(B)) {
            let m = record(&apply(&m, T_ANSWER + 1, joined(B, &room, T_ANSWER + 1)));
            let m = record(&apply(&m, T_ANSWER + 2, left(B, &room, T_ANSWER + 2)));
            let m = record(&apply(
                &m,
                T_ANSWER + 3,
                Input::Observe(Observation::SummaryStored {
                    summary_id: "sum-2".into(),
                    summary_text: String::new(),
                    briefing: Value::Null,
                }),
            ));
            if mode != TransferMode::Cold {
                record(&apply(&m, T_DONE, by(A, Command::CompleteTransfer)));
            }
        }
    }
    assert!(!caller_events
        .iter()
        .any(|k| k == "transfer.offered" || k == "summary.updated"));
    assert!(caller_events.iter().any(|k| k == "transfer.completed"));
}

/// The privacy check used by every step can fail: a summary slipped into an event the
/// caller receives is caught.
#[test]
#[should_panic(expected = "the caller receives transfer.accepted")]
fn the_privacy_check_catches_a_summary_sent_to_the_caller() {
    let m = transfer_ringing(TransferMode::Warm);
    let mut step = apply(&m, T_ANSWER, by(B, Command::AcceptTransfer));
    assert!(step.events[0].audience.caller);
    step.events[0].data["summaryText"] = json!(SUMMARY);
    check_step(Some(&m), T_ANSWER, &step);
}

// ---------------------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------------------

const AGENTS: [&str; 3] = [A, B, C];

/// Who issues a generated command; the symbolic ones resolve against the current state so
/// that sequences make progress.
#[derive(Debug, Clone)]
enum Who {
    Caller,
    System,
    Agent(usize),
    Owner,
    Target,
    Offered,
}

#[derive(Debug, Clone)]
enum Cmd {
    Offer(usize),
    AcceptCall,
    DeclineCall,
    Hold,
    Resume,
    Hangup,
    /// `reuse`: repeat the latest transfer's id (open or ended) when there is one.
    Initiate {
        to: usize,
        mode: TransferMode,
        reuse: bool,
    },
    AcceptTransfer,
    DeclineTransfer,
    Complete,
    Cancel,
}

#[derive(Debug, Clone)]
enum Ident {
    Caller,
    Agent(usize),
    Stranger,
}

#[derive(Debug, Clone)]
enum RoomPick {
    /// Where the identity is placed now (if it is).
    Current,
    Main,
    Hold,
    /// The latest transfer's consult room.
    Consult,
    /// An earlier transfer's consult room.
    OldConsult(usize),
    Elsewhere,
}

#[derive(Debug, Clone)]
enum PartyPick {
    Caller,
    Agent(usize),
}

#[derive(Debug, Clone)]
enum KeyPick {
    Offer,
    TransferRing,
    Arrival(PartyPick),
    Rejoin(PartyPick),
}

#[derive(Debug, Clone)]
enum Op {
    Command(Who, Cmd),
    /// LiveKit reports, `lag` ms after the fact.
    Joined(Ident, RoomPick, Millis),
    Left(Ident, RoomPick, Millis),
    /// An acknowledgement of the current move, or of move number `n` (mostly stale).
    Ack(PartyPick, Option<u64>),
    Gone(usize),
    /// A timer fires; `at_due` jumps the clock to its due time first.
    Fire(KeyPick, bool),
    Summary(usize),
    /// A LiveKit observation delivered again.
    Replay(usize),
}

fn who_strategy() -> impl Strategy<Value = Who> {
    prop_oneof![
        4 => Just(Who::Owner),
        3 => Just(Who::Target),
        1 => Just(Who::Offered),
        1 => Just(Who::Caller),
        1 => Just(Who::System),
        2 => (0..3usize).prop_map(Who::Agent),
    ]
}

fn mode_strategy() -> impl Strategy<Value = TransferMode> {
    prop_oneof![
        Just(TransferMode::Warm),
        Just(TransferMode::Cold),
        Just(TransferMode::Conference),
    ]
}

fn cmd_strategy() -> impl Strategy<Value = Cmd> {
    prop_oneof![
        1 => (0..3usize).prop_map(Cmd::Offer),
        2 => Just(Cmd::AcceptCall),
        1 => Just(Cmd::DeclineCall),
        1 => Just(Cmd::Hold),
        1 => Just(Cmd::Resume),
        1 => Just(Cmd::Hangup),
        4 => (0..3usize, mode_strategy(), prop::bool::weighted(0.2))
            .prop_map(|(to, mode, reuse)| Cmd::Initiate { to, mode, reuse }),
        3 => Just(Cmd::AcceptTransfer),
        1 => Just(Cmd::DeclineTransfer),
        2 => Just(Cmd::Complete),
        1 => Just(Cmd::Cancel),
    ]
}

fn ident_strategy() -> impl Strategy<Value = Ident> {
    prop_oneof![
        3 => Just(Ident::Caller),
        4 => (0..3usize).prop_map(Ident::Agent),
        1 => Just(Ident::Stranger),
    ]
}

fn room_strategy() -> impl Strategy<Value = RoomPick> {
    prop_oneof![
        6 => Just(RoomPick::Current),
        2 => Just(RoomPick::Main),
        2 => Just(RoomPick::Hold),
        3 => Just(RoomPick::Consult),
        1 => (0..4usize).prop_map(RoomPick::OldConsult),
        1 => Just(RoomPick::Elsewhere),
    ]
}

fn party_strategy() -> impl Strategy<Value = PartyPick> {
    prop_oneof![
        Just(PartyPick::Caller),
        (0..3usize).prop_map(PartyPick::Agent),
    ]
}

fn key_strategy() -> impl Strategy<Value = KeyPick> {
    prop_oneof![
        Just(KeyPick::Offer),
        Just(KeyPick::TransferRing),
        party_strategy().prop_map(KeyPick::Arrival),
        party_strategy().prop_map(KeyPick::Rejoin),
    ]
}

fn lag_strategy() -> impl Strategy<Value = Millis> {
    prop_oneof![3 => Just(0), 2 => 0..3_000i64]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (who_strategy(), cmd_strategy()).prop_map(|(w, c)| Op::Command(w, c)),
        // The commands that move a call and a transfer forward, by the right people.
        2 => (0..3usize).prop_map(|i| Op::Command(Who::System, Cmd::Offer(i))),
        2 => (0..3usize, mode_strategy()).prop_map(|(to, mode)| Op::Command(
            Who::Owner,
            Cmd::Initiate { to, mode, reuse: false }
        )),
        3 => Just(Op::Command(Who::Target, Cmd::AcceptTransfer)),
        2 => Just(Op::Command(Who::Owner, Cmd::Complete)),
        6 => (ident_strategy(), room_strategy(), lag_strategy())
            .prop_map(|(i, r, l)| Op::Joined(i, r, l)),
        2 => (ident_strategy(), room_strategy(), lag_strategy())
            .prop_map(|(i, r, l)| Op::Left(i, r, l)),
        4 => (party_strategy(), prop::option::weighted(0.3, 1..12u64))
            .prop_map(|(p, n)| Op::Ack(p, n)),
        1 => (0..3usize).prop_map(Op::Gone),
        4 => (key_strategy(), prop::bool::weighted(0.7)).prop_map(|(k, d)| Op::Fire(k, d)),
        1 => (0..3usize).prop_map(Op::Summary),
        1 => (0..64usize).prop_map(Op::Replay),
    ]
}

/// How far the clock moves before an operation.
fn dt_strategy() -> impl Strategy<Value = Millis> {
    prop_oneof![3 => Just(0), 4 => 1..3_000i64, 1 => 10_000..40_000i64]
}

/// Drives one machine through generated operations, checking everything on the way.
struct Run {
    m: CallMachine,
    now: Millis,
    /// Transfers started so far (fresh ids and consult rooms are numbered).
    started: usize,
    /// Every transfer record the machine asked to persist, latest version by id.
    persisted: BTreeMap<String, Transfer>,
    /// LiveKit observations delivered so far (for replays).
    livekit: Vec<Observation>,
}

impl Run {
    fn new() -> Run {
        let step = created();
        let run = Run {
            m: step.machine,
            now: 0,
            started: 0,
            persisted: BTreeMap::new(),
            livekit: vec![],
        };
        check_invariants(&run.m, &run.persisted);
        run
    }

    fn agent_of(&self, who: &Who) -> Actor {
        let pick = |id: Option<&String>, fallback: &str| {
            Actor::Agent(id.cloned().unwrap_or_else(|| fallback.to_string()))
        };
        match who {
            Who::Caller => Actor::Caller,
            Who::System => Actor::System,
            Who::Agent(i) => agent(AGENTS[*i]),
            Who::Owner => pick(self.m.call.owner_id.as_ref(), A),
            Who::Target => pick(self.m.transfer.as_ref().map(|t| &t.to_agent_id), B),
            Who::Offered => pick(self.m.call.offered_to.as_ref(), C),
        }
    }

    fn command(&mut self, cmd: &Cmd) -> Command {
        match cmd {
            Cmd::Offer(i) => Command::Offer {
                agent_id: AGENTS[*i].into(),
            },
            Cmd::AcceptCall => Command::AcceptCall,
            Cmd::DeclineCall => Command::DeclineCall,
            Cmd::Hold => Command::Hold,
            Cmd::Resume => Command::Resume,
            Cmd::Hangup => Command::Hangup,
            Cmd::Initiate { to, mode, reuse } => {
                let (id, room) = match &self.m.transfer {
                    Some(t) if *reuse => (t.transfer_id.clone(), t.transfer_room.clone()),
                    _ => {
                        self.started += 1;
                        (
                            format!("xfer-{}", self.started),
                            format!("consult-xfer-{}", self.started),
                        )
                    }
                };
                initiate_with(&id, &room, AGENTS[*to], *mode)
            }
            Cmd::AcceptTransfer => Command::AcceptTransfer,
            Cmd::DeclineTransfer => Command::DeclineTransfer,
            Cmd::Complete => Command::CompleteTransfer,
            Cmd::Cancel => Command::CancelTransfer,
        }
    }

    fn identity(ident: &Ident) -> String {
        match ident {
            Ident::Caller => CALLER.into(),
            Ident::Agent(i) => AGENTS[*i].into(),
            Ident::Stranger => "stranger".into(),
        }
    }

    fn room(&self, identity: &str, room: &RoomPick) -> String {
        match room {
            RoomPick::Current => {
                let p = if identity == CALLER {
                    Party::Caller
                } else {
                    party(identity)
                };
                self.m.room_of_party(&p).unwrap_or_else(|| MAIN.to_string())
            }
            RoomPick::Main => MAIN.into(),
            RoomPick::Hold => HOLD.into(),
            RoomPick::Consult => self
                .m
                .transfer
                .as_ref()
                .map_or_else(|| "consult-none".into(), |t| t.transfer_room.clone()),
            RoomPick::OldConsult(i) => format!("consult-xfer-{}", 1 + i % self.started.max(1)),
            RoomPick::Elsewhere => "room-elsewhere".into(),
        }
    }

    fn party(pick: &PartyPick) -> Party {
        match pick {
            PartyPick::Caller => Party::Caller,
            PartyPick::Agent(i) => party(AGENTS[*i]),
        }
    }

    /// The input for an operation (may move the clock to a timer's due time).
    fn input(&mut self, op: &Op) -> Input {
        match op {
            Op::Command(who, cmd) => {
                let actor = self.agent_of(who);
                Input::Command(actor, self.command(cmd))
            }
            Op::Joined(ident, room, lag) | Op::Left(ident, room, lag) => {
                let identity = Run::identity(ident);
                let room = self.room(&identity, room);
                let at = (self.now - lag).max(0);
                let obs = if matches!(op, Op::Joined(..)) {
                    Observation::Joined {
                        identity,
                        room,
                        at,
                        session: None,
                    }
                } else {
                    Observation::Left {
                        identity,
                        room,
                        at,
                        session: None,
                    }
                };
                self.livekit.push(obs.clone());
                Input::Observe(obs)
            }
            Op::Replay(i) => match self.livekit.get(i % self.livekit.len().max(1)) {
                Some(obs) => Input::Observe(obs.clone()),
                None => gone("nobody"),
            },
            Op::Ack(pick, n) => {
                let p = Run::party(pick);
                let move_id = match n {
                    None => self
                        .m
                        .placements
                        .get(&p)
                        .map_or_else(|| "mv-0".into(), |pl| pl.move_id.clone()),
                    Some(n) => format!("mv-{}", 1 + n % self.m.moves.max(1)),
                };
                acked(p, &move_id)
            }
            Op::Gone(i) => gone(AGENTS[*i]),
            Op::Fire(key, at_due) => {
                let key = match key {
                    KeyPick::Offer => TimerKey::Offer,
                    KeyPick::TransferRing => TimerKey::TransferRing,
                    KeyPick::Arrival(p) => TimerKey::Arrival(Run::party(p)),
                    KeyPick::Rejoin(p) => TimerKey::Rejoin(Run::party(p)),
                };
                if *at_due {
                    if let Some(due) = self.m.timers.get(&key) {
                        self.now = self.now.max(*due);
                    }
                }
                fire(key)
            }
            Op::Summary(i) => Input::Observe(Observation::SummaryStored {
                summary_id: format!("sum-{i}"),
                summary_text: String::new(),
                briefing: Value::Null,
            }),
        }
    }

    fn step(&mut self, dt: Millis, op: &Op) {
        self.now += dt;
        let input = self.input(op);
        self.apply(input);
    }

    /// Applies one input and checks the step, the answer to a repetition, and the state.
    fn apply(&mut self, input: Input) {
        let before = self.m.clone();
        let now = self.now;
        let expect = expectation(&before, now, &input);
        let result = before.handle(now, input.clone());
        assert_eq!(
            result,
            before.handle(now, input.clone()),
            "handle is not deterministic"
        );
        let step = match (result, expect) {
            (Err(r), _) => {
                assert!(
                    matches!(input, Input::Command(..)),
                    "observation refused: {r:?}"
                );
                if expect == Expect::Forbidden {
                    assert!(
                        matches!(r, Rejection::Forbidden(_)),
                        "{input:?}: expected Forbidden, got {r:?}"
                    );
                }
                return;
            }
            (Ok(step), Expect::Refused | Expect::Forbidden) => panic!(
                "{input:?} at {now} should be refused; accepted with {:?}",
                kinds(&step)
            ),
            (Ok(step), Expect::Nothing) => {
                assert!(
                    step.events.is_empty() && step.effects.is_empty(),
                    "{input:?} at {now} should change nothing: {:?} {:?}",
                    kinds(&step),
                    step.effects
                );
                assert_eq!(step.machine, before, "{input:?} at {now} changed the state");
                step
            }
            (Ok(step), Expect::Silent) => {
                assert!(
                    step.events.is_empty() && step.effects.is_empty(),
                    "{input:?} at {now} is a duplicate: {:?}",
                    kinds(&step)
                );
                step
            }
            (Ok(step), Expect::Anything) => step,
        };
        check_step(Some(&before), now, &step);
        check_effects_and_audiences(&before, now, &step);

        // A transition persists the transfer exactly when it changed it, and a transfer
        // that reached a terminal status never changes again.
        if step.machine.transfer != before.transfer {
            assert_eq!(
                step.transfers,
                step.machine
                    .transfer
                    .clone()
                    .into_iter()
                    .collect::<Vec<_>>(),
                "changed transfer not persisted"
            );
        }
        assert!(step.transfers.len() <= 1);
        for t in &step.transfers {
            assert_eq!(Some(t), step.machine.transfer.as_ref());
            if let Some(old) = self.persisted.get(&t.transfer_id) {
                if old.status.is_terminal() {
                    assert_eq!(old, t, "terminal transfer {} changed", t.transfer_id);
                }
            }
            self.persisted.insert(t.transfer_id.clone(), t.clone());
        }

        // Repeating an accepted command answers the same and changes nothing (offering and
        // declining a call are not repeatable: the second one finds the call moved on).
        if let Input::Command(_, cmd) = &input {
            let again = step.machine.handle(now, input.clone());
            let repeatable = !matches!(cmd, Command::Offer { .. } | Command::DeclineCall);
            match again {
                Ok(s) => {
                    assert!(
                        s.events.is_empty() && s.effects.is_empty() && s.transfers.is_empty(),
                        "repeated {cmd:?} emitted {:?}",
                        kinds(&s)
                    );
                    assert_eq!(
                        s.machine, step.machine,
                        "repeated {cmd:?} changed the state"
                    );
                }
                Err(r) => assert!(!repeatable, "repeated {cmd:?} was refused: {r:?}"),
            }
        }

        self.m = step.machine;
        check_invariants(&self.m, &self.persisted);
    }

    /// Fires every armed timer at its due time until none is left, then checks that no
    /// transfer stays open (but a briefing waiting for A) and nobody is left unconfirmed.
    fn drain(&mut self) {
        for _ in 0..64 {
            let Some((key, due)) = self
                .m
                .timers
                .iter()
                .min_by_key(|(_, due)| **due)
                .map(|(k, d)| (k.clone(), *d))
            else {
                break;
            };
            self.now = self.now.max(due);
            self.apply(fire(key));
        }
        let m = &self.m;
        assert!(m.timers.is_empty(), "timers keep re-arming: {:?}", m.timers);
        if let Some(t) = m.open_transfer() {
            assert!(
                t.status == TransferStatus::Briefing && t.mode != TransferMode::Cold,
                "transfer {} stays {:?} with no deadline",
                t.transfer_id,
                t.status
            );
        }
        assert_ne!(m.call.status, CallStatus::Ringing);
        for (p, pl) in &m.placements {
            assert!(
                pl.confirmed,
                "{p:?} stays expected in {:?} with no deadline",
                pl.space
            );
        }
    }
}

fn identity_of(m: &CallMachine, p: &Party) -> String {
    match p {
        Party::Caller => m.call.caller_id.clone(),
        Party::Agent(id) => id.clone(),
    }
}

/// Checks that a step tells and does what its state change implies: a move event (to the
/// moved party only) for every new or changed placement, stamped with the time it was
/// issued (a retry keeps the original time), a removal (and, for an agent, a
/// `participant.released`) for every party taken out, the caller, the target and the owner
/// told when a transfer ends, a consult room opened and closed only for a warm transfer,
/// the end of the call told to every agent involved (a ringing target too), routing asked
/// exactly when the call goes back to the queue, and no event for an agent the call does
/// not involve.
fn check_effects_and_audiences(before: &CallMachine, now: Millis, step: &Step) {
    let after = &step.machine;
    let ended = after.call.status == CallStatus::Ended;

    // Moves: one `participant.move` per new or re-sent placement, matching it.
    let moves = all(step, "participant.move");
    let mut moved = 0;
    for (p, pl) in &after.placements {
        let prev = before.placements.get(p);
        match prev {
            Some(b) if b.move_id == pl.move_id => {
                assert_eq!(
                    (b.space, b.placed_at, b.retries),
                    (pl.space, pl.placed_at, pl.retries),
                    "{p:?}'s placement changed without a move"
                );
                continue;
            }
            Some(b) if b.space == pl.space => {
                // The same room again: only the caller's one retry of an arrival.
                assert_eq!(*p, Party::Caller, "{p:?} re-sent to the same room");
                assert_eq!((b.retries, pl.retries), (0, 1), "one retry");
                assert_eq!(pl.placed_at, b.placed_at, "a retry is the same move");
                assert!(!b.confirmed && !pl.confirmed);
            }
            _ => {
                assert_eq!(pl.placed_at, now, "{p:?} placed at the wrong time");
                assert_eq!(pl.retries, 0);
                assert!(!pl.confirmed, "{p:?} confirmed before it was told to move");
            }
        }
        moved += 1;
        let identity = identity_of(after, p);
        let e = moves
            .iter()
            .find(|e| e.data["identity"] == identity.as_str())
            .unwrap_or_else(|| panic!("{p:?} moved without a participant.move"));
        assert_eq!(e.data["moveId"], pl.move_id.as_str());
        assert_eq!(
            Some(e.data["room"].as_str().unwrap_or("")),
            after.room_of_party(p).as_deref()
        );
        let only = match p {
            Party::Caller => Audience {
                caller: true,
                agents: vec![],
            },
            Party::Agent(id) => Audience {
                caller: false,
                agents: vec![id.clone()],
            },
        };
        assert_eq!(e.audience, only, "a move goes to the moved party only");
    }
    assert_eq!(
        moves.len(),
        moved,
        "participant.move without a new placement"
    );

    // Removals: everyone taken out is removed from the room they were expected in.
    for p in before.placements.keys() {
        if after.placements.contains_key(p) {
            continue;
        }
        let identity = identity_of(before, p);
        let removal = Effect::LiveKit(LiveKitEffect::RemoveParticipant {
            room: before.room_of_party(p).expect("placed before"),
            identity: identity.clone(),
        });
        assert!(
            step.effects.contains(&removal),
            "{p:?} left placed in LiveKit"
        );
        if !ended {
            let released = all(step, "participant.released");
            assert!(
                released
                    .iter()
                    .any(|e| e.data["agentId"] == identity.as_str()
                        && e.audience.agents == [identity.clone()]
                        && !e.audience.caller),
                "{p:?} taken out without participant.released"
            );
        }
    }

    // A transfer that ends: everybody concerned is told, and its consult room (warm only)
    // closes.
    let mut closed_consult: Option<&str> = None;
    if let Some(t) = before.open_transfer() {
        let now_t = after
            .transfer
            .as_ref()
            .expect("a transfer is never dropped");
        if now_t.status.is_terminal() {
            assert_eq!(now_t.transfer_id, t.transfer_id, "{:?}", kinds(step));
            let kind = format!("transfer.{}", now_t.status.as_str());
            let e = the(step, &kind);
            assert!(e.audience.caller, "{kind} not told to the caller");
            assert!(
                e.audience.agents.contains(&t.to_agent_id),
                "{kind} not told to the target"
            );
            let owner_gone = all(step, "participant.released").iter().any(|r| {
                r.data["agentId"] == t.from_agent_id.as_str() && r.data["reason"] == "disconnected"
            });
            assert!(
                owner_gone || e.audience.agents.contains(&t.from_agent_id),
                "{kind} not told to the owner"
            );
            if t.mode == TransferMode::Warm {
                closed_consult = Some(t.transfer_room.as_str());
            }
        }
    }
    // Rooms: a consult room is created only when a warm transfer starts, and closed only
    // when it ends; the main and hold rooms close only when the call ends. Each once.
    let opened_consult = after
        .open_transfer()
        .filter(|t| {
            t.mode == TransferMode::Warm
                && before.transfer.as_ref().map(|b| &b.transfer_id) != Some(&t.transfer_id)
        })
        .map(|t| t.transfer_room.as_str());
    let mut want_rooms: Vec<Effect> = vec![];
    if let Some(room) = opened_consult {
        want_rooms.push(Effect::LiveKit(LiveKitEffect::EnsureRoom {
            room: room.into(),
        }));
    }
    if let Some(room) = closed_consult {
        want_rooms.push(Effect::LiveKit(LiveKitEffect::CloseRoom {
            room: room.into(),
        }));
    }
    if ended && before.call.status != CallStatus::Ended {
        for room in [&after.call.main_room, &after.call.hold_room] {
            want_rooms.push(Effect::LiveKit(LiveKitEffect::CloseRoom {
                room: room.clone(),
            }));
        }
    }
    let rooms: Vec<Effect> = step
        .effects
        .iter()
        .filter(|e| {
            matches!(
                e,
                Effect::LiveKit(LiveKitEffect::EnsureRoom { .. })
                    | Effect::LiveKit(LiveKitEffect::CloseRoom { .. })
            )
        })
        .cloned()
        .collect();
    assert_eq!(
        rooms,
        want_rooms,
        "rooms opened/closed by {:?} ({:?} -> {:?})",
        kinds(step),
        before.open_transfer().map(|t| (t.mode, t.status)),
        after.transfer.as_ref().map(|t| (t.mode, t.status))
    );

    // The call ends: once, told to the caller and to every agent involved just before (the
    // owner, the offered agent, the transfer's target even while it rang).
    if ended && before.call.status != CallStatus::Ended {
        let e = the(step, "call.ended");
        assert!(e.audience.caller);
        let mut got = e.audience.agents.clone();
        got.sort();
        let mut want = before.engaged_agents();
        want.sort();
        assert_eq!(got, want, "audience of call.ended");
    }

    // Routing is asked for an agent exactly when the call goes back to the queue.
    let requeued =
        after.call.status == CallStatus::Queued && before.call.status != CallStatus::Queued;
    assert_eq!(
        step.effects
            .contains(&Effect::Routing(RoutingEffect::RequestAgent)),
        requeued,
        "RequestAgent vs {:?} -> {:?}",
        before.call.status,
        after.call.status
    );
    if requeued {
        assert!(the(step, "call.queued").audience.caller);
    }

    // Only agents the call involves (before or after) hear about it.
    let mut involved = before.engaged_agents();
    involved.extend(after.engaged_agents());
    for t in before.transfer.iter().chain(after.transfer.iter()) {
        involved.push(t.from_agent_id.clone());
        involved.push(t.to_agent_id.clone());
    }
    involved.extend(before.call.offered_to.clone());
    for e in &step.events {
        for a in &e.audience.agents {
            assert!(involved.contains(a), "{} sent to uninvolved {a}", e.kind);
        }
    }
}

/// What a generated input must do, judged from the state before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Anything allowed by the invariants.
    Anything,
    /// Accepted, with no event and no effect (bookkeeping may change).
    Silent,
    /// Accepted, and nothing changes at all.
    Nothing,
    /// Refused.
    Refused,
    /// Refused as forbidden.
    Forbidden,
}

fn expectation(m: &CallMachine, now: Millis, input: &Input) -> Expect {
    match input {
        Input::Command(actor, cmd) => command_expectation(m, actor, cmd),
        Input::Observe(obs) => observation_expectation(m, now, obs),
    }
}

fn command_expectation(m: &CallMachine, actor: &Actor, cmd: &Command) -> Expect {
    let ended = m.call.status == CallStatus::Ended;
    let owner = m.call.owner_id.as_deref();
    let t = m.transfer.as_ref();
    match (actor, cmd) {
        (_, Command::Hangup) if ended => Expect::Nothing,
        (Actor::Caller, Command::Hangup) | (Actor::System, Command::Hangup) => Expect::Anything,
        (Actor::Caller, _) => Expect::Refused,
        (Actor::System, Command::Offer { .. }) => Expect::Anything,
        (Actor::System, _) => Expect::Refused,
        (Actor::Agent(_), Command::Offer { .. }) => Expect::Forbidden,
        (Actor::Agent(a), Command::AcceptCall) if owner == Some(a.as_str()) => Expect::Nothing,
        (Actor::Agent(a), Command::AcceptCall)
            if m.call.status == CallStatus::Ringing
                && m.call.offered_to.as_deref() != Some(a.as_str()) =>
        {
            Expect::Refused
        }
        (Actor::Agent(a), Command::DeclineCall)
            if m.call.offered_to.as_deref() != Some(a.as_str()) =>
        {
            Expect::Refused
        }
        (
            Actor::Agent(a),
            Command::Hold | Command::Resume | Command::InitiateTransfer { .. } | Command::Hangup,
        ) if owner != Some(a.as_str()) => Expect::Forbidden,
        // The owner repeating the latest transfer's initiate, open or ended: same answer.
        (Actor::Agent(_), Command::InitiateTransfer { transfer_id, .. })
            if t.is_some_and(|t| t.transfer_id == *transfer_id) =>
        {
            Expect::Nothing
        }
        (Actor::Agent(a), Command::AcceptTransfer | Command::DeclineTransfer)
            if t.is_some_and(|t| t.to_agent_id != *a) =>
        {
            Expect::Forbidden
        }
        (Actor::Agent(a), Command::CompleteTransfer | Command::CancelTransfer)
            if t.is_some_and(|t| t.from_agent_id != *a) =>
        {
            Expect::Forbidden
        }
        (
            _,
            Command::AcceptTransfer
            | Command::DeclineTransfer
            | Command::CompleteTransfer
            | Command::CancelTransfer,
        ) if t.is_none() => Expect::Refused,
        _ => Expect::Anything,
    }
}

fn observation_expectation(m: &CallMachine, now: Millis, obs: &Observation) -> Expect {
    if m.call.status == CallStatus::Ended {
        return Expect::Nothing;
    }
    match obs {
        Observation::Joined {
            identity, room, at, ..
        }
        | Observation::Left {
            identity, room, at, ..
        } => {
            let p = if *identity == m.call.caller_id {
                Party::Caller
            } else {
                party(identity)
            };
            let Some(pl) = m.placements.get(&p) else {
                return Expect::Nothing;
            };
            let is_left = matches!(obs, Observation::Left { .. });
            // LiveKit stamps whole seconds: a Joined from a second that ended before the
            // move was issued is about an earlier stay. (A Left is not judged by `placed_at`:
            // see `bug_a_late_left_webhook_unconfirms_an_acknowledged_later_move`; either
            // answer passes here.)
            let before_move = !is_left && *at + 999 < pl.placed_at;
            if m.room_of_party(&p).as_deref() != Some(room.as_str())
                || *at < pl.last_observed
                || before_move
                || (is_left && !pl.confirmed)
            {
                Expect::Nothing
            } else if !is_left && pl.confirmed {
                Expect::Silent
            } else {
                Expect::Anything
            }
        }
        Observation::MoveAcked { party, move_id } => match m.placements.get(party) {
            Some(pl) if pl.move_id == *move_id && !pl.confirmed => Expect::Anything,
            _ => Expect::Nothing,
        },
        Observation::AgentGone { agent_id } => {
            if m.engaged_agents().contains(agent_id) {
                Expect::Anything
            } else {
                Expect::Nothing
            }
        }
        Observation::TimerFired { key } => match m.timers.get(key) {
            Some(due) if *due <= now => Expect::Anything,
            _ => Expect::Nothing,
        },
        Observation::SummaryStored { summary_id, .. } => {
            if m.call.last_summary_id.as_deref() == Some(summary_id.as_str()) {
                Expect::Nothing
            } else {
                Expect::Anything
            }
        }
        // Phone-leg observations are exercised by `phone_tests`.
        Observation::ConferenceStarted { .. }
        | Observation::Dialed { .. }
        | Observation::DialFailed { .. }
        | Observation::PhoneAnswered { .. }
        | Observation::PhoneLegEnded { .. } => Expect::Anything,
        Observation::TranscriptAppended { .. } => Expect::Anything,
        // Outbound-call observations are exercised by `outbound_tests`; on an inbound call
        // they change nothing.
        Observation::SipAnswered { .. }
        | Observation::SipFailed { .. }
        | Observation::AssistantDispatched { .. }
        | Observation::DispatchFailed { .. }
        | Observation::AssistantJoined { .. }
        | Observation::AssistantLeft { .. }
        | Observation::RecordingStarted { .. }
        | Observation::RecordingUpdated { .. }
        | Observation::RecordingRefused { .. }
        | Observation::Notified => Expect::Nothing,
    }
}

/// The machine's invariants, checked after every accepted input.
fn check_invariants(m: &CallMachine, persisted: &BTreeMap<String, Transfer>) {
    let open = m.open_transfer();
    assert_eq!(
        m.call.open_transfer_id.as_deref(),
        open.map(|t| t.transfer_id.as_str()),
        "open_transfer_id"
    );
    assert_eq!(
        m.call.status == CallStatus::Transferring,
        open.is_some(),
        "status {:?} with open transfer {:?}",
        m.call.status,
        open.map(|t| t.status)
    );
    let open_persisted: Vec<&Transfer> = persisted
        .values()
        .filter(|t| !t.status.is_terminal())
        .collect();
    assert_eq!(
        open_persisted,
        open.into_iter().collect::<Vec<_>>(),
        "at most one transfer open, and it is the call's"
    );
    if let Some(t) = &m.transfer {
        assert_eq!(
            persisted.get(&t.transfer_id),
            Some(t),
            "transfer not persisted"
        );
        assert_ne!(
            t.status,
            TransferStatus::Initiated,
            "initiated is transient"
        );
        assert_eq!(t.status.is_terminal(), t.ended_at.is_some());
    }
    assert_eq!(
        m.timers.contains_key(&TimerKey::TransferRing),
        open.is_some_and(|t| t.status == TransferStatus::Ringing),
        "the ring deadline is armed exactly while the transfer rings"
    );
    assert_eq!(
        m.timers.contains_key(&TimerKey::Offer),
        m.call.status == CallStatus::Ringing,
        "the offer deadline is armed exactly while the call rings"
    );

    if m.call.status == CallStatus::Ended {
        assert!(m.placements.is_empty(), "placed after the end");
        assert!(m.timers.is_empty(), "timers after the end");
        assert!(m.call.end_reason.is_some() && m.call.end_at.is_some());
        assert!(m.engaged_agents().is_empty());
        assert!(
            persisted.values().all(|t| t.status.is_terminal()),
            "a transfer outlives its call"
        );
        return;
    }

    let caller = m
        .placements
        .get(&Party::Caller)
        .expect("the caller is placed until the call ends");
    assert_ne!(
        caller.space,
        Space::Consult,
        "the caller in the consult room"
    );
    let agents: BTreeMap<&str, Space> = m
        .placements
        .iter()
        .filter_map(|(p, pl)| match p {
            Party::Agent(id) => Some((id.as_str(), pl.space)),
            Party::Caller => None,
        })
        .collect();
    let owner = m.call.owner_id.as_deref();
    let state = format!(
        "{:?} transfer {:?}, caller in {:?}, agents {agents:?}",
        m.call.status,
        open.map(|t| (t.mode, t.status)),
        caller.space
    );
    match m.call.status {
        CallStatus::Queued => {
            assert!(owner.is_none() && m.call.offered_to.is_none(), "{state}");
            assert!(agents.is_empty(), "{state}");
        }
        CallStatus::Ringing => {
            assert!(owner.is_none() && m.call.offered_to.is_some(), "{state}");
            assert!(agents.is_empty(), "{state}");
        }
        CallStatus::Active | CallStatus::OnHold => {
            let o = owner.expect("an active call has an owner");
            assert!(m.call.offered_to.is_none(), "{state}");
            assert_eq!(agents, [(o, Space::Main)].into_iter().collect(), "{state}");
            let want = if m.call.status == CallStatus::Active {
                Space::Main
            } else {
                Space::Hold
            };
            assert_eq!(caller.space, want, "{state}");
        }
        CallStatus::Transferring => {
            let t = open.expect("checked above");
            assert_eq!(owner, Some(t.from_agent_id.as_str()), "{state}");
            let (a, b) = (t.from_agent_id.as_str(), t.to_agent_id.as_str());
            let (callers, want): (&[Space], Vec<(&str, Space)>) = match (t.mode, t.status) {
                (TransferMode::Warm, TransferStatus::Ringing) => {
                    (&[Space::Hold], vec![(a, Space::Consult)])
                }
                (TransferMode::Warm, TransferStatus::Briefing) => (
                    &[Space::Hold],
                    vec![(a, Space::Consult), (b, Space::Consult)],
                ),
                (TransferMode::Cold, TransferStatus::Ringing) => {
                    (&[Space::Hold], vec![(a, Space::Main)])
                }
                (TransferMode::Conference, TransferStatus::Ringing) => {
                    (&[Space::Main, Space::Hold], vec![(a, Space::Main)])
                }
                // All three together, even when the conference started from hold.
                (TransferMode::Conference, TransferStatus::Briefing) => {
                    (&[Space::Main], vec![(a, Space::Main), (b, Space::Main)])
                }
                _ => panic!("impossible open transfer: {state}"),
            };
            assert!(callers.contains(&caller.space), "{state}");
            assert_eq!(agents, want.into_iter().collect(), "{state}");
        }
        CallStatus::Ended => unreachable!(),
        CallStatus::Dialing | CallStatus::Failed => panic!("an inbound call is never {state}"),
    }

    // The caller, from the moment the call is created, is either confirmed where it was
    // sent or has a deadline to get (back) there.
    if !caller.confirmed {
        assert!(
            m.timers.contains_key(&TimerKey::Arrival(Party::Caller))
                || m.timers.contains_key(&TimerKey::Rejoin(Party::Caller)),
            "unconfirmed caller with no deadline: {state}"
        );
    }

    // Deadlines belong to placed, unconfirmed parties, one at a time; and every expected,
    // unconfirmed party has one.
    for key in m.timers.keys() {
        if let TimerKey::Arrival(p) | TimerKey::Rejoin(p) = key {
            let pl = m
                .placements
                .get(p)
                .unwrap_or_else(|| panic!("{key:?} armed for a party not placed"));
            assert!(!pl.confirmed, "{key:?} armed for a confirmed party");
        }
    }
    for (p, pl) in &m.placements {
        let arrival = m.timers.contains_key(&TimerKey::Arrival(p.clone()));
        let rejoin = m.timers.contains_key(&TimerKey::Rejoin(p.clone()));
        assert!(!(arrival && rejoin), "{p:?} has two deadlines");
        // An arrival deadline runs from when the move was issued (a retry from when the
        // first deadline passed).
        if let Some(due) = m.timers.get(&TimerKey::Arrival(p.clone())) {
            if pl.retries == 0 {
                assert_eq!(*due, pl.placed_at + m.timeouts.move_ms, "{p:?}: {state}");
            } else {
                assert!(
                    *due >= pl.placed_at + 2 * m.timeouts.move_ms,
                    "{p:?}: {state}"
                );
            }
        }
        if !pl.confirmed {
            assert!(
                arrival || rejoin,
                "{p:?} expected with no deadline: {state}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Random commands by random actors and random (duplicate, stale, early) observations
    /// never break the machine's invariants, and feeding it its timers closes every
    /// transfer but a briefing waiting for A.
    #[test]
    fn random_sequences_keep_the_invariants(
        ops in prop::collection::vec((dt_strategy(), op_strategy()), 1..60)
    ) {
        let mut run = Run::new();
        for (dt, op) in &ops {
            run.step(*dt, op);
        }
        run.drain();
    }

    /// Same, starting from an active call so that transfers happen in most cases, with the
    /// timers drained halfway as well.
    #[test]
    fn random_sequences_from_an_active_call_keep_the_invariants(
        ops in prop::collection::vec((dt_strategy(), op_strategy()), 1..60)
    ) {
        let mut run = Run::new();
        run.now = 100;
        run.apply(Input::Command(Actor::System, Command::Offer { agent_id: A.into() }));
        run.now = 200;
        run.apply(by(A, Command::AcceptCall));
        let half = ops.len() / 2;
        for (i, (dt, op)) in ops.iter().enumerate() {
            if i == half {
                run.drain();
            }
            run.step(*dt, op);
        }
        run.drain();
    }
}

#[test]
fn transcript_chunks_reach_the_agents_only() {
    let m = transfer_ringing(TransferMode::Warm);
    let step = apply(
        &m,
        1_500,
        Input::Observe(Observation::TranscriptAppended {
            transcript_id: "tx-1".into(),
            speaker: "caller".into(),
            text: Some("My card is [card].".into()),
            source: crate::model::TranscriptSource::Livekit,
        }),
    );
    assert_eq!(kinds(&step), ["transcript.appended"]);
    assert_audience(&step.events[0], false, &[A, B]);
    assert_eq!(
        step.events[0].data,
        serde_json::json!({"transcriptId": "tx-1", "speaker": "caller", "text": "My card is [card].", "source": "livekit"})
    );
    assert_eq!(step.machine.call, m.call, "the call record does not change");
}

#[path = "phone_tests.rs"]
mod phone;

#[path = "outbound_tests.rs"]
mod outbound_calls;
