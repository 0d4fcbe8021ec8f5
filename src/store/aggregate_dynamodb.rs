//! Aggregates in DynamoDB (`AGGREGATE`, docs/aggregation.md), without transactions: the
//! same rules as SQLite's, as conditional writes whose every interleaving ends right.
//!
//! Items, none of them in a partition the API reads and none but the aggregate with a
//! `created_at` (so `OwnerIndex` holds only the aggregate):
//! - the group's generation at (`{owner}#aggregate`, `{action}#{resource_id}`), advanced
//!   only by a write conditioned on the generation read, so that two replicas meeting the
//!   same read aggregate start one next generation, not two;
//! - each actor's member at (`{owner}#aggregate#{action}#{resource_id}`, actor), written
//!   only by a newer event of that actor (`version < :v`);
//! - the aggregate, a notification at (owner, `#{resource_id}#{action}#aggregate-{n}`), whose
//!   `version` is its revision: every rewrite is conditioned on the version read, and on
//!   `read_status` still false. After its member write, each join or leave recounts the
//!   generation from a strongly consistent query of the members and writes the result under
//!   that condition, again until one write holds: the last rewrite read every member write
//!   that finished before it, so the count is exact whatever the interleaving.

use super::aggregates::{Recount, next_version, report_join, report_leave};
use super::dynamodb::{DynamoDbStore, EXPIRES_AT, held, is_condition_failure, key, number, stored_version};
use super::{Ended, ErrorKind, Report, StoreError};
use crate::domain::{
    Actor, Counted, FeedItem, Group, Id, Join, JoinPlan, LeavePlan, Member, Tally, Timestamp, Version,
    life_id, plan_join, plan_leave,
};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use std::collections::HashMap;

/// When the aggregate was started (unix seconds; see [`super::Shown::started_at`]).
const STARTED_AT: &str = "started_at";
/// Rounds of conditional writes before a busy aggregate is handed back as transient.
const MAX_ROUNDS: usize = 16;

fn generation_key(group: &Group) -> HashMap<String, AttributeValue> {
    key(
        &format!("{}#aggregate", group.owner),
        &format!("{}#{}", group.action.code(), group.resource_id),
    )
}

fn members_partition(group: &Group) -> String {
    format!(
        "{}#aggregate#{}#{}",
        group.owner,
        group.action.code(),
        group.resource_id
    )
}

fn busy(group: &Group) -> StoreError {
    StoreError::new(
        ErrorKind::Transient,
        format!("dynamodb: the aggregate of {group} kept changing under {MAX_ROUNDS} attempts"),
    )
}

impl DynamoDbStore {
    pub(super) async fn join(&self, join: &Join, version: Version) -> Result<Report, StoreError> {
        let group = &join.group;
        for _ in 0..MAX_ROUNDS {
            let member = self.read_member(group, &join.actor.id).await?;
            let plan = plan_join(member.as_ref(), version);
            let generation = match plan {
                JoinPlan::Superseded => return Ok(report_join(Recount::Superseded, version)),
                JoinPlan::Repeat { generation } => {
                    let old = member.as_ref().map_or(Version::LEGACY, |member| member.version);
                    if !self.raise_member(group, &join.actor.id, old, version).await? {
                        continue;
                    }
                    generation
                }
                JoinPlan::Again { generation } => generation,
                JoinPlan::Join => {
                    let generation = self.unread_generation(group).await?;
                    if !self
                        .write_member(group, &join.actor, version, true, generation)
                        .await?
                    {
                        continue; // a newer event of this actor got there first: decide again
                    }
                    generation
                }
            };
            match self.recount(group, generation, version, Some(join)).await? {
                // Read between this like's choice of generation and its recount: unless the
                // owner saw it (named among the actors), it moves to the next generation.
                Recount::Read
                    if plan == JoinPlan::Join
                        && !self.shown_in(group, generation, &join.actor.id).await? =>
                {
                    let next = self.unread_generation(group).await?;
                    if next != generation {
                        self.move_member(group, &join.actor.id, version, generation, next)
                            .await?;
                    }
                }
                recount => return Ok(report_join(recount, version)),
            }
        }
        Err(busy(group))
    }

    pub(super) async fn leave(
        &self,
        group: &Group,
        actor: &Id,
        version: Version,
    ) -> Result<Report, StoreError> {
        for _ in 0..MAX_ROUNDS {
            let member = self.read_member(group, actor).await?;
            let generation = match plan_leave(member.as_ref(), version) {
                LeavePlan::Superseded => return Ok(report_leave(Recount::Unchanged, version)),
                LeavePlan::Record => {
                    let nobody = Actor::only(actor.clone());
                    if self.write_member(group, &nobody, version, false, 0).await? {
                        return Ok(report_leave(Recount::Unchanged, version));
                    }
                    continue;
                }
                LeavePlan::Again { generation } => generation,
                LeavePlan::Leave { generation } => {
                    if !self.member_out(group, actor, version).await? {
                        continue;
                    }
                    generation
                }
            };
            return Ok(report_leave(
                self.recount(group, generation, version, None).await?,
                version,
            ));
        }
        Err(busy(group))
    }

    async fn read_member(&self, group: &Group, actor: &Id) -> Result<Option<Member>, StoreError> {
        let item = self
            .get(
                key(&members_partition(group), actor.as_str()),
                "#v, present, generation",
            )
            .await?;
        Ok(item.map(|item| Member {
            version: stored_version(item.get("version")),
            present: item.get("present").and_then(|value| value.as_bool().ok()) == Some(&true),
            generation: item
                .get("generation")
                .and_then(|value| value.as_n().ok())
                .and_then(|text| text.parse().ok())
                .unwrap_or(0),
        }))
    }

    /// Writes the actor's standing if this event is newer than the one recorded. False
    /// when a newer (or this very) event of the actor is there already.
    async fn write_member(
        &self,
        group: &Group,
        actor: &Actor,
        version: Version,
        present: bool,
        generation: u64,
    ) -> Result<bool, StoreError> {
        let mut item = key(&members_partition(group), actor.id.as_str());
        item.insert("version".into(), number(version));
        item.insert("present".into(), AttributeValue::Bool(present));
        item.insert("generation".into(), AttributeValue::N(generation.to_string()));
        item.insert(
            "actor_created_at".into(),
            AttributeValue::S(actor.created_at.to_rfc3339()),
        );
        if !present {
            // Kept as long as a tombstone, then deleted by the table's TTL.
            item.insert(
                EXPIRES_AT.into(),
                AttributeValue::N(self.expires_at().to_string()),
            );
        }
        for (name, value) in [
            ("username", &actor.username),
            ("userpic", &actor.user_picture),
            ("userbio", &actor.user_bio),
        ] {
            if let Some(value) = value {
                item.insert(name.into(), AttributeValue::S(value.clone()));
            }
        }
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#v) OR #v < :v")
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(":v", number(version))
            .send()
            .await;
        held(self, "PutItem", put)
    }

    /// A newer like of an actor already in: its version rises, nothing else changes.
    async fn raise_member(
        &self,
        group: &Group,
        actor: &Id,
        old: Version,
        version: Version,
    ) -> Result<bool, StoreError> {
        let raised = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(&members_partition(group), actor.as_str())))
            .update_expression("SET #v = :v")
            .condition_expression("#v = :old AND present = :t")
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(":old", number(old))
            .expression_attribute_values(":v", number(version))
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .send()
            .await;
        held(self, "UpdateItem", raised)
    }

    /// The actor out, keeping the generation it was in (a redelivered unlike recounts it).
    async fn member_out(&self, group: &Group, actor: &Id, version: Version) -> Result<bool, StoreError> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(&members_partition(group), actor.as_str())))
            .update_expression("SET #v = :v, present = :f, #expires = :expires")
            .condition_expression("#v < :v AND present = :t")
            .expression_attribute_names("#v", "version")
            .expression_attribute_names("#expires", EXPIRES_AT)
            .expression_attribute_values(":expires", AttributeValue::N(self.expires_at().to_string()))
            .expression_attribute_values(":v", number(version))
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .expression_attribute_values(":f", AttributeValue::Bool(false))
            .send()
            .await;
        held(self, "UpdateItem", update)
    }

    /// Moves a like that met a read aggregate to the generation after it.
    async fn move_member(
        &self,
        group: &Group,
        actor: &Id,
        version: Version,
        from: u64,
        to: u64,
    ) -> Result<bool, StoreError> {
        let moved = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(&members_partition(group), actor.as_str())))
            .update_expression("SET generation = :to")
            .condition_expression("#v = :v AND present = :t AND generation = :from")
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(":v", number(version))
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .expression_attribute_values(":from", AttributeValue::N(from.to_string()))
            .expression_attribute_values(":to", AttributeValue::N(to.to_string()))
            .send()
            .await;
        held(self, "UpdateItem", moved)
    }

    /// The generation a like joins: the current one, or the next once the current
    /// aggregate is read. The advance is conditioned on the generation read, so replicas
    /// racing past one read aggregate agree on the one after it.
    async fn unread_generation(&self, group: &Group) -> Result<u64, StoreError> {
        for _ in 0..MAX_ROUNDS {
            let stored = self
                .get(generation_key(group), "#v, generation")
                .await?
                .and_then(|item| item.get("generation")?.as_n().ok()?.parse::<u64>().ok());
            let current = stored.unwrap_or(1);
            let read = self
                .read_aggregate(&group.owner, &group.key(current).to_string())
                .await?
                .is_some_and(|aggregate| aggregate.read);
            if !read {
                return Ok(current);
            }
            let mut advance = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(generation_key(group)))
                .update_expression("SET generation = :next")
                .expression_attribute_values(":next", AttributeValue::N((current + 1).to_string()));
            advance = match stored {
                Some(current) => advance
                    .condition_expression("generation = :current")
                    .expression_attribute_values(":current", AttributeValue::N(current.to_string())),
                None => advance.condition_expression("attribute_not_exists(generation)"),
            };
            if held(self, "UpdateItem", advance.send().await)? {
                return Ok(current + 1);
            }
            // Another replica advanced it: read again.
        }
        Err(busy(group))
    }

    /// Whether a read aggregate names `actor` among its latest actors.
    async fn shown_in(&self, group: &Group, generation: u64, actor: &Id) -> Result<bool, StoreError> {
        let aggregate = self
            .read_aggregate(&group.owner, &group.key(generation).to_string())
            .await?;
        Ok(aggregate.is_some_and(|aggregate| {
            aggregate
                .item
                .actors
                .unwrap_or_default()
                .iter()
                .any(|named| named.userid == actor.as_str())
        }))
    }

    async fn read_aggregate(&self, owner: &Id, action_key: &str) -> Result<Option<Aggregate>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(owner.as_str(), action_key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| self.failed("GetItem", &error))?;
        output
            .item
            .filter(|item| item.contains_key("id"))
            .map(|item| self.aggregate_of(item))
            .transpose()
    }

    fn aggregate_of(&self, item: HashMap<String, AttributeValue>) -> Result<Aggregate, StoreError> {
        let created = stored_version(item.get("created_seq"));
        let version = stored_version(item.get("version"));
        let started_at = item
            .get(STARTED_AT)
            .and_then(|value| value.as_n().ok())
            .and_then(|text| text.parse().ok());
        let item: FeedItem = serde_dynamo::from_item(item).map_err(|error| {
            StoreError::new(
                ErrorKind::Permanent,
                format!("unexpected item in {}: {error}", self.table),
            )
        })?;
        Ok(Aggregate {
            read: item.read_status,
            item,
            created,
            version,
            started_at,
        })
    }

    /// The generation's members that are in, counted, with the latest named.
    async fn tally(&self, group: &Group, generation: u64) -> Result<Tally, StoreError> {
        let mut tally = Tally::default();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .key_condition_expression("#owner = :p")
                .filter_expression("generation = :g AND present = :t")
                .projection_expression("action_key, #v, username, userpic, userbio, actor_created_at")
                .expression_attribute_names("#owner", "owner")
                .expression_attribute_names("#v", "version")
                .expression_attribute_values(":p", AttributeValue::S(members_partition(group)))
                .expression_attribute_values(":g", AttributeValue::N(generation.to_string()))
                .expression_attribute_values(":t", AttributeValue::Bool(true))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|error| self.failed("Query", &error))?;
            for item in page.items() {
                let text = |name: &str| item.get(name).and_then(|value| value.as_s().ok()).cloned();
                let (Some(id), Some(created_at)) = (
                    text("action_key").and_then(|id| Id::parse("actor", &id).ok()),
                    text("actor_created_at").and_then(|at| Timestamp::parse(&at)),
                ) else {
                    continue;
                };
                tally.add(Counted {
                    version: stored_version(item.get("version")),
                    actor: Actor {
                        id,
                        username: text("username"),
                        user_picture: text("userpic"),
                        user_bio: text("userbio"),
                        created_at,
                    },
                });
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(tally);
            }
        }
    }

    /// Recounts `generation`'s aggregate and writes what it shows, under the aggregate's
    /// version read (its revision) and `read_status` still false, until one write holds.
    async fn recount(
        &self,
        group: &Group,
        generation: u64,
        version: Version,
        join: Option<&Join>,
    ) -> Result<Recount, StoreError> {
        let action_key = group.key(generation).to_string();
        for _ in 0..MAX_ROUNDS {
            let existing = self.read_aggregate(&group.owner, &action_key).await?;
            if existing.as_ref().is_some_and(|aggregate| aggregate.read) {
                return Ok(Recount::Read);
            }
            let tally = self.tally(group, generation).await?;
            let Some(latest) = tally.latest().cloned() else {
                let Some(existing) = existing else {
                    return Ok(Recount::Unchanged);
                };
                let deleted = self
                    .client
                    .delete_item()
                    .table_name(&self.table)
                    .set_key(Some(key(group.owner.as_str(), &action_key)))
                    .condition_expression("#v = :v AND read_status = :f")
                    .expression_attribute_names("#v", "version")
                    .expression_attribute_values(":v", number(existing.version))
                    .expression_attribute_values(":f", AttributeValue::Bool(false))
                    .send()
                    .await;
                if held(self, "DeleteItem", deleted)? {
                    return Ok(Recount::Removed {
                        ended: Ended {
                            id: existing.item.id.clone(),
                            created: existing.created,
                        },
                        item: existing.item,
                    });
                }
                continue;
            };
            let named = tally.named();
            let actor = &latest.actor;
            match existing {
                None => {
                    // Only a like creates (a leave meeting actors without an aggregate is
                    // in the middle of a like's redelivery, which creates it).
                    let Some(join) = join else {
                        return Ok(Recount::Unchanged);
                    };
                    let key = group.key(generation);
                    let item = FeedItem {
                        owner: group.owner.to_string(),
                        action_key: action_key.clone(),
                        id: life_id(version, &group.owner, &key).hyphenated().to_string(),
                        userid: actor.id.to_string(),
                        username: actor.username.clone(),
                        userpic: actor.user_picture.clone(),
                        userbio: actor.user_bio.clone(),
                        action: i64::from(group.action.code()),
                        resource_type: group.resource_type.as_str().to_owned(),
                        resource_id: group.resource_id.to_string(),
                        excerpt: join.excerpt.clone(),
                        read_status: false,
                        created_at: actor.created_at.to_rfc3339(),
                        actor_count: Some(tally.count),
                        actors: Some(named),
                    };
                    let mut attributes = serde_dynamo::to_item::<_, HashMap<String, AttributeValue>>(&item)
                        .map_err(|error| {
                        StoreError::new(ErrorKind::Permanent, format!("cannot map the aggregate: {error}"))
                    })?;
                    let started_at = Timestamp::now().unix();
                    attributes.insert("created_seq".into(), number(version));
                    attributes.insert("version".into(), number(version));
                    attributes.insert(STARTED_AT.into(), AttributeValue::N(started_at.to_string()));
                    let put = self
                        .client
                        .put_item()
                        .table_name(&self.table)
                        .set_item(Some(attributes))
                        .condition_expression("attribute_not_exists(id)")
                        .send()
                        .await;
                    if held(self, "PutItem", put)? {
                        return Ok(Recount::Shown {
                            item,
                            version,
                            created: version,
                            started_at: Some(started_at),
                        });
                    }
                }
                Some(existing)
                    if existing.item.actor_count == Some(tally.count)
                        && existing.item.actors.as_ref() == Some(&named) =>
                {
                    return Ok(Recount::Shown {
                        item: existing.item,
                        version: existing.version,
                        created: existing.created,
                        started_at: existing.started_at,
                    });
                }
                Some(existing) => {
                    let next = next_version(existing.version, version);
                    let actors =
                        serde_dynamo::to_attribute_value::<_, AttributeValue>(&named).map_err(|error| {
                            StoreError::new(ErrorKind::Permanent, format!("cannot map the actors: {error}"))
                        })?;
                    // Display fields the latest actor lacks are removed, not left from another.
                    let mut sets = vec![
                        "userid = :userid",
                        "created_at = :created_at",
                        "actor_count = :count",
                        "actors = :actors",
                        "#v = :next",
                    ];
                    let mut removes = Vec::new();
                    let mut values = HashMap::from([
                        (":v".to_owned(), number(existing.version)),
                        (":f".to_owned(), AttributeValue::Bool(false)),
                        (":next".to_owned(), number(next)),
                        (":userid".to_owned(), AttributeValue::S(actor.id.to_string())),
                        (
                            ":created_at".to_owned(),
                            AttributeValue::S(actor.created_at.to_rfc3339()),
                        ),
                        (":count".to_owned(), AttributeValue::N(tally.count.to_string())),
                        (":actors".to_owned(), actors),
                    ]);
                    for (name, set, value) in [
                        ("username", "username = :username", &actor.username),
                        ("userpic", "userpic = :userpic", &actor.user_picture),
                        ("userbio", "userbio = :userbio", &actor.user_bio),
                    ] {
                        match value {
                            Some(value) => {
                                sets.push(set);
                                values.insert(format!(":{name}"), AttributeValue::S(value.clone()));
                            }
                            None => removes.push(name),
                        }
                    }
                    // The excerpt only from a like that carries one (an unlike has none).
                    if let Some(excerpt) = join.and_then(|join| join.excerpt.clone()) {
                        sets.push("excerpt = :excerpt");
                        values.insert(":excerpt".to_owned(), AttributeValue::S(excerpt));
                    }
                    let mut expression = format!("SET {}", sets.join(", "));
                    if !removes.is_empty() {
                        expression.push_str(&format!(" REMOVE {}", removes.join(", ")));
                    }
                    let update = self
                        .client
                        .update_item()
                        .table_name(&self.table)
                        .set_key(Some(key(group.owner.as_str(), &action_key)))
                        .update_expression(expression)
                        .condition_expression("#v = :v AND read_status = :f")
                        .expression_attribute_names("#v", "version")
                        .set_expression_attribute_values(Some(values))
                        .return_values(ReturnValue::AllNew);
                    match update.send().await {
                        Ok(output) => {
                            let written = self.aggregate_of(output.attributes.unwrap_or_default())?;
                            return Ok(Recount::Shown {
                                item: written.item,
                                version: next,
                                created: existing.created,
                                started_at: existing.started_at,
                            });
                        }
                        Err(error) if is_condition_failure(&error) => continue,
                        Err(error) => return Err(self.failed("UpdateItem", &error)),
                    }
                }
            }
        }
        Err(busy(group))
    }
}

/// An aggregate as read back.
struct Aggregate {
    item: FeedItem,
    read: bool,
    created: Version,
    version: Version,
    started_at: Option<i64>,
}
