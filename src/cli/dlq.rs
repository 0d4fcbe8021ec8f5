//! `notification-worker dlq list|replay|purge`: look at, replay and clear dead letters.

use super::UsageError;
use crate::config::Config;
use crate::delivery::digest::DIGEST_DUE_PREFIX;
use crate::delivery::stage::REPLAY_PREFIX;
use crate::input::{self, DELIVERIES_DLQ_STREAM, DLQ_PREFIX, DLQ_STREAM, RECIPIENTS_DLQ_STREAM, dlq_header};
use anyhow::Context;
use async_nats::jetstream::{self, stream::Stream};
use clap::Subcommand;
use serde::Serialize;

#[derive(Debug, Clone, Subcommand)]
pub enum DlqCommand {
    /// List dead letters, oldest first.
    List {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// How many to show at most.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Publish dead letters again (an event to its original subject, a delivery job to its
    /// own channel only); each is removed from the dead-letter stream only after its
    /// republish is acknowledged.
    Replay {
        /// Dead-letter sequence numbers (as `list` shows them).
        #[arg(long = "seq", num_args = 1.., required_unless_present = "all", conflicts_with = "all")]
        sequences: Vec<u64>,
        /// Every dead letter.
        #[arg(long)]
        all: bool,
        /// Print each dead letter that would be replayed and the subject it would go to;
        /// nothing is published or deleted.
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete every dead letter.
    Purge {
        /// Required: purging cannot be undone.
        #[arg(long)]
        yes: bool,
    },
}

/// Which dead letters (`dlq --stream`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DlqStream {
    /// Events the worker could not store (NOTIFICATIONS_DLQ).
    #[default]
    Events,
    /// Delivery jobs a channel gave up on (DELIVERIES_DLQ); `replay` sends each to its own
    /// channel only.
    Deliveries,
    /// Recipient directory events the worker could not apply (RECIPIENTS_DLQ); `replay`
    /// republishes each to stream RECIPIENTS with its original version.
    Recipients,
}

impl DlqStream {
    fn name(self) -> &'static str {
        match self {
            DlqStream::Events => DLQ_STREAM,
            DlqStream::Deliveries => DELIVERIES_DLQ_STREAM,
            DlqStream::Recipients => RECIPIENTS_DLQ_STREAM,
        }
    }
}

/// A dead letter as `list` shows it (`--json`: numbers as numbers, `null` where a header is
/// missing).
#[derive(Debug, Serialize)]
struct DeadLetter {
    sequence: u64,
    time: String,
    subject: String,
    reason: String,
    error: String,
    original_sequence: Option<u64>,
    /// A string: the number has up to 36 digits, more than a JSON reader keeps exactly
    /// (JavaScript, jq before 1.7). Empty on dead letters written before versions existed.
    original_version: String,
    attempts: Option<u64>,
    /// The channel that gave up on it (delivery dead letters only).
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<String>,
    /// The body's first bytes, as text (invalid UTF-8 shows as U+FFFD).
    body_preview: String,
    #[serde(skip)]
    body: bytes::Bytes,
}

/// Bytes of the body shown by `list`.
const PREVIEW_BYTES: usize = 120;

pub async fn dlq(config: &Config, which: DlqStream, command: DlqCommand) -> anyhow::Result<()> {
    if let DlqCommand::Purge { yes: false } = command {
        return Err(
            UsageError("purge deletes every dead letter for good: add --yes to confirm".into()).into(),
        );
    }
    let client = input::connect(&config.nats, "notification-worker-dlq").await?;
    let js = jetstream::new(client);
    let name = which.name();
    let stream = js.get_stream(name).await.with_context(|| match which {
        DlqStream::Events | DlqStream::Recipients => {
            format!("cannot read the dead-letter stream {name} (run `notification-worker setup`)")
        }
        DlqStream::Deliveries => format!(
            "cannot read the dead-letter stream {name} (it exists once `setup` or `run` has started a delivery channel)"
        ),
    })?;
    match command {
        DlqCommand::List { json, limit } => list(&stream, name, json, limit).await,
        DlqCommand::Replay {
            sequences,
            all,
            dry_run,
        } => {
            let sequences = if all {
                all_sequences(&stream).await?
            } else {
                sequences
            };
            replay(&js, &stream, which, &sequences, dry_run).await
        }
        DlqCommand::Purge { .. } => {
            let purged = stream
                .purge()
                .await
                .context("cannot purge the dead-letter stream")?;
            println!("purged {}", dead_letters(purged.purged));
            Ok(())
        }
    }
}

async fn list(stream: &Stream, name: &str, json: bool, limit: usize) -> anyhow::Result<()> {
    let mut shown = 0;
    for sequence in all_sequences(stream).await? {
        if shown == limit {
            break;
        }
        let Some(letter) = read(stream, sequence).await? else {
            continue;
        };
        shown += 1;
        if json {
            println!("{}", serde_json::to_string(&letter)?);
        } else {
            println!(
                "{}  {}  {}  {}  {}  {}",
                letter.sequence,
                letter.time,
                letter.subject,
                letter.reason,
                letter.error,
                one_line(&letter.body_preview)
            );
        }
    }
    if shown == 0 && !json {
        eprintln!("no dead letters in {name}");
    }
    Ok(())
}

async fn replay(
    js: &jetstream::Context,
    stream: &Stream,
    which: DlqStream,
    sequences: &[u64],
    dry_run: bool,
) -> anyhow::Result<()> {
    if sequences.is_empty() {
        eprintln!("nothing to replay: {} holds no dead letters", which.name());
        return Ok(());
    }
    let progress = indicatif::ProgressBar::new(sequences.len() as u64);
    progress.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} replayed ({eta} left)")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    // Only worth drawing for long replays (and never into a pipe: indicatif checks).
    if sequences.len() < 100 || dry_run {
        progress.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut replayed: u64 = 0;
    for &sequence in sequences {
        let Some(letter) = read(stream, sequence).await? else {
            progress.suspend(|| eprintln!("dead letter {sequence} does not exist; skipped"));
            continue;
        };
        // A delivery job goes back to its own channel only (the other channels' consumers
        // skip it): its dead letter's subject names the channel.
        let target = match which {
            DlqStream::Events | DlqStream::Recipients => letter.subject.clone(),
            // A digest given up on goes back to its channel's digest consumer, which sends
            // it at once (its window is long over).
            DlqStream::Deliveries if letter.subject.starts_with(DIGEST_DUE_PREFIX) => letter.subject.clone(),
            DlqStream::Deliveries => match letter.channel.as_deref() {
                Some(channel) => format!("{REPLAY_PREFIX}{channel}"),
                None => {
                    progress.suspend(|| eprintln!("dead letter {sequence} names no channel; skipped"));
                    continue;
                }
            },
        };
        if dry_run {
            println!("would replay {sequence} to {target} ({})", letter.reason);
            continue;
        }
        // Republish first; delete the dead letter only once the stream holds the event
        // again, so a failure in between leaves a copy in both places, never in neither.
        // With the original's version: the worker applies the event as of when it was first
        // published, so a replayed like cannot undo the unlike that followed it.
        let mut headers = async_nats::HeaderMap::new();
        if which != DlqStream::Deliveries && !letter.original_version.is_empty() {
            headers.insert(dlq_header::ORIGINAL_VERSION, letter.original_version.as_str());
            if let Some(original) = letter.original_sequence {
                headers.insert(dlq_header::ORIGINAL_SEQUENCE, original.to_string().as_str());
            }
        }
        input::publish_with_headers(js, target, headers, letter.body.clone()).await?;
        stream.delete_message(sequence).await.with_context(|| {
            format!(
                "replayed {sequence} but could not delete it from {}",
                which.name()
            )
        })?;
        replayed += 1;
        progress.inc(1);
    }
    progress.finish_and_clear();
    if !dry_run {
        if replayed == 0 {
            eprintln!(
                "nothing to replay: none of the dead letters given is in {}",
                which.name()
            );
        } else {
            println!("replayed {}", dead_letters(replayed));
        }
    }
    Ok(())
}

async fn all_sequences(stream: &Stream) -> anyhow::Result<Vec<u64>> {
    let mut stream = stream.clone();
    let state = stream
        .info()
        .await
        .context("cannot read the dead-letter stream")?
        .state
        .clone();
    if state.messages == 0 {
        return Ok(Vec::new());
    }
    Ok((state.first_sequence..=state.last_sequence).collect())
}

/// `None` for a sequence that was deleted (replayed) or never existed.
async fn read(stream: &Stream, sequence: u64) -> anyhow::Result<Option<DeadLetter>> {
    let message = match stream.get_raw_message(sequence).await {
        Ok(message) => message,
        Err(error) if error.kind() == jetstream::stream::RawMessageErrorKind::NoMessageFound => {
            return Ok(None);
        }
        Err(error) => return Err(error).with_context(|| format!("cannot read dead letter {sequence}")),
    };
    let header = |name: &str| {
        message
            .headers
            .get(name)
            .map(|value| value.to_string())
            .unwrap_or_default()
    };
    let subject = match header(dlq_header::ORIGINAL_SUBJECT) {
        original if !original.is_empty() => original,
        _ => message
            .subject
            .strip_prefix(DLQ_PREFIX)
            .unwrap_or(&message.subject)
            .to_owned(),
    };
    let number = |name: &str| header(name).trim().parse::<u64>().ok();
    let time = message
        .time
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    Ok(Some(DeadLetter {
        sequence,
        time,
        subject,
        reason: header(dlq_header::REASON),
        error: header(dlq_header::ERROR),
        original_sequence: number(dlq_header::ORIGINAL_SEQUENCE),
        original_version: header(dlq_header::ORIGINAL_VERSION),
        attempts: number(dlq_header::ATTEMPTS),
        channel: message
            .subject
            .strip_prefix(DLQ_PREFIX)
            .and_then(|rest| rest.strip_prefix("deliveries."))
            .map(str::to_owned),
        body_preview: preview(&message.payload),
        body: message.payload,
    }))
}

/// The body's first [`PREVIEW_BYTES`] as text, cut between characters.
fn preview(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(PREVIEW_BYTES + 4)]);
    let mut end = text.len().min(PREVIEW_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// Text for one line of a terminal: control characters (a newline, an escape sequence)
/// written as escapes, everything else as it is.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// "1 dead letter", "2 dead letters".
fn dead_letters(count: u64) -> String {
    match count {
        1 => "1 dead letter".to_owned(),
        n => format!("{n} dead letters"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_are_cut_between_characters_and_kept_on_one_line() {
        let body = "é".repeat(100);
        let cut = preview(body.as_bytes());
        assert_eq!(cut, "é".repeat(PREVIEW_BYTES / 2));
        assert_eq!(
            one_line("{\"a\":\"b\"}\n\u{1b}[31m"),
            "{\"a\":\"b\"}\\n\\u{1b}[31m"
        );
        assert_eq!(dead_letters(1), "1 dead letter");
        assert_eq!(dead_letters(0), "0 dead letters");
    }
}
