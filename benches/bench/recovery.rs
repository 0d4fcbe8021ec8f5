//! Recovery after a crash: from SIGKILL of a replica holding 2,048 events to all of them
//! stored by another replica (SQLite), on the consumer as `setup` makes it.

use crate::support::*;
use std::time::{Duration, Instant};

/// What one replica holds at most on SQLite (its in-flight limit at WORKER_CONCURRENCY 64).
pub const HELD: usize = 2_048;
/// Runs whose median is reported.
const RUNS: usize = 3;
/// Longer than this is a failure to recover, not a measurement.
const GIVE_UP: Duration = Duration::from_secs(120);

/// The median of [`RUNS`] measurements of [`after_sigkill`].
pub async fn median() -> Duration {
    let mut runs = Vec::with_capacity(RUNS);
    for run in 1..=RUNS {
        let took = after_sigkill().await;
        eprintln!(
            "recovery run {run}/{RUNS}: {HELD} held events stored {:.2} s after the SIGKILL",
            took.as_secs_f64()
        );
        runs.push(took);
    }
    runs.sort();
    runs[RUNS / 2]
}

/// One crash: the victim holds exactly [`HELD`] events (an outside write lock on the SQLite
/// file keeps it from storing any), the survivor runs idle beside it; the clock runs from
/// the SIGKILL to the last of those events in the table.
async fn after_sigkill() -> Duration {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&nats, dir.path());
    env.push(("WORKER_CONCURRENCY", "64".into()));
    run_setup(dir.path(), &env);
    let mut victim = Worker::start(dir.path(), &env);
    let lock = sqlite(dir.path());
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    let js = nats.jetstream().await;
    publish_backlog(&js, HELD).await;
    let mut consumer = worker_consumer(&js).await;
    let publishing = Instant::now();
    loop {
        let info = consumer.info().await.unwrap();
        if info.num_pending == 0 && info.num_ack_pending == HELD {
            break;
        }
        assert!(
            publishing.elapsed() < GIVE_UP,
            "the victim never held every event"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Started now, it pulls nothing until the server redelivers the victim's events.
    let _survivor = Worker::start(dir.path(), &env);

    let killed = Instant::now();
    victim.kill();
    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);
    while count_rows(dir.path()) < HELD as i64 {
        assert!(killed.elapsed() < GIVE_UP, "the held events never came back");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    killed.elapsed()
}
