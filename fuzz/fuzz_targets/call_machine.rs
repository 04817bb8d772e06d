//! The call machine fed arbitrary input sequences (commands from the caller, three agents
//! and routing; observations from the planes and timers, with the rooms and identities the
//! machine uses and a few it does not): it never panics, and after every step its
//! invariants hold.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use serde_json::json;
use switchboard::call::machine::{
    Actor, CallMachine, Command, Input, Observation, Party, Timeouts, TimerKey,
};
use switchboard::model::{Call, CallStatus, Channel, TransferMode};

const CALL: &str = "call-f";
const CALLER: &str = "caller-f";
const AGENTS: [&str; 3] = ["a", "b", "c"];

fn call() -> Call {
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
        channel: Channel::Web,
        caller_number: None,
        org_id: None,
        direction: Default::default(),
        assistant_id: None,
        outbound: None,
        recording: None,
    }
}

fn pick<'a, T>(u: &mut Unstructured, items: &'a [T]) -> arbitrary::Result<&'a T> {
    u.choose(items)
}

fn party(u: &mut Unstructured) -> arbitrary::Result<Party> {
    Ok(match u.int_in_range(0..=3)? {
        0 => Party::Caller,
        i => Party::Agent(AGENTS[i as usize - 1].into()),
    })
}

fn identity(p: &Party) -> String {
    match p {
        Party::Caller => CALLER.into(),
        Party::Agent(a) => a.clone(),
    }
}

/// A room: where the machine expects the party, one of the call's, or a stranger's.
fn room(u: &mut Unstructured, m: &CallMachine, p: &Party) -> arbitrary::Result<String> {
    let consult = m
        .transfer
        .as_ref()
        .map(|t| t.transfer_room.clone())
        .unwrap_or_else(|| format!("{CALL}--consult-1"));
    Ok(match u.int_in_range(0..=4)? {
        0 | 1 => m
            .room_of_party(p)
            .unwrap_or_else(|| format!("{CALL}--main")),
        2 => format!("{CALL}--main"),
        3 => consult,
        _ => "elsewhere--main".into(),
    })
}

fn input(u: &mut Unstructured, m: &CallMachine, now: i64) -> arbitrary::Result<Input> {
    let actor = match u.int_in_range(0..=4)? {
        0 => Actor::Caller,
        4 => Actor::System,
        i => Actor::Agent(AGENTS[i as usize - 1].into()),
    };
    let agent = (*pick(u, &AGENTS)?).to_string();
    Ok(match u.int_in_range(0..=24)? {
        0 => Input::Command(actor, Command::Offer { agent_id: agent }),
        1 => Input::Command(actor, Command::AcceptCall),
        2 => Input::Command(actor, Command::DeclineCall),
        3 => Input::Command(actor, Command::Hold),
        4 => Input::Command(actor, Command::Resume),
        5 => Input::Command(actor, Command::Hangup),
        6 | 7 => {
            let n = u.int_in_range(1..=3u8)?;
            let mode = *pick(
                u,
                &[
                    TransferMode::Warm,
                    TransferMode::Cold,
                    TransferMode::Conference,
                ],
            )?;
            Input::Command(
                actor,
                Command::InitiateTransfer {
                    transfer_id: format!("xfer-{n}"),
                    to_agent_id: agent,
                    mode,
                    transfer_room: format!("{CALL}--consult-{n}"),
                    summary_id: None,
                    summary_text: "summary".into(),
                    note: None,
                    to_number: None,
                    briefing: json!({ "reason": "fuzz" }),
                },
            )
        }
        8 => Input::Command(actor, Command::AcceptTransfer),
        9 => Input::Command(actor, Command::DeclineTransfer),
        10 => Input::Command(actor, Command::CompleteTransfer),
        11 => Input::Command(actor, Command::CancelTransfer),
        12 => Input::Command(
            actor,
            Command::Mute {
                party: party(u)?,
                muted: u.arbitrary()?,
            },
        ),
        13 => Input::Command(
            actor,
            Command::UpdateDetails {
                caller_name: u.arbitrary::<Option<String>>()?,
                reason: None,
                metadata: None,
            },
        ),
        14..=16 => {
            let p = party(u)?;
            Input::Observe(Observation::Joined {
                identity: identity(&p),
                room: room(u, m, &p)?,
                at: now,
            })
        }
        17 | 18 => {
            let p = party(u)?;
            Input::Observe(Observation::Left {
                identity: identity(&p),
                room: room(u, m, &p)?,
                at: now,
            })
        }
        19 => Input::Observe(Observation::MoveAcked {
            party: party(u)?,
            move_id: format!("mv-{}", u.int_in_range(0..=m.moves + 1)?),
        }),
        20 => Input::Observe(Observation::AgentGone { agent_id: agent }),
        21 | 22 => {
            let key = match u.int_in_range(0..=3)? {
                0 => TimerKey::Offer,
                1 => TimerKey::TransferRing,
                2 => TimerKey::Arrival(party(u)?),
                _ => TimerKey::Rejoin(party(u)?),
            };
            Input::Observe(Observation::TimerFired { key })
        }
        23 => Input::Observe(Observation::SummaryStored {
            summary_id: "sum-1".into(),
            summary_text: "summary".into(),
            briefing: json!({ "reason": "fuzz" }),
        }),
        _ => Input::Observe(Observation::DialFailed {
            party: party(u)?,
            reason: "busy".into(),
        }),
    })
}

/// What must hold after every step.
fn check(m: &CallMachine, last_seq: &mut u64, step_events: &[switchboard::model::Event]) {
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
    if m.call.status.is_terminal() {
        assert!(m.call.open_transfer_id.is_none());
        assert!(
            m.timers.is_empty(),
            "an ended call has no deadline: {:?}",
            m.timers
        );
    }
    if m.call.status == CallStatus::Transferring {
        assert!(m.call.open_transfer_id.is_some());
    }
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let mut now = 1_000i64;
    let first = CallMachine::create(call(), None, Timeouts::default(), now);
    let mut last_seq = 0;
    check(&first.machine, &mut last_seq, &first.events);
    let mut m = first.machine;
    for _ in 0..64 {
        if u.is_empty() {
            break;
        }
        now += i64::from(u.arbitrary::<u16>().unwrap_or(0));
        let Ok(i) = input(&mut u, &m, now) else {
            break;
        };
        if let Ok(step) = m.handle(now, i) {
            check(&step.machine, &mut last_seq, &step.events);
            m = step.machine;
        }
    }
});
