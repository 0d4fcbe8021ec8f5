//! What both stores report for a join or a leave (`AGGREGATE`, docs/aggregation.md), once
//! they have recounted an aggregate.

use super::{Applied, Ended, Report, Shown};
use crate::domain::{FeedItem, Version};

/// What a recount of one generation's aggregate did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recount {
    /// The aggregate stands as `item` at `version` (written now, or found already showing
    /// what the members say); `created` is the like that started it.
    Shown {
        item: FeedItem,
        version: Version,
        created: Version,
        started_at: Option<i64>,
    },
    /// Nobody is left: the aggregate (`item`, as it was) was deleted, ending this life.
    Removed { ended: Ended, item: FeedItem },
    /// The owner read it: it stays as they saw it.
    Read,
    /// Nothing to write (the actor's standing did not change, or nothing is there).
    Unchanged,
    /// An older event than this actor's newest: it does not count.
    Superseded,
}

/// A like: `created` when this very like started the aggregate (also on its redelivery,
/// so that the first banner is not lost), `aggregated` when it joined one that existed.
pub fn report_join(recount: Recount, version: Version) -> Report {
    match recount {
        Recount::Shown {
            item,
            version: at,
            created,
            started_at,
        } => {
            let applied = if created == version {
                Applied::Created
            } else {
                Applied::Aggregated
            };
            shown(applied, item, at, started_at)
        }
        Recount::Superseded => Report::from(Applied::Superseded),
        // A like only reaches these when it found its actor already in (a repeat), or the
        // aggregate it joined read before it was recounted (see docs/aggregation.md).
        Recount::Removed { .. } | Recount::Read | Recount::Unchanged => Report::from(Applied::Duplicate),
    }
}

/// An unlike: `removed` when it took the last actor out, `aggregated` when it rewrote the
/// aggregate, `absent` otherwise (the aggregate was read, or the actor was not in).
pub fn report_leave(recount: Recount, version: Version) -> Report {
    match recount {
        Recount::Shown {
            item,
            version,
            started_at,
            ..
        } => shown(Applied::Aggregated, item, version, started_at),
        // The item as it was, so the removal names its key.
        Recount::Removed { ended, item } => Report {
            applied: Applied::Removed,
            ended: Some(ended),
            aggregate: Some(Box::new(Shown {
                item,
                version,
                started_at: None,
            })),
        },
        Recount::Read | Recount::Unchanged | Recount::Superseded => Report::from(Applied::Absent),
    }
}

fn shown(applied: Applied, item: FeedItem, version: Version, started_at: Option<i64>) -> Report {
    Report {
        applied,
        ended: None,
        aggregate: Some(Box::new(Shown {
            item,
            version,
            started_at,
        })),
    }
}

/// The version an aggregate takes when it is rewritten: above the one it had, so that each
/// rewrite is a new `notification-updated` (its message id carries the version) and clients
/// can keep the newest; and at least the event's, so that it orders like other versions.
pub fn next_version(stored: Version, event: Version) -> Version {
    let bumped = Version::from_number(stored.to_number() + 1).unwrap_or(stored);
    bumped.max(event)
}
