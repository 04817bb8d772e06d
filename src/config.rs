//! Settings from the environment (and a `.env` file), validated into a configuration that
//! cannot express an insecure or inconsistent setup; secrets are redacted in `Debug`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::auth::ApiKey;
use crate::call::machine::Timeouts;

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

/// A secret string: shown as `[redacted]` in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret itself, for signing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
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

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address.
    pub addr: SocketAddr,
    /// Directory of the embedded store (and the generated session secret).
    pub data_dir: PathBuf,
    /// How management endpoints are protected.
    pub management: ManagementAccess,
    /// Whether anonymous callers may create calls (`POST /api/calls`) without a key.
    pub public_calls: bool,
    /// LiveKit.
    pub livekit: LiveKitConfig,
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
}

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
        Ok(Config {
            addr,
            data_dir: PathBuf::from(
                nonempty("SWITCHBOARD_DATA_DIR").unwrap_or_else(|| "./data".into()),
            ),
            management,
            public_calls: parse_bool(
                "SWITCHBOARD_PUBLIC_CALLS",
                nonempty("SWITCHBOARD_PUBLIC_CALLS"),
            )?,
            livekit,
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
    fn defaults_need_no_setup() {
        let c = with(&[]).unwrap();
        assert_eq!(c.addr.to_string(), "127.0.0.1:8080");
        assert!(matches!(c.management, ManagementAccess::LoopbackOnly));
        assert_eq!(c.livekit.url, "ws://localhost:7880");
        assert_eq!(c.livekit.api_url, "http://localhost:7880");
        assert_eq!(c.livekit.api_key, "devkey");
        assert_eq!(c.timeouts.ring_ms, 30_000);
        assert_eq!(c.data_dir, PathBuf::from("./data"));
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
}
