//! Dead letters: what goes there, with which headers, and `dlq list|replay|purge`.

mod support;

use std::time::Duration;
use support::*;

const WITHIN: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_event_is_dead_lettered_untouched_with_its_reason_before_the_ack() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let worker = Worker::start(dir.path(), &base_env(&nats, dir.path()));
    let js = nats.jetstream().await;
    let body = std::fs::read(shared_events().join("invalid/notifications.comment.like--invalid_field.json"))
        .unwrap();
    let seq = publish(&js, "notifications.comment.like", body.clone()).await;

    eventually("a dead letter", WITHIN, || async {
        dead_letters(&nats).await.len() == 1
    })
    .await;
    let letter = &dead_letters(&nats).await[0];
    assert_eq!(letter.subject.as_str(), "dlq.notifications.comment.like");
    assert_eq!(letter.payload.as_ref(), body.as_slice(), "body untouched");
    assert_eq!(header(letter, "Dlq-Reason"), "invalid_field");
    assert!(
        header(letter, "Dlq-Error").contains("user_picture"),
        "{}",
        header(letter, "Dlq-Error")
    );
    assert_eq!(
        header(letter, "Dlq-Original-Subject"),
        "notifications.comment.like"
    );
    assert_eq!(header(letter, "Dlq-Original-Sequence"), seq.to_string());
    assert_eq!(header(letter, "Dlq-Attempts"), "1");
    assert_eq!(header(letter, "Nats-Msg-Id"), format!("NOTIFICATIONS:{seq}"));
    eventually("the original to be acknowledged", WITHIN, || async {
        consumer_backlog(&nats).await == (0, 0)
    })
    .await;
    assert_eq!(worker.outcome_of(seq).as_deref(), Some("invalid:invalid_field"));
    assert_eq!(count_rows(dir.path()), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_lettering_the_same_delivery_twice_keeps_one_copy() {
    // A crash between the dead letter and the ack redelivers the original, which is
    // dead-lettered again: the worker's own send path must make the stream drop the copy.
    use notification_worker::domain::{Reason, Version};
    use notification_worker::input::{DeadLetters, Delivery};
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    let stream = create_stream(&js).await;
    let seq = publish(&js, "notifications.post.like", "{").await;
    let created = stream.cached_info().created.unix_timestamp_nanos() / 1000;
    let version = Version::new(u64::try_from(created).unwrap(), seq).unwrap();
    let delivery = Delivery::detached("notifications.post.like", "{".into(), seq, version);

    let sender = DeadLetters::ensure(&js, "NOTIFICATIONS", &Default::default())
        .await
        .unwrap();
    for _ in 0..2 {
        sender
            .send(&delivery, Reason::InvalidJson, "expected value")
            .await
            .unwrap();
    }
    let letters = dead_letters(&nats).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(header(&letters[0], "Dlq-Original-Sequence"), seq.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_delivered_too_often_is_dead_lettered_with_max_deliveries() {
    use async_nats::jetstream::consumer;
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    let stream = create_stream(&js).await;
    // An existing consumer, used as it is: no server-side limit, a short AckWait.
    let crashing: consumer::PullConsumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("notification-worker".into()),
            filter_subject: "notifications.>".into(),
            ack_wait: Duration::from_millis(300),
            ..Default::default()
        })
        .await
        .unwrap();
    publish(&js, "notifications.post.like", like("user-1", "user-2", "post-1")).await;
    // Nine deliveries that are never settled, as if a worker crashed on it each time; the
    // worker dead-letters on the tenth.
    for delivery in 1..=9 {
        let mut batch = crashing
            .fetch()
            .max_messages(1)
            .expires(Duration::from_secs(5))
            .messages()
            .await
            .unwrap();
        loop {
            if let Some(message) = futures::StreamExt::next(&mut batch).await {
                assert_eq!(message.unwrap().info().unwrap().delivered, delivery);
                break;
            }
            batch = crashing
                .batch()
                .max_messages(1)
                .expires(Duration::from_secs(2))
                .messages()
                .await
                .unwrap();
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let worker = Worker::start(dir.path(), &base_env(&nats, dir.path()));
    eventually("the over-delivered event in the dead letters", WITHIN, || async {
        dead_letters(&nats).await.len() == 1
    })
    .await;
    let letter = &dead_letters(&nats).await[0];
    assert_eq!(header(letter, "Dlq-Reason"), "max_deliveries");
    assert_eq!(header(letter, "Dlq-Attempts"), "10");
    // The outcome is logged just after the dead letter is stored.
    wait_until("the outcome logged", WITHIN, || {
        worker.count("dead_lettered") == 1
    });
    assert_eq!(count_rows(dir.path()), 0, "not applied on its last delivery");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_consumer_with_a_server_side_max_deliver_is_refused() {
    // Past max_deliver the server drops a message silently, and every hand-back counts as
    // a delivery: a store outage would use them up, a failed dead letter would lose it.
    use async_nats::jetstream::consumer;
    let nats = NatsServer::start();
    let stream = create_stream(&nats.jetstream().await).await;
    stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("notification-worker".into()),
            filter_subject: "notifications.>".into(),
            max_deliver: 5,
            ..Default::default()
        })
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (code, stderr) = run_until_exit(dir.path(), &base_env(&nats, dir.path()), WITHIN);
    assert_eq!(code, 2, "a configuration error: {stderr}");
    let line = stderr
        .lines()
        .find(|line| line.starts_with("error:"))
        .unwrap_or_else(|| panic!("one error line: {stderr}"));
    for needed in [
        "notification-worker",
        "max_deliver=5",
        "unlimited",
        "--max-deliver=-1",
    ] {
        assert!(line.contains(needed), "{needed:?} missing from {line:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_that_cannot_be_published_is_neither_acknowledged_nor_lost() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let env = with_http(base_env(&nats, dir.path()));
    let worker = Worker::start(dir.path(), &env);
    let addr = worker.http_addr();
    let js = nats.jetstream().await;
    js.delete_stream("NOTIFICATIONS_DLQ").await.unwrap();
    let seq = publish(&js, "notifications.post.like", "not json").await;

    wait_until("two failed dead letters", WITHIN, || {
        worker
            .logs()
            .iter()
            .filter(|line| line.contains("cannot dead-letter"))
            .count()
            >= 2
    });
    assert_ne!(consumer_backlog(&nats).await, (0, 0), "not acknowledged");
    assert_eq!(worker.outcome_of(seq).as_deref(), Some("handed_back"));
    let failures = metric(
        &http_get(&addr, "/metrics").1,
        "notification_worker_dead_letter_failures_total",
    );
    assert!(failures >= Some(2.0), "failures counted: {failures:?}");

    // The dead-letter stream back (as `setup` creates it): the event lands there.
    run_setup(dir.path(), &env);
    eventually("the dead letter", WITHIN, || async {
        dead_letters(&nats).await.len() == 1
    })
    .await;
    let letter = &dead_letters(&nats).await[0];
    assert_eq!(header(letter, "Dlq-Reason"), "invalid_json");
    assert_eq!(header(letter, "Dlq-Original-Sequence"), seq.to_string());
    eventually("the original acknowledged", WITHIN, || async {
        consumer_backlog(&nats).await == (0, 0)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_dead_letter_stream_holds_the_event_until_there_is_room() {
    use async_nats::jetstream::stream;
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    // An existing dead-letter stream, used as it is: room for one dead letter, and full
    // means refuse (as the worker creates it at DLQ_MAX_BYTES).
    let dlq = js
        .create_stream(stream::Config {
            name: "NOTIFICATIONS_DLQ".into(),
            subjects: vec!["dlq.notifications.>".into()],
            max_messages: 1,
            discard: stream::DiscardPolicy::New,
            // Bounded, as the worker requires (tombstones must outlive a replay).
            max_age: Duration::from_secs(24 * 60 * 60),
            ..Default::default()
        })
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let worker = Worker::start(dir.path(), &with_http(base_env(&nats, dir.path())));
    let addr = worker.http_addr();
    let first = publish(&js, "notifications.post.like", "not json").await;
    let second = publish(&js, "notifications.post.like", r#"{"owner":"user-1"}"#).await;
    worker.wait_for_log("cannot dead-letter", WITHIN);
    let letters = dead_letters(&nats).await;
    assert_eq!(letters.len(), 1, "one fills the stream");
    // Dead letters are sent concurrently: either may have taken the room.
    let landed = header(&letters[0], "Dlq-Original-Sequence");
    let held = if landed == first.to_string() {
        second
    } else {
        first
    };
    assert_ne!(
        consumer_backlog(&nats).await,
        (0, 0),
        "the other is held, not acknowledged"
    );
    let failures = metric(
        &http_get(&addr, "/metrics").1,
        "notification_worker_dead_letter_failures_total",
    );
    assert!(failures >= Some(1.0), "refusals counted: {failures:?}");

    // Room again (an operator purged it): the held one lands, nothing was lost.
    dlq.purge().await.unwrap();
    eventually("the held dead letter", WITHIN, || async {
        let letters = dead_letters(&nats).await;
        letters.len() == 1 && header(&letters[0], "Dlq-Original-Sequence") == held.to_string()
    })
    .await;
    eventually("both originals acknowledged", WITHIN, || async {
        consumer_backlog(&nats).await == (0, 0)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dead_letter_stream_is_created_with_limits_and_a_short_duplicate_window() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&nats, dir.path());
    env.push(("DLQ_MAX_AGE", "2d".into()));
    env.push(("DLQ_MAX_BYTES", "10MiB".into()));
    let setup = command(dir.path(), &env).arg("setup").output().unwrap();
    assert!(
        setup.status.success(),
        "{}",
        String::from_utf8_lossy(&setup.stderr)
    );
    let js = nats.jetstream().await;
    let mut stream = js.get_stream("NOTIFICATIONS_DLQ").await.unwrap();
    let config = &stream.info().await.unwrap().config;
    assert_eq!(config.max_age, Duration::from_secs(2 * 24 * 3600));
    assert_eq!(config.max_bytes, 10 * 1024 * 1024);
    assert_eq!(config.duplicate_window, Duration::from_secs(5 * 60));
    // Full: refuse new dead letters (the originals come back and the failure is counted)
    // rather than drop old ones silently.
    assert_eq!(config.discard, async_nats::jetstream::stream::DiscardPolicy::New);

    let bad = command(
        dir.path(),
        &[env.clone(), vec![("DLQ_MAX_AGE", "soon".into())]].concat(),
    )
    .arg("setup")
    .output()
    .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("DLQ_MAX_AGE"));
}

fn dlq_cli(dir: &std::path::Path, env: &[(&'static str, String)], args: &[&str]) -> (i32, String, String) {
    let output = command(dir, env).arg("dlq").args(args).output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_list_replay_and_purge_work_as_an_operator_expects() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let env = base_env(&nats, dir.path());
    let worker = Worker::start(dir.path(), &env);
    let js = nats.jetstream().await;
    publish(&js, "notifications.post.like", "not json").await;
    publish(&js, "notifications.post.like", r#"{"owner":"user-1"}"#).await;
    eventually("two dead letters", WITHIN, || async {
        dead_letters(&nats).await.len() == 2
    })
    .await;
    // A valid event that reached the dead letters some other way (e.g. a store outage
    // handled by hand): replaying it must store it.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Dlq-Reason", "store_rejected");
    headers.insert("Dlq-Original-Subject", "notifications.post.like");
    js.publish_with_headers(
        "dlq.notifications.post.like",
        headers,
        like("user-1", "user-2", "post-1").into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    eventually("three dead letters", WITHIN, || async {
        dead_letters(&nats).await.len() == 3
    })
    .await;

    let (code, out, _) = dlq_cli(dir.path(), &env, &["list", "--json"]);
    assert_eq!(code, 0);
    let listed: Vec<serde_json::Value> = out
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let reasons: Vec<&str> = listed
        .iter()
        .map(|letter| letter["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons.len(), 3);
    assert!(
        reasons.contains(&"invalid_json")
            && reasons.contains(&"missing_field")
            && reasons.contains(&"store_rejected")
    );
    assert!(
        listed
            .iter()
            .all(|letter| letter["subject"] == "notifications.post.like")
    );
    let (_, text, _) = dlq_cli(dir.path(), &env, &["list", "--limit", "1"]);
    assert_eq!(text.lines().count(), 1);
    // The oldest, whichever of the three was dead-lettered first (they are sent concurrently).
    let oldest = &listed[0];
    assert!(
        text.starts_with(&format!("{}  ", oldest["sequence"]))
            && text.contains(oldest["reason"].as_str().unwrap()),
        "the oldest dead letter, {oldest}: {text}"
    );
    let preview = listed
        .iter()
        .find(|letter| letter["reason"] == "invalid_json")
        .unwrap()["body_preview"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(preview.contains("not json"), "a body preview: {preview}");

    let sequence_of = |reason: &str| {
        listed.iter().find(|letter| letter["reason"] == reason).unwrap()["sequence"]
            .as_u64()
            .unwrap()
            .to_string()
    };
    let (code, out, _) = dlq_cli(
        dir.path(),
        &env,
        &["replay", "--seq", &sequence_of("store_rejected"), "--dry-run"],
    );
    assert_eq!(code, 0);
    assert!(out.contains("would replay"), "{out}");
    assert_eq!(dead_letters(&nats).await.len(), 3, "a dry run changes nothing");

    let (code, out, err) = dlq_cli(
        dir.path(),
        &env,
        &["replay", "--seq", &sequence_of("store_rejected")],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("replayed 1"), "{out}");
    wait_until("the replayed event to be stored", WITHIN, || {
        count_rows(dir.path()) == 1
    });
    assert_eq!(dead_letters(&nats).await.len(), 2);

    // Still invalid: it comes back once, with its reason, and stays there (no loop).
    let (code, _, err) = dlq_cli(dir.path(), &env, &["replay", "--all"]);
    assert_eq!(code, 0, "{err}");
    eventually("the invalid events back in the dead letters", WITHIN, || async {
        worker.count("invalid") == 4 && dead_letters(&nats).await.len() == 2
    })
    .await;
    let letters = dead_letters(&nats).await;
    let mut reasons: Vec<String> = letters
        .iter()
        .map(|letter| header(letter, "Dlq-Reason"))
        .collect();
    reasons.sort();
    assert_eq!(reasons, ["invalid_json", "missing_field"]);

    let (code, _, err) = dlq_cli(dir.path(), &env, &["purge"]);
    assert_ne!(code, 0);
    assert!(err.contains("--yes"), "{err}");
    let (code, out, _) = dlq_cli(dir.path(), &env, &["purge", "--yes"]);
    assert_eq!(code, 0);
    assert!(out.contains("purged 2"), "{out}");
    assert!(dead_letters(&nats).await.is_empty());
    let (_, _, err) = dlq_cli(dir.path(), &env, &["list"]);
    assert!(err.contains("no dead letters"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_the_store_refuses_for_good_is_dead_lettered_as_store_rejected() {
    let nats = NatsServer::start();
    // Items over 512 bytes are refused with a ValidationException: permanent for that item.
    let dynamo = Dynalite::start_with_max_item_size(0.5);
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&nats, dir.path());
    env.extend(dynamo.worker_env("small-notifications"));
    let worker = Worker::start(dir.path(), &env);
    let js = nats.jetstream().await;
    let big = format!(
        r#"{{"owner":"user-1","trigger_user":"user-2","action":1,"resource_type":"POST","resource_id":"post-1","user_bio":"{}","excerpt":"{}"}}"#,
        "é".repeat(500),
        "é".repeat(280)
    );
    let refused = publish(&js, "notifications.post.like", big.clone()).await;
    let fine = publish(&js, "notifications.post.like", like("user-1", "user-3", "post-1")).await;

    wait_until("both outcomes", WITHIN, || {
        worker.outcome_of(refused).is_some() && worker.outcome_of(fine).is_some()
    });
    assert_eq!(
        worker.outcome_of(refused).as_deref(),
        Some("dead_lettered:store_rejected")
    );
    assert_eq!(worker.outcome_of(fine).as_deref(), Some("created"));
    let letters = dead_letters(&nats).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(header(&letters[0], "Dlq-Reason"), "store_rejected");
    assert!(
        header(&letters[0], "Dlq-Error").contains("ValidationException"),
        "{}",
        header(&letters[0], "Dlq-Error")
    );
    assert_eq!(letters[0].payload.as_ref(), big.as_bytes());
    eventually("everything acknowledged", WITHIN, || async {
        consumer_backlog(&nats).await == (0, 0)
    })
    .await;
}
