//! The dead-letter stream's limits (`DLQ_MAX_AGE`, `DLQ_MAX_BYTES`): dead letters are kept
//! to be inspected and replayed, not forever.

use super::{ConfigError, bad, parse_duration, parse_size};
use std::time::Duration;

/// Limits the dead-letter stream is created with (an existing stream is used as it is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadLetterSettings {
    /// Dead letters older than this are removed (`DLQ_MAX_AGE`).
    pub max_age: Duration,
    /// The stream's size limit (`DLQ_MAX_BYTES`); `None` for unlimited. When full, new dead
    /// letters are refused, never old ones dropped: the originals come back and the failure
    /// is counted and alerted on.
    pub max_bytes: Option<u64>,
}

pub const DEFAULT_MAX_AGE: &str = "7d";
pub const DEFAULT_MAX_BYTES: &str = "1GiB";

impl Default for DeadLetterSettings {
    fn default() -> DeadLetterSettings {
        DeadLetterSettings {
            max_age: Duration::from_secs(7 * 24 * 60 * 60),
            max_bytes: Some(1 << 30),
        }
    }
}

/// Shortest `DLQ_MAX_AGE`: dead letters must live long enough for someone to look.
const MIN_MAX_AGE: Duration = Duration::from_secs(60 * 60);

pub fn parse(max_age: &str, max_bytes: &str) -> Result<DeadLetterSettings, ConfigError> {
    let max_age = match parse_duration("DLQ_MAX_AGE", max_age, "7d")? {
        age if age >= MIN_MAX_AGE => age,
        _ => {
            return Err(bad("DLQ_MAX_AGE", max_age, "must be at least 1h", "7d"));
        }
    };
    let max_bytes = match max_bytes.trim() {
        "unlimited" => None,
        value => match parse_size(value) {
            Some(bytes) if bytes >= 1 << 20 => Some(bytes),
            _ => {
                return Err(bad(
                    "DLQ_MAX_BYTES",
                    max_bytes,
                    "must be a size of at least 1MiB (B, KiB, MiB, GiB, TiB), or unlimited",
                    "1GiB",
                ));
            }
        },
    };
    Ok(DeadLetterSettings { max_age, max_bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_parse_to_the_documented_limits() {
        assert_eq!(
            parse(DEFAULT_MAX_AGE, DEFAULT_MAX_BYTES).unwrap(),
            DeadLetterSettings::default()
        );
    }

    #[test]
    fn durations_and_sizes_in_their_units() {
        let settings = parse("36h", "100MiB").unwrap();
        assert_eq!(settings.max_age, Duration::from_secs(36 * 3600));
        assert_eq!(settings.max_bytes, Some(100 << 20));
        assert_eq!(parse("90m", "unlimited").unwrap().max_bytes, None);
        for (age, bytes, variable) in [
            ("7", "1GiB", "DLQ_MAX_AGE"),
            ("10m", "1GiB", "DLQ_MAX_AGE"),
            ("7w", "1GiB", "DLQ_MAX_AGE"),
            ("7d", "1GB", "DLQ_MAX_BYTES"),
            ("7d", "1KiB", "DLQ_MAX_BYTES"),
            ("7d", "-1", "DLQ_MAX_BYTES"),
        ] {
            let error = parse(age, bytes).unwrap_err();
            assert_eq!(error.variable, variable, "{age} {bytes}");
        }
    }
}
