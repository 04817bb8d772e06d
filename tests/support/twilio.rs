//! A faithful fake of Twilio's Voice API: REST, scripted phones, TwiML execution, signed callbacks.
//!
//! [`FakeTwilio::start`] runs an actix-web server on `127.0.0.1:0` on its own thread and
//! `actix_rt::System`, independent of the test's runtime. It behaves like Twilio and knows
//! nothing about switchboard's URLs except what it is configured with or told:
//!
//! * **REST** `/2010-04-01/Accounts/{AccountSid}/...json`, form-encoded, Basic auth with the
//!   account SID + auth token or an API key SID + secret (else 401, code 20003; another
//!   account's path → 404, 20404); Calls (create, fetch, redirect, cancel, hang up),
//!   Conferences (list, fetch, end) and Participants (add, list, fetch, hold/mute/announce,
//!   remove). Answers carry Twilio's JSON fields; errors are `{code, message, more_info, status}`.
//! * **Phones**: the far ends are scripted ([`PhoneScript`]): answer after a delay, busy, no
//!   answer, dial failure, hang up after a while, digits pressed at successive `<Gather>`s.
//! * **Calls** run as tasks executing TwiML: `<Say>`, `<Play>` (what a call hears is recorded,
//!   [`FakeTwilio::heard`]), `<Pause>`, `<Gather>`, `<Redirect>`, `<Hangup>`, `<Reject>` and
//!   `<Dial><Conference>`. A TwiML request that fails (transport error, non-2xx, not TwiML)
//!   makes the call hear an application error and hang up, recorded in [`FakeTwilio::errors`].
//! * **Callbacks** (call `StatusCallback`, conference `statusCallback`) are form-encoded and
//!   signed with `X-Twilio-Signature`, delivered asynchronously in order per call / conference,
//!   retried on a non-2xx answer, each attempt recorded in [`FakeTwilio::callback_log`].
//! * **Test-only HTTP surface** (not Twilio's API; for browser tests driven from Node, like
//!   the LiveKit fake's `/test/join`): `POST /test/client/connect {token, params}` →
//!   `{callSid}` (a browser's `device.connect`, the Access Token checked as by
//!   [`FakeTwilio::client_connect`]), `POST /test/client/disconnect {callSid}`,
//!   `POST /test/inbound {from, to}` → `{callSid}` (a phone call to an owned number),
//!   `POST /test/hangup {callSid}` (the far end hangs up) and `GET /test/state` (calls,
//!   conferences with their participants' labels, hold and mute, application errors). CORS
//!   is open so a page of another port can call them.
//! * **Fault switches**: REST latency, the next N requests of a route answering 429/500/503,
//!   or hanging past the client's timeout (carried out or not), callbacks duplicated,
//!   delayed, dropped or delivered in reverse, a shorter TwiML timeout.
//!
//! # Wiring it to the server
//!
//! The server is configured with `TWILIO_API_BASE_URL` = [`FakeTwilio::base_url`], the
//! account SID and auth token (or API key) of the [`FakeTwilioConfig`], and its public URL =
//! its local `http://127.0.0.1:PORT` (the fake signs the URL it requests). Once the server
//! listens, tell the fake where its webhooks are: [`FakeTwilio::set_number`] (the
//! `TWILIO_PHONE_NUMBER` and its voice URL; only owned numbers may be a call's `From`) and
//! [`FakeTwilio::set_app`] (the `TWILIO_APP_SID` TwiML App and its voice URL). Then script
//! the far ends ([`FakeTwilio::set_phone`]), place calls ([`FakeTwilio::inbound_call`],
//! [`FakeTwilio::client_connect`] with the token the server minted) and wait on the state
//! ([`FakeTwilio::wait_for`], [`FakeTwilio::conference`], [`FakeTwilio::heard`]). Use a
//! `time_scale` below 1 so TwiML pauses, gather timeouts and ring timeouts pass quickly.
//!
//! Choices where Twilio's documentation leaves room (documented so tests do not guess): a
//! conference starts (`conference-start`, status `in-progress`) when it has two connected
//! participants and one of them has `startConferenceOnEnter`; until then everyone in it hears
//! the wait music. A conference `statusCallback` without `statusCallbackEvent` gets
//! `start end`; the first participant naming a `statusCallback` sets it for the conference.
//! Adding a participant by friendly name creates the conference if none is live; by `CF…` SID
//! the conference must exist (404 20404). Changing `EndConferenceOnExit` of a held participant
//! is refused with 400 (code 20001; Twilio's exact code is not published). A far end that
//! hangs up a ringing call declines it (`busy`); `Status=completed` on a ringing call cancels
//! it. `<Reject>` ends an inbound call as `busy`.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use quick_xml::events::Event;
use serde::Deserialize;
use serde_json::{json, Value};
use sha1::Sha1;
use tokio::sync::mpsc;

/// The REST API version (path prefix and the `ApiVersion` parameter).
const API_VERSION: &str = "2010-04-01";
/// Twilio's default conference wait music (`waitUrl`) and hold music (`HoldUrl`).
pub const DEFAULT_MUSIC_URL: &str =
    "https://twimlets.com/holdmusic?Bucket=com.twilio.music.classical";
/// Attempts made to deliver one callback (the first and the retries).
const CALLBACK_ATTEMPTS: u32 = 4;
/// Longest a reordered batch waits for its last callbacks before it is delivered anyway.
const REORDER_FLUSH: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------------------------
// Configuration and public types

/// An API key: SID (`SK…`) and secret.
#[derive(Clone)]
pub struct ApiKey {
    /// The key's SID (`SK` + 32 hex); the Basic auth user name and a token's `iss`.
    pub sid: String,
    /// The key's secret: Basic auth password and the HMAC key of Access Tokens.
    pub secret: String,
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("sid", &self.sid)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The account the fake serves and what it owns.
#[derive(Clone)]
pub struct FakeTwilioConfig {
    /// The account SID (`AC` + 32 hex).
    pub account_sid: String,
    /// The auth token: Basic auth password and the key of every `X-Twilio-Signature`.
    pub auth_token: String,
    /// An API key accepted for Basic auth and Access Tokens, if any.
    pub api_key: Option<ApiKey>,
    /// TwiML Apps for browser client legs: application SID (`AP…`) → voice URL.
    pub apps: BTreeMap<String, String>,
    /// Phone numbers the account owns → their voice URL (inbound calls); only these may be a
    /// call's `From`.
    pub numbers: BTreeMap<String, String>,
    /// Factor applied to every duration TwiML or REST gives in seconds (`Pause length`,
    /// `Gather timeout`, `Timeout`), so tests run fast; 1.0 is real time.
    pub time_scale: f64,
}

impl Default for FakeTwilioConfig {
    fn default() -> Self {
        Self {
            account_sid: "AC0123456789abcdef0123456789abcdef".to_owned(),
            auth_token: "fake-twilio-auth-token-0123456789".to_owned(),
            api_key: Some(ApiKey {
                sid: "SK0123456789abcdef0123456789abcdef".to_owned(),
                secret: "fake-twilio-api-secret-0123456789".to_owned(),
            }),
            apps: BTreeMap::new(),
            numbers: BTreeMap::new(),
            time_scale: 1.0,
        }
    }
}

impl fmt::Debug for FakeTwilioConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeTwilioConfig")
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"<redacted>")
            .field("api_key", &self.api_key)
            .field("apps", &self.apps)
            .field("numbers", &self.numbers)
            .field("time_scale", &self.time_scale)
            .finish()
    }
}

/// How a scripted phone answers a call placed to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhoneAnswer {
    /// Rings for `after`, then answers (no answer if the call's `Timeout` comes first).
    Answer {
        /// Ringing time before answering.
        after: Duration,
    },
    /// Busy (`busy`, SIP 486).
    Busy,
    /// Rings until the call's `Timeout` (`no-answer`, SIP 487).
    NoAnswer,
    /// The dial fails (`failed`, SIP 404).
    Fail,
    /// Answers at once and hangs up this long after answering.
    HangUpAfter(Duration),
}

/// A scripted far end: how it answers and which keys it presses at successive `<Gather>`s.
#[derive(Debug, Clone)]
pub struct PhoneScript {
    /// Answer behaviour.
    pub answer: PhoneAnswer,
    /// Keys for successive `<Gather>`s; `None` (or an exhausted queue) presses nothing.
    pub digits: VecDeque<Option<String>>,
}

impl PhoneScript {
    /// Answers at once.
    pub fn answering() -> Self {
        Self::with(PhoneAnswer::Answer {
            after: Duration::ZERO,
        })
    }
    /// Answers after ringing for `after`.
    pub fn answering_after(after: Duration) -> Self {
        Self::with(PhoneAnswer::Answer { after })
    }
    /// Is busy.
    pub fn busy() -> Self {
        Self::with(PhoneAnswer::Busy)
    }
    /// Never answers.
    pub fn no_answer() -> Self {
        Self::with(PhoneAnswer::NoAnswer)
    }
    /// Cannot be dialled.
    pub fn failing() -> Self {
        Self::with(PhoneAnswer::Fail)
    }
    /// Answers at once and hangs up `after` later.
    pub fn hanging_up_after(after: Duration) -> Self {
        Self::with(PhoneAnswer::HangUpAfter(after))
    }
    /// Presses `digits` at the next `<Gather>` not yet scripted.
    pub fn pressing(mut self, digits: &str) -> Self {
        self.digits.push_back(Some(digits.to_owned()));
        self
    }
    /// Presses nothing at the next `<Gather>` (it times out).
    pub fn pressing_nothing(mut self) -> Self {
        self.digits.push_back(None);
        self
    }
    fn with(answer: PhoneAnswer) -> Self {
        Self {
            answer,
            digits: VecDeque::new(),
        }
    }
}

/// Something a call heard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// `<Say>` text.
    Say(String),
    /// `<Play>` URL.
    Play(String),
    /// Conference wait music: the audio URL played (from `waitUrl`'s TwiML, or `waitUrl`).
    WaitMusic(String),
    /// Hold music: the audio URL played (from `HoldUrl`'s TwiML, or `HoldUrl`).
    HoldMusic(String),
    /// An announcement (`AnnounceUrl`): the audio URL or spoken text.
    Announcement(String),
    /// The conference entry beep of another participant.
    Beep,
    /// Twilio's "an application error has occurred" message.
    ApplicationError,
}

/// A call as the fake knows it.
#[derive(Debug, Clone)]
pub struct CallInfo {
    /// `CA…`.
    pub sid: String,
    /// Caller: a number or `client:<identity>`.
    pub from: String,
    /// Callee.
    pub to: String,
    /// `inbound` or `outbound-api`.
    pub direction: String,
    /// `queued`, `initiated`, `ringing`, `in-progress`, `completed`, `busy`, `failed`,
    /// `no-answer` or `canceled`.
    pub status: String,
    /// The friendly name of the conference the call is in, if any.
    pub conference: Option<String>,
    /// What the call heard, in order.
    pub heard: Vec<Heard>,
    /// When it was created (RFC 2822).
    pub date_created: String,
    /// When it was answered (RFC 2822).
    pub start_time: Option<String>,
    /// When it ended (RFC 2822).
    pub end_time: Option<String>,
    /// Seconds between answer and end, once ended.
    pub duration: Option<u64>,
    /// SIP response code of a failed, busy or unanswered call.
    pub sip_response_code: Option<u16>,
    /// Extra voice-webhook parameters (`ApplicationSid` and custom parameters of a client leg).
    pub extra_params: Vec<(String, String)>,
}

impl CallInfo {
    /// Whether the call has ended.
    pub fn is_over(&self) -> bool {
        is_terminal(&self.status)
    }
}

/// A conference participant.
#[derive(Debug, Clone)]
pub struct ParticipantInfo {
    /// The participant's call.
    pub call_sid: String,
    /// `participantLabel` / `Label`.
    pub label: Option<String>,
    /// On hold.
    pub hold: bool,
    /// Muted.
    pub muted: bool,
    /// `endConferenceOnExit`.
    pub end_on_exit: bool,
    /// `startConferenceOnEnter`.
    pub start_on_enter: bool,
    /// `queued`, `ringing` (added by REST, not answered yet) or `connected`.
    pub status: String,
    /// `beep` setting.
    pub beep: String,
    /// When the participant was added (RFC 2822).
    pub date_created: String,
}

/// A conference.
#[derive(Debug, Clone)]
pub struct ConferenceInfo {
    /// `CF…`.
    pub sid: String,
    /// The name given in `<Conference>`.
    pub friendly_name: String,
    /// `init`, `in-progress` or `completed`.
    pub status: String,
    /// Current participants (connected, and REST-added ones still ringing), in join order.
    pub participants: Vec<ParticipantInfo>,
    /// Why it ended (`conference-ended-via-api`, `last-participant-left`, ...).
    pub reason_ended: Option<String>,
    /// The call whose exit ended it.
    pub call_sid_ending: Option<String>,
    /// Creation time (RFC 2822).
    pub date_created: String,
}

impl ConferenceInfo {
    /// The participant on `call_sid`.
    pub fn participant(&self, call_sid: &str) -> Option<&ParticipantInfo> {
        self.participants.iter().find(|p| p.call_sid == call_sid)
    }
}

/// One REST request the fake answered.
#[derive(Debug, Clone)]
pub struct RestRequest {
    /// HTTP method.
    pub method: String,
    /// The path (no query).
    pub path: String,
    /// The route recognised.
    pub route: Route,
    /// Form parameters (body for POST, query for GET/DELETE), in order.
    pub params: Vec<(String, String)>,
    /// The status answered.
    pub status: u16,
}

impl RestRequest {
    /// The first value of parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        param(&self.params, name)
    }
}

/// What a request made by the fake was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackKind {
    /// A TwiML request: voice URL, `<Gather>`/`<Dial>` action, `<Redirect>`, wait/hold/announce URL.
    Twiml,
    /// A call `StatusCallback`.
    CallStatus,
    /// A conference `statusCallback`.
    Conference,
    /// A real-time transcription `statusCallbackUrl`.
    Transcription,
}

/// One HTTP request the fake made to the application (one attempt).
#[derive(Debug, Clone)]
pub struct CallbackRecord {
    /// What it was for.
    pub kind: CallbackKind,
    /// The URL requested (with the query for GET).
    pub url: String,
    /// `POST` or `GET`.
    pub method: String,
    /// The form parameters sent.
    pub params: Vec<(String, String)>,
    /// The `X-Twilio-Signature` sent.
    pub signature: String,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// The status answered, if any.
    pub status: Option<u16>,
    /// The transport error, if the request failed.
    pub error: Option<String>,
    /// True when a fault switch dropped it (nothing was sent).
    pub dropped: bool,
}

impl CallbackRecord {
    /// The first value of parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        param(&self.params, name)
    }
}

/// An application error Twilio would report in its debugger.
#[derive(Debug, Clone)]
pub struct AppError {
    /// The call concerned.
    pub call_sid: String,
    /// The URL concerned, if any.
    pub url: Option<String>,
    /// What went wrong.
    pub message: String,
}

/// A REST route, for fault switches and the request log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `POST Calls.json`.
    CreateCall,
    /// `GET Calls/{Sid}.json`.
    FetchCall,
    /// `POST Calls/{Sid}.json`.
    UpdateCall,
    /// `GET Conferences.json`.
    ListConferences,
    /// `GET Conferences/{Sid}.json`.
    FetchConference,
    /// `POST Conferences/{Sid}.json`.
    UpdateConference,
    /// `POST Conferences/{Sid}/Participants.json`.
    CreateParticipant,
    /// `GET Conferences/{Sid}/Participants.json`.
    ListParticipants,
    /// `GET Participants/{CallSid|Label}.json`.
    FetchParticipant,
    /// `POST Participants/{CallSid|Label}.json`.
    UpdateParticipant,
    /// `DELETE Participants/{CallSid|Label}.json`.
    DeleteParticipant,
    /// Anything else (answered 404); as a fault target: every route.
    Any,
}

/// A scripted REST failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestFault {
    /// 429 code 20429 with `Retry-After`.
    TooManyRequests {
        /// The `Retry-After` seconds.
        retry_after_secs: u64,
    },
    /// 500.
    ServerError,
    /// 503.
    Unavailable,
    /// 400 with this Twilio error code (e.g. 21217, "phone number is not a valid phone
    /// number"; 21215, "geo permission": a refusal that retrying cannot fix).
    Rejected {
        /// The Twilio error code.
        code: u32,
    },
}

/// Why [`FakeTwilio::client_connect`] refused a browser leg (as the Voice SDK would report).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClientConnectError {
    /// Not a JWT, wrong algorithm, missing `cty: twilio-fpa;v=1`, or missing claims (20101).
    #[error("invalid access token: {0}")]
    Invalid(String),
    /// `iss` is not a known API key, or the signature does not verify (20107 / 20101).
    #[error("access token signature or issuer rejected: {0}")]
    BadSignature(String),
    /// `exp` has passed (20104).
    #[error("access token expired")]
    Expired,
    /// `sub` is not this account (20106).
    #[error("access token is for another account")]
    WrongAccount,
    /// No voice grant with an outgoing application (31201-ish: no permission to call out).
    #[error("access token has no outgoing voice grant")]
    NoVoiceGrant,
    /// The granted application is not a configured TwiML App (21218).
    #[error("unknown TwiML application {0}")]
    UnknownApplication(String),
}

// ---------------------------------------------------------------------------------------------
// Internal state

/// Where a call's instructions come from.
#[derive(Debug, Clone)]
enum Doc {
    /// Request a URL (with extra parameters such as `Digits`).
    Url {
        url: String,
        method: String,
        extra: Vec<(String, String)>,
    },
    /// Inline TwiML.
    Twiml(String),
    /// Join a conference (a participant added through REST).
    Join(Box<JoinSpec>),
}

impl Doc {
    fn post(url: String) -> Doc {
        Doc::Url {
            url,
            method: "POST".to_owned(),
            extra: Vec::new(),
        }
    }
}

/// How a call joins a conference.
#[derive(Debug, Clone, Default)]
struct JoinSpec {
    name: String,
    conf_sid: Option<String>,
    label: Option<String>,
    start_on_enter: bool,
    end_on_exit: bool,
    muted: bool,
    beep: String,
    /// `None`: Twilio's default music; `Some("")`: silence.
    wait_url: Option<String>,
    wait_method: String,
    callback: Option<ConfCallback>,
}

impl JoinSpec {
    fn participant(&self, call_sid: &str, status: &str) -> ParticipantInfo {
        ParticipantInfo {
            call_sid: call_sid.to_owned(),
            label: self.label.clone(),
            hold: false,
            muted: self.muted,
            end_on_exit: self.end_on_exit,
            start_on_enter: self.start_on_enter,
            status: status.to_owned(),
            beep: self.beep.clone(),
            date_created: now_rfc2822(),
        }
    }
}

#[derive(Debug, Clone)]
struct StatusCallback {
    url: String,
    method: String,
    events: HashSet<String>,
}

#[derive(Debug, Clone)]
struct ConfCallback {
    url: String,
    method: String,
    events: HashSet<String>,
}

/// A message to a call's task.
#[derive(Debug)]
enum Control {
    /// Hang up; `by_api` for `Status=completed`.
    HangUp { by_api: bool },
    /// `Status=canceled`.
    Cancel,
    /// New instructions (REST `Url`/`Twiml`).
    Redirect(Doc),
    /// Removed from its conference (REST delete or conference end).
    Kicked,
}

struct CallRec {
    info: CallInfo,
    far_end: String,
    ctl: Option<mpsc::UnboundedSender<Control>>,
    status_cb: Option<StatusCallback>,
    seq: u32,
    answered_at: Option<Instant>,
    /// A real-time transcription started by `<Start><Transcription>`.
    transcription: Option<Transcription>,
}

/// A call's real-time transcription (`<Start><Transcription statusCallbackUrl track>`).
#[derive(Debug, Clone)]
struct Transcription {
    sid: String,
    url: String,
    track: String,
    seq: u32,
}

struct ConfRec {
    info: ConferenceInfo,
    callback: Option<ConfCallback>,
    seq: u32,
}

/// A callback ready to be sent.
#[derive(Debug, Clone)]
struct Outgoing {
    kind: CallbackKind,
    lane: String,
    url: String,
    method: String,
    params: Vec<(String, String)>,
}

#[derive(Debug, Default, Clone)]
struct Faults {
    rest_latency: Duration,
    rest: Vec<(Route, RestFault, usize)>,
    duplicate_next: usize,
    drop_next: usize,
    /// Status callback events (`StatusCallbackEvent`) of which the next ones are dropped:
    /// event name, count left.
    drop_events: Vec<(String, usize)>,
    reorder_next: usize,
    callback_delay: Duration,
    twiml_timeout: Option<Duration>,
    /// Requests that hang (a client-side timeout): route, count left, whether the request
    /// is carried out before the answer is held back, and for how long it is held.
    hang: Vec<(Route, usize, bool, Duration)>,
}

struct State {
    cfg: FakeTwilioConfig,
    phones: HashMap<String, PhoneScript>,
    number_status_callbacks: HashMap<String, String>,
    calls: BTreeMap<String, CallRec>,
    call_order: Vec<String>,
    conferences: Vec<ConfRec>,
    errors: Vec<AppError>,
    requests: Vec<RestRequest>,
    callbacks: Vec<CallbackRecord>,
    callbacks_pending: usize,
    faults: Faults,
    outbox: mpsc::UnboundedSender<Outgoing>,
    sid_base: u64,
    sid_counter: u64,
}

struct Shared {
    state: Mutex<State>,
    http: reqwest::Client,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The fake Twilio. Dropping it stops the server (calls in flight stop with it).
pub struct FakeTwilio {
    shared: Arc<Shared>,
    base_url: String,
    handle: ServerHandle,
    rt: tokio::runtime::Handle,
}

impl fmt::Debug for FakeTwilio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeTwilio")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn is_terminal(status: &str) -> bool {
    matches!(
        status,
        "completed" | "busy" | "failed" | "no-answer" | "canceled"
    )
}

fn now_rfc2822() -> String {
    chrono::Utc::now().to_rfc2822()
}

/// `X-Twilio-Signature` of a request: base64(HMAC-SHA1(auth token, URL + sorted name/value
/// pairs)). For GET requests `url` carries the query and `params` is empty.
pub fn twilio_signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).expect("any key length");
    mac.update(url.as_bytes());
    for (k, v) in sorted {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Splits `StatusCallbackEvent`-style values (repeated and/or space separated).
fn event_set<'a>(values: impl Iterator<Item = &'a str>) -> HashSet<String> {
    values
        .flat_map(|v| v.split(|c: char| c.is_whitespace() || c == ','))
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn all_values<'a>(params: &'a [(String, String)], name: &'a str) -> impl Iterator<Item = &'a str> {
    params
        .iter()
        .filter(move |(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// An HTTP method parameter (`StatusCallbackMethod`, ...), upper-cased, or `default`.
fn method_param(params: &[(String, String)], name: &str, default: &str) -> String {
    param(params, name).unwrap_or(default).to_uppercase()
}

fn truthy(v: &str) -> bool {
    v.eq_ignore_ascii_case("true")
}

// ---------------------------------------------------------------------------------------------
// The public handle

impl FakeTwilio {
    /// Starts the fake on `127.0.0.1:0` on its own thread and `actix_rt::System`; returns once
    /// it listens.
    ///
    /// # Panics
    /// If the server cannot bind or its thread cannot start.
    pub fn start(config: FakeTwilioConfig) -> FakeTwilio {
        let (outbox, inbox) = mpsc::unbounded_channel();
        let sid_base = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                cfg: config,
                phones: HashMap::new(),
                number_status_callbacks: HashMap::new(),
                calls: BTreeMap::new(),
                call_order: Vec::new(),
                conferences: Vec::new(),
                errors: Vec::new(),
                requests: Vec::new(),
                callbacks: Vec::new(),
                callbacks_pending: 0,
                faults: Faults::default(),
                outbox,
                sid_base,
                sid_counter: 0,
            }),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("fake Twilio: HTTP client"),
        });
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("fake-twilio".to_owned())
            .spawn(move || {
                let system = actix_rt::System::new();
                system.block_on(async move {
                    tokio::spawn(dispatch_callbacks(inbox, Arc::clone(&thread_shared)));
                    let data = web::Data::from(Arc::clone(&thread_shared));
                    let bound = HttpServer::new(move || {
                        App::new()
                            .app_data(data.clone())
                            .service(web::resource("/test/client/connect").to(test_client_connect))
                            .service(
                                web::resource("/test/client/disconnect").to(test_client_disconnect),
                            )
                            .service(web::resource("/test/inbound").to(test_inbound))
                            .service(web::resource("/test/hangup").to(test_hangup))
                            .service(web::resource("/test/state").to(test_state))
                            .default_service(web::to(rest_entry))
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
                    let rt = tokio::runtime::Handle::current();
                    let _ = ready_tx.send(Ok((addr, running.handle(), rt)));
                    let _ = running.await;
                });
            })
            .expect("fake Twilio: cannot spawn its thread");
        let (addr, handle, rt) = ready_rx
            .recv()
            .expect("fake Twilio: server thread died before listening")
            .unwrap_or_else(|e| panic!("fake Twilio: cannot listen: {e}"));
        FakeTwilio {
            shared,
            base_url: format!("http://{addr}"),
            handle,
            rt,
        }
    }

    /// `http://127.0.0.1:PORT`: what replaces `https://api.twilio.com`.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// The account SID.
    pub fn account_sid(&self) -> String {
        self.shared.lock().cfg.account_sid.clone()
    }

    /// The auth token (for signatures and Basic auth in tests).
    pub fn auth_token(&self) -> String {
        self.shared.lock().cfg.auth_token.clone()
    }

    /// The API key, if configured.
    pub fn api_key(&self) -> Option<ApiKey> {
        self.shared.lock().cfg.api_key.clone()
    }

    /// Adds or replaces an owned number and its voice URL.
    pub fn set_number(&self, number: &str, voice_url: &str) {
        let mut st = self.shared.lock();
        st.cfg
            .numbers
            .insert(number.to_owned(), voice_url.to_owned());
    }

    /// Sets the status callback of an owned number's inbound calls (terminal status only).
    pub fn set_number_status_callback(&self, number: &str, url: &str) {
        let mut st = self.shared.lock();
        st.number_status_callbacks
            .insert(number.to_owned(), url.to_owned());
    }

    /// Adds or replaces a TwiML App.
    pub fn set_app(&self, app_sid: &str, voice_url: &str) {
        let mut st = self.shared.lock();
        st.cfg.apps.insert(app_sid.to_owned(), voice_url.to_owned());
    }

    /// Scripts the far end `number` (a number, or `client:<identity>` for a browser leg).
    /// Unscripted far ends answer at once and press nothing.
    pub fn set_phone(&self, number: &str, script: PhoneScript) {
        self.shared.lock().phones.insert(number.to_owned(), script);
    }

    /// A call arrives from `from` at the owned number `to`: Twilio requests the number's voice
    /// URL and executes the TwiML answer. Returns the new `CallSid`.
    ///
    /// # Panics
    /// If `to` is not an owned number.
    pub fn inbound_call(&self, from: &str, to: &str) -> String {
        let (sid, rx, start) = self
            .shared
            .lock()
            .prepare_inbound_call(from, to)
            .unwrap_or_else(|e| panic!("fake Twilio: {e}"));
        self.rt
            .spawn(run_call(Arc::clone(&self.shared), sid.clone(), rx, start));
        sid
    }

    /// A browser's `device.connect({params})`: checks the Access Token like Twilio, then
    /// requests the granted TwiML App's voice URL with `From=client:<identity>` and `params`,
    /// and executes the answer. Returns the new `CallSid`.
    pub fn client_connect(
        &self,
        access_token: &str,
        params: &[(&str, &str)],
    ) -> Result<String, ClientConnectError> {
        let params: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let (sid, rx, start) = self
            .shared
            .lock()
            .prepare_client_call(access_token, &params)?;
        self.rt
            .spawn(run_call(Arc::clone(&self.shared), sid.clone(), rx, start));
        Ok(sid)
    }

    /// The browser leg `call_sid` hangs up.
    pub fn client_disconnect(&self, call_sid: &str) -> bool {
        self.hang_up(call_sid)
    }

    /// The far end of `call_sid` says `text`: with a real-time transcription running
    /// (`<Start><Transcription>`), Twilio sends a final `transcription-content` callback whose
    /// `TranscriptionData` is `{"transcript": text, "confidence": 0.93}`. False when the call
    /// is not transcribed.
    pub fn speak(&self, call_sid: &str, text: &str) -> bool {
        let mut st = self.shared.lock();
        let track = st
            .calls
            .get(call_sid)
            .and_then(|c| c.transcription.as_ref())
            .map(|t| t.track.clone());
        let Some(track) = track else {
            return false;
        };
        let track = if track == "both_tracks" {
            "inbound_track".to_owned()
        } else {
            track
        };
        let data = serde_json::json!({ "transcript": text, "confidence": 0.93 }).to_string();
        st.transcription_event(
            call_sid,
            "transcription-content",
            &[
                ("LanguageCode", "en-US".to_owned()),
                ("Track", track),
                ("TranscriptionData", data),
                ("Final", "true".to_owned()),
            ],
        )
    }

    /// The far end of `call_sid` hangs up now (a ringing call is declined). False if the call
    /// is unknown or over.
    pub fn hang_up(&self, call_sid: &str) -> bool {
        self.shared
            .lock()
            .control(call_sid, Control::HangUp { by_api: false })
    }

    /// A call.
    pub fn call(&self, call_sid: &str) -> Option<CallInfo> {
        self.shared
            .lock()
            .calls
            .get(call_sid)
            .map(|c| c.info.clone())
    }

    /// Whether `call_sid` has a real-time transcription running (its `<Start><Transcription>`
    /// has been carried out), so that [`FakeTwilio::speak`] on it is transcribed.
    pub fn is_transcribed(&self, call_sid: &str) -> bool {
        self.shared
            .lock()
            .calls
            .get(call_sid)
            .is_some_and(|c| c.transcription.is_some())
    }

    /// Every call, in creation order.
    pub fn calls(&self) -> Vec<CallInfo> {
        let st = self.shared.lock();
        st.call_order
            .iter()
            .filter_map(|sid| st.calls.get(sid).map(|c| c.info.clone()))
            .collect()
    }

    /// What `call_sid` heard so far.
    pub fn heard(&self, call_sid: &str) -> Vec<Heard> {
        self.call(call_sid).map(|c| c.heard).unwrap_or_default()
    }

    /// The most recent conference named `friendly_name` (live or ended).
    pub fn conference(&self, friendly_name: &str) -> Option<ConferenceInfo> {
        let st = self.shared.lock();
        st.conferences
            .iter()
            .rev()
            .find(|c| c.info.friendly_name == friendly_name)
            .map(|c| c.info.clone())
    }

    /// Every conference, in creation order.
    pub fn conferences(&self) -> Vec<ConferenceInfo> {
        let st = self.shared.lock();
        st.conferences.iter().map(|c| c.info.clone()).collect()
    }

    /// Application errors so far (failed TwiML requests, bad TwiML, bad music URLs).
    pub fn errors(&self) -> Vec<AppError> {
        self.shared.lock().errors.clone()
    }

    /// Every REST request answered, in order.
    pub fn requests(&self) -> Vec<RestRequest> {
        self.shared.lock().requests.clone()
    }

    /// Every request the fake made to the application (each attempt), in completion order.
    pub fn callback_log(&self) -> Vec<CallbackRecord> {
        self.shared.lock().callbacks.clone()
    }

    /// Status and conference callbacks queued and not yet answered or given up.
    pub fn callbacks_pending(&self) -> usize {
        self.shared.lock().callbacks_pending
    }

    /// Delay before every REST answer.
    pub fn set_rest_latency(&self, latency: Duration) {
        self.shared.lock().faults.rest_latency = latency;
    }

    /// The next `n` requests on `route` (or on any route with [`Route::Any`]) fail with `fault`.
    pub fn fail_next(&self, route: Route, n: usize, fault: RestFault) {
        self.shared.lock().faults.rest.push((route, fault, n));
    }

    /// REST faults (failures and hangs) still waiting for their requests.
    pub fn rest_faults_pending(&self) -> usize {
        let st = self.shared.lock();
        st.faults.rest.iter().map(|(_, _, n)| n).sum::<usize>()
            + st.faults.hang.iter().map(|(_, n, _, _)| n).sum::<usize>()
    }

    /// The next `n` requests on `route` (or any route with [`Route::Any`]) hang for `hold`
    /// before an answer (a client with a shorter timeout sees a timeout): with
    /// `carried_out`, the request takes effect at once and only its answer is late (the
    /// ambiguous case: a created call exists although its creator saw no SID); without, it
    /// takes no effect and the late answer is a 504.
    pub fn hang_next(&self, route: Route, n: usize, carried_out: bool, hold: Duration) {
        self.shared
            .lock()
            .faults
            .hang
            .push((route, n, carried_out, hold));
    }

    /// The next `n` status/conference callbacks are each delivered twice.
    pub fn duplicate_next_callbacks(&self, n: usize) {
        self.shared.lock().faults.duplicate_next = n;
    }

    /// The next `n` status/conference callbacks are dropped (recorded with `dropped`).
    pub fn drop_next_callbacks(&self, n: usize) {
        self.shared.lock().faults.drop_next = n;
    }

    /// The next `n` conference callbacks of `event` (`StatusCallbackEvent`, e.g.
    /// `conference-start`) are dropped, as Twilio may lose any callback.
    pub fn drop_next_events(&self, event: &str, n: usize) {
        self.shared
            .lock()
            .faults
            .drop_events
            .push((event.to_owned(), n));
    }

    /// The next `n` status/conference callbacks (any call or conference) are held back and
    /// delivered together in reverse order (after at most 2 s if fewer come).
    pub fn reorder_next_callbacks(&self, n: usize) {
        self.shared.lock().faults.reorder_next = n;
    }

    /// Delay before each status/conference callback delivery.
    pub fn set_callback_delay(&self, delay: Duration) {
        self.shared.lock().faults.callback_delay = delay;
    }

    /// How long TwiML requests may take before the call hears an application error (Twilio:
    /// 15 s; `None` restores it).
    pub fn set_twiml_timeout(&self, timeout: Option<Duration>) {
        self.shared.lock().faults.twiml_timeout = timeout;
    }

    /// Polls `probe` every 10 ms until it returns `Some`, and returns that.
    ///
    /// # Panics
    /// After `timeout`, naming `what` and listing the calls, conferences and errors.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut probe: impl FnMut(&FakeTwilio) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = probe(self) {
                return found;
            }
            if Instant::now() >= deadline {
                panic!(
                    "fake Twilio: timed out after {timeout:?} waiting for {what}\ncalls: {:#?}\nconferences: {:#?}\nerrors: {:#?}",
                    self.calls(),
                    self.conferences(),
                    self.errors()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until `call_sid` has `status`; returns the call.
    pub async fn wait_for_call_status(
        &self,
        call_sid: &str,
        status: &str,
        timeout: Duration,
    ) -> CallInfo {
        let what = format!("call {call_sid} to be {status}");
        self.wait_for(&what, timeout, |f| {
            f.call(call_sid).filter(|c| c.status == status)
        })
        .await
    }

    /// Waits until the callbacks in `callback_log` satisfy `probe`; returns the log.
    pub async fn wait_for_callbacks(
        &self,
        what: &str,
        timeout: Duration,
        mut probe: impl FnMut(&[CallbackRecord]) -> bool,
    ) -> Vec<CallbackRecord> {
        self.wait_for(what, timeout, |f| {
            let log = f.callback_log();
            probe(&log).then_some(log)
        })
        .await
    }

    /// Waits until no status/conference callback is pending.
    pub async fn wait_for_callbacks_idle(&self, timeout: Duration) {
        self.wait_for("callbacks to be delivered", timeout, |f| {
            (f.callbacks_pending() == 0).then_some(())
        })
        .await
    }
}

impl Drop for FakeTwilio {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

// ---------------------------------------------------------------------------------------------
// Calls, conferences and the events they emit

struct JoinOutcome {
    waiting: bool,
    wait_url: Option<String>,
    wait_method: String,
}

impl State {
    fn new_sid(&mut self, prefix: &str) -> String {
        self.sid_counter += 1;
        format!("{prefix}{:016x}{:016x}", self.sid_base, self.sid_counter)
    }

    fn scaled(&self, secs: f64) -> Duration {
        Duration::from_secs_f64((secs * self.cfg.time_scale).max(0.0))
    }

    #[allow(clippy::too_many_arguments)]
    fn new_call(
        &mut self,
        from: &str,
        to: &str,
        far_end: &str,
        direction: &str,
        status: &str,
        status_cb: Option<StatusCallback>,
        extra_params: Vec<(String, String)>,
    ) -> (String, mpsc::UnboundedReceiver<Control>) {
        let sid = self.new_sid("CA");
        let (tx, rx) = mpsc::unbounded_channel();
        let info = CallInfo {
            sid: sid.clone(),
            from: from.to_owned(),
            to: to.to_owned(),
            direction: direction.to_owned(),
            status: status.to_owned(),
            conference: None,
            heard: Vec::new(),
            date_created: now_rfc2822(),
            start_time: None,
            end_time: None,
            duration: None,
            sip_response_code: None,
            extra_params,
        };
        self.calls.insert(
            sid.clone(),
            CallRec {
                info,
                far_end: far_end.to_owned(),
                ctl: Some(tx),
                status_cb,
                seq: 0,
                answered_at: None,
                transcription: None,
            },
        );
        self.call_order.push(sid.clone());
        (sid, rx)
    }

    /// Creates an inbound call from `from` to the owned number `to` (ringing), to be run on
    /// the number's voice URL; `Err` names a number the account does not own.
    fn prepare_inbound_call(&mut self, from: &str, to: &str) -> Result<PreparedCall, String> {
        let url = self
            .cfg
            .numbers
            .get(to)
            .cloned()
            .ok_or_else(|| format!("{to} is not an owned number"))?;
        let status_cb = self
            .number_status_callbacks
            .get(to)
            .map(|url| StatusCallback {
                url: url.clone(),
                method: "POST".to_owned(),
                events: HashSet::new(),
            });
        let (sid, rx) = self.new_call(from, to, from, "inbound", "ringing", status_cb, Vec::new());
        Ok((sid, rx, Start::Inbound(Doc::post(url))))
    }

    /// Checks a Voice SDK Access Token like Twilio and creates the client leg (`From =
    /// client:<identity>`, the custom `params` and `ApplicationSid` as voice parameters), to
    /// be run on the granted TwiML App's voice URL.
    fn prepare_client_call(
        &mut self,
        access_token: &str,
        params: &[(String, String)],
    ) -> Result<PreparedCall, ClientConnectError> {
        let (identity, app_sid) = verify_access_token(&self.cfg, access_token)?;
        let url = self
            .cfg
            .apps
            .get(&app_sid)
            .cloned()
            .ok_or_else(|| ClientConnectError::UnknownApplication(app_sid.clone()))?;
        let from = format!("client:{identity}");
        let to = param(params, "To").unwrap_or_default().to_owned();
        let mut extra = vec![("ApplicationSid".to_owned(), app_sid)];
        extra.extend(params.iter().filter(|(k, _)| k != "To").cloned());
        let (sid, rx) = self.new_call(&from, &to, &from, "inbound", "ringing", None, extra);
        Ok((sid, rx, Start::Inbound(Doc::post(url))))
    }

    fn control(&self, sid: &str, msg: Control) -> bool {
        self.calls
            .get(sid)
            .and_then(|c| c.ctl.as_ref())
            .is_some_and(|tx| tx.send(msg).is_ok())
    }

    fn hear(&mut self, sid: &str, heard: Heard) {
        if let Some(c) = self.calls.get_mut(sid) {
            c.info.heard.push(heard);
        }
    }

    fn error(&mut self, sid: &str, url: Option<&str>, message: String) {
        self.errors.push(AppError {
            call_sid: sid.to_owned(),
            url: url.map(str::to_owned),
            message,
        });
    }

    /// The parameters of every voice request about a call.
    fn call_params(&self, sid: &str) -> Vec<(String, String)> {
        let Some(c) = self.calls.get(sid) else {
            return Vec::new();
        };
        let i = &c.info;
        let mut p = vec![
            ("AccountSid".to_owned(), self.cfg.account_sid.clone()),
            ("ApiVersion".to_owned(), API_VERSION.to_owned()),
            ("CallSid".to_owned(), i.sid.clone()),
            ("CallStatus".to_owned(), i.status.clone()),
            ("Called".to_owned(), i.to.clone()),
            ("Caller".to_owned(), i.from.clone()),
            ("Direction".to_owned(), i.direction.clone()),
            ("From".to_owned(), i.from.clone()),
            ("To".to_owned(), i.to.clone()),
        ];
        p.extend(i.extra_params.iter().cloned());
        p
    }

    fn set_status(&mut self, sid: &str, status: &str) {
        if let Some(c) = self.calls.get_mut(sid) {
            c.info.status = status.to_owned();
            if status == "in-progress" && c.answered_at.is_none() {
                c.answered_at = Some(Instant::now());
                c.info.start_time = Some(now_rfc2822());
            }
        }
        if status == "ringing" {
            // A participant added through REST shows its call's progress.
            for conf in &mut self.conferences {
                for p in &mut conf.info.participants {
                    if p.call_sid == sid && p.status == "queued" {
                        p.status = "ringing".to_owned();
                    }
                }
            }
        }
    }

    /// Sends the call status callback for the call's current status, if requested (terminal
    /// statuses always are).
    fn call_event(&mut self, sid: &str) {
        let params = self.call_params(sid);
        let Some(c) = self.calls.get_mut(sid) else {
            return;
        };
        let Some(cb) = c.status_cb.clone() else {
            return;
        };
        let status = c.info.status.clone();
        let wanted = match status.as_str() {
            "initiated" => cb.events.contains("initiated"),
            "ringing" => cb.events.contains("ringing"),
            "in-progress" => cb.events.contains("answered"),
            s => is_terminal(s),
        };
        if !wanted {
            return;
        }
        let mut params = params;
        params.push(("SequenceNumber".to_owned(), c.seq.to_string()));
        params.push(("Timestamp".to_owned(), now_rfc2822()));
        params.push((
            "CallbackSource".to_owned(),
            "call-progress-events".to_owned(),
        ));
        c.seq += 1;
        if is_terminal(&status) {
            let duration = c.info.duration.unwrap_or(0).to_string();
            params.push(("CallDuration".to_owned(), duration.clone()));
            params.push(("Duration".to_owned(), duration));
            if let Some(code) = c.info.sip_response_code {
                params.push(("SipResponseCode".to_owned(), code.to_string()));
            }
        }
        let out = Outgoing {
            kind: CallbackKind::CallStatus,
            lane: sid.to_owned(),
            url: cb.url,
            method: cb.method,
            params,
        };
        self.enqueue(out);
    }

    /// Starts a call's transcription and sends `transcription-started`.
    fn start_transcription(&mut self, call_sid: &str, url: String, track: String) {
        let sid = self.new_sid("GT");
        let Some(c) = self.calls.get_mut(call_sid) else {
            return;
        };
        c.transcription = Some(Transcription {
            sid,
            url,
            track,
            seq: 0,
        });
        self.transcription_event(call_sid, "transcription-started", &[]);
    }

    /// Sends a signed real-time transcription callback of `call_sid`, if it is transcribed.
    fn transcription_event(
        &mut self,
        call_sid: &str,
        event: &str,
        extra: &[(&str, String)],
    ) -> bool {
        let account = self.cfg.account_sid.clone();
        let Some(c) = self.calls.get_mut(call_sid) else {
            return false;
        };
        let Some(t) = c.transcription.as_mut() else {
            return false;
        };
        t.seq += 1;
        let mut params = vec![
            ("AccountSid".to_owned(), account),
            ("CallSid".to_owned(), call_sid.to_owned()),
            ("TranscriptionSid".to_owned(), t.sid.clone()),
            ("TranscriptionEvent".to_owned(), event.to_owned()),
            ("SequenceId".to_owned(), t.seq.to_string()),
            ("Timestamp".to_owned(), now_rfc2822()),
            ("ProviderName".to_owned(), "Google".to_owned()),
        ];
        params.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        let out = Outgoing {
            kind: CallbackKind::Transcription,
            lane: call_sid.to_owned(),
            url: t.url.clone(),
            method: "POST".to_owned(),
            params,
        };
        self.enqueue(out);
        true
    }

    fn enqueue(&mut self, out: Outgoing) {
        if self.outbox.send(out).is_ok() {
            self.callbacks_pending += 1;
        }
    }

    fn conf_index(&self, sid_or_name: &str) -> Option<usize> {
        self.conferences
            .iter()
            .rposition(|c| c.info.sid == sid_or_name)
            .or_else(|| {
                self.conferences.iter().rposition(|c| {
                    c.info.friendly_name == sid_or_name && c.info.status != "completed"
                })
            })
    }

    fn live_conf_by_name_or_create(&mut self, name: &str) -> usize {
        if let Some(i) = self
            .conferences
            .iter()
            .rposition(|c| c.info.friendly_name == name && c.info.status != "completed")
        {
            return i;
        }
        let sid = self.new_sid("CF");
        self.conferences.push(ConfRec {
            info: ConferenceInfo {
                sid,
                friendly_name: name.to_owned(),
                status: "init".to_owned(),
                participants: Vec::new(),
                reason_ended: None,
                call_sid_ending: None,
                date_created: now_rfc2822(),
            },
            callback: None,
            seq: 0,
        });
        self.conferences.len() - 1
    }

    /// Sends a conference callback if the conference asked for `event`.
    fn conf_event(
        &mut self,
        idx: usize,
        event: &str,
        who: Option<&ParticipantInfo>,
        extra: &[(&str, &str)],
    ) {
        let account = self.cfg.account_sid.clone();
        let conf = &mut self.conferences[idx];
        let Some(cb) = conf.callback.clone() else {
            return;
        };
        let word = match event {
            "conference-start" => "start",
            "conference-end" => "end",
            "participant-join" => "join",
            "participant-leave" => "leave",
            "participant-mute" | "participant-unmute" => "mute",
            "participant-hold" | "participant-unhold" => "hold",
            "participant-modify" => "modify",
            _ => "announcement",
        };
        if !cb.events.contains(word) {
            return;
        }
        conf.seq += 1;
        let mut params = vec![
            ("AccountSid".to_owned(), account),
            ("ConferenceSid".to_owned(), conf.info.sid.clone()),
            ("FriendlyName".to_owned(), conf.info.friendly_name.clone()),
            ("StatusCallbackEvent".to_owned(), event.to_owned()),
            ("SequenceNumber".to_owned(), conf.seq.to_string()),
            ("Timestamp".to_owned(), now_rfc2822()),
        ];
        if let Some(p) = who {
            params.extend([
                ("CallSid".to_owned(), p.call_sid.clone()),
                ("Hold".to_owned(), p.hold.to_string()),
                ("Muted".to_owned(), p.muted.to_string()),
                ("Coaching".to_owned(), "false".to_owned()),
                ("EndConferenceOnExit".to_owned(), p.end_on_exit.to_string()),
                (
                    "StartConferenceOnEnter".to_owned(),
                    p.start_on_enter.to_string(),
                ),
            ]);
            if let Some(label) = &p.label {
                params.push(("ParticipantLabel".to_owned(), label.clone()));
            }
        }
        params.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let out = Outgoing {
            kind: CallbackKind::Conference,
            lane: conf.info.sid.clone(),
            url: cb.url,
            method: cb.method,
            params,
        };
        self.enqueue(out);
    }

    /// Adds a participant that REST is still dialling (`queued`).
    fn add_pending(&mut self, idx: usize, sid: &str, spec: &JoinSpec) {
        let participant = spec.participant(sid, "queued");
        self.conferences[idx].info.participants.push(participant);
    }

    /// Removes a REST-added participant whose call never connected.
    fn drop_pending(&mut self, sid: &str) {
        for conf in &mut self.conferences {
            conf.info
                .participants
                .retain(|p| p.call_sid != sid || p.status == "connected");
        }
    }

    fn join(&mut self, sid: &str, spec: &JoinSpec) -> Result<JoinOutcome, String> {
        let idx = match &spec.conf_sid {
            Some(conf_sid) => match self.conf_index(conf_sid) {
                Some(i) if self.conferences[i].info.status != "completed" => i,
                _ => return Err(format!("conference {conf_sid} is over")),
            },
            None => self.live_conf_by_name_or_create(&spec.name),
        };
        let conf = &mut self.conferences[idx];
        if conf.callback.is_none() {
            conf.callback = spec.callback.clone();
        }
        let participant = spec.participant(sid, "connected");
        match conf
            .info
            .participants
            .iter_mut()
            .find(|p| p.call_sid == sid)
        {
            Some(p) => p.status = "connected".to_owned(),
            None => conf.info.participants.push(participant.clone()),
        }
        let name = conf.info.friendly_name.clone();
        let others: Vec<String> = conf
            .info
            .participants
            .iter()
            .filter(|p| p.call_sid != sid && p.status == "connected")
            .map(|p| p.call_sid.clone())
            .collect();
        if spec.beep != "false" && spec.beep != "onExit" {
            for other in &others {
                self.hear(other, Heard::Beep);
            }
        }
        if let Some(c) = self.calls.get_mut(sid) {
            c.info.conference = Some(name);
        }
        let snapshot = self.conferences[idx]
            .info
            .participant(sid)
            .cloned()
            .unwrap_or(participant);
        self.conf_event(idx, "participant-join", Some(&snapshot), &[]);
        let conf = &mut self.conferences[idx];
        let connected: Vec<&ParticipantInfo> = conf
            .info
            .participants
            .iter()
            .filter(|p| p.status == "connected")
            .collect();
        if conf.info.status == "init"
            && connected.len() >= 2
            && connected.iter().any(|p| p.start_on_enter)
        {
            conf.info.status = "in-progress".to_owned();
            self.conf_event(idx, "conference-start", None, &[]);
        }
        let waiting = self.conferences[idx].info.status == "init";
        Ok(JoinOutcome {
            waiting,
            wait_url: spec.wait_url.clone(),
            wait_method: spec.wait_method.clone(),
        })
    }

    /// Takes `sid` out of its conference (if any) for `reason`, ending the conference when that
    /// is what its rules say. Does not notify the leaving call itself.
    fn leave(&mut self, sid: &str, reason: &str) {
        let Some(idx) = self.conferences.iter().position(|c| {
            c.info.status != "completed"
                && c.info
                    .participants
                    .iter()
                    .any(|p| p.call_sid == sid && p.status == "connected")
        }) else {
            return;
        };
        let conf = &mut self.conferences[idx];
        let pos = conf
            .info
            .participants
            .iter()
            .position(|p| p.call_sid == sid)
            .expect("found above");
        let gone = conf.info.participants.remove(pos);
        if let Some(c) = self.calls.get_mut(sid) {
            c.info.conference = None;
        }
        self.conf_event(
            idx,
            "participant-leave",
            Some(&gone),
            &[("ReasonParticipantLeft", reason)],
        );
        let kicked = reason == "participant_removed_via_api";
        let connected = self.conferences[idx]
            .info
            .participants
            .iter()
            .filter(|p| p.status == "connected")
            .count();
        if gone.end_on_exit {
            let why = if kicked {
                "participant-with-end-conference-on-exit-kicked"
            } else {
                "participant-with-end-conference-on-exit-left"
            };
            self.end_conference(idx, why, Some(sid));
        } else if connected == 0 {
            let why = if kicked {
                "last-participant-kicked"
            } else {
                "last-participant-left"
            };
            self.end_conference(idx, why, Some(sid));
        }
    }

    /// Ends a conference: everyone still in it leaves (their `<Dial>` returns).
    fn end_conference(&mut self, idx: usize, reason: &str, by: Option<&str>) {
        if self.conferences[idx].info.status == "completed" {
            return;
        }
        let leave_reason = if reason == "conference-ended-via-api" {
            "conference_ended_via_api"
        } else {
            "conference_ended"
        };
        let remaining = std::mem::take(&mut self.conferences[idx].info.participants);
        for p in &remaining {
            if p.status != "connected" {
                self.control(&p.call_sid, Control::Cancel);
                continue;
            }
            if let Some(c) = self.calls.get_mut(&p.call_sid) {
                c.info.conference = None;
            }
            self.conf_event(
                idx,
                "participant-leave",
                Some(p),
                &[("ReasonParticipantLeft", leave_reason)],
            );
            self.control(&p.call_sid, Control::Kicked);
        }
        let conf = &mut self.conferences[idx];
        conf.info.status = "completed".to_owned();
        conf.info.reason_ended = Some(reason.to_owned());
        conf.info.call_sid_ending = by.map(str::to_owned);
        let mut extra = vec![("ReasonConferenceEnded", reason)];
        if let Some(by) = by {
            extra.push(("CallSidEndingConference", by));
        }
        self.conf_event(idx, "conference-end", None, &extra);
    }
}

// ---------------------------------------------------------------------------------------------
// Requests to the application: signing, sending, recording

/// Sends one signed request to the application; returns the status and body.
async fn send_signed(
    shared: &Shared,
    url: &str,
    method: &str,
    params: &[(String, String)],
    timeout: Duration,
) -> (String, String, Result<(u16, String, String), String>) {
    let token = shared.lock().cfg.auth_token.clone();
    let (full_url, body_params): (String, &[(String, String)]) = if method == "GET" {
        let query = serde_urlencoded::to_string(params).unwrap_or_default();
        let sep = if url.contains('?') { '&' } else { '?' };
        (format!("{url}{sep}{query}"), &[])
    } else {
        (url.to_owned(), params)
    };
    let signature = twilio_signature(&token, &full_url, body_params);
    let request = if method == "GET" {
        shared.http.get(&full_url)
    } else {
        shared
            .http
            .post(&full_url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(body_params).unwrap_or_default())
    };
    let result = request
        .header("X-Twilio-Signature", &signature)
        .header("User-Agent", "TwilioProxy/1.1")
        .timeout(timeout)
        .send()
        .await;
    let answer = match result {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let content_type = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            match resp.text().await {
                Ok(body) => Ok((status, content_type, body)),
                Err(e) => Err(e.to_string()),
            }
        }
        Err(e) => Err(e.to_string()),
    };
    (full_url, signature, answer)
}

/// Fans status/conference callbacks out to one lane per call / conference, applying the
/// callback fault switches.
async fn dispatch_callbacks(mut inbox: mpsc::UnboundedReceiver<Outgoing>, shared: Arc<Shared>) {
    let mut lanes: HashMap<String, mpsc::UnboundedSender<Outgoing>> = HashMap::new();
    let mut batch: Vec<Outgoing> = Vec::new();
    let mut batch_deadline = tokio::time::Instant::now();
    loop {
        let out = if batch.is_empty() {
            inbox.recv().await
        } else {
            match tokio::time::timeout_at(batch_deadline, inbox.recv()).await {
                Ok(out) => out,
                Err(_) => {
                    flush_reversed(&shared, std::mem::take(&mut batch));
                    continue;
                }
            }
        };
        let Some(out) = out else { return };
        let fate = {
            let mut st = shared.lock();
            let f = &mut st.faults;
            let event = out
                .params
                .iter()
                .find(|(k, _)| k == "StatusCallbackEvent")
                .map(|(_, v)| v.as_str());
            let drop_event = f
                .drop_events
                .iter()
                .position(|(e, n)| *n > 0 && Some(e.as_str()) == event);
            if let Some(i) = drop_event {
                f.drop_events[i].1 -= 1;
                Fate::Drop
            } else if f.drop_next > 0 {
                f.drop_next -= 1;
                Fate::Drop
            } else if f.reorder_next > 0 {
                f.reorder_next -= 1;
                Fate::Batch {
                    last: f.reorder_next == 0,
                }
            } else if f.duplicate_next > 0 {
                f.duplicate_next -= 1;
                Fate::Twice
            } else {
                Fate::Once
            }
        };
        match fate {
            Fate::Drop => {
                let mut st = shared.lock();
                st.callbacks.push(CallbackRecord {
                    kind: out.kind,
                    url: out.url,
                    method: out.method,
                    params: out.params,
                    signature: String::new(),
                    attempt: 0,
                    status: None,
                    error: None,
                    dropped: true,
                });
                st.callbacks_pending = st.callbacks_pending.saturating_sub(1);
            }
            Fate::Batch { last } => {
                if batch.is_empty() {
                    batch_deadline = tokio::time::Instant::now() + REORDER_FLUSH;
                }
                batch.push(out);
                if last {
                    flush_reversed(&shared, std::mem::take(&mut batch));
                }
            }
            Fate::Twice => {
                shared.lock().callbacks_pending += 1;
                send_to_lane(&mut lanes, &shared, out.clone());
                send_to_lane(&mut lanes, &shared, out);
            }
            Fate::Once => send_to_lane(&mut lanes, &shared, out),
        }
    }
}

/// What the callback fault switches do with one callback.
enum Fate {
    Drop,
    /// Held back for a reversed batch; `last` completes the batch.
    Batch {
        last: bool,
    },
    Twice,
    Once,
}

fn flush_reversed(shared: &Arc<Shared>, batch: Vec<Outgoing>) {
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        for out in batch.into_iter().rev() {
            deliver(&shared, out).await;
        }
    });
}

fn send_to_lane(
    lanes: &mut HashMap<String, mpsc::UnboundedSender<Outgoing>>,
    shared: &Arc<Shared>,
    out: Outgoing,
) {
    let lane = lanes.entry(out.lane.clone()).or_insert_with(|| {
        let (tx, mut rx) = mpsc::unbounded_channel::<Outgoing>();
        let shared = Arc::clone(shared);
        tokio::spawn(async move {
            while let Some(out) = rx.recv().await {
                deliver(&shared, out).await;
            }
        });
        tx
    });
    if lane.send(out).is_err() {
        let mut st = shared.lock();
        st.callbacks_pending = st.callbacks_pending.saturating_sub(1);
    }
}

/// Delivers one callback, retrying a failed attempt (transport error or non-2xx) with backoff.
async fn deliver(shared: &Shared, out: Outgoing) {
    let delay = shared.lock().faults.callback_delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    for attempt in 1..=CALLBACK_ATTEMPTS {
        let (url, signature, answer) = send_signed(
            shared,
            &out.url,
            &out.method,
            &out.params,
            Duration::from_secs(15),
        )
        .await;
        let (status, error) = match &answer {
            Ok((status, _, _)) => (Some(*status), None),
            Err(e) => (None, Some(e.clone())),
        };
        let ok = status.is_some_and(|s| (200..300).contains(&s));
        shared.lock().callbacks.push(CallbackRecord {
            kind: out.kind,
            url,
            method: out.method.clone(),
            params: out.params.clone(),
            signature,
            attempt,
            status,
            error,
            dropped: false,
        });
        if ok {
            break;
        }
        if attempt < CALLBACK_ATTEMPTS {
            tokio::time::sleep(Duration::from_millis(100 << (attempt - 1))).await;
        }
    }
    let mut st = shared.lock();
    st.callbacks_pending = st.callbacks_pending.saturating_sub(1);
}

/// Requests TwiML (or audio) for a call; records the request; `Err` is an application error.
async fn fetch_for_call(
    shared: &Shared,
    sid: &str,
    url: &str,
    method: &str,
    extra: &[(String, String)],
) -> Result<(String, String), String> {
    let (mut params, timeout) = {
        let st = shared.lock();
        let timeout = st.faults.twiml_timeout.unwrap_or(Duration::from_secs(15));
        (st.call_params(sid), timeout)
    };
    params.extend(extra.iter().cloned());
    let (full_url, signature, answer) = send_signed(shared, url, method, &params, timeout).await;
    let (status, error) = match &answer {
        Ok((status, _, _)) => (Some(*status), None),
        Err(e) => (None, Some(e.clone())),
    };
    shared.lock().callbacks.push(CallbackRecord {
        kind: CallbackKind::Twiml,
        url: full_url,
        method: method.to_owned(),
        params,
        signature,
        attempt: 1,
        status,
        error,
        dropped: false,
    });
    match answer {
        Ok((status, content_type, body)) if (200..300).contains(&status) => {
            Ok((content_type, body))
        }
        Ok((status, _, _)) => Err(format!("{method} {url} answered HTTP {status}")),
        Err(e) => Err(format!("{method} {url} failed: {e}")),
    }
}

/// Fetches wait/hold/announcement audio for `sid` and records what it heard.
async fn play_music(
    shared: Arc<Shared>,
    sid: String,
    url: String,
    method: String,
    kind: fn(String) -> Heard,
) {
    if url == DEFAULT_MUSIC_URL {
        // Twilio's own music: nothing of the application's to request.
        shared.lock().hear(&sid, kind(url));
        return;
    }
    let heard = match fetch_for_call(&shared, &sid, &url, &method, &[]).await {
        Ok((content_type, _)) if content_type.starts_with("audio/") => Ok(vec![kind(url.clone())]),
        Ok((_, body)) => parse_twiml(&body).map(|root| {
            root.children
                .iter()
                .filter_map(|verb| match verb.name.as_str() {
                    "Play" => Some(kind(verb.text.trim().to_owned())),
                    "Say" => Some(Heard::Say(verb.text.trim().to_owned())),
                    _ => None,
                })
                .collect()
        }),
        Err(e) => Err(e),
    };
    let mut st = shared.lock();
    match heard {
        Ok(items) => {
            for item in items {
                st.hear(&sid, item);
            }
        }
        Err(e) => st.error(&sid, Some(&url), e),
    }
}

// ---------------------------------------------------------------------------------------------
// TwiML

/// An element of a TwiML document.
#[derive(Debug, Clone, Default)]
struct Node {
    name: String,
    attrs: Vec<(String, String)>,
    children: Vec<Node>,
    text: String,
}

impl Node {
    fn attr(&self, name: &str) -> Option<&str> {
        param(&self.attrs, name)
    }
}

fn element(start: &quick_xml::events::BytesStart<'_>) -> Result<Node, String> {
    let mut node = Node {
        name: String::from_utf8_lossy(start.local_name().as_ref()).into_owned(),
        ..Node::default()
    };
    for attr in start.attributes() {
        let attr = attr.map_err(|e| format!("bad attribute: {e}"))?;
        let value = attr
            .unescape_value()
            .map_err(|e| format!("bad attribute value: {e}"))?;
        node.attrs.push((
            String::from_utf8_lossy(attr.key.local_name().as_ref()).into_owned(),
            value.into_owned(),
        ));
    }
    Ok(node)
}

/// Parses a TwiML document; the root must be `<Response>`.
fn parse_twiml(xml: &str) -> Result<Node, String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("malformed TwiML: {e}"))?;
        match event {
            Event::Start(start) => stack.push(element(&start)?),
            Event::Empty(start) => {
                let node = element(&start)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None if root.is_none() => root = Some(node),
                    None => return Err("malformed TwiML: several root elements".to_owned()),
                }
            }
            Event::End(_) => {
                let node = stack.pop().ok_or("malformed TwiML: unbalanced end tag")?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None if root.is_none() => root = Some(node),
                    None => return Err("malformed TwiML: several root elements".to_owned()),
                }
            }
            Event::Text(text) => {
                let content = text.decode().map_err(|e| format!("malformed TwiML: {e}"))?;
                if let Some(node) = stack.last_mut() {
                    node.text.push_str(&content);
                } else if !content.trim().is_empty() {
                    return Err("malformed TwiML: text outside the root".to_owned());
                }
            }
            Event::CData(data) => {
                if let Some(node) = stack.last_mut() {
                    node.text
                        .push_str(&data.decode().map_err(|e| format!("malformed TwiML: {e}"))?);
                }
            }
            Event::GeneralRef(reference) => {
                let resolved = match reference
                    .resolve_char_ref()
                    .map_err(|e| format!("malformed TwiML: {e}"))?
                {
                    Some(c) => c.to_string(),
                    None => {
                        let name = reference
                            .decode()
                            .map_err(|e| format!("malformed TwiML: {e}"))?;
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .ok_or_else(|| format!("malformed TwiML: unknown entity &{name};"))?
                            .to_owned()
                    }
                };
                if let Some(node) = stack.last_mut() {
                    node.text.push_str(&resolved);
                }
            }
            Event::Eof => break,
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err("malformed TwiML: unclosed element".to_owned());
    }
    match root {
        Some(root) if root.name == "Response" => Ok(root),
        Some(root) => Err(format!("TwiML root is <{}>, not <Response>", root.name)),
        None => Err("empty TwiML document".to_owned()),
    }
}

/// Resolves a TwiML URL against the document's URL.
fn resolve_url(base: Option<&str>, href: &str) -> Result<String, String> {
    if let Ok(url) = reqwest::Url::parse(href) {
        return Ok(url.to_string());
    }
    let base = base.ok_or_else(|| format!("relative URL {href} in inline TwiML"))?;
    reqwest::Url::parse(base)
        .and_then(|b| b.join(href))
        .map(|u| u.to_string())
        .map_err(|e| format!("bad URL {href}: {e}"))
}

fn seconds_attr(node: &Node, name: &str, default: f64) -> f64 {
    node.attr(name)
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------------------------------------
// Running a call

/// How a call task starts.
enum Start {
    /// Placed through REST: ring the far end, then run `doc` if it answers.
    Outbound { doc: Doc, timeout: Duration },
    /// Inbound or client leg: request the voice URL at once.
    Inbound(Doc),
}

/// A call created and ready to run: its SID, its control channel and how it starts.
type PreparedCall = (String, mpsc::UnboundedReceiver<Control>, Start);

/// What a verb leads to.
enum Flow {
    Next,
    Goto(Doc),
    End,
}

/// How a stay in a conference ended.
enum Left {
    Done,
    HungUp,
    Redirect(Doc),
}

struct Runner {
    shared: Arc<Shared>,
    sid: String,
    ctl: mpsc::UnboundedReceiver<Control>,
    base: Option<String>,
}

async fn run_call(
    shared: Arc<Shared>,
    sid: String,
    ctl: mpsc::UnboundedReceiver<Control>,
    start: Start,
) {
    let mut runner = Runner {
        shared,
        sid,
        ctl,
        base: None,
    };
    let doc = match start {
        Start::Outbound { doc, timeout } => runner.ring(doc, timeout).await,
        Start::Inbound(doc) => {
            let hang_up_after = runner.script().and_then(|s| match s.answer {
                PhoneAnswer::HangUpAfter(d) => Some(d),
                _ => None,
            });
            if let Some(d) = hang_up_after {
                runner.schedule_hang_up(d);
            }
            Some(doc)
        }
    };
    if let Some(doc) = doc {
        runner.execute(doc).await;
    }
    runner.finish(None, None);
}

impl Runner {
    fn script(&self) -> Option<PhoneScript> {
        let st = self.shared.lock();
        let far_end = st.calls.get(&self.sid)?.far_end.clone();
        st.phones.get(&far_end).cloned()
    }

    fn schedule_hang_up(&self, after: Duration) {
        let tx = self
            .shared
            .lock()
            .calls
            .get(&self.sid)
            .and_then(|c| c.ctl.clone());
        if let Some(tx) = tx {
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                let _ = tx.send(Control::HangUp { by_api: false });
            });
        }
    }

    /// The next control message before `deadline`, if any.
    async fn recv_until(&mut self, deadline: Instant) -> Option<Control> {
        match tokio::time::timeout_at(deadline.into(), self.ctl.recv()).await {
            Ok(Some(msg)) => Some(msg),
            Ok(None) => {
                tokio::time::sleep_until(deadline.into()).await;
                None
            }
            Err(_) => None,
        }
    }

    /// Waits `d`, unless the call is hung up or redirected meanwhile.
    async fn pause(&mut self, d: Duration) -> Result<(), Flow> {
        let deadline = Instant::now() + d;
        loop {
            match self.recv_until(deadline).await {
                None => return Ok(()),
                Some(Control::HangUp { .. }) => return Err(Flow::End),
                Some(Control::Redirect(doc)) => return Err(Flow::Goto(doc)),
                Some(Control::Cancel | Control::Kicked) => {}
            }
        }
    }

    /// Ends the call: leaves its conference, sets the final status and sends the callback.
    fn finish(&mut self, status: Option<&str>, sip: Option<u16>) {
        let mut st = self.shared.lock();
        st.leave(&self.sid, "participant_hung_up");
        st.drop_pending(&self.sid);
        let Some(c) = st.calls.get_mut(&self.sid) else {
            return;
        };
        if c.ctl.take().is_none() {
            return; // already finished
        }
        let final_status = status.unwrap_or(if is_terminal(&c.info.status) {
            c.info.status.as_str()
        } else {
            "completed"
        });
        c.info.status = final_status.to_owned();
        c.info.sip_response_code = sip;
        c.info.end_time = Some(now_rfc2822());
        c.info.duration = Some(c.answered_at.map(|t| t.elapsed().as_secs()).unwrap_or(0));
        st.call_event(&self.sid);
    }

    /// Rings the far end of an outbound call; the document to run if it answers.
    async fn ring(&mut self, mut doc: Doc, timeout: Duration) -> Option<Doc> {
        {
            let mut st = self.shared.lock();
            st.set_status(&self.sid, "initiated");
            st.call_event(&self.sid);
            st.set_status(&self.sid, "ringing");
            st.call_event(&self.sid);
        }
        let answer = self
            .script()
            .map(|s| s.answer)
            .unwrap_or(PhoneAnswer::Answer {
                after: Duration::ZERO,
            });
        let (wait, outcome): (Duration, Result<Option<Duration>, (&str, u16)>) = match answer {
            PhoneAnswer::Busy => (Duration::ZERO, Err(("busy", 486))),
            PhoneAnswer::Fail => (Duration::ZERO, Err(("failed", 404))),
            PhoneAnswer::NoAnswer => (timeout, Err(("no-answer", 487))),
            PhoneAnswer::Answer { after } if after < timeout => (after, Ok(None)),
            PhoneAnswer::Answer { .. } => (timeout, Err(("no-answer", 487))),
            PhoneAnswer::HangUpAfter(d) => (Duration::ZERO, Ok(Some(d))),
        };
        let deadline = Instant::now() + wait;
        loop {
            match self.recv_until(deadline).await {
                None => break,
                Some(Control::Cancel) | Some(Control::HangUp { by_api: true }) => {
                    self.finish(Some("canceled"), Some(487));
                    return None;
                }
                Some(Control::HangUp { by_api: false }) => {
                    self.finish(Some("busy"), Some(486));
                    return None;
                }
                Some(Control::Redirect(new_doc)) => doc = new_doc,
                Some(Control::Kicked) => {}
            }
        }
        match outcome {
            Err((status, sip)) => {
                self.finish(Some(status), Some(sip));
                None
            }
            Ok(hang_up_after) => {
                {
                    let mut st = self.shared.lock();
                    st.set_status(&self.sid, "in-progress");
                    st.call_event(&self.sid);
                }
                if let Some(d) = hang_up_after {
                    self.schedule_hang_up(d);
                }
                Some(doc)
            }
        }
    }

    fn app_error(&mut self, url: Option<&str>, message: String) {
        let mut st = self.shared.lock();
        st.error(&self.sid, url, message);
        st.hear(&self.sid, Heard::ApplicationError);
    }

    /// Runs documents until the call ends.
    async fn execute(&mut self, mut doc: Doc) {
        loop {
            let verbs = match doc {
                Doc::Join(spec) => match self.in_conference(&spec).await {
                    Left::Redirect(next) => {
                        doc = next;
                        continue;
                    }
                    Left::Done | Left::HungUp => return,
                },
                Doc::Twiml(xml) => {
                    self.base = None;
                    match parse_twiml(&xml) {
                        Ok(root) => root.children,
                        Err(e) => return self.app_error(None, e),
                    }
                }
                Doc::Url { url, method, extra } => {
                    match fetch_for_call(&self.shared, &self.sid, &url, &method, &extra).await {
                        Ok((_, body)) => match parse_twiml(&body) {
                            Ok(root) => {
                                self.base = Some(url);
                                root.children
                            }
                            Err(e) => return self.app_error(Some(&url), e),
                        },
                        Err(e) => return self.app_error(Some(&url), e),
                    }
                }
            };
            {
                let mut st = self.shared.lock();
                let ringing = st
                    .calls
                    .get(&self.sid)
                    .is_some_and(|c| c.info.status == "ringing");
                let rejecting = verbs.first().is_some_and(|v| v.name == "Reject");
                if ringing && !rejecting {
                    st.set_status(&self.sid, "in-progress");
                    st.call_event(&self.sid);
                }
            }
            let mut next = None;
            for verb in &verbs {
                // A hang-up or redirect that arrived during an instant verb.
                match self.ctl.try_recv() {
                    Ok(Control::HangUp { .. }) => return,
                    Ok(Control::Redirect(d)) => {
                        next = Some(d);
                        break;
                    }
                    _ => {}
                }
                match self.verb(verb).await {
                    Flow::Next => {}
                    Flow::Goto(d) => {
                        next = Some(d);
                        break;
                    }
                    Flow::End => return,
                }
            }
            match next {
                Some(d) => doc = d,
                None => return,
            }
        }
    }

    fn text_heard(&self, verb: &Node) -> Option<Heard> {
        match verb.name.as_str() {
            "Say" => Some(Heard::Say(verb.text.trim().to_owned())),
            "Play" => Some(Heard::Play(verb.text.trim().to_owned())),
            _ => None,
        }
    }

    async fn verb(&mut self, verb: &Node) -> Flow {
        let scale = self.shared.lock().cfg.time_scale;
        let scaled = |secs: f64| Duration::from_secs_f64((secs * scale).max(0.0));
        match verb.name.as_str() {
            "Say" | "Play" => {
                if let Some(heard) = self.text_heard(verb) {
                    self.shared.lock().hear(&self.sid, heard);
                }
                Flow::Next
            }
            "Pause" => match self.pause(scaled(seconds_attr(verb, "length", 1.0))).await {
                Ok(()) => Flow::Next,
                Err(flow) => flow,
            },
            "Hangup" => Flow::End,
            "Reject" => {
                let mut st = self.shared.lock();
                if let Some(c) = st.calls.get_mut(&self.sid) {
                    c.info.status = "busy".to_owned();
                }
                Flow::End
            }
            "Start" => {
                for noun in &verb.children {
                    if noun.name != "Transcription" {
                        self.app_error(None, format!("unsupported <Start> noun <{}>", noun.name));
                        return Flow::End;
                    }
                    let Some(href) = noun.attr("statusCallbackUrl") else {
                        // Twilio transcribes without telling anyone: nothing to observe.
                        continue;
                    };
                    match resolve_url(self.base.as_deref(), href) {
                        Ok(url) => {
                            let track = noun.attr("track").unwrap_or("both_tracks").to_owned();
                            self.shared
                                .lock()
                                .start_transcription(&self.sid, url, track);
                        }
                        Err(e) => {
                            self.app_error(None, e);
                            return Flow::End;
                        }
                    }
                }
                Flow::Next
            }
            "Redirect" => match resolve_url(self.base.as_deref(), verb.text.trim()) {
                Ok(url) => Flow::Goto(Doc::Url {
                    url,
                    method: method_param(&verb.attrs, "method", "POST"),
                    extra: Vec::new(),
                }),
                Err(e) => {
                    self.app_error(None, e);
                    Flow::End
                }
            },
            "Gather" => {
                self.gather(verb, scaled(seconds_attr(verb, "timeout", 5.0)))
                    .await
            }
            "Dial" => self.dial(verb).await,
            other => {
                self.app_error(
                    self.base.clone().as_deref(),
                    format!("unsupported TwiML verb <{other}>"),
                );
                Flow::End
            }
        }
    }

    async fn gather(&mut self, verb: &Node, timeout: Duration) -> Flow {
        for child in &verb.children {
            if let Some(heard) = self.text_heard(child) {
                self.shared.lock().hear(&self.sid, heard);
            } else if child.name == "Pause" {
                let scale = self.shared.lock().cfg.time_scale;
                let d = Duration::from_secs_f64(seconds_attr(child, "length", 1.0) * scale);
                if let Err(flow) = self.pause(d).await {
                    return flow;
                }
            }
        }
        // Keys are pressed only where DTMF is listened for (`input` defaults to `dtmf`).
        let dtmf = verb.attr("input").is_none_or(|i| i.contains("dtmf"));
        let pressed = if !dtmf {
            None
        } else {
            let mut st = self.shared.lock();
            let far_end = st
                .calls
                .get(&self.sid)
                .map(|c| c.far_end.clone())
                .unwrap_or_default();
            st.phones
                .get_mut(&far_end)
                .and_then(|s| s.digits.pop_front())
                .flatten()
        };
        let action = match verb.attr("action") {
            Some(href) => resolve_url(self.base.as_deref(), href).map(Some),
            None => Ok(self.base.clone()),
        };
        let action = match action {
            Ok(action) => action,
            Err(e) => {
                self.app_error(None, e);
                return Flow::End;
            }
        };
        let method = method_param(&verb.attrs, "method", "POST");
        let digits = match pressed {
            Some(mut digits) => {
                if let Some(n) = verb.attr("numDigits").and_then(|n| n.parse::<usize>().ok()) {
                    digits.truncate(n);
                }
                let finish = verb.attr("finishOnKey").unwrap_or("#");
                if !finish.is_empty() {
                    if let Some(stripped) = digits.strip_suffix(finish) {
                        digits = stripped.to_owned();
                    }
                }
                digits
            }
            None => {
                if let Err(flow) = self.pause(timeout).await {
                    return flow;
                }
                if verb.attr("actionOnEmptyResult") != Some("true") {
                    return Flow::Next;
                }
                String::new()
            }
        };
        match action {
            Some(url) => Flow::Goto(Doc::Url {
                url,
                method,
                extra: vec![
                    ("Digits".to_owned(), digits),
                    ("FinishedOnKey".to_owned(), String::new()),
                ],
            }),
            None => Flow::Next,
        }
    }

    async fn dial(&mut self, verb: &Node) -> Flow {
        let Some(conference) = verb.children.iter().find(|c| c.name == "Conference") else {
            self.app_error(
                self.base.clone().as_deref(),
                "the fake supports only <Dial><Conference>".to_owned(),
            );
            return Flow::End;
        };
        let attr = |name: &str| conference.attr(name);
        let callback = match attr("statusCallback") {
            Some(href) => match resolve_url(self.base.as_deref(), href) {
                Ok(url) => Some(ConfCallback {
                    url,
                    method: method_param(&conference.attrs, "statusCallbackMethod", "POST"),
                    events: match attr("statusCallbackEvent") {
                        Some(events) => event_set(std::iter::once(events)),
                        None => event_set(std::iter::once("start end")),
                    },
                }),
                Err(e) => {
                    self.app_error(None, e);
                    return Flow::End;
                }
            },
            None => None,
        };
        let wait_url = match attr("waitUrl") {
            Some("") => Some(String::new()),
            Some(href) => match resolve_url(self.base.as_deref(), href) {
                Ok(url) => Some(url),
                Err(e) => {
                    self.app_error(None, e);
                    return Flow::End;
                }
            },
            None => None,
        };
        let spec = JoinSpec {
            name: conference.text.trim().to_owned(),
            conf_sid: None,
            label: attr("participantLabel").map(str::to_owned),
            start_on_enter: attr("startConferenceOnEnter").is_none_or(truthy),
            end_on_exit: attr("endConferenceOnExit").is_some_and(truthy),
            muted: attr("muted").is_some_and(truthy),
            beep: attr("beep").unwrap_or("true").to_owned(),
            wait_url,
            wait_method: method_param(&conference.attrs, "waitMethod", "POST"),
            callback,
        };
        match self.in_conference(&spec).await {
            Left::HungUp => Flow::End,
            Left::Redirect(doc) => Flow::Goto(doc),
            Left::Done => match verb.attr("action") {
                Some(href) => match resolve_url(self.base.as_deref(), href) {
                    Ok(url) => Flow::Goto(Doc::Url {
                        url,
                        method: method_param(&verb.attrs, "method", "POST"),
                        extra: vec![("DialCallStatus".to_owned(), "completed".to_owned())],
                    }),
                    Err(e) => {
                        self.app_error(None, e);
                        Flow::End
                    }
                },
                None => Flow::Next,
            },
        }
    }

    /// Joins a conference and stays until the call leaves it.
    async fn in_conference(&mut self, spec: &JoinSpec) -> Left {
        let joined = self.shared.lock().join(&self.sid, spec);
        let outcome = match joined {
            Ok(outcome) => outcome,
            Err(e) => {
                self.app_error(None, e);
                return Left::HungUp;
            }
        };
        if outcome.waiting {
            let url = outcome
                .wait_url
                .unwrap_or_else(|| DEFAULT_MUSIC_URL.to_owned());
            if !url.is_empty() {
                tokio::spawn(play_music(
                    Arc::clone(&self.shared),
                    self.sid.clone(),
                    url,
                    outcome.wait_method,
                    Heard::WaitMusic,
                ));
            }
        }
        loop {
            match self.ctl.recv().await {
                Some(Control::Kicked) => return Left::Done,
                Some(Control::HangUp { .. }) | None => {
                    self.shared.lock().leave(&self.sid, "participant_hung_up");
                    return Left::HungUp;
                }
                Some(Control::Redirect(doc)) => {
                    self.shared
                        .lock()
                        .leave(&self.sid, "participant_updated_via_api");
                    return Left::Redirect(doc);
                }
                Some(Control::Cancel) => {}
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The test-only HTTP surface (not Twilio's API): for browser tests driven from Node

/// CORS for the Voice SDK test double: the page (the switchboard's origin) calls the fake
/// from another port.
fn with_cors(mut res: HttpResponse) -> HttpResponse {
    use actix_web::http::header::{HeaderName, HeaderValue};
    let h = res.headers_mut();
    for (name, value) in [
        ("access-control-allow-origin", "*"),
        ("access-control-allow-methods", "GET, POST, OPTIONS"),
        ("access-control-allow-headers", "content-type"),
    ] {
        h.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    res
}

/// A JSON error of the test surface: `{error}` with `status`.
fn test_error(status: u16, message: impl fmt::Display) -> HttpResponse {
    let code = actix_web::http::StatusCode::from_u16(status)
        .unwrap_or(actix_web::http::StatusCode::BAD_REQUEST);
    HttpResponse::build(code).json(json!({ "error": message.to_string() }))
}

/// Parses a test request's JSON body (POST only); `Err` is the answer to send.
fn test_body<T: serde::de::DeserializeOwned>(
    req: &HttpRequest,
    body: &[u8],
    expected: &str,
) -> Result<T, Box<HttpResponse>> {
    if req.method() != actix_web::http::Method::POST {
        return Err(Box::new(HttpResponse::MethodNotAllowed().finish()));
    }
    serde_json::from_slice(body)
        .map_err(|e| Box::new(test_error(400, format!("expected {expected}: {e}"))))
}

/// Runs a prepared call on the fake's runtime (the handlers run on it).
fn run_prepared(shared: &Arc<Shared>, (sid, rx, start): PreparedCall) -> String {
    tokio::spawn(run_call(Arc::clone(shared), sid.clone(), rx, start));
    sid
}

/// `POST /test/client/connect` body: what the Voice SDK test double sends.
#[derive(Debug, Deserialize)]
struct TestConnectBody {
    /// The Access Token the page received from the switchboard.
    token: String,
    /// `device.connect({params})`.
    #[serde(default)]
    params: BTreeMap<String, String>,
}

/// `POST /test/client/connect {token, params}`: a browser's `device.connect({params})`, as
/// [`FakeTwilio::client_connect`] (the Access Token is checked like Twilio: signature, API
/// key, account, expiry, identity, voice grant, TwiML App; then the App's voice URL runs).
/// 200 `{callSid}`, or 401/403 `{error}` for a refused token.
async fn test_client_connect(
    req: HttpRequest,
    body: web::Bytes,
    shared: web::Data<Shared>,
) -> HttpResponse {
    if req.method() == actix_web::http::Method::OPTIONS {
        return with_cors(HttpResponse::NoContent().finish());
    }
    let shared = shared.into_inner();
    let res = match test_body::<TestConnectBody>(&req, &body, "{token, params}") {
        Err(res) => *res,
        Ok(b) => {
            let params: Vec<(String, String)> = b.params.into_iter().collect();
            let prepared = shared.lock().prepare_client_call(&b.token, &params);
            match prepared {
                Ok(prepared) => {
                    HttpResponse::Ok().json(json!({ "callSid": run_prepared(&shared, prepared) }))
                }
                Err(e @ ClientConnectError::Expired)
                | Err(e @ ClientConnectError::BadSignature(_)) => test_error(401, e),
                Err(e) => test_error(403, e),
            }
        }
    };
    with_cors(res)
}

/// `POST /test/client/disconnect` and `/test/hangup` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TestCallBody {
    call_sid: String,
}

/// `POST /test/client/disconnect {callSid}`: the browser leg hangs up (the double's
/// `disconnect()`). 200 `{hungUp}`: false when the call was unknown or already over.
async fn test_client_disconnect(
    req: HttpRequest,
    body: web::Bytes,
    shared: web::Data<Shared>,
) -> HttpResponse {
    if req.method() == actix_web::http::Method::OPTIONS {
        return with_cors(HttpResponse::NoContent().finish());
    }
    let res = match test_body::<TestCallBody>(&req, &body, "{callSid}") {
        Err(res) => *res,
        Ok(b) => {
            let st = shared.lock();
            let client = st
                .calls
                .get(&b.call_sid)
                .is_some_and(|c| c.info.from.starts_with("client:"));
            if client {
                let hung_up = st.control(&b.call_sid, Control::HangUp { by_api: false });
                HttpResponse::Ok().json(json!({ "hungUp": hung_up }))
            } else {
                test_error(404, format!("{} is not a client leg", b.call_sid))
            }
        }
    };
    with_cors(res)
}

/// `POST /test/inbound` body.
#[derive(Debug, Deserialize)]
struct TestInboundBody {
    from: String,
    to: String,
}

/// `POST /test/inbound {from, to}`: a phone call arrives at the owned number `to`, as
/// [`FakeTwilio::inbound_call`]. 200 `{callSid}`; 404 when `to` is not owned.
async fn test_inbound(
    req: HttpRequest,
    body: web::Bytes,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let shared = shared.into_inner();
    let res = match test_body::<TestInboundBody>(&req, &body, "{from, to}") {
        Err(res) => *res,
        Ok(b) => {
            let prepared = shared.lock().prepare_inbound_call(&b.from, &b.to);
            match prepared {
                Ok(prepared) => {
                    HttpResponse::Ok().json(json!({ "callSid": run_prepared(&shared, prepared) }))
                }
                Err(e) => test_error(404, e),
            }
        }
    };
    with_cors(res)
}

/// `POST /test/hangup {callSid}`: the far end of any call hangs up, as
/// [`FakeTwilio::hang_up`]. 200 `{hungUp}`.
async fn test_hangup(
    req: HttpRequest,
    body: web::Bytes,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let res = match test_body::<TestCallBody>(&req, &body, "{callSid}") {
        Err(res) => *res,
        Ok(b) => {
            let hung_up = shared
                .lock()
                .control(&b.call_sid, Control::HangUp { by_api: false });
            HttpResponse::Ok().json(json!({ "hungUp": hung_up }))
        }
    };
    with_cors(res)
}

fn heard_json(h: &Heard) -> Value {
    let (kind, what) = match h {
        Heard::Say(t) => ("say", t.as_str()),
        Heard::Play(u) => ("play", u.as_str()),
        Heard::WaitMusic(u) => ("waitMusic", u.as_str()),
        Heard::HoldMusic(u) => ("holdMusic", u.as_str()),
        Heard::Announcement(a) => ("announcement", a.as_str()),
        Heard::Beep => ("beep", ""),
        Heard::ApplicationError => ("applicationError", ""),
    };
    json!({ "kind": kind, "what": what })
}

/// `GET /test/state`: every call and conference as JSON, for browser tests to assert where
/// every leg is: `{calls: [{sid, from, to, direction, status, conference, params, heard}],
/// conferences: [{sid, friendlyName, status, participants: [{callSid, label, hold, muted,
/// status}]}], errors: [{callSid, url, message}]}`.
async fn test_state(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    if req.method() == actix_web::http::Method::OPTIONS {
        return with_cors(HttpResponse::NoContent().finish());
    }
    let st = shared.lock();
    let calls: Vec<Value> = st
        .call_order
        .iter()
        .filter_map(|sid| st.calls.get(sid))
        .map(|c| {
            let i = &c.info;
            let params: serde_json::Map<String, Value> = i
                .extra_params
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
                .collect();
            json!({
                "sid": i.sid, "from": i.from, "to": i.to, "direction": i.direction,
                "status": i.status, "conference": i.conference, "params": params,
                "heard": i.heard.iter().map(heard_json).collect::<Vec<_>>(),
            })
        })
        .collect();
    let conferences: Vec<Value> = st
        .conferences
        .iter()
        .map(|c| {
            let i = &c.info;
            json!({
                "sid": i.sid, "friendlyName": i.friendly_name, "status": i.status,
                "participants": i.participants.iter().map(|p| json!({
                    "callSid": p.call_sid, "label": p.label, "hold": p.hold,
                    "muted": p.muted, "status": p.status,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let errors: Vec<Value> = st
        .errors
        .iter()
        .map(|e| json!({ "callSid": e.call_sid, "url": e.url, "message": e.message }))
        .collect();
    with_cors(HttpResponse::Ok().json(json!({
        "calls": calls, "conferences": conferences, "errors": errors,
    })))
}

// ---------------------------------------------------------------------------------------------
// Access Tokens

#[derive(Debug, Deserialize)]
struct AccessClaims {
    iss: String,
    sub: String,
    #[serde(default)]
    grants: Grants,
}

#[derive(Debug, Default, Deserialize)]
struct Grants {
    identity: Option<String>,
    voice: Option<VoiceGrant>,
}

#[derive(Debug, Deserialize)]
struct VoiceGrant {
    outgoing: Option<OutgoingGrant>,
}

#[derive(Debug, Deserialize)]
struct OutgoingGrant {
    application_sid: String,
}

/// Checks an Access Token like Twilio; returns the identity and the granted application.
fn verify_access_token(
    cfg: &FakeTwilioConfig,
    token: &str,
) -> Result<(String, String), ClientConnectError> {
    use jsonwebtoken::{
        decode, decode_header, errors::ErrorKind, Algorithm, DecodingKey, Validation,
    };
    let header = decode_header(token).map_err(|e| ClientConnectError::Invalid(e.to_string()))?;
    if header.alg != Algorithm::HS256 {
        return Err(ClientConnectError::Invalid(format!(
            "algorithm {:?}",
            header.alg
        )));
    }
    if header.cty.as_deref() != Some("twilio-fpa;v=1") {
        return Err(ClientConnectError::Invalid(
            "header cty is not twilio-fpa;v=1".to_owned(),
        ));
    }
    let key = cfg
        .api_key
        .as_ref()
        .ok_or_else(|| ClientConnectError::BadSignature("no API key configured".to_owned()))?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp", "iss", "sub"]);
    validation.validate_aud = false;
    let data = decode::<AccessClaims>(
        token,
        &DecodingKey::from_secret(key.secret.as_bytes()),
        &validation,
    )
    .map_err(|e| match e.kind() {
        ErrorKind::ExpiredSignature => ClientConnectError::Expired,
        ErrorKind::InvalidSignature => ClientConnectError::BadSignature(e.to_string()),
        _ => ClientConnectError::Invalid(e.to_string()),
    })?;
    let claims = data.claims;
    if claims.iss != key.sid {
        return Err(ClientConnectError::BadSignature(format!(
            "unknown API key {}",
            claims.iss
        )));
    }
    if claims.sub != cfg.account_sid {
        return Err(ClientConnectError::WrongAccount);
    }
    let identity = claims
        .grants
        .identity
        .filter(|i| !i.is_empty())
        .ok_or_else(|| ClientConnectError::Invalid("no identity grant".to_owned()))?;
    let app = claims
        .grants
        .voice
        .and_then(|v| v.outgoing)
        .map(|o| o.application_sid)
        .ok_or(ClientConnectError::NoVoiceGrant)?;
    if !cfg.apps.contains_key(&app) {
        return Err(ClientConnectError::UnknownApplication(app));
    }
    Ok((identity, app))
}

// ---------------------------------------------------------------------------------------------
// REST

/// A Twilio REST error.
#[derive(Debug)]
struct RestError {
    status: u16,
    code: u32,
    message: String,
    /// `Retry-After` seconds of a 429.
    retry_after: Option<u64>,
}

impl RestError {
    fn new(status: u16, code: u32, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    fn not_found(path: &str) -> Self {
        Self::new(
            404,
            20404,
            format!("The requested resource {path} was not found"),
        )
    }
    fn body(&self) -> Value {
        json!({
            "code": self.code,
            "message": self.message,
            "more_info": format!("https://www.twilio.com/docs/errors/{}", self.code),
            "status": self.status,
        })
    }
}

/// A parsed REST path.
struct Parsed {
    account: String,
    route: Route,
    /// Path ids after the account: call or conference SID, then participant.
    ids: Vec<String>,
}

fn parse_path(method: &str, path: &str) -> Option<Parsed> {
    let rest = path.strip_prefix("/2010-04-01/Accounts/")?;
    let segs: Vec<&str> = rest.split('/').collect();
    let strip = |s: &str| s.strip_suffix(".json").map(str::to_owned);
    let (route, ids) = match (method, segs.as_slice()) {
        ("POST", [_, "Calls.json"]) => (Route::CreateCall, vec![]),
        ("GET", [_, "Calls", sid]) => (Route::FetchCall, vec![strip(sid)?]),
        ("POST", [_, "Calls", sid]) => (Route::UpdateCall, vec![strip(sid)?]),
        ("GET", [_, "Conferences.json"]) => (Route::ListConferences, vec![]),
        ("GET", [_, "Conferences", sid]) => (Route::FetchConference, vec![strip(sid)?]),
        ("POST", [_, "Conferences", sid]) => (Route::UpdateConference, vec![strip(sid)?]),
        ("POST", [_, "Conferences", sid, "Participants.json"]) => {
            (Route::CreateParticipant, vec![(*sid).to_owned()])
        }
        ("GET", [_, "Conferences", sid, "Participants.json"]) => {
            (Route::ListParticipants, vec![(*sid).to_owned()])
        }
        (m, [_, "Conferences", sid, "Participants", who]) => {
            let route = match m {
                "GET" => Route::FetchParticipant,
                "POST" => Route::UpdateParticipant,
                "DELETE" => Route::DeleteParticipant,
                _ => return None,
            };
            (route, vec![(*sid).to_owned(), strip(who)?])
        }
        _ => return None,
    };
    Some(Parsed {
        account: segs.first()?.to_string(),
        route,
        ids,
    })
}

fn basic_auth(req: &HttpRequest) -> Option<(String, String)> {
    let value = req.headers().get("authorization")?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, pass) = decoded.split_once(':')?;
    Some((user.to_owned(), pass.to_owned()))
}

fn json_reply(status: u16, body: &Value, retry_after: Option<u64>) -> HttpResponse {
    let code = actix_web::http::StatusCode::from_u16(status)
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    let mut builder = HttpResponse::build(code);
    if let Some(secs) = retry_after {
        builder.insert_header(("Retry-After", secs.to_string()));
    }
    if status == 204 {
        return builder.finish();
    }
    builder
        .content_type("application/json; charset=utf-8")
        .body(body.to_string())
}

async fn rest_entry(req: HttpRequest, body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let shared = shared.into_inner();
    let method = req.method().as_str().to_owned();
    let path = req.path().to_owned();
    let mut params: Vec<(String, String)> =
        serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
    if method == "POST" {
        params.extend(
            serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body).unwrap_or_default(),
        );
    }
    let parsed = parse_path(&method, &path);
    let route = parsed.as_ref().map_or(Route::Any, |p| p.route);
    let latency = shared.lock().faults.rest_latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let hang = take_hang(&mut shared.lock().faults, route);
    if let Some((false, hold)) = hang {
        tokio::time::sleep(hold).await;
        return json_reply(
            504,
            &json!({ "code": 20504, "message": "Gateway Timeout", "status": 504 }),
            None,
        );
    }
    let mut spawns = Vec::new();
    let (status, body, retry_after) = {
        let mut st = shared.lock();
        let result = st.rest(&req, parsed, &path, &params, &mut spawns);
        let (status, body, retry_after) = match result {
            Ok((status, body)) => (status, body, None),
            Err(e) => (e.status, e.body(), e.retry_after),
        };
        st.requests.push(RestRequest {
            method,
            path,
            route,
            params,
            status,
        });
        (status, body, retry_after)
    };
    for spawn in spawns {
        match spawn {
            Spawn::Call(sid, rx, start) => {
                tokio::spawn(run_call(Arc::clone(&shared), sid, rx, start));
            }
            Spawn::Music(sid, url, method, kind) => {
                tokio::spawn(play_music(Arc::clone(&shared), sid, url, method, kind));
            }
        }
    }
    if let Some((true, hold)) = hang {
        tokio::time::sleep(hold).await;
    }
    json_reply(status, &body, retry_after)
}

/// Takes one hang fault matching `route`: whether the request is carried out, and the hold.
fn take_hang(faults: &mut Faults, route: Route) -> Option<(bool, Duration)> {
    let i = faults
        .hang
        .iter()
        .position(|(r, n, _, _)| *n > 0 && (*r == route || *r == Route::Any))?;
    let (_, n, carried_out, hold) = &mut faults.hang[i];
    *n -= 1;
    let found = (*carried_out, *hold);
    if *n == 0 {
        faults.hang.remove(i);
    }
    Some(found)
}

/// Work a REST answer starts once the state is unlocked.
enum Spawn {
    Call(String, mpsc::UnboundedReceiver<Control>, Start),
    Music(String, String, String, fn(String) -> Heard),
}

type RestResult = Result<(u16, Value), RestError>;

fn bad(code: u32, message: impl Into<String>) -> RestError {
    RestError::new(400, code, message)
}

fn bool_param(params: &[(String, String)], name: &str) -> Result<Option<bool>, RestError> {
    match param(params, name) {
        None => Ok(None),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(v) => Err(bad(20001, format!("Invalid value {v} for {name}"))),
    }
}

fn absolute_url(params: &[(String, String)], name: &str) -> Result<Option<String>, RestError> {
    match param(params, name) {
        None => Ok(None),
        Some(v) => match reqwest::Url::parse(v) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => Ok(Some(v.to_owned())),
            _ => Err(bad(21205, format!("{name} is not a valid URL: {v}"))),
        },
    }
}

impl State {
    fn rest(
        &mut self,
        req: &HttpRequest,
        parsed: Option<Parsed>,
        path: &str,
        params: &[(String, String)],
        spawns: &mut Vec<Spawn>,
    ) -> RestResult {
        let authenticated = basic_auth(req).is_some_and(|(user, pass)| {
            (user == self.cfg.account_sid && pass == self.cfg.auth_token)
                || self
                    .cfg
                    .api_key
                    .as_ref()
                    .is_some_and(|k| user == k.sid && pass == k.secret)
        });
        if !authenticated {
            return Err(RestError::new(401, 20003, "Authenticate"));
        }
        let Some(parsed) = parsed else {
            return Err(RestError::not_found(path));
        };
        if parsed.account != self.cfg.account_sid {
            return Err(RestError::not_found(path));
        }
        if let Some(i) = self
            .faults
            .rest
            .iter()
            .position(|(r, _, n)| *n > 0 && (*r == parsed.route || *r == Route::Any))
        {
            let (_, fault, n) = &mut self.faults.rest[i];
            *n -= 1;
            let fault = *fault;
            if *n == 0 {
                self.faults.rest.remove(i);
            }
            return Err(match fault {
                RestFault::TooManyRequests { retry_after_secs } => RestError {
                    retry_after: Some(retry_after_secs),
                    ..RestError::new(429, 20429, "Too Many Requests")
                },
                RestFault::ServerError => RestError::new(500, 20500, "Internal Server Error"),
                RestFault::Unavailable => RestError::new(503, 20503, "Service Unavailable"),
                RestFault::Rejected { code } => {
                    RestError::new(400, code, format!("Request refused (error {code})"))
                }
            });
        }
        let ids = &parsed.ids;
        match parsed.route {
            Route::CreateCall => self.create_call(params, spawns),
            Route::FetchCall => self
                .call_json(&ids[0])
                .map(|v| (200, v))
                .ok_or_else(|| RestError::not_found(path)),
            Route::UpdateCall => self.update_call(path, &ids[0], params),
            Route::ListConferences => Ok((200, self.list_conferences(params))),
            Route::FetchConference => {
                let idx = self
                    .conf_by_sid(&ids[0])
                    .ok_or_else(|| RestError::not_found(path))?;
                Ok((200, self.conf_json(idx)))
            }
            Route::UpdateConference => {
                let idx = self
                    .conf_by_sid(&ids[0])
                    .ok_or_else(|| RestError::not_found(path))?;
                match param(params, "Status") {
                    Some("completed") => self.end_conference(idx, "conference-ended-via-api", None),
                    Some(other) => return Err(bad(20001, format!("Invalid Status {other}"))),
                    None => {}
                }
                if let Some(url) = absolute_url(params, "AnnounceUrl")? {
                    let method = method_param(params, "AnnounceMethod", "POST");
                    for p in &self.conferences[idx].info.participants {
                        spawns.push(Spawn::Music(
                            p.call_sid.clone(),
                            url.clone(),
                            method.clone(),
                            Heard::Announcement,
                        ));
                    }
                }
                Ok((200, self.conf_json(idx)))
            }
            Route::CreateParticipant => self.create_participant(path, &ids[0], params, spawns),
            Route::ListParticipants => {
                let idx = self
                    .conf_by_sid(&ids[0])
                    .ok_or_else(|| RestError::not_found(path))?;
                let list: Vec<Value> = self.conferences[idx]
                    .info
                    .participants
                    .iter()
                    .map(|p| self.participant_json(idx, p))
                    .collect();
                Ok((
                    200,
                    json!({
                        "participants": list,
                        "page": 0, "page_size": 50, "start": 0, "end": list.len().saturating_sub(1),
                        "first_page_uri": path, "next_page_uri": null, "previous_page_uri": null,
                        "uri": path,
                    }),
                ))
            }
            Route::FetchParticipant | Route::UpdateParticipant | Route::DeleteParticipant => {
                let idx = self
                    .conf_by_sid(&ids[0])
                    .ok_or_else(|| RestError::not_found(path))?;
                let who = &ids[1];
                let Some(pos) = self.conferences[idx]
                    .info
                    .participants
                    .iter()
                    .position(|p| &p.call_sid == who || p.label.as_deref() == Some(who.as_str()))
                else {
                    return Err(RestError::not_found(path));
                };
                match parsed.route {
                    Route::FetchParticipant => {
                        let p = &self.conferences[idx].info.participants[pos];
                        Ok((200, self.participant_json(idx, p)))
                    }
                    Route::UpdateParticipant => self.update_participant(idx, pos, params, spawns),
                    _ => {
                        let p = self.conferences[idx].info.participants[pos].clone();
                        if p.status == "connected" {
                            self.leave(&p.call_sid, "participant_removed_via_api");
                            self.control(&p.call_sid, Control::Kicked);
                        } else {
                            self.control(&p.call_sid, Control::Cancel);
                            self.drop_pending(&p.call_sid);
                        }
                        Ok((204, Value::Null))
                    }
                }
            }
            Route::Any => Err(RestError::not_found(path)),
        }
    }

    fn status_callback(params: &[(String, String)]) -> Result<Option<StatusCallback>, RestError> {
        Ok(
            absolute_url(params, "StatusCallback")?.map(|url| StatusCallback {
                url,
                method: method_param(params, "StatusCallbackMethod", "POST"),
                events: event_set(all_values(params, "StatusCallbackEvent")),
            }),
        )
    }

    fn timeout_param(&self, params: &[(String, String)]) -> Result<Duration, RestError> {
        let secs = match param(params, "Timeout") {
            None => 60,
            Some(v) => v
                .parse::<u64>()
                .map_err(|_| bad(21206, format!("Invalid Timeout {v}")))?,
        };
        Ok(self.scaled(secs.min(600) as f64))
    }

    fn check_from(&self, from: &str) -> Result<(), RestError> {
        if from.starts_with("client:") || self.cfg.numbers.contains_key(from) {
            Ok(())
        } else {
            Err(bad(
                21210,
                format!("The source phone number provided, {from}, is not yet verified for your account."),
            ))
        }
    }

    fn create_call(&mut self, params: &[(String, String)], spawns: &mut Vec<Spawn>) -> RestResult {
        let to = param(params, "To")
            .filter(|v| !v.is_empty())
            .ok_or_else(|| bad(21201, "No 'To' number is specified"))?;
        let from = param(params, "From")
            .filter(|v| !v.is_empty())
            .ok_or_else(|| bad(21213, "No 'From' number is specified"))?;
        let url = absolute_url(params, "Url")?;
        let twiml = param(params, "Twiml");
        let app = param(params, "ApplicationSid");
        let given = [url.is_some(), twiml.is_some(), app.is_some()]
            .iter()
            .filter(|g| **g)
            .count();
        if given != 1 {
            return Err(bad(
                21205,
                "Exactly one of 'Url', 'Twiml' or 'ApplicationSid' must be specified",
            ));
        }
        self.check_from(from)?;
        let status_cb = Self::status_callback(params)?;
        let timeout = self.timeout_param(params)?;
        let method = method_param(params, "Method", "POST");
        let doc = if let Some(url) = url {
            Doc::Url {
                url,
                method,
                extra: Vec::new(),
            }
        } else if let Some(twiml) = twiml {
            Doc::Twiml(twiml.to_owned())
        } else {
            let app = app.unwrap_or_default();
            let url = self
                .cfg
                .apps
                .get(app)
                .cloned()
                .ok_or_else(|| bad(21218, format!("Invalid ApplicationSid {app}")))?;
            Doc::Url {
                url,
                method: "POST".to_owned(),
                extra: Vec::new(),
            }
        };
        let (sid, rx) = self.new_call(
            from,
            to,
            to,
            "outbound-api",
            "queued",
            status_cb,
            Vec::new(),
        );
        let body = self.call_json(&sid).unwrap_or(Value::Null);
        spawns.push(Spawn::Call(sid, rx, Start::Outbound { doc, timeout }));
        Ok((201, body))
    }

    fn update_call(&mut self, path: &str, sid: &str, params: &[(String, String)]) -> RestResult {
        let status = self
            .calls
            .get(sid)
            .map(|c| c.info.status.clone())
            .ok_or_else(|| RestError::not_found(path))?;
        let url = absolute_url(params, "Url")?;
        let twiml = param(params, "Twiml");
        let mut shown = status.clone();
        if url.is_some() || twiml.is_some() {
            if is_terminal(&status) {
                return Err(bad(21220, "Call is not in-progress. Cannot redirect."));
            }
            let doc = match (url, twiml) {
                (Some(url), _) => Doc::Url {
                    url,
                    method: method_param(params, "Method", "POST"),
                    extra: Vec::new(),
                },
                (None, Some(twiml)) => Doc::Twiml(twiml.to_owned()),
                (None, None) => unreachable!("checked above"),
            };
            self.control(sid, Control::Redirect(doc));
        }
        match param(params, "Status") {
            None => {}
            Some("canceled") => {
                if matches!(status.as_str(), "queued" | "initiated" | "ringing") {
                    self.control(sid, Control::Cancel);
                    shown = "canceled".to_owned();
                }
            }
            Some("completed") if !is_terminal(&status) => {
                self.control(sid, Control::HangUp { by_api: true });
                let done = status == "in-progress";
                shown = if done { "completed" } else { "canceled" }.to_owned();
            }
            Some("completed") => {}
            Some(other) => return Err(bad(21220, format!("Invalid Status {other}"))),
        }
        let mut body = self.call_json(sid).unwrap_or(Value::Null);
        body["status"] = json!(shown);
        Ok((200, body))
    }

    fn create_participant(
        &mut self,
        path: &str,
        conference: &str,
        params: &[(String, String)],
        spawns: &mut Vec<Spawn>,
    ) -> RestResult {
        let to = param(params, "To")
            .filter(|v| !v.is_empty())
            .ok_or_else(|| bad(21201, "No 'To' number is specified"))?;
        let from = param(params, "From")
            .filter(|v| !v.is_empty())
            .ok_or_else(|| bad(21213, "No 'From' number is specified"))?;
        self.check_from(from)?;
        let idx = if conference.starts_with("CF") && conference.len() == 34 {
            match self.conf_by_sid(conference) {
                Some(i) if self.conferences[i].info.status != "completed" => i,
                _ => return Err(RestError::not_found(path)),
            }
        } else {
            self.live_conf_by_name_or_create(conference)
        };
        let callback = absolute_url(params, "ConferenceStatusCallback")?.map(|url| ConfCallback {
            url,
            method: method_param(params, "ConferenceStatusCallbackMethod", "POST"),
            events: {
                let events = event_set(all_values(params, "ConferenceStatusCallbackEvent"));
                if events.is_empty() {
                    event_set(std::iter::once("start end"))
                } else {
                    events
                }
            },
        });
        let spec = JoinSpec {
            name: self.conferences[idx].info.friendly_name.clone(),
            conf_sid: Some(self.conferences[idx].info.sid.clone()),
            label: param(params, "Label").map(str::to_owned),
            start_on_enter: bool_param(params, "StartConferenceOnEnter")?.unwrap_or(true),
            end_on_exit: bool_param(params, "EndConferenceOnExit")?.unwrap_or(false),
            muted: bool_param(params, "Muted")?.unwrap_or(false),
            beep: param(params, "Beep").unwrap_or("true").to_owned(),
            wait_url: absolute_url(params, "WaitUrl")?,
            wait_method: method_param(params, "WaitMethod", "POST"),
            callback,
        };
        if let Some(label) = &spec.label {
            if self.conferences[idx]
                .info
                .participants
                .iter()
                .any(|p| p.label.as_ref() == Some(label))
            {
                return Err(bad(
                    20001,
                    format!("Label {label} is already in use in this conference"),
                ));
            }
        }
        let status_cb = Self::status_callback(params)?;
        let timeout = self.timeout_param(params)?;
        let (sid, rx) = self.new_call(
            from,
            to,
            to,
            "outbound-api",
            "queued",
            status_cb,
            Vec::new(),
        );
        self.add_pending(idx, &sid, &spec);
        let body = {
            let p = self.conferences[idx]
                .info
                .participant(&sid)
                .cloned()
                .expect("just added");
            self.participant_json(idx, &p)
        };
        spawns.push(Spawn::Call(
            sid,
            rx,
            Start::Outbound {
                doc: Doc::Join(Box::new(spec)),
                timeout,
            },
        ));
        Ok((201, body))
    }

    fn update_participant(
        &mut self,
        idx: usize,
        pos: usize,
        params: &[(String, String)],
        spawns: &mut Vec<Spawn>,
    ) -> RestResult {
        let hold = bool_param(params, "Hold")?;
        let muted = bool_param(params, "Muted")?;
        let end_on_exit = bool_param(params, "EndConferenceOnExit")?;
        let hold_url = absolute_url(params, "HoldUrl")?;
        let announce_url = absolute_url(params, "AnnounceUrl")?;
        let before = self.conferences[idx].info.participants[pos].clone();
        if let Some(end) = end_on_exit {
            if end != before.end_on_exit && (before.hold || hold == Some(true)) {
                return Err(bad(
                    20001,
                    "EndConferenceOnExit cannot be changed while the participant is on hold",
                ));
            }
        }
        let sid = before.call_sid.clone();
        {
            let p = &mut self.conferences[idx].info.participants[pos];
            if let Some(h) = hold {
                p.hold = h;
            }
            if let Some(m) = muted {
                p.muted = m;
            }
            if let Some(e) = end_on_exit {
                p.end_on_exit = e;
            }
        }
        let after = self.conferences[idx].info.participants[pos].clone();
        if after.hold != before.hold {
            let event = if after.hold {
                "participant-hold"
            } else {
                "participant-unhold"
            };
            self.conf_event(idx, event, Some(&after), &[]);
            if after.hold {
                let url = hold_url.unwrap_or_else(|| DEFAULT_MUSIC_URL.to_owned());
                let method = method_param(params, "HoldMethod", "GET");
                spawns.push(Spawn::Music(sid.clone(), url, method, Heard::HoldMusic));
            }
        }
        if after.muted != before.muted {
            let event = if after.muted {
                "participant-mute"
            } else {
                "participant-unmute"
            };
            self.conf_event(idx, event, Some(&after), &[]);
        }
        if after.end_on_exit != before.end_on_exit {
            self.conf_event(idx, "participant-modify", Some(&after), &[]);
        }
        if let Some(url) = announce_url {
            let method = method_param(params, "AnnounceMethod", "POST");
            spawns.push(Spawn::Music(sid, url, method, Heard::Announcement));
        }
        Ok((200, self.participant_json(idx, &after)))
    }

    fn conf_by_sid(&self, sid: &str) -> Option<usize> {
        self.conferences.iter().position(|c| c.info.sid == sid)
    }

    fn account_uri(&self) -> String {
        format!("/{API_VERSION}/Accounts/{}", self.cfg.account_sid)
    }

    fn call_json(&self, sid: &str) -> Option<Value> {
        let c = &self.calls.get(sid)?.info;
        let uri = format!("{}/Calls/{}.json", self.account_uri(), c.sid);
        Some(json!({
            "sid": c.sid,
            "date_created": c.date_created,
            "date_updated": now_rfc2822(),
            "parent_call_sid": null,
            "account_sid": self.cfg.account_sid,
            "to": c.to,
            "to_formatted": c.to,
            "from": c.from,
            "from_formatted": c.from,
            "phone_number_sid": null,
            "status": c.status,
            "start_time": c.start_time,
            "end_time": c.end_time,
            "duration": c.duration.map(|d| d.to_string()),
            "price": null,
            "price_unit": "USD",
            "direction": c.direction,
            "answered_by": null,
            "api_version": API_VERSION,
            "forwarded_from": null,
            "group_sid": null,
            "caller_name": null,
            "queue_time": "0",
            "trunk_sid": null,
            "uri": uri,
            "subresource_uris": {
                "notifications": uri.replace(".json", "/Notifications.json"),
                "recordings": uri.replace(".json", "/Recordings.json"),
            },
        }))
    }

    fn conf_json(&self, idx: usize) -> Value {
        let c = &self.conferences[idx].info;
        let uri = format!("{}/Conferences/{}.json", self.account_uri(), c.sid);
        json!({
            "account_sid": self.cfg.account_sid,
            "date_created": c.date_created,
            "date_updated": now_rfc2822(),
            "api_version": API_VERSION,
            "friendly_name": c.friendly_name,
            "region": "us1",
            "sid": c.sid,
            "status": c.status,
            "uri": uri,
            "subresource_uris": {
                "participants": uri.replace(".json", "/Participants.json"),
                "recordings": uri.replace(".json", "/Recordings.json"),
            },
            "reason_conference_ended": c.reason_ended,
            "call_sid_ending_conference": c.call_sid_ending,
        })
    }

    fn participant_json(&self, idx: usize, p: &ParticipantInfo) -> Value {
        let conf = &self.conferences[idx].info;
        json!({
            "account_sid": self.cfg.account_sid,
            "call_sid": p.call_sid,
            "label": p.label,
            "call_sid_to_coach": null,
            "coaching": false,
            "conference_sid": conf.sid,
            "date_created": p.date_created,
            "date_updated": now_rfc2822(),
            "end_conference_on_exit": p.end_on_exit,
            "muted": p.muted,
            "hold": p.hold,
            "start_conference_on_enter": p.start_on_enter,
            "status": p.status,
            "queue_time": "0",
            "uri": format!("{}/Conferences/{}/Participants/{}.json", self.account_uri(), conf.sid, p.call_sid),
        })
    }

    fn list_conferences(&self, params: &[(String, String)]) -> Value {
        let name = param(params, "FriendlyName");
        let status = param(params, "Status");
        let list: Vec<Value> = (0..self.conferences.len())
            .rev()
            .filter(|i| {
                let c = &self.conferences[*i].info;
                name.is_none_or(|n| n == c.friendly_name) && status.is_none_or(|s| s == c.status)
            })
            .map(|i| self.conf_json(i))
            .collect();
        let uri = format!("{}/Conferences.json", self.account_uri());
        json!({
            "conferences": list,
            "page": 0, "page_size": 50, "start": 0, "end": list.len().saturating_sub(1),
            "first_page_uri": uri, "next_page_uri": null, "previous_page_uri": null,
            "uri": uri,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_twilios_published_example() {
        let params: Vec<(String, String)> = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        assert_eq!(
            twilio_signature(
                "12345",
                "https://mycompany.com/myapp.php?foo=1&bar=2",
                &params
            ),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
    }

    #[test]
    fn twiml_is_parsed_with_entities_and_rejected_when_malformed() {
        let root = parse_twiml(
            r#"<?xml version="1.0"?><Response><Say>a &amp; b &#65;</Say><Dial action="/x?a=1&amp;b=2"><Conference beep="false">room</Conference></Dial></Response>"#,
        )
        .expect("valid");
        assert_eq!(root.children[0].text, "a & b A");
        assert_eq!(root.children[1].attr("action"), Some("/x?a=1&b=2"));
        assert_eq!(root.children[1].children[0].text, "room");
        assert!(parse_twiml("<Response><Say>x</Response>").is_err());
        assert!(parse_twiml("<Say>x</Say>").is_err());
        assert!(parse_twiml("not xml at all").is_err());
        assert!(parse_twiml("<Response><Say>x</Say>").is_err());
    }
}
