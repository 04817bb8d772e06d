//! LiveKit: participant tokens with the least grants, RoomService calls (best effort, with
//! retries, so the control plane keeps working while LiveKit's API is down), and webhook
//! verification like LiveKit's own `WebhookReceiver`. LiveKit's protocol types stay inside.

use std::time::Duration;

use livekit_api::access_token::{AccessToken, TokenVerifier, VideoGrants};
use livekit_api::services::room::{CreateRoomOptions, RoomClient};
use livekit_api::services::ServiceError;
use livekit_api::webhooks::WebhookReceiver;

use crate::config::LiveKitConfig;

/// How long a participant token may be used to join.
const JOIN_TOKEN_TTL: Duration = Duration::from_secs(15 * 60);
/// Attempts of a RoomService call before giving up.
const ATTEMPTS: u32 = 3;
/// First back-off between attempts (doubled each time).
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Time limit of one RoomService request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// LiveKit failures, with LiveKit's own errors only as sources.
#[derive(Debug, thiserror::Error)]
pub enum LiveKitError {
    /// Minting a token failed.
    #[error("could not mint a LiveKit token")]
    Token(#[source] livekit_api::access_token::AccessTokenError),
    /// The RoomService call failed after retries.
    #[error("LiveKit {operation} failed")]
    Service {
        /// What was attempted.
        operation: &'static str,
        /// LiveKit's error.
        #[source]
        source: ServiceError,
    },
    /// A webhook's signature or body did not verify.
    #[error("LiveKit webhook rejected: {0}")]
    Webhook(#[source] livekit_api::webhooks::WebhookError),
}

/// What a participant may do in a room. Nobody outside the server gets admin grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParticipantRole {
    /// A caller: publish and subscribe audio, no data channel.
    Caller,
    /// An agent: publish, subscribe and send data.
    Agent,
}

/// A LiveKit webhook reduced to what the switchboard acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomActivity {
    /// `participant_joined`, `participant_left`, `room_finished`, ...
    pub event: String,
    /// The webhook's unique id (for de-duplication).
    pub id: String,
    /// The room's name.
    pub room: String,
    /// The participant's identity, for participant events.
    pub identity: Option<String>,
    /// When LiveKit saw it, in milliseconds since the epoch.
    pub at_ms: i64,
}

/// The LiveKit plane (cheap to clone).
#[derive(Clone)]
pub struct LiveKit {
    url: String,
    api_key: String,
    api_secret: String,
    rooms: std::sync::Arc<RoomClient>,
    receiver: WebhookReceiver,
}

impl std::fmt::Debug for LiveKit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveKit")
            .field("url", &self.url)
            .field("api_key", &self.api_key)
            .field("api_secret", &"[redacted]")
            .finish()
    }
}

impl LiveKit {
    /// A client for the configured LiveKit server.
    pub fn new(cfg: &LiveKitConfig) -> Self {
        let secret = cfg.api_secret.expose().to_string();
        LiveKit {
            url: cfg.url.clone(),
            rooms: std::sync::Arc::new(
                RoomClient::with_api_key(&cfg.api_url, &cfg.api_key, &secret)
                    .with_request_timeout(REQUEST_TIMEOUT),
            ),
            receiver: WebhookReceiver::new(TokenVerifier::with_api_key(&cfg.api_key, &secret)),
            api_key: cfg.api_key.clone(),
            api_secret: secret,
        }
    }

    /// The URL browsers connect to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A token that lets `identity` join `room` only, with the role's least grants.
    pub fn participant_token(
        &self,
        identity: &str,
        name: &str,
        room: &str,
        role: ParticipantRole,
    ) -> Result<String, LiveKitError> {
        let grants = VideoGrants {
            room_join: true,
            room: room.to_string(),
            can_publish: Some(true),
            can_subscribe: Some(true),
            can_publish_data: Some(role == ParticipantRole::Agent),
            ..Default::default()
        };
        AccessToken::with_api_key(&self.api_key, &self.api_secret)
            .with_identity(identity)
            .with_name(name)
            .with_ttl(JOIN_TOKEN_TTL)
            .with_grants(grants)
            .to_jwt()
            .map_err(LiveKitError::Token)
    }

    /// Creates the room if it does not exist (idempotent), retrying on failure.
    pub async fn ensure_room(&self, room: &str) -> Result<(), LiveKitError> {
        let opts = || CreateRoomOptions {
            empty_timeout: 600,
            departure_timeout: 60,
            ..Default::default()
        };
        retry("CreateRoom", || self.rooms.create_room(room, opts()))
            .await
            .map(|_| ())
    }

    /// Deletes the room (a room that is already gone counts as deleted).
    pub async fn delete_room(&self, room: &str) -> Result<(), LiveKitError> {
        match retry("DeleteRoom", || self.rooms.delete_room(room)).await {
            Err(e) if is_not_found(&e) => Ok(()),
            other => other,
        }
    }

    /// Removes a participant from a room (one who already left counts as removed).
    pub async fn remove_participant(&self, room: &str, identity: &str) -> Result<(), LiveKitError> {
        match retry("RemoveParticipant", || {
            self.rooms.remove_participant(room, identity)
        })
        .await
        {
            Err(e) if is_not_found(&e) => Ok(()),
            other => other,
        }
    }

    /// Identities of the participants in a room.
    pub async fn list_participants(&self, room: &str) -> Result<Vec<String>, LiveKitError> {
        let list = retry("ListParticipants", || self.rooms.list_participants(room)).await?;
        Ok(list.into_iter().map(|p| p.identity).collect())
    }

    /// Whether the RoomService answers (one attempt, for `/health`).
    pub async fn ping(&self) -> bool {
        self.rooms.list_rooms(vec![]).await.is_ok()
    }

    /// Verifies a webhook (`Authorization` JWT whose `sha256` claim matches the body).
    pub fn verify_webhook(
        &self,
        body: &str,
        authorization: &str,
    ) -> Result<RoomActivity, LiveKitError> {
        let event = self
            .receiver
            .receive(body, authorization)
            .map_err(LiveKitError::Webhook)?;
        Ok(RoomActivity {
            event: event.event,
            id: event.id,
            room: event.room.map(|r| r.name).unwrap_or_default(),
            identity: event.participant.map(|p| p.identity),
            at_ms: event.created_at.saturating_mul(1000),
        })
    }
}

fn is_not_found(e: &LiveKitError) -> bool {
    matches!(
        e,
        LiveKitError::Service {
            source: ServiceError::Twirp(livekit_api::services::ServerError::Twirp(code)),
            ..
        } if code.code == "not_found"
    )
}

/// Whether a failure is worth retrying (network, 5xx, rate limit), not a refusal.
fn retryable(e: &ServiceError) -> bool {
    use livekit_api::services::ServerError;
    match e {
        // Only failures to reach the server: a real server answers bad credentials with a
        // plain-text 401, which surfaces as an undecodable body and must not be retried.
        ServiceError::Twirp(ServerError::Request(e)) => e.is_connect() || e.is_timeout(),
        ServiceError::Twirp(ServerError::Twirp(code)) => matches!(
            code.code.as_str(),
            "unavailable" | "internal" | "resource_exhausted" | "deadline_exceeded" | "unknown"
        ),
        _ => false,
    }
}

async fn retry<T, F, Fut>(operation: &'static str, mut call: F) -> Result<T, LiveKitError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ServiceError>>,
{
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < ATTEMPTS && retryable(&e) => {
                tracing::debug!(operation, attempt, error = %e, "LiveKit call failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
                attempt += 1;
            }
            Err(source) => {
                let e = LiveKitError::Service { operation, source };
                // "Not found" answers a delete of what is already gone; not a failure.
                if !is_not_found(&e) {
                    crate::metrics::metrics().provider_error("livekit");
                }
                return Err(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn lk() -> LiveKit {
        LiveKit::new(&LiveKitConfig {
            url: "ws://localhost:7880".into(),
            api_url: "http://localhost:7880".into(),
            api_key: "devkey".into(),
            api_secret: Secret::new("secret-secret-secret-secret-1234"),
        })
    }

    #[test]
    fn participant_token_grants_one_room_and_nothing_admin() {
        let token = lk()
            .participant_token("caller-1", "Ann", "call-1--main", ParticipantRole::Caller)
            .unwrap();
        let claims = TokenVerifier::with_api_key("devkey", "secret-secret-secret-secret-1234")
            .verify(&token)
            .unwrap();
        assert_eq!(claims.sub, "caller-1");
        assert!(claims.video.room_join);
        assert_eq!(claims.video.room, "call-1--main");
        assert!(!claims.video.room_admin && !claims.video.room_create && !claims.video.room_list);
        assert!(!claims.video.room_record && !claims.video.ingress_admin);
        assert_eq!(claims.video.can_publish_data, Some(false));
    }

    #[test]
    fn debug_hides_the_secret() {
        assert!(!format!("{:?}", lk()).contains("secret-secret"));
    }
}
