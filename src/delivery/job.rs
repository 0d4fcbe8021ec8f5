//! A delivery job: what the store stage tells the delivery stage, one message in the outbox
//! stream. Each kind has its own message id, which receivers deduplicate on.

use crate::domain::{FeedItem, Notification, Version};
use serde::{Deserialize, Serialize, Serializer};

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

    /// The outbox subject of this kind's jobs ([`SUBJECT_PREFIX`] and the kind). Static:
    /// the store stage publishes one job per new notification, and NATS takes a static
    /// subject without copying it.
    pub fn subject(self) -> &'static str {
        match self {
            JobKind::Created => "deliveries.created",
            JobKind::Updated => "deliveries.updated",
            JobKind::Removed => "deliveries.removed",
        }
    }
}

/// A notification as a created or updated job carries it: the stored attributes and the
/// version they are at, in one JSON object (see [`NoticeFields`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Notice {
    #[serde(flatten)]
    pub item: FeedItem,
    /// The notification's version (decimal digits; larger is newer). A string: it does not
    /// fit a JavaScript number.
    pub version: String,
    /// When the job carrying it was published to the outbox, as the delivery stage read it;
    /// `None` anywhere else (it is not in the job's JSON). The time the owner limit counts
    /// by: the same on every replica and every redelivery of the job.
    #[serde(skip)]
    pub published: Option<time::OffsetDateTime>,
    /// An update's: the outbox sequence of its notification's `created` job, when the
    /// update was announced while that job could still be in flight (see
    /// `outbox::Announcer::claim_aggregate_created`): channels send the update only once
    /// that job is settled. Not sent to clients.
    #[serde(default)]
    pub created_job: Option<u64>,
}

impl Notice {
    pub fn new(item: FeedItem, version: Version) -> Notice {
        Notice {
            item,
            version: version.to_number().to_string(),
            published: None,
            created_job: None,
        }
    }
}

impl Serialize for Notice {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        NoticeFields::from_notice(self).serialize(serializer)
    }
}

/// A notice as it is written: [`FeedItem`]'s attributes in its order, then the version, all
/// borrowed. What `#[serde(flatten)]` wrote, without its cost: a flattened struct goes
/// through serde's map machinery, and the store stage writes a notice for every new
/// notification before it acks the event; it writes this straight from the
/// [`Notification`], with no owned [`FeedItem`] in between. A unit test checks that the
/// bytes are those the flattened struct wrote (and so that no attribute is missing).
#[derive(Serialize)]
struct NoticeFields<'a> {
    owner: &'a str,
    action_key: &'a str,
    id: &'a str,
    userid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    userpic: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    userbio: Option<&'a str>,
    action: i64,
    resource_type: &'a str,
    resource_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    excerpt: Option<&'a str>,
    read_status: bool,
    created_at: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    actor_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    actors: Option<&'a [crate::domain::NamedActor]>,
    version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_job: Option<u64>,
}

impl<'a> NoticeFields<'a> {
    fn from_notice(notice: &'a Notice) -> NoticeFields<'a> {
        let (item, version) = (&notice.item, notice.version.as_str());
        NoticeFields {
            owner: &item.owner,
            action_key: &item.action_key,
            id: &item.id,
            userid: &item.userid,
            username: item.username.as_deref(),
            userpic: item.userpic.as_deref(),
            userbio: item.userbio.as_deref(),
            action: item.action,
            resource_type: &item.resource_type,
            resource_id: &item.resource_id,
            excerpt: item.excerpt.as_deref(),
            read_status: item.read_status,
            created_at: &item.created_at,
            actor_count: item.actor_count,
            actors: item.actors.as_deref(),
            version,
            created_job: notice.created_job,
        }
    }
}

/// A job's body as it is written, borrowed: the same adjacently tagged object as [`Job`].
#[derive(Serialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
enum JobBody<'a> {
    Created(NoticeFields<'a>),
    Updated(NoticeFields<'a>),
    Removed(&'a Removal),
}

/// A `created` job as the store stage announces it: its message id and its body, written
/// straight from the stored notification (the same bytes as [`Job::created`]'s
/// [`Job::to_bytes`]).
pub struct Announcement {
    /// The notification's id, which is the job's message id.
    pub message_id: String,
    pub body: bytes::Bytes,
}

impl Announcement {
    pub fn created(notification: &Notification, version: Version) -> Announcement {
        let mut id = uuid::Uuid::encode_buffer();
        let id: &str = notification.id.hyphenated().encode_lower(&mut id);
        let created_at = notification.created_at.to_rfc3339();
        let version = version.to_number().to_string();
        let body = JobBody::Created(NoticeFields {
            owner: notification.owner.as_str(),
            action_key: notification.action_key.as_str(),
            id,
            userid: notification.trigger_user.as_str(),
            username: notification.username.as_deref(),
            userpic: notification.user_picture.as_deref(),
            userbio: notification.user_bio.as_deref(),
            action: i64::from(notification.action.code()),
            resource_type: notification.resource_type.as_str(),
            resource_id: notification.resource_id.as_str(),
            excerpt: notification.excerpt.as_deref(),
            read_status: notification.read_status,
            created_at: &created_at,
            actor_count: None,
            actors: None,
            version: &version,
            created_job: None,
        });
        Announcement {
            message_id: id.to_owned(),
            body: to_bytes(&body),
        }
    }
}

/// A job's JSON. Most bodies are a few hundred bytes: one allocation of this size is
/// usually enough.
fn to_bytes(body: &JobBody<'_>) -> bytes::Bytes {
    let mut buffer = Vec::with_capacity(512);
    serde_json::to_writer(&mut buffer, body).expect("a job serializes");
    buffer.into()
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

/// One outbox message's body (written as [`JobBody`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum Job {
    Created(Notice),
    Updated(Notice),
    Removed(Removal),
}

impl Serialize for Job {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.body().serialize(serializer)
    }
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
        Job::created_item(FeedItem::from(notification), version)
    }

    /// The `created` job of `item` as stored: an aggregate started by its first actor
    /// (`version` is then the aggregate's revision, see `store::aggregates`).
    pub fn created_item(item: FeedItem, version: Version) -> Job {
        Job::Created(Notice::new(item, version))
    }

    /// An update, sent once the `created` job at outbox sequence `created_job` is settled.
    pub fn updated(item: FeedItem, version: Version, created_job: Option<u64>) -> Job {
        Job::Updated(Notice {
            created_job,
            ..Notice::new(item, version)
        })
    }

    /// The outbox sequence of the `created` job this one must wait for, if any.
    pub fn created_job(&self) -> Option<u64> {
        match self {
            Job::Created(_) => None,
            Job::Updated(notice) => notice.created_job,
            Job::Removed(removal) => removal.created_job,
        }
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

    pub fn subject(&self) -> &'static str {
        self.kind().subject()
    }

    fn body(&self) -> JobBody<'_> {
        match self {
            Job::Created(notice) => JobBody::Created(NoticeFields::from_notice(notice)),
            Job::Updated(notice) => JobBody::Updated(NoticeFields::from_notice(notice)),
            Job::Removed(removal) => JobBody::Removed(removal),
        }
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
                    fields.remove("created_job");
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
                let mut data = serde_json::to_value(notice).expect("a notice serializes");
                if let Some(fields) = data.as_object_mut() {
                    fields.remove("created_job");
                }
                data
            }
            Job::Removed(removal) => removal_data(removal),
        }
    }

    pub fn to_bytes(&self) -> bytes::Bytes {
        to_bytes(&self.body())
    }

    pub fn parse(body: &[u8]) -> Result<Job, String> {
        serde_json::from_slice(body).map_err(|error| format!("not a delivery job: {error}"))
    }

    /// The job as read from an outbox message published at `published`.
    pub fn published_at(mut self, published: Option<time::OffsetDateTime>) -> Job {
        if let Job::Created(notice) | Job::Updated(notice) = &mut self {
            notice.published = published;
        }
        self
    }

    /// A sample, for `deliver test`.
    pub fn sample(owner: &str) -> Job {
        Job::Created(Notice::sample(owner))
    }
}

impl Notice {
    /// A like of post-789 by John Doe (user-456) for `owner`, with an excerpt and a fresh id:
    /// `deliver test`'s sample, and the unit tests' starting point.
    pub fn sample(owner: &str) -> Notice {
        Notice {
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
                actor_count: None,
                actors: None,
            },
            version: "0".to_owned(),
            published: None,
            created_job: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Aggregation, Change, Decision, EventPolicy, Timestamp, parse_event};

    /// How jobs were written before [`NoticeFields`]: with `#[serde(flatten)]`.
    #[derive(Serialize)]
    #[serde(tag = "type", content = "data", rename_all = "snake_case")]
    enum FlattenedJob {
        Created(FlattenedNotice),
        Updated(FlattenedNotice),
        Removed(Removal),
    }

    #[derive(Serialize)]
    struct FlattenedNotice {
        #[serde(flatten)]
        item: FeedItem,
        version: String,
    }

    fn flattened(job: &Job) -> String {
        let notice = |notice: &Notice| FlattenedNotice {
            item: notice.item.clone(),
            version: notice.version.clone(),
        };
        let job = match job {
            Job::Created(n) => FlattenedJob::Created(notice(n)),
            Job::Updated(n) => FlattenedJob::Updated(notice(n)),
            Job::Removed(removal) => FlattenedJob::Removed(removal.clone()),
        };
        serde_json::to_string(&job).unwrap()
    }

    fn text(bytes: &[u8]) -> &str {
        std::str::from_utf8(bytes).unwrap()
    }

    fn notification(body: &str) -> Notification {
        let policy = EventPolicy {
            allow_http_pictures: false,
            now: Timestamp::from_unix(1_765_318_000).unwrap(),
            aggregate: Aggregation::OFF,
        };
        match parse_event("notifications.post.like", body.as_bytes(), &policy) {
            Ok((_, Decision::Apply(Change::Create(notification)))) => notification,
            Ok(_) => panic!("not a create: {body}"),
            Err(rejection) => panic!("{}: {body}", rejection.message),
        }
    }

    #[test]
    fn jobs_are_written_byte_for_byte_as_the_flattened_notice_wrote_them() {
        let every_attribute = notification(
            r#"{"owner":"user-1","trigger_user":"user-2","resource_type":"POST","resource_id":"post-3",
                "username":"Zoë \"Z\" Ünal 🎉","user_picture":"https://example.com/p.png",
                "user_bio":"line\nbreak \\ back\/slash","excerpt":"<b>bold</b> & \u00e9 \u2028",
                "action":1,"created_at":1765318000}"#,
        );
        let fewest = notification(
            r#"{"owner":"user.1","trigger_user":"user-2","action":1,"resource_type":"POST","resource_id":"post-3"}"#,
        );
        let version = Version::new(1_765_318_000_123_456, 42).unwrap();
        for notification in [every_attribute, fewest] {
            let created = Job::created(&notification, version);
            let written = created.to_bytes();
            assert_eq!(text(&written), flattened(&created));
            let announced = Announcement::created(&notification, version);
            assert_eq!(text(&announced.body), text(&written));
            assert_eq!(announced.message_id, created.message_id());
            assert_eq!(Job::parse(&written).unwrap(), created);

            let Job::Created(notice) = created else {
                unreachable!()
            };
            let updated = Job::Updated(notice);
            assert_eq!(text(&updated.to_bytes()), flattened(&updated));
            // to_value goes through the same Serialize: receivers' data is unchanged too.
            assert_eq!(
                updated.full_data(),
                serde_json::from_str::<serde_json::Value>(&flattened(&updated)).unwrap()["data"]
            );
        }
        for created_job in [Some(7), None] {
            let removed = Job::removed("user-1", "k", "id-1", version, created_job);
            assert_eq!(text(&removed.to_bytes()), flattened(&removed));
        }
        // An aggregate's jobs carry its count and latest actors too.
        let mut item = FeedItem::from(&notification(
            r#"{"owner":"user-1","trigger_user":"user-2","action":1,"resource_type":"POST","resource_id":"post-3"}"#,
        ));
        item.actor_count = Some(5);
        item.actors = Some(vec![crate::domain::NamedActor {
            userid: "user-2".into(),
            username: Some("Ann".into()),
            userpic: None,
        }]);
        for job in [
            Job::created_item(item.clone(), version),
            Job::updated(item.clone(), version, None),
        ] {
            assert_eq!(text(&job.to_bytes()), flattened(&job));
            assert_eq!(job.client_data()["actor_count"], 5);
            assert_eq!(job.client_data()["actors"][0]["username"], "Ann");
            assert_eq!(Job::parse(&job.to_bytes()).unwrap(), job);
        }
        // An update waiting for its banner keeps that job's sequence to itself.
        let update = Job::updated(item, version, Some(9));
        assert_eq!(Job::parse(&update.to_bytes()).unwrap().created_job(), Some(9));
        assert!(update.client_data().get("created_job").is_none());
        assert!(update.full_data().get("created_job").is_none());
    }

    #[test]
    fn each_kind_has_a_subject_under_the_outbox_filter() {
        for kind in JobKind::ALL {
            assert_eq!(kind.subject(), format!("{SUBJECT_PREFIX}{}", kind.as_str()));
            assert!(
                kind.subject()
                    .starts_with(super::super::outbox::OUTBOX_FILTER.trim_end_matches('>'))
            );
        }
    }

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
