//! Settings from the environment (and a `.env` file), validated into a configuration that
//! cannot express an insecure or inconsistent setup; secrets are redacted in `Debug`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::auth::ApiKey;
use crate::call::machine::Timeouts;
use crate::secret::Secret;

pub use crate::media::livekit::{LiveKitConfig, RecordingConfig};
pub use crate::media::twilio::{TwilioConfig, DEFAULT_HOLD_MUSIC};
use crate::store::dynamo::{
    tables::check_table_name, DynamoConfig, StaticCredentials, TableNames, TABLE_VARS,
};
pub use crate::summary::{LlmConfig, LlmEndpoint};
pub use crate::webhooks::WebhookConfig;

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A setting has a value that cannot be parsed.
    #[error("{name} is invalid: {message}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Bound beyond loopback without an API key.
    #[error(
        "refusing to listen on {0} without SWITCHBOARD_API_KEY: management endpoints would be \
         open to the network (set SWITCHBOARD_API_KEY, or bind to 127.0.0.1)"
    )]
    OpenToNetwork(SocketAddr),
}

/// How management endpoints are protected.
#[derive(Debug, Clone)]
pub enum ManagementAccess {
    /// No key configured: only clients on the loopback interface may manage (the server is
    /// bound to loopback, which the configuration guarantees).
    LoopbackOnly,
    /// `x-api-key` must match.
    ApiKey(ApiKey),
}

/// Provider presets: name, base URL, default model, the provider's usual key variable.
const LLM_PRESETS: &[(&str, &str, &str, &str)] = &[
    (
        "openai",
        "https://api.openai.com/v1",
        "gpt-4o-mini",
        "OPENAI_API_KEY",
    ),
    (
        "openrouter",
        "https://openrouter.ai/api/v1",
        "openai/gpt-4o-mini",
        "OPENROUTER_API_KEY",
    ),
    (
        "groq",
        "https://api.groq.com/openai/v1",
        "llama-3.1-8b-instant",
        "GROQ_API_KEY",
    ),
];

fn llm_config(get: &dyn Fn(&str) -> Option<String>) -> Result<LlmConfig, ConfigError> {
    let redact = match get("SWITCHBOARD_REDACT") {
        None => true,
        Some(v) => parse_bool("SWITCHBOARD_REDACT", Some(v))?,
    };
    let debounce = parse_secs(
        "SWITCHBOARD_SUMMARY_DEBOUNCE",
        get("SWITCHBOARD_SUMMARY_DEBOUNCE"),
        2.0,
    )?;
    let own_key = get("LLM_API_KEY");
    let base_url = get("LLM_BASE_URL");
    let provider = match get("LLM_PROVIDER").map(|p| p.trim().to_ascii_lowercase()) {
        Some(p) => {
            if !LLM_PRESETS.iter().any(|(n, ..)| *n == p) && p != "custom" {
                return Err(ConfigError::Invalid {
                    name: "LLM_PROVIDER",
                    message: format!("expected openai, openrouter, groq or custom, got {p:?}"),
                });
            }
            Some(p)
        }
        // No provider named: an own base URL is a custom endpoint; otherwise the first
        // preset whose key is set.
        None if base_url.is_some() => Some("custom".to_string()),
        None if own_key.is_some() => Some("openai".to_string()),
        None => LLM_PRESETS
            .iter()
            .find(|(.., key_var)| get(key_var).is_some())
            .map(|(n, ..)| n.to_string()),
    };
    let Some(provider) = provider else {
        return Ok(LlmConfig {
            endpoint: None,
            redact,
            debounce,
        });
    };
    let preset = LLM_PRESETS.iter().find(|(n, ..)| *n == provider);
    let api_key = own_key
        .or_else(|| preset.and_then(|(.., key_var)| get(key_var)))
        .map(|k| Secret::new(k.trim()));
    let base_url = match (base_url, preset) {
        (Some(u), _) => u.trim().trim_end_matches('/').to_string(),
        (None, Some((_, url, ..))) => url.to_string(),
        (None, None) => {
            return Err(ConfigError::Invalid {
                name: "LLM_BASE_URL",
                message: "is required with LLM_PROVIDER=custom".into(),
            })
        }
    };
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        return Err(ConfigError::Invalid {
            name: "LLM_BASE_URL",
            message: format!("expected an http:// or https:// URL, got {base_url:?}"),
        });
    }
    let model = match (get("LLM_MODEL"), preset) {
        (Some(m), _) => m.trim().to_string(),
        (None, Some((_, _, model, _))) => model.to_string(),
        (None, None) => {
            return Err(ConfigError::Invalid {
                name: "LLM_MODEL",
                message: "is required with a custom LLM_BASE_URL".into(),
            })
        }
    };
    // A preset without any key stays offline (the default when no key is set).
    if preset.is_some() && api_key.is_none() && get("LLM_BASE_URL").is_none() {
        return Ok(LlmConfig {
            endpoint: None,
            redact,
            debounce,
        });
    }
    let retries = match get("LLM_RETRIES") {
        None => 2,
        Some(v) => {
            v.trim()
                .parse::<u32>()
                .ok()
                .filter(|n| *n <= 10)
                .ok_or(ConfigError::Invalid {
                    name: "LLM_RETRIES",
                    message: format!("expected a number of retries from 0 to 10, got {v:?}"),
                })?
        }
    };
    let stream = match get("LLM_STREAM") {
        None => true,
        Some(v) => parse_bool("LLM_STREAM", Some(v))?,
    };
    Ok(LlmConfig {
        endpoint: Some(LlmEndpoint {
            provider,
            base_url,
            model,
            api_key,
            timeout: parse_secs("LLM_TIMEOUT", get("LLM_TIMEOUT"), 20.0)?,
            retries,
            stream,
        }),
        redact,
        debounce,
    })
}

fn twilio_config(
    nonempty: &impl Fn(&str) -> Option<String>,
) -> Result<Option<TwilioConfig>, ConfigError> {
    let Some(account_sid) = nonempty("TWILIO_ACCOUNT_SID") else {
        return Ok(None);
    };
    let required = |name: &'static str| {
        nonempty(name).ok_or(ConfigError::Invalid {
            name,
            message: "is required when TWILIO_ACCOUNT_SID is set".into(),
        })
    };
    let sid = |name: &'static str, value: &str, prefix: &str| {
        let ok = value.len() == 34
            && value.starts_with(prefix)
            && value[2..].chars().all(|c| c.is_ascii_hexdigit());
        if ok {
            Ok(())
        } else {
            Err(ConfigError::Invalid {
                name,
                message: format!("expected {prefix} followed by 32 hex digits"),
            })
        }
    };
    sid("TWILIO_ACCOUNT_SID", account_sid.trim(), "AC")?;
    let auth_token = Secret::new(required("TWILIO_AUTH_TOKEN")?);
    let api_key = match (nonempty("TWILIO_API_KEY"), nonempty("TWILIO_API_SECRET")) {
        (Some(k), Some(s)) => {
            sid("TWILIO_API_KEY", k.trim(), "SK")?;
            Some((k.trim().to_string(), Secret::new(s)))
        }
        (None, None) => None,
        (Some(_), None) => required("TWILIO_API_SECRET").map(|_| None)?,
        (None, Some(_)) => required("TWILIO_API_KEY").map(|_| None)?,
    };
    let phone_number = required("TWILIO_PHONE_NUMBER")?.trim().to_string();
    if !crate::model::is_e164(&phone_number) {
        return Err(ConfigError::Invalid {
            name: "TWILIO_PHONE_NUMBER",
            message: "expected an E.164 number such as +15551234567".into(),
        });
    }
    let app_sid = nonempty("TWILIO_APP_SID").map(|v| v.trim().to_string());
    if let Some(app) = &app_sid {
        sid("TWILIO_APP_SID", app, "AP")?;
    }
    let url = |name: &'static str, v: String| {
        let v = v.trim().trim_end_matches('/').to_string();
        if v.starts_with("https://") || v.starts_with("http://") {
            Ok(v)
        } else {
            Err(ConfigError::Invalid {
                name,
                message: format!("expected an http(s) URL, got {v:?}"),
            })
        }
    };
    Ok(Some(TwilioConfig {
        account_sid: account_sid.trim().to_string(),
        auth_token,
        api_key,
        phone_number,
        app_sid,
        api_base_url: url(
            "TWILIO_API_BASE_URL",
            nonempty("TWILIO_API_BASE_URL").unwrap_or_else(|| "https://api.twilio.com".into()),
        )?,
        public_url: url(
            "SWITCHBOARD_PUBLIC_URL",
            required("SWITCHBOARD_PUBLIC_URL")?,
        )?,
        hold_music_url: url(
            "SWITCHBOARD_HOLD_MUSIC_URL",
            nonempty("SWITCHBOARD_HOLD_MUSIC_URL").unwrap_or_else(|| DEFAULT_HOLD_MUSIC.into()),
        )?,
        transcribe: parse_bool(
            "SWITCHBOARD_TWILIO_TRANSCRIBE",
            nonempty("SWITCHBOARD_TWILIO_TRANSCRIBE"),
        )?,
    }))
}

// ---------------------------------------------------------------------------------------------
// Recordings and assistants (LiveKit egress, agent dispatch)

/// The LiveKit agent name dispatched for assistants when `SWITCHBOARD_ASSISTANT_AGENT_NAME`
/// is unset.
pub const DEFAULT_ASSISTANT_AGENT_NAME: &str = "switchboard-assistant";

/// The recording variables; any of them set means recordings are configured.
const RECORDING_VARS: [&str; 7] = [
    "SWITCHBOARD_RECORDING_S3_BUCKET",
    "SWITCHBOARD_RECORDING_S3_REGION",
    "SWITCHBOARD_RECORDING_S3_ENDPOINT",
    "SWITCHBOARD_RECORDING_S3_ACCESS_KEY",
    "SWITCHBOARD_RECORDING_S3_SECRET",
    "SWITCHBOARD_RECORDING_S3_FORCE_PATH_STYLE",
    "SWITCHBOARD_RECORDING_S3_PREFIX",
];

fn recording_config(
    nonempty: &impl Fn(&str) -> Option<String>,
) -> Result<Option<RecordingConfig>, ConfigError> {
    if !RECORDING_VARS.iter().any(|v| nonempty(v).is_some()) {
        return Ok(None);
    }
    let required = |name: &'static str| {
        nonempty(name)
            .map(|v| v.trim().to_string())
            .ok_or(ConfigError::Invalid {
                name,
                message: "is required when recordings are configured \
                          (any SWITCHBOARD_RECORDING_S3_* is set)"
                    .into(),
            })
    };
    let bucket = required("SWITCHBOARD_RECORDING_S3_BUCKET")?;
    // S3 bucket naming rules (3-63 lower-case letters, digits, '.', '-'; starts and ends
    // with a letter or digit).
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !(3..=63).contains(&bucket.len())
        || !bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        || !edge_ok(bucket.chars().next())
        || !edge_ok(bucket.chars().last())
    {
        return Err(ConfigError::Invalid {
            name: "SWITCHBOARD_RECORDING_S3_BUCKET",
            message: format!(
                "expected an S3 bucket name (3-63 lower-case letters, digits, '.' or '-'), \
                 got {bucket:?}"
            ),
        });
    }
    let region = required("SWITCHBOARD_RECORDING_S3_REGION")?;
    if !region
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(ConfigError::Invalid {
            name: "SWITCHBOARD_RECORDING_S3_REGION",
            message: format!("expected a region such as eu-west-1, got {region:?}"),
        });
    }
    let endpoint = match nonempty("SWITCHBOARD_RECORDING_S3_ENDPOINT") {
        None => None,
        Some(url) => {
            let url = url.trim().trim_end_matches('/').to_string();
            let rest = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"))
                .unwrap_or_default();
            if rest.is_empty() || rest.starts_with('/') || rest.contains(char::is_whitespace) {
                return Err(ConfigError::Invalid {
                    name: "SWITCHBOARD_RECORDING_S3_ENDPOINT",
                    message: format!(
                        "expected an http:// or https:// URL such as http://minio:9000, got {url:?}"
                    ),
                });
            }
            Some(url)
        }
    };
    let access_key = required("SWITCHBOARD_RECORDING_S3_ACCESS_KEY")?;
    let secret = Secret::new(required("SWITCHBOARD_RECORDING_S3_SECRET")?);
    let force_path_style = parse_bool(
        "SWITCHBOARD_RECORDING_S3_FORCE_PATH_STYLE",
        nonempty("SWITCHBOARD_RECORDING_S3_FORCE_PATH_STYLE"),
    )?;
    let prefix = nonempty("SWITCHBOARD_RECORDING_S3_PREFIX")
        .map(|p| p.trim().trim_start_matches('/').to_string())
        .unwrap_or_else(|| "recordings/".to_string());
    if prefix.contains("..")
        || prefix.contains("//")
        || prefix.chars().any(|c| c.is_control() || c == '\\')
        || prefix.len() > 512
    {
        return Err(ConfigError::Invalid {
            name: "SWITCHBOARD_RECORDING_S3_PREFIX",
            message: format!("expected an object key prefix such as recordings/, got {prefix:?}"),
        });
    }
    Ok(Some(RecordingConfig {
        bucket,
        region,
        endpoint,
        access_key,
        secret,
        force_path_style,
        prefix,
    }))
}

fn assistant_agent_name(nonempty: &impl Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
    let Some(name) = nonempty("SWITCHBOARD_ASSISTANT_AGENT_NAME") else {
        return Ok(DEFAULT_ASSISTANT_AGENT_NAME.to_string());
    };
    let name = name.trim().to_string();
    if name.len() > 128
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(ConfigError::Invalid {
            name: "SWITCHBOARD_ASSISTANT_AGENT_NAME",
            message: format!("expected at most 128 letters, digits, '-', '_' or '.', got {name:?}"),
        });
    }
    Ok(name)
}

/// Which store keeps the calls (`SWITCHBOARD_STORE`).
#[derive(Debug, Clone, PartialEq)]
pub enum StoreConfig {
    /// `embedded` (the default): one file in the data directory.
    Embedded,
    /// `dynamodb`: the classic six-table DynamoDB layout.
    DynamoDb(Box<DynamoConfig>),
}

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address.
    pub addr: SocketAddr,
    /// Directory of the embedded store (and the generated session secret).
    pub data_dir: PathBuf,
    /// The store backend and its settings.
    pub store: StoreConfig,
    /// How management endpoints are protected.
    pub management: ManagementAccess,
    /// Whether anonymous callers may create calls (`POST /api/calls`) without a key.
    pub public_calls: bool,
    /// Extra `Host` names (lower case, with or without a port) that local management accepts
    /// while no API key is set, beyond loopback names and addresses
    /// (`SWITCHBOARD_ALLOWED_HOSTS`, comma-separated).
    pub allowed_hosts: Vec<String>,
    /// LiveKit.
    pub livekit: LiveKitConfig,
    /// Twilio, when configured.
    pub twilio: Option<TwilioConfig>,
    /// Secret for session tokens; generated and kept in the data directory when unset.
    pub session_secret: Option<Secret>,
    /// Lifetime of session tokens.
    pub session_ttl: Duration,
    /// The call machine's deadlines.
    pub timeouts: Timeouts,
    /// How long an agent whose last WebSocket closed has to come back before counting as gone.
    pub disconnect_grace: Duration,
    /// Frames a WebSocket session may have waiting before it is disconnected.
    pub outbox_capacity: usize,
    /// The listen socket's backlog: connections the kernel queues before they are accepted
    /// (`SWITCHBOARD_LISTEN_BACKLOG`).
    pub listen_backlog: u32,
    /// A folder to serve the browser UI from instead of the copy built into the binary
    /// (`SWITCHBOARD_STATIC_DIR`, for working on the UI).
    pub static_dir: Option<PathBuf>,
    /// Summaries: LLM endpoint, redaction, refresh debounce.
    pub llm: LlmConfig,
    /// Call recordings (S3-compatible storage), when configured.
    pub recording: Option<RecordingConfig>,
    /// The LiveKit agent name dispatched for assistants (`SWITCHBOARD_ASSISTANT_AGENT_NAME`).
    pub assistant_agent_name: String,
    /// End-of-call webhooks: retries, timeouts, which receivers are allowed.
    pub webhooks: WebhookConfig,
}

/// The listen backlog when `SWITCHBOARD_LISTEN_BACKLOG` is unset (the kernel may cap it at
/// `net.core.somaxconn`).
pub const DEFAULT_LISTEN_BACKLOG: u32 = 4096;

fn parse_secs(
    name: &'static str,
    value: Option<String>,
    default: f64,
) -> Result<Duration, ConfigError> {
    let Some(v) = value else {
        return Ok(Duration::from_secs_f64(default));
    };
    let secs: f64 = v.trim().parse().map_err(|_| ConfigError::Invalid {
        name,
        message: format!("expected a number of seconds, got {v:?}"),
    })?;
    if !(secs > 0.0 && secs < 86_400.0) {
        return Err(ConfigError::Invalid {
            name,
            message: "must be between 0 and 86400 seconds".into(),
        });
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_bool(name: &'static str, value: Option<String>) -> Result<bool, ConfigError> {
    match value.as_deref().map(str::trim) {
        None | Some("") | Some("0") | Some("false") | Some("no") => Ok(false),
        Some("1") | Some("true") | Some("yes") => Ok(true),
        Some(other) => Err(ConfigError::Invalid {
            name,
            message: format!("expected true or false, got {other:?}"),
        }),
    }
}

/// Reads `SWITCHBOARD_STORE` and, for `dynamodb`, the DynamoDB settings.
fn store_config(get: &dyn Fn(&str) -> Option<String>) -> Result<StoreConfig, ConfigError> {
    let kind = get("SWITCHBOARD_STORE").map(|v| v.trim().to_ascii_lowercase());
    match kind.as_deref() {
        None | Some("embedded") => return Ok(StoreConfig::Embedded),
        Some("dynamodb") => {}
        Some(other) => {
            return Err(ConfigError::Invalid {
                name: "SWITCHBOARD_STORE",
                message: format!("expected embedded or dynamodb, got {other:?}"),
            })
        }
    }
    let prefix = get("DYNAMODB_TABLE_PREFIX").unwrap_or_default();
    let prefix = prefix.trim();
    if prefix.len() > 200
        || !prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(ConfigError::Invalid {
            name: "DYNAMODB_TABLE_PREFIX",
            message: format!(
                "expected at most 200 letters, digits, '_', '-' or '.', got {prefix:?}"
            ),
        });
    }
    let values: Vec<String> = TABLE_VARS
        .iter()
        .map(|(var, default)| {
            get(var)
                .map(|v| v.trim().to_owned())
                .unwrap_or_else(|| (*default).to_owned())
        })
        .collect();
    let mut names = [""; TABLE_VARS.len()];
    for (i, ((var, _), value)) in TABLE_VARS.iter().zip(&values).enumerate() {
        check_table_name(&format!("{prefix}{value}"))
            .map_err(|message| ConfigError::Invalid { name: var, message })?;
        names[i] = value;
    }
    let tables = TableNames::from_parts(prefix, names);
    let all = tables.all();
    for (i, name) in all.iter().enumerate() {
        if all[..i].contains(name) {
            return Err(ConfigError::Invalid {
                name: TABLE_VARS[i].0,
                message: format!("table {name} is already used for another table"),
            });
        }
    }
    let endpoint_var = if get("AWS_ENDPOINT_URL_DYNAMODB").is_some() {
        "AWS_ENDPOINT_URL_DYNAMODB"
    } else {
        "AWS_ENDPOINT_URL"
    };
    let endpoint_url = get(endpoint_var).map(|v| v.trim().to_owned());
    if let Some(url) = &endpoint_url {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .unwrap_or_default();
        if rest.is_empty() || rest.starts_with('/') || rest.contains(char::is_whitespace) {
            return Err(ConfigError::Invalid {
                name: endpoint_var,
                message: format!("expected an http:// or https:// URL such as http://127.0.0.1:8000, got {url:?}"),
            });
        }
    }
    let region_var = if get("AWS_REGION").is_some() {
        "AWS_REGION"
    } else {
        "AWS_DEFAULT_REGION"
    };
    let region = get(region_var).map(|v| v.trim().to_owned());
    if let Some(r) = &region {
        if !r.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(ConfigError::Invalid {
                name: region_var,
                message: format!("expected a region such as eu-west-1, got {r:?}"),
            });
        }
    }
    let credentials = match (get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY")) {
        (Some(id), Some(secret)) => Some(StaticCredentials {
            access_key_id: id.trim().to_owned(),
            secret_access_key: Secret::new(secret.trim()),
            session_token: get("AWS_SESSION_TOKEN").map(|t| Secret::new(t.trim())),
        }),
        (Some(_), None) => {
            return Err(ConfigError::Invalid {
                name: "AWS_SECRET_ACCESS_KEY",
                message: "must be set when AWS_ACCESS_KEY_ID is".into(),
            })
        }
        (None, Some(_)) => {
            return Err(ConfigError::Invalid {
                name: "AWS_ACCESS_KEY_ID",
                message: "must be set when AWS_SECRET_ACCESS_KEY is".into(),
            })
        }
        (None, None) => None,
    };
    let max_attempts = match get("AWS_MAX_ATTEMPTS") {
        None => 5,
        Some(v) => v
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=20).contains(n))
            .ok_or(ConfigError::Invalid {
                name: "AWS_MAX_ATTEMPTS",
                message: format!("expected a number of attempts from 1 to 20, got {v:?}"),
            })?,
    };
    Ok(StoreConfig::DynamoDb(Box::new(DynamoConfig {
        tables,
        endpoint_url,
        region,
        credentials,
        max_attempts,
        timeout: parse_secs(
            "SWITCHBOARD_DYNAMODB_TIMEOUT",
            get("SWITCHBOARD_DYNAMODB_TIMEOUT"),
            10.0,
        )?,
        init_tables: parse_bool("SWITCHBOARD_INIT_TABLES", get("SWITCHBOARD_INIT_TABLES"))?,
    })))
}

/// `ws://host` → `http://host`, `wss://host` → `https://host`.
fn api_url_from(url: &str) -> String {
    if let Some(rest) = url.strip_prefix("wss://") {
        format!("https://{rest}")
    } else if let Some(rest) = url.strip_prefix("ws://") {
        format!("http://{rest}")
    } else {
        url.to_string()
    }
}

// ---- End-of-call webhooks (src/webhooks) ----

fn webhook_config(get: &dyn Fn(&str) -> Option<String>) -> Result<WebhookConfig, ConfigError> {
    let d = WebhookConfig::default();
    let secs =
        |name: &'static str, default: Duration| parse_secs(name, get(name), default.as_secs_f64());
    let max_attempts = match get("SWITCHBOARD_WEBHOOK_MAX_ATTEMPTS") {
        None => d.max_attempts,
        Some(v) => v
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or(ConfigError::Invalid {
                name: "SWITCHBOARD_WEBHOOK_MAX_ATTEMPTS",
                message: format!("expected a number from 1 to 100, got {v:?}"),
            })?,
    };
    let allowed_hosts = get("SWITCHBOARD_WEBHOOK_ALLOWED_HOSTS")
        .unwrap_or_default()
        .split(',')
        .filter(|e| !e.trim().is_empty())
        .map(crate::webhooks::ssrf::AllowedHost::parse)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|message| ConfigError::Invalid {
            name: "SWITCHBOARD_WEBHOOK_ALLOWED_HOSTS",
            message,
        })?;
    Ok(WebhookConfig {
        max_attempts,
        first_backoff: secs("SWITCHBOARD_WEBHOOK_BACKOFF", d.first_backoff)?,
        max_backoff: secs("SWITCHBOARD_WEBHOOK_MAX_BACKOFF", d.max_backoff)?,
        attempt_timeout: secs("SWITCHBOARD_WEBHOOK_TIMEOUT", d.attempt_timeout)?,
        poll_interval: secs("SWITCHBOARD_WEBHOOK_POLL", d.poll_interval)?,
        policy: crate::webhooks::ssrf::EgressPolicy {
            allow_private: parse_bool(
                "SWITCHBOARD_WEBHOOK_ALLOW_PRIVATE",
                get("SWITCHBOARD_WEBHOOK_ALLOW_PRIVATE"),
            )?,
            allowed_hosts,
        },
        signing_secret: match get("SWITCHBOARD_WEBHOOK_SECRET") {
            None => None,
            Some(s) if s.len() >= 16 => Some(Secret::new(s)),
            Some(_) => {
                return Err(ConfigError::Invalid {
                    name: "SWITCHBOARD_WEBHOOK_SECRET",
                    message: "must be at least 16 characters".into(),
                })
            }
        },
    })
}

// ---- end of end-of-call webhooks ----

impl Config {
    /// Reads the configuration through `get` (the environment in production, a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let nonempty = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let addr_text = nonempty("SWITCHBOARD_ADDR").unwrap_or_else(|| "127.0.0.1:8080".into());
        let addr: SocketAddr = addr_text.parse().map_err(|_| ConfigError::Invalid {
            name: "SWITCHBOARD_ADDR",
            message: format!("expected host:port such as 127.0.0.1:8080, got {addr_text:?}"),
        })?;
        let management = match nonempty("SWITCHBOARD_API_KEY") {
            Some(key) => {
                if key.len() < 16 {
                    return Err(ConfigError::Invalid {
                        name: "SWITCHBOARD_API_KEY",
                        message: "must be at least 16 characters".into(),
                    });
                }
                ManagementAccess::ApiKey(ApiKey::new(&key))
            }
            None if addr.ip().is_loopback() => ManagementAccess::LoopbackOnly,
            None => return Err(ConfigError::OpenToNetwork(addr)),
        };
        let url = nonempty("LIVEKIT_URL").unwrap_or_else(|| "ws://localhost:7880".into());
        let api_url = nonempty("LIVEKIT_API_URL").unwrap_or_else(|| api_url_from(&url));
        let livekit = LiveKitConfig {
            api_url,
            url,
            api_key: nonempty("LIVEKIT_API_KEY").unwrap_or_else(|| "devkey".into()),
            api_secret: Secret::new(
                nonempty("LIVEKIT_API_SECRET").unwrap_or_else(|| "secret".into()),
            ),
        };
        let ms = |d: Duration| d.as_millis() as i64;
        let timeouts = Timeouts {
            ring_ms: ms(parse_secs(
                "SWITCHBOARD_RING_TIMEOUT",
                nonempty("SWITCHBOARD_RING_TIMEOUT"),
                30.0,
            )?),
            move_ms: ms(parse_secs(
                "SWITCHBOARD_MOVE_TIMEOUT",
                nonempty("SWITCHBOARD_MOVE_TIMEOUT"),
                20.0,
            )?),
            rejoin_ms: ms(parse_secs(
                "SWITCHBOARD_REJOIN_GRACE",
                nonempty("SWITCHBOARD_REJOIN_GRACE"),
                15.0,
            )?),
        };
        let outbox_capacity = match nonempty("SWITCHBOARD_OUTBOX") {
            None => 256,
            Some(v) => v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=65_536).contains(n))
                .ok_or(ConfigError::Invalid {
                    name: "SWITCHBOARD_OUTBOX",
                    message: format!("expected a number of frames from 1 to 65536, got {v:?}"),
                })?,
        };
        let listen_backlog = match nonempty("SWITCHBOARD_LISTEN_BACKLOG") {
            None => DEFAULT_LISTEN_BACKLOG,
            Some(v) => v
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=65_535).contains(n))
                .ok_or(ConfigError::Invalid {
                    name: "SWITCHBOARD_LISTEN_BACKLOG",
                    message: format!("expected a number of connections from 1 to 65535, got {v:?}"),
                })?,
        };
        let static_dir = nonempty("SWITCHBOARD_STATIC_DIR").map(PathBuf::from);
        let session_secret = nonempty("SWITCHBOARD_SESSION_SECRET").map(Secret::new);
        if session_secret
            .as_ref()
            .is_some_and(|s| s.expose().len() < 32)
        {
            return Err(ConfigError::Invalid {
                name: "SWITCHBOARD_SESSION_SECRET",
                message: "must be at least 32 characters".into(),
            });
        }
        let store = store_config(&nonempty)?;
        let llm = llm_config(&nonempty)?;
        let twilio = twilio_config(&nonempty)?;
        let recording = recording_config(&nonempty)?;
        let assistant_agent_name = assistant_agent_name(&nonempty)?;
        let webhooks = webhook_config(&nonempty)?;
        Ok(Config {
            recording,
            assistant_agent_name,
            llm,
            webhooks,
            addr,
            store,
            data_dir: PathBuf::from(
                nonempty("SWITCHBOARD_DATA_DIR").unwrap_or_else(|| "./data".into()),
            ),
            management,
            public_calls: parse_bool(
                "SWITCHBOARD_PUBLIC_CALLS",
                nonempty("SWITCHBOARD_PUBLIC_CALLS"),
            )?,
            allowed_hosts: nonempty("SWITCHBOARD_ALLOWED_HOSTS")
                .map(|v| {
                    v.split(',')
                        .map(|h| h.trim().to_ascii_lowercase())
                        .filter(|h| !h.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            livekit,
            twilio,
            session_secret,
            session_ttl: parse_secs(
                "SWITCHBOARD_SESSION_TTL",
                nonempty("SWITCHBOARD_SESSION_TTL"),
                7200.0,
            )?,
            timeouts,
            disconnect_grace: parse_secs(
                "SWITCHBOARD_DISCONNECT_GRACE",
                nonempty("SWITCHBOARD_DISCONNECT_GRACE"),
                10.0,
            )?,
            outbox_capacity,
            listen_backlog,
            static_dir,
        })
    }

    /// Reads `.env` (if present) and then the environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        let _ = dotenvy::dotenv();
        Config::from_lookup(|k| std::env::var(k).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn webhook_settings_are_read_and_checked() {
        let c = with(&[]).unwrap().webhooks;
        assert_eq!(c, WebhookConfig::default());
        assert_eq!(c.max_attempts, 8);
        let c = with(&[
            ("SWITCHBOARD_WEBHOOK_MAX_ATTEMPTS", "3"),
            ("SWITCHBOARD_WEBHOOK_BACKOFF", "0.1"),
            ("SWITCHBOARD_WEBHOOK_ALLOW_PRIVATE", "true"),
            (
                "SWITCHBOARD_WEBHOOK_ALLOWED_HOSTS",
                "127.0.0.1:9000, hooks.internal",
            ),
        ])
        .unwrap()
        .webhooks;
        assert_eq!(c.max_attempts, 3);
        assert_eq!(c.first_backoff, Duration::from_millis(100));
        assert!(c.policy.allow_private);
        assert_eq!(c.policy.allowed_hosts.len(), 2);
        assert_eq!(c.policy.allowed_hosts[0].port, Some(9000));
        for (k, v) in [
            ("SWITCHBOARD_WEBHOOK_MAX_ATTEMPTS", "0"),
            ("SWITCHBOARD_WEBHOOK_ALLOWED_HOSTS", "host:port"),
            ("SWITCHBOARD_WEBHOOK_ALLOW_PRIVATE", "maybe"),
            ("SWITCHBOARD_WEBHOOK_TIMEOUT", "-1"),
        ] {
            let err = with(&[(k, v)]).unwrap_err().to_string();
            assert!(err.contains(k), "{err}");
        }
    }

    #[test]
    fn defaults_need_no_setup() {
        let c = with(&[]).unwrap();
        assert_eq!(c.addr.to_string(), "127.0.0.1:8080");
        assert!(matches!(c.management, ManagementAccess::LoopbackOnly));
        assert_eq!(c.livekit.url, "ws://localhost:7880");
        assert_eq!(c.livekit.api_url, "http://localhost:7880");
        assert_eq!(c.livekit.api_key, "devkey");
        assert_eq!(c.timeouts.ring_ms, 30_000);
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.listen_backlog, 4096);
        assert_eq!(c.static_dir, None);
    }

    #[test]
    fn the_listen_backlog_and_the_static_dir_are_read_and_checked() {
        let c = with(&[
            ("SWITCHBOARD_LISTEN_BACKLOG", "1024"),
            ("SWITCHBOARD_STATIC_DIR", "./static"),
        ])
        .unwrap();
        assert_eq!(c.listen_backlog, 1024);
        assert_eq!(c.static_dir, Some(PathBuf::from("./static")));
        for bad in ["0", "-1", "65536", "many"] {
            let err = with(&[("SWITCHBOARD_LISTEN_BACKLOG", bad)]).unwrap_err();
            assert!(
                err.to_string().contains("SWITCHBOARD_LISTEN_BACKLOG"),
                "{err}"
            );
        }
    }

    #[test]
    fn twilio_is_all_or_nothing_and_validated() {
        assert!(with(&[]).unwrap().twilio.is_none());
        let full = [
            ("TWILIO_ACCOUNT_SID", "AC0123456789abcdef0123456789abcdef"),
            ("TWILIO_AUTH_TOKEN", "token"),
            ("TWILIO_API_KEY", "SK0123456789abcdef0123456789abcdef"),
            ("TWILIO_API_SECRET", "keysecret"),
            ("TWILIO_PHONE_NUMBER", "+15551234567"),
            ("TWILIO_APP_SID", "AP0123456789abcdef0123456789abcdef"),
            ("SWITCHBOARD_PUBLIC_URL", "https://abc.ngrok.app/"),
        ];
        let t = with(&full).unwrap().twilio.unwrap();
        assert_eq!(t.public_url, "https://abc.ngrok.app");
        assert_eq!(t.api_base_url, "https://api.twilio.com");
        let shown = format!("{t:?}");
        assert!(
            !shown.contains("keysecret") && !shown.contains("\"token\""),
            "{shown}"
        );
        for (drop, name) in [
            (1, "TWILIO_AUTH_TOKEN"),
            (3, "TWILIO_API_SECRET"),
            (4, "TWILIO_PHONE_NUMBER"),
            (6, "SWITCHBOARD_PUBLIC_URL"),
        ] {
            let mut partial = full.to_vec();
            partial.remove(drop);
            let e = with(&partial).unwrap_err().to_string();
            assert!(e.contains(name), "{e}");
        }
        for (name, bad) in [
            ("TWILIO_ACCOUNT_SID", "AC123"),
            ("TWILIO_PHONE_NUMBER", "555-1234"),
            ("TWILIO_APP_SID", "AB0123456789abcdef0123456789abcdef"),
            ("SWITCHBOARD_PUBLIC_URL", "abc.ngrok.app"),
        ] {
            let mut changed: Vec<(&str, &str)> =
                full.iter().filter(|(k, _)| *k != name).copied().collect();
            changed.push((name, bad));
            let e = with(&changed).unwrap_err().to_string();
            assert!(e.contains(name), "{name}: {e}");
        }
    }

    #[test]
    fn public_address_without_key_is_refused() {
        assert!(matches!(
            with(&[("SWITCHBOARD_ADDR", "0.0.0.0:8080")]),
            Err(ConfigError::OpenToNetwork(_))
        ));
        let c = with(&[
            ("SWITCHBOARD_ADDR", "0.0.0.0:8080"),
            ("SWITCHBOARD_API_KEY", "0123456789abcdefXYZ"),
        ])
        .unwrap();
        assert!(matches!(c.management, ManagementAccess::ApiKey(_)));
    }

    #[test]
    fn bad_values_name_the_setting() {
        let e = with(&[("SWITCHBOARD_RING_TIMEOUT", "soon")]).unwrap_err();
        assert!(e.to_string().contains("SWITCHBOARD_RING_TIMEOUT"));
        let e = with(&[("SWITCHBOARD_ADDR", "localhost")]).unwrap_err();
        assert!(e.to_string().contains("SWITCHBOARD_ADDR"));
        assert!(with(&[("SWITCHBOARD_API_KEY", "short")]).is_err());
    }

    #[test]
    fn the_embedded_store_is_the_default() {
        assert_eq!(with(&[]).unwrap().store, StoreConfig::Embedded);
        assert_eq!(
            with(&[("SWITCHBOARD_STORE", "embedded")]).unwrap().store,
            StoreConfig::Embedded
        );
        let e = with(&[("SWITCHBOARD_STORE", "postgres")]).unwrap_err();
        assert!(e.to_string().contains("SWITCHBOARD_STORE"), "{e}");
    }

    fn dynamo(pairs: &[(&str, &str)]) -> Result<DynamoConfig, ConfigError> {
        let mut all = vec![("SWITCHBOARD_STORE", "dynamodb")];
        all.extend_from_slice(pairs);
        match with(&all)?.store {
            StoreConfig::DynamoDb(c) => Ok(*c),
            other => panic!("expected dynamodb, got {other:?}"),
        }
    }

    #[test]
    fn dynamodb_defaults_are_the_classic_tables() {
        let c = dynamo(&[]).unwrap();
        assert_eq!(c.tables, TableNames::default());
        assert_eq!(c.tables.calls, "Calls");
        assert_eq!(c.tables.rooms, "Rooms");
        assert_eq!(c.endpoint_url, None);
        assert_eq!(c.credentials, None);
        assert_eq!(c.max_attempts, 5);
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert!(!c.init_tables);
    }

    #[test]
    fn dynamodb_settings_are_read() {
        let c = dynamo(&[
            ("DYNAMODB_TABLE_PREFIX", "prod-"),
            ("DYNAMODB_TABLE_CALLS", "CallSessions"),
            ("DYNAMODB_TABLE_EVENTS", "CallEvents"),
            ("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:8000"),
            ("AWS_ENDPOINT_URL", "http://ignored:1"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "very-secret-aws-key"),
            ("AWS_MAX_ATTEMPTS", "7"),
            ("SWITCHBOARD_DYNAMODB_TIMEOUT", "2.5"),
            ("SWITCHBOARD_INIT_TABLES", "true"),
        ])
        .unwrap();
        assert_eq!(c.tables.calls, "prod-CallSessions");
        assert_eq!(c.tables.events, "prod-CallEvents");
        assert_eq!(c.tables.agents, "prod-Agents");
        assert_eq!(c.endpoint_url.as_deref(), Some("http://127.0.0.1:8000"));
        assert_eq!(c.region.as_deref(), Some("eu-west-1"));
        assert_eq!(c.credentials.as_ref().unwrap().access_key_id, "AKIDEXAMPLE");
        assert_eq!(c.max_attempts, 7);
        assert_eq!(c.timeout, Duration::from_millis(2500));
        assert!(c.init_tables);
        let shown = format!("{c:?}");
        assert!(!shown.contains("very-secret-aws-key"), "{shown}");
        assert_eq!(
            dynamo(&[("AWS_ENDPOINT_URL", "https://ddb.local:443")])
                .unwrap()
                .endpoint_url
                .as_deref(),
            Some("https://ddb.local:443")
        );
    }

    #[test]
    fn bad_dynamodb_values_name_the_setting() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("DYNAMODB_TABLE_PREFIX", "bad prefix/")],
                "DYNAMODB_TABLE_PREFIX",
            ),
            (
                &[("DYNAMODB_TABLE_CALLS", "Calls!")],
                "DYNAMODB_TABLE_CALLS",
            ),
            (&[("DYNAMODB_TABLE_ROOMS", "ab")], "DYNAMODB_TABLE_ROOMS"),
            (
                &[("DYNAMODB_TABLE_OPEN_CALLS", "Calls")],
                "DYNAMODB_TABLE_OPEN_CALLS",
            ),
            (
                &[("AWS_ENDPOINT_URL_DYNAMODB", "localhost:8000")],
                "AWS_ENDPOINT_URL_DYNAMODB",
            ),
            (&[("AWS_ENDPOINT_URL", "ftp://x")], "AWS_ENDPOINT_URL"),
            (&[("AWS_REGION", "eu west 1")], "AWS_REGION"),
            (&[("AWS_ACCESS_KEY_ID", "AKID")], "AWS_SECRET_ACCESS_KEY"),
            (&[("AWS_MAX_ATTEMPTS", "0")], "AWS_MAX_ATTEMPTS"),
            (&[("AWS_MAX_ATTEMPTS", "many")], "AWS_MAX_ATTEMPTS"),
            (
                &[("SWITCHBOARD_DYNAMODB_TIMEOUT", "-1")],
                "SWITCHBOARD_DYNAMODB_TIMEOUT",
            ),
            (
                &[("SWITCHBOARD_INIT_TABLES", "sure")],
                "SWITCHBOARD_INIT_TABLES",
            ),
        ];
        for (pairs, var) in cases {
            let e = dynamo(pairs).unwrap_err();
            assert!(e.to_string().contains(var), "{pairs:?}: {e}");
        }
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let c = with(&[
            ("LIVEKIT_API_SECRET", "very-secret-value"),
            ("SWITCHBOARD_API_KEY", "another-secret-value-123"),
        ])
        .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("very-secret-value"));
        assert!(!shown.contains("another-secret-value-123"));
    }

    #[test]
    fn llm_is_off_without_a_key_and_redaction_is_on() {
        let c = with(&[]).unwrap();
        assert_eq!(c.llm.endpoint, None);
        assert!(c.llm.redact);
        assert_eq!(c.llm.debounce, Duration::from_secs(2));
        let c = with(&[("LLM_PROVIDER", "groq")]).unwrap();
        assert_eq!(c.llm.endpoint, None, "a preset without a key stays offline");
        let c = with(&[("SWITCHBOARD_REDACT", "false")]).unwrap();
        assert!(!c.llm.redact);
    }

    #[test]
    fn llm_presets_read_the_providers_usual_keys() {
        let c = with(&[("GROQ_API_KEY", "gsk-1")]).unwrap();
        let e = c.llm.endpoint.unwrap();
        assert_eq!(e.provider, "groq");
        assert_eq!(e.base_url, "https://api.groq.com/openai/v1");
        assert_eq!(e.model, "llama-3.1-8b-instant");
        assert_eq!(e.api_key.unwrap().expose(), "gsk-1");
        assert_eq!((e.retries, e.stream), (2, true));
        let c = with(&[
            ("LLM_PROVIDER", "openrouter"),
            ("OPENROUTER_API_KEY", "or-1"),
            ("OPENAI_API_KEY", "sk-1"),
            ("LLM_MODEL", "anthropic/claude-3.5-haiku"),
        ])
        .unwrap();
        let e = c.llm.endpoint.unwrap();
        assert_eq!(e.base_url, "https://openrouter.ai/api/v1");
        assert_eq!(e.model, "anthropic/claude-3.5-haiku");
        assert_eq!(e.api_key.as_ref().unwrap().expose(), "or-1");
        assert!(
            !format!("{e:?}").contains("or-1"),
            "the key is redacted in Debug"
        );
        let c = with(&[("OPENAI_API_KEY", "sk-1")]).unwrap();
        assert_eq!(c.llm.endpoint.unwrap().provider, "openai");
    }

    #[test]
    fn llm_custom_endpoints_need_a_model_and_a_url() {
        let c = with(&[
            ("LLM_BASE_URL", "http://127.0.0.1:11434/v1/"),
            ("LLM_MODEL", "llama3"),
            ("LLM_TIMEOUT", "1.5"),
            ("LLM_RETRIES", "0"),
            ("LLM_STREAM", "false"),
        ])
        .unwrap();
        let e = c.llm.endpoint.unwrap();
        assert_eq!(e.provider, "custom");
        assert_eq!(e.base_url, "http://127.0.0.1:11434/v1");
        assert_eq!(e.api_key, None);
        assert_eq!(e.timeout, Duration::from_millis(1500));
        assert_eq!((e.retries, e.stream), (0, false));
        for (pairs, name) in [
            (vec![("LLM_BASE_URL", "http://x/v1")], "LLM_MODEL"),
            (vec![("LLM_PROVIDER", "custom")], "LLM_BASE_URL"),
            (vec![("LLM_PROVIDER", "acme")], "LLM_PROVIDER"),
            (
                vec![("OPENAI_API_KEY", "k"), ("LLM_RETRIES", "11")],
                "LLM_RETRIES",
            ),
            (
                vec![("LLM_BASE_URL", "ftp://x"), ("LLM_MODEL", "m")],
                "LLM_BASE_URL",
            ),
        ] {
            match with(&pairs) {
                Err(ConfigError::Invalid { name: n, .. }) => assert_eq!(n, name, "{pairs:?}"),
                other => panic!("{pairs:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn recordings_are_all_or_nothing_and_validated() {
        let c = with(&[]).unwrap();
        assert_eq!(c.recording, None);
        assert_eq!(c.assistant_agent_name, "switchboard-assistant");
        let full = [
            ("SWITCHBOARD_RECORDING_S3_BUCKET", "calls-archive"),
            ("SWITCHBOARD_RECORDING_S3_REGION", "eu-west-1"),
            ("SWITCHBOARD_RECORDING_S3_ACCESS_KEY", "AKIDREC"),
            ("SWITCHBOARD_RECORDING_S3_SECRET", "very-secret-s3-key"),
        ];
        let r = with(&full).unwrap().recording.unwrap();
        assert_eq!(r.bucket, "calls-archive");
        assert_eq!(r.region, "eu-west-1");
        assert_eq!(r.endpoint, None);
        assert_eq!(r.access_key, "AKIDREC");
        assert_eq!(r.secret.expose(), "very-secret-s3-key");
        assert!(!r.force_path_style);
        assert_eq!(r.prefix, "recordings/");
        assert!(!format!("{r:?}").contains("very-secret-s3-key"));
        let mut minio = full.to_vec();
        minio.extend([
            (
                "SWITCHBOARD_RECORDING_S3_ENDPOINT",
                "http://127.0.0.1:9000/",
            ),
            ("SWITCHBOARD_RECORDING_S3_FORCE_PATH_STYLE", "true"),
            ("SWITCHBOARD_RECORDING_S3_PREFIX", "/tenant-a/calls/"),
            ("SWITCHBOARD_ASSISTANT_AGENT_NAME", "sales-bot"),
        ]);
        let c = with(&minio).unwrap();
        let r = c.recording.unwrap();
        assert_eq!(r.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(r.force_path_style);
        assert_eq!(r.prefix, "tenant-a/calls/");
        assert_eq!(c.assistant_agent_name, "sales-bot");
        // Any one variable alone asks for the rest.
        for (i, (name, _)) in full.iter().enumerate() {
            let mut partial = full.to_vec();
            partial.remove(i);
            match with(&partial) {
                Err(ConfigError::Invalid { name: n, .. }) => assert_eq!(n, *name),
                other => panic!("without {name}: {other:?}"),
            }
        }
        match with(&[("SWITCHBOARD_RECORDING_S3_PREFIX", "calls/")]) {
            Err(ConfigError::Invalid { name, .. }) => {
                assert_eq!(name, "SWITCHBOARD_RECORDING_S3_BUCKET")
            }
            other => panic!("{other:?}"),
        }
        for (name, bad) in [
            ("SWITCHBOARD_RECORDING_S3_BUCKET", "Calls_Archive"),
            ("SWITCHBOARD_RECORDING_S3_BUCKET", "ab"),
            ("SWITCHBOARD_RECORDING_S3_REGION", "eu west"),
            ("SWITCHBOARD_RECORDING_S3_ENDPOINT", "minio:9000"),
            ("SWITCHBOARD_RECORDING_S3_FORCE_PATH_STYLE", "sometimes"),
            ("SWITCHBOARD_RECORDING_S3_PREFIX", "../escape/"),
        ] {
            let mut changed: Vec<(&str, &str)> =
                full.iter().filter(|(k, _)| *k != name).copied().collect();
            changed.push((name, bad));
            match with(&changed) {
                Err(ConfigError::Invalid { name: n, .. }) => assert_eq!(n, name, "{bad:?}"),
                other => panic!("{name}={bad:?}: {other:?}"),
            }
        }
        assert!(with(&[("SWITCHBOARD_ASSISTANT_AGENT_NAME", "my agent!")]).is_err());
    }
}
