//! Table tests of phone legs: a phone caller (Twilio conference from the start), a phone
//! specialist as transfer target (dialled, whispered, answering with a key), and every
//! failure path of a transfer to a phone, asserting where every party ends up and which
//! Twilio effects the actor must carry out.

use super::*;

const CALLER_SID: &str = "CA00000000000000000000000000000001";
const B_SID: &str = "CA0000000000000000000000000000000b";
const B_NUMBER: &str = "+15550001111";

fn phone_call() -> Call {
    Call {
        channel: Channel::Phone,
        caller_number: Some("+15557654321".into()),
        org_id: None,
        direction: Default::default(),
        assistant_id: None,
        outbound: None,
        recording: None,
        ..new_call()
    }
}

fn phone_initiate(mode: TransferMode) -> Command {
    match initiate(B, mode) {
        Command::InitiateTransfer {
            transfer_id,
            to_agent_id,
            mode,
            transfer_room,
            summary_id,
            summary_text,
            note,
            briefing,
            ..
        } => Command::InitiateTransfer {
            transfer_id,
            to_agent_id,
            mode,
            transfer_room,
            summary_id,
            summary_text,
            note,
            to_number: Some(B_NUMBER.into()),
            briefing,
        },
        other => other,
    }
}

fn observe(o: Observation) -> Input {
    Input::Observe(o)
}

/// Twilio created B's call.
fn dialed() -> Input {
    observe(Observation::Dialed {
        party: party(B),
        call_sid: B_SID.into(),
        transfer_id: Some(XFER.into()),
    })
}

/// B answered and Twilio asks for the whisper.
fn answered() -> Input {
    observe(Observation::PhoneAnswered {
        party: party(B),
        call_sid: B_SID.into(),
    })
}

fn leg_ended(p: Party, sid: Option<&str>, status: &str) -> Input {
    observe(Observation::PhoneLegEnded {
        party: p,
        call_sid: sid.map(str::to_string),
        status: status.into(),
    })
}

fn twilio_effects(step: &Step) -> Vec<&Effect> {
    step.effects
        .iter()
        .filter(|e| {
            !matches!(
                e,
                Effect::LiveKit(LiveKitEffect::EnsureRoom { .. })
                    | Effect::LiveKit(LiveKitEffect::CloseRoom { .. })
                    | Effect::LiveKit(LiveKitEffect::RemoveParticipant { .. })
                    | Effect::Routing(RoutingEffect::RequestAgent)
            )
        })
        .collect()
}

fn plane_of(m: &CallMachine, p: &Party) -> Plane {
    m.placements[p].plane
}

/// A phone caller's call, taken by web agent A, both confirmed by conference callbacks.
fn active_phone_call() -> CallMachine {
    let step = CallMachine::create(phone_call(), Some(CALLER_SID.into()), TIMEOUTS, 0);
    check_step(None, 0, &step);
    assert!(
        step.effects
            .iter()
            .all(|e| !matches!(e, Effect::LiveKit(LiveKitEffect::EnsureRoom { .. }))),
        "a phone caller needs no LiveKit room: {:?}",
        step.effects
    );
    let m = step.machine;
    assert_eq!(m.main_plane, Plane::Twilio);
    assert_eq!(plane_of(&m, &Party::Caller), Plane::Twilio);
    let m = apply(&m, 50, joined(CALLER, MAIN, 50)).machine;
    let m = apply(
        &m,
        60,
        observe(Observation::ConferenceStarted {
            conference: MAIN.into(),
            conference_sid: "CFmain".into(),
        }),
    )
    .machine;
    let m = apply(&m, 100, offer_to(A)).machine;
    let step = apply(&m, 200, by(A, Command::AcceptCall));
    // A joins the conference from the browser as a Voice SDK client leg.
    let mv = move_of(&step, &party(A));
    assert_eq!(mv.data["plane"], "twilio");
    assert_eq!(mv.data["room"], MAIN);
    assert!(twilio_effects(&step).is_empty(), "{:?}", step.effects);
    let m = apply(&step.machine, 300, joined(A, MAIN, 300)).machine;
    assert_eq!(m.call.status, CallStatus::Active);
    assert!(m.placements.values().all(|p| p.confirmed));
    m
}

#[test]
fn a_phone_caller_is_held_and_resumed_in_the_main_conference() {
    let m = active_phone_call();
    let step = apply(&m, 1_000, by(A, Command::Hold));
    assert_eq!(
        twilio_effects(&step),
        [&Effect::Twilio(TwilioEffect::HoldParticipant {
            conference: MAIN.into(),
            conference_sid: Some("CFmain".into()),
            label: CALLER.into(),
            hold: true,
        })]
    );
    assert!(
        step.events.iter().all(|e| e.kind != "participant.move"),
        "a phone caller gets no move event"
    );
    let held = format!("{MAIN}{HELD_SUFFIX}");
    assert_eq!(step.machine.room_of_party(&Party::Caller).unwrap(), held);
    // The participant-hold callback confirms it.
    let m = apply(&step.machine, 1_100, joined(CALLER, &held, 1_100)).machine;
    assert!(m.placements[&Party::Caller].confirmed);
    let step = apply(&m, 2_000, by(A, Command::Resume));
    assert_eq!(
        twilio_effects(&step),
        [&Effect::Twilio(TwilioEffect::HoldParticipant {
            conference: MAIN.into(),
            conference_sid: Some("CFmain".into()),
            label: CALLER.into(),
            hold: false,
        })]
    );
    // A stale hold callback (older than the resume's unhold) changes nothing.
    let m = apply(&step.machine, 2_100, joined(CALLER, MAIN, 2_100)).machine;
    assert_noop(&m, 2_200, joined(CALLER, &held, 1_100));
}

/// Web caller, web A, phone B: a warm transfer dials B; A waits in the consult conference.
fn web_caller_phone_b_ringing(mode: TransferMode) -> (CallMachine, Step) {
    let m = active_call(A);
    let step = apply(&m, T_INIT, by(A, phone_initiate(mode)));
    assert_eq!(transfer(&step.machine).status, TransferStatus::Ringing);
    let dial = twilio_effects(&step);
    assert_eq!(
        dial,
        [&Effect::Twilio(TwilioEffect::Dial {
            party: party(B),
            number: B_NUMBER.into(),
            transfer_id: XFER.into(),
            ring_secs: 30,
        })]
    );
    (step.machine.clone(), step)
}

#[test]
fn warm_transfer_to_a_phone_specialist_ends_with_caller_and_b_in_the_main_conference() {
    let (m, step) = web_caller_phone_b_ringing(TransferMode::Warm);
    assert_eq!(m.consult_plane, Plane::Twilio);
    assert!(
        !step.effects.iter().any(
            |e| matches!(e, Effect::LiveKit(LiveKitEffect::EnsureRoom { room }) if room == CONSULT)
        ),
        "no LiveKit consult room for a phone target"
    );
    assert_eq!(move_of(&step, &party(A)).data["plane"], "twilio");
    assert_eq!(move_of(&step, &Party::Caller).data["plane"], "livekit");
    let m = apply(&m, T_INIT + 10, joined(A, CONSULT, T_INIT + 10)).machine;
    let m = apply(&m, T_INIT + 10, joined(CALLER, HOLD, T_INIT + 10)).machine;
    let m = apply(
        &m,
        T_INIT + 20,
        observe(Observation::ConferenceStarted {
            conference: CONSULT.into(),
            conference_sid: "CFconsult".into(),
        }),
    )
    .machine;
    let m = apply(&m, T_INIT + 30, dialed()).machine;
    // B answers: Twilio asks for the whisper; B presses 1.
    let m = apply(&m, T_ANSWER - 500, answered()).machine;
    let step = apply(&m, T_ANSWER, by(B, Command::AcceptTransfer));
    assert_eq!(transfer(&step.machine).status, TransferStatus::Briefing);
    assert!(
        twilio_effects(&step).is_empty(),
        "the answer to B's key press joins B: {:?}",
        step.effects
    );
    assert_eq!(step.machine.room_of_party(&party(B)).unwrap(), CONSULT);
    let m = apply(
        &step.machine,
        T_ANSWER + 100,
        joined(B, CONSULT, T_ANSWER + 100),
    )
    .machine;

    let step = apply(&m, T_DONE, by(A, Command::CompleteTransfer));
    let m = &step.machine;
    assert_eq!(transfer(m).status, TransferStatus::Completed);
    assert_eq!(m.call.owner_id.as_deref(), Some(B));
    // B is on a phone leg: after a restart it is not waited for over a WebSocket (its
    // grace running out would take the call from it while its leg is up).
    assert!(m.engaged_agents().contains(&B.to_string()));
    assert!(!m.agents_with_sessions().contains(&B.to_string()));
    assert_eq!(
        m.main_plane,
        Plane::Twilio,
        "B is on the phone: main is a conference now"
    );
    assert_eq!(
        placements(m),
        placed(&[(Party::Caller, Space::Main), (party(B), Space::Main)])
    );
    // The web caller joins the main conference as a client leg; B's call is redirected.
    let mv = move_of(&step, &Party::Caller);
    assert_eq!(
        (mv.data["plane"].as_str(), mv.data["room"].as_str()),
        (Some("twilio"), Some(MAIN))
    );
    let effects = twilio_effects(&step);
    assert!(
        effects.contains(&&Effect::Twilio(TwilioEffect::RedirectPhone {
            call_sid: B_SID.into(),
            conference: MAIN.into(),
            label: B.into(),
        }))
    );
    assert!(
        effects.contains(&&Effect::Twilio(TwilioEffect::RemoveFromConference {
            conference: CONSULT.into(),
            conference_sid: Some("CFconsult".into()),
            label: A.into(),
        }))
    );
    assert!(
        effects.contains(&&Effect::Twilio(TwilioEffect::EndConference {
            conference: CONSULT.into(),
            conference_sid: Some("CFconsult".into()),
        }))
    );
    assert!(!effects
        .iter()
        .any(|e| matches!(e, Effect::Twilio(TwilioEffect::HangupPhone { .. }))));
    // B hangs up later: B owns the call, so the call ends and the caller is let go.
    let step = apply(
        m,
        T_DONE + 5_000,
        leg_ended(party(B), Some(B_SID), "completed"),
    );
    assert_eq!(step.machine.call.status, CallStatus::Ended);
    assert_eq!(
        step.machine.call.end_reason.as_deref(),
        Some("agent_hangup")
    );
}

/// Each way a phone target can fail while ringing rolls back to A with the right outcome,
/// and never hangs up a leg Twilio already ended.
#[test]
fn phone_target_failures_while_ringing_return_the_caller_to_a() {
    let cases = [
        ("busy", TransferStatus::Declined, "busy"),
        ("no-answer", TransferStatus::TimedOut, "no_answer"),
        ("failed", TransferStatus::Failed, "dial_failed"),
        ("declined", TransferStatus::Declined, "declined"),
        ("no_input", TransferStatus::TimedOut, "no_input"),
        ("completed", TransferStatus::Declined, "target_hangup"),
    ];
    for (status, outcome, reason) in cases {
        let (m, _) = web_caller_phone_b_ringing(TransferMode::Warm);
        let m = apply(&m, T_INIT + 30, dialed()).machine;
        let step = apply(&m, T_ANSWER, leg_ended(party(B), Some(B_SID), status));
        let m = &step.machine;
        assert_eq!(transfer(m).status, outcome, "{status}");
        assert_eq!(transfer(m).reason.as_deref(), Some(reason), "{status}");
        assert_eq!(m.call.status, CallStatus::Active, "{status}");
        assert_eq!(
            placements(m),
            placed(&[(Party::Caller, Space::Main), (party(A), Space::Main)]),
            "{status}"
        );
        assert_eq!(plane_of(m, &party(A)), Plane::Livekit, "{status}");
        assert!(m.phones.is_empty(), "{status}");
        assert!(
            !twilio_effects(&step)
                .iter()
                .any(|e| matches!(e, Effect::Twilio(TwilioEffect::HangupPhone { .. }))),
            "{status}: {:?}",
            step.effects
        );
        assert!(
            twilio_effects(&step).contains(&&Effect::Twilio(TwilioEffect::EndConference {
                conference: CONSULT.into(),
                conference_sid: None,
            }))
        );
        // Twilio's retry of the same callback changes nothing.
        assert_noop(m, T_ANSWER + 1, leg_ended(party(B), Some(B_SID), status));
    }
}

#[test]
fn a_failed_dial_request_rolls_back() {
    let (m, _) = web_caller_phone_b_ringing(TransferMode::Cold);
    let step = apply(
        &m,
        T_INIT + 30,
        observe(Observation::DialFailed {
            party: party(B),
            reason: "21211 invalid To".into(),
            transfer_id: Some(XFER.into()),
        }),
    );
    assert_eq!(transfer(&step.machine).status, TransferStatus::Failed);
    assert_eq!(
        transfer(&step.machine).reason.as_deref(),
        Some("dial_failed")
    );
    assert_eq!(
        placements(&step.machine),
        placed(&[(Party::Caller, Space::Main), (party(A), Space::Main)])
    );
}

#[test]
fn cancelling_while_b_rings_cancels_b_call_even_when_twilio_answers_the_dial_late() {
    let (m, _) = web_caller_phone_b_ringing(TransferMode::Warm);
    let with_sid = apply(&m, T_INIT + 30, dialed()).machine;
    let step = apply(&with_sid, T_DONE, by(A, Command::CancelTransfer));
    assert_eq!(transfer(&step.machine).status, TransferStatus::Cancelled);
    assert!(
        twilio_effects(&step).contains(&&Effect::Twilio(TwilioEffect::HangupPhone {
            call_sid: B_SID.into(),
            ringing: true,
        }))
    );
    // Cancelled before Twilio answered the dial request: the late SID is hung up at once.
    let step = apply(&m, T_DONE, by(A, Command::CancelTransfer));
    assert!(!twilio_effects(&step)
        .iter()
        .any(|e| matches!(e, Effect::Twilio(TwilioEffect::HangupPhone { .. }))));
    let late = apply(&step.machine, T_DONE + 10, dialed());
    assert_eq!(
        twilio_effects(&late),
        [&Effect::Twilio(TwilioEffect::HangupPhone {
            call_sid: B_SID.into(),
            ringing: true,
        })]
    );
    // The leg's `canceled` callback afterwards changes nothing.
    assert_noop(
        &late.machine,
        T_DONE + 20,
        leg_ended(party(B), Some(B_SID), "canceled"),
    );
}

#[test]
fn b_hanging_up_during_the_briefing_returns_the_caller_to_a() {
    let (m, _) = web_caller_phone_b_ringing(TransferMode::Warm);
    let m = apply(&m, T_ANSWER - 500, answered()).machine;
    let m = apply(&m, T_ANSWER, by(B, Command::AcceptTransfer)).machine;
    // An older leg's callback (another SID) is ignored.
    assert_noop(
        &m,
        T_ANSWER + 50,
        leg_ended(party(B), Some("CAold"), "completed"),
    );
    let step = apply(
        &m,
        T_ANSWER + 100,
        leg_ended(party(B), Some(B_SID), "completed"),
    );
    let m = &step.machine;
    assert_eq!(transfer(m).status, TransferStatus::Failed);
    assert_eq!(transfer(m).reason.as_deref(), Some("target_hangup"));
    assert_eq!(
        placements(m),
        placed(&[(Party::Caller, Space::Main), (party(A), Space::Main)])
    );
    assert!(m.phones.is_empty());
}

#[test]
fn a_phone_caller_hanging_up_while_held_ends_b_leg_and_releases_a() {
    let m = active_phone_call();
    let step = apply(&m, T_INIT, by(A, phone_initiate(TransferMode::Warm)));
    // The caller is held in the main conference; A moves to the consult conference.
    assert!(
        twilio_effects(&step).contains(&&Effect::Twilio(TwilioEffect::HoldParticipant {
            conference: MAIN.into(),
            conference_sid: Some("CFmain".into()),
            label: CALLER.into(),
            hold: true,
        }))
    );
    let m = apply(&step.machine, T_INIT + 30, dialed()).machine;
    let m = apply(&m, T_ANSWER, answered()).machine;
    let step = apply(
        &m,
        T_ANSWER + 10,
        leg_ended(Party::Caller, Some(CALLER_SID), "hung_up"),
    );
    let m = &step.machine;
    assert_eq!(m.call.status, CallStatus::Ended);
    assert_eq!(m.call.end_reason.as_deref(), Some("caller_hangup"));
    assert_eq!(transfer(m).status, TransferStatus::Abandoned);
    assert!(m.placements.is_empty() && m.phones.is_empty() && m.timers.is_empty());
    let effects = twilio_effects(&step);
    assert!(
        effects.contains(&&Effect::Twilio(TwilioEffect::HangupPhone {
            call_sid: B_SID.into(),
            ringing: false,
        }))
    );
    assert!(
        effects.contains(&&Effect::Twilio(TwilioEffect::RemoveFromConference {
            conference: CONSULT.into(),
            conference_sid: None,
            label: A.into(),
        }))
    );
    assert!(
        effects.contains(&&Effect::Twilio(TwilioEffect::EndConference {
            conference: MAIN.into(),
            conference_sid: Some("CFmain".into()),
        }))
    );
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::Twilio(TwilioEffect::HangupPhone { call_sid, .. }) if call_sid == CALLER_SID)),
        "the caller's own leg already ended"
    );
    assert!(step
        .events
        .iter()
        .any(|e| e.kind == "call.ended" && e.audience.agents.contains(&B.to_string())));
}

#[test]
fn cold_transfer_of_a_phone_caller_to_a_phone_specialist() {
    let m = active_phone_call();
    let m = apply(&m, T_INIT, by(A, phone_initiate(TransferMode::Cold))).machine;
    let m = apply(&m, T_ANSWER - 10, answered()).machine;
    let step = apply(&m, T_ANSWER, by(B, Command::AcceptTransfer));
    let m = &step.machine;
    assert_eq!(transfer(m).status, TransferStatus::Completed);
    assert_eq!(m.call.owner_id.as_deref(), Some(B));
    assert_eq!(
        placements(m),
        placed(&[(Party::Caller, Space::Main), (party(B), Space::Main)])
    );
    let effects = twilio_effects(&step);
    assert!(
        effects.contains(&&Effect::Twilio(TwilioEffect::HoldParticipant {
            conference: MAIN.into(),
            conference_sid: Some("CFmain".into()),
            label: CALLER.into(),
            hold: false,
        }))
    );
    assert!(
        effects.contains(&&Effect::Twilio(TwilioEffect::RemoveFromConference {
            conference: MAIN.into(),
            conference_sid: Some("CFmain".into()),
            label: A.into(),
        }))
    );
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::Twilio(TwilioEffect::RedirectPhone { .. }))),
        "B is joined by the answer to its key press"
    );
    // A stray participant-leave of A (leaving the conference) changes nothing.
    assert_noop(m, T_ANSWER + 100, left(A, MAIN, T_ANSWER + 100));
}

#[test]
fn a_phone_arrival_that_never_comes_is_handled_by_the_deadline() {
    let (m, _) = web_caller_phone_b_ringing(TransferMode::Warm);
    let m = apply(&m, T_INIT + 1, answered()).machine;
    let m = apply(&m, T_ANSWER, by(B, Command::AcceptTransfer)).machine;
    assert!(m.timers.contains_key(&TimerKey::Arrival(party(B))));
    let step = apply(&m, T_ANSWER + MOVE, fire(TimerKey::Arrival(party(B))));
    assert_eq!(transfer(&step.machine).status, TransferStatus::Failed);
    assert!(
        twilio_effects(&step).contains(&&Effect::Twilio(TwilioEffect::HangupPhone {
            call_sid: B_SID.into(),
            ringing: false,
        }))
    );
}

#[test]
fn mute_reaches_a_phone_leg_through_the_conference_and_a_browser_through_its_event() {
    let m = active_phone_call();
    let step = apply(
        &m,
        1_000,
        by(
            A,
            Command::Mute {
                party: Party::Caller,
                muted: true,
            },
        ),
    );
    assert_eq!(
        twilio_effects(&step),
        [&Effect::Twilio(TwilioEffect::MuteParticipant {
            conference: MAIN.into(),
            conference_sid: Some("CFmain".into()),
            label: CALLER.into(),
            muted: true,
        })]
    );
    assert_eq!(kinds(&step), ["participant.muted"]);
    assert!(step.events[0].audience.caller);
    // A web agent is told to mute its own microphone; nothing goes to Twilio.
    let step = apply(
        &step.machine,
        1_100,
        by(
            A,
            Command::Mute {
                party: party(A),
                muted: false,
            },
        ),
    );
    assert!(twilio_effects(&step).is_empty());
    assert_eq!(kinds(&step), ["participant.unmuted"]);
    assert!(!step.events[0].audience.caller);
    // Only the owner mutes; nobody outside the call.
    assert_forbidden(
        &m,
        1_200,
        by(
            B,
            Command::Mute {
                party: Party::Caller,
                muted: true,
            },
        ),
    );
    assert_conflict(
        &m,
        1_200,
        by(
            A,
            Command::Mute {
                party: party(C),
                muted: true,
            },
        ),
        "not_placed",
    );
}

#[test]
fn a_consult_conference_reported_after_its_transfer_ended_is_ended_then() {
    let (m, _) = web_caller_phone_b_ringing(TransferMode::Warm);
    let m = apply(&m, T_DONE, by(A, Command::CancelTransfer)).machine;
    assert_eq!(transfer(&m).status, TransferStatus::Cancelled);
    let step = apply(
        &m,
        T_DONE + 10,
        observe(Observation::ConferenceStarted {
            conference: CONSULT.into(),
            conference_sid: "CFlate".into(),
        }),
    );
    assert_eq!(
        twilio_effects(&step),
        [&Effect::Twilio(TwilioEffect::EndConference {
            conference: CONSULT.into(),
            conference_sid: Some("CFlate".into()),
        })]
    );
    // The main conference starting is no reason to end anything.
    let step = apply(
        &m,
        T_DONE + 20,
        observe(Observation::ConferenceStarted {
            conference: MAIN.into(),
            conference_sid: "CFmain".into(),
        }),
    );
    assert!(twilio_effects(&step).is_empty());
}

/// Regression (found by the `call_machine` fuzz target): Twilio's answer to an older
/// transfer's dial of B, arriving after a newer transfer dialled B again, was taken for the
/// newer leg (which then kept the old SID while its own call stayed up unseen). The answer
/// names its transfer now: the old leg is hung up and the new one keeps its own SID.
#[test]
fn a_late_answer_to_an_older_dial_of_the_same_agent_is_hung_up_not_adopted() {
    let (m, _) = web_caller_phone_b_ringing(TransferMode::Cold);
    // A calls the first transfer off before Twilio answered the dial request.
    let m = apply(&m, T_INIT + 10, by(A, Command::CancelTransfer)).machine;
    let second = match phone_initiate(TransferMode::Cold) {
        Command::InitiateTransfer {
            mode,
            summary_id,
            summary_text,
            note,
            to_number,
            briefing,
            ..
        } => Command::InitiateTransfer {
            transfer_id: "xfer-2".into(),
            to_agent_id: B.into(),
            mode,
            transfer_room: "room-consult-2".into(),
            summary_id,
            summary_text,
            note,
            to_number,
            briefing,
        },
        other => other,
    };
    let m = apply(&m, T_INIT + 20, by(A, second)).machine;
    const OLD_SID: &str = "CA0000000000000000000000000000old1";
    let step = apply(
        &m,
        T_INIT + 30,
        observe(Observation::Dialed {
            party: party(B),
            call_sid: OLD_SID.into(),
            transfer_id: Some(XFER.into()),
        }),
    );
    assert_eq!(
        step.effects,
        vec![Effect::Twilio(TwilioEffect::HangupPhone {
            call_sid: OLD_SID.into(),
            ringing: true,
        })]
    );
    assert_eq!(step.machine.phones[&party(B)].call_sid, None);
    // The newer dial's own answer is adopted.
    let step = apply(
        &step.machine,
        T_INIT + 40,
        observe(Observation::Dialed {
            party: party(B),
            call_sid: B_SID.into(),
            transfer_id: Some("xfer-2".into()),
        }),
    );
    assert_eq!(
        step.machine.phones[&party(B)].call_sid.as_deref(),
        Some(B_SID)
    );
    assert!(step.effects.is_empty());
    // A late failure report of the older dial does not roll the newer transfer back.
    let step = apply(
        &step.machine,
        T_INIT + 50,
        observe(Observation::DialFailed {
            party: party(B),
            reason: "late".into(),
            transfer_id: Some(XFER.into()),
        }),
    );
    assert_eq!(transfer(&step.machine).status, TransferStatus::Ringing);
}
