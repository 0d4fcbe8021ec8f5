//! Channel `webpush` against a real push service (web-push-testing): what arrives is what
//! the browser's service worker would decrypt; expired subscriptions are gone; refusals and
//! outages are told apart. And its settings: the VAPID key forms `openssl` writes. What
//! every personal channel does is in `tests/messenger_contract.rs`.
//!
//! Keys are made by `openssl` at test time, never committed.

mod support;

use notification_worker::config::Environment;
use notification_worker::config::delivery::{RawDelivery, parse as parse_delivery};
use notification_worker::config::webpush::{RawWebPush, parse};
use notification_worker::delivery::job::Notice;
use notification_worker::delivery::messenger::{Address, Content, Messenger};
use notification_worker::delivery::webpush::{MAX_PAYLOAD_BYTES, WebPushMessenger, WebPushSettings};
use notification_worker::delivery::{Failure, SendError};
use notification_worker::domain::Id;
use notification_worker::recipients::{PushTarget, Recipient, TargetKey, WebPushKeys};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use support::web_push_testing::{Subscription, WebPushTesting};

/// Runs openssl with `args`; its stdout.
fn openssl(args: &[&str]) -> Vec<u8> {
    let program = support::require_program("openssl", "install openssl (apt-get install openssl)");
    let output = Command::new(program).args(args).output().expect("openssl runs");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// A fresh key file in `dir`, written by `openssl ecparam -genkey` (SEC1 PEM, with its
/// EC PARAMETERS block) for `curve`.
fn sec1_key(dir: &Path, name: &str, curve: &str) -> PathBuf {
    let path = dir.join(name);
    openssl(&[
        "ecparam",
        "-genkey",
        "-name",
        curve,
        "-out",
        path.to_str().unwrap(),
    ]);
    path
}

fn raw(key_file: Option<&Path>, subject: Option<&str>) -> RawWebPush {
    RawWebPush {
        webpush_vapid_private_key_file: key_file.map(|path| path.to_str().unwrap().to_owned()),
        webpush_subject: subject.map(str::to_owned),
    }
}

fn settings(dir: &Path, name: &str) -> WebPushSettings {
    let key = sec1_key(dir, name, "prime256v1");
    parse(&raw(Some(&key), Some("mailto:ops@example.com")))
        .unwrap()
        .expect("channel webpush is on")
}

fn recipient() -> Recipient {
    Recipient::new(Id::parse("owner", "user-123").unwrap())
}

fn target(subscription: &Subscription) -> PushTarget {
    // web-push-testing's endpoints are http://localhost: allowed here, as in development.
    let key = TargetKey::endpoint(&subscription.endpoint, true).unwrap();
    let keys = WebPushKeys::parse(&subscription.p256dh, &subscription.auth).unwrap();
    PushTarget::subscription(key, keys).unwrap()
}

fn notice(id: &str, action: i64, excerpt: Option<&str>) -> Notice {
    let mut notice = Notice::sample("user-123");
    notice.item.action_key = format!("user-123#{action}#post-789#user-456");
    notice.item.id = id.into();
    notice.item.action = action;
    notice.item.resource_type = "post".into();
    notice.item.excerpt = excerpt.map(str::to_owned);
    notice.item.created_at = "2024-01-15T10:30:00Z".into();
    notice.version = "1".into();
    notice
}

async fn send_one(
    messenger: &WebPushMessenger,
    target: &PushTarget,
    notice: &Notice,
) -> Result<(), SendError> {
    messenger
        .send(&recipient(), Address::Device(target), Content::One(notice))
        .await
}

fn json_of(message: &str) -> Value {
    serde_json::from_str(message).unwrap_or_else(|error| panic!("{message:?}: {error}"))
}

#[tokio::test]
async fn a_push_arrives_decrypted_with_its_headline_excerpt_and_ids() {
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(dir.path(), "vapid.pem");
    let messenger = WebPushMessenger::new(&settings).unwrap();
    let server = WebPushTesting::start();
    let subscription = server.subscribe(settings.vapid_public_key()).await;
    let target = target(&subscription);

    let reply = notice("notification-1", 3, Some("Great point, thanks!"));
    send_one(&messenger, &target, &reply).await.unwrap();
    let follow = notice("notification-2", 6, None);
    send_one(&messenger, &target, &follow).await.unwrap();

    // The service stores a push before it answers 201: both are there now.
    let messages = server.messages(&subscription).await;
    assert_eq!(messages.len(), 2, "{messages:?}");
    let first = json_of(&messages[0]);
    assert_eq!(first["title"], "John Doe replied to your post");
    assert_eq!(first["body"], "Great point, thanks!");
    assert_eq!(first["data"]["type"], "reply.post");
    assert_eq!(first["data"]["resourceId"], "post-789");
    assert_eq!(first["data"]["notificationId"], "notification-1");
    assert_eq!(first.as_object().unwrap().len(), 3, "{first}");
    assert_eq!(first["data"].as_object().unwrap().len(), 3, "{first}");
    let second = json_of(&messages[1]);
    assert_eq!(
        second,
        json!({
            "title": "John Doe started following you",
            "body": "",
            "data": {"type": "user.follow", "resourceId": "post-789", "notificationId": "notification-2"}
        })
    );
}

#[tokio::test]
async fn a_digest_push_lists_the_headlines_and_their_ids() {
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(dir.path(), "vapid.pem");
    let messenger = WebPushMessenger::new(&settings).unwrap();
    let server = WebPushTesting::start();
    let subscription = server.subscribe(settings.vapid_public_key()).await;
    // Keys as some browsers write them, padded: the same subscription.
    let padded = Subscription {
        p256dh: format!("{}=", subscription.p256dh),
        auth: format!("{}==", subscription.auth),
        ..subscription.clone()
    };
    let target = target(&padded);

    let notices = [
        notice("notification-1", 1, None),
        notice("notification-2", 2, None),
        notice("notification-3", 5, Some("@you look")),
    ];
    messenger
        .send(&recipient(), Address::Device(&target), Content::Digest(&notices))
        .await
        .unwrap();

    let messages = server.messages(&subscription).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(
        json_of(&messages[0]),
        json!({
            "title": "3 new notifications",
            "body": "John Doe mentioned you in a post\nJohn Doe liked your comment\nJohn Doe liked your post",
            "data": {
                "type": "digest",
                "count": 3,
                "notificationIds": ["notification-3", "notification-2", "notification-1"]
            }
        })
    );
}

#[tokio::test]
async fn a_long_excerpt_arrives_cut_to_what_a_push_can_carry() {
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(dir.path(), "vapid.pem");
    let messenger = WebPushMessenger::new(&settings).unwrap();
    let server = WebPushTesting::start();
    let subscription = server.subscribe(settings.vapid_public_key()).await;
    let excerpt = "Ça va? ".repeat(2000);

    send_one(
        &messenger,
        &target(&subscription),
        &notice("notification-1", 5, Some(&excerpt)),
    )
    .await
    .unwrap();

    let messages = server.messages(&subscription).await;
    assert_eq!(messages.len(), 1);
    assert!(messages[0].len() <= MAX_PAYLOAD_BYTES, "{}", messages[0].len());
    let body = json_of(&messages[0])["body"].as_str().unwrap().to_owned();
    assert!(body.len() > 2000 && body.ends_with('…'), "{body}");
    assert!(excerpt.starts_with(body.trim_end_matches('…')));
}

#[tokio::test]
async fn an_expired_subscription_is_gone_and_receives_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(dir.path(), "vapid.pem");
    let messenger = WebPushMessenger::new(&settings).unwrap();
    let server = WebPushTesting::start();
    let subscription = server.subscribe(settings.vapid_public_key()).await;
    let target = target(&subscription);
    send_one(&messenger, &target, &notice("notification-1", 1, None))
        .await
        .unwrap();

    server.expire(&subscription).await;
    let error = send_one(&messenger, &target, &notice("notification-2", 1, None))
        .await
        .unwrap_err();

    assert_eq!(error.kind, Failure::Gone, "{error}");
    assert!(error.message.contains("410"), "{error}");
    // The endpoint is the subscription's capability: not in what gets logged.
    assert!(!error.message.contains(&subscription.client_hash), "{error}");
    assert_eq!(server.messages(&subscription).await.len(), 1);
}

#[tokio::test]
async fn a_push_signed_with_another_key_is_refused_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let subscribed_with = settings(dir.path(), "first.pem");
    let other = settings(dir.path(), "second.pem");
    assert_ne!(subscribed_with.vapid_public_key(), other.vapid_public_key());
    let messenger = WebPushMessenger::new(&other).unwrap();
    let server = WebPushTesting::start();
    let subscription = server.subscribe(subscribed_with.vapid_public_key()).await;

    let error = send_one(
        &messenger,
        &target(&subscription),
        &notice("notification-1", 3, None),
    )
    .await
    .unwrap_err();

    // web-push-testing answers 400 (a real service answers 401 or 403): refused either way.
    assert_eq!(error.kind, Failure::Permanent, "{error}");
    assert!(error.message.contains("HTTP 400"), "{error}");
    assert!(server.messages(&subscription).await.is_empty());
}

#[tokio::test]
async fn a_push_service_that_is_down_is_retried_later() {
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(dir.path(), "vapid.pem");
    let messenger = WebPushMessenger::new(&settings).unwrap();
    let mut server = WebPushTesting::start();
    let subscription = server.subscribe(settings.vapid_public_key()).await;
    server.stop();

    let error = send_one(
        &messenger,
        &target(&subscription),
        &notice("notification-1", 3, None),
    )
    .await
    .unwrap_err();

    assert!(
        matches!(error.kind, Failure::Transient { retry_after: None }),
        "{error}"
    );
    assert!(!error.message.contains(&subscription.client_hash), "{error}");
}

// --- settings ---

#[test]
fn the_key_forms_openssl_writes_are_read_and_give_the_public_key_browsers_need() {
    let dir = tempfile::tempdir().unwrap();
    let sec1 = sec1_key(dir.path(), "sec1.pem", "prime256v1");
    let sec1_only = dir.path().join("sec1-noout.pem");
    openssl(&[
        "ecparam",
        "-genkey",
        "-name",
        "prime256v1",
        "-noout",
        "-out",
        sec1_only.to_str().unwrap(),
    ]);
    let pkcs8 = dir.path().join("pkcs8.pem");
    openssl(&[
        "pkey",
        "-in",
        sec1.to_str().unwrap(),
        "-out",
        pkcs8.to_str().unwrap(),
    ]);
    assert!(
        std::fs::read_to_string(&pkcs8)
            .unwrap()
            .contains("BEGIN PRIVATE KEY")
    );

    for (file, same_key_as_sec1) in [(&sec1, true), (&sec1_only, false), (&pkcs8, true)] {
        let settings = parse(&raw(Some(file), Some("https://example.com/contact")))
            .unwrap()
            .expect("on");
        // openssl's own public key: the last 65 bytes of the SubjectPublicKeyInfo.
        let spki = openssl(&[
            "pkey",
            "-in",
            file.to_str().unwrap(),
            "-pubout",
            "-outform",
            "DER",
        ]);
        let point = &spki[spki.len() - 65..];
        use base64::Engine;
        assert_eq!(
            settings.vapid_public_key(),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(point),
            "{file:?}"
        );
        assert_eq!(settings.subject.as_str(), "https://example.com/contact");
        if same_key_as_sec1 {
            let first = parse(&raw(Some(&sec1), Some("mailto:ops@example.com")))
                .unwrap()
                .unwrap();
            assert_eq!(first.vapid_public_key(), settings.vapid_public_key());
        }
    }

    // The bare base64url private key (what the npm web-push CLI prints).
    let scalar = {
        let der = openssl(&["ec", "-in", sec1.to_str().unwrap(), "-outform", "DER"]);
        // SEC1 ECPrivateKey: SEQUENCE, INTEGER 1, OCTET STRING of 32 bytes at offset 7.
        assert_eq!(&der[5..7], &[0x04, 0x20]);
        der[7..39].to_vec()
    };
    use base64::Engine;
    let bare = dir.path().join("bare.txt");
    std::fs::write(
        &bare,
        format!(
            "{}\n",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&scalar)
        ),
    )
    .unwrap();
    let from_bare = parse(&raw(Some(&bare), Some("mailto:ops@example.com")))
        .unwrap()
        .unwrap();
    let from_pem = parse(&raw(Some(&sec1), Some("mailto:ops@example.com")))
        .unwrap()
        .unwrap();
    assert_eq!(from_bare.vapid_public_key(), from_pem.vapid_public_key());
}

#[test]
fn the_channel_is_off_without_settings_and_on_through_the_delivery_settings() {
    assert!(parse(&RawWebPush::default()).unwrap().is_none());
    assert!(parse(&raw(None, Some(" "))).unwrap().is_none());
    let dir = tempfile::tempdir().unwrap();
    let key = sec1_key(dir.path(), "vapid.pem", "prime256v1");
    let delivery = RawDelivery {
        webpush: raw(Some(&key), Some("mailto:ops@example.com")),
        ..RawDelivery::default()
    };
    let settings = parse_delivery(&delivery, Environment::Production).unwrap();
    assert!(settings.webpush.is_some());
    assert!(
        parse_delivery(&RawDelivery::default(), Environment::Production)
            .unwrap()
            .webpush
            .is_none()
    );
}

#[test]
fn bad_settings_stop_the_worker_naming_the_variable_and_never_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let good = sec1_key(dir.path(), "good.pem", "prime256v1");
    let p384 = sec1_key(dir.path(), "p384.pem", "secp384r1");
    let k256 = sec1_key(dir.path(), "k256.pem", "secp256k1");
    // secp256k1 without its public key: only the parameters say which curve it is.
    let k256_bare = dir.path().join("k256-nopub.pem");
    openssl(&[
        "ec",
        "-in",
        k256.to_str().unwrap(),
        "-no_public",
        "-out",
        k256_bare.to_str().unwrap(),
    ]);
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "hello\n").unwrap();
    let missing = dir.path().join("missing.pem");
    let subject = Some("mailto:ops@example.com");

    let cases: Vec<(RawWebPush, &str)> = vec![
        (raw(Some(&good), None), "WEBPUSH_SUBJECT"),
        (raw(None, subject), "WEBPUSH_VAPID_PRIVATE_KEY_FILE"),
        (raw(Some(&good), Some("http://example.com")), "WEBPUSH_SUBJECT"),
        (raw(Some(&good), Some("ops@example.com")), "WEBPUSH_SUBJECT"),
        (raw(Some(&missing), subject), "WEBPUSH_VAPID_PRIVATE_KEY_FILE"),
        (raw(Some(dir.path()), subject), "WEBPUSH_VAPID_PRIVATE_KEY_FILE"),
        (raw(Some(&garbage), subject), "WEBPUSH_VAPID_PRIVATE_KEY_FILE"),
        (raw(Some(&p384), subject), "WEBPUSH_VAPID_PRIVATE_KEY_FILE"),
        (raw(Some(&k256), subject), "WEBPUSH_VAPID_PRIVATE_KEY_FILE"),
        (raw(Some(&k256_bare), subject), "WEBPUSH_VAPID_PRIVATE_KEY_FILE"),
    ];
    for (raw, variable) in cases {
        let error = parse(&raw).unwrap_err();
        assert_eq!(error.variable, variable, "{error}");
        let said = error.to_string();
        for file in [&good, &p384, &k256, &k256_bare] {
            let pem = std::fs::read_to_string(file).unwrap();
            for line in pem.lines().filter(|line| !line.starts_with("-----")) {
                assert!(!said.contains(line), "the key is quoted: {said}");
            }
        }
    }
}
