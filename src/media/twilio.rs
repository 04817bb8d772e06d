//! The Twilio plane: what the call actor asks of Twilio (dial, redirect into a conference,
//! hold, hang up, remove, end a conference), the TwiML the webhooks answer with, the URLs
//! Twilio calls back on, and Access Tokens for browsers joining conferences.

use crate::secret::Secret;
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::twilio::rest::{
    CallEndStatus, CreateCall, RetryPolicy, TwilioAuth, TwilioClient, TwilioError, UpdateCall,
    UpdateParticipant,
};
use crate::twilio::token::{voice_access_token, TokenError, VoiceTokenSpec};
use crate::twilio::twiml::{self, ConferenceJoin};

/// Twilio: phone callers, phone specialists and browser client legs in conferences. All or
/// nothing: set `TWILIO_ACCOUNT_SID` and the rest becomes required.
#[derive(Debug, Clone)]
pub struct TwilioConfig {
    /// `TWILIO_ACCOUNT_SID` (`AC…`).
    pub account_sid: String,
    /// `TWILIO_AUTH_TOKEN`: Twilio signs every webhook with it.
    pub auth_token: Secret,
    /// `TWILIO_API_KEY` (`SK…`) and `TWILIO_API_SECRET`: REST calls and Voice SDK Access
    /// Tokens; without them REST uses the account SID and auth token.
    pub api_key: Option<(String, Secret)>,
    /// `TWILIO_PHONE_NUMBER`: the number phone specialists see calling (E.164).
    pub phone_number: String,
    /// `TWILIO_APP_SID` (`AP…`): the TwiML App whose voice URL is `/twilio/client`, for the
    /// browser's Voice SDK.
    pub app_sid: Option<String>,
    /// `TWILIO_API_BASE_URL` (default `https://api.twilio.com`).
    pub api_base_url: String,
    /// `SWITCHBOARD_PUBLIC_URL`: the URL Twilio reaches this server at (an ngrok URL in
    /// development); webhook signatures are checked against it.
    pub public_url: String,
    /// `SWITCHBOARD_HOLD_MUSIC_URL`: what a waiting or held phone caller hears.
    pub hold_music_url: String,
    /// `SWITCHBOARD_TWILIO_TRANSCRIBE`: transcribe phone legs in real time
    /// (`<Start><Transcription>`, a billed Twilio feature), feeding the AI briefing.
    pub transcribe: bool,
}

/// Twilio's demo hold music (played by Twilio, fetched by Twilio, never by us).
pub const DEFAULT_HOLD_MUSIC: &str =
    "http://com.twilio.music.classical.s3.amazonaws.com/BusyStrings.mp3";

/// Conference events we ask Twilio to report (`statusCallbackEvent`).
pub const CONFERENCE_EVENTS: &str = "start end join leave hold modify";

/// Call events we ask Twilio to report for the legs we dial (terminal ones always come).
pub const CALL_EVENTS: [&str; 4] = ["initiated", "ringing", "answered", "completed"];

/// How long a browser's Twilio Access Token lives, in seconds.
pub const CLIENT_TOKEN_TTL_SECS: u64 = 3_600;

/// Seconds a phone specialist has to press a key after the briefing.
pub const GATHER_TIMEOUT_SECS: u32 = 8;

/// The Twilio plane of the switchboard (cheap to clone).
#[derive(Clone, Debug)]
pub struct TwilioBridge {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: TwilioClient,
    config: TwilioConfig,
}

impl TwilioBridge {
    /// A bridge for the configured account.
    pub fn new(config: &TwilioConfig) -> Result<Self, TwilioError> {
        let auth = match &config.api_key {
            Some((key_sid, key_secret)) => TwilioAuth::ApiKey {
                account_sid: config.account_sid.clone(),
                key_sid: key_sid.clone(),
                key_secret: key_secret.clone(),
            },
            None => TwilioAuth::AuthToken {
                account_sid: config.account_sid.clone(),
                auth_token: config.auth_token.clone(),
            },
        };
        let client = TwilioClient::new(&config.api_base_url, auth, RetryPolicy::default())?;
        Ok(TwilioBridge {
            inner: Arc::new(Inner {
                client,
                config: config.clone(),
            }),
        })
    }

    /// The settings.
    pub fn config(&self) -> &TwilioConfig {
        &self.inner.config
    }

    /// The public URL of one of our webhooks, with its query (values encoded).
    pub fn url(&self, path: &str, query: &[(&str, &str)]) -> String {
        let mut url = format!("{}{path}", self.inner.config.public_url);
        if !query.is_empty() {
            let encoded: String = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(query)
                .finish();
            url.push('?');
            url.push_str(&encoded);
        }
        url
    }

    /// A Voice SDK Access Token for a browser to join conferences as `identity`, through the
    /// TwiML App (`TWILIO_APP_SID`). Incoming calls are not granted: browsers only dial in.
    pub fn client_token(&self, identity: &str, now_secs: u64) -> Result<String, ClientTokenError> {
        let cfg = &self.inner.config;
        let (Some((key_sid, key_secret)), Some(app_sid)) = (&cfg.api_key, &cfg.app_sid) else {
            return Err(ClientTokenError::NotConfigured);
        };
        Ok(voice_access_token(&VoiceTokenSpec {
            account_sid: &cfg.account_sid,
            api_key_sid: key_sid,
            api_key_secret: key_secret,
            identity,
            outgoing_application_sid: Some(app_sid),
            outgoing_params: BTreeMap::new(),
            incoming_allow: false,
            ttl_secs: CLIENT_TOKEN_TTL_SECS,
            now_secs,
        })?)
    }

    /// The TwiML that puts a leg into one of the call's conferences. The caller waits with
    /// music until an agent starts the conference; nobody's leaving ends it (a held caller
    /// must never end it). A phone leg (`phone`) is transcribed in real time when
    /// `SWITCHBOARD_TWILIO_TRANSCRIBE` is on; browsers' legs are not (their agents type or
    /// their own speech-to-text sends transcripts).
    pub fn join_twiml(
        &self,
        call_id: &str,
        conference: &str,
        label: &str,
        caller: bool,
        phone: bool,
    ) -> String {
        let status_callback = self.url("/twilio/conference", &[("callId", call_id)]);
        let transcription = (phone && self.inner.config.transcribe).then(|| {
            self.url(
                "/twilio/transcription",
                &[("callId", call_id), ("speaker", label)],
            )
        });
        let wait_url = self.url("/twilio/music", &[]);
        twiml::join_conference(&ConferenceJoin {
            conference,
            label,
            start_on_enter: !caller,
            end_on_exit: false,
            wait_url: Some(&wait_url),
            muted: false,
            beep: false,
            status_callback: &status_callback,
            status_callback_events: CONFERENCE_EVENTS,
            say_first: None,
            transcription_callback: transcription.as_deref(),
        })
    }

    /// Dials a phone agent for a transfer; the answer is `/twilio/whisper`. Returns the
    /// new call's SID.
    pub async fn dial(
        &self,
        call_id: &str,
        transfer_id: &str,
        agent_id: &str,
        number: &str,
        ring_secs: u32,
    ) -> Result<String, TwilioError> {
        let query = [
            ("callId", call_id),
            ("transferId", transfer_id),
            ("agentId", agent_id),
        ];
        let req = CreateCall {
            to: number.to_string(),
            from: self.inner.config.phone_number.clone(),
            url: Some(self.url("/twilio/whisper", &query)),
            twiml: None,
            status_callback: Some(self.url("/twilio/status", &query)),
            status_callback_event: CALL_EVENTS.iter().map(|e| e.to_string()).collect(),
            timeout_secs: Some(ring_secs),
            ..CreateCall::default()
        };
        Ok(self.inner.client.create_call(&req).await?.sid)
    }

    /// Moves a phone leg into a conference.
    pub async fn redirect(
        &self,
        call_id: &str,
        call_sid: &str,
        conference: &str,
        label: &str,
    ) -> Result<(), TwilioError> {
        let req = UpdateCall {
            twiml: Some(self.join_twiml(call_id, conference, label, false, true)),
            ..UpdateCall::default()
        };
        self.inner.client.update_call(call_sid, &req).await?;
        Ok(())
    }

    /// Holds (with music) or resumes a conference participant.
    pub async fn hold(
        &self,
        conference_sid: &str,
        label: &str,
        hold: bool,
    ) -> Result<(), TwilioError> {
        let req = UpdateParticipant {
            hold: Some(hold),
            hold_url: hold.then(|| self.url("/twilio/music", &[])),
            ..UpdateParticipant::default()
        };
        self.update_participant(conference_sid, label, &req).await
    }

    /// Mutes or unmutes a conference participant.
    pub async fn mute(
        &self,
        conference_sid: &str,
        label: &str,
        muted: bool,
    ) -> Result<(), TwilioError> {
        let req = UpdateParticipant {
            muted: Some(muted),
            ..UpdateParticipant::default()
        };
        self.update_participant(conference_sid, label, &req).await
    }

    async fn update_participant(
        &self,
        conference_sid: &str,
        label: &str,
        req: &UpdateParticipant,
    ) -> Result<(), TwilioError> {
        self.inner
            .client
            .update_participant(conference_sid, label, req)
            .await
            .map(|_| ())
    }

    /// Ends a leg: cancels it while it may still ring (falling back to hanging up if it was
    /// answered meanwhile), hangs it up otherwise. A leg that is already gone is fine.
    pub async fn hangup(&self, call_sid: &str, ringing: bool) -> Result<(), TwilioError> {
        let end = |status| UpdateCall {
            status: Some(status),
            ..UpdateCall::default()
        };
        let first = if ringing {
            CallEndStatus::Canceled
        } else {
            CallEndStatus::Completed
        };
        match self.inner.client.update_call(call_sid, &end(first)).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(TwilioError::Api { .. }) if ringing => {
                match self
                    .inner
                    .client
                    .update_call(call_sid, &end(CallEndStatus::Completed))
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(e) if e.is_not_found() => Ok(()),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Removes a participant (a browser's client leg) from a conference.
    pub async fn remove(&self, conference_sid: &str, label: &str) -> Result<(), TwilioError> {
        match self
            .inner
            .client
            .remove_participant(conference_sid, label)
            .await
        {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        }
    }

    /// The SID of the conference named `conference` that is running now, if any: for
    /// effects on a conference whose start Twilio's callback never told us (lost, or sent
    /// while the switchboard was down).
    pub async fn running_conference(
        &self,
        conference: &str,
    ) -> Result<Option<String>, TwilioError> {
        Ok(self
            .inner
            .client
            .find_conferences(conference, "in-progress")
            .await?
            .into_iter()
            .next())
    }

    /// Ends a conference for everyone in it.
    pub async fn end_conference(&self, conference_sid: &str) -> Result<(), TwilioError> {
        match self.inner.client.end_conference(conference_sid).await {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        }
    }
}

/// Why no Access Token could be minted for a browser.
#[derive(Debug, thiserror::Error)]
pub enum ClientTokenError {
    /// `TWILIO_API_KEY`, `TWILIO_API_SECRET` and `TWILIO_APP_SID` are needed.
    #[error("browser legs need TWILIO_API_KEY, TWILIO_API_SECRET and TWILIO_APP_SID")]
    NotConfigured,
    /// Signing failed.
    #[error("could not sign the Access Token")]
    Sign(#[from] TokenError),
}
