//! The stream and the durable consumer: created when absent, used unchanged when present.

use crate::domain::SUBJECT_FILTER;
use anyhow::Context;
use async_nats::jetstream::{self, consumer, stream};
use std::time::Duration;

/// Created streams keep events this long (SPEC.md).
const STREAM_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// Created consumers give the worker this long per delivery before redelivering.
const ACK_WAIT: Duration = Duration::from_secs(30);
/// Created consumers let this many messages be unacknowledged at once (all replicas).
const MAX_ACK_PENDING: i64 = 20_000;

/// The consumer's AckWait, read from the server: the worker keeps slow messages alive well
/// within it.
#[derive(Debug, Clone, Copy)]
pub struct AckWait(pub Duration);

pub async fn ensure_stream(js: &jetstream::Context, name: &str) -> anyhow::Result<stream::Stream> {
    // get_or_create leaves an existing stream exactly as it is.
    js.get_or_create_stream(stream::Config {
        name: name.to_owned(),
        subjects: vec![SUBJECT_FILTER.to_owned()],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        max_age: STREAM_MAX_AGE,
        ..Default::default()
    })
    .await
    .with_context(|| {
        format!("cannot read or create JetStream stream {name} (is JetStream enabled on the server? NATS_MODE=core works without it)")
    })
}

pub async fn ensure_consumer(
    stream: &stream::Stream,
    name: &str,
) -> anyhow::Result<(consumer::PullConsumer, AckWait)> {
    let mut consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(
            name,
            consumer::pull::Config {
                durable_name: Some(name.to_owned()),
                filter_subject: SUBJECT_FILTER.to_owned(),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                max_ack_pending: MAX_ACK_PENDING,
                // No limit yet: a message past max deliveries would be dropped by the server,
                // and nothing may be lost.
                max_deliver: -1,
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("cannot create or read the durable consumer {name}"))?;
    let ack_wait = consumer
        .info()
        .await
        .with_context(|| format!("cannot read consumer {name}"))?
        .config
        .ack_wait;
    Ok((consumer, AckWait(ack_wait)))
}

/// Publishes one event and waits for the stream to store it; returns its stream sequence.
pub async fn publish(js: &jetstream::Context, subject: String, body: bytes::Bytes) -> anyhow::Result<u64> {
    let ack = js
        .publish(subject.clone(), body)
        .await
        .with_context(|| format!("cannot publish to {subject}"))?
        .await
        .with_context(|| format!("no stream stored {subject} (run `notification-worker setup` first)"))?;
    Ok(ack.sequence)
}
