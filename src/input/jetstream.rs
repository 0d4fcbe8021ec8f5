//! The stream and the durable consumer: created when absent, used unchanged when present
//! (except the AckWait `setup` shortens).

use crate::domain::SUBJECT_FILTER;
use anyhow::Context;
use async_nats::jetstream::{self, consumer, stream};
use std::time::Duration;

/// Created streams keep events this long (SPEC.md).
const STREAM_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// The store stage's consumers (events, recipients) give a worker this long per delivery
/// before redelivering: what a crashed worker held waits this long for another replica,
/// which then stores it in well under a second (BENCHMARKS.md, "Recovery after a crash"),
/// so the events are back within 10 s. A worker that is alive but slow keeps what it holds
/// with an in-progress ack every AckWait/3 (`processing::keep_alive`).
pub const ACK_WAIT: Duration = Duration::from_secs(5);
/// The delivery stage's consumers (the outbox): a removal waits up to twice this for its
/// notification's job on another replica, which may be sending for up to 30 s.
pub const DELIVERY_ACK_WAIT: Duration = Duration::from_secs(30);
/// Created consumers let this many messages be unacknowledged at once (all replicas).
const MAX_ACK_PENDING: i64 = 20_000;

/// A message delivered this many times is dead-lettered (`max_deliveries`) by the worker.
const MAX_DELIVERIES: u64 = 10;

/// An existing consumer the worker must not use as it is. A configuration error (exit
/// code 2): an operator must change the consumer.
#[derive(Debug, thiserror::Error)]
#[error(
    "consumer {consumer} on stream {stream} has max_deliver={max_deliver}; the worker needs it unlimited \
     (past it the server drops a message silently, and every hand-back during a store outage or a \
     failed dead letter counts as a delivery): run `nats consumer edit {stream} {consumer} --max-deliver=-1`, \
     or delete the consumer and let the worker create it"
)]
pub struct ConsumerRefused {
    pub stream: String,
    pub consumer: String,
    pub max_deliver: i64,
}

/// What the worker must respect of the consumer, read from the server.
#[derive(Debug, Clone, Copy)]
pub struct ConsumerLimits {
    /// The worker keeps slow messages alive well within it.
    pub ack_wait: Duration,
    /// The delivery at which the worker dead-letters a message instead of trying it again.
    pub max_deliveries: u64,
}

/// The recipient directory's stream (issue 10): `recipients.>`, created by `setup` (and by
/// `run` in development only).
pub const RECIPIENTS_STREAM: &str = "RECIPIENTS";
/// The store stage's durable consumer on [`RECIPIENTS_STREAM`].
pub const RECIPIENTS_CONSUMER: &str = "notification-worker-recipients";

pub async fn ensure_stream(js: &jetstream::Context, name: &str) -> anyhow::Result<stream::Stream> {
    ensure_stream_of(js, name, SUBJECT_FILTER).await
}

/// Stream [`RECIPIENTS_STREAM`], created like the notifications' stream when absent.
pub async fn ensure_recipients_stream(js: &jetstream::Context) -> anyhow::Result<stream::Stream> {
    ensure_stream_of(
        js,
        RECIPIENTS_STREAM,
        crate::recipients::RECIPIENTS_SUBJECT_FILTER,
    )
    .await
}

/// Stream `name` as it is, or `None` when the server has no such stream (a deployment that
/// never ran the `setup` that creates it).
pub async fn existing_stream(js: &jetstream::Context, name: &str) -> anyhow::Result<Option<stream::Stream>> {
    match js.get_stream(name).await {
        Ok(stream) => Ok(Some(stream)),
        // The server answered "stream not found": the only answer that means absent.
        Err(error)
            if matches!(
                error.kind(),
                jetstream::context::GetStreamErrorKind::JetStream(ref answer)
                    if answer.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
            ) =>
        {
            Ok(None)
        }
        Err(error) => Err(anyhow::Error::new(error).context(format!("cannot read JetStream stream {name}"))),
    }
}

async fn ensure_stream_of(
    js: &jetstream::Context,
    name: &str,
    filter: &str,
) -> anyhow::Result<stream::Stream> {
    // get_or_create leaves an existing stream exactly as it is.
    js.get_or_create_stream(stream::Config {
        name: name.to_owned(),
        subjects: vec![filter.to_owned()],
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
) -> anyhow::Result<(consumer::PullConsumer, ConsumerLimits)> {
    ensure_consumer_on(stream, name, SUBJECT_FILTER, ACK_WAIT).await
}

/// [`ensure_consumer`] for subjects `filter`, created with `ack_wait` (the delivery stage's
/// consumers read the outbox with [`DELIVERY_ACK_WAIT`]).
pub async fn ensure_consumer_on(
    stream: &stream::Stream,
    name: &str,
    filter: &str,
    ack_wait: Duration,
) -> anyhow::Result<(consumer::PullConsumer, ConsumerLimits)> {
    let mut consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(
            name,
            consumer::pull::Config {
                durable_name: Some(name.to_owned()),
                filter_subject: filter.to_owned(),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait,
                max_ack_pending: MAX_ACK_PENDING,
                // No server-side limit: past it the server would drop a message silently. The
                // worker dead-letters at MAX_DELIVERIES instead, and if the dead letter
                // cannot be stored the message simply comes back.
                max_deliver: -1,
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("cannot create or read the durable consumer {name}"))?;
    let config = &consumer
        .info()
        .await
        .with_context(|| format!("cannot read consumer {name}"))?
        .config;
    // 0 and -1 both mean unlimited.
    if config.max_deliver > 0 {
        return Err(ConsumerRefused {
            stream: stream.cached_info().config.name.clone(),
            consumer: name.to_owned(),
            max_deliver: config.max_deliver,
        }
        .into());
    }
    let limits = ConsumerLimits {
        ack_wait: config.ack_wait,
        max_deliveries: MAX_DELIVERIES,
    };
    Ok((consumer, limits))
}

/// Sets consumer `name`'s AckWait to [`ACK_WAIT`] when it is longer, and returns the one it
/// had. nats-server 2.9 edits AckWait in place: the consumer keeps its position and the
/// messages it has out.
pub async fn shorten_ack_wait(stream: &stream::Stream, name: &str) -> anyhow::Result<Option<Duration>> {
    let config = stream
        .consumer_info(name)
        .await
        .with_context(|| format!("cannot read consumer {name}"))?
        .config
        .clone();
    if config.ack_wait <= ACK_WAIT {
        return Ok(None);
    }
    let before = config.ack_wait;
    stream
        .create_consumer(consumer::Config {
            ack_wait: ACK_WAIT,
            ..config
        })
        .await
        .with_context(|| format!("cannot change the AckWait of consumer {name}"))?;
    Ok(Some(before))
}

/// Warns when consumer `name`'s AckWait is longer than [`ACK_WAIT`]: the worker runs with
/// it, but a crashed replica's events wait that long for the others.
pub fn warn_if_slow_to_recover(name: &str, limits: &ConsumerLimits) {
    if limits.ack_wait > ACK_WAIT {
        tracing::warn!(
            consumer = name,
            ack_wait_seconds = limits.ack_wait.as_secs_f64(),
            recommended_seconds = ACK_WAIT.as_secs_f64(),
            "the consumer's AckWait is longer than recommended: events a crashed replica held wait \
             that long before another gets them; run `notification-worker setup` to shorten it"
        );
    }
}

/// Publishes one event and waits for the stream to store it; returns its stream sequence.
pub async fn publish(js: &jetstream::Context, subject: String, body: bytes::Bytes) -> anyhow::Result<u64> {
    publish_with_headers(js, subject, async_nats::HeaderMap::new(), body).await
}

/// [`publish`] with headers (`dlq replay` sends the original's version).
pub async fn publish_with_headers(
    js: &jetstream::Context,
    subject: String,
    headers: async_nats::HeaderMap,
    body: bytes::Bytes,
) -> anyhow::Result<u64> {
    let ack = js
        .publish_with_headers(subject.clone(), headers, body)
        .await
        .with_context(|| format!("cannot publish to {subject}"))?
        .await
        .with_context(|| format!("no stream stored {subject} (run `notification-worker setup` first)"))?;
    Ok(ack.sequence)
}
