//! Organisations and what they own: API keys (generation, parsing, verification), AI
//! assistants (validation, partial updates, `{{placeholder}}` rendering) and SIP trunks
//! (validation). Pure: no I/O besides the operating system's random source for new keys.
//!
//! # Organisations
//!
//! An organisation has no record of its own: its id is the slug of its name (`"Acme Corp"` →
//! `acme-corp`), written into every key, assistant and trunk it owns. Two keys created with
//! names that slug alike (`"Acme Corp"`, `"acme-corp"`) belong to the same organisation.
//!
//! # API keys
//!
//! A key's text is `sbk_<keyId>_<secret>`: `keyId` is 24 lowercase hex characters (96 random
//! bits) naming the stored record, and `secret` is 43 base64url characters (256 random bits).
//! Only the SHA-256 digest (hex) of the secret is stored. A fast hash is right here: the
//! secret is 256 uniformly random bits, so there is nothing to brute-force that a slow
//! password hash (argon2, bcrypt) would protect; slow hashes exist for low-entropy passwords.
//! The digest is compared in constant time.

use std::collections::BTreeSet;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::secret::Secret;

pub use crate::model::org::{ApiKeyRecord, Assistant, KeyRole, SipTrunk, Tts};

/// The prefix of every organisation API key.
pub const KEY_PREFIX: &str = "sbk_";
/// The key id recorded as an assistant's creator when the root (management) key creates it:
/// its webhooks are signed with `SWITCHBOARD_WEBHOOK_SECRET`.
pub const ROOT_CREATOR: &str = "root";
/// The prefix of every webhook signing secret.
pub const WEBHOOK_SECRET_PREFIX: &str = "whsec_";
/// Length of a key id (hex characters).
const KEY_ID_LEN: usize = 24;
/// Length of a key's secret part (base64url characters of 32 bytes, no padding).
const SECRET_LEN: usize = 43;

/// What is wrong with an input or why a key could not be made.
#[derive(Debug, thiserror::Error)]
pub enum OrgError {
    /// A field is invalid; the message names it.
    #[error("{field}: {message}")]
    Invalid {
        /// The field (camelCase, as in the API).
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The operating system's random source failed.
    #[error("the operating system's random number generator failed")]
    Random(#[source] getrandom::Error),
}

fn invalid(field: &'static str, message: impl Into<String>) -> OrgError {
    OrgError::Invalid {
        field,
        message: message.into(),
    }
}

/// Checks a text's length in characters.
fn check_len(field: &'static str, value: &str, min: usize, max: usize) -> Result<(), OrgError> {
    let n = value.chars().count();
    if n < min || n > max {
        return Err(invalid(
            field,
            format!("must be {min} to {max} characters (got {n})"),
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(())
}

/// The organisation id of an organisation name: lowercase ASCII letters and digits, every
/// other run of characters becoming one `-`, trimmed, at most 64 characters.
pub fn org_id_for(org_name: &str) -> Result<String, OrgError> {
    check_len("orgName", org_name, 1, 120)?;
    let mut slug = String::new();
    for c in org_name.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug: String = slug.trim_end_matches('-').chars().take(64).collect();
    let slug = slug.trim_end_matches('-').to_string();
    if slug.is_empty() {
        return Err(invalid(
            "orgName",
            "must contain at least one ASCII letter or digit",
        ));
    }
    Ok(slug)
}

/// A key as listed: everything but the digest and the webhook secret.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyView {
    /// The key's id.
    pub key_id: String,
    /// Its organisation.
    pub org_id: String,
    /// The organisation's name.
    pub org_name: String,
    /// Who it is for.
    pub user_name: String,
    /// Their email.
    pub user_email: String,
    /// `admin` or `member`.
    pub role: KeyRole,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<&ApiKeyRecord> for ApiKeyView {
    fn from(r: &ApiKeyRecord) -> Self {
        ApiKeyView {
            key_id: r.key_id.clone(),
            org_id: r.org_id.clone(),
            org_name: r.org_name.clone(),
            user_name: r.user_name.clone(),
            user_email: r.user_email.clone(),
            role: r.role,
            created_at: r.created_at,
            revoked_at: r.revoked_at,
        }
    }
}

/// A freshly made key: the record to store and the texts shown once.
#[derive(Debug)]
pub struct NewKey {
    /// What to store.
    pub record: ApiKeyRecord,
    /// The full key text, `sbk_<keyId>_<secret>`.
    pub api_key: Secret,
}

/// Who a new key is for.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyRequest {
    /// The person's name.
    pub user_name: String,
    /// The organisation's name.
    pub org_name: String,
    /// The person's email.
    pub user_email: String,
    /// `admin` or `member` (default `member`).
    #[serde(default)]
    pub role: KeyRole,
}

fn random_bytes<const N: usize>() -> Result<[u8; N], OrgError> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(OrgError::Random)?;
    Ok(buf)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 (hex) of a key's secret part.
pub fn digest(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// Checks an email address's shape: `local@domain` with a dot in the domain, no spaces.
fn check_email(value: &str) -> Result<(), OrgError> {
    check_len("userEmail", value, 3, 254)?;
    let ok = match value.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !value.chars().any(char::is_whitespace)
        }
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(invalid("userEmail", "must be an email address"))
    }
}

/// Validates a key request and makes the key: random id and secret, the digest to store, and
/// a webhook secret.
pub fn generate_key(req: &KeyRequest, now: DateTime<Utc>) -> Result<NewKey, OrgError> {
    check_len("userName", &req.user_name, 1, 120)?;
    let org_id = org_id_for(&req.org_name)?;
    check_email(&req.user_email)?;
    let key_id = hex(&random_bytes::<{ KEY_ID_LEN / 2 }>()?);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>()?);
    let webhook = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>()?);
    let record = ApiKeyRecord {
        key_id: key_id.clone(),
        org_id,
        org_name: req.org_name.clone(),
        user_name: req.user_name.clone(),
        user_email: req.user_email.clone(),
        role: req.role,
        digest: digest(&secret),
        webhook_secret: Secret::new(format!("{WEBHOOK_SECRET_PREFIX}{webhook}")),
        created_at: now,
        revoked_at: None,
    };
    Ok(NewKey {
        record,
        api_key: Secret::new(format!("{KEY_PREFIX}{key_id}_{secret}")),
    })
}

/// Splits a key text into `(keyId, secret)`; `None` unless it has the exact shape.
pub fn parse_key(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_at_checked(KEY_ID_LEN)?;
    let secret = secret.strip_prefix('_')?;
    let id_ok = id
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let secret_ok = secret.len() == SECRET_LEN
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (id_ok && secret_ok).then_some((id, secret))
}

/// Whether a text looks like an organisation key (`sbk_` prefix), valid or not.
pub fn looks_like_key(text: &str) -> bool {
    text.starts_with(KEY_PREFIX)
}

impl ApiKeyRecord {
    /// Whether `secret` (the part after the id) is this key's, in constant time.
    pub fn secret_matches(&self, secret: &str) -> bool {
        let presented = digest(secret);
        let (a, b) = (presented.as_bytes(), self.digest.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

// ---------------------------------------------------------------------------------------
// Assistants
// ---------------------------------------------------------------------------------------

/// The TTS providers an assistant may name.
pub const TTS_PROVIDERS: [&str; 4] = ["cartesia", "sarvam", "openai", "elevenlabs"];

impl Tts {
    /// Checks the provider against the known list and what it requires.
    pub fn validate(&self) -> Result<(), OrgError> {
        if !TTS_PROVIDERS.contains(&self.provider.as_str()) {
            return Err(invalid(
                "tts.provider",
                format!("must be one of {}", TTS_PROVIDERS.join(", ")),
            ));
        }
        if let Some(v) = &self.voice_id {
            check_len("tts.voiceId", v, 1, 200)?;
        }
        if let Some(s) = &self.speaker {
            check_len("tts.speaker", s, 1, 200)?;
        }
        if self.provider == "cartesia" && self.voice_id.is_none() {
            return Err(invalid("tts.voiceId", "is required for cartesia"));
        }
        if self.provider == "sarvam" && self.speaker.is_none() {
            return Err(invalid("tts.speaker", "is required for sarvam"));
        }
        Ok(())
    }
}

/// The body of `POST /api/assistants`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewAssistant {
    /// The owner organisation; only the root key gives it (an org key creates in its own).
    #[serde(default)]
    pub org_id: Option<String>,
    /// Name.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Prompt.
    pub prompt: String,
    /// Start instruction.
    #[serde(default)]
    pub start_instruction: String,
    /// TTS.
    pub tts: Tts,
    /// End-of-call URL.
    #[serde(default)]
    pub end_call_url: Option<String>,
    /// Record calls.
    #[serde(default)]
    pub record: bool,
}

/// `Some(None)` for an explicit `null`, `Some(Some(v))` for a value, `None` when absent.
fn double_option<'de, T, D>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

/// The body of `PATCH /api/assistants/{id}`: absent fields stay, `null` clears an optional
/// one (`description`, `startInstruction`, `endCallUrl`).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AssistantPatch {
    /// New name.
    #[serde(default)]
    pub name: Option<String>,
    /// New description; `null` clears it.
    #[serde(default, deserialize_with = "double_option")]
    pub description: Option<Option<String>>,
    /// New prompt.
    #[serde(default)]
    pub prompt: Option<String>,
    /// New start instruction; `null` clears it.
    #[serde(default, deserialize_with = "double_option")]
    pub start_instruction: Option<Option<String>>,
    /// New TTS (replaced whole).
    #[serde(default)]
    pub tts: Option<Tts>,
    /// New end-of-call URL; `null` clears it.
    #[serde(default, deserialize_with = "double_option")]
    pub end_call_url: Option<Option<String>>,
    /// Record calls or not.
    #[serde(default)]
    pub record: Option<bool>,
}

/// Checks an end-of-call URL: `http` or `https`, a host, no user name or password, at most
/// 2,048 characters. (Where the host resolves to is checked when the webhook is sent.)
pub fn check_url(field: &'static str, value: &str) -> Result<(), OrgError> {
    if value.len() > 2048 {
        return Err(invalid(field, "must be at most 2048 characters"));
    }
    let url = url::Url::parse(value).map_err(|e| invalid(field, format!("is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(field, "must be an http or https URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid(field, "must name a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(field, "must not contain a user name or password"));
    }
    Ok(())
}

impl Assistant {
    /// A new assistant (version 1) from a validated request.
    pub fn create(
        req: NewAssistant,
        assistant_id: String,
        org_id: String,
        created_by_key_id: String,
        now: DateTime<Utc>,
    ) -> Result<Assistant, OrgError> {
        let a = Assistant {
            assistant_id,
            org_id,
            name: req.name,
            description: req.description,
            prompt: req.prompt,
            start_instruction: req.start_instruction,
            tts: req.tts,
            end_call_url: req.end_call_url,
            record: req.record,
            created_by_key_id,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        a.validate()?;
        Ok(a)
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), OrgError> {
        check_len("name", &self.name, 1, 120)?;
        check_len("description", &self.description, 0, 2000)?;
        check_len("prompt", &self.prompt, 1, 20_000)?;
        check_len("startInstruction", &self.start_instruction, 0, 20_000)?;
        self.tts.validate()?;
        if let Some(u) = &self.end_call_url {
            check_url("endCallUrl", u)?;
        }
        Ok(())
    }

    /// This assistant with `patch` applied and validated (the version is left to the store).
    pub fn patched(
        &self,
        patch: AssistantPatch,
        now: DateTime<Utc>,
    ) -> Result<Assistant, OrgError> {
        let mut a = self.clone();
        if let Some(v) = patch.name {
            a.name = v;
        }
        if let Some(v) = patch.description {
            a.description = v.unwrap_or_default();
        }
        if let Some(v) = patch.prompt {
            a.prompt = v;
        }
        if let Some(v) = patch.start_instruction {
            a.start_instruction = v.unwrap_or_default();
        }
        if let Some(v) = patch.tts {
            a.tts = v;
        }
        if let Some(v) = patch.end_call_url {
            a.end_call_url = v;
        }
        if let Some(v) = patch.record {
            a.record = v;
        }
        a.updated_at = now;
        a.validate()?;
        Ok(a)
    }

    /// The prompt and start instruction with the call's metadata filled in.
    pub fn render(
        &self,
        metadata: &Map<String, Value>,
    ) -> Result<RenderedAssistant, TemplateError> {
        // Both texts are checked before either is returned, so every missing key is named.
        let prompt = render(&self.prompt, metadata);
        let start = render(&self.start_instruction, metadata);
        match (prompt, start) {
            (Ok(prompt), Ok(start_instruction)) => Ok(RenderedAssistant {
                prompt,
                start_instruction,
            }),
            (Err(TemplateError::Missing(a)), Err(TemplateError::Missing(b))) => {
                let all: BTreeSet<String> = a.into_iter().chain(b).collect();
                Err(TemplateError::Missing(all.into_iter().collect()))
            }
            (Err(e), _) | (_, Err(e)) => Err(e),
        }
    }
}

/// An assistant's texts for one call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RenderedAssistant {
    /// The prompt with placeholders filled.
    pub prompt: String,
    /// The start instruction with placeholders filled.
    pub start_instruction: String,
}

/// Why a template could not be filled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The metadata lacks these keys (sorted, each once).
    #[error("metadata lacks {}", .0.join(", "))]
    Missing(Vec<String>),
    /// The metadata has this key, but its value is not text, a number or a boolean.
    #[error("metadata key {0} must be text, a number or a boolean")]
    NotScalar(String),
}

/// One piece of a parsed template.
enum Piece<'a> {
    Text(&'a str),
    Key(&'a str),
}

/// Splits a template into text and `{{key}}` placeholders (whitespace inside the braces is
/// ignored; `{{` without a closing `}}`, or with nothing or a brace inside, is plain text).
fn pieces(template: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            break;
        };
        let key = after[..close].trim();
        if key.is_empty() || key.contains('{') || key.contains('}') {
            // Not a placeholder here: keep one brace as text and look again after it.
            out.push(Piece::Text(&rest[..open + 1]));
            rest = &rest[open + 1..];
            continue;
        }
        out.push(Piece::Text(&rest[..open]));
        out.push(Piece::Key(key));
        rest = &after[close + 2..];
    }
    out.push(Piece::Text(rest));
    out
}

/// Fills `{{key}}` placeholders from `metadata`: strings as they are, numbers and booleans as
/// text; other values are refused. Every missing key is named (sorted, once). Inserted values
/// are never expanded again.
pub fn render(template: &str, metadata: &Map<String, Value>) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len());
    let mut missing = BTreeSet::new();
    let mut not_scalar = None;
    for piece in pieces(template) {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Key(k) => match metadata.get(k) {
                None => {
                    missing.insert(k.to_string());
                }
                Some(Value::String(s)) => out.push_str(s),
                Some(Value::Number(n)) => out.push_str(&n.to_string()),
                Some(Value::Bool(b)) => out.push_str(if *b { "true" } else { "false" }),
                Some(_) => {
                    not_scalar.get_or_insert_with(|| k.to_string());
                }
            },
        }
    }
    if !missing.is_empty() {
        return Err(TemplateError::Missing(missing.into_iter().collect()));
    }
    if let Some(k) = not_scalar {
        return Err(TemplateError::NotScalar(k));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// SIP trunks
// ---------------------------------------------------------------------------------------

/// The SIP transports a trunk may use.
pub const SIP_TRANSPORTS: [&str; 4] = ["auto", "udp", "tcp", "tls"];

/// The body of `POST /api/sip/trunks`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewTrunk {
    /// The owner organisation; only the root key gives it.
    #[serde(default)]
    pub org_id: Option<String>,
    /// Name.
    pub name: String,
    /// Host name or IP with optional `:port`.
    pub address: String,
    /// E.164 numbers.
    pub numbers: Vec<String>,
    /// SIP auth user name.
    #[serde(default)]
    pub auth_username: Option<String>,
    /// SIP auth password (sent to LiveKit only).
    #[serde(default)]
    pub auth_password: Option<String>,
    /// `auto` (default), `udp`, `tcp` or `tls`.
    #[serde(default)]
    pub transport: Option<String>,
}

impl std::fmt::Debug for NewTrunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewTrunk")
            .field("org_id", &self.org_id)
            .field("name", &self.name)
            .field("address", &self.address)
            .field("numbers", &self.numbers)
            .field("auth_username", &self.auth_username)
            .field(
                "auth_password",
                &self.auth_password.as_ref().map(|_| "[redacted]"),
            )
            .field("transport", &self.transport)
            .finish()
    }
}

/// Whether `host` is a DNS host name (labels of letters, digits and `-`, not at either end
/// of a label; at most 253 characters) or an IPv4 address.
fn is_host(host: &str) -> bool {
    if host.parse::<std::net::Ipv4Addr>().is_ok() {
        return true;
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        // A name made of digits and dots only must be a valid IPv4 address (checked above).
        && !host.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// Checks a SIP server address: `host`, `host:port`, `ip`, `ip:port`, `[ipv6]` or
/// `[ipv6]:port`; no scheme, path or user name.
pub fn check_address(value: &str) -> Result<(), OrgError> {
    const FIELD: &str = "address";
    let bad = || {
        invalid(
            FIELD,
            "must be a host name or IP address with an optional :port (no scheme, path or user)",
        )
    };
    if value.is_empty() || value.len() > 260 {
        return Err(bad());
    }
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let (ip, after) = rest.split_once(']').ok_or_else(bad)?;
        ip.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
        match after {
            "" => (None, None),
            p => (None, Some(p.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else {
        match value.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(value), None),
        }
    };
    if let Some(h) = host {
        if !is_host(h) {
            return Err(bad());
        }
    }
    if let Some(p) = port {
        let ok = !p.is_empty()
            && p.len() <= 5
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n));
        if !ok {
            return Err(invalid(FIELD, "port must be 1 to 65535"));
        }
    }
    Ok(())
}

impl NewTrunk {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), OrgError> {
        check_len("name", &self.name, 1, 120)?;
        check_address(&self.address)?;
        if self.numbers.is_empty() || self.numbers.len() > 50 {
            return Err(invalid("numbers", "must list 1 to 50 numbers"));
        }
        for n in &self.numbers {
            if !crate::model::is_e164(n) {
                return Err(invalid(
                    "numbers",
                    format!("{n:?} is not an E.164 number ('+' and 8 to 15 digits)"),
                ));
            }
        }
        if let Some(u) = &self.auth_username {
            check_len("authUsername", u, 1, 200)?;
        }
        if let Some(p) = &self.auth_password {
            if p.is_empty() || p.len() > 200 {
                return Err(invalid("authPassword", "must be 1 to 200 characters"));
            }
        }
        if self.auth_password.is_some() && self.auth_username.is_none() {
            return Err(invalid("authUsername", "is required with authPassword"));
        }
        if let Some(t) = &self.transport {
            if !SIP_TRANSPORTS.contains(&t.as_str()) {
                return Err(invalid(
                    "transport",
                    format!("must be one of {}", SIP_TRANSPORTS.join(", ")),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn meta(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn key_req() -> KeyRequest {
        KeyRequest {
            user_name: "Ada".into(),
            org_name: "Acme Corp".into(),
            user_email: "ada@acme.example".into(),
            role: KeyRole::Admin,
        }
    }

    #[test]
    fn org_ids_are_slugs_of_names() {
        assert_eq!(org_id_for("Acme Corp").unwrap(), "acme-corp");
        assert_eq!(org_id_for("  ACME -- corp!! ").unwrap(), "acme-corp");
        assert_eq!(org_id_for("Zürich 24/7").unwrap(), "z-rich-24-7");
        assert!(org_id_for("!!!").is_err());
        assert!(org_id_for("").is_err());
    }

    #[test]
    fn generated_keys_parse_verify_and_store_only_a_digest() {
        let k = generate_key(&key_req(), Utc::now()).unwrap();
        let text = k.api_key.expose();
        let (id, secret) = parse_key(text).expect("own key parses");
        assert_eq!(id, k.record.key_id);
        assert_eq!(secret.len(), 43);
        assert!(k.record.secret_matches(secret));
        assert_eq!(k.record.digest, digest(secret));
        let stored = serde_json::to_string(&k.record).unwrap();
        assert!(!stored.contains(secret), "the secret is not in the record");
        assert!(stored.contains(k.record.webhook_secret.expose()));
        assert!(!format!("{:?}", k.record).contains(k.record.webhook_secret.expose()));
        assert!(!format!("{k:?}").contains(secret));
        assert_eq!(k.record.org_id, "acme-corp");
        // Another key has another id and secret.
        let other = generate_key(&key_req(), Utc::now()).unwrap();
        assert_ne!(other.record.key_id, k.record.key_id);
        let (_, other_secret) = parse_key(other.api_key.expose()).unwrap();
        assert!(!k.record.secret_matches(other_secret));
    }

    #[test]
    fn malformed_key_texts_do_not_parse() {
        let k = generate_key(&key_req(), Utc::now()).unwrap();
        let text = k.api_key.expose().to_string();
        assert!(parse_key(&text[..text.len() - 1]).is_none());
        assert!(parse_key(&format!("{text}x")).is_none());
        assert!(parse_key(&text.replacen("sbk_", "lvk_", 1)).is_none());
        assert!(parse_key(&text.to_uppercase()).is_none());
        assert!(parse_key("sbk_").is_none());
        assert!(parse_key("sbk_é").is_none());
        let (id, secret) = parse_key(&text).unwrap();
        let flipped: String = secret
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if i == 0 {
                    if c == 'A' {
                        'B'
                    } else {
                        'A'
                    }
                } else {
                    c
                }
            })
            .collect();
        assert!(!k.record.secret_matches(&flipped));
        assert!(parse_key(&format!("sbk_{id}_{flipped}")).is_some());
    }

    #[test]
    fn key_requests_are_validated_naming_the_field() {
        let mut r = key_req();
        r.user_email = "not-an-email".into();
        let e = generate_key(&r, Utc::now()).unwrap_err().to_string();
        assert!(e.starts_with("userEmail:"), "{e}");
        let mut r = key_req();
        r.user_name = String::new();
        assert!(generate_key(&r, Utc::now())
            .unwrap_err()
            .to_string()
            .starts_with("userName:"));
        let mut r = key_req();
        r.org_name = "???".into();
        assert!(generate_key(&r, Utc::now())
            .unwrap_err()
            .to_string()
            .starts_with("orgName:"));
    }

    #[test]
    fn render_fills_placeholders_with_spacing_and_scalars() {
        let m = meta(json!({"name": "Ada", "n": 3, "vip": true, "x": 1.5}));
        assert_eq!(
            render("Hi {{name}}, {{ n }} items, vip={{vip}} {{  x}}", &m).unwrap(),
            "Hi Ada, 3 items, vip=true 1.5"
        );
        assert_eq!(render("no placeholders", &m).unwrap(), "no placeholders");
        assert_eq!(
            render("{{ }} and {{ unclosed", &m).unwrap(),
            "{{ }} and {{ unclosed"
        );
        assert_eq!(render("{{{name}}}", &m).unwrap(), "{Ada}");
    }

    #[test]
    fn render_names_every_missing_key_sorted_once() {
        let m = meta(json!({"name": "Ada"}));
        assert_eq!(
            render("{{zeta}} {{alpha}} {{name}} {{ zeta }} {{beta}}", &m),
            Err(TemplateError::Missing(vec![
                "alpha".into(),
                "beta".into(),
                "zeta".into()
            ]))
        );
    }

    #[test]
    fn render_does_not_expand_inserted_values_and_refuses_objects() {
        let m = meta(json!({"a": "{{b}}", "b": "secret", "o": {"k": 1}, "l": [1], "z": null}));
        assert_eq!(render("{{a}}", &m).unwrap(), "{{b}}");
        assert_eq!(
            render("{{o}}", &m),
            Err(TemplateError::NotScalar("o".into()))
        );
        assert_eq!(
            render("{{l}}", &m),
            Err(TemplateError::NotScalar("l".into()))
        );
        assert_eq!(
            render("{{z}}", &m),
            Err(TemplateError::NotScalar("z".into()))
        );
        // Missing keys are reported before values of the wrong kind.
        assert_eq!(
            render("{{o}} {{q}}", &m),
            Err(TemplateError::Missing(vec!["q".into()]))
        );
    }

    fn assistant() -> Assistant {
        Assistant::create(
            NewAssistant {
                org_id: None,
                name: "Support".into(),
                description: String::new(),
                prompt: "You help {{name}}.".into(),
                start_instruction: "Hello {{name}}, order {{order}}?".into(),
                tts: Tts {
                    provider: "cartesia".into(),
                    voice_id: Some("v1".into()),
                    speaker: None,
                },
                end_call_url: Some("https://hooks.example/end".into()),
                record: false,
            },
            "as_1".into(),
            "acme".into(),
            "k1".into(),
            Utc::now(),
        )
        .unwrap()
    }

    #[test]
    fn assistant_render_names_missing_keys_of_both_texts() {
        let a = assistant();
        assert_eq!(
            a.render(&Map::new()),
            Err(TemplateError::Missing(vec!["name".into(), "order".into()]))
        );
        let r = a.render(&meta(json!({"name": "Ada", "order": 7}))).unwrap();
        assert_eq!(r.prompt, "You help Ada.");
        assert_eq!(r.start_instruction, "Hello Ada, order 7?");
    }

    #[test]
    fn assistant_validation_names_the_field() {
        let a = assistant();
        let cases: Vec<(AssistantPatch, &str)> = vec![
            (
                AssistantPatch {
                    name: Some(String::new()),
                    ..Default::default()
                },
                "name:",
            ),
            (
                AssistantPatch {
                    name: Some("x".repeat(121)),
                    ..Default::default()
                },
                "name:",
            ),
            (
                AssistantPatch {
                    prompt: Some("p".repeat(20_001)),
                    ..Default::default()
                },
                "prompt:",
            ),
            (
                AssistantPatch {
                    tts: Some(Tts {
                        provider: "cartesia".into(),
                        voice_id: None,
                        speaker: None,
                    }),
                    ..Default::default()
                },
                "tts.voiceId:",
            ),
            (
                AssistantPatch {
                    tts: Some(Tts {
                        provider: "sarvam".into(),
                        voice_id: None,
                        speaker: None,
                    }),
                    ..Default::default()
                },
                "tts.speaker:",
            ),
            (
                AssistantPatch {
                    tts: Some(Tts {
                        provider: "acme-tts".into(),
                        voice_id: None,
                        speaker: None,
                    }),
                    ..Default::default()
                },
                "tts.provider:",
            ),
        ];
        for (patch, field) in cases {
            let e = a
                .patched(patch.clone(), Utc::now())
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(field), "{patch:?}: {e}");
        }
        for url in [
            "ftp://x.example/",
            "https://user:pw@x.example/",
            "https://user@x.example/",
            "not a url",
            "https://",
        ] {
            let p = AssistantPatch {
                end_call_url: Some(Some(url.into())),
                ..Default::default()
            };
            let e = a.patched(p, Utc::now()).unwrap_err().to_string();
            assert!(e.starts_with("endCallUrl:"), "{url}: {e}");
        }
    }

    #[test]
    fn patch_is_partial_and_null_clears() {
        let a = assistant();
        let p: AssistantPatch =
            serde_json::from_value(json!({"endCallUrl": null, "description": "d"})).unwrap();
        let b = a.patched(p, Utc::now()).unwrap();
        assert_eq!(b.end_call_url, None);
        assert_eq!(b.description, "d");
        assert_eq!(b.prompt, a.prompt);
        assert_eq!(b.tts, a.tts);
        let p: AssistantPatch = serde_json::from_value(json!({})).unwrap();
        assert_eq!(p, AssistantPatch::default());
        assert!(serde_json::from_value::<AssistantPatch>(json!({"bogus": 1})).is_err());
    }

    #[test]
    fn assistant_json_is_camel_case() {
        let v = serde_json::to_value(assistant()).unwrap();
        for k in [
            "assistantId",
            "orgId",
            "startInstruction",
            "endCallUrl",
            "createdByKeyId",
            "createdAt",
            "updatedAt",
            "version",
        ] {
            assert!(v.get(k).is_some(), "{k} in {v}");
        }
        assert_eq!(v["tts"]["voiceId"], "v1");
    }

    fn trunk() -> NewTrunk {
        NewTrunk {
            org_id: None,
            name: "Twilio".into(),
            address: "example.pstn.twilio.com".into(),
            numbers: vec!["+15550100000".into()],
            auth_username: Some("user".into()),
            auth_password: Some("hunter2".into()),
            transport: None,
        }
    }

    #[test]
    fn trunk_addresses_and_numbers_are_validated() {
        for ok in [
            "example.pstn.twilio.com",
            "sip.example:5060",
            "10.0.0.1",
            "10.0.0.1:5061",
            "[2001:db8::1]",
            "[2001:db8::1]:5060",
            "localhost",
        ] {
            assert!(check_address(ok).is_ok(), "{ok}");
        }
        for bad in [
            "sip:example.com",
            "https://example.com",
            "example.com/path",
            "user@example.com",
            "example.com:0",
            "example.com:70000",
            "example.com:",
            "-bad.example",
            "999.1.1.1",
            "",
            "[::1",
            "ex ample.com",
        ] {
            let e = check_address(bad).unwrap_err().to_string();
            assert!(e.starts_with("address:"), "{bad}: {e}");
        }
        assert!(trunk().validate().is_ok());
        for n in [
            "15550100000",
            "+0155501000",
            "+1555",
            "+1234567890123456",
            "+1555-0100",
        ] {
            let mut t = trunk();
            t.numbers = vec![n.into()];
            let e = t.validate().unwrap_err().to_string();
            assert!(e.starts_with("numbers:"), "{n}: {e}");
        }
        let mut t = trunk();
        t.numbers.clear();
        assert!(t.validate().is_err());
        let mut t = trunk();
        t.transport = Some("sctp".into());
        assert!(t
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("transport:"));
        assert!(!format!("{:?}", trunk()).contains("hunter2"));
    }
}
