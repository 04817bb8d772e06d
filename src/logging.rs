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

/// Installs the global subscriber: `RUST_LOG` filters (default `info,actix_server=warn`),
/// lines go to stderr in the given format.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,actix_server=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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
}
