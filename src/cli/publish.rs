//! `notification-worker publish [--raw] SUBJECT (JSON | @FILE | -)`: the replacement for `nats pub`.

use super::UsageError;
use crate::config::{Config, NatsMode};
use crate::domain::SUBJECT_PREFIX;
use crate::input;
use crate::recipients::RECIPIENT_SUBJECTS;
use anyhow::Context;
use std::io::Read;

pub async fn publish(config: &Config, subject: String, event: &str, raw: bool) -> anyhow::Result<()> {
    check_subject(&subject)?;
    let body = read_event(event)?;
    if !raw && let Err(error) = serde_json::from_slice::<serde::de::IgnoredAny>(&body) {
        return Err(UsageError(format!(
            "the event is not JSON ({error}); nothing was published. Fix it, or add --raw to send \
             it as it is (to see what the worker does with it: a dead letter)"
        ))
        .into());
    }
    let client = input::connect(&config.nats, "notification-worker-publish").await?;
    match config.nats.mode {
        NatsMode::JetStream => {
            let js = async_nats::jetstream::new(client);
            let sequence = input::publish(&js, subject, body.into()).await?;
            println!("{sequence}");
        }
        NatsMode::Core => {
            client
                .publish(subject, body.into())
                .await
                .context("cannot publish")?;
            client.flush().await.context("cannot publish")?;
            println!("published (core mode: no stream sequence)");
        }
    }
    Ok(())
}

/// The worker's streams take `notifications.>` and the four recipient events only: anything
/// else would be stored by no stream (or by someone else's), which is a mistake on the
/// command line. `recipients.>` is checked exactly: stream RECIPIENTS would store
/// `recipients.bogus`, but the worker would only dead-letter it.
fn check_subject(subject: &str) -> Result<(), UsageError> {
    if subject.starts_with("recipients.") {
        return if RECIPIENT_SUBJECTS.contains(&subject) {
            Ok(())
        } else {
            Err(UsageError(format!(
                "subject {subject:?} is no recipient event: use one of {}",
                RECIPIENT_SUBJECTS.join(", ")
            )))
        };
    }
    let tokens_ok = subject
        .strip_prefix(SUBJECT_PREFIX)
        .is_some_and(|rest| rest.split('.').all(|token| !token.is_empty()));
    if tokens_ok && !subject.contains(['*', '>']) && !subject.contains(char::is_whitespace) {
        Ok(())
    } else {
        Err(UsageError(format!(
            "subject {subject:?} is not under {SUBJECT_PREFIX}: the worker's stream would not take it \
             (example: notifications.post.like), nor a recipient event (recipients.upsert, ...)"
        )))
    }
}

/// The event text as given: inline JSON, `@FILE`, or `-` for standard input. Sent as is
/// (only checked to be JSON): the worker decides what is valid, and `publish` is how to try
/// that.
fn read_event(event: &str) -> anyhow::Result<Vec<u8>> {
    if event == "-" {
        let mut body = Vec::new();
        std::io::stdin()
            .read_to_end(&mut body)
            .context("cannot read the event from standard input")?;
        Ok(body)
    } else if let Some(path) = event.strip_prefix('@') {
        // A file that is not there is a mistake on the command line, like a bad subject.
        std::fs::read(path)
            .map_err(|error| UsageError(format!("cannot read the event from {path}: {error}")).into())
    } else {
        Ok(event.as_bytes().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_subjects_the_stream_takes() {
        assert!(check_subject("notifications.post.like").is_ok());
        for subject in RECIPIENT_SUBJECTS {
            assert!(check_subject(subject).is_ok(), "{subject}");
        }
        for subject in [
            "recipients.bogus",
            "recipients.>",
            "recipients.push",
            "orders.created",
            "notifications.",
            "notifications",
            "notifications..like",
            "notifications.post.*",
            "notifications.>",
            "notifications.post like",
        ] {
            assert!(check_subject(subject).is_err(), "{subject}");
        }
    }
}
