//! The personal channels' throughput: messages per second from the worker to a real
//! receiver on this machine (aiosmtpd for `email`, web-push-testing for `webpush`). Every
//! owner is in the directory with instant delivery; one new notification per owner, so no
//! owner's messages queue behind each other. The clock runs from the first event published
//! to the channel's consumer having acknowledged the whole outbox; the receiver's count is
//! checked afterwards.

use super::ceilings::Rate;
use super::support::aiosmtpd::Aiosmtpd;
use super::support::web_push_testing::{Subscription, WebPushTesting};
use super::support::{NatsServer, Worker, base_env, publish};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receiver {
    Email,
    Webpush,
}

impl Receiver {
    fn channel(self) -> notification_worker::delivery::ChannelName {
        match self {
            Receiver::Email => notification_worker::delivery::ChannelName::Email,
            Receiver::Webpush => notification_worker::delivery::ChannelName::Webpush,
        }
    }
}

fn reply(owner: &str) -> String {
    json!({
        "owner": owner, "trigger_user": "user-7", "username": "John Doe", "action": 3,
        "resource_type": "POST", "resource_id": "post-1", "excerpt": "Nice!", "created_at": 1_765_318_000,
    })
    .to_string()
}

fn recipients_applied(dir: &Path) -> usize {
    rusqlite::Connection::open(dir.join("notifications.db"))
        .and_then(|db| db.query_row("SELECT COUNT(*) FROM recipients", [], |row| row.get::<_, i64>(0)))
        .unwrap_or(0) as usize
}

/// Messages per second to `receiver`, for `owners` owners.
pub async fn throughput(receiver: Receiver, owners: usize) -> Rate {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&nats, dir.path());
    env.push(("NOTIFY_DEFAULTS", "email=instant,push=instant".to_owned()));
    let js = nats.jetstream().await;
    // The receivers live until the end of the run.
    let mut smtp = None;
    let mut push_service = None;
    let mut subscriptions: Vec<Subscription> = Vec::new();
    match receiver {
        Receiver::Email => {
            let server = Aiosmtpd::start();
            env.extend([
                ("SMTP_URL", server.url()),
                ("EMAIL_FROM", "Exobook <notifications@exobook.example>".to_owned()),
            ]);
            smtp = Some(server);
        }
        Receiver::Webpush => {
            let key = dir.path().join("vapid.pem");
            let made = std::process::Command::new("openssl")
                .args(["ecparam", "-genkey", "-name", "prime256v1", "-out"])
                .arg(&key)
                .status()
                .unwrap();
            assert!(made.success());
            let settings = notification_worker::config::webpush::parse(
                &notification_worker::config::webpush::RawWebPush {
                    webpush_vapid_private_key_file: Some(key.display().to_string()),
                    webpush_subject: Some("mailto:ops@example.com".to_owned()),
                },
            )
            .unwrap()
            .unwrap();
            let server = WebPushTesting::start();
            for _ in 0..owners {
                subscriptions.push(server.subscribe(settings.vapid_public_key()).await);
            }
            env.extend([
                ("WEBPUSH_VAPID_PRIVATE_KEY_FILE", key.display().to_string()),
                ("WEBPUSH_SUBJECT", "mailto:ops@example.com".to_owned()),
            ]);
            push_service = Some(server);
        }
    }
    super::support::create_stream(&js).await;
    let _worker = Worker::start(dir.path(), &env);
    for i in 0..owners {
        let owner = format!("owner-{i}");
        let (subject, body) = match receiver {
            Receiver::Email => (
                "recipients.upsert",
                json!({"owner": owner, "email": format!("{owner}@example.com")}),
            ),
            Receiver::Webpush => {
                let subscription = subscriptions.get(i).expect("one subscription per owner");
                (
                    "recipients.push.add",
                    json!({"owner": owner, "kind": "webpush", "subscription": {
                        "endpoint": subscription.endpoint,
                        "keys": {"p256dh": subscription.p256dh, "auth": subscription.auth},
                    }}),
                )
            }
        };
        publish(&js, subject, body.to_string()).await;
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    while recipients_applied(dir.path()) < owners {
        assert!(Instant::now() < deadline, "the directory was not filled in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let started = Instant::now();
    for i in 0..owners {
        publish(&js, "notifications.reply.post", reply(&format!("owner-{i}"))).await;
    }
    super::runs::wait_for_channel(&js, receiver.channel(), owners).await;
    let took = started.elapsed();

    let received = match receiver {
        Receiver::Email => smtp.as_ref().unwrap().messages().len(),
        Receiver::Webpush => {
            let server = push_service.as_ref().unwrap();
            let mut received = 0;
            for subscription in &subscriptions {
                received += server.messages(subscription).await.len();
            }
            received
        }
    };
    assert!(received >= owners, "{received} of {owners} messages arrived");
    Rate { events: owners, took }
}
