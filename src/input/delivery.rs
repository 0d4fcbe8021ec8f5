//! One received message and the way to settle it.

use crate::domain::Version;
use async_nats::jetstream::AckKind;
use bytes::Bytes;
use std::time::Duration;

/// A message as the processing stage sees it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub subject: String,
    pub body: Bytes,
    /// Stream sequence (JetStream only), for logs.
    pub stream_sequence: Option<u64>,
    /// How many times the server has delivered it (1 the first time; JetStream only).
    pub delivered: u64,
    /// Where the event stands in the order of all events: the stream's creation time and
    /// the stream sequence, or the original's when `dlq replay` republished it.
    pub version: Version,
    /// When the stream stored it (JetStream only): the delivery stage measures from it.
    pub published: Option<time::OffsetDateTime>,
    /// Messages still waiting for the consumer when the server sent this one (JetStream
    /// only): the backlog, counted by the server as it delivers, at no extra cost.
    pub pending: Option<u64>,
    /// `None` in core mode: there is nothing to acknowledge.
    acker: Option<Acker>,
}

/// What acknowledging needs: the reply subject and the connection. Kept instead of the
/// client's message, whose payload shares the connection's read buffer: holding thousands
/// of those in flight held whole buffers alive (the benchmark's peak RSS showed it).
#[derive(Debug, Clone)]
struct Acker {
    client: async_nats::Client,
    reply: async_nats::Subject,
}

impl Delivery {
    /// `stream_created_micros`: the stream's creation time, which qualifies its sequences.
    pub(super) fn from_jetstream(
        message: async_nats::jetstream::Message,
        stream_created_micros: u64,
    ) -> Delivery {
        let (stream_sequence, delivered, published, pending) = match message.info() {
            Ok(info) => (
                Some(info.stream_sequence),
                u64::try_from(info.delivered).unwrap_or(1),
                Some(info.published),
                Some(info.pending),
            ),
            Err(_) => (None, 1, None, None),
        };
        let own =
            Version::new(stream_created_micros, stream_sequence.unwrap_or(0)).unwrap_or(Version::LEGACY);
        let version = original_version(message.headers.as_ref())
            // Only ever older: a header cannot make an event win over later ones.
            .filter(|original| *original < own)
            .unwrap_or(own);
        let acker = message.reply.clone().map(|reply| Acker {
            client: message.context.client(),
            reply,
        });
        Delivery {
            subject: message.subject.to_string(),
            body: Bytes::copy_from_slice(&message.payload),
            stream_sequence,
            delivered,
            version,
            published,
            pending,
            acker,
        }
    }

    pub(super) fn from_core(message: async_nats::Message) -> Delivery {
        Delivery {
            subject: message.subject.to_string(),
            body: Bytes::copy_from_slice(&message.payload),
            stream_sequence: None,
            delivered: 1,
            version: Version::received_now(),
            published: None,
            pending: None,
            acker: None,
        }
    }

    /// Test and tool support: a delivery with nothing to acknowledge.
    pub fn detached(subject: &str, body: Bytes, stream_sequence: u64, version: Version) -> Delivery {
        Delivery {
            subject: subject.to_owned(),
            body,
            stream_sequence: Some(stream_sequence),
            delivered: 1,
            version,
            published: None,
            pending: None,
            acker: None,
        }
    }

    /// Done: the outcome is durable (or the event was deliberately skipped).
    pub async fn ack(&self) {
        self.settle(AckKind::Ack).await;
    }

    /// Still working on it: restarts the server's AckWait clock.
    pub async fn keep_alive(&self) {
        self.settle(AckKind::Progress).await;
    }

    /// Not now: the server redelivers it after `delay`.
    pub async fn hand_back(&self, delay: Duration) {
        self.settle(AckKind::Nak(Some(delay))).await;
    }

    async fn settle(&self, kind: AckKind) {
        let Some(acker) = &self.acker else { return };
        // A lost ack only means a redelivery, which the store absorbs (creates are
        // conditional, removes idempotent): log it and move on.
        if let Err(error) = acker.client.publish(acker.reply.clone(), kind.into()).await {
            tracing::warn!(subject = %self.subject, stream_seq = ?self.stream_sequence, %error, "could not send ack to NATS");
        }
    }
}

/// The version a replayed dead letter carries (see `dlq replay`).
fn original_version(headers: Option<&async_nats::HeaderMap>) -> Option<Version> {
    let value = headers?.get(super::dlq_header::ORIGINAL_VERSION)?;
    Version::parse(value.as_str())
}
