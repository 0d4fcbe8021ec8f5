//! A delivery job: what the store stage tells the delivery stage, one message in the outbox
//! stream. Each kind has its own message id, which receivers deduplicate on.

use crate::domain::{FeedItem, Notification, Version};
use serde::{Deserialize, Serialize};

/// What happened to a notification. The same three on every channel, under each channel's
/// own name (see [`JobKind::realtime_event`] and [`JobKind::webhook_type`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    Created,
    Updated,
    Removed,
}

impl JobKind {
    pub const ALL: [JobKind; 3] = [JobKind::Created, JobKind::Updated, JobKind::Removed];

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Created => "created",
            JobKind::Updated => "updated",
            JobKind::Removed => "removed",
        }
    }

    /// The event name on Pusher and on NATS.
    pub fn realtime_event(self) -> &'static str {
        match self {
            JobKind::Created => "new-notification",
            JobKind::Updated => "notification-updated",
            JobKind::Removed => "notification-removed",
        }
    }

    /// The webhook payload's `type`.
    pub fn webhook_type(self) -> &'static str {
        match self {
            JobKind::Created => "notification.created",
            JobKind::Updated => "notification.updated",
            JobKind::Removed => "notification.removed",
        }
    }
}

/// A notification as a created or updated job carries it: the stored attributes and the
/// version they are at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    #[serde(flatten)]
    pub item: FeedItem,
    /// The notification's version (decimal digits; larger is newer). A string: it does not
    /// fit a JavaScript number.
    pub version: String,
}

/// What a removed job says: which notification is gone, and the version of the remove.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removal {
    pub id: String,
    pub owner: String,
    pub action_key: String,
    pub version: String,
    /// The outbox sequence of this notification's `created` job, when it is in the outbox:
    /// the removal is sent only once that job is settled. Not sent to clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_job: Option<u64>,
}

/// One outbox message's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum Job {
    Created(Notice),
    Updated(Notice),
    Removed(Removal),
}

/// A removal as receivers see it: without the outbox bookkeeping.
fn removal_data(removal: &Removal) -> serde_json::Value {
    serde_json::json!({
        "id": removal.id,
        "owner": removal.owner,
        "action_key": removal.action_key,
        "version": removal.version,
    })
}

/// Prefix of the outbox's subjects (`deliveries.created`, ...).
pub const SUBJECT_PREFIX: &str = "deliveries.";

impl Job {
    pub fn created(notification: &Notification, version: Version) -> Job {
        Job::Created(Notice {
            item: FeedItem::from(notification),
            version: version.to_number().to_string(),
        })
    }

    pub fn removed(
        owner: &str,
        action_key: &str,
        id: &str,
        version: Version,
        created_job: Option<u64>,
    ) -> Job {
        Job::Removed(Removal {
            id: id.to_owned(),
            owner: owner.to_owned(),
            action_key: action_key.to_owned(),
            version: version.to_number().to_string(),
            created_job,
        })
    }

    pub fn kind(&self) -> JobKind {
        match self {
            Job::Created(_) => JobKind::Created,
            Job::Updated(_) => JobKind::Updated,
            Job::Removed(_) => JobKind::Removed,
        }
    }

    /// The notification's id.
    pub fn id(&self) -> &str {
        match self {
            Job::Created(notice) | Job::Updated(notice) => &notice.item.id,
            Job::Removed(removal) => &removal.id,
        }
    }

    pub fn owner(&self) -> &str {
        match self {
            Job::Created(notice) | Job::Updated(notice) => &notice.item.owner,
            Job::Removed(removal) => &removal.owner,
        }
    }

    pub fn version(&self) -> &str {
        match self {
            Job::Created(notice) | Job::Updated(notice) => &notice.version,
            Job::Removed(removal) => &removal.version,
        }
    }

    /// `Nats-Msg-Id` in the outbox, `webhook-id` on webhooks: `{id}`, `{id}_removed`,
    /// `{id}_v{version}`. The same job always gets the same one, so a republished job is
    /// dropped by the outbox's duplicate window and by receivers.
    pub fn message_id(&self) -> String {
        match self {
            Job::Created(notice) => notice.item.id.clone(),
            Job::Updated(notice) => format!("{}_v{}", notice.item.id, notice.version),
            Job::Removed(removal) => format!("{}_removed", removal.id),
        }
    }

    pub fn subject(&self) -> String {
        format!("{SUBJECT_PREFIX}{}", self.kind().as_str())
    }

    /// What realtime clients (Pusher, NATS) get as the event's data: the attributes the
    /// client reads and the version; a removal's id, owner, action_key and version.
    pub fn client_data(&self) -> serde_json::Value {
        match self {
            Job::Created(notice) | Job::Updated(notice) => {
                let mut data = serde_json::to_value(notice).expect("a notice serializes");
                if let Some(fields) = data.as_object_mut() {
                    // The client addresses notifications by id; the key stays server-side.
                    fields.remove("action_key");
                }
                data
            }
            Job::Removed(removal) => removal_data(removal),
        }
    }

    /// What webhooks get as `data`: every stored attribute and the version.
    pub fn full_data(&self) -> serde_json::Value {
        match self {
            Job::Created(notice) | Job::Updated(notice) => {
                serde_json::to_value(notice).expect("a notice serializes")
            }
            Job::Removed(removal) => removal_data(removal),
        }
    }

    pub fn to_bytes(&self) -> bytes::Bytes {
        serde_json::to_vec(self).expect("a job serializes").into()
    }

    pub fn parse(body: &[u8]) -> Result<Job, String> {
        serde_json::from_slice(body).map_err(|error| format!("not a delivery job: {error}"))
    }

    /// A sample, for `deliver test`.
    pub fn sample(owner: &str) -> Job {
        Job::Created(Notice {
            item: FeedItem {
                owner: owner.to_owned(),
                action_key: "user-456#post-789#1#0001-01-01T00:00:00Z".to_owned(),
                id: uuid::Uuid::new_v4().to_string(),
                userid: "user-456".to_owned(),
                username: Some("John Doe".to_owned()),
                userpic: None,
                userbio: None,
                action: 1,
                resource_type: "POST".to_owned(),
                resource_id: "post-789".to_owned(),
                excerpt: Some("A test notification from notification-worker".to_owned()),
                read_status: false,
                created_at: crate::domain::Timestamp::now().to_rfc3339(),
            },
            version: "0".to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_own_message_id() {
        let created = Job::sample("user-123");
        let id = created.id().to_owned();
        assert_eq!(created.message_id(), id);
        let Job::Created(notice) = created.clone() else {
            unreachable!()
        };
        let updated = Job::Updated(Notice {
            version: "42".into(),
            ..notice
        });
        assert_eq!(updated.message_id(), format!("{id}_v42"));
        let removed = Job::removed("user-123", "k", &id, Version::new(1, 2).unwrap(), Some(7));
        assert_eq!(removed.message_id(), format!("{id}_removed"));
        assert!(removed.client_data().get("created_job").is_none());
        assert!(removed.full_data().get("created_job").is_none());
        assert_eq!(Job::parse(&removed.to_bytes()).unwrap(), removed);
    }

    #[test]
    fn a_job_survives_the_outbox() {
        let job = Job::sample("user-123");
        assert_eq!(Job::parse(&job.to_bytes()).unwrap(), job);
        let text = String::from_utf8(job.to_bytes().to_vec()).unwrap();
        assert!(
            text.starts_with(r#"{"type":"created","data":{"owner":"user-123""#),
            "{text}"
        );
        let client = job.client_data();
        assert!(client.get("action_key").is_none() && client["version"] == "0");
        assert_eq!(
            job.full_data()["action_key"],
            "user-456#post-789#1#0001-01-01T00:00:00Z"
        );
    }
}
