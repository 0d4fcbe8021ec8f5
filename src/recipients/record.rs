//! One owner's entry in the recipient directory, and how events merge into it.
//!
//! Every field remembers the version of the event that set it, and each event only touches
//! the fields it names: the email, the locale, each (channel, event type) preference, each
//! push target. A field takes an event's value when the event is newer than the one that
//! set it, so events may arrive in any order, any number of times (several replicas,
//! redeliveries, `dlq replay`) and the record ends the same: the merge is commutative and
//! idempotent. `recipients.remove` at version v clears every field set before v and
//! remembers v, so an older event arriving later cannot bring the recipient back.

use super::contact::{Email, Locale, PushTarget, TargetKey};
use super::event::{RecipientChange, Upsert};
use super::vocabulary::{EventTypeName, Mode, PreferenceChannel};
use crate::domain::{Id, Version};
use std::collections::BTreeMap;

/// A value and the version of the event that set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    pub value: T,
    pub version: Version,
}

/// What became of a push target. A removal is kept (with its version) so that an older
/// add arriving after it does not bring the target back.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum TargetState {
    Added(PushTarget),
    /// Ordered after `Added`: at one version, the removal wins.
    Removed,
}

/// Whether applying an event changed the record: a store skips the write when it did not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Changed,
    /// Nothing newer: the record already held this event or something newer.
    Unchanged,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub(super) owner: Id,
    /// The newest `recipients.remove`: every field must be newer than this.
    pub(super) removed: Option<Version>,
    /// `None` inside: cleared (by `null`) at that version.
    pub(super) email: Option<Versioned<Option<Email>>>,
    pub(super) locale: Option<Versioned<Option<Locale>>>,
    /// `None` inside: back to the defaults at that version.
    pub(super) preferences: BTreeMap<(PreferenceChannel, EventTypeName), Versioned<Option<Mode>>>,
    pub(super) push_targets: BTreeMap<TargetKey, Versioned<TargetState>>,
}

impl Recipient {
    /// An owner nobody has told the directory anything about.
    pub fn new(owner: Id) -> Recipient {
        Recipient {
            owner,
            removed: None,
            email: None,
            locale: None,
            preferences: BTreeMap::new(),
            push_targets: BTreeMap::new(),
        }
    }

    /// Applies one event of this owner at its version. Pure: any order of any events, each
    /// applied any number of times, gives the same record.
    pub fn apply(&mut self, change: &RecipientChange, version: Version) -> Applied {
        let before = self.clone();
        match change {
            RecipientChange::Upsert(upsert) => self.upsert(upsert, version),
            RecipientChange::PushAdd(target) => {
                let state = TargetState::Added(target.clone());
                self.write_target(target.key(), state, version);
            }
            RecipientChange::PushRemove(key) => self.write_target(key, TargetState::Removed, version),
            RecipientChange::Remove => self.remove(version),
        }
        if *self == before {
            Applied::Unchanged
        } else {
            Applied::Changed
        }
    }

    fn upsert(&mut self, upsert: &Upsert, version: Version) {
        let floor = self.removed;
        if let Some(email) = &upsert.email {
            write(&mut self.email, email.clone(), version, floor);
        }
        if let Some(locale) = &upsert.locale {
            write(&mut self.locale, locale.clone(), version, floor);
        }
        for (channel, event_type, mode) in &upsert.preferences {
            let key = (*channel, event_type.clone());
            let mut current = self.preferences.get(&key).cloned();
            write(&mut current, *mode, version, floor);
            if let Some(newest) = current {
                self.preferences.insert(key, newest);
            }
        }
    }

    fn write_target(&mut self, key: &TargetKey, state: TargetState, version: Version) {
        let mut current = self.push_targets.get(key).cloned();
        write(&mut current, state, version, self.removed);
        if let Some(newest) = current {
            self.push_targets.insert(key.clone(), newest);
        }
    }

    fn remove(&mut self, version: Version) {
        if self.removed.is_some_and(|removed| removed >= version) {
            return;
        }
        self.removed = Some(version);
        clear_older(&mut self.email, version);
        clear_older(&mut self.locale, version);
        self.preferences.retain(|_, slot| slot.version > version);
        self.push_targets.retain(|_, slot| slot.version > version);
    }

    pub fn owner(&self) -> &Id {
        &self.owner
    }

    pub fn email(&self) -> Option<&Email> {
        self.email.as_ref().and_then(|slot| slot.value.as_ref())
    }

    pub fn locale(&self) -> Option<&Locale> {
        self.locale.as_ref().and_then(|slot| slot.value.as_ref())
    }

    /// The recipient's own choice for exactly this channel (or group) and event type.
    pub fn preference(&self, channel: PreferenceChannel, event_type: &EventTypeName) -> Option<Mode> {
        self.preferences
            .get(&(channel, event_type.clone()))
            .and_then(|slot| slot.value)
    }

    /// Every preference the recipient has set, in a fixed order.
    pub fn preferences(&self) -> impl Iterator<Item = (PreferenceChannel, &EventTypeName, Mode)> {
        self.preferences
            .iter()
            .filter_map(|((channel, event_type), slot)| slot.value.map(|mode| (*channel, event_type, mode)))
    }

    /// The push targets currently added, in a fixed order.
    pub fn push_targets(&self) -> impl Iterator<Item = &PushTarget> {
        self.push_targets.values().filter_map(|slot| match &slot.value {
            TargetState::Added(target) => Some(target),
            TargetState::Removed => None,
        })
    }

    /// The version of the newest `recipients.remove`, if any.
    pub fn removed_at(&self) -> Option<Version> {
        self.removed
    }
}

/// Empties a slot set at or before `version`.
fn clear_older<T>(slot: &mut Option<Versioned<T>>, version: Version) {
    if slot.as_ref().is_some_and(|slot| slot.version <= version) {
        *slot = None;
    }
}

/// Takes `value` at `version` unless the slot holds something newer, or the recipient was
/// removed at or after `version`. At one version (a single event never sets a field twice,
/// so only a replayed or forged stream gets here) the greater value wins, which keeps the
/// merge order-independent even then.
fn write<T: Ord>(slot: &mut Option<Versioned<T>>, value: T, version: Version, removed: Option<Version>) {
    if removed.is_some_and(|removed| version <= removed) {
        return;
    }
    if let Some(current) = slot
        && (current.version, &current.value) >= (version, &value)
    {
        return;
    }
    *slot = Some(Versioned { value, version });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipients::contact::PushKind;

    fn version(sequence: u64) -> Version {
        Version::new(1_764_000_000_000_000, sequence).unwrap()
    }

    fn fcm(token: &str) -> TargetKey {
        TargetKey::token(PushKind::Fcm, token).unwrap()
    }

    fn recipient() -> Recipient {
        Recipient::new(Id::parse("owner", "user-123").unwrap())
    }

    fn email(address: &str) -> RecipientChange {
        RecipientChange::Upsert(Upsert {
            email: Some(Some(Email::parse(address).unwrap())),
            ..Upsert::default()
        })
    }

    #[test]
    fn a_newer_field_wins_an_older_one_is_nothing_newer() {
        let mut r = recipient();
        assert_eq!(r.apply(&email("new@example.com"), version(5)), Applied::Changed);
        assert_eq!(r.apply(&email("old@example.com"), version(4)), Applied::Unchanged);
        assert_eq!(r.apply(&email("new@example.com"), version(5)), Applied::Unchanged);
        assert_eq!(r.email().unwrap().as_str(), "new@example.com");
    }

    #[test]
    fn a_push_remove_beats_an_older_add_and_loses_to_a_newer_one() {
        let target = PushTarget::device(fcm("t1")).unwrap();
        let add = RecipientChange::PushAdd(target.clone());
        let remove = RecipientChange::PushRemove(fcm("t1"));
        let mut r = recipient();
        assert_eq!(r.apply(&remove, version(7)), Applied::Changed);
        assert_eq!(r.apply(&add, version(6)), Applied::Unchanged);
        assert_eq!(r.push_targets().count(), 0);
        assert_eq!(r.apply(&add, version(8)), Applied::Changed);
        assert_eq!(r.push_targets().collect::<Vec<_>>(), [&target]);
    }

    #[test]
    fn a_cleared_preference_remembers_its_version() {
        let like = EventTypeName::parse("post.like").unwrap();
        let set = |mode| {
            RecipientChange::Upsert(Upsert {
                preferences: vec![(PreferenceChannel::Push, like.clone(), mode)],
                ..Upsert::default()
            })
        };
        let mut r = recipient();
        assert_eq!(r.apply(&set(None), version(3)), Applied::Changed);
        assert_eq!(r.apply(&set(Some(Mode::Off)), version(2)), Applied::Unchanged);
        assert_eq!(r.preference(PreferenceChannel::Push, &like), None);
        assert_eq!(r.apply(&set(Some(Mode::Off)), version(4)), Applied::Changed);
        assert_eq!(r.preference(PreferenceChannel::Push, &like), Some(Mode::Off));
        assert_eq!(r.preferences().count(), 1);
    }

    #[test]
    fn remove_keeps_only_what_is_newer() {
        let mut r = recipient();
        r.apply(&email("a@example.com"), version(1));
        r.apply(
            &RecipientChange::PushAdd(PushTarget::device(fcm("t2")).unwrap()),
            version(9),
        );
        assert_eq!(r.apply(&RecipientChange::Remove, version(5)), Applied::Changed);
        assert_eq!(r.email(), None);
        assert_eq!(r.push_targets().count(), 1);
        assert_eq!(r.apply(&RecipientChange::Remove, version(4)), Applied::Unchanged);
        assert_eq!(r.removed_at(), Some(version(5)));
    }
}
