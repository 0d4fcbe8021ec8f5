//! The contract every channel keeps, and the one place that decides what a failed send
//! becomes (retry, and when; or dead letter).

use super::job::Job;
use std::future::Future;
use std::time::Duration;

/// The channels, by their names in SPEC's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChannelName {
    Pusher,
    Nats,
    Webhook,
    Email,
    Webpush,
    Fcm,
    Apns,
}

impl ChannelName {
    pub const ALL: [ChannelName; 7] = [
        ChannelName::Pusher,
        ChannelName::Nats,
        ChannelName::Webhook,
        ChannelName::Email,
        ChannelName::Webpush,
        ChannelName::Fcm,
        ChannelName::Apns,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChannelName::Pusher => "pusher",
            ChannelName::Nats => "nats",
            ChannelName::Webhook => "webhook",
            ChannelName::Email => "email",
            ChannelName::Webpush => "webpush",
            ChannelName::Fcm => "fcm",
            ChannelName::Apns => "apns",
        }
    }

    /// The channel as preferences name it, for the channels that reach one person.
    pub fn personal(self) -> Option<crate::recipients::Channel> {
        use crate::recipients::Channel;
        match self {
            ChannelName::Pusher | ChannelName::Nats | ChannelName::Webhook => None,
            ChannelName::Email => Some(Channel::Email),
            ChannelName::Webpush => Some(Channel::Webpush),
            ChannelName::Fcm => Some(Channel::Fcm),
            ChannelName::Apns => Some(Channel::Apns),
        }
    }

    pub fn parse(name: &str) -> Option<ChannelName> {
        ChannelName::ALL
            .into_iter()
            .find(|channel| channel.as_str() == name)
    }
}

impl std::fmt::Display for ChannelName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a send did not go through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendError {
    pub kind: Failure,
    /// What the channel answered, for logs, dead letters and `deliver test`.
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Worth another try (timeouts, 429, 5xx, connection errors); `retry_after` when the
    /// receiver said when (`Retry-After`).
    Transient { retry_after: Option<Duration> },
    /// The receiver refuses this job for good (bad credentials, a payload it rejects).
    Permanent,
    /// The address no longer exists (an expired Web Push subscription, an unregistered
    /// device token): a personal channel drops it from the directory; never retried.
    Gone,
}

impl SendError {
    pub fn transient(message: impl Into<String>) -> SendError {
        SendError {
            kind: Failure::Transient { retry_after: None },
            message: message.into(),
        }
    }

    pub fn permanent(message: impl Into<String>) -> SendError {
        SendError {
            kind: Failure::Permanent,
            message: message.into(),
        }
    }

    pub fn gone(message: impl Into<String>) -> SendError {
        SendError {
            kind: Failure::Gone,
            message: message.into(),
        }
    }

    pub fn retry_after(mut self, after: Option<Duration>) -> SendError {
        if let Failure::Transient { retry_after } = &mut self.kind {
            *retry_after = after;
        }
        self
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// What a receiver's answer means, for HTTP channels: the status code and its
/// `Retry-After`, if any. `permanent_statuses` lists the 4xx codes the channel treats as
/// permanent; everything else in 4xx is too, except 408 and 429.
pub fn classify_http(status: u16, retry_after: Option<Duration>, body: &str) -> Result<(), SendError> {
    let message = || {
        let body: String = body.chars().take(300).collect();
        format!("HTTP {status}: {}", body.trim())
    };
    match status {
        200..=299 => Ok(()),
        408 | 429 | 500..=599 => Err(SendError::transient(message()).retry_after(retry_after)),
        _ => Err(SendError::permanent(message())),
    }
}

/// What an HTTP receiver answered: its status, its `Retry-After`, and its body when the
/// status is not a success (the body explains a refusal; a success's is not read).
pub struct HttpAnswer {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub body: String,
}

impl HttpAnswer {
    pub async fn read(response: reqwest::Response) -> HttpAnswer {
        HttpAnswer::read_body_if(response, |status| !status.is_success()).await
    }

    /// [`HttpAnswer::read`], with the body of a success too (an answer that carries data).
    pub async fn read_all(response: reqwest::Response) -> HttpAnswer {
        HttpAnswer::read_body_if(response, |_| true).await
    }

    async fn read_body_if(
        response: reqwest::Response,
        wanted: impl Fn(reqwest::StatusCode) -> bool,
    ) -> HttpAnswer {
        let status = response.status();
        let retry_after = parse_retry_after(
            response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok()),
        );
        let body = if wanted(status) {
            response.text().await.unwrap_or_default()
        } else {
            String::new()
        };
        HttpAnswer {
            status: status.as_u16(),
            retry_after,
            body,
        }
    }
}

/// `Retry-After` in seconds (the HTTP-date form is rare for APIs and read as absent).
pub fn parse_retry_after(value: Option<&str>) -> Option<Duration> {
    value?.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// What every channel does: send jobs, in the order given, and say for each what became of it.
pub trait Channel: Send + Sync + 'static {
    fn name(&self) -> ChannelName;

    /// Most jobs sent in one call (Pusher's batch API takes 10).
    fn max_batch(&self) -> usize {
        1
    }

    /// Sends `jobs` (at most [`Channel::max_batch`]); one result per job, in order.
    fn send(&self, jobs: &[Job]) -> impl Future<Output = Vec<Result<(), SendError>>> + Send;
}

/// The retry schedule: exponential from `BASE`, capped at `MAX`, with full jitter, unless
/// the receiver said when.
pub fn retry_pause(failure: Failure, attempt: u32) -> Duration {
    const BASE: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(60);
    if let Failure::Transient {
        retry_after: Some(after),
    } = failure
    {
        return after.min(Duration::from_secs(15 * 60));
    }
    let ceiling = BASE
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(MAX);
    // Half fixed, half random: spread out, never zero.
    ceiling / 2 + ceiling.mul_f64(fastrand::f64() / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_answers_sort_into_delivered_retry_and_refused() {
        assert!(classify_http(200, None, "").is_ok());
        assert!(classify_http(204, None, "").is_ok());
        for status in [408, 429, 500, 502, 503] {
            let error = classify_http(status, Some(Duration::from_secs(3)), "busy").unwrap_err();
            assert_eq!(
                error.kind,
                Failure::Transient {
                    retry_after: Some(Duration::from_secs(3))
                },
                "{status}"
            );
        }
        for status in [400, 401, 403, 404, 410, 413] {
            assert_eq!(
                classify_http(status, None, "").unwrap_err().kind,
                Failure::Permanent,
                "{status}"
            );
        }
    }

    #[test]
    fn pauses_grow_with_jitter_and_honour_retry_after() {
        let transient = Failure::Transient { retry_after: None };
        for attempt in 1..20 {
            let pause = retry_pause(transient, attempt);
            assert!(
                pause >= Duration::from_millis(250) && pause <= Duration::from_secs(60),
                "{pause:?}"
            );
        }
        assert!(retry_pause(transient, 1) <= Duration::from_millis(500));
        assert!(retry_pause(transient, 8) >= Duration::from_secs(30));
        let told = Failure::Transient {
            retry_after: Some(Duration::from_secs(7)),
        };
        assert_eq!(retry_pause(told, 1), Duration::from_secs(7));
        assert_eq!(parse_retry_after(Some(" 12 ")), Some(Duration::from_secs(12)));
        assert_eq!(parse_retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")), None);
    }
}
