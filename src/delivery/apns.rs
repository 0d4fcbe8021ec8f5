//! Channel `apns`: Apple Push Notification service, HTTP/2 `POST /3/device/{token}` with
//! token-based authentication: an ES256 JWT signed with the team's `.p8` key, reused for
//! many requests and renewed before it is an hour old (Apple refuses older ones, and
//! refuses renewing more often than every 20 minutes).

use super::alert::Alert;
use super::channel::{self, SendError};
use super::jwt::JwtKey;
use super::messenger::{Address, Content, Messenger};
use super::pusher::error_chain;
use crate::config::Secret;
use crate::recipients::{Channel, PushKind, Recipient};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const PRODUCTION_BASE_URL: &str = "https://api.push.apple.com";
pub const SANDBOX_BASE_URL: &str = "https://api.sandbox.push.apple.com";
/// A provider token is replaced after this long: under Apple's hour, over its 20 minutes.
pub const TOKEN_RENEWAL: Duration = Duration::from_secs(50 * 60);
/// APNs refuses a longer `apns-collapse-id`.
pub const MAX_COLLAPSE_ID_BYTES: usize = 64;

#[derive(Debug, Clone)]
pub struct ApnsSettings {
    /// `APNS_KEY_FILE`: the `.p8` key.
    pub key: Arc<JwtKey>,
    /// `APNS_KEY_ID`: the key's id, the JWT's `kid`.
    pub key_id: String,
    /// `APNS_TEAM_ID`: the JWT's `iss`.
    pub team_id: String,
    /// `APNS_TOPIC`: the app's bundle id.
    pub topic: String,
    /// `APNS_BASE_URL`, default [`PRODUCTION_BASE_URL`] in production and
    /// [`SANDBOX_BASE_URL`] in development.
    pub base_url: url::Url,
    pub timeout: Duration,
    /// When a provider token is replaced: [`TOKEN_RENEWAL`] (shorter in tests).
    pub token_renewal: Duration,
}

/// A signed provider token and when it was signed.
struct ProviderToken {
    jwt: Secret,
    signed: Instant,
}

pub struct ApnsMessenger {
    settings: ApnsSettings,
    client: reqwest::Client,
    /// A std mutex: signing is quick and never awaits.
    token: Mutex<Option<ProviderToken>>,
}

impl ApnsMessenger {
    pub fn new(settings: ApnsSettings) -> anyhow::Result<ApnsMessenger> {
        crate::input::install_tls_provider();
        // APNs speaks only HTTP/2: over https this offers only `h2` in ALPN, over http (a
        // local test server) it starts with the HTTP/2 preface (h2c, prior knowledge).
        let client = reqwest::Client::builder()
            .http2_prior_knowledge()
            .timeout(settings.timeout)
            .user_agent(concat!("notification-worker/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(ApnsMessenger {
            settings,
            client,
            token: Mutex::new(None),
        })
    }

    /// The provider token to send with: the current one, or a new one when it is
    /// `token_renewal` old.
    fn provider_token(&self) -> Result<Secret, SendError> {
        let mut current = self
            .token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(token) = current.as_ref()
            && token.signed.elapsed() < self.settings.token_renewal
        {
            return Ok(token.jwt.clone());
        }
        let iat = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let claims = serde_json::json!({ "iss": self.settings.team_id, "iat": iat });
        let jwt = Secret::new(
            self.settings
                .key
                .sign(Some(&self.settings.key_id), &claims)
                .map_err(SendError::permanent)?,
        );
        *current = Some(ProviderToken {
            jwt: jwt.clone(),
            signed: Instant::now(),
        });
        Ok(jwt)
    }

    /// Drops `used` after APNs called it expired (not a newer one signed since).
    fn forget_token(&self, used: &Secret) {
        let mut current = self
            .token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.as_ref().is_some_and(|token| &token.jwt == used) {
            *current = None;
        }
    }

    fn device_url(&self, device: &str) -> url::Url {
        let mut url = self.settings.base_url.clone();
        let path = format!("{}/3/device/{device}", url.path().trim_end_matches('/'));
        url.set_path(&path);
        url
    }
}

/// The request body: the alert Apple shows, and beside `aps` the keys the app routes on.
pub fn payload(content: Content<'_>) -> serde_json::Value {
    let alert = Alert::of(content);
    let mut payload = serde_json::json!({
        "aps": { "alert": { "title": alert.title, "body": alert.body } },
        "type": alert.kind,
    });
    if let Some(about) = &alert.about {
        payload["resourceId"] = about.resource_id.as_str().into();
        payload["notificationId"] = about.notification_id.as_str().into();
    }
    payload
}

/// `apns-collapse-id`: the notification id (a UUID, well under Apple's 64 bytes; the
/// notification key would not be), so a resend replaces rather than repeats. None for a
/// digest.
pub fn collapse_id(content: Content<'_>) -> Option<&str> {
    match content {
        Content::One(notice) if notice.item.id.len() <= MAX_COLLAPSE_ID_BYTES => Some(&notice.item.id),
        _ => None,
    }
}

/// APNs' `reason` for a refusal, from its JSON body.
fn reason(body: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()?
        .get("reason")?
        .as_str()
        .map(str::to_owned)
}

/// What APNs' answer means. Only 410 `Unregistered` removes the device: `BadDeviceToken`
/// is also what a sandbox token sent to production (or the reverse) gets, a configuration
/// mistake that must not empty the directory.
pub fn classify(status: u16, retry_after: Option<Duration>, body: &str) -> Result<(), SendError> {
    let reason = reason(body);
    match (status, reason.as_deref()) {
        (200..=299, _) => Ok(()),
        (410, Some("Unregistered")) => Err(SendError::gone("APNs: Unregistered (HTTP 410)")),
        (400, Some("BadDeviceToken")) => Err(SendError::permanent(
            "APNs: BadDeviceToken (HTTP 400): an invalid token, or one from the other APNs environment (sandbox or production); the device is kept",
        )),
        (403, Some("ExpiredProviderToken")) => Err(SendError::transient(
            "APNs: ExpiredProviderToken (HTTP 403); a new provider token is signed for the next attempt",
        )),
        _ => channel::classify_http(status, retry_after, body).map_err(|error| SendError {
            message: format!("APNs: {}", error.message),
            ..error
        }),
    }
}

impl Messenger for ApnsMessenger {
    fn channel(&self) -> Channel {
        Channel::Apns
    }

    async fn send(
        &self,
        recipient: &Recipient,
        address: Address<'_>,
        content: Content<'_>,
    ) -> Result<(), SendError> {
        let device = match address {
            Address::Device(target) if target.kind() == PushKind::Apns => target.token(),
            _ => {
                return Err(SendError::permanent(
                    "channel apns sends to APNs device tokens only",
                ));
            }
        };
        let jwt = self.provider_token()?;
        let mut request = self
            .client
            .post(self.device_url(device))
            .header(reqwest::header::AUTHORIZATION, format!("bearer {}", jwt.expose()))
            .header("apns-topic", &self.settings.topic)
            .header("apns-push-type", "alert")
            .header("apns-priority", "10")
            .json(&payload(content));
        if let Some(id) = collapse_id(content) {
            request = request.header("apns-collapse-id", id);
        }
        let response = request
            .send()
            .await
            // Without the URL: it holds the device token.
            .map_err(|error| {
                SendError::transient(format!(
                    "cannot reach APNs: {}",
                    error_chain(&error.without_url())
                ))
            })?;
        let channel::HttpAnswer {
            status,
            retry_after,
            body,
        } = channel::HttpAnswer::read(response).await;
        let outcome = classify(status, retry_after, &body);
        match reason(&body).as_deref() {
            Some("ExpiredProviderToken") => self.forget_token(&jwt),
            Some("BadDeviceToken") => tracing::warn!(
                owner = %recipient.owner(),
                base_url = %self.settings.base_url,
                "APNs answered BadDeviceToken: the token is invalid or belongs to the other APNs environment (a development build's token sent to production, or the reverse); the device is kept"
            ),
            _ => {}
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::{Failure, Job};

    #[test]
    fn only_unregistered_removes_the_device() {
        let fail = |status, body: &str| {
            classify(status, Some(Duration::from_secs(2)), body)
                .unwrap_err()
                .kind
        };
        assert!(classify(200, None, "").is_ok());
        assert_eq!(
            fail(410, r#"{"reason":"Unregistered","timestamp":1}"#),
            Failure::Gone
        );
        assert_eq!(fail(410, r#"{"reason":"ExpiredToken"}"#), Failure::Permanent);
        assert_eq!(fail(400, r#"{"reason":"BadDeviceToken"}"#), Failure::Permanent);
        assert_eq!(
            fail(403, r#"{"reason":"ExpiredProviderToken"}"#),
            Failure::Transient { retry_after: None }
        );
        assert_eq!(
            fail(403, r#"{"reason":"InvalidProviderToken"}"#),
            Failure::Permanent
        );
        let retry = Failure::Transient {
            retry_after: Some(Duration::from_secs(2)),
        };
        assert_eq!(fail(429, r#"{"reason":"TooManyRequests"}"#), retry);
        assert_eq!(fail(503, r#"{"reason":"ServiceUnavailable"}"#), retry);
    }

    #[test]
    fn a_notification_collapses_on_its_id_and_a_digest_does_not() {
        let Job::Created(notice) = Job::sample("user-123") else {
            unreachable!()
        };
        assert_eq!(collapse_id(Content::One(&notice)), Some(notice.item.id.as_str()));
        assert_eq!(collapse_id(Content::Digest(std::slice::from_ref(&notice))), None);
        let body = payload(Content::One(&notice));
        assert_eq!(body["aps"]["alert"]["title"], "John Doe liked your post");
        assert_eq!(body["notificationId"], notice.item.id.as_str());
        let digest = payload(Content::Digest(std::slice::from_ref(&notice)));
        assert_eq!(digest["type"], "digest");
        assert!(digest.get("resourceId").is_none());
    }
}
