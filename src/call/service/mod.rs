//! The call service: the one application layer between the transports (REST, WebSocket,
//! Twilio and LiveKit webhooks) and the call actors.
//!
//! A transport parses its input, decides who is asking, then calls one method here and maps
//! the answer to its own shape. The service owns:
//! - executing a command or an observation on a call ([`CallService::execute`]): finding
//!   the call's actor through the registry, restarting a dead actor once from the store,
//!   retrying a call that is being recovered, and answering ended calls from their final
//!   state (a repeat succeeds, anything else is `call_ended`);
//! - reading a call's current state ([`CallService::machine`]);
//! - new calls, web and phone, and the credentials to join them ([`calls`]);
//! - the transfer use case ([`transfers`]): the target's checks, presence, the phone
//!   policy, the briefing, the command, the background summary refresh, the tokens;
//! - transcript chunks and summary refreshes ([`transcripts`]);
//! - outbound assistant calls ([`outbound`]).
//!
//! It is also the one place where a cluster decides whether a call runs on this node.
//! Errors are [`ServiceError`]: transport-neutral categories each transport maps once.

pub mod calls;
pub mod outbound;
pub mod transcripts;
pub mod transfers;

use std::sync::Arc;
use std::time::Duration;

use actix::Addr;

pub use crate::call::actor::IdempotencyKey;
use crate::call::actor::{decode, now_ms, CallError, Execute, Recall};
use crate::call::machine::{CallMachine, Input, Rejection};
use crate::call::registry::{ActorDied, Found, Lookup, Registry};
use crate::media::livekit::LiveKit;
use crate::media::twilio::TwilioBridge;
use crate::store::{Store, StoreError};
use crate::summary::{Summaries, SummaryError};

/// How long to wait before the one retry of a call whose actor is being restarted.
const RECOVERY_RETRY: Duration = Duration::from_millis(50);

/// Why a use case failed, in categories every transport can map (HTTP: 400, 403, 404, 409,
/// 502, 503, 500).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// An unknown id.
    #[error("{entity} {id} not found")]
    NotFound {
        /// `call`, `agent`, `transfer`, ...
        entity: &'static str,
        /// The id asked for.
        id: String,
    },
    /// The request is wrong in a way the client can fix, with a stable code
    /// (`invalid_field`, `invalid_request`, `unsupported_target`, ...).
    #[error("{message}")]
    Invalid {
        /// Stable, machine-readable.
        code: &'static str,
        /// What is wrong, naming the field where there is one.
        message: String,
    },
    /// The asker may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The call or transfer is in a state where this cannot happen.
    #[error("{message}")]
    Conflict {
        /// Stable code (`transfer_open`, `call_ended`, `target_unavailable`, ...).
        code: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The request is well-formed but cannot be processed (422), with a stable code
    /// (`idempotency_key_reused`); nothing was changed.
    #[error("{message}")]
    Unprocessable {
        /// Stable code.
        code: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A dependency is down or the call is being recovered; nothing was changed.
    #[error("{0}")]
    Unavailable(String),
    /// A dependency answered but refused, in a way the client cannot fix.
    #[error("{0}")]
    BadGateway(String),
    /// Our fault; details are logged by the transport, never shown.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ServiceError {
    /// An invalid field (`invalid_field`), named in the message.
    pub fn invalid(field: &str, message: impl std::fmt::Display) -> Self {
        ServiceError::Invalid {
            code: "invalid_field",
            message: format!("{field}: {message}"),
        }
    }

    /// An unknown id.
    pub fn not_found(entity: &'static str, id: impl Into<String>) -> Self {
        ServiceError::NotFound {
            entity,
            id: id.into(),
        }
    }

    /// The call has ended (409 `call_ended`).
    pub fn call_ended(call_id: &str) -> Self {
        ServiceError::Conflict {
            code: "call_ended",
            message: format!("call {call_id} has ended"),
        }
    }

    /// An `Idempotency-Key` reused for another request (422 `idempotency_key_reused`).
    pub fn key_reused(key: &str) -> Self {
        ServiceError::Unprocessable {
            code: "idempotency_key_reused",
            message: format!(
                "Idempotency-Key {key:?} was already used for another request (another body, \
                 method or route); use a new key"
            ),
        }
    }

    fn shutting_down() -> Self {
        ServiceError::Unavailable("the switchboard is shutting down".into())
    }

    fn recovering() -> Self {
        ServiceError::Unavailable("the call is being recovered; retry shortly".into())
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { entity, id } => ServiceError::NotFound { entity, id },
            StoreError::AlreadyExists { entity, id } => ServiceError::Conflict {
                code: "already_exists",
                message: format!("{entity} {id} already exists"),
            },
            StoreError::VersionConflict { entity, id, .. } => ServiceError::Conflict {
                code: "concurrent_update",
                message: format!("{entity} {id} was changed concurrently; retry"),
            },
            other => {
                tracing::error!(error = %other, "storage failed");
                ServiceError::Unavailable("storage is unavailable; nothing was changed".into())
            }
        }
    }
}

impl From<CallError> for ServiceError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Rejected(Rejection::Forbidden(m)) => ServiceError::Forbidden(m),
            CallError::Rejected(Rejection::Conflict { code, message }) => {
                ServiceError::Conflict { code, message }
            }
            CallError::Rejected(Rejection::Invalid(m)) => ServiceError::Invalid {
                code: "invalid_request",
                message: m,
            },
            CallError::NotFound(id) => ServiceError::not_found("call", id),
            CallError::Storage(e) if matches!(*e, StoreError::VersionConflict { .. }) => {
                ServiceError::Conflict {
                    code: "concurrent_update",
                    message: "the call was changed concurrently; retry".into(),
                }
            }
            CallError::Storage(e) => {
                tracing::error!(error = %e, "storage failed");
                ServiceError::Unavailable("storage is unavailable; nothing was changed".into())
            }
            CallError::Unavailable => ServiceError::recovering(),
            CallError::Media(e) => ServiceError::Internal(Box::new(CallError::Media(e))),
            CallError::KeyReused(k) => ServiceError::key_reused(&k),
        }
    }
}

impl From<SummaryError> for ServiceError {
    /// Only the store can fail a summary (the LLM falls back to the offline summariser).
    fn from(e: SummaryError) -> Self {
        match e {
            SummaryError::Store(e) => e.into(),
            SummaryError::CallNotFound(id) => ServiceError::not_found("call", id),
            other => ServiceError::Internal(Box::new(other)),
        }
    }
}

/// Checks an id-like value: 1 to 100 characters of letters, digits, `-`, `_`, `.`, `:`.
pub fn check_id(field: &str, value: &str) -> Result<(), ServiceError> {
    let ok = !value.is_empty()
        && value.len() <= 100
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if ok {
        Ok(())
    } else {
        Err(ServiceError::invalid(
            field,
            "must be 1 to 100 letters, digits, '-', '_', '.' or ':'",
        ))
    }
}

/// Checks a multi-line text: its length in characters, and no character that could make a
/// console show something else than was sent ([`hidden_char`]; `\n` and `\t` are allowed).
pub fn check_text(field: &str, value: &str, min: usize, max: usize) -> Result<(), ServiceError> {
    check_chars(field, value, min, max, true)
}

/// Checks a one-line text (a name): as [`check_text`], but `\n` and `\t` are refused too.
pub fn check_line(field: &str, value: &str, min: usize, max: usize) -> Result<(), ServiceError> {
    check_chars(field, value, min, max, false)
}

fn check_chars(
    field: &str,
    value: &str,
    min: usize,
    max: usize,
    multi_line: bool,
) -> Result<(), ServiceError> {
    let n = value.chars().count();
    if n < min || n > max {
        return Err(ServiceError::invalid(
            field,
            format!("must be {min} to {max} characters (got {n})"),
        ));
    }
    let allowed = |c: char| multi_line && matches!(c, '\n' | '\t');
    if let Some(c) = value.chars().find(|&c| hidden_char(c) && !allowed(c)) {
        return Err(ServiceError::invalid(
            field,
            format!(
                "must not contain control, bidirectional-format or non-characters (found U+{:04X})",
                c as u32
            ),
        ));
    }
    Ok(())
}

/// Whether `c` is a control character (Unicode category Cc, `\n` and `\t` included), a
/// format character (Cf: bidirectional overrides and isolates, zero-width spaces, the BOM,
/// ...; zero-width joiner and non-joiner excepted, which emoji and several scripts need), a
/// line or paragraph separator, or a noncharacter (`U+FDD0..=U+FDEF`, `U+xxFFFE`, `U+xxFFFF`).
pub fn hidden_char(c: char) -> bool {
    let u = c as u32;
    let control = c.is_control();
    let noncharacter = (0xFDD0..=0xFDEF).contains(&u) || (u & 0xFFFE) == 0xFFFE;
    let format = matches!(u,
        0x00AD
        | 0x0600..=0x0605
        | 0x061C
        | 0x06DD
        | 0x070F
        | 0x0890..=0x0891
        | 0x08E2
        | 0x180E
        | 0x200B
        | 0x200E..=0x200F
        | 0x2028..=0x202E
        | 0x2060..=0x2064
        | 0x2066..=0x206F
        | 0xFEFF
        | 0xFFF9..=0xFFFB
        | 0x110BD
        | 0x110CD
        | 0x13430..=0x1343F
        | 0x1BCA0..=0x1BCA3
        | 0x1D173..=0x1D17A
        | 0xE0001
        | 0xE0020..=0xE007F);
    control || noncharacter || format
}

/// `value` without its [`hidden_char`]s (a provider's value we cannot refuse, such as
/// Twilio's `CallerName`): each is dropped, and a run of whitespace left behind is one space.
pub fn strip_hidden(value: &str) -> String {
    let kept: String = value
        .chars()
        .map(|c| {
            if matches!(c, '\n' | '\t' | '\r') {
                ' '
            } else {
                c
            }
        })
        .filter(|&c| !hidden_char(c))
        .collect();
    kept.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The main and hold room (and conference) names of a call.
pub fn room_names(call_id: &str) -> (String, String) {
    (format!("{call_id}--main"), format!("{call_id}--hold"))
}

/// The application layer over the call actors (see the module doc). Cheap to clone.
#[derive(Clone)]
pub struct CallService {
    /// Durable storage.
    pub store: Arc<dyn Store>,
    /// Call actors and routing.
    pub registry: Addr<Registry>,
    /// The LiveKit plane (participant tokens).
    pub livekit: LiveKit,
    /// The Twilio plane, when configured (phone agents need it).
    pub twilio: Option<TwilioBridge>,
    /// Call summaries and their background refresh.
    pub summaries: Summaries,
    /// What outbound calls need of the configuration.
    pub outbound: outbound::OutboundSettings,
}

impl CallService {
    /// Feeds an input to a call's actor and answers the machine after it. A dead actor is
    /// restarted once from the store; a call being recovered is retried once after
    /// [`RECOVERY_RETRY`]; an ended call answers from its final state (a repeat that changes
    /// nothing succeeds, anything else is `call_ended`).
    pub async fn execute(
        &self,
        call_id: &str,
        input: Input,
        idempotency_key: Option<IdempotencyKey>,
    ) -> Result<Arc<CallMachine>, ServiceError> {
        for attempt in 0..2 {
            let found = self
                .registry
                .send(Lookup {
                    call_id: call_id.to_string(),
                })
                .await
                .map_err(|_| ServiceError::shutting_down())??;
            let addr = match found {
                Found::Live(addr) => addr,
                Found::Ended(m) => {
                    let step = m.handle(now_ms(), input).map_err(CallError::from)?;
                    return if step.changed(&m) {
                        Err(ServiceError::call_ended(call_id))
                    } else {
                        Ok(m)
                    };
                }
            };
            match addr
                .send(Execute {
                    input: input.clone(),
                    idempotency_key: idempotency_key.clone(),
                })
                .await
            {
                Ok(Err(CallError::Unavailable)) if attempt == 0 => {
                    tokio::time::sleep(RECOVERY_RETRY).await;
                }
                Ok(res) => return Ok(res?),
                Err(_) if attempt == 0 => {
                    self.registry.do_send(ActorDied {
                        call_id: call_id.to_string(),
                    });
                }
                Err(_) => break,
            }
        }
        Err(ServiceError::recovering())
    }

    /// What a live call's actor remembers of `key`: the first answer (`Some`), nothing yet
    /// (`None`, also for an ended call), or 422 `idempotency_key_reused` when the key came
    /// with another request. For commands with side effects before [`CallService::execute`].
    pub async fn recall(
        &self,
        call_id: &str,
        key: &IdempotencyKey,
    ) -> Result<Option<Arc<CallMachine>>, ServiceError> {
        let found = self
            .registry
            .send(Lookup {
                call_id: call_id.to_string(),
            })
            .await
            .map_err(|_| ServiceError::shutting_down())??;
        match found {
            Found::Live(addr) => match addr.send(Recall(key.clone())).await {
                Ok(res) => Ok(res?),
                Err(_) => Err(ServiceError::recovering()),
            },
            Found::Ended(_) => Ok(None),
        }
    }

    /// The current state of a call (live or ended), as stored.
    pub async fn machine(&self, call_id: &str) -> Result<Arc<CallMachine>, ServiceError> {
        let stored = self
            .store
            .get_call(call_id)
            .await?
            .ok_or_else(|| ServiceError::not_found("call", call_id))?;
        let m = decode(&stored).map_err(|e| ServiceError::Internal(Box::new(e)))?;
        Ok(Arc::new(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_characters_are_refused_or_stripped() {
        for bad in [
            "a\u{0}b",
            "bell\u{7}",
            "\u{1b}[31mred",
            "abc\u{202e}fed",
            "x\u{fffe}",
            "x\u{ffff}",
            "x\u{fdd0}",
            "x\u{200b}",
            "x\u{2066}",
            "x\u{feff}",
            "x\u{85}",
            "x\u{1fffe}",
            "x\r\ny",
        ] {
            assert!(check_text("reason", bad, 0, 100).is_err(), "{bad:?}");
            assert!(check_line("callerName", bad, 0, 100).is_err(), "{bad:?}");
        }
        let e = check_line("callerName", "Ann\u{202e}", 0, 100).unwrap_err();
        assert!(e.to_string().starts_with("callerName:"), "{e}");
        assert!(check_text("reason", "two\nlines\tand a tab", 0, 100).is_ok());
        assert!(check_line("name", "two\nlines", 0, 100).is_err());
        assert!(check_line("name", "Zoë 👨\u{200d}👩\u{200d}👧 محمد", 0, 100).is_ok());
        assert_eq!(
            strip_hidden("\u{1b}[31mAnn\u{202e} \u{7}Lee\n"),
            "[31mAnn Lee"
        );
        assert_eq!(strip_hidden("\u{0}\u{fffe}"), "");
    }
}
