//! Held messages are kept alive: however long a message waits inside the worker (for its
//! key's lane, for a store call, in the SQLite writer's queue, during a slow commit), the
//! server must not redeliver it while the worker still holds it.

mod support;

use notification_worker::store::NotificationStore;
use std::time::Duration;
use support::*;

const WITHIN: Duration = Duration::from_secs(120);
const ACK_WAIT: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_held_longer_than_ack_wait_are_not_redelivered() {
    let nats = NatsServer::start();
    create_consumer_with_ack_wait(&nats, ACK_WAIT).await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&nats, dir.path());
    // `received` (debug) carries each delivery's count: a redelivery shows as delivered > 1.
    env.retain(|(name, _)| *name != "LOG_LEVEL");
    env.push(("LOG_LEVEL", "info,notification_worker=debug".into()));
    let worker = Worker::start(dir.path(), &env);

    // An outside connection holds SQLite's write lock: every commit waits behind it (well
    // within the writer's busy timeout, so the store call is slow rather than failing).
    let blocker = sqlite(dir.path());
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    const KEYS: usize = 200;
    let js = nats.jetstream().await;
    for i in 0..KEYS {
        let body = like(&format!("owner-{}", i % 7), &format!("fan-{i}"), "post-1");
        publish(&js, "notifications.post.like", body.clone()).await;
        // Same key: waits in the lane behind the like.
        publish(&js, "notifications.post.unlike", body).await;
    }
    eventually("every message held by the worker", WITHIN, || async {
        consumer_backlog(&nats).await == (0, 2 * KEYS)
    })
    .await;
    // Several AckWaits with every message held: a worker that does not keep them alive
    // has them redelivered. (This pause is the slow store being emulated, not a wait for
    // a condition.)
    std::thread::sleep(4 * ACK_WAIT);
    blocker.execute_batch("COMMIT").unwrap();

    eventually("the consumer to be drained", WITHIN, || async {
        consumer_backlog(&nats).await == (0, 0)
    })
    .await;
    wait_until("every outcome logged", WITHIN, || {
        worker.count("created") + worker.count("removed") >= 2 * KEYS
    });
    let redelivered: Vec<String> = worker
        .events()
        .iter()
        .filter(|event| event["message"] == "received" && event["delivered"].as_u64() > Some(1))
        .map(|event| event.to_string())
        .collect();
    assert!(
        redelivered.is_empty(),
        "{} redeliveries while held, e.g. {:?}",
        redelivered.len(),
        redelivered.first()
    );
    assert_eq!(
        (
            worker.count("created"),
            worker.count("removed"),
            worker.count("duplicate"),
            worker.count("absent")
        ),
        (KEYS, KEYS, 0, 0),
        "each event processed once"
    );
    assert_eq!(count_rows(dir.path()), 0);
    assert!(dead_letters(&nats).await.is_empty(), "nothing for max_deliveries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_waiting_for_a_slow_dynamodb_are_not_redelivered() {
    let nats = NatsServer::start();
    create_consumer_with_ack_wait(&nats, ACK_WAIT).await;
    let dynamo = Dynalite::start();
    const TABLE: &str = "slow-notifications";
    dynamo.store(TABLE).await.setup().await.unwrap();
    // Every request to the store takes longer than AckWait.
    let proxy = DelayingProxy::start(dynamo.port, ACK_WAIT + ACK_WAIT / 2);
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&nats, dir.path());
    env.extend(dynamo.worker_env(TABLE));
    env.retain(|(name, _)| !matches!(*name, "AWS_ENDPOINT_URL_DYNAMODB" | "LOG_LEVEL"));
    env.push(("AWS_ENDPOINT_URL_DYNAMODB", proxy.endpoint()));
    env.push(("LOG_LEVEL", "info,notification_worker=debug".into()));
    // Four store calls at once: of the eight events held, four wait for a permit.
    env.push(("WORKER_CONCURRENCY", "4".into()));
    let worker = Worker::start(dir.path(), &env);

    const EVENTS: usize = 24;
    let js = nats.jetstream().await;
    publish_likes(&js, "user-1", EVENTS).await;
    eventually("the consumer to be drained", WITHIN, || async {
        consumer_backlog(&nats).await == (0, 0)
    })
    .await;
    wait_until("every outcome logged", WITHIN, || {
        worker.count("created") + worker.count("duplicate") >= EVENTS
    });
    let redelivered = worker
        .events()
        .iter()
        .filter(|event| event["message"] == "received" && event["delivered"].as_u64() > Some(1))
        .count();
    assert_eq!(redelivered, 0, "redeliveries while held");
    assert_eq!((worker.count("created"), worker.count("duplicate")), (EVENTS, 0));
    assert!(dead_letters(&nats).await.is_empty());
}
