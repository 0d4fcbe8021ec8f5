//! Which text `/metrics` answers in, chosen from the scraper's `Accept` header.
//!
//! The two formats name families differently, and each parser reads only its own: OpenMetrics
//! names a counter family without `_total` (`# TYPE notification_worker_events counter`) and
//! ends with `# EOF`; the Prometheus text format 0.0.4 names it with the suffix its samples
//! carry. A 0.0.4 parser fed OpenMetrics finds no family for `..._total` samples and keeps them
//! untyped; an OpenMetrics parser fed 0.0.4 refuses the scrape. So the body and its
//! `Content-Type` must always agree.
//!
//! Prometheus (2.42 included) asks for
//! `application/openmetrics-text;version=1.0.0,...,text/plain;version=0.0.4;q=0.5,*/*;q=0.1`
//! and chooses its parser by the answer's `Content-Type`: it gets OpenMetrics, its first
//! choice, which also carries each histogram's unit. Everything else that asks no such thing
//! (`curl`, older scrapers, agents that only speak 0.0.4) gets 0.0.4, which any of them reads.
//! The sample names (`notification_worker_events_total`, `..._seconds_bucket`) are the same in
//! both, so queries, alerts and dashboards do not depend on the format.

/// A text exposition format for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0.0.
    OpenMetrics,
    /// The Prometheus text format, version 0.0.4.
    PrometheusText,
}

const OPENMETRICS: &str = "application/openmetrics-text";
const PROMETHEUS_TEXT: &str = "text/plain";

impl Format {
    /// OpenMetrics when the client accepts it at least as much as plain text; 0.0.4
    /// otherwise (no header, `*/*`, `text/plain` only, or OpenMetrics refused with `q=0`).
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::PrometheusText;
        };
        let quality = |wanted: &str| {
            accept
                .split(',')
                .filter_map(|range| {
                    let mut parts = range.split(';').map(str::trim);
                    let media_type = parts.next()?;
                    if !media_type.eq_ignore_ascii_case(wanted) {
                        return None;
                    }
                    let q = parts
                        .filter_map(|parameter| parameter.split_once('='))
                        .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
                        .map_or(Some(1.0), |(_, value)| value.trim().parse::<f32>().ok())?;
                    Some(q)
                })
                .fold(None, |best: Option<f32>, q| {
                    Some(best.map_or(q, |best| best.max(q)))
                })
        };
        match (quality(OPENMETRICS), quality(PROMETHEUS_TEXT)) {
            (Some(openmetrics), text) if openmetrics > 0.0 && openmetrics >= text.unwrap_or(0.0) => {
                Format::OpenMetrics
            }
            _ => Format::PrometheusText,
        }
    }

    /// The `Content-Type` of a body in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::PrometheusText => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_gets_openmetrics() {
        // What Prometheus 2.42 sends, byte for byte.
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text")),
            Format::OpenMetrics
        );
    }

    #[test]
    fn anyone_else_gets_the_0_0_4_text() {
        for accept in [
            None,
            Some("*/*"),
            Some("text/plain;version=0.0.4"),
            Some("text/plain, application/openmetrics-text;q=0.5"),
            Some("application/openmetrics-text;q=0, text/plain;q=0.1"),
            Some("application/openmetrics-text;q=nonsense"),
        ] {
            assert_eq!(Format::negotiate(accept), Format::PrometheusText, "{accept:?}");
        }
    }

    #[test]
    fn content_types_name_the_versions() {
        assert_eq!(
            Format::OpenMetrics.content_type(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        assert_eq!(
            Format::PrometheusText.content_type(),
            "text/plain; version=0.0.4; charset=utf-8"
        );
    }
}
