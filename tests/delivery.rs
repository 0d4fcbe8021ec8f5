//! The delivery stage, end to end: the worker binary stores events and tells people on the
//! channels it is given, against real servers (nats-server for the outbox and the `nats`
//! channel, an HTTP receiver that verifies Standard Webhooks signatures independently).
//! Channel `pusher` against a real Pusher-protocol server is in tests/pusher.rs.

mod support;

use std::collections::HashSet;
use std::time::Duration;
use support::realtime::{Realtime, wait_until_delivered};
use support::webhook::{self, WebhookReceiver};
use support::*;

const WITHIN: Duration = Duration::from_secs(60);

/// Publishes user-456's like (or unlike, by `subject`) of user-123's post-789.
async fn the_like(js: &async_nats::jetstream::Context, subject: &str) -> u64 {
    publish(js, subject, like("user-123", "user-456", "post-789")).await
}

fn with_nats_channel(mut env: Vec<(&'static str, String)>) -> Vec<(&'static str, String)> {
    env.push(("REALTIME_NATS_SUBJECT", "users.{owner}.notifications".into()));
    env
}

fn with_webhook(
    mut env: Vec<(&'static str, String)>,
    receiver: &WebhookReceiver,
) -> Vec<(&'static str, String)> {
    env.push(("WEBHOOK_URL", receiver.url()));
    env.push(("WEBHOOK_SECRET", webhook::SECRET.into()));
    env
}

/// Every dead letter of the delivery stage (empty when the stream does not exist).
async fn delivery_dead_letters(nats: &NatsServer) -> Vec<async_nats::jetstream::message::StreamMessage> {
    let js = nats.jetstream().await;
    let Ok(mut stream) = js.get_stream("DELIVERIES_DLQ").await else {
        return Vec::new();
    };
    let state = stream.info().await.unwrap().state.clone();
    let mut letters = Vec::new();
    for sequence in state.first_sequence..=state.last_sequence {
        if let Ok(message) = stream.get_raw_message(sequence).await {
            letters.push(message);
        }
    }
    letters
}

/// Waits for the one dead letter of the delivery stage, checks it is `channel`'s, refused for
/// good with `status` in its error.
async fn the_refused_job(nats: &NatsServer, channel: &str, status: &str) {
    eventually("the dead letter", WITHIN, || async {
        delivery_dead_letters(nats).await.len() == 1
    })
    .await;
    let letters = delivery_dead_letters(nats).await;
    assert_eq!(letters[0].subject.as_str(), format!("dlq.deliveries.{channel}"));
    assert_eq!(header(&letters[0], "Dlq-Reason"), "channel_rejected");
    let error = header(&letters[0], "Dlq-Error");
    assert!(error.contains(status), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_channel_nothing_changes_and_no_outbox_exists() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let worker = Worker::start(dir.path(), &base_env(&nats, dir.path()));
    let js = nats.jetstream().await;
    the_like(&js, "notifications.post.like").await;
    wait_until("stored", WITHIN, || count_rows(dir.path()) == 1);
    assert!(
        js.get_stream("NOTIFICATION_DELIVERIES").await.is_err(),
        "no channel: no outbox"
    );
    assert!(
        !worker
            .logs()
            .iter()
            .any(|line| line.contains("delivery stage started"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_like_reaches_the_owners_subject_and_its_unlike_follows() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let realtime = Realtime::subscribe(&nats, "users.>").await;
    let _worker = Worker::start(dir.path(), &with_nats_channel(base_env(&nats, dir.path())));
    let js = nats.jetstream().await;
    the_like(&js, "notifications.post.like").await;
    // An owner id with a dot stays inside its own subject token.
    publish(
        &js,
        "notifications.post.like",
        like("alice.x", "user-456", "post-789"),
    )
    .await;
    eventually("two new-notifications", WITHIN, || async {
        realtime.count("new-notification") == 2
    })
    .await;

    let stored = stored_ids(dir.path());
    let id = &stored[&(
        "user-123".to_owned(),
        "user-456#post-789#1#0001-01-01T00:00:00Z".to_owned(),
    )];
    let messages = realtime.messages();
    let (subject, body) = messages
        .iter()
        .find(|(_, body)| body["data"]["owner"] == "user-123")
        .unwrap();
    assert_eq!(subject, "users.user-123.notifications");
    assert_eq!(body["event"], "new-notification");
    let data = &body["data"];
    assert_eq!(&data["id"], id.as_str());
    for (field, value) in [
        ("owner", "user-123"),
        ("userid", "user-456"),
        ("username", "Test User"),
        ("resource_type", "POST"),
        ("resource_id", "post-789"),
        ("created_at", "2025-12-09T22:06:40Z"),
    ] {
        assert_eq!(data[field], value, "{field}");
    }
    assert_eq!(
        (data["action"].as_i64(), data["read_status"].as_bool()),
        (Some(1), Some(false))
    );
    assert!(data["version"].as_str().is_some_and(|v| !v.is_empty()));
    assert!(data.get("action_key").is_none());
    assert!(
        messages
            .iter()
            .any(|(subject, _)| subject == "users.alice=2Ex.notifications")
    );

    the_like(&js, "notifications.post.unlike").await;
    eventually("the removal", WITHIN, || async {
        realtime.count("notification-removed") == 1
    })
    .await;
    let events = realtime.events();
    let removed = events
        .iter()
        .position(|(event, _)| event == "notification-removed")
        .unwrap();
    assert_eq!(events[removed].1, *id);
    assert!(events[..removed].contains(&("new-notification".to_owned(), id.clone())));
    let (_, removal) = realtime.messages().into_iter().nth(removed).unwrap();
    assert_eq!(
        removal["data"]["action_key"],
        "user-456#post-789#1#0001-01-01T00:00:00Z"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_like_published_twice_notifies_once() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let realtime = Realtime::subscribe(&nats, "users.>").await;
    let worker = Worker::start(dir.path(), &with_nats_channel(base_env(&nats, dir.path())));
    let js = nats.jetstream().await;
    for _ in 0..2 {
        publish(
            &js,
            "notifications.post.like",
            like("user-123", "user-456", "post-789"),
        )
        .await;
    }
    wait_until("both settled", WITHIN, || {
        worker.count("created") + worker.count("duplicate") == 2
    });
    wait_until_delivered(&nats, WITHIN, "nats").await;
    assert_eq!(realtime.count("new-notification"), 1, "{:?}", realtime.events());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_signed_and_carry_the_job_id() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let receiver = WebhookReceiver::start();
    let _worker = Worker::start(dir.path(), &with_webhook(base_env(&nats, dir.path()), &receiver));
    let js = nats.jetstream().await;
    the_like(&js, "notifications.post.like").await;
    eventually("the webhook", WITHIN, || async {
        !receiver.accepted().is_empty()
    })
    .await;
    the_like(&js, "notifications.post.unlike").await;
    eventually("the second webhook", WITHIN, || async {
        receiver.accepted().len() == 2
    })
    .await;

    let accepted = receiver.accepted();
    let created = &accepted[0];
    let id = created.body["data"]["id"].as_str().unwrap();
    assert_eq!(created.id, id, "webhook-id is the job's message id");
    assert_eq!(created.body["type"], "notification.created");
    assert_eq!(
        created.body["data"]["action_key"],
        "user-456#post-789#1#0001-01-01T00:00:00Z"
    );
    assert!((created.timestamp - time::OffsetDateTime::now_utc().unix_timestamp()).abs() < 60);
    let removed = &accepted[1];
    assert_eq!(removed.body["type"], "notification.removed");
    assert_eq!(removed.id, format!("{id}_removed"));
    assert_eq!(receiver.forged(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_fails_for_a_while_gets_every_job_and_none_is_dead_lettered() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = WebhookReceiver::start();
    let worker = Worker::start(
        dir.path(),
        &with_http(with_webhook(base_env(&nats, dir.path()), &receiver)),
    );
    let http = worker.http_addr();
    let js = nats.jetstream().await;
    // First 503s (with Retry-After), then no server at all for 10 s, mid-load.
    receiver.answer(503);
    const LIKES: usize = 300;
    for i in 0..LIKES / 2 {
        publish(
            &js,
            "notifications.post.like",
            like(&format!("owner-{}", i % 7), &format!("fan-{i}"), "post-1"),
        )
        .await;
    }
    eventually("refusals", WITHIN, || async { receiver.refused() > 0 }).await;
    receiver.stop();
    let stopped = std::time::Instant::now();
    for i in LIKES / 2..LIKES {
        publish(
            &js,
            "notifications.post.like",
            like(&format!("owner-{}", i % 7), &format!("fan-{i}"), "post-1"),
        )
        .await;
    }
    // Storing does not wait for the channel.
    wait_until("every like stored while the receiver is down", WITHIN, || {
        count_rows(dir.path()) == LIKES as i64
    });
    assert!(
        stopped.elapsed() < Duration::from_secs(10),
        "stored within the outage"
    );
    // The outage shows in the metrics, never in readiness: storing goes on.
    let (status, _) = http_get(&http, "/readyz");
    assert_eq!(status, 200);
    let (_, metrics) = http_get(&http, "/metrics");
    let retried = r#"notification_worker_deliveries_total{channel="webhook",outcome="retried"}"#;
    assert!(metric(&metrics, retried).unwrap() > 0.0, "{metrics}");
    while stopped.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    receiver.answer(200);
    receiver.restart();
    eventually("every like delivered", Duration::from_secs(120), || async {
        receiver
            .accepted()
            .iter()
            .map(|r| r.id.clone())
            .collect::<HashSet<_>>()
            .len()
            == LIKES
    })
    .await;
    assert!(delivery_dead_letters(&nats).await.is_empty());
    let (_, metrics) = http_get(&http, "/metrics");
    let delivered = r#"notification_worker_deliveries_total{channel="webhook",outcome="delivered"}"#;
    assert!(metric(&metrics, delivered).unwrap() >= LIKES as f64, "{metrics}");
    let dead = r#"notification_worker_deliveries_total{channel="webhook",outcome="dead_lettered"}"#;
    assert_eq!(metric(&metrics, dead), Some(0.0));
}

/// Two replicas on one consumer; every key published like → unlike → like or like → unlike
/// back to back. Every notification left live reached the subscriber, and every removal
/// reached it after its notification.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_keep_each_notifications_jobs_in_order() {
    const KEYS: usize = 4_000;
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let realtime = Realtime::subscribe(&nats, "users.>").await;
    let env = with_nats_channel(base_env(&nats, dir.path()));
    let workers = [Worker::start(dir.path(), &env), Worker::start(dir.path(), &env)];
    let js = nats.jetstream().await;
    let mut pending = Vec::new();
    for key in 0..KEYS {
        let (owner, trigger) = (format!("owner-{}", key % 53), format!("fan-{key}"));
        let mut script = vec![
            ("notifications.post.like", like(&owner, &trigger, "post-1")),
            ("notifications.post.unlike", unlike(&owner, &trigger, "post-1")),
        ];
        if key % 2 == 0 {
            script.push(("notifications.post.like", like(&owner, &trigger, "post-1")));
        }
        for (subject, body) in script {
            pending.push(js.publish(subject, body.into()).await.unwrap());
        }
        if pending.len() >= 500 {
            for ack in pending.drain(..) {
                ack.await.unwrap();
            }
        }
    }
    for ack in pending {
        ack.await.unwrap();
    }
    wait_until("every event settled", Duration::from_secs(180), || {
        workers
            .iter()
            .map(|w| {
                w.count("created")
                    + w.count("removed")
                    + w.count("absent")
                    + w.count("superseded")
                    + w.count("duplicate")
            })
            .sum::<usize>()
            >= KEYS * 2 + KEYS / 2
    });
    wait_until_delivered(&nats, WITHIN, "nats").await;
    let stored = stored_ids(dir.path());
    assert_eq!(stored.len(), KEYS / 2);
    let events = realtime.events();
    let created: HashSet<&String> = events
        .iter()
        .filter(|(e, _)| e == "new-notification")
        .map(|(_, id)| id)
        .collect();
    let missing: Vec<_> = stored.values().filter(|id| !created.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "{} live notifications never reached the subscriber",
        missing.len()
    );
    // A removal whose notification was never announced (the unlike was applied before the
    // like's replica announced it) is fine: clients ignore an unknown id. One that arrives
    // before its notification is not.
    let position = |wanted: &str, id: &String| {
        events
            .iter()
            .position(|(event, other)| event == wanted && other == id)
    };
    let mut early = Vec::new();
    let mut never_announced = 0;
    for (event, id) in &events {
        if event == "notification-removed" {
            match position("new-notification", id) {
                Some(created) if created > position("notification-removed", id).unwrap() => {
                    early.push(id.clone())
                }
                Some(_) => {}
                None => never_announced += 1,
            }
        }
    }
    println!("{never_announced} removals of notifications never announced");
    assert!(
        early.is_empty(),
        "{} removals arrived before their notification",
        early.len()
    );
    // A removal names a life that is gone: never one the feed still has.
    let removed: HashSet<&String> = events
        .iter()
        .filter(|(e, _)| e == "notification-removed")
        .map(|(_, id)| id)
        .collect();
    let live: HashSet<&String> = stored.values().collect();
    assert!(!removed.is_empty());
    assert!(
        removed.is_disjoint(&live),
        "a removal was sent for a live notification"
    );
    // What a client holds in the end is exactly the feed: every notification announced is
    // live or was removed afterwards.
    let kept = created
        .iter()
        .filter(|id| !live.contains(*id) && !removed.contains(*id))
        .count();
    assert_eq!(
        kept, 0,
        "notifications announced, gone from the feed, never removed"
    );
    println!("{} removals, {} lives created", removed.len(), created.len());
}

/// 10,000 likes while the worker is SIGKILLed three times: every stored notification reaches
/// the subscriber at least once; the kills may repeat some (reported, not hidden).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_between_commit_and_send_lose_no_delivery() {
    const LIKES: usize = 10_000;
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let realtime = Realtime::subscribe(&nats, "users.>").await;
    let env = with_nats_channel(base_env(&nats, dir.path()));
    let js = nats.jetstream().await;
    let mut worker = Worker::start(dir.path(), &env);
    let publisher = {
        let js = js.clone();
        tokio::spawn(async move {
            let mut pending = Vec::new();
            for i in 0..LIKES {
                let body = like(
                    &format!("owner-{}", i % 211),
                    &format!("fan-{i}"),
                    &format!("post-{}", i % 13),
                );
                pending.push(js.publish("notifications.post.like", body.into()).await.unwrap());
                if pending.len() >= 500 {
                    for ack in pending.drain(..) {
                        ack.await.unwrap();
                    }
                }
            }
            for ack in pending {
                ack.await.unwrap();
            }
        })
    };
    for kill in 1..=3 {
        let target = (LIKES as i64 * kill) / 4;
        wait_until("progress before a kill", Duration::from_secs(120), || {
            count_rows(dir.path()) >= target
        });
        worker.kill();
        worker = Worker::start(dir.path(), &env);
    }
    publisher.await.unwrap();
    wait_until("every like stored", Duration::from_secs(180), || {
        count_rows(dir.path()) == LIKES as i64
    });
    let stored = stored_ids(dir.path());
    eventually(
        "every notification delivered",
        Duration::from_secs(180),
        || async {
            let delivered: HashSet<String> = realtime.events().into_iter().map(|(_, id)| id).collect();
            stored.values().all(|id| delivered.contains(id))
        },
    )
    .await;
    wait_until_delivered(&nats, WITHIN, "nats").await;
    let repeats = realtime.count("new-notification") - LIKES;
    println!("three SIGKILLs during {LIKES} likes: {repeats} repeated deliveries");
    drop(worker);
}

fn cli(dir: &std::path::Path, env: &[(&'static str, String)], args: &[&str]) -> std::process::Output {
    command(dir, env).args(args).output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_job_is_dead_lettered_on_its_channel_only_and_replayed_to_it_alone() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let receiver = WebhookReceiver::start();
    receiver.answer(400);
    let realtime = Realtime::subscribe(&nats, "users.>").await;
    let env = with_nats_channel(with_webhook(base_env(&nats, dir.path()), &receiver));
    let _worker = Worker::start(dir.path(), &env);
    let js = nats.jetstream().await;
    the_like(&js, "notifications.post.like").await;
    the_refused_job(&nats, "webhook", "400").await;
    // The other channel and the feed are untouched by the refusal.
    eventually("the realtime message", WITHIN, || async {
        realtime.count("new-notification") == 1
    })
    .await;
    assert_eq!(count_rows(dir.path()), 1);

    let listed = cli(
        dir.path(),
        &env,
        &["dlq", "--stream", "deliveries", "list", "--json"],
    );
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let letter: serde_json::Value =
        serde_json::from_slice(listed.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(
        (letter["channel"].as_str(), letter["reason"].as_str()),
        (Some("webhook"), Some("channel_rejected"))
    );

    receiver.answer(200);
    let replayed = cli(
        dir.path(),
        &env,
        &["dlq", "--stream", "deliveries", "replay", "--all"],
    );
    assert!(
        replayed.status.success(),
        "{}",
        String::from_utf8_lossy(&replayed.stderr)
    );
    eventually("the replayed webhook", WITHIN, || async {
        receiver.accepted().len() == 1
    })
    .await;
    assert_eq!(receiver.accepted()[0].body["type"], "notification.created");
    wait_until_delivered(&nats, WITHIN, "nats").await;
    assert_eq!(
        realtime.count("new-notification"),
        1,
        "the nats channel did not get it again"
    );
    assert!(delivery_dead_letters(&nats).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliver_test_sends_a_sample_and_says_what_the_channel_answered() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let receiver = WebhookReceiver::start();
    let env = with_webhook(base_env(&nats, dir.path()), &receiver);
    let sent = cli(
        dir.path(),
        &env,
        &["deliver", "test", "--channel", "webhook", "user-123"],
    );
    assert!(sent.status.success(), "{}", String::from_utf8_lossy(&sent.stderr));
    assert!(String::from_utf8_lossy(&sent.stdout).contains("webhook: accepted"));
    assert_eq!(receiver.accepted().len(), 1);
    assert_eq!(receiver.accepted()[0].body["data"]["owner"], "user-123");

    let mut wrong = env.clone();
    wrong.retain(|(name, _)| *name != "WEBHOOK_SECRET");
    wrong.push(("WEBHOOK_SECRET", "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into()));
    let refused = cli(
        dir.path(),
        &wrong,
        &["deliver", "test", "--channel", "webhook", "user-123"],
    );
    assert_eq!(refused.status.code(), Some(1));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("refused (permanent") && said.contains("401"),
        "{said}"
    );

    let unconfigured = cli(
        dir.path(),
        &env,
        &["deliver", "test", "--channel", "pusher", "user-123"],
    );
    assert_eq!(
        unconfigured.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&unconfigured.stderr)
    );
    assert!(String::from_utf8_lossy(&unconfigured.stderr).contains("PUSHER_APP_ID"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_delivery_stage_runs_on_its_own() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let realtime = Realtime::subscribe(&nats, "users.>").await;
    let env = with_nats_channel(base_env(&nats, dir.path()));
    let spawn = |stage: &str| {
        let child = command(dir.path(), &env)
            .args(["run", "--stage", stage])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        KillOnDrop(child)
    };
    let (_store, _delivery) = (spawn("store"), spawn("delivery"));
    let js = nats.jetstream().await;
    // Each stage creates what it reads in development; publish once both run.
    eventually("the streams", WITHIN, || async {
        js.get_stream("NOTIFICATION_DELIVERIES").await.is_ok() && js.get_stream("NOTIFICATIONS").await.is_ok()
    })
    .await;
    the_like(&js, "notifications.post.like").await;
    eventually("the delivery", WITHIN, || async {
        realtime.count("new-notification") == 1
    })
    .await;

    // With no channel, the delivery stage alone is a usage error.
    let (code, stderr) = {
        let output = cli(
            dir.path(),
            &base_env(&nats, dir.path()),
            &["run", "--stage", "delivery"],
        );
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("no delivery channel is configured"), "{stderr}");
}

/// A child process that is killed when the test ends, passed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_receivers_own_signer_matches_the_specifications_example() {
    use base64::Engine;
    // The example in the Standard Webhooks specification ("Signature scheme").
    let key = base64::engine::general_purpose::STANDARD
        .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .unwrap();
    assert_eq!(
        webhook::expected_signature(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            br#"{"test": 2432232314}"#
        ),
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_pusher_secret_is_refused_by_the_server_and_dead_lettered_as_permanent() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let pusher = support::sockudo::Sockudo::start();
    let mut env = base_env(&nats, dir.path());
    for (name, value) in pusher.worker_env("user-{owner}-notifications") {
        let value = if name == "PUSHER_SECRET" {
            "not-the-secret".to_owned()
        } else {
            value
        };
        env.push((name, value));
    }
    let _worker = Worker::start(dir.path(), &env);
    let js = nats.jetstream().await;
    the_like(&js, "notifications.post.like").await;
    the_refused_job(&nats, "pusher", "401").await;
    assert_eq!(count_rows(dir.path()), 1, "stored all the same");
}

/// The same announcements from the DynamoDB store, two replicas: the life a remove ended
/// comes from the deleted item, and its redelivery from the tombstone's memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_dynamodb_a_like_and_its_unlike_reach_the_subscriber_in_order() {
    const KEYS: usize = 300;
    let nats = NatsServer::start();
    let dynamo = Dynalite::start();
    let dir = tempfile::tempdir().unwrap();
    let realtime = Realtime::subscribe(&nats, "users.>").await;
    let mut env = with_nats_channel(base_env(&nats, dir.path()));
    env.extend(dynamo.worker_env("delivery-notifications"));
    let workers = [Worker::start(dir.path(), &env), Worker::start(dir.path(), &env)];
    let js = nats.jetstream().await;
    for key in 0..KEYS {
        let (owner, trigger) = (format!("owner-{}", key % 7), format!("fan-{key}"));
        publish(&js, "notifications.post.like", like(&owner, &trigger, "post-1")).await;
        publish(
            &js,
            "notifications.post.unlike",
            unlike(&owner, &trigger, "post-1"),
        )
        .await;
    }
    wait_until("every event settled", Duration::from_secs(120), || {
        workers
            .iter()
            .map(|w| {
                ["created", "removed", "absent", "superseded", "duplicate"]
                    .iter()
                    .map(|o| w.count(o))
                    .sum::<usize>()
            })
            .sum::<usize>()
            >= KEYS * 2
    });
    wait_until_delivered(&nats, WITHIN, "nats").await;
    let events = realtime.events();
    let created: Vec<&String> = events
        .iter()
        .filter(|(e, _)| e == "new-notification")
        .map(|(_, id)| id)
        .collect();
    let removed: Vec<&String> = events
        .iter()
        .filter(|(e, _)| e == "notification-removed")
        .map(|(_, id)| id)
        .collect();
    assert!(!removed.is_empty(), "{events:?}");
    for id in &removed {
        if let Some(at) = created.iter().position(|c| c == id) {
            let created_at = events
                .iter()
                .position(|(e, i)| e == "new-notification" && i == created[at])
                .unwrap();
            let removed_at = events
                .iter()
                .position(|(e, i)| e == "notification-removed" && i == *id)
                .unwrap();
            assert!(created_at < removed_at, "{id}: removal before its notification");
        }
    }
    // Every like was unliked: a notification announced and never removed is one a client keeps.
    let kept: Vec<&&String> = created.iter().filter(|id| !removed.contains(id)).collect();
    assert!(
        kept.is_empty(),
        "{} notifications announced and never removed",
        kept.len()
    );
}

/// Production creates no stream by itself: with a channel configured and no outbox (setup
/// not run since the channel was added), notifications are still stored, and the loss of
/// their announcements is counted and logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_outbox_never_stops_storing() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&nats, dir.path());
    env.extend([
        ("ENVIRONMENT", "production".into()),
        ("NOTIF_STORE", "sqlite".into()),
    ]);
    run_setup(dir.path(), &env);
    let worker = Worker::start(dir.path(), &with_http(with_nats_channel(env)));
    let http = worker.http_addr();
    let js = nats.jetstream().await;
    the_like(&js, "notifications.post.like").await;
    wait_until("stored", WITHIN, || count_rows(dir.path()) == 1);
    worker.wait_for_log("the outbox is missing", WITHIN);
    worker.wait_for_log("cannot start the delivery stage", WITHIN);
    assert!(js.get_stream("NOTIFICATION_DELIVERIES").await.is_err());
    let (_, metrics) = http_get(&http, "/metrics");
    assert_eq!(
        metric(&metrics, "notification_worker_outbox_lost_total"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            r#"notification_worker_outbox_jobs_total{kind="created"}"#
        ),
        Some(0.0)
    );
    assert_eq!(http_get(&http, "/readyz").0, 200);
}
