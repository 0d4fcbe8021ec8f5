//! Push end to end (issue 10): events on NATS, the worker, the recipient directory synced
//! from stream RECIPIENTS, and a real push service (web-push-testing). A notification
//! reaches the owner's browser; a subscription the service says is gone leaves the
//! directory; `off` sends nothing.

mod support;

use notification_worker::config::webpush::{RawWebPush, parse};
use notification_worker::domain::Id;
use notification_worker::store::{RecipientStore, SqliteRecipientStore};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::web_push_testing::{Subscription, WebPushTesting};
use support::*;

const WITHIN: Duration = Duration::from_secs(60);

/// A VAPID key made by openssl for this test, and its public key as browsers take it.
fn vapid_key(dir: &Path) -> (PathBuf, String) {
    let path = dir.join("vapid.pem");
    let program = require_program("openssl", "install openssl (apt-get install openssl)");
    let status = std::process::Command::new(program)
        .args(["ecparam", "-genkey", "-name", "prime256v1", "-out"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    let settings = parse(&RawWebPush {
        webpush_vapid_private_key_file: Some(path.display().to_string()),
        webpush_subject: Some("mailto:ops@example.com".into()),
    })
    .unwrap()
    .expect("channel webpush is on");
    (path, settings.vapid_public_key().to_owned())
}

fn push_env(nats: &NatsServer, dir: &Path, key: &Path, defaults: &str) -> Vec<(&'static str, String)> {
    let mut env = with_http(base_env(nats, dir));
    env.extend([
        ("WEBPUSH_VAPID_PRIVATE_KEY_FILE", key.display().to_string()),
        ("WEBPUSH_SUBJECT", "mailto:ops@example.com".into()),
        ("NOTIFY_DEFAULTS", defaults.into()),
        ("PUSH_DIGEST_WINDOW", "1h".into()),
        ("RECIPIENT_CACHE_TTL", "1s".into()),
    ]);
    env
}

async fn devices(dir: &Path, owner: &str) -> usize {
    let store = SqliteRecipientStore::open(&dir.join("notifications.db")).unwrap();
    store
        .get(&Id::parse("owner", owner).unwrap())
        .await
        .unwrap()
        .map_or(0, |record| record.push_targets().count())
}

/// Adds the browser's subscription to `owner`'s record, as the application would.
async fn add_subscription(nats: &NatsServer, dir: &Path, owner: &str, subscription: &Subscription) {
    let body = json!({
        "owner": owner,
        "kind": "webpush",
        "subscription": {
            "endpoint": subscription.endpoint,
            "keys": {"p256dh": subscription.p256dh, "auth": subscription.auth},
        },
    });
    publish(&nats.jetstream().await, "recipients.push.add", body.to_string()).await;
    eventually("the subscription in the directory", WITHIN, || async {
        devices(dir, owner).await == 1
    })
    .await;
}

fn webpush_metric(worker: &Worker, series: &str) -> f64 {
    let (_, text) = http_get(&worker.http_addr(), "/metrics");
    metric(&text, series).unwrap_or(0.0)
}

#[tokio::test]
async fn a_like_reaches_the_browser_and_a_gone_subscription_leaves_the_directory() {
    let nats = NatsServer::start();
    let push_service = WebPushTesting::start();
    let dir = tempfile::tempdir().unwrap();
    create_stream(&nats.jetstream().await).await;
    let (key, public_key) = vapid_key(dir.path());
    let worker = Worker::start(dir.path(), &push_env(&nats, dir.path(), &key, "push=instant"));
    let subscription = push_service.subscribe(&public_key).await;
    add_subscription(&nats, dir.path(), "user-123", &subscription).await;

    let js = nats.jetstream().await;
    publish(
        &js,
        "notifications.post.like",
        like("user-123", "user-456", "post-789"),
    )
    .await;
    eventually("the push in the browser", WITHIN, || async {
        push_service.messages(&subscription).await.len() == 1
    })
    .await;
    let message: Value = serde_json::from_str(&push_service.messages(&subscription).await[0]).unwrap();
    assert_eq!(message["title"], "Test User liked your post");
    assert_eq!(message["data"]["type"], "post.like");
    assert_eq!(message["data"]["resourceId"], "post-789");
    let stored: String = sqlite(dir.path())
        .query_row("SELECT id FROM notifications", [], |row| row.get(0))
        .unwrap();
    assert_eq!(message["data"]["notificationId"], stored.as_str());

    // The browser unsubscribed: the next push is answered 410, and the directory drops it.
    push_service.expire(&subscription).await;
    publish(
        &js,
        "notifications.post.like",
        like("user-123", "user-789", "post-789"),
    )
    .await;
    eventually("the subscription removed", WITHIN, || async {
        devices(dir.path(), "user-123").await == 0
    })
    .await;
    assert_eq!(
        webpush_metric(
            &worker,
            "notification_worker_devices_removed_total{channel=\"webpush\"}"
        ),
        1.0
    );
    // Gone is settled, not retried or dead-lettered.
    assert_eq!(
        webpush_metric(
            &worker,
            "notification_worker_deliveries_total{channel=\"webpush\",outcome=\"dead_lettered\"}"
        ),
        0.0
    );
}

#[tokio::test]
async fn a_type_turned_off_sends_nothing_and_another_still_arrives() {
    let nats = NatsServer::start();
    let push_service = WebPushTesting::start();
    let dir = tempfile::tempdir().unwrap();
    create_stream(&nats.jetstream().await).await;
    let (key, public_key) = vapid_key(dir.path());
    let worker = Worker::start(
        dir.path(),
        &push_env(&nats, dir.path(), &key, "push=instant,push.post.like=off"),
    );
    let subscription = push_service.subscribe(&public_key).await;
    add_subscription(&nats, dir.path(), "user-123", &subscription).await;
    let js = nats.jetstream().await;
    publish(
        &js,
        "notifications.post.like",
        like("user-123", "user-456", "post-1"),
    )
    .await;
    let follow = r#"{"owner":"user-123","trigger_user":"user-456","username":"John Doe","action":6,"resource_type":"USER","resource_id":"user-123","created_at":1765318000}"#;
    publish(&js, "notifications.user.follow", follow).await;
    eventually("the follow in the browser", WITHIN, || async {
        !push_service.messages(&subscription).await.is_empty()
    })
    .await;
    eventually("the like decided", WITHIN, || async {
        webpush_metric(
            &worker,
            "notification_worker_personal_decisions_total{channel=\"webpush\",decision=\"off\"}",
        ) == 1.0
    })
    .await;
    let messages = push_service.messages(&subscription).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(
        messages[0].contains("John Doe started following you"),
        "{}",
        messages[0]
    );
}

#[tokio::test]
async fn push_digests_work_as_email_digests_do() {
    let nats = NatsServer::start();
    let push_service = WebPushTesting::start();
    let dir = tempfile::tempdir().unwrap();
    create_stream(&nats.jetstream().await).await;
    let (key, public_key) = vapid_key(dir.path());
    let mut env = push_env(&nats, dir.path(), &key, "push=digest");
    env.retain(|(name, _)| *name != "PUSH_DIGEST_WINDOW");
    env.push(("PUSH_DIGEST_WINDOW", "5s".into()));
    let worker = Worker::start(dir.path(), &env);
    let subscription = push_service.subscribe(&public_key).await;
    add_subscription(&nats, dir.path(), "user-123", &subscription).await;
    let js = nats.jetstream().await;
    at_window_start(Duration::from_secs(5));
    publish(
        &js,
        "notifications.post.like",
        like("user-123", "user-456", "post-1"),
    )
    .await;
    publish(
        &js,
        "notifications.post.like",
        like("user-123", "user-789", "post-2"),
    )
    .await;
    eventually("the digest in the browser", WITHIN, || async {
        !push_service.messages(&subscription).await.is_empty()
    })
    .await;
    let messages = push_service.messages(&subscription).await;
    assert_eq!(messages.len(), 1, "one digest, no instant push: {messages:?}");
    let digest: Value = serde_json::from_str(&messages[0]).unwrap();
    assert_eq!(digest["title"], "2 new notifications");
    assert_eq!(digest["data"]["type"], "digest");
    assert_eq!(digest["data"]["count"], 2);
    assert_eq!(
        webpush_metric(
            &worker,
            "notification_worker_digests_total{channel=\"webpush\",outcome=\"sent\"}"
        ),
        1.0
    );
}
