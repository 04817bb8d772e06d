//! Table tests of outbound assistant calls: the dial-out (answered, busy, no answer,
//! declined, trunk failure, no result at all), the callee hanging up, the assistant handing
//! the caller to a human (accepted, declined, timed out, the human never arriving), the
//! assistant leaving, the recording, and the end-of-call notice. Each asserts the call's
//! status, where every party is, and the effects the actor must carry out.

use super::*;
use crate::model::{Channel, Direction, OutboundLeg, RecordingStatus};

const ASSISTANT: &str = "asst-1";
const TRUNK: &str = "ST_trunk1";
const NUMBER: &str = "+15550002222";
const WORKER: &str = "agent-AJ_worker";
const DISPATCH: &str = "AD_dispatch1";

fn owner() -> String {
    assistant_party_id(ASSISTANT)
}

fn outbound_call() -> Call {
    Call {
        channel: Channel::Sip,
        direction: Direction::Outbound,
        assistant_id: Some(ASSISTANT.into()),
        org_id: Some("org-1".into()),
        outbound: Some(OutboundLeg {
            trunk_id: "trunk-1".into(),
            livekit_trunk_id: TRUNK.into(),
            to_number: NUMBER.into(),
            from_number: None,
            sip_status: None,
            sip_reason: None,
            dispatch_id: None,
            assistant_identity: None,
            answered_at: None,
        }),
        ..new_call()
    }
}

fn plan(record: bool) -> OutboundPlan {
    OutboundPlan {
        agent_name: "switchboard-assistant".into(),
        dispatch_metadata: r#"{"prompt":"You help Ada"}"#.into(),
        record,
    }
}

fn observe(o: Observation) -> Input {
    Input::Observe(o)
}

fn dialing(record: bool) -> Step {
    let step = CallMachine::create_outbound(outbound_call(), plan(record), TIMEOUTS, 0);
    check_step(None, 0, &step);
    step
}

/// Answered at 2 s, with the assistant dispatched and in the room.
fn answered_call(record: bool) -> CallMachine {
    let m = dialing(record).machine;
    let m = apply(
        &m,
        10,
        observe(Observation::AssistantDispatched {
            dispatch_id: DISPATCH.into(),
        }),
    )
    .machine;
    let m = apply(
        &m,
        20,
        observe(Observation::AssistantJoined {
            identity: WORKER.into(),
        }),
    )
    .machine;
    let m = if record {
        apply(
            &m,
            30,
            observe(Observation::RecordingStarted {
                egress_id: "EG_1".into(),
            }),
        )
        .machine
    } else {
        m
    };
    let m = apply(&m, 1_000, joined(CALLER, MAIN, 1_000)).machine;
    assert_eq!(m.call.status, CallStatus::Ringing);
    let step = apply(
        &m,
        2_000,
        observe(Observation::SipAnswered {
            sip_call_id: "SCL_1".into(),
        }),
    );
    assert_eq!(step.machine.call.status, CallStatus::Active);
    step.machine
}

fn failed(sip_status: Option<u16>, reason: &str) -> Input {
    observe(Observation::SipFailed {
        sip_status,
        reason: reason.into(),
    })
}

fn has_effect(step: &Step, pred: impl Fn(&Effect) -> bool) -> bool {
    step.effects.iter().any(pred)
}

fn dismissed(step: &Step) -> bool {
    has_effect(step, |e| {
        matches!(e, Effect::Assistant(AssistantEffect::DismissAssistant { room, dispatch_id, .. })
            if room == MAIN && dispatch_id.as_deref() == Some(DISPATCH))
    })
}

/// Fires the end-of-call timer and confirms the notice; returns the settled machine.
fn notify(m: &CallMachine, now: Millis) -> CallMachine {
    let due = m.timers[&TimerKey::Finish];
    assert!(due <= now, "the notice is due at {due}, not by {now}");
    let step = apply(m, now, fire(TimerKey::Finish));
    assert!(
        step.effects
            .contains(&Effect::Notice(NoticeEffect::NotifyEnded)),
        "{step:?}"
    );
    assert!(
        !step.machine.is_settled(),
        "settled before the notice was queued"
    );
    // Not confirmed: asked again later.
    assert!(step.machine.timers[&TimerKey::Finish] > now);
    let settled = apply(&step.machine, now + 1, observe(Observation::Notified)).machine;
    assert!(settled.is_settled());
    settled
}

#[test]
fn an_outbound_call_makes_the_room_dispatches_the_assistant_records_and_dials() {
    let step = dialing(true);
    let m = &step.machine;
    assert_eq!(m.call.status, CallStatus::Dialing);
    assert_eq!(m.call.owner_id.as_deref(), Some(owner().as_str()));
    assert_eq!(m.call.agent_a_id.as_deref(), Some(owner().as_str()));
    assert_eq!(
        step.effects,
        vec![
            Effect::LiveKit(LiveKitEffect::EnsureRoom { room: MAIN.into() }),
            Effect::Assistant(AssistantEffect::DispatchAssistant {
                room: MAIN.into(),
                agent_name: "switchboard-assistant".into(),
                metadata: r#"{"prompt":"You help Ada"}"#.into(),
            }),
            Effect::Assistant(AssistantEffect::StartRecording {
                room: MAIN.into(),
                file_stem: CALL_ID.into(),
            }),
            Effect::Assistant(AssistantEffect::DialSip {
                room: MAIN.into(),
                livekit_trunk_id: TRUNK.into(),
                number: NUMBER.into(),
                identity: CALLER.into(),
                ring_secs: 30,
            }),
        ]
    );
    assert_eq!(
        m.call.recording.as_ref().map(|r| r.status),
        Some(RecordingStatus::Requested)
    );
    assert_eq!(timer_keys(m), vec![TimerKey::Dial]);
    assert_eq!(m.timers[&TimerKey::Dial], RING + outbound::DIAL_GRACE_MS);
    assert_eq!(kinds(&step), vec!["call.created"]);
    // The rendered prompt goes to LiveKit only: never into the stored state or events.
    let stored = serde_json::to_string(m).unwrap();
    assert!(!stored.contains("You help Ada"), "{stored}");
    assert!(!dialing(false)
        .effects
        .iter()
        .any(|e| matches!(e, Effect::Assistant(AssistantEffect::StartRecording { .. }))));
}

#[test]
fn the_callee_ringing_then_answering_makes_the_call_active_with_the_assistant() {
    let m = answered_call(false);
    assert_eq!(m.call.owner_id.as_deref(), Some(owner().as_str()));
    assert!(m.assistant_present);
    let leg = m.call.outbound.as_ref().unwrap();
    assert_eq!(leg.dispatch_id.as_deref(), Some(DISPATCH));
    assert_eq!(leg.assistant_identity.as_deref(), Some(WORKER));
    assert_eq!(leg.answered_at, Some(from_millis(2_000)));
    assert!(m.timers.is_empty(), "no deadline left: {:?}", m.timers);
    assert_eq!(placements(&m), placed(&[(Party::Caller, Space::Main)]));
    assert!(m.placements[&Party::Caller].confirmed);
}

#[test]
fn every_refused_dial_fails_the_call_with_its_sip_status_and_cleans_up() {
    for (status, reason, outcome) in [
        (Some(486), "Busy Here", "busy"),
        (Some(480), "Temporarily Unavailable", "no_answer"),
        (Some(603), "Decline", "declined"),
        (Some(503), "Service Unavailable", "dial_failed"),
        (None, "LiveKit could not place the call", "dial_failed"),
    ] {
        let m = dialing(false).machine;
        let m = apply(
            &m,
            10,
            observe(Observation::AssistantDispatched {
                dispatch_id: DISPATCH.into(),
            }),
        )
        .machine;
        let m = apply(&m, 1_000, joined(CALLER, MAIN, 1_000)).machine;
        let step = apply(&m, 5_000, failed(status, reason));
        let c = &step.machine.call;
        assert_eq!(c.status, CallStatus::Failed, "{outcome}");
        assert_eq!(c.end_reason.as_deref(), Some(outcome));
        let leg = c.outbound.as_ref().unwrap();
        assert_eq!(leg.sip_status, status);
        assert_eq!(leg.sip_reason.as_deref(), Some(reason));
        assert_eq!(kinds(&step), vec!["call.failed"]);
        assert_eq!(
            the(&step, "call.failed").data["sipStatus"],
            serde_json::json!(status)
        );
        assert!(step.machine.placements.is_empty());
        assert!(
            step.effects
                .contains(&Effect::LiveKit(LiveKitEffect::CloseRoom {
                    room: MAIN.into()
                })),
            "the room (and with it the SIP leg) is deleted: {:?}",
            step.effects
        );
        assert!(
            dismissed(&step),
            "the dispatch is removed: {:?}",
            step.effects
        );
        // The notice is due at once (no recording to wait for).
        notify(&step.machine, 5_000);
        // A late result changes nothing.
        let late = step
            .machine
            .handle(
                6_000,
                observe(Observation::SipAnswered {
                    sip_call_id: "x".into(),
                }),
            )
            .unwrap();
        assert_eq!(late.machine.call.status, CallStatus::Failed);
    }
}

#[test]
fn a_dial_with_no_result_fails_as_unanswered_at_its_deadline() {
    let m = dialing(false).machine;
    let due = m.timers[&TimerKey::Dial];
    assert_noop(&m, due - 1, fire(TimerKey::Dial));
    let step = apply(&m, due, fire(TimerKey::Dial));
    assert_eq!(step.machine.call.status, CallStatus::Failed);
    assert_eq!(step.machine.call.end_reason.as_deref(), Some("no_answer"));
    assert_eq!(
        step.machine.call.outbound.as_ref().unwrap().sip_status,
        Some(408)
    );
    assert!(step
        .effects
        .contains(&Effect::LiveKit(LiveKitEffect::RemoveParticipant {
            room: MAIN.into(),
            identity: CALLER.into(),
        })));
}

#[test]
fn the_callee_leaving_while_ringing_waits_for_the_dial_result() {
    let m = dialing(false).machine;
    let m = apply(&m, 1_000, joined(CALLER, MAIN, 1_000)).machine;
    let step = apply(&m, 3_000, left(CALLER, MAIN, 3_000));
    assert_eq!(step.machine.call.status, CallStatus::Ringing);
    let step = apply(&step.machine, 3_100, failed(Some(486), "Busy Here"));
    assert_eq!(step.machine.call.status, CallStatus::Failed);
}

#[test]
fn the_callee_hanging_up_ends_the_call_at_once() {
    let m = answered_call(false);
    let step = apply(&m, 60_000, left(CALLER, MAIN, 60_000));
    assert_eq!(step.machine.call.status, CallStatus::Ended);
    assert_eq!(
        step.machine.call.end_reason.as_deref(),
        Some("caller_hangup")
    );
    assert!(dismissed(&step));
    assert!(step
        .effects
        .contains(&Effect::LiveKit(LiveKitEffect::CloseRoom {
            room: MAIN.into()
        })));
    assert!(!step.machine.is_settled());
    notify(&step.machine, 60_000);
}

#[test]
fn the_assistant_hangs_up_as_the_owner() {
    let m = answered_call(false);
    let step = apply(&m, 60_000, by(&owner(), Command::Hangup));
    assert_eq!(
        step.machine.call.end_reason.as_deref(),
        Some("agent_hangup")
    );
    assert!(dismissed(&step));
}

#[test]
fn a_sip_caller_cannot_be_held() {
    let m = answered_call(false);
    assert_conflict(&m, 3_000, by(&owner(), Command::Hold), "not_supported");
}

/// The assistant asks for a (warm) transfer to B; B is offered it with the summary.
fn handoff_ringing() -> (CallMachine, Step) {
    let m = answered_call(false);
    let step = apply(
        &m,
        T_INIT + 2_000,
        by(&owner(), initiate(B, TransferMode::Warm)),
    );
    (step.machine.clone(), step)
}

#[test]
fn an_assistant_handoff_offers_b_the_summary_while_the_caller_stays_with_the_assistant() {
    let (m, step) = handoff_ringing();
    let t = transfer(&m);
    assert_eq!(
        t.mode,
        TransferMode::Conference,
        "an assistant has no consult room"
    );
    assert_eq!(t.from_agent_id, owner());
    assert_eq!(t.status, TransferStatus::Ringing);
    assert_eq!(m.call.status, CallStatus::Transferring);
    assert_eq!(placements(&m), placed(&[(Party::Caller, Space::Main)]));
    let offered = the(&step, "transfer.offered");
    assert_audience(offered, false, &[B]);
    assert_eq!(offered.data["summaryText"], SUMMARY);
    assert!(!step
        .effects
        .iter()
        .any(|e| matches!(e, Effect::LiveKit(LiveKitEffect::EnsureRoom { .. }))));
}

#[test]
fn b_accepting_joins_the_caller_and_takes_over_when_b_arrives() {
    let (m, _) = handoff_ringing();
    let step = apply(&m, 5_000, by(B, Command::AcceptTransfer));
    assert_eq!(transfer(&step.machine).status, TransferStatus::Briefing);
    assert_eq!(
        placements(&step.machine),
        placed(&[(Party::Caller, Space::Main), (party(B), Space::Main)])
    );
    assert!(!dismissed(&step), "the assistant stays until B is there");
    let mv = move_of(&step, &party(B));
    assert_eq!(mv.data["room"], MAIN);
    let step = apply(&step.machine, 6_000, joined(B, MAIN, 6_000));
    let m = &step.machine;
    assert_eq!(transfer(m).status, TransferStatus::Completed);
    assert_eq!(transfer(m).reason.as_deref(), Some("assistant_handoff"));
    assert_eq!(m.call.owner_id.as_deref(), Some(B));
    assert_eq!(m.call.status, CallStatus::Active);
    assert!(dismissed(&step), "the assistant leaves: {:?}", step.effects);
    assert!(!m.assistant_present);
    // The assistant's departure afterwards changes nothing.
    let after = m
        .handle(
            7_000,
            observe(Observation::AssistantLeft {
                identity: WORKER.into(),
            }),
        )
        .unwrap();
    assert!(after.events.is_empty());
    assert_eq!(after.machine.call.owner_id.as_deref(), Some(B));
}

#[test]
fn a_declined_or_unanswered_handoff_leaves_the_caller_with_the_assistant() {
    let (m, _) = handoff_ringing();
    let declined = apply(&m, 5_000, by(B, Command::DeclineTransfer)).machine;
    let due = m.timers[&TimerKey::TransferRing];
    let timed_out = apply(&m, due, fire(TimerKey::TransferRing)).machine;
    for (m, status) in [
        (declined, TransferStatus::Declined),
        (timed_out, TransferStatus::TimedOut),
    ] {
        assert_eq!(transfer(&m).status, status);
        assert_eq!(m.call.status, CallStatus::Active);
        assert_eq!(m.call.owner_id.as_deref(), Some(owner().as_str()));
        assert_eq!(placements(&m), placed(&[(Party::Caller, Space::Main)]));
        assert!(m.assistant_present);
    }
}

#[test]
fn b_never_arriving_rolls_the_handoff_back_to_the_assistant() {
    let (m, _) = handoff_ringing();
    let m = apply(&m, 5_000, by(B, Command::AcceptTransfer)).machine;
    let due = m.timers[&TimerKey::Arrival(party(B))];
    let step = apply(&m, due, fire(TimerKey::Arrival(party(B))));
    let m = &step.machine;
    assert_eq!(transfer(m).status, TransferStatus::Failed);
    assert_eq!(m.call.owner_id.as_deref(), Some(owner().as_str()));
    assert_eq!(m.call.status, CallStatus::Active);
    assert_eq!(placements(m), placed(&[(Party::Caller, Space::Main)]));
    assert!(!dismissed(&step));
}

#[test]
fn the_assistant_leaving_sends_the_caller_to_a_human() {
    let m = answered_call(false);
    let step = apply(
        &m,
        10_000,
        observe(Observation::AssistantLeft {
            identity: WORKER.into(),
        }),
    );
    assert_eq!(step.machine.call.status, CallStatus::Queued);
    assert!(step
        .effects
        .contains(&Effect::Routing(RoutingEffect::RequestAgent)));
    // A human takes the call and joins the caller where it is.
    let step = apply(&step.machine, 11_000, by(A, Command::AcceptCall));
    assert_eq!(step.machine.call.owner_id.as_deref(), Some(A));
    assert_eq!(
        placements(&step.machine),
        placed(&[(Party::Caller, Space::Main), (party(A), Space::Main)])
    );
    // Someone else's departure (not the assistant's participant) is ignored.
    let m = answered_call(false);
    assert_noop(
        &m,
        10_000,
        observe(Observation::AssistantLeft {
            identity: "agent-other".into(),
        }),
    );
}

#[test]
fn a_handoff_declined_after_the_assistant_left_queues_the_caller() {
    let (m, _) = handoff_ringing();
    let m = apply(
        &m,
        4_000,
        observe(Observation::AssistantLeft {
            identity: WORKER.into(),
        }),
    )
    .machine;
    assert_eq!(
        m.call.status,
        CallStatus::Transferring,
        "B may still take it"
    );
    let step = apply(&m, 5_000, by(B, Command::DeclineTransfer));
    assert_eq!(step.machine.call.status, CallStatus::Queued);
    assert!(step
        .effects
        .contains(&Effect::Routing(RoutingEffect::RequestAgent)));
}

#[test]
fn a_refused_dispatch_fails_a_dialling_call_and_stops_the_ringing() {
    let m = dialing(false).machine;
    let step = apply(
        &m,
        10,
        observe(Observation::DispatchFailed {
            reason: "no worker".into(),
        }),
    );
    assert_eq!(step.machine.call.status, CallStatus::Failed);
    assert_eq!(
        step.machine.call.end_reason.as_deref(),
        Some("assistant_unavailable")
    );
    assert!(step
        .effects
        .contains(&Effect::LiveKit(LiveKitEffect::RemoveParticipant {
            room: MAIN.into(),
            identity: CALLER.into(),
        })));
    // A dispatch LiveKit confirms after the end is removed again.
    let late = apply(
        &step.machine,
        20,
        observe(Observation::AssistantDispatched {
            dispatch_id: "AD_late".into(),
        }),
    );
    assert!(
        late.effects.iter().any(|e| matches!(e,
        Effect::Assistant(AssistantEffect::DismissAssistant { dispatch_id, .. }) if dispatch_id.as_deref() == Some("AD_late")))
    );
}

#[test]
fn the_notice_waits_for_the_recording_to_be_uploaded() {
    let m = answered_call(true);
    assert_eq!(
        m.call.recording.as_ref().unwrap().egress_id.as_deref(),
        Some("EG_1")
    );
    let step = apply(&m, 60_000, left(CALLER, MAIN, 60_000));
    assert!(step
        .effects
        .contains(&Effect::Assistant(AssistantEffect::StopRecording {
            egress_id: "EG_1".into()
        })));
    let m = step.machine;
    assert_eq!(
        m.timers[&TimerKey::Finish],
        60_000 + outbound::RECORDING_SETTLE_MS
    );
    assert_noop(&m, 61_000, fire(TimerKey::Finish));
    // LiveKit reports the upload after the call ended.
    let step = apply(
        &m,
        62_000,
        observe(Observation::RecordingUpdated {
            egress_id: "EG_1".into(),
            status: RecordingStatus::Complete,
            location: Some("s3://calls/recordings/call-1.ogg".into()),
            error: None,
        }),
    );
    let r = step.machine.call.recording.clone().unwrap();
    assert_eq!(r.status, RecordingStatus::Complete);
    assert_eq!(
        r.location.as_deref(),
        Some("s3://calls/recordings/call-1.ogg")
    );
    assert_eq!(step.machine.timers[&TimerKey::Finish], 62_000);
    notify(&step.machine, 62_000);
}

#[test]
fn a_recording_that_never_reports_does_not_hold_the_notice_forever() {
    let m = answered_call(true);
    let m = apply(&m, 60_000, left(CALLER, MAIN, 60_000)).machine;
    notify(&m, 60_000 + outbound::RECORDING_SETTLE_MS);
}

#[test]
fn recording_failures_are_recorded_not_ignored() {
    // Refused at start.
    let m = dialing(true).machine;
    let step = apply(
        &m,
        10,
        observe(Observation::RecordingRefused {
            error: "egress unavailable".into(),
        }),
    );
    let r = step.machine.call.recording.clone().unwrap();
    assert_eq!(r.status, RecordingStatus::Failed);
    assert_eq!(r.error.as_deref(), Some("egress unavailable"));
    assert_eq!(kinds(&step), vec!["recording.failed"]);
    // Failing midway.
    let m = answered_call(true);
    let step = apply(
        &m,
        9_000,
        observe(Observation::RecordingUpdated {
            egress_id: "EG_1".into(),
            status: RecordingStatus::Failed,
            location: None,
            error: Some("upload failed".into()),
        }),
    );
    let r = step.machine.call.recording.clone().unwrap();
    assert_eq!(r.status, RecordingStatus::Failed);
    assert_eq!(r.error.as_deref(), Some("upload failed"));
    // Another egress's news is not this recording's.
    let m = answered_call(true);
    assert_noop(
        &m,
        9_000,
        observe(Observation::RecordingUpdated {
            egress_id: "EG_other".into(),
            status: RecordingStatus::Failed,
            location: None,
            error: Some("x".into()),
        }),
    );
}

#[test]
fn an_inbound_call_without_assistant_or_recording_settles_when_it_ends() {
    let m = active_call(A);
    let step = apply(&m, 9_000, by(A, Command::Hangup));
    assert!(step.machine.is_settled());
    assert!(!step
        .effects
        .contains(&Effect::Notice(NoticeEffect::NotifyEnded)));
}
