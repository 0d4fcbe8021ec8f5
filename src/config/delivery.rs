//! The delivery stage's settings: which channels are on, and how hard they are driven.
//! A channel is on when its required variables are set; half a channel's settings is an
//! error, not a silently disabled channel.

use super::{ConfigError, Environment, Secret, bad, parse_duration};
use crate::delivery::DeliverySettings;
use crate::delivery::nats::NatsRealtimeSettings;
use crate::delivery::pusher::PusherSettings;
use crate::delivery::template::{NameKind, OwnerTemplate};
use crate::delivery::webhook::WebhookSettings;
use crate::recipients::{DEFAULT_NOTIFY_DEFAULTS, NotifyDefaults};
use clap::Args;
use std::time::Duration;

pub const DEFAULT_PUSHER_CHANNEL: &str = "user-{owner}-notifications";

#[derive(Clone, Args)]
#[command(next_help_heading = super::heading::DELIVERY)]
pub struct RawDelivery {
    /// Pusher Channels app id (with PUSHER_KEY and PUSHER_SECRET: turns channel `pusher` on).
    #[arg(long, env = "PUSHER_APP_ID", global = true)]
    pub pusher_app_id: Option<String>,
    /// Pusher Channels app key.
    #[arg(long, env = "PUSHER_KEY", global = true)]
    pub pusher_key: Option<String>,
    /// Pusher Channels app secret.
    #[arg(long, env = "PUSHER_SECRET", hide_env_values = true, global = true)]
    pub pusher_secret: Option<String>,
    /// Pusher cluster: the API is https://api-{cluster}.pusher.com.
    #[arg(long, env = "PUSHER_CLUSTER", global = true)]
    pub pusher_cluster: Option<String>,
    /// A self-hosted Pusher-protocol server instead, e.g. http://127.0.0.1:6001.
    #[arg(long, env = "PUSHER_HOST", global = true)]
    pub pusher_host: Option<String>,
    /// The channel a user's notifications go to; {owner} is replaced by the owner (encoded).
    #[arg(long, env = "PUSHER_CHANNEL", default_value = DEFAULT_PUSHER_CHANNEL, global = true)]
    pub pusher_channel: String,
    /// Core NATS subject for realtime clients, e.g. users.{owner}.notifications (turns channel `nats` on).
    #[arg(long, env = "REALTIME_NATS_SUBJECT", global = true)]
    pub realtime_nats_subject: Option<String>,
    /// Webhook endpoint (with WEBHOOK_SECRET: turns channel `webhook` on).
    #[arg(long, env = "WEBHOOK_URL", global = true)]
    pub webhook_url: Option<String>,
    /// Webhook signing secret, `whsec_` + base64 (Standard Webhooks).
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true, global = true)]
    pub webhook_secret: Option<String>,
    /// How long a webhook receiver has to answer.
    #[arg(long, env = "WEBHOOK_TIMEOUT", default_value = "5s", global = true)]
    pub webhook_timeout: String,
    /// Sends of one job before it is dead-lettered (failures while a channel is down do not count).
    #[arg(long, env = "DELIVERY_MAX_ATTEMPTS", default_value = "10", global = true)]
    pub delivery_max_attempts: String,
    /// Sends in flight at once, per channel.
    #[arg(long, env = "DELIVERY_CONCURRENCY", default_value = "32", global = true)]
    pub delivery_concurrency: String,
    /// Delivery modes for people who chose none: CHANNEL[.EVENT_TYPE]=instant|digest|off, comma-separated
    /// (channels email, push, webpush, fcm, apns; e.g. email=digest,push=instant,email.reply.post=instant).
    #[arg(long, env = "NOTIFY_DEFAULTS", default_value = DEFAULT_NOTIFY_DEFAULTS, global = true)]
    pub notify_defaults: String,
    /// One digest per owner and push channel (webpush, fcm, apns) per this long.
    #[arg(long, env = "PUSH_DIGEST_WINDOW", default_value = "15m", global = true)]
    pub push_digest_window: String,
    /// How long the worker keeps a recipient's directory entry before reading it again.
    #[arg(long, env = "RECIPIENT_CACHE_TTL", default_value = "10s", global = true)]
    pub recipient_cache_ttl: String,
    /// Most directory entries kept in memory (0: none, every send reads the store).
    #[arg(long, env = "RECIPIENT_CACHE_SIZE", default_value = "100000", global = true)]
    pub recipient_cache_size: String,
    #[command(flatten)]
    pub webpush: super::webpush::RawWebPush,
    #[command(flatten)]
    pub mobile: super::mobile::RawMobile,
    #[command(flatten)]
    pub email: super::email::RawEmail,
}

/// A digest window: at most a week (the digest stream deduplicates over the window, and
/// keeps its entries a few windows long). Seconds are allowed for tests and trials.
pub fn parse_digest_window(variable: &'static str, value: &str) -> Result<Duration, ConfigError> {
    let window = parse_duration(variable, value, "15m")?;
    if window > Duration::from_secs(7 * 86_400) {
        return Err(bad(variable, value, "must be at most 7d", "15m"));
    }
    Ok(window)
}

fn parse_recipient_cache(raw: &RawDelivery) -> Result<crate::recipients::CacheSettings, ConfigError> {
    let given = raw.recipient_cache_ttl.trim();
    let ttl = if given == "0" || given == "0s" {
        Duration::ZERO
    } else {
        parse_duration("RECIPIENT_CACHE_TTL", given, "10s")?
    };
    let ttl = match ttl {
        ttl if ttl <= Duration::from_secs(3600) => ttl,
        _ => {
            return Err(bad(
                "RECIPIENT_CACHE_TTL",
                &raw.recipient_cache_ttl,
                "must be a duration up to 1h (0s: no cache)",
                "10s",
            ));
        }
    };
    let capacity = match raw.recipient_cache_size.trim().parse::<usize>() {
        Ok(n) if n <= 10_000_000 => n,
        _ => {
            return Err(bad(
                "RECIPIENT_CACHE_SIZE",
                &raw.recipient_cache_size,
                "must be a whole number from 0 to 10000000",
                "100000",
            ));
        }
    };
    Ok(crate::recipients::CacheSettings { ttl, capacity })
}

/// `NOTIFY_DEFAULTS`: what each channel does for people who set no preference.
pub fn parse_notify_defaults(value: &str) -> Result<NotifyDefaults, ConfigError> {
    NotifyDefaults::parse(value).map_err(|problem| {
        bad(
            "NOTIFY_DEFAULTS",
            value,
            problem,
            "email=digest,push=instant,email.reply.post=instant",
        )
    })
}

fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|value| !value.is_empty())
}

pub fn parse(raw: &RawDelivery, environment: Environment) -> Result<DeliverySettings, ConfigError> {
    Ok(DeliverySettings {
        pusher: parse_pusher(raw)?,
        nats: match given(&raw.realtime_nats_subject) {
            None => None,
            Some(template) => Some(NatsRealtimeSettings {
                subject: OwnerTemplate::parse(NameKind::NatsSubject, template).map_err(|problem| {
                    bad(
                        "REALTIME_NATS_SUBJECT",
                        template,
                        problem,
                        "users.{owner}.notifications",
                    )
                })?,
            }),
        },
        webhook: parse_webhook(raw, environment)?,
        webpush: super::webpush::parse(&raw.webpush)?,
        fcm: super::mobile::parse_fcm(&raw.mobile, environment)?,
        apns: super::mobile::parse_apns(&raw.mobile, environment)?,
        email: super::email::parse(&raw.email, environment)?,
        max_attempts: match raw.delivery_max_attempts.trim().parse::<u32>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => {
                return Err(bad(
                    "DELIVERY_MAX_ATTEMPTS",
                    &raw.delivery_max_attempts,
                    "must be a whole number from 1 to 1000",
                    "10",
                ));
            }
        },
        push_digest_window: parse_digest_window("PUSH_DIGEST_WINDOW", &raw.push_digest_window)?,
        recipient_cache: parse_recipient_cache(raw)?,
        concurrency: match raw.delivery_concurrency.trim().parse::<usize>() {
            Ok(n) if (1..=1024).contains(&n) => n,
            _ => {
                return Err(bad(
                    "DELIVERY_CONCURRENCY",
                    &raw.delivery_concurrency,
                    "must be a whole number from 1 to 1024",
                    "32",
                ));
            }
        },
    })
}

fn parse_pusher(raw: &RawDelivery) -> Result<Option<PusherSettings>, ConfigError> {
    let parts = [
        ("PUSHER_APP_ID", given(&raw.pusher_app_id)),
        ("PUSHER_KEY", given(&raw.pusher_key)),
        ("PUSHER_SECRET", given(&raw.pusher_secret)),
    ];
    let (Some(app_id), Some(key), Some(secret)) = (parts[0].1, parts[1].1, parts[2].1) else {
        if let Some((missing, _)) = parts.iter().find(|(_, value)| value.is_none())
            && parts.iter().any(|(_, value)| value.is_some())
        {
            return Err(ConfigError {
                variable: missing,
                value: None,
                problem: "must be set with the other PUSHER_ variables (PUSHER_APP_ID, PUSHER_KEY and PUSHER_SECRET turn channel pusher on)".into(),
                example: "…",
            });
        }
        return Ok(None);
    };
    let base_url = match (given(&raw.pusher_cluster), given(&raw.pusher_host)) {
        (Some(_), Some(_)) => {
            return Err(ConfigError {
                variable: "PUSHER_HOST",
                value: None,
                problem:
                    "set PUSHER_CLUSTER (Pusher's service) or PUSHER_HOST (a self-hosted server), not both"
                        .into(),
                example: "http://127.0.0.1:6001",
            });
        }
        (Some(cluster), None) => {
            if !cluster.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(bad("PUSHER_CLUSTER", cluster, "is not a cluster name", "eu"));
            }
            url::Url::parse(&format!("https://api-{cluster}.pusher.com"))
                .map_err(|_| bad("PUSHER_CLUSTER", cluster, "is not a cluster name", "eu"))?
        }
        (None, Some(host)) => match url::Url::parse(host) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => url,
            _ => {
                return Err(bad(
                    "PUSHER_HOST",
                    host,
                    "must be an http:// or https:// URL",
                    "http://127.0.0.1:6001",
                ));
            }
        },
        (None, None) => url::Url::parse("https://api-mt1.pusher.com").expect("a valid URL"),
    };
    let channel = OwnerTemplate::parse(NameKind::PusherChannel, &raw.pusher_channel).map_err(|problem| {
        bad(
            "PUSHER_CHANNEL",
            &raw.pusher_channel,
            problem,
            "private-user-{owner}-notifications",
        )
    })?;
    Ok(Some(PusherSettings {
        app_id: app_id.to_owned(),
        key: key.to_owned(),
        secret: Secret::new(secret),
        base_url,
        channel,
        timeout: Duration::from_secs(5),
    }))
}

fn parse_webhook(
    raw: &RawDelivery,
    environment: Environment,
) -> Result<Option<WebhookSettings>, ConfigError> {
    let (url, secret) = match (given(&raw.webhook_url), given(&raw.webhook_secret)) {
        (None, None) => return Ok(None),
        (Some(url), Some(secret)) => (url, secret),
        (Some(_), None) => {
            return Err(ConfigError {
                variable: "WEBHOOK_SECRET",
                value: None,
                problem: "must be set with WEBHOOK_URL (webhooks are always signed)".into(),
                example: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            });
        }
        (None, Some(_)) => {
            return Err(ConfigError {
                variable: "WEBHOOK_URL",
                value: None,
                problem: "must be set with WEBHOOK_SECRET".into(),
                example: "https://api.example.com/hooks/notifications",
            });
        }
    };
    let url = match url::Url::parse(url) {
        Ok(parsed) if parsed.scheme() == "https" && parsed.host().is_some() => parsed,
        Ok(parsed)
            if parsed.scheme() == "http"
                && parsed.host().is_some()
                && environment == Environment::Development =>
        {
            parsed
        }
        Ok(parsed) if parsed.scheme() == "http" => {
            return Err(bad(
                "WEBHOOK_URL",
                url,
                "must be https:// in production",
                "https://api.example.com/hooks/notifications",
            ));
        }
        _ => {
            return Err(bad(
                "WEBHOOK_URL",
                url,
                "must be an https:// URL",
                "https://api.example.com/hooks/notifications",
            ));
        }
    };
    if crate::delivery::webhook::signing_key(secret).is_none() {
        return Err(ConfigError {
            variable: "WEBHOOK_SECRET",
            value: None,
            problem: "must be whsec_ followed by base64 (at least 24 bytes once decoded)".into(),
            example: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        });
    }
    Ok(Some(WebhookSettings {
        url,
        secret: Secret::new(secret),
        timeout: parse_duration("WEBHOOK_TIMEOUT", &raw.webhook_timeout, "5s")?,
    }))
}

impl Default for RawDelivery {
    /// The documented defaults: no channel on.
    fn default() -> RawDelivery {
        RawDelivery {
            pusher_app_id: None,
            pusher_key: None,
            pusher_secret: None,
            pusher_cluster: None,
            pusher_host: None,
            pusher_channel: DEFAULT_PUSHER_CHANNEL.into(),
            realtime_nats_subject: None,
            webhook_url: None,
            webhook_secret: None,
            webhook_timeout: "5s".into(),
            delivery_max_attempts: "10".into(),
            delivery_concurrency: "32".into(),
            notify_defaults: DEFAULT_NOTIFY_DEFAULTS.into(),
            push_digest_window: "15m".into(),
            recipient_cache_ttl: "10s".into(),
            recipient_cache_size: "100000".into(),
            webpush: Default::default(),
            mobile: super::mobile::RawMobile::default(),
            email: super::email::RawEmail::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_channel_by_default() {
        let settings = parse(&RawDelivery::default(), Environment::Production).unwrap();
        assert!(settings.enabled().is_empty());
        assert_eq!((settings.max_attempts, settings.concurrency), (10, 32));
    }

    #[test]
    fn each_channel_turns_on_with_its_variables() {
        let raw = RawDelivery {
            pusher_app_id: Some("1".into()),
            pusher_key: Some("key".into()),
            pusher_secret: Some("secret".into()),
            pusher_cluster: Some("eu".into()),
            realtime_nats_subject: Some("users.{owner}.notifications".into()),
            webhook_url: Some("https://example.com/hook".into()),
            webhook_secret: Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
            ..RawDelivery::default()
        };
        let settings = parse(&raw, Environment::Production).unwrap();
        assert_eq!(settings.enabled().len(), 3);
        assert_eq!(
            settings.pusher.unwrap().base_url.as_str(),
            "https://api-eu.pusher.com/"
        );
    }

    #[test]
    fn half_a_channel_is_an_error_naming_what_is_missing() {
        let cases: [(RawDelivery, &str); 6] = [
            (
                RawDelivery {
                    pusher_app_id: Some("1".into()),
                    ..RawDelivery::default()
                },
                "PUSHER_KEY",
            ),
            (
                RawDelivery {
                    webhook_url: Some("https://x.example".into()),
                    ..RawDelivery::default()
                },
                "WEBHOOK_SECRET",
            ),
            (
                RawDelivery {
                    webhook_url: Some("http://x.example".into()),
                    webhook_secret: Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
                    ..RawDelivery::default()
                },
                "WEBHOOK_URL",
            ),
            (
                RawDelivery {
                    webhook_url: Some("https://x.example".into()),
                    webhook_secret: Some("plain".into()),
                    ..RawDelivery::default()
                },
                "WEBHOOK_SECRET",
            ),
            (
                RawDelivery {
                    realtime_nats_subject: Some("users.*.{owner}".into()),
                    ..RawDelivery::default()
                },
                "REALTIME_NATS_SUBJECT",
            ),
            (
                RawDelivery {
                    delivery_max_attempts: "0".into(),
                    ..RawDelivery::default()
                },
                "DELIVERY_MAX_ATTEMPTS",
            ),
        ];
        for (raw, variable) in cases {
            let error = parse(&raw, Environment::Production).unwrap_err();
            assert_eq!(error.variable, variable, "{error}");
        }
    }
}
