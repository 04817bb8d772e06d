//! Twilio's webhooks: every request's `X-Twilio-Signature` is checked against the public URL
//! (`SWITCHBOARD_PUBLIC_URL`) and the form parameters, then turned into a call creation, a
//! command or an observation of the call's machine, and answered with TwiML rendered from
//! the machine's state.
//!
//! | route | Twilio calls it when |
//! |---|---|
//! | `POST /twilio/voice` | a phone number receives a call (the number's voice URL) |
//! | `POST /twilio/client` | a browser's Voice SDK connects (the TwiML App's voice URL) |
//! | `POST /twilio/whisper` | a dialled phone specialist answers |
//! | `POST /twilio/gather` | the specialist pressed a key (or none) |
//! | `POST /twilio/status` | a dialled leg's status changes (`StatusCallback`) |
//! | `POST /twilio/conference` | a conference or participant event (`statusCallback`) |
//! | `POST /twilio/transcription` | a phone leg's real-time transcription (`<Start><Transcription>`) |
//! | `GET/POST /twilio/music` | a waiting or held caller needs music (`waitUrl`, `holdUrl`) |

use actix_web::http::header::ContentType;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::DateTime;

use super::{ApiError, AppState};
use crate::call::actor::now_ms;
use crate::call::machine::{
    Actor, CallMachine, Command, Input, Observation, Party, Plane, HELD_SUFFIX,
};
use crate::call::service::calls::NewPhoneCall;
use crate::call::service::{IdempotencyKey, ServiceError};
use crate::media::twilio::{TwilioBridge, GATHER_TIMEOUT_SECS};
use crate::model::{TranscriptSource, TransferStatus};
use crate::twilio::{signature, twiml};

/// Longest form body Twilio sends us.
const MAX_FORM: usize = 64 * 1024;

/// Routes of this module.
pub fn routes(cfg: &mut web::ServiceConfig) {
    let form = web::PayloadConfig::new(MAX_FORM);
    cfg.service(
        web::scope("/twilio")
            .app_data(form)
            .route("/voice", web::post().to(voice))
            .route("/client", web::post().to(client))
            .route("/whisper", web::post().to(whisper))
            .route("/gather", web::post().to(gather))
            .route("/status", web::post().to(status))
            .route("/conference", web::post().to(conference))
            .route("/transcription", web::post().to(transcription))
            .route("/music", web::post().to(music))
            .route("/music", web::get().to(music)),
    );
}

/// A verified Twilio request: its form and query parameters.
struct Signed {
    form: Vec<(String, String)>,
    query: Vec<(String, String)>,
}

impl Signed {
    fn form(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn query(&self, name: &str) -> Result<&str, ApiError> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| ApiError::invalid(name, "is required in the webhook URL"))
    }

    fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.form(name)
            .ok_or_else(|| ApiError::invalid(name, "is required"))
    }
}

/// Checks the signature over the public URL Twilio requested and the form; 403 otherwise.
fn verify(
    req: &HttpRequest,
    state: &AppState,
    body: &[u8],
) -> Result<(TwilioBridge, Signed), ApiError> {
    let bridge = state.twilio.clone().ok_or_else(|| {
        ApiError::Unavailable(
            "Twilio is not configured (set TWILIO_ACCOUNT_SID and the rest)".into(),
        )
    })?;
    let header = req
        .headers()
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            crate::metrics::metrics().webhook_verification_failed("twilio");
            ApiError::Forbidden("missing X-Twilio-Signature".into())
        })?;
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let url = format!("{}{path_and_query}", bridge.config().public_url);
    let form: Vec<(String, String)> = if req.method() == actix_web::http::Method::POST {
        form_urlencoded::parse(body).into_owned().collect()
    } else {
        vec![]
    };
    if !signature::verify(bridge.config().auth_token.expose(), &url, &form, header) {
        tracing::warn!(path = %req.path(), "Twilio webhook with a wrong signature rejected");
        crate::metrics::metrics().webhook_verification_failed("twilio");
        return Err(ApiError::Forbidden("invalid X-Twilio-Signature".into()));
    }
    let query = form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect();
    Ok((bridge, Signed { form, query }))
}

fn twiml_response(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::xml())
        .body(body)
}

fn ok() -> HttpResponse {
    HttpResponse::NoContent().finish()
}

/// Feeds an observation; a call that is gone or ended is not an error for Twilio (it would
/// retry for nothing).
async fn observe(state: &AppState, call_id: &str, obs: Observation) -> Result<(), ApiError> {
    match state
        .calls
        .execute(call_id, Input::Observe(obs), None)
        .await
    {
        Ok(_) | Err(ServiceError::NotFound { .. }) | Err(ServiceError::Conflict { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// `POST /twilio/voice`: a phone caller. Creates the call (its id derived from the CallSid,
/// so Twilio's retry finds the same call) and puts the caller into the call's conference,
/// waiting with music until an agent takes it.
async fn voice(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (bridge, p) = verify(&req, &state, &body)?;
    let m = state
        .calls
        .phone_call(NewPhoneCall {
            call_sid: p.required("CallSid")?.to_string(),
            from: p.form("From").unwrap_or("").to_string(),
            to: p.form("To").map(str::to_string),
            caller_name: p.form("CallerName").map(str::to_string),
        })
        .await?;
    if m.call.status.is_terminal() {
        return Ok(twiml_response(twiml::hangup()));
    }
    Ok(twiml_response(bridge.join_twiml(
        &m.call.call_id,
        &m.call.main_room,
        &m.call.caller_id,
        true,
        true,
    )))
}

/// `POST /twilio/client`: a browser joins a conference through the Voice SDK. Twilio vouches
/// for `From` (`client:<identity>`, from our Access Token); the party must be placed in the
/// conference it asks for, on the Twilio plane.
async fn client(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (bridge, p) = verify(&req, &state, &body)?;
    let identity = p
        .required("From")?
        .strip_prefix("client:")
        .ok_or_else(|| ApiError::invalid("From", "must be a Voice SDK client"))?
        .to_string();
    let (Some(call_id), Some(conference)) = (p.form("callId"), p.form("conference")) else {
        return Ok(twiml_response(twiml::say_and_hangup(
            "This line only joins switchboard calls.",
        )));
    };
    let m = match state.calls.machine(call_id).await {
        Ok(m) => m,
        Err(ServiceError::NotFound { .. }) | Err(ServiceError::Invalid { .. }) => {
            return Ok(twiml_response(twiml::say_and_hangup(
                "This call has ended.",
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let allowed = m.party_of(&identity).is_some_and(|party| {
        m.placements
            .get(&party)
            .is_some_and(|pl| pl.plane == Plane::Twilio)
            && m.room_of_party(&party).as_deref() == Some(conference)
    });
    if m.call.status.is_terminal() || !allowed {
        tracing::info!(%call_id, %identity, %conference, "client leg refused: not placed there");
        return Ok(twiml_response(twiml::say_and_hangup(
            "You are not expected in this conversation.",
        )));
    }
    let caller = identity == m.call.caller_id;
    Ok(twiml_response(
        bridge.join_twiml(call_id, conference, &identity, caller, false),
    ))
}

/// What a phone specialist hears before choosing: who is calling, why, the summary (its
/// short spoken version when the stored summary has one) and A's note.
async fn briefing_text(state: &AppState, m: &CallMachine) -> String {
    let spoken = match m.transfer.as_ref().and_then(|t| t.summary_id.clone()) {
        Some(id) => state
            .store
            .get_summary(&id)
            .await
            .ok()
            .flatten()
            .map(|s| state.summaries.shown(s.spoken_text())),
        None => None,
    };
    briefing_from(m, spoken.as_deref())
}

fn briefing_from(m: &CallMachine, spoken_summary: Option<&str>) -> String {
    let Some(t) = m.transfer.as_ref() else {
        return String::new();
    };
    let mut parts = vec![format!("Incoming transfer from {}.", t.from_agent_id)];
    if !m.call.caller_name.trim().is_empty() {
        parts.push(format!("The caller is {}.", m.call.caller_name.trim()));
    }
    if !m.call.reason.trim().is_empty() {
        parts.push(format!(
            "Reason: {}.",
            m.call.reason.trim().trim_end_matches('.')
        ));
    }
    let summary = spoken_summary
        .unwrap_or(&t.summary_text)
        .trim()
        .trim_start_matches("[offline summary]")
        .trim();
    if !summary.is_empty() {
        parts.push(format!("Summary: {summary}"));
    }
    if let Some(note) = t.note.as_deref().filter(|n| !n.trim().is_empty()) {
        parts.push(format!("Note from your colleague: {}", note.trim()));
    }
    parts.join(" ")
}

/// Whether `m`'s open transfer `transfer_id` still waits for `agent_id` to answer.
fn ringing_for(m: &CallMachine, transfer_id: &str, agent_id: &str) -> bool {
    m.open_transfer().is_some_and(|t| {
        t.transfer_id == transfer_id
            && t.to_agent_id == agent_id
            && t.status == TransferStatus::Ringing
    })
}

/// `POST /twilio/whisper`: the dialled specialist answered: the briefing, then 1 or 2.
async fn whisper(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (bridge, p) = verify(&req, &state, &body)?;
    let (call_id, transfer_id, agent_id) = (
        p.query("callId")?,
        p.query("transferId")?,
        p.query("agentId")?,
    );
    let call_sid = p.required("CallSid")?.to_string();
    let party = Party::Agent(agent_id.to_string());
    let answered = Observation::PhoneAnswered { party, call_sid };
    let m = match state
        .calls
        .execute(call_id, Input::Observe(answered), None)
        .await
    {
        Ok(m) => m,
        Err(ServiceError::NotFound { .. }) | Err(ServiceError::Conflict { .. }) => {
            return Ok(twiml_response(twiml::say_and_hangup(
                "This transfer is no longer needed. Goodbye.",
            )))
        }
        Err(e) => return Err(e.into()),
    };
    if !ringing_for(&m, transfer_id, agent_id) {
        return Ok(twiml_response(twiml::say_and_hangup(
            "This transfer is no longer needed. Goodbye.",
        )));
    }
    let briefing = briefing_text(&state, &m).await;
    Ok(prompt(&bridge, &briefing, call_id, transfer_id, agent_id))
}

/// The briefing (if any) and the 1-or-2 question, answered at `/twilio/gather`.
fn prompt(
    bridge: &TwilioBridge,
    briefing: &str,
    call_id: &str,
    transfer_id: &str,
    agent_id: &str,
) -> HttpResponse {
    let query = [
        ("callId", call_id),
        ("transferId", transfer_id),
        ("agentId", agent_id),
    ];
    let action = bridge.url("/twilio/gather", &query);
    let mut no_input_query = query.to_vec();
    no_input_query.push(("noInput", "1"));
    twiml_response(twiml::whisper_gather(
        briefing,
        "Press 1 to take the call, or 2 to decline.",
        &action,
        GATHER_TIMEOUT_SECS,
        &bridge.url("/twilio/gather", &no_input_query),
    ))
}

/// `POST /twilio/gather`: 1 accepts (the answer joins the specialist where the machine
/// placed them), 2 declines, nothing is a missed transfer.
async fn gather(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (bridge, p) = verify(&req, &state, &body)?;
    let (call_id, transfer_id, agent_id) = (
        p.query("callId")?,
        p.query("transferId")?,
        p.query("agentId")?,
    );
    let call_sid = p.form("CallSid").map(str::to_string);
    let party = Party::Agent(agent_id.to_string());
    let goodbye = |text: &str| Ok(twiml_response(twiml::say_and_hangup(text)));
    let m = match state.calls.machine(call_id).await {
        Ok(m) => m,
        Err(ServiceError::NotFound { .. }) => return goodbye("This call has ended. Goodbye."),
        Err(e) => return Err(e.into()),
    };
    if !ringing_for(&m, transfer_id, agent_id) {
        return goodbye("This transfer is no longer needed. Goodbye.");
    }
    let digits = if p.query("noInput").is_ok() {
        ""
    } else {
        p.form("Digits").unwrap_or("")
    };
    match digits {
        "1" => accept_by_phone(&state, &bridge, call_id, transfer_id, agent_id).await,
        "2" | "" => {
            let status = if digits.is_empty() {
                "no_input"
            } else {
                "declined"
            };
            observe(
                &state,
                call_id,
                Observation::PhoneLegEnded {
                    party,
                    call_sid,
                    status: status.into(),
                },
            )
            .await?;
            goodbye("Thank you. Your colleague keeps the call. Goodbye.")
        }
        // Another key: ask again.
        _ => Ok(prompt(&bridge, "", call_id, transfer_id, agent_id)),
    }
}

/// The specialist pressed 1: accepts the transfer (once, whatever Twilio retries) and answers
/// with the TwiML that joins the specialist where the machine placed them.
async fn accept_by_phone(
    state: &AppState,
    bridge: &TwilioBridge,
    call_id: &str,
    transfer_id: &str,
    agent_id: &str,
) -> Result<HttpResponse, ApiError> {
    let goodbye = || {
        Ok(twiml_response(twiml::say_and_hangup(
            "This transfer is no longer needed. Goodbye.",
        )))
    };
    let accepted = state
        .calls
        .execute(
            call_id,
            Input::Command(Actor::Agent(agent_id.to_string()), Command::AcceptTransfer),
            // The gather's own key: Twilio's retry of the webhook answers as the first one.
            Some(IdempotencyKey::new(
                format!("twilio-gather-{transfer_id}"),
                "twilio",
                &[b"gather", agent_id.as_bytes()],
            )),
        )
        .await;
    match accepted {
        Ok(m) => match m.room_of_party(&Party::Agent(agent_id.to_string())) {
            Some(conference) => Ok(twiml_response(bridge.join_twiml(
                call_id,
                &conference,
                agent_id,
                false,
                true,
            ))),
            None => goodbye(),
        },
        Err(ServiceError::Conflict { .. }) | Err(ServiceError::Forbidden(_)) => goodbye(),
        Err(e) => Err(e.into()),
    }
}

/// `POST /twilio/status`: a dialled leg's progress. Terminal statuses end the leg in the
/// machine; a leg that is live but no longer wanted is hung up.
async fn status(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (bridge, p) = verify(&req, &state, &body)?;
    let (call_id, agent_id) = (p.query("callId")?, p.query("agentId")?);
    let call_sid = p.required("CallSid")?.to_string();
    let call_status = p.required("CallStatus")?;
    let party = Party::Agent(agent_id.to_string());
    let obs = match call_status {
        "queued" | "initiated" | "ringing" | "in-progress" | "answered" => Observation::Dialed {
            party,
            call_sid: call_sid.clone(),
            // Older status callbacks' URLs name no transfer.
            transfer_id: p.query("transferId").ok().map(str::to_string),
        },
        "completed" | "busy" | "no-answer" | "failed" | "canceled" => Observation::PhoneLegEnded {
            party,
            call_sid: Some(call_sid.clone()),
            status: call_status.to_string(),
        },
        other => {
            return Err(ApiError::invalid(
                "CallStatus",
                format!("unknown status {other:?}"),
            ))
        }
    };
    let live_leg = matches!(obs, Observation::Dialed { .. });
    match state
        .calls
        .execute(call_id, Input::Observe(obs), None)
        .await
    {
        Ok(_) => Ok(ok()),
        // The call is over: a leg still up is a leftover.
        Err(ServiceError::Conflict { .. }) | Err(ServiceError::NotFound { .. }) if live_leg => {
            let sid = call_sid;
            actix::spawn(async move {
                if let Err(e) = bridge.hangup(&sid, true).await {
                    tracing::warn!(call_sid = %sid, error = %e, "leftover leg not hung up");
                }
            });
            Ok(ok())
        }
        Err(ServiceError::Conflict { .. }) | Err(ServiceError::NotFound { .. }) => Ok(ok()),
        Err(e) => Err(e.into()),
    }
}

/// When Twilio saw a conference event, in milliseconds, ordered within a second by the
/// conference's `SequenceNumber` (Twilio's `Timestamp` has whole seconds).
fn event_time(p: &Signed) -> i64 {
    let secs = p
        .form("Timestamp")
        .and_then(|t| DateTime::parse_from_rfc2822(t).ok())
        .map(|t| t.timestamp_millis());
    let seq = p
        .form("SequenceNumber")
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or(0);
    match secs {
        Some(ms) => ms + seq.rem_euclid(1000),
        None => now_ms(),
    }
}

/// `POST /twilio/conference`: conference and participant events, as observations.
async fn conference(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (_bridge, p) = verify(&req, &state, &body)?;
    let call_id = p.query("callId")?;
    let event = p.required("StatusCallbackEvent")?;
    let name = p.required("FriendlyName")?.to_string();
    let at = event_time(&p);
    let label = p.form("ParticipantLabel").map(str::to_string);
    let held_room = format!("{name}{HELD_SUFFIX}");
    // A participant's leg is its media session: a leave of another leg of the same label is
    // about an earlier stay.
    let session = p.form("CallSid").map(str::to_string);
    let joined = |identity: String, room: String| Observation::Joined {
        identity,
        room,
        at,
        session: session.clone(),
    };
    let obs = match (event, label) {
        ("conference-start", _) => Observation::ConferenceStarted {
            conference: name,
            conference_sid: p.required("ConferenceSid")?.to_string(),
        },
        ("participant-join", Some(l)) => {
            let held = p.form("Hold") == Some("true");
            joined(l, if held { held_room } else { name })
        }
        ("participant-hold", Some(l)) => joined(l, held_room),
        ("participant-unhold", Some(l)) => joined(l, name),
        ("participant-leave", Some(l)) => {
            let hung_up = p.form("ReasonParticipantLeft") == Some("participant_hung_up");
            let m = match state.calls.machine(call_id).await {
                Ok(m) => m,
                Err(ServiceError::NotFound { .. }) => return Ok(ok()),
                Err(e) => return Err(e.into()),
            };
            match m.party_of(&l) {
                Some(party) if hung_up && m.phones.contains_key(&party) => {
                    Observation::PhoneLegEnded {
                        party,
                        call_sid: p.form("CallSid").map(str::to_string),
                        status: "hung_up".into(),
                    }
                }
                _ => Observation::Left {
                    identity: l,
                    room: name,
                    at,
                    session: session.clone(),
                },
            }
        }
        _ => return Ok(ok()),
    };
    observe(&state, call_id, obs).await?;
    Ok(ok())
}

/// `POST /twilio/transcription`: Twilio's real-time transcription of a phone leg
/// (`<Start><Transcription>`). Each final `transcription-content` becomes a transcript chunk
/// of the leg's speaker (`source: twilio`), with an id made of the transcription's SID and
/// sequence number, so a retried callback stores nothing twice.
async fn transcription(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (_bridge, p) = verify(&req, &state, &body)?;
    let (call_id, speaker) = (p.query("callId")?, p.query("speaker")?);
    if p.form("TranscriptionEvent") != Some("transcription-content")
        || p.form("Final") != Some("true")
    {
        return Ok(ok()); // started, stopped, or a partial result
    }
    let data: serde_json::Value = serde_json::from_str(p.required("TranscriptionData")?)
        .map_err(|_| ApiError::invalid("TranscriptionData", "is not JSON"))?;
    let Some(text) = data["transcript"]
        .as_str()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    else {
        return Ok(ok());
    };
    let id = format!(
        "tx-{}-{}",
        p.required("TranscriptionSid")?.to_ascii_lowercase(),
        p.required("SequenceId")?
    );
    super::check_id("TranscriptionSid", &id)?;
    let m = match state.calls.machine(call_id).await {
        Ok(m) => m,
        Err(ServiceError::NotFound { .. }) => return Ok(ok()),
        Err(e) => return Err(e.into()),
    };
    // The caller is `caller` in transcripts, as in every transcript. The provider's text and
    // label lose what a console must not show (control and bidirectional-format characters).
    let speaker = if speaker == m.call.caller_id {
        "caller".to_string()
    } else {
        crate::call::service::strip_hidden(speaker)
    };
    let text = crate::call::service::strip_hidden(text);
    if text.is_empty() || speaker.is_empty() {
        return Ok(ok());
    }
    match state
        .calls
        .append_transcript_once(call_id, id, speaker, text, TranscriptSource::Twilio)
        .await
    {
        Ok(_) | Err(ServiceError::Conflict { .. }) => Ok(ok()),
        Err(e) => Err(e.into()),
    }
}

/// `/twilio/music`: what a waiting or held caller hears.
async fn music(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (bridge, _) = verify(&req, &state, &body)?;
    Ok(twiml_response(twiml::play_music(
        &bridge.config().hold_music_url,
    )))
}
