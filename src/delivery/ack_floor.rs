//! A consumer's ack floor (the stream sequence below which every message is settled), read
//! from the server at most every [`READ_EVERY`] however many tasks wait for it. Order
//! across replicas rests on it: what is below the floor is settled, whichever replica held it.

use async_nats::jetstream::consumer::PullConsumer;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const READ_EVERY: Duration = Duration::from_millis(50);

pub struct AckFloor {
    consumer: Mutex<PullConsumer>,
    last: std::sync::Mutex<(u64, Option<Instant>)>,
}

/// Shutdown came while waiting.
#[derive(Debug)]
pub struct Interrupted;

impl AckFloor {
    pub fn new(consumer: PullConsumer) -> AckFloor {
        AckFloor {
            consumer: Mutex::new(consumer),
            last: std::sync::Mutex::new((0, None)),
        }
    }

    /// Waits until every message up to `sequence` is settled on the consumer; `Ok(false)`
    /// when `longest` passed first.
    pub async fn wait_past(
        &self,
        sequence: u64,
        longest: Duration,
        shutdown: &CancellationToken,
    ) -> Result<bool, Interrupted> {
        let started = Instant::now();
        loop {
            if self.read().await >= sequence {
                return Ok(true);
            }
            if started.elapsed() > longest {
                return Ok(false);
            }
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return Err(Interrupted),
                () = tokio::time::sleep(READ_EVERY) => {}
            }
        }
    }

    fn recent(&self) -> Option<u64> {
        let last = self.last.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        last.1
            .is_some_and(|read| read.elapsed() < READ_EVERY)
            .then_some(last.0)
    }

    async fn read(&self) -> u64 {
        if let Some(floor) = self.recent() {
            return floor;
        }
        let mut consumer = self.consumer.lock().await;
        // Another waiter may have read it while this one waited for the lock.
        if let Some(floor) = self.recent() {
            return floor;
        }
        let read = match consumer.info().await {
            Ok(info) => info.ack_floor.stream_sequence,
            Err(error) => {
                tracing::debug!(%error, "cannot read a consumer's ack floor");
                0
            }
        };
        let mut last = self.last.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *last = (last.0.max(read), Some(Instant::now()));
        last.0
    }
}
