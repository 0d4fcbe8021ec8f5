//! The worker binary, measured as a user runs it: a pre-published backlog drained from
//! process start to the last ack, latency at a fixed offered rate, start to ready.

use super::ceilings::Rate;
use super::process::{self, Cost};
use super::support::{
    Dynalite, NatsServer, base_env, command, command_for, free_port, like, publish_backlog, worker_consumer,
};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Sqlite,
    DynamoDb,
}

pub struct Drain {
    pub rate: Rate,
    pub cost: Cost,
}

impl Drain {
    pub fn events_per_second(&self) -> f64 {
        self.rate.per_second()
    }

    pub fn cpu_seconds_per_100k(&self) -> f64 {
        self.cost.cpu_seconds * 100_000.0 / self.rate.events as f64
    }
}

pub struct Latency {
    pub samples: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub p999: Duration,
}

struct Setup {
    nats: NatsServer,
    _dynamo: Option<Dynalite>,
    dir: tempfile::TempDir,
    env: Vec<(&'static str, String)>,
}

fn prepare(store: Store, concurrency: usize) -> Setup {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut env = base_env(&nats, dir.path());
    env.push(("WORKER_CONCURRENCY", concurrency.to_string()));
    let dynamo = (store == Store::DynamoDb).then(Dynalite::start);
    if let Some(dynamo) = &dynamo {
        env.extend(dynamo.worker_env("bench-notifications"));
    }
    let setup = drained_worker(dir.path(), &env).arg("setup").output().unwrap();
    assert!(
        setup.status.success(),
        "{}",
        String::from_utf8_lossy(&setup.stderr)
    );
    Setup {
        nats,
        _dynamo: dynamo,
        dir,
        env,
    }
}

/// The worker the drains measure: this build, or `BENCH_WORKER_BIN` (another build, e.g. the
/// previous release, measured alternately with this one on the same machine and day).
fn drained_worker(dir: &std::path::Path, env: &[(&'static str, String)]) -> std::process::Command {
    match std::env::var_os("BENCH_WORKER_BIN") {
        Some(program) => command_for(std::path::Path::new(&program), dir, env),
        None => command(dir, env),
    }
}

fn stop(mut child: Child) {
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
}

pub async fn drain(store: Store, events: usize, concurrency: usize) -> Drain {
    let setup = prepare(store, concurrency);
    let js = setup.nats.jetstream().await;
    publish_backlog(&js, events).await;
    let mut consumer = worker_consumer(&js).await;

    let started = Instant::now();
    // Info logs are written as in production (one line per event), to /dev/null.
    let mut worker = drained_worker(setup.dir.path(), &setup.env);
    worker.arg("run").stdout(Stdio::null()).stderr(Stdio::null());
    let child = match std::env::var_os("BENCH_PROFILE") {
        // Sampled with perf (cpu-clock works where hardware counters do not).
        Some(output) => {
            let mut perf = std::process::Command::new("perf");
            perf.args(["record", "-e", "cpu-clock", "-F", "999", "-g", "-o"])
                .arg(output)
                .arg("--");
            perf.arg(worker.get_program()).args(worker.get_args());
            perf.env_clear()
                .envs(worker.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))));
            perf.current_dir(setup.dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            perf.spawn().unwrap()
        }
        None => worker.spawn().unwrap(),
    };
    loop {
        let info = consumer.info().await.unwrap();
        if info.num_pending == 0
            && info.num_ack_pending == 0
            && info.delivered.stream_sequence as usize >= events
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = started.elapsed();
    let cost = process::cost(child.id());
    stop(child);
    Drain {
        rate: Rate { events, took },
        cost,
    }
}

pub async fn latency(rate: u64, seconds: u64) -> Latency {
    let setup = prepare(Store::Sqlite, 64);
    let arrivals: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let mut child = command(setup.dir.path(), &setup.env)
        .arg("run")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    {
        let arrivals = Arc::clone(&arrivals);
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let at = Instant::now();
                let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if event["message"] == "worker started" {
                    let _ = ready_tx.send(());
                }
                if event["outcome"] == "created"
                    && let Some(seq) = event["stream_seq"].as_u64()
                {
                    arrivals.lock().unwrap().insert(seq, at);
                }
            }
        });
    }
    ready_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the worker starts");

    let js = setup.nats.jetstream().await;
    let total = rate * seconds;
    let sent: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut acks = Vec::with_capacity(total as usize);
    for i in 0..total {
        ticker.tick().await;
        let at = Instant::now();
        let body = like(&format!("owner-{}", i % 97), &format!("fan-{i}"), "post-1");
        let ack = js.publish("notifications.post.like", body.into()).await.unwrap();
        let sent = Arc::clone(&sent);
        acks.push(tokio::spawn(async move {
            let seq = ack.await.unwrap().sequence;
            sent.lock().unwrap().insert(seq, at);
        }));
    }
    for ack in acks {
        ack.await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while arrivals.lock().unwrap().len() < total as usize && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop(child);
    let sent = sent.lock().unwrap();
    let arrivals = arrivals.lock().unwrap();
    let mut latencies: Vec<Duration> = sent
        .iter()
        .filter_map(|(seq, at)| {
            arrivals
                .get(seq)
                .map(|arrived| arrived.saturating_duration_since(*at))
        })
        .collect();
    assert_eq!(latencies.len(), total as usize, "every event arrived");
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Latency {
        samples: latencies.len(),
        p50: at(0.50),
        p99: at(0.99),
        p999: at(0.999),
    }
}

/// From process start to `/readyz` answering 200 (median of 5 starts).
pub async fn start_to_ready() -> Duration {
    let setup = prepare(Store::Sqlite, 64);
    let mut runs = Vec::new();
    for _ in 0..5 {
        let port = free_port();
        let mut env = setup.env.clone();
        env.retain(|(name, _)| *name != "HTTP_ADDR");
        env.push(("HTTP_ADDR", format!("127.0.0.1:{port}")));
        let started = Instant::now();
        let child = command(setup.dir.path(), &env)
            .arg("run")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        while !ready(port) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the worker never became ready"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        runs.push(started.elapsed());
        stop(child);
    }
    runs.sort();
    runs[runs.len() / 2]
}

fn ready(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(b"GET /readyz HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200")
}
