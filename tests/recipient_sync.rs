//! The recipient directory kept in sync from stream RECIPIENTS by the worker (issue 10):
//! replicas, dead letters, the upgrade rule (no stream: storing goes on) and `publish`.

mod support;

use async_nats::jetstream::consumer::{self, PullConsumer};
use notification_worker::domain::Id;
use notification_worker::recipients::{Locale, Recipient};
use notification_worker::store::{RecipientStore, SqliteRecipientStore};
use std::path::Path;
use std::time::Duration;
use support::*;

const WITHIN: Duration = Duration::from_secs(60);

async fn record(dir: &Path, owner: &str) -> Option<Recipient> {
    let store = SqliteRecipientStore::open(&dir.join("notifications.db")).unwrap();
    store.get(&Id::parse("owner", owner).unwrap()).await.unwrap()
}

fn tokens(record: &Recipient) -> Vec<String> {
    let mut tokens: Vec<String> = record
        .push_targets()
        .map(|target| format!("{target:?}"))
        .collect();
    tokens.sort();
    tokens
}

/// Every message of `stream`, oldest first (empty when it does not exist).
async fn messages(nats: &NatsServer, stream: &str) -> Vec<async_nats::jetstream::message::StreamMessage> {
    let js = nats.jetstream().await;
    let Ok(mut stream) = js.get_stream(stream).await else {
        return Vec::new();
    };
    let state = stream.info().await.unwrap().state.clone();
    let mut found = Vec::new();
    if state.messages == 0 {
        return found;
    }
    for sequence in state.first_sequence..=state.last_sequence {
        if let Ok(message) = stream.get_raw_message(sequence).await {
            found.push(message);
        }
    }
    found
}

/// Stream RECIPIENTS and its consumer as `setup` makes them, but with a short AckWait, so
/// that a message taken and never acknowledged comes back within the test's time.
async fn create_recipients_consumer(nats: &NatsServer, ack_wait: Duration) -> PullConsumer {
    let js = nats.jetstream().await;
    let stream = js
        .get_or_create_stream(async_nats::jetstream::stream::Config {
            name: "RECIPIENTS".into(),
            subjects: vec!["recipients.>".into()],
            max_age: Duration::from_secs(7 * 24 * 60 * 60),
            ..Default::default()
        })
        .await
        .unwrap();
    stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("notification-worker-recipients".into()),
            filter_subject: "recipients.>".into(),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait,
            ..Default::default()
        })
        .await
        .unwrap()
}

fn recipient_events(text: &str, event_type: &str, outcome: &str) -> f64 {
    metric(
        text,
        &format!(
            "notification_worker_recipient_events_total{{event_type=\"{event_type}\",outcome=\"{outcome}\"}}"
        ),
    )
    .unwrap_or_else(|| panic!("no recipient_events series for {event_type} {outcome}:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_keep_one_owners_record_as_one_would_whatever_the_order() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let consumer = create_recipients_consumer(&nats, Duration::from_secs(1)).await;
    let js = nats.jetstream().await;
    // The oldest event is taken and never acknowledged: it comes back (a redelivery) after
    // the newer ones were applied, so the store merges it out of order.
    publish(
        &js,
        "recipients.upsert",
        r#"{"owner":"user-1","email":"old@example.com","locale":"en","preferences":{"email":{"post.like":"off"}}}"#,
    )
    .await;
    let mut taken = consumer.fetch().max_messages(1).messages().await.unwrap();
    let taken = futures::StreamExt::next(&mut taken).await.unwrap().unwrap();
    assert_eq!(taken.subject.as_str(), "recipients.upsert");

    let env = with_http(base_env(&nats, dir.path()));
    let first = Worker::start(dir.path(), &env);
    let second = Worker::start(dir.path(), &env);
    publish(
        &js,
        "recipients.push.add",
        r#"{"owner":"user-1","kind":"fcm","token":"tok-1"}"#,
    )
    .await;
    publish(
        &js,
        "recipients.push.add",
        r#"{"owner":"user-1","kind":"fcm","token":"tok-2"}"#,
    )
    .await;
    publish(
        &js,
        "recipients.push.remove",
        r#"{"owner":"user-1","kind":"fcm","token":"tok-1"}"#,
    )
    .await;
    publish(
        &js,
        "recipients.upsert",
        r#"{"owner":"user-1","email":"new@example.com"}"#,
    )
    .await;
    // The same change again, with a newer version.
    publish(
        &js,
        "recipients.upsert",
        r#"{"owner":"user-1","email":"new@example.com"}"#,
    )
    .await;
    publish(
        &js,
        "recipients.upsert",
        r#"{"owner":"user-2","email":"gone@example.com"}"#,
    )
    .await;
    publish(&js, "recipients.remove", r#"{"owner":"user-2"}"#).await;

    eventually("user-1's record as applied in order", WITHIN, || async {
        record(dir.path(), "user-1").await.is_some_and(|r| {
            r.email().is_some_and(|e| e.to_string() == "new@example.com")
                && r.locale().is_some()
                && tokens(&r).len() == 1
        })
    })
    .await;
    let user_1 = record(dir.path(), "user-1").await.unwrap();
    // The newer email stands; what only the redelivered event set is there too.
    assert_eq!(user_1.locale(), Some(&Locale::parse("en").unwrap()));
    assert_eq!(user_1.preferences().count(), 1);
    let targets = tokens(&user_1);
    assert!(targets[0].contains("tok-2"), "{targets:?}");
    eventually("user-2 removed", WITHIN, || async {
        record(dir.path(), "user-2")
            .await
            .is_some_and(|r| r.removed_at().is_some() && r.email().is_none())
    })
    .await;
    assert!(messages(&nats, "RECIPIENTS_DLQ").await.is_empty());

    // Every event counted once, by one replica or the other.
    let addrs = [first.http_addr(), second.http_addr()];
    let total = |event_type: &'static str, outcome: &'static str| {
        addrs
            .iter()
            .map(|addr| recipient_events(&http_get(addr, "/metrics").1, event_type, outcome))
            .sum::<f64>()
    };
    wait_until("every upsert counted", WITHIN, || {
        total("upsert", "applied") + total("upsert", "unchanged") == 4.0
    });
    // Which of them changed the record depends on the order the replicas took them in (a
    // push.add applied after its push.remove changes nothing), but each is counted once.
    assert_eq!(total("push.add", "applied") + total("push.add", "unchanged"), 2.0);
    assert_eq!(
        total("push.remove", "applied") + total("push.remove", "unchanged"),
        1.0
    );
    assert_eq!(total("remove", "applied") + total("remove", "unchanged"), 1.0);
    assert_eq!(total("upsert", "invalid"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_recipient_event_is_dead_lettered_with_its_reason() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let _worker = Worker::start(dir.path(), &base_env(&nats, dir.path()));
    let js = nats.jetstream().await;
    let body = r#"{"email":"a@example.com"}"#;
    let seq = publish(&js, "recipients.upsert", body).await;

    eventually("a recipients dead letter", WITHIN, || async {
        messages(&nats, "RECIPIENTS_DLQ").await.len() == 1
    })
    .await;
    let letter = &messages(&nats, "RECIPIENTS_DLQ").await[0];
    assert_eq!(letter.subject.as_str(), "dlq.recipients.upsert");
    assert_eq!(letter.payload.as_ref(), body.as_bytes());
    assert_eq!(header(letter, "Dlq-Reason"), "missing_field");
    assert!(header(letter, "Dlq-Error").contains("owner"));
    assert_eq!(header(letter, "Dlq-Original-Sequence"), seq.to_string());
    // Acknowledged after the dead letter: nothing left for the consumer.
    eventually("the consumer settled", WITHIN, || async {
        let mut consumer = js
            .get_stream("RECIPIENTS")
            .await
            .unwrap()
            .get_consumer::<async_nats::jetstream::consumer::pull::Config>("notification-worker-recipients")
            .await
            .unwrap();
        let info = consumer.info().await.unwrap();
        info.num_pending == 0 && info.num_ack_pending == 0
    })
    .await;
    // Never in the notifications' dead letters.
    assert!(dead_letters(&nats).await.is_empty());

    // `dlq --stream recipients` lists and replays them.
    let env = base_env(&nats, dir.path());
    let list = command(dir.path(), &env)
        .args(["dlq", "--stream", "recipients", "list"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(list.status.success(), "{}", String::from_utf8_lossy(&list.stderr));
    assert!(
        listed.contains("missing_field") && listed.contains("recipients.upsert"),
        "{listed}"
    );
    let replay = command(dir.path(), &env)
        .args(["dlq", "--stream", "recipients", "replay", "--all"])
        .output()
        .unwrap();
    assert!(
        replay.status.success(),
        "{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    // Back in RECIPIENTS, still invalid: dead-lettered again, with the original's sequence.
    eventually("the replayed event dead-lettered again", WITHIN, || async {
        let letters = messages(&nats, "RECIPIENTS_DLQ").await;
        letters.len() == 1 && letters[0].sequence > letter.sequence
    })
    .await;
    assert_eq!(messages(&nats, "RECIPIENTS").await.len(), 2);
    let again = &messages(&nats, "RECIPIENTS_DLQ").await[0];
    assert_eq!(header(again, "Dlq-Original-Sequence"), seq.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_production_worker_without_the_recipients_stream_stores_notifications_as_before() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    // Today's deployment: the notifications' stream and consumer exist, RECIPIENTS does not.
    create_consumer_with_ack_wait(&nats, Duration::from_secs(30)).await;
    let mut env = base_env(&nats, dir.path());
    env.push(("ENVIRONMENT", "production".into()));
    env.push(("NOTIF_STORE", "sqlite".into()));
    let worker = Worker::start(dir.path(), &env);
    worker.wait_for_log("recipient directory is not synced", WITHIN);
    let js = nats.jetstream().await;
    publish(&js, "notifications.post.like", like("user-1", "user-2", "post-1")).await;
    wait_until("the like stored", WITHIN, || count_rows(dir.path()) == 1);
    assert!(
        js.get_stream("RECIPIENTS").await.is_err(),
        "production run created RECIPIENTS"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_takes_the_four_recipient_subjects_only() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let env = base_env(&nats, dir.path());
    let setup = command(dir.path(), &env).arg("setup").output().unwrap();
    let said = String::from_utf8_lossy(&setup.stdout).to_string();
    assert!(
        setup.status.success(),
        "{}",
        String::from_utf8_lossy(&setup.stderr)
    );
    assert!(said.contains("stream RECIPIENTS ready"), "{said}");
    assert!(said.contains("RECIPIENTS_DLQ"), "{said}");

    let upsert = command(dir.path(), &env)
        .args([
            "publish",
            "recipients.upsert",
            r#"{"owner":"user-1","email":"a@example.com"}"#,
        ])
        .output()
        .unwrap();
    assert!(
        upsert.status.success(),
        "{}",
        String::from_utf8_lossy(&upsert.stderr)
    );
    assert_eq!(String::from_utf8(upsert.stdout).unwrap().trim(), "1");
    assert_eq!(messages(&nats, "RECIPIENTS").await.len(), 1);

    let bogus = command(dir.path(), &env)
        .args(["publish", "recipients.bogus", r#"{"owner":"user-1"}"#])
        .output()
        .unwrap();
    assert_eq!(bogus.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bogus.stderr).contains("recipients.upsert"));
}

/// A stored record that no longer reads back is a permanent store error: the event is
/// dead-lettered (`store_rejected`), not retried forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_for_a_damaged_record_is_dead_lettered_as_store_rejected() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let _worker = Worker::start(dir.path(), &base_env(&nats, dir.path()));
    let js = nats.jetstream().await;
    publish(
        &js,
        "recipients.upsert",
        r#"{"owner":"user-9","email":"a@example.com"}"#,
    )
    .await;
    eventually("user-9 stored", WITHIN, || async {
        record(dir.path(), "user-9").await.is_some()
    })
    .await;
    sqlite(dir.path())
        .execute(
            "UPDATE recipients SET record = 'not json' WHERE owner = 'user-9'",
            [],
        )
        .unwrap();
    let seq = publish(&js, "recipients.upsert", r#"{"owner":"user-9","locale":"fr"}"#).await;

    eventually("a store_rejected dead letter", WITHIN, || async {
        messages(&nats, "RECIPIENTS_DLQ").await.len() == 1
    })
    .await;
    let letter = &messages(&nats, "RECIPIENTS_DLQ").await[0];
    assert_eq!(header(letter, "Dlq-Reason"), "store_rejected");
    assert!(
        header(letter, "Dlq-Error").contains("user-9"),
        "{}",
        header(letter, "Dlq-Error")
    );
    assert_eq!(header(letter, "Dlq-Original-Sequence"), seq.to_string());
}
