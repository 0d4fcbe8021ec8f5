//! The one function that decides what happens after a store failure.

use crate::store::{ErrorKind, StoreError};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Try the same change again after this pause, keeping the message.
    RetryAfter(Duration),
}

/// After the `attempt`-th failure (1-based) of one change: how long to wait.
///
/// Transient trouble is retried quickly; systemic trouble (missing table, bad credentials,
/// full disk) slowly, since only an operator can fix it. Nothing is acknowledged unwritten.
/// Permanent errors are retried slowly too, until dead letters exist to take them.
pub fn decide(error: &StoreError, attempt: u32) -> RetryDecision {
    let (first, cap) = match error.kind {
        ErrorKind::Transient => (Duration::from_millis(50), Duration::from_secs(5)),
        ErrorKind::Systemic | ErrorKind::Permanent => (Duration::from_millis(500), Duration::from_secs(30)),
    };
    let exponential = first
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(cap);
    // Full jitter in the upper half: replicas retrying together spread out.
    let jittered = exponential.mul_f64(0.5 + fastrand::f64() * 0.5);
    RetryDecision::RetryAfter(jittered)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delay(kind: ErrorKind, attempt: u32) -> Duration {
        let RetryDecision::RetryAfter(delay) = decide(&StoreError::new(kind, "test"), attempt);
        delay
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(delay(ErrorKind::Transient, 1) <= Duration::from_millis(50));
        assert!(delay(ErrorKind::Transient, 4) >= Duration::from_millis(200));
        assert!(delay(ErrorKind::Transient, 40) <= Duration::from_secs(5));
        assert!(delay(ErrorKind::Transient, 40) >= Duration::from_millis(2500));
    }

    #[test]
    fn systemic_errors_back_off_slowly() {
        assert!(delay(ErrorKind::Systemic, 1) >= Duration::from_millis(250));
        assert!(delay(ErrorKind::Systemic, 40) <= Duration::from_secs(30));
    }
}
