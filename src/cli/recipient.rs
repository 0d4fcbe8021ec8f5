//! `notification-worker recipient set|show|remove|push`: the recipient directory from the
//! command line (issue 10).
//!
//! Changes are not written to the store: they are published to stream `RECIPIENTS` as the
//! application's events are, so they get a version and merge with everything else in any
//! order. Each event is built from the flags and checked with the worker's own parser
//! before it is published, so a bad flag is refused here (exit 2), not dead-lettered later.
//! `show` reads the store and applies `NOTIFY_DEFAULTS` as delivery does.

use super::UsageError;
use crate::config::{Config, Environment, NatsMode};
use crate::domain::{Id, SUBJECT_PREFIX, SUBJECTS};
use crate::input;
use crate::recipients::{
    Channel, EventTypeName, NotifyDefaults, PUSH_ADD, PUSH_REMOVE, PushKind, PushTarget, REMOVE, Recipient,
    RecipientPolicy, UPSERT, parse_recipient_event, resolve_mode,
};
use crate::store::{AnyRecipientStore, RecipientStore};
use clap::Subcommand;
use serde_json::{Map, Value, json};

#[derive(Debug, Clone, Subcommand)]
pub enum RecipientCommand {
    /// Set a recipient's email, locale or preferences (publishes `recipients.upsert`).
    /// Fields not given stay as they are; an empty value (`--email ''`) clears one.
    Set {
        /// The user, e.g. user-123
        owner: String,
        /// Email address (`''` clears it).
        #[arg(long)]
        email: Option<String>,
        /// Locale, e.g. en or fr-CA (`''` clears it).
        #[arg(long)]
        locale: Option<String>,
        /// A preference, CHANNEL.ACTION=MODE: channel email, push, webpush, fcm or apns; the
        /// event type; mode instant, digest or off, or nothing to go back to the defaults.
        /// Repeat for more, e.g. --pref email.reply.post=instant --pref push.post.like=off
        #[arg(long = "pref", value_name = "CHANNEL.ACTION=MODE")]
        preferences: Vec<String>,
    },
    /// Show a recipient's entry and the mode each channel uses for each event type.
    Show {
        /// The user, e.g. user-123
        owner: String,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Forget a recipient: everything set so far (publishes `recipients.remove`).
    Remove {
        /// The user, e.g. user-123
        owner: String,
    },
    /// Add or remove a push target (publishes `recipients.push.add` or `.remove`).
    Push {
        #[command(subcommand)]
        command: PushCommand,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum PushCommand {
    /// Add a push target.
    Add(PushArgs),
    /// Remove a push target (a Web Push subscription needs only its endpoint).
    Remove(PushArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct PushArgs {
    /// The user, e.g. user-123
    owner: String,
    /// fcm, apns or webpush.
    #[arg(long)]
    kind: String,
    /// The device token (fcm, apns).
    #[arg(long)]
    token: Option<String>,
    /// The Web Push subscription as `PushSubscription.toJSON()` gives it
    /// (`{"endpoint":…,"keys":{"p256dh":…,"auth":…}}`): JSON text or @FILE.
    #[arg(long)]
    subscription: Option<String>,
}

pub async fn recipient(config: &Config, command: RecipientCommand) -> anyhow::Result<()> {
    let (subject, event) = match command {
        RecipientCommand::Show { owner, json } => return show(config, &owner, json).await,
        RecipientCommand::Set {
            owner,
            email,
            locale,
            preferences,
        } => (UPSERT, upsert_event(&owner, email, locale, &preferences)?),
        RecipientCommand::Remove { owner } => (REMOVE, json!({ "owner": owner })),
        RecipientCommand::Push { command } => match command {
            PushCommand::Add(args) => (PUSH_ADD, push_event(args)?),
            PushCommand::Remove(args) => (PUSH_REMOVE, push_event(args)?),
        },
    };
    let body = serde_json::to_vec(&event)?;
    let policy = RecipientPolicy {
        allow_http_endpoints: config.environment == Environment::Development,
    };
    // The worker's own parser: what it would dead-letter is refused here instead.
    parse_recipient_event(subject, &body, &policy).map_err(|rejection| UsageError(rejection.to_string()))?;
    if config.nats.mode != NatsMode::JetStream {
        return Err(UsageError(
            "the recipient directory is kept through stream RECIPIENTS, which needs NATS_MODE=jetstream"
                .into(),
        )
        .into());
    }
    let client = input::connect(&config.nats, "notification-worker-recipient").await?;
    let js = async_nats::jetstream::new(client);
    let sequence = input::publish(&js, subject.to_owned(), body.into()).await?;
    println!("{sequence}");
    Ok(())
}

fn upsert_event(
    owner: &str,
    email: Option<String>,
    locale: Option<String>,
    preferences: &[String],
) -> Result<Value, UsageError> {
    if email.is_none() && locale.is_none() && preferences.is_empty() {
        return Err(UsageError(
            "nothing to set: give --email, --locale or --pref CHANNEL.ACTION=MODE".into(),
        ));
    }
    let mut event = Map::new();
    event.insert("owner".into(), owner.into());
    if let Some(email) = email {
        event.insert("email".into(), email.into());
    }
    if let Some(locale) = locale {
        event.insert("locale".into(), locale.into());
    }
    if !preferences.is_empty() {
        let mut by_channel = Map::new();
        for item in preferences {
            let (channel, event_type, mode) = split_preference(item)?;
            let types = by_channel
                .entry(channel)
                .or_insert_with(|| Value::Object(Map::new()));
            let mode = if mode.is_empty() { Value::Null } else { mode.into() };
            if let Some(types) = types.as_object_mut()
                && types.insert(event_type.clone(), mode).is_some()
            {
                return Err(UsageError(format!(
                    "--pref {item}: {event_type} is given twice for that channel"
                )));
            }
        }
        event.insert("preferences".into(), Value::Object(by_channel));
    }
    Ok(Value::Object(event))
}

/// `email.reply.post=instant` → (`email`, `reply.post`, `instant`): the channel ends at the
/// first dot (event types have dots of their own), the mode starts after `=`.
fn split_preference(item: &str) -> Result<(String, String, String), UsageError> {
    let shape = || {
        UsageError(format!(
            "--pref {item:?} is not CHANNEL.ACTION=MODE (example: --pref email.reply.post=instant)"
        ))
    };
    let (key, mode) = item.split_once('=').ok_or_else(shape)?;
    let (channel, event_type) = key.split_once('.').ok_or_else(shape)?;
    Ok((
        channel.trim().into(),
        event_type.trim().into(),
        mode.trim().into(),
    ))
}

fn push_event(args: PushArgs) -> anyhow::Result<Value> {
    let mut event = json!({ "owner": args.owner, "kind": args.kind });
    let webpush = args.kind == PushKind::Webpush.as_str();
    match (webpush, args.token, args.subscription) {
        (false, Some(token), None) => event["token"] = token.into(),
        (true, None, Some(subscription)) => event["subscription"] = read_subscription(&subscription)?,
        (false, _, _) => {
            return Err(UsageError(format!(
                "--kind {} needs --token (and no --subscription)",
                args.kind
            ))
            .into());
        }
        (true, _, _) => {
            return Err(UsageError(
                "--kind webpush needs --subscription JSON or @FILE (and no --token)".into(),
            )
            .into());
        }
    }
    Ok(event)
}

fn read_subscription(given: &str) -> Result<Value, UsageError> {
    let text = match given.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|error| UsageError(format!("cannot read the subscription from {path}: {error}")))?,
        None => given.to_owned(),
    };
    serde_json::from_str(&text).map_err(|error| UsageError(format!("--subscription is not JSON: {error}")))
}

async fn show(config: &Config, owner: &str, json: bool) -> anyhow::Result<()> {
    let owner = Id::parse("OWNER", owner).map_err(|error| UsageError(error.to_string()))?;
    let store = AnyRecipientStore::open(&config.store).await?;
    let record = store.get(&owner).await?;
    let view = view(&owner, record.as_ref(), &config.notify_defaults);
    if json {
        println!("{}", serde_json::to_string(&view)?);
    } else {
        print!("{}", text(&view));
    }
    Ok(())
}

/// Event types a preference may name: every subject that creates a notification.
fn known_event_types() -> Vec<EventTypeName> {
    SUBJECTS
        .iter()
        .filter_map(|row| row.subject.strip_prefix(SUBJECT_PREFIX))
        .filter_map(|tail| EventTypeName::parse(tail).ok())
        .collect()
}

/// A push token is a credential of sorts and long: enough of it to recognise.
fn shorten(token: &str) -> String {
    let chars: Vec<char> = token.chars().collect();
    if chars.len() <= 16 {
        return token.to_owned();
    }
    let head: String = chars[..8].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}…{tail}")
}

fn target_view(target: &PushTarget) -> Value {
    json!({ "kind": target.kind().as_str(), "token": shorten(target.token()) })
}

/// What `show` prints, as one JSON object (the text form is drawn from it). A recipient
/// removed by `recipients.remove` keeps a record (its removal floor) but has no entry.
fn view(owner: &Id, record: Option<&Recipient>, defaults: &NotifyDefaults) -> Value {
    let record = record.filter(|record| {
        record.email().is_some()
            || record.locale().is_some()
            || record.preferences().next().is_some()
            || record.push_targets().next().is_some()
    });
    let mut preferences = Map::new();
    for (channel, event_type, mode) in record.into_iter().flat_map(Recipient::preferences) {
        preferences
            .entry(channel.as_str())
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
            .expect("an object")
            .insert(event_type.as_str().into(), mode.as_str().into());
    }
    let targets: Vec<Value> = record
        .into_iter()
        .flat_map(Recipient::push_targets)
        .map(target_view)
        .collect();
    let mut effective = Map::new();
    for channel in Channel::ALL {
        let modes: Map<String, Value> = known_event_types()
            .iter()
            .map(|event_type| {
                let mode = resolve_mode(defaults, record, channel, event_type);
                (event_type.as_str().to_owned(), mode.as_str().into())
            })
            .collect();
        effective.insert(channel.as_str().into(), Value::Object(modes));
    }
    json!({
        "owner": owner.to_string(),
        "entry": record.is_some(),
        "email": record.and_then(Recipient::email).map(|email| email.as_str()),
        "locale": record.and_then(Recipient::locale).map(|locale| locale.as_str()),
        "preferences": preferences,
        "push_targets": targets,
        "effective": effective,
    })
}

fn text(view: &Value) -> String {
    let owner = view["owner"].as_str().unwrap_or_default();
    let mut out = String::new();
    if view["entry"] != true {
        out.push_str(&format!("no entry for {owner}; defaults apply\n"));
    } else {
        out.push_str(&format!("recipient {owner}\n"));
        let or_none = |value: &Value| value.as_str().unwrap_or("(none)").to_owned();
        out.push_str(&format!("  email:   {}\n", or_none(&view["email"])));
        out.push_str(&format!("  locale:  {}\n", or_none(&view["locale"])));
        out.push_str("  preferences set:\n");
        let mut any = false;
        for (channel, types) in view["preferences"].as_object().into_iter().flatten() {
            for (event_type, mode) in types.as_object().into_iter().flatten() {
                any = true;
                out.push_str(&format!(
                    "    {channel}.{event_type}={}\n",
                    mode.as_str().unwrap_or_default()
                ));
            }
        }
        if !any {
            out.push_str("    (none)\n");
        }
        out.push_str("  push targets:\n");
        let targets = view["push_targets"].as_array().cloned().unwrap_or_default();
        for target in &targets {
            out.push_str(&format!(
                "    {} {}\n",
                target["kind"].as_str().unwrap_or_default(),
                target["token"].as_str().unwrap_or_default()
            ));
        }
        if targets.is_empty() {
            out.push_str("    (none)\n");
        }
    }
    out.push_str("effective modes (the person's preferences, then NOTIFY_DEFAULTS):\n");
    let channels: Vec<&str> = Channel::ALL.iter().map(|channel| channel.as_str()).collect();
    out.push_str(&format!("  {:<16}", "event type"));
    for channel in &channels {
        out.push_str(&format!("{channel:<9}"));
    }
    out.push('\n');
    for event_type in known_event_types() {
        out.push_str(&format!("  {:<16}", event_type.as_str()));
        for channel in &channels {
            let mode = view["effective"][channel][event_type.as_str()]
                .as_str()
                .unwrap_or_default();
            out.push_str(&format!("{mode:<9}"));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preference_splits_on_the_first_dot_and_the_equals_sign() {
        let (channel, event_type, mode) = split_preference("email.reply.post=instant").unwrap();
        assert_eq!(
            (channel.as_str(), event_type.as_str(), mode.as_str()),
            ("email", "reply.post", "instant")
        );
        let (_, _, mode) = split_preference("push.post.like=").unwrap();
        assert_eq!(mode, "", "an empty mode clears the preference");
        assert!(split_preference("email=off").is_err());
        assert!(split_preference("email.post.like").is_err());
    }

    #[test]
    fn an_upsert_groups_preferences_by_channel_and_refuses_one_given_twice() {
        let event = upsert_event(
            "user-1",
            Some("a@example.com".into()),
            None,
            &[
                "email.reply.post=instant".into(),
                "email.post.like=".into(),
                "push.post.like=off".into(),
            ],
        )
        .unwrap();
        assert_eq!(
            event,
            json!({"owner":"user-1","email":"a@example.com","preferences":{
                "email":{"reply.post":"instant","post.like":null},"push":{"post.like":"off"}}})
        );
        assert!(
            upsert_event(
                "user-1",
                None,
                None,
                &["email.post.like=off".into(), "email.post.like=instant".into()]
            )
            .is_err()
        );
        assert!(upsert_event("user-1", None, None, &[]).is_err());
    }

    #[test]
    fn a_long_token_is_shortened() {
        assert_eq!(shorten("abc"), "abc");
        assert_eq!(shorten("0123456789abcdefghij"), "01234567…ghij");
    }
}
