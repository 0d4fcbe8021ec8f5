//! From delivery to acknowledgement: parse, keep each key in order, apply with retries,
//! then settle the message. This stage knows neither NATS types nor store internals.

mod breaker;
mod health;
pub(crate) mod keep_alive;
pub(crate) mod ordering;
mod outcome;
mod recipient_sync;
mod retry;
mod worker;

pub use health::StoreHealth;
pub use outcome::Outcome;
pub use recipient_sync::{
    RECIPIENT_IN_FLIGHT, RecipientOutcome, RecipientSyncSettings, recipient_event_type, run_recipient_sync,
};
pub use retry::{RetryDecision, decide};
pub use worker::{Observers, WorkerSettings, run};
