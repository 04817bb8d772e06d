//! `spawn_app()`: the real server on port 0 with a temporary embedded store (or DynamoDB on
//! the local test server, see [`TestStore`]) and the LiveKit fake, plus a WebSocket client
//! that behaves like a browser (follows `participant.move` by leaving its room and joining
//! the new one on the fake).

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::livekit::{FakeLiveKit, FakeOptions};
use super::twilio::{FakeTwilio, FakeTwilioConfig};
use switchboard::app::Application;
use switchboard::config::Config;
use switchboard::store::Store;

/// How long a test waits for an expected event.
pub const WAIT: Duration = Duration::from_secs(10);

/// The store a test server keeps its calls in.
#[derive(Debug, Clone, Default)]
pub enum TestStore {
    /// The embedded store in the test's temporary data directory.
    #[default]
    Embedded,
    /// DynamoDB on the local test server (see `support::dynamo`), in tables with this
    /// prefix, created by the server at start (`SWITCHBOARD_INIT_TABLES=true`).
    DynamoDb {
        /// The table prefix.
        prefix: String,
    },
}

/// Knobs of a test server.
#[derive(Debug, Clone)]
pub struct TestOptions {
    /// `SWITCHBOARD_RING_TIMEOUT` in seconds.
    pub ring_timeout: f64,
    /// `SWITCHBOARD_MOVE_TIMEOUT` in seconds.
    pub move_timeout: f64,
    /// `SWITCHBOARD_REJOIN_GRACE` in seconds.
    pub rejoin_grace: f64,
    /// `SWITCHBOARD_DISCONNECT_GRACE` in seconds.
    pub disconnect_grace: f64,
    /// `SWITCHBOARD_API_KEY`.
    pub api_key: Option<String>,
    /// Whether the fake sends webhooks to the server.
    pub webhooks: bool,
    /// Where the calls are kept.
    pub store: TestStore,
    /// Whether to configure Twilio against a Twilio fake.
    pub twilio: bool,
    /// More settings (`LLM_*`, `SWITCHBOARD_SUMMARY_DEBOUNCE`, ...), set last.
    pub env: Vec<(String, String)>,
}

impl Default for TestOptions {
    fn default() -> Self {
        TestOptions {
            ring_timeout: 30.0,
            move_timeout: 20.0,
            rejoin_grace: 15.0,
            disconnect_grace: 0.5,
            api_key: None,
            webhooks: true,
            store: TestStore::Embedded,
            twilio: false,
            env: vec![],
        }
    }
}

/// The tests' HTTP client. It drops an idle pooled connection after a second, well before the
/// server's keep-alive (actix's 5 s) closes it: a request sent on a connection the server is
/// closing at that moment fails with `IncompleteMessage` (a race of the client, not the
/// server), which a loaded machine makes likely.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_idle_timeout(std::time::Duration::from_secs(1))
        .build()
        .expect("HTTP client")
}

/// A running test server.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    /// The port.
    pub port: u16,
    /// The LiveKit fake the server talks to.
    pub livekit: Arc<FakeLiveKit>,
    /// The Twilio fake the server talks to, when `TestOptions::twilio`.
    pub twilio: Option<Arc<FakeTwilio>>,
    /// HTTP client.
    pub http: reqwest::Client,
    /// Keeps the data directory alive.
    pub data_dir: tempfile::TempDir,
    /// The management key, if configured.
    pub api_key: Option<String>,
    /// The server's store, to check what it wrote (`None` for a server process on the
    /// embedded store, whose file the process holds).
    pub store: Option<Arc<dyn Store>>,
}

/// The environment a server process gets for these options (shared with the kill -9 test).
pub fn server_env(
    opts: &TestOptions,
    fake: &FakeLiveKit,
    data_dir: &std::path::Path,
    addr: &str,
) -> HashMap<String, String> {
    let mut env = HashMap::new();
    env.insert("SWITCHBOARD_ADDR".into(), addr.to_string());
    env.insert(
        "SWITCHBOARD_DATA_DIR".into(),
        data_dir.display().to_string(),
    );
    env.insert("LIVEKIT_URL".into(), fake.url().replace("http://", "ws://"));
    env.insert("LIVEKIT_API_URL".into(), fake.url());
    env.insert("LIVEKIT_API_KEY".into(), fake.api_key());
    env.insert("LIVEKIT_API_SECRET".into(), fake.api_secret());
    env.insert(
        "SWITCHBOARD_RING_TIMEOUT".into(),
        opts.ring_timeout.to_string(),
    );
    env.insert(
        "SWITCHBOARD_MOVE_TIMEOUT".into(),
        opts.move_timeout.to_string(),
    );
    env.insert(
        "SWITCHBOARD_REJOIN_GRACE".into(),
        opts.rejoin_grace.to_string(),
    );
    env.insert(
        "SWITCHBOARD_DISCONNECT_GRACE".into(),
        opts.disconnect_grace.to_string(),
    );
    if let Some(k) = &opts.api_key {
        env.insert("SWITCHBOARD_API_KEY".into(), k.clone());
    }
    if let TestStore::DynamoDb { prefix } = &opts.store {
        env.extend(super::dynamo::server_env(prefix));
    }
    env.extend(opts.env.iter().cloned());
    env
}

/// The number our Twilio account owns in the tests (callers dial it; it calls specialists).
pub const TWILIO_NUMBER: &str = "+15550100000";
/// The TwiML App browsers connect through in the tests.
pub const TWILIO_APP_SID: &str = "AP0123456789abcdef0123456789abcdef";

/// The Twilio settings of a server talking to `fake`, reachable by it at `public_url`.
pub fn twilio_env(fake: &FakeTwilio, public_url: &str) -> HashMap<String, String> {
    let key = fake.api_key().expect("the fake has an API key");
    [
        ("TWILIO_ACCOUNT_SID", fake.account_sid()),
        ("TWILIO_AUTH_TOKEN", fake.auth_token()),
        ("TWILIO_API_KEY", key.sid),
        ("TWILIO_API_SECRET", key.secret),
        ("TWILIO_PHONE_NUMBER", TWILIO_NUMBER.to_string()),
        ("TWILIO_APP_SID", TWILIO_APP_SID.to_string()),
        ("TWILIO_API_BASE_URL", fake.base_url()),
        ("SWITCHBOARD_PUBLIC_URL", public_url.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Starts the server with default options.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(TestOptions::default()).await
}

/// Starts the server with the given options, in this test's actix system.
pub async fn spawn_app_with(opts: TestOptions) -> TestApp {
    let livekit = Arc::new(FakeLiveKit::start(FakeOptions::default()));
    let data_dir = tempfile::tempdir().expect("temp dir");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    let port = listener.local_addr().unwrap().port();
    let env = server_env(
        &opts,
        &livekit,
        data_dir.path(),
        &format!("127.0.0.1:{port}"),
    );
    let address = format!("http://127.0.0.1:{port}");
    let mut env = env;
    let twilio = opts.twilio.then(|| {
        let fake = Arc::new(FakeTwilio::start(FakeTwilioConfig {
            apps: [(
                TWILIO_APP_SID.to_string(),
                format!("{address}/twilio/client"),
            )]
            .into(),
            numbers: [(TWILIO_NUMBER.to_string(), format!("{address}/twilio/voice"))].into(),
            // Gather and dial timeouts (seconds in TwiML and REST) pass ten times faster.
            time_scale: 0.1,
            ..FakeTwilioConfig::default()
        }));
        env.extend(twilio_env(&fake, &address));
        fake
    });
    let config = Config::from_lookup(|k| env.get(k).cloned()).expect("test config");
    let app = Application::build_on(config, listener)
        .await
        .unwrap_or_else(|e| panic!("the app does not build: {}", super::dynamo::chain(&e)));
    let store = app.state().store.clone();
    actix_web::rt::spawn(app.run_until_stopped());
    if opts.webhooks {
        livekit.set_webhook_url(Some(format!("{address}/livekit/webhook")));
    }
    TestApp {
        address,
        port,
        livekit,
        twilio,
        http: http_client(),
        data_dir,
        api_key: opts.api_key,
        store: Some(store),
    }
}

/// A response: status and JSON body.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Body (Null when empty or not JSON).
    pub body: Value,
}

impl TestApp {
    /// Sends a request; `auth` is `Some(token)` for a bearer token, `None` for none (the
    /// management key is added when configured and no token is given).
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        auth: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let url = format!("{}{}", self.address, path);
        let mut req = self.http.request(method.parse().expect("method"), url);
        match (auth, &self.api_key) {
            (Some(t), _) => req = req.bearer_auth(t),
            (None, Some(k)) => req = req.header("x-api-key", k),
            (None, None) => {}
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        Reply {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    }

    /// POST as management (or with a token).
    pub async fn post(&self, path: &str, auth: Option<&str>, body: Value) -> Reply {
        self.request("POST", path, auth, Some(body)).await
    }

    /// GET as management (or with a token).
    pub async fn get(&self, path: &str, auth: Option<&str>) -> Reply {
        self.request("GET", path, auth, None).await
    }

    /// Creates a web agent and returns its session token.
    pub async fn agent(&self, id: &str) -> String {
        let r = self
            .post("/api/agents", None, json!({ "agentId": id, "name": id }))
            .await;
        assert_eq!(r.status, 201, "create agent {id}: {:?}", r.body);
        let r = self
            .post(&format!("/api/agents/{id}/token"), None, json!({}))
            .await;
        assert_eq!(r.status, 200, "token for {id}: {:?}", r.body);
        r.body["token"].as_str().unwrap().to_string()
    }

    /// Connects a WebSocket client with a session token.
    pub async fn connect(&self, name: &str, token: &str, since: Option<&str>) -> Party {
        Party::connect(self, name, token, since).await
    }

    /// Creates a call (optionally for one agent); returns the response body.
    pub async fn create_call(&self, agent: Option<&str>) -> Value {
        let mut body = json!({ "callerName": "Ann", "reason": "billing" });
        if let Some(a) = agent {
            body["agentId"] = json!(a);
        }
        let r = self.post("/api/calls", None, body).await;
        assert_eq!(r.status, 201, "create call: {:?}", r.body);
        r.body
    }
}

enum Outgoing {
    Text(String),
    Close,
}

/// A browser-like participant: a WebSocket session plus its place in LiveKit.
pub struct Party {
    /// Name in assertions.
    pub name: String,
    /// Its session token.
    pub token: String,
    /// Its LiveKit identity once known.
    pub identity: Option<String>,
    /// The LiveKit room it is in now.
    pub room: Option<String>,
    /// Every frame received, in order.
    pub seen: Vec<Value>,
    /// Frames received but not yet taken by `expect`.
    pending: std::collections::VecDeque<Value>,
    inbox: mpsc::UnboundedReceiver<Value>,
    outbox: mpsc::UnboundedSender<Outgoing>,
    livekit: Arc<FakeLiveKit>,
    twilio: Option<Arc<FakeTwilio>>,
    /// The Voice SDK call (CallSid) it has in a Twilio conference, if any.
    pub twilio_call: Option<String>,
}

impl Party {
    async fn connect(app: &TestApp, name: &str, token: &str, since: Option<&str>) -> Party {
        let mut url = format!("ws://127.0.0.1:{}/ws?token={}", app.port, urlencode(token));
        if let Some(s) = since {
            url.push_str(&format!("&since={}", urlencode(s)));
        }
        let (_resp, framed) = awc::Client::new()
            .ws(url)
            .max_frame_size(1 << 20)
            .connect()
            .await
            .unwrap_or_else(|e| panic!("{name} could not connect: {e}"));
        let (tx_in, inbox) = mpsc::unbounded_channel();
        let (outbox, mut rx_out) = mpsc::unbounded_channel::<Outgoing>();
        actix_web::rt::spawn(async move {
            let mut framed = framed;
            loop {
                tokio::select! {
                    frame = framed.next() => match frame {
                        Some(Ok(awc::ws::Frame::Text(b))) => {
                            if let Ok(v) = serde_json::from_slice::<Value>(&b) {
                                if tx_in.send(v).is_err() { break; }
                            }
                        }
                        Some(Ok(awc::ws::Frame::Ping(p))) => {
                            let _ = framed.send(awc::ws::Message::Pong(p)).await;
                        }
                        Some(Ok(awc::ws::Frame::Close(_))) | None | Some(Err(_)) => {
                            let _ = tx_in.send(json!({"type": "socket.closed"}));
                            break;
                        }
                        _ => {}
                    },
                    out = rx_out.recv() => match out {
                        Some(Outgoing::Text(t)) => { let _ = framed.send(awc::ws::Message::Text(t.into())).await; }
                        Some(Outgoing::Close) | None => {
                            let _ = framed.send(awc::ws::Message::Close(None)).await;
                            let _ = tx_in.send(json!({"type": "socket.closed"}));
                            break;
                        }
                    }
                }
            }
        });
        let mut party = Party {
            name: name.to_string(),
            token: token.to_string(),
            identity: None,
            room: None,
            seen: vec![],
            pending: Default::default(),
            inbox,
            outbox,
            livekit: app.livekit.clone(),
            twilio: app.twilio.clone(),
            twilio_call: None,
        };
        party.expect("session.ready").await;
        party
    }

    /// Takes the oldest frame of a type not taken yet, waiting for it if needed.
    pub async fn expect(&mut self, kind: &str) -> Value {
        if let Some(i) = self.pending.iter().position(|v| v["type"] == kind) {
            return self.pending.remove(i).expect("index in range");
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.inbox.recv()).await {
                Ok(Some(v)) => {
                    self.seen.push(v.clone());
                    if v["type"] == kind {
                        return v;
                    }
                    self.pending.push_back(v);
                }
                _ => panic!(
                    "{} did not receive {kind}; saw {:?}",
                    self.name,
                    self.seen
                        .iter()
                        .map(|v| v["type"].clone())
                        .collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Collects what arrives within `wait` (into `seen`, and pending for `expect`).
    pub async fn settle(&mut self, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some(v)) = tokio::time::timeout_at(deadline, self.inbox.recv()).await {
            self.seen.push(v.clone());
            self.pending.push_back(v);
        }
    }

    /// Types of every frame seen so far.
    pub fn types(&self) -> Vec<String> {
        self.seen
            .iter()
            .map(|v| v["type"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Waits for a `participant.move` and follows it like a browser: leave, then join.
    pub async fn follow_move(&mut self) -> Value {
        let mv = self.expect("participant.move").await;
        self.join_from(&mv["data"]);
        mv
    }

    /// Joins LiveKit with a `{room, token, identity}` object (a move's data or a call's
    /// `livekit` block), or, for a move into a conference (`plane: twilio`), connects the
    /// Voice SDK like the browser does: the Access Token, `conference` and `callId` params.
    pub fn join_from(&mut self, data: &Value) {
        let token = data["token"].as_str().expect("move carries a token");
        if let (Some(room), Some(id)) = (self.room.take(), self.identity.clone()) {
            self.livekit.leave(&room, &id);
        }
        if let (Some(sid), Some(fake)) = (self.twilio_call.take(), &self.twilio) {
            fake.client_disconnect(&sid);
        }
        if data["plane"] == "twilio" {
            let fake = self
                .twilio
                .as_ref()
                .expect("a conference move needs the Twilio fake");
            let conference = data["room"].as_str().expect("move names its conference");
            let call_id = conference.split("--").next().unwrap_or_default();
            let sid = fake
                .client_connect(token, &[("conference", conference), ("callId", call_id)])
                .unwrap_or_else(|e| panic!("{} could not connect the Voice SDK: {e:?}", self.name));
            self.identity = data["identity"].as_str().map(str::to_string);
            self.twilio_call = Some(sid);
            return;
        }
        let joined = self
            .livekit
            .join(token)
            .unwrap_or_else(|e| panic!("{} could not join: {e:?}", self.name));
        self.identity = Some(joined.identity);
        self.room = Some(joined.room);
    }

    /// Sends a client message.
    pub fn send(&self, msg: Value) {
        let _ = self.outbox.send(Outgoing::Text(msg.to_string()));
    }

    /// Closes the WebSocket (like closing the tab) and leaves LiveKit and Twilio.
    pub fn close(&mut self) {
        let _ = self.outbox.send(Outgoing::Close);
        if let (Some(room), Some(id)) = (self.room.take(), self.identity.clone()) {
            self.livekit.leave(&room, &id);
        }
        if let (Some(sid), Some(fake)) = (self.twilio_call.take(), &self.twilio) {
            fake.client_disconnect(&sid);
        }
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Sends a request with `x-api-key: key` (or no credentials); returns the status and the
/// JSON body (Null when empty or not JSON).
pub async fn send_with_key(
    app: &TestApp,
    key: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let url = format!("{}{}", app.address, path);
    let mut req = app.http.request(method.parse().unwrap(), url);
    if let Some(k) = key {
        req = req.header("x-api-key", k);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}
