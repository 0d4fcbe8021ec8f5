//! The `store_rejected` breaker: when the store refuses many events in a row, the fault is
//! far more likely the store's (a wrong table, a schema the classification does not know)
//! than every one of those events'. Dead-lettering on would empty the whole stream into the
//! dead letters; instead the breaker opens, intake pauses and the refused events are held
//! and retried slowly until a write succeeds.

use std::sync::atomic::{AtomicU32, Ordering};

/// Consecutive `store_rejected` refusals that open the breaker.
pub const REJECTIONS_TO_OPEN: u32 = 20;

#[derive(Debug)]
pub struct RejectionBreaker {
    consecutive: AtomicU32,
    threshold: u32,
}

impl Default for RejectionBreaker {
    fn default() -> RejectionBreaker {
        RejectionBreaker::new(REJECTIONS_TO_OPEN)
    }
}

/// What to do with one refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Few refusals in a row: this one event is at fault; dead-letter it.
    DeadLetter,
    /// This refusal opened the breaker: hold the event, pause intake, alert.
    Opened,
    /// Already open: hold the event.
    StillOpen,
}

impl RejectionBreaker {
    pub fn new(threshold: u32) -> RejectionBreaker {
        RejectionBreaker {
            consecutive: AtomicU32::new(0),
            threshold,
        }
    }

    /// Called on each `store_rejected` refusal. (Concurrent calls make "in a row"
    /// approximate, which is all a breaker needs.)
    pub fn refused(&self) -> Verdict {
        let count = self.consecutive.fetch_add(1, Ordering::SeqCst).saturating_add(1);
        match count.cmp(&self.threshold) {
            std::cmp::Ordering::Less => Verdict::DeadLetter,
            std::cmp::Ordering::Equal => Verdict::Opened,
            std::cmp::Ordering::Greater => Verdict::StillOpen,
        }
    }

    /// Called on each successful write; true when this call closed an open breaker.
    pub fn succeeded(&self) -> bool {
        // Cheap read first: this runs once per event.
        if self.consecutive.load(Ordering::Relaxed) == 0 {
            return false;
        }
        self.consecutive.swap(0, Ordering::SeqCst) >= self.threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_many_refusals_in_a_row_and_closes_on_a_success() {
        let breaker = RejectionBreaker::new(3);
        assert_eq!(breaker.refused(), Verdict::DeadLetter);
        assert!(!breaker.succeeded(), "closed: nothing to report");
        assert_eq!(breaker.refused(), Verdict::DeadLetter);
        assert_eq!(breaker.refused(), Verdict::DeadLetter);
        assert_eq!(breaker.refused(), Verdict::Opened);
        assert_eq!(breaker.refused(), Verdict::StillOpen);
        assert!(breaker.succeeded(), "closed by a success");
        assert_eq!(breaker.refused(), Verdict::DeadLetter);
    }
}
