//! A faithful fake of the LiveKit server: Twirp with grant checks, rooms, participants, signed webhooks.
//!
//! [`FakeLiveKit::start`] runs an actix-web server on `127.0.0.1:0`, on its own thread with its
//! own `actix_rt::System`, so it is independent of the test's runtime. It speaks what the real
//! server speaks:
//!
//! * **Twirp** `POST /twirp/livekit.RoomService/<Method>` with protobuf (`application/protobuf`,
//!   what the Rust `livekit-api` crate sends) or protojson (`application/json`, what the Node
//!   SDK sends); the answer uses the request's encoding, errors are Twirp JSON
//!   `{"code": .., "msg": ..}`.
//! * **Auth** `Authorization: Bearer <JWT>` (or the `access_token` query parameter), HS256/384/512
//!   signed with the API secret, `iss` = API key, `exp` required, `exp`/`nbf` checked with 60 s
//!   of leeway, then the grant each method needs (roomCreate, roomList, roomAdmin + room,
//!   + destinationRoom).
//! * **Joins** through [`FakeLiveKit::join`], checked like the signalling endpoint checks a
//!   client token; the room is created on the first join. Browsers (the E2E tests' double of
//!   `livekit-client`) join and leave over HTTP: `POST /test/join {token}` and
//!   `POST /test/leave {token}`, with the same checks (CORS open, for pages of another port).
//! * **Webhooks** as protojson `WebhookEvent`s, `Content-Type: application/webhook+json`, signed
//!   with a JWT whose `sha256` claim is the base64 SHA-256 of the body; delivered asynchronously,
//!   in order per room, each answer recorded.
//!
//! # How auth failures look (and a deviation from SERVER-FACTS.md)
//!
//! By default ([`AuthErrorMode::Server`]) the fake answers auth failures the way livekit-server's
//! own code does (`pkg/service/auth.go`, `pkg/service/utils.go`): a missing `Bearer ` prefix, an
//! unparsable token, an unknown key or a bad signature / expiry is rejected by the HTTP
//! middleware with **401 and a plain-text body** (not Twirp JSON, so the Rust client surfaces it
//! as a decode error, not as a `ServerErrorCode`); a valid token lacking the grant, or no token
//! at all, gets **401 Twirp `unauthenticated` with msg `permissions denied`** (`twirpAuthError`).
//! The shared facts sheet says 401 Twirp JSON and 403 `permission_denied`;
//! [`AuthErrorMode::FactsSheet`] answers that way for tests written against the sheet.
//!
//! Other details taken from the server: unknown rooms in `DeleteRoom`/`UpdateRoomMetadata`/
//! `SendData` → `not_found`; `ListParticipants` of an unknown room → empty list;
//! `MoveParticipant`/`ForwardParticipant` → `unimplemented` (HTTP 501) unless
//! [`FakeLiveKit::set_cloud_mode`] is on; same source and destination → `invalid_argument`;
//! a `SendData` nonce must be empty or 16 bytes; request JSON ignores unknown fields.
//! One known difference: JSON answers omit default-valued fields (pbjson), where Twirp's Go
//! server emits them; protobuf answers are byte-for-byte what a protobuf encoder produces.
//! Empty rooms are not closed by a timer: call [`FakeLiveKit::expire_empty_rooms`] to play the
//! departure/empty timeout.
//!
//! # SIP, agent dispatch and egress
//!
//! * `livekit.SIP` (grant `sip.admin` for trunks, `sip.call` for `CreateSIPParticipant`):
//!   outbound trunks are validated like livekit/protocol's `SIPOutboundTrunkInfo.Validate`
//!   (numbers and a host-name address required, no SIP URI) and kept; a dial-out adds the
//!   callee as a `SIP` participant (`sip.callStatus` `dialing`, `sip.phoneNumber`) at once, then
//!   plays the number's [`SipScript`] (default: answer at once). A refusal ends in a Twirp
//!   error whose code follows livekit/protocol's SIP-to-gRPC table (486 → `resource_exhausted`,
//!   603 → `permission_denied`, 408 → `deadline_exceeded`, ...), message
//!   `sip status <code>: <reason>`, and `meta.sip_status_code` / `meta.sip_status`.
//! * `livekit.AgentDispatchService` (grant `roomAdmin` + `room`): dispatches are kept per room
//!   and a simulated worker joins an `AGENT` participant `agent-<dispatchId>` (switch it off with
//!   [`FakeLiveKit::set_agent_workers`]); deleting the dispatch makes it leave.
//! * `livekit.Egress` (grant `roomRecord`): room-composite egresses to S3 go `STARTING` →
//!   `ACTIVE` (`egress_started`, `egress_updated`) and end `COMPLETE` with the file location
//!   `s3://<bucket>/<filepath>` (`egress_ended`) when stopped or when the room closes. The
//!   recorder is not shown as a participant. [`FakeLiveKit::fail_egress`] refuses starts (503)
//!   or fails them midway (`EGRESS_FAILED` with an error); an S3 upload without credentials
//!   fails the same way, as a real upload would.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::dev::ServerHandle;
use actix_web::http::{Method, StatusCode};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use livekit_protocol as proto;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

/// The Twirp path prefix of LiveKit's services (`/twirp/livekit.<Service>/<Method>`).
const TWIRP_PREFIX: &str = "/twirp/livekit.";
/// The RoomService methods the fake serves.
const ROOM_METHODS: &[&str] = &[
    "CreateRoom",
    "ListRooms",
    "DeleteRoom",
    "ListParticipants",
    "GetParticipant",
    "RemoveParticipant",
    "MutePublishedTrack",
    "UpdateParticipant",
    "UpdateSubscriptions",
    "SendData",
    "UpdateRoomMetadata",
    "ForwardParticipant",
    "MoveParticipant",
    "PerformRpc",
];
/// The SIP methods the fake serves.
const SIP_METHODS: &[&str] = &[
    "CreateSIPOutboundTrunk",
    "ListSIPOutboundTrunk",
    "DeleteSIPTrunk",
    "CreateSIPParticipant",
];
/// The AgentDispatchService methods the fake serves.
const DISPATCH_METHODS: &[&str] = &["CreateDispatch", "DeleteDispatch", "ListDispatch"];
/// The Egress methods the fake serves.
const EGRESS_METHODS: &[&str] = &["StartRoomCompositeEgress", "StopEgress", "ListEgress"];
/// How often a dial-out in progress looks at the callee's state.
const DIAL_POLL: Duration = Duration::from_millis(10);
/// The longest a `Hang` dial keeps its request open.
const HANG_CAP: Duration = Duration::from_secs(300);
/// Leeway on `exp` and `nbf`, as livekit-server (go-jose's default leeway).
const LEEWAY_SECS: u64 = 60;
/// Validity of the JWT signing a webhook.
const WEBHOOK_TOKEN_TTL_SECS: u64 = 5 * 60;
/// Default `empty_timeout` of a room (seconds), as livekit-server.
const DEFAULT_EMPTY_TIMEOUT: u32 = 300;
/// Default `departure_timeout` of a room (seconds), as livekit-server.
const DEFAULT_DEPARTURE_TIMEOUT: u32 = 20;

/// Credentials of the fake: the one API key it knows and its secret.
#[derive(Debug, Clone)]
pub struct FakeOptions {
    /// The API key (the `iss` every token must carry).
    pub api_key: String,
    /// The API secret (HMAC key of every token and webhook signature).
    pub api_secret: String,
}

impl Default for FakeOptions {
    fn default() -> Self {
        Self {
            api_key: "APIfakekey".to_owned(),
            api_secret: "fake-livekit-secret-0123456789abcdefghij".to_owned(),
        }
    }
}

/// How the fake answers authentication and authorization failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthErrorMode {
    /// As livekit-server's code: middleware failures (bad header, bad token, unknown key, bad
    /// signature, expired) → 401 with a plain-text body; missing grant or no token → 401 Twirp
    /// `unauthenticated` "permissions denied".
    #[default]
    Server,
    /// As SERVER-FACTS.md: every authentication failure → 401 Twirp `unauthenticated`; a valid
    /// token without the needed grant → 403 Twirp `permission_denied`.
    FactsSheet,
}

/// Fault switches and modes of the fake.
#[derive(Debug, Clone)]
pub struct FakeSettings {
    /// Where webhooks are POSTed; `None` sends none.
    pub webhook_url: Option<String>,
    /// When false no webhook is sent (events are still logged in [`FakeState::events`]).
    pub webhooks_enabled: bool,
    /// Delay before each webhook delivery.
    pub webhook_latency: Duration,
    /// When true every Twirp call answers 503 `unavailable`.
    pub api_down: bool,
    /// When true `MoveParticipant`/`ForwardParticipant` work, as on LiveKit Cloud.
    pub cloud_mode: bool,
    /// How auth failures are answered.
    pub auth_errors: AuthErrorMode,
    /// Chaos: the next webhooks to drop (generated and logged, never POSTed).
    pub drop_next_webhooks: usize,
    /// Chaos: the next webhooks to POST twice (same body and signature).
    pub duplicate_next_webhooks: usize,
    /// Chaos: the next webhooks to take out of their room's lane and deliver after
    /// [`FakeSettings::reorder_delay`], so later events of the room overtake them.
    pub reorder_next_webhooks: usize,
    /// How long a reordered webhook is held back.
    pub reorder_delay: Duration,
    /// Chaos: the next Twirp calls to fail, each with this Twirp code (`resource_exhausted`
    /// = 429, `internal` = 500, `unavailable` = 503).
    pub fail_next_twirp: Vec<&'static str>,
    /// Chaos: delay before every Twirp answer (a delay past the client's timeout is a timeout).
    pub api_latency: Duration,
    /// When false, the logs ([`FakeState::requests`], [`FakeState::events`],
    /// [`FakeState::webhook_deliveries`], redeliverable webhooks) are not kept: a load run's
    /// memory stays flat.
    pub record: bool,
}

impl Default for FakeSettings {
    fn default() -> Self {
        Self {
            webhook_url: None,
            webhooks_enabled: true,
            webhook_latency: Duration::ZERO,
            api_down: false,
            cloud_mode: false,
            auth_errors: AuthErrorMode::Server,
            drop_next_webhooks: 0,
            duplicate_next_webhooks: 0,
            reorder_next_webhooks: 0,
            reorder_delay: Duration::from_millis(300),
            fail_next_twirp: Vec::new(),
            api_latency: Duration::ZERO,
            record: true,
        }
    }
}

/// A room of the fake with its participants in join order.
#[derive(Debug, Clone)]
pub struct FakeRoom {
    /// The room as the API returns it (`num_participants` kept current).
    pub info: proto::Room,
    /// Participants in join order.
    pub participants: Vec<proto::ParticipantInfo>,
}

/// One Twirp call the fake answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwirpRequestRecord {
    /// The method name (`CreateRoom`, ...), or the raw path when it is not a room-service path.
    pub method: String,
    /// The room the request named (`CreateRoomRequest.name`, `*.room`), empty if none or undecoded.
    pub room: String,
    /// The HTTP status answered.
    pub status: u16,
    /// The Twirp error code answered, if any.
    pub code: Option<String>,
}

/// One webhook POST the fake made.
#[derive(Debug, Clone)]
pub struct WebhookDelivery {
    /// The event's unique id.
    pub id: String,
    /// The event name (`room_started`, `participant_joined`, ...).
    pub event: String,
    /// The room's name.
    pub room: String,
    /// The participant's identity for `participant_*` events.
    pub identity: Option<String>,
    /// The HTTP status our endpoint answered; `None` if the POST failed.
    pub status: Option<u16>,
    /// The transport error, if the POST failed.
    pub error: Option<String>,
    /// The raw body sent.
    pub body: String,
    /// The `Authorization` header sent (a bare JWT).
    pub authorization: String,
}

/// A `SendData` request the fake accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct SentData {
    /// The room.
    pub room: String,
    /// The payload.
    pub data: Vec<u8>,
    /// The topic, if any.
    pub topic: Option<String>,
    /// `DataPacket.Kind` as an integer (0 reliable, 1 lossy).
    pub kind: i32,
    /// Destination identities (empty: everyone).
    pub destination_identities: Vec<String>,
}

/// A participant admitted by [`FakeLiveKit::join`].
#[derive(Debug, Clone)]
pub struct Joined {
    /// The room joined.
    pub room: String,
    /// The participant's identity.
    pub identity: String,
    /// The participant's session id (`PA_...`).
    pub sid: String,
    /// The participant as the API shows it.
    pub participant: proto::ParticipantInfo,
}

/// Why [`FakeLiveKit::join`] refused a client token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeJoinError {
    /// Unparsable token, unknown API key, bad signature, expired or not yet valid (401).
    InvalidToken(String),
    /// No video grant, or `video.roomJoin` not true (401).
    PermissionDenied,
    /// The token has no identity (`sub`) (400).
    MissingIdentity,
    /// Neither the token nor the request names a room (400).
    NoRoomName,
    /// The token is for another room than the one asked for.
    WrongRoom {
        /// The room in the token.
        token_room: String,
        /// The room the client asked for.
        requested: String,
    },
    /// The room has `max_participants` participants already (503).
    RoomFull,
}

impl FakeJoinError {
    /// The HTTP status livekit-server's signalling endpoint answers for this refusal.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::InvalidToken(_) | Self::PermissionDenied | Self::WrongRoom { .. } => 401,
            Self::MissingIdentity | Self::NoRoomName => 400,
            Self::RoomFull => 503,
        }
    }
}

impl fmt::Display for FakeJoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidToken(msg) => write!(f, "invalid token: {msg}"),
            Self::PermissionDenied => f.write_str("permissions denied"),
            Self::MissingIdentity => f.write_str("identity cannot be empty"),
            Self::NoRoomName => f.write_str("no room name"),
            Self::WrongRoom {
                token_room,
                requested,
            } => write!(
                f,
                "token is for room {token_room:?}, not for room {requested:?}"
            ),
            Self::RoomFull => f.write_str("room has exceeded its max participants"),
        }
    }
}

impl std::error::Error for FakeJoinError {}

/// How a dialled number behaves (see [`FakeLiveKit::script_sip`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SipScript {
    /// The callee answers after ringing for `after`.
    Answer {
        /// Ringing time before the answer.
        after: Duration,
    },
    /// The far end (or the trunk) refuses with a final SIP status at once.
    Reject {
        /// The SIP status (486 busy, 603 decline, 404, 503, ...).
        status: u16,
        /// The reason phrase (`Busy Here`, ...).
        reason: String,
    },
    /// The phone rings until the request's ringing timeout, then 480 Temporarily Unavailable.
    NoAnswer,
    /// Never answers and never fails: only the client's request timeout (or removing the
    /// callee) ends the wait.
    Hang,
}

/// Fault switch of the egress service (see [`FakeLiveKit::fail_egress`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EgressFault {
    /// `StartRoomCompositeEgress` answers 503 `unavailable`.
    StartRefused,
    /// Egresses start, then fail: `egress_ended` with `EGRESS_FAILED` and an error.
    FailsMidway,
}

/// An egress the fake runs, with where it writes.
#[derive(Debug, Clone)]
pub struct FakeEgress {
    /// The egress as the API returns it.
    pub info: proto::EgressInfo,
    /// The S3 bucket of its file output.
    pub bucket: String,
    /// The object key of its file output.
    pub filepath: String,
    /// Whether the request carried an access key and a secret (without them the upload fails).
    pub has_credentials: bool,
}

/// A webhook ready to be POSTed.
#[derive(Debug, Clone)]
struct Outgoing {
    id: String,
    event: String,
    room: String,
    identity: Option<String>,
    url: String,
    body: String,
    authorization: String,
}

/// Everything the fake knows; shared as `Arc<Mutex<FakeState>>` (see [`FakeLiveKit::state`]).
#[derive(Debug)]
pub struct FakeState {
    /// Rooms by name.
    pub rooms: BTreeMap<String, FakeRoom>,
    /// Every Twirp call answered, in order.
    pub requests: Vec<TwirpRequestRecord>,
    /// Every webhook event generated, in order, sent or not.
    pub events: Vec<proto::WebhookEvent>,
    /// Every webhook POST made, in completion order.
    pub webhook_deliveries: Vec<WebhookDelivery>,
    /// Every accepted `SendData`.
    pub sent_data: Vec<SentData>,
    /// Webhooks queued and not yet answered (or given up).
    pub webhooks_pending: usize,
    /// Fault switches and modes.
    pub settings: FakeSettings,
    /// Outbound SIP trunks by id.
    pub sip_trunks: BTreeMap<String, proto::SipOutboundTrunkInfo>,
    /// Every accepted `CreateSIPParticipant` request, in order.
    pub sip_dials: Vec<proto::CreateSipParticipantRequest>,
    /// Scripted outcomes of dialled numbers.
    pub sip_scripts: HashMap<String, SipScript>,
    /// Agent dispatches by id.
    pub dispatches: BTreeMap<String, proto::AgentDispatch>,
    /// Whether a worker takes dispatched jobs (its agent joins the room).
    pub agent_workers: bool,
    /// Egresses by id.
    pub egresses: BTreeMap<String, FakeEgress>,
    /// Every accepted `StartRoomCompositeEgress` request, in order (secrets included).
    pub egress_requests: Vec<proto::RoomCompositeEgressRequest>,
    /// The egress fault switch.
    pub egress_fault: Option<EgressFault>,
    creds: FakeOptions,
    outbox: mpsc::UnboundedSender<Outgoing>,
    sent: HashMap<String, Outgoing>,
}

/// The fake LiveKit server. Dropping it stops the server.
pub struct FakeLiveKit {
    state: Arc<Mutex<FakeState>>,
    url: String,
    handle: ServerHandle,
}

impl fmt::Debug for FakeLiveKit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeLiveKit")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

fn lock(state: &Mutex<FakeState>) -> MutexGuard<'_, FakeState> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl FakeLiveKit {
    /// Starts the fake on `127.0.0.1:0` on its own thread and `actix_rt::System`; returns once
    /// it listens.
    ///
    /// # Panics
    /// If the server cannot bind or its thread cannot start.
    pub fn start(options: FakeOptions) -> FakeLiveKit {
        let (outbox, inbox) = mpsc::unbounded_channel();
        let state = Arc::new(Mutex::new(FakeState {
            rooms: BTreeMap::new(),
            requests: Vec::new(),
            events: Vec::new(),
            webhook_deliveries: Vec::new(),
            sent_data: Vec::new(),
            webhooks_pending: 0,
            settings: FakeSettings::default(),
            sip_trunks: BTreeMap::new(),
            sip_dials: Vec::new(),
            sip_scripts: HashMap::new(),
            dispatches: BTreeMap::new(),
            agent_workers: true,
            egresses: BTreeMap::new(),
            egress_requests: Vec::new(),
            egress_fault: None,
            creds: options,
            outbox,
            sent: HashMap::new(),
        }));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread_state = Arc::clone(&state);
        std::thread::Builder::new()
            .name("fake-livekit".to_owned())
            .spawn(move || {
                let system = actix_rt::System::new();
                system.block_on(async move {
                    actix_rt::spawn(dispatch_webhooks(inbox, Arc::clone(&thread_state)));
                    let data = web::Data::from(Arc::clone(&thread_state));
                    let bound = HttpServer::new(move || {
                        App::new()
                            .app_data(data.clone())
                            .app_data(web::PayloadConfig::new(16 * 1024 * 1024))
                            .service(web::resource("/test/join").to(client_join))
                            .service(web::resource("/test/leave").to(client_leave))
                            .default_service(web::to(twirp_entry))
                    })
                    .workers(1)
                    .disable_signals()
                    .bind(("127.0.0.1", 0));
                    let server = match bound {
                        Ok(server) => server,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.to_string()));
                            return;
                        }
                    };
                    let Some(addr) = server.addrs().first().copied() else {
                        let _ = ready_tx.send(Err("no address bound".to_owned()));
                        return;
                    };
                    let running = server.run();
                    let _ = ready_tx.send(Ok((addr, running.handle())));
                    let _ = running.await;
                });
            })
            .expect("fake LiveKit: cannot spawn its thread");
        let (addr, handle) = ready_rx
            .recv()
            .expect("fake LiveKit: server thread died before listening")
            .unwrap_or_else(|e| panic!("fake LiveKit: cannot listen: {e}"));
        FakeLiveKit {
            state,
            url: format!("http://{addr}"),
            handle,
        }
    }

    /// `http://127.0.0.1:PORT`: the host to give `livekit_api`'s `RoomClient`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The API key the fake accepts.
    pub fn api_key(&self) -> String {
        lock(&self.state).creds.api_key.clone()
    }

    /// The API secret the fake signs and verifies with.
    pub fn api_secret(&self) -> String {
        lock(&self.state).creds.api_secret.clone()
    }

    /// The shared state, for tests that want to read (or adjust) it directly.
    pub fn state(&self) -> Arc<Mutex<FakeState>> {
        Arc::clone(&self.state)
    }

    /// A copy of the current settings.
    pub fn settings(&self) -> FakeSettings {
        lock(&self.state).settings.clone()
    }

    /// Sets (or clears) the URL webhooks are POSTed to.
    pub fn set_webhook_url(&self, url: Option<String>) {
        lock(&self.state).settings.webhook_url = url;
    }

    /// Turns webhook sending on or off (queued webhooks not yet sent are dropped when off).
    pub fn set_webhooks_enabled(&self, enabled: bool) {
        lock(&self.state).settings.webhooks_enabled = enabled;
    }

    /// Delays each webhook delivery by `latency`.
    pub fn set_webhook_latency(&self, latency: Duration) {
        lock(&self.state).settings.webhook_latency = latency;
    }

    /// When `down`, every Twirp call answers 503 `unavailable`.
    pub fn set_api_down(&self, down: bool) {
        lock(&self.state).settings.api_down = down;
    }

    /// Chaos switches: drop the next `drop` webhooks, POST the next `duplicate` twice, hold
    /// the next `reorder` back (by `reorder_delay`) so later ones overtake them.
    pub fn webhook_faults(
        &self,
        drop: usize,
        duplicate: usize,
        reorder: usize,
        reorder_delay: Duration,
    ) {
        let mut st = lock(&self.state);
        st.settings.drop_next_webhooks += drop;
        st.settings.duplicate_next_webhooks += duplicate;
        st.settings.reorder_next_webhooks += reorder;
        st.settings.reorder_delay = reorder_delay;
    }

    /// Chaos switch: the next Twirp calls fail, one per code in `codes` (`resource_exhausted`
    /// = 429, `internal` = 500, `unavailable` = 503, ...).
    pub fn fail_next_twirp(&self, codes: &[&'static str]) {
        lock(&self.state)
            .settings
            .fail_next_twirp
            .extend_from_slice(codes);
    }

    /// Chaos switch: every Twirp answer waits `latency` first.
    pub fn set_api_latency(&self, latency: Duration) {
        lock(&self.state).settings.api_latency = latency;
    }

    /// Turns the request, event and delivery logs off (load runs) or on.
    pub fn set_record(&self, record: bool) {
        lock(&self.state).settings.record = record;
    }

    /// When on, `MoveParticipant`/`ForwardParticipant` work as on LiveKit Cloud; when off (the
    /// default) they answer `unimplemented` as the open-source server.
    pub fn set_cloud_mode(&self, cloud: bool) {
        lock(&self.state).settings.cloud_mode = cloud;
    }

    /// Chooses how auth failures are answered (see [`AuthErrorMode`]).
    pub fn set_auth_error_mode(&self, mode: AuthErrorMode) {
        lock(&self.state).settings.auth_errors = mode;
    }

    /// Mints a client token for `identity` in `room` (roomJoin, default permissions), signed with
    /// the fake's credentials through `livekit_api`'s `AccessToken`.
    ///
    /// # Panics
    /// If `room` or `identity` is empty (the SDK refuses to mint such a join token).
    pub fn client_token(&self, room: &str, identity: &str) -> String {
        let (key, secret) = {
            let st = lock(&self.state);
            (st.creds.api_key.clone(), st.creds.api_secret.clone())
        };
        livekit_api::access_token::AccessToken::with_api_key(&key, &secret)
            .with_identity(identity)
            .with_name(identity)
            .with_grants(livekit_api::access_token::VideoGrants {
                room_join: true,
                room: room.to_owned(),
                ..Default::default()
            })
            .to_jwt()
            .expect("fake LiveKit: cannot mint a client token")
    }

    /// A client connects with `token`: checked like livekit-server's signalling endpoint (valid
    /// signature, `iss`, `exp`, `video.roomJoin`, identity, room from `video.room`). Creates the
    /// room if needed (`room_started`), replaces a participant of the same identity
    /// (`participant_left` with `DUPLICATE_IDENTITY`), then adds the participant
    /// (`participant_joined`).
    pub fn join(&self, token: &str) -> Result<Joined, FakeJoinError> {
        lock(&self.state).join(token, None)
    }

    /// Like [`join`](Self::join), the client asking for `room`: a token naming another room is
    /// refused ([`FakeJoinError::WrongRoom`]); a token naming no room joins `room`.
    pub fn join_room(&self, room: &str, token: &str) -> Result<Joined, FakeJoinError> {
        lock(&self.state).join(token, Some(room))
    }

    /// The participant `identity` leaves `room` (`participant_left`, `CLIENT_INITIATED`).
    /// Returns false if it was not there.
    pub fn leave(&self, room: &str, identity: &str) -> bool {
        lock(&self.state)
            .remove_participant(room, identity, proto::DisconnectReason::ClientInitiated)
            .is_some()
    }

    /// Plays the empty/departure timeout: every room without participants is closed
    /// (`room_finished`, `ROOM_END_IDLE_TIMEOUT`). Returns the closed rooms' names.
    pub fn expire_empty_rooms(&self) -> Vec<String> {
        let mut st = lock(&self.state);
        let empty: Vec<String> = st
            .rooms
            .iter()
            .filter(|(_, r)| r.participants.is_empty())
            .map(|(name, _)| name.clone())
            .collect();
        for name in &empty {
            st.finish_room(name, proto::RoomEndReason::RoomEndIdleTimeout);
        }
        empty
    }

    /// Names of the open rooms, sorted.
    pub fn rooms(&self) -> Vec<String> {
        lock(&self.state).rooms.keys().cloned().collect()
    }

    /// The room as the API returns it.
    pub fn room(&self, room: &str) -> Option<proto::Room> {
        lock(&self.state).rooms.get(room).map(|r| r.info.clone())
    }

    /// Whether `room` is open.
    pub fn room_exists(&self, room: &str) -> bool {
        lock(&self.state).rooms.contains_key(room)
    }

    /// Identities of the participants of `room`, in join order (empty if no such room).
    pub fn participants(&self, room: &str) -> Vec<String> {
        lock(&self.state)
            .rooms
            .get(room)
            .map(|r| r.participants.iter().map(|p| p.identity.clone()).collect())
            .unwrap_or_default()
    }

    /// The participant `identity` of `room`.
    pub fn participant(&self, room: &str, identity: &str) -> Option<proto::ParticipantInfo> {
        lock(&self.state)
            .rooms
            .get(room)
            .and_then(|r| r.participants.iter().find(|p| p.identity == identity))
            .cloned()
    }

    /// Whether `identity` is in `room`.
    pub fn is_in_room(&self, room: &str, identity: &str) -> bool {
        self.participant(room, identity).is_some()
    }

    /// Every Twirp call answered so far.
    pub fn requests(&self) -> Vec<TwirpRequestRecord> {
        lock(&self.state).requests.clone()
    }

    /// Every accepted `SendData`.
    pub fn sent_data(&self) -> Vec<SentData> {
        lock(&self.state).sent_data.clone()
    }

    /// Every webhook event generated, sent or not.
    pub fn events(&self) -> Vec<proto::WebhookEvent> {
        lock(&self.state).events.clone()
    }

    /// Every webhook POST made so far, with the status our endpoint answered.
    pub fn webhook_deliveries(&self) -> Vec<WebhookDelivery> {
        lock(&self.state).webhook_deliveries.clone()
    }

    /// Webhooks queued and not yet answered.
    pub fn webhooks_pending(&self) -> usize {
        lock(&self.state).webhooks_pending
    }

    /// Waits (asynchronously, in any tokio-based runtime) until every queued webhook was
    /// answered or given up; false if `timeout` passed first.
    pub async fn wait_for_webhooks_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.webhooks_pending() == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Sends again the webhook with event id `id` (same body, same signature): a duplicate, as
    /// an at-least-once delivery can produce. False if no such webhook was sent.
    pub fn redeliver_webhook(&self, id: &str) -> bool {
        let mut st = lock(&self.state);
        match st.sent.get(id).cloned() {
            Some(out) => st.enqueue(out),
            None => false,
        }
    }
}

impl FakeLiveKit {
    /// Scripts how calls to `number` go (unscripted numbers answer at once).
    pub fn script_sip(&self, number: &str, script: SipScript) {
        lock(&self.state)
            .sip_scripts
            .insert(number.to_owned(), script);
    }

    /// The callee `identity` in `room` hangs up (`participant_left`, `CLIENT_INITIATED`).
    /// Returns false if it was not there.
    pub fn sip_hangup(&self, room: &str, identity: &str) -> bool {
        let mut st = lock(&self.state);
        if let Some(p) = st.find_participant_mut(room, identity) {
            p.attributes
                .insert("sip.callStatus".to_owned(), "hangup".to_owned());
        }
        st.remove_participant(room, identity, proto::DisconnectReason::ClientInitiated)
            .is_some()
    }

    /// Every accepted `CreateSIPParticipant` request, in order.
    pub fn sip_dials(&self) -> Vec<proto::CreateSipParticipantRequest> {
        lock(&self.state).sip_dials.clone()
    }

    /// The outbound SIP trunks, by id.
    pub fn sip_trunks(&self) -> Vec<proto::SipOutboundTrunkInfo> {
        lock(&self.state).sip_trunks.values().cloned().collect()
    }

    /// The live agent dispatches of `room` (agent name, metadata, ...), oldest first.
    pub fn dispatches(&self, room: &str) -> Vec<proto::AgentDispatch> {
        let st = lock(&self.state);
        let mut list: Vec<proto::AgentDispatch> = st
            .dispatches
            .values()
            .filter(|d| d.room == room)
            .cloned()
            .collect();
        list.sort_by_key(|d| d.state.as_ref().map(|s| s.created_at).unwrap_or_default());
        list
    }

    /// When false, dispatches are accepted but no agent joins (no worker is registered).
    pub fn set_agent_workers(&self, on: bool) {
        lock(&self.state).agent_workers = on;
    }

    /// Turns an egress fault on (see [`EgressFault`]).
    pub fn fail_egress(&self, fault: EgressFault) {
        lock(&self.state).egress_fault = Some(fault);
    }

    /// Turns the egress fault off.
    pub fn clear_egress_fault(&self) {
        lock(&self.state).egress_fault = None;
    }

    /// Every egress, running or ended, by id.
    pub fn egresses(&self) -> Vec<FakeEgress> {
        lock(&self.state).egresses.values().cloned().collect()
    }

    /// Every accepted `StartRoomCompositeEgress` request, in order (secrets included).
    pub fn egress_requests(&self) -> Vec<proto::RoomCompositeEgressRequest> {
        lock(&self.state).egress_requests.clone()
    }
}

impl Drop for FakeLiveKit {
    fn drop(&mut self) {
        // The stop command is sent at once; the thread ends when the server has stopped.
        drop(self.handle.stop(false));
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens

/// The video grant as livekit-server reads it (camelCase JSON).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct VideoGrant {
    room_create: bool,
    room_list: bool,
    room_record: bool,
    room_admin: bool,
    room_join: bool,
    room: String,
    destination_room: String,
    can_publish: Option<bool>,
    can_subscribe: Option<bool>,
    can_publish_data: Option<bool>,
    can_publish_sources: Vec<String>,
    can_update_own_metadata: Option<bool>,
    ingress_admin: bool,
    hidden: bool,
    recorder: bool,
    agent: bool,
}

/// The SIP grant as livekit-server reads it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct SipGrant {
    admin: bool,
    call: bool,
}

/// The claims livekit-server reads from a token.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct TokenClaims {
    iss: String,
    sub: String,
    name: String,
    kind: String,
    metadata: String,
    attributes: HashMap<String, String>,
    video: Option<VideoGrant>,
    sip: Option<SipGrant>,
}

/// Why a token was rejected by the auth middleware.
#[derive(Debug, Clone)]
enum AuthFailure {
    BadHeader,
    Unparsable,
    UnknownKey(String),
    Invalid(String, String),
}

impl AuthFailure {
    /// The message livekit-server writes.
    fn message(&self) -> String {
        match self {
            Self::BadHeader => "invalid authorization header. Must start with Bearer ".to_owned(),
            Self::Unparsable => "invalid authorization token".to_owned(),
            Self::UnknownKey(key) => format!("invalid API key: {key}"),
            Self::Invalid(token, err) => format!("invalid token: {token}, error: {err}"),
        }
    }
}

/// Verifies `token` as livekit-server does: parse, look up the key from `iss`, then check the
/// signature (HS256/384/512), `iss`, `exp` (required) and `nbf`.
fn verify_token(creds: &FakeOptions, token: &str) -> Result<TokenClaims, AuthFailure> {
    let unverified = jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(token)
        .map_err(|_| AuthFailure::Unparsable)?;
    let iss = unverified
        .claims
        .get("iss")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned();
    if iss.is_empty() || iss != creds.api_key {
        return Err(AuthFailure::UnknownKey(iss));
    }
    let mut validation = Validation::new(Algorithm::HS256);
    validation.algorithms = vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
    validation.leeway = LEEWAY_SECS;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp", "iss"]);
    validation.set_issuer(&[creds.api_key.as_str()]);
    jsonwebtoken::decode::<TokenClaims>(
        token,
        &DecodingKey::from_secret(creds.api_secret.as_bytes()),
        &validation,
    )
    .map(|data| data.claims)
    .map_err(|e| AuthFailure::Invalid(token.to_owned(), e.to_string()))
}

/// Claims of the JWT signing a webhook.
#[derive(Debug, Serialize)]
struct WebhookClaims<'a> {
    iss: &'a str,
    nbf: u64,
    exp: u64,
    sha256: String,
}

/// The `Authorization` value of a webhook: a JWT whose `sha256` is base64(SHA-256(body)).
fn sign_webhook(creds: &FakeOptions, body: &str) -> Option<String> {
    let digest = Sha256::digest(body.as_bytes());
    let now = unix_secs();
    let claims = WebhookClaims {
        iss: &creds.api_key,
        nbf: now,
        exp: now + WEBHOOK_TOKEN_TTL_SECS,
        sha256: base64::engine::general_purpose::STANDARD.encode(digest),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(creds.api_secret.as_bytes()),
    )
    .ok()
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn unix_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

/// A LiveKit-style id: `prefix` + 12 characters.
fn new_id(prefix: &str) -> String {
    let raw = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}{}", &raw[..12])
}

fn participant_kind(kind: &str, agent: bool) -> i32 {
    use proto::participant_info::Kind;
    let kind = match kind {
        "ingress" => Kind::Ingress,
        "egress" => Kind::Egress,
        "sip" => Kind::Sip,
        "agent" => Kind::Agent,
        _ if agent => Kind::Agent,
        _ => Kind::Standard,
    };
    kind as i32
}

fn track_source(name: &str) -> Option<i32> {
    let source = match name {
        "camera" => proto::TrackSource::Camera,
        "microphone" => proto::TrackSource::Microphone,
        "screen_share" => proto::TrackSource::ScreenShare,
        "screen_share_audio" => proto::TrackSource::ScreenShareAudio,
        _ => return None,
    };
    Some(source as i32)
}

/// The participant permission livekit-server derives from a video grant (it still fills the
/// deprecated `recorder` and `agent` flags).
#[allow(deprecated)]
fn permission_from(grant: &VideoGrant) -> proto::ParticipantPermission {
    let can_publish = grant.can_publish.unwrap_or(true);
    proto::ParticipantPermission {
        can_subscribe: grant.can_subscribe.unwrap_or(true),
        can_publish,
        can_publish_data: grant.can_publish_data.unwrap_or(can_publish),
        can_publish_sources: grant
            .can_publish_sources
            .iter()
            .filter_map(|s| track_source(s))
            .collect(),
        hidden: grant.hidden,
        recorder: grant.recorder,
        can_update_metadata: grant.can_update_own_metadata.unwrap_or(false),
        agent: grant.agent,
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Rooms, participants, events

impl FakeState {
    fn join(&mut self, token: &str, requested: Option<&str>) -> Result<Joined, FakeJoinError> {
        let claims = verify_token(&self.creds, token)
            .map_err(|failure| FakeJoinError::InvalidToken(failure.message()))?;
        let grant = claims
            .video
            .clone()
            .ok_or(FakeJoinError::PermissionDenied)?;
        if !grant.room_join {
            return Err(FakeJoinError::PermissionDenied);
        }
        if claims.sub.is_empty() {
            return Err(FakeJoinError::MissingIdentity);
        }
        let room = match (grant.room.as_str(), requested) {
            ("", None) | ("", Some("")) => return Err(FakeJoinError::NoRoomName),
            ("", Some(requested)) => requested.to_owned(),
            (token_room, Some(requested)) if !requested.is_empty() && requested != token_room => {
                return Err(FakeJoinError::WrongRoom {
                    token_room: token_room.to_owned(),
                    requested: requested.to_owned(),
                })
            }
            (token_room, _) => token_room.to_owned(),
        };

        if let Some(existing) = self.rooms.get(&room) {
            let max = existing.info.max_participants as usize;
            let others = existing
                .participants
                .iter()
                .filter(|p| p.identity != claims.sub)
                .count();
            if max > 0 && others >= max {
                return Err(FakeJoinError::RoomFull);
            }
        }
        self.ensure_room(&room, None);
        self.remove_participant(
            &room,
            &claims.sub,
            proto::DisconnectReason::DuplicateIdentity,
        );

        let now_ms = unix_millis();
        let participant = proto::ParticipantInfo {
            sid: new_id("PA_"),
            identity: claims.sub.clone(),
            state: proto::participant_info::State::Active as i32,
            metadata: claims.metadata.clone(),
            joined_at: now_ms / 1000,
            joined_at_ms: now_ms,
            name: claims.name.clone(),
            version: 1,
            permission: Some(permission_from(&grant)),
            kind: participant_kind(&claims.kind, grant.agent),
            attributes: claims.attributes.clone(),
            ..Default::default()
        };
        self.add_participant(&room, participant.clone());
        Ok(Joined {
            room,
            identity: participant.identity.clone(),
            sid: participant.sid.clone(),
            participant,
        })
    }

    /// Creates `name` if it does not exist (sending `room_started`); returns the room info.
    fn ensure_room(
        &mut self,
        name: &str,
        request: Option<&proto::CreateRoomRequest>,
    ) -> proto::Room {
        if let Some(room) = self.rooms.get(name) {
            return room.info.clone();
        }
        let now_ms = unix_millis();
        let or_default = |value: u32, default: u32| if value == 0 { default } else { value };
        let info = proto::Room {
            sid: new_id("RM_"),
            name: name.to_owned(),
            empty_timeout: or_default(
                request.map(|r| r.empty_timeout).unwrap_or(0),
                DEFAULT_EMPTY_TIMEOUT,
            ),
            departure_timeout: or_default(
                request.map(|r| r.departure_timeout).unwrap_or(0),
                DEFAULT_DEPARTURE_TIMEOUT,
            ),
            max_participants: request.map(|r| r.max_participants).unwrap_or(0),
            creation_time: now_ms / 1000,
            creation_time_ms: now_ms,
            metadata: request.map(|r| r.metadata.clone()).unwrap_or_default(),
            ..Default::default()
        };
        self.rooms.insert(
            name.to_owned(),
            FakeRoom {
                info: info.clone(),
                participants: Vec::new(),
            },
        );
        self.emit(
            "room_started",
            &info,
            None,
            proto::RoomEndReason::RoomEndUnknown,
        );
        info
    }

    fn add_participant(&mut self, room: &str, participant: proto::ParticipantInfo) {
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        r.participants.push(participant.clone());
        r.info.num_participants = r.participants.len() as u32;
        let info = r.info.clone();
        self.emit(
            "participant_joined",
            &info,
            Some(&participant),
            proto::RoomEndReason::RoomEndUnknown,
        );
    }

    /// Removes `identity` from `room` (sending `participant_left` with `reason`).
    fn remove_participant(
        &mut self,
        room: &str,
        identity: &str,
        reason: proto::DisconnectReason,
    ) -> Option<proto::ParticipantInfo> {
        let r = self.rooms.get_mut(room)?;
        let index = r.participants.iter().position(|p| p.identity == identity)?;
        let mut gone = r.participants.remove(index);
        r.info.num_participants = r.participants.len() as u32;
        gone.state = proto::participant_info::State::Disconnected as i32;
        gone.disconnect_reason = reason as i32;
        let info = r.info.clone();
        self.emit(
            "participant_left",
            &info,
            Some(&gone),
            proto::RoomEndReason::RoomEndUnknown,
        );
        Some(gone)
    }

    /// Removes every participant then the room (`participant_left` each, then `room_finished`).
    fn finish_room(&mut self, room: &str, end: proto::RoomEndReason) -> bool {
        let identities: Vec<String> = match self.rooms.get(room) {
            Some(r) => r.participants.iter().map(|p| p.identity.clone()).collect(),
            None => return false,
        };
        for identity in identities {
            self.remove_participant(room, &identity, proto::DisconnectReason::RoomDeleted);
        }
        self.dispatches.retain(|_, d| d.room != room);
        let running: Vec<String> = self
            .egresses
            .values()
            .filter(|e| e.info.room_name == room && egress_running(&e.info))
            .map(|e| e.info.egress_id.clone())
            .collect();
        for id in running {
            self.end_egress(&id);
        }
        if let Some(r) = self.rooms.remove(room) {
            self.emit("room_finished", &r.info, None, end);
        }
        true
    }

    fn find_participant_mut(
        &mut self,
        room: &str,
        identity: &str,
    ) -> Option<&mut proto::ParticipantInfo> {
        self.rooms
            .get_mut(room)?
            .participants
            .iter_mut()
            .find(|p| p.identity == identity)
    }

    /// Logs the event and queues its delivery if webhooks are on.
    fn emit(
        &mut self,
        name: &str,
        room: &proto::Room,
        participant: Option<&proto::ParticipantInfo>,
        end: proto::RoomEndReason,
    ) {
        let event = proto::WebhookEvent {
            event: name.to_owned(),
            room: Some(room.clone()),
            participant: participant.cloned(),
            id: new_id("EV_"),
            created_at: i64::try_from(unix_secs()).unwrap_or(i64::MAX),
            room_end_reason: end as i32,
            ..Default::default()
        };
        self.emit_event(event);
    }

    /// An `egress_*` event (no room object: the room is named in `egressInfo`).
    fn emit_egress(&mut self, name: &str, info: &proto::EgressInfo) {
        let event = proto::WebhookEvent {
            event: name.to_owned(),
            egress_info: Some(redacted_egress(info)),
            id: new_id("EV_"),
            created_at: i64::try_from(unix_secs()).unwrap_or(i64::MAX),
            ..Default::default()
        };
        self.emit_event(event);
    }

    /// Logs `event` and queues its delivery if webhooks are on.
    fn emit_event(&mut self, event: proto::WebhookEvent) {
        let room_name = event
            .room
            .as_ref()
            .map(|r| r.name.clone())
            .or_else(|| event.egress_info.as_ref().map(|e| e.room_name.clone()))
            .unwrap_or_default();
        let identity = event.participant.as_ref().map(|p| p.identity.clone());
        if self.settings.record {
            self.events.push(event.clone());
        }
        if !self.settings.webhooks_enabled {
            return;
        }
        let Some(url) = self.settings.webhook_url.clone() else {
            return;
        };
        let Ok(body) = serde_json::to_string(&event) else {
            return;
        };
        let Some(authorization) = sign_webhook(&self.creds, &body) else {
            return;
        };
        let out = Outgoing {
            id: event.id.clone(),
            event: event.event.clone(),
            room: room_name,
            identity,
            url,
            body,
            authorization,
        };
        if self.settings.record {
            self.sent.insert(out.id.clone(), out.clone());
        }
        if self.settings.drop_next_webhooks > 0 {
            self.settings.drop_next_webhooks -= 1;
            return;
        }
        if self.settings.duplicate_next_webhooks > 0 {
            self.settings.duplicate_next_webhooks -= 1;
            self.enqueue(out.clone());
        }
        self.enqueue(out);
    }

    fn enqueue(&mut self, out: Outgoing) -> bool {
        if self.outbox.send(out).is_ok() {
            self.webhooks_pending += 1;
            true
        } else {
            false
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Webhook delivery

/// Fans queued webhooks out to one lane per room, so each room's events go out in order while
/// a slow room does not hold up the others.
async fn dispatch_webhooks(
    mut inbox: mpsc::UnboundedReceiver<Outgoing>,
    state: Arc<Mutex<FakeState>>,
) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default();
    let mut lanes: HashMap<String, mpsc::UnboundedSender<Outgoing>> = HashMap::new();
    while let Some(out) = inbox.recv().await {
        let held_back = {
            let mut st = lock(&state);
            if st.settings.reorder_next_webhooks > 0 {
                st.settings.reorder_next_webhooks -= 1;
                Some(st.settings.reorder_delay)
            } else {
                None
            }
        };
        if let Some(delay) = held_back {
            // Out of its lane: the room's later events overtake it.
            let (tx, rx) = mpsc::unbounded_channel();
            let _ = tx.send(out);
            let (client, state) = (client.clone(), Arc::clone(&state));
            actix_rt::spawn(async move {
                tokio::time::sleep(delay).await;
                deliver_lane(rx, client, state).await;
            });
            continue;
        }
        let lane = lanes.entry(out.room.clone()).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            actix_rt::spawn(deliver_lane(rx, client.clone(), Arc::clone(&state)));
            tx
        });
        if let Err(mpsc::error::SendError(_)) = lane.send(out) {
            let mut st = lock(&state);
            st.webhooks_pending = st.webhooks_pending.saturating_sub(1);
        }
    }
}

/// Delivers one room's webhooks one after the other, recording each answer.
async fn deliver_lane(
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    client: reqwest::Client,
    state: Arc<Mutex<FakeState>>,
) {
    while let Some(out) = rx.recv().await {
        let latency = lock(&state).settings.webhook_latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if !lock(&state).settings.webhooks_enabled {
            let mut st = lock(&state);
            st.webhooks_pending = st.webhooks_pending.saturating_sub(1);
            continue;
        }
        let result = client
            .post(&out.url)
            .header("Content-Type", "application/webhook+json")
            .header("Authorization", &out.authorization)
            .body(out.body.clone())
            .send()
            .await;
        let (status, error) = match result {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let _ = resp.bytes().await;
                (Some(status), None)
            }
            Err(e) => (None, Some(e.to_string())),
        };
        let mut st = lock(&state);
        st.webhooks_pending = st.webhooks_pending.saturating_sub(1);
        if !st.settings.record {
            continue;
        }
        st.webhook_deliveries.push(WebhookDelivery {
            id: out.id,
            event: out.event,
            room: out.room,
            identity: out.identity,
            status,
            error,
            body: out.body,
            authorization: out.authorization,
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Twirp

/// A Twirp error.
#[derive(Debug, Clone)]
struct TwirpError {
    code: &'static str,
    msg: String,
    meta: BTreeMap<String, String>,
}

impl TwirpError {
    fn new(code: &'static str, msg: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            meta: BTreeMap::new(),
        }
    }

    /// A failed SIP call as livekit-server answers it: the gRPC code of livekit/protocol's
    /// SIP status table, `sip status <code>: <reason>`, and the SIP status in `meta`.
    fn sip(status: u16, reason: &str) -> Self {
        let code = match status {
            401 | 402 | 403 | 603 | 607 | 608 => "permission_denied",
            404 | 410 | 481 | 604 | 301 | 302 => "not_found",
            407 => "unauthenticated",
            408 | 504 => "deadline_exceeded",
            480 | 486 | 600 => "resource_exhausted",
            487 | 491 => "aborted",
            409 | 412 | 482 | 483 | 500..=503 => "failed_precondition",
            300..=499 | 600..=699 => "invalid_argument",
            500..=599 => "failed_precondition",
            _ => "unknown",
        };
        let mut meta = BTreeMap::new();
        meta.insert("sip_status_code".to_owned(), status.to_string());
        meta.insert("sip_status".to_owned(), reason.to_owned());
        Self {
            code,
            msg: format!("sip status {status}: {reason}"),
            meta,
        }
    }

    fn status(&self) -> u16 {
        match self.code {
            "invalid_argument" | "malformed" | "out_of_range" => 400,
            "unauthenticated" => 401,
            "permission_denied" => 403,
            "not_found" | "bad_route" => 404,
            "already_exists" | "aborted" => 409,
            "failed_precondition" => 412,
            "resource_exhausted" => 429,
            "unimplemented" => 501,
            "unavailable" => 503,
            "deadline_exceeded" => 504,
            "canceled" => 408,
            _ => 500,
        }
    }
}

/// The answer to one HTTP request.
enum Reply {
    Ok {
        content_type: &'static str,
        body: Vec<u8>,
    },
    Twirp(TwirpError),
    Plain(u16, String),
    /// A dial-out in progress: answered once its script has played (outside the lock).
    Dial(Box<PendingDial>),
}

/// A `CreateSIPParticipant` waiting for its outcome.
struct PendingDial {
    encoding: Encoding,
    room: String,
    identity: String,
    participant_sid: String,
    sip_call_id: String,
    script: SipScript,
    ringing_timeout: Duration,
}

impl From<TwirpError> for Reply {
    fn from(e: TwirpError) -> Self {
        Reply::Twirp(e)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/protobuf",
            Encoding::Json => "application/json",
        }
    }
}

fn decode<M: prost::Message + Default + DeserializeOwned>(
    encoding: Encoding,
    body: &[u8],
) -> Result<M, TwirpError> {
    match encoding {
        Encoding::Protobuf => M::decode(body).map_err(|e| {
            TwirpError::new(
                "malformed",
                format!("the protobuf request could not be decoded: {e}"),
            )
        }),
        Encoding::Json => serde_json::from_slice(body).map_err(|e| {
            TwirpError::new(
                "malformed",
                format!("the json request could not be decoded: {e}"),
            )
        }),
    }
}

fn encode<M: prost::Message + Serialize>(encoding: Encoding, msg: &M) -> Reply {
    let body = match encoding {
        Encoding::Protobuf => msg.encode_to_vec(),
        Encoding::Json => match serde_json::to_vec(msg) {
            Ok(body) => body,
            Err(e) => return Reply::Twirp(TwirpError::new("internal", e.to_string())),
        },
    };
    Reply::Ok {
        content_type: encoding.content_type(),
        body,
    }
}

/// What a method needs from the token.
enum Need<'a> {
    Create,
    List,
    Admin(&'a str),
    AdminDest(&'a str, &'a str),
    Record,
    SipAdmin,
    SipCall,
}

fn allowed(claims: Option<&TokenClaims>, need: Need<'_>) -> bool {
    match need {
        Need::SipAdmin => return claims.and_then(|c| c.sip.as_ref()).is_some_and(|s| s.admin),
        Need::SipCall => return claims.and_then(|c| c.sip.as_ref()).is_some_and(|s| s.call),
        _ => {}
    }
    let Some(video) = claims.and_then(|c| c.video.as_ref()) else {
        return false;
    };
    match need {
        Need::Create => video.room_create,
        Need::List => video.room_list,
        Need::Admin(room) => video.room_admin && video.room == room,
        Need::AdminDest(room, dest) => {
            video.room_admin && video.room == room && video.destination_room == dest
        }
        Need::Record => video.room_record,
        Need::SipAdmin | Need::SipCall => false,
    }
}

fn http_response(reply: Reply) -> (HttpResponse, u16, Option<String>) {
    match reply {
        Reply::Ok { content_type, body } => (
            HttpResponse::Ok().content_type(content_type).body(body),
            200,
            None,
        ),
        Reply::Twirp(e) => {
            let status = e.status();
            let body = if e.meta.is_empty() {
                serde_json::json!({ "code": e.code, "msg": e.msg })
            } else {
                serde_json::json!({ "code": e.code, "msg": e.msg, "meta": e.meta })
            }
            .to_string();
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (
                HttpResponse::build(code)
                    .content_type("application/json")
                    .body(body),
                status,
                Some(e.code.to_owned()),
            )
        }
        Reply::Plain(status, text) => {
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (
                HttpResponse::build(code)
                    .content_type("text/plain; charset=utf-8")
                    .body(text),
                status,
                None,
            )
        }
        Reply::Dial(_) => http_response(Reply::Twirp(TwirpError::new(
            "internal",
            "a dial-out was answered before it was played",
        ))),
    }
}

/// `POST /test/join` and `/test/leave` body: the join token a client received.
#[derive(Debug, Deserialize)]
struct ClientTokenBody {
    token: String,
}

/// CORS for the browser test double: the page (the switchboard's origin) calls the fake
/// from another port.
fn with_cors(mut res: HttpResponse) -> HttpResponse {
    let h = res.headers_mut();
    for (name, value) in [
        ("access-control-allow-origin", "*"),
        ("access-control-allow-methods", "POST, OPTIONS"),
        ("access-control-allow-headers", "content-type"),
    ] {
        h.insert(
            actix_web::http::header::HeaderName::from_static(name),
            actix_web::http::header::HeaderValue::from_static(value),
        );
    }
    res
}

fn client_body(req: &HttpRequest, body: &[u8]) -> Result<ClientTokenBody, Box<HttpResponse>> {
    if req.method() != Method::POST {
        return Err(Box::new(HttpResponse::MethodNotAllowed().finish()));
    }
    serde_json::from_slice(body).map_err(|e| {
        Box::new(
            HttpResponse::BadRequest()
                .json(serde_json::json!({"error": format!("expected {{token}}: {e}")})),
        )
    })
}

/// `POST /test/join {token}`: a browser's LiveKit client connects (the Playwright test double
/// of `livekit-client` calls this with the real token the page received). Checked exactly
/// like [`FakeLiveKit::join`] (signature, key, expiry, `roomJoin`, identity, room), then the
/// signed `participant_joined` webhook goes out. 200 `{room, identity, sid}`, or the status
/// livekit-server's signalling endpoint answers with `{error}`.
async fn client_join(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<Mutex<FakeState>>,
) -> HttpResponse {
    if req.method() == Method::OPTIONS {
        return with_cors(HttpResponse::NoContent().finish());
    }
    let res = match client_body(&req, &body) {
        Err(res) => *res,
        Ok(b) => match lock(&state).join(&b.token, None) {
            Ok(j) => HttpResponse::Ok().json(serde_json::json!({
                "room": j.room, "identity": j.identity, "sid": j.sid,
            })),
            Err(e) => HttpResponse::build(
                StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::UNAUTHORIZED),
            )
            .json(serde_json::json!({ "error": format!("{e:?}") })),
        },
    };
    with_cors(res)
}

/// `POST /test/leave {token}`: that client disconnects from the room of its (verified) token
/// (`participant_left`, `CLIENT_INITIATED`). 200 `{left}`: whether it was there.
async fn client_leave(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<Mutex<FakeState>>,
) -> HttpResponse {
    if req.method() == Method::OPTIONS {
        return with_cors(HttpResponse::NoContent().finish());
    }
    let res = match client_body(&req, &body) {
        Err(res) => *res,
        Ok(b) => {
            let mut st = lock(&state);
            match verify_token(&st.creds, &b.token) {
                Err(f) => {
                    HttpResponse::Unauthorized().json(serde_json::json!({"error": f.message()}))
                }
                Ok(claims) => {
                    let room = claims.video.map(|v| v.room).unwrap_or_default();
                    let left = st
                        .remove_participant(
                            &room,
                            &claims.sub,
                            proto::DisconnectReason::ClientInitiated,
                        )
                        .is_some();
                    HttpResponse::Ok().json(serde_json::json!({ "left": left }))
                }
            }
        }
    };
    with_cors(res)
}

/// Every HTTP request lands here.
async fn twirp_entry(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<Mutex<FakeState>>,
) -> HttpResponse {
    let path = req.path().to_owned();
    let method = match service_method(&path) {
        Some((_, method)) => method.to_owned(),
        None => path.clone(),
    };
    let latency = lock(&state).settings.api_latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut room = String::new();
    let reply = {
        let mut st = lock(&state);
        if st.settings.fail_next_twirp.is_empty() {
            st.handle_twirp(&req, &body, &mut room)
        } else {
            let code = st.settings.fail_next_twirp.remove(0);
            TwirpError::new(code, "injected fault").into()
        }
    };
    let reply = match reply {
        Reply::Dial(pending) => play_dial(&state, *pending).await,
        other => other,
    };
    let (response, status, code) = http_response(reply);
    let mut st = lock(&state);
    if st.settings.record {
        st.requests.push(TwirpRequestRecord {
            method,
            room,
            status,
            code,
        });
    }
    response
}

impl FakeState {
    /// The auth middleware: `Ok(None)` when no token was given.
    fn authenticate(&self, req: &HttpRequest) -> Result<Option<TokenClaims>, Reply> {
        let mode = self.settings.auth_errors;
        let fail = |failure: AuthFailure| match mode {
            AuthErrorMode::Server => Reply::Plain(401, failure.message()),
            AuthErrorMode::FactsSheet => {
                Reply::Twirp(TwirpError::new("unauthenticated", failure.message()))
            }
        };
        let token = match req.headers().get("Authorization") {
            Some(value) => {
                let value = value.to_str().unwrap_or_default();
                match value.strip_prefix("Bearer ") {
                    Some(token) => token.to_owned(),
                    None => return Err(fail(AuthFailure::BadHeader)),
                }
            }
            None => web::Query::<HashMap<String, String>>::from_query(req.query_string())
                .ok()
                .and_then(|q| q.get("access_token").cloned())
                .unwrap_or_default(),
        };
        if token.is_empty() {
            return match mode {
                AuthErrorMode::Server => Ok(None),
                AuthErrorMode::FactsSheet => Err(Reply::Twirp(TwirpError::new(
                    "unauthenticated",
                    "missing authorization",
                ))),
            };
        }
        verify_token(&self.creds, &token).map(Some).map_err(fail)
    }

    fn denied(&self) -> TwirpError {
        match self.settings.auth_errors {
            AuthErrorMode::Server => TwirpError::new("unauthenticated", "permissions denied"),
            AuthErrorMode::FactsSheet => TwirpError::new("permission_denied", "permissions denied"),
        }
    }

    fn check(&self, claims: Option<&TokenClaims>, need: Need<'_>) -> Result<(), TwirpError> {
        if allowed(claims, need) {
            Ok(())
        } else {
            Err(self.denied())
        }
    }

    fn handle_twirp(&mut self, req: &HttpRequest, body: &[u8], room_out: &mut String) -> Reply {
        if self.settings.api_down {
            return TwirpError::new("unavailable", "service unavailable").into();
        }
        let claims = match self.authenticate(req) {
            Ok(claims) => claims,
            Err(reply) => return reply,
        };
        let claims = claims.as_ref();
        let path = req.path();
        if req.method() != Method::POST {
            return TwirpError::new(
                "bad_route",
                format!("unsupported method {} (only POST is allowed)", req.method()),
            )
            .into();
        }
        let Some((service, method)) = service_method(path) else {
            return TwirpError::new("bad_route", format!("no handler for path {path:?}")).into();
        };
        let known = match service {
            "RoomService" => ROOM_METHODS.contains(&method),
            "SIP" => SIP_METHODS.contains(&method),
            "AgentDispatchService" => DISPATCH_METHODS.contains(&method),
            "Egress" => EGRESS_METHODS.contains(&method),
            _ => false,
        };
        if !known {
            return TwirpError::new("bad_route", format!("no handler for path {path:?}")).into();
        }
        let content_type = req
            .headers()
            .get("Content-Type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let media = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let encoding = match media.as_str() {
            "application/protobuf" => Encoding::Protobuf,
            "application/json" => Encoding::Json,
            _ => {
                return TwirpError::new(
                    "bad_route",
                    format!("unexpected Content-Type: {content_type:?}"),
                )
                .into()
            }
        };
        let result = match (service, method) {
            ("SIP", "CreateSIPOutboundTrunk") => {
                self.create_sip_outbound_trunk(encoding, body, claims)
            }
            ("SIP", "ListSIPOutboundTrunk") => self.list_sip_outbound_trunk(encoding, body, claims),
            ("SIP", "DeleteSIPTrunk") => self.delete_sip_trunk(encoding, body, claims),
            ("SIP", _) => self.create_sip_participant(encoding, body, claims, room_out),
            ("AgentDispatchService", "CreateDispatch") => {
                self.create_dispatch(encoding, body, claims, room_out)
            }
            ("AgentDispatchService", "DeleteDispatch") => {
                self.delete_dispatch(encoding, body, claims, room_out)
            }
            ("AgentDispatchService", _) => self.list_dispatch(encoding, body, claims, room_out),
            ("Egress", "StartRoomCompositeEgress") => {
                self.start_room_composite_egress(encoding, body, claims, room_out)
            }
            ("Egress", "StopEgress") => self.stop_egress(encoding, body, claims, room_out),
            ("Egress", _) => self.list_egress(encoding, body, claims, room_out),
            (_, method) => self.room_service(method, encoding, body, claims, room_out),
        };
        match result {
            Ok(reply) => reply,
            Err(e) => e.into(),
        }
    }

    fn room_service(
        &mut self,
        method: &str,
        encoding: Encoding,
        body: &[u8],
        claims: Option<&TokenClaims>,
        room_out: &mut String,
    ) -> Result<Reply, TwirpError> {
        match method {
            "CreateRoom" => self.create_room(encoding, body, claims, room_out),
            "ListRooms" => self.list_rooms(encoding, body, claims),
            "DeleteRoom" => self.delete_room(encoding, body, claims, room_out),
            "ListParticipants" => self.list_participants(encoding, body, claims, room_out),
            "GetParticipant" => self.get_participant(encoding, body, claims, room_out),
            "RemoveParticipant" => self.remove_participant_api(encoding, body, claims, room_out),
            "MutePublishedTrack" => self.mute_published_track(encoding, body, claims, room_out),
            "UpdateParticipant" => self.update_participant(encoding, body, claims, room_out),
            "UpdateSubscriptions" => self.update_subscriptions(encoding, body, claims, room_out),
            "SendData" => self.send_data(encoding, body, claims, room_out),
            "UpdateRoomMetadata" => self.update_room_metadata(encoding, body, claims, room_out),
            "MoveParticipant" => self.move_participant(encoding, body, claims, room_out, false),
            "ForwardParticipant" => self.move_participant(encoding, body, claims, room_out, true),
            _ => self.perform_rpc(encoding, body, claims, room_out),
        }
    }

    fn create_room(
        &mut self,
        enc: Encoding,
        body: &[u8],
        claims: Option<&TokenClaims>,
        room_out: &mut String,
    ) -> Result<Reply, TwirpError> {
        let req: proto::CreateRoomRequest = decode(enc, body)?;
        room_out.clone_from(&req.name);
        self.check(claims, Need::Create)?;
        if req.name.is_empty() {
            return Err(TwirpError::new("invalid_argument", "no room name"));
        }
        let room = self.ensure_room(&req.name, Some(&req));
        Ok(encode(enc, &room))
    }

    fn list_rooms(
        &mut self,
        enc: Encoding,
        body: &[u8],
        claims: Option<&TokenClaims>,
    ) -> Result<Reply, TwirpError> {
        let req: proto::ListRoomsRequest = decode(enc, body)?;
        self.check(claims, Need::List)?;
        let rooms = self
            .rooms
            .values()
            .filter(|r| req.names.is_empty() || req.names.contains(&r.info.name))
            .map(|r| r.info.clone())
            .collect();
        Ok(encode(enc, &proto::ListRoomsResponse { rooms }))
    }

    fn delete_room(
        &mut self,
        enc: Encoding,
        body: &[u8],
        claims: Option<&TokenClaims>,
        room_out: &mut String,
    ) -> Result<Reply, TwirpError> {
        let req: proto::DeleteRoomRequest = decode(enc, body)?;
        room_out.clone_from(&req.room);
        self.check(claims, Need::Create)?;
        if !self.finish_room(&req.room, proto::RoomEndReason::RoomEndApiDelete) {
            return Err(TwirpError::new(
                "not_found",
                "requested room does not exist",
            ));
        }
        Ok(encode(enc, &proto::DeleteRoomResponse {}))
    }

    fn list_participants(
        &mut self,
        enc: Encoding,
        body: &[u8],
        claims: Option<&TokenClaims>,
        room_out: &mut String,
    ) -> Result<Reply, TwirpError> {
        let req: proto::ListParticipantsRequest = decode(enc, body)?;
        room_out.clone_from(&req.room);
        self.check(claims, Need::Admin(&req.room))?;
        let participants = self
            .rooms
            .get(&req.room)
            .map(|r| r.participants.clone())
            .unwrap_or_default();
        Ok(encode(
            enc,
            &proto::ListParticipantsResponse { participants },
        ))
    }

    fn get_participant(
        &mut self,
        enc: Encoding,
        body: &[u8],
        claims: Option<&TokenClaims>,
        room_out: &mut String,
    ) -> Result<Reply, TwirpError> {
        let req: proto::RoomParticipantIdentity = decode(enc, body)?;
        room_out.clone_from(&req.room);
        self.check(claims, Need::Admin(&req.room))?;
        match self.find_participant_mut(&req.room, &req.identity) {
            Some(p) => Ok(encode(enc, &*p)),
            None => Err(TwirpError::new("not_found", "participant does not exist")),
        }
    }

    fn remove_participant_api(
        &mut self,
        enc: Encoding,
        body: &[u8],
        claims: Option<&TokenClaims>,
        room_out: &mut String,
    ) -> Result<Reply, TwirpError> {
        let req: proto::RoomParticipantIdentity = decode(enc, body)?;
        room_out.clone_from(&req.room);
        self.check(claims, Need::Admin(&req.room))?;
        match self.remove_participant(
            &req.room,
            &req.identity,
            proto::DisconnectReason::ParticipantRemoved,
        ) {
            Some(_) => Ok(encode(enc, &proto::RemoveParticipantResponse {})),
            None => Err(TwirpError::new("not_found", "participant not found")),
        }
    }

    fn mute_published_track(
        &mut self,
        enc: Encoding,
        body: &[u8],
        claims: Option<&TokenClaims>,
        room_out: &mut String,
    ) -> Result<Reply, TwirpError> {
        let req: proto::MuteRoomTrackRequest = decode(enc, body)?;
        room_out.clone_from(&req.room);
        self.check(claims, Need::Admin(&req.room))?;
        let Some(p) = self.find_participant_mut(&req.room, &req.identity) else {
            return Err(TwirpError::new("not_found", "participant does not exist"));
        };
        let Some(track) = p.tracks.iter_mut().find(|t| t.sid == req.track_sid) else {
            return Err(TwirpError::new("not_found", "track is not found"));
        };
        track.muted = req.muted;
        let track = track.clone();
        Ok(encode(
            enc,
            &proto::MuteRoomTrackResponse { track: Some(track) },
        ))
    }

    fn update_participant(
        &mut self,
        enc: Encoding,
        body: &[u8],
        claims: Option<&TokenClaims>,
        room_out: &mut String,
    ) -> Result<Reply, TwirpError> {
        let req: proto::UpdateParticipantRequest = decode(enc, body)?;
        room_out.clone_from(&req.room);
        self.check(claims, Need::Admin(&req.room))?;
        let Some(p) = self.find_participant_mut(&req.room, &req.identity) else {
            return Err(TwirpError::new("not_found", "participant does not exist"));
        };
        if !req.metadata.is_empty() {
            p.metadata.clone_from(&req.metadata);
        }
        if !req.name.is_empty() {
            p.name.clone_from(&req.name);
        }
        for (key, value) in &req.attributes {
            if value.is_empty() {
                p.attributes.remove(key);
            } else {
                p.attributes.insert(key.clone(), value.clone());
            }
        }
        if let Some(permission) = &req.permission {
            p.permission = Some(permission.clone());
        }
        p.version += 1;
        let updated = p.clone();
        Ok(encode(enc, &updated))
    }

    fn update_subscriptions(
        &mut self,
        enc: Encoding,
        body: &[u8],
        claims: Option<&TokenClaims>,
        room_out: &mut String,
    ) -> Result<Reply, TwirpError> {
        let req: proto::UpdateSubscriptionsRequest = decode(enc, body)?;
        room_out.clone_from(&req.room);
        self.check(claims, Need::Admin(&req.room))?;
        if self
            .find_participant_mut(&req.room, &req.identity)
            .is_none()
        {
            return Err(TwirpError::new("not_found", "participant does not exist"));
        }
        Ok(encode(enc, &proto::UpdateSubscriptionsResponse {}))
    }

    fn send_data(
        &mut self,
        enc: Encoding,
        body: &[u8],
        claims: Option<&TokenClaims>,
        room_out: &mut String,
    ) -> Result<Reply, TwirpError> {
        let req: proto::SendDataRequest = decode(enc, body)?;
        room_out.clone_from(&req.room);
        self.check(claims, Need::Admin(&req.room))?;
        if !req.nonce.is_empty() && req.nonce.len() != 16 {
            return Err(TwirpError::new(
                "invalid_argument",
                format!(
                    "nonce should be 16-bytes or not present, got: {} bytes",
                    req.nonce.len()
                ),
            ));
        }
        if !self.rooms.contains_key(&req.room) {
            return Err(TwirpError::new(
                "not_found",
                "requested room does not exist",
            ));
        }
        self.sent_data.push(SentData {
            room: req.room.clone(),
            data: req.data.clone(),
            topic: req.topic.clone(),
            kind: req.kind,
            destination_identities: req.destination_identities.clone(),
        });
        Ok(encode(enc, &proto::SendDataResponse {}))
    }

    fn update_room_metadata(
        &mut self,
        enc: Encoding,
        body: &[u8],
        claims: Option<&TokenClaims>,
        room_out: &mut String,
    ) -> Result<Reply, TwirpError> {
        let req: proto::UpdateRoomMetadataRequest = decode(enc, body)?;
        room_out.clone_from(&req.room);
        self.check(claims, Need::Admin(&req.room))?;
        let Some(r) = self.rooms.get_mut(&req.room) else {
            return Err(TwirpError::new(
                "not_found",
                "requested room does not exist",
            ));
        };
        r.info.metadata.clone_from(&req.metadata);
        Ok(encode(enc, &r.info.clone()))
    }

    /// `MoveParticipant` (or, with `forward`, `ForwardParticipant`).
    fn move_participant(
        &mut self,
        enc: Encoding,
        body: &[u8],
        claims: Option<&TokenClaims>,
        room_out: &mut String,
        forward: bool,
    ) -> Result<Reply, TwirpError> {
        let (room, identity, destination) = if forward {
            let req: proto::ForwardParticipantRequest = decode(enc, body)?;
            (req.room, req.identity, req.destination_room)
        } else {
            let req: proto::MoveParticipantRequest = decode(enc, body)?;
            (req.room, req.identity, req.destination_room)
        };
        room_out.clone_from(&room);
        self.check(claims, Need::AdminDest(&room, &destination))?;
        if room == destination {
            return Err(TwirpError::new(
                "invalid_argument",
                "destination room cannot be the same as source room",
            ));
        }
        let name = if forward {
            "ForwardParticipant"
        } else {
            "MoveParticipant"
        };
        if !self.settings.cloud_mode {
            return Err(TwirpError::new(
                "unimplemented",
                format!("{name} is only available on LiveKit Cloud"),
            ));
        }
        let Some(current) = self
            .find_participant_mut(&room, &identity)
            .map(|p| p.clone())
        else {
            return Err(TwirpError::new("not_found", "participant does not exist"));
        };
        self.ensure_room(&destination, None);
        if !forward {
            self.remove_participant(&room, &identity, proto::DisconnectReason::UnknownReason);
        }
        self.remove_participant(
            &destination,
            &identity,
            proto::DisconnectReason::DuplicateIdentity,
        );
        let now_ms = unix_millis();
        let moved = proto::ParticipantInfo {
            sid: new_id("PA_"),
            state: proto::participant_info::State::Active as i32,
            joined_at: now_ms / 1000,
            joined_at_ms: now_ms,
            disconnect_reason: 0,
            ..current
        };
        self.add_participant(&destination, moved);
        if forward {
            Ok(encode(enc, &proto::ForwardParticipantResponse {}))
        } else {
            Ok(encode(enc, &proto::MoveParticipantResponse {}))
        }
    }

    fn perform_rpc(
        &mut self,
        enc: Encoding,
        body: &[u8],
        claims: Option<&TokenClaims>,
        room_out: &mut String,
    ) -> Result<Reply, TwirpError> {
        let req: proto::PerformRpcRequest = decode(enc, body)?;
        room_out.clone_from(&req.room);
        self.check(claims, Need::Admin(&req.room))?;
        if req.destination_identity.is_empty() {
            return Err(TwirpError::new(
                "invalid_argument",
                "destination identity is required",
            ));
        }
        if self
            .find_participant_mut(&req.room, &req.destination_identity)
            .is_none()
        {
            return Err(TwirpError::new("not_found", "participant does not exist"));
        }
        Err(TwirpError::new(
            "unimplemented",
            "the fake has no client connection to run RPCs on",
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// SIP, agent dispatch, egress

/// `/twirp/livekit.<Service>/<Method>` → `(Service, Method)`.
fn service_method(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix(TWIRP_PREFIX)?;
    let (service, method) = rest.split_once('/')?;
    (!service.is_empty() && !method.is_empty() && !method.contains('/'))
        .then_some((service, method))
}

fn unix_nanos() -> i64 {
    unix_millis().saturating_mul(1_000_000)
}

/// A protobuf `Duration`'s seconds and nanos as a `Duration` (negative → `None`).
fn proto_duration(seconds: i64, nanos: i32) -> Option<Duration> {
    Some(Duration::new(
        u64::try_from(seconds).ok()?,
        u32::try_from(nanos).ok()?,
    ))
}

/// Whether an egress is still recording (it can be stopped).
fn egress_running(info: &proto::EgressInfo) -> bool {
    matches!(
        proto::EgressStatus::try_from(info.status),
        Ok(proto::EgressStatus::EgressStarting | proto::EgressStatus::EgressActive)
    )
}

/// The egress as the API and webhooks show it: upload secrets blanked, as LiveKit does.
fn redacted_egress(info: &proto::EgressInfo) -> proto::EgressInfo {
    let mut info = info.clone();
    if let Some(proto::egress_info::Request::RoomComposite(req)) = &mut info.request {
        for out in &mut req.file_outputs {
            if let Some(proto::encoded_file_output::Output::S3(s3)) = &mut out.output {
                s3.access_key = "{access_key}".to_owned();
                s3.secret = "{secret}".to_owned();
            }
        }
    }
    info
}

/// Plays a dial-out's script outside the lock, watching the callee: one who was removed while
/// ringing (hangup through the API, room deleted) ends the call with 487.
async fn play_dial(state: &Mutex<FakeState>, dial: PendingDial) -> Reply {
    let started = Instant::now();
    let ring_for = match &dial.script {
        SipScript::Answer { after } => Some(*after),
        SipScript::Reject { .. } => Some(Duration::ZERO),
        SipScript::NoAnswer => Some(dial.ringing_timeout),
        SipScript::Hang => None,
    };
    loop {
        {
            let mut st = lock(state);
            let ringing = st
                .rooms
                .get(&dial.room)
                .and_then(|r| r.participants.iter().find(|p| p.identity == dial.identity))
                .is_some_and(|p| p.sid == dial.participant_sid);
            if !ringing {
                return TwirpError::sip(487, "Request Terminated").into();
            }
            let elapsed = started.elapsed();
            if ring_for.is_some_and(|d| elapsed >= d) {
                return st.finish_dial(&dial);
            }
            if ring_for.is_none() && elapsed >= HANG_CAP {
                st.remove_participant(
                    &dial.room,
                    &dial.identity,
                    proto::DisconnectReason::SipTrunkFailure,
                );
                return TwirpError::new("deadline_exceeded", "sip request timed out").into();
            }
        }
        tokio::time::sleep(DIAL_POLL).await;
    }
}

impl FakeState {
    /// The end of a dial-out's ringing: answered, or refused (the callee leaves).
    fn finish_dial(&mut self, dial: &PendingDial) -> Reply {
        let (status, reason) = match &dial.script {
            SipScript::Answer { .. } => {
                if let Some(p) = self.find_participant_mut(&dial.room, &dial.identity) {
                    p.attributes
                        .insert("sip.callStatus".to_owned(), "active".to_owned());
                    p.version += 1;
                }
                return encode(
                    dial.encoding,
                    &proto::SipParticipantInfo {
                        participant_id: dial.participant_sid.clone(),
                        participant_identity: dial.identity.clone(),
                        room_name: dial.room.clone(),
                        sip_call_id: dial.sip_call_id.clone(),
                    },
                );
            }
            SipScript::Reject { status, reason } => (*status, reason.clone()),
            SipScript::NoAnswer | SipScript::Hang => (480, "Temporarily Unavailable".to_owned()),
        };
        let why = match status {
            486 | 600 | 480 | 408 => proto::DisconnectReason::UserUnavailable,
            603 | 607 | 608 => proto::DisconnectReason::UserRejected,
            _ => proto::DisconnectReason::SipTrunkFailure,
        };
        if let Some(p) = self.find_participant_mut(&dial.room, &dial.identity) {
            p.attributes
                .insert("sip.callStatus".to_owned(), "hangup".to_owned());
        }
        self.remove_participant(&dial.room, &dial.identity, why);
        TwirpError::sip(status, &reason).into()
    }

    fn create_sip_outbound_trunk(
        &mut self,
        enc: Encoding,
        body: &[u8],
        claims: Option<&TokenClaims>,
    ) -> Result<Reply, TwirpError> {
        let req: proto::CreateSipOutboundTrunkRequest = decode(enc, body)?;
        self.check(claims, Need::SipAdmin)?;
        let invalid = |msg: &str| TwirpError::new("invalid_argument", msg);
        let Some(mut trunk) = req.trunk else {
            return Err(invalid("missing trunk"));
        };
        if !trunk.sip_trunk_id.is_empty() {
            return Err(invalid("trunk id must not be set"));
        }
        if trunk.numbers.is_empty() {
            return Err(invalid("no trunk numbers specified"));
        }
        let address = trunk.address.as_str();
        if address.is_empty() {
            return Err(invalid("no outbound address specified"));
        }
        if address.contains("transport=") {
            return Err(invalid(
                "trunk transport should be set as a field, not a URI parameter",
            ));
        }
        if address.contains(['@', ';'])
            || address.starts_with("sip:")
            || address.starts_with("sips:")
        {
            return Err(invalid(
                "trunk address should be a hostname or IP, not SIP URI",
            ));
        }
        trunk.sip_trunk_id = new_id("ST_");
        let now = unix_secs();
        let mut created = trunk.created_at.take().unwrap_or_default();
        created.seconds = i64::try_from(now).unwrap_or(i64::MAX);
        created.nanos = 0;
        trunk.updated_at = Some(created);
        trunk.created_at = Some(created);
        self.sip_trunks
            .insert(trunk.sip_trunk_id.clone(), trunk.clone());
        Ok(encode(enc, &trunk))
    }

    fn list_sip_outbound_trunk(
        &mut self,
        enc: Encoding,
        body: &[u8],
        claims: Option<&TokenClaims>,
    ) -> Result<Reply, TwirpError> {
        let req: proto::ListSipOutboundTrunkRequest = decode(enc, body)?;
        self.check(claims, Need::SipAdmin)?;
        let items = self
            .sip_trunks
            .values()
            .filter(|t| req.trunk_ids.is_empty() || req.trunk_ids.contains(&t.sip_trunk_id))
            .filter(|t| req.numbers.is_empty() || t.numbers.iter().any(|n| req.numbers.contains(n)))
            .cloned()
            .collect();
        Ok(encode(enc, &proto::ListSipOutboundTrunkResponse { items }))
    }

    fn delete_sip_trunk(
        &mut self,
        enc: Encoding,
        body: &[u8],
        claims: Option<&TokenClaims>,
    ) -> Result<Reply, TwirpError> {
        let req: proto::DeleteSipTrunkRequest = decode(enc, body)?;
        self.check(claims, Need::SipAdmin)?;
        let Some(t) = self.sip_trunks.remove(&req.sip_trunk_id) else {
            return Err(TwirpError::new(
                "not_found",
                format!("SIP trunk {:?} not found", req.sip_trunk_id),
            ));
        };
        #[allow(deprecated)]
        let legacy = proto::SipTrunkInfo {
            sip_trunk_id: t.sip_trunk_id,
            kind: proto::sip_trunk_info::TrunkKind::TrunkOutbound as i32,
            outbound_address: t.address,
            outbound_number: t.numbers.first().cloned().unwrap_or_default(),
            transport: t.transport,
            outbound_username: t.auth_username,
            name: t.name,
            metadata: t.metadata,
            ..Default::default()
        };
        Ok(encode(enc, &legacy))
    }

    fn create_sip_participant(
        &mut self,
        enc: Encoding,
        body: &[u8],
        claims: Option<&TokenClaims>,
        room_out: &mut String,
    ) -> Result<Reply, TwirpError> {
        let req: proto::CreateSipParticipantRequest = decode(enc, body)?;
        room_out.clone_from(&req.room_name);
        self.check(claims, Need::SipCall)?;
        if req.sip_call_to.is_empty() {
            return Err(TwirpError::new("invalid_argument", "missing sip call to"));
        }
        if req.room_name.is_empty() {
            return Err(TwirpError::new("invalid_argument", "missing room name"));
        }
        let Some(trunk) = self.sip_trunks.get(&req.sip_trunk_id).cloned() else {
            return Err(TwirpError::new(
                "not_found",
                format!("SIP trunk {:?} not found", req.sip_trunk_id),
            ));
        };
        if self.settings.record {
            self.sip_dials.push(req.clone());
        }
        let identity = if req.participant_identity.is_empty() {
            format!("sip_{}", req.sip_call_to)
        } else {
            req.participant_identity.clone()
        };
        self.ensure_room(&req.room_name, None);
        self.remove_participant(
            &req.room_name,
            &identity,
            proto::DisconnectReason::DuplicateIdentity,
        );
        let sip_call_id = new_id("SCL_");
        let mut attributes = req.participant_attributes.clone();
        for (key, value) in [
            ("sip.callStatus", "dialing".to_owned()),
            ("sip.phoneNumber", req.sip_call_to.clone()),
            ("sip.trunkID", trunk.sip_trunk_id.clone()),
            ("sip.callID", sip_call_id.clone()),
        ] {
            attributes.insert(key.to_owned(), value);
        }
        let now_ms = unix_millis();
        let participant = proto::ParticipantInfo {
            sid: new_id("PA_"),
            identity: identity.clone(),
            state: proto::participant_info::State::Active as i32,
            metadata: req.participant_metadata.clone(),
            joined_at: now_ms / 1000,
            joined_at_ms: now_ms,
            name: if req.participant_name.is_empty() {
                req.sip_call_to.clone()
            } else {
                req.participant_name.clone()
            },
            version: 1,
            permission: Some(permission_from(&VideoGrant::default())),
            kind: proto::participant_info::Kind::Sip as i32,
            attributes,
            ..Default::default()
        };
        let participant_sid = participant.sid.clone();
        self.add_participant(&req.room_name, participant);
        let script = self
            .sip_scripts
            .get(&req.sip_call_to)
            .cloned()
            .unwrap_or(SipScript::Answer {
                after: Duration::ZERO,
            });
        let pending = PendingDial {
            encoding: enc,
            room: req.room_name.clone(),
            identity,
            participant_sid,
            sip_call_id,
            script,
            ringing_timeout: req
                .ringing_timeout
                .as_ref()
                .and_then(|d| proto_duration(d.seconds, d.nanos))
                .filter(|d| !d.is_zero())
                .unwrap_or(Duration::from_secs(30)),
        };
        if !req.wait_until_answered {
            // Without waiting, LiveKit answers at once while the phone rings on.
            let info = proto::SipParticipantInfo {
                participant_id: pending.participant_sid.clone(),
                participant_identity: pending.identity.clone(),
                room_name: pending.room.clone(),
                sip_call_id: pending.sip_call_id.clone(),
            };
            return Ok(encode(enc, &info));
        }
        Ok(Reply::Dial(Box::new(pending)))
    }

    fn create_dispatch(
        &mut self,
        enc: Encoding,
        body: &[u8],
        claims: Option<&TokenClaims>,
        room_out: &mut String,
    ) -> Result<Reply, TwirpError> {
        let req: proto::CreateAgentDispatchRequest = decode(enc, body)?;
        room_out.clone_from(&req.room);
        self.check(claims, Need::Admin(&req.room))?;
        if req.room.is_empty() {
            return Err(TwirpError::new("invalid_argument", "room name is required"));
        }
        if req.agent_name.is_empty() {
            return Err(TwirpError::new(
                "invalid_argument",
                "agent name is required",
            ));
        }
        let dispatch = proto::AgentDispatch {
            id: new_id("AD_"),
            agent_name: req.agent_name.clone(),
            room: req.room.clone(),
            metadata: req.metadata.clone(),
            state: Some(proto::AgentDispatchState {
                created_at: unix_nanos(),
                ..Default::default()
            }),
            restart_policy: req.restart_policy,
            deployment: req.deployment.clone(),
            attributes: req.attributes.clone(),
        };
        self.dispatches
            .insert(dispatch.id.clone(), dispatch.clone());
        self.ensure_room(&req.room, None);
        if self.agent_workers {
            let now_ms = unix_millis();
            #[allow(deprecated)]
            let permission = proto::ParticipantPermission {
                agent: true,
                ..permission_from(&VideoGrant::default())
            };
            let agent = proto::ParticipantInfo {
                sid: new_id("PA_"),
                identity: format!("agent-{}", dispatch.id),
                name: dispatch.agent_name.clone(),
                state: proto::participant_info::State::Active as i32,
                joined_at: now_ms / 1000,
                joined_at_ms: now_ms,
                version: 1,
                permission: Some(permission),
                kind: proto::participant_info::Kind::Agent as i32,
                attributes: [("lk.agent.name".to_owned(), dispatch.agent_name.clone())].into(),
                ..Default::default()
            };
            self.add_participant(&req.room, agent);
        }
        Ok(encode(enc, &dispatch))
    }

    fn delete_dispatch(
        &mut self,
        enc: Encoding,
        body: &[u8],
        claims: Option<&TokenClaims>,
        room_out: &mut String,
    ) -> Result<Reply, TwirpError> {
        let req: proto::DeleteAgentDispatchRequest = decode(enc, body)?;
        room_out.clone_from(&req.room);
        self.check(claims, Need::Admin(&req.room))?;
        let found = self
            .dispatches
            .get(&req.dispatch_id)
            .is_some_and(|d| d.room == req.room);
        if !found {
            return Err(TwirpError::new("not_found", "dispatch not found"));
        }
        let Some(mut dispatch) = self.dispatches.remove(&req.dispatch_id) else {
            return Err(TwirpError::new("not_found", "dispatch not found"));
        };
        self.remove_participant(
            &req.room,
            &format!("agent-{}", dispatch.id),
            proto::DisconnectReason::ClientInitiated,
        );
        if let Some(state) = &mut dispatch.state {
            state.deleted_at = unix_nanos();
        }
        Ok(encode(enc, &dispatch))
    }

    fn list_dispatch(
        &mut self,
        enc: Encoding,
        body: &[u8],
        claims: Option<&TokenClaims>,
        room_out: &mut String,
    ) -> Result<Reply, TwirpError> {
        let req: proto::ListAgentDispatchRequest = decode(enc, body)?;
        room_out.clone_from(&req.room);
        self.check(claims, Need::Admin(&req.room))?;
        let agent_dispatches = self
            .dispatches
            .values()
            .filter(|d| d.room == req.room)
            .filter(|d| req.dispatch_id.is_empty() || d.id == req.dispatch_id)
            .cloned()
            .collect();
        Ok(encode(
            enc,
            &proto::ListAgentDispatchResponse { agent_dispatches },
        ))
    }

    fn start_room_composite_egress(
        &mut self,
        enc: Encoding,
        body: &[u8],
        claims: Option<&TokenClaims>,
        room_out: &mut String,
    ) -> Result<Reply, TwirpError> {
        let req: proto::RoomCompositeEgressRequest = decode(enc, body)?;
        room_out.clone_from(&req.room_name);
        self.check(claims, Need::Record)?;
        if self.egress_fault == Some(EgressFault::StartRefused) {
            return Err(TwirpError::new("unavailable", "no response from servers"));
        }
        if req.room_name.is_empty() {
            return Err(TwirpError::new("invalid_argument", "room name is required"));
        }
        let no_outputs = req.file_outputs.is_empty()
            && req.stream_outputs.is_empty()
            && req.segment_outputs.is_empty()
            && req.image_outputs.is_empty()
            && req.output.is_none();
        if no_outputs {
            return Err(TwirpError::new("invalid_argument", "no output specified"));
        }
        let Some(file) = req.file_outputs.first() else {
            return Err(TwirpError::new(
                "unimplemented",
                "the fake records to file outputs only",
            ));
        };
        let Some(proto::encoded_file_output::Output::S3(s3)) = &file.output else {
            return Err(TwirpError::new(
                "invalid_argument",
                "no upload configured (the fake has no default storage)",
            ));
        };
        if s3.bucket.is_empty() {
            return Err(TwirpError::new("invalid_argument", "invalid input: bucket"));
        }
        if file.filepath.is_empty() {
            return Err(TwirpError::new(
                "invalid_argument",
                "invalid input: filepath",
            ));
        }
        let Some(room) = self.rooms.get(&req.room_name).map(|r| r.info.clone()) else {
            return Err(TwirpError::new(
                "not_found",
                "requested room does not exist",
            ));
        };
        let egress = FakeEgress {
            bucket: s3.bucket.clone(),
            filepath: file.filepath.clone(),
            has_credentials: !s3.access_key.is_empty() && !s3.secret.is_empty(),
            info: proto::EgressInfo {
                egress_id: new_id("EG_"),
                room_id: room.sid.clone(),
                room_name: room.name.clone(),
                source_type: proto::EgressSourceType::Web as i32,
                status: proto::EgressStatus::EgressStarting as i32,
                updated_at: unix_nanos(),
                request: Some(proto::egress_info::Request::RoomComposite(req.clone())),
                ..Default::default()
            },
        };
        if self.settings.record {
            self.egress_requests.push(req.clone());
        }
        let id = egress.info.egress_id.clone();
        let starting = egress.info.clone();
        self.egresses.insert(id.clone(), egress);
        self.emit_egress("egress_started", &starting);
        // The recorder connects: active.
        let active = {
            let Some(e) = self.egresses.get_mut(&id) else {
                return Err(TwirpError::new("internal", "egress vanished"));
            };
            e.info.status = proto::EgressStatus::EgressActive as i32;
            e.info.started_at = unix_nanos();
            e.info.updated_at = e.info.started_at;
            e.info.clone()
        };
        self.emit_egress("egress_updated", &active);
        if self.egress_fault == Some(EgressFault::FailsMidway) {
            self.fail_egress(&id, "pipeline failed: injected fault");
        }
        Ok(encode(enc, &redacted_egress(&starting)))
    }

    /// Ends a running egress: uploads (COMPLETE with the location) or fails without credentials.
    fn end_egress(&mut self, id: &str) {
        let Some(e) = self.egresses.get(id) else {
            return;
        };
        if !e.has_credentials {
            self.fail_egress(id, "upload failed: no AWS credentials in the request");
            return;
        }
        let location = format!("s3://{}/{}", e.bucket, e.filepath);
        let filename = e.filepath.rsplit('/').next().unwrap_or_default().to_owned();
        let Some(e) = self.egresses.get_mut(id) else {
            return;
        };
        let now = unix_nanos();
        e.info.status = proto::EgressStatus::EgressEnding as i32;
        e.info.updated_at = now;
        let ending = e.info.clone();
        e.info.status = proto::EgressStatus::EgressComplete as i32;
        e.info.ended_at = now;
        e.info.file_results = vec![proto::FileInfo {
            filename,
            started_at: e.info.started_at,
            ended_at: now,
            duration: now.saturating_sub(e.info.started_at),
            size: 4096,
            location,
        }];
        let ended = e.info.clone();
        self.emit_egress("egress_updated", &ending);
        self.emit_egress("egress_ended", &ended);
    }

    /// A running egress fails: `egress_ended` with `EGRESS_FAILED` and `error`.
    fn fail_egress(&mut self, id: &str, error: &str) {
        let Some(e) = self.egresses.get_mut(id) else {
            return;
        };
        let now = unix_nanos();
        e.info.status = proto::EgressStatus::EgressFailed as i32;
        e.info.error = error.to_owned();
        e.info.error_code = 500;
        e.info.ended_at = now;
        e.info.updated_at = now;
        let failed = e.info.clone();
        self.emit_egress("egress_ended", &failed);
    }

    fn stop_egress(
        &mut self,
        enc: Encoding,
        body: &[u8],
        claims: Option<&TokenClaims>,
        room_out: &mut String,
    ) -> Result<Reply, TwirpError> {
        let req: proto::StopEgressRequest = decode(enc, body)?;
        self.check(claims, Need::Record)?;
        let Some(e) = self.egresses.get(&req.egress_id) else {
            return Err(TwirpError::new("not_found", "egress not found"));
        };
        room_out.clone_from(&e.info.room_name);
        if !egress_running(&e.info) {
            let status = proto::EgressStatus::try_from(e.info.status)
                .map(|s| s.as_str_name())
                .unwrap_or("EGRESS_UNKNOWN");
            return Err(TwirpError::new(
                "failed_precondition",
                format!("egress with status {status} cannot be stopped"),
            ));
        }
        let mut ending = e.info.clone();
        ending.status = proto::EgressStatus::EgressEnding as i32;
        self.end_egress(&req.egress_id);
        Ok(encode(enc, &redacted_egress(&ending)))
    }

    fn list_egress(
        &mut self,
        enc: Encoding,
        body: &[u8],
        claims: Option<&TokenClaims>,
        room_out: &mut String,
    ) -> Result<Reply, TwirpError> {
        let req: proto::ListEgressRequest = decode(enc, body)?;
        room_out.clone_from(&req.room_name);
        self.check(claims, Need::Record)?;
        let items = self
            .egresses
            .values()
            .filter(|e| req.room_name.is_empty() || e.info.room_name == req.room_name)
            .filter(|e| req.egress_id.is_empty() || e.info.egress_id == req.egress_id)
            .filter(|e| !req.active || egress_running(&e.info))
            .map(|e| redacted_egress(&e.info))
            .collect();
        Ok(encode(
            enc,
            &proto::ListEgressResponse {
                items,
                next_page_token: None,
            },
        ))
    }
}
