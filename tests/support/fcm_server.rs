//! A strict FCM server, for `tests/fcm.rs` and `tests/messenger_contract.rs`. No local FCM
//! server exists, so this one holds to Google's documented contract: its OAuth2 token
//! endpoint verifies the JWT-bearer assertion's RS256 signature with the service account's
//! public key (derived by openssl, not by the worker) and each claim, and issues tokens that
//! expire; its `messages:send` checks the bearer token, the project in the path and the
//! message JSON field by field, and refuses anything else with 400.

use super::mobile::{HttpServer, TestKey, keys, serve, unix_now, verify_jwt};
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use notification_worker::config::Environment;
use notification_worker::config::mobile::{RawMobile, parse_fcm};
use notification_worker::delivery::fcm::{FcmMessenger, FcmSettings};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const PROJECT: &str = "exobook-test";
pub const CLIENT_EMAIL: &str = "notifier@exobook-test.iam.gserviceaccount.com";
const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// A device token the server accepts messages for.
pub const DEVICE: &str = "fcm-device-token:APA91b_test-1";

/// The contract server's state.
pub struct Google {
    public_key: Vec<u8>,
    token_uri: Mutex<String>,
    /// `expires_in` of the tokens it issues.
    expires_in: u64,
    pub token_requests: AtomicUsize,
    /// Issued access tokens and when each stops being accepted.
    pub tokens: Mutex<HashMap<String, Instant>>,
    /// Messages accepted, as sent.
    pub messages: Mutex<Vec<serde_json::Value>>,
    /// Device tokens FCM no longer knows.
    pub unregistered: Mutex<HashSet<String>>,
    /// While set: every send answers 429 with this `Retry-After`.
    pub busy: Mutex<Option<u64>>,
}

fn refuse(problem: impl Into<String>) -> Response {
    let problem = problem.into();
    let body =
        serde_json::json!({ "error": { "code": 400, "status": "INVALID_ARGUMENT", "message": problem } });
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

impl Google {
    /// A contract server for the account whose public key is `public_key`, issuing tokens
    /// that live `expires_in` seconds; it serves until the returned handle is stopped or
    /// dropped.
    pub async fn start(public_key: Vec<u8>, expires_in: u64) -> (Arc<Google>, HttpServer) {
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
        let server = serve(axum::Router::new().fallback(move |method, uri, headers, body| {
            Arc::clone(&state).handle(method, uri, headers, body)
        }))
        .await;
        *google.token_uri.lock().unwrap() = format!("{}/token", server.url);
        (google, server)
    }

    pub fn token_requests(&self) -> usize {
        self.token_requests.load(Ordering::SeqCst)
    }

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

/// A service account key file for `key` in `dir`, as Google hands one out.
pub fn write_account(dir: &Path, key: &TestKey, token_uri: &str) -> PathBuf {
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

/// A messenger built as the worker builds it: from a key file, through the settings, for
/// the server at `base`.
pub fn messenger(dir: &Path, key: &TestKey, base: &str) -> FcmMessenger {
    let token_uri = format!("{base}/token");
    let raw = RawMobile {
        fcm_credentials_file: Some(write_account(dir, key, &token_uri).to_str().unwrap().into()),
        fcm_base_url: base.to_owned(),
        ..RawMobile::default()
    };
    let settings: FcmSettings = parse_fcm(&raw, Environment::Development).unwrap().unwrap();
    FcmMessenger::new(settings).unwrap()
}
