//! The product's own words, as types that cannot be built invalid.
//!
//! Nothing here knows about NATS, SQLite or DynamoDB: the input hands in a subject and a
//! body, and gets back either a [`Change`] for the store, a self-notification to skip, or a
//! [`Rejection`] with a stable [`Reason`] code.

mod aggregate;
mod event;
mod event_type;
mod id;
mod notification;
mod rejection;
mod version;

pub use aggregate::{
    Actor, Aggregation, Counted, Group, Join, JoinPlan, LeavePlan, Member, NAMED_ACTORS, NamedActor, Tally,
    actors_json, plan_join, plan_leave,
};
pub(crate) use event::read_json;
pub use event::{Decision, EventPolicy, MAX_BODY_BYTES, parse_event};
pub use event_type::{
    ACTIONS, Action, EventType, Operation, SUBJECT_FILTER, SUBJECT_PREFIX, SUBJECTS, event_type_label,
};
pub use id::Id;
pub use notification::{ActionKey, Change, FeedItem, Notification, ResourceType, Timestamp, life_id};
pub use rejection::{Reason, Rejection};
pub use version::Version;
