//! `notification-worker run`: connect, make sure everything exists, consume until a signal.

use crate::config::{Config, Environment, NatsMode};
use crate::delivery::{self, Announcer, StageOptions};
use crate::http::{self, HttpState};
use crate::input::{self, DeadLetters, Source};
use crate::limits::{self, Limits};
use crate::processing::{self, Observers, WorkerSettings};
use crate::store::{AnyRecipientStore, AnyStore, NotificationStore, RecipientStore};
use crate::telemetry::readiness::Readiness;
use anyhow::Context;
use async_nats::jetstream::consumer::PullConsumer;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long shutdown waits for in-flight events (Kubernetes gives 30 s by default).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
/// How often readiness looks at NATS and probes the store.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// How often the consumer's backlog is read for `notification_worker_consumer_pending`.
const PENDING_EVERY: Duration = Duration::from_secs(5);

/// Which half of the worker a process runs (`run --stage`); both by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Stage {
    /// Events in, notifications stored (and announced to the outbox).
    Store,
    /// The outbox in, notifications delivered on the enabled channels.
    Delivery,
}

pub async fn run(config: Config, stage: Option<Stage>) -> anyhow::Result<()> {
    let channels = config.delivery.enabled();
    if channels.is_empty() && stage == Some(Stage::Delivery) {
        return Err(UsageError(
            "run --stage delivery: no delivery channel is configured (set PUSHER_APP_ID, PUSHER_KEY and \
             PUSHER_SECRET, REALTIME_NATS_SUBJECT, or WEBHOOK_URL and WEBHOOK_SECRET)"
                .into(),
        )
        .into());
    }
    if !channels.is_empty() && config.nats.mode == NatsMode::Core {
        return Err(UsageError(
            "delivery channels need NATS_MODE=jetstream: their outbox is a JetStream stream".into(),
        )
        .into());
    }
    match stage {
        Some(Stage::Delivery) => run_delivery_only(config).await,
        Some(Stage::Store) => run_store(config, false).await,
        None => run_store(config, !channels.is_empty()).await,
    }
}

/// A usage or configuration problem found after start: exit code 2, like a bad variable.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// `run --stage delivery`: the channels' consumers only, with health and metrics.
async fn run_delivery_only(config: Config) -> anyhow::Result<()> {
    let client = input::connect(&config.nats, "notification-worker").await?;
    let shutdown = CancellationToken::new();
    let observers = Observers::default();
    let options = StageOptions {
        create_outbox: config.environment == Environment::Development,
        dead_letters: config.dead_letters,
        shutdown_grace: SHUTDOWN_GRACE,
        yield_to_store: None,
    };
    let people = if config.delivery.has_personal() {
        let feeds = Arc::new(AnyStore::open(&config.store).await?);
        let bucket = limits_bucket(&client, &config).await?;
        let owner_limit = owner_limit(&config, bucket.as_ref());
        Some(people(&config, &client, feeds, &observers, owner_limit).await?)
    } else {
        None
    };
    let stages = delivery::start_channels(
        &client,
        &config.delivery,
        &options,
        people,
        Arc::clone(&observers.metrics),
        shutdown.clone(),
    )
    .await?;
    let readiness = Arc::new(Readiness::default());
    // No store here: readiness is NATS alone.
    readiness.set_store(None);
    let background = CancellationToken::new();
    let readiness_watch = tokio::spawn(watch_readiness(
        client.clone(),
        None,
        Arc::clone(&readiness),
        observers.clone(),
        background.clone(),
    ));
    let http = serve_http(&config, &observers, readiness, &background).await?;
    tracing::info!(channels = ?config.delivery.enabled(), "delivery stage started");
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    for stage in stages {
        let _ = stage.await;
    }
    let _ = client.flush().await;
    background.cancel();
    if let Some(server) = http {
        let _ = server.await;
    }
    let _ = readiness_watch.await;
    tracing::info!("worker stopped");
    Ok(())
}

async fn serve_http(
    config: &Config,
    observers: &Observers,
    readiness: Arc<Readiness>,
    background: &CancellationToken,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    Ok(match config.http_addr {
        Some(addr) => {
            let state = HttpState {
                metrics: Arc::clone(&observers.metrics),
                readiness,
                health: Arc::clone(&observers.health),
            };
            let (bound, server) = http::start(addr, state, background.clone()).await?;
            tracing::info!(%bound, "serving /healthz, /readyz and /metrics");
            Some(server)
        }
        None => None,
    })
}

/// The store stage; with `deliver`, the delivery stage beside it in the same process.
async fn run_store(config: Config, deliver: bool) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let store = Arc::new(
        AnyStore::open(&config.store)
            .await?
            .with_tombstone_ttl(config.tombstone_ttl),
    );
    // An embedded SQLite file belongs to this process: its folder, file and schema are made
    // (or brought up to date) at every start, in production too, or a container on a fresh
    // volume would never be ready. Shared infrastructure (a DynamoDB table) is created here
    // in development only; in production that is `setup`'s job.
    if config.environment == Environment::Development || store.is_embedded() {
        store.setup().await.context("cannot prepare the store")?;
        // The recipient directory's table, beside the notifications (the RECIPIENTS
        // consumer writes it).
        AnyRecipientStore::open(&config.store)
            .await?
            .setup()
            .await
            .context("cannot prepare the recipient directory")?;
    } else if let Err(error) = store.probe().await
        && error.configuration
    {
        // No AWS credentials anywhere, say: waiting cannot help, so say what to change and
        // stop (exit code 2). Anything else the store reports is left to readiness, which
        // probes again every second.
        return Err(error).context("cannot use the store");
    }
    let client = input::connect(&config.nats, "notification-worker").await?;
    let announces = !config.delivery.enabled().is_empty();
    let mut recipient_sync = None;
    let (source, dead_letters, consumer_limits, consumer, outbox) = match config.nats.mode {
        NatsMode::JetStream => {
            let js = async_nats::jetstream::new(client.clone());
            recipient_sync = recipient_source(&js, &config).await?;
            // The outbox: created here in development, by `setup` in production. A missing
            // one never stops storing (the announcer counts and logs what it cannot send).
            let outbox = if announces && config.environment == Environment::Development {
                Some(delivery::outbox::ensure_stream(&js).await?)
            } else {
                None
            };
            let stream = input::ensure_stream(&js, &config.nats.stream).await?;
            let (consumer, limits) = input::ensure_consumer(&stream, &config.nats.consumer).await?;
            input::warn_if_slow_to_recover(&config.nats.consumer, &limits);
            let dead_letters = DeadLetters::ensure(&js, &config.nats.stream, &config.dead_letters).await?;
            // The stream's own max age (an existing stream may not have DLQ_MAX_AGE); zero:
            // kept forever.
            let dlq_max_age = dead_letters.max_age().unwrap_or(Duration::ZERO);
            check_tombstone_lifetime(
                config.tombstone_ttl,
                &[
                    (config.nats.stream.as_str(), stream.cached_info().config.max_age),
                    (input::DLQ_STREAM, dlq_max_age),
                ],
            )?;
            let source = Source::jetstream(consumer.clone(), stream.cached_info().created)?;
            (
                source,
                Some(dead_letters),
                Some(limits),
                Some(consumer),
                outbox.map(|_| js),
            )
        }
        NatsMode::Core => {
            tracing::info!(
                "the recipient directory is not synced: NATS_MODE=core has no stream RECIPIENTS (it needs JetStream)"
            );
            (Source::core(&client).await?, None, None, None, None)
        }
    };
    let limits = store.limits(config.concurrency);
    let settings = WorkerSettings {
        in_flight: limits.in_flight,
        store_calls: limits.store_calls,
        // Core NATS has no AckWait: this only paces retries (pauses up to a third of it).
        ack_wait: consumer_limits.map_or(Duration::from_secs(30), |limits| limits.ack_wait),
        max_deliveries: consumer_limits.map(|limits| limits.max_deliveries),
        allow_http_pictures: config.environment == Environment::Development,
        shutdown_grace: SHUTDOWN_GRACE,
        aggregate: config.aggregate,
    };

    let shutdown = CancellationToken::new();
    let bucket = limits_bucket(&client, &config).await?;
    let mut observers = Observers {
        limits: trigger_user_limit(&config, bucket.as_ref()),
        ..Observers::default()
    };
    if announces && config.nats.mode == NatsMode::JetStream {
        let js = outbox.unwrap_or_else(|| async_nats::jetstream::new(client.clone()));
        observers.announcer = Some(Arc::new(Announcer::new(js, Arc::clone(&observers.metrics))));
    }
    // The delivery stage's shutdown comes after the store stage's: jobs the last events
    // announced are still sent (or left in the outbox for the next start).
    let delivery_shutdown = CancellationToken::new();
    let delivery_stages = if deliver {
        let options = StageOptions {
            create_outbox: config.environment == Environment::Development,
            dead_letters: config.dead_letters,
            shutdown_grace: SHUTDOWN_GRACE / 4,
            yield_to_store: Some(settings.in_flight),
        };
        let people = if config.delivery.has_personal() {
            let owner_limit = owner_limit(&config, bucket.as_ref());
            Some(people(&config, &client, Arc::clone(&store), &observers, owner_limit).await?)
        } else {
            None
        };
        match delivery::start_channels(
            &client,
            &config.delivery,
            &options,
            people,
            Arc::clone(&observers.metrics),
            delivery_shutdown.clone(),
        )
        .await
        {
            Ok(stages) => stages,
            Err(error) => {
                tracing::error!(
                    error = format!("{error:#}"),
                    "cannot start the delivery stage; storing goes on without it"
                );
                Vec::new()
            }
        }
    } else {
        Vec::new()
    };
    let readiness = Arc::new(Readiness::default());
    if let Some(stats) = store.sqlite_wal_stats() {
        observers.metrics.observe_sqlite_wal(stats);
    }
    let background = CancellationToken::new();
    let readiness_watch = tokio::spawn(watch_readiness(
        client.clone(),
        Some(Arc::clone(&store)),
        Arc::clone(&readiness),
        observers.clone(),
        background.clone(),
    ));
    if let Some(consumer) = consumer {
        tokio::spawn(watch_backlog(consumer, observers.clone(), background.clone()));
    }
    let http = serve_http(&config, &observers, readiness, &background).await?;

    tracing::info!(
        store = %store.describe(),
        nats_mode = ?config.nats.mode,
        stream = %config.nats.stream,
        consumer = %config.nats.consumer,
        in_flight = settings.in_flight,
        store_calls = settings.store_calls,
        delivery = ?config.delivery.enabled(),
        startup_ms = started.elapsed().as_millis() as u64,
        "worker started"
    );
    if config.nats.mode == NatsMode::Core {
        tracing::warn!(
            "NATS_MODE=core: events published while no worker runs are lost (at-most-once), \
             and rejected events are only logged (no dead letters)"
        );
    }

    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let recipient_task = match recipient_sync {
        Some(sync) => Some(start_recipient_sync(sync, &config, &observers, shutdown.clone()).await?),
        None => None,
    };
    processing::run(
        source,
        Arc::clone(&store),
        dead_letters,
        observers,
        settings,
        shutdown,
    )
    .await;

    if let Some(task) = recipient_task {
        let _ = task.await;
    }
    delivery_shutdown.cancel();
    for stage in delivery_stages {
        let _ = stage.await;
    }
    // Acks are fire-and-forget publishes: make sure they have left before exiting.
    if let Err(error) = client.flush().await {
        tracing::warn!(%error, "could not flush the last acknowledgements; those events will be redelivered");
    }
    background.cancel();
    if let Some(server) = http {
        let _ = server.await;
    }
    let _ = readiness_watch.await;
    close(store).await;
    tracing::info!("worker stopped");
    Ok(())
}

/// The rate limits' key-value bucket, when a limit is on: created here in development,
/// `setup`'s in production (where a missing one stops the start: a limit that silently did
/// nothing would be worse than none).
async fn limits_bucket(
    client: &async_nats::Client,
    config: &Config,
) -> anyhow::Result<Option<limits::kv::Windows>> {
    let Some(longest) = config.limits.longest() else {
        return Ok(None);
    };
    let variables = limit_variables(config);
    if config.nats.mode == NatsMode::Core {
        return Err(UsageError(format!(
            "{variables} needs NATS_MODE=jetstream: its state is a JetStream key-value bucket"
        ))
        .into());
    }
    let js = async_nats::jetstream::new(client.clone());
    let bucket = if config.environment == Environment::Development {
        limits::kv::ensure_bucket(&js, longest).await?
    } else {
        limits::kv::existing_bucket(&js, longest).await?.ok_or_else(|| {
            UsageError(format!(
                "{variables} is on but the JetStream key-value bucket {} does not exist: \
                 run `notification-worker setup` to create it",
                limits::kv::BUCKET
            ))
        })?
    };
    Ok(Some(limits::kv::Windows::new(bucket)))
}

/// The limits that are on, by their variables.
fn limit_variables(config: &Config) -> String {
    let mut on = Vec::new();
    if config.limits.trigger_user.is_some() {
        on.push("RATE_LIMIT_TRIGGER_USER");
    }
    if config.limits.owner.is_on() {
        on.push("RATE_LIMIT_OWNER");
    }
    on.join(" and ")
}

/// The trigger-user limit, which the store stage applies.
fn trigger_user_limit(config: &Config, bucket: Option<&limits::kv::Windows>) -> Limits {
    let (Some(rate), Some(bucket)) = (config.limits.trigger_user, bucket) else {
        return Limits::default();
    };
    tracing::info!(%rate, bucket = limits::kv::BUCKET, "trigger-user limit on");
    Limits::new(Some(limits::trigger_user::TriggerUserLimit::new(
        bucket.clone(),
        rate,
    )))
}

/// The owner limit, which the personal channels apply.
fn owner_limit(config: &Config, bucket: Option<&limits::kv::Windows>) -> Option<limits::owner::OwnerLimit> {
    let bucket = bucket.filter(|_| config.limits.owner.is_on())?;
    for (channel, rate) in config.limits.owner.rates() {
        tracing::info!(%channel, %rate, bucket = limits::kv::BUCKET, "owner limit on");
    }
    Some(limits::owner::OwnerLimit::new(
        bucket.clone(),
        config.limits.owner,
    ))
}

/// What the personal channels share: the directory (cached), the defaults, the feeds.
async fn people(
    config: &Config,
    client: &async_nats::Client,
    feeds: Arc<AnyStore>,
    observers: &Observers,
    owner_limit: Option<limits::owner::OwnerLimit>,
) -> anyhow::Result<Arc<delivery::personal::People>> {
    let recipients = Arc::new(AnyRecipientStore::open(&config.store).await?);
    Ok(Arc::new(delivery::personal::People {
        directory: crate::recipients::Directory::new(recipients, config.delivery.recipient_cache),
        defaults: config.notify_defaults.clone(),
        feeds,
        js: async_nats::jetstream::new(client.clone()),
        metrics: Arc::clone(&observers.metrics),
        owner_limit,
    }))
}

/// What the recipient directory's sync reads: the `RECIPIENTS` consumer and its dead
/// letters.
struct RecipientSource {
    source: Source,
    dead_letters: DeadLetters,
    limits: input::ConsumerLimits,
}

/// The `RECIPIENTS` consumer, or `None` when a production deployment has no such stream.
///
/// The stream is created here in development only, like the outbox; in production it is
/// `setup`'s. A deployment from before the directory existed has no stream: the worker says
/// once that the directory is not synced and stores notifications exactly as before.
async fn recipient_source(
    js: &async_nats::jetstream::Context,
    config: &Config,
) -> anyhow::Result<Option<RecipientSource>> {
    let stream = if config.environment == Environment::Development {
        input::ensure_recipients_stream(js).await?
    } else {
        match input::existing_stream(js, input::RECIPIENTS_STREAM).await? {
            Some(stream) => stream,
            None => {
                tracing::info!(
                    stream = input::RECIPIENTS_STREAM,
                    "the recipient directory is not synced: stream RECIPIENTS does not exist \
                     (run `notification-worker setup` to create it); notifications are stored as before"
                );
                return Ok(None);
            }
        }
    };
    let (consumer, limits) = input::ensure_consumer_on(
        &stream,
        input::RECIPIENTS_CONSUMER,
        crate::recipients::RECIPIENTS_SUBJECT_FILTER,
        input::ACK_WAIT,
    )
    .await?;
    input::warn_if_slow_to_recover(input::RECIPIENTS_CONSUMER, &limits);
    let dead_letters = DeadLetters::for_recipients(js, &config.dead_letters).await?;
    let source = Source::jetstream(consumer, stream.cached_info().created)?;
    Ok(Some(RecipientSource {
        source,
        dead_letters,
        limits,
    }))
}

/// Starts the recipient directory's sync beside the notifications, until `shutdown`.
async fn start_recipient_sync(
    sync: RecipientSource,
    config: &Config,
    observers: &Observers,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let store = Arc::new(AnyRecipientStore::open(&config.store).await?);
    tracing::info!(
        stream = input::RECIPIENTS_STREAM,
        consumer = input::RECIPIENTS_CONSUMER,
        directory = %store.describe(),
        "recipient directory synced from stream RECIPIENTS"
    );
    let settings = processing::RecipientSyncSettings {
        in_flight: processing::RECIPIENT_IN_FLIGHT,
        ack_wait: sync.limits.ack_wait,
        max_deliveries: sync.limits.max_deliveries,
        allow_http_endpoints: config.environment == Environment::Development,
        shutdown_grace: SHUTDOWN_GRACE,
    };
    Ok(tokio::spawn(processing::run_recipient_sync(
        sync.source,
        store,
        sync.dead_letters,
        Arc::clone(&observers.metrics),
        settings,
        shutdown,
    )))
}

/// A tombstone must outlive every event older than its remove that can still arrive: one
/// still in the stream (redelivered, or a new consumer reading from the start), or a dead
/// letter replayed with its original version. Otherwise such an event, arriving after the
/// tombstone expired, would bring back a notification its remove deleted.
fn check_tombstone_lifetime(ttl: Duration, streams: &[(&str, Duration)]) -> anyhow::Result<()> {
    if ttl >= crate::config::FOREVER {
        return Ok(());
    }
    for (stream, max_age) in streams {
        let days = |age: Duration| age.as_secs_f64() / 86_400.0;
        if max_age.is_zero() {
            anyhow::bail!(
                "stream {stream} keeps messages forever (no max age), but tombstones are kept {:.1} days \
                 (NOTIF_TOMBSTONE_TTL): an event replayed from it later could bring back a removed \
                 notification. Give the stream a max age (e.g. `nats stream edit {stream} --max-age 7d`) \
                 or set NOTIF_TOMBSTONE_TTL=forever",
                days(ttl)
            );
        }
        if *max_age > ttl {
            anyhow::bail!(
                "stream {stream} keeps messages {:.1} days but tombstones are kept {:.1} days \
                 (NOTIF_TOMBSTONE_TTL): set NOTIF_TOMBSTONE_TTL to at least {}d",
                days(*max_age),
                days(ttl),
                max_age.as_secs().div_ceil(86_400)
            );
        }
    }
    Ok(())
}

/// Closes the store before the process exits: for SQLite, the writer commits what it holds,
/// checkpoints the WAL into the database file and closes its connections (on drop).
async fn close(store: Arc<AnyStore>) {
    match Arc::try_unwrap(store) {
        // Dropping joins the store's threads: off the async runtime's threads.
        Ok(store) => {
            let _ = tokio::task::spawn_blocking(move || drop(store)).await;
        }
        Err(_) => {
            tracing::warn!("the store is still in use after the shutdown grace; exiting without closing it")
        }
    }
}

/// Keeps readiness and `nats_connected` current: NATS state every second, a store probe
/// every second (cheap: `SELECT 1` or DescribeTable).
async fn watch_readiness(
    client: async_nats::Client,
    store: Option<Arc<AnyStore>>,
    readiness: Arc<Readiness>,
    observers: Observers,
    stop: CancellationToken,
) {
    let mut last_problem: Option<String> = None;
    loop {
        let connected = client.connection_state() == async_nats::connection::State::Connected;
        readiness.set_nats_connected(connected);
        observers.metrics.set_nats_connected(connected);
        let problem = match &store {
            Some(store) => store.probe().await.err().map(|error| error.message),
            None => None,
        };
        if problem != last_problem {
            match &problem {
                Some(problem) => tracing::warn!(problem, "store probe failed: not ready"),
                None if last_problem.is_some() => tracing::info!("store probe answers again"),
                None => {}
            }
        }
        readiness.set_store(problem.clone());
        last_problem = problem;
        observers
            .metrics
            .set_ready(readiness.status(observers.health.is_paused()).ready);
        tokio::select! {
            () = tokio::time::sleep(PROBE_EVERY) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// Keeps the consumer's backlog current for autoscalers (`notification_worker_consumer_pending`).
/// While events arrive, each delivery's metadata carries the backlog (the dispatcher sets it);
/// the consumer's info is read only when none came for a while (idle, or intake paused).
/// Reading it costs the server: nats-server 2.9 computes a filtered consumer's pending count
/// by walking the stream's messages when the stream holds several subjects, and does so under
/// the locks deliveries need; read every 5 s during a drain of realistic traffic, it stalled
/// the deliveries for seconds (BENCHMARKS.md, "Main rows: realistic traffic").
async fn watch_backlog(mut consumer: PullConsumer, observers: Observers, stop: CancellationToken) {
    loop {
        if !observers.metrics.take_pending_seen() {
            match consumer.info().await {
                Ok(info) => observers.metrics.set_consumer_pending(info.num_pending),
                Err(error) => tracing::debug!(%error, "cannot read the consumer's backlog"),
            }
        }
        tokio::select! {
            () = tokio::time::sleep(PENDING_EVERY) => {}
            () = stop.cancelled() => return,
        }
    }
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("shutdown requested: finishing in-flight events");
    shutdown.cancel();
}
