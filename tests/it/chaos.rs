//! The chaos run at CI size: warm transfers between agent pairs with LiveKit faults (webhooks
//! dropped, duplicated and reordered; RoomService 429/500/503 and latency) while the real
//! binary is killed with SIGKILL and restarted at random moments; then the invariant checker
//! (every transfer terminal, every caller with an agent or cleanly ended, no `seq` received
//! twice, the store consistent with the API). The full size is `cargo bench --bench load --
//! chaos` (BENCHMARKS.md).

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
    })
    .await;
    println!(
        "chaos (SWITCHBOARD_CHAOS_SEED={seed}): {}",
        serde_json::to_string_pretty(&outcome).unwrap_or_default()
    );
    let r = &outcome.report;
    assert!(
        r.violations.is_empty(),
        "invariants violated (seed {seed}):\n{}",
        r.violations.join("\n")
    );
    assert!(outcome.initiated >= 60, "{outcome:?}");
    assert!(outcome.kills >= 5, "{outcome:?}");
    assert_eq!(r.calls, r.ended + r.with_agent, "{r:?}");
    assert!(
        r.transfers >= 60,
        "every initiated transfer is stored: {r:?}"
    );
    assert_eq!(r.duplicate_seqs, 0);
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
    let report =
        check_invariants(&api, &app.livekit, &seen, std::slice::from_ref(&c.call_id)).await;
    let all = report.violations.join("\n");
    assert!(all.contains(" still "), "{all}");
    assert!(all.contains("left in status transferring"), "{all}");
    assert!(all.contains("received seq 3"), "{all}");
    assert_eq!(report.duplicate_seqs, 1);
    assert_eq!(report.with_agent + report.ended, 0);
}
