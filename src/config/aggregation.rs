//! `AGGREGATE`: the event types whose creates fold into one notification per (owner,
//! action, resource) while it is unread (docs/aggregation.md).

use super::{ConfigError, bad};
use crate::domain::{Action, Aggregation, Operation, SUBJECT_PREFIX, SUBJECTS};
use clap::Args;

const EXAMPLE: &str = "post.like,comment.like,user.follow";

#[derive(Clone, Args)]
pub struct RawAggregation {
    /// Event types whose creates on one (owner, action, resource) fold into one unread
    /// notification with `actor_count` and `actors`: a comma-separated list such as
    /// post.like,comment.like,user.follow, or `off`. Their removes (unlike, unfollow) take the
    /// actor out again.
    #[arg(
        long,
        env = "AGGREGATE",
        default_value = "off",
        global = true,
        help_heading = super::heading::WORKER
    )]
    pub aggregate: String,
}

impl Default for RawAggregation {
    /// The documented default: every event makes its own notification.
    fn default() -> RawAggregation {
        RawAggregation {
            aggregate: "off".into(),
        }
    }
}

pub fn parse(raw: &RawAggregation) -> Result<Aggregation, ConfigError> {
    let value = raw.aggregate.trim();
    if value == "off" || value.is_empty() {
        return Ok(Aggregation::OFF);
    }
    let mut aggregation = Aggregation::OFF;
    for name in value.split(',').map(str::trim) {
        let row = SUBJECTS.iter().find(|row| {
            row.operation == Operation::Create && row.subject.strip_prefix(SUBJECT_PREFIX) == Some(name)
        });
        let Some(action) = row
            .and_then(|row| row.action)
            .and_then(|code| Action::from_code(code.into()))
        else {
            let creates: Vec<&str> = SUBJECTS
                .iter()
                .filter(|row| row.operation == Operation::Create)
                .filter_map(|row| row.subject.strip_prefix(SUBJECT_PREFIX))
                .collect();
            return Err(bad(
                "AGGREGATE",
                value,
                format!(
                    "{name:?} is not an event type that creates; choose from {} (or off)",
                    creates.join(", ")
                ),
                EXAMPLE,
            ));
        };
        aggregation = aggregation.with(action);
    }
    Ok(aggregation)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_value(value: &str) -> Result<Aggregation, ConfigError> {
        parse(&RawAggregation {
            aggregate: value.into(),
        })
    }

    #[test]
    fn a_list_of_creating_event_types() {
        let on = parse_value("post.like, user.follow").unwrap();
        assert_eq!(on.actions().map(Action::code).collect::<Vec<_>>(), [1, 6]);
        assert_eq!(parse_value("off").unwrap(), Aggregation::OFF);
    }

    #[test]
    fn removes_and_unknown_types_are_refused_naming_the_variable() {
        for value in [
            "post.unlike",
            "post.share",
            "post.like,,",
            "notifications.post.like",
        ] {
            let error = parse_value(value).unwrap_err().to_string();
            assert!(error.contains("AGGREGATE"), "{value}: {error}");
        }
    }
}
