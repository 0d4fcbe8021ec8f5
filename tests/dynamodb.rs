//! The worker with `NOTIF_STORE=dynamodb`, against a private dynalite server.

mod support;

use notification_worker::domain::Id;
use notification_worker::store::NotificationStore;
use std::time::Duration;
use support::*;

const WITHIN: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn likes_duplicates_and_unlikes_reach_dynamodb() {
    let nats = NatsServer::start();
    let dynamo = Dynalite::start();
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&nats, dir.path());
    env.extend(dynamo.worker_env("feed-notifications"));
    // In development `run` creates the table and its index itself.
    let worker = Worker::start(dir.path(), &env);
    let js = nats.jetstream().await;
    let store = dynamo.store("feed-notifications").await;
    let owner = Id::parse("owner", "user-123").unwrap();

    let samples = shared_events().join("valid");
    let like = std::fs::read(samples.join("notifications.post.like--created.json")).unwrap();
    let comment = std::fs::read(samples.join("notifications.comment.like--created.json")).unwrap();
    publish(&js, "notifications.post.like", like.clone()).await;
    publish(&js, "notifications.post.like", like.clone()).await;
    publish(&js, "notifications.comment.like", comment).await;
    wait_until("three outcomes", WITHIN, || {
        worker.count("created") + worker.count("duplicate") == 3
    });
    assert_eq!((worker.count("created"), worker.count("duplicate")), (2, 1));
    let feed = store.feed(&owner, 10).await.unwrap();
    let keys: Vec<&str> = feed.iter().map(|item| item.action_key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "user-777#comment-42#2#0001-01-01T00:00:00Z",
            "user-456#post-789#1#0001-01-01T00:00:00Z"
        ],
        "newest first, the repeated like stored once"
    );

    publish(&js, "notifications.post.unlike", like).await;
    wait_until("the unlike", WITHIN, || worker.count("removed") == 1);
    let feed = store.feed(&owner, 10).await.unwrap();
    assert_eq!(feed.len(), 1);
    assert_eq!(feed[0].userid, "user-777");

    // The command line reads the same table.
    let output = command(dir.path(), &env)
        .args(["feed", "user-123", "--json"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["username"], "Ana Lima");
    assert_eq!(lines[0]["read_status"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_creates_the_table_and_is_idempotent() {
    let nats = NatsServer::start();
    let dynamo = Dynalite::start();
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&nats, dir.path());
    env.extend(dynamo.worker_env("setup-notifications"));
    env.push(("ENVIRONMENT", "production".into()));
    for _ in 0..2 {
        let output = command(dir.path(), &env).arg("setup").output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let said = String::from_utf8(output.stdout).unwrap();
        assert!(said.contains("stream NOTIFICATIONS ready"), "{said}");
        assert!(said.contains("dynamodb table setup-notifications"), "{said}");
    }
    // The table answers queries on its OwnerIndex.
    let store = dynamo.store("setup-notifications").await;
    assert!(
        store
            .feed(&Id::parse("owner", "user-1").unwrap(), 5)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Creates `table` with the right key names but `action_key` a number: every PutItem is
/// refused with "Type mismatch for key", whatever the event.
async fn create_mistyped_table(dynamo: &Dynalite, table: &str) {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    let client = aws_sdk_dynamodb::Client::new(&dynamo.sdk_config().await);
    let attribute = |name: &str, kind: ScalarAttributeType| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(kind)
            .build()
            .unwrap()
    };
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .unwrap()
    };
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute("owner", ScalarAttributeType::S))
        .attribute_definitions(attribute("action_key", ScalarAttributeType::N))
        .key_schema(key("owner", KeyType::Hash))
        .key_schema(key("action_key", KeyType::Range))
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_whose_key_schema_does_not_match_pauses_intake_instead_of_dead_lettering() {
    let nats = NatsServer::start();
    let dynamo = Dynalite::start();
    const TABLE: &str = "mistyped-notifications";
    create_mistyped_table(&dynamo, TABLE).await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = with_http(base_env(&nats, dir.path()));
    env.extend(dynamo.worker_env(TABLE));
    let worker = Worker::start(dir.path(), &env);
    let addr = worker.http_addr();
    let js = nats.jetstream().await;
    const EVENTS: usize = 30;
    publish_likes(&js, "user-1", EVENTS).await;
    worker.wait_for_log("intake paused", WITHIN);
    wait_until("not ready", WITHIN, || http_get(&addr, "/readyz").0 == 503);
    assert!(
        dead_letters(&nats).await.is_empty(),
        "a store-wide error blames no event"
    );
    assert_ne!(consumer_backlog(&nats).await, (0, 0), "held, not acknowledged");

    // The operator fixes the table: the held events land, nothing was lost.
    let client = aws_sdk_dynamodb::Client::new(&dynamo.sdk_config().await);
    client.delete_table().table_name(TABLE).send().await.unwrap();
    let store = dynamo.store(TABLE).await;
    store.setup().await.unwrap();
    wait_until("every event stored", WITHIN, || worker.count("created") == EVENTS);
    eventually("the consumer to be drained", WITHIN, || async {
        consumer_backlog(&nats).await == (0, 0)
    })
    .await;
    wait_until("ready again", WITHIN, || http_get(&addr, "/readyz").0 == 200);
    let owner = Id::parse("owner", "user-1").unwrap();
    assert_eq!(store.feed(&owner, 100).await.unwrap().len(), EVENTS);
    assert!(dead_letters(&nats).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_refusals_in_a_row_open_the_breaker_instead_of_emptying_the_stream() {
    let nats = NatsServer::start();
    // Every item over 512 bytes is refused: each refusal on its own looks like one bad item.
    let dynamo = Dynalite::start_with_max_item_size(0.5);
    let dir = tempfile::tempdir().unwrap();
    let mut env = with_http(base_env(&nats, dir.path()));
    env.extend(dynamo.worker_env("breaker-notifications"));
    let worker = Worker::start(dir.path(), &env);
    let addr = worker.http_addr();
    let js = nats.jetstream().await;
    const EVENTS: usize = 40;
    for i in 0..EVENTS {
        let big = format!(
            r#"{{"owner":"user-1","trigger_user":"fan-{i}","action":1,"resource_type":"POST","resource_id":"post-1","user_bio":"{}"}}"#,
            "é".repeat(400)
        );
        publish(&js, "notifications.post.like", big).await;
    }
    worker.wait_for_log("breaker open", WITHIN);
    wait_until("not ready", WITHIN, || http_get(&addr, "/readyz").0 == 503);
    let text = http_get(&addr, "/metrics").1;
    assert_eq!(
        metric(&text, "notification_worker_store_rejected_breaker_open"),
        Some(1.0)
    );
    // The first refusals were dead-lettered one by one; then the breaker held the rest.
    let letters = dead_letters(&nats).await.len();
    assert!(
        (1..20).contains(&letters),
        "{letters} dead letters: at most 19 before the breaker opens"
    );
    assert_ne!(
        consumer_backlog(&nats).await,
        (0, 0),
        "the rest held, not acknowledged"
    );
}
