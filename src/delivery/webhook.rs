//! Channel `webhook`: a POST to `WEBHOOK_URL` signed as the Standard Webhooks specification
//! says (<https://www.standardwebhooks.com>): headers `webhook-id` (the job's message id,
//! which receivers use as their idempotency key), `webhook-timestamp` (unix seconds) and
//! `webhook-signature` (`v1,` + base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`, keyed with
//! the bytes the secret's base64 after `whsec_` decodes to).

use super::channel::{Channel, ChannelName, HttpAnswer, SendError, classify_http};
use super::job::Job;
use crate::config::Secret;
use base64::Engine;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub url: url::Url,
    /// `WEBHOOK_SECRET` as given (`whsec_` + base64).
    pub secret: Secret,
    /// `WEBHOOK_TIMEOUT`, default 5 s.
    pub timeout: Duration,
}

/// The signing key from a `whsec_` secret: the bytes its base64 decodes to (24 to 64).
pub fn signing_key(secret: &str) -> Option<Vec<u8>> {
    let encoded = secret.strip_prefix("whsec_")?;
    let key = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
    (24..=64).contains(&key.len()).then_some(key)
}

/// `v1,` + the signature of one message.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let mut context = ring::hmac::Context::with_key(&key);
    context.update(id.as_bytes());
    context.update(b".");
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    let tag = context.sign();
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
    )
}

/// The body a receiver gets.
pub fn payload(job: &Job, timestamp: time::OffsetDateTime) -> Vec<u8> {
    let body = serde_json::json!({
        "type": job.kind().webhook_type(),
        "timestamp": timestamp.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        "data": job.full_data(),
    });
    serde_json::to_vec(&body).expect("a payload serializes")
}

pub struct WebhookChannel {
    url: url::Url,
    key: Vec<u8>,
    client: reqwest::Client,
}

impl WebhookChannel {
    pub fn new(settings: WebhookSettings) -> anyhow::Result<WebhookChannel> {
        let key = signing_key(settings.secret.expose())
            .ok_or_else(|| anyhow::anyhow!("WEBHOOK_SECRET is not whsec_ followed by base64"))?;
        crate::input::install_tls_provider();
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .user_agent(concat!("notification-worker/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(WebhookChannel {
            url: settings.url,
            key,
            client,
        })
    }

    async fn post(&self, job: &Job) -> Result<(), SendError> {
        let now = time::OffsetDateTime::now_utc();
        let body = payload(job, now);
        let id = job.message_id();
        let timestamp = now.unix_timestamp();
        let signature = sign(&self.key, &id, timestamp, &body);
        let response = self
            .client
            .post(self.url.clone())
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|error| SendError::transient(format!("POST {}: {}", self.url, describe(&error))))?;
        let answer = HttpAnswer::read(response).await;
        classify_http(answer.status, answer.retry_after, &answer.body)
    }
}

/// A reqwest error in one line, with its cause (reqwest's own message hides it).
fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "timed out".to_owned()
    } else {
        error.to_string()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

impl Channel for WebhookChannel {
    fn name(&self) -> ChannelName {
        ChannelName::Webhook
    }

    async fn send(&self, jobs: &[Job]) -> Vec<Result<(), SendError>> {
        let mut results = Vec::with_capacity(jobs.len());
        for job in jobs {
            results.push(self.post(job).await);
        }
        results
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example in the Standard Webhooks specification (spec/standard-webhooks.md,
    /// "Signature scheme").
    #[test]
    fn signs_the_specifications_example() {
        let key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let signature = sign(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn secrets_must_be_whsec_base64() {
        assert!(signing_key("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_none());
        assert!(signing_key("whsec_not base64!").is_none());
        assert!(signing_key("whsec_c2hvcnQ=").is_none());
    }

    #[test]
    fn the_payload_names_the_event_and_carries_every_attribute() {
        let job = Job::sample("user-123");
        let body: serde_json::Value =
            serde_json::from_slice(&payload(&job, time::OffsetDateTime::UNIX_EPOCH)).unwrap();
        assert_eq!(body["type"], "notification.created");
        assert_eq!(body["timestamp"], "1970-01-01T00:00:00Z");
        assert_eq!(body["data"]["owner"], "user-123");
        assert!(body["data"]["action_key"].is_string() && body["data"]["version"].is_string());
    }
}
