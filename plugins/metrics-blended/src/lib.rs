//! Metric plugin `blended`: figures that mean the same across platforms,
//! computed from summed components.
//!
//! - `blended_leads`: leads however the platform reports them — webhook
//!   leads (`leads`), Meta lead actions (`actions_lead`), LinkedIn one-click
//!   leads (`one_click_leads`).
//! - `blended_cpl`: spend / blended leads.
//! - `mer`: marketing efficiency ratio, conversion value / spend over
//!   whatever the answer groups (all platforms when not grouped by platform).

pub struct MetricInfo {
    pub name: &'static str,
    pub unit: &'static str,
    pub description: &'static str,
    pub inputs: &'static [&'static str],
}

const LEAD_SOURCES: [&str; 3] = ["leads", "actions_lead", "one_click_leads"];

pub const METRICS: &[MetricInfo] = &[
    MetricInfo {
        name: "blended_leads",
        unit: "count",
        description: "webhook leads + Meta lead actions + LinkedIn one-click leads",
        inputs: &["leads", "actions_lead", "one_click_leads"],
    },
    MetricInfo {
        name: "blended_cpl",
        unit: "currency",
        description: "spend / blended leads",
        inputs: &["spend", "leads", "actions_lead", "one_click_leads"],
    },
    MetricInfo {
        name: "mer",
        unit: "ratio",
        description: "conversion value / spend",
        inputs: &["conversion_value", "spend"],
    },
];

/// Compute `metrics` for `rows` rows of `columns` (row-major, millionths).
pub fn compute(
    metrics: &[String],
    columns: &[String],
    values: &[i64],
    rows: usize,
) -> Result<Vec<Option<f64>>, String> {
    let width = columns.len();
    if values.len() != width * rows {
        return Err(format!(
            "{} values for {rows} rows of {width} columns",
            values.len()
        ));
    }
    let mut out = Vec::with_capacity(metrics.len() * rows);
    for row in values.chunks(width.max(1)).take(rows) {
        let get = |name: &str| {
            columns
                .iter()
                .position(|c| c == name)
                .map(|i| row[i])
                .unwrap_or(0)
        };
        let leads: i64 = LEAD_SOURCES.iter().map(|s| get(s)).sum();
        for metric in metrics {
            out.push(match metric.as_str() {
                "blended_leads" => Some(leads as f64 / 1_000_000.0),
                "blended_cpl" => (leads != 0).then(|| get("spend") as f64 / leads as f64),
                "mer" => (get("spend") != 0)
                    .then(|| get("conversion_value") as f64 / get("spend") as f64),
                other => return Err(format!("unknown metric `{other}`")),
            });
        }
    }
    Ok(out)
}

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)] // wit-bindgen's generated glue
mod component {
    wit_bindgen::generate!({ world: "metric-plugin", path: "../../wit" });
    use exports::adpipe::plugin::metric::{
        ComputeRequest, Guest, MetricInfo, MetricPluginInfo, Unit,
    };

    struct Blended;

    impl Guest for Blended {
        fn describe() -> MetricPluginInfo {
            MetricPluginInfo {
                name: "blended".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                metrics: super::METRICS
                    .iter()
                    .map(|m| MetricInfo {
                        name: m.name.into(),
                        unit: match m.unit {
                            "ratio" => Unit::Ratio,
                            "currency" => Unit::Currency,
                            _ => Unit::Count,
                        },
                        description: m.description.into(),
                        inputs: m.inputs.iter().map(|i| i.to_string()).collect(),
                    })
                    .collect(),
            }
        }

        fn compute(
            request: ComputeRequest,
        ) -> Result<Vec<Option<f64>>, adpipe::plugin::types::PluginError> {
            super::compute(
                &request.metrics,
                &request.columns,
                &request.values,
                request.row_count as usize,
            )
            .map_err(|message| adpipe::plugin::types::PluginError {
                kind: adpipe::plugin::types::ErrorKind::InvalidValue,
                path: String::new(),
                message,
            })
        }
    }

    export!(Blended);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blends_lead_sources_and_computes_mer() {
        let columns = [
            "spend",
            "conversion_value",
            "leads",
            "actions_lead",
            "one_click_leads",
        ]
        .map(String::from)
        .to_vec();
        let values = vec![
            100_000_000,
            450_000_000,
            2_000_000,
            3_000_000,
            5_000_000,
            0,
            0,
            0,
            0,
            0,
        ];
        let metrics = ["blended_leads", "blended_cpl", "mer"]
            .map(String::from)
            .to_vec();
        let out = compute(&metrics, &columns, &values, 2).expect("compute");
        assert_eq!(
            out,
            vec![Some(10.0), Some(10.0), Some(4.5), Some(0.0), None, None]
        );
    }
}
