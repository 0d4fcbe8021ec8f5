//! What became of one event; each outcome is logged once, with the same fields.

use crate::domain::{Change, Rejection};
use crate::input::Delivery;
use crate::store::Applied;
use crate::telemetry::metrics::Metrics;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The store applied the change (created, duplicate, removed or absent).
    Applied(Applied),
    /// owner == trigger_user: acknowledged without a write.
    SelfSkipped,
    /// A create over a rate limit: acknowledged without a write (docs/rate-limits.md).
    Throttled,
    /// Never valid: dead-lettered (JetStream) or only logged (core), then acknowledged.
    Invalid(Rejection),
    /// Valid but refused by the store, or delivered too often: dead-lettered, acknowledged.
    DeadLettered(Rejection),
    /// Could not finish (shutdown during a store outage, or the dead letter could not be
    /// stored): handed back to the server for redelivery.
    HandedBack,
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Applied(applied) => applied.as_str(),
            Outcome::SelfSkipped => "self_skipped",
            Outcome::Throttled => "throttled",
            Outcome::Invalid(_) => "invalid",
            Outcome::DeadLettered(_) => "dead_lettered",
            Outcome::HandedBack => "handed_back",
        }
    }

    /// Settled for good (counted in metrics), as opposed to handed back for another try.
    fn is_final(&self) -> bool {
        !matches!(self, Outcome::HandedBack)
    }
}

/// Body bytes shown in debug logs of invalid events.
const PREVIEW_BYTES: usize = 200;

/// Logs and counts what became of one delivery; called once per delivery.
pub fn report(
    metrics: &Metrics,
    outcome: &Outcome,
    delivery: &Delivery,
    event_type: &'static str,
    change: Option<&Change>,
    took: Duration,
) {
    metrics.settled();
    if outcome.is_final() {
        metrics.event_settled(event_type, outcome.as_str(), took);
    }
    log(outcome, delivery, event_type, change, took);
}

fn created_id(outcome: &Outcome, change: &Change) -> Option<String> {
    match (outcome, change) {
        (Outcome::Applied(Applied::Created), Change::Create(notification)) => {
            Some(notification.id.to_string())
        }
        _ => None,
    }
}

fn log(outcome: &Outcome, delivery: &Delivery, event_type: &str, change: Option<&Change>, took: Duration) {
    let subject = delivery.subject.as_str();
    let stream_seq = delivery.stream_sequence;
    let duration_ms = took.as_micros() as f64 / 1000.0;
    let result = outcome.as_str();
    match (outcome, change) {
        (Outcome::Invalid(rejection) | Outcome::DeadLettered(rejection), _) => {
            tracing::warn!(
                outcome = result,
                reason = rejection.reason.code(),
                subject,
                stream_seq,
                error = %rejection.message,
                "event rejected: {result}"
            );
            let preview = &delivery.body[..delivery.body.len().min(PREVIEW_BYTES)];
            tracing::debug!(subject, stream_seq, body = %String::from_utf8_lossy(preview), "invalid event body");
        }
        (Outcome::HandedBack, _) => {
            tracing::warn!(
                subject,
                stream_seq,
                outcome = result,
                "event handed back for redelivery"
            );
        }
        (_, Some(change)) => tracing::info!(
            subject,
            stream_seq,
            version = %delivery.version,
            event_type,
            owner = %change.owner(),
            action_key = %change.subject(),
            // The id of the notification this event's life has: only a creation has one.
            notification_id = created_id(outcome, change),
            outcome = result,
            duration_ms,
            "{result}"
        ),
        (_, None) => tracing::info!(
            subject,
            stream_seq,
            event_type,
            outcome = result,
            duration_ms,
            "{result}"
        ),
    }
}
