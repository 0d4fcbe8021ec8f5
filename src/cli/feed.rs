//! `notification-worker feed OWNER [--limit N] [--json]`: a user's notifications, newest first.

use super::UsageError;
use crate::config::Config;
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
    let action = Action::from_code(item.action).map_or("action", Action::name);
    let who = match &item.username {
        Some(name) => format!("{} ({name})", item.userid),
        None => item.userid.clone(),
    };
    let status = if item.read_status { "read" } else { "unread" };
    let mut line = format!(
        "{}  {who}  {action}  {} {}  [{status}]",
        item.created_at, item.resource_type, item.resource_id
    );
    if let Some(excerpt) = &item.excerpt {
        line.push_str(&format!("  {excerpt:?}"));
    }
    line
}
