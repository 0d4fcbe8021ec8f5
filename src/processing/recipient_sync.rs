//! Keeps the recipient directory in sync with stream `RECIPIENTS` (issue 10): each event is
//! parsed, merged into its owner's record, and acknowledged once the write is durable.
//!
//! A room of its own beside the notification worker, not branches in its loop: recipient
//! events need no per-key lanes, since [`RecipientStore::apply`] is order-independent and
//! safe across replicas, so any number of one owner's events may be applied at once (here
//! and in other replicas) and the record ends as one sequential order would leave it.

use super::retry::{RetryDecision, decide};
use crate::domain::{Reason, Rejection};
use crate::input::{DeadLetters, Delivery, Intake, Source, Taker};
use crate::recipients::{
    Applied, PUSH_ADD, PUSH_REMOVE, REMOVE, RecipientPolicy, UPSERT, parse_recipient_event,
};
use crate::store::RecipientStore;
use crate::telemetry::metrics::Metrics;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Recipient events applied at once by one process. Directory changes are rare next to
/// notifications; this keeps a burst (a bulk import) from taking all the store's capacity.
pub const RECIPIENT_IN_FLIGHT: usize = 32;

/// A store failure hands the event back after this when shutdown interrupts its retries.
const HAND_BACK_DELAY: Duration = Duration::from_secs(1);

/// How the sync runs.
#[derive(Debug, Clone, Copy)]
pub struct RecipientSyncSettings {
    /// Events applied at once.
    pub in_flight: usize,
    /// The consumer's AckWait: retry pauses stay well within it (with a keep-alive each).
    pub ack_wait: Duration,
    /// The delivery at which an event is dead-lettered instead of tried again.
    pub max_deliveries: u64,
    /// `http://` Web Push endpoints accepted (development only).
    pub allow_http_endpoints: bool,
    /// How long shutdown waits for events in flight.
    pub shutdown_grace: Duration,
}

/// What happened to one recipient event, as counted in
/// `notification_worker_recipient_events_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecipientOutcome {
    Applied,
    Unchanged,
    Invalid,
    DeadLettered,
    /// Not settled (shutdown, or the dead letter could not be stored): comes back later.
    HandedBack,
}

impl RecipientOutcome {
    /// The metric label; `None` for an event that will be counted when it comes back.
    pub fn label(self) -> Option<&'static str> {
        match self {
            RecipientOutcome::Applied => Some("applied"),
            RecipientOutcome::Unchanged => Some("unchanged"),
            RecipientOutcome::Invalid => Some("invalid"),
            RecipientOutcome::DeadLettered => Some("dead_lettered"),
            RecipientOutcome::HandedBack => None,
        }
    }
}

/// The sync's side of its intake: each event settled on its own task.
struct SyncTaker<'a, S> {
    sync: &'a Arc<Sync<S>>,
    tasks: &'a TaskTracker,
}

impl<S: RecipientStore> Taker for SyncTaker<'_, S> {
    async fn take(&mut self, delivery: Delivery, permit: OwnedSemaphorePermit) {
        let sync = Arc::clone(self.sync);
        self.tasks.spawn(async move {
            let event_type = recipient_event_type(&delivery.subject);
            let outcome = settle(&sync, &delivery).await;
            if let Some(outcome) = outcome.label() {
                sync.metrics.recipient_event(event_type, outcome);
            }
            drop(permit);
        });
    }
}

/// The `event_type` label of a recipients subject: the four events, or `other`.
pub fn recipient_event_type(subject: &str) -> &'static str {
    match subject {
        UPSERT => "upsert",
        PUSH_ADD => "push.add",
        PUSH_REMOVE => "push.remove",
        REMOVE => "remove",
        _ => "other",
    }
}

struct Sync<S> {
    store: Arc<S>,
    dead_letters: DeadLetters,
    metrics: Arc<Metrics>,
    settings: RecipientSyncSettings,
    shutdown: CancellationToken,
}

/// Consumes `source` (the `RECIPIENTS` consumer) until `shutdown`, then waits up to the
/// grace period for the events in flight.
pub async fn run_recipient_sync<S: RecipientStore>(
    mut source: Source,
    store: Arc<S>,
    dead_letters: DeadLetters,
    metrics: Arc<Metrics>,
    settings: RecipientSyncSettings,
    shutdown: CancellationToken,
) {
    let sync = Arc::new(Sync {
        store,
        dead_letters,
        metrics,
        settings,
        shutdown: shutdown.clone(),
    });
    let room = Arc::new(Semaphore::new(settings.in_flight.max(1)));
    let tasks = TaskTracker::new();
    let intake = Intake {
        room,
        sizeable: 1,
        what: "RECIPIENTS",
    };
    let mut taker = SyncTaker {
        sync: &sync,
        tasks: &tasks,
    };
    intake.run(&mut source, &shutdown, &mut taker).await;
    tasks.close();
    if tokio::time::timeout(settings.shutdown_grace, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over; unfinished recipient events will be redelivered");
    }
}

/// Applies one event and settles its message: acknowledged once the record is written (or
/// found unchanged), dead-lettered when it can never be applied, handed back otherwise.
async fn settle<S: RecipientStore>(sync: &Sync<S>, delivery: &Delivery) -> RecipientOutcome {
    if delivery.delivered >= sync.settings.max_deliveries {
        let rejection = Rejection::new(
            Reason::MaxDeliveries,
            format!(
                "delivered {} times (limit {})",
                delivery.delivered, sync.settings.max_deliveries
            ),
        );
        return dead_letter(sync, delivery, rejection, RecipientOutcome::DeadLettered).await;
    }
    let policy = RecipientPolicy {
        allow_http_endpoints: sync.settings.allow_http_endpoints,
    };
    let event = match parse_recipient_event(&delivery.subject, &delivery.body, &policy) {
        Ok(event) => event,
        Err(rejection) => return dead_letter(sync, delivery, rejection, RecipientOutcome::Invalid).await,
    };
    // Unlike the notifications' lanes (whose keep-alives come from a registry), this loop
    // keeps its delivery alive itself after each pause: the pause must stay under AckWait.
    let longest_pause = sync.settings.ack_wait / 3;
    let mut attempt = 0u32;
    loop {
        let error = match sync
            .store
            .apply(&event.owner, &event.change, delivery.version)
            .await
        {
            Ok(applied) => {
                delivery.ack().await;
                tracing::debug!(subject = %delivery.subject, stream_seq = delivery.stream_sequence, owner = %event.owner, "recipient event applied");
                return match applied {
                    Applied::Changed => RecipientOutcome::Applied,
                    Applied::Unchanged => RecipientOutcome::Unchanged,
                };
            }
            Err(error) => error,
        };
        sync.metrics.store_error(error.kind);
        attempt += 1;
        // The same rule as the notifications: only a store that refuses this one change
        // dead-letters it; transient and systemic trouble is retried however long it lasts.
        let pause = match decide(&error, attempt) {
            RetryDecision::DeadLetter => {
                let rejection = Rejection::new(Reason::StoreRejected, error.message);
                return dead_letter(sync, delivery, rejection, RecipientOutcome::DeadLettered).await;
            }
            RetryDecision::RetryAfter(pause) => pause,
        };
        tracing::warn!(%error, attempt, subject = %delivery.subject, stream_seq = delivery.stream_sequence, "cannot apply a recipient event; retrying");
        tokio::select! {
            biased;
            () = sync.shutdown.cancelled() => {
                delivery.hand_back(HAND_BACK_DELAY).await;
                return RecipientOutcome::HandedBack;
            }
            () = tokio::time::sleep(pause.min(longest_pause)) => {}
        }
        // Still working on it: the server must not give it to another replica meanwhile.
        delivery.keep_alive().await;
    }
}

/// Dead-letters `delivery` in `RECIPIENTS_DLQ`, then acknowledges it; when the dead letter
/// cannot be stored, the original is handed back (neither lost nor acknowledged).
async fn dead_letter<S>(
    sync: &Sync<S>,
    delivery: &Delivery,
    rejection: Rejection,
    outcome: RecipientOutcome,
) -> RecipientOutcome {
    match sync
        .dead_letters
        .keep(delivery, rejection.reason, &rejection.message)
        .await
    {
        Ok(()) => {
            sync.metrics.dead_lettered(rejection.reason);
            tracing::warn!(reason = rejection.reason.code(), error = %rejection.message, subject = %delivery.subject, stream_seq = delivery.stream_sequence, "recipient event dead-lettered");
            outcome
        }
        Err(error) => {
            sync.metrics.dead_letter_failed();
            tracing::warn!(%error, reason = rejection.reason.code(), subject = %delivery.subject, stream_seq = delivery.stream_sequence, "cannot dead-letter a recipient event; it will come back");
            RecipientOutcome::HandedBack
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_are_the_four_subjects_or_other() {
        assert_eq!(recipient_event_type("recipients.upsert"), "upsert");
        assert_eq!(recipient_event_type("recipients.push.add"), "push.add");
        assert_eq!(recipient_event_type("recipients.push.remove"), "push.remove");
        assert_eq!(recipient_event_type("recipients.remove"), "remove");
        assert_eq!(recipient_event_type("recipients.bogus"), "other");
    }

    #[test]
    fn a_handed_back_event_is_not_counted_yet() {
        assert_eq!(RecipientOutcome::HandedBack.label(), None);
        assert_eq!(RecipientOutcome::Unchanged.label(), Some("unchanged"));
    }
}
