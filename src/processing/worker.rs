//! The consume loop: pull as many deliveries as there is room for, route each through
//! validation and its key's lane, and settle each message only once its outcome is durable:
//! applied in the store, or kept as a dead letter.

use super::breaker::{RejectionBreaker, Verdict};
use super::health::StoreHealth;
use super::keep_alive::{Held, HeldDeliveries};
use super::ordering::{OrderKey, Sequencer};
use super::outcome::{self, Outcome};
use super::retry::{RetryDecision, decide};
use crate::delivery::Announcer;
use crate::domain::{
    Change, Decision, EventPolicy, Reason, Rejection, Timestamp, event_type_label, parse_event,
};
use crate::input::{DeadLetters, Delivery, Intake, MAX_PULL, Source, Taker};
use crate::limits::{Admission, Limits};
use crate::store::{ErrorKind, NotificationStore, Report, StoreError};
use crate::telemetry::metrics::Metrics;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Dead letters being published at once, at most. They run beside the pull loop (a slow
/// dead-letter stream must not slow the valid events down); past this many, the pull loop
/// waits, as it waits for room.
const DEAD_LETTER_SENDS: usize = 256;
/// A handed-back event comes back after this.
const HAND_BACK_DELAY: Duration = Duration::from_secs(1);

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
    /// `AGGREGATE`: the actions whose events fold into aggregates.
    pub aggregate: crate::domain::Aggregation,
}

/// What the worker reports to, and what it is told about the store's health.
#[derive(Clone, Default)]
pub struct Observers {
    pub metrics: Arc<Metrics>,
    pub health: Arc<StoreHealth>,
    /// Told what each applied event did, before it is acknowledged: the delivery stage's
    /// outbox. `None` when no delivery channel is enabled.
    pub announcer: Option<Arc<Announcer>>,
    /// The rate limits creates must pass before they are stored (off by default).
    pub limits: Limits,
}

/// One valid event waiting for, or running in, its key's lane.
struct Job {
    delivery: Delivery,
    change: Change,
    event_type: &'static str,
    received: Instant,
    /// Returned when the job is settled: room for one more delivery.
    _permit: OwnedSemaphorePermit,
    /// Kept alive until settled.
    _held: Held,
}

struct Shared<S> {
    store: Arc<S>,
    /// Held only around a store call, never during a retry's pause.
    store_calls: Semaphore,
    metrics: Arc<Metrics>,
    dead_letters: Option<DeadLetters>,
    health: Arc<StoreHealth>,
    announcer: Option<Arc<Announcer>>,
    limits: Limits,
    sequencer: Sequencer<Job>,
    held: Arc<HeldDeliveries>,
    breaker: RejectionBreaker,
    dead_letter_sends: Arc<Semaphore>,
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
        announcer: observers.announcer,
        limits: observers.limits,
        sequencer: Sequencer::new(),
        held: Arc::default(),
        breaker: RejectionBreaker::default(),
        dead_letter_sends: Arc::new(Semaphore::new(DEAD_LETTER_SENDS)),
        settings,
        shutdown: shutdown.clone(),
    });
    let lanes = TaskTracker::new();
    let stop_keep_alives = CancellationToken::new();
    let keep_alives = tokio::spawn(
        Arc::clone(&shared.held).keep_alive(shared.settings.ack_wait / 3, stop_keep_alives.clone()),
    );
    let intake = Intake {
        room: Arc::clone(&room),
        sizeable: (shared.settings.in_flight / 4).clamp(1, MAX_PULL),
        what: "notifications",
    };
    let mut taker = StoreTaker {
        shared: &shared,
        lanes: &lanes,
        shutdown: &shutdown,
    };
    intake.run(&mut source, &shutdown, &mut taker).await;

    lanes.close();
    if tokio::time::timeout(grace, lanes.wait()).await.is_err() {
        tracing::warn!(
            grace_s = grace.as_secs(),
            held = shared.held.len(),
            "shutdown grace period over; unfinished events will be redelivered"
        );
    }
    stop_keep_alives.cancel();
    let _ = keep_alives.await;
}

/// The store stage's side of its intake.
struct StoreTaker<'a, S> {
    shared: &'a Arc<Shared<S>>,
    lanes: &'a TaskTracker,
    shutdown: &'a CancellationToken,
}

impl<S: NotificationStore> Taker for StoreTaker<'_, S> {
    async fn ready(&mut self) -> bool {
        // While the store is down for everyone, leave new messages in the stream.
        self.shared.health.wait_until_writable(self.shutdown).await;
        true
    }

    async fn take(&mut self, delivery: Delivery, permit: OwnedSemaphorePermit) {
        dispatch(self.shared, self.lanes, delivery, permit).await;
    }
}

async fn dispatch<S: NotificationStore>(
    shared: &Arc<Shared<S>>,
    lanes: &TaskTracker,
    delivery: Delivery,
    permit: OwnedSemaphorePermit,
) {
    let received = Instant::now();
    let held = shared.held.hold(&delivery);
    shared.metrics.received();
    if let Some(pending) = delivery.pending {
        shared.metrics.delivery_saw_pending(pending);
    }
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
        let unapplied = Unapplied {
            delivery,
            rejection,
            outcome: Outcome::DeadLettered,
            received,
            _permit: permit,
            _held: held,
        };
        spawn_rejection(shared, lanes, unapplied).await;
        return;
    }
    let policy = EventPolicy {
        allow_http_pictures: shared.settings.allow_http_pictures,
        now: Timestamp::now(),
        aggregate: shared.settings.aggregate,
    };
    match parse_event(&delivery.subject, &delivery.body, &policy) {
        Err(rejection) => {
            let unapplied = Unapplied {
                delivery,
                rejection,
                outcome: Outcome::Invalid,
                received,
                _permit: permit,
                _held: held,
            };
            spawn_rejection(shared, lanes, unapplied).await;
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
            let change = change.identified(delivery.version);
            let key = OrderKey::of(&change);
            let job = Job {
                delivery,
                change,
                event_type: event_type.name,
                received,
                _permit: permit,
                _held: held,
            };
            if let Some(job) = shared.sequencer.enter(key, job) {
                lanes.spawn(run_lane(Arc::clone(shared), key, job));
            }
        }
    }
}

/// A delivery that never reaches a lane (invalid, or delivered too often).
struct Unapplied {
    delivery: Delivery,
    rejection: Rejection,
    outcome: fn(Rejection) -> Outcome,
    received: Instant,
    _permit: OwnedSemaphorePermit,
    _held: Held,
}

/// Rejects `unapplied` in a task of its own, so that the pull loop goes on while the dead
/// letter is published (awaiting each publish there made 20k invalid events four times
/// slower to settle than 20k valid ones). At most [`DEAD_LETTER_SENDS`] at once.
async fn spawn_rejection<S: NotificationStore>(
    shared: &Arc<Shared<S>>,
    lanes: &TaskTracker,
    unapplied: Unapplied,
) {
    let sending = Arc::clone(&shared.dead_letter_sends)
        .acquire_owned()
        .await
        .expect("the semaphore is never closed");
    let shared = Arc::clone(shared);
    lanes.spawn(async move {
        reject_unapplied(&shared, unapplied).await;
        drop(sending);
    });
}

/// Rejects a delivery that never reached a lane and reports it under its subject's event
/// type.
async fn reject_unapplied<S>(shared: &Shared<S>, unapplied: Unapplied) {
    let Unapplied {
        delivery,
        rejection,
        outcome,
        received,
        ..
    } = &unapplied;
    let outcome = reject(shared, delivery, rejection.clone(), *outcome).await;
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
        .keep(delivery, rejection.reason, &rejection.message)
        .await
    {
        Ok(()) => {
            shared.metrics.dead_lettered(rejection.reason);
            outcome(rejection)
        }
        Err(error) => {
            shared.metrics.dead_letter_failed();
            tracing::warn!(%error, reason = rejection.reason.code(), subject = %delivery.subject, stream_seq = delivery.stream_sequence, "cannot dead-letter; the event will come back");
            Outcome::HandedBack
        }
    }
}

/// Applies one key's jobs one after the other until its queue is empty.
async fn run_lane<S: NotificationStore>(shared: Arc<Shared<S>>, key: OrderKey, first: Job) {
    let mut job = first;
    loop {
        let mut interrupted = false;
        let outcome = match apply_with_retry(&shared, &job).await {
            Attempt::Applied(report) => {
                // Announced before the ack: a crash in between redelivers the event, and
                // the store reports the same again (see `delivery::outbox`).
                let announced = match &shared.announcer {
                    // Boxed, like every rarer or larger step below: the lane task is
                    // spawned per key and moved whole, so it carries only what every event
                    // needs (BENCHMARKS.md, "Main rows": memmove was 18% of the runtime).
                    Some(announcer) => {
                        Box::pin(announcer.announce(
                            &job.change,
                            job.delivery.version,
                            &report,
                            &shared.shutdown,
                        ))
                        .await
                    }
                    None => Ok(()),
                };
                if announced.is_ok() {
                    job.delivery.ack().await;
                    Outcome::Applied(report.applied)
                } else {
                    interrupted = true;
                    job.delivery.hand_back(HAND_BACK_DELAY).await;
                    Outcome::HandedBack
                }
            }
            Attempt::Refused(rejection) => {
                Box::pin(reject(&shared, &job.delivery, rejection, Outcome::DeadLettered)).await
            }
            Attempt::Throttled => {
                job.delivery.ack().await;
                Outcome::Throttled
            }
            Attempt::Interrupted => {
                interrupted = true;
                job.delivery.hand_back(HAND_BACK_DELAY).await;
                Outcome::HandedBack
            }
        };
        report_job(&shared, &outcome, &job);
        if interrupted {
            // The jobs behind it must not be applied before it: hand them back untried,
            // in order, so the server redelivers the key's events as they were.
            while let Some(queued) = shared.sequencer.next(key) {
                queued.delivery.hand_back(HAND_BACK_DELAY).await;
                report_job(&shared, &Outcome::HandedBack, &queued);
            }
            return;
        }
        match shared.sequencer.next(key) {
            Some(next) => job = next,
            None => return,
        }
    }
}

fn report_job<S>(shared: &Shared<S>, outcome: &Outcome, job: &Job) {
    outcome::report(
        &shared.metrics,
        outcome,
        &job.delivery,
        job.event_type,
        Some(&job.change),
        job.received.elapsed(),
    );
}

enum Attempt {
    Applied(Report),
    /// The store refuses this change for good.
    Refused(Rejection),
    /// Over a rate limit: not to be stored.
    Throttled,
    /// Shutdown came while the store was failing.
    Interrupted,
}

/// The longest pause between two tries of one held event. Keep-alives come from the registry
/// whatever the pause (so it need not follow the AckWait); a held event still notices a
/// recovered store within it, and a long outage logs one retry line per event this often.
const LONGEST_PAUSE: Duration = Duration::from_secs(10);

async fn apply_with_retry<S: NotificationStore>(shared: &Shared<S>, job: &Job) -> Attempt {
    let mut attempt = 0u32;
    let mut admitted = false;
    let operation = match job.change {
        Change::Create(_) => "create",
        Change::Remove { .. } => "remove",
        Change::Join(_) => "join",
        Change::Leave { .. } => "leave",
    };
    loop {
        // The limits' state is reached like the store: its failures are retried below.
        let result = match admit_once(shared, job, &mut admitted).await {
            Ok(Admission::Throttled(_)) => return Attempt::Throttled,
            Ok(Admission::Admitted) => store_call(shared, job, operation).await,
            Err(error) => Err(error),
        };
        let mut error = match result {
            Ok(applied) => {
                if shared.breaker.succeeded() {
                    shared.metrics.set_rejection_breaker_open(false);
                    tracing::info!("store accepts writes again: store_rejected breaker closed");
                }
                if shared.health.resume() {
                    tracing::info!("store writable again: resuming intake");
                }
                return Attempt::Applied(applied);
            }
            Err(error) => error,
        };
        shared.metrics.store_error(error.kind);
        attempt += 1;
        let mut decision = decide(&error, attempt);
        if decision == RetryDecision::DeadLetter {
            match shared.breaker.refused() {
                Verdict::DeadLetter => {
                    return Attempt::Refused(Rejection::new(Reason::StoreRejected, error.message));
                }
                verdict => {
                    if verdict == Verdict::Opened {
                        shared.metrics.set_rejection_breaker_open(true);
                        tracing::error!(%error, refusals = super::breaker::REJECTIONS_TO_OPEN, "the store refused many events in a row: store_rejected breaker open, intake paused and refused events held until a write succeeds (check the table or schema)");
                    }
                    // Held: from here on the refusal counts as a store-wide fault, paced and
                    // pausing intake like any other.
                    error = StoreError::new(ErrorKind::Systemic, error.message);
                    decision = decide(&error, attempt);
                }
            }
        }
        let RetryDecision::RetryAfter(pause) = decision else {
            unreachable!("only permanent errors are dead-lettered")
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
        tokio::select! {
            biased;
            () = shared.shutdown.cancelled() => return Attempt::Interrupted,
            () = tokio::time::sleep(pause.min(LONGEST_PAUSE)) => {}
        }
    }
}

/// Asks the limits about the job, once: a retry after a store failure does not ask again.
async fn admit_once<S>(shared: &Shared<S>, job: &Job, admitted: &mut bool) -> Result<Admission, StoreError> {
    if *admitted {
        return Ok(Admission::Admitted);
    }
    let admission = shared
        .limits
        .admit(&job.change, &job.delivery, &shared.metrics)
        .await?;
    *admitted = admission == Admission::Admitted;
    Ok(admission)
}

async fn store_call<S: NotificationStore>(
    shared: &Shared<S>,
    job: &Job,
    operation: &'static str,
) -> Result<Report, StoreError> {
    let call = shared
        .store_calls
        .acquire()
        .await
        .expect("the semaphore is never closed");
    let started = Instant::now();
    let result = shared
        .store
        .apply_reported(&job.change, job.delivery.version)
        .await;
    shared.metrics.store_request(operation, started.elapsed());
    drop(call);
    result
}
