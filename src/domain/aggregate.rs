//! Aggregation (`AGGREGATE`): creates of the chosen event types on one (owner, action,
//! resource) fold into one notification while it is unread: "John Doe and 4 others liked
//! your post".
//!
//! The words, and the rules both stores follow (see docs/aggregation.md):
//! - a **group** is (owner, action, resource); it has a **generation**, 1 at first, advanced
//!   when a like meets the group's aggregate read (the API set `read_status`): the read one
//!   stays as the owner saw it, the like starts the next;
//! - a **member** is one actor's standing in a group: the version of the actor's newest like
//!   or unlike, whether the actor is in (liked), and the generation the actor joined. Members
//!   are kept apart from the aggregate (not in a partition the API reads), so the item stays
//!   small however many actors there are, and each actor's likes and unlikes are versioned
//!   like any key's: a redelivered like never counts twice, a late old like never comes back;
//! - the **aggregate** is the notification the API reads, at [`Group::key`] of a generation:
//!   the 13 attributes describe the latest actor (by event order), plus `actor_count` and
//!   `actors` (the latest three), always recomputed from the members ([`Tally`]), never
//!   counted up or down, so that redeliveries and races cannot skew it.

use super::{Action, ActionKey, Id, Notification, ResourceType, Timestamp, Version};
use serde::{Deserialize, Serialize};
use std::fmt;

/// How many actors an aggregate names (`actors`).
pub const NAMED_ACTORS: usize = 3;

/// The actions whose creates fold (`AGGREGATE`); none by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Aggregation {
    /// Bit `code` set for each aggregated action code.
    actions: u64,
}

impl Aggregation {
    pub const OFF: Aggregation = Aggregation { actions: 0 };

    pub fn with(mut self, action: Action) -> Aggregation {
        self.actions |= 1 << action.code();
        self
    }

    pub fn folds(self, action: Action) -> bool {
        self.actions & (1 << action.code()) != 0
    }

    /// The aggregated actions, by code.
    pub fn actions(self) -> impl Iterator<Item = Action> {
        super::ACTIONS
            .iter()
            .filter_map(|(code, _)| Action::from_code(i64::from(*code)))
            .filter(move |action| self.folds(*action))
    }
}

/// What one aggregate is about: (owner, action, resource).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Group {
    pub owner: Id,
    pub action: Action,
    pub resource_type: ResourceType,
    pub resource_id: Id,
}

impl Group {
    /// The aggregate's `action_key` in `generation`: `#{resource_id}#{action}#aggregate-{n}`.
    ///
    /// An individual notification's key starts with its trigger user, an [`Id`], which is
    /// never empty and never holds `#`; this one starts with `#`, so the two never collide,
    /// and no id an event carries can forge one (ids cannot hold `#` either). It keeps the
    /// four `#`-separated parts of the first version's keys.
    pub fn key(&self, generation: u64) -> ActionKey {
        ActionKey::aggregate(&self.resource_id, self.action, generation)
    }
}

/// Who liked (followed, …): the display fields the aggregate shows for its latest actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub id: Id,
    pub username: Option<String>,
    pub user_picture: Option<String>,
    pub user_bio: Option<String>,
    pub created_at: Timestamp,
}

impl Actor {
    /// An actor known only by id: how an unlike records an actor who was never in (it
    /// carries no display fields, and none are ever shown for an actor out).
    pub fn only(id: Id) -> Actor {
        Actor {
            id,
            username: None,
            user_picture: None,
            user_bio: None,
            created_at: Timestamp::from_unix(0).expect("the epoch is in range"),
        }
    }
}

/// An aggregated create: `actor` joins the group's unread aggregate. Built from the
/// notification the event would have made alone, so nothing the event said is lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Join {
    pub group: Group,
    pub actor: Actor,
    pub excerpt: Option<String>,
}

impl Join {
    pub fn from_notification(n: Notification) -> Join {
        Join {
            group: Group {
                owner: n.owner,
                action: n.action,
                resource_type: n.resource_type,
                resource_id: n.resource_id,
            },
            actor: Actor {
                id: n.trigger_user,
                username: n.username,
                user_picture: n.user_picture,
                user_bio: n.user_bio,
                created_at: n.created_at,
            },
            excerpt: n.excerpt,
        }
    }
}

/// One actor as an aggregate names it in `actors`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedActor {
    pub userid: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub userpic: Option<String>,
}

/// A member as the stores keep it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The actor's newest like or unlike applied.
    pub version: Version,
    /// In (liked) or out (unliked).
    pub present: bool,
    /// The generation the actor joined (meaningful while present).
    pub generation: u64,
}

/// What a like does to its actor's member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinPlan {
    /// Not in: join the current generation.
    Join,
    /// This very like put the actor in (a redelivery, or a retry after a failure between
    /// the member and the aggregate): recompute that generation again, which finishes what
    /// the first attempt may have left undone and changes nothing otherwise.
    Again { generation: u64 },
    /// The actor is in already, by an older like: its version rises, and `generation` is
    /// recounted, since the latest three are ordered by each actor's newest like (the only
    /// order every arrival order agrees on).
    Repeat { generation: u64 },
    /// A newer unlike (or like) of this actor was applied: this older like must not count.
    Superseded,
}

pub fn plan_join(member: Option<&Member>, version: Version) -> JoinPlan {
    match member {
        None => JoinPlan::Join,
        Some(member) if member.version == version && member.present => JoinPlan::Again {
            generation: member.generation,
        },
        Some(member) if member.version >= version => JoinPlan::Superseded,
        Some(member) if member.present => JoinPlan::Repeat {
            generation: member.generation,
        },
        Some(_) => JoinPlan::Join,
    }
}

/// What an unlike does to its actor's member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeavePlan {
    /// The actor was in `generation`: out, and that generation recomputed (unless read).
    Leave { generation: u64 },
    /// This very unlike took the actor out (a redelivery): recompute again, as for a like.
    Again { generation: u64 },
    /// The actor was not in: record the unlike's version only, so that an older like
    /// arriving late stays out.
    Record,
    /// A newer like or unlike of this actor was applied: nothing to do.
    Superseded,
}

pub fn plan_leave(member: Option<&Member>, version: Version) -> LeavePlan {
    match member {
        None => LeavePlan::Record,
        Some(member) if member.version == version && !member.present => LeavePlan::Again {
            generation: member.generation,
        },
        Some(member) if member.version >= version => LeavePlan::Superseded,
        Some(member) if member.present => LeavePlan::Leave {
            generation: member.generation,
        },
        Some(_) => LeavePlan::Record,
    }
}

/// An actor in, as a recount reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    pub version: Version,
    pub actor: Actor,
}

/// What an aggregate shows, recomputed from its generation's members: how many, and the
/// latest [`NAMED_ACTORS`] newest first (the first is the one the 13 attributes describe).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tally {
    pub count: u64,
    pub latest: Vec<Counted>,
}

impl Tally {
    /// Counts `member` in, keeping the latest few.
    pub fn add(&mut self, member: Counted) {
        self.count += 1;
        let at = self
            .latest
            .iter()
            .position(|kept| kept.version < member.version)
            .unwrap_or(self.latest.len());
        if at < NAMED_ACTORS {
            self.latest.insert(at, member);
            self.latest.truncate(NAMED_ACTORS);
        }
    }

    pub fn named(&self) -> Vec<NamedActor> {
        self.latest
            .iter()
            .map(|counted| NamedActor {
                userid: counted.actor.id.to_string(),
                username: counted.actor.username.clone(),
                userpic: counted.actor.user_picture.clone(),
            })
            .collect()
    }

    /// The latest actor and the newest version among them.
    pub fn latest(&self) -> Option<&Counted> {
        self.latest.first()
    }
}

/// The `actors` attribute as JSON text (SQLite's column, the jobs' field).
pub fn actors_json(actors: &[NamedActor]) -> String {
    serde_json::to_string(actors).expect("plain strings serialize")
}

/// `{owner}#{action}#{resource_id}`, for logs and errors.
impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}#{}", self.owner, self.action.code(), self.resource_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(sequence: u64) -> Version {
        Version::new(1, sequence).unwrap()
    }

    fn member(version: u64, present: bool) -> Member {
        Member {
            version: v(version),
            present,
            generation: 2,
        }
    }

    fn counted(actor: &str, version: u64) -> Counted {
        Counted {
            version: v(version),
            actor: Actor {
                id: Id::parse("actor", actor).unwrap(),
                username: None,
                user_picture: None,
                user_bio: None,
                created_at: Timestamp::from_unix(0).unwrap(),
            },
        }
    }

    #[test]
    fn aggregate_keys_cannot_be_an_individual_key() {
        let group = Group {
            owner: Id::parse("owner", "user-1").unwrap(),
            action: Action::from_code(1).unwrap(),
            resource_type: ResourceType::Post,
            resource_id: Id::parse("resource_id", "post-9").unwrap(),
        };
        assert_eq!(group.key(3).as_str(), "#post-9#1#aggregate-3");
        assert_ne!(group.key(1), group.key(2));
        // Every individual key starts with a non-empty id.
        let individual = ActionKey::new(&group.owner, &group.resource_id, group.action);
        assert!(!individual.as_str().starts_with('#'));
    }

    #[test]
    fn joins_follow_each_actors_versions() {
        assert_eq!(plan_join(None, v(5)), JoinPlan::Join);
        assert_eq!(
            plan_join(Some(&member(5, true)), v(5)),
            JoinPlan::Again { generation: 2 }
        );
        assert_eq!(plan_join(Some(&member(6, false)), v(5)), JoinPlan::Superseded);
        assert_eq!(plan_join(Some(&member(6, true)), v(5)), JoinPlan::Superseded);
        assert_eq!(plan_join(Some(&member(4, false)), v(5)), JoinPlan::Join);
        assert_eq!(
            plan_join(Some(&member(4, true)), v(5)),
            JoinPlan::Repeat { generation: 2 }
        );
    }

    #[test]
    fn leaves_follow_each_actors_versions() {
        assert_eq!(plan_leave(None, v(5)), LeavePlan::Record);
        assert_eq!(
            plan_leave(Some(&member(4, true)), v(5)),
            LeavePlan::Leave { generation: 2 }
        );
        assert_eq!(
            plan_leave(Some(&member(5, false)), v(5)),
            LeavePlan::Again { generation: 2 }
        );
        assert_eq!(plan_leave(Some(&member(6, true)), v(5)), LeavePlan::Superseded);
        assert_eq!(plan_leave(Some(&member(4, false)), v(5)), LeavePlan::Record);
    }

    #[test]
    fn a_tally_keeps_the_latest_three_whatever_the_order() {
        let mut tally = Tally::default();
        for (actor, version) in [("a", 3), ("b", 9), ("c", 1), ("d", 7), ("e", 8)] {
            tally.add(counted(actor, version));
        }
        assert_eq!(tally.count, 5);
        let names: Vec<_> = tally.named().into_iter().map(|named| named.userid).collect();
        assert_eq!(names, ["b", "e", "d"]);
        assert_eq!(tally.latest().unwrap().version, v(9));
    }

    #[test]
    fn aggregation_is_a_set_of_actions() {
        let like = Action::from_code(1).unwrap();
        let follow = Action::from_code(6).unwrap();
        let on = Aggregation::OFF.with(like).with(follow);
        assert!(on.folds(like) && on.folds(follow));
        assert!(!on.folds(Action::from_code(3).unwrap()));
        assert_eq!(on.actions().map(Action::code).collect::<Vec<_>>(), [1, 6]);
        assert_eq!(Aggregation::default(), Aggregation::OFF);
    }
}
