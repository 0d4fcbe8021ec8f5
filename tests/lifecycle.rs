//! The worker as a process: crashes, restarts, replicas, signals, a store that fails, core mode.

mod support;

use notification_worker::domain::Id;
use notification_worker::store::NotificationStore;
use std::time::Duration;
use support::*;

const WITHIN: Duration = Duration::from_secs(120);

/// Two replicas, each key liked twice back to back (the two likes are pulled together and
/// often land on different replicas at once): one notification per key, reported created
/// once, the other like a duplicate. (Like/unlike races: tests/replicas.rs.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_on_one_consumer_apply_each_event_once() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&nats, dir.path());
    // Small pulls so that both replicas get a share.
    env.push(("WORKER_CONCURRENCY", "4".into()));
    let first = Worker::start(dir.path(), &env);
    let second = Worker::start(dir.path(), &env);
    const KEYS: usize = 1_500;
    let js = nats.jetstream().await;
    let mut pending = Vec::new();
    for key in 0..KEYS {
        let body = like(&format!("owner-{}", key % 97), &format!("fan-{key}"), "post-1");
        for _ in 0..2 {
            pending.push(
                js.publish("notifications.post.like", body.clone().into())
                    .await
                    .unwrap(),
            );
        }
    }
    for ack in pending {
        ack.await.unwrap();
    }

    let settled = || {
        first.count("created")
            + second.count("created")
            + first.count("duplicate")
            + second.count("duplicate")
    };
    wait_until("both workers to finish", WITHIN, || settled() == 2 * KEYS);
    eventually("the consumer to be drained", WITHIN, || async {
        consumer_backlog(&nats).await == (0, 0)
    })
    .await;
    assert!(
        first.count("created") > 0 && second.count("created") > 0,
        "both replicas took part"
    );
    assert_eq!(
        first.count("created") + second.count("created"),
        KEYS,
        "one creation per key"
    );
    assert_eq!(
        first.count("duplicate") + second.count("duplicate"),
        KEYS,
        "the other like of each key"
    );
    assert_eq!(count_rows(dir.path()), KEYS as i64);
    assert_eq!(distinct_ids(dir.path()), KEYS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_finishes_in_flight_events_and_exits_zero() {
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    let dir = tempfile::tempdir().unwrap();
    let env = base_env(&nats, dir.path());
    let mut worker = Worker::start(dir.path(), &env);
    const EVENTS: usize = 10_000;
    publish_backlog(&js, EVENTS).await;
    wait_until("the worker to be busy", WITHIN, || count_rows(dir.path()) > 0);

    let status = worker.terminate(Duration::from_secs(25));
    assert_eq!(status.code(), Some(0), "{}", worker.logs().join("\n"));
    worker.wait_for_log("worker stopped", Duration::from_secs(1));
    // Everything it logged as stored is stored, and everything stored was acknowledged:
    // nothing is waiting for an ack now that it is gone.
    assert_eq!(count_rows(dir.path()) as usize, worker.count("created"));
    let (pending, ack_pending) = consumer_backlog(&nats).await;
    assert_eq!(ack_pending, 0, "in-flight events were acknowledged before exit");
    assert_eq!(pending as usize + worker.count("created"), EVENTS);

    // The rest is there for the next start.
    let _next = Worker::start(dir.path(), &env);
    wait_until("the rest to be stored", WITHIN, || {
        count_rows(dir.path()) == EVENTS as i64
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_is_retried_and_not_acknowledged_while_the_store_fails() {
    let nats = NatsServer::start();
    let dynamo = Dynalite::start();
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&nats, dir.path());
    // In production `run` creates no DynamoDB table (shared infrastructure): the store fails
    // until `setup` runs.
    env.push(("ENVIRONMENT", "production".into()));
    env.extend(dynamo.worker_env("retried-notifications"));
    let worker = Worker::start(dir.path(), &env);
    let js = nats.jetstream().await;
    publish(&js, "notifications.post.like", like("user-1", "user-2", "post-1")).await;

    worker.wait_for_log("store unavailable", WITHIN);
    worker.wait_for_log("run `notification-worker setup`", WITHIN);
    assert_eq!(
        consumer_backlog(&nats).await,
        (0, 1),
        "delivered, not acknowledged"
    );

    run_setup(dir.path(), &env);
    let store = dynamo.store("retried-notifications").await;
    let owner = Id::parse("owner", "user-1").unwrap();
    eventually("the retried event to be stored", WITHIN, || async {
        store.feed(&owner, 5).await.is_ok_and(|feed| feed.len() == 1)
    })
    .await;
    eventually("the event to be acknowledged", WITHIN, || async {
        consumer_backlog(&nats).await == (0, 0)
    })
    .await;
    assert_eq!(worker.count("created"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_mode_consumes_with_a_queue_group_subscription() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&nats, dir.path());
    env.push(("NATS_MODE", "core".into()));
    let worker = Worker::start(dir.path(), &env);
    worker.wait_for_log("at-most-once", Duration::from_secs(5));
    let client = nats.client().await;
    // The subscription is live once "worker started" is logged; core NATS keeps nothing
    // for absent subscribers, which is exactly what the warning says.
    for i in 0..50 {
        let body = like("user-1", &format!("fan-{i}"), "post-1");
        client
            .publish("notifications.post.like", body.into())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    wait_until("the core-mode events to be stored", WITHIN, || {
        count_rows(dir.path()) == 50
    });
    // The outcome is logged just after the commit: wait for the lines, never race them.
    wait_until("the core-mode events logged as created", WITHIN, || {
        worker.count("created") == 50
    });
    assert_eq!(count_rows(dir.path()), 50, "each stored once");
}
