//! The call machine fed arbitrary input sequences — commands from the caller, three agents
//! and routing; observations from LiveKit, the clients, timers and Twilio (conferences
//! starting, phone agents dialled, failing, answering, legs ending with any status), for a
//! web or a phone caller and web or phone transfer targets — with a model of the Twilio
//! calls the machine has caused to exist: it never panics, and after every step its
//! invariants hold; at the end the call is hung up and every late Twilio answer delivered,
//! and no phone leg may be left up.
//!
//! Input format (one byte per choice, so seeds are easy to write; `fuzz/seeds_call_machine.py`
//! writes the phone seeds of the corpus): byte 0 picks the caller's channel (even: web, odd:
//! phone); then each step is `[time step in 250 ms units, operation, arguments...]`, every
//! byte taken modulo the number of choices (see [`step`]).
#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use serde_json::json;
use switchboard::call::machine::{
    Actor, CallMachine, Command, Effect, Input, Observation, Party, Space, Step, Timeouts,
    TimerKey, TwilioEffect, HELD_SUFFIX,
};
use switchboard::model::{Call, CallStatus, Channel, Event, TransferMode};

const CALL: &str = "call-f";
const CALLER: &str = "caller-f";
const CALLER_SID: &str = "CA-caller";
const AGENTS: [&str; 3] = ["a", "b", "c"];
/// Whether Twilio's answer to a dial may arrive after a newer dial of the same party started
/// (the actor runs each `TwilioEffect::Dial` in its own task, so it can). The answer names its
/// transfer, so the machine hangs such an older leg up instead of adopting it (the bug this
/// target found: `fuzz/regressions/call_machine/late-dialed`).
const LATE_DIAL_REPORTS: bool = true;

/// The statuses a phone leg's end is reported with (Twilio's `CallStatus` and the ones the
/// switchboard derives from a conference or a prompt).
const END_STATUSES: [&str; 9] = [
    "completed",
    "busy",
    "no-answer",
    "failed",
    "canceled",
    "hung_up",
    "no_input",
    "declined",
    "in-progress",
];

fn call(channel: Channel) -> Call {
    Call {
        call_id: CALL.into(),
        caller_id: CALLER.into(),
        caller_name: "Ann".into(),
        reason: "billing".into(),
        agent_a_id: None,
        agent_b_id: None,
        owner_id: None,
        offered_to: None,
        requested_agent_id: None,
        status: CallStatus::Queued,
        main_room: format!("{CALL}--main"),
        hold_room: format!("{CALL}--hold"),
        open_transfer_id: None,
        last_summary_id: None,
        end_reason: None,
        created_at: chrono::DateTime::from_timestamp_millis(0).unwrap(),
        end_at: None,
        metadata: json!({}),
        caller_number: (channel == Channel::Phone).then(|| "+15550000000".into()),
        channel,
        org_id: None,
        direction: Default::default(),
        assistant_id: None,
        outbound: None,
        recording: None,
    }
}

/// Reads one choice per byte.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*b)
    }

    fn pick(&mut self, n: usize) -> Option<usize> {
        Some(usize::from(self.byte()?) % n)
    }
}

fn party(b: &mut Bytes) -> Option<Party> {
    Some(match b.pick(4)? {
        0 => Party::Caller,
        i => Party::Agent(AGENTS[i - 1].into()),
    })
}

fn identity(p: &Party) -> String {
    match p {
        Party::Caller => CALLER.into(),
        Party::Agent(a) => a.clone(),
    }
}

fn consult(m: &CallMachine) -> String {
    m.transfer
        .as_ref()
        .map(|t| t.transfer_room.clone())
        .unwrap_or_else(|| format!("{CALL}--consult-1"))
}

/// A room or conference: where the machine expects the party, one of the call's, the held
/// pseudo-room of a phone caller, or a stranger's.
fn room(b: &mut Bytes, m: &CallMachine, p: &Party) -> Option<String> {
    Some(match b.pick(6)? {
        0 | 1 => m
            .room_of_party(p)
            .unwrap_or_else(|| format!("{CALL}--main")),
        2 => format!("{CALL}--main"),
        3 => consult(m),
        4 => format!("{CALL}--main{HELD_SUFFIX}"),
        _ => "elsewhere--main".into(),
    })
}

/// What Twilio did with one `TwilioEffect::Dial`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The REST request has not answered yet.
    Pending,
    /// Twilio created the call (`Observation::Dialed` delivered).
    Created,
    /// Twilio refused it (`Observation::DialFailed` delivered).
    Refused,
}

#[derive(Debug)]
struct Dial {
    party: Party,
    transfer_id: String,
    sid: String,
    outcome: Outcome,
}

/// The Twilio side as the machine has shaped it: the calls dialled, and the legs that are
/// up (created or the phone caller's, neither ended nor hung up).
#[derive(Debug, Default)]
struct Twilio {
    dials: Vec<Dial>,
    live: BTreeSet<String>,
}

impl Twilio {
    fn latest_dial_of(&self, party: &Party) -> Option<usize> {
        self.dials.iter().rposition(|d| d.party == *party)
    }

    fn known(&self, sid: &str) -> bool {
        sid == CALLER_SID || self.dials.iter().any(|d| d.sid == sid)
    }
}

/// The next input, or `None` when the bytes run out (or the operation has nothing to act on).
fn step(
    b: &mut Bytes,
    m: &CallMachine,
    tw: &mut Twilio,
    phone_caller: bool,
    now: i64,
) -> Option<Input> {
    let actor = match b.pick(5)? {
        0 => Actor::Caller,
        4 => Actor::System,
        i => Actor::Agent(AGENTS[i - 1].into()),
    };
    let cmd = |c| Some(Input::Command(actor.clone(), c));
    match b.pick(24)? {
        0 => cmd(Command::Offer {
            agent_id: AGENTS[b.pick(3)?].into(),
        }),
        1 => cmd(Command::AcceptCall),
        2 => cmd(Command::DeclineCall),
        3 => cmd(Command::Hold),
        4 => cmd(Command::Resume),
        5 => cmd(Command::Hangup),
        6 => {
            let agent = AGENTS[b.pick(3)?];
            let mode = [
                TransferMode::Warm,
                TransferMode::Cold,
                TransferMode::Conference,
            ][b.pick(3)?];
            let n = b.pick(3)? + 1;
            let to_number = (b.pick(2)? == 1).then(|| format!("+1555000100{n}"));
            cmd(Command::InitiateTransfer {
                transfer_id: format!("xfer-{n}"),
                to_agent_id: agent.into(),
                mode,
                transfer_room: format!("{CALL}--consult-{n}"),
                summary_id: None,
                summary_text: "summary".into(),
                note: None,
                to_number,
                briefing: json!({ "reason": "fuzz" }),
            })
        }
        7 => cmd(Command::AcceptTransfer),
        8 => cmd(Command::DeclineTransfer),
        9 => cmd(Command::CompleteTransfer),
        10 => cmd(Command::CancelTransfer),
        11 => cmd(Command::Mute {
            party: party(b)?,
            muted: b.pick(2)? == 1,
        }),
        12 => cmd(Command::UpdateDetails {
            caller_name: Some(format!("name-{}", b.byte()?)),
            reason: None,
            metadata: None,
        }),
        13 | 14 => {
            let p = party(b)?;
            let room = room(b, m, &p)?;
            let (identity, at) = (identity(&p), now);
            Some(Input::Observe(if b.pick(2)? == 0 {
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
            }))
        }
        15 => Some(Input::Observe(Observation::MoveAcked {
            party: party(b)?,
            move_id: format!("mv-{}", u64::from(b.byte()?) % (m.moves + 2)),
        })),
        16 => Some(Input::Observe(Observation::AgentGone {
            agent_id: AGENTS[b.pick(3)?].into(),
        })),
        17 => {
            let key = match b.pick(4)? {
                0 => TimerKey::Offer,
                1 => TimerKey::TransferRing,
                2 => TimerKey::Arrival(party(b)?),
                _ => TimerKey::Rejoin(party(b)?),
            };
            Some(Input::Observe(Observation::TimerFired { key }))
        }
        18 => Some(Input::Observe(Observation::SummaryStored {
            summary_id: format!("sum-{}", b.pick(3)?),
            summary_text: "summary".into(),
            briefing: json!({ "reason": "fuzz" }),
        })),
        19 => {
            let conference = match b.pick(3)? {
                0 => format!("{CALL}--main"),
                1 => consult(m),
                _ => format!("{CALL}--consult-{}", b.pick(3)? + 1),
            };
            Some(Input::Observe(Observation::ConferenceStarted {
                conference_sid: format!("CF-{conference}"),
                conference,
            }))
        }
        // Twilio answers a dial request: the call exists (possibly late, twice, or after a
        // newer dial of the same party), or it was refused (once, never after being created).
        20 | 21 => {
            let answerable: Vec<usize> = (0..tw.dials.len())
                .filter(|&i| LATE_DIAL_REPORTS || tw.latest_dial_of(&tw.dials[i].party) == Some(i))
                .collect();
            let i = *answerable.get(b.pick(answerable.len().max(1))?)?;
            let refuse = b.pick(2)? == 1;
            let d = tw.dials.get_mut(i)?;
            if refuse && d.outcome == Outcome::Pending {
                d.outcome = Outcome::Refused;
                return Some(Input::Observe(Observation::DialFailed {
                    party: d.party.clone(),
                    reason: "Twilio said no".into(),
                    transfer_id: Some(d.transfer_id.clone()),
                }));
            }
            if d.outcome == Outcome::Refused {
                return None;
            }
            if d.outcome == Outcome::Pending {
                tw.live.insert(d.sid.clone());
            }
            d.outcome = Outcome::Created;
            Some(Input::Observe(Observation::Dialed {
                party: d.party.clone(),
                call_sid: d.sid.clone(),
                transfer_id: Some(d.transfer_id.clone()),
            }))
        }
        // A dialled leg that is up is answered (its prompt runs).
        22 => {
            let up: Vec<&Dial> = tw
                .dials
                .iter()
                .filter(|d| tw.live.contains(&d.sid))
                .collect();
            let d = up.get(b.pick(up.len().max(1))?)?;
            Some(Input::Observe(Observation::PhoneAnswered {
                party: d.party.clone(),
                call_sid: d.sid.clone(),
            }))
        }
        // A leg Twilio created ends (again, for a duplicate callback), with any status, told
        // with its SID or (as from a conference or a prompt) only by the party's label.
        _ => {
            let mut legs: Vec<(Party, String)> = tw
                .dials
                .iter()
                .filter(|d| d.outcome == Outcome::Created)
                .map(|d| (d.party.clone(), d.sid.clone()))
                .collect();
            if phone_caller {
                legs.push((Party::Caller, CALLER_SID.into()));
            }
            let (party, sid) = legs.get(b.pick(legs.len().max(1))?)?.clone();
            let status = END_STATUSES[b.pick(END_STATUSES.len())?].to_string();
            let current = m.phones.get(&party).and_then(|l| l.call_sid.clone());
            let call_sid = if b.pick(3)? == 0 && current.as_deref() == Some(sid.as_str()) {
                None
            } else {
                Some(sid.clone())
            };
            tw.live.remove(&sid);
            Some(Input::Observe(Observation::PhoneLegEnded {
                party,
                call_sid,
                status,
            }))
        }
    }
}

/// Follows the step's Twilio effects in the model and checks them.
fn follow(s: &Step, tw: &mut Twilio) {
    for e in &s.effects {
        match e {
            Effect::Twilio(TwilioEffect::Dial {
                party,
                number,
                transfer_id,
                ..
            }) => {
                assert!(matches!(party, Party::Agent(_)), "only agents are dialled");
                let leg = s
                    .machine
                    .phones
                    .get(party)
                    .expect("a dialled party has a leg");
                assert_eq!(&leg.number, number);
                assert!(leg.call_sid.is_none(), "a new dial has no SID yet: {leg:?}");
                let sid = format!("CA-dial-{}", tw.dials.len());
                tw.dials.push(Dial {
                    party: party.clone(),
                    transfer_id: transfer_id.clone(),
                    sid,
                    outcome: Outcome::Pending,
                });
            }
            Effect::Twilio(TwilioEffect::HangupPhone { call_sid, .. }) => {
                assert!(
                    tw.known(call_sid),
                    "hangs up a leg it never had: {call_sid}"
                );
                tw.live.remove(call_sid);
            }
            Effect::Twilio(TwilioEffect::RedirectPhone { call_sid, .. }) => {
                assert!(
                    s.machine
                        .phones
                        .values()
                        .any(|l| l.call_sid.as_deref() == Some(call_sid)),
                    "redirects a leg it does not hold: {call_sid}"
                );
            }
            _ => {}
        }
    }
}

/// What must hold after every step.
fn check(m: &CallMachine, last_seq: &mut u64, step_events: &[Event], tw: &Twilio) {
    for e in step_events {
        assert_eq!(e.seq, *last_seq + 1, "event seqs run on without gaps");
        assert_eq!(e.call_id, CALL);
        *last_seq = e.seq;
    }
    assert_eq!(m.seq, *last_seq, "the machine's seq is the last event's");
    match (&m.call.open_transfer_id, &m.transfer) {
        (Some(id), Some(t)) => {
            assert_eq!(&t.transfer_id, id);
            assert!(!t.status.is_terminal(), "an open transfer is not terminal");
            assert_eq!(m.call.status, CallStatus::Transferring);
        }
        (Some(_), None) => panic!("an open transfer id without a transfer"),
        (None, Some(t)) => assert!(t.status.is_terminal(), "a transfer left open: {t:?}"),
        (None, None) => {}
    }
    if m.call.status == CallStatus::Transferring {
        assert!(m.call.open_transfer_id.is_some());
    }
    if m.call.status.is_terminal() {
        assert!(m.call.open_transfer_id.is_none());
        assert!(
            m.timers.is_empty(),
            "an ended call has deadlines: {:?}",
            m.timers
        );
        assert!(
            m.placements.is_empty(),
            "an ended call places nobody: {:?}",
            m.placements
        );
        assert!(
            m.phones.is_empty(),
            "an ended call holds no phone leg: {:?}",
            m.phones
        );
    } else {
        let caller = m
            .placements
            .get(&Party::Caller)
            .expect("the caller is placed until the call ends");
        assert_ne!(caller.space, Space::Consult, "the caller never briefs");
    }
    let mut sids = BTreeSet::new();
    for (party, leg) in &m.phones {
        if let Some(sid) = &leg.call_sid {
            assert!(tw.known(sid), "{party:?} holds a SID nobody made: {sid}");
            assert!(sids.insert(sid.clone()), "two parties hold leg {sid}");
        }
    }
    for sid in &tw.live {
        assert!(
            sids.contains(sid),
            "phone leg {sid} is up in Twilio but the machine neither holds nor hung it up \
             (phones: {:?}, dials: {:?})",
            m.phones,
            tw.dials
        );
    }
}

/// Applies one input; a refused command changes nothing. With `SWITCHBOARD_FUZZ_TRACE` set,
/// prints every input and what came of it (to read what an artifact does).
fn apply(m: &mut CallMachine, now: i64, i: Input, last_seq: &mut u64, tw: &mut Twilio) {
    let trace = std::env::var_os("SWITCHBOARD_FUZZ_TRACE").is_some();
    if trace {
        eprintln!("@{now} {i:?}");
    }
    let result = m.handle(now, i);
    if trace {
        match &result {
            Ok(s) => eprintln!(
                "  -> {:?}, events {:?}, effects {:?}, phones {:?}",
                s.machine.call.status,
                s.events.iter().map(|e| &e.kind).collect::<Vec<_>>(),
                s.effects,
                s.machine.phones
            ),
            Err(r) => eprintln!("  -> refused: {r}"),
        }
    }
    if let Ok(s) = result {
        follow(&s, tw);
        check(&s.machine, last_seq, &s.events, tw);
        *m = s.machine;
    }
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);
    let phone_caller = b.byte().unwrap_or(0) % 2 == 1;
    let (channel, sid) = if phone_caller {
        (Channel::Phone, Some(CALLER_SID.to_string()))
    } else {
        (Channel::Web, None)
    };
    let mut tw = Twilio::default();
    if phone_caller {
        tw.live.insert(CALLER_SID.into());
    }
    let mut now = 1_000i64;
    let first = CallMachine::create(call(channel), sid, Timeouts::default(), now);
    let mut last_seq = 0;
    check(&first.machine, &mut last_seq, &first.events, &tw);
    let mut m = first.machine;
    for _ in 0..96 {
        let Some(dt) = b.byte() else { break };
        now += i64::from(dt) * 250;
        let Some(i) = step(&mut b, &m, &mut tw, phone_caller, now) else {
            continue;
        };
        apply(&mut m, now, i, &mut last_seq, &mut tw);
    }
    // The end: the caller hangs up (if the call still runs), then every dial request still
    // out is answered by Twilio; no leg may be left up.
    now += 1_000;
    if m.call.status != CallStatus::Ended {
        let end = if phone_caller && m.phones.contains_key(&Party::Caller) {
            tw.live.remove(CALLER_SID);
            Input::Observe(Observation::PhoneLegEnded {
                party: Party::Caller,
                call_sid: Some(CALLER_SID.into()),
                status: "completed".into(),
            })
        } else {
            Input::Command(Actor::Caller, Command::Hangup)
        };
        apply(&mut m, now, end, &mut last_seq, &mut tw);
        assert_eq!(
            m.call.status,
            CallStatus::Ended,
            "the caller's hang-up ends the call"
        );
    }
    for i in 0..tw.dials.len() {
        if tw.dials[i].outcome != Outcome::Pending {
            continue;
        }
        tw.dials[i].outcome = Outcome::Created;
        tw.live.insert(tw.dials[i].sid.clone());
        let late = Input::Observe(Observation::Dialed {
            party: tw.dials[i].party.clone(),
            call_sid: tw.dials[i].sid.clone(),
            transfer_id: Some(tw.dials[i].transfer_id.clone()),
        });
        apply(&mut m, now, late, &mut last_seq, &mut tw);
    }
    assert!(
        tw.live.is_empty(),
        "phone legs left up after the call ended: {:?}",
        tw.live
    );
});
