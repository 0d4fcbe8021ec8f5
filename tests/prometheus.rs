//! A real Prometheus (Debian's 2.42, as operators run it) scrapes the worker: it reads the
//! counters as counters and the histograms as histograms with their unit, and stores every
//! name the alert rules and the dashboard query. A 0.0.4 reader (promtool) reads what the
//! worker answers to anyone that does not ask for OpenMetrics.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::*;

const WITHIN: Duration = Duration::from_secs(60);

/// A private Prometheus scraping one target every second; killed when dropped.
struct Prometheus {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn scraping(target: &str) -> Prometheus {
        let program = require_program(
            "prometheus",
            "run scripts/test-deps.sh (or apt-get install prometheus)",
        );
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: notification-worker\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new(program)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts");
        let prometheus = Prometheus {
            child,
            addr,
            _dir: dir,
        };
        wait_until("prometheus to be ready", WITHIN, || {
            std::net::TcpStream::connect(&prometheus.addr).is_ok()
                && http_get(&prometheus.addr, "/-/ready").0 == 200
        });
        prometheus
    }

    /// `GET /api/v1/<path>`; the `data` of a successful answer.
    fn api(&self, path: &str) -> serde_json::Value {
        let (status, body) = http_get(&self.addr, &format!("/api/v1/{path}"));
        let answer: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|_| panic!("prometheus answered {status} {body}"));
        assert_eq!(answer["status"], "success", "{path}: {answer}");
        answer["data"].clone()
    }

    /// The value of an instant query that returns one series, if it returns one.
    fn value(&self, query: &str) -> Option<f64> {
        let data = self.api(&format!("query?query={}", percent_encoded(query)));
        let result = data["result"].as_array()?;
        match result.as_slice() {
            [series] => series["value"][1].as_str()?.parse().ok(),
            _ => None,
        }
    }

    /// (type, unit) of a metric family, as Prometheus recorded it from the scrapes.
    fn metadata(&self, family: &str) -> Option<(String, String)> {
        let data = self.api(&format!("metadata?metric={family}"));
        let entry = data[family].as_array()?.first()?.clone();
        Some((
            entry["type"].as_str()?.to_owned(),
            entry["unit"].as_str()?.to_owned(),
        ))
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn percent_encoded(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (byte as char).to_string(),
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// Every `notification_worker_...` name in a file of the repository.
fn names_used_in(file: &str) -> BTreeSet<String> {
    metric_names(&std::fs::read_to_string(Path::new(MANIFEST_DIR).join(file)).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_reads_counters_as_counters_and_stores_the_names_alerts_use() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    // A delivery channel, so the delivery and outbox series exist too.
    let mut env = with_http(base_env(&nats, dir.path()));
    env.push(("REALTIME_NATS_SUBJECT", "users.{owner}.notifications".into()));
    let worker = Worker::start(dir.path(), &env);
    let prometheus = Prometheus::scraping(&worker.http_addr());
    // A first scrape before any event, so rate() has the increase to see.
    wait_until("prometheus to scrape the worker", WITHIN, || {
        prometheus.value(r#"notification_worker_events_total{event_type="post_like",outcome="created"}"#)
            == Some(0.0)
    });

    let js = nats.jetstream().await;
    for fan in ["fan-1", "fan-2", "fan-3"] {
        publish(&js, "notifications.post.like", like("user-1", fan, "post-1")).await;
    }
    publish(&js, "notifications.post.like", like("user-1", "fan-1", "post-1")).await;
    wait_until("four settled events", WITHIN, || {
        worker.count("created") == 3 && worker.count("duplicate") == 1
    });

    wait_until("prometheus to store the created events", WITHIN, || {
        prometheus.value(r#"notification_worker_events_total{event_type="post_like",outcome="created"}"#)
            == Some(3.0)
    });
    assert_eq!(
        prometheus.value(r#"notification_worker_events_total{event_type="post_like",outcome="duplicate"}"#),
        Some(1.0)
    );
    assert!(
        prometheus
            .value("sum(rate(notification_worker_events_total[1m]))")
            .is_some_and(|rate| rate > 0.0),
        "rate() over the counter"
    );
    assert_eq!(
        prometheus.value("notification_worker_event_duration_seconds_count"),
        Some(4.0)
    );
    assert!(
        prometheus
            .value(r#"histogram_quantile(0.5, sum(rate(notification_worker_event_duration_seconds_bucket[1m])) by (le))"#)
            .is_some_and(f64::is_finite),
        "a quantile from the histogram's buckets"
    );

    // Types and units as Prometheus recorded them. The unit is only in OpenMetrics: what
    // Prometheus asks for, and must be told it got (by the Content-Type).
    for counter in [
        "notification_worker_events",
        "notification_worker_dead_letters",
        "notification_worker_store_errors",
        "notification_worker_deliveries",
        "notification_worker_outbox_jobs",
    ] {
        assert_eq!(
            prometheus.metadata(counter),
            Some(("counter".into(), String::new())),
            "{counter}"
        );
    }
    for histogram in [
        "notification_worker_event_duration_seconds",
        "notification_worker_store_request_duration_seconds",
        "notification_worker_delivery_latency_seconds",
    ] {
        assert_eq!(
            prometheus.metadata(histogram),
            Some(("histogram".into(), "seconds".into())),
            "{histogram}"
        );
    }
    assert_eq!(
        prometheus.metadata("notification_worker_ready"),
        Some(("gauge".into(), String::new()))
    );

    // Every name the alert rules and the dashboard query is one Prometheus stores.
    let stored: BTreeSet<String> = prometheus
        .api("label/__name__/values")
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|name| name.as_str().map(str::to_owned))
        .collect();
    for file in ["deploy/prometheus/alerts.yaml", "deploy/grafana/dashboard.json"] {
        let used = names_used_in(file);
        assert!(!used.is_empty(), "{file} names no metric");
        for name in used {
            assert!(
                stored.contains(&name),
                "{file} queries {name}, which Prometheus does not store"
            );
        }
    }
}

/// `GET /metrics` with an `Accept` header: (the response's Content-Type, its body).
fn scrape(addr: &str, accept: Option<&str>) -> (String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("the HTTP listener answers");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let accept = accept
        .map(|value| format!("Accept: {value}\r\n"))
        .unwrap_or_default();
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: test\r\n{accept}\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("a complete response");
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    let content_type = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_owned())
        })
        .expect("a Content-Type");
    (content_type, body.to_owned())
}

/// Each answer's Content-Type names the format of its body: OpenMetrics to whoever asks for
/// it as Prometheus does, the 0.0.4 text to anyone else (curl, older scrapers), which
/// promtool's 0.0.4 parser reads with every family's help and type.
#[test]
fn each_answer_says_its_format_and_the_plain_text_passes_promtool() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let worker = Worker::start(dir.path(), &with_http(base_env(&nats, dir.path())));
    let addr = worker.http_addr();

    let prometheus_accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let (content_type, body) = scrape(&addr, Some(prometheus_accept));
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(
        body.contains("# TYPE notification_worker_events counter\n"),
        "{body}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");

    for accept in [None, Some("*/*"), Some("text/plain")] {
        let (content_type, body) = scrape(&addr, accept);
        assert_eq!(
            content_type, "text/plain; version=0.0.4; charset=utf-8",
            "{accept:?}"
        );
        assert!(
            body.contains("# TYPE notification_worker_events_total counter\n"),
            "{body}"
        );
        assert!(!body.contains("# EOF"), "{body}");
    }

    let (_, text) = scrape(&addr, None);
    let program = require_program(
        "promtool",
        "run scripts/test-deps.sh (or apt-get install prometheus)",
    );
    let mut check = Command::new(program)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    use std::io::Write;
    check.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let output = check.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
