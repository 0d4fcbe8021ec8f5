//! The consume loop: pull as many deliveries as there is room for, route each through
//! validation and its key's lane, and settle each message only once its outcome is durable:
//! applied in the store, or kept as a dead letter.

use super::health::StoreHealth;
use super::ordering::{OrderKey, Sequencer};
use super::outcome::{self, Outcome};
use super::retry::{RetryDecision, decide};
use crate::domain::{
    Change, Decision, EventPolicy, Reason, Rejection, Timestamp, event_type_label, parse_event,
};
use crate::input::{DeadLetters, Delivery, Source};
use crate::store::{Applied, ErrorKind, NotificationStore};
use crate::telemetry::metrics::Metrics;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Most messages asked for in one pull request.
const MAX_PULL: usize = 1024;
/// At shutdown, how long the last pull may stay silent before the worker stops reading it.
const QUIET_PULL_AT_SHUTDOWN: Duration = Duration::from_millis(250);
/// Longest wait for more room before a pull under load (see the pull loop).
const TOP_UP_WAIT: Duration = Duration::from_millis(2);
/// When a dead letter cannot be stored (NATS trouble), the original comes back after this.
const DEAD_LETTER_RETRY: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Deliveries received and not yet settled, at most.
    pub in_flight: usize,
    /// Store calls at once, at most (`WORKER_CONCURRENCY` for DynamoDB).
    pub store_calls: usize,
    /// The consumer's AckWait: slow messages are kept alive well within it.
    pub ack_wait: Duration,
    /// A message delivered this many times is dead-lettered (`max_deliveries`) instead of
    /// being tried again. `None` in core mode.
    pub max_deliveries: Option<u64>,
    /// `http://` pictures allowed (development).
    pub allow_http_pictures: bool,
    /// How long shutdown waits for in-flight events before giving up on them.
    pub shutdown_grace: Duration,
}

/// What the worker reports to, and what it is told about the store's health.
#[derive(Clone, Default)]
pub struct Observers {
    pub metrics: Arc<Metrics>,
    pub health: Arc<StoreHealth>,
}

/// One valid event waiting for, or running in, its key's lane.
struct Job {
    delivery: Delivery,
    change: Change,
    event_type: &'static str,
    received: Instant,
    /// Returned when the job is settled: room for one more delivery.
    _permit: OwnedSemaphorePermit,
}

struct Shared<S> {
    store: Arc<S>,
    /// Held only around a store call, never during a retry's pause.
    store_calls: Semaphore,
    metrics: Arc<Metrics>,
    dead_letters: Option<DeadLetters>,
    health: Arc<StoreHealth>,
    sequencer: Sequencer<Job>,
    settings: WorkerSettings,
    shutdown: CancellationToken,
}

/// Runs until `shutdown` is cancelled, then stops pulling, lets in-flight events finish
/// (within `shutdown_grace`) and returns. `dead_letters` is `None` in core mode, where
/// rejected events are only logged.
pub async fn run<S: NotificationStore>(
    mut source: Source,
    store: Arc<S>,
    dead_letters: Option<DeadLetters>,
    observers: Observers,
    settings: WorkerSettings,
    shutdown: CancellationToken,
) {
    let room = Arc::new(Semaphore::new(settings.in_flight));
    let grace = settings.shutdown_grace;
    let shared = Arc::new(Shared {
        store,
        store_calls: Semaphore::new(settings.store_calls),
        metrics: observers.metrics,
        dead_letters,
        health: observers.health,
        sequencer: Sequencer::new(),
        settings,
        shutdown: shutdown.clone(),
    });
    let lanes = TaskTracker::new();
    let mut pull_failures = 0u32;

    'pulling: loop {
        // While the store is down for everyone, leave new messages in the stream.
        shared.health.wait_until_writable(&shutdown).await;
        // Backpressure: wait for room before asking the server for anything.
        let first = tokio::select! {
            permit = Arc::clone(&room).acquire_owned() => permit.expect("the semaphore is never closed"),
            () = shutdown.cancelled() => break,
        };
        let mut reserved = vec![first];
        take_free_room(&room, &mut reserved);
        // Under load, room comes back in bursts (a store commit settles many events at
        // once): wait a moment for a sizeable pull rather than asking for a handful of
        // messages at a time. When idle, all the room is free and nothing waits.
        let sizeable = (shared.settings.in_flight / 4).clamp(1, MAX_PULL);
        if reserved.len() < sizeable {
            let top_up = async {
                while reserved.len() < sizeable {
                    let permit = Arc::clone(&room)
                        .acquire_owned()
                        .await
                        .expect("the semaphore is never closed");
                    reserved.push(permit);
                    take_free_room(&room, &mut reserved);
                }
            };
            let _ = tokio::time::timeout(TOP_UP_WAIT, top_up).await;
        }
        let mut deliveries = tokio::select! {
            pulled = source.pull(reserved.len(), &shutdown) => match pulled {
                Ok(deliveries) => deliveries,
                Err(error) => {
                    pull_failures += 1;
                    tracing::warn!(%error, "cannot pull from NATS; trying again");
                    let pause = Duration::from_millis(100 * u64::from(pull_failures.min(50)));
                    tokio::select! {
                        () = tokio::time::sleep(pause) => continue 'pulling,
                        () = shutdown.cancelled() => break 'pulling,
                    }
                }
            },
            () = shutdown.cancelled() => break,
        };
        pull_failures = 0;
        // Read the pull to its end even during shutdown (see `Source::pull`), unless it has
        // gone quiet: then an idle worker stops at once instead of waiting for the pull to
        // expire. A message the server sends after that comes back after AckWait.
        loop {
            let next = futures::StreamExt::next(&mut deliveries);
            let item = if shutdown.is_cancelled() {
                match tokio::time::timeout(QUIET_PULL_AT_SHUTDOWN, next).await {
                    Ok(item) => item,
                    Err(_) => break,
                }
            } else {
                tokio::select! {
                    item = next => item,
                    // Re-enter with the timeout above as soon as shutdown begins.
                    () = shutdown.cancelled() => continue,
                }
            };
            match item {
                Some(Ok(delivery)) => {
                    let permit = reserved
                        .pop()
                        .expect("a pull never yields more than it asked for");
                    dispatch(&shared, &lanes, delivery, permit).await;
                }
                // Never end silently: log and pull again.
                Some(Err(error)) => {
                    tracing::warn!(%error, "error while receiving from NATS; pulling again");
                    break;
                }
                None => break,
            }
        }
    }

    lanes.close();
    if tokio::time::timeout(grace, lanes.wait()).await.is_err() {
        tracing::warn!(
            grace_s = grace.as_secs(),
            "shutdown grace period over; unfinished events will be redelivered"
        );
    }
}

/// Adds every permit free right now, up to one pull's worth.
fn take_free_room(room: &Arc<Semaphore>, reserved: &mut Vec<OwnedSemaphorePermit>) {
    while reserved.len() < MAX_PULL {
        match Arc::clone(room).try_acquire_owned() {
            Ok(permit) => reserved.push(permit),
            Err(_) => break,
        }
    }
}

async fn dispatch<S: NotificationStore>(
    shared: &Arc<Shared<S>>,
    lanes: &TaskTracker,
    delivery: Delivery,
    permit: OwnedSemaphorePermit,
) {
    let received = Instant::now();
    shared.metrics.received();
    tracing::debug!(subject = %delivery.subject, stream_seq = delivery.stream_sequence, delivered = delivery.delivered, "received");
    if let Some(max) = shared.settings.max_deliveries
        && delivery.delivered >= max
    {
        // Delivered this often without being settled: something about it keeps failing
        // (or crashing the worker). Keep it aside rather than trying once more.
        let rejection = Rejection::new(
            Reason::MaxDeliveries,
            format!("delivered {} times (limit {max})", delivery.delivered),
        );
        reject_unapplied(shared, &delivery, rejection, Outcome::DeadLettered, received).await;
        return;
    }
    let policy = EventPolicy {
        allow_http_pictures: shared.settings.allow_http_pictures,
        now: Timestamp::now(),
    };
    match parse_event(&delivery.subject, &delivery.body, &policy) {
        Err(rejection) => {
            reject_unapplied(shared, &delivery, rejection, Outcome::Invalid, received).await;
        }
        Ok((event_type, Decision::SkipSelf { .. })) => {
            delivery.ack().await;
            let took = received.elapsed();
            outcome::report(
                &shared.metrics,
                &Outcome::SelfSkipped,
                &delivery,
                event_type.name,
                None,
                took,
            );
        }
        Ok((event_type, Decision::Apply(change))) => {
            let key = OrderKey::of(&change);
            let job = Job {
                delivery,
                change,
                event_type: event_type.name,
                received,
                _permit: permit,
            };
            if let Some(job) = shared.sequencer.enter(key, job) {
                lanes.spawn(run_lane(Arc::clone(shared), key, job));
            }
        }
    }
}

/// Rejects a delivery that never reached a lane (invalid, or delivered too often) and
/// reports it under its subject's event type.
async fn reject_unapplied<S>(
    shared: &Shared<S>,
    delivery: &Delivery,
    rejection: Rejection,
    outcome: fn(Rejection) -> Outcome,
    received: Instant,
) {
    let outcome = reject(shared, delivery, rejection, outcome).await;
    let event_type = event_type_label(&delivery.subject);
    outcome::report(
        &shared.metrics,
        &outcome,
        delivery,
        event_type,
        None,
        received.elapsed(),
    );
}

/// Dead-letters the delivery, then acknowledges it; if the dead letter cannot be stored,
/// hands the original back so that it is neither lost nor acknowledged.
async fn reject<S>(
    shared: &Shared<S>,
    delivery: &Delivery,
    rejection: Rejection,
    outcome: fn(Rejection) -> Outcome,
) -> Outcome {
    let Some(dead_letters) = &shared.dead_letters else {
        delivery.ack().await;
        return outcome(rejection);
    };
    match dead_letters
        .send(delivery, rejection.reason, &rejection.message)
        .await
    {
        Ok(()) => {
            shared.metrics.dead_lettered(rejection.reason);
            delivery.ack().await;
            outcome(rejection)
        }
        Err(error) => {
            tracing::warn!(%error, reason = rejection.reason.code(), subject = %delivery.subject, stream_seq = delivery.stream_sequence, "cannot dead-letter; the event will come back");
            delivery.hand_back(DEAD_LETTER_RETRY).await;
            Outcome::HandedBack
        }
    }
}

/// Applies one key's jobs one after the other until its queue is empty.
async fn run_lane<S: NotificationStore>(shared: Arc<Shared<S>>, key: OrderKey, first: Job) {
    let mut job = first;
    loop {
        let outcome = match apply_with_retry(&shared, key, &job).await {
            Attempt::Applied(applied) => {
                job.delivery.ack().await;
                Outcome::Applied(applied)
            }
            Attempt::Refused(rejection) => {
                reject(&shared, &job.delivery, rejection, Outcome::DeadLettered).await
            }
            Attempt::Interrupted => {
                job.delivery.hand_back(Duration::from_secs(1)).await;
                Outcome::HandedBack
            }
        };
        let took = job.received.elapsed();
        outcome::report(
            &shared.metrics,
            &outcome,
            &job.delivery,
            job.event_type,
            Some(&job.change),
            took,
        );
        match shared.sequencer.next(key) {
            Some(next) => job = next,
            None => return,
        }
    }
}

enum Attempt {
    Applied(Applied),
    /// The store refuses this change for good.
    Refused(Rejection),
    /// Shutdown came while the store was failing.
    Interrupted,
}

async fn apply_with_retry<S: NotificationStore>(shared: &Shared<S>, key: OrderKey, job: &Job) -> Attempt {
    let keep_alive_every = shared.settings.ack_wait / 3;
    let mut last_keep_alive = Instant::now();
    let mut attempt = 0u32;
    let operation = match job.change {
        Change::Create(_) => "create",
        Change::Remove { .. } => "remove",
    };
    loop {
        let call = shared
            .store_calls
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let started = Instant::now();
        let result = shared.store.apply(&job.change, job.delivery.version).await;
        shared.metrics.store_request(operation, started.elapsed());
        drop(call);
        let error = match result {
            Ok(applied) => {
                if shared.health.resume() {
                    tracing::info!("store writable again: resuming intake");
                }
                return Attempt::Applied(applied);
            }
            Err(error) => error,
        };
        shared.metrics.store_error(error.kind);
        attempt += 1;
        let pause = match decide(&error, attempt) {
            RetryDecision::RetryAfter(pause) => pause,
            RetryDecision::DeadLetter => {
                return Attempt::Refused(Rejection::new(Reason::StoreRejected, error.message));
            }
        };
        match error.kind {
            ErrorKind::Transient if attempt < 5 => {
                tracing::debug!(%error, attempt, "store call failed; retrying")
            }
            ErrorKind::Transient => tracing::warn!(%error, attempt, "store call keeps failing; retrying"),
            _ => {
                if shared.health.pause() {
                    tracing::error!(%error, "store unavailable: intake paused until it works again");
                }
                tracing::error!(%error, attempt, retry_in_ms = pause.as_millis() as u64, "store unavailable; retrying");
            }
        }
        if shared.shutdown.is_cancelled() {
            return Attempt::Interrupted;
        }
        // Keep this message, and the ones queued behind it on the same key, from being
        // redelivered while the store recovers.
        if last_keep_alive.elapsed() >= keep_alive_every {
            job.delivery.keep_alive().await;
            for waiting in shared.sequencer.queued(key, |queued| queued.delivery.clone()) {
                waiting.keep_alive().await;
            }
            last_keep_alive = Instant::now();
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = shared.shutdown.cancelled() => return Attempt::Interrupted,
        }
    }
}
