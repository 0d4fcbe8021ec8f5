//! The one way messages are taken from a consumer, shared by the store stage, each delivery
//! channel and the recipient directory's sync:
//!
//! - pull only what there is room for (one permit of `room` per message held), so no
//!   message ages against AckWait unseen in a buffer;
//! - under load, wait a moment for a sizeable pull rather than asking for a handful of
//!   messages at a time ([`Intake::sizeable`]);
//! - a failed pull is logged and tried again after a growing pause;
//! - a pull is read to its end even during shutdown (the server may already be sending its
//!   messages, see [`Source::pull`]), unless it has gone quiet: then an idle consumer stops
//!   at once instead of waiting for the pull to expire.
//!
//! What differs between the three is a [`Taker`]: what to wait for before each pull, and
//! what to do with each message.

use super::{Delivery, Source};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// Most messages asked for in one pull.
pub const MAX_PULL: usize = 1024;
/// At shutdown, how long the last pull may stay silent before it is no longer read.
const QUIET_PULL_AT_SHUTDOWN: Duration = Duration::from_millis(250);
/// Longest wait for more room before a pull under load.
const TOP_UP_WAIT: Duration = Duration::from_millis(2);

/// The consumer's side of an [`Intake`].
pub trait Taker: Send {
    /// Awaited before each pull (a store that is down, a channel that is down); `false`
    /// stops the intake (shutdown came while waiting).
    fn ready(&mut self) -> impl std::future::Future<Output = bool> + Send {
        async { true }
    }

    /// One message, with the permit of room it holds until it is settled.
    fn take(
        &mut self,
        delivery: Delivery,
        permit: OwnedSemaphorePermit,
    ) -> impl std::future::Future<Output = ()> + Send;
}

/// How one consumer's messages are taken.
pub struct Intake {
    /// Messages held at once: each holds a permit until it is settled.
    pub room: Arc<Semaphore>,
    /// A pull smaller than this waits up to a couple of milliseconds for more room first
    /// (under load, room comes back in bursts: a store commit settles many events at once).
    /// 1: never wait.
    pub sizeable: usize,
    /// For the logs: what is being pulled (`notifications`, `RECIPIENTS`, a channel's name).
    pub what: &'static str,
}

impl Intake {
    /// Takes messages until `shutdown`, handing each to `taker`.
    pub async fn run(&self, source: &mut Source, shutdown: &CancellationToken, taker: &mut impl Taker) {
        let mut pull_failures = 0u32;
        'pulling: loop {
            if !taker.ready().await {
                break;
            }
            // Backpressure: wait for room before asking the server for anything. `biased`:
            // after a signal, shutdown wins even when room is free.
            let first = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                permit = Arc::clone(&self.room).acquire_owned() => permit.expect("the semaphore is never closed"),
            };
            let mut reserved = vec![first];
            self.take_free_room(&mut reserved);
            if reserved.len() < self.sizeable {
                let top_up = async {
                    while reserved.len() < self.sizeable {
                        let permit = Arc::clone(&self.room)
                            .acquire_owned()
                            .await
                            .expect("the semaphore is never closed");
                        reserved.push(permit);
                        self.take_free_room(&mut reserved);
                    }
                };
                let _ = tokio::time::timeout(TOP_UP_WAIT, top_up).await;
            }
            let mut deliveries = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                pulled = source.pull(reserved.len(), shutdown) => match pulled {
                    Ok(deliveries) => deliveries,
                    Err(error) => {
                        pull_failures += 1;
                        tracing::warn!(%error, pulling = self.what, "cannot pull from NATS; trying again");
                        let pause = Duration::from_millis(100 * u64::from(pull_failures.min(50)));
                        tokio::select! {
                            () = tokio::time::sleep(pause) => continue 'pulling,
                            () = shutdown.cancelled() => break 'pulling,
                        }
                    }
                },
            };
            pull_failures = 0;
            loop {
                let next = futures::StreamExt::next(&mut deliveries);
                let item = if shutdown.is_cancelled() {
                    match tokio::time::timeout(QUIET_PULL_AT_SHUTDOWN, next).await {
                        Ok(item) => item,
                        Err(_) => break,
                    }
                } else {
                    tokio::select! {
                        item = next => item,
                        // Re-enter with the timeout above as soon as shutdown begins.
                        () = shutdown.cancelled() => continue,
                    }
                };
                match item {
                    Some(Ok(delivery)) => {
                        let permit = reserved
                            .pop()
                            .expect("a pull never yields more than it asked for");
                        taker.take(delivery, permit).await;
                    }
                    // Never end silently: log and pull again.
                    Some(Err(error)) => {
                        tracing::warn!(%error, pulling = self.what, "error while receiving from NATS; pulling again");
                        break;
                    }
                    None => break,
                }
            }
        }
    }

    fn take_free_room(&self, reserved: &mut Vec<OwnedSemaphorePermit>) {
        while reserved.len() < MAX_PULL {
            match Arc::clone(&self.room).try_acquire_owned() {
                Ok(permit) => reserved.push(permit),
                Err(_) => break,
            }
        }
    }
}
