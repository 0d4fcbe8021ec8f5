//! The worker binary, measured as a user runs it: a pre-published backlog drained from
//! process start to the last ack, latency at a fixed offered rate, start to ready.

use super::ceilings::Rate;
use super::process::{self, Cost};
use super::requests::RequestCounter;
use super::support::delay_proxy::DelayProxy;
use super::support::sockudo::Sockudo;
use super::support::traffic;
use super::support::{
    Dynalite, NatsServer, base_env, command, command_for, free_port, like, publish_backlog_of,
    worker_consumer,
};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Sqlite,
    DynamoDb,
    /// DynamoDB behind a proxy that counts the worker's requests by operation: for counting,
    /// not for timing.
    DynamoDbCounted,
    /// DynamoDB behind a proxy that delays every byte [`NETWORK_DELAY`] each way: a network
    /// between the worker and its table.
    DynamoDbDelayed,
}

/// The one-way delay of [`Store::DynamoDbDelayed`].
pub const NETWORK_DELAY: Duration = Duration::from_millis(2);

pub struct Drain {
    pub rate: Rate,
    pub cost: Cost,
    /// CPU seconds nats-server spent from the worker's start to the drain's end: its share
    /// of the work (delivering, taking acks, storing outbox jobs), which the worker cannot
    /// remove.
    pub server_cpu_seconds: f64,
    /// With channel `pusher` on: from the drain's start until sockudo accepted every job.
    pub deliveries: Option<Deliveries>,
    /// On `Store::DynamoDbCounted`: the drain's DynamoDB requests by operation.
    pub requests: Option<BTreeMap<String, u64>>,
}

/// The delivery stage's side of a drain with channel `pusher` on.
pub struct Deliveries {
    /// Jobs (one per created notification) from process start until the channel's
    /// consumer has acknowledged the whole outbox.
    pub rate: Rate,
    /// The worker process's cost at that moment (store and delivery stages together).
    pub cost: Cost,
}

/// Whether a drain runs with the delivery stage: no channel (as before the delivery stage
/// existed), or channel `pusher` against a sockudo started for the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Off,
    Pusher,
    /// Channel `nats` configured but the worker runs `--stage store`: the store path with
    /// its outbox announcements alone, the delivery stage elsewhere (not running here).
    Announce,
    /// No channel, `RATE_LIMIT_TRIGGER_USER` on: every event of the backlog is a new trigger
    /// user's, so every create is admitted with a key-value read and a write (the limit's
    /// dearest path).
    Limited,
    /// No channel, `AGGREGATE` on for likes: each like joins its post's aggregate.
    Aggregated,
    /// `Limited` and `Aggregated` together: every like is admitted, then joins.
    LimitedAndAggregated,
}

impl Delivery {
    fn limited(self) -> bool {
        matches!(self, Delivery::Limited | Delivery::LimitedAndAggregated)
    }

    fn aggregated(self) -> bool {
        matches!(self, Delivery::Aggregated | Delivery::LimitedAndAggregated)
    }
}

/// What a drain's backlog holds. The narrow backlogs are likes, each from a trigger user of
/// its own, to 97 owners; only aggregation tells them apart (without it every like is a
/// notification).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backlog {
    /// Narrow: all of each owner's `post-1`; aggregated, 97 aggregates of about events / 97
    /// actors.
    OnePostPerOwner,
    /// Narrow: ten likes per post; aggregated, a first like then nine that join, on small
    /// aggregates.
    TenPerPost,
    /// Realistic traffic: Zipf owners over 100,000 users, mixed types, unlikes and repeats
    /// (`tests/support/traffic.rs`).
    Realistic,
}

impl Backlog {
    async fn publish(self, js: &async_nats::jetstream::Context, events: usize) {
        match self {
            Backlog::OnePostPerOwner => publish_backlog_of(js, events, |_| "post-1".to_owned()).await,
            // Like `i` is owner `i % 97`'s: each run of 970 likes gives every owner ten.
            Backlog::TenPerPost => publish_backlog_of(js, events, |i| format!("post-{}", i / 970)).await,
            Backlog::Realistic => traffic::publish(js, &traffic::realistic(events)).await,
        }
    }
}

/// The event types of the `Aggregated` runs (the backlog has likes only).
const AGGREGATED_TYPES: &str = "post.like,comment.like,user.follow";

/// The limit of the `Limited` runs: never reached by the backlog (one create per user).
const LIMITED_RATE: &str = "100/1m";

/// The Pusher channel template of the runs: the worker's default, one public channel per owner.
const PUSHER_CHANNEL: &str = "user-{owner}-notifications";
/// The `nats` channel's subject template of the announce runs.
const ANNOUNCE_SUBJECT: &str = "users.{owner}.notifications";

impl Drain {
    pub fn events_per_second(&self) -> f64 {
        self.rate.per_second()
    }

    pub fn cpu_seconds_per_100k(&self) -> f64 {
        self.cost.cpu_seconds * 100_000.0 / self.rate.events as f64
    }

    /// One line for the bench's progress log.
    pub fn figures(&self) -> String {
        format!(
            "{:.0} events/s, {:.2} CPU s/100k (nats-server {:.2}), peak RSS {:.1} MiB",
            self.events_per_second(),
            self.cpu_seconds_per_100k(),
            self.server_cpu_seconds_per_100k(),
            self.cost.peak_rss_mib
        )
    }

    pub fn server_cpu_seconds_per_100k(&self) -> f64 {
        self.server_cpu_seconds * 100_000.0 / self.rate.events as f64
    }
}

pub struct Latency {
    pub samples: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub p999: Duration,
}

struct Setup {
    nats: NatsServer,
    _dynamo: Option<Dynalite>,
    sockudo: Option<Sockudo>,
    requests: Option<RequestCounter>,
    _delay: Option<DelayProxy>,
    dir: tempfile::TempDir,
    env: Vec<(&'static str, String)>,
}

fn prepare(store: Store, concurrency: usize) -> Setup {
    prepare_with(store, concurrency, Delivery::Off)
}

fn prepare_with(store: Store, concurrency: usize, delivery: Delivery) -> Setup {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&nats, dir.path());
    env.push(("WORKER_CONCURRENCY", concurrency.to_string()));
    let dynamo = (store != Store::Sqlite).then(Dynalite::start);
    if let Some(dynamo) = &dynamo {
        env.extend(dynamo.worker_env("bench-notifications"));
    }
    let requests = dynamo
        .as_ref()
        .filter(|_| store == Store::DynamoDbCounted)
        .map(|dynamo| RequestCounter::start(dynamo.port));
    if let Some(requests) = &requests {
        env.retain(|(name, _)| *name != "AWS_ENDPOINT_URL_DYNAMODB");
        env.push((
            "AWS_ENDPOINT_URL_DYNAMODB",
            format!("http://127.0.0.1:{}", requests.port),
        ));
    }
    let delay = dynamo
        .as_ref()
        .filter(|_| store == Store::DynamoDbDelayed)
        .map(|dynamo| DelayProxy::start(dynamo.port, NETWORK_DELAY));
    if let Some(delay) = &delay {
        env.retain(|(name, _)| *name != "AWS_ENDPOINT_URL_DYNAMODB");
        env.push((
            "AWS_ENDPOINT_URL_DYNAMODB",
            format!("http://127.0.0.1:{}", delay.port),
        ));
    }
    let sockudo = (delivery == Delivery::Pusher).then(Sockudo::start);
    if let Some(sockudo) = &sockudo {
        env.extend(sockudo.worker_env(PUSHER_CHANNEL));
    }
    if delivery == Delivery::Announce {
        // Any channel makes the store stage announce, and the job is the same for all; the
        // `nats` channel needs no server of its own (no delivery stage runs here anyway).
        env.push(("REALTIME_NATS_SUBJECT", ANNOUNCE_SUBJECT.to_owned()));
    }
    if delivery.limited() {
        env.push(("RATE_LIMIT_TRIGGER_USER", LIMITED_RATE.to_owned()));
    }
    if delivery.aggregated() {
        env.push(("AGGREGATE", AGGREGATED_TYPES.to_owned()));
    }
    let setup = drained_worker(dir.path(), &env).arg("setup").output().unwrap();
    assert!(
        setup.status.success(),
        "{}",
        String::from_utf8_lossy(&setup.stderr)
    );
    Setup {
        nats,
        _dynamo: dynamo,
        sockudo,
        requests,
        _delay: delay,
        dir,
        env,
    }
}

/// The worker the drains measure: this build, or `BENCH_WORKER_BIN` (another build, e.g. the
/// previous release, measured alternately with this one on the same machine and day).
fn drained_worker(dir: &std::path::Path, env: &[(&'static str, String)]) -> std::process::Command {
    match std::env::var_os("BENCH_WORKER_BIN") {
        Some(program) => command_for(std::path::Path::new(&program), dir, env),
        None => command(dir, env),
    }
}

fn stop(mut child: Child) {
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
}

pub async fn drain(store: Store, events: usize, concurrency: usize) -> Drain {
    drain_with(store, events, concurrency, Delivery::Off).await
}

/// [`drain`], with or without the delivery stage in the same worker process. The store
/// drain's clock stops as without it (the events consumer is done); with channel `pusher`,
/// a second clock runs on until the channel's consumer has acknowledged every job.
pub async fn drain_with(store: Store, events: usize, concurrency: usize, delivery: Delivery) -> Drain {
    drain_of(store, events, Backlog::OnePostPerOwner, concurrency, delivery).await
}

/// [`drain_with`], of `backlog`.
pub async fn drain_of(
    store: Store,
    events: usize,
    backlog: Backlog,
    concurrency: usize,
    delivery: Delivery,
) -> Drain {
    let setup = prepare_with(store, concurrency, delivery);
    let js = setup.nats.jetstream().await;
    backlog.publish(&js, events).await;
    let mut consumer = worker_consumer(&js).await;
    let server_cpu = || setup.nats.pid().map_or(0.0, |pid| process::cost(pid).cpu_seconds);
    // The backlog's publishing is not the drain's: count the server's CPU from here.
    let server_cpu_before = server_cpu();
    // Nor are `setup`'s requests.
    if let Some(requests) = &setup.requests {
        requests.take();
    }

    let metrics_port = free_port();
    let mut env = setup.env.clone();
    env.retain(|(name, _)| *name != "HTTP_ADDR");
    env.push(("HTTP_ADDR", format!("127.0.0.1:{metrics_port}")));

    let started = Instant::now();
    // Info logs are written as in production (one line per event), to /dev/null.
    let mut worker = drained_worker(setup.dir.path(), &env);
    worker.arg("run").stdout(Stdio::null()).stderr(Stdio::null());
    // For looking into a drain: BENCH_WORKER_LOG=file keeps the worker's log lines in
    // file.Sqlite, file.DynamoDb, ... (the last drain of each store).
    if let Some(path) = std::env::var_os("BENCH_WORKER_LOG") {
        let mut path = path;
        path.push(format!(".{store:?}"));
        worker.stdout(std::fs::File::create(path).unwrap());
    }
    if delivery == Delivery::Announce {
        worker.args(["--stage", "store"]);
    }
    let child = match std::env::var_os("BENCH_PROFILE") {
        // Sampled with perf (cpu-clock works where hardware counters do not).
        Some(output) => {
            let mut perf = std::process::Command::new("perf");
            perf.args(["record", "-e", "cpu-clock", "-F", "999", "-g", "-o"])
                .arg(output)
                .arg("--");
            perf.arg(worker.get_program()).args(worker.get_args());
            perf.env_clear()
                .envs(worker.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))));
            perf.current_dir(setup.dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            perf.spawn().unwrap()
        }
        None => worker.spawn().unwrap(),
    };
    // Done when the worker has settled every event (its own count, from its metrics: cheap)
    // and the consumer confirms it (nothing pending, nothing waiting for an ack). The
    // consumer's info is asked only once the count is there: nats-server 2.9 computes its
    // pending count by walking the current block's messages when the stream holds several
    // subjects, and asked every 5 ms that walk starved the deliveries of realistic traffic.
    loop {
        if settled(metrics_port) >= events as u64 {
            let info = consumer.info().await.unwrap();
            if info.num_pending == 0
                && info.num_ack_pending == 0
                && info.delivered.stream_sequence as usize >= events
            {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = started.elapsed();
    let cost = process::cost(child.id());
    let server_cpu_seconds = server_cpu() - server_cpu_before;
    let deliveries = match &setup.sockudo {
        Some(sockudo) if delivery == Delivery::Pusher => {
            wait_for_deliveries(&js, events, sockudo).await;
            Some(Deliveries {
                rate: Rate {
                    events,
                    took: started.elapsed(),
                },
                cost: process::cost(child.id()),
            })
        }
        _ => None,
    };
    stop(child);
    Drain {
        rate: Rate { events, took },
        cost,
        server_cpu_seconds,
        deliveries,
        requests: setup.requests.as_ref().map(RequestCounter::take),
    }
}

/// Waits until channel `pusher`'s consumer has delivered the whole outbox (see
/// [`wait_for_channel`]); sockudo's log explains a timeout.
async fn wait_for_deliveries(js: &async_nats::jetstream::Context, jobs: usize, sockudo: &Sockudo) {
    let channel = notification_worker::delivery::ChannelName::Pusher;
    if let Err(problem) = channel_settled(js, channel, jobs).await {
        panic!("{problem}; sockudo log:\n{}", sockudo.log());
    }
}

/// Waits until `channel`'s consumer has nothing pending, nothing waiting for an ack, and its
/// ack floor at the outbox's last sequence, with at least `jobs` jobs in the outbox.
pub async fn wait_for_channel(
    js: &async_nats::jetstream::Context,
    channel: notification_worker::delivery::ChannelName,
    jobs: usize,
) {
    if let Err(problem) = channel_settled(js, channel, jobs).await {
        panic!("{problem}");
    }
}

async fn channel_settled(
    js: &async_nats::jetstream::Context,
    channel: notification_worker::delivery::ChannelName,
    jobs: usize,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(900);
    // The outbox and the consumer appear once the worker has stored its first event.
    let (mut outbox, mut consumer) = loop {
        let outbox = js.get_stream(notification_worker::delivery::OUTBOX_STREAM).await;
        if let Ok(outbox) = outbox {
            let name = notification_worker::delivery::consumer_name(channel);
            if let Ok(consumer) = outbox
                .get_consumer::<async_nats::jetstream::consumer::pull::Config>(&name)
                .await
            {
                break (outbox, consumer);
            }
        }
        if Instant::now() > deadline {
            return Err(format!("no outbox consumer for channel {channel}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    loop {
        let last = outbox.info().await.unwrap().state.last_sequence;
        let info = consumer.info().await.unwrap();
        if last as usize >= jobs
            && info.num_pending == 0
            && info.num_ack_pending == 0
            && info.ack_floor.stream_sequence == last
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "channel {channel} did not deliver {jobs} jobs (outbox at {last}, ack floor {}, pending {}, ack pending {})",
                info.ack_floor.stream_sequence, info.num_pending, info.num_ack_pending
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Starts the worker with its JSON logs read line by line: `on_event` gets each log event
/// and the moment it was read. Returns once the worker says it started.
fn start_reading_logs(
    setup: &Setup,
    mut on_event: impl FnMut(&serde_json::Value, Instant) + Send + 'static,
) -> Child {
    let mut child = command(setup.dir.path(), &setup.env)
        .arg("run")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let at = Instant::now();
            let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if event["message"] == "worker started" {
                let _ = ready_tx.send(());
            }
            on_event(&event, at);
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the worker starts");
    child
}

pub async fn latency(rate: u64, seconds: u64) -> Latency {
    let setup = prepare(Store::Sqlite, 64);
    let arrivals: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let child = {
        let arrivals = Arc::clone(&arrivals);
        start_reading_logs(&setup, move |event, at| {
            if event["outcome"] == "created"
                && let Some(seq) = event["stream_seq"].as_u64()
            {
                arrivals.lock().unwrap().insert(seq, at);
            }
        })
    };

    let js = setup.nats.jetstream().await;
    let total = rate * seconds;
    let sent: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut acks = Vec::with_capacity(total as usize);
    for i in 0..total {
        ticker.tick().await;
        let at = Instant::now();
        let body = like(&format!("owner-{}", i % 97), &format!("fan-{i}"), "post-1");
        let ack = js.publish("notifications.post.like", body.into()).await.unwrap();
        let sent = Arc::clone(&sent);
        acks.push(tokio::spawn(async move {
            let seq = ack.await.unwrap().sequence;
            sent.lock().unwrap().insert(seq, at);
        }));
    }
    for ack in acks {
        ack.await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while arrivals.lock().unwrap().len() < total as usize && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop(child);
    let sent = sent.lock().unwrap();
    let arrivals = arrivals.lock().unwrap();
    let mut latencies: Vec<Duration> = sent
        .iter()
        .filter_map(|(seq, at)| {
            arrivals
                .get(seq)
                .map(|arrived| arrived.saturating_duration_since(*at))
        })
        .collect();
    assert_eq!(latencies.len(), total as usize, "every event arrived");
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Latency {
        samples: latencies.len(),
        p50: at(0.50),
        p99: at(0.99),
        p999: at(0.999),
    }
}

/// From process start to `/readyz` answering 200 (median of 5 starts).
pub async fn start_to_ready() -> Duration {
    let setup = prepare(Store::Sqlite, 64);
    let mut runs = Vec::new();
    for _ in 0..5 {
        let port = free_port();
        let mut env = setup.env.clone();
        env.retain(|(name, _)| *name != "HTTP_ADDR");
        env.push(("HTTP_ADDR", format!("127.0.0.1:{port}")));
        let started = Instant::now();
        let child = command(setup.dir.path(), &env)
            .arg("run")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        while !ready(port) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the worker never became ready"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        runs.push(started.elapsed());
        stop(child);
    }
    runs.sort();
    runs[runs.len() / 2]
}

/// The response to `GET path` from the worker's HTTP listener on `port` (HTTP/1.0, so the
/// server closes); `None` while it is not answering.
fn http_get_local(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .ok()?;
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    Some(response)
}

/// Events the worker on `port` has settled (acknowledged, whatever the outcome), from its
/// `notification_worker_events_total`; 0 while it is not answering yet.
fn settled(port: u16) -> u64 {
    http_get_local(port, "/metrics").map_or(0, |response| {
        response
            .lines()
            .filter(|line| line.starts_with("notification_worker_events_total{"))
            .filter_map(|line| line.rsplit_once(' '))
            .filter_map(|(_, value)| value.parse::<f64>().ok())
            .sum::<f64>() as u64
    })
}

fn ready(port: u16) -> bool {
    http_get_local(port, "/readyz")
        .is_some_and(|response| response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"))
}

/// Commit-to-WebSocket, measured from outside: likes published at a steady `rate` for
/// `seconds` to `owners` owners (a distinct trigger user each, so each is a new
/// notification), channel `pusher` on against a sockudo started for the run, and one
/// WebSocket client subscribed to every owner's channel. For each `new-notification` it
/// receives: receive time − the time just before the event's `publish` to NATS. So it covers
/// NATS, the store commit, the outbox announce, the delivery consumer, the HTTP call to
/// sockudo and sockudo's fan-out to the socket.
pub async fn websocket_latency(rate: u64, seconds: u64, owners: usize) -> Latency {
    let setup = prepare_with(Store::Sqlite, 64, Delivery::Pusher);
    let sockudo = setup.sockudo.as_ref().unwrap();
    let mut subscriber = sockudo.subscriber().await;
    for owner in 0..owners {
        subscriber
            .subscribe(&format!("user-owner-{owner}-notifications"))
            .await;
    }
    let child = start_reading_logs(&setup, |_, _| {});

    let total = (rate * seconds) as usize;
    // The receiving side: arrival time per trigger user's index ("fan-{i}").
    let receiver = tokio::spawn(async move {
        let mut arrivals: Vec<Option<Instant>> = vec![None; total];
        let mut received = 0;
        while received < total {
            let Some(event) = subscriber.next_event(Duration::from_secs(60)).await else {
                break;
            };
            let at = Instant::now();
            if event.event != "new-notification" {
                continue;
            }
            let index = event.data["userid"]
                .as_str()
                .and_then(|user| user.strip_prefix("fan-"))
                .and_then(|i| i.parse::<usize>().ok());
            if let Some(slot) = index.and_then(|i| arrivals.get_mut(i))
                && slot.is_none()
            {
                *slot = Some(at);
                received += 1;
            }
        }
        arrivals
    });

    let js = setup.nats.jetstream().await;
    let mut sent = Vec::with_capacity(total);
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut acks = Vec::with_capacity(total);
    for i in 0..total {
        ticker.tick().await;
        let body = like(&format!("owner-{}", i % owners), &format!("fan-{i}"), "post-1");
        sent.push(Instant::now());
        let ack = js.publish("notifications.post.like", body.into()).await.unwrap();
        acks.push(tokio::spawn(async move { ack.await.unwrap() }));
    }
    for ack in acks {
        ack.await.unwrap();
    }
    let arrivals = receiver.await.unwrap();
    stop(child);
    let mut latencies: Vec<Duration> = sent
        .iter()
        .zip(&arrivals)
        .filter_map(|(sent, arrived)| arrived.map(|arrived| arrived.saturating_duration_since(*sent)))
        .collect();
    assert_eq!(
        latencies.len(),
        total,
        "every event reached the WebSocket; sockudo log:\n{}",
        sockudo.log()
    );
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Latency {
        samples: latencies.len(),
        p50: at(0.50),
        p99: at(0.99),
        p999: at(0.999),
    }
}
