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
