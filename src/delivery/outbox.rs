//! The outbox: the stream `NOTIFICATION_DELIVERIES`, and the store stage's side of it.
//!
//! The store stage announces, before it acknowledges the event:
//! - a `created` job when the store reports that this event created a notification's life
//!   (also when it is redelivered: the store reports the creating event again, the job has
//!   the same message id, and the stream's duplicate window drops the copy);
//! - a `removed` job when the store reports that this remove ended a life (again on
//!   redelivery: its tombstone remembers). Its notification's `created` job, if there is one,
//!   must be in the outbox first: it is published before its event is acknowledged, so the
//!   announcer waits until the events consumer's ack floor has passed the creating event.
//!   That wait is short: only a like and its unlike racing on two replicas meet it.
//!
//! A repeated event (another message, another sequence) is a duplicate for the store, so it
//! announces nothing.

use super::ack_floor::AckFloor;
use super::job::Job;
use crate::domain::{Change, Version};
use crate::store::{Applied, Report};
use crate::telemetry::metrics::Metrics;
use anyhow::Context;
use async_nats::jetstream::{
    self, consumer::PullConsumer, context::PublishErrorKind, message::PublishMessage, stream,
};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const OUTBOX_STREAM: &str = "NOTIFICATION_DELIVERIES";
pub const OUTBOX_FILTER: &str = "deliveries.>";
/// Jobs are kept this long for a channel that is down.
const MAX_AGE: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// A job announced twice within this window is stored once. A crash between storing a
/// notification and acknowledging its event is redelivered well within it (AckWait); one
/// that is not (the event dead-lettered and replayed later, say) can repeat a delivery.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(60 * 60);
/// Pause between tries to publish a job while NATS does not answer.
const PUBLISH_RETRY: Duration = Duration::from_millis(500);

/// Creates the outbox when absent (an existing one is used as it is).
pub async fn ensure_stream(js: &jetstream::Context) -> anyhow::Result<stream::Stream> {
    js.get_or_create_stream(stream::Config {
        name: OUTBOX_STREAM.to_owned(),
        subjects: vec![OUTBOX_FILTER.to_owned()],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        max_age: MAX_AGE,
        duplicate_window: DUPLICATE_WINDOW,
        ..Default::default()
    })
    .await
    .with_context(|| format!("cannot read or create the outbox stream {OUTBOX_STREAM}"))
}

/// The store stage's side of the outbox.
pub struct Announcer {
    js: jetstream::Context,
    /// The events consumer and its stream's epoch: a removal waits for the event that
    /// created its notification to be settled.
    events: AckFloor,
    events_epoch: u64,
    /// The longest a removal waits for that (a crashed replica's events come back after
    /// AckWait): past it, it is announced anyway, with a warning.
    longest_wait: Duration,
    metrics: Arc<Metrics>,
}

/// The announcement could not be made before shutdown: hand the event back.
#[derive(Debug)]
pub struct Interrupted;

impl Announcer {
    pub fn new(
        js: jetstream::Context,
        events: PullConsumer,
        events_epoch: u64,
        ack_wait: Duration,
        metrics: Arc<Metrics>,
    ) -> Announcer {
        Announcer {
            js,
            events: AckFloor::new(events),
            events_epoch,
            longest_wait: ack_wait * 2,
            metrics,
        }
    }

    /// Announces what `report` says `change` (applied at `version`) did, if anything.
    pub async fn announce(
        &self,
        change: &Change,
        version: Version,
        report: &Report,
        shutdown: &CancellationToken,
    ) -> Result<(), Interrupted> {
        let job = match (report.applied, change, &report.ended) {
            (Applied::Created, Change::Create(notification), _) => Job::created(notification, version),
            (Applied::Removed, Change::Remove { owner, action_key }, Some(ended)) => {
                self.wait_for_creation(ended.created, shutdown).await?;
                Job::removed(owner.as_str(), action_key.as_str(), &ended.id, version)
            }
            _ => return Ok(()),
        };
        self.publish(&job, shutdown).await
    }

    /// Publishes `job` and waits for the outbox to store it. NATS trouble is retried until
    /// shutdown; a missing outbox is not (it must never stop storing): the job is counted
    /// as lost and logged.
    async fn publish(&self, job: &Job, shutdown: &CancellationToken) -> Result<(), Interrupted> {
        let mut attempt = 0u32;
        loop {
            let message = PublishMessage::build()
                .payload(job.to_bytes())
                .message_id(job.message_id());
            let sent = async {
                self.js
                    .send_publish(job.subject(), message)
                    .await
                    .map_err(|error| (error.kind(), error.to_string()))?
                    .await
                    .map_err(|error| (error.kind(), error.to_string()))
            };
            let error = match sent.await {
                Ok(_) => {
                    self.metrics.outbox_published(job.kind().as_str());
                    return Ok(());
                }
                Err(error) => error,
            };
            match error {
                (PublishErrorKind::StreamNotFound, message) => {
                    self.metrics.outbox_lost();
                    tracing::error!(stream = OUTBOX_STREAM, error = %message, id = job.id(), kind = job.kind().as_str(),
                        "the outbox is missing: this notification is stored but will not be delivered (run `notification-worker setup`)");
                    return Ok(());
                }
                (_, message) => {
                    attempt += 1;
                    if attempt == 1 || attempt.is_multiple_of(20) {
                        tracing::warn!(error = %message, attempt, id = job.id(), "cannot publish a delivery job; retrying");
                    }
                }
            }
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return Err(Interrupted),
                () = tokio::time::sleep(PUBLISH_RETRY) => {}
            }
        }
    }

    /// Returns once the event at `created` is settled on the events consumer (so its
    /// `created` job, if it had one, is in the outbox), or after `longest_wait`.
    async fn wait_for_creation(
        &self,
        created: Version,
        shutdown: &CancellationToken,
    ) -> Result<(), Interrupted> {
        // Another stream's event (the stream was re-created, or a legacy row) is long settled.
        if created.epoch() != self.events_epoch || created.sequence() == 0 {
            return Ok(());
        }
        let passed = self
            .events
            .wait_past(created.sequence(), self.longest_wait, shutdown)
            .await
            .map_err(|_| Interrupted)?;
        if !passed {
            tracing::warn!(
                created_seq = created.sequence(),
                waited_s = self.longest_wait.as_secs(),
                "the event that created a removed notification is still not settled; announcing the removal anyway"
            );
        }
        Ok(())
    }
}
