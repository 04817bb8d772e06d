//! The load harness (docs/benchmarks.md): starts the release server binary with the embedded store
//! and the LiveKit fake (clients join the rooms `participant.move` sends them to, so every
//! arrival is confirmed by a signed webhook), opens the WebSockets of every caller and agent,
//! and drives calls through full warm transfers. Prints its figures and writes them to
//! `target/bench/<scenario>.json`.
//!
//! `cargo bench --bench load -- <scenario> [--option value ...]`, scenarios:
//!
//! * `transfers` (`--concurrency 50 --duration 60 --rate 0`): warm transfers back and forth
//!   on `concurrency` calls for `duration` seconds (`rate` > 0 paces them to that many per
//!   second in total); transfers/s, latencies, errors, RSS, CPU.
//! * `hold` (`--calls 10000 --agents 100 --idle 10`): `calls` live calls held idle (callers'
//!   WebSockets open, everyone confirmed in the main rooms), RSS per call and idle CPU; then
//!   `kill -9` and a restart: time until `/health` and until every call's actor answers.
//! * `polling` (`--transfers 100 --concurrency 10 --period 3`): B learns of each transfer by
//!   push and, in parallel, by polling `GET /api/transfers?status=active` every `period`
//!   seconds (an Agent B console that polls); B accepts once both have seen it.
//! * `chaos` (`--transfers 500 --calls 20 --kills 25 --seed <n> --phone 1`): the chaos run
//!   at full size (`tests/it/chaos.rs` runs it small in CI); `--phone 0` leaves out the
//!   transfers to phone specialists through the Twilio fake.
//! * `storm` (`--calls 10000 --move-timeout 20 --concurrency 64`): `calls` calls whose
//!   callers never join, created as fast as the API takes them (the steady create rate);
//!   they all end `caller_lost` together `move-timeout` seconds later, while the harness
//!   keeps creating calls: the create rate during the endings against the steady one, and
//!   `switchboard_actor_restarts_total` from `/metrics` (0: an ended call's actor is never
//!   restarted).
//!
//! It is a `harness = false` bench so that it is built in the release profile together with
//! the server binary (`CARGO_BIN_EXE_switchboard`) and can include the LiveKit fake from
//! `tests/support` with `#[path]`, the same code the integration tests use.

#[path = "../tests/support/mod.rs"]
#[allow(unused_imports, missing_docs)]
mod support;

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};

use support::app::{server_env, TestOptions};
use support::livekit::{FakeLiveKit, FakeOptions};
use support::load::{
    cpu_time_of, free_port, run_chaos, Api, CallUnderLoad, ChaosOptions, Client, Poller, Rng,
    Samples, Seen, ServerProcess, SharedSeen, Timings,
};

/// Options from the command line: `--name value` pairs.
struct Args {
    scenario: String,
    values: HashMap<String, String>,
    line: String,
}

impl Args {
    fn parse() -> Args {
        let raw: Vec<String> = std::env::args()
            .skip(1)
            .filter(|a| a != "--bench")
            .collect();
        let mut scenario = None;
        let mut values = HashMap::new();
        let mut it = raw.iter();
        while let Some(a) = it.next() {
            if let Some(name) = a.strip_prefix("--") {
                let v = it
                    .next()
                    .unwrap_or_else(|| panic!("--{name} needs a value"))
                    .clone();
                values.insert(name.to_string(), v);
            } else if scenario.is_none() {
                scenario = Some(a.clone());
            } else {
                panic!("unexpected argument {a:?}");
            }
        }
        Args {
            scenario: scenario.unwrap_or_else(|| {
                eprintln!("usage: cargo bench --bench load -- <transfers|hold|polling|chaos|storm> [--option value ...]");
                std::process::exit(2)
            }),
            values,
            line: raw.join(" "),
        }
    }

    fn num(&self, name: &str, default: f64) -> f64 {
        self.values
            .get(name)
            .map(|v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("--{name}: not a number: {v}"))
            })
            .unwrap_or(default)
    }
}

/// A running server with the LiveKit fake, and the shared client state.
struct Rig {
    server: ServerProcess,
    livekit: Arc<FakeLiveKit>,
    api: Api,
    seen: SharedSeen,
    _data: tempfile::TempDir,
}

impl Rig {
    async fn start() -> Rig {
        Rig::start_with(TestOptions {
            disconnect_grace: 10.0,
            ..Default::default()
        })
        .await
    }

    async fn start_with(opts: TestOptions) -> Rig {
        let livekit = Arc::new(FakeLiveKit::start(FakeOptions::default()));
        livekit.set_record(false);
        let data = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut env = server_env(&opts, &livekit, data.path(), &format!("127.0.0.1:{port}"));
        env.insert("SWITCHBOARD_OUTBOX".into(), "1024".into());
        let server = ServerProcess::start(&server_binary(), env, port).await;
        livekit.set_webhook_url(Some(format!("http://127.0.0.1:{port}/livekit/webhook")));
        Rig {
            server,
            livekit,
            api: Api::new(port),
            seen: Rc::new(RefCell::new(Seen::default())),
            _data: data,
        }
    }

    async fn agents(&self, prefix: &str, n: usize) -> (Vec<(String, String)>, Vec<Client>) {
        let mut agents = vec![];
        let mut clients = vec![];
        for i in 0..n {
            let id = format!("{prefix}-{i}");
            let token = self.api.agent(&id).await;
            clients.push(
                Client::connect(self.server.port, &id, &token, false, self.seen.clone()).await,
            );
            agents.push((id, token));
        }
        (agents, clients)
    }

    /// Starts `n` calls, at most 64 at a time; call `i` is owned by `pair(i).0`.
    async fn calls(
        &self,
        n: usize,
        pair: impl Fn(usize) -> ((String, String), (String, String)),
    ) -> (Vec<CallUnderLoad>, Vec<String>) {
        let results: Vec<_> = futures_util::stream::iter(0..n)
            .map(|i| {
                let (owner, other) = pair(i);
                CallUnderLoad::start(&self.api, &self.livekit, &self.seen, owner, other)
            })
            .buffer_unordered(64)
            .collect()
            .await;
        let mut calls = vec![];
        let mut errors = vec![];
        for r in results {
            match r {
                Ok(c) => calls.push(c),
                Err(e) => errors.push(e.0),
            }
        }
        (calls, errors)
    }
}

/// The server binary: the release build next to this bench, or `SWITCHBOARD_LOAD_BINARY`
/// (to compare two builds with the same harness).
fn server_binary() -> PathBuf {
    std::env::var_os("SWITCHBOARD_LOAD_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_switchboard")))
}

fn mib(kib: u64) -> f64 {
    (kib as f64 / 1024.0 * 10.0).round() / 10.0
}

fn write_result(scenario: &str, args: &Args, mut result: Value) {
    let dir = PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()))
        .join("bench");
    std::fs::create_dir_all(&dir).expect("create target/bench");
    result["scenario"] = json!(scenario);
    result["command"] = json!(format!("cargo bench --bench load -- {}", args.line));
    result["at"] = json!(chrono::Utc::now().to_rfc3339());
    result["server_binary"] = json!(server_binary().display().to_string());
    result["cores"] = json!(std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0));
    let path = dir.join(format!("{scenario}.json"));
    let text = serde_json::to_string_pretty(&result).expect("JSON");
    std::fs::write(&path, &text).expect("write the result");
    println!("{text}");
    println!("written to {}", path.display());
}

async fn transfers(args: &Args) {
    let concurrency = args.num("concurrency", 50.0) as usize;
    let duration = Duration::from_secs_f64(args.num("duration", 60.0));
    let rate = args.num("rate", 0.0);
    let rig = Rig::start().await;
    let (agents, _clients) = rig.agents("agent", concurrency * 2).await;
    let (calls, errors) = rig
        .calls(concurrency, |i| {
            (agents[2 * i].clone(), agents[2 * i + 1].clone())
        })
        .await;
    assert!(errors.is_empty(), "calls could not start: {errors:?}");
    rig.api.latency.borrow_mut().0.clear();
    let timings = Rc::new(RefCell::new(Timings::default()));
    let errors: Rc<RefCell<Vec<String>>> = Rc::default();
    let done = Rc::new(RefCell::new(0usize));
    let cpu0 = rig.server.cpu_time();
    let own_cpu0 = cpu_time_of(std::process::id());
    let started = Instant::now();
    let per_call = if rate > 0.0 {
        Some(Duration::from_secs_f64(concurrency as f64 / rate))
    } else {
        None
    };
    let mut tasks = vec![];
    for (i, mut call) in calls.into_iter().enumerate() {
        let (api, livekit) = (rig.api.clone(), rig.livekit.clone());
        let (timings, errors, done) = (timings.clone(), errors.clone(), done.clone());
        tasks.push(actix_rt::spawn(async move {
            let mut next = tokio::time::Instant::now();
            if let Some(p) = per_call {
                // Spread the calls' starts over one period.
                next += p.mul_f64(i as f64 / concurrency as f64);
            }
            while started.elapsed() < duration {
                if let Some(p) = per_call {
                    tokio::time::sleep_until(next).await;
                    next += p;
                }
                let mut t = Timings::default();
                match call.warm_transfer(&api, &livekit, &mut t, None).await {
                    Ok(()) => {
                        *done.borrow_mut() += 1;
                        let mut all = timings.borrow_mut();
                        all.offered.0.extend(t.offered.0);
                        all.moved.0.extend(t.moved.0);
                    }
                    Err(e) => {
                        errors.borrow_mut().push(e.0);
                        return;
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let wall = started.elapsed();
    let cpu = rig.server.cpu_time().saturating_sub(cpu0);
    let own_cpu = cpu_time_of(std::process::id()).saturating_sub(own_cpu0);
    let n = *done.borrow();
    let t = timings.borrow();
    let errs = errors.borrow();
    write_result(
        "transfers",
        args,
        json!({
            "concurrency": concurrency,
            "duration_s": wall.as_secs_f64(),
            "target_rate": rate,
            "completed_transfers": n,
            "transfers_per_s": n as f64 / wall.as_secs_f64(),
            "errors": errs.len(),
            "first_errors": errs.iter().take(5).collect::<Vec<_>>(),
            "initiate_to_offered": t.offered.summary(),
            "complete_to_caller_move": t.moved.summary(),
            "api_request": rig.api.latency.borrow().summary(),
            "server_cpu_cores": cpu.as_secs_f64() / wall.as_secs_f64(),
            "harness_cpu_cores": own_cpu.as_secs_f64() / wall.as_secs_f64(),
            "server_rss_mib": mib(rig.server.rss_kib()),
            "server_peak_rss_mib": mib(rig.server.peak_rss_kib()),
            "ws_frames_received": rig.seen.borrow().frames,
        }),
    );
}

async fn hold(args: &Args) {
    let n = args.num("calls", 10_000.0) as usize;
    let n_agents = (args.num("agents", 100.0) as usize).max(1);
    let idle = Duration::from_secs_f64(args.num("idle", 10.0));
    let mut rig = Rig::start().await;
    let (agents, clients) = rig.agents("agent", n_agents).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_base = rig.server.rss_kib();
    let started = Instant::now();
    let (calls, errors) = rig
        .calls(n, |i| {
            (
                agents[i % n_agents].clone(),
                agents[(i + 1) % n_agents].clone(),
            )
        })
        .await;
    let setup = started.elapsed();
    // Every arrival confirmed: the caller and the owner in the main room.
    let call_ids: Vec<String> = calls.iter().map(|c| c.call_id.clone()).collect();
    let confirmed = count_confirmed(&rig.api, &call_ids).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_held = rig.server.rss_kib();
    let cpu0 = rig.server.cpu_time();
    tokio::time::sleep(idle).await;
    let idle_cpu = rig.server.cpu_time().saturating_sub(cpu0).as_secs_f64() / idle.as_secs_f64();
    let rss_idle = rig.server.rss_kib();
    let peak = rig.server.peak_rss_kib();
    let per_call_kib = (rss_idle.saturating_sub(rss_base)) as f64 / calls.len().max(1) as f64;
    println!(
        "{} calls held ({} confirmed), {per_call_kib:.1} KiB each; now kill -9 and restart",
        calls.len(),
        confirmed
    );
    // kill -9 with every call unfinished, then: time to /health, and until every call's
    // actor has reloaded its machine from the store (GET answers 200 instead of 503).
    let restart_started = Instant::now();
    let to_health = rig.server.restart().await;
    let all_back = all_answer(&rig.api, &call_ids).await;
    let back = restart_started.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let reconnected = rig.seen.borrow().connects;
    drop(clients);
    write_result(
        "hold",
        args,
        json!({
            "calls": n,
            "calls_started": calls.len(),
            "start_errors": errors.len(),
            "first_errors": errors.iter().take(5).collect::<Vec<_>>(),
            "agents": n_agents,
            "setup_s": setup.as_secs_f64(),
            "calls_confirmed_active": confirmed,
            "rss_base_mib": mib(rss_base),
            "rss_held_mib": mib(rss_held),
            "rss_after_idle_mib": mib(rss_idle),
            "peak_rss_mib": mib(peak),
            "rss_per_live_call_kib": per_call_kib,
            "idle_cpu_cores": idle_cpu,
            "recovery": {
                "kill9_to_health_ms": to_health.as_secs_f64() * 1000.0,
                "kill9_to_all_calls_answering_ms": back.as_secs_f64() * 1000.0,
                "all_calls_answered": all_back,
                "ws_connections_made_in_total": reconnected,
                "rss_after_recovery_mib": mib(rig.server.rss_kib()),
            },
        }),
    );
}

/// How many calls are active with caller and owner confirmed in the main room.
async fn count_confirmed(api: &Api, ids: &[String]) -> usize {
    let oks: Vec<bool> = futures_util::stream::iter(ids.iter())
        .map(|id| async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let r = api.get(&format!("/api/calls/{id}"), None).await;
                let parties = r.body["parties"].as_array().cloned().unwrap_or_default();
                if r.body["status"] == "active"
                    && parties.len() == 2
                    && parties.iter().all(|p| p["confirmed"] == true)
                {
                    return true;
                }
                if Instant::now() > deadline {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    oks.into_iter().filter(|b| *b).count()
}

/// Asks for every call until each answers 200 (its actor reloaded); false after 60 s.
async fn all_answer(api: &Api, ids: &[String]) -> bool {
    let oks: Vec<bool> = futures_util::stream::iter(ids.iter())
        .map(|id| async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let r = api.get(&format!("/api/calls/{id}"), None).await;
                if r.status == 200 && r.body["status"] == "active" {
                    return true;
                }
                if Instant::now() > deadline {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    oks.into_iter().all(|b| b)
}

async fn polling(args: &Args) {
    let total = args.num("transfers", 100.0) as usize;
    let concurrency = args.num("concurrency", 10.0) as usize;
    let period = Duration::from_secs_f64(args.num("period", 3.0));
    let rig = Rig::start().await;
    let (agents, _clients) = rig.agents("agent", concurrency * 2).await;
    let (calls, errors) = rig
        .calls(concurrency, |i| {
            (agents[2 * i].clone(), agents[2 * i + 1].clone())
        })
        .await;
    assert!(errors.is_empty(), "calls could not start: {errors:?}");
    let mut rng = Rng::new(0x5eed_0001);
    // Each agent's polling client, starting at a random phase of the period.
    let pollers: HashMap<String, Rc<Poller>> = agents
        .iter()
        .map(|(id, token)| {
            let phase = period.mul_f64(rng.below(1000) as f64 / 1000.0);
            (
                id.clone(),
                Rc::new(Poller::start(&rig.api, id, token, period, phase)),
            )
        })
        .collect();
    let timings = Rc::new(RefCell::new(Timings::default()));
    let errors: Rc<RefCell<Vec<String>>> = Rc::default();
    let left = Rc::new(RefCell::new(total));
    let mut tasks = vec![];
    for mut call in calls {
        let (api, livekit, pollers) = (rig.api.clone(), rig.livekit.clone(), pollers.clone());
        let (timings, errors, left) = (timings.clone(), errors.clone(), left.clone());
        tasks.push(actix_rt::spawn(async move {
            loop {
                {
                    let mut l = left.borrow_mut();
                    if *l == 0 {
                        return;
                    }
                    *l -= 1;
                }
                let poller = pollers[&call.other.0].clone();
                let mut t = Timings::default();
                if let Err(e) = call
                    .warm_transfer(&api, &livekit, &mut t, Some(&poller))
                    .await
                {
                    errors.borrow_mut().push(e.0);
                    return;
                }
                let mut all = timings.borrow_mut();
                all.offered.0.extend(t.offered.0);
                all.polled.0.extend(t.polled.0);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    for p in pollers.values() {
        p.stop();
    }
    let t = timings.borrow();
    let mean = |s: &Samples| s.0.iter().sum::<f64>() / s.0.len().max(1) as f64;
    write_result(
        "polling",
        args,
        json!({
            "transfers": t.offered.0.len(),
            "errors": errors.borrow().len(),
            "poll_period_s": period.as_secs_f64(),
            "pushed": { "mean_ms": mean(&t.offered), "summary": t.offered.summary() },
            "polled": { "mean_ms": mean(&t.polled), "summary": t.polled.summary() },
        }),
    );
}

async fn chaos(args: &Args) {
    let seed = args.num("seed", 0.0) as u64;
    let seed = if seed == 0 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    } else {
        seed
    };
    let outcome = run_chaos(ChaosOptions {
        binary: server_binary(),
        transfers: args.num("transfers", 500.0) as usize,
        calls: args.num("calls", 20.0) as usize,
        kills: args.num("kills", 25.0) as usize,
        seed,
        faults: true,
        phone: args.num("phone", 1.0) != 0.0,
    })
    .await;
    let ok = outcome.report.violations.is_empty();
    write_result("chaos", args, serde_json::to_value(&outcome).expect("JSON"));
    if !ok {
        eprintln!("INVARIANTS VIOLATED (seed {seed})");
        std::process::exit(1);
    }
    println!("every invariant holds (seed {seed})");
}

/// Creates calls (`POST /api/calls`, no caller ever joins), `concurrency` at a time, until
/// `n` are made or `until` passes; returns the creation times (from `origin`) and the errors.
async fn create_calls(
    api: &Api,
    n: usize,
    concurrency: usize,
    origin: Instant,
    until: Option<Instant>,
) -> (Vec<f64>, usize) {
    let made: Rc<RefCell<Vec<f64>>> = Rc::default();
    let errors = Rc::new(RefCell::new(0usize));
    futures_util::stream::iter(0..n)
        .take_while(|_| std::future::ready(until.is_none_or(|u| Instant::now() < u)))
        .map(|_| {
            let (made, errors) = (made.clone(), errors.clone());
            async move {
                let r = api
                    .post(
                        "/api/calls",
                        None,
                        json!({ "callerName": "Storm", "reason": "never joins" }),
                    )
                    .await;
                if r.status == 201 {
                    made.borrow_mut().push(origin.elapsed().as_secs_f64());
                } else {
                    *errors.borrow_mut() += 1;
                }
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<()>>()
        .await;
    let times = made.borrow().clone();
    let errs = *errors.borrow();
    (times, errs)
}

/// A counter (no labels) from the server's `/metrics`.
async fn metric(api: &Api, name: &str) -> f64 {
    let r = reqwest::get(format!("{}/metrics", api.base))
        .await
        .expect("GET /metrics");
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

/// Live calls (the sum of `switchboard_live_calls` over statuses).
async fn live_calls(api: &Api) -> f64 {
    let r = reqwest::get(format!("{}/metrics", api.base))
        .await
        .expect("GET /metrics");
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("switchboard_live_calls{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn storm(args: &Args) {
    let n = args.num("calls", 10_000.0) as usize;
    let move_timeout = args.num("move-timeout", 20.0);
    let concurrency = args.num("concurrency", 64.0) as usize;
    let rig = Rig::start_with(TestOptions {
        move_timeout,
        ring_timeout: move_timeout * 4.0,
        rejoin_grace: move_timeout * 4.0,
        ..Default::default()
    })
    .await;
    let restarts0 = metric(&rig.api, "switchboard_actor_restarts_total").await;
    let origin = Instant::now();
    let (made, create_errors) = create_calls(&rig.api, n, concurrency, origin, None).await;
    let created_s = made.iter().cloned().fold(0.0, f64::max);
    println!(
        "{} calls created in {created_s:.1} s; each ends {move_timeout} s after its creation",
        made.len()
    );
    // Keep creating (these calls end too, later) until the last of the storm's calls has
    // ended, then compare: the steady rate is the one before any call ended (the first
    // `move-timeout` seconds), the rate during the endings the one from the first ending
    // (or the end of the storm's creation, if later) to three seconds after the last.
    let last_end = created_s + move_timeout + 3.0;
    let window_end = origin + Duration::from_secs_f64(last_end);
    let live_at_start = live_calls(&rig.api).await;
    let (during, during_errors) =
        create_calls(&rig.api, usize::MAX, concurrency, origin, Some(window_end)).await;
    let all: Vec<f64> = made.iter().chain(during.iter()).cloned().collect();
    let steady_until = move_timeout.min(created_s);
    let steady_rate = all.iter().filter(|t| **t < steady_until).count() as f64 / steady_until;
    let window = last_end - move_timeout;
    let during_n = all.iter().filter(|t| **t >= move_timeout).count();
    let during_rate = during_n as f64 / window;
    // Every storm call ends: wait until only the calls made during the window are live.
    let deadline = Instant::now() + Duration::from_secs_f64(move_timeout + 60.0);
    let mut live = live_calls(&rig.api).await;
    while live > during.len() as f64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        live = live_calls(&rig.api).await;
    }
    let restarts = metric(&rig.api, "switchboard_actor_restarts_total").await - restarts0;
    let ratio = during_rate / steady_rate.max(1e-9);
    write_result(
        "storm",
        args,
        json!({
            "calls": n,
            "calls_created": made.len(),
            "create_errors": create_errors,
            "move_timeout_s": move_timeout,
            "storm_created_in_s": created_s,
            "steady_create_per_s": steady_rate,
            "endings_window_s": window,
            "live_calls_after_creating": live_at_start,
            "created_after_the_storm": during.len(),
            "created_during_endings": during_n,
            "create_errors_during_endings": during_errors,
            "create_per_s_during_endings": during_rate,
            "during_over_steady": ratio,
            "storm_calls_left_live": (live - during.len() as f64).max(0.0),
            "actor_restarts": restarts,
            "goals": { "during_over_steady_at_least": 0.5, "actor_restarts": 0 },
            "server_rss_mib": mib(rig.server.rss_kib()),
        }),
    );
    if ratio < 0.5 || restarts != 0.0 {
        eprintln!("GOAL MISSED: {ratio:.2} of the steady create rate, {restarts} actor restarts");
        std::process::exit(1);
    }
}

fn main() {
    let args = Args::parse();
    let system = actix_rt::System::new();
    system.block_on(async {
        match args.scenario.as_str() {
            "transfers" => transfers(&args).await,
            "hold" => hold(&args).await,
            "polling" => polling(&args).await,
            "chaos" => chaos(&args).await,
            "storm" => storm(&args).await,
            other => {
                eprintln!("unknown scenario {other:?}: transfers, hold, polling, chaos or storm");
                std::process::exit(2);
            }
        }
    });
}
