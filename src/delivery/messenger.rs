//! The contract of the channels that reach one person: `email`, `webpush`, `fcm`, `apns`.
//!
//! The realtime channels and the webhook mirror the feed, so every job goes out on them
//! as it is. A personal channel first asks the recipient directory who the owner is and
//! what they want (see `personal.rs`): it sends now, adds the notification to the owner's
//! digest, or sends nothing. What is left for each channel is this trait: turn one
//! notification (or one digest) into one message to one address, and say what came of it.
//!
//! Every implementation passes the shared suite in `tests/messenger_contract.rs`, against
//! a real server where one exists (aiosmtpd, web-push-testing) and a strict contract
//! server where none does (FCM, APNs).

use super::channel::SendError;
use super::job::Notice;
use crate::recipients::{Channel, Email, PushTarget, Recipient};
use std::future::Future;

/// Where one message goes: the recipient's email address, or one of their devices.
#[derive(Debug, Clone, Copy)]
pub enum Address<'a> {
    Email(&'a Email),
    Device(&'a PushTarget),
}

/// What one message says: one notification, or the digest of a window (oldest first,
/// never empty).
#[derive(Debug, Clone, Copy)]
pub enum Content<'a> {
    One(&'a Notice),
    Digest(&'a [Notice]),
}

/// One personal channel's way of sending.
///
/// `send` returns:
/// - `Ok(())` once the receiver accepted the message;
/// - `Err` with [`super::Failure::Gone`] when the address no longer exists (Web Push 404 or
///   410, FCM `UNREGISTERED` or 404, APNs 410 `Unregistered`): the directory drops that
///   device and nothing is retried;
/// - `Err` with `Transient` (SMTP 4xx, HTTP 429 and 5xx, timeouts, refused connections:
///   retried, honouring `Retry-After`) or `Permanent` (SMTP 5xx, other HTTP 4xx: dead
///   letter) otherwise.
pub trait Messenger: Send + Sync + 'static {
    fn channel(&self) -> Channel;

    fn send(
        &self,
        recipient: &Recipient,
        address: Address<'_>,
        content: Content<'_>,
    ) -> impl Future<Output = Result<(), SendError>> + Send;
}
