//! The directory as the delivery stage reads it: the recipient store behind a small cache.
//!
//! Every personal send asks who the owner is; a burst of likes on one post asks the same
//! question hundreds of times. The answer is kept for a short, configurable lifetime
//! (`RECIPIENT_CACHE_TTL`): a changed address or preference takes effect within it on every
//! replica, without any replica having to tell the others. Memory is bounded by
//! `RECIPIENT_CACHE_SIZE` entries: past it the oldest answers are dropped first.
//!
//! "No such recipient" is cached too: most owners of a large feed never set anything, and
//! asking the store for each of their notifications would cost a read per send.

use super::Recipient;
use crate::domain::Id;
use crate::store::{AnyRecipientStore, RecipientStore, StoreError};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long an answer is kept, and how many are kept at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    pub ttl: Duration,
    pub capacity: usize,
}

impl Default for CacheSettings {
    fn default() -> CacheSettings {
        CacheSettings {
            ttl: Duration::from_secs(10),
            capacity: 100_000,
        }
    }
}

/// The recipient directory, cached.
pub struct Directory {
    store: Arc<AnyRecipientStore>,
    settings: CacheSettings,
    cache: Mutex<Answers>,
}

#[derive(Default)]
struct Answers {
    by_owner: HashMap<Id, (Instant, Option<Arc<Recipient>>)>,
    /// Insertion order, oldest first; an entry whose stamp no longer matches `by_owner` is a
    /// leftover of an answer replaced since, skipped when it comes up.
    order: VecDeque<(Id, Instant)>,
}

impl Directory {
    pub fn new(store: Arc<AnyRecipientStore>, settings: CacheSettings) -> Directory {
        Directory {
            store,
            settings,
            cache: Mutex::default(),
        }
    }

    /// The owner's record (`None`: nobody set anything for them), at most the cache
    /// lifetime old.
    pub async fn get(&self, owner: &Id) -> Result<Option<Arc<Recipient>>, StoreError> {
        if let Some(answer) = self.cached(owner) {
            return Ok(answer);
        }
        let answer = self.store.get(owner).await?.map(Arc::new);
        self.remember(owner, answer.clone());
        Ok(answer)
    }

    /// Forgets what is known of `owner` (after this replica changed their record).
    pub fn forget(&self, owner: &Id) {
        self.answers().by_owner.remove(owner);
    }

    /// Answers kept right now (for tests and the bench).
    pub fn len(&self) -> usize {
        self.answers().by_owner.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn cached(&self, owner: &Id) -> Option<Option<Arc<Recipient>>> {
        let answers = self.answers();
        let (stamp, answer) = answers.by_owner.get(owner)?;
        (stamp.elapsed() < self.settings.ttl).then(|| answer.clone())
    }

    fn remember(&self, owner: &Id, answer: Option<Arc<Recipient>>) {
        if self.settings.capacity == 0 || self.settings.ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut answers = self.answers();
        answers.by_owner.insert(owner.clone(), (now, answer));
        answers.order.push_back((owner.clone(), now));
        // Every kept answer has its entry in `order`, so bounding `order` bounds both.
        while answers.order.len() > self.settings.capacity {
            let Some((oldest, stamp)) = answers.order.pop_front() else {
                break;
            };
            if answers
                .by_owner
                .get(&oldest)
                .is_some_and(|(kept, _)| *kept == stamp)
            {
                answers.by_owner.remove(&oldest);
            }
        }
    }

    fn answers(&self) -> std::sync::MutexGuard<'_, Answers> {
        // A panic while holding the lock leaves nothing half-written that matters: the
        // cache is only ever a copy.
        self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
