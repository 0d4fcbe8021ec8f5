//! The results as a markdown table for BENCHMARKS.md.

use super::Sizes;
use super::ceilings::Rate;
use super::runs::{Drain, Latency};
use std::fmt::Write;
use std::time::Duration;

pub struct Report {
    sizes: (usize, usize, usize, usize),
    websocket_owners: usize,
    pub jetstream_ceiling: Rate,
    pub sqlite_ceiling: Rate,
    pub dynamodb_ceiling: Rate,
    pub start_to_ready: Duration,
    /// From SIGKILL of a replica holding [`HELD`](super::recovery::HELD) events to all of
    /// them stored by another (median).
    pub recovery: Option<Duration>,
    pub sqlite_drain: Option<Drain>,
    pub dynamodb_drain: Option<Drain>,
    pub latency: Option<Latency>,
    /// The SQLite drain with channel `pusher` on (median of its runs by events per second).
    pub sqlite_drain_delivery: Option<Drain>,
    /// Deliveries per second to sockudo, CPU s per 100,000 jobs and peak RSS at the end of
    /// the deliveries (the run with the median deliveries per second).
    pub deliveries: Option<(f64, f64, f64)>,
    pub websocket_latency: Option<Latency>,
    /// Emails per second to aiosmtpd, and Web Push messages per second to web-push-testing.
    pub emails: Option<Rate>,
    pub web_pushes: Option<Rate>,
    pub sweep: Vec<(usize, f64)>,
    pub rss_large: Option<Drain>,
    /// The main rows: realistic traffic, and how it is made up.
    pub realistic: Option<super::realistic::Figures>,
    pub realistic_shape: Option<super::support::traffic::Shape>,
    pub total: Duration,
}

impl Report {
    pub fn new(sizes: &Sizes) -> Report {
        let none = Rate {
            events: 0,
            took: Duration::from_secs(1),
        };
        Report {
            sizes: (
                sizes.sqlite_drain,
                sizes.dynamodb_drain,
                sizes.rss_backlog,
                sizes.sweep,
            ),
            websocket_owners: sizes.websocket_owners,
            jetstream_ceiling: none,
            sqlite_ceiling: none,
            dynamodb_ceiling: none,
            start_to_ready: Duration::ZERO,
            recovery: None,
            sqlite_drain: None,
            dynamodb_drain: None,
            latency: None,
            sqlite_drain_delivery: None,
            deliveries: None,
            websocket_latency: None,
            emails: None,
            web_pushes: None,
            sweep: Vec::new(),
            rss_large: None,
            realistic: None,
            realistic_shape: None,
            total: Duration::ZERO,
        }
    }

    pub fn markdown(&self) -> String {
        let (sqlite_n, dynamo_n, rss_n, sweep_n) = self.sizes;
        let mut out = String::new();
        let js = self.jetstream_ceiling.per_second();
        let sq = self.sqlite_ceiling.per_second();
        let dy = self.dynamodb_ceiling.per_second();
        let sqlite_ceiling = js.min(sq);
        if let (Some(figures), Some(shape)) = (&self.realistic, &self.realistic_shape) {
            let _ = writeln!(out, "### Main rows: realistic traffic\n");
            let _ = writeln!(out, "{}", figures.markdown(shape));
            if let Some(recovery) = self.recovery {
                let _ = writeln!(
                    out,
                    "Recovery after a crash: {:.2} s from SIGKILL of a replica holding {} events to all of them stored by another (median of 3).\n",
                    recovery.as_secs_f64(),
                    super::recovery::HELD
                );
            }
            let _ = writeln!(
                out,
                "### Narrow workload (97 owners, one post; kind to the B-tree)\n"
            );
        }
        let _ = writeln!(
            out,
            "Ceilings and drains: median of {} runs each.\n",
            super::REPEATS
        );
        let _ = writeln!(out, "| measure | result | ceiling (same run) | ratio | goal |");
        let _ = writeln!(out, "|---|---|---|---|---|");
        let _ = writeln!(
            out,
            "| JetStream consume + ack (minimal client) | {js:.0} msg/s | | | |"
        );
        let _ = writeln!(
            out,
            "| SQLite writer, 1,000 rows/transaction, synchronous=NORMAL | {sq:.0} rows/s | | | |"
        );
        let _ = writeln!(
            out,
            "| DynamoDB (dynalite) conditional PutItem, 64 in flight | {dy:.0} req/s | | | |"
        );
        if let Some(drain) = &self.sqlite_drain {
            let rate = drain.events_per_second();
            let _ = writeln!(
                out,
                "| worker drain, SQLite, {sqlite_n} events | {rate:.0} events/s | {sqlite_ceiling:.0} (lower of the two above) | {:.2} | >= 0.80 |",
                rate / sqlite_ceiling
            );
        }
        if let Some(drain) = &self.dynamodb_drain {
            let rate = drain.events_per_second();
            let _ = writeln!(
                out,
                "| worker drain, DynamoDB, {dynamo_n} events, WORKER_CONCURRENCY=64 | {rate:.0} events/s | {dy:.0} | {:.2} | >= 0.90 |",
                rate / dy
            );
        }
        if let Some(latency) = &self.latency {
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            let _ = writeln!(
                out,
                "| publish to durable at 1,000 events/s, SQLite ({} events) | p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms | | | p99 <= 5 ms |",
                latency.samples,
                ms(latency.p50),
                ms(latency.p99),
                ms(latency.p999)
            );
        }
        if let Some(drain) = &self.sqlite_drain {
            let _ = writeln!(
                out,
                "| CPU per 100,000 events (SQLite drain) | {:.2} CPU s | | | |",
                drain.cpu_seconds_per_100k()
            );
            let _ = writeln!(
                out,
                "| peak RSS, {sqlite_n}-event backlog | {:.1} MiB | | | <= 64 MiB |",
                drain.cost.peak_rss_mib
            );
        }
        if let Some(drain) = &self.dynamodb_drain {
            let _ = writeln!(
                out,
                "| CPU per 100,000 events (DynamoDB drain) | {:.2} CPU s | | | |",
                drain.cpu_seconds_per_100k()
            );
        }
        if let Some(drain) = &self.rss_large {
            let _ = writeln!(
                out,
                "| peak RSS, {rss_n}-event backlog | {:.1} MiB (drained at {:.0} events/s) | | | <= 64 MiB, flat |",
                drain.cost.peak_rss_mib,
                drain.events_per_second()
            );
        }
        let _ = writeln!(
            out,
            "| start to ready (median of 5) | {:.0} ms | | | <= 500 ms |",
            self.start_to_ready.as_secs_f64() * 1000.0
        );
        if let Some(recovery) = self.recovery {
            let _ = writeln!(
                out,
                "| SIGKILL of a replica holding {} events to all of them stored by another (SQLite, median of 3) | {:.1} s | | | <= 10 s |",
                super::recovery::HELD,
                recovery.as_secs_f64()
            );
        }
        self.delivery_markdown(&mut out);
        let _ = writeln!(
            out,
            "\nThroughput against WORKER_CONCURRENCY (SQLite, {sweep_n} events each):\n"
        );
        let _ = writeln!(out, "| WORKER_CONCURRENCY | events/s |");
        let _ = writeln!(out, "|---|---|");
        for (concurrency, rate) in &self.sweep {
            let _ = writeln!(out, "| {concurrency} | {rate:.0} |");
        }
        let _ = writeln!(out, "\nWhole run: {:.0} s.", self.total.as_secs_f64());
        out
    }

    /// The delivery stage's rows: its cost to the store drain, its rate, its latency.
    fn delivery_markdown(&self, out: &mut String) {
        let (sqlite_n, ..) = self.sizes;
        if self.sqlite_drain_delivery.is_none() && self.websocket_latency.is_none() && self.emails.is_none() {
            return;
        }
        let _ = writeln!(
            out,
            "\nDelivery stage (channel `pusher` to a sockudo on this machine; the delivery stage runs in the same worker process as the store stage during the \"on\" runs):\n"
        );
        let _ = writeln!(out, "| measure | result | baseline (same run) | ratio | goal |");
        let _ = writeln!(out, "|---|---|---|---|---|");
        if let (Some(on), Some(off)) = (&self.sqlite_drain_delivery, &self.sqlite_drain) {
            let (on_rate, off_rate) = (on.events_per_second(), off.events_per_second());
            let _ = writeln!(
                out,
                "| worker drain, SQLite, {sqlite_n} events, delivery on (pusher) | {on_rate:.0} events/s, {:.2} CPU s per 100k, peak RSS {:.1} MiB | {off_rate:.0} events/s (delivery off) | {:.2} | >= 0.90 |",
                on.cpu_seconds_per_100k(),
                on.cost.peak_rss_mib,
                on_rate / off_rate
            );
        }
        if let Some((rate, cpu, rss)) = self.deliveries {
            let _ = writeln!(
                out,
                "| deliveries to sockudo, {sqlite_n} jobs, from process start to the pusher consumer's ack floor at the outbox's end | {rate:.0} jobs/s ({cpu:.2} CPU s per 100k and peak RSS {rss:.1} MiB, store and delivery together) | | | |"
            );
        }
        if let Some(latency) = &self.websocket_latency {
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            let _ = writeln!(
                out,
                "| publish to WebSocket at 1,000 events/s, {} owners' channels ({} events) | p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms | | | |",
                self.websocket_owners,
                latency.samples,
                ms(latency.p50),
                ms(latency.p99),
                ms(latency.p999)
            );
        }
        for (rate, what) in [
            (&self.emails, "emails to aiosmtpd (SMTP, one connection pool)"),
            (
                &self.web_pushes,
                "Web Push messages to web-push-testing (encrypted, VAPID-signed)",
            ),
        ] {
            if let Some(rate) = rate {
                let _ = writeln!(
                    out,
                    "| {what}, {} owners, one instant message each, from the first event published to the channel's ack floor at the outbox's end | {:.0} messages/s | | | |",
                    rate.events,
                    rate.per_second()
                );
            }
        }
    }
}
