//! LiveKit: participant tokens with the least grants, RoomService calls (best effort, with
//! retries, so the control plane keeps working while LiveKit's API is down), SIP trunks and
//! dial-outs, agent dispatch, audio recordings (egress to S3), and webhook verification like
//! LiveKit's own `WebhookReceiver`. LiveKit's protocol types stay inside.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use livekit_api::access_token::{AccessToken, TokenVerifier, VideoGrants};
use livekit_api::services::agent_dispatch::AgentDispatchClient;
use livekit_api::services::egress::{
    encoding::EncodingOptions, EgressClient, EgressOutput, RoomCompositeOptions,
};
use livekit_api::services::room::{CreateRoomOptions, RoomClient};
use livekit_api::services::sip::{
    CreateSIPOutboundTrunkOptions, CreateSIPParticipantOptions, SIPClient,
};
use livekit_api::services::{ServerError, ServiceError, SipCallError};
use livekit_api::webhooks::WebhookReceiver;
use livekit_protocol as proto;

use crate::secret::Secret;

/// Where LiveKit is and how to authenticate to it.
#[derive(Debug, Clone)]
pub struct LiveKitConfig {
    /// The URL browsers connect to (`ws://localhost:7880`).
    pub url: String,
    /// The URL the server calls for the RoomService API (`http://localhost:7880`).
    pub api_url: String,
    /// API key (`devkey` for `livekit-server --dev`).
    pub api_key: String,
    /// API secret.
    pub api_secret: Secret,
}

/// Where call recordings are uploaded (S3 or an S3-compatible store such as MinIO), from
/// `SWITCHBOARD_RECORDING_S3_*`. All or nothing: set the bucket and the rest becomes required.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingConfig {
    /// `SWITCHBOARD_RECORDING_S3_BUCKET`.
    pub bucket: String,
    /// `SWITCHBOARD_RECORDING_S3_REGION` (e.g. `eu-west-1`).
    pub region: String,
    /// `SWITCHBOARD_RECORDING_S3_ENDPOINT`: an S3-compatible endpoint (MinIO, R2, ...);
    /// `None` for AWS S3.
    pub endpoint: Option<String>,
    /// `SWITCHBOARD_RECORDING_S3_ACCESS_KEY`.
    pub access_key: String,
    /// `SWITCHBOARD_RECORDING_S3_SECRET`.
    pub secret: Secret,
    /// `SWITCHBOARD_RECORDING_S3_FORCE_PATH_STYLE`: `https://host/bucket/key` addressing
    /// (MinIO needs it).
    pub force_path_style: bool,
    /// `SWITCHBOARD_RECORDING_S3_PREFIX` (default `recordings/`): prepended to every object key.
    pub prefix: String,
}

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

/// What kind of participant a webhook is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParticipantKind {
    /// A web or mobile client.
    Standard,
    /// A phone leg dialled (or received) through LiveKit SIP.
    Sip,
    /// A LiveKit agent (e.g. a dispatched assistant).
    Agent,
    /// A recorder (egress).
    Egress,
    /// An ingested stream.
    Ingress,
    /// Any other kind (connectors, bridges, kinds added later).
    Other,
}

impl ParticipantKind {
    fn from_proto(kind: i32) -> ParticipantKind {
        use proto::participant_info::Kind;
        match Kind::try_from(kind) {
            Ok(Kind::Standard) => ParticipantKind::Standard,
            Ok(Kind::Sip) => ParticipantKind::Sip,
            Ok(Kind::Agent) => ParticipantKind::Agent,
            Ok(Kind::Egress) => ParticipantKind::Egress,
            Ok(Kind::Ingress) => ParticipantKind::Ingress,
            _ => ParticipantKind::Other,
        }
    }
}

/// The state of a recording (LiveKit's `EgressStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EgressStatus {
    /// Accepted, not recording yet.
    Starting,
    /// Recording.
    Active,
    /// Stopping, the file is being finished.
    Ending,
    /// Done; the file was uploaded.
    Complete,
    /// Failed (see the error).
    Failed,
    /// Ended before it started (e.g. the room closed first).
    Aborted,
    /// Stopped by a duration or size limit; the file was uploaded.
    LimitReached,
}

impl EgressStatus {
    fn from_proto(status: i32) -> EgressStatus {
        use proto::EgressStatus as S;
        match S::try_from(status) {
            Ok(S::EgressActive) => EgressStatus::Active,
            Ok(S::EgressEnding) => EgressStatus::Ending,
            Ok(S::EgressComplete) => EgressStatus::Complete,
            Ok(S::EgressFailed) => EgressStatus::Failed,
            Ok(S::EgressAborted) => EgressStatus::Aborted,
            Ok(S::EgressLimitReached) => EgressStatus::LimitReached,
            // Starting, or a status added later: not finished.
            _ => EgressStatus::Starting,
        }
    }

    /// Whether the recording is over (whatever the outcome).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            EgressStatus::Complete
                | EgressStatus::Failed
                | EgressStatus::Aborted
                | EgressStatus::LimitReached
        )
    }
}

/// A recording's progress, from `egress_started`, `egress_updated` and `egress_ended`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressActivity {
    /// The egress id (`EG_...`).
    pub egress_id: String,
    /// The room recorded.
    pub room: String,
    /// Where the recording is.
    pub status: EgressStatus,
    /// Where the file was uploaded (`s3://bucket/key` or a URL), once known.
    pub location: Option<String>,
    /// LiveKit's error text when it failed.
    pub error: Option<String>,
}

/// A LiveKit webhook reduced to what the switchboard acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomActivity {
    /// `participant_joined`, `participant_left`, `room_finished`, `egress_ended`, ...
    pub event: String,
    /// The webhook's unique id (for de-duplication).
    pub id: String,
    /// The room's name.
    pub room: String,
    /// The participant's identity, for participant events.
    pub identity: Option<String>,
    /// When LiveKit saw it, in milliseconds since the epoch.
    pub at_ms: i64,
    /// The participant's kind, for participant events.
    pub participant_kind: Option<ParticipantKind>,
    /// The participant's SID, for participant events: a new one for every join.
    pub participant_sid: Option<String>,
    /// The participant's attributes (`sip.callStatus`, `sip.phoneNumber`, ...).
    pub participant_attributes: BTreeMap<String, String>,
    /// Why the participant left (`CLIENT_INITIATED`, `ROOM_DELETED`, `USER_REJECTED`, ...),
    /// when LiveKit says.
    pub disconnect_reason: Option<String>,
    /// The recording, for `egress_*` events.
    pub egress: Option<EgressActivity>,
}

impl RoomActivity {
    fn from_event(event: proto::WebhookEvent) -> RoomActivity {
        let egress = event.egress_info.map(|info| {
            #[allow(deprecated)]
            let legacy = match &info.result {
                Some(proto::egress_info::Result::File(f)) => Some(f.location.clone()),
                _ => None,
            };
            let location = info
                .file_results
                .iter()
                .map(|f| f.location.clone())
                .chain(legacy)
                .find(|l| !l.is_empty());
            EgressActivity {
                egress_id: info.egress_id,
                room: info.room_name,
                status: EgressStatus::from_proto(info.status),
                location,
                error: Some(info.error).filter(|e| !e.is_empty()),
            }
        });
        let room = event
            .room
            .map(|r| r.name)
            .filter(|n| !n.is_empty())
            .or_else(|| egress.as_ref().map(|e| e.room.clone()))
            .unwrap_or_default();
        let participant_sid = event
            .participant
            .as_ref()
            .map(|p| p.sid.clone())
            .filter(|s| !s.is_empty());
        let (identity, participant_kind, participant_attributes, disconnect_reason) =
            match event.participant {
                Some(p) => {
                    let reason = proto::DisconnectReason::try_from(p.disconnect_reason)
                        .ok()
                        .filter(|r| *r != proto::DisconnectReason::UnknownReason)
                        .map(|r| r.as_str_name().to_string());
                    (
                        Some(p.identity),
                        Some(ParticipantKind::from_proto(p.kind)),
                        p.attributes.into_iter().collect(),
                        reason,
                    )
                }
                None => (None, None, BTreeMap::new(), None),
            };
        RoomActivity {
            event: event.event,
            id: event.id,
            room,
            identity,
            at_ms: event.created_at.saturating_mul(1000),
            participant_kind,
            participant_sid,
            participant_attributes,
            disconnect_reason,
            egress,
        }
    }
}

/// How LiveKit talks SIP to a trunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SipTransport {
    /// LiveKit chooses (the default).
    #[default]
    Auto,
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// TLS.
    Tls,
}

impl SipTransport {
    fn from_proto(transport: i32) -> SipTransport {
        match proto::SipTransport::try_from(transport) {
            Ok(proto::SipTransport::Udp) => SipTransport::Udp,
            Ok(proto::SipTransport::Tcp) => SipTransport::Tcp,
            Ok(proto::SipTransport::Tls) => SipTransport::Tls,
            _ => SipTransport::Auto,
        }
    }

    fn to_proto(self) -> proto::SipTransport {
        match self {
            SipTransport::Auto => proto::SipTransport::Auto,
            SipTransport::Udp => proto::SipTransport::Udp,
            SipTransport::Tcp => proto::SipTransport::Tcp,
            SipTransport::Tls => proto::SipTransport::Tls,
        }
    }
}

/// An outbound SIP trunk as LiveKit should hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundTrunkSpec {
    /// A human-readable name.
    pub name: String,
    /// The SIP provider's host name or IP (e.g. `example.pstn.twilio.com`), not a SIP URI.
    pub address: String,
    /// The numbers calls go out from (E.164).
    pub numbers: Vec<String>,
    /// Digest auth user name at the provider.
    pub auth_username: Option<String>,
    /// Digest auth password at the provider (never logged, never returned).
    pub auth_password: Option<Secret>,
    /// SIP transport.
    pub transport: SipTransport,
}

/// An outbound SIP trunk as LiveKit holds it (its password is never read back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundTrunk {
    /// The trunk id (`ST_...`).
    pub sip_trunk_id: String,
    /// Its name.
    pub name: String,
    /// The provider's host name or IP.
    pub address: String,
    /// The numbers calls go out from.
    pub numbers: Vec<String>,
    /// The digest auth user name, if any.
    pub auth_username: Option<String>,
    /// SIP transport.
    pub transport: SipTransport,
}

/// One SIP dial-out into a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipDial {
    /// The outbound trunk (`ST_...`).
    pub sip_trunk_id: String,
    /// The number to call (E.164).
    pub to_number: String,
    /// The room the callee joins.
    pub room: String,
    /// The callee's participant identity in the room.
    pub identity: String,
    /// The callee's display name in the room.
    pub name: String,
    /// How long the phone may ring before the dial counts as not answered.
    pub ringing_timeout: Duration,
}

/// The callee answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipAnswered {
    /// The participant's id in the room (`PA_...`).
    pub participant_id: String,
    /// The participant's identity in the room.
    pub identity: String,
    /// LiveKit's SIP call id (`SCL_...`).
    pub sip_call_id: String,
}

/// Why a dial-out did not connect.
#[derive(Debug, thiserror::Error)]
pub enum SipDialError {
    /// The far end or the trunk refused: SIP status (486 busy, 480/408 no answer, 603
    /// declined, 503...).
    #[error("the call was not answered: SIP {sip_status} {reason}")]
    Rejected {
        /// The final SIP status.
        sip_status: u16,
        /// The SIP reason phrase (`Busy Here`, ...).
        reason: String,
    },
    /// LiveKit itself failed (after retries where retrying is safe; never retry a dial that
    /// may ring).
    #[error("LiveKit could not place the call")]
    Service(#[source] LiveKitError),
}

impl SipDialError {
    /// The SIP status, when the far end or the trunk answered with one.
    pub fn sip_status(&self) -> Option<u16> {
        match self {
            SipDialError::Rejected { sip_status, .. } => Some(*sip_status),
            SipDialError::Service(_) => None,
        }
    }
}

/// Where recordings go (S3-compatible).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingTarget {
    /// The bucket.
    pub bucket: String,
    /// The bucket's region.
    pub region: String,
    /// An S3-compatible endpoint (MinIO, ...); `None` for AWS S3.
    pub endpoint: Option<String>,
    /// The access key LiveKit's egress uploads with.
    pub access_key: String,
    /// Its secret.
    pub secret: Secret,
    /// Path-style addressing (MinIO).
    pub force_path_style: bool,
    /// Prepended to every object key (`recordings/`).
    pub prefix: String,
}

impl From<&RecordingConfig> for RecordingTarget {
    fn from(cfg: &RecordingConfig) -> Self {
        RecordingTarget {
            bucket: cfg.bucket.clone(),
            region: cfg.region.clone(),
            endpoint: cfg.endpoint.clone(),
            access_key: cfg.access_key.clone(),
            secret: cfg.secret.clone(),
            force_path_style: cfg.force_path_style,
            prefix: cfg.prefix.clone(),
        }
    }
}

impl RecordingTarget {
    /// The target configured by `SWITCHBOARD_RECORDING_S3_*`.
    pub fn from_config(cfg: &RecordingConfig) -> Self {
        cfg.into()
    }

    /// The object key of a recording named `file_stem`.
    pub fn object_key(&self, file_stem: &str) -> String {
        format!("{}{}.ogg", self.prefix, file_stem)
    }

    fn file_output(&self, file_stem: &str) -> proto::EncodedFileOutput {
        proto::EncodedFileOutput {
            file_type: proto::EncodedFileType::Ogg as i32,
            filepath: self.object_key(file_stem),
            disable_manifest: true,
            output: Some(proto::encoded_file_output::Output::S3(proto::S3Upload {
                access_key: self.access_key.clone(),
                secret: self.secret.expose().to_string(),
                region: self.region.clone(),
                endpoint: self.endpoint.clone().unwrap_or_default(),
                bucket: self.bucket.clone(),
                force_path_style: self.force_path_style,
                ..Default::default()
            })),
        }
    }
}

/// The LiveKit plane (cheap to clone).
#[derive(Clone)]
pub struct LiveKit {
    url: String,
    api_key: String,
    api_secret: String,
    rooms: Arc<RoomClient>,
    sip: Arc<SIPClient>,
    dispatch: Arc<AgentDispatchClient>,
    egress: Arc<EgressClient>,
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
            rooms: Arc::new(
                RoomClient::with_api_key(&cfg.api_url, &cfg.api_key, &secret)
                    .with_request_timeout(REQUEST_TIMEOUT),
            ),
            // No region failover: it would replay a dial-out that may already ring.
            sip: Arc::new(
                SIPClient::with_api_key(&cfg.api_url, &cfg.api_key, &secret)
                    .with_request_timeout(REQUEST_TIMEOUT)
                    .with_failover(false),
            ),
            dispatch: Arc::new(
                AgentDispatchClient::with_api_key(&cfg.api_url, &cfg.api_key, &secret)
                    .with_request_timeout(REQUEST_TIMEOUT)
                    .with_failover(false),
            ),
            egress: Arc::new(
                EgressClient::with_api_key(&cfg.api_url, &cfg.api_key, &secret)
                    .with_request_timeout(REQUEST_TIMEOUT)
                    .with_failover(false),
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
        Ok(RoomActivity::from_event(event))
    }

    /// Creates an outbound SIP trunk (SIP `CreateSIPOutboundTrunk`, grant `sip.admin`);
    /// returns its id (`ST_...`). Retried only when the request surely did not arrive.
    pub async fn create_outbound_trunk(
        &self,
        spec: &OutboundTrunkSpec,
    ) -> Result<String, LiveKitError> {
        let opts = || CreateSIPOutboundTrunkOptions {
            transport: spec.transport.to_proto(),
            auth_username: spec.auth_username.clone().unwrap_or_default(),
            auth_password: spec
                .auth_password
                .as_ref()
                .map(|p| p.expose().to_string())
                .unwrap_or_default(),
            ..Default::default()
        };
        let trunk = retry_with("CreateSIPOutboundTrunk", Retry::NotSent, || {
            self.sip.create_sip_outbound_trunk(
                spec.name.clone(),
                spec.address.clone(),
                spec.numbers.clone(),
                opts(),
            )
        })
        .await?;
        Ok(trunk.sip_trunk_id)
    }

    /// The outbound SIP trunks LiveKit holds (grant `sip.admin`), without their passwords.
    pub async fn list_outbound_trunks(&self) -> Result<Vec<OutboundTrunk>, LiveKitError> {
        use livekit_api::services::sip::ListSIPOutboundTrunkFilter;
        let list = retry("ListSIPOutboundTrunk", || {
            self.sip
                .list_sip_outbound_trunk(ListSIPOutboundTrunkFilter::All)
        })
        .await?;
        Ok(list
            .into_iter()
            .map(|t| OutboundTrunk {
                sip_trunk_id: t.sip_trunk_id,
                name: t.name,
                address: t.address,
                numbers: t.numbers,
                auth_username: Some(t.auth_username).filter(|u| !u.is_empty()),
                transport: SipTransport::from_proto(t.transport),
            })
            .collect())
    }

    /// Deletes a SIP trunk (one that is already gone counts as deleted).
    pub async fn delete_sip_trunk(&self, sip_trunk_id: &str) -> Result<(), LiveKitError> {
        match retry("DeleteSIPTrunk", || self.sip.delete_sip_trunk(sip_trunk_id)).await {
            Err(e) if is_not_found(&e) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Dispatches the agent `agent_name` into `room` with `metadata` (its job metadata,
    /// e.g. the rendered prompt); returns the dispatch id (`AD_...`).
    pub async fn dispatch_agent(
        &self,
        room: &str,
        agent_name: &str,
        metadata: &str,
    ) -> Result<String, LiveKitError> {
        let request = || proto::CreateAgentDispatchRequest {
            agent_name: agent_name.to_string(),
            room: room.to_string(),
            metadata: metadata.to_string(),
            ..Default::default()
        };
        let dispatch = retry_with("CreateDispatch", Retry::NotSent, || {
            self.dispatch.create_dispatch(request())
        })
        .await?;
        Ok(dispatch.id)
    }

    /// Removes an agent dispatch (the agent leaves the room); one already gone counts as
    /// removed.
    pub async fn delete_dispatch(&self, room: &str, dispatch_id: &str) -> Result<(), LiveKitError> {
        match retry("DeleteDispatch", || {
            self.dispatch.delete_dispatch(dispatch_id, room)
        })
        .await
        {
            Err(e) if is_not_found(&e) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Dials `dial.to_number` through the trunk into the room and waits until the callee
    /// answers (`CreateSIPParticipant` with `wait_until_answered`, grant `sip.call`).
    ///
    /// A SIP refusal (busy, no answer, declined, ...) is [`SipDialError::Rejected`]. The
    /// request is repeated only when it never reached LiveKit; a dial that may ring is never
    /// repeated. When the answer does not come in time the callee's leg is removed from the
    /// room (best effort), so no phone keeps ringing into a call nobody waits for.
    pub async fn dial_sip(&self, dial: &SipDial) -> Result<SipAnswered, SipDialError> {
        let opts = CreateSIPParticipantOptions {
            participant_identity: dial.identity.clone(),
            participant_name: Some(dial.name.clone()),
            wait_until_answered: Some(true),
            ringing_timeout: Some(dial.ringing_timeout),
            ..Default::default()
        };
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            let result = self
                .sip
                .create_sip_participant(
                    dial.sip_trunk_id.clone(),
                    dial.to_number.clone(),
                    dial.room.clone(),
                    opts.clone(),
                    None,
                )
                .await;
            let e = match result {
                Ok(info) => {
                    return Ok(SipAnswered {
                        participant_id: info.participant_id,
                        identity: info.participant_identity,
                        sip_call_id: info.sip_call_id,
                    })
                }
                Err(e) => e,
            };
            if let Some((sip_status, reason)) = sip_rejection(&e) {
                return Err(SipDialError::Rejected { sip_status, reason });
            }
            if attempt < ATTEMPTS && never_sent(&e) {
                tracing::debug!(attempt, error = %e, "LiveKit dial did not reach the server; retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
                attempt += 1;
                continue;
            }
            if is_timeout(&e) {
                if let Err(cleanup) = self.remove_participant(&dial.room, &dial.identity).await {
                    tracing::warn!(room = %dial.room, error = %cleanup, "could not remove an unanswered SIP leg");
                }
            }
            crate::metrics::metrics().provider_error("livekit");
            return Err(SipDialError::Service(LiveKitError::Service {
                operation: "CreateSIPParticipant",
                source: e,
            }));
        }
    }

    /// Starts recording `room`: an audio-only room-composite egress writing an OGG file to
    /// `target` under `{prefix}{file_stem}.ogg` (grant `roomRecord`); returns the egress id.
    pub async fn start_audio_recording(
        &self,
        room: &str,
        target: &RecordingTarget,
        file_stem: &str,
    ) -> Result<String, LiveKitError> {
        let options = || RoomCompositeOptions {
            audio_only: true,
            encoding: EncodingOptions {
                audio_codec: proto::AudioCodec::Opus,
                audio_bitrate: 64,
                audio_frequency: 48_000,
                ..Default::default()
            },
            ..Default::default()
        };
        let info = retry_with("StartRoomCompositeEgress", Retry::NotSent, || {
            self.egress.start_room_composite_egress(
                room,
                vec![EgressOutput::File(target.file_output(file_stem))],
                options(),
            )
        })
        .await?;
        Ok(info.egress_id)
    }

    /// Stops a recording; one that already ended (or never existed) counts as stopped.
    pub async fn stop_egress(&self, egress_id: &str) -> Result<(), LiveKitError> {
        match retry("StopEgress", || self.egress.stop_egress(egress_id)).await {
            Err(e) if is_not_found(&e) || twirp_code(&e) == Some("failed_precondition") => Ok(()),
            other => other.map(|_| ()),
        }
    }
}

/// The SIP status and reason of a dial refused by the far end or the trunk.
fn sip_rejection(e: &ServiceError) -> Option<(u16, String)> {
    let sip = SipCallError::from_error(e)?;
    let status = sip
        .sip_status_code()
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (300..700).contains(c))?;
    let reason = sip.sip_status().unwrap_or_default().to_string();
    Some((status, reason))
}

/// The request surely did not reach LiveKit (the connection was never made).
fn never_sent(e: &ServiceError) -> bool {
    matches!(e, ServiceError::Twirp(ServerError::Request(e)) if e.is_connect())
}

fn is_timeout(e: &ServiceError) -> bool {
    matches!(e, ServiceError::Twirp(ServerError::Request(e)) if e.is_timeout())
}

fn twirp_code(e: &LiveKitError) -> Option<&str> {
    match e {
        LiveKitError::Service {
            source: ServiceError::Twirp(ServerError::Twirp(code)),
            ..
        } => Some(code.code.as_str()),
        _ => None,
    }
}

fn is_not_found(e: &LiveKitError) -> bool {
    twirp_code(e) == Some("not_found")
}

/// Which failures a call may be repeated after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// The call is idempotent: repeat after any transient failure.
    Idempotent,
    /// The call creates something: repeat only when the request surely was not acted on (no
    /// connection, or the server said it is unavailable or overloaded before doing anything).
    NotSent,
}

impl Retry {
    fn allows(self, e: &ServiceError) -> bool {
        match self {
            Retry::Idempotent => retryable(e),
            Retry::NotSent => {
                never_sent(e)
                    || matches!(
                        e,
                        ServiceError::Twirp(ServerError::Twirp(code))
                            if matches!(code.code.as_str(), "unavailable" | "resource_exhausted")
                                && code.meta.is_empty()
                    )
            }
        }
    }
}

/// Whether a failure is worth retrying (network, 5xx, rate limit), not a refusal.
fn retryable(e: &ServiceError) -> bool {
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

async fn retry<T, F, Fut>(operation: &'static str, call: F) -> Result<T, LiveKitError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ServiceError>>,
{
    retry_with(operation, Retry::Idempotent, call).await
}

async fn retry_with<T, F, Fut>(
    operation: &'static str,
    policy: Retry,
    mut call: F,
) -> Result<T, LiveKitError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ServiceError>>,
{
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < ATTEMPTS && policy.allows(&e) => {
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
    use crate::secret::Secret;

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

    fn twirp_error(code: &str, meta: &[(&str, &str)]) -> ServiceError {
        ServiceError::Twirp(ServerError::Twirp(livekit_api::services::ServerErrorCode {
            code: code.into(),
            msg: "sip status 486: Busy Here".into(),
            meta: meta
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }))
    }

    #[test]
    fn sip_status_is_read_from_the_twirp_meta() {
        let busy = twirp_error(
            "resource_exhausted",
            &[("sip_status_code", "486"), ("sip_status", "Busy Here")],
        );
        assert_eq!(sip_rejection(&busy), Some((486, "Busy Here".into())));
        let declined = twirp_error(
            "permission_denied",
            &[("sip_status_code", "603"), ("sip_status", "Decline")],
        );
        assert_eq!(sip_rejection(&declined), Some((603, "Decline".into())));
        let no_reason = twirp_error("deadline_exceeded", &[("sip_status_code", "408")]);
        assert_eq!(sip_rejection(&no_reason), Some((408, String::new())));
        // LiveKit's own refusals carry no SIP status: they are service errors, not rejections.
        assert_eq!(sip_rejection(&twirp_error("permission_denied", &[])), None);
        assert_eq!(sip_rejection(&twirp_error("not_found", &[])), None);
        // A status that is not a final failure is not a rejection.
        let odd = twirp_error("unknown", &[("sip_status_code", "180")]);
        assert_eq!(sip_rejection(&odd), None);
        let garbage = twirp_error("unknown", &[("sip_status_code", "busy")]);
        assert_eq!(sip_rejection(&garbage), None);
    }

    #[test]
    fn creations_are_repeated_only_when_surely_not_acted_on() {
        let unavailable = twirp_error("unavailable", &[]);
        let internal = twirp_error("internal", &[]);
        let busy = twirp_error("resource_exhausted", &[("sip_status_code", "486")]);
        assert!(Retry::NotSent.allows(&unavailable));
        assert!(!Retry::NotSent.allows(&internal));
        assert!(
            !Retry::NotSent.allows(&busy),
            "a SIP refusal is never repeated"
        );
        assert!(Retry::Idempotent.allows(&internal));
        assert!(!Retry::Idempotent.allows(&twirp_error("not_found", &[])));
        assert!(!Retry::NotSent.allows(&twirp_error("invalid_argument", &[])));
    }

    #[test]
    fn recordings_are_ogg_files_uploaded_with_the_configured_credentials() {
        let target = RecordingTarget {
            bucket: "calls".into(),
            region: "eu-west-1".into(),
            endpoint: Some("http://127.0.0.1:9000".into()),
            access_key: "AKID".into(),
            secret: Secret::new("s3-secret"),
            force_path_style: true,
            prefix: "recordings/".into(),
        };
        assert!(!format!("{target:?}").contains("s3-secret"));
        let out = target.file_output("call-1");
        assert_eq!(out.filepath, "recordings/call-1.ogg");
        assert_eq!(out.file_type, proto::EncodedFileType::Ogg as i32);
        match out.output {
            Some(proto::encoded_file_output::Output::S3(s3)) => {
                assert_eq!(s3.bucket, "calls");
                assert_eq!(s3.region, "eu-west-1");
                assert_eq!(s3.endpoint, "http://127.0.0.1:9000");
                assert_eq!(
                    (s3.access_key.as_str(), s3.secret.as_str()),
                    ("AKID", "s3-secret")
                );
                assert!(s3.force_path_style);
            }
            other => panic!("expected an S3 upload, got {other:?}"),
        }
    }

    #[test]
    fn webhooks_carry_participant_kind_attributes_reason_and_egress() {
        let joined = proto::WebhookEvent {
            event: "participant_left".into(),
            id: "EV_1".into(),
            created_at: 1_700_000_000,
            room: Some(proto::Room {
                name: "call-1--main".into(),
                ..Default::default()
            }),
            participant: Some(proto::ParticipantInfo {
                sid: "PA_callee1".into(),
                identity: "callee".into(),
                kind: proto::participant_info::Kind::Sip as i32,
                disconnect_reason: proto::DisconnectReason::UserRejected as i32,
                attributes: [("sip.callStatus".to_string(), "hangup".to_string())].into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let a = RoomActivity::from_event(joined);
        assert_eq!(a.room, "call-1--main");
        assert_eq!(a.identity.as_deref(), Some("callee"));
        assert_eq!(a.at_ms, 1_700_000_000_000);
        assert_eq!(a.participant_kind, Some(ParticipantKind::Sip));
        assert_eq!(a.participant_sid.as_deref(), Some("PA_callee1"));
        assert_eq!(a.participant_attributes["sip.callStatus"], "hangup");
        assert_eq!(a.disconnect_reason.as_deref(), Some("USER_REJECTED"));
        assert_eq!(a.egress, None);

        let agent = proto::ParticipantInfo {
            kind: proto::participant_info::Kind::Agent as i32,
            ..Default::default()
        };
        let a = RoomActivity::from_event(proto::WebhookEvent {
            event: "participant_joined".into(),
            participant: Some(agent),
            ..Default::default()
        });
        assert_eq!(a.participant_kind, Some(ParticipantKind::Agent));
        assert_eq!(a.disconnect_reason, None);

        let ended = proto::WebhookEvent {
            event: "egress_ended".into(),
            id: "EV_2".into(),
            egress_info: Some(proto::EgressInfo {
                egress_id: "EG_1".into(),
                room_name: "call-1--main".into(),
                status: proto::EgressStatus::EgressComplete as i32,
                file_results: vec![proto::FileInfo {
                    location: "s3://calls/recordings/call-1.ogg".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let a = RoomActivity::from_event(ended);
        assert_eq!(
            a.room, "call-1--main",
            "egress events name the room in egressInfo"
        );
        assert_eq!(a.participant_kind, None);
        let e = a.egress.unwrap();
        assert_eq!(e.egress_id, "EG_1");
        assert_eq!(e.status, EgressStatus::Complete);
        assert!(e.status.is_final());
        assert_eq!(
            e.location.as_deref(),
            Some("s3://calls/recordings/call-1.ogg")
        );
        assert_eq!(e.error, None);

        let failed = proto::WebhookEvent {
            event: "egress_ended".into(),
            egress_info: Some(proto::EgressInfo {
                egress_id: "EG_2".into(),
                status: proto::EgressStatus::EgressFailed as i32,
                error: "upload failed: access denied".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let e = RoomActivity::from_event(failed).egress.unwrap();
        assert_eq!(e.status, EgressStatus::Failed);
        assert_eq!(e.location, None);
        assert_eq!(e.error.as_deref(), Some("upload failed: access denied"));
        assert!(!EgressStatus::Active.is_final());
    }
}
