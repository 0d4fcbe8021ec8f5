//! Dead letters: events the worker will never apply, kept with their reason in the stream
//! `NOTIFICATIONS_DLQ` (subjects `dlq.<original subject>`), body untouched.

use super::Delivery;
use crate::config::DeadLetterSettings;
use crate::domain::Reason;
use anyhow::Context;
use async_nats::jetstream::{self, message::PublishMessage, stream};
use std::time::Duration;

pub const DLQ_STREAM: &str = "NOTIFICATIONS_DLQ";
pub const DLQ_PREFIX: &str = "dlq.";
const DLQ_FILTER: &str = "dlq.notifications.>";
/// Recipient events the worker will never apply: subjects `dlq.recipients.{event}`.
pub const RECIPIENTS_DLQ_STREAM: &str = "RECIPIENTS_DLQ";
const RECIPIENTS_DLQ_FILTER: &str = "dlq.recipients.>";
/// Delivery jobs a channel gave up on: subjects `dlq.deliveries.{channel}`.
pub const DELIVERIES_DLQ_STREAM: &str = "DELIVERIES_DLQ";
const DELIVERIES_DLQ_FILTER: &str = "dlq.deliveries.>";

/// Header names (part of the contract: operators' tools read them).
pub mod header {
    pub const REASON: &str = "Dlq-Reason";
    pub const ERROR: &str = "Dlq-Error";
    pub const ORIGINAL_SUBJECT: &str = "Dlq-Original-Subject";
    pub const ORIGINAL_SEQUENCE: &str = "Dlq-Original-Sequence";
    pub const ATTEMPTS: &str = "Dlq-Attempts";
    /// The version the event is applied with (its stream's creation time and sequence, as
    /// one number). `dlq replay` republishes with it, and the worker applies a replayed event
    /// with it when it is older than the new message's own: a replayed like then cannot undo
    /// the unlike that followed the original.
    pub const ORIGINAL_VERSION: &str = "Dlq-Original-Version";
    /// Set (to the original size in bytes) only when the body had to be cut: see `send`.
    pub const TRUNCATED: &str = "Dlq-Truncated";
}

/// A repeated dead-lettering of one message (a redelivery after a crash between the dead
/// letter and the ack, which comes back within AckWait) is dropped by the stream's
/// duplicate window, keyed by `Nats-Msg-Id`. Minutes are enough for that; the server keeps
/// every id of the window in memory, so a window of hours would cost memory for nothing.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(5 * 60);
/// When a dead letter cannot be stored (NATS trouble, the stream full), its original comes
/// back after this.
const RETRY_UNSTORED: Duration = Duration::from_secs(2);
/// `Dlq-Error` is cut to this many bytes (headers travel with every message).
const MAX_ERROR_BYTES: usize = 512;
/// Room kept for the headers when checking a dead letter against the server's max payload.
const HEADER_ROOM: usize = 2048;
/// What is kept of a body too large to be dead-lettered whole.
const TRUNCATED_BODY_BYTES: usize = crate::domain::MAX_BODY_BYTES;

#[derive(Clone)]
pub struct DeadLetters {
    js: jetstream::Context,
    /// The stream the originals come from, part of each `Nats-Msg-Id`.
    source_stream: String,
    /// How long the dead-letter stream keeps them, as the server says; `None`: forever.
    max_age: Option<Duration>,
    /// Where dead letters go: `None`, under `dlq.` + the original subject; or one subject
    /// (a channel's, `dlq.deliveries.{channel}`).
    subject: Option<String>,
}

impl DeadLetters {
    /// Uses the dead-letter stream, creating it with `settings` when absent.
    pub async fn ensure(
        js: &jetstream::Context,
        source_stream: &str,
        settings: &DeadLetterSettings,
    ) -> anyhow::Result<DeadLetters> {
        let stream = ensure_stream(js, settings).await?;
        let max_age = stream.cached_info().config.max_age;
        Ok(DeadLetters {
            js: js.clone(),
            source_stream: source_stream.to_owned(),
            max_age: (!max_age.is_zero()).then_some(max_age),
            subject: None,
        })
    }

    /// The dead letters of stream `RECIPIENTS` (stream `RECIPIENTS_DLQ`, subjects
    /// `dlq.recipients.{event}`), created with `settings` when absent.
    pub async fn for_recipients(
        js: &jetstream::Context,
        settings: &DeadLetterSettings,
    ) -> anyhow::Result<DeadLetters> {
        let stream = create_stream(js, RECIPIENTS_DLQ_STREAM, RECIPIENTS_DLQ_FILTER, settings).await?;
        let max_age = stream.cached_info().config.max_age;
        Ok(DeadLetters {
            js: js.clone(),
            source_stream: super::jetstream::RECIPIENTS_STREAM.to_owned(),
            max_age: (!max_age.is_zero()).then_some(max_age),
            subject: None,
        })
    }

    /// The dead letters of one delivery channel (stream `DELIVERIES_DLQ`, subject
    /// `dlq.deliveries.{channel}`), created with `settings` when absent.
    pub async fn for_channel(
        js: &jetstream::Context,
        outbox_stream: &str,
        channel: &str,
        settings: &DeadLetterSettings,
    ) -> anyhow::Result<DeadLetters> {
        let stream = create_stream(js, DELIVERIES_DLQ_STREAM, DELIVERIES_DLQ_FILTER, settings).await?;
        let max_age = stream.cached_info().config.max_age;
        Ok(DeadLetters {
            js: js.clone(),
            // Each channel dead-letters the same job on its own: the channel is part of the id.
            source_stream: format!("{outbox_stream}:{channel}"),
            max_age: (!max_age.is_zero()).then_some(max_age),
            subject: Some(format!("{DLQ_PREFIX}deliveries.{channel}")),
        })
    }

    /// The effective max age of the dead-letter stream (an existing stream's own, which may
    /// differ from `DLQ_MAX_AGE`); `None` when it keeps dead letters forever. Anything that
    /// must outlive a replayable dead letter checks against this.
    pub fn max_age(&self) -> Option<Duration> {
        self.max_age
    }

    /// Settles `delivery` by its dead letter: stored, then the original acknowledged; or, when
    /// the dead letter cannot be stored, the original handed back (it comes back after
    /// [`RETRY_UNSTORED`]), so that it is neither lost nor acknowledged. `Err` says why.
    pub async fn keep(&self, delivery: &Delivery, reason: Reason, error: &str) -> Result<(), String> {
        match self.send(delivery, reason, error).await {
            Ok(()) => {
                delivery.ack().await;
                Ok(())
            }
            Err(why) => {
                delivery.hand_back(RETRY_UNSTORED).await;
                Err(why)
            }
        }
    }

    /// Stores `delivery` as a dead letter and returns once the server has acknowledged it,
    /// so the caller may then acknowledge the original.
    pub async fn send(&self, delivery: &Delivery, reason: Reason, error: &str) -> Result<(), String> {
        let sequence = delivery.stream_sequence.unwrap_or(0);
        // A replayed event dead-lettered again keeps its original's sequence and version.
        let original_sequence = delivery.version.sequence();
        // The body goes untouched, except in one case: a body that the publisher squeezed
        // under the server's max payload no longer fits once the headers are added. Keep
        // its first 64 KiB and say so, rather than failing to dead-letter it forever.
        let max_payload = self.js.client().server_info().max_payload;
        let (body, truncated_from) = if delivery.body.len() + HEADER_ROOM > max_payload {
            (
                delivery
                    .body
                    .slice(..TRUNCATED_BODY_BYTES.min(delivery.body.len())),
                Some(delivery.body.len()),
            )
        } else {
            (delivery.body.clone(), None)
        };
        let mut message = PublishMessage::build()
            .payload(body)
            .message_id(format!("{}:{sequence}", self.source_stream))
            .header(header::REASON, reason.code())
            .header(header::ERROR, header_safe(error).as_str())
            .header(header::ORIGINAL_SUBJECT, delivery.subject.as_str())
            .header(header::ORIGINAL_SEQUENCE, original_sequence.to_string().as_str())
            .header(header::ORIGINAL_VERSION, delivery.version.to_string().as_str())
            .header(header::ATTEMPTS, delivery.delivered.to_string().as_str());
        if let Some(size) = truncated_from {
            message = message.header(header::TRUNCATED, size.to_string().as_str());
        }
        let subject = match &self.subject {
            Some(subject) => subject.clone(),
            None => format!("{DLQ_PREFIX}{}", delivery.subject),
        };
        let ack = self
            .js
            .send_publish(subject, message)
            .await
            .map_err(|error| format!("cannot publish the dead letter: {error}"))?;
        ack.await
            .map_err(|error| format!("the dead-letter stream did not store it: {error}"))?;
        Ok(())
    }
}

pub async fn ensure_stream(
    js: &jetstream::Context,
    settings: &DeadLetterSettings,
) -> anyhow::Result<stream::Stream> {
    create_stream(js, DLQ_STREAM, DLQ_FILTER, settings).await
}

async fn create_stream(
    js: &jetstream::Context,
    name: &str,
    filter: &str,
    settings: &DeadLetterSettings,
) -> anyhow::Result<stream::Stream> {
    js.get_or_create_stream(stream::Config {
        name: name.to_owned(),
        subjects: vec![filter.to_owned()],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        // Bounded, so tombstones (kept at least this long: see `run`) cover any replay.
        max_age: settings.max_age,
        max_bytes: settings
            .max_bytes
            .and_then(|bytes| i64::try_from(bytes).ok())
            .unwrap_or(-1),
        // Full: refuse the new dead letter (its original comes back and the failure is
        // counted) rather than drop the oldest one silently.
        discard: stream::DiscardPolicy::New,
        duplicate_window: DUPLICATE_WINDOW.min(settings.max_age),
        ..Default::default()
    })
    .await
    .with_context(|| format!("cannot read or create the dead-letter stream {name}"))
}

/// One line, at most [`MAX_ERROR_BYTES`], cut on a character boundary.
fn header_safe(text: &str) -> String {
    let mut line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if line.len() > MAX_ERROR_BYTES {
        let mut end = MAX_ERROR_BYTES;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_are_one_bounded_line() {
        assert_eq!(header_safe("a\r\nb"), "a  b");
        let long = "é".repeat(600);
        let cut = header_safe(&long);
        assert!(cut.len() <= MAX_ERROR_BYTES && cut.chars().all(|c| c == 'é'));
    }
}
