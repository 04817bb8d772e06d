//! Logging: the format chosen by `SWITCHBOARD_LOG_FORMAT` (`text`, the default, or `json`:
//! one JSON object a line, with the current span's fields), and the span a call's work runs
//! in ([`call_span`]), which carries `callId` and, while a transfer is known, `transferId`.
//!
//! Secrets never reach a log line: they are held in [`crate::secret::Secret`], whose
//! `Debug` and `Display` print `[redacted]`, and no log statement takes a token or key.

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (the default).
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields`, `target`, `span`, `spans`).
    Json,
}

/// `SWITCHBOARD_LOG_FORMAT` holds something other than `text` or `json`.
#[derive(Debug, thiserror::Error)]
#[error("SWITCHBOARD_LOG_FORMAT must be `text` or `json` (got {0:?})")]
pub struct LogFormatError(String);

impl LogFormat {
    /// Parses the setting; unset or empty means [`LogFormat::Text`].
    pub fn parse(value: Option<&str>) -> Result<Self, LogFormatError> {
        match value.map(str::trim) {
            None | Some("") => Ok(LogFormat::Text),
            Some(v) if v.eq_ignore_ascii_case("text") => Ok(LogFormat::Text),
            Some(v) if v.eq_ignore_ascii_case("json") => Ok(LogFormat::Json),
            Some(v) => Err(LogFormatError(v.to_string())),
        }
    }

    /// Reads `SWITCHBOARD_LOG_FORMAT` from the environment.
    pub fn from_env() -> Result<Self, LogFormatError> {
        match std::env::var("SWITCHBOARD_LOG_FORMAT") {
            Ok(v) => Self::parse(Some(&v)),
            Err(std::env::VarError::NotPresent) => Ok(LogFormat::Text),
            Err(std::env::VarError::NotUnicode(v)) => {
                Err(LogFormatError(v.to_string_lossy().into_owned()))
            }
        }
    }
}

/// The filter used when `RUST_LOG` is unset (or cannot be parsed).
pub const DEFAULT_FILTER: &str = "info,actix_server=warn";

/// Quiets the HTTP/1 dispatcher of actix-http, which logs every malformed request anyone
/// sends (a bad request line, too many headers, a client gone mid-request) as
/// `ERROR stream error: ...`: those are the client's fault, answered with a 400 or 431, and
/// must not page an operator. Added to every filter unless `RUST_LOG` names an `actix_http`
/// target itself (`RUST_LOG=info,actix_http::h1::dispatcher=error` brings them back).
pub const QUIET_DISPATCHER: &str = "actix_http::h1::dispatcher=off";

/// The filter directives for a `RUST_LOG` value: the value itself (or [`DEFAULT_FILTER`]
/// when unset or empty), plus [`QUIET_DISPATCHER`] unless it names `actix_http` already.
pub fn filter_directives(rust_log: Option<&str>) -> String {
    let base = match rust_log.map(str::trim) {
        None | Some("") => DEFAULT_FILTER,
        Some(v) => v,
    };
    if base.contains("actix_http") {
        base.to_string()
    } else {
        format!("{base},{QUIET_DISPATCHER}")
    }
}

/// The filter for a `RUST_LOG` value ([`filter_directives`]); one that does not parse falls
/// back to the default, as an unset one does.
pub fn env_filter(rust_log: Option<&str>) -> EnvFilter {
    EnvFilter::try_new(filter_directives(rust_log))
        .unwrap_or_else(|_| EnvFilter::new(filter_directives(None)))
}

/// Installs the global subscriber: `RUST_LOG` filters ([`env_filter`]: default
/// `info,actix_server=warn`, the dispatcher's malformed-request errors quieted), lines go to
/// stderr in the given format, coloured only when stderr is a terminal (never in a file).
pub fn init(format: LogFormat) {
    use std::io::IsTerminal;
    let rust_log = std::env::var("RUST_LOG").ok();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter(rust_log.as_deref()))
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
}

/// The span a call's work runs in: `call{callId=.. transferId=..}`.
pub fn call_span(call_id: &str, transfer_id: Option<&str>) -> tracing::Span {
    match transfer_id {
        Some(t) => tracing::info_span!("call", callId = %call_id, transferId = %t),
        None => tracing::info_span!("call", callId = %call_id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_is_text_by_default_json_on_request_and_nothing_else() {
        assert_eq!(LogFormat::parse(None).unwrap(), LogFormat::Text);
        assert_eq!(LogFormat::parse(Some("")).unwrap(), LogFormat::Text);
        assert_eq!(LogFormat::parse(Some("TEXT")).unwrap(), LogFormat::Text);
        assert_eq!(LogFormat::parse(Some("json")).unwrap(), LogFormat::Json);
        let err = LogFormat::parse(Some("yaml")).unwrap_err();
        assert!(err.to_string().contains("yaml"), "{err}");
    }

    fn filter_clone(filter: &EnvFilter) -> EnvFilter {
        EnvFilter::new(filter.to_string())
    }

    /// Whether an event of `target` at `level` passes the filter.
    fn probe(filter: &EnvFilter, target: &str, level: tracing::Level) -> bool {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::Layer;
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        struct Seen(std::sync::Arc<std::sync::atomic::AtomicBool>);
        impl<S: tracing::Subscriber> Layer<S> for Seen {
            fn on_event(
                &self,
                _: &tracing::Event<'_>,
                _: tracing_subscriber::layer::Context<'_, S>,
            ) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let subscriber = tracing_subscriber::registry()
            .with(Seen(seen.clone()).with_filter(filter_clone(filter)));
        tracing::subscriber::with_default(subscriber, || {
            // `target:` must be a constant: the targets probed are spelled out.
            match (target, level) {
                ("actix_http::h1::dispatcher", tracing::Level::ERROR) => {
                    tracing::error!(target: "actix_http::h1::dispatcher", "stream error")
                }
                ("actix_http::h1::dispatcher", _) => {
                    tracing::debug!(target: "actix_http::h1::dispatcher", "stream error")
                }
                ("actix_server::worker", _) => {
                    tracing::info!(target: "actix_server::worker", "starting")
                }
                (_, tracing::Level::ERROR) => {
                    tracing::error!(target: "switchboard::app", "internal error")
                }
                _ => tracing::info!(target: "switchboard::app", "listening"),
            }
        });
        seen.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[test]
    fn the_dispatchers_malformed_request_errors_are_quieted_unless_rust_log_names_them() {
        assert_eq!(
            filter_directives(None),
            "info,actix_server=warn,actix_http::h1::dispatcher=off"
        );
        assert_eq!(
            filter_directives(Some(" ")),
            "info,actix_server=warn,actix_http::h1::dispatcher=off"
        );
        assert_eq!(
            filter_directives(Some("debug")),
            "debug,actix_http::h1::dispatcher=off"
        );
        let back = "info,actix_http::h1::dispatcher=error";
        assert_eq!(filter_directives(Some(back)), back);

        let default = env_filter(None);
        assert!(!probe(
            &default,
            "actix_http::h1::dispatcher",
            tracing::Level::ERROR
        ));
        assert!(probe(&default, "switchboard", tracing::Level::ERROR));
        assert!(probe(&default, "switchboard", tracing::Level::INFO));
        assert!(!probe(
            &default,
            "actix_server::worker",
            tracing::Level::INFO
        ));
        let debug = env_filter(Some("debug"));
        assert!(!probe(
            &debug,
            "actix_http::h1::dispatcher",
            tracing::Level::ERROR
        ));
        assert!(probe(&debug, "switchboard", tracing::Level::INFO));
        let overridden = env_filter(Some(back));
        assert!(probe(
            &overridden,
            "actix_http::h1::dispatcher",
            tracing::Level::ERROR
        ));
        assert!(!probe(
            &overridden,
            "actix_http::h1::dispatcher",
            tracing::Level::DEBUG
        ));
        // A filter that does not parse falls back to the default, quieted too.
        let bad = env_filter(Some("info,[="));
        assert!(!probe(
            &bad,
            "actix_http::h1::dispatcher",
            tracing::Level::ERROR
        ));
        assert!(probe(&bad, "switchboard", tracing::Level::INFO));
    }
}
