//! `make bench`: the worker's speed and cost, measured against the ceilings of this machine
//! in the same run. Starts its own nats-server and dynalite (like the tests), prints a
//! markdown table for BENCHMARKS.md and writes a chart next to it.
//!
//! Sizes can be lowered for a quick look: BENCH_SCALE=0.1 make bench.

#[path = "../../tests/support/mod.rs"]
mod support;

mod ceilings;
mod chart;
mod personal;
mod process;
mod realistic;
mod recovery;
mod report;
mod requests;
mod runs;

use report::Report;

/// Benchmark sizes (events), scaled by BENCH_SCALE.
pub struct Sizes {
    pub sqlite_drain: usize,
    pub dynamodb_drain: usize,
    pub rss_backlog: usize,
    pub sweep: usize,
    pub latency_seconds: u64,
    pub latency_rate: u64,
    /// Commit-to-WebSocket: seconds at `latency_rate`, and owners (channels) subscribed.
    pub websocket_seconds: u64,
    pub websocket_owners: usize,
    /// Owners (one message each) of the personal channels' throughput runs.
    pub personal_owners: usize,
    /// Events of each run through the delaying proxy (realistic traffic, DynamoDB).
    pub delayed: usize,
}

impl Sizes {
    fn from_env() -> Sizes {
        let scale: f64 = std::env::var("BENCH_SCALE")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1.0);
        let scaled = |n: f64| ((n * scale) as usize).max(1000);
        Sizes {
            sqlite_drain: scaled(200_000.0),
            dynamodb_drain: scaled(20_000.0),
            rss_backlog: scaled(1_000_000.0),
            sweep: scaled(50_000.0),
            latency_seconds: ((20.0 * scale) as u64).max(5),
            latency_rate: 1000,
            websocket_seconds: ((10.0 * scale) as u64).max(3),
            websocket_owners: 20,
            personal_owners: scaled(2_000.0),
            delayed: scaled(10_000.0),
        }
    }
}

/// How many times each ceiling and each drain runs (the median is reported).
const REPEATS: usize = 3;

fn median_rate(mut rates: Vec<ceilings::Rate>) -> ceilings::Rate {
    rates.sort_by(|a, b| a.per_second().total_cmp(&b.per_second()));
    rates[rates.len() / 2]
}

fn median_drain(mut drains: Vec<runs::Drain>) -> runs::Drain {
    drains.sort_by(|a, b| a.events_per_second().total_cmp(&b.events_per_second()));
    drains.swap_remove(drains.len() / 2)
}

/// Of the drains with channel `pusher` on, the one with the median deliveries per second.
fn median_deliveries(drains: &[runs::Drain]) -> Option<&runs::Deliveries> {
    let mut deliveries: Vec<&runs::Deliveries> = drains
        .iter()
        .filter_map(|drain| drain.deliveries.as_ref())
        .collect();
    deliveries.sort_by(|a, b| a.rate.per_second().total_cmp(&b.rate.per_second()));
    deliveries.get(deliveries.len() / 2).copied()
}

/// The concurrency sweep.
pub const CONCURRENCY: [usize; 4] = [1, 8, 64, 256];

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let report = runtime.block_on(run_all(Sizes::from_env()));
    let markdown = report.markdown();
    println!("\n{markdown}");
    let out = std::path::Path::new(support::MANIFEST_DIR);
    std::fs::create_dir_all(out.join("target/bench")).unwrap();
    std::fs::write(out.join("target/bench/results.md"), &markdown).unwrap();
    std::fs::write(
        out.join("benchmarks-concurrency.svg"),
        chart::concurrency(&report.sweep),
    )
    .unwrap();
    eprintln!("wrote target/bench/results.md and benchmarks-concurrency.svg");
}

/// A drain of `backlog` without delivery, limits or aggregation, then with each of `ons`, three
/// rounds alternately: each round's figures, then the medians (worker and nats-server CPU
/// per 100k events), each against the drain without.
async fn off_and_on(
    store: runs::Store,
    events: usize,
    backlog: runs::Backlog,
    ons: &[(runs::Delivery, &str)],
) {
    let figures = |drain: &runs::Drain| {
        format!(
            "{:.0} events/s ({:.2} CPU s/100k, nats-server {:.2})",
            drain.events_per_second(),
            drain.cpu_seconds_per_100k(),
            drain.server_cpu_seconds_per_100k()
        )
    };
    // Per round: the drain without, then one per `ons`.
    let mut rounds: Vec<Vec<runs::Drain>> = Vec::new();
    for round in 0..3 {
        let mut drains = vec![runs::drain_of(store, events, backlog, 64, runs::Delivery::Off).await];
        for (on, _) in ons {
            drains.push(runs::drain_of(store, events, backlog, 64, *on).await);
        }
        let mut line = format!("round {round}: off {}", figures(&drains[0]));
        for ((_, what), with) in ons.iter().zip(&drains[1..]) {
            line.push_str(&format!(
                "; {what} {}: ratio {:.2}",
                figures(with),
                with.events_per_second() / drains[0].events_per_second()
            ));
        }
        eprintln!("{line}");
        rounds.push(drains);
    }
    let median = |run: usize, figure: fn(&runs::Drain) -> f64| {
        let mut values: Vec<f64> = rounds.iter().map(|drains| figure(&drains[run])).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let medians = |run: usize| {
        format!(
            "{:.0} events/s ({:.2} CPU s/100k, nats-server {:.2})",
            median(run, runs::Drain::events_per_second),
            median(run, runs::Drain::cpu_seconds_per_100k),
            median(run, runs::Drain::server_cpu_seconds_per_100k)
        )
    };
    let mut line = format!("medians: off {}", medians(0));
    let off_rate = median(0, runs::Drain::events_per_second);
    for (run, (_, what)) in (1..).zip(ons) {
        line.push_str(&format!(
            "; {what} {}: ratio {:.2}",
            medians(run),
            median(run, runs::Drain::events_per_second) / off_rate
        ));
    }
    eprintln!("{line}");
}

async fn run_all(sizes: Sizes) -> Report {
    if let Some(output) = std::env::var_os("BENCH_PROFILE") {
        // Profile one SQLite drain under perf and stop: see BENCHMARKS.md, "Profiling".
        // With BENCH_ONLY=delivery, the drain with channel pusher on, until every job is sent;
        // with BENCH_ONLY=announce, the store stage alone announcing to the outbox.
        // With BENCH_ONLY=realistic: the SQLite drain of realistic traffic; with
        // BENCH_ONLY=dynamodb: the DynamoDB drain of realistic traffic.
        let only = std::env::var("BENCH_ONLY");
        let delivery = match only.as_deref() {
            Ok("delivery") => runs::Delivery::Pusher,
            Ok("announce") => runs::Delivery::Announce,
            _ => runs::Delivery::Off,
        };
        let (store, events, backlog) = match only.as_deref() {
            Ok("realistic") => (runs::Store::Sqlite, sizes.sqlite_drain, runs::Backlog::Realistic),
            Ok("dynamodb") => (
                runs::Store::DynamoDb,
                sizes.dynamodb_drain,
                runs::Backlog::Realistic,
            ),
            _ => (
                runs::Store::Sqlite,
                sizes.sqlite_drain,
                runs::Backlog::OnePostPerOwner,
            ),
        };
        let drain = runs::drain_of(store, events, backlog, 64, delivery).await;
        eprintln!(
            "{:.0} events/s; profile in {} (perf report -i ...)",
            drain.events_per_second(),
            output.to_string_lossy()
        );
        std::process::exit(0);
    }
    // One measurement alone, for trying a change: BENCH_ONLY=latency|sqlite|dynamodb, or
    // sqlite-realistic|dynamodb-realistic (one drain of realistic traffic).
    match std::env::var("BENCH_ONLY").as_deref() {
        Ok("announce") => {
            // Worker and nats-server CPU per 100k events: the worker's share of the
            // announce is what the worker can cut; the server's (storing the jobs) is not.
            off_and_on(
                runs::Store::Sqlite,
                sizes.sqlite_drain,
                runs::Backlog::OnePostPerOwner,
                &[(runs::Delivery::Announce, "store stage announcing")],
            )
            .await;
            std::process::exit(0);
        }
        Ok("limits") => {
            // The SQLite drain with RATE_LIMIT_TRIGGER_USER off and on, alternately.
            off_and_on(
                runs::Store::Sqlite,
                sizes.sqlite_drain,
                runs::Backlog::OnePostPerOwner,
                &[(runs::Delivery::Limited, "trigger-user limit on")],
            )
            .await;
            std::process::exit(0);
        }
        Ok("aggregate") => {
            // AGGREGATE off and on, and on with the trigger-user limit, alternately: first
            // on the backlog of the other drains (a few huge aggregates), then with likes
            // spread ten per post; SQLite, then DynamoDB (BENCH_SCALE lowers its size).
            let ons = [
                (runs::Delivery::Aggregated, "aggregation on"),
                (runs::Delivery::LimitedAndAggregated, "limit and aggregation on"),
            ];
            // DynamoDB (whose drain is the slower) without the limit: its cost is the SQLite
            // rows' (the same key-value bucket).
            for (store, events, ons) in [
                (runs::Store::Sqlite, sizes.sqlite_drain, &ons[..]),
                (runs::Store::DynamoDb, sizes.dynamodb_drain, &ons[..1]),
            ] {
                for likes in [runs::Backlog::OnePostPerOwner, runs::Backlog::TenPerPost] {
                    eprintln!("{store:?}, {events} likes, {likes:?}:");
                    off_and_on(store, events, likes, ons).await;
                }
            }
            std::process::exit(0);
        }
        Ok("aggregate-requests") => {
            // The DynamoDB requests per like, by operation, counted on their way to dynalite:
            // individual creates, then aggregated on each backlog.
            for (delivery, likes) in [
                (runs::Delivery::Off, runs::Backlog::OnePostPerOwner),
                (runs::Delivery::Aggregated, runs::Backlog::OnePostPerOwner),
                (runs::Delivery::Aggregated, runs::Backlog::TenPerPost),
            ] {
                let events = sizes.dynamodb_drain;
                let drain = runs::drain_of(runs::Store::DynamoDbCounted, events, likes, 64, delivery).await;
                let per_event: Vec<String> = (drain.requests.unwrap().into_iter())
                    .map(|(operation, count)| format!("{operation} {:.2}", count as f64 / events as f64))
                    .collect();
                eprintln!(
                    "{delivery:?}, {events} likes, {likes:?}: per like {}",
                    per_event.join(", ")
                );
            }
            std::process::exit(0);
        }
        Ok("limits-rss") => {
            // One million distinct trigger users through the limiter: the worker keeps no
            // per-user state (the key-value bucket does), so its peak RSS should be the
            // drain's without the limit.
            let on = runs::drain_with(
                runs::Store::Sqlite,
                sizes.rss_backlog,
                64,
                runs::Delivery::Limited,
            )
            .await;
            let off = runs::drain_with(runs::Store::Sqlite, sizes.rss_backlog, 64, runs::Delivery::Off).await;
            eprintln!(
                "{} distinct trigger users: limit on {:.0} events/s, peak RSS {:.1} MiB; limit off {:.0} events/s, peak RSS {:.1} MiB",
                sizes.rss_backlog,
                on.events_per_second(),
                on.cost.peak_rss_mib,
                off.events_per_second(),
                off.cost.peak_rss_mib
            );
            std::process::exit(0);
        }
        Ok("personal") => {
            for receiver in [personal::Receiver::Email, personal::Receiver::Webpush] {
                let rate = personal::throughput(receiver, sizes.personal_owners).await;
                eprintln!(
                    "{receiver:?}: {:.0} messages/s ({} owners)",
                    rate.per_second(),
                    rate.events
                );
            }
            std::process::exit(0);
        }
        Ok("realistic") => {
            // The main rows alone: realistic traffic's ceilings and drains, 3 rounds.
            let started = std::time::Instant::now();
            let step = |what: &str| eprintln!("[{:>5.1}s] {what}", started.elapsed().as_secs_f64());
            let figures = realistic::measure(&sizes, &step).await;
            let shape = support::traffic::shape(&support::traffic::realistic(sizes.sqlite_drain));
            eprintln!("\n{}", figures.markdown(&shape));
            std::process::exit(0);
        }
        Ok("sqlite-settings") => {
            // The SQLite ceiling of realistic traffic under other settings, 3 rounds.
            realistic::try_settings(&sizes).await;
            std::process::exit(0);
        }
        Ok("recovery") => {
            let took = recovery::median().await;
            eprintln!(
                "median: {:.2} s from SIGKILL to all held events stored",
                took.as_secs_f64()
            );
            std::process::exit(0);
        }
        Ok("latency") => {
            let latency = runs::latency(sizes.latency_rate, sizes.latency_seconds).await;
            eprintln!(
                "p50 {:?} p99 {:?} p99.9 {:?}",
                latency.p50, latency.p99, latency.p999
            );
            std::process::exit(0);
        }
        Ok("delivery") => {
            let drain = runs::drain_with(
                runs::Store::Sqlite,
                sizes.sqlite_drain,
                64,
                runs::Delivery::Pusher,
            )
            .await;
            let deliveries = drain.deliveries.as_ref().unwrap();
            eprintln!(
                "store drain {:.0} events/s with channel pusher on; {:.0} deliveries/s; peak RSS {:.1} MiB",
                drain.events_per_second(),
                deliveries.rate.per_second(),
                deliveries.cost.peak_rss_mib
            );
            let latency = runs::websocket_latency(
                sizes.latency_rate,
                sizes.websocket_seconds,
                sizes.websocket_owners,
            )
            .await;
            eprintln!(
                "publish to WebSocket: p50 {:?} p99 {:?} p99.9 {:?}",
                latency.p50, latency.p99, latency.p999
            );
            std::process::exit(0);
        }
        Ok(only @ ("sqlite" | "dynamodb" | "sqlite-realistic" | "dynamodb-realistic")) => {
            use runs::{Backlog, Store};
            let (store, events, backlog) = match only {
                "sqlite" => (Store::Sqlite, sizes.sqlite_drain, Backlog::OnePostPerOwner),
                "sqlite-realistic" => (Store::Sqlite, sizes.sqlite_drain, Backlog::Realistic),
                "dynamodb" => (Store::DynamoDb, sizes.dynamodb_drain, Backlog::OnePostPerOwner),
                _ => (Store::DynamoDb, sizes.dynamodb_drain, Backlog::Realistic),
            };
            let drain = runs::drain_of(store, events, backlog, 64, runs::Delivery::Off).await;
            eprintln!(
                "{:.0} events/s, {:.2} CPU s per 100k, peak RSS {:.1} MiB",
                drain.events_per_second(),
                drain.cpu_seconds_per_100k(),
                drain.cost.peak_rss_mib
            );
            std::process::exit(0);
        }
        _ => {}
    }
    let started = std::time::Instant::now();
    let step = |what: &str| eprintln!("[{:>5.1}s] {what}", started.elapsed().as_secs_f64());
    let mut report = Report::new(&sizes);

    // Ceilings and drains are each run REPEATS times, alternating, and the medians kept:
    // this machine is shared, and single runs drift.
    let mut js = Vec::new();
    let mut sq = Vec::new();
    let mut dy = Vec::new();
    let mut sqlite_drains = Vec::new();
    let mut delivery_drains = Vec::new();
    let mut dynamodb_drains = Vec::new();
    for round in 1..=REPEATS {
        step(&format!(
            "round {round}/{REPEATS}: ceiling: JetStream consume + ack"
        ));
        js.push(ceilings::jetstream(sizes.sqlite_drain).await);
        step(&format!(
            "round {round}/{REPEATS}: ceiling: minimal SQLite writer"
        ));
        sq.push(ceilings::sqlite(sizes.sqlite_drain));
        step(&format!(
            "round {round}/{REPEATS}: ceiling: DynamoDB conditional PutItem at concurrency 64"
        ));
        dy.push(ceilings::dynamodb(sizes.dynamodb_drain, 64).await);
        step(&format!("round {round}/{REPEATS}: worker: SQLite drain"));
        sqlite_drains.push(runs::drain(runs::Store::Sqlite, sizes.sqlite_drain, 64).await);
        step(&format!(
            "round {round}/{REPEATS}: worker: SQLite drain with channel pusher on (sockudo)"
        ));
        delivery_drains.push(
            runs::drain_with(
                runs::Store::Sqlite,
                sizes.sqlite_drain,
                64,
                runs::Delivery::Pusher,
            )
            .await,
        );
        step(&format!("round {round}/{REPEATS}: worker: DynamoDB drain"));
        dynamodb_drains.push(runs::drain(runs::Store::DynamoDb, sizes.dynamodb_drain, 64).await);
    }
    report.jetstream_ceiling = median_rate(js);
    report.sqlite_ceiling = median_rate(sq);
    report.dynamodb_ceiling = median_rate(dy);
    report.sqlite_drain = Some(median_drain(sqlite_drains));
    report.dynamodb_drain = Some(median_drain(dynamodb_drains));
    report.deliveries = median_deliveries(&delivery_drains).map(|d| {
        (
            d.rate.per_second(),
            d.cost.cpu_seconds * 100_000.0 / d.rate.events as f64,
            d.cost.peak_rss_mib,
        )
    });
    report.sqlite_drain_delivery = Some(median_drain(delivery_drains));
    step("realistic traffic: ceilings and drains");
    report.realistic = Some(realistic::measure(&sizes, &step).await);
    report.realistic_shape = Some(support::traffic::shape(&support::traffic::realistic(
        sizes.sqlite_drain,
    )));
    step("worker: start to ready");
    report.start_to_ready = runs::start_to_ready().await;
    step("worker: recovery after a SIGKILL (SQLite)");
    report.recovery = Some(recovery::median().await);
    step("worker: latency at a fixed rate (SQLite)");
    report.latency = Some(runs::latency(sizes.latency_rate, sizes.latency_seconds).await);
    step("worker: publish to WebSocket at a fixed rate (SQLite, channel pusher on)");
    report.websocket_latency = Some(
        runs::websocket_latency(
            sizes.latency_rate,
            sizes.websocket_seconds,
            sizes.websocket_owners,
        )
        .await,
    );
    // Personal channels: REPEATS runs each, the median kept.
    for receiver in [personal::Receiver::Email, personal::Receiver::Webpush] {
        let mut rates = Vec::new();
        for round in 1..=REPEATS {
            step(&format!(
                "round {round}/{REPEATS}: worker: {receiver:?} messages to a local receiver"
            ));
            rates.push(personal::throughput(receiver, sizes.personal_owners).await);
        }
        let rate = median_rate(rates);
        match receiver {
            personal::Receiver::Email => report.emails = Some(rate),
            personal::Receiver::Webpush => report.web_pushes = Some(rate),
        }
    }
    for concurrency in CONCURRENCY {
        step(&format!(
            "worker: SQLite drain at WORKER_CONCURRENCY={concurrency}"
        ));
        let drain = runs::drain(runs::Store::Sqlite, sizes.sweep, concurrency).await;
        report.sweep.push((concurrency, drain.events_per_second()));
    }
    step("worker: peak RSS on a large backlog");
    report.rss_large = Some(runs::drain(runs::Store::Sqlite, sizes.rss_backlog, 64).await);
    step("done");
    report.total = started.elapsed();
    report
}
