//! The recipient directory's domain: who is reached where, and how (issue 10).
//!
//! Pure logic, like [`crate::domain`]: no NATS, SQLite or DynamoDB types. It holds
//!
//! - the vocabulary of preferences ([`Channel`], [`PreferenceChannel`], [`EventTypeName`],
//!   [`Mode`]) and the contact details ([`Email`], [`Locale`], [`PushTarget`]), each checked
//!   when it is built;
//! - the events of stream `RECIPIENTS` ([`parse_recipient_event`]), validated like
//!   notification events, with the same reason codes;
//! - one owner's [`Recipient`] record and its versioned, order-independent merge, and its
//!   storage form ([`Recipient::to_stored`]);
//! - `NOTIFY_DEFAULTS` ([`NotifyDefaults`]) and [`resolve_mode`], the one place that decides
//!   a channel's mode for a person and an event type.
//!
//! The stores that keep the records are in [`crate::store`], and the stream's consumer in
//! `crate::processing` (it needs NATS), the command line in `crate::cli` (`recipient`); the
//! channels come in later steps.

mod contact;
mod directory;
mod event;
mod preferences;
mod record;
mod stored;
mod vocabulary;

pub use contact::{Email, Locale, PushKind, PushTarget, TargetKey, WebPushKeys};
pub use directory::{CacheSettings, Directory};
pub use event::{
    MAX_PREFERENCES, PUSH_ADD, PUSH_REMOVE, RECIPIENT_SUBJECTS, RECIPIENTS_SUBJECT_FILTER, REMOVE,
    RecipientChange, RecipientEvent, RecipientPolicy, UPSERT, Upsert, parse_recipient_event,
};
pub use preferences::{DEFAULT_NOTIFY_DEFAULTS, FALLBACK_MODE, NotifyDefaults, resolve_mode};
pub use record::{Applied, Recipient, TargetState, Versioned};
pub use vocabulary::{Channel, EventTypeName, Mode, PreferenceChannel};
