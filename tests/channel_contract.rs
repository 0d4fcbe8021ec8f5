//! The one suite every delivery channel passes, each against its real receiver: sockudo
//! (a Pusher-protocol server) with a WebSocket subscriber, nats-server with a subscriber,
//! and a webhook receiver that verifies signatures. A new channel adds its rig here.

mod support;

use futures::future::BoxFuture;
use notification_worker::config::Secret;
use notification_worker::delivery::nats::{NatsChannel, NatsRealtimeSettings};
use notification_worker::delivery::pusher::PusherChannel;
use notification_worker::delivery::template::{NameKind, OwnerTemplate};
use notification_worker::delivery::webhook::{WebhookChannel, WebhookSettings};
use notification_worker::delivery::{AnyChannel, Channel, Failure, Job};
use notification_worker::domain::Version;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::channel::{send_checked, updated};
use support::webhook::WebhookReceiver;

const WITHIN: Duration = Duration::from_secs(15);

/// A channel wired to its running receiver.
struct Rig {
    channel: AnyChannel,
    /// (event kind: created/updated/removed, notification id) as the receiver got them.
    received: Arc<Mutex<Vec<(String, String)>>>,
    /// Takes the receiver away (connections refused from then on).
    stop: Box<dyn FnOnce() + Send>,
    /// The same channel with wrong credentials, where the channel has any.
    misconfigured: Option<AnyChannel>,
    /// Keeps servers and tasks alive for the test.
    _keep: Vec<Box<dyn std::any::Any + Send>>,
}

fn kind_of(event: &str) -> String {
    match event {
        "new-notification" | "notification.created" => "created",
        "notification-updated" | "notification.updated" => "updated",
        "notification-removed" | "notification.removed" => "removed",
        other => other,
    }
    .to_owned()
}

fn pusher() -> BoxFuture<'static, Rig> {
    Box::pin(async {
        let server = support::sockudo::Sockudo::start();
        let mut subscriber = server.subscriber().await;
        for owner in OWNERS {
            subscriber.subscribe(&format!("user-{owner}-notifications")).await;
        }
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&received);
        let reader = tokio::spawn(async move {
            while let Some(event) = subscriber.next_event(Duration::from_secs(3600)).await {
                let id = event.data["id"].as_str().unwrap_or_default().to_owned();
                sink.lock().unwrap().push((kind_of(&event.event), id));
            }
        });
        let channel = AnyChannel::Pusher(
            PusherChannel::new(server.channel_settings("user-{owner}-notifications", &server.secret))
                .unwrap(),
        );
        let misconfigured = AnyChannel::Pusher(
            PusherChannel::new(server.channel_settings("user-{owner}-notifications", "wrong")).unwrap(),
        );
        let server = Arc::new(Mutex::new(server));
        let stopping = Arc::clone(&server);
        Rig {
            channel,
            received,
            stop: Box::new(move || stopping.lock().unwrap().kill()),
            misconfigured: Some(misconfigured),
            _keep: vec![Box::new(server), Box::new(reader)],
        }
    })
}

fn nats() -> BoxFuture<'static, Rig> {
    Box::pin(async {
        let server = support::NatsServer::start();
        let client = server.client().await;
        let mut subscription = client.subscribe("users.>").await.unwrap();
        client.flush().await.unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&received);
        let reader = tokio::spawn(async move {
            while let Some(message) = futures::StreamExt::next(&mut subscription).await {
                let body: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
                let id = body["data"]["id"].as_str().unwrap_or_default().to_owned();
                sink.lock()
                    .unwrap()
                    .push((kind_of(body["event"].as_str().unwrap()), id));
            }
        });
        let publisher = server.client().await;
        let settings = NatsRealtimeSettings {
            subject: OwnerTemplate::parse(NameKind::NatsSubject, "users.{owner}.notifications").unwrap(),
        };
        let channel = AnyChannel::Nats(NatsChannel::new(publisher, &settings));
        let server = Arc::new(Mutex::new(server));
        let stopping = Arc::clone(&server);
        Rig {
            channel,
            received,
            stop: Box::new(move || stopping.lock().unwrap().stop()),
            // Core NATS has no credentials of its own here: the connection's are the worker's.
            misconfigured: None,
            _keep: vec![Box::new(server), Box::new(reader), Box::new(client)],
        }
    })
}

fn webhook() -> BoxFuture<'static, Rig> {
    Box::pin(async {
        let receiver = WebhookReceiver::start();
        let settings = |secret: &str| WebhookSettings {
            url: url::Url::parse(&receiver.url()).unwrap(),
            secret: Secret::new(secret),
            timeout: Duration::from_secs(5),
        };
        let channel = AnyChannel::Webhook(WebhookChannel::new(settings(support::webhook::SECRET)).unwrap());
        let misconfigured = AnyChannel::Webhook(
            WebhookChannel::new(settings("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")).unwrap(),
        );
        let received = Arc::new(Mutex::new(Vec::new()));
        let receiver = Arc::new(Mutex::new(receiver));
        // The receiver records what it accepted; copy it into the rig's list as it comes.
        let source = Arc::clone(&receiver);
        let sink = Arc::clone(&received);
        let copier = tokio::spawn(async move {
            loop {
                let accepted = source.lock().unwrap().accepted();
                *sink.lock().unwrap() = accepted
                    .iter()
                    .map(|r| {
                        let kind = kind_of(r.body["type"].as_str().unwrap_or_default());
                        (kind, r.body["data"]["id"].as_str().unwrap_or_default().to_owned())
                    })
                    .collect();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let stopping = Arc::clone(&receiver);
        Rig {
            channel,
            received,
            stop: Box::new(move || stopping.lock().unwrap().stop()),
            misconfigured: Some(misconfigured),
            _keep: vec![Box::new(receiver), Box::new(copier)],
        }
    })
}

const OWNERS: [&str; 3] = ["user-1", "user-2", "user-3"];

fn created(owner: &str) -> Job {
    let Job::Created(notice) = Job::sample(owner) else {
        unreachable!()
    };
    Job::Created(notice)
}

fn removed(job: &Job) -> Job {
    Job::removed(job.owner(), "k", job.id(), Version::new(1, 5).unwrap(), None)
}

async fn wait_for(rig: &Rig, count: usize) -> Vec<(String, String)> {
    let deadline = std::time::Instant::now() + WITHIN;
    loop {
        let received = rig.received.lock().unwrap().clone();
        if received.len() >= count {
            return received;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{}: {} of {count} arrived: {received:?}",
            rig.channel.name(),
            received.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Each kind of job is accepted and reaches the receiver as that kind, for that notification.
async fn every_kind_reaches_the_receiver(rig: Rig) {
    let like = created(OWNERS[0]);
    let jobs = [like.clone(), updated(OWNERS[1]), removed(&like)];
    for job in &jobs {
        let results = send_checked(&rig.channel, std::slice::from_ref(job)).await;
        assert!(results[0].is_ok(), "{}: {results:?}", rig.channel.name());
    }
    let received = wait_for(&rig, jobs.len()).await;
    let expected: Vec<(String, String)> = jobs
        .iter()
        .map(|job| (job.kind().as_str().to_owned(), job.id().to_owned()))
        .collect();
    assert_eq!(received, expected, "{}", rig.channel.name());
}

/// A full batch: one result per job, each accepted, each received.
async fn a_full_batch_has_one_result_per_job(rig: Rig) {
    let jobs: Vec<Job> = (0..rig.channel.max_batch())
        .map(|i| created(OWNERS[i % OWNERS.len()]))
        .collect();
    let results = send_checked(&rig.channel, &jobs).await;
    assert!(
        results.iter().all(Result::is_ok),
        "{}: {results:?}",
        rig.channel.name()
    );
    let received = wait_for(&rig, jobs.len()).await;
    let mut got: Vec<&String> = received.iter().map(|(_, id)| id).collect();
    let mut sent: Vec<&str> = jobs.iter().map(Job::id).collect();
    got.sort();
    sent.sort();
    assert_eq!(got, sent, "{}", rig.channel.name());
}

/// A receiver that is gone is worth retrying: transient, for every job.
async fn a_missing_receiver_is_transient(rig: Rig) {
    (rig.stop)();
    let jobs = [created(OWNERS[0]), created(OWNERS[1])];
    let jobs = &jobs[..rig.channel.max_batch().min(2)];
    let results = send_checked(&rig.channel, jobs).await;
    for result in results {
        assert!(
            matches!(result, Err(ref error) if matches!(error.kind, Failure::Transient { .. })),
            "{}: {result:?}",
            rig.channel.name()
        );
    }
}

/// Wrong credentials are refused for good: permanent, so the job is dead-lettered at once.
async fn wrong_credentials_are_permanent(rig: Rig) {
    let channel = rig.misconfigured.expect("the rig has credentials to get wrong");
    let results = send_checked(&channel, &[created(OWNERS[0])]).await;
    assert!(
        matches!(&results[0], Err(error) if error.kind == Failure::Permanent),
        "{}: {results:?}",
        channel.name()
    );
}

macro_rules! contract {
    ($rig:ident { $($case:ident),* $(,)? }) => {
        mod $rig {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::$rig().await).await;
                }
            )*
        }
    };
}

contract!(pusher {
    every_kind_reaches_the_receiver,
    a_full_batch_has_one_result_per_job,
    a_missing_receiver_is_transient,
    wrong_credentials_are_permanent,
});
contract!(nats {
    every_kind_reaches_the_receiver,
    a_full_batch_has_one_result_per_job,
    a_missing_receiver_is_transient,
});
contract!(webhook {
    every_kind_reaches_the_receiver,
    a_full_batch_has_one_result_per_job,
    a_missing_receiver_is_transient,
    wrong_credentials_are_permanent,
});
