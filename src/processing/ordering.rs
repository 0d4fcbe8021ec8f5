//! Keeping events for one (owner, action_key) in stream order while different keys run
//! concurrently.
//!
//! Each key that has work gets one "lane": the first event for a key starts a lane, later
//! ones queue behind it, and the lane ends when its queue is empty. So like, unlike, like on
//! one key are applied in that order, retries included, whatever else is in flight.

use crate::domain::Change;
use std::collections::hash_map::{DefaultHasher, Entry};
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

/// A key's identity in the sequencer. A hash collision only orders two unrelated keys one
/// after the other; it never reorders or merges them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OrderKey(u64);

impl OrderKey {
    pub fn of(change: &Change) -> OrderKey {
        let mut hasher = DefaultHasher::new();
        change.owner().hash(&mut hasher);
        match change {
            Change::Create(notification) => notification.action_key.hash(&mut hasher),
            Change::Remove { action_key, .. } => action_key.hash(&mut hasher),
            // One lane per actor's like of the resource, as without aggregation: the store
            // keeps an aggregate exact under concurrent joins, and a lane per aggregate
            // would apply a popular post's likes one at a time.
            Change::Join(join) => {
                (join.group.action, &join.group.resource_id, &join.actor.id).hash(&mut hasher)
            }
            Change::Leave { group, actor } => (group.action, &group.resource_id, actor).hash(&mut hasher),
        }
        OrderKey(hasher.finish())
    }

    /// The key of anything named by one string (the delivery stage: a notification's id).
    pub fn of_name(name: &str) -> OrderKey {
        let mut hasher = DefaultHasher::new();
        name.hash(&mut hasher);
        OrderKey(hasher.finish())
    }
}

pub struct Sequencer<J> {
    waiting: Mutex<HashMap<OrderKey, VecDeque<J>>>,
}

impl<J> Sequencer<J> {
    pub fn new() -> Sequencer<J> {
        Sequencer {
            waiting: Mutex::new(HashMap::new()),
        }
    }

    /// Returns the job when its key is idle (the caller starts a lane for it), or queues it
    /// behind the running lane and returns `None`.
    pub fn enter(&self, key: OrderKey, job: J) -> Option<J> {
        // A std Mutex: held for a few map operations, never across an await.
        let mut waiting = self
            .waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match waiting.entry(key) {
            Entry::Occupied(mut lane) => {
                lane.get_mut().push_back(job);
                None
            }
            Entry::Vacant(lane) => {
                lane.insert(VecDeque::new());
                Some(job)
            }
        }
    }

    /// The next job of a lane whose current job is done, or `None` (and the lane closes).
    pub fn next(&self, key: OrderKey) -> Option<J> {
        let mut waiting = self
            .waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let next = waiting.get_mut(&key).and_then(VecDeque::pop_front);
        if next.is_none() {
            waiting.remove(&key);
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_lane_per_key_in_arrival_order() {
        let sequencer = Sequencer::new();
        let (a, b) = (OrderKey(1), OrderKey(2));
        assert_eq!(sequencer.enter(a, "a1"), Some("a1"));
        assert_eq!(sequencer.enter(b, "b1"), Some("b1"));
        assert_eq!(sequencer.enter(a, "a2"), None);
        assert_eq!(sequencer.enter(a, "a3"), None);
        assert_eq!(sequencer.next(a), Some("a2"));
        assert_eq!(sequencer.next(a), Some("a3"));
        assert_eq!(sequencer.next(a), None);
        // The lane closed: the next event for the key starts a new one.
        assert_eq!(sequencer.enter(a, "a4"), Some("a4"));
        assert_eq!(sequencer.next(b), None);
    }
}
