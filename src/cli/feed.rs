//! `notification-worker feed OWNER [--limit N] [--json]`: a user's notifications, newest first.

use super::UsageError;
use crate::config::Config;
use crate::delivery::wording;
use crate::domain::{Action, FeedItem, Id};
use crate::store::{AnyStore, NotificationStore};

pub async fn feed(config: &Config, owner: &str, limit: usize, json: bool) -> anyhow::Result<()> {
    let owner = Id::parse("OWNER", owner).map_err(|error| UsageError(error.to_string()))?;
    let store = AnyStore::open(&config.store).await?;
    let items = store.feed(&owner, limit).await?;
    for item in &items {
        if json {
            println!("{}", serde_json::to_string(item)?);
        } else {
            println!("{}", line(item));
        }
    }
    if !json && items.is_empty() {
        eprintln!("no notifications for {owner} in {}", store.describe());
    }
    Ok(())
}

fn line(item: &FeedItem) -> String {
    let what = match item.actor_count {
        // An aggregate of several actors reads as the product says it: "John Doe and 4
        // others liked your post" (`--json` has every actor's fields).
        Some(count) if count > 1 => wording::sentence(item),
        _ => {
            let action = Action::from_code(item.action).map_or("action", Action::name);
            match &item.username {
                Some(name) => format!("{} ({name})  {action}", item.userid),
                None => format!("{}  {action}", item.userid),
            }
        }
    };
    let status = if item.read_status { "read" } else { "unread" };
    let mut line = format!(
        "{}  {what}  {} {}  [{status}]",
        item.created_at, item.resource_type, item.resource_id
    );
    if let Some(excerpt) = &item.excerpt {
        line.push_str(&format!("  {excerpt:?}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::job::Notice;

    #[test]
    fn an_aggregate_is_one_sentence_and_one_actor_the_usual_line() {
        let mut item = Notice::sample("user-123").item;
        item.created_at = "2025-12-09T22:06:40Z".into();
        item.excerpt = None;
        item.actor_count = Some(1);
        assert_eq!(
            line(&item),
            "2025-12-09T22:06:40Z  user-456 (John Doe)  like post  POST post-789  [unread]"
        );
        item.actor_count = Some(5);
        assert_eq!(
            line(&item),
            "2025-12-09T22:06:40Z  John Doe and 4 others liked your post  POST post-789  [unread]"
        );
    }
}
