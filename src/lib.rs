//! notification-worker: notification events on NATS in, notifications in each user's feed out.
//!
//! The modules follow the pipeline:
//!
//! - [`input`]: NATS — connection, stream and durable consumer, pulling [`input::Delivery`]s.
//! - [`domain`]: the product's words — the subject table, event validation with stable
//!   reason codes, the stored notification and its action key. No NATS or AWS types.
//! - [`processing`]: per-key ordering, retries, outcomes, acknowledgement after durability.
//! - [`store`]: the [`store::NotificationStore`] contract, SQLite and DynamoDB.
//! - [`recipients`]: the recipient directory's domain — email, locale, push targets and
//!   preferences per owner, their versioned events, and which mode a channel uses.
//! - [`delivery`]: telling people — the outbox the store stage announces to, one consumer
//!   stage per channel, and one file per channel (Pusher, NATS, webhooks).
//!
//! At the edges: [`config`] (one typed tree from flags, environment and `.env`),
//! [`telemetry`] (logs, metrics, readiness), [`http`] (health and metrics endpoints) and
//! [`cli`] (the commands).

pub mod cli;
pub mod config;
pub mod delivery;
pub mod domain;
pub mod http;
pub mod input;
pub mod limits;
pub mod processing;
pub mod recipients;
pub mod store;
pub mod telemetry;
