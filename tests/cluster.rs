//! On a three-node JetStream cluster (stream replicas 3), killing the stream's leader in
//! the middle of a drain loses nothing and doubles nothing: every key ends live exactly when
//! its last event in stream order is a create, with like/unlike races and repeats back to
//! back on the same key.

mod support;

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use support::*;

const EVENTS: usize = 50_000;
const OWNERS: usize = 500;

/// The events of one key, back to back in the stream: `true` is a like, `false` an unlike.
const PATTERNS: [&[bool]; 6] = [
    &[true, false],              // like, unlike: ends absent
    &[true, false, true],        // like, unlike, like: ends live
    &[true, true, true],         // repeated likes: one notification
    &[true, true, false],        // ends absent
    &[false, true],              // an unlike first (nothing to remove), then a like
    &[true, false, true, false], // ends absent
];

/// (owner, trigger_user, resource_id) of key number `k`.
fn key(k: usize) -> (String, String, String) {
    (
        format!("owner-{}", k % OWNERS),
        format!("fan-{k}"),
        format!("post-{}", k % 7),
    )
}

/// Publishes exactly `EVENTS` events, each key's events back to back, many in flight.
async fn publish_races(js: &jetstream::Context) {
    let mut pending = std::collections::VecDeque::with_capacity(2048);
    let mut published = 0;
    'keys: for k in 0.. {
        let (owner, trigger, resource) = key(k);
        for &create in PATTERNS[k % PATTERNS.len()] {
            if published == EVENTS {
                break 'keys;
            }
            let subject = if create {
                "notifications.post.like"
            } else {
                "notifications.post.unlike"
            };
            let body = like(&owner, &trigger, &resource);
            pending.push_back(js.publish(subject, body.into()).await.unwrap());
            published += 1;
            if pending.len() == 2048 {
                pending.pop_front().unwrap().await.unwrap();
            }
        }
    }
    for ack in pending {
        ack.await.unwrap();
    }
}

/// The keys that must be live: those whose last event *in the stream's order* is a create,
/// read back from the stream itself with an ordered consumer.
async fn expected_live(
    js: &jetstream::Context,
) -> (
    BTreeSet<(String, String, String)>,
    BTreeMap<(String, String, String), Vec<u64>>,
) {
    let stream = js.get_stream("NOTIFICATIONS").await.unwrap();
    let reader = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: "notifications.>".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = reader.messages().await.unwrap();
    let mut last: BTreeMap<(String, String, String), bool> = BTreeMap::new();
    let mut sequences: BTreeMap<(String, String, String), Vec<u64>> = BTreeMap::new();
    for _ in 0..EVENTS {
        let message = messages.next().await.unwrap().unwrap();
        let body: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
        let field = |name: &str| body[name].as_str().unwrap().to_owned();
        let key = (field("owner"), field("trigger_user"), field("resource_id"));
        let create = message.subject.as_str() == "notifications.post.like";
        sequences
            .entry(key.clone())
            .or_default()
            .push(message.info().unwrap().stream_sequence);
        last.insert(key, create);
    }
    let live = last
        .into_iter()
        .filter_map(|(key, create)| create.then_some(key))
        .collect();
    (live, sequences)
}

/// Consumer info from whichever node answers; `None` while the cluster elects leaders.
async fn consumer_info(js: &jetstream::Context) -> Option<consumer::Info> {
    let stream = js.get_stream("NOTIFICATIONS").await.ok()?;
    let mut consumer: consumer::PullConsumer = stream.get_consumer("notification-worker").await.ok()?;
    consumer.info().await.ok().cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_stream_leader_mid_drain_loses_and_doubles_nothing() {
    let mut cluster = NatsCluster::start(3);
    let js = cluster.jetstream().await;
    // The cluster needs a JetStream meta leader before a stream can be placed.
    let deadline = Instant::now() + Duration::from_secs(30);
    let stream = loop {
        let created = js
            .create_stream(stream::Config {
                name: "NOTIFICATIONS".into(),
                subjects: vec!["notifications.>".into()],
                num_replicas: 3,
                // As `setup` makes it: tombstones must outlive what the stream keeps.
                max_age: Duration::from_secs(7 * 24 * 60 * 60),
                ..Default::default()
            })
            .await;
        match created {
            Ok(stream) => break stream,
            Err(error) => assert!(
                Instant::now() < deadline,
                "the cluster never accepted a stream with 3 replicas: {error}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // As `setup` would create it, with a short AckWait so that what the killed leader lost
    // is redelivered within the test's time.
    stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("notification-worker".into()),
            filter_subject: "notifications.>".into(),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(5),
            max_ack_pending: 20_000,
            num_replicas: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    publish_races(&js).await;
    let (live, sequences) = expected_live(&js).await;

    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&cluster.nodes[0], dir.path());
    env.retain(|(name, _)| *name != "NATS_URL");
    env.push(("NATS_URL", cluster.urls()));
    run_setup(dir.path(), &env);
    let mut worker = Worker::start(dir.path(), &env);

    // Mid-drain: once a third of the events have been delivered, kill the stream's leader.
    wait_until_async(&js, Duration::from_secs(300), |info| {
        info.delivered.stream_sequence >= EVENTS as u64 / 3
    })
    .await;
    let leader = stream_leader(&js).await;
    // Make the same node lead the consumer too (each step-down elects a random replica),
    // so that the kill also loses the acknowledgements in flight and forces redeliveries.
    let client = cluster.client().await;
    for _ in 0..30 {
        if consumer_leader(&js).await.as_deref() == Some(leader.as_str()) {
            break;
        }
        let _ = client
            .request(
                "$JS.API.CONSUMER.LEADER.STEPDOWN.NOTIFICATIONS.notification-worker",
                "".into(),
            )
            .await;
        wait_until_async(&js, Duration::from_secs(30), |info| {
            info.cluster
                .as_ref()
                .is_some_and(|cluster| cluster.leader.is_some())
        })
        .await;
    }
    let leads_consumer = consumer_leader(&js).await.as_deref() == Some(leader.as_str());
    let index = (0..3)
        .find(|&index| NatsCluster::node_name(index) == leader)
        .unwrap();
    let delivered_at_kill = consumer_info(&js)
        .await
        .map_or(0, |info| info.delivered.stream_sequence);
    cluster.nodes[index].kill();
    let killed_at = Instant::now();

    // A client on the survivors, to watch the drain finish.
    let survivors = {
        let addresses: Vec<async_nats::ServerAddr> = (0..3)
            .filter(|&other| other != index)
            .map(|other| cluster.nodes[other].url().parse().unwrap())
            .collect();
        jetstream::new(async_nats::connect(addresses).await.unwrap())
    };
    wait_until_async(&survivors, Duration::from_secs(300), |info| {
        info.num_pending == 0 && info.num_ack_pending == 0
    })
    .await;
    let drained_after_kill = killed_at.elapsed();
    assert!(worker.is_running(), "{}", worker.logs().join("\n"));

    let stored: Vec<(String, String, String)> = {
        let connection = sqlite(dir.path());
        let mut statement = connection
            .prepare("SELECT owner, userid, resource_id FROM notifications")
            .unwrap();
        statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let stored_set: BTreeSet<_> = stored.iter().cloned().collect();
    assert_eq!(stored.len(), stored_set.len(), "a key stored twice");
    let lost: Vec<_> = live.difference(&stored_set).collect();
    let resurrected: Vec<_> = stored_set.difference(&live).collect();
    let describe = |keys: &[&(String, String, String)]| {
        keys.iter()
            .take(10)
            .map(|key| format!("{key:?} at stream sequences {:?}", sequences[*key]))
            .collect::<Vec<_>>()
            .join("\n  ")
    };
    let mut settled: BTreeMap<u64, usize> = BTreeMap::new();
    for event in worker.events() {
        if let (Some(sequence), true) = (event["stream_seq"].as_u64(), event["outcome"].is_string()) {
            *settled.entry(sequence).or_default() += 1;
        }
    }
    eprintln!(
        "leader {leader} killed (leading the consumer too: {leads_consumer}) after {} of {EVENTS} \
         events delivered; drain finished {drained_after_kill:.1?} later; {} keys, {} live; \
         {} events settled more than once (their ack was lost with the leader)",
        delivered_at_kill,
        sequences.len(),
        live.len(),
        settled.values().filter(|&&times| times > 1).count()
    );
    assert!(
        lost.is_empty() && resurrected.is_empty(),
        "{} keys missing that should be live:\n  {}\n{} keys live that should be absent:\n  {}",
        lost.len(),
        describe(&lost),
        resurrected.len(),
        describe(&resurrected),
    );
    assert!(worker.terminate(Duration::from_secs(30)).success());
}

async fn stream_leader(js: &jetstream::Context) -> String {
    let mut stream = js.get_stream("NOTIFICATIONS").await.unwrap();
    let info = stream.info().await.unwrap();
    info.cluster
        .clone()
        .and_then(|cluster| cluster.leader)
        .expect("the stream has a leader")
}

async fn consumer_leader(js: &jetstream::Context) -> Option<String> {
    consumer_info(js).await?.cluster?.leader
}

/// Polls the worker's consumer until `done` holds, through leader elections.
async fn wait_until_async(
    js: &jetstream::Context,
    within: Duration,
    mut done: impl FnMut(&consumer::Info) -> bool,
) {
    let deadline = Instant::now() + within;
    loop {
        if let Some(info) = consumer_info(js).await
            && done(&info)
        {
            return;
        }
        assert!(Instant::now() < deadline, "timed out after {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
