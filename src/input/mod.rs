//! Where events come from: NATS. This is the only module that knows NATS types; the rest
//! of the worker sees [`Delivery`]s with a subject, a body and a way to acknowledge.

mod connection;
mod delivery;
mod jetstream;
mod source;

pub use connection::connect;
pub use delivery::Delivery;
pub use jetstream::{AckWait, ensure_consumer, ensure_stream, publish};
pub use source::Source;
