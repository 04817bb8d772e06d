//! WebSocket sessions of agents and callers: authentication, replay, heartbeat, push.
//!
//! `GET /ws?token=..&since=..` (the token may instead come as `Authorization: Bearer ..`)
//! upgrades to a WebSocket once the token is valid ([`SessionKeys::verify`]), `since` parses
//! ([`Since::parse`]) and the app allows the party in ([`SessionHandler::authorize`]);
//! otherwise it answers `401`, `400` or `403`/`404` with a JSON `{code, message}` body.
//!
//! After the upgrade, one task per session:
//! 1. registers with the [`Hub`] (so nothing published from now on is missed), calls
//!    [`SessionHandler::connected`] and sends a `session.ready` control frame;
//! 2. sends the stored events the party missed ([`SessionHandler::replay`], filtered to the
//!    party's audience and to what `since` says the client has);
//! 3. forwards live frames from the hub, skipping any `(callId, seq)` the replay already
//!    sent (a frame published after registering whose event was stored before the replay
//!    read), so the client sees every event once, with no gap;
//! 4. answers client messages (`ping`, and [`ClientMessage`]s through
//!    [`SessionHandler::message`]) with `pong`, `reply` or `error` frames;
//! 5. pings every [`HEARTBEAT_INTERVAL`] and closes a client silent for [`CLIENT_TIMEOUT`];
//! 6. on any exit unregisters from the hub, then calls [`SessionHandler::disconnected`].
//!
//! Server frames are JSON text. Events (and the control frame `session.ready`) have the
//! event shape `{seq, callId, type, at, data}` (control frames with `seq` 0 and `callId`
//! null); answers to client messages are `{"type":"pong"}`,
//! `{"type":"reply","id":..,"ok":true,"data":..}` and
//! `{"type":"error","id":..,"code":..,"message":..}`.
//!
//! Everything is bounded: client frames (and reassembled messages) to [`MAX_FRAME_SIZE`],
//! queued live frames to the hub's outbox capacity (a client that cannot keep up is closed
//! with a policy-violation close "outbox overflow"), every socket write to
//! [`CLIENT_TIMEOUT`] and every handler call to a timeout. A bad client message earns an
//! `error` frame, never a closed socket.
//!
//! Limits against hostile clients: a party (one agent, or the caller of one call) holds at
//! most [`MAX_SESSIONS_PER_PARTY`] sessions (one more is refused before the upgrade with
//! `429 too_many_sessions`); a session may send [`MESSAGE_BURST`] messages at once and
//! [`MESSAGES_PER_SEC`] a second after that (faster, and it is closed with 1008 "message
//! rate exceeded").
//!
//! When the server shuts down ([`crate::shutdown`]), every session is closed with 1012
//! "server restarting; reconnect", and new sessions are refused with `503`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, Session};
use async_trait::async_trait;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::time::{timeout, Instant};

use crate::auth::SessionKeys;
use crate::hub::{Disconnect, Hub, Outbox, SessionId};
use crate::model::{AgentStatus, Event, PartyRef, WireEvent};

/// Heartbeat constants (like actix's chat-actorless example).
///
/// The server pings every `HEARTBEAT_INTERVAL`...
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// ...and closes a client from which nothing (not even a pong) arrived for `CLIENT_TIMEOUT`.
/// A socket write that cannot complete within this time closes the session too.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(15);

/// The largest client frame, and the largest client message after reassembling
/// continuation frames, in bytes.
pub const MAX_FRAME_SIZE: usize = 64 * 1024;

/// The most WebSocket sessions one party (an agent, or the caller of one call) may hold.
pub const MAX_SESSIONS_PER_PARTY: usize = 8;

/// How many client messages a session may send at once (the token bucket's size)...
pub const MESSAGE_BURST: f64 = 60.0;
/// ...and how many a second after that (its refill rate).
pub const MESSAGES_PER_SEC: f64 = 20.0;

/// How many `callId:seq` pairs `?since=` may hold.
pub const MAX_SINCE_ENTRIES: usize = 256;

/// The longest call id accepted in `?since=`.
const MAX_CALL_ID_LEN: usize = 128;

/// How long a [`SessionHandler`] call may take before the client gets a `timeout` error.
const HANDLER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the session waits to queue its close frame before giving up on the socket.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the rest of the app does for sessions.
#[async_trait]
pub trait SessionHandler: Send + Sync + 'static {
    /// May this party connect (e.g. the caller's call exists)? Called before upgrading.
    async fn authorize(&self, party: &PartyRef) -> Result<(), ClientError>;
    /// The session is registered with the hub (called after registering, before replay).
    async fn connected(&self, party: &PartyRef);
    /// The session is gone (called after unregistering).
    async fn disconnected(&self, party: &PartyRef);
    /// Stored events this party may see and missed, per `since`.
    async fn replay(&self, party: &PartyRef, since: &Since) -> Result<Vec<Event>, ClientError>;
    /// A client message (everything but ping); the Ok value is sent back as the reply's data.
    async fn message(
        &self,
        party: &PartyRef,
        msg: ClientMessage,
    ) -> Result<serde_json::Value, ClientError>;
}

/// `{code, message}` sent to the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ClientError {
    /// Machine-readable code (`unauthorized`, `not_found`, `bad_message`, ...).
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

impl ClientError {
    /// An error with the given code and message.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        ClientError {
            code: code.into(),
            message: message.into(),
        }
    }

    /// `bad_message`: the client sent something that is not a valid message.
    pub fn bad_message(message: impl Into<String>) -> Self {
        Self::new("bad_message", message)
    }

    /// `forbidden`: the party may not do that.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new("forbidden", message)
    }

    /// `not_found`: the thing named does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new("not_found", message)
    }

    fn unauthorized(message: impl Into<String>) -> Self {
        Self::new("unauthorized", message)
    }

    fn invalid_since(message: impl Into<String>) -> Self {
        Self::new("invalid_since", message)
    }

    fn timeout(what: &str) -> Self {
        Self::new("timeout", format!("{what} took too long"))
    }
}

/// `?since=` : either one number (for every call of the party) or `callId:seq,callId:seq`.
///
/// The client has every event up to and including that `seq`; replay sends what follows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Since {
    /// No `since`: the client has nothing.
    #[default]
    None,
    /// The client has events up to this `seq` of every call of the party (the natural form
    /// for a caller, whose party has one call).
    All(u64),
    /// The client has events up to the given `seq` of each listed call (and none of others).
    PerCall(HashMap<String, u64>),
}

impl Since {
    /// Parses `?since=`: empty means [`Since::None`], a number [`Since::All`], and
    /// `callId:seq,callId:seq` (at most [`MAX_SINCE_ENTRIES`], each call once)
    /// [`Since::PerCall`]. Anything else is an `invalid_since` error.
    pub fn parse(raw: &str) -> Result<Since, ClientError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Ok(Since::None);
        }
        if raw.bytes().all(|b| b.is_ascii_digit()) {
            return raw
                .parse()
                .map(Since::All)
                .map_err(|_| ClientError::invalid_since("since is too large"));
        }
        let mut per_call = HashMap::new();
        for (i, entry) in raw.split(',').enumerate() {
            if i >= MAX_SINCE_ENTRIES {
                return Err(ClientError::invalid_since(format!(
                    "since lists more than {MAX_SINCE_ENTRIES} calls"
                )));
            }
            let entry = entry.trim();
            let Some((call_id, seq)) = entry.rsplit_once(':') else {
                return Err(ClientError::invalid_since(format!(
                    "expected a number or callId:seq pairs separated by commas, got {:?}",
                    truncate(entry, 64)
                )));
            };
            let call_id = call_id.trim();
            let valid_id = !call_id.is_empty()
                && call_id.len() <= MAX_CALL_ID_LEN
                && call_id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !valid_id {
                return Err(ClientError::invalid_since(format!(
                    "invalid call id {:?} in since",
                    truncate(call_id, 64)
                )));
            }
            let seq = seq.trim();
            let seq: u64 = seq
                .parse()
                .ok()
                .filter(|_| seq.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| {
                    ClientError::invalid_since(format!(
                        "invalid seq {:?} for call {call_id} in since",
                        truncate(seq, 32)
                    ))
                })?;
            if per_call.insert(call_id.to_string(), seq).is_some() {
                return Err(ClientError::invalid_since(format!(
                    "call {call_id} is listed twice in since"
                )));
            }
        }
        Ok(Since::PerCall(per_call))
    }

    /// The last `seq` of `call_id` the client says it has (0 if none).
    pub fn floor(&self, call_id: &str) -> u64 {
        match self {
            Since::None => 0,
            Since::All(seq) => *seq,
            Since::PerCall(map) => map.get(call_id).copied().unwrap_or(0),
        }
    }
}

impl FromStr for Since {
    type Err = ClientError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Since::parse(s)
    }
}

/// Client → server messages, JSON `{"type": ..., "id": optional correlation id, ...}`
/// (camelCase fields). `{"type":"ping"}` is answered by the session itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// `{"type":"ack","callId":..,"moveId":..}` the client arrived where a participant.move sent it.
    Ack {
        /// The call of the move.
        #[serde(rename = "callId")]
        call_id: String,
        /// The move being acknowledged.
        #[serde(rename = "moveId")]
        move_id: String,
    },
    /// `{"type":"presence","status":"available"|"away"}` (agents).
    Presence {
        /// The agent's new status.
        status: AgentStatus,
    },
    /// `{"type":"transcript","callId":..,"text":..,"source":..}`: a transcript chunk, from an
    /// agent of the call or the call's own caller (speaking as `caller`).
    Transcript {
        /// The call.
        #[serde(rename = "callId")]
        call_id: String,
        /// The text (1 to 10,000 characters).
        text: String,
        /// `manual` (default), `whisper`, `livekit` or `twilio`.
        #[serde(default)]
        source: crate::model::TranscriptSource,
    },
}

/// Shared state for the route.
pub struct WsContext {
    /// Where sessions register for live events.
    pub hub: Hub,
    /// Verifies session tokens.
    pub keys: SessionKeys,
    /// The app's side of sessions.
    pub handler: Arc<dyn SessionHandler>,
    /// Set when the server shuts down: sessions close with 1012 and new ones are refused.
    pub shutdown: crate::shutdown::Shutdown,
}

/// The route: `GET /ws?token=..&since=..` (token also accepted as `Authorization: Bearer`).
pub async fn ws_route(
    req: HttpRequest,
    body: web::Payload,
    ctx: web::Data<WsContext>,
) -> Result<HttpResponse, actix_web::Error> {
    serve(req, body, ctx, Timing::DEFAULT).await
}

/// The time limits of a session (constants in production, shorter in tests).
#[derive(Debug, Clone, Copy)]
struct Timing {
    heartbeat: Duration,
    client_timeout: Duration,
    handler_timeout: Duration,
    close_timeout: Duration,
}

impl Timing {
    const DEFAULT: Timing = Timing {
        heartbeat: HEARTBEAT_INTERVAL,
        client_timeout: CLIENT_TIMEOUT,
        handler_timeout: HANDLER_TIMEOUT,
        close_timeout: CLOSE_TIMEOUT,
    };
}

fn error_response(status: StatusCode, err: &ClientError) -> HttpResponse {
    let mut resp = HttpResponse::build(status);
    if status == StatusCode::UNAUTHORIZED {
        resp.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
    }
    resp.json(err)
}

/// The token from `?token=` or `Authorization: Bearer`.
fn presented_token<'a>(
    req: &'a HttpRequest,
    query: &'a HashMap<String, String>,
) -> Option<&'a str> {
    if let Some(token) = query
        .get("token")
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
    {
        return Some(token);
    }
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

async fn serve(
    req: HttpRequest,
    body: web::Payload,
    ctx: web::Data<WsContext>,
    timing: Timing,
) -> Result<HttpResponse, actix_web::Error> {
    let query = match web::Query::<HashMap<String, String>>::from_query(req.query_string()) {
        Ok(q) => q.into_inner(),
        Err(err) => {
            let err = ClientError::new("bad_request", format!("invalid query string: {err}"));
            return Ok(error_response(StatusCode::BAD_REQUEST, &err));
        }
    };
    if ctx.shutdown.is_triggered() {
        let err = ClientError::new("shutting_down", "the server is restarting; reconnect");
        return Ok(error_response(StatusCode::SERVICE_UNAVAILABLE, &err));
    }
    let Some(token) = presented_token(&req, &query) else {
        let err = ClientError::unauthorized("a session token is required (?token= or Bearer)");
        return Ok(error_response(StatusCode::UNAUTHORIZED, &err));
    };
    let party = match ctx.keys.verify(token) {
        Ok(party) => party,
        Err(err) => {
            tracing::debug!(error = %err, "websocket refused: bad session token");
            let err = ClientError::unauthorized("invalid or expired session token");
            return Ok(error_response(StatusCode::UNAUTHORIZED, &err));
        }
    };
    let since = match Since::parse(query.get("since").map_or("", String::as_str)) {
        Ok(since) => since,
        Err(err) => return Ok(error_response(StatusCode::BAD_REQUEST, &err)),
    };
    let open = match &party {
        PartyRef::Agent { agent_id } => ctx.hub.agent_session_count(agent_id),
        PartyRef::Caller { call_id } => ctx.hub.caller_session_count(call_id),
    };
    if open >= MAX_SESSIONS_PER_PARTY {
        let err = ClientError::new(
            "too_many_sessions",
            format!("at most {MAX_SESSIONS_PER_PARTY} sessions per party; close one first"),
        );
        return Ok(error_response(StatusCode::TOO_MANY_REQUESTS, &err));
    }
    match timeout(timing.handler_timeout, ctx.handler.authorize(&party)).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => {
            let status = match err.code.as_str() {
                "not_found" => StatusCode::NOT_FOUND,
                _ => StatusCode::FORBIDDEN,
            };
            return Ok(error_response(status, &err));
        }
        Err(_) => {
            let err = ClientError::timeout("authorization");
            return Ok(error_response(StatusCode::SERVICE_UNAVAILABLE, &err));
        }
    }

    let (response, session, stream) = actix_ws::handle(&req, body)?;
    let stream = stream
        .max_frame_size(MAX_FRAME_SIZE)
        .aggregate_continuations()
        .max_continuation_size(MAX_FRAME_SIZE);
    let ctx = ctx.into_inner();
    actix_web::rt::spawn(run_session(ctx, party, since, session, stream, timing));
    Ok(response)
}

/// Why a session ended.
#[derive(Debug)]
enum Exit {
    /// The client sent a close frame (with this code, if any).
    ClientClosed(Option<CloseCode>),
    /// The client's side of the connection ended without a close frame.
    StreamEnded,
    /// The client broke the protocol (e.g. a frame over [`MAX_FRAME_SIZE`]).
    Protocol(actix_ws::ProtocolError),
    /// The hub let go of the session.
    Hub(Disconnect),
    /// Nothing arrived from the client for the client timeout.
    HeartbeatTimeout,
    /// A socket write did not complete within the client timeout.
    WriteTimeout,
    /// The socket is gone.
    SocketGone,
    /// The replay failed; the client was told and should reconnect.
    ReplayFailed,
    /// The client sent messages faster than [`MESSAGES_PER_SEC`] after a [`MESSAGE_BURST`].
    RateExceeded,
    /// The server is shutting down; the client should reconnect.
    Shutdown,
}

impl Exit {
    /// The close frame to send (`None`: do not try).
    fn close_reason(&self) -> Option<CloseReason> {
        let reason = |code, text: &str| CloseReason {
            code,
            description: Some(text.to_string()),
        };
        Some(match self {
            // Echo the client's code when it is one a server may send back.
            Exit::ClientClosed(Some(CloseCode::Away)) => CloseCode::Away.into(),
            Exit::ClientClosed(_) => CloseCode::Normal.into(),
            Exit::StreamEnded | Exit::SocketGone => return None,
            Exit::Protocol(actix_ws::ProtocolError::Overflow) => {
                reason(CloseCode::Size, "frame too large")
            }
            Exit::Protocol(_) => reason(CloseCode::Protocol, "protocol error"),
            Exit::Hub(Disconnect::Overflow) => reason(CloseCode::Policy, "outbox overflow"),
            Exit::Hub(Disconnect::Unregistered) => reason(CloseCode::Normal, "session ended"),
            Exit::HeartbeatTimeout => reason(CloseCode::Policy, "heartbeat timeout"),
            Exit::WriteTimeout => reason(CloseCode::Policy, "client too slow"),
            Exit::ReplayFailed => reason(CloseCode::Error, "replay failed"),
            Exit::RateExceeded => reason(CloseCode::Policy, "message rate exceeded"),
            Exit::Shutdown => reason(
                CloseCode::Other(crate::shutdown::RESTART_CLOSE_CODE),
                crate::shutdown::RESTART_CLOSE_REASON,
            ),
        })
    }
}

/// One session, from registering to `disconnected`.
async fn run_session(
    ctx: Arc<WsContext>,
    party: PartyRef,
    since: Since,
    session: Session,
    mut stream: AggregatedMessageStream,
    timing: Timing,
) {
    let (id, outbox) = ctx.hub.register(party.clone());
    tracing::debug!(session = %id, ?party, "websocket session opened");
    ctx.handler.connected(&party).await;
    let mut conn = Conn {
        id,
        party,
        since,
        session,
        outbox,
        timing,
        handler: Arc::clone(&ctx.handler),
        shutdown: ctx.shutdown.clone(),
    };
    let Err(exit) = conn.drive(&mut stream).await;
    let Conn {
        id,
        party,
        session,
        outbox,
        ..
    } = conn;
    ctx.hub.unregister(id);
    drop(outbox);
    tracing::debug!(session = %id, ?party, ?exit, "websocket session closed");
    if let Some(reason) = exit.close_reason() {
        // Queue the close frame without holding up `disconnected`: a client that does not
        // read may never take it, so the wait is bounded.
        actix_web::rt::spawn(async move {
            let _ = timeout(timing.close_timeout, session.close(Some(reason))).await;
            drop(stream);
        });
    }
    ctx.handler.disconnected(&party).await;
}

/// A session's state while it runs.
struct Conn {
    id: SessionId,
    party: PartyRef,
    since: Since,
    session: Session,
    outbox: Outbox,
    timing: Timing,
    handler: Arc<dyn SessionHandler>,
    shutdown: crate::shutdown::Shutdown,
}

/// A token bucket of client messages: [`MESSAGE_BURST`] at once, [`MESSAGES_PER_SEC`] after.
#[derive(Debug)]
struct RateLimit {
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    fn new() -> Self {
        RateLimit {
            tokens: MESSAGE_BURST,
            last: Instant::now(),
        }
    }

    /// Takes one token; false when the bucket is empty.
    fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * MESSAGES_PER_SEC;
        self.tokens = (self.tokens + refill).min(MESSAGE_BURST);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Awaits a socket write, giving up when the hub lets go of the session or the write does
/// not complete within `limit`.
async fn guarded(
    outbox: &mut Outbox,
    limit: Duration,
    write: impl Future<Output = Result<(), actix_ws::Closed>>,
) -> Result<(), Exit> {
    tokio::select! {
        biased;
        reason = outbox.disconnected() => Err(Exit::Hub(reason)),
        sent = timeout(limit, write) => match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_closed)) => Err(Exit::SocketGone),
            Err(_elapsed) => Err(Exit::WriteTimeout),
        },
    }
}

impl Conn {
    async fn send(&mut self, text: &str) -> Result<(), Exit> {
        let limit = self.timing.client_timeout;
        guarded(&mut self.outbox, limit, self.session.text(text)).await
    }

    async fn send_json(&mut self, value: &Value) -> Result<(), Exit> {
        self.send(&value.to_string()).await
    }

    /// Sends the session's frames until it ends; returns why.
    async fn drive(&mut self, stream: &mut AggregatedMessageStream) -> Result<Infallible, Exit> {
        let ready = json!({
            "seq": 0,
            "callId": null,
            "type": "session.ready",
            "at": Utc::now(),
            "data": {
                "party": &self.party,
                "heartbeatSecs": self.timing.heartbeat.as_secs(),
            },
        });
        self.send_json(&ready).await?;

        let floors = self.replay().await?;

        let mut heartbeat = tokio::time::interval_at(
            Instant::now() + self.timing.heartbeat,
            self.timing.heartbeat,
        );
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_seen = Instant::now();
        let mut rate = RateLimit::new();
        let party_kind = match &self.party {
            PartyRef::Agent { .. } => "agent",
            PartyRef::Caller { .. } => "caller",
        };
        let shutdown = self.shutdown.clone();
        loop {
            tokio::select! {
                _ = shutdown.wait() => return Err(Exit::Shutdown),
                frame = self.outbox.recv() => {
                    let frame = frame.map_err(Exit::Hub)?;
                    // Published after registering, so newer than anything the client had
                    // before connecting; only what the replay sent may repeat.
                    let already_sent = frame
                        .call_id()
                        .and_then(|call| floors.get(call))
                        .is_some_and(|&floor| frame.seq() <= floor);
                    if !already_sent {
                        self.send(frame.text()).await?;
                        crate::metrics::metrics()
                            .observe_push(party_kind, frame.published().elapsed());
                    }
                }
                msg = stream.recv() => {
                    last_seen = Instant::now();
                    if matches!(
                        msg,
                        Some(Ok(AggregatedMessage::Text(_) | AggregatedMessage::Binary(_)
                            | AggregatedMessage::Ping(_)))
                    ) && !rate.take()
                    {
                        return Err(Exit::RateExceeded);
                    }
                    match msg {
                        Some(Ok(AggregatedMessage::Text(text))) => self.on_text(&text).await?,
                        Some(Ok(AggregatedMessage::Binary(_))) => {
                            let err = ClientError::bad_message(
                                "binary frames are not supported; send JSON text",
                            );
                            self.send_json(&error_frame(&Value::Null, &err)).await?;
                        }
                        Some(Ok(AggregatedMessage::Ping(bytes))) => {
                            let limit = self.timing.client_timeout;
                            guarded(&mut self.outbox, limit, self.session.pong(&bytes)).await?;
                        }
                        Some(Ok(AggregatedMessage::Pong(_))) => {}
                        Some(Ok(AggregatedMessage::Close(reason))) => {
                            return Err(Exit::ClientClosed(reason.map(|r| r.code)));
                        }
                        Some(Err(err)) => return Err(Exit::Protocol(err)),
                        None => return Err(Exit::StreamEnded),
                    }
                }
                _ = heartbeat.tick() => {
                    if last_seen.elapsed() >= self.timing.client_timeout {
                        return Err(Exit::HeartbeatTimeout);
                    }
                    let limit = self.timing.client_timeout;
                    guarded(&mut self.outbox, limit, self.session.ping(b"")).await?;
                }
            }
        }
    }

    /// Sends the replay; returns the highest `seq` sent per call.
    async fn replay(&mut self) -> Result<HashMap<String, u64>, Exit> {
        let handler = Arc::clone(&self.handler);
        let replay = tokio::select! {
            biased;
            reason = self.outbox.disconnected() => return Err(Exit::Hub(reason)),
            res = timeout(self.timing.handler_timeout, handler.replay(&self.party, &self.since)) => {
                res.unwrap_or_else(|_| Err(ClientError::timeout("replay")))
            }
        };
        let events = match replay {
            Ok(events) => events,
            Err(err) => {
                tracing::warn!(session = %self.id, error = %err, "replay failed");
                self.send_json(&error_frame(&Value::Null, &err)).await?;
                return Err(Exit::ReplayFailed);
            }
        };
        let mut floors: HashMap<String, u64> = HashMap::new();
        for event in &events {
            if !visible(&self.party, event) || event.seq <= self.since.floor(&event.call_id) {
                continue;
            }
            let text = match serde_json::to_string(&WireEvent::from(event)) {
                Ok(text) => text,
                Err(err) => {
                    tracing::error!(error = %err, "could not serialize a replayed event");
                    continue;
                }
            };
            self.send(&text).await?;
            let floor = floors.entry(event.call_id.clone()).or_insert(0);
            *floor = (*floor).max(event.seq);
        }
        Ok(floors)
    }

    /// Answers one text message.
    async fn on_text(&mut self, text: &str) -> Result<(), Exit> {
        let (id, parsed) = parse_client_text(text);
        let frame = match parsed {
            Ok(Incoming::Ping) => {
                let mut pong = json!({ "type": "pong" });
                if !id.is_null() {
                    pong["id"] = id;
                }
                pong
            }
            Ok(Incoming::Message(msg)) => match self.dispatch(msg).await {
                Ok(data) => json!({ "type": "reply", "id": id, "ok": true, "data": data }),
                Err(err) => error_frame(&id, &err),
            },
            Err(err) => error_frame(&id, &err),
        };
        self.send_json(&frame).await
    }

    /// Checks a message against the party and hands it to the handler.
    async fn dispatch(&self, msg: ClientMessage) -> Result<Value, ClientError> {
        match (&self.party, &msg) {
            (PartyRef::Caller { .. }, ClientMessage::Presence { .. }) => {
                return Err(ClientError::forbidden("only agents set a presence"));
            }
            (PartyRef::Caller { call_id: own }, ClientMessage::Transcript { call_id, .. })
                if own != call_id =>
            {
                return Err(ClientError::not_found(format!("no call {call_id}")));
            }
            (PartyRef::Caller { call_id: own }, ClientMessage::Ack { call_id, .. })
                if own != call_id =>
            {
                return Err(ClientError::forbidden(format!(
                    "a caller may only acknowledge moves of its own call ({own})"
                )));
            }
            _ => {}
        }
        // Run the handler to completion on its own task, so neither the timeout nor the end
        // of the session cancels it half-way.
        let handler = Arc::clone(&self.handler);
        let party = self.party.clone();
        let task = actix_web::rt::spawn(async move { handler.message(&party, msg).await });
        match timeout(self.timing.handler_timeout, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join_err)) => {
                tracing::error!(session = %self.id, error = %join_err, "message handler failed");
                Err(ClientError::new(
                    "internal",
                    "the message could not be handled",
                ))
            }
            Err(_) => Err(ClientError::timeout("handling the message")),
        }
    }
}

/// Whether `party` is in the audience of `event` (and, for a caller, it is their call).
fn visible(party: &PartyRef, event: &Event) -> bool {
    match party {
        PartyRef::Caller { call_id } => *call_id == event.call_id && event.audience.caller,
        PartyRef::Agent { .. } => event.audience.includes(party),
    }
}

/// A parsed client message.
#[derive(Debug, PartialEq)]
enum Incoming {
    Ping,
    Message(ClientMessage),
}

/// Parses a client text frame; returns its correlation id (`null` if none or unusable)
/// and the message or what is wrong with it.
fn parse_client_text(text: &str) -> (Value, Result<Incoming, ClientError>) {
    let value: Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(err) => {
            return (
                Value::Null,
                Err(ClientError::bad_message(format!("invalid JSON: {err}"))),
            )
        }
    };
    let Value::Object(obj) = &value else {
        return (
            Value::Null,
            Err(ClientError::bad_message("expected a JSON object")),
        );
    };
    let id = match obj.get("id") {
        None | Some(Value::Null) => Value::Null,
        Some(id @ (Value::String(_) | Value::Number(_))) => id.clone(),
        Some(_) => {
            return (
                Value::Null,
                Err(ClientError::bad_message("id must be a string or a number")),
            )
        }
    };
    let parsed = match obj.get("type") {
        None => Err(ClientError::bad_message("missing field `type`")),
        Some(Value::String(kind)) if kind == "ping" => Ok(Incoming::Ping),
        Some(Value::String(_)) => ClientMessage::deserialize(&value)
            .map(Incoming::Message)
            .map_err(|err| ClientError::bad_message(err.to_string())),
        Some(_) => Err(ClientError::bad_message("field `type` must be a string")),
    };
    (id, parsed)
}

/// Parses a client text frame as a session does: `Ok(None)` for a ping, the message, or
/// the `error` the client would get (public for the fuzz targets).
pub fn parse_client_message(text: &str) -> Result<Option<ClientMessage>, ClientError> {
    match parse_client_text(text).1? {
        Incoming::Ping => Ok(None),
        Incoming::Message(msg) => Ok(Some(msg)),
    }
}

/// `{"type":"error","id":..,"code":..,"message":..}`.
fn error_frame(id: &Value, err: &ClientError) -> Value {
    json!({ "type": "error", "id": id, "code": err.code, "message": err.message })
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use actix_web::{App, HttpServer};
    use awc::error::{WsClientError, WsProtocolError};
    use awc::ws::{Frame, Message};
    use futures_util::{Sink, SinkExt, Stream, StreamExt};

    use super::*;
    use crate::model::Audience;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const WAIT: Duration = Duration::from_secs(10);

    /// A [`SessionHandler`] that records every call and replays what it is given.
    struct Recorder {
        hub: Hub,
        log: Mutex<Vec<String>>,
        replay: Mutex<Vec<Event>>,
        /// Published from `connected`, i.e. between registering and replaying.
        publish_on_connect: Mutex<Vec<Event>>,
        sinces: Mutex<Vec<Since>>,
    }

    impl Recorder {
        fn log(&self) -> Vec<String> {
            self.log.lock().unwrap().clone()
        }

        fn push(&self, entry: String) {
            self.log.lock().unwrap().push(entry);
        }
    }

    fn who(party: &PartyRef) -> String {
        match party {
            PartyRef::Agent { agent_id } => format!("agent:{agent_id}"),
            PartyRef::Caller { call_id } => format!("caller:{call_id}"),
        }
    }

    #[async_trait]
    impl SessionHandler for Recorder {
        async fn authorize(&self, party: &PartyRef) -> Result<(), ClientError> {
            match party {
                PartyRef::Caller { call_id } if call_id == "call-missing" => {
                    Err(ClientError::not_found("no such call"))
                }
                PartyRef::Agent { agent_id } if agent_id == "banned" => {
                    Err(ClientError::forbidden("agent is inactive"))
                }
                _ => Ok(()),
            }
        }

        async fn connected(&self, party: &PartyRef) {
            self.push(format!("connected {}", who(party)));
            let events = self.publish_on_connect.lock().unwrap().clone();
            for event in &events {
                self.hub.publish(event);
            }
        }

        async fn disconnected(&self, party: &PartyRef) {
            self.push(format!("disconnected {}", who(party)));
        }

        async fn replay(&self, party: &PartyRef, since: &Since) -> Result<Vec<Event>, ClientError> {
            self.push(format!("replay {}", who(party)));
            self.sinces.lock().unwrap().push(since.clone());
            Ok(self.replay.lock().unwrap().clone())
        }

        async fn message(
            &self,
            party: &PartyRef,
            msg: ClientMessage,
        ) -> Result<Value, ClientError> {
            self.push(format!("message {} {msg:?}", who(party)));
            match msg {
                ClientMessage::Ack { move_id, .. } if move_id == "slow" => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    self.push(format!("finished {move_id}"));
                    Ok(json!({ "acked": move_id }))
                }
                ClientMessage::Ack { move_id, .. } if move_id == "unknown" => {
                    Err(ClientError::not_found("no such move"))
                }
                ClientMessage::Ack { move_id, .. } => Ok(json!({ "acked": move_id })),
                ClientMessage::Presence { status } => Ok(json!({ "status": status })),
                ClientMessage::Transcript { text, .. } => Ok(json!({ "chars": text.len() })),
            }
        }
    }

    struct TestServer {
        addr: std::net::SocketAddr,
        hub: Hub,
        keys: SessionKeys,
        recorder: Arc<Recorder>,
        server: actix_web::dev::ServerHandle,
        timing: Timing,
    }

    impl TestServer {
        async fn start(outbox_capacity: usize, timing: Timing) -> TestServer {
            let hub = Hub::new(outbox_capacity);
            let keys = SessionKeys::new(SECRET, 60);
            let recorder = Arc::new(Recorder {
                hub: hub.clone(),
                log: Mutex::default(),
                replay: Mutex::default(),
                publish_on_connect: Mutex::default(),
                sinces: Mutex::default(),
            });
            let data = web::Data::new(WsContext {
                hub: hub.clone(),
                keys: keys.clone(),
                handler: recorder.clone(),
                shutdown: crate::shutdown::Shutdown::new(),
            });
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let server = HttpServer::new(move || {
                App::new().app_data(data.clone()).route(
                    "/ws",
                    web::get().to(
                        move |req: HttpRequest, body: web::Payload, ctx: web::Data<WsContext>| {
                            serve(req, body, ctx, timing)
                        },
                    ),
                )
            })
            .workers(1)
            .disable_signals()
            .listen(listener)
            .unwrap()
            .run();
            let handle = server.handle();
            actix_web::rt::spawn(server);
            TestServer {
                addr,
                hub,
                keys,
                recorder,
                server: handle,
                timing,
            }
        }

        async fn default() -> TestServer {
            Self::start(64, Timing::DEFAULT).await
        }

        fn token(&self, party: &PartyRef) -> String {
            self.keys.issue(party.clone()).unwrap().token
        }

        fn url(&self, query: &str) -> String {
            format!("ws://{}/ws?{query}", self.addr)
        }

        /// Connects as `party` with extra query parameters; returns after `session.ready`.
        async fn connect(
            &self,
            party: &PartyRef,
            extra: &str,
        ) -> impl Stream<Item = Result<Frame, WsProtocolError>> + Sink<Message> + Unpin {
            let url = self.url(&format!("token={}{extra}", self.token(party)));
            let (_, mut ws) = awc::Client::new()
                .ws(url)
                .max_frame_size(1 << 20)
                .connect()
                .await
                .expect("websocket connects");
            let ready = next_json(&mut ws).await;
            assert_eq!(ready["type"], "session.ready");
            assert_eq!(ready["seq"], 0);
            assert_eq!(ready["callId"], Value::Null);
            assert_eq!(ready["data"]["party"], serde_json::to_value(party).unwrap());
            assert_eq!(
                ready["data"]["heartbeatSecs"],
                self.timing.heartbeat.as_secs()
            );
            ws
        }

        /// Waits until the recorder logged `entry`.
        async fn logged(&self, entry: &str) {
            let deadline = Instant::now() + WAIT;
            while !self.recorder.log().iter().any(|e| e == entry) {
                assert!(
                    Instant::now() < deadline,
                    "{entry:?} not logged: {:?}",
                    self.recorder.log()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }

        async fn stop(self) {
            self.server.stop(false).await;
        }
    }

    fn agent(id: &str) -> PartyRef {
        PartyRef::Agent {
            agent_id: id.into(),
        }
    }

    fn caller(call: &str) -> PartyRef {
        PartyRef::Caller {
            call_id: call.into(),
        }
    }

    fn event(call: &str, seq: u64, caller: bool, agents: &[&str], data: Value) -> Event {
        Event {
            seq,
            call_id: call.into(),
            kind: "test.event".into(),
            at: Utc::now(),
            data,
            audience: Audience {
                caller,
                agents: agents.iter().map(|a| a.to_string()).collect(),
            },
        }
    }

    /// The next frame, answering pings; fails after [`WAIT`].
    async fn next_frame<S>(ws: &mut S) -> Frame
    where
        S: Stream<Item = Result<Frame, WsProtocolError>> + Sink<Message> + Unpin,
    {
        loop {
            let frame = timeout(WAIT, ws.next())
                .await
                .expect("a frame in time")
                .expect("socket open")
                .expect("valid frame");
            match frame {
                Frame::Ping(bytes) => {
                    let _ = ws.send(Message::Pong(bytes)).await;
                }
                Frame::Pong(_) => {}
                other => return other,
            }
        }
    }

    /// The next text frame as JSON.
    async fn next_json<S>(ws: &mut S) -> Value
    where
        S: Stream<Item = Result<Frame, WsProtocolError>> + Sink<Message> + Unpin,
    {
        match next_frame(ws).await {
            Frame::Text(bytes) => serde_json::from_slice(&bytes).expect("JSON text"),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    async fn send_text<S>(ws: &mut S, text: &str)
    where
        S: Sink<Message> + Unpin,
    {
        if ws.send(Message::Text(text.into())).await.is_err() {
            panic!("send failed");
        }
    }

    #[actix_web::test]
    async fn refuses_missing_bad_and_expired_tokens_before_upgrading() {
        let srv = TestServer::default().await;
        let client = awc::Client::new();

        let mut resp = client
            .get(format!("http://{}/ws", srv.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["code"], "unauthorized");
        assert!(body["message"].as_str().unwrap().contains("token"));

        for query in [
            "token=not-a-jwt".to_string(),
            format!(
                "token={}",
                SessionKeys::new(SECRET, -60)
                    .issue(agent("a"))
                    .unwrap()
                    .token
            ),
            format!(
                "token={}",
                SessionKeys::new(b"another-secret-another-secret-xx", 60)
                    .issue(agent("a"))
                    .unwrap()
                    .token
            ),
        ] {
            match client.ws(srv.url(&query)).connect().await {
                Err(WsClientError::InvalidResponseStatus(status)) => {
                    assert_eq!(status, StatusCode::UNAUTHORIZED)
                }
                Err(other) => panic!("unexpected error {other:?}"),
                Ok(_) => panic!("connected with {query}"),
            }
        }
        assert!(srv.recorder.log().is_empty(), "no session was started");
        assert_eq!(srv.hub.stats().sessions, 0);

        // The token is accepted as a bearer header too.
        let (_, mut ws) = client
            .ws(srv.url(""))
            .bearer_auth(srv.token(&agent("a")))
            .connect()
            .await
            .unwrap();
        assert_eq!(next_json(&mut ws).await["type"], "session.ready");
        srv.stop().await;
    }

    #[actix_web::test]
    async fn refuses_unauthorized_parties_and_bad_since() {
        let srv = TestServer::default().await;
        let client = awc::Client::new();
        let get = |party: PartyRef, extra: &str| {
            let url = format!("http://{}/ws?token={}{extra}", srv.addr, srv.token(&party));
            client.get(url).send()
        };

        let mut resp = get(caller("call-missing"), "").await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert_eq!(resp.json::<Value>().await.unwrap()["code"], "not_found");

        let mut resp = get(agent("banned"), "").await.unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        assert_eq!(resp.json::<Value>().await.unwrap()["code"], "forbidden");

        for since in [
            "abc",
            "call-1:x",
            "call-1:1,call-1:2",
            ":5",
            "call-1:-1",
            "1,2",
        ] {
            let mut resp = get(agent("a"), &format!("&since={since}")).await.unwrap();
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "since={since}");
            assert_eq!(resp.json::<Value>().await.unwrap()["code"], "invalid_since");
        }
        srv.stop().await;
    }

    #[actix_web::test]
    async fn replays_then_streams_live_events_without_duplicates_or_gaps() {
        let srv = TestServer::default().await;
        *srv.recorder.replay.lock().unwrap() = vec![
            event("call-1", 1, false, &["a"], json!({"n": 1})),
            event("call-1", 2, false, &["a"], json!({"n": 2})),
            event("call-2", 1, false, &["b"], json!({"secret": true})),
            event("call-1", 3, false, &["a"], json!({"n": 3})),
        ];
        // Published between registering and replaying: 3 is also in the replay, 4 is not.
        *srv.recorder.publish_on_connect.lock().unwrap() = vec![
            event("call-1", 3, false, &["a"], json!({"n": 3})),
            event("call-1", 4, false, &["a"], json!({"n": 4})),
        ];
        let mut ws = srv.connect(&agent("a"), "&since=call-1:1").await;
        let mut got = Vec::new();
        for _ in 0..3 {
            let frame = next_json(&mut ws).await;
            assert_eq!(frame["callId"], "call-1");
            assert_eq!(frame["type"], "test.event");
            assert!(frame.get("audience").is_none());
            assert!(frame["at"].is_string());
            got.push(frame["seq"].as_u64().unwrap());
        }
        assert_eq!(got, vec![2, 3, 4]);
        assert_eq!(
            srv.recorder.sinces.lock().unwrap().clone(),
            vec![Since::PerCall(HashMap::from([("call-1".to_string(), 1)]))]
        );

        // Live: a repeat of something already sent is skipped, the rest flows in order.
        srv.hub
            .publish(&event("call-1", 3, false, &["a"], json!({"n": 3})));
        srv.hub
            .publish(&event("call-1", 5, false, &["a"], json!({"n": 5})));
        srv.hub
            .publish(&event("call-9", 1, false, &["b"], json!({"other": 1})));
        srv.hub.publish_to_agents(
            &["a".to_string()],
            &WireEvent {
                seq: 0,
                call_id: None,
                kind: "agent.presence".into(),
                at: Utc::now(),
                data: json!({"agentId": "a", "presence": "available"}),
            },
        );
        let five = next_json(&mut ws).await;
        assert_eq!(
            (five["callId"].clone(), five["seq"].clone()),
            (json!("call-1"), json!(5))
        );
        assert_eq!(five["data"], json!({"n": 5}));
        let presence = next_json(&mut ws).await;
        assert_eq!(presence["type"], "agent.presence");
        assert_eq!(presence["callId"], Value::Null);
        assert_eq!(presence["seq"], 0);

        let log = srv.recorder.log();
        assert_eq!(&log[..2], &["connected agent:a", "replay agent:a"]);
        srv.stop().await;
    }

    #[actix_web::test]
    async fn callers_get_only_their_calls_caller_events() {
        let srv = TestServer::default().await;
        *srv.recorder.replay.lock().unwrap() = vec![
            event("call-1", 1, true, &[], json!({})),
            event("call-1", 2, false, &["a"], json!({})),
            event("call-2", 1, true, &[], json!({})),
        ];
        let mut ws = srv.connect(&caller("call-1"), "").await;
        let first = next_json(&mut ws).await;
        assert_eq!(
            (first["callId"].clone(), first["seq"].clone()),
            (json!("call-1"), json!(1))
        );
        srv.hub.publish(&event("call-2", 2, true, &[], json!({})));
        srv.hub
            .publish(&event("call-1", 3, false, &["a"], json!({})));
        srv.hub.publish(&event("call-1", 4, true, &[], json!({})));
        let next = next_json(&mut ws).await;
        assert_eq!(
            (next["callId"].clone(), next["seq"].clone()),
            (json!("call-1"), json!(4))
        );
        srv.stop().await;
    }

    #[actix_web::test]
    async fn ping_pong_and_bad_messages_keep_the_socket_open() {
        let srv = TestServer::default().await;
        let mut ws = srv.connect(&agent("a"), "").await;

        send_text(&mut ws, r#"{"type":"ping"}"#).await;
        assert_eq!(next_json(&mut ws).await, json!({"type": "pong"}));

        let cases: &[(&str, Value, &str)] = &[
            ("not json", Value::Null, "invalid JSON"),
            ("[1,2]", Value::Null, "JSON object"),
            (r#"{"id":1}"#, json!(1), "type"),
            (r#"{"type":"nope","id":7}"#, json!(7), "nope"),
            (
                r#"{"type":"ack","id":"x","moveId":"m"}"#,
                json!("x"),
                "callId",
            ),
            (
                r#"{"type":"presence","status":"asleep"}"#,
                Value::Null,
                "asleep",
            ),
            (r#"{"type":"ping","id":{"a":1}}"#, Value::Null, "id"),
        ];
        for (text, id, needle) in cases {
            send_text(&mut ws, text).await;
            let reply = next_json(&mut ws).await;
            assert_eq!(reply["type"], "error", "{text}");
            assert_eq!(reply["code"], "bad_message", "{text}");
            assert_eq!(&reply["id"], id, "{text}");
            let message = reply["message"].as_str().unwrap();
            assert!(message.contains(needle), "{text}: {message}");
        }

        ws.send(Message::Binary(vec![1, 2, 3].into())).await.ok();
        let reply = next_json(&mut ws).await;
        assert_eq!(reply["code"], "bad_message");

        send_text(&mut ws, r#"{"type":"ping","id":"p1"}"#).await;
        assert_eq!(
            next_json(&mut ws).await,
            json!({"type": "pong", "id": "p1"})
        );
        assert_eq!(srv.hub.agent_session_count("a"), 1);
        assert!(!srv.recorder.log().iter().any(|e| e.starts_with("message")));
        srv.stop().await;
    }

    #[actix_web::test]
    async fn oversized_frames_close_with_size() {
        let srv = TestServer::default().await;
        let mut ws = srv.connect(&agent("a"), "").await;
        let big = format!(
            r#"{{"type":"ping","pad":"{}"}}"#,
            "x".repeat(MAX_FRAME_SIZE)
        );
        send_text(&mut ws, &big).await;
        match next_frame(&mut ws).await {
            Frame::Close(Some(reason)) => assert_eq!(reason.code, CloseCode::Size),
            other => panic!("expected a close, got {other:?}"),
        }
        srv.logged("disconnected agent:a").await;
        srv.stop().await;
    }

    #[actix_web::test]
    async fn messages_are_routed_to_the_handler_and_answered() {
        let srv = TestServer::default().await;
        let mut ws = srv.connect(&agent("a"), "").await;

        send_text(
            &mut ws,
            r#"{"type":"ack","id":"m1","callId":"call-1","moveId":"mv-1"}"#,
        )
        .await;
        assert_eq!(
            next_json(&mut ws).await,
            json!({"type": "reply", "id": "m1", "ok": true, "data": {"acked": "mv-1"}})
        );
        send_text(&mut ws, r#"{"type":"presence","status":"away"}"#).await;
        assert_eq!(
            next_json(&mut ws).await,
            json!({"type": "reply", "id": null, "ok": true, "data": {"status": "away"}})
        );
        send_text(
            &mut ws,
            r#"{"type":"ack","id":2,"callId":"call-1","moveId":"unknown"}"#,
        )
        .await;
        assert_eq!(
            next_json(&mut ws).await,
            json!({"type": "error", "id": 2, "code": "not_found", "message": "no such move"})
        );
        let log = srv.recorder.log();
        assert!(log.contains(
            &"message agent:a Ack { call_id: \"call-1\", move_id: \"mv-1\" }".to_string()
        ));
        assert!(log.contains(&"message agent:a Presence { status: Away }".to_string()));

        // A caller may ack moves of its own call only, and sets no presence.
        let mut ws = srv.connect(&caller("call-1"), "").await;
        send_text(
            &mut ws,
            r#"{"type":"ack","id":1,"callId":"call-1","moveId":"mv-2"}"#,
        )
        .await;
        assert_eq!(next_json(&mut ws).await["ok"], true);
        send_text(
            &mut ws,
            r#"{"type":"ack","id":2,"callId":"call-2","moveId":"mv-3"}"#,
        )
        .await;
        assert_eq!(next_json(&mut ws).await["code"], "forbidden");
        send_text(&mut ws, r#"{"type":"presence","id":3,"status":"away"}"#).await;
        assert_eq!(next_json(&mut ws).await["code"], "forbidden");
        srv.stop().await;
    }

    #[actix_web::test]
    async fn a_client_that_never_reads_is_closed_on_overflow_while_others_keep_receiving() {
        let srv = TestServer::start(
            4,
            Timing {
                close_timeout: Duration::from_secs(60),
                ..Timing::DEFAULT
            },
        )
        .await;
        let mut slow = srv.connect(&agent("slow"), "").await;
        let mut fast = srv.connect(&agent("fast"), "").await;
        let pad = "x".repeat(48 * 1024);

        let mut seq = 0;
        while srv.hub.agent_session_count("slow") > 0 {
            seq += 1;
            assert!(seq < 5_000, "the slow session was never dropped");
            srv.hub.publish(&event(
                "call-1",
                seq,
                false,
                &["slow", "fast"],
                json!({ "pad": pad }),
            ));
            let got = next_json(&mut fast).await;
            assert_eq!(got["seq"], seq, "the fast client gets everything, in order");
        }
        let stats = srv.hub.stats();
        assert_eq!(stats.overflow_disconnects, 1);
        assert_eq!(stats.dropped, 1);
        srv.logged("disconnected agent:slow").await;

        // The hub keeps serving the others.
        srv.hub.publish(&event(
            "call-1",
            seq + 1,
            false,
            &["slow", "fast"],
            json!({}),
        ));
        assert_eq!(next_json(&mut fast).await["seq"], seq + 1);
        assert_eq!(srv.hub.agent_session_count("fast"), 1);

        // When the slow client finally reads, what was queued ends with a policy close.
        let close = loop {
            match next_frame(&mut slow).await {
                Frame::Text(_) => continue,
                Frame::Close(reason) => break reason.expect("a close reason"),
                other => panic!("unexpected {other:?}"),
            }
        };
        assert_eq!(close.code, CloseCode::Policy);
        assert_eq!(close.description.as_deref(), Some("outbox overflow"));
        srv.stop().await;
    }

    #[actix_web::test]
    async fn disconnected_is_called_after_the_client_closes() {
        let srv = TestServer::default().await;
        let mut ws = srv.connect(&agent("a"), "").await;
        assert_eq!(srv.hub.agent_session_count("a"), 1);
        ws.send(Message::Close(Some(CloseCode::Normal.into())))
            .await
            .ok();
        match next_frame(&mut ws).await {
            Frame::Close(reason) => assert_eq!(reason.map(|r| r.code), Some(CloseCode::Normal)),
            other => panic!("expected the close echoed, got {other:?}"),
        }
        srv.logged("disconnected agent:a").await;
        assert_eq!(srv.hub.agent_session_count("a"), 0);
        assert_eq!(
            srv.recorder.log(),
            vec![
                "connected agent:a",
                "replay agent:a",
                "disconnected agent:a"
            ]
        );

        // Dropping the connection without a close frame ends the session too.
        let ws = srv.connect(&agent("b"), "").await;
        drop(ws);
        srv.logged("disconnected agent:b").await;
        assert_eq!(srv.hub.agent_session_count("b"), 0);
        srv.stop().await;
    }

    #[actix_web::test]
    async fn a_silent_client_is_closed_after_the_client_timeout() {
        let srv = TestServer::start(
            8,
            Timing {
                heartbeat: Duration::from_millis(100),
                // Ten heartbeats: at least two pings go out even on a loaded machine.
                client_timeout: Duration::from_millis(1_000),
                ..Timing::DEFAULT
            },
        )
        .await;
        let url = srv.url(&format!("token={}", srv.token(&agent("a"))));
        let (_, mut ws) = awc::Client::new().ws(url).connect().await.unwrap();
        let mut pings = 0;
        let close = loop {
            // Read without answering pings.
            match timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap() {
                Frame::Ping(_) => pings += 1,
                Frame::Text(_) => {}
                Frame::Close(reason) => break reason,
                other => panic!("unexpected {other:?}"),
            }
        };
        assert!(pings >= 2, "pinged {pings} times before closing");
        assert_eq!(
            close.and_then(|r| r.description).as_deref(),
            Some("heartbeat timeout")
        );
        srv.logged("disconnected agent:a").await;

        // A client that answers pings stays.
        let mut ws = srv.connect(&agent("b"), "").await;
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(2_500) {
            send_text(&mut ws, r#"{"type":"ping"}"#).await;
            assert_eq!(next_json(&mut ws).await["type"], "pong");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(srv.hub.agent_session_count("b"), 1);
        srv.stop().await;
    }

    #[actix_web::test]
    async fn a_single_since_number_does_not_hide_live_events_of_other_calls() {
        let srv = TestServer::default().await;
        *srv.recorder.replay.lock().unwrap() = vec![
            event("call-1", 10, false, &["a"], json!({})),
            event("call-1", 11, false, &["a"], json!({})),
        ];
        let mut ws = srv.connect(&agent("a"), "&since=10").await;
        assert_eq!(next_json(&mut ws).await["seq"], 11);
        srv.hub
            .publish(&event("call-2", 1, false, &["a"], json!({})));
        let live = next_json(&mut ws).await;
        assert_eq!(
            (live["callId"].clone(), live["seq"].clone()),
            (json!("call-2"), json!(1))
        );
        assert_eq!(
            srv.recorder.sinces.lock().unwrap().clone(),
            vec![Since::All(10)]
        );
        srv.stop().await;
    }

    #[actix_web::test]
    async fn a_slow_handler_earns_a_timeout_error_and_still_completes() {
        let srv = TestServer::start(
            8,
            Timing {
                handler_timeout: Duration::from_millis(100),
                ..Timing::DEFAULT
            },
        )
        .await;
        let mut ws = srv.connect(&agent("a"), "").await;
        send_text(
            &mut ws,
            r#"{"type":"ack","id":9,"callId":"call-1","moveId":"slow"}"#,
        )
        .await;
        let reply = next_json(&mut ws).await;
        assert_eq!(reply["type"], "error");
        assert_eq!(reply["id"], 9);
        assert_eq!(reply["code"], "timeout");
        send_text(&mut ws, r#"{"type":"ping"}"#).await;
        assert_eq!(next_json(&mut ws).await["type"], "pong");
        srv.logged("finished slow").await;
        srv.stop().await;
    }

    #[test]
    fn since_parses_numbers_and_per_call_pairs() {
        assert_eq!(Since::parse("").unwrap(), Since::None);
        assert_eq!(Since::parse(" 42 ").unwrap(), Since::All(42));
        let per_call = Since::parse("call-1:3, call-2:0").unwrap();
        assert_eq!(
            per_call,
            Since::PerCall(HashMap::from([
                ("call-1".to_string(), 3),
                ("call-2".to_string(), 0)
            ]))
        );
        assert_eq!(per_call.floor("call-1"), 3);
        assert_eq!(per_call.floor("call-3"), 0);
        assert_eq!(Since::All(7).floor("any"), 7);
        assert_eq!("call-1:3".parse::<Since>().unwrap().floor("call-1"), 3);
        let too_many = (0..=MAX_SINCE_ENTRIES)
            .map(|i| format!("c{i}:1"))
            .collect::<Vec<_>>()
            .join(",");
        for bad in [
            "x",
            "-1",
            "99999999999999999999999",
            "call-1",
            "call-1:",
            "call-1:+3",
            "call 1:3",
            "call-1:3,",
            "call-1:3,call-1:4",
            too_many.as_str(),
        ] {
            let err = Since::parse(bad).unwrap_err();
            assert_eq!(err.code, "invalid_since", "{bad}");
        }
    }

    #[test]
    fn client_messages_parse_with_camel_case_fields() {
        let (id, msg) =
            parse_client_text(r#"{"type":"ack","id":"c1","callId":"call-1","moveId":"mv"}"#);
        assert_eq!(id, json!("c1"));
        assert_eq!(
            msg.unwrap(),
            Incoming::Message(ClientMessage::Ack {
                call_id: "call-1".into(),
                move_id: "mv".into()
            })
        );
        let (id, msg) = parse_client_text(r#"{"type":"presence","status":"available"}"#);
        assert_eq!(id, Value::Null);
        assert_eq!(
            msg.unwrap(),
            Incoming::Message(ClientMessage::Presence {
                status: AgentStatus::Available
            })
        );
        assert_eq!(
            parse_client_text(r#"{"type":"ping","id":3}"#),
            (json!(3), Ok(Incoming::Ping))
        );
        let (_, msg) = parse_client_text(
            r#"{"type":"transcript","id":4,"callId":"call-1","text":"Hi.","source":"livekit"}"#,
        );
        assert_eq!(
            msg.unwrap(),
            Incoming::Message(ClientMessage::Transcript {
                call_id: "call-1".into(),
                text: "Hi.".into(),
                source: crate::model::TranscriptSource::Livekit,
            })
        );
        let (_, err) = parse_client_text(
            r#"{"type":"transcript","callId":"c","text":"x","source":"telepathy"}"#,
        );
        assert_eq!(err.unwrap_err().code, "bad_message");
        let (_, err) = parse_client_text(r#"{"type":7}"#);
        assert_eq!(err.unwrap_err().code, "bad_message");
        assert_eq!(truncate("héllo", 2), "h");
    }
}
