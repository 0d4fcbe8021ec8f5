//! Channel `apns`: contract tests. No local APNs server exists, so these run against a strict
//! server started here that holds to Apple's documented contract: HTTP/2 only (h2c with
//! prior knowledge here, TLS with ALPN `h2` in production), a provider token verified as
//! ES256 with the key's public half (derived by openssl, not by the worker) with its `kid`
//! and `iss`, each `apns-*` header, and the payload field by field; anything else is
//! refused with 400 and a reason, as APNs does.

mod mobile_support;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri, Version};
use axum::response::{IntoResponse, Response};
use mobile_support::{
    TestKey, device, eventually, keys, p256_key, recipient, reply, serve, unix_now, verify_jwt,
};
use notification_worker::config::Environment;
use notification_worker::config::mobile::{RawMobile, parse_apns};
use notification_worker::delivery::apns::ApnsMessenger;
use notification_worker::delivery::messenger::{Address, Content, Messenger};
use notification_worker::delivery::{Failure, SendError};
use notification_worker::recipients::{PushKind, PushTarget};
use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const KEY_ID: &str = "ABC123DEFG";
const TEAM_ID: &str = "TEAM123456";
const TOPIC: &str = "com.exobook.app";
const DEVICE: &str = "5f1d3e9a0b7c4d2e8f6a1b3c5d7e9f0a2b4c6d8e0f1a3b5c7d9e1f3a5b7c9d1e";

/// A request APNs accepted.
#[derive(Debug, Clone)]
struct Accepted {
    device: String,
    collapse_id: Option<String>,
    provider_token: String,
    payload: serde_json::Value,
}

#[derive(Default)]
struct Apple {
    public_key: Vec<u8>,
    accepted: Mutex<Vec<Accepted>>,
    /// Provider tokens it now calls expired.
    expired: Mutex<HashSet<String>>,
    unregistered: Mutex<HashSet<String>>,
    /// Tokens of the other environment (a development build's token sent to production).
    other_environment: Mutex<HashSet<String>>,
    /// While set: every send answers 429 with this `Retry-After`.
    busy: Mutex<Option<u64>>,
}

fn refuse(status: StatusCode, reason: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "reason": reason }))).into_response()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

impl Apple {
    async fn start(public_key: Vec<u8>) -> (Arc<Apple>, String) {
        let apple = Arc::new(Apple {
            public_key,
            ..Apple::default()
        });
        let state = Arc::clone(&apple);
        let base = serve(
            axum::Router::new().fallback(move |method, version, uri, headers, body| {
                Arc::clone(&state).handle(method, version, uri, headers, body)
            }),
        )
        .await;
        (apple, base)
    }

    async fn handle(
        self: Arc<Self>,
        method: Method,
        version: Version,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        if version != Version::HTTP_2 {
            return refuse(StatusCode::BAD_REQUEST, "HTTP2Required");
        }
        let Some(device) = uri.path().strip_prefix("/3/device/") else {
            return refuse(StatusCode::NOT_FOUND, "BadPath");
        };
        if method != Method::POST {
            return refuse(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed");
        }
        if let Err(reason) = self.check_provider_token(&headers) {
            return refuse(StatusCode::FORBIDDEN, reason);
        }
        let checks = [
            (header(&headers, "apns-topic") == Some(TOPIC), "BadTopic"),
            (
                header(&headers, "apns-push-type") == Some("alert"),
                "InvalidPushType",
            ),
            (header(&headers, "apns-priority") == Some("10"), "BadPriority"),
            (
                header(&headers, "apns-collapse-id").is_none_or(|id| id.len() <= 64),
                "BadCollapseId",
            ),
        ];
        if let Some((_, reason)) = checks.iter().find(|(ok, _)| !ok) {
            return refuse(StatusCode::BAD_REQUEST, reason);
        }
        let Ok(payload) = serde_json::from_slice::<serde_json::Value>(&body) else {
            return refuse(StatusCode::BAD_REQUEST, "PayloadEmpty");
        };
        if !valid_payload(&payload) {
            return refuse(StatusCode::BAD_REQUEST, "BadPayload");
        }
        if let Some(seconds) = *self.busy.lock().unwrap() {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", seconds.to_string())],
                axum::Json(serde_json::json!({ "reason": "TooManyRequests" })),
            )
                .into_response();
        }
        if self.other_environment.lock().unwrap().contains(device) {
            return refuse(StatusCode::BAD_REQUEST, "BadDeviceToken");
        }
        if self.unregistered.lock().unwrap().contains(device) {
            let body = serde_json::json!({ "reason": "Unregistered", "timestamp": unix_now() * 1000 });
            return (StatusCode::GONE, axum::Json(body)).into_response();
        }
        self.accepted.lock().unwrap().push(Accepted {
            device: device.to_owned(),
            collapse_id: header(&headers, "apns-collapse-id").map(str::to_owned),
            provider_token: header(&headers, "authorization").unwrap_or_default().to_owned(),
            payload,
        });
        (StatusCode::OK, [("apns-id", uuid::Uuid::new_v4().to_string())]).into_response()
    }

    /// `authorization: bearer JWT`: ES256 by the key `KEY_ID`, issued by `TEAM_ID`, signed
    /// within the last hour. `Err` is APNs' reason for refusing it (with status 403).
    fn check_provider_token(&self, headers: &HeaderMap) -> Result<(), &'static str> {
        let jwt = header(headers, "authorization")
            .and_then(|value| value.strip_prefix("bearer "))
            .ok_or("MissingProviderToken")?;
        let verified = verify_jwt(jwt, &ring::signature::ECDSA_P256_SHA256_FIXED, &self.public_key)
            .map_err(|_| "InvalidProviderToken")?;
        let iat = verified.claims["iat"].as_i64().unwrap_or_default();
        let valid = verified.header["alg"] == "ES256"
            && verified.header["kid"] == KEY_ID
            && keys(&verified.claims) == ["iat", "iss"]
            && verified.claims["iss"] == TEAM_ID
            && iat <= unix_now() + 60;
        if !valid {
            return Err("InvalidProviderToken");
        }
        if iat < unix_now() - 3600 || self.expired.lock().unwrap().contains(jwt) {
            return Err("ExpiredProviderToken");
        }
        Ok(())
    }
}

/// `aps.alert` with exactly a title and a body, and the routing keys as strings beside it.
fn valid_payload(payload: &serde_json::Value) -> bool {
    let alert = &payload["aps"]["alert"];
    let routing = match payload["type"].as_str() {
        Some("digest") => keys(payload) == ["aps", "type"],
        Some(_) => {
            keys(payload) == ["aps", "notificationId", "resourceId", "type"]
                && payload["resourceId"].is_string()
                && payload["notificationId"].is_string()
        }
        None => false,
    };
    routing
        && keys(&payload["aps"]) == ["alert"]
        && keys(alert) == ["body", "title"]
        && alert["title"].as_str().is_some_and(|title| !title.is_empty())
        && alert["body"].is_string()
}

fn raw(key: &TestKey, base: &str) -> RawMobile {
    RawMobile {
        apns_key_file: Some(key.path.to_str().unwrap().into()),
        apns_key_id: Some(KEY_ID.into()),
        apns_team_id: Some(TEAM_ID.into()),
        apns_topic: Some(TOPIC.into()),
        apns_base_url: Some(base.into()),
        ..RawMobile::default()
    }
}

struct Fixture {
    apple: Arc<Apple>,
    messenger: ApnsMessenger,
    base: String,
    _dir: tempfile::TempDir,
}

async fn start() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let key = p256_key(dir.path());
    let (apple, base) = Apple::start(key.public.clone()).await;
    let settings = parse_apns(&raw(&key, &base), Environment::Development)
        .unwrap()
        .unwrap();
    Fixture {
        apple,
        messenger: ApnsMessenger::new(settings).unwrap(),
        base,
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
    let (apple, base) = Apple::start(key.public.clone()).await;
    let mut settings = parse_apns(&raw(&key, &base), Environment::Development)
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
    eventually("a second provider token", || async {
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
    let base = fixture.base.clone();
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
        let rsa = mobile_support::rsa_key(dir.path());
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
