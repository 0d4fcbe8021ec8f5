//! The rate limits' settings: `RATE_LIMIT_TRIGGER_USER` (`off`, or `N/DURATION`) and
//! `RATE_LIMIT_OWNER` (`off`, or `CHANNEL=N/DURATION` pairs separated by commas).

use super::{ConfigError, bad, parse_duration};
use crate::limits::{LimitSettings, MAX_COUNT, MAX_PERIOD, MIN_PERIOD, OwnerRates, Rate};
use crate::recipients::PreferenceChannel;
use clap::Args;

const EXAMPLE: &str = "100/1m";
const OWNER_EXAMPLE: &str = "push=10/1h,email=5/1d";

#[derive(Clone, Args)]
#[command(next_help_heading = super::heading::LIMITS)]
pub struct RawLimits {
    /// Notifications created per trigger user in any interval of DURATION, across all replicas:
    /// `N/DURATION` (e.g. 100/1m), or `off`. Needs NATS_MODE=jetstream (key-value bucket NOTIFICATION_LIMITS).
    #[arg(long, env = "RATE_LIMIT_TRIGGER_USER", default_value = "off", global = true)]
    pub rate_limit_trigger_user: String,

    /// Instant deliveries per owner and channel in any interval of DURATION, across all replicas;
    /// beyond it they join the owner's digest: `CHANNEL=N/DURATION,...` with CHANNEL email, push,
    /// webpush, fcm or apns (e.g. push=10/1h,email=5/1d), or `off`. Needs NATS_MODE=jetstream.
    #[arg(long, env = "RATE_LIMIT_OWNER", default_value = "off", global = true)]
    pub rate_limit_owner: String,
}

impl Default for RawLimits {
    /// The documented default: no limit.
    fn default() -> RawLimits {
        RawLimits {
            rate_limit_trigger_user: "off".into(),
            rate_limit_owner: "off".into(),
        }
    }
}

pub fn parse(raw: &RawLimits) -> Result<LimitSettings, ConfigError> {
    Ok(LimitSettings {
        trigger_user: parse_rate("RATE_LIMIT_TRIGGER_USER", &raw.rate_limit_trigger_user, EXAMPLE)?,
        owner: parse_owner(&raw.rate_limit_owner)?,
    })
}

/// `off`, or `CHANNEL=N/DURATION` pairs, each channel (in preferences' vocabulary) once.
fn parse_owner(value: &str) -> Result<OwnerRates, ConfigError> {
    const VARIABLE: &str = "RATE_LIMIT_OWNER";
    let mut rates = OwnerRates::default();
    if value.trim() == "off" {
        return Ok(rates);
    }
    for pair in value.split(',') {
        let Some((channel, rate)) = pair.split_once('=') else {
            return Err(bad(
                VARIABLE,
                value,
                "must be off or CHANNEL=N/DURATION pairs separated by commas",
                OWNER_EXAMPLE,
            ));
        };
        let channel = PreferenceChannel::parse(channel.trim())
            .map_err(|problem| bad(VARIABLE, value, problem, OWNER_EXAMPLE))?;
        let rate = parse_rate(VARIABLE, rate, OWNER_EXAMPLE)?.ok_or_else(|| {
            bad(
                VARIABLE,
                value,
                format!("{channel}: a limit is N/DURATION (leave the channel out for none)"),
                OWNER_EXAMPLE,
            )
        })?;
        if !rates.set(channel, rate) {
            return Err(bad(
                VARIABLE,
                value,
                format!("{channel} is given twice"),
                OWNER_EXAMPLE,
            ));
        }
    }
    Ok(rates)
}

/// `off`, or N/DURATION with N in 1..=MAX_COUNT and DURATION as `parse_duration` reads it.
fn parse_rate(
    variable: &'static str,
    value: &str,
    example: &'static str,
) -> Result<Option<Rate>, ConfigError> {
    let value = value.trim();
    if value == "off" {
        return Ok(None);
    }
    let Some((count, period)) = value.split_once('/') else {
        return Err(bad(
            variable,
            value,
            "must be off or N/DURATION (a count, a slash, a duration with s, m, h or d)",
            example,
        ));
    };
    let count = match count.trim().parse::<u32>() {
        Ok(count) if (1..=MAX_COUNT).contains(&count) => count,
        _ => {
            return Err(bad(
                variable,
                value,
                format!("N must be a whole number from 1 to {MAX_COUNT}"),
                example,
            ));
        }
    };
    let period = parse_duration(variable, period, example)?;
    Rate::new(count, period).map(Some).ok_or_else(|| {
        bad(
            variable,
            value,
            format!(
                "the duration must be from {}s to {}d",
                MIN_PERIOD.as_secs(),
                MAX_PERIOD.as_secs() / 86_400
            ),
            example,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn rate(value: &str) -> Result<Option<Rate>, ConfigError> {
        parse_rate("RATE_LIMIT_TRIGGER_USER", value, EXAMPLE)
    }

    #[test]
    fn off_by_default_and_n_per_duration() {
        assert_eq!(parse(&RawLimits::default()).unwrap(), LimitSettings::default());
        assert_eq!(rate("off").unwrap(), None);
        let limit = rate("100/1m").unwrap().unwrap();
        assert_eq!((limit.count(), limit.period()), (100, Duration::from_secs(60)));
        let limit = rate("10000/7d").unwrap().unwrap();
        assert_eq!(limit.count(), 10_000);
    }

    #[test]
    fn a_bad_value_names_the_variable_and_a_good_one() {
        for value in [
            "",
            "100",
            "100/",
            "/1m",
            "0/1m",
            "10001/1m",
            "-1/1m",
            "1.5/1m",
            "100/1",
            "100/1w",
            "100/8d",
            "100 per minute",
            "on",
        ] {
            let error = rate(value).unwrap_err();
            assert_eq!(error.variable, "RATE_LIMIT_TRIGGER_USER", "{value:?}");
            assert!(
                error
                    .to_string()
                    .contains("example: RATE_LIMIT_TRIGGER_USER=100/1m"),
                "{error}"
            );
        }
    }

    #[test]
    fn the_owner_limit_is_a_rate_per_channel_of_the_preferences_vocabulary() {
        assert!(!parse_owner("off").unwrap().is_on());
        let rates = parse_owner("push=10/1h, email=5/1d,fcm=2/30m").unwrap();
        let hour = Duration::from_secs(3600);
        assert_eq!(rates.get(PreferenceChannel::Push), Rate::new(10, hour));
        assert_eq!(
            rates.get(PreferenceChannel::Email),
            Rate::new(5, Duration::from_secs(86_400))
        );
        assert_eq!(rates.get(PreferenceChannel::Fcm), Rate::new(2, hour / 2));
        assert_eq!(rates.get(PreferenceChannel::Apns), None);
        let raw = RawLimits {
            rate_limit_owner: "email=3/1h".into(),
            ..RawLimits::default()
        };
        assert!(parse(&raw).unwrap().owner.is_on());
    }

    #[test]
    fn a_bad_owner_limit_names_the_variable_and_a_good_one() {
        for (value, problem) in [
            ("", "CHANNEL=N/DURATION"),
            ("email", "CHANNEL=N/DURATION"),
            ("email=5/1d,", "CHANNEL=N/DURATION"),
            ("sms=5/1d", "not a channel"),
            ("pusher=5/1d", "has no preferences"),
            ("email=off", "leave the channel out"),
            ("email=0/1d", "from 1 to 10000"),
            ("email=5/8d", "from 1s to 7d"),
            ("email=5 a day", "N/DURATION"),
            ("email=5/1d,email=6/1d", "email is given twice"),
        ] {
            let error = parse_owner(value).unwrap_err();
            assert_eq!(error.variable, "RATE_LIMIT_OWNER", "{value:?}");
            let message = error.to_string();
            assert!(message.contains(problem), "{value:?}: {message}");
            assert!(
                message.contains("example: RATE_LIMIT_OWNER=push=10/1h,email=5/1d"),
                "{message}"
            );
        }
    }
}
