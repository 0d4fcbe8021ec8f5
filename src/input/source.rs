//! Pulling deliveries, never more than the worker can finish within AckWait.

use super::Delivery;
use crate::domain::Version;
use async_nats::jetstream::consumer::PullConsumer;
use futures::stream::{BoxStream, StreamExt};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long one pull request waits for messages on an idle stream. Also the longest a
/// shutdown waits for the last pull to end.
const PULL_EXPIRES: Duration = Duration::from_secs(2);

/// The queue group core-mode replicas share.
pub const QUEUE_GROUP: &str = "notification-worker";

pub enum Source {
    JetStream {
        consumer: Box<PullConsumer>,
        /// The stream's creation time (µs): it qualifies every sequence (see [`Version`]).
        stream_created_micros: u64,
    },
    Core(async_nats::Subscriber),
}

impl Source {
    /// Reads from `consumer` of a stream created at `stream_created`.
    pub fn jetstream(consumer: PullConsumer, stream_created: time::OffsetDateTime) -> anyhow::Result<Source> {
        let micros = u64::try_from(stream_created.unix_timestamp_nanos() / 1000).unwrap_or(0);
        if Version::new(micros, 0).is_none() {
            anyhow::bail!("the stream's creation time {stream_created} is out of range");
        }
        Ok(Source::JetStream {
            consumer: Box::new(consumer),
            stream_created_micros: micros,
        })
    }

    pub async fn core(client: &async_nats::Client) -> anyhow::Result<Source> {
        let subscriber = client
            .queue_subscribe(crate::domain::SUBJECT_FILTER, QUEUE_GROUP.to_owned())
            .await
            .map_err(|error| {
                anyhow::anyhow!("cannot subscribe to {}: {error}", crate::domain::SUBJECT_FILTER)
            })?;
        // The subscription exists only once the server has it: without the flush, events
        // published right after "worker started" could reach a server that does not yet
        // know of any subscriber, and core NATS would drop them.
        client
            .flush()
            .await
            .map_err(|error| anyhow::anyhow!("cannot reach NATS after subscribing: {error}"))?;
        Ok(Source::Core(subscriber))
    }

    /// Up to `max` deliveries. A JetStream pull asks the server for exactly `max`, so no
    /// message waits in a client buffer, ageing against AckWait, before the worker has room
    /// for it. The stream ends when the pull is complete or expires; errors are items, so
    /// the caller logs them and pulls again.
    ///
    /// On `shutdown` a core subscription stops at once (its messages are at-most-once
    /// anyway); a JetStream pull runs to its end, since the server may already be sending
    /// its messages, and what it delivers is processed rather than left to time out (the
    /// caller stops reading once the pull goes quiet).
    pub async fn pull(
        &mut self,
        max: usize,
        shutdown: &CancellationToken,
    ) -> Result<BoxStream<'_, Result<Delivery, String>>, String> {
        match self {
            Source::JetStream {
                consumer,
                stream_created_micros,
            } => {
                let epoch = *stream_created_micros;
                let batch = consumer
                    .batch()
                    .max_messages(max)
                    .expires(PULL_EXPIRES)
                    .messages()
                    .await
                    .map_err(|error| format!("pull request failed: {error}"))?;
                Ok(batch
                    .map(move |item| {
                        item.map(|message| Delivery::from_jetstream(message, epoch))
                            .map_err(|error| error.to_string())
                    })
                    .boxed())
            }
            Source::Core(subscriber) => Ok(subscriber
                .by_ref()
                .take(max)
                .take_until(shutdown.clone().cancelled_owned())
                .map(|message| Ok(Delivery::from_core(message)))
                .boxed()),
        }
    }
}
