//! Channel `fcm`: what is particular to it, against the strict FCM server of
//! `support/fcm_server.rs` (no local FCM server exists): the message's fields, the OAuth2
//! access token's life, and the answers FCM gives. What every personal channel does is in
//! `tests/messenger_contract.rs`.

mod support;

use notification_worker::config::Environment;
use notification_worker::config::mobile::{RawMobile, parse_fcm};
use notification_worker::delivery::fcm::FcmMessenger;
use notification_worker::delivery::messenger::{Address, Content, Messenger};
use notification_worker::delivery::{Failure, SendError};
use notification_worker::recipients::{PushKind, PushTarget};
use std::sync::Arc;
use std::time::Duration;
use support::eventually;
use support::fcm_server::{CLIENT_EMAIL, DEVICE, Google, PROJECT, messenger, write_account};
use support::mobile::{HttpServer, WITHIN, device, recipient, reply, rsa_key};

struct Fixture {
    google: Arc<Google>,
    messenger: FcmMessenger,
    _server: HttpServer,
    _dir: tempfile::TempDir,
}

async fn start(expires_in: u64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let key = rsa_key(dir.path());
    let (google, server) = Google::start(key.public.clone(), expires_in).await;
    Fixture {
        google,
        messenger: messenger(dir.path(), &key, &server.url),
        _server: server,
        _dir: dir,
    }
}

impl Fixture {
    async fn send_to(&self, target: &PushTarget, content: Content<'_>) -> Result<(), SendError> {
        self.messenger
            .send(&recipient(), Address::Device(target), content)
            .await
    }

    async fn send(&self) -> Result<(), SendError> {
        let notice = reply();
        self.send_to(&device(PushKind::Fcm, DEVICE), Content::One(&notice))
            .await
    }

    fn token_requests(&self) -> usize {
        self.google.token_requests()
    }
}

#[tokio::test]
async fn a_notification_arrives_with_its_title_body_and_routing_data() {
    let fixture = start(3600).await;
    let notice = reply();
    fixture
        .send_to(&device(PushKind::Fcm, DEVICE), Content::One(&notice))
        .await
        .unwrap();
    let messages = fixture.google.messages.lock().unwrap().clone();
    assert_eq!(messages.len(), 1);
    let message = &messages[0]["message"];
    assert_eq!(message["token"], DEVICE);
    assert_eq!(message["notification"]["title"], "John Doe replied to your post");
    assert_eq!(message["notification"]["body"], "Great point, thanks!");
    assert_eq!(
        message["data"],
        serde_json::json!({
            "type": "reply.post",
            "resourceId": "post-789",
            "notificationId": notice.item.id,
        })
    );
}

#[tokio::test]
async fn a_digest_has_a_count_for_title_and_the_headlines_for_body() {
    let fixture = start(3600).await;
    let mut like = reply();
    like.item.action = 1;
    like.item.username = Some("Ada".into());
    let notices = [reply(), like];
    fixture
        .send_to(&device(PushKind::Fcm, DEVICE), Content::Digest(&notices))
        .await
        .unwrap();
    let message = fixture.google.messages.lock().unwrap()[0]["message"].clone();
    assert_eq!(message["notification"]["title"], "2 new notifications");
    assert_eq!(
        message["notification"]["body"],
        "John Doe replied to your post\nAda liked your post"
    );
    assert_eq!(message["data"], serde_json::json!({ "type": "digest" }));
}

#[tokio::test]
async fn one_access_token_serves_concurrent_and_later_sends() {
    let fixture = start(3600).await;
    let results = futures::future::join_all((0..8).map(|_| fixture.send())).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    for _ in 0..3 {
        fixture.send().await.unwrap();
    }
    assert_eq!(fixture.token_requests(), 1);
    assert_eq!(fixture.google.messages.lock().unwrap().len(), 11);
}

#[tokio::test]
async fn the_access_token_is_renewed_before_it_expires() {
    // Tokens that live 4 s are renewed after 2 s (halfway); the server refuses expired ones,
    // so every send succeeding shows the renewal came in time.
    let fixture = start(4).await;
    fixture.send().await.unwrap();
    assert_eq!(fixture.token_requests(), 1);
    eventually("a second access token", WITHIN, || async {
        fixture.send().await.unwrap();
        fixture.token_requests() == 2
    })
    .await;
    fixture.send().await.unwrap();
    assert_eq!(fixture.token_requests(), 2);
}

#[tokio::test]
async fn a_refused_access_token_is_dropped_and_the_next_send_gets_a_new_one() {
    let fixture = start(3600).await;
    fixture.send().await.unwrap();
    fixture.google.tokens.lock().unwrap().clear();
    let refused = fixture.send().await.unwrap_err();
    assert_eq!(
        refused.kind,
        Failure::Transient { retry_after: None },
        "{refused}"
    );
    fixture.send().await.unwrap();
    assert_eq!(fixture.token_requests(), 2);
}

#[tokio::test]
async fn an_unregistered_token_is_gone() {
    let fixture = start(3600).await;
    fixture
        .google
        .unregistered
        .lock()
        .unwrap()
        .insert("uninstalled-app".into());
    let notice = reply();
    let error = fixture
        .send_to(&device(PushKind::Fcm, "uninstalled-app"), Content::One(&notice))
        .await
        .unwrap_err();
    assert_eq!(error.kind, Failure::Gone, "{error}");
    assert!(
        error.message.contains("UNREGISTERED") || error.message.contains("404"),
        "{error}"
    );
    fixture.send().await.unwrap();
}

#[tokio::test]
async fn too_many_requests_is_retried_after_the_pause_fcm_asks_for() {
    let fixture = start(3600).await;
    *fixture.google.busy.lock().unwrap() = Some(17);
    let error = fixture.send().await.unwrap_err();
    assert_eq!(
        error.kind,
        Failure::Transient {
            retry_after: Some(Duration::from_secs(17))
        },
        "{error}"
    );
    *fixture.google.busy.lock().unwrap() = None;
    fixture.send().await.unwrap();
}

#[tokio::test]
async fn a_wrong_key_is_refused_by_the_token_endpoint_for_good() {
    // The server knows another key than the one the account file holds.
    let dir = tempfile::tempdir().unwrap();
    let (google, server) = Google::start(rsa_key(dir.path()).public, 3600).await;
    let other = tempfile::tempdir().unwrap();
    let messenger = messenger(other.path(), &rsa_key(other.path()), &server.url);
    let notice = reply();
    let target = device(PushKind::Fcm, DEVICE);
    let error = messenger
        .send(&recipient(), Address::Device(&target), Content::One(&notice))
        .await
        .unwrap_err();
    assert_eq!(error.kind, Failure::Permanent, "{error}");
    assert!(error.message.contains("invalid_grant"), "{error}");
    assert!(google.messages.lock().unwrap().is_empty());
}

#[tokio::test]
async fn fcm_sends_only_to_fcm_devices() {
    let fixture = start(3600).await;
    let notice = reply();
    let apns = device(PushKind::Apns, "00ff");
    let error = fixture.send_to(&apns, Content::One(&notice)).await.unwrap_err();
    assert_eq!(error.kind, Failure::Permanent);
    assert_eq!(fixture.token_requests(), 0);
}

mod settings {
    use super::*;

    fn parse_account(account: serde_json::Value, environment: Environment) -> Result<(), String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("account.json");
        std::fs::write(&path, account.to_string()).unwrap();
        let raw = RawMobile {
            fcm_credentials_file: Some(path.to_str().unwrap().into()),
            ..RawMobile::default()
        };
        parse_fcm(&raw, environment).map(|_| ()).map_err(|error| {
            assert_eq!(error.variable, "FCM_CREDENTIALS_FILE");
            error.to_string()
        })
    }

    #[test]
    fn a_service_account_file_turns_fcm_on_with_the_default_base_url() {
        let dir = tempfile::tempdir().unwrap();
        let key = rsa_key(dir.path());
        let path = write_account(dir.path(), &key, "https://oauth2.googleapis.com/token");
        let raw = RawMobile {
            fcm_credentials_file: Some(path.to_str().unwrap().into()),
            ..RawMobile::default()
        };
        let settings = parse_fcm(&raw, Environment::Production).unwrap().unwrap();
        assert_eq!(settings.base_url.as_str(), "https://fcm.googleapis.com/");
        assert_eq!(settings.account.project_id, PROJECT);
        assert_eq!(settings.account.client_email, CLIENT_EMAIL);
        assert_eq!(
            settings.account.token_uri.as_str(),
            "https://oauth2.googleapis.com/token"
        );
        // The key is never shown.
        let shown = format!("{settings:?}");
        assert!(
            !shown.contains("PRIVATE KEY") && !shown.contains(&key.pem[40..80]),
            "{shown}"
        );
    }

    #[test]
    fn a_damaged_or_incomplete_account_file_is_an_error_that_does_not_quote_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = rsa_key(dir.path());
        let good = serde_json::json!({
            "type": "service_account",
            "project_id": PROJECT,
            "private_key": key.pem,
            "client_email": CLIENT_EMAIL,
            "token_uri": "https://oauth2.googleapis.com/token",
        });
        assert!(parse_account(good.clone(), Environment::Production).is_ok());
        let body_line = key.pem.lines().nth(1).unwrap().to_owned();
        let cases: Vec<(&str, serde_json::Value, &str)> = vec![
            ("project_id", serde_json::json!(null), "project_id"),
            ("client_email", serde_json::json!("not-an-email"), "client_email"),
            (
                "token_uri",
                serde_json::json!("http://oauth2.example/token"),
                "token_uri",
            ),
            ("type", serde_json::json!("authorized_user"), "service_account"),
            (
                "private_key",
                serde_json::json!(key.pem.replace(&body_line, "!!!!")),
                "private_key",
            ),
            (
                "private_key",
                serde_json::json!(key.pem.replace("PRIVATE KEY", "RSA PRIVATE KEY")),
                "PKCS#8",
            ),
        ];
        for (field, value, expected) in cases {
            let mut account = good.clone();
            account[field] = value;
            let problem = parse_account(account, Environment::Production).unwrap_err();
            assert!(problem.contains(expected), "{field}: {problem}");
            assert!(
                !problem.contains(&body_line),
                "{field}: the key is quoted: {problem}"
            );
        }
        let problem = parse_account(serde_json::json!("not an object"), Environment::Production).unwrap_err();
        assert!(problem.contains("project_id"), "{problem}");
    }

    #[test]
    fn plain_http_is_for_development_only() {
        let dir = tempfile::tempdir().unwrap();
        let key = rsa_key(dir.path());
        let path = write_account(dir.path(), &key, "http://127.0.0.1:9/token");
        let raw = RawMobile {
            fcm_credentials_file: Some(path.to_str().unwrap().into()),
            fcm_base_url: "http://127.0.0.1:9".into(),
            ..RawMobile::default()
        };
        assert!(parse_fcm(&raw, Environment::Development).unwrap().is_some());
        let error = parse_fcm(&raw, Environment::Production).unwrap_err();
        assert_eq!(error.variable, "FCM_CREDENTIALS_FILE", "{error}");
        let https_account = write_account(dir.path(), &key, "https://oauth2.googleapis.com/token");
        let raw = RawMobile {
            fcm_credentials_file: Some(https_account.to_str().unwrap().into()),
            ..raw
        };
        assert_eq!(
            parse_fcm(&raw, Environment::Production).unwrap_err().variable,
            "FCM_BASE_URL"
        );
    }
}
