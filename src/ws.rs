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
//! 3. forwards live frames from the hub, skipping any `(callId, seq)` the replay (or `since`)
//!    already covered, so the client sees every event once and in order;
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
    /// The client has events up to this `seq` of every call of the party.
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
}

/// Shared state for the route.
pub struct WsContext {
    /// Where sessions register for live events.
    pub hub: Hub,
    /// Verifies session tokens.
    pub keys: SessionKeys,
    /// The app's side of sessions.
    pub handler: Arc<dyn SessionHandler>,
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
fn presented_token<'a>(req: &'a HttpRequest, query: &'a HashMap<String, String>) -> Option<&'a str> {
    if let Some(token) = query.get("token").map(|t| t.trim()).filter(|t| !t.is_empty()) {
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
        loop {
            tokio::select! {
                frame = self.outbox.recv() => {
                    let frame = frame.map_err(Exit::Hub)?;
                    let already_sent = frame.call_id().is_some_and(|call| {
                        let floor = floors.get(call).copied().unwrap_or(0);
                        frame.seq() <= floor.max(self.since.floor(call))
                    });
                    if !already_sent {
                        self.send(frame.text()).await?;
                    }
                }
                msg = stream.recv() => {
                    last_seen = Instant::now();
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
            Ok(Incoming::Message(msg)) => match self.dispatch(msg).await? {
                Ok(data) => json!({ "type": "reply", "id": id, "ok": true, "data": data }),
                Err(err) => error_frame(&id, &err),
            },
            Err(err) => error_frame(&id, &err),
        };
        self.send_json(&frame).await
    }

    /// Checks a message against the party and hands it to the handler.
    async fn dispatch(&mut self, msg: ClientMessage) -> Result<Result<Value, ClientError>, Exit> {
        match (&self.party, &msg) {
            (PartyRef::Caller { .. }, ClientMessage::Presence { .. }) => {
                return Ok(Err(ClientError::forbidden("only agents set a presence")));
            }
            (PartyRef::Caller { call_id: own }, ClientMessage::Ack { call_id, .. })
                if own != call_id =>
            {
                return Ok(Err(ClientError::forbidden(format!(
                    "a caller may only acknowledge moves of its own call ({own})"
                ))));
            }
            _ => {}
        }
        let handler = Arc::clone(&self.handler);
        tokio::select! {
            biased;
            reason = self.outbox.disconnected() => Err(Exit::Hub(reason)),
            res = timeout(self.timing.handler_timeout, handler.message(&self.party, msg)) => {
                Ok(res.unwrap_or_else(|_| Err(ClientError::timeout("handling the message"))))
            }
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
