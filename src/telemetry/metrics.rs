//! Prometheus metrics. The names are part of the contract (dashboards and alerts read them);
//! labels take few values, never user ids or error texts.

use crate::domain::{Operation, Reason, SUBJECTS};
use crate::store::{CheckpointCounts, ErrorKind, WalStats};
use crate::telemetry::exposition::Format;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Outcomes counted in `notification_worker_events_total` for every event type. An event
/// handed back for redelivery is not counted: it will be counted once it is settled.
pub const OUTCOMES: [&str; 3] = ["self_skipped", "invalid", "dead_lettered"];

/// The store's outcomes, which depend on what the subject asks for: a create is stored,
/// left as it is, or comes too late (a newer remove stands); a remove deletes or finds
/// nothing to delete. The `other` row can be either.
/// `throttled`: over a rate limit, not stored (docs/rate-limits.md). `aggregated`: folded
/// into (or taken out of) an existing aggregate (docs/aggregation.md).
const CREATE_OUTCOMES: [&str; 5] = ["created", "aggregated", "duplicate", "superseded", "throttled"];
/// The rate limits, as `notification_worker_throttled_total` labels them: the trigger
/// user's, and the owner's per channel a setting names.
pub fn limits() -> impl Iterator<Item = &'static str> {
    std::iter::once(crate::limits::trigger_user::LIMIT).chain(crate::limits::owner::LIMITS)
}
const REMOVE_OUTCOMES: [&str; 3] = ["removed", "aggregated", "absent"];

/// The recipient directory's events (stream `RECIPIENTS`), counted in
/// `notification_worker_recipient_events_total`; `other` is a subject no event has.
pub const RECIPIENT_EVENT_TYPES: [&str; 5] = ["upsert", "push.add", "push.remove", "remove", "other"];
/// What became of a recipient event: merged into the record, changing nothing, refused by
/// the parser, or dead-lettered for another reason (store refusal, delivered too often).
pub const RECIPIENT_OUTCOMES: [&str; 4] = ["applied", "unchanged", "invalid", "dead_lettered"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    event_type: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckpointLabels {
    mode: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabels {
    channel: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    channel: &'static str,
    outcome: &'static str,
}

/// Outcomes counted in `notification_worker_deliveries_total`: a job sent and accepted, a
/// failed send that will be tried again, a job given up on.
pub const DELIVERY_OUTCOMES: [&str; 3] = ["delivered", "retried", "dead_lettered"];

/// What a personal channel (email, webpush, fcm, apns) made of a new notification, counted
/// in `notification_worker_personal_decisions_total`: sent at once, added to the owner's
/// digest, added to it because the owner was past `RATE_LIMIT_OWNER` on the channel, not
/// sent because the owner turned it off, or not sent because the directory has no address
/// of theirs for the channel.
pub const PERSONAL_DECISIONS: [&str; 5] = ["instant", "digest", "throttled", "off", "unreachable"];

/// What became of a digest window, counted in `notification_worker_digests_total`: sent,
/// nothing left unread (nothing sent), tried again later, given up on.
pub const DIGEST_OUTCOMES: [&str; 4] = ["sent", "empty", "retried", "dead_lettered"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    channel: &'static str,
    decision: &'static str,
}

/// The delivery stage's series, per channel; only enabled channels' series exist.
struct DeliveryMetrics {
    deliveries: Family<DeliveryLabels, Counter>,
    latency: Family<ChannelLabels, Histogram>,
    outbox_pending: Family<ChannelLabels, Gauge>,
    outbox_jobs: Family<KindLabels, Counter>,
    outbox_lost: Counter,
    personal: Family<DecisionLabels, Counter>,
    digests: Family<DeliveryLabels, Counter>,
    devices_removed: Family<ChannelLabels, Counter>,
}

impl DeliveryMetrics {
    fn register(registry: &mut Registry) -> DeliveryMetrics {
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "deliveries",
            "Delivery jobs by channel and outcome (delivered, retried, dead_lettered)",
            deliveries.clone(),
        );
        let latency = Family::<ChannelLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(DELIVERY_LATENCY_BUCKETS)
        });
        registry.register_with_unit(
            "delivery_latency",
            "From the job's commit to the outbox to the channel's acceptance, per channel",
            Unit::Seconds,
            latency.clone(),
        );
        let outbox_pending = Family::<ChannelLabels, Gauge>::default();
        registry.register(
            "outbox_pending",
            "Delivery jobs in the outbox not yet delivered to the channel's consumer",
            outbox_pending.clone(),
        );
        let outbox_jobs = Family::<KindLabels, Counter>::default();
        registry.register(
            "outbox_jobs",
            "Delivery jobs announced to the outbox, by kind (created, updated, removed)",
            outbox_jobs.clone(),
        );
        let outbox_lost = Counter::default();
        registry.register(
            "outbox_lost",
            "Notifications stored but not announced because the outbox stream was missing",
            outbox_lost.clone(),
        );
        let personal = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "personal_decisions",
            "New notifications on the personal channels, by what was done (instant, digest, off, unreachable)",
            personal.clone(),
        );
        let digests = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "digests",
            "Digest windows settled, by channel and outcome (sent, empty, retried, dead_lettered)",
            digests.clone(),
        );
        let devices_removed = Family::<ChannelLabels, Counter>::default();
        registry.register(
            "devices_removed",
            "Push targets dropped from the directory because the push service said they no longer exist",
            devices_removed.clone(),
        );
        DeliveryMetrics {
            deliveries,
            latency,
            outbox_pending,
            outbox_jobs,
            outbox_lost,
            personal,
            digests,
            devices_removed,
        }
    }
}

pub struct Metrics {
    registry: Registry,
    delivery: DeliveryMetrics,
    events: Family<EventLabels, Counter>,
    recipient_events: Family<EventLabels, Counter>,
    event_duration: Histogram,
    store_duration: Family<OperationLabels, Histogram>,
    store_errors: Family<KindLabels, Counter>,
    in_flight: Gauge,
    nats_connected: Gauge,
    ready: Gauge,
    consumer_pending: Gauge,
    /// Whether a delivery set `consumer_pending` since the backlog watcher last looked.
    consumer_pending_seen: AtomicBool,
    dead_letters: Family<ReasonLabels, Counter>,
    dead_letter_failures: Counter,
    rejection_breaker_open: Gauge,
    throttled: Family<LimitLabels, Counter>,
    sqlite: SqliteWalMetrics,
}

/// The SQLite WAL's figures: kept by the store in atomics (store code knows nothing of
/// Prometheus) and copied into these series at each scrape.
struct SqliteWalMetrics {
    checkpoints: Family<CheckpointLabels, Counter>,
    wal_bytes: Gauge,
    wal_max_bytes: Gauge,
    blocked: Counter,
    source: OnceLock<Arc<WalStats>>,
    /// Two scrapes at once must not both add the same increase.
    copying: Mutex<()>,
}

const CHECKPOINT_RESULTS: [&str; 4] = ["complete", "partial", "busy", "failed"];

/// The results each checkpoint mode can have. Only a passive checkpoint copies part of the
/// log and stops (the writer appended meanwhile); the writer's own checkpoints either empty
/// the log or are kept from it.
const CHECKPOINT_MODES: [(&str, &[&str]); 3] = [
    ("passive", &CHECKPOINT_RESULTS),
    ("restart", &["complete", "busy", "failed"]),
    ("truncate", &["complete", "busy", "failed"]),
];

fn can_have(mode: &str, result: &str) -> bool {
    CHECKPOINT_MODES
        .iter()
        .any(|(name, results)| *name == mode && results.contains(&result))
}

impl SqliteWalMetrics {
    fn register(registry: &mut Registry) -> SqliteWalMetrics {
        let checkpoints = Family::<CheckpointLabels, Counter>::default();
        registry.register(
            "sqlite_checkpoints",
            "SQLite WAL checkpoints, by mode (passive: background; restart: the writer, near NOTIF_SQLITE_WAL_MAX; truncate: the writer, over it or at close) and result",
            checkpoints.clone(),
        );
        let wal_bytes = Gauge::default();
        registry.register_with_unit(
            "sqlite_wal",
            "Size of the SQLite WAL file, as last seen by the writer",
            Unit::Bytes,
            wal_bytes.clone(),
        );
        let wal_max_bytes = Gauge::default();
        registry.register_with_unit(
            "sqlite_wal_max",
            "NOTIF_SQLITE_WAL_MAX (0 when the store is not SQLite)",
            Unit::Bytes,
            wal_max_bytes.clone(),
        );
        let blocked = Counter::default();
        registry.register(
            "sqlite_wal_blocked",
            "Times another connection's old snapshot kept the WAL from being brought under its bound",
            blocked.clone(),
        );
        for (mode, results) in CHECKPOINT_MODES {
            for &result in results {
                let _ = checkpoints.get_or_create(&CheckpointLabels { mode, result });
            }
        }
        SqliteWalMetrics {
            checkpoints,
            wal_bytes,
            wal_max_bytes,
            blocked,
            source: OnceLock::new(),
            copying: Mutex::new(()),
        }
    }

    fn copy(&self) {
        let Some(stats) = self.source.get() else {
            return;
        };
        let _one_at_a_time = self
            .copying
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let catch_up = |counter: &Counter, total: &std::sync::atomic::AtomicU64| {
            counter.inc_by(total.load(Ordering::Relaxed).saturating_sub(counter.get()));
        };
        for (mode, counts) in [
            ("passive", &stats.passive),
            ("restart", &stats.restart),
            ("truncate", &stats.truncate),
        ] {
            let CheckpointCounts {
                complete,
                partial,
                busy,
                failed,
            } = counts;
            for (result, total) in CHECKPOINT_RESULTS
                .into_iter()
                .zip([complete, partial, busy, failed])
            {
                // No series for a result the mode cannot have (one counted after all still
                // shows: a count is never dropped).
                if total.load(Ordering::Relaxed) == 0 && !can_have(mode, result) {
                    continue;
                }
                catch_up(
                    &self.checkpoints.get_or_create(&CheckpointLabels { mode, result }),
                    total,
                );
            }
        }
        catch_up(&self.blocked, &stats.blocked);
        let gauge = |total: &std::sync::atomic::AtomicU64| {
            i64::try_from(total.load(Ordering::Relaxed)).unwrap_or(i64::MAX)
        };
        self.wal_bytes.set(gauge(&stats.wal_bytes));
        self.wal_max_bytes.set(gauge(&stats.limit_bytes));
    }
}

/// Bucket bounds, in seconds, that read as they are (1 ms, 2.5 ms, 5 ms, ...) on a dashboard
/// and in a `le` label. An event or a store request: 1 ms (SQLite) to 10 s (DynamoDB
/// retries with backoff); beyond that only the `+Inf` bucket.
const LATENCY_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A delivery's latency: 5 ms (a quick channel) to 10 minutes (a channel that was down
/// delivering its backlog late).
const DELIVERY_LATENCY_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 600.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("notification_worker");
        let events = Family::<EventLabels, Counter>::default();
        registry.register(
            "events",
            "Events settled, by event type and outcome",
            events.clone(),
        );
        let recipient_events = Family::<EventLabels, Counter>::default();
        registry.register(
            "recipient_events",
            "Recipient directory events (stream RECIPIENTS) settled, by event type and outcome",
            recipient_events.clone(),
        );
        let event_duration = latency_histogram();
        registry.register_with_unit(
            "event_duration",
            "From receipt to acknowledgement",
            Unit::Seconds,
            event_duration.clone(),
        );
        let store_duration = Family::<OperationLabels, Histogram>::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "store_request_duration",
            "Store requests, by operation (create, remove)",
            Unit::Seconds,
            store_duration.clone(),
        );
        let store_errors = Family::<KindLabels, Counter>::default();
        registry.register(
            "store_errors",
            "Failed store requests, by kind",
            store_errors.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "in_flight",
            "Events received and not yet settled",
            in_flight.clone(),
        );
        let nats_connected = Gauge::default();
        registry.register(
            "nats_connected",
            "1 while connected to NATS",
            nats_connected.clone(),
        );
        let ready = Gauge::default();
        registry.register("ready", "1 while /readyz answers 200", ready.clone());
        let consumer_pending = Gauge::default();
        registry.register(
            "consumer_pending",
            "Messages in the stream not yet delivered to the consumer (the backlog)",
            consumer_pending.clone(),
        );
        let dead_letters = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "dead_letters",
            "Events dead-lettered, by reason",
            dead_letters.clone(),
        );
        let dead_letter_failures = Counter::default();
        registry.register(
            "dead_letter_failures",
            "Dead letters that could not be published (the original is handed back, not acknowledged)",
            dead_letter_failures.clone(),
        );
        let rejection_breaker_open = Gauge::default();
        registry.register(
            "store_rejected_breaker_open",
            "1 while many store_rejected refusals in a row hold events and pause intake",
            rejection_breaker_open.clone(),
        );
        let throttled = Family::<LimitLabels, Counter>::default();
        registry.register(
            "throttled",
            "Over a rate limit, by limit: creates acknowledged and not stored (trigger_user), \
             instant deliveries folded into the digest (owner_<channel>)",
            throttled.clone(),
        );
        let sqlite = SqliteWalMetrics::register(&mut registry);
        let delivery = DeliveryMetrics::register(&mut registry);
        let build_info = Family::<VersionLabels, Gauge>::default();
        registry.register("build_info", "The running version", build_info.clone());
        build_info
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);

        let metrics = Metrics {
            registry,
            delivery,
            events,
            recipient_events,
            event_duration,
            store_duration,
            store_errors,
            in_flight,
            nats_connected,
            ready,
            consumer_pending,
            consumer_pending_seen: AtomicBool::new(false),
            dead_letters,
            dead_letter_failures,
            rejection_breaker_open,
            throttled,
            sqlite,
        };
        metrics.start_every_series_at_zero();
        metrics
    }

    /// Series exist from the start, so rates and alerts work before the first event; only
    /// the ones that can ever count something.
    fn start_every_series_at_zero(&self) {
        let event_types = SUBJECTS
            .iter()
            .map(|row| (row.name, Some(row.operation)))
            .chain([("other", None)]);
        for (event_type, operation) in event_types {
            let store_outcomes = match operation {
                Some(Operation::Create) => CREATE_OUTCOMES.to_vec(),
                Some(Operation::Remove) => REMOVE_OUTCOMES.to_vec(),
                None => [CREATE_OUTCOMES.as_slice(), REMOVE_OUTCOMES.as_slice()].concat(),
            };
            for outcome in store_outcomes.into_iter().chain(OUTCOMES) {
                let _ = self.events.get_or_create(&EventLabels { event_type, outcome });
            }
        }
        for event_type in RECIPIENT_EVENT_TYPES {
            // A subject no event has is never applied: only refused.
            let outcomes: &[&'static str] = if event_type == "other" {
                &["invalid"]
            } else {
                &RECIPIENT_OUTCOMES
            };
            for outcome in outcomes {
                let _ = self
                    .recipient_events
                    .get_or_create(&EventLabels { event_type, outcome });
            }
        }
        for limit in limits() {
            let _ = self.throttled.get_or_create(&LimitLabels { limit });
        }
        for operation in ["create", "remove"] {
            let _ = self.store_duration.get_or_create(&OperationLabels { operation });
        }
        for kind in [ErrorKind::Transient, ErrorKind::Systemic, ErrorKind::Permanent] {
            let _ = self
                .store_errors
                .get_or_create(&KindLabels { kind: kind.as_str() });
        }
        // Events are never refused by a channel: that reason is the delivery stage's.
        for reason in Reason::ALL
            .into_iter()
            .filter(|reason| *reason != Reason::ChannelRejected)
        {
            let _ = self.dead_letters.get_or_create(&ReasonLabels {
                reason: reason.code(),
            });
        }
    }

    /// Creates a delivery channel's series at zero (called for each enabled channel), and
    /// the outbox's.
    pub fn enable_channel(&self, channel: &'static str) {
        for outcome in DELIVERY_OUTCOMES {
            let _ = self
                .delivery
                .deliveries
                .get_or_create(&DeliveryLabels { channel, outcome });
        }
        let _ = self.delivery.latency.get_or_create(&ChannelLabels { channel });
        let _ = self
            .delivery
            .outbox_pending
            .get_or_create(&ChannelLabels { channel });
    }

    /// Creates the outbox's series at zero (called when the store stage announces). Not
    /// `updated`: that job kind is reserved, nothing announces it yet.
    pub fn enable_outbox(&self) {
        for kind in ["created", "removed"] {
            let _ = self.delivery.outbox_jobs.get_or_create(&KindLabels { kind });
        }
    }

    /// A delivery job's outcome on `channel`; `latency`: seconds since it was committed to
    /// the outbox, for delivered jobs.
    /// Makes a personal channel's series visible at zero from the start.
    pub fn enable_personal(&self, channel: &'static str) {
        for decision in PERSONAL_DECISIONS {
            let _ = self
                .delivery
                .personal
                .get_or_create(&DecisionLabels { channel, decision });
        }
        for outcome in DIGEST_OUTCOMES {
            let _ = self
                .delivery
                .digests
                .get_or_create(&DeliveryLabels { channel, outcome });
        }
        let _ = self
            .delivery
            .devices_removed
            .get_or_create(&ChannelLabels { channel });
    }

    pub fn personal_decided(&self, channel: &'static str, decision: &'static str) {
        self.delivery
            .personal
            .get_or_create(&DecisionLabels { channel, decision })
            .inc();
    }

    pub fn digest_settled(&self, channel: &'static str, outcome: &'static str) {
        self.delivery
            .digests
            .get_or_create(&DeliveryLabels { channel, outcome })
            .inc();
    }

    pub fn device_removed(&self, channel: &'static str) {
        self.delivery
            .devices_removed
            .get_or_create(&ChannelLabels { channel })
            .inc();
    }

    pub fn delivery_settled(&self, channel: &'static str, outcome: &'static str, latency: Option<f64>) {
        self.delivery
            .deliveries
            .get_or_create(&DeliveryLabels { channel, outcome })
            .inc();
        if let Some(seconds) = latency {
            self.delivery
                .latency
                .get_or_create(&ChannelLabels { channel })
                .observe(seconds);
        }
    }

    pub fn set_outbox_pending(&self, channel: &'static str, pending: u64) {
        self.delivery
            .outbox_pending
            .get_or_create(&ChannelLabels { channel })
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
    }

    pub fn outbox_published(&self, kind: &'static str) {
        self.delivery
            .outbox_jobs
            .get_or_create(&KindLabels { kind })
            .inc();
    }

    pub fn outbox_lost(&self) {
        self.delivery.outbox_lost.inc();
    }

    pub fn event_settled(&self, event_type: &'static str, outcome: &'static str, took: Duration) {
        self.events
            .get_or_create(&EventLabels { event_type, outcome })
            .inc();
        self.event_duration.observe(took.as_secs_f64());
    }

    /// One recipient event settled (see [`RECIPIENT_OUTCOMES`]).
    pub fn recipient_event(&self, event_type: &'static str, outcome: &'static str) {
        self.recipient_events
            .get_or_create(&EventLabels { event_type, outcome })
            .inc();
    }

    pub fn store_request(&self, operation: &'static str, took: Duration) {
        self.store_duration
            .get_or_create(&OperationLabels { operation })
            .observe(took.as_secs_f64());
    }

    pub fn store_error(&self, kind: ErrorKind) {
        self.store_errors
            .get_or_create(&KindLabels { kind: kind.as_str() })
            .inc();
    }

    pub fn dead_lettered(&self, reason: Reason) {
        self.dead_letters
            .get_or_create(&ReasonLabels {
                reason: reason.code(),
            })
            .inc();
    }

    /// One create or instant delivery over `limit` (see [`limits`]).
    pub fn throttled(&self, limit: &'static str) {
        self.throttled.get_or_create(&LimitLabels { limit }).inc();
    }

    pub fn dead_letter_failed(&self) {
        self.dead_letter_failures.inc();
    }

    pub fn set_rejection_breaker_open(&self, open: bool) {
        self.rejection_breaker_open.set(i64::from(open));
    }

    pub fn received(&self) {
        self.in_flight.inc();
    }

    /// Events received and not yet settled, right now.
    pub fn in_flight(&self) -> i64 {
        self.in_flight.get()
    }

    pub fn settled(&self) {
        self.in_flight.dec();
    }

    pub fn set_nats_connected(&self, connected: bool) {
        self.nats_connected.set(i64::from(connected));
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    pub fn set_consumer_pending(&self, pending: u64) {
        self.consumer_pending
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
    }

    /// The backlog as a delivery's metadata told it (the server counts it as it delivers).
    pub fn delivery_saw_pending(&self, pending: u64) {
        self.set_consumer_pending(pending);
        self.consumer_pending_seen.store(true, Ordering::Relaxed);
    }

    /// Whether a delivery told the backlog since the last call.
    pub fn take_pending_seen(&self) -> bool {
        self.consumer_pending_seen.swap(false, Ordering::Relaxed)
    }

    /// Reports the SQLite store's WAL figures from now on.
    pub fn observe_sqlite_wal(&self, stats: Arc<WalStats>) {
        let _ = self.sqlite.source.set(stats);
    }

    /// Every series, in `format` (the one the scraper asked for).
    pub fn render(&self, format: Format) -> String {
        self.sqlite.copy();
        let mut text = String::new();
        let written = match format {
            Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut text, &self.registry),
            Format::PrometheusText => {
                prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
            }
        };
        written.expect("writing to a String");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_contract() {
        let metrics = Metrics::new();
        metrics.event_settled("post_like", "created", Duration::from_millis(3));
        metrics.dead_lettered(Reason::InvalidJson);
        metrics.store_error(ErrorKind::Transient);
        for format in [Format::OpenMetrics, Format::PrometheusText] {
            let text = metrics.render(format);
            for line in [
                r#"notification_worker_events_total{event_type="post_like",outcome="created"} 1"#,
                r#"notification_worker_events_total{event_type="other",outcome="dead_lettered"} 0"#,
                r#"notification_worker_dead_letters_total{reason="invalid_json"} 1"#,
                r#"notification_worker_store_errors_total{kind="transient"} 1"#,
                "notification_worker_event_duration_seconds_count 1",
                "notification_worker_in_flight 0",
                "notification_worker_nats_connected 0",
                "notification_worker_ready 0",
                "notification_worker_consumer_pending 0",
                "notification_worker_dead_letter_failures_total 0",
                "notification_worker_store_rejected_breaker_open 0",
                r#"notification_worker_build_info{version=""#,
                r#"notification_worker_sqlite_checkpoints_total{mode="truncate",result="complete"} 0"#,
                "notification_worker_sqlite_wal_bytes 0",
                "notification_worker_sqlite_wal_max_bytes 0",
                "notification_worker_sqlite_wal_blocked_total 0",
            ] {
                assert!(text.contains(line), "missing {line} in {format:?}:\n{text}");
            }
        }
    }

    #[test]
    fn each_format_types_the_families_its_own_way() {
        let metrics = Metrics::new();
        let openmetrics = metrics.render(Format::OpenMetrics);
        assert!(openmetrics.contains("# TYPE notification_worker_events counter\n"));
        assert!(openmetrics.contains("# UNIT notification_worker_event_duration_seconds seconds\n"));
        assert!(openmetrics.ends_with("# EOF\n"));
        let text = metrics.render(Format::PrometheusText);
        assert!(text.contains("# TYPE notification_worker_events_total counter\n"));
        assert!(text.contains("# TYPE notification_worker_event_duration_seconds histogram\n"));
        assert!(!text.contains("# EOF"), "{text}");
        assert!(!text.contains("# UNIT"), "{text}");
    }

    #[test]
    fn only_possible_label_combinations_start_at_zero() {
        let metrics = Metrics::new();
        metrics.enable_outbox();
        let text = metrics.render(Format::PrometheusText);
        for possible in [
            r#"events_total{event_type="post_like",outcome="created"} 0"#,
            r#"events_total{event_type="post_like",outcome="superseded"} 0"#,
            r#"events_total{event_type="post_unlike",outcome="absent"} 0"#,
            r#"events_total{event_type="post_unlike",outcome="self_skipped"} 0"#,
            r#"events_total{event_type="other",outcome="created"} 0"#,
            r#"events_total{event_type="other",outcome="removed"} 0"#,
            r#"sqlite_checkpoints_total{mode="passive",result="partial"} 0"#,
            r#"outbox_jobs_total{kind="removed"} 0"#,
        ] {
            assert!(text.contains(possible), "missing {possible} in\n{text}");
        }
        for impossible in [
            r#"{event_type="post_unlike",outcome="created"}"#,
            r#"{event_type="post_unlike",outcome="duplicate"}"#,
            r#"{event_type="post_like",outcome="removed"}"#,
            r#"{event_type="user_follow",outcome="absent"}"#,
            r#"{mode="restart",result="partial"}"#,
            r#"{mode="truncate",result="partial"}"#,
            r#"{kind="updated"}"#,
            r#"{reason="channel_rejected"}"#,
        ] {
            assert!(
                !text.contains(impossible),
                "{impossible} is pre-created in\n{text}"
            );
        }
    }

    #[test]
    fn bucket_bounds_read_as_written() {
        let metrics = Metrics::new();
        metrics.enable_channel("webhook");
        let text = metrics.render(Format::OpenMetrics);
        let bounds = |histogram: &str| -> Vec<String> {
            text.lines()
                .filter(|line| line.starts_with(&format!("{histogram}_bucket")))
                .filter_map(|line| line.split("le=\"").nth(1)?.split('"').next().map(str::to_owned))
                .collect()
        };
        let events = bounds("notification_worker_event_duration_seconds");
        assert_eq!(
            events,
            [
                "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5",
                "5.0", "10.0", "+Inf"
            ]
        );
        let deliveries = bounds("notification_worker_delivery_latency_seconds");
        assert_eq!(deliveries.first().map(String::as_str), Some("0.005"));
        assert_eq!(deliveries.iter().rev().nth(1).map(String::as_str), Some("600.0"));
    }

    #[test]
    fn the_sqlite_wal_figures_are_copied_at_each_scrape() {
        let metrics = Metrics::new();
        let stats = Arc::new(WalStats::default());
        metrics.observe_sqlite_wal(Arc::clone(&stats));
        stats.truncate.busy.store(2, Ordering::Relaxed);
        stats.wal_bytes.store(4096, Ordering::Relaxed);
        let _ = metrics.render(Format::OpenMetrics);
        stats.truncate.busy.store(3, Ordering::Relaxed);
        let text = metrics.render(Format::PrometheusText);
        for line in [
            r#"notification_worker_sqlite_checkpoints_total{mode="truncate",result="busy"} 3"#,
            "notification_worker_sqlite_wal_bytes 4096",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
