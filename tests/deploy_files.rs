//! The alert rules and the dashboard only name metrics the worker really exports, and the
//! alert rules do what docs/operations.md says (Prometheus' own `promtool` checks them).

mod support;

use notification_worker::telemetry::exposition::Format;
use notification_worker::telemetry::metrics::Metrics;
use std::collections::BTreeSet;
use support::metric_names;

fn exported() -> BTreeSet<String> {
    // Delivery series exist for enabled channels only.
    let metrics = Metrics::new();
    metrics.enable_channel("pusher");
    metrics.enable_outbox();
    metric_names(&metrics.render(Format::OpenMetrics))
}

#[test]
fn alerts_and_dashboard_use_exported_metrics() {
    let exported = exported();
    for file in ["deploy/prometheus/alerts.yaml", "deploy/grafana/dashboard.json"] {
        let text =
            std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap();
        let used = metric_names(&text);
        assert!(!used.is_empty(), "{file} names no metric");
        for name in used {
            assert!(
                exported.contains(&name),
                "{file} uses {name}, which the worker does not export"
            );
        }
    }
}

#[test]
fn the_dashboard_is_valid_json() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/grafana/dashboard.json"
    ))
    .unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(
        dashboard["panels"]
            .as_array()
            .is_some_and(|panels| panels.len() >= 8)
    );
}

/// `promtool` with `args`, run from the repository; fails the test with its output.
fn promtool(args: &[&str]) {
    let program = support::require_program(
        "promtool",
        "run scripts/test-deps.sh (or apt-get install prometheus)",
    );
    let output = std::process::Command::new(program)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("promtool runs");
    assert!(
        output.status.success(),
        "promtool {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_alert_rules_are_valid() {
    promtool(&["check", "rules", "deploy/prometheus/alerts.yaml"]);
}

/// Each alert fires when the runbook says, and not on one bad sample (see the test file).
#[test]
fn the_alert_rules_pass_their_unit_tests() {
    promtool(&["test", "rules", "deploy/prometheus/alerts.test.yaml"]);
}

#[test]
fn every_alert_has_unit_tests() {
    let read = |file: &str| {
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap()
    };
    let rules = read("deploy/prometheus/alerts.yaml");
    let tests = read("deploy/prometheus/alerts.test.yaml");
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 10, "{alerts:?}");
    for alert in alerts {
        let firing = tests.matches(&format!("alertname: {alert}\n")).count();
        assert!(
            firing >= 2,
            "{alert} needs a test that it fires and one that it does not (found {firing} evaluations)"
        );
    }
}
