//! The personal channels (email, webpush, fcm, apns) as the delivery stage runs them.
//!
//! The realtime channels and the webhook mirror the feed: every job goes out as it is. A
//! personal channel reaches one person, so for each new notification it first asks the
//! directory who the owner is and what they chose for this channel and event type
//! ([`resolve_mode`]):
//! - `instant`: one message now, to every address the owner has on the channel; past the
//!   owner's limit on the channel (`RATE_LIMIT_OWNER`, [`crate::limits::owner`]), the
//!   notification joins their open digest window instead;
//! - `digest`: the notification joins the owner's open digest window ([`super::digest`]);
//! - `off`, or no address on this channel: nothing is sent.
//!
//! Updates and removals reach no one here: an email cannot be taken back, and a phone
//! already showed its banner. A digest leaves out what was removed or read meanwhile.
//!
//! An address the service says no longer exists (a Web Push 404/410, FCM `UNREGISTERED`,
//! APNs 410) is dropped from the directory through stream `RECIPIENTS`, like every change
//! to it: versioned after the add, seen by every replica once their cache expires.

use super::channel::{Channel, ChannelName, Failure, SendError};
use super::digest::Digests;
use super::job::{Job, Notice};
use super::messenger::{Address, Content, Messenger};
use super::wording;
use crate::domain::Id;
use crate::limits::Admission;
use crate::limits::owner::OwnerLimit;
use crate::recipients::{self, Directory, Mode, NotifyDefaults, PushTarget, Recipient, resolve_mode};
use crate::store::AnyStore;
use crate::telemetry::metrics::Metrics;
use std::sync::Arc;

/// What every personal channel of a process shares.
pub struct People {
    /// The recipient directory, cached.
    pub directory: Directory,
    /// `NOTIFY_DEFAULTS`.
    pub defaults: NotifyDefaults,
    /// The notifications, read back when a digest goes out (still there? still unread?).
    pub feeds: Arc<AnyStore>,
    /// Publishes the directory changes the channels make (a device that is gone).
    pub js: async_nats::jetstream::Context,
    pub metrics: Arc<Metrics>,
    /// `RATE_LIMIT_OWNER`, when on.
    pub owner_limit: Option<OwnerLimit>,
}

impl People {
    /// Drops a device the push service no longer knows: publishes `recipients.push.remove`
    /// (so the change is versioned like the application's) and forgets the cached record.
    /// A failure here is only logged: the next send to the device is refused the same way
    /// and tries again.
    pub async fn forget_device(&self, channel: recipients::Channel, owner: &Id, target: &PushTarget) {
        let body = match target.kind() {
            recipients::PushKind::Webpush => serde_json::json!({
                "owner": owner.as_str(),
                "kind": target.kind().as_str(),
                "subscription": { "endpoint": target.token() },
            }),
            _ => serde_json::json!({
                "owner": owner.as_str(),
                "kind": target.kind().as_str(),
                "token": target.token(),
            }),
        };
        let published = crate::input::publish(
            &self.js,
            recipients::PUSH_REMOVE.to_owned(),
            body.to_string().into(),
        )
        .await;
        self.directory.forget(owner);
        match published {
            Ok(_) => {
                self.metrics.device_removed(channel.as_str());
                tracing::info!(channel = channel.as_str(), %owner, "push target no longer exists; removed from the directory");
            }
            Err(error) => tracing::warn!(
                channel = channel.as_str(),
                %owner,
                error = format!("{error:#}"),
                "push target no longer exists, but its removal could not be published; the next send tries again"
            ),
        }
    }

    /// The mode `channel` uses for `notice`, for this recipient.
    pub fn mode(&self, recipient: &Recipient, channel: recipients::Channel, notice: &Notice) -> Mode {
        match wording::event_type(notice) {
            Some(event_type) => resolve_mode(&self.defaults, Some(recipient), channel, &event_type),
            // No event type to look up (an action code outside the table): no preference
            // can name it, so nobody asked for it.
            None => Mode::Off,
        }
    }
}

/// Where `recipient` is reached on `channel`: their email, or their devices of its kind.
pub fn addresses(recipient: &Recipient, channel: recipients::Channel) -> Vec<Address<'_>> {
    match channel {
        recipients::Channel::Email => recipient.email().map(Address::Email).into_iter().collect(),
        push => recipient
            .push_targets()
            .filter(|target| target.kind().channel() == push)
            .map(Address::Device)
            .collect(),
    }
}

/// Sends `content` to every address of `recipient` on the messenger's channel. `Ok` when
/// each accepted it or is gone (and was dropped); otherwise the first transient failure
/// (worth retrying the whole message), else the first permanent one. A retry sends again
/// to the addresses that accepted it already: at least once per device, as everywhere.
pub async fn send_to_all<M: Messenger>(
    messenger: &M,
    people: &People,
    recipient: &Recipient,
    content: Content<'_>,
) -> Result<(), SendError> {
    let channel = messenger.channel();
    let mut worst: Option<SendError> = None;
    for address in addresses(recipient, channel) {
        match messenger.send(recipient, address, content).await {
            Ok(()) => {}
            Err(error) if error.kind == Failure::Gone => {
                if let Address::Device(target) = address {
                    people.forget_device(channel, recipient.owner(), target).await;
                }
            }
            Err(error) => {
                let transient = matches!(error.kind, Failure::Transient { .. });
                let keep = match &worst {
                    None => true,
                    Some(kept) => transient && !matches!(kept.kind, Failure::Transient { .. }),
                };
                if keep {
                    worst = Some(error);
                }
            }
        }
    }
    worst.map_or(Ok(()), Err)
}

/// A personal channel: a [`Messenger`] behind the directory and the digests.
pub struct PersonalChannel<M> {
    name: ChannelName,
    messenger: Arc<M>,
    people: Arc<People>,
    digests: Digests,
}

impl<M: Messenger> PersonalChannel<M> {
    pub fn new(name: ChannelName, messenger: Arc<M>, people: Arc<People>, digests: Digests) -> Self {
        people.metrics.enable_personal(name.as_str());
        PersonalChannel {
            name,
            messenger,
            people,
            digests,
        }
    }

    async fn one(&self, job: &Job) -> Result<(), SendError> {
        let Job::Created(notice) = job else {
            return Ok(());
        };
        let channel = self.messenger.channel();
        let decided = |decision| self.people.metrics.personal_decided(self.name.as_str(), decision);
        let Ok(owner) = Id::parse("owner", &notice.item.owner) else {
            return Err(SendError::permanent(format!(
                "{:?} is not a valid owner",
                notice.item.owner
            )));
        };
        let recipient = self.people.directory.get(&owner).await.map_err(|error| {
            SendError::transient(format!("cannot read the recipient directory: {}", error.message))
        })?;
        let Some(recipient) = recipient.filter(|recipient| !addresses(recipient, channel).is_empty()) else {
            decided("unreachable");
            return Ok(());
        };
        match self.people.mode(&recipient, channel, notice) {
            Mode::Off => {
                decided("off");
                Ok(())
            }
            Mode::Digest => {
                self.digests.add(&owner, notice).await?;
                decided("digest");
                Ok(())
            }
            Mode::Instant => {
                if let Some(limit) = &self.people.owner_limit
                    && let Admission::Throttled(_) =
                        limit.admit(&owner, channel, notice, &self.people.metrics).await?
                {
                    // Past the owner's limit on this channel: their next digest tells them.
                    self.digests.add(&owner, notice).await?;
                    decided("throttled");
                    return Ok(());
                }
                send_to_all(&*self.messenger, &self.people, &recipient, Content::One(notice)).await?;
                decided("instant");
                Ok(())
            }
        }
    }
}

impl<M: Messenger> Channel for PersonalChannel<M> {
    fn name(&self) -> ChannelName {
        self.name
    }

    async fn send(&self, jobs: &[Job]) -> Vec<Result<(), SendError>> {
        let mut results = Vec::with_capacity(jobs.len());
        for job in jobs {
            results.push(self.one(job).await);
        }
        results
    }
}
