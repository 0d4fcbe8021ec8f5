//! The deployment we ship runs several replicas on one durable consumer. Events of one key
//! published back to back then land on different replicas at the same moment, and a
//! replica that dies has its messages redelivered to the others, after later events of the
//! same keys were applied. Whatever happens, every key must end as its events, in stream
//! order, say: live exactly when its last event is a like, with the notification that was
//! reported `created`.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;
use support::*;

const WITHIN: Duration = Duration::from_secs(240);
/// Keys published like → unlike (end absent).
const LIKE_UNLIKE: usize = 3_000;
/// Keys published like → unlike → like (end live).
const LIKE_UNLIKE_LIKE: usize = 1_000;

fn owner_of(key: usize) -> String {
    format!("owner-{}", key % 101)
}

fn trigger_of(key: usize) -> String {
    format!("fan-{key}")
}

fn action_key(key: usize) -> String {
    format!("{}#post-1#1#0001-01-01T00:00:00Z", trigger_of(key))
}

/// Publishes every key's events back to back (so a key's like and unlike are pulled
/// together and may go to different replicas), with many publishes in flight.
async fn publish_races(js: &async_nats::jetstream::Context) -> usize {
    let mut pending = Vec::new();
    let mut published = 0;
    for key in 0..LIKE_UNLIKE + LIKE_UNLIKE_LIKE {
        let (owner, trigger) = (owner_of(key), trigger_of(key));
        let mut script = vec![
            ("notifications.post.like", like(&owner, &trigger, "post-1")),
            ("notifications.post.unlike", unlike(&owner, &trigger, "post-1")),
        ];
        if key >= LIKE_UNLIKE {
            script.push(("notifications.post.like", like(&owner, &trigger, "post-1")));
        }
        for (subject, body) in script {
            pending.push(js.publish(subject, body.into()).await.unwrap());
            published += 1;
        }
        if pending.len() >= 1000 {
            for ack in pending.drain(..) {
                ack.await.unwrap();
            }
        }
    }
    for ack in pending {
        ack.await.unwrap();
    }
    published
}

/// The (owner, action_key) → id of every stored notification.
type Stored = HashMap<(String, String), String>;

async fn stored_dynamodb(dynamo: &Dynalite, table: &str) -> Stored {
    stored_dynamodb_of(dynamo, table, (0..101).map(|owner| format!("owner-{owner}"))).await
}

/// [`stored_dynamodb`], of `owners`.
async fn stored_dynamodb_of(dynamo: &Dynalite, table: &str, owners: impl Iterator<Item = String>) -> Stored {
    let store = dynamo.store(table).await;
    let mut stored = HashMap::new();
    for owner in owners {
        let feed = notification_worker::store::NotificationStore::feed(
            &store,
            &notification_worker::domain::Id::parse("owner", &owner).unwrap(),
            100_000,
        )
        .await
        .unwrap();
        for item in feed {
            stored.insert((item.owner, item.action_key), item.id);
        }
    }
    stored
}

/// The ids the workers reported `created`, per key.
fn created_ids(workers: &[Worker]) -> HashMap<(String, String), HashSet<String>> {
    let mut created: HashMap<(String, String), HashSet<String>> = HashMap::new();
    for worker in workers {
        for event in worker.events() {
            if event["outcome"] == "created" {
                let key = (
                    event["owner"].as_str().unwrap().to_owned(),
                    event["action_key"].as_str().unwrap().to_owned(),
                );
                let id = event["notification_id"].as_str().unwrap_or_default().to_owned();
                created.entry(key).or_default().insert(id);
            }
        }
    }
    created
}

/// Every key as its last event says; every live notification reported created.
fn assert_every_key_right(stored: &Stored, workers: &[Worker]) {
    let created = created_ids(workers);
    let mut wrong = Vec::new();
    for key in 0..LIKE_UNLIKE + LIKE_UNLIKE_LIKE {
        let id = (owner_of(key), action_key(key));
        let should_live = key >= LIKE_UNLIKE;
        match stored.get(&id) {
            Some(_) if !should_live => wrong.push(format!("{id:?} is live after its unlike")),
            None if should_live => wrong.push(format!("{id:?} is absent after its last like")),
            Some(stored_id) if !created.get(&id).is_some_and(|ids| ids.contains(stored_id)) => wrong.push(
                format!("{id:?}: notification {stored_id} was never reported created"),
            ),
            _ => {}
        }
    }
    // On failure, the workers' log lines for the first wrong key: what each event did.
    if let Some(first) = wrong.first() {
        let needle = first.split('"').nth(3).unwrap_or_default().to_owned();
        for worker in workers {
            for line in worker.logs().iter().filter(|line| line.contains(&needle)) {
                eprintln!("log of the first wrong key: {line}");
            }
        }
    }
    assert_eq!(stored.len(), LIKE_UNLIKE_LIKE, "live notifications");
    assert!(
        wrong.is_empty(),
        "{} of {} keys ended wrong, e.g.:\n{}",
        wrong.len(),
        LIKE_UNLIKE + LIKE_UNLIKE_LIKE,
        wrong.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
    );
}

async fn wait_for_drain(nats: &NatsServer) {
    eventually("the consumer to be drained", WITHIN, || async {
        consumer_backlog(nats).await == (0, 0)
    })
    .await;
}

fn start_replicas(count: usize, dir: &std::path::Path, env: &[(&'static str, String)]) -> Vec<Worker> {
    (0..count).map(|_| Worker::start(dir, env)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_sqlite_end_every_key_in_stream_order() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let env = base_env(&nats, dir.path());
    let workers = start_replicas(2, dir.path(), &env);
    publish_races(&nats.jetstream().await).await;
    wait_for_drain(&nats).await;
    assert!(
        workers.iter().all(|worker| worker.count("created") > 0),
        "both replicas took part"
    );
    assert_every_key_right(&stored_ids(dir.path()), &workers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_dynamodb_end_every_key_in_stream_order() {
    let nats = NatsServer::start();
    let dynamo = Dynalite::start();
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&nats, dir.path());
    env.extend(dynamo.worker_env("replica-notifications"));
    let workers = start_replicas(3, dir.path(), &env);
    publish_races(&nats.jetstream().await).await;
    wait_for_drain(&nats).await;
    // A put that went unanswered may land late; its worker checks the key again later.
    wait_until("every scheduled recheck to be done", WITHIN, || {
        let logged = |message: &str| -> usize {
            workers
                .iter()
                .map(|worker| {
                    worker
                        .events()
                        .iter()
                        .filter(|event| event["message"] == message)
                        .count()
                })
                .sum()
        };
        logged("a put went unanswered: recheck scheduled") == logged("recheck done")
    });
    assert!(
        workers.iter().all(|worker| worker.count("created") > 0),
        "all replicas took part"
    );
    assert_every_key_right(&stored_dynamodb(&dynamo, "replica-notifications").await, &workers);
}

/// Realistic traffic (popular owners, likes, replies, follows, unlikes and repeats of the same
/// keys, `tests/support/traffic.rs`): the live notifications are exactly the keys whose last
/// event, in stream order, creates.
fn expected_live(events: &[traffic::Event]) -> HashSet<(String, String)> {
    let mut live = HashSet::new();
    for event in events.iter().filter(|event| !event.is_own()) {
        let key = (event.owner.clone(), event.action_key());
        if event.removes {
            live.remove(&key);
        } else {
            live.insert(key);
        }
    }
    live
}

fn assert_live_as_in_order(stored: &Stored, events: &[traffic::Event]) {
    let expected = expected_live(events);
    let stored: HashSet<(String, String)> = stored.keys().cloned().collect();
    let missing: Vec<_> = expected.difference(&stored).take(5).collect();
    let extra: Vec<_> = stored.difference(&expected).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} expected live, {} stored; missing e.g. {missing:?}; live but taken back e.g. {extra:?}",
        expected.len(),
        stored.len()
    );
}

const REALISTIC_EVENTS: usize = 6_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_sqlite_store_realistic_traffic_as_in_stream_order() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let env = base_env(&nats, dir.path());
    let workers = start_replicas(2, dir.path(), &env);
    let events = traffic::realistic(REALISTIC_EVENTS);
    traffic::publish(&nats.jetstream().await, &events).await;
    wait_for_drain(&nats).await;
    assert!(
        workers.iter().all(|worker| worker.count("created") > 0),
        "both replicas took part"
    );
    assert_live_as_in_order(&stored_ids(dir.path()), &events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_dynamodb_store_realistic_traffic_as_in_stream_order() {
    let nats = NatsServer::start();
    let dynamo = Dynalite::start();
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&nats, dir.path());
    env.extend(dynamo.worker_env("realistic-notifications"));
    let workers = start_replicas(3, dir.path(), &env);
    let events = traffic::realistic(REALISTIC_EVENTS);
    traffic::publish(&nats.jetstream().await, &events).await;
    wait_for_drain(&nats).await;
    assert!(
        workers.iter().all(|worker| worker.count("created") > 0),
        "all replicas took part"
    );
    let owners: HashSet<String> = events.iter().map(|event| event.owner.clone()).collect();
    let stored = stored_dynamodb_of(&dynamo, "realistic-notifications", owners.into_iter()).await;
    assert_live_as_in_order(&stored, &events);
}

/// Redeliveries: a replica is killed holding events it pulled (its store blocked by an
/// outside write lock, so it surely holds them); they come back, after a short AckWait, to
/// two other replicas that have meanwhile applied later events of the same keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_drain_leaves_every_key_in_stream_order() {
    let nats = NatsServer::start();
    create_consumer_with_ack_wait(&nats, Duration::from_secs(2)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&nats, dir.path());
    // "received" lines (debug) say how often each message was delivered.
    env.push(("LOG_LEVEL", "info,notification_worker::processing=debug".into()));
    let mut victim = Worker::start(dir.path(), &env);
    let lock = sqlite(dir.path());
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    publish_races(&nats.jetstream().await).await;
    wait_until("the victim to hold pulled events", WITHIN, || {
        victim
            .events()
            .iter()
            .filter(|event| event["message"] == "received")
            .count()
            > 500
    });
    victim.kill();
    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);

    let workers = start_replicas(2, dir.path(), &env);
    wait_for_drain(&nats).await;
    let redelivered = workers
        .iter()
        .flat_map(|worker| worker.events())
        .filter(|event| event["message"] == "received" && event["delivered"].as_u64() > Some(1))
        .count();
    assert!(
        redelivered > 500,
        "what the killed replica held came back to the others: {redelivered}"
    );
    assert_every_key_right(&stored_ids(dir.path()), &workers);
}

/// `dlq replay` of a like that was dead-lettered before its unlike was applied: replayed
/// later, with its original version, it cannot undo the unlike. And a replayed event that is
/// dead-lettered again keeps its original sequence and version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_like_cannot_undo_the_unlike_that_followed_it() {
    use notification_worker::domain::{Reason, Version};
    use notification_worker::input::{DeadLetters, Delivery, dlq_header};
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    let stream = create_stream(&js).await;
    let created = stream.cached_info().created.unix_timestamp_nanos() / 1000;
    let version_of = |sequence: u64| Version::new(u64::try_from(created).unwrap(), sequence).unwrap();

    // The like at sequence 1 was dead-lettered (as a store outage gone wrong would): it left
    // the stream for the dead letters with its version.
    let body = like("owner-1", "fan-1", "post-1");
    let like_seq = publish(&js, "notifications.post.like", body.clone()).await;
    stream.delete_message(like_seq).await.unwrap();
    let dlq = DeadLetters::ensure(&js, "NOTIFICATIONS", &Default::default())
        .await
        .unwrap();
    let delivery = Delivery::detached(
        "notifications.post.like",
        body.into(),
        like_seq,
        version_of(like_seq),
    );
    dlq.send(&delivery, Reason::StoreRejected, "test").await.unwrap();
    // Then its unlike, applied by a worker.
    let unlike_seq = publish(
        &js,
        "notifications.post.unlike",
        like("owner-1", "fan-1", "post-1"),
    )
    .await;
    let invalid_seq = publish(&js, "notifications.post.like", "not json").await;
    let dir = tempfile::tempdir().unwrap();
    let env = base_env(&nats, dir.path());
    let worker = Worker::start(dir.path(), &env);
    wait_until("the unlike and the invalid event", WITHIN, || {
        worker.outcome_of(unlike_seq).is_some() && worker.outcome_of(invalid_seq).is_some()
    });

    let replay = command(dir.path(), &env)
        .args(["dlq", "replay", "--all"])
        .output()
        .unwrap();
    assert!(
        replay.status.success(),
        "{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    wait_until("the replayed like", WITHIN, || worker.count("superseded") == 1);
    assert_eq!(count_rows(dir.path()), 0, "the unlike stands");

    // The invalid event came back as a dead letter that still names its first sequence.
    wait_until("the invalid event dead-lettered again", WITHIN, || {
        worker.count("invalid") == 2
    });
    let letters = support::dead_letters(&nats).await;
    let again = letters.last().unwrap();
    assert_eq!(
        header(again, dlq_header::ORIGINAL_SEQUENCE),
        invalid_seq.to_string()
    );
    assert_eq!(
        header(again, dlq_header::ORIGINAL_VERSION),
        version_of(invalid_seq).to_string()
    );
}

/// `Dlq-Original-Version` can only make an event older: a publisher that sets it higher than
/// the message's own version gets its own version, so it cannot outrank a later unlike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_header_can_never_make_an_event_newer() {
    use notification_worker::input::dlq_header;
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    create_stream(&js).await;
    let mut headers = async_nats::HeaderMap::new();
    let far_future = notification_worker::domain::Version::new(9_000_000_000_000_000, 1).unwrap();
    headers.insert(dlq_header::ORIGINAL_VERSION, far_future.to_string().as_str());
    let like_seq = js
        .publish_with_headers(
            "notifications.post.like",
            headers,
            like("owner-1", "fan-1", "post-1").into(),
        )
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence;
    let unlike_seq = publish(
        &js,
        "notifications.post.unlike",
        like("owner-1", "fan-1", "post-1"),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let worker = Worker::start(dir.path(), &base_env(&nats, dir.path()));
    wait_until("both events", WITHIN, || {
        worker.outcome_of(like_seq).is_some() && worker.outcome_of(unlike_seq).is_some()
    });
    assert_eq!(worker.outcome_of(unlike_seq).as_deref(), Some("removed"));
    assert_eq!(count_rows(dir.path()), 0);
}
