//! The typed Twilio REST client (API 2010-04-01): calls and conference participants.
//!
//! Form-encoded requests with Basic auth (account SID + auth token, or API key + secret),
//! JSON responses, Twilio's JSON errors parsed into [`TwilioError::Api`], and retries with
//! exponential backoff and jitter:
//!
//! - 429 (rate limited) is always retried: Twilio did not process the request. `Retry-After`
//!   is honoured when present (up to [`RetryPolicy::max_delay`]).
//! - 5xx and transport errors are retried only for requests that are safe to repeat
//!   (updates, deletes, ending a conference): repeating them lands in the same state.
//! - A create (a call, a participant) is retried on 429 and 503 and on a connection that
//!   could not be opened, never on another 5xx or a timeout: a 500 or a lost answer may come
//!   after Twilio already dialled, and a retry would ring the person twice. 503 means the
//!   request was refused before it was processed.
//!
//! Each retry is logged at `warn` with the method, the path (SIDs only) and the cause; no
//! credential is ever logged or shown by `Debug`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, ACCEPT, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::secret::Secret;

/// Twilio's API base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.twilio.com";

/// How the client authenticates (HTTP Basic).
#[derive(Clone)]
pub enum TwilioAuth {
    /// The account SID and its auth token.
    AuthToken {
        /// `AC…`.
        account_sid: String,
        /// The account's auth token.
        auth_token: Secret,
    },
    /// An API key (recommended): requests are still made on the account's paths.
    ApiKey {
        /// `AC…`: the account the paths name.
        account_sid: String,
        /// `SK…`: the Basic auth user.
        key_sid: String,
        /// The key's secret: the Basic auth password.
        key_secret: Secret,
    },
}

impl TwilioAuth {
    /// The account the requests are made for.
    pub fn account_sid(&self) -> &str {
        match self {
            TwilioAuth::AuthToken { account_sid, .. } | TwilioAuth::ApiKey { account_sid, .. } => {
                account_sid
            }
        }
    }

    fn basic(&self) -> (&str, &str) {
        match self {
            TwilioAuth::AuthToken {
                account_sid,
                auth_token,
            } => (account_sid, auth_token.expose()),
            TwilioAuth::ApiKey {
                key_sid,
                key_secret,
                ..
            } => (key_sid, key_secret.expose()),
        }
    }
}

impl fmt::Debug for TwilioAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TwilioAuth::AuthToken { account_sid, .. } => f
                .debug_struct("AuthToken")
                .field("account_sid", account_sid)
                .field("auth_token", &"[redacted]")
                .finish(),
            TwilioAuth::ApiKey {
                account_sid,
                key_sid,
                ..
            } => f
                .debug_struct("ApiKey")
                .field("account_sid", account_sid)
                .field("key_sid", key_sid)
                .field("key_secret", &"[redacted]")
                .finish(),
        }
    }
}

/// Retries, backoff and the per-attempt timeout.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 = never retry).
    pub max_retries: u32,
    /// The first backoff; doubled on every retry, with jitter.
    pub base_delay: Duration,
    /// The longest wait between attempts (also caps `Retry-After`).
    pub max_delay: Duration,
    /// The deadline of one attempt (connecting, sending, reading the answer).
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    /// 3 retries, 200 ms doubling up to 5 s, 10 s per attempt.
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0-based): `base * 2^retry`, capped at
    /// `max_delay`, then a random point in its upper half ("equal jitter"), so that
    /// clients that failed together do not retry together.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(retry.min(20)))
            .min(self.max_delay);
        let half = exp / 2;
        // Randomness from a v4 UUID (already a dependency): plenty for jitter.
        let unit = (uuid::Uuid::new_v4().as_u128() % 1_000_000) as f64 / 1_000_000.0;
        half + half.mul_f64(unit)
    }
}

/// Errors of the Twilio REST client.
#[derive(Debug, thiserror::Error)]
pub enum TwilioError {
    /// Twilio answered with an error (4xx, or 5xx after the retries allowed).
    #[error("Twilio API error {status}{}: {message}", code.map(|c| format!(" (code {c})")).unwrap_or_default())]
    Api {
        /// The HTTP status.
        status: u16,
        /// Twilio's error code (`20404`, `21201`, ...), when the body carried one.
        code: Option<u64>,
        /// Twilio's message (or the start of a non-JSON body).
        message: String,
        /// Twilio's documentation link for the code.
        more_info: Option<String>,
    },
    /// Still rate limited (429) after every retry.
    #[error("Twilio rate limited the request; gave up after {retries} retries")]
    RateLimited {
        /// Retries made.
        retries: u32,
    },
    /// The request could not be sent or its answer not read (connection, TLS, timeout).
    #[error("could not reach Twilio")]
    Transport(#[source] reqwest::Error),
    /// Our own request is wrong (caught before sending).
    #[error("invalid Twilio request: {0}")]
    Invalid(String),
    /// Twilio's answer is not the JSON expected.
    #[error("could not decode Twilio's answer ({what})")]
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
}

impl TwilioError {
    /// Whether the resource does not exist (HTTP 404 or Twilio code 20404): for removals
    /// and hang-ups, "already gone" is success.
    pub fn is_not_found(&self) -> bool {
        matches!(self, TwilioError::Api { status: 404, .. })
            || matches!(
                self,
                TwilioError::Api {
                    code: Some(20404),
                    ..
                }
            )
    }

    /// Whether an attempt timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, TwilioError::Transport(e) if e.is_timeout())
    }
}

/// How a call ends through [`UpdateCall::status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallEndStatus {
    /// Hang up a call in progress (`Status=completed`).
    Completed,
    /// Cancel a call that is queued or ringing (`Status=canceled`).
    Canceled,
}

impl CallEndStatus {
    fn as_str(self) -> &'static str {
        match self {
            CallEndStatus::Completed => "completed",
            CallEndStatus::Canceled => "canceled",
        }
    }
}

/// A new outbound call (`POST Calls.json`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CreateCall {
    /// `To`: an E.164 number, `client:<identity>` or a SIP URI.
    pub to: String,
    /// `From`: a Twilio number (or a client identity).
    pub from: String,
    /// `Url`: where Twilio fetches the call's TwiML (exactly one of `url` and `twiml`).
    pub url: Option<String>,
    /// `Twiml`: the call's TwiML inline (exactly one of `url` and `twiml`).
    pub twiml: Option<String>,
    /// `StatusCallback`: where call progress is POSTed.
    pub status_callback: Option<String>,
    /// `StatusCallbackEvent`: `initiated`, `ringing`, `answered`, `completed`; sent as
    /// repeated fields.
    pub status_callback_event: Vec<String>,
    /// `Timeout`: seconds to let the phone ring.
    pub timeout_secs: Option<u32>,
    /// `CallerId`: the caller ID shown for `client:` and SIP destinations.
    pub caller_id: Option<String>,
    /// `MachineDetection`: `Enable` or `DetectMessageEnd`.
    pub machine_detection: Option<String>,
}

/// Changes to a live call (`POST Calls/{CallSid}.json`): a redirect, or ending it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpdateCall {
    /// `Url`: continue the call with the TwiML at this URL.
    pub url: Option<String>,
    /// `Twiml`: continue the call with this TwiML.
    pub twiml: Option<String>,
    /// `Status`: end the call.
    pub status: Option<CallEndStatus>,
}

/// Dialling someone into a conference (`POST Conferences/{ConferenceSid}/Participants.json`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CreateParticipant {
    /// `From`.
    pub from: String,
    /// `To`.
    pub to: String,
    /// `Label`: addresses the participant in later requests.
    pub label: Option<String>,
    /// `StatusCallback`: the new call's progress.
    pub status_callback: Option<String>,
    /// `StatusCallbackEvent` (repeated): `initiated`, `ringing`, `answered`, `completed`.
    pub status_callback_event: Vec<String>,
    /// `Timeout`: seconds to ring.
    pub timeout_secs: Option<u32>,
    /// `Beep`: `true`, `false`, `onEnter` or `onExit`.
    pub beep: Option<String>,
    /// `StartConferenceOnEnter`.
    pub start_conference_on_enter: Option<bool>,
    /// `EndConferenceOnExit`.
    pub end_conference_on_exit: Option<bool>,
    /// `Muted`.
    pub muted: Option<bool>,
    /// `WaitUrl`: music while the conference has not started.
    pub wait_url: Option<String>,
    /// `ConferenceStatusCallback`: conference events.
    pub conference_status_callback: Option<String>,
    /// `ConferenceStatusCallbackEvent` (repeated): `start`, `end`, `join`, `leave`, `mute`,
    /// `hold`, `modify`, `speaker`, `announcement`.
    pub conference_status_callback_event: Vec<String>,
    /// `CallerId`.
    pub caller_id: Option<String>,
}

/// Changes to a conference participant
/// (`POST Conferences/{ConferenceSid}/Participants/{CallSid}.json`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpdateParticipant {
    /// `Hold`.
    pub hold: Option<bool>,
    /// `HoldUrl`: music (TwiML `<Play>`/`<Say>`) while held.
    pub hold_url: Option<String>,
    /// `HoldMethod`: `GET` or `POST`.
    pub hold_method: Option<String>,
    /// `Muted`.
    pub muted: Option<bool>,
    /// `AnnounceUrl`: TwiML played to this participant.
    pub announce_url: Option<String>,
    /// `AnnounceMethod`.
    pub announce_method: Option<String>,
    /// `EndConferenceOnExit` (cannot change while held).
    pub end_conference_on_exit: Option<bool>,
    /// `Coaching`.
    pub coaching: Option<bool>,
    /// `CallSidToCoach`.
    pub call_sid_to_coach: Option<String>,
}

/// A call as Twilio describes it (fields the switchboard uses; the rest is ignored).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CallResource {
    /// `CA…`.
    pub sid: String,
    /// `queued`, `ringing`, `in-progress`, `completed`, `busy`, `failed`, `no-answer`,
    /// `canceled`.
    #[serde(default)]
    pub status: Option<String>,
    /// The called party.
    #[serde(default)]
    pub to: Option<String>,
    /// The caller.
    #[serde(default)]
    pub from: Option<String>,
    /// `inbound`, `outbound-api`, `outbound-dial`.
    #[serde(default)]
    pub direction: Option<String>,
    /// The parent call, for a call created by `<Dial>`.
    #[serde(default)]
    pub parent_call_sid: Option<String>,
    /// The account.
    #[serde(default)]
    pub account_sid: Option<String>,
}

/// A conference participant as Twilio describes it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ParticipantResource {
    /// The participant's call.
    pub call_sid: String,
    /// The conference (`CF…`).
    #[serde(default)]
    pub conference_sid: Option<String>,
    /// Whether it is held.
    #[serde(default)]
    pub hold: Option<bool>,
    /// Whether it is muted.
    #[serde(default)]
    pub muted: Option<bool>,
    /// Its label.
    #[serde(default)]
    pub label: Option<String>,
    /// `queued`, `connecting`, `ringing`, `connected`, `complete`, `failed`.
    #[serde(default)]
    pub status: Option<String>,
}

/// Twilio's error body.
#[derive(Debug, Deserialize)]
struct ApiErrorBody {
    #[serde(default)]
    code: Option<u64>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    more_info: Option<String>,
}

/// Whether a request may be repeated after a server error or a lost answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repeat {
    /// Updates, deletes: repeating lands in the same state.
    Safe,
    /// Creates: repeating after it may have been processed would dial twice.
    Create,
}

type Form = Vec<(&'static str, String)>;

/// The Twilio REST client. Cheap to clone (one connection pool).
#[derive(Clone)]
pub struct TwilioClient {
    http: reqwest::Client,
    base_url: String,
    auth: Arc<TwilioAuth>,
    retry: RetryPolicy,
}

impl fmt::Debug for TwilioClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioClient")
            .field("base_url", &self.base_url)
            .field("auth", &self.auth)
            .field("retry", &self.retry)
            .finish()
    }
}

fn push_opt(form: &mut Form, name: &'static str, value: &Option<String>) {
    if let Some(v) = value {
        form.push((name, v.clone()));
    }
}

fn push_bool(form: &mut Form, name: &'static str, value: Option<bool>) {
    if let Some(v) = value {
        form.push((name, v.to_string()));
    }
}

fn push_all(form: &mut Form, name: &'static str, values: &[String]) {
    form.extend(values.iter().map(|v| (name, v.clone())));
}

fn require(what: &str, value: &str) -> Result<(), TwilioError> {
    if value.trim().is_empty() {
        return Err(TwilioError::Invalid(format!("{what} is required")));
    }
    Ok(())
}

/// A path segment from a SID or label: refuses anything that would change the path.
fn segment<'a>(what: &str, value: &'a str) -> Result<&'a str, TwilioError> {
    require(what, value)?;
    if value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~'))
        && value != "."
        && value != ".."
    {
        Ok(value)
    } else {
        Err(TwilioError::Invalid(format!(
            "{what} {value:?} is not a SID or label"
        )))
    }
}

impl CreateCall {
    fn form(&self) -> Result<Form, TwilioError> {
        require("To", &self.to)?;
        require("From", &self.from)?;
        match (&self.url, &self.twiml) {
            (Some(_), Some(_)) => {
                return Err(TwilioError::Invalid(
                    "a call takes either Url or Twiml, not both".into(),
                ))
            }
            (None, None) => return Err(TwilioError::Invalid("a call needs Url or Twiml".into())),
            _ => {}
        }
        if !self.status_callback_event.is_empty() && self.status_callback.is_none() {
            return Err(TwilioError::Invalid(
                "StatusCallbackEvent needs a StatusCallback".into(),
            ));
        }
        let mut form: Form = vec![("To", self.to.clone()), ("From", self.from.clone())];
        push_opt(&mut form, "Url", &self.url);
        if self.url.is_some() {
            form.push(("Method", "POST".into()));
        }
        push_opt(&mut form, "Twiml", &self.twiml);
        push_opt(&mut form, "StatusCallback", &self.status_callback);
        if self.status_callback.is_some() {
            form.push(("StatusCallbackMethod", "POST".into()));
        }
        push_all(
            &mut form,
            "StatusCallbackEvent",
            &self.status_callback_event,
        );
        if let Some(t) = self.timeout_secs {
            form.push(("Timeout", t.to_string()));
        }
        push_opt(&mut form, "CallerId", &self.caller_id);
        push_opt(&mut form, "MachineDetection", &self.machine_detection);
        Ok(form)
    }
}

impl UpdateCall {
    fn form(&self) -> Result<Form, TwilioError> {
        if self.url.is_some() && self.twiml.is_some() {
            return Err(TwilioError::Invalid(
                "a call update takes either Url or Twiml, not both".into(),
            ));
        }
        if self.url.is_none() && self.twiml.is_none() && self.status.is_none() {
            return Err(TwilioError::Invalid(
                "the call update changes nothing".into(),
            ));
        }
        let mut form = Form::new();
        push_opt(&mut form, "Url", &self.url);
        if self.url.is_some() {
            form.push(("Method", "POST".into()));
        }
        push_opt(&mut form, "Twiml", &self.twiml);
        if let Some(status) = self.status {
            form.push(("Status", status.as_str().into()));
        }
        Ok(form)
    }
}

impl CreateParticipant {
    fn form(&self) -> Result<Form, TwilioError> {
        require("From", &self.from)?;
        require("To", &self.to)?;
        if !self.status_callback_event.is_empty() && self.status_callback.is_none() {
            return Err(TwilioError::Invalid(
                "StatusCallbackEvent needs a StatusCallback".into(),
            ));
        }
        if !self.conference_status_callback_event.is_empty()
            && self.conference_status_callback.is_none()
        {
            return Err(TwilioError::Invalid(
                "ConferenceStatusCallbackEvent needs a ConferenceStatusCallback".into(),
            ));
        }
        let mut form: Form = vec![("From", self.from.clone()), ("To", self.to.clone())];
        push_opt(&mut form, "Label", &self.label);
        push_opt(&mut form, "StatusCallback", &self.status_callback);
        if self.status_callback.is_some() {
            form.push(("StatusCallbackMethod", "POST".into()));
        }
        push_all(
            &mut form,
            "StatusCallbackEvent",
            &self.status_callback_event,
        );
        if let Some(t) = self.timeout_secs {
            form.push(("Timeout", t.to_string()));
        }
        push_opt(&mut form, "Beep", &self.beep);
        push_bool(
            &mut form,
            "StartConferenceOnEnter",
            self.start_conference_on_enter,
        );
        push_bool(
            &mut form,
            "EndConferenceOnExit",
            self.end_conference_on_exit,
        );
        push_bool(&mut form, "Muted", self.muted);
        push_opt(&mut form, "WaitUrl", &self.wait_url);
        if self.wait_url.is_some() {
            form.push(("WaitMethod", "POST".into()));
        }
        push_opt(
            &mut form,
            "ConferenceStatusCallback",
            &self.conference_status_callback,
        );
        if self.conference_status_callback.is_some() {
            form.push(("ConferenceStatusCallbackMethod", "POST".into()));
        }
        push_all(
            &mut form,
            "ConferenceStatusCallbackEvent",
            &self.conference_status_callback_event,
        );
        push_opt(&mut form, "CallerId", &self.caller_id);
        Ok(form)
    }
}

impl UpdateParticipant {
    fn form(&self) -> Result<Form, TwilioError> {
        let mut form = Form::new();
        push_bool(&mut form, "Hold", self.hold);
        push_opt(&mut form, "HoldUrl", &self.hold_url);
        push_opt(&mut form, "HoldMethod", &self.hold_method);
        push_bool(&mut form, "Muted", self.muted);
        push_opt(&mut form, "AnnounceUrl", &self.announce_url);
        push_opt(&mut form, "AnnounceMethod", &self.announce_method);
        push_bool(
            &mut form,
            "EndConferenceOnExit",
            self.end_conference_on_exit,
        );
        push_bool(&mut form, "Coaching", self.coaching);
        push_opt(&mut form, "CallSidToCoach", &self.call_sid_to_coach);
        if form.is_empty() {
            return Err(TwilioError::Invalid(
                "the participant update changes nothing".into(),
            ));
        }
        if self.hold == Some(true) && self.end_conference_on_exit.is_some() {
            return Err(TwilioError::Invalid(
                "EndConferenceOnExit cannot change while the participant is put on hold".into(),
            ));
        }
        Ok(form)
    }
}

/// The server's `Retry-After` in seconds, when present and numeric.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

fn api_error(status: StatusCode, body: &[u8]) -> TwilioError {
    let parsed = serde_json::from_slice::<ApiErrorBody>(body).ok();
    let (code, message, more_info) = match parsed {
        Some(p) => (p.code, p.message, p.more_info),
        None => (None, None, None),
    };
    // Not Twilio's error JSON (a proxy's page, a mock's problem report): its start.
    let message = message.unwrap_or_else(|| {
        let text = String::from_utf8_lossy(body);
        let snippet: String = text.trim().chars().take(300).collect();
        if snippet.is_empty() {
            status.canonical_reason().unwrap_or("error").to_owned()
        } else {
            snippet
        }
    });
    TwilioError::Api {
        status: status.as_u16(),
        code,
        message,
        more_info,
    }
}

impl TwilioClient {
    /// A client for `base_url` (`https://api.twilio.com`, or a fake's or mock's URL).
    pub fn new(base_url: &str, auth: TwilioAuth, retry: RetryPolicy) -> Result<Self, TwilioError> {
        let base_url = base_url.trim_end_matches('/');
        if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
            return Err(TwilioError::Invalid(format!(
                "the Twilio base URL {base_url:?} is not an http(s) URL"
            )));
        }
        segment("the account SID", auth.account_sid())?;
        let (user, password) = auth.basic();
        require("the Basic auth user", user)?;
        require("the Basic auth password", password)?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(TwilioError::Transport)?;
        Ok(TwilioClient {
            http,
            base_url: base_url.to_owned(),
            auth: Arc::new(auth),
            retry,
        })
    }

    /// The account the client acts for.
    pub fn account_sid(&self) -> &str {
        self.auth.account_sid()
    }

    /// The base URL requests go to.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    fn account_path(&self, rest: &str) -> String {
        format!("/2010-04-01/Accounts/{}/{rest}", self.auth.account_sid())
    }

    /// Places an outbound call.
    pub async fn create_call(&self, req: &CreateCall) -> Result<CallResource, TwilioError> {
        let form = req.form()?;
        let path = self.account_path("Calls.json");
        self.json(Method::POST, &path, Some(form), Repeat::Create, "call")
            .await
    }

    /// Redirects a live call to new TwiML, or ends it.
    pub async fn update_call(
        &self,
        call_sid: &str,
        req: &UpdateCall,
    ) -> Result<CallResource, TwilioError> {
        let form = req.form()?;
        let path = self.account_path(&format!(
            "Calls/{}.json",
            segment("the call SID", call_sid)?
        ));
        self.json(Method::POST, &path, Some(form), Repeat::Safe, "call")
            .await
    }

    /// Dials someone into a conference (by its `CF…` SID).
    pub async fn create_participant(
        &self,
        conference_sid: &str,
        req: &CreateParticipant,
    ) -> Result<ParticipantResource, TwilioError> {
        let form = req.form()?;
        let path = self.account_path(&format!(
            "Conferences/{}/Participants.json",
            segment("the conference SID", conference_sid)?
        ));
        self.json(
            Method::POST,
            &path,
            Some(form),
            Repeat::Create,
            "participant",
        )
        .await
    }

    /// Holds, mutes, announces to, ... a participant (by call SID or label).
    pub async fn update_participant(
        &self,
        conference_sid: &str,
        call_sid: &str,
        req: &UpdateParticipant,
    ) -> Result<ParticipantResource, TwilioError> {
        let form = req.form()?;
        let path = self.account_path(&format!(
            "Conferences/{}/Participants/{}.json",
            segment("the conference SID", conference_sid)?,
            segment("the participant's call SID or label", call_sid)?
        ));
        self.json(Method::POST, &path, Some(form), Repeat::Safe, "participant")
            .await
    }

    /// Removes a participant from a conference (its call ends). A participant that is
    /// already gone gives an error for which [`TwilioError::is_not_found`] is true.
    pub async fn remove_participant(
        &self,
        conference_sid: &str,
        call_sid: &str,
    ) -> Result<(), TwilioError> {
        let path = self.account_path(&format!(
            "Conferences/{}/Participants/{}.json",
            segment("the conference SID", conference_sid)?,
            segment("the participant's call SID or label", call_sid)?
        ));
        self.send(Method::DELETE, &path, None, Repeat::Safe)
            .await
            .map(drop)
    }

    /// The SIDs of the conferences named `friendly_name` with `status` (`init`,
    /// `in-progress`, `completed`), newest first (`GET Conferences.json`).
    pub async fn find_conferences(
        &self,
        friendly_name: &str,
        status: &str,
    ) -> Result<Vec<String>, TwilioError> {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("FriendlyName", friendly_name)
            .append_pair("Status", status)
            .finish();
        let path = self.account_path(&format!("Conferences.json?{query}"));
        let page: ConferencePage = self
            .json(Method::GET, &path, None, Repeat::Safe, "conference list")
            .await?;
        Ok(page.conferences.into_iter().filter_map(|c| c.sid).collect())
    }

    /// Ends a conference for everyone in it (`Status=completed`).
    pub async fn end_conference(&self, conference_sid: &str) -> Result<(), TwilioError> {
        let path = self.account_path(&format!(
            "Conferences/{}.json",
            segment("the conference SID", conference_sid)?
        ));
        let form: Form = vec![("Status", "completed".into())];
        self.send(Method::POST, &path, Some(form), Repeat::Safe)
            .await
            .map(drop)
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        form: Option<Form>,
        repeat: Repeat,
        what: &'static str,
    ) -> Result<T, TwilioError> {
        let body = self.send(method, path, form, repeat).await?;
        serde_json::from_slice(&body).map_err(|source| TwilioError::Decode { what, source })
    }

    /// [`Self::send_retrying`], counting a failure in the `twilio` provider errors metric.
    async fn send(
        &self,
        method: Method,
        path: &str,
        form: Option<Form>,
        repeat: Repeat,
    ) -> Result<Vec<u8>, TwilioError> {
        let res = self.send_retrying(method, path, form, repeat).await;
        if res.is_err() {
            crate::metrics::metrics().provider_error("twilio");
        }
        res
    }

    /// Sends one request with the retry rules of the module docs; the body of a 2xx.
    async fn send_retrying(
        &self,
        method: Method,
        path: &str,
        form: Option<Form>,
        repeat: Repeat,
    ) -> Result<Vec<u8>, TwilioError> {
        let url = format!("{}{path}", self.base_url);
        let (user, password) = self.auth.basic();
        let mut retries = 0u32;
        loop {
            let mut request = self
                .http
                .request(method.clone(), &url)
                .basic_auth(user, Some(password))
                .header(ACCEPT, "application/json")
                .timeout(self.retry.timeout);
            if let Some(form) = &form {
                request = request.form(form);
            }
            let can_retry = retries < self.retry.max_retries;
            let outcome = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let hinted = retry_after(response.headers());
                    match response.bytes().await {
                        Ok(body) => Ok((status, hinted, body)),
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            };
            // The wait before the next attempt: the server's Retry-After when it gave one.
            let wait = |hinted: Option<Duration>| {
                hinted
                    .map(|d| d.min(self.retry.max_delay))
                    .unwrap_or_else(|| self.retry.backoff(retries))
            };
            let (delay, cause) = match outcome {
                Ok((status, _, body)) if status.is_success() => return Ok(body.to_vec()),
                Ok((status, hinted, _)) if status == StatusCode::TOO_MANY_REQUESTS => {
                    if !can_retry {
                        return Err(TwilioError::RateLimited { retries });
                    }
                    (wait(hinted), format!("HTTP {status}"))
                }
                Ok((status, hinted, body)) => {
                    let retryable = status.is_server_error()
                        && (repeat == Repeat::Safe || status == StatusCode::SERVICE_UNAVAILABLE);
                    if !(retryable && can_retry) {
                        return Err(api_error(status, &body));
                    }
                    (wait(hinted), format!("HTTP {status}"))
                }
                Err(e) => {
                    // A connection that never opened carried nothing: even a create may
                    // be sent again. Anything later may have reached Twilio.
                    let retryable = repeat == Repeat::Safe || (e.is_connect() && !e.is_timeout());
                    if !(retryable && can_retry) {
                        return Err(TwilioError::Transport(e));
                    }
                    let cause = if e.is_timeout() {
                        "timeout"
                    } else if e.is_connect() {
                        "connection failed"
                    } else {
                        "transport error"
                    };
                    (wait(None), cause.to_owned())
                }
            };
            retries += 1;
            tracing::warn!(
                method = %method,
                path,
                cause = %cause,
                retry = retries,
                max_retries = self.retry.max_retries,
                delay_ms = delay.as_millis() as u64,
                "Twilio request failed; retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }
}

/// A page of `GET Conferences.json` (only what the switchboard reads).
#[derive(Debug, Deserialize)]
struct ConferencePage {
    #[serde(default)]
    conferences: Vec<ConferenceRef>,
}

/// One conference of a list page.
#[derive(Debug, Deserialize)]
struct ConferenceRef {
    sid: Option<String>,
}

#[cfg(test)]
mod tests;
