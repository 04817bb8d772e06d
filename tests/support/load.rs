//! Load and chaos support: the server as a child process (kill -9, RSS, CPU), WebSocket
//! clients that reconnect with `since=` and check `seq` for duplicates, a warm-transfer
//! driver that times each step, and the invariant checker of the chaos run.
//!
//! Used by the load harness (`benches/load.rs`) and by `tests/it/chaos.rs`. Everything runs in
//! one single-threaded actix system (awc's WebSocket client is `!Send`), so the shared state
//! is `Rc<RefCell<..>>`.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::livekit::FakeLiveKit;
use super::twilio::{FakeTwilio, PhoneScript, RestFault, Route};

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind port 0")
        .local_addr()
        .expect("local address")
        .port()
}

/// The switchboard binary as a child process (so it can be killed with SIGKILL).
pub struct ServerProcess {
    child: Option<Child>,
    binary: PathBuf,
    env: HashMap<String, String>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Restarts so far.
    pub restarts: usize,
}

impl ServerProcess {
    /// Starts `binary serve` with `env` and waits until `/health` answers 2xx.
    pub async fn start(binary: &Path, env: HashMap<String, String>, port: u16) -> ServerProcess {
        let mut server = ServerProcess {
            child: None,
            binary: binary.to_path_buf(),
            env,
            port,
            restarts: 0,
        };
        server.spawn().await;
        server
    }

    async fn spawn(&mut self) -> Duration {
        let started = Instant::now();
        let child = Command::new(&self.binary)
            .arg("serve")
            .envs(&self.env)
            .env(
                "RUST_LOG",
                std::env::var("SWITCHBOARD_LOAD_LOG").unwrap_or_else(|_| "error".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        self.child = Some(child);
        let client = reqwest::Client::new();
        let url = format!("http://127.0.0.1:{}/health", self.port);
        for _ in 0..2000 {
            if let Ok(r) = client.get(&url).send().await {
                if r.status().is_success() {
                    return started.elapsed();
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("switchboard did not come up on port {}", self.port);
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// SIGKILL (with the `kill` program, as an operator would) and reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let status = Command::new("kill")
                .args(["-9", &child.id().to_string()])
                .status()
                .expect("the `kill` program runs (procps)");
            assert!(status.success(), "kill -9 failed");
            let _ = child.wait();
        }
    }

    /// Starts the binary again on the same port and data; returns the time until `/health`.
    pub async fn restart(&mut self) -> Duration {
        self.kill9();
        self.restarts += 1;
        self.spawn().await
    }

    /// Resident set size now, in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS:")
    }

    /// Peak resident set size, in KiB (`VmHWM`).
    pub fn peak_rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmHWM:")
    }

    /// CPU time used so far (user + system).
    pub fn cpu_time(&self) -> Duration {
        cpu_time_of(self.pid())
    }
}

/// CPU time (user + system) process `pid` used so far (this process: `std::process::id()`).
pub fn cpu_time_of(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of stat; index 11 and 12 after the name.
    let total = ticks(11) + ticks(12);
    Duration::from_millis(total * 1000 / clock_ticks())
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn clock_ticks() -> u64 {
    // The kernel's USER_HZ; `getconf CLK_TCK` says 100 on every Linux we run on.
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

fn proc_status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A frame as received: who received it, when, and the JSON.
#[derive(Debug, Clone)]
pub struct Received {
    /// The receiving party's name.
    pub party: String,
    /// When it arrived.
    pub at: Instant,
    /// The frame.
    pub frame: Value,
}

/// What every client saw, shared by all clients of one run.
#[derive(Default)]
pub struct Seen {
    /// Per party and call: every `seq` received.
    pub seqs: HashMap<(String, String), BTreeSet<u64>>,
    /// `seq`s received twice by the same party (a replay or a live push repeated).
    pub duplicates: Vec<(String, String, u64)>,
    /// Frames per call go to these inboxes (the transfer driver's).
    pub routes: HashMap<String, mpsc::UnboundedSender<Received>>,
    /// WebSocket (re)connections made.
    pub connects: u64,
    /// Frames received in total.
    pub frames: u64,
}

/// The shared record of a run's clients.
pub type SharedSeen = Rc<RefCell<Seen>>;

/// A WebSocket client that stays connected: on close it reconnects with `since=` (the last
/// `seq` of every call it knows) until [`Client::stop`].
pub struct Client {
    /// Name (`caller:<callId>` or the agent id).
    pub name: String,
    stop: Rc<RefCell<bool>>,
    out: mpsc::UnboundedSender<String>,
}

impl Client {
    /// Connects (and keeps reconnecting) to `ws://127.0.0.1:port/ws?token=`. `caller` says the
    /// party is a caller (its `since` is one number). Waits (at most 30 s) for the first
    /// `session.ready`.
    pub async fn connect(
        port: u16,
        name: &str,
        token: &str,
        caller: bool,
        seen: SharedSeen,
    ) -> Client {
        let stop = Rc::new(RefCell::new(false));
        let (out, mut out_rx) = mpsc::unbounded_channel::<String>();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
        let (name2, token2, stop2) = (name.to_string(), token.to_string(), stop.clone());
        actix_rt::spawn(async move {
            let mut ready = Some(ready_tx);
            while !*stop2.borrow() {
                let since = since_of(&seen.borrow(), &name2, caller);
                let mut url = format!("ws://127.0.0.1:{port}/ws?token={token2}");
                if let Some(s) = since {
                    url.push_str("&since=");
                    url.push_str(&s);
                }
                let conn = awc::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .finish()
                    .ws(url)
                    .max_frame_size(1 << 20)
                    .connect()
                    .await;
                let Ok((_, mut framed)) = conn else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                seen.borrow_mut().connects += 1;
                loop {
                    tokio::select! {
                        frame = framed.next() => match frame {
                            Some(Ok(awc::ws::Frame::Text(b))) => {
                                let at = Instant::now();
                                let Ok(v) = serde_json::from_slice::<Value>(&b) else { continue };
                                if v["type"] == "session.ready" {
                                    if let Some(r) = ready.take() { let _ = r.send(()); }
                                }
                                record(&seen, &name2, v, at);
                            }
                            Some(Ok(awc::ws::Frame::Ping(p))) => {
                                let _ = framed.send(awc::ws::Message::Pong(p)).await;
                            }
                            Some(Ok(awc::ws::Frame::Close(_))) | None | Some(Err(_)) => break,
                            _ => {}
                        },
                        msg = out_rx.recv() => match msg {
                            Some(t) => { let _ = framed.send(awc::ws::Message::Text(t.into())).await; }
                            None => { let _ = framed.send(awc::ws::Message::Close(None)).await; return; }
                        },
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {
                            if *stop2.borrow() {
                                let _ = framed.send(awc::ws::Message::Close(None)).await;
                                return;
                            }
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let _ = tokio::time::timeout(Duration::from_secs(30), ready_rx).await;
        Client {
            name: name.to_string(),
            stop,
            out,
        }
    }

    /// Sends a client message.
    pub fn send(&self, msg: &Value) {
        let _ = self.out.send(msg.to_string());
    }

    /// Closes for good.
    pub fn stop(&self) {
        *self.stop.borrow_mut() = true;
    }
}

fn since_of(seen: &Seen, name: &str, caller: bool) -> Option<String> {
    let mine: Vec<(&String, u64)> = seen
        .seqs
        .iter()
        .filter(|((p, _), _)| p == name)
        .filter_map(|((_, c), s)| s.last().map(|last| (c, *last)))
        .collect();
    if mine.is_empty() {
        return None;
    }
    if caller {
        return mine.iter().map(|(_, s)| *s).max().map(|s| s.to_string());
    }
    // At most 256 pairs: the most recent calls matter (older ones ended).
    let mut pairs: Vec<String> = mine.iter().map(|(c, s)| format!("{c}:{s}")).collect();
    pairs.sort();
    let pairs: Vec<String> = pairs.into_iter().rev().take(256).collect();
    Some(pairs.join(","))
}

fn record(seen: &SharedSeen, party: &str, v: Value, at: Instant) {
    let mut s = seen.borrow_mut();
    s.frames += 1;
    let seq = v["seq"].as_u64().unwrap_or(0);
    let Some(call_id) = v["callId"].as_str().map(str::to_string) else {
        return;
    };
    if seq > 0 {
        let set = s
            .seqs
            .entry((party.to_string(), call_id.clone()))
            .or_default();
        if !set.insert(seq) {
            s.duplicates.push((party.to_string(), call_id.clone(), seq));
        }
    }
    if let Some(tx) = s.routes.get(&call_id) {
        let _ = tx.send(Received {
            party: party.to_string(),
            at,
            frame: v,
        });
    }
}

/// Sorted latency samples in milliseconds.
#[derive(Debug, Default, Clone)]
pub struct Samples(pub Vec<f64>);

impl Samples {
    /// Adds one sample.
    pub fn push(&mut self, d: Duration) {
        self.0.push(d.as_secs_f64() * 1000.0);
    }

    /// The `q` quantile (0..=1), nearest rank.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let mut v = self.0.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
        v[rank - 1]
    }

    /// `{n, p50, p99, p999, max}` in ms.
    pub fn summary(&self) -> Value {
        json!({
            "n": self.0.len(),
            "p50_ms": round3(self.quantile(0.5)),
            "p99_ms": round3(self.quantile(0.99)),
            "p999_ms": round3(self.quantile(0.999)),
            "max_ms": round3(self.quantile(1.0)),
        })
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// An HTTP client for the API, timing every request.
#[derive(Clone)]
pub struct Api {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    http: reqwest::Client,
    /// Every request's latency.
    pub latency: Rc<RefCell<Samples>>,
}

/// An API answer: status (0 when the server could not be reached) and JSON body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status, 0 on a transport error.
    pub status: u16,
    /// The body (Null when not JSON).
    pub body: Value,
}

impl Api {
    /// A client for the server on `port`.
    pub fn new(port: u16) -> Api {
        Api {
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .pool_max_idle_per_host(256)
                // Before the server's 5 s keep-alive closes an idle connection under it.
                .pool_idle_timeout(Duration::from_secs(1))
                .build()
                .expect("HTTP client"),
            latency: Rc::new(RefCell::new(Samples::default())),
        }
    }

    /// Sends a request (management when `token` is `None`).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut req = self.http.request(
            method.parse().expect("method"),
            format!("{}{path}", self.base),
        );
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let started = Instant::now();
        let resp = req.send().await;
        let answer = match resp {
            Ok(r) => {
                let status = r.status().as_u16();
                let text = r.text().await.unwrap_or_default();
                Answer {
                    status,
                    body: serde_json::from_str(&text).unwrap_or(Value::Null),
                }
            }
            Err(_) => Answer {
                status: 0,
                body: Value::Null,
            },
        };
        if answer.status != 0 {
            self.latency.borrow_mut().push(started.elapsed());
        }
        answer
    }

    /// POST.
    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Answer {
        self.call("POST", path, token, Some(body)).await
    }

    /// GET.
    pub async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        self.call("GET", path, token, None).await
    }

    /// Creates a web agent (idempotent across restarts: 201 or 409) and returns its token.
    pub async fn agent(&self, id: &str) -> String {
        let r = self
            .post("/api/agents", None, json!({ "agentId": id, "name": id }))
            .await;
        assert!(
            r.status == 201 || r.status == 409,
            "create agent {id}: {r:?}"
        );
        let r = self
            .post(&format!("/api/agents/{id}/token"), None, json!({}))
            .await;
        assert_eq!(r.status, 200, "token for {id}: {r:?}");
        r.body["token"].as_str().expect("token").to_string()
    }
}

/// Where a party of one call is in the LiveKit fake.
#[derive(Debug, Clone, Default)]
pub struct Seat {
    /// The room it joined (or the conference its Voice SDK leg is in).
    pub room: Option<String>,
    /// Its identity.
    pub identity: Option<String>,
    /// Its Voice SDK leg (a CallSid in the Twilio fake) when it is in a conference.
    pub twilio_call: Option<String>,
}

impl Seat {
    /// Leaves the LiveKit room or hangs up the Voice SDK leg, whichever it is in.
    pub fn leave(&mut self, livekit: &FakeLiveKit, twilio: Option<&FakeTwilio>) {
        let room = self.room.take();
        if let (Some(sid), Some(fake)) = (self.twilio_call.take(), twilio) {
            fake.client_disconnect(&sid);
        } else if let (Some(room), Some(id)) = (room, self.identity.clone()) {
            livekit.leave(&room, &id);
        }
    }
}

/// Follows a move or a token answer into either plane, like the browser: leaves where it is,
/// then joins the LiveKit room, or (`plane: twilio`) connects the Voice SDK to the conference
/// with the Access Token. Returns false when the fake refused the token.
pub fn follow_any(
    livekit: &FakeLiveKit,
    twilio: Option<&FakeTwilio>,
    seat: &mut Seat,
    data: &Value,
) -> bool {
    if data["plane"] != "twilio" {
        if let (Some(sid), Some(fake)) = (seat.twilio_call.take(), twilio) {
            fake.client_disconnect(&sid);
            seat.room = None;
        }
        return follow(livekit, seat, data);
    }
    let (Some(fake), Some(token), Some(room)) =
        (twilio, data["token"].as_str(), data["roomName"].as_str())
    else {
        return false;
    };
    seat.leave(livekit, twilio);
    let call_id = room.split("--").next().unwrap_or_default();
    match fake.client_connect(token, &[("conference", room), ("callId", call_id)]) {
        Ok(sid) => {
            seat.twilio_call = Some(sid);
            seat.room = Some(room.to_string());
            seat.identity = data["identity"].as_str().map(str::to_string);
            true
        }
        Err(_) => false,
    }
}

/// Follows a `participant.move`'s data like a browser: leave the old room, join the new one
/// with the token. Returns false when the fake refused the token.
pub fn follow(livekit: &FakeLiveKit, seat: &mut Seat, data: &Value) -> bool {
    let Some(token) = data["token"].as_str() else {
        return false;
    };
    if let (Some(room), Some(id)) = (seat.room.take(), seat.identity.clone()) {
        livekit.leave(&room, &id);
    }
    match livekit.join(token) {
        Ok(j) => {
            seat.identity = Some(j.identity);
            seat.room = Some(j.room);
            true
        }
        Err(_) => false,
    }
}

/// One call the driver works on: its caller and the two agents it passes between.
pub struct CallUnderLoad {
    /// The call id.
    pub call_id: String,
    /// The caller's session token.
    pub caller_token: String,
    /// The caller's WebSocket client.
    pub caller: Client,
    /// The agent who owns it now and the other one (ids and tokens).
    pub owner: (String, String),
    /// The agent it goes to next.
    pub other: (String, String),
    /// The parties' seats in LiveKit: `caller`, then agent ids.
    pub seats: HashMap<String, Seat>,
    /// Frames of this call as received.
    pub inbox: mpsc::UnboundedReceiver<Received>,
    pending: Vec<Received>,
}

/// Why a step of the driver failed.
#[derive(Debug, Clone)]
pub struct StepError(pub String);

/// How long the driver waits for one expected frame.
pub const FRAME_WAIT: Duration = Duration::from_secs(10);

impl CallUnderLoad {
    /// Creates a call for `owner` (a busy agent may own many calls: it accepts the queued
    /// call directly), connects the caller's WebSocket, joins it to the main room, and has the
    /// owner accept and follow its move. `owner`'s WebSocket must be connected already.
    pub async fn start(
        api: &Api,
        livekit: &FakeLiveKit,
        seen: &SharedSeen,
        owner: (String, String),
        other: (String, String),
    ) -> Result<CallUnderLoad, StepError> {
        let port: u16 = api
            .base
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let r = api
            .post(
                "/api/calls",
                None,
                json!({ "callerName": "Load", "reason": "load test", "agentId": owner.0 }),
            )
            .await;
        if r.status != 201 {
            return Err(StepError(format!("create call: {} {}", r.status, r.body)));
        }
        let call_id = r.body["call"]["callId"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let caller_token = r.body["callerToken"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let (tx, inbox) = mpsc::unbounded_channel();
        seen.borrow_mut().routes.insert(call_id.clone(), tx);
        let caller_name = format!("caller:{call_id}");
        let caller = Client::connect(port, &caller_name, &caller_token, true, seen.clone()).await;
        let mut seats = HashMap::new();
        let mut seat = Seat::default();
        if !follow(livekit, &mut seat, &r.body["livekit"]) {
            return Err(StepError("caller could not join the main room".into()));
        }
        seats.insert("caller".to_string(), seat);
        let mut c = CallUnderLoad {
            call_id,
            caller_token,
            caller,
            owner,
            other,
            seats,
            inbox,
            pending: vec![],
        };
        let r = api
            .post(
                &format!("/api/calls/{}/accept", c.call_id),
                Some(&c.owner.1.clone()),
                json!({}),
            )
            .await;
        if r.status != 200 {
            return Err(StepError(format!("accept: {} {}", r.status, r.body)));
        }
        let owner_id = c.owner.0.clone();
        c.follow_move(livekit, &owner_id).await?;
        Ok(c)
    }

    /// Waits for a frame of `kind` received by `party` (and matching `pred`).
    pub async fn expect(
        &mut self,
        party: &str,
        kind: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Received, StepError> {
        if let Some(i) = self
            .pending
            .iter()
            .position(|r| r.party == party && r.frame["type"] == kind && pred(&r.frame))
        {
            return Ok(self.pending.remove(i));
        }
        let deadline = tokio::time::Instant::now() + FRAME_WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.inbox.recv()).await {
                Ok(Some(r)) => {
                    if r.party == party && r.frame["type"] == kind && pred(&r.frame) {
                        return Ok(r);
                    }
                    self.pending.push(r);
                    if self.pending.len() > 512 {
                        self.pending.drain(..256);
                    }
                }
                _ => {
                    return Err(StepError(format!(
                        "{party} did not receive {kind} on {}",
                        self.call_id
                    )))
                }
            }
        }
    }

    /// Waits for the party's next `participant.move` and follows it; returns the frame.
    pub async fn follow_move(
        &mut self,
        livekit: &FakeLiveKit,
        party: &str,
    ) -> Result<Received, StepError> {
        let who = if party == "caller" {
            format!("caller:{}", self.call_id)
        } else {
            party.to_string()
        };
        let mv = self.expect(&who, "participant.move", |_| true).await?;
        let seat = self.seats.entry(party.to_string()).or_default();
        if !follow(livekit, seat, &mv.frame["data"]) {
            return Err(StepError(format!(
                "{party} could not join {}",
                mv.frame["data"]["room"]
            )));
        }
        Ok(mv)
    }

    /// One complete warm transfer from the owner to the other agent, every move followed and
    /// the hand-over confirmed (the caller's arrival in the main room observed by the new
    /// owner). Records initiate → `transfer.offered` at B and complete → `participant.move`
    /// at the caller.
    /// With a `poller` (a simulated polling client for B), B accepts only once the poller
    /// has seen the transfer too, and the time it took goes to `timings.polled`.
    pub async fn warm_transfer(
        &mut self,
        api: &Api,
        livekit: &FakeLiveKit,
        timings: &mut Timings,
        poller: Option<&Poller>,
    ) -> Result<(), StepError> {
        let (a, a_token) = self.owner.clone();
        let (b, b_token) = self.other.clone();
        let started = Instant::now();
        let r = api
            .post(
                "/api/transfers/initiate",
                Some(&a_token),
                json!({ "callId": self.call_id, "agentBId": b, "mode": "warm" }),
            )
            .await;
        if r.status != 201 {
            return Err(StepError(format!("initiate: {} {}", r.status, r.body)));
        }
        let id = r.body["transferId"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let got = self
            .expect(&b, "transfer.offered", |f| {
                f["data"]["transferId"] == id.as_str()
            })
            .await?;
        timings
            .offered
            .push(got.at.saturating_duration_since(started));
        if let Some(p) = poller {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Some(at) = p.seen.borrow().get(&id) {
                    timings.polled.push(at.saturating_duration_since(started));
                    break;
                }
                if Instant::now() > deadline {
                    return Err(StepError(format!("the poller never saw {id}")));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        self.follow_move(livekit, "caller").await?; // to the hold room
        self.follow_move(livekit, &a).await?; // to the consult room
        let r = api
            .post(
                &format!("/api/transfers/{id}/accept"),
                Some(&b_token),
                json!({}),
            )
            .await;
        if r.status != 200 {
            return Err(StepError(format!(
                "accept transfer: {} {}",
                r.status, r.body
            )));
        }
        self.follow_move(livekit, &b).await?; // to the consult room
        let completed = Instant::now();
        let r = api
            .post(
                &format!("/api/transfers/{id}/complete"),
                Some(&a_token),
                json!({}),
            )
            .await;
        if r.status != 200 || r.body["status"] != "completed" {
            return Err(StepError(format!("complete: {} {}", r.status, r.body)));
        }
        let mv = self.follow_move(livekit, "caller").await?; // back to the main room
        timings
            .moved
            .push(mv.at.saturating_duration_since(completed));
        self.follow_move(livekit, &b).await?; // B to the main room
                                              // A leaves the consult room (released).
        if let Some(seat) = self.seats.get_mut(&a) {
            if let (Some(room), Some(ident)) = (seat.room.take(), seat.identity.clone()) {
                livekit.leave(&room, &ident);
            }
        }
        // The hand-over is done when B sees the caller arrive in the main room.
        let caller_identity = self.seats["caller"].identity.clone().unwrap_or_default();
        self.expect(&b, "participant.joined", |f| {
            f["data"]["identity"] == caller_identity.as_str() && f["data"]["space"] == "main"
        })
        .await?;
        std::mem::swap(&mut self.owner, &mut self.other);
        Ok(())
    }
}

/// The latencies a warm transfer records.
#[derive(Debug, Default)]
pub struct Timings {
    /// Initiate sent → `transfer.offered` received by B.
    pub offered: Samples,
    /// Complete sent → `participant.move` received by the caller.
    pub moved: Samples,
    /// Initiate sent → the polling client first sees the transfer.
    pub polled: Samples,
}

/// A client that learns of transfers the way a polling agent console does: by polling
/// `GET /api/transfers?status=active` every `period`, starting at a random phase.
pub struct Poller {
    /// When each transfer id was first seen by a poll.
    pub seen: Rc<RefCell<HashMap<String, Instant>>>,
    stop: Rc<RefCell<bool>>,
}

impl Poller {
    /// Starts polling as `agent_id` with its `token`; the first poll is after `phase`.
    pub fn start(
        api: &Api,
        agent_id: &str,
        token: &str,
        period: Duration,
        phase: Duration,
    ) -> Poller {
        let seen: Rc<RefCell<HashMap<String, Instant>>> = Rc::default();
        let stop = Rc::new(RefCell::new(false));
        let (api, me, token, seen2, stop2) = (
            api.clone(),
            agent_id.to_string(),
            token.to_string(),
            seen.clone(),
            stop.clone(),
        );
        actix_rt::spawn(async move {
            tokio::time::sleep(phase).await;
            let mut next = tokio::time::Instant::now();
            while !*stop2.borrow() {
                let r = api.get("/api/transfers?status=active", Some(&token)).await;
                let at = Instant::now();
                for t in r.body.as_array().into_iter().flatten() {
                    if t["toAgentId"] == me.as_str() {
                        if let Some(id) = t["transferId"].as_str() {
                            seen2.borrow_mut().entry(id.to_string()).or_insert(at);
                        }
                    }
                }
                next += period;
                tokio::time::sleep_until(next).await;
            }
        });
        Poller { seen, stop }
    }

    /// Stops polling.
    pub fn stop(&self) {
        *self.stop.borrow_mut() = true;
    }
}

/// What the invariant checker counted.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct InvariantReport {
    /// Calls checked.
    pub calls: usize,
    /// Calls `ended`.
    pub ended: usize,
    /// Calls `active` with their owner and the caller both in the main space, confirmed.
    pub with_agent: usize,
    /// Transfers stored.
    pub transfers: usize,
    /// Transfers per status.
    pub transfer_statuses: BTreeMap<String, usize>,
    /// Events stored (all calls).
    pub events: usize,
    /// Frames the clients received with a `seq` they had already received.
    pub duplicate_seqs: usize,
    /// Phone specialists' legs in the Twilio fake, by final status.
    pub phone_legs: BTreeMap<String, usize>,
    /// Voice SDK client legs the fake saw (browsers in conferences).
    pub client_legs: usize,
    /// Conferences the fake held, by final status.
    pub conferences: BTreeMap<String, usize>,
    /// Everything wrong, one line each (empty when every invariant holds).
    pub violations: Vec<String>,
    /// The stored event timeline of every call a violation names, to see how it got there.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub timelines: Vec<String>,
}

const TERMINAL: &[&str] = &[
    "completed",
    "declined",
    "timed_out",
    "cancelled",
    "failed",
    "abandoned",
];

/// Checks the invariants of a finished run over the API and then over the store file: every
/// transfer terminal, every caller with an agent (owner and caller both in the main space,
/// arrival confirmed, no open transfer) or the call cleanly ended (nobody placed), the LiveKit
/// fake holding nobody of an ended call, no duplicate `seq` received, and the store consistent
/// with the API (same status, owner and seq; events numbered 1..n without a gap; the call's
/// transfers are the ones the API shows).
pub async fn check_invariants(
    api: &Api,
    livekit: &FakeLiveKit,
    twilio: Option<&FakeTwilio>,
    seen: &Seen,
    call_ids: &[String],
) -> InvariantReport {
    let mut report = InvariantReport {
        calls: call_ids.len(),
        duplicate_seqs: seen.duplicates.len(),
        ..Default::default()
    };
    for (p, c, s) in seen.duplicates.iter().take(10) {
        report
            .violations
            .push(format!("{p} received seq {s} of {c} twice"));
    }
    for id in call_ids {
        let r = api.get(&format!("/api/calls/{id}"), None).await;
        if r.status != 200 {
            report
                .violations
                .push(format!("GET {id}: {} {}", r.status, r.body));
            continue;
        }
        let call = &r.body;
        let status = call["status"].as_str().unwrap_or_default();
        let parties = call["parties"].as_array().cloned().unwrap_or_default();
        let place = |who: &str| {
            parties.iter().find(|p| p["party"] == who).map(|p| {
                (
                    p["space"].as_str().unwrap_or_default().to_string(),
                    p["confirmed"] == true,
                )
            })
        };
        if let Some(t) = call.get("transfer").filter(|t| !t.is_null()) {
            let ts = t["status"].as_str().unwrap_or_default();
            if !TERMINAL.contains(&ts) {
                report
                    .violations
                    .push(format!("{id}: transfer {} still {ts}", t["transferId"]));
            }
        }
        match status {
            "ended" => {
                report.ended += 1;
                if !parties.is_empty() {
                    report
                        .violations
                        .push(format!("{id}: ended but parties still placed: {parties:?}"));
                }
                let main = call["mainRoom"].as_str().unwrap_or_default();
                if !main.is_empty() && !livekit.participants(main).is_empty() {
                    report.violations.push(format!(
                        "{id}: ended but LiveKit still has {:?} in {main}",
                        livekit.participants(main)
                    ));
                }
            }
            "active" => {
                let owner = call["ownerId"].as_str().unwrap_or_default();
                let ok = place("caller") == Some(("main".into(), true))
                    && place(owner) == Some(("main".into(), true));
                if ok {
                    report.with_agent += 1;
                } else {
                    report.violations.push(format!(
                        "{id}: active but caller/owner {owner} not both confirmed in main: {parties:?}"
                    ));
                }
            }
            other => report.violations.push(format!(
                "{id}: left in status {other} (expected active or ended)"
            )),
        }
        if status == "active" {
            // The plane agrees: caller and owner are in the main room (LiveKit), or in the
            // main conference (the Twilio fake), not held.
            let main = call["mainRoom"].as_str().unwrap_or_default();
            let owner = call["ownerId"].as_str().unwrap_or_default();
            for (party, who) in [("caller", call["callerId"].as_str()), (owner, Some(owner))] {
                let Some(who) = who else { continue };
                let plane = parties
                    .iter()
                    .find(|p| p["party"] == party)
                    .map(|p| p["plane"].as_str().unwrap_or_default().to_string());
                if plane.as_deref() == Some("twilio") {
                    let there = twilio
                        .and_then(|f| f.conference(main))
                        .filter(|c| c.status == "in-progress")
                        .is_some_and(|c| {
                            c.participants
                                .iter()
                                .any(|p| p.label.as_deref() == Some(who) && !p.hold)
                        });
                    if !there {
                        report.violations.push(format!(
                            "{id}: the Twilio fake does not have {who} in conference {main}"
                        ));
                    }
                } else if !livekit.is_in_room(main, who) {
                    report
                        .violations
                        .push(format!("{id}: LiveKit does not have {who} in {main}"));
                }
            }
        }
    }
    report
}

/// Checks the Twilio fake's state against the calls as the API showed them at the end of the
/// run (`views`: `GET /api/calls/{id}` bodies) and the phone specialists (`(agent id,
/// number)`), adding counts and violations to `report`: every conference of an ended call
/// is completed, and so is every consult conference of a call without an open transfer;
/// every browser's Voice SDK leg still up belongs to a call that runs and sits in the
/// conference its party is placed in; every specialist's leg is over (completed, canceled,
/// busy, no-answer or failed) unless a running call has that specialist placed, and then
/// only one is up.
pub fn check_twilio(
    fake: &FakeTwilio,
    views: &HashMap<String, Value>,
    specialists: &[(String, String)],
    report: &mut InvariantReport,
) {
    let call_of = |name: &str| name.split("--").next().unwrap_or_default().to_string();
    let running = |v: &Value| v["status"] != "ended" && !v.is_null();
    let open_transfer = |v: &Value| {
        let t = &v["transfer"];
        !t.is_null() && !TERMINAL.contains(&t["status"].as_str().unwrap_or_default())
    };
    let placed_in = |v: &Value, party: &str| {
        v["parties"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["party"] == party))
            .map(|p| {
                (
                    p["plane"].as_str().unwrap_or_default().to_string(),
                    p["room"].as_str().unwrap_or_default().to_string(),
                )
            })
    };
    for c in fake.conferences() {
        *report.conferences.entry(c.status.clone()).or_default() += 1;
        if c.status == "completed" {
            continue;
        }
        let id = call_of(&c.friendly_name);
        let Some(v) = views.get(&id) else {
            report.violations.push(format!(
                "conference {} ({}) belongs to no call of the run",
                c.friendly_name, c.status
            ));
            continue;
        };
        if !running(v) {
            report.violations.push(format!(
                "{id}: ended but conference {} is still {} with {:?}",
                c.friendly_name,
                c.status,
                c.participants.iter().map(|p| &p.label).collect::<Vec<_>>()
            ));
        } else if v["mainRoom"] != c.friendly_name.as_str() && !open_transfer(v) {
            report.violations.push(format!(
                "{id}: no open transfer but consult conference {} is still {}",
                c.friendly_name, c.status
            ));
        }
    }
    for leg in fake.calls() {
        let Some(identity) = leg.from.strip_prefix("client:") else {
            continue;
        };
        report.client_legs += 1;
        if leg.is_over() {
            continue;
        }
        let id = leg
            .extra_params
            .iter()
            .find(|(k, _)| k == "callId")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let Some(v) = views.get(&id).filter(|v| running(v)) else {
            report.violations.push(format!(
                "{id}: client leg {} of {identity} still {} after its call ended",
                leg.sid, leg.status
            ));
            continue;
        };
        let party = if v["callerId"] == identity {
            "caller"
        } else {
            identity
        };
        let expected = placed_in(v, party);
        let here = leg.conference.clone().unwrap_or_default();
        if expected != Some(("twilio".into(), here.clone())) {
            report.violations.push(format!(
                "{id}: client leg {} of {identity} is {} in {here:?}, but the call places it at {expected:?}",
                leg.sid, leg.status
            ));
        }
    }
    for (spec, number) in specialists {
        let legs: Vec<_> = fake
            .calls()
            .into_iter()
            .filter(|c| c.to == *number)
            .collect();
        for leg in &legs {
            *report.phone_legs.entry(leg.status.clone()).or_default() += 1;
        }
        let up: Vec<_> = legs.iter().filter(|c| !c.is_over()).collect();
        let wanted = views
            .values()
            .filter(|v| running(v) && placed_in(v, spec).is_some())
            .count();
        if up.len() > wanted.min(1) {
            report.violations.push(format!(
                "phone specialist {spec}: legs {:?} still up, {wanted} running call(s) place them",
                up.iter().map(|c| (&c.sid, &c.status)).collect::<Vec<_>>()
            ));
        }
    }
}

/// Checks the store file of a stopped server against what the API said (`calls` = the
/// bodies of `GET /api/calls/{id}` taken just before the stop), adding to `report`.
pub async fn check_store(
    data_dir: &Path,
    calls: &HashMap<String, Value>,
    report: &mut InvariantReport,
) {
    use switchboard::store::Store;
    let store: Arc<dyn Store> = match switchboard::store::embedded::EmbeddedStore::open(data_dir) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            report.violations.push(format!("store does not open: {e}"));
            return;
        }
    };
    for (id, api_view) in calls {
        let Ok(Some(stored)) = store.get_call(id).await else {
            report.violations.push(format!("{id}: not in the store"));
            continue;
        };
        let status = serde_json::to_value(stored.call.status).unwrap_or(Value::Null);
        if status != api_view["status"] {
            report.violations.push(format!(
                "{id}: store says {status}, the API said {}",
                api_view["status"]
            ));
        }
        if stored.call.owner_id.as_deref() != api_view["ownerId"].as_str() {
            report
                .violations
                .push(format!("{id}: owner differs between store and API"));
        }
        match store.events_since(id, 0).await {
            Ok(events) => {
                report.events += events.len();
                let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
                if seqs != (1..=seqs.len() as u64).collect::<Vec<_>>() {
                    report
                        .violations
                        .push(format!("{id}: stored events not numbered 1..n: {seqs:?}"));
                }
                if Some(seqs.len() as u64) != api_view["seq"].as_u64() {
                    report.violations.push(format!(
                        "{id}: {} events stored, the API's seq is {}",
                        seqs.len(),
                        api_view["seq"]
                    ));
                }
            }
            Err(e) => report
                .violations
                .push(format!("{id}: events unreadable: {e}")),
        }
        match store.list_transfers_by_call(id).await {
            Ok(ts) => {
                for t in ts {
                    report.transfers += 1;
                    let s = t.status.as_str().to_string();
                    if !TERMINAL.contains(&s.as_str()) {
                        report
                            .violations
                            .push(format!("{id}: stored transfer {} is {s}", t.transfer_id));
                    }
                    *report.transfer_statuses.entry(s).or_default() += 1;
                }
            }
            Err(e) => report
                .violations
                .push(format!("{id}: transfers unreadable: {e}")),
        }
    }
    let named: Vec<&String> = calls
        .keys()
        .filter(|id| report.violations.iter().any(|v| v.contains(id.as_str())))
        .collect();
    for id in named {
        if let Ok(events) = store.events_since(id, 0).await {
            let lines: Vec<String> = events
                .iter()
                .map(|e| {
                    format!(
                        "  {:>3} {} {} {}",
                        e.seq,
                        e.at.format("%H:%M:%S%.3f"),
                        e.kind,
                        e.data
                    )
                })
                .collect();
            report
                .timelines
                .push(format!("{id}:\n{}", lines.join("\n")));
        }
    }
}

/// A small deterministic generator (xorshift64*) for the chaos schedule; the seed is printed
/// so a run can be repeated.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is replaced by a constant).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

/// A call driven by reconciliation, robust to lost frames, lost webhooks and server restarts:
/// each [`ChaosCall::step`] reads the call from the API, puts every party where the call
/// says it is placed (a fresh token from `POST /api/tokens`, like a reloaded page; a party
/// whose arrival stays unconfirmed rejoins, producing a fresh webhook), and moves the
/// transfer on (B accepts, A completes, the owner initiates the next one).
pub struct ChaosCall {
    /// The call id.
    pub call_id: String,
    /// The caller's session token.
    pub caller_token: String,
    /// The caller's WebSocket client (reconnecting).
    pub caller: Client,
    /// The two agents it passes between: ids and tokens.
    pub agents: [(String, String); 2],
    /// Seats in LiveKit per party, with when they last joined.
    pub seats: HashMap<String, (Seat, Instant)>,
    /// Transfers this call initiated.
    pub initiated: usize,
    /// Whether the caller hung up (the call is done).
    pub hung_up: bool,
    /// The Twilio fake, when the run has phone legs.
    pub twilio: Option<Arc<FakeTwilio>>,
    /// The phone specialist this call may be transferred to: agent id and number (dialled
    /// through the Twilio fake, which plays the far end as scripted per transfer).
    pub phone: Option<(String, String)>,
    /// Transfers to the phone specialist initiated.
    pub phone_initiated: usize,
    /// Whether the phone specialist, owning the call, hung up (the call is done).
    pub phone_hung_up: bool,
    /// Whether the call was seen ended.
    pub ended: bool,
    /// Times the call had the phone specialist as its owner while the Twilio fake had no
    /// leg of theirs up (so the caller hung up).
    pub phone_owner_gone: usize,
}

/// How the phone specialist's phone behaves for one transfer (`dice` in 0..100): mostly it
/// answers and presses 1; else it presses 2, presses nothing, is busy, does not answer,
/// cannot be dialled, or hangs up during the briefing.
pub fn phone_script(dice: u64) -> (PhoneScript, &'static str) {
    let after = Duration::from_millis(dice * 7);
    match dice {
        0..=59 => (PhoneScript::answering_after(after).pressing("1"), "accepts"),
        60..=67 => (
            PhoneScript::answering_after(after).pressing("2"),
            "declines",
        ),
        68..=73 => (PhoneScript::answering().pressing_nothing(), "no_input"),
        74..=80 => (PhoneScript::busy(), "busy"),
        81..=86 => (PhoneScript::no_answer(), "no_answer"),
        87..=92 => (PhoneScript::failing(), "dial_fails"),
        _ => (
            PhoneScript::hanging_up_after(Duration::from_millis(200)),
            "hangs_up",
        ),
    }
}

/// What a [`ChaosCall::step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The server was unreachable.
    Down,
    /// The call is settled: active with everyone confirmed and no open transfer, or ended.
    Settled,
    /// Work is under way.
    Busy,
}

impl ChaosCall {
    /// Creates a call for `agents[0]` and has it accepted; retries while the server is down.
    pub async fn start(
        api: &Api,
        livekit: &FakeLiveKit,
        seen: &SharedSeen,
        agents: [(String, String); 2],
        twilio: Option<Arc<FakeTwilio>>,
        phone: Option<(String, String)>,
    ) -> ChaosCall {
        let port: u16 = api
            .base
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let created = loop {
            let r = api
                .post(
                    "/api/calls",
                    None,
                    json!({ "callerName": "Chaos", "reason": "chaos run", "agentId": agents[0].0 }),
                )
                .await;
            if r.status == 201 {
                break r.body;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let call_id = created["call"]["callId"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let caller_token = created["callerToken"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let caller_name = format!("caller:{call_id}");
        let caller = Client::connect(port, &caller_name, &caller_token, true, seen.clone()).await;
        let mut seat = Seat::default();
        follow(livekit, &mut seat, &created["livekit"]);
        let mut seats = HashMap::new();
        seats.insert("caller".to_string(), (seat, Instant::now()));
        ChaosCall {
            call_id,
            caller_token,
            caller,
            agents,
            seats,
            initiated: 0,
            hung_up: false,
            twilio,
            phone,
            phone_initiated: 0,
            phone_hung_up: false,
            phone_owner_gone: 0,
            ended: false,
        }
    }

    fn is_phone(&self, party: &str) -> bool {
        self.phone.as_ref().is_some_and(|(id, _)| id == party)
    }

    /// The phone specialist's leg that is up in the Twilio fake, if any.
    fn phone_leg(&self) -> Option<String> {
        let (fake, (_, number)) = (self.twilio.as_ref()?, self.phone.as_ref()?);
        fake.calls()
            .into_iter()
            .find(|c| c.to == *number && c.status == "in-progress")
            .map(|c| c.sid)
    }

    fn token_of(&self, party: &str) -> Option<String> {
        if party == "caller" {
            return Some(self.caller_token.clone());
        }
        self.agents
            .iter()
            .find(|(a, _)| a == party)
            .map(|(_, t)| t.clone())
    }

    /// One reconciliation step; `may_initiate` allows starting another transfer, `hang_up`
    /// makes the caller hang up now; `dice` (0..100) picks B's answer (under 8: decline) and
    /// whether A cancels a briefing (under 4).
    pub async fn step(
        &mut self,
        api: &Api,
        livekit: &FakeLiveKit,
        may_initiate: bool,
        hang_up: bool,
        dice: u64,
    ) -> Progress {
        let r = api.get(&format!("/api/calls/{}", self.call_id), None).await;
        if r.status == 0 {
            return Progress::Down;
        }
        if r.status != 200 {
            // 503 while the actor reloads after a restart.
            return Progress::Busy;
        }
        let call = r.body;
        let status = call["status"].as_str().unwrap_or_default().to_string();
        let parties = call["parties"].as_array().cloned().unwrap_or_default();
        // Browsers leave rooms they are no longer placed in (released, call ended).
        let placed: Vec<String> = parties
            .iter()
            .filter_map(|p| p["party"].as_str().map(str::to_string))
            .collect();
        let twilio = self.twilio.clone();
        for (name, (seat, _)) in self.seats.iter_mut() {
            if !placed.contains(name) {
                seat.leave(livekit, twilio.as_deref());
            }
        }
        if status == "ended" {
            self.ended = true;
            return Progress::Settled;
        }
        if hang_up {
            let r = api
                .post(
                    &format!("/api/calls/{}/hangup", self.call_id),
                    Some(&self.caller_token),
                    json!({}),
                )
                .await;
            if r.status == 200 {
                self.hung_up = true;
            }
            return Progress::Busy;
        }
        // Everyone where the call places them.
        let mut all_confirmed = true;
        for p in &parties {
            let name = p["party"].as_str().unwrap_or_default().to_string();
            let room = p["room"].as_str().unwrap_or_default().to_string();
            let confirmed = p["confirmed"] == true;
            all_confirmed &= confirmed;
            if p["plane"] != "livekit" && (self.twilio.is_none() || self.is_phone(&name)) {
                // Twilio moves phone legs itself; web parties join conferences below.
                continue;
            }
            let entry = self
                .seats
                .entry(name.clone())
                .or_insert_with(|| (Seat::default(), Instant::now()));
            let here = entry.0.room.as_deref() == Some(room.as_str());
            let stale = !confirmed && entry.1.elapsed() > Duration::from_millis(1500);
            if here && !stale {
                continue;
            }
            if confirmed && here {
                continue;
            }
            let Some(token) = self.token_of(&name) else {
                continue;
            };
            let t = api
                .post(
                    "/api/tokens",
                    Some(&token),
                    json!({ "callId": self.call_id }),
                )
                .await;
            if t.status == 200 && t.body["roomName"] == room.as_str() {
                let entry = self.seats.get_mut(&name).expect("seat inserted above");
                follow_any(livekit, twilio.as_deref(), &mut entry.0, &t.body);
                entry.1 = Instant::now();
            }
        }
        let transfer = call.get("transfer").cloned().unwrap_or(Value::Null);
        let tstatus = transfer["status"].as_str().unwrap_or_default();
        let open = !transfer.is_null() && !TERMINAL.contains(&tstatus);
        if open {
            let id = transfer["transferId"].as_str().unwrap_or_default();
            let from = transfer["fromAgentId"].as_str().unwrap_or_default();
            let to = transfer["toAgentId"].as_str().unwrap_or_default();
            match tstatus {
                "initiated" | "ringing" => {
                    let verb = if dice < 8 { "decline" } else { "accept" };
                    if let Some(t) = self.token_of(to) {
                        api.post(&format!("/api/transfers/{id}/{verb}"), Some(&t), json!({}))
                            .await;
                    }
                }
                "briefing" if all_confirmed => {
                    let verb = if dice < 4 { "cancel" } else { "complete" };
                    if let Some(t) = self.token_of(from) {
                        api.post(&format!("/api/transfers/{id}/{verb}"), Some(&t), json!({}))
                            .await;
                    }
                }
                _ => {}
            }
            return Progress::Busy;
        }
        match status.as_str() {
            "queued" | "ringing" => {
                // Back in the queue (its owner dropped): an agent takes it again.
                let (_, t) = &self.agents[self.initiated % 2];
                api.post(
                    &format!("/api/calls/{}/accept", self.call_id),
                    Some(t),
                    json!({}),
                )
                .await;
                Progress::Busy
            }
            "on_hold" => {
                let owner = call["ownerId"].as_str().unwrap_or_default();
                if let Some(t) = self.token_of(owner) {
                    api.post(
                        &format!("/api/calls/{}/resume", self.call_id),
                        Some(&t),
                        json!({}),
                    )
                    .await;
                }
                Progress::Busy
            }
            "active" if all_confirmed => {
                if !may_initiate {
                    return Progress::Settled;
                }
                let owner = call["ownerId"].as_str().unwrap_or_default().to_string();
                if self.is_phone(&owner) {
                    // The phone specialist took the call over: they hang up after a while,
                    // which ends it; a new call takes its place.
                    if dice < 30 {
                        if let Some(sid) = self.phone_leg() {
                            self.twilio.as_deref().map(|f| f.hang_up(&sid));
                            self.phone_hung_up = true;
                        } else {
                            // The server has the specialist in the call, Twilio has no leg
                            // of theirs up (its report of the end was lost): the caller,
                            // alone, hangs up.
                            self.phone_owner_gone += 1;
                            let r = api
                                .post(
                                    &format!("/api/calls/{}/hangup", self.call_id),
                                    Some(&self.caller_token),
                                    json!({}),
                                )
                                .await;
                            self.hung_up = r.status == 200;
                        }
                    }
                    return Progress::Busy;
                }
                let Some(t) = self.token_of(&owner) else {
                    return Progress::Busy;
                };
                let mut target = self
                    .agents
                    .iter()
                    .find(|(a, _)| *a != owner)
                    .map(|(a, _)| a.clone())
                    .unwrap_or_default();
                let mut to_phone = false;
                if let (Some(fake), Some((spec, number))) = (&self.twilio, &self.phone) {
                    if dice.is_multiple_of(2) {
                        fake.set_phone(number, phone_script(dice).0);
                        target = spec.clone();
                        to_phone = true;
                    }
                }
                let r = api
                    .post(
                        "/api/transfers/initiate",
                        Some(&t),
                        json!({ "callId": self.call_id, "agentBId": target, "mode": "warm" }),
                    )
                    .await;
                if r.status == 201 {
                    self.initiated += 1;
                    self.phone_initiated += usize::from(to_phone);
                }
                Progress::Busy
            }
            _ => Progress::Busy,
        }
    }
}

/// Injects Twilio fault number `kind` (7..15) into the fake; returns its name.
fn twilio_fault(
    fake: &FakeTwilio,
    kind: u64,
    rng: &mut Rng,
    timeouts_left: &mut usize,
) -> &'static str {
    // REST faults wait for the next request; they do not pile up, and they are rarer than
    // the rest (Twilio requests are few: a handful per phone transfer).
    let rest = (8..=11).contains(&kind);
    let kind = if rest && (fake.rest_faults_pending() > 0 || !rng.chance(0.1)) {
        7
    } else {
        kind
    };
    match kind {
        7 => {
            let ms = if rng.chance(0.5) { 0 } else { rng.below(300) };
            fake.set_rest_latency(Duration::from_millis(ms));
            "twilio_latency"
        }
        8 => {
            let retry_after_secs = rng.below(2);
            fake.fail_next(
                Route::Any,
                1,
                RestFault::TooManyRequests { retry_after_secs },
            );
            "twilio_429"
        }
        9 => {
            fake.fail_next(Route::Any, 1, RestFault::ServerError);
            "twilio_500"
        }
        10 => {
            fake.fail_next(Route::Any, 1, RestFault::Unavailable);
            "twilio_503"
        }
        11 if *timeouts_left > 0 && rng.chance(0.3) => {
            *timeouts_left -= 1;
            // Past the client's 10 s per attempt; carried out or not, as Twilio may.
            let carried_out = rng.chance(0.5);
            fake.hang_next(Route::Any, 1, carried_out, Duration::from_secs(11));
            if carried_out {
                "twilio_timeout_carried_out"
            } else {
                "twilio_timeout_not_carried_out"
            }
        }
        11 | 12 => {
            fake.drop_next_callbacks(1);
            "twilio_callback_dropped"
        }
        13 => {
            fake.duplicate_next_callbacks(1);
            "twilio_callback_duplicated"
        }
        _ => {
            fake.reorder_next_callbacks(2);
            "twilio_callbacks_reordered"
        }
    }
}

/// The size and schedule of a chaos run.
#[derive(Debug, Clone)]
pub struct ChaosOptions {
    /// The switchboard binary.
    pub binary: PathBuf,
    /// Transfers to initiate in total (at least).
    pub transfers: usize,
    /// Calls driven at the same time.
    pub calls: usize,
    /// `kill -9` + restart of the server during the run (at least).
    pub kills: usize,
    /// The schedule's seed.
    pub seed: u64,
    /// Inject LiveKit faults (webhooks dropped, duplicated, reordered; Twirp 429/500/503 and
    /// latency), and with `phone` the Twilio fake's (REST latency, 429/500/503, requests
    /// hanging past the client's timeout; callbacks dropped, duplicated, reordered).
    pub faults: bool,
    /// Phone legs: every call may also be transferred to a phone specialist of its own,
    /// dialled through the Twilio fake (conferences, the web parties joining them as Voice
    /// SDK client legs), whose phone answers as [`phone_script`] draws it.
    pub phone: bool,
}

/// The outcome of a chaos run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ChaosOutcome {
    /// The seed used.
    pub seed: u64,
    /// Transfers initiated (201).
    pub initiated: usize,
    /// Calls created.
    pub calls_created: usize,
    /// Calls the caller hung up mid-run.
    pub hangups: usize,
    /// Transfers to a phone specialist initiated (201).
    pub phone_initiated: usize,
    /// Calls that ended with their phone specialist (owning them) hanging up.
    pub phone_hangups: usize,
    /// Calls the server still gave to a phone specialist whose leg was gone in Twilio (its
    /// end's callback lost): their callers hung up. Not a violation (Twilio does not retry a
    /// lost status callback and the server does not poll legs), but counted.
    pub phone_owner_gone: usize,
    /// Calls the server ended by itself (a party gone for good, a specialist owning the
    /// call hanging up on their own); each was replaced by a new call.
    pub ended_by_server: usize,
    /// Server kills (each followed by a restart).
    pub kills: usize,
    /// Longest time from a restart's spawn to `/health`.
    pub max_restart_ms: f64,
    /// Faults injected, by kind.
    pub faults: BTreeMap<String, usize>,
    /// WebSocket (re)connections.
    pub ws_connects: u64,
    /// Seconds the run took.
    pub seconds: f64,
    /// The invariant checker's counts and violations.
    pub report: InvariantReport,
}

/// Runs the chaos scenario: `calls` calls passed back and forth between agent pairs through
/// warm transfers (some declined, some cancelled, some abandoned by the caller hanging up),
/// LiveKit faults injected throughout, and the server killed with SIGKILL and restarted at
/// random moments; then lets everything settle and checks the invariants over the API, the
/// LiveKit fake, the clients' `seq`s and finally the store file.
pub async fn run_chaos(opts: ChaosOptions) -> ChaosOutcome {
    use super::app::{server_env, TestOptions};
    use super::livekit::FakeOptions;
    let started = Instant::now();
    let livekit = Arc::new(FakeLiveKit::start(FakeOptions::default()));
    let data_dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let address = format!("http://127.0.0.1:{port}");
    let twilio = opts.phone.then(|| {
        use super::app::{TWILIO_APP_SID, TWILIO_NUMBER};
        Arc::new(FakeTwilio::start(super::twilio::FakeTwilioConfig {
            apps: [(
                TWILIO_APP_SID.to_string(),
                format!("{address}/twilio/client"),
            )]
            .into(),
            numbers: [(TWILIO_NUMBER.to_string(), format!("{address}/twilio/voice"))].into(),
            // Ring and gather timeouts pass ten times faster.
            time_scale: 0.1,
            ..Default::default()
        }))
    });
    let test_opts = TestOptions {
        ring_timeout: 4.0,
        move_timeout: 3.0,
        rejoin_grace: 3.0,
        disconnect_grace: 5.0,
        ..Default::default()
    };
    let mut env = server_env(
        &test_opts,
        &livekit,
        data_dir.path(),
        &format!("127.0.0.1:{port}"),
    );
    if let Some(fake) = &twilio {
        env.extend(super::app::twilio_env(fake, &address));
    }
    let mut server = ServerProcess::start(&opts.binary, env, port).await;
    livekit.set_webhook_url(Some(format!("http://127.0.0.1:{port}/livekit/webhook")));
    livekit.set_record(false);
    let api = Api::new(port);
    let seen: SharedSeen = Rc::new(RefCell::new(Seen::default()));
    let mut agents = vec![];
    let mut agent_clients = vec![];
    for i in 0..opts.calls * 2 {
        let id = format!("chaos-agent-{i}");
        let token = api.agent(&id).await;
        agent_clients.push(Client::connect(port, &id, &token, false, seen.clone()).await);
        agents.push((id, token));
    }
    // One phone specialist per worker (a phone agent is engaged by one call at a time).
    let mut specialists = vec![];
    if twilio.is_some() {
        for w in 0..opts.calls {
            let (id, number) = (format!("chaos-spec-{w}"), format!("+1555020{w:04}"));
            let r = api
                .post(
                    "/api/agents",
                    None,
                    json!({ "agentId": id, "name": id, "kind": "phone", "phoneNumber": number }),
                )
                .await;
            assert!(
                r.status == 201 || r.status == 409,
                "create phone agent {id}: {r:?}"
            );
            specialists.push((id, number));
        }
    }
    let initiated = Rc::new(RefCell::new(0usize));
    let hangups = Rc::new(RefCell::new(0usize));
    let phone_initiated = Rc::new(RefCell::new(0usize));
    let phone_hangups = Rc::new(RefCell::new(0usize));
    let owner_gone = Rc::new(RefCell::new(0usize));
    let server_ended = Rc::new(RefCell::new(0usize));
    let call_ids: Rc<RefCell<Vec<String>>> = Rc::new(RefCell::new(vec![]));
    let running = Rc::new(RefCell::new(true));
    let mut rng = Rng::new(opts.seed);
    let mut workers = vec![];
    for w in 0..opts.calls {
        let pair = [agents[2 * w].clone(), agents[2 * w + 1].clone()];
        let (api, livekit, seen) = (api.clone(), livekit.clone(), seen.clone());
        let (twilio, phone) = (twilio.clone(), specialists.get(w).cloned());
        let (phone_initiated, phone_hangups) = (phone_initiated.clone(), phone_hangups.clone());
        let (owner_gone, server_ended) = (owner_gone.clone(), server_ended.clone());
        let (initiated, hangups, call_ids, running) = (
            initiated.clone(),
            hangups.clone(),
            call_ids.clone(),
            running.clone(),
        );
        let target = opts.transfers;
        let mut rng = Rng::new(rng.next_u64());
        workers.push(actix_rt::spawn(async move {
            let mut call = ChaosCall::start(
                &api,
                &livekit,
                &seen,
                pair.clone(),
                twilio.clone(),
                phone.clone(),
            )
            .await;
            call_ids.borrow_mut().push(call.call_id.clone());
            loop {
                let more = *initiated.borrow() < target;
                let hang_up = more && call.initiated > 0 && rng.chance(0.004);
                let (before, phone_before) = (call.initiated, call.phone_initiated);
                let gone_before = call.phone_owner_gone;
                let progress = call
                    .step(&api, &livekit, more, hang_up, rng.below(100))
                    .await;
                *owner_gone.borrow_mut() += call.phone_owner_gone - gone_before;
                *initiated.borrow_mut() += call.initiated - before;
                *phone_initiated.borrow_mut() += call.phone_initiated - phone_before;
                // Ended by the caller, by the specialist who owned it, or by the server (a
                // party gone for good): a new call takes its place.
                if call.hung_up || call.phone_hung_up || (call.ended && *running.borrow()) {
                    if call.hung_up {
                        *hangups.borrow_mut() += 1;
                    } else if call.phone_hung_up {
                        *phone_hangups.borrow_mut() += 1;
                    } else {
                        *server_ended.borrow_mut() += 1;
                    }
                    call.hung_up = false;
                    call.phone_hung_up = false;
                    // The ended call settles; a new call takes its place.
                    let mut ended = call;
                    for _ in 0..100 {
                        if ended.step(&api, &livekit, false, false, 50).await == Progress::Settled {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    // Its pages close, whether or not the end was seen yet (the server
                    // may be down): they leave their rooms and conferences.
                    let twilio = ended.twilio.clone();
                    for (seat, _) in ended.seats.values_mut() {
                        seat.leave(&livekit, twilio.as_deref());
                    }
                    ended.caller.stop();
                    call = ChaosCall::start(
                        &api,
                        &livekit,
                        &seen,
                        pair.clone(),
                        twilio.clone(),
                        phone.clone(),
                    )
                    .await;
                    call_ids.borrow_mut().push(call.call_id.clone());
                    continue;
                }
                if progress == Progress::Settled && !*running.borrow() {
                    break;
                }
                let pause = if progress == Progress::Down { 100 } else { 15 };
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            call.caller.stop();
        }));
    }
    // The chaos schedule: faults all along; a kill each time another share of the transfers
    // is initiated, at a random offset.
    let mut faults: BTreeMap<String, usize> = BTreeMap::new();
    let mut kills = 0usize;
    let mut max_restart = Duration::ZERO;
    let share = (opts.transfers / (opts.kills + 1)).max(1);
    let mut next_kill = share / 2 + rng.below(share as u64) as usize;
    // Requests hanging past the Twilio client's 10 s timeout stall a transfer for that long:
    // a few per run.
    let mut timeouts_left = (opts.transfers / 40).max(1);
    // A run in which no transfer starts for a minute is stuck (every call waiting on
    // something that never comes): it stops and the checker says what is left.
    let (mut last_count, mut last_progress) = (0usize, Instant::now());
    let mut stalled = None;
    while *initiated.borrow() < opts.transfers || kills < opts.kills {
        if *initiated.borrow() != last_count {
            (last_count, last_progress) = (*initiated.borrow(), Instant::now());
        } else if last_progress.elapsed() > Duration::from_secs(60) {
            stalled = Some(last_count);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20 + rng.below(60))).await;
        let burst = if opts.faults && *initiated.borrow() < opts.transfers {
            1 + rng.below(3)
        } else {
            0
        };
        let kinds = if twilio.is_some() { 15 } else { 7 };
        for _ in 0..burst {
            let kind = match rng.below(kinds) {
                0 => {
                    livekit.webhook_faults(1, 0, 0, Duration::ZERO);
                    "webhook_dropped"
                }
                1 => {
                    livekit.webhook_faults(0, 1, 0, Duration::ZERO);
                    "webhook_duplicated"
                }
                2 => {
                    let delay = Duration::from_millis(100 + rng.below(500));
                    livekit.webhook_faults(0, 0, 1, delay);
                    "webhook_reordered"
                }
                3 => {
                    livekit.fail_next_twirp(&["resource_exhausted"]);
                    "twirp_429"
                }
                4 => {
                    livekit.fail_next_twirp(&["internal"]);
                    "twirp_500"
                }
                5 => {
                    livekit.fail_next_twirp(&["unavailable"]);
                    "twirp_503"
                }
                6 => {
                    let ms = if rng.chance(0.5) { 0 } else { rng.below(400) };
                    livekit.set_api_latency(Duration::from_millis(ms));
                    "twirp_latency"
                }
                k => twilio_fault(
                    twilio.as_deref().expect("Twilio faults only with the fake"),
                    k,
                    &mut rng,
                    &mut timeouts_left,
                ),
            };
            *faults.entry(kind.into()).or_default() += 1;
        }
        let done = *initiated.borrow();
        if kills < opts.kills && (done >= next_kill || done >= opts.transfers) {
            // A random moment: up to 150 ms more of traffic first.
            tokio::time::sleep(Duration::from_millis(rng.below(150))).await;
            let took = server.restart().await;
            max_restart = max_restart.max(took);
            kills += 1;
            next_kill = done + share / 2 + rng.below(share as u64) as usize;
        }
    }
    livekit.set_api_latency(Duration::ZERO);
    if let Some(fake) = &twilio {
        fake.set_rest_latency(Duration::ZERO);
    }
    *running.borrow_mut() = false;
    let settle_deadline = Instant::now() + Duration::from_secs(90);
    for w in workers {
        let left = settle_deadline.saturating_duration_since(Instant::now());
        let _ = tokio::time::timeout(left, w).await;
    }
    livekit.wait_for_webhooks_idle(Duration::from_secs(5)).await;
    if let Some(fake) = &twilio {
        // Twilio's last callbacks (hang-ups the end of the run caused) are delivered.
        let idle_by = Instant::now() + Duration::from_secs(10);
        while fake.callbacks_pending() > 0 && Instant::now() < idle_by {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let ids = call_ids.borrow().clone();
    // The clients' record so far (taken out, so no borrow is held across the checks).
    let record = std::mem::take(&mut *seen.borrow_mut());
    let mut report = check_invariants(&api, &livekit, twilio.as_deref(), &record, &ids).await;
    if let Some(n) = stalled {
        report.violations.push(format!(
            "the run stalled: no transfer initiated for 60 s after {n} (of {})",
            opts.transfers
        ));
    }
    let mut views = HashMap::new();
    for id in &ids {
        let r = api.get(&format!("/api/calls/{id}"), None).await;
        views.insert(id.clone(), r.body);
    }
    if let Some(fake) = &twilio {
        check_twilio(fake, &views, &specialists, &mut report);
    }
    for c in &agent_clients {
        c.stop();
    }
    server.kill9();
    check_store(data_dir.path(), &views, &mut report).await;
    let ws_connects = record.connects;
    let created = ids.len();
    let initiated = *initiated.borrow();
    let hangups = *hangups.borrow();
    let (phone_initiated, phone_hangups) = (*phone_initiated.borrow(), *phone_hangups.borrow());
    let phone_owner_gone = *owner_gone.borrow();
    let ended_by_server = *server_ended.borrow();
    ChaosOutcome {
        seed: opts.seed,
        initiated,
        calls_created: created,
        hangups,
        phone_initiated,
        phone_hangups,
        phone_owner_gone,
        ended_by_server,
        kills,
        max_restart_ms: max_restart.as_secs_f64() * 1000.0,
        faults,
        ws_connects,
        seconds: started.elapsed().as_secs_f64(),
        report,
    }
}
