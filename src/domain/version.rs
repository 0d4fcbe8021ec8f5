//! The order of events: every write carries the version of the event that asked for it, so
//! the store can tell an older event from a newer one whatever order they arrive in
//! (several replicas, redeliveries, `dlq replay`).

use std::fmt;

/// Where an event stands in the order of all events: its stream's creation time and its
/// sequence in that stream.
///
/// The creation time qualifies the sequence: a stream that is deleted and created again
/// (or a mirror) numbers from 1 again, and without it those small numbers would compare as
/// older than everything the store has seen. With it, every event of a later stream is
/// newer than every event of an earlier one. Ordered by (epoch, sequence).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// The stream's creation time in microseconds since the Unix epoch; 0 in core mode.
    epoch: u64,
    sequence: u64,
}

/// `epoch * SCALE + sequence` is the stored form: one number that sorts like the pair. A
/// sequence is below 2^64 < 10^20, and an epoch in microseconds below 10^16 for millennia,
/// so the number has at most 36 digits: DynamoDB keeps 38 exactly.
const SCALE: u128 = 100_000_000_000_000_000_000;
/// Digits of the stored text form: fixed width, so text order is number order (SQLite).
const DIGITS: usize = 36;
/// Largest epoch that keeps the stored number within [`DIGITS`] digits.
const MAX_EPOCH: u64 = 9_999_999_999_999_999;

impl Version {
    /// Rows written before versions existed (the first version, or this one before 0.2)
    /// count as older than any event.
    pub const LEGACY: Version = Version {
        epoch: 0,
        sequence: 0,
    };

    /// `None` when the epoch is past the year 2286 (or the clock is badly wrong).
    pub fn new(stream_created_micros: u64, sequence: u64) -> Option<Version> {
        (stream_created_micros <= MAX_EPOCH).then_some(Version {
            epoch: stream_created_micros,
            sequence,
        })
    }

    /// Core mode has no stream: events are ordered by the moment a worker received them,
    /// which is what core mode always did (no guarantee across replicas). Epoch 0 keeps them
    /// older than any JetStream event, should a deployment move to JetStream.
    pub fn received_now() -> Version {
        let micros = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000;
        Version {
            epoch: 0,
            sequence: u64::try_from(micros).unwrap_or(0),
        }
    }

    pub fn sequence(self) -> u64 {
        self.sequence
    }

    pub fn epoch(self) -> u64 {
        self.epoch
    }

    /// The one number the stores keep (DynamoDB `N`).
    pub fn to_number(self) -> u128 {
        u128::from(self.epoch) * SCALE + u128::from(self.sequence)
    }

    pub fn from_number(number: u128) -> Option<Version> {
        let epoch = u64::try_from(number / SCALE).ok()?;
        let sequence = u64::try_from(number % SCALE).ok()?;
        Version::new(epoch, sequence)
    }

    /// Fixed-width decimal text: sorts as text exactly as the versions do (SQLite column).
    pub fn to_text(self) -> String {
        format!("{:0width$}", self.to_number(), width = DIGITS)
    }

    /// Reads [`Version::to_text`] or any decimal form of [`Version::to_number`].
    pub fn parse(text: &str) -> Option<Version> {
        let text = text.trim();
        if text.is_empty() || text.len() > 39 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Version::from_number(text.parse().ok()?)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_number())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_stream_is_newer_whatever_the_sequences() {
        let old = Version::new(1_700_000_000_000_000, 5_000_000).unwrap();
        let recreated = Version::new(1_700_000_100_000_000, 1).unwrap();
        assert!(recreated > old);
        assert!(recreated.to_number() > old.to_number());
        assert!(recreated.to_text() > old.to_text());
        assert!(Version::LEGACY < Version::received_now());
        assert!(Version::received_now() < Version::new(1, 0).unwrap());
    }

    #[test]
    fn stored_forms_round_trip_and_keep_the_order() {
        let samples = [
            Version::LEGACY,
            Version::new(0, 7).unwrap(),
            Version::new(1_764_000_000_123_456, 1).unwrap(),
            Version::new(1_764_000_000_123_456, u64::MAX).unwrap(),
            Version::new(MAX_EPOCH, u64::MAX).unwrap(),
        ];
        for pair in samples.windows(2) {
            assert!(pair[0] < pair[1]);
            assert!(pair[0].to_text() < pair[1].to_text());
        }
        for version in samples {
            assert_eq!(version.to_text().len(), DIGITS);
            assert_eq!(Version::parse(&version.to_text()), Some(version));
            assert_eq!(Version::parse(&version.to_string()), Some(version));
        }
        assert!(Version::new(MAX_EPOCH + 1, 0).is_none());
        assert_eq!(Version::parse("-1"), None);
        assert_eq!(Version::parse("1e5"), None);
        assert_eq!(Version::parse(""), None);
    }
}
