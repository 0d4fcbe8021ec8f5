//! The rules of versioned writes, once, for every store.
//!
//! Each key keeps, besides its notification:
//! - the notification's **life**: `created` (the version of the create that started it,
//!   never changed while it lives) and `version` (the newest create seen during it);
//! - a **tombstone**: the newest remove's version, in an item of its own that no feed query
//!   sees, and what it [`Remembers`] of the life that remove ended, if it deleted one.
//!
//! What must hold, whatever order and however often a key's events arrive (docs/reliability.md
//! names every case): once all are applied, the key is live exactly when its newest event is
//! a create; a live notification's id and read_status never change while it lives; the life
//! left live was reported [`Applied::Created`] by the create that started it. In order, the
//! outcome is exactly that of applying the events once, in order.
//!
//! SQLite applies [`plan_create`] and [`plan_remove`] inside one write transaction. DynamoDB
//! has no transactions here (dynalite has none), so `dynamodb.rs` runs the same decisions as a
//! protocol of conditional writes whose every interleaving ends as these rules say.

use super::{Applied, Ended, Report};
use crate::domain::Version;

/// A live notification's versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Life {
    /// The create that started this life. Never changes while the notification lives.
    pub created: Version,
    /// The newest create applied during this life (≥ `created`).
    pub version: Version,
}

impl Life {
    pub fn new(created: Version) -> Life {
        Life {
            created,
            version: created,
        }
    }
}

/// What a create at a version does to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreatePlan {
    /// Nothing lives: store a new notification. Reported `created`.
    Insert,
    /// This very create started the live notification (a redelivery, or a retry whose
    /// first response was lost): nothing to write, reported `created` again so that what
    /// follows a creation (delivery) is not lost.
    AlreadyCreated,
    /// The live notification belongs to a life a newer remove has ended, but its delete has
    /// not happened yet (DynamoDB only: a remove writes its tombstone before it deletes), and
    /// this create is newer than that remove: replace it with a new life (new id, unread).
    Replace,
    /// A newer create started the live notification, or an older one: it stays exactly as
    /// it is; its `version` moves up to this create's when this one is newer.
    Keep { raise_version: bool },
    /// A newer remove was already applied: this older create must not bring the
    /// notification back.
    Superseded,
    /// As [`CreatePlan::Superseded`], and the live notification belongs to a life that
    /// newer remove ended but whose delete has not happened (or happened before this very
    /// create stored it): delete it on the remove's behalf, so that no interleaving leaves it.
    FinishRemove,
}

impl CreatePlan {
    pub fn applied(self) -> Applied {
        match self {
            CreatePlan::Insert | CreatePlan::AlreadyCreated | CreatePlan::Replace => Applied::Created,
            CreatePlan::Keep { .. } => Applied::Duplicate,
            CreatePlan::Superseded | CreatePlan::FinishRemove => Applied::Superseded,
        }
    }
}

/// What a create at `version` does, given what the key holds now.
pub fn plan_create(life: Option<Life>, tombstone: Option<Version>, version: Version) -> CreatePlan {
    let newer_remove = tombstone.is_some_and(|removed| removed > version);
    let Some(life) = life else {
        return if newer_remove {
            CreatePlan::Superseded
        } else {
            CreatePlan::Insert
        };
    };
    // A zombie: a remove newer than everything this life has seen ended it; only its
    // delete is missing.
    let zombie = tombstone.is_some_and(|removed| removed > life.version);
    match () {
        () if zombie && newer_remove => CreatePlan::FinishRemove,
        // This create comes after that remove: a new life.
        () if zombie => CreatePlan::Replace,
        () if life.created == version => CreatePlan::AlreadyCreated,
        () if newer_remove => CreatePlan::Superseded,
        () => CreatePlan::Keep {
            raise_version: version > life.version,
        },
    }
}

/// What a remove at `version` does: it always records its tombstone (raising an older one),
/// and it deletes the notification unless a create newer than itself was applied to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemovePlan {
    pub raise_tombstone: bool,
    pub delete: bool,
}

impl RemovePlan {
    pub fn applied(self) -> Applied {
        if self.delete {
            Applied::Removed
        } else {
            Applied::Absent
        }
    }
}

pub fn plan_remove(life: Option<Life>, tombstone: Option<Version>, version: Version) -> RemovePlan {
    RemovePlan {
        raise_tombstone: tombstone.is_none_or(|removed| removed < version),
        delete: life.is_some_and(|life| life.version < version),
    }
}

/// What a tombstone keeps of the life a remove deleted, so that the remove's redelivery can
/// report it again: the first report may not have reached the delivery stage (a crash
/// before acknowledging), and a redelivered create is likewise reported `created` again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remembers {
    pub ended: Ended,
    /// The remove that ended it. Kept beside the tombstone's own version because a worker
    /// of the release before this one raises a tombstone without clearing this memory: a
    /// memory whose remove is not the tombstone's is stale.
    pub by: Version,
}

/// What a remove at `version` reports: the life it deleted (`deleted`), or else, when it is
/// a redelivery of the remove that ended a life (the key's tombstone is its own and
/// remembers that it ended one), that life again. Anything else ended nothing: a remove
/// older than the tombstone's is not the one that ended the life, even if it arrives after.
pub fn report_remove(
    deleted: Option<Ended>,
    tombstone: Option<Version>,
    remembers: Option<Remembers>,
    version: Version,
) -> Report {
    let ended = deleted.or_else(|| {
        remembers
            .filter(|remembers| remembers.by == version && tombstone == Some(version))
            .map(|remembers| remembers.ended)
    });
    Report {
        applied: if ended.is_some() {
            Applied::Removed
        } else {
            Applied::Absent
        },
        ended,
        aggregate: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(sequence: u64) -> Version {
        Version::new(1, sequence).unwrap()
    }

    /// The key's state after applying `events` (sequence, is_create) in the given order,
    /// by the rules alone (one store that applies each atomically).
    fn apply_all(events: &[(u64, bool)]) -> (Option<Life>, Option<Version>, Vec<Applied>) {
        let (mut life, mut tombstone, mut outcomes) = (None, None, Vec::new());
        for &(sequence, create) in events {
            let version = v(sequence);
            if create {
                let plan = plan_create(life, tombstone, version);
                match plan {
                    CreatePlan::Insert | CreatePlan::Replace => life = Some(Life::new(version)),
                    CreatePlan::Keep { raise_version: true } => {
                        life = life.map(|life| Life { version, ..life })
                    }
                    CreatePlan::FinishRemove => life = None,
                    _ => {}
                }
                outcomes.push(plan.applied());
            } else {
                let plan = plan_remove(life, tombstone, version);
                if plan.raise_tombstone {
                    tombstone = Some(version);
                }
                if plan.delete {
                    life = None;
                }
                outcomes.push(plan.applied());
            }
        }
        (life, tombstone, outcomes)
    }

    #[test]
    fn like_unlike_like_in_every_arrival_order_ends_live() {
        let events = [(3, true), (4, false), (5, true)];
        for order in permutations(&events) {
            let (life, _, outcomes) = apply_all(&order);
            assert!(life.is_some(), "{order:?} must end live");
            assert!(outcomes.contains(&Applied::Created), "{order:?}: {outcomes:?}");
        }
        let (life, _, outcomes) = apply_all(&events);
        assert_eq!(life, Some(Life::new(v(5))));
        assert_eq!(outcomes, [Applied::Created, Applied::Removed, Applied::Created]);
    }

    #[test]
    fn like_unlike_in_every_arrival_order_ends_absent() {
        let events = [(3, true), (4, false)];
        for order in permutations(&events) {
            assert_eq!(apply_all(&order).0, None, "{order:?}");
        }
        // The unlike first: the like that comes late cannot bring it back.
        assert_eq!(
            apply_all(&[(4, false), (3, true)]).2,
            [Applied::Absent, Applied::Superseded]
        );
    }

    #[test]
    fn a_redelivered_create_reports_the_life_it_started() {
        let (life, _, outcomes) = apply_all(&[(3, true), (3, true)]);
        assert_eq!(life, Some(Life::new(v(3))));
        assert_eq!(outcomes, [Applied::Created, Applied::Created]);
    }

    #[test]
    fn a_newer_create_seen_as_duplicate_keeps_a_late_older_remove_from_deleting() {
        // 3 create, 5 create (duplicate), then the remove at 4 arrives last: in stream order
        // the key ends live, so the remove must leave the notification.
        let (life, _, outcomes) = apply_all(&[(3, true), (5, true), (4, false)]);
        assert_eq!(
            life,
            Some(Life {
                created: v(3),
                version: v(5)
            })
        );
        assert_eq!(outcomes[2], Applied::Absent);
    }

    #[test]
    fn a_zombie_is_replaced_only_by_a_create_newer_than_its_remove() {
        // A life at 3 whose remove at 6 wrote its tombstone but has not deleted yet.
        let zombie = Some(Life::new(v(3)));
        assert_eq!(plan_create(zombie, Some(v(6)), v(7)), CreatePlan::Replace);
        assert_eq!(plan_create(zombie, Some(v(6)), v(5)), CreatePlan::FinishRemove);
        // Its own create, redelivered: the remove still wins.
        assert_eq!(plan_create(zombie, Some(v(6)), v(3)), CreatePlan::FinishRemove);
        assert!(plan_remove(zombie, Some(v(6)), v(6)).delete);
    }

    fn ended(id: &str, created: u64) -> Ended {
        Ended {
            id: id.to_owned(),
            created: v(created),
        }
    }

    fn remembers(id: &str, created: u64, by: u64) -> Option<Remembers> {
        Some(Remembers {
            ended: ended(id, created),
            by: v(by),
        })
    }

    #[test]
    fn a_remove_that_deletes_reports_the_life_it_ended() {
        let report = report_remove(Some(ended("a", 3)), Some(v(4)), None, v(4));
        assert_eq!(report.applied, Applied::Removed);
        assert_eq!(report.ended, Some(ended("a", 3)));
    }

    #[test]
    fn a_redelivered_remove_reports_the_life_it_ended_again() {
        let report = report_remove(None, Some(v(4)), remembers("a", 3, 4), v(4));
        assert_eq!(report.applied, Applied::Removed);
        assert_eq!(report.ended, Some(ended("a", 3)));
    }

    #[test]
    fn a_remove_that_is_not_the_one_that_ended_the_life_ended_nothing() {
        let absent = Report::from(Applied::Absent);
        // Nothing was ever ended here.
        assert_eq!(report_remove(None, None, None, v(4)), absent);
        assert_eq!(report_remove(None, Some(v(4)), None, v(4)), absent);
        // Remove 5 ended the life; remove 4 arrives late.
        assert_eq!(
            report_remove(None, Some(v(5)), remembers("a", 3, 5), v(4)),
            absent
        );
        // Remove 4 ended it, then remove 6 found nothing: 4's redelivery no longer owns
        // the tombstone.
        assert_eq!(
            report_remove(None, Some(v(6)), remembers("a", 3, 4), v(4)),
            absent
        );
        // A stale memory left by an older release's raise of the tombstone to 6.
        assert_eq!(
            report_remove(None, Some(v(6)), remembers("a", 3, 4), v(6)),
            absent
        );
    }

    fn permutations(events: &[(u64, bool)]) -> Vec<Vec<(u64, bool)>> {
        if events.len() <= 1 {
            return vec![events.to_vec()];
        }
        let mut all = Vec::new();
        for i in 0..events.len() {
            let mut rest = events.to_vec();
            let first = rest.remove(i);
            for mut tail in permutations(&rest) {
                tail.insert(0, first);
                all.push(tail);
            }
        }
        all
    }
}
