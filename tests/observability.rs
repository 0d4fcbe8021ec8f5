//! What operators see: /healthz, /readyz following outages, /metrics with the contract's names.

mod support;

use std::time::Duration;
use support::*;

const WITHIN: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_outcomes_with_the_contract_names() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let worker = Worker::start(dir.path(), &with_http(base_env(&nats, dir.path())));
    let addr = worker.http_addr();
    assert_eq!(http_get(&addr, "/healthz"), (200, "ok\n".into()));

    let js = nats.jetstream().await;
    publish(&js, "notifications.post.like", like("user-1", "user-2", "post-1")).await;
    publish(&js, "notifications.post.like", like("user-1", "user-2", "post-1")).await;
    publish(
        &js,
        "notifications.post.unlike",
        like("user-1", "user-2", "post-1"),
    )
    .await;
    publish(&js, "notifications.post.like", like("user-1", "user-1", "post-1")).await;
    publish(&js, "notifications.post.like", "{oops").await;
    wait_until("five outcomes", WITHIN, || {
        ["created", "duplicate", "removed", "self_skipped", "invalid"]
            .iter()
            .all(|o| worker.count(o) == 1)
    });

    let (status, text) = http_get(&addr, "/metrics");
    assert_eq!(status, 200);
    let events = |outcome: &str, event_type: &str| {
        metric(
            &text,
            &format!(r#"notification_worker_events_total{{event_type="{event_type}",outcome="{outcome}"}}"#),
        )
    };
    assert_eq!(events("created", "post_like"), Some(1.0));
    assert_eq!(events("duplicate", "post_like"), Some(1.0));
    assert_eq!(events("removed", "post_unlike"), Some(1.0));
    assert_eq!(events("self_skipped", "post_like"), Some(1.0));
    assert_eq!(events("invalid", "post_like"), Some(1.0));
    assert_eq!(events("dead_lettered", "other"), Some(0.0));
    assert_eq!(
        metric(
            &text,
            r#"notification_worker_dead_letters_total{reason="invalid_json"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, "notification_worker_event_duration_seconds_count"),
        Some(5.0)
    );
    assert_eq!(
        metric(
            &text,
            r#"notification_worker_store_request_duration_seconds_count{operation="create"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(
            &text,
            r#"notification_worker_store_errors_total{kind="transient"}"#
        ),
        Some(0.0)
    );
    assert_eq!(metric(&text, "notification_worker_in_flight"), Some(0.0));
    assert_eq!(metric(&text, "notification_worker_nats_connected"), Some(1.0));
    assert_eq!(metric(&text, "notification_worker_ready"), Some(1.0));
    assert!(text.contains(&format!(
        r#"notification_worker_build_info{{version="{}"}} 1"#,
        env!("CARGO_PKG_VERSION")
    )));
    assert!(text.contains("notification_worker_consumer_pending"));
    assert!(!text.contains("user-1"), "no user ids in labels");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_pending_shows_the_backlog() {
    let nats = NatsServer::start();
    let dynamo = Dynalite::start();
    let dir = tempfile::tempdir().unwrap();
    let mut env = with_http(base_env(&nats, dir.path()));
    // Production creates no DynamoDB table: every write fails, so the backlog stays.
    env.push(("ENVIRONMENT", "production".into()));
    env.extend(dynamo.worker_env("missing-notifications"));
    // Few in flight, so that most of the backlog stays in the stream.
    env.push(("WORKER_CONCURRENCY", "1".into()));
    create_consumer_with_ack_wait(&nats, Duration::from_secs(30)).await;
    publish_backlog(&nats.jetstream().await, 500).await;
    let worker = Worker::start(dir.path(), &env);
    let addr = worker.http_addr();
    wait_until("the backlog in the metrics", WITHIN, || {
        metric(
            &http_get(&addr, "/metrics").1,
            "notification_worker_consumer_pending",
        )
        .is_some_and(|n| n >= 400.0)
    });
}

/// During a drain the gauge follows each delivery (the server counts the backlog into every
/// message's metadata), not the consumer's info every 5 s: that read walks the stream on
/// nats-server 2.9 and stalled realistic drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_pending_follows_the_drain_between_two_reads_of_the_consumer() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut env = with_http(base_env(&nats, dir.path()));
    // One at a time: a drain of seconds.
    env.push(("WORKER_CONCURRENCY", "1".into()));
    create_consumer_with_ack_wait(&nats, Duration::from_secs(30)).await;
    let js = nats.jetstream().await;
    let events = traffic::realistic(40_000);
    traffic::publish(&js, &events).await;
    let worker = Worker::start(dir.path(), &env);
    let addr = worker.http_addr();
    // Within the first 4 s (the consumer's info is read at start and then every 5 s), the
    // gauge must already have moved several times.
    let started = std::time::Instant::now();
    let mut seen = std::collections::BTreeSet::new();
    while started.elapsed() < Duration::from_secs(4) {
        if let Some(pending) = metric(
            &http_get(&addr, "/metrics").1,
            "notification_worker_consumer_pending",
        ) {
            seen.insert(pending as u64);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let moving: Vec<_> = seen.iter().filter(|&&n| n > 0 && n < 40_000).collect();
    assert!(moving.len() >= 3, "the backlog as the drain went: {seen:?}");
    assert!(
        count_rows(dir.path()) < 40_000,
        "still draining: the test saw the drain, not its end"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_a_nats_outage_and_its_recovery() {
    let mut nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let worker = Worker::start(dir.path(), &with_http(base_env(&nats, dir.path())));
    let addr = worker.http_addr();
    wait_until("ready", WITHIN, || http_get(&addr, "/readyz").0 == 200);
    let (_, body) = http_get(&addr, "/readyz");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        ready,
        serde_json::json!({"ready": true, "nats": "connected", "store": "ok"})
    );

    nats.stop();
    wait_until("not ready while NATS is down", WITHIN, || {
        http_get(&addr, "/readyz").0 == 503
    });
    let down: serde_json::Value = serde_json::from_str(&http_get(&addr, "/readyz").1).unwrap();
    assert_eq!(down["nats"], "disconnected");
    assert_eq!(down["ready"], false);
    assert_eq!(http_get(&addr, "/healthz").0, 200, "alive all the same");

    nats.restart();
    wait_until("ready again", WITHIN, || http_get(&addr, "/readyz").0 == 200);
    // And it works: an event published now is stored.
    publish(
        &nats.jetstream().await,
        "notifications.post.like",
        like("user-1", "user-2", "post-1"),
    )
    .await;
    wait_until("the event", WITHIN, || count_rows(dir.path()) == 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_a_store_outage_and_its_recovery() {
    let nats = NatsServer::start();
    let mut dynamo = Dynalite::start_on_disk();
    let dir = tempfile::tempdir().unwrap();
    let mut env = with_http(base_env(&nats, dir.path()));
    env.extend(dynamo.worker_env("ready-notifications"));
    let worker = Worker::start(dir.path(), &env);
    let addr = worker.http_addr();
    wait_until("ready", WITHIN, || http_get(&addr, "/readyz").0 == 200);

    dynamo.stop();
    wait_until("not ready while the store is down", WITHIN, || {
        http_get(&addr, "/readyz").0 == 503
    });
    let down: serde_json::Value = serde_json::from_str(&http_get(&addr, "/readyz").1).unwrap();
    assert_eq!(down["nats"], "connected");
    assert!(
        down["store"].as_str().unwrap().starts_with("unavailable"),
        "{down}"
    );

    dynamo.restart();
    wait_until("ready again", WITHIN, || http_get(&addr, "/readyz").0 == 200);
}

#[test]
fn a_taken_http_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&nats, dir.path());
    env.retain(|(name, _)| *name != "HTTP_ADDR");
    env.push(("HTTP_ADDR", taken.local_addr().unwrap().to_string()));
    let output = command(dir.path(), &env).arg("run").output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot listen on HTTP_ADDR"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_logs_carry_ids_and_outcomes_but_no_profile_text() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let worker = Worker::start(dir.path(), &base_env(&nats, dir.path()));
    let body = std::fs::read(shared_events().join("valid/notifications.post.like--created.json")).unwrap();
    let seq = publish(&nats.jetstream().await, "notifications.post.like", body).await;
    wait_until("the event", WITHIN, || worker.count("created") == 1);
    let event = worker
        .events()
        .into_iter()
        .find(|event| event["outcome"] == "created")
        .unwrap();
    assert_eq!(event["level"], "INFO");
    assert_eq!(event["subject"], "notifications.post.like");
    assert_eq!(event["stream_seq"], seq);
    assert_eq!(event["owner"], "user-123");
    assert!(
        event["timestamp"].is_string() && event["duration_ms"].is_number() && event["message"].is_string()
    );
    let logs = worker.logs().join("\n");
    for private in ["Software dev", "Great post!", "cdn.example.com", "John Doe"] {
        assert!(!logs.contains(private), "{private:?} must not be logged at info");
    }
}
