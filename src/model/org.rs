//! The records of organisations the store keeps: API keys (as their digests), AI assistants
//! and SIP trunks. How they are made, checked and rendered is the business of
//! the `org` module, which re-exports them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// What a key may do inside its organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum KeyRole {
    /// Manages the organisation's keys, assistants and trunks.
    Admin,
    /// Uses and manages assistants and trunks, but not keys.
    #[default]
    Member,
}

/// A stored API key: who it is for, its organisation, and the digest of its secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyRecord {
    /// The id in the key text (`sbk_<keyId>_...`).
    pub key_id: String,
    /// The organisation (slug of `org_name`).
    pub org_id: String,
    /// The organisation's name as given.
    pub org_name: String,
    /// Who the key was made for.
    pub user_name: String,
    /// Their email address.
    pub user_email: String,
    /// What the key may do.
    pub role: KeyRole,
    /// SHA-256 (hex) of the key's secret part.
    pub digest: String,
    /// The per-key HMAC secret that signs end-of-call webhooks.
    #[serde(with = "super::secret_text")]
    pub webhook_secret: Secret,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it was revoked; a revoked key is refused.
    #[serde(default)]
    pub revoked_at: Option<DateTime<Utc>>,
}

/// How an assistant speaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tts {
    /// One of the providers `org::TTS_PROVIDERS` names.
    pub provider: String,
    /// The provider's voice id (required for `cartesia`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice_id: Option<String>,
    /// The provider's speaker (required for `sarvam`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speaker: Option<String>,
}

/// An AI voice assistant of an organisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Assistant {
    /// Its id.
    pub assistant_id: String,
    /// Its organisation.
    pub org_id: String,
    /// 1 to 120 characters.
    pub name: String,
    /// Free text, at most 2,000 characters.
    pub description: String,
    /// The system prompt, 1 to 20,000 characters; may hold `{{placeholders}}`.
    pub prompt: String,
    /// What it says first, at most 20,000 characters; may hold `{{placeholders}}`.
    pub start_instruction: String,
    /// How it speaks.
    pub tts: Tts,
    /// Where the end-of-call webhook goes.
    pub end_call_url: Option<String>,
    /// Whether its calls are recorded.
    pub record: bool,
    /// The key that created it.
    pub created_by_key_id: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// Starts at 1; every change bumps it.
    pub version: u64,
}

/// An outbound SIP trunk of an organisation, created in LiveKit. The password went to
/// LiveKit and is kept nowhere here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SipTrunk {
    /// Its id.
    pub trunk_id: String,
    /// Its organisation.
    pub org_id: String,
    /// 1 to 120 characters.
    pub name: String,
    /// The SIP server: host name or IP, optional `:port`.
    pub address: String,
    /// The numbers calls come from (E.164).
    pub numbers: Vec<String>,
    /// The SIP auth user name.
    pub auth_username: Option<String>,
    /// Whether a password was given to LiveKit.
    pub has_password: bool,
    /// `auto`, `udp`, `tcp` or `tls`.
    pub transport: String,
    /// LiveKit's id of the trunk (`ST_...`).
    pub livekit_trunk_id: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}
