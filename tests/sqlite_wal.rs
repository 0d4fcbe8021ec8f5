//! The SQLite write-ahead log stays under `NOTIF_SQLITE_WAL_MAX` during a long drain with
//! keys spread over many owners; a reader holding an old snapshot is reported once and does
//! not stop the worker; and shutdown leaves the database file complete, with no WAL behind.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use support::*;

const MIB: u64 = 1024 * 1024;

/// Publishes likes number `keys` (each a distinct key), like `i` for owner `i % owners`:
/// consecutive events go to different owners, so every commit touches pages all over the
/// table and its index (the case that grew the WAL fastest). Thousands of publishes are in
/// flight at once.
async fn publish_spread(js: &async_nats::jetstream::Context, keys: std::ops::Range<usize>, owners: usize) {
    let mut pending = std::collections::VecDeque::with_capacity(4096);
    for i in keys {
        let body = like(
            &format!("owner-{}", i % owners),
            &format!("fan-{}", i / owners),
            "post-1",
        );
        pending.push_back(js.publish("notifications.post.like", body.into()).await.unwrap());
        if pending.len() == 4096 {
            pending.pop_front().unwrap().await.unwrap();
        }
    }
    for ack in pending {
        ack.await.unwrap();
    }
}

/// Samples the size of the `-wal` file every few milliseconds on a thread of its own and
/// keeps the largest seen.
struct WalSampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WalSampler {
    fn start(dir: &std::path::Path) -> WalSampler {
        let wal = dir.join("notifications.db-wal");
        let peak = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (peak, stop) = (Arc::clone(&peak), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let size = std::fs::metadata(&wal).map_or(0, |metadata| metadata.len());
                    peak.fetch_max(size, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        WalSampler {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for WalSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Waits until the consumer has nothing pending and nothing unacknowledged, failing at
/// once if `also_fine` says otherwise (the WAL went over its bound).
async fn wait_for_drain(
    nats: &NatsServer,
    within: Duration,
    mut also_fine: impl FnMut() -> Result<(), String>,
) {
    let js = nats.jetstream().await;
    let mut consumer = worker_consumer(&js).await;
    let deadline = Instant::now() + within;
    loop {
        if let Err(problem) = also_fine() {
            panic!("{problem}");
        }
        let info = consumer.info().await.unwrap();
        if info.num_pending == 0 && info.num_ack_pending == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the drain did not finish within {within:?}: {} pending, {} unacknowledged",
            info.num_pending,
            info.num_ack_pending
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_stays_under_its_bound_during_a_million_event_drain() {
    const EVENTS: usize = 1_000_000;
    const OWNERS: usize = 100_000;
    // The default NOTIF_SQLITE_WAL_MAX.
    const BOUND: u64 = 64 * MIB;
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&nats, dir.path());
    // The log line per event is much of a debug build's work per event, and this test is
    // about the WAL: outcomes only at warn, so that a million events drain in CI's time.
    env.retain(|(name, _)| *name != "LOG_LEVEL");
    env.push(("LOG_LEVEL", "info,notification_worker::processing=warn".into()));
    run_setup(dir.path(), &env);

    let sampler = WalSampler::start(dir.path());
    let started = Instant::now();
    let mut worker = Worker::start(dir.path(), &env);
    // Published while the worker drains (the publisher is faster, so a backlog builds up
    // at once): the writer never pauses for want of events.
    let js = nats.jetstream().await;
    let publisher = tokio::spawn(async move { publish_spread(&js, 0..EVENTS, OWNERS).await });
    let over_bound = || match sampler.peak() {
        // Fail as soon as it happens, rather than after gigabytes of WAL.
        peak if peak >= BOUND => Err(format!(
            "the WAL reached {:.1} MiB, over its bound of {} MiB",
            peak as f64 / MIB as f64,
            BOUND / MIB
        )),
        _ => Ok(()),
    };
    let deadline = Instant::now() + Duration::from_secs(900);
    while !publisher.is_finished() {
        over_bound().unwrap();
        assert!(Instant::now() < deadline, "publishing took over 900 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    publisher.await.unwrap();
    let published = started.elapsed();
    wait_for_drain(&nats, Duration::from_secs(900), over_bound).await;
    let drained = started.elapsed();
    let peak = sampler.peak();
    drop(sampler);
    eprintln!(
        "published {EVENTS} events in {published:.1?}, all applied after {drained:.1?}; WAL peak {:.1} MiB",
        peak as f64 / MIB as f64
    );
    assert!(peak < BOUND, "WAL peak {peak} bytes");
    assert!(peak > 0, "the sampler never saw the WAL file");
    assert_eq!(count_rows(dir.path()), EVENTS as i64, "every event stored once");
    assert!(worker.terminate(Duration::from_secs(60)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_checkpoints_the_wal_and_closes_the_database() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let env = base_env(&nats, dir.path());
    run_setup(dir.path(), &env);
    let mut worker = Worker::start(dir.path(), &env);
    publish_spread(&nats.jetstream().await, 0..5_000, 1_000).await;
    wait_for_drain(&nats, Duration::from_secs(60), || Ok(())).await;
    let wal = dir.path().join("notifications.db-wal");
    assert!(wal.exists(), "the WAL is in use while the worker runs");
    assert!(worker.terminate(Duration::from_secs(30)).success());
    // The last connection to close checkpoints what is left and deletes the WAL: the
    // database file alone holds every notification.
    assert!(
        !wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0,
        "a WAL of {} bytes was left behind",
        std::fs::metadata(&wal).map_or(0, |metadata| metadata.len())
    );
    let connection = rusqlite::Connection::open_with_flags(
        dir.path().join("notifications.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let rows: i64 = connection
        .query_row("SELECT COUNT(*) FROM notifications", [], |row| row.get(0))
        .unwrap();
    assert_eq!(rows, 5_000);
    worker.wait_for_log("sqlite store closed", Duration::from_secs(5));
    let events = worker.events();
    let closed = events
        .iter()
        .find(|event| event["message"] == "sqlite store closed")
        .expect("the close is logged");
    assert_eq!(closed["wal_checkpointed"], true, "{closed}");
}

/// The metric's value in a /metrics text.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_holding_a_snapshot_is_reported_once_and_writes_go_on() {
    const BOUND: u64 = 32 * MIB;
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&nats, dir.path());
    env.retain(|(name, _)| *name != "HTTP_ADDR");
    env.push(("HTTP_ADDR", "127.0.0.1:0".into()));
    env.push(("NOTIF_SQLITE_WAL_MAX", "32MiB".into()));
    run_setup(dir.path(), &env);
    let worker = Worker::start(dir.path(), &env);
    let http = worker.http_addr();
    let js = nats.jetstream().await;
    publish_spread(&js, 0..1_000, 1_000).await;
    wait_for_drain(&nats, Duration::from_secs(60), || Ok(())).await;

    // An outside reader (think `sqlite3` left in a transaction) takes a snapshot and keeps it.
    let reader = sqlite(dir.path());
    reader.execute_batch("BEGIN").unwrap();
    let _: i64 = reader
        .query_row("SELECT COUNT(*) FROM notifications", [], |row| row.get(0))
        .unwrap();
    let wal = dir.path().join("notifications.db-wal");
    let wal_size = || std::fs::metadata(&wal).map_or(0, |metadata| metadata.len());
    let mut published = 1_000;
    while wal_size() < BOUND {
        publish_spread(&js, published..published + 20_000, 100_000).await;
        published += 20_000;
        wait_for_drain(&nats, Duration::from_secs(120), || Ok(())).await;
        assert!(published < 1_000_000, "the WAL never grew past its bound");
    }
    // Writes went on past the bound, and the pinned log was reported once, and counted.
    assert_eq!(count_rows(dir.path()), published as i64);
    let warnings = worker
        .logs()
        .iter()
        .filter(|line| line.contains("WAL cannot be checkpointed"))
        .count();
    assert_eq!(warnings, 1, "{}", worker.logs().join("\n"));
    let (_, text) = http_get(&http, "/metrics");
    assert_eq!(metric(&text, "notification_worker_sqlite_wal_blocked_total"), 1.0);
    let busy = |mode: &str| {
        metric(
            &text,
            &format!(r#"notification_worker_sqlite_checkpoints_total{{mode="{mode}",result="busy"}}"#),
        )
    };
    assert!(busy("restart") + busy("truncate") >= 1.0, "{text}");

    // Once the reader ends, the writer truncates the WAL by itself, even with no new event.
    reader.execute_batch("COMMIT").unwrap();
    drop(reader);
    worker.wait_for_log("sqlite WAL back under", Duration::from_secs(30));
    assert!(wal_size() < BOUND, "WAL still {} bytes", wal_size());
    let (_, text) = http_get(&http, "/metrics");
    assert!(metric(&text, "notification_worker_sqlite_wal_bytes") < BOUND as f64);
    assert_eq!(
        metric(&text, "notification_worker_sqlite_wal_max_bytes"),
        BOUND as f64
    );
}
