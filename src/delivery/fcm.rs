//! Channel `fcm`: Firebase Cloud Messaging's HTTP v1 API. One message is one
//! `POST {FCM_BASE_URL}/v1/projects/{project_id}/messages:send`, authorised by an OAuth2
//! access token that the service account obtains with the JWT-bearer flow (RFC 7523) from
//! its `token_uri`, and that is reused until shortly before it expires.

use super::alert::Alert;
use super::channel::{self, SendError};
use super::jwt::JwtKey;
use super::messenger::{Address, Content, Messenger};
use super::pusher::error_chain;
use crate::config::Secret;
use crate::recipients::{Channel, PushKind, Recipient};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The OAuth2 scope that allows sending FCM messages.
pub const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// RFC 7523's grant type: "here is a JWT I signed, give me an access token".
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
pub const DEFAULT_BASE_URL: &str = "https://fcm.googleapis.com";
/// How long the signed assertion is valid (Google's maximum).
const ASSERTION_LIFETIME: Duration = Duration::from_secs(3600);
/// An access token is renewed this long before it expires (or halfway through its life,
/// when it is shorter), so that no send goes out with a token about to lapse.
const RENEW_MARGIN: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, Clone)]
pub struct FcmSettings {
    pub account: ServiceAccount,
    /// `FCM_BASE_URL`, default [`DEFAULT_BASE_URL`].
    pub base_url: url::Url,
    pub timeout: Duration,
}

/// The parts of a Google service-account key file that sending needs.
#[derive(Debug, Clone)]
pub struct ServiceAccount {
    pub project_id: String,
    pub client_email: String,
    /// The key's id, given to Google as the JWT's `kid` when the file has it.
    pub private_key_id: Option<String>,
    pub token_uri: url::Url,
    pub key: Arc<JwtKey>,
}

impl ServiceAccount {
    /// Reads a key file's JSON. Problems name the field, never quote the key.
    pub fn parse(json: &str) -> Result<ServiceAccount, String> {
        let file: serde_json::Value =
            serde_json::from_str(json).map_err(|_| "is not JSON (expected a service account's key file)")?;
        let field = |name: &str| -> Result<&str, String> {
            file.get(name)
                .and_then(serde_json::Value::as_str)
                .map(str::trim)
                .filter(|value| !value.is_empty())
                .ok_or_else(|| format!("has no {name} (expected a service account's key file)"))
        };
        if let Some(kind) = file.get("type")
            && kind != "service_account"
        {
            return Err("is not a service account's key file (its type is not service_account)".into());
        }
        let project_id = field("project_id")?;
        // Placed in the request path: letters, digits and - (and . : of domain-scoped ids).
        if !project_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:".contains(&b))
        {
            return Err("has a project_id that is not a Google Cloud project id".into());
        }
        let client_email = field("client_email")?;
        if !client_email.contains('@') {
            return Err("has a client_email that is not an email address".into());
        }
        let token_uri = field("token_uri")?;
        let token_uri = url::Url::parse(token_uri)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
            .ok_or("has a token_uri that is not an http(s) URL")?;
        let key = JwtKey::rs256_from_pem(field("private_key")?)
            .map_err(|problem| format!("has a private_key that {problem}"))?;
        Ok(ServiceAccount {
            project_id: project_id.to_owned(),
            client_email: client_email.to_owned(),
            private_key_id: file
                .get("private_key_id")
                .and_then(serde_json::Value::as_str)
                .filter(|id| !id.is_empty())
                .map(str::to_owned),
            token_uri,
            key: Arc::new(key),
        })
    }
}

/// An access token and when to stop using it.
struct AccessToken {
    value: Secret,
    renew_at: Instant,
}

pub struct FcmMessenger {
    settings: FcmSettings,
    client: reqwest::Client,
    send_url: url::Url,
    /// An async mutex held across the token request: under concurrent sends, one asks for
    /// a token and the others wait for it, instead of all asking at once.
    token: tokio::sync::Mutex<Option<AccessToken>>,
}

impl FcmMessenger {
    pub fn new(settings: FcmSettings) -> anyhow::Result<FcmMessenger> {
        crate::input::install_tls_provider();
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .user_agent(concat!("notification-worker/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let mut send_url = settings.base_url.clone();
        // Keep a path prefix given in FCM_BASE_URL (a proxy in front of the API).
        let path = format!(
            "{}/v1/projects/{}/messages:send",
            send_url.path().trim_end_matches('/'),
            settings.account.project_id
        );
        send_url.set_path(&path);
        Ok(FcmMessenger {
            settings,
            client,
            send_url,
            token: tokio::sync::Mutex::new(None),
        })
    }

    /// The access token to send with, and whether it was obtained just now.
    async fn access_token(&self) -> Result<(Secret, bool), SendError> {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref()
            && Instant::now() < token.renew_at
        {
            return Ok((token.value.clone(), false));
        }
        let token = self.request_token().await?;
        let value = token.value.clone();
        *cached = Some(token);
        Ok((value, true))
    }

    /// Forgets `used` after FCM refused it (not a newer one another send obtained since).
    async fn forget_token(&self, used: &Secret) {
        let mut cached = self.token.lock().await;
        if cached.as_ref().is_some_and(|token| &token.value == used) {
            *cached = None;
        }
    }

    /// The JWT-bearer flow: a signed assertion for the messaging scope, exchanged at the
    /// service account's `token_uri`.
    async fn request_token(&self) -> Result<AccessToken, SendError> {
        let account = &self.settings.account;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let claims = serde_json::json!({
            "iss": account.client_email,
            "scope": SCOPE,
            "aud": account.token_uri.as_str(),
            "iat": now,
            "exp": now + ASSERTION_LIFETIME.as_secs(),
        });
        let assertion = account
            .key
            .sign(account.private_key_id.as_deref(), &claims)
            .map_err(SendError::permanent)?;
        let asked = Instant::now();
        let response = self
            .client
            .post(account.token_uri.clone())
            .form(&[("grant_type", GRANT_TYPE), ("assertion", assertion.as_str())])
            .send()
            .await
            .map_err(|error| {
                SendError::transient(format!(
                    "cannot reach the OAuth2 token endpoint: {}",
                    error_chain(&error)
                ))
            })?;
        let channel::HttpAnswer {
            status,
            retry_after,
            body,
        } = channel::HttpAnswer::read_all(response).await;
        if !(200..300).contains(&status) {
            // Google's refusals (`invalid_grant`, ...) carry no secret.
            return Err(match channel::classify_http(status, retry_after, &body) {
                Err(error) => SendError {
                    message: format!(
                        "the OAuth2 token endpoint refused the service account: {}",
                        error.message
                    ),
                    ..error
                },
                Ok(()) => SendError::permanent(format!("the OAuth2 token endpoint answered HTTP {status}")),
            });
        }
        #[derive(serde::Deserialize)]
        struct Granted {
            access_token: String,
            expires_in: u64,
        }
        // Not quoted in the error: a malformed answer could still hold a token.
        let granted: Granted = serde_json::from_str(&body).map_err(|_| {
            SendError::transient("the OAuth2 token endpoint answered without access_token and expires_in")
        })?;
        let lifetime = Duration::from_secs(granted.expires_in);
        Ok(AccessToken {
            value: Secret::new(granted.access_token),
            renew_at: asked + lifetime - RENEW_MARGIN.min(lifetime / 2),
        })
    }
}

/// The HTTP v1 request body for `content`, to the device `token`. `data` values are
/// strings: FCM refuses anything else there.
pub fn message(token: &str, content: Content<'_>) -> serde_json::Value {
    let alert = Alert::of(content);
    let mut data = serde_json::json!({ "type": alert.kind });
    if let Some(about) = &alert.about {
        data["resourceId"] = about.resource_id.as_str().into();
        data["notificationId"] = about.notification_id.as_str().into();
    }
    serde_json::json!({
        "message": {
            "token": token,
            "notification": { "title": alert.title, "body": alert.body },
            "data": data,
        }
    })
}

/// What FCM's answer means for a message sent with a token from the cache (`fresh` false)
/// or obtained for this send.
pub fn classify(
    status: u16,
    retry_after: Option<Duration>,
    body: &str,
    fresh: bool,
) -> Result<(), SendError> {
    let unregistered = || {
        serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|answer| answer["error"]["details"].as_array().cloned())
            .is_some_and(|details| details.iter().any(|detail| detail["errorCode"] == "UNREGISTERED"))
    };
    match status {
        200..=299 => Ok(()),
        // The device uninstalled the app or the token expired: drop it.
        404 => Err(SendError::gone(format!(
            "FCM: the token is not registered (HTTP 404): {}",
            excerpt(body)
        ))),
        _ if unregistered() => Err(SendError::gone(format!("FCM: UNREGISTERED (HTTP {status})"))),
        // A cached token revoked or expired early: the next attempt asks for a new one.
        401 if !fresh => Err(SendError::transient(
            "FCM refused the cached access token (HTTP 401)",
        )),
        401 => Err(SendError::permanent(format!(
            "FCM refused a new access token (HTTP 401): {}",
            excerpt(body)
        ))),
        _ => channel::classify_http(status, retry_after, body).map_err(|error| SendError {
            message: format!("FCM: {}", error.message),
            ..error
        }),
    }
}

fn excerpt(body: &str) -> String {
    body.chars().take(300).collect::<String>().trim().to_owned()
}

impl Messenger for FcmMessenger {
    fn channel(&self) -> Channel {
        Channel::Fcm
    }

    async fn send(
        &self,
        _recipient: &Recipient,
        address: Address<'_>,
        content: Content<'_>,
    ) -> Result<(), SendError> {
        let device = match address {
            Address::Device(target) if target.kind() == PushKind::Fcm => target.token(),
            _ => {
                return Err(SendError::permanent(
                    "channel fcm sends to FCM device tokens only",
                ));
            }
        };
        let (token, fresh) = self.access_token().await?;
        let response = self
            .client
            .post(self.send_url.clone())
            .bearer_auth(token.expose())
            .json(&message(device, content))
            .send()
            .await
            .map_err(|error| SendError::transient(format!("cannot reach FCM: {}", error_chain(&error))))?;
        let channel::HttpAnswer {
            status,
            retry_after,
            body,
        } = channel::HttpAnswer::read(response).await;
        if status == 401 {
            self.forget_token(&token).await;
        }
        classify(status, retry_after, &body, fresh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::Failure;

    #[test]
    fn answers_sort_into_delivered_gone_retry_and_refused() {
        assert!(classify(200, None, "{}", false).is_ok());
        let unregistered = r#"{"error":{"code":404,"status":"NOT_FOUND","details":[
            {"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}"#;
        let kind = |status, body: &str, fresh| {
            classify(status, Some(Duration::from_secs(4)), body, fresh)
                .unwrap_err()
                .kind
        };
        assert_eq!(kind(404, unregistered, false), Failure::Gone);
        assert_eq!(kind(404, "", false), Failure::Gone);
        assert_eq!(
            kind(400, &unregistered.replace("404", "400"), false),
            Failure::Gone
        );
        let retry = Failure::Transient {
            retry_after: Some(Duration::from_secs(4)),
        };
        assert_eq!(kind(429, "", false), retry);
        assert_eq!(kind(503, "", true), retry);
        assert_eq!(kind(401, "", false), Failure::Transient { retry_after: None });
        assert_eq!(kind(401, "", true), Failure::Permanent);
        assert_eq!(
            kind(400, r#"{"error":{"status":"INVALID_ARGUMENT"}}"#, false),
            Failure::Permanent
        );
        assert_eq!(kind(403, "", false), Failure::Permanent);
    }
}
