//! The chaos run at CI size: warm transfers between agent pairs and to phone specialists
//! (dialled through the Twilio fake, whose phones accept, decline, stay silent, are busy, do
//! not answer, cannot be dialled or hang up), with LiveKit faults (webhooks dropped,
//! duplicated and reordered; RoomService 429/500/503 and latency) and Twilio faults (REST
//! latency, 429/500/503, a request hanging past the client's timeout; callbacks dropped,
//! duplicated and reordered) while the real binary is killed with SIGKILL and restarted at
//! random moments; then the invariant checker (every transfer terminal, every caller with an
//! agent or cleanly ended, no `seq` received twice, the store consistent with the API, the
//! Twilio fake holding no leg or conference of a finished call or transfer). The full size is
//! `cargo bench --bench load -- chaos` (docs/benchmarks.md).

use crate::support::load::{run_chaos, ChaosOptions};

#[actix_web::test]
async fn transfers_survive_faults_and_kill_9_with_every_invariant_holding() {
    let seed = std::env::var("SWITCHBOARD_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    let outcome = run_chaos(ChaosOptions {
        binary: env!("CARGO_BIN_EXE_switchboard").into(),
        transfers: 60,
        calls: 6,
        kills: 5,
        seed,
        faults: true,
        phone: true,
    })
    .await;
    println!(
        "chaos (SWITCHBOARD_CHAOS_SEED={seed}): {}",
        serde_json::to_string_pretty(&outcome).unwrap_or_default()
    );
    let r = &outcome.report;
    assert!(
        r.violations.is_empty(),
        "invariants violated (seed {seed}):\n{}\n\nthe stored events of those calls:\n{}",
        r.violations.join("\n"),
        r.timelines.join("\n")
    );
    assert!(outcome.initiated >= 60, "{outcome:?}");
    assert!(outcome.kills >= 5, "{outcome:?}");
    assert_eq!(r.calls, r.ended + r.with_agent, "{r:?}");
    assert!(
        r.transfers >= 60,
        "every initiated transfer is stored: {r:?}"
    );
    assert_eq!(r.duplicate_seqs, 0);
    assert!(
        outcome.phone_initiated >= 10,
        "phone transfers were driven: {outcome:?}"
    );
    assert!(
        r.phone_legs.values().sum::<usize>() >= 5,
        "the specialists' phones were dialled: {r:?}"
    );
    assert!(r.client_legs > 0, "browsers joined conferences: {r:?}");
}

/// The checker is not a rubber stamp: a transfer left ringing, a call left transferring and a
/// `seq` received twice are each reported.
#[actix_web::test]
async fn the_invariant_checker_reports_what_is_wrong() {
    use crate::flows::{active_call, initiate};
    use crate::support::app::spawn_app;
    use crate::support::load::{check_invariants, Api, Seen};
    let app = spawn_app().await;
    let c = active_call(&app, "alice").await;
    app.agent("bob").await;
    let bob_token = app.agent("bob2").await;
    let _bob = app.connect("bob2", &bob_token, None).await;
    initiate(&app, &c, "bob2", "warm").await;
    let api = Api::new(app.port);
    let mut seen = Seen::default();
    seen.duplicates.push(("alice".into(), c.call_id.clone(), 3));
    let report = check_invariants(
        &api,
        &app.livekit,
        None,
        &seen,
        std::slice::from_ref(&c.call_id),
    )
    .await;
    let all = report.violations.join("\n");
    assert!(all.contains(" still "), "{all}");
    assert!(all.contains("left in status transferring"), "{all}");
    assert!(all.contains("received seq 3"), "{all}");
    assert_eq!(report.duplicate_seqs, 1);
    assert_eq!(report.with_agent + report.ended, 0);
}

/// The Twilio fake's timeout switch: a request hanging past the client's timeout is carried
/// out (the call exists though its creator saw no answer) or not (a late 504, no call).
#[actix_web::test]
async fn the_twilio_fakes_hanging_requests_time_out_carried_out_or_not() {
    use crate::support::twilio::{FakeTwilio, FakeTwilioConfig, Route};
    use std::time::Duration;
    let number = "+15550100000";
    let fake = FakeTwilio::start(FakeTwilioConfig {
        numbers: [(number.to_string(), "http://127.0.0.1:9/voice".to_string())].into(),
        ..Default::default()
    });
    let create = |timeout: Duration| {
        reqwest::Client::new()
            .post(format!(
                "{}/2010-04-01/Accounts/{}/Calls.json",
                fake.base_url(),
                fake.account_sid()
            ))
            .basic_auth(fake.account_sid(), Some(fake.auth_token()))
            .form(&[
                ("From", number),
                ("To", "+15550009999"),
                ("Url", "http://127.0.0.1:9/twiml"),
            ])
            .timeout(timeout)
            .send()
    };
    // The client gives up long before the answer comes. The fake carries the request out
    // when it reads it, which on a loaded machine may be after the client's timeout fired:
    // wait for the effect instead of expecting it at the moment of the timeout.
    fake.hang_next(Route::CreateCall, 1, true, Duration::from_secs(10));
    let err = create(Duration::from_secs(1))
        .await
        .expect_err("the answer is held past the timeout");
    assert!(err.is_timeout(), "{err}");
    fake.wait_for(
        "carried out: the call exists",
        Duration::from_secs(10),
        |f| (f.calls().len() == 1).then_some(()),
    )
    .await;
    assert_eq!(fake.requests().len(), 1, "one request reached the fake");

    fake.hang_next(Route::CreateCall, 1, false, Duration::from_millis(300));
    let late = create(Duration::from_secs(5)).await.expect("a late answer");
    assert_eq!(late.status().as_u16(), 504);
    assert_eq!(fake.calls().len(), 1, "not carried out: no new call");

    let ok = create(Duration::from_secs(5)).await.expect("answer");
    assert_eq!(ok.status().as_u16(), 201, "the switch is used up");
    assert_eq!(fake.calls().len(), 2);
}
