//! Aggregates in SQLite (`AGGREGATE`, docs/aggregation.md): a join or leave reads and
//! writes the group's generation, the actor's member row and the aggregate inside the
//! writer's one transaction, so the rules of [`crate::domain::plan_join`] and
//! [`crate::domain::plan_leave`] apply as written, and the count is recounted from the
//! members (an index makes it cheap) rather than stepped up or down.

use super::aggregates::{Recount, next_version, report_join, report_leave};
use super::sqlite::stored_version;
use super::{Ended, Report};
use crate::domain::{
    Actor, Counted, Group, Id, Join, JoinPlan, LeavePlan, Member, NAMED_ACTORS, Tally, Timestamp, Version,
    actors_json, life_id, plan_join, plan_leave,
};
use rusqlite::{Connection, OptionalExtension, params};

/// The tables beside `notifications` (created by `setup` with the rest of the schema).
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS aggregate_generations (
    owner       TEXT    NOT NULL,
    action      INTEGER NOT NULL,
    resource_id TEXT    NOT NULL,
    generation  INTEGER NOT NULL,
    PRIMARY KEY (owner, action, resource_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS aggregate_members (
    owner       TEXT    NOT NULL,
    action      INTEGER NOT NULL,
    resource_id TEXT    NOT NULL,
    actor       TEXT    NOT NULL,
    version     TEXT    NOT NULL,
    present     INTEGER NOT NULL,
    generation  INTEGER NOT NULL,
    username    TEXT,
    userpic     TEXT,
    userbio     TEXT,
    created_at  TEXT    NOT NULL,
    expires_at  INTEGER,
    PRIMARY KEY (owner, action, resource_id, actor)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS aggregate_members_latest
    ON aggregate_members (owner, action, resource_id, generation, present, version);
CREATE INDEX IF NOT EXISTS aggregate_members_expires_at ON aggregate_members (expires_at);
";

const READ_GENERATION: &str =
    "SELECT generation FROM aggregate_generations WHERE owner = ?1 AND action = ?2 AND resource_id = ?3";
const WRITE_GENERATION: &str = "INSERT INTO aggregate_generations (owner, action, resource_id, generation)
    VALUES (?1, ?2, ?3, ?4)
    ON CONFLICT (owner, action, resource_id) DO UPDATE SET generation = excluded.generation";
const READ_MEMBER: &str = "SELECT version, present, generation FROM aggregate_members
    WHERE owner = ?1 AND action = ?2 AND resource_id = ?3 AND actor = ?4";
/// `expires_at` only for an actor out: kept as long as tombstones, like them so that an
/// older like arriving late stays out.
const WRITE_MEMBER: &str = "INSERT INTO aggregate_members
    (owner, action, resource_id, actor, version, present, generation, username, userpic, userbio, created_at,
     expires_at)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
    ON CONFLICT (owner, action, resource_id, actor) DO UPDATE SET version = excluded.version,
        present = excluded.present, generation = excluded.generation, username = excluded.username,
        userpic = excluded.userpic, userbio = excluded.userbio, created_at = excluded.created_at,
        expires_at = excluded.expires_at";
const RAISE_MEMBER: &str = "UPDATE aggregate_members SET version = ?5
    WHERE owner = ?1 AND action = ?2 AND resource_id = ?3 AND actor = ?4";
/// An actor out, keeping the generation it was in (a redelivered leave recounts it).
const MEMBER_OUT: &str = "UPDATE aggregate_members SET version = ?5, present = 0, expires_at = ?6
    WHERE owner = ?1 AND action = ?2 AND resource_id = ?3 AND actor = ?4";
/// Members out past their lifetime, a bounded number at a time.
const PURGE_MEMBERS: &str = "DELETE FROM aggregate_members WHERE (owner, action, resource_id, actor) IN
    (SELECT owner, action, resource_id, actor FROM aggregate_members WHERE expires_at < ?1 LIMIT 1000)";
const COUNT: &str = "SELECT COUNT(*) FROM aggregate_members
    WHERE owner = ?1 AND action = ?2 AND resource_id = ?3 AND generation = ?4 AND present = 1";
const LATEST: &str = "SELECT actor, version, username, userpic, userbio, created_at FROM aggregate_members
    WHERE owner = ?1 AND action = ?2 AND resource_id = ?3 AND generation = ?4 AND present = 1
    ORDER BY version DESC LIMIT ?5";
const READ_AGGREGATE: &str = "SELECT id, read_status, created_seq, version, actor_count, actors, started_at
    FROM notifications WHERE owner = ?1 AND action_key = ?2";
const INSERT_AGGREGATE: &str = "INSERT INTO notifications
    (owner, action_key, id, userid, username, userpic, userbio, action, resource_type, resource_id,
     excerpt, read_status, created_at, created_seq, version, actor_count, actors, started_at)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 0, ?12, ?13, ?13, ?14, ?15, ?16)";
/// The latest actor's display fields, the count and the latest three; the excerpt only
/// when the like that rewrites it carries one.
const REWRITE_AGGREGATE: &str = "UPDATE notifications SET userid = ?3, username = ?4, userpic = ?5,
    userbio = ?6, created_at = ?7, actor_count = ?8, actors = ?9, version = ?10,
    excerpt = COALESCE(?11, excerpt)
    WHERE owner = ?1 AND action_key = ?2";
const DELETE_AGGREGATE: &str = "DELETE FROM notifications WHERE owner = ?1 AND action_key = ?2";

pub(super) fn join(connection: &Connection, join: &Join, version: Version) -> rusqlite::Result<Report> {
    let group = &join.group;
    let member = read_member(connection, group, &join.actor.id)?;
    let plan = plan_join(member.as_ref(), version);
    let recount = match plan {
        JoinPlan::Join => {
            let generation = unread_generation(connection, group)?;
            write_member(connection, group, &join.actor, version, Standing::In(generation))?;
            recount(connection, group, generation, version, Some(join))?
        }
        JoinPlan::Again { generation } => recount(connection, group, generation, version, Some(join))?,
        JoinPlan::Repeat { generation } => {
            connection.prepare_cached(RAISE_MEMBER)?.execute(params![
                group.owner.as_str(),
                group.action.code(),
                group.resource_id.as_str(),
                join.actor.id.as_str(),
                version.to_text()
            ])?;
            recount(connection, group, generation, version, Some(join))?
        }
        JoinPlan::Superseded => Recount::Superseded,
    };
    Ok(report_join(recount, version))
}

pub(super) fn leave(
    connection: &Connection,
    group: &Group,
    actor: &Id,
    version: Version,
    expires_at: i64,
) -> rusqlite::Result<Report> {
    let member = read_member(connection, group, actor)?;
    let recount = match plan_leave(member.as_ref(), version) {
        LeavePlan::Leave { generation } => {
            connection.prepare_cached(MEMBER_OUT)?.execute(params![
                group.owner.as_str(),
                group.action.code(),
                group.resource_id.as_str(),
                actor.as_str(),
                version.to_text(),
                expires_at
            ])?;
            recount(connection, group, generation, version, None)?
        }
        LeavePlan::Again { generation } => recount(connection, group, generation, version, None)?,
        LeavePlan::Record => {
            // Remembered as out, so that an older like arriving later stays out.
            let nobody = Actor::only(actor.clone());
            write_member(connection, group, &nobody, version, Standing::Out { expires_at })?;
            Recount::Unchanged
        }
        LeavePlan::Superseded => Recount::Unchanged,
    };
    Ok(report_leave(recount, version))
}

fn read_member(connection: &Connection, group: &Group, actor: &Id) -> rusqlite::Result<Option<Member>> {
    connection
        .prepare_cached(READ_MEMBER)?
        .query_row(
            params![
                group.owner.as_str(),
                group.action.code(),
                group.resource_id.as_str(),
                actor.as_str()
            ],
            |row| {
                Ok(Member {
                    version: stored_version(row.get(0)?),
                    present: row.get(1)?,
                    generation: row.get::<_, i64>(2)?.unsigned_abs(),
                })
            },
        )
        .optional()
}

/// An actor in a generation, or out until it may be forgotten.
enum Standing {
    In(u64),
    Out { expires_at: i64 },
}

fn write_member(
    connection: &Connection,
    group: &Group,
    actor: &Actor,
    version: Version,
    standing: Standing,
) -> rusqlite::Result<()> {
    let (present, generation, expires_at) = match standing {
        Standing::In(generation) => (true, generation, None),
        Standing::Out { expires_at } => (false, 0, Some(expires_at)),
    };
    connection.prepare_cached(WRITE_MEMBER)?.execute(params![
        group.owner.as_str(),
        group.action.code(),
        group.resource_id.as_str(),
        actor.id.as_str(),
        version.to_text(),
        present,
        sql(generation),
        actor.username,
        actor.user_picture,
        actor.user_bio,
        actor.created_at.to_rfc3339(),
        expires_at
    ])?;
    Ok(())
}

pub(super) fn purge_expired_members(connection: &Connection, now: i64) -> rusqlite::Result<usize> {
    connection.prepare_cached(PURGE_MEMBERS)?.execute(params![now])
}

/// The generation a like joins: the current one, or the next when the current aggregate
/// has been read (which stays as the owner saw it).
fn unread_generation(connection: &Connection, group: &Group) -> rusqlite::Result<u64> {
    let current: u64 = connection
        .prepare_cached(READ_GENERATION)?
        .query_row(
            params![
                group.owner.as_str(),
                group.action.code(),
                group.resource_id.as_str()
            ],
            |row| row.get::<_, i64>(0),
        )
        .optional()?
        .map_or(1, i64::unsigned_abs);
    let read = connection
        .prepare_cached(READ_AGGREGATE)?
        .query_row(
            params![group.owner.as_str(), group.key(current).as_str()],
            |row| row.get::<_, bool>(1),
        )
        .optional()?
        .unwrap_or(false);
    if !read {
        return Ok(current);
    }
    let next = current + 1;
    connection.prepare_cached(WRITE_GENERATION)?.execute(params![
        group.owner.as_str(),
        group.action.code(),
        group.resource_id.as_str(),
        sql(next)
    ])?;
    Ok(next)
}

/// Recounts `generation`'s aggregate from its members and writes what it shows: inserted
/// by a first actor, rewritten, deleted when nobody is left; a read one is left alone, and
/// one that already shows what the members say is not written again (a redelivery).
fn recount(
    connection: &Connection,
    group: &Group,
    generation: u64,
    version: Version,
    join: Option<&Join>,
) -> rusqlite::Result<Recount> {
    let owner = group.owner.as_str();
    let key = group.key(generation);
    let existing = connection
        .prepare_cached(READ_AGGREGATE)?
        .query_row(params![owner, key.as_str()], |row| {
            Ok(Stored {
                id: row.get(0)?,
                read: row.get(1)?,
                created: stored_version(row.get(2)?),
                version: stored_version(row.get(3)?),
                count: row.get::<_, Option<i64>>(4)?.map(i64::unsigned_abs),
                actors: row.get(5)?,
                started_at: row.get(6)?,
            })
        })
        .optional()?;
    if existing.as_ref().is_some_and(|stored| stored.read) {
        return Ok(Recount::Read);
    }
    let tally = tally(connection, group, generation)?;
    let Some(latest) = tally.latest() else {
        return Ok(match existing {
            Some(stored) => {
                let item = connection
                    .prepare_cached(super::sqlite::FIND)?
                    .query_row(params![owner, key.as_str()], super::sqlite::feed_item)?;
                connection
                    .prepare_cached(DELETE_AGGREGATE)?
                    .execute(params![owner, key.as_str()])?;
                Recount::Removed {
                    ended: Ended {
                        id: stored.id,
                        created: stored.created,
                    },
                    item,
                }
            }
            None => Recount::Unchanged,
        });
    };
    let actor = &latest.actor;
    let actors = actors_json(&tally.named());
    let count = tally.count;
    let (at, created, started_at) = match existing {
        None => {
            // Only a like creates: a leave that finds the item missing while actors remain
            // is in the middle of a like's redelivery, which creates it.
            let Some(join) = join else {
                return Ok(Recount::Unchanged);
            };
            let id = life_id(version, &group.owner, &key).hyphenated().to_string();
            let started_at = Timestamp::now().unix();
            connection.prepare_cached(INSERT_AGGREGATE)?.execute(params![
                owner,
                key.as_str(),
                id,
                actor.id.as_str(),
                actor.username,
                actor.user_picture,
                actor.user_bio,
                group.action.code(),
                group.resource_type.as_str(),
                group.resource_id.as_str(),
                join.excerpt,
                actor.created_at.to_rfc3339(),
                version.to_text(),
                sql(count),
                actors,
                started_at,
            ])?;
            (version, version, Some(started_at))
        }
        Some(stored) if stored.count == Some(count) && stored.actors.as_deref() == Some(actors.as_str()) => {
            (stored.version, stored.created, stored.started_at)
        }
        Some(stored) => {
            let next = next_version(stored.version, version);
            connection.prepare_cached(REWRITE_AGGREGATE)?.execute(params![
                owner,
                key.as_str(),
                actor.id.as_str(),
                actor.username,
                actor.user_picture,
                actor.user_bio,
                actor.created_at.to_rfc3339(),
                sql(count),
                actors,
                next.to_text(),
                join.and_then(|join| join.excerpt.as_deref()),
            ])?;
            (next, stored.created, stored.started_at)
        }
    };
    let item = connection
        .prepare_cached(super::sqlite::FIND)?
        .query_row(params![owner, key.as_str()], super::sqlite::feed_item)?;
    Ok(Recount::Shown {
        item,
        version: at,
        created,
        started_at,
    })
}

/// An aggregate as a recount reads it.
struct Stored {
    id: String,
    read: bool,
    created: Version,
    version: Version,
    count: Option<u64>,
    actors: Option<String>,
    started_at: Option<i64>,
}

fn tally(connection: &Connection, group: &Group, generation: u64) -> rusqlite::Result<Tally> {
    let mut tally = Tally::default();
    let named = NAMED_ACTORS as i64;
    let mut latest = connection.prepare_cached(LATEST)?;
    let rows = latest.query_map(
        params![
            group.owner.as_str(),
            group.action.code(),
            group.resource_id.as_str(),
            sql(generation),
            named
        ],
        |row| {
            Ok((
                row.get::<_, String>(0)?,
                stored_version(row.get(1)?),
                row.get::<_, Option<String>>(2)?,
                row.get::<_, Option<String>>(3)?,
                row.get::<_, Option<String>>(4)?,
                row.get::<_, String>(5)?,
            ))
        },
    )?;
    for row in rows {
        let (id, version, username, user_picture, user_bio, created_at) = row?;
        let (Ok(id), Some(created_at)) = (Id::parse("actor", &id), Timestamp::parse(&created_at)) else {
            continue;
        };
        tally.add(Counted {
            version,
            actor: Actor {
                id,
                username,
                user_picture,
                user_bio,
                created_at,
            },
        });
    }
    tally.count = connection
        .prepare_cached(COUNT)?
        .query_row(
            params![
                group.owner.as_str(),
                group.action.code(),
                group.resource_id.as_str(),
                sql(generation)
            ],
            |row| row.get::<_, i64>(0),
        )?
        .unsigned_abs();
    Ok(tally)
}

/// Generations and counts as SQLite integers (signed 64-bit; never near the limit).
fn sql(number: u64) -> i64 {
    i64::try_from(number).unwrap_or(i64::MAX)
}
