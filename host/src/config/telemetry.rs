//! `[telemetry]`: where traces go. Unset `otlp_endpoint` and no `OTEL_…`
//! endpoint variable = no trace export (the default); metrics are always on
//! `GET /metrics`.

use serde::{Deserialize, Serialize};

use super::check::{scheme, Issues};

/// `[telemetry]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Base URL of an OTLP/HTTP receiver (an OpenTelemetry Collector, Jaeger,
    /// Tempo…), e.g. `http://collector:4318`: spans go to `<it>/v1/traces` as
    /// protobuf. The standard `OTEL_EXPORTER_OTLP_ENDPOINT` /
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` variables are used when this is
    /// unset.
    pub otlp_endpoint: Option<String>,
}

impl TelemetryConfig {
    /// `[telemetry]`'s mistakes.
    pub(super) fn validate(&self, issues: &mut Issues) {
        let Some(endpoint) = &self.otlp_endpoint else {
            return;
        };
        let host = endpoint
            .split_once("://")
            .map(|(_, rest)| rest.split(['/', '?']).next().unwrap_or(""));
        if !matches!(scheme(endpoint), Some("http" | "https")) || host.is_none_or(str::is_empty) {
            issues.add(
                "telemetry.otlp_endpoint",
                format!("`{endpoint}` is not an http:// or https:// URL"),
                "the base URL of an OTLP/HTTP receiver, e.g. http://collector:4318 (adpipe appends /v1/traces)",
            );
        }
    }

    /// Where spans are sent when this section names the receiver: the base
    /// URL with the OTLP/HTTP traces path.
    pub fn traces_url(&self) -> Option<String> {
        self.otlp_endpoint
            .as_deref()
            .map(|base| format!("{}/v1/traces", base.trim_end_matches('/')))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(endpoint: &str) -> usize {
        let mut issues = Issues::new("pipelines.toml");
        TelemetryConfig {
            otlp_endpoint: Some(endpoint.into()),
        }
        .validate(&mut issues);
        issues.list.len()
    }

    #[test]
    fn the_endpoint_is_an_http_base_url_and_traces_go_to_its_v1_traces() {
        assert_eq!(problems("http://collector:4318"), 0);
        assert_eq!(problems("https://otel.example.com/"), 0);
        assert_eq!(problems("grpc://collector:4317"), 1);
        assert_eq!(problems("collector:4318"), 1);
        assert_eq!(problems("http://"), 1);
        let config = TelemetryConfig {
            otlp_endpoint: Some("http://collector:4318/".into()),
        };
        assert_eq!(
            config.traces_url().as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        assert_eq!(TelemetryConfig::default().traces_url(), None);
    }
}
