//! Channel `apns`: what is particular to it, against the strict APNs server of
//! `support/apns_server.rs` (no local APNs server exists): HTTP/2, the alert and its
//! routing keys, `apns-collapse-id`, the provider token's life, and the answers APNs gives.
//! What every personal channel does is in `tests/messenger_contract.rs`.

mod support;

use notification_worker::config::Environment;
use notification_worker::config::mobile::{RawMobile, parse_apns};
use notification_worker::delivery::apns::ApnsMessenger;
use notification_worker::delivery::messenger::{Address, Content, Messenger};
use notification_worker::delivery::{Failure, SendError};
use notification_worker::recipients::{PushKind, PushTarget};
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use support::apns_server::{Accepted, Apple, DEVICE, KEY_ID, TEAM_ID, messenger, raw};
use support::eventually;
use support::mobile::{HttpServer, TestKey, WITHIN, device, p256_key, recipient, reply};

struct Fixture {
    apple: Arc<Apple>,
    messenger: ApnsMessenger,
    server: HttpServer,
    _dir: tempfile::TempDir,
}

async fn start() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let key = p256_key(dir.path());
    let (apple, server) = Apple::start(key.public.clone()).await;
    Fixture {
        apple,
        messenger: messenger(&key, &server.url),
        server,
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
        self.send_to(&device(PushKind::Apns, DEVICE), Content::One(&notice))
            .await
    }

    fn accepted(&self) -> Vec<Accepted> {
        self.apple.accepted.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn a_notification_arrives_over_http2_with_its_alert_and_routing_keys() {
    let fixture = start().await;
    let notice = reply();
    fixture
        .send_to(&device(PushKind::Apns, DEVICE), Content::One(&notice))
        .await
        .unwrap();
    let accepted = fixture.accepted();
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].device, DEVICE);
    assert_eq!(accepted[0].collapse_id.as_deref(), Some(notice.item.id.as_str()));
    assert_eq!(
        accepted[0].payload,
        serde_json::json!({
            "aps": { "alert": { "title": "John Doe replied to your post", "body": "Great point, thanks!" } },
            "type": "reply.post",
            "resourceId": "post-789",
            "notificationId": notice.item.id,
        })
    );
}

#[tokio::test]
async fn a_digest_is_one_alert_without_a_collapse_id() {
    let fixture = start().await;
    let notices = [reply(), reply(), reply()];
    fixture
        .send_to(&device(PushKind::Apns, DEVICE), Content::Digest(&notices))
        .await
        .unwrap();
    let accepted = fixture.accepted();
    assert_eq!(accepted[0].collapse_id, None);
    assert_eq!(
        accepted[0].payload["aps"]["alert"]["title"],
        "3 new notifications"
    );
    assert_eq!(accepted[0].payload["type"], "digest");
}

#[tokio::test]
async fn one_provider_token_serves_many_sends() {
    let fixture = start().await;
    let results = futures::future::join_all((0..6).map(|_| fixture.send())).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let tokens: HashSet<String> = fixture.accepted().into_iter().map(|a| a.provider_token).collect();
    assert_eq!(tokens.len(), 1, "{tokens:?}");
}

#[tokio::test]
async fn an_expired_provider_token_is_renewed_for_the_next_attempt() {
    let fixture = start().await;
    fixture.send().await.unwrap();
    let first = fixture.accepted()[0].provider_token.clone();
    let jwt = first.strip_prefix("bearer ").unwrap().to_owned();
    fixture.apple.expired.lock().unwrap().insert(jwt);
    let error = fixture.send().await.unwrap_err();
    assert_eq!(error.kind, Failure::Transient { retry_after: None }, "{error}");
    fixture.send().await.unwrap();
    let accepted = fixture.accepted();
    assert_eq!(accepted.len(), 2);
    assert_ne!(accepted[1].provider_token, first);
}

#[tokio::test]
async fn the_provider_token_is_renewed_when_it_is_old() {
    // Renewed after a second here instead of 50 minutes: sends go on until a new token
    // appears, and the server accepts every one.
    let dir = tempfile::tempdir().unwrap();
    let key = p256_key(dir.path());
    let (apple, server) = Apple::start(key.public.clone()).await;
    let mut settings = parse_apns(&raw(&key, &server.url), Environment::Development)
        .unwrap()
        .unwrap();
    settings.token_renewal = Duration::from_secs(1);
    let messenger = ApnsMessenger::new(settings).unwrap();
    let target = device(PushKind::Apns, DEVICE);
    let notice = reply();
    let tokens = || -> HashSet<String> {
        apple
            .accepted
            .lock()
            .unwrap()
            .iter()
            .map(|a| a.provider_token.clone())
            .collect()
    };
    eventually("a second provider token", WITHIN, || async {
        messenger
            .send(&recipient(), Address::Device(&target), Content::One(&notice))
            .await
            .unwrap();
        tokens().len() == 2
    })
    .await;
    assert!(apple.accepted.lock().unwrap().len() >= 2);
}

#[tokio::test]
async fn an_unregistered_device_is_gone() {
    let fixture = start().await;
    fixture.apple.unregistered.lock().unwrap().insert(DEVICE.into());
    let error = fixture.send().await.unwrap_err();
    assert_eq!(error.kind, Failure::Gone, "{error}");
}

#[tokio::test]
async fn a_token_of_the_other_environment_fails_that_send_but_is_not_gone() {
    let fixture = start().await;
    fixture
        .apple
        .other_environment
        .lock()
        .unwrap()
        .insert(DEVICE.into());
    let error = fixture.send().await.unwrap_err();
    assert_eq!(error.kind, Failure::Permanent, "{error}");
    assert!(error.message.contains("BadDeviceToken"), "{error}");
}

#[tokio::test]
async fn too_many_requests_is_retried_after_the_pause_apns_asks_for() {
    let fixture = start().await;
    *fixture.apple.busy.lock().unwrap() = Some(9);
    let error = fixture.send().await.unwrap_err();
    assert_eq!(
        error.kind,
        Failure::Transient {
            retry_after: Some(Duration::from_secs(9))
        },
        "{error}"
    );
}

#[tokio::test]
async fn the_contract_server_refuses_http1_and_foreign_signatures() {
    // The checks the tests above rely on do refuse: an HTTP/1.1 request, and a provider
    // token signed by another key.
    let fixture = start().await;
    let base = fixture.server.url.clone();
    let http1 = reqwest::Client::builder().http1_only().build().unwrap();
    let answer = http1
        .post(format!("{base}/3/device/{DEVICE}"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    let dir = tempfile::tempdir().unwrap();
    let stranger = p256_key(dir.path());
    let settings = parse_apns(&raw(&stranger, &base), Environment::Development)
        .unwrap()
        .unwrap();
    let error = ApnsMessenger::new(settings)
        .unwrap()
        .send(
            &recipient(),
            Address::Device(&device(PushKind::Apns, DEVICE)),
            Content::One(&reply()),
        )
        .await
        .unwrap_err();
    assert_eq!(error.kind, Failure::Permanent, "{error}");
    assert!(error.message.contains("InvalidProviderToken"), "{error}");
    assert!(fixture.accepted().is_empty());
}

mod settings {
    use super::*;

    fn key_in(dir: &Path) -> TestKey {
        p256_key(dir)
    }

    #[test]
    fn the_base_url_defaults_to_the_environments_apns_host() {
        let dir = tempfile::tempdir().unwrap();
        let key = key_in(dir.path());
        let raw = RawMobile {
            apns_base_url: None,
            ..raw(&key, "")
        };
        let production = parse_apns(&raw, Environment::Production).unwrap().unwrap();
        assert_eq!(production.base_url.as_str(), "https://api.push.apple.com/");
        let development = parse_apns(&raw, Environment::Development).unwrap().unwrap();
        assert_eq!(
            development.base_url.as_str(),
            "https://api.sandbox.push.apple.com/"
        );
        assert_eq!(
            (production.key_id.as_str(), production.team_id.as_str()),
            (KEY_ID, TEAM_ID)
        );
        let shown = format!("{production:?}");
        assert!(!shown.contains(&key.pem[40..80]), "{shown}");
    }

    #[test]
    fn some_variables_but_not_all_is_an_error_naming_the_missing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let key = key_in(dir.path());
        let raw = RawMobile {
            apns_team_id: None,
            apns_topic: None,
            ..raw(&key, "https://api.push.apple.com")
        };
        let error = parse_apns(&raw, Environment::Production).unwrap_err();
        assert_eq!(error.variable, "APNS_TEAM_ID");
        assert!(error.to_string().contains("APNS_TEAM_ID, APNS_TOPIC"), "{error}");
    }

    #[test]
    fn bad_values_are_errors_naming_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        let key = key_in(dir.path());
        let good = raw(&key, "https://api.push.apple.com");
        let rsa = support::mobile::rsa_key(dir.path());
        let cases: Vec<(RawMobile, &str)> = vec![
            (
                RawMobile {
                    apns_key_file: Some(dir.path().join("missing.p8").to_str().unwrap().into()),
                    ..good.clone()
                },
                "APNS_KEY_FILE",
            ),
            (
                RawMobile {
                    apns_key_file: Some(rsa.path.to_str().unwrap().into()),
                    ..good.clone()
                },
                "APNS_KEY_FILE",
            ),
            (
                RawMobile {
                    apns_key_id: Some("short".into()),
                    ..good.clone()
                },
                "APNS_KEY_ID",
            ),
            (
                RawMobile {
                    apns_team_id: Some("TEAM 12345".into()),
                    ..good.clone()
                },
                "APNS_TEAM_ID",
            ),
            (
                RawMobile {
                    apns_topic: Some("com.example.app\r\nx: y".into()),
                    ..good.clone()
                },
                "APNS_TOPIC",
            ),
            (
                RawMobile {
                    apns_base_url: Some("http://127.0.0.1:2197".into()),
                    ..good.clone()
                },
                "APNS_BASE_URL",
            ),
        ];
        assert!(parse_apns(&good, Environment::Production).unwrap().is_some());
        for (raw, variable) in cases {
            let error = parse_apns(&raw, Environment::Production).unwrap_err();
            assert_eq!(error.variable, variable, "{error}");
            assert!(!error.to_string().contains(&rsa.pem[40..80]), "{error}");
        }
    }
}
