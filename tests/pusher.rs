//! Channel `pusher` against a real Pusher-protocol server (sockudo) and a WebSocket client
//! subscribed the way browsers are: what is sent is what subscribers get, on the channel
//! each owner's template names; and what each kind of refusal becomes.

mod support;

use notification_worker::config::Secret;
use notification_worker::delivery::job::Notice;
use notification_worker::delivery::pusher::{PusherChannel, PusherSettings};
use notification_worker::delivery::template::{NameKind, OwnerTemplate};
use notification_worker::delivery::{Failure, Job, SendError};
use notification_worker::domain::Version;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::time::{Duration, Instant};
use support::channel::{send_checked, updated};
use support::sockudo::{Audience, Gate, Sockudo};
use support::{NatsServer, Worker};

const WITHIN: Duration = Duration::from_secs(10);

fn settings(server: &Sockudo, template: &str) -> PusherSettings {
    server.channel_settings(template, &server.secret)
}

/// Settings for a server that is not sockudo (a closed port, a canned answer).
fn settings_at(base_url: &str) -> PusherSettings {
    PusherSettings {
        app_id: "1".into(),
        key: "key".into(),
        secret: Secret::new("secret"),
        base_url: url::Url::parse(base_url).unwrap(),
        channel: OwnerTemplate::parse(NameKind::PusherChannel, "user-{owner}-notifications").unwrap(),
        timeout: Duration::from_millis(500),
    }
}

/// A job whose data is over Pusher's 10 KB.
fn oversized(owner: &str) -> Job {
    let Job::Created(mut notice) = Job::sample(owner) else {
        unreachable!()
    };
    notice.item.excerpt = Some("x".repeat(11 * 1024));
    Job::Created(notice)
}

fn assert_delivered(results: &[Result<(), SendError>]) {
    assert!(results.iter().all(Result::is_ok), "{results:?}");
}

#[tokio::test]
async fn a_created_notification_reaches_the_owners_public_channel() {
    let server = Sockudo::start();
    let mut subscriber = server.subscriber().await;
    subscriber.subscribe("user-123-notifications").await;
    let channel = PusherChannel::new(settings(&server, "user-{owner}-notifications")).unwrap();

    let job = Job::sample("123");
    assert_delivered(&send_checked(&channel, std::slice::from_ref(&job)).await);

    let received = subscriber.next_event(WITHIN).await.expect("the event arrives");
    assert_eq!(received.event, "new-notification");
    assert_eq!(received.channel, "user-123-notifications");
    // The stored fields and the version, as the client reads them; not the server-side key.
    assert_eq!(received.data, job.client_data());
    assert_eq!(received.data["id"], job.id());
    assert_eq!(received.data["owner"], "123");
    assert_eq!(received.data["username"], "John Doe");
    assert_eq!(received.data["version"], "0");
    assert!(received.data.get("action_key").is_none(), "{}", received.data);
}

#[tokio::test]
async fn a_private_channel_gets_it_and_odd_owners_stay_in_their_own_channel() {
    let server = Sockudo::start();
    let mut subscriber = server.subscriber().await;
    subscriber.subscribe("private-user-123-notifications").await;
    // `.` is not allowed as is in owner names: encoded, as clients compute it too.
    subscriber.subscribe("private-user-alice=2Ex-notifications").await;
    let channel = PusherChannel::new(settings(&server, "private-user-{owner}-notifications")).unwrap();

    // A version as the store stage gives it (stream creation time and sequence): larger
    // than a JavaScript number, so it travels as a string.
    let Job::Created(notice) = Job::sample("123") else {
        unreachable!()
    };
    let version = Version::new(1_700_000_000_000_000, 7)
        .unwrap()
        .to_number()
        .to_string();
    let notification = Job::Created(Notice { version, ..notice });
    let odd = Job::sample("alice.x");
    assert_delivered(&send_checked(&channel, std::slice::from_ref(&notification)).await);
    assert_delivered(&send_checked(&channel, std::slice::from_ref(&odd)).await);

    let first = subscriber.next_event(WITHIN).await.expect("the event arrives");
    assert_eq!(first.event, "new-notification");
    assert_eq!(first.channel, "private-user-123-notifications");
    assert_eq!(first.data, notification.client_data());
    assert_eq!(first.data["version"], notification.version());
    let second = subscriber.next_event(WITHIN).await.expect("the event arrives");
    assert_eq!(second.channel, "private-user-alice=2Ex-notifications");
    assert_eq!(second.data["owner"], "alice.x");
}

#[tokio::test]
async fn a_batch_reaches_every_owner_and_an_oversized_job_does_not_hold_it_back() {
    let server = Sockudo::start();
    let mut subscriber = server.subscriber().await;
    for owner in ["user-1", "user-2", "user-3", "user-4"] {
        subscriber.subscribe(&format!("user-{owner}-notifications")).await;
    }
    let channel = PusherChannel::new(settings(&server, "user-{owner}-notifications")).unwrap();

    let jobs = [
        Job::sample("user-1"),
        updated("user-2"),
        oversized("user-4"),
        Job::removed(
            "user-3",
            "k",
            "n-3",
            Version::new(1_700_000_000_000_000, 9).unwrap(),
            None,
        ),
    ];
    let results = send_checked(&channel, &jobs).await;
    assert!(
        results[0].is_ok() && results[1].is_ok() && results[3].is_ok(),
        "{results:?}"
    );
    let refused = results[2].as_ref().unwrap_err();
    assert_eq!(refused.kind, Failure::Permanent);
    assert!(refused.message.contains("10240"), "{refused}");

    let mut received = subscriber.events(3, WITHIN).await;
    received.sort_by(|a, b| a.channel.cmp(&b.channel));
    let seen: Vec<(&str, &str)> = received
        .iter()
        .map(|event| (event.channel.as_str(), event.event.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("user-user-1-notifications", "new-notification"),
            ("user-user-2-notifications", "notification-updated"),
            ("user-user-3-notifications", "notification-removed"),
        ]
    );
    assert_eq!(received[1].data, jobs[1].client_data());
    assert_eq!(received[1].data["version"], "42");
    assert_eq!(received[2].data, jobs[3].client_data());
    // Nothing for the oversized one.
    assert!(subscriber.next_event(Duration::from_millis(300)).await.is_none());
}

#[tokio::test]
async fn a_wrong_secret_is_refused_for_good_for_every_job_of_the_batch() {
    let server = Sockudo::start();
    let mut wrong = settings(&server, "user-{owner}-notifications");
    wrong.secret = Secret::new("not-the-secret");
    let channel = PusherChannel::new(wrong).unwrap();
    for jobs in [
        vec![Job::sample("user-1")],
        vec![Job::sample("user-1"), Job::sample("user-2")],
    ] {
        let results = send_checked(&channel, &jobs).await;
        for result in results {
            let error = result.unwrap_err();
            assert_eq!(error.kind, Failure::Permanent, "{error}");
            assert!(error.message.contains("401"), "{error}");
        }
    }
}

#[tokio::test]
async fn no_server_is_worth_retrying() {
    // A port nothing listens on: the connection is refused.
    let closed = support::free_port();
    let channel = PusherChannel::new(settings_at(&format!("http://127.0.0.1:{closed}"))).unwrap();
    let results = send_checked(&channel, &[Job::sample("user-1"), Job::sample("user-2")]).await;
    for result in results {
        let error = result.unwrap_err();
        assert_eq!(error.kind, Failure::Transient { retry_after: None }, "{error}");
        // Said plainly, without the signed URL (it goes to logs and dead letters).
        assert!(error.message.contains("refused"), "{error}");
        assert!(!error.message.contains("auth_signature"), "{error}");
    }

    // A server that takes the connection and never answers: the timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let channel = PusherChannel::new(settings_at(&format!("http://127.0.0.1:{port}"))).unwrap();
    let started = std::time::Instant::now();
    let error = send_checked(&channel, &[Job::sample("user-1")]).await[0]
        .clone()
        .unwrap_err();
    assert_eq!(error.kind, Failure::Transient { retry_after: None }, "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    drop(silent);
}

/// A one-request HTTP server answering `status` with `headers` and `body`.
fn canned(status: &str, headers: &str, body: &str) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let answer = format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        // Read the whole request first (headers, then Content-Length bytes of body).
        let mut request = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            let read = stream.read(&mut buffer).unwrap();
            request.extend_from_slice(&buffer[..read]);
            let text = String::from_utf8_lossy(&request);
            if let Some(end) = text.find("\r\n\r\n") {
                let length: usize = text[..end]
                    .lines()
                    .find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                if request.len() >= end + 4 + length {
                    break;
                }
            }
            if read == 0 {
                break;
            }
        }
        stream.write_all(answer.as_bytes()).unwrap();
    });
    format!("http://127.0.0.1:{port}")
}

#[tokio::test]
async fn each_refusal_becomes_what_pusher_means_by_it() {
    let later = |seconds| Failure::Transient {
        retry_after: Some(Duration::from_secs(seconds)),
    };
    let cases = [
        // Over the day's message quota: it passes.
        ("403 Forbidden", "Retry-After: 120\r\n", "Over quota", later(120)),
        ("403 Forbidden", "", "App disabled", Failure::Permanent),
        (
            "413 Payload Too Large",
            "",
            "Request too large",
            Failure::Permanent,
        ),
        ("400 Bad Request", "", "Invalid channel name", Failure::Permanent),
        (
            "429 Too Many Requests",
            "Retry-After: 7\r\n",
            "slow down",
            later(7),
        ),
        (
            "503 Service Unavailable",
            "",
            "",
            Failure::Transient { retry_after: None },
        ),
    ];
    for (status, headers, body, expected) in cases {
        let channel = PusherChannel::new(settings_at(&canned(status, headers, body))).unwrap();
        let error = send_checked(&channel, &[Job::sample("user-1")]).await[0]
            .clone()
            .unwrap_err();
        assert_eq!(error.kind, expected, "{status} {body}: {error}");
        assert!(error.message.contains(&status[..3]), "{error}");
    }
}

/// The whole path: an event on NATS, stored by the worker, announced to the outbox, sent
/// by the worker's pusher channel to sockudo, received by a browser-like subscriber; and a
/// repeated event is not delivered again.
#[tokio::test]
async fn an_event_on_nats_reaches_the_owners_subscriber_through_the_worker() {
    let server = Sockudo::start();
    let mut subscriber = server.subscriber().await;
    subscriber.subscribe("private-user-owner-e2e-notifications").await;
    let nats = support::NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut env = support::base_env(&nats, dir.path());
    env.extend(server.worker_env("private-user-{owner}-notifications"));
    let worker = support::Worker::start(dir.path(), &env);
    let js = nats.jetstream().await;

    let event = support::like("owner-e2e", "trigger-1", "post-1");
    support::publish(&js, "notifications.post.like", event.clone()).await;
    let Some(received) = subscriber.next_event(Duration::from_secs(30)).await else {
        panic!(
            "nothing reached sockudo; worker logs:\n{}\nsockudo log:\n{}",
            worker.logs().join("\n"),
            server.log()
        );
    };
    assert_eq!(received.event, "new-notification");
    assert_eq!(received.channel, "private-user-owner-e2e-notifications");
    let stored_id: String = support::sqlite(dir.path())
        .query_row(
            "SELECT id FROM notifications WHERE owner = 'owner-e2e'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(received.data["id"], stored_id.as_str());
    assert_eq!(received.data["owner"], "owner-e2e");
    assert_eq!(received.data["userid"], "trigger-1");
    assert_eq!(received.data["resource_id"], "post-1");
    assert_eq!(received.data["username"], "Test User");
    let version = received.data["version"].as_str().expect("a version string");
    assert!(
        !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit()),
        "{version}"
    );
    assert!(received.data.get("action_key").is_none(), "{}", received.data);

    // The same event again changes nothing, so nothing is announced.
    support::publish(&js, "notifications.post.like", event).await;
    assert!(
        subscriber.next_event(Duration::from_secs(2)).await.is_none(),
        "a repeated event was delivered again"
    );
}

/// Owners of the fault tests' load: few enough for one subscriber to follow them all.
const OWNERS: usize = 20;
const TEMPLATE: &str = "user-{owner}-notifications";

fn owners_channels() -> Vec<String> {
    (0..OWNERS)
        .map(|owner| format!("user-owner-{owner}-notifications"))
        .collect()
}

/// Like `i` of a load: its own trigger user (so its own notification), one of the owners.
fn load_like(i: usize) -> String {
    support::like(
        &format!("owner-{}", i % OWNERS),
        &format!("fan-{i}"),
        &format!("post-{}", i % 13),
    )
}

async fn publish_likes(js: &async_nats::jetstream::Context, likes: std::ops::Range<usize>) {
    let mut pending = Vec::new();
    for i in likes {
        pending.push(
            js.publish("notifications.post.like", load_like(i).into())
                .await
                .unwrap(),
        );
        if pending.len() >= 500 {
            for ack in pending.drain(..) {
                ack.await.unwrap();
            }
        }
    }
    for ack in pending {
        ack.await.unwrap();
    }
}

/// The ids of the `new-notification` events the audience received (repeats included).
fn delivered_ids(audience: &Audience) -> Vec<String> {
    audience
        .events()
        .into_iter()
        .filter(|event| event.event == "new-notification")
        .map(|event| event.data["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// What sockudo and the worker said that may explain a missing event.
fn trouble(server: &Sockudo, worker: &Worker) -> String {
    let notable = |line: &&str| {
        let lower = line.to_ascii_lowercase();
        lower.contains("warn") || lower.contains("error") || lower.contains("buffer full")
    };
    let log = server.log();
    let sockudo: Vec<&str> = log.lines().filter(notable).take(40).collect();
    let logs = worker.logs();
    let worker: Vec<&str> = logs.iter().map(String::as_str).filter(notable).take(40).collect();
    format!("sockudo:\n{}\nworker:\n{}", sockudo.join("\n"), worker.join("\n"))
}

/// Waits until every id reached the audience at least once.
async fn wait_for_every_id(
    audience: &Audience,
    ids: &[String],
    within: Duration,
    server: &Sockudo,
    worker: &Worker,
) {
    let deadline = Instant::now() + within;
    loop {
        let delivered: HashSet<String> = delivered_ids(audience).into_iter().collect();
        let missing = ids.iter().filter(|id| !delivered.contains(*id)).count();
        if missing == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of {} notifications never reached the subscriber within {within:?}\n{}",
            ids.len(),
            trouble(server, worker)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The pusher channel's consumer on the outbox: (pending, ack pending, ack floor, last
/// sequence of the outbox).
async fn pusher_consumer_state(nats: &NatsServer) -> Option<(u64, usize, u64, u64)> {
    let js = nats.jetstream().await;
    let stream = js.get_stream("NOTIFICATION_DELIVERIES").await.ok()?;
    let mut consumer = stream
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>("notification-delivery-pusher")
        .await
        .ok()?;
    let info = consumer.info().await.ok()?.clone();
    let last = stream.clone().info().await.ok()?.state.last_sequence;
    Some((
        info.num_pending,
        info.num_ack_pending,
        info.ack_floor.stream_sequence,
        last,
    ))
}

/// Waits until the pusher channel's consumer has nothing pending or unacknowledged.
async fn wait_until_pusher_drained(nats: &NatsServer, within: Duration) {
    support::eventually("notification-delivery-pusher drained", within, || async {
        matches!(
            pusher_consumer_state(nats).await,
            Some((0, 0, floor, last)) if floor == last
        )
    })
    .await;
}

/// Every dead letter of the delivery stage (none when the stream does not exist).
async fn delivery_dead_letters(nats: &NatsServer) -> u64 {
    let js = nats.jetstream().await;
    let Ok(mut stream) = js.get_stream("DELIVERIES_DLQ").await else {
        return 0;
    };
    stream.info().await.unwrap().state.messages
}

/// 10,000 likes for 20 owners while the worker is SIGKILLed three times, through the worker
/// binary and a real sockudo: every stored notification reaches the WebSocket subscriber at
/// least once (the kills may repeat some: reported, not hidden); a like published twice
/// still reaches it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_between_commit_and_send_lose_no_pusher_delivery() {
    const LIKES: usize = 10_000;
    let server = Sockudo::start();
    let audience = server.audience(owners_channels()).await;
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    // Each request held 25 ms on its way to sockudo: more jobs are between their commit
    // and their send when a kill comes.
    let slow_network = support::DelayingProxy::start(server.port, Duration::from_millis(25));
    let mut env = support::base_env(&nats, dir.path());
    env.extend(server.worker_env(TEMPLATE));
    for (name, value) in &mut env {
        if *name == "PUSHER_HOST" {
            *value = slow_network.endpoint();
        }
    }
    let js = nats.jetstream().await;
    let mut worker = Worker::start(dir.path(), &env);
    let publisher = {
        let js = js.clone();
        tokio::spawn(async move { publish_likes(&js, 0..LIKES).await })
    };
    for kill in 1..=3 {
        let target = (LIKES as i64 * kill) / 4;
        support::wait_until("progress before a kill", Duration::from_secs(180), || {
            support::count_rows(dir.path()) >= target
        });
        worker.kill();
        worker = Worker::start(dir.path(), &env);
    }
    publisher.await.unwrap();
    support::wait_until("every like stored", Duration::from_secs(180), || {
        support::count_rows(dir.path()) == LIKES as i64
    });

    // Another key, published twice as two messages: one notification, one event.
    let twice = support::like("owner-0", "fan-twice", "post-twice");
    for _ in 0..2 {
        support::publish(&js, "notifications.post.like", twice.clone()).await;
    }
    support::eventually("every event settled", Duration::from_secs(180), || async {
        support::consumer_backlog(&nats).await == (0, 0)
    })
    .await;
    let ids = support::stored_ids(dir.path())
        .into_values()
        .collect::<Vec<String>>();
    assert_eq!(ids.len(), LIKES + 1);
    let twice_id: String = support::sqlite(dir.path())
        .query_row(
            "SELECT id FROM notifications WHERE owner = 'owner-0' AND action_key LIKE 'fan-twice#%'",
            [],
            |row| row.get(0),
        )
        .unwrap();

    // Once the consumer has settled every job, each was sent (or lost): only the way from
    // sockudo to the subscriber is left.
    wait_until_pusher_drained(&nats, Duration::from_secs(180)).await;
    wait_for_every_id(&audience, &ids, Duration::from_secs(10), &server, &worker).await;
    // Connected once: sockudo never dropped the subscriber (it reconnects by itself, and
    // what it missed meanwhile would otherwise look like the worker's loss).
    assert_eq!(
        audience.sessions(),
        1,
        "the subscriber was disconnected\n{}",
        trouble(&server, &worker)
    );
    let delivered = delivered_ids(&audience);
    let twice_count = delivered.iter().filter(|id| **id == twice_id).count();
    assert_eq!(
        twice_count, 1,
        "the like published twice reached the subscriber {twice_count} times"
    );
    assert_eq!(delivery_dead_letters(&nats).await, 0);
    let repeats = delivered.len() - ids.len();
    println!("three SIGKILLs during {LIKES} likes: {repeats} repeated pusher deliveries");
}

/// sockudo stopped for 10 s mid-load: storing does not wait for it (every row is there
/// while it is down), and once it is back (its subscriber too) every notification reaches
/// the subscriber, none dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pusher_outage_mid_load_delays_deliveries_and_loses_none() {
    const LIKES: usize = 1_000;
    const OUTAGE: Duration = Duration::from_secs(10);
    let mut server = Sockudo::start();
    // The worker reaches sockudo through a gate: after the restart it is opened only once
    // the subscriber has subscribed again, since sockudo (as Pusher) drops events for
    // channels nobody is subscribed to, which would be the harness's loss, not the worker's.
    let gate = Gate::start(server.port);
    let audience = server.audience(owners_channels()).await;
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut env = support::base_env(&nats, dir.path());
    env.extend(server.worker_env(TEMPLATE));
    for (name, value) in &mut env {
        if *name == "PUSHER_HOST" {
            *value = gate.url();
        }
    }
    let worker = Worker::start(dir.path(), &env);
    let js = nats.jetstream().await;

    publish_likes(&js, 0..LIKES / 2).await;
    support::eventually("deliveries under way", Duration::from_secs(60), || async {
        audience.count() > 0
    })
    .await;
    gate.close();
    // A call sockudo answered just before the gate closed may still be on its way to the
    // subscriber: let those fan-outs finish before the kill (an event sockudo accepted and
    // then died holding is lost by the server, as with Pusher, not by the worker).
    let mut last = audience.count();
    let settled_by = Instant::now() + Duration::from_secs(30);
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = audience.count();
        if now == last || Instant::now() > settled_by {
            break;
        }
        last = now;
    }
    server.kill();
    let stopped = Instant::now();
    publish_likes(&js, LIKES / 2..LIKES).await;
    support::wait_until("every like stored while sockudo is down", OUTAGE, || {
        support::count_rows(dir.path()) == LIKES as i64
    });
    let before_return = audience.count();
    let during = pusher_consumer_state(&nats).await.expect("the pusher consumer");
    assert!(
        during.0 + during.1 as u64 > 0,
        "the whole load was delivered before the outage: {during:?}"
    );
    while stopped.elapsed() < OUTAGE {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    server.restart();
    audience.wait_for_sessions(2, Duration::from_secs(30)).await;
    // Nothing reached the subscriber while sockudo was away, and the backlog is still the
    // worker's to deliver.
    assert_eq!(audience.count(), before_return);
    let back = pusher_consumer_state(&nats).await.expect("the pusher consumer");
    assert!(
        back.0 + back.1 as u64 > 0,
        "the worker settled its whole backlog while sockudo was away ({} dead-lettered): {back:?}",
        delivery_dead_letters(&nats).await
    );
    gate.open();

    let ids = support::stored_ids(dir.path())
        .into_values()
        .collect::<Vec<String>>();
    assert_eq!(ids.len(), LIKES);
    wait_for_every_id(&audience, &ids, Duration::from_secs(120), &server, &worker).await;
    wait_until_pusher_drained(&nats, Duration::from_secs(60)).await;
    assert_eq!(
        delivery_dead_letters(&nats).await,
        0,
        "{}",
        trouble(&server, &worker)
    );
    let delivered = delivered_ids(&audience);
    println!(
        "a {OUTAGE:?} sockudo outage during {LIKES} likes: {} delivered after it, {} repeats",
        delivered.len() - before_return,
        delivered.len() - ids.len()
    );
}
