//! Logging through `tracing`: readable lines locally, JSON in production. Request spans carry
//! the request id; no handler logs a token or an event's data.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::settings::{LogFormat, LogSettings};

/// actix's HTTP/1 dispatcher logs every request it cannot parse at ERROR, so any client could
/// flood the log; the connection layer counts and explains those instead (at debug level).
const QUIET_DISPATCHER: &str = "actix_http::h1::dispatcher=off";

/// The filter's directives: `RUST_LOG` when set, else the configured filter, with the
/// dispatcher silenced unless the directives name `actix_http` themselves.
pub fn directives(configured: &str, environment: Option<&str>) -> String {
    let chosen = environment.filter(|text| !text.trim().is_empty()).unwrap_or(configured);
    if chosen.contains("actix_http") {
        chosen.to_owned()
    } else {
        format!("{chosen},{QUIET_DISPATCHER}")
    }
}

/// Installs the global subscriber; `RUST_LOG`, when set, replaces the configured filter. Logs go
/// to stderr so that command output (a new token, say) stays alone on stdout.
pub fn init(settings: &LogSettings) {
    let environment = std::env::var(EnvFilter::DEFAULT_ENV).ok();
    let filter = EnvFilter::try_new(directives(&settings.filter, environment.as_deref()))
        .unwrap_or_else(|_| EnvFilter::new(format!("info,{QUIET_DISPATCHER}")));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // A second call (tests that build several apps) finds a subscriber already set; that is fine.
    let _ = match settings.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        // Colour codes only on a terminal; a log file or pipe gets plain text.
        LogFormat::Pretty => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dispatcher_is_silenced_unless_named() {
        assert_eq!(directives("info", None), "info,actix_http::h1::dispatcher=off");
        assert_eq!(directives("info", Some("debug")), "debug,actix_http::h1::dispatcher=off");
        assert_eq!(directives("info", Some(" ")), "info,actix_http::h1::dispatcher=off");
        assert_eq!(directives("info", Some("actix_http=trace")), "actix_http=trace");
    }
}
