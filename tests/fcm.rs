//! Channel `fcm`: contract tests. No local FCM server exists, so these run against a strict
//! server started here that holds to Google's documented contract: its OAuth2 token
//! endpoint verifies the JWT-bearer assertion's RS256 signature with the service account's
//! public key (derived by openssl, not by the worker) and each claim, and issues tokens that
//! expire; its `messages:send` checks the bearer token, the project in the path and the
//! message JSON field by field, and refuses anything else with 400.

mod mobile_support;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use mobile_support::{
    TestKey, device, eventually, keys, recipient, reply, rsa_key, serve, unix_now, verify_jwt,
};
use notification_worker::config::Environment;
use notification_worker::config::mobile::{RawMobile, parse_fcm};
use notification_worker::delivery::fcm::{FcmMessenger, FcmSettings};
use notification_worker::delivery::messenger::{Address, Content, Messenger};
use notification_worker::delivery::{Failure, SendError};
use notification_worker::recipients::{PushKind, PushTarget};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PROJECT: &str = "exobook-test";
const CLIENT_EMAIL: &str = "notifier@exobook-test.iam.gserviceaccount.com";
const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const DEVICE: &str = "fcm-device-token:APA91b_test-1";

/// The contract server's state.
struct Google {
    public_key: Vec<u8>,
    token_uri: Mutex<String>,
    /// `expires_in` of the tokens it issues.
    expires_in: u64,
    token_requests: AtomicUsize,
    /// Issued access tokens and when each stops being accepted.
    tokens: Mutex<HashMap<String, Instant>>,
    /// Messages accepted, as sent.
    messages: Mutex<Vec<serde_json::Value>>,
    /// Device tokens FCM no longer knows.
    unregistered: Mutex<HashSet<String>>,
    /// While set: every send answers 429 with this `Retry-After`.
    busy: Mutex<Option<u64>>,
}

fn refuse(problem: impl Into<String>) -> Response {
    let problem = problem.into();
    let body =
        serde_json::json!({ "error": { "code": 400, "status": "INVALID_ARGUMENT", "message": problem } });
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

impl Google {
    async fn handle(self: Arc<Self>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
        let send_path = format!("/v1/projects/{PROJECT}/messages:send");
        match (method, uri.path()) {
            (Method::POST, "/token") => self.token(&headers, &body),
            (Method::POST, path) if path == send_path => self.send(&headers, &body),
            (method, path) => refuse(format!("no {method} {path} here")),
        }
    }

    /// The OAuth2 token endpoint, RFC 7523 JWT-bearer grant.
    fn token(&self, headers: &HeaderMap, body: &[u8]) -> Response {
        self.token_requests.fetch_add(1, Ordering::SeqCst);
        let grant = |problem: String| {
            let body = serde_json::json!({ "error": "invalid_grant", "error_description": problem });
            (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
        };
        if headers.get("content-type").and_then(|v| v.to_str().ok())
            != Some("application/x-www-form-urlencoded")
        {
            return grant("the body must be a form".into());
        }
        let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
        if form.len() != 2 || form.get("grant_type").map(String::as_str) != Some(GRANT_TYPE) {
            return grant(format!(
                "expected exactly grant_type={GRANT_TYPE} and assertion, got {:?}",
                form.keys()
            ));
        }
        let Some(assertion) = form.get("assertion") else {
            return grant("no assertion".into());
        };
        let jwt = match verify_jwt(
            assertion,
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            &self.public_key,
        ) {
            Ok(jwt) => jwt,
            Err(problem) => return grant(format!("Invalid JWT: {problem}")),
        };
        if jwt.header["alg"] != "RS256"
            || !matches!(jwt.header.get("typ"), None | Some(serde_json::Value::String(_)))
        {
            return grant(format!("bad header {}", jwt.header));
        }
        let claims = &jwt.claims;
        let now = unix_now();
        let iat = claims["iat"].as_i64().unwrap_or_default();
        let token_uri = self.token_uri.lock().unwrap().clone();
        let problems = [
            (keys(claims) == ["aud", "exp", "iat", "iss", "scope"], "claims"),
            (claims["iss"] == CLIENT_EMAIL, "iss"),
            (claims["scope"] == SCOPE, "scope"),
            (claims["aud"] == token_uri.as_str(), "aud"),
            ((now - 60..=now + 60).contains(&iat), "iat"),
            (claims["exp"].as_i64() == Some(iat + 3600), "exp"),
        ];
        if let Some((_, claim)) = problems.iter().find(|(ok, _)| !ok) {
            return grant(format!("bad {claim} in {claims}"));
        }
        let token = format!("ya29.{}", uuid::Uuid::new_v4().simple());
        self.tokens.lock().unwrap().insert(
            token.clone(),
            Instant::now() + Duration::from_secs(self.expires_in),
        );
        axum::Json(serde_json::json!({ "access_token": token, "expires_in": self.expires_in, "token_type": "Bearer" }))
            .into_response()
    }

    /// `messages:send`, HTTP v1.
    fn send(&self, headers: &HeaderMap, body: &[u8]) -> Response {
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let valid = bearer.is_some_and(|token| {
            self.tokens
                .lock()
                .unwrap()
                .get(token)
                .is_some_and(|expiry| Instant::now() < *expiry)
        });
        if !valid {
            let body = serde_json::json!({ "error": { "code": 401, "status": "UNAUTHENTICATED" } });
            return (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
        }
        if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/json") {
            return refuse("the body must be JSON");
        }
        let Ok(request) = serde_json::from_slice::<serde_json::Value>(body) else {
            return refuse("not JSON");
        };
        if let Err(problem) = check_message(&request) {
            return refuse(problem);
        }
        if let Some(seconds) = *self.busy.lock().unwrap() {
            let body = serde_json::json!({ "error": { "code": 429, "status": "RESOURCE_EXHAUSTED" } });
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", seconds.to_string())],
                axum::Json(body),
            )
                .into_response();
        }
        let device = request["message"]["token"].as_str().unwrap_or_default();
        if self.unregistered.lock().unwrap().contains(device) {
            let body = serde_json::json!({ "error": {
                "code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND",
                "details": [{ "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED" }]
            } });
            return (StatusCode::NOT_FOUND, axum::Json(body)).into_response();
        }
        self.messages.lock().unwrap().push(request);
        axum::Json(
            serde_json::json!({ "name": format!("projects/{PROJECT}/messages/{}", uuid::Uuid::new_v4()) }),
        )
        .into_response()
    }
}

/// The message's shape, as HTTP v1 takes it: the fields this channel sends, and `data`
/// values that are strings.
fn check_message(request: &serde_json::Value) -> Result<(), String> {
    let message = &request["message"];
    let checks = [
        (keys(request) == ["message"], "top level"),
        (
            keys(message) == ["data", "notification", "token"],
            "message fields",
        ),
        (message["token"].as_str().is_some_and(|t| !t.is_empty()), "token"),
        (
            keys(&message["notification"]) == ["body", "title"],
            "notification fields",
        ),
        (
            message["notification"]["title"]
                .as_str()
                .is_some_and(|t| !t.is_empty()),
            "title",
        ),
        (message["notification"]["body"].is_string(), "body"),
        (
            message["data"].as_object().is_some_and(|data| {
                data.contains_key("type") && data.values().all(serde_json::Value::is_string)
            }),
            "data (string values, with a type)",
        ),
    ];
    match checks.iter().find(|(ok, _)| !ok) {
        Some((_, what)) => Err(format!("invalid {what} in {request}")),
        None => Ok(()),
    }
}

struct Fixture {
    google: Arc<Google>,
    messenger: FcmMessenger,
    _dir: tempfile::TempDir,
}

fn write_account(dir: &Path, key: &TestKey, token_uri: &str) -> std::path::PathBuf {
    let path = dir.join("service-account.json");
    let account = serde_json::json!({
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": "0123456789abcdef",
        "private_key": key.pem,
        "client_email": CLIENT_EMAIL,
        "client_id": "1234567890",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    });
    std::fs::write(&path, account.to_string()).unwrap();
    path
}

impl Google {
    /// A contract server for the account whose public key is `public_key`, issuing tokens
    /// that live `expires_in` seconds; and its base URL.
    async fn start(public_key: Vec<u8>, expires_in: u64) -> (Arc<Google>, String) {
        let google = Arc::new(Google {
            public_key,
            token_uri: Mutex::new(String::new()),
            expires_in,
            token_requests: AtomicUsize::new(0),
            tokens: Mutex::new(HashMap::new()),
            messages: Mutex::new(Vec::new()),
            unregistered: Mutex::new(HashSet::new()),
            busy: Mutex::new(None),
        });
        let state = Arc::clone(&google);
        let base = serve(axum::Router::new().fallback(move |method, uri, headers, body| {
            Arc::clone(&state).handle(method, uri, headers, body)
        }))
        .await;
        *google.token_uri.lock().unwrap() = format!("{base}/token");
        (google, base)
    }
}

/// A messenger built as the worker builds it: from a key file, through the settings.
fn messenger(dir: &Path, key: &TestKey, base: &str) -> FcmMessenger {
    let token_uri = format!("{base}/token");
    let raw = RawMobile {
        fcm_credentials_file: Some(write_account(dir, key, &token_uri).to_str().unwrap().into()),
        fcm_base_url: base.to_owned(),
        ..RawMobile::default()
    };
    let settings: FcmSettings = parse_fcm(&raw, Environment::Development).unwrap().unwrap();
    FcmMessenger::new(settings).unwrap()
}

async fn start(expires_in: u64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let key = rsa_key(dir.path());
    let (google, base) = Google::start(key.public.clone(), expires_in).await;
    Fixture {
        google,
        messenger: messenger(dir.path(), &key, &base),
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
        self.google.token_requests.load(Ordering::SeqCst)
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
    eventually("a second access token", || async {
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
    let (google, base) = Google::start(rsa_key(dir.path()).public, 3600).await;
    let other = tempfile::tempdir().unwrap();
    let messenger = messenger(other.path(), &rsa_key(other.path()), &base);
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
