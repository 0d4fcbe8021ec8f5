//! Whether the store can take writes. A systemic store error pauses intake for the whole
//! worker (no new pulls; what is in flight keeps retrying slowly) until a write succeeds.

use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
pub struct StoreHealth {
    paused: AtomicBool,
    resumed: Notify,
}

impl StoreHealth {
    /// Called on a systemic error; true when this call paused intake.
    pub fn pause(&self) -> bool {
        !self.paused.swap(true, Ordering::SeqCst)
    }

    /// Called on every successful write; true when this call resumed intake.
    pub fn resume(&self) -> bool {
        // Cheap read first: this runs once per event.
        if !self.paused.load(Ordering::Relaxed) {
            return false;
        }
        let resumed = self.paused.swap(false, Ordering::SeqCst);
        if resumed {
            self.resumed.notify_waiters();
        }
        resumed
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// Returns when intake may go on (or at shutdown).
    pub async fn wait_until_writable(&self, shutdown: &CancellationToken) {
        while self.is_paused() {
            let resumed = self.resumed.notified();
            // Re-check after registering, so a resume in between is not missed.
            if !self.is_paused() {
                return;
            }
            tokio::select! {
                () = resumed => {}
                () = shutdown.cancelled() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn intake_waits_while_paused_and_goes_on_after_a_success() {
        let health = Arc::new(StoreHealth::default());
        assert!(health.pause());
        assert!(!health.pause(), "pausing twice reports once");
        let shutdown = CancellationToken::new();
        let waiter = {
            let health = Arc::clone(&health);
            let shutdown = shutdown.clone();
            tokio::spawn(async move { health.wait_until_writable(&shutdown).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        assert!(health.resume());
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert!(!health.resume(), "already running");
    }
}
