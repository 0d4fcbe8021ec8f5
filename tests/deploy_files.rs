//! The alert rules and the dashboard only name metrics the worker really exports.

use notification_worker::telemetry::exposition::Format;
use notification_worker::telemetry::metrics::Metrics;
use std::collections::BTreeSet;

fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("notification_worker_") {
        let name: String = rest[start..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        rest = &rest[start + name.len()..];
        names.insert(name);
    }
    names
}

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
