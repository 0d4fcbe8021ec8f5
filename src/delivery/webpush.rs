//! Channel `webpush`: one browser subscription, one push (RFC 8030), its payload encrypted
//! for that browser (RFC 8291, `aes128gcm`) and signed by this sender (VAPID, RFC 8292).
//! The `web-push` crate encrypts and signs; the request goes out through reqwest, with the
//! timeouts and the failure classification every HTTP channel here has.
//!
//! - `TTL`: 24 h. A browser that stays offline longer misses the push; its feed still has
//!   the notification.
//! - `Urgency`: `high` for replies and mentions (someone is waiting for an answer), `normal`
//!   for likes, follows and digests.
//! - `Topic`: derived from the notification id, so a resend (after an answer lost on the
//!   way) replaces the first copy while it is still queued instead of showing twice.
//! - Answers: 2xx delivered; 404 and 410 the subscription is gone (the directory drops it);
//!   429 and 5xx retried (honouring `Retry-After`); 413 and other 4xx permanent.

mod payload;
mod vapid;

pub use payload::MAX_PAYLOAD_BYTES;
pub use vapid::{VapidKey, VapidSubject};

use super::channel::{HttpAnswer, SendError, classify_http};
use super::messenger::{Address, Content, Messenger};
use crate::recipients::{Channel, PushKind, PushTarget, Recipient, WebPushKeys};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::time::Duration;
use web_push::{
    ContentEncoding, PartialVapidSignatureBuilder, SubscriptionInfo, Urgency, VapidSignatureBuilder,
    WebPushMessageBuilder,
};

/// How long a push service keeps a push for a browser that is offline.
pub const TTL: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Debug, Clone)]
pub struct WebPushSettings {
    /// `WEBPUSH_VAPID_PRIVATE_KEY_FILE`, read and checked at start.
    pub key: VapidKey,
    /// `WEBPUSH_SUBJECT`.
    pub subject: VapidSubject,
    /// How long a push service has to answer.
    pub timeout: Duration,
}

impl WebPushSettings {
    /// What the application gives browsers as `applicationServerKey` when they subscribe
    /// (base64url). Subscriptions made with another key are refused by push services.
    pub fn vapid_public_key(&self) -> &str {
        self.key.public_key()
    }
}

pub struct WebPushMessenger {
    signer: PartialVapidSignatureBuilder,
    subject: VapidSubject,
    client: reqwest::Client,
}

impl WebPushMessenger {
    pub fn new(settings: &WebPushSettings) -> anyhow::Result<WebPushMessenger> {
        let signer = VapidSignatureBuilder::from_base64_no_sub(&settings.key.private_base64url())
            .map_err(|_| anyhow::anyhow!("the VAPID key cannot sign (not a P-256 private key)"))?;
        crate::input::install_tls_provider();
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
            // A push service answers where it is asked; a redirect is not followed with the
            // subscription's payload.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("notification-worker/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(WebPushMessenger {
            signer,
            subject: settings.subject.clone(),
            client,
        })
    }

    /// Encrypts `body` for the subscription, signs, and POSTs it to the endpoint.
    async fn push(
        &self,
        endpoint: &str,
        keys: &WebPushKeys,
        body: &[u8],
        urgency: Urgency,
        topic: Option<String>,
    ) -> Result<(), SendError> {
        let origin = url::Url::parse(endpoint)
            .map(|url| url.origin().ascii_serialization())
            .map_err(|_| SendError::permanent("the subscription's endpoint is not a URL"))?;
        let place = origin.clone();
        // The crate decodes keys without padding; browsers may send them padded.
        let info = SubscriptionInfo::new(
            endpoint,
            keys.p256dh().trim_end_matches('='),
            keys.auth().trim_end_matches('='),
        );
        let mut claims = self.signer.clone().add_sub_info(&info);
        claims.add_claim("sub", self.subject.as_str());
        // The audience is the endpoint's origin, port included (the crate would drop it).
        claims.add_claim("aud", origin);
        let signature = claims
            .build()
            .map_err(|error| SendError::permanent(format!("cannot sign the VAPID claims: {error}")))?;
        let mut message = WebPushMessageBuilder::new(&info);
        message.set_payload(ContentEncoding::Aes128Gcm, body);
        message.set_ttl(TTL.as_secs() as u32);
        message.set_urgency(urgency);
        if let Some(topic) = topic {
            message.set_topic(topic);
        }
        message.set_vapid_signature(signature);
        let message = message.build().map_err(|error| {
            SendError::permanent(format!("cannot encrypt for this subscription: {error}"))
        })?;
        let Some(payload) = message.payload else {
            return Err(SendError::permanent("the push has no payload"));
        };
        let mut request = self
            .client
            .post(endpoint)
            .header("TTL", message.ttl.to_string())
            .header("Content-Encoding", payload.content_encoding.to_str())
            .header("Content-Type", "application/octet-stream");
        if let Some(urgency) = message.urgency {
            request = request.header("Urgency", urgency.to_string());
        }
        if let Some(topic) = message.topic {
            request = request.header("Topic", topic);
        }
        // `Authorization: vapid t=..., k=...`.
        for (name, value) in payload.crypto_headers {
            request = request.header(name, value);
        }
        let response = request
            .body(payload.content)
            .send()
            .await
            .map_err(|error| SendError::transient(format!("POST to {place}: {}", describe(error))))?;
        let HttpAnswer {
            status,
            retry_after,
            body: text,
        } = HttpAnswer::read(response).await;
        answer(status, retry_after, &text).map_err(|error| SendError {
            message: format!("{place}: {}", error.message),
            ..error
        })
    }
}

/// What a push service's answer means. Only here do 404 and 410 differ from other 4xx:
/// RFC 8030 section 7.3 says the subscription expired or was removed.
pub fn answer(status: u16, retry_after: Option<Duration>, body: &str) -> Result<(), SendError> {
    match status {
        404 | 410 => Err(SendError::gone(format!(
            "HTTP {status}: the subscription no longer exists"
        ))),
        _ => classify_http(status, retry_after, body),
    }
}

/// A reqwest error in one line with its causes, without the URL: an endpoint is the
/// subscription's capability and does not belong in logs or dead letters.
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = if error.is_timeout() {
        "timed out".to_owned()
    } else {
        error.to_string()
    };
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// Replies and mentions are waited for; the rest can wait for the device's next wake-up.
fn urgency(notice: &super::job::Notice) -> Urgency {
    match super::wording::event_type(notice)
        .as_ref()
        .map(|name| name.as_str())
    {
        Some("reply.post" | "reply.comment" | "mention") => Urgency::High,
        _ => Urgency::Normal,
    }
}

/// A push service keeps one queued push per topic (at most 32 base64url characters): the
/// first 24 bytes of the SHA-256 of the notification id.
fn topic(notification_id: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, notification_id.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest.as_ref()[..24])
}

impl Messenger for WebPushMessenger {
    fn channel(&self) -> Channel {
        Channel::Webpush
    }

    async fn send(
        &self,
        _recipient: &Recipient,
        address: Address<'_>,
        content: Content<'_>,
    ) -> Result<(), SendError> {
        let (endpoint, keys) = subscription(address)?;
        let (body, urgency, topic) = match content {
            Content::One(notice) => (
                payload::one(notice),
                urgency(notice),
                Some(topic(&notice.item.id)),
            ),
            Content::Digest(notices) => (payload::digest(notices), Urgency::Normal, None),
        };
        let body = body.ok_or_else(|| {
            SendError::permanent(format!("the payload does not fit in {MAX_PAYLOAD_BYTES} bytes"))
        })?;
        self.push(endpoint, keys, &body, urgency, topic).await
    }
}

/// The endpoint and keys of a Web Push subscription; any other address is a mistake of
/// the caller, refused for good.
fn subscription(address: Address<'_>) -> Result<(&str, &WebPushKeys), SendError> {
    let target: &PushTarget = match address {
        Address::Device(target) if target.kind() == PushKind::Webpush => target,
        Address::Device(target) => {
            return Err(SendError::permanent(format!(
                "channel webpush cannot send to a {} device",
                target.kind().as_str()
            )));
        }
        Address::Email(_) => {
            return Err(SendError::permanent(
                "channel webpush cannot send to an email address",
            ));
        }
    };
    let keys = target
        .webpush_keys()
        .ok_or_else(|| SendError::permanent("the subscription has no keys"))?;
    Ok((target.token(), keys))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::Failure;

    #[test]
    fn gone_subscriptions_are_told_apart_from_other_refusals() {
        assert!(answer(201, None, "").is_ok());
        assert_eq!(answer(404, None, "").unwrap_err().kind, Failure::Gone);
        assert_eq!(answer(410, None, "").unwrap_err().kind, Failure::Gone);
        for status in [400, 401, 403, 413] {
            assert_eq!(answer(status, None, "no").unwrap_err().kind, Failure::Permanent);
        }
        let busy = answer(429, Some(Duration::from_secs(9)), "").unwrap_err();
        assert_eq!(
            busy.kind,
            Failure::Transient {
                retry_after: Some(Duration::from_secs(9))
            }
        );
        assert!(matches!(
            answer(503, None, "").unwrap_err().kind,
            Failure::Transient { .. }
        ));
    }

    #[test]
    fn topics_are_short_base64url_and_stable() {
        let first = topic("a-notification-id-that-is-longer-than-32-bytes");
        assert_eq!(first.len(), 32);
        assert!(
            first
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(first, topic("a-notification-id-that-is-longer-than-32-bytes"));
        assert_ne!(first, topic("another"));
    }
}
