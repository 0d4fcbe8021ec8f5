//! `RATE_LIMIT_TRIGGER_USER`: at most N notifications created per trigger user in any
//! interval of the limit's period, counted across every replica (the state is in JetStream
//! key-value, bucket `NOTIFICATION_LIMITS`), with redeliveries never counted twice, removes
//! never limited, and a limit whose state cannot be reached pausing like a store outage.

mod support;

use std::time::Duration;
use support::*;

const WITHIN: Duration = Duration::from_secs(240);
const LIMIT: usize = 100;
/// Likes the noisy trigger user sends, back to back: far more than the limit, all within
/// one period.
const NOISY_LIKES: usize = 1_000;
const NOISY: &str = "noisy-fan";
/// Another trigger user, liking at the same time, well under the limit.
const QUIET: &str = "quiet-fan";
const QUIET_LIKES: usize = 40;
const THROTTLED_SERIES: &str = r#"notification_worker_throttled_total{limit="trigger_user"}"#;

fn owner_of(post: usize) -> String {
    format!("owner-{}", post % 37)
}

fn post(post: usize) -> String {
    format!("post-{post}")
}

/// Publishes the noisy user's likes of 1,000 different posts (and the quiet user's few),
/// as fast as the stream acknowledges them.
async fn publish_likes_of(js: &async_nats::jetstream::Context, subject: &str) {
    let mut pending = Vec::new();
    for i in 0..NOISY_LIKES {
        let body = like(&owner_of(i), NOISY, &post(i));
        pending.push(js.publish(subject.to_owned(), body.into()).await.unwrap());
        if i < QUIET_LIKES {
            let body = like(&owner_of(i), QUIET, &post(i));
            pending.push(js.publish(subject.to_owned(), body.into()).await.unwrap());
        }
    }
    for ack in pending {
        ack.await.unwrap();
    }
}

/// Stored notifications whose action key says this trigger user.
fn rows_of(dir: &std::path::Path, trigger: &str) -> usize {
    stored_ids(dir)
        .keys()
        .filter(|(_, action_key)| action_key.starts_with(&format!("{trigger}#")))
        .count()
}

fn limited_env(nats: &NatsServer, dir: &std::path::Path) -> Vec<(&'static str, String)> {
    let mut env = base_env(nats, dir);
    env.push(("RATE_LIMIT_TRIGGER_USER", format!("{LIMIT}/1m")));
    env
}

async fn wait_for_drain(nats: &NatsServer) {
    eventually("the consumer to be drained", WITHIN, || async {
        consumer_backlog(nats).await == (0, 0)
    })
    .await;
}

fn throttled_metric(worker: &Worker) -> f64 {
    let (status, text) = http_get(&worker.http_addr(), "/metrics");
    assert_eq!(status, 200);
    metric(&text, THROTTLED_SERIES).unwrap_or_else(|| panic!("no {THROTTLED_SERIES} in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_store_exactly_the_limit_and_removes_still_work() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let env = with_http(limited_env(&nats, dir.path()));
    let workers: Vec<Worker> = (0..3).map(|_| Worker::start(dir.path(), &env)).collect();
    for worker in &workers {
        assert_eq!(throttled_metric(worker), 0.0, "the series exists from the start");
    }
    let js = nats.jetstream().await;
    publish_likes_of(&js, "notifications.post.like").await;
    wait_for_drain(&nats).await;

    assert_eq!(
        rows_of(dir.path(), NOISY),
        LIMIT,
        "the noisy user's notifications"
    );
    assert_eq!(
        rows_of(dir.path(), QUIET),
        QUIET_LIKES,
        "the quiet user is not affected"
    );
    assert!(
        workers
            .iter()
            .filter(|worker| worker.count("created") > 0)
            .count()
            >= 2,
        "the replicas shared the work"
    );
    let throttled: f64 = workers.iter().map(throttled_metric).sum();
    assert_eq!(
        throttled as usize,
        NOISY_LIKES - LIMIT,
        "throttled_total counts the rest"
    );
    let logged: usize = workers.iter().map(|worker| worker.count("throttled")).sum();
    assert_eq!(
        logged,
        NOISY_LIKES - LIMIT,
        "each throttled event has its outcome"
    );
    // The state's cost: one write per admitted create, none per throttled one (reads are
    // not kept), in one key per trigger user.
    let mut bucket = js.get_stream("KV_NOTIFICATION_LIMITS").await.unwrap();
    let state = bucket.info().await.unwrap().state.clone();
    assert_eq!(
        (state.last_sequence, state.messages),
        ((LIMIT + QUIET_LIKES) as u64, 2),
        "writes to the limit's bucket, and keys in it"
    );
    // Said once per user and window by each replica, not once per event.
    let said: usize = workers
        .iter()
        .flat_map(Worker::events)
        .filter(|event| event["message"] == "trigger user over its limit: creates dropped")
        .count();
    assert!((1..=3).contains(&said), "over-limit lines: {said}");

    // Unlikes are never limited: those of stored likes remove them, those of throttled ones
    // find nothing; the quiet user's notifications stay.
    let mut pending = Vec::new();
    for i in 0..NOISY_LIKES {
        let body = unlike(&owner_of(i), NOISY, &post(i));
        pending.push(
            js.publish("notifications.post.unlike", body.into())
                .await
                .unwrap(),
        );
    }
    for ack in pending {
        ack.await.unwrap();
    }
    wait_for_drain(&nats).await;
    assert_eq!(rows_of(dir.path(), NOISY), 0, "every unlike took effect");
    assert_eq!(rows_of(dir.path(), QUIET), QUIET_LIKES);
    let removed: usize = workers.iter().map(|worker| worker.count("removed")).sum();
    let absent: usize = workers.iter().map(|worker| worker.count("absent")).sum();
    assert_eq!((removed, absent), (LIMIT, NOISY_LIKES - LIMIT));
}

/// A replica killed while it holds events it admitted: they come back to the others, who
/// find them already counted, so exactly the limit is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_holding_admitted_events_still_leaves_exactly_the_limit() {
    let nats = NatsServer::start();
    create_consumer_with_ack_wait(&nats, Duration::from_secs(2)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = limited_env(&nats, dir.path());
    env.push(("LOG_LEVEL", "info,notification_worker::processing=debug".into()));
    let mut victim = Worker::start(dir.path(), &env);
    // The victim's store is blocked by an outside write lock: what it admits, it holds.
    let lock = sqlite(dir.path());
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    publish_likes_of(&nats.jetstream().await, "notifications.post.like").await;
    wait_until("the victim to admit the limit and throttle more", WITHIN, || {
        victim.count("throttled") > 100
    });
    victim.kill();
    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);
    assert_eq!(count_rows(dir.path()), 0, "the victim stored nothing");

    let workers: Vec<Worker> = (0..2).map(|_| Worker::start(dir.path(), &env)).collect();
    wait_for_drain(&nats).await;
    let redelivered = workers
        .iter()
        .flat_map(Worker::events)
        .filter(|event| event["message"] == "received" && event["delivered"].as_u64() > Some(1))
        .count();
    assert!(
        redelivered >= LIMIT,
        "what the victim admitted came back to the others: {redelivered}"
    );
    assert_eq!(rows_of(dir.path(), NOISY), LIMIT);
    assert_eq!(rows_of(dir.path(), QUIET), QUIET_LIKES);
}

fn production_env(nats: &NatsServer, dir: &std::path::Path) -> Vec<(&'static str, String)> {
    let mut env = limited_env(nats, dir);
    env.push(("ENVIRONMENT", "production".into()));
    env.push(("NOTIF_STORE", "sqlite".into()));
    env
}

/// The limit's state gone under a running worker (its bucket deleted): the worker holds
/// the creates and pauses, storing nothing unchecked; once `setup` makes the bucket again,
/// they are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_its_state_the_limit_pauses_the_worker_instead_of_letting_events_through() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let env = production_env(&nats, dir.path());

    // In production the bucket is `setup`'s: without it the worker refuses to start.
    create_stream(&nats.jetstream().await).await;
    let (code, stderr) = run_until_exit(dir.path(), &env, WITHIN);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("NOTIFICATION_LIMITS") && stderr.contains("setup"),
        "{stderr}"
    );

    run_setup(dir.path(), &env);
    let worker = Worker::start(dir.path(), &env);
    let js = nats.jetstream().await;
    publish(&js, "notifications.post.like", like("owner-1", "fan-1", "post-0")).await;
    wait_until("the first like stored", WITHIN, || count_rows(dir.path()) == 1);

    js.delete_key_value("NOTIFICATION_LIMITS").await.unwrap();
    for i in 1..=5 {
        publish(&js, "notifications.post.like", like("owner-1", "fan-1", &post(i))).await;
    }
    let failures = || {
        worker
            .events()
            .iter()
            .filter(|event| event["message"] == "store unavailable; retrying")
            .filter(|event| {
                event["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("NOTIFICATION_LIMITS"))
            })
            .count()
    };
    wait_until("the worker to retry the limit's state", WITHIN, || {
        failures() >= 3
    });
    assert_eq!(count_rows(dir.path()), 1, "nothing stored unchecked");
    assert_eq!(worker.count("throttled"), 0, "nothing dropped");

    run_setup(dir.path(), &env);
    wait_until("the held likes stored", WITHIN, || count_rows(dir.path()) == 6);
}

#[test]
fn a_bad_limit_is_a_configuration_error_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let env = vec![
        ("NATS_URL", "nats://127.0.0.1:1".to_owned()),
        ("HTTP_ADDR", "off".to_owned()),
        ("RATE_LIMIT_TRIGGER_USER", "100 per minute".to_owned()),
    ];
    let (code, stderr) = run_until_exit(dir.path(), &env, WITHIN);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("RATE_LIMIT_TRIGGER_USER"), "{stderr}");
}
