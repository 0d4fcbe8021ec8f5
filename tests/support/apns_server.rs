//! A strict APNs server, for `tests/apns.rs` and `tests/messenger_contract.rs`. No local
//! APNs server exists, so this one holds to Apple's documented contract: HTTP/2 only (h2c
//! with prior knowledge here, TLS with ALPN `h2` in production), a provider token verified
//! as ES256 with the key's public half (derived by openssl, not by the worker) with its
//! `kid` and `iss`, each `apns-*` header, and the payload field by field; anything else is
//! refused with 400 and a reason, as APNs does.

use super::mobile::{HttpServer, TestKey, keys, serve, unix_now, verify_jwt};
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri, Version};
use axum::response::{IntoResponse, Response};
use notification_worker::config::Environment;
use notification_worker::config::mobile::{RawMobile, parse_apns};
use notification_worker::delivery::apns::ApnsMessenger;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

pub const KEY_ID: &str = "ABC123DEFG";
pub const TEAM_ID: &str = "TEAM123456";
pub const TOPIC: &str = "com.exobook.app";
/// A device token the server accepts notifications for.
pub const DEVICE: &str = "5f1d3e9a0b7c4d2e8f6a1b3c5d7e9f0a2b4c6d8e0f1a3b5c7d9e1f3a5b7c9d1e";

/// A request APNs accepted.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub device: String,
    pub collapse_id: Option<String>,
    pub provider_token: String,
    pub payload: serde_json::Value,
}

#[derive(Default)]
pub struct Apple {
    public_key: Vec<u8>,
    pub accepted: Mutex<Vec<Accepted>>,
    /// Provider tokens it now calls expired.
    pub expired: Mutex<HashSet<String>>,
    pub unregistered: Mutex<HashSet<String>>,
    /// Tokens of the other environment (a development build's token sent to production).
    pub other_environment: Mutex<HashSet<String>>,
    /// While set: every send answers 429 with this `Retry-After`.
    pub busy: Mutex<Option<u64>>,
}

fn refuse(status: StatusCode, reason: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "reason": reason }))).into_response()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

impl Apple {
    /// A contract server trusting the key whose public half is `public_key`; it serves
    /// until the returned handle is stopped or dropped.
    pub async fn start(public_key: Vec<u8>) -> (Arc<Apple>, HttpServer) {
        let apple = Arc::new(Apple {
            public_key,
            ..Apple::default()
        });
        let state = Arc::clone(&apple);
        let server = serve(
            axum::Router::new().fallback(move |method, version, uri, headers, body| {
                Arc::clone(&state).handle(method, version, uri, headers, body)
            }),
        )
        .await;
        (apple, server)
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

/// The APNs settings, as the worker reads them, for `key` and the server at `base`.
pub fn raw(key: &TestKey, base: &str) -> RawMobile {
    RawMobile {
        apns_key_file: Some(key.path.to_str().unwrap().into()),
        apns_key_id: Some(KEY_ID.into()),
        apns_team_id: Some(TEAM_ID.into()),
        apns_topic: Some(TOPIC.into()),
        apns_base_url: Some(base.into()),
        ..RawMobile::default()
    }
}

/// A messenger built as the worker builds it, through the settings, for the server at
/// `base`.
pub fn messenger(key: &TestKey, base: &str) -> ApnsMessenger {
    let settings = parse_apns(&raw(key, base), Environment::Development)
        .unwrap()
        .unwrap();
    ApnsMessenger::new(settings).unwrap()
}
