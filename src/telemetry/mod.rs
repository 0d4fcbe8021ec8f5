//! What the worker tells operators: logs (structured tracing events, pretty for people in
//! development, JSON lines for log pipelines in production), [`metrics`] (in the
//! [`exposition`] format the scraper asks for) and [`readiness`].

pub mod exposition;
pub mod metrics;
pub mod readiness;

use crate::config::LogFormat;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Where log lines go: the worker logs to stdout like any service; the one-shot commands
/// log to stderr so their own output (a sequence number, a feed) stays clean on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTarget {
    Stdout,
    Stderr,
}

pub fn init(level: &str, format: LogFormat, target: LogTarget) {
    let filter = match target {
        // One-shot commands speak through their output and errors; logs only for trouble.
        LogTarget::Stderr => "warn".to_owned(),
        // The NATS client's own info lines repeat ours ("connected"); keep its warnings.
        LogTarget::Stdout if !level.contains("async_nats") => format!("{level},async_nats=warn"),
        LogTarget::Stdout => level.to_owned(),
    };
    let filter = EnvFilter::builder().parse_lossy(filter);
    // Colour codes only for a person at a terminal: in a file, a pipe or a log collector
    // they are noise (`NO_COLOR` turns them off at a terminal too).
    let ansi = std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
        && match target {
            LogTarget::Stdout => std::io::stdout().is_terminal(),
            LogTarget::Stderr => std::io::stderr().is_terminal(),
        };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi);
    let result = match (format, target) {
        (LogFormat::Json, LogTarget::Stdout) => builder.json().flatten_event(true).try_init(),
        (LogFormat::Json, LogTarget::Stderr) => builder
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .try_init(),
        (LogFormat::Pretty, LogTarget::Stdout) => builder.compact().try_init(),
        (LogFormat::Pretty, LogTarget::Stderr) => builder.compact().with_writer(std::io::stderr).try_init(),
    };
    // Only fails when a subscriber is already set (tests): keep that one.
    let _ = result;
}
