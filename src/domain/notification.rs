//! The stored notification and the change an event makes to a feed.

use super::{Action, Group, Id, Join};
use serde::Serialize;
use std::fmt;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceType {
    Post,
    Comment,
    User,
}

impl ResourceType {
    pub const ALL: [ResourceType; 3] = [ResourceType::Post, ResourceType::Comment, ResourceType::User];

    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::Post => "POST",
            ResourceType::Comment => "COMMENT",
            ResourceType::User => "USER",
        }
    }

    pub fn parse(value: &str) -> Option<ResourceType> {
        ResourceType::ALL.into_iter().find(|kind| kind.as_str() == value)
    }
}

/// A moment, to the second, in UTC; stored as RFC 3339 (`2025-12-09T22:06:40Z`), which
/// sorts as text in time order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    pub fn now() -> Timestamp {
        Timestamp::from_unix(OffsetDateTime::now_utc().unix_timestamp()).expect("the clock is in range")
    }

    /// `None` outside the range an RFC 3339 year can hold.
    pub fn from_unix(seconds: i64) -> Option<Timestamp> {
        let moment = OffsetDateTime::from_unix_timestamp(seconds).ok()?;
        (0..=9999).contains(&moment.year()).then_some(Timestamp(moment))
    }

    /// Reads [`Timestamp::to_rfc3339`] back (any RFC 3339 moment, to the second).
    pub fn parse(text: &str) -> Option<Timestamp> {
        let moment = OffsetDateTime::parse(text, &Rfc3339).ok()?;
        Timestamp::from_unix(moment.unix_timestamp())
    }

    pub fn unix(self) -> i64 {
        self.0.unix_timestamp()
    }

    pub fn to_rfc3339(self) -> String {
        self.0
            .format(&Rfc3339)
            .expect("years 0..=9999 format as RFC 3339")
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// The sort key of a notification: `{trigger_user}#{resource_id}#{action}#0001-01-01T00:00:00Z`.
///
/// The last part is a constant kept so that keys match rows the first version wrote. Ids
/// cannot hold `#` ([`Id`]), so no event can forge another user's key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ActionKey(String);

impl ActionKey {
    const LEGACY_SUFFIX: &'static str = "0001-01-01T00:00:00Z";

    pub fn new(trigger_user: &Id, resource_id: &Id, action: Action) -> ActionKey {
        ActionKey(format!(
            "{trigger_user}#{resource_id}#{}#{}",
            action.code(),
            ActionKey::LEGACY_SUFFIX
        ))
    }

    /// The key of an aggregate (see [`super::Group::key`]).
    pub fn aggregate(resource_id: &Id, action: Action, generation: u64) -> ActionKey {
        ActionKey(format!("#{resource_id}#{}#aggregate-{generation}", action.code()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ActionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One notification in a user's feed, as the API and mobile client read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub owner: Id,
    pub action_key: ActionKey,
    pub id: uuid::Uuid,
    pub trigger_user: Id,
    pub username: Option<String>,
    pub user_picture: Option<String>,
    pub user_bio: Option<String>,
    pub action: Action,
    pub resource_type: ResourceType,
    pub resource_id: Id,
    pub excerpt: Option<String>,
    pub read_status: bool,
    pub created_at: Timestamp,
}

/// What one event asks of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Add this notification unless one with the same key exists.
    Create(Notification),
    /// Delete the notification with this key, if there is one.
    Remove { owner: Id, action_key: ActionKey },
    /// An aggregated create (`AGGREGATE`): the actor joins the group's unread aggregate.
    Join(Join),
    /// An aggregated remove: the actor leaves the aggregate it joined, if still unread.
    Leave { group: Group, actor: Id },
}

impl Change {
    /// Gives a create the id of the life it would start: derived from the event's version
    /// and key, so every delivery of one event, on any replica, names the same notification
    /// (the delivery stage's message ids and receivers' deduplication rely on it).
    pub fn identified(self, version: super::Version) -> Change {
        match self {
            Change::Create(mut notification) => {
                notification.id = life_id(version, &notification.owner, &notification.action_key);
                Change::Create(notification)
            }
            remove => remove,
        }
    }

    pub fn owner(&self) -> &Id {
        match self {
            Change::Create(notification) => &notification.owner,
            Change::Remove { owner, .. } => owner,
            Change::Join(join) => &join.group.owner,
            Change::Leave { group, .. } => &group.owner,
        }
    }

    /// What the change is about within the owner's feed, for ordering and logs: the
    /// notification's key, or an aggregate's group (its key depends on the generation,
    /// which only the store knows).
    pub fn subject(&self) -> &dyn fmt::Display {
        match self {
            Change::Create(notification) => &notification.action_key,
            Change::Remove { action_key, .. } => action_key,
            Change::Join(join) => &join.group,
            Change::Leave { group, .. } => group,
        }
    }

    /// The key of the notification a create or remove is about (`None` for an aggregate's
    /// join or leave, whose key depends on the generation the store finds).
    pub fn action_key(&self) -> Option<&ActionKey> {
        match self {
            Change::Create(notification) => Some(&notification.action_key),
            Change::Remove { action_key, .. } => Some(action_key),
            Change::Join(_) | Change::Leave { .. } => None,
        }
    }

    /// Whether this change adds (a create or a join) rather than takes away.
    pub fn creates(&self) -> bool {
        matches!(self, Change::Create(_) | Change::Join(_))
    }

    /// The user whose action this change is.
    pub fn trigger_user(&self) -> Option<&Id> {
        match self {
            Change::Create(notification) => Some(&notification.trigger_user),
            Change::Join(join) => Some(&join.actor.id),
            Change::Leave { actor, .. } => Some(actor),
            Change::Remove { .. } => None,
        }
    }
}

/// A stored notification as read back for display (`feed`): the stored attribute names,
/// plain values, whatever wrote them.
/// The id of the life an event at `version` starts on (owner, action_key): a UUID (version 8)
/// from the first 16 bytes of a SHA-256 of the three.
pub fn life_id(version: super::Version, owner: &Id, action_key: &ActionKey) -> uuid::Uuid {
    let text = format!("{}\n{owner}\n{action_key}", version.to_number());
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest.as_ref()[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct FeedItem {
    pub owner: String,
    pub action_key: String,
    pub id: String,
    pub userid: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub userpic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub userbio: Option<String>,
    pub action: i64,
    pub resource_type: String,
    pub resource_id: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub excerpt: Option<String>,
    pub read_status: bool,
    pub created_at: String,
    /// An aggregate's (`AGGREGATE`): how many actors it stands for, exactly.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub actor_count: Option<u64>,
    /// An aggregate's: the latest three actors, newest first.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub actors: Option<Vec<super::NamedActor>>,
}

impl From<&Notification> for FeedItem {
    fn from(n: &Notification) -> FeedItem {
        FeedItem {
            owner: n.owner.to_string(),
            action_key: n.action_key.to_string(),
            id: n.id.to_string(),
            userid: n.trigger_user.to_string(),
            username: n.username.clone(),
            userpic: n.user_picture.clone(),
            userbio: n.user_bio.clone(),
            action: i64::from(n.action.code()),
            resource_type: n.resource_type.as_str().to_owned(),
            resource_id: n.resource_id.to_string(),
            excerpt: n.excerpt.clone(),
            read_status: n.read_status,
            created_at: n.created_at.to_rfc3339(),
            actor_count: None,
            actors: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_key_keeps_the_first_versions_shape() {
        let key = ActionKey::new(
            &Id::parse("trigger_user", "user-456").unwrap(),
            &Id::parse("resource_id", "post-789").unwrap(),
            Action::from_code(1).unwrap(),
        );
        assert_eq!(key.as_str(), "user-456#post-789#1#0001-01-01T00:00:00Z");
    }

    #[test]
    fn a_life_is_named_by_its_event() {
        let owner = Id::parse("owner", "user-123").unwrap();
        let key = ActionKey::new(
            &Id::parse("trigger_user", "user-456").unwrap(),
            &Id::parse("resource_id", "post-789").unwrap(),
            Action::from_code(1).unwrap(),
        );
        let v = |sequence| crate::domain::Version::new(7, sequence).unwrap();
        assert_eq!(life_id(v(1), &owner, &key), life_id(v(1), &owner, &key));
        assert_ne!(life_id(v(1), &owner, &key), life_id(v(2), &owner, &key));
        let other = Id::parse("owner", "user-124").unwrap();
        assert_ne!(life_id(v(1), &owner, &key), life_id(v(1), &other, &key));
        assert_eq!(life_id(v(1), &owner, &key).get_version_num(), 8);
    }

    #[test]
    fn timestamps_format_as_rfc3339_seconds_utc() {
        assert_eq!(
            Timestamp::from_unix(1765318000).unwrap().to_rfc3339(),
            "2025-12-09T22:06:40Z"
        );
        assert!(Timestamp::from_unix(i64::MAX).is_none());
    }
}
