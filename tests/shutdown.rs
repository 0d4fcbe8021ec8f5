//! Shutdown order: what a worker does with the events it holds when SIGTERM comes while the
//! store is failing.

mod support;

use std::time::Duration;
use support::*;

const WITHIN: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_shutdown_a_handed_back_lane_hands_back_the_rest_of_its_key_untried() {
    let nats = NatsServer::start();
    create_consumer_with_ack_wait(&nats, Duration::from_secs(30)).await;
    let js = nats.jetstream().await;
    // One key's like, unlike, like: one lane, two events queued behind its head.
    let body = like("user-1", "user-2", "post-1");
    for subject in [
        "notifications.post.like",
        "notifications.post.unlike",
        "notifications.post.like",
    ] {
        publish(&js, subject, body.clone()).await;
    }
    let dynamo = Dynalite::start();
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&nats, dir.path());
    // Production creates no DynamoDB table: every write fails (the table is missing) and is
    // retried.
    env.push(("ENVIRONMENT", "production".into()));
    env.extend(dynamo.worker_env("missing-notifications"));
    let mut worker = Worker::start(dir.path(), &env);
    worker.wait_for_log("store unavailable; retrying", WITHIN);

    let status = worker.terminate(WITHIN);
    assert!(status.success());
    let logs = worker.logs();
    let after_signal = logs
        .iter()
        .skip_while(|line| !line.contains("shutdown requested"))
        .collect::<Vec<_>>();
    // The head may be inside one store call when the signal comes; the events behind it
    // must not be tried at all (one of them could succeed before the head is redelivered).
    let tried = after_signal
        .iter()
        .filter(|line| line.contains("store unavailable; retrying"))
        .count();
    assert!(
        tried <= 1,
        "{tried} store calls after the signal:\n{}",
        logs.join("\n")
    );
    assert_eq!(worker.count("handed_back"), 3);
    eventually("all three back in the stream, unacknowledged", WITHIN, || async {
        let (pending, ack_pending) = consumer_backlog(&nats).await;
        pending as usize + ack_pending == 3
    })
    .await;
}
