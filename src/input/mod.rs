//! Where events come from: NATS. This is the only module that knows NATS types; the rest
//! of the worker sees [`Delivery`]s with a subject, a body and a way to acknowledge.

mod connection;
mod connection_log;
mod dead_letter;
mod delivery;
mod intake;
mod jetstream;
mod source;

pub use connection::{connect, install_tls_provider};
pub use dead_letter::{
    DELIVERIES_DLQ_STREAM, DLQ_PREFIX, DLQ_STREAM, DeadLetters, RECIPIENTS_DLQ_STREAM, header as dlq_header,
};
pub use delivery::Delivery;
pub use intake::{Intake, MAX_PULL, Taker};
pub use jetstream::{
    ACK_WAIT, ConsumerLimits, ConsumerRefused, DELIVERY_ACK_WAIT, RECIPIENTS_CONSUMER, RECIPIENTS_STREAM,
    ensure_consumer, ensure_consumer_on, ensure_recipients_stream, ensure_stream, existing_stream, publish,
    publish_with_headers, shorten_ack_wait, warn_if_slow_to_recover,
};
pub use source::Source;
