//! `notification-worker publish SUBJECT (JSON | @FILE | -)`: the replacement for `nats pub`.

use crate::config::{Config, NatsMode};
use crate::domain::SUBJECT_PREFIX;
use crate::input;
use anyhow::{Context, bail};
use std::io::Read;

pub async fn publish(config: &Config, subject: String, event: &str) -> anyhow::Result<()> {
    if !subject.starts_with(SUBJECT_PREFIX) || subject.contains(['*', '>', ' ']) {
        bail!("subject {subject:?} is not under {SUBJECT_PREFIX} (example: notifications.post.like)");
    }
    let body = read_event(event)?;
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

/// The event text as given: inline JSON, `@FILE`, or `-` for standard input. Sent as is,
/// unchecked: the worker decides what is valid (and `publish` is how to try that).
fn read_event(event: &str) -> anyhow::Result<Vec<u8>> {
    if event == "-" {
        let mut body = Vec::new();
        std::io::stdin()
            .read_to_end(&mut body)
            .context("cannot read the event from standard input")?;
        Ok(body)
    } else if let Some(path) = event.strip_prefix('@') {
        std::fs::read(path).with_context(|| format!("cannot read the event from {path}"))
    } else {
        Ok(event.as_bytes().to_vec())
    }
}
