//! Keep-alives for every message the worker holds, from receipt to settlement.
//!
//! A message can wait inside the worker for many reasons: for its key's lane, for a
//! store-call permit, in the SQLite writer's queue, during a slow store call, during a
//! retry's pause, while its dead letter is published. Each of those would need its own
//! timer; instead every held delivery is registered once, when received, and one task
//! tells the server "still working on it" (an in-progress ack) for all of them every
//! AckWait/3. A delivery leaves the registry when its [`Held`] guard is dropped, which is
//! once it has been settled.

use crate::input::Delivery;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
pub struct HeldDeliveries {
    next: AtomicU64,
    held: Mutex<HashMap<u64, Delivery>>,
}

/// A delivery's place in the registry; dropping it (after the delivery is settled)
/// stops its keep-alives.
pub struct Held {
    registry: Arc<HeldDeliveries>,
    id: u64,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

impl HeldDeliveries {
    pub fn hold(self: &Arc<Self>, delivery: &Delivery) -> Held {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, delivery.clone());
        Held {
            registry: Arc::clone(self),
            id,
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Sends an in-progress ack for every held delivery every `every`, until `stop`.
    ///
    /// A delivery settled between the snapshot and its keep-alive gets one keep-alive after
    /// its ack, which the server ignores (the message is no longer pending).
    pub async fn keep_alive(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            // Copied out: the lock is never held across an await.
            let held: Vec<Delivery> = self.lock().values().cloned().collect();
            for delivery in held {
                delivery.keep_alive().await;
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Delivery>> {
        // A std Mutex: held for one map operation or one copy, never across an await.
        self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
