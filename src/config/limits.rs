//! The rate limits' settings (`RATE_LIMIT_TRIGGER_USER`): `off`, or `N/DURATION`.

use super::{ConfigError, bad, parse_duration};
use crate::limits::{LimitSettings, MAX_COUNT, MAX_PERIOD, MIN_PERIOD, Rate};
use clap::Args;

const EXAMPLE: &str = "100/1m";

#[derive(Clone, Args)]
#[command(next_help_heading = super::heading::LIMITS)]
pub struct RawLimits {
    /// Notifications created per trigger user in any interval of DURATION, across all replicas:
    /// `N/DURATION` (e.g. 100/1m), or `off`. Needs NATS_MODE=jetstream (key-value bucket NOTIFICATION_LIMITS).
    #[arg(long, env = "RATE_LIMIT_TRIGGER_USER", default_value = "off", global = true)]
    pub rate_limit_trigger_user: String,
}

impl Default for RawLimits {
    /// The documented default: no limit.
    fn default() -> RawLimits {
        RawLimits {
            rate_limit_trigger_user: "off".into(),
        }
    }
}

pub fn parse(raw: &RawLimits) -> Result<LimitSettings, ConfigError> {
    Ok(LimitSettings {
        trigger_user: parse_rate("RATE_LIMIT_TRIGGER_USER", &raw.rate_limit_trigger_user)?,
    })
}

/// `off`, or N/DURATION with N in 1..=MAX_COUNT and DURATION as `parse_duration` reads it.
fn parse_rate(variable: &'static str, value: &str) -> Result<Option<Rate>, ConfigError> {
    let value = value.trim();
    if value == "off" {
        return Ok(None);
    }
    let Some((count, period)) = value.split_once('/') else {
        return Err(bad(
            variable,
            value,
            "must be off or N/DURATION (a count, a slash, a duration with s, m, h or d)",
            EXAMPLE,
        ));
    };
    let count = match count.trim().parse::<u32>() {
        Ok(count) if (1..=MAX_COUNT).contains(&count) => count,
        _ => {
            return Err(bad(
                variable,
                value,
                format!("N must be a whole number from 1 to {MAX_COUNT}"),
                EXAMPLE,
            ));
        }
    };
    let period = parse_duration(variable, period, EXAMPLE)?;
    Rate::new(count, period).map(Some).ok_or_else(|| {
        bad(
            variable,
            value,
            format!(
                "the duration must be from {}s to {}d",
                MIN_PERIOD.as_secs(),
                MAX_PERIOD.as_secs() / 86_400
            ),
            EXAMPLE,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn rate(value: &str) -> Result<Option<Rate>, ConfigError> {
        parse_rate("RATE_LIMIT_TRIGGER_USER", value)
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
}
