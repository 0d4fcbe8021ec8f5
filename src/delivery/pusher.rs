//! Channel `pusher`: Pusher Channels' HTTP API (or a self-hosted Pusher-protocol server such
//! as sockudo or soketi). One job is one `POST /apps/{app_id}/events`; several go in one
//! `POST /apps/{app_id}/batch_events` (Pusher takes up to 10 per batch), each request signed
//! as Pusher's REST API authentication specifies.

use super::channel::{self, Channel, ChannelName, SendError};
use super::job::Job;
use super::template::OwnerTemplate;
use crate::config::Secret;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Pusher refuses an event whose `data` is over 10 KB (its documented limit on the public
/// service; self-hosted servers default to the same).
pub const MAX_DATA_BYTES: usize = 10 * 1024;

/// Pusher's limit on events in one `batch_events` call.
const MAX_BATCH: usize = 10;

#[derive(Debug, Clone)]
pub struct PusherSettings {
    pub app_id: String,
    pub key: String,
    pub secret: Secret,
    /// `https://api-{cluster}.pusher.com` from `PUSHER_CLUSTER`, or `PUSHER_HOST`.
    pub base_url: url::Url,
    /// `PUSHER_CHANNEL`, default `user-{owner}-notifications`.
    pub channel: OwnerTemplate,
    pub timeout: Duration,
}

/// The query string of a signed request: `auth_key`, `auth_timestamp`, `auth_version`,
/// `body_md5` (already in sorted order, which the signature needs) and `auth_signature`,
/// the hex HMAC-SHA256 of `"{METHOD}\n{path}\n{sorted query}"` keyed with the app secret.
///
/// Pure (the timestamp is given) so that it can be checked against Pusher's own vectors.
pub fn signed_query(
    key: &str,
    secret: &str,
    method: &str,
    path: &str,
    body: &[u8],
    timestamp: u64,
) -> String {
    let body_md5 = hex::encode(md5::compute(body).0);
    let query = format!("auth_key={key}&auth_timestamp={timestamp}&auth_version=1.0&body_md5={body_md5}");
    let signing_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let signature = ring::hmac::sign(&signing_key, format!("{method}\n{path}\n{query}").as_bytes());
    format!("{query}&auth_signature={}", hex::encode(signature.as_ref()))
}

/// What Pusher's answer means. As for every HTTP channel ([`channel::classify_http`]),
/// except one 403: Pusher answers 403 both for a disabled app (for good) and for an app over
/// its message quota, which passes (the quota resets daily, or the plan is raised), so that
/// one is worth retrying rather than dead-lettering every notification until then.
pub fn classify(status: u16, retry_after: Option<Duration>, body: &str) -> Result<(), SendError> {
    let over_quota = status == 403 && body.to_ascii_lowercase().contains("quota");
    match channel::classify_http(status, retry_after, body) {
        Err(error) if over_quota => Err(SendError::transient(error.message).retry_after(retry_after)),
        other => other,
    }
}

pub struct PusherChannel {
    settings: PusherSettings,
    client: reqwest::Client,
}

impl PusherChannel {
    pub fn new(settings: PusherSettings) -> anyhow::Result<PusherChannel> {
        // reqwest is built without a rustls provider of its own; idempotent.
        crate::input::install_tls_provider();
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .user_agent(concat!("notification-worker/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(PusherChannel { settings, client })
    }

    /// The event Pusher is given for `job`, or why it cannot be sent (for good).
    fn event(&self, job: &Job) -> Result<serde_json::Value, SendError> {
        let channel = self
            .settings
            .channel
            .render(job.owner())
            .map_err(SendError::permanent)?;
        // Pusher takes `data` as a string and hands it to clients as it is.
        let data = job.client_data().to_string();
        if data.len() > MAX_DATA_BYTES {
            return Err(SendError::permanent(format!(
                "the event's data is {} bytes, over Pusher's {MAX_DATA_BYTES}",
                data.len()
            )));
        }
        Ok(serde_json::json!({
            "name": job.kind().realtime_event(),
            "channel": channel,
            "data": data,
        }))
    }

    /// One signed POST of `body` to `/apps/{app_id}/{endpoint}`.
    async fn post(&self, endpoint: &str, body: Vec<u8>) -> Result<(), SendError> {
        let mut url = self.settings.base_url.clone();
        // Keep a path prefix given in PUSHER_HOST (a server behind a reverse proxy).
        let path = format!(
            "{}/apps/{}/{endpoint}",
            url.path().trim_end_matches('/'),
            self.settings.app_id
        );
        url.set_path(&path);
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        // Sign the path as it goes on the wire (after `set_path`'s percent-encoding).
        let query = signed_query(
            &self.settings.key,
            self.settings.secret.expose(),
            "POST",
            url.path(),
            &body,
            timestamp,
        );
        url.set_query(Some(&query));
        let response = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            // Without the URL: its query holds the key and a signature, not for logs.
            .map_err(|error| {
                SendError::transient(format!(
                    "cannot reach Pusher: {}",
                    error_chain(&error.without_url())
                ))
            })?;
        // The body only matters for errors (and for telling over-quota from refused).
        let channel::HttpAnswer {
            status,
            retry_after,
            body: text,
        } = channel::HttpAnswer::read(response).await;
        classify(status, retry_after, &text)
    }
}

/// reqwest's error with its causes ("error sending request" alone says little).
pub(super) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl Channel for PusherChannel {
    fn name(&self) -> ChannelName {
        ChannelName::Pusher
    }

    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    async fn send(&self, jobs: &[Job]) -> Vec<Result<(), SendError>> {
        let mut results: Vec<Result<(), SendError>> = Vec::with_capacity(jobs.len());
        // The events that can go, with the index of their job: a job refused here (its
        // channel name or its size) does not hold back the others.
        let mut events = Vec::with_capacity(jobs.len());
        for (index, job) in jobs.iter().enumerate() {
            match self.event(job) {
                Ok(event) => {
                    events.push((index, event));
                    results.push(Ok(()));
                }
                Err(error) => results.push(Err(error)),
            }
        }
        let outcome = match events.as_slice() {
            [] => return results,
            [(_, event)] => self.post("events", event.to_string().into_bytes()).await,
            many => {
                let batch: Vec<&serde_json::Value> = many.iter().map(|(_, event)| event).collect();
                let body = serde_json::json!({ "batch": batch }).to_string().into_bytes();
                self.post("batch_events", body).await
            }
        };
        // One HTTP answer for the whole batch: it is every job's.
        if let Err(error) = outcome {
            for (index, _) in &events {
                results[*index] = Err(error.clone());
            }
        }
        results
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::channel::Failure;

    #[test]
    fn signs_as_pusher_does() {
        // The vector of Pusher's Node.js server library, tests/integration/pusher/
        // create_signed_query_string.js in github.com/pusher/pusher-http-node ("when signing
        // a body": key f00d, secret beef, Date.now mocked to 1234567890 s, GET /event,
        // body "example body").
        let query = signed_query("f00d", "beef", "GET", "/event", b"example body", 1_234_567_890);
        assert_eq!(
            query,
            "auth_key=f00d&auth_timestamp=1234567890&auth_version=1.0\
             &body_md5=165d5e6d7ca8f73b3853ce45addf42fc\
             &auth_signature=89323a7f200fdefaa992e73e0953534dbb94c4dd2450514bcb4721b28b14fb26"
        );
    }

    #[test]
    fn answers_sort_into_delivered_retry_and_refused() {
        assert!(classify(200, None, "{}").is_ok());
        for status in [400, 401, 404, 413] {
            assert_eq!(
                classify(status, None, "nope").unwrap_err().kind,
                Failure::Permanent,
                "{status}"
            );
        }
        // A disabled app is refused for good; an app over quota is only for now.
        assert_eq!(
            classify(403, None, "App disabled").unwrap_err().kind,
            Failure::Permanent
        );
        let later = Some(Duration::from_secs(60));
        for body in ["Over quota", r#"{"error":"Account over message quota"}"#] {
            assert_eq!(
                classify(403, later, body).unwrap_err().kind,
                Failure::Transient { retry_after: later },
                "{body}"
            );
        }
        for status in [429, 500, 503] {
            assert_eq!(
                classify(status, later, "").unwrap_err().kind,
                Failure::Transient { retry_after: later },
                "{status}"
            );
        }
    }
}
