//! What the NATS client reports about its connection, as few lines as an operator needs.
//!
//! While NATS is down the client retries with backoff (up to every 4 s) and reports each
//! failed attempt; one warning each would bury every other line of an hour-long outage.
//! So an outage logs its start, its first failed attempt (with the reason), then one
//! reminder per [`REMINDER_EVERY`] while it lasts, and its end with how long it took.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a continuing outage is logged again.
pub const REMINDER_EVERY: Duration = Duration::from_secs(30);

/// What the client reported, reduced to what the log needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    Connected,
    Disconnected,
    /// A reconnect attempt failed, for this reason.
    AttemptFailed(String),
    /// The client was closed by this process (the end of a command, or shutdown).
    Closed,
    Other(String),
}

impl From<async_nats::Event> for Report {
    fn from(event: async_nats::Event) -> Report {
        match event {
            async_nats::Event::Connected => Report::Connected,
            async_nats::Event::Disconnected => Report::Disconnected,
            async_nats::Event::ClientError(async_nats::ClientError::Other(reason)) => {
                Report::AttemptFailed(reason)
            }
            async_nats::Event::Closed => Report::Closed,
            other => Report::Other(other.to_string()),
        }
    }
}

/// The line to log for a report, if any.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    Connected,
    Reconnected {
        down_for: Duration,
        failed_attempts: u64,
    },
    Disconnected,
    Unreachable {
        reason: String,
    },
    StillUnreachable {
        down_for: Duration,
        failed_attempts: u64,
        reason: String,
    },
    Closed,
    Other(String),
}

#[derive(Debug, Default)]
struct Outage {
    since: Option<Instant>,
    failed_attempts: u64,
    last_logged: Option<Instant>,
}

/// Decides which reports become log lines. Shared by the client's event callback.
#[derive(Debug, Default)]
pub struct ConnectionLog {
    outage: Mutex<Outage>,
}

impl ConnectionLog {
    pub fn decide(&self, report: Report, now: Instant) -> Option<Line> {
        let mut outage = self
            .outage
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match report {
            Report::Connected => {
                let line = match outage.since {
                    Some(since) => Line::Reconnected {
                        down_for: now.saturating_duration_since(since),
                        failed_attempts: outage.failed_attempts,
                    },
                    None => Line::Connected,
                };
                *outage = Outage::default();
                Some(line)
            }
            Report::Disconnected => {
                *outage = Outage {
                    since: Some(now),
                    failed_attempts: 0,
                    last_logged: Some(now),
                };
                Some(Line::Disconnected)
            }
            Report::AttemptFailed(reason) => {
                let since = *outage.since.get_or_insert(now);
                outage.failed_attempts += 1;
                if outage.failed_attempts == 1 {
                    outage.last_logged = Some(now);
                    return Some(Line::Unreachable { reason });
                }
                let due = outage
                    .last_logged
                    .is_none_or(|last| now.saturating_duration_since(last) >= REMINDER_EVERY);
                if !due {
                    return None;
                }
                outage.last_logged = Some(now);
                Some(Line::StillUnreachable {
                    down_for: now.saturating_duration_since(since),
                    failed_attempts: outage.failed_attempts,
                    reason,
                })
            }
            Report::Closed => Some(Line::Closed),
            Report::Other(text) => Some(Line::Other(text)),
        }
    }

    /// Logs what the client reported, when it deserves a line.
    pub fn log(&self, event: async_nats::Event) {
        match self.decide(event.into(), Instant::now()) {
            None => {}
            Some(Line::Connected) => tracing::info!("connected to NATS"),
            Some(Line::Reconnected {
                down_for,
                failed_attempts,
            }) => tracing::info!(
                down_seconds = down_for.as_secs(),
                failed_attempts,
                "reconnected to NATS"
            ),
            Some(Line::Disconnected) => tracing::warn!("disconnected from NATS; reconnecting"),
            Some(Line::Unreachable { reason }) => tracing::warn!(
                reason = %reason,
                reminder_seconds = REMINDER_EVERY.as_secs(),
                "cannot reach NATS; retrying with backoff, reminding while it lasts"
            ),
            Some(Line::StillUnreachable {
                down_for,
                failed_attempts,
                reason,
            }) => tracing::warn!(
                down_seconds = down_for.as_secs(),
                failed_attempts,
                reason = %reason,
                "still cannot reach NATS; retrying"
            ),
            // Every command closes its client when it is done: nothing went wrong.
            Some(Line::Closed) => tracing::debug!("NATS connection closed"),
            Some(Line::Other(text)) => tracing::warn!(event = %text, "NATS client event"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed() -> Report {
        Report::AttemptFailed("connection refused".into())
    }

    #[test]
    fn an_outage_logs_its_start_its_first_failure_one_reminder_per_period_and_its_end() {
        let log = ConnectionLog::default();
        let start = Instant::now();
        let at = |seconds: u64| start + Duration::from_secs(seconds);
        assert_eq!(log.decide(Report::Connected, start), Some(Line::Connected));
        assert_eq!(log.decide(Report::Disconnected, at(1)), Some(Line::Disconnected));
        assert_eq!(
            log.decide(failed(), at(1)),
            Some(Line::Unreachable {
                reason: "connection refused".into()
            })
        );
        // Attempts every 4 s for a minute and a half: two reminders, not twenty warnings.
        let lines: Vec<Line> = (1..=22)
            .filter_map(|attempt| log.decide(failed(), at(1 + 4 * attempt)))
            .collect();
        assert_eq!(
            lines,
            vec![
                Line::StillUnreachable {
                    down_for: Duration::from_secs(32),
                    failed_attempts: 9,
                    reason: "connection refused".into()
                },
                Line::StillUnreachable {
                    down_for: Duration::from_secs(64),
                    failed_attempts: 17,
                    reason: "connection refused".into()
                },
            ]
        );
        assert_eq!(
            log.decide(Report::Connected, at(90)),
            Some(Line::Reconnected {
                down_for: Duration::from_secs(89),
                failed_attempts: 23
            })
        );
        // The next outage starts afresh.
        assert_eq!(
            log.decide(Report::Disconnected, at(100)),
            Some(Line::Disconnected)
        );
        assert!(matches!(
            log.decide(failed(), at(100)),
            Some(Line::Unreachable { .. })
        ));
    }

    #[test]
    fn closing_the_client_is_not_a_warning() {
        let log = ConnectionLog::default();
        assert_eq!(log.decide(Report::Closed, Instant::now()), Some(Line::Closed));
    }
}
