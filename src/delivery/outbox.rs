//! The outbox: the stream `NOTIFICATION_DELIVERIES`, and the store stage's side of it.
//!
//! The store stage announces, before it acknowledges the event:
//! - a `created` job when the store reports that this event created a notification's life
//!   (also when it is redelivered: the store reports the creating event again, the job has
//!   the same message id, and the stream's duplicate window drops the copy);
//! - a `removed` job when the store reports that this remove ended a life (again on
//!   redelivery: its tombstone remembers). A client must never get the removal before the
//!   notification, yet the replica that stored the like may still be about to announce it
//!   when another replica applies the unlike. So before the removal, the announcer claims
//!   the notification's `created` message id with an empty probe (subject
//!   `deliveries.probe`, which every channel skips): if the `created` job is already in the
//!   outbox, the stream answers "duplicate" with its sequence, and the removal carries it
//!   (channels send the removal only once that job is settled); if it is not, the probe now
//!   holds the id and the late `created` job is dropped as a duplicate: a notification
//!   removed before it was announced is never announced. No waiting, one extra publish per
//!   removal.
//!
//! A repeated event (another message, another sequence) is a duplicate for the store, so it
//! announces nothing.

use super::job::{Announcement, Job, JobKind};
use crate::domain::{Change, Timestamp, Version};
use crate::store::{Applied, Report, Shown};
use crate::telemetry::metrics::Metrics;
use anyhow::Context;
use async_nats::jetstream::{
    self, context::PublishErrorKind, message::PublishMessage, publish::PublishAck, stream,
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
/// The subject of the probes that claim a `created` message id (see above).
pub const PROBE_SUBJECT: &str = "deliveries.probe";
/// How long after an aggregate started its update re-claims its `created` job (see
/// [`Announcer::claim_aggregate_created`]): well within [`DUPLICATE_WINDOW`], and far longer
/// than any replica takes to announce what it stored.
const CLAIM_WITHIN: Duration = Duration::from_secs(30 * 60);
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
    metrics: Arc<Metrics>,
}

/// The announcement could not be made before shutdown: hand the event back.
#[derive(Debug)]
pub struct Interrupted;

impl Announcer {
    pub fn new(js: jetstream::Context, metrics: Arc<Metrics>) -> Announcer {
        metrics.enable_outbox();
        Announcer { js, metrics }
    }

    /// Announces what `report` says `change` (applied at `version`) did, if anything.
    pub async fn announce(
        &self,
        change: &Change,
        version: Version,
        report: &Report,
        shutdown: &CancellationToken,
    ) -> Result<(), Interrupted> {
        let (kind, message_id, body) = match (report.applied, change, &report.ended) {
            (Applied::Created, Change::Create(notification), _) => {
                // Written straight from the notification: this runs for every new one.
                let Announcement { message_id, body } = Announcement::created(notification, version);
                (JobKind::Created, message_id, body)
            }
            (Applied::Removed, Change::Remove { owner, action_key }, Some(ended)) => {
                let created_job = self.claim_created(&ended.id, shutdown).await?;
                let job = Job::removed(
                    owner.as_str(),
                    action_key.as_str(),
                    &ended.id,
                    version,
                    created_job,
                );
                (job.kind(), job.message_id(), job.to_bytes())
            }
            // An aggregate: `created` for its first actor, `updated` for every rewrite after
            // (no second banner), `removed` when its last actor left.
            (Applied::Created, Change::Join(_), _) => {
                let Some(shown) = &report.aggregate else {
                    return Ok(());
                };
                let job = Job::created_item(shown.item.clone(), shown.version);
                (job.kind(), job.message_id(), job.to_bytes())
            }
            (Applied::Aggregated, Change::Join(_) | Change::Leave { .. }, _) => {
                let Some(shown) = &report.aggregate else {
                    return Ok(());
                };
                let created_job = self.claim_aggregate_created(shown, shutdown).await?;
                let job = Job::updated(shown.item.clone(), shown.version, created_job);
                (job.kind(), job.message_id(), job.to_bytes())
            }
            (Applied::Removed, Change::Leave { .. }, Some(ended)) => {
                let Some(shown) = &report.aggregate else {
                    return Ok(());
                };
                let created_job = self.claim_created(&ended.id, shutdown).await?;
                let job = Job::removed(
                    &shown.item.owner,
                    &shown.item.action_key,
                    &ended.id,
                    version,
                    created_job,
                );
                (job.kind(), job.message_id(), job.to_bytes())
            }
            _ => return Ok(()),
        };
        let stored = self.publish(kind.subject(), &message_id, body, shutdown).await?;
        if stored.is_some() {
            self.metrics.outbox_published(kind.as_str());
        }
        Ok(())
    }

    /// An aggregate's update must never reach a client before its `created` job, which the
    /// replica that started the aggregate may still be about to announce. While that job can
    /// still be in the outbox's duplicate window (the aggregate started less than
    /// [`CLAIM_WITHIN`] ago), publish it again, as it now stands: when it is there already
    /// the outbox drops this copy and answers with its sequence; when it is not, this one is
    /// the banner (the late one is dropped). The update then carries that sequence, and
    /// channels send it once that job is settled. An older aggregate's banner went out long
    /// ago: publishing it again would show a second one.
    async fn claim_aggregate_created(
        &self,
        shown: &Shown,
        shutdown: &CancellationToken,
    ) -> Result<Option<u64>, Interrupted> {
        let recent = shown.started_at.is_some_and(|started| {
            Timestamp::now().unix().saturating_sub(started) < CLAIM_WITHIN.as_secs() as i64
        });
        if !recent {
            return Ok(None);
        }
        let created = Job::created_item(shown.item.clone(), shown.version);
        let ack = self
            .publish(
                JobKind::Created.subject(),
                &created.message_id(),
                created.to_bytes(),
                shutdown,
            )
            .await?;
        if ack.as_ref().is_some_and(|ack| !ack.duplicate) {
            self.metrics.outbox_published(JobKind::Created.as_str());
        }
        Ok(ack.map(|ack| ack.sequence))
    }

    /// Publishes the probe for notification `id`'s `created` job: the job's outbox
    /// sequence when it is there, `None` when the probe took its id.
    async fn claim_created(
        &self,
        id: &str,
        shutdown: &CancellationToken,
    ) -> Result<Option<u64>, Interrupted> {
        let ack = self
            .publish(PROBE_SUBJECT, id, bytes::Bytes::new(), shutdown)
            .await?;
        Ok(ack.and_then(|ack| ack.duplicate.then_some(ack.sequence)))
    }

    /// Publishes one message to the outbox and waits for the stream's answer (`None`: the
    /// outbox is missing). NATS trouble is retried until shutdown; a missing outbox is not
    /// (it must never stop storing): the job is counted as lost and logged.
    async fn publish(
        &self,
        subject: &'static str,
        message_id: &str,
        body: bytes::Bytes,
        shutdown: &CancellationToken,
    ) -> Result<Option<PublishAck>, Interrupted> {
        let mut attempt = 0u32;
        loop {
            let message = PublishMessage::build()
                .payload(body.clone())
                .message_id(message_id);
            let sent = async {
                self.js
                    .send_publish(subject, message)
                    .await
                    .map_err(|error| (error.kind(), error.to_string()))?
                    .await
                    .map_err(|error| (error.kind(), error.to_string()))
            };
            let error = match sent.await {
                Ok(ack) => return Ok(Some(ack)),
                Err(error) => error,
            };
            match error {
                (PublishErrorKind::StreamNotFound, error) => {
                    self.metrics.outbox_lost();
                    tracing::error!(stream = OUTBOX_STREAM, %error, message_id, subject,
                        "the outbox is missing: this notification is stored but will not be delivered (run `notification-worker setup`)");
                    return Ok(None);
                }
                (_, error) => {
                    attempt += 1;
                    if attempt == 1 || attempt.is_multiple_of(20) {
                        tracing::warn!(%error, attempt, message_id, "cannot publish a delivery job; retrying");
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
}
