//! One channel's consumer (`notification-delivery-{channel}` on the outbox): pull jobs,
//! keep each notification's jobs in order, send them (in batches where the channel takes
//! them), retry what failed for a while, dead-letter what the channel refuses.
//!
//! Order per notification holds across replicas: a `removed` job is sent only once its
//! notification's `created` job (whose outbox sequence it carries) is settled, by this
//! replica (it remembers the ones it sent) or by any (the consumer's ack floor has passed it).

use super::ack_floor::AckFloor;
use super::channel::{Channel, Failure, SendError, retry_pause};
use super::job::{Job, JobKind};
use super::outbox::PROBE_SUBJECT;
use crate::domain::{Reason, Rejection};
use crate::input::{DeadLetters, Delivery, Intake, Source, Taker};
use crate::processing::keep_alive::{Held, HeldDeliveries};
use crate::processing::ordering::{OrderKey, Sequencer};
use crate::telemetry::metrics::Metrics;
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The subject `dlq replay` republishes a channel's dead letters to: only that channel
/// sends them, the others skip them.
pub const REPLAY_PREFIX: &str = "deliveries.replay.";
/// Jobs held per send slot: enough to fill batches while earlier sends are out.
const HELD_PER_SEND: usize = 4;
/// Transient failures in a row, across jobs, after which the channel counts as down: its
/// intake pauses, and its jobs' retries stop counting towards the attempts limit (an outage
/// of the receiver is not the job's fault).
const DOWN_AFTER: u32 = 10;
/// While the channel is down, jobs try again at least this often (to notice it is back).
const PROBE_WHILE_DOWN: Duration = Duration::from_secs(5);
/// One send that takes longer is a transient failure.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// `created` jobs this replica remembers having sent, for removals' fast path.
const REMEMBERED: usize = 100_000;

/// Longest stretch a delivery stage in the store stage's process waits for a backlog drain
/// before it pulls a round of jobs anyway (see [`StageSettings::yield_to_store`]).
const LONGEST_YIELD: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct StageSettings {
    /// In the store stage's process: that stage's in-flight capacity. While the store stage
    /// holds more than half of it (it is draining a backlog, as after an outage), this stage
    /// waits before pulling more jobs, so that storing keeps the CPU; the jobs wait in the
    /// outbox and go out once the drain is over (or after [`LONGEST_YIELD`] at most).
    pub yield_to_store: Option<usize>,
    /// `DELIVERY_MAX_ATTEMPTS`.
    pub max_attempts: u32,
    /// Sends in flight at once (`DELIVERY_CONCURRENCY`).
    pub concurrency: usize,
    /// The consumer's AckWait.
    pub ack_wait: Duration,
    pub shutdown_grace: Duration,
}

/// What the stage needs of the outside world.
pub struct StageParts<C> {
    pub channel: Arc<C>,
    pub source: Source,
    /// The channel's consumer again, for its ack floor.
    pub floor_consumer: async_nats::jetstream::consumer::PullConsumer,
    pub dead_letters: DeadLetters,
    pub metrics: Arc<Metrics>,
}

struct Pending {
    delivery: Delivery,
    job: Job,
    _permit: OwnedSemaphorePermit,
    _held: Held,
}

struct Shared {
    name: &'static str,
    batcher: mpsc::Sender<(Job, oneshot::Sender<Result<(), SendError>>)>,
    sequencer: Sequencer<Pending>,
    floor: AckFloor,
    sent_created: Mutex<(HashSet<String>, VecDeque<String>)>,
    failures_in_a_row: AtomicU32,
    dead_letters: DeadLetters,
    metrics: Arc<Metrics>,
    held: Arc<HeldDeliveries>,
    settings: StageSettings,
    shutdown: CancellationToken,
}

/// Runs one channel until `shutdown`, then lets in-flight jobs finish (within the grace).
pub async fn run<C: Channel>(parts: StageParts<C>, settings: StageSettings, shutdown: CancellationToken) {
    let StageParts {
        channel,
        mut source,
        floor_consumer,
        dead_letters,
        metrics,
    } = parts;
    let name = channel.name().as_str();
    let (batcher, requests) = mpsc::channel(settings.concurrency * HELD_PER_SEND);
    let sends = tokio::spawn(send_batches(
        Arc::clone(&channel),
        requests,
        Arc::new(Semaphore::new(settings.concurrency)),
    ));
    let shared = Arc::new(Shared {
        name,
        batcher,
        sequencer: Sequencer::new(),
        floor: AckFloor::new(floor_consumer),
        sent_created: Mutex::default(),
        failures_in_a_row: AtomicU32::new(0),
        dead_letters,
        metrics,
        held: Arc::default(),
        settings: settings.clone(),
        shutdown: shutdown.clone(),
    });
    let room = Arc::new(Semaphore::new(settings.concurrency * HELD_PER_SEND));
    let lanes = TaskTracker::new();
    let stop_keep_alives = CancellationToken::new();
    let keep_alives =
        tokio::spawn(Arc::clone(&shared.held).keep_alive(settings.ack_wait / 3, stop_keep_alives.clone()));
    tracing::info!(channel = name, "delivery stage started");
    let intake = Intake {
        room,
        // Jobs go out as they come: no waiting for a sizeable pull.
        sizeable: 1,
        what: name,
    };
    let mut taker = ChannelTaker {
        shared: &shared,
        lanes: &lanes,
        shutdown: &shutdown,
    };
    intake.run(&mut source, &shutdown, &mut taker).await;
    lanes.close();
    if tokio::time::timeout(settings.shutdown_grace, lanes.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            channel = name,
            held = shared.held.len(),
            "shutdown grace period over; unsent jobs will be redelivered"
        );
    }
    stop_keep_alives.cancel();
    let _ = keep_alives.await;
    // The sender ends once every lane is gone; a lane still stuck past the grace is not
    // waited for (its job comes back after AckWait).
    drop(shared);
    let _ = tokio::time::timeout(Duration::from_secs(1), sends).await;
}

/// The channel's side of its intake.
struct ChannelTaker<'a> {
    shared: &'a Arc<Shared>,
    lanes: &'a TaskTracker,
    shutdown: &'a CancellationToken,
}

impl Taker for ChannelTaker<'_> {
    async fn ready(&mut self) -> bool {
        // A channel that is down holds its jobs in the outbox, not in memory.
        while self.shared.is_down() && !self.shutdown.is_cancelled() {
            tokio::select! {
                () = self.shutdown.cancelled() => return false,
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
        let yielding = tokio::time::Instant::now();
        while self.shared.store_is_draining() && yielding.elapsed() < LONGEST_YIELD {
            tokio::select! {
                () = self.shutdown.cancelled() => return false,
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
        true
    }

    async fn take(&mut self, delivery: Delivery, permit: OwnedSemaphorePermit) {
        dispatch(self.shared, self.lanes, delivery, permit).await;
    }
}

async fn dispatch(
    shared: &Arc<Shared>,
    lanes: &TaskTracker,
    delivery: Delivery,
    permit: OwnedSemaphorePermit,
) {
    let held = shared.held.hold(&delivery);
    let for_another_channel = delivery
        .subject
        .strip_prefix(REPLAY_PREFIX)
        .is_some_and(|channel| channel != shared.name);
    if for_another_channel || delivery.subject == PROBE_SUBJECT {
        // Another channel's replayed dead letter, or a removal's probe (see `outbox`).
        delivery.ack().await;
        return;
    }
    let job = match Job::parse(&delivery.body) {
        Ok(job) => job.published_at(delivery.published),
        Err(problem) => {
            let shared = Arc::clone(shared);
            lanes.spawn(async move {
                let rejection = Rejection::new(Reason::InvalidJson, problem);
                dead_letter(&shared, &delivery, rejection).await;
                drop((held, permit));
            });
            return;
        }
    };
    if delivery.delivered > u64::from(shared.settings.max_attempts) {
        // Delivered this often without being settled (crashes while sending it?).
        let shared = Arc::clone(shared);
        lanes.spawn(async move {
            let rejection = Rejection::new(
                Reason::MaxDeliveries,
                format!(
                    "delivered {} times (limit {})",
                    delivery.delivered, shared.settings.max_attempts
                ),
            );
            dead_letter(&shared, &delivery, rejection).await;
            drop((held, permit));
        });
        return;
    }
    let key = OrderKey::of_name(job.id());
    let pending = Pending {
        delivery,
        job,
        _permit: permit,
        _held: held,
    };
    if let Some(first) = shared.sequencer.enter(key, pending) {
        lanes.spawn(run_lane(Arc::clone(shared), key, first));
    }
}

async fn run_lane(shared: Arc<Shared>, key: OrderKey, first: Pending) {
    let mut pending = first;
    loop {
        deliver(&shared, &pending).await;
        drop(pending);
        match shared.sequencer.next(key) {
            Some(next) => pending = next,
            None => return,
        }
    }
}

/// Sends one job until it is delivered, refused, out of attempts or interrupted, and
/// settles its message accordingly.
async fn deliver(shared: &Shared, pending: &Pending) {
    let Pending { delivery, job, .. } = pending;
    // A removal, or an aggregate's update, never reaches a client before the notification.
    if let Some(created_job) = job.created_job()
        && !shared.has_sent_created(job.id())
    {
        // Its notification's job may still be on another replica: wait until it is settled.
        match shared
            .floor
            .wait_past(created_job, shared.settings.ack_wait * 2, &shared.shutdown)
            .await
        {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                channel = shared.name,
                id = job.id(),
                kind = job.kind().as_str(),
                "the notification's job is still not settled; sending this one anyway"
            ),
            Err(_) => return delivery.hand_back(Duration::from_secs(1)).await,
        }
    }
    let mut attempts = 0u32;
    loop {
        let (reply, answer) = oneshot::channel();
        let result = match shared.batcher.send((job.clone(), reply)).await {
            Ok(()) => answer
                .await
                .unwrap_or_else(|_| Err(SendError::transient("the sender stopped"))),
            Err(_) => Err(SendError::transient("the sender stopped")),
        };
        let error = match result {
            Ok(()) => {
                shared.failures_in_a_row.store(0, Ordering::Relaxed);
                if job.kind() == JobKind::Created {
                    shared.remember_created(job.id());
                }
                delivery.ack().await;
                let latency = delivery.published.map(|published| {
                    (time::OffsetDateTime::now_utc() - published)
                        .as_seconds_f64()
                        .max(0.0)
                });
                shared.metrics.delivery_settled(shared.name, "delivered", latency);
                tracing::debug!(
                    channel = shared.name,
                    id = job.id(),
                    kind = job.kind().as_str(),
                    "delivered"
                );
                return;
            }
            Err(error) => error,
        };
        let pause = match error.kind {
            // Gone is settled by the personal channels (they drop the device); one reaching
            // the stage is a refusal like any other.
            Failure::Permanent | Failure::Gone => {
                let rejection = Rejection::new(Reason::ChannelRejected, error.message);
                return dead_letter(shared, delivery, rejection).await;
            }
            Failure::Transient { .. } => {
                let down = shared.failures_in_a_row.fetch_add(1, Ordering::Relaxed) + 1 >= DOWN_AFTER;
                if !down {
                    attempts += 1;
                }
                if attempts >= shared.settings.max_attempts {
                    let rejection = Rejection::new(
                        Reason::MaxDeliveries,
                        format!("{attempts} attempts failed; the last: {}", error.message),
                    );
                    return dead_letter(shared, delivery, rejection).await;
                }
                shared.metrics.delivery_settled(shared.name, "retried", None);
                let pause = retry_pause(error.kind, attempts.max(1));
                if down {
                    if shared.failures_in_a_row.load(Ordering::Relaxed) == DOWN_AFTER {
                        tracing::error!(channel = shared.name, error = %error, "delivery channel down: intake paused, retrying");
                    }
                    pause.min(PROBE_WHILE_DOWN)
                } else {
                    tracing::warn!(channel = shared.name, id = job.id(), attempts, error = %error, retry_in_ms = pause.as_millis() as u64, "delivery failed; retrying");
                    pause
                }
            }
        };
        tokio::select! {
            biased;
            () = shared.shutdown.cancelled() => return delivery.hand_back(Duration::from_secs(1)).await,
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// Keeps the job as a dead letter, then acknowledges it; if the dead letter cannot be
/// stored, the job comes back later.
async fn dead_letter(shared: &Shared, delivery: &Delivery, rejection: Rejection) {
    match shared
        .dead_letters
        .keep(delivery, rejection.reason, &rejection.message)
        .await
    {
        Ok(()) => {
            shared
                .metrics
                .delivery_settled(shared.name, "dead_lettered", None);
            tracing::warn!(channel = shared.name, reason = rejection.reason.code(), error = %rejection.message, stream_seq = delivery.stream_sequence, "delivery job dead-lettered");
        }
        Err(error) => {
            tracing::warn!(channel = shared.name, %error, "cannot dead-letter a delivery job; it will come back");
        }
    }
}

impl Shared {
    fn is_down(&self) -> bool {
        self.failures_in_a_row.load(Ordering::Relaxed) >= DOWN_AFTER
    }

    fn store_is_draining(&self) -> bool {
        self.settings
            .yield_to_store
            .is_some_and(|capacity| self.metrics.in_flight().saturating_mul(2) >= capacity as i64)
    }

    fn has_sent_created(&self, id: &str) -> bool {
        self.sent_created
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .0
            .contains(id)
    }

    fn remember_created(&self, id: &str) {
        let mut sent = self
            .sent_created
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if sent.0.insert(id.to_owned()) {
            sent.1.push_back(id.to_owned());
            if sent.1.len() > REMEMBERED
                && let Some(oldest) = sent.1.pop_front()
            {
                sent.0.remove(&oldest);
            }
        }
    }
}

/// Takes the jobs ready to go and sends them in batches of up to the channel's
/// `max_batch`, at most `sends` batches at once. Under load batches fill; when idle, a job
/// goes out alone at once.
async fn send_batches<C: Channel>(
    channel: Arc<C>,
    mut requests: mpsc::Receiver<(Job, oneshot::Sender<Result<(), SendError>>)>,
    sends: Arc<Semaphore>,
) {
    let max_batch = channel.max_batch().max(1);
    let tasks = TaskTracker::new();
    while let Some(first) = requests.recv().await {
        let permit = Arc::clone(&sends)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match requests.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let channel = Arc::clone(&channel);
        tasks.spawn(async move {
            let (jobs, replies): (Vec<Job>, Vec<_>) = batch.into_iter().unzip();
            let results = match tokio::time::timeout(SEND_TIMEOUT, channel.send(&jobs)).await {
                Ok(results) => results,
                Err(_) => jobs
                    .iter()
                    .map(|_| {
                        Err(SendError::transient(format!(
                            "no answer within {}s",
                            SEND_TIMEOUT.as_secs()
                        )))
                    })
                    .collect(),
            };
            let mut results = results.into_iter();
            for reply in replies {
                let result = results
                    .next()
                    .unwrap_or_else(|| Err(SendError::transient("the channel gave fewer results than jobs")));
                let _ = reply.send(result);
            }
            drop(permit);
        });
    }
    tasks.close();
    tasks.wait().await;
}
