//! The one function that decides what happens after a store failure.

use crate::store::{ErrorKind, StoreError};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Try the same change again after this pause, keeping the message.
    RetryAfter(Duration),
    /// The store will never take this change: dead-letter it (`store_rejected`).
    DeadLetter,
}

/// After the `attempt`-th failure (1-based) of one change: what to do.
///
/// Transient trouble (throttling, timeouts, a busy database) is retried quickly and
/// systemic trouble (missing table, bad credentials, full disk) slowly, since only an
/// operator can fix it; neither ever dead-letters, however long it lasts. Only a store
/// that refuses this one change sends it to the dead letters.
pub fn decide(error: &StoreError, attempt: u32) -> RetryDecision {
    let (first, cap) = match error.kind {
        ErrorKind::Transient => (Duration::from_millis(50), Duration::from_secs(5)),
        ErrorKind::Systemic => (Duration::from_millis(500), Duration::from_secs(30)),
        ErrorKind::Permanent => return RetryDecision::DeadLetter,
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
        match decide(&StoreError::new(kind, "test"), attempt) {
            RetryDecision::RetryAfter(delay) => delay,
            RetryDecision::DeadLetter => panic!("{kind} errors are retried"),
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(delay(ErrorKind::Transient, 1) <= Duration::from_millis(50));
        assert!(delay(ErrorKind::Transient, 4) >= Duration::from_millis(200));
        assert!(delay(ErrorKind::Transient, 40) <= Duration::from_secs(5));
        assert!(delay(ErrorKind::Transient, 40) >= Duration::from_millis(2500));
    }

    #[test]
    fn only_permanent_errors_are_dead_lettered() {
        let permanent = StoreError::new(ErrorKind::Permanent, "item rejected");
        assert_eq!(decide(&permanent, 1), RetryDecision::DeadLetter);
        for attempt in [1, 10, 1000] {
            let _ = delay(ErrorKind::Transient, attempt);
            let _ = delay(ErrorKind::Systemic, attempt);
        }
    }

    #[test]
    fn systemic_errors_back_off_slowly() {
        assert!(delay(ErrorKind::Systemic, 1) >= Duration::from_millis(250));
        assert!(delay(ErrorKind::Systemic, 40) <= Duration::from_secs(30));
    }
}
